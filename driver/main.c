/* netcc: a compiler for neural networks. main only dispatches; each
 * command lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "driver.h"

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
} commands[] = {
    {"ir", cmd_ir, "ir MODEL.nn [--batch N]             print the expanded graph with shapes"},
    {"summary", cmd_summary,
     "summary MODEL.nn [--batch N]        layer table, parameter and MAC totals"},
    {"params", cmd_params, "params MODEL.nn                     every parameter and buffer"},
    {"init", cmd_init, "init MODEL.nn -o W.safetensors [--seed S]   He-initialised weights"},
    {"compile", cmd_compile,
     "compile MODEL.nn -o libX.so [--target T] [--batch N] [--weights W | --seed S]\n"
     "        [--name X] [--emit=so|obj|asm|llvm] [--weights-file] [-O0|-O2]\n"
     "        [--dump-after=PASS] [--report] [--time-phases] [--train] [--no-winograd]\n"
     "        a shared object and its C header, for target T (default native)"},
    {"run", cmd_run,
     "run MODEL.nn [--weights W] --input X.npy [-o Y.npy] [--batch N] [--target T]\n"
     "        [--reference]  runs it now (ORC JIT; --reference: the plain C reference\n"
     "        executor)"},
    {"train", cmd_train,
     "train MODEL.nn --data fashion-mnist|DIR [--epochs E] [--batch B] [--lr LR] [--out DIR]\n"
     "        [--schedule steps:5,8|plateau|none] [--factor F] [--patience P] [--warmup W]\n"
     "        [--seed S] [--resume CHECKPOINT] [--weights W] [--limit-train N] [--limit-test N]\n"
     "        [--target T]  SGD on an IDX image dataset; see docs/training.md"},
    {"plot", cmd_plot,
     "plot LOG.csv [LOG2.csv ...] -o CURVES.svg [--label NAME]...\n"
     "        loss and error by epoch of training runs (netcc train's log.csv), as an SVG"},
    {"profile", cmd_profile,
     "profile MODEL.nn [--batch N] [--train] [--threads T] [--runs R] [--all] [-O0]\n"
     "        [--no-winograd] [--target T]\n"
     "        time per node of the compiled code, GFLOP/s against the measured peak"},
    {"targets", cmd_targets,
     "targets [--which T]                 what --target can name, and what each needs;\n"
     "        --which: the target T is here, its kernel set and the CPU it is tuned for"},
};
enum { N_COMMANDS = sizeof commands / sizeof *commands };

static void usage(FILE *f)
{
	fprintf(f, "usage: netcc COMMAND ...\n\ncommands:\n");
	for (int i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  netcc %s\n", commands[i].usage);
	fprintf(f, "\nThe model language is described in docs/language.md.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	for (int i = 0; i < N_COMMANDS; i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	const char *names[N_COMMANDS];
	for (int i = 0; i < N_COMMANDS; i++)
		names[i] = commands[i].name;
	const char *hint = diag_suggest(cmd, names, N_COMMANDS);
	if (hint)
		fprintf(stderr, "netcc: error: unknown command '%s'; did you mean '%s'?\n", cmd,
		        hint);
	else
		fprintf(stderr, "netcc: error: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}

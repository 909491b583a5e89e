/* netcc: a compiler for neural networks. main only dispatches; each
 * command lives in its own file, and commands.c lists them. */
#include <stdio.h>
#include <string.h>

#include "driver.h"

static int help(int argc, char **argv)
{
	if (argc < 2) {
		help_usage_print(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--man")) {
		help_man_print(stdout);
		return 0;
	}
	const cmd_doc *c = driver_command(argv[1]);
	if (c) {
		help_command_print(stdout, c);
		return 0;
	}
	fprintf(stderr, "netcc: error: help: no command '%s'\n", argv[1]);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		help_usage_print(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h"))
		return help(argc - 1, argv + 1);
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		help_version_print(stdout);
		return 0;
	}
	const cmd_doc *c = driver_command(cmd);
	if (c)
		return c->run(argc - 1, argv + 1);
	int n;
	const cmd_doc *all = driver_commands(&n);
	const char *names[64];
	for (int i = 0; i < n && i < 64; i++)
		names[i] = all[i].name;
	const char *hint = diag_suggest(cmd, names, n < 64 ? n : 64);
	if (hint)
		fprintf(stderr, "netcc: error: unknown command '%s'; did you mean '%s'?\n", cmd,
		        hint);
	else
		fprintf(stderr, "netcc: error: unknown command '%s'\n", cmd);
	fprintf(stderr, "(see 'netcc --help')\n");
	return 2;
}

/* Every command and every option it takes, with its default: the one
 * table the option parser, --help, `netcc help` and the man page read. */
#include <string.h>

#include "driver.h"

#define OPT_END                                                                                    \
	{                                                                                          \
		0                                                                                  \
	}
#define OPT_BATCH(def)                                                                             \
	{                                                                                          \
		"batch", "N", '=', def, "the batch size N of the model's inputs"                   \
	}
#define OPT_TARGET                                                                                 \
	{                                                                                          \
		"target", "T", '=', "native",                                                      \
		    "the CPU to generate code for: native, x86-64-v3, x86-64-v4, sapphirerapids, " \
		    "aarch64 "                                                                     \
		    "(netcc targets lists them)"                                                   \
	}
#define OPT_SEED(what)                                                                             \
	{                                                                                          \
		"seed", "S", '=', "0", "the seed of the He-initialised weights " what              \
	}
#define OPT_WERROR                                                                                 \
	{                                                                                          \
		"Werror", NULL, 0, NULL, "make every warning an error (exit 1)"                    \
	}
#define OPT_NONFINITE                                                                              \
	{                                                                                          \
		"allow-nonfinite", NULL, 0, NULL,                                                  \
		    "accept NaN and infinite weights (an error otherwise)"                         \
	}
#define OPT_NO_WINOGRAD                                                                            \
	{                                                                                          \
		"no-winograd", NULL, 0, NULL, "keep every convolution on the plain kernel"         \
	}

static const opt_doc inspect_opts[] = {OPT_BATCH("1"), OPT_WERROR, OPT_END};

static const opt_doc init_opts[] = {
    {"o", "W.safetensors", '=', NULL, "where to write the weights (required)"},
    OPT_SEED(""),
    OPT_WERROR,
    OPT_END,
};

static const opt_doc import_opts[] = {
    {"o", "NAME.nn", '=', NULL,
     "where to write the model (required); '-' writes it to standard output"},
    {"weights-out", "W.safetensors", '=', "NAME.safetensors beside NAME.nn",
     "where to write the weights, under the .nn file's parameter names"},
    OPT_END,
};

static const opt_doc weights_opts[] = {
    {"from", "STATE.npz|STATE.safetensors", '=', NULL,
     "the PyTorch state dict (required): np.savez's or np.savez_compressed's .npz, or a "
     ".safetensors file"},
    {"map", "HOW", '=', "auto",
     "how tensors find their parameters: order (the state dict's order, num_batches_tracked "
     "skipped), names (exact, or PyTorch's dotted module path where the .nn has '_', as "
     "netcc import writes it), or auto (names where every parameter has one, else order)"},
    {"o", "W.safetensors", '=', NULL,
     "where to write the weights (required); '-' writes them to standard output"},
    OPT_NONFINITE,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc export_opts[] = {
    {"o", "NAME.onnx", '=', NULL,
     "where to write the ONNX file (required); '-' writes it to standard output"},
    {"weights", "W.safetensors", '=', NULL,
     "the trained weights (without them: random He weights, with a warning)"},
    OPT_BATCH("1"),
    {"dynamic-batch", NULL, 0, NULL,
     "leave the batch open: dimension 0 of every input and output is N (instead of "
     "--batch)"},
    OPT_SEED("when no --weights is given"),
    OPT_NONFINITE,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc compile_opts[] = {
    {"o", "FILE", '=', "libNAME.so",
     "the output: a shared object (its header NAME.h beside it), or with --emit an object, "
     "assembly or LLVM IR; '-' writes assembly or LLVM IR to standard output"},
    OPT_TARGET,
    OPT_BATCH("1"),
    {"weights", "W.safetensors", '=', NULL,
     "the trained weights (without them: random He weights, with a warning)"},
    OPT_SEED("when no --weights is given"),
    {"name", "X", '=', "the model's name", "prefix of every exported symbol; a C identifier"},
    {"emit", "KIND", '=', "so", "so, obj, asm or llvm"},
    {"weights-file", NULL, 0, NULL,
     "write the weights to NAME.safetensors beside the library instead of embedding them "
     "(load them with NAME_load_weights)"},
    {"static", NULL, 0, NULL,
     "write a static archive libNAME.a with its header, for linking into an application "
     "(docs/embedding.md gives the link line)"},
    {"O2", NULL, 0, NULL, "every pass and LLVM's O3 pipeline (the default)"},
    {"O0", NULL, 0, NULL, "no optimisation: plan memory only, LLVM's O0 pipeline"},
    {"dump-after", "PASS", '=', NULL, "print the graph after PASS (or all) to standard output"},
    {"report", NULL, 0, NULL, "print the memory plan's figures"},
    {"time-phases", NULL, 0, NULL, "print the time each phase took"},
    OPT_NONFINITE,
    {"train", NULL, 0, NULL, "also compile a training step (NAME_train_step) into the library"},
    OPT_NO_WINOGRAD,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc run_opts[] = {
    {"weights", "W.safetensors", '=', NULL,
     "the trained weights (without them: random He weights, with a warning)"},
    {"input", "X.npy", '*', NULL,
     "an input, once per model input in declaration order; '-' reads standard input"},
    {"o", "Y.npy", '*', NULL,
     "an output file, once per model output; '-' writes standard output; none prints a "
     "summary of each output"},
    OPT_BATCH("the input's first dimension"),
    OPT_TARGET,
    {"reference", NULL, 0, NULL, "run the plain C reference executor instead of the JIT"},
    OPT_SEED("when no --weights is given"),
    OPT_NONFINITE,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc train_opts[] = {
    {"data", "fashion-mnist|DIR", '=', NULL,
     "the dataset: Debian's dataset-fashion-mnist, or a directory of IDX files (required)"},
    {"epochs", "E", '=', "the train section's", "epochs to train"},
    OPT_BATCH("the train section's"),
    {"global-batch", "B", '=', "the --batch value",
     "the batch of a step over all ranks under mpirun (each rank takes B / ranks); the "
     "same as --batch"},
    {"sync-bn", NULL, 0, NULL,
     "under mpirun, BatchNorm normalises with the statistics of the whole global batch (as "
     "one process would) instead of each rank's share"},
    {"lr", "LR", '=', "the train section's", "the learning rate"},
    {"schedule", "S", '=', "the train section's",
     "steps:E1,E2 (divide the rate at those epochs), steps, plateau or none"},
    {"factor", "F", '=', "0.1", "what the rate is multiplied by at each drop"},
    {"patience", "P", '=', "the train section's", "plateau: epochs without improvement"},
    {"warmup", "W", '=', "0", "epochs of linear warm-up"},
    OPT_SEED("and of the data order"),
    {"out", "DIR", '=', "run/ (or the checkpoint's directory)",
     "where checkpoints, model.safetensors, log.csv and curves.svg go"},
    {"resume", "CHECKPOINT", '=', NULL, "continue an interrupted run from its checkpoint"},
    {"weights", "W.safetensors", '=', NULL, "start from these weights (fine-tuning)"},
    {"limit-train", "N", '=', "all", "train on the first N examples"},
    {"limit-test", "N", '=', "all", "test on the first N examples"},
    OPT_TARGET,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc eval_opts[] = {
    {"weights", "W.safetensors", '=', NULL, "the trained weights (required)"},
    {"data", "fashion-mnist|DIR", '=', NULL,
     "the dataset: Debian's dataset-fashion-mnist, or a directory of IDX files (required)"},
    {"split", "SPLIT", '=', "t10k", "t10k or train"},
    OPT_BATCH("the train section's, else 100"),
    {"limit", "N", '=', "all", "evaluate the first N examples"},
    {"json", NULL, 0, NULL, "print one JSON object instead of tables"},
    OPT_TARGET,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc profile_opts[] = {
    OPT_BATCH("1"),
    {"train", NULL, 0, NULL, "profile the training step instead of inference"},
    {"threads", "T", '=', "NETCC_THREADS, else one per CPU", "threads to run on"},
    {"runs", "R", '=', "20", "timed runs (after three warm-up runs)"},
    {"gap", "MS", '=', "0",
     "pause MS milliseconds before each timed run, as an application that runs now and then "
     "does (the pauses are not timed)"},
    OPT_SEED(""),
    {"all", NULL, 0, NULL, "list every node, not only the most expensive"},
    {"O0", NULL, 0, NULL, "no optimisation"},
    OPT_NO_WINOGRAD,
    OPT_TARGET,
    OPT_WERROR,
    OPT_END,
};

static const opt_doc plot_opts[] = {
    {"o", "curves.svg", '=', NULL, "where to write the picture (required)"},
    {"label", "NAME", '*', "each log's directory name", "the legend's name of each log, in order"},
    OPT_END,
};

static const opt_doc targets_opts[] = {
    {"which", "T", '=', NULL,
     "print what T resolves to here: the target, its kernel set and the CPU it is tuned "
     "for"},
    OPT_END,
};

static const cmd_doc docs[] = {
    {"ir",
     cmd_ir,
     "MODEL.nn [options]",
     "print the expanded graph with shapes",
     inspect_opts,
     {"netcc ir models/resnet20.nn", "netcc ir models/resnet50.nn --batch 8"}},
    {"summary",
     cmd_summary,
     "MODEL.nn [options]",
     "layer table, parameter and MAC totals",
     inspect_opts,
     {"netcc summary models/resnet18.nn", "netcc summary models/plain34.nn --batch 32"}},
    {"params",
     cmd_params,
     "MODEL.nn [options]",
     "every parameter and buffer, with its shape",
     inspect_opts,
     {"netcc params models/resnet20.nn", "netcc params tests/models/tiny28.nn"}},
    {"init",
     cmd_init,
     "MODEL.nn -o W.safetensors [options]",
     "He-initialised weights",
     init_opts,
     {"netcc init models/resnet20.nn -o w.safetensors",
      "netcc init models/resnet18.nn -o w.safetensors --seed 7"}},
    {"import",
     cmd_import,
     "MODEL.onnx -o NAME.nn [options]",
     "an ONNX model as a .nn file and its weights; see docs/interop.md",
     import_opts,
     {"netcc import resnet18.onnx -o resnet18.nn",
      "netcc import tiny.onnx -o models/tiny.nn --weights-out tiny-weights.safetensors"}},
    {"weights",
     cmd_weights,
     "MODEL.nn --from STATE.npz -o W.safetensors [options]",
     "a PyTorch state dict (.npz or .safetensors) as the model's weights, matched by order "
     "or by name; see docs/interop.md",
     weights_opts,
     {"netcc weights models/resnet18.nn --from resnet18.npz -o resnet18.safetensors",
      "netcc weights resnet18_imported.nn --from state.safetensors --map names -o w.safetensors"}},
    {"export",
     cmd_export,
     "MODEL.nn -o NAME.onnx [options]",
     "the model and its weights as an ONNX file (opset 13) for ONNX Runtime and other "
     "tools; see docs/interop.md",
     export_opts,
     {"netcc export models/resnet20.nn --weights run/model.safetensors -o resnet20.onnx",
      "netcc export models/resnet18.nn --weights w.safetensors --dynamic-batch -o "
      "resnet18.onnx"}},
    {"compile",
     cmd_compile,
     "MODEL.nn|MODEL.onnx [-o libX.so] [options]",
     "a shared object and its C header, for a target CPU",
     compile_opts,
     {"netcc compile models/resnet18.nn --weights w.safetensors -o libresnet18.so",
      "netcc compile models/resnet20.nn --target x86-64-v3 --emit asm -o -"}},
    {"run",
     cmd_run,
     "MODEL.nn|MODEL.onnx --input X.npy [options]",
     "run it now, in memory (ORC JIT), on .npy inputs",
     run_opts,
     {"netcc run models/resnet20.nn --weights w.safetensors --input x.npy -o y.npy",
      "netcc run models/resnet20.nn --weights w.safetensors --input - -o - < x.npy > y.npy"}},
    {"train",
     cmd_train,
     "MODEL.nn --data fashion-mnist|DIR [options]",
     "SGD on an IDX image dataset; see docs/training.md",
     train_opts,
     {"netcc train models/resnet20.nn --data fashion-mnist --epochs 10 --out run20",
      "netcc train models/resnet20.nn --data fashion-mnist --resume run20/checkpoint.safetensors"}},
    {"eval",
     cmd_eval,
     "MODEL.nn --weights W --data fashion-mnist|DIR [options]",
     "loss, accuracy, top-5, per-class accuracy, the confusion matrix and throughput on a "
     "dataset split",
     eval_opts,
     {"netcc eval models/resnet20.nn --weights run/model.safetensors --data fashion-mnist",
      "netcc eval models/resnet20.nn --weights w.safetensors --data DIR --split train --json"}},
    {"profile",
     cmd_profile,
     "MODEL.nn [options]",
     "time per node of the compiled code, GFLOP/s against the measured peak",
     profile_opts,
     {"netcc profile models/resnet50.nn --threads 2",
      "netcc profile models/resnet20.nn --train --batch 64"}},
    {"plot",
     cmd_plot,
     "LOG.csv [LOG.csv ...] -o curves.svg [options]",
     "draw training logs (netcc train's log.csv) as an SVG: loss and error per epoch, "
     "learning-rate steps marked; several logs on one plot compare runs",
     plot_opts,
     {"netcc plot run/log.csv -o curves.svg",
      "netcc plot plain20/log.csv resnet20/log.csv --label plain-20 --label resnet-20 -o "
      "cmp.svg"}},
    {"targets",
     cmd_targets,
     "[options]",
     "what --target can name, and what each needs",
     targets_opts,
     {"netcc targets", "netcc targets --which native"}},
};

const cmd_doc *driver_commands(int *n)
{
	*n = sizeof docs / sizeof *docs;
	return docs;
}

const cmd_doc *driver_command(const char *name)
{
	for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
		if (!strcmp(docs[i].name, name))
			return &docs[i];
	return NULL;
}

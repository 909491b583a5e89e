/* netcc compile: a model file to a shared object and its C header (or to
 * LLVM IR, assembly, an object file). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "driver.h"
#include "passes.h"

static bool c_identifier(const char *s)
{
	if (!*s || isdigit((unsigned char)*s) || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static int emit_kind(const char *s, backend_emit_kind *k)
{
	static const char *const names[] = {"so", "obj", "asm", "llvm"};
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i])) {
			*k = (backend_emit_kind)i;
			return 0;
		}
	fprintf(stderr, "netcc: error: --emit=%s: expected so, obj, asm or llvm\n", s);
	return 2;
}

/* The plan's figures; the training step's (--train) again with train_. */
static void report(const ir_graph *g, const char *prefix)
{
	int64_t nodes = 0;
	for (int i = 0; i < g->n_nodes; i++)
		nodes += !g->nodes[i].prep && g->nodes[i].op != IR_OP_INPUT;
	printf("%snodes: %lld\n", prefix, (long long)nodes);
	printf("%sarena_bytes: %lld\n", prefix, (long long)g->plan.arena_bytes);
	printf("%slower_bound_bytes: %lld\n", prefix, (long long)g->plan.lower_bound_bytes);
	printf("%snaive_bytes: %lld\n", prefix, (long long)g->plan.naive_bytes);
	printf("%sweight_bytes: %lld\n", prefix, (long long)g->plan.weight_bytes);
}

/* The weights file of --weights-file goes beside the library as
 * NAME.safetensors; false (reported) where that path is too long or is the
 * library's own (the library would overwrite it). */
static bool weights_path(const char *output, const char *name, char *buf, size_t len)
{
	const char *slash = strrchr(output, '/');
	int dir = slash ? (int)(slash - output) + 1 : 0;
	if ((size_t)snprintf(buf, len, "%.*s%s.safetensors", dir, output, name) >= len) {
		fprintf(stderr, "netcc: error: -o %s: the path is too long\n", output);
		return false;
	}
	if (!strcmp(buf, output)) {
		fprintf(stderr,
		        "netcc: error: -o %s: --weights-file writes the weights there; name the "
		        "library lib%s.so or another name\n",
		        output, name);
		return false;
	}
	return true;
}

typedef struct job {
	ir_graph *g;
	ir_graph *tg; /* --train: the same model again, to become the training step */
	passes_options po;
	backend_options bo;
	backend_phases *phases;
} job;

/* Passes and code generation report through diag, which unwinds to the
 * guard in driver_guarded. */
static int compile_job(void *ctx)
{
	job *j = ctx;
	double t = backend_now();
	passes_run(j->g, &j->po);
	if (j->tg) {
		passes_run(j->tg, &(passes_options){.mode = PASSES_MODE_TRAINING,
		                                    .opt_level = j->po.opt_level,
		                                    .dump_after = j->po.dump_after,
		                                    .dump = j->po.dump});
		j->bo.train = j->tg;
	}
	backend_phase(j->phases, "passes", t);
	char wp[4096] = "";
	if (!j->bo.embed_weights && j->bo.emit == BACKEND_EMIT_SO) {
		if (!weights_path(j->bo.output, j->bo.name, wp, sizeof wp))
			return 1;
		if (backend_weights_save(j->g, wp) != 0)
			return 1;
	}
	if (backend_compile(j->g, &j->bo) != 0) {
		if (wp[0]) /* all or nothing: no weights file without its library */
			unlink(wp);
		return 1;
	}
	if (wp[0])
		fprintf(stderr, "netcc: wrote %s (load it with %s_load_weights)\n", wp, j->bo.name);
	return 0;
}

static int check_dump_after(const char *name)
{
	if (!name || !strcmp(name, "all"))
		return 0;
	int n = 0;
	for (; passes_names[n]; n++)
		if (!strcmp(name, passes_names[n]))
			return 0;
	const char *hint = diag_suggest(name, passes_names, n);
	fprintf(stderr, "netcc: error: --dump-after=%s: no such pass", name);
	if (hint)
		fprintf(stderr, "; did you mean '%s'?", hint);
	fprintf(stderr, " (passes:");
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %s", passes_names[i]);
	fprintf(stderr, ", or all)\n");
	return 2;
}

int cmd_compile(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "compile");
	if (rc)
		return rc < 0 ? 0 : rc;
	backend_target target;
	if (driver_target(&o, &target, false) != 0)
		return 2;
	backend_phases phases = {0};
	double t0 = backend_now();
	bool ok = true;
	int64_t seed = opts_int(&o, "seed", 0, 0, INT64_MAX, &ok);
	backend_emit_kind emit = BACKEND_EMIT_SO;
	if (!ok || emit_kind(opts_str(&o, "emit", "so"), &emit) != 0 ||
	    check_dump_after(opts_str(&o, "dump-after", NULL)) != 0)
		return 2;
	if (opts_flag(&o, "O0") && opts_flag(&o, "O2")) {
		fprintf(stderr, "netcc: error: -O0 and -O2 together\n");
		return 2;
	}
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	rc = 2;
	ir_graph *tg = NULL;
	const char *name = opts_str(&o, "name", g->name);
	if (!c_identifier(name)) {
		fprintf(stderr,
		        "netcc: error: --name %s: the name prefixes C symbols, so it must "
		        "be a C identifier of at most 64 characters\n",
		        name);
		goto done;
	}
	char clash[128];
	if (backend_symbol_clash(name, opts_flag(&o, "train"), clash, sizeof clash)) {
		fprintf(stderr,
		        "netcc: error: --name %s: the library would define %s, which the C "
		        "library or netcc's runtime already does; choose another name\n",
		        name, clash);
		goto done;
	}
	char out_default[256];
	static const char *const ext[] = {"so", "o", "s", "ll"};
	bool archive = opts_flag(&o, "static");
	if (archive && emit != BACKEND_EMIT_SO) {
		fprintf(stderr,
		        "netcc: error: --static writes a library; --emit=%s writes no "
		        "library: give one of them\n",
		        opts_str(&o, "emit", "so"));
		goto done;
	}
	snprintf(out_default, sizeof out_default, "%s%s.%s", emit == BACKEND_EMIT_SO ? "lib" : "",
	         name, archive ? "a" : ext[emit]);
	const char *output = opts_str(&o, "o", out_default);
	if (!strcmp(output, "-") && (emit == BACKEND_EMIT_SO || opts_flag(&o, "static"))) {
		fprintf(stderr, "netcc: error: -o -: a library comes with its header and cannot go "
		                "to standard output (--emit=asm, llvm or obj can)\n");
		goto done;
	}
	rc = 1;
	if (opts_flag(&o, "train") && !(tg = driver_model_load(&o, 1, &status)))
		goto done;
	const char *wpath = opts_str(&o, "weights", NULL);
	driver_weights_warn(&o, !opts_flag(&o, "weights-file") ? "the library embeds"
	                        : emit == BACKEND_EMIT_SO      ? "the weights file beside it holds"
	                                                       : "its weights would be");
	if (opts_flag(&o, "weights-file") && emit != BACKEND_EMIT_SO)
		diag_warn("--weights-file with --emit=%s: the weights stay out of the code and "
		          "no file is written beside it (only a shared object's is); load them "
		          "with NAME_load_weights from the --weights file",
		          opts_str(&o, "emit", "so"));
	if (driver_warnings_fatal(&o))
		goto done;
	for (ir_graph *w = g; w; w = w == g ? tg : NULL) {
		if (!wpath) {
			if (!driver_model_onnx(&o)) /* an ONNX file brings its weights */
				ir_graph_init_he(w, (uint64_t)seed);
		} else if (backend_weights_load(w, wpath, opts_flag(&o, "allow-nonfinite")) != 0)
			goto done;
	}
	backend_phase(&phases, "parse and load", t0);

	job j = {.g = g,
	         .tg = tg,
	         .po = {.opt_level = opts_flag(&o, "O0") ? 0 : 2,
	                .dump_after = opts_str(&o, "dump-after", NULL),
	                .no_winograd = opts_flag(&o, "no-winograd")},
	         .bo = {.target = &target,
	                .opt_level = opts_flag(&o, "O0") ? 0 : 2,
	                .name = name,
	                .output = output,
	                .emit = emit,
	                .embed_weights = !opts_flag(&o, "weights-file"),
	                .archive = archive,
	                .source = o.pos[0],
	                .phases = &phases},
	         .phases = &phases};
	if (driver_guarded(compile_job, &j) != 0)
		goto done;
	if (opts_flag(&o, "report")) {
		report(g, "");
		if (tg)
			report(tg, "train_");
	}
	if (opts_flag(&o, "time-phases")) {
		double total = 0;
		for (int i = 0; i < phases.n; i++) {
			fprintf(stderr, "time %-16s %8.3f s\n", phases.name[i], phases.seconds[i]);
			total += phases.seconds[i];
		}
		fprintf(stderr, "time %-16s %8.3f s\n", "total", total);
	}
	rc = 0;
done:
	ir_graph_free(tg);
	ir_graph_free(g);
	return rc;
}

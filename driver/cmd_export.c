/* netcc export: a model and its weights as one ONNX file, for ONNX
 * Runtime and the other tools that read ONNX (docs/interop.md). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "onnx.h"
#include "runtime.h"

/* Said before any work: where the file cannot go, and files it would
 * replace that the command reads. 0, or the exit status after reporting. */
static int out_check(const opts *o, const char *out)
{
	if (!strcmp(out, "-")) {
		if (!isatty(STDOUT_FILENO))
			return 0;
		fprintf(stderr, "netcc: error: -o -: standard output is a terminal, and an ONNX "
		                "file is binary; redirect it or name a file\n");
		return 2;
	}
	const char *w = opts_str(o, "weights", NULL);
	if (!strcmp(out, o->pos[0]) || (w && !strcmp(out, w))) {
		fprintf(stderr, "netcc: error: -o %s would replace the %s it reads\n", out,
		        strcmp(out, o->pos[0]) ? "weights" : "model");
		return 2;
	}
	const char *slash = strrchr(out, '/');
	if (!slash)
		return 0;
	char dir[4096];
	int len = slash == out ? 1 : (int)(slash - out);
	if ((size_t)len >= sizeof dir) {
		fprintf(stderr, "netcc: error: -o %s: the path is too long\n", out);
		return 2;
	}
	snprintf(dir, sizeof dir, "%.*s", len, out);
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "netcc: error: -o %s: there is no directory %s to write it in\n",
		        out, dir);
		return 1;
	}
	return 0;
}

/* The weights: --weights, the ONNX file's own, or He's with a warning. */
static int weights_attach(const opts *o, ir_graph *g)
{
	bool ok = true;
	int64_t seed = opts_int(o, "seed", 0, 0, INT64_MAX, &ok);
	if (!ok)
		return 2;
	driver_weights_warn(o, "the exported model carries");
	if (driver_warnings_fatal(o))
		return 1;
	const char *w = opts_str(o, "weights", NULL);
	if (w)
		return backend_weights_load(g, w, opts_flag(o, "allow-nonfinite"));
	if (!driver_model_onnx(o))
		ir_graph_init_he(g, (uint64_t)seed);
	return 0;
}

typedef struct export_job {
	const ir_graph *g;
	const onnx_export_options *eo;
	onnx_export *ex;
} export_job;

static int export_run(void *ctx)
{
	export_job *j = ctx;
	onnx_export_graph(j->g, j->eo, j->ex);
	return 0;
}

/* "-": standard output; otherwise a temporary renamed into place, so a
 * failed export leaves no partial file. */
static int bytes_write(const char *out, const onnx_export *ex)
{
	char err[512];
	if (!strcmp(out, "-")) {
		if (fwrite(ex->data, 1, ex->len, stdout) == ex->len && fflush(stdout) == 0)
			return 0;
		fprintf(stderr, "netcc: error: -o -: cannot write standard output\n");
		return 1;
	}
	if (rt_file_write_atomic(out, ex->data, ex->len, err, sizeof err) == 0)
		return 0;
	fprintf(stderr, "netcc: error: %s\n", err);
	return 1;
}

int cmd_export(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "export");
	if (rc)
		return rc < 0 ? 0 : rc;
	const char *out = opts_str(&o, "o", NULL);
	if (o.n_pos != 1 || !out) {
		fprintf(stderr, "netcc: error: export needs one MODEL.nn and -o NAME.onnx (see "
		                "netcc help export)\n");
		return 2;
	}
	bool dynamic = opts_flag(&o, "dynamic-batch");
	if (dynamic && opts_flag(&o, "batch")) {
		fprintf(stderr, "netcc: error: --batch fixes the batch and --dynamic-batch leaves "
		                "it open: give one of them\n");
		return 2;
	}
	if ((rc = out_check(&o, out)) != 0)
		return rc;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	onnx_export ex = {0};
	if ((rc = weights_attach(&o, g)) != 0)
		goto done;
	char doc[600];
	snprintf(doc, sizeof doc, "Exported by netcc %s from %.500s", driver_version(), o.pos[0]);
	onnx_export_options eo = {
	    .dynamic_batch = dynamic, .producer_version = driver_version(), .doc = doc};
	export_job j = {g, &eo, &ex};
	rc = 1;
	if (driver_guarded(export_run, &j) != 0 || bytes_write(out, &ex) != 0)
		goto done;
	char batch[32] = "N (dynamic)";
	if (!dynamic)
		snprintf(batch, sizeof batch, "%lld", (long long)g->batch);
	fprintf(stderr,
	        "netcc: wrote %s (model '%s', ONNX opset %d, %d nodes, %d initializers, %zu "
	        "bytes, batch %s)\n",
	        strcmp(out, "-") ? out : "standard output", g->name, ONNX_EXPORT_OPSET, ex.n_nodes,
	        ex.n_initializers, ex.len, batch);
	rc = 0;
done:
	onnx_export_free(&ex);
	ir_graph_free(g);
	return rc;
}

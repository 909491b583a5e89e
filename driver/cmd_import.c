/* netcc import: an ONNX model as a .nn file and its weights. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "onnx.h"
#include "runtime.h"

/* NAME.nn -> NAME.safetensors; anything else gets the extension added. */
static bool weights_default(const char *out, char *buf, size_t len)
{
	size_t n = strlen(out);
	if (n > 3 && !strcmp(out + n - 3, ".nn"))
		n -= 3;
	return (size_t)snprintf(buf, len, "%.*s.safetensors", (int)n, out) < len;
}

static int write_text(const char *out, const onnx_import *im)
{
	char err[512];
	if (!strcmp(out, "-")) {
		if (fwrite(im->text, 1, im->len, stdout) == im->len && fflush(stdout) == 0)
			return 0;
		fprintf(stderr, "netcc: error: -o -: cannot write standard output\n");
		return 1;
	}
	if (rt_file_write_atomic(out, im->text, im->len, err, sizeof err) == 0)
		return 0;
	fprintf(stderr, "netcc: error: %s\n", err);
	return 1;
}

int cmd_import(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "import");
	if (rc)
		return rc < 0 ? 0 : rc;
	const char *out = opts_str(&o, "o", NULL);
	if (o.n_pos != 1 || !out) {
		fprintf(stderr, "netcc: error: import needs one MODEL.onnx and -o NAME.nn (see "
		                "netcc help import)\n");
		return 2;
	}
	char wbuf[4096];
	const char *wpath = opts_str(&o, "weights-out", NULL);
	if (!wpath && !strcmp(out, "-")) {
		fprintf(stderr, "netcc: error: -o - writes the model to standard output; name its "
		                "weights with --weights-out W.safetensors\n");
		return 2;
	}
	if (!wpath) {
		if (!weights_default(out, wbuf, sizeof wbuf)) {
			fprintf(stderr, "netcc: error: -o %s: the path is too long\n", out);
			return 2;
		}
		wpath = wbuf;
	}
	if (!strcmp(wpath, out) || !strcmp(wpath, "-")) {
		fprintf(stderr,
		        "netcc: error: --weights-out %s: the weights need a file of their "
		        "own\n",
		        wpath);
		return 2;
	}
	/* the model is named after the file it goes to, as netcc names a
	 * model after its .nn file's model line */
	char name[80];
	onnx_model_name(strcmp(out, "-") ? out : o.pos[0], name, sizeof name);
	onnx_import im;
	if (onnx_import_file(o.pos[0], name, &im, stderr) != 0)
		return 1;
	rc = 1;
	ir_graph *g = onnx_import_graph(&im, o.pos[0], 1);
	if (!g)
		goto done;
	/* all or nothing: no weights without their model */
	if (backend_weights_save(g, wpath) != 0)
		goto done;
	if (write_text(out, &im) != 0) {
		unlink(wpath);
		goto done;
	}
	int64_t layers = 0;
	for (int i = 0; i < g->n_nodes; i++)
		layers += g->nodes[i].op != IR_OP_PARAM && g->nodes[i].op != IR_OP_INPUT;
	fprintf(stderr,
	        "netcc: wrote %s (model '%s', %lld layers) and %s (%d tensors, %lld bytes)\n",
	        strcmp(out, "-") ? out : "standard output", name, (long long)layers, wpath,
	        im.n_weights, (long long)ir_graph_param_bytes(g));
	rc = 0;
done:
	ir_graph_free(g);
	onnx_import_free(&im);
	return rc;
}

/* netcc run: execute a model on .npy inputs and write .npy outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "passes.h"
#include "driver.h"
#include "runtime.h"

static int read_input(const ir_graph *g, int i, const char *path, rt_array *a)
{
	char err[512], want[96], got[96];
	if (rt_npy_read(strcmp(path, "-") ? path : "/dev/stdin", a, err, sizeof err) != 0 ||
	    rt_array_to_f32(a, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	const ir_shape *s = &g->nodes[g->inputs[i].node].shape;
	bool same = a->rank == s->rank;
	for (int k = 0; same && k < s->rank; k++)
		same = a->dims[k] == s->d[k];
	if (!same) {
		ir_shape as = {.rank = a->rank > IR_MAX_RANK ? IR_MAX_RANK : a->rank};
		for (int k = 0; k < as.rank; k++)
			as.d[k] = a->dims[k];
		fprintf(stderr, "netcc: error: %s: array of shape %s, but input '%s' is %s", path,
		        ir_shape_str(&as, got, sizeof got), g->inputs[i].name,
		        ir_shape_str(s, want, sizeof want));
		if (a->rank > 0 && s->rank == a->rank && a->dims[0] != s->d[0])
			fprintf(stderr, " (--batch %lld would match the array)",
			        (long long)a->dims[0]);
		fputc('\n', stderr);
		rt_array_free(a);
		return 1;
	}
	return 0;
}

/* Without -o, outputs go to stdout: every value of a small output, and for
 * [N, classes] each row's best class. */
static void print_output(const ir_graph *g, int i, const float *y)
{
	const ir_shape *s = &g->nodes[g->outputs[i].node].shape;
	char sb[96];
	size_t count = (size_t)ir_shape_count(s);
	printf("%s %s:", g->outputs[i].name, ir_shape_str(s, sb, sizeof sb));
	for (size_t k = 0; k < count && k < 64; k++)
		printf(" %.6g", y[k]);
	printf("%s\n", count > 64 ? " ..." : "");
	if (s->rank != 2)
		return;
	for (int64_t r = 0; r < s->d[0] && r < 16; r++) {
		const float *row = y + r * s->d[1];
		int64_t best = 0;
		for (int64_t c = 1; c < s->d[1]; c++)
			if (row[c] > row[best])
				best = c;
		printf("  row %lld: class %lld (%.4g)\n", (long long)r, (long long)best, row[best]);
	}
}

/* "-": standard output, for pipes; otherwise written atomically */
static int write_output(const ir_graph *g, int i, const char *path, const float *y)
{
	const ir_shape *s = &g->nodes[g->outputs[i].node].shape;
	char err[512];
	if (strcmp(path, "-")) {
		if (rt_npy_write(path, RT_DTYPE_F32, s->rank, s->d, y, err, sizeof err) == 0)
			return 0;
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	void *buf;
	size_t len;
	if (rt_npy_encode("-", RT_DTYPE_F32, s->rank, s->d, y, &buf, &len, err, sizeof err)) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	bool ok = fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0;
	free(buf);
	if (!ok)
		fprintf(stderr, "netcc: error: -o -: cannot write standard output\n");
	return !ok;
}

typedef struct jit_job {
	ir_graph *g;
	const backend_target *t;
	const float *const *in;
	float *const *out;
	char *err;
	size_t errlen;
} jit_job;

static int jit_run(void *ctx)
{
	jit_job *j = ctx;
	passes_run(j->g, &(passes_options){.opt_level = 2});
	return backend_jit_run(j->g, j->t, j->in, j->out, j->err, j->errlen) != 0;
}

int cmd_run(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "run");
	if (rc)
		return rc < 0 ? 0 : rc;
	backend_target target;
	if (driver_target(&o, &target, true) != 0)
		return 2;
	const char *inputs[IR_MAX_IO], *outputs[IR_MAX_IO];
	int ni = opts_all(&o, "input", inputs, IR_MAX_IO);
	int no = opts_all(&o, "o", outputs, IR_MAX_IO);
	bool ok = true;
	int64_t seed = opts_int(&o, "seed", 0, 0, INT64_MAX, &ok);
	if (!ok)
		return 2;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	rc = 1;
	rt_array in[IR_MAX_IO] = {0};
	float *out[IR_MAX_IO] = {0};
	int loaded = 0;
	if (ni != g->n_inputs || (no != g->n_outputs && no != 0)) {
		fprintf(stderr,
		        "netcc: error: model '%s' has %d input%s and %d output%s: give --input "
		        "FILE.npy for each input, and -o FILE.npy for each output or none to print "
		        "them\n",
		        g->name, g->n_inputs, g->n_inputs == 1 ? "" : "s", g->n_outputs,
		        g->n_outputs == 1 ? "" : "s");
		rc = 2;
		goto done;
	}
	int dashes_in = 0, dashes_out = 0;
	for (int i = 0; i < ni; i++)
		dashes_in += !strcmp(inputs[i], "-");
	for (int i = 0; i < no; i++)
		dashes_out += !strcmp(outputs[i], "-");
	if (dashes_in > 1 || dashes_out > 1) {
		fprintf(stderr, "netcc: error: '-' names standard %s once at most\n",
		        dashes_in > 1 ? "input" : "output");
		rc = 2;
		goto done;
	}
	const char *wpath = opts_str(&o, "weights", NULL);
	driver_weights_warn(&o, "the model runs with");
	if (opts_flag(&o, "reference") && opts_flag(&o, "target"))
		diag_warn("--target has no effect with --reference: the reference executor runs "
		          "no generated code");
	if (driver_warnings_fatal(&o))
		goto done;
	if (wpath) {
		if (backend_weights_load(g, wpath, opts_flag(&o, "allow-nonfinite")) != 0)
			goto done;
	} else if (!driver_model_onnx(&o)) {
		ir_graph_init_he(g, (uint64_t)seed);
	}
	for (; loaded < ni; loaded++)
		if (read_input(g, loaded, inputs[loaded], &in[loaded]) != 0)
			goto done;
	for (int i = 0; i < g->n_outputs; i++) {
		size_t count = (size_t)ir_shape_count(&g->nodes[g->outputs[i].node].shape);
		out[i] = malloc(count * sizeof(float));
		if (!out[i]) {
			fprintf(stderr, "netcc: error: out of memory\n");
			goto done;
		}
	}
	const float *inp[IR_MAX_IO];
	for (int i = 0; i < ni; i++)
		inp[i] = in[i].data;
	char err[512] = "";
	jit_job j = {g, &target, inp, out, err, sizeof err};
	if (opts_flag(&o, "reference") ? interp_run(g, inp, out, err, sizeof err) != 0
	                               : driver_guarded(jit_run, &j) != 0) {
		if (err[0])
			fprintf(stderr, "netcc: error: %s\n", err);
		goto done;
	}
	if (no == 0)
		for (int i = 0; i < g->n_outputs; i++)
			print_output(g, i, out[i]);
	for (int i = 0; i < no; i++)
		if (write_output(g, i, outputs[i], out[i]) != 0)
			goto done;
	rc = 0;
done:
	for (int i = 0; i < loaded; i++)
		rt_array_free(&in[i]);
	for (int i = 0; i < IR_MAX_IO; i++)
		free(out[i]);
	ir_graph_free(g);
	return rc;
}

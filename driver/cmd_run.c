/* netcc run: execute a model on .npy inputs and write .npy outputs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "driver.h"
#include "runtime.h"

static int read_input(const ir_graph *g, int i, const char *path, rt_array *a)
{
	char err[512], want[96], got[96];
	if (rt_npy_read(path, a, err, sizeof err) != 0 || rt_array_to_f32(a, err, sizeof err) != 0) {
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
		fprintf(stderr, "netcc: error: %s: array of shape %s, but input '%s' is %s%s\n",
			path, ir_shape_str(&as, got, sizeof got), g->inputs[i].name,
			ir_shape_str(s, want, sizeof want),
			a->rank > 0 && s->rank == a->rank && a->dims[0] != s->d[0]
				? " (set the batch with --batch)"
				: "");
		rt_array_free(a);
		return 1;
	}
	return 0;
}

int cmd_run(int argc, char **argv)
{
	opts o;
	if (opts_parse(&o, argc, argv, "batch= weights= input* o* reference seed= allow-nonfinite") !=
	    0)
		return 2;
	const char *inputs[IR_MAX_IO], *outputs[IR_MAX_IO];
	int ni = opts_all(&o, "input", inputs, IR_MAX_IO);
	int no = opts_all(&o, "o", outputs, IR_MAX_IO);
	bool ok = true;
	int64_t seed = opts_int(&o, "seed", 0, 0, INT64_MAX, &ok);
	if (!ok)
		return 2;
	ir_graph *g = driver_model_load(&o, 1);
	if (!g)
		return 1;
	int rc = 1;
	rt_array in[IR_MAX_IO] = {0};
	float *out[IR_MAX_IO] = {0};
	int loaded = 0;
	if (ni != g->n_inputs || no != g->n_outputs) {
		fprintf(stderr,
			"netcc: error: model '%s' has %d input%s and %d output%s: give --input "
			"FILE.npy and -o FILE.npy for each\n",
			g->name, g->n_inputs, g->n_inputs == 1 ? "" : "s", g->n_outputs,
			g->n_outputs == 1 ? "" : "s");
		rc = 2;
		goto done;
	}
	const char *wpath = opts_str(&o, "weights", NULL);
	if (wpath) {
		if (weights_load(g, wpath, opts_flag(&o, "allow-nonfinite")) != 0)
			goto done;
	} else {
		ir_graph_init_he(g, (uint64_t)seed);
	}
	for (; loaded < ni; loaded++)
		if (read_input(g, loaded, inputs[loaded], &in[loaded]) != 0)
			goto done;
	for (int i = 0; i < no; i++) {
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
	char err[512];
	if (interp_run(g, inp, out, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		goto done;
	}
	for (int i = 0; i < no; i++) {
		const ir_shape *s = &g->nodes[g->outputs[i].node].shape;
		if (rt_npy_write(outputs[i], RT_DTYPE_F32, s->rank, s->d, out[i], err, sizeof err) !=
		    0) {
			fprintf(stderr, "netcc: error: %s\n", err);
			goto done;
		}
	}
	rc = 0;
done:
	for (int i = 0; i < loaded; i++)
		rt_array_free(&in[i]);
	for (int i = 0; i < IR_MAX_IO; i++)
		free(out[i]);
	ir_graph_free(g);
	return rc;
}

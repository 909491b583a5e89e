/* netcc init: He-initialised weights for a model, as a safetensors file. */
#include <stdio.h>

#include "driver.h"

int cmd_init(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "init");
	if (rc)
		return rc < 0 ? 0 : rc;
	const char *out = opts_str(&o, "o", NULL);
	if (!out) {
		fprintf(stderr, "netcc: error: init needs -o FILE.safetensors\n");
		return 2;
	}
	bool ok = true;
	int64_t seed = opts_int(&o, "seed", 0, 0, INT64_MAX, &ok);
	if (!ok)
		return 2;
	int status;
	ir_graph *g = driver_model_load(&o, 1, &status);
	if (!g)
		return status;
	ir_graph_init_he(g, (uint64_t)seed);
	rc = backend_weights_save(g, out);
	if (rc == 0)
		fprintf(stderr, "netcc: wrote %s (%lld bytes of parameters, seed %lld)\n", out,
		        (long long)ir_graph_param_bytes(g), (long long)seed);
	ir_graph_free(g);
	return rc;
}

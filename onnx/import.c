/* The importer's public face (onnx.h): a file or bytes in, a .nn text and
 * its weights out, or a graph with the weights attached; and the errors. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "onnx_impl.h"
#include "runtime.h"

/* Messages quote names from the file: control bytes in them must not
 * reach a terminal, nor break the one line each error takes. */
static void verror(ox_net *n, const char *node, const char *fmt, va_list ap)
{
	if (n->n_errors++ >= OX_MAX_ERRORS || !n->errs)
		return;
	char msg[1024];
	int len = snprintf(msg, sizeof msg, "%s", node);
	if (len >= 0 && (size_t)len < sizeof msg)
		vsnprintf(msg + len, sizeof msg - (size_t)len, fmt, ap);
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 32 || *c == 127)
			*c = '?';
	fprintf(n->errs, "netcc: error: %s: %s\n", n->path, msg);
}

int ox_error(ox_net *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verror(n, "", fmt, ap);
	va_end(ap);
	return -1;
}

const char *ox_node_label(ox_net *n, int node)
{
	const char *name = n->g->node[node]->name;
	if (name && *name)
		return name;
	return arena_printf(n->a, "#%d", node);
}

int ox_node_error(ox_net *n, int node, const char *fmt, ...)
{
	const char *op = n->g->node[node]->op_type;
	const char *head = arena_printf(n->a, "node '%s' (%s): ", ox_node_label(n, node),
	                                op && *op ? op : "no operator");
	va_list ap;
	va_start(ap, fmt);
	verror(n, head, fmt, ap);
	va_end(ap);
	return -1;
}

const char *onnx_model_name(const char *path, char *buf, size_t len)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strcspn(base, ".");
	size_t o = 0;
	if (n && isdigit((unsigned char)base[0]) && o + 1 < len)
		buf[o++] = 'm';
	for (size_t i = 0; i < n && i < 64 && o + 1 < len; i++)
		buf[o++] = isalnum((unsigned char)base[i]) ? base[i] : '_';
	if (!o)
		o = (size_t)snprintf(buf, len, "model");
	buf[o < len ? o : len - 1] = 0;
	return buf;
}

int onnx_import_bytes(const void *data, size_t len, const char *path, const char *model,
                      onnx_import *im, FILE *errs)
{
	*im = (onnx_import){0};
	ox_net n = {.a = &im->arena, .path = path, .errs = errs};
	int rc = 1;
	Onnx__ModelProto *m = NULL;
	if (ox_wire_check(&n, data, len) != 0)
		goto done;
	m = onnx__model_proto__unpack(NULL, len, data);
	if (!m) {
		ox_error(&n, "not an ONNX model: its protobuf does not follow ONNX's schema");
		goto done;
	}
	n.model = m;
	if (ox_graph_build(&n) != 0 || ox_lower(&n) != 0)
		goto done;
	ox_names_assign(&n);
	const char *name = ox_identifier(n.a, model);
	if (!*name || ox_reserved(name))
		name = arena_printf(n.a, "%s_", *name ? name : "model");
	if (ox_emit(&n, name, im) == 0)
		rc = 0;
done:
	if (n.n_errors > OX_MAX_ERRORS && errs)
		fprintf(errs, "netcc: error: %s: %d more errors\n", path,
		        n.n_errors - OX_MAX_ERRORS);
	if (m)
		onnx__model_proto__free_unpacked(m, NULL);
	if (rc) {
		arena_free(&im->arena);
		*im = (onnx_import){0};
	}
	return rc;
}

int onnx_import_file(const char *path, const char *model, onnx_import *im, FILE *errs)
{
	*im = (onnx_import){0};
	char err[512];
	rt_reader r;
	if (rt_reader_open(&r, strcmp(path, "-") ? path : "/dev/stdin", err, sizeof err) != 0) {
		if (errs)
			fprintf(errs, "netcc: error: %s\n", err);
		return 1;
	}
	if (r.sized && r.size > ONNX_MAX_FILE_BYTES) {
		if (errs)
			fprintf(errs,
			        "netcc: error: %s: %llu bytes; protobuf, and so ONNX, stops at 2 "
			        "GiB (larger models keep their weights in external files, which "
			        "netcc does not read)\n",
			        path, (unsigned long long)r.size);
		rt_reader_close(&r);
		return 1;
	}
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = rt_reader_take(&r, &buf, &len, ONNX_MAX_FILE_BYTES + 1, err, sizeof err);
	rt_reader_close(&r);
	if (rc != 0) {
		if (errs)
			fprintf(errs, "netcc: error: %s\n", err);
		free(buf);
		return 1;
	}
	if (len > ONNX_MAX_FILE_BYTES) {
		if (errs)
			fprintf(errs, "netcc: error: %s: more than 2 GiB, protobuf's limit\n",
			        path);
		free(buf);
		return 1;
	}
	rc = onnx_import_bytes(buf, len, path, model, im, errs);
	free(buf);
	return rc;
}

/* The front end makes the parameters in the order the weights are
 * listed: the next one is the one, but for a bug (then searched, for
 * the message). */
static const onnx_weight *weight_find(const onnx_import *im, const char *name, int *next)
{
	if (*next < im->n_weights && !strcmp(im->weights[*next].name, name))
		return &im->weights[(*next)++];
	for (int i = 0; i < im->n_weights; i++)
		if (!strcmp(im->weights[i].name, name))
			return &im->weights[i];
	return NULL;
}

ir_graph *onnx_import_graph(const onnx_import *im, const char *path, int64_t batch)
{
	ir_graph *g = frontend_graph_parse(path, im->text, im->len, batch);
	if (!g)
		return NULL;
	int params = 0, next = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		ir_node *p = &g->nodes[i];
		if (p->op != IR_OP_PARAM)
			continue;
		params++;
		const onnx_weight *w = weight_find(im, p->name, &next);
		char a[96], b[96];
		if (!w || !ir_shape_eq(&w->shape, &p->shape)) {
			fprintf(
			    diag_output(),
			    "netcc: error: %s: internal: the imported model's parameter '%s' %s "
			    "has %s\n",
			    path, p->name, ir_shape_str(&p->shape, a, sizeof a),
			    w ? ir_shape_str(&w->shape, b, sizeof b) : "no weights");
			ir_graph_free(g);
			return NULL;
		}
		size_t count = (size_t)ir_shape_count(&p->shape);
		p->data = arena_array(&g->arena, count ? count : 1, sizeof(float));
		memcpy(p->data, w->data, count * sizeof(float));
	}
	if (params != im->n_weights) {
		fprintf(diag_output(),
		        "netcc: error: %s: internal: the imported model has %d parameters for %d "
		        "weights\n",
		        path, params, im->n_weights);
		ir_graph_free(g);
		return NULL;
	}
	return g;
}

void onnx_import_free(onnx_import *im)
{
	arena_free(&im->arena);
	*im = (onnx_import){0};
}

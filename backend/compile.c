/* netcc's main job, end to end: a planned graph to a shared object and
 * its header, or to LLVM IR, assembly or an object file for inspection. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "runtime.h"

double backend_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void backend_phase(backend_phases *p, const char *name, double since)
{
	if (p && p->n < BACKEND_MAX_PHASES) {
		p->name[p->n] = name;
		p->seconds[p->n++] = backend_now() - since;
	}
}

void backend_raw_weights(const ir_graph *g, float *raw)
{
	for (int i = 0; i < g->n_nodes; i++) {
		const ir_node *n = &g->nodes[i];
		if (n->op != IR_OP_PARAM)
			continue;
		size_t bytes = (size_t)ir_shape_count(&n->shape) * sizeof(float);
		if (n->data)
			memcpy((char *)raw + n->raw_offset, n->data, bytes);
		else
			memset((char *)raw + n->raw_offset, 0, bytes);
	}
}

/* The header goes beside the library: out/libresnet18.so -> out/resnet18.h. */
static char *header_path(const backend_options *o)
{
	const char *slash = strrchr(o->output, '/');
	size_t dir = slash ? (size_t)(slash - o->output) + 1 : 0;
	char *p = malloc(dir + strlen(o->name) + 3);
	if (!p)
		diag_fatal("out of memory");
	memcpy(p, o->output, dir);
	strcpy(p + dir, o->name);
	strcat(p, ".h");
	return p;
}

/* The object, the library and the header, each through a temporary beside
 * the library, with the signals that would stop netcc held meanwhile (a
 * second or two): an interrupted compile leaves the old outputs or the
 * new ones and no temporary (one a SIGKILL leaves, the next compile of
 * that output removes). The header goes first: if it cannot be written,
 * the old library stays. */
static int write_library(const ir_graph *g, const backend_options *o, LLVMModuleRef m,
                         LLVMTargetMachineRef tm, double *t)
{
	char *h = header_path(o), *obj = NULL, *lib = NULL, err[1024];
	if (!strcmp(h, o->output)) {
		fprintf(diag_output(),
		        "netcc: error: -o %s is where the header %s.h goes: name the library "
		        "lib%s.so or another name\n",
		        o->output, o->name, o->name);
		free(h);
		return 1;
	}
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	sigaddset(&stop, SIGQUIT);
	sigprocmask(SIG_BLOCK, &stop, &old);
	int rc = 1, fd = rt_file_temp(o->output, &obj, err, sizeof err);
	if (fd >= 0)
		close(fd), fd = rt_file_temp(o->output, &lib, err, sizeof err);
	if (fd < 0) {
		fprintf(diag_output(), "netcc: error: %s\n", err);
		goto done;
	}
	close(fd);
	rc = backend_emit(m, tm, BACKEND_EMIT_OBJ, obj);
	backend_phase(o->phases, "emit object", *t);
	*t = backend_now();
	const char *base = strrchr(o->output, '/');
	base = base ? base + 1 : o->output;
	if (rc == 0)
		rc = o->archive ? backend_archive(obj, lib, o->name, o->target)
		                : backend_link(obj, lib, base, o->target);
	backend_phase(o->phases, "link", *t);
	if (rc == 0)
		rc = backend_header_write(g, o, h);
	if (rc == 0 &&
	    rt_file_commit(lib, o->output, o->archive ? 0644 : 0755, err, sizeof err) != 0) {
		fprintf(diag_output(), "netcc: error: %s\n", err);
		rc = 1;
	}
done:
	if (obj)
		unlink(obj);
	if (lib && rc)
		unlink(lib);
	free(obj);
	free(lib);
	free(h);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int backend_compile(const ir_graph *g, const backend_options *o)
{
	double t = backend_now();
	float *prepared = NULL;
	if (o->embed_weights) {
		/* a trainable library embeds its initial training state instead */
		const ir_graph *w = o->train ? o->train : g;
		prepared = calloc((size_t)w->plan.weight_bytes / sizeof(float) + 1, sizeof(float));
		char err[256];
		if (!prepared || interp_prepare(w, o->target->mr, prepared, err, sizeof err) != 0) {
			fprintf(diag_output(), "netcc: error: preparing weights: %s\n",
			        prepared ? err : "out of memory");
			free(prepared);
			return 1;
		}
		backend_phase(o->phases, "prepare weights", t);
		t = backend_now();
	}
	LLVMContextRef ctx = LLVMContextCreate();
	LLVMModuleRef m = backend_module_build(ctx, g, o->train, o->target, o->name, prepared,
	                                       BACKEND_MODULE_LIBRARY);
	free(prepared);
	LLVMTargetMachineRef tm = backend_target_machine(o->target, o->opt_level);
	backend_module_target(m, tm, o->target);
	backend_phase(o->phases, "codegen", t);
	t = backend_now();
	backend_optimize(m, tm, o->opt_level);
	backend_phase(o->phases, o->opt_level ? "optimize (O3)" : "optimize (O0)", t);
	t = backend_now();

	int rc;
	if (o->emit != BACKEND_EMIT_SO) {
		rc = backend_emit(m, tm, o->emit, o->output);
		backend_phase(o->phases, "emit", t);
	} else {
		rc = write_library(g, o, m, tm, &t);
	}
	LLVMDisposeModule(m);
	LLVMDisposeTargetMachine(tm);
	LLVMContextDispose(ctx);
	return rc;
}

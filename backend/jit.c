/* netcc run and netcc train without writing files: the module a library
 * would hold, compiled in memory by ORC's LLJIT for a target this machine
 * runs. The kernels are the target's kernel set, loaded as the object the
 * build made of it (lib/netcc/SET/kernels.o); the rest of the runtime
 * (threads, files) resolves against the netcc process itself. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "backend.h"
#include "runtime.h"

struct backend_jit {
	LLVMOrcLLJITRef jit;
	LLVMOrcThreadSafeContextRef tsc;
	backend_prepare_fn *prepare;
	backend_forward_fn *forward;
};

static int llvm_failed(LLVMErrorRef e, const char *what, char *err, size_t errlen)
{
	char *msg = LLVMGetErrorMessage(e);
	snprintf(err, errlen, "JIT: %s: %s", what, msg);
	LLVMDisposeErrorMessage(msg);
	return -1;
}

static int lookup(backend_jit *j, const char *prefix, const char *what, void **fn, char *err,
                  size_t errlen)
{
	char name[256];
	snprintf(name, sizeof name, "%s__%s", prefix, what);
	LLVMOrcExecutorAddress a;
	LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &a, name);
	if (e)
		return llvm_failed(e, name, err, errlen);
	*fn = (void *)(uintptr_t)a;
	return 0;
}

void backend_jit_free(backend_jit *j)
{
	if (!j)
		return;
	if (j->jit)
		LLVMOrcDisposeLLJIT(j->jit);
	if (j->tsc)
		LLVMOrcDisposeThreadSafeContext(j->tsc);
	free(j);
}

/* The target's kernel set, as one object in the JIT's main library: its
 * definitions come before the process's own (netcc's set, maybe another). */
static LLVMErrorRef add_kernels(backend_jit *j, LLVMOrcJITDylibRef jd, const backend_target *t,
                                char *err, size_t errlen)
{
	char dir[PATH_MAX + 64], path[PATH_MAX + 96];
	if (backend_kset_dir(t, dir, sizeof dir) != 0)
		return LLVMCreateStringError(dir);
	snprintf(path, sizeof path, "%s/kernels.o", dir);
	LLVMMemoryBufferRef buf;
	char *msg = NULL;
	if (LLVMCreateMemoryBufferWithContentsOfFile(path, &buf, &msg)) {
		char text[PATH_MAX + 400];
		snprintf(text, sizeof text, "cannot read %s: %s", path, msg ? msg : "?");
		LLVMDisposeMessage(msg);
		return LLVMCreateStringError(text);
	}
	return LLVMOrcLLJITAddObjectFile(j->jit, jd, buf);
}

backend_jit *backend_jit_compile(const ir_graph *g, const backend_target *t, int opt_level,
                                 const char *prefix, bool profile, char *err, size_t errlen)
{
	char why[256];
	if (!backend_target_runs_here(t, why, sizeof why)) {
		snprintf(err, errlen, "--target %s cannot run here: %s", t->name, why);
		return NULL;
	}
	backend_jit *j = calloc(1, sizeof *j);
	if (!j) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	j->tsc = LLVMOrcCreateNewThreadSafeContext();
	LLVMModuleRef m =
	    backend_module_build(LLVMOrcThreadSafeContextGetContext(j->tsc), g, NULL, t, prefix,
	                         NULL, profile ? BACKEND_MODULE_PROFILE : 0);
	LLVMTargetMachineRef tm = backend_target_machine(t, opt_level);
	backend_module_target(m, tm, t);
	backend_optimize(m, tm, opt_level);

	/* the builder takes the target machine */
	LLVMOrcJITTargetMachineBuilderRef jtmb =
	    LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm);
	LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
	LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb);
	LLVMErrorRef e;
	if ((e = LLVMOrcCreateLLJIT(&j->jit, jb))) {
		LLVMDisposeModule(m);
		llvm_failed(e, "creating the JIT", err, errlen);
		goto fail;
	}
	LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(j->jit);
	if ((e = add_kernels(j, jd, t, err, errlen))) {
		LLVMDisposeModule(m);
		llvm_failed(e, "loading the kernels", err, errlen);
		goto fail;
	}
	LLVMOrcDefinitionGeneratorRef gen;
	if ((e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
	         &gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL))) {
		LLVMDisposeModule(m);
		llvm_failed(e, "resolving runtime symbols", err, errlen);
		goto fail;
	}
	LLVMOrcJITDylibAddGenerator(jd, gen);
	LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, j->tsc);
	if ((e = LLVMOrcLLJITAddLLVMIRModule(j->jit, jd, tsm))) {
		LLVMOrcDisposeThreadSafeModule(tsm);
		llvm_failed(e, "adding the module", err, errlen);
		goto fail;
	}
	if (lookup(j, prefix, "prepare", (void **)&j->prepare, err, errlen) != 0 ||
	    lookup(j, prefix, "forward", (void **)&j->forward, err, errlen) != 0)
		goto fail;
	return j;
fail:
	backend_jit_free(j);
	return NULL;
}

void *backend_jit_kernel(const backend_jit *j, const char *name)
{
	LLVMOrcExecutorAddress a;
	LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &a, name);
	if (e) {
		LLVMConsumeError(e);
		return NULL;
	}
	return (void *)(uintptr_t)a;
}

backend_prepare_fn *backend_jit_prepare(const backend_jit *j)
{
	return j->prepare;
}

backend_forward_fn *backend_jit_forward(const backend_jit *j)
{
	return j->forward;
}

int backend_threads(void)
{
	const char *env = getenv("NETCC_THREADS");
	return env && *env ? atoi(env) : 0;
}

void *backend_workspace_new(const ir_graph *g)
{
	return rt_alloc_large((size_t)g->plan.arena_bytes);
}

int backend_jit_run(const ir_graph *g, const backend_target *t, const float *const *in,
                    float *const *out, char *err, size_t errlen)
{
	backend_jit *j = backend_jit_compile(g, t, 2, "netcc_jit", false, err, errlen);
	if (!j)
		return -1;
	float *raw = calloc((size_t)g->plan.raw_bytes / 4 + 1, sizeof(float));
	float *w = calloc((size_t)g->plan.weight_bytes / 4 + 1, sizeof(float));
	void *ws = backend_workspace_new(g);
	rt_threads *threads = rt_threads_create(backend_threads());
	int rc = 0;
	if (!raw || !w || !ws || !threads) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	} else {
		backend_raw_weights(g, raw);
		j->prepare(raw, w);
		j->forward(w, ws, (const void *const *)in, out, threads);
	}
	rt_threads_destroy(threads);
	free(raw);
	free(w);
	free(ws);
	backend_jit_free(j);
	return rc;
}

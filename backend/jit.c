/* netcc run without writing files: the same module a library would hold,
 * compiled in memory by ORC's LLJIT. Runtime symbols resolve against the
 * netcc process itself, which carries the whole runtime. */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "backend.h"
#include "runtime.h"

static int llvm_failed(LLVMErrorRef e, const char *what, char *err, size_t errlen)
{
	char *msg = LLVMGetErrorMessage(e);
	snprintf(err, errlen, "JIT: %s: %s", what, msg);
	LLVMDisposeErrorMessage(msg);
	return -1;
}

typedef void prepare_fn(const float *raw, float *prepared);
typedef void forward_fn(const float *w, void *ws, const float *const *in, float *const *out);

static int execute(LLVMOrcLLJITRef jit, const ir_graph *g, const float *const *in,
		   float *const *out, char *err, size_t errlen)
{
	LLVMOrcExecutorAddress pa, fa;
	LLVMErrorRef e;
	if ((e = LLVMOrcLLJITLookup(jit, &pa, "netcc_jit__prepare")))
		return llvm_failed(e, "looking up prepare", err, errlen);
	if ((e = LLVMOrcLLJITLookup(jit, &fa, "netcc_jit__forward")))
		return llvm_failed(e, "looking up forward", err, errlen);
	prepare_fn *prepare = (prepare_fn *)(uintptr_t)pa;
	forward_fn *forward = (forward_fn *)(uintptr_t)fa;
	size_t ws_bytes = ((size_t)g->plan.arena_bytes + 63) & ~(size_t)63;
	float *raw = calloc((size_t)g->plan.raw_bytes / 4 + 1, sizeof(float));
	float *w = calloc((size_t)g->plan.weight_bytes / 4 + 1, sizeof(float));
	void *ws = aligned_alloc(64, ws_bytes ? ws_bytes : 64);
	int rc = 0;
	if (!raw || !w || !ws) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	} else {
		backend_raw_weights(g, raw);
		prepare(raw, w);
		forward(w, ws, in, out);
	}
	free(raw);
	free(w);
	free(ws);
	return rc;
}

int backend_jit_run(const ir_graph *g, const float *const *in, float *const *out, char *err,
		    size_t errlen)
{
	LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
	LLVMModuleRef m =
		backend_module_build(LLVMOrcThreadSafeContextGetContext(tsc), g, "netcc_jit", NULL,
				     false);
	LLVMTargetMachineRef tm = backend_host_machine();
	backend_module_target(m, tm);
	backend_optimize(m, tm);
	LLVMDisposeTargetMachine(tm);

	int rc = -1;
	LLVMOrcLLJITRef jit = NULL;
	LLVMOrcJITTargetMachineBuilderRef jtmb;
	LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
	if (e) {
		LLVMDisposeModule(m);
		rc = llvm_failed(e, "detecting the host", err, errlen);
		goto done;
	}
	LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
	LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb);
	if ((e = LLVMOrcCreateLLJIT(&jit, jb))) {
		LLVMDisposeModule(m);
		rc = llvm_failed(e, "creating the JIT", err, errlen);
		goto done;
	}
	LLVMOrcDefinitionGeneratorRef gen;
	if ((e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
		     &gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL))) {
		LLVMDisposeModule(m);
		rc = llvm_failed(e, "resolving runtime symbols", err, errlen);
		goto done;
	}
	LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit);
	LLVMOrcJITDylibAddGenerator(jd, gen);
	LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc);
	if ((e = LLVMOrcLLJITAddLLVMIRModule(jit, jd, tsm))) {
		LLVMOrcDisposeThreadSafeModule(tsm);
		rc = llvm_failed(e, "adding the module", err, errlen);
		goto done;
	}
	rc = execute(jit, g, in, out, err, errlen);
done:
	if (jit)
		LLVMOrcDisposeLLJIT(jit);
	LLVMOrcDisposeThreadSafeContext(tsc);
	return rc;
}

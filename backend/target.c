/* The host machine as LLVM sees it, the optimisation pipeline, and the
 * emitted forms of a module. */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "backend.h"
#include "runtime.h"

static void init_llvm(void)
{
	static bool done;
	if (done)
		return;
	LLVMInitializeNativeTarget();
	LLVMInitializeNativeAsmPrinter();
	LLVMInitializeNativeAsmParser();
	done = true;
}

LLVMTargetMachineRef backend_host_machine(void)
{
	init_llvm();
	char *triple = LLVMGetDefaultTargetTriple();
	char *cpu = LLVMGetHostCPUName();
	char *features = LLVMGetHostCPUFeatures();
	LLVMTargetRef target;
	char *err = NULL;
	if (LLVMGetTargetFromTriple(triple, &target, &err) != 0)
		diag_fatal("LLVM has no target for %s: %s", triple, err);
	LLVMTargetMachineRef tm =
	    LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive,
	                            LLVMRelocPIC, LLVMCodeModelDefault);
	LLVMDisposeMessage(triple);
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(features);
	if (!tm)
		diag_fatal("cannot create an LLVM target machine for this host");
	return tm;
}

void backend_module_target(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
	char *triple = LLVMGetTargetMachineTriple(tm);
	LLVMSetTarget(m, triple);
	LLVMDisposeMessage(triple);
	LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(m, dl);
	LLVMDisposeTargetData(dl);
}

void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm)
{
	char *msg = NULL;
	if (LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
		diag_fatal("internal: the generated module is invalid:\n%s", msg);
	}
	LLVMDisposeMessage(msg);
	LLVMPassBuilderOptionsRef o = LLVMCreatePassBuilderOptions();
	LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
	LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
	LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
	LLVMPassBuilderOptionsSetLoopInterleaving(o, 1);
	LLVMErrorRef e = LLVMRunPasses(m, "default<O3>", tm, o);
	LLVMDisposePassBuilderOptions(o);
	if (e) {
		char *s = LLVMGetErrorMessage(e);
		diag_fatal("LLVM optimisation failed: %s", s);
	}
}

int backend_emit(LLVMModuleRef m, LLVMTargetMachineRef tm, backend_emit_kind kind, const char *path)
{
	char err[512];
	if (kind == BACKEND_EMIT_LLVM) {
		char *text = LLVMPrintModuleToString(m);
		int rc = rt_file_write_atomic(path, text, strlen(text), err, sizeof err);
		LLVMDisposeMessage(text);
		if (rc)
			fprintf(diag_output(), "netcc: error: %s\n", err);
		return rc;
	}
	LLVMMemoryBufferRef buf;
	char *msg = NULL;
	if (LLVMTargetMachineEmitToMemoryBuffer(
	        tm, m, kind == BACKEND_EMIT_ASM ? LLVMAssemblyFile : LLVMObjectFile, &msg, &buf)) {
		fprintf(diag_output(), "netcc: error: LLVM could not emit code: %s\n", msg);
		LLVMDisposeMessage(msg);
		return 1;
	}
	int rc = rt_file_write_atomic(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), err,
	                              sizeof err);
	LLVMDisposeMemoryBuffer(buf);
	if (rc)
		fprintf(diag_output(), "netcc: error: %s\n", err);
	return rc;
}

/* The targets: what LLVM generates code for, the kernel set the code
 * links, what a library checks of the CPU it runs on; the optimisation
 * pipeline, and the emitted forms of a module. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "backend.h"
#include "kset.h"
#include "runtime.h"

#define X86  "x86_64-pc-linux-gnu"
#define ARM8 "aarch64-unknown-linux-gnu"
/* AVX-512 with what Sapphire Rapids adds that LLVM may emit for it */
#define SPR_NEEDS                                                                                  \
	(RT_CPU_X86_64_V4 | RT_CPU_AVX512BF16 | RT_CPU_AVX512FP16 | RT_CPU_AMX_TILE |              \
	 RT_CPU_AMX_BF16)

static const backend_target targets[] = {
    {.name = "x86-64-v3",
     .triple = X86,
     .cpu = "x86-64-v3",
     .features = "",
     .kset = "avx2",
     .needs = RT_CPU_X86_64_V3,
     .about = "AVX2 and FMA: Haswell, Zen 1 and later"},
    {.name = "x86-64-v4",
     .triple = X86,
     .cpu = "x86-64-v4",
     .features = "",
     .kset = "avx512",
     .needs = RT_CPU_X86_64_V4,
     .about = "AVX-512 (F, BW, CD, DQ, VL): Skylake-SP, Zen 4 and later"},
    {.name = "sapphirerapids",
     .triple = X86,
     .cpu = "sapphirerapids",
     .features = "",
     .kset = "avx512",
     .needs = SPR_NEEDS,
     .about = "AVX-512 with BF16, FP16 and AMX: Xeon 4th generation and later"},
    {.name = "aarch64",
     .triple = ARM8,
     .cpu = "generic",
     .features = "+neon",
     .kset = "neon",
     .needs = RT_CPU_NEON,
     .cc = "aarch64-linux-gnu-gcc",
     .about = "ARMv8-A with NEON, cross-compiled (Debian's gcc-aarch64-linux-gnu links it)"},
};
enum { N_TARGETS = sizeof targets / sizeof targets[0] };

const backend_target *backend_targets(int *n)
{
	*n = N_TARGETS;
	return targets;
}

static bool same_arch(const char *triple)
{
#if defined(__x86_64__)
	return !strncmp(triple, "x86_64", 6);
#elif defined(__aarch64__)
	return !strncmp(triple, "aarch64", 7);
#else
	return false;
#endif
}

bool backend_target_runs_here(const backend_target *t, char *why, size_t len)
{
	if (!same_arch(t->triple)) {
		snprintf(why, len, "%s code does not run on this machine", t->name);
		return false;
	}
	uint64_t missing = t->needs & ~rt_cpu_features();
	if (missing) {
		char names[256];
		snprintf(why, len, "this CPU lacks %s",
		         rt_cpu_feature_names(missing, names, sizeof names));
		return false;
	}
	return true;
}

/* The LLVM name of this host's CPU, for tuning (kept: one per process). */
static const char *host_cpu(void)
{
	static char name[64];
	if (!name[0]) {
		char *s = LLVMGetHostCPUName();
		snprintf(name, sizeof name, "%s", s && *s ? s : "generic");
		LLVMDisposeMessage(s);
	}
	return name;
}

static void finish(backend_target *t)
{
	const rt_kset *k = rt_kset_find(t->kset);
	t->mr = k ? k->mr : 0;
	if (!t->cc) {
		const char *cc = getenv("CC");
		t->cc = cc && *cc ? cc : "cc";
	}
}

int backend_target_get(const char *name, backend_target *t, char *err, size_t errlen)
{
	if (!strcmp(name, "native")) {
		/* the best listed target this CPU runs, tuned for this CPU:
		 * what gcc -march=x86-64-v4 -mtune=native would be, so a
		 * library asks of its CPU only what the list says */
		char why[256];
		int best = -1;
		for (int i = 0; i < N_TARGETS; i++)
			if (backend_target_runs_here(&targets[i], why, sizeof why))
				best = i;
		if (best < 0) {
			snprintf(err, errlen,
			         "--target native: no target runs on this CPU (netcc targets lists "
			         "them and what each needs)");
			return -1;
		}
		*t = targets[best];
		t->native = true;
		t->tune = host_cpu();
		finish(t);
		return 0;
	}
	const char *names[N_TARGETS + 1];
	for (int i = 0; i < N_TARGETS; i++) {
		names[i] = targets[i].name;
		if (!strcmp(name, targets[i].name)) {
			*t = targets[i];
			finish(t);
			return 0;
		}
	}
	names[N_TARGETS] = "native";
	const char *hint = diag_suggest(name, names, N_TARGETS + 1);
	int w = snprintf(err, errlen, "--target %s: no such target", name);
	if (hint && w > 0 && (size_t)w < errlen)
		w += snprintf(err + w, errlen - (size_t)w, "; did you mean '%s'?", hint);
	if (w > 0 && (size_t)w < errlen)
		snprintf(err + w, errlen - (size_t)w, " (netcc targets lists them)");
	return -1;
}

static int dir_has(char *buf, size_t len, const char *dir, const char *kset)
{
	snprintf(buf, len, "%s/%s", dir, kset);
	char probe[PATH_MAX + 64];
	snprintf(probe, sizeof probe, "%s/libnetcc_rt.a", buf);
	return access(probe, R_OK);
}

int backend_kset_dir(const backend_target *t, char *buf, size_t len)
{
	const char *env = getenv("NETCC_RUNTIME");
	if (env && *env) {
		if (dir_has(buf, len, env, t->kset) == 0)
			return 0;
		snprintf(buf, len, "no runtime for %s in NETCC_RUNTIME=%s (no %s/libnetcc_rt.a)",
		         t->name, env, t->kset);
		return -1;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
	if (slash) {
		*slash = 0;
		char dir[PATH_MAX + 32];
		snprintf(dir, sizeof dir, "%s/lib/netcc", exe); /* the build tree */
		if (dir_has(buf, len, dir, t->kset) == 0)
			return 0;
		snprintf(dir, sizeof dir, "%s/../lib/netcc", exe); /* installed */
		if (dir_has(buf, len, dir, t->kset) == 0)
			return 0;
	}
	snprintf(buf, len,
	         "cannot find the runtime for %s (lib/netcc/%s/libnetcc_rt.a beside the netcc "
	         "executable, or ../lib/netcc; or set NETCC_RUNTIME)",
	         t->name, t->kset);
	return -1;
}

static void init_llvm(void)
{
	static bool done;
	if (done)
		return;
	LLVMInitializeAllTargetInfos();
	LLVMInitializeAllTargets();
	LLVMInitializeAllTargetMCs();
	LLVMInitializeAllAsmPrinters();
	LLVMInitializeNativeAsmParser();
	done = true;
}

LLVMTargetMachineRef backend_target_machine(const backend_target *t, int opt_level)
{
	init_llvm();
	LLVMTargetRef target;
	char *err = NULL;
	if (LLVMGetTargetFromTriple(t->triple, &target, &err) != 0)
		diag_fatal("LLVM has no target for %s: %s", t->triple, err);
	LLVMTargetMachineRef tm =
	    LLVMCreateTargetMachine(target, t->triple, t->cpu, t->features,
	                            opt_level ? LLVMCodeGenLevelAggressive : LLVMCodeGenLevelNone,
	                            LLVMRelocPIC, LLVMCodeModelDefault);
	if (!tm)
		diag_fatal("cannot create an LLVM target machine for %s", t->name);
	return tm;
}

void backend_module_target(LLVMModuleRef m, LLVMTargetMachineRef tm, const backend_target *t)
{
	char *triple = LLVMGetTargetMachineTriple(tm);
	LLVMSetTarget(m, triple);
	LLVMDisposeMessage(triple);
	LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
	LLVMSetModuleDataLayout(m, dl);
	LLVMDisposeTargetData(dl);
	if (!t->tune)
		return;
	/* the instructions are the target's, the scheduling this CPU's */
	LLVMContextRef ctx = LLVMGetModuleContext(m);
	LLVMAttributeRef tune =
	    LLVMCreateStringAttribute(ctx, "tune-cpu", 8, t->tune, (unsigned)strlen(t->tune));
	for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
		if (!LLVMIsDeclaration(f))
			LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, tune);
}

void backend_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, int opt_level)
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
	LLVMErrorRef e = LLVMRunPasses(m, opt_level ? "default<O3>" : "default<O0>", tm, o);
	LLVMDisposePassBuilderOptions(o);
	if (e) {
		char *s = LLVMGetErrorMessage(e);
		diag_fatal("LLVM optimisation failed: %s", s);
	}
}

/* "-" is standard output (netcc compile --emit=asm -o - | less) */
static int emit_write(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	if (strcmp(path, "-"))
		return rt_file_write_atomic(path, data, len, err, errlen);
	if (fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0)
		return 0;
	snprintf(err, errlen, "-o -: cannot write standard output");
	return 1;
}

int backend_emit(LLVMModuleRef m, LLVMTargetMachineRef tm, backend_emit_kind kind, const char *path)
{
	char err[512];
	if (kind == BACKEND_EMIT_LLVM) {
		char *text = LLVMPrintModuleToString(m);
		int rc = emit_write(path, text, strlen(text), err, sizeof err);
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
	int rc = emit_write(path, LLVMGetBufferStart(buf), LLVMGetBufferSize(buf), err, sizeof err);
	LLVMDisposeMemoryBuffer(buf);
	if (rc)
		fprintf(diag_output(), "netcc: error: %s\n", err);
	return rc;
}

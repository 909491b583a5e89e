/* Linking an object with the runtime archive of the target's kernel set:
 * into a shared object with the target's C compiler driver, or into a
 * static archive. The runtime's symbols stay private to the library
 * (--exclude-libs for a shared object, localised for an archive), so
 * several netcc libraries can share one program. Nothing beyond libc, libm
 * and libpthread is linked, so a library runs where netcc was never
 * installed and links statically into a program. */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "backend.h"
#include "runtime.h"

extern char **environ;

static int tool_run(char **argv, const backend_target *t)
{
	pid_t pid;
	int st = 0, rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc == 0 && waitpid(pid, &st, 0) < 0)
		rc = errno;
	if (rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(diag_output(), "netcc: error: %s failed%s%s\n", argv[0], rc ? ": " : "",
	        rc ? strerror(rc) : "");
	if (rc == ENOENT)
		fprintf(diag_output(),
		        "netcc: note: --target %s needs %s (scripts/deps.sh installs it)\n",
		        t->name, argv[0]);
	return 1;
}

static int runtime_archive(const backend_target *t, char *rt, size_t len)
{
	char dir[PATH_MAX + 64];
	if (backend_kset_dir(t, dir, sizeof dir) != 0) {
		fprintf(diag_output(), "netcc: error: %s\n", dir);
		return 1;
	}
	snprintf(rt, len, "%s/libnetcc_rt.a", dir);
	return 0;
}

int backend_link(const char *object, const char *output, const char *soname,
                 const backend_target *t)
{
	char rt[PATH_MAX + 96], so[PATH_MAX + 32];
	if (runtime_archive(t, rt, sizeof rt) != 0)
		return 1;
	snprintf(so, sizeof so, "-Wl,-soname,%s", soname);
	char *argv[] = {(char *)t->cc,
	                "-shared",
	                "-o",
	                (char *)output,
	                (char *)object,
	                rt,
	                so,
	                "-Wl,--exclude-libs,ALL",
	                "-Wl,--as-needed",
	                "-Wl,-z,noexecstack",
	                "-lm",
	                "-lpthread",
	                NULL};
	return tool_run(argv, t);
}

/* binutils of the target: aarch64-linux-gnu-gcc -> aarch64-linux-gnu-ar */
static void binutil(const backend_target *t, const char *tool, char *buf, size_t len)
{
	const char *dash = strrchr(t->cc, '-');
	if (dash && !strchr(dash, '/'))
		snprintf(buf, len, "%.*s-%s", (int)(dash - t->cc), t->cc, tool);
	else
		snprintf(buf, len, "%s", tool);
}

int backend_archive(const char *object, const char *output, const char *name,
                    const backend_target *t)
{
	char rt[PATH_MAX + 96], whole[PATH_MAX + 8], keep[160], objcopy[128], ar[128];
	if (runtime_archive(t, rt, sizeof rt) != 0)
		return 1;
	/* one relocatable object: the model and the runtime members it needs */
	snprintf(whole, sizeof whole, "%s.r.o", output);
	char *ld[] = {(char *)t->cc, "-r", "-nostdlib", "-o", whole, (char *)object, rt, NULL};
	int rc = tool_run(ld, t);
	/* only NAME_* stays global: two models' archives link into one program */
	snprintf(keep, sizeof keep, "--keep-global-symbol=%s_*", name);
	binutil(t, "objcopy", objcopy, sizeof objcopy);
	char *oc[] = {objcopy, "-w", keep, whole, NULL};
	if (rc == 0)
		rc = tool_run(oc, t);
	binutil(t, "ar", ar, sizeof ar);
	char *arv[] = {ar, "rcsD", (char *)output, whole, NULL};
	if (rc == 0) {
		unlink(output); /* a temporary rt_file_temp made: ar would append */
		rc = tool_run(arv, t);
	}
	unlink(whole);
	return rc;
}

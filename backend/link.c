/* Linking an object into a shared object with the target's C compiler
 * driver: the runtime archive of the target's kernel set, and libm. The
 * runtime's symbols stay private to the library (--exclude-libs), so
 * several netcc libraries can share one program. Nothing beyond libc, libm
 * and libpthread is linked, so a library runs where netcc was never
 * installed and links statically into a program. */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "backend.h"
#include "runtime.h"

extern char **environ;

int backend_link(const char *object, const char *output, const backend_target *t)
{
	char dir[PATH_MAX + 64], rt[PATH_MAX + 96];
	if (backend_kset_dir(t, dir, sizeof dir) != 0) {
		fprintf(diag_output(), "netcc: error: %s\n", dir);
		return 1;
	}
	snprintf(rt, sizeof rt, "%s/libnetcc_rt.a", dir);
	const char *cc = t->cc;
	char *argv[] = {(char *)cc,
	                "-shared",
	                "-o",
	                (char *)output,
	                (char *)object,
	                rt,
	                "-Wl,--exclude-libs,ALL",
	                "-Wl,--as-needed",
	                "-Wl,-z,noexecstack",
	                "-lm",
	                "-lpthread",
	                NULL};
	pid_t pid;
	int st = 0, rc = posix_spawnp(&pid, cc, NULL, NULL, argv, environ);
	if (rc == 0 && waitpid(pid, &st, 0) < 0)
		rc = errno;
	if (rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(diag_output(), "netcc: error: linking with %s failed%s%s\n", cc,
		        rc ? ": " : "", rc ? strerror(rc) : "");
		if (rc == ENOENT)
			fprintf(diag_output(),
			        "netcc: note: --target %s links with %s (scripts/deps.sh installs "
			        "it)\n",
			        t->name, cc);
		return 1;
	}
	return 0;
}

/* Linking an object into a shared object with the system's C compiler
 * driver: the runtime archive that sits beside the netcc executable,
 * and cJSON. The runtime's symbols stay private to the library
 * (--exclude-libs), so several netcc libraries can share one program. */
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend.h"
#include "runtime.h"

extern char **environ;

static int runtime_archive(char *buf, size_t len)
{
	const char *env = getenv("NETCC_RUNTIME");
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return -1;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -1;
	*slash = 0;
	snprintf(buf, len, "%s/libnetcc_out.a", exe);
	return access(buf, R_OK);
}

int backend_link(const char *object, const char *output)
{
	char rt[PATH_MAX + 32];
	if (runtime_archive(rt, sizeof rt) != 0) {
		fprintf(diag_output(),
		        "netcc: error: cannot find the runtime library libnetcc_out.a beside the "
		        "netcc executable (set NETCC_RUNTIME)\n");
		return 1;
	}
	size_t olen = strlen(output);
	char *tmp = malloc(olen + 16);
	if (!tmp)
		diag_fatal("out of memory");
	snprintf(tmp, olen + 16, "%s.tmpXXXXXX", output);
	int fd = mkstemp(tmp);
	if (fd < 0) {
		fprintf(diag_output(), "netcc: error: cannot write %s: %s\n", output,
		        strerror(errno));
		free(tmp);
		return 1;
	}
	close(fd);
	const char *cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
	char *argv[] = {(char *)cc,
	                "-shared",
	                "-o",
	                tmp,
	                (char *)object,
	                rt,
	                "-Wl,--exclude-libs,ALL",
	                "-Wl,--as-needed",
	                "-Wl,-z,noexecstack",
	                "-lcjson",
	                "-lm",
	                "-lpthread",
	                NULL};
	pid_t pid;
	int st = 0, rc = posix_spawnp(&pid, cc, NULL, NULL, argv, environ);
	if (rc == 0 && waitpid(pid, &st, 0) < 0)
		rc = errno;
	if (rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(diag_output(), "netcc: error: linking %s with %s failed%s%s\n", output, cc,
		        rc ? ": " : "", rc ? strerror(rc) : "");
		unlink(tmp);
		free(tmp);
		return 1;
	}
	/* mkstemp made it 0600; a library is for every user, like cc's output */
	mode_t mask = umask(0);
	umask(mask);
	if (chmod(tmp, 0755 & ~mask) != 0 || rename(tmp, output) != 0) {
		fprintf(diag_output(), "netcc: error: cannot write %s: %s\n", output,
		        strerror(errno));
		unlink(tmp);
		free(tmp);
		return 1;
	}
	free(tmp);
	return 0;
}

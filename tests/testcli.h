/* testcli.h: running the netcc executable from a Check suite.
 *
 *   cli_tmp_make("weights");                 // a fresh /tmp/netcc_weights_XXXXXX
 *   char *err;
 *   int rc = cli_netcc(&err, "weights %s -o %s/w.safetensors", model, cli_tmp);
 *   ck_assert_ptr_nonnull(strstr(err, "error:"));
 *   free(err);
 *   cli_tmp_remove();
 *
 * The command runs from the repository root (NETCC_ROOT) with the build's
 * netcc (NETCC_BIN); its standard output goes to cli_tmp/stdout. */
#ifndef NETCC_TESTCLI_H
#define NETCC_TESTCLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char cli_tmp[256];

static inline void cli_tmp_make(const char *what)
{
	snprintf(cli_tmp, sizeof cli_tmp, "/tmp/netcc_%s_XXXXXX", what);
	ck_assert_ptr_nonnull(mkdtemp(cli_tmp));
}

static inline void cli_tmp_remove(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", cli_tmp);
	ck_assert_int_eq(system(cmd), 0);
}

static inline bool cli_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* netcc with args (a printf format); its exit status and its standard
 * error (malloc'd) */
static inline int cli_netcc(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int cli_netcc(char **err, const char *fmt, ...)
{
	char args[4096], cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s/stdout' 2>'%s/stderr'",
	         test_env("NETCC_ROOT", "."), test_env("NETCC_BIN", "build/netcc"), args, cli_tmp,
	         cli_tmp);
	int st = system(cmd);
	char path[600];
	snprintf(path, sizeof path, "%s/stderr", cli_tmp);
	*err = test_slurp(path, NULL);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline const char *cli_root_path(const char *rel)
{
	static char buf[1024];
	snprintf(buf, sizeof buf, "%s/%s", test_env("NETCC_ROOT", "."), rel);
	return buf;
}

#endif

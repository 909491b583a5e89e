/* Crash-safe output: a file is written beside its destination and renamed
 * over it only once complete and synced, so readers see the old file or the
 * new one, never half of either. The temporary is named after the process
 * that writes it (PATH.tmp.PID.XXXXXX), so that what a killed writer left
 * is recognised, and removed, by the next one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"

/* Temporaries of path that processes no longer running left beside it. */
static void remove_stale(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char dir[4096];
	size_t dlen = slash ? (size_t)(slash - path) : 0;
	if (dlen >= sizeof dir)
		return;
	snprintf(dir, sizeof dir, "%.*s", (int)dlen, path);
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (!dlen)
		snprintf(dir, sizeof dir, "/");
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t blen = strlen(base);
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp.", 5) != 0)
			continue;
		char *end;
		long pid = strtol(n + blen + 5, &end, 10);
		if (end == n + blen + 5 || *end != '.' || pid <= 0 || pid == (long)getpid())
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* its writer may still be at work */
		char full[8192];
		if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, n) < sizeof full)
			unlink(full);
	}
	closedir(d);
}

int rt_file_temp(const char *path, char **tmp, char *err, size_t errlen)
{
	*tmp = NULL;
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(err, errlen,
		         "%s is %s, not a regular file: netcc replaces only files (remove it, or "
		         "name another output)",
		         path,
		         S_ISLNK(st.st_mode)    ? "a symbolic link"
		         : S_ISDIR(st.st_mode)  ? "a directory"
		         : S_ISFIFO(st.st_mode) ? "a FIFO"
		         : S_ISCHR(st.st_mode)  ? "a character device"
		         : S_ISBLK(st.st_mode)  ? "a block device"
		                                : "a special file");
		return -1;
	}
	remove_stale(path);
	size_t need = strlen(path) + 40;
	char *t = malloc(need);
	if (!t) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	snprintf(t, need, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
	int fd = mkstemp(t);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot create a temporary file beside it: %s", path,
		         strerror(errno));
		free(t);
		return -1;
	}
	*tmp = t;
	return fd;
}

int rt_file_commit(const char *tmp, const char *path, unsigned mode, char *err, size_t errlen)
{
	/* mkstemp creates 0600; outputs should look like any other file. */
	mode_t mask = umask(0);
	umask(mask);
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) { /* appeared meanwhile */
		snprintf(err, errlen, "%s is no longer a regular file: not replaced", path);
		unlink(tmp);
		return -1;
	}
	if (chmod(tmp, (mode_t)mode & ~mask) != 0 || rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: cannot rename into place: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int rt_file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	char *tmp;
	int fd = rt_file_temp(path, &tmp, err, errlen);
	if (fd < 0)
		return -1;
	const char *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "%s: write failed: %s", path,
			         strerror(w < 0 ? errno : EIO));
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot finish writing: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		snprintf(err, errlen, "%s: close failed: %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	int rc = rt_file_commit(tmp, path, 0666, err, errlen);
	free(tmp);
	return rc;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

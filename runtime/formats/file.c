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

/* ---- checked reading ----------------------------------------------------- */

/* A format reader asks for its header first and checks what the header
 * claims against the file's size before it allocates anything for the data:
 * a 1 GB file with a bad header costs its header, and /dev/zero or a pipe is
 * read only as far as the header says, then must end. */

int rt_reader_open(rt_reader *r, const char *path, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	r->path = path;
	r->f = fopen(path, "rb");
	if (!r->f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(r->f), &st) != 0) {
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		rt_reader_close(r);
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: is a directory, not a file", path);
		rt_reader_close(r);
		return -1;
	}
	r->sized = S_ISREG(st.st_mode);
	r->size = r->sized ? (uint64_t)st.st_size : 0;
	return 0;
}

void rt_reader_close(rt_reader *r)
{
	if (r->f)
		fclose(r->f);
	r->f = NULL;
}

int rt_reader_take(rt_reader *r, unsigned char **buf, size_t *len, size_t n, char *err,
                   size_t errlen)
{
	/* A sized file gets its bytes in one allocation; a stream's buffer grows
	 * only as bytes arrive, so one that ends early, or a header that lies,
	 * costs what the stream held rather than what was claimed. */
	if (n > SIZE_MAX - *len)
		goto oom;
	size_t want = n, chunk = (size_t)1 << 16;
	if (r->sized)
		want = r->pos >= r->size      ? 0
		       : r->size - r->pos < n ? (size_t)(r->size - r->pos)
		                              : n;
	size_t goal = *len + want, have = *len;
	size_t cap = *len + (r->sized || want < chunk ? want : chunk);
	unsigned char *b = realloc(*buf, cap ? cap : 1);
	if (!b)
		goto oom;
	*buf = b;
	while (have < goal) {
		if (have == cap) {
			size_t grow = cap - *len;
			cap = goal - cap < grow ? goal : cap + grow;
			b = realloc(*buf, cap);
			if (!b)
				goto oom;
			*buf = b;
		}
		size_t got = fread(*buf + have, 1, cap - have, r->f);
		have += got;
		r->pos += got;
		if (got == 0)
			break;
	}
	*len = have;
	if (ferror(r->f)) {
		snprintf(err, errlen, "%s: read failed: %s", r->path, strerror(errno));
		return -1;
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory for %zu bytes", r->path, n);
	return -1;
}

int rt_reader_read(rt_reader *r, void *buf, size_t n, size_t *got, char *err, size_t errlen)
{
	*got = fread(buf, 1, n, r->f);
	r->pos += *got;
	if (ferror(r->f)) {
		snprintf(err, errlen, "%s: read failed: %s", r->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* How many bytes follow: a sized file's count is exact; a stream's is what
 * a bounded drain finds, so that /dev/zero after a good header is reported,
 * not read forever. */
uint64_t rt_reader_rest(rt_reader *r, int *at_least)
{
	*at_least = 0;
	if (r->sized) {
		/* the file may have changed: believe the reads */
		unsigned char c;
		if (fread(&c, 1, 1, r->f) == 0)
			return 0;
		return r->size > r->pos ? r->size - r->pos : 1;
	}
	unsigned char scratch[4096];
	uint64_t n = 0;
	while (n < RT_READER_DRAIN) {
		size_t got = fread(scratch, 1, sizeof scratch, r->f);
		if (got == 0)
			return n;
		n += got;
	}
	*at_least = 1;
	return n;
}

/* Training data: IDX image sets (MNIST's format), checked against the model
 * before any time is spent compiling or training. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train.h"
#include "runtime.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* DIR/NAME, else DIR/NAME.gz: datasets ship either way. */
static int data_file_find(const char *dir, const char *name, char *path, size_t len)
{
	struct stat st;
	snprintf(path, len, "%s/%s", dir, name);
	if (stat(path, &st) == 0)
		return 0;
	snprintf(path, len, "%s/%s.gz", dir, name);
	if (stat(path, &st) == 0)
		return 0;
	fprintf(stderr, "netcc: error: %s: found neither %s nor %s.gz\n", dir, name, name);
	return 1;
}

static void dims_text(const rt_array *a, char *buf, size_t len)
{
	size_t at = 0;
	at += (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < a->rank && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "",
		                       (long long)a->dims[i]);
	if (at < len)
		snprintf(buf + at, len - at, "]");
}

static int images_check(const char *path, const rt_array *a, const int64_t chw[3])
{
	char got[128];
	dims_text(a, got, sizeof got);
	if (a->dtype != RT_DTYPE_U8) {
		fprintf(stderr, "netcc: error: %s: images must be uint8 (IDX type 0x08), not %s\n",
		        path, rt_dtype_name(a->dtype));
		return 1;
	}
	if (a->rank != 3 && a->rank != 4) {
		fprintf(stderr,
		        "netcc: error: %s: images must be [N, H, W] or [N, C, H, W], not %s\n",
		        path, got);
		return 1;
	}
	int64_t c = a->rank == 4 ? a->dims[1] : 1;
	int64_t h = a->dims[a->rank - 2], w = a->dims[a->rank - 1];
	if (c != chw[0] || h != chw[1] || w != chw[2]) {
		fprintf(stderr,
		        "netcc: error: %s: images are %lldx%lldx%lld (C x H x W, from %s), but the "
		        "model takes %lldx%lldx%lld\n",
		        path, (long long)c, (long long)h, (long long)w, got, (long long)chw[0],
		        (long long)chw[1], (long long)chw[2]);
		return 1;
	}
	if (a->dims[0] == 0) {
		fprintf(stderr, "netcc: error: %s: holds no images\n", path);
		return 1;
	}
	return 0;
}

static int labels_check(const char *path, const rt_array *a, const char *ipath, int64_t n,
                        int64_t classes)
{
	char got[128];
	dims_text(a, got, sizeof got);
	if (a->dtype != RT_DTYPE_U8 || a->rank != 1) {
		fprintf(stderr, "netcc: error: %s: labels must be uint8 [N], not %s %s\n", path,
		        rt_dtype_name(a->dtype), got);
		return 1;
	}
	if (a->dims[0] != n) {
		fprintf(stderr, "netcc: error: %s: %lld labels, but %s holds %lld images\n", path,
		        (long long)a->dims[0], ipath, (long long)n);
		return 1;
	}
	const uint8_t *l = a->data;
	for (int64_t i = 0; i < n; i++)
		if (l[i] >= classes) {
			fprintf(stderr,
			        "netcc: error: %s: label %d of example %lld is outside [0, %lld) "
			        "(the model has %lld classes)\n",
			        path, l[i], (long long)i, (long long)classes, (long long)classes);
			return 1;
		}
	return 0;
}

static int data_dir(const char *data, char *dir, size_t len)
{
	bool fashion = !strcmp(data, "fashion-mnist");
	snprintf(dir, len, "%s", fashion ? FASHION_MNIST_DIR : data);
	struct stat st;
	int rc = stat(dir, &st);
	if (rc == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (fashion)
		fprintf(stderr,
		        "netcc: error: --data fashion-mnist reads %s, which is missing: install "
		        "Debian's dataset-fashion-mnist (scripts/deps.sh does)\n",
		        dir);
	else
		fprintf(stderr,
		        "netcc: error: --data %s: %s (give fashion-mnist, or a directory of IDX "
		        "files)\n",
		        data, rc != 0 ? strerror(errno) : "not a directory");
	return 1;
}

int dataset_load(dataset *d, const char *data, const char *split, const int64_t chw[3],
                 int64_t classes, int64_t limit)
{
	*d = (dataset){0};
	char dir[1024], ipath[1200], lpath[1200], name[64], err[1024];
	if (data_dir(data, dir, sizeof dir) != 0)
		return 1;
	snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
	if (data_file_find(dir, name, ipath, sizeof ipath) != 0)
		return 1;
	snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
	if (data_file_find(dir, name, lpath, sizeof lpath) != 0)
		return 1;
	rt_array im = {0}, lb = {0};
	int rc = 1;
	if (rt_idx_read(ipath, &im, err, sizeof err) != 0 ||
	    rt_idx_read(lpath, &lb, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		goto done;
	}
	if (images_check(ipath, &im, chw) != 0 ||
	    labels_check(lpath, &lb, ipath, im.dims[0], classes) != 0)
		goto done;
	d->n = limit > 0 && limit < im.dims[0] ? limit : im.dims[0];
	d->c = chw[0], d->h = chw[1], d->w = chw[2];
	d->image_bytes = (size_t)(chw[0] * chw[1] * chw[2]);
	d->pixels = im.data;
	d->labels = lb.data;
	im.data = lb.data = NULL;
	rc = 0;
done:
	rt_array_free(&im);
	rt_array_free(&lb);
	return rc;
}

void dataset_free(dataset *d)
{
	free(d->pixels);
	free(d->labels);
	*d = (dataset){0};
}

/* Division, not multiplication by 1/255: the same floats an application
 * computes with x / 255.0f when it feeds the compiled model. */
void dataset_batch(const dataset *d, const int64_t *idx, int64_t n, float *x, int32_t *labels)
{
	float value[256];
	for (int v = 0; v < 256; v++)
		value[v] = (float)v / 255.0f;
	for (int64_t i = 0; i < n; i++) {
		const uint8_t *src = d->pixels + (size_t)idx[i] * d->image_bytes;
		float *dst = x + (size_t)i * d->image_bytes;
		for (size_t k = 0; k < d->image_bytes; k++)
			dst[k] = value[src[k]];
		labels[i] = d->labels[idx[i]];
	}
}

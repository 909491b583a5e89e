/* classify: the top-5 classes of one input, using a library made by `netcc compile`.
 *
 * The model is chosen when this file is compiled, e.g. for libresnet18.so:
 *   cc -std=c11 -O2 -Ibuild/examples -DMODEL_HEADER='"resnet18.h"' -DMODEL=resnet18 \
 *      -DMODEL_UPPER=RESNET18 examples/classify.c -Lbuild/examples -lresnet18 -lm \
 *      -Wl,-rpath,'$ORIGIN' -o build/examples/classify-resnet18
 * It includes nothing of netcc but the generated header: an application needs no more. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <zlib.h>

/* stb_image (Debian's libstb-dev): PNG and JPEG, nothing else, compiled here */
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#include <stb/stb_image.h>

#if !defined(MODEL_HEADER) || !defined(MODEL) || !defined(MODEL_UPPER)
#error "compile with -DMODEL_HEADER='\"NAME.h\"' -DMODEL=NAME -DMODEL_UPPER=UPPERCASE_NAME"
#endif
/* A model with several inputs or outputs has no NAME_infer or NAME_INPUT_SIZE: this example
 * is for the single-input, single-output kind. */
#include MODEL_HEADER

/* FN(_create) is resnet18_create, UP(_INPUT_SIZE) is RESNET18_INPUT_SIZE: one source for
 * every model. The extra level lets MODEL expand before ## pastes it. */
#define PASTE_(a, b) a##b
#define PASTE(a, b)  PASTE_(a, b)
#define FN(s)        PASTE(MODEL, s)
#define UP(s)        PASTE(MODEL_UPPER, s)
#define STR_(x)      #x
#define STR(x)       STR_(x)

#define BATCH     ((long)UP(_BATCH))
#define IN_SIZE   ((long)UP(_INPUT_SIZE)) /* floats, the whole batch */
#define PER_IMAGE (IN_SIZE / BATCH)
#define CLASSES   ((long)UP(_OUTPUT_SIZE) / BATCH)

static const char *const fashion_mnist[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

/* Every error goes through here: one line on stderr, and -1 for the caller to return. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fflush(stdout); /* what was done so far comes first */
	fputs("classify: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

/* The header gives sizes, not shapes. An image model takes C x S x S with C = 1 or 3, and as
 * 3*S*S is never a square, the size alone tells which; 0 for any other model. */
static int image_shape(int *c, int *s)
{
	for (*c = 1; *c <= 3; *c += 2) {
		*s = (int)lround(sqrt((double)(PER_IMAGE / *c)));
		if ((long)*s * *s * *c == PER_IMAGE)
			return 1;
	}
	return 0;
}

/* The whole file, NUL-terminated so that headers can be read as text; NULL after a message. */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail("%s: %s", path, strerror(errno)), NULL;
	size_t cap = 1 << 16, n = 0;
	unsigned char *b = malloc(cap + 1), *nb;
	while (b && (n += fread(b + n, 1, cap - n, f)) == cap)
		b = (nb = realloc(b, (cap *= 2) + 1)) ? nb : (free(b), NULL);
	int err = ferror(f) ? errno : 0;
	fclose(f);
	if (!b || err) {
		free(b);
		return fail("%s: %s", path, b ? strerror(err) : "out of memory"), NULL;
	}
	b[n] = 0;
	*len = n;
	return b;
}

/* A float32 .npy array (NumPy format 1.0 to 3.0, C order, little-endian like the host):
 * the number of floats, copied into *out, or -1 after a message. */
static long read_npy(const char *path, const unsigned char *b, size_t len, float **out)
{
	if (len < 12 || b[6] < 1 || b[6] > 3)
		return fail("%s: not a .npy file of format 1, 2 or 3", path);
	size_t off = b[6] == 1 ? 10 : 12, hl = b[8] | (size_t)b[9] << 8;
	if (b[6] > 1)
		hl |= (size_t)b[10] << 16 | (size_t)b[11] << 24;
	if (hl > len - off)
		return fail("%s: truncated .npy header", path);
	/* The header is a Python dict literal, always written the same way by NumPy. */
	char h[4096];
	snprintf(h, sizeof h, "%.*s", (int)(hl < sizeof h ? hl : sizeof h - 1), (char *)b + off);
	const char *d = strstr(h, "'descr':"), *dims = strstr(h, "'shape': (");
	if (!d || !dims)
		return fail("%s: no dtype or shape in the .npy header", path);
	if (strstr(h, "'fortran_order': True"))
		return fail("%s: a Fortran-order array; save it in C order", path);
	d += 8 + strspn(d + 8, " ");
	if (strncmp(d, "'<f4'", 5) != 0)
		return fail("%s: dtype %.*s, but the model takes float32, '<f4'", path,
		            (int)strcspn(d, ",}"), d);
	dims += 10;
	long count = 1; /* -1 once absurdly large */
	char *end;
	for (const char *p = dims; count >= 0; p = end + strspn(end, ", ")) {
		long dim = strtol(p, &end, 10);
		if (end == p)
			break;
		count = dim < 0 || (dim > 0 && count > (1L << 30) / dim) ? -1 : count * dim;
	}
	size_t have = (len - off - hl) / 4;
	if (count < 0)
		return fail("%s: shape (%.*s) is too large", path, (int)strcspn(dims, ")"), dims);
	if (have < (size_t)count)
		return fail("%s: truncated: shape (%.*s) is %ld floats, the file holds %zu", path,
		            (int)strcspn(dims, ")"), dims, count, have);
	/* + 1: an empty array still gets a pointer, and is then refused for its size. */
	if (!(*out = malloc((size_t)count * sizeof **out + 1)))
		return fail("out of memory");
	memcpy(*out, b + off + hl, (size_t)count * 4);
	return count;
}

/* Skips white space and # comments, then reads a number of a PNM header; -1 if none. */
static long pnm_number(const unsigned char *b, size_t len, size_t *i)
{
	while (*i < len && (isspace(b[*i]) || b[*i] == '#'))
		if (b[(*i)++] == '#')
			while (*i < len && b[*i] != '\n')
				(*i)++;
	long v = -1;
	for (; *i < len && isdigit(b[*i]) && v < 1L << 20; (*i)++)
		v = (v < 0 ? 0 : v * 10) + (b[*i] - '0');
	return v;
}

/* Pixels (iw x ih, fc interleaved channels, in [0, 1]) as the model's c x s x s floats:
 * channels are replicated or averaged to c, then bilinear resampling (pixel centres
 * aligned) gives s x s. */
static int fit(const char *path, const char *kind, const float *v, long iw, long ih, int fc,
               float *out, int c, int s)
{
	float *src = malloc((size_t)c * iw * ih * sizeof *src);
	if (!src)
		return fail("out of memory");
	for (long k = 0; k < iw * ih; k++) {
		const float *p = v + k * fc;
		for (int j = 0; j < c; j++)
			src[j * iw * ih + k] = fc == c   ? p[j]
			                       : fc == 1 ? p[0]
			                                 : (p[0] + p[1] + p[2]) / 3;
	}
	for (int j = 0; j < c; j++)
		for (int y = 0; y < s; y++)
			for (int x = 0; x < s; x++) {
				float sy = fmaxf(0, (y + 0.5f) * ih / s - 0.5f);
				float sx = fmaxf(0, (x + 0.5f) * iw / s - 0.5f);
				long y0 = (long)sy, x0 = (long)sx;
				long y1 = y0 + 1 < ih ? y0 + 1 : y0, x1 = x0 + 1 < iw ? x0 + 1 : x0;
				float fy = sy - y0, fx = sx - x0, *p = src + j * iw * ih;
				float top = p[y0 * iw + x0] * (1 - fx) + p[y0 * iw + x1] * fx;
				float bot = p[y1 * iw + x0] * (1 - fx) + p[y1 * iw + x1] * fx;
				out[((long)j * s + y) * s + x] = top * (1 - fy) + bot * fy;
			}
	free(src);
	printf("input: %s: %ldx%ld %s %s, resized to %dx%d, %d channel%s, in [0,1]\n", path, iw,
	       ih, fc == 3 ? "colour" : "grey", kind, s, s, c, c == 1 ? "" : "s");
	return 0;
}

/* A P5 (grey) or P6 (colour) image, 8 or 16 bits a sample. */
static int read_pnm(const char *path, const unsigned char *b, size_t len, float *out, int c, int s)
{
	size_t i = 2;
	int fc = b[1] == '6' ? 3 : 1;
	long iw = pnm_number(b, len, &i), ih = pnm_number(b, len, &i), max = pnm_number(b, len, &i);
	if (iw < 1 || ih < 1 || max < 1 || max > 65535 || i >= len || !isspace(b[i++]))
		return fail("%s: bad P%c header", path, b[1]);
	int bps = max > 255 ? 2 : 1; /* 16-bit samples are big-endian */
	size_t need = (size_t)iw * ih * fc * bps;
	if (len - i < need)
		return fail("%s: truncated: %ldx%ld pixels take %zu bytes, the file has %zu", path,
		            iw, ih, need, len - i);
	float *v = malloc((size_t)iw * ih * fc * sizeof *v);
	if (!v)
		return fail("out of memory");
	for (long k = 0; k < iw * ih * fc; k++) {
		const unsigned char *q = b + i + k * bps;
		v[k] = (float)(bps == 2 ? q[0] << 8 | q[1] : q[0]) / (float)max;
	}
	int rc = fit(path, "PNM", v, iw, ih, fc, out, c, s);
	free(v);
	return rc;
}

/* A PNG or JPEG image (Debian's libstb-dev decodes it); alpha is dropped. */
static int read_stb(const char *path, const unsigned char *b, size_t len, float *out, int c, int s)
{
	int iw, ih, n;
	if (len > INT_MAX)
		return fail("%s: too large", path);
	unsigned char *px = stbi_load_from_memory(b, (int)len, &iw, &ih, &n, 0);
	if (!px)
		return fail("%s: cannot decode: %s", path, stbi_failure_reason());
	int fc = n >= 3 ? 3 : 1;
	float *v = malloc((size_t)iw * ih * fc * sizeof *v);
	if (!v) {
		stbi_image_free(px);
		return fail("out of memory");
	}
	for (long k = 0; k < (long)iw * ih; k++)
		for (int j = 0; j < fc; j++)
			v[k * fc + j] = px[k * n + j] / 255.0f;
	stbi_image_free(px);
	int rc = fit(path, b[0] == 0x89 ? "PNG" : "JPEG", v, iw, ih, fc, out, c, s);
	free(v);
	return rc;
}

/* n class names, one a line, and the file's text after them (for free); NULL after a
 * message if the file has not n lines. */
static char **read_labels(const char *path, long n)
{
	size_t len, k = 0;
	char *b = (char *)slurp(path, &len), **names = NULL;
	if (b && !(names = calloc((size_t)n + 1, sizeof *names)))
		fail("out of memory");
	for (char *line = b, *nl; names && line < b + len; line = nl + 1, k++) {
		nl = line + strcspn(line, "\n");
		*nl = 0;
		line[strcspn(line, "\r")] = 0;
		names[k < (size_t)n ? k : (size_t)n] = line; /* beyond n: counted, not kept */
	}
	if (names && k == (size_t)n) {
		names[n] = b;
		return names;
	}
	if (names)
		fail("%s: %zu lines, but the model has %ld classes (one name a line)", path, k, n);
	free(names);
	free(b);
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* An IDX file (MNIST's format), gzip-compressed or not: zlib reads both. */
static unsigned char *read_idx(const char *path, int rank, long *dims, long *count)
{
	gzFile z = gzopen(path, "rb");
	if (!z) {
		fail("%s: cannot open", path);
		return NULL;
	}
	unsigned char head[16];
	unsigned char *data = NULL;
	int hl = 4 + 4 * rank;
	if (gzread(z, head, (unsigned)hl) != hl || head[0] || head[1] || head[2] != 8 ||
	    head[3] != rank) {
		fail("%s: not a uint8 IDX file of rank %d", path, rank);
		goto out;
	}
	*count = 1;
	for (int i = 0; i < rank; i++) {
		const unsigned char *d = head + 4 + 4 * i;
		dims[i] = (long)d[0] << 24 | (long)d[1] << 16 | (long)d[2] << 8 | d[3];
		if (dims[i] <= 0 || dims[i] > (1L << 24) || *count > (1L << 30) / dims[i]) {
			fail("%s: dimension %ld is out of range", path, dims[i]);
			goto out;
		}
		*count *= dims[i];
	}
	if (!(data = malloc((size_t)*count)) || gzread(z, data, (unsigned)*count) != *count) {
		fail("%s: truncated: %ld bytes of data expected", path, *count);
		free(data);
		data = NULL;
	}
out:
	gzclose(z);
	return data;
}

/* Runs the whole test set through the model, a batch at a time (the last
 * one padded with copies of its last image), and reports the accuracy. */
static int evaluate(MODEL *m, const char *images, const char *labels, long limit, int c, int s)
{
	long idims[3], ldims[1], icount, lcount;
	unsigned char *img = read_idx(images, 3, idims, &icount);
	unsigned char *lab = img ? read_idx(labels, 1, ldims, &lcount) : NULL;
	float *in = malloc(IN_SIZE * sizeof *in), *out = malloc(UP(_OUTPUT_SIZE) * sizeof *out);
	int rc = 1;
	if (!lab || !in || !out)
		goto done;
	if (c != 1 || idims[1] != s || idims[2] != s || ldims[0] != idims[0]) {
		fail("%s: %ld images of %ldx%ld with %ld labels, but %s takes 1x%dx%d images",
		     images, idims[0], idims[1], idims[2], ldims[0], STR(MODEL), s, s);
		goto done;
	}
	long n = limit > 0 && limit < idims[0] ? limit : idims[0], right = 0;
	long classes = CLASSES; /* a variable: 1000 classes would make a byte check moot */
	double t = now();
	for (long b = 0; b < n; b += BATCH) {
		for (long k = 0; k < BATCH; k++) {
			long i = b + k < n ? b + k : n - 1;
			for (long p = 0; p < PER_IMAGE; p++)
				in[k * PER_IMAGE + p] = img[i * PER_IMAGE + p] / 255.0f;
		}
		if (FN(_infer)(m, in, out) != 0) {
			fail("%s_infer: %s", STR(MODEL), FN(_error)(m));
			goto done;
		}
		for (long k = 0; k < BATCH && b + k < n; k++) {
			long best = 0;
			for (long q = 1; q < CLASSES; q++)
				best = out[k * CLASSES + q] > out[k * CLASSES + best] ? q : best;
			if (lab[b + k] >= classes) {
				fail("%s: label %d of example %ld is not a class", labels,
				     lab[b + k], b + k);
				goto done;
			}
			right += best == lab[b + k];
		}
	}
	t = now() - t;
	printf("test set: %s, %ld images in %.2f s (%.0f images/s)\n", images, n, t, n / t);
	printf("accuracy: %.2f%% (%ld of %ld right)\n", 100.0 * right / n, right, n);
	rc = 0;
done:
	free(img);
	free(lab);
	free(in);
	free(out);
	return rc;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	const char *weights = NULL, *labels = NULL, *input = NULL, *test_images = NULL,
	           *test_labels = NULL;
	long repeat = 1, limit = 0;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--weights") && i + 1 < argc)
			weights = argv[++i];
		else if (!strcmp(argv[i], "--labels") && i + 1 < argc)
			labels = argv[++i];
		else if (!strcmp(argv[i], "--repeat") && i + 1 < argc &&
		         (repeat = strtol(argv[++i], &end, 10)) >= 1 && repeat <= 100000 && !*end)
			continue;
		else if (!strcmp(argv[i], "--test") && i + 2 < argc)
			test_images = argv[i + 1], test_labels = argv[i + 2], i += 2;
		else if (!strcmp(argv[i], "--limit") && i + 1 < argc &&
		         (limit = strtol(argv[++i], &end, 10)) >= 1 && !*end)
			continue;
		else if (argv[i][0] != '-' && !input)
			input = argv[i];
		else
			input = NULL, i = argc;
	}
	if (!input == !test_images) {
		fprintf(
		    stderr,
		    "usage: %s [--weights W.safetensors] [--labels FILE] [--repeat N] "
		    "INPUT.npy|.png|.jpg|.pgm|.ppm\n"
		    "       %s [--weights W.safetensors] --test IMAGES.idx[.gz] LABELS.idx[.gz] "
		    "[--limit N]\n",
		    argv[0], argv[0]);
		return 2;
	}

	int c, s, image = image_shape(&c, &s);
	char want[64]; /* what one input is, for messages */
	snprintf(want, sizeof want, image ? "%ld floats ([1,%d,%d,%d])" : "%ld floats", PER_IMAGE,
	         c, s, s);
	printf("model: %s: input %s, output %ld classes, batch %ld\n", STR(MODEL), want, CLASSES,
	       BATCH);

	int rc = 1;
	MODEL *m = NULL;
	if (test_images) {
		if (!(m = FN(_create)()))
			fail("%s_create: %s", STR(MODEL), FN(_error)(NULL));
		else if (weights && FN(_load_weights)(m, weights) != 0)
			fail("%s", FN(_error)(m));
		else
			rc = evaluate(m, test_images, test_labels, limit, c, s);
		FN(_destroy)(m);
		return rc;
	}
	size_t len = 0;
	unsigned char *file = slurp(input, &len);
	float *in = NULL, *out = malloc(UP(_OUTPUT_SIZE) * sizeof *out);
	double *times = malloc((size_t)repeat * sizeof *times), p[CLASSES], sum = 0;
	char **names = labels ? read_labels(labels, CLASSES) : NULL;
	if (!file || !out || !times || (labels && !names))
		goto done;
	long n = -1;
	if (len >= 6 && !memcmp(file, "\x93NUMPY", 6)) {
		if ((n = read_npy(input, file, len, &in)) >= 0)
			printf("input: %s: %ld floats\n", input, n);
		if (n >= 0 && n != PER_IMAGE && n != IN_SIZE) {
			fail("%s: %ld floats, but %s takes %s", input, n, STR(MODEL), want);
			goto done;
		}
	} else if ((len >= 2 && file[0] == 'P' && (file[1] == '5' || file[1] == '6')) ||
	           (len >= 8 && !memcmp(file, "\x89PNG\r\n\x1a\n", 8)) ||
	           (len >= 3 && !memcmp(file, "\xff\xd8\xff", 3))) {
		if (!image) {
			fail("%s takes %s, not an image: give a .npy file", STR(MODEL), want);
			goto done;
		}
		if ((in = malloc(PER_IMAGE * sizeof *in)) &&
		    (file[0] == 'P' ? read_pnm(input, file, len, in, c, s)
		                    : read_stb(input, file, len, in, c, s)) == 0)
			n = PER_IMAGE;
	} else {
		fail("%s: not a .npy file, nor a PNG, JPEG, binary PGM (P5) or PPM (P6) image",
		     input);
		goto done;
	}
	/* A library compiled with --batch N takes N images: one image goes in every slot. */
	float *batch = n < 0 ? NULL : realloc(in, IN_SIZE * sizeof *in);
	if (!batch)
		goto done;
	in = batch;
	for (long k = n; k < IN_SIZE; k++)
		in[k] = in[k % n];

	if (!(m = FN(_create)())) {
		fail("%s_create: %s", STR(MODEL), FN(_error)(NULL));
		goto done;
	}
	if (weights) {
		if (FN(_load_weights)(m, weights) != 0) {
			fail("%s", FN(_error)(m));
			goto done;
		}
		printf("weights: %s\n", weights);
	} else if (FN(_embedded_weights)()) {
		printf("weights: embedded in the library\n");
	} else {
		fail("the library was compiled with --weights-file: give --weights %s.safetensors",
		     STR(MODEL));
		goto done;
	}

	/* The first run also pays for touching the weights and the workspace: with --repeat N
	 * the median shows the steady state. */
	for (long r = 0; r < repeat; r++) {
		double t = now();
		if (FN(_infer)(m, in, out) != 0) {
			fail("%s_infer: %s", STR(MODEL), FN(_error)(m));
			goto done;
		}
		times[r] = now() - t;
	}
	qsort(times, (size_t)repeat, sizeof *times, by_value);
	if (repeat == 1)
		printf("inference: %.3f ms\n", times[0] * 1e3);
	else
		printf("inference: median %.3f ms of %ld runs (min %.3f, max %.3f)\n",
		       times[repeat / 2] * 1e3, repeat, times[0] * 1e3, times[repeat - 1] * 1e3);

	/* Softmax of the first image's scores, less their maximum so that exp cannot overflow. */
	double top = out[0];
	for (long k = 0; k < CLASSES; k++) {
		if (!isfinite(out[k])) {
			fail("score %ld is %g: check the input and the weights", k, out[k]);
			goto done;
		}
		top = out[k] > top ? out[k] : top;
	}
	for (long k = 0; k < CLASSES; k++)
		sum += p[k] = exp(out[k] - top);
	const char *const *label = (const char *const *)names;
	if (!label && CLASSES == 10) {
		label = fashion_mnist;
		printf("labels: Fashion-MNIST's, for 10 classes (--labels FILE for others)\n");
	}
	printf("top %d of %ld classes:\n", CLASSES < 5 ? (int)CLASSES : 5, CLASSES);
	for (int r = 0; r < 5 && r < CLASSES; r++) {
		long best = 0;
		for (long k = 0; k < CLASSES; k++)
			best = p[k] > p[best] ? k : best;
		printf("  %d. %.4f  class %ld%s%s\n", r + 1, p[best] / sum, best, label ? ": " : "",
		       label ? label[best] : "");
		p[best] = -1; /* taken */
	}
	rc = 0;
done:
	FN(_destroy)(m);
	if (names)
		free(names[CLASSES]);
	free(names);
	free(times);
	free(in);
	free(out);
	free(file);
	return rc;
}

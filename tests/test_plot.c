/* Training curves (train/plot.c, netcc plot): the SVG is well-formed and
 * holds what it should, rsvg-convert really draws it (the runs' colours
 * appear in the pixels), bad logs are named with the line and leave no
 * output behind, and the command's exit statuses. */
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "driver.h"
#include "testutil.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/netcc_test_plot_XXXXXX", test_env("TMPDIR", "/tmp"));
	ck_assert_msg(mkdtemp(tmpdir) != NULL, "mkdtemp failed");
}

/* Each test removes the files it made: a leftover (a temporary the atomic
 * writer left) keeps rmdir from succeeding. */
static void remove_tmpdir(void)
{
	ck_assert_msg(rmdir(tmpdir) == 0, "%s is not empty", tmpdir);
}

static void rm(const char *name)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	ck_assert_msg(unlink(path) == 0 || rmdir(path) == 0, "cannot remove %s", path);
}

static const char *at(char *buf, const char *name)
{
	snprintf(buf, 512, "%s/%s", tmpdir, name);
	return buf;
}

static void write_text(const char *name, const char *text)
{
	char path[512];
	FILE *f = fopen(at(path, name), "wb");
	ck_assert_msg(f != NULL, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	ck_assert_int_eq(fclose(f), 0);
}

static char *slurp(const char *name, size_t *len)
{
	char path[512];
	FILE *f = fopen(at(path, name), "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static bool exists(const char *name)
{
	char path[512];
	struct stat st;
	return stat(at(path, name), &st) == 0;
}

static int count(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

#define HEADER "epoch,train_loss,train_error,test_loss,test_error,lr,seconds\n"

/* Run a: three epochs, the rate halved for the third; run b: two. */
static void logs_write(void)
{
	char path[512];
	ck_assert_int_eq(mkdir(at(path, "a"), 0777), 0);
	ck_assert_int_eq(mkdir(at(path, "b"), 0777), 0);
	write_text("a/log.csv", HEADER "1,1.200000,0.450000,1.300000,0.480000,0.1,2.5\n"
	                               "2,0.700000,0.250000,0.800000,0.290000,0.1,2.4\n"
	                               "3,0.500000,0.170000,0.650000,0.220000,0.05,2.4\n");
	write_text("b/log.csv", HEADER "1,1.500000,0.550000,1.600000,0.560000,0.1,2.0\n"
	                               "2,0.900000,0.310000,1.000000,0.350000,0.1,2.1\n");
}

static void logs_remove(void)
{
	rm("a/log.csv"), rm("b/log.csv"), rm("a"), rm("b");
}

static int plot(const char *out, const char *const *logs, const char *const *labels, int n,
                char *err, size_t errlen)
{
	char o[512], paths[4][512];
	const char *p[4];
	for (int i = 0; i < n; i++)
		p[i] = at(paths[i], logs[i]);
	return plot_svg_write(at(o, out), p, labels, n, err, errlen);
}

/* ---- XML, enough of it --------------------------------------------------------- */

/* Tags nest and close, attributes are quoted, text holds no raw '<' or
 * '>', the root is <svg>, and no number came out as nan or inf. */
static void xml_check(const char *s)
{
	char stack[16][32];
	int depth = 0, roots = 0;
	ck_assert_msg(!strncmp(s, "<?xml ", 6), "no XML declaration");
	s = strstr(s, "?>") + 2;
	for (; *s; s++) {
		ck_assert_msg(*s != '>', "a raw '>' in text: %.40s", s);
		if (*s != '<')
			continue;
		bool closing = s[1] == '/';
		const char *name = s + 1 + closing;
		size_t nl = strcspn(name, " />");
		ck_assert(nl > 0 && nl < 32);
		bool quoted = false;
		const char *e = name + nl;
		for (; *e && (quoted || *e != '>'); e++) {
			ck_assert_msg(*e != '<', "'<' inside a tag: %.60s", s);
			quoted ^= *e == '"';
		}
		ck_assert_msg(*e == '>', "unterminated tag: %.60s", s);
		if (closing) {
			ck_assert_msg(depth > 0 && strlen(stack[depth - 1]) == nl &&
			                  !strncmp(stack[depth - 1], name, nl),
			              "</%.*s> closes nothing open", (int)nl, name);
			depth--;
		} else if (e[-1] != '/') {
			ck_assert_int_lt(depth, 16);
			snprintf(stack[depth++], 32, "%.*s", (int)nl, name);
			if (depth == 1) {
				ck_assert_str_eq(stack[0], "svg");
				roots++;
			}
		}
		s = e;
	}
	ck_assert_int_eq(depth, 0);
	ck_assert_int_eq(roots, 1);
}

static void no_nonfinite(const char *svg)
{
	ck_assert_msg(!strstr(svg, "nan") && !strstr(svg, "inf") && !strstr(svg, "NAN") &&
	                  !strstr(svg, "INF"),
	              "a non-finite number in the SVG");
}

/* The points of the n-th polyline of class cls (0-based). */
static int polyline_points(const char *svg, const char *cls, int nth)
{
	char want[64];
	snprintf(want, sizeof want, "<polyline class=\"%s\"", cls);
	const char *p = strstr(svg, want);
	for (int i = 0; p && i < nth; i++)
		p = strstr(p + 1, want);
	ck_assert_msg(p != NULL, "no polyline %d of class %s", nth, cls);
	p = strstr(p, "points=\"") + 8;
	int n = 1;
	for (; *p != '"'; p++)
		n += *p == ' ';
	return n;
}

static long svg_height(const char *svg)
{
	const char *h = strstr(strstr(svg, "<svg "), "height=\"");
	ck_assert_ptr_nonnull(h);
	return strtol(h + 8, NULL, 10);
}

START_TEST(svg_holds_every_curve_the_legend_and_the_rate_step)
{
	make_tmpdir();
	logs_write();
	const char *logs[] = {"a/log.csv", "b/log.csv"};
	const char *labels[] = {"first <run> & \"co\"", NULL};
	char err[1024];
	ck_assert_msg(plot("c.svg", logs, labels, 2, err, sizeof err) == 0, "%s", err);
	char *svg = slurp("c.svg", NULL);
	xml_check(svg);
	no_nonfinite(svg);
	/* two panels, a train and a test curve of each log in each */
	ck_assert_int_eq(count(svg, "<polyline "), 8);
	ck_assert_int_eq(count(svg, "<path "), 0);
	ck_assert_int_eq(count(svg, "<polyline class=\"train\""), 4);
	ck_assert_int_eq(count(svg, "<polyline class=\"test\""), 4);
	ck_assert_int_eq(count(svg, "stroke-dasharray=\"7 4\" points="), 4);
	ck_assert_int_eq(polyline_points(svg, "train", 0), 3);
	ck_assert_int_eq(polyline_points(svg, "test", 1), 2);
	/* the legend: the label escaped, the default one the run's directory */
	ck_assert_ptr_nonnull(strstr(svg, ">first &lt;run&gt; &amp; &quot;co&quot;</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">b</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">train</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">test</text>"));
	/* run a's rate halved for epoch 3: a dotted line in each panel, and
	 * the new rate; run b's never changed */
	ck_assert_int_eq(count(svg, "class=\"lr-step\""), 2);
	ck_assert_int_eq(count(svg, ">lr 0.05</text>"), 2);
	ck_assert_ptr_nonnull(strstr(svg, ">loss per epoch</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">error (%) per epoch</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">epoch</text>"));
	/* round ticks: errors from 17% to 56% on tens */
	ck_assert_ptr_nonnull(strstr(svg, ">10</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">60</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">1.0</text>"));
	free(svg);
	rm("c.svg");
	logs_remove();
	remove_tmpdir();
}
END_TEST

START_TEST(one_epoch_and_nonfinite_values)
{
	make_tmpdir();
	write_text("one.csv", HEADER "1,0.500000,0.200000,inf,0.250000,0.1,1.0\n");
	write_text("gaps.csv", HEADER "1,1.000000,0.400000,nan,0.450000,0.1,1.0\n"
	                              "2,-nan,0.300000,0.900000,inf,0.1,1.0\n"
	                              "3,0.600000,0.200000,0.700000,0.250000,0.1,1.0\n");
	char err[1024];
	const char *one[] = {"one.csv"}, *gaps[] = {"gaps.csv"};
	ck_assert_msg(plot("one.svg", one, NULL, 1, err, sizeof err) == 0, "%s", err);
	char *svg = slurp("one.svg", NULL);
	xml_check(svg);
	no_nonfinite(svg);
	/* a single point draws no line: the markers show it (test loss is inf) */
	ck_assert_int_eq(count(svg, "<polyline "), 3);
	ck_assert_int_eq(count(svg, "<circle "), 3);
	ck_assert_int_eq(count(svg, "class=\"lr-step\""), 0);
	free(svg);
	ck_assert_msg(plot("gaps.svg", gaps, NULL, 1, err, sizeof err) == 0, "%s", err);
	svg = slurp("gaps.svg", NULL);
	xml_check(svg);
	no_nonfinite(svg);
	ck_assert_int_eq(polyline_points(svg, "train", 0), 2); /* loss */
	ck_assert_int_eq(polyline_points(svg, "test", 0), 2);
	ck_assert_int_eq(polyline_points(svg, "train", 1), 3); /* error */
	ck_assert_int_eq(polyline_points(svg, "test", 1), 2);
	free(svg);
	rm("one.csv"), rm("gaps.csv"), rm("one.svg"), rm("gaps.svg");
	remove_tmpdir();
}
END_TEST

/* ---- it renders -------------------------------------------------------------- */

typedef struct image {
	uint32_t w, h;
	unsigned char *rgb; /* w * h * 3 */
} image;

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* An 8-bit RGB or RGBA, non-interlaced PNG (what rsvg-convert writes),
 * decoded to RGB: enough to look at the pixels. */
static image png_read(const char *name)
{
	size_t len;
	unsigned char *f = (unsigned char *)slurp(name, &len);
	ck_assert_msg(len > 33 && !memcmp(f, "\x89PNG\r\n\x1a\n", 8), "%s is not a PNG", name);
	ck_assert(!memcmp(f + 12, "IHDR", 4));
	image im = {be32(f + 16), be32(f + 20), NULL};
	int depth = f[24], type = f[25], interlace = f[28];
	ck_assert_msg(depth == 8 && (type == 2 || type == 6) && interlace == 0,
	              "%s: depth %d, colour type %d, interlace %d", name, depth, type, interlace);
	size_t bpp = type == 6 ? 4 : 3, stride = im.w * bpp;
	unsigned char *z = malloc(len), *raw = malloc((stride + 1) * im.h);
	size_t zl = 0;
	for (size_t p = 8; p + 12 <= len;) {
		uint32_t n = be32(f + p);
		ck_assert(p + 12 + n <= len);
		if (!memcmp(f + p + 4, "IDAT", 4))
			memcpy(z + zl, f + p + 8, n), zl += n;
		p += 12 + n;
	}
	uLongf rl = (uLongf)((stride + 1) * im.h);
	ck_assert_int_eq(uncompress(raw, &rl, z, (uLong)zl), Z_OK);
	ck_assert_uint_eq(rl, (stride + 1) * im.h);
	im.rgb = malloc((size_t)im.w * im.h * 3);
	unsigned char *prev = calloc(stride, 1), *cur = malloc(stride);
	for (uint32_t y = 0; y < im.h; y++) {
		const unsigned char *row = raw + y * (stride + 1);
		ck_assert_int_le(row[0], 4);
		for (size_t i = 0; i < stride; i++) {
			int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i],
			    c = i >= bpp ? prev[i - bpp] : 0;
			int pred = row[0] == 0   ? 0
			           : row[0] == 1 ? a
			           : row[0] == 2 ? b
			           : row[0] == 3 ? (a + b) / 2
			                         : paeth(a, b, c);
			cur[i] = (unsigned char)(row[1 + i] + pred);
		}
		for (uint32_t x = 0; x < im.w; x++)
			memcpy(im.rgb + ((size_t)y * im.w + x) * 3, cur + x * bpp, 3);
		memcpy(prev, cur, stride);
	}
	free(prev), free(cur), free(z), free(raw), free(f);
	return im;
}

/* Pixels within a few levels of colour "#rrggbb". */
static long pixels_of(const image *im, const char *colour)
{
	unsigned rgb = (unsigned)strtoul(colour + 1, NULL, 16);
	int want[3] = {(int)(rgb >> 16), (int)(rgb >> 8 & 255), (int)(rgb & 255)};
	long n = 0;
	for (size_t i = 0; i < (size_t)im->w * im->h; i++) {
		const unsigned char *p = im->rgb + 3 * i;
		n += abs(p[0] - want[0]) <= 8 && abs(p[1] - want[1]) <= 8 &&
		     abs(p[2] - want[2]) <= 8;
	}
	return n;
}

static void rsvg(const char *svg, const char *png)
{
	ck_assert_msg(system("command -v rsvg-convert >/dev/null 2>&1") == 0,
	              "rsvg-convert is missing: run scripts/deps.sh (it installs librsvg2-bin, "
	              "which the tests need)");
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "rsvg-convert '%s/%s' -o '%s/%s'", tmpdir, svg, tmpdir, png);
	ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
}

START_TEST(rsvg_draws_the_curves)
{
	make_tmpdir();
	logs_write();
	const char *logs[] = {"a/log.csv", "b/log.csv"};
	/* XML's special characters, UTF-8, a byte that is not UTF-8 and a
	 * control character: the file must still parse */
	const char *labels[] = {"<a> & \"é\"", "b\xff\x01"};
	char err[1024];
	ck_assert_msg(plot("c.svg", logs, labels, 2, err, sizeof err) == 0, "%s", err);
	char *svg = slurp("c.svg", NULL);
	long h = svg_height(svg);
	ck_assert_ptr_nonnull(strstr(svg, ">b?\?</text>"));
	free(svg);
	/* the same size, white, nothing on it */
	char blank[256];
	snprintf(blank, sizeof blank,
	         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"%ld\">"
	         "<rect width=\"960\" height=\"%ld\" fill=\"white\"/></svg>\n",
	         h, h);
	write_text("blank.svg", blank);
	rsvg("c.svg", "c.png");
	rsvg("blank.svg", "blank.png");
	size_t lc, lb;
	free(slurp("c.png", &lc));
	free(slurp("blank.png", &lb));
	ck_assert_msg(lc > 8192 && lc > 4 * lb, "c.png is %zu bytes, blank.png %zu", lc, lb);

	image c = png_read("c.png"), b = png_read("blank.png");
	ck_assert_uint_eq(c.w, 960);
	ck_assert_uint_eq(c.h, (uint32_t)h);
	ck_assert_uint_eq(b.w, c.w);
	ck_assert_uint_eq(b.h, c.h);
	size_t n = (size_t)c.w * c.h;
	ck_assert_int_eq(pixels_of(&b, "#ffffff"), (long)n);
	ck_assert_msg(memcmp(c.rgb, b.rgb, 3 * n) != 0, "the curves drew nothing");
	/* each run's colour (the palette's first two) is on the page, in
	 * lines, not a stray pixel; and most of the page is still white */
	long first = pixels_of(&c, "#1f77b4"), second = pixels_of(&c, "#ff7f0e");
	ck_assert_msg(first > 300 && second > 300, "run colours: %ld and %ld pixels", first,
	              second);
	ck_assert_int_gt(pixels_of(&c, "#ffffff"), (long)n / 2);
	free(c.rgb), free(b.rgb);
	rm("c.svg"), rm("c.png"), rm("blank.svg"), rm("blank.png");
	logs_remove();
	remove_tmpdir();
}
END_TEST

/* ---- bad logs ------------------------------------------------------------------ */

/* plot_svg_write of logs fails with want (after the tmpdir) in its error,
 * and out.svg stays as it was: absent, or "old". */
static void plot_fails(const char *const *logs, int n, const char *want)
{
	char err[1024], full[1024];
	bool old = exists("out.svg");
	ck_assert_int_eq(plot("out.svg", logs, NULL, n, err, sizeof err), -1);
	snprintf(full, sizeof full, "%s/%s", tmpdir, want);
	ck_assert_msg(strstr(err, full) != NULL, "wanted '%s' in '%s'", full, err);
	if (old) {
		char *text = slurp("out.svg", NULL);
		ck_assert_str_eq(text, "old");
		free(text);
	} else {
		ck_assert_msg(!exists("out.svg"), "a failed plot left out.svg");
	}
}

START_TEST(bad_logs_are_named_and_write_nothing)
{
	make_tmpdir();
	write_text("good.csv", HEADER "1,1.0,0.5,1.1,0.55,0.1,1\n");
	write_text("empty.csv", "");
	write_text("header.csv", HEADER);
	write_text("short.csv", HEADER "1,1.0,0.5,1.1,0.55,0.1,1\n2,0.9,0.4,1.0\n");
	write_text("word.csv", HEADER "1,1.0,0.5,1.1,0.55,0.1,1\n2,0.9,0.4,1.0,0.5,fast,1\n");
	write_text("long.csv", HEADER "1,1.0,0.5,1.1,0.55,0.1,1,8\n");
	write_text("other.csv", "epoch,loss\n1,2\n");
	write_text("epoch.csv", HEADER "nan,1.0,0.5,1.1,0.55,0.1,1\n");
	const char *cases[][2] = {
	    {"missing.csv", "missing.csv: cannot open: No such file or directory"},
	    {"empty.csv", "empty.csv: no epochs"},
	    {"header.csv", "header.csv: no epochs"},
	    {"short.csv", "short.csv:3: expected 7 comma-separated numbers: found 4"},
	    {"word.csv", "word.csv:3: expected 7 comma-separated numbers: 'fast' is not one"},
	    {"long.csv", "long.csv:2: expected 7 comma-separated numbers: found 8"},
	    {"other.csv", "other.csv:1: expected the header epoch,train_loss,"},
	    {"epoch.csv", "epoch.csv:2: expected 7 comma-separated numbers: the epoch is not"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const char *logs[] = {"good.csv", cases[i][0]};
		plot_fails(logs, 2, cases[i][1]);
	}
	/* a failure leaves the previous picture whole */
	write_text("out.svg", "old");
	const char *logs[] = {"short.csv"};
	plot_fails(logs, 1, "short.csv:3:");
	/* a directory where the picture goes is not replaced */
	rm("out.svg");
	char path[512], err[1024];
	ck_assert_int_eq(mkdir(at(path, "out.svg"), 0777), 0);
	const char *good[] = {"good.csv"};
	ck_assert_int_eq(plot("out.svg", good, NULL, 1, err, sizeof err), -1);
	ck_assert_msg(strstr(err, "is a directory, not a regular file"), "%s", err);
	rm("out.svg");
	const char *made[] = {"good.csv", "empty.csv", "header.csv", "short.csv",
	                      "word.csv", "long.csv",  "other.csv",  "epoch.csv"};
	for (size_t i = 0; i < sizeof made / sizeof *made; i++)
		rm(made[i]);
	remove_tmpdir();
}
END_TEST

/* ---- netcc plot ------------------------------------------------------------------ */

/* `netcc plot ARGS` in tmpdir; the exit status, stderr in *err. */
static int netcc_plot(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int netcc_plot(char **err, const char *fmt, ...)
{
	char args[1024], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	const char *bin = test_env("NETCC_BIN", "build/netcc");
	char full[2048], cwd[1024];
	if (bin[0] != '/' && getcwd(cwd, sizeof cwd)) {
		snprintf(full, sizeof full, "%s/%s", cwd, bin);
		bin = full;
	}
	snprintf(cmd, sizeof cmd, "cd '%s' && '%s' plot %s 2>stderr.txt >/dev/null", tmpdir, bin,
	         args);
	int st = system(cmd);
	ck_assert(WIFEXITED(st));
	*err = slurp("stderr.txt", NULL);
	rm("stderr.txt");
	return WEXITSTATUS(st);
}

static void plot_exits(int status, const char *args, const char *want)
{
	char *err;
	ck_assert_int_eq(netcc_plot(&err, "%s", args), status);
	ck_assert_msg(strstr(err, want) != NULL, "plot %s: wanted '%s' in:\n%s", args, want, err);
	free(err);
	ck_assert_msg(!exists("x.svg"), "plot %s left x.svg", args);
}

START_TEST(netcc_plot_exit_statuses)
{
	make_tmpdir();
	logs_write();
	plot_exits(2, "", "plot needs at least one log.csv");
	plot_exits(2, "a/log.csv", "plot needs -o FILE.svg");
	plot_exits(2, "a/log.csv -o", "option '--o' needs a value");
	plot_exits(2, "a/log.csv -o x.svg --lable a", "did you mean '--label'?");
	plot_exits(2, "a/log.csv -o x.svg --label p --label q", "2 --label for 1 log");
	plot_exits(2, "a/log.csv -o a/log.csv", "would replace the log it plots");
	plot_exits(1, "a/log.csv none.csv -o x.svg", "none.csv: cannot open");
	write_text("bad.csv", HEADER "1,2\n");
	plot_exits(1, "bad.csv -o x.svg", "bad.csv:2: expected 7 comma-separated numbers");
	rm("bad.csv");

	char *err;
	ck_assert_int_eq(netcc_plot(&err, "a/log.csv b/log.csv -o x.svg --label 'run one'"), 0);
	ck_assert_msg(strstr(err, "wrote x.svg (2 logs)"), "%s", err);
	free(err);
	char *svg = slurp("x.svg", NULL);
	xml_check(svg);
	ck_assert_ptr_nonnull(strstr(svg, ">run one</text>"));
	ck_assert_ptr_nonnull(strstr(svg, ">b</text>"));
	ck_assert_int_eq(count(svg, "<polyline "), 8);
	free(svg);
	rm("x.svg");
	logs_remove();
	remove_tmpdir();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("plot");
	TCase *t = tcase_create("plot");
	tcase_add_test(t, svg_holds_every_curve_the_legend_and_the_rate_step);
	tcase_add_test(t, one_epoch_and_nonfinite_values);
	tcase_add_test(t, rsvg_draws_the_curves);
	tcase_add_test(t, bad_logs_are_named_and_write_nothing);
	tcase_add_test(t, netcc_plot_exit_statuses);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)

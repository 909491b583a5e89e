/* Training curves as an SVG that netcc writes itself: a run can be looked
 * at in any browser, with no plotting stack to install. Two panels side by
 * side, loss and error (%) by epoch, train solid and test dashed, one
 * colour per log, and a dotted line wherever the learning rate changed.
 * The logs are log.csv as train_log_write leaves it (progress.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"
#include "runtime.h"

enum {
	COL_EPOCH,
	COL_TRAIN_LOSS,
	COL_TRAIN_ERROR,
	COL_TEST_LOSS,
	COL_TEST_ERROR,
	COL_LR,
	COL_SECONDS,
	N_COLS
};

/* A log of 16 MiB is a century of epochs: anything larger is not one, and
 * /dev/zero must not be read forever. */
#define LOG_BYTES_MAX ((size_t)16 << 20)
enum { ROW_BYTES_MAX = 1024 };
/* Beyond this a value is as unplottable as an infinity: the axis arithmetic
 * (ranges, rounding to ticks) would overflow. */
#define VALUE_MAX 1e300

typedef struct plot_log {
	char *label;
	int n;
	double (*rows)[N_COLS];
} plot_log;

static bool plottable(double v)
{
	return isfinite(v) && fabs(v) <= VALUE_MAX;
}

/* ---- reading log.csv -------------------------------------------------------- */

/* One row into v; NULL, or what is wrong with it. */
static const char *row_parse(const char *s, size_t n, double v[N_COLS], char *why, size_t whylen)
{
	char buf[ROW_BYTES_MAX];
	if (n >= sizeof buf || memchr(s, 0, n))
		return "the line is not text of a sensible length";
	memcpy(buf, s, n);
	buf[n] = 0;
	int fields = 1;
	for (size_t i = 0; i < n; i++)
		fields += buf[i] == ',';
	if (fields != N_COLS) {
		snprintf(why, whylen, "found %d", fields);
		return why;
	}
	char *p = buf;
	for (int k = 0; k < N_COLS; k++) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = 0;
		char *end;
		v[k] = strtod(p, &end);
		if (!*p || *end) {
			snprintf(why, whylen, "'%.40s' is not one", p);
			return why;
		}
		p = comma + 1;
	}
	if (!plottable(v[COL_EPOCH]))
		return "the epoch is not a finite number";
	return NULL;
}

static int log_parse(plot_log *l, const char *path, const char *text, size_t len, char *err,
                     size_t errlen)
{
	size_t hl = strlen(train_log_header) - 1; /* without its newline */
	const char *p = text, *end = text + len;
	int cap = 0;
	for (int line = 1; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (line == 1 && (n != hl || memcmp(p, train_log_header, hl) != 0)) {
			snprintf(err, errlen, "%s:1: expected the header %.*s", path, (int)hl,
			         train_log_header);
			return -1;
		}
		if (line > 1 && n) {
			if (l->n == cap) {
				cap = cap ? 2 * cap : 64;
				void *r = realloc(l->rows, (size_t)cap * sizeof *l->rows);
				if (!r) {
					snprintf(err, errlen, "%s: out of memory", path);
					return -1;
				}
				l->rows = r;
			}
			char why[80];
			const char *bad = row_parse(p, n, l->rows[l->n], why, sizeof why);
			if (bad) {
				snprintf(err, errlen,
				         "%s:%d: expected %d comma-separated numbers: %s", path,
				         line, N_COLS, bad);
				return -1;
			}
			l->n++;
		}
		p = nl ? nl + 1 : end;
	}
	if (!l->n) {
		snprintf(err, errlen, "%s: no epochs", path);
		return -1;
	}
	return 0;
}

static int log_read(plot_log *l, const char *path, char *err, size_t errlen)
{
	rt_reader r;
	if (rt_reader_open(&r, path, err, errlen) != 0)
		return -1;
	unsigned char *text = NULL;
	size_t len = 0;
	int more, rc = rt_reader_take(&r, &text, &len, LOG_BYTES_MAX, err, errlen);
	if (rc == 0 && rt_reader_rest(&r, &more) > 0) {
		snprintf(err, errlen, "%s: over %zu MiB, too large for a log.csv", path,
		         LOG_BYTES_MAX >> 20);
		rc = -1;
	}
	rt_reader_close(&r);
	if (rc == 0)
		rc = log_parse(l, path, (const char *)text, len, err, errlen);
	free(text);
	return rc;
}

/* The run's directory names it: run/log.csv is "run", and so is ./log.csv
 * read from inside run/. */
static char *label_default(const char *path)
{
	char *real = realpath(path, NULL);
	if (!real)
		return strdup(path);
	char *slash = strrchr(real, '/');
	*slash = 0;
	char *base = strrchr(real, '/');
	char *label = strdup(*real ? base + 1 : "/");
	free(real);
	return label;
}

/* ---- the SVG text --------------------------------------------------------- */

typedef struct svg {
	char *s;
	size_t len, cap;
	bool oom;
} svg;

static void svg_add(svg *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void svg_add(svg *b, const char *fmt, ...)
{
	for (int tries = 0; tries < 2 && !b->oom; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->s && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len <= (size_t)n)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			b->oom = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

/* The length of the valid UTF-8 sequence at s that XML allows, or 0: a
 * directory name can hold any bytes, and one bad byte makes the whole
 * picture unreadable. */
static int utf8_seq(const unsigned char *s)
{
	int n = s[0] < 0xc2 ? 0 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : s[0] <= 0xf4 ? 4 : 0;
	if (!n)
		return 0;
	unsigned lo = 0x80, hi = 0xbf; /* no overlong forms, surrogates, or past U+10FFFF */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	if (n == 3 && s[0] == 0xef && s[1] == 0xbf && s[2] >= 0xbe) /* U+FFFE, U+FFFF */
		return 0;
	return n;
}

/* Text as XML character data; what XML cannot hold becomes '?'. */
static void svg_text(svg *b, const char *text)
{
	for (const unsigned char *s = (const unsigned char *)text; *s;) {
		int n = *s < 0x80 ? 1 : utf8_seq(s);
		if (*s == '&')
			svg_add(b, "&amp;");
		else if (*s == '<')
			svg_add(b, "&lt;");
		else if (*s == '>')
			svg_add(b, "&gt;");
		else if (*s == '"')
			svg_add(b, "&quot;");
		else if (*s == '\'')
			svg_add(b, "&apos;");
		else if (!n || (*s < 0x20 && *s != '\t'))
			svg_add(b, "?");
		else
			svg_add(b, "%.*s", n, (const char *)s);
		s += n ? n : 1;
	}
}

/* Characters as drawn, for laying the legend out. */
static int text_width(const char *text)
{
	int n = 0;
	for (const unsigned char *s = (const unsigned char *)text; *s; s++)
		n += (*s & 0xc0) != 0x80;
	return 7 * n;
}

/* ---- axes ------------------------------------------------------------------ */

typedef struct axis {
	double lo, hi, step;
	int decimals;
} axis;

/* Ticks at 1, 2 or 5 times a power of ten, about five of them, the range
 * widened to whole ticks. whole: epochs, never a fractional tick. */
static axis axis_nice(double lo, double hi, bool whole)
{
	if (!(lo <= hi))
		lo = 0, hi = 1; /* nothing to plot */
	if (hi - lo < 1e-12 * fmax(fabs(lo), 1)) {
		double pad = whole || lo == 0 ? 1 : fabs(lo) * 0.1;
		bool positive = lo >= 0;
		lo -= pad, hi += pad;
		if (positive && lo < 0)
			lo = 0;
	}
	double rough = (hi - lo) / 5, mag = pow(10, floor(log10(rough))), f = rough / mag;
	double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
	if (whole && step < 1)
		step = 1;
	axis a = {floor(lo / step) * step, ceil(hi / step) * step, step, 0};
	if (step < 1)
		a.decimals = (int)ceil(-log10(step) - 1e-9);
	return a;
}

static int axis_ticks(const axis *a)
{
	double n = round((a->hi - a->lo) / a->step);
	return n >= 0 && n <= 20 ? (int)n + 1 : 2;
}

static double axis_tick(const axis *a, int i)
{
	int n = axis_ticks(a);
	return n == 2 && i == 1 ? a->hi : a->lo + i * a->step;
}

static void tick_text(const axis *a, double v, char *buf, size_t len)
{
	if (fabs(v) < a->step * 1e-6)
		v = 0; /* not "-0.0" */
	if (a->step >= 1e6 || a->step < 1e-4)
		snprintf(buf, len, "%.3g", v);
	else
		snprintf(buf, len, "%.*f", a->decimals, v);
}

/* The range of columns ca and cb (times scale) over every log. */
static void logs_range(const plot_log *ls, int n, int ca, int cb, double scale, double *lo,
                       double *hi)
{
	*lo = INFINITY, *hi = -INFINITY;
	for (int i = 0; i < n; i++)
		for (int r = 0; r < ls[i].n; r++)
			for (int c = 0; c < 2; c++) {
				double v = ls[i].rows[r][c ? cb : ca] * scale;
				if (plottable(v)) {
					*lo = fmin(*lo, v);
					*hi = fmax(*hi, v);
				}
			}
}

/* ---- drawing --------------------------------------------------------------- */

enum {
	SVG_W = 960,
	PANEL_W = 480,
	PLOT_L = 72, /* room for the tick labels and the axis title */
	PLOT_R = 20,
	PLOT_T = 48,
	PLOT_H = 280,
	LEGEND_Y = 398,
	LEGEND_ROW = 22,
	MARKERS_MAX = 40, /* epochs beyond which markers only clutter */
};

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
enum { N_COLOURS = sizeof palette / sizeof *palette };
#define DASH_TEST "7 4"
#define DASH_LR   "2 3"

typedef struct panel {
	double x0, x1, y0, y1; /* the plotting area; y0 is its top */
	axis ax, ay;
	int col_train, col_test;
	double scale; /* errors are fractions in the log, percent here */
	const char *title;
} panel;

static double panel_x(const panel *p, double v)
{
	return p->x0 + (v - p->ax.lo) / (p->ax.hi - p->ax.lo) * (p->x1 - p->x0);
}

static double panel_y(const panel *p, double v)
{
	return p->y1 - (v - p->ay.lo) / (p->ay.hi - p->ay.lo) * (p->y1 - p->y0);
}

static void panel_axes(svg *b, const panel *p)
{
	char t[64];
	for (int i = 0; i < axis_ticks(&p->ay); i++) {
		double v = axis_tick(&p->ay, i), y = panel_y(p, v);
		tick_text(&p->ay, v, t, sizeof t);
		svg_add(
		    b,
		    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>\n"
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%s</text>\n",
		    p->x0, y, p->x1, y, p->x0 - 6, y + 4, t);
	}
	for (int i = 0; i < axis_ticks(&p->ax); i++) {
		double v = axis_tick(&p->ax, i), x = panel_x(p, v);
		tick_text(&p->ax, v, t, sizeof t);
		svg_add(b,
		        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n"
		        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
		        "font-size=\"11\">%s</text>\n",
		        x, p->y1, x, p->y1 + 5, x, p->y1 + 18, t);
	}
	double mid_x = (p->x0 + p->x1) / 2, mid_y = (p->y0 + p->y1) / 2;
	svg_add(b,
	        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
	        "stroke=\"#333\"/>\n"
	        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
	        "font-weight=\"bold\">%s per epoch</text>\n"
	        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n"
	        "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
	        "font-size=\"12\">%s</text>\n",
	        p->x0, p->y0, p->x1 - p->x0, p->y1 - p->y0, mid_x, p->y0 - 16, p->title, mid_x,
	        p->y1 + 38, p->x0 - 50, mid_y, p->title);
}

/* One curve: a polyline through the plottable points (a NaN leaves a
 * point out, not a hole), and markers while there are few epochs, so that
 * a single epoch still shows. */
static void panel_curve(svg *b, const panel *p, const plot_log *l, int col, const char *colour)
{
	bool test = col == p->col_test;
	int shown = 0;
	for (int r = 0; r < l->n; r++) {
		double v = l->rows[r][col] * p->scale;
		if (!plottable(v))
			continue;
		if (!shown++)
			svg_add(
			    b,
			    "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
			    "stroke-linejoin=\"round\"%s points=\"",
			    test ? "test" : "train", colour,
			    test ? " stroke-dasharray=\"" DASH_TEST "\"" : "");
		svg_add(b, "%s%.1f,%.1f", shown > 1 ? " " : "", panel_x(p, l->rows[r][COL_EPOCH]),
		        panel_y(p, v));
	}
	if (shown)
		svg_add(b, "\"/>\n");
	if (l->n > MARKERS_MAX)
		return;
	for (int r = 0; r < l->n; r++) {
		double v = l->rows[r][col] * p->scale;
		if (plottable(v))
			svg_add(b,
			        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\" stroke=\"%s\" "
			        "stroke-width=\"1.5\"/>\n",
			        panel_x(p, l->rows[r][COL_EPOCH]), panel_y(p, v),
			        test ? "white" : colour, colour);
	}
}

/* Between the last epoch at the old rate and the first at the new one;
 * each log's labels on a line of their own, so that two runs stepping at
 * the same epoch stay readable. */
static void panel_lr_steps(svg *b, const panel *p, const plot_log *l, int li, const char *colour)
{
	for (int r = 1; r < l->n; r++) {
		double was = l->rows[r - 1][COL_LR], now = l->rows[r][COL_LR];
		if (!plottable(was) || !plottable(now) || was == now)
			continue;
		double x = panel_x(p, (l->rows[r - 1][COL_EPOCH] + l->rows[r][COL_EPOCH]) / 2);
		bool left = x > p->x1 - 60; /* the label would leave the panel */
		svg_add(b,
		        "<line class=\"lr-step\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
		        "stroke=\"%s\" stroke-width=\"1.2\" stroke-dasharray=\"" DASH_LR "\"/>\n"
		        "<text class=\"lr-label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" "
		        "font-size=\"10\" fill=\"%s\">lr %g</text>\n",
		        x, p->y0, x, p->y1, colour, left ? x - 3 : x + 3,
		        p->y0 + 12 + 12 * (li % 8), left ? "end" : "start", colour, now);
	}
}

/* The legend flows left to right under the panels and wraps: first what
 * the line styles mean, then one entry per log. With b NULL it only
 * measures: the rows it takes. */
static int legend_flow(svg *b, const plot_log *ls, int n)
{
	static const struct {
		const char *name, *dash;
	} key[] = {{"train", NULL}, {"test", DASH_TEST}, {"lr change", DASH_LR}};
	enum { N_KEY = sizeof key / sizeof *key, SWATCH = 28, GAP = 22, MARGIN = 24 };
	double x = MARGIN;
	int row = 0;
	for (int i = 0; i < N_KEY + n; i++) {
		const char *name = i < N_KEY ? key[i].name : ls[i - N_KEY].label;
		double w = SWATCH + 6 + text_width(name) + GAP;
		if (x > MARGIN && x + w > SVG_W - MARGIN)
			x = MARGIN, row++;
		double y = LEGEND_Y + row * LEGEND_ROW;
		if (b) {
			const char *colour = i < N_KEY ? "#555" : palette[(i - N_KEY) % N_COLOURS];
			const char *dash = i < N_KEY ? key[i].dash : NULL;
			svg_add(b,
			        "<line class=\"legend\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
			        "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%s\"",
			        x, y - 4, x + SWATCH, y - 4, colour, i < N_KEY ? "1.5" : "3");
			if (dash)
				svg_add(b, " stroke-dasharray=\"%s\"", dash);
			svg_add(b, "/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">",
			        x + SWATCH + 6, y);
			svg_text(b, name);
			svg_add(b, "</text>\n");
		}
		x += w;
	}
	return row + 1;
}

static void svg_render(svg *b, const plot_log *ls, int n)
{
	double xlo, xhi;
	logs_range(ls, n, COL_EPOCH, COL_EPOCH, 1, &xlo, &xhi);
	axis ax = axis_nice(xlo, xhi, true);
	panel panels[2] = {
	    {.col_train = COL_TRAIN_LOSS, .col_test = COL_TEST_LOSS, .scale = 1, .title = "loss"},
	    {.col_train = COL_TRAIN_ERROR,
	     .col_test = COL_TEST_ERROR,
	     .scale = 100,
	     .title = "error (%)"},
	};
	int height = LEGEND_Y + legend_flow(NULL, ls, n) * LEGEND_ROW;
	svg_add(b,
	        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
	        "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
	        SVG_W, height, SVG_W, height, SVG_W, height);
	for (int k = 0; k < 2; k++) {
		panel *p = &panels[k];
		double lo, hi;
		logs_range(ls, n, p->col_train, p->col_test, p->scale, &lo, &hi);
		p->ax = ax;
		p->ay = axis_nice(lo, hi, false);
		p->x0 = k * PANEL_W + PLOT_L;
		p->x1 = (k + 1) * PANEL_W - PLOT_R;
		p->y0 = PLOT_T;
		p->y1 = PLOT_T + PLOT_H;
		panel_axes(b, p);
		for (int i = 0; i < n; i++) {
			const char *colour = palette[i % N_COLOURS];
			panel_lr_steps(b, p, &ls[i], i, colour);
			panel_curve(b, p, &ls[i], p->col_train, colour);
			panel_curve(b, p, &ls[i], p->col_test, colour);
		}
	}
	legend_flow(b, ls, n);
	svg_add(b, "</svg>\n");
}

int plot_svg_write(const char *out, const char *const *logs, const char *const *labels, int n_logs,
                   char *err, size_t errlen)
{
	if (n_logs < 1) {
		snprintf(err, errlen, "%s: no logs to plot", out);
		return -1;
	}
	plot_log *ls = calloc((size_t)n_logs, sizeof *ls);
	svg b = {0};
	int rc = -1;
	if (!ls) {
		snprintf(err, errlen, "%s: out of memory", out);
		return -1;
	}
	for (int i = 0; i < n_logs; i++) {
		if (log_read(&ls[i], logs[i], err, errlen) != 0)
			goto done;
		ls[i].label = labels && labels[i] ? strdup(labels[i]) : label_default(logs[i]);
		if (!ls[i].label) {
			snprintf(err, errlen, "%s: out of memory", out);
			goto done;
		}
	}
	svg_render(&b, ls, n_logs);
	if (b.oom)
		snprintf(err, errlen, "%s: out of memory", out);
	else
		rc = rt_file_write_atomic(out, b.s, b.len, err, errlen);
done:
	for (int i = 0; i < n_logs; i++) {
		free(ls[i].label);
		free(ls[i].rows);
	}
	free(ls);
	free(b.s);
	return rc;
}

/* What netcc train shows while it works, and log.csv. On a terminal one
 * line redrawn in place; in a file or pipe (a CI log, nohup) plain lines,
 * few enough to read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "train.h"
#include "runtime.h"

enum { BAR_WIDTH = 20 };
#define REDRAW_SECONDS 0.1

void progress_begin(progress *p, int64_t epoch, int64_t epochs, int64_t nb, int64_t first)
{
	int64_t tenth = (nb + 9) / 10;
	*p = (progress){
	    .tty = isatty(STDERR_FILENO),
	    .epoch = epoch,
	    .epochs = epochs,
	    .nb = nb,
	    .first = first,
	    .next_line = (first / tenth + 1) * tenth,
	    .start = backend_now(),
	};
}

static void duration_text(double s, char *buf, size_t len)
{
	long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
	if (t >= 3600)
		snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

/* "loss 0.4123  acc 85.2%  5120 img/s  0:12 left", shared by both styles. */
static void rates_text(const progress *p, int64_t b, double loss, double error, char *buf,
                       size_t len)
{
	double spent = backend_now() - p->start;
	int64_t done = b - p->first;
	double per_batch = done > 0 ? spent / (double)done : 0;
	double ips = spent > 0 ? (double)(done * p->batch) / spent : 0;
	char left[32];
	duration_text(per_batch * (double)(p->nb - b), left, sizeof left);
	snprintf(buf, len, "loss %.4f  acc %.1f%%  %.0f img/s  %s left", loss,
	         100.0 * (1.0 - error), ips, left);
}

static void bar_draw(progress *p, int64_t b, double loss, double error)
{
	char bar[BAR_WIDTH + 1], rates[160];
	int fill = (int)(b * BAR_WIDTH / p->nb);
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = 0;
	rates_text(p, b, loss, error, rates, sizeof rates);
	fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %lld/%lld  %s", (long long)p->epoch,
	        (long long)p->epochs, bar, (long long)b, (long long)p->nb, rates);
	fflush(stderr);
	p->drawn = true;
}

void progress_step(progress *p, int64_t b, int64_t batch, double loss, double error)
{
	p->batch = batch;
	if (p->tty) {
		double now = backend_now();
		if (now - p->last_draw >= REDRAW_SECONDS || b == p->nb) {
			p->last_draw = now;
			bar_draw(p, b, loss, error);
		}
		return;
	}
	/* the epoch's summary line follows the last batch */
	if (b < p->next_line || b == p->nb)
		return;
	int64_t tenth = (p->nb + 9) / 10;
	p->next_line = (b / tenth + 1) * tenth;
	char rates[160];
	rates_text(p, b, loss, error, rates, sizeof rates);
	fprintf(stderr, "epoch %lld/%lld  batch %lld/%lld  %s\n", (long long)p->epoch,
	        (long long)p->epochs, (long long)b, (long long)p->nb, rates);
}

void progress_testing(progress *p, int64_t images)
{
	if (!p->tty)
		return;
	fprintf(stderr, "\r\033[Kepoch %lld/%lld  testing on %lld images", (long long)p->epoch,
	        (long long)p->epochs, (long long)images);
	fflush(stderr);
	p->drawn = true;
}

void progress_clear(progress *p)
{
	if (p->tty && p->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	p->drawn = false;
}

/* ---- log.csv ----------------------------------------------------------- */

const char train_log_header[] = "epoch,train_loss,train_error,test_loss,test_error,lr,seconds\n";

static int log_append(train_log *l, const char *s, size_t n)
{
	char *t = realloc(l->text, l->len + n + 1);
	if (!t)
		return -1;
	memcpy(t + l->len, s, n);
	l->len += n;
	t[l->len] = 0;
	l->text = t;
	return 0;
}

int train_log_add(train_log *l, const epoch_row *r)
{
	char row[256];
	int n =
	    snprintf(row, sizeof row, "%lld,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f\n", (long long)r->epoch,
	             r->train_loss, r->train_error, r->test_loss, r->test_error, r->lr, r->seconds);
	return log_append(l, row, (size_t)n);
}

int train_log_set(train_log *l, const char *text)
{
	l->len = 0;
	return log_append(l, text, strlen(text));
}

int train_log_write(const train_log *l, const char *path, char *err, size_t errlen)
{
	size_t hl = sizeof train_log_header - 1;
	char *buf = malloc(hl + l->len + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	memcpy(buf, train_log_header, hl);
	if (l->len)
		memcpy(buf + hl, l->text, l->len);
	int rc = rt_file_write_atomic(path, buf, hl + l->len, err, errlen);
	free(buf);
	return rc;
}

void train_log_free(train_log *l)
{
	free(l->text);
	*l = (train_log){0};
}

/* netcc eval's report: a summary, a per-class table and the confusion
 * matrix for people, or the same as one JSON object for scripts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "driver.h"

static int digits(int64_t v)
{
	int d = 1;
	for (; v >= 10; v /= 10)
		d++;
	return d;
}

static void percent_print(FILE *f, double fraction)
{
	if (isnan(fraction))
		fprintf(f, "%8s", "-");
	else
		fprintf(f, "%7.2f%%", 100 * fraction);
}

static void class_table_print(const metrics *m, FILE *f)
{
	int w = digits(m->classes - 1) > 5 ? digits(m->classes - 1) : 5;
	fprintf(f, "\n%*s  examples  correct  accuracy\n", w, "class");
	for (int64_t c = 0; c < m->classes; c++) {
		fprintf(f, "%*lld  %8lld  %7lld  ", w, (long long)c, (long long)m->class_n[c],
		        (long long)m->confusion[c * m->classes + c]);
		percent_print(f, metrics_class_accuracy(m, c));
		fputc('\n', f);
	}
}

/* Every column as wide as the widest count or class number, so that the
 * matrix reads down its columns whatever the counts. */
static void confusion_print(const metrics *m, FILE *f)
{
	int64_t most = m->classes - 1;
	for (int64_t i = 0; i < m->classes * m->classes; i++)
		most = m->confusion[i] > most ? m->confusion[i] : most;
	int w = digits(most), lw = digits(m->classes - 1) > 4 ? digits(m->classes - 1) : 4;
	fprintf(f, "\nconfusion matrix (rows: true class, columns: predicted)\n%*s", lw, "true");
	for (int64_t c = 0; c < m->classes; c++)
		fprintf(f, " %*lld", w, (long long)c);
	fputc('\n', f);
	for (int64_t r = 0; r < m->classes; r++) {
		fprintf(f, "%*lld", lw, (long long)r);
		for (int64_t c = 0; c < m->classes; c++)
			fprintf(f, " %*lld", w, (long long)m->confusion[r * m->classes + c]);
		fputc('\n', f);
	}
}

void eval_report_text(const eval_summary *s, FILE *f)
{
	const metrics *m = s->m;
	fprintf(f, "netcc eval: %s on the %s split of %s, weights %s, target %s\n", s->model,
	        s->split, s->data, s->weights, s->target);
	fprintf(f, "examples    %lld (batch %lld)\n", (long long)m->n, (long long)s->batch);
	fprintf(f, "loss        %.6f\n", metrics_loss(m));
	fprintf(f, "accuracy    %.2f%% (%lld of %lld)\n", 100 * metrics_accuracy(m),
	        (long long)m->correct, (long long)m->n);
	fprintf(f, "top-%-7lld %.2f%%\n", (long long)m->k, 100 * metrics_top_k_accuracy(m));
	if (m->invalid)
		fprintf(f, "NaN rows    %lld (counted wrong, left out of the matrix)\n",
		        (long long)m->invalid);
	fprintf(f, "throughput  %.0f images/s (%.3f s; compiling took %.3f s)\n",
	        s->seconds > 0 ? (double)m->n / s->seconds : 0, s->seconds, s->compile_seconds);
	class_table_print(m, f);
	confusion_print(m, f);
}

/* NaN becomes null: JSON has no NaN. */
static bool number_add(cJSON *o, const char *key, double v)
{
	cJSON *item = isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
	if (item && cJSON_AddItemToObject(o, key, item))
		return true;
	cJSON_Delete(item);
	return false;
}

static bool per_class_add(cJSON *o, const metrics *m)
{
	cJSON *a = cJSON_AddArrayToObject(o, "per_class");
	bool ok = a != NULL;
	for (int64_t c = 0; ok && c < m->classes; c++) {
		cJSON *e = cJSON_CreateObject();
		ok = e && cJSON_AddItemToArray(a, e);
		if (!ok) {
			cJSON_Delete(e);
			break;
		}
		ok = number_add(e, "class", (double)c) &&
		     number_add(e, "examples", (double)m->class_n[c]) &&
		     number_add(e, "correct", (double)m->confusion[c * m->classes + c]) &&
		     number_add(e, "accuracy", metrics_class_accuracy(m, c));
	}
	return ok;
}

static bool confusion_add(cJSON *o, const metrics *m)
{
	cJSON *a = cJSON_AddArrayToObject(o, "confusion");
	bool ok = a != NULL;
	for (int64_t r = 0; ok && r < m->classes; r++) {
		cJSON *row = cJSON_CreateArray();
		ok = row && cJSON_AddItemToArray(a, row);
		if (!ok) {
			cJSON_Delete(row);
			break;
		}
		for (int64_t c = 0; ok && c < m->classes; c++) {
			cJSON *v = cJSON_CreateNumber((double)m->confusion[r * m->classes + c]);
			ok = v && cJSON_AddItemToArray(row, v);
			if (!ok)
				cJSON_Delete(v);
		}
	}
	return ok;
}

int eval_report_json(const eval_summary *s, FILE *f)
{
	const metrics *m = s->m;
	double ips = s->seconds > 0 ? (double)m->n / s->seconds : 0;
	cJSON *o = cJSON_CreateObject();
	bool ok =
	    o && cJSON_AddStringToObject(o, "model", s->model) &&
	    cJSON_AddStringToObject(o, "split", s->split) &&
	    cJSON_AddStringToObject(o, "data", s->data) &&
	    cJSON_AddStringToObject(o, "weights", s->weights) &&
	    cJSON_AddStringToObject(o, "target", s->target) &&
	    number_add(o, "batch", (double)s->batch) && number_add(o, "examples", (double)m->n) &&
	    number_add(o, "loss", metrics_loss(m)) &&
	    number_add(o, "accuracy", metrics_accuracy(m)) &&
	    number_add(o, "correct", (double)m->correct) && number_add(o, "top_k", (double)m->k) &&
	    number_add(o, "top_k_accuracy", metrics_top_k_accuracy(m)) &&
	    number_add(o, "nan_rows", (double)m->invalid) && number_add(o, "seconds", s->seconds) &&
	    number_add(o, "images_per_second", ips) &&
	    number_add(o, "compile_seconds", s->compile_seconds) && per_class_add(o, m) &&
	    confusion_add(o, m);
	char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	if (!text) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	fprintf(f, "%s\n", text);
	cJSON_free(text);
	return 0;
}

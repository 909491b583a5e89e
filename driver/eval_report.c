/* netcc eval's report: a summary, a per-class table and the confusion
 * matrix for people, or the same as one JSON object for scripts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "driver.h"
#include "runtime.h"

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

static rt_json *class_entry(rt_json_doc *d, const metrics *m, int64_t c)
{
	rt_json *e = rt_json_value_new(d, RT_JSON_OBJECT);
	rt_json_object_add(d, e, "class", rt_json_int_new(d, c));
	rt_json_object_add(d, e, "examples", rt_json_int_new(d, m->class_n[c]));
	rt_json_object_add(d, e, "correct", rt_json_int_new(d, m->confusion[c * m->classes + c]));
	/* NaN (a class without examples) becomes null: JSON has no NaN. */
	rt_json_object_add(d, e, "accuracy", rt_json_number_new(d, metrics_class_accuracy(m, c)));
	return e;
}

static rt_json *confusion_row(rt_json_doc *d, const metrics *m, int64_t r)
{
	rt_json *row = rt_json_value_new(d, RT_JSON_ARRAY);
	for (int64_t c = 0; c < m->classes; c++)
		rt_json_array_add(d, row, rt_json_int_new(d, m->confusion[r * m->classes + c]));
	return row;
}

int eval_report_json(const eval_summary *s, FILE *f)
{
	const metrics *m = s->m;
	double ips = s->seconds > 0 ? (double)m->n / s->seconds : 0;
	rt_json_doc d = {0};
	rt_json *o = d.root = rt_json_value_new(&d, RT_JSON_OBJECT);
	rt_json_object_add(&d, o, "model", rt_json_string_new(&d, s->model));
	rt_json_object_add(&d, o, "split", rt_json_string_new(&d, s->split));
	rt_json_object_add(&d, o, "data", rt_json_string_new(&d, s->data));
	rt_json_object_add(&d, o, "weights", rt_json_string_new(&d, s->weights));
	rt_json_object_add(&d, o, "target", rt_json_string_new(&d, s->target));
	rt_json_object_add(&d, o, "batch", rt_json_int_new(&d, s->batch));
	rt_json_object_add(&d, o, "examples", rt_json_int_new(&d, m->n));
	rt_json_object_add(&d, o, "loss", rt_json_number_new(&d, metrics_loss(m)));
	rt_json_object_add(&d, o, "accuracy", rt_json_number_new(&d, metrics_accuracy(m)));
	rt_json_object_add(&d, o, "correct", rt_json_int_new(&d, m->correct));
	rt_json_object_add(&d, o, "top_k", rt_json_int_new(&d, m->k));
	rt_json_object_add(&d, o, "top_k_accuracy",
	                   rt_json_number_new(&d, metrics_top_k_accuracy(m)));
	rt_json_object_add(&d, o, "nan_rows", rt_json_int_new(&d, m->invalid));
	rt_json_object_add(&d, o, "seconds", rt_json_number_new(&d, s->seconds));
	rt_json_object_add(&d, o, "images_per_second", rt_json_number_new(&d, ips));
	rt_json_object_add(&d, o, "compile_seconds", rt_json_number_new(&d, s->compile_seconds));
	rt_json *pc = rt_json_object_add(&d, o, "per_class", rt_json_value_new(&d, RT_JSON_ARRAY));
	rt_json *cm = rt_json_object_add(&d, o, "confusion", rt_json_value_new(&d, RT_JSON_ARRAY));
	for (int64_t c = 0; c < m->classes; c++) {
		rt_json_array_add(&d, pc, class_entry(&d, m, c));
		rt_json_array_add(&d, cm, confusion_row(&d, m, c));
	}
	char *text = rt_json_doc_write(&d, NULL);
	rt_json_doc_free(&d);
	if (!text) {
		fprintf(stderr, "netcc: error: out of memory\n");
		return 1;
	}
	fprintf(f, "%s\n", text);
	free(text);
	return 0;
}

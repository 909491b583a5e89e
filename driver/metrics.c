/* What netcc eval reports, accumulated batch by batch: kept apart from the
 * command so that the rules (ties, NaN, extreme logits) are tested on
 * hand-computed rows. */
#include <math.h>
#include <stdlib.h>

#include "driver.h"

int metrics_init(metrics *m, int64_t classes)
{
	*m = (metrics){.classes = classes, .k = classes < 5 ? classes : 5};
	m->confusion = calloc((size_t)(classes * classes), sizeof *m->confusion);
	m->class_n = calloc((size_t)classes, sizeof *m->class_n);
	if (m->confusion && m->class_n)
		return 0;
	metrics_free(m);
	return -1;
}

void metrics_free(metrics *m)
{
	free(m->confusion);
	free(m->class_n);
	m->confusion = m->class_n = NULL;
}

/* Double precision, shifted by the maximum: exp never sees more than 0,
 * and the label's term is subtracted from the maximum first so that two
 * huge logits cancel exactly instead of losing the log-sum to rounding. */
double metrics_row_loss(const float *row, int64_t classes, int32_t label)
{
	double m = row[0];
	for (int64_t k = 1; k < classes; k++)
		m = row[k] > m ? row[k] : m;
	if (isinf(m)) {
		int64_t ties = 0;
		for (int64_t k = 0; k < classes; k++)
			ties += row[k] == m;
		return row[label] == m ? log((double)ties) : INFINITY;
	}
	double sum = 0;
	for (int64_t k = 0; k < classes; k++)
		sum += exp((double)row[k] - m);
	return (m - (double)row[label]) + log(sum);
}

/* Classes ranked above the label: higher logits, and equal ones of a
 * lower index. */
static int64_t label_rank(const float *row, int64_t classes, int32_t label)
{
	int64_t rank = 0;
	for (int64_t k = 0; k < classes; k++)
		rank += row[k] > row[label] || (row[k] == row[label] && k < label);
	return rank;
}

static int64_t row_argmax(const float *row, int64_t classes)
{
	int64_t best = 0;
	for (int64_t k = 1; k < classes; k++)
		if (row[k] > row[best])
			best = k;
	return best;
}

static bool row_has_nan(const float *row, int64_t classes)
{
	for (int64_t k = 0; k < classes; k++)
		if (isnan(row[k]))
			return true;
	return false;
}

void metrics_batch_add(metrics *m, const float *logits, const int32_t *labels, int64_t n)
{
	int64_t c = m->classes;
	for (int64_t i = 0; i < n; i++) {
		const float *row = logits + i * c;
		int32_t label = labels[i];
		m->n++;
		m->class_n[label]++;
		if (row_has_nan(row, c)) {
			m->invalid++;
			m->loss_sum = NAN;
			continue;
		}
		m->loss_sum += metrics_row_loss(row, c, label);
		int64_t rank = label_rank(row, c, label);
		m->correct += rank == 0;
		m->top_k += rank < m->k;
		m->confusion[label * c + row_argmax(row, c)]++;
	}
}

double metrics_loss(const metrics *m)
{
	return m->n ? m->loss_sum / (double)m->n : NAN;
}

double metrics_accuracy(const metrics *m)
{
	return m->n ? (double)m->correct / (double)m->n : NAN;
}

double metrics_top_k_accuracy(const metrics *m)
{
	return m->n ? (double)m->top_k / (double)m->n : NAN;
}

double metrics_class_accuracy(const metrics *m, int64_t c)
{
	if (!m->class_n[c])
		return NAN;
	return (double)m->confusion[c * m->classes + c] / (double)m->class_n[c];
}

/* Learning-rate schedules for netcc train. The rate changes only between
 * epochs (warm-up aside), so a schedule is a little state that an epoch's
 * end moves forward, and a checkpoint can carry exactly. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* The improvement plateau counts as one: PyTorch's ReduceLROnPlateau
 * default (relative 1e-4), so that noise in the last digits of a loss that
 * has really stopped falling does not keep the rate up. */
#define PLATEAU_THRESHOLD 1e-4

void schedule_from_train(lr_schedule *s, const ir_train *t)
{
	*s = (lr_schedule){
	    .kind = t->sched,
	    .n_steps = t->n_steps,
	    .factor = t->factor,
	    .patience = t->patience,
	    .warmup = t->warmup,
	    .lr = t->lr,
	    .best = INFINITY,
	};
	memcpy(s->steps, t->steps, sizeof s->steps);
}

static int steps_parse(lr_schedule *s, const char *list, char *err, size_t errlen)
{
	int n = 0;
	int64_t steps[IR_MAX_STEPS];
	const char *p = list;
	for (;;) {
		char *end;
		errno = 0;
		long long e = strtoll(p, &end, 10);
		if (end == p || errno || e < 1 || e > 1000000) {
			snprintf(err, errlen, "'%s': expected epochs such as steps:5,8", list);
			return -1;
		}
		if (n == IR_MAX_STEPS) {
			snprintf(err, errlen, "'%s': at most %d steps", list, IR_MAX_STEPS);
			return -1;
		}
		if (n && e <= steps[n - 1]) {
			snprintf(err, errlen, "'%s': step epochs must increase", list);
			return -1;
		}
		steps[n++] = e;
		if (!*end)
			break;
		if (*end != ',') {
			snprintf(err, errlen, "'%s': expected epochs such as steps:5,8", list);
			return -1;
		}
		p = end + 1;
	}
	s->n_steps = n;
	memcpy(s->steps, steps, (size_t)n * sizeof *steps);
	return 0;
}

int schedule_parse(lr_schedule *s, const char *text, char *err, size_t errlen)
{
	if (!strcmp(text, "none")) {
		s->kind = IR_SCHED_NONE;
		return 0;
	}
	if (!strcmp(text, "plateau")) {
		s->kind = IR_SCHED_PLATEAU;
		return 0;
	}
	if (!strncmp(text, "steps:", 6)) {
		if (steps_parse(s, text + 6, err, errlen) != 0)
			return -1;
		s->kind = IR_SCHED_STEPS;
		return 0;
	}
	if (!strcmp(text, "steps")) {
		/* the model's own epochs, when its train section lists some */
		if (s->n_steps == 0) {
			snprintf(err, errlen, "'steps' needs the epochs: steps:5,8");
			return -1;
		}
		s->kind = IR_SCHED_STEPS;
		return 0;
	}
	snprintf(err, errlen, "'%s': expected steps:E1,E2,..., plateau or none", text);
	return -1;
}

double schedule_step_lr(const lr_schedule *s, int64_t step, int64_t steps_per_epoch)
{
	int64_t warm = s->warmup * steps_per_epoch;
	if (step < warm)
		return s->lr * (double)(step + 1) / (double)warm;
	return s->lr;
}

static bool plateau_end(lr_schedule *s, double loss)
{
	if (loss < s->best * (1 - PLATEAU_THRESHOLD)) {
		s->best = loss;
		s->bad = 0;
		return false;
	}
	if (++s->bad < s->patience)
		return false;
	s->bad = 0;
	s->lr *= s->factor;
	return true;
}

bool schedule_epoch_end(lr_schedule *s, int64_t epoch, double loss)
{
	switch (s->kind) {
	case IR_SCHED_NONE:
		return false;
	case IR_SCHED_PLATEAU:
		return plateau_end(s, loss);
	case IR_SCHED_STEPS:
		for (int i = 0; i < s->n_steps; i++)
			if (s->steps[i] == epoch) {
				s->lr *= s->factor;
				return true;
			}
		return false;
	}
	return false;
}

void schedule_text(const lr_schedule *s, char *buf, size_t len)
{
	if (s->kind != IR_SCHED_STEPS) {
		snprintf(buf, len, "%s", s->kind == IR_SCHED_NONE ? "none" : "plateau");
		return;
	}
	size_t at = (size_t)snprintf(buf, len, "steps:");
	for (int i = 0; i < s->n_steps && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? "," : "",
		                       (long long)s->steps[i]);
}

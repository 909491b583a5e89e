/* Built by test_compile for a target, with that target's C compiler,
 * against a library netcc compiled for it under the name "tgt", and run
 * where the target's code runs (natively, or under qemu): infers on
 * argv[1] (TGT_INPUT_SIZE floats) on one, two and three threads, checks
 * that the three agree bit for bit, and writes the output to argv[2].
 * With -DTRAIN (a library compiled --train) it first takes two SGD steps
 * on that input, labels i % TGT_CLASSES, on each thread count from the
 * same start, and writes the two losses before the output.
 * Exit 3, with tgt_error(NULL) on stderr, where create refuses the CPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tgt.h"

static float in[TGT_INPUT_SIZE], out[3][TGT_OUTPUT_SIZE];

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	FILE *f = fopen(argv[1], "rb");
	if (!f || fread(in, sizeof(float), TGT_INPUT_SIZE, f) != TGT_INPUT_SIZE)
		return 4;
	fclose(f);
	tgt *m = tgt_create();
	if (!m) {
		fprintf(stderr, "tgt_create: %s\n", tgt_error(NULL));
		return 3;
	}
#ifdef TRAIN
	int32_t labels[TGT_BATCH];
	float loss[3][2];
	for (int i = 0; i < TGT_BATCH; i++)
		labels[i] = i % TGT_CLASSES;
#endif
	for (int t = 0; t < 3; t++) {
		tgt_destroy(m);
		if (!(m = tgt_create()) || tgt_set_threads(m, t + 1) != TGT_OK)
			return 5;
#ifdef TRAIN
		for (int k = 0; k < 2; k++)
			if (tgt_train_step(m, in, labels, 0.05f, &loss[t][k]) != TGT_OK) {
				fprintf(stderr, "%s\n", tgt_error(m));
				return 5;
			}
		if (memcmp(loss[t], loss[0], sizeof loss[0])) {
			fprintf(stderr, "losses differ with the thread count\n");
			return 6;
		}
#endif
		if (tgt_infer(m, in, out[t]) != TGT_OK) {
			fprintf(stderr, "%s\n", tgt_error(m));
			return 5;
		}
	}
	if (memcmp(out[0], out[1], sizeof out[0]) || memcmp(out[0], out[2], sizeof out[0])) {
		fprintf(stderr, "results differ with the thread count\n");
		return 6;
	}
	tgt_destroy(m);
	f = fopen(argv[2], "wb");
	if (!f)
		return 7;
#ifdef TRAIN
	if (fwrite(loss[0], sizeof(float), 2, f) != 2)
		return 7;
#endif
	if (fwrite(out[0], sizeof(float), TGT_OUTPUT_SIZE, f) != TGT_OUTPUT_SIZE || fclose(f) != 0)
		return 7;
	printf("%s ok\n", TGT_TARGET);
	return 0;
}

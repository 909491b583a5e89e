/* The all-reduce netcc train uses (reduce-scatter by MPI_Alltoall, then
 * MPI_Allgather), timed for a small and a large message, to fit the
 * latency a and bandwidth B of t(S) = 2 (P-1) a + 2 (P-1)/P S / B that
 * docs/training.md uses. Run by bench/scaling:
 *
 *   mpirun -np 2 build/bench/allreduce_bench
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double time_one(float *buf, float *scratch, int chunk, int P, int runs)
{
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = MPI_Wtime();
	for (int r = 0; r < runs; r++) {
		MPI_Alltoall(buf, chunk, MPI_FLOAT, scratch, chunk, MPI_FLOAT, MPI_COMM_WORLD);
		MPI_Allgather(MPI_IN_PLACE, chunk, MPI_FLOAT, buf, chunk, MPI_FLOAT, MPI_COMM_WORLD);
	}
	double t = (MPI_Wtime() - t0) / runs, worst;
	MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
	(void)P;
	return worst;
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	int P, rank;
	MPI_Comm_size(MPI_COMM_WORLD, &P);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	const int small = 1, large = (25 << 20) / 4 / P; /* floats a rank's chunk */
	float *buf = calloc((size_t)large * P, sizeof *buf);
	float *scratch = calloc((size_t)large * P, sizeof *scratch);
	if (!buf || !scratch)
		MPI_Abort(MPI_COMM_WORLD, 1);
	time_one(buf, scratch, large, P, 2); /* warm-up */
	double ts = time_one(buf, scratch, small, P, 2000);
	double tl = time_one(buf, scratch, large, P, 10);
	double S = (double)large * P * sizeof(float);
	double a = ts / (2.0 * (P - 1)), B = 2.0 * (P - 1) / P * S / (tl - ts);
	if (rank == 0)
		printf("all-reduce over %d ranks: %.1f us for %d floats, %.2f ms for %.1f MB: "
		       "latency a = %.1f us, bandwidth B = %.2f GB/s\n",
		       P, ts * 1e6, small * P, tl * 1e3, S / 1e6, a * 1e6, B / 1e9);
	free(buf);
	free(scratch);
	MPI_Finalize();
	return 0;
}

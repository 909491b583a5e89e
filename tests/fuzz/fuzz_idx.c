/* libFuzzer: any bytes as an IDX file, plain or gzip-compressed (through a
 * file, as netcc train reads them), are parsed or refused. */
#include <stdio.h>
#include <unistd.h>

#include "runtime.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	rt_array a;
	char err[256];
	if (rt_idx_parse(data, size, &a, err, sizeof err) == 0)
		rt_array_free(&a);
	if (size < 2 || data[0] != 0x1f || data[1] != 0x8b)
		return 0;
	char path[64];
	snprintf(path, sizeof path, "/tmp/netcc-fuzz-idx-%d.gz", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (rt_idx_read(path, &a, err, sizeof err) == 0)
		rt_array_free(&a);
	unlink(path);
	return 0;
}

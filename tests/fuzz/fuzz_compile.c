/* libFuzzer: small generated models compiled end to end (compile_model.c). */
#include "compile_model.c"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *report;
	if (compile_model(data, size, &report)) {
		fputs(report ? report : "a model failed past the front end\n", stderr);
		abort();
	}
	return 0;
}

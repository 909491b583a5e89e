/* netcc targets: what code can be generated for, and what each target
 * asks of the CPU that runs it; and --target as every command reads it. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "driver.h"
#include "kset.h"

int driver_target(const opts *o, backend_target *t, bool run_here)
{
	char err[512];
	const char *name = opts_str(o, "target", "native");
	if (backend_target_get(name, t, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 2;
	}
	char why[256];
	if (run_here && !backend_target_runs_here(t, why, sizeof why)) {
		fprintf(stderr,
		        "netcc: error: --target %s: this command runs the code here, and %s (netcc "
		        "compile writes code for it)\n",
		        t->name, why);
		return 2;
	}
	return 0;
}

int cmd_targets(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "targets");
	if (rc)
		return rc < 0 ? 0 : rc;
	/* for scripts (make bench): what a --target value resolves to here */
	const char *which = opts_str(&o, "which", NULL);
	if (which) {
		backend_target t;
		char err[512];
		if (backend_target_get(which, &t, err, sizeof err) != 0) {
			fprintf(stderr, "netcc: error: %s\n", err);
			return 2;
		}
		printf("%s %s %s\n", t.name, t.kset, t.tune ? t.tune : t.cpu);
		return 0;
	}
	int n;
	const backend_target *ts = backend_targets(&n);
	backend_target native;
	char err[256];
	bool have_native = backend_target_get("native", &native, err, sizeof err) == 0;
	printf("%-16s %-8s %-10s %s\n", "target", "kernels", "runs here", "what it needs");
	for (int i = 0; i < n; i++) {
		const backend_target *t = &ts[i];
		char names[512], why[256];
		bool here = backend_target_runs_here(t, why, sizeof why);
		printf("%-16s %-8s %-10s %s\n", t->name, t->kset, here ? "yes" : "no",
		       rt_cpu_feature_names(t->needs, names, sizeof names));
		printf("%-16s %s; LLVM: %s, cpu %s%s%s\n", "", t->about, t->triple, t->cpu,
		       t->features[0] ? ", " : "", t->features);
	}
	if (have_native)
		printf("%-16s is %s here, tuned for %s\n", "native", native.name, native.tune);
	else
		printf("%-16s %s\n", "native", err);
	return 0;
}

/* netcc plot: the curves of one or more training runs in one picture, to
 * compare them (netcc train draws its own run's as it goes). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "driver.h"

/* -o naming one of the logs would replace the data with its picture. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (!strcmp(a, b))
		return true;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

int cmd_plot(int argc, char **argv)
{
	opts o;
	int rc = opts_parse(&o, argc, argv, "plot");
	if (rc)
		return rc < 0 ? 0 : rc;
	const char *out = opts_str(&o, "o", NULL);
	const char *labels[OPTS_MAX] = {0};
	int n_labels = opts_all(&o, "label", labels, OPTS_MAX);
	if (!o.n_pos) {
		fprintf(stderr, "netcc: error: plot needs at least one log.csv (see netcc help)\n");
		return 2;
	}
	if (!out) {
		fprintf(stderr, "netcc: error: plot needs -o FILE.svg\n");
		return 2;
	}
	if (n_labels > o.n_pos) {
		fprintf(stderr,
		        "netcc: error: %d --label for %d log%s: at most one per log, in order\n",
		        n_labels, o.n_pos, o.n_pos == 1 ? "" : "s");
		return 2;
	}
	for (int i = 0; i < o.n_pos; i++)
		if (same_file(out, o.pos[i])) {
			fprintf(stderr, "netcc: error: -o %s would replace the log it plots\n",
			        out);
			return 2;
		}
	char err[1024];
	if (plot_svg_write(out, o.pos, labels, o.n_pos, err, sizeof err) != 0) {
		fprintf(stderr, "netcc: error: %s\n", err);
		return 1;
	}
	fprintf(stderr, "netcc: wrote %s (%d log%s)\n", out, o.n_pos, o.n_pos == 1 ? "" : "s");
	return 0;
}

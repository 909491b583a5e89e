/* netcc weights (driver/cmd_weights.c) and the .npz reader (runtime/formats/npz.c).
 * tools/make_weights_fixtures.py wrote tests/weights/: a torchvision-style
 * ResNet in miniature, its state dict as np.savez, np.savez_compressed and
 * safetensors, an input and PyTorch's output for it. The state dict
 * converted by order into tiny.nn's names, or by name into what netcc
 * import made of the network, must give PyTorch's output; the three
 * containers must give the same bytes; a mismatch is refused, naming the
 * parameter and the tensor, and leaves no file. */
#include "testcli.h"

#define FIX "tests/weights/"

/* ---- the .npz reader ------------------------------------------------------- */

static rt_npz_file npz_load(const char *rel)
{
	rt_npz_file f;
	char err[512];
	ck_assert_msg(rt_npz_read(cli_root_path(rel), &f, err, sizeof err) == 0, "%s", err);
	return f;
}

START_TEST(npz_keeps_the_state_dict)
{
	rt_npz_file a = npz_load(FIX "tiny.npz"), z = npz_load(FIX "tiny_z.npz");
	/* 32 parameters and buffers, 6 num_batches_tracked, in the state dict's order */
	ck_assert_int_eq(a.n, 38);
	ck_assert_int_eq(z.n, 38);
	ck_assert_str_eq(a.names[0], "conv1.weight");
	ck_assert_str_eq(a.names[5], "bn1.num_batches_tracked");
	ck_assert_str_eq(a.names[a.n - 1], "fc.bias");
	for (int i = 0; i < a.n; i++) {
		ck_assert_str_eq(a.names[i], z.names[i]);
		ck_assert_int_eq(a.arrays[i].dtype, z.arrays[i].dtype);
		ck_assert_int_eq(a.arrays[i].count, z.arrays[i].count);
		ck_assert(memcmp(a.arrays[i].data, z.arrays[i].data,
		                 a.arrays[i].count * rt_dtype_size(a.arrays[i].dtype)) == 0);
	}
	const rt_array *nbt = rt_npz_find(&a, "layer2.0.downsample.1.num_batches_tracked");
	ck_assert_ptr_nonnull(nbt);
	ck_assert_int_eq(nbt->dtype, RT_DTYPE_I64);
	ck_assert_int_eq(((const int64_t *)nbt->data)[0], 7);
	const rt_array *w = rt_npz_find(&a, "conv1.weight");
	ck_assert_int_eq(w->rank, 4);
	ck_assert_int_eq(w->dims[0], 4);
	ck_assert_int_eq(w->dims[3], 7);
	ck_assert_ptr_null(rt_npz_find(&a, "conv1"));
	rt_npz_free(&a);
	rt_npz_free(&z);
}
END_TEST

/* Every prefix of both archives, and each with one byte changed at many
 * places, end in an error or (a changed byte the format does not check,
 * such as a date) in the same arrays; never a crash (the sanitizers run
 * this). A flipped data byte is caught by the CRC. */
START_TEST(npz_tampering_refused)
{
	static const char *const files[] = {FIX "tiny.npz", FIX "tiny_z.npz"};
	for (int k = 0; k < 2; k++) {
		size_t len;
		char *img = test_slurp(cli_root_path(files[k]), &len);
		char err[512];
		rt_npz_file f;
		for (size_t n = 0; n < len; n += test_sanitized() ? 13 : 1) {
			err[0] = 0;
			ck_assert_msg(rt_npz_parse(img, n, &f, err, sizeof err) != 0,
			              "%s: %zu of %zu bytes read without an error", files[k], n,
			              len);
			ck_assert_msg(err[0] != 0, "%s: no message at %zu bytes", files[k], n);
		}
		int refused = 0, tries = 0;
		for (size_t at = 0; at < len; at += 7, tries++) {
			img[at] ^= 0x5a;
			if (rt_npz_parse(img, len, &f, err, sizeof err) != 0)
				refused++;
			else
				rt_npz_free(&f);
			img[at] ^= 0x5a;
		}
		ck_assert_msg(refused > tries * 9 / 10, "%s: only %d of %d changed bytes refused",
		              files[k], refused, tries);
		free(img);
	}
	/* a float in the middle of the stored archive's first member */
	size_t len;
	char *img = test_slurp(cli_root_path(FIX "tiny.npz"), &len);
	char err[512];
	rt_npz_file f;
	img[300] ^= 1;
	ck_assert_int_ne(rt_npz_parse(img, len, &f, err, sizeof err), 0);
	ck_assert_msg(strstr(err, "CRC-32") && strstr(err, "conv1.weight"), "%s", err);
	free(img);
	ck_assert_int_ne(rt_npz_read("/nonexistent.npz", &f, err, sizeof err), 0);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent.npz"));
}
END_TEST

/* The halves a state dict saved in float16 or bfloat16 holds, exactly. */
START_TEST(halves_convert_exactly)
{
	static const uint16_t f16[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x8000};
	static const float want16[] = {1.0f,     -2.0f,    0x1p-24f, 0x3ffp-24f,
	                               65504.0f, INFINITY, -0.0f};
	float got[7];
	rt_values_to_f32(RT_DTYPE_F16, f16, 7, got);
	for (int i = 0; i < 7; i++)
		ck_assert_msg(memcmp(&got[i], &want16[i], 4) == 0, "half 0x%04x gave %a", f16[i],
		              (double)got[i]);
	uint16_t nan16 = 0x7e00;
	rt_values_to_f32(RT_DTYPE_F16, &nan16, 1, got);
	ck_assert(isnan(got[0]));
	static const uint16_t bf[] = {0x3f80, 0xc0a0, 0x0001, 0x7f80};
	static const float wantbf[] = {1.0f, -5.0f, 0x1p-133f, INFINITY};
	rt_values_to_f32(RT_DTYPE_BF16, bf, 4, got);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(memcmp(&got[i], &wantbf[i], 4) == 0, "bfloat16 0x%04x gave %a", bf[i],
		              (double)got[i]);
}
END_TEST

/* ---- the command ------------------------------------------------------------ */

/* The model run by the reference executor on the fixture's input with the
 * weights at w: its output against PyTorch's. */
static void output_matches_pytorch(const char *model, const char *w)
{
	char *err;
	int rc = cli_netcc(
	    &err, "run %s --weights %s --reference --batch 2 --input " FIX "tiny.x.npy -o %s/y.npy",
	    model, w, cli_tmp);
	ck_assert_msg(rc == 0, "netcc run: %s", err);
	free(err);
	char path[512], msg[512];
	snprintf(path, sizeof path, "%s/y.npy", cli_tmp);
	rt_array got, want;
	ck_assert_msg(rt_npy_read(path, &got, msg, sizeof msg) == 0, "%s", msg);
	ck_assert_msg(rt_npy_read(cli_root_path(FIX "tiny.y.npy"), &want, msg, sizeof msg) == 0,
	              "%s", msg);
	ck_assert_int_eq(got.count, want.count);
	double rel = test_rel_err(got.data, want.data, got.count);
	ck_assert_msg(rel < 1e-5, "%s with %s: %g from PyTorch's output", model, w, rel);
	rt_array_free(&got);
	rt_array_free(&want);
}

START_TEST(order_gives_pytorchs_output)
{
	cli_tmp_make("weights");
	static const char *const from[] = {"tiny.npz", "tiny_z.npz", "tiny.safetensors"};
	char *first = NULL;
	size_t first_len = 0;
	for (int i = 0; i < 3; i++) {
		char *err;
		int rc = cli_netcc(
		    &err, "weights " FIX "tiny.nn --from " FIX "%s --map order -o %s/w%d.st",
		    from[i], cli_tmp, i);
		ck_assert_msg(rc == 0, "%s: %s", from[i], err);
		/* the table pairs each parameter with its tensor, and says what it skipped */
		ck_assert_ptr_nonnull(strstr(err, "basic1.cbr2.conv0.weight"));
		ck_assert_ptr_nonnull(strstr(err, "layer2.0.downsample.0.weight"));
		ck_assert_ptr_nonnull(strstr(err, "6 num_batches_tracked skipped"));
		free(err);
		char path[512];
		size_t len;
		snprintf(path, sizeof path, "%s/w%d.st", cli_tmp, i);
		char *bytes = test_slurp(path, &len);
		if (!first) {
			first = bytes, first_len = len;
			continue;
		}
		ck_assert_msg(len == first_len && memcmp(bytes, first, len) == 0,
		              "%s gives other weights than tiny.npz", from[i]);
		free(bytes);
	}
	free(first);
	char w[512];
	snprintf(w, sizeof w, "%s/w0.st", cli_tmp);
	output_matches_pytorch(FIX "tiny.nn", w);
	/* the default (auto) finds no names in tiny.nn and pairs by order */
	char *err;
	ck_assert_int_eq(
	    cli_netcc(&err, "weights " FIX "tiny.nn --from " FIX "tiny.npz -o %s/auto.st", cli_tmp),
	    0);
	ck_assert_ptr_nonnull(strstr(err, "matched by order"));
	free(err);
	cli_tmp_remove();
}
END_TEST

START_TEST(names_pair_the_imported_model)
{
	cli_tmp_make("weights");
	char *err;
	int rc = cli_netcc(
	    &err, "weights " FIX "tiny_imported.nn --from " FIX "tiny_z.npz --map names -o %s/w.st",
	    cli_tmp);
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "matched by name"));
	free(err);
	char w[512];
	snprintf(w, sizeof w, "%s/w.st", cli_tmp);
	output_matches_pytorch(FIX "tiny_imported.nn", w);
	/* auto chooses names here */
	rc = cli_netcc(&err, "weights " FIX "tiny_imported.nn --from " FIX "tiny.safetensors -o -");
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_ptr_nonnull(strstr(err, "matched by name"));
	free(err);
	char path[512];
	snprintf(path, sizeof path, "%s/stdout", cli_tmp);
	rt_st_file f;
	char msg[512];
	ck_assert_msg(rt_st_read(path, &f, msg, sizeof msg) == 0, "%s", msg);
	ck_assert_int_eq(f.n_tensors, 32);
	ck_assert_ptr_nonnull(rt_st_find(&f, "layer2_0_downsample_0.weight"));
	rt_st_free(&f);
	cli_tmp_remove();
}
END_TEST

/* What goes wrong names what and where, exits 1 (2: a usage error) and
 * writes nothing. */
static void refused(int want_rc, const char *args, const char *const *want, int n_want)
{
	char *err;
	int rc = cli_netcc(&err, "weights %s -o %s/out.st", args, cli_tmp);
	ck_assert_msg(rc == want_rc, "netcc weights %s: exit %d\n%s", args, rc, err);
	for (int i = 0; i < n_want; i++)
		ck_assert_msg(strstr(err, want[i]), "netcc weights %s: no '%s' in\n%s", args,
		              want[i], err);
	free(err);
	char out[512];
	snprintf(out, sizeof out, "%s/out.st", cli_tmp);
	ck_assert_msg(!cli_exists(out), "netcc weights %s left %s", args, out);
}

static int cmp_entry_name(const void *a, const void *b)
{
	return strcmp(((const rt_st_entry *)a)->name, ((const rt_st_entry *)b)->name);
}

/* tiny.safetensors rewritten as the safetensors package writes a state
 * dict: its tensors sorted by name, the state dict's order lost */
static void write_name_sorted(const char *path)
{
	rt_st_file f;
	char err[512];
	ck_assert_msg(rt_st_read(cli_root_path(FIX "tiny.safetensors"), &f, err, sizeof err) == 0,
	              "%s", err);
	rt_st_entry *e = calloc((size_t)f.n_tensors, sizeof *e);
	for (int i = 0; i < f.n_tensors; i++) {
		const rt_st_tensor *t = &f.tensors[i];
		e[i] = (rt_st_entry){t->name, t->dtype, t->rank, t->dims, t->data};
	}
	qsort(e, (size_t)f.n_tensors, sizeof *e, cmp_entry_name);
	ck_assert_msg(rt_st_write(path, e, f.n_tensors, NULL, 0, err, sizeof err) == 0, "%s", err);
	free(e);
	rt_st_free(&f);
}

START_TEST(mismatches_refused)
{
	cli_tmp_make("weights");
	/* a model one class wider than the state dict */
	char wide[512], cmd[4096];
	snprintf(wide, sizeof wide, "%s/wide.nn", cli_tmp);
	snprintf(cmd, sizeof cmd,
	         "sed 's/linear(flatten(global_avgpool(h)), 10)/linear(flatten("
	         "global_avgpool(h)), 12)/; s/f32\\[N, 10\\]/f32[N, 12]/' '%s' > '%s'",
	         cli_root_path(FIX "tiny.nn"), wide);
	ck_assert_int_eq(system(cmd), 0);
	char args[2048];
	snprintf(args, sizeof args, "%s --from %s --map order", wide,
	         cli_root_path(FIX "tiny.npz"));
	refused(1, args, (const char *const[]){"linear0.weight", "[12,8]", "fc.weight", "[10,8]"},
	        4);

	refused(1, FIX "tiny.nn --from " FIX "tiny.npz --map names",
	        (const char *const[]){"no tensor for parameter 'cbr0.conv0.weight'",
	                              "'conv1.weight' is not a parameter", "--map order"},
	        3);
	refused(2, FIX "tiny.nn --from " FIX "tiny.npz --map ordr",
	        (const char *const[]){"ordr", "order"}, 2);
	refused(1, FIX "tiny.nn --from " FIX "missing.npz", (const char *const[]){"missing.npz"},
	        1);
	refused(1, FIX "tiny.nn --from " FIX "tiny.x.npy", (const char *const[]){"tiny.x.npy"}, 1);
	refused(2, FIX "tiny.nn", (const char *const[]){"--from"}, 1);

	/* a state dict whose order is lost: by order, refused; by name, fine */
	char sorted[512];
	snprintf(sorted, sizeof sorted, "%s/sorted.safetensors", cli_tmp);
	write_name_sorted(sorted);
	snprintf(args, sizeof args, FIX "tiny.nn --from %s --map order", sorted);
	refused(1, args, (const char *const[]){"not in the state dict's order", "np.savez"}, 2);
	char *err;
	ck_assert_int_eq(cli_netcc(&err, "weights " FIX "tiny_imported.nn --from %s -o %s/n.st",
	                           sorted, cli_tmp),
	                 0);
	free(err);

	/* a truncated archive */
	snprintf(cmd, sizeof cmd, "head -c 9000 '%s' > '%s/cut.npz'", cli_root_path(FIX "tiny.npz"),
	         cli_tmp);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(args, sizeof args, FIX "tiny.nn --from %s/cut.npz", cli_tmp);
	refused(1, args, (const char *const[]){"cut.npz", "truncated"}, 2);
	cli_tmp_remove();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("weights");
	TCase *t = tcase_create("weights");
	tcase_set_timeout(t, test_sanitized() ? 600 : 120);
	tcase_add_test(t, npz_keeps_the_state_dict);
	tcase_add_test(t, npz_tampering_refused);
	tcase_add_test(t, halves_convert_exactly);
	tcase_add_test(t, order_gives_pytorchs_output);
	tcase_add_test(t, names_pair_the_imported_model);
	tcase_add_test(t, mismatches_refused);
	suite_add_tcase(s, t);
	return s;
}

TEST_MAIN(suite)

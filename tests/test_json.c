/* The JSON DOM (runtime/json*.c): what it accepts and how it decodes it,
 * what it refuses and where it says the error is, and that what it writes
 * reads back the same. Every text is parsed from a copy of exactly its
 * length, so the sanitizers see a read past the end. */
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static int parse_n(rt_json_doc *d, const char *text, size_t len, rt_json_error *e)
{
	char *copy = malloc(len ? len : 1);
	memcpy(copy, text, len);
	int rc = rt_json_doc_parse(d, copy, len, e);
	free(copy);
	return rc;
}

/* Parses text, which must be accepted; the caller frees d. */
static const rt_json *parse_ok(rt_json_doc *d, const char *text)
{
	rt_json_error e;
	int rc = parse_n(d, text, strlen(text), &e);
	ck_assert_msg(rc == 0, "'%s' refused: %s at byte %zu", text, e.what, e.offset);
	ck_assert_int_eq(e.code, RT_JSON_OK);
	return d->root;
}

static void expect_refused_n(const char *text, size_t len, rt_json_status code, size_t offset)
{
	rt_json_doc d;
	rt_json_error e;
	ck_assert_msg(parse_n(&d, text, len, &e) != 0, "'%.*s' accepted", (int)len, text);
	ck_assert_msg(e.code == code, "'%.*s': code %d, expected %d (%s)", (int)len, text,
	              (int)e.code, (int)code, e.what);
	ck_assert_msg(e.offset == offset, "'%.*s': offset %zu, expected %zu (%s)", (int)len, text,
	              e.offset, offset, e.what);
	ck_assert(e.what && *e.what);
	ck_assert_ptr_null(d.root);
	ck_assert_ptr_null(d.arena);
}

static void expect_refused(const char *text, rt_json_status code, size_t offset)
{
	expect_refused_n(text, strlen(text), code, offset);
}

/* The one string a JSON string literal decodes to. */
static void expect_string(const char *json, const char *want)
{
	rt_json_doc d;
	const rt_json *v = parse_ok(&d, json);
	ck_assert_int_eq(v->kind, RT_JSON_STRING);
	ck_assert_msg(strcmp(v->str, want) == 0, "%s decoded wrongly", json);
	rt_json_doc_free(&d);
}

/* Writes what text parses to; the caller frees the result. */
static char *rewrite(const char *text)
{
	rt_json_doc d;
	parse_ok(&d, text);
	char *out = rt_json_doc_write(&d, NULL);
	ck_assert_ptr_nonnull(out);
	rt_json_doc_free(&d);
	return out;
}

/* text, written, is want; want, parsed and written, is want again. */
static void expect_round_trip(const char *text, const char *want)
{
	char *once = rewrite(text);
	ck_assert_msg(strcmp(once, want) == 0, "%s wrote %s, expected %s", text, once, want);
	char *twice = rewrite(once);
	ck_assert_str_eq(twice, want);
	free(once);
	free(twice);
}

/* ---- strings ------------------------------------------------------------------ */

START_TEST(test_escapes)
{
	expect_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t");
	expect_string("\"\"", "");
	expect_string("\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9");
	expect_string("\"\\u20ac\\u0001\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
	              "\xe2\x82\xac\x01\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
	expect_string("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
	              "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

	expect_refused("\"\\x\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\'\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\u12g4\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"ab\\u12\"", RT_JSON_ERR_SYNTAX, 3);
	expect_refused("\"\\u12", RT_JSON_ERR_SYNTAX, 1);
	/* raw control characters must be escaped; DEL need not be */
	expect_refused("\"a\tb\"", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("\"a\nb\"", RT_JSON_ERR_SYNTAX, 2);
	expect_refused_n("\"a\0b\"", 5, RT_JSON_ERR_SYNTAX, 2);
	expect_string("\"\x7f\"", "\x7f");
	expect_refused("\"abc", RT_JSON_ERR_SYNTAX, 4);
	expect_refused("\"abc\\", RT_JSON_ERR_SYNTAX, 5);
	expect_refused("\"abc\\\"", RT_JSON_ERR_SYNTAX, 6);
}
END_TEST

START_TEST(test_nul_refused)
{
	/* the offset is the backslash's, as safetensors reports it */
	expect_refused("{\"ab\\u0000c\": 1}", RT_JSON_ERR_NUL, 4);
	expect_refused("[\"\\u0000\"]", RT_JSON_ERR_NUL, 2);
	/* an escaped backslash before u0000 is no NUL */
	expect_string("\"\\\\u0000\"", "\\u0000");
}
END_TEST

START_TEST(test_surrogates)
{
	expect_string("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
	expect_string("\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80");
	expect_string("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");
	expect_string("\"x\\ud83d\\ude00y\"", "x\xf0\x9f\x98\x80y");

	expect_refused("\"\\ud800\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\ud800x\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\ud800\\u0041\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\ud800\\ud800\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"\\udc00\"", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("\"ab\\ude00\\ud83d\"", RT_JSON_ERR_SYNTAX, 3);
	expect_refused("\"\\ud83d\\ude0", RT_JSON_ERR_SYNTAX, 1);
}
END_TEST

START_TEST(test_utf8)
{
	struct {
		const char *text;
		size_t bad; /* offset of the bad byte */
	} cases[] = {
	    {"\"\x80\"", 1},             /* a continuation byte alone */
	    {"\"\xc0\x80\"", 1},         /* overlong NUL */
	    {"\"\xc1\xbf\"", 1},         /* overlong */
	    {"\"a\xe0\x9f\xbf\"", 2},    /* overlong three bytes */
	    {"\"\xed\xa0\x80\"", 1},     /* a surrogate, encoded */
	    {"\"\xf0\x8f\xbf\xbf\"", 1}, /* overlong four bytes */
	    {"\"\xf4\x90\x80\x80\"", 1}, /* past U+10FFFF */
	    {"\"\xf5\x80\x80\x80\"", 1}, /* never a lead byte */
	    {"\"\xff\"", 1},             /* nor this */
	    {"\"\xe2\x82\"", 1},         /* cut short by the quote */
	    {"\"\xc3\"", 1},             /* likewise */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_refused(cases[i].text, RT_JSON_ERR_SYNTAX, cases[i].bad);
	/* cut short by the end of the text */
	expect_refused_n("\"\xe2\x82", 3, RT_JSON_ERR_SYNTAX, 1);

	ck_assert(rt_json_utf8_valid("", 0));
	ck_assert(rt_json_utf8_valid("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
	ck_assert(rt_json_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6)); /* around the surrogates */
	ck_assert(!rt_json_utf8_valid("\xed\xbf\xbf", 3));
	ck_assert(!rt_json_utf8_valid("\xe2\x82\xac", 2));
}
END_TEST

/* ---- numbers ------------------------------------------------------------------ */

static const rt_json *number(rt_json_doc *d, const char *text)
{
	const rt_json *v = parse_ok(d, text);
	ck_assert_int_eq(v->kind, RT_JSON_NUMBER);
	return v;
}

START_TEST(test_integers_exact)
{
	rt_json_doc d;
	const rt_json *v = number(&d, "9223372036854775807");
	ck_assert(v->is_int);
	ck_assert(v->i == INT64_MAX);
	rt_json_doc_free(&d);

	v = number(&d, "-9223372036854775808");
	ck_assert(v->is_int);
	ck_assert(v->i == INT64_MIN);
	ck_assert(v->num == -9223372036854775808.0);
	rt_json_doc_free(&d);

	/* 2^53 + 1: a double would read 2^53 */
	v = number(&d, "9007199254740993");
	ck_assert(v->is_int);
	ck_assert(v->i == 9007199254740993LL);
	rt_json_doc_free(&d);

	/* past int64: a double only */
	v = number(&d, "9223372036854775808");
	ck_assert(!v->is_int);
	ck_assert(v->num == 9223372036854775808.0);
	rt_json_doc_free(&d);
	v = number(&d, "-9223372036854775809");
	ck_assert(!v->is_int);
	rt_json_doc_free(&d);
	v = number(&d, "123456789012345678901234567890");
	ck_assert(!v->is_int);
	ck_assert(fabs(v->num - 1.2345678901234568e29) < 1e14);
	rt_json_doc_free(&d);

	v = number(&d, "0");
	ck_assert(v->is_int && v->i == 0);
	rt_json_doc_free(&d);
	v = number(&d, "-0");
	ck_assert(v->is_int && v->i == 0);
	ck_assert(v->num == 0 && signbit(v->num));
	rt_json_doc_free(&d);
	v = number(&d, "-42");
	ck_assert(v->is_int && v->i == -42 && v->num == -42);
	rt_json_doc_free(&d);
}
END_TEST

START_TEST(test_fractions_and_exponents)
{
	struct {
		const char *text;
		double want;
	} cases[] = {
	    {"1.5", 1.5},
	    {"-2.5e-3", -2.5e-3},
	    {"1E+2", 100},
	    {"1e2", 100},
	    {"0.1", 0.1},
	    {"-0.0", -0.0},
	    {"1e-400", 0},
	    {"4.0", 4},
	    {"1e308", 1e308},
	    {"2.5E-1", 0.25},
	    {"1.7976931348623157e308", 1.7976931348623157e308},
	    {"0e0", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rt_json_doc d;
		const rt_json *v = number(&d, cases[i].text);
		/* written with a fraction or an exponent: never an integer */
		ck_assert_msg(!v->is_int, "%s", cases[i].text);
		ck_assert_msg(v->num == cases[i].want, "%s read as %.17g", cases[i].text, v->num);
		rt_json_doc_free(&d);
	}
	expect_refused("1e400", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("[1, -1e309]", RT_JSON_ERR_SYNTAX, 4);
}
END_TEST

START_TEST(test_bad_numbers)
{
	expect_refused("01", RT_JSON_ERR_TRAILING, 1);
	expect_refused("[01]", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("-", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("-x", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("--1", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("+1", RT_JSON_ERR_SYNTAX, 0);
	expect_refused(".5", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("1.", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("1.e5", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("1e", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("1e+", RT_JSON_ERR_SYNTAX, 3);
	expect_refused("[1e+]", RT_JSON_ERR_SYNTAX, 4);
	expect_refused("0x10", RT_JSON_ERR_TRAILING, 1);
	expect_refused("NaN", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("[Infinity]", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("[-Infinity]", RT_JSON_ERR_SYNTAX, 2);
}
END_TEST

/* ---- structure ------------------------------------------------------------------ */

START_TEST(test_values_and_order)
{
	rt_json_doc d;
	const rt_json *r =
	    parse_ok(&d, " {\"z\": true, \"a\": [null, false, {}, []], \"m\": \"s\"}\r\n\t ");
	ck_assert_int_eq(r->kind, RT_JSON_OBJECT);
	ck_assert_uint_eq(r->n, 3);
	const char *keys[] = {"z", "a", "m"};
	int i = 0;
	for (const rt_json *m = r->first; m; m = m->next)
		ck_assert_str_eq(m->key, keys[i++]);
	ck_assert_ptr_eq(r->last, rt_json_object_get(r, "m"));
	const rt_json *a = rt_json_object_get(r, "a");
	ck_assert_uint_eq(a->n, 4);
	ck_assert_int_eq(a->first->kind, RT_JSON_NULL);
	ck_assert_int_eq(a->first->next->kind, RT_JSON_FALSE);
	ck_assert_int_eq(a->first->next->next->kind, RT_JSON_OBJECT);
	ck_assert_ptr_null(a->first->next->next->first);
	ck_assert_int_eq(a->last->kind, RT_JSON_ARRAY);
	ck_assert_int_eq(rt_json_object_get(r, "z")->kind, RT_JSON_TRUE);
	ck_assert_ptr_null(rt_json_object_get(r, "q"));
	ck_assert_ptr_null(rt_json_object_get(a, "z")); /* not an object */
	rt_json_doc_free(&d);
	rt_json_doc_free(&d); /* twice is harmless */
}
END_TEST

/* Duplicate keys are kept, in order, and looking one up finds the first:
 * whether a duplicate is an error is the caller's call (safetensors refuses
 * duplicate tensor names, fields and metadata keys). */
START_TEST(test_duplicate_keys_kept)
{
	rt_json_doc d;
	const rt_json *r = parse_ok(&d, "{\"a\": 1, \"b\": 2, \"a\": 3, \"\\u0061\": 4}");
	ck_assert_uint_eq(r->n, 4);
	ck_assert_int_eq(rt_json_object_get(r, "a")->i, 1);
	ck_assert_str_eq(r->last->key, "a");
	ck_assert_int_eq(r->last->i, 4);
	char *out = rt_json_doc_write(&d, NULL);
	ck_assert_str_eq(out, "{\"a\":1,\"b\":2,\"a\":3,\"a\":4}");
	free(out);
	rt_json_doc_free(&d);
}
END_TEST

START_TEST(test_syntax_errors)
{
	expect_refused("", RT_JSON_ERR_SYNTAX, 0);
	expect_refused(" \n", RT_JSON_ERR_SYNTAX, 2);
	/* the safetensors fixture tests/malformed/weights/not_json */
	expect_refused("{\"a\": [1, 2,", RT_JSON_ERR_SYNTAX, 12);
	expect_refused("{", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("{\"a\": }", RT_JSON_ERR_SYNTAX, 6);
	expect_refused("{\"a\" 1}", RT_JSON_ERR_SYNTAX, 5);
	expect_refused("{a: 1}", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("{1: 1}", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("{\"a\": 1,}", RT_JSON_ERR_SYNTAX, 8);
	expect_refused("[1,]", RT_JSON_ERR_SYNTAX, 3);
	expect_refused("[1 2]", RT_JSON_ERR_SYNTAX, 3);
	expect_refused("[,1]", RT_JSON_ERR_SYNTAX, 1);
	expect_refused("{\"a\": 1]", RT_JSON_ERR_SYNTAX, 7);
	expect_refused("[1}", RT_JSON_ERR_SYNTAX, 2);
	expect_refused("tru", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("nul", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("True", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("'a'", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("\xef\xbb\xbf{}", RT_JSON_ERR_SYNTAX, 0); /* a byte-order mark */
	expect_refused("[1] /* c */", RT_JSON_ERR_TRAILING, 4);
	/* only space, tab, CR and LF are whitespace */
	expect_refused("\f{}", RT_JSON_ERR_SYNTAX, 0);
	expect_refused("\v[]", RT_JSON_ERR_SYNTAX, 0);
}
END_TEST

START_TEST(test_trailing_garbage)
{
	expect_refused("{} x", RT_JSON_ERR_TRAILING, 3);
	expect_refused("{}{}", RT_JSON_ERR_TRAILING, 2);
	expect_refused("1 2", RT_JSON_ERR_TRAILING, 2);
	expect_refused("truex", RT_JSON_ERR_TRAILING, 4);
	expect_refused("\"a\"\"b\"", RT_JSON_ERR_TRAILING, 3);
	/* a NUL does not end the text: len does */
	expect_refused_n("{}  \0 ", 6, RT_JSON_ERR_TRAILING, 4);
	expect_refused_n("{}\0", 3, RT_JSON_ERR_TRAILING, 2);

	rt_json_doc d;
	parse_ok(&d, "{}  \t\r\n  ");
	rt_json_doc_free(&d);
	/* len, not a terminator, bounds the text */
	rt_json_error e;
	ck_assert_int_eq(parse_n(&d, "[1] garbage", 3, &e), 0);
	ck_assert_uint_eq(d.root->n, 1);
	rt_json_doc_free(&d);
}
END_TEST

static void nested(char *buf, int levels, char open, char close)
{
	for (int i = 0; i < levels; i++)
		buf[i] = open;
	for (int i = 0; i < levels; i++)
		buf[levels + i] = close;
	buf[2 * levels] = '\0';
}

START_TEST(test_depth_limit)
{
	char buf[2 * (RT_JSON_MAX_DEPTH + 100) + 1];
	rt_json_doc d;
	nested(buf, RT_JSON_MAX_DEPTH, '[', ']');
	const rt_json *v = parse_ok(&d, buf);
	for (int i = 1; i < RT_JSON_MAX_DEPTH; i++)
		v = v->first;
	ck_assert_int_eq(v->kind, RT_JSON_ARRAY);
	ck_assert_ptr_null(v->first);
	rt_json_doc_free(&d);

	nested(buf, RT_JSON_MAX_DEPTH + 1, '[', ']');
	expect_refused(buf, RT_JSON_ERR_DEPTH, RT_JSON_MAX_DEPTH);
	nested(buf, RT_JSON_MAX_DEPTH + 100, '[', ']');
	expect_refused(buf, RT_JSON_ERR_DEPTH, RT_JSON_MAX_DEPTH);

	/* objects count the same */
	char objs[5 * (RT_JSON_MAX_DEPTH + 1) + 1];
	for (int i = 0; i <= RT_JSON_MAX_DEPTH; i++)
		memcpy(objs + 5 * i, "{\"a\":", 6);
	expect_refused(objs, RT_JSON_ERR_DEPTH, (size_t)RT_JSON_MAX_DEPTH * 5);

	/* only nesting counts: a long flat array is fine */
	char *flat = malloc(2 * 100000 + 2);
	flat[0] = '[';
	for (int i = 0; i < 99999; i++)
		memcpy(flat + 1 + 2 * i, "0,", 2);
	memcpy(flat + 1 + 2 * 99999, "0]", 3);
	v = parse_ok(&d, flat);
	ck_assert_uint_eq(v->n, 100000);
	rt_json_doc_free(&d);
	free(flat);
}
END_TEST

/* ---- writing ------------------------------------------------------------------ */

START_TEST(test_round_trips)
{
	expect_round_trip(" { \"b\" : [ 1 , -2 , 3.5 ] , \"a\" : { } , \"c\" : [ ] } ",
	                  "{\"b\":[1,-2,3.5],\"a\":{},\"c\":[]}");
	expect_round_trip("[true, false, null, \"\"]", "[true,false,null,\"\"]");
	expect_round_trip("[9223372036854775807, -9223372036854775808, 9007199254740993]",
	                  "[9223372036854775807,-9223372036854775808,9007199254740993]");
	/* the shortest spelling that reads back as the same double */
	expect_round_trip("[0.1, 1e300, -2.5E-3, 1.0, 5e-324, 0.30000000000000004]",
	                  "[0.1,1e+300,-0.0025,1,4.94065645841247e-324,0.30000000000000004]");
	/* escapes written as cJSON wrote them: short forms, \u00xx in lowercase
	 * for the other control characters, "/" and everything else as is */
	expect_round_trip(
	    "\"\\/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001F\\u007f\\u00e9\\ud83d\\ude00\"",
	    "\"/\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\xc3\xa9\xf0\x9f\x98\x80\"");
	expect_round_trip("{\"\\n\": \"\\t\"}", "{\"\\n\":\"\\t\"}");
}
END_TEST

START_TEST(test_build_and_write)
{
	rt_json_doc d = {0};
	rt_json *r = d.root = rt_json_value_new(&d, RT_JSON_OBJECT);
	rt_json *meta =
	    rt_json_object_add(&d, r, "__metadata__", rt_json_value_new(&d, RT_JSON_OBJECT));
	rt_json_object_add(&d, meta, "model", rt_json_string_new(&d, "tiny\"28\"\n"));
	rt_json *shape = rt_json_object_add(&d, r, "w", rt_json_value_new(&d, RT_JSON_ARRAY));
	rt_json_array_add(&d, shape, rt_json_int_new(&d, INT64_MIN));
	rt_json_array_add(&d, shape, rt_json_int_new(&d, 1000000000000000));
	rt_json_array_add(&d, shape, rt_json_value_new(&d, RT_JSON_NULL));
	size_t len;
	char *out = rt_json_doc_write(&d, &len);
	const char *want = "{\"__metadata__\":{\"model\":\"tiny\\\"28\\\"\\n\"},"
	                   "\"w\":[-9223372036854775808,1000000000000000,null]}";
	ck_assert_str_eq(out, want);
	ck_assert_uint_eq(len, strlen(want));
	free(out);

	/* a key copied, not kept */
	char key[] = "k";
	rt_json_object_add(&d, meta, key, rt_json_value_new(&d, RT_JSON_TRUE));
	key[0] = 'x';
	ck_assert_ptr_nonnull(rt_json_object_get(meta, "k"));
	ck_assert(!d.failed);

	/* a failure anywhere in a chain fails the write */
	rt_json_array_add(&d, shape, rt_json_string_new(&d, NULL));
	ck_assert(d.failed);
	ck_assert_ptr_null(rt_json_doc_write(&d, NULL));
	rt_json_doc_free(&d);

	ck_assert_ptr_null(rt_json_array_add(&d, NULL, NULL));
	ck_assert_ptr_null(rt_json_object_add(&d, rt_json_value_new(&d, RT_JSON_ARRAY), "k",
	                                      rt_json_value_new(&d, RT_JSON_NULL)));
	ck_assert_ptr_null(rt_json_array_add(&d, rt_json_value_new(&d, RT_JSON_OBJECT),
	                                     rt_json_value_new(&d, RT_JSON_NULL)));
	rt_json_doc_free(&d);

	/* large strings take blocks of their own */
	char *big = malloc(3 << 20);
	memset(big, 'x', (3 << 20) - 1);
	big[(3 << 20) - 1] = '\0';
	d.root = rt_json_value_new(&d, RT_JSON_ARRAY);
	for (int i = 0; i < 3; i++)
		rt_json_array_add(&d, d.root, rt_json_string_new(&d, big));
	out = rt_json_doc_write(&d, &len);
	ck_assert_uint_eq(len, 3 * ((3u << 20) + 1) + 2 + 2);
	free(out);
	free(big);
	rt_json_doc_free(&d);
}
END_TEST

/* ---- robustness ------------------------------------------------------------------ */

/* Any bytes parse or are refused; an accepted text writes and reads back
 * to the same bytes. */
static void check_any(const unsigned char *text, size_t len)
{
	rt_json_doc d;
	rt_json_error e;
	if (parse_n(&d, (const char *)text, len, &e) != 0) {
		ck_assert_uint_le(e.offset, len);
		return;
	}
	char *once = rt_json_doc_write(&d, NULL);
	rt_json_doc_free(&d);
	ck_assert_ptr_nonnull(once);
	char *twice = rewrite(once);
	ck_assert_str_eq(once, twice);
	free(once);
	free(twice);
}

START_TEST(test_prefixes_and_mutations)
{
	const char *good = "{\"__metadata__\":{\"k\":\"v\\u00e9\\ud83d\\ude00\"},"
	                   "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
	                   "\"x\":[-1.5e-3,true,false,null,\"\\n\"]}";
	size_t len = strlen(good);
	for (size_t n = 0; n < len; n++) {
		rt_json_doc d;
		rt_json_error e;
		ck_assert_msg(parse_n(&d, good, n, &e) != 0, "prefix %zu accepted", n);
	}
	check_any((const unsigned char *)good, len);

	rt_rng rng;
	rt_rng_seed(&rng, 99);
	unsigned char *m = malloc(len);
	int iters = test_sanitized() ? 5000 : 50000;
	for (int it = 0; it < iters; it++) {
		memcpy(m, good, len);
		int flips = 1 + (int)(rt_rng_next(&rng) % 3);
		for (int k = 0; k < flips; k++) {
			size_t at = rt_rng_next(&rng) % len;
			/* mostly structure and escapes, sometimes any byte */
			static const char pick[] =
			    "{}[]\",:\\u0123456789abcdefeE.-+ tfn\x80\xc3\xed";
			m[at] = rt_rng_next(&rng) % 4
			            ? (unsigned char)pick[rt_rng_next(&rng) % (sizeof pick - 1)]
			            : (unsigned char)rt_rng_next(&rng);
		}
		check_any(m, len);
	}
	free(m);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("json");
	TCase *str = tcase_create("strings");
	tcase_add_test(str, test_escapes);
	tcase_add_test(str, test_nul_refused);
	tcase_add_test(str, test_surrogates);
	tcase_add_test(str, test_utf8);
	suite_add_tcase(s, str);

	TCase *num = tcase_create("numbers");
	tcase_add_test(num, test_integers_exact);
	tcase_add_test(num, test_fractions_and_exponents);
	tcase_add_test(num, test_bad_numbers);
	suite_add_tcase(s, num);

	TCase *st = tcase_create("structure");
	tcase_add_test(st, test_values_and_order);
	tcase_add_test(st, test_duplicate_keys_kept);
	tcase_add_test(st, test_syntax_errors);
	tcase_add_test(st, test_trailing_garbage);
	tcase_add_test(st, test_depth_limit);
	suite_add_tcase(s, st);

	TCase *w = tcase_create("writing");
	tcase_set_timeout(w, 60);
	tcase_add_test(w, test_round_trips);
	tcase_add_test(w, test_build_and_write);
	tcase_add_test(w, test_prefixes_and_mutations);
	suite_add_tcase(s, w);
	return s;
}

TEST_MAIN(suite)

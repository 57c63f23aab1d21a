/* SPDX-License-Identifier: MIT */
/* repctl's JSON reader (tools/json.c): what the hub sends, and hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

static struct json *parse_ok(const char *text)
{
	struct json *j = NULL;
	char err[160] = "";

	if (json_parse(text, strlen(text), &j, err, sizeof(err)) != 0) {
		print_error("'%s': %s\n", text, err);
		fail();
	}
	return j;
}

static void parse_bad(const char *text, const char *msg)
{
	struct json *j = NULL;
	char err[160] = "";

	assert_int_equal(json_parse(text, strlen(text), &j, err, sizeof(err)), -EINVAL);
	assert_null(j);
	if (!strstr(err, msg)) {
		print_error("'%s': got '%s', expected '%s'\n", text, err, msg);
		fail();
	}
}

static void test_status_shape(void **state)
{
	struct json *j =
	    parse_ok("{\"version\":1,\"hub\":{\"control\":\"127.0.0.1:7470\"},"
	             "\"volumes\":[{\"name\":\"vm1-disk0\",\"state\":\"syncing\",\"size\":67108864,"
	             "\"synced_percent\":45.5,\"agent\":null,\"caught_up\":false,"
	             "\"durable_seq\":18446744073709551615,\"recovery\":\"/x/\\\"q\\\"\\u00e9\"}],"
	             "\"agents\":[]}\n");
	const struct json *vols = json_get(j, "volumes"), *v;

	assert_non_null(vols);
	assert_int_equal(vols->type, JSON_ARRAY);
	assert_int_equal(vols->n, 1);
	v = &vols->kid[0];
	assert_string_equal(json_str(json_get(v, "name"), ""), "vm1-disk0");
	assert_int_equal(json_u64(json_get(v, "size"), 0), 67108864);
	assert_int_equal(json_u64(json_get(v, "durable_seq"), 0), UINT64_MAX);
	assert_true(json_num(json_get(v, "synced_percent"), 0) == 45.5);
	assert_string_equal(json_str(json_get(v, "agent"), "-"), "-");
	assert_false(json_bool(json_get(v, "caught_up"), true));
	assert_string_equal(json_str(json_get(v, "recovery"), ""), "/x/\"q\"\xc3\xa9");
	assert_null(json_get(v, "missing"));
	assert_int_equal(json_u64(json_get(v, "state"), 7), 7); /* wrong type: default */
	assert_int_equal(json_get(j, "agents")->n, 0);
	json_free(j);
}

static void test_values(void **state)
{
	struct json *j = parse_ok(" [true, false, null, -1.5e3, 0, \"\\ud83d\\ude00\", {}] ");

	assert_int_equal(j->n, 7);
	assert_true(j->kid[0].boolean);
	assert_int_equal(j->kid[2].type, JSON_NULL);
	assert_true(j->kid[3].number == -1500.0);
	assert_false(j->kid[3].is_u64);
	assert_true(j->kid[4].is_u64);
	assert_string_equal(j->kid[5].string, "\xf0\x9f\x98\x80");
	assert_int_equal(j->kid[6].type, JSON_OBJECT);
	json_free(j);
}

static void test_bad(void **state)
{
	char deep[200];

	parse_bad("", "unexpected end");
	parse_bad("{", "expected a member name");
	parse_bad("[1,]", "expected a value");
	parse_bad("{\"a\":1,}", "expected a member name");
	parse_bad("{\"a\" 1}", "expected ':'");
	parse_bad("[1 2]", "expected ',' or ']'");
	parse_bad("\"abc", "unterminated string");
	parse_bad("\"a\\", "unterminated string");
	parse_bad("\"a\nb\"", "control character");
	parse_bad("\"\\x\"", "unknown escape");
	parse_bad("\"\\u12\"", "bad \\u escape");
	parse_bad("\"\\ud800\"", "lone surrogate");
	parse_bad("\"\\udc00\"", "lone surrogate");
	parse_bad("-", "bad number");
	parse_bad("1.", "bad number");
	parse_bad("1e", "bad number");
	parse_bad("01", "bytes after the document");
	parse_bad("{} x", "bytes after the document");
	parse_bad("tru", "expected a value");
	parse_bad("nul", "expected a value");
	memset(deep, '[', 100);
	memset(deep + 100, ']', 99);
	deep[199] = '\0';
	parse_bad(deep, "nested too deeply");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_status_shape),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/* Unit tests for the leveled logger. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "repfabric/log.h"

struct captured {
	int count;
	enum rf_log_level level;
	char line[1100];
};

static void capture_sink(void *ctx, enum rf_log_level level, const char *line)
{
	struct captured *c = ctx;

	c->count++;
	c->level = level;
	snprintf(c->line, sizeof(c->line), "%s", line);
}

static void test_level_filter(void **state)
{
	struct captured c = {0};

	rf_log_set_sink(capture_sink, &c);
	rf_log_set_level(RF_LOG_WARN);
	RF_INFO("ring", "hidden %d", 1);
	RF_DEBUG("ring", "hidden %d", 2);
	assert_int_equal(c.count, 0);
	RF_WARN("ring", "shown %d", 3);
	assert_int_equal(c.count, 1);
	assert_int_equal(c.level, RF_LOG_WARN);
	assert_string_equal(c.line, "ring: shown 3");
	RF_ERR(NULL, "x");
	assert_string_equal(c.line, "-: x");
	rf_log_set_sink(NULL, NULL);
	rf_log_set_level(RF_LOG_INFO);
}

static void test_long_line_truncated(void **state)
{
	struct captured c = {0};
	char big[4000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rf_log_set_sink(capture_sink, &c);
	RF_ERR("s", "%s", big);
	assert_int_equal(c.count, 1);
	assert_int_equal(strlen(c.line), 1023);
	assert_memory_equal(c.line, "s: aaaa", 7);
	rf_log_set_sink(NULL, NULL);
}

static void test_level_parse(void **state)
{
	enum rf_log_level l;

	assert_int_equal(rf_log_level_parse("DEBUG", &l), 0);
	assert_int_equal(l, RF_LOG_DEBUG);
	assert_int_equal(rf_log_level_parse("err", &l), 0);
	assert_int_equal(l, RF_LOG_ERR);
	assert_int_equal(rf_log_level_parse("verbose", &l), -EINVAL);
	assert_string_equal(rf_log_level_name(RF_LOG_WARN), "warn");
	assert_string_equal(rf_log_level_name((enum rf_log_level)9), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_level_filter),
	    cmocka_unit_test(test_long_line_truncated),
	    cmocka_unit_test(test_level_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/* Unit tests for CRC32C: known vectors, hardware == table, chaining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repfabric/crc32c.h"

static void test_known_vectors(void **state)
{
	unsigned char zeros[32] = {0}, ones[32], inc[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	/* RFC 3720 B.4 test vectors and the classic "123456789" check. */
	assert_int_equal(rf_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(rf_crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(rf_crc32c(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(rf_crc32c(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(rf_crc32c(0, "", 0), 0u);
	assert_int_equal(rf_crc32c_sw(0, "123456789", 9), 0xE3069283u);
}

static void test_hw_matches_table(void **state)
{
	unsigned char buf[4099];

	srand(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)rand();
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len < sizeof(buf) - off; len += 97)
			assert_int_equal(rf_crc32c(0, buf + off, len),
			                 rf_crc32c_sw(0, buf + off, len));
}

static void test_chaining(void **state)
{
	const char *s = "the quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);
	uint32_t whole = rf_crc32c(0, s, n);

	for (size_t cut = 0; cut <= n; cut++)
		assert_int_equal(rf_crc32c(rf_crc32c(0, s, cut), s + cut, n - cut), whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_vectors),
	    cmocka_unit_test(test_hw_matches_table),
	    cmocka_unit_test(test_chaining),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

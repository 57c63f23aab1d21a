/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for CRC32C: known vectors; the fast path (several streams, or
 * whatever rf_crc32c picked on this CPU) and the old single chain against
 * the table reference over every length 0..4096, every round size of the
 * multi-stream loop, large buffers and every alignment; chaining at random
 * split points against one-shot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The private header of common/crc32c.c (rf_crc32c_serial, the impl name). */
#include "crc32c_impl.h"
#include "repfabric/crc32c.h"

#define MIB (1u << 20)

/* A small deterministic generator: the same data on every run and libc. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
	rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
}

static uint64_t rng_next(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* @len random bytes at a 64-byte aligned address plus 16 of slack. */
static unsigned char *random_buf(size_t len, uint64_t seed)
{
	/* aligned_alloc wants a multiple of the alignment. */
	unsigned char *buf = aligned_alloc(64, (len + 16 + 63) & ~(size_t)63);

	assert_non_null(buf);
	rng_seed(seed);
	for (size_t i = 0; i < len + 16; i++)
		buf[i] = (unsigned char)rng_next();
	return buf;
}

/* Every implementation agrees with the table on one range, from two seeds. */
static void check_range(const unsigned char *p, size_t len)
{
	uint32_t ref = rf_crc32c_sw(0, p, len);

	assert_int_equal(rf_crc32c(0, p, len), ref);
	assert_int_equal(rf_crc32c_serial(0, p, len), ref);
	/* A non-zero starting CRC goes through the inversions too. */
	ref = rf_crc32c_sw(0xDEADBEEFu, p, len);
	assert_int_equal(rf_crc32c(0xDEADBEEFu, p, len), ref);
}

static void test_known_vectors(void **state)
{
	unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];

	print_message("rf_crc32c uses: %s\n", rf_crc32c_impl_name());
	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++) {
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	/* RFC 3720 B.4 test vectors and the classic "123456789" check. */
	assert_int_equal(rf_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(rf_crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(rf_crc32c(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(rf_crc32c(0, inc, 32), 0x46DD794Eu);
	assert_int_equal(rf_crc32c(0, dec, 32), 0x113FDB5Cu);
	assert_int_equal(rf_crc32c(0, "", 0), 0u);
	assert_int_equal(rf_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(rf_crc32c_sw(0, dec, 32), 0x113FDB5Cu);
	assert_int_equal(rf_crc32c_serial(0, "123456789", 9), 0xE3069283u);
}

/* Every length 0..4096: every tail, every round size below 4 KiB. */
static void test_every_length(void **state)
{
	unsigned char *buf = random_buf(4096, 1);

	for (size_t len = 0; len <= 4096; len++)
		check_range(buf, len);
	free(buf);
}

/* Every alignment 0..15, for lengths around the loop's thresholds. */
static void test_every_alignment(void **state)
{
	static const size_t lens[] = {1, 7, 8, 9, 95, 96, 97, 100, 1000, 4096, 6144, 6151, 70000};
	unsigned char *buf = random_buf(70000 + 16, 2);

	for (size_t off = 0; off < 16; off++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
			check_range(buf + off, lens[i]);
	free(buf);
}

/*
 * Every multiple of 8 (and the same plus 5) up to 20 KiB: every round size
 * of the multi-stream loop up to beyond the largest round, so every merge
 * constant is used, whatever the stream count.
 */
static void test_every_round_size(void **state)
{
	unsigned char *buf = random_buf(20480 + 16, 3);

	for (size_t len = 4096; len <= 20480; len += 8) {
		check_range(buf, len);
		check_range(buf + 3, len + 5);
	}
	free(buf);
}

/* Large buffers: many full rounds, then a short round and a tail. */
static void test_large(void **state)
{
	static const size_t lens[] = {MIB, MIB + 7, 4 * MIB + 4097};
	unsigned char *buf = random_buf(4 * MIB + 4097, 4);

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (size_t off = 0; off < 16; off += 5)
			check_range(buf + off, lens[i]);
	free(buf);
}

/* All-zero and all-one buffers: no help from random data hiding a bug. */
static void test_constant_data(void **state)
{
	unsigned char *buf = random_buf(65536, 5);

	memset(buf, 0, 65536);
	check_range(buf, 65536);
	check_range(buf, 65536 - 9);
	memset(buf, 0xff, 65536);
	check_range(buf, 65536);
	check_range(buf, 65536 - 9);
	free(buf);
}

static void test_chaining(void **state)
{
	const char *s = "the quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);
	uint32_t whole = rf_crc32c(0, s, n);

	for (size_t cut = 0; cut <= n; cut++)
		assert_int_equal(rf_crc32c(rf_crc32c(0, s, cut), s + cut, n - cut), whole);
}

/* A CRC over random pieces (0 to 4 splits at random points) == one shot. */
static void test_random_splits(void **state)
{
	const size_t max = 256 * 1024;
	unsigned char *buf = random_buf(max, 6);

	rng_seed(60);
	for (int iter = 0; iter < 2000; iter++) {
		size_t len = (size_t)(rng_next() % (iter < 1000 ? 8192 : max));
		const unsigned char *p = buf + rng_next() % 16;
		uint32_t whole = rf_crc32c_sw(0, p, len), crc = 0;
		size_t done = 0;
		int pieces = (int)(rng_next() % 5);

		for (int i = 0; i < pieces && done < len; i++) {
			size_t n = (size_t)(rng_next() % (len - done + 1));

			crc = rf_crc32c(crc, p + done, n);
			done += n;
		}
		crc = rf_crc32c(crc, p + done, len - done);
		assert_int_equal(crc, whole);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_vectors),   cmocka_unit_test(test_every_length),
	    cmocka_unit_test(test_every_alignment), cmocka_unit_test(test_every_round_size),
	    cmocka_unit_test(test_large),           cmocka_unit_test(test_constant_data),
	    cmocka_unit_test(test_chaining),        cmocka_unit_test(test_random_splits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * The test_ring program's shared parts: the helpers of test_ring_util.c and
 * the cases each of its files defines (main() in test_ring.c runs them).
 */
#ifndef REPFABRIC_TESTS_UNIT_TEST_RING_H
#define REPFABRIC_TESTS_UNIT_TEST_RING_H

#include <stddef.h>
#include <stdint.h>

#include "repfabric/log.h"
#include "repfabric/ring.h"

/* @n bytes at @p, a function of @key. */
void fill_bytes(uint64_t key, unsigned char *p, size_t n);
/* Everything about the record produced under @key is a function of @key. */
void make_desc(uint64_t key, uint32_t cap, struct rf_ring_desc *d);
/* Encode the record for @key (payload in place or not, by key parity). */
int produce_key(struct rf_ring_producer *p, uint64_t key, uint32_t cap, unsigned char *buf,
                size_t buf_len, unsigned char *scratch, struct rf_ring_image *img);
/* Assert that @rec is the record produced under @key. */
void check_key(const struct rf_ring_record *rec, uint64_t key, uint32_t cap);
/* Ring memory (header + @data_size), filled with 0xA5. */
void *mem_alloc(uint64_t data_size);
/* A new directory under @base (the same buffer on every call). */
const char *make_tmpdir(const char *base);

/* Log capture: the last error/warning lines, concatenated. */
struct captured {
	char text[4096];
	int count;
};

/* An rf_log sink appending to a struct captured (@ctx). */
void capture_sink(void *ctx, enum rf_log_level level, const char *line);

/* Write @n TRIM records straight into @r. */
void write_trims(struct rf_ring *r, struct rf_ring_producer *p, unsigned n);

/* Little-endian byte access. */
void put32(unsigned char *p, uint32_t v);
void put64(unsigned char *p, uint64_t v);
uint64_t get64(const unsigned char *p);

/* test_ring.c: the data path. */
void test_round_trip_mem(void **state);
void test_round_trip_tmp_file(void **state);
void test_round_trip_shm_file(void **state);
void test_wrap_many_laps(void **state);
void test_full_ring(void **state);
void test_tiny_ring(void **state);
void test_pad_segments(void **state);

/* test_ring_records.c: records the consumer must not take. */
void test_stale_records(void **state);
void test_record_fields(void **state);

/* test_ring_header.c: the ring header and the persisted head. */
void test_header_corruption(void **state);
void test_head_persisted(void **state);

#endif /* REPFABRIC_TESTS_UNIT_TEST_RING_H */

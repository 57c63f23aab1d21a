/* SPDX-License-Identifier: MIT */
/*
 * test_ring's helpers (test_ring.h): records whose every field and byte is
 * a function of a key, ring memory, temporary directories, log capture,
 * TRIM records written straight in, little-endian byte access.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "repfabric/crc32c.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"

#include "test_ring.h"

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void fill_bytes(uint64_t key, unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = mix64(key * 0x100000001b3ull + i);

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

/* Everything about the record produced under @key is a function of @key. */
void make_desc(uint64_t key, uint32_t cap, struct rf_ring_desc *d)
{
	uint64_t h = mix64(key);

	memset(d, 0, sizeof(*d));
	d->volume_id = (uint32_t)(h >> 8) & 0xff;
	d->offset = (mix64(key ^ 1) % 100000) * 512;
	d->flags = (uint16_t)(h >> 40);
	d->timestamp_ns = key * 7 + 3;
	switch (h % 32) {
	case 0:
		d->type = RF_RING_REC_ZERO;
		d->length = (uint32_t)((h >> 16) % 1024 + 1) * 512;
		return;
	case 1:
		d->type = RF_RING_REC_TRIM;
		d->length = (uint32_t)((h >> 16) % 1024 + 1) * 512;
		return;
	case 2:
		d->length = cap;
		break;
	case 3:
		d->length = 0;
		break;
	case 4:
		d->length = cap ? cap - 1 : 0;
		break;
	case 5:
		d->length = 176; /* exactly one 256-byte record */
		break;
	case 6:
		d->length = 177;
		break;
	default:
		d->length = (uint32_t)(mix64(key ^ 2) % ((h % 4) ? (cap < 4096 ? cap : 4096) + 1
		                                                 : (uint64_t)cap + 1));
		break;
	}
	d->type = RF_RING_REC_DATA;
}

/* Encode the record for @key (payload in place or not, by key parity). */
int produce_key(struct rf_ring_producer *p, uint64_t key, uint32_t cap, unsigned char *buf,
                size_t buf_len, unsigned char *scratch, struct rf_ring_image *img)
{
	struct rf_ring_desc d;

	make_desc(key, cap, &d);
	if (d.type == RF_RING_REC_DATA) {
		unsigned char *dst = (key & 1) ? buf + RF_RING_REC_HDR_SIZE : scratch;

		fill_bytes(key, dst, d.length);
		d.payload = dst;
	}
	return rf_ring_producer_encode(p, &d, buf, buf_len, img);
}

void check_key(const struct rf_ring_record *rec, uint64_t key, uint32_t cap)
{
	struct rf_ring_desc d;
	unsigned char *want;

	make_desc(key, cap, &d);
	assert_int_equal(rec->type, d.type);
	assert_int_equal(rec->flags, d.flags);
	assert_int_equal(rec->volume_id, d.volume_id);
	assert_int_equal(rec->offset, d.offset);
	assert_int_equal(rec->length, d.length);
	assert_int_equal(rec->timestamp_ns, d.timestamp_ns);
	assert_int_equal(rec->total_size,
	                 rf_ring_record_size(d.type == RF_RING_REC_DATA ? d.length : 0));
	if (d.type != RF_RING_REC_DATA) {
		assert_int_equal(rec->payload_len, 0);
		assert_null(rec->payload);
		return;
	}
	assert_int_equal(rec->payload_len, d.length);
	want = malloc(d.length + 1);
	assert_non_null(want);
	fill_bytes(key, want, d.length);
	if (d.length)
		assert_memory_equal(rec->payload, want, d.length);
	free(want);
}

void *mem_alloc(uint64_t data_size)
{
	void *m = aligned_alloc(4096, RF_RING_HEADER_SIZE + data_size);

	assert_non_null(m);
	memset(m, 0xA5, RF_RING_HEADER_SIZE + data_size);
	return m;
}

static char tmpdir_path[256];

const char *make_tmpdir(const char *base)
{
	snprintf(tmpdir_path, sizeof(tmpdir_path), "%s/rf-ring-test-XXXXXX", base);
	assert_non_null(mkdtemp(tmpdir_path));
	return tmpdir_path;
}

void capture_sink(void *ctx, enum rf_log_level level, const char *line)
{
	struct captured *c = ctx;
	size_t n = strlen(c->text);

	c->count++;
	snprintf(c->text + n, sizeof(c->text) - n, "%s\n", line);
}

void write_trims(struct rf_ring *r, struct rf_ring_producer *p, unsigned n)
{
	unsigned char buf[512];
	struct rf_ring_image img;

	for (unsigned i = 0; i < n; i++) {
		struct rf_ring_desc d = {.type = RF_RING_REC_TRIM, .length = 512, .offset = i};

		assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
}

void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

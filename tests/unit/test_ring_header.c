/* SPDX-License-Identifier: MIT */
/*
 * test_ring's cases on the ring header: validation of every field when a
 * ring is opened, and the consumer head persisted in alternate slots.
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

/* ---- header validation -------------------------------------------------- */

/* Offsets as documented in docs/PROTOCOL.md. */
#define H_VERSION     8
#define H_HEADER_SIZE 12
#define H_DATA_SIZE   16
#define H_ALIGN       24
#define H_FLAGS       28
#define H_RING_ID     32
#define H_RESERVED0   48
#define H_CRC         60
#define H_SLOT0       64
#define H_SLOT1       128

static void fix_header_crc(unsigned char *h)
{
	put32(h + H_CRC, rf_crc32c(0, h, H_CRC));
}

static void fix_slot_crc(unsigned char *s)
{
	put32(s + 28, rf_crc32c(0, s, 28));
}

static int rewrite_and_open(const char *path, const unsigned char *hdr, struct captured *cap)
{
	struct rf_ring *r = NULL;
	FILE *f = fopen(path, "r+");
	int ret;

	assert_non_null(f);
	assert_int_equal(fwrite(hdr, 1, RF_RING_HEADER_SIZE, f), RF_RING_HEADER_SIZE);
	assert_int_equal(fclose(f), 0);
	memset(cap, 0, sizeof(*cap));
	rf_log_set_sink(capture_sink, cap);
	ret = rf_ring_open(&r, path);
	rf_log_set_sink(NULL, NULL);
	if (ret == 0)
		rf_ring_close(&r);
	else
		assert_null(r);
	return ret;
}

void test_header_corruption(void **state)
{
	const char *dir = make_tmpdir("/tmp");
	char path[320];
	uint64_t ds = 128 * 1024;
	unsigned char good[RF_RING_HEADER_SIZE], h[RF_RING_HEADER_SIZE];
	struct rf_ring *r = NULL;
	struct rf_ring_info info;
	struct captured cap;
	char reason[200];
	static const struct {
		unsigned off, width;
		uint64_t value;
		bool fix_crc;
		int want;
		const char *needle;
	} cases[] = {
	    {0, 1, 'X', false, -EBADMSG, "magic"},
	    {7, 1, 2, false, -EBADMSG, "magic"},
	    {H_VERSION, 4, 2, true, -EPROTONOSUPPORT, "version"},
	    {H_VERSION, 4, 0, false, -EPROTONOSUPPORT, "version"},
	    {H_HEADER_SIZE, 4, 8192, true, -EBADMSG, "header_size"},
	    {H_DATA_SIZE, 8, 128 * 1024 + 100, true, -EBADMSG, "data_size"},
	    {H_DATA_SIZE, 8, 256 * 1024, true, -EBADMSG, "data_size"},
	    {H_DATA_SIZE, 8, 64 * 1024, true, -EBADMSG, "data_size"},
	    {H_DATA_SIZE, 8, 1024, true, -EBADMSG, "data_size"},
	    {H_DATA_SIZE, 8, 0, false, -EBADMSG, "header_crc"},
	    {H_ALIGN, 4, 512, true, -EBADMSG, "record_align"},
	    {H_FLAGS, 4, 1, true, -EBADMSG, "flags"},
	    {H_RING_ID, 8, 0, true, -EBADMSG, "ring_id"},
	    {H_RING_ID, 1, 0x77, false, -EBADMSG, "header_crc"},
	    {H_RESERVED0, 1, 1, true, -EBADMSG, "reserved"},
	    {H_CRC, 1, 0x00, false, -EBADMSG, "header_crc"},
	};

	snprintf(path, sizeof(path), "%s/ring", dir);
	assert_int_equal(rf_ring_create(&r, path, ds), 0);
	memcpy(good, rf_ring_base(r), sizeof(good));
	rf_ring_close(&r);
	assert_int_equal(rf_ring_header_parse(good, sizeof(good), &info, reason, sizeof(reason)),
	                 0);
	assert_int_equal(info.data_size, ds);
	assert_int_equal(info.head_pos, 0);
	assert_int_equal(info.head_seq, 1);
	assert_int_equal(
	    rf_ring_header_parse(good, RF_RING_HEADER_USED - 1, &info, reason, sizeof(reason)),
	    -EINVAL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret;

		memcpy(h, good, sizeof(h));
		if (cases[i].off == H_CRC)
			h[H_CRC] ^= 0xff;
		else
			for (unsigned b = 0; b < cases[i].width; b++)
				h[cases[i].off + b] = (unsigned char)(cases[i].value >> (8 * b));
		if (cases[i].fix_crc)
			fix_header_crc(h);
		ret = rewrite_and_open(path, h, &cap);
		if (ret != cases[i].want || !strstr(cap.text, cases[i].needle))
			fail_msg("case %zu: ret %d, log \"%s\"", i, ret, cap.text);
		/* The parser says the same thing (bar the file-size check). */
		if (cases[i].value != 256 * 1024 && cases[i].value != 64 * 1024) {
			ret = rf_ring_header_parse(h, sizeof(h), &info, reason, sizeof(reason));
			assert_int_equal(ret, cases[i].want);
			assert_non_null(strstr(reason, cases[i].needle));
		}
	}

	/* Head slots: the newest one torn falls back to the other. */
	memcpy(h, good, sizeof(h));
	put64(h + H_SLOT0, 4096);
	put64(h + H_SLOT0 + 8, 77);
	put64(h + H_SLOT0 + 16, 2);
	fix_slot_crc(h + H_SLOT0);
	assert_int_equal(rewrite_and_open(path, h, &cap), 0);
	assert_int_equal(rf_ring_open(&r, path), 0);
	{
		uint64_t hp, hs;

		rf_ring_head(r, &hp, &hs);
		assert_int_equal(hp, 4096);
		assert_int_equal(hs, 77);
	}
	rf_ring_close(&r);
	h[H_SLOT0 + 3] ^= 1; /* slot 0 (newest) torn */
	assert_int_equal(rewrite_and_open(path, h, &cap), 0);
	assert_non_null(strstr(cap.text, "head slot 0"));
	assert_int_equal(rf_ring_open(&r, path), 0);
	{
		uint64_t hp, hs;

		rf_ring_head(r, &hp, &hs);
		assert_int_equal(hp, 0);
		assert_int_equal(hs, 1);
	}
	rf_ring_close(&r);
	h[H_SLOT1 + 9] ^= 1; /* both torn */
	assert_int_equal(rewrite_and_open(path, h, &cap), -EBADMSG);
	assert_non_null(strstr(cap.text, "head slots"));
	/* Misaligned head_pos (CRC fixed) in both slots. */
	memcpy(h, good, sizeof(h));
	put64(h + H_SLOT0, 100);
	fix_slot_crc(h + H_SLOT0);
	put64(h + H_SLOT1, 100);
	fix_slot_crc(h + H_SLOT1);
	assert_int_equal(rewrite_and_open(path, h, &cap), -EBADMSG);
	assert_non_null(strstr(cap.text, "head_pos 100"));
	/* head_seq zero. */
	memcpy(h, good, sizeof(h));
	put64(h + H_SLOT0 + 8, 0);
	fix_slot_crc(h + H_SLOT0);
	put64(h + H_SLOT1 + 8, 0);
	fix_slot_crc(h + H_SLOT1);
	assert_int_equal(rewrite_and_open(path, h, &cap), -EBADMSG);
	assert_non_null(strstr(cap.text, "head_seq"));

	/* A file of the wrong size, and one too small for a header. */
	assert_int_equal(rewrite_and_open(path, good, &cap), 0);
	assert_int_equal(truncate(path, RF_RING_HEADER_SIZE + ds + 4096), 0);
	assert_int_equal(rewrite_and_open(path, good, &cap), -EBADMSG);
	assert_non_null(strstr(cap.text, "does not match the size"));
	assert_int_equal(truncate(path, 1000), 0);
	memset(&cap, 0, sizeof(cap));
	rf_log_set_sink(capture_sink, &cap);
	assert_int_equal(rf_ring_open(&r, path), -EBADMSG);
	rf_log_set_sink(NULL, NULL);
	assert_non_null(strstr(cap.text, "smaller than the ring header"));
	/* Missing file. */
	assert_int_equal(unlink(path), 0);
	rf_log_set_sink(capture_sink, &cap);
	assert_int_equal(rf_ring_open(&r, path), -ENOENT);
	rf_log_set_sink(NULL, NULL);
	assert_null(r);
	assert_int_equal(rmdir(dir), 0);
}

/* Consume persists the head to alternate slots; reopen resumes there. */
void test_head_persisted(void **state)
{
	const char *dir = make_tmpdir("/dev/shm");
	char path[320];
	uint64_t ds = 128 * 1024, hp, hs, want_pos = 0, want_seq = 0;
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_record rec;
	unsigned char *base;
	unsigned newest;

	snprintf(path, sizeof(path), "%s/ring", dir);
	assert_int_equal(rf_ring_create(&r, path, ds), 0);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	write_trims(r, p, 20);
	for (int i = 0; i < 7; i++) {
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		if (i < 6) {
			assert_int_equal(rf_ring_consume(r, &rec), 0);
			rf_ring_head(r, &want_pos, &want_seq);
		} else {
			/* Advanced in memory only: not durable. */
			assert_int_equal(rf_ring_advance(r, &rec), 0);
		}
	}
	rf_ring_close(&r);
	assert_int_equal(rf_ring_open(&r, path), 0);
	rf_ring_head(r, &hp, &hs);
	assert_int_equal(hp, want_pos);
	assert_int_equal(hs, want_seq);
	/* Tear the newest slot: the previous head comes back (re-delivery). */
	assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
	assert_int_equal(rf_ring_consume(r, &rec), 0);
	rf_ring_head(r, &hp, &hs);
	assert_int_equal(hs, want_seq + 1);
	base = rf_ring_base(r);
	newest = get64(base + H_SLOT0 + 16) > get64(base + H_SLOT1 + 16) ? H_SLOT0 : H_SLOT1;
	assert_int_equal(get64(base + newest + 8), want_seq + 1);
	base[newest + 5] ^= 0x10;
	rf_ring_close(&r);
	assert_int_equal(rf_ring_open(&r, path), 0);
	rf_ring_head(r, &hp, &hs);
	assert_int_equal(hp, want_pos);
	assert_int_equal(hs, want_seq);
	assert_int_equal(rf_ring_persist(r, (unsigned char *)rf_ring_base(r) + 64, 32), 0);
	assert_int_equal(rf_ring_persist(r, (unsigned char *)rf_ring_base(r) + ds, 8192), -EINVAL);
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

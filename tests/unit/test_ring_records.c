/* SPDX-License-Identifier: MIT */
/*
 * test_ring's cases on records the consumer must not take: stale records
 * (earlier laps, earlier sessions, other rings) and crafted record fields.
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

/* ---- stale records: earlier laps, earlier sessions, other rings -------- */

void test_stale_records(void **state)
{
	uint64_t ds = RF_RING_MIN_DATA_SIZE;
	unsigned char *mem = mem_alloc(ds), *mem2 = mem_alloc(ds);
	struct rf_ring *r = NULL, *r2 = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;
	struct rf_ring_scan_result res;
	unsigned char rec7[1024], buf[1536];
	struct rf_ring_image img;
	uint64_t pos6;

	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);

	/* A full lap of 256-byte records, consumed: the next lap's slots hold them. */
	write_trims(r, p, ds / 256);
	for (unsigned i = 0; i < ds / 256; i++) {
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rec.offset, i);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
	}
	assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
	assert_int_equal(why.status, RF_RING_ST_STALE);
	assert_non_null(strstr(why.reason, "stale sequence"));
	rf_ring_scan(r, &res);
	assert_int_equal(res.records, 0);
	assert_int_equal(res.stop.status, RF_RING_ST_STALE);
	rf_ring_producer_delete(&p);

	/*
	 * Earlier session: records 1..10 of 1 KiB, record 6 torn; the consumer
	 * applies 1..5, begins a new session, and the new producer rewrites
	 * the slot of 6 with a record of the same size. The old 7 right
	 * after it must not be accepted.
	 */
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	for (int i = 1; i <= 10; i++) {
		struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .length = 700, .offset = i};

		fill_bytes((uint64_t)i, buf + RF_RING_REC_HDR_SIZE, 700);
		d.payload = buf + RF_RING_REC_HDR_SIZE;
		assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img), 0);
		assert_int_equal(img.total_size, 1024);
		if (i == 6) {
			pos6 = img.pos;
			img.seg[0].len -= 16; /* torn: the trailer never lands */
		}
		if (i == 7)
			memcpy(rec7, buf, 1024);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
	rf_ring_producer_delete(&p);
	for (int i = 1; i <= 5; i++) {
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rec.offset, i);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
	}
	assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
	assert_int_equal(why.status, RF_RING_ST_TORN);
	rf_ring_scan(r, &res);
	assert_int_equal(res.stop.status, RF_RING_ST_TORN);
	assert_int_equal(res.end_pos, pos6);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(info.head_pos, pos6);
	assert_true(info.head_seq > rec.seq + ds / 256);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	{
		struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .length = 700, .offset = 66};

		fill_bytes(66, buf + RF_RING_REC_HDR_SIZE, 700);
		d.payload = buf + RF_RING_REC_HDR_SIZE;
		assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img), 0);
		assert_int_equal(img.pos, pos6);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
	assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
	assert_int_equal(rec.offset, 66);
	assert_int_equal(rf_ring_consume(r, &rec), 0);
	/* Old record 7 sits exactly where the next record is expected. */
	assert_memory_equal(mem + RF_RING_HEADER_SIZE + rec.next_pos % ds, rec7, 1024);
	assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
	assert_int_equal(why.status, RF_RING_ST_STALE);

	/* A record from another ring (same sequence, same place) is stale too. */
	rf_ring_producer_delete(&p);
	{
		struct rf_ring_info cur;
		uint64_t hp, hs;

		rf_ring_head(r, &hp, &hs);
		cur.ring_id = rf_ring_id(r);
		cur.data_size = ds;
		cur.head_pos = hp;
		cur.head_seq = hs;
		assert_int_equal(rf_ring_producer_new(&p, &cur), 0);
		write_trims(r, p, 1);
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		/* The same data area and head under another ring's header. */
		assert_int_equal(rf_ring_format_mem(&r2, mem2, RF_RING_HEADER_SIZE + ds, ds), 0);
		assert_true(rf_ring_id(r2) != rf_ring_id(r));
		rf_ring_close(&r2);
		memcpy(mem2 + RF_RING_HEADER_SIZE, mem + RF_RING_HEADER_SIZE, ds);
		memcpy(mem2 + 64, mem + 64, 128); /* the head slots */
		assert_int_equal(rf_ring_attach_mem(&r2, mem2, RF_RING_HEADER_SIZE + ds), 0);
		assert_int_equal(rf_ring_peek(r2, &rec, &why), -EAGAIN);
		assert_int_equal(why.status, RF_RING_ST_STALE);
		assert_non_null(strstr(why.reason, "ring id"));

		/* A sequence ahead of the expected one is corruption, not staleness. */
		rf_ring_producer_delete(&p);
		cur.head_seq = hs + 1;
		assert_int_equal(rf_ring_producer_new(&p, &cur), 0);
		write_trims(r, p, 1);
		assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
		assert_int_equal(why.status, RF_RING_ST_BAD_SEQ);
		assert_string_equal(rf_ring_status_name(why.status), "bad-seq");
	}
	rf_ring_producer_delete(&p);
	rf_ring_close(&r2);
	rf_ring_close(&r);
	free(mem2);
	free(mem);
}

/* ---- field validation on crafted records -------------------------------- */

/* Recompute a record's CRC after tampering (header at @h, payload after). */
static void fix_rec_crc(unsigned char *h, uint32_t payload_len)
{
	uint32_t crc;

	put32(h + 60, 0);
	crc = rf_crc32c(0, h, 64);
	crc = rf_crc32c(crc, h + 64, payload_len);
	put32(h + 60, crc);
}

void test_record_fields(void **state)
{
	uint64_t ds = RF_RING_MIN_DATA_SIZE;
	unsigned char *mem = mem_alloc(ds), *data = mem + RF_RING_HEADER_SIZE;
	unsigned char clean[1024], buf[2048];
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;
	struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .length = 800};
	static const struct {
		unsigned off, width;
		uint64_t value;
		bool fix_crc;
		enum rf_ring_status want;
		const char *needle;
	} cases[] = {
	    {0, 4, 0x12345678, false, RF_RING_ST_END, "no record magic"},
	    {4, 2, 9, true, RF_RING_ST_BAD_FIELD, "type unknown"},
	    {4, 2, RF_RING_REC_PAD, true, RF_RING_ST_BAD_FIELD, "PAD"},
	    {8, 4, 801, true, RF_RING_ST_BAD_FIELD, "length differs"},
	    {8, 4, 100000, true, RF_RING_ST_BAD_FIELD, "payload_len above"},
	    {12, 4, 768, true, RF_RING_ST_BAD_FIELD, "total_size does not match"},
	    {12, 4, 0x7fffff00, true, RF_RING_ST_BAD_FIELD, "passes the end"},
	    {36, 4, 5, true, RF_RING_ST_BAD_FIELD, "length differs"},
	    {56, 4, 1, true, RF_RING_ST_BAD_FIELD, "reserved"},
	    {40, 8, 12345, false, RF_RING_ST_BAD_CRC, "crc"},
	    {60, 4, 0, false, RF_RING_ST_BAD_CRC, "crc"},
	    {100, 1, 0xee, false, RF_RING_ST_BAD_CRC, "crc"},
	    {1024 - 16, 8, 999, false, RF_RING_ST_TORN, "torn"},
	    {1024 - 8, 4, 0, false, RF_RING_ST_TORN, "torn"},
	    {1024 - 4, 4, 1, false, RF_RING_ST_TORN, "torn"},
	};

	d.payload = buf + RF_RING_REC_HDR_SIZE;
	fill_bytes(5, buf + RF_RING_REC_HDR_SIZE, 800);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img), 0);
	assert_int_equal(img.total_size, 1024);
	assert_int_equal(rf_ring_write_local(r, &img), 0);
	memcpy(clean, data + img.pos % ds, 1024);
	assert_int_equal(rf_ring_peek(r, &rec, &why), 0);
	assert_int_equal(why.status, RF_RING_ST_OK);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char *h = data + img.pos % ds;

		memcpy(h, clean, 1024);
		for (unsigned b = 0; b < cases[i].width; b++)
			h[cases[i].off + b] = (unsigned char)(cases[i].value >> (8 * b));
		if (cases[i].fix_crc)
			fix_rec_crc(h, 800);
		assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
		if (why.status != cases[i].want || !strstr(why.reason, cases[i].needle))
			fail_msg("case %zu: status %s reason \"%s\"", i,
			         rf_ring_status_name(why.status), why.reason);
	}

	/* A PAD that does not end at the end of the data area. */
	{
		unsigned char *h = data + img.pos % ds;

		memcpy(h, clean, 1024);
		memset(h + 4, 0, 60);
		put32(h + 0, 0x31524652u);
		h[4] = RF_RING_REC_PAD;
		put32(h + 12, 1024);
		put64(h + 16, img.seq);
		put64(h + 24, rf_ring_id(r));
		fix_rec_crc(h, 0);
		assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
		assert_int_equal(why.status, RF_RING_ST_BAD_FIELD);
		assert_non_null(strstr(why.reason, "does not end at the end"));
	}
	memcpy(data + img.pos % ds, clean, 1024);
	assert_int_equal(rf_ring_peek(r, &rec, &why), 0);
	assert_string_equal(rf_ring_type_name(rec.type), "data");
	assert_int_equal(rf_ring_consume(r, &rec), 0);
	assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);

	/* A well-formed record in the last 256 bytes that claims 1280: it would wrap. */
	while (rf_ring_producer_tail(p) % ds != ds - 256) {
		struct rf_ring_desc z = {.type = RF_RING_REC_ZERO, .length = 512};

		assert_int_equal(rf_ring_producer_encode(p, &z, buf, sizeof(buf), &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
		assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
	}
	{
		unsigned char *h = data + ds - 256;
		uint64_t hp, hs;

		rf_ring_head(r, &hp, &hs);
		memcpy(h, clean, 64);
		put64(h + 16, hs);
		put32(h + 8, 1000);
		put32(h + 12, 1280);
		put32(h + 36, 1000);
		fix_rec_crc(h, 0);
		assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
		assert_int_equal(why.status, RF_RING_ST_BAD_FIELD);
		assert_non_null(strstr(why.reason, "passes the end"));
	}
	assert_string_equal(rf_ring_type_name(RF_RING_REC_PAD), "pad");
	assert_string_equal(rf_ring_type_name(999), "?");
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	free(mem);
}

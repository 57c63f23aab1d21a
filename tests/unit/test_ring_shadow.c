/* SPDX-License-Identifier: MIT */
/*
 * Flushes proven, not assumed. Emulated persistent memory keeps every store
 * (docs/DURABILITY.md), so a power cut cannot catch a missing flush there.
 * This test builds pmem/ring_map.c into itself (the SPDK way: it sees the
 * statics) and replaces the ring's persist function with one that copies
 * exactly the persisted ranges into a shadow of the mapping. A power cut
 * after the Nth persist keeps only the shadow: stores that were never
 * persisted are gone, whatever the CPU did with them.
 *
 * Three producers, each at hundreds of random cut points:
 *   local    rf_ring_write_local (the shm producer): every record whose
 *            write returned before the cut is there after it;
 *   durable  records placed with plain stores, as an RDMA WRITE or a tcp
 *            placement leaves them, then rf_ring_make_durable (the hub's
 *            rule pmem): the durable mark after the cut is at least the
 *            last one acknowledged before it, and every record before it
 *            is valid and exact;
 *   both     with a consumer: the head after the cut is the last head whose
 *            persist completed before it.
 * Removing any one persist call on these paths (record segments, the
 * landed range, the durable mark, the head slot) makes a check fail.
 */
#include "../../pmem/ring_map.c" /* IWYU pragma: keep */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define DS      (256u * 1024u)
#define MAPLEN  (RF_RING_HEADER_SIZE + DS)
#define MAXREC  8192u
#define NRECS   400
#define ROUNDS  300
#define NO_CUT  UINT64_MAX
#define MAX_SEQ 4096

static unsigned char *live, *shadow;
static uint64_t persist_calls, cut_at;

/* The persist function under test: the shadow receives what is persisted
 * before the cut, nothing after it. */
static int shadow_persist(const void *addr, size_t len)
{
	const unsigned char *p = addr;

	assert_true(p >= live && p + len <= live + MAPLEN);
	if (++persist_calls <= cut_at)
		memcpy(shadow + (p - live), p, len);
	return 0;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Everything about record @seq is a function of (@salt, @seq). */
static void make_record(uint64_t salt, uint64_t seq, struct rf_ring_desc *d, unsigned char *payload)
{
	uint64_t h = mix64(salt ^ (seq * 0x100000001b3ull));

	memset(d, 0, sizeof(*d));
	d->volume_id = (uint32_t)(h & 7);
	d->offset = ((h >> 8) % 4096) * 512;
	d->timestamp_ns = seq;
	if (h % 11 == 0) {
		d->type = RF_RING_REC_ZERO;
		d->length = 4096;
		return;
	}
	d->type = RF_RING_REC_DATA;
	d->length = (uint32_t)((h >> 20) % MAXREC) + 1;
	for (uint32_t i = 0; i < d->length; i++)
		payload[i] = (unsigned char)mix64(h + i);
	d->payload = payload;
}

/* @rec is exactly what was written (its key is in timestamp_ns: a PAD
 * before it takes the sequence it was made for). */
static void check_exact(const struct rf_ring_record *rec, uint64_t salt)
{
	static unsigned char want[MAXREC];
	struct rf_ring_desc d;

	make_record(salt, rec->timestamp_ns, &d, want);
	assert_int_equal(rec->type, d.type);
	assert_int_equal(rec->volume_id, d.volume_id);
	assert_int_equal(rec->offset, d.offset);
	assert_int_equal(rec->length, d.length);
	if (d.type == RF_RING_REC_DATA)
		assert_memory_equal(rec->payload, want, d.length);
}

enum mode { LOCAL, DURABLE, BOTH };

struct run {
	uint64_t done_at[MAX_SEQ]; /* persist count when the record was acknowledged */
	uint64_t mark_seq;         /* the newest durable mark acknowledged before the cut */
	uint64_t head_seq;         /* the newest head persisted before the cut */
	uint64_t first_seq;        /* the session's first sequence */
	uint64_t last_seq;         /* the newest record written */
};

static struct run run;

/* Consume one record at the head and persist the head (the drain). */
static void consume_one(struct rf_ring *r, struct rf_ring_producer *p, uint64_t salt)
{
	struct rf_ring_record rec;

	assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
	check_exact(&rec, salt);
	assert_int_equal(rf_ring_consume(r, &rec), 0);
	if (persist_calls <= cut_at)
		run.head_seq = rec.next_seq;
	assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
}

static void one_round(enum mode mode, uint64_t seed)
{
	static unsigned char buf[MAXREC + 1024], payload[MAXREC];
	struct rf_ring *r = NULL, *r2 = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_scan_result sc;
	uint64_t salt = mix64(seed), rnd = salt, dpos, dseq;

	memset(live, 0, MAPLEN);
	memset(&run, 0, sizeof(run));
	assert_int_equal(rf_ring_format_mem(&r, live, MAPLEN, DS), 0);
	r->persist = shadow_persist;
	memcpy(shadow, live, MAPLEN); /* the formatted header is persistent */
	persist_calls = 0;
	cut_at = NO_CUT;
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	run.first_seq = run.head_seq = run.mark_seq = info.head_seq;
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	cut_at = persist_calls + (mix64(rnd++) % 600);

	for (int i = 0; i < NRECS; i++) {
		uint64_t seq = rf_ring_producer_next_seq(p);
		struct rf_ring_desc d;
		struct rf_ring_image img;
		int ret;

		make_record(salt, seq, &d, payload);
		ret = rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img);
		if (ret == -ENOSPC) {
			/* Full: make all durable (the hub would), then drain some. */
			if (mode != LOCAL) {
				assert_true(rf_ring_make_durable(r, seq - 1, NULL) >= 0);
				if (persist_calls <= cut_at)
					rf_ring_durable(r, &dpos, &run.mark_seq);
			}
			for (int k = 0; k < 4; k++)
				consume_one(r, p, salt);
			i--;
			continue;
		}
		assert_int_equal(ret, 0);
		if (mode == LOCAL) {
			assert_int_equal(rf_ring_write_local(r, &img), 0);
		} else {
			/* One-sided placement: plain stores, nothing persisted. */
			for (unsigned s = 0; s < img.nseg; s++)
				memcpy(live + img.seg[s].file_off, img.seg[s].src, img.seg[s].len);
			if (mix64(rnd++) % 3 == 0) {
				assert_true(rf_ring_make_durable(r, img.seq, NULL) > 0);
				if (persist_calls <= cut_at)
					rf_ring_durable(r, &dpos, &run.mark_seq);
			}
		}
		assert_true(img.seq - run.first_seq < MAX_SEQ);
		run.done_at[img.seq - run.first_seq] = persist_calls;
		run.last_seq = img.seq;
		if (mode == BOTH && mix64(rnd++) % 4 == 0) {
			uint64_t hpos, hseq;

			/* The drain applies only what is durable or below it. */
			rf_ring_durable(r, &dpos, &dseq);
			rf_ring_head(r, &hpos, &hseq);
			if (hseq < dseq)
				consume_one(r, p, salt);
		}
	}

	/* Power cut: only what was persisted before it is left. */
	memcpy(live, shadow, MAPLEN);
	assert_int_equal(rf_ring_attach_mem(&r2, live, MAPLEN), 0);
	r2->persist = shadow_persist;
	rf_ring_head(r2, &dpos, &dseq);
	assert_int_equal(dseq, run.head_seq);
	rf_ring_scan(r2, &sc);
	if (mode != LOCAL) {
		rf_ring_durable(r2, &dpos, &dseq);
		if (dseq < run.mark_seq)
			fail_msg("round %llu: durable mark %llu after the cut, %llu acknowledged",
			         (unsigned long long)seed, (unsigned long long)dseq,
			         (unsigned long long)run.mark_seq);
		if (sc.end_seq < dseq)
			fail_msg("round %llu: records before the durable mark lost (prefix ends at "
			         "%llu, mark %llu: %s)",
			         (unsigned long long)seed, (unsigned long long)sc.end_seq,
			         (unsigned long long)dseq, sc.stop.reason);
	} else {
		for (uint64_t s = run.head_seq; s <= run.last_seq; s++) {
			uint64_t at = run.done_at[s - run.first_seq];

			if (!at)
				continue; /* a PAD's sequence */
			if (at <= cut_at && sc.end_seq <= s)
				fail_msg(
				    "round %llu: record %llu written before the cut is lost (%s)",
				    (unsigned long long)seed, (unsigned long long)s,
				    sc.stop.reason);
		}
	}
	/* Everything in the prefix is exact. */
	for (;;) {
		struct rf_ring_record rec;

		if (rf_ring_peek(r2, &rec, NULL))
			break;
		check_exact(&rec, salt);
		assert_int_equal(rf_ring_advance(r2, &rec), 0);
	}
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	rf_ring_close(&r2);
}

static void rounds(enum mode mode)
{
	live = aligned_alloc(4096, MAPLEN);
	shadow = aligned_alloc(4096, MAPLEN);
	assert_non_null(live);
	assert_non_null(shadow);
	for (uint64_t seed = 1; seed <= ROUNDS; seed++)
		one_round(mode, seed * 7 + (uint64_t)mode);
	free(live);
	free(shadow);
}

static void test_local_producer(void **state)
{
	(void)state;
	rounds(LOCAL);
}

static void test_durable_in_ring(void **state)
{
	(void)state;
	rounds(DURABLE);
}

static void test_durable_with_drain(void **state)
{
	(void)state;
	rounds(BOTH);
}

/* A doorbell that claims more than landed: nothing invalid becomes durable. */
static void test_make_durable_stops_at_invalid(void **state)
{
	static unsigned char buf[MAXREC + 1024], payload[MAXREC];
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_verdict why;
	struct rf_ring_image img[3];
	struct rf_ring_desc d;
	uint64_t pos, seq;

	(void)state;
	live = aligned_alloc(4096, MAPLEN);
	shadow = aligned_alloc(4096, MAPLEN);
	memset(live, 0, MAPLEN);
	assert_int_equal(rf_ring_format_mem(&r, live, MAPLEN, DS), 0);
	r->persist = shadow_persist;
	cut_at = NO_CUT;
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	for (int i = 0; i < 3; i++) {
		make_record(1, rf_ring_producer_next_seq(p), &d, payload);
		assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img[i]), 0);
		/* The second record's stored CRC is one bit off. */
		for (unsigned s = 0; s < img[i].nseg; s++)
			memcpy(live + img[i].seg[s].file_off, img[i].seg[s].src, img[i].seg[s].len);
		if (i == 1)
			live[img[1].seg[img[1].nseg - 1].file_off + RR_CRC] ^= 1;
	}
	assert_int_equal(rf_ring_make_durable(r, img[2].seq, &why), 1);
	assert_int_equal(why.status, RF_RING_ST_BAD_CRC);
	rf_ring_durable(r, &pos, &seq);
	assert_int_equal(seq, img[1].seq);
	/* Nothing more until it is fixed; a landed_seq below the mark is a no-op. */
	assert_int_equal(rf_ring_make_durable(r, img[2].seq, &why), 0);
	assert_int_equal(rf_ring_make_durable(r, img[0].seq, &why), 0);
	assert_int_equal(why.status, RF_RING_ST_OK);
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	free(live);
	free(shadow);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_local_producer),
	    cmocka_unit_test(test_durable_in_ring),
	    cmocka_unit_test(test_durable_with_drain),
	    cmocka_unit_test(test_make_durable_stops_at_invalid),
	};

	rf_log_set_level(RF_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

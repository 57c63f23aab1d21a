/* SPDX-License-Identifier: MIT */
/*
 * Torn writes: a record (and the PAD before it) landing byte by byte in
 * order, in reverse, and in random chunks over zeros, garbage or the
 * previous lap's records; random damage of the last record. The scanner
 * must return exactly the prefix of complete records and the consumer must
 * accept a record exactly when every byte it depends on has landed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repfabric/log.h"
#include "repfabric/ring.h"

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void fill_bytes(uint64_t key, unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = mix64(key * 0x100000001b3ull + i);

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

#define DS ((uint64_t)RF_RING_MIN_DATA_SIZE)

enum stale_mode { STALE_ZEROS, STALE_GARBAGE, STALE_PREV_LAP };

static const char *const mode_names[] = {"zeros", "garbage", "previous lap"};

/* One byte of the target's write stream: where it goes and whether it counts. */
struct sbyte {
	uint32_t ring_off; /* offset in the data area */
	unsigned char val;
	unsigned char part; /* 0: PAD, 1: record */
	bool significant;
};

struct torn_ctx {
	unsigned char *mem, *data;
	struct rf_ring *r;  /* head before the K valid records: for the scan */
	struct rf_ring *rc; /* head after them: for peek */
	struct rf_ring_producer *p;
	struct sbyte *stream;
	size_t n;
	unsigned k; /* valid records before the target */
	uint64_t pad_pos, rec_pos, rec_seq, rec_size;
	uint32_t pad_bytes;
	size_t bad[2]; /* significant bytes of the PAD / record not landed */
	uint64_t checks;
};

/* Statuses seen by the scanner over the whole test. */
static uint64_t seen[RF_RING_ST_FULL + 1];

static int produce(struct torn_ctx *c, const struct rf_ring_desc *d, struct rf_ring_image *img,
                   unsigned char *buf, size_t len)
{
	int ret = rf_ring_producer_encode(c->p, d, buf, len, img);

	if (ret == 0)
		assert_int_equal(rf_ring_write_local(c->r, img), 0);
	return ret;
}

/* Write then consume 256-byte records until the tail is at offset @off. */
static void advance_to(struct torn_ctx *c, uint64_t off)
{
	unsigned char buf[512];
	struct rf_ring_image img;
	struct rf_ring_record rec;

	while (rf_ring_producer_tail(c->p) % DS != off) {
		struct rf_ring_desc d = {.type = RF_RING_REC_ZERO, .length = 512};

		assert_int_equal(produce(c, &d, &img, buf, sizeof(buf)), 0);
		assert_int_equal(rf_ring_peek(c->r, &rec, NULL), 0);
		assert_int_equal(rf_ring_consume(c->r, &rec), 0);
		assert_int_equal(rf_ring_producer_update_head(c->p, rec.next_pos), 0);
	}
}

/* A previous lap of random records over the whole data area, consumed. */
static void previous_lap(struct torn_ctx *c, uint64_t seed)
{
	size_t len = rf_ring_encode_buf_size(8000);
	unsigned char *buf = malloc(len);
	struct rf_ring_image img;
	struct rf_ring_record rec;
	uint64_t start = rf_ring_producer_tail(c->p);

	assert_non_null(buf);
	for (uint64_t i = 0; rf_ring_producer_tail(c->p) - start < 2 * DS; i++) {
		struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .offset = i};

		d.length = (uint32_t)(mix64(seed + i) % 8000);
		fill_bytes(seed + i, buf + RF_RING_REC_HDR_SIZE, d.length);
		d.payload = buf + RF_RING_REC_HDR_SIZE;
		assert_int_equal(produce(c, &d, &img, buf, len), 0);
		assert_int_equal(rf_ring_peek(c->r, &rec, NULL), 0);
		assert_int_equal(rf_ring_consume(c->r, &rec), 0);
		assert_int_equal(rf_ring_producer_update_head(c->p, rec.next_pos), 0);
	}
	free(buf);
}

/* Set the ring byte of stream byte @i to @v, keeping the mismatch counts. */
static void set_byte(struct torn_ctx *c, size_t i, unsigned char v)
{
	const struct sbyte *b = &c->stream[i];
	unsigned char *d = &c->data[b->ring_off];

	if (b->significant)
		c->bad[b->part] -= *d != b->val;
	*d = v;
	if (b->significant)
		c->bad[b->part] += *d != b->val;
}

static void count_bad(struct torn_ctx *c)
{
	c->bad[0] = c->bad[1] = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct sbyte *b = &c->stream[i];

		if (b->significant)
			c->bad[b->part] += c->data[b->ring_off] != b->val;
	}
}

static void check_state(struct torn_ctx *c)
{
	bool pad_ok = !c->pad_bytes || c->bad[0] == 0;
	bool rec_ok = c->bad[1] == 0;
	struct rf_ring_scan_result res;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;
	int ret;

	c->checks++;
	rf_ring_scan(c->r, &res);
	seen[res.stop.status]++;
	if (pad_ok && rec_ok) {
		assert_int_equal(res.records, c->k + 1);
		assert_int_equal(res.pads, c->pad_bytes ? 1 : 0);
		assert_int_equal(res.end_pos, c->rec_pos + c->rec_size);
		assert_true(res.stop.status != RF_RING_ST_OK);
	} else {
		assert_int_equal(res.records, c->k);
		assert_int_equal(res.pads, c->pad_bytes && pad_ok ? 1 : 0);
		assert_int_equal(res.end_pos, pad_ok ? c->rec_pos : c->pad_pos);
		assert_true(res.stop.status != RF_RING_ST_OK && res.stop.status != RF_RING_ST_FULL);
		assert_true(res.stop.reason[0] != '\0');
	}
	ret = rf_ring_peek(c->rc, &rec, &why);
	if (pad_ok && rec_ok) {
		assert_int_equal(ret, 0);
		assert_int_equal(rec.seq, c->rec_seq);
		assert_int_equal(rec.pos, c->rec_pos);
		assert_int_equal(rec.pad_bytes, c->pad_bytes);
	} else {
		assert_int_equal(ret, -EAGAIN);
		assert_true(why.status != RF_RING_ST_OK);
		if (c->pad_bytes && pad_ok)
			assert_memory_equal(why.reason, "after PAD: ", 11);
	}
}

static void put_byte(struct torn_ctx *c, size_t i)
{
	set_byte(c, i, c->stream[i].val);
}

static void restore(struct torn_ctx *c, const unsigned char *before)
{
	for (size_t i = 0; i < c->n; i++)
		c->data[c->stream[i].ring_off] = before[i];
	count_bad(c);
}

/*
 * Build a ring in @mode, K valid records, then the target (DATA of
 * @payload_len, or ZERO when @zero), placed so that it needs a PAD when
 * @with_pad, and play its bytes in order, in reverse and in random chunks.
 */
static void torn_scenario(enum stale_mode mode, uint32_t payload_len, bool zero, bool with_pad,
                          uint64_t seed)
{
	struct torn_ctx c = {0};
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	uint64_t size = rf_ring_record_size(zero ? 0 : payload_len);
	size_t buf_len = rf_ring_encode_buf_size(payload_len);
	unsigned char *buf = malloc(buf_len), *before;
	struct rf_ring_desc d = {.volume_id = 3, .offset = 1 << 20, .timestamp_ns = 99};
	size_t *chunk_start, *order, nchunks;

	assert_non_null(buf);
	c.mem = aligned_alloc(4096, RF_RING_HEADER_SIZE + DS);
	assert_non_null(c.mem);
	c.data = c.mem + RF_RING_HEADER_SIZE;
	assert_int_equal(rf_ring_format_mem(&c.r, c.mem, RF_RING_HEADER_SIZE + DS, DS), 0);
	if (mode == STALE_ZEROS)
		memset(c.data, 0, DS);
	else
		fill_bytes(seed, c.data, DS);
	assert_int_equal(rf_ring_begin_session(c.r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&c.p, &info), 0);
	if (mode == STALE_PREV_LAP) {
		previous_lap(&c, seed);
		rf_ring_producer_delete(&c.p);
		assert_int_equal(rf_ring_begin_session(c.r, &info), 0);
		assert_int_equal(rf_ring_producer_new(&c.p, &info), 0);
	}

	/* Place K = 3 valid 256-byte records so the target lands as wanted. */
	c.k = 3;
	if (with_pad) {
		uint64_t room = size - 256 > 2048 ? 2048 : size - 256; /* 256 <= room < size */

		assert_true(size >= 512);
		advance_to(&c, DS - room - c.k * 256);
	} else {
		advance_to(&c, (mix64(seed) % 64) * 256 % (DS - size - c.k * 256));
	}
	for (unsigned i = 0; i < c.k; i++) {
		struct rf_ring_desc t = {.type = RF_RING_REC_TRIM, .length = 4096, .offset = i};

		assert_int_equal(produce(&c, &t, &img, buf, buf_len), 0);
	}
	assert_int_equal(rf_ring_attach_mem(&c.rc, c.mem, RF_RING_HEADER_SIZE + DS), 0);
	for (unsigned i = 0; i < c.k; i++) {
		assert_int_equal(rf_ring_peek(c.rc, &rec, NULL), 0);
		assert_int_equal(rf_ring_advance(c.rc, &rec), 0);
	}

	/* Encode the target; do not write it. */
	d.type = zero ? RF_RING_REC_ZERO : RF_RING_REC_DATA;
	d.length = zero ? 65536 : payload_len;
	fill_bytes(seed ^ 0x55, buf + RF_RING_REC_HDR_SIZE, payload_len);
	d.payload = buf + RF_RING_REC_HDR_SIZE;
	assert_int_equal(rf_ring_producer_encode(c.p, &d, buf, buf_len, &img), 0);
	assert_int_equal(img.pad_bytes != 0, with_pad);
	assert_int_equal(img.total_size, size);
	c.pad_bytes = img.pad_bytes;
	c.pad_pos = img.pos - img.pad_bytes;
	c.rec_pos = img.pos;
	c.rec_seq = img.seq;
	c.rec_size = img.total_size;
	for (unsigned s = 0; s < img.nseg; s++)
		c.n += img.seg[s].len;
	c.stream = calloc(c.n, sizeof(*c.stream));
	before = malloc(c.n);
	chunk_start = calloc(c.n + 1, sizeof(*chunk_start));
	order = calloc(c.n + 1, sizeof(*order));
	assert_non_null(order);
	assert_non_null(c.stream);
	assert_non_null(before);
	assert_non_null(chunk_start);
	for (unsigned s = 0, i = 0; s < img.nseg; s++) {
		bool is_rec = s == img.nseg - 1;

		for (uint32_t j = 0; j < img.seg[s].len; j++, i++) {
			struct sbyte *b = &c.stream[i];

			b->ring_off = (uint32_t)(img.seg[s].file_off - RF_RING_HEADER_SIZE + j);
			b->val = ((const unsigned char *)img.seg[s].src)[j];
			b->part = is_rec;
			b->significant = !is_rec ||
			                 j < RF_RING_REC_HDR_SIZE + (zero ? 0 : payload_len) ||
			                 j >= size - RF_RING_REC_TRL_SIZE;
			before[i] = c.data[b->ring_off];
		}
	}

	/* In order: cut after every byte. */
	count_bad(&c);
	check_state(&c);
	for (size_t i = 0; i < c.n; i++) {
		put_byte(&c, i);
		check_state(&c);
	}
	/* Reverse: the end lands first. */
	restore(&c, before);
	check_state(&c);
	for (size_t i = c.n; i-- > 0;) {
		put_byte(&c, i);
		check_state(&c);
	}
	/* Random chunks (1..200 bytes) landing in random order, three times. */
	srand((unsigned)seed);
	for (int round = 0; round < 3; round++) {
		restore(&c, before);
		nchunks = 0;
		for (size_t i = 0; i < c.n; i += (size_t)rand() % 200 + 1)
			chunk_start[nchunks++] = i;
		for (size_t i = 0; i < nchunks; i++)
			order[i] = i;
		for (size_t i = nchunks - 1; i > 0; i--) {
			size_t j = (size_t)rand() % (i + 1), t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		check_state(&c);
		for (size_t i = 0; i < nchunks; i++) {
			size_t from = chunk_start[order[i]];
			size_t to = order[i] + 1 < nchunks ? chunk_start[order[i] + 1] : c.n;

			for (size_t j = from; j < to; j++)
				put_byte(&c, j);
			check_state(&c);
		}
	}
	free(order);
	free(chunk_start);
	free(before);
	free(c.stream);
	rf_ring_producer_delete(&c.p);
	rf_ring_close(&c.rc);
	rf_ring_close(&c.r);
	free(c.mem);
	free(buf);
	print_message("    %-12s payload %5u%s%s: %zu bytes, %llu checks\n", mode_names[mode],
	              payload_len, zero ? " zero" : "", with_pad ? " +pad" : "", c.n,
	              (unsigned long long)c.checks);
}

static void test_torn_cuts(void **state)
{
	static const struct {
		uint32_t len;
		bool zero, pad;
	} targets[] = {
	    {0, false, false},    {176, false, false},   {0, true, false},
	    {1000, false, false}, {1000, false, true},   {3000, false, false},
	    {3000, false, true},  {16384, false, false}, {16384, false, true},
	};

	for (int mode = STALE_ZEROS; mode <= STALE_PREV_LAP; mode++)
		for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++)
			torn_scenario((enum stale_mode)mode, targets[t].len, targets[t].zero,
			              targets[t].pad, 1000 + t * 17 + (uint64_t)mode);
	for (int st = RF_RING_ST_OK; st <= RF_RING_ST_FULL; st++)
		print_message("    stop %-9s %llu\n", rf_ring_status_name((enum rf_ring_status)st),
		              (unsigned long long)seen[st]);
	assert_true(seen[RF_RING_ST_END] > 0);
	assert_true(seen[RF_RING_ST_STALE] > 0);
	assert_true(seen[RF_RING_ST_TORN] > 0);
	assert_true(seen[RF_RING_ST_BAD_CRC] > 0);
	assert_true(seen[RF_RING_ST_BAD_FIELD] > 0);
}

/*
 * Random damage to the last record (and its PAD): the scan stops exactly
 * before the damaged unit; undamaged it is whole again. Damage confined to
 * the padding between payload and trailer is harmless by design.
 */
static void test_random_damage(void **state)
{
	uint64_t ds = 256 * 1024;
	unsigned char *mem = aligned_alloc(4096, RF_RING_HEADER_SIZE + ds);
	unsigned char *data = mem + RF_RING_HEADER_SIZE;
	size_t buf_len = rf_ring_encode_buf_size(rf_ring_max_payload(ds));
	unsigned char *buf = malloc(buf_len);
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;
	struct rf_ring_scan_result res;
	uint64_t stops[RF_RING_ST_FULL + 1] = {0}, harmless = 0;

	assert_non_null(mem);
	assert_non_null(buf);
	fill_bytes(7, mem, RF_RING_HEADER_SIZE + ds);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	srand(11);
	for (int iter = 0; iter < 3000; iter++) {
		unsigned nrec = (unsigned)rand() % 5 + 1, ndmg = (unsigned)rand() % 8 + 1;
		uint64_t before_pos = 0, unit_pos = 0, unit_seq = 0, start_records, start_pads;
		uint64_t pads = 0;
		uint32_t offs[8], total = 0, pad = 0, plen = 0, size = 0;
		unsigned char saved[8];
		bool in_pad = false, only_padding = (rand() % 8) == 0;

		rf_ring_scan(r, &res);
		start_records = res.records;
		start_pads = res.pads;
		for (unsigned i = 0; i < nrec; i++) {
			struct rf_ring_desc d = {.type = RF_RING_REC_DATA,
			                         .volume_id = (uint32_t)i};
			int ret;

			d.length = (uint32_t)((unsigned)rand() % (rand() % 4 ? 3000 : 60000));
			fill_bytes((uint64_t)iter * 8 + i, buf + RF_RING_REC_HDR_SIZE, d.length);
			d.payload = buf + RF_RING_REC_HDR_SIZE;
			before_pos = rf_ring_producer_tail(p);
			ret = rf_ring_producer_encode(p, &d, buf, buf_len, &img);
			if (ret == -ENOSPC)
				break;
			assert_int_equal(ret, 0);
			assert_int_equal(rf_ring_write_local(r, &img), 0);
			unit_pos = before_pos;
			unit_seq = img.seq - (img.pad_bytes ? 1 : 0);
			pad = img.pad_bytes;
			plen = d.length;
			size = img.total_size;
			pads += pad ? 1 : 0;
			total++;
		}
		if (!total)
			goto drain;
		/* Damage: significant bytes of the last unit, or only its padding. */
		if (only_padding && size - RF_RING_REC_HDR_SIZE - plen - RF_RING_REC_TRL_SIZE == 0)
			only_padding = false;
		for (unsigned i = 0; i < ndmg; i++) {
			uint32_t x;

			if (only_padding) {
				x = RF_RING_REC_HDR_SIZE + plen +
				    (uint32_t)rand() %
				        (size - RF_RING_REC_HDR_SIZE - plen - RF_RING_REC_TRL_SIZE);
				offs[i] = (uint32_t)((unit_pos + pad + x) % ds);
				continue;
			}
			x = (uint32_t)rand() % (80 * (pad ? 1 : 0) + RF_RING_REC_HDR_SIZE + plen +
			                        RF_RING_REC_TRL_SIZE);
			if (pad && x < 64) {
				offs[i] = (uint32_t)(unit_pos % ds + x);
				in_pad = true;
			} else if (pad && x < 80) {
				offs[i] = (uint32_t)(ds - 80 + x);
				in_pad = true;
			} else {
				x -= pad ? 80 : 0;
				if (x >= RF_RING_REC_HDR_SIZE + plen)
					x = size - RF_RING_REC_TRL_SIZE +
					    (x - RF_RING_REC_HDR_SIZE - plen);
				offs[i] = (uint32_t)((unit_pos + pad + x) % ds);
			}
		}
		for (unsigned i = 0; i < ndmg; i++) {
			saved[i] = data[offs[i]];
			data[offs[i]] ^= (unsigned char)(rand() % 255 + 1);
		}
		rf_ring_scan(r, &res);
		if (only_padding) {
			harmless++;
			assert_int_equal(res.records, start_records + total);
		} else {
			stops[res.stop.status]++;
			assert_int_equal(res.records, start_records + total - 1);
			assert_int_equal(res.end_pos, in_pad ? unit_pos : unit_pos + pad);
			assert_int_equal(res.end_seq, in_pad ? unit_seq : unit_seq + (pad ? 1 : 0));
			assert_int_equal(res.pads, start_pads + pads - (in_pad ? 1 : 0));
		}
		for (unsigned i = ndmg; i-- > 0;)
			data[offs[i]] = saved[i];
		rf_ring_scan(r, &res);
		assert_int_equal(res.records, start_records + total);
		if (res.stop.status != RF_RING_ST_END && res.stop.status != RF_RING_ST_STALE &&
		    res.stop.status != RF_RING_ST_FULL)
			fail_msg("iter %d: stop %s: %s", iter, rf_ring_status_name(res.stop.status),
			         res.stop.reason);
	drain:
		/* Consume some, keep some for the next round. */
		for (unsigned i = (unsigned)rand() % 6; i > 0; i--) {
			if (rf_ring_peek(r, &rec, &why) != 0)
				break;
			assert_int_equal(rf_ring_consume(r, &rec), 0);
			assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
		}
	}
	for (int st = RF_RING_ST_OK; st <= RF_RING_ST_FULL; st++)
		print_message("    stop %-9s %llu\n", rf_ring_status_name((enum rf_ring_status)st),
		              (unsigned long long)stops[st]);
	print_message("    harmless padding damage %llu\n", (unsigned long long)harmless);
	assert_int_equal(stops[RF_RING_ST_OK], 0);
	assert_true(harmless > 0);
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	free(buf);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_torn_cuts),
	    cmocka_unit_test(test_random_damage),
	};

	rf_log_set_level(RF_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

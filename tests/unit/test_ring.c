/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the persistent ring, the data path: round trips,
 * wrap-around with PAD, full ring, tiny rings and argument edge cases,
 * segments, file/tmpfs mappings. The other cases of this program:
 * test_ring_records.c (stale records, record fields), test_ring_header.c
 * (header validation, the persisted head); helpers: test_ring_util.c.
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

/* ---- round trip and wrap ----------------------------------------------- */

struct rt_stats {
	uint64_t records, pads, enospc, laps;
};

/*
 * Produce @n records (sizes up to @cap) and consume them with random
 * interleaving; every record is checked for order and content.
 */
static void run_round_trip(struct rf_ring *r, unsigned n, uint32_t cap, unsigned seed,
                           struct rt_stats *st)
{
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_verdict why;
	size_t buf_len = rf_ring_encode_buf_size(cap);
	unsigned char *buf = malloc(buf_len), *scratch = malloc(cap + 1);
	uint64_t *keys = calloc(n, sizeof(*keys)), *pads = calloc(n, sizeof(*pads));
	uint64_t start_pos;
	unsigned produced = 0, consumed = 0;

	assert_non_null(buf);
	assert_non_null(scratch);
	assert_non_null(keys);
	assert_non_null(pads);
	memset(st, 0, sizeof(*st));
	srand(seed);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	start_pos = info.head_pos;
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	while (consumed < n) {
		unsigned burst = (unsigned)rand() % 8 + 1, take = (unsigned)rand() % 8 + 1;

		for (unsigned i = 0; i < burst && produced < n; i++) {
			uint64_t key = rf_ring_producer_next_seq(p);
			int ret = produce_key(p, key, cap, buf, buf_len, scratch, &img);

			if (ret == -ENOSPC) {
				st->enospc++;
				break;
			}
			assert_int_equal(ret, 0);
			assert_int_equal(img.seq, key + (img.pad_bytes ? 1 : 0));
			assert_int_equal(rf_ring_write_local(r, &img), 0);
			keys[produced] = key;
			pads[produced] = img.pad_bytes;
			produced++;
		}
		for (unsigned i = 0; i < take && consumed < produced; i++) {
			assert_int_equal(rf_ring_peek(r, &rec, &why), 0);
			assert_int_equal(rec.seq - (rec.pad_bytes ? 1 : 0), keys[consumed]);
			assert_int_equal(rec.pad_bytes, pads[consumed]);
			check_key(&rec, keys[consumed], cap);
			if (rec.pad_bytes)
				st->pads++;
			assert_int_equal(rf_ring_consume(r, &rec), 0);
			consumed++;
			assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
		}
		if (consumed == produced) {
			assert_int_equal(rf_ring_peek(r, &rec, &why), -EAGAIN);
			assert_true(why.status == RF_RING_ST_END || why.status == RF_RING_ST_STALE);
		}
	}
	st->records = consumed;
	st->laps = (rf_ring_producer_tail(p) - start_pos) / rf_ring_data_size(r);
	rf_ring_producer_delete(&p);
	assert_null(p);
	free(pads);
	free(keys);
	free(scratch);
	free(buf);
}

void test_round_trip_mem(void **state)
{
	uint64_t ds = 1024 * 1024;
	void *mem = mem_alloc(ds);
	struct rf_ring *r = NULL;
	struct rt_stats st;

	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	run_round_trip(r, 3000, rf_ring_max_payload(ds), 1, &st);
	assert_int_equal(st.records, 3000);
	assert_true(st.laps >= 2);
	assert_true(st.pads >= 1);
	rf_ring_close(&r);
	assert_null(r);
	free(mem);
}

static void round_trip_file(const char *base, unsigned n)
{
	const char *dir = make_tmpdir(base);
	char path[320];
	uint64_t ds = 512 * 1024, id;
	struct rf_ring *r = NULL;
	struct rf_ring_info info;
	struct rt_stats st;

	snprintf(path, sizeof(path), "%s/ring", dir);
	assert_int_equal(rf_ring_create(&r, path, ds), 0);
	(void)rf_ring_is_pmem(r); /* false on ordinary files unless PMEM_IS_PMEM_FORCE */
	assert_int_equal(rf_ring_map_len(r), RF_RING_HEADER_SIZE + ds);
	assert_int_equal(rf_ring_data_offset(r), RF_RING_HEADER_SIZE);
	assert_int_equal(rf_ring_data_size(r), ds);
	assert_non_null(rf_ring_base(r));
	assert_memory_equal(rf_ring_base(r), "RFRING\0\1", 8);
	id = rf_ring_id(r);
	assert_true(id != 0);
	run_round_trip(r, n, rf_ring_max_payload(ds), 2, &st);
	assert_int_equal(st.records, n);
	rf_ring_close(&r);
	assert_null(r);

	/* Reopen: same id, head persisted where the consumer left it. */
	assert_int_equal(rf_ring_open(&r, path), 0);
	assert_int_equal(rf_ring_id(r), id);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(info.ring_id, id);
	rf_ring_close(&r);

	/* Creating over an existing ring is refused. */
	assert_int_equal(rf_ring_create(&r, path, ds), -EEXIST);
	assert_null(r);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

void test_round_trip_tmp_file(void **state)
{
	round_trip_file("/tmp", 300);
}

void test_round_trip_shm_file(void **state)
{
	struct stat sb;

	if (stat("/dev/shm", &sb) != 0 || !S_ISDIR(sb.st_mode))
		skip();
	round_trip_file("/dev/shm", 2000);
}

void test_wrap_many_laps(void **state)
{
	uint64_t ds = RF_RING_MIN_DATA_SIZE;
	void *mem = mem_alloc(ds);
	struct rf_ring *r = NULL;
	struct rt_stats st;

	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	run_round_trip(r, 20000, 3000, 3, &st);
	assert_int_equal(st.records, 20000);
	assert_true(st.laps >= 100);
	assert_true(st.pads >= 100);
	assert_true(st.enospc >= 1);
	/* Full-size records on the smallest ring. */
	run_round_trip(r, 2000, rf_ring_max_payload(ds), 4, &st);
	assert_true(st.pads >= 10);
	rf_ring_close(&r);
	free(mem);
}

/* ---- full ring ---------------------------------------------------------- */

void test_full_ring(void **state)
{
	uint64_t ds = 256 * 1024;
	unsigned char *mem = mem_alloc(ds), *snap = malloc(ds);
	uint32_t cap = 20000;
	size_t buf_len = rf_ring_encode_buf_size(cap);
	unsigned char *buf = malloc(buf_len), *scratch = malloc(cap);
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_scan_result res;
	uint64_t keys[4096], first = 0, next = 0;
	int ret;

	assert_non_null(snap);
	assert_non_null(buf);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	for (int round = 0; round < 40; round++) {
		uint64_t key, tail, seq, freeb, off, pad, size;
		struct rf_ring_desc d;

		assert_int_equal(rf_ring_begin_session(r, &info), 0);
		assert_int_equal(rf_ring_producer_new(&p, &info), 0);
		first = next = 0;
		/* Fill until refused. */
		for (;;) {
			key = rf_ring_producer_next_seq(p);
			ret = produce_key(p, key, cap, buf, buf_len, scratch, &img);
			if (ret == -ENOSPC)
				break;
			assert_int_equal(ret, 0);
			assert_int_equal(rf_ring_write_local(r, &img), 0);
			keys[next++ % 4096] = key;
		}
		/* Refused: state and ring bytes unchanged, and rightly so. */
		tail = rf_ring_producer_tail(p);
		seq = rf_ring_producer_next_seq(p);
		freeb = rf_ring_producer_free(p);
		memcpy(snap, mem + RF_RING_HEADER_SIZE, ds);
		make_desc(key, cap, &d);
		size = rf_ring_record_size(d.type == RF_RING_REC_DATA ? d.length : 0);
		off = tail % ds;
		pad = off + size > ds ? ds - off : 0;
		assert_true(pad + size > freeb);
		for (int again = 0; again < 3; again++)
			assert_int_equal(produce_key(p, key, cap, buf, buf_len, scratch, &img),
			                 -ENOSPC);
		assert_int_equal(rf_ring_producer_tail(p), tail);
		assert_int_equal(rf_ring_producer_next_seq(p), seq);
		assert_memory_equal(snap, mem + RF_RING_HEADER_SIZE, ds);
		rf_ring_scan(r, &res);
		assert_int_equal(res.records, next - first);
		/* Consume one at a time; the retry succeeds exactly when it fits. */
		for (;;) {
			assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
			check_key(&rec, keys[first++ % 4096], cap);
			assert_int_equal(rf_ring_consume(r, &rec), 0);
			assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
			freeb = rf_ring_producer_free(p);
			ret = produce_key(p, key, cap, buf, buf_len, scratch, &img);
			if (pad + size > freeb) {
				assert_int_equal(ret, -ENOSPC);
				continue;
			}
			assert_int_equal(ret, 0);
			assert_int_equal(rf_ring_write_local(r, &img), 0);
			keys[next++ % 4096] = key;
			break;
		}
		/* Drain and check everything that was there survived. */
		while (first < next) {
			assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
			check_key(&rec, keys[first++ % 4096], cap);
			assert_int_equal(rf_ring_consume(r, &rec), 0);
		}
		assert_int_equal(rf_ring_peek(r, &rec, NULL), -EAGAIN);
		rf_ring_producer_delete(&p);
	}

	/* Exactly full with 256-byte records: the scan says so. */
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	for (uint64_t i = 0; i < ds / 256; i++) {
		struct rf_ring_desc d = {.type = RF_RING_REC_TRIM, .length = 4096};

		assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
	assert_int_equal(rf_ring_producer_free(p), 0);
	{
		struct rf_ring_desc d = {.type = RF_RING_REC_ZERO, .length = 512};

		assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -ENOSPC);
	}
	rf_ring_scan(r, &res);
	assert_int_equal(res.stop.status, RF_RING_ST_FULL);
	assert_int_equal(res.records, ds / 256);
	assert_int_equal(res.bytes, ds);
	assert_int_equal(rf_ring_begin_session(r, &info), -EBUSY);
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	free(scratch);
	free(buf);
	free(snap);
	free(mem);
}

/* ---- tiny ring and argument edge cases --------------------------------- */

void test_tiny_ring(void **state)
{
	uint64_t ds = RF_RING_MIN_DATA_SIZE;
	unsigned char *mem = mem_alloc(ds);
	uint32_t max = rf_ring_max_payload(ds);
	size_t buf_len = rf_ring_encode_buf_size(max + 1);
	unsigned char *buf = malloc(buf_len), *payload = malloc(max + 1);
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .volume_id = 9};
	uint64_t tail;

	assert_non_null(buf);
	assert_non_null(payload);
	memset(payload, 0x3c, max + 1);
	/* Sizes and limits. */
	assert_int_equal(rf_ring_record_size(0), 256);
	assert_int_equal(rf_ring_record_size(176), 256);
	assert_int_equal(rf_ring_record_size(177), 512);
	assert_int_equal(max, 16384);
	assert_int_equal(rf_ring_max_payload(1ull << 40), RF_RING_MAX_PAYLOAD);
	assert_int_equal(rf_ring_check_data_size(ds), 0);
	assert_int_equal(rf_ring_check_data_size(ds - 256), -EINVAL);
	assert_int_equal(rf_ring_check_data_size(ds + 100), -EINVAL);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds - 256), -EINVAL);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds + 100), -EINVAL);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds - 1, ds), -EINVAL);
	assert_null(r);
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);

	/* Refusals leave the state alone. */
	d.payload = payload;
	d.length = max + 1;
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -EMSGSIZE);
	d.length = max;
	assert_int_equal(
	    rf_ring_producer_encode(p, &d, buf, rf_ring_encode_buf_size(max) - 1, &img), -ENOBUFS);
	d.payload = NULL;
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -EINVAL);
	d.payload = payload;
	d.type = RF_RING_REC_PAD;
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -EINVAL);
	d.type = 0;
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -EINVAL);
	d.type = 77;
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -EINVAL);
	assert_int_equal(rf_ring_producer_tail(p), info.head_pos);
	assert_int_equal(rf_ring_producer_next_seq(p), info.head_seq);

	/* Three max records fit; the fourth needs a PAD and does not. */
	d.type = RF_RING_REC_DATA;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), 0);
		assert_int_equal(img.total_size, 16640);
		assert_int_equal(img.nseg, 1);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
	tail = rf_ring_producer_tail(p);
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), -ENOSPC);
	/* Consuming one makes exactly enough room for PAD + record. */
	assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
	assert_int_equal(rec.payload_len, max);
	assert_int_equal(rf_ring_consume(r, &rec), 0);
	assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), 0);
	assert_int_equal(img.pad_bytes, ds - (tail - info.head_pos) % ds);
	assert_int_equal(img.nseg, 3);
	assert_int_equal(rf_ring_producer_free(p), 0);
	assert_int_equal(rf_ring_write_local(r, &img), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rec.pad_bytes, i == 2 ? img.pad_bytes : 0);
		assert_memory_equal(rec.payload, payload, max);
		assert_int_equal(rec.volume_id, 9);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
	}
	assert_int_equal(rf_ring_peek(r, &rec, NULL), -EAGAIN);

	/* Payload-less records carry any length; zero-length DATA is fine. */
	{
		struct rf_ring_desc z = {
		    .type = RF_RING_REC_ZERO, .length = 0xffffffffu, .offset = 1ull << 50};
		struct rf_ring_desc e = {.type = RF_RING_REC_DATA, .length = 0};

		assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
		assert_int_equal(rf_ring_producer_encode(p, &z, buf, buf_len, &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
		assert_int_equal(rf_ring_producer_encode(p, &e, buf, buf_len, &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rec.type, RF_RING_REC_ZERO);
		assert_int_equal(rec.length, 0xffffffffu);
		assert_int_equal(rec.offset, 1ull << 50);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rec.type, RF_RING_REC_DATA);
		assert_int_equal(rec.payload_len, 0);
		assert_null(rec.payload);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
	}

	/* Head updates: misaligned or past the tail refused; older ignored. */
	tail = rf_ring_producer_tail(p);
	assert_int_equal(rf_ring_producer_update_head(p, tail + 256), -EINVAL);
	assert_int_equal(rf_ring_producer_update_head(p, tail - 100), -EINVAL);
	assert_int_equal(rf_ring_producer_update_head(p, tail), 0);
	assert_int_equal(rf_ring_producer_update_head(p, info.head_pos), 0);
	assert_int_equal(rf_ring_producer_head(p), tail);
	assert_int_equal(rf_ring_producer_free(p), ds);

	/* Consuming a view that is not at the head is refused. */
	assert_int_equal(rf_ring_consume(r, &rec), -EINVAL);

	/* Bad producer geometry. */
	rf_ring_producer_delete(&p);
	assert_null(p);
	rf_ring_producer_delete(&p); /* NULL-safe */
	info.data_size = ds + 1;
	assert_int_equal(rf_ring_producer_new(&p, &info), -EINVAL);
	info.data_size = ds;
	info.head_pos = 100;
	assert_int_equal(rf_ring_producer_new(&p, &info), -EINVAL);
	info.head_pos = 0;
	info.ring_id = 0;
	assert_int_equal(rf_ring_producer_new(&p, &info), -EINVAL);
	assert_null(p);
	rf_ring_close(&r);
	rf_ring_close(&r); /* NULL-safe */
	free(payload);
	free(buf);
	free(mem);
}

/* ---- segments: a PAD needs only its header and trailer written ---------- */

void test_pad_segments(void **state)
{
	uint64_t ds = RF_RING_MIN_DATA_SIZE;
	unsigned char *mem = mem_alloc(ds), *buf;
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;
	struct rf_ring_info info;
	struct rf_ring_image img;
	struct rf_ring_record rec;
	struct rf_ring_desc d = {.type = RF_RING_REC_DATA, .length = 10000, .offset = 4096};
	size_t buf_len = rf_ring_encode_buf_size(10000);
	unsigned char payload[10000];

	buf = malloc(buf_len);
	assert_non_null(buf);
	fill_bytes(42, payload, sizeof(payload));
	d.payload = payload;
	assert_int_equal(rf_ring_format_mem(&r, mem, RF_RING_HEADER_SIZE + ds, ds), 0);
	/* Garbage everywhere in the data area. */
	memset(mem + RF_RING_HEADER_SIZE, 0x5a, ds);
	assert_int_equal(rf_ring_begin_session(r, &info), 0);
	assert_int_equal(rf_ring_producer_new(&p, &info), 0);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), 0);
		assert_int_equal(img.nseg, 1);
		assert_int_equal(img.seg[0].file_off, RF_RING_HEADER_SIZE + (img.pos % ds));
		assert_int_equal(img.seg[0].len, 10240);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
		assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
		assert_int_equal(rf_ring_producer_update_head(p, rec.next_pos), 0);
	}
	/* 6 * 10240 = 61440: 4096 bytes left, the 7th record needs a PAD. */
	assert_int_equal(rf_ring_producer_encode(p, &d, buf, buf_len, &img), 0);
	assert_int_equal(img.nseg, 3);
	assert_int_equal(img.pad_bytes, 4096);
	assert_int_equal(img.seg[0].file_off, RF_RING_HEADER_SIZE + 61440);
	assert_int_equal(img.seg[0].len, RF_RING_REC_HDR_SIZE);
	assert_int_equal(img.seg[1].file_off, RF_RING_HEADER_SIZE + ds - RF_RING_REC_TRL_SIZE);
	assert_int_equal(img.seg[1].len, RF_RING_REC_TRL_SIZE);
	assert_int_equal(img.seg[2].file_off, RF_RING_HEADER_SIZE);
	assert_int_equal(img.seg[2].len, 10240);
	assert_int_equal(img.seq, info.head_seq + 7);
	/* The bytes between the PAD's header and trailer stay garbage. */
	assert_int_equal(rf_ring_write_local(r, &img), 0);
	assert_int_equal(mem[RF_RING_HEADER_SIZE + 61440 + 100], 0x5a);
	assert_int_equal(rf_ring_peek(r, &rec, NULL), 0);
	assert_int_equal(rec.pad_bytes, 4096);
	assert_int_equal(rec.pos, info.head_pos + 65536);
	assert_int_equal(rec.seq, info.head_seq + 7);
	assert_memory_equal(rec.payload, payload, sizeof(payload));
	assert_int_equal(rf_ring_consume(r, &rec), 0);

	/* Segments outside the data area are refused by the local writer. */
	img.seg[0].file_off = 100;
	assert_int_equal(rf_ring_write_local(r, &img), -EINVAL);
	img.seg[0].file_off = RF_RING_HEADER_SIZE + ds - 8;
	assert_int_equal(rf_ring_write_local(r, &img), -EINVAL);
	rf_ring_producer_delete(&p);
	rf_ring_close(&r);
	free(buf);
	free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_mem),      cmocka_unit_test(test_round_trip_tmp_file),
	    cmocka_unit_test(test_round_trip_shm_file), cmocka_unit_test(test_wrap_many_laps),
	    cmocka_unit_test(test_full_ring),           cmocka_unit_test(test_tiny_ring),
	    cmocka_unit_test(test_pad_segments),        cmocka_unit_test(test_stale_records),
	    cmocka_unit_test(test_record_fields),       cmocka_unit_test(test_header_corruption),
	    cmocka_unit_test(test_head_persisted),
	};

	rf_log_set_level(RF_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

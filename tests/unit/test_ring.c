/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the persistent ring: round trips, wrap-around with PAD,
 * full ring, tiny rings, stale records, sessions, segments, header
 * validation, file/tmpfs mappings.
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

/* ---- helpers ------------------------------------------------------------ */

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

/* Everything about the record produced under @key is a function of @key. */
static void make_desc(uint64_t key, uint32_t cap, struct rf_ring_desc *d)
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
static int produce_key(struct rf_ring_producer *p, uint64_t key, uint32_t cap, unsigned char *buf,
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

static void check_key(const struct rf_ring_record *rec, uint64_t key, uint32_t cap)
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

static void *mem_alloc(uint64_t data_size)
{
	void *m = aligned_alloc(4096, RF_RING_HEADER_SIZE + data_size);

	assert_non_null(m);
	memset(m, 0xA5, RF_RING_HEADER_SIZE + data_size);
	return m;
}

static char tmpdir_path[256];

static const char *make_tmpdir(const char *base)
{
	snprintf(tmpdir_path, sizeof(tmpdir_path), "%s/rf-ring-test-XXXXXX", base);
	assert_non_null(mkdtemp(tmpdir_path));
	return tmpdir_path;
}

/* Log capture: the last error/warning lines, concatenated. */
struct captured {
	char text[4096];
	int count;
};

static void capture_sink(void *ctx, enum rf_log_level level, const char *line)
{
	struct captured *c = ctx;
	size_t n = strlen(c->text);

	c->count++;
	snprintf(c->text + n, sizeof(c->text) - n, "%s\n", line);
}

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

static void test_round_trip_mem(void **state)
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

static void test_round_trip_tmp_file(void **state)
{
	round_trip_file("/tmp", 300);
}

static void test_round_trip_shm_file(void **state)
{
	struct stat sb;

	if (stat("/dev/shm", &sb) != 0 || !S_ISDIR(sb.st_mode))
		skip();
	round_trip_file("/dev/shm", 2000);
}

static void test_wrap_many_laps(void **state)
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

static void test_full_ring(void **state)
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

static void test_tiny_ring(void **state)
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

static void test_pad_segments(void **state)
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

/* ---- stale records: earlier laps, earlier sessions, other rings -------- */

static void write_trims(struct rf_ring *r, struct rf_ring_producer *p, unsigned n)
{
	unsigned char buf[512];
	struct rf_ring_image img;

	for (unsigned i = 0; i < n; i++) {
		struct rf_ring_desc d = {.type = RF_RING_REC_TRIM, .length = 512, .offset = i};

		assert_int_equal(rf_ring_producer_encode(p, &d, buf, sizeof(buf), &img), 0);
		assert_int_equal(rf_ring_write_local(r, &img), 0);
	}
}

static void test_stale_records(void **state)
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

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Recompute a record's CRC after tampering (header at @h, payload after). */
static void fix_rec_crc(unsigned char *h, uint32_t payload_len)
{
	uint32_t crc;

	put32(h + 60, 0);
	crc = rf_crc32c(0, h, 64);
	crc = rf_crc32c(crc, h + 64, payload_len);
	put32(h + 60, crc);
}

static void test_record_fields(void **state)
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

static void test_header_corruption(void **state)
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
static void test_head_persisted(void **state)
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

/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the hub core (librfhub) without sockets: the drain's
 * apply rules (DATA, ZERO and TRIM on an image file; a record out of the
 * volume's range; an unknown vol_id; a failed write; a failed fdatasync),
 * journal retention by time and by size (pit_tick), and point resolution:
 * which entries a point covers (pit_resolve_point, a test view's read
 * chain).
 *
 * One hub, one agent with a ring in a file, one volume; records are
 * written the way a shm producer writes them (rf_ring_write_local). IO
 * failures are injected by stubbing at link time (SPDK DEFINE_STUB style):
 * this binary is linked with --wrap=pwrite, --wrap=fdatasync and
 * --wrap=hub_wall_ms, so the hub core's calls come here first.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "apply.h"
#include "drain.h"
#include "journal.h"
#include "points.h"
#include "status.h"
#include "volstate.h"

#define VOL       (64u * 1024)
#define BLK       4096u
#define VOL_ID    7u
#define RING_SIZE (1u << 20)

/* ---- link-time stubs ----------------------------------------------------- */

ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
int64_t __wrap_hub_wall_ms(void);

static int fail_write_fd = -1; /* pwrite on it fails with EIO */
static int fail_sync_fd = -1;  /* fdatasync on it fails with EIO */
static int64_t wall_now = 1000000;

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (fd == fail_write_fd) {
		errno = EIO;
		return -1;
	}
	return __real_pwrite(fd, buf, n, off);
}

int __wrap_fdatasync(int fd)
{
	if (fd == fail_sync_fd) {
		errno = EIO;
		return -1;
	}
	return __real_fdatasync(fd);
}

int64_t __wrap_hub_wall_ms(void)
{
	return wall_now;
}

/* ---- fixture ------------------------------------------------------------- */

struct fixture {
	char dir[256];
	struct hub_config cfg;
	struct hub_vol_config vc;
	struct hub h;
	struct hub_agent *a;
	struct volume *v;
	struct rf_ring_producer *p;
	uint8_t *buf;
	size_t buf_len;
};

static struct fixture F;

static int setup(void **state)
{
	struct rf_ring_info info;

	(void)state;
	memset(&F, 0, sizeof(F));
	fail_write_fd = fail_sync_fd = -1;
	wall_now = 1000000;
	snprintf(F.dir, sizeof(F.dir), "%s/rf-hubcore-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(F.dir))
		return -1;
	F.cfg.ring_size = RING_SIZE;
	snprintf(F.cfg.state_dir, sizeof(F.cfg.state_dir), "%s", F.dir);
	snprintf(F.vc.name, sizeof(F.vc.name), "vol0");
	snprintf(F.vc.recovery, sizeof(F.vc.recovery), "%s/vol0.img", F.dir);
	F.h.cfg = &F.cfg;
	snprintf(F.h.rings_dir, sizeof(F.h.rings_dir), "%s", F.dir);
	snprintf(F.h.volumes_dir, sizeof(F.h.volumes_dir), "%s", F.dir);

	F.a = agent_get(&F.h, "agent1");
	if (!F.a || agent_ring_open(F.a, true) || rf_ring_begin_session(F.a->ring, &info) ||
	    rf_ring_producer_new(&F.p, &info))
		return -1;
	F.a->durable_pos = info.head_pos;
	F.a->durable_seq = info.head_seq;

	F.h.vols = calloc(1, sizeof(*F.h.vols));
	F.h.nvols = 1;
	F.v = &F.h.vols[0];
	F.v->hub = &F.h;
	F.v->cfg = &F.vc;
	F.v->fd = open(F.vc.recovery, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (F.v->fd < 0 || ftruncate(F.v->fd, VOL))
		return -1;
	F.v->size = VOL;
	F.v->has_state = true;
	F.v->vol_id = VOL_ID;
	F.v->owner = F.a;
	F.v->reported = true;
	snprintf(F.v->owner_id, sizeof(F.v->owner_id), "%s", F.a->id);

	F.buf_len = rf_ring_encode_buf_size(VOL);
	F.buf = malloc(F.buf_len);
	return F.buf ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[400];

	(void)state;
	if (F.v->test)
		testview_stop(F.v);
	if (F.v->jr) {
		journal_close(F.v->jr);
		free(F.v->jr);
	}
	close(F.v->fd);
	free(F.h.vols);
	rf_ring_producer_delete(&F.p);
	rf_ring_close(&F.a->ring);
	free(F.a);
	free(F.buf);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* The journal (retain_ms, retain_bytes) in front of the image. */
static void add_journal(uint64_t retain_ms, uint64_t retain_bytes)
{
	struct journal_params p = {.retain_ms = retain_ms, .retain_bytes = retain_bytes};
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/journal/vol0", F.dir);
	F.vc.journal_time_ms = retain_ms;
	F.vc.journal_size = retain_bytes;
	F.v->jr = calloc(1, sizeof(*F.v->jr));
	assert_non_null(F.v->jr);
	assert_int_equal(journal_open(F.v->jr, dir, &p), 0);
}

/* Produce one record into the agent's ring, written at @ts_ns (the agent's
 * clock); returns its sequence. */
static uint64_t put_at(uint16_t type, uint32_t vol_id, uint64_t off, uint32_t len, int byte,
                       uint64_t ts_ns)
{
	struct rf_ring_desc d = {
	    .type = type, .volume_id = vol_id, .offset = off, .length = len, .timestamp_ns = ts_ns};
	struct rf_ring_image img;
	uint8_t *pl = F.buf + RF_RING_REC_HDR_SIZE;

	if (type == RF_RING_REC_DATA) {
		memset(pl, byte, len);
		d.payload = pl;
	}
	assert_int_equal(rf_ring_producer_encode(F.p, &d, F.buf, F.buf_len, &img), 0);
	assert_int_equal(rf_ring_write_local(F.a->ring, &img), 0);
	return img.seq;
}

static uint64_t put(uint16_t type, uint32_t vol_id, uint64_t off, uint32_t len, int byte)
{
	return put_at(type, vol_id, off, len, byte, 0);
}

/* The record as drain_batch would see it, for apply_record. */
static struct rf_ring_record rec(uint64_t seq, uint16_t type, uint64_t off, uint32_t len,
                                 const void *payload)
{
	return (struct rf_ring_record){.seq = seq,
	                               .type = type,
	                               .volume_id = VOL_ID,
	                               .offset = off,
	                               .length = len,
	                               .payload = payload,
	                               .payload_len = type == RF_RING_REC_DATA ? len : 0};
}

/* Every byte of [off, +len) of @fd is @byte. */
static void assert_bytes(int fd, uint64_t off, uint32_t len, int byte)
{
	uint8_t b[BLK];

	while (len) {
		uint32_t n = len < BLK ? len : BLK;

		assert_int_equal(pread(fd, b, n, (off_t)off), (ssize_t)n);
		for (uint32_t i = 0; i < n; i++)
			if (b[i] != (uint8_t)byte)
				fail_msg("byte %llu is %#x, expected %#x",
				         (unsigned long long)(off + i), b[i], byte);
		off += n;
		len -= n;
	}
}

/* ---- the drain's apply rules --------------------------------------------- */

static void test_drain_data_zero_trim(void **state)
{
	struct drain_result res;
	uint64_t last;

	(void)state;
	put(RF_RING_REC_DATA, VOL_ID, 0, 4 * BLK, 0xaa);
	put(RF_RING_REC_ZERO, VOL_ID, BLK, BLK, 0);
	last = put(RF_RING_REC_TRIM, VOL_ID, 3 * BLK, BLK, 0);
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 3);
	assert_int_equal(res.applied, 3);
	assert_true(res.durable);
	assert_false(res.fence);
	assert_int_equal(F.a->durable_seq, last + 1); /* the next one to come */
	assert_int_equal(F.a->records, 3);
	assert_int_equal(F.v->records, 3);
	assert_false(F.v->touched); /* committed */
	assert_bytes(F.v->fd, 0, BLK, 0xaa);
	assert_bytes(F.v->fd, BLK, BLK, 0);
	assert_bytes(F.v->fd, 2 * BLK, BLK, 0xaa);
	assert_bytes(F.v->fd, 3 * BLK, BLK, 0);
	/* Nothing more: a second drain does nothing and publishes nothing. */
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	assert_false(res.durable);
}

static void test_drain_out_of_range(void **state)
{
	struct drain_result res;
	uint64_t durable = F.a->durable_seq, seq;

	(void)state;
	seq = put(RF_RING_REC_DATA, VOL_ID, VOL - BLK, 2 * BLK, 0x11);
	/* Offline: it stops there, counted once however often it is seen. */
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	assert_false(res.durable);
	assert_false(res.fence);
	assert_int_equal(F.a->durable_seq, durable);
	assert_int_equal(F.a->invalid_records, 1);
	assert_int_equal(F.v->invalid_records, 1);
	assert_true(F.a->stop_invalid);
	assert_int_equal(F.a->invalid_seq, seq);
	assert_non_null(strstr(F.a->last_error, "outside volume vol0"));
	assert_bytes(F.v->fd, VOL - BLK, BLK, 0);

	/* With a producer attached: it is to be fenced, and the record is
	 * skipped for good (the head moves past it, nothing is applied). */
	F.a->peer = (struct rf_fab_peer *)&F; /* only compared with NULL */
	assert_int_equal(drain_batch(F.a, DRAIN_LIVE, &res), 0);
	F.a->peer = NULL;
	assert_true(res.fence);
	assert_false(res.durable);
	assert_int_equal(F.a->invalid_records, 1);
	assert_int_equal(F.a->durable_seq, seq + 1);
	assert_true(F.a->need_drain);
	assert_bytes(F.v->fd, VOL - BLK, BLK, 0);
}

static void test_drain_unknown_vol_id(void **state)
{
	struct drain_result res;
	uint64_t durable = F.a->durable_seq;

	(void)state;
	put(RF_RING_REC_DATA, VOL_ID + 1, 0, BLK, 0x22);
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	assert_int_equal(F.a->invalid_records, 1);
	assert_int_equal(F.v->invalid_records, 0); /* no volume to count it on */
	assert_int_equal(F.a->durable_seq, durable);
	assert_non_null(strstr(F.a->last_error, "vol_id 8 is not a volume this agent owns"));
	/* It can never apply: dropped (counted once), the head moves past it. */
	assert_int_equal(drain_discard_invalid(F.a), 1);
	assert_int_equal(F.a->invalid_records, 1);
	assert_int_equal(F.a->durable_seq, durable + 1);
	assert_int_equal(drain_discard_invalid(F.a), 0);
	assert_bytes(F.v->fd, 0, BLK, 0);
}

static void test_drain_failed_write(void **state)
{
	struct drain_result res;
	uint64_t durable = F.a->durable_seq, seq;

	(void)state;
	seq = put(RF_RING_REC_DATA, VOL_ID, BLK, BLK, 0x33);
	fail_write_fd = F.v->fd;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	assert_false(res.durable);
	assert_true(F.a->drain_stuck);
	assert_int_equal(F.a->durable_seq, durable);
	assert_int_equal(F.a->records, 0);
	assert_non_null(strstr(F.a->last_error, "cannot apply record"));
	/* Before the retry time nothing is tried; after it, the same record. */
	fail_write_fd = -1;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 0);
	F.a->drain_retry_at = 0;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 1);
	assert_true(res.durable);
	assert_int_equal(F.a->durable_seq, seq + 1);
	assert_bytes(F.v->fd, BLK, BLK, 0x33);
}

static void test_drain_failed_fdatasync(void **state)
{
	struct drain_result res;
	uint64_t durable = F.a->durable_seq, seq;

	(void)state;
	seq = put(RF_RING_REC_DATA, VOL_ID, 0, BLK, 0x44);
	fail_sync_fd = F.v->fd;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), -EIO);
	assert_false(res.durable); /* nothing published */
	assert_true(F.a->drain_stuck);
	assert_int_equal(F.a->durable_seq, durable);
	assert_non_null(strstr(F.a->last_error, "fdatasync"));
	/* The head went back: the batch is written again, not skipped. */
	fail_sync_fd = -1;
	F.a->drain_retry_at = 0;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 1);
	assert_true(res.durable);
	assert_int_equal(F.a->durable_seq, seq + 1);
	assert_int_equal(F.a->records, 2); /* applied twice: records are idempotent */
}

static void test_drain_to_journal(void **state)
{
	struct drain_result res;
	struct journal_info in;
	uint64_t seq;

	(void)state;
	add_journal(60000, 1ull << 30);
	seq = put(RF_RING_REC_DATA, VOL_ID, 0, BLK, 0x55);
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 1);
	assert_true(res.durable);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 1);
	assert_int_equal(in.newest_seq, seq);
	assert_int_equal(in.newest_time_ms, wall_now);
	assert_bytes(F.v->fd, 0, BLK, 0); /* not in the image yet */
	/* A failed journal sync publishes nothing either. */
	put(RF_RING_REC_DATA, VOL_ID, 0, BLK, 0x56);
	fail_sync_fd = F.v->jr->segs[0].fd;
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), -EIO);
	assert_false(res.durable);
	assert_int_equal(F.a->durable_seq, seq + 1);
}

/* ---- retention ----------------------------------------------------------- */

static void test_retention_time(void **state)
{
	const uint8_t pl[BLK] = {0x61};
	struct journal_info in;
	struct rf_ring_record r;

	(void)state;
	add_journal(1000, 1ull << 30);
	for (uint64_t s = 1; s <= 4; s++) {
		r = rec(s, RF_RING_REC_DATA, (s - 1) * BLK, BLK, pl);
		assert_int_equal(apply_record(F.v->fd, F.v->jr, &r, 10000 + 500 * (int64_t)s), 0);
	}
	assert_int_equal(apply_commit(F.v->fd, F.v->jr), 0);
	wall_now = 10000 + 500 * 2 + 1000; /* seq 1 and 2 are 1 s old */
	pit_tick(&F.h, 0);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 2);
	assert_int_equal(in.oldest_seq, 2);
	assert_int_equal(in.oldest_time_ms, 11000);
	assert_bytes(F.v->fd, 0, 1, 0x61);
	assert_bytes(F.v->fd, BLK, 1, 0x61);
	assert_bytes(F.v->fd, 2 * BLK, 1, 0);
	/* A failover test pauses it; a failed-over volume is left alone. */
	assert_int_equal(testview_start(F.v, 4, 0, (char[128]){0}, 128), 0);
	wall_now += 60000;
	pit_tick(&F.h, 0);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 2);
	testview_stop(F.v);
	F.v->failed_over = true;
	pit_tick(&F.h, 0);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 2);
	F.v->failed_over = false;
	pit_tick(&F.h, 0);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 0);
	assert_int_equal(in.oldest_seq, 4);
}

static void test_retention_size(void **state)
{
	const uint8_t pl[BLK] = {0x62};
	uint64_t each = JOURNAL_HDR_SIZE + BLK;
	struct journal_info in;
	struct rf_ring_record r;

	(void)state;
	add_journal(3600 * 1000, 2 * each); /* room for two entries */
	for (uint64_t s = 1; s <= 5; s++) {
		r = rec(s, RF_RING_REC_DATA, (s - 1) * BLK, BLK, pl);
		assert_int_equal(apply_record(F.v->fd, F.v->jr, &r, wall_now), 0);
	}
	assert_int_equal(apply_commit(F.v->fd, F.v->jr), 0);
	pit_tick(&F.h, 0);
	journal_get_info(F.v->jr, &in);
	assert_int_equal(in.entries, 2);
	assert_int_equal(in.bytes, 2 * each);
	assert_int_equal(in.oldest_seq, 3);
	assert_bytes(F.v->fd, 2 * BLK, 1, 0x62);
	assert_bytes(F.v->fd, 3 * BLK, 1, 0);
}

/* ---- points -------------------------------------------------------------- */

/* seq 1..3 at times 1000, 2000, 3000: DATA 0xa1, DATA 0xb2, ZERO over block 0. */
static void three_points(void)
{
	const uint8_t a[BLK] = {[0 ... BLK - 1] = 0xa1}, b[BLK] = {[0 ... BLK - 1] = 0xb2};
	struct rf_ring_record r;

	add_journal(3600 * 1000, 1ull << 30);
	r = rec(1, RF_RING_REC_DATA, 0, BLK, a);
	assert_int_equal(apply_record(F.v->fd, F.v->jr, &r, 1000), 0);
	r = rec(2, RF_RING_REC_DATA, 0, BLK, b);
	assert_int_equal(apply_record(F.v->fd, F.v->jr, &r, 2000), 0);
	r = rec(3, RF_RING_REC_ZERO, 0, BLK / 2, NULL);
	assert_int_equal(apply_record(F.v->fd, F.v->jr, &r, 3000), 0);
	assert_int_equal(apply_commit(F.v->fd, F.v->jr), 0);
}

static int resolve(uint8_t at, uint64_t value, uint64_t *seq, int64_t *tm)
{
	struct rf_ctl_admin m = {.at = at, .value = value};
	char why[256];

	*seq = 0;
	*tm = 0;
	return pit_resolve_point(F.v, &m, seq, tm, why, sizeof(why));
}

static void test_point_resolution(void **state)
{
	uint64_t seq;
	int64_t tm;

	(void)state;
	three_points();
	assert_int_equal(resolve(RF_AT_LATEST, 0, &seq, &tm), 0);
	assert_int_equal(seq, 3);
	assert_int_equal(tm, 3000);
	/* A time covers every entry at or before it. */
	assert_int_equal(resolve(RF_AT_TIME, 2500, &seq, &tm), 0);
	assert_int_equal(seq, 2);
	assert_int_equal(tm, 2000);
	assert_int_equal(resolve(RF_AT_TIME, 2000, &seq, &tm), 0);
	assert_int_equal(seq, 2);
	assert_int_equal(resolve(RF_AT_TIME, 99999, &seq, &tm), 0);
	assert_int_equal(seq, 3);
	/* Before the first entry, with nothing applied: the image's time is unknown. */
	assert_int_equal(resolve(RF_AT_TIME, 999, &seq, &tm), -ERANGE);
	assert_int_equal(resolve(RF_AT_SEQ, 1, &seq, &tm), 0);
	assert_int_equal(tm, 1000);
	assert_int_equal(resolve(RF_AT_SEQ, 4, &seq, &tm), -ERANGE);
	/* Once seq 1 is applied, it is the oldest point; older ones are gone. */
	wall_now = 1000 + 3600 * 1000;
	pit_tick(&F.h, 0);
	assert_int_equal(resolve(RF_AT_TIME, 1500, &seq, &tm), 0);
	assert_int_equal(seq, 1);
	assert_int_equal(resolve(RF_AT_TIME, 999, &seq, &tm), -ERANGE);
	assert_int_equal(resolve(RF_AT_SEQ, 0, &seq, &tm), -ERANGE);
	/* Without a journal only the latest point exists: the owner's durable one. */
	journal_close(F.v->jr);
	free(F.v->jr);
	F.v->jr = NULL;
	F.a->durable_seq = 42;
	assert_int_equal(resolve(RF_AT_SEQ, 1, &seq, &tm), -EINVAL);
	assert_int_equal(resolve(RF_AT_LATEST, 0, &seq, &tm), 0);
	assert_int_equal(seq, 42);
}

/* ---- the three positions and their lags (status_agent_lags) -------------- */

static void assert_lag(const struct agent_lag *l, uint64_t recs, uint64_t bytes, uint64_t age_ms)
{
	assert_int_equal(l->records, recs);
	assert_int_equal(l->bytes, bytes);
	assert_true(l->age_known);
	assert_int_equal(l->age_ms, age_ms);
}

/*
 * Rule pmem: three records land (written 900, 600 and 300 ms ago), the
 * first two are made durable in the ring, none applied: landed -> durable
 * is the third, durable -> applied the first two, each with the age of its
 * oldest record; then the drain applies everything and every lag is 0.
 */
static void test_position_lags(void **state)
{
	struct drain_result res;
	struct agent_lags l;
	uint64_t ms = 1000000, s1, s3, rs = rf_ring_record_size(BLK);

	(void)state;
	rf_ring_force_pmem(F.a->ring);
	F.a->ring_pmem = true;
	wall_now = 5000;
	status_agent_lags(F.a, &l);
	assert_lag(&l.total, 0, 0, 0);
	s1 = put_at(RF_RING_REC_DATA, VOL_ID, 0, BLK, 1, 4100 * ms);
	put_at(RF_RING_REC_DATA, VOL_ID, BLK, BLK, 2, 4400 * ms);
	s3 = put_at(RF_RING_REC_DATA, VOL_ID, 2 * BLK, BLK, 3, 4700 * ms);
	F.a->landed_valid = true;
	F.a->landed_seq = s3;
	status_agent_lags(F.a, &l);
	assert_lag(&l.total, 3, 3 * rs, 900);
	assert_lag(&l.durable, 3, 3 * rs, 900);
	assert_lag(&l.apply, 0, 0, 0);
	assert_int_equal(rf_ring_make_durable(F.a->ring, s1 + 1, NULL), 2);
	assert_int_equal(agent_durable_seq(F.a), s1 + 2);
	status_agent_lags(F.a, &l);
	assert_lag(&l.total, 3, 3 * rs, 900);
	assert_lag(&l.durable, 1, rs, 300);
	assert_lag(&l.apply, 2, 2 * rs, 900);
	/* A record without a timestamp: its age is unknown, not 0. */
	put_at(RF_RING_REC_DATA, VOL_ID, 3 * BLK, BLK, 4, 0);
	F.a->landed_seq = s3 + 1;
	assert_int_equal(rf_ring_make_durable(F.a->ring, s3 + 1, NULL), 2);
	status_agent_lags(F.a, &l);
	assert_int_equal(l.durable.records, 0);
	assert_true(l.durable.age_known);
	assert_int_equal(l.apply.records, 4);
	assert_int_equal(l.apply.age_ms, 900);
	/* The drain applies all four: nothing lags. */
	assert_int_equal(drain_batch(F.a, DRAIN_OFFLINE, &res), 4);
	status_agent_lags(F.a, &l);
	assert_lag(&l.total, 0, 0, 0);
	assert_lag(&l.durable, 0, 0, 0);
	assert_lag(&l.apply, 0, 0, 0);
}

static void test_view_covers_its_point(void **state)
{
	uint8_t out[BLK], w[100];
	char why[256];

	(void)state;
	three_points();
	/* At seq 1 the view shows the first entry only. */
	assert_int_equal(testview_start(F.v, 1, 1000, why, sizeof(why)), 0);
	assert_true(F.v->jr->paused);
	assert_int_equal(apply_view_read(F.v->test, 0, BLK, out), 0);
	assert_int_equal(out[0], 0xa1);
	assert_int_equal(out[BLK - 1], 0xa1);
	testview_stop(F.v);
	assert_false(F.v->jr->paused);
	/* At seq 3: the ZERO over the first half, the second DATA after it. */
	assert_int_equal(testview_start(F.v, 3, 3000, why, sizeof(why)), 0);
	assert_int_equal(apply_view_read(F.v->test, 0, BLK, out), 0);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[BLK / 2 - 1], 0);
	assert_int_equal(out[BLK / 2], 0xb2);
	/* A partial write lands in the scratch over what the view showed. */
	memset(w, 0x77, sizeof(w));
	assert_int_equal(apply_view_write(F.v->test, BLK / 2 + 10, sizeof(w), w), 0);
	assert_int_equal(apply_view_read(F.v->test, 0, BLK, out), 0);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[BLK / 2 + 9], 0xb2);
	assert_int_equal(out[BLK / 2 + 10], 0x77);
	assert_int_equal(out[BLK / 2 + 110], 0xb2);
	testview_stop(F.v);
	/* The image and the journal were never written. */
	assert_bytes(F.v->fd, 0, BLK, 0);
	assert_int_equal(journal_read(F.v->jr, F.v->fd, 3, BLK / 2 + 10, out, 1), 0);
	assert_int_equal(out[0], 0xb2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_drain_data_zero_trim, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_unknown_vol_id, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_failed_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_failed_fdatasync, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_drain_to_journal, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_time, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retention_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_point_resolution, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_view_covers_its_point, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_position_lags, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

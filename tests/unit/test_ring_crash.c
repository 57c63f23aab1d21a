/* SPDX-License-Identifier: MIT */
/*
 * Random crash points: a forked child produces records into a file-backed
 * ring (and, in one variant, consumes some of them, advancing the head),
 * reporting each sequence after it is persisted; the parent SIGKILLs it at
 * a random moment, reopens the ring, scans and checks that the valid prefix
 * is contiguous, that every record is exactly what the child wrote, and
 * that everything reported persisted is in it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "repfabric/log.h"
#include "repfabric/ring.h"

#define CRASH_DS  (1024u * 1024u)
#define CRASH_CAP 16384u

enum { MSG_PERSISTED = 1, MSG_CONSUMED = 2, MSG_READY = 3 };

struct msg {
	uint64_t kind;
	uint64_t value; /* PERSISTED: the record's seq; CONSUMED: the durable head_seq */
};

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
static void make_desc(uint64_t key, struct rf_ring_desc *d)
{
	uint64_t h = mix64(key);

	memset(d, 0, sizeof(*d));
	d->volume_id = (uint32_t)(h >> 8) & 0xff;
	d->offset = (mix64(key ^ 1) % 100000) * 512;
	d->timestamp_ns = key * 3 + 1;
	if (h % 16 == 0) {
		d->type = (h >> 4) & 1 ? RF_RING_REC_ZERO : RF_RING_REC_TRIM;
		d->length = (uint32_t)((h >> 16) % 64 + 1) * 4096;
		return;
	}
	d->type = RF_RING_REC_DATA;
	d->length = (uint32_t)(mix64(key ^ 2) % ((h >> 5) % 4 ? 4097 : CRASH_CAP + 1));
}

/* ---- the child ---------------------------------------------------------- */

static void child_fail(int code)
{
	_exit(code);
}

static void send_msg(int fd, uint64_t kind, uint64_t value)
{
	struct msg m = {kind, value};

	if (write(fd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		child_fail(3);
}

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

/* A slow transport: segments in small chunks, in random order, then persisted. */
static int write_chunked(struct rf_ring *r, const struct rf_ring_image *img, unsigned *seed)
{
	unsigned char *base = rf_ring_base(r);

	for (unsigned s = 0; s < img->nseg; s++) {
		const struct rf_ring_seg *g = &img->seg[s];
		uint32_t chunk = 64u << (rand_r(seed) % 4), n = (g->len + chunk - 1) / chunk;
		uint32_t first = (uint32_t)rand_r(seed) % n;

		/* Rotate the chunk order so the tail often lands before the head. */
		for (uint32_t i = 0; i < n; i++) {
			uint32_t c = (first + i) % n, off = c * chunk;
			uint32_t len = g->len - off < chunk ? g->len - off : chunk;

			memcpy(base + g->file_off + off, (const unsigned char *)g->src + off, len);
			if (rand_r(seed) % 2 == 0)
				spin((unsigned)rand_r(seed) % 4000);
		}
	}
	for (unsigned s = 0; s < img->nseg; s++) {
		int ret = rf_ring_persist(r, base + img->seg[s].file_off, img->seg[s].len);

		if (ret)
			return ret;
	}
	return 0;
}

static void child_consume(struct rf_ring *r, struct rf_ring_producer *p, int fd, unsigned *seed)
{
	struct rf_ring_record rec;
	uint64_t head_seq;

	for (unsigned i = (unsigned)rand_r(seed) % 4 + 1; i > 0; i--) {
		if (rf_ring_peek(r, &rec, NULL) != 0)
			child_fail(4);
		if (rf_ring_consume(r, &rec) != 0)
			child_fail(5);
		rf_ring_head(r, NULL, &head_seq);
		send_msg(fd, MSG_CONSUMED, head_seq);
		if (rf_ring_producer_update_head(p, rec.next_pos) != 0)
			child_fail(6);
		if (rf_ring_producer_tail(p) == rec.next_pos)
			break;
	}
}

static void child_main(const char *path, const struct rf_ring_info *info, int fd, bool consume,
                       unsigned seed)
{
	size_t buf_len = rf_ring_encode_buf_size(CRASH_CAP);
	unsigned char *buf = malloc(buf_len);
	struct rf_ring *r = NULL;
	struct rf_ring_producer *p = NULL;

	if (!buf || rf_ring_open(&r, path) != 0 || rf_ring_producer_new(&p, info) != 0)
		child_fail(2);
	send_msg(fd, MSG_READY, 0);
	for (;;) {
		uint64_t key = rf_ring_producer_next_seq(p);
		struct rf_ring_image img;
		struct rf_ring_desc d;
		int ret;

		make_desc(key, &d);
		if (d.type == RF_RING_REC_DATA) {
			fill_bytes(key, buf + RF_RING_REC_HDR_SIZE, d.length);
			d.payload = buf + RF_RING_REC_HDR_SIZE;
		}
		ret = rf_ring_producer_encode(p, &d, buf, buf_len, &img);
		if (ret == -ENOSPC) {
			if (!consume)
				for (;;)
					pause(); /* full: wait for the kill */
			child_consume(r, p, fd, &seed);
			continue;
		}
		if (ret)
			child_fail(7);
		if (rand_r(&seed) % 3 != 0)
			ret = write_chunked(r, &img, &seed);
		else
			ret = rf_ring_write_local(r, &img);
		if (ret)
			child_fail(8);
		send_msg(fd, MSG_PERSISTED, img.seq);
		if (consume && rand_r(&seed) % 3 == 0)
			child_consume(r, p, fd, &seed);
		if (rand_r(&seed) % 8 == 0)
			spin((unsigned)rand_r(&seed) % 20000);
	}
}

/* ---- the parent --------------------------------------------------------- */

struct crash_stats {
	uint64_t iterations, records, reported, torn_stops;
	uint64_t stops[RF_RING_ST_FULL + 1];
};

static void check_record(const struct rf_ring_record *rec, unsigned char *want)
{
	uint64_t key = rec->seq - (rec->pad_bytes ? 1 : 0);
	struct rf_ring_desc d;

	make_desc(key, &d);
	assert_int_equal(rec->type, d.type);
	assert_int_equal(rec->volume_id, d.volume_id);
	assert_int_equal(rec->offset, d.offset);
	assert_int_equal(rec->length, d.length);
	assert_int_equal(rec->timestamp_ns, d.timestamp_ns);
	if (d.type == RF_RING_REC_DATA) {
		assert_int_equal(rec->payload_len, d.length);
		fill_bytes(key, want, d.length);
		if (d.length)
			assert_memory_equal(rec->payload, want, d.length);
	} else {
		assert_int_equal(rec->payload_len, 0);
	}
}

/*
 * After a crash: reopen, scan, check the prefix against the child's
 * reports and contents, and drain it (the hub applying the records).
 */
static void verify_after_crash(const char *path, const struct msg *msgs, size_t nmsg,
                               struct crash_stats *st)
{
	struct rf_ring *r = NULL;
	struct rf_ring_scan_result res;
	struct rf_ring_record rec;
	unsigned char *want = malloc(CRASH_CAP);
	uint64_t head_pos, head_seq, n = 0, max_consumed = 0, pos, seq;

	assert_non_null(want);
	assert_int_equal(rf_ring_open(&r, path), 0);
	rf_ring_head(r, &head_pos, &head_seq);
	rf_ring_scan(r, &res);
	assert_int_equal(res.start_pos, head_pos);
	assert_int_equal(res.start_seq, head_seq);
	st->stops[res.stop.status]++;
	if (res.stop.status != RF_RING_ST_END && res.stop.status != RF_RING_ST_STALE &&
	    res.stop.status != RF_RING_ST_FULL)
		st->torn_stops++;

	/* Everything reported persisted is consumed or in the prefix. */
	for (size_t i = 0; i < nmsg; i++) {
		if (msgs[i].kind == MSG_PERSISTED) {
			if (msgs[i].value >= res.end_seq)
				fail_msg(
				    "seq %llu reported persisted, prefix ends at %llu (%s: %s)",
				    (unsigned long long)msgs[i].value,
				    (unsigned long long)res.end_seq,
				    rf_ring_status_name(res.stop.status), res.stop.reason);
			st->reported++;
		} else if (msgs[i].value > max_consumed) {
			max_consumed = msgs[i].value;
		}
	}
	/* The durable head is at least the last one reported. */
	assert_true(head_seq >= max_consumed);

	/* Walk the prefix: contiguous, and exactly what the child wrote. */
	pos = head_pos;
	seq = head_seq;
	while (rf_ring_peek(r, &rec, NULL) == 0) {
		assert_int_equal(rec.start_pos, pos);
		assert_int_equal(rec.seq, seq + (rec.pad_bytes ? 1 : 0));
		check_record(&rec, want);
		assert_int_equal(rf_ring_consume(r, &rec), 0);
		pos = rec.next_pos;
		seq = rec.next_seq;
		n++;
	}
	assert_int_equal(n, res.records);
	/* A trailing lone PAD stays in the prefix until begin_session consumes it. */
	assert_true(pos == res.end_pos || res.pads > 0);
	st->records += n;
	rf_ring_close(&r);
	free(want);
}

static void run_crashes(bool consume, unsigned iterations, unsigned seed)
{
	char dir[256], path[320];
	struct rf_ring *r = NULL;
	struct crash_stats st = {0};
	struct msg *msgs = malloc(sizeof(*msgs) * 65536);
	struct stat sb;
	struct timespec t0, t1;

	assert_non_null(msgs);
	snprintf(dir, sizeof(dir), "%s/rf-ring-crash-XXXXXX",
	         stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ring", dir);
	assert_int_equal(rf_ring_create(&r, path, CRASH_DS), 0);
	rf_ring_close(&r);
	srand(seed);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned it = 0; it < iterations; it++) {
		struct rf_ring_info info;
		size_t nmsg = 0;
		int fds[2], status;
		pid_t pid;
		ssize_t got;

		/* The hub (re)starts: open, begin a producer session. */
		assert_int_equal(rf_ring_open(&r, path), 0);
		assert_int_equal(rf_ring_begin_session(r, &info), 0);
		rf_ring_close(&r);
		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			child_main(path, &info, fds[1], consume, seed * 7919u + it);
			_exit(1);
		}
		close(fds[1]);
		/* The crash point counts from the first record the child can
		 * write, not from the fork: a slow start (a loaded machine, a
		 * sanitizer) must not leave every crash before any record. */
		got = read(fds[0], msgs, sizeof(*msgs));
		assert_int_equal(got, (ssize_t)sizeof(*msgs));
		assert_int_equal(msgs[0].kind, MSG_READY);
		usleep((useconds_t)(rand() % 1500));
		assert_int_equal(kill(pid, SIGKILL), 0);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			fail_msg("child exited with status %d",
			         WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		while ((got = read(fds[0], msgs + nmsg, sizeof(*msgs) * (65536 - nmsg))) > 0)
			nmsg += (size_t)got / sizeof(*msgs);
		close(fds[0]);
		verify_after_crash(path, msgs, nmsg, &st);
		st.iterations++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("    %s: %llu crashes, %llu records checked, %llu reported persisted, "
	              "%llu stopped inside a record, %.2f s\n",
	              consume ? "producer+consumer" : "producer", (unsigned long long)st.iterations,
	              (unsigned long long)st.records, (unsigned long long)st.reported,
	              (unsigned long long)st.torn_stops,
	              (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	for (int s = RF_RING_ST_OK; s <= RF_RING_ST_FULL; s++)
		if (st.stops[s])
			print_message("      stop %-9s %llu\n",
			              rf_ring_status_name((enum rf_ring_status)s),
			              (unsigned long long)st.stops[s]);
	assert_true(st.records > 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(msgs);
}

static void test_crash_producer(void **state)
{
	run_crashes(false, 250, 17);
}

static void test_crash_producer_consumer(void **state)
{
	run_crashes(true, 200, 23);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crash_producer),
	    cmocka_unit_test(test_crash_producer_consumer),
	};

	rf_log_set_level(RF_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for rephubd's journal (hub/journal.c), against a reference
 * model that keeps the whole volume at every point: append and views at
 * every point, retention by time and by size, rebuild after a clean close,
 * after a torn tail and after a CRC mismatch, drop-after + forced apply
 * (failover), segment rolling and deletion, duplicate sequences.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"
#include "repfabric/ring.h"

#define VOL   (64u * 1024)
#define NREC  160
#define T0    1000000
#define TSTEP 10

struct fixture {
	char dir[256];
	char jdir[300];
	char img[300];
	int img_fd;
	uint8_t *model; /* (NREC + 1) * VOL: the volume after seq 0..NREC */
	struct journal j;
	struct journal_params p;
};

static struct fixture F;

static uint32_t rnd_state = 12345;

static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

static uint8_t *model_at(uint64_t seq)
{
	return F.model + seq * VOL;
}

static void rm_rf(const char *dir)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fail_msg("cannot remove %s", dir);
}

static int setup(void **state)
{
	(void)state;
	memset(&F, 0, sizeof(F));
	snprintf(F.dir, sizeof(F.dir), "%s/rf-journal-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(F.dir))
		return -1;
	snprintf(F.jdir, sizeof(F.jdir), "%s/journal/vol", F.dir);
	snprintf(F.img, sizeof(F.img), "%s/vol.img", F.dir);
	F.img_fd = open(F.img, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (F.img_fd < 0 || ftruncate(F.img_fd, VOL))
		return -1;
	F.model = calloc(NREC + 1, VOL);
	F.p.retain_ms = 3600 * 1000;
	F.p.retain_bytes = 1ull << 30;
	F.p.segment_bytes = 96 * 1024; /* several segments */
	return F.model ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	journal_close(&F.j);
	close(F.img_fd);
	free(F.model);
	rm_rf(F.dir);
	return 0;
}

/* Append NREC random records (seq 1..NREC), building the model. */
static void fill(void)
{
	uint8_t payload[8192];

	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	for (uint64_t seq = 1; seq <= NREC; seq++) {
		uint32_t len = 512 * (1 + rnd() % 16);
		uint64_t off = 512 * (uint64_t)(rnd() % ((VOL - len) / 512 + 1));
		uint8_t type = rnd() % 8 == 0   ? RF_RING_REC_ZERO
		               : rnd() % 8 == 0 ? RF_RING_REC_TRIM
		                                : RF_RING_REC_DATA;

		for (uint32_t i = 0; i < len; i++)
			payload[i] = (uint8_t)rnd();
		memcpy(model_at(seq), model_at(seq - 1), VOL);
		if (type == RF_RING_REC_DATA)
			memcpy(model_at(seq) + off, payload, len);
		else
			memset(model_at(seq) + off, 0, len);
		assert_int_equal(journal_append(&F.j, seq, T0 + (int64_t)seq * TSTEP, type, off,
		                                len, payload, type == RF_RING_REC_DATA ? len : 0),
		                 0);
	}
	assert_int_equal(journal_sync(&F.j), 0);
}

/* Every point from @from on reads as the model, whole and in odd pieces. */
static void check_views_to(uint64_t from, uint64_t to)
{
	static uint8_t buf[VOL];

	for (uint64_t seq = from; seq <= to; seq++) {
		assert_int_equal(journal_read(&F.j, F.img_fd, seq, 0, buf, VOL), 0);
		assert_memory_equal(buf, model_at(seq), VOL);
		for (int k = 0; k < 4; k++) {
			uint32_t off = rnd() % VOL, len = 1 + rnd() % (VOL - off);

			assert_int_equal(journal_read(&F.j, F.img_fd, seq, off, buf, len), 0);
			assert_memory_equal(buf, model_at(seq) + off, len);
		}
	}
	if (from > 0)
		assert_int_equal(journal_read(&F.j, F.img_fd, from - 1, 0, buf, 512), -ERANGE);
}

static void check_views(uint64_t from)
{
	check_views_to(from, NREC);
}

static void check_image(uint64_t seq)
{
	static uint8_t buf[VOL];

	assert_int_equal(pread(F.img_fd, buf, VOL, 0), VOL);
	assert_memory_equal(buf, model_at(seq), VOL);
}

static void test_append_and_views(void **state)
{
	struct journal_info info;

	setup(state);
	fill();
	journal_get_info(&F.j, &info);
	assert_int_equal(info.entries, NREC);
	assert_true(info.segments > 2);
	assert_int_equal(info.oldest_seq, 0);
	assert_int_equal(info.newest_seq, NREC);
	check_views(0);
	/* Times: before the first entry the image's time is unknown. */
	{
		uint64_t seq = 0;

		assert_int_equal(journal_point_at(&F.j, T0, &seq), -ERANGE);
		assert_int_equal(journal_point_at(&F.j, T0 + TSTEP, &seq), 0);
		assert_int_equal(seq, 1);
		assert_int_equal(journal_point_at(&F.j, T0 + 5 * TSTEP + 3, &seq), 0);
		assert_int_equal(seq, 5);
	}
	/* A record seen again after a crash is skipped. */
	assert_int_equal(journal_append(&F.j, NREC, 0, RF_RING_REC_ZERO, 0, 512, NULL, 0), 1);
	/* Nonsense is refused. */
	assert_int_equal(journal_append(&F.j, NREC + 1, 0, 9, 0, 512, NULL, 0), -EINVAL);
	assert_int_equal(journal_append(&F.j, NREC + 1, 0, RF_RING_REC_DATA, 0, 512, NULL, 0),
	                 -EINVAL);
	teardown(state);
}

static void test_retention_time(void **state)
{
	uint64_t seq;

	setup(state);
	F.p.retain_ms = 500;
	fill();
	/* At T0 + 1000 + 500, entries with time <= T0 + 1000 (seq <= 100) are due. */
	assert_int_equal(journal_retire(&F.j, F.img_fd, T0 + 1500, false, 0, UINT64_MAX), 100);
	check_image(100);
	check_views(100);
	assert_int_equal(journal_point_at(&F.j, T0 + 1234, &seq), 0);
	assert_int_equal(seq, 123);
	assert_int_equal(journal_point_at(&F.j, T0 + 999, &seq), -ERANGE);
	assert_int_equal(journal_point_at(&F.j, T0 + 99999, &seq), 0);
	assert_int_equal(seq, NREC);
	/* Paused (a failover test runs): nothing more is applied. */
	F.j.paused = true;
	assert_int_equal(journal_retire(&F.j, F.img_fd, T0 + 99999, false, 0, UINT64_MAX), 0);
	F.j.paused = false;
	/* A small batch limit applies a few at a time. */
	assert_true(journal_retire(&F.j, F.img_fd, T0 + 99999, false, 0, 1) == 1);
	check_image(101);
	/* Reopen: the image point and the rest come back. */
	journal_close(&F.j);
	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	check_views(101);
	teardown(state);
}

static void test_retention_size(void **state)
{
	struct journal_info info;

	setup(state);
	F.p.retain_bytes = 100 * 1024;
	fill();
	assert_true(journal_retire(&F.j, F.img_fd, T0, false, 0, UINT64_MAX) > 0);
	journal_get_info(&F.j, &info);
	assert_true(info.bytes <= 100 * 1024);
	check_image(info.oldest_seq);
	check_views(info.oldest_seq);
	teardown(state);
}

/* The newest segment's file. */
static void last_segment(char *path, size_t len)
{
	snprintf(path, len, "%s/%016llx.seg", F.jdir,
	         (unsigned long long)F.j.segs[F.j.nsegs - 1].first_seq);
}

static void test_torn_tail(void **state)
{
	char path[400];
	struct stat st;
	int fd;

	setup(state);
	fill();
	journal_retire(&F.j, F.img_fd, T0 + 1500, true, 40, UINT64_MAX);
	last_segment(path, sizeof(path));
	journal_close(&F.j);
	/* Cut the last entry in half. */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 100), 0);
	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	assert_int_equal(F.j.n - F.j.head, NREC - 41);
	assert_int_equal(F.j.last_seq, NREC - 1);
	check_image(40);
	for (uint64_t s = 40; s < NREC; s++) {
		static uint8_t buf[VOL];

		assert_int_equal(journal_read(&F.j, F.img_fd, s, 0, buf, VOL), 0);
		assert_memory_equal(buf, model_at(s), VOL);
	}
	/* Appending goes on after the cut: the record comes again. */
	{
		static uint8_t buf[VOL];
		uint8_t pl[512];

		memset(pl, 0x77, sizeof(pl));
		assert_int_equal(
		    journal_append(&F.j, NREC, T0 + 5000, RF_RING_REC_DATA, 0, 512, pl, 512), 0);
		assert_int_equal(journal_sync(&F.j), 0);
		journal_close(&F.j);
		assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
		assert_int_equal(journal_read(&F.j, F.img_fd, NREC, 0, buf, VOL), 0);
		assert_memory_equal(buf, pl, 512);
		assert_memory_equal(buf + 512, model_at(NREC - 1) + 512, VOL - 512);
	}
	/* Garbage after the last entry (a torn header). */
	journal_close(&F.j);
	fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "RFJEgarbage", 11), 11);
	close(fd);
	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	assert_int_equal(F.j.last_seq, NREC);
	teardown(state);
}

static void test_crc_mismatch(void **state)
{
	char path[400];
	uint64_t first;
	size_t before;
	int fd;
	uint8_t b;

	setup(state);
	fill();
	last_segment(path, sizeof(path));
	first = F.j.segs[F.j.nsegs - 1].first_seq;
	before = F.j.n;
	journal_close(&F.j);
	/* Flip one payload byte of the second entry of the last segment. */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	{
		uint8_t hdr[JOURNAL_HDR_SIZE];
		uint32_t plen;
		off_t second;

		assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
		plen = (uint32_t)hdr[12] | (uint32_t)hdr[13] << 8 | (uint32_t)hdr[14] << 16;
		second = JOURNAL_HDR_SIZE + plen;
		assert_int_equal(pread(fd, &b, 1, second + 24), 1); /* its time: CRC */
		b ^= 0x40;
		assert_int_equal(pwrite(fd, &b, 1, second + 24), 1);
	}
	close(fd);
	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	assert_int_equal(F.j.last_seq, first);
	assert_true(F.j.n < before);
	check_views_to(0, first);
	teardown(state);
}

static void test_failover_point(void **state)
{
	const uint64_t P = 77;
	struct journal_info info;

	setup(state);
	fill();
	assert_int_equal(journal_drop_after(&F.j, P), 0);
	assert_int_equal(journal_retire(&F.j, F.img_fd, T0, true, P, UINT64_MAX), (int)P);
	check_image(P);
	journal_get_info(&F.j, &info);
	assert_int_equal(info.entries, 0);
	assert_int_equal(info.oldest_seq, P);
	journal_close(&F.j);
	assert_int_equal(journal_open(&F.j, F.jdir, &F.p), 0);
	journal_get_info(&F.j, &info);
	assert_int_equal(info.entries, 0);
	assert_int_equal(info.oldest_seq, P);
	assert_true(info.segments <= 1);
	teardown(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_and_views), cmocka_unit_test(test_retention_time),
	    cmocka_unit_test(test_retention_size),   cmocka_unit_test(test_torn_tail),
	    cmocka_unit_test(test_crc_mismatch),     cmocka_unit_test(test_failover_point),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the agent's persistent dirty bitmap (agent/bitmap.c) and
 * the way the write path uses it (rf_agent_write_begin/end without a hub).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "repfabric/agent.h"
#include "repfabric/log.h"

#define CHUNK RF_AGENT_CHUNK_SIZE
#define SIZE  (64ull << 20) /* 1024 chunks */

static char dir[256];
static char path[512];

static void quiet(void *ctx, enum rf_log_level level, const char *line)
{
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "%s/rf-test-bitmap.XXXXXX", getenv("TMPDIR") ?: "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/vol.bitmap", dir);
	rf_log_set_sink(quiet, NULL); /* the recreate warnings are expected */
	return 0;
}

static int teardown(void **state)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void reset(void)
{
	unlink(path);
}

static struct rfa_bitmap *open_bm(const char *name, uint64_t size, bool *valid)
{
	struct rfa_bitmap *bm = NULL;

	assert_int_equal(rfa_bitmap_open(&bm, path, name, size, CHUNK, valid), 0);
	assert_non_null(bm);
	return bm;
}

static off_t file_size(void)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void test_create_set_reopen(void **state)
{
	struct rfa_bitmap *bm;
	bool valid = true;
	uint64_t bit;

	reset();
	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_false(valid); /* created: the caller cannot know what is dirty */
	assert_int_equal(file_size(), RFA_BM_HEADER_SIZE + 4096);
	assert_int_equal(rfa_bitmap_nbits(bm), SIZE / CHUNK);
	assert_int_equal(rfa_bitmap_count(bm), 0);
	assert_true(rfa_bitmap_set(bm, 0));
	assert_false(rfa_bitmap_set(bm, 0)); /* already set: no flip */
	assert_true(rfa_bitmap_set(bm, 65));
	assert_true(rfa_bitmap_set(bm, 1023));
	assert_false(rfa_bitmap_set(bm, 1024)); /* past the end */
	assert_int_equal(rfa_bitmap_persist_pages(bm, 0, 0, true), 0);
	assert_int_equal(rfa_bitmap_persist_pages(bm, 0, 1, true), -EINVAL);
	rfa_bitmap_close(&bm);
	assert_null(bm);

	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_true(valid);
	assert_int_equal(rfa_bitmap_count(bm), 3);
	assert_true(rfa_bitmap_test(bm, 0));
	assert_true(rfa_bitmap_test(bm, 65));
	assert_true(rfa_bitmap_test(bm, 1023));
	assert_false(rfa_bitmap_test(bm, 64));
	assert_int_equal(rfa_bitmap_next_set(bm, 1, &bit), 0);
	assert_int_equal(bit, 65);
	assert_int_equal(rfa_bitmap_next_set(bm, 66, &bit), 0);
	assert_int_equal(bit, 1023);
	assert_int_equal(rfa_bitmap_next_set(bm, 1024, &bit), -ENOENT);
	assert_true(rfa_bitmap_clear(bm, 65));
	assert_false(rfa_bitmap_clear(bm, 65));
	assert_int_equal(rfa_bitmap_persist(bm, true), 0);
	rfa_bitmap_close(&bm);

	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_true(valid);
	assert_int_equal(rfa_bitmap_count(bm), 2);
	rfa_bitmap_close(&bm);
}

static void test_big_volume_sizes(void **state)
{
	struct rfa_bitmap *bm;
	bool valid;

	/* A size that is not a multiple of the chunk: a partial last chunk. */
	reset();
	bm = open_bm("odd", 3 * CHUNK + 512, &valid);
	assert_int_equal(rfa_bitmap_nbits(bm), 4);
	assert_true(rfa_bitmap_set(bm, 3));
	assert_false(rfa_bitmap_set(bm, 4));
	rfa_bitmap_close(&bm);
	/* 1 TiB: 16 Mi bits, 2 MiB of bits. */
	reset();
	bm = open_bm("big", 1ull << 40, &valid);
	assert_int_equal(file_size(), RFA_BM_HEADER_SIZE + (2 << 20));
	assert_true(rfa_bitmap_set(bm, (16u << 20) - 1));
	assert_int_equal(rfa_bitmap_persist_pages(bm, rfa_bitmap_page_of((16u << 20) - 1),
	                                          rfa_bitmap_page_of((16u << 20) - 1), true),
	                 0);
	rfa_bitmap_close(&bm);
	bm = open_bm("big", 1ull << 40, &valid);
	assert_true(valid);
	assert_int_equal(rfa_bitmap_count(bm), 1);
	rfa_bitmap_close(&bm);
}

/* Make a valid bitmap with bit 7 set, close it. */
static void make_with_bit7(const char *name, uint64_t size)
{
	struct rfa_bitmap *bm;
	bool valid;

	reset();
	bm = open_bm(name, size, &valid);
	rfa_bitmap_set(bm, 7);
	rfa_bitmap_close(&bm);
}

/* Reopen as (@name, @size): expect a mismatch, a recreated clear bitmap. */
static void expect_recreated(const char *name, uint64_t size)
{
	struct rfa_bitmap *bm;
	bool valid = true;

	bm = open_bm(name, size, &valid);
	assert_false(valid);
	assert_int_equal(rfa_bitmap_count(bm), 0);
	rfa_bitmap_close(&bm);
	/* ... and the recreated file is valid for the new volume. */
	bm = open_bm(name, size, &valid);
	assert_true(valid);
	rfa_bitmap_close(&bm);
}

static void patch_byte(off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void test_mismatch_other_name(void **state)
{
	make_with_bit7("vm1-disk0", SIZE);
	expect_recreated("vm1-disk1", SIZE);
}

static void test_mismatch_other_size(void **state)
{
	make_with_bit7("vm1-disk0", SIZE);
	expect_recreated("vm1-disk0", SIZE * 2);
	make_with_bit7("vm1-disk0", SIZE);
	expect_recreated("vm1-disk0", SIZE - 512); /* same bit count, other size */
}

static void test_mismatch_truncated(void **state)
{
	make_with_bit7("vm1-disk0", SIZE);
	assert_int_equal(truncate(path, 100), 0); /* inside the header */
	expect_recreated("vm1-disk0", SIZE);
	make_with_bit7("vm1-disk0", SIZE);
	assert_int_equal(truncate(path, RFA_BM_HEADER_SIZE + 10), 0); /* inside the bits */
	expect_recreated("vm1-disk0", SIZE);
	make_with_bit7("vm1-disk0", SIZE);
	assert_int_equal(truncate(path, 0), 0);
	expect_recreated("vm1-disk0", SIZE);
}

static void test_mismatch_bad_crc(void **state)
{
	make_with_bit7("vm1-disk0", SIZE);
	patch_byte(52); /* a byte of the name */
	expect_recreated("vm1-disk0", SIZE);
	make_with_bit7("vm1-disk0", SIZE);
	patch_byte(RFA_BM_CRC_OFF); /* the CRC itself */
	expect_recreated("vm1-disk0", SIZE);
	make_with_bit7("vm1-disk0", SIZE);
	patch_byte(0); /* the magic */
	expect_recreated("vm1-disk0", SIZE);
}

static void test_marked_invalid(void **state)
{
	struct rfa_bitmap *bm;
	bool valid;

	make_with_bit7("vm1-disk0", SIZE);
	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_true(valid);
	assert_int_equal(rfa_bitmap_mark_invalid(bm), 0);
	rfa_bitmap_close(&bm);
	expect_recreated("vm1-disk0", SIZE);
}

/* ---- through the agent's write path ------------------------------------ */

static int zero_read(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	memset(buf, 0, len);
	return 0;
}

static struct rf_agent *new_agent(struct rf_agent_vol **v)
{
	struct rf_agent *a = NULL;
	struct rf_agent_vol_conf conf = {
	    .name = "vm1-disk0", .size = SIZE, .vol_id = 1, .bitmap_path = path, .read = zero_read};

	assert_int_equal(rf_agent_new(&a, "127.0.0.1:1", "test-agent", NULL), 0);
	assert_int_equal(rf_agent_add_volume(a, &conf, v), 0);
	return a;
}

/* Without a hub a write is tracked in the bitmap and left for a resend. */
static void test_agent_tracks_writes_offline(void **state)
{
	struct rf_agent_vol_status st;
	struct rf_agent_vol *v;
	struct rf_agent *a;
	struct rfa_bitmap *bm;
	char buf[4096] = {1};
	bool valid;

	reset();
	a = new_agent(&v);
	assert_int_equal(rf_agent_write_begin(v, 3 * CHUNK + 100, sizeof(buf)), 0);
	rf_agent_write_end(v, 3 * CHUNK + 100, sizeof(buf), buf, RF_AGENT_WRITE, true);
	/* Straddles two chunks. */
	assert_int_equal(rf_agent_write_begin(v, 6 * CHUNK - 10, 20), 0);
	rf_agent_write_end(v, 6 * CHUNK - 10, 20, NULL, RF_AGENT_ZERO, true);
	assert_int_equal(rf_agent_write_begin(v, SIZE - 512, 1024), -EINVAL);
	assert_int_equal(rf_agent_write_begin(v, 0, 0), 0);
	assert_int_equal(rf_agent_vol_status(v, &st), 0);
	assert_int_equal(st.dirty_bytes, 3 * CHUNK);
	assert_false(st.connected);
	assert_false(st.bitmap_valid);
	rf_agent_destroy(&a);
	assert_null(a);

	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_true(valid);
	assert_int_equal(rfa_bitmap_count(bm), 3);
	assert_true(rfa_bitmap_test(bm, 3));
	assert_true(rfa_bitmap_test(bm, 5));
	assert_true(rfa_bitmap_test(bm, 6));
	rfa_bitmap_close(&bm);

	/* A new agent over that bitmap starts with those chunks dirty. */
	a = new_agent(&v);
	assert_int_equal(rf_agent_vol_status(v, &st), 0);
	assert_true(st.bitmap_valid);
	assert_int_equal(st.dirty_bytes, 3 * CHUNK);
	rf_agent_destroy(&a);
}

/*
 * A child sets a bit through rf_agent_write_begin, tells the parent, and is
 * SIGKILLed before anything else can run: the bit is in the file. (The
 * kill loses nothing the page cache holds either; what this shows is that
 * the bit reached the file before write_begin returned, i.e. before the
 * write could have been applied.)
 */
static void test_bit_survives_sigkill(void **state)
{
	struct rfa_bitmap *bm;
	int pfd[2], status;
	bool valid;
	pid_t pid;
	char c;

	reset();
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rf_agent_vol *v;
		struct rf_agent *a;

		close(pfd[0]);
		a = new_agent(&v);
		(void)a; /* never destroyed: the process is killed */
		if (rf_agent_write_begin(v, 42 * CHUNK, 512) != 0)
			_exit(1);
		if (write(pfd[1], "x", 1) != 1)
			_exit(2);
		for (;;)
			pause(); /* never reaches write_end or destroy */
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(pfd[0]);

	bm = open_bm("vm1-disk0", SIZE, &valid);
	assert_true(valid);
	assert_true(rfa_bitmap_test(bm, 42));
	assert_int_equal(rfa_bitmap_count(bm), 1);
	rfa_bitmap_close(&bm);
}

static void test_bad_arguments(void **state)
{
	struct rfa_bitmap *bm = NULL;
	bool valid;

	assert_int_equal(rfa_bitmap_open(&bm, path, "bad name", SIZE, CHUNK, &valid), -EINVAL);
	assert_int_equal(rfa_bitmap_open(&bm, path, "ok", 0, CHUNK, &valid), -EINVAL);
	assert_int_equal(rfa_bitmap_open(&bm, path, "ok", SIZE, 1000, &valid), -EINVAL);
	assert_int_equal(rfa_bitmap_open(&bm, "/nonexistent-dir/x", "ok", SIZE, CHUNK, &valid),
	                 -ENOENT);
	assert_null(bm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_set_reopen),
	    cmocka_unit_test(test_big_volume_sizes),
	    cmocka_unit_test(test_mismatch_other_name),
	    cmocka_unit_test(test_mismatch_other_size),
	    cmocka_unit_test(test_mismatch_truncated),
	    cmocka_unit_test(test_mismatch_bad_crc),
	    cmocka_unit_test(test_marked_invalid),
	    cmocka_unit_test(test_agent_tracks_writes_offline),
	    cmocka_unit_test(test_bit_survives_sigkill),
	    cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

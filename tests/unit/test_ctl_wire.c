/* SPDX-License-Identifier: MIT */
/* The control channel codecs: round trips and hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repfabric/ctl.h"

static void test_header(void **state)
{
	uint8_t h[RF_CTL_HDR_LEN];
	struct rf_ctl_hdr d;
	const char *why = NULL;

	rf_ctl_hdr_encode(h, RF_CTL_HELLO, 0x1122334455667788ull, 77);
	assert_memory_equal(h, "RFCT", 4);
	assert_int_equal(rf_ctl_hdr_decode(h, &d, &why), 0);
	assert_int_equal(d.type, RF_CTL_HELLO);
	assert_true(d.req_id == 0x1122334455667788ull);
	assert_int_equal(d.len, 77);

	h[0] ^= 1;
	assert_int_equal(rf_ctl_hdr_decode(h, &d, &why), -EPROTO);
	assert_non_null(strstr(why, "magic"));
	h[0] ^= 1;
	h[4] = 2;
	assert_int_equal(rf_ctl_hdr_decode(h, &d, &why), -EPROTO);
	assert_non_null(strstr(why, "version"));
	h[4] = 1;
	h[21] = 1;
	assert_int_equal(rf_ctl_hdr_decode(h, &d, &why), -EPROTO);
	assert_non_null(strstr(why, "reserved"));
	rf_ctl_hdr_encode(h, RF_CTL_HELLO, 1, RF_CTL_MAX_PAYLOAD + 1);
	assert_int_equal(rf_ctl_hdr_decode(h, &d, &why), -EPROTO);
	assert_non_null(strstr(why, "cap"));
}

static void test_hello_roundtrip_and_truncation(void **state)
{
	struct rf_ctl_hello in = {.proto = RF_CTL_VERSION}, out;
	uint8_t buf[256];
	const char *why;
	int n;

	strcpy(in.agent_id, "host-a.vm1");
	n = rf_ctl_enc_hello(buf, sizeof(buf), &in);
	assert_true(n > 0);
	assert_int_equal(rf_ctl_dec_hello(buf, (size_t)n, &out, &why), 0);
	assert_string_equal(out.agent_id, "host-a.vm1");
	/* Every truncation and one extra byte are refused. */
	for (int cut = 0; cut < n; cut++)
		assert_int_equal(rf_ctl_dec_hello(buf, (size_t)cut, &out, &why), -EBADMSG);
	buf[n] = 0;
	assert_int_equal(rf_ctl_dec_hello(buf, (size_t)n + 1, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "trailing"));
	/* Names are validated on both sides. */
	strcpy(in.agent_id, "bad name");
	assert_int_equal(rf_ctl_enc_hello(buf, sizeof(buf), &in), -EINVAL);
	n = rf_ctl_enc_hello(buf, sizeof(buf), &(struct rf_ctl_hello){.agent_id = "ok"});
	buf[4] = '/';
	assert_int_equal(rf_ctl_dec_hello(buf, (size_t)n, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "name"));
}

static void test_string_length_lies(void **state)
{
	uint8_t buf[16] = {1, 0, 0xff, 0xff}; /* proto 1, name length 65535 */
	struct rf_ctl_hello out;
	const char *why;

	assert_int_equal(rf_ctl_dec_hello(buf, sizeof(buf), &out, &why), -EBADMSG);
	buf[2] = 3;
	buf[3] = 0;
	memcpy(buf + 4, "a\0b", 3);
	assert_int_equal(rf_ctl_dec_hello(buf, 7, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "NUL"));
}

static void test_volume_report(void **state)
{
	struct rf_ctl_volume_report in = {.vol_id = 3, .size = 1 << 30, .bitmap_valid = 1}, out;
	uint8_t buf[256];
	const char *why;
	int n;

	strcpy(in.name, "vm1-disk0");
	n = rf_ctl_enc_volume_report(buf, sizeof(buf), &in);
	assert_int_equal(rf_ctl_dec_volume_report(buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.vol_id, 3);
	assert_true(out.size == 1 << 30);
	assert_string_equal(out.name, "vm1-disk0");
	in.size = 1000; /* not a multiple of 512 */
	n = rf_ctl_enc_volume_report(buf, sizeof(buf), &in);
	assert_int_equal(rf_ctl_dec_volume_report(buf, (size_t)n, &out, &why), -EBADMSG);
	in.size = 4096;
	in.bitmap_valid = 2;
	n = rf_ctl_enc_volume_report(buf, sizeof(buf), &in);
	assert_int_equal(rf_ctl_dec_volume_report(buf, (size_t)n, &out, &why), -EBADMSG);
}

static void test_sync_and_progress(void **state)
{
	struct rf_ctl_sync_read rd = {.vol_id = 1, .offset = 1 << 20, .length = 1 << 20}, rd2;
	struct rf_ctl_sync_posted sp = {.vol_id = 1, .offset = 0, .length = 4096, .seq = 99}, sp2;
	static struct rf_ctl_progress pg, pg2;
	uint8_t buf[8192];
	const char *why;
	int n;

	n = rf_ctl_enc_sync_read(buf, sizeof(buf), &rd);
	assert_int_equal(rf_ctl_dec_sync_read(buf, (size_t)n, &rd2, &why), 0);
	assert_int_equal(rd2.length, 1 << 20);
	rd.length = RF_CTL_MAX_DATA + 1;
	n = rf_ctl_enc_sync_read(buf, sizeof(buf), &rd);
	assert_int_equal(rf_ctl_dec_sync_read(buf, (size_t)n, &rd2, &why), -EBADMSG);
	rd.length = 4096;
	rd.offset = UINT64_MAX - 100;
	n = rf_ctl_enc_sync_read(buf, sizeof(buf), &rd);
	assert_int_equal(rf_ctl_dec_sync_read(buf, (size_t)n, &rd2, &why), -EBADMSG);

	n = rf_ctl_enc_sync_posted(buf, sizeof(buf), &sp);
	assert_int_equal(rf_ctl_dec_sync_posted(buf, (size_t)n, &sp2, &why), 0);
	assert_int_equal(sp2.seq, 99);

	pg.next_seq = 1234;
	pg.queued = 5;
	pg.nvols = 2;
	pg.vols[0].vol_id = 1;
	pg.vols[0].dirty_bytes = 65536;
	pg.vols[1].vol_id = 2;
	n = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &pg2, &why), 0);
	assert_int_equal(pg2.nvols, 2);
	assert_int_equal(pg2.vols[0].dirty_bytes, 65536);
	buf[12] = 0xff; /* nvols = 0x..ff: above the cap or longer than the payload */
	buf[13] = 0xff;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &pg2, &why), -EBADMSG);
}

/* VOLUME_OK: the 6-byte form and the form with the appended resync_rate. */
static void test_volume_ok_resync_rate(void **state)
{
	struct rf_ctl_volume_ok in = {.vol_id = 7,
	                              .state = RF_VOL_RESYNCING,
	                              .sync = RF_SYNC_NONE,
	                              .resync_rate = 4u << 20},
	                        out;
	uint8_t buf[64];
	const char *why;
	int n;

	n = rf_ctl_enc_volume_ok(buf, sizeof(buf), &in);
	assert_int_equal(n, 14);
	assert_int_equal(rf_ctl_dec_volume_ok(buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.vol_id, 7);
	assert_int_equal(out.state, RF_VOL_RESYNCING);
	assert_true(out.resync_rate == 4u << 20);
	/* Without the appended field: rate 0 (unlimited). */
	assert_int_equal(rf_ctl_dec_volume_ok(buf, 6, &out, &why), 0);
	assert_true(out.resync_rate == 0);
	/* A partial field or a byte too many is refused. */
	for (int cut = 7; cut < n; cut++)
		assert_int_equal(rf_ctl_dec_volume_ok(buf, (size_t)cut, &out, &why), -EBADMSG);
	buf[n] = 0;
	assert_int_equal(rf_ctl_dec_volume_ok(buf, (size_t)n + 1, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "trailing"));
}

/* PROGRESS: the short form and the resync tail, strictly. */
static void test_progress_tail(void **state)
{
	static struct rf_ctl_progress pg, out;
	uint8_t buf[8192];
	const char *why;
	int n, short_len;

	memset(&pg, 0, sizeof(pg));
	pg.next_seq = 99;
	pg.nvols = 2;
	pg.vols[0].vol_id = 1;
	pg.vols[0].dirty_bytes = 3u << 16;
	pg.vols[0].resend_bytes = 2u << 16;
	pg.vols[0].resent_bytes = 123456789;
	pg.vols[1].vol_id = 2;
	short_len = rf_ctl_enc_progress(buf, sizeof(buf), &pg); /* instance 0: short form */
	assert_int_equal(short_len, 14 + 2 * 12);
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)short_len, &out, &why), 0);
	assert_true(out.instance == 0);
	assert_true(out.vols[0].resend_bytes == 0 && out.vols[0].resent_bytes == 0);

	pg.instance = 0x1234567890abcdefull;
	pg.congestions = 3;
	pg.flags = RF_PROGRESS_CONGESTED;
	n = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	assert_int_equal(n, short_len + 13 + 2 * 16);
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), 0);
	assert_true(out.instance == pg.instance);
	assert_int_equal(out.congestions, 3);
	assert_int_equal(out.flags, RF_PROGRESS_CONGESTED);
	assert_true(out.vols[0].dirty_bytes == 3u << 16);
	assert_true(out.vols[0].resend_bytes == 2u << 16);
	assert_true(out.vols[0].resent_bytes == 123456789);
	assert_true(out.vols[1].resend_bytes == 0);
	/* Every cut inside the tail, and a byte too many, is refused. */
	for (int cut = short_len + 1; cut < n; cut++)
		assert_int_equal(rf_ctl_dec_progress(buf, (size_t)cut, &out, &why), -EBADMSG);
	buf[n] = 0;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n + 1, &out, &why), -EBADMSG);
	/* A tail with instance 0 or unknown flags is refused. */
	memset(buf + short_len, 0, 8);
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "instance"));
	n = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	buf[short_len + 12] = 0x80;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "flags"));
	/* ... and the encoder will not write unknown flags either. */
	pg.flags = 0x04;
	assert_int_equal(rf_ctl_enc_progress(buf, sizeof(buf), &pg), -EINVAL);
}

/* The ack tail (RF_PROGRESS_ACK): each volume's level, fallback and count. */
static void test_progress_ack_tail(void **state)
{
	static struct rf_ctl_progress pg, out;
	uint8_t buf[8192];
	const char *why;
	int n, resync_len;

	(void)state;
	memset(&pg, 0, sizeof(pg));
	pg.nvols = 2;
	pg.vols[0].vol_id = 1;
	pg.vols[1].vol_id = 2;
	pg.instance = 7;
	resync_len = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	pg.flags = RF_PROGRESS_ACK;
	pg.vols[0].ack = 2;
	pg.vols[0].ack_flags = RF_PROGRESS_VOL_FALLBACK;
	pg.vols[0].ack_fallbacks = 70000;
	n = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	assert_int_equal(n, resync_len + 2 * 6);
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.vols[0].ack, 2);
	assert_int_equal(out.vols[0].ack_flags, RF_PROGRESS_VOL_FALLBACK);
	assert_int_equal(out.vols[0].ack_fallbacks, 70000);
	assert_int_equal(out.vols[1].ack, 0);
	assert_int_equal(out.vols[1].ack_flags, 0);
	/* Every cut inside it and a byte too many are refused. */
	for (int cut = resync_len; cut < n; cut++)
		assert_int_equal(rf_ctl_dec_progress(buf, (size_t)cut, &out, &why), -EBADMSG);
	buf[n] = 0;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n + 1, &out, &why), -EBADMSG);
	/* An unknown level or flag is refused, decoding and encoding. */
	buf[resync_len] = 1; /* landed */
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.vols[0].ack, 1);
	buf[resync_len] = 3;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "acknowledgement level"));
	n = rf_ctl_enc_progress(buf, sizeof(buf), &pg);
	buf[resync_len + 1] = 0x80;
	assert_int_equal(rf_ctl_dec_progress(buf, (size_t)n, &out, &why), -EBADMSG);
	assert_non_null(strstr(why, "acknowledgement flags"));
	pg.vols[1].ack = 3;
	assert_int_equal(rf_ctl_enc_progress(buf, sizeof(buf), &pg), -EINVAL);
}

static void test_encoders_respect_capacity(void **state)
{
	struct rf_ctl_error e = {.code = EIO};
	uint8_t buf[8];

	memset(e.reason, 'x', 100);
	assert_int_equal(rf_ctl_enc_error(buf, sizeof(buf), &e), -ENOBUFS);
	assert_true(rf_ctl_name_ok("a"));
	assert_false(rf_ctl_name_ok(""));
	assert_false(rf_ctl_name_ok(
	    "0123456789012345678901234567890123456789012345678901234567890123456789"));
	assert_string_equal(rf_vol_state_name(RF_VOL_PROTECTED), "protected");
	assert_string_equal(rf_vol_state_name((enum rf_vol_state)42), "?");
}

/* Random bytes never crash a decoder (the fuzzer of #8 goes further). */
static void test_random_garbage(void **state)
{
	uint8_t buf[512];
	struct rf_ctl_hello h;
	struct rf_ctl_hello_ok ho;
	struct rf_ctl_volume_report vr;
	struct rf_ctl_error er;
	static struct rf_ctl_progress pg;
	const char *why;

	srand(11);
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)rand() % sizeof(buf);

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)rand();
		rf_ctl_dec_hello(buf, len, &h, &why);
		rf_ctl_dec_hello_ok(buf, len, &ho, &why);
		rf_ctl_dec_volume_report(buf, len, &vr, &why);
		rf_ctl_dec_error(buf, len, &er, &why);
		rf_ctl_dec_progress(buf, len, &pg, &why);
		rf_ctl_dec_volume_ok(buf, len, &(struct rf_ctl_volume_ok){0}, &why);
	}
}

/* Redirected IO (32..47) and administration (48..63). */
static void test_io_and_admin(void **state)
{
	uint8_t buf[512];
	const char *why;
	int n;

	{
		struct rf_ctl_io_open in, out;

		strcpy(in.name, "vm1-disk0");
		n = rf_ctl_enc_io_open(buf, sizeof(buf), &in);
		assert_true(n > 0);
		assert_int_equal(rf_ctl_dec_io_open(buf, (size_t)n, &out, &why), 0);
		assert_string_equal(out.name, "vm1-disk0");
		strcpy(in.name, "bad name");
		assert_int_equal(rf_ctl_enc_io_open(buf, sizeof(buf), &in), -EINVAL);
	}
	{
		struct rf_ctl_io_open_ok in = {.handle = 7, .size = 1ull << 30, .seq = 99}, out;

		n = rf_ctl_enc_io_open_ok(buf, sizeof(buf), &in);
		assert_int_equal(n, 20);
		assert_int_equal(rf_ctl_dec_io_open_ok(buf, (size_t)n, &out, &why), 0);
		assert_int_equal(out.handle, 7);
		assert_true(out.size == 1ull << 30 && out.seq == 99);
	}
	{
		struct rf_ctl_io_req in = {.handle = 3, .offset = 4096, .length = 8}, out;

		n = rf_ctl_enc_io_req(buf, sizeof(buf), &in);
		assert_int_equal(n, 16);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_READ, &out, &why), 0);
		assert_true(out.offset == 4096 && out.length == 8 && !out.data);
		/* READ with bytes after it, WRITE without its bytes: refused. */
		assert_int_equal(rf_ctl_dec_io_req(buf, 17, RF_CTL_IO_READ, &out, &why), -EBADMSG);
		assert_int_equal(rf_ctl_dec_io_req(buf, 23, RF_CTL_IO_WRITE, &out, &why), -EBADMSG);
		memcpy(buf + 16, "abcdefgh", 8);
		assert_int_equal(rf_ctl_dec_io_req(buf, 24, RF_CTL_IO_WRITE, &out, &why), 0);
		assert_memory_equal(out.data, "abcdefgh", 8);
		/* FLUSH with a range, READ of 0 bytes or above 1 MiB, overflow. */
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_FLUSH, &out, &why), -EBADMSG);
		in.length = 0;
		rf_ctl_enc_io_req(buf, sizeof(buf), &in);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_READ, &out, &why), -EBADMSG);
		in.length = RF_CTL_MAX_DATA + 1;
		rf_ctl_enc_io_req(buf, sizeof(buf), &in);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_READ, &out, &why), -EBADMSG);
		in.length = 512;
		in.offset = UINT64_MAX - 100;
		rf_ctl_enc_io_req(buf, sizeof(buf), &in);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_READ, &out, &why), -EBADMSG);
		in.offset = in.length = 0;
		rf_ctl_enc_io_req(buf, sizeof(buf), &in);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_IO_FLUSH, &out, &why), 0);
		assert_int_equal(rf_ctl_dec_io_req(buf, 16, RF_CTL_PROGRESS, &out, &why), -EBADMSG);
	}
	{
		struct rf_ctl_points_ok in = {.flags = RF_POINTS_JOURNAL | RF_POINTS_TEST,
		                              .oldest_seq = 1,
		                              .newest_seq = 2,
		                              .oldest_time_ms = 3,
		                              .newest_time_ms = 4,
		                              .entries = 5,
		                              .bytes = 6,
		                              .retain_ms = 7,
		                              .retain_bytes = 8,
		                              .test_seq = 9},
		                        out;

		n = rf_ctl_enc_points_ok(buf, sizeof(buf), &in);
		assert_int_equal(n, 76);
		assert_int_equal(rf_ctl_dec_points_ok(buf, (size_t)n, &out, &why), 0);
		assert_true(out.flags == in.flags && out.oldest_seq == 1 && out.newest_seq == 2 &&
		            out.oldest_time_ms == 3 && out.newest_time_ms == 4 &&
		            out.entries == 5 && out.bytes == 6 && out.retain_ms == 7 &&
		            out.retain_bytes == 8 && out.test_seq == 9);
		for (int cut = 0; cut < n; cut++)
			assert_int_equal(rf_ctl_dec_points_ok(buf, (size_t)cut, &out, &why),
			                 -EBADMSG);
	}
	{
		struct rf_ctl_admin in = {.op = RF_ADMIN_FAILOVER,
		                          .at = RF_AT_TIME,
		                          .force = 1,
		                          .value = 1234},
		                    out;
		struct rf_ctl_admin_ok ok = {.seq = 5, .time_ms = 6}, ok2;

		strcpy(in.name, "vm1-disk0");
		n = rf_ctl_enc_admin(buf, sizeof(buf), &in);
		assert_true(n > 0);
		assert_int_equal(rf_ctl_dec_admin(buf, (size_t)n, &out, &why), 0);
		assert_true(out.op == RF_ADMIN_FAILOVER && out.at == RF_AT_TIME && out.force == 1 &&
		            out.value == 1234);
		assert_string_equal(out.name, "vm1-disk0");
		buf[0] = 9;
		assert_int_equal(rf_ctl_dec_admin(buf, (size_t)n, &out, &why), -EBADMSG);
		assert_non_null(strstr(why, "operation"));
		buf[0] = RF_ADMIN_TEST_START;
		buf[1] = 7;
		assert_int_equal(rf_ctl_dec_admin(buf, (size_t)n, &out, &why), -EBADMSG);
		strcpy(ok.text, "recovery image: /x.img");
		n = rf_ctl_enc_admin_ok(buf, sizeof(buf), &ok);
		assert_true(n > 0);
		assert_int_equal(rf_ctl_dec_admin_ok(buf, (size_t)n, &ok2, &why), 0);
		assert_string_equal(ok2.text, ok.text);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header),
	    cmocka_unit_test(test_hello_roundtrip_and_truncation),
	    cmocka_unit_test(test_string_length_lies),
	    cmocka_unit_test(test_volume_report),
	    cmocka_unit_test(test_sync_and_progress),
	    cmocka_unit_test(test_volume_ok_resync_rate),
	    cmocka_unit_test(test_progress_tail),
	    cmocka_unit_test(test_progress_ack_tail),
	    cmocka_unit_test(test_encoders_respect_capacity),
	    cmocka_unit_test(test_random_garbage),
	    cmocka_unit_test(test_io_and_admin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

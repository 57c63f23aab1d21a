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
	    cmocka_unit_test(test_encoders_respect_capacity),
	    cmocka_unit_test(test_random_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/* The control message table (common/ctl_msgs.c): names, directions, roles, decoders. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "repfabric/ctl.h"

/* Every type enum rf_ctl_type defines, with the name the wire docs use. */
static const struct {
	uint16_t type;
	const char *name;
} defined[] = {
    {RF_CTL_ERROR, "ERROR"},
    {RF_CTL_HELLO, "HELLO"},
    {RF_CTL_HELLO_OK, "HELLO_OK"},
    {RF_CTL_VOLUME_REPORT, "VOLUME_REPORT"},
    {RF_CTL_VOLUME_OK, "VOLUME_OK"},
    {RF_CTL_SYNC_READ, "SYNC_READ"},
    {RF_CTL_SYNC_POSTED, "SYNC_POSTED"},
    {RF_CTL_HEARTBEAT, "HEARTBEAT"},
    {RF_CTL_STATUS, "STATUS"},
    {RF_CTL_STATUS_OK, "STATUS_OK"},
    {RF_CTL_VOLUME_STATE, "VOLUME_STATE"},
    {RF_CTL_PROGRESS, "PROGRESS"},
    {RF_CTL_REPORT_AGAIN, "REPORT_AGAIN"},
    {RF_CTL_IO_OPEN, "IO_OPEN"},
    {RF_CTL_IO_OPEN_OK, "IO_OPEN_OK"},
    {RF_CTL_IO_READ, "IO_READ"},
    {RF_CTL_IO_DATA, "IO_DATA"},
    {RF_CTL_IO_WRITE, "IO_WRITE"},
    {RF_CTL_IO_FLUSH, "IO_FLUSH"},
    {RF_CTL_IO_DONE, "IO_DONE"},
    {RF_CTL_POINTS, "POINTS"},
    {RF_CTL_POINTS_OK, "POINTS_OK"},
    {RF_CTL_ADMIN, "ADMIN"},
    {RF_CTL_ADMIN_OK, "ADMIN_OK"},
    {RF_CTL_AUTH_START, "AUTH_START"},
    {RF_CTL_AUTH_CHALLENGE, "AUTH_CHALLENGE"},
    {RF_CTL_AUTH_PROOF, "AUTH_PROOF"},
    {RF_CTL_AUTH_OK, "AUTH_OK"},
};
#define NDEFINED (sizeof(defined) / sizeof(defined[0]))

static bool is_defined(uint16_t t)
{
	for (size_t i = 0; i < NDEFINED; i++)
		if (defined[i].type == t)
			return true;
	return false;
}

static void test_every_type_has_a_row_and_a_name(void **state)
{
	for (size_t i = 0; i < NDEFINED; i++) {
		const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc(defined[i].type);

		assert_non_null(d);
		assert_int_equal(d->type, defined[i].type);
		assert_string_equal(d->name, defined[i].name);
		assert_string_equal(rf_ctl_type_name(defined[i].type), defined[i].name);
		assert_true(d->dir == RF_CTL_TO_HUB || d->dir == RF_CTL_TO_PEER ||
		            d->dir == RF_CTL_BOTH);
	}
	/* Reserved and unknown types have no row. */
	for (unsigned t = 0; t < 1024; t++)
		if (!is_defined((uint16_t)t)) {
			assert_null(rf_ctl_msg_desc((uint16_t)t));
			assert_string_equal(rf_ctl_type_name((uint16_t)t), "?");
		}
	assert_null(rf_ctl_msg_desc(UINT16_MAX));
}

static void test_roles_and_directions(void **state)
{
	static const uint16_t agent[] = {RF_CTL_HELLO, RF_CTL_VOLUME_REPORT, RF_CTL_SYNC_POSTED,
	                                 RF_CTL_PROGRESS};
	static const uint16_t admin[] = {RF_CTL_STATUS,  RF_CTL_POINTS,  RF_CTL_ADMIN,
	                                 RF_CTL_IO_OPEN, RF_CTL_IO_READ, RF_CTL_IO_WRITE,
	                                 RF_CTL_IO_FLUSH};
	static const uint16_t preauth[] = {RF_CTL_AUTH_START, RF_CTL_AUTH_PROOF};
	static const uint16_t any[] = {RF_CTL_ERROR, RF_CTL_HEARTBEAT};
	size_t counted = 0;

	for (size_t i = 0; i < sizeof(agent) / sizeof(agent[0]); i++, counted++) {
		assert_int_equal(rf_ctl_msg_desc(agent[i])->role, RF_CTL_ROLE_AGENT);
		assert_int_equal(rf_ctl_msg_desc(agent[i])->dir, RF_CTL_TO_HUB);
	}
	for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++, counted++) {
		assert_int_equal(rf_ctl_msg_desc(admin[i])->role, RF_CTL_ROLE_ADMIN);
		assert_int_equal(rf_ctl_msg_desc(admin[i])->dir, RF_CTL_TO_HUB);
	}
	for (size_t i = 0; i < 2; i++, counted++) {
		assert_int_equal(rf_ctl_msg_desc(preauth[i])->role, RF_CTL_ROLE_PREAUTH);
		assert_int_equal(rf_ctl_msg_desc(preauth[i])->dir, RF_CTL_TO_HUB);
		assert_int_equal(rf_ctl_msg_desc(any[i])->role, RF_CTL_ROLE_ANY);
		assert_int_equal(rf_ctl_msg_desc(any[i])->dir, RF_CTL_BOTH);
		counted++;
	}
	/* Everything else only the hub sends, and nobody may send it to the hub. */
	for (size_t i = 0; i < NDEFINED; i++) {
		const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc(defined[i].type);

		if (d->dir & RF_CTL_TO_HUB) {
			assert_int_not_equal(d->role, RF_CTL_ROLE_NONE);
			continue;
		}
		assert_int_equal(d->dir, RF_CTL_TO_PEER);
		assert_int_equal(d->role, RF_CTL_ROLE_NONE);
		counted++;
	}
	assert_int_equal(counted, NDEFINED);
	/* Notifications: never answered. */
	assert_true(rf_ctl_msg_desc(RF_CTL_PROGRESS)->notify);
	assert_true(rf_ctl_msg_desc(RF_CTL_VOLUME_STATE)->notify);
	assert_true(rf_ctl_msg_desc(RF_CTL_REPORT_AGAIN)->notify);
	assert_false(rf_ctl_msg_desc(RF_CTL_VOLUME_REPORT)->notify);
}

static void test_decoders(void **state)
{
	struct rf_ctl_volume_report in = {.vol_id = 7, .size = 1 << 20, .bitmap_valid = 1};
	union rf_ctl_msg m;
	const char *why = NULL;
	uint8_t buf[128];
	int n;

	strcpy(in.name, "vm1-disk0");
	n = rf_ctl_enc_volume_report(buf, sizeof(buf), &in);
	assert_true(n > 0);
	assert_int_equal(
	    rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_VOLUME_REPORT), buf, (size_t)n, &m, &why), 0);
	assert_int_equal(m.volume_report.vol_id, 7);
	assert_string_equal(m.volume_report.name, "vm1-disk0");
	assert_int_equal(
	    rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_VOLUME_REPORT), buf, (size_t)n - 1, &m, &why),
	    -EBADMSG);
	assert_non_null(why);
	/* A message without a payload refuses one. */
	assert_int_equal(rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_HEARTBEAT), buf, 0, &m, &why), 0);
	assert_int_equal(rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_HEARTBEAT), buf, 1, &m, &why),
	                 -EBADMSG);
	/* Raw payloads point into the frame. */
	assert_int_equal(rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_STATUS_OK), buf, 5, &m, &why), 0);
	assert_ptr_equal(m.raw.p, buf);
	assert_int_equal(m.raw.len, 5);
	/* IO requests: the layout depends on the type (FLUSH: offset = length = 0). */
	{
		struct rf_ctl_io_req rq = {.handle = 3, .offset = 4096, .length = 512};

		n = rf_ctl_enc_io_req(buf, sizeof(buf), &rq);
		assert_true(n > 0);
		assert_int_equal(
		    rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_IO_READ), buf, (size_t)n, &m, &why), 0);
		assert_int_equal(m.io_req.handle, 3);
		assert_int_equal(
		    rf_ctl_decode(rf_ctl_msg_desc(RF_CTL_IO_FLUSH), buf, (size_t)n, &m, &why),
		    -EBADMSG);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_type_has_a_row_and_a_name),
	    cmocka_unit_test(test_roles_and_directions),
	    cmocka_unit_test(test_decoders),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

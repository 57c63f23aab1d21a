/* SPDX-License-Identifier: MIT */
/*
 * The hub's control dispatch (hub/ctl_server.c: ctl_dispatch) and the
 * refusals of VOLUME_REPORT (hub/volume.c: volume_report), without a hub
 * loop: a struct hub built by hand, one control connection on a
 * socketpair whose other end the test reads the ERROR frames from, and
 * volume_report() called directly with a decoded message.
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
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "hub.h"
#include "repfabric/log.h"

struct fx {
	struct hub h;
	struct hub_config cfg;
	struct hub_vol_config vc[2];
	struct hub_agent a, other;
	struct ctl_conn *c, other_conn;
	int peer; /* the client's end of the socketpair */
	char dir[64];
	uint8_t *buf;
};

static void quiet(void *ctx, enum rf_log_level level, const char *line)
{
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int sv[2];

	assert_non_null(f);
	rf_log_set_sink(quiet, NULL);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_hub_ctl.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->buf = malloc(RF_CTL_MAX_PAYLOAD);
	assert_non_null(f->buf);
	f->h.cfg = &f->cfg;
	f->h.epfd = -1;
	snprintf(f->h.volumes_dir, sizeof(f->h.volumes_dir), "%s", f->dir);
	for (int i = 0; i < 2; i++) {
		snprintf(f->vc[i].name, sizeof(f->vc[i].name), "d%d", i);
		snprintf(f->vc[i].recovery, sizeof(f->vc[i].recovery), "%s/d%d.img", f->dir, i);
	}
	f->h.vols = calloc(2, sizeof(*f->h.vols));
	assert_non_null(f->h.vols);
	f->h.nvols = 2;
	for (int i = 0; i < 2; i++) {
		f->h.vols[i].hub = &f->h;
		f->h.vols[i].cfg = &f->vc[i];
		f->h.vols[i].fd = -1;
	}
	f->a.hub = f->other.hub = &f->h;
	strcpy(f->a.id, "vm1");
	strcpy(f->other.id, "vm9");
	f->other.conn = &f->other_conn; /* live: its connection is not dead */

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	f->peer = sv[1];
	f->c = calloc(1, sizeof(*f->c));
	assert_non_null(f->c);
	f->c->hub = &f->h;
	rf_ctl_stream_init(&f->c->st, sv[0], HUB_OUT_MAX);
	strcpy(f->c->peer, "test:1");
	f->h.nconns = 1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	if (!f->c->dead)
		close(f->c->st.fd);
	rf_ctl_stream_fini(&f->c->st);
	free(f->c);
	close(f->peer);
	for (size_t i = 0; i < f->h.nvols; i++)
		if (f->h.vols[i].fd >= 0)
			close(f->h.vols[i].fd);
	free(f->h.vols);
	free(f->buf);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Feed one frame to the dispatcher. */
static void frame(struct fx *f, uint16_t type, uint64_t req, const void *p, uint32_t len)
{
	struct rf_ctl_hdr h = {.type = type, .req_id = req, .len = len};

	ctl_dispatch(f->c, &h, p);
}

/* The next frame the hub sent must be an ERROR with @code, @req and a reason starting with @why. */
static void expect_error(struct fx *f, int code, uint64_t req, const char *why)
{
	struct rf_ctl_hdr h;
	struct rf_ctl_error e;
	const char *w = NULL;

	assert_int_equal(rf_ctl_recv(f->peer, &h, f->buf, RF_CTL_MAX_PAYLOAD, 1000, &w), 0);
	assert_int_equal(h.type, RF_CTL_ERROR);
	assert_true(h.req_id == req);
	assert_int_equal(rf_ctl_dec_error(f->buf, h.len, &e, &w), 0);
	assert_int_equal(e.code, code);
	if (strncmp(e.reason, why, strlen(why)) != 0)
		fail_msg("reason '%s', expected '%s...'", e.reason, why);
}

/* A frame of @len junk bytes (at most 3) or none, refused with an ERROR. */
static void refused(struct fx *f, uint16_t type, uint64_t req, uint32_t len, int code,
                    uint64_t reply_id, const char *why)
{
	static const uint8_t junk[3] = {1, 2, 3};

	frame(f, type, req, len ? junk : NULL, len);
	expect_error(f, code, reply_id, why);
}

static void expect_nothing(struct fx *f)
{
	uint8_t b;

	assert_int_equal(recv(f->peer, &b, 1, MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

static bool closing(const struct fx *f)
{
	return f->c->dead || f->c->closing;
}

/* ---- the dispatcher ------------------------------------------------------- */

static void test_unknown_and_hub_only_types(void **state)
{
	struct fx *f = *state;

	refused(f, 999, 5, 0, EOPNOTSUPP, 5, "unknown message type 999");
	refused(f, 40, 6, 0, EOPNOTSUPP, 6, "unknown message type 40"); /* reserved */
	refused(f, RF_CTL_IO_OPEN_OK, 7, 0, EOPNOTSUPP, 7,
	        "message type 33 (IO_OPEN_OK) is sent by the hub, not to it");
	refused(f, RF_CTL_VOLUME_STATE, 8, 0, EOPNOTSUPP, 8,
	        "message type 11 (VOLUME_STATE) is sent by the hub");
	assert_false(closing(f));
	assert_int_equal(f->h.refusals, 4);
	assert_int_equal(f->c->frames_in, 4);
}

static void test_payload_checks(void **state)
{
	struct fx *f = *state;
	uint8_t junk[3] = {1, 2, 3};

	refused(f, RF_CTL_HEARTBEAT, 1, 3, EBADMSG, 1,
	        "HEARTBEAT carries no payload (got 3 bytes)");
	refused(f, RF_CTL_STATUS, 2, 3, EBADMSG, 2, "STATUS carries no payload (got 3 bytes)");
	refused(f, RF_CTL_POINTS, 3, 3, EBADMSG, 3, "malformed POINTS: ");
	refused(f, RF_CTL_IO_READ, 4, 3, EBADMSG, 4, "malformed IO request: ");
	/* An ERROR is never answered, even a malformed one. */
	frame(f, RF_CTL_ERROR, 5, junk, 3);
	expect_nothing(f);
	/* A HEARTBEAT is answered with one. */
	frame(f, RF_CTL_HEARTBEAT, 6, NULL, 0);
	{
		struct rf_ctl_hdr h;
		const char *w;

		assert_int_equal(rf_ctl_recv(f->peer, &h, f->buf, RF_CTL_MAX_PAYLOAD, 1000, &w), 0);
		assert_int_equal(h.type, RF_CTL_HEARTBEAT);
		assert_true(h.req_id == 6);
	}
	assert_false(closing(f));
}

static void test_session_checks(void **state)
{
	struct fx *f = *state;

	refused(f, RF_CTL_VOLUME_REPORT, 3, 3, EPERM, 3, "VOLUME_REPORT before HELLO");
	refused(f, RF_CTL_SYNC_POSTED, 4, 3, EPERM, 4, "SYNC_POSTED before HELLO");
	/* A notification: its ERROR carries no request id. */
	refused(f, RF_CTL_PROGRESS, 5, 3, EPERM, 0, "PROGRESS before HELLO");
	f->c->agent = &f->a;
	refused(f, RF_CTL_PROGRESS, 6, 3, EBADMSG, 0, "malformed PROGRESS: ");
	refused(f, RF_CTL_VOLUME_REPORT, 7, 3, EBADMSG, 7, "malformed VOLUME_REPORT: ");
	/* HELLO's own check comes before its payload is looked at. */
	refused(f, RF_CTL_HELLO, 8, 3, EINVAL, 8, "HELLO was already sent on this connection");
	f->c->agent = NULL;
	refused(f, RF_CTL_HELLO, 9, 3, EBADMSG, 9, "malformed HELLO: ");
	assert_false(closing(f));
}

static void test_hello_wrong_version_closes(void **state)
{
	struct fx *f = *state;
	struct rf_ctl_hello m = {.proto = RF_CTL_VERSION + 1};
	uint8_t b[128];
	int n;

	strcpy(m.agent_id, "vm1");
	n = rf_ctl_enc_hello(b, sizeof(b), &m);
	assert_true(n > 0);
	frame(f, RF_CTL_HELLO, 1, b, (uint32_t)n);
	expect_error(f, EPROTONOSUPPORT, 1, "protocol version 2 is not supported (hub speaks 1)");
	assert_true(closing(f));
}

static void test_auth_refusals(void **state)
{
	struct fx *f = *state;

	/* Without psk_file: AUTH_* is answered, the connection stays. */
	refused(f, RF_CTL_AUTH_START, 1, 0, EOPNOTSUPP, 1, "this hub does not authenticate");
	assert_false(closing(f));
	/* With psk_file, authenticated as an agent: admin messages are refused. */
	f->h.auth_on = true;
	f->c->auth = AUTH_DONE;
	f->c->role = RF_AUTH_ROLE_AGENT;
	strcpy(f->c->auth_id, "vm2");
	refused(f, RF_CTL_STATUS, 2, 0, EACCES, 2,
	        "identity 'vm2' (role agent) may not send this message");
	refused(f, RF_CTL_IO_OPEN, 3, 0, EACCES, 3,
	        "identity 'vm2' (role agent) may not send this message");
	f->c->role = RF_AUTH_ROLE_ADMIN;
	strcpy(f->c->auth_id, "ops");
	refused(f, RF_CTL_PROGRESS, 4, 0, EACCES, 4,
	        "identity 'ops' (role admin) may not send this message"); /* the role refusal keeps
	                                                                     the request id */
	/* The handshake again after success: refused, closed. */
	refused(f, RF_CTL_AUTH_PROOF, 5, 0, EACCES, 5, "authentication failed");
	assert_true(closing(f));
	assert_int_equal(f->h.auth_failures, 1);
}

static void test_before_authentication(void **state)
{
	struct fx *f = *state;

	f->h.auth_on = true;
	refused(f, RF_CTL_STATUS, 1, 0, EACCES, 1,
	        "authentication required: this hub has a psk_file");
	assert_true(closing(f));
	assert_int_equal(f->h.auth_failures, 1);
}

static void test_error_before_authentication(void **state)
{
	struct fx *f = *state;

	f->h.auth_on = true;
	frame(f, RF_CTL_ERROR, 1, NULL, 0);
	/* Never an ERROR for an ERROR, but closed: end of stream, no byte. */
	assert_true(closing(f));
	{
		uint8_t b;

		assert_int_equal(recv(f->peer, &b, 1, MSG_DONTWAIT), 0);
	}
	assert_int_equal(f->h.refusals, 0);
}

static void test_auth_start_state(void **state)
{
	struct fx *f = *state;

	f->h.auth_on = true;
	/* A malformed AUTH_START is a failed authentication. */
	refused(f, RF_CTL_AUTH_START, 1, 3, EACCES, 1, "authentication failed");
	assert_true(closing(f));
	assert_int_equal(f->h.protocol_errors, 1);
	assert_int_equal(f->h.auth_failures, 1);
}

/* ---- VOLUME_REPORT -------------------------------------------------------- */

static int report(struct fx *f, const char *name, uint32_t vol_id, uint64_t size,
                  struct ctl_reply *r)
{
	union rf_ctl_msg m = {.volume_report = {.vol_id = vol_id, .size = size}};
	struct ctl_request rq = {.type = RF_CTL_VOLUME_REPORT,
	                         .req_id = 11,
	                         .desc = rf_ctl_msg_desc(RF_CTL_VOLUME_REPORT),
	                         .m = &m};

	snprintf(m.volume_report.name, sizeof(m.volume_report.name), "%s", name);
	memset(r, 0, sizeof(*r));
	f->c->agent = &f->a;
	return volume_report(f->c, &rq, r);
}

static void expect_refusal(struct fx *f, int rc, const struct ctl_reply *r, int code,
                           const char *why)
{
	assert_int_equal(rc, -code);
	if (strncmp(r->why, why, strlen(why)) != 0)
		fail_msg("reason '%s', expected '%s...'", r->why, why);
	assert_false(r->close);
	expect_nothing(f); /* the handler itself sends no ERROR */
}

static void test_report_unknown_volume(void **state)
{
	struct fx *f = *state;
	struct ctl_reply r;

	expect_refusal(f, report(f, "nope", 1, 1 << 20, &r), &r, ENOENT,
	               "no volume named 'nope' in the hub's configuration");
}

static void test_report_agent_binding(void **state)
{
	struct fx *f = *state;
	struct ctl_reply r;

	strcpy(f->vc[0].agent, "vm2");
	expect_refusal(f, report(f, "d0", 1, 1 << 20, &r), &r, EACCES,
	               "volume 'd0' belongs to agent 'vm2' (the hub's configuration)");
}

static void test_report_again_with_another_id(void **state)
{
	struct fx *f = *state;
	struct volume *v = &f->h.vols[0];
	struct ctl_reply r;
	struct rf_ctl_hdr h;
	const char *w;

	v->owner = &f->a;
	v->reported = true;
	v->has_state = true;
	v->vol_id = 1;
	v->size = 1 << 20;
	expect_refusal(f, report(f, "d0", 2, 1 << 20, &r), &r, EEXIST,
	               "volume 'd0' was already reported in this session as vol_id 1");
	expect_refusal(f, report(f, "d0", 1, 2 << 20, &r), &r, EEXIST,
	               "volume 'd0' was already reported in this session as vol_id 1");
	/* The same report again: answered the same, nothing changes. */
	assert_int_equal(report(f, "d0", 1, 1 << 20, &r), 0);
	assert_int_equal(rf_ctl_recv(f->peer, &h, f->buf, RF_CTL_MAX_PAYLOAD, 1000, &w), 0);
	assert_int_equal(h.type, RF_CTL_VOLUME_OK);
	assert_true(h.req_id == 11);
}

static void test_report_vol_id_taken(void **state)
{
	struct fx *f = *state;
	struct volume *o = &f->h.vols[1];
	struct ctl_reply r;

	o->owner = &f->a;
	o->reported = true;
	o->vol_id = 7;
	expect_refusal(f, report(f, "d0", 7, 1 << 20, &r), &r, EEXIST,
	               "vol_id 7 is already volume 'd1'");
}

static void test_report_failed_over(void **state)
{
	struct fx *f = *state;
	struct volume *v = &f->h.vols[0];
	struct ctl_reply r;

	v->failed_over = true;
	v->failover_seq = 42;
	expect_refusal(f, report(f, "d0", 1, 1 << 20, &r), &r, EPERM,
	               "volume 'd0' was failed over at seq 42: the hub no longer accepts it");
}

static void test_report_owned_by_a_live_agent(void **state)
{
	struct fx *f = *state;
	struct volume *v = &f->h.vols[0];
	struct ctl_reply r;

	v->owner = &f->other;
	v->reported = true;
	expect_refusal(f, report(f, "d0", 1, 1 << 20, &r), &r, EBUSY,
	               "volume 'd0' is protected by agent 'vm9'");
}

static void test_report_size_mismatch(void **state)
{
	struct fx *f = *state;
	struct ctl_reply r;
	char want[PATH_MAX + 128];
	FILE *img = fopen(f->vc[0].recovery, "w");

	assert_non_null(img);
	assert_int_equal(ftruncate(fileno(img), 1 << 20), 0);
	fclose(img);
	snprintf(want, sizeof(want),
	         "the volume is 2097152 bytes but its recovery image %s is 1048576 bytes",
	         f->vc[0].recovery);
	expect_refusal(f, report(f, "d0", 1, 2 << 20, &r), &r, EINVAL, want);
}

static void test_report_image_cannot_be_made(void **state)
{
	struct fx *f = *state;
	struct ctl_reply r;

	snprintf(f->vc[0].recovery, sizeof(f->vc[0].recovery), "/dev/null/no/d0.img");
	expect_refusal(f, report(f, "d0", 1, 1 << 20, &r), &r, EIO,
	               "cannot create the directory of /dev/null/no/d0.img");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_unknown_and_hub_only_types),
	    T(test_payload_checks),
	    T(test_session_checks),
	    T(test_hello_wrong_version_closes),
	    T(test_auth_refusals),
	    T(test_before_authentication),
	    T(test_error_before_authentication),
	    T(test_auth_start_state),
	    T(test_report_unknown_volume),
	    T(test_report_agent_binding),
	    T(test_report_again_with_another_id),
	    T(test_report_vol_id_taken),
	    T(test_report_failed_over),
	    T(test_report_owned_by_a_live_agent),
	    T(test_report_size_mismatch),
	    T(test_report_image_cannot_be_made),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: POINTS and ADMIN (failover test start/stop, failover).
 * The points themselves are points.c's, the test view volstate.c's and
 * apply.c's.
 *
 * Failover: fence the owner's data path, drain what landed before the
 * fence, apply the journal up to the point, fdatasync, drop later entries,
 * write failed_over=1 to the state file. From then on the owner's records
 * for the volume are dropped (counted, drain.c) and its VOLUME_REPORT refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl_server.h"
#include "handlers.h"
#include "journal.h"
#include "points.h"
#include "repfabric/log.h"
#include "session.h"
#include "sync.h"

#define SUBSYS "pit"

/* ---- POINTS -------------------------------------------------------------- */

static int named_volume(struct ctl_conn *c, const char *name, struct volume **v,
                        struct ctl_reply *r)
{
	*v = volume_find(c->hub, name);
	if (!*v)
		return ctl_fail(r, ENOENT, "no volume named '%s' in the hub's configuration", name);
	return 0;
}

int pit_points(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	struct rf_ctl_points_ok ok = {0};
	struct volume *v;
	uint8_t buf[128];
	int n, rc;

	rc = named_volume(c, rq->m->points.name, &v, r);
	if (rc)
		return rc;
	if (v->jr) {
		struct journal_info in;

		journal_get_info(v->jr, &in);
		ok.flags |= RF_POINTS_JOURNAL;
		ok.oldest_seq = in.oldest_seq;
		ok.oldest_time_ms = in.oldest_time_ms;
		ok.newest_seq = in.newest_seq;
		ok.newest_time_ms = in.newest_time_ms;
		ok.entries = in.entries;
		ok.bytes = in.bytes;
		ok.retain_ms = v->cfg->journal_time_ms;
		ok.retain_bytes = v->cfg->journal_size;
	} else if (v->owner) {
		ok.oldest_seq = ok.newest_seq = v->owner->durable_seq;
	}
	if (v->test) {
		ok.flags |= RF_POINTS_TEST;
		ok.test_seq = testview_seq(v);
	}
	if (v->failed_over)
		ok.flags |= RF_POINTS_FAILED_OVER;
	n = rf_ctl_enc_points_ok(buf, sizeof(buf), &ok);
	if (n > 0)
		ctl_send(c, RF_CTL_POINTS_OK, rq->req_id, buf, (uint32_t)n);
	return 0;
}

/* ---- ADMIN --------------------------------------------------------------- */

static void send_admin_ok(struct ctl_conn *c, uint64_t req_id, uint64_t seq, int64_t time_ms,
                          const char *text)
{
	struct rf_ctl_admin_ok ok = {.seq = seq, .time_ms = time_ms};
	uint8_t buf[RF_CTL_MAX_TEXT + 32];
	int n;

	snprintf(ok.text, sizeof(ok.text), "%s", text);
	n = rf_ctl_enc_admin_ok(buf, sizeof(buf), &ok);
	if (n > 0)
		ctl_send(c, RF_CTL_ADMIN_OK, req_id, buf, (uint32_t)n);
}

static int test_start(struct ctl_conn *c, uint64_t req_id, struct volume *v,
                      const struct rf_ctl_admin *m, struct ctl_reply *r)
{
	char why[512], text[PATH_MAX + 1024], t[40];
	uint64_t seq;
	int64_t tm;
	int rc;

	if (!v->jr)
		return ctl_fail(
		    r, EOPNOTSUPP,
		    "volume %s has no journal (journal_time = 0): a failover test needs "
		    "one",
		    v->cfg->name);
	if (v->failed_over)
		return ctl_fail(r, EPERM, "volume %s was failed over", v->cfg->name);
	if (v->test)
		return ctl_fail(r, EBUSY,
		                "a failover test is already running on %s (at seq %" PRIu64 ")",
		                v->cfg->name, testview_seq(v));
	if (v->fd < 0 || v->size == 0)
		return ctl_fail(r, EAGAIN, "volume %s has no recovery image yet", v->cfg->name);
	rc = pit_resolve_point(v, m, &seq, &tm, why, sizeof(why));
	if (!rc)
		rc = testview_start(v, seq, tm, why, sizeof(why));
	if (rc)
		return ctl_fail(r, -rc, "%s", why);
	pit_fmt_time(tm, t, sizeof(t));
	snprintf(text, sizeof(text),
	         "failover test of %s started at seq %" PRIu64 " (%s); applying the journal to "
	         "the recovery image is paused until it stops",
	         v->cfg->name, seq, t);
	RF_INFO(SUBSYS, "%s", text);
	send_admin_ok(c, req_id, seq, tm, text);
	return 0;
}

static int test_stop(struct ctl_conn *c, uint64_t req_id, struct volume *v, struct ctl_reply *r)
{
	char text[RF_CTL_MAX_TEXT];
	uint64_t seq;
	int64_t tm;

	if (!v->test)
		return ctl_fail(r, ENOENT, "no failover test is running on %s", v->cfg->name);
	seq = testview_seq(v);
	testview_stop(v);
	tm = v->jr ? pit_point_time(v->jr, seq) : 0;
	snprintf(text, sizeof(text),
	         "failover test of %s stopped; its scratch is discarded, the journal applies "
	         "again",
	         v->cfg->name);
	RF_INFO(SUBSYS, "%s", text);
	send_admin_ok(c, req_id, seq, tm, text);
	return 0;
}

static int failover(struct ctl_conn *c, uint64_t req_id, struct volume *v,
                    const struct rf_ctl_admin *m, struct ctl_reply *r)
{
	char why[512], text[PATH_MAX + 1024], t[40];
	struct hub_agent *a = v->owner;
	uint64_t seq;
	int64_t tm;
	int rc;

	if (v->failed_over)
		return ctl_fail(r, EALREADY,
		                "volume %s already failed over at seq %" PRIu64
		                "; its recovery image is %s",
		                v->cfg->name, v->failover_seq, v->cfg->recovery);
	if (!v->has_state || v->fd < 0)
		return ctl_fail(r, ENOENT, "volume %s was never protected: nothing to fail over",
		                v->cfg->name);
	if (v->test && !m->force)
		return ctl_fail(r, EBUSY,
		                "a failover test is running on %s (at seq %" PRIu64
		                "): stop it first, or fail over with --force",
		                v->cfg->name, testview_seq(v));
	if (v->test)
		testview_stop(v);
	/* No record from the owner is accepted after this; what landed is drained. */
	if (a) {
		session_fence(a, "failover");
		while (drain_agent(a, DRAIN_OFFLINE) > 0)
			;
	}
	rc = pit_resolve_point(v, m, &seq, &tm, why, sizeof(why));
	if (rc)
		return ctl_fail(r, -rc, "%s (the agent was fenced; nothing else changed)", why);
	if (v->jr) {
		rc = journal_drop_after(v->jr, seq);
		while (!rc && (rc = journal_retire(v->jr, v->fd, hub_wall_ms(), true, seq,
		                                   UINT64_MAX)) > 0)
			rc = 0;
	}
	if (!rc && fdatasync(v->fd))
		rc = -errno;
	if (rc)
		return ctl_fail(r, EIO,
		                "cannot apply the journal of %s up to seq %" PRIu64
		                ": %s (see the hub's log)",
		                v->cfg->name, seq, strerror(-rc));
	v->failed_over = true;
	v->failover_seq = seq;
	sync_stop(v);
	v->reported = false;
	volume_set_state(v, RF_VOL_DISCONNECTED, false);
	rc = volume_save_state(v);
	pit_fmt_time(tm, t, sizeof(t));
	snprintf(text, sizeof(text),
	         "failed over %s at seq %" PRIu64 " (%s)%s\nrecovery image: %s (raw, %" PRIu64
	         " bytes)",
	         v->cfg->name, seq, t, rc ? "; WARNING: the state file could not be written" : "",
	         v->cfg->recovery, v->size);
	RF_INFO(SUBSYS, "%s", text);
	send_admin_ok(c, req_id, seq, tm, text);
	return 0;
}

int pit_admin(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_admin *m = &rq->m->admin;
	struct volume *v;
	int rc;

	rc = named_volume(c, m->name, &v, r);
	if (rc)
		return rc;
	switch (m->op) {
	case RF_ADMIN_TEST_START:
		return test_start(c, rq->req_id, v, m, r);
	case RF_ADMIN_TEST_STOP:
		return test_stop(c, rq->req_id, v, r);
	default:
		return failover(c, rq->req_id, v, m, r);
	}
}

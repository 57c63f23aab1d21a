/* SPDX-License-Identifier: MIT */
/*
 * Point in time: the glue between the drain and each volume's journal
 * (journal.c), the retention timer, POINTS and ADMIN (failover test
 * start/stop, failover).
 *
 * A volume with journal_time > 0 has a journal in state_dir/journal/NAME:
 * drained records are appended there (pit_record), made durable before the
 * ring position is published (pit_commit), and applied to the recovery
 * image once they leave the retention window (pit_tick). While a failover
 * test runs on a volume nothing is applied to its image (the test reads
 * image + journal): the journal may then grow past journal_size.
 *
 * Failover: fence the owner's data path, drain what landed before the
 * fence, apply the journal up to the point, fdatasync, drop later entries,
 * write failed_over=1 to the state file. From then on the owner's records
 * for the volume are dropped (counted) and its VOLUME_REPORT refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "image_io.h"
#include "journal.h"
#include "repfabric/log.h"

#define SUBSYS          "pit"
#define RETIRE_PER_TICK (64ull << 20) /* bytes applied per volume per tick */

int64_t hub_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pit_volume_init(struct volume *v)
{
	struct journal_params p = {.retain_ms = v->cfg->journal_time_ms,
	                           .retain_bytes = v->cfg->journal_size};
	char dir[PATH_MAX];
	int rc;

	if (v->cfg->journal_time_ms == 0)
		return 0;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/journal/%s", v->hub->cfg->state_dir,
	                     v->cfg->name) >= sizeof(((struct journal *)0)->dir))
		return -ENAMETOOLONG;
	v->jr = calloc(1, sizeof(*v->jr));
	if (!v->jr)
		return -ENOMEM;
	rc = journal_open(v->jr, dir, &p);
	if (rc) {
		RF_ERR(SUBSYS, "volume %s: cannot open its journal %s: %s", v->cfg->name, dir,
		       strerror(-rc));
		free(v->jr);
		v->jr = NULL;
	}
	return rc;
}

void pit_volume_fini(struct volume *v)
{
	if (v->test)
		testview_stop(v);
	if (v->jr) {
		journal_sync(v->jr);
		journal_close(v->jr);
		free(v->jr);
		v->jr = NULL;
	}
}

/* A new owner: its sequences are another space. Apply everything first. */
int pit_owner_change(struct volume *v)
{
	int rc;

	if (v->test)
		testview_stop(v);
	if (!v->jr || v->fd < 0)
		return 0;
	do {
		rc = journal_retire(v->jr, v->fd, hub_wall_ms(), true, UINT64_MAX, UINT64_MAX);
	} while (rc > 0);
	if (rc < 0)
		return rc;
	return journal_reset(v->jr);
}

/* A new ring for @a: sequences restart, so its volumes' journals are applied and reset. */
int pit_ring_new(struct agent *a)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];
		int rc;

		if (!v->jr || strcmp(v->owner_id, a->id) != 0 || !v->jr->have_last)
			continue;
		RF_WARN(
		    SUBSYS,
		    "volume %s: agent %s gets a new ring (its sequences start over): the journal "
		    "is applied to the recovery image and its points are forgotten",
		    v->cfg->name, a->id);
		rc = v->fd < 0 ? -EIO : pit_owner_change(v);
		if (rc) {
			RF_ERR(
			    SUBSYS,
			    "volume %s: cannot apply the journal before agent %s gets a new ring: "
			    "%s",
			    v->cfg->name, a->id,
			    v->fd < 0 ? "the recovery image is not open" : strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int pit_record(struct volume *v, const struct rf_ring_record *r)
{
	int rc;

	if (v->failed_over) {
		if (v->dropped_records++ == 0)
			RF_WARN(SUBSYS,
			        "volume %s: failed over at seq %" PRIu64 "; refusing its former "
			        "owner's records for it (seq %" PRIu64 " and later are dropped)",
			        v->cfg->name, v->failover_seq, r->seq);
		return 0;
	}
	if (!v->jr)
		return image_apply(v->fd, r->type, r->offset, r->length, r->payload);
	rc = journal_append(v->jr, r->seq, hub_wall_ms(), (uint8_t)r->type, r->offset, r->length,
	                    r->payload, r->payload_len);
	return rc < 0 ? rc : 0;
}

int pit_commit(struct volume *v)
{
	if (v->jr)
		return journal_sync(v->jr);
	return fdatasync(v->fd) ? -errno : 0;
}

void pit_tick(struct hub *h, int64_t now)
{
	int64_t wall = hub_wall_ms();

	(void)now;
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (!v->jr || v->fd < 0 || v->test || v->failed_over)
			continue;
		journal_retire(v->jr, v->fd, wall, false, 0, RETIRE_PER_TICK);
	}
}

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

static void fmt_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		snprintf(buf, len, "before the journal");
		return;
	}
	gmtime_r(&t, &tm);
	if (strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0 || strlen(buf) + 6 > len) {
		snprintf(buf, len, "%" PRId64 " ms", ms);
		return;
	}
	snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ", (int)(ms % 1000));
}

/* The time of point @seq: its entry's, or the image's. */
static int64_t point_time(const struct journal *j, uint64_t seq)
{
	int64_t t = j->applied_time_ms;

	for (size_t i = j->head; i < j->n && j->ents[i].seq <= seq; i++)
		t = j->ents[i].time_ms;
	return t;
}

/* Resolve --at into a sequence. 0, or -errno with @why. */
static int resolve_point(struct volume *v, const struct rf_ctl_admin *m, uint64_t *seq,
                         int64_t *time_ms, char *why, size_t whylen)
{
	struct journal_info in;
	char a[40], b[40];

	if (!v->jr) {
		if (m->at != RF_AT_LATEST) {
			snprintf(why, whylen,
			         "volume %s has no journal (journal_time = 0): only --at latest",
			         v->cfg->name);
			return -EINVAL;
		}
		*seq = v->owner ? v->owner->durable_seq : 0;
		*time_ms = hub_wall_ms();
		return 0;
	}
	journal_get_info(v->jr, &in);
	fmt_time(in.oldest_time_ms, a, sizeof(a));
	fmt_time(in.newest_time_ms, b, sizeof(b));
	switch (m->at) {
	case RF_AT_LATEST:
		*seq = in.newest_seq;
		break;
	case RF_AT_TIME:
		if (journal_point_at(v->jr, (int64_t)m->value, seq)) {
			snprintf(why, whylen,
			         "that time is before the oldest retained point of %s (seq %" PRIu64
			         ", %s)",
			         v->cfg->name, in.oldest_seq, a);
			return -ERANGE;
		}
		break;
	default:
		if (m->value < in.oldest_seq || m->value > in.newest_seq) {
			snprintf(why, whylen,
			         "seq %" PRIu64 " is outside the retained points of %s (%" PRIu64
			         " at %s .. %" PRIu64 " at %s)",
			         m->value, v->cfg->name, in.oldest_seq, a, in.newest_seq, b);
			return -ERANGE;
		}
		*seq = m->value;
		break;
	}
	*time_ms = point_time(v->jr, *seq);
	return 0;
}

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
	rc = resolve_point(v, m, &seq, &tm, why, sizeof(why));
	if (!rc)
		rc = testview_start(v, seq, tm, why, sizeof(why));
	if (rc)
		return ctl_fail(r, -rc, "%s", why);
	fmt_time(tm, t, sizeof(t));
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
	tm = v->jr ? point_time(v->jr, seq) : 0;
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
	struct agent *a = v->owner;
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
	rc = resolve_point(v, m, &seq, &tm, why, sizeof(why));
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
	fmt_time(tm, t, sizeof(t));
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

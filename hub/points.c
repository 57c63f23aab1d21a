/* SPDX-License-Identifier: MIT */
/*
 * Engine: points in time (points.h). A volume with journal_time > 0 has a
 * journal in state_dir/journal/NAME (volstate.c opens it): drained records
 * are appended there (apply.c), made durable before the ring position is
 * published, and applied to the recovery image once they leave the
 * retention window (pit_tick). While a failover test runs on a volume
 * nothing is applied to its image (the test reads image + journal): the
 * journal may then grow past journal_size.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "journal.h"
#include "points.h"
#include "repfabric/log.h"

#define SUBSYS          "pit"
#define RETIRE_PER_TICK (64ull << 20) /* bytes applied per volume per tick */

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
int pit_ring_new(struct hub_agent *a)
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

void pit_fmt_time(int64_t ms, char *buf, size_t len)
{
	if (ms <= 0) {
		snprintf(buf, len, "before the journal");
		return;
	}
	rf_fmt_utc_ms(ms, buf, len);
}

/* The time of point @seq: its entry's, or the image's. */
int64_t pit_point_time(const struct journal *j, uint64_t seq)
{
	int64_t t = j->applied_time_ms;

	for (size_t i = j->head; i < j->n && j->ents[i].seq <= seq; i++)
		t = j->ents[i].time_ms;
	return t;
}

/* Resolve --at into a sequence. 0, or -errno with @why. */
int pit_resolve_point(struct volume *v, const struct rf_ctl_admin *m, uint64_t *seq,
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
	pit_fmt_time(in.oldest_time_ms, a, sizeof(a));
	pit_fmt_time(in.newest_time_ms, b, sizeof(b));
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
	*time_ms = pit_point_time(v->jr, *seq);
	return 0;
}

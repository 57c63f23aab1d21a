/* SPDX-License-Identifier: MIT */
/*
 * Engine: incremental resync, as the hub sees it (resync.h) (docs/ARCHITECTURE.md, "Recovery
 * rules"; docs/HUB.md, "Resync").
 *
 * The agent resends its bitmap-dirty regions by itself (read back under the
 * range lock, posted as SYNC-flagged DATA records); the hub only reads its
 * PROGRESS reports. A volume that completed a full sync with its owner is
 *
 *   resyncing  from the owner's VOLUME_REPORT (a reconnect: the agent may
 *              hold writes that only its bitmap knows), or from a PROGRESS
 *              that shows bytes waiting to be resent (congestion: its queue
 *              overflowed), until
 *   protected  a PROGRESS shows no byte waiting to be resent: every write
 *              the agent took is queued, in flight or durable here.
 *
 * Bytes resent are the agent's counter (per volume, since the agent
 * started); the hub adds them up across agent restarts (the PROGRESS
 * instance changes) for as long as it runs.
 */
#include <inttypes.h>

#include "resync.h"
#include "repfabric/log.h"

#define SUBSYS "resync"

void resync_begin(struct volume *v, const char *cause, bool notify)
{
	v->resync_cause = cause;
	v->resync_started = rf_now_ms();
	v->resync_bytes = 0;
	v->resyncs++;
	volume_set_state(v, RF_VOL_RESYNCING, notify);
}

static void resync_end(struct volume *v, int64_t now)
{
	v->last_resync_ms = now - v->resync_started;
	v->last_resync_bytes = v->resync_bytes;
	v->last_resync_cause = v->resync_cause;
	RF_INFO(SUBSYS,
	        "volume %s: resync after %s done: %" PRIu64 " bytes resent in %" PRId64 " ms",
	        v->cfg->name, v->resync_cause, v->last_resync_bytes, v->last_resync_ms);
	v->resync_cause = NULL;
	volume_set_state(v, RF_VOL_PROTECTED, true);
}

/*
 * Add the agent's resent counter to the hub's total. The first PROGRESS of
 * an agent run (a new instance: the agent or the hub restarted) brings what
 * that run resent before this hub heard of it: it counts in the total, not
 * in the resync under way (the agent sends a PROGRESS as it attaches,
 * before it resends anything in the session).
 */
static void count_resent(struct volume *v, uint64_t instance, uint64_t resent)
{
	uint64_t delta = 0;

	if (v->resent_instance != instance)
		v->resent_bytes += resent;
	else if (resent >= v->resent_seen)
		delta = resent - v->resent_seen;
	v->resent_bytes += delta;
	v->resync_bytes += delta;
	v->resent_instance = instance;
	v->resent_seen = resent;
}

void resync_on_progress(struct hub_agent *a, const struct rf_ctl_progress *m)
{
	int64_t now = rf_now_ms();
	bool congested = m->flags & RF_PROGRESS_CONGESTED;

	if (m->instance && m->congestions != a->congestions && a->progress_instance == m->instance)
		RF_INFO(SUBSYS,
		        "agent %s: congestion %u: its queue overflowed; writes are tracked in its "
		        "bitmap until it resends them",
		        a->id, m->congestions);
	else if (m->instance && a->congested && !congested && a->progress_instance == m->instance)
		RF_INFO(SUBSYS, "agent %s: caught up after congestion %u", a->id, m->congestions);
	a->progress_instance = m->instance;
	a->congestions = m->congestions;
	a->congested = congested;

	for (unsigned i = 0; i < m->nvols; i++) {
		struct volume *v = volume_by_vol_id(a, m->vols[i].vol_id, true);
		uint64_t resend = m->vols[i].resend_bytes;

		if (!v)
			continue;
		if (m->instance)
			count_resent(v, m->instance, m->vols[i].resent_bytes);
		v->resend_bytes = resend;
		if (!v->synced || v->sync.active)
			continue; /* the initial sync decides */
		if (!m->instance) {
			/* A short PROGRESS says nothing about resends. */
			if (v->state == RF_VOL_RESYNCING)
				resync_end(v, now);
			continue;
		}
		if (v->state == RF_VOL_RESYNCING && resend == 0)
			resync_end(v, now);
		else if (v->state == RF_VOL_PROTECTED && resend > 0)
			resync_begin(v, congested ? "congestion" : "dirty regions", true);
	}
}

void resync_ring_tail(struct hub_agent *a)
{
	struct rf_ring_verdict vd = {.status = RF_RING_ST_OK};
	struct rf_ring_record r;
	uint64_t pos, seq;

	if (!a->ring || rf_ring_peek(a->ring, &r, &vd) == 0)
		return;
	if (vd.status == RF_RING_ST_END || vd.status == RF_RING_ST_STALE)
		return;
	rf_ring_head(a->ring, &pos, &seq);
	RF_WARN(SUBSYS,
	        "agent %s: its ring ends in a %s record at seq %" PRIu64 " (%s): never durable "
	        "here, so it and whatever follows it are discarded; the agent resends those "
	        "writes",
	        a->id, rf_ring_status_name(vd.status), seq, vd.reason);
}

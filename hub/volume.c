/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: VOLUME_REPORT, an agent's claim of a volume. The volumes
 * themselves (state files, images, storage stacks) are volstate.c's; the
 * answer's state file is written before VOLUME_OK is sent (volstate.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl_server.h"
#include "handlers.h"
#include "points.h"
#include "repfabric/log.h"
#include "resync.h"
#include "session.h"
#include "sync.h"

#define SUBSYS "volume"

static int state_path(const struct volume *v, char *buf, size_t len, const char *suffix)
{
	return volume_state_path(v, buf, len, suffix);
}

/* ---- VOLUME_REPORT ------------------------------------------------------ */

static void send_ok(struct ctl_conn *c, uint64_t req_id, struct volume *v, uint8_t sync)
{
	struct rf_ctl_volume_ok ok = {.vol_id = v->vol_id,
	                              .state = (uint8_t)v->state,
	                              .sync = sync,
	                              .resync_rate = v->hub->cfg->resync_rate};
	uint8_t buf[32];
	int n = rf_ctl_enc_volume_ok(buf, sizeof(buf), &ok);

	if (n > 0)
		ctl_send(c, RF_CTL_VOLUME_OK, req_id, buf, (uint32_t)n);
}

/* needs_hello: the dispatcher refuses a VOLUME_REPORT before HELLO (EPERM). */
int volume_report(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	struct hub *h = c->hub;
	struct hub_agent *a = c->agent;
	const struct rf_ctl_volume_report m = rq->m->volume_report;
	uint64_t req_id = rq->req_id;
	char reason[PATH_MAX + 256];
	struct volume *v;
	bool full;
	int rc;

	v = volume_find(h, m.name);
	if (!v)
		return ctl_fail(r, ENOENT, "no volume named '%s' in the hub's configuration",
		                m.name);
	if (v->cfg->agent[0] && strcmp(v->cfg->agent, a->id) != 0) {
		RF_WARN(SUBSYS, "agent %s reported volume %s, which belongs to agent %s: refused",
		        a->id, m.name, v->cfg->agent);
		return ctl_fail(r, EACCES,
		                "volume '%s' belongs to agent '%s' (the hub's configuration)",
		                m.name, v->cfg->agent);
	}
	if (v->owner == a && v->reported) {
		if (v->vol_id == m.vol_id && v->size == m.size) {
			/* A repeat: answer the same, change nothing. */
			send_ok(c, req_id, v, v->sync.active ? RF_SYNC_FULL : RF_SYNC_NONE);
			return 0;
		}
		return ctl_fail(r, EEXIST,
		                "volume '%s' was already reported in this session as vol_id %u",
		                m.name, v->vol_id);
	}
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *o = &h->vols[i];

		if (o != v && o->owner == a && o->reported && o->vol_id == m.vol_id)
			return ctl_fail(r, EEXIST, "vol_id %u is already volume '%s'", m.vol_id,
			                o->cfg->name);
	}
	if (v->failed_over)
		return ctl_fail(r, EPERM,
		                "volume '%s' was failed over at seq %" PRIu64 ": the hub no longer "
		                "accepts it (its recovery image %s is the volume now; remove "
		                "%s/%s.state to protect it again)",
		                m.name, v->failover_seq, v->cfg->recovery, h->volumes_dir, m.name);
	if (v->owner && v->owner != a && agent_live(v->owner) && v->reported)
		return ctl_fail(r, EBUSY, "volume '%s' is protected by agent '%s'", m.name,
		                v->owner->id);
	rc = volume_open_image(v, m.size, true, reason, sizeof(reason));
	if (rc)
		return ctl_fail(r, rc == -EINVAL ? EINVAL : EIO, "%s", reason);
	if (v->owner && v->owner != a) {
		/* Whatever the previous owner's ring still holds for it goes first. */
		struct hub_agent *old = v->owner;

		while (drain_agent(old, DRAIN_OFFLINE) > 0)
			;
		RF_INFO(SUBSYS, "volume %s: moves from agent %s to agent %s", m.name, old->id,
		        a->id);
		rc = pit_owner_change(v);
		if (rc)
			return ctl_fail(r, EIO,
			                "cannot apply the journal of '%s' before the move: %s",
			                m.name, strerror(-rc));
	}
	/* An older mapping of this agent's vol_id (not reported now) is void. */
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *o = &h->vols[i];

		if (o != v && o->owner == a && o->has_state && o->vol_id == m.vol_id) {
			RF_INFO(SUBSYS, "volume %s: agent %s reuses its vol_id %u; forgetting it",
			        o->cfg->name, a->id, m.vol_id);
			o->owner = NULL;
			o->owner_id[0] = '\0';
			o->synced = false;
			o->has_state = false;
			o->state = RF_VOL_UNKNOWN;
			{
				char sp[PATH_MAX];

				if (!state_path(o, sp, sizeof(sp), ""))
					unlink(sp);
			}
		}
	}
	full =
	    !(v->has_state && v->synced && strcmp(v->owner_id, a->id) == 0 && m.bitmap_valid == 1);
	snprintf(v->owner_id, sizeof(v->owner_id), "%s", a->id);
	v->owner = a;
	v->vol_id = m.vol_id;
	v->size = m.size;
	if (full)
		v->synced = false;
	rc = volume_save_state(v);
	if (rc)
		return ctl_fail(r, EIO, "the hub cannot record the volume's state: %s",
		                strerror(-rc));
	v->reported = true;
	v->reported_session = a->session;
	v->dirty_bytes = 0;
	sync_stop(v);
	if (full) {
		rc = sync_start(v);
		if (rc) {
			v->reported = false;
			return ctl_fail(r, ENOMEM, "out of memory for the sync of '%s'", m.name);
		}
		volume_set_state(v, RF_VOL_SYNCING, false);
	} else {
		/* Until its PROGRESS says nothing waits to be resent. */
		resync_begin(v, "reconnect", false);
	}
	RF_INFO(SUBSYS, "volume %s: reported by agent %s as vol_id %u, %" PRIu64 " bytes, %s",
	        m.name, a->id, m.vol_id, m.size,
	        full ? (m.bitmap_valid ? "full sync (no completed sync with this agent)"
	                               : "full sync (the agent's bitmap is not valid)")
	             : "in sync (the agent resends its dirty regions)");
	send_ok(c, req_id, v, full ? RF_SYNC_FULL : RF_SYNC_NONE);
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Engine: drain an agent's ring (drain.h). Each record is applied by
 * apply.c: to the recovery image, or appended to the volume's journal that
 * applies it later.
 *
 * A batch peeks and applies records in sequence order, advancing the
 * in-memory head; then every touched image is fdatasync'ed, the head is
 * persisted, and only then is the position published to the producer. So
 * the published durable sequence always means "applied and on disk".
 *
 * A record is checked before it is applied: its vol_id must be a volume
 * this agent reported in its current session (or, with no session, the
 * mapping recorded in the volume's state file), and offset + length must be
 * inside the volume. An invalid record is logged with the reason and
 * counted, and fences the producer; a live drain then skips it for good (it
 * is never judged again under a later vol_id mapping), an offline drain
 * stops at it. A peek that fails at a sequence a DATA event announced as
 * landed is corruption: the producer is fenced the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "apply.h"
#include "drain.h"
#include "repfabric/log.h"

#define SUBSYS "drain"
/*
 * Is @r something we may apply? Fills @vout, or @why. @live: the volume must
 * have been reported in the agent's current session (else owning it is
 * enough).
 */
static int check_record(struct hub_agent *a, const struct rf_ring_record *r, bool live,
                        struct volume **vout, char *why, size_t whylen)
{
	struct volume *v;

	*vout = NULL;
	if (r->type != RF_RING_REC_DATA && r->type != RF_RING_REC_ZERO &&
	    r->type != RF_RING_REC_TRIM) {
		snprintf(why, whylen, "record type %u is not DATA, ZERO or TRIM", r->type);
		return -EINVAL;
	}
	if (r->type == RF_RING_REC_DATA && r->payload_len != r->length) {
		snprintf(why, whylen, "DATA record with %u payload bytes for a length of %u",
		         r->payload_len, r->length);
		return -EINVAL;
	}
	v = volume_by_vol_id(a, r->volume_id, live);
	if (!v) {
		/* A volume failed over away from this agent: its records are dropped. */
		v = volume_by_vol_id(a, r->volume_id, false);
		if (v && !v->failed_over)
			v = NULL;
	}
	if (!v) {
		snprintf(why, whylen, "vol_id %u is not a volume this agent %s", r->volume_id,
		         live ? "reported in its session" : "owns");
		return -EINVAL;
	}
	*vout = v;
	if (r->offset > v->size || r->length > v->size - r->offset) {
		snprintf(why, whylen,
		         "range %" PRIu64 "+%u is outside volume %s (%" PRIu64 " bytes)", r->offset,
		         r->length, v->cfg->name, v->size);
		return -EINVAL;
	}
	return 0;
}

/* Make the applied records durable: sync the images, then persist the head. */
static int commit(struct hub_agent *a)
{
	struct hub *h = a->hub;
	int rc;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		/* Only this agent's: a volume whose sync keeps failing must not
		 * hold up the other agents' durability. */
		if (!v->touched || v->fd < 0 || v->owner != a)
			continue;
		rc = apply_commit(v->fd, v->jr);
		if (rc) {
			agent_set_error(a, "fdatasync of %s (or its journal) failed: %s",
			                v->cfg->recovery, strerror(-rc));
			RF_ERR(SUBSYS,
			       "volume %s: fdatasync of %s (or its journal) failed: %s; the ring "
			       "head is not advanced, retrying",
			       v->cfg->name, v->cfg->recovery, strerror(-rc));
			return rc;
		}
		v->touched = false;
	}
	rc = rf_ring_persist_head(a->ring);
	if (rc) {
		agent_set_error(a, "cannot persist the ring head: %s", strerror(-rc));
		return rc;
	}
	rf_ring_head(a->ring, &a->durable_pos, &a->durable_seq);
	return 0;
}

static void invalid_record(struct hub_agent *a, enum drain_mode mode, uint64_t seq,
                           const char *what, struct volume *v, struct drain_result *res)
{
	if (!(a->stop_invalid && a->invalid_seq == seq)) {
		RF_ERR(SUBSYS, "agent %s: %s", a->id, what);
		agent_set_error(a, "%s", what);
		a->invalid_records++;
		if (v)
			v->invalid_records++;
		a->stop_invalid = true;
		a->invalid_seq = seq;
	}
	if (mode == DRAIN_LIVE && a->peer)
		res->fence = true;
}

/*
 * A volume failed over away from this agent: its records are dropped
 * (counted, logged once). True when @r is one of them.
 */
static bool dropped_after_failover(struct volume *v, const struct rf_ring_record *r)
{
	if (!v->failed_over)
		return false;
	if (v->dropped_records++ == 0)
		RF_WARN("pit",
		        "volume %s: failed over at seq %" PRIu64 "; refusing its former "
		        "owner's records for it (seq %" PRIu64 " and later are dropped)",
		        v->cfg->name, v->failover_seq, r->seq);
	return true;
}

int drain_batch(struct hub_agent *a, enum drain_mode mode, struct drain_result *res)
{
	struct hub *h = a->hub;
	uint64_t bytes = 0;
	unsigned n = 0;
	bool skipped = false;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	a->need_drain = false;
	if (!a->ring || a->ring_broken)
		return 0;
	if (a->drain_stuck && rf_now_ms() < a->drain_retry_at)
		return 0;
	a->drain_stuck = false;
	while (n < HUB_DRAIN_BATCH_RECS && bytes < HUB_DRAIN_BATCH_BYTES) {
		struct rf_ring_verdict vd = {.status = RF_RING_ST_OK};
		struct rf_ring_record r;
		struct volume *v;
		char why[256], what[512];

		if (rf_ring_peek(a->ring, &r, &vd)) {
			uint64_t hpos, hseq;

			rf_ring_head(a->ring, &hpos, &hseq);
			if (mode == DRAIN_LIVE && a->peer && a->landed_valid &&
			    hseq <= a->landed_seq) {
				snprintf(what, sizeof(what),
				         "record seq %" PRIu64
				         " was announced as landed but is not "
				         "valid: %s: %s",
				         hseq, rf_ring_status_name(vd.status), vd.reason);
				invalid_record(a, mode, hseq, what, NULL, res);
			}
			break;
		}
		if (check_record(a, &r, a->conn != NULL, &v, why, sizeof(why))) {
			snprintf(
			    what, sizeof(what),
			    "invalid record seq %" PRIu64 " (%s, vol_id %u, %" PRIu64 "+%u): %s",
			    r.seq, rf_ring_type_name(r.type), r.volume_id, r.offset, r.length, why);
			invalid_record(a, mode, r.seq, what, v, res);
			/* Refused once, refused for good: a producer's record is never
			 * judged again under a later vol_id mapping. (Its bytes are
			 * lost to the replica: a producer that writes such a record
			 * is broken or hostile, and it is fenced.) */
			if (mode == DRAIN_LIVE && rf_ring_advance(a->ring, &r) == 0) {
				a->stop_invalid = false;
				skipped = true;
			}
			break;
		}
		if (v->fd < 0)
			rc = -EBADF;
		else if (dropped_after_failover(v, &r))
			rc = 0;
		else
			rc = apply_record(v->fd, v->jr, &r, hub_wall_ms());
		if (rc) {
			agent_set_error(a, "cannot apply record seq %" PRIu64 " to %s: %s", r.seq,
			                v->cfg->recovery, strerror(-rc));
			RF_ERR(SUBSYS,
			       "agent %s: cannot apply record seq %" PRIu64 " to %s: %s; "
			       "retrying in 1 s",
			       a->id, r.seq, v->cfg->recovery, strerror(-rc));
			a->drain_stuck = true;
			a->drain_retry_at = rf_now_ms() + 1000;
			break;
		}
		rc = rf_ring_advance(a->ring, &r);
		if (rc)
			break;
		a->stop_invalid = false;
		v->touched = true;
		v->records++;
		v->bytes += r.length;
		a->records++;
		a->bytes += r.length;
		if (r.flags & RF_REC_FLAG_SYNC) {
			a->sync_records++;
			a->sync_bytes += r.length;
		}
		n++;
		bytes += r.payload_len + RF_RING_REC_HDR_SIZE;
	}
	if (n > 0) {
		int crc = commit(a);

		if (crc) {
			/* Nothing of this batch is durable: peek it again next time
			 * (a failed fdatasync may drop the pages and succeed later,
			 * so the records must be written again, not skipped). */
			rf_ring_rewind(a->ring);
			a->drain_stuck = true;
			a->drain_retry_at = rf_now_ms() + 1000;
			return crc;
		}
		res->durable = true;
		RF_DEBUG(SUBSYS, "agent %s: applied %u record(s), durable seq %" PRIu64, a->id, n,
		         a->durable_seq);
	} else if (skipped) {
		rc = rf_ring_persist_head(a->ring);
		if (rc) {
			/* Judged again by the next drain, on the retry timer. */
			rf_ring_rewind(a->ring);
			a->drain_stuck = true;
			a->drain_retry_at = rf_now_ms() + 1000;
			return rc;
		}
		rf_ring_head(a->ring, &a->durable_pos, &a->durable_seq);
		a->need_drain = true; /* what follows it, without a producer */
		h->more_work = true;
	}
	if (n >= HUB_DRAIN_BATCH_RECS || bytes >= HUB_DRAIN_BATCH_BYTES) {
		a->need_drain = true;
		h->more_work = true;
	}
	res->applied = n;
	return (int)n;
}

int drain_discard_invalid(struct hub_agent *a)
{
	struct rf_ring_record r;
	struct volume *v;
	char why[256];
	int rc;

	if (!a->ring || rf_ring_peek(a->ring, &r, NULL))
		return 0;
	/* Only what can never apply goes: a volume this agent owns but has not
	 * reported yet in this session keeps its records (the attach waits). */
	if (!check_record(a, &r, false, &v, why, sizeof(why)))
		return 0;
	RF_ERR(SUBSYS,
	       "agent %s: dropping invalid record seq %" PRIu64 " (%s, vol_id %u) left by an "
	       "earlier producer session: %s",
	       a->id, r.seq, rf_ring_type_name(r.type), r.volume_id, why);
	if (!(a->stop_invalid && a->invalid_seq == r.seq)) {
		a->invalid_records++;
		if (v)
			v->invalid_records++;
	}
	a->stop_invalid = false;
	rc = rf_ring_advance(a->ring, &r);
	if (!rc)
		rc = rf_ring_persist_head(a->ring);
	if (rc)
		return rc;
	rf_ring_head(a->ring, &a->durable_pos, &a->durable_seq);
	return 1;
}

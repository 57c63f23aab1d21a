/* SPDX-License-Identifier: MIT */
/*
 * Engine: initial full sync (docs/PROTOCOL.md, "Protect flow", steps 4-5;
 * sync.h). SYNC_POSTED's handler, sync_on_posted, is here too (handlers.h).
 *
 * The volume is walked in 1 MiB chunks. Each chunk is PENDING, INFLIGHT (a
 * SYNC_READ is out), POSTED (the agent answered SYNC_POSTED with the ring
 * sequence of the record that carries it) or SYNCED (the hub's durable
 * sequence passed that record). A chunk stays in the volume's window
 * until it is SYNCED: INFLIGHT and POSTED chunks together are at most a
 * quarter of the agent's ring (so the sync alone never fills the ring and
 * guest writes keep room), of which at most HUB_SYNC_WINDOW reads are out,
 * paced by sync_rate (a token bucket that may go into debt by one chunk).
 * EAGAIN from the agent (ring full, not attached) requeues the chunk; the
 * hub asks again, one read at a time until one succeeds, at its next
 * durable progress (that frees ring space) or after a back-off that doubles
 * per refusal episode (the reads sent before the first refusal are one
 * episode). A read unanswered for HUB_SYNC_TIMEOUT_MS is sent again.
 *
 * Sequence numbers only compare within one producer session: whenever the
 * data path attaches or detaches, chunks INFLIGHT or POSTED go back to
 * PENDING (answers to the old requests are then ignored as stale).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_server.h"
#include "handlers.h"
#include "repfabric/log.h"
#include "sync.h"

#define SUBSYS         "sync"
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define ERROR_RETRY_MS 1000
#define WINDOW_SHARE   4  /* the window holds at most 1/WINDOW_SHARE of the ring */
#define WINDOW_MAX     64 /* chunks */

static uint64_t chunk_len(const struct volume *v, uint64_t chunk)
{
	uint64_t off = chunk * v->sync.chunk;

	return v->size - off < v->sync.chunk ? v->size - off : v->sync.chunk;
}

void sync_stop(struct volume *v)
{
	volume_sync_clear(v);
}

int sync_start(struct volume *v)
{
	struct vol_sync *s = &v->sync;

	sync_stop(v);
	/* A record carries at most rf_ring_max_payload() bytes of the ring. */
	s->chunk = HUB_SYNC_CHUNK;
	if (v->owner) {
		/* The agent's ring, or the one its data attach will create. */
		uint64_t ds = v->owner->ring ? rf_ring_data_size(v->owner->ring)
		                             : v->owner->hub->cfg->ring_size;
		uint64_t maxp = rf_ring_max_payload(ds) & ~4095ull;

		if (maxp && maxp < s->chunk)
			s->chunk = maxp;
	}
	s->nchunks = (v->size + s->chunk - 1) / s->chunk;
	s->cstate = calloc(s->nchunks ? s->nchunks : 1, 1);
	if (!s->cstate)
		return -ENOMEM;
	s->active = true;
	s->tokens = (double)s->chunk;
	s->refill_at = s->started_at = rf_now_ms();
	return 0;
}

/*
 * Chunks @v may have in its window (INFLIGHT or POSTED, i.e. in the agent's
 * ring or about to be, until durable): a quarter of the ring, at least one.
 */
static uint64_t window_chunks(const struct volume *v)
{
	const struct hub_agent *a = v->owner;
	uint64_t ds = a->ring ? rf_ring_data_size(a->ring) : a->hub->cfg->ring_size;
	uint64_t n = ds / WINDOW_SHARE / v->sync.chunk;

	return n < 1 ? 1 : n > WINDOW_MAX ? WINDOW_MAX : n;
}

static void requeue(struct volume *v, uint64_t chunk)
{
	v->sync.cstate[chunk] = CHUNK_PENDING;
	if (chunk < v->sync.cursor)
		v->sync.cursor = chunk;
}

static void drop_inflight(struct vol_sync *s, unsigned i)
{
	s->infl[i] = s->infl[--s->ninfl];
}

void sync_requeue_unsynced(struct hub_agent *a)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];
		struct vol_sync *s = &v->sync;

		if (v->owner != a || !s->active)
			continue;
		for (unsigned k = 0; k < s->ninfl; k++)
			requeue(v, s->infl[k].chunk);
		for (size_t k = 0; k < s->nposted; k++)
			requeue(v, s->posted[k].chunk);
		s->ninfl = 0;
		s->nposted = 0;
	}
}

static void complete(struct volume *v)
{
	int64_t ms = rf_now_ms() - v->sync.started_at;

	v->synced = true;
	if (volume_save_state(v))
		RF_ERR(SUBSYS,
		       "volume %s: synced, but that is not recorded: the next sync after "
		       "a restart is a full one",
		       v->cfg->name);
	RF_INFO(SUBSYS, "volume %s: initial sync complete, %" PRIu64 " bytes in %.1f s",
	        v->cfg->name, v->size, (double)ms / 1000.0);
	sync_stop(v);
	volume_set_state(v, RF_VOL_PROTECTED, true);
}

void sync_on_durable(struct hub_agent *a)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];
		struct vol_sync *s = &v->sync;
		size_t k = 0;

		if (v->owner != a || !s->active)
			continue;
		while (k < s->nposted) {
			struct sync_posted *sp = &s->posted[k];

			if (sp->seq >= a->durable_seq) {
				k++;
				continue;
			}
			if (s->cstate[sp->chunk] == CHUNK_POSTED) {
				s->cstate[sp->chunk] = CHUNK_SYNCED;
				s->synced_chunks++;
				s->synced_bytes += chunk_len(v, sp->chunk);
			}
			*sp = s->posted[--s->nposted];
		}
		/* Refused for a full ring: the drain made room, ask again now. */
		if (s->wait_durable && a->durable_seq > s->refused_seq) {
			s->wait_durable = false;
			s->retry_at = 0;
		}
		if (s->synced_chunks == s->nchunks)
			complete(v);
	}
}

/* The volume and in-flight slot a request id belongs to. */
static struct volume *find_request(struct hub_agent *a, uint64_t req_id, unsigned *slot)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (v->owner != a || !v->sync.active)
			continue;
		for (unsigned k = 0; k < v->sync.ninfl; k++) {
			if (v->sync.infl[k].req_id == req_id) {
				*slot = k;
				return v;
			}
		}
	}
	return NULL;
}

/* The answer to a SYNC_READ; never refused (needs_hello: c->agent is set). */
int sync_on_posted(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	struct hub_agent *a = c->agent;
	const struct rf_ctl_sync_posted m = rq->m->sync_posted;
	uint64_t req_id = rq->req_id;
	struct volume *v;
	struct vol_sync *s;
	uint64_t chunk, floor;
	unsigned slot;

	v = find_request(a, req_id, &slot);
	if (!v) {
		RF_DEBUG(SUBSYS,
		         "agent %s: SYNC_POSTED for request %#llx, which is not "
		         "outstanding (stale): ignored",
		         a->id, (unsigned long long)req_id);
		return 0;
	}
	s = &v->sync;
	chunk = s->infl[slot].chunk;
	floor = s->infl[slot].durable_at_send;
	drop_inflight(s, slot);
	if (m.seq < floor) {
		/* Posted after our request, so it cannot be older than what was
		 * durable then: believing it would mark unsent data as synced. */
		RF_WARN(SUBSYS,
		        "agent %s: SYNC_POSTED names seq %" PRIu64 ", older than the request "
		        "(durable seq %" PRIu64 " when it was sent); asking again",
		        a->id, m.seq, floor);
		s->errors++;
		requeue(v, chunk);
		return 0;
	}
	if (m.vol_id != v->vol_id || m.offset != chunk * s->chunk ||
	    m.length != chunk_len(v, chunk)) {
		RF_WARN(SUBSYS,
		        "agent %s: SYNC_POSTED (vol_id %u, %" PRIu64 "+%u) does not match the "
		        "request (vol_id %u, %" PRIu64 "+%" PRIu64 "); asking again",
		        a->id, m.vol_id, m.offset, m.length, v->vol_id, chunk * s->chunk,
		        chunk_len(v, chunk));
		s->errors++;
		requeue(v, chunk);
		return 0;
	}
	if (s->backoff_ms) {
		/* The agent takes reads again: the whole window, now. */
		s->backoff_ms = 0;
		s->wait_durable = false;
		s->retry_at = 0;
	}
	if (s->nposted == s->posted_cap) {
		size_t cap = s->posted_cap ? 2 * s->posted_cap : 16;
		struct sync_posted *np = realloc(s->posted, cap * sizeof(*np));

		if (!np) {
			requeue(v, chunk);
			return 0;
		}
		s->posted = np;
		s->posted_cap = cap;
	}
	s->cstate[chunk] = CHUNK_POSTED;
	s->posted[s->nposted++] = (struct sync_posted){.chunk = chunk, .seq = m.seq};
	/* The record may already be durable (the drain ran first). */
	sync_on_durable(a);
	return 0;
}

bool sync_on_error(struct ctl_conn *c, uint64_t req_id, const struct rf_ctl_error *e)
{
	struct hub_agent *a = c->agent;
	struct volume *v;
	struct vol_sync *s;
	uint64_t chunk, durable_at_send;
	unsigned slot;

	if (!a || !(req_id & HUB_REQ_HUB_BIT))
		return false;
	v = find_request(a, req_id, &slot);
	if (!v)
		return false;
	s = &v->sync;
	chunk = s->infl[slot].chunk;
	durable_at_send = s->infl[slot].durable_at_send;
	drop_inflight(s, slot);
	requeue(v, chunk);
	if (e->code == EAGAIN) {
		s->eagain++;
		/* The other reads of the window sent before the first refusal
		 * were refused for the same reason: one episode, one back-off. */
		if (req_id <= s->refused_upto)
			return true;
		s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
		if (s->backoff_ms > BACKOFF_MAX_MS)
			s->backoff_ms = BACKOFF_MAX_MS;
		s->refused_upto = s->last_req;
		s->refused_seq = a->durable_seq;
		s->wait_durable = true;
		s->retry_at = rf_now_ms() + s->backoff_ms;
		/* Room was made since the read was sent: the agent may not have
		 * known yet. One probe now; a second refusal waits. */
		if (a->durable_seq > durable_at_send) {
			s->wait_durable = false;
			s->retry_at = 0;
		}
		RF_DEBUG(SUBSYS,
		         "volume %s: agent busy (%s); retrying at the next durable progress, "
		         "in %u ms at the latest",
		         v->cfg->name, e->reason, s->backoff_ms);
	} else {
		s->errors++;
		s->retry_at = rf_now_ms() + ERROR_RETRY_MS;
		RF_WARN(SUBSYS,
		        "volume %s: SYNC_READ at %" PRIu64 " failed on agent %s: %s (%s); "
		        "retrying",
		        v->cfg->name, chunk * s->chunk, a->id, strerror(e->code), e->reason);
	}
	return true;
}

/* Send what the window and the pacing allow for @v. */
static void pump_volume(struct hub *h, struct volume *v, int64_t now)
{
	struct vol_sync *s = &v->sync;
	uint64_t rate = h->cfg->sync_rate;
	struct ctl_conn *c = v->owner->conn;
	uint64_t window = window_chunks(v);
	/* Refused since the last success: probe with one read. */
	unsigned reads = s->backoff_ms ? 1 : HUB_SYNC_WINDOW;

	if (now < s->retry_at)
		return;
	if (rate) {
		double cap =
		    (double)rate / 5 > (double)s->chunk ? (double)rate / 5 : (double)s->chunk;

		s->tokens += (double)rate * (double)(now - s->refill_at) / 1000.0;
		if (s->tokens > cap)
			s->tokens = cap;
	}
	s->refill_at = now;
	while (s->ninfl < reads && s->ninfl + s->nposted < window && (!rate || s->tokens > 0)) {
		struct rf_ctl_sync_read m;
		uint8_t buf[32];
		uint64_t req;
		int n;

		while (s->cursor < s->nchunks && s->cstate[s->cursor] != CHUNK_PENDING)
			s->cursor++;
		if (s->cursor >= s->nchunks)
			return;
		m.vol_id = v->vol_id;
		m.offset = s->cursor * s->chunk;
		m.length = (uint32_t)chunk_len(v, s->cursor);
		n = rf_ctl_enc_sync_read(buf, sizeof(buf), &m);
		if (n < 0)
			return;
		req = hub_new_req_id(h);
		if (ctl_send(c, RF_CTL_SYNC_READ, req, buf, (uint32_t)n))
			return;
		s->cstate[s->cursor] = CHUNK_INFLIGHT;
		s->infl[s->ninfl++] =
		    (struct sync_inflight){.req_id = req,
		                           .chunk = s->cursor,
		                           .sent_at = now,
		                           .durable_at_send = v->owner->durable_seq};
		s->requests++;
		s->last_req = req;
		if (rate)
			s->tokens -= (double)m.length;
	}
}

void sync_pump(struct hub *h, int64_t now)
{
	if (h->stopping)
		return;
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (!v->sync.active || !v->reported || !v->owner || !v->owner->conn ||
		    !v->owner->peer || v->owner->conn->closing || v->owner->conn->dead)
			continue;
		pump_volume(h, v, now);
	}
}

void sync_tick(struct hub *h, int64_t now)
{
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];
		struct vol_sync *s = &v->sync;

		if (!s->active)
			continue;
		for (unsigned k = 0; k < s->ninfl;) {
			if (now - s->infl[k].sent_at < HUB_SYNC_TIMEOUT_MS) {
				k++;
				continue;
			}
			RF_WARN(SUBSYS,
			        "volume %s: SYNC_READ at %" PRIu64 " unanswered for %d s; "
			        "asking again",
			        v->cfg->name, s->infl[k].chunk * s->chunk,
			        HUB_SYNC_TIMEOUT_MS / 1000);
			requeue(v, s->infl[k].chunk);
			drop_inflight(s, k);
		}
	}
}

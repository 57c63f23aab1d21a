/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: agents' sessions (session.h); the agents themselves are
 * agent.c's. HELLO and PROGRESS are handled here (handlers.h).
 *
 * A control session runs
 * from HELLO to the close of that connection (or its replacement by a newer
 * one); during it the agent may attach its data path with the session's
 * token, as often as it needs to: each attach drains the ring and starts a
 * new producer session (rf_ring_begin_session), exactly as
 * tests/fabric/conformance_hub.c hub_attach does.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ctl_server.h"
#include "handlers.h"
#include "points.h"
#include "repfabric/log.h"
#include "resync.h"
#include "session.h"
#include "sync.h"

#define SUBSYS            "session"
#define ATTACH_PENDING_MS 10000

int agent_open_ring(struct hub_agent *a)
{
	int rc = agent_ring_open(a, false);

	if (rc == -ENOENT) {
		/* Its sequences start over: the journals go first, so a crash
		 * in between leaves no new ring beside an old journal. */
		rc = pit_ring_new(a);
		if (!rc)
			rc = agent_ring_open(a, true);
	}
	return rc ? agent_ring_failed(a, rc) : 0;
}

int drain_agent(struct hub_agent *a, enum drain_mode mode)
{
	struct drain_result res;
	int n;

	/* Rule pmem: what landed is durable once flushed in the ring, before
	 * (and whatever) the apply does. */
	agent_make_durable(a);
	n = drain_batch(a, mode, &res);

	if (res.fence)
		session_fence(a, "invalid record in the ring");
	if (res.durable) {
		sync_on_durable(a);
		agent_publish_applied(a);
	}
	return n;
}

/* Apply everything the ring holds, with no producer attached. */
static void drain_fully(struct hub_agent *a)
{
	int n;

	do {
		n = drain_agent(a, DRAIN_OFFLINE);
	} while (n > 0);
}

void session_scan_rings(struct hub *h)
{
	DIR *d = opendir(h->rings_dir);
	struct dirent *de;

	if (!d) {
		RF_ERR(SUBSYS, "cannot list %s: %s", h->rings_dir, strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char id[RF_CTL_MAX_NAME + 1];

		if (n <= 5 || strcmp(de->d_name + n - 5, ".ring") != 0 || n - 5 > RF_CTL_MAX_NAME)
			continue;
		memcpy(id, de->d_name, n - 5);
		id[n - 5] = '\0';
		if (!rf_ctl_name_ok(id)) {
			RF_WARN(SUBSYS, "ignoring %s/%s: not an agent ring name", h->rings_dir,
			        de->d_name);
			continue;
		}
		if (!agent_get(h, id))
			continue;
	}
	closedir(d);
	for (struct hub_agent *a = h->agents; a; a = a->next) {
		uint64_t before;

		if (access(a->ring_path, F_OK) != 0 || agent_open_ring(a))
			continue;
		before = a->records;
		drain_fully(a);
		RF_INFO(SUBSYS, "agent %s: %" PRIu64 " record(s) applied from its ring at start-up",
		        a->id, a->records - before);
		resync_ring_tail(a);
	}
}

/* The data attach token: from the CSPRNG, never 0; 0 when there is none. */
static uint64_t random_token(void)
{
	uint64_t v = 0;

	for (int i = 0; i < 4 && v == 0; i++)
		if (rf_auth_random(&v, sizeof(v)))
			return 0;
	return v;
}

void session_fence(struct hub_agent *a, const char *why)
{
	if (!a->peer)
		return;
	RF_WARN(SUBSYS, "agent %s: fencing the data connection: %s", a->id, why);
	rf_fab_peer_fence(a->peer);
	a->peer = NULL;
	a->fences++;
	a->landed_valid = false;
	/* What landed before the fence is applied without a producer. */
	a->need_drain = true;
	a->hub->more_work = true;
}

/* @a's session ended: the volumes it reported are disconnected. */
static void volumes_disconnected(struct hub_agent *a)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (v->owner != a || !v->reported)
			continue;
		if (v->sync.active)
			RF_INFO("volume",
			        "volume %s: initial sync interrupted; it restarts when the "
			        "agent is back",
			        v->cfg->name);
		sync_stop(v);
		v->reported = false;
		volume_set_state(v, RF_VOL_DISCONNECTED, false);
	}
}

/* The control session ends: the data path goes with it. */
static void session_end(struct hub_agent *a, const char *why)
{
	if (a->peer) {
		RF_INFO(SUBSYS, "agent %s: closing its data connection (%s)", a->id, why);
		rf_fab_peer_fence(a->peer);
		a->peer = NULL;
		a->hub->more_work = true; /* reap the DETACHED event */
	}
	a->token = 0;
	a->attach_pending = false;
	a->landed_valid = false;
	a->conn = NULL;
	a->have_progress = false;
	drain_fully(a);
	volumes_disconnected(a);
}

void session_conn_closed(struct ctl_conn *c)
{
	struct hub_agent *a = c->agent;

	c->agent = NULL;
	if (a && a->conn == c)
		session_end(a, "control connection closed");
}

int session_hello_check(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	if (c->agent)
		return ctl_fail(r, EINVAL, "HELLO was already sent on this connection");
	return 0;
}

int session_hello(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	struct hub *h = c->hub;
	const struct rf_ctl_hello *m = &rq->m->hello;
	struct rf_ctl_hello_ok ok = {0};
	uint8_t buf[RF_CTL_MAX_TEXT + 64];
	struct hub_agent *a;
	uint64_t token;
	int n, rc;

	if (m->proto != RF_CTL_VERSION) {
		r->close = true;
		return ctl_fail(r, EPROTONOSUPPORT,
		                "protocol version %u is not supported (hub speaks %u)", m->proto,
		                RF_CTL_VERSION);
	}
	if (h->auth_on && strcmp(c->auth_id, m->agent_id) != 0) {
		RF_WARN(SUBSYS, "%s: authenticated as '%s' but HELLO names agent '%s': refused",
		        c->peer, c->auth_id, m->agent_id);
		h->auth_failures++;
		r->close = true;
		return ctl_fail(r, EACCES,
		                "authenticated as '%s': a HELLO may only name that agent",
		                c->auth_id);
	}
	a = agent_get(h, m->agent_id);
	if (!a)
		return ctl_fail(r, ENOMEM, "out of memory");
	if (a->conn) {
		struct ctl_conn *old = a->conn;

		RF_INFO(SUBSYS, "agent %s: new control connection from %s replaces the one from %s",
		        a->id, c->peer, old->peer);
		session_end(a, "replaced by a new connection");
		old->agent = NULL;
		ctl_send_error(old, 0, ECONNRESET, "replaced by a new connection of agent %s",
		               a->id);
		ctl_close_after_flush(old);
	}
	/* An existing ring is opened and drained now; a new one is only
	 * created at the data attach, once the agent reported a volume of ours
	 * (so a HELLO alone allocates nothing). */
	rc = access(a->ring_path, F_OK) == 0 ? agent_open_ring(a) : 0;
	if (rc)
		return ctl_fail(r, EIO, "the hub cannot open this agent's ring: %s", strerror(-rc));
	/* Under the mapping the agent had so far: apply what is valid, drop
	 * what never can be, before this session's reports change vol_ids. */
	do {
		drain_fully(a);
	} while (drain_discard_invalid(a) > 0);
	token = random_token();
	if (!token)
		return ctl_fail(r, EIO, "the hub has no random bytes for a data token");
	a->conn = c;
	c->agent = a;
	a->session = ++h->next_session;
	a->token = token;
	a->landed_valid = false;
	a->have_progress = false;
	a->sessions++;
	c->last_hb_sent = rf_now_ms();
	ok.session = a->session;
	ok.token = a->token;
	snprintf(ok.data_url, sizeof(ok.data_url), "%s", h->cfg->data);
	n = rf_ctl_enc_hello_ok(buf, sizeof(buf), &ok);
	if (n < 0)
		return ctl_fail(r, EIO, "cannot encode HELLO_OK");
	RF_INFO(SUBSYS, "agent %s: connected from %s (session %" PRIu64 ")", a->id, c->peer,
	        a->session);
	ctl_send(c, RF_CTL_HELLO_OK, rq->req_id, buf, (uint32_t)n);
	return 0;
}

/* A notification: nothing is answered (needs_hello: c->agent is set). */
/* The volume's acknowledgement level and fallback, from PROGRESS's ack
 * tail; a change of the fallback is logged here too (the agent logs why). */
static void note_ack(struct volume *v, const struct rf_ctl_progress *m, unsigned i)
{
	bool fb;

	if (!(m->flags & RF_PROGRESS_ACK))
		return;
	fb = m->vols[i].ack_flags & RF_PROGRESS_VOL_FALLBACK;
	if (v->ack_known && fb != v->ack_fallback)
		RF_INFO(SUBSYS, "volume %s: %s", v->cfg->name,
		        fb ? "acknowledgements fell back to async (the agent could not wait for "
		             "the hub)"
		           : "durable acknowledgements again");
	v->ack_known = true;
	v->ack = m->vols[i].ack;
	v->ack_fallback = fb;
	v->ack_fallbacks = m->vols[i].ack_fallbacks;
}

int session_progress(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_progress *m = &rq->m->progress;
	struct hub_agent *a = c->agent;
	int64_t now = rf_now_ms();

	a->have_progress = true;
	a->progress_next_seq = m->next_seq;
	a->progress_queued = m->queued;
	a->progress_at = now;
	a->progress_count++;
	for (unsigned i = 0; i < m->nvols; i++) {
		struct volume *v = volume_by_vol_id(a, m->vols[i].vol_id, true);

		if (v) {
			v->dirty_bytes = m->vols[i].dirty_bytes;
			note_ack(v, m, i);
		} else
			RF_DEBUG(SUBSYS,
			         "agent %s: PROGRESS names vol_id %u, which it did not report",
			         a->id, m->vols[i].vol_id);
	}
	resync_on_progress(a, m);
	for (size_t i = 0; i < c->hub->nvols; i++) {
		struct volume *v = &c->hub->vols[i];

		if (v->owner == a && v->reported) {
			v->progress_count++;
			v->progress_at = now;
		}
	}
	return 0;
}

/* ---- the data path ---------------------------------------------------- */

static struct hub_agent *agent_by_token(struct hub *h, uint64_t token)
{
	if (!token)
		return NULL;
	for (struct hub_agent *a = h->agents; a; a = a->next)
		if (a->token == token)
			return a;
	return NULL;
}

static struct hub_agent *agent_by_peer(struct hub *h, const struct rf_fab_peer *p)
{
	for (struct hub_agent *a = h->agents; a; a = a->next)
		if (a->peer == p)
			return a;
	return NULL;
}

int session_fab_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem)
{
	struct hub *h = ctx;
	struct hub_agent *a = agent_by_token(h, token);
	struct rf_ring_info info;
	uint64_t end_pos, end_seq;
	int rc;

	if (!agent_live(a) || h->stopping)
		return -ENOENT;
	if (a->peer || a->attach_pending)
		return -EBUSY;
	if (!a->ring) {
		bool owns = false;

		for (size_t i = 0; i < h->nvols; i++)
			owns |= h->vols[i].owner == a && h->vols[i].reported;
		if (!owns) {
			RF_WARN(SUBSYS, "agent %s: data attach before any volume was reported",
			        a->id);
			return -EPERM;
		}
		if (agent_open_ring(a))
			return -EIO;
	}
	/* Apply what the ring holds; records an earlier producer left that
	 * can never be applied (unknown volume, out of bounds) are dropped. */
	do {
		drain_fully(a);
	} while (drain_discard_invalid(a) > 0);
	/* Sync reads not yet durable were in the old sequence space. */
	sync_requeue_unsynced(a);
	rf_ring_head(a->ring, &end_pos, &end_seq);
	rc = rf_ring_begin_session(a->ring, &info);
	if (rc) {
		RF_WARN(SUBSYS, "agent %s: cannot start a producer session: %s", a->id,
		        rc == -EBUSY ? "records in the ring cannot be applied yet" : strerror(-rc));
		return rc == -EBUSY ? -EBUSY : -EIO;
	}
	a->durable_pos = info.head_pos;
	a->durable_seq = info.head_seq;
	a->landed_valid = false;
	a->landed_seq = 0;
	a->attach_pending = true;
	a->attach_pending_at = rf_now_ms();
	a->attaches++;
	memset(mem, 0, sizeof(*mem));
	mem->data = (uint8_t *)rf_ring_base(a->ring) + rf_ring_data_offset(a->ring);
	mem->data_size = info.data_size;
	mem->path = a->ring_path;
	mem->data_off = rf_ring_data_offset(a->ring);
	mem->info.ring_id = info.ring_id;
	mem->info.data_size = info.data_size;
	mem->info.pos.durable_pos = end_pos;
	mem->info.pos.durable_seq = end_seq;
	mem->info.pos.head_pos = info.head_pos;
	mem->info.pos.head_seq = info.head_seq;
	return 0;
}

static void on_attached(struct hub *h, const struct rf_fab_hub_event *ev)
{
	struct hub_agent *a = agent_by_token(h, ev->token);

	if (!agent_live(a) || a->peer) {
		RF_WARN(SUBSYS, "a data connection attached with a token that is no longer valid");
		rf_fab_peer_fence(ev->peer);
		return;
	}
	a->peer = ev->peer;
	a->attach_pending = false;
	a->published_head = a->durable_pos; /* the head its WELCOME/accept carried */
	a->head_due = false;
	RF_INFO(SUBSYS, "agent %s: data path attached (producer session at seq %" PRIu64 ")", a->id,
	        a->durable_seq);
}

static void on_detached(struct hub *h, const struct rf_fab_hub_event *ev)
{
	struct hub_agent *a = agent_by_peer(h, ev->peer);

	if (!a) {
		a = agent_by_token(h, ev->token);
		if (a && a->attach_pending)
			a->attach_pending = false;
		return;
	}
	RF_INFO(SUBSYS, "agent %s: data path detached%s%s", a->id, ev->err ? ": " : "",
	        ev->err ? strerror(-ev->err) : "");
	a->peer = NULL;
	a->landed_valid = false;
	drain_fully(a);
	sync_requeue_unsynced(a);
}

void session_fab_poll(struct hub *h)
{
	struct rf_fab_hub_event evs[64];
	int n;

	if (!h->fab)
		return;
	do {
		n = rf_fab_listener_poll(h->fab, evs, 64, 0);
		if (n < 0) {
			if (n != -EINTR)
				RF_ERR(SUBSYS, "fabric listener: %s", strerror(-n));
			return;
		}
		for (int i = 0; i < n; i++) {
			struct hub_agent *a;

			switch (evs[i].type) {
			case RF_FAB_HEV_ATTACHED:
				on_attached(h, &evs[i]);
				break;
			case RF_FAB_HEV_DATA:
				a = agent_by_peer(h, evs[i].peer);
				if (!a)
					break;
				if (!a->landed_valid || evs[i].seq > a->landed_seq)
					a->landed_seq = evs[i].seq;
				a->landed_valid = true;
				a->need_drain = true;
				h->last_data_ms = rf_now_ms();
				break;
			case RF_FAB_HEV_DETACHED:
				on_detached(h, &evs[i]);
				break;
			}
		}
	} while (n == 64);
}

void session_tick(struct hub *h, int64_t now)
{
	for (struct hub_agent *a = h->agents; a; a = a->next) {
		if (a->attach_pending && now - a->attach_pending_at > ATTACH_PENDING_MS)
			a->attach_pending = false;
		if (a->ring && (a->peer || a->drain_stuck))
			a->need_drain = true;
		agent_publish_head_tick(a);
	}
}

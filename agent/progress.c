/* SPDX-License-Identifier: MIT */
/*
 * Progress, one job: tell the hub how far the agent is (PROGRESS: next
 * sequence, queue, dirty and resend bytes, congestion) and track what the
 * hub made durable (POSITION -> durable_seq -> rf_agent_wait_durable). The
 * resync and congestion log lines are taken here too, from the same
 * numbers.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_internal.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

#define PROGRESS_MIN_MS 100 /* a changed PROGRESS waits at least this long */

#define PROGRESS_MAX_MS 1000 /* an unchanged one is sent this often */

/* ---- PROGRESS -------------------------------------------------------------- */

/*
 * Resync bookkeeping for the log, from the resend bytes of @v (attached):
 * a resync begins when chunks wait to be read back and ends when none do.
 */
static void resync_track(struct rf_agent_vol *v, uint64_t resend, uint64_t resent, int64_t now)
{
	if (resend && !v->rs_active) {
		v->rs_active = true;
		v->rs_start_ms = now;
		v->rs_base = resent;
		RF_INFO("agent", "volume %s: resync: %" PRIu64 " bytes of dirty regions to resend",
		        v->name, resend);
	} else if (!resend && v->rs_active) {
		v->rs_active = false;
		RF_INFO("agent",
		        "volume %s: resync done: %" PRIu64 " bytes resent in %" PRId64 " ms",
		        v->name, resent - v->rs_base, now - v->rs_start_ms);
	}
}

/* The congestion is over once nothing that overflowed waits for a resend. */
static void congestion_track(struct rf_agent *a, uint64_t resend_total, int64_t now)
{
	uint64_t resent = 0;
	int64_t since = 0;
	uint32_t nth = 0;
	bool over = false;

	pthread_mutex_lock(&a->lock);
	if (a->congested && resend_total == 0) {
		a->congested = false;
		over = true;
		resent = a->resent_bytes - a->congested_resent;
		since = a->congested_ms;
		nth = a->congestions;
	}
	pthread_mutex_unlock(&a->lock);
	if (over)
		RF_INFO("agent",
		        "caught up after congestion %u: %" PRIu64 " bytes resent, %" PRId64
		        " ms after the queue overflowed",
		        nth, resent, now - since);
}

/* Build and send PROGRESS when due (see the spec: changed, at most every
 * 100 ms; at least every second). */
void rfa_progress(struct rf_agent *a, bool force)
{
	struct rfa_conn *c = &a->c;
	struct rf_ctl_progress m;
	unsigned n = atomic_load(&a->nvols);
	int64_t now = rf_now_ms(), since = now - c->last_progress_ms;
	uint64_t resend_total = 0;
	uint8_t *buf;
	size_t cap;
	bool changed;

	if (!rfa_link_data_up(a->link))
		return;
	memset(&m, 0, sizeof(m));
	m.next_seq = rf_ring_producer_next_seq(c->rp);
	m.instance = a->instance;
	pthread_mutex_lock(&a->lock);
	m.queued = a->q_count;
	m.congestions = a->congestions;
	for (unsigned i = 0; i < n; i++) {
		const struct rf_agent_vol *v = a->vols[i];

		if (!v->ok)
			continue;
		m.vols[m.nvols].vol_id = v->vol_id;
		m.vols[m.nvols].resent_bytes = v->resent_bytes;
		m.vols[m.nvols].ack = (uint8_t)v->ack;
		m.vols[m.nvols].ack_flags = v->ack_fallback ? RF_PROGRESS_VOL_FALLBACK : 0;
		m.vols[m.nvols++].ack_fallbacks = (uint32_t)v->ack_fallbacks;
	}
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < m.nvols; i++) {
		struct rf_agent_vol *v = rfa_vol_by_id(a, m.vols[i].vol_id);

		m.vols[i].dirty_bytes = rfa_dirty_bytes(v);
		m.vols[i].resend_bytes = rfa_resend_bytes(v);
		resend_total += m.vols[i].resend_bytes;
		resync_track(v, m.vols[i].resend_bytes, m.vols[i].resent_bytes, now);
		rfa_ack_check_caught_up(v, m.vols[i].resend_bytes, m.vols[i].dirty_bytes);
	}
	if (m.nvols)
		congestion_track(a, resend_total, now);
	pthread_mutex_lock(&a->lock);
	m.flags = (a->congested ? RF_PROGRESS_CONGESTED : 0) | RF_PROGRESS_ACK;
	pthread_mutex_unlock(&a->lock);
	changed = !c->progress_sent || m.next_seq != c->last_progress.next_seq ||
	          m.queued != c->last_progress.queued || m.nvols != c->last_progress.nvols ||
	          m.congestions != c->last_progress.congestions ||
	          m.flags != c->last_progress.flags ||
	          memcmp(m.vols, c->last_progress.vols, m.nvols * sizeof(m.vols[0])) != 0;
	c->progress_changed = changed;
	if (!force && !(changed && since >= PROGRESS_MIN_MS) && since < PROGRESS_MAX_MS)
		return;
	cap = 14 + (size_t)m.nvols * 12 + 13 + (size_t)m.nvols * 16 + (size_t)m.nvols * 6;
	buf = malloc(cap);
	if (!buf)
		return;
	rfa_ctl_send(a, RF_CTL_PROGRESS, 0, buf, rf_ctl_enc_progress(buf, cap, &m));
	free(buf);
	c->last_progress = m;
	c->last_progress_ms = now;
	c->progress_sent = true;
	c->progress_changed = false;
}

int64_t rfa_progress_timer(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	rfa_progress(a, false);
	return c->last_progress_ms + (c->progress_changed ? PROGRESS_MIN_MS : PROGRESS_MAX_MS);
}

/* ---- durable progress -------------------------------------------------- */

/* Every record before @seq is durable: drop its chunk references. */
void rfa_durable_upto(struct rf_agent *a, uint64_t seq)
{
	struct rfa_conn *c = &a->c;
	uint64_t ticket = 0;

	if (seq > c->durable_seq)
		c->durable_seq = seq;
	for (struct rfa_post *p = c->phead; p && p->seq < seq; p = p->next) {
		if (p->released)
			continue;
		p->released = true;
		if (p->has_refs)
			rfa_chunks_release(p->vol, p->c_first, p->c_last, false);
		if (p->ticket > ticket)
			ticket = p->ticket;
	}
	rfa_posts_free_done(c);
	/* publish under agent.lock, then wake the waiters */
	rfa_durable_advance(a, c->durable_seq, ticket);
}

/* Every record up to @seq has landed: so has every ticket they end. */
void rfa_landed_upto(struct rf_agent *a, uint64_t seq)
{
	struct rfa_conn *c = &a->c;
	uint64_t ticket = 0;

	while (c->pland && c->pland->seq <= seq) {
		if (c->pland->ticket > ticket)
			ticket = c->pland->ticket;
		c->pland = c->pland->next;
	}
	/* Nobody waits for landed (rdma reports it anyway): no lock, no wake. */
	if (!ticket || !atomic_load(&a->landed_vols))
		return;
	pthread_mutex_lock(&a->lock);
	if (ticket > a->landed_ticket)
		__atomic_store_n(&a->landed_ticket, ticket, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&a->lock);
	rfa_durable_wake(a);
}

/*
 * Why no wakeup is lost: a waiter tests durable_seq and running and goes to
 * sleep in pthread_cond_(timed)wait without letting go of agent.lock in
 * between, and the loop changes both only under agent.lock. So when the
 * loop takes the lock to change them, every waiter has either not tested
 * yet (it will see the new value) or is already asleep on durable_cv, and
 * the broadcast that follows the change (after the unlock, so the woken
 * waiters do not block on a lock the loop still holds) wakes it.
 */
void rfa_durable_wake(struct rf_agent *a)
{
	pthread_cond_broadcast(&a->durable_cv);
}

void rfa_durable_advance(struct rf_agent *a, uint64_t seq, uint64_t ticket)
{
	bool moved;

	pthread_mutex_lock(&a->lock);
	moved = seq > a->durable_seq || ticket > a->durable_ticket;
	if (seq > a->durable_seq)
		a->durable_seq = seq;
	if (ticket > a->durable_ticket)
		__atomic_store_n(&a->durable_ticket, ticket, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&a->lock);
	if (moved)
		rfa_durable_wake(a);
}

/* @dl = CLOCK_MONOTONIC now + @timeout_ms (> 0), for pthread_cond_timedwait
 * on durable_cv (whose clock is CLOCK_MONOTONIC). */
static void deadline_after(struct timespec *dl, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, dl);
	dl->tv_sec += timeout_ms / 1000;
	dl->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl->tv_nsec >= 1000000000L) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000L;
	}
}

int rf_agent_wait_durable(struct rf_agent *a, uint64_t seq, int timeout_ms)
{
	struct timespec dl = {0};
	int rc = 0, wrc = 0;

	if (timeout_ms > 0)
		deadline_after(&dl, timeout_ms);
	pthread_mutex_lock(&a->lock);
	for (;;) {
		if (a->durable_seq >= seq) {
			rc = 0;
			break;
		}
		if (!a->running) {
			rc = -ESHUTDOWN;
			break;
		}
		if (timeout_ms == 0 || wrc == ETIMEDOUT) {
			rc = -ETIMEDOUT;
			break;
		}
		if (wrc) { /* EINVAL, EPERM: not expected */
			rc = -wrc;
			break;
		}
		if (timeout_ms < 0)
			wrc = pthread_cond_wait(&a->durable_cv, &a->lock);
		else
			wrc = pthread_cond_timedwait(&a->durable_cv, &a->lock, &dl);
	}
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* ---- acknowledgement levels (docs/DURABILITY.md) ------------------------- */

static const char *ack_name(enum rf_agent_ack level)
{
	return level == RF_AGENT_ACK_LANDED ? "landed" : "durable";
}

static void ack_fall_back(struct rf_agent_vol *v, const char *why)
{
	enum rf_agent_ack level;
	bool first;

	pthread_mutex_lock(&v->agent->lock);
	first = !v->ack_fallback;
	v->ack_fallback = true;
	if (first)
		v->ack_fallbacks++;
	v->ack_mark = v->agent->q_pushed;
	level = v->ack;
	pthread_mutex_unlock(&v->agent->lock);
	if (first)
		RF_WARN("agent",
		        "volume %s: falling back from %s to async acknowledgements: %s; the "
		        "dirty bitmap keeps what the hub has not made durable, and the volume "
		        "returns to %s once caught up",
		        v->name, ack_name(level), why, ack_name(level));
}

/* In fallback and caught up (attached, nothing to resend, no congestion,
 * and every write queued up to the fallback durable, or nothing dirty at
 * all: an idle volume whose last writes died with the link and were
 * resent has no newer ticket to wait for): back to the volume's level.
 * Loop thread, from PROGRESS. */
void rfa_ack_check_caught_up(struct rf_agent_vol *v, uint64_t resend_bytes, uint64_t dirty_bytes)
{
	struct rf_agent *a = v->agent;
	enum rf_agent_ack level;
	bool back;

	pthread_mutex_lock(&a->lock);
	back = v->ack_fallback && v->attached && !a->congested && resend_bytes == 0 &&
	       (a->durable_ticket >= v->ack_mark || dirty_bytes == 0);
	if (back)
		v->ack_fallback = false;
	level = v->ack;
	pthread_mutex_unlock(&a->lock);
	if (back)
		RF_INFO("agent", "volume %s: caught up: %s acknowledgements again", v->name,
		        ack_name(level));
}

void rfa_ack_epoch_end(struct rf_agent *a)
{
	pthread_mutex_lock(&a->lock);
	a->epoch_confirmed = a->durable_ticket;
	a->epoch_landed =
	    a->landed_ticket > a->durable_ticket ? a->landed_ticket : a->durable_ticket;
	a->link_epoch++;
	pthread_mutex_unlock(&a->lock);
	rfa_durable_wake(a);
}

/* The highest ticket of this epoch that reached @level (durable implies
 * landed). Atomic loads: the writer's spin reads it without agent.lock. */
static uint64_t ticket_reached(const struct rf_agent *a, enum rf_agent_ack level)
{
	uint64_t d = __atomic_load_n(&a->durable_ticket, __ATOMIC_ACQUIRE), l;

	if (level != RF_AGENT_ACK_LANDED)
		return d;
	l = __atomic_load_n(&a->landed_ticket, __ATOMIC_ACQUIRE);
	return l > d ? l : d;
}

/* Every ticket of @t's epoch up to @t->id reached @level? (under agent.lock) */
static int ticket_state(const struct rf_agent *a, const struct rf_agent_ticket *t,
                        enum rf_agent_ack level)
{
	if (t->epoch == a->link_epoch)
		return ticket_reached(a, level) >= t->id ? 0 : -EAGAIN;
	if (t->epoch + 1 == a->link_epoch &&
	    t->id <= (level == RF_AGENT_ACK_LANDED ? a->epoch_landed : a->epoch_confirmed))
		return 0;
	return -ECONNRESET;
}

int rf_agent_write_ack(struct rf_agent_vol *v, const struct rf_agent_ticket *t)
{
	struct rf_agent *a = v->agent;
	struct timespec dl;
	int64_t spin_until;
	int rc, wrc = 0, timeout_ms, poll_us;
	enum rf_agent_ack level;
	bool running;

	pthread_mutex_lock(&a->lock);
	if (v->ack == RF_AGENT_ACK_ASYNC || v->ack_fallback || !t->must_ack) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	level = v->ack;
	timeout_ms = v->ack_timeout_ms;
	poll_us = v->ack_poll_us;
	pthread_mutex_unlock(&a->lock);
	if (t->id == 0) {
		ack_fall_back(v, "a write could not be queued for the hub (not attached, or the "
		                 "queue is full)");
		return -EAGAIN;
	}
	/* A bounded spin first (repagent-poll-us): no sleep, no wake-up. The
	 * loop thread spins too while someone waits (spin_wait in loop.c), so
	 * this one yields its CPU at each step: the loop thread and the
	 * kernel's network work may need it more than a spinning writer. */
	atomic_fetch_add(&a->ack_waiting, 1);
	spin_until = poll_us ? rf_now_us() + poll_us : 0;
	while (spin_until && ticket_reached(a, level) < t->id && rf_now_us() < spin_until)
		sched_yield();
	deadline_after(&dl, timeout_ms);
	pthread_mutex_lock(&a->lock);
	while ((rc = ticket_state(a, t, level)) == -EAGAIN && a->running && wrc != ETIMEDOUT)
		wrc = pthread_cond_timedwait(&a->durable_cv, &a->lock, &dl);
	atomic_fetch_sub(&a->ack_waiting, 1);
	if (rc == 0)
		v->ack_waits++;
	running = a->running;
	pthread_mutex_unlock(&a->lock);
	if (rc == 0)
		return 0;
	if (rc == -EAGAIN) {
		rc = running ? -ETIMEDOUT : -ESHUTDOWN;
		ack_fall_back(v, rc == -ETIMEDOUT
		                     ? (level == RF_AGENT_ACK_LANDED
		                            ? "a write did not land at the hub in time"
		                            : "the hub did not make a write durable in time")
		                     : "the agent is stopping");
	} else {
		ack_fall_back(v, level == RF_AGENT_ACK_LANDED
		                     ? "the link to the hub broke before a write landed"
		                     : "the link to the hub broke before a write was durable");
	}
	return rc;
}

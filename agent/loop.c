/* SPDX-License-Identifier: MIT */
/*
 * The agent's thread, one job: run the event loop and drive the link to
 * the hub through its states (enum rfa_link_state, agent_internal.h). One
 * epoll loop over the control socket, the data connection's fd, an eventfd
 * (queue, new volumes, stop) and a timerfd (reconnect backoff, heartbeats,
 * PROGRESS, bitmap clears, deadlines). Each round does what the link state
 * asks (link_process), arms the timer and waits. rfa_link_set() is the only
 * place the state changes; teardown() is the way back to BACKOFF (or, at
 * stop, DISCONNECTED) from any failure, control or data side: it closes
 * both connections, turns everything not durable into resends, and
 * schedules a reconnect with capped exponential backoff.
 *
 * The other jobs: ctl_client.c (control connection), post.c (data path),
 * resend.c (resends and pacing), progress.c (PROGRESS, durability).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "agent_internal.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

/* ---- the link state --------------------------------------------------------- */

#define S(x) (1u << RFA_LINK_##x)

static const char *const link_names[] = {
    [RFA_LINK_DISCONNECTED] = "DISCONNECTED",
    [RFA_LINK_BACKOFF] = "BACKOFF",
    [RFA_LINK_CONNECTING] = "CONNECTING",
    [RFA_LINK_AUTHENTICATING] = "AUTHENTICATING",
    [RFA_LINK_HELLO] = "HELLO",
    [RFA_LINK_REPORTING] = "REPORTING",
    [RFA_LINK_ATTACHING] = "ATTACHING",
    [RFA_LINK_LINKED] = "LINKED",
    [RFA_LINK_BROKEN] = "BROKEN",
};

/* For each state, the states it may be entered from (the table in
 * agent_internal.h). */
static const unsigned link_from[] = {
    [RFA_LINK_DISCONNECTED] = S(BACKOFF) | S(REPORTING) | S(LINKED) | S(BROKEN),
    [RFA_LINK_BACKOFF] = S(DISCONNECTED) | S(CONNECTING) | S(AUTHENTICATING) | S(HELLO) |
                         S(REPORTING) | S(ATTACHING) | S(LINKED) | S(BROKEN),
    [RFA_LINK_CONNECTING] = S(BACKOFF),
    [RFA_LINK_AUTHENTICATING] = S(CONNECTING),
    [RFA_LINK_HELLO] = S(CONNECTING) | S(AUTHENTICATING),
    [RFA_LINK_REPORTING] = S(HELLO),
    [RFA_LINK_ATTACHING] = S(REPORTING),
    [RFA_LINK_LINKED] = S(ATTACHING),
    [RFA_LINK_BROKEN] = S(LINKED),
};

#undef S

void rfa_link_set(struct rf_agent *a, enum rfa_link_state to)
{
	enum rfa_link_state from = a->link;

	if (to == from)
		return;
	if (!(link_from[to] & (1u << from)))
		RF_ERR("agent", "link: unexpected transition %s -> %s", link_names[from],
		       link_names[to]);
	pthread_mutex_lock(&a->lock);
	a->link = to; /* rf_agent_status derives connected/attached from it */
	pthread_mutex_unlock(&a->lock);
	RF_DEBUG("agent", "link: %s -> %s", link_names[from], link_names[to]);
}

/* ---- setup ------------------------------------------------------------------ */

void rfa_wake(struct rf_agent *a)
{
	uint64_t one = 1;

	if (write(a->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		RF_ERR("agent", "eventfd write: %s", strerror(errno));
}

int rfa_ep_add(struct rf_agent *a, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void rfa_ep_mod(struct rf_agent *a, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};

	epoll_ctl(a->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void rfa_ep_del(struct rf_agent *a, int fd)
{
	epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int rfa_loop_init(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	int rc;

	a->evfd = a->tfd = a->epfd = -1;
	c->ctl_fd = -1;
	rf_ctl_stream_init(&c->st, -1, RFA_CTL_WBUF_MAX);
	c->backoff_ms = a->opts.backoff_min_ms;
	c->rbuf = malloc(RFA_CTL_RBUF_CAP);
	if (!c->rbuf)
		return -ENOMEM;
	a->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->evfd < 0 || a->tfd < 0 || a->epfd < 0) {
		rc = -errno;
		goto out;
	}
	rc = rfa_ep_add(a, a->evfd, EPOLLIN, RFA_TAG_EVENT);
	if (!rc)
		rc = rfa_ep_add(a, a->tfd, EPOLLIN, RFA_TAG_TIMER);
	if (!rc)
		return 0;
out:
	rfa_loop_fini(a);
	return rc;
}

void rfa_loop_fini(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	while (c->phead) {
		struct rfa_post *p = c->phead;

		c->phead = p->next;
		free(p->buf);
		free(p);
	}
	c->ptail = NULL;
	free(c->rbuf);
	c->rbuf = NULL;
	rf_ctl_stream_fini(&c->st);
	if (a->epfd >= 0)
		close(a->epfd);
	if (a->tfd >= 0)
		close(a->tfd);
	if (a->evfd >= 0)
		close(a->evfd);
	a->epfd = a->tfd = a->evfd = -1;
}

/* ---- teardown --------------------------------------------------------------- */

/*
 * Close both connections; everything queued becomes a resend; the link goes
 * to BACKOFF (@retry: the next dial after the backoff delay, which doubles
 * up to backoff_max_ms) or DISCONNECTED.
 */
static void teardown(struct rf_agent *a, const char *why, bool retry)
{
	struct rfa_conn *c = &a->c;
	struct rfa_rec *q;
	unsigned n = atomic_load(&a->nvols);
	bool was = rfa_link_ctl_up(a->link);

	rfa_fab_close(a);
	rfa_ctl_close(a);
	rfa_link_set(a, retry ? RFA_LINK_BACKOFF : RFA_LINK_DISCONNECTED);

	pthread_mutex_lock(&a->lock);
	for (unsigned i = 0; i < n; i++) {
		a->vols[i]->ok = a->vols[i]->attached = false;
		if (a->vols[i]->state != RF_VOL_UNKNOWN)
			a->vols[i]->state = RF_VOL_DISCONNECTED;
		a->vols[i]->queued = 0;
		a->vols[i]->queued_bytes = 0;
	}
	q = a->qhead;
	a->qhead = a->qtail = NULL;
	a->q_popped += a->q_count;
	a->q_bytes = 0;
	a->q_count = 0;
	pthread_mutex_unlock(&a->lock);
	while (q) {
		struct rfa_rec *r = q;

		q = r->next;
		rfa_chunks_release(r->vol, r->off / RF_AGENT_CHUNK_SIZE,
		                   (r->off + r->len - 1) / RF_AGENT_CHUNK_SIZE, true);
		free(r->buf);
		free(r);
	}

	if (!retry) {
		if (was)
			RF_INFO("agent", "disconnected from hub %s: %s", a->hub, why);
		return;
	}
	c->reconnect_at_ms = rf_now_ms() + c->backoff_ms;
	if (was)
		RF_WARN("agent", "disconnected from hub %s: %s; reconnecting in %u ms", a->hub, why,
		        c->backoff_ms);
	else
		RF_DEBUG("agent", "hub %s: %s; retrying in %u ms", a->hub, why, c->backoff_ms);
	c->backoff_ms =
	    c->backoff_ms * 2 > a->opts.backoff_max_ms ? a->opts.backoff_max_ms : c->backoff_ms * 2;
}

void rfa_disconnect(struct rf_agent *a, const char *why)
{
	teardown(a, why, true);
}

/* ---- one round -------------------------------------------------------------- */

static int64_t min64(int64_t x, int64_t y)
{
	return x < y ? x : y;
}

/* Periodic work; returns the next deadline (monotonic ms). */
static int64_t timers(struct rf_agent *a, bool stopping)
{
	struct rfa_conn *c = &a->c;
	int64_t now = rf_now_ms(), next = now + 60000;
	unsigned n = atomic_load(&a->nvols);

	if (now >= c->next_clear_ms) {
		for (unsigned i = 0; i < n; i++)
			rfa_clear_pass(a->vols[i], false);
		c->next_clear_ms = now + a->opts.clear_period_ms;
	}
	next = min64(next, c->next_clear_ms);
	if (!rfa_link_ctl_up(a->link)) {
		if (!stopping)
			next = min64(next, c->reconnect_at_ms);
		return next;
	}
	next = min64(next, rfa_ctl_timers(a, now));
	if (!rfa_link_ctl_up(a->link))
		return now;
	if (rfa_link_data_up(a->link)) {
		next = min64(next, rfa_progress_timer(a));
		if (c->resend_wake_ms)
			next = min64(next, c->resend_wake_ms);
	}
	return next;
}

static void arm_timer(struct rf_agent *a, int64_t at_ms)
{
	struct itimerspec its = {0};

	if (at_ms <= 0)
		at_ms = 1;
	its.it_value.tv_sec = at_ms / 1000;
	its.it_value.tv_nsec = (at_ms % 1000) * 1000000;
	timerfd_settime(a->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static bool drained(struct rf_agent *a)
{
	bool empty;

	pthread_mutex_lock(&a->lock);
	empty = a->qhead == NULL;
	pthread_mutex_unlock(&a->lock);
	return empty && !rfa_posts_pending(&a->c);
}

/*
 * The work of one round, by link state: dial when the backoff is over;
 * with the control session up, report new volumes and attach once the hub
 * accepted one (before that it has no ring for us and refuses the token);
 * with the data connection up, reap, post the queue and resend. Returns
 * true when the resend stopped on its budget with more to do.
 */
static bool link_process(struct rf_agent *a, bool stopping)
{
	struct rfa_conn *c = &a->c;
	bool more = false;

	if (a->link == RFA_LINK_BACKOFF && !stopping && rf_now_ms() >= c->reconnect_at_ms)
		rfa_ctl_connect(a);
	if (rfa_link_ctl_up(a->link) && !stopping) {
		rfa_ctl_report_volumes(a);
		if (a->link == RFA_LINK_REPORTING && c->reports_due == 0 &&
		    rfa_ctl_any_volume_ok(a))
			rfa_fab_attach(a);
	}
	if (rfa_link_data_up(a->link)) {
		if (c->reap)
			rfa_fab_events(a, 0);
		rfa_post_queue(a, UINT64_MAX);
		if (!stopping)
			more = rfa_resend_some(a);
		if (c->reap)
			rfa_fab_events(a, 0);
		if (a->link == RFA_LINK_BROKEN)
			rfa_disconnect(a, "data connection lost");
	}
	return more;
}

/*
 * While a writer waits for its acknowledgement level and a volume asked
 * for a busy-poll (repagent-poll-us), look for the hub's answer without
 * sleeping, for up to that long: the completion is then seen without a
 * wake-up of this thread (docs/DURABILITY.md). Returns what epoll_wait
 * returned, or 0 when the budget ran out or nobody waits any more.
 */
static int spin_wait(struct rf_agent *a, struct epoll_event *evs, int max)
{
	int spin_us = atomic_load(&a->loop_spin_us);
	int64_t until;
	int n;

	if (!spin_us || a->link != RFA_LINK_LINKED || !atomic_load(&a->ack_waiting))
		return 0;
	until = rf_now_us() + spin_us;
	do {
		n = epoll_wait(a->epfd, evs, max, 0);
		if (n != 0)
			return n;
		rf_cpu_relax();
	} while (atomic_load(&a->ack_waiting) && rf_now_us() < until);
	return 0;
}

void *rfa_loop_main(void *arg)
{
	struct rf_agent *a = arg;
	struct rfa_conn *c = &a->c;
	int64_t stop_deadline = 0;
	unsigned n;

	c->reconnect_at_ms = rf_now_ms(); /* the first dial at once */
	rfa_link_set(a, RFA_LINK_BACKOFF);
	c->next_clear_ms = rf_now_ms() + a->opts.clear_period_ms;
	RF_INFO("agent", "%s: started, hub %s", a->id, a->hub);
	for (;;) {
		struct epoll_event evs[8];
		bool stopping, more;
		int64_t next;
		int nev;

		pthread_mutex_lock(&a->lock);
		stopping = a->stopping;
		pthread_mutex_unlock(&a->lock);
		if (stopping) {
			if (!stop_deadline)
				stop_deadline = rf_now_ms() + a->opts.stop_timeout_ms;
			if (a->link != RFA_LINK_LINKED || drained(a) ||
			    rf_now_ms() >= stop_deadline)
				break;
		}

		more = link_process(a, stopping);
		next = timers(a, stopping);
		if (stopping)
			next = min64(next, min64(stop_deadline, rf_now_ms() + 50));
		arm_timer(a, next);

		nev = more || c->reap ? 0 : spin_wait(a, evs, 8);
		if (nev == 0)
			nev = epoll_wait(a->epfd, evs, 8, more || c->reap ? 0 : -1);
		if (nev < 0 && errno != EINTR) {
			RF_ERR("agent", "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < nev; i++) {
			uint64_t junk;

			switch (evs[i].data.u64) {
			case RFA_TAG_EVENT:
				if (read(a->evfd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
					RF_ERR("agent", "eventfd read: %s", strerror(errno));
				break;
			case RFA_TAG_TIMER:
				if (read(a->tfd, &junk, sizeof(junk)) < 0 && errno != EAGAIN)
					RF_ERR("agent", "timerfd read: %s", strerror(errno));
				break;
			case RFA_TAG_CTL:
				if (!rfa_link_ctl_up(a->link))
					break;
				if (evs[i].events & EPOLLOUT)
					rfa_ctl_flush(a);
				if (rfa_link_ctl_up(a->link) &&
				    (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
					rfa_ctl_readable(a);
				break;
			case RFA_TAG_FAB:
				rfa_fab_events(a, 0);
				if (a->link == RFA_LINK_BROKEN)
					rfa_disconnect(a, "data connection lost");
				break;
			}
		}
	}

	if (a->link == RFA_LINK_LINKED && !drained(a))
		RF_WARN("agent", "stopping with records not durable at the hub; they stay dirty "
		                 "in the bitmap");
	teardown(a, "agent stopping", false);
	rfa_posts_to_resend(a);
	n = atomic_load(&a->nvols);
	for (unsigned i = 0; i < n; i++)
		rfa_clear_pass(a->vols[i], true);
	pthread_mutex_lock(&a->lock);
	RF_INFO("agent",
	        "%s: stopped: %" PRIu64 " records (%" PRIu64 " bytes) posted, %" PRIu64
	        " sync reads, %" PRIu64 " bytes resent, %" PRIu64
	        " writes left to the bitmap (queue full or detached), %u congestions, %" PRIu64
	        " reconnects",
	        a->id, a->records, a->record_bytes, a->sync_reads, a->resent_bytes,
	        a->overflow_writes, a->congestions, a->reconnects);
	a->running = false; /* rf_agent_wait_durable: -ESHUTDOWN from now on */
	pthread_mutex_unlock(&a->lock);
	rfa_durable_wake(a);
	return NULL;
}

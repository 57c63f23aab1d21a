/* SPDX-License-Identifier: MIT */
/* Admission of untrusted connections: see include/repfabric/admit.h. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "repfabric/admit.h"
#include "repfabric/log.h"

#define SUBSYS "admit"

void rf_admit_init(struct rf_admit *a, const char *name, int lfd, int (*watch)(void *, bool),
                   void *ctx)
{
	memset(a, 0, sizeof(*a));
	a->name = name;
	a->lfd = lfd;
	a->watch = watch;
	a->ctx = ctx;
	a->handshake_ms = RF_ADMIT_HANDSHAKE_DEFAULT;
	a->max_pending = RF_ADMIT_PENDING_DEFAULT;
}

int rf_admit_set_limits(struct rf_admit *a, int handshake_ms, unsigned max_pending)
{
	if (handshake_ms <= 0 || max_pending == 0)
		return -EINVAL;
	a->handshake_ms = handshake_ms;
	a->max_pending = max_pending;
	return 0;
}

const char *rf_accept_reason_name(enum rf_accept_reason r)
{
	switch (r) {
	case RF_ACCEPT_FDS:
		return "descriptors";
	case RF_ACCEPT_MEMORY:
		return "memory";
	default:
		return "other";
	}
}

static void accept_failed(struct rf_admit *a, int err, int64_t now)
{
	enum rf_accept_reason r;
	bool pause = true;

	if (err == EMFILE || err == ENFILE) {
		r = RF_ACCEPT_FDS;
	} else if (err == ENOBUFS || err == ENOMEM) {
		r = RF_ACCEPT_MEMORY;
	} else {
		/* The connection that failed is gone from the queue: go on. */
		r = RF_ACCEPT_OTHER;
		pause = false;
	}
	a->stats.accept_failed[r]++;
	a->unlogged[r]++;
	if (now >= a->log_at[r]) {
		RF_WARN(SUBSYS, "%s: accept: %s (%llu time(s) since the last report)%s", a->name,
		        strerror(err), (unsigned long long)a->unlogged[r],
		        pause ? "; accepting again in 100 ms" : "");
		a->unlogged[r] = 0;
		a->log_at[r] = now + RF_ADMIT_LOG_MS;
	}
	if (pause && !a->paused && a->watch) {
		int rc = a->watch(a->ctx, false);

		if (rc)
			RF_WARN(SUBSYS, "%s: cannot stop watching the listener: %s", a->name,
			        strerror(-rc));
		a->paused = true;
		a->resume_at = now + RF_ADMIT_RETRY_MS;
	}
}

int rf_admit_accept(struct rf_admit *a, int64_t now)
{
	if (a->lfd < 0)
		return -EBADF;
	if (a->paused)
		return -EAGAIN;
	for (;;) {
		int fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), err;

		if (fd >= 0)
			return fd;
		err = errno;
		/* ECONNABORTED: the peer left before the accept; nothing failed. */
		if (err == EINTR || err == ECONNABORTED)
			continue;
		if (err == EAGAIN || err == EWOULDBLOCK)
			return -EAGAIN;
		accept_failed(a, err, now);
		return -err;
	}
}

static void summarize(struct rf_admit *a, int64_t now)
{
	const struct rf_admit_stats *s = &a->stats, *o = &a->summarized;

	if (now < a->summary_at ||
	    (s->handshake_timeouts == o->handshake_timeouts &&
	     s->pending_evicted == o->pending_evicted && s->refused_full == o->refused_full))
		return;
	RF_WARN(SUBSYS,
	        "%s: closed %llu connection(s) that did not prove themselves within %d ms and "
	        "%llu to make room (at most %u unproven); refused %llu with every slot held",
	        a->name, (unsigned long long)(s->handshake_timeouts - o->handshake_timeouts),
	        a->handshake_ms, (unsigned long long)(s->pending_evicted - o->pending_evicted),
	        a->max_pending, (unsigned long long)(s->refused_full - o->refused_full));
	a->summarized = *s;
	a->summary_at = now + RF_ADMIT_LOG_MS;
}

void rf_admit_tick(struct rf_admit *a, int64_t now)
{
	int rc;

	summarize(a, now);
	if (!a->paused || now < a->resume_at)
		return;
	rc = a->watch ? a->watch(a->ctx, true) : 0;
	if (rc) {
		RF_WARN(SUBSYS, "%s: cannot watch the listener again: %s; retrying", a->name,
		        strerror(-rc));
		a->resume_at = now + RF_ADMIT_RETRY_MS;
		return;
	}
	a->paused = false;
}

static struct rf_pending_fifo *fifo_of(struct rf_admit *a, const struct rf_pending *p)
{
	return p->engaged ? &a->engaged : &a->silent;
}

static void fifo_push(struct rf_pending_fifo *f, struct rf_pending *p)
{
	p->prev = f->tail;
	p->next = NULL;
	if (f->tail)
		f->tail->next = p;
	else
		f->head = p;
	f->tail = p;
}

/* Take @p out of its FIFO (it stays counted in npending). */
static void fifo_unlink(struct rf_pending_fifo *f, struct rf_pending *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		f->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		f->tail = p->prev;
	p->prev = p->next = NULL;
}

static void unlink_pending(struct rf_admit *a, struct rf_pending *p)
{
	fifo_unlink(fifo_of(a, p), p);
	p->queued = false;
	p->engaged = false;
	a->npending--;
}

void rf_admit_engaged(struct rf_admit *a, struct rf_pending *p)
{
	struct rf_pending *at = a->engaged.tail;

	if (!p->queued || p->engaged)
		return;
	fifo_unlink(&a->silent, p);
	p->engaged = true;
	/* Keep the engaged FIFO in accept order (it is short: walk from the tail). */
	while (at && at->since > p->since)
		at = at->prev;
	if (!at) {
		p->prev = NULL;
		p->next = a->engaged.head;
		if (a->engaged.head)
			a->engaged.head->prev = p;
		else
			a->engaged.tail = p;
		a->engaged.head = p;
	} else {
		p->prev = at;
		p->next = at->next;
		if (at->next)
			at->next->prev = p;
		else
			a->engaged.tail = p;
		at->next = p;
	}
}

struct rf_pending *rf_admit_evict_oldest(struct rf_admit *a)
{
	struct rf_pending *victim = a->silent.head ? a->silent.head : a->engaged.head;

	if (victim) {
		unlink_pending(a, victim);
		a->stats.pending_evicted++;
	}
	return victim;
}

struct rf_pending *rf_admit_pending_add(struct rf_admit *a, struct rf_pending *p, int64_t now)
{
	struct rf_pending *victim = NULL;

	if (p->queued)
		return NULL;
	if (a->npending >= a->max_pending)
		victim = rf_admit_evict_oldest(a);
	p->since = now;
	p->engaged = false;
	fifo_push(&a->silent, p);
	p->queued = true;
	a->npending++;
	return victim;
}

void rf_admit_pending_del(struct rf_admit *a, struct rf_pending *p)
{
	if (p->queued)
		unlink_pending(a, p);
}

struct rf_pending *rf_admit_expired(struct rf_admit *a, int64_t now)
{
	struct rf_pending *s = a->silent.head, *e = a->engaged.head;
	struct rf_pending *p = !s ? e : !e ? s : (e->since < s->since ? e : s);

	if (!p || now - p->since < a->handshake_ms)
		return NULL;
	unlink_pending(a, p);
	a->stats.handshake_timeouts++;
	return p;
}

void rf_admit_refused_full(struct rf_admit *a)
{
	a->stats.refused_full++;
}

/* SPDX-License-Identifier: MIT */
/* Byte-range lock with FIFO order among overlapping requests: see rangelock.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rangelock.h"
#include "repfabric/log.h"

struct rfa_rl_entry {
	struct rfa_rl_entry *prev, *next;
	uint64_t start, end; /* [start, end) */
	bool held;
	pthread_cond_t cv; /* signalled when an earlier overlapping entry leaves */
};

static bool overlaps(const struct rfa_rl_entry *a, uint64_t start, uint64_t end)
{
	return a->start < end && start < a->end;
}

int rfa_rl_init(struct rfa_rangelock *rl)
{
	int rc = pthread_mutex_init(&rl->mu, NULL);

	rl->head = rl->tail = NULL;
	return -rc;
}

void rfa_rl_destroy(struct rfa_rangelock *rl)
{
	pthread_mutex_destroy(&rl->mu);
}

/* True when an entry before @e overlaps it. Caller holds rl->mu. */
static bool blocked(const struct rfa_rl_entry *e)
{
	for (const struct rfa_rl_entry *p = e->prev; p; p = p->prev)
		if (overlaps(p, e->start, e->end))
			return true;
	return false;
}

int rfa_rl_lock(struct rfa_rangelock *rl, uint64_t off, uint64_t len)
{
	struct rfa_rl_entry *e;
	int rc;

	if (len == 0 || off + len < off)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	rc = pthread_cond_init(&e->cv, NULL);
	if (rc) {
		free(e);
		return -rc;
	}
	e->start = off;
	e->end = off + len;
	pthread_mutex_lock(&rl->mu);
	e->prev = rl->tail;
	if (rl->tail)
		rl->tail->next = e;
	else
		rl->head = e;
	rl->tail = e;
	while (blocked(e))
		pthread_cond_wait(&e->cv, &rl->mu);
	e->held = true;
	pthread_mutex_unlock(&rl->mu);
	return 0;
}

int rfa_rl_unlock(struct rfa_rangelock *rl, uint64_t off, uint64_t len)
{
	struct rfa_rl_entry *e;

	pthread_mutex_lock(&rl->mu);
	for (e = rl->head; e; e = e->next)
		if (e->held && e->start == off && e->end == off + len)
			break;
	if (!e) {
		pthread_mutex_unlock(&rl->mu);
		RF_ERR("agent", "range lock: [%" PRIu64 ", +%" PRIu64 ") released but not held",
		       off, len);
		return -ENOENT;
	}
	/* Wake the later entries it was holding back; they re-check. */
	for (struct rfa_rl_entry *w = e->next; w; w = w->next)
		if (!w->held && overlaps(w, e->start, e->end))
			pthread_cond_signal(&w->cv);
	if (e->prev)
		e->prev->next = e->next;
	else
		rl->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		rl->tail = e->prev;
	pthread_mutex_unlock(&rl->mu);
	pthread_cond_destroy(&e->cv);
	free(e);
	return 0;
}

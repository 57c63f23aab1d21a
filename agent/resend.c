/* SPDX-License-Identifier: MIT */
/*
 * The agent's own resend, one job: read back the chunks marked for a
 * resend (writes that could not be queued, records lost with a connection,
 * the bitmap at start) and post them, a run of up to 1 MiB at a time and
 * RESEND_BUDGET per loop round, paced per volume by the hub's resync_rate
 * (a token bucket). Loop thread only.
 */
#include <errno.h>
#include <stdint.h>

#include "agent_internal.h"
#include "repfabric/sockio.h"

#define RESEND_RUN_CHUNKS (RF_CTL_MAX_DATA / RF_AGENT_CHUNK_SIZE) /* 1 MiB reads */
#define RESEND_BUDGET     (16u << 20)                             /* bytes resent per loop round */

void rfa_resend_set_rate(struct rf_agent_vol *v, uint64_t rate)
{
	if (rate == v->resync_rate)
		return;
	v->resync_rate = rate;
	v->rs_tokens = (double)RF_CTL_MAX_DATA;
	v->rs_refill_ms = rf_now_ms();
}

/*
 * resync_rate: may @v resend now? A token bucket per volume (refilled at
 * the rate, holding at most a fifth of a second's worth or one run, and
 * owing at most one run). When it is empty, c->resend_wake_ms says when
 * to look again.
 */
static bool resend_paced(struct rf_agent *a, struct rf_agent_vol *v, int64_t now)
{
	struct rfa_conn *c = &a->c;
	double rate = (double)v->resync_rate, cap;
	int64_t wake;

	if (!v->resync_rate)
		return true;
	cap = rate / 5 > (double)RF_CTL_MAX_DATA ? rate / 5 : (double)RF_CTL_MAX_DATA;
	v->rs_tokens += rate * (double)(now - v->rs_refill_ms) / 1000.0;
	if (v->rs_tokens > cap)
		v->rs_tokens = cap;
	v->rs_refill_ms = now;
	if (v->rs_tokens > 0)
		return true;
	wake = now + (int64_t)(-v->rs_tokens * 1000.0 / rate) + 1;
	if (!c->resend_wake_ms || wake < c->resend_wake_ms)
		c->resend_wake_ms = wake;
	return false;
}

/*
 * Resend dirty chunks of attached volumes, at most RESEND_BUDGET bytes.
 * Returns true when it stopped on the budget with more to do.
 */
bool rfa_resend_some(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	unsigned n = atomic_load(&a->nvols);
	uint64_t budget = RESEND_BUDGET;

	c->resend_wake_ms = 0;
	if (c->space_wait || rf_now_ms() < c->resend_retry_ms)
		return false;
	for (unsigned k = 0; k < n; k++) {
		struct rf_agent_vol *v = a->vols[(c->resend_rr + k) % n];

		if (!rfa_vol_attached(a, v))
			continue;
		while (budget) {
			uint64_t f, l, off, len, cursor = v->resend_next, seq;
			int rc;

			if (!rfa_resend_find(v, &cursor, RESEND_RUN_CHUNKS, &f, &l))
				break;
			if (!resend_paced(a, v, rf_now_ms()))
				break;
			off = f * RF_AGENT_CHUNK_SIZE;
			len = (l + 1) * RF_AGENT_CHUNK_SIZE;
			if (len > v->size)
				len = v->size;
			len -= off;
			rc = rfa_post_range(a, v, off, (uint32_t)len, true, &seq);
			if (rc) {
				if (rc == -EIO || (rc == -EAGAIN && !c->space_wait))
					c->resend_retry_ms = rf_now_ms() + 1000;
				return false;
			}
			v->resend_next = cursor;
			budget = budget > len ? budget - len : 0;
			if (v->resync_rate)
				v->rs_tokens -= (double)len;
			pthread_mutex_lock(&a->lock);
			a->resent_bytes += len;
			v->resent_bytes += len;
			pthread_mutex_unlock(&a->lock);
		}
		if (!budget) {
			c->resend_rr = (c->resend_rr + k) % n;
			return true;
		}
	}
	return false;
}

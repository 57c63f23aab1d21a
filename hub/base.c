/* SPDX-License-Identifier: MIT */
/*
 * The hub's wall clock and request ids (base.h). The monotonic clock is
 * rf_now_ms() (common/sockio.c), the one home for the whole project.
 */
#include <time.h>

#include "base.h"

int64_t hub_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t hub_new_req_id(struct hub *h)
{
	return HUB_REQ_HUB_BIT | ++h->next_req;
}

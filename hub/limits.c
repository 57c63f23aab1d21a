/* SPDX-License-Identifier: MIT */
/*
 * The descriptor budget: how RLIMIT_NOFILE is shared out so that a flood
 * of connections can never take the descriptors the hub needs to serve the
 * agents it has (docs/CONFIG.md, "Descriptors and connection limits").
 *
 *   reserve      HUB_FD_BASE for the process itself (epoll, signalfd,
 *                timerfd, listeners, rdma channels, logging, state files
 *                being rewritten), the metrics endpoint's connections, and
 *                per volume its recovery image plus, with a journal, one
 *                descriptor per journal segment it can hold.
 *   the rest     connections: half of it for control connections (agents,
 *                repctl, failover-test views), proven or not; an eighth for
 *                each listener's unproven connections (never above
 *                max_pending). The data connections of attached agents
 *                (one each) come out of what is left.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/resource.h>

#include "hub.h"
#include "journal.h"
#include "repfabric/log.h"

#define SUBSYS           "hub"
#define HUB_FD_BASE      48
#define HUB_FD_METRICS   20      /* libmicrohttpd: its listener and 16 connections */
#define HUB_FD_PER_VOL   2       /* the recovery image, a state file being rewritten */
#define HUB_FD_MAX_LIMIT 1048576 /* never ask for more than the kernel's default nr_open */
#define HUB_MAX_CONNS    1024    /* control connections, whatever the limit */
#define HUB_MIN_CONNS    8

int hub_raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t want;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > HUB_FD_MAX_LIMIT ? HUB_FD_MAX_LIMIT
	                                                                      : rl.rlim_max;
	if (rl.rlim_cur >= want)
		return 0;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		int rc = -errno;

		RF_WARN(SUBSYS, "cannot raise the descriptor limit to %llu: %s",
		        (unsigned long long)want, strerror(-rc));
		return rc;
	}
	RF_INFO(SUBSYS, "descriptor limit raised to the hard limit, %llu",
	        (unsigned long long)want);
	return 0;
}

/* Descriptors one volume keeps open at most. */
static uint64_t vol_fds(const struct hub_vol_config *vc)
{
	uint64_t n = HUB_FD_PER_VOL;

	if (vc->journal_time_ms)
		n += (vc->journal_size + JOURNAL_SEGMENT_SIZE - 1) / JOURNAL_SEGMENT_SIZE + 1;
	return n;
}

static unsigned clamp_u(uint64_t v, unsigned lo, unsigned hi)
{
	return v < lo ? lo : v > hi ? hi : (unsigned)v;
}

void hub_apply_limits(struct hub *h)
{
	struct hub_fd_budget *b = &h->fds;
	struct rlimit rl;
	uint64_t avail;
	int rc;

	b->limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
	               ? (uint64_t)rl.rlim_cur
	               : HUB_FD_MAX_LIMIT;
	b->reserve = HUB_FD_BASE + (h->cfg->metrics[0] ? HUB_FD_METRICS : 0);
	for (size_t i = 0; i < h->cfg->nvols; i++)
		b->reserve += vol_fds(&h->cfg->vols[i]);
	avail = b->limit > b->reserve ? b->limit - b->reserve : 0;
	b->max_conns = clamp_u(avail / 2, HUB_MIN_CONNS, HUB_MAX_CONNS);
	b->max_pending =
	    clamp_u(avail / 8, h->cfg->max_pending < 2 ? 1 : 2, (unsigned)h->cfg->max_pending);
	b->handshake_ms = (unsigned)h->cfg->handshake_timeout_ms;
	if (avail < 4 * HUB_MIN_CONNS)
		RF_WARN(
		    SUBSYS,
		    "the descriptor limit (%" PRIu64 ") leaves %" PRIu64 " for connections after "
		    "the %" PRIu64 " the %zu volume(s) need: raise it (ulimit -n, LimitNOFILE=)",
		    b->limit, avail, b->reserve, h->cfg->nvols);
	if (b->max_pending < h->cfg->max_pending)
		RF_INFO(SUBSYS,
		        "max_pending %" PRIu64
		        " lowered to %u per listener by the descriptor limit "
		        "(%" PRIu64 ")",
		        h->cfg->max_pending, b->max_pending, b->limit);
	rf_admit_set_limits(&h->ctl_admit, (int)b->handshake_ms, b->max_pending);
	if (h->fab) {
		rc = rf_fab_listener_set_limits(h->fab, (int)b->handshake_ms, b->max_pending);
		if (rc)
			RF_WARN(SUBSYS, "cannot set the data listener's limits: %s", strerror(-rc));
	}
	RF_DEBUG(SUBSYS,
	         "descriptors: limit %" PRIu64 ", reserve %" PRIu64 ", %u control connections, "
	         "%u unproven per listener for %u ms",
	         b->limit, b->reserve, b->max_conns, b->max_pending, b->handshake_ms);
}

size_t hub_admission(const struct hub *h, struct hub_admission *out)
{
	size_t n = 0;

	out[n++] = (struct hub_admission){
	    .listener = "control", .st = h->ctl_admit.stats, .pending = h->ctl_admit.npending};
	if (h->fab) {
		out[n] = (struct hub_admission){.listener = "data",
		                                .pending = rf_fab_listener_pending(h->fab)};
		rf_fab_listener_admit_stats(h->fab, &out[n].st);
		n++;
	}
	return n;
}

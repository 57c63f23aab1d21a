/* SPDX-License-Identifier: MIT */
/*
 * Loop layer: the rephubd event loop (hub.h). One thread, one epoll set:
 *
 *   signalfd   SIGTERM/SIGINT -> orderly stop
 *   timerfd    every HUB_TICK_MS: heartbeats, idle and sync timeouts, sync
 *              pacing, drain retries
 *   listener   the control channel's TCP socket
 *   conns      one per control connection (agents and repctl)
 *   fabric     rf_fab_listener_fd(): attach, DATA and DETACHED events
 *   metrics    libmicrohttpd's epoll fd when `metrics` is set (metrics.c)
 *
 * Each turn: handle the ready fds, reap fabric events (always, since a
 * fence queues a DETACHED without making the fd readable), drain the rings
 * that have news (drain_agent: the drain returns what it did, then the sync
 * engine hears of it and the position is published), send the SYNC_READs
 * pacing allows, free dead connections.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hub.h"
#include "repfabric/log.h"

#define SUBSYS "hub"

int hub_ep_add(struct hub *h, int fd, uint32_t events, struct ev_src *src)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	return epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int hub_ep_mod(struct hub *h, int fd, uint32_t events, struct ev_src *src)
{
	struct epoll_event ev = {.events = events, .data.ptr = src};

	return epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void hub_ep_del(struct hub *h, int fd)
{
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* mkdir -p for one directory whose parent may not exist. */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0750) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int setup_state_dir(struct hub *h)
{
	const char *sd = h->cfg->state_dir;
	int rc;

	if ((h->cfg->ring_dir[0]
	         ? (size_t)snprintf(h->rings_dir, sizeof(h->rings_dir), "%s", h->cfg->ring_dir)
	         : (size_t)snprintf(h->rings_dir, sizeof(h->rings_dir), "%s/rings", sd)) >=
	        sizeof(h->rings_dir) ||
	    (size_t)snprintf(h->volumes_dir, sizeof(h->volumes_dir), "%s/volumes", sd) >=
	        sizeof(h->volumes_dir))
		return -ENAMETOOLONG;
	rc = make_dirs(sd);
	if (!rc)
		rc = make_dirs(h->rings_dir);
	if (!rc)
		rc = make_dirs(h->volumes_dir);
	if (rc)
		RF_ERR(SUBSYS, "cannot create the state directory %s: %s", sd, strerror(-rc));
	return rc;
}

/* Every ring with news; drain_agent tells the sync engine and the producer. */
static void drain_all(struct hub *h)
{
	for (struct hub_agent *a = h->agents; a; a = a->next) {
		if (a->need_drain)
			drain_agent(a, a->peer ? DRAIN_LIVE : DRAIN_OFFLINE);
	}
}

static int setup_signals(struct hub *h)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	h->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (h->sigfd < 0)
		return -errno;
	h->sig_src = (struct ev_src){.kind = EV_SIGNAL, .ptr = h};
	return hub_ep_add(h, h->sigfd, EPOLLIN, &h->sig_src);
}

static int setup_timer(struct hub *h)
{
	struct itimerspec its = {
	    .it_interval = {.tv_sec = 0, .tv_nsec = HUB_TICK_MS * 1000000L},
	    .it_value = {.tv_sec = 0, .tv_nsec = HUB_TICK_MS * 1000000L},
	};

	h->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (h->timerfd < 0)
		return -errno;
	if (timerfd_settime(h->timerfd, 0, &its, NULL) < 0)
		return -errno;
	h->timer_src = (struct ev_src){.kind = EV_TIMER, .ptr = h};
	return hub_ep_add(h, h->timerfd, EPOLLIN, &h->timer_src);
}

static const struct rf_fab_hub_ops fab_ops = {.attach = session_fab_attach};

static int setup_fabric(struct hub *h)
{
	int rc = rf_fab_listen(h->cfg->data, &fab_ops, h, &h->fab);

	if (rc) {
		RF_ERR(SUBSYS, "cannot listen for data connections on %s: %s", h->cfg->data,
		       strerror(-rc));
		return rc;
	}
	h->fab_fd = rf_fab_listener_fd(h->fab);
	h->fab_src = (struct ev_src){.kind = EV_FABRIC, .ptr = h};
	return hub_ep_add(h, h->fab_fd, EPOLLIN, &h->fab_src);
}

int hub_init(struct hub *h, struct hub_config *cfg)
{
	int rc;

	memset(h, 0, sizeof(*h));
	h->cfg = cfg;
	h->epfd = h->sigfd = h->timerfd = h->lfd = h->fab_fd = -1;
	h->started_at = rf_now_ms();
	h->next_session = ((uint64_t)time(NULL) << 20);
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0)
		return -errno;
	rc = setup_state_dir(h);
	if (rc)
		return rc;
	rc = setup_signals(h);
	if (rc) {
		RF_ERR(SUBSYS, "cannot set up signal handling: %s", strerror(-rc));
		return rc;
	}
	rc = setup_timer(h);
	if (rc) {
		RF_ERR(SUBSYS, "cannot set up the timer: %s", strerror(-rc));
		return rc;
	}
	rc = auth_init(h);
	if (rc)
		return rc;
	rc = volumes_init(h);
	if (rc)
		return rc;
	/* Find every ring a previous run left and drain what it holds. */
	session_scan_rings(h);
	rc = setup_fabric(h);
	if (rc)
		return rc;
	rc = ctl_listen(h);
	if (rc)
		return rc;
	hub_apply_limits(h);
	rc = metrics_start(h);
	if (rc)
		return rc;
	RF_INFO(SUBSYS, "ready: control %s, data %s, state %s, %zu volume(s)", cfg->control,
	        cfg->data, cfg->state_dir, h->nvols);
	return 0;
}

static void on_signal(struct hub *h)
{
	struct signalfd_siginfo si;

	while (read(h->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			hub_reload(h);
			continue;
		}
		if (!h->stopping)
			RF_INFO(SUBSYS, "%s received: stopping", strsignal((int)si.ssi_signo));
		h->stopping = true;
	}
}

static bool on_timer(struct hub *h)
{
	uint64_t ticks;

	return read(h->timerfd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks);
}

/*
 * poll_us: while records keep arriving (a DATA event in the last second),
 * look for work without sleeping for up to poll_us before the blocking
 * wait, so the next doorbell is seen without a wake-up (docs/CONFIG.md).
 * Returns what epoll_wait returned, or 0 after the budget.
 */
static int spin_wait(struct hub *h, struct epoll_event *evs, int max)
{
	int64_t until;
	int n;

	if (!h->cfg->poll_us || h->more_work || !h->fab ||
	    rf_now_ms() - h->last_data_ms > HUB_SPIN_ACTIVE_MS)
		return 0;
	until = rf_now_us() + (int64_t)h->cfg->poll_us;
	do {
		n = epoll_wait(h->epfd, evs, max, 0);
		if (n != 0)
			return n;
		rf_cpu_relax();
	} while (rf_now_us() < until);
	return 0;
}

int hub_run(struct hub *h)
{
	struct epoll_event evs[64];

	while (!h->stopping) {
		int n = spin_wait(h, evs, 64);
		bool tick = false, accept;
		int64_t now;

		if (n == 0)
			n = epoll_wait(h->epfd, evs, 64, h->more_work ? 0 : HUB_TICK_MS * 10);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			RF_ERR(SUBSYS, "epoll_wait: %s", strerror(errno));
			return -errno;
		}
		h->more_work = false;
		accept = false;
		for (int i = 0; i < n; i++) {
			struct ev_src *src = evs[i].data.ptr;

			switch (src->kind) {
			case EV_SIGNAL:
				on_signal(h);
				break;
			case EV_TIMER:
				tick |= on_timer(h);
				break;
			case EV_LISTEN:
				accept = true; /* after the connections we have: below */
				break;
			case EV_CONN:
				ctl_conn_event(src->ptr, evs[i].events);
				break;
			case EV_FABRIC:
				break; /* reaped below, every turn */
			case EV_METRICS:
				metrics_run(h);
				break;
			}
		}
		if (accept)
			ctl_accept(h);
		session_fab_poll(h);
		drain_all(h);
		now = rf_now_ms();
		if (tick) {
			ctl_tick(h, now);
			session_tick(h, now);
			sync_tick(h, now);
			pit_tick(h, now);
			metrics_run(h);
		}
		sync_pump(h, now);
		ctl_reap(h);
	}
	return 0;
}

/*
 * Orderly stop: no new control connections, apply what every ring holds,
 * persist heads and volume state, then close everything.
 */
void hub_fini(struct hub *h)
{
	h->stopping = true; /* also after an error: the drain below applies everything */
	if (h->lfd >= 0) {
		hub_ep_del(h, h->lfd);
		close(h->lfd);
		h->lfd = -1;
	}
	if (h->fab) {
		/* Records that landed before the stop are applied and published. */
		session_fab_poll(h);
		for (struct hub_agent *a = h->agents; a; a = a->next)
			a->need_drain = true;
		for (int guard = 0; guard < 100000; guard++) {
			h->more_work = false;
			drain_all(h);
			if (!h->more_work)
				break;
		}
	}
	metrics_stop(h);
	ctl_close_all(h);
	ctl_reap(h);
	rf_fab_listener_close(&h->fab);
	h->fab_fd = -1;
	volumes_fini(h);
	status_fini(h);
	auth_fini(h);
	while (h->agents) {
		struct hub_agent *a = h->agents;

		h->agents = a->next;
		rf_ring_close(&a->ring);
		free(a);
	}
	if (h->timerfd >= 0)
		close(h->timerfd);
	if (h->sigfd >= 0)
		close(h->sigfd);
	if (h->epfd >= 0)
		close(h->epfd);
	h->timerfd = h->sigfd = h->epfd = -1;
}

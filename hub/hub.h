/* SPDX-License-Identifier: MIT */
/*
 * Loop layer: rephubd's epoll loop (hub.c), the descriptor budget
 * (limits.c) and SIGHUP (reload.c). One thread, one loop that owns every
 * object of the layers below; it drives them each turn and acts on what
 * they return (a drain's result goes to the sync engine and the producer
 * through session.c's drain_agent).
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: loop, the top. This header includes every
 * layer's, for main.c and ctl_server.c.
 */
#ifndef REPHUB_HUB_H
#define REPHUB_HUB_H

#include "base.h"
#include "ctl_auth.h"
#include "ctl_server.h"
#include "drain.h"
#include "handlers.h"
#include "metrics.h"
#include "points.h"
#include "resync.h"
#include "session.h"
#include "status.h"
#include "sync.h"
#include "volstate.h"

/* limits.c: the descriptor budget */
/* Raise the soft RLIMIT_NOFILE to the hard one (logged). 0 or -errno. */
int hub_raise_fd_limit(void);
/* Share the descriptor limit out (h->fds) from h->cfg and apply it to the
 * listeners. Warns when the limit is too low for the configuration. */
void hub_apply_limits(struct hub *h);

/* One listener's admission counters, for the status and the metrics. */
struct hub_admission {
	const char *listener; /* "control", "data" */
	struct rf_admit_stats st;
	unsigned pending;
};
/* Fill @out (room for 2); returns how many listeners there are. */
size_t hub_admission(const struct hub *h, struct hub_admission *out);

/* reload.c: SIGHUP */
void hub_reload(struct hub *h);

/* hub.c: the loop */
int hub_ep_add(struct hub *h, int fd, uint32_t events, struct ev_src *src);
int hub_ep_mod(struct hub *h, int fd, uint32_t events, struct ev_src *src);
void hub_ep_del(struct hub *h, int fd);
int hub_init(struct hub *h, struct hub_config *cfg);
int hub_run(struct hub *h);
void hub_fini(struct hub *h);

#endif /* REPHUB_HUB_H */

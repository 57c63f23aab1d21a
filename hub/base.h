/* SPDX-License-Identifier: MIT */
/*
 * rephubd's base: what every layer of the hub core shares. The hub runs
 * one thread, one epoll loop (hub.c) that owns every object; nothing here
 * is thread-safe and nothing needs to be.
 *
 * Hub layers, bottom up (docs/ARCHITECTURE.md, "Hub layers"). A module
 * includes the headers of its own layer and below; lower layers report
 * upward by return value, never by calling up:
 *
 *   base      base.h        struct hub (the root every layer reaches agents
 *                           and volumes through), constants, clocks, ids
 *   storage   image_io.h    record effects on a raw image
 *             journal.h     a volume's journal (segments, retire, views)
 *             apply.h       a record -> the journal or the image; a test
 *                           view's read chain scratch -> journal -> image
 *   state     agent.h       the hub's record of an agent: ring, tokens, counters
 *             volstate.h    volumes: state files, recovery images, storage stacks
 *   engines   drain.h       ring -> apply -> commit; returns what it did
 *             sync.h        initial full sync
 *             resync.h      resyncing <-> protected from PROGRESS
 *             points.h      points in time: retention, resolution, new sequences
 *   protocol  session.h     sessions, data attach/detach, drain_agent (a drain,
 *                           then fence, sync_on_durable and publish)
 *             handlers.h    every control message handler
 *             ctl_auth.h    the PSK handshake's checks
 *   loop      ctl_server.h  control connections: framing, send side, dispatch
 *             status.h      STATUS JSON (reads every layer, the loop's too)
 *             metrics.h     the Prometheus endpoint (the same numbers)
 *             hub.h         the epoll loop, limits, reload
 *
 * The one call that crosses upward is ctl_send() (ctl_server.h): it only
 * queues bytes; a failing socket is closed and its session ended later,
 * in ctl_reap(), never under the caller.
 */
#ifndef REPHUB_BASE_H
#define REPHUB_BASE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "repfabric/admit.h"
#include "repfabric/auth.h"
#include "repfabric/ctl.h"
#include "repfabric/ctl_stream.h"
#include "repfabric/fabric.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h" /* rf_now_ms(): CLOCK_MONOTONIC */

#define HUB_TICK_MS           100         /* timer period: pacing, retries, timeouts */
#define HUB_SPIN_ACTIVE_MS    1000        /* poll_us spins this long after a DATA event */
#define HUB_HEARTBEAT_MS      5000        /* send HEARTBEAT to an agent this often */
#define HUB_IDLE_MS           30000       /* drop a connection silent this long */
#define HUB_PREAUTH_MAX_LEN   256         /* with psk_file: frame payload cap before AUTH_OK */
#define HUB_CLOSE_GRACE_MS    2000        /* flush an ERROR before closing, at most */
#define HUB_OUT_MAX           (8u << 20)  /* queued output per connection */
#define HUB_SYNC_CHUNK        (1u << 20)  /* bytes per SYNC_READ */
#define HUB_SYNC_WINDOW       4           /* SYNC_READs in flight per volume */
#define HUB_SYNC_TIMEOUT_MS   30000       /* a SYNC_READ unanswered this long is resent */
#define HUB_DRAIN_BATCH_BYTES (64u << 20) /* apply at most this much per loop turn */
#define HUB_DRAIN_BATCH_RECS  4096u
#define HUB_REQ_HUB_BIT       (1ull << 63) /* request ids the hub originates */

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

struct hub;
struct hub_agent;
struct volume;
struct journal;
struct test_view;
struct rate_win;

/* What an epoll registration points at. */
enum ev_kind { EV_SIGNAL, EV_TIMER, EV_LISTEN, EV_CONN, EV_FABRIC, EV_METRICS };

struct ev_src {
	enum ev_kind kind;
	void *ptr;
};

/*
 * A control connection. Owned by ctl_server.c (the loop layer); it is here
 * because the layers below hold pointers to it and read ->dead, ->closing
 * and ->peer (an agent's live connection), never more.
 */
struct ctl_conn {
	struct ev_src src;
	struct hub *hub;
	struct ctl_conn *next;
	struct rf_pending pend;  /* in hub.ctl_admit until it proves itself (ctl_proven) */
	struct rf_ctl_stream st; /* the socket (st.fd), frames in and out */
	char peer[80];           /* "ADDR:PORT" for messages */
	bool want_out;           /* EPOLLOUT armed */

	bool closing;     /* flush what is queued, then close */
	bool dead;        /* closed; freed after this loop turn */
	int64_t close_by; /* closing: close even if not flushed by then */
	int64_t accepted_at;
	int64_t last_rx;
	int64_t last_hb_sent;
	uint64_t hb_req;          /* the id of our outstanding HEARTBEAT, 0 when none */
	int64_t hb_pending_since; /* when an unanswered HEARTBEAT was first sent */

	struct hub_agent *agent; /* set by HELLO */
	uint64_t frames_in;

	/* authentication (auth.c): AUTH_START, then AUTH_PROOF */
	enum { AUTH_NONE = 0, AUTH_CHALLENGED, AUTH_DONE } auth;
	enum rf_auth_role role; /* when AUTH_DONE */
	char auth_id[RF_CTL_MAX_NAME + 1];
	uint8_t auth_nc[RF_AUTH_NONCE_LEN], auth_nh[RF_AUTH_NONCE_LEN];
};

/* ---- control messages, as the dispatcher hands them out (ctl_server.c) -- */

/* One received message: its table row, checked and decoded once. */
struct ctl_request {
	uint16_t type;
	uint64_t req_id;
	uint32_t len; /* payload bytes */
	const struct rf_ctl_msg_desc *desc;
	const union rf_ctl_msg *m; /* the payload, decoded by desc->decode */
};

/*
 * A refusal. A handler that refuses returns -errno (the code its ERROR
 * carries) and fills this with ctl_fail(); ctl_dispatch() alone sends the
 * ERROR (and counts it in refusals). @close: close the connection once the
 * ERROR is flushed (the peer cannot go on: a wrong protocol version, a
 * failed authentication).
 */
struct ctl_reply {
	bool close;
	char why[RF_CTL_MAX_TEXT + 1];
};

/* The handler of a message type: 0 (it sent its own success reply, if
 * any) or -errno with @r filled. */
typedef int ctl_handler_fn(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r);

/* How the descriptor limit is shared out (limits.c, docs/CONFIG.md). */
struct hub_fd_budget {
	uint64_t limit;        /* RLIMIT_NOFILE (soft) when the hub started */
	uint64_t reserve;      /* kept for images, journals, rings, metrics, logging */
	unsigned max_conns;    /* control connections, proven or not */
	unsigned max_pending;  /* unproven connections per listener */
	unsigned handshake_ms; /* an unproven connection is closed after this */
};

struct hub {
	struct hub_config *cfg;
	int epfd, sigfd, timerfd, lfd;
	struct rf_admit ctl_admit; /* the control listener's accepts and unproven connections */
	struct hub_fd_budget fds;  /* limits.c */
	struct ev_src sig_src, timer_src, listen_src, fab_src;
	struct rf_fab_listener *fab;
	int fab_fd;
	struct ctl_conn *conns;
	unsigned nconns;
	struct hub_agent *agents;
	struct volume *vols;
	size_t nvols;
	uint64_t next_req;     /* hub-originated request ids */
	uint64_t next_session; /* HELLO_OK session ids */
	uint32_t next_handle;  /* volume handles (IO_OPEN_OK) */
	bool stopping;
	bool more_work;       /* something asked for another turn right away */
	int64_t last_data_ms; /* the newest DATA event (rf_now_ms), for poll_us */
	int64_t started_at;
	char rings_dir[PATH_MAX];
	char volumes_dir[PATH_MAX];

	uint64_t conns_accepted, protocol_errors, refusals;
	struct rf_auth_keys keys; /* from psk_file (auth.c) */
	bool auth_on;             /* psk_file is set: every connection authenticates */
	uint64_t auth_ok, auth_failures;
	uint64_t rings_lost_acked; /* rings whose valid prefix ended before their durable mark */
	uint64_t reloads, reload_failures; /* SIGHUP (reload.c) */
	bool log_level_fixed;              /* --log-level: a reload keeps it */
	struct hub_metrics *metrics;       /* the Prometheus endpoint (metrics.c), or NULL */

	/* status.c: sync and resync rate windows, by volume name (freed in hub_fini) */
	struct rate_win *rate_wins;
	size_t nrate_wins;
};

/* clocks and ids (base.c) */
int64_t hub_wall_ms(void); /* CLOCK_REALTIME: journal times, record ages */
uint64_t hub_new_req_id(struct hub *h);

#endif /* REPHUB_BASE_H */

/* SPDX-License-Identifier: MIT */
/*
 * rephubd internals: one thread, one epoll loop (hub.c) that owns every
 * object below. Nothing here is thread-safe and nothing needs to be.
 *
 *   hub.c         the loop: signalfd, timerfd, control listener, control
 *                 connections, the fabric listener; start-up and shutdown
 *   ctl_server.c  control connections: framing, output buffers, dispatch
 *   session.c     agents: HELLO, rings, tokens, data attach/detach, PROGRESS
 *   volume.c      volumes: VOLUME_REPORT, recovery images, state files
 *   drain.c       ring -> recovery images, persist, publish
 *   sync.c        initial full sync (SYNC_READ / SYNC_POSTED)
 *   resync.c      resyncing <-> protected from PROGRESS, bytes resent
 *   status.c      STATUS -> JSON
 *   metrics.c     the Prometheus endpoint (libmicrohttpd in the epoll loop)
 */
#ifndef REPHUB_HUB_H
#define REPHUB_HUB_H

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

#define HUB_TICK_MS           100         /* timer period: pacing, retries, timeouts */
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
struct agent;
struct volume;
struct journal;
struct test_view;

/* What an epoll registration points at. */
enum ev_kind { EV_SIGNAL, EV_TIMER, EV_LISTEN, EV_CONN, EV_FABRIC, EV_METRICS };

struct ev_src {
	enum ev_kind kind;
	void *ptr;
};

/* ---- control connections (ctl_server.c) -------------------------------- */

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

	struct agent *agent; /* set by HELLO */
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

/* ---- agents (session.c) ------------------------------------------------ */

struct agent {
	struct hub *hub;
	struct agent *next;
	char id[RF_CTL_MAX_NAME + 1];
	char ring_path[PATH_MAX];
	struct rf_ring *ring; /* open from the first HELLO (or start-up) on */
	bool ring_broken;     /* cannot be opened or persisted: see the log */

	struct ctl_conn *conn; /* the live control connection, or NULL */
	uint64_t session;      /* id of the control session (HELLO_OK) */
	uint64_t token;        /* data attach token; 0 when none is valid */
	struct rf_fab_peer *peer;
	bool attach_pending; /* attach callback said yes; ATTACHED not seen yet */
	int64_t attach_pending_at;
	uint64_t landed_seq; /* DATA events: every record up to it has landed */
	bool landed_valid;

	uint64_t durable_pos, durable_seq; /* applied, synced and head persisted */
	bool need_drain;
	bool drain_stuck;     /* an apply failed: retry on the timer */
	bool stop_invalid;    /* an invalid record at the head (no peer to fence) */
	uint64_t invalid_seq; /* its sequence (logged and counted once) */
	int64_t drain_retry_at;

	/* the newest PROGRESS */
	bool have_progress;
	uint64_t progress_next_seq;
	uint32_t progress_queued;
	int64_t progress_at;
	uint64_t progress_count;
	uint64_t progress_instance; /* the agent's run (0: short PROGRESS or none) */
	uint32_t congestions;       /* its queue overflowed this often (this run) */
	bool congested;             /* ... and it has not resent all of it yet */

	/* counters */
	uint64_t records, bytes, sync_records, sync_bytes;
	uint64_t invalid_records, fences, attaches, sessions;
	char last_error[200];
};

/* ---- volumes (volume.c, sync.c) ---------------------------------------- */

enum chunk_state { CHUNK_PENDING = 0, CHUNK_INFLIGHT, CHUNK_POSTED, CHUNK_SYNCED };

struct sync_inflight {
	uint64_t req_id;
	uint64_t chunk;
	int64_t sent_at;
	uint64_t durable_at_send; /* the answer's record cannot be older */
};

struct sync_posted {
	uint64_t chunk;
	uint64_t seq;
};

struct vol_sync {
	bool active;
	uint64_t chunk; /* bytes per SYNC_READ: 1 MiB, less for a small ring */
	uint64_t nchunks, synced_chunks, cursor;
	uint64_t synced_bytes;
	uint8_t *cstate; /* enum chunk_state per chunk */
	struct sync_inflight infl[HUB_SYNC_WINDOW];
	unsigned ninfl;
	struct sync_posted *posted;
	size_t nposted, posted_cap;
	double tokens; /* pacing bucket, bytes */
	int64_t refill_at;
	int64_t retry_at;
	unsigned backoff_ms;   /* nonzero: refused (EAGAIN) since the last SYNC_POSTED */
	uint64_t last_req;     /* the newest SYNC_READ request id sent */
	uint64_t refused_upto; /* EAGAIN for requests up to this id: the same episode */
	uint64_t refused_seq;  /* the owner's durable seq at the last refusal */
	bool wait_durable;     /* refused: retry at the next durable progress */
	uint64_t errors, eagain, requests;
	int64_t started_at;
};

struct volume {
	struct hub *hub;
	const struct hub_vol_config *cfg;
	uint32_t handle; /* stable while the hub runs (a reload reorders vols[]) */
	int fd;          /* the recovery image, -1 until opened */
	uint64_t size;   /* bytes; 0 until known */
	enum rf_vol_state state;

	/* persisted in state_dir/volumes/NAME.state */
	bool has_state;
	char owner_id[RF_CTL_MAX_NAME + 1];
	uint32_t vol_id;
	bool synced;

	struct agent *owner; /* agent of owner_id (maybe disconnected) */
	bool reported;       /* reported in the owner's current session */
	uint64_t reported_session;
	bool touched; /* written in the current drain batch */

	struct vol_sync sync;

	/* from PROGRESS */
	uint64_t dirty_bytes;
	uint64_t progress_count;
	int64_t progress_at;

	/* resync (resync.c) */
	uint64_t resend_bytes;         /* newest PROGRESS: waiting to be read back and resent */
	uint64_t resent_bytes;         /* resent since the hub started, over agent runs */
	uint64_t resent_seen;          /* the agent's own counter in its newest PROGRESS */
	uint64_t resent_instance;      /* ... and that agent run */
	uint64_t resyncs;              /* times it became resyncing */
	const char *resync_cause;      /* while resyncing: "reconnect", "congestion", ... */
	int64_t resync_started;        /* when the current or last resync began */
	uint64_t resync_bytes;         /* resent since then */
	const char *last_resync_cause; /* NULL until one completed */
	int64_t last_resync_ms;        /* how long the last completed one took */
	uint64_t last_resync_bytes;    /* and what it resent */

	uint64_t records, bytes, invalid_records;

	/* point in time (pit.c, testview.c) */
	struct journal *jr;       /* NULL: journal_time = 0, records go straight to the image */
	struct test_view *test;   /* a failover test, or NULL */
	bool failed_over;         /* persisted: the owner is fenced off this volume */
	uint64_t failover_seq;    /* the point it failed over at */
	uint64_t dropped_records; /* the owner's records refused after the failover */
};

/* ---- the hub ----------------------------------------------------------- */

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
	struct agent *agents;
	struct volume *vols;
	size_t nvols;
	uint64_t next_req;     /* hub-originated request ids */
	uint64_t next_session; /* HELLO_OK session ids */
	uint32_t next_handle;  /* volume handles (IO_OPEN_OK) */
	bool stopping;
	bool more_work; /* something asked for another turn right away */
	int64_t started_at;
	char rings_dir[PATH_MAX];
	char volumes_dir[PATH_MAX];

	uint64_t conns_accepted, protocol_errors, refusals;
	struct rf_auth_keys keys; /* from psk_file (auth.c) */
	bool auth_on;             /* psk_file is set: every connection authenticates */
	uint64_t auth_ok, auth_failures;
	uint64_t reloads, reload_failures; /* SIGHUP (reload.c) */
	bool log_level_fixed;              /* --log-level: a reload keeps it */
	struct hub_metrics *metrics;       /* the Prometheus endpoint (metrics.c), or NULL */
};

/* metrics.c: the Prometheus endpoint, served from the hub's loop */
int metrics_start(struct hub *h);
void metrics_run(struct hub *h);
void metrics_stop(struct hub *h);
char *metrics_text(struct hub *h, size_t *len);

/* auth.c: the control channel's PSK challenge-response */
int auth_init(struct hub *h);
void auth_fini(struct hub *h);
/* AUTH_START, AUTH_PROOF: the state they need (checked before decoding), then the step. */
ctl_handler_fn auth_start_check, auth_start, auth_proof_check, auth_proof;
/* An AUTH_* payload that does not decode: a failed authentication. */
int auth_malformed(struct ctl_conn *c, const char *why, struct ctl_reply *r);
/* May @c send a message of @type (table row @d, NULL when unknown)? 0, or
 * -EACCES with @r filled (closing before authentication). */
int auth_allows(struct ctl_conn *c, uint16_t type, const struct rf_ctl_msg_desc *d,
                struct ctl_reply *r);
/* The largest payload @c may send now (a cap before AUTH_OK). */
uint32_t auth_frame_max(const struct ctl_conn *c);
/* A header above auth_frame_max() arrived: refused, closing. */
void auth_frame_too_big(struct ctl_conn *c);
/* @c did not prove itself in time: count it and close it. */
void auth_handshake_expired(struct ctl_conn *c);
/* After a reload: close connections whose proof no longer holds. */
void auth_recheck(struct hub *h, const struct rf_auth_keys *old);
/* With psk_file: warn about each volume no `agent =` binds. */
void auth_warn_unbound(const struct hub *h);

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

/* hub.c */
int64_t hub_now_ms(void);
int hub_ep_add(struct hub *h, int fd, uint32_t events, struct ev_src *src);
int hub_ep_mod(struct hub *h, int fd, uint32_t events, struct ev_src *src);
void hub_ep_del(struct hub *h, int fd);
uint64_t hub_new_req_id(struct hub *h);
int hub_init(struct hub *h, struct hub_config *cfg);
int hub_run(struct hub *h);
void hub_fini(struct hub *h);

/* ctl_server.c */
int ctl_listen(struct hub *h);
void ctl_accept(struct hub *h);
void ctl_conn_event(struct ctl_conn *c, uint32_t events);
/* One complete frame (header @h, payload @p): look it up, check direction
 * and role, decode, call its handler, send its ERROR if refused. */
void ctl_dispatch(struct ctl_conn *c, const struct rf_ctl_hdr *h, const uint8_t *p);
/* Fill @r->why; returns -@code (for "return ctl_fail(r, EPERM, ...)"). */
int ctl_fail(struct ctl_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ctl_send(struct ctl_conn *c, uint16_t type, uint64_t req_id, const void *payload, uint32_t len);
void ctl_send_error(struct ctl_conn *c, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ctl_close(struct ctl_conn *c, const char *why);
void ctl_proven(struct ctl_conn *c);
void ctl_close_after_flush(struct ctl_conn *c);
void ctl_tick(struct hub *h, int64_t now);
void ctl_reap(struct hub *h);
void ctl_close_all(struct hub *h);

/* session.c */
struct agent *agent_find(struct hub *h, const char *id);
struct agent *agent_get(struct hub *h, const char *id);
bool agent_live(const struct agent *a);
void agent_set_error(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int agent_open_ring(struct agent *a);
ctl_handler_fn session_hello_check, session_hello; /* HELLO */
ctl_handler_fn session_progress;                   /* PROGRESS */
void session_conn_closed(struct ctl_conn *c);
int session_fab_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem);
void session_fab_poll(struct hub *h);
void session_fence(struct agent *a, const char *why);
void session_scan_rings(struct hub *h);
void session_tick(struct hub *h, int64_t now);

/* volume.c */
int volumes_init(struct hub *h);
void volumes_fini(struct hub *h);
struct volumes_reload_stats {
	unsigned added, removed, kept; /* kept: dropped from the file but busy */
};
/*
 * Rebuild the volume list from @nc (not yet the running configuration):
 * new volumes are set up, unused dropped ones torn down, busy dropped ones
 * appended to @nc; kept volumes move with their state and keep their
 * recovery and journal settings (written back into @nc); a removed volume
 * is marked not synced (added back, it syncs in full). A volume is busy
 * while its agent is connected, its agent's ring holds records, its
 * journal holds entries, or a test runs. 0, -ENOMEM, or -EINVAL when two
 * volumes would share a recovery image (logged); on error nothing changed.
 */
int volumes_reload(struct hub *h, struct hub_config *nc, struct volumes_reload_stats *st);
struct volume *volume_find(struct hub *h, const char *name);
struct volume *volume_by_vol_id(struct agent *a, uint32_t vol_id, bool live);
ctl_handler_fn volume_report; /* VOLUME_REPORT */
int volume_save_state(struct volume *v);
void volume_set_state(struct volume *v, enum rf_vol_state st, bool notify);
void volume_agent_gone(struct agent *a);
int volume_open_image(struct volume *v, uint64_t size, bool create, char *why, size_t whylen);

/* drain.c */
enum drain_mode {
	DRAIN_LIVE,   /* an attached producer: an invalid record fences it */
	DRAIN_OFFLINE /* no producer: stop at an invalid record */
};
int drain_agent(struct agent *a, enum drain_mode mode);
int drain_discard_invalid(struct agent *a);
void drain_all(struct hub *h);
void drain_publish(struct agent *a);

/* sync.c */
int sync_start(struct volume *v);
void sync_stop(struct volume *v);
void sync_requeue_unsynced(struct agent *a);
void sync_pump(struct hub *h, int64_t now);
ctl_handler_fn sync_on_posted; /* SYNC_POSTED */
bool sync_on_error(struct ctl_conn *c, uint64_t req_id, const struct rf_ctl_error *e);
void sync_on_durable(struct agent *a);
void sync_tick(struct hub *h, int64_t now);
uint64_t sync_synced_bytes(const struct volume *v);

/* pit.c: journals, points, failover */
int64_t hub_wall_ms(void);
int pit_volume_init(struct volume *v);
void pit_volume_fini(struct volume *v);
int pit_owner_change(struct volume *v);
/*
 * @a is about to get a new ring, whose sequences start over: apply and
 * reset the journals of its volumes first. Returns 0, or -errno when one
 * could not be (the ring must then not be created: its records would be
 * taken for ones already journaled).
 */
int pit_ring_new(struct agent *a);
int pit_record(struct volume *v, const struct rf_ring_record *r);
int pit_commit(struct volume *v);
void pit_tick(struct hub *h, int64_t now);
ctl_handler_fn pit_points, pit_admin; /* POINTS, ADMIN */

/* testview.c: a failover test's view (scratch, then journal, then image) */
int testview_start(struct volume *v, uint64_t seq, int64_t time_ms, char *why, size_t whylen);
void testview_stop(struct volume *v);
uint64_t testview_seq(const struct volume *v);
ctl_handler_fn testview_io; /* IO_OPEN, IO_READ, IO_WRITE, IO_FLUSH */

/* resync.c */
void resync_begin(struct volume *v, const char *cause, bool notify);
void resync_on_progress(struct agent *a, const struct rf_ctl_progress *m);
void resync_ring_tail(struct agent *a);

/* status.c */
ctl_handler_fn status_request; /* STATUS */
char *status_json(struct hub *h, size_t *len);
void status_agent_lag(const struct agent *a, uint64_t *recs, uint64_t *bytes);
bool status_volume_caught_up(const struct volume *v);

#endif /* REPHUB_HUB_H */

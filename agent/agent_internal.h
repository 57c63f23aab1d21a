/* SPDX-License-Identifier: MIT */
/*
 * librepagent internals, shared by its files, one job each:
 *
 *   agent.c       the API, volumes, the write path, chunk state, status
 *   loop.c        the agent's thread: the epoll loop, timers and the link
 *                 state machine (enum rfa_link_state, rfa_link_set)
 *   ctl_client.c  the control client: dial, auth, HELLO, VOLUME_REPORT,
 *                 frames in and out, the answers to the hub's requests
 *   post.c        the data path: attach to the ring, queue -> transport
 *                 post, completions (SENT, POSITION), sync/resend reads
 *   resend.c      the agent's own resend of dirty chunks and its pacing
 *   progress.c    PROGRESS, durable_seq and rf_agent_wait_durable
 *
 * Locks, in the order they may be taken (never the other way round); this
 * is the one place the order is written down (docs/AGENT.md points here):
 *
 *   1. a volume's range lock (rangelock.h; a logical lock, waited for with
 *      no mutex held). Held by a writer from write_begin to write_end, and
 *      by the loop thread while it flushes the queue, reads and posts a sync
 *      or resend record for the range.
 *   2. agent.lock: the queue, the per-volume hub state (ok/attached/state),
 *      the volume table, the status counters, the published link state.
 *   3. vol.lock: the volume's chunk state (refs, resend bits, counters) and
 *      the bits of its bitmap mapping.
 *   4. vol.persist_lock: msync of the bitmap (group commit of 0->1 flips).
 *
 * No code holds agent.lock and vol.lock at the same time, and vol.lock is
 * released before persist_lock is taken; the numbers give the order should
 * that ever change. Nothing waits for the hub while holding any of them,
 * and nothing waits on a range lock while holding a mutex. Writers never
 * wait for the loop thread, so the loop thread may wait for a range lock.
 *
 * agent.durable_cv goes with agent.lock: rf_agent_wait_durable() waits on
 * it holding agent.lock and nothing else, so its caller must hold none of
 * these locks: never the loop thread (read callback), never a writer
 * between write_begin and write_end (it holds a range lock the loop thread
 * may be waiting for). The loop thread broadcasts it after it changed
 * durable_seq or running under agent.lock, with no lock held
 * (rfa_durable_advance, rfa_fab_attach, the end of rfa_loop_main).
 *
 * Everything under "loop-private" is touched only by the loop thread (or by
 * stop/destroy after it has been joined).
 */
#ifndef REPFABRIC_AGENT_INTERNAL_H
#define REPFABRIC_AGENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bitmap.h"
#include "rangelock.h"
#include "repfabric/agent.h"
#include "repfabric/auth.h"
#include "repfabric/ctl_stream.h"
#include "repfabric/fabric.h"
#include "repfabric/ring.h"

/* A guest write waiting in the queue for the ring. */
struct rfa_rec {
	struct rfa_rec *next;
	struct rf_agent_vol *vol;
	uint16_t type; /* RF_RING_REC_DATA/ZERO/TRIM */
	uint64_t off;
	uint32_t len;
	uint64_t ts_ns;
	uint8_t *buf;      /* DATA: encode buffer, payload at +RF_RING_REC_HDR_SIZE */
	size_t buf_size;   /* rf_ring_encode_buf_size(len) */
	uint64_t charge;   /* bytes counted against the queue limit */
	uint32_t done_len; /* loop-private: bytes already posted (a split record) */
	uint64_t ticket;   /* a->q_pushed when it was queued */
};

/* An encoded record piece posted to the ring (loop-private). */
struct rfa_post {
	struct rfa_post *next;
	uint64_t seq;  /* the record's sequence */
	uint8_t *buf;  /* encode buffer; freed on SENT */
	bool sent;     /* SENT seen (or the connection is gone) */
	bool released; /* durable: its chunk references were dropped */
	/* The chunk references this piece carries (the last piece of a write or
	 * a resend); dropped when it is durable. */
	struct rf_agent_vol *vol;
	uint64_t c_first, c_last;
	bool has_refs;
	uint64_t ticket; /* the queued write it ends (its last piece), else 0 */
};

struct rf_agent_vol {
	struct rf_agent *agent;
	char name[RF_CTL_MAX_NAME + 1];
	uint64_t size;
	uint32_t vol_id;
	rf_agent_read_fn read;
	void *read_ctx;
	uint64_t nchunks;
	bool bitmap_valid; /* at open */

	struct rfa_rangelock rl;

	pthread_mutex_t lock; /* chunk state and the bitmap's bits */
	struct rfa_bitmap *bm;
	uint32_t *refs;            /* per chunk: writes begun or records posted, not durable */
	uint64_t *resend;          /* bit per chunk: must be read and posted again */
	uint64_t *touched;         /* bit per chunk: written since the last clear pass */
	uint64_t resend_count;     /* set bits in resend */
	uint64_t pending_chunks;   /* chunks with refs > 0 or resend */
	uint64_t set_gen;          /* 0->1 bit flips so far */
	uint64_t flip_lo, flip_hi; /* bitmap pages with flips not yet persisted */
	bool flips;                /* flip_lo/hi are meaningful */
	bool bm_broken;            /* a persist failed: bitmap flagged invalid */

	pthread_mutex_t persist_lock; /* serialises msync; protects nothing else */
	_Atomic uint64_t synced_gen;  /* flips up to here are on disk */

	/* Under agent.lock. */
	bool ok;       /* the hub accepted it (VOLUME_OK) in this control session */
	bool attached; /* ok and the ring is attached: writes are queued */
	uint8_t state; /* enum rf_vol_state from the hub */
	uint64_t synced_bytes;
	uint64_t queued_bytes;
	uint32_t queued;
	uint64_t resent_bytes; /* read back and posted by the agent's own resend */
	enum rf_agent_ack ack; /* acknowledgement level (rf_agent_vol_set_ack) */
	int ack_timeout_ms;
	int ack_poll_us;
	bool ack_fallback;      /* waiting for it failed: async until caught up */
	uint64_t ack_mark;      /* q_pushed when it fell back: caught up once durable */
	uint64_t ack_fallbacks; /* times it fell back */
	uint64_t ack_waits;     /* writes acknowledged at the level */

	/* Loop-private. */
	bool trusted;         /* report bitmap_valid: valid at open, or the hub said protected */
	bool reported;        /* VOLUME_REPORT sent in this control session */
	bool refused;         /* ... and the hub refused it (REPORT_AGAIN retries) */
	uint64_t report_req;  /* its request id */
	uint64_t resend_next; /* where the resend scan continues */
	uint64_t resync_rate; /* bytes/s for resends, from VOLUME_OK; 0 = unlimited */
	double rs_tokens;     /* resend pacing bucket, bytes (may owe one run) */
	int64_t rs_refill_ms;
	bool rs_active;      /* a resync (resend set not empty) is under way */
	int64_t rs_start_ms; /* when it began */
	uint64_t rs_base;    /* resent_bytes when it began */
};

/*
 * The link to the hub, as the loop thread drives it. Changed in one place,
 * rfa_link_set() (loop.c), which logs every transition:
 *
 *   DISCONNECTED -> BACKOFF            the loop starts (first dial at once)
 *   BACKOFF -> CONNECTING              reconnect_at_ms reached, not stopping
 *   CONNECTING -> AUTHENTICATING       dialed, and the agent has a key
 *   CONNECTING -> HELLO                dialed, no key
 *   AUTHENTICATING -> HELLO            both proofs good
 *   HELLO -> REPORTING                 HELLO_OK
 *   REPORTING -> ATTACHING             every VOLUME_REPORT answered, one accepted
 *   ATTACHING -> LINKED                data connection up, ring producer made
 *   LINKED -> BROKEN                   the data connection failed (post, poll,
 *                                      CLOSED, an impossible head)
 *   any of CONNECTING..BROKEN -> BACKOFF   a failure: both connections torn
 *                                      down, reconnect after the backoff
 *   any -> DISCONNECTED                the loop ends (stop)
 *
 * CONNECTING, AUTHENTICATING, HELLO and ATTACHING last only inside one
 * blocking call (each step bounded by connect_timeout_ms). The order of the
 * values matters: from REPORTING on the control session is up, from LINKED
 * on the data connection and the ring producer exist.
 */
enum rfa_link_state {
	RFA_LINK_DISCONNECTED,   /* no connection and none wanted: not started, or stopped */
	RFA_LINK_BACKOFF,        /* no connection; the next dial at c.reconnect_at_ms */
	RFA_LINK_CONNECTING,     /* dialing the hub's control address */
	RFA_LINK_AUTHENTICATING, /* PSK proofs both ways on the new socket */
	RFA_LINK_HELLO,          /* HELLO sent, waiting for HELLO_OK */
	RFA_LINK_REPORTING,      /* control session up: VOLUME_REPORTs out, no ring yet */
	RFA_LINK_ATTACHING,      /* rf_fab_connect with the token, then the ring producer */
	RFA_LINK_LINKED,         /* control and data connections up: records are posted */
	RFA_LINK_BROKEN,         /* the data connection failed: torn down at the loop's next look */
};

/* The control session is up (ctl_fd is open) in @s. */
static inline bool rfa_link_ctl_up(enum rfa_link_state s)
{
	return s >= RFA_LINK_REPORTING;
}

/* The data connection and the ring producer exist in @s (maybe broken). */
static inline bool rfa_link_data_up(enum rfa_link_state s)
{
	return s >= RFA_LINK_LINKED;
}

/* Loop-private state of the control and data connections. */
struct rfa_conn {
	int ctl_fd;              /* -1 when disconnected */
	uint8_t *rbuf;           /* the blocking handshake's frames (rfa_ctl_connect) */
	struct rf_ctl_stream st; /* then frames in and out on ctl_fd */
	bool want_out;           /* EPOLLOUT registered */
	uint64_t session, token;
	char data_url[RF_CTL_MAX_TEXT + 1];
	unsigned reports_due; /* VOLUME_REPORTs not answered yet */
	int64_t reports_deadline_ms;
	uint64_t hb_req;      /* our HEARTBEAT waiting for its answer */
	unsigned warned_down; /* failed connects since the last success */
	uint64_t next_req;    /* request ids */
	int64_t last_rx_ms;   /* any frame from the hub */
	int64_t next_hb_ms;   /* next HEARTBEAT */

	struct rf_fab_conn *fab; /* NULL when not attached */
	struct rf_ring_producer *rp;
	uint64_t ring_id; /* of the last attach (0: none yet) */
	uint32_t max_payload;
	bool space_wait;                /* the ring is full: wait for a POSITION */
	int64_t resend_retry_ms;        /* a local read failed: resend again after this */
	int64_t resend_wake_ms;         /* resync_rate: a paced volume may go on at this time */
	unsigned resend_rr;             /* volume the resend starts with */
	bool reap;                      /* posts since the last rf_fab_poll */
	struct rfa_post *phead, *ptail; /* posted pieces, sequence order */
	struct rfa_post *pland;         /* the first of them not known landed, or NULL */
	uint64_t durable_seq;

	int64_t reconnect_at_ms; /* when disconnected: next attempt */
	uint32_t backoff_ms;
	int64_t last_progress_ms;
	int64_t next_clear_ms;
	bool progress_sent;
	bool progress_changed;
	struct rf_ctl_progress last_progress;
};

struct rf_agent {
	char hub[256];
	char id[RF_CTL_MAX_NAME + 1];
	struct rf_agent_opts opts;
	struct rf_auth_keys keys;      /* rf_agent_set_psk_file() */
	const struct rf_auth_key *key; /* ours, or NULL: no authentication */

	pthread_mutex_t lock; /* see the lock order above */
	struct rfa_rec *qhead, *qtail;
	uint64_t q_bytes;  /* charge of the queued records */
	uint32_t q_count;  /* queued records */
	uint64_t q_pushed; /* records ever queued */
	uint64_t q_popped; /* records ever taken off the queue */
	struct rf_agent_vol *vols[RF_AGENT_MAX_VOLS];
	_Atomic unsigned nvols; /* vols[0..nvols) are set and never change */
	bool stopping;
	/* Written by rfa_link_set() only (loop thread, under lock); the loop
	 * thread reads it without the lock. */
	enum rfa_link_state link;
	bool running; /* the loop thread runs: set by start, cleared at the loop's end */
	uint64_t next_seq, durable_seq;
	pthread_cond_t durable_cv; /* with lock: durable_seq, durable/landed_ticket, link_epoch or
	                              running changed (CLOCK_MONOTONIC) */
	/* Acknowledgement tickets: queued writes are numbered (q_pushed) and
	 * posted in that order, so "every ticket up to T is durable" is one
	 * number. A teardown drops what was not durable (it becomes a resend):
	 * the epoch moves on, and tickets of the old epoch above what was
	 * durable then can never be acknowledged. */
	uint64_t durable_ticket; /* every ticket up to it is durable (this epoch) */
	uint64_t landed_ticket;  /* every ticket up to it has landed (this epoch) */
	uint64_t epoch_landed;   /* max(landed, durable)_ticket when the previous epoch ended */
	_Atomic unsigned landed_vols; /* volumes at level landed: ask the fabric for LANDED */
	_Atomic unsigned ack_waiting; /* writers in rf_agent_write_ack's wait */
	_Atomic int loop_spin_us;     /* the largest repagent-poll-us of a waiting level */
	uint64_t link_epoch;          /* teardowns so far */
	uint64_t epoch_confirmed;     /* durable_ticket when the previous epoch ended */
	uint64_t reconnects, records, record_bytes, sync_reads, resent_bytes, overflow_writes;
	unsigned attaches;
	uint64_t instance;         /* random at rf_agent_new, never 0: PROGRESS tells restarts */
	uint32_t congestions;      /* times the queue overflowed into bitmap tracking */
	bool congested;            /* since then not every overflowed write was resent */
	int64_t congested_ms;      /* when the current congestion began */
	uint64_t congested_resent; /* resent_bytes then */

	bool started;
	pthread_t thread;
	int evfd; /* wakes the loop: queue, new volume, stop */
	int tfd;  /* timerfd: backoff, heartbeat, PROGRESS, bitmap clears */
	int epfd;
	struct rfa_conn c; /* loop-private */
};

/* ---- agent.c ----------------------------------------------------------- */

/* Chunks covered by [off, off + len), len > 0. */
static inline void rfa_chunks(uint64_t off, uint64_t len, uint64_t *first, uint64_t *last)
{
	*first = off / RF_AGENT_CHUNK_SIZE;
	*last = (off + len - 1) / RF_AGENT_CHUNK_SIZE;
}

/* Drop one reference from each chunk in [first, last]; with @resend, mark
 * them for a resend first. Takes vol.lock. */
void rfa_chunks_release(struct rf_agent_vol *v, uint64_t first, uint64_t last, bool resend);
/* A resend of [first, last] was posted: clear the resend marks and take a
 * reference on each chunk (dropped when the record is durable). */
void rfa_chunks_resent(struct rf_agent_vol *v, uint64_t first, uint64_t last);
/* The first run of resend chunks at or after *@cursor (wrapping), at most
 * @max chunks long. Returns false when there is none. */
bool rfa_resend_find(struct rf_agent_vol *v, uint64_t *cursor, uint64_t max, uint64_t *first,
                     uint64_t *last);
/* Bytes of chunks that are pending (refs or resend), clamped to the size. */
uint64_t rfa_dirty_bytes(struct rf_agent_vol *v);
/* Bytes of chunks marked for a resend (only in the bitmap), clamped to the size. */
uint64_t rfa_resend_bytes(struct rf_agent_vol *v);
/* Clear the bitmap bits of chunks that are no longer pending and were not
 * written since the previous pass (@final: whatever is not pending), then
 * persist (@final: MS_SYNC, else MS_ASYNC). Returns the bits cleared. */
uint64_t rfa_clear_pass(struct rf_agent_vol *v, bool final);

/* The volume with hub id @id, or NULL. */
struct rf_agent_vol *rfa_vol_by_id(struct rf_agent *a, uint32_t id);
/* Writes to @v are queued (attached, not stopping). Takes agent.lock. */
bool rfa_vol_attached(struct rf_agent *a, struct rf_agent_vol *v);
/* CLOCK_REALTIME in nanoseconds: a record's timestamp. */
uint64_t rfa_realtime_ns(void);

/* ---- loop.c: the agent's thread ------------------------------------------ */

/* epoll tags of the loop's fds. */
enum { RFA_TAG_EVENT = 1, RFA_TAG_TIMER, RFA_TAG_CTL, RFA_TAG_FAB };

int rfa_loop_init(struct rf_agent *a);
void rfa_loop_fini(struct rf_agent *a);
void *rfa_loop_main(void *arg);
/* Wake the loop (queue non-empty, new volume, stop). Any thread. */
void rfa_wake(struct rf_agent *a);

/* The one place a->link changes: publish @to under agent.lock, log it. */
void rfa_link_set(struct rf_agent *a, enum rfa_link_state to);
/* Close both connections, turn everything queued into resends and go to
 * BACKOFF (the next dial after the backoff delay). */
void rfa_disconnect(struct rf_agent *a, const char *why);

int rfa_ep_add(struct rf_agent *a, int fd, uint32_t events, uint64_t tag);
void rfa_ep_mod(struct rf_agent *a, int fd, uint32_t events, uint64_t tag);
void rfa_ep_del(struct rf_agent *a, int fd);

/* ---- ctl_client.c: the control connection --------------------------------- */

#define RFA_CTL_RBUF_CAP (RF_CTL_HDR_LEN + RF_CTL_MAX_PAYLOAD) /* c.rbuf */
#define RFA_CTL_WBUF_MAX (4u << 20) /* unsent control bytes before we give up */

/* BACKOFF -> CONNECTING -> (AUTHENTICATING) -> HELLO -> REPORTING, or back
 * to BACKOFF. Blocking, each step bounded by connect_timeout_ms. */
void rfa_ctl_connect(struct rf_agent *a);
/* Send VOLUME_REPORT for each volume not yet reported in this session. */
void rfa_ctl_report_volumes(struct rf_agent *a);
/* The hub accepted at least one volume in this session. */
bool rfa_ctl_any_volume_ok(struct rf_agent *a);
/* Queue one frame for the hub; @len is the encoded payload length (< 0:
 * the encoder's error, logged). Disconnects when the hub does not read. */
void rfa_ctl_send(struct rf_agent *a, uint16_t type, uint64_t req, const void *payload, int len);
/* Write what the socket takes of the queued frames (EPOLLOUT). */
void rfa_ctl_flush(struct rf_agent *a);
/* Read and handle the hub's frames (EPOLLIN). */
void rfa_ctl_readable(struct rf_agent *a);
/* Close the control connection; every volume is to be reported again. */
void rfa_ctl_close(struct rf_agent *a);
/* Heartbeats and the VOLUME_REPORT deadline, @now; returns the next
 * deadline, or @now after it disconnected. Control session up only. */
int64_t rfa_ctl_timers(struct rf_agent *a, int64_t now);

/* ---- post.c: the data path ------------------------------------------------ */

/* REPORTING -> ATTACHING -> LINKED (or BACKOFF): connect the data channel
 * with the token (blocking, bounded), settle the previous session's posts. */
void rfa_fab_attach(struct rf_agent *a);
/* Close the data connection and the producer; keep the posts that may still
 * turn out durable (the next attach says), without their buffers. */
void rfa_fab_close(struct rf_agent *a);
/* Reap the transport's events (SENT, POSITION, CLOSED); LINKED only. */
void rfa_fab_events(struct rf_agent *a, int timeout_ms);
/* Post queued records in order until @until records have ever been taken
 * off the queue, or it is empty. Returns 0, -EAGAIN (ring full or no
 * memory: try again later) or -ENOTCONN. */
int rfa_post_queue(struct rf_agent *a, uint64_t until);
/* Read [off, off + len) of @v under its range lock and post it as DATA with
 * the SYNC flag (after the records queued before). With @resend, the
 * chunks' resend marks become references carried by the record. *@seq: the
 * last record's sequence. Returns 0, -EAGAIN (ring full, or not readable
 * now), -EIO (local read failed), -ENOTCONN. */
int rfa_post_range(struct rf_agent *a, struct rf_agent_vol *v, uint64_t off, uint32_t len,
                   bool resend, uint64_t *seq);
/* A piece was posted: it goes to the end of the list (sequence order). */
void rfa_posts_append(struct rfa_conn *c, struct rfa_post *p);
/* Free the posts at the head that are sent and released. */
void rfa_posts_free_done(struct rfa_conn *c);
/* Give up the records of a dead session: each carrying chunk references
 * that is not known durable becomes a resend. */
void rfa_posts_to_resend(struct rf_agent *a);
/* Some post is not known durable yet. */
bool rfa_posts_pending(const struct rfa_conn *c);

/* ---- resend.c: the agent's own resend --------------------------------------- */

/* Resend dirty chunks of attached volumes, at most a round's budget, paced
 * by each volume's resync_rate. Returns true when it stopped on the budget
 * with more to do. */
bool rfa_resend_some(struct rf_agent *a);
/* VOLUME_OK gave @v the resend rate @rate (bytes/s, 0: unpaced); a new
 * rate starts with a full run's worth of tokens. */
void rfa_resend_set_rate(struct rf_agent_vol *v, uint64_t rate);

/* ---- progress.c: PROGRESS and durability ------------------------------------ */

/* Build PROGRESS and send it when due (@force: now). Data connection up. */
void rfa_progress(struct rf_agent *a, bool force);
/* rfa_progress(a, false); returns when it is due next. */
int64_t rfa_progress_timer(struct rf_agent *a);
/* POSITION: every record before @seq is durable: drop the posts' chunk
 * references and publish durable_seq. Loop thread only. */
void rfa_durable_upto(struct rf_agent *a, uint64_t seq);
/* Every record up to @seq (inclusive) is in the hub's ring memory (LANDED).
 * Loop thread only. */
void rfa_landed_upto(struct rf_agent *a, uint64_t seq);
/* Every record before @seq is durable at the hub: raise durable_seq to @seq
 * (never lowers it) and, when it moved, wake rf_agent_wait_durable(). Takes
 * agent.lock; call with no lock held. Loop thread only. */
void rfa_durable_advance(struct rf_agent *a, uint64_t seq, uint64_t ticket);
/*
 * End a link epoch (docs/DURABILITY.md): queued writes whose tickets are not
 * durable now can never be acknowledged at their level (their records were
 * dropped and become resends); their waiters fall back. Any thread; takes
 * agent.lock.
 */
void rfa_ack_epoch_end(struct rf_agent *a);
/* A volume in acknowledgement fallback that caught up returns to its level. */
void rfa_ack_check_caught_up(struct rf_agent_vol *v, uint64_t resend_bytes, uint64_t dirty_bytes);
/* durable_seq or running changed (under agent.lock, now released): wake
 * rf_agent_wait_durable(). */
void rfa_durable_wake(struct rf_agent *a);

#endif /* REPFABRIC_AGENT_INTERNAL_H */

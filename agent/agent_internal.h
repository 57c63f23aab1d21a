/* SPDX-License-Identifier: MIT */
/*
 * librepagent internals, shared by agent.c (API, volumes, write path, chunk
 * state) and loop.c (the agent's thread: control channel, ring producer,
 * data connection, sync reads, resends, PROGRESS, bitmap clears).
 *
 * Locks, in the order they may be taken (never the other way round):
 *
 *   1. a volume's range lock (rangelock.h; a logical lock, waited for with
 *      no mutex held). Held by a writer from write_begin to write_end, and
 *      by the loop thread while it flushes the queue, reads and posts a sync
 *      or resend record for the range.
 *   2. agent.lock: the queue, the per-volume hub state (ok/attached/state),
 *      the volume table, the status counters.
 *   3. vol.lock: the volume's chunk state (refs, resend bits, counters) and
 *      the bits of its bitmap mapping.
 *   4. vol.persist_lock: msync of the bitmap (group commit of 0->1 flips).
 *
 * No code holds agent.lock and vol.lock at the same time, and vol.lock is
 * released before persist_lock is taken; the numbers give the order should
 * that ever change. Nothing waits for the hub while holding any of them.
 *
 * agent.durable_cv goes with agent.lock: rf_agent_wait_durable() waits on
 * it holding agent.lock and nothing else, so its caller must hold none of
 * these locks: never the loop thread (read callback), never a writer
 * between write_begin and write_end (it holds a range lock the loop thread
 * may be waiting for). The loop thread broadcasts it after it changed
 * durable_seq or running under agent.lock, with no lock held
 * (rfa_durable_advance, fab_attach, the end of rfa_loop_main).
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

/* Loop-private state of the control and data connections. */
struct rfa_conn {
	int ctl_fd;        /* -1 when disconnected */
	uint8_t *rbuf;     /* incoming frames */
	size_t rlen;       /* bytes in rbuf */
	uint8_t *wbuf;     /* outgoing frames not yet written */
	size_t wlen, wcap; /* bytes in wbuf, its capacity */
	bool want_out;     /* EPOLLOUT registered */
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
	bool fab_dead;                  /* the data connection failed: tear down */
	bool space_wait;                /* the ring is full: wait for a POSITION */
	int64_t resend_retry_ms;        /* a local read failed: resend again after this */
	int64_t resend_wake_ms;         /* resync_rate: a paced volume may go on at this time */
	unsigned resend_rr;             /* volume the resend starts with */
	bool reap;                      /* posts since the last rf_fab_poll */
	struct rfa_post *phead, *ptail; /* posted pieces, sequence order */
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
	bool connected, attached, stopping;
	bool running; /* the loop thread runs: set by start, cleared at the loop's end */
	uint64_t next_seq, durable_seq;
	pthread_cond_t durable_cv; /* with lock: durable_seq or running changed (CLOCK_MONOTONIC) */
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

/* ---- agent.c: chunk state, used by the loop ---------------------------- */

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

/* Every record before @seq is durable at the hub: raise durable_seq to @seq
 * (never lowers it) and, when it moved, wake rf_agent_wait_durable(). Takes
 * agent.lock; call with no lock held. Loop thread only. */
void rfa_durable_advance(struct rf_agent *a, uint64_t seq);
/* durable_seq or running changed (under agent.lock, now released): wake
 * rf_agent_wait_durable(). */
void rfa_durable_wake(struct rf_agent *a);

/* ---- loop.c ------------------------------------------------------------ */

int rfa_loop_init(struct rf_agent *a);
void rfa_loop_fini(struct rf_agent *a);
void *rfa_loop_main(void *arg);
void rfa_wake(struct rf_agent *a);

int64_t rfa_now_ms(void);

#endif /* REPFABRIC_AGENT_INTERNAL_H */

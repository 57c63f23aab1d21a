/* SPDX-License-Identifier: MIT */
/*
 * librepagent: the protected side of repfabric.
 *
 * An agent mirrors the writes of one or more block volumes to a hub
 * (rephubd). Each guest write is applied locally by the caller and then
 * handed to the agent, which queues a copy and posts it, asynchronously, as
 * a record into the persistent ring the hub owns (rf_fab_* transport). The
 * guest never waits for the hub: when the hub is away or slow, the agent
 * keeps a persistent dirty bitmap (64 KiB per bit) of what the hub does not
 * have yet, and resends those regions (read back through the volume's read
 * callback) once it can.
 *
 * Write path, from any number of threads, for every write/zero/trim:
 *
 *   rf_agent_write_begin(vol, off, len);   range lock + dirty bit (persisted
 *                                          before returning when it flips)
 *   ... apply the write to the local disk ...
 *   rf_agent_write_end(vol, off, len, buf, type, ok);   queue + unlock
 *
 * Overlapping writes are serialised from begin to end, so the ring receives
 * them in the order they hit the local disk; disjoint writes run in
 * parallel. Neither call ever waits for the hub.
 *
 * Threading: rf_agent_start() starts one thread that owns the control
 * connection, the data connection and the ring producer. The write path
 * functions and the status functions may be called from any thread.
 * rf_agent_new/add_volume/start/stop/destroy are not thread-safe against
 * each other (call them from one management thread); add_volume may be
 * called after start.
 *
 * Every function returning int returns 0 or a negative errno.
 */
#ifndef REPFABRIC_AGENT_H
#define REPFABRIC_AGENT_H

#include <stdbool.h>
#include <stdint.h>

#include "repfabric/ctl.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_AGENT_CHUNK_SIZE (64u * 1024u) /* bytes per dirty-bitmap bit */
#define RF_AGENT_MAX_VOLS   256           /* volumes per agent (PROGRESS limit) */

struct rf_agent;
struct rf_agent_vol;

/* Tunables. Zero in any field selects its default. */
struct rf_agent_opts {
	uint64_t queue_limit;        /* bytes of write data queued for the ring (64 MiB) */
	uint32_t backoff_min_ms;     /* first reconnect delay (100 ms) */
	uint32_t backoff_max_ms;     /* reconnect delay cap (5000 ms) */
	uint32_t connect_timeout_ms; /* dial, HELLO and data attach, each (3000 ms) */
	uint32_t heartbeat_ms;       /* HEARTBEAT period; 3 silent periods = dead (5000 ms) */
	uint32_t stop_timeout_ms;    /* how long stop tries to drain to the hub (5000 ms) */
	uint32_t clear_period_ms;    /* dirty-bit clear pass; a bit is cleared once its chunk
	                              * is durable and was not written for a whole period,
	                              * so hot chunks do not re-flip (1000 ms) */
};

/*
 * Read @len bytes at @off of the volume's local disk into @buf (sync reads
 * and resends). Called from the agent's thread while it holds the range
 * lock of [off, off + len). Returns 0, -EAGAIN when the volume cannot be
 * read right now (the agent retries later, and answers a SYNC_READ with
 * EAGAIN), or another -errno (a local read error: logged).
 */
typedef int (*rf_agent_read_fn)(void *ctx, void *buf, uint32_t len, uint64_t off);

struct rf_agent_vol_conf {
	const char *name;        /* 1..64 of [A-Za-z0-9._-], as the hub knows it */
	uint64_t size;           /* bytes, a multiple of 512 */
	uint32_t vol_id;         /* carried in ring records; unique within the agent */
	const char *bitmap_path; /* persistent dirty bitmap; created when missing */
	rf_agent_read_fn read;
	void *read_ctx;
};

/* What a write did to the volume (the ring record type it becomes). */
enum rf_agent_wtype {
	RF_AGENT_WRITE = 1, /* data: @buf holds @len bytes */
	RF_AGENT_ZERO = 3,  /* zeroes over the range */
	RF_AGENT_TRIM = 4,  /* discard over the range */
};

struct rf_agent_vol_status {
	char name[RF_CTL_MAX_NAME + 1];
	uint32_t vol_id;
	uint64_t size;
	uint8_t state;          /* enum rf_vol_state, as the hub last reported it */
	uint64_t synced_bytes;  /* from the hub's last VOLUME_STATE */
	uint64_t dirty_bytes;   /* bytes of chunks whose writes the hub has not made durable */
	uint64_t queued_bytes;  /* write data waiting to be posted */
	uint32_t queued;        /* writes waiting to be posted */
	bool connected;         /* the control channel is up */
	bool attached;          /* the hub accepted the volume and the ring is attached */
	bool bitmap_valid;      /* the bitmap was valid when the volume was added */
	uint64_t resend_bytes;  /* bytes of chunks waiting to be read back and resent */
	uint64_t resent_bytes;  /* bytes read back and resent by the agent so far */
	uint8_t ack;            /* enum rf_agent_ack: the level set for the volume */
	bool ack_fallback;      /* a sync level fell back to async (docs/DURABILITY.md) */
	uint64_t ack_fallbacks; /* times it fell back */
	uint64_t ack_waits;     /* writes that waited for their level and got it */
};

struct rf_agent_status {
	bool connected;       /* control channel up (HELLO answered) */
	bool attached;        /* data connection up: records are being posted */
	uint64_t next_seq;    /* sequence of the next record (0 before the first attach) */
	uint64_t durable_seq; /* every record before it is durable at the hub */
	uint64_t queued_bytes;
	uint32_t queued;
	unsigned nvols;
	uint64_t reconnects;      /* successful attaches after the first */
	uint64_t records;         /* records posted (all sessions) */
	uint64_t record_bytes;    /* payload bytes posted */
	uint64_t sync_reads;      /* SYNC_READs answered with SYNC_POSTED */
	uint64_t resent_bytes;    /* bytes posted by the agent's own resend */
	uint64_t overflow_writes; /* writes not queued (queue full or detached) */
	uint32_t congestions;     /* times a full queue switched writes to bitmap tracking */
	bool congested;           /* overflowed writes of the last congestion not all resent */
};

/*
 * Create an agent that will talk to the hub's control address @hub
 * ("HOST:PORT") as @agent_id (a valid name, see rf_ctl_name_ok). @opts may
 * be NULL. Nothing connects before rf_agent_start().
 * Returns 0, -EINVAL (bad address or id), -ENOMEM, or -errno.
 */
int rf_agent_new(struct rf_agent **out, const char *hub, const char *agent_id,
                 const struct rf_agent_opts *opts);

/* @s is "HOST:PORT" with a port 1..65535, the form rf_agent_new() takes for
 * @hub (which also wants it shorter than 256 bytes). NULL is not. */
bool rf_agent_hub_addr_ok(const char *s);

/*
 * Authenticate to the hub with the key for this agent's id from the key file
 * @path (docs/PROTOCOL.md, "Authentication"; mode 0600, lines
 * "IDENTITY HEXKEY [ROLE]"). Call before rf_agent_start(). From then on the
 * agent talks only to a hub that proves it holds the same key. Returns 0,
 * -ENOENT (no key for the id), -EACCES (the file's mode), -EINVAL, -errno;
 * the reason is logged.
 */
int rf_agent_set_psk_file(struct rf_agent *a, const char *path);

/*
 * Add a volume: open (or create, or recreate when it does not match) its
 * dirty bitmap. Chunks the bitmap marks dirty are resent once attached.
 * May be called before or after rf_agent_start(); the volume is reported to
 * the hub on the next (re)connect, or at once when already connected.
 * Returns 0 and sets *@out (owned by the agent), -EINVAL (bad name, size,
 * missing callback), -EEXIST (name or vol_id already added), -ENOSPC (too
 * many volumes), -ENOMEM, or -errno from the bitmap file.
 */
int rf_agent_add_volume(struct rf_agent *a, const struct rf_agent_vol_conf *conf,
                        struct rf_agent_vol **out);

/* The volume named @name, or NULL. */
struct rf_agent_vol *rf_agent_find_volume(struct rf_agent *a, const char *name);

/* Start the agent's thread. Returns 0, -EALREADY, or -errno. */
int rf_agent_start(struct rf_agent *a);

/*
 * Before a write/zero/trim of [off, off + len) is applied locally: wait for
 * overlapping writes in flight, then mark the chunks dirty; a bit that
 * flips 0->1 is persisted (msync) before this returns. Every successful call
 * must be followed by rf_agent_write_end() with the same range.
 * A zero @len is a no-op. Returns 0, -EINVAL (range outside the volume) or
 * -ENOMEM. A failure to persist the bitmap is logged, never returned: the
 * bitmap is then reported invalid and the hub does a full sync.
 */
int rf_agent_write_begin(struct rf_agent_vol *v, uint64_t off, uint32_t len);

/*
 * After the local write: when @ok (the local write succeeded), copy @buf
 * (RF_AGENT_WRITE only) into the queue for the ring, or, when the queue is
 * over its limit or the volume is not attached, leave the chunks for a
 * resend. A failed local write also leaves them for a resend (it may have
 * changed part of the range). Then release the range lock. Never waits for
 * the hub and never fails. Returns the write's ticket for
 * rf_agent_write_ack().
 */
struct rf_agent_ticket rf_agent_write_end(struct rf_agent_vol *v, uint64_t off, uint32_t len,
                                          const void *buf, enum rf_agent_wtype type, bool ok);

/*
 * Acknowledgement levels (docs/DURABILITY.md): what a guest write waits for
 * after rf_agent_write_end(), in rf_agent_write_ack().
 */
enum rf_agent_ack {
	RF_AGENT_ACK_ASYNC = 0,   /* nothing: the hub is never waited for */
	RF_AGENT_ACK_LANDED = 1,  /* the write's record is in the hub's ring memory */
	RF_AGENT_ACK_DURABLE = 2, /* the hub made the write's record durable (RPO 0) */
};

/* What rf_agent_write_end() did with a write, for rf_agent_write_ack(). */
struct rf_agent_ticket {
	uint64_t id;    /* queue ticket of its (last) record; 0 when not queued */
	uint64_t epoch; /* the agent's link epoch when it was queued */
	bool must_ack;  /* a write or zero that changed the disk: it must be replicated */
};

/*
 * Set @v's level, the time a write may wait for it before the volume falls
 * back to async (@timeout_ms > 0), and how long the writer spins on the
 * durable position before it sleeps (@poll_us >= 0). Returns 0 or -EINVAL.
 */
int rf_agent_vol_set_ack(struct rf_agent_vol *v, enum rf_agent_ack level, int timeout_ms,
                         int poll_us);

/*
 * After rf_agent_write_end(), before the guest's write completes: wait for
 * @v's level. Returns 0 at once for async (or in fallback) and for a write
 * with nothing to replicate; 0 when the write's record is durable; or,
 * when it cannot be (not queued: the hub is unreachable or the queue full;
 * the link to the hub broke before it was durable; no answer within the
 * timeout), puts the volume in fallback (logged, counted; it returns to its
 * level once caught up) and returns -EAGAIN, -ECONNRESET or -ETIMEDOUT.
 * The write is then replicated later from the dirty bitmap. Never call it
 * between rf_agent_write_begin() and rf_agent_write_end().
 */
int rf_agent_write_ack(struct rf_agent_vol *v, const struct rf_agent_ticket *t);

/* Snapshot of one volume's / the agent's state. Return 0. */
int rf_agent_vol_status(struct rf_agent_vol *v, struct rf_agent_vol_status *st);
int rf_agent_status(struct rf_agent *a, struct rf_agent_status *st);

/*
 * Block until the hub's durable sequence reaches @seq, i.e. until
 * rf_agent_status().durable_seq >= @seq (every record before @seq is
 * durable at the hub), instead of polling rf_agent_status(). The agent's
 * thread wakes the waiters each time durable_seq moves (a POSITION from the
 * hub, an attach) and when it ends. @timeout_ms < 0 waits without a limit,
 * 0 only checks; the deadline is on CLOCK_MONOTONIC.
 *
 * Returns 0 (reached; also when it already was, even on a stopped agent),
 * -ETIMEDOUT, or -ESHUTDOWN when the agent's thread is not running and
 * @seq is not reached: not started, or stopped (returned once stop's drain
 * is over, so records that drain made durable still return 0).
 *
 * Sequences are those of rf_agent_status() (next_seq, durable_seq) and
 * belong to one attachment to the hub's ring: after a reconnect the agent
 * resends what was not durable as new records, and a new ring starts its
 * own numbering, so a caller mapping its writes to sequences must also
 * watch rf_agent_status().reconnects. Any thread may call it, with any
 * number of waiters, but not the read callback (it runs on the agent's
 * thread), not between rf_agent_write_begin() and rf_agent_write_end()
 * (the agent's thread may be waiting for that range lock), and not
 * concurrently with rf_agent_destroy().
 */
int rf_agent_wait_durable(struct rf_agent *a, uint64_t seq, int timeout_ms);

/*
 * Stop the thread: post what is queued and wait for the hub to make it
 * durable, for at most opts.stop_timeout_ms, then disconnect. Whatever was
 * not durable stays dirty in the bitmaps, which are persisted. Writes may
 * continue afterwards (they are tracked in the bitmap only). Idempotent.
 */
void rf_agent_stop(struct rf_agent *a);

/* Stop if needed, close the bitmaps, free everything; NULLs *@a. NULL-safe. */
void rf_agent_destroy(struct rf_agent **a);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_AGENT_H */

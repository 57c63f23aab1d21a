/* SPDX-License-Identifier: MIT */
/*
 * repfabric transports: move ring records from an agent (the producer) into
 * the data area of a ring owned by the hub (the consumer), and carry the
 * hub's published positions back.
 *
 * The transport knows nothing of the record format: the producer hands it
 * byte segments, each with its offset in the ring's data area, and the last
 * sequence number they complete; the hub learns, through a "data" event,
 * that every byte of those segments has landed in its ring memory. Providers
 * are chosen by URL scheme:
 *
 *   rdma://IP:PORT   librdmacm + libibverbs RC QP; segments are written with
 *                    one-sided RDMA WRITE into the hub's registered data
 *                    area, the last one WITH IMM (the doorbell).
 *   tcp://HOST:PORT  the same semantics over a TCP stream: the hub places
 *                    each segment at the offset the sender chose.
 *   shm:///PATH      same host: the hub listens on the Unix socket PATH and
 *                    names the ring file; the producer maps it and copies
 *                    segments in directly, then rings a doorbell over the
 *                    socket (the hub persists before it publishes).
 *
 * Threading: a connection or a listener is driven by one thread at a time
 * (the owner's event loop); there is no internal thread. Every function
 * returns 0 (or a count) or a negative errno.
 */
#ifndef REPFABRIC_FABRIC_H
#define REPFABRIC_FABRIC_H

#include <stdbool.h>
#include <stdint.h>

#include "repfabric/admit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most segments one post may carry (a PAD's header and trailer + a record). */
#define RF_FAB_MAX_SEGS 4
/* Largest single segment: a ring record of 16 MiB payload plus its framing. */
#define RF_FAB_MAX_SEG_LEN ((16u << 20) + 4096u)

/* One piece of a post: @len bytes from @buf go to data-area offset @off. */
struct rf_fab_seg {
	uint64_t off;
	const void *buf;
	uint32_t len;
};

/*
 * Positions the hub publishes. Positions are monotonically increasing byte
 * positions (offset = pos % data_size); seq is the sequence expected there.
 *   durable: every record before it is persistent at the hub (the agent may
 *            forget it: clear its dirty bits).
 *   head:    every record before it has been consumed (applied); its space
 *            may be reused. head <= durable.
 */
struct rf_fab_position {
	uint64_t durable_pos;
	uint64_t durable_seq;
	uint64_t head_pos;
	uint64_t head_seq;
};

/* What the hub tells a producer when it attaches. */
struct rf_fab_ring_info {
	uint64_t ring_id;           /* changes when the ring is re-created */
	uint64_t data_size;         /* bytes in the data area, a multiple of 256 */
	struct rf_fab_position pos; /* resume producing at pos.durable_* */
};

/* ---------------------------------------------------------------- agent */

struct rf_fab_conn;

enum rf_fab_event_type {
	RF_FAB_EV_SENT = 1,     /* a post left: its buffers may be reused (cookie) */
	RF_FAB_EV_POSITION = 2, /* the hub published a position (pos) */
	RF_FAB_EV_CLOSED = 3,   /* the connection is dead (err: -errno); close it */
	RF_FAB_EV_LANDED = 4,   /* every record up to seq is in the hub's ring memory */
};

struct rf_fab_event {
	enum rf_fab_event_type type;
	int err;
	uint64_t cookie;
	uint64_t seq; /* LANDED */
	struct rf_fab_position pos;
};

/*
 * Connect to the hub's data address @url and attach to the ring the hub
 * associates with @token (handed out on the control channel). Blocks at most
 * @timeout_ms. On success fills @info and returns 0. Errors: -EINVAL (bad
 * URL), -EPROTONOSUPPORT (unknown scheme), -ECONNREFUSED, -ETIMEDOUT,
 * -ENODEV (rdma: no RDMA device for that address), -ENOMEM, or the errno
 * the hub's attach callback refused the token with (-ENOENT, -EBUSY, ...;
 * the reason is logged).
 */
int rf_fab_connect(const char *url, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                   struct rf_fab_ring_info *info);

/*
 * Post @nseg segments (1..RF_FAB_MAX_SEGS) that complete every record up to
 * sequence @last_seq. The buffers must stay untouched until an
 * RF_FAB_EV_SENT event with @cookie. Segments must lie inside the data area.
 * Returns 0, -EAGAIN when too many posts are in flight (poll first),
 * -EINVAL for a bad segment, -ENOTCONN after the connection died.
 */
int rf_fab_post(struct rf_fab_conn *c, const struct rf_fab_seg *segs, unsigned nseg,
                uint64_t last_seq, uint64_t cookie);

/*
 * Reap up to @max events, waiting at most @timeout_ms (0: do not wait,
 * -1: forever) for the first. Returns the number of events (0 on timeout)
 * or -errno.
 */
int rf_fab_poll(struct rf_fab_conn *c, struct rf_fab_event *evs, int max, int timeout_ms);

/* A file descriptor that becomes readable when rf_fab_poll has work. */
int rf_fab_conn_fd(const struct rf_fab_conn *c);

/*
 * Ask for RF_FAB_EV_LANDED events (@on) or stop asking. rdma:// reports
 * LANDED whatever this says: the RC completion of a post's last WRITE says
 * its records are in the hub's memory, at no cost. tcp:// and shm:// ask
 * the hub to answer each following DOORBELL with a LANDED frame (one more
 * frame per post, so off by default). A LANDED event may cover several
 * posts.
 */
void rf_fab_conn_want_landed(struct rf_fab_conn *c, bool on);

/* Disconnect and free; NULLs *@c. Safe on NULL. */
void rf_fab_close(struct rf_fab_conn **c);

/* ------------------------------------------------------------------ hub */

struct rf_fab_listener;
struct rf_fab_peer;

/* The ring memory the hub exposes to one producer. */
struct rf_fab_ring_mem {
	void *data;         /* start of the data area in the hub's mapping */
	uint64_t data_size; /* its length */
	const char *path;   /* shm: the ring file the producer maps */
	uint64_t data_off;  /* shm: offset of the data area in that file */
	struct rf_fab_ring_info info;
};

struct rf_fab_hub_ops {
	/*
	 * A producer presents @token. Fill @mem and return 0 to attach it, or
	 * return -errno to refuse (-ENOENT: unknown token, -EBUSY: already
	 * attached...). @mem must stay valid until the peer is detached.
	 */
	int (*attach)(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem);
};

/*
 * Every attach() that returned 0 is followed by exactly one ATTACHED event
 * and, later, exactly one DETACHED event for that peer, even when the
 * connection fails right after the callback.
 */
enum rf_fab_hub_event_type {
	RF_FAB_HEV_ATTACHED = 1, /* a producer attached (token) */
	RF_FAB_HEV_DATA = 2,     /* every record up to seq has landed in the ring; doorbells
	                            that arrive before the owner polls are folded into one */
	RF_FAB_HEV_DETACHED = 3, /* the producer is gone (err: -errno or 0) */
};

struct rf_fab_hub_event {
	enum rf_fab_hub_event_type type;
	struct rf_fab_peer *peer; /* valid until the next rf_fab_listener_poll
	                             after its DETACHED event */
	uint64_t token;
	uint64_t seq;
	int err;
};

/*
 * Listen on @url for producers. @ops->attach is called from
 * rf_fab_listener_poll. Returns 0, -EINVAL, -EPROTONOSUPPORT, -EADDRINUSE,
 * -ENODEV (rdma: no RDMA device on that address) or another -errno.
 */
int rf_fab_listen(const char *url, const struct rf_fab_hub_ops *ops, void *ctx,
                  struct rf_fab_listener **out);

/* Accept, read and place data; reap up to @max events (see rf_fab_poll). */
int rf_fab_listener_poll(struct rf_fab_listener *l, struct rf_fab_hub_event *evs, int max,
                         int timeout_ms);

int rf_fab_listener_fd(const struct rf_fab_listener *l);

/* Publish @pos to the producer. Returns 0 or -ENOTCONN. */
int rf_fab_publish(struct rf_fab_peer *p, const struct rf_fab_position *pos);

/*
 * Fence the producer: from the return of this call on, nothing it sends
 * reaches the ring (rdma: the QP is moved to error and the memory region
 * deregistered; tcp/shm: the connection is closed). A DETACHED event follows.
 */
int rf_fab_peer_fence(struct rf_fab_peer *p);

/* Stop listening, disconnect every peer, free; NULLs *@l. Safe on NULL. */
void rf_fab_listener_close(struct rf_fab_listener **l);

/*
 * Hub-side counters of one listener (cumulative since rf_fab_listen, peers
 * that detached included) or of one peer (since its connection). Each
 * counts the same thing on every transport:
 *
 *   attaches     the attach callback accepted a producer (each is followed
 *                by one ATTACHED and one DETACHED event).
 *   detaches     DETACHED events queued (producer gone, fenced or failed).
 *   refused      the attach callback refused the token (also in errors).
 *   completions  doorbells received: one per rf_fab_post that reached the
 *                hub. rdma: successful receive completions of the WRITE
 *                WITH IMM; tcp/shm: DOORBELL frames accepted. Doorbells
 *                folded into one DATA event are each counted.
 *   credits      positions sent to producers (the flow-control credit that
 *                frees ring space). rdma: position SENDs posted (publishes
 *                coalesced while earlier SENDs are in flight count once,
 *                when sent); tcp/shm: POSITION frames written.
 *   credit_bytes ring bytes those positions released: the growth of head_pos
 *                over the previous one sent (the attach's head_pos first).
 *   errors       failures, each counted once: refused or failed attaches,
 *                malformed frames or requests, failed posts, sends, reads
 *                or accepts, rdma completions with a status other than
 *                success and rdma connection errors. A producer that
 *                disconnects (EOF or a reset, also seen as EPIPE when a
 *                position is sent; an rdma DISCONNECTED) or a fence is not
 *                an error.
 *
 * Read them from the thread that drives the listener; they are not atomic.
 */
struct rf_fab_stats {
	uint64_t attaches;
	uint64_t detaches;
	uint64_t refused;
	uint64_t completions;
	uint64_t credits;
	uint64_t credit_bytes;
	uint64_t errors;
};

/*
 * Admission limits of the listener (include/repfabric/admit.h): a producer
 * that has not attached within @handshake_ms of its connection (tcp/shm: no
 * HELLO with a valid token; rdma: the connection not established) is
 * closed, and at most @max_pending such producers are held (the oldest is
 * closed for a new one). Defaults: RF_ADMIT_HANDSHAKE_DEFAULT ms and
 * RF_ADMIT_PENDING_DEFAULT. Returns 0 or -EINVAL (a zero limit).
 */
int rf_fab_listener_set_limits(struct rf_fab_listener *l, int handshake_ms, unsigned max_pending);

/* Copy the listener's admission counters (accept failures by reason,
 * handshake timeouts, evictions) into @out. Returns 0. */
int rf_fab_listener_admit_stats(const struct rf_fab_listener *l, struct rf_admit_stats *out);

/* Unproven producers the listener holds now. */
unsigned rf_fab_listener_pending(const struct rf_fab_listener *l);

/* Copy the listener's totals into @out. Returns 0. */
int rf_fab_listener_stats(const struct rf_fab_listener *l, struct rf_fab_stats *out);

/* Copy one peer's counters (valid as long as the peer is, see above). */
int rf_fab_peer_stats(const struct rf_fab_peer *p, struct rf_fab_stats *out);

/* The listener's scheme: "rdma", "tcp" or "shm". */
const char *rf_fab_listener_scheme(const struct rf_fab_listener *l);

/* Split "scheme://rest" into its provider. Exposed for config validation. */
int rf_fab_url_check(const char *url);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_FABRIC_H */

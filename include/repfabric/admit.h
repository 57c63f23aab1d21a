/* SPDX-License-Identifier: MIT */
/*
 * Admission of connections from untrusted peers, shared by every listener
 * (the hub's control channel, the tcp:// and shm:// data listeners, and the
 * rdma:// listener's pending connection requests):
 *
 *  - rf_admit_accept(): one accept path. When accept4() fails for lack of
 *    descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener
 *    is taken out of its poll set through the watch() callback and put back
 *    RF_ADMIT_RETRY_MS later by rf_admit_tick(), so a listener that stays
 *    readable never spins the loop. Failures are counted by reason and
 *    logged at most once per RF_ADMIT_LOG_MS, with the count since the last
 *    line.
 *  - Pending connections: accepted but not yet proven (no HELLO, no
 *    authentication, no first frame, no established rdma connection).
 *    Each has a deadline (handshake_ms after its accept) and there are at
 *    most max_pending of them: a new one beyond that makes the caller drop
 *    the oldest. An attacker can hold at most max_pending descriptors per
 *    listener, each for at most handshake_ms. Two FIFOs: silent (nothing
 *    valid received yet) and engaged (the handshake has begun, e.g. an
 *    AUTH_START was answered); the oldest silent one is dropped before any
 *    engaged one, so a flood of idle connections does not push out a
 *    client that is halfway through authenticating.
 *
 * The owner embeds struct rf_pending in its connection and gets back to it
 * with container_of. Nothing here closes a connection: the functions say
 * which one to close and count why. Not thread-safe: one loop owns it.
 */
#ifndef REPFABRIC_ADMIT_H
#define REPFABRIC_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

#define RF_ADMIT_RETRY_MS          100   /* accept again this long after running out */
#define RF_ADMIT_LOG_MS            10000 /* at most one log line per reason this often */
#define RF_ADMIT_HANDSHAKE_DEFAULT 10000 /* ms: prove yourself within this */
#define RF_ADMIT_PENDING_DEFAULT   64    /* unproven connections per listener */

/* Why an accept failed. */
enum rf_accept_reason {
	RF_ACCEPT_FDS,    /* EMFILE, ENFILE: out of descriptors */
	RF_ACCEPT_MEMORY, /* ENOBUFS, ENOMEM */
	RF_ACCEPT_OTHER,  /* anything else (EPERM from a firewall, EPROTO...) */
	RF_ACCEPT_NREASONS,
};

struct rf_admit_stats {
	uint64_t accept_failed[RF_ACCEPT_NREASONS];
	uint64_t handshake_timeouts; /* pending connections closed at their deadline */
	uint64_t pending_evicted;    /* the oldest pending one closed for a new one */
	uint64_t refused_full;       /* closed at once: no slot and none pending to evict */
};

/* A connection that has not proven itself yet (embedded by the owner). */
struct rf_pending {
	struct rf_pending *prev, *next;
	int64_t since; /* CLOCK_MONOTONIC ms of its accept */
	bool queued;
	bool engaged; /* in the engaged FIFO (rf_admit_engaged) */
};

/* Oldest first. */
struct rf_pending_fifo {
	struct rf_pending *head, *tail;
};

struct rf_admit {
	const char *name; /* "control", "tcp data"... for log lines */
	int lfd;          /* the listening socket, or -1 (rdma: no accept) */
	/* Start (@on) or stop watching lfd for readability. 0 or -errno. */
	int (*watch)(void *ctx, bool on);
	void *ctx;

	int handshake_ms;     /* > 0 */
	unsigned max_pending; /* > 0 */

	struct rf_pending_fifo silent, engaged;
	unsigned npending; /* in both */

	bool paused;
	int64_t resume_at;
	int64_t log_at[RF_ACCEPT_NREASONS]; /* next time that reason may be logged */
	uint64_t unlogged[RF_ACCEPT_NREASONS];
	int64_t summary_at;               /* next summary of closed connections */
	struct rf_admit_stats summarized; /* the counters at the last summary */

	struct rf_admit_stats stats;
};

/* Set up @a with the default limits. @lfd may be -1 (no accept path). */
void rf_admit_init(struct rf_admit *a, const char *name, int lfd, int (*watch)(void *, bool),
                   void *ctx);

/* Change the limits (both > 0; otherwise -EINVAL and nothing changes). */
int rf_admit_set_limits(struct rf_admit *a, int handshake_ms, unsigned max_pending);

/*
 * Accept one connection (non-blocking, close-on-exec). Returns its fd,
 * -EAGAIN when there is none now or accepting is paused, or another -errno
 * after counting (and, rate-limited, logging) it. On running out of
 * descriptors or memory the listener is unwatched until rf_admit_tick().
 */
int rf_admit_accept(struct rf_admit *a, int64_t now);

/*
 * Call often (every loop turn or tick): resumes a paused accept when due,
 * and logs (at most once per RF_ADMIT_LOG_MS) how many unproven
 * connections were closed since the last such line.
 */
void rf_admit_tick(struct rf_admit *a, int64_t now);

/*
 * Queue @p (not queued) as pending since @now. When max_pending are
 * already queued, returns the oldest one, unqueued and counted as evicted:
 * the caller closes it. Otherwise NULL.
 */
struct rf_pending *rf_admit_pending_add(struct rf_admit *a, struct rf_pending *p, int64_t now);

/* @p (queued) has begun its handshake: it moves to the engaged FIFO,
 * keeping its deadline. No-op when not queued or already engaged. */
void rf_admit_engaged(struct rf_admit *a, struct rf_pending *p);

/* The oldest silent pending connection, else the oldest engaged one,
 * unqueued and counted as evicted (the caller closes it to make room), or
 * NULL when none is pending. */
struct rf_pending *rf_admit_evict_oldest(struct rf_admit *a);

/* @p proved itself or closed: take it off the queue (no-op if not queued). */
void rf_admit_pending_del(struct rf_admit *a, struct rf_pending *p);

/*
 * The oldest pending connection whose deadline has passed at @now,
 * unqueued and counted as a timeout (the caller closes it), or NULL.
 * Call in a loop until NULL.
 */
struct rf_pending *rf_admit_expired(struct rf_admit *a, int64_t now);

/* Count a connection closed at once because every slot is held. */
void rf_admit_refused_full(struct rf_admit *a);

/* "descriptors", "memory", "other": for metric labels and JSON keys. */
const char *rf_accept_reason_name(enum rf_accept_reason r);

#endif /* REPFABRIC_ADMIT_H */

/* SPDX-License-Identifier: MIT */
/*
 * State layer: the hub's record of an agent (by id). An agent is known from
 * its first HELLO, from a state file that names it as a volume's owner, or
 * from a ring file left in ring_dir. Its ring stays mapped for the life of
 * the hub. Sessions (session.c) set ->conn, ->token and ->peer; the drain
 * advances ->durable_*; this module only finds, creates and maps.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: state. Uses base.h and the ring (pmem/).
 */
#ifndef REPHUB_AGENT_H
#define REPHUB_AGENT_H

#include "base.h"

struct hub_agent {
	struct hub *hub;
	struct hub_agent *next;
	char id[RF_CTL_MAX_NAME + 1];
	char ring_path[PATH_MAX];
	struct rf_ring *ring;      /* open from the first HELLO (or start-up) on */
	bool ring_broken;          /* cannot be opened or persisted: see the log */
	bool ring_pmem;            /* rule pmem: durable once flushed in the ring (DURABILITY.md) */
	const char *ring_rule_why; /* why this rule, for the status and the log */

	struct ctl_conn *conn; /* the live control connection, or NULL */
	uint64_t session;      /* id of the control session (HELLO_OK) */
	uint64_t token;        /* data attach token; 0 when none is valid */
	struct rf_fab_peer *peer;
	bool attach_pending; /* attach callback said yes; ATTACHED not seen yet */
	int64_t attach_pending_at;
	uint64_t landed_seq; /* DATA events: every record up to it has landed */
	bool landed_valid;

	uint64_t durable_pos, durable_seq; /* applied, synced and head persisted */
	uint64_t published_head;           /* durable_pos in the newest position sent */
	bool head_due;                     /* applied past published_head, not sent yet */
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

struct hub_agent *agent_find(struct hub *h, const char *id);
/* Find or create (NULL: not a valid name, a path too long, or no memory). */
struct hub_agent *agent_get(struct hub *h, const char *id);
/* Its control connection is up (a closed one ends the session at ctl_reap). */
bool agent_live(const struct hub_agent *a);
void agent_set_error(struct hub_agent *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Map @a's ring file, or with @create make a new one (ring_size bytes);
 * then the durable position is the ring's head. 0 (also when it is mapped
 * already), -ENOENT without @create when there is no file (or a device DAX
 * that holds no ring yet), or -errno. Use
 * agent_ring_failed() on an error: nothing is marked or logged here.
 * (session.c's agent_open_ring() resets the journals before a create.)
 */
int agent_ring_open(struct hub_agent *a, bool create);
/* The ring cannot be opened or created (@rc): mark it broken, log it. Returns @rc. */
int agent_ring_failed(struct hub_agent *a, int rc);

/* Every record before it is durable: the ring's durable mark under rule
 * pmem (never behind the applied position), else the applied position. */
uint64_t agent_durable_seq(const struct hub_agent *a);

/* Tell the attached producer the durable position (the ring's durable mark
 * under rule pmem, else the applied one) and the head (applied: the space it
 * may reuse). No-op without a producer. */
void agent_publish(struct hub_agent *a);

/* The durability rule of a ring under the [hub] key @d when libpmem says
 * @is_pmem: *@rule_pmem, and why (a static string, as in the status). */
const char *hub_ring_rule(enum hub_durability d, bool is_pmem, bool *rule_pmem);

/* After an apply: under rule pmem the durable position did not move, only
 * the head, so a position is sent only when the agent may need the space
 * (a quarter of the ring applied since the last one) and otherwise rides
 * on the next durable position or the timer (agent_publish_head_tick): one
 * message and one wake-up of the agent less per write at QD1. Under rule
 * apply the apply moved the durable position: sent at once. */
void agent_publish_applied(struct hub_agent *a);
/* The timer: send a head that is due. */
void agent_publish_head_tick(struct hub_agent *a);

/*
 * Rule pmem: make what landed durable in the ring (validated, flushed, the
 * mark persisted) and publish it. Returns the records made durable (0:
 * nothing new, or rule apply) or -errno (the drain's rule then applies).
 */
int agent_make_durable(struct hub_agent *a);

#endif /* REPHUB_AGENT_H */

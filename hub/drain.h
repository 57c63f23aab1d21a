/* SPDX-License-Identifier: MIT */
/*
 * Engine: drain an agent's ring. A batch peeks and checks records in
 * sequence order, applies each (apply.h: the journal or the image),
 * advances the in-memory head; then every touched volume is committed
 * (fdatasync'ed), the head is persisted, and the durable position moves.
 * The drain tells no one: it returns what it did (struct drain_result),
 * and its caller (session.c's drain_agent) fences, tells the sync engine
 * and publishes.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: engines. Uses agent.h, volstate.h, apply.h.
 */
#ifndef REPHUB_DRAIN_H
#define REPHUB_DRAIN_H

#include "agent.h"
#include "volstate.h"

enum drain_mode {
	DRAIN_LIVE,   /* an attached producer: an invalid record fences it */
	DRAIN_OFFLINE /* no producer: stop at an invalid record */
};

/* What one drain_batch() did, for its caller to act on. */
struct drain_result {
	unsigned applied; /* records applied */
	bool durable;     /* committed: durable_pos/seq moved past them (publish) */
	bool fence;       /* an invalid record from the attached producer: fence it */
};

/*
 * Apply one batch of @a's ring (at most HUB_DRAIN_BATCH_RECS records and
 * HUB_DRAIN_BATCH_BYTES). Returns the records applied (0: nothing to do,
 * waiting for the retry timer, or stopped at an invalid record) or -errno
 * when the batch could not be made durable (the ring head is rewound; it
 * is retried in 1 s). Sets a->need_drain and h->more_work when more is due.
 */
int drain_batch(struct hub_agent *a, enum drain_mode mode, struct drain_result *res);

/*
 * Drop the record at the head of @a's ring if it can never be applied
 * (left by an earlier producer session). 1 when one was dropped, 0, or -errno.
 */
int drain_discard_invalid(struct hub_agent *a);

#endif /* REPHUB_DRAIN_H */

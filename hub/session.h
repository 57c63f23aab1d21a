/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: agents' sessions. A control session runs from HELLO to
 * the close of that connection (or its replacement by a newer one); during
 * it the agent may attach its data path with the session's token, as
 * often as it needs to. This module also runs a drain for the layers
 * above and beside it: drain_agent() calls the drain engine and acts on
 * what it returns (fence, tell the sync engine, publish).
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: protocol. Uses the engines and the state.
 */
#ifndef REPHUB_SESSION_H
#define REPHUB_SESSION_H

#include "agent.h"
#include "drain.h"
#include "volstate.h"

/*
 * One drain batch of @a's ring (drain_batch), then: fence the producer if
 * it wrote an invalid record, and once the batch is durable tell the sync
 * engine and publish the position. Returns what drain_batch returns.
 */
int drain_agent(struct hub_agent *a, enum drain_mode mode);

/*
 * Map @a's ring; when it has none yet, apply and reset its volumes'
 * journals (pit_ring_new: the new ring's sequences start over), then
 * create it. 0 or -errno (marked broken and logged).
 */
int agent_open_ring(struct hub_agent *a);

/* At start-up: every ring in ring_dir is mapped and drained. */
void session_scan_rings(struct hub *h);
/* Cut @a's data path (its records that landed are drained without it). */
void session_fence(struct hub_agent *a, const char *why);
/* ctl_reap: @c is gone; the session it carried ends. */
void session_conn_closed(struct ctl_conn *c);
/* The fabric's attach callback (rf_fab_hub_ops.attach). */
int session_fab_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem);
/* Reap the fabric listener's events: ATTACHED, DATA, DETACHED. */
void session_fab_poll(struct hub *h);
void session_tick(struct hub *h, int64_t now);

#endif /* REPHUB_SESSION_H */

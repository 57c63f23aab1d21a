/* SPDX-License-Identifier: MIT */
/*
 * Engine: a volume's initial full sync (SYNC_READ out, SYNC_POSTED back,
 * chunks synced once the drain made their records durable). The sync
 * learns of durable progress from its caller (sync_on_durable after a
 * drain, session.c), never from the drain itself.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: engines. Uses volstate.h, agent.h, and
 * ctl_send() to send SYNC_READ.
 */
#ifndef REPHUB_SYNC_H
#define REPHUB_SYNC_H

#include "agent.h"
#include "volstate.h"

/* Start (over) a full sync of @v from its owner. 0 or -ENOMEM. */
int sync_start(struct volume *v);
void sync_stop(struct volume *v);
/* @a's data path attached or detached: chunks in flight or posted go back to PENDING. */
void sync_requeue_unsynced(struct hub_agent *a);
/* Send the SYNC_READs the windows and the pacing allow. */
void sync_pump(struct hub *h, int64_t now);
/* An ERROR answering one of our SYNC_READs? Then it was handled: true. */
bool sync_on_error(struct ctl_conn *c, uint64_t req_id, const struct rf_ctl_error *e);
/* @a's durable sequence moved: chunks posted below it are synced. */
void sync_on_durable(struct hub_agent *a);
/* Requests unanswered for HUB_SYNC_TIMEOUT_MS are asked again. */
void sync_tick(struct hub *h, int64_t now);

#endif /* REPHUB_SYNC_H */

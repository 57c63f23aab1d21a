/* SPDX-License-Identifier: MIT */
/*
 * Engine: incremental resync as the hub sees it — a volume is resyncing
 * from its owner's VOLUME_REPORT or a PROGRESS with bytes to resend, and
 * protected again once a PROGRESS shows none (resync.c has the rules).
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: engines. Uses volstate.h and agent.h.
 */
#ifndef REPHUB_RESYNC_H
#define REPHUB_RESYNC_H

#include "agent.h"
#include "volstate.h"

void resync_begin(struct volume *v, const char *cause, bool notify);
/* A PROGRESS from @a: counters, and resyncing <-> protected. */
void resync_on_progress(struct hub_agent *a, const struct rf_ctl_progress *m);
/* At start-up: log a torn or corrupt record that ends @a's ring. */
void resync_ring_tail(struct hub_agent *a);

#endif /* REPHUB_RESYNC_H */

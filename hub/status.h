/* SPDX-License-Identifier: MIT */
/*
 * Loop layer: the hub's state as one JSON object (STATUS, and the
 * numbers metrics.c exports). The sync and resync rate windows it keeps
 * between requests live in struct hub (rate_wins).
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: loop (it reports on every layer, the
 * listeners' admission counters too).
 */
#ifndef REPHUB_STATUS_H
#define REPHUB_STATUS_H

#include "agent.h"
#include "volstate.h"

/* The status JSON (malloc'ed, *@len bytes), or NULL without memory. */
char *status_json(struct hub *h, size_t *len);
/* Records (and bytes) that landed but are not durable yet. */
void status_agent_lag(const struct hub_agent *a, uint64_t *recs, uint64_t *bytes);
bool status_volume_caught_up(const struct volume *v);
/* Free the rate windows (hub_fini). */
void status_fini(struct hub *h);

#endif /* REPHUB_STATUS_H */

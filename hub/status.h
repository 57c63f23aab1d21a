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
/* The distance between two of an agent's positions (docs/DURABILITY.md). */
struct agent_lag {
	uint64_t records, bytes;
	bool age_known;  /* false: a record without a timestamp, or no ring */
	uint64_t age_ms; /* the hub's clock minus the oldest record's write time */
};

/* An agent's lags: total, landed -> applied (the ring in use); durable,
 * landed -> durable; apply, durable -> applied. Under rule apply durable ==
 * applied, so durable == total and apply is 0. */
struct agent_lags {
	struct agent_lag total, durable, apply;
};

/* The same numbers the status JSON shows (walks the ring when it holds
 * records: rf_ring_scan). */
void status_agent_lags(const struct hub_agent *a, struct agent_lags *out);
bool status_volume_caught_up(const struct volume *v);
/* Free the rate windows (hub_fini). */
void status_fini(struct hub *h);

#endif /* REPHUB_STATUS_H */

/* SPDX-License-Identifier: MIT */
/*
 * Engine: points in time. A point is a ring sequence P of the volume's
 * owner: the volume as it was after every record with seq <= P (journal.h).
 * This module keeps journals within their retention (pit_tick), resolves
 * a requested point (--at latest|TIME|SEQ), and applies a journal whole
 * when its sequence space ends (a new owner, a new ring).
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: engines. Uses volstate.h, agent.h, journal.h.
 */
#ifndef REPHUB_POINTS_H
#define REPHUB_POINTS_H

#include "agent.h"
#include "volstate.h"

struct journal;

/* A new owner: its sequences are another space. Stop a test, apply everything, reset. */
int pit_owner_change(struct volume *v);
/*
 * @a is about to get a new ring, whose sequences start over: apply and
 * reset the journals of its volumes first. Returns 0, or -errno when one
 * could not be (the ring must then not be created: its records would be
 * taken for ones already journaled).
 */
int pit_ring_new(struct hub_agent *a);
/* Retention: apply what left the window (time, then size), a bounded amount per volume. */
void pit_tick(struct hub *h, int64_t now);

/*
 * Resolve @m's --at into a point of @v: its sequence and time (the entry's,
 * or the image's). 0, or -errno with @why: -EINVAL (no journal, not
 * latest), -ERANGE (outside the retained points).
 */
int pit_resolve_point(struct volume *v, const struct rf_ctl_admin *m, uint64_t *seq,
                      int64_t *time_ms, char *why, size_t whylen);
/* The time of point @seq: its entry's, or the image's. */
int64_t pit_point_time(const struct journal *j, uint64_t seq);
/* @ms as ISO 8601 UTC with milliseconds ("before the journal" for <= 0). */
void pit_fmt_time(int64_t ms, char *buf, size_t len);

#endif /* REPHUB_POINTS_H */

/* SPDX-License-Identifier: MIT */
/*
 * The entry points of the tcp:// and shm:// providers' files that the two
 * ops tables (stream.c) name: the producer side (stream_conn.c) and the hub
 * side (stream_listener.c), each for either scheme (@shm). Not installed.
 */
#ifndef REPFABRIC_FABRIC_STREAM_INTERNAL_H
#define REPFABRIC_FABRIC_STREAM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "provider.h"

/* stream_conn.c */
int rf_sw_connect(bool shm, const char *addr, uint64_t token, int timeout_ms,
                  struct rf_fab_conn **out, struct rf_fab_ring_info *info);
int rf_sw_post(struct rf_fab_conn *bc, const struct rf_fab_seg *segs, unsigned nseg,
               uint64_t last_seq, uint64_t cookie);
int rf_sw_poll(struct rf_fab_conn *bc, struct rf_fab_event *evs, int max, int timeout_ms);
int rf_sw_conn_fd(const struct rf_fab_conn *bc);
void rf_sw_close(struct rf_fab_conn *bc);

/* stream_listener.c; @prov is the ops table the listener reports. */
int rf_sw_listen(bool shm, const struct rf_fab_provider *prov, const char *addr,
                 const struct rf_fab_hub_ops *ops, void *ctx, struct rf_fab_listener **out);
int rf_sw_listener_poll(struct rf_fab_listener *bl, struct rf_fab_hub_event *evs, int max,
                        int timeout_ms);
int rf_sw_listener_fd(const struct rf_fab_listener *bl);
int rf_sw_publish(struct rf_fab_peer *bp, const struct rf_fab_position *pos);
int rf_sw_fence(struct rf_fab_peer *bp);
void rf_sw_listener_close(struct rf_fab_listener *bl);

#endif /* REPFABRIC_FABRIC_STREAM_INTERNAL_H */

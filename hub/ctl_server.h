/* SPDX-License-Identifier: MIT */
/*
 * Loop layer: control connections (struct ctl_conn, in base.h): the
 * listener, framing, output buffers, and the dispatch to handlers.h.
 *
 * The send side (ctl_send, ctl_send_error, ctl_close_after_flush) is the
 * one service every layer above storage may call: it only queues bytes
 * and arms EPOLLOUT; a socket that fails is closed and its session ends in
 * ctl_reap(), at the end of the loop turn, never under the caller.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: loop.
 */
#ifndef REPHUB_CTL_SERVER_H
#define REPHUB_CTL_SERVER_H

#include "base.h"

int ctl_listen(struct hub *h);
void ctl_accept(struct hub *h);
void ctl_conn_event(struct ctl_conn *c, uint32_t events);
/* One complete frame (header @h, payload @p): look it up, check direction
 * and role, decode, call its handler, send its ERROR if refused. */
void ctl_dispatch(struct ctl_conn *c, const struct rf_ctl_hdr *h, const uint8_t *p);
/* Fill @r->why; returns -@code (for "return ctl_fail(r, EPERM, ...)"). */
int ctl_fail(struct ctl_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ctl_send(struct ctl_conn *c, uint16_t type, uint64_t req_id, const void *payload, uint32_t len);
void ctl_send_error(struct ctl_conn *c, uint64_t req_id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ctl_close(struct ctl_conn *c, const char *why);
void ctl_proven(struct ctl_conn *c);
void ctl_close_after_flush(struct ctl_conn *c);
void ctl_tick(struct hub *h, int64_t now);
void ctl_reap(struct hub *h);
void ctl_close_all(struct hub *h);

#endif /* REPHUB_CTL_SERVER_H */

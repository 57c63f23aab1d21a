/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: every control message handler, as ctl_server.c's
 * dispatch calls it. Each decodes its payload, checks it, acts through the
 * layers below and replies on @c. They live beside the module whose state
 * they change (named in each group); this header is their one list.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: protocol.
 */
#ifndef REPHUB_HANDLERS_H
#define REPHUB_HANDLERS_H

#include "base.h"

/* auth.c: AUTH_START, AUTH_PROOF (the PSK challenge-response, ctl_auth.h) */
void auth_start(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);
void auth_proof(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);

/* session.c: HELLO, PROGRESS */
void session_hello(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);
void session_progress(struct ctl_conn *c, const uint8_t *p, uint32_t len);

/* volume.c: VOLUME_REPORT */
void volume_report(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);

/* sync.c: SYNC_POSTED (an ERROR to a SYNC_READ: sync_on_error, sync.h) */
void sync_on_posted(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);

/* pit.c: POINTS, ADMIN (failover test start/stop, failover) */
void pit_points(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);
void pit_admin(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len);

/* testview.c: IO_OPEN, IO_READ, IO_WRITE, IO_FLUSH on a failover test's view */
void testview_io(struct ctl_conn *c, uint16_t type, uint64_t req_id, const uint8_t *p,
                 uint32_t len);

/* status.c: STATUS */
void status_request(struct ctl_conn *c, uint64_t req_id);

#endif /* REPHUB_HANDLERS_H */

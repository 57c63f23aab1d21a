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

/* auth.c: AUTH_START, AUTH_PROOF (the PSK challenge-response, ctl_auth.h):
 * the state they need (checked before decoding), then the step. */
ctl_handler_fn auth_start_check, auth_start, auth_proof_check, auth_proof;

/* session.c: HELLO, PROGRESS */
ctl_handler_fn session_hello_check, session_hello; /* HELLO */
ctl_handler_fn session_progress;                   /* PROGRESS */

/* volume.c: VOLUME_REPORT */
ctl_handler_fn volume_report;

/* sync.c: SYNC_POSTED (an ERROR to a SYNC_READ: sync_on_error, sync.h) */
ctl_handler_fn sync_on_posted;

/* pit.c: POINTS, ADMIN (failover test start/stop, failover) */
ctl_handler_fn pit_points, pit_admin;

/* testview.c: IO_OPEN, IO_READ, IO_WRITE, IO_FLUSH on a failover test's view */
ctl_handler_fn testview_io;

/* status.c: STATUS */
ctl_handler_fn status_request;

#endif /* REPHUB_HANDLERS_H */

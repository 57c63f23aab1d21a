/* SPDX-License-Identifier: MIT */
/*
 * Protocol layer: the control channel's PSK challenge-response (auth.c;
 * docs/PROTOCOL.md, "Authentication"). Its two message handlers are in
 * handlers.h; these are the checks ctl_server.c and reload.c call.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: protocol.
 */
#ifndef REPHUB_CTL_AUTH_H
#define REPHUB_CTL_AUTH_H

#include "base.h"

int auth_init(struct hub *h);
void auth_fini(struct hub *h);
/* May @c send a message of @type? If not, it was answered (and maybe closed). */
bool auth_allows(struct ctl_conn *c, uint16_t type, uint64_t req_id);
/* A complete header before AUTH_OK: small enough? If not, refused and closing. */
bool auth_frame_ok(struct ctl_conn *c);
/* @c did not prove itself in time: count it and close it. */
void auth_handshake_expired(struct ctl_conn *c);
/* After a reload: close connections whose proof no longer holds. */
void auth_recheck(struct hub *h, const struct rf_auth_keys *old);
/* With psk_file: warn about each volume no `agent =` binds. */
void auth_warn_unbound(const struct hub *h);

#endif /* REPHUB_CTL_AUTH_H */

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
/* An AUTH_* payload that does not decode: a failed authentication. */
int auth_malformed(struct ctl_conn *c, const char *why, struct ctl_reply *r);
/* May @c send a message of @type (table row @d, NULL when unknown)? 0, or
 * -EACCES with @r filled (closing before authentication). */
int auth_allows(struct ctl_conn *c, uint16_t type, const struct rf_ctl_msg_desc *d,
                struct ctl_reply *r);
/* The largest payload @c may send now (a cap before AUTH_OK). */
uint32_t auth_frame_max(const struct ctl_conn *c);
/* A header above auth_frame_max() arrived: refused, closing. */
void auth_frame_too_big(struct ctl_conn *c);
/* @c did not prove itself in time: count it and close it. */
void auth_handshake_expired(struct ctl_conn *c);
/* After a reload: close connections whose proof no longer holds. */
void auth_recheck(struct hub *h, const struct rf_auth_keys *old);
/* With psk_file: warn about each volume no `agent =` binds. */
void auth_warn_unbound(const struct hub *h);

#endif /* REPHUB_CTL_AUTH_H */

/* SPDX-License-Identifier: MIT */
/* repctl: connecting to the hub, authenticated when a key file is given. */
#ifndef REPCTL_CONN_H
#define REPCTL_CONN_H

#define DIAL_MS     5000             /* connect and authenticate, each */
#define DEFAULT_HUB "127.0.0.1:7470" /* without --hub and $REPCTL_HUB */

/*
 * Load the key file @psk_file and pick @identity's key (or the file's only
 * key when @identity is NULL). Prints the reason and returns -errno.
 */
int repctl_auth_setup(const char *psk_file, const char *identity);

/*
 * Connect to @hub within @timeout_ms and authenticate when set up. Returns
 * an fd, -errno when the hub cannot be reached (not printed), or
 * -EKEYREJECTED when authentication failed (the reason is printed).
 */
int repctl_dial(const char *hub, int timeout_ms);

/* Print why @hub_addr cannot be reached (@err from repctl_dial()); nothing
 * for -EKEYREJECTED, which repctl_dial() explained. */
void repctl_say_unreachable(const char *hub_addr, int err);

#endif /* REPCTL_CONN_H */

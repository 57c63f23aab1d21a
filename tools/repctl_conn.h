/* SPDX-License-Identifier: MIT */
/* repctl: connecting to the hub, authenticated when a key file is given. */
#ifndef REPCTL_CONN_H
#define REPCTL_CONN_H

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

#endif /* REPCTL_CONN_H */

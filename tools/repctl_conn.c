/* SPDX-License-Identifier: MIT */
/* repctl: connecting to the hub (see repctl_conn.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "repctl_conn.h"
#include "repfabric/auth.h"

static struct rf_auth_keys keys;
static const struct rf_auth_key *key;

int repctl_auth_setup(const char *psk_file, const char *identity)
{
	char why[4096 + 256];
	int rc;

	rc = rf_auth_keys_load(&keys, psk_file, why, sizeof(why));
	if (!rc)
		rc = rf_auth_key_pick(&keys, identity, &key, why, sizeof(why));
	if (rc)
		fprintf(stderr, "repctl: --psk-file: %s\n", why);
	return rc;
}

int repctl_dial(const char *hub, int timeout_ms)
{
	char why[RF_CTL_MAX_TEXT + 256];
	int fd = rf_ctl_dial(hub, timeout_ms), rc;

	if (fd < 0 || !key)
		return fd;
	rc = rf_auth_client(fd, key, timeout_ms, NULL, why, sizeof(why));
	if (rc) {
		close(fd);
		fprintf(stderr, "repctl: hub at %s: authentication as '%s' failed: %s\n", hub,
		        key->identity, why);
		return -EKEYREJECTED;
	}
	return fd;
}

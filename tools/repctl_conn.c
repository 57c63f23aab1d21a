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

/*
 * Say why the hub cannot be reached (@err from repctl_dial()), naming the address:
 * the first line stays "repctl: cannot reach hub at ADDR: REASON".
 */
void repctl_say_unreachable(const char *hub_addr, int err)
{
	if (err == -EKEYREJECTED)
		return; /* repctl_dial() said why */
	if (err == -EINVAL) {
		fprintf(stderr, "repctl: cannot reach hub at %s: not HOST:PORT\n", hub_addr);
		return;
	}
	if (err == -ETIMEDOUT)
		fprintf(stderr, "repctl: cannot reach hub at %s: no answer in %d s\n", hub_addr,
		        DIAL_MS / 1000);
	else if (err == -EHOSTUNREACH)
		fprintf(stderr, "repctl: cannot reach hub at %s: unknown host or no route to it\n",
		        hub_addr);
	else
		fprintf(stderr, "repctl: cannot reach hub at %s: %s\n", hub_addr, strerror(-err));
	if (err == -ECONNREFUSED || err == -ETIMEDOUT || err == -EHOSTUNREACH)
		fprintf(stderr,
		        "repctl: is rephubd running there? (the address: --hub HOST:PORT, "
		        "else $REPCTL_HUB, else %s)\n",
		        DEFAULT_HUB);
}

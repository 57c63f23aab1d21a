/* SPDX-License-Identifier: MIT */
/*
 * Pre-shared keys and the HMAC-SHA256 challenge-response of the control
 * channel (docs/PROTOCOL.md, "Authentication"). The key file format is the
 * same on both sides: one "IDENTITY HEXKEY [ROLE]" per line.
 *
 * Functions return 0 or -errno; on failure a reason for people is written
 * to @why (capacity @whylen). Keys are wiped when freed.
 */
#ifndef REPFABRIC_AUTH_H
#define REPFABRIC_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/ctl.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_AUTH_KEY_MIN 16 /* bytes */
#define RF_AUTH_KEY_MAX 64

struct rf_auth_key {
	char identity[RF_CTL_MAX_NAME + 1];
	enum rf_auth_role role;
	size_t len;
	uint8_t key[RF_AUTH_KEY_MAX];
	int line; /* in its file */
};

struct rf_auth_keys {
	struct rf_auth_key *keys;
	size_t n;
};

/*
 * Read the key file @path into @ks. Refuses (-EACCES) a file that group or
 * others may read or write, -EINVAL a malformed line or a file without keys
 * ("PATH:LINE: reason"), other -errno when it cannot be read.
 */
int rf_auth_keys_load(struct rf_auth_keys *ks, const char *path, char *why, size_t whylen);
/* The same from text (@name names it in messages). */
int rf_auth_keys_parse(struct rf_auth_keys *ks, const char *text, size_t len, const char *name,
                       char *why, size_t whylen);
void rf_auth_keys_free(struct rf_auth_keys *ks);
const struct rf_auth_key *rf_auth_keys_find(const struct rf_auth_keys *ks, const char *identity);
/*
 * A client's key: the one for @identity, or with @identity NULL the only key
 * of the file. -ENOENT (with the reason) when there is no such key.
 */
int rf_auth_key_pick(const struct rf_auth_keys *ks, const char *identity,
                     const struct rf_auth_key **out, char *why, size_t whylen);

/* @n bytes from the CSPRNG. */
int rf_auth_random(void *buf, size_t n);
/* The client's MAC: HMAC(K, "repfabric-auth-v1 client" 00 identity 00 Nc Nh). */
int rf_auth_client_mac(const struct rf_auth_key *k, const char *identity,
                       const uint8_t nc[RF_AUTH_NONCE_LEN], const uint8_t nh[RF_AUTH_NONCE_LEN],
                       uint8_t out[RF_AUTH_MAC_LEN]);
/* The hub's MAC, which also covers the role it grants:
 * HMAC(K, "repfabric-auth-v1 hub" 00 identity 00 Nc Nh role). */
int rf_auth_hub_mac(const struct rf_auth_key *k, const char *identity,
                    const uint8_t nc[RF_AUTH_NONCE_LEN], const uint8_t nh[RF_AUTH_NONCE_LEN],
                    uint8_t role, uint8_t out[RF_AUTH_MAC_LEN]);
/* Constant-time comparison of two MACs. */
bool rf_auth_mac_equal(const uint8_t a[RF_AUTH_MAC_LEN], const uint8_t b[RF_AUTH_MAC_LEN]);

/*
 * The client's side of the handshake on a connected control socket, each
 * step within @timeout_ms. Returns 0 (and the granted role), -EACCES (the
 * hub refused our proof: wrong key or identity), -EOPNOTSUPP (the hub does
 * not authenticate), -EBADE (the hub's proof is wrong: not our hub, or
 * another key), or a transport error.
 */
int rf_auth_client(int fd, const struct rf_auth_key *k, int timeout_ms, enum rf_auth_role *role,
                   char *why, size_t whylen);

/* rf_ctl_dial(), then rf_auth_client() when @k is not NULL. An fd or -errno. */
int rf_auth_dial(const char *hostport, const struct rf_auth_key *k, int timeout_ms, char *why,
                 size_t whylen);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_AUTH_H */

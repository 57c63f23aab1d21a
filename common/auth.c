/* SPDX-License-Identifier: MIT */
/* Pre-shared keys and HMAC-SHA256 challenge-response: see repfabric/auth.h. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repfabric/auth.h"

#define KEYFILE_MAX   (1u << 20) /* bytes */
#define KEYLINE_MAX   512
#define LABEL_CLIENT  "repfabric-auth-v1 client"
#define LABEL_HUB     "repfabric-auth-v1 hub"
#define AUTH_REQ_BASE 0x4155544800000000ull /* "AUTH": ids of our two requests */

/* ---- the key file -------------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t *len)
{
	size_t n = strlen(s);

	if (n % 2 || n < 2 * RF_AUTH_KEY_MIN || n > 2 * RF_AUTH_KEY_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}

/* One line (NUL-terminated, comment stripped): "" or IDENTITY HEX [ROLE]. */
static int parse_line(struct rf_auth_keys *ks, char *line, int lineno, const char **reason)
{
	char *save = NULL, *id, *hex, *role, *extra;
	struct rf_auth_key k = {.role = RF_AUTH_ROLE_AGENT, .line = lineno};
	struct rf_auth_key *grown;

	id = strtok_r(line, " \t\r", &save);
	if (!id)
		return 0;
	hex = strtok_r(NULL, " \t\r", &save);
	role = strtok_r(NULL, " \t\r", &save);
	extra = strtok_r(NULL, " \t\r", &save);
	if (!rf_ctl_name_ok(id))
		*reason = "the identity is not 1..64 of [A-Za-z0-9._-]";
	else if (!hex)
		*reason = "no key after the identity (IDENTITY HEXKEY [agent|admin])";
	else if (parse_hex(hex, k.key, &k.len))
		*reason = "the key is not 32..128 hex digits (16..64 bytes)";
	else if (role && strcmp(role, "agent") && strcmp(role, "admin"))
		*reason = "the role is neither 'agent' nor 'admin'";
	else if (extra)
		*reason = "trailing words after the role";
	else if (rf_auth_keys_find(ks, id))
		*reason = "the identity is listed twice";
	if (*reason) {
		OPENSSL_cleanse(&k, sizeof(k));
		return -EINVAL;
	}
	if (role && !strcmp(role, "admin"))
		k.role = RF_AUTH_ROLE_ADMIN;
	snprintf(k.identity, sizeof(k.identity), "%s", id);
	/* Not realloc(): the old block would be freed with keys in it. */
	grown = malloc((ks->n + 1) * sizeof(*grown));
	if (!grown) {
		OPENSSL_cleanse(&k, sizeof(k));
		*reason = "out of memory";
		return -ENOMEM;
	}
	if (ks->n) {
		memcpy(grown, ks->keys, ks->n * sizeof(*grown));
		OPENSSL_cleanse(ks->keys, ks->n * sizeof(*grown));
	}
	free(ks->keys);
	ks->keys = grown;
	ks->keys[ks->n++] = k;
	OPENSSL_cleanse(&k, sizeof(k));
	return 0;
}

int rf_auth_keys_parse(struct rf_auth_keys *ks, const char *text, size_t len, const char *name,
                       char *why, size_t whylen)
{
	char line[KEYLINE_MAX + 1];
	const char *reason = NULL;
	size_t off = 0;
	int lineno = 0, rc = 0;

	memset(ks, 0, sizeof(*ks));
	while (off < len && !rc) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = (nl ? (size_t)(nl - text) : len) - off;
		char *hash;

		lineno++;
		if (n > KEYLINE_MAX) {
			reason = "line too long";
			rc = -EINVAL;
		} else if (memchr(text + off, '\0', n)) {
			reason = "NUL byte in the line";
			rc = -EINVAL;
		} else {
			memcpy(line, text + off, n);
			line[n] = '\0';
			hash = strchr(line, '#');
			if (hash)
				*hash = '\0';
			rc = parse_line(ks, line, lineno, &reason);
		}
		off += n + (nl ? 1 : 0);
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (!rc && ks->n == 0) {
		snprintf(why, whylen, "%s: no keys (lines are IDENTITY HEXKEY [agent|admin])",
		         name);
		rc = -EINVAL;
	} else if (rc) {
		snprintf(why, whylen, "%s:%d: %s", name, lineno, reason);
	}
	if (rc)
		rf_auth_keys_free(ks);
	return rc;
}

int rf_auth_keys_load(struct rf_auth_keys *ks, const char *path, char *why, size_t whylen)
{
	struct stat st;
	char *text = NULL;
	ssize_t got = 0;
	int fd, rc;

	memset(ks, 0, sizeof(*ks));
	/* O_NONBLOCK: a FIFO at the path must not hang the hub's loop. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, whylen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st)) {
		rc = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > KEYFILE_MAX) {
		snprintf(why, whylen, "%s: not a regular file of at most 1 MiB", path);
		rc = -EINVAL;
		goto out;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		snprintf(why, whylen,
		         "%s: owned by uid %u, not by us (uid %u) or root: another user could "
		         "change the keys",
		         path, (unsigned)st.st_uid, (unsigned)geteuid());
		rc = -EACCES;
		goto out;
	}
	if (st.st_mode & 077) {
		snprintf(why, whylen,
		         "%s: group or others may access it (mode %04o): keys must be private "
		         "(chmod 600 %s)",
		         path, (unsigned)(st.st_mode & 07777), path);
		rc = -EACCES;
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		snprintf(why, whylen, "%s: out of memory", path);
		goto out;
	}
	while (got < st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)(st.st_size - got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			snprintf(why, whylen, "%s: read: %s", path, strerror(-rc));
			goto out;
		}
		got += n;
	}
	rc = rf_auth_keys_parse(ks, text, (size_t)got, path, why, whylen);
out:
	if (text) {
		OPENSSL_cleanse(text, (size_t)st.st_size);
		free(text);
	}
	close(fd);
	return rc;
}

void rf_auth_keys_free(struct rf_auth_keys *ks)
{
	if (ks->keys) {
		OPENSSL_cleanse(ks->keys, ks->n * sizeof(*ks->keys));
		free(ks->keys);
	}
	ks->keys = NULL;
	ks->n = 0;
}

const struct rf_auth_key *rf_auth_keys_find(const struct rf_auth_keys *ks, const char *identity)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->keys[i].identity, identity))
			return &ks->keys[i];
	return NULL;
}

int rf_auth_key_pick(const struct rf_auth_keys *ks, const char *identity,
                     const struct rf_auth_key **out, char *why, size_t whylen)
{
	*out = NULL;
	if (identity) {
		*out = rf_auth_keys_find(ks, identity);
		if (!*out)
			snprintf(why, whylen, "the key file has no key for '%s'", identity);
	} else if (ks->n == 1) {
		*out = &ks->keys[0];
	} else {
		snprintf(why, whylen, "the key file has %zu keys: say which identity to use",
		         ks->n);
	}
	return *out ? 0 : -ENOENT;
}

/* ---- MACs ---------------------------------------------------------------- */

int rf_auth_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}

/* HMAC-SHA256(K, label 00 identity 00 Nc Nh [role]); @role < 0: none. */
static int auth_mac(const struct rf_auth_key *k, const char *label, const char *identity,
                    const uint8_t nc[RF_AUTH_NONCE_LEN], const uint8_t nh[RF_AUTH_NONCE_LEN],
                    int role, uint8_t out[RF_AUTH_MAC_LEN])
{
	size_t ll = strlen(label), il = strlen(identity);
	uint8_t msg[sizeof(LABEL_CLIENT) + RF_CTL_MAX_NAME + 3 + 2 * RF_AUTH_NONCE_LEN];
	unsigned outlen = 0;
	size_t n = 0;

	if (il > RF_CTL_MAX_NAME || ll > sizeof(LABEL_CLIENT) - 1)
		return -EINVAL;
	memcpy(msg, label, ll);
	n = ll;
	msg[n++] = 0;
	memcpy(msg + n, identity, il);
	n += il;
	msg[n++] = 0;
	memcpy(msg + n, nc, RF_AUTH_NONCE_LEN);
	n += RF_AUTH_NONCE_LEN;
	memcpy(msg + n, nh, RF_AUTH_NONCE_LEN);
	n += RF_AUTH_NONCE_LEN;
	if (role >= 0)
		msg[n++] = (uint8_t)role;
	if (!HMAC(EVP_sha256(), k->key, (int)k->len, msg, n, out, &outlen) ||
	    outlen != RF_AUTH_MAC_LEN)
		return -EIO;
	return 0;
}

int rf_auth_client_mac(const struct rf_auth_key *k, const char *identity,
                       const uint8_t nc[RF_AUTH_NONCE_LEN], const uint8_t nh[RF_AUTH_NONCE_LEN],
                       uint8_t out[RF_AUTH_MAC_LEN])
{
	return auth_mac(k, LABEL_CLIENT, identity, nc, nh, -1, out);
}

int rf_auth_hub_mac(const struct rf_auth_key *k, const char *identity,
                    const uint8_t nc[RF_AUTH_NONCE_LEN], const uint8_t nh[RF_AUTH_NONCE_LEN],
                    uint8_t role, uint8_t out[RF_AUTH_MAC_LEN])
{
	return auth_mac(k, LABEL_HUB, identity, nc, nh, role, out);
}

bool rf_auth_mac_equal(const uint8_t a[RF_AUTH_MAC_LEN], const uint8_t b[RF_AUTH_MAC_LEN])
{
	return CRYPTO_memcmp(a, b, RF_AUTH_MAC_LEN) == 0;
}

/* ---- the client's side ----------------------------------------------------- */

/* One request, one reply of type @want (an ERROR is turned into -code). */
static int roundtrip(int fd, uint16_t type, uint64_t req, const uint8_t *pl, int len, uint16_t want,
                     uint8_t *rbuf, size_t rcap, uint32_t *rlen, int timeout_ms, char *why,
                     size_t whylen)
{
	struct rf_ctl_hdr h;
	const char *w = "";
	int rc;

	if (len < 0) {
		snprintf(why, whylen, "cannot encode the request: %s", strerror(-len));
		return len;
	}
	rc = rf_ctl_send(fd, type, req, pl, (uint32_t)len, NULL, 0);
	if (!rc)
		rc = rf_ctl_recv(fd, &h, rbuf, rcap, timeout_ms, &w);
	if (rc) {
		snprintf(why, whylen, "%s%s%s", strerror(-rc), rc == -EPROTO ? ": " : "",
		         rc == -EPROTO ? w : "");
		return rc;
	}
	if (h.type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(rbuf, h.len, &e, &w)) {
			snprintf(why, whylen, "malformed ERROR from the hub: %s", w);
			return -EPROTO;
		}
		snprintf(why, whylen, "the hub says: %s", e.reason);
		return e.code > 0 && e.code < 4096 ? -e.code : -EPROTO;
	}
	if (h.type != want || h.req_id != req) {
		snprintf(why, whylen, "unexpected answer (type %u, request %#llx)", h.type,
		         (unsigned long long)h.req_id);
		return -EPROTO;
	}
	*rlen = h.len;
	return 0;
}

int rf_auth_client(int fd, const struct rf_auth_key *k, int timeout_ms, enum rf_auth_role *role,
                   char *why, size_t whylen)
{
	struct rf_ctl_auth_start st = {.method = RF_AUTH_METHOD_HMAC_SHA256};
	struct rf_ctl_auth_blob ch, proof;
	struct rf_ctl_auth_ok ok;
	uint8_t buf[RF_CTL_MAX_TEXT + 128], want[RF_AUTH_MAC_LEN];
	const char *w = "";
	uint32_t rlen = 0;
	int rc;

	snprintf(st.identity, sizeof(st.identity), "%s", k->identity);
	rc = rf_auth_random(st.nonce, sizeof(st.nonce));
	if (rc) {
		snprintf(why, whylen, "no random bytes for a nonce");
		return rc;
	}
	rc = rf_ctl_enc_auth_start(buf, sizeof(buf), &st);
	rc = roundtrip(fd, RF_CTL_AUTH_START, AUTH_REQ_BASE + 1, buf, rc, RF_CTL_AUTH_CHALLENGE,
	               buf, sizeof(buf), &rlen, timeout_ms, why, whylen);
	if (rc == -EOPNOTSUPP)
		snprintf(why, whylen,
		         "the hub does not authenticate (no psk_file in its config), and this "
		         "client has a key: refusing to talk to it unauthenticated");
	if (rc)
		return rc;
	if (rf_ctl_dec_auth_blob(buf, rlen, &ch, &w)) {
		snprintf(why, whylen, "malformed AUTH_CHALLENGE: %s", w);
		return -EPROTO;
	}
	rc = rf_auth_client_mac(k, k->identity, st.nonce, ch.b, proof.b);
	if (rc) {
		snprintf(why, whylen, "HMAC failed");
		return rc;
	}
	rc = rf_ctl_enc_auth_blob(buf, sizeof(buf), &proof);
	rc = roundtrip(fd, RF_CTL_AUTH_PROOF, AUTH_REQ_BASE + 2, buf, rc, RF_CTL_AUTH_OK, buf,
	               sizeof(buf), &rlen, timeout_ms, why, whylen);
	if (rc == -EACCES)
		snprintf(why, whylen,
		         "the hub refused our proof as '%s': wrong key, or the identity is not in "
		         "the hub's psk_file",
		         k->identity);
	if (rc)
		return rc;
	if (rf_ctl_dec_auth_ok(buf, rlen, &ok, &w)) {
		snprintf(why, whylen, "malformed AUTH_OK: %s", w);
		return -EPROTO;
	}
	rc = rf_auth_hub_mac(k, k->identity, st.nonce, ch.b, ok.role, want);
	if (rc || !rf_auth_mac_equal(want, ok.mac)) {
		snprintf(why, whylen,
		         "the hub's proof is wrong: it does not hold the key for '%s' (another "
		         "key, or not our hub)",
		         k->identity);
		return -EBADE;
	}
	if (role)
		*role = (enum rf_auth_role)ok.role;
	return 0;
}

int rf_auth_dial(const char *hostport, const struct rf_auth_key *k, int timeout_ms, char *why,
                 size_t whylen)
{
	int fd = rf_ctl_dial(hostport, timeout_ms), rc;

	if (fd < 0) {
		snprintf(why, whylen, "cannot connect to %s: %s", hostport, strerror(-fd));
		return fd;
	}
	if (!k)
		return fd;
	rc = rf_auth_client(fd, k, timeout_ms, NULL, why, whylen);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/auth.c: the key file parser, the MACs (known-answer
 * values computed independently with Python's hmac module), the codecs of
 * AUTH_*, and the client's side of the handshake against a scripted hub on
 * a socketpair: a good hub, a hub whose proof is wrong, a hub that refuses,
 * and a hub that does not authenticate.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "repfabric/auth.h"
#include "repfabric/ctl.h"

#define K32 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static int parse(const char *text, struct rf_auth_keys *ks, char *why, size_t wl)
{
	return rf_auth_keys_parse(ks, text, strlen(text), "keys", why, wl);
}

static void test_parse_good(void **state)
{
	struct rf_auth_keys ks;
	char why[256] = "";
	const struct rf_auth_key *k;

	(void)state;
	assert_int_equal(parse("# c\n\n  vm1 " K32 "   # trailing\nops " K32 " admin\n"
	                       "vm2 00112233445566778899AABBCCDDEEFF agent",
	                       &ks, why, sizeof(why)),
	                 0);
	assert_int_equal(ks.n, 3);
	k = rf_auth_keys_find(&ks, "vm1");
	assert_non_null(k);
	assert_int_equal(k->len, 32);
	assert_int_equal(k->key[31], 0x1f);
	assert_int_equal(k->role, RF_AUTH_ROLE_AGENT);
	assert_int_equal(rf_auth_keys_find(&ks, "ops")->role, RF_AUTH_ROLE_ADMIN);
	assert_int_equal(rf_auth_keys_find(&ks, "vm2")->len, 16);
	assert_int_equal(rf_auth_keys_find(&ks, "vm2")->key[15], 0xff);
	assert_null(rf_auth_keys_find(&ks, "vm3"));
	assert_int_equal(rf_auth_key_pick(&ks, NULL, &k, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "3 keys"));
	assert_int_equal(rf_auth_key_pick(&ks, "vm9", &k, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "no key for 'vm9'"));
	rf_auth_keys_free(&ks);
	assert_int_equal(ks.n, 0);
	assert_int_equal(parse("only " K32, &ks, why, sizeof(why)), 0);
	assert_int_equal(rf_auth_key_pick(&ks, NULL, &k, why, sizeof(why)), 0);
	assert_string_equal(k->identity, "only");
	rf_auth_keys_free(&ks);
}

static void test_parse_bad(void **state)
{
	static const struct {
		const char *text, *reason;
	} cases[] = {
	    {"", "no keys"},
	    {"# nothing\n\n", "no keys"},
	    {"vm1\n", "keys:1: no key after the identity"},
	    {"vm1 " K32 "\nvm2 abc\n", "keys:2: the key is not 32..128 hex digits"},
	    {"vm1 00112233445566778899aabbccddeeff0\n", "not 32..128 hex digits"}, /* odd */
	    {"vm1 00112233445566778899aabbccddeeXX\n", "not 32..128 hex digits"},  /* not hex */
	    {"vm1 00112233445566778899aabbccddee\n", "not 32..128 hex digits"},    /* 15 bytes */
	    {"vm1 " K32 K32 "00\n", "not 32..128 hex digits"},                     /* 65 bytes */
	    {"vm1 " K32 " root\n", "the role is neither"},
	    {"vm1 " K32 " admin extra\n", "trailing words"},
	    {"vm/1 " K32 "\n", "the identity is not"},
	    {"vm1 " K32 "\nvm1 " K32 "\n", "keys:2: the identity is listed twice"},
	};
	struct rf_auth_keys ks;
	char why[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = '\0';
		assert_int_equal(parse(cases[i].text, &ks, why, sizeof(why)), -EINVAL);
		if (!strstr(why, cases[i].reason))
			fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].reason);
		assert_int_equal(ks.n, 0);
		assert_null(ks.keys);
	}
	/* A NUL inside the text is refused, not taken for the end. */
	assert_int_equal(
	    rf_auth_keys_parse(&ks, "vm1 " K32 "\0x\n", 4 + 64 + 3, "keys", why, sizeof(why)),
	    -EINVAL);
}

static void test_load_mode(void **state)
{
	char path[] = "/tmp/rf-test-auth-XXXXXX", why[512];
	struct rf_auth_keys ks;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "vm1 " K32 "\n", 4 + 64 + 1), 4 + 64 + 1);
	close(fd);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(rf_auth_keys_load(&ks, path, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "mode 0640"));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(rf_auth_keys_load(&ks, path, why, sizeof(why)), 0);
	assert_int_equal(ks.n, 1);
	rf_auth_keys_free(&ks);
	unlink(path);
	assert_int_equal(rf_auth_keys_load(&ks, path, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, "cannot open"));
}

static void hex(const char *s, uint8_t *out)
{
	for (size_t i = 0; i < strlen(s) / 2; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
}

/* Expected values: Python hmac.new(bytes(range(32)), label + b"\0vm1\0" +
 * b"\xaa" * 32 + b"\x55" * 32 [+ bytes([1]) for the hub's, the role],
 * hashlib.sha256). */
static void test_mac_known_answer(void **state)
{
	struct rf_auth_keys ks;
	uint8_t nc[32], nh[32], out[32], want[32];
	char why[64];

	(void)state;
	memset(nc, 0xaa, sizeof(nc));
	memset(nh, 0x55, sizeof(nh));
	assert_int_equal(parse("vm1 " K32, &ks, why, sizeof(why)), 0);
	assert_int_equal(rf_auth_client_mac(&ks.keys[0], "vm1", nc, nh, out), 0);
	hex("bd7ef8d270bbcc3dcb063b41551a4e216d665295497ac34ea7fad0e5d2703dc9", want);
	assert_memory_equal(out, want, 32);
	assert_true(rf_auth_mac_equal(out, want));
	assert_int_equal(rf_auth_hub_mac(&ks.keys[0], "vm1", nc, nh, RF_AUTH_ROLE_AGENT, out), 0);
	hex("38ae5c9499191678d318b0ce8fc2bc644ad7ef4db0e575b4ab5b4874b6f87377", want);
	assert_memory_equal(out, want, 32);
	want[31] ^= 1;
	assert_false(rf_auth_mac_equal(out, want));
	rf_auth_keys_free(&ks);
}

static void test_codecs(void **state)
{
	struct rf_ctl_auth_start s = {.method = 1, .identity = "vm1"}, s2;
	struct rf_ctl_auth_ok ok = {.role = RF_AUTH_ROLE_ADMIN}, ok2;
	struct rf_ctl_auth_blob b, b2;
	uint8_t buf[256];
	const char *why = NULL;
	int n;

	(void)state;
	memset(s.nonce, 7, sizeof(s.nonce));
	n = rf_ctl_enc_auth_start(buf, sizeof(buf), &s);
	assert_int_equal(n, 2 + 2 + 3 + 32);
	assert_int_equal(rf_ctl_dec_auth_start(buf, (size_t)n, &s2, &why), 0);
	assert_string_equal(s2.identity, "vm1");
	assert_memory_equal(s2.nonce, s.nonce, 32);
	assert_int_equal(rf_ctl_dec_auth_start(buf, (size_t)n - 1, &s2, &why), -EBADMSG);
	buf[4] = '/'; /* "/m1" is not a name */
	assert_int_equal(rf_ctl_dec_auth_start(buf, (size_t)n, &s2, &why), -EBADMSG);
	snprintf(s.identity, sizeof(s.identity), "a b");
	assert_int_equal(rf_ctl_enc_auth_start(buf, sizeof(buf), &s), -EINVAL);
	memset(b.b, 3, sizeof(b.b));
	assert_int_equal(rf_ctl_enc_auth_blob(buf, sizeof(buf), &b), 32);
	assert_int_equal(rf_ctl_dec_auth_blob(buf, 32, &b2, &why), 0);
	assert_int_equal(rf_ctl_dec_auth_blob(buf, 31, &b2, &why), -EBADMSG);
	assert_int_equal(rf_ctl_dec_auth_blob(buf, 33, &b2, &why), -EBADMSG);
	assert_int_equal(rf_ctl_enc_auth_ok(buf, sizeof(buf), &ok), 33);
	assert_int_equal(rf_ctl_dec_auth_ok(buf, 33, &ok2, &why), 0);
	assert_int_equal(ok2.role, RF_AUTH_ROLE_ADMIN);
	buf[0] = 3;
	assert_int_equal(rf_ctl_dec_auth_ok(buf, 33, &ok2, &why), -EBADMSG);
	ok.role = 0;
	assert_int_equal(rf_ctl_enc_auth_ok(buf, sizeof(buf), &ok), -EINVAL);
}

/* ---- the client against a scripted hub ------------------------------------ */

enum hub_mode { HUB_GOOD, HUB_BAD_PROOF, HUB_ROLE_FLIP, HUB_REFUSE, HUB_NO_AUTH };

struct fake_hub {
	int fd;
	enum hub_mode mode;
	const struct rf_auth_key *key;
	bool client_proof_ok;
};

static void send_error(int fd, uint64_t req, int code, const char *reason)
{
	struct rf_ctl_error e = {.code = code};
	uint8_t buf[256];
	int n;

	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	n = rf_ctl_enc_error(buf, sizeof(buf), &e);
	rf_ctl_send(fd, RF_CTL_ERROR, req, buf, (uint32_t)n, NULL, 0);
}

static void *hub_thread(void *arg)
{
	struct fake_hub *f = arg;
	struct rf_ctl_auth_start st;
	struct rf_ctl_auth_blob ch, proof;
	struct rf_ctl_auth_ok ok = {.role = RF_AUTH_ROLE_AGENT};
	struct rf_ctl_hdr h;
	uint8_t buf[2048], want[32];
	const char *why;
	int n;

	if (rf_ctl_recv(f->fd, &h, buf, sizeof(buf), 5000, &why) || h.type != RF_CTL_AUTH_START ||
	    rf_ctl_dec_auth_start(buf, h.len, &st, &why))
		return NULL;
	if (f->mode == HUB_NO_AUTH) {
		send_error(f->fd, h.req_id, EOPNOTSUPP, "no psk_file");
		return NULL;
	}
	memset(ch.b, 0x42, sizeof(ch.b));
	n = rf_ctl_enc_auth_blob(buf, sizeof(buf), &ch);
	rf_ctl_send(f->fd, RF_CTL_AUTH_CHALLENGE, h.req_id, buf, (uint32_t)n, NULL, 0);
	if (rf_ctl_recv(f->fd, &h, buf, sizeof(buf), 5000, &why) || h.type != RF_CTL_AUTH_PROOF ||
	    rf_ctl_dec_auth_blob(buf, h.len, &proof, &why))
		return NULL;
	rf_auth_client_mac(f->key, st.identity, st.nonce, ch.b, want);
	f->client_proof_ok = rf_auth_mac_equal(want, proof.b);
	if (f->mode == HUB_REFUSE) {
		send_error(f->fd, h.req_id, EACCES, "authentication failed");
		return NULL;
	}
	rf_auth_hub_mac(f->key, st.identity, st.nonce, ch.b, ok.role, ok.mac);
	if (f->mode == HUB_BAD_PROOF)
		ok.mac[0] ^= 0x80;
	if (f->mode == HUB_ROLE_FLIP)
		ok.role = RF_AUTH_ROLE_ADMIN; /* the MAC was made for agent */
	n = rf_ctl_enc_auth_ok(buf, sizeof(buf), &ok);
	rf_ctl_send(f->fd, RF_CTL_AUTH_OK, h.req_id, buf, (uint32_t)n, NULL, 0);
	return NULL;
}

static int run_client(enum hub_mode mode, bool *proof_ok, char *why, size_t wl)
{
	struct rf_auth_keys ks;
	struct fake_hub f = {.mode = mode};
	enum rf_auth_role role = 0;
	pthread_t t;
	int sv[2], rc;

	assert_int_equal(parse("vm1 " K32, &ks, why, wl), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	f.fd = sv[1];
	f.key = &ks.keys[0];
	assert_int_equal(pthread_create(&t, NULL, hub_thread, &f), 0);
	rc = rf_auth_client(sv[0], &ks.keys[0], 5000, &role, why, wl);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	if (rc == 0)
		assert_int_equal(role, RF_AUTH_ROLE_AGENT);
	*proof_ok = f.client_proof_ok;
	rf_auth_keys_free(&ks);
	return rc;
}

static void test_client(void **state)
{
	char why[512];
	bool proof_ok;

	(void)state;
	assert_int_equal(run_client(HUB_GOOD, &proof_ok, why, sizeof(why)), 0);
	assert_true(proof_ok);
	assert_int_equal(run_client(HUB_BAD_PROOF, &proof_ok, why, sizeof(why)), -EBADE);
	assert_non_null(strstr(why, "the hub's proof is wrong"));
	/* The role is covered by the hub's MAC: a changed role is refused. */
	assert_int_equal(run_client(HUB_ROLE_FLIP, &proof_ok, why, sizeof(why)), -EBADE);
	assert_int_equal(run_client(HUB_REFUSE, &proof_ok, why, sizeof(why)), -EACCES);
	assert_non_null(strstr(why, "refused our proof as 'vm1'"));
	assert_int_equal(run_client(HUB_NO_AUTH, &proof_ok, why, sizeof(why)), -EOPNOTSUPP);
	assert_non_null(strstr(why, "does not authenticate"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good), cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_load_mode),  cmocka_unit_test(test_mac_known_answer),
	    cmocka_unit_test(test_codecs),     cmocka_unit_test(test_client),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

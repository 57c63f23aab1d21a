/* SPDX-License-Identifier: MIT */
/*
 * The hub's side of the control channel's authentication (docs/PROTOCOL.md,
 * "Authentication"): with psk_file set, a connection sends AUTH_START and
 * AUTH_PROOF before anything else; its identity's role then decides what
 * it may send. Without psk_file nothing is checked (and the start-up log
 * says so).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl_auth.h"
#include "ctl_server.h"
#include "handlers.h"
#include "volstate.h"
#include "repfabric/log.h"

#define SUBSYS "auth"

/* Stands in for a missing key, so that a refusal takes the same time. */
static const struct rf_auth_key dummy_key = {.len = RF_AUTH_KEY_MIN};

int auth_init(struct hub *h)
{
	char why[PATH_MAX + 256];
	int rc;

	if (!h->cfg->psk_file[0]) {
		RF_WARN(SUBSYS,
		        "no psk_file: the control channel is not authenticated; any "
		        "host that reaches %s can act as an agent or an administrator",
		        h->cfg->control);
		return 0;
	}
	rc = rf_auth_keys_load(&h->keys, h->cfg->psk_file, why, sizeof(why));
	if (rc) {
		RF_ERR(SUBSYS, "%s", why);
		return rc;
	}
	h->auth_on = true;
	RF_INFO(SUBSYS, "control channel authentication on: %zu key(s) from %s", h->keys.n,
	        h->cfg->psk_file);
	auth_warn_unbound(h);
	return 0;
}

void auth_warn_unbound(const struct hub *h)
{
	if (!h->auth_on)
		return;
	for (size_t i = 0; i < h->cfg->nvols; i++)
		if (!h->cfg->vols[i].agent[0])
			RF_WARN(SUBSYS,
			        "volume %s has no 'agent =': any authenticated agent may take it "
			        "over while its owner is offline",
			        h->cfg->vols[i].name);
}

void auth_fini(struct hub *h)
{
	rf_auth_keys_free(&h->keys);
	h->auth_on = false;
}

static const char *role_name(enum rf_auth_role r)
{
	return r == RF_AUTH_ROLE_ADMIN ? "admin" : "agent";
}

/* Refuse: log once with the reason, count; the ERROR closes the connection. */
static int refuse(struct ctl_conn *c, struct ctl_reply *r, const char *reason)
{
	c->hub->auth_failures++;
	RF_WARN(SUBSYS, "%s: authentication as '%s' refused: %s", c->peer,
	        c->auth_id[0] ? c->auth_id : "?", reason);
	r->close = true;
	return ctl_fail(r, EACCES, "authentication failed");
}

/* AUTH_* to a hub without psk_file: say so (the client stops there). */
static int hub_authenticates(struct ctl_conn *c, struct ctl_reply *r)
{
	if (c->hub->auth_on)
		return 0;
	return ctl_fail(r, EOPNOTSUPP,
	                "this hub does not authenticate (no psk_file in its configuration)");
}

int auth_malformed(struct ctl_conn *c, const char *why, struct ctl_reply *r)
{
	c->hub->protocol_errors++;
	return refuse(c, r, why);
}

int auth_start_check(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	int rc = hub_authenticates(c, r);

	if (rc)
		return rc;
	if (c->auth != AUTH_NONE)
		return refuse(c, r, "a second AUTH_START on the connection");
	/* Said HELLO before authentication was turned on: a session is not
	 * adopted under another identity's key. */
	if (c->agent)
		return refuse(c, r, "AUTH_START after HELLO");
	return 0;
}

int auth_start(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_auth_start *m = &rq->m->auth_start;
	struct rf_ctl_auth_blob ch;
	uint8_t buf[64];
	int n;

	snprintf(c->auth_id, sizeof(c->auth_id), "%s", m->identity);
	if (m->method != RF_AUTH_METHOD_HMAC_SHA256)
		return refuse(c, r, "unknown method (1 = HMAC-SHA256 is the only one)");
	/* An unknown identity gets a challenge too: it fails at the proof,
	 * so the answer does not tell which identities exist. */
	memcpy(c->auth_nc, m->nonce, sizeof(c->auth_nc));
	if (rf_auth_random(c->auth_nh, sizeof(c->auth_nh))) {
		r->close = true;
		return ctl_fail(r, EIO, "the hub has no random bytes for a nonce");
	}
	memcpy(ch.b, c->auth_nh, sizeof(ch.b));
	n = rf_ctl_enc_auth_blob(buf, sizeof(buf), &ch);
	c->auth = AUTH_CHALLENGED;
	ctl_send(c, RF_CTL_AUTH_CHALLENGE, rq->req_id, buf, (uint32_t)n);
	return 0;
}

int auth_proof_check(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	int rc = hub_authenticates(c, r);

	if (rc)
		return rc;
	if (c->auth != AUTH_CHALLENGED)
		return refuse(c, r,
		              c->auth == AUTH_DONE ? "AUTH_PROOF after success"
		                                   : "AUTH_PROOF before AUTH_START");
	return 0;
}

int auth_proof(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_auth_blob *proof = &rq->m->auth_blob;
	const struct rf_auth_key *k;
	struct rf_ctl_auth_ok ok = {0};
	uint8_t want[RF_AUTH_MAC_LEN], buf[64];
	int n, mac_rc;

	k = rf_auth_keys_find(&c->hub->keys, c->auth_id);
	/* An unknown identity costs the same HMAC as a known one. */
	mac_rc = rf_auth_client_mac(k ? k : &dummy_key, c->auth_id, c->auth_nc, c->auth_nh, want);
	if (!k)
		return refuse(c, r, "no key for this identity in psk_file");
	if (mac_rc || !rf_auth_mac_equal(want, proof->b))
		return refuse(c, r, "wrong key (its proof does not match the hub's key)");
	ok.role = (uint8_t)k->role;
	if (rf_auth_hub_mac(k, c->auth_id, c->auth_nc, c->auth_nh, ok.role, ok.mac)) {
		r->close = true;
		return ctl_fail(r, EIO, "HMAC failed");
	}
	n = rf_ctl_enc_auth_ok(buf, sizeof(buf), &ok);
	c->auth = AUTH_DONE;
	ctl_proven(c);
	c->role = k->role;
	c->hub->auth_ok++;
	RF_INFO(SUBSYS, "%s: authenticated as '%s' (%s)", c->peer, c->auth_id, role_name(c->role));
	ctl_send(c, RF_CTL_AUTH_OK, rq->req_id, buf, (uint32_t)n);
	return 0;
}

uint32_t auth_frame_max(const struct ctl_conn *c)
{
	/* Nothing big is buffered for a peer that has proved nothing. */
	if (!c->hub->auth_on || c->auth == AUTH_DONE)
		return RF_CTL_MAX_PAYLOAD;
	return HUB_PREAUTH_MAX_LEN;
}

void auth_frame_too_big(struct ctl_conn *c)
{
	struct ctl_reply r = {0};
	int rc = refuse(c, &r, "a frame of more than 256 bytes before authenticating");

	/* Refused by its header: not a message yet, so not through the dispatcher. */
	ctl_send_error(c, c->st.h.req_id, -rc, "%s", r.why);
	ctl_close_after_flush(c);
}

void auth_handshake_expired(struct ctl_conn *c)
{
	char limit[32];
	unsigned ms = c->hub->fds.handshake_ms;

	if (ms % 1000)
		snprintf(limit, sizeof(limit), "%u ms", ms);
	else
		snprintf(limit, sizeof(limit), "%u s", ms / 1000);
	if (!c->hub->auth_on || c->auth == AUTH_DONE) {
		RF_DEBUG(SUBSYS, "%s: no complete frame within %s: closing", c->peer, limit);
		ctl_close(c, "no complete frame in time");
		return;
	}
	c->hub->auth_failures++;
	RF_WARN(SUBSYS, "%s: not authenticated within %s: closing", c->peer, limit);
	ctl_close(c, "not authenticated in time");
}

int auth_allows(struct ctl_conn *c, uint16_t type, const struct rf_ctl_msg_desc *d,
                struct ctl_reply *r)
{
	enum rf_ctl_role need = d ? d->role : RF_CTL_ROLE_NONE;
	enum rf_auth_role role;

	if (!c->hub->auth_on || need == RF_CTL_ROLE_PREAUTH)
		return 0;
	if (c->auth != AUTH_DONE) {
		c->hub->auth_failures++;
		RF_WARN(SUBSYS, "%s: message type %u before authentication: refused, closing",
		        c->peer, type);
		r->close = true;
		return ctl_fail(r, EACCES,
		                "authentication required: this hub has a psk_file; give the "
		                "client its key (psk_file)");
	}
	if (need != RF_CTL_ROLE_AGENT && need != RF_CTL_ROLE_ADMIN)
		return 0; /* any identity; a type the hub does not take is refused after */
	role = need == RF_CTL_ROLE_AGENT ? RF_AUTH_ROLE_AGENT : RF_AUTH_ROLE_ADMIN;
	if (role != c->role) {
		RF_WARN(SUBSYS, "%s: '%s' (%s) may not send message type %u: refused", c->peer,
		        c->auth_id, role_name(c->role), type);
		return ctl_fail(r, EACCES, "identity '%s' (role %s) may not send this message",
		                c->auth_id, role_name(c->role));
	}
	return 0;
}

/* Why @c's proof no longer holds under the keys now loaded, or NULL. */
static const char *proof_stale(const struct ctl_conn *c, const struct rf_auth_keys *old)
{
	const struct rf_auth_key *nk = rf_auth_keys_find(&c->hub->keys, c->auth_id);
	const struct rf_auth_key *ok = rf_auth_keys_find(old, c->auth_id);

	if (c->auth == AUTH_CHALLENGED)
		return NULL; /* its proof is checked against the new keys */
	if (c->auth != AUTH_DONE)
		return "authentication is now required";
	if (!nk)
		return "its identity was removed from psk_file";
	if (nk->role != c->role)
		return "its role changed";
	if (!ok || ok->len != nk->len || memcmp(ok->key, nk->key, nk->len) != 0)
		return "its key changed";
	return NULL;
}

void auth_recheck(struct hub *h, const struct rf_auth_keys *old)
{
	if (!h->auth_on)
		return;
	for (struct ctl_conn *c = h->conns; c; c = c->next) {
		const char *why;

		if (c->dead || c->closing)
			continue;
		why = proof_stale(c, old);
		if (!why)
			continue;
		RF_WARN(SUBSYS, "%s ('%s'): %s: closing the connection", c->peer,
		        c->auth_id[0] ? c->auth_id : "not authenticated", why);
		ctl_send_error(c, 0, EACCES, "the hub's keys changed: %s", why);
		ctl_close_after_flush(c);
	}
}

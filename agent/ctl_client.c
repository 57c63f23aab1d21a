/* SPDX-License-Identifier: MIT */
/*
 * The control client, one job: the agent's side of the control connection
 * to the hub. Dial, authenticate and HELLO (blocking, bounded), report the
 * volumes (VOLUME_REPORT) and handle the answers (VOLUME_OK, ERROR), the
 * hub's requests and notices (SYNC_READ, REPORT_AGAIN, VOLUME_STATE,
 * HEARTBEAT), and the heartbeat and report deadlines. Frames travel on a
 * framed stream (common/ctl_stream.c); what arrives is named and decoded by
 * the message table (common/ctl_msgs.c). Loop thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_internal.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

/* ---- frames out ---------------------------------------------------------------- */

void rfa_ctl_flush(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	int rc = rf_ctl_stream_flush(&c->st);

	if (rc) {
		RF_WARN("agent", "control connection: send: %s", strerror(-rc));
		rfa_disconnect(a, "control connection lost");
		return;
	}
	if ((rf_ctl_stream_pending(&c->st) > 0) != c->want_out) {
		c->want_out = rf_ctl_stream_pending(&c->st) > 0;
		rfa_ep_mod(a, c->ctl_fd, EPOLLIN | (c->want_out ? EPOLLOUT : 0), RFA_TAG_CTL);
	}
}

/* Queue one frame for the hub; @len is the encoded payload length. */
void rfa_ctl_send(struct rf_agent *a, uint16_t type, uint64_t req, const void *payload, int len)
{
	int rc;

	if (!rfa_link_ctl_up(a->link))
		return;
	if (len < 0) {
		RF_ERR("agent", "cannot encode control message type %u: %s", type, strerror(-len));
		return;
	}
	rc = rf_ctl_stream_queue(&a->c.st, type, req, payload, (uint32_t)len);
	if (rc == -ENOBUFS) {
		rfa_disconnect(a, "the hub does not read its control connection");
		return;
	}
	if (rc) {
		rfa_disconnect(a, rc == -ENOMEM ? "out of memory" : strerror(-rc));
		return;
	}
	rfa_ctl_flush(a);
}

static void ctl_error(struct rf_agent *a, uint64_t req, int code, const char *reason)
{
	struct rf_ctl_error e = {.code = code};
	uint8_t buf[RF_CTL_MAX_TEXT + 16];

	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	rfa_ctl_send(a, RF_CTL_ERROR, req, buf, rf_ctl_enc_error(buf, sizeof(buf), &e));
}

/* ---- connect and report ---------------------------------------------------------- */

/* Dial, (authenticate,) HELLO, HELLO_OK: blocking, each step bounded. */
void rfa_ctl_connect(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	struct rf_ctl_hello hello = {.proto = RF_CTL_VERSION};
	struct rf_ctl_hello_ok ok;
	struct rf_ctl_hdr h;
	uint8_t buf[RF_CTL_MAX_NAME + 16];
	const char *why = "";
	char reason[RF_CTL_MAX_TEXT + 64];
	int fd, rc, len;

	rfa_link_set(a, RFA_LINK_CONNECTING);
	fd = rf_ctl_dial(a->hub, (int)a->opts.connect_timeout_ms);
	if (fd < 0) {
		snprintf(reason, sizeof(reason), "cannot connect: %s", strerror(-fd));
		rfa_disconnect(a, reason);
		if (c->warned_down++ == 0)
			RF_WARN("agent",
			        "hub %s unreachable (%s); writes are tracked in the dirty "
			        "bitmap until it is back",
			        a->hub, strerror(-fd));
		return;
	}
	if (a->key) {
		char awhy[RF_CTL_MAX_TEXT];

		rfa_link_set(a, RFA_LINK_AUTHENTICATING);
		rc = rf_auth_client(fd, a->key, (int)a->opts.connect_timeout_ms, NULL, awhy,
		                    sizeof(awhy));
		if (rc) {
			snprintf(reason, sizeof(reason), "authentication failed: %s", awhy);
			/* A refusal is a configuration problem: say it loudly, once. */
			if (c->warned_down == 0 && rc != -ETIMEDOUT && rc != -ECONNRESET)
				RF_ERR("agent", "hub %s: %s", a->hub, reason);
			goto fail;
		}
	}
	rfa_link_set(a, RFA_LINK_HELLO);
	snprintf(hello.agent_id, sizeof(hello.agent_id), "%s", a->id);
	len = rf_ctl_enc_hello(buf, sizeof(buf), &hello);
	rc = len < 0 ? len
	             : rf_ctl_send(fd, RF_CTL_HELLO, ++c->next_req, buf, (uint32_t)len, NULL, 0);
	if (!rc)
		rc = rf_ctl_recv(fd, &h, c->rbuf, RFA_CTL_RBUF_CAP, (int)a->opts.connect_timeout_ms,
		                 &why);
	if (rc) {
		snprintf(reason, sizeof(reason), "HELLO failed: %s%s%s", strerror(-rc),
		         rc == -EPROTO ? ": " : "", rc == -EPROTO ? why : "");
		goto fail;
	}
	if (h.type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(c->rbuf, h.len, &e, &why) == 0)
			snprintf(reason, sizeof(reason), "hub refused HELLO: %s (%s)", e.reason,
			         strerror(e.code));
		else
			snprintf(reason, sizeof(reason), "hub refused HELLO (bad ERROR: %s)", why);
		RF_ERR("agent", "%s", reason);
		goto fail;
	}
	if (h.type != RF_CTL_HELLO_OK || h.req_id != c->next_req ||
	    rf_ctl_dec_hello_ok(c->rbuf, h.len, &ok, &why)) {
		snprintf(reason, sizeof(reason), "bad answer to HELLO (type %u): %s", h.type,
		         h.type == RF_CTL_HELLO_OK ? why : "unexpected type or id");
		goto fail;
	}
	rc = rf_fab_url_check(ok.data_url);
	if (rc) {
		snprintf(reason, sizeof(reason), "hub gave an unusable data URL '%s': %s",
		         ok.data_url, strerror(-rc));
		RF_ERR("agent", "%s", reason);
		goto fail;
	}
	c->ctl_fd = fd;
	rc = rfa_ep_add(a, fd, EPOLLIN, RFA_TAG_CTL);
	if (rc) {
		c->ctl_fd = -1;
		snprintf(reason, sizeof(reason), "epoll: %s", strerror(-rc));
		goto fail;
	}
	c->session = ok.session;
	c->token = ok.token;
	snprintf(c->data_url, sizeof(c->data_url), "%s", ok.data_url);
	rf_ctl_stream_reset(&c->st, fd);
	c->last_rx_ms = rf_now_ms();
	c->next_hb_ms = c->last_rx_ms + a->opts.heartbeat_ms;
	c->reports_due = 0;
	c->reports_deadline_ms = 0;
	c->hb_req = 0;
	c->warned_down = 0;
	rfa_link_set(a, RFA_LINK_REPORTING);
	RF_INFO("agent", "connected to hub %s as %s (session %" PRIx64 "), data %s", a->hub, a->id,
	        c->session, c->data_url);
	return;
fail:
	close(fd);
	if (c->warned_down++ == 0)
		RF_WARN("agent", "hub %s: %s", a->hub, reason);
	rfa_disconnect(a, reason);
}

/* Send VOLUME_REPORT for each volume not yet reported in this session. */
void rfa_ctl_report_volumes(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n && rfa_link_ctl_up(a->link); i++) {
		struct rf_agent_vol *v = a->vols[i];
		struct rf_ctl_volume_report m = {.vol_id = v->vol_id, .size = v->size};
		uint8_t buf[RF_CTL_MAX_NAME + 32];
		bool broken;

		if (v->reported)
			continue;
		pthread_mutex_lock(&v->lock);
		broken = v->bm_broken;
		pthread_mutex_unlock(&v->lock);
		m.bitmap_valid = v->trusted && !broken;
		snprintf(m.name, sizeof(m.name), "%s", v->name);
		v->reported = true;
		v->report_req = ++c->next_req;
		c->reports_due++;
		c->reports_deadline_ms = rf_now_ms() + a->opts.connect_timeout_ms;
		rfa_ctl_send(a, RF_CTL_VOLUME_REPORT, v->report_req, buf,
		             rf_ctl_enc_volume_report(buf, sizeof(buf), &m));
		RF_DEBUG("agent", "VOLUME_REPORT %s (id %u, bitmap %s)", v->name, v->vol_id,
		         m.bitmap_valid ? "valid" : "invalid");
	}
}

bool rfa_ctl_any_volume_ok(struct rf_agent *a)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->ok)
			return true;
	return false;
}

/* ---- frames in ------------------------------------------------------------------- */

static void on_sync_read(struct rf_agent *a, uint64_t req, const struct rf_ctl_sync_read *mp)
{
	struct rfa_conn *c = &a->c;
	const struct rf_ctl_sync_read m = *mp;
	struct rf_agent_vol *v;
	uint8_t buf[64];
	uint64_t seq = 0;
	int rc;

	v = rfa_vol_by_id(a, m.vol_id);
	if (!v) {
		ctl_error(a, req, ENOENT, "no such volume id");
		return;
	}
	if (m.length == 0 || m.length > RF_CTL_MAX_DATA || m.offset > v->size ||
	    m.length > v->size - m.offset) {
		ctl_error(a, req, EINVAL, "range outside the volume");
		return;
	}
	if (a->link != RFA_LINK_LINKED || !rfa_vol_attached(a, v)) {
		ctl_error(a, req, EAGAIN, "not attached");
		return;
	}
	rc = rfa_post_range(a, v, m.offset, m.length, false, &seq);
	switch (rc) {
	case 0: {
		struct rf_ctl_sync_posted r = {
		    .vol_id = m.vol_id, .offset = m.offset, .length = m.length, .seq = seq};

		rfa_ctl_send(a, RF_CTL_SYNC_POSTED, req, buf,
		             rf_ctl_enc_sync_posted(buf, sizeof(buf), &r));
		pthread_mutex_lock(&a->lock);
		a->sync_reads++;
		pthread_mutex_unlock(&a->lock);
		break;
	}
	case -EAGAIN:
		ctl_error(a, req, EAGAIN, c->space_wait ? "ring full" : "volume not readable now");
		break;
	case -ENOTCONN:
		ctl_error(a, req, EAGAIN, "data connection lost");
		break;
	case -EIO:
		ctl_error(a, req, EIO, "local read failed");
		break;
	default:
		ctl_error(a, req, -rc, strerror(-rc));
		break;
	}
}

static struct rf_agent_vol *vol_by_report(struct rf_agent *a, uint64_t req)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->reported && a->vols[i]->report_req == req)
			return a->vols[i];
	return NULL;
}

/* One frame from the hub: decoded once by its row in the message table
 * (a type the agent does not handle goes to the default branch). */
static void on_frame(struct rf_agent *a, const struct rf_ctl_hdr *h, const uint8_t *p)
{
	const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc(h->type);
	struct rfa_conn *c = &a->c;
	struct rf_agent_vol *v;
	union rf_ctl_msg msg;
	const char *why = "";
	int bad = 0;

	if (d && (d->dir & RF_CTL_TO_PEER) && d->decode)
		bad = rf_ctl_decode(d, p, h->len, &msg, &why);
	switch (h->type) {
	case RF_CTL_HEARTBEAT:
		if (h->req_id && h->req_id == c->hb_req)
			c->hb_req = 0; /* our heartbeat, answered */
		else
			rfa_ctl_send(a, RF_CTL_HEARTBEAT, h->req_id, NULL, 0);
		return;
	case RF_CTL_VOLUME_OK: {
		const struct rf_ctl_volume_ok m = msg.volume_ok;
		char pace[64] = "unpaced";

		v = vol_by_report(a, h->req_id);
		if (!v || bad || m.vol_id != v->vol_id) {
			RF_WARN("agent", "ignoring a bad VOLUME_OK: %s",
			        v ? why : "unknown request");
			return;
		}
		v->report_req = 0;
		c->reports_due--;
		pthread_mutex_lock(&a->lock);
		v->ok = true;
		v->attached = rfa_link_data_up(a->link);
		v->state = m.state;
		pthread_mutex_unlock(&a->lock);
		if (m.state == RF_VOL_PROTECTED || m.state == RF_VOL_RESYNCING)
			v->trusted = true; /* the hub has a full copy */
		rfa_resend_set_rate(v, m.resync_rate);
		if (m.resync_rate)
			snprintf(pace, sizeof(pace), "at most %" PRIu64 " bytes/s", m.resync_rate);
		RF_INFO("agent", "volume %s accepted by the hub: %s, sync %s, resends %s", v->name,
		        rf_vol_state_name(m.state),
		        m.sync == RF_SYNC_FULL    ? "full"
		        : m.sync == RF_SYNC_DIRTY ? "dirty regions"
		                                  : "none",
		        pace);
		return;
	}
	case RF_CTL_ERROR: {
		const struct rf_ctl_error *e = &msg.error;

		if (bad) {
			RF_WARN("agent", "bad ERROR from the hub: %s", why);
			return;
		}
		v = h->req_id ? vol_by_report(a, h->req_id) : NULL;
		if (v) {
			v->report_req = 0;
			v->refused = true;
			c->reports_due--;
			RF_ERR(
			    "agent",
			    "hub refused volume %s: %s (%s); its writes are tracked in the bitmap "
			    "only (retried on the next connection or when the hub asks again)",
			    v->name, e->reason, strerror(e->code));
		} else if (h->req_id && h->req_id == c->hb_req) {
			c->hb_req = 0;
		} else {
			RF_WARN("agent", "hub error (request %" PRIu64 "): %s (%s)", h->req_id,
			        e->reason, strerror(e->code));
		}
		return;
	}
	case RF_CTL_SYNC_READ:
		if (bad)
			ctl_error(a, h->req_id, EBADMSG, why);
		else
			on_sync_read(a, h->req_id, &msg.sync_read);
		return;
	case RF_CTL_REPORT_AGAIN: {
		/* The hub's configuration changed: volumes it refused may now be
		 * accepted. Those already accepted are not reported twice. */
		unsigned n = atomic_load(&a->nvols);

		for (unsigned i = 0; i < n; i++)
			if (a->vols[i]->refused) {
				a->vols[i]->refused = false;
				a->vols[i]->reported = false;
			}
		RF_INFO("agent", "the hub asks for the refused volumes again");
		rfa_ctl_report_volumes(a);
		return;
	}
	case RF_CTL_VOLUME_STATE: {
		const struct rf_ctl_volume_state m = msg.volume_state;
		uint8_t old;

		if (bad) {
			RF_WARN("agent", "bad VOLUME_STATE from the hub: %s", why);
			return;
		}
		v = rfa_vol_by_id(a, m.vol_id);
		if (!v)
			return;
		pthread_mutex_lock(&a->lock);
		old = v->state;
		v->state = m.state;
		v->synced_bytes = m.synced_bytes;
		pthread_mutex_unlock(&a->lock);
		if (m.state == RF_VOL_PROTECTED || m.state == RF_VOL_RESYNCING)
			v->trusted = true; /* the hub has a full copy: the bitmap now counts */
		if (old != m.state)
			RF_INFO("agent", "volume %s: %s", v->name, rf_vol_state_name(m.state));
		return;
	}
	default:
		if (h->req_id) {
			char r[64];

			snprintf(r, sizeof(r), "unexpected message type %u", h->type);
			ctl_error(a, h->req_id, EOPNOTSUPP, r);
		} else {
			RF_DEBUG("agent", "ignoring notification type %u", h->type);
		}
		return;
	}
}

void rfa_ctl_readable(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;

	for (;;) {
		size_t budget = SIZE_MAX, before = budget;
		const char *why = "";
		char r[128];
		int rc = rf_ctl_stream_recv(&c->st, RF_CTL_MAX_PAYLOAD, &budget, &why);

		if (budget != before)
			c->last_rx_ms = rf_now_ms();
		switch (rc) {
		case 1:
			on_frame(a, &c->st.h, c->st.pl);
			if (!rfa_link_ctl_up(a->link))
				return; /* disconnected while handling it */
			rf_ctl_stream_next(&c->st);
			continue;
		case 0:
			return;
		case -EPROTO:
			RF_ERR("agent", "bad frame from the hub: %s", why);
			ctl_error(a, 0, EPROTO, why);
			snprintf(r, sizeof(r), "protocol error: %s", why);
			rfa_disconnect(a, r);
			return;
		case -ECONNRESET:
			rfa_disconnect(a, "the hub closed the control connection");
			return;
		default:
			rfa_disconnect(a, strerror(-rc));
			return;
		}
	}
}

/* ---- close and deadlines ---------------------------------------------------------------- */

void rfa_ctl_close(struct rf_agent *a)
{
	struct rfa_conn *c = &a->c;
	unsigned n = atomic_load(&a->nvols);

	if (c->ctl_fd >= 0) {
		rfa_ep_del(a, c->ctl_fd);
		close(c->ctl_fd);
		c->ctl_fd = -1;
	}
	rf_ctl_stream_reset(&c->st, -1);
	c->want_out = false;
	c->reports_due = 0;
	for (unsigned i = 0; i < n; i++)
		a->vols[i]->reported = a->vols[i]->refused = false;
}

int64_t rfa_ctl_timers(struct rf_agent *a, int64_t now)
{
	struct rfa_conn *c = &a->c;
	int64_t next = INT64_MAX;

	if (now - c->last_rx_ms > 3 * (int64_t)a->opts.heartbeat_ms) {
		rfa_disconnect(a, "the hub stopped answering");
		return now;
	}
	if (c->reports_due && now > c->reports_deadline_ms) {
		rfa_disconnect(a, "the hub did not answer VOLUME_REPORT");
		return now;
	}
	if (c->reports_due)
		next = c->reports_deadline_ms + 1;
	if (now >= c->next_hb_ms) {
		c->hb_req = ++c->next_req;
		rfa_ctl_send(a, RF_CTL_HEARTBEAT, c->hb_req, NULL, 0);
		c->next_hb_ms = now + a->opts.heartbeat_ms;
	}
	if (!rfa_link_ctl_up(a->link))
		return now;
	if (c->next_hb_ms < next)
		next = c->next_hb_ms;
	if (c->last_rx_ms + 3 * (int64_t)a->opts.heartbeat_ms + 1 < next)
		next = c->last_rx_ms + 3 * (int64_t)a->opts.heartbeat_ms + 1;
	return next;
}

/* SPDX-License-Identifier: MIT */
/*
 * Control connections: nonblocking sockets driven by the hub loop, each a
 * framed stream (common/ctl_stream.c: the 24-byte header checked before
 * anything else is read, then exactly its payload; an output buffer flushed
 * as the socket allows), and the one dispatch path for what they receive:
 * ctl_dispatch() looks the type up in the message table once, checks
 * direction and role, decodes, calls the handler, and sends the ERROR of
 * every refusal (handlers return 0 or -errno and a reason).
 *
 * A header that fails its checks cannot be resynchronised: ERROR (EPROTO,
 * or EPROTONOSUPPORT for another protocol version) is queued and the
 * connection closed once it is flushed. Anything wrong inside a well-framed
 * message gets an ERROR and the connection stays.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hub.h"
#include "repfabric/log.h"

#define SUBSYS           "ctl"
#define CTL_ACCEPT_BURST 16         /* connections accepted per loop turn */
#define READ_BUDGET      (4u << 20) /* bytes read from one connection per turn */

/* rf_admit pauses and resumes the control listener through this. */
static int ctl_watch(void *ctx, bool on)
{
	struct hub *h = ctx;

	return hub_ep_mod(h, h->lfd, on ? EPOLLIN : 0, &h->listen_src);
}

int ctl_listen(struct hub *h)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
	                *ai = NULL, *it;
	char host[256], port[16];
	const char *addr = h->cfg->control, *colon, *hs = addr, *he;
	int one = 1, rc = -EINVAL;

	if (addr[0] == '[') {
		he = strchr(addr, ']');
		colon = he ? he + 1 : NULL;
		hs = addr + 1;
	} else {
		colon = strrchr(addr, ':');
		he = colon;
	}
	if (!colon || *colon != ':' || (size_t)(he - hs) >= sizeof(host) ||
	    strlen(colon + 1) >= sizeof(port)) {
		RF_ERR(SUBSYS, "control address '%s' is not HOST:PORT", addr);
		return -EINVAL;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	strcpy(port, colon + 1);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		RF_ERR(SUBSYS, "control address '%s': %s", addr, gai_strerror(rc));
		return -EINVAL;
	}
	rc = -EADDRNOTAVAIL;
	for (it = ai; it; it = it->ai_next) {
		int fd = socket(it->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, it->ai_addr, it->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			rc = -errno;
			close(fd);
			continue;
		}
		h->lfd = fd;
		rc = 0;
		break;
	}
	freeaddrinfo(ai);
	if (rc) {
		RF_ERR(SUBSYS, "cannot listen on control address %s: %s", addr, strerror(-rc));
		return rc;
	}
	h->listen_src = (struct ev_src){.kind = EV_LISTEN, .ptr = h};
	rc = hub_ep_add(h, h->lfd, EPOLLIN, &h->listen_src);
	if (rc) {
		close(h->lfd);
		h->lfd = -1;
		return rc;
	}
	rf_admit_init(&h->ctl_admit, "control listener", h->lfd, ctl_watch, h);
	return 0;
}

static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
			port = ntohs(s4->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
			port = ntohs(s6->sin6_port);
		}
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

/* Make room for a new connection when every control slot is taken: the
 * oldest unproven one goes. False when all are proven (refuse the new one). */
static bool make_room(struct hub *h)
{
	struct rf_pending *victim = rf_admit_evict_oldest(&h->ctl_admit);

	if (!victim)
		return false;
	ctl_close(container_of(victim, struct ctl_conn, pend),
	          "dropped for a newer connection (every control slot is taken)");
	return true;
}

void ctl_accept(struct hub *h)
{
	int64_t now = rf_now_ms();

	/* A bounded burst: the connections already open are read between two. */
	for (int i = 0; i < CTL_ACCEPT_BURST; i++) {
		int fd = rf_admit_accept(&h->ctl_admit, now), one = 1;
		struct rf_pending *victim;
		struct ctl_conn *c;

		if (fd < 0)
			return;
		if (h->stopping || (h->nconns >= h->fds.max_conns && !make_room(h))) {
			RF_DEBUG(SUBSYS, "refusing a control connection: %s",
			         h->stopping ? "stopping" : "every slot is held by a proven peer");
			if (!h->stopping)
				rf_admit_refused_full(&h->ctl_admit);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			RF_ERR(SUBSYS, "out of memory for a control connection");
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->src = (struct ev_src){.kind = EV_CONN, .ptr = c};
		c->hub = h;
		rf_ctl_stream_init(&c->st, fd, HUB_OUT_MAX);
		c->accepted_at = c->last_rx = c->last_hb_sent = now;
		peer_name(fd, c->peer, sizeof(c->peer));
		if (hub_ep_add(h, fd, EPOLLIN, &c->src)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = h->conns;
		h->conns = c;
		h->nconns++;
		h->conns_accepted++;
		RF_DEBUG(SUBSYS, "control connection from %s", c->peer);
		victim = rf_admit_pending_add(&h->ctl_admit, &c->pend, now);
		if (victim)
			ctl_close(container_of(victim, struct ctl_conn, pend),
			          "dropped for a newer connection (too many unproven)");
	}
}

/* @c proved itself: authenticated (psk_file) or, without keys, sent a
 * well-formed frame. From now on only the idle timeout applies. */
void ctl_proven(struct ctl_conn *c)
{
	rf_admit_pending_del(&c->hub->ctl_admit, &c->pend);
}

/* Who is at the other end, for messages. */
static const char *who(const struct ctl_conn *c, char *buf, size_t len)
{
	if (c->agent)
		snprintf(buf, len, "agent %s (%s)", c->agent->id, c->peer);
	else
		snprintf(buf, len, "%s", c->peer);
	return buf;
}

void ctl_close(struct ctl_conn *c, const char *why)
{
	char w[160];

	if (c->dead)
		return;
	if (c->agent)
		RF_INFO(SUBSYS, "%s: control connection closed: %s", who(c, w, sizeof(w)), why);
	else
		RF_DEBUG(SUBSYS, "%s: control connection closed: %s", c->peer, why);
	hub_ep_del(c->hub, c->st.fd);
	close(c->st.fd);
	c->st.fd = -1;
	c->dead = true;
	rf_admit_pending_del(&c->hub->ctl_admit, &c->pend);
	c->hub->nconns--;
	/* The agent's session ends in ctl_reap(), at the end of this loop turn:
	 * never in the middle of whatever was sending when the socket failed. */
}

static void update_events(struct ctl_conn *c)
{
	uint32_t ev = c->closing ? 0 : EPOLLIN;

	if (rf_ctl_stream_pending(&c->st))
		ev |= EPOLLOUT;
	hub_ep_mod(c->hub, c->st.fd, ev, &c->src);
	c->want_out = (ev & EPOLLOUT) != 0;
}

static void flush_out(struct ctl_conn *c)
{
	int rc;

	if (c->dead)
		return;
	rc = rf_ctl_stream_flush(&c->st);
	if (rc) {
		ctl_close(c, strerror(-rc));
		return;
	}
	if (!rf_ctl_stream_pending(&c->st) && c->closing) {
		ctl_close(c, "closed after an error");
		return;
	}
	if (c->want_out != (rf_ctl_stream_pending(&c->st) > 0) || c->closing)
		update_events(c);
}

int ctl_send(struct ctl_conn *c, uint16_t type, uint64_t req_id, const void *payload, uint32_t len)
{
	int rc;

	if (c->dead)
		return -ENOTCONN;
	rc = rf_ctl_stream_queue(&c->st, type, req_id, payload, len);
	if (rc == -ENOBUFS)
		ctl_close(c, "the peer does not read what the hub sends");
	else if (rc == -ENOMEM)
		ctl_close(c, "out of memory");
	if (rc)
		return rc;
	flush_out(c);
	return c->dead ? -ENOTCONN : 0;
}

void ctl_send_error(struct ctl_conn *c, uint64_t req_id, int code, const char *fmt, ...)
{
	struct rf_ctl_error e = {.code = code};
	uint8_t buf[RF_CTL_MAX_TEXT + 8];
	char w[160];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(e.reason, sizeof(e.reason), fmt, ap);
	va_end(ap);
	RF_WARN(SUBSYS, "%s: ERROR %s: %s", who(c, w, sizeof(w)), strerror(code), e.reason);
	c->hub->refusals++;
	n = rf_ctl_enc_error(buf, sizeof(buf), &e);
	if (n > 0)
		ctl_send(c, RF_CTL_ERROR, req_id, buf, (uint32_t)n);
}

void ctl_close_after_flush(struct ctl_conn *c)
{
	if (c->dead || c->closing)
		return;
	c->closing = true;
	c->close_by = rf_now_ms() + HUB_CLOSE_GRACE_MS;
	if (!rf_ctl_stream_pending(&c->st))
		ctl_close(c, "closed after an error");
	else
		update_events(c);
}

int ctl_fail(struct ctl_reply *r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	return -code;
}

static int on_heartbeat(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	/* Our own requests carry bit 63: that is an answer, never answer it. */
	if (rq->req_id & HUB_REQ_HUB_BIT) {
		if (rq->req_id == c->hb_req) {
			c->hb_req = 0;
			c->hb_pending_since = 0;
		}
		return 0;
	}
	ctl_send(c, RF_CTL_HEARTBEAT, rq->req_id, NULL, 0);
	return 0;
}

static int on_error(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	const struct rf_ctl_error *e = &rq->m->error;
	char w[160];

	if (sync_on_error(c, rq->req_id, e))
		return 0;
	RF_WARN(SUBSYS, "%s: ERROR %d (%s) for request %#llx: %s", who(c, w, sizeof(w)), e->code,
	        strerror(e->code), (unsigned long long)rq->req_id, e->reason);
	return 0;
}

/* An ERROR that does not decode is logged, never answered. */
static int error_malformed(struct ctl_conn *c, const char *why, struct ctl_reply *r)
{
	char w[160];

	RF_WARN(SUBSYS, "%s: malformed ERROR (%s)", who(c, w, sizeof(w)), why);
	return 0;
}

/*
 * What the hub does with each message it accepts. Name, direction, role
 * and decoder are the message table's (common/ctl_msgs.c); a type sent to
 * the hub has a row here.
 */
struct ctl_handler {
	ctl_handler_fn *handle;
	ctl_handler_fn *check; /* the state the message needs, before decoding; or NULL */
	/* A payload that does not decode; NULL: EBADMSG "malformed WHAT: why". */
	int (*malformed)(struct ctl_conn *c, const char *why, struct ctl_reply *r);
	const char *what; /* WHAT above, when not the type's name */
	bool needs_hello; /* without a HELLO first: EPERM "NAME before HELLO" */
};

static const struct ctl_handler handlers[RF_CTL_TYPE_LIMIT] = {
    [RF_CTL_ERROR] = {.handle = on_error, .malformed = error_malformed},
    [RF_CTL_HELLO] = {.handle = session_hello, .check = session_hello_check},
    [RF_CTL_VOLUME_REPORT] = {.handle = volume_report, .needs_hello = true},
    [RF_CTL_SYNC_POSTED] = {.handle = sync_on_posted, .needs_hello = true},
    [RF_CTL_HEARTBEAT] = {.handle = on_heartbeat},
    [RF_CTL_STATUS] = {.handle = status_request},
    [RF_CTL_PROGRESS] = {.handle = session_progress, .needs_hello = true},
    [RF_CTL_IO_OPEN] = {.handle = testview_io},
    [RF_CTL_IO_READ] = {.handle = testview_io, .what = "IO request"},
    [RF_CTL_IO_WRITE] = {.handle = testview_io, .what = "IO request"},
    [RF_CTL_IO_FLUSH] = {.handle = testview_io, .what = "IO request"},
    [RF_CTL_POINTS] = {.handle = pit_points},
    [RF_CTL_ADMIN] = {.handle = pit_admin},
    [RF_CTL_AUTH_START] = {.handle = auth_start,
                           .check = auth_start_check,
                           .malformed = auth_malformed},
    [RF_CTL_AUTH_PROOF] = {.handle = auth_proof,
                           .check = auth_proof_check,
                           .malformed = auth_malformed},
};

/* The one place a refusal becomes an ERROR frame (counted in refusals). */
static void reply_error(struct ctl_conn *c, uint16_t type, uint64_t req_id, int rc,
                        const struct ctl_reply *r)
{
	/* Never answer an ERROR with an ERROR. */
	if (type != RF_CTL_ERROR)
		ctl_send_error(c, req_id, -rc, "%s", r->why[0] ? r->why : strerror(-rc));
	if (r->close)
		ctl_close_after_flush(c);
}

/* Past direction and role: the handler's checks, the decoder, the handler. */
static int handle(struct ctl_conn *c, const struct ctl_handler *hd, struct ctl_request *rq,
                  const uint8_t *p, struct ctl_reply *r)
{
	union rf_ctl_msg m;
	const char *why = "?";
	int rc;

	if (hd->needs_hello && !c->agent)
		return ctl_fail(r, EPERM, "%s before HELLO", rq->desc->name);
	if (hd->check) {
		rc = hd->check(c, rq, r);
		if (rc)
			return rc;
	}
	if (!rq->desc->decode && rq->len)
		return ctl_fail(r, EBADMSG, "%s carries no payload (got %u bytes)", rq->desc->name,
		                rq->len);
	if (rf_ctl_decode(rq->desc, p, rq->len, &m, &why)) {
		if (hd->malformed)
			return hd->malformed(c, why, r);
		return ctl_fail(r, EBADMSG, "malformed %s: %s",
		                hd->what ? hd->what : rq->desc->name, why);
	}
	rq->m = &m;
	return hd->handle(c, rq, r);
}

void ctl_dispatch(struct ctl_conn *c, const struct rf_ctl_hdr *h, const uint8_t *p)
{
	const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc(h->type);
	const struct ctl_handler *hd = d && (d->dir & RF_CTL_TO_HUB) ? &handlers[h->type] : NULL;
	struct ctl_request rq = {.type = h->type, .req_id = h->req_id, .len = h->len, .desc = d};
	struct ctl_reply r = {0};
	int rc;

	c->frames_in++;
	rc = auth_allows(c, h->type, d, &r);
	if (rc) {
		reply_error(c, h->type, h->req_id, rc, &r);
		return;
	}
	/* Without keys a well-formed frame proves a peer; with keys only
	 * AUTH_OK does, and a frame the hub accepted so far engages it. */
	if (!c->hub->auth_on)
		ctl_proven(c);
	else
		rf_admit_engaged(&c->hub->ctl_admit, &c->pend);
	if (d && !hd)
		rc = ctl_fail(&r, EOPNOTSUPP, "message type %u (%s) is sent by the hub, not to it",
		              h->type, d->name);
	else if (!hd || !hd->handle)
		rc = ctl_fail(&r, EOPNOTSUPP, "unknown message type %u", h->type);
	if (rc) {
		reply_error(c, h->type, h->req_id, rc, &r);
		return;
	}
	rc = handle(c, hd, &rq, p, &r);
	/* An ERROR about a notification carries no request id. */
	if (rc)
		reply_error(c, h->type, d->notify ? 0 : h->req_id, rc, &r);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A header that fails its checks: say why, and close once that is sent. */
static void bad_header(struct ctl_conn *c, const char *why)
{
	const uint8_t *hdr = c->st.hdr;
	uint64_t req = 0;

	c->hub->protocol_errors++;
	if (le32(hdr) == RF_CTL_MAGIC && (hdr[4] | hdr[5] << 8) != RF_CTL_VERSION) {
		req = c->st.h.req_id;
		ctl_send_error(c, req, EPROTONOSUPPORT,
		               "protocol version %u is not supported (hub speaks %u)",
		               hdr[4] | hdr[5] << 8, RF_CTL_VERSION);
	} else {
		if (le32(hdr) == RF_CTL_MAGIC)
			req = c->st.h.req_id;
		ctl_send_error(c, req, EPROTO, "malformed frame header: %s", why);
	}
	ctl_close_after_flush(c);
}

static void read_input(struct ctl_conn *c)
{
	size_t budget = READ_BUDGET;

	while (!c->dead && !c->closing && budget > 0) {
		const char *why = "bad header";
		size_t before = budget;
		int rc = rf_ctl_stream_recv(&c->st, auth_frame_max(c), &budget, &why);

		if (budget != before)
			c->last_rx = rf_now_ms();
		switch (rc) {
		case 1:
			ctl_dispatch(c, &c->st.h, c->st.pl);
			rf_ctl_stream_next(&c->st);
			continue;
		case 0:
			return;
		case -EPROTO:
			bad_header(c, why);
			return;
		case -EMSGSIZE:
			auth_frame_too_big(c);
			return;
		case -ECONNRESET:
			ctl_close(c, rf_ctl_stream_mid_frame(&c->st)
			                 ? "peer closed in the middle of a frame"
			                 : "closed by the peer");
			return;
		case -ENOMEM:
			ctl_close(c, "out of memory for a payload");
			return;
		default:
			ctl_close(c, strerror(-rc));
			return;
		}
	}
}

void ctl_conn_event(struct ctl_conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (events & EPOLLOUT)
		flush_out(c);
	if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		if (c->closing) {
			/* Not reading any more; a hang-up ends it. */
			if (events & (EPOLLHUP | EPOLLERR))
				ctl_close(c, "hang-up while closing");
		} else {
			read_input(c);
		}
	}
}

void ctl_tick(struct hub *h, int64_t now)
{
	struct rf_pending *late;

	rf_admit_tick(&h->ctl_admit, now);
	while ((late = rf_admit_expired(&h->ctl_admit, now)))
		auth_handshake_expired(container_of(late, struct ctl_conn, pend));
	for (struct ctl_conn *c = h->conns; c; c = c->next) {
		if (c->dead)
			continue;
		if (c->closing) {
			if (now >= c->close_by)
				ctl_close(c, "the error could not be delivered in time");
			continue;
		}
		if (now - c->last_rx > HUB_IDLE_MS) {
			ctl_close(c, "silent for more than 30 s");
			continue;
		}
		/* Bytes that never make a frame, or frames that never answer a
		 * HEARTBEAT, do not keep a session alive either. */
		if (c->hb_req && now - c->hb_pending_since > HUB_IDLE_MS) {
			ctl_close(c, "heartbeats unanswered for more than 30 s");
			continue;
		}
		/* Answers carry bit 63 and are never answered back (on_heartbeat). */
		if (c->agent && now - c->last_hb_sent >= HUB_HEARTBEAT_MS) {
			if (!c->hb_req)
				c->hb_pending_since = now;
			c->hb_req = hub_new_req_id(h);
			c->last_hb_sent = now;
			ctl_send(c, RF_CTL_HEARTBEAT, c->hb_req, NULL, 0);
		}
	}
}

void ctl_reap(struct hub *h)
{
	struct ctl_conn **pp = &h->conns;

	while (*pp) {
		struct ctl_conn *c = *pp;

		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		session_conn_closed(c);
		*pp = c->next;
		rf_ctl_stream_fini(&c->st);
		free(c);
	}
}

void ctl_close_all(struct hub *h)
{
	for (struct ctl_conn *c = h->conns; c; c = c->next) {
		if (c->dead)
			continue;
		flush_out(c);
		if (!c->dead)
			ctl_close(c, "the hub is stopping");
	}
}

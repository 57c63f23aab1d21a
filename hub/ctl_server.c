/* SPDX-License-Identifier: MIT */
/*
 * Control connections: nonblocking sockets driven by the hub loop. Each has
 * a two-phase receive state machine (the 24-byte header, checked with
 * rf_ctl_hdr_decode before anything else is read, then exactly its payload)
 * and an output buffer flushed as the socket allows.
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
#define PAYLOAD_KEEP     (64u << 10)

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
	int64_t now = hub_now_ms();

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
		c->fd = fd;
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
	hub_ep_del(c->hub, c->fd);
	close(c->fd);
	c->fd = -1;
	c->dead = true;
	rf_admit_pending_del(&c->hub->ctl_admit, &c->pend);
	c->hub->nconns--;
	/* The agent's session ends in ctl_reap(), at the end of this loop turn:
	 * never in the middle of whatever was sending when the socket failed. */
}

static void update_events(struct ctl_conn *c)
{
	uint32_t ev = c->closing ? 0 : EPOLLIN;

	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	hub_ep_mod(c->hub, c->fd, ev, &c->src);
	c->want_out = (ev & EPOLLOUT) != 0;
}

static void flush_out(struct ctl_conn *c)
{
	while (!c->dead && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			ctl_close(c, strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->dead)
		return;
	if (c->out_off == c->out_len) {
		c->out_off = c->out_len = 0;
		if (c->out_cap > PAYLOAD_KEEP) {
			free(c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
		if (c->closing) {
			ctl_close(c, "closed after an error");
			return;
		}
	}
	if (c->want_out != (c->out_len > c->out_off) || c->closing)
		update_events(c);
}

int ctl_send(struct ctl_conn *c, uint16_t type, uint64_t req_id, const void *payload, uint32_t len)
{
	size_t need = RF_CTL_HDR_LEN + (size_t)len;

	if (c->dead)
		return -ENOTCONN;
	if (len > RF_CTL_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (c->out_len - c->out_off + need > HUB_OUT_MAX) {
		ctl_close(c, "the peer does not read what the hub sends");
		return -ENOBUFS;
	}
	if (c->out_off && c->out_len + need > c->out_cap) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	if (c->out_len + need > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		uint8_t *n;

		while (cap < c->out_len + need)
			cap *= 2;
		n = realloc(c->out, cap);
		if (!n) {
			ctl_close(c, "out of memory");
			return -ENOMEM;
		}
		c->out = n;
		c->out_cap = cap;
	}
	rf_ctl_hdr_encode(c->out + c->out_len, type, req_id, len);
	if (len)
		memcpy(c->out + c->out_len + RF_CTL_HDR_LEN, payload, len);
	c->out_len += need;
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
	c->close_by = hub_now_ms() + HUB_CLOSE_GRACE_MS;
	if (c->out_off == c->out_len)
		ctl_close(c, "closed after an error");
	else
		update_events(c);
}

static void on_heartbeat(struct ctl_conn *c, uint64_t req_id, uint32_t len)
{
	if (len) {
		ctl_send_error(c, req_id, EBADMSG, "HEARTBEAT carries no payload (got %u bytes)",
		               len);
		return;
	}
	/* Our own requests carry bit 63: that is an answer, never answer it. */
	if (req_id & HUB_REQ_HUB_BIT) {
		if (req_id == c->hb_req) {
			c->hb_req = 0;
			c->hb_pending_since = 0;
		}
		return;
	}
	ctl_send(c, RF_CTL_HEARTBEAT, req_id, NULL, 0);
}

static void on_error(struct ctl_conn *c, uint64_t req_id, const uint8_t *p, uint32_t len)
{
	struct rf_ctl_error e;
	const char *why = NULL;
	char w[160];

	if (rf_ctl_dec_error(p, len, &e, &why)) {
		RF_WARN(SUBSYS, "%s: malformed ERROR (%s)", who(c, w, sizeof(w)), why);
		return;
	}
	if (sync_on_error(c, req_id, &e))
		return;
	/* Never answer an ERROR with an ERROR. */
	RF_WARN(SUBSYS, "%s: ERROR %d (%s) for request %#llx: %s", who(c, w, sizeof(w)), e.code,
	        strerror(e.code), (unsigned long long)req_id, e.reason);
}

static const char *type_name(uint16_t t)
{
	static const char *const names[] = {
	    [RF_CTL_ERROR] = "ERROR",
	    [RF_CTL_HELLO] = "HELLO",
	    [RF_CTL_HELLO_OK] = "HELLO_OK",
	    [RF_CTL_VOLUME_REPORT] = "VOLUME_REPORT",
	    [RF_CTL_VOLUME_OK] = "VOLUME_OK",
	    [RF_CTL_SYNC_READ] = "SYNC_READ",
	    [RF_CTL_SYNC_POSTED] = "SYNC_POSTED",
	    [RF_CTL_HEARTBEAT] = "HEARTBEAT",
	    [RF_CTL_STATUS] = "STATUS",
	    [RF_CTL_STATUS_OK] = "STATUS_OK",
	    [RF_CTL_VOLUME_STATE] = "VOLUME_STATE",
	    [RF_CTL_PROGRESS] = "PROGRESS",
	    [RF_CTL_REPORT_AGAIN] = "REPORT_AGAIN",
	    [RF_CTL_IO_OPEN] = "IO_OPEN",
	    [RF_CTL_IO_OPEN_OK] = "IO_OPEN_OK",
	    [RF_CTL_IO_READ] = "IO_READ",
	    [RF_CTL_IO_DATA] = "IO_DATA",
	    [RF_CTL_IO_WRITE] = "IO_WRITE",
	    [RF_CTL_IO_FLUSH] = "IO_FLUSH",
	    [RF_CTL_IO_DONE] = "IO_DONE",
	    [RF_CTL_POINTS] = "POINTS",
	    [RF_CTL_POINTS_OK] = "POINTS_OK",
	    [RF_CTL_ADMIN] = "ADMIN",
	    [RF_CTL_ADMIN_OK] = "ADMIN_OK",
	    [RF_CTL_AUTH_START] = "AUTH_START",
	    [RF_CTL_AUTH_CHALLENGE] = "AUTH_CHALLENGE",
	    [RF_CTL_AUTH_PROOF] = "AUTH_PROOF",
	    [RF_CTL_AUTH_OK] = "AUTH_OK",
	};

	return t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "?";
}

/* A complete frame: header in c->h, payload in c->pl. */
static void dispatch(struct ctl_conn *c)
{
	uint64_t req = c->h.req_id;
	uint32_t len = c->h.len;
	const uint8_t *p = c->pl;

	c->frames_in++;
	if (!auth_allows(c, c->h.type, req))
		return;
	/* Without keys a well-formed frame proves a peer; with keys only
	 * AUTH_OK does, and a frame the hub accepted so far engages it. */
	if (!c->hub->auth_on)
		ctl_proven(c);
	else
		rf_admit_engaged(&c->hub->ctl_admit, &c->pend);
	switch (c->h.type) {
	case RF_CTL_AUTH_START:
		auth_start(c, req, p, len);
		break;
	case RF_CTL_AUTH_PROOF:
		auth_proof(c, req, p, len);
		break;
	case RF_CTL_HELLO:
		session_hello(c, req, p, len);
		break;
	case RF_CTL_VOLUME_REPORT:
		volume_report(c, req, p, len);
		break;
	case RF_CTL_SYNC_POSTED:
		sync_on_posted(c, req, p, len);
		break;
	case RF_CTL_HEARTBEAT:
		on_heartbeat(c, req, len);
		break;
	case RF_CTL_STATUS:
		if (len)
			ctl_send_error(c, req, EBADMSG, "STATUS carries no payload (got %u bytes)",
			               len);
		else
			status_request(c, req);
		break;
	case RF_CTL_PROGRESS:
		session_progress(c, p, len);
		break;
	case RF_CTL_ERROR:
		on_error(c, req, p, len);
		break;
	case RF_CTL_POINTS:
		pit_points(c, req, p, len);
		break;
	case RF_CTL_ADMIN:
		pit_admin(c, req, p, len);
		break;
	case RF_CTL_IO_OPEN:
	case RF_CTL_IO_READ:
	case RF_CTL_IO_WRITE:
	case RF_CTL_IO_FLUSH:
		testview_io(c, c->h.type, req, p, len);
		break;
	case RF_CTL_HELLO_OK:
	case RF_CTL_VOLUME_OK:
	case RF_CTL_SYNC_READ:
	case RF_CTL_STATUS_OK:
	case RF_CTL_VOLUME_STATE:
	case RF_CTL_IO_OPEN_OK:
	case RF_CTL_IO_DATA:
	case RF_CTL_IO_DONE:
	case RF_CTL_POINTS_OK:
	case RF_CTL_ADMIN_OK:
	case RF_CTL_AUTH_CHALLENGE:
	case RF_CTL_AUTH_OK:
	case RF_CTL_REPORT_AGAIN:
		ctl_send_error(c, req, EOPNOTSUPP,
		               "message type %u (%s) is sent by the hub, not to it", c->h.type,
		               type_name(c->h.type));
		break;
	default:
		ctl_send_error(c, req, EOPNOTSUPP, "unknown message type %u", c->h.type);
		break;
	}
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The header is complete: check it before reading anything more. */
static int header_done(struct ctl_conn *c)
{
	const char *why = "bad header";
	uint64_t req = 0;
	int code;

	if (rf_ctl_hdr_decode(c->hdr, &c->h, &why) == 0) {
		if (!auth_frame_ok(c))
			return -EPROTO;
		return 0;
	}
	c->hub->protocol_errors++;
	if (le32(c->hdr) == RF_CTL_MAGIC && (c->hdr[4] | c->hdr[5] << 8) != RF_CTL_VERSION) {
		code = EPROTONOSUPPORT;
		req = c->h.req_id;
		ctl_send_error(c, req, code, "protocol version %u is not supported (hub speaks %u)",
		               c->hdr[4] | c->hdr[5] << 8, RF_CTL_VERSION);
	} else {
		code = EPROTO;
		if (le32(c->hdr) == RF_CTL_MAGIC)
			req = c->h.req_id;
		ctl_send_error(c, req, code, "malformed frame header: %s", why);
	}
	ctl_close_after_flush(c);
	return -EPROTO;
}

static void read_input(struct ctl_conn *c)
{
	size_t budget = READ_BUDGET;

	while (!c->dead && !c->closing && budget > 0) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		if (!c->rx_payload) {
			dst = c->hdr + c->got;
			want = RF_CTL_HDR_LEN - c->got;
		} else {
			dst = c->pl + c->got;
			want = c->h.len - c->got;
		}
		n = read(c->fd, dst, want < budget ? want : budget);
		if (n == 0) {
			ctl_close(c, c->got || c->rx_payload
			                 ? "peer closed in the middle of a frame"
			                 : "closed by the peer");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				ctl_close(c, strerror(errno));
			return;
		}
		c->last_rx = hub_now_ms();
		budget -= (size_t)n;
		c->got += (size_t)n;
		if ((size_t)n < want)
			continue;
		if (!c->rx_payload) {
			if (header_done(c))
				return;
			c->got = 0;
			if (c->h.len > 0) {
				if (c->h.len > c->plcap) {
					uint8_t *np = realloc(c->pl, c->h.len);

					if (!np) {
						ctl_close(c, "out of memory for a payload");
						return;
					}
					c->pl = np;
					c->plcap = c->h.len;
				}
				c->rx_payload = true;
				continue;
			}
		}
		c->rx_payload = false;
		c->got = 0;
		dispatch(c);
		if (c->plcap > PAYLOAD_KEEP) {
			free(c->pl);
			c->pl = NULL;
			c->plcap = 0;
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
		free(c->pl);
		free(c->out);
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

/* SPDX-License-Identifier: MIT */
/*
 * The tcp:// and shm:// providers' hub side (struct sw_listener, struct
 * sw_peer): listen, admit producers (common/admit.c), answer HELLO with
 * WELCOME or REFUSE, read WRITE frames into the ring and DOORBELLs as DATA
 * events, publish positions and fence.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "provider.h"
#include "repfabric/le.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"
#include "stream_internal.h"
#include "stream_wire.h"

#define SW_PUBLISH_TIMEOUT_MS 1000       /* a hub -> producer frame */
#define SW_READ_BUDGET        (8u << 20) /* bytes read from one peer per poll round */
#define SW_ACCEPT_BURST       16         /* connections accepted per poll round */

enum sw_peer_state {
	SW_PEER_HELLO,    /* connected, waiting for HELLO */
	SW_PEER_ATTACHED, /* attached to a ring: WRITE and DOORBELL accepted */
	SW_PEER_DEAD,     /* closed; DETACHED queued, freed after it is returned */
};

enum sw_rx_phase {
	SW_RX_HDR,     /* reading the 16-byte frame header */
	SW_RX_PAYLOAD, /* reading a control payload (or a WRITE's sub-header) */
	SW_RX_DATA,    /* reading WRITE data straight into the ring */
};

struct sw_listener;

struct sw_peer {
	struct rf_fab_peer base;
	struct sw_listener *l;
	struct sw_peer *next;
	struct rf_pending pend; /* queued in l->base.admit until its HELLO is accepted */
	int fd;
	enum sw_peer_state state;
	uint64_t token;
	uint64_t last_seq;
	struct rf_fab_ring_mem mem;
	enum sw_rx_phase phase;
	unsigned type, flags; /* of the frame being read */
	uint32_t len, got;
	uint64_t woff;
	uint8_t hdr[RF_SW_HDR_LEN];
	uint8_t payload[RF_SW_MAX_CTRL];
};

struct sw_listener {
	struct rf_fab_listener base;
	bool shm;
	int lfd, epfd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	const struct rf_fab_hub_ops *ops;
	void *ctx;
	struct sw_peer *peers;   /* live and dead-but-unreported peers */
	struct sw_peer *zombies; /* DETACHED returned: free on the next poll */
	struct rf_fab_hub_event *q;
	size_t qhead, qlen, qcap;
};

static struct sw_listener *to_listener(const struct rf_fab_listener *l)
{
	return container_of(l, struct sw_listener, base);
}

static int queue_event(struct sw_listener *l, const struct rf_fab_hub_event *ev)
{
	/* Only a peer's newest doorbell matters: fold a DATA event into the
	 * peer's DATA event at the tail, so the queue stays short however
	 * many doorbells arrive between two polls. */
	if (ev->type == RF_FAB_HEV_DATA && l->qlen) {
		struct rf_fab_hub_event *tail = &l->q[(l->qhead + l->qlen - 1) % l->qcap];

		if (tail->type == RF_FAB_HEV_DATA && tail->peer == ev->peer) {
			tail->seq = ev->seq;
			return 0;
		}
	}
	if (l->qlen == l->qcap) {
		size_t ncap = l->qcap ? l->qcap * 2 : 64;
		struct rf_fab_hub_event *nq = malloc(ncap * sizeof(*nq));

		if (!nq)
			return -ENOMEM;
		for (size_t i = 0; i < l->qlen; i++)
			nq[i] = l->q[(l->qhead + i) % l->qcap];
		free(l->q);
		l->q = nq;
		l->qcap = ncap;
		l->qhead = 0;
	}
	l->q[(l->qhead + l->qlen++) % l->qcap] = *ev;
	return 0;
}

static void peer_unlink(struct sw_listener *l, struct sw_peer *p)
{
	for (struct sw_peer **pp = &l->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

/* Move @p to the zombie list: it is freed at the start of the next poll, so
 * no pointer to it is used after this round. */
static void peer_bury(struct sw_listener *l, struct sw_peer *p)
{
	peer_unlink(l, p);
	p->next = l->zombies;
	l->zombies = p;
}

/* A failure on @p's connection (fabric.h, struct rf_fab_stats: errors). */
static void peer_count_error(struct sw_peer *p)
{
	RF_FAB_COUNT(&p->l->base, &p->base, errors, 1);
}

/* Close @p's socket. An attached peer gets a DETACHED event (and is freed
 * after it was returned); one that never attached is buried at once. */
static void peer_kill(struct sw_peer *p, int err)
{
	struct sw_listener *l = p->l;
	enum sw_peer_state was = p->state;

	if (was == SW_PEER_DEAD)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, p->fd, NULL);
	close(p->fd);
	p->fd = -1;
	p->state = SW_PEER_DEAD;
	rf_admit_pending_del(&l->base.admit, &p->pend);
	if (was == SW_PEER_ATTACHED)
		RF_FAB_COUNT(&l->base, &p->base, detaches, 1);
	if (was == SW_PEER_HELLO ||
	    queue_event(l, &(struct rf_fab_hub_event){.type = RF_FAB_HEV_DETACHED,
	                                              .peer = &p->base,
	                                              .token = p->token,
	                                              .err = err}))
		peer_bury(l, p);
}

static void peer_protocol_error(struct sw_peer *p, const char *why)
{
	RF_ERR("fabric", "producer (token %#llx): %s; disconnecting", (unsigned long long)p->token,
	       why);
	peer_count_error(p);
	peer_kill(p, -EPROTO);
}

static void peer_refuse(struct sw_peer *p, int err, const char *why)
{
	uint8_t buf[4 + 200];
	size_t n = strlen(why) < 200 ? strlen(why) : 200;

	RF_WARN("fabric", "refused producer (token %#llx): %s", (unsigned long long)p->token, why);
	peer_count_error(p);
	rf_put_le32(buf, (uint32_t)-err);
	memcpy(buf + 4, why, n);
	rf_sw_send_frame(p->fd, RF_SW_REFUSE, buf, (uint32_t)(4 + n), SW_PUBLISH_TIMEOUT_MS);
	peer_kill(p, err);
}

static void handle_hello(struct sw_peer *p)
{
	struct sw_listener *l = p->l;
	uint8_t w[RF_SW_WELCOME_FIXED + RF_SW_MAX_PATH];
	size_t path_len = 0;
	int rc;

	p->token = rf_get_le64(p->payload);
	rc = l->ops->attach(l->ctx, p->token, &p->mem);
	if (rc) {
		RF_FAB_COUNT(&l->base, &p->base, refused, 1);
		peer_refuse(p, rc, rc == -ENOENT ? "unknown token" : strerror(-rc));
		return;
	}
	/* From here on the owner hears ATTACHED, then exactly one DETACHED. */
	p->state = SW_PEER_ATTACHED;
	rf_admit_pending_del(&l->base.admit, &p->pend);
	p->last_seq = 0;
	p->base.credit_head = p->mem.info.pos.head_pos;
	RF_FAB_COUNT(&l->base, &p->base, attaches, 1);
	queue_event(l, &(struct rf_fab_hub_event){
	                   .type = RF_FAB_HEV_ATTACHED, .peer = &p->base, .token = p->token});
	if (!p->mem.data || p->mem.data_size == 0 || p->mem.data_size % 256 ||
	    (l->shm && (!p->mem.path || strlen(p->mem.path) > RF_SW_MAX_PATH))) {
		RF_ERR("fabric", "attach callback returned an unusable ring for token %#llx",
		       (unsigned long long)p->token);
		peer_refuse(p, -EIO, "hub-side ring error");
		return;
	}
	rf_put_le64(w, p->mem.info.ring_id);
	rf_put_le64(w + 8, p->mem.data_size);
	rf_sw_position_encode(w + 16, &p->mem.info.pos);
	rf_put_le64(w + 48, l->shm ? p->mem.data_off : 0);
	if (l->shm) {
		path_len = strlen(p->mem.path);
		memcpy(w + RF_SW_WELCOME_FIXED, p->mem.path, path_len);
	}
	rf_put_le16(w + 56, (uint16_t)path_len);
	if (rf_sw_send_frame(p->fd, RF_SW_WELCOME, w, (uint32_t)(RF_SW_WELCOME_FIXED + path_len),
	                     SW_PUBLISH_TIMEOUT_MS)) {
		peer_count_error(p);
		peer_kill(p, -ECONNRESET);
	}
}

/* A hub -> producer frame; a producer that cannot take it within
 * SW_PUBLISH_TIMEOUT_MS is detached. Returns 0 or -ENOTCONN. */
static int peer_send(struct sw_peer *p, enum rf_sw_type type, const void *payload, uint32_t len,
                     const char *what)
{
	int rc = rf_sw_send_frame(p->fd, type, payload, len, SW_PUBLISH_TIMEOUT_MS);

	if (!rc)
		return 0;
	RF_WARN("fabric", "producer (token %#llx): cannot %s: %s", (unsigned long long)p->token,
	        what, strerror(-rc));
	/* A producer that closed or reset is gone, not failed. */
	if (rc != -EPIPE && rc != -ECONNRESET)
		peer_count_error(p);
	peer_kill(p, rc);
	return -ENOTCONN;
}

/*
 * The DOORBELL asked for LANDED: every byte before it is in the ring (tcp:
 * read into it; shm: the producer stored it), so say so at once, before the
 * hub's loop sees the DATA event.
 */
static void peer_send_landed(struct sw_peer *p, uint64_t seq)
{
	uint8_t b[RF_SW_LANDED_LEN];

	rf_put_le64(b, seq);
	peer_send(p, RF_SW_LANDED, b, sizeof(b), "send landed");
}

/* A complete header arrived: check it against the peer's state. */
static int frame_start(struct sw_peer *p)
{
	const char *why = NULL;

	if (rf_sw_hdr_decode(p->hdr, &p->type, &p->len, &p->flags, &why))
		goto bad;
	why = "frame type not allowed here";
	switch (p->type) {
	case RF_SW_HELLO:
		if (p->state != SW_PEER_HELLO || p->len != RF_SW_HELLO_LEN)
			goto bad;
		break;
	case RF_SW_DOORBELL:
		if (p->state != SW_PEER_ATTACHED || p->len != RF_SW_DOORBELL_LEN)
			goto bad;
		break;
	case RF_SW_WRITE:
		if (p->state != SW_PEER_ATTACHED || p->l->shm)
			goto bad;
		why = "write frame of a bad length";
		if (p->len <= RF_SW_WRITE_SUBHDR ||
		    p->len - RF_SW_WRITE_SUBHDR > RF_FAB_MAX_SEG_LEN)
			goto bad;
		break;
	default:
		goto bad;
	}
	p->phase = SW_RX_PAYLOAD;
	p->got = 0;
	return 0;
bad:
	peer_protocol_error(p, why);
	return -EPROTO;
}

/* The payload (or WRITE sub-header) is complete. */
static void frame_payload_done(struct sw_peer *p)
{
	uint64_t seq, off;
	uint32_t len;

	switch (p->type) {
	case RF_SW_HELLO:
		handle_hello(p);
		break;
	case RF_SW_DOORBELL:
		seq = rf_get_le64(p->payload);
		if (seq < p->last_seq) {
			peer_protocol_error(p, "doorbell sequence went backwards");
			return;
		}
		p->last_seq = seq;
		RF_FAB_COUNT(&p->l->base, &p->base, completions, 1);
		queue_event(p->l, &(struct rf_fab_hub_event){.type = RF_FAB_HEV_DATA,
		                                             .peer = &p->base,
		                                             .token = p->token,
		                                             .seq = seq});
		if (p->flags & RF_SW_DB_LANDED)
			peer_send_landed(p, seq);
		break;
	case RF_SW_WRITE:
		off = rf_get_le64(p->payload);
		len = rf_get_le32(p->payload + 8);
		if (len != p->len - RF_SW_WRITE_SUBHDR || off > p->mem.data_size ||
		    len > p->mem.data_size - off) {
			peer_protocol_error(p, "write outside the ring's data area");
			return;
		}
		p->woff = off;
		p->len = len;
		p->got = 0;
		p->phase = SW_RX_DATA;
		return;
	}
	if (p->state != SW_PEER_DEAD)
		p->phase = SW_RX_HDR;
	p->got = 0;
}

/* Read what @p has sent (bounded by SW_READ_BUDGET) and act on it. */
static void peer_read(struct sw_peer *p)
{
	size_t budget = SW_READ_BUDGET;

	while (p->state != SW_PEER_DEAD && budget > 0) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		switch (p->phase) {
		case SW_RX_HDR:
			dst = p->hdr + p->got;
			want = RF_SW_HDR_LEN - p->got;
			break;
		case SW_RX_PAYLOAD:
			want = (p->type == RF_SW_WRITE ? RF_SW_WRITE_SUBHDR : p->len) - p->got;
			dst = p->payload + p->got;
			break;
		default:
			dst = (uint8_t *)p->mem.data + p->woff + p->got;
			want = p->len - p->got;
			break;
		}
		n = read(p->fd, dst, want < budget ? want : budget);
		if (n == 0) {
			RF_INFO("fabric", "producer (token %#llx) disconnected",
			        (unsigned long long)p->token);
			peer_kill(p, 0);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			/* A reset is a disconnect (like EOF), not a failure. */
			if (errno != ECONNRESET)
				peer_count_error(p);
			peer_kill(p, -errno);
			return;
		}
		budget -= (size_t)n;
		p->got += (uint32_t)n;
		if ((size_t)n < want)
			continue;
		if (p->phase == SW_RX_HDR) {
			frame_start(p);
		} else if (p->phase == SW_RX_PAYLOAD) {
			frame_payload_done(p);
		} else {
			p->phase = SW_RX_HDR;
			p->got = 0;
		}
	}
}

/* Accept up to SW_ACCEPT_BURST producers; each must say HELLO within the
 * listener's handshake limit, and at most max_pending may be waiting. */
static void accept_peers(struct sw_listener *l, int64_t now)
{
	for (int i = 0; i < SW_ACCEPT_BURST; i++) {
		struct epoll_event ev = {.events = EPOLLIN};
		struct rf_pending *victim;
		struct sw_peer *p;
		int fd = rf_admit_accept(&l->base.admit, now), one = 1;

		if (fd < 0) {
			if (fd != -EAGAIN)
				RF_FAB_COUNT_L(&l->base, errors, 1);
			return;
		}
		p = calloc(1, sizeof(*p));
		if (!p) {
			RF_FAB_COUNT_L(&l->base, errors, 1);
			close(fd);
			return;
		}
		if (!l->shm)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		p->base.prov = l->base.prov;
		p->l = l;
		p->fd = fd;
		ev.data.ptr = p;
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			RF_FAB_COUNT_L(&l->base, errors, 1);
			close(fd);
			free(p);
			continue;
		}
		p->next = l->peers;
		l->peers = p;
		victim = rf_admit_pending_add(&l->base.admit, &p->pend, now);
		if (victim)
			peer_kill(container_of(victim, struct sw_peer, pend), -ETIMEDOUT);
	}
}

/* Close the producers that did not say HELLO in time. */
static void expire_peers(struct sw_listener *l, int64_t now)
{
	struct rf_pending *pend;

	rf_admit_tick(&l->base.admit, now);
	while ((pend = rf_admit_expired(&l->base.admit, now)))
		peer_kill(container_of(pend, struct sw_peer, pend), -ETIMEDOUT);
}

static int sw_watch(void *ctx, bool on)
{
	struct sw_listener *l = ctx;
	struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = NULL};

	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->lfd, &ev) < 0 ? -errno : 0;
}

static void free_zombies(struct sw_listener *l)
{
	while (l->zombies) {
		struct sw_peer *p = l->zombies;

		l->zombies = p->next;
		free(p);
	}
}

static int dequeue_events(struct sw_listener *l, struct rf_fab_hub_event *evs, int max)
{
	int n = 0;

	while (n < max && l->qlen) {
		evs[n] = l->q[l->qhead];
		l->qhead = (l->qhead + 1) % l->qcap;
		l->qlen--;
		if (evs[n].type == RF_FAB_HEV_DETACHED)
			peer_bury(l, container_of(evs[n].peer, struct sw_peer, base));
		n++;
	}
	return n;
}

int rf_sw_listener_poll(struct rf_fab_listener *bl, struct rf_fab_hub_event *evs, int max,
                        int timeout_ms)
{
	struct sw_listener *l = to_listener(bl);
	struct epoll_event ready[32];
	int n;

	free_zombies(l);
	expire_peers(l, rf_now_ms());
	if (l->qlen)
		timeout_ms = 0;
	n = epoll_wait(l->epfd, ready, 32, timeout_ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	/* The peers we have first: a HELLO that arrived is read before a burst
	 * of new connections can push its sender out of the pending queue. */
	for (int i = 0; i < n; i++)
		if (ready[i].data.ptr)
			peer_read(ready[i].data.ptr);
	for (int i = 0; i < n; i++)
		if (!ready[i].data.ptr)
			accept_peers(l, rf_now_ms());
	return dequeue_events(l, evs, max);
}

int rf_sw_listener_fd(const struct rf_fab_listener *bl)
{
	return to_listener(bl)->epfd;
}

int rf_sw_publish(struct rf_fab_peer *bp, const struct rf_fab_position *pos)
{
	struct sw_peer *p = container_of(bp, struct sw_peer, base);
	uint8_t b[RF_SW_POSITION_LEN];

	if (p->state != SW_PEER_ATTACHED)
		return -ENOTCONN;
	rf_sw_position_encode(b, pos);
	if (peer_send(p, RF_SW_POSITION, b, sizeof(b), "publish position"))
		return -ENOTCONN;
	rf_fab_count_credit(&p->l->base, &p->base, pos);
	return 0;
}

int rf_sw_fence(struct rf_fab_peer *bp)
{
	struct sw_peer *p = container_of(bp, struct sw_peer, base);

	RF_INFO("fabric", "fencing producer (token %#llx)", (unsigned long long)p->token);
	peer_kill(p, -ECANCELED);
	return 0;
}

void rf_sw_listener_close(struct rf_fab_listener *bl)
{
	struct sw_listener *l = to_listener(bl);

	free_zombies(l);
	while (l->peers) {
		struct sw_peer *p = l->peers;

		l->peers = p->next;
		if (p->fd >= 0)
			close(p->fd);
		free(p);
	}
	close(l->lfd);
	close(l->epfd);
	if (l->shm)
		unlink(l->path);
	free(l->q);
	free(l);
}

static int bind_socket(struct sw_listener *l, const char *addr)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE},
	                *ai = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char host[256], port[16];
	struct stat st;
	int one = 1, rc;

	if (l->shm) {
		if (strlen(addr) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		strcpy(sun.sun_path, addr);
		strcpy(l->path, addr);
		/* A socket left by a hub that died is stale; anything else is not ours. */
		if (lstat(addr, &st) == 0) {
			if (!S_ISSOCK(st.st_mode)) {
				RF_ERR("fabric", "shm://%s exists and is not a socket", addr);
				return -EEXIST;
			}
			unlink(addr);
		}
		l->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (l->lfd < 0)
			return -errno;
		if (bind(l->lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			return -errno;
		return 0;
	}
	rc = rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port));
	if (rc)
		return rc;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		RF_ERR("fabric", "tcp://%s: cannot resolve: %s", addr, gai_strerror(rc));
		return -EADDRNOTAVAIL;
	}
	l->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->lfd < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(l->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->lfd, ai->ai_addr, ai->ai_addrlen) < 0)
		rc = -errno;
out:
	freeaddrinfo(ai);
	return rc;
}

int rf_sw_listen(bool shm, const struct rf_fab_provider *prov, const char *addr,
                 const struct rf_fab_hub_ops *ops, void *ctx, struct rf_fab_listener **out)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	struct sw_listener *l;
	int rc;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->shm = shm;
	l->ops = ops;
	l->ctx = ctx;
	l->base.prov = prov;
	l->lfd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		rc = -errno;
		goto out_free;
	}
	rc = bind_socket(l, addr);
	if (rc)
		goto out_close_sock;
	if (listen(l->lfd, 64) < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->lfd, &ev) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	rf_admit_init(&l->base.admit, shm ? "shm data listener" : "tcp data listener", l->lfd,
	              sw_watch, l);
	*out = &l->base;
	RF_INFO("fabric", "listening on %s://%s", shm ? "shm" : "tcp", addr);
	return 0;
out_unlink:
	if (shm)
		unlink(l->path);
out_close_sock:
	RF_ERR("fabric", "cannot listen on %s://%s: %s", shm ? "shm" : "tcp", addr, strerror(-rc));
	if (l->lfd >= 0)
		close(l->lfd);
	close(l->epfd);
out_free:
	free(l);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * The tcp:// and shm:// providers: one framed-stream core, two ops tables
 * (at the end of this file). Framing: fabric/stream_wire.h.
 *
 *   tcp: the producer sends each segment as a WRITE frame and the hub reads
 *        it straight into its ring memory at the offset the producer chose.
 *   shm: the producer maps the ring file the hub names in WELCOME and copies
 *        segments in itself; only DOORBELL frames cross the socket.
 *
 * Both then send a DOORBELL with the last sequence; the hub reports it as a
 * DATA event. Hub -> producer: WELCOME/REFUSE once, then POSITION frames.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "provider.h"
#include "repfabric/le.h"
#include "repfabric/sockio.h"
#include "repfabric/log.h"
#include "stream_wire.h"

#define SW_SENT_MAX           1024       /* SENT events queued before post says -EAGAIN */
#define SW_IO_TIMEOUT_MS      30000      /* a producer write that makes no progress */
#define SW_PUBLISH_TIMEOUT_MS 1000       /* a hub -> producer frame */
#define SW_READ_BUDGET        (8u << 20) /* bytes read from one peer per poll round */
#define SW_ACCEPT_BURST       16         /* connections accepted per poll round */

/* ------------------------------------------------------------ encoding */

static void hdr_encode(uint8_t *h, enum rf_sw_type type, uint32_t len)
{
	memset(h, 0, RF_SW_HDR_LEN);
	rf_put_le32(h, RF_SW_MAGIC);
	h[4] = RF_SW_VERSION;
	h[5] = (uint8_t)type;
	rf_put_le32(h + 8, len);
}

/* Validate a frame header; returns 0 or -EPROTO with @why set. */
static int hdr_decode(const uint8_t *h, unsigned *type, uint32_t *len, const char **why)
{
	if (rf_get_le32(h) != RF_SW_MAGIC) {
		*why = "bad frame magic";
		return -EPROTO;
	}
	if (h[4] != RF_SW_VERSION) {
		*why = "unsupported frame version";
		return -EPROTO;
	}
	if (rf_get_le16(h + 6) != 0 || rf_get_le32(h + 12) != 0) {
		*why = "reserved header bytes not zero";
		return -EPROTO;
	}
	*type = h[5];
	*len = rf_get_le32(h + 8);
	return 0;
}

static void position_encode(uint8_t *p, const struct rf_fab_position *pos)
{
	rf_put_le64(p, pos->durable_pos);
	rf_put_le64(p + 8, pos->durable_seq);
	rf_put_le64(p + 16, pos->head_pos);
	rf_put_le64(p + 24, pos->head_seq);
}

static void position_decode(const uint8_t *p, struct rf_fab_position *pos)
{
	pos->durable_pos = rf_get_le64(p);
	pos->durable_seq = rf_get_le64(p + 8);
	pos->head_pos = rf_get_le64(p + 16);
	pos->head_seq = rf_get_le64(p + 24);
}

/* ------------------------------------------------------------ socket io */

static int send_frame(int fd, enum rf_sw_type type, const void *payload, uint32_t len,
                      int timeout_ms)
{
	uint8_t h[RF_SW_HDR_LEN];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)payload, len}};

	hdr_encode(h, type, len);
	return rf_write_all(fd, iov, len ? 2 : 1, rf_now_ms() + timeout_ms);
}

/* Open a non-blocking stream socket connected to @addr within @deadline. */
static int sock_connect(bool shm, const char *addr, int64_t deadline, int *out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const struct sockaddr *sa;
	socklen_t salen;
	int fd, rc, one = 1, err;
	socklen_t errlen = sizeof(err);
	char host[256], port[16];

	if (shm) {
		if (strlen(addr) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		strcpy(sun.sun_path, addr);
		sa = (const struct sockaddr *)&sun;
		salen = sizeof(sun);
	} else {
		rc = rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port));
		if (rc)
			return rc;
		rc = getaddrinfo(host, port, &hints, &ai);
		if (rc) {
			RF_ERR("fabric", "tcp://%s: cannot resolve: %s", addr, gai_strerror(rc));
			return -EHOSTUNREACH;
		}
		sa = ai->ai_addr;
		salen = ai->ai_addrlen;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto out_free_ai;
	}
	if (connect(fd, sa, salen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto out_close;
		}
		rc = rf_wait_fd(fd, POLLOUT, deadline);
		if (rc)
			goto out_close;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err) {
			rc = err ? -err : -errno;
			goto out_close;
		}
	}
	if (!shm)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*out = fd;
	rc = 0;
	goto out_free_ai;
out_close:
	close(fd);
out_free_ai:
	if (ai)
		freeaddrinfo(ai);
	return rc;
}

/* ------------------------------------------------------------ producer */

struct sw_conn {
	struct rf_fab_conn base;
	bool shm;
	int fd;
	uint8_t *map; /* shm: the ring file */
	size_t map_len;
	uint8_t *data; /* shm: its data area */
	uint64_t sent[SW_SENT_MAX];
	unsigned sent_head, sent_count;
	int err; /* the connection died with this; CLOSED not yet reported */
	size_t rlen;
	uint8_t rbuf[RF_SW_HDR_LEN + RF_SW_MAX_CTRL];
};

static int welcome_decode(struct sw_conn *c, const uint8_t *p, uint32_t len, const char *addr,
                          struct rf_fab_ring_info *info)
{
	uint64_t data_off;
	uint16_t path_len;
	char path[RF_SW_MAX_PATH + 1];
	struct stat st;
	int fd, rc;

	if (len < RF_SW_WELCOME_FIXED)
		return -EPROTO;
	info->ring_id = rf_get_le64(p);
	info->data_size = rf_get_le64(p + 8);
	position_decode(p + 16, &info->pos);
	data_off = rf_get_le64(p + 48);
	path_len = rf_get_le16(p + 56);
	if (len != (uint32_t)RF_SW_WELCOME_FIXED + path_len || path_len > RF_SW_MAX_PATH)
		return -EPROTO;
	if (!c->shm)
		return path_len == 0 ? 0 : -EPROTO;
	if (path_len == 0 || info->data_size == 0 || data_off > SIZE_MAX - info->data_size)
		return -EPROTO;
	memcpy(path, p + RF_SW_WELCOME_FIXED, path_len);
	path[path_len] = '\0';
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		RF_ERR("fabric", "shm://%s: cannot open the ring file %s: %s", addr, path,
		       strerror(errno));
		return rc;
	}
	rc = 0;
	c->map_len = data_off + info->data_size;
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < c->map_len)) {
		RF_ERR("fabric", "shm://%s: ring file %s is smaller than its announced geometry",
		       addr, path);
		rc = -EPROTO;
		goto out_close;
	}
	c->map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (c->map == MAP_FAILED) {
		rc = -errno;
		c->map = NULL;
		RF_ERR("fabric", "shm://%s: cannot map %s: %s", addr, path, strerror(-rc));
		goto out_close;
	}
	c->data = c->map + data_off;
out_close:
	close(fd);
	return rc;
}

static int sw_connect(bool shm, const char *addr, uint64_t token, int timeout_ms,
                      struct rf_fab_conn **out, struct rf_fab_ring_info *info)
{
	int64_t deadline = rf_now_ms() + (timeout_ms < 0 ? 3600000 : timeout_ms);
	const char *scheme = shm ? "shm" : "tcp", *why;
	struct sw_conn *c;
	uint8_t h[RF_SW_HDR_LEN], hello[RF_SW_HELLO_LEN];
	uint8_t *payload = NULL;
	unsigned type;
	uint32_t len;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->shm = shm;
	rc = sock_connect(shm, addr, deadline, &c->fd);
	if (rc) {
		RF_ERR("fabric", "%s://%s: connect failed: %s", scheme, addr, strerror(-rc));
		goto out_free;
	}
	rf_put_le64(hello, token);
	rc = send_frame(c->fd, RF_SW_HELLO, hello, sizeof(hello), (int)(deadline - rf_now_ms()));
	if (rc)
		goto out_close;
	rc = rf_read_all(c->fd, h, sizeof(h), deadline);
	if (rc)
		goto out_close;
	rc = hdr_decode(h, &type, &len, &why);
	if (rc || len > RF_SW_MAX_CTRL || (type != RF_SW_WELCOME && type != RF_SW_REFUSE)) {
		RF_ERR("fabric", "%s://%s: bad reply to hello (%s)", scheme, addr,
		       rc ? why : "unexpected type or length");
		rc = -EPROTO;
		goto out_close;
	}
	payload = malloc(len + 1);
	if (!payload) {
		rc = -ENOMEM;
		goto out_close;
	}
	rc = rf_read_all(c->fd, payload, len, deadline);
	if (rc)
		goto out_close;
	if (type == RF_SW_REFUSE) {
		int32_t e = len >= 4 ? (int32_t)rf_get_le32(payload) : EPROTO;

		payload[len] = '\0';
		RF_ERR("fabric", "%s://%s: hub refused token %#llx: %s", scheme, addr,
		       (unsigned long long)token, len > 4 ? (char *)payload + 4 : "no reason");
		rc = (e > 0 && e < 4096) ? -e : -EACCES;
		goto out_close;
	}
	rc = welcome_decode(c, payload, len, addr, info);
	if (rc) {
		if (rc == -EPROTO)
			RF_ERR("fabric", "%s://%s: malformed welcome", scheme, addr);
		goto out_close;
	}
	free(payload);
	*out = &c->base;
	return 0;
out_close:
	if (rc == -ECONNRESET)
		RF_ERR("fabric", "%s://%s: hub closed the connection during the handshake", scheme,
		       addr);
	free(payload);
	close(c->fd);
out_free:
	free(c);
	return rc;
}

static struct sw_conn *to_conn(const struct rf_fab_conn *c)
{
	return container_of(c, struct sw_conn, base);
}

static int sw_post(struct rf_fab_conn *bc, const struct rf_fab_seg *segs, unsigned nseg,
                   uint64_t last_seq, uint64_t cookie)
{
	struct sw_conn *c = to_conn(bc);
	uint8_t hdrs[RF_FAB_MAX_SEGS][RF_SW_HDR_LEN + RF_SW_WRITE_SUBHDR];
	uint8_t bell[RF_SW_HDR_LEN + RF_SW_DOORBELL_LEN];
	struct iovec iov[2 * RF_FAB_MAX_SEGS + 1];
	int n = 0, rc;

	if (c->err)
		return -ENOTCONN;
	if (c->sent_count == SW_SENT_MAX)
		return -EAGAIN;
	for (unsigned i = 0; i < nseg; i++) {
		if (c->shm) {
			memcpy(c->data + segs[i].off, segs[i].buf, segs[i].len);
			continue;
		}
		hdr_encode(hdrs[i], RF_SW_WRITE, RF_SW_WRITE_SUBHDR + segs[i].len);
		rf_put_le64(hdrs[i] + RF_SW_HDR_LEN, segs[i].off);
		rf_put_le32(hdrs[i] + RF_SW_HDR_LEN + 8, segs[i].len);
		iov[n++] = (struct iovec){hdrs[i], sizeof(hdrs[i])};
		iov[n++] = (struct iovec){(void *)segs[i].buf, segs[i].len};
	}
	hdr_encode(bell, RF_SW_DOORBELL, RF_SW_DOORBELL_LEN);
	rf_put_le64(bell + RF_SW_HDR_LEN, last_seq);
	iov[n++] = (struct iovec){bell, sizeof(bell)};
	rc = rf_write_all(c->fd, iov, n, rf_now_ms() + SW_IO_TIMEOUT_MS);
	if (rc) {
		RF_ERR("fabric", "post failed: %s", strerror(-rc));
		c->err = rc;
		return -ENOTCONN;
	}
	c->sent[(c->sent_head + c->sent_count++) % SW_SENT_MAX] = cookie;
	return 0;
}

/* Parse the frames in rbuf into events; returns the count or sets c->err. */
static int parse_frames(struct sw_conn *c, struct rf_fab_event *evs, int max)
{
	int n = 0;
	size_t used = 0;

	while (n < max && c->rlen - used >= RF_SW_HDR_LEN) {
		const uint8_t *h = c->rbuf + used;
		unsigned type;
		uint32_t len;
		const char *why = "unexpected frame type or length";

		if (hdr_decode(h, &type, &len, &why) || type != RF_SW_POSITION ||
		    len != RF_SW_POSITION_LEN) {
			RF_ERR("fabric", "bad frame from hub: %s", why);
			c->err = -EPROTO;
			break;
		}
		if (c->rlen - used < RF_SW_HDR_LEN + len)
			break;
		evs[n] = (struct rf_fab_event){.type = RF_FAB_EV_POSITION};
		position_decode(h + RF_SW_HDR_LEN, &evs[n].pos);
		n++;
		used += RF_SW_HDR_LEN + len;
	}
	memmove(c->rbuf, c->rbuf + used, c->rlen - used);
	c->rlen -= used;
	return n;
}

static int sw_poll(struct rf_fab_conn *bc, struct rf_fab_event *evs, int max, int timeout_ms)
{
	struct sw_conn *c = to_conn(bc);
	int n = 0;

	while (n < max && c->sent_count) {
		evs[n++] =
		    (struct rf_fab_event){.type = RF_FAB_EV_SENT, .cookie = c->sent[c->sent_head]};
		c->sent_head = (c->sent_head + 1) % SW_SENT_MAX;
		c->sent_count--;
	}
	if (n < max && !c->err) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ssize_t got;

		n += parse_frames(c, evs + n, max - n);
		if (n == 0 && !c->err && poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
			c->err = -errno;
		got = c->err ? 0 : read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
		if (got > 0) {
			c->rlen += (size_t)got;
			n += parse_frames(c, evs + n, max - n);
		} else if (got == 0 && !c->err) {
			c->err = -ECONNRESET;
		} else if (got < 0 && errno != EAGAIN && errno != EINTR) {
			c->err = -errno;
		}
	}
	if (c->err && n < max) {
		evs[n++] = (struct rf_fab_event){.type = RF_FAB_EV_CLOSED, .err = c->err};
		RF_WARN("fabric", "connection to hub closed: %s", strerror(-c->err));
	}
	return n;
}

static int sw_conn_fd(const struct rf_fab_conn *bc)
{
	return to_conn(bc)->fd;
}

static void sw_close(struct rf_fab_conn *bc)
{
	struct sw_conn *c = to_conn(bc);

	if (c->map)
		munmap(c->map, c->map_len);
	close(c->fd);
	free(c);
}

/* ------------------------------------------------------------------ hub */

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
	unsigned type;
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
	send_frame(p->fd, RF_SW_REFUSE, buf, (uint32_t)(4 + n), SW_PUBLISH_TIMEOUT_MS);
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
	position_encode(w + 16, &p->mem.info.pos);
	rf_put_le64(w + 48, l->shm ? p->mem.data_off : 0);
	if (l->shm) {
		path_len = strlen(p->mem.path);
		memcpy(w + RF_SW_WELCOME_FIXED, p->mem.path, path_len);
	}
	rf_put_le16(w + 56, (uint16_t)path_len);
	if (send_frame(p->fd, RF_SW_WELCOME, w, (uint32_t)(RF_SW_WELCOME_FIXED + path_len),
	               SW_PUBLISH_TIMEOUT_MS)) {
		peer_count_error(p);
		peer_kill(p, -ECONNRESET);
	}
}

/* A complete header arrived: check it against the peer's state. */
static int frame_start(struct sw_peer *p)
{
	const char *why = NULL;

	if (hdr_decode(p->hdr, &p->type, &p->len, &why))
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

static int sw_listener_poll(struct rf_fab_listener *bl, struct rf_fab_hub_event *evs, int max,
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

static int sw_listener_fd(const struct rf_fab_listener *bl)
{
	return to_listener(bl)->epfd;
}

static int sw_publish(struct rf_fab_peer *bp, const struct rf_fab_position *pos)
{
	struct sw_peer *p = container_of(bp, struct sw_peer, base);
	uint8_t b[RF_SW_POSITION_LEN];
	int rc;

	if (p->state != SW_PEER_ATTACHED)
		return -ENOTCONN;
	position_encode(b, pos);
	rc = send_frame(p->fd, RF_SW_POSITION, b, sizeof(b), SW_PUBLISH_TIMEOUT_MS);
	if (rc) {
		RF_WARN("fabric", "producer (token %#llx): cannot publish position: %s",
		        (unsigned long long)p->token, strerror(-rc));
		/* A producer that closed or reset is gone, not failed. */
		if (rc != -EPIPE && rc != -ECONNRESET)
			peer_count_error(p);
		peer_kill(p, rc);
		return -ENOTCONN;
	}
	rf_fab_count_credit(&p->l->base, &p->base, pos);
	return 0;
}

static int sw_fence(struct rf_fab_peer *bp)
{
	struct sw_peer *p = container_of(bp, struct sw_peer, base);

	RF_INFO("fabric", "fencing producer (token %#llx)", (unsigned long long)p->token);
	peer_kill(p, -ECANCELED);
	return 0;
}

static void sw_listener_close(struct rf_fab_listener *bl)
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

static int sw_listen(bool shm, const struct rf_fab_provider *prov, const char *addr,
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

/* ------------------------------------------------------ the two providers */

static int tcp_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                       struct rf_fab_ring_info *info)
{
	return sw_connect(false, addr, token, timeout_ms, out, info);
}

static int shm_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                       struct rf_fab_ring_info *info)
{
	return sw_connect(true, addr, token, timeout_ms, out, info);
}

static int tcp_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                      struct rf_fab_listener **out)
{
	return sw_listen(false, &rf_fab_tcp_provider, addr, ops, ctx, out);
}

static int shm_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                      struct rf_fab_listener **out)
{
	return sw_listen(true, &rf_fab_shm_provider, addr, ops, ctx, out);
}

#define SW_COMMON_OPS                                                                              \
	.post = sw_post, .poll = sw_poll, .conn_fd = sw_conn_fd, .close = sw_close,                \
	.listener_poll = sw_listener_poll, .listener_fd = sw_listener_fd, .publish = sw_publish,   \
	.fence = sw_fence, .listener_close = sw_listener_close

const struct rf_fab_provider rf_fab_tcp_provider = {
    .scheme = "tcp",
    .connect = tcp_connect,
    .listen = tcp_listen,
    SW_COMMON_OPS,
};

const struct rf_fab_provider rf_fab_shm_provider = {
    .scheme = "shm",
    .connect = shm_connect,
    .listen = shm_listen,
    SW_COMMON_OPS,
};

/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider: librdmacm connection management and a libibverbs RC
 * QP per producer. Wire format: docs/PROTOCOL.md ("Data transport: rdma://").
 *
 * Producer (struct rdma_conn): rf_fab_post copies the segments into a
 * registered staging ring and writes each one with a one-sided RDMA WRITE to
 * the hub's ring (remote addr + seg.off); the last WR of a post is a
 * WRITE_WITH_IMM whose immediate is the low 32 bits of last_seq (the
 * doorbell) and is the only signaled WR, so its completion frees the post's
 * slot and staging bytes and becomes RF_FAB_EV_SENT (the caller's buffers
 * are in fact free once rf_fab_post returned). A post larger than the whole
 * staging ring registers the caller's buffers instead (slow path: they must
 * then stay untouched until SENT, as the API says).
 * Positions arrive as two-sided SENDs into a few posted receive buffers.
 *
 * Hub (struct rdma_listener, struct rdma_peer): every producer gets its own
 * PD, MR over the ring's data area (LOCAL_WRITE|REMOTE_WRITE only), CQ,
 * completion channel and QP. Each doorbell consumes one of PEER_RQ_DEPTH
 * zero-length receives, becomes RF_FAB_HEV_DATA and is reposted.
 *
 * File descriptors: a conn or listener owns an epoll fd (the fd handed to
 * the caller) holding its rdma_cm event channel fd, the completion channel
 * fd(s) and an eventfd. The eventfd is kept readable while internal events
 * are queued but not yet returned, or while a CQ was left non-empty by the
 * per-call drain bound, so the epoll fd is readable exactly while poll has
 * work. All fds are non-blocking; the only blocking call is epoll_wait with
 * the caller's timeout (and poll(2) on the CM channel in connect).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "provider.h"
#include "rdma_wire.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"
#include "verbs_wrap.h"

#define SUBSYS "rdma"

/* Producer queue depths. */
#define CONN_MAX_POSTS 64                                 /* posts in flight */
#define CONN_SQ_DEPTH  (CONN_MAX_POSTS * RF_FAB_MAX_SEGS) /* one WR per segment */
#define CONN_RQ_DEPTH  16                                 /* position receives */
#define CONN_CQ_DEPTH  (CONN_SQ_DEPTH + CONN_RQ_DEPTH + 8)

/* Staging ring: two largest segments plus PAD pieces, or less for small rings. */
#define STAGE_MAX   ((uint64_t)2 * RF_FAB_MAX_SEG_LEN + (64u << 10))
#define STAGE_MIN   ((uint64_t)256 << 10)
#define STAGE_ALIGN 64u

/* Hub per-peer queue depths. */
#define PEER_RQ_DEPTH  256 /* doorbell receives */
#define PEER_PUB_SLOTS 4   /* position SENDs in flight; later ones coalesce */
#define PEER_SQ_DEPTH  (PEER_PUB_SLOTS + 4)
#define PEER_CQ_DEPTH  (PEER_RQ_DEPTH + PEER_SQ_DEPTH + 8)

#define MSG_SLOT         64  /* bytes per send/receive buffer slot */
#define CQ_BATCH         32  /* ibv_poll_cq batch */
#define CQ_DRAIN_MAX     256 /* completions per CQ per poll call */
#define LISTEN_BACKLOG   64
#define CM_STEP_TIMEOUT  2000 /* ms, address/route resolution without a deadline */
#define MIN_RNR_TIMER    12   /* 0.64 ms (the rdma_cm default 0 means 655 ms) */
#define RC_RETRY_COUNT   7
#define RC_RNR_RETRY_INF 7

/* wr_id: kind in the top two bits, a post counter or buffer index below. */
#define WR_SEND    (1ull << 62)
#define WR_RECV    (2ull << 62)
#define WR_KIND(x) ((x) & (3ull << 62))
#define WR_VAL(x)  ((x) & ~(3ull << 62))

/* epoll tags (peers are tagged with their pointer). */
#define TAG_CM  0u
#define TAG_SIG 1u
#define TAG_CQ  2u

/* ------------------------------------------------------------ helpers */

/* -1: no deadline. */
static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : rf_now_ms() + timeout_ms;
}

/* Milliseconds left (-1: forever, 0: expired). */
static int remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - rf_now_ms();
	if (left <= 0)
		return 0;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int epoll_add(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}

/* The eventfd that keeps the caller's epoll fd readable while work is queued. */
struct sigfd {
	int fd;
	int set;
};

static void sig_update(struct sigfd *s, int want)
{
	uint64_t v = 1;

	if (s->fd < 0)
		return;
	if (want && !s->set) {
		if (write(s->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
			s->set = 1;
	} else if (!want && s->set) {
		if (read(s->fd, &v, sizeof(v)) == (ssize_t)sizeof(v) || errno == EAGAIN)
			s->set = 0;
	}
}

/* A growable FIFO of fixed-size events. */
struct evq {
	unsigned char *buf;
	size_t esz, cap, head, n;
};

static int evq_push(struct evq *q, const void *ev)
{
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 64;
		unsigned char *nb = malloc(ncap * q->esz);

		if (!nb)
			return -ENOMEM;
		for (size_t i = 0; i < q->n; i++)
			memcpy(nb + i * q->esz, q->buf + ((q->head + i) % q->cap) * q->esz, q->esz);
		free(q->buf);
		q->buf = nb;
		q->cap = ncap;
		q->head = 0;
	}
	memcpy(q->buf + ((q->head + q->n) % q->cap) * q->esz, ev, q->esz);
	q->n++;
	return 0;
}

static int evq_pop(struct evq *q, void *ev)
{
	if (q->n == 0)
		return 0;
	memcpy(ev, q->buf + q->head * q->esz, q->esz);
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return 1;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (!sa) {
		snprintf(buf, len, "?");
		return;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}

static int resolve(const char *addr, int passive, struct addrinfo **out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	char host[256], port[16];
	int rc;

	if (rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port))) {
		RF_ERR(SUBSYS, "'%s': expected IP:PORT", addr);
		return -EINVAL;
	}
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(host, port, &hints, out);
	if (rc) {
		RF_ERR(SUBSYS, "cannot resolve '%s': %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

/* rdma_cm binds loopback addresses but can never route to them. */
static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

/*
 * librdmacm opens each RDMA device once per process and caches the context;
 * a fork()ed child inherits that cache, and the kernel refuses the parent's
 * uverbs file in the child ("changed security contexts": EACCES on the first
 * post). Refuse up front, with the reason, instead.
 */
static atomic_int rdma_owner_pid;

static int check_not_forked(const char *what)
{
	int owner = atomic_load(&rdma_owner_pid), me = (int)getpid();

	if (owner == 0) {
		atomic_compare_exchange_strong(&rdma_owner_pid, &owner, me);
		return 0;
	}
	if (owner == me)
		return 0;
	RF_ERR(SUBSYS,
	       "%s: this process was fork()ed from process %d, which already used RDMA; "
	       "librdmacm's device contexts cannot be used across fork() (the kernel "
	       "refuses them): exec a fresh program in the child",
	       what, owner);
	return -EPERM;
}

static int open_channel(struct rdma_event_channel **ch, const char *what)
{
	int rc = check_not_forked(what);

	if (rc)
		return rc;
	rc = rf_verbs->create_event_channel(ch);

	if (rc) {
		RF_ERR(SUBSYS,
		       "%s: cannot open the RDMA connection manager (%s); is an RDMA device "
		       "present (rdma link show) and rdma_ucm loaded?",
		       what, strerror(-rc));
		return (rc == -ENOENT || rc == -ENODEV || rc == -ENXIO) ? -ENODEV : rc;
	}
	rc = set_nonblock((*ch)->fd);
	if (rc) {
		rf_verbs->destroy_event_channel(*ch);
		*ch = NULL;
	}
	return rc;
}

/* Log a failed memory registration with its likely cause. */
static void explain_reg_failure(int rc, uint64_t len, const char *what)
{
	if (rc == -EOPNOTSUPP || rc == -EFAULT)
		RF_ERR(SUBSYS,
		       "cannot register %s (%llu bytes) for RDMA: %s; this memory cannot be "
		       "pinned (an fsdax mount or an ordinary file on a newer kernel?): put "
		       "the ring on devdax, tmpfs or hugetlbfs",
		       what, (unsigned long long)len, strerror(-rc));
	else if (rc == -ENOMEM || rc == -EPERM)
		RF_ERR(SUBSYS,
		       "cannot register %s (%llu bytes) for RDMA: %s; the locked-memory limit "
		       "is probably too low (ulimit -l / LimitMEMLOCK=infinity)",
		       what, (unsigned long long)len, strerror(-rc));
	else
		RF_ERR(SUBSYS, "cannot register %s (%llu bytes) for RDMA: %s", what,
		       (unsigned long long)len, strerror(-rc));
}

/* Register ring, staging or message memory, explaining the usual failures. */
static int reg_mr_explained(struct ibv_pd *pd, void *addr, uint64_t len, int access,
                            struct ibv_mr **mr, const char *what)
{
	int rc = rf_verbs->reg_mr(pd, addr, (size_t)len, access, mr);

	if (rc)
		explain_reg_failure(rc, len, what);
	return rc;
}

static int wc_errno(enum ibv_wc_status st)
{
	switch (st) {
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_WR_FLUSH_ERR:
		return -ECONNRESET;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_LOC_LEN_ERR:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* RTS -> RTS: shorten the RNR NAK wait a receiver asks of the sender. */
static void set_min_rnr_timer(struct ibv_qp *qp, const char *who)
{
	struct ibv_qp_attr a = {.min_rnr_timer = MIN_RNR_TIMER};
	int rc = rf_verbs->modify_qp(qp, &a, IBV_QP_MIN_RNR_TIMER);

	if (rc)
		RF_DEBUG(SUBSYS, "%s: cannot set min_rnr_timer: %s", who, strerror(-rc));
}

static void mem_free(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

static void *mem_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ============================================================ producer */

struct rdma_post_slot {
	uint64_t cookie;
	uint64_t stage_end;                  /* staging head once this post was placed */
	struct ibv_mr *mrs[RF_FAB_MAX_SEGS]; /* slow path: the caller's buffers */
	unsigned nmr;
};

struct rdma_conn {
	struct rf_fab_conn base;
	char name[280]; /* "rdma://addr" for log lines */

	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	int qp_created;
	int connected;

	void *recv_buf; /* CONN_RQ_DEPTH x MSG_SLOT */
	struct ibv_mr *recv_mr;

	unsigned char *stage; /* staging ring */
	uint64_t stage_size, stage_head, stage_tail;
	struct ibv_mr *stage_mr;

	uint64_t remote_addr;
	uint32_t rkey;
	uint64_t data_size;

	struct rdma_post_slot slots[CONN_MAX_POSTS];
	uint64_t post_next; /* counter of the next post */
	uint64_t post_done; /* counter of the oldest unfinished post */

	int epfd;
	struct sigfd sig;
	struct evq q;
	int cq_more; /* the drain bound left completions behind */
	int broken;  /* a CLOSED event was queued */
};

static void conn_push(struct rdma_conn *c, const struct rf_fab_event *ev)
{
	if (evq_push(&c->q, ev))
		RF_ERR(SUBSYS, "%s: out of memory queueing an event (type %d)", c->name,
		       (int)ev->type);
	sig_update(&c->sig, 1);
}

static void conn_fail(struct rdma_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(struct rdma_conn *c, int err, const char *fmt, ...)
{
	struct rf_fab_event ev = {.type = RF_FAB_EV_CLOSED, .err = err};
	char why[256];
	va_list ap;

	if (c->broken)
		return;
	c->broken = 1;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	RF_ERR(SUBSYS, "%s: connection lost: %s (%s)", c->name, why, strerror(-err));
	conn_push(c, &ev);
}

static int conn_post_recv(struct rdma_conn *c, unsigned idx)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)c->recv_buf + (uint64_t)idx * MSG_SLOT,
	    .length = MSG_SLOT,
	    .lkey = c->recv_mr->lkey,
	};
	struct ibv_recv_wr wr = {.wr_id = WR_RECV | idx, .sg_list = &sge, .num_sge = 1};
	struct ibv_recv_wr *bad;

	return rf_verbs->post_recv(c->id->qp, &wr, &bad);
}

static void conn_release_slot(struct rdma_post_slot *s)
{
	for (unsigned i = 0; i < s->nmr; i++) {
		int rc = rf_verbs->dereg_mr(s->mrs[i]);

		if (rc)
			RF_WARN(SUBSYS, "deregistering a send buffer failed: %s", strerror(-rc));
	}
	s->nmr = 0;
}

static void conn_destroy(struct rdma_conn *c)
{
	int rc;

	if (c->connected) {
		rc = rf_verbs->disconnect(c->id);
		if (rc)
			RF_DEBUG(SUBSYS, "%s: disconnect: %s", c->name, strerror(-rc));
	}
	if (c->qp_created)
		rf_verbs->destroy_qp(c->id);
	for (uint64_t i = c->post_done; i != c->post_next; i++)
		conn_release_slot(&c->slots[i % CONN_MAX_POSTS]);
	if (c->stage_mr && (rc = rf_verbs->dereg_mr(c->stage_mr)))
		RF_WARN(SUBSYS, "%s: deregistering the staging area: %s", c->name, strerror(-rc));
	mem_free(c->stage, c->stage_size);
	if (c->recv_mr && (rc = rf_verbs->dereg_mr(c->recv_mr)))
		RF_WARN(SUBSYS, "%s: deregistering receive buffers: %s", c->name, strerror(-rc));
	free(c->recv_buf);
	if (c->cq && (rc = rf_verbs->destroy_cq(c->cq)))
		RF_WARN(SUBSYS, "%s: destroying the CQ: %s", c->name, strerror(-rc));
	if (c->cc && (rc = rf_verbs->destroy_comp_channel(c->cc)))
		RF_WARN(SUBSYS, "%s: destroying the completion channel: %s", c->name,
		        strerror(-rc));
	if (c->pd && (rc = rf_verbs->dealloc_pd(c->pd)))
		RF_WARN(SUBSYS, "%s: deallocating the PD: %s", c->name, strerror(-rc));
	if (c->id && (rc = rf_verbs->destroy_id(c->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", c->name, strerror(-rc));
	if (c->ch)
		rf_verbs->destroy_event_channel(c->ch);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->sig.fd >= 0)
		close(c->sig.fd);
	free(c->q.buf);
	free(c);
}

/* Next CM event on the (non-blocking) channel, waiting until @deadline. */
static int wait_cm_event(struct rdma_event_channel *ch, int64_t deadline, struct rdma_cm_event **ev)
{
	for (;;) {
		struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
		int rc = rf_verbs->get_cm_event(ch, ev);

		if (rc != -EAGAIN)
			return rc;
		rc = remaining_ms(deadline);
		if (rc == 0)
			return -ETIMEDOUT;
		rc = poll(&pfd, 1, rc);
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

/* Timeout for one resolution step, or -ETIMEDOUT when nothing is left. */
static int step_timeout(int64_t deadline)
{
	int left = remaining_ms(deadline);

	if (left < 0)
		return CM_STEP_TIMEOUT;
	return left == 0 ? -ETIMEDOUT : left;
}

/* A negative event status when it is a plausible errno, else @dflt. */
static int status_errno(int status, int dflt)
{
	return (status < 0 && status > -4096) ? status : dflt;
}

/* Resolve the address and route, waiting for each step. */
static int conn_resolve(struct rdma_conn *c, struct sockaddr *dst, int64_t deadline)
{
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type type;
	int rc, status, t;

	t = step_timeout(deadline);
	if (t < 0)
		return t;
	rc = rf_verbs->resolve_addr(c->id, dst, t);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot resolve the address: %s", c->name, strerror(-rc));
		return rc == -ENODEV || rc == -EADDRNOTAVAIL ? -ENODEV : rc;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		RF_ERR(SUBSYS, "%s: resolving the address: %s", c->name, strerror(-rc));
		return rc;
	}
	type = ev->event;
	status = ev->status;
	rf_verbs->ack_cm_event(ev);
	if (type != RDMA_CM_EVENT_ADDR_RESOLVED) {
		rc = status_errno(status, -EHOSTUNREACH);
		RF_ERR(SUBSYS,
		       "%s: no RDMA route to the hub: %s (%s); the address must be on an RDMA "
		       "device (rdma_cm cannot use 127.0.0.1)",
		       c->name, rdma_event_str(type), strerror(-rc));
		return rc;
	}

	t = step_timeout(deadline);
	if (t < 0)
		return t;
	rc = rf_verbs->resolve_route(c->id, t);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot resolve the route: %s", c->name, strerror(-rc));
		return rc;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		RF_ERR(SUBSYS, "%s: resolving the route: %s", c->name, strerror(-rc));
		return rc;
	}
	type = ev->event;
	status = ev->status;
	rf_verbs->ack_cm_event(ev);
	if (type != RDMA_CM_EVENT_ROUTE_RESOLVED) {
		rc = status_errno(status, -EHOSTUNREACH);
		RF_ERR(SUBSYS, "%s: route resolution failed: %s (%s)", c->name,
		       rdma_event_str(type), strerror(-rc));
		return rc;
	}
	return 0;
}

/* PD, completion channel, CQ, QP and the position receive buffers. */
static int conn_setup_qp(struct rdma_conn *c)
{
	struct ibv_context *ctx = c->id->verbs;
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap =
	        {
	            .max_send_wr = CONN_SQ_DEPTH,
	            .max_recv_wr = CONN_RQ_DEPTH,
	            .max_send_sge = 1,
	            .max_recv_sge = 1,
	        },
	    .sq_sig_all = 0,
	};
	int rc;

	rc = rf_verbs->alloc_pd(ctx, &c->pd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_comp_channel(ctx, &c->cc);
	if (rc)
		goto fail;
	rc = set_nonblock(c->cc->fd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_cq(ctx, CONN_CQ_DEPTH, c, c->cc, &c->cq);
	if (rc)
		goto fail;
	rc = rf_verbs->req_notify_cq(c->cq, 0);
	if (rc)
		goto fail;
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	rc = rf_verbs->create_qp(c->id, c->pd, &qa);
	if (rc)
		goto fail;
	c->qp_created = 1;

	c->recv_buf = aligned_alloc(MSG_SLOT, CONN_RQ_DEPTH * MSG_SLOT);
	if (!c->recv_buf)
		return -ENOMEM;
	rc = reg_mr_explained(c->pd, c->recv_buf, CONN_RQ_DEPTH * MSG_SLOT, IBV_ACCESS_LOCAL_WRITE,
	                      &c->recv_mr, "receive buffers");
	if (rc)
		return rc;
	for (unsigned i = 0; i < CONN_RQ_DEPTH; i++) {
		rc = conn_post_recv(c, i);
		if (rc)
			goto fail;
	}
	return 0;
fail:
	RF_ERR(SUBSYS, "%s: cannot set up the queue pair: %s", c->name, strerror(-rc));
	return rc;
}

/* A rejection: ours carries a reason, anything else means nobody listens. */
static int conn_rejected(struct rdma_conn *c, const struct rdma_cm_event *ev, uint64_t token)
{
	struct rf_rdma_rej rej;

	if (rf_rdma_rej_decode(ev->param.conn.private_data, ev->param.conn.private_data_len,
	                       &rej)) {
		RF_ERR(SUBSYS,
		       "%s: connection refused (no repfabric hub listening? reject "
		       "status %d)",
		       c->name, ev->status);
		return -ECONNREFUSED;
	}
	switch (rej.reason) {
	case RF_RDMA_REJ_REFUSED:
		RF_ERR(SUBSYS, "%s: the hub refused token %#llx: %s", c->name,
		       (unsigned long long)token, strerror(rej.err));
		return -rej.err; /* ENOENT: unknown token, EBUSY: attached elsewhere... */
	case RF_RDMA_REJ_BAD_VERSION:
		RF_ERR(SUBSYS, "%s: the hub speaks rdma protocol version %u, not %u", c->name,
		       rej.version, RF_RDMA_VERSION);
		return -EPROTO;
	case RF_RDMA_REJ_BAD_REQUEST:
		RF_ERR(SUBSYS, "%s: the hub rejected our connect request as malformed", c->name);
		return -EPROTO;
	case RF_RDMA_REJ_HUB_ERROR:
	default:
		RF_ERR(SUBSYS, "%s: the hub failed to attach the ring (reason %u): %s", c->name,
		       rej.reason, strerror(rej.err));
		return -ECONNREFUSED;
	}
}

/* Size and register the staging ring; halve it while memlock refuses. */
static int conn_setup_staging(struct rdma_conn *c)
{
	uint64_t want = STAGE_MAX;
	int rc;

	if (c->data_size < (STAGE_MAX - (64u << 10)) / 2)
		want = 2 * c->data_size + (64u << 10);
	want = (want + 4095) & ~(uint64_t)4095;
	for (;;) {
		c->stage = mem_alloc(want);
		if (!c->stage)
			return -ENOMEM;
		c->stage_size = want;
		rc = rf_verbs->reg_mr(c->pd, c->stage, want, 0, &c->stage_mr);
		if (!rc)
			break;
		mem_free(c->stage, want);
		c->stage = NULL;
		c->stage_size = 0;
		if (rc != -ENOMEM || want / 2 < STAGE_MIN) {
			explain_reg_failure(rc, want, "the staging area");
			return rc;
		}
		RF_WARN(SUBSYS,
		        "%s: cannot lock a %llu KiB staging area (ulimit -l?); trying half; "
		        "larger posts will register their buffers on the fly",
		        c->name, (unsigned long long)(want >> 10));
		want /= 2;
	}
	RF_DEBUG(SUBSYS, "%s: staging area %llu KiB", c->name,
	         (unsigned long long)(c->stage_size >> 10));
	return 0;
}

static int rdma_connect_(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                         struct rf_fab_ring_info *info)
{
	int64_t deadline = deadline_of(timeout_ms);
	struct rdma_conn_param param = {
	    .responder_resources = 0,
	    .initiator_depth = 0,
	    .retry_count = RC_RETRY_COUNT,
	    .rnr_retry_count = RC_RNR_RETRY_INF,
	};
	unsigned char req[RF_RDMA_REQ_LEN];
	struct rf_rdma_acc acc = {0};
	struct rdma_cm_event *ev;
	struct addrinfo *ai = NULL;
	struct rdma_conn *c;
	int rc;

	*out = NULL;
	rc = resolve(addr, 0, &ai);
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	c->epfd = -1;
	c->sig.fd = -1;
	c->q.esz = sizeof(struct rf_fab_event);
	snprintf(c->name, sizeof(c->name), "rdma://%s", addr);

	rc = open_channel(&c->ch, c->name);
	if (rc)
		goto fail;
	rc = rf_verbs->create_id(c->ch, &c->id, c, RDMA_PS_TCP);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot create a CM id: %s", c->name, strerror(-rc));
		goto fail;
	}
	rc = conn_resolve(c, ai->ai_addr, deadline);
	if (rc)
		goto fail;
	rc = conn_setup_qp(c);
	if (rc)
		goto fail;

	rf_rdma_req_encode(req, token);
	param.private_data = req;
	param.private_data_len = sizeof(req);
	rc = rf_verbs->connect(c->id, &param);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_connect: %s", c->name, strerror(-rc));
		goto fail;
	}
	rc = wait_cm_event(c->ch, deadline, &ev);
	if (rc) {
		if (rc == -ETIMEDOUT)
			RF_ERR(SUBSYS, "%s: no answer from the hub within %d ms", c->name,
			       timeout_ms);
		else
			RF_ERR(SUBSYS, "%s: waiting for the hub: %s", c->name, strerror(-rc));
		goto fail;
	}
	switch (ev->event) {
	case RDMA_CM_EVENT_ESTABLISHED:
		rc = rf_rdma_acc_decode(ev->param.conn.private_data,
		                        ev->param.conn.private_data_len, &acc);
		if (rc)
			RF_ERR(SUBSYS, "%s: the hub's accept message is malformed", c->name);
		else
			c->connected = 1;
		break;
	case RDMA_CM_EVENT_REJECTED:
		rc = conn_rejected(c, ev, token);
		break;
	case RDMA_CM_EVENT_UNREACHABLE:
		rc = status_errno(ev->status, -EHOSTUNREACH);
		RF_ERR(SUBSYS, "%s: hub unreachable: %s", c->name, strerror(-rc));
		break;
	default:
		rc = status_errno(ev->status, -ECONNREFUSED);
		RF_ERR(SUBSYS, "%s: connect failed: %s (%s)", c->name, rdma_event_str(ev->event),
		       strerror(-rc));
		break;
	}
	rf_verbs->ack_cm_event(ev);
	if (rc)
		goto fail;
	c->remote_addr = acc.addr;
	c->rkey = acc.rkey;
	c->data_size = acc.data_size;
	set_min_rnr_timer(c->id->qp, c->name);

	rc = conn_setup_staging(c);
	if (rc)
		goto fail;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->sig.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->epfd < 0 || c->sig.fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = epoll_add(c->epfd, c->ch->fd, TAG_CM)) ||
	    (rc = epoll_add(c->epfd, c->cc->fd, TAG_CQ)) ||
	    (rc = epoll_add(c->epfd, c->sig.fd, TAG_SIG)))
		goto fail;

	info->ring_id = acc.ring_id;
	info->data_size = acc.data_size;
	info->pos = acc.pos;
	freeaddrinfo(ai);
	RF_INFO(SUBSYS, "%s: attached to ring %#llx (%llu bytes) with token %#llx", c->name,
	        (unsigned long long)acc.ring_id, (unsigned long long)acc.data_size,
	        (unsigned long long)token);
	*out = &c->base;
	return 0;
fail:
	freeaddrinfo(ai);
	conn_destroy(c);
	return rc;
}

/* Place @len bytes in the staging ring; the ring is FIFO-freed by completions. */
static int stage_alloc(struct rdma_conn *c, uint32_t len, uint64_t *off)
{
	uint64_t a = (len + STAGE_ALIGN - 1) & ~(uint64_t)(STAGE_ALIGN - 1);
	uint64_t pos = c->stage_head % c->stage_size;
	uint64_t skip = pos + a > c->stage_size ? c->stage_size - pos : 0;

	if (c->stage_head + skip + a - c->stage_tail > c->stage_size)
		return -EAGAIN;
	*off = (c->stage_head + skip) % c->stage_size;
	c->stage_head += skip + a;
	return 0;
}

static int rdma_post(struct rf_fab_conn *base, const struct rf_fab_seg *segs, unsigned nseg,
                     uint64_t last_seq, uint64_t cookie)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);
	struct ibv_send_wr wr[RF_FAB_MAX_SEGS], *bad;
	struct ibv_sge sge[RF_FAB_MAX_SEGS];
	struct rdma_post_slot *slot;
	uint64_t total = 0, save;
	int rc;

	if (c->broken)
		return -ENOTCONN;
	if (c->post_next - c->post_done >= CONN_MAX_POSTS)
		return -EAGAIN;
	if (c->post_next == c->post_done)
		c->stage_head = c->stage_tail = 0; /* idle: start at the beginning */
	slot = &c->slots[c->post_next % CONN_MAX_POSTS];
	slot->nmr = 0;
	slot->cookie = cookie;
	save = c->stage_head;
	for (unsigned i = 0; i < nseg; i++)
		total += (segs[i].len + STAGE_ALIGN - 1) & ~(uint64_t)(STAGE_ALIGN - 1);

	for (unsigned i = 0; i < nseg; i++) {
		if (total <= c->stage_size) {
			uint64_t off;

			if (stage_alloc(c, segs[i].len, &off)) {
				c->stage_head = save;
				return -EAGAIN;
			}
			memcpy(c->stage + off, segs[i].buf, segs[i].len);
			sge[i].addr = (uintptr_t)(c->stage + off);
			sge[i].lkey = c->stage_mr->lkey;
		} else {
			/* Slow path: larger than the whole staging ring. */
			rc = reg_mr_explained(c->pd, (void *)segs[i].buf, segs[i].len, 0,
			                      &slot->mrs[slot->nmr], "a send buffer");
			if (rc) {
				conn_release_slot(slot);
				return rc;
			}
			sge[i].addr = (uintptr_t)segs[i].buf;
			sge[i].lkey = slot->mrs[slot->nmr]->lkey;
			slot->nmr++;
		}
		sge[i].length = segs[i].len;
		memset(&wr[i], 0, sizeof(wr[i]));
		wr[i].wr_id = WR_SEND | WR_VAL(c->post_next);
		wr[i].sg_list = &sge[i];
		wr[i].num_sge = 1;
		wr[i].opcode = IBV_WR_RDMA_WRITE;
		wr[i].wr.rdma.remote_addr = c->remote_addr + segs[i].off;
		wr[i].wr.rdma.rkey = c->rkey;
		wr[i].next = i + 1 < nseg ? &wr[i + 1] : NULL;
	}
	wr[nseg - 1].opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
	wr[nseg - 1].imm_data = htonl((uint32_t)last_seq);
	wr[nseg - 1].send_flags = IBV_SEND_SIGNALED;
	slot->stage_end = c->stage_head;

	rc = rf_verbs->post_send(c->id->qp, wr, &bad);
	if (rc) {
		c->stage_head = save;
		conn_release_slot(slot);
		if (rc == -ENOMEM)
			return -EAGAIN;
		conn_fail(c, rc, "posting RDMA writes failed");
		return -ENOTCONN;
	}
	c->post_next++;
	return 0;
}

static void conn_complete_posts(struct rdma_conn *c, uint64_t upto)
{
	/* Completions arrive in order; @upto also covers any earlier post. */
	while (c->post_done != c->post_next) {
		struct rdma_post_slot *s = &c->slots[c->post_done % CONN_MAX_POSTS];
		struct rf_fab_event ev = {.type = RF_FAB_EV_SENT, .cookie = s->cookie};
		int last = WR_VAL(c->post_done) == upto;

		c->stage_tail = s->stage_end;
		conn_release_slot(s);
		c->post_done++;
		conn_push(c, &ev);
		if (last)
			break;
	}
}

static void conn_handle_wc(struct rdma_conn *c, const struct ibv_wc *wc)
{
	int is_send = WR_KIND(wc->wr_id) == WR_SEND;

	if (c->broken)
		return; /* flushes after the first error */
	if (wc->status != IBV_WC_SUCCESS) {
		conn_fail(c, wc_errno(wc->status), "%s completed with %s (vendor error %#x)",
		          is_send ? "an RDMA write" : "a receive", ibv_wc_status_str(wc->status),
		          wc->vendor_err);
		return;
	}
	if (is_send) {
		conn_complete_posts(c, WR_VAL(wc->wr_id));
	} else if (WR_KIND(wc->wr_id) == WR_RECV && WR_VAL(wc->wr_id) < CONN_RQ_DEPTH) {
		unsigned idx = (unsigned)WR_VAL(wc->wr_id);
		struct rf_fab_event ev = {.type = RF_FAB_EV_POSITION};
		const unsigned char *m = (const unsigned char *)c->recv_buf + idx * MSG_SLOT;
		int rc;

		if (wc->opcode != IBV_WC_RECV || rf_rdma_pos_decode(m, wc->byte_len, &ev.pos)) {
			conn_fail(c, -EPROTO, "malformed position message (%u bytes)",
			          wc->byte_len);
			return;
		}
		conn_push(c, &ev);
		rc = conn_post_recv(c, idx);
		if (rc)
			conn_fail(c, rc, "reposting a receive failed");
	} else {
		conn_fail(c, -EPROTO, "completion with unknown wr_id %#llx",
		          (unsigned long long)wc->wr_id);
	}
}

static void conn_drain_cq(struct rdma_conn *c)
{
	struct ibv_wc wc[CQ_BATCH];
	int total = 0, n;

	c->cq_more = 0;
	while (!c->broken) {
		n = rf_verbs->poll_cq(c->cq, CQ_BATCH, wc);
		if (n < 0) {
			conn_fail(c, n, "polling the completion queue failed");
			return;
		}
		for (int i = 0; i < n; i++)
			conn_handle_wc(c, &wc[i]);
		if (n < CQ_BATCH)
			return;
		total += n;
		if (total >= CQ_DRAIN_MAX) {
			c->cq_more = 1;
			return;
		}
	}
}

static void conn_cm_events(struct rdma_conn *c)
{
	struct rdma_cm_event *ev;

	while (rf_verbs->get_cm_event(c->ch, &ev) == 0) {
		switch (ev->event) {
		case RDMA_CM_EVENT_DISCONNECTED:
			c->connected = 0;
			conn_fail(c, -ECONNRESET, "the hub disconnected");
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			conn_fail(c, -ENODEV, "the RDMA device was removed");
			break;
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			break;
		default:
			RF_DEBUG(SUBSYS, "%s: CM event %s ignored", c->name,
			         rdma_event_str(ev->event));
			break;
		}
		rf_verbs->ack_cm_event(ev);
	}
}

static void conn_progress(struct rdma_conn *c)
{
	struct epoll_event evs[4];
	int n = epoll_wait(c->epfd, evs, 4, 0);

	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == TAG_CM) {
			conn_cm_events(c);
		} else if (evs[i].data.u64 == TAG_CQ) {
			struct ibv_cq *cq;
			void *ctx;

			if (rf_verbs->get_cq_event(c->cc, &cq, &ctx) == 0) {
				rf_verbs->ack_cq_events(cq, 1);
				if (!c->broken) {
					int rc = rf_verbs->req_notify_cq(c->cq, 0);

					if (rc)
						conn_fail(c, rc, "arming the CQ failed");
				}
			}
		}
	}
	conn_drain_cq(c);
}

static int rdma_poll(struct rf_fab_conn *base, struct rf_fab_event *evs, int max, int timeout_ms)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);
	int64_t deadline = deadline_of(timeout_ms);
	int n = 0;

	for (;;) {
		struct epoll_event e;
		int left;

		conn_progress(c);
		if (c->q.n)
			break;
		left = remaining_ms(deadline);
		if (left == 0)
			break;
		sig_update(&c->sig, c->cq_more);
		if (epoll_wait(c->epfd, &e, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
	while (n < max && evq_pop(&c->q, &evs[n]))
		n++;
	sig_update(&c->sig, c->q.n > 0 || c->cq_more);
	return n;
}

static int rdma_conn_fd(const struct rf_fab_conn *base)
{
	const struct rdma_conn *c = container_of(base, const struct rdma_conn, base);

	return c->epfd;
}

static void rdma_close(struct rf_fab_conn *base)
{
	struct rdma_conn *c = container_of(base, struct rdma_conn, base);

	RF_DEBUG(SUBSYS, "%s: closing", c->name);
	conn_destroy(c);
}

/* ================================================================= hub */

enum peer_state {
	PEER_CONNECTING, /* accepted, ATTACHED not yet queued */
	PEER_LIVE,       /* ATTACHED queued */
	PEER_DEAD,       /* fenced, DETACHED queued */
};

struct rdma_listener;

struct rdma_peer {
	struct rf_fab_peer base;
	struct rdma_listener *l;
	struct rdma_peer *next;
	struct rf_pending pend; /* in l->base.admit from rdma_accept to ESTABLISHED */
	char name[96];          /* "IP:PORT token 0x..." for log lines */

	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	int qp_created;
	int accepted;
	int in_epoll;

	struct rf_fab_ring_mem mem;
	struct ibv_mr *ring_mr;
	unsigned char *pub_buf; /* PEER_PUB_SLOTS x MSG_SLOT */
	struct ibv_mr *pub_mr;

	uint64_t token;
	uint64_t last_seq; /* the last doorbell, extended to 64 bits */
	enum peer_state state;
	int delivered; /* its DETACHED was returned: free at the next poll */

	unsigned pub_inflight, pub_next;
	int pub_pending;
	struct rf_fab_position pub_pos;
};

struct rdma_listener {
	struct rf_fab_listener base;
	char name[280];
	const struct rf_fab_hub_ops *ops;
	void *ctx;

	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	int epfd;
	struct sigfd sig;
	struct evq q;
	int more; /* a peer CQ was left non-empty by the drain bound */
	struct rdma_peer *peers;
};

static void hub_push(struct rdma_listener *l, enum rf_fab_hub_event_type type, struct rdma_peer *p,
                     uint64_t seq, int err)
{
	struct rf_fab_hub_event ev = {
	    .type = type, .peer = &p->base, .token = p->token, .seq = seq, .err = err};

	/* Only a peer's newest doorbell matters: fold a DATA event into the
	 * peer's DATA event at the tail, so the queue stays short however
	 * many doorbells complete between two polls. */
	if (type == RF_FAB_HEV_DATA && l->q.n) {
		struct rf_fab_hub_event *tail =
		    (void *)(l->q.buf + ((l->q.head + l->q.n - 1) % l->q.cap) * l->q.esz);

		if (tail->type == RF_FAB_HEV_DATA && tail->peer == &p->base) {
			tail->seq = seq;
			sig_update(&l->sig, 1);
			return;
		}
	}
	if (evq_push(&l->q, &ev))
		RF_ERR(SUBSYS, "%s: out of memory queueing an event (type %d)", p->name, (int)type);
	sig_update(&l->sig, 1);
}

/*
 * The producer is gone or fenced: stop its writes (QP to error), take away
 * the ring (deregister the MR), disconnect and queue DETACHED. Returns the
 * first error of the QP transition or the deregistration.
 */
static int peer_die(struct rdma_peer *p, int err, const char *why)
{
	int rc = 0, r;

	if (p->state == PEER_DEAD)
		return 0;
	rf_admit_pending_del(&p->l->base.admit, &p->pend);
	if (p->state == PEER_CONNECTING)
		hub_push(p->l, RF_FAB_HEV_ATTACHED, p, 0, 0);
	if (p->qp_created) {
		struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

		r = rf_verbs->modify_qp(p->id->qp, &a, IBV_QP_STATE);
		if (r) {
			RF_ERR(SUBSYS, "%s: moving the QP to error failed: %s", p->name,
			       strerror(-r));
			rc = r;
		}
	}
	if (p->ring_mr) {
		r = rf_verbs->dereg_mr(p->ring_mr);
		if (r) {
			RF_ERR(SUBSYS, "%s: deregistering the ring failed: %s", p->name,
			       strerror(-r));
			rc = rc ?: r;
		}
		p->ring_mr = NULL;
	}
	if (p->accepted) {
		r = rf_verbs->disconnect(p->id);
		if (r)
			RF_DEBUG(SUBSYS, "%s: disconnect: %s", p->name, strerror(-r));
		p->accepted = 0;
	}
	if (p->in_epoll) {
		epoll_ctl(p->l->epfd, EPOLL_CTL_DEL, p->cc->fd, NULL);
		p->in_epoll = 0;
	}
	p->state = PEER_DEAD;
	RF_FAB_COUNT(&p->l->base, &p->base, detaches, 1);
	/* A disconnect (0) or a fence (-ECANCELED) is not a failure. */
	if (err && err != -ECANCELED) {
		RF_FAB_COUNT(&p->l->base, &p->base, errors, 1);
		RF_WARN(SUBSYS, "%s: detached: %s (%s)", p->name, why, strerror(-err));
	} else {
		RF_INFO(SUBSYS, "%s: detached: %s", p->name, why);
	}
	hub_push(p->l, RF_FAB_HEV_DETACHED, p, p->last_seq, err);
	return rc;
}

static void peer_free(struct rdma_peer *p)
{
	struct rdma_peer **pp;
	int rc;

	for (pp = &p->l->peers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	if (p->in_epoll)
		epoll_ctl(p->l->epfd, EPOLL_CTL_DEL, p->cc->fd, NULL);
	if (p->qp_created)
		rf_verbs->destroy_qp(p->id);
	if (p->ring_mr && (rc = rf_verbs->dereg_mr(p->ring_mr)))
		RF_WARN(SUBSYS, "%s: deregistering the ring: %s", p->name, strerror(-rc));
	if (p->pub_mr && (rc = rf_verbs->dereg_mr(p->pub_mr)))
		RF_WARN(SUBSYS, "%s: deregistering send buffers: %s", p->name, strerror(-rc));
	free(p->pub_buf);
	if (p->cq && (rc = rf_verbs->destroy_cq(p->cq)))
		RF_WARN(SUBSYS, "%s: destroying the CQ: %s", p->name, strerror(-rc));
	if (p->cc && (rc = rf_verbs->destroy_comp_channel(p->cc)))
		RF_WARN(SUBSYS, "%s: destroying the completion channel: %s", p->name,
		        strerror(-rc));
	if (p->pd && (rc = rf_verbs->dealloc_pd(p->pd)))
		RF_WARN(SUBSYS, "%s: deallocating the PD: %s", p->name, strerror(-rc));
	if (p->id && (rc = rf_verbs->destroy_id(p->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", p->name, strerror(-rc));
	free(p);
}

static int peer_post_recv(struct rdma_peer *p, unsigned idx)
{
	/* A WRITE_WITH_IMM consumes a receive but places no bytes in it. */
	struct ibv_recv_wr wr = {.wr_id = WR_RECV | idx, .sg_list = NULL, .num_sge = 0};
	struct ibv_recv_wr *bad;

	return rf_verbs->post_recv(p->id->qp, &wr, &bad);
}

static int peer_send_pos(struct rdma_peer *p, const struct rf_fab_position *pos)
{
	unsigned slot = p->pub_next % PEER_PUB_SLOTS;
	struct ibv_sge sge = {
	    .addr = (uintptr_t)(p->pub_buf + slot * MSG_SLOT),
	    .length = RF_RDMA_POS_LEN,
	    .lkey = p->pub_mr->lkey,
	};
	struct ibv_send_wr wr = {
	    .wr_id = WR_SEND | slot,
	    .sg_list = &sge,
	    .num_sge = 1,
	    .opcode = IBV_WR_SEND,
	    .send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	int rc;

	rf_rdma_pos_encode(p->pub_buf + slot * MSG_SLOT, pos);
	rc = rf_verbs->post_send(p->id->qp, &wr, &bad);
	if (rc) {
		peer_die(p, rc, "posting a position message failed");
		return -ENOTCONN;
	}
	p->pub_next++;
	p->pub_inflight++;
	rf_fab_count_credit(&p->l->base, &p->base, pos);
	return 0;
}

/* Seq from a doorbell: the 64-bit value >= last whose low 32 bits are @imm. */
static uint64_t seq_extend(uint64_t last, uint32_t imm)
{
	uint64_t s = (last & ~(uint64_t)0xffffffff) | imm;

	if (s < last)
		s += (uint64_t)1 << 32;
	return s;
}

static void peer_handle_wc(struct rdma_peer *p, const struct ibv_wc *wc)
{
	int rc;

	if (p->state == PEER_DEAD)
		return;
	if (wc->status != IBV_WC_SUCCESS) {
		char why[160];

		snprintf(why, sizeof(why), "%s completed with %s (vendor error %#x)",
		         WR_KIND(wc->wr_id) == WR_SEND ? "a position send" : "a receive",
		         ibv_wc_status_str(wc->status), wc->vendor_err);
		peer_die(p, wc_errno(wc->status), why);
		return;
	}
	if (WR_KIND(wc->wr_id) == WR_RECV) {
		if (wc->opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc->wc_flags & IBV_WC_WITH_IMM)) {
			peer_die(p, -EPROTO, "the producer sent a message instead of a doorbell");
			return;
		}
		if (p->state == PEER_CONNECTING) {
			/* Data before the ESTABLISHED event (a lost RTU). */
			p->state = PEER_LIVE;
			hub_push(p->l, RF_FAB_HEV_ATTACHED, p, 0, 0);
		}
		p->last_seq = seq_extend(p->last_seq, ntohl(wc->imm_data));
		RF_FAB_COUNT(&p->l->base, &p->base, completions, 1);
		hub_push(p->l, RF_FAB_HEV_DATA, p, p->last_seq, 0);
		rc = peer_post_recv(p, (unsigned)WR_VAL(wc->wr_id));
		if (rc)
			peer_die(p, rc, "reposting a receive failed");
	} else if (WR_KIND(wc->wr_id) == WR_SEND) {
		if (p->pub_inflight)
			p->pub_inflight--;
		if (p->pub_pending) {
			p->pub_pending = 0;
			peer_send_pos(p, &p->pub_pos);
		}
	}
}

static void peer_drain_cq(struct rdma_peer *p)
{
	struct ibv_wc wc[CQ_BATCH];
	int total = 0, n;

	while (p->state != PEER_DEAD) {
		n = rf_verbs->poll_cq(p->cq, CQ_BATCH, wc);
		if (n < 0) {
			peer_die(p, n, "polling the completion queue failed");
			return;
		}
		for (int i = 0; i < n; i++)
			peer_handle_wc(p, &wc[i]);
		if (n < CQ_BATCH)
			return;
		total += n;
		if (total >= CQ_DRAIN_MAX) {
			p->l->more = 1;
			return;
		}
	}
}

static void hub_reject(struct rdma_listener *l, struct rdma_cm_id *id, unsigned reason, int err)
{
	unsigned char rej[RF_RDMA_REJ_LEN];
	int rc;

	rf_rdma_rej_encode(rej, reason, err < 0 ? -err : err);
	rc = rf_verbs->reject(id, rej, sizeof(rej));
	if (rc)
		RF_WARN(SUBSYS, "%s: rdma_reject: %s", l->name, strerror(-rc));
}

/* PD, ring MR, CQ, QP, receives; the peer is on the list and in the epoll set. */
static int peer_setup(struct rdma_peer *p)
{
	struct ibv_context *ctx = p->id->verbs;
	struct ibv_qp_init_attr qa = {
	    .qp_type = IBV_QPT_RC,
	    .cap =
	        {
	            .max_send_wr = PEER_SQ_DEPTH,
	            .max_recv_wr = PEER_RQ_DEPTH,
	            .max_send_sge = 1,
	            .max_recv_sge = 1,
	        },
	    .sq_sig_all = 0,
	};
	char what[64];
	int rc;

	rc = rf_verbs->alloc_pd(ctx, &p->pd);
	if (rc)
		goto fail;
	snprintf(what, sizeof(what), "the ring of token %#llx", (unsigned long long)p->token);
	rc = reg_mr_explained(p->pd, p->mem.data, p->mem.data_size,
	                      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &p->ring_mr, what);
	if (rc)
		return rc;
	p->pub_buf = aligned_alloc(MSG_SLOT, PEER_PUB_SLOTS * MSG_SLOT);
	if (!p->pub_buf)
		return -ENOMEM;
	memset(p->pub_buf, 0, PEER_PUB_SLOTS * MSG_SLOT);
	rc = reg_mr_explained(p->pd, p->pub_buf, PEER_PUB_SLOTS * MSG_SLOT, 0, &p->pub_mr,
	                      "send buffers");
	if (rc)
		return rc;
	rc = rf_verbs->create_comp_channel(ctx, &p->cc);
	if (rc)
		goto fail;
	rc = set_nonblock(p->cc->fd);
	if (rc)
		goto fail;
	rc = rf_verbs->create_cq(ctx, PEER_CQ_DEPTH, p, p->cc, &p->cq);
	if (rc)
		goto fail;
	rc = rf_verbs->req_notify_cq(p->cq, 0);
	if (rc)
		goto fail;
	qa.send_cq = p->cq;
	qa.recv_cq = p->cq;
	rc = rf_verbs->create_qp(p->id, p->pd, &qa);
	if (rc)
		goto fail;
	p->qp_created = 1;
	for (unsigned i = 0; i < PEER_RQ_DEPTH; i++) {
		rc = peer_post_recv(p, i);
		if (rc)
			goto fail;
	}
	rc = epoll_add(p->l->epfd, p->cc->fd, (uint64_t)(uintptr_t)p);
	if (rc)
		goto fail;
	p->in_epoll = 1;
	return 0;
fail:
	RF_ERR(SUBSYS, "%s: cannot set up the queue pair: %s", p->name, strerror(-rc));
	return rc;
}

static void hub_connect_request(struct rdma_listener *l, struct rdma_cm_id *id,
                                const unsigned char *pdata, size_t plen)
{
	struct rdma_conn_param param = {
	    .responder_resources = 0,
	    .initiator_depth = 0,
	    .rnr_retry_count = RC_RNR_RETRY_INF,
	};
	unsigned char acc[RF_RDMA_ACC_LEN];
	struct rf_rdma_req req;
	struct rf_pending *victim;
	struct rdma_peer *p;
	char from[64];
	int rc;

	addr_str(rdma_get_peer_addr(id), from, sizeof(from));
	rc = rf_rdma_req_decode(pdata, plen, &req);
	if (rc) {
		unsigned reason =
		    rc == -EPROTONOSUPPORT ? RF_RDMA_REJ_BAD_VERSION : RF_RDMA_REJ_BAD_REQUEST;

		RF_WARN(SUBSYS, "%s: rejected a connection from %s: %s", l->name, from,
		        reason == RF_RDMA_REJ_BAD_VERSION
		            ? "unsupported protocol version"
		            : "not a repfabric connect request (bad length or magic)");
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, reason, rc);
		rf_verbs->destroy_id(id);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		RF_ERR(SUBSYS, "%s: out of memory for a connection from %s", l->name, from);
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, ENOMEM);
		rf_verbs->destroy_id(id);
		return;
	}
	p->base.prov = &rf_fab_rdma_provider;
	p->l = l;
	p->id = id;
	p->token = req.token;
	p->state = PEER_CONNECTING;
	snprintf(p->name, sizeof(p->name), "%s token %#llx", from, (unsigned long long)req.token);

	rc = l->ops->attach(l->ctx, req.token, &p->mem);
	if (rc) {
		RF_WARN(SUBSYS, "%s: refused token %#llx from %s: %s", l->name,
		        (unsigned long long)req.token, from, strerror(-rc));
		RF_FAB_COUNT_L(&l->base, refused, 1);
		RF_FAB_COUNT_L(&l->base, errors, 1);
		hub_reject(l, id, RF_RDMA_REJ_REFUSED, rc);
		rf_verbs->destroy_id(id);
		free(p);
		return;
	}
	/* From here on the attach is paired with ATTACHED ... DETACHED. */
	RF_FAB_COUNT(&l->base, &p->base, attaches, 1);
	p->base.credit_head = p->mem.info.pos.head_pos;
	id->context = p;
	p->next = l->peers;
	l->peers = p;
	p->last_seq = p->mem.info.pos.durable_seq ? p->mem.info.pos.durable_seq - 1 : 0;
	if (!p->mem.data || p->mem.data_size == 0 || p->mem.data_size % 256) {
		RF_ERR(SUBSYS, "%s: attach gave an unusable ring (data %p, %llu bytes)", p->name,
		       p->mem.data, (unsigned long long)p->mem.data_size);
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, EINVAL);
		peer_die(p, -EINVAL, "unusable ring memory");
		return;
	}
	if (p->mem.info.data_size && p->mem.info.data_size != p->mem.data_size)
		RF_WARN(SUBSYS, "%s: ring info says %llu bytes, memory is %llu; using the latter",
		        p->name, (unsigned long long)p->mem.info.data_size,
		        (unsigned long long)p->mem.data_size);
	rc = peer_setup(p);
	if (rc) {
		hub_reject(l, id, RF_RDMA_REJ_HUB_ERROR, rc);
		peer_die(p, rc, "cannot set up RDMA resources");
		return;
	}
	rf_rdma_acc_encode(acc, p->mem.info.ring_id, p->mem.data_size,
	                   (uint64_t)(uintptr_t)p->mem.data, p->ring_mr->rkey, &p->mem.info.pos);
	param.private_data = acc;
	param.private_data_len = sizeof(acc);
	rc = rf_verbs->accept(id, &param);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_accept: %s", p->name, strerror(-rc));
		peer_die(p, rc, "accept failed");
		return;
	}
	p->accepted = 1;
	set_min_rnr_timer(id->qp, p->name);
	/* Until ESTABLISHED it holds a QP and pinned memory: bounded in time and number. */
	victim = rf_admit_pending_add(&l->base.admit, &p->pend, rf_now_ms());
	if (victim)
		peer_die(container_of(victim, struct rdma_peer, pend), -ETIMEDOUT,
		         "dropped for a newer connection (too many not yet established)");
	RF_INFO(SUBSYS, "%s: accepted, ring %#llx (%llu bytes)", p->name,
	        (unsigned long long)p->mem.info.ring_id, (unsigned long long)p->mem.data_size);
}

static void hub_cm_events(struct rdma_listener *l)
{
	struct rdma_cm_event *ev;

	while (rf_verbs->get_cm_event(l->ch, &ev) == 0) {
		struct rdma_peer *p = ev->id != l->id ? ev->id->context : NULL;
		enum rdma_cm_event_type type = ev->event;
		int status = ev->status;

		if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
			unsigned char pdata[256];
			struct rdma_cm_id *id = ev->id;
			size_t plen = ev->param.conn.private_data_len;

			if (plen > sizeof(pdata))
				plen = sizeof(pdata);
			if (plen)
				memcpy(pdata, ev->param.conn.private_data, plen);
			rf_verbs->ack_cm_event(ev);
			hub_connect_request(l, id, pdata, plen);
			continue;
		}
		rf_verbs->ack_cm_event(ev);
		switch (type) {
		case RDMA_CM_EVENT_ESTABLISHED:
			if (p && p->state == PEER_CONNECTING) {
				rf_admit_pending_del(&l->base.admit, &p->pend);
				p->state = PEER_LIVE;
				hub_push(l, RF_FAB_HEV_ATTACHED, p, 0, 0);
			}
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			if (p) {
				p->accepted = 0;
				peer_die(p, 0, "the producer disconnected");
			}
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			if (p)
				peer_die(p, -ENODEV, "the RDMA device was removed");
			else
				RF_ERR(SUBSYS, "%s: the RDMA device under the listener was removed",
				       l->name);
			break;
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
			if (p) {
				p->accepted = 0;
				peer_die(p, status_errno(status, -ECONNABORTED),
				         rdma_event_str(type));
			}
			break;
		default:
			RF_DEBUG(SUBSYS, "%s: CM event %s ignored", l->name, rdma_event_str(type));
			break;
		}
	}
}

static void hub_progress(struct rdma_listener *l)
{
	struct epoll_event evs[16];
	int n = epoll_wait(l->epfd, evs, 16, 0);

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;

		if (tag == TAG_CM) {
			hub_cm_events(l);
		} else if (tag != TAG_SIG) {
			struct rdma_peer *p = (struct rdma_peer *)(uintptr_t)tag;
			struct ibv_cq *cq;
			void *ctx;

			if (p->state == PEER_DEAD)
				continue;
			if (rf_verbs->get_cq_event(p->cc, &cq, &ctx) == 0) {
				int rc;

				rf_verbs->ack_cq_events(cq, 1);
				rc = rf_verbs->req_notify_cq(p->cq, 0);
				if (rc)
					peer_die(p, rc, "arming the CQ failed");
			}
		}
	}
	l->more = 0;
	for (struct rdma_peer *p = l->peers; p; p = p->next)
		if (p->state != PEER_DEAD && p->qp_created)
			peer_drain_cq(p);
}

/* Drop the connections accepted but not established in time. */
static void expire_peers(struct rdma_listener *l)
{
	int64_t now = rf_now_ms();
	struct rf_pending *pend;

	rf_admit_tick(&l->base.admit, now);
	while ((pend = rf_admit_expired(&l->base.admit, now)))
		peer_die(container_of(pend, struct rdma_peer, pend), -ETIMEDOUT,
		         "the connection was not established in time");
}

static int rdma_listener_poll(struct rf_fab_listener *base, struct rf_fab_hub_event *evs, int max,
                              int timeout_ms)
{
	struct rdma_listener *l = container_of(base, struct rdma_listener, base);
	int64_t deadline = deadline_of(timeout_ms);
	struct rdma_peer *p, *next;
	int n = 0;

	for (p = l->peers; p; p = next) {
		next = p->next;
		if (p->delivered)
			peer_free(p);
	}
	expire_peers(l);
	for (;;) {
		struct epoll_event e;
		int left;

		hub_progress(l);
		if (l->q.n)
			break;
		left = remaining_ms(deadline);
		if (left == 0)
			break;
		sig_update(&l->sig, l->more);
		if (epoll_wait(l->epfd, &e, 1, left) < 0 && errno != EINTR)
			return -errno;
	}
	while (n < max && evq_pop(&l->q, &evs[n])) {
		if (evs[n].type == RF_FAB_HEV_DETACHED)
			container_of(evs[n].peer, struct rdma_peer, base)->delivered = 1;
		n++;
	}
	sig_update(&l->sig, l->q.n > 0 || l->more);
	return n;
}

static int rdma_listener_fd(const struct rf_fab_listener *base)
{
	const struct rdma_listener *l = container_of(base, const struct rdma_listener, base);

	return l->epfd;
}

static int rdma_publish(struct rf_fab_peer *base, const struct rf_fab_position *pos)
{
	struct rdma_peer *p = container_of(base, struct rdma_peer, base);

	if (p->state != PEER_LIVE)
		return -ENOTCONN;
	if (p->pub_inflight >= PEER_PUB_SLOTS) {
		/* Positions only grow: keep the newest until a slot frees. */
		p->pub_pending = 1;
		p->pub_pos = *pos;
		return 0;
	}
	return peer_send_pos(p, pos);
}

static int rdma_fence(struct rf_fab_peer *base)
{
	struct rdma_peer *p = container_of(base, struct rdma_peer, base);

	return peer_die(p, -ECANCELED, "fenced by the hub");
}

static void listener_destroy(struct rdma_listener *l)
{
	int rc;

	while (l->peers) {
		struct rdma_peer *p = l->peers;

		if (p->state != PEER_DEAD && p->qp_created) {
			struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};

			rf_verbs->modify_qp(p->id->qp, &a, IBV_QP_STATE);
		}
		if (p->accepted)
			rf_verbs->disconnect(p->id);
		peer_free(p);
	}
	if (l->id && (rc = rf_verbs->destroy_id(l->id)))
		RF_WARN(SUBSYS, "%s: destroying the CM id: %s", l->name, strerror(-rc));
	if (l->ch)
		rf_verbs->destroy_event_channel(l->ch);
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->sig.fd >= 0)
		close(l->sig.fd);
	free(l->q.buf);
	free(l);
}

static int rdma_listen_(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                        struct rf_fab_listener **out)
{
	struct addrinfo *ai = NULL;
	struct rdma_listener *l;
	int rc;

	*out = NULL;
	rc = resolve(addr, 1, &ai);
	if (rc)
		return rc;
	if (is_loopback(ai->ai_addr)) {
		RF_ERR(SUBSYS,
		       "rdma://%s: rdma_cm cannot connect over a loopback address; listen on "
		       "the IP of the RDMA device (rdma link show)",
		       addr);
		freeaddrinfo(ai);
		return -ENODEV;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	l->ops = ops;
	l->ctx = ctx;
	l->epfd = -1;
	l->sig.fd = -1;
	l->q.esz = sizeof(struct rf_fab_hub_event);
	snprintf(l->name, sizeof(l->name), "rdma://%s", addr);
	rf_admit_init(&l->base.admit, "rdma data listener", -1, NULL, NULL);

	rc = open_channel(&l->ch, l->name);
	if (rc)
		goto fail;
	rc = rf_verbs->create_id(l->ch, &l->id, NULL, RDMA_PS_TCP);
	if (rc) {
		RF_ERR(SUBSYS, "%s: cannot create a CM id: %s", l->name, strerror(-rc));
		goto fail;
	}
	rc = rf_verbs->bind_addr(l->id, ai->ai_addr);
	if (rc) {
		if (rc == -EADDRINUSE) {
			RF_ERR(SUBSYS, "%s: address already in use", l->name);
		} else if (rc == -ENODEV || rc == -EADDRNOTAVAIL) {
			RF_ERR(SUBSYS,
			       "%s: no RDMA device has this address (%s); bind rdma_rxe/siw or "
			       "use the IP of an RDMA NIC (rdma link show)",
			       l->name, strerror(-rc));
			rc = -ENODEV;
		} else {
			RF_ERR(SUBSYS, "%s: rdma_bind_addr: %s", l->name, strerror(-rc));
		}
		goto fail;
	}
	rc = rf_verbs->listen(l->id, LISTEN_BACKLOG);
	if (rc) {
		RF_ERR(SUBSYS, "%s: rdma_listen: %s", l->name, strerror(-rc));
		goto fail;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->sig.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->epfd < 0 || l->sig.fd < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = epoll_add(l->epfd, l->ch->fd, TAG_CM)) ||
	    (rc = epoll_add(l->epfd, l->sig.fd, TAG_SIG)))
		goto fail;
	freeaddrinfo(ai);
	RF_INFO(SUBSYS, "%s: listening", l->name);
	*out = &l->base;
	return 0;
fail:
	freeaddrinfo(ai);
	listener_destroy(l);
	return rc;
}

static void rdma_listener_close(struct rf_fab_listener *base)
{
	struct rdma_listener *l = container_of(base, struct rdma_listener, base);

	RF_DEBUG(SUBSYS, "%s: closing", l->name);
	listener_destroy(l);
}

const struct rf_fab_provider rf_fab_rdma_provider = {
    .scheme = "rdma",
    .connect = rdma_connect_,
    .post = rdma_post,
    .poll = rdma_poll,
    .conn_fd = rdma_conn_fd,
    .close = rdma_close,
    .listen = rdma_listen_,
    .listener_poll = rdma_listener_poll,
    .listener_fd = rdma_listener_fd,
    .publish = rdma_publish,
    .fence = rdma_fence,
    .listener_close = rdma_listener_close,
};

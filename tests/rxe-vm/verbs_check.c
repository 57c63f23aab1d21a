/* SPDX-License-Identifier: MIT */
/*
 * rf-verbs-check: repfabric's own end-to-end RDMA check, run in the
 * soft-RoCE VM (tests/rxe-vm) by tests/func/rxe_verbs.sh.
 *
 *   rf-verbs-check server --addr A --port P [--count N] [--size S] [--timeout SEC]
 *   rf-verbs-check client --addr A --port P [--count N] [--size S] [--timeout SEC] [--corrupt]
 *
 * The two sides connect with rdma_cm over an RC QP.  The server registers
 * a receive region of N * S bytes (REMOTE_WRITE) and hands its address and
 * rkey to the client in the accept private data.  The client writes buffer
 * i (a pattern derived from i) at offset i * S with RDMA WRITE WITH IMM,
 * immediate = i.  The server posts all N receives before accepting (so N
 * is bounded by the device's max_qp_wr and max_cqe), checks each
 * completion (IBV_WC_RECV_RDMA_WITH_IMM, immediate, length) and every
 * byte, and prints one report line.  --corrupt makes the client flip one byte of
 * buffer N/2 at offset S/2 (with the correct immediate): the server must
 * then fail naming that byte.
 *
 * Exit status: 0 verified, 1 data mismatch, 2 usage, 3 RDMA/verbs/timeout
 * error.  Every wait is bounded by --timeout (default 30 s).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "repfabric/log.h"
#include "repfabric/sockio.h"

#define SUBSYS "verbs-check"

#define VC_MAGIC      0x52465643u /* "RFVC" */
#define VC_VERSION    1
#define VC_MAX_DEPTH  128u /* outstanding work requests per queue */
#define VC_MAX_COUNT  (1u << 20)
#define VC_MAX_TOTAL  (1ull << 30) /* count * size */
#define VC_RESOLVE_MS 5000

enum { EXIT_VERIFIED = 0, EXIT_MISMATCH = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

struct vc_opts {
	bool server;
	const char *addr;
	const char *port;
	uint32_t count;
	uint32_t size;
	int timeout_ms;
	bool corrupt;
};

/*
 * Connect private data, both directions (client: count/size only; server:
 * also the region).  Fixed size, every field big-endian on the wire.
 */
struct vc_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t flags; /* 0 */
	uint32_t count;
	uint32_t size;
	uint64_t addr; /* server: remote address of buffer 0 */
	uint32_t rkey; /* server: rkey of the region */
	uint32_t reserved;
};
_Static_assert(sizeof(struct vc_hello) == 32, "vc_hello is a wire format");

/* Everything one side holds; torn down by vc_teardown() in reverse order. */
struct vc_ctx {
	const struct vc_opts *o;
	struct rdma_event_channel *ec;
	struct rdma_cm_id *listen_id; /* server only */
	struct rdma_cm_id *id;        /* the connection */
	struct ibv_pd *pd;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	bool have_qp;
	uint8_t *buf;
	size_t len;
	struct ibv_mr *mr;
	bool peer_gone;
	unsigned depth; /* client: writes in flight */
};

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* Errors from a CM event that is not the one we waited for. */
static int cm_event_errno(enum rdma_cm_event_type type)
{
	switch (type) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return -ECONNABORTED;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ECONNRESET;
	default:
		return -EPROTO;
	}
}

/* The two IB CM reject reasons one meets here (librdmacm has no decoder). */
static const char *reject_reason(int status)
{
	switch (status) {
	case 8: /* IB_CM_REJ_INVALID_SERVICE_ID */
		return ": nothing listens on that port";
	case 28: /* IB_CM_REJ_CONSUMER_DEFINED */
		return ": rejected by the server";
	default:
		return "";
	}
}

/*
 * Wait up to @timeout_ms for the next CM event, which must be @want.
 * On success *@out holds it and the caller acks it.
 */
static int vc_wait_cm(struct vc_ctx *c, enum rdma_cm_event_type want, int timeout_ms,
                      struct rdma_cm_event **out)
{
	int64_t deadline = rf_now_ms() + timeout_ms, left;
	struct pollfd pfd = {.fd = c->ec->fd, .events = POLLIN};
	struct rdma_cm_event *ev;
	int rc;

	for (;;) {
		if (rdma_get_cm_event(c->ec, &ev) == 0) {
			if (ev->event == want) {
				*out = ev;
				return 0;
			}
			RF_ERR(SUBSYS, "waiting for %s, got %s (status %d%s)", rdma_event_str(want),
			       rdma_event_str(ev->event), ev->status,
			       ev->event == RDMA_CM_EVENT_REJECTED ? reject_reason(ev->status)
			                                           : "");
			rc = cm_event_errno(ev->event);
			if (ev->event == RDMA_CM_EVENT_DISCONNECTED)
				c->peer_gone = true;
			rdma_ack_cm_event(ev);
			return rc;
		}
		if (errno != EAGAIN)
			return -errno;
		left = deadline - rf_now_ms();
		if (left <= 0)
			break;
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0)
			break;
	}
	RF_ERR(SUBSYS, "timed out after %d ms waiting for %s", timeout_ms, rdma_event_str(want));
	return -ETIMEDOUT;
}

/*
 * Return 1..@max completions, or -errno.  Sleeps on the completion channel
 * and the CM channel together, so a disconnect or the deadline ends the wait.
 */
static int vc_poll_cq(struct vc_ctx *c, struct ibv_wc *wc, int max, int64_t deadline)
{
	struct pollfd pfd[2] = {
	    {.fd = c->cc->fd, .events = POLLIN},
	    {.fd = c->ec->fd, .events = POLLIN},
	};
	struct rdma_cm_event *ev;
	struct ibv_cq *ev_cq;
	void *ev_ctx;
	int64_t left;
	int n, rc;

	for (;;) {
		n = ibv_poll_cq(c->cq, max, wc);
		if (n != 0)
			return n < 0 ? -EIO : n;
		if (c->peer_gone) {
			RF_ERR(SUBSYS, "the peer disconnected");
			return -ECONNRESET;
		}
		rc = ibv_req_notify_cq(c->cq, 0);
		if (rc)
			return -rc;
		/* A completion may have slipped in before the notify was armed. */
		n = ibv_poll_cq(c->cq, max, wc);
		if (n != 0)
			return n < 0 ? -EIO : n;

		left = deadline - rf_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		rc = poll(pfd, 2, (int)left);
		if (rc < 0 && errno != EINTR)
			return -errno;
		if (rc == 0)
			return -ETIMEDOUT;
		if ((pfd[0].revents & POLLIN) && ibv_get_cq_event(c->cc, &ev_cq, &ev_ctx) == 0)
			ibv_ack_cq_events(ev_cq, 1);
		if ((pfd[1].revents & POLLIN) && rdma_get_cm_event(c->ec, &ev) == 0) {
			RF_INFO(SUBSYS, "CM event %s (status %d)", rdma_event_str(ev->event),
			        ev->status);
			if (ev->event == RDMA_CM_EVENT_DISCONNECTED ||
			    ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL)
				c->peer_gone = true; /* drain the CQ, then fail */
			rdma_ack_cm_event(ev);
		}
	}
}

/* The byte pattern of buffer @index: splitmix64 seeded by the index. */
static void pattern_fill(uint8_t *p, uint32_t index, size_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ull * ((uint64_t)index + 1);

	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		for (size_t k = 0; k < 8 && i + k < len; k++)
			p[i + k] = (uint8_t)(z >> (8 * k));
	}
}

static void hello_encode(struct vc_hello *h, const struct vc_opts *o, uint64_t addr, uint32_t rkey)
{
	memset(h, 0, sizeof(*h));
	h->magic = htobe32(VC_MAGIC);
	h->version = htobe16(VC_VERSION);
	h->count = htobe32(o->count);
	h->size = htobe32(o->size);
	h->addr = htobe64(addr);
	h->rkey = htobe32(rkey);
}

/* Decode and validate a peer's hello; @from_server also wants a region. */
static int hello_decode(const void *data, size_t len, const struct vc_opts *o, bool from_server,
                        uint64_t *addr, uint32_t *rkey)
{
	struct vc_hello h;
	uint32_t count, size;

	if (!data || len < sizeof(h)) {
		RF_ERR(SUBSYS, "peer private data too short: %zu bytes, want %zu", data ? len : 0,
		       sizeof(h));
		return -EPROTO;
	}
	memcpy(&h, data, sizeof(h));
	if (be32toh(h.magic) != VC_MAGIC || be16toh(h.version) != VC_VERSION) {
		RF_ERR(SUBSYS, "peer private data: bad magic 0x%08x / version %u", be32toh(h.magic),
		       be16toh(h.version));
		return -EPROTO;
	}
	count = be32toh(h.count);
	size = be32toh(h.size);
	if (count != o->count || size != o->size) {
		RF_ERR(SUBSYS, "peer wants %u buffers of %u bytes, this side %u of %u", count, size,
		       o->count, o->size);
		return -EPROTO;
	}
	if (from_server) {
		*addr = be64toh(h.addr);
		*rkey = be32toh(h.rkey);
		if (*addr == 0 || *rkey == 0) {
			RF_ERR(SUBSYS, "server sent no region (addr 0x%llx rkey 0x%x)",
			       (unsigned long long)*addr, *rkey);
			return -EPROTO;
		}
	}
	return 0;
}

/*
 * PD, completion channel, CQ, QP on @c->id, and the registered buffer.
 * The QP takes @send_wr sends and @recv_wr receives; the CQ holds both.
 * Undone by vc_teardown().
 */
static int vc_setup(struct vc_ctx *c, int access, unsigned send_wr, unsigned recv_wr)
{
	struct ibv_device_attr da;
	struct ibv_qp_init_attr qa;
	int rc;

	rc = ibv_query_device(c->id->verbs, &da);
	if (rc)
		return -rc;
	if (send_wr > (unsigned)da.max_qp_wr || recv_wr > (unsigned)da.max_qp_wr ||
	    send_wr + recv_wr >= (unsigned)da.max_cqe) {
		RF_ERR(SUBSYS,
		       "%u sends + %u receives exceed the device limits (max_qp_wr %d, max_cqe %d)",
		       send_wr, recv_wr, da.max_qp_wr, da.max_cqe);
		return -E2BIG;
	}
	c->pd = ibv_alloc_pd(c->id->verbs);
	if (!c->pd)
		return -(errno ? errno : ENOMEM);
	c->cc = ibv_create_comp_channel(c->id->verbs);
	if (!c->cc)
		return -(errno ? errno : ENOMEM);
	rc = set_nonblock(c->cc->fd);
	if (rc)
		return rc;
	c->cq = ibv_create_cq(c->id->verbs, (int)(send_wr + recv_wr), NULL, c->cc, 0);
	if (!c->cq)
		return -(errno ? errno : ENOMEM);

	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.send_cq = c->cq;
	qa.recv_cq = c->cq;
	qa.sq_sig_all = 1;
	qa.cap.max_send_wr = send_wr;
	qa.cap.max_recv_wr = recv_wr;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(c->id, c->pd, &qa))
		return -errno;
	c->have_qp = true;

	c->len = (size_t)c->o->count * c->o->size;
	rc = posix_memalign((void **)&c->buf, 4096, c->len);
	if (rc) {
		c->buf = NULL;
		return -rc;
	}
	c->mr = ibv_reg_mr(c->pd, c->buf, c->len, access);
	if (!c->mr)
		return -(errno ? errno : ENOMEM);
	return 0;
}

static void vc_teardown(struct vc_ctx *c)
{
	if (c->mr)
		ibv_dereg_mr(c->mr);
	free(c->buf);
	if (c->have_qp)
		rdma_destroy_qp(c->id);
	if (c->cq)
		ibv_destroy_cq(c->cq);
	if (c->cc)
		ibv_destroy_comp_channel(c->cc);
	if (c->pd)
		ibv_dealloc_pd(c->pd);
	if (c->id)
		rdma_destroy_id(c->id);
	if (c->listen_id)
		rdma_destroy_id(c->listen_id);
	if (c->ec)
		rdma_destroy_event_channel(c->ec);
}

/* Active MTU of the connection's port in bytes, or -1 if unknown. */
static int port_mtu(struct vc_ctx *c)
{
	struct ibv_port_attr pa;

	if (ibv_query_port(c->id->verbs, c->id->port_num, &pa))
		return -1;
	return 128 << pa.active_mtu; /* IBV_MTU_256 == 1 */
}

static int vc_open_channel(struct vc_ctx *c)
{
	c->ec = rdma_create_event_channel();
	if (!c->ec)
		return -(errno ? errno : ENODEV);
	return set_nonblock(c->ec->fd);
}

static int resolve(const struct vc_opts *o, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	int rc;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	rc = getaddrinfo(o->addr, o->port, &hints, res);
	if (rc) {
		RF_ERR(SUBSYS, "cannot resolve %s port %s: %s", o->addr, o->port, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

/* Polite shutdown: disconnect and wait briefly for the CM to confirm. */
static void vc_disconnect(struct vc_ctx *c)
{
	struct rdma_cm_event *ev;

	if (rdma_disconnect(c->id) == 0 && !c->peer_gone &&
	    vc_wait_cm(c, RDMA_CM_EVENT_DISCONNECTED, 2000, &ev) == 0)
		rdma_ack_cm_event(ev);
}

static int post_recv(struct vc_ctx *c, uint64_t wr_id)
{
	struct ibv_recv_wr wr = {.wr_id = wr_id, .sg_list = NULL, .num_sge = 0}, *bad;

	/* RDMA WRITE WITH IMM consumes a receive but places no data in it. */
	return -ibv_post_recv(c->id->qp, &wr, &bad);
}

struct vc_mismatch {
	uint32_t buffers;   /* buffers with any problem */
	uint32_t first_buf; /* first bad buffer... */
	char first[160];    /* ...and what was wrong with it */
};

static void note_mismatch(struct vc_mismatch *m, uint32_t index, const char *what)
{
	if (m->buffers++ == 0) {
		m->first_buf = index;
		snprintf(m->first, sizeof(m->first), "%s", what);
	}
}

/* Check one receive completion (the @index-th) and the bytes it announces. */
static int check_recv(struct vc_ctx *c, const struct ibv_wc *wc, uint32_t index, uint8_t *expect,
                      struct vc_mismatch *m)
{
	const uint8_t *got = c->buf + (size_t)index * c->o->size;
	char what[160];
	uint32_t imm;

	if (wc->status != IBV_WC_SUCCESS) {
		RF_ERR(SUBSYS, "receive %u completed with error: %s (vendor err 0x%x)", index,
		       ibv_wc_status_str(wc->status), wc->vendor_err);
		return -EIO;
	}
	if (wc->opcode != IBV_WC_RECV_RDMA_WITH_IMM || !(wc->wc_flags & IBV_WC_WITH_IMM)) {
		RF_ERR(SUBSYS, "receive %u: opcode %d flags 0x%x, want RECV_RDMA_WITH_IMM", index,
		       wc->opcode, wc->wc_flags);
		return -EPROTO;
	}
	imm = be32toh(wc->imm_data);
	if (imm != index) {
		snprintf(what, sizeof(what), "immediate %u, expected %u", imm, index);
		RF_ERR(SUBSYS, "MISMATCH buffer %u: %s", index, what);
		note_mismatch(m, index, what);
		return 0;
	}
	if (wc->byte_len != c->o->size) {
		snprintf(what, sizeof(what), "length %u, expected %u", wc->byte_len, c->o->size);
		RF_ERR(SUBSYS, "MISMATCH buffer %u: %s", index, what);
		note_mismatch(m, index, what);
		return 0;
	}
	pattern_fill(expect, index, c->o->size);
	if (memcmp(expect, got, c->o->size) != 0) {
		size_t off = 0;

		while (expect[off] == got[off])
			off++;
		snprintf(what, sizeof(what), "offset %zu: expected 0x%02x, got 0x%02x", off,
		         expect[off], got[off]);
		RF_ERR(SUBSYS, "MISMATCH buffer %u %s", index, what);
		note_mismatch(m, index, what);
	}
	return 0;
}

static int run_server(struct vc_ctx *c, int *verdict)
{
	const struct vc_opts *o = c->o;
	struct vc_mismatch mm = {0};
	struct rdma_conn_param cp;
	struct rdma_cm_event *ev;
	struct addrinfo *ai = NULL;
	struct ibv_wc wc[16];
	struct vc_hello hello;
	uint8_t *expect = NULL;
	uint32_t done = 0;
	int64_t deadline;
	int rc, n;

	rc = vc_open_channel(c);
	if (rc)
		goto out;
	if (rdma_create_id(c->ec, &c->listen_id, NULL, RDMA_PS_TCP)) {
		rc = -errno;
		goto out;
	}
	rc = resolve(o, true, &ai);
	if (rc)
		goto out;
	if (rdma_bind_addr(c->listen_id, ai->ai_addr) || rdma_listen(c->listen_id, 1)) {
		rc = -errno;
		RF_ERR(SUBSYS, "cannot listen on %s port %s: %s", o->addr, o->port, strerror(-rc));
		goto out_ai;
	}
	RF_INFO(SUBSYS, "listening on %s port %s for %u buffers of %u bytes", o->addr, o->port,
	        o->count, o->size);

	rc = vc_wait_cm(c, RDMA_CM_EVENT_CONNECT_REQUEST, o->timeout_ms, &ev);
	if (rc)
		goto out_ai;
	c->id = ev->id;
	rc = hello_decode(ev->param.conn.private_data, ev->param.conn.private_data_len, o, false,
	                  NULL, NULL);
	rdma_ack_cm_event(ev);
	if (rc) {
		rdma_reject(c->id, NULL, 0);
		goto out_ai;
	}

	/*
	 * Every receive is posted before the accept: with none missing the
	 * responder never answers RNR NAK (rdma_rxe in Linux 6.1 can stall a
	 * QP for good after an RNR retry), and the CQ, sized for all of them,
	 * cannot overflow however far this side falls behind.
	 */
	rc = vc_setup(c, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, 1, o->count);
	if (rc) {
		RF_ERR(SUBSYS, "verbs setup failed: %s", strerror(-rc));
		rdma_reject(c->id, NULL, 0);
		goto out_ai;
	}
	memset(c->buf, 0xa5, c->len); /* poison: unwritten bytes show up */
	expect = malloc(o->size);
	if (!expect) {
		rc = -ENOMEM;
		rdma_reject(c->id, NULL, 0);
		goto out_ai;
	}
	for (uint32_t i = 0; i < o->count; i++) {
		rc = post_recv(c, i);
		if (rc) {
			RF_ERR(SUBSYS, "ibv_post_recv: %s", strerror(-rc));
			rdma_reject(c->id, NULL, 0);
			goto out_expect;
		}
	}

	hello_encode(&hello, o, (uintptr_t)c->buf, c->mr->rkey);
	memset(&cp, 0, sizeof(cp));
	cp.private_data = &hello;
	cp.private_data_len = sizeof(hello);
	cp.responder_resources = 1;
	cp.initiator_depth = 1;
	cp.rnr_retry_count = 7;
	if (rdma_accept(c->id, &cp)) {
		rc = -errno;
		RF_ERR(SUBSYS, "rdma_accept: %s", strerror(-rc));
		goto out_expect;
	}
	rc = vc_wait_cm(c, RDMA_CM_EVENT_ESTABLISHED, o->timeout_ms, &ev);
	if (rc)
		goto out_expect;
	rdma_ack_cm_event(ev);
	RF_INFO(SUBSYS, "connected on %s port %u, active MTU %d",
	        ibv_get_device_name(c->id->verbs->device), c->id->port_num, port_mtu(c));

	/* Completions arrive in order on RC: the k-th is buffer k. */
	deadline = rf_now_ms() + o->timeout_ms;
	while (done < o->count) {
		n = vc_poll_cq(c, wc, (int)(sizeof(wc) / sizeof(wc[0])), deadline);
		if (n < 0) {
			rc = n;
			RF_ERR(SUBSYS, "after %u of %u buffers: %s", done, o->count,
			       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			goto out_expect;
		}
		for (int i = 0; i < n; i++, done++) {
			rc = check_recv(c, &wc[i], done, expect, &mm);
			if (rc)
				goto out_expect;
		}
	}

	if (mm.buffers == 0) {
		printf("verified %u buffers, %u bytes each, 0 mismatches, device %s\n", o->count,
		       o->size, ibv_get_device_name(c->id->verbs->device));
		*verdict = EXIT_VERIFIED;
	} else {
		printf("verify FAILED: %u buffers, %u bytes each, %u mismatches "
		       "(first: buffer %u %s), device %s\n",
		       o->count, o->size, mm.buffers, mm.first_buf, mm.first,
		       ibv_get_device_name(c->id->verbs->device));
		*verdict = EXIT_MISMATCH;
	}
	fflush(stdout);
	vc_disconnect(c);
	rc = 0;

out_expect:
	free(expect);
out_ai:
	freeaddrinfo(ai);
out:
	return rc;
}

static int run_client(struct vc_ctx *c)
{
	const struct vc_opts *o = c->o;
	struct rdma_conn_param cp;
	struct rdma_cm_event *ev;
	struct addrinfo *ai = NULL;
	struct ibv_wc wc[16];
	struct vc_hello hello;
	uint64_t raddr = 0;
	uint32_t rkey = 0, posted = 0, done = 0;
	int64_t deadline;
	int rc, n;

	rc = vc_open_channel(c);
	if (rc)
		goto out;
	if (rdma_create_id(c->ec, &c->id, NULL, RDMA_PS_TCP)) {
		rc = -errno;
		goto out;
	}
	rc = resolve(o, false, &ai);
	if (rc)
		goto out;
	if (rdma_resolve_addr(c->id, NULL, ai->ai_addr, VC_RESOLVE_MS)) {
		rc = -errno;
		RF_ERR(SUBSYS, "rdma_resolve_addr %s: %s", o->addr, strerror(-rc));
		goto out_ai;
	}
	rc = vc_wait_cm(c, RDMA_CM_EVENT_ADDR_RESOLVED, VC_RESOLVE_MS + 1000, &ev);
	if (rc)
		goto out_ai;
	rdma_ack_cm_event(ev);
	if (rdma_resolve_route(c->id, VC_RESOLVE_MS)) {
		rc = -errno;
		RF_ERR(SUBSYS, "rdma_resolve_route: %s%s", strerror(-rc),
		       rc == -ENODEV ? " (no RDMA device on that address: rdma_cm cannot use "
		                       "127.0.0.1, use the rxe netdev's address)"
		                     : "");
		goto out_ai;
	}
	rc = vc_wait_cm(c, RDMA_CM_EVENT_ROUTE_RESOLVED, VC_RESOLVE_MS + 1000, &ev);
	if (rc)
		goto out_ai;
	rdma_ack_cm_event(ev);

	c->depth = o->count < VC_MAX_DEPTH ? o->count : VC_MAX_DEPTH;
	rc = vc_setup(c, IBV_ACCESS_LOCAL_WRITE, c->depth, 1);
	if (rc) {
		RF_ERR(SUBSYS, "verbs setup failed: %s", strerror(-rc));
		goto out_ai;
	}
	for (uint32_t i = 0; i < o->count; i++)
		pattern_fill(c->buf + (size_t)i * o->size, i, o->size);
	if (o->corrupt) {
		uint32_t bi = o->count / 2;
		size_t off = o->size / 2;

		c->buf[(size_t)bi * o->size + off] ^= 0x5a;
		RF_INFO(SUBSYS, "--corrupt: flipped buffer %u offset %zu", bi, off);
	}

	hello_encode(&hello, o, 0, 0);
	memset(&cp, 0, sizeof(cp));
	cp.private_data = &hello;
	cp.private_data_len = sizeof(hello);
	cp.responder_resources = 1;
	cp.initiator_depth = 1;
	cp.retry_count = 7;
	cp.rnr_retry_count = 7; /* 7 = retry forever on RNR; the deadline bounds it */
	if (rdma_connect(c->id, &cp)) {
		rc = -errno;
		RF_ERR(SUBSYS, "rdma_connect: %s", strerror(-rc));
		goto out_ai;
	}
	rc = vc_wait_cm(c, RDMA_CM_EVENT_ESTABLISHED, o->timeout_ms, &ev);
	if (rc)
		goto out_ai;
	rc = hello_decode(ev->param.conn.private_data, ev->param.conn.private_data_len, o, true,
	                  &raddr, &rkey);
	rdma_ack_cm_event(ev);
	if (rc)
		goto out_disconnect;
	RF_INFO(SUBSYS, "connected on %s port %u, active MTU %d: region 0x%llx rkey 0x%x",
	        ibv_get_device_name(c->id->verbs->device), c->id->port_num, port_mtu(c),
	        (unsigned long long)raddr, rkey);

	/* Keep at most depth writes in flight. */
	deadline = rf_now_ms() + o->timeout_ms;
	while (done < o->count) {
		while (posted < o->count && posted - done < c->depth) {
			struct ibv_sge sge = {
			    .addr = (uintptr_t)(c->buf + (size_t)posted * o->size),
			    .length = o->size,
			    .lkey = c->mr->lkey,
			};
			struct ibv_send_wr wr = {0}, *bad;

			wr.wr_id = posted;
			wr.sg_list = &sge;
			wr.num_sge = 1;
			wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
			wr.send_flags = IBV_SEND_SIGNALED;
			wr.imm_data = htobe32(posted);
			wr.wr.rdma.remote_addr = raddr + (uint64_t)posted * o->size;
			wr.wr.rdma.rkey = rkey;
			rc = -ibv_post_send(c->id->qp, &wr, &bad);
			if (rc) {
				RF_ERR(SUBSYS, "ibv_post_send %u: %s", posted, strerror(-rc));
				goto out_disconnect;
			}
			posted++;
		}
		n = vc_poll_cq(c, wc, (int)(sizeof(wc) / sizeof(wc[0])), deadline);
		if (n < 0) {
			rc = n;
			RF_ERR(SUBSYS, "after %u of %u writes: %s", done, o->count,
			       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
			goto out_disconnect;
		}
		for (int i = 0; i < n; i++, done++) {
			if (wc[i].status != IBV_WC_SUCCESS) {
				RF_ERR(SUBSYS,
				       "write %llu completed with error: %s (vendor err 0x%x)",
				       (unsigned long long)wc[i].wr_id,
				       ibv_wc_status_str(wc[i].status), wc[i].vendor_err);
				rc = -EIO;
				goto out_disconnect;
			}
		}
	}
	printf("wrote %u buffers, %u bytes each%s, device %s\n", o->count, o->size,
	       o->corrupt ? " (one byte corrupted)" : "",
	       ibv_get_device_name(c->id->verbs->device));
	fflush(stdout);
	rc = 0;

out_disconnect:
	vc_disconnect(c);
out_ai:
	freeaddrinfo(ai);
out:
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rf-verbs-check server|client --addr ADDR --port PORT\n"
	           "                      [--count N] [--size BYTES] [--timeout SEC] [--corrupt]\n"
	           "  server: receive N buffers by RDMA WRITE WITH IMM and verify them\n"
	           "  client: write them; --corrupt flips one byte of buffer N/2\n"
	           "exit: 0 verified, 1 mismatch, 2 usage, 3 RDMA error or timeout\n");
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"addr", required_argument, NULL, 'a'},    {"port", required_argument, NULL, 'p'},
	    {"count", required_argument, NULL, 'n'},   {"size", required_argument, NULL, 's'},
	    {"timeout", required_argument, NULL, 't'}, {"corrupt", no_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	struct vc_opts o = {.count = 64, .size = 65536, .timeout_ms = 30000};
	struct vc_ctx c = {.o = &o};
	uint32_t port = 0, secs;
	int opt, li = 0, rc, verdict = EXIT_ERROR;

	rf_log_set_program("rf-verbs-check");
	if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
		usage(stderr);
		return EXIT_USAGE;
	}
	o.server = strcmp(argv[1], "server") == 0;
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", lopts, &li)) != -1) {
		switch (opt) {
		case 'a':
			o.addr = optarg;
			break;
		case 'p':
			if (!parse_u32(optarg, 1, 65535, &port))
				goto bad;
			o.port = optarg;
			break;
		case 'n':
			if (!parse_u32(optarg, 1, VC_MAX_COUNT, &o.count))
				goto bad;
			break;
		case 's':
			if (!parse_u32(optarg, 1, UINT32_MAX, &o.size))
				goto bad;
			break;
		case 't':
			if (!parse_u32(optarg, 1, 3600, &secs))
				goto bad;
			o.timeout_ms = (int)secs * 1000;
			break;
		case 'c':
			o.corrupt = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || !o.addr || !o.port) {
		fprintf(stderr, "rf-verbs-check: --addr and --port are required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if ((uint64_t)o.count * o.size > VC_MAX_TOTAL) {
		fprintf(stderr, "rf-verbs-check: count * size exceeds %llu bytes\n", VC_MAX_TOTAL);
		return EXIT_USAGE;
	}
	if (o.corrupt && o.server) {
		fprintf(stderr, "rf-verbs-check: --corrupt is a client option\n");
		return EXIT_USAGE;
	}

	rc = o.server ? run_server(&c, &verdict) : run_client(&c);
	vc_teardown(&c);
	if (rc) {
		RF_ERR(SUBSYS, "%s failed: %s", o.server ? "server" : "client",
		       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
		return EXIT_ERROR;
	}
	return o.server ? verdict : EXIT_VERIFIED;

bad:
	fprintf(stderr, "rf-verbs-check: bad value '%s' for --%s\n", optarg, lopts[li].name);
	usage(stderr);
	return EXIT_USAGE;
}

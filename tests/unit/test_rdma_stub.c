/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider (fabric/rdma*.c) over stubbed verbs: rf_verbs points at
 * a fake librdmacm/libibverbs (below) so the tests can inject what real
 * soft-RoCE cannot produce on demand: completions with error statuses, a
 * failing memory registration, malformed connect requests, CM events at a
 * chosen moment.
 *
 * The fakes: event channels and completion channels are real eventfds (the
 * provider puts them in its epoll set); a CM event queue per channel keeps
 * its eventfd readable while events are queued; completions are queued per
 * CQ and returned by poll_cq (the provider drains its CQs on every poll, so
 * completion channels never need to fire); every object is heap-allocated
 * and freed by its destroy call, so a leak shows under ASan.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../fabric/rdma_wire.h"
#include "../../fabric/verbs_wrap.h"
#include "repfabric/fabric.h"
#include "repfabric/log.h"

#define URL       "rdma://10.0.2.15:7471"
#define TOKEN     0x7e57ull
#define RING_SIZE (1u << 20)
#define MAX_EVQ   32
#define MAX_WC    64
#define MAX_WR    512

#define STUB_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ------------------------------------------------------------ the fakes */

struct fchan {
	struct rdma_event_channel ch; /* ch.fd: an EFD_SEMAPHORE eventfd */
	struct rdma_cm_event *q[MAX_EVQ];
	unsigned head, n;
};

struct posted_wr {
	struct ibv_qp *qp;
	uint64_t wr_id;
	int opcode; /* ibv_wr_opcode; -1 for a receive */
	uint32_t imm;
	unsigned send_flags;
	uint64_t addr; /* first SGE */
	uint32_t len;
};

static struct {
	struct ibv_context ctx; /* never dereferenced by the provider */
	struct fchan *last_chan;
	struct ibv_cq *last_cq;
	struct rdma_cm_id *last_id;
	struct {
		struct ibv_cq *cq;
		struct ibv_wc wc;
	} wcs[MAX_WC];
	unsigned nwc;
	struct posted_wr wrs[MAX_WR];
	unsigned nwr;
	/* knobs */
	int ring_reg_rc;  /* reg_mr with REMOTE_WRITE access returns this */
	int post_send_rc; /* post_send returns this */
	/* what the hub sends a connecting producer */
	enum rdma_cm_event_type reply;
	unsigned char reply_data[RF_RDMA_ACC_LEN];
	uint8_t reply_len;
	/* recorded */
	unsigned char req[64]; /* the producer's connect private data */
	uint8_t req_len;
	uint8_t retry_count; /* the producer's connect parameter */
	uint8_t ack_timeout; /* RDMA_OPTION_ID_ACK_TIMEOUT, last set */
	unsigned char acc[RF_RDMA_ACC_LEN];
	int accepts, rejects, destroyed_ids, disconnects, qp_to_err, mr_regs, mr_deregs;
	struct rf_rdma_rej rej;
	uint32_t next_key;
	int live; /* objects created and not yet destroyed */
} S;

static void stub_reset(void)
{
	memset(&S, 0, sizeof(S));
	S.next_key = 0x100;
	S.reply = RDMA_CM_EVENT_ESTABLISHED;
}

static void chan_push(struct rdma_event_channel *ch, struct rdma_cm_id *id,
                      enum rdma_cm_event_type type, int status, const void *data, uint8_t len)
{
	struct fchan *f = STUB_OF(ch, struct fchan, ch);
	struct rdma_cm_event *ev = calloc(1, sizeof(*ev));
	uint64_t one = 1;

	assert_non_null(ev);
	assert_true(f->n < MAX_EVQ);
	ev->id = id;
	ev->event = type;
	ev->status = status;
	if (len) {
		void *copy = malloc(len);

		assert_non_null(copy);
		memcpy(copy, data, len);
		ev->param.conn.private_data = copy;
		ev->param.conn.private_data_len = len;
	}
	f->q[(f->head + f->n++) % MAX_EVQ] = ev;
	assert_int_equal(write(ch->fd, &one, sizeof(one)), (ssize_t)sizeof(one));
}

static void ev_free(struct rdma_cm_event *ev)
{
	free((void *)ev->param.conn.private_data);
	free(ev);
}

static int s_create_event_channel(struct rdma_event_channel **out)
{
	struct fchan *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->ch.fd = eventfd(0, EFD_NONBLOCK | EFD_SEMAPHORE | EFD_CLOEXEC);
	assert_true(f->ch.fd >= 0);
	S.last_chan = f;
	S.live++;
	*out = &f->ch;
	return 0;
}

static void s_destroy_event_channel(struct rdma_event_channel *ch)
{
	struct fchan *f = STUB_OF(ch, struct fchan, ch);

	while (f->n) {
		ev_free(f->q[f->head]);
		f->head = (f->head + 1) % MAX_EVQ;
		f->n--;
	}
	close(ch->fd);
	if (S.last_chan == f)
		S.last_chan = NULL;
	free(f);
	S.live--;
}

static struct rdma_cm_id *id_new(struct rdma_event_channel *ch, void *ctx)
{
	struct rdma_cm_id *id = calloc(1, sizeof(*id));

	assert_non_null(id);
	id->channel = ch;
	id->context = ctx;
	id->verbs = &S.ctx;
	id->ps = RDMA_PS_TCP;
	S.live++;
	return id;
}

static int s_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **out, void *ctx,
                       enum rdma_port_space ps)
{
	*out = id_new(ch, ctx);
	S.last_id = *out;
	return 0;
}

static int s_destroy_id(struct rdma_cm_id *id)
{
	assert_null(id->qp); /* destroy_qp first */
	free(id);
	S.destroyed_ids++;
	S.live--;
	return 0;
}

static int s_ok_addr(struct rdma_cm_id *id, struct sockaddr *addr)
{
	return 0;
}

static int s_listen(struct rdma_cm_id *id, int backlog)
{
	return 0;
}

static int s_resolve_addr(struct rdma_cm_id *id, struct sockaddr *dst, int timeout_ms)
{
	chan_push(id->channel, id, RDMA_CM_EVENT_ADDR_RESOLVED, 0, NULL, 0);
	return 0;
}

static int s_resolve_route(struct rdma_cm_id *id, int timeout_ms)
{
	chan_push(id->channel, id, RDMA_CM_EVENT_ROUTE_RESOLVED, 0, NULL, 0);
	return 0;
}

static int s_connect(struct rdma_cm_id *id, struct rdma_conn_param *param)
{
	S.req_len = param->private_data_len;
	memcpy(S.req, param->private_data, S.req_len);
	S.retry_count = param->retry_count;
	chan_push(id->channel, id, S.reply, S.reply == RDMA_CM_EVENT_REJECTED ? 28 : 0,
	          S.reply_data, S.reply_len);
	return 0;
}

static int s_accept(struct rdma_cm_id *id, struct rdma_conn_param *param)
{
	assert_int_equal(param->private_data_len, RF_RDMA_ACC_LEN);
	memcpy(S.acc, param->private_data, RF_RDMA_ACC_LEN);
	S.accepts++;
	return 0;
}

static int s_reject(struct rdma_cm_id *id, const void *data, uint8_t len)
{
	assert_int_equal(rf_rdma_rej_decode(data, len, &S.rej), 0);
	S.rejects++;
	return 0;
}

static int s_disconnect(struct rdma_cm_id *id)
{
	S.disconnects++;
	return 0;
}

static int s_set_option(struct rdma_cm_id *id, int level, int optname, void *optval, size_t optlen)
{
	(void)id;
	if (level == RDMA_OPTION_ID && optname == RDMA_OPTION_ID_ACK_TIMEOUT && optlen == 1)
		S.ack_timeout = *(const uint8_t *)optval;
	return 0;
}

static int s_get_cm_event(struct rdma_event_channel *ch, struct rdma_cm_event **out)
{
	struct fchan *f = STUB_OF(ch, struct fchan, ch);
	uint64_t v;

	if (f->n == 0)
		return -EAGAIN;
	*out = f->q[f->head];
	f->head = (f->head + 1) % MAX_EVQ;
	f->n--;
	assert_int_equal(read(ch->fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	return 0;
}

static int s_ack_cm_event(struct rdma_cm_event *ev)
{
	ev_free(ev);
	return 0;
}

static int s_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	id->qp = calloc(1, sizeof(*id->qp));
	assert_non_null(id->qp);
	id->qp->qp_num = 0x11 + (uint32_t)S.live;
	id->qp->send_cq = attr->send_cq;
	id->qp->recv_cq = attr->recv_cq;
	S.live++;
	return 0;
}

static void s_destroy_qp(struct rdma_cm_id *id)
{
	free(id->qp);
	id->qp = NULL;
	S.live--;
}

static int s_alloc_pd(struct ibv_context *ctx, struct ibv_pd **out)
{
	*out = calloc(1, sizeof(**out));
	S.live++;
	return *out ? 0 : -ENOMEM;
}

static int s_dealloc_pd(struct ibv_pd *pd)
{
	free(pd);
	S.live--;
	return 0;
}

static int s_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **out)
{
	if ((access & IBV_ACCESS_REMOTE_WRITE) && S.ring_reg_rc)
		return S.ring_reg_rc;
	*out = calloc(1, sizeof(**out));
	assert_non_null(*out);
	(*out)->pd = pd;
	(*out)->addr = addr;
	(*out)->length = len;
	(*out)->lkey = S.next_key++;
	(*out)->rkey = S.next_key++;
	S.mr_regs++;
	S.live++;
	return 0;
}

static int s_dereg_mr(struct ibv_mr *mr)
{
	free(mr);
	S.mr_deregs++;
	S.live--;
	return 0;
}

static int s_create_comp_channel(struct ibv_context *ctx, struct ibv_comp_channel **out)
{
	*out = calloc(1, sizeof(**out));
	assert_non_null(*out);
	(*out)->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true((*out)->fd >= 0);
	S.live++;
	return 0;
}

static int s_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	close(ch->fd);
	free(ch);
	S.live--;
	return 0;
}

static int s_create_cq(struct ibv_context *ctx, int cqe, void *cq_ctx, struct ibv_comp_channel *ch,
                       struct ibv_cq **out)
{
	*out = calloc(1, sizeof(**out));
	assert_non_null(*out);
	(*out)->cq_context = cq_ctx;
	(*out)->channel = ch;
	(*out)->cqe = cqe;
	S.last_cq = *out;
	S.live++;
	return 0;
}

static int s_destroy_cq(struct ibv_cq *cq)
{
	unsigned k = 0;

	for (unsigned i = 0; i < S.nwc; i++) /* forget its undrained completions */
		if (S.wcs[i].cq != cq)
			S.wcs[k++] = S.wcs[i];
	S.nwc = k;
	if (S.last_cq == cq)
		S.last_cq = NULL;
	free(cq);
	S.live--;
	return 0;
}

static int s_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask)
{
	if ((mask & IBV_QP_STATE) && attr->qp_state == IBV_QPS_ERR)
		S.qp_to_err++;
	return 0;
}

static int s_req_notify_cq(struct ibv_cq *cq, int solicited_only)
{
	return 0;
}

static int s_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **cq_ctx)
{
	return -EAGAIN;
}

static void s_ack_cq_events(struct ibv_cq *cq, unsigned n)
{
}

static int s_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	int got = 0;
	unsigned k = 0;

	for (unsigned i = 0; i < S.nwc; i++) {
		if (S.wcs[i].cq == cq && got < n)
			wc[got++] = S.wcs[i].wc;
		else
			S.wcs[k++] = S.wcs[i];
	}
	S.nwc = k;
	return got;
}

static int s_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
	if (S.post_send_rc) {
		*bad = wr;
		return S.post_send_rc;
	}
	for (; wr; wr = wr->next) {
		assert_true(S.nwr < MAX_WR);
		S.wrs[S.nwr++] = (struct posted_wr){.qp = qp,
		                                    .wr_id = wr->wr_id,
		                                    .opcode = (int)wr->opcode,
		                                    .imm = ntohl(wr->imm_data),
		                                    .send_flags = wr->send_flags,
		                                    .addr = wr->num_sge ? wr->sg_list[0].addr : 0,
		                                    .len = wr->num_sge ? wr->sg_list[0].length : 0};
	}
	return 0;
}

static int s_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
	for (; wr; wr = wr->next) {
		assert_true(S.nwr < MAX_WR);
		S.wrs[S.nwr++] = (struct posted_wr){.qp = qp,
		                                    .wr_id = wr->wr_id,
		                                    .opcode = -1,
		                                    .addr = wr->num_sge ? wr->sg_list[0].addr : 0,
		                                    .len = wr->num_sge ? wr->sg_list[0].length : 0};
	}
	return 0;
}

static const struct rf_verbs_ops stub_ops = {
    .create_event_channel = s_create_event_channel,
    .destroy_event_channel = s_destroy_event_channel,
    .create_id = s_create_id,
    .destroy_id = s_destroy_id,
    .bind_addr = s_ok_addr,
    .listen = s_listen,
    .resolve_addr = s_resolve_addr,
    .resolve_route = s_resolve_route,
    .connect = s_connect,
    .accept = s_accept,
    .reject = s_reject,
    .disconnect = s_disconnect,
    .set_option = s_set_option,
    .get_cm_event = s_get_cm_event,
    .ack_cm_event = s_ack_cm_event,
    .create_qp = s_create_qp,
    .destroy_qp = s_destroy_qp,
    .alloc_pd = s_alloc_pd,
    .dealloc_pd = s_dealloc_pd,
    .reg_mr = s_reg_mr,
    .dereg_mr = s_dereg_mr,
    .create_comp_channel = s_create_comp_channel,
    .destroy_comp_channel = s_destroy_comp_channel,
    .create_cq = s_create_cq,
    .destroy_cq = s_destroy_cq,
    .modify_qp = s_modify_qp,
    .req_notify_cq = s_req_notify_cq,
    .get_cq_event = s_get_cq_event,
    .ack_cq_events = s_ack_cq_events,
    .poll_cq = s_poll_cq,
    .post_send = s_post_send,
    .post_recv = s_post_recv,
};

static void inject_wc(struct ibv_cq *cq, const struct ibv_wc *wc)
{
	assert_non_null(cq);
	assert_true(S.nwc < MAX_WC);
	S.wcs[S.nwc].cq = cq;
	S.wcs[S.nwc].wc = *wc;
	S.nwc++;
}

/* The newest send WR / the first receive WR posted on @qp. */
static const struct posted_wr *last_send(void)
{
	for (unsigned i = S.nwr; i-- > 0;)
		if (S.wrs[i].opcode >= 0)
			return &S.wrs[i];
	return NULL;
}

static const struct posted_wr *first_recv(const struct ibv_qp *qp)
{
	for (unsigned i = 0; i < S.nwr; i++)
		if (S.wrs[i].opcode < 0 && S.wrs[i].qp == qp)
			return &S.wrs[i];
	return NULL;
}

/* ------------------------------------------------------------ log capture */

static char logbuf[16384];
static size_t loglen;

static void log_sink(void *ctx, enum rf_log_level level, const char *line)
{
	int n = snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%s\n", line);

	if (n > 0 && (size_t)n < sizeof(logbuf) - loglen)
		loglen += (size_t)n;
}

static void assert_logged(const char *what)
{
	if (!strstr(logbuf, what))
		fail_msg("log does not mention '%s'; it says:\n%s", what, logbuf);
}

static int setup(void **state)
{
	stub_reset();
	rf_verbs = &stub_ops;
	logbuf[0] = '\0';
	loglen = 0;
	rf_log_set_sink(log_sink, NULL);
	rf_log_set_level(RF_LOG_INFO);
	return 0;
}

static int teardown(void **state)
{
	rf_verbs = &rf_verbs_real;
	rf_log_set_sink(NULL, NULL);
	assert_int_equal(S.live, 0); /* every fake object was destroyed */
	return 0;
}

/* ------------------------------------------------------------- producer */

static const struct rf_fab_position ACC_POS = {
    .durable_pos = 512, .durable_seq = 9, .head_pos = 256, .head_seq = 8};

static struct rf_fab_conn *producer_connect(void)
{
	struct rf_fab_ring_info info;
	struct rf_fab_conn *c = NULL;
	struct rf_rdma_req req;

	rf_rdma_acc_encode(S.reply_data, 0xabc, RING_SIZE, 0x7f0000001000ull, 0x4242, &ACC_POS);
	S.reply_len = RF_RDMA_ACC_LEN;
	assert_int_equal(rf_fab_connect(URL, TOKEN, 1000, &c, &info), 0);
	assert_non_null(c);
	assert_int_equal(info.ring_id, 0xabc);
	assert_int_equal(info.data_size, RING_SIZE);
	assert_int_equal(info.pos.durable_seq, 9);
	assert_int_equal(rf_rdma_req_decode(S.req, S.req_len, &req), 0);
	assert_int_equal(req.token, TOKEN);
	/* Finite transport retries (7 is infinite on rxe) and a set ACK timeout:
	 * a dead link surfaces as a completion error in seconds. */
	assert_true(S.retry_count >= 1 && S.retry_count < 7);
	assert_true(S.ack_timeout >= 14 && S.ack_timeout <= 19);
	return c;
}

static uint8_t payload[4096];

static void post_one(struct rf_fab_conn *c, uint64_t off, uint64_t seq, uint64_t cookie)
{
	struct rf_fab_seg seg = {.off = off, .buf = payload, .len = sizeof(payload)};
	const struct posted_wr *w;

	assert_int_equal(rf_fab_post(c, &seg, 1, seq, cookie), 0);
	w = last_send();
	assert_non_null(w);
	assert_int_equal(w->opcode, IBV_WR_RDMA_WRITE_WITH_IMM);
	assert_int_equal(w->imm, (uint32_t)seq);
	assert_true(w->send_flags & IBV_SEND_SIGNALED);
}

/* The stubs work: a good completion is SENT then LANDED (the RC ack says the
 * bytes are in the hub's memory), a position message POSITION. */
static void test_producer_happy_path(void **state)
{
	struct rf_fab_conn *c = producer_connect();
	struct ibv_cq *cq = S.last_cq;
	const struct posted_wr *rx = first_recv(S.last_id->qp);
	struct rf_fab_position pos = {.durable_pos = 4352, .durable_seq = 10, 4352, 10};
	struct rf_fab_event evs[8];

	post_one(c, 0, 9, 77);
	inject_wc(cq, &(struct ibv_wc){.wr_id = last_send()->wr_id,
	                               .status = IBV_WC_SUCCESS,
	                               .opcode = IBV_WC_RDMA_WRITE});
	assert_int_equal(rf_fab_poll(c, evs, 8, 100), 2);
	assert_int_equal(evs[0].type, RF_FAB_EV_SENT);
	assert_int_equal(evs[0].cookie, 77);
	assert_int_equal(evs[1].type, RF_FAB_EV_LANDED);
	assert_int_equal(evs[1].seq, 9);

	assert_non_null(rx);
	assert_true(rx->len >= RF_RDMA_POS_LEN);
	rf_rdma_pos_encode((unsigned char *)(uintptr_t)rx->addr, &pos);
	inject_wc(cq, &(struct ibv_wc){.wr_id = rx->wr_id,
	                               .status = IBV_WC_SUCCESS,
	                               .opcode = IBV_WC_RECV,
	                               .byte_len = RF_RDMA_POS_LEN});
	assert_int_equal(rf_fab_poll(c, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_EV_POSITION);
	assert_int_equal(evs[0].pos.durable_seq, 10);
	assert_int_equal(evs[0].pos.head_pos, 4352);
	rf_fab_close(&c);
	assert_null(c);
}

/* An error completion is CLOSED with a negative errno, never an abort; the
 * connection then refuses posts with -ENOTCONN. */
static void test_producer_wc_errors(void **state)
{
	static const struct {
		enum ibv_wc_status st;
		int err;
		int on_recv;
	} cases[] = {
	    {IBV_WC_RETRY_EXC_ERR, -ETIMEDOUT, 0},     {IBV_WC_REM_ACCESS_ERR, -EACCES, 0},
	    {IBV_WC_RNR_RETRY_EXC_ERR, -ETIMEDOUT, 0}, {IBV_WC_LOC_PROT_ERR, -EACCES, 0},
	    {IBV_WC_REM_INV_REQ_ERR, -EPROTO, 0},      {IBV_WC_GENERAL_ERR, -EIO, 0},
	    {IBV_WC_WR_FLUSH_ERR, -ECONNRESET, 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rf_fab_conn *c = producer_connect();
		struct ibv_cq *cq = S.last_cq;
		struct rf_fab_seg seg = {.off = 8192, .buf = payload, .len = 256};
		struct rf_fab_event evs[8];
		uint64_t wr_id;
		int n;

		post_one(c, 0, 9, 1);
		post_one(c, 4096, 10, 2);
		wr_id =
		    cases[i].on_recv ? first_recv(S.last_id->qp)->wr_id : S.wrs[S.nwr - 2].wr_id;
		loglen = 0;
		logbuf[0] = '\0';
		inject_wc(cq, &(struct ibv_wc){.wr_id = wr_id,
		                               .status = cases[i].st,
		                               .opcode = IBV_WC_RDMA_WRITE,
		                               .vendor_err = 0x81});
		/* the flush of the later post must not produce a second event */
		inject_wc(cq, &(struct ibv_wc){.wr_id = S.wrs[S.nwr - 1].wr_id,
		                               .status = IBV_WC_WR_FLUSH_ERR,
		                               .opcode = IBV_WC_RDMA_WRITE});
		n = rf_fab_poll(c, evs, 8, 100);
		assert_int_equal(n, 1);
		assert_int_equal(evs[0].type, RF_FAB_EV_CLOSED);
		assert_int_equal(evs[0].err, cases[i].err);
		assert_logged("connection lost");
		assert_logged(ibv_wc_status_str(cases[i].st));
		assert_int_equal(rf_fab_post(c, &seg, 1, 11, 3), -ENOTCONN);
		assert_int_equal(rf_fab_poll(c, evs, 8, 0), -ENOTCONN);
		rf_fab_close(&c);
		assert_int_equal(S.live, 0);
		stub_reset();
	}
}

/* ibv_post_send failing: a full send queue is -EAGAIN, anything else kills
 * the connection (-ENOTCONN now, CLOSED with the error next). */
static void test_producer_post_send_fails(void **state)
{
	struct rf_fab_conn *c = producer_connect();
	struct rf_fab_seg seg = {.off = 0, .buf = payload, .len = 512};
	struct rf_fab_event evs[8];

	S.post_send_rc = -ENOMEM;
	assert_int_equal(rf_fab_post(c, &seg, 1, 9, 1), -EAGAIN);
	S.post_send_rc = -EINVAL;
	assert_int_equal(rf_fab_post(c, &seg, 1, 9, 1), -ENOTCONN);
	assert_int_equal(rf_fab_poll(c, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_EV_CLOSED);
	assert_int_equal(evs[0].err, -EINVAL);
	assert_int_equal(rf_fab_post(c, &seg, 1, 9, 1), -ENOTCONN);
	rf_fab_close(&c);
}

/* The hub going away (CM DISCONNECTED) is CLOSED -ECONNRESET. */
static void test_producer_cm_disconnected(void **state)
{
	struct rf_fab_conn *c = producer_connect();
	struct rf_fab_event evs[8];
	struct rf_fab_seg seg = {.off = 0, .buf = payload, .len = 512};

	assert_int_equal(rf_fab_poll(c, evs, 8, 0), 0);
	chan_push(S.last_chan ? &S.last_chan->ch : NULL, S.last_id, RDMA_CM_EVENT_DISCONNECTED, 0,
	          NULL, 0);
	assert_int_equal(rf_fab_poll(c, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_EV_CLOSED);
	assert_int_equal(evs[0].err, -ECONNRESET);
	assert_logged("the hub disconnected");
	assert_int_equal(rf_fab_post(c, &seg, 1, 9, 1), -ENOTCONN);
	rf_fab_close(&c);
}

/* The hub's rejections map to errnos with a logged reason. */
static void test_producer_rejected(void **state)
{
	static const struct {
		unsigned reason;
		int err;
		int expect;
		const char *logged;
	} cases[] = {
	    {RF_RDMA_REJ_REFUSED, ENOENT, -ENOENT, "refused token"},
	    {RF_RDMA_REJ_REFUSED, EBUSY, -EBUSY, "refused token"},
	    {RF_RDMA_REJ_HUB_ERROR, EOPNOTSUPP, -ECONNREFUSED, "Operation not supported"},
	    {RF_RDMA_REJ_BAD_VERSION, 0, -EPROTO, "protocol version"},
	    {RF_RDMA_REJ_BAD_REQUEST, 0, -EPROTO, "malformed"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rf_fab_ring_info info;
		struct rf_fab_conn *c = NULL;

		stub_reset();
		loglen = 0;
		logbuf[0] = '\0';
		S.reply = RDMA_CM_EVENT_REJECTED;
		rf_rdma_rej_encode(S.reply_data, cases[i].reason, cases[i].err);
		S.reply_len = RF_RDMA_REJ_LEN;
		assert_int_equal(rf_fab_connect(URL, TOKEN, 1000, &c, &info), cases[i].expect);
		assert_null(c);
		assert_logged(cases[i].logged);
		assert_int_equal(S.live, 0);
	}
	/* A reject without our private data: nobody listens there. */
	stub_reset();
	S.reply = RDMA_CM_EVENT_REJECTED;
	S.reply_len = 0;
	{
		struct rf_fab_ring_info info;
		struct rf_fab_conn *c = NULL;

		assert_int_equal(rf_fab_connect(URL, TOKEN, 1000, &c, &info), -ECONNREFUSED);
		assert_logged("no repfabric hub listening");
	}
}

/* ------------------------------------------------------------------ hub */

struct hub {
	struct rf_fab_listener *l;
	struct rdma_event_channel *ch;
	uint8_t *ring;
	int attaches;
};

static int hub_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem)
{
	struct hub *h = ctx;

	h->attaches++;
	if (token != TOKEN)
		return -ENOENT;
	memset(mem, 0, sizeof(*mem));
	mem->data = h->ring;
	mem->data_size = RING_SIZE;
	mem->info.ring_id = 0x5151;
	mem->info.data_size = RING_SIZE;
	mem->info.pos = ACC_POS;
	return 0;
}

static const struct rf_fab_hub_ops hub_ops = {.attach = hub_attach};

static void hub_open(struct hub *h)
{
	memset(h, 0, sizeof(*h));
	h->ring = calloc(1, RING_SIZE);
	assert_non_null(h->ring);
	assert_int_equal(rf_fab_listen(URL, &hub_ops, h, &h->l), 0);
	assert_non_null(S.last_chan);
	h->ch = &S.last_chan->ch;
}

static void hub_close(struct hub *h)
{
	struct rf_fab_hub_event evs[8];

	/* one more poll frees peers whose DETACHED was delivered */
	assert_true(rf_fab_listener_poll(h->l, evs, 8, 0) >= 0);
	rf_fab_listener_close(&h->l);
	assert_null(h->l);
	free(h->ring);
}

/* A producer's connect request with @len bytes of private data; returns its
 * cm id (freed by the provider when it rejects). */
static struct rdma_cm_id *hub_request(struct hub *h, const void *data, uint8_t len)
{
	struct rdma_cm_id *id = id_new(h->ch, NULL);

	chan_push(h->ch, id, RDMA_CM_EVENT_CONNECT_REQUEST, 0, data, len);
	return id;
}

/* ibv_reg_mr refusing the ring (EOPNOTSUPP: fsdax, or a file the kernel
 * cannot pin) refuses the producer, says why, and pairs ATTACHED/DETACHED. */
static void test_hub_reg_mr_eopnotsupp(void **state)
{
	struct rf_fab_hub_event evs[8];
	unsigned char req[RF_RDMA_REQ_LEN];
	struct hub h;
	int n;

	hub_open(&h);
	S.ring_reg_rc = -EOPNOTSUPP;
	rf_rdma_req_encode(req, TOKEN);
	hub_request(&h, req, sizeof(req));
	n = rf_fab_listener_poll(h.l, evs, 8, 100);
	assert_int_equal(h.attaches, 1);
	assert_int_equal(n, 2);
	assert_int_equal(evs[0].type, RF_FAB_HEV_ATTACHED);
	assert_int_equal(evs[1].type, RF_FAB_HEV_DETACHED);
	assert_ptr_equal(evs[0].peer, evs[1].peer);
	assert_int_equal(evs[1].token, TOKEN);
	assert_int_equal(evs[1].err, -EOPNOTSUPP);
	assert_int_equal(S.accepts, 0);
	assert_int_equal(S.rejects, 1);
	assert_int_equal(S.rej.reason, RF_RDMA_REJ_HUB_ERROR);
	assert_int_equal(S.rej.err, EOPNOTSUPP);
	assert_logged("cannot register the ring");
	assert_logged("Operation not supported");
	assert_logged("fsdax");
	assert_logged("devdax, tmpfs or hugetlbfs");
	hub_close(&h);
}

/* Malformed connect private data is rejected before attach is called. */
static void test_hub_malformed_request(void **state)
{
	unsigned char good[RF_RDMA_REQ_LEN], bad[RF_RDMA_REQ_LEN + 40];
	struct rf_fab_hub_event evs[8];
	struct rf_rdma_req r;
	struct hub h;
	struct {
		const char *what;
		size_t off;   /* byte to change, or SIZE_MAX */
		uint8_t val;  /* its new value */
		uint8_t len;  /* private data length */
		unsigned why; /* reject reason */
	} cases[] = {
	    {"wrong magic", 0, 'X', RF_RDMA_REQ_LEN, RF_RDMA_REJ_BAD_REQUEST},
	    {"wrong version", 4, RF_RDMA_VERSION + 1, RF_RDMA_REQ_LEN, RF_RDMA_REJ_BAD_VERSION},
	    {"non-zero flags", 6, 1, RF_RDMA_REQ_LEN, RF_RDMA_REJ_BAD_REQUEST},
	    {"short", SIZE_MAX, 0, RF_RDMA_REQ_LEN - 1, RF_RDMA_REJ_BAD_REQUEST},
	    {"8 bytes", SIZE_MAX, 0, 8, RF_RDMA_REJ_BAD_REQUEST},
	    {"empty", SIZE_MAX, 0, 0, RF_RDMA_REJ_BAD_REQUEST},
	};

	rf_rdma_req_encode(good, TOKEN);
	/* IB CM pads private data: trailing bytes after a good request are fine */
	assert_int_equal(rf_rdma_req_decode(good, sizeof(good), &r), 0);
	hub_open(&h);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ids = S.destroyed_ids, rejects = S.rejects;

		memset(bad, 0, sizeof(bad));
		memcpy(bad, good, sizeof(good));
		if (cases[i].off != SIZE_MAX)
			bad[cases[i].off] = cases[i].val;
		loglen = 0;
		logbuf[0] = '\0';
		hub_request(&h, bad, cases[i].len);
		assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 50), 0);
		if (h.attaches)
			fail_msg("%s: attach was called", cases[i].what);
		assert_int_equal(S.rejects, rejects + 1);
		assert_int_equal(S.rej.reason, cases[i].why);
		assert_int_equal(S.destroyed_ids, ids + 1); /* the request's id is gone */
		assert_logged("rejected a connection");
	}
	/* A padded good request (IB CM style) is accepted. */
	memset(bad, 0, sizeof(bad));
	memcpy(bad, good, sizeof(good));
	hub_request(&h, bad, 56);
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 50), 0);
	assert_int_equal(h.attaches, 1);
	assert_int_equal(S.accepts, 1);
	assert_true(S.ack_timeout >= 14 && S.ack_timeout <= 19); /* set before the accept */
	hub_close(&h);
}

/* A live producer: ESTABLISHED is ATTACHED, a doorbell is DATA, a CM
 * DISCONNECTED is DETACHED (err 0) with the QP in error and the ring MR
 * gone; publishing afterwards is -ENOTCONN. */
static void test_hub_disconnected(void **state)
{
	unsigned char req[RF_RDMA_REQ_LEN];
	struct rf_fab_hub_event evs[8];
	struct rf_rdma_acc acc;
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	const struct posted_wr *rx, *tx;
	struct rf_fab_peer *peer;
	struct rf_fab_position pos = {4352, 10, 4352, 10};
	struct hub h;
	int regs;

	hub_open(&h);
	rf_rdma_req_encode(req, TOKEN);
	id = hub_request(&h, req, sizeof(req));
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 50), 0);
	assert_int_equal(S.accepts, 1);
	assert_int_equal(rf_rdma_acc_decode(S.acc, sizeof(S.acc), &acc), 0);
	assert_int_equal(acc.data_size, RING_SIZE);
	assert_int_equal(acc.addr, (uint64_t)(uintptr_t)h.ring);
	assert_int_equal(acc.pos.durable_seq, ACC_POS.durable_seq);
	regs = S.mr_regs;
	cq = S.last_cq;

	chan_push(h.ch, id, RDMA_CM_EVENT_ESTABLISHED, 0, NULL, 0);
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_HEV_ATTACHED);
	peer = evs[0].peer;

	rx = first_recv(id->qp);
	assert_non_null(rx);
	inject_wc(cq, &(struct ibv_wc){.wr_id = rx->wr_id,
	                               .status = IBV_WC_SUCCESS,
	                               .opcode = IBV_WC_RECV_RDMA_WITH_IMM,
	                               .wc_flags = IBV_WC_WITH_IMM,
	                               .imm_data = htonl(10)});
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_HEV_DATA);
	assert_int_equal(evs[0].seq, 10);
	assert_int_equal(rf_fab_publish(peer, &pos), 0);
	tx = last_send();
	assert_non_null(tx);
	assert_int_equal(tx->opcode, IBV_WR_SEND);
	assert_int_equal(tx->len, RF_RDMA_POS_LEN);

	chan_push(h.ch, id, RDMA_CM_EVENT_DISCONNECTED, 0, NULL, 0);
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_HEV_DETACHED);
	assert_ptr_equal(evs[0].peer, peer);
	assert_int_equal(evs[0].err, 0);
	assert_int_equal(evs[0].seq, 10);
	assert_int_equal(S.qp_to_err, 1);
	assert_true(S.mr_deregs >= 1); /* the ring MR, before the peer is freed */
	assert_true(regs >= 2);
	assert_int_equal(rf_fab_publish(peer, &pos), -ENOTCONN);
	assert_logged("the producer disconnected");
	hub_close(&h);
}

/* A failed completion on the hub side (its position SEND) detaches too. */
static void test_hub_wc_error(void **state)
{
	unsigned char req[RF_RDMA_REQ_LEN];
	struct rf_fab_hub_event evs[8];
	struct rf_fab_position pos = {256, 9, 256, 9};
	struct rdma_cm_id *id;
	struct hub h;

	hub_open(&h);
	rf_rdma_req_encode(req, TOKEN);
	id = hub_request(&h, req, sizeof(req));
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 50), 0);
	chan_push(h.ch, id, RDMA_CM_EVENT_ESTABLISHED, 0, NULL, 0);
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 100), 1);
	assert_int_equal(rf_fab_publish(evs[0].peer, &pos), 0);
	inject_wc(S.last_cq, &(struct ibv_wc){.wr_id = last_send()->wr_id,
	                                      .status = IBV_WC_REM_ACCESS_ERR,
	                                      .opcode = IBV_WC_SEND});
	assert_int_equal(rf_fab_listener_poll(h.l, evs, 8, 100), 1);
	assert_int_equal(evs[0].type, RF_FAB_HEV_DETACHED);
	assert_int_equal(evs[0].err, -EACCES);
	assert_logged("a position send completed with");
	hub_close(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_producer_happy_path, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_producer_wc_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_producer_post_send_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_producer_cm_disconnected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_producer_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_reg_mr_eopnotsupp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_malformed_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_disconnected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hub_wc_error, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

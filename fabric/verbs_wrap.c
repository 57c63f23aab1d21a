/* SPDX-License-Identifier: MIT */
/*
 * The real rf_verbs_ops: librdmacm and libibverbs with their error
 * conventions converted to 0 / -errno. See verbs_wrap.h.
 */
#include <errno.h>

#include "verbs_wrap.h"

/* librdmacm and most ibv_* calls: 0, or -1 with errno set. */
static int from_errno(int rc)
{
	if (rc == 0)
		return 0;
	return errno > 0 ? -errno : -EIO;
}

/* ibv_* calls documented to return an errno value (some providers -1+errno). */
static int from_ret(int rc)
{
	if (rc == 0)
		return 0;
	if (rc > 0)
		return -rc;
	return errno > 0 ? -errno : -EIO;
}

/* Constructors: NULL with errno set. */
static int from_ptr(const void *p)
{
	if (p)
		return 0;
	return errno > 0 ? -errno : -ENOMEM;
}

static int w_create_event_channel(struct rdma_event_channel **out)
{
	errno = 0;
	*out = rdma_create_event_channel();
	return from_ptr(*out);
}

static void w_destroy_event_channel(struct rdma_event_channel *ch)
{
	rdma_destroy_event_channel(ch);
}

static int w_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **out, void *ctx,
                       enum rdma_port_space ps)
{
	return from_errno(rdma_create_id(ch, out, ctx, ps));
}

static int w_destroy_id(struct rdma_cm_id *id)
{
	return from_errno(rdma_destroy_id(id));
}

static int w_bind_addr(struct rdma_cm_id *id, struct sockaddr *addr)
{
	return from_errno(rdma_bind_addr(id, addr));
}

static int w_listen(struct rdma_cm_id *id, int backlog)
{
	return from_errno(rdma_listen(id, backlog));
}

static int w_resolve_addr(struct rdma_cm_id *id, struct sockaddr *dst, int timeout_ms)
{
	return from_errno(rdma_resolve_addr(id, NULL, dst, timeout_ms));
}

static int w_resolve_route(struct rdma_cm_id *id, int timeout_ms)
{
	return from_errno(rdma_resolve_route(id, timeout_ms));
}

static int w_connect(struct rdma_cm_id *id, struct rdma_conn_param *param)
{
	return from_errno(rdma_connect(id, param));
}

static int w_accept(struct rdma_cm_id *id, struct rdma_conn_param *param)
{
	return from_errno(rdma_accept(id, param));
}

static int w_reject(struct rdma_cm_id *id, const void *data, uint8_t len)
{
	return from_errno(rdma_reject(id, data, len));
}

static int w_disconnect(struct rdma_cm_id *id)
{
	return from_errno(rdma_disconnect(id));
}

static int w_set_option(struct rdma_cm_id *id, int level, int optname, void *optval, size_t optlen)
{
	return from_errno(rdma_set_option(id, level, optname, optval, optlen));
}

static int w_get_cm_event(struct rdma_event_channel *ch, struct rdma_cm_event **out)
{
	return from_errno(rdma_get_cm_event(ch, out));
}

static int w_ack_cm_event(struct rdma_cm_event *ev)
{
	return from_errno(rdma_ack_cm_event(ev));
}

static int w_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *attr)
{
	return from_errno(rdma_create_qp(id, pd, attr));
}

static void w_destroy_qp(struct rdma_cm_id *id)
{
	rdma_destroy_qp(id);
}

static int w_alloc_pd(struct ibv_context *ctx, struct ibv_pd **out)
{
	errno = 0;
	*out = ibv_alloc_pd(ctx);
	return from_ptr(*out);
}

static int w_dealloc_pd(struct ibv_pd *pd)
{
	return from_ret(ibv_dealloc_pd(pd));
}

static int w_reg_mr(struct ibv_pd *pd, void *addr, size_t len, int access, struct ibv_mr **out)
{
	errno = 0;
	*out = ibv_reg_mr(pd, addr, len, access);
	return from_ptr(*out);
}

static int w_dereg_mr(struct ibv_mr *mr)
{
	return from_ret(ibv_dereg_mr(mr));
}

static int w_create_comp_channel(struct ibv_context *ctx, struct ibv_comp_channel **out)
{
	errno = 0;
	*out = ibv_create_comp_channel(ctx);
	return from_ptr(*out);
}

static int w_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	return from_ret(ibv_destroy_comp_channel(ch));
}

static int w_create_cq(struct ibv_context *ctx, int cqe, void *cq_ctx, struct ibv_comp_channel *ch,
                       struct ibv_cq **out)
{
	errno = 0;
	*out = ibv_create_cq(ctx, cqe, cq_ctx, ch, 0);
	return from_ptr(*out);
}

static int w_destroy_cq(struct ibv_cq *cq)
{
	return from_ret(ibv_destroy_cq(cq));
}

static int w_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask)
{
	return from_ret(ibv_modify_qp(qp, attr, mask));
}

static int w_req_notify_cq(struct ibv_cq *cq, int solicited_only)
{
	return from_ret(ibv_req_notify_cq(cq, solicited_only));
}

static int w_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **cq_ctx)
{
	return from_errno(ibv_get_cq_event(ch, cq, cq_ctx));
}

static void w_ack_cq_events(struct ibv_cq *cq, unsigned n)
{
	ibv_ack_cq_events(cq, n);
}

static int w_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	int rc = ibv_poll_cq(cq, n, wc);

	/* A negative return carries no reliable errno. */
	return rc >= 0 ? rc : -EIO;
}

static int w_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr, struct ibv_send_wr **bad)
{
	return from_ret(ibv_post_send(qp, wr, bad));
}

static int w_post_recv(struct ibv_qp *qp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad)
{
	return from_ret(ibv_post_recv(qp, wr, bad));
}

const struct rf_verbs_ops rf_verbs_real = {
    .create_event_channel = w_create_event_channel,
    .destroy_event_channel = w_destroy_event_channel,
    .create_id = w_create_id,
    .destroy_id = w_destroy_id,
    .bind_addr = w_bind_addr,
    .listen = w_listen,
    .resolve_addr = w_resolve_addr,
    .resolve_route = w_resolve_route,
    .connect = w_connect,
    .accept = w_accept,
    .reject = w_reject,
    .disconnect = w_disconnect,
    .set_option = w_set_option,
    .get_cm_event = w_get_cm_event,
    .ack_cm_event = w_ack_cm_event,
    .create_qp = w_create_qp,
    .destroy_qp = w_destroy_qp,
    .alloc_pd = w_alloc_pd,
    .dealloc_pd = w_dealloc_pd,
    .reg_mr = w_reg_mr,
    .dereg_mr = w_dereg_mr,
    .create_comp_channel = w_create_comp_channel,
    .destroy_comp_channel = w_destroy_comp_channel,
    .create_cq = w_create_cq,
    .destroy_cq = w_destroy_cq,
    .modify_qp = w_modify_qp,
    .req_notify_cq = w_req_notify_cq,
    .get_cq_event = w_get_cq_event,
    .ack_cq_events = w_ack_cq_events,
    .poll_cq = w_poll_cq,
    .post_send = w_post_send,
    .post_recv = w_post_recv,
};

const struct rf_verbs_ops *rf_verbs = &rf_verbs_real;

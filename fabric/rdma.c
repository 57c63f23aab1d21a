/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider: librdmacm connection management and a libibverbs RC
 * QP per producer. Wire format: docs/PROTOCOL.md ("Data transport: rdma://").
 *
 * Its files, one job each: rdma_producer.c (the producer side),
 * rdma_hub.c (the hub side), rdma_common.c (what both sides share),
 * rdma_internal.h (their structs and declarations), verbs_wrap.c (every
 * librdmacm/libibverbs call). This file holds the ops table.
 *
 * File descriptors: a conn or listener owns an epoll fd (the fd handed to
 * the caller) holding its rdma_cm event channel fd, the completion channel
 * fd(s) and an eventfd. The eventfd is kept readable while internal events
 * are queued but not yet returned, or while a CQ was left non-empty by the
 * per-call drain bound, so the epoll fd is readable exactly while poll has
 * work. All fds are non-blocking; the only blocking call is epoll_wait with
 * the caller's timeout (and poll(2) on the CM channel in connect).
 */
#include "rdma_internal.h"

const struct rf_fab_provider rf_fab_rdma_provider = {
    .scheme = "rdma",
    .connect = rf_rdma_connect,
    .post = rf_rdma_post,
    .poll = rf_rdma_poll,
    .conn_fd = rf_rdma_conn_fd,
    .close = rf_rdma_close,
    .listen = rf_rdma_listen,
    .listener_poll = rf_rdma_listener_poll,
    .listener_fd = rf_rdma_listener_fd,
    .publish = rf_rdma_publish,
    .fence = rf_rdma_fence,
    .listener_close = rf_rdma_listener_close,
};

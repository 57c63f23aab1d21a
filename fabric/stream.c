/* SPDX-License-Identifier: MIT */
/*
 * The tcp:// and shm:// providers: one framed-stream core, two ops tables
 * (below). Framing: fabric/stream_wire.h.
 *
 *   tcp: the producer sends each segment as a WRITE frame and the hub reads
 *        it straight into its ring memory at the offset the producer chose.
 *   shm: the producer maps the ring file the hub names in WELCOME and copies
 *        segments in itself; only DOORBELL frames cross the socket.
 *
 * Both then send a DOORBELL with the last sequence; the hub reports it as a
 * DATA event. Hub -> producer: WELCOME/REFUSE once, then POSITION frames.
 *
 * Its files, one job each: stream_conn.c (the producer side),
 * stream_listener.c (the hub side), stream_wire.c (the frame codec both
 * use). This file holds the two ops tables.
 */
#include <stdbool.h>

#include "provider.h"
#include "stream_internal.h"

static int tcp_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                       struct rf_fab_ring_info *info)
{
	return rf_sw_connect(false, addr, token, timeout_ms, out, info);
}

static int shm_connect(const char *addr, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                       struct rf_fab_ring_info *info)
{
	return rf_sw_connect(true, addr, token, timeout_ms, out, info);
}

static int tcp_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                      struct rf_fab_listener **out)
{
	return rf_sw_listen(false, &rf_fab_tcp_provider, addr, ops, ctx, out);
}

static int shm_listen(const char *addr, const struct rf_fab_hub_ops *ops, void *ctx,
                      struct rf_fab_listener **out)
{
	return rf_sw_listen(true, &rf_fab_shm_provider, addr, ops, ctx, out);
}

#define SW_COMMON_OPS                                                                              \
	.post = rf_sw_post, .poll = rf_sw_poll, .conn_fd = rf_sw_conn_fd, .close = rf_sw_close,    \
	.listener_poll = rf_sw_listener_poll, .listener_fd = rf_sw_listener_fd,                    \
	.publish = rf_sw_publish, .fence = rf_sw_fence, .listener_close = rf_sw_listener_close

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

/* SPDX-License-Identifier: MIT */
/*
 * A framed, non-blocking control stream (common/ctl_stream.c): the receive
 * side reads a 24-byte header, checks it (rf_ctl_hdr_decode, then the
 * caller's payload cap) before reading anything more, then exactly its
 * payload; the send side queues whole frames and writes them as the socket
 * takes them. The hub's control connections and the agent's control client
 * both use it; neither epoll nor the clock is its business (the caller arms
 * EPOLLOUT while rf_ctl_stream_pending() is not 0).
 *
 * Functions return 0 (or 1, see rf_ctl_stream_recv) or -errno. Not
 * thread-safe: one loop owns a stream.
 */
#ifndef REPFABRIC_CTL_STREAM_H
#define REPFABRIC_CTL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/ctl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Buffers above this are freed once empty (the next big frame allocates again). */
#define RF_CTL_STREAM_KEEP (64u << 10)

struct rf_ctl_stream {
	int fd;

	/* receive: a header, then its payload */
	bool rx_payload;             /* the header is complete; reading the payload */
	uint8_t hdr[RF_CTL_HDR_LEN]; /* the header's bytes, as read */
	size_t got;                  /* bytes of the current header or payload */
	struct rf_ctl_hdr h;         /* the header, once decoded */
	uint8_t *pl;                 /* the payload, h.len bytes once complete */
	size_t plcap;

	/* send */
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	size_t out_max; /* queued bytes allowed, 0: no limit */
};

/* A fresh stream on @fd (no buffers yet). */
void rf_ctl_stream_init(struct rf_ctl_stream *s, int fd, size_t out_max);
/* Drop what is half received and what is queued, keep the buffers, use @fd. */
void rf_ctl_stream_reset(struct rf_ctl_stream *s, int fd);
/* Free the buffers (the fd is the caller's). */
void rf_ctl_stream_fini(struct rf_ctl_stream *s);

/*
 * Read toward the next frame, at most *@budget bytes (*@budget is lowered
 * by what was read). Returns
 *   1            a frame is complete: s->h and s->pl (h.len bytes); handle
 *                it, then call rf_ctl_stream_next();
 *   0            no byte available now, or the budget is spent;
 *   -EPROTO      the header fails rf_ctl_hdr_decode (@why; s->hdr holds its
 *                bytes, s->h what could be parsed); the stream cannot resync;
 *   -EMSGSIZE    a valid header (s->h) announces more than @max_len bytes;
 *   -ECONNRESET  the peer closed (rf_ctl_stream_mid_frame() says where);
 *   -ENOMEM, or another -errno from read(2).
 */
int rf_ctl_stream_recv(struct rf_ctl_stream *s, uint32_t max_len, size_t *budget, const char **why);
/* The frame rf_ctl_stream_recv returned is handled: start the next one. */
void rf_ctl_stream_next(struct rf_ctl_stream *s);
/* True when part of a frame has been read. */
bool rf_ctl_stream_mid_frame(const struct rf_ctl_stream *s);

/*
 * Queue one frame (header + @len payload bytes). Nothing is written yet:
 * call rf_ctl_stream_flush(). Returns 0, -EMSGSIZE (@len above
 * RF_CTL_MAX_PAYLOAD), -ENOBUFS (more than out_max would be queued: the peer
 * does not read), -ENOMEM.
 */
int rf_ctl_stream_queue(struct rf_ctl_stream *s, uint16_t type, uint64_t req_id,
                        const void *payload, uint32_t len);
/* Write what the socket takes now. 0 (see rf_ctl_stream_pending), or -errno from send(2). */
int rf_ctl_stream_flush(struct rf_ctl_stream *s);
/* Bytes queued and not written yet. */
size_t rf_ctl_stream_pending(const struct rf_ctl_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_CTL_STREAM_H */

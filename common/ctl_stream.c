/* SPDX-License-Identifier: MIT */
/*
 * The framed non-blocking control stream, one job: turn a socket's bytes
 * into checked frames and queued frames into the socket's bytes (see
 * include/repfabric/ctl_stream.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "repfabric/ctl_stream.h"

void rf_ctl_stream_init(struct rf_ctl_stream *s, int fd, size_t out_max)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->out_max = out_max;
}

void rf_ctl_stream_reset(struct rf_ctl_stream *s, int fd)
{
	s->fd = fd;
	s->rx_payload = false;
	s->got = 0;
	s->out_off = s->out_len = 0;
}

void rf_ctl_stream_fini(struct rf_ctl_stream *s)
{
	free(s->pl);
	free(s->out);
	s->pl = s->out = NULL;
	s->plcap = s->out_cap = 0;
	s->got = s->out_off = s->out_len = 0;
	s->rx_payload = false;
}

bool rf_ctl_stream_mid_frame(const struct rf_ctl_stream *s)
{
	return s->got || s->rx_payload;
}

/* After a read or send that failed: 1 to try again (EINTR), 0 when the
 * socket takes or gives nothing more now, or -errno. */
static int io_failed(void)
{
	if (errno == EINTR)
		return 1;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return -errno;
}

/* The header is complete: check it, and make room for its payload. */
static int header_done(struct rf_ctl_stream *s, uint32_t max_len, const char **why)
{
	int rc = rf_ctl_hdr_decode(s->hdr, &s->h, why);

	if (rc)
		return rc;
	if (s->h.len > max_len)
		return -EMSGSIZE;
	s->got = 0;
	if (s->h.len == 0)
		return 1;
	if (s->h.len > s->plcap) {
		uint8_t *np = realloc(s->pl, s->h.len);

		if (!np)
			return -ENOMEM;
		s->pl = np;
		s->plcap = s->h.len;
	}
	s->rx_payload = true;
	return 0;
}

int rf_ctl_stream_recv(struct rf_ctl_stream *s, uint32_t max_len, size_t *budget, const char **why)
{
	while (*budget > 0) {
		uint8_t *dst;
		size_t want;
		ssize_t n;
		int rc;

		if (!s->rx_payload) {
			dst = s->hdr + s->got;
			want = RF_CTL_HDR_LEN - s->got;
		} else {
			dst = s->pl + s->got;
			want = s->h.len - s->got;
		}
		n = read(s->fd, dst, want < *budget ? want : *budget);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			rc = io_failed();
			if (rc == 1)
				continue;
			return rc;
		}
		*budget -= (size_t)n;
		s->got += (size_t)n;
		if ((size_t)n < want)
			continue;
		if (s->rx_payload)
			return 1;
		rc = header_done(s, max_len, why);
		if (rc)
			return rc;
	}
	return 0;
}

void rf_ctl_stream_next(struct rf_ctl_stream *s)
{
	s->rx_payload = false;
	s->got = 0;
	if (s->plcap > RF_CTL_STREAM_KEEP) {
		free(s->pl);
		s->pl = NULL;
		s->plcap = 0;
	}
}

size_t rf_ctl_stream_pending(const struct rf_ctl_stream *s)
{
	return s->out_len - s->out_off;
}

int rf_ctl_stream_queue(struct rf_ctl_stream *s, uint16_t type, uint64_t req_id,
                        const void *payload, uint32_t len)
{
	size_t need = RF_CTL_HDR_LEN + (size_t)len;

	if (len > RF_CTL_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (s->out_max && rf_ctl_stream_pending(s) + need > s->out_max)
		return -ENOBUFS;
	if (s->out_off && s->out_len + need > s->out_cap) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	if (s->out_len + need > s->out_cap) {
		size_t cap = s->out_cap ? s->out_cap : 4096;
		uint8_t *n;

		while (cap < s->out_len + need)
			cap *= 2;
		n = realloc(s->out, cap);
		if (!n)
			return -ENOMEM;
		s->out = n;
		s->out_cap = cap;
	}
	rf_ctl_hdr_encode(s->out + s->out_len, type, req_id, len);
	if (len)
		memcpy(s->out + s->out_len + RF_CTL_HDR_LEN, payload, len);
	s->out_len += need;
	return 0;
}

int rf_ctl_stream_flush(struct rf_ctl_stream *s)
{
	while (s->out_off < s->out_len) {
		ssize_t n = send(s->fd, s->out + s->out_off, s->out_len - s->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			int rc = io_failed();

			if (rc == 1)
				continue;
			return rc;
		}
		s->out_off += (size_t)n;
	}
	s->out_off = s->out_len = 0;
	if (s->out_cap > RF_CTL_STREAM_KEEP) {
		free(s->out);
		s->out = NULL;
		s->out_cap = 0;
	}
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * The framed stream's codec (stream_wire.h), shared by the tcp:// and shm://
 * producer (stream_conn.c) and hub (stream_listener.c) sides: frame headers,
 * the position payload, and sending one whole frame.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "repfabric/le.h"
#include "repfabric/sockio.h"
#include "stream_wire.h"

void rf_sw_hdr_encode(uint8_t *h, enum rf_sw_type type, uint32_t len)
{
	memset(h, 0, RF_SW_HDR_LEN);
	rf_put_le32(h, RF_SW_MAGIC);
	h[4] = RF_SW_VERSION;
	h[5] = (uint8_t)type;
	rf_put_le32(h + 8, len);
}

/* Validate a frame header; returns 0 or -EPROTO with @why set. */
int rf_sw_hdr_decode(const uint8_t *h, unsigned *type, uint32_t *len, unsigned *flags,
                     const char **why)
{
	if (rf_get_le32(h) != RF_SW_MAGIC) {
		*why = "bad frame magic";
		return -EPROTO;
	}
	if (h[4] != RF_SW_VERSION) {
		*why = "unsupported frame version";
		return -EPROTO;
	}
	if (h[7] != 0 || rf_get_le32(h + 12) != 0) {
		*why = "reserved header bytes not zero";
		return -EPROTO;
	}
	if (h[6] & ~(h[5] == RF_SW_DOORBELL ? RF_SW_DB_LANDED : 0u)) {
		*why = "unknown header flags";
		return -EPROTO;
	}
	*type = h[5];
	*len = rf_get_le32(h + 8);
	if (flags)
		*flags = h[6];
	return 0;
}

void rf_sw_position_encode(uint8_t *p, const struct rf_fab_position *pos)
{
	rf_put_le64(p, pos->durable_pos);
	rf_put_le64(p + 8, pos->durable_seq);
	rf_put_le64(p + 16, pos->head_pos);
	rf_put_le64(p + 24, pos->head_seq);
}

void rf_sw_position_decode(const uint8_t *p, struct rf_fab_position *pos)
{
	pos->durable_pos = rf_get_le64(p);
	pos->durable_seq = rf_get_le64(p + 8);
	pos->head_pos = rf_get_le64(p + 16);
	pos->head_seq = rf_get_le64(p + 24);
}

int rf_sw_send_frame(int fd, enum rf_sw_type type, const void *payload, uint32_t len,
                     int timeout_ms)
{
	uint8_t h[RF_SW_HDR_LEN];
	struct iovec iov[2] = {{h, sizeof(h)}, {(void *)payload, len}};

	rf_sw_hdr_encode(h, type, len);
	return rf_write_all(fd, iov, len ? 2 : 1, rf_now_ms() + timeout_ms);
}

/* SPDX-License-Identifier: MIT */
/*
 * The control channel's message table, one job: per message type its name,
 * direction, the role that may send it to the hub, and its decoder (see
 * include/repfabric/ctl.h, "the message table"). The byte layouts are in
 * ctl_wire.c; this file only says which one each type uses.
 */
#include <errno.h>
#include <stddef.h>

#include "repfabric/ctl.h"

/* Adapters from the typed decoders to the table's one signature. */
#define DECODER(fn, member)                                                                        \
	static int dec_##fn(const uint8_t *p, size_t len, uint16_t type, union rf_ctl_msg *m,      \
	                    const char **why)                                                      \
	{                                                                                          \
		return rf_ctl_dec_##fn(p, len, &m->member, why);                                   \
	}

DECODER(error, error)
DECODER(hello, hello)
DECODER(hello_ok, hello_ok)
DECODER(volume_report, volume_report)
DECODER(volume_ok, volume_ok)
DECODER(sync_read, sync_read)
DECODER(sync_posted, sync_posted)
DECODER(progress, progress)
DECODER(volume_state, volume_state)
DECODER(io_open, io_open)
DECODER(io_open_ok, io_open_ok)
DECODER(points, points)
DECODER(points_ok, points_ok)
DECODER(admin, admin)
DECODER(admin_ok, admin_ok)
DECODER(auth_start, auth_start)
DECODER(auth_blob, auth_blob)
DECODER(auth_ok, auth_ok)

/* IO_READ, IO_WRITE and IO_FLUSH share a layout that depends on the type. */
static int dec_io_req(const uint8_t *p, size_t len, uint16_t type, union rf_ctl_msg *m,
                      const char **why)
{
	return rf_ctl_dec_io_req(p, len, type, &m->io_req, why);
}

/* STATUS_OK and IO_DATA: the payload itself (JSON text, the bytes read). */
static int dec_raw(const uint8_t *p, size_t len, uint16_t type, union rf_ctl_msg *m,
                   const char **why)
{
	m->raw.p = p;
	m->raw.len = len;
	return 0;
}

#define ROW(t, dir_, role_, notify_, dec)                                                          \
	[RF_CTL_##t] = {.type = RF_CTL_##t,                                                        \
	                .name = #t,                                                                \
	                .dir = RF_CTL_##dir_,                                                      \
	                .role = RF_CTL_ROLE_##role_,                                               \
	                .notify = notify_,                                                         \
	                .decode = dec}

static const struct rf_ctl_msg_desc rows[RF_CTL_TYPE_LIMIT] = {
    /* ROW(type, direction, who may send it to the hub, notification, decoder) */
    ROW(ERROR, BOTH, ANY, false, dec_error),
    ROW(HELLO, TO_HUB, AGENT, false, dec_hello),
    ROW(HELLO_OK, TO_PEER, NONE, false, dec_hello_ok),
    ROW(VOLUME_REPORT, TO_HUB, AGENT, false, dec_volume_report),
    ROW(VOLUME_OK, TO_PEER, NONE, false, dec_volume_ok),
    ROW(SYNC_READ, TO_PEER, NONE, false, dec_sync_read),
    ROW(SYNC_POSTED, TO_HUB, AGENT, false, dec_sync_posted),
    ROW(HEARTBEAT, BOTH, ANY, false, NULL),
    ROW(STATUS, TO_HUB, ADMIN, false, NULL),
    ROW(STATUS_OK, TO_PEER, NONE, false, dec_raw),
    ROW(VOLUME_STATE, TO_PEER, NONE, true, dec_volume_state),
    ROW(PROGRESS, TO_HUB, AGENT, true, dec_progress),
    ROW(REPORT_AGAIN, TO_PEER, NONE, true, NULL),
    ROW(IO_OPEN, TO_HUB, ADMIN, false, dec_io_open),
    ROW(IO_OPEN_OK, TO_PEER, NONE, false, dec_io_open_ok),
    ROW(IO_READ, TO_HUB, ADMIN, false, dec_io_req),
    ROW(IO_DATA, TO_PEER, NONE, false, dec_raw),
    ROW(IO_WRITE, TO_HUB, ADMIN, false, dec_io_req),
    ROW(IO_FLUSH, TO_HUB, ADMIN, false, dec_io_req),
    ROW(IO_DONE, TO_PEER, NONE, false, NULL),
    ROW(POINTS, TO_HUB, ADMIN, false, dec_points),
    ROW(POINTS_OK, TO_PEER, NONE, false, dec_points_ok),
    ROW(ADMIN, TO_HUB, ADMIN, false, dec_admin),
    ROW(ADMIN_OK, TO_PEER, NONE, false, dec_admin_ok),
    ROW(AUTH_START, TO_HUB, PREAUTH, false, dec_auth_start),
    ROW(AUTH_CHALLENGE, TO_PEER, NONE, false, dec_auth_blob),
    ROW(AUTH_PROOF, TO_HUB, PREAUTH, false, dec_auth_blob),
    ROW(AUTH_OK, TO_PEER, NONE, false, dec_auth_ok),
};

const struct rf_ctl_msg_desc *rf_ctl_msg_desc(uint16_t type)
{
	return type < RF_CTL_TYPE_LIMIT && rows[type].name ? &rows[type] : NULL;
}

const char *rf_ctl_type_name(uint16_t type)
{
	const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc(type);

	return d ? d->name : "?";
}

int rf_ctl_decode(const struct rf_ctl_msg_desc *d, const uint8_t *p, size_t len,
                  union rf_ctl_msg *m, const char **why)
{
	if (d->decode)
		return d->decode(p, len, d->type, m, why);
	if (len) {
		*why = "a payload on a message that has none";
		return -EBADMSG;
	}
	return 0;
}

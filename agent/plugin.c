/* SPDX-License-Identifier: MIT */
/*
 * nbdkit-repagent-plugin: redirect mode. Serves a failover test's view of
 * a protected volume: every read, write and flush is sent to rephubd over
 * the control channel (IO_OPEN, IO_READ, IO_WRITE, IO_FLUSH; docs/PROTOCOL.md)
 * and answered there from the test's scratch overlay, the journal up to the
 * test's point and the recovery image. Writes land in the test's scratch
 * only and are discarded when the test stops.
 *
 *   nbdkit -U SOCK build/lib/nbdkit-repagent-plugin.so hub=HOST:PORT volume=NAME
 *
 * One control connection per NBD connection; requests on it are serialized.
 * The hub drops connections silent for 30 s: a failed request reconnects
 * (IO_OPEN again) and is retried once.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repfabric/auth.h"
#include "repfabric/ctl.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS
#define DIAL_MS      5000
#define REPLY_MS     60000

static char *hub_addr;
static char volume[RF_CTL_MAX_NAME + 1];
static char *psk_file, *identity;
static struct rf_auth_keys keys;
static const struct rf_auth_key *psk_key; /* NULL: no authentication */

struct conn {
	int fd;
	uint32_t handle;
	uint64_t size;
	uint64_t next_req;
	uint8_t *buf; /* RF_CTL_MAX_PAYLOAD */
};

static int rp_config(const char *key, const char *value)
{
	if (strcmp(key, "hub") == 0) {
		free(hub_addr);
		hub_addr = strdup(value);
		return hub_addr ? 0 : -1;
	}
	if (strcmp(key, "volume") == 0) {
		if (!rf_ctl_name_ok(value)) {
			nbdkit_error("repagent-plugin: volume '%s' is not a valid name", value);
			return -1;
		}
		snprintf(volume, sizeof(volume), "%s", value);
		return 0;
	}
	if (strcmp(key, "psk_file") == 0 || strcmp(key, "identity") == 0) {
		char **dst = key[0] == 'p' ? &psk_file : &identity;

		free(*dst);
		*dst = key[0] == 'p' ? nbdkit_absolute_path(value) : strdup(value);
		return *dst ? 0 : -1;
	}
	nbdkit_error("repagent-plugin: unknown parameter '%s' (hub=HOST:PORT volume=NAME "
	             "[psk_file=FILE identity=NAME])",
	             key);
	return -1;
}

static int rp_config_complete(void)
{
	if (!hub_addr || !volume[0]) {
		nbdkit_error("repagent-plugin: hub=HOST:PORT and volume=NAME are required");
		return -1;
	}
	if (identity && !psk_file) {
		nbdkit_error("repagent-plugin: identity= needs psk_file=");
		return -1;
	}
	if (psk_file) {
		char why[4096 + 256];
		int rc = rf_auth_keys_load(&keys, psk_file, why, sizeof(why));

		if (!rc)
			rc = rf_auth_key_pick(&keys, identity, &psk_key, why, sizeof(why));
		if (rc) {
			nbdkit_error("repagent-plugin: psk_file: %s", why);
			return -1;
		}
	}
	return 0;
}

static void rp_unload(void)
{
	free(hub_addr);
	hub_addr = NULL;
	free(psk_file);
	free(identity);
	psk_file = identity = NULL;
	psk_key = NULL;
	rf_auth_keys_free(&keys);
}

/*
 * Send a request and wait for its reply (answering hub heartbeats).
 * Returns 0 with the reply in c->buf, or -errno (ERROR: its code).
 */
static int request(struct conn *c, uint16_t type, const void *pl, uint32_t len, const void *data,
                   uint32_t dlen, struct rf_ctl_hdr *h)
{
	uint64_t req = ++c->next_req;
	const char *why = "";
	int rc;

	if (c->fd < 0)
		return -ENOTCONN;
	rc = rf_ctl_send(c->fd, type, req, pl, len, data, dlen);
	while (!rc) {
		rc = rf_ctl_recv(c->fd, h, c->buf, RF_CTL_MAX_PAYLOAD, REPLY_MS, &why);
		if (rc)
			break;
		if (h->type == RF_CTL_HEARTBEAT && (h->req_id >> 63)) {
			rc = rf_ctl_send(c->fd, RF_CTL_HEARTBEAT, h->req_id, NULL, 0, NULL, 0);
			continue;
		}
		if (h->req_id == req)
			break;
	}
	if (rc) {
		nbdkit_debug("repagent-plugin: hub %s: %s", hub_addr,
		             rc == -EPROTO ? why : strerror(-rc));
		close(c->fd);
		c->fd = -1;
		return rc == -EPROTO ? -EIO : rc;
	}
	if (h->type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(c->buf, h->len, &e, &why)) {
			nbdkit_error("repagent-plugin: malformed ERROR from the hub: %s", why);
			return -EIO;
		}
		nbdkit_error("repagent-plugin: %s", e.reason);
		return e.code > 0 ? -e.code : -EIO;
	}
	return 0;
}

static int open_view(struct conn *c)
{
	struct rf_ctl_io_open m;
	struct rf_ctl_io_open_ok ok;
	struct rf_ctl_hdr h;
	const char *why = "";
	uint8_t pl[128];
	char awhy[RF_CTL_MAX_TEXT + 128];
	int n, rc;

	c->fd = rf_auth_dial(hub_addr, psk_key, DIAL_MS, awhy, sizeof(awhy));
	if (c->fd < 0) {
		nbdkit_error("repagent-plugin: hub at %s: %s", hub_addr, awhy);
		return c->fd;
	}
	snprintf(m.name, sizeof(m.name), "%s", volume);
	n = rf_ctl_enc_io_open(pl, sizeof(pl), &m);
	if (n < 0)
		return n;
	rc = request(c, RF_CTL_IO_OPEN, pl, (uint32_t)n, NULL, 0, &h);
	if (rc)
		return rc;
	if (h.type != RF_CTL_IO_OPEN_OK || rf_ctl_dec_io_open_ok(c->buf, h.len, &ok, &why)) {
		nbdkit_error("repagent-plugin: bad answer to IO_OPEN (type %u)", h.type);
		return -EIO;
	}
	if (c->size && ok.size != c->size) {
		nbdkit_error("repagent-plugin: the view of %s changed size", volume);
		return -EIO;
	}
	c->handle = ok.handle;
	c->size = ok.size;
	nbdkit_debug("repagent-plugin: %s: test view at seq %" PRIu64 ", %" PRIu64 " bytes", volume,
	             ok.seq, ok.size);
	return 0;
}

static void *rp_open(int readonly)
{
	struct conn *c = calloc(1, sizeof(*c));

	(void)readonly;
	if (!c) {
		nbdkit_error("repagent-plugin: out of memory");
		return NULL;
	}
	c->fd = -1;
	c->buf = malloc(RF_CTL_MAX_PAYLOAD);
	if (!c->buf || open_view(c)) {
		if (c->fd >= 0)
			close(c->fd);
		free(c->buf);
		free(c);
		return NULL;
	}
	return c;
}

static void rp_close(void *handle)
{
	struct conn *c = handle;

	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

static int64_t rp_get_size(void *handle)
{
	return (int64_t)((struct conn *)handle)->size;
}

static int rp_can_flush(void *handle)
{
	(void)handle;
	return 1;
}

static int rp_can_multi_conn(void *handle)
{
	(void)handle;
	return 1; /* every connection sees the same view on the hub */
}

/* One IO request; reconnect once when the connection was lost. */
static int io(struct conn *c, uint16_t type, uint64_t off, uint32_t len, const void *data,
              void *out)
{
	struct rf_ctl_io_req m = {.offset = off, .length = len};
	struct rf_ctl_hdr h;
	uint8_t pl[32];
	int rc = -ENOTCONN;

	for (int attempt = 0; attempt < 2; attempt++) {
		if (c->fd < 0 && (rc = open_view(c)))
			break;
		m.handle = c->handle;
		rf_ctl_enc_io_req(pl, sizeof(pl), &m);
		rc = request(c, type, pl, 16, data, type == RF_CTL_IO_WRITE ? len : 0, &h);
		if (rc == -ENOTCONN || rc == -ECONNRESET || rc == -EPIPE || rc == -ETIMEDOUT) {
			if (c->fd >= 0) {
				close(c->fd);
				c->fd = -1;
			}
			continue;
		}
		break;
	}
	if (rc)
		return rc;
	if (type == RF_CTL_IO_READ) {
		if (h.type != RF_CTL_IO_DATA || h.len != len) {
			nbdkit_error("repagent-plugin: bad answer to IO_READ (type %u, %u bytes)",
			             h.type, h.len);
			return -EIO;
		}
		memcpy(out, c->buf, len);
	} else if (h.type != RF_CTL_IO_DONE) {
		nbdkit_error("repagent-plugin: bad answer (type %u)", h.type);
		return -EIO;
	}
	return 0;
}

static int rw(void *handle, uint16_t type, void *buf, uint32_t count, uint64_t offset)
{
	struct conn *c = handle;
	uint8_t *p = buf;

	while (count > 0) {
		uint32_t n = count < RF_CTL_MAX_DATA ? count : RF_CTL_MAX_DATA;
		int rc = io(c, type, offset, n, type == RF_CTL_IO_WRITE ? p : NULL, p);

		if (rc) {
			nbdkit_set_error(-rc);
			return -1;
		}
		p += n;
		offset += n;
		count -= n;
	}
	return 0;
}

static int rp_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)flags;
	return rw(handle, RF_CTL_IO_READ, buf, count, offset);
}

static int rp_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	if (rw(handle, RF_CTL_IO_WRITE, (void *)buf, count, offset))
		return -1;
	if (flags & NBDKIT_FLAG_FUA) {
		int rc = io(handle, RF_CTL_IO_FLUSH, 0, 0, NULL, NULL);

		if (rc) {
			nbdkit_set_error(-rc);
			return -1;
		}
	}
	return 0;
}

static int rp_flush(void *handle, uint32_t flags)
{
	int rc = io(handle, RF_CTL_IO_FLUSH, 0, 0, NULL, NULL);

	(void)flags;
	if (rc) {
		nbdkit_set_error(-rc);
		return -1;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
    .name = "repagent",
    .longname = "repfabric failover-test view (redirect mode)",
    .version = "1",
    .config = rp_config,
    .config_complete = rp_config_complete,
    .config_help = "hub=HOST:PORT   rephubd's control address\n"
                   "volume=NAME     the volume whose failover test to serve\n"
                   "psk_file=FILE   key file (mode 0600): authenticate to the hub\n"
                   "identity=NAME   the key to use (an admin identity; default: the\n"
                   "                file's only key)",
    .unload = rp_unload,
    .open = rp_open,
    .close = rp_close,
    .get_size = rp_get_size,
    .can_flush = rp_can_flush,
    .can_multi_conn = rp_can_multi_conn,
    .pread = rp_pread,
    .pwrite = rp_pwrite,
    .flush = rp_flush,
};

NBDKIT_REGISTER_PLUGIN(plugin)

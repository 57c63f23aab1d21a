/* SPDX-License-Identifier: MIT */
/* Control channel framing and payload codecs: see include/repfabric/ctl.h. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "repfabric/ctl.h"
#include "repfabric/sockio.h"

/* ---- bounded little-endian writer and reader -------------------------- */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	const char *why;
};

static void w_bytes(struct wbuf *w, const void *src, size_t n)
{
	if (w->err || n > w->cap - w->len) {
		w->err = -ENOBUFS;
		return;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

static void w_le(struct wbuf *w, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	w_bytes(w, b, n);
}

static void w_str(struct wbuf *w, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max) {
		w->err = -EINVAL;
		return;
	}
	w_le(w, n, 2);
	w_bytes(w, s, n);
}

static int w_done(const struct wbuf *w)
{
	return w->err ? w->err : (int)w->len;
}

static const uint8_t *r_take(struct rbuf *r, size_t n)
{
	const uint8_t *p;

	if (r->why)
		return NULL;
	if (n > r->len - r->off) {
		r->why = "payload shorter than its fields";
		return NULL;
	}
	p = r->p + r->off;
	r->off += n;
	return p;
}

static uint64_t r_le(struct rbuf *r, unsigned n)
{
	const uint8_t *p = r_take(r, n);
	uint64_t v = 0;

	if (!p)
		return 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A length-prefixed string of at most @max bytes, no NUL inside. */
static void r_str(struct rbuf *r, char *out, size_t max)
{
	size_t n = (size_t)r_le(r, 2);
	const uint8_t *p;

	out[0] = '\0';
	if (r->why)
		return;
	if (n > max) {
		r->why = "string longer than allowed";
		return;
	}
	p = r_take(r, n);
	if (!p)
		return;
	if (memchr(p, '\0', n)) {
		r->why = "NUL byte inside a string";
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

static int r_done(struct rbuf *r, const char **why)
{
	if (!r->why && r->off != r->len)
		r->why = "trailing bytes after the last field";
	if (r->why) {
		if (why)
			*why = r->why;
		return -EBADMSG;
	}
	return 0;
}

#define WBUF(b, n)                                                                                 \
	{                                                                                          \
		.p = (b), .cap = (n)                                                               \
	}
#define RBUF(b, n)                                                                                 \
	{                                                                                          \
		.p = (b), .len = (n)                                                               \
	}

/* ---- header ----------------------------------------------------------- */

void rf_ctl_hdr_encode(uint8_t *buf, uint16_t type, uint64_t req_id, uint32_t len)
{
	struct wbuf w = WBUF(buf, RF_CTL_HDR_LEN);

	w_le(&w, RF_CTL_MAGIC, 4);
	w_le(&w, RF_CTL_VERSION, 2);
	w_le(&w, type, 2);
	w_le(&w, req_id, 8);
	w_le(&w, len, 4);
	w_le(&w, 0, 4);
}

int rf_ctl_hdr_decode(const uint8_t *buf, struct rf_ctl_hdr *h, const char **why)
{
	struct rbuf r = RBUF(buf, RF_CTL_HDR_LEN);
	uint32_t magic = (uint32_t)r_le(&r, 4);
	uint16_t version = (uint16_t)r_le(&r, 2);

	h->type = (uint16_t)r_le(&r, 2);
	h->req_id = r_le(&r, 8);
	h->len = (uint32_t)r_le(&r, 4);
	if (magic != RF_CTL_MAGIC)
		*why = "bad magic (not a repfabric control frame)";
	else if (version != RF_CTL_VERSION)
		*why = "unsupported protocol version";
	else if (r_le(&r, 4) != 0)
		*why = "reserved header bytes not zero";
	else if (h->len > RF_CTL_MAX_PAYLOAD)
		*why = "payload length above the 1 MiB + 4 KiB cap";
	else
		return 0;
	return -EPROTO;
}

const char *rf_vol_state_name(enum rf_vol_state st)
{
	static const char *const names[] = {"unknown", "syncing", "resyncing", "protected",
	                                    "disconnected"};

	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

bool rf_ctl_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RF_CTL_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- payloads --------------------------------------------------------- */

int rf_ctl_enc_error(uint8_t *buf, size_t cap, const struct rf_ctl_error *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, (uint32_t)m->code, 4);
	w_str(&w, m->reason, RF_CTL_MAX_TEXT);
	return w_done(&w);
}

int rf_ctl_dec_error(const uint8_t *p, size_t len, struct rf_ctl_error *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->code = (int32_t)r_le(&r, 4);
	r_str(&r, m->reason, RF_CTL_MAX_TEXT);
	return r_done(&r, why);
}

int rf_ctl_enc_hello(uint8_t *buf, size_t cap, const struct rf_ctl_hello *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (!rf_ctl_name_ok(m->agent_id))
		return -EINVAL;
	w_le(&w, m->proto, 2);
	w_str(&w, m->agent_id, RF_CTL_MAX_NAME);
	return w_done(&w);
}

int rf_ctl_dec_hello(const uint8_t *p, size_t len, struct rf_ctl_hello *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->proto = (uint16_t)r_le(&r, 2);
	r_str(&r, m->agent_id, RF_CTL_MAX_NAME);
	if (!r.why && !rf_ctl_name_ok(m->agent_id))
		r.why = "agent id is not a valid name ([A-Za-z0-9._-], 1..64)";
	return r_done(&r, why);
}

int rf_ctl_enc_hello_ok(uint8_t *buf, size_t cap, const struct rf_ctl_hello_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->session, 8);
	w_le(&w, m->token, 8);
	w_str(&w, m->data_url, RF_CTL_MAX_TEXT);
	return w_done(&w);
}

int rf_ctl_dec_hello_ok(const uint8_t *p, size_t len, struct rf_ctl_hello_ok *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->session = r_le(&r, 8);
	m->token = r_le(&r, 8);
	r_str(&r, m->data_url, RF_CTL_MAX_TEXT);
	return r_done(&r, why);
}

int rf_ctl_enc_volume_report(uint8_t *buf, size_t cap, const struct rf_ctl_volume_report *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (!rf_ctl_name_ok(m->name))
		return -EINVAL;
	w_le(&w, m->vol_id, 4);
	w_le(&w, m->size, 8);
	w_le(&w, m->bitmap_valid, 1);
	w_str(&w, m->name, RF_CTL_MAX_NAME);
	return w_done(&w);
}

int rf_ctl_dec_volume_report(const uint8_t *p, size_t len, struct rf_ctl_volume_report *m,
                             const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->vol_id = (uint32_t)r_le(&r, 4);
	m->size = r_le(&r, 8);
	m->bitmap_valid = (uint8_t)r_le(&r, 1);
	r_str(&r, m->name, RF_CTL_MAX_NAME);
	if (!r.why && !rf_ctl_name_ok(m->name))
		r.why = "volume name is not a valid name ([A-Za-z0-9._-], 1..64)";
	else if (!r.why && (m->size == 0 || m->size % 512))
		r.why = "volume size is zero or not a multiple of 512";
	else if (!r.why && m->bitmap_valid > 1)
		r.why = "bitmap_valid is neither 0 nor 1";
	return r_done(&r, why);
}

int rf_ctl_enc_volume_ok(uint8_t *buf, size_t cap, const struct rf_ctl_volume_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->vol_id, 4);
	w_le(&w, m->state, 1);
	w_le(&w, m->sync, 1);
	w_le(&w, m->resync_rate, 8);
	return w_done(&w);
}

int rf_ctl_dec_volume_ok(const uint8_t *p, size_t len, struct rf_ctl_volume_ok *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->vol_id = (uint32_t)r_le(&r, 4);
	m->state = (uint8_t)r_le(&r, 1);
	m->sync = (uint8_t)r_le(&r, 1);
	/* The appended resync_rate is all there or not at all. */
	m->resync_rate = r.off < r.len ? r_le(&r, 8) : 0;
	if (!r.why && (m->state > RF_VOL_DISCONNECTED || m->sync > RF_SYNC_DIRTY))
		r.why = "unknown volume state or sync mode";
	return r_done(&r, why);
}

int rf_ctl_enc_sync_read(uint8_t *buf, size_t cap, const struct rf_ctl_sync_read *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->vol_id, 4);
	w_le(&w, m->offset, 8);
	w_le(&w, m->length, 4);
	return w_done(&w);
}

int rf_ctl_dec_sync_read(const uint8_t *p, size_t len, struct rf_ctl_sync_read *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->vol_id = (uint32_t)r_le(&r, 4);
	m->offset = r_le(&r, 8);
	m->length = (uint32_t)r_le(&r, 4);
	if (!r.why && (m->length == 0 || m->length > RF_CTL_MAX_DATA))
		r.why = "sync read length outside 1..1 MiB";
	else if (!r.why && m->offset > UINT64_MAX - m->length)
		r.why = "sync read range overflows";
	return r_done(&r, why);
}

int rf_ctl_enc_sync_posted(uint8_t *buf, size_t cap, const struct rf_ctl_sync_posted *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->vol_id, 4);
	w_le(&w, m->offset, 8);
	w_le(&w, m->length, 4);
	w_le(&w, m->seq, 8);
	return w_done(&w);
}

int rf_ctl_dec_sync_posted(const uint8_t *p, size_t len, struct rf_ctl_sync_posted *m,
                           const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->vol_id = (uint32_t)r_le(&r, 4);
	m->offset = r_le(&r, 8);
	m->length = (uint32_t)r_le(&r, 4);
	m->seq = r_le(&r, 8);
	if (!r.why && (m->length == 0 || m->length > RF_CTL_MAX_DATA))
		r.why = "sync length outside 1..1 MiB";
	return r_done(&r, why);
}

int rf_ctl_enc_progress(uint8_t *buf, size_t cap, const struct rf_ctl_progress *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (m->nvols > RF_CTL_MAX_PROGRESS_VOLS)
		return -EINVAL;
	w_le(&w, m->next_seq, 8);
	w_le(&w, m->queued, 4);
	w_le(&w, m->nvols, 2);
	for (unsigned i = 0; i < m->nvols; i++) {
		w_le(&w, m->vols[i].vol_id, 4);
		w_le(&w, m->vols[i].dirty_bytes, 8);
	}
	if (m->instance == 0)
		return w_done(&w); /* the short form */
	if (m->flags & ~(RF_PROGRESS_CONGESTED | RF_PROGRESS_ACK))
		return -EINVAL;
	w_le(&w, m->instance, 8);
	w_le(&w, m->congestions, 4);
	w_le(&w, m->flags, 1);
	for (unsigned i = 0; i < m->nvols; i++) {
		w_le(&w, m->vols[i].resend_bytes, 8);
		w_le(&w, m->vols[i].resent_bytes, 8);
	}
	if (!(m->flags & RF_PROGRESS_ACK))
		return w_done(&w);
	for (unsigned i = 0; i < m->nvols; i++) {
		if (m->vols[i].ack > 2 || (m->vols[i].ack_flags & ~RF_PROGRESS_VOL_FALLBACK))
			return -EINVAL;
		w_le(&w, m->vols[i].ack, 1);
		w_le(&w, m->vols[i].ack_flags, 1);
		w_le(&w, m->vols[i].ack_fallbacks, 4);
	}
	return w_done(&w);
}

int rf_ctl_dec_progress(const uint8_t *p, size_t len, struct rf_ctl_progress *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->next_seq = r_le(&r, 8);
	m->queued = (uint32_t)r_le(&r, 4);
	m->nvols = (uint16_t)r_le(&r, 2);
	if (!r.why && m->nvols > RF_CTL_MAX_PROGRESS_VOLS)
		r.why = "more than 256 volumes in a progress report";
	for (unsigned i = 0; !r.why && i < m->nvols; i++) {
		m->vols[i].vol_id = (uint32_t)r_le(&r, 4);
		m->vols[i].dirty_bytes = r_le(&r, 8);
		m->vols[i].resend_bytes = m->vols[i].resent_bytes = 0;
		m->vols[i].ack = m->vols[i].ack_flags = 0;
		m->vols[i].ack_fallbacks = 0;
	}
	m->instance = 0;
	m->congestions = 0;
	m->flags = 0;
	/* The resync tail: all of it or none of it. */
	if (r.why || r.off == r.len)
		return r_done(&r, why);
	m->instance = r_le(&r, 8);
	m->congestions = (uint32_t)r_le(&r, 4);
	m->flags = (uint8_t)r_le(&r, 1);
	if (!r.why && m->instance == 0)
		r.why = "progress instance is 0";
	else if (!r.why && (m->flags & ~(RF_PROGRESS_CONGESTED | RF_PROGRESS_ACK)))
		r.why = "unknown progress flags";
	for (unsigned i = 0; !r.why && i < m->nvols; i++) {
		m->vols[i].resend_bytes = r_le(&r, 8);
		m->vols[i].resent_bytes = r_le(&r, 8);
	}
	/* The ack tail, announced by its flag. */
	for (unsigned i = 0; !r.why && (m->flags & RF_PROGRESS_ACK) && i < m->nvols; i++) {
		m->vols[i].ack = (uint8_t)r_le(&r, 1);
		m->vols[i].ack_flags = (uint8_t)r_le(&r, 1);
		m->vols[i].ack_fallbacks = (uint32_t)r_le(&r, 4);
		if (!r.why && m->vols[i].ack > 2)
			r.why = "unknown acknowledgement level";
		else if (!r.why && (m->vols[i].ack_flags & ~RF_PROGRESS_VOL_FALLBACK))
			r.why = "unknown acknowledgement flags";
	}
	return r_done(&r, why);
}

int rf_ctl_enc_volume_state(uint8_t *buf, size_t cap, const struct rf_ctl_volume_state *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->vol_id, 4);
	w_le(&w, m->state, 1);
	w_le(&w, m->synced_bytes, 8);
	return w_done(&w);
}

int rf_ctl_dec_volume_state(const uint8_t *p, size_t len, struct rf_ctl_volume_state *m,
                            const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->vol_id = (uint32_t)r_le(&r, 4);
	m->state = (uint8_t)r_le(&r, 1);
	m->synced_bytes = r_le(&r, 8);
	if (!r.why && m->state > RF_VOL_DISCONNECTED)
		r.why = "unknown volume state";
	return r_done(&r, why);
}

/* ---- redirected IO and administration ---------------------------------- */

static void r_name(struct rbuf *r, char *out)
{
	r_str(r, out, RF_CTL_MAX_NAME);
	if (!r->why && !rf_ctl_name_ok(out))
		r->why = "not a valid volume name";
}

static int enc_name(uint8_t *buf, size_t cap, const char *name)
{
	struct wbuf w = WBUF(buf, cap);

	if (!rf_ctl_name_ok(name))
		return -EINVAL;
	w_str(&w, name, RF_CTL_MAX_NAME);
	return w_done(&w);
}

int rf_ctl_enc_io_open(uint8_t *buf, size_t cap, const struct rf_ctl_io_open *m)
{
	return enc_name(buf, cap, m->name);
}

int rf_ctl_dec_io_open(const uint8_t *p, size_t len, struct rf_ctl_io_open *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	r_name(&r, m->name);
	return r_done(&r, why);
}

int rf_ctl_enc_io_open_ok(uint8_t *buf, size_t cap, const struct rf_ctl_io_open_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->handle, 4);
	w_le(&w, m->size, 8);
	w_le(&w, m->seq, 8);
	return w_done(&w);
}

int rf_ctl_dec_io_open_ok(const uint8_t *p, size_t len, struct rf_ctl_io_open_ok *m,
                          const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->handle = (uint32_t)r_le(&r, 4);
	m->size = r_le(&r, 8);
	m->seq = r_le(&r, 8);
	return r_done(&r, why);
}

int rf_ctl_enc_io_req(uint8_t *buf, size_t cap, const struct rf_ctl_io_req *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->handle, 4);
	w_le(&w, m->offset, 8);
	w_le(&w, m->length, 4);
	return w_done(&w);
}

int rf_ctl_dec_io_req(const uint8_t *p, size_t len, uint16_t type, struct rf_ctl_io_req *m,
                      const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->handle = (uint32_t)r_le(&r, 4);
	m->offset = r_le(&r, 8);
	m->length = (uint32_t)r_le(&r, 4);
	m->data = NULL;
	if (r.why)
		return r_done(&r, why);
	if (type == RF_CTL_IO_FLUSH) {
		if (m->offset || m->length)
			r.why = "IO_FLUSH with an offset or a length";
	} else if (type == RF_CTL_IO_READ || type == RF_CTL_IO_WRITE) {
		if (m->length == 0 || m->length > RF_CTL_MAX_DATA)
			r.why = "IO length outside 1..1 MiB";
		else if (m->offset > UINT64_MAX - m->length)
			r.why = "IO range overflows";
		else if (type == RF_CTL_IO_WRITE)
			m->data = r_take(&r, m->length);
	} else {
		r.why = "not an IO request type";
	}
	return r_done(&r, why);
}

int rf_ctl_enc_points(uint8_t *buf, size_t cap, const struct rf_ctl_points *m)
{
	return enc_name(buf, cap, m->name);
}

int rf_ctl_dec_points(const uint8_t *p, size_t len, struct rf_ctl_points *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	r_name(&r, m->name);
	return r_done(&r, why);
}

int rf_ctl_enc_points_ok(uint8_t *buf, size_t cap, const struct rf_ctl_points_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->flags, 4);
	w_le(&w, m->oldest_seq, 8);
	w_le(&w, m->newest_seq, 8);
	w_le(&w, (uint64_t)m->oldest_time_ms, 8);
	w_le(&w, (uint64_t)m->newest_time_ms, 8);
	w_le(&w, m->entries, 8);
	w_le(&w, m->bytes, 8);
	w_le(&w, m->retain_ms, 8);
	w_le(&w, m->retain_bytes, 8);
	w_le(&w, m->test_seq, 8);
	return w_done(&w);
}

int rf_ctl_dec_points_ok(const uint8_t *p, size_t len, struct rf_ctl_points_ok *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->flags = (uint32_t)r_le(&r, 4);
	m->oldest_seq = r_le(&r, 8);
	m->newest_seq = r_le(&r, 8);
	m->oldest_time_ms = (int64_t)r_le(&r, 8);
	m->newest_time_ms = (int64_t)r_le(&r, 8);
	m->entries = r_le(&r, 8);
	m->bytes = r_le(&r, 8);
	m->retain_ms = r_le(&r, 8);
	m->retain_bytes = r_le(&r, 8);
	m->test_seq = r_le(&r, 8);
	return r_done(&r, why);
}

int rf_ctl_enc_admin(uint8_t *buf, size_t cap, const struct rf_ctl_admin *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (!rf_ctl_name_ok(m->name))
		return -EINVAL;
	w_le(&w, m->op, 1);
	w_le(&w, m->at, 1);
	w_le(&w, m->force, 1);
	w_le(&w, m->value, 8);
	w_str(&w, m->name, RF_CTL_MAX_NAME);
	return w_done(&w);
}

int rf_ctl_dec_admin(const uint8_t *p, size_t len, struct rf_ctl_admin *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->op = (uint8_t)r_le(&r, 1);
	m->at = (uint8_t)r_le(&r, 1);
	m->force = (uint8_t)r_le(&r, 1);
	m->value = r_le(&r, 8);
	r_name(&r, m->name);
	if (!r.why && (m->op < RF_ADMIN_TEST_START || m->op > RF_ADMIN_FAILOVER))
		r.why = "unknown administration operation";
	else if (!r.why && (m->at > RF_AT_SEQ || m->force > 1))
		r.why = "unknown point kind or force flag";
	return r_done(&r, why);
}

int rf_ctl_enc_admin_ok(uint8_t *buf, size_t cap, const struct rf_ctl_admin_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_le(&w, m->seq, 8);
	w_le(&w, (uint64_t)m->time_ms, 8);
	w_str(&w, m->text, RF_CTL_MAX_TEXT);
	return w_done(&w);
}

int rf_ctl_dec_admin_ok(const uint8_t *p, size_t len, struct rf_ctl_admin_ok *m, const char **why)
{
	struct rbuf r = RBUF(p, len);

	m->seq = r_le(&r, 8);
	m->time_ms = (int64_t)r_le(&r, 8);
	r_str(&r, m->text, RF_CTL_MAX_TEXT);
	return r_done(&r, why);
}

/* ---- authentication ----------------------------------------------------- */

int rf_ctl_enc_auth_start(uint8_t *buf, size_t cap, const struct rf_ctl_auth_start *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (!rf_ctl_name_ok(m->identity))
		return -EINVAL;
	w_le(&w, m->method, 2);
	w_str(&w, m->identity, RF_CTL_MAX_NAME);
	w_bytes(&w, m->nonce, RF_AUTH_NONCE_LEN);
	return w_done(&w);
}

int rf_ctl_dec_auth_start(const uint8_t *p, size_t len, struct rf_ctl_auth_start *m,
                          const char **why)
{
	struct rbuf r = RBUF(p, len);
	const uint8_t *n;

	m->method = (uint16_t)r_le(&r, 2);
	r_str(&r, m->identity, RF_CTL_MAX_NAME);
	if (!r.why && !rf_ctl_name_ok(m->identity))
		r.why = "not a valid identity name";
	n = r_take(&r, RF_AUTH_NONCE_LEN);
	if (n)
		memcpy(m->nonce, n, RF_AUTH_NONCE_LEN);
	return r_done(&r, why);
}

int rf_ctl_enc_auth_blob(uint8_t *buf, size_t cap, const struct rf_ctl_auth_blob *m)
{
	struct wbuf w = WBUF(buf, cap);

	w_bytes(&w, m->b, sizeof(m->b));
	return w_done(&w);
}

int rf_ctl_dec_auth_blob(const uint8_t *p, size_t len, struct rf_ctl_auth_blob *m, const char **why)
{
	struct rbuf r = RBUF(p, len);
	const uint8_t *b = r_take(&r, sizeof(m->b));

	if (b)
		memcpy(m->b, b, sizeof(m->b));
	return r_done(&r, why);
}

int rf_ctl_enc_auth_ok(uint8_t *buf, size_t cap, const struct rf_ctl_auth_ok *m)
{
	struct wbuf w = WBUF(buf, cap);

	if (m->role != RF_AUTH_ROLE_AGENT && m->role != RF_AUTH_ROLE_ADMIN)
		return -EINVAL;
	w_le(&w, m->role, 1);
	w_bytes(&w, m->mac, RF_AUTH_MAC_LEN);
	return w_done(&w);
}

int rf_ctl_dec_auth_ok(const uint8_t *p, size_t len, struct rf_ctl_auth_ok *m, const char **why)
{
	struct rbuf r = RBUF(p, len);
	const uint8_t *mac;

	m->role = (uint8_t)r_le(&r, 1);
	if (!r.why && m->role != RF_AUTH_ROLE_AGENT && m->role != RF_AUTH_ROLE_ADMIN)
		r.why = "unknown role";
	mac = r_take(&r, RF_AUTH_MAC_LEN);
	if (mac)
		memcpy(m->mac, mac, RF_AUTH_MAC_LEN);
	return r_done(&r, why);
}

/* ---- blocking helpers ------------------------------------------------- */

int rf_ctl_dial(const char *hostport, int timeout_ms)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	int64_t deadline = rf_now_ms() + timeout_ms;
	char host[256], port[16];
	const char *colon = strrchr(hostport, ':');
	const char *h = hostport;
	size_t hl;
	int fd, rc, err = 0, one = 1;
	socklen_t el = sizeof(err);

	if (!colon || colon == hostport || strlen(colon + 1) >= sizeof(port))
		return -EINVAL;
	hl = (size_t)(colon - hostport);
	if (h[0] == '[' && colon[-1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	if (getaddrinfo(host, port, &hints, &ai))
		return -EHOSTUNREACH;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto out_free;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto out_close;
		}
		rc = rf_wait_fd(fd, POLLOUT, deadline);
		if (rc)
			goto out_close;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			rc = err ? -err : -errno;
			goto out_close;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	freeaddrinfo(ai);
	return fd;
out_close:
	close(fd);
out_free:
	freeaddrinfo(ai);
	return rc;
}

int rf_ctl_send(int fd, uint16_t type, uint64_t req_id, const void *payload, uint32_t len,
                const void *data2, uint32_t len2)
{
	uint8_t h[RF_CTL_HDR_LEN];
	struct iovec iov[3] = {{h, sizeof(h)}, {(void *)payload, len}, {(void *)data2, len2}};

	if ((uint64_t)len + len2 > RF_CTL_MAX_PAYLOAD)
		return -EMSGSIZE;
	rf_ctl_hdr_encode(h, type, req_id, len + len2);
	return rf_write_all(fd, iov, 3, rf_now_ms() + 30000);
}

int rf_ctl_recv(int fd, struct rf_ctl_hdr *h, uint8_t *buf, size_t cap, int timeout_ms,
                const char **why)
{
	int64_t deadline = rf_now_ms() + timeout_ms;
	uint8_t hb[RF_CTL_HDR_LEN];
	int rc;

	rc = rf_read_all(fd, hb, sizeof(hb), deadline);
	if (rc)
		return rc;
	rc = rf_ctl_hdr_decode(hb, h, why);
	if (rc)
		return rc;
	if (h->len > cap) {
		*why = "frame larger than the receive buffer";
		return -EPROTO;
	}
	return rf_read_all(fd, buf, h->len, deadline);
}

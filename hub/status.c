/* SPDX-License-Identifier: MIT */
/*
 * STATUS -> STATUS_OK: the hub's state as one JSON object. The fields are
 * documented in docs/HUB.md ("Status JSON"); add fields freely, never
 * rename or remove one (repctl and scripts read them).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "repfabric/log.h"

#define STATUS_VERSION 1

struct sb {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		{
			size_t cap = b->cap ? b->cap * 2 : 8192;
			char *np;

			while (cap - b->len <= (size_t)n)
				cap *= 2;
			np = realloc(b->p, cap);
			if (!np) {
				b->oom = true;
				return;
			}
			b->p = np;
			b->cap = cap;
		}
	}
}

/* A JSON string (names are [A-Za-z0-9._-]; paths and reasons may be anything). */
static void sb_str(struct sb *b, const char *s)
{
	sb_printf(b, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\')
			sb_printf(b, "\\%c", *c);
		else if (*c < 0x20 || *c == 0x7f)
			sb_printf(b, "\\u%04x", *c);
		else
			sb_printf(b, "%c", *c);
	}
	sb_printf(b, "\"");
}

static void sb_key_str(struct sb *b, const char *key, const char *val, bool comma)
{
	sb_printf(b, "\"%s\":", key);
	if (val)
		sb_str(b, val);
	else
		sb_printf(b, "null");
	if (comma)
		sb_printf(b, ",");
}

static void sb_key_u64(struct sb *b, const char *key, uint64_t v)
{
	sb_printf(b, "\"%s\":%" PRIu64 ",", key, v);
}

static void sb_key_bool(struct sb *b, const char *key, bool v)
{
	sb_printf(b, "\"%s\":%s,", key, v ? "true" : "false");
}

/* Records (and bytes) that landed but are not durable yet. */
static void agent_lag(const struct agent *a, uint64_t *recs, uint64_t *bytes)
{
	struct rf_ring_scan_result res;

	*recs = *bytes = 0;
	if (!a->ring)
		return;
	if (a->landed_valid && a->landed_seq >= a->durable_seq)
		*recs = a->landed_seq + 1 - a->durable_seq;
	if (*recs) {
		rf_ring_scan(a->ring, &res);
		*bytes = res.bytes;
	}
}

static bool volume_caught_up(const struct volume *v)
{
	const struct agent *a = v->owner;

	return v->state == RF_VOL_PROTECTED && agent_live(a) && v->reported && a->have_progress &&
	       a->progress_queued == 0 && v->dirty_bytes == 0 &&
	       a->progress_next_seq <= a->durable_seq;
}

/* Incremental resync (resync.c; docs/HUB.md). */
static void resync_json(struct sb *b, const struct volume *v, int64_t now)
{
	sb_key_u64(b, "resend_bytes", v->resend_bytes);
	sb_key_u64(b, "resent_bytes", v->resent_bytes);
	sb_key_u64(b, "resyncs", v->resyncs);
	sb_key_str(b, "resync_cause", v->state == RF_VOL_RESYNCING ? v->resync_cause : NULL, true);
	if (v->state == RF_VOL_RESYNCING)
		sb_key_u64(b, "resync_elapsed_ms", (uint64_t)(now - v->resync_started));
	else
		sb_printf(b, "\"resync_elapsed_ms\":null,");
	sb_key_str(b, "last_resync_cause", v->last_resync_cause, true);
	if (v->last_resync_cause) {
		sb_key_u64(b, "last_resync_ms", (uint64_t)v->last_resync_ms);
		sb_key_u64(b, "last_resync_bytes", v->last_resync_bytes);
	} else {
		sb_printf(b, "\"last_resync_ms\":null,\"last_resync_bytes\":null,");
	}
}

static void volume_json(struct sb *b, const struct volume *v, int64_t now)
{
	const struct agent *a = v->owner;
	uint64_t synced = sync_synced_bytes(v), lag_recs = 0, lag_bytes = 0;
	double fill = 0;

	if (a) {
		agent_lag(a, &lag_recs, &lag_bytes);
		if (a->ring)
			fill = (double)lag_bytes / (double)rf_ring_data_size(a->ring);
	}
	sb_printf(b, "{");
	sb_key_str(b, "name", v->cfg->name, true);
	sb_key_str(b, "state", rf_vol_state_name(v->state), true);
	sb_key_u64(b, "size", v->size);
	sb_key_u64(b, "synced_bytes", synced);
	sb_printf(b, "\"synced_percent\":%.1f,",
	          v->size ? 100.0 * (double)synced / (double)v->size : 0.0);
	sb_key_str(b, "agent", a ? a->id : NULL, true);
	sb_key_bool(b, "agent_connected", agent_live(a));
	sb_key_bool(b, "reported", v->reported);
	if (v->has_state)
		sb_key_u64(b, "vol_id", v->vol_id);
	else
		sb_printf(b, "\"vol_id\":null,");
	sb_key_u64(b, "durable_seq", a ? a->durable_seq : 0);
	sb_key_u64(b, "lag_records", lag_recs);
	sb_key_u64(b, "lag_bytes", lag_bytes);
	sb_key_u64(b, "dirty_bytes", v->dirty_bytes);
	resync_json(b, v, now);
	sb_printf(b, "\"ring_fill\":%.6f,", fill);
	sb_key_u64(b, "progress_count", v->progress_count);
	if (v->progress_count)
		sb_key_u64(b, "progress_age_ms", (uint64_t)(now - v->progress_at));
	else
		sb_printf(b, "\"progress_age_ms\":null,");
	sb_key_bool(b, "caught_up", volume_caught_up(v));
	sb_key_u64(b, "records", v->records);
	sb_key_u64(b, "bytes", v->bytes);
	sb_key_u64(b, "invalid_records", v->invalid_records);
	if (v->sync.active)
		sb_printf(b,
		          "\"sync\":{\"chunk_bytes\":%" PRIu64 ",\"chunks\":%" PRIu64
		          ",\"synced_chunks\":%" PRIu64
		          ",\"in_flight\":%u,\"posted\":%zu,\"requests\":%" PRIu64
		          ",\"eagain\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"elapsed_ms\":%" PRId64
		          "},",
		          v->sync.chunk, v->sync.nchunks, v->sync.synced_chunks, v->sync.ninfl,
		          v->sync.nposted, v->sync.requests, v->sync.eagain, v->sync.errors,
		          now - v->sync.started_at);
	else
		sb_printf(b, "\"sync\":null,");
	sb_key_str(b, "recovery", v->cfg->recovery, false);
	sb_printf(b, "}");
}

static void agent_json(struct sb *b, const struct agent *a, int64_t now)
{
	uint64_t lag_recs, lag_bytes, size = a->ring ? rf_ring_data_size(a->ring) : 0;

	agent_lag(a, &lag_recs, &lag_bytes);
	sb_printf(b, "{");
	sb_key_str(b, "id", a->id, true);
	sb_key_bool(b, "connected", agent_live(a));
	sb_key_bool(b, "attached", a->peer != NULL);
	sb_key_str(b, "peer", agent_live(a) ? a->conn->peer : NULL, true);
	sb_key_u64(b, "session", agent_live(a) ? a->session : 0);
	sb_key_str(b, "ring", a->ring_path, true);
	sb_key_u64(b, "ring_size", size);
	sb_key_u64(b, "ring_used_bytes", lag_bytes);
	sb_printf(b, "\"ring_fill\":%.6f,", size ? (double)lag_bytes / (double)size : 0.0);
	sb_key_u64(b, "durable_seq", a->durable_seq);
	if (a->landed_valid)
		sb_key_u64(b, "landed_seq", a->landed_seq);
	else
		sb_printf(b, "\"landed_seq\":null,");
	sb_key_u64(b, "lag_records", lag_recs);
	sb_key_u64(b, "lag_bytes", lag_bytes);
	if (a->have_progress) {
		sb_key_u64(b, "next_seq", a->progress_next_seq);
		sb_key_u64(b, "queued", a->progress_queued);
		sb_key_u64(b, "progress_age_ms", (uint64_t)(now - a->progress_at));
	} else {
		sb_printf(b, "\"next_seq\":null,\"queued\":null,\"progress_age_ms\":null,");
	}
	sb_key_u64(b, "progress_count", a->progress_count);
	sb_key_u64(b, "congestions", a->congestions);
	sb_key_bool(b, "congested", a->congested);
	sb_key_u64(b, "records", a->records);
	sb_key_u64(b, "bytes", a->bytes);
	sb_key_u64(b, "sync_records", a->sync_records);
	sb_key_u64(b, "sync_bytes", a->sync_bytes);
	sb_key_u64(b, "invalid_records", a->invalid_records);
	sb_key_u64(b, "fences", a->fences);
	sb_key_u64(b, "attaches", a->attaches);
	sb_key_u64(b, "sessions", a->sessions);
	sb_key_str(b, "last_error", a->last_error[0] ? a->last_error : NULL, false);
	sb_printf(b, "}");
}

char *status_json(struct hub *h, size_t *len)
{
	struct sb b = {0};
	int64_t now = hub_now_ms();
	bool first = true;

	sb_printf(&b, "{\"version\":%d,\"hub\":{", STATUS_VERSION);
	sb_key_str(&b, "control", h->cfg->control, true);
	sb_key_str(&b, "data", h->cfg->data, true);
	sb_key_str(&b, "state_dir", h->cfg->state_dir, true);
	sb_key_u64(&b, "now_ms", (uint64_t)now);
	sb_key_u64(&b, "uptime_ms", (uint64_t)(now - h->started_at));
	sb_key_u64(&b, "ring_size", h->cfg->ring_size);
	sb_key_u64(&b, "sync_rate", h->cfg->sync_rate);
	sb_key_u64(&b, "resync_rate", h->cfg->resync_rate);
	sb_key_u64(&b, "connections", h->nconns);
	sb_key_u64(&b, "connections_accepted", h->conns_accepted);
	sb_key_u64(&b, "protocol_errors", h->protocol_errors);
	sb_printf(&b, "\"refusals\":%" PRIu64 "},\"volumes\":[", h->refusals);
	for (size_t i = 0; i < h->nvols; i++) {
		sb_printf(&b, "%s", i ? "," : "");
		volume_json(&b, &h->vols[i], now);
	}
	sb_printf(&b, "],\"agents\":[");
	for (const struct agent *a = h->agents; a; a = a->next) {
		sb_printf(&b, "%s", first ? "" : ",");
		first = false;
		agent_json(&b, a, now);
	}
	sb_printf(&b, "]}\n");
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* For metrics.c: the same numbers the status JSON shows. */
void status_agent_lag(const struct agent *a, uint64_t *recs, uint64_t *bytes)
{
	agent_lag(a, recs, bytes);
}

bool status_volume_caught_up(const struct volume *v)
{
	return volume_caught_up(v);
}

void status_request(struct ctl_conn *c, uint64_t req_id)
{
	size_t len = 0;
	char *json = status_json(c->hub, &len);

	if (!json) {
		ctl_send_error(c, req_id, ENOMEM, "out of memory for the status");
		return;
	}
	if (len > RF_CTL_MAX_PAYLOAD)
		ctl_send_error(c, req_id, EMSGSIZE, "the status (%zu bytes) does not fit a frame",
		               len);
	else
		ctl_send(c, RF_CTL_STATUS_OK, req_id, json, (uint32_t)len);
	free(json);
}

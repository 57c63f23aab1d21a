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
#include "journal.h"
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

/* A PROGRESS acknowledgement level (docs/PROTOCOL.md, the ack tail). */
static const char *ack_level_name(uint8_t ack)
{
	return ack == 2 ? "durable" : ack == 1 ? "landed" : "async";
}

static void lag_age(struct agent_lag *l, uint64_t ts_ns, int64_t now_ms)
{
	int64_t t = (int64_t)(ts_ns / 1000000);

	l->age_known = l->records == 0 || ts_ns != 0;
	l->age_ms = l->records && ts_ns && now_ms > t ? (uint64_t)(now_ms - t) : 0;
}

void status_agent_lags(const struct hub_agent *a, struct agent_lags *l)
{
	struct rf_ring_scan_result res;
	uint64_t applied = a->durable_seq, durable = agent_durable_seq(a), landed = applied, dpos;
	int64_t now = hub_wall_ms();

	memset(l, 0, sizeof(*l));
	l->total.age_known = l->durable.age_known = l->apply.age_known = a->ring != NULL;
	if (!a->ring)
		return;
	if (a->landed_valid && a->landed_seq + 1 > landed)
		landed = a->landed_seq + 1;
	if (durable > landed) /* after a restart, before the first DATA event */
		landed = durable;
	l->total.records = landed - applied;
	l->durable.records = landed - durable;
	l->apply.records = durable - applied;
	if (!l->total.records)
		return;
	rf_ring_scan(a->ring, &res);
	dpos = res.start_pos;
	if (a->ring_pmem && res.durable_pos > dpos)
		dpos = res.durable_pos < res.end_pos ? res.durable_pos : res.end_pos;
	/* The valid prefix may hold records whose doorbell is not in yet
	 * (rdma: written, the WRITE WITH IMM not seen): bytes of a lag that
	 * counts no record are 0. */
	l->total.bytes = res.bytes;
	l->durable.bytes = l->durable.records ? res.end_pos - dpos : 0;
	l->apply.bytes = l->apply.records ? dpos - res.start_pos : 0;
	lag_age(&l->total, res.first_ts_ns, now);
	lag_age(&l->durable, a->ring_pmem ? res.durable_ts_ns : res.first_ts_ns, now);
	lag_age(&l->apply, res.first_ts_ns, now);
}

/* "KEY_records":..,"KEY_bytes":..,"KEY_ms":.. (null when the age is unknown) */
static void sb_lag(struct sb *b, const char *key, const struct agent_lag *l)
{
	sb_printf(b, "\"%srecords\":%" PRIu64 ",\"%sbytes\":%" PRIu64 ",", key, l->records, key,
	          l->bytes);
	if (l->age_known)
		sb_printf(b, "\"%sms\":%" PRIu64 ",", key, l->age_ms);
	else
		sb_printf(b, "\"%sms\":null,", key);
}

/* The three positions (docs/DURABILITY.md: landed >= durable >= applied) and
 * the lags between them; @a may be NULL (a volume without an owner). */
static void positions_json(struct sb *b, const struct hub_agent *a, const struct agent_lags *l)
{
	sb_key_u64(b, "durable_seq", a ? agent_durable_seq(a) : 0);
	sb_key_u64(b, "applied_seq", a ? a->durable_seq : 0);
	if (a && a->landed_valid)
		sb_key_u64(b, "landed_seq", a->landed_seq);
	else
		sb_printf(b, "\"landed_seq\":null,");
	sb_lag(b, "lag_", &l->total);
	sb_lag(b, "durable_lag_", &l->durable);
	sb_lag(b, "apply_lag_", &l->apply);
}

/*
 * Sync and resync rate, for the ETA. Samples of (time, bytes done) are
 * taken when the status is asked for, at most one per RATE_STEP_MS per
 * volume; the rate is measured from the oldest sample at most
 * RATE_WINDOW_MS old (at least RATE_MIN_MS), else from the newest older
 * one. The first sample is the start of the sync (0 bytes), so a single
 * `repctl status` gets the average since the start. Windows are found by
 * volume name (a reload may add and remove volumes); one that holds no
 * sync or resync is free for any volume.
 */
#define RATE_SAMPLES   12
#define RATE_STEP_MS   1000
#define RATE_WINDOW_MS 10000
#define RATE_MIN_MS    1000

enum rate_kind { RATE_NONE, RATE_SYNC, RATE_RESYNC };

struct rate_sample {
	int64_t t;
	uint64_t done;
};

struct rate_win {
	char name[RF_CTL_MAX_NAME + 1];
	enum rate_kind kind;
	int64_t key; /* when the sync or resync began */
	struct rate_sample s[RATE_SAMPLES];
	unsigned n, next; /* samples held; slot for the next one */
};

struct rate_est {
	bool active;   /* syncing or resyncing */
	double pct;    /* of this sync or resync */
	uint64_t left; /* bytes still to sync or resend */
	bool known;    /* rate measured */
	uint64_t bps, window_ms;
};

/* @v's window; with @claim, a free or new one if it has none (else NULL). */
static struct rate_win *rate_win_of(const struct volume *v, bool claim)
{
	struct hub *h = v->hub;
	struct rate_win *w, *free_w = NULL;

	for (size_t i = 0; i < h->nrate_wins; i++) {
		w = &h->rate_wins[i];
		if (strcmp(w->name, v->cfg->name) == 0)
			return w;
		if (w->kind == RATE_NONE && !free_w)
			free_w = w;
	}
	if (!claim)
		return NULL;
	if (!free_w) {
		w = realloc(h->rate_wins, (h->nrate_wins + 1) * sizeof(*w));
		if (!w)
			return NULL;
		h->rate_wins = w;
		free_w = &h->rate_wins[h->nrate_wins++];
	}
	memset(free_w, 0, sizeof(*free_w));
	snprintf(free_w->name, sizeof(free_w->name), "%s", v->cfg->name);
	return free_w;
}

static void rate_push(struct rate_win *w, int64_t t, uint64_t done)
{
	w->s[w->next] = (struct rate_sample){t, done};
	w->next = (w->next + 1) % RATE_SAMPLES;
	if (w->n < RATE_SAMPLES)
		w->n++;
}

/* The sample to measure from at @now, or NULL. Oldest first: slot next - n. */
static const struct rate_sample *rate_base(const struct rate_win *w, int64_t now)
{
	const struct rate_sample *older = NULL;

	for (unsigned k = 0; k < w->n; k++) {
		const struct rate_sample *s =
		    &w->s[(w->next + RATE_SAMPLES - w->n + k) % RATE_SAMPLES];
		int64_t age = now - s->t;

		if (age > RATE_WINDOW_MS)
			older = s;
		else if (age >= RATE_MIN_MS)
			return s;
	}
	return older;
}

static void rate_measure(struct rate_win *w, enum rate_kind kind, int64_t key, uint64_t done,
                         int64_t now, struct rate_est *e)
{
	const struct rate_sample *base;

	if (w->kind != kind || w->key != key) {
		w->kind = kind;
		w->key = key;
		w->n = w->next = 0;
		rate_push(w, key, 0);
	}
	base = rate_base(w, now);
	if (base && done >= base->done) {
		e->known = true;
		e->window_ms = (uint64_t)(now - base->t);
		e->bps = (done - base->done) * 1000 / e->window_ms;
	}
	if (now - w->s[(w->next + RATE_SAMPLES - 1) % RATE_SAMPLES].t >= RATE_STEP_MS)
		rate_push(w, now, done);
}

/* Progress and rate of @v's sync or resync (nothing when it has none). */
static void volume_rate(const struct volume *v, int64_t now, struct rate_est *e)
{
	struct rate_win *w;
	uint64_t done, total;
	enum rate_kind kind = RATE_NONE;
	int64_t key = 0;

	memset(e, 0, sizeof(*e));
	if (v->sync.active) {
		kind = RATE_SYNC;
		key = v->sync.started_at;
		done = v->sync.synced_bytes;
		total = v->size;
	} else if (v->state == RF_VOL_RESYNCING) {
		kind = RATE_RESYNC;
		key = v->resync_started;
		done = v->resync_bytes;
		total = v->resync_bytes + v->resend_bytes;
	}
	w = rate_win_of(v, kind != RATE_NONE);
	if (w && kind == RATE_NONE)
		w->kind = RATE_NONE; /* free for any volume */
	if (kind == RATE_NONE)
		return;
	e->active = true;
	e->left = total > done ? total - done : 0;
	e->pct = total ? 100.0 * (double)done / (double)total : 0.0;
	if (w)
		rate_measure(w, kind, key, done, now, e);
}

static void rate_json(struct sb *b, const struct volume *v, int64_t now)
{
	struct rate_est e;

	volume_rate(v, now, &e);
	if (v->state == RF_VOL_RESYNCING)
		sb_printf(b, "\"resync_percent\":%.1f,", e.pct);
	else
		sb_printf(b, "\"resync_percent\":null,");
	if (!e.known) {
		sb_printf(b, "\"sync_rate_bps\":null,\"sync_rate_window_ms\":null,\"eta_s\":null,");
		return;
	}
	sb_key_u64(b, "sync_rate_bps", e.bps);
	sb_key_u64(b, "sync_rate_window_ms", e.window_ms);
	if (e.bps)
		sb_key_u64(b, "eta_s", (e.left + e.bps - 1) / e.bps);
	else if (!e.left)
		sb_key_u64(b, "eta_s", 0);
	else
		sb_printf(b, "\"eta_s\":null,");
}

/* The journal's span (journal.h): null without one. */
static void journal_json(struct sb *b, const struct volume *v)
{
	const struct journal *j = v->jr;
	struct journal_info in;
	int64_t oldest;
	bool known;

	if (!j) {
		sb_printf(b, "\"journal\":null,");
		return;
	}
	journal_get_info(j, &in);
	/* Time 0: nothing applied with a known time yet; the oldest point is
	 * then "before the journal", just before its first entry. */
	known = in.have_oldest && in.oldest_time_ms > 0;
	oldest =
	    known ? in.oldest_time_ms : (in.entries ? j->ents[j->head].time_ms : in.newest_time_ms);
	sb_printf(b, "\"journal\":{");
	sb_key_u64(b, "entries", in.entries);
	sb_key_u64(b, "bytes", in.bytes);
	if (in.have_oldest)
		sb_key_u64(b, "oldest_seq", in.oldest_seq);
	else
		sb_printf(b, "\"oldest_seq\":null,");
	if (known)
		sb_key_u64(b, "oldest_time_ms", (uint64_t)in.oldest_time_ms);
	else
		sb_printf(b, "\"oldest_time_ms\":null,");
	if (in.entries) {
		sb_key_u64(b, "newest_seq", in.newest_seq);
		sb_key_u64(b, "newest_time_ms", (uint64_t)in.newest_time_ms);
	} else {
		sb_printf(b, "\"newest_seq\":null,\"newest_time_ms\":null,");
	}
	sb_key_u64(b, "span_ms",
	           in.newest_time_ms > oldest ? (uint64_t)(in.newest_time_ms - oldest) : 0);
	sb_key_u64(b, "retain_ms", v->cfg->journal_time_ms);
	sb_key_u64(b, "retain_bytes", v->cfg->journal_size);
	sb_printf(b, "\"paused\":%s},", in.paused ? "true" : "false");
}

static bool volume_caught_up(const struct volume *v)
{
	const struct hub_agent *a = v->owner;

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
	const struct hub_agent *a = v->owner;
	uint64_t synced = volume_synced_bytes(v);
	struct agent_lags lags = {
	    .total.age_known = true, .durable.age_known = true, .apply.age_known = true};
	double fill = 0;

	if (a) {
		status_agent_lags(a, &lags);
		if (a->ring)
			fill = (double)lags.total.bytes / (double)rf_ring_data_size(a->ring);
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
	/* The agent's positions: a volume's records are in its agent's sequence. */
	positions_json(b, a, &lags);
	sb_key_u64(b, "dirty_bytes", v->dirty_bytes);
	sb_key_str(b, "ack", v->ack_known ? ack_level_name(v->ack) : NULL, true);
	sb_key_bool(b, "ack_fallback", v->ack_fallback);
	sb_key_u64(b, "ack_fallbacks", v->ack_fallbacks);
	resync_json(b, v, now);
	rate_json(b, v, now);
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
	journal_json(b, v);
	sb_key_str(b, "recovery", v->cfg->recovery, false);
	sb_printf(b, "}");
}

static void agent_json(struct sb *b, const struct hub_agent *a, int64_t now)
{
	uint64_t size = a->ring ? rf_ring_data_size(a->ring) : 0;
	struct agent_lags lags;

	status_agent_lags(a, &lags);
	sb_printf(b, "{");
	sb_key_str(b, "id", a->id, true);
	sb_key_bool(b, "connected", agent_live(a));
	sb_key_bool(b, "attached", a->peer != NULL);
	sb_key_str(b, "peer", agent_live(a) ? a->conn->peer : NULL, true);
	sb_key_u64(b, "session", agent_live(a) ? a->session : 0);
	sb_key_str(b, "ring", a->ring_path, true);
	sb_key_u64(b, "ring_size", size);
	sb_key_u64(b, "ring_used_bytes", lags.total.bytes);
	sb_printf(b, "\"ring_fill\":%.6f,", size ? (double)lags.total.bytes / (double)size : 0.0);
	sb_key_str(b, "durability", a->ring ? (a->ring_pmem ? "pmem" : "apply") : NULL, true);
	sb_key_str(b, "durability_why", a->ring ? a->ring_rule_why : NULL, true);
	positions_json(b, a, &lags);
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

/* "listeners":{"control":{...},"data":{...}}, with the comma after it. */
static void admission_json(struct sb *b, const struct hub *h)
{
	struct hub_admission ad[2];
	size_t n = hub_admission(h, ad);

	sb_printf(b, "\"listeners\":{");
	for (size_t i = 0; i < n; i++) {
		const struct rf_admit_stats *st = &ad[i].st;

		sb_printf(b, "%s\"%s\":{", i ? "," : "", ad[i].listener);
		sb_key_u64(b, "pending", ad[i].pending);
		sb_key_u64(b, "max_pending", h->fds.max_pending);
		sb_key_u64(b, "handshake_timeout_ms", h->fds.handshake_ms);
		sb_key_u64(b, "handshake_timeouts", st->handshake_timeouts);
		sb_key_u64(b, "pending_evicted", st->pending_evicted);
		sb_key_u64(b, "refused_full", st->refused_full);
		sb_printf(b, "\"accept_failures\":{");
		for (int r = 0; r < RF_ACCEPT_NREASONS; r++)
			sb_printf(b, "%s\"%s\":%" PRIu64, r ? "," : "",
			          rf_accept_reason_name((enum rf_accept_reason)r),
			          st->accept_failed[r]);
		sb_printf(b, "}}");
	}
	sb_printf(b, "},");
}

char *status_json(struct hub *h, size_t *len)
{
	struct sb b = {0};
	int64_t now = rf_now_ms();
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
	sb_key_u64(&b, "max_connections", h->fds.max_conns);
	sb_key_u64(&b, "fd_limit", h->fds.limit);
	sb_key_u64(&b, "fd_reserve", h->fds.reserve);
	admission_json(&b, h);
	sb_key_u64(&b, "protocol_errors", h->protocol_errors);
	sb_printf(&b, "\"authentication\":%s,", h->auth_on ? "true" : "false");
	sb_key_u64(&b, "auth_ok", h->auth_ok);
	sb_key_u64(&b, "auth_failures", h->auth_failures);
	sb_key_u64(&b, "rings_lost_acked", h->rings_lost_acked);
	sb_key_u64(&b, "reloads", h->reloads);
	sb_key_u64(&b, "reload_failures", h->reload_failures);
	sb_printf(&b, "\"refusals\":%" PRIu64 "},\"volumes\":[", h->refusals);
	for (size_t i = 0; i < h->nvols; i++) {
		sb_printf(&b, "%s", i ? "," : "");
		volume_json(&b, &h->vols[i], now);
	}
	sb_printf(&b, "],\"agents\":[");
	for (const struct hub_agent *a = h->agents; a; a = a->next) {
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

bool status_volume_caught_up(const struct volume *v)
{
	return volume_caught_up(v);
}

void status_fini(struct hub *h)
{
	free(h->rate_wins);
	h->rate_wins = NULL;
	h->nrate_wins = 0;
}

int status_request(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	size_t len = 0;
	char *json = status_json(c->hub, &len);
	int rc = 0;

	if (!json)
		return ctl_fail(r, ENOMEM, "out of memory for the status");
	if (len > RF_CTL_MAX_PAYLOAD)
		rc = ctl_fail(r, EMSGSIZE, "the status (%zu bytes) does not fit a frame", len);
	else
		ctl_send(c, RF_CTL_STATUS_OK, rq->req_id, json, (uint32_t)len);
	free(json);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus text endpoint (config key `metrics`; docs/HUB.md,
 * "Metrics"). libmicrohttpd runs without a thread of its own: its epoll fd
 * sits in the hub's epoll set and MHD_run() is called from the hub's loop
 * when it is readable and on every tick, so the request handler runs on
 * the hub's thread and reads hub state directly, like status.c does.
 *
 * Only GET and HEAD of /metrics are served; anything else gets 404 or 405.
 */
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "hub.h"
#include "repfabric/log.h"

#define SUBSYS "metrics"

#define METRICS_CONN_LIMIT   16
#define METRICS_CONN_TIMEOUT 10 /* seconds */

struct hub_metrics {
	struct MHD_Daemon *d;
	int fd; /* MHD's epoll fd, in the hub's epoll set */
	struct ev_src src;
	uint64_t scrapes;
};

/* ---- the text ------------------------------------------------------------ */

struct mval {
	bool dbl;
	uint64_t u;
	double d;
};

/* What status.c computes once per volume or agent. */
struct vol_calc {
	uint64_t lag_recs, lag_bytes;
	double fill;
};

struct agent_calc {
	struct agent_lags lags;
	uint64_t size;
};

#define U(x) ((struct mval){.u = (uint64_t)(x)})
#define D(x) ((struct mval){.dbl = true, .d = (double)(x)})

typedef struct mval (*vol_getter)(const struct volume *v, const struct vol_calc *c);
typedef struct mval (*agent_getter)(const struct hub_agent *a, const struct agent_calc *c);

struct vol_metric {
	const char *name, *type, *help;
	vol_getter get;
};

struct agent_metric {
	const char *name, *type, *help;
	agent_getter get;
};

/* clang-format off */
static struct mval v_size(const struct volume *v, const struct vol_calc *c) { return U(v->size); }
static struct mval v_synced(const struct volume *v, const struct vol_calc *c) { return U(volume_synced_bytes(v)); }
static struct mval v_connected(const struct volume *v, const struct vol_calc *c) { return U(agent_live(v->owner)); }
static struct mval v_caught_up(const struct volume *v, const struct vol_calc *c) { return U(status_volume_caught_up(v)); }
static struct mval v_durable_seq(const struct volume *v, const struct vol_calc *c) { return U(v->owner ? v->owner->durable_seq : 0); }
static struct mval v_ack_fallback(const struct volume *v, const struct vol_calc *c) { return U(v->ack_fallback); }
static struct mval v_ack_fallbacks(const struct volume *v, const struct vol_calc *c) { return U(v->ack_fallbacks); }
static struct mval v_lag_recs(const struct volume *v, const struct vol_calc *c) { return U(c->lag_recs); }
static struct mval v_lag_bytes(const struct volume *v, const struct vol_calc *c) { return U(c->lag_bytes); }
static struct mval v_fill(const struct volume *v, const struct vol_calc *c) { return D(c->fill); }
static struct mval v_dirty(const struct volume *v, const struct vol_calc *c) { return U(v->dirty_bytes); }
static struct mval v_resend(const struct volume *v, const struct vol_calc *c) { return U(v->resend_bytes); }
static struct mval v_resent(const struct volume *v, const struct vol_calc *c) { return U(v->resent_bytes); }
static struct mval v_resyncs(const struct volume *v, const struct vol_calc *c) { return U(v->resyncs); }
static struct mval v_records(const struct volume *v, const struct vol_calc *c) { return U(v->records); }
static struct mval v_bytes(const struct volume *v, const struct vol_calc *c) { return U(v->bytes); }
static struct mval v_invalid(const struct volume *v, const struct vol_calc *c) { return U(v->invalid_records); }
static struct mval v_progress(const struct volume *v, const struct vol_calc *c) { return U(v->progress_count); }

static struct mval a_connected(const struct hub_agent *a, const struct agent_calc *c) { return U(agent_live(a)); }
static struct mval a_attached(const struct hub_agent *a, const struct agent_calc *c) { return U(a->peer != NULL); }
static struct mval a_ring_size(const struct hub_agent *a, const struct agent_calc *c) { return U(c->size); }
static struct mval a_ring_used(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.total.bytes); }
static struct mval a_ring_fill(const struct hub_agent *a, const struct agent_calc *c) { return D(c->size ? (double)c->lags.total.bytes / (double)c->size : 0.0); }
static struct mval a_durable_seq(const struct hub_agent *a, const struct agent_calc *c) { return U(agent_durable_seq(a)); }
static struct mval a_applied_seq(const struct hub_agent *a, const struct agent_calc *c) { return U(a->durable_seq); }
static struct mval a_landed_seq(const struct hub_agent *a, const struct agent_calc *c) { return U(a->landed_valid ? a->landed_seq : 0); }
static struct mval a_lag_recs(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.total.records); }
static struct mval a_lag_bytes(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.total.bytes); }
static struct mval a_dlag_recs(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.durable.records); }
static struct mval a_dlag_bytes(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.durable.bytes); }
static struct mval a_dlag_age(const struct hub_agent *a, const struct agent_calc *c) { return D((double)c->lags.durable.age_ms / 1000.0); }
static struct mval a_alag_recs(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.apply.records); }
static struct mval a_alag_bytes(const struct hub_agent *a, const struct agent_calc *c) { return U(c->lags.apply.bytes); }
static struct mval a_alag_age(const struct hub_agent *a, const struct agent_calc *c) { return D((double)c->lags.apply.age_ms / 1000.0); }
static struct mval a_queued(const struct hub_agent *a, const struct agent_calc *c) { return U(a->have_progress ? a->progress_queued : 0); }
static struct mval a_progress(const struct hub_agent *a, const struct agent_calc *c) { return U(a->progress_count); }
static struct mval a_congestions(const struct hub_agent *a, const struct agent_calc *c) { return U(a->congestions); }
static struct mval a_congested(const struct hub_agent *a, const struct agent_calc *c) { return U(a->congested); }
static struct mval a_records(const struct hub_agent *a, const struct agent_calc *c) { return U(a->records); }
static struct mval a_bytes(const struct hub_agent *a, const struct agent_calc *c) { return U(a->bytes); }
static struct mval a_sync_records(const struct hub_agent *a, const struct agent_calc *c) { return U(a->sync_records); }
static struct mval a_sync_bytes(const struct hub_agent *a, const struct agent_calc *c) { return U(a->sync_bytes); }
static struct mval a_invalid(const struct hub_agent *a, const struct agent_calc *c) { return U(a->invalid_records); }
static struct mval a_fences(const struct hub_agent *a, const struct agent_calc *c) { return U(a->fences); }
static struct mval a_attaches(const struct hub_agent *a, const struct agent_calc *c) { return U(a->attaches); }
static struct mval a_sessions(const struct hub_agent *a, const struct agent_calc *c) { return U(a->sessions); }
/* clang-format on */

/* Keep docs/HUB.md ("Metrics") in step with these two tables. */
static const struct vol_metric vol_metrics[] = {
    {"rephub_volume_size_bytes", "gauge", "Size of the volume in bytes (0 until known).", v_size},
    {"rephub_volume_synced_bytes", "gauge", "Bytes of the volume the recovery image holds.",
     v_synced},
    {"rephub_volume_agent_connected", "gauge", "1 when the owning agent is connected.",
     v_connected},
    {"rephub_volume_caught_up", "gauge",
     "1 when protected, connected, and nothing is queued, dirty or not yet durable.", v_caught_up},
    {"rephub_volume_durable_seq", "gauge", "The owning agent's newest durable record sequence.",
     v_durable_seq},
    {"rephub_volume_ack_fallback", "gauge",
     "1 while the volume's acknowledgement level has fallen back to async.", v_ack_fallback},
    {"rephub_volume_ack_fallbacks_total", "counter",
     "Times the volume's acknowledgement level fell back to async (the agent's current run).",
     v_ack_fallbacks},
    {"rephub_volume_lag_records", "gauge", "Records landed in the ring but not applied yet.",
     v_lag_recs},
    {"rephub_volume_lag_bytes", "gauge", "Ring bytes landed but not applied yet.", v_lag_bytes},
    {"rephub_volume_ring_fill", "gauge", "Fraction (0..1) of the owning agent's ring in use.",
     v_fill},
    {"rephub_volume_dirty_bytes", "gauge",
     "Bytes the agent's dirty bitmap holds (newest PROGRESS).", v_dirty},
    {"rephub_volume_resend_bytes", "gauge",
     "Bytes waiting to be read back and resent by the agent.", v_resend},
    {"rephub_volume_resent_bytes_total", "counter",
     "Bytes the agent resent (resync) since the hub started.", v_resent},
    {"rephub_volume_resyncs_total", "counter", "Times the volume entered the resyncing state.",
     v_resyncs},
    {"rephub_volume_records_total", "counter", "Records applied to the volume.", v_records},
    {"rephub_volume_bytes_total", "counter", "Payload bytes applied to the volume.", v_bytes},
    {"rephub_volume_invalid_records_total", "counter", "Invalid records refused for the volume.",
     v_invalid},
    {"rephub_volume_progress_total", "counter", "PROGRESS reports received for the volume.",
     v_progress},
};

static const struct agent_metric agent_metrics[] = {
    {"rephub_agent_connected", "gauge", "1 while the agent's control session is live.",
     a_connected},
    {"rephub_agent_attached", "gauge", "1 while the agent's data path is attached.", a_attached},
    {"rephub_agent_ring_size_bytes", "gauge", "Data area of the agent's ring in bytes.",
     a_ring_size},
    {"rephub_agent_ring_used_bytes", "gauge", "Ring bytes landed but not applied yet.",
     a_ring_used},
    {"rephub_agent_ring_fill", "gauge", "Fraction (0..1) of the ring in use.", a_ring_fill},
    {"rephub_agent_durable_seq", "gauge",
     "Every record before this sequence is durable (in the ring on pmem, else applied).",
     a_durable_seq},
    {"rephub_agent_applied_seq", "gauge",
     "Every record before this sequence is applied to the image or journal and synced.",
     a_applied_seq},
    {"rephub_agent_landed_seq", "gauge", "Every record up to this sequence has landed.",
     a_landed_seq},
    {"rephub_agent_lag_records", "gauge", "Records landed but not applied yet.", a_lag_recs},
    {"rephub_agent_lag_bytes", "gauge", "Bytes landed but not applied yet.", a_lag_bytes},
    {"rephub_agent_durable_lag_records", "gauge", "Records landed but not durable yet.",
     a_dlag_recs},
    {"rephub_agent_durable_lag_bytes", "gauge", "Bytes landed but not durable yet.", a_dlag_bytes},
    {"rephub_agent_durable_lag_seconds", "gauge",
     "Age of the oldest record landed but not durable (0 when unknown).", a_dlag_age},
    {"rephub_agent_apply_lag_records", "gauge", "Records durable but not applied yet.",
     a_alag_recs},
    {"rephub_agent_apply_lag_bytes", "gauge", "Bytes durable but not applied yet.", a_alag_bytes},
    {"rephub_agent_apply_lag_seconds", "gauge",
     "Age of the oldest record durable but not applied (0 when unknown).", a_alag_age},
    {"rephub_agent_queued_records", "gauge", "Records the agent has queued, not yet posted.",
     a_queued},
    {"rephub_agent_progress_total", "counter", "PROGRESS reports received from the agent.",
     a_progress},
    {"rephub_agent_congestions_total", "counter",
     "Times the agent's queue overflowed (its current run; resets when it restarts).",
     a_congestions},
    {"rephub_agent_congested", "gauge", "1 while an overflow has not been resent in full.",
     a_congested},
    {"rephub_agent_records_total", "counter", "Records applied from the agent's ring.", a_records},
    {"rephub_agent_bytes_total", "counter", "Payload bytes applied from the agent's ring.",
     a_bytes},
    {"rephub_agent_sync_records_total", "counter", "Initial-sync records applied.", a_sync_records},
    {"rephub_agent_sync_bytes_total", "counter", "Initial-sync bytes applied.", a_sync_bytes},
    {"rephub_agent_invalid_records_total", "counter", "Invalid records found in the ring.",
     a_invalid},
    {"rephub_agent_fences_total", "counter", "Times the agent's data path was fenced.", a_fences},
    {"rephub_agent_attaches_total", "counter", "Data-path attaches (reconnects included).",
     a_attaches},
    {"rephub_agent_sessions_total", "counter", "Control sessions (HELLO) accepted.", a_sessions},
};

struct fab_metric {
	const char *name, *help;
	uint64_t (*get)(const struct rf_fab_stats *s);
};

/* clang-format off */
static uint64_t f_attaches(const struct rf_fab_stats *s) { return s->attaches; }
static uint64_t f_detaches(const struct rf_fab_stats *s) { return s->detaches; }
static uint64_t f_refused(const struct rf_fab_stats *s) { return s->refused; }
static uint64_t f_completions(const struct rf_fab_stats *s) { return s->completions; }
static uint64_t f_credits(const struct rf_fab_stats *s) { return s->credits; }
static uint64_t f_credit_bytes(const struct rf_fab_stats *s) { return s->credit_bytes; }
static uint64_t f_errors(const struct rf_fab_stats *s) { return s->errors; }
/* clang-format on */

/* The data listener's counters (fabric.h, struct rf_fab_stats), label
 * transport. Keep docs/HUB.md ("Metrics") in step with this table too. */
static const struct fab_metric fab_metrics[] = {
    {"rephub_transport_attaches_total", "Producers the data listener attached (token accepted).",
     f_attaches},
    {"rephub_transport_detaches_total",
     "Producers detached (disconnected, fenced or failed) after an attach.", f_detaches},
    {"rephub_transport_refused_total",
     "Data attaches the hub refused (unknown token, already attached...; also in errors_total).",
     f_refused},
    {"rephub_transport_completions_total",
     "Doorbells received: one per post that reached the hub (rdma: WRITE WITH IMM receive "
     "completions; tcp/shm: DOORBELL frames).",
     f_completions},
    {"rephub_transport_credits_total",
     "Positions (flow-control credits) sent to producers (rdma: SENDs posted; tcp/shm: POSITION "
     "frames).",
     f_credits},
    {"rephub_transport_credit_bytes_total",
     "Ring bytes released to producers by the positions sent (head position growth).",
     f_credit_bytes},
    {"rephub_transport_errors_total",
     "Data-path failures: refused or failed attaches, malformed frames, failed posts, sends, "
     "reads or accepts, rdma completion and connection errors (disconnects and fences "
     "excluded).",
     f_errors},
};

#define NVOL_METRICS   (sizeof(vol_metrics) / sizeof(vol_metrics[0]))
#define NAGENT_METRICS (sizeof(agent_metrics) / sizeof(agent_metrics[0]))
#define NFAB_METRICS   (sizeof(fab_metrics) / sizeof(fab_metrics[0]))

/* A label value: backslash, double quote and newline escaped. */
static void put_label(FILE *f, const char *key, const char *val)
{
	fprintf(f, "%s=\"", key);
	for (const char *c = val; *c; c++) {
		if (*c == '\\' || *c == '"')
			fprintf(f, "\\%c", *c);
		else if (*c == '\n')
			fputs("\\n", f);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

static void put_value(FILE *f, struct mval m)
{
	if (m.dbl)
		fprintf(f, " %.6f\n", m.d);
	else
		fprintf(f, " %" PRIu64 "\n", m.u);
}

static void put_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_hub(FILE *f, const char *name, const char *type, const char *help, struct mval m)
{
	put_head(f, name, type, help);
	fputs(name, f);
	put_value(f, m);
}

/* One admission counter of every listener (label listener). */
static void put_admit(FILE *f, const struct hub_admission *ad, size_t n, const char *name,
                      const char *type, const char *help,
                      uint64_t (*get)(const struct hub_admission *))
{
	put_head(f, name, type, help);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s{", name);
		put_label(f, "listener", ad[i].listener);
		fputc('}', f);
		put_value(f, U(get(&ad[i])));
	}
}

static uint64_t ad_pending(const struct hub_admission *a)
{
	return a->pending;
}

static uint64_t ad_timeouts(const struct hub_admission *a)
{
	return a->st.handshake_timeouts;
}

static uint64_t ad_evicted(const struct hub_admission *a)
{
	return a->st.pending_evicted;
}

static uint64_t ad_refused(const struct hub_admission *a)
{
	return a->st.refused_full;
}

/* Connection admission: pending, dropped and refused connections, and
 * accept failures by listener and reason. */
static void put_admission(FILE *f, const struct hub *h)
{
	struct hub_admission ad[2];
	size_t n = hub_admission(h, ad);
	const char *fail = "rephub_accept_failures_total";

	put_hub(f, "rephub_fd_limit", "gauge", "The descriptor limit (RLIMIT_NOFILE) of rephubd.",
	        U(h->fds.limit));
	put_admit(f, ad, n, "rephub_pending_connections", "gauge",
	          "Connections that have not proven themselves yet (no HELLO, no authentication).",
	          ad_pending);
	put_admit(f, ad, n, "rephub_handshake_timeouts_total", "counter",
	          "Unproven connections closed at handshake_timeout.", ad_timeouts);
	put_admit(f, ad, n, "rephub_pending_evicted_total", "counter",
	          "Unproven connections closed to make room for a newer one (max_pending).",
	          ad_evicted);
	put_admit(f, ad, n, "rephub_connections_refused_total", "counter",
	          "Connections closed at once: every slot was held by proven peers.", ad_refused);
	put_head(f, fail, "counter",
	         "accept() failures by reason (descriptors: EMFILE/ENFILE, memory, other).");
	for (size_t i = 0; i < n; i++) {
		for (int r = 0; r < RF_ACCEPT_NREASONS; r++) {
			fprintf(f, "%s{", fail);
			put_label(f, "listener", ad[i].listener);
			fputc(',', f);
			put_label(f, "reason", rf_accept_reason_name((enum rf_accept_reason)r));
			fputc('}', f);
			put_value(f, U(ad[i].st.accept_failed[r]));
		}
	}
}

/* The data listener's counters, one sample each with label transport. */
static void put_transport(FILE *f, const struct rf_fab_listener *l)
{
	struct rf_fab_stats st;

	rf_fab_listener_stats(l, &st);
	for (size_t m = 0; m < NFAB_METRICS; m++) {
		put_head(f, fab_metrics[m].name, "counter", fab_metrics[m].help);
		fprintf(f, "%s{", fab_metrics[m].name);
		put_label(f, "transport", rf_fab_listener_scheme(l));
		fputc('}', f);
		put_value(f, U(fab_metrics[m].get(&st)));
	}
}

static void vol_calc(const struct volume *v, struct vol_calc *c)
{
	const struct hub_agent *a = v->owner;

	struct agent_lags lags;

	memset(c, 0, sizeof(*c));
	if (!a)
		return;
	status_agent_lags(a, &lags);
	c->lag_recs = lags.total.records;
	c->lag_bytes = lags.total.bytes;
	if (a->ring)
		c->fill = (double)c->lag_bytes / (double)rf_ring_data_size(a->ring);
}

char *metrics_text(struct hub *h, size_t *len)
{
	struct vol_calc *vc = NULL;
	struct agent_calc *ac = NULL;
	size_t nagents = 0, i;
	char *buf = NULL;
	FILE *f;
	int64_t now = rf_now_ms();

	for (const struct hub_agent *a = h->agents; a; a = a->next)
		nagents++;
	vc = calloc(h->nvols ? h->nvols : 1, sizeof(*vc));
	ac = calloc(nagents ? nagents : 1, sizeof(*ac));
	f = open_memstream(&buf, len);
	if (!vc || !ac || !f)
		goto fail;
	for (i = 0; i < h->nvols; i++)
		vol_calc(&h->vols[i], &vc[i]);
	i = 0;
	for (const struct hub_agent *a = h->agents; a; a = a->next, i++) {
		status_agent_lags(a, &ac[i].lags);
		ac[i].size = a->ring ? rf_ring_data_size(a->ring) : 0;
	}

	put_hub(f, "rephub_uptime_seconds", "gauge", "Seconds since rephubd started.",
	        D((double)(now - h->started_at) / 1000.0));
	put_hub(f, "rephub_volumes", "gauge", "Volumes in the configuration.", U(h->nvols));
	put_hub(f, "rephub_agents", "gauge", "Agents the hub knows (rings found or HELLO seen).",
	        U(nagents));
	put_hub(f, "rephub_connections", "gauge", "Open control connections.", U(h->nconns));
	put_hub(f, "rephub_connections_accepted_total", "counter", "Control connections accepted.",
	        U(h->conns_accepted));
	put_hub(f, "rephub_protocol_errors_total", "counter",
	        "Control frames refused as malformed.", U(h->protocol_errors));
	put_hub(f, "rephub_refusals_total", "counter", "Requests refused with an ERROR.",
	        U(h->refusals));
	put_hub(f, "rephub_auth_ok_total", "counter",
	        "Control connections that authenticated (psk_file).", U(h->auth_ok));
	put_hub(f, "rephub_auth_failures_total", "counter",
	        "Control connections refused for authentication: no, wrong or unknown key, "
	        "a message before authenticating, a HELLO for another agent.",
	        U(h->auth_failures));
	put_hub(f, "rephub_rings_lost_acked_total", "counter",
	        "Rings found at start-up whose valid records end before their durable mark.",
	        U(h->rings_lost_acked));
	put_hub(f, "rephub_reloads_total", "counter", "SIGHUP reloads tried.", U(h->reloads));
	put_hub(f, "rephub_reload_failures_total", "counter",
	        "SIGHUP reloads refused (a problem in the file: nothing changed).",
	        U(h->reload_failures));
	if (h->fab)
		put_transport(f, h->fab);
	put_admission(f, h);

	put_head(f, "rephub_volume_state", "gauge",
	         "1 for the volume's current state (label state).");
	for (i = 0; i < h->nvols; i++) {
		fputs("rephub_volume_state{", f);
		put_label(f, "volume", h->vols[i].cfg->name);
		fputc(',', f);
		put_label(f, "state", rf_vol_state_name(h->vols[i].state));
		fputs("} 1\n", f);
	}
	for (size_t m = 0; m < NVOL_METRICS; m++) {
		put_head(f, vol_metrics[m].name, vol_metrics[m].type, vol_metrics[m].help);
		for (i = 0; i < h->nvols; i++) {
			fprintf(f, "%s{", vol_metrics[m].name);
			put_label(f, "volume", h->vols[i].cfg->name);
			fputc('}', f);
			put_value(f, vol_metrics[m].get(&h->vols[i], &vc[i]));
		}
	}
	for (size_t m = 0; m < NAGENT_METRICS; m++) {
		put_head(f, agent_metrics[m].name, agent_metrics[m].type, agent_metrics[m].help);
		i = 0;
		for (const struct hub_agent *a = h->agents; a; a = a->next, i++) {
			fprintf(f, "%s{", agent_metrics[m].name);
			put_label(f, "agent", a->id);
			fputc('}', f);
			put_value(f, agent_metrics[m].get(a, &ac[i]));
		}
	}
	if (ferror(f))
		goto fail;
	if (fclose(f)) {
		f = NULL;
		goto fail;
	}
	free(vc);
	free(ac);
	return buf;

fail:
	if (f)
		fclose(f);
	free(buf);
	free(vc);
	free(ac);
	return NULL;
}

/* ---- HTTP ----------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
	enum MHD_Result ret;

	if (!r) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls)
{
	struct hub *h = cls;
	static char not_found[] = "not found: the metrics are at /metrics\n";
	static char bad_method[] = "only GET and HEAD\n";
	static char no_mem[] = "out of memory\n";
	const char *text = "text/plain; charset=utf-8";
	size_t len = 0;
	char *body;

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, text, bad_method,
		             sizeof(bad_method) - 1, MHD_RESPMEM_PERSISTENT);
	if (strcmp(url, "/metrics") != 0)
		return reply(conn, MHD_HTTP_NOT_FOUND, text, not_found, sizeof(not_found) - 1,
		             MHD_RESPMEM_PERSISTENT);
	body = metrics_text(h, &len);
	if (!body) {
		RF_WARN(SUBSYS, "out of memory building the metrics");
		return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, text, no_mem, sizeof(no_mem) - 1,
		             MHD_RESPMEM_PERSISTENT);
	}
	h->metrics->scrapes++;
	return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len,
	             MHD_RESPMEM_MUST_FREE);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	RF_WARN(SUBSYS, "libmicrohttpd: %s", msg);
}

/* Split HOST:PORT / [V6]:PORT (checked by config.c) and resolve it. */
static int resolve(const char *hp, struct addrinfo **ai)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	char host[256];
	const char *colon = strrchr(hp, ':');
	size_t n;
	int rc;

	if (!colon)
		return -EINVAL;
	n = (size_t)(colon - hp);
	if (hp[0] == '[' && n >= 2 && hp[n - 1] == ']') {
		hp++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, hp, n);
	host[n] = '\0';
	rc = getaddrinfo(host, colon + 1, &hints, ai);
	if (rc) {
		RF_ERR(SUBSYS, "cannot resolve %s: %s", hp, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

int metrics_start(struct hub *h)
{
	const union MHD_DaemonInfo *info;
	struct hub_metrics *m;
	struct addrinfo *ai = NULL;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	uint16_t port;
	int rc;

	if (!h->cfg->metrics[0])
		return 0;
	rc = resolve(h->cfg->metrics, &ai);
	if (rc)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto out;
	}
	m->fd = -1;
	if (ai->ai_family == AF_INET6) {
		flags |= MHD_USE_IPv6;
		port = ntohs(((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
	} else {
		port = ntohs(((const struct sockaddr_in *)ai->ai_addr)->sin_port);
	}
	m->d = MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
	                        mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	                        MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONN_LIMIT,
	                        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_CONN_TIMEOUT,
	                        MHD_OPTION_END);
	if (!m->d) {
		rc = -EADDRNOTAVAIL;
		RF_ERR(SUBSYS, "cannot serve metrics on %s (address in use or not local?)",
		       h->cfg->metrics);
		goto fail;
	}
	info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		rc = -ENOTSUP;
		RF_ERR(SUBSYS, "libmicrohttpd has no epoll fd");
		goto fail;
	}
	m->fd = info->epoll_fd;
	m->src = (struct ev_src){.kind = EV_METRICS, .ptr = h};
	rc = hub_ep_add(h, m->fd, EPOLLIN, &m->src);
	if (rc) {
		RF_ERR(SUBSYS, "epoll_ctl: %s", strerror(-rc));
		goto fail;
	}
	h->metrics = m;
	RF_INFO(SUBSYS, "serving Prometheus metrics on http://%s/metrics", h->cfg->metrics);
	goto out;

fail:
	if (m->d)
		MHD_stop_daemon(m->d);
	free(m);
out:
	if (ai)
		freeaddrinfo(ai);
	return rc;
}

/* MHD's fd is readable, or a tick: let it accept, read, answer, time out. */
void metrics_run(struct hub *h)
{
	MHD_UNSIGNED_LONG_LONG timeout;

	if (!h->metrics)
		return;
	MHD_run(h->metrics->d);
	/* Work MHD has not done yet (edge-triggered inside): another turn now. */
	if (MHD_get_timeout(h->metrics->d, &timeout) == MHD_YES && timeout == 0)
		h->more_work = true;
}

void metrics_stop(struct hub *h)
{
	if (!h->metrics)
		return;
	hub_ep_del(h, h->metrics->fd);
	MHD_stop_daemon(h->metrics->d);
	free(h->metrics);
	h->metrics = NULL;
}

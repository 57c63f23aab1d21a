/* SPDX-License-Identifier: MIT */
/*
 * librepagent: the public API, volumes, the write path and the per-chunk
 * state that decides when a dirty bit may be cleared. The agent's thread
 * is in loop.c and the files it drives (agent_internal.h has the map and
 * the lock order).
 *
 * Per chunk (64 KiB) the agent keeps
 *   refs:   writes begun and not yet handed over, plus queued or posted
 *           records touching the chunk that the hub has not made durable;
 *   resend: the chunk must be read back and posted again (the write could
 *           not be queued, its record was lost with a connection, or the
 *           bitmap said so at start).
 * A chunk is "pending" while refs > 0 or resend; its bitmap bit is set as
 * long as it is pending, and cleared (lazily, by the loop's clear pass)
 * once it is not.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent_internal.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

#define DEF_QUEUE_LIMIT   (64ull << 20)
#define DEF_BACKOFF_MIN   100
#define DEF_BACKOFF_MAX   5000
#define DEF_CONNECT_TO    3000
#define DEF_HEARTBEAT     5000
#define DEF_STOP_TIMEOUT  5000
#define DEF_CLEAR_PERIOD  1000
#define NODATA_REC_CHARGE 256 /* queue bytes charged for a ZERO/TRIM record */

/* write_end stores the write type as the ring record type. */
_Static_assert((int)RF_AGENT_WRITE == (int)RF_RING_REC_DATA &&
                   (int)RF_AGENT_ZERO == (int)RF_RING_REC_ZERO &&
                   (int)RF_AGENT_TRIM == (int)RF_RING_REC_TRIM,
               "rf_agent_wtype values must be the ring record types");

/* ---- chunk state (caller holds v->lock) -------------------------------- */

static bool resend_test(const struct rf_agent_vol *v, uint64_t c)
{
	return (v->resend[c / 64] >> (c % 64)) & 1;
}

static void ref_inc(struct rf_agent_vol *v, uint64_t c)
{
	if (v->refs[c]++ == 0 && !resend_test(v, c))
		v->pending_chunks++;
}

static void ref_dec(struct rf_agent_vol *v, uint64_t c)
{
	if (v->refs[c] == 0) {
		RF_ERR("agent", "volume %s: chunk %" PRIu64 " reference underflow", v->name, c);
		return;
	}
	if (--v->refs[c] == 0 && !resend_test(v, c))
		v->pending_chunks--;
}

static void resend_set(struct rf_agent_vol *v, uint64_t c)
{
	if (resend_test(v, c))
		return;
	v->resend[c / 64] |= 1ull << (c % 64);
	v->resend_count++;
	if (v->refs[c] == 0)
		v->pending_chunks++;
}

static void resend_clear(struct rf_agent_vol *v, uint64_t c)
{
	if (!resend_test(v, c))
		return;
	v->resend[c / 64] &= ~(1ull << (c % 64));
	v->resend_count--;
	if (v->refs[c] == 0)
		v->pending_chunks--;
}

void rfa_chunks_release(struct rf_agent_vol *v, uint64_t first, uint64_t last, bool resend)
{
	pthread_mutex_lock(&v->lock);
	for (uint64_t c = first; c <= last; c++) {
		if (resend)
			resend_set(v, c);
		ref_dec(v, c);
	}
	pthread_mutex_unlock(&v->lock);
}

void rfa_chunks_resent(struct rf_agent_vol *v, uint64_t first, uint64_t last)
{
	pthread_mutex_lock(&v->lock);
	for (uint64_t c = first; c <= last; c++) {
		ref_inc(v, c);
		resend_clear(v, c);
	}
	pthread_mutex_unlock(&v->lock);
}

/* First resend chunk in [from, nchunks), or nchunks. Caller holds v->lock. */
static uint64_t resend_next_from(const struct rf_agent_vol *v, uint64_t from)
{
	for (uint64_t c = from; c < v->nchunks;) {
		uint64_t w = v->resend[c / 64] >> (c % 64);

		if (w) {
			c += (uint64_t)__builtin_ctzll(w);
			return c < v->nchunks ? c : v->nchunks;
		}
		c = (c / 64 + 1) * 64;
	}
	return v->nchunks;
}

bool rfa_resend_find(struct rf_agent_vol *v, uint64_t *cursor, uint64_t max, uint64_t *first,
                     uint64_t *last)
{
	uint64_t c;
	bool found = false;

	pthread_mutex_lock(&v->lock);
	if (v->resend_count == 0)
		goto out;
	c = resend_next_from(v, *cursor < v->nchunks ? *cursor : 0);
	if (c == v->nchunks)
		c = resend_next_from(v, 0);
	if (c == v->nchunks)
		goto out;
	*first = c;
	while (c + 1 < v->nchunks && c + 1 - *first < max && resend_test(v, c + 1))
		c++;
	*last = c;
	*cursor = c + 1;
	found = true;
out:
	pthread_mutex_unlock(&v->lock);
	return found;
}

uint64_t rfa_dirty_bytes(struct rf_agent_vol *v)
{
	uint64_t n, last = v->nchunks - 1;

	pthread_mutex_lock(&v->lock);
	n = v->pending_chunks * RF_AGENT_CHUNK_SIZE;
	if (v->refs[last] || resend_test(v, last))
		n -= v->nchunks * RF_AGENT_CHUNK_SIZE - v->size;
	pthread_mutex_unlock(&v->lock);
	return n;
}

uint64_t rfa_resend_bytes(struct rf_agent_vol *v)
{
	uint64_t n, last = v->nchunks - 1;

	pthread_mutex_lock(&v->lock);
	n = v->resend_count * RF_AGENT_CHUNK_SIZE;
	if (resend_test(v, last))
		n -= v->nchunks * RF_AGENT_CHUNK_SIZE - v->size;
	pthread_mutex_unlock(&v->lock);
	return n;
}

/* A persist failed: flag the file so a restart recreates it, and report the
 * bitmap invalid from now on. */
static void bitmap_failed(struct rf_agent_vol *v, int rc)
{
	int rc2;

	pthread_mutex_lock(&v->lock);
	if (v->bm_broken) {
		pthread_mutex_unlock(&v->lock);
		return;
	}
	v->bm_broken = true;
	rc2 = rfa_bitmap_mark_invalid(v->bm);
	pthread_mutex_unlock(&v->lock);
	RF_ERR("agent",
	       "volume %s: persisting the dirty bitmap failed: %s; it is now reported invalid "
	       "(the hub will do a full sync)%s",
	       v->name, strerror(-rc), rc2 ? ", and flagging the file invalid failed too" : "");
}

/*
 * Hysteresis: a chunk written during the last period keeps its bit even
 * when its records are already durable, so a hot chunk does not flip (and
 * msync) again on its next write. A bit is thus cleared one to two periods
 * after the chunk's last write became durable.
 */
uint64_t rfa_clear_pass(struct rf_agent_vol *v, bool final)
{
	uint64_t cleared = 0, lo = 0, hi = 0, c;
	int rc = 0;

	pthread_mutex_lock(&v->lock);
	for (uint64_t from = 0; rfa_bitmap_next_set(v->bm, from, &c) == 0; from = c + 1) {
		if (v->refs[c] || resend_test(v, c))
			continue;
		if (!final && ((v->touched[c / 64] >> (c % 64)) & 1))
			continue;
		rfa_bitmap_clear(v->bm, c);
		if (!cleared++)
			lo = rfa_bitmap_page_of(c);
		hi = rfa_bitmap_page_of(c);
	}
	memset(v->touched, 0, (v->nchunks + 63) / 64 * sizeof(*v->touched));
	pthread_mutex_unlock(&v->lock);
	if (cleared || final) {
		pthread_mutex_lock(&v->persist_lock);
		if (final)
			rc = rfa_bitmap_persist(v->bm, true);
		else
			rc = rfa_bitmap_persist_pages(v->bm, lo, hi, false);
		pthread_mutex_unlock(&v->persist_lock);
		if (rc)
			bitmap_failed(v, rc);
	}
	if (cleared)
		RF_DEBUG("agent", "volume %s: %" PRIu64 " dirty bits cleared", v->name, cleared);
	return cleared;
}

/*
 * Make every 0->1 flip up to generation @need durable. Group commit: one
 * writer msyncs the pages flipped so far; the others find their generation
 * covered and return.
 */
static void persist_flips(struct rf_agent_vol *v, uint64_t need)
{
	uint64_t gen, lo = 0, hi = 0;
	bool any;
	int rc = 0;

	pthread_mutex_lock(&v->persist_lock);
	if (atomic_load(&v->synced_gen) >= need)
		goto out;
	pthread_mutex_lock(&v->lock);
	gen = v->set_gen;
	any = v->flips;
	lo = v->flip_lo;
	hi = v->flip_hi;
	v->flips = false;
	pthread_mutex_unlock(&v->lock);
	if (any)
		rc = rfa_bitmap_persist_pages(v->bm, lo, hi, true);
	atomic_store(&v->synced_gen, gen);
out:
	pthread_mutex_unlock(&v->persist_lock);
	if (rc)
		bitmap_failed(v, rc);
}

/* ---- agent ------------------------------------------------------------- */

bool rf_agent_hub_addr_ok(const char *s)
{
	const char *colon = s ? strrchr(s, ':') : NULL;
	char *end;
	unsigned long port;

	if (!colon || colon == s)
		return false;
	port = strtoul(colon + 1, &end, 10);
	return colon[1] && *end == '\0' && port > 0 && port < 65536;
}

/* A random non-zero id for this agent's run (PROGRESS: the hub tells restarts apart). */
static uint64_t random_instance(void)
{
	uint64_t v = 0;
	struct timespec ts;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
		clock_gettime(CLOCK_REALTIME, &ts);
		v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
		v *= 0x9e3779b97f4a7c15ull;
	}
	return v ? v : 1;
}

/* rf_agent_wait_durable's deadlines are CLOCK_MONOTONIC: immune to clock steps. */
static int durable_cv_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rc;

	rc = pthread_condattr_init(&ca);
	if (rc)
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return -rc;
}

int rf_agent_new(struct rf_agent **out, const char *hub, const char *agent_id,
                 const struct rf_agent_opts *opts)
{
	struct rf_agent *a;
	int rc;

	*out = NULL;
	if (!rf_agent_hub_addr_ok(hub) || strlen(hub) >= sizeof(((struct rf_agent *)0)->hub)) {
		RF_ERR("agent", "hub address '%s' is not HOST:PORT", hub ? hub : "");
		return -EINVAL;
	}
	if (!agent_id || !rf_ctl_name_ok(agent_id)) {
		RF_ERR("agent", "agent id '%s' is not 1..64 of [A-Za-z0-9._-]",
		       agent_id ? agent_id : "");
		return -EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	snprintf(a->hub, sizeof(a->hub), "%s", hub);
	snprintf(a->id, sizeof(a->id), "%s", agent_id);
	if (opts)
		a->opts = *opts;
	if (!a->opts.queue_limit)
		a->opts.queue_limit = DEF_QUEUE_LIMIT;
	if (!a->opts.backoff_min_ms)
		a->opts.backoff_min_ms = DEF_BACKOFF_MIN;
	if (!a->opts.backoff_max_ms)
		a->opts.backoff_max_ms = DEF_BACKOFF_MAX;
	if (a->opts.backoff_max_ms < a->opts.backoff_min_ms)
		a->opts.backoff_max_ms = a->opts.backoff_min_ms;
	if (!a->opts.connect_timeout_ms)
		a->opts.connect_timeout_ms = DEF_CONNECT_TO;
	if (!a->opts.heartbeat_ms)
		a->opts.heartbeat_ms = DEF_HEARTBEAT;
	if (!a->opts.stop_timeout_ms)
		a->opts.stop_timeout_ms = DEF_STOP_TIMEOUT;
	if (!a->opts.clear_period_ms)
		a->opts.clear_period_ms = DEF_CLEAR_PERIOD;
	a->instance = random_instance();
	rc = -pthread_mutex_init(&a->lock, NULL);
	if (rc)
		goto out_free;
	rc = durable_cv_init(&a->durable_cv);
	if (rc)
		goto out_mutex;
	rc = rfa_loop_init(a);
	if (rc)
		goto out_cv;
	*out = a;
	return 0;
out_cv:
	pthread_cond_destroy(&a->durable_cv);
out_mutex:
	pthread_mutex_destroy(&a->lock);
out_free:
	free(a);
	return rc;
}

static void vol_free(struct rf_agent_vol *v)
{
	if (!v)
		return;
	if (v->bm) {
		rfa_clear_pass(v, true);
		rfa_bitmap_close(&v->bm);
	}
	free(v->refs);
	free(v->resend);
	free(v->touched);
	rfa_rl_destroy(&v->rl);
	pthread_mutex_destroy(&v->persist_lock);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

int rf_agent_add_volume(struct rf_agent *a, const struct rf_agent_vol_conf *conf,
                        struct rf_agent_vol **out)
{
	struct rf_agent_vol *v;
	unsigned n;
	uint64_t c;
	int rc;

	if (out)
		*out = NULL;
	if (!conf || !conf->name || !rf_ctl_name_ok(conf->name)) {
		RF_ERR("agent", "volume name '%s' is not 1..64 of [A-Za-z0-9._-]",
		       conf && conf->name ? conf->name : "");
		return -EINVAL;
	}
	if (conf->size == 0 || conf->size % 512) {
		RF_ERR("agent", "volume %s: size %" PRIu64 " is not a positive multiple of 512",
		       conf->name, conf->size);
		return -EINVAL;
	}
	if (!conf->read || !conf->bitmap_path || !*conf->bitmap_path) {
		RF_ERR("agent", "volume %s: a read callback and a bitmap path are required",
		       conf->name);
		return -EINVAL;
	}
	n = atomic_load(&a->nvols);
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(a->vols[i]->name, conf->name) == 0 ||
		    a->vols[i]->vol_id == conf->vol_id) {
			RF_ERR("agent", "volume %s (id %u): name or id already added", conf->name,
			       conf->vol_id);
			return -EEXIST;
		}
	}
	if (n >= RF_AGENT_MAX_VOLS)
		return -ENOSPC;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->agent = a;
	snprintf(v->name, sizeof(v->name), "%s", conf->name);
	v->size = conf->size;
	v->vol_id = conf->vol_id;
	v->read = conf->read;
	v->read_ctx = conf->read_ctx;
	v->nchunks = (conf->size + RF_AGENT_CHUNK_SIZE - 1) / RF_AGENT_CHUNK_SIZE;
	v->state = RF_VOL_UNKNOWN;
	atomic_init(&v->synced_gen, 0);
	rc = -pthread_mutex_init(&v->lock, NULL);
	if (rc)
		goto out_free;
	rc = -pthread_mutex_init(&v->persist_lock, NULL);
	if (rc)
		goto out_lock;
	rc = rfa_rl_init(&v->rl);
	if (rc)
		goto out_plock;
	v->refs = calloc(v->nchunks, sizeof(*v->refs));
	v->resend = calloc((v->nchunks + 63) / 64, sizeof(*v->resend));
	v->touched = calloc((v->nchunks + 63) / 64, sizeof(*v->touched));
	if (!v->refs || !v->resend || !v->touched) {
		rc = -ENOMEM;
		goto out_arrays;
	}
	rc = rfa_bitmap_open(&v->bm, conf->bitmap_path, v->name, v->size, RF_AGENT_CHUNK_SIZE,
	                     &v->bitmap_valid);
	if (rc)
		goto out_arrays;
	v->trusted = v->bitmap_valid;
	/* What was dirty when the last run ended must be resent. */
	for (uint64_t from = 0; rfa_bitmap_next_set(v->bm, from, &c) == 0; from = c + 1)
		resend_set(v, c);
	/* Said even when 0: tests and operators see the bitmap was read. */
	RF_INFO("agent", "volume %s: %" PRIu64 " dirty chunks from the last run to resend", v->name,
	        v->resend_count);

	pthread_mutex_lock(&a->lock);
	n = atomic_load(&a->nvols);
	for (unsigned i = 0; i < n; i++)
		if (strcmp(a->vols[i]->name, v->name) == 0 || a->vols[i]->vol_id == v->vol_id)
			rc = -EEXIST;
	if (!rc && n >= RF_AGENT_MAX_VOLS)
		rc = -ENOSPC;
	if (!rc) {
		a->vols[n] = v;
		atomic_store(&a->nvols, n + 1);
	}
	pthread_mutex_unlock(&a->lock);
	if (rc) {
		vol_free(v);
		return rc;
	}
	RF_INFO("agent", "volume %s (id %u, %" PRIu64 " bytes): bitmap %s, %s", v->name, v->vol_id,
	        v->size, conf->bitmap_path, v->bitmap_valid ? "valid" : "new (full sync needed)");
	rfa_wake(a);
	if (out)
		*out = v;
	return 0;
out_arrays:
	free(v->refs);
	free(v->resend);
	free(v->touched);
	rfa_rl_destroy(&v->rl);
out_plock:
	pthread_mutex_destroy(&v->persist_lock);
out_lock:
	pthread_mutex_destroy(&v->lock);
out_free:
	free(v);
	return rc;
}

struct rf_agent_vol *rf_agent_find_volume(struct rf_agent *a, const char *name)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (strcmp(a->vols[i]->name, name) == 0)
			return a->vols[i];
	return NULL;
}

struct rf_agent_vol *rfa_vol_by_id(struct rf_agent *a, uint32_t id)
{
	unsigned n = atomic_load(&a->nvols);

	for (unsigned i = 0; i < n; i++)
		if (a->vols[i]->vol_id == id)
			return a->vols[i];
	return NULL;
}

bool rfa_vol_attached(struct rf_agent *a, struct rf_agent_vol *v)
{
	bool r;

	pthread_mutex_lock(&a->lock);
	r = v->attached && !a->stopping;
	pthread_mutex_unlock(&a->lock);
	return r;
}

int rf_agent_start(struct rf_agent *a)
{
	sigset_t all, old;
	int rc;

	if (a->started)
		return -EALREADY;
	pthread_mutex_lock(&a->lock);
	a->stopping = false;
	a->running = true; /* cleared by the loop thread at its end */
	pthread_mutex_unlock(&a->lock);
	/* The thread takes no signals: they belong to the host program. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&a->thread, NULL, rfa_loop_main, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		pthread_mutex_lock(&a->lock);
		a->running = false;
		pthread_mutex_unlock(&a->lock);
		rfa_durable_wake(a);
		RF_ERR("agent", "cannot start the agent thread: %s", strerror(-rc));
		return rc;
	}
	a->started = true;
	return 0;
}

void rf_agent_stop(struct rf_agent *a)
{
	if (!a || !a->started)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_mutex_unlock(&a->lock);
	rfa_wake(a);
	pthread_join(a->thread, NULL);
	a->started = false;
}

int rf_agent_set_psk_file(struct rf_agent *a, const char *path)
{
	char why[4096 + 256];
	int rc;

	if (a->started)
		return -EBUSY;
	rf_auth_keys_free(&a->keys);
	a->key = NULL;
	rc = rf_auth_keys_load(&a->keys, path, why, sizeof(why));
	if (!rc)
		rc = rf_auth_key_pick(&a->keys, a->id, &a->key, why, sizeof(why));
	if (rc) {
		RF_ERR("agent", "psk_file: %s%s", why,
		       rc == -ENOENT ? " (a line for this agent's id is needed)" : "");
		rf_auth_keys_free(&a->keys);
		return rc;
	}
	return 0;
}

void rf_agent_destroy(struct rf_agent **pa)
{
	struct rf_agent *a = pa ? *pa : NULL;
	unsigned n;

	if (!a)
		return;
	rf_agent_stop(a);
	rfa_loop_fini(a);
	n = atomic_load(&a->nvols);
	for (unsigned i = 0; i < n; i++)
		vol_free(a->vols[i]);
	pthread_cond_destroy(&a->durable_cv);
	pthread_mutex_destroy(&a->lock);
	rf_auth_keys_free(&a->keys);
	free(a);
	*pa = NULL;
}

/* ---- write path -------------------------------------------------------- */

int rf_agent_write_begin(struct rf_agent_vol *v, uint64_t off, uint32_t len)
{
	uint64_t first, last, need;
	bool flipped = false;
	int rc;

	if (len == 0)
		return 0;
	if (off > v->size || len > v->size - off)
		return -EINVAL;
	rc = rfa_rl_lock(&v->rl, off, len);
	if (rc)
		return rc;
	rfa_chunks(off, len, &first, &last);
	pthread_mutex_lock(&v->lock);
	for (uint64_t c = first; c <= last; c++) {
		ref_inc(v, c);
		v->touched[c / 64] |= 1ull << (c % 64);
		if (rfa_bitmap_set(v->bm, c)) {
			uint64_t pg = rfa_bitmap_page_of(c);

			if (!v->flips) {
				v->flip_lo = v->flip_hi = pg;
				v->flips = true;
			} else {
				if (pg < v->flip_lo)
					v->flip_lo = pg;
				if (pg > v->flip_hi)
					v->flip_hi = pg;
			}
			flipped = true;
		}
	}
	if (flipped)
		v->set_gen++;
	need = v->set_gen;
	pthread_mutex_unlock(&v->lock);
	/* Also when this write flipped nothing: a bit another writer flipped
	 * may not be on disk yet, and this write must not complete before. */
	if (atomic_load(&v->synced_gen) < need)
		persist_flips(v, need);
	return 0;
}

uint64_t rfa_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct rf_agent_ticket rf_agent_write_end(struct rf_agent_vol *v, uint64_t off, uint32_t len,
                                          const void *buf, enum rf_agent_wtype type, bool ok)
{
	struct rf_agent *a = v->agent;
	struct rf_agent_ticket t = {0};
	struct rfa_rec *r = NULL;
	uint64_t first, last;
	bool queued = false, wake = false, accepting, congestion = false;
	uint32_t congestions = 0;

	if (len == 0)
		return t;
	/* Only what changed the disk must reach the hub before an ack: a trim
	 * may leave the old data readable, a failed write is read back. */
	t.must_ack = ok && (type == RF_AGENT_WRITE || type == RF_AGENT_ZERO);
	rfa_chunks(off, len, &first, &last);
	/* Unknown types, and trims: resend what is on disk. NBD lets a trim
	 * leave old data readable, so only the disk knows what the range reads
	 * now; the resend copies exactly that to the replica. */
	if (type != RF_AGENT_WRITE && type != RF_AGENT_ZERO)
		ok = false;
	if (ok && type == RF_AGENT_WRITE && !buf)
		ok = false;

	pthread_mutex_lock(&a->lock);
	accepting = v->attached && !a->stopping;
	pthread_mutex_unlock(&a->lock);
	if (ok && accepting) {
		r = calloc(1, sizeof(*r));
		if (r && type == RF_AGENT_WRITE) {
			r->buf_size = rf_ring_encode_buf_size(len);
			r->buf = malloc(r->buf_size);
			if (r->buf)
				memcpy(r->buf + RF_RING_REC_HDR_SIZE, buf, len);
		}
		if (r && (type != RF_AGENT_WRITE || r->buf)) {
			r->vol = v;
			r->type = (uint16_t)type; /* the enum values are the ring types */
			r->off = off;
			r->len = len;
			r->ts_ns = rfa_realtime_ns();
			r->charge = type == RF_AGENT_WRITE ? r->buf_size : NODATA_REC_CHARGE;
			pthread_mutex_lock(&a->lock);
			if (v->attached && !a->stopping &&
			    a->q_bytes + r->charge <= a->opts.queue_limit) {
				wake = a->qhead == NULL;
				if (a->qtail)
					a->qtail->next = r;
				else
					a->qhead = r;
				a->qtail = r;
				a->q_bytes += r->charge;
				a->q_count++;
				a->q_pushed++;
				r->ticket = t.id = a->q_pushed;
				t.epoch = a->link_epoch;
				v->queued_bytes += r->charge;
				v->queued++;
				queued = true;
			} else if (v->attached && !a->stopping && !a->congested) {
				/* The hub falls behind: from here on the bitmap tracks
				 * what does not fit, and the loop catches up later. */
				a->congested = true;
				a->congested_ms = rf_now_ms();
				a->congested_resent = a->resent_bytes;
				congestions = ++a->congestions;
				congestion = true;
			}
			pthread_mutex_unlock(&a->lock);
		}
	}
	if (!queued) {
		if (r) {
			free(r->buf);
			free(r);
		}
		/* The chunks stay dirty; the loop reads them back and posts them
		 * once it can. The reference taken in write_begin is dropped. */
		rfa_chunks_release(v, first, last, true);
		if (ok) {
			pthread_mutex_lock(&a->lock);
			a->overflow_writes++;
			pthread_mutex_unlock(&a->lock);
		}
	}
	rfa_rl_unlock(&v->rl, off, len);
	if (wake)
		rfa_wake(a);
	if (congestion)
		RF_WARN("agent",
		        "the write queue is full (%" PRIu64 " bytes): the hub is behind; writes "
		        "are tracked in the dirty bitmap and resent later (congestion %u)",
		        a->opts.queue_limit, congestions);
	return t;
}

int rf_agent_vol_set_ack(struct rf_agent_vol *v, enum rf_agent_ack level, int timeout_ms,
                         int poll_us)
{
	if ((level != RF_AGENT_ACK_ASYNC && level != RF_AGENT_ACK_LANDED &&
	     level != RF_AGENT_ACK_DURABLE) ||
	    timeout_ms <= 0 || poll_us < 0)
		return -EINVAL;
	pthread_mutex_lock(&v->agent->lock);
	if (v->ack != level && v->ack == RF_AGENT_ACK_LANDED)
		atomic_fetch_sub(&v->agent->landed_vols, 1);
	else if (v->ack != level && level == RF_AGENT_ACK_LANDED)
		atomic_fetch_add(&v->agent->landed_vols, 1);
	v->ack = level;
	v->ack_timeout_ms = timeout_ms;
	v->ack_poll_us = poll_us;
	if (level != RF_AGENT_ACK_ASYNC && poll_us > atomic_load(&v->agent->loop_spin_us))
		atomic_store(&v->agent->loop_spin_us, poll_us);
	pthread_mutex_unlock(&v->agent->lock);
	return 0;
}

/* ---- status ------------------------------------------------------------ */

int rf_agent_vol_status(struct rf_agent_vol *v, struct rf_agent_vol_status *st)
{
	struct rf_agent *a = v->agent;

	memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "%s", v->name);
	st->vol_id = v->vol_id;
	st->size = v->size;
	st->bitmap_valid = v->bitmap_valid;
	pthread_mutex_lock(&a->lock);
	st->state = v->state;
	st->synced_bytes = v->synced_bytes;
	st->queued_bytes = v->queued_bytes;
	st->queued = v->queued;
	st->connected = rfa_link_ctl_up(a->link);
	st->attached = v->attached;
	st->resent_bytes = v->resent_bytes;
	st->ack = (uint8_t)v->ack;
	st->ack_fallback = v->ack_fallback;
	st->ack_fallbacks = v->ack_fallbacks;
	st->ack_waits = v->ack_waits;
	pthread_mutex_unlock(&a->lock);
	st->dirty_bytes = rfa_dirty_bytes(v);
	st->resend_bytes = rfa_resend_bytes(v);
	return 0;
}

int rf_agent_status(struct rf_agent *a, struct rf_agent_status *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&a->lock);
	st->connected = rfa_link_ctl_up(a->link);
	st->attached = rfa_link_data_up(a->link);
	st->next_seq = a->next_seq;
	st->durable_seq = a->durable_seq;
	st->queued_bytes = a->q_bytes;
	st->queued = a->q_count;
	st->reconnects = a->reconnects;
	st->records = a->records;
	st->record_bytes = a->record_bytes;
	st->sync_reads = a->sync_reads;
	st->resent_bytes = a->resent_bytes;
	st->overflow_writes = a->overflow_writes;
	st->congestions = a->congestions;
	st->congested = a->congested;
	pthread_mutex_unlock(&a->lock);
	st->nvols = atomic_load(&a->nvols);
	return 0;
}

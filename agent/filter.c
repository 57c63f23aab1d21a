/* SPDX-License-Identifier: MIT */
/*
 * nbdkit-repagent-filter: protect mode. Every write, zero and trim is
 * applied to the local disk (the plugin below) and then mirrored to the
 * hub by librepagent, asynchronously: the guest only ever sees local
 * errors, never the hub's state.
 *
 *   nbdkit -U SOCK --filter=nbdkit-repagent-filter.so file DISK.img \
 *          repagent-hub=HOST:PORT repagent-volume=vm1-disk0 \
 *          repagent-bitmap=/var/lib/repagent/vm1-disk0.bitmap
 *
 * One agent per nbdkit process; every export it serves is a volume of that
 * agent. The volume named by repagent-volume is the default export (the
 * export name "", or that name) and is registered at start, with a shared
 * background plugin context for its sync reads. Other export names are
 * registered as volumes of the same name when a client first connects to
 * them (bitmaps in repagent-bitmap-dir); nbdkit cannot open a shared
 * context for a named export (plugins see no export name there), so their
 * sync reads and resends go through the plugin contexts of the client
 * connections open on them. See docs/AGENT.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "repfabric/agent.h"
#include "repfabric/auth.h"
#include "repfabric/crc32c.h"
#include "repfabric/ctl.h"
#include "repfabric/log.h"

/* -D repagent.verbose=1: librepagent debug messages (with nbdkit -v). */
NBDKIT_DLL_PUBLIC int repagent_debug_verbose = 0;

/* Configuration. */
static const char *cfg_hub;
static const char *cfg_volume;
static char *cfg_bitmap;
static char *cfg_bitmap_dir;
static const char *cfg_agent_id;
static uint64_t cfg_queue_limit;
static enum rf_agent_ack cfg_ack = RF_AGENT_ACK_ASYNC;
static int cfg_ack_timeout_ms = 5000;
static int cfg_poll_us;
static char *cfg_psk_file;
static char agent_id[RF_CTL_MAX_NAME + 1];

/* A plugin context of a client connection, lent to the agent for reads. */
struct reader {
	struct reader *next;
	nbdkit_next *nx;
	bool busy; /* a read is running on it */
};

/* A volume and the plugin contexts its sync reads use. */
struct fvol {
	struct fvol *next;
	char export[RF_CTL_MAX_NAME + 1]; /* export name as the client asks for it */
	char name[RF_CTL_MAX_NAME + 1];   /* volume name */
	struct rf_agent_vol *vol;
	nbdkit_next *bg;       /* shared background context (default export), or NULL */
	pthread_mutex_t rlock; /* readers */
	pthread_cond_t rcv;    /* a reader stopped being busy */
	struct reader *readers;
};

static struct rf_agent *agent;
static pthread_mutex_t vols_lock = PTHREAD_MUTEX_INITIALIZER; /* fvols list */
static struct fvol *fvols;

struct handle {
	char export[RF_CTL_MAX_NAME + 1];
	struct fvol *fv;
	nbdkit_next *reader; /* this connection's context, lent to fv */
};

/* ---- logging ----------------------------------------------------------- */

static void log_sink(void *ctx, enum rf_log_level level, const char *line)
{
	switch (level) {
	case RF_LOG_ERR:
		nbdkit_error("repagent: %s", line);
		break;
	case RF_LOG_WARN:
		nbdkit_error("repagent: warning: %s", line);
		break;
	default:
		nbdkit_debug("repagent: %s", line);
		break;
	}
}

/* ---- configuration ----------------------------------------------------- */

static int repagent_config(nbdkit_next_config *next, nbdkit_backend *nxdata, const char *key,
                           const char *value)
{
	if (strcmp(key, "repagent-hub") == 0) {
		cfg_hub = value;
	} else if (strcmp(key, "repagent-volume") == 0) {
		if (!rf_ctl_name_ok(value)) {
			nbdkit_error(
			    "repagent-volume '%s': a volume name is 1..64 of [A-Za-z0-9._-]",
			    value);
			return -1;
		}
		cfg_volume = value;
	} else if (strcmp(key, "repagent-bitmap") == 0) {
		free(cfg_bitmap);
		cfg_bitmap = nbdkit_absolute_path(value);
		if (!cfg_bitmap)
			return -1;
	} else if (strcmp(key, "repagent-bitmap-dir") == 0) {
		free(cfg_bitmap_dir);
		cfg_bitmap_dir = nbdkit_realpath(value);
		if (!cfg_bitmap_dir)
			return -1;
	} else if (strcmp(key, "repagent-agent-id") == 0) {
		if (!rf_ctl_name_ok(value)) {
			nbdkit_error(
			    "repagent-agent-id '%s': an agent id is 1..64 of [A-Za-z0-9._-]",
			    value);
			return -1;
		}
		cfg_agent_id = value;
	} else if (strcmp(key, "repagent-psk-file") == 0) {
		free(cfg_psk_file);
		cfg_psk_file = nbdkit_absolute_path(value);
		if (!cfg_psk_file)
			return -1;
	} else if (strcmp(key, "repagent-queue-limit") == 0) {
		int64_t n = nbdkit_parse_size(value);

		if (n < 0)
			return -1;
		if (n < (1 << 20)) {
			nbdkit_error("repagent-queue-limit must be at least 1M");
			return -1;
		}
		cfg_queue_limit = (uint64_t)n;
	} else if (strcmp(key, "repagent-ack") == 0) {
		if (strcmp(value, "async") == 0) {
			cfg_ack = RF_AGENT_ACK_ASYNC;
		} else if (strcmp(value, "durable") == 0) {
			cfg_ack = RF_AGENT_ACK_DURABLE;
		} else if (strcmp(value, "landed") == 0) {
			cfg_ack = RF_AGENT_ACK_LANDED;
		} else {
			nbdkit_error("repagent-ack '%s': async, landed or durable", value);
			return -1;
		}
	} else if (strcmp(key, "repagent-ack-timeout") == 0) {
		if (nbdkit_parse_int("repagent-ack-timeout", value, &cfg_ack_timeout_ms) == -1)
			return -1;
		if (cfg_ack_timeout_ms < 1 || cfg_ack_timeout_ms > 3600000) {
			nbdkit_error("repagent-ack-timeout must be 1 .. 3600000 ms");
			return -1;
		}
	} else if (strcmp(key, "repagent-poll-us") == 0) {
		if (nbdkit_parse_int("repagent-poll-us", value, &cfg_poll_us) == -1)
			return -1;
		if (cfg_poll_us < 0 || cfg_poll_us > 1000000) {
			nbdkit_error("repagent-poll-us must be 0 .. 1000000");
			return -1;
		}
	} else {
		return next(nxdata, key, value);
	}
	return 0;
}

/* Hostname (first label) + "-" + volume, squeezed into a valid name. */
static void default_agent_id(void)
{
	char host[256] = "";
	size_t n = 0;

	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		snprintf(host, sizeof(host), "localhost");
	host[strcspn(host, ".")] = '\0';
	for (const char *p = host; *p && n < 40; p++) {
		char ch = *p;

		agent_id[n++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		                        (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'
		                    ? ch
		                    : '_';
	}
	agent_id[n] = '\0';
	if (cfg_volume)
		snprintf(agent_id + n, sizeof(agent_id) - n, "-%.*s",
		         (int)(sizeof(agent_id) - n - 2), cfg_volume);
}

static int repagent_config_complete(nbdkit_next_config_complete *next, nbdkit_backend *nxdata)
{
	if (!cfg_hub) {
		nbdkit_error("repagent-hub=HOST:PORT (the hub's control address) is required");
		return -1;
	}
	if (!rf_agent_hub_addr_ok(cfg_hub)) {
		nbdkit_error("repagent-hub '%s' is not HOST:PORT", cfg_hub);
		return -1;
	}
	if (!cfg_bitmap && !cfg_bitmap_dir) {
		nbdkit_error("repagent-bitmap=FILE (or repagent-bitmap-dir=DIR) is required: the "
		             "dirty bitmap is what avoids a full resync after an outage");
		return -1;
	}
	if (cfg_agent_id)
		snprintf(agent_id, sizeof(agent_id), "%s", cfg_agent_id);
	else
		default_agent_id();
	if (!rf_ctl_name_ok(agent_id)) {
		nbdkit_error("cannot derive an agent id from the host name ('%s'): set "
		             "repagent-agent-id",
		             agent_id);
		return -1;
	}
	if (cfg_psk_file) {
		/* Check the key file now, so a mistake stops nbdkit at start-up. */
		struct rf_auth_keys ks;
		const struct rf_auth_key *k;
		char why[4096 + 256];
		int rc = rf_auth_keys_load(&ks, cfg_psk_file, why, sizeof(why));

		if (!rc) {
			rc = rf_auth_key_pick(&ks, agent_id, &k, why, sizeof(why));
			rf_auth_keys_free(&ks);
		}
		if (rc) {
			nbdkit_error("repagent-psk-file: %s (the agent id is '%s')", why, agent_id);
			return -1;
		}
	}
	return next(nxdata);
}

#define repagent_config_help                                                                       \
	"repagent-hub=HOST:PORT     (required) the hub's control address\n"                        \
	"repagent-bitmap=FILE       dirty bitmap of repagent-volume (or of the only export)\n"     \
	"repagent-volume=NAME       volume name of the default export (default: the export\n"      \
	"                           name the client asks for)\n"                                   \
	"repagent-bitmap-dir=DIR    bitmaps of other exports: DIR/EXPORT.bitmap\n"                 \
	"repagent-agent-id=NAME     agent id (default: HOSTNAME-VOLUME, or HOSTNAME)\n"            \
	"repagent-psk-file=FILE     key file (mode 0600) with this agent's key: authenticate\n"    \
	"                           to the hub (its psk_file) in both directions\n"                \
	"repagent-queue-limit=SIZE  write data queued for the hub before writes are only\n"        \
	"                           tracked in the bitmap (default 64M)\n"                         \
	"repagent-ack=LEVEL         async (default: never wait for the hub), landed (a write\n"    \
	"                           completes once its record is in the hub's memory) or\n"        \
	"                           durable (once the hub made it durable: RPO 0)\n"               \
	"repagent-ack-timeout=MS    landed, durable: fall back to async when a write does not\n"   \
	"                           reach its level within MS (default 5000)\n"                    \
	"repagent-poll-us=US        landed, durable: spin this long before sleeping (default 0)"

static int repagent_get_ready(int thread_model)
{
	if (thread_model != NBDKIT_THREAD_MODEL_PARALLEL) {
		nbdkit_error("repagent needs a plugin with the parallel thread model: it reads "
		             "through a second plugin context while writes are in flight");
		return -1;
	}
	return 0;
}

/* ---- volumes ----------------------------------------------------------- */

/* The agent's read callback: the background context, or a connection's. */
static int fvol_read(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	struct fvol *f = ctx;
	struct reader *r;
	int err = 0, rc = 0;

	if (f->bg) {
		if (f->bg->pread(f->bg, buf, len, off, 0, &err) < 0)
			return -(err ? err : EIO);
		return 0;
	}
	pthread_mutex_lock(&f->rlock);
	for (r = f->readers; r && r->busy; r = r->next)
		;
	if (!r) {
		pthread_mutex_unlock(&f->rlock);
		return -EAGAIN; /* no client connection open: later */
	}
	r->busy = true;
	pthread_mutex_unlock(&f->rlock);
	if (r->nx->pread(r->nx, buf, len, off, 0, &err) < 0)
		rc = -(err ? err : EIO);
	pthread_mutex_lock(&f->rlock);
	r->busy = false;
	pthread_cond_broadcast(&f->rcv);
	pthread_mutex_unlock(&f->rlock);
	return rc;
}

static void reader_add(struct fvol *f, nbdkit_next *nx)
{
	struct reader *r = calloc(1, sizeof(*r));

	if (!r)
		return; /* reads just have one context fewer */
	r->nx = nx;
	pthread_mutex_lock(&f->rlock);
	r->next = f->readers;
	f->readers = r;
	pthread_mutex_unlock(&f->rlock);
}

/* Take @nx back (the connection is finishing): wait for a read on it. */
static void reader_remove(struct fvol *f, nbdkit_next *nx)
{
	struct reader **pp, *r;

	pthread_mutex_lock(&f->rlock);
	for (pp = &f->readers; *pp && (*pp)->nx != nx; pp = &(*pp)->next)
		;
	r = *pp;
	if (r) {
		while (r->busy)
			pthread_cond_wait(&f->rcv, &f->rlock);
		for (pp = &f->readers; *pp != r; pp = &(*pp)->next)
			;
		*pp = r->next;
	}
	pthread_mutex_unlock(&f->rlock);
	free(r);
}

/* A vol_id that is the same every run for the same name. */
static uint32_t vol_id_for(const char *name)
{
	uint32_t id = rf_crc32c(0, name, strlen(name)) & 0x7fffffffu;
	bool taken;

	do {
		taken = false;
		for (struct fvol *f = fvols; f; f = f->next) {
			struct rf_agent_vol_status st;

			rf_agent_vol_status(f->vol, &st);
			if (st.vol_id == id) {
				taken = true;
				id = (id + 1) & 0x7fffffffu;
			}
		}
	} while (taken);
	return id;
}

static void fvol_free(struct fvol *f)
{
	if (f->bg) {
		f->bg->finalize(f->bg);
		nbdkit_next_context_close(f->bg);
	}
	pthread_cond_destroy(&f->rcv);
	pthread_mutex_destroy(&f->rlock);
	free(f);
}

/*
 * Register volume @name for export @export with a dirty bitmap at @bitmap.
 * With @backend (the default export, from .after_fork) a shared background
 * context is opened for sizing and reads; otherwise @size is given and the
 * reads go through the connections' contexts. Caller holds vols_lock.
 */
static struct fvol *fvol_add(nbdkit_backend *backend, int64_t size, const char *export,
                             const char *name, const char *bitmap)
{
	struct rf_agent_vol_conf conf = {.name = name, .bitmap_path = bitmap, .read = fvol_read};
	struct fvol *f = calloc(1, sizeof(*f));
	int rc;

	if (!f) {
		nbdkit_error("repagent: out of memory");
		return NULL;
	}
	snprintf(f->export, sizeof(f->export), "%s", export);
	snprintf(f->name, sizeof(f->name), "%s", name);
	pthread_mutex_init(&f->rlock, NULL);
	pthread_cond_init(&f->rcv, NULL);
	if (backend) {
		nbdkit_next *bg = nbdkit_next_context_open(backend, 1, export, 1);

		if (!bg) {
			nbdkit_error("repagent: cannot open a background context for export '%s'",
			             export);
			goto out_free;
		}
		if (bg->prepare(bg) < 0) {
			nbdkit_error("repagent: cannot prepare the background context for export "
			             "'%s'",
			             export);
			nbdkit_next_context_close(bg);
			goto out_free;
		}
		f->bg = bg;
		size = bg->get_size(bg);
	}
	if (size < 0)
		goto out_free;
	conf.size = (uint64_t)size;
	conf.vol_id = vol_id_for(name);
	conf.read_ctx = f;
	rc = rf_agent_add_volume(agent, &conf, &f->vol);
	if (rc) {
		nbdkit_error("repagent: cannot add volume %s (bitmap %s): %s", name, bitmap,
		             strerror(-rc));
		goto out_free;
	}
	rf_agent_vol_set_ack(f->vol, cfg_ack, cfg_ack_timeout_ms, cfg_poll_us);
	f->next = fvols;
	fvols = f;
	return f;
out_free:
	fvol_free(f);
	return NULL;
}

static int repagent_after_fork(nbdkit_backend *backend)
{
	struct rf_agent_opts opts = {.queue_limit = cfg_queue_limit};
	struct fvol *f = NULL;
	int rc;

	rf_log_set_sink(log_sink, NULL);
	rf_log_set_level(repagent_debug_verbose ? RF_LOG_DEBUG : RF_LOG_INFO);
	rc = rf_agent_new(&agent, cfg_hub, agent_id, &opts);
	if (rc) {
		nbdkit_error("repagent: cannot create the agent: %s", strerror(-rc));
		return -1;
	}
	if (cfg_volume) {
		char path[4096];

		if (cfg_bitmap)
			snprintf(path, sizeof(path), "%s", cfg_bitmap);
		else
			snprintf(path, sizeof(path), "%s/%s.bitmap", cfg_bitmap_dir, cfg_volume);
		pthread_mutex_lock(&vols_lock);
		f = fvol_add(backend, -1, "", cfg_volume, path);
		pthread_mutex_unlock(&vols_lock);
		if (!f)
			goto out_destroy;
	}
	if (cfg_psk_file && (rc = rf_agent_set_psk_file(agent, cfg_psk_file))) {
		nbdkit_error("repagent: repagent-psk-file %s: %s", cfg_psk_file, strerror(-rc));
		goto out_destroy;
	}
	rc = rf_agent_start(agent);
	if (rc) {
		nbdkit_error("repagent: cannot start the agent: %s", strerror(-rc));
		goto out_destroy;
	}
	nbdkit_debug("repagent: agent %s, hub %s%s%s", agent_id, cfg_hub,
	             cfg_volume ? ", volume " : "", cfg_volume ? cfg_volume : "");
	return 0;
out_destroy:
	rf_agent_destroy(&agent);
	return -1;
}

static void repagent_cleanup(nbdkit_backend *backend)
{
	rf_agent_stop(agent);
	rf_agent_destroy(&agent);
	pthread_mutex_lock(&vols_lock);
	while (fvols) {
		struct fvol *f = fvols;

		fvols = f->next;
		fvol_free(f);
	}
	pthread_mutex_unlock(&vols_lock);
	rf_log_set_sink(NULL, NULL);
}

static void repagent_unload(void)
{
	free(cfg_bitmap);
	free(cfg_psk_file);
	free(cfg_bitmap_dir);
}

/* ---- connections ------------------------------------------------------- */

/* The volume behind export @export; registered on first use, sized with
 * the connection's context @next. */
static struct fvol *volume_for(nbdkit_next *next, const char *export)
{
	const char *name = export;
	char path[4096];
	struct fvol *f;

	pthread_mutex_lock(&vols_lock);
	if (cfg_volume && (export[0] == '\0' || strcmp(export, cfg_volume) == 0))
		name = cfg_volume;
	for (f = fvols; f; f = f->next)
		if (strcmp(f->export, export) == 0 || strcmp(f->name, name) == 0)
			goto out;
	if (!rf_ctl_name_ok(name)) {
		nbdkit_error("repagent: export '%s' is not a valid volume name; set "
		             "repagent-volume=NAME for the default export",
		             export);
		goto out;
	}
	if (cfg_bitmap_dir) {
		snprintf(path, sizeof(path), "%s/%s.bitmap", cfg_bitmap_dir, name);
	} else if (cfg_bitmap && !cfg_volume && !fvols) {
		snprintf(path, sizeof(path), "%s", cfg_bitmap); /* the only export */
	} else {
		nbdkit_error("repagent: export '%s' needs a bitmap: set repagent-bitmap-dir=DIR",
		             export);
		goto out;
	}
	f = fvol_add(NULL, next->get_size(next), export, name, path);
out:
	pthread_mutex_unlock(&vols_lock);
	return f;
}

static void *repagent_open(nbdkit_next_open *next, nbdkit_context *context, int readonly,
                           const char *exportname, int is_tls)
{
	struct handle *h;

	if (strlen(exportname) > RF_CTL_MAX_NAME) {
		nbdkit_error("repagent: export name '%s' is longer than a volume name can be",
		             exportname);
		return NULL;
	}
	if (next(context, readonly, exportname) == -1)
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		nbdkit_error("repagent: out of memory");
		return NULL;
	}
	snprintf(h->export, sizeof(h->export), "%s", exportname);
	return h;
}

static int repagent_prepare(nbdkit_next *next, void *handle, int readonly)
{
	struct handle *h = handle;

	h->fv = volume_for(next, h->export);
	if (!h->fv)
		return -1;
	if (!h->fv->bg) {
		reader_add(h->fv, next);
		h->reader = next;
	}
	return 0;
}

static int repagent_finalize(nbdkit_next *next, void *handle)
{
	struct handle *h = handle;

	if (h->reader) {
		reader_remove(h->fv, h->reader);
		h->reader = NULL;
	}
	return 0;
}

static void repagent_close(void *handle)
{
	free(handle);
}

/* ---- the write path ---------------------------------------------------- */

static int begin(struct handle *h, uint32_t count, uint64_t offset, int *err)
{
	int rc = rf_agent_write_begin(h->fv->vol, offset, count);

	if (rc) {
		nbdkit_error("repagent: cannot track the write [%" PRIu64 ", +%u): %s", offset,
		             count, strerror(-rc));
		*err = -rc;
		return -1;
	}
	return 0;
}

static int repagent_pwrite(nbdkit_next *next, void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags, int *err)
{
	struct handle *h = handle;
	struct rf_agent_ticket t;
	int r;

	if (begin(h, count, offset, err))
		return -1;
	r = next->pwrite(next, buf, count, offset, flags, err);
	t = rf_agent_write_end(h->fv->vol, offset, count, buf, RF_AGENT_WRITE, r != -1);
	rf_agent_write_ack(h->fv->vol, &t); /* repagent-ack: wait for the hub, or fall back */
	return r;
}

static int repagent_zero(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
	struct handle *h = handle;
	struct rf_agent_ticket t;
	int r;

	if (begin(h, count, offset, err))
		return -1;
	r = next->zero(next, count, offset, flags, err);
	/* A failed zero (even a refused fast zero) leaves the range to be read
	 * back: it may have changed part of it. */
	t = rf_agent_write_end(h->fv->vol, offset, count, NULL, RF_AGENT_ZERO, r != -1);
	rf_agent_write_ack(h->fv->vol, &t);
	return r;
}

static int repagent_trim(nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err)
{
	struct handle *h = handle;
	int r;

	if (begin(h, count, offset, err))
		return -1;
	r = next->trim(next, count, offset, flags, err);
	rf_agent_write_end(h->fv->vol, offset, count, NULL, RF_AGENT_TRIM, r != -1);
	return r;
}

static struct nbdkit_filter filter = {
    .name = "repagent",
    .longname = "repfabric replication agent (protect mode)",
    .unload = repagent_unload,
    .config = repagent_config,
    .config_complete = repagent_config_complete,
    .config_help = repagent_config_help,
    .get_ready = repagent_get_ready,
    .after_fork = repagent_after_fork,
    .cleanup = repagent_cleanup,
    .open = repagent_open,
    .prepare = repagent_prepare,
    .finalize = repagent_finalize,
    .close = repagent_close,
    .pwrite = repagent_pwrite,
    .zero = repagent_zero,
    .trim = repagent_trim,
};

NBDKIT_REGISTER_FILTER(filter)

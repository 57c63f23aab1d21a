/* SPDX-License-Identifier: MIT */
/*
 * State layer: the configured volumes — state files, recovery images, and
 * each volume's storage stack (image, journal, test view). See volstate.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_server.h"
#include "image_io.h"
#include "journal.h"
#include "repfabric/log.h"
#include "volstate.h"

#define SUBSYS "volume"

struct volume *volume_find(struct hub *h, const char *name)
{
	for (size_t i = 0; i < h->nvols; i++)
		if (strcmp(h->vols[i].cfg->name, name) == 0)
			return &h->vols[i];
	return NULL;
}

struct volume *volume_by_vol_id(struct hub_agent *a, uint32_t vol_id, bool live)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (v->owner != a || v->vol_id != vol_id || !v->has_state)
			continue;
		if (live && !v->reported)
			continue;
		return v;
	}
	return NULL;
}

/* ---- state files -------------------------------------------------------- */

int volume_state_path(const struct volume *v, char *buf, size_t len, const char *suffix)
{
	if ((size_t)snprintf(buf, len, "%s/%s.state%s", v->hub->volumes_dir, v->cfg->name,
	                     suffix) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int volume_save_state(struct volume *v)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;
	int rc = 0;

	if (volume_state_path(v, path, sizeof(path), "") ||
	    volume_state_path(v, tmp, sizeof(tmp), ".tmp"))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f) {
		rc = -errno;
		goto out_log;
	}
	fprintf(f,
	        "# rephubd volume state (written atomically; do not edit while rephubd runs)\n"
	        "version=1\nvolume=%s\nagent=%s\nvol_id=%" PRIu32 "\nsize=%" PRIu64 "\nsynced=%d\n",
	        v->cfg->name, v->owner_id, v->vol_id, v->size, v->synced ? 1 : 0);
	if (v->failed_over)
		fprintf(f, "failed_over=1\nfailover_seq=%" PRIu64 "\n", v->failover_seq);
	if (fflush(f) || fsync(fileno(f)))
		rc = -errno;
	if (fclose(f) && !rc)
		rc = -errno;
	if (rc)
		goto out_unlink;
	if (rename(tmp, path)) {
		rc = -errno;
		goto out_unlink;
	}
	rc = image_fsync_dir(v->hub->volumes_dir);
	if (rc)
		goto out_log;
	v->has_state = true;
	return 0;
out_unlink:
	unlink(tmp);
out_log:
	RF_ERR(SUBSYS, "volume %s: cannot write its state file %s: %s", v->cfg->name, path,
	       strerror(-rc));
	return rc;
}

/* Read NAME.state; anything wrong in it means "no state" (a full sync). */
static void load_state(struct volume *v)
{
	char path[PATH_MAX], line[256];
	char owner[RF_CTL_MAX_NAME + 1] = "";
	uint64_t size = 0, vol_id = UINT64_MAX, fo_seq = 0;
	int synced = -1, version = 0, lineno = 0, failed_over = 0;
	const char *bad = NULL;
	FILE *f;

	if (volume_state_path(v, path, sizeof(path), ""))
		return;
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			RF_WARN(SUBSYS, "volume %s: cannot read %s: %s; assuming no state",
			        v->cfg->name, path, strerror(errno));
		return;
	}
	while (!bad && fgets(line, sizeof(line), f)) {
		char *eq, *val, *end;
		size_t n = strlen(line);

		lineno++;
		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		else if (!feof(f))
			bad = "over-long line";
		if (line[0] == '#' || line[0] == '\0')
			continue;
		eq = strchr(line, '=');
		if (!eq) {
			bad = "a line without '='";
			break;
		}
		*eq = '\0';
		val = eq + 1;
		errno = 0;
		if (strcmp(line, "version") == 0) {
			version = (int)strtol(val, &end, 10);
		} else if (strcmp(line, "volume") == 0) {
			if (strcmp(val, v->cfg->name) != 0)
				bad = "it names another volume";
			continue;
		} else if (strcmp(line, "agent") == 0) {
			if (!rf_ctl_name_ok(val))
				bad = "the agent is not a valid name";
			else
				strcpy(owner, val);
			continue;
		} else if (strcmp(line, "vol_id") == 0) {
			vol_id = strtoull(val, &end, 10);
		} else if (strcmp(line, "size") == 0) {
			size = strtoull(val, &end, 10);
		} else if (strcmp(line, "synced") == 0) {
			synced = (int)strtol(val, &end, 10);
		} else if (strcmp(line, "failed_over") == 0) {
			failed_over = (int)strtol(val, &end, 10);
		} else if (strcmp(line, "failover_seq") == 0) {
			fo_seq = strtoull(val, &end, 10);
		} else {
			continue; /* a newer hub's key */
		}
		if (errno || end == val || *end)
			bad = "a number that does not parse";
	}
	if (ferror(f))
		bad = "read error";
	fclose(f);
	if (!bad && version != 1)
		bad = "unknown version";
	if (!bad && (!owner[0] || vol_id > UINT32_MAX || size == 0 || size % 512 ||
	             (synced != 0 && synced != 1)))
		bad = "a missing or out-of-range field";
	if (bad) {
		RF_WARN(SUBSYS, "volume %s: ignoring %s (line %d: %s); the next sync is a full one",
		        v->cfg->name, path, lineno, bad);
		return;
	}
	strcpy(v->owner_id, owner);
	v->vol_id = (uint32_t)vol_id;
	v->size = size;
	v->synced = synced == 1;
	v->has_state = true;
	v->failed_over = failed_over == 1;
	v->failover_seq = fo_seq;
}

/* ---- recovery images ---------------------------------------------------- */

static int make_parent_dirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

static int image_size(int fd, uint64_t *size, bool *regular)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	*regular = S_ISREG(st.st_mode);
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

int volume_open_image(struct volume *v, uint64_t size, bool create, char *why, size_t whylen)
{
	const char *path = v->cfg->recovery;
	uint64_t cur = 0;
	bool regular = false, created = false;
	int rc;

	if (v->fd < 0) {
		int flags = O_RDWR | O_CLOEXEC;

		if (create) {
			rc = make_parent_dirs(path);
			if (rc) {
				snprintf(why, whylen, "cannot create the directory of %s: %s", path,
				         strerror(-rc));
				return rc;
			}
			if (access(path, F_OK) != 0) {
				flags |= O_CREAT | O_EXCL;
				created = true;
			}
		}
		v->fd = open(path, flags, 0600);
		if (v->fd < 0) {
			rc = -errno;
			snprintf(why, whylen, "cannot open recovery image %s: %s", path,
			         strerror(-rc));
			return rc;
		}
		if (created) {
			char dir[PATH_MAX], *slash;

			snprintf(dir, sizeof(dir), "%s", path);
			slash = strrchr(dir, '/');
			if (slash && slash != dir) {
				*slash = '\0';
				image_fsync_dir(dir);
			}
			RF_INFO(SUBSYS, "volume %s: created recovery image %s", v->cfg->name, path);
		}
	}
	rc = image_size(v->fd, &cur, &regular);
	if (rc) {
		snprintf(why, whylen, "%s is neither a regular file nor a block device", path);
		return rc;
	}
	if (size == 0) {
		v->size = cur;
		return 0;
	}
	if (cur == 0 && regular) {
		if (ftruncate(v->fd, (off_t)size) || fsync(v->fd)) {
			rc = -errno;
			snprintf(why, whylen, "cannot size %s to %" PRIu64 " bytes: %s", path, size,
			         strerror(-rc));
			return rc;
		}
		cur = size;
	}
	if (cur != size) {
		snprintf(why, whylen,
		         "the volume is %" PRIu64 " bytes but its recovery image %s is %" PRIu64
		         " bytes",
		         size, path, cur);
		return -EINVAL;
	}
	v->size = size;
	return 0;
}

/* ---- journals ----------------------------------------------------------- */

/* journal_time > 0: the journal in state_dir/journal/NAME. */
static int open_journal(struct volume *v)
{
	struct journal_params p = {.retain_ms = v->cfg->journal_time_ms,
	                           .retain_bytes = v->cfg->journal_size};
	char dir[PATH_MAX];
	int rc;

	if (v->cfg->journal_time_ms == 0)
		return 0;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/journal/%s", v->hub->cfg->state_dir,
	                     v->cfg->name) >= sizeof(((struct journal *)0)->dir))
		return -ENAMETOOLONG;
	v->jr = calloc(1, sizeof(*v->jr));
	if (!v->jr)
		return -ENOMEM;
	rc = journal_open(v->jr, dir, &p);
	if (rc) {
		RF_ERR("pit", "volume %s: cannot open its journal %s: %s", v->cfg->name, dir,
		       strerror(-rc));
		free(v->jr);
		v->jr = NULL;
	}
	return rc;
}

static void close_journal(struct volume *v)
{
	if (v->test)
		testview_stop(v);
	if (v->jr) {
		journal_sync(v->jr);
		journal_close(v->jr);
		free(v->jr);
		v->jr = NULL;
	}
}

/* ---- life cycle --------------------------------------------------------- */

/* A configured volume comes to life: its state file, journal and image. */
static void volume_setup(struct hub *h, struct volume *v, const struct hub_vol_config *vc)
{
	char why[PATH_MAX + 128];

	v->hub = h;
	v->cfg = vc;
	v->handle = ++h->next_handle;
	v->fd = -1;
	v->state = RF_VOL_UNKNOWN;
	load_state(v);
	open_journal(v); /* logged; without it the volume has no journal */
	if (!v->has_state)
		return;
	v->owner = agent_get(h, v->owner_id);
	v->state = RF_VOL_DISCONNECTED;
	if (access(v->cfg->recovery, F_OK) != 0) {
		RF_WARN(SUBSYS,
		        "volume %s: recovery image %s is missing; recreating it, "
		        "and the next sync is a full one",
		        v->cfg->name, v->cfg->recovery);
		v->synced = false;
		if (volume_open_image(v, v->size, true, why, sizeof(why)))
			RF_ERR(SUBSYS, "volume %s: %s", v->cfg->name, why);
		volume_save_state(v);
		return;
	}
	if (volume_open_image(v, v->size, false, why, sizeof(why))) {
		RF_WARN(SUBSYS, "volume %s: %s; the next sync is a full one", v->cfg->name, why);
		if (v->synced) {
			v->synced = false;
			volume_save_state(v);
		}
	}
}

static void volume_teardown(struct volume *v)
{
	volume_sync_clear(v);
	close_journal(v);
	if (v->fd >= 0) {
		if (fdatasync(v->fd))
			RF_ERR(SUBSYS, "volume %s: fdatasync: %s", v->cfg->name, strerror(errno));
		close(v->fd);
		v->fd = -1;
	}
}

int volumes_init(struct hub *h)
{
	h->nvols = h->cfg->nvols;
	h->vols = calloc(h->nvols ? h->nvols : 1, sizeof(*h->vols));
	if (!h->vols)
		return -ENOMEM;
	for (size_t i = 0; i < h->nvols; i++)
		volume_setup(h, &h->vols[i], &h->cfg->vols[i]);
	return 0;
}

void volumes_fini(struct hub *h)
{
	for (size_t i = 0; i < h->nvols; i++)
		volume_teardown(&h->vols[i]);
	free(h->vols);
	h->vols = NULL;
	h->nvols = 0;
}

/* May @v leave the configuration now? Not while anything refers to it. */
static const char *volume_busy(const struct volume *v)
{
	const struct hub_agent *a = v->owner;
	struct rf_ring_scan_result res;

	if (v->test)
		return "a failover test runs on it";
	if (a && agent_live(a))
		return "its agent is connected";
	if (v->jr) {
		struct journal_info in;

		journal_get_info(v->jr, &in);
		if (in.entries)
			return "its journal holds points not applied to the image yet";
	}
	if (!a)
		return NULL;
	if (a->ring_broken || (!a->ring && access(a->ring_path, F_OK) == 0))
		return "its agent's ring cannot be read";
	/* Anything the agent's ring still holds may be for this volume. */
	if (a->ring && (rf_ring_scan(a->ring, &res) || res.records))
		return "its agent's ring still holds records not applied";
	return NULL;
}

/* Two volumes of @nc on one recovery image? Names them in @why. */
static bool shared_image(const struct hub_config *nc, char *why, size_t whylen)
{
	for (size_t i = 0; i < nc->nvols; i++)
		for (size_t j = i + 1; j < nc->nvols; j++)
			if (!strcmp(nc->vols[i].recovery, nc->vols[j].recovery)) {
				snprintf(why, whylen, "volumes %s and %s would share the image %s",
				         nc->vols[i].name, nc->vols[j].name, nc->vols[i].recovery);
				return true;
			}
	return false;
}

int volumes_reload(struct hub *h, struct hub_config *nc, struct volumes_reload_stats *st)
{
	char why[2 * PATH_MAX + 160];
	struct volume *nv;
	bool *moved;
	size_t n;

	memset(st, 0, sizeof(*st));
	/* A volume that is dropped but busy stays, with its running settings. */
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];
		const char *busy;
		struct hub_vol_config *grown;

		if (hub_config_volume(nc, v->cfg->name))
			continue;
		busy = volume_busy(v);
		if (!busy)
			continue;
		grown = realloc(nc->vols, (nc->nvols + 1) * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		nc->vols = grown;
		nc->vols[nc->nvols++] = *v->cfg;
		RF_WARN(SUBSYS, "reload: volume %s is no longer configured, but %s: kept",
		        v->cfg->name, busy);
		st->kept++;
	}
	/* What a running volume is built on stays as it is. */
	for (size_t j = 0; j < nc->nvols; j++) {
		struct hub_vol_config *vc = &nc->vols[j];
		const struct volume *old = volume_find(h, vc->name);

		if (!old)
			continue;
		if (strcmp(old->cfg->recovery, vc->recovery))
			RF_WARN(SUBSYS,
			        "reload: volume %s: recovery %s -> %s needs a restart; keeping %s",
			        vc->name, old->cfg->recovery, vc->recovery, old->cfg->recovery);
		if (old->cfg->journal_time_ms != vc->journal_time_ms ||
		    old->cfg->journal_size != vc->journal_size)
			RF_WARN(SUBSYS,
			        "reload: volume %s: journal_time/journal_size changes need a "
			        "restart; keeping the running ones",
			        vc->name);
		if (strcmp(old->cfg->agent, vc->agent))
			RF_INFO(SUBSYS,
			        "reload: volume %s: agent '%s' -> '%s' (from its next report)",
			        vc->name, old->cfg->agent, vc->agent);
		snprintf(vc->recovery, sizeof(vc->recovery), "%s", old->cfg->recovery);
		vc->journal_time_ms = old->cfg->journal_time_ms;
		vc->journal_size = old->cfg->journal_size;
	}
	/* The file was checked alone; with the kept paths two may now clash. */
	if (shared_image(nc, why, sizeof(why))) {
		RF_ERR(SUBSYS, "reload refused: %s; nothing changed", why);
		return -EINVAL;
	}
	n = nc->nvols;
	nv = calloc(n ? n : 1, sizeof(*nv));
	moved = calloc(h->nvols ? h->nvols : 1, sizeof(*moved));
	if (!nv || !moved) {
		free(nv);
		free(moved);
		return -ENOMEM;
	}
	for (size_t j = 0; j < n; j++) {
		struct hub_vol_config *vc = &nc->vols[j];
		struct volume *old = volume_find(h, vc->name);

		if (!old) {
			RF_INFO(SUBSYS, "reload: volume %s added (recovery %s)", vc->name,
			        vc->recovery);
			volume_setup(h, &nv[j], vc);
			st->added++;
			continue;
		}
		nv[j] = *old;
		nv[j].cfg = vc;
		moved[old - h->vols] = true;
	}
	for (size_t i = 0; i < h->nvols; i++) {
		if (moved[i])
			continue;
		RF_INFO(SUBSYS, "reload: volume %s removed", h->vols[i].cfg->name);
		/* Added back later, it starts with a full sync: what its agent
		 * did meanwhile is not known to be in the image. */
		if (h->vols[i].has_state && h->vols[i].synced) {
			h->vols[i].synced = false;
			volume_save_state(&h->vols[i]);
		}
		volume_teardown(&h->vols[i]);
		st->removed++;
	}
	free(moved);
	free(h->vols);
	h->vols = nv;
	h->nvols = n;
	return 0;
}

void volume_set_state(struct volume *v, enum rf_vol_state st, bool notify)
{
	struct rf_ctl_volume_state m;
	uint8_t buf[32];
	int n;

	if (v->state != st)
		RF_INFO(SUBSYS, "volume %s: %s -> %s", v->cfg->name, rf_vol_state_name(v->state),
		        rf_vol_state_name(st));
	v->state = st;
	if (!notify || !v->owner || !v->owner->conn || !v->reported)
		return;
	m.vol_id = v->vol_id;
	m.state = (uint8_t)st;
	m.synced_bytes = volume_synced_bytes(v);
	n = rf_ctl_enc_volume_state(buf, sizeof(buf), &m);
	if (n > 0)
		ctl_send(v->owner->conn, RF_CTL_VOLUME_STATE, 0, buf, (uint32_t)n);
}

uint64_t volume_synced_bytes(const struct volume *v)
{
	if (v->sync.active)
		return v->sync.synced_bytes;
	if (v->state == RF_VOL_PROTECTED || v->synced)
		return v->size;
	return 0;
}

void volume_sync_clear(struct volume *v)
{
	free(v->sync.cstate);
	free(v->sync.posted);
	memset(&v->sync, 0, sizeof(v->sync));
}

/* ---- failover test views -------------------------------------------------- */

uint64_t testview_seq(const struct volume *v)
{
	return v->test ? v->test->seq : 0;
}

int testview_start(struct volume *v, uint64_t seq, int64_t time_ms, char *why, size_t whylen)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int rc;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/tests", v->hub->cfg->state_dir) >= sizeof(dir) ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s.scratch", dir, v->cfg->name) >=
	        sizeof(path)) {
		snprintf(why, whylen, "the scratch path is too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(dir, 0750) && errno != EEXIST) {
		rc = -errno;
		snprintf(why, whylen, "cannot create %s: %s", dir, strerror(-rc));
		return rc;
	}
	rc = apply_view_open(&v->test, path, v->fd, v->jr, v->size, seq, time_ms, why, whylen);
	if (rc)
		return rc;
	v->jr->paused = true;
	return 0;
}

void testview_stop(struct volume *v)
{
	struct test_view *t = v->test;

	if (!t)
		return;
	RF_INFO("test",
	        "volume %s: test at seq %" PRIu64 " ends: %" PRIu64 " reads (%" PRIu64
	        " bytes), %" PRIu64 " writes (%" PRIu64 " bytes) discarded",
	        v->cfg->name, t->seq, t->reads, t->read_bytes, t->writes, t->write_bytes);
	apply_view_close(&v->test);
	if (v->jr)
		v->jr->paused = false;
}

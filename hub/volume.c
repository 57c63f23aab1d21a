/* SPDX-License-Identifier: MIT */
/*
 * Volumes: the configured recovery images, VOLUME_REPORT, and the state
 * file state_dir/volumes/NAME.state (owner agent, its vol_id, size, whether
 * a full sync with that agent completed), written atomically (tmp file,
 * fsync, rename, fsync of the directory).
 *
 * The state file is written before VOLUME_OK is sent, so every record an
 * agent can post for a volume has its vol_id mapping on disk: a hub that
 * restarts drains the rings with it before any agent reconnects.
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

#include "hub.h"
#include "journal.h"
#include "repfabric/log.h"

#define SUBSYS "volume"

struct volume *volume_find(struct hub *h, const char *name)
{
	for (size_t i = 0; i < h->nvols; i++)
		if (strcmp(h->vols[i].cfg->name, name) == 0)
			return &h->vols[i];
	return NULL;
}

struct volume *volume_by_vol_id(struct agent *a, uint32_t vol_id, bool live)
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

static int state_path(const struct volume *v, char *buf, size_t len, const char *suffix)
{
	if ((size_t)snprintf(buf, len, "%s/%s.state%s", v->hub->volumes_dir, v->cfg->name,
	                     suffix) >= len)
		return -ENAMETOOLONG;
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd))
		rc = -errno;
	close(fd);
	return rc;
}

int volume_save_state(struct volume *v)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	FILE *f;
	int rc = 0;

	if (state_path(v, path, sizeof(path), "") || state_path(v, tmp, sizeof(tmp), ".tmp"))
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
	rc = fsync_dir(v->hub->volumes_dir);
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

	if (state_path(v, path, sizeof(path), ""))
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
				fsync_dir(dir);
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
	pit_volume_init(v); /* logged; without it the volume has no journal */
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
	sync_stop(v);
	pit_volume_fini(v);
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
	const struct agent *a = v->owner;
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
	m.synced_bytes = sync_synced_bytes(v);
	n = rf_ctl_enc_volume_state(buf, sizeof(buf), &m);
	if (n > 0)
		ctl_send(v->owner->conn, RF_CTL_VOLUME_STATE, 0, buf, (uint32_t)n);
}

void volume_agent_gone(struct agent *a)
{
	struct hub *h = a->hub;

	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *v = &h->vols[i];

		if (v->owner != a || !v->reported)
			continue;
		if (v->sync.active)
			RF_INFO(SUBSYS,
			        "volume %s: initial sync interrupted; it restarts when the "
			        "agent is back",
			        v->cfg->name);
		sync_stop(v);
		v->reported = false;
		volume_set_state(v, RF_VOL_DISCONNECTED, false);
	}
}

/* ---- VOLUME_REPORT ------------------------------------------------------ */

static void send_ok(struct ctl_conn *c, uint64_t req_id, struct volume *v, uint8_t sync)
{
	struct rf_ctl_volume_ok ok = {.vol_id = v->vol_id,
	                              .state = (uint8_t)v->state,
	                              .sync = sync,
	                              .resync_rate = v->hub->cfg->resync_rate};
	uint8_t buf[32];
	int n = rf_ctl_enc_volume_ok(buf, sizeof(buf), &ok);

	if (n > 0)
		ctl_send(c, RF_CTL_VOLUME_OK, req_id, buf, (uint32_t)n);
}

/* needs_hello: the dispatcher refuses a VOLUME_REPORT before HELLO (EPERM). */
int volume_report(struct ctl_conn *c, const struct ctl_request *rq, struct ctl_reply *r)
{
	struct hub *h = c->hub;
	struct agent *a = c->agent;
	const struct rf_ctl_volume_report m = rq->m->volume_report;
	uint64_t req_id = rq->req_id;
	char reason[PATH_MAX + 256];
	struct volume *v;
	bool full;
	int rc;

	v = volume_find(h, m.name);
	if (!v)
		return ctl_fail(r, ENOENT, "no volume named '%s' in the hub's configuration",
		                m.name);
	if (v->cfg->agent[0] && strcmp(v->cfg->agent, a->id) != 0) {
		RF_WARN(SUBSYS, "agent %s reported volume %s, which belongs to agent %s: refused",
		        a->id, m.name, v->cfg->agent);
		return ctl_fail(r, EACCES,
		                "volume '%s' belongs to agent '%s' (the hub's configuration)",
		                m.name, v->cfg->agent);
	}
	if (v->owner == a && v->reported) {
		if (v->vol_id == m.vol_id && v->size == m.size) {
			/* A repeat: answer the same, change nothing. */
			send_ok(c, req_id, v, v->sync.active ? RF_SYNC_FULL : RF_SYNC_NONE);
			return 0;
		}
		return ctl_fail(r, EEXIST,
		                "volume '%s' was already reported in this session as vol_id %u",
		                m.name, v->vol_id);
	}
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *o = &h->vols[i];

		if (o != v && o->owner == a && o->reported && o->vol_id == m.vol_id)
			return ctl_fail(r, EEXIST, "vol_id %u is already volume '%s'", m.vol_id,
			                o->cfg->name);
	}
	if (v->failed_over)
		return ctl_fail(r, EPERM,
		                "volume '%s' was failed over at seq %" PRIu64 ": the hub no longer "
		                "accepts it (its recovery image %s is the volume now; remove "
		                "%s/%s.state to protect it again)",
		                m.name, v->failover_seq, v->cfg->recovery, h->volumes_dir, m.name);
	if (v->owner && v->owner != a && agent_live(v->owner) && v->reported)
		return ctl_fail(r, EBUSY, "volume '%s' is protected by agent '%s'", m.name,
		                v->owner->id);
	rc = volume_open_image(v, m.size, true, reason, sizeof(reason));
	if (rc)
		return ctl_fail(r, rc == -EINVAL ? EINVAL : EIO, "%s", reason);
	if (v->owner && v->owner != a) {
		/* Whatever the previous owner's ring still holds for it goes first. */
		struct agent *old = v->owner;

		while (drain_agent(old, DRAIN_OFFLINE) > 0)
			;
		RF_INFO(SUBSYS, "volume %s: moves from agent %s to agent %s", m.name, old->id,
		        a->id);
		rc = pit_owner_change(v);
		if (rc)
			return ctl_fail(r, EIO,
			                "cannot apply the journal of '%s' before the move: %s",
			                m.name, strerror(-rc));
	}
	/* An older mapping of this agent's vol_id (not reported now) is void. */
	for (size_t i = 0; i < h->nvols; i++) {
		struct volume *o = &h->vols[i];

		if (o != v && o->owner == a && o->has_state && o->vol_id == m.vol_id) {
			RF_INFO(SUBSYS, "volume %s: agent %s reuses its vol_id %u; forgetting it",
			        o->cfg->name, a->id, m.vol_id);
			o->owner = NULL;
			o->owner_id[0] = '\0';
			o->synced = false;
			o->has_state = false;
			o->state = RF_VOL_UNKNOWN;
			{
				char sp[PATH_MAX];

				if (!state_path(o, sp, sizeof(sp), ""))
					unlink(sp);
			}
		}
	}
	full =
	    !(v->has_state && v->synced && strcmp(v->owner_id, a->id) == 0 && m.bitmap_valid == 1);
	snprintf(v->owner_id, sizeof(v->owner_id), "%s", a->id);
	v->owner = a;
	v->vol_id = m.vol_id;
	v->size = m.size;
	if (full)
		v->synced = false;
	rc = volume_save_state(v);
	if (rc)
		return ctl_fail(r, EIO, "the hub cannot record the volume's state: %s",
		                strerror(-rc));
	v->reported = true;
	v->reported_session = a->session;
	v->dirty_bytes = 0;
	sync_stop(v);
	if (full) {
		rc = sync_start(v);
		if (rc) {
			v->reported = false;
			return ctl_fail(r, ENOMEM, "out of memory for the sync of '%s'", m.name);
		}
		volume_set_state(v, RF_VOL_SYNCING, false);
	} else {
		/* Until its PROGRESS says nothing waits to be resent. */
		resync_begin(v, "reconnect", false);
	}
	RF_INFO(SUBSYS, "volume %s: reported by agent %s as vol_id %u, %" PRIu64 " bytes, %s",
	        m.name, a->id, m.vol_id, m.size,
	        full ? (m.bitmap_valid ? "full sync (no completed sync with this agent)"
	                               : "full sync (the agent's bitmap is not valid)")
	             : "in sync (the agent resends its dirty regions)");
	send_ok(c, req_id, v, full ? RF_SYNC_FULL : RF_SYNC_NONE);
	return 0;
}

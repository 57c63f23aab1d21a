/* SPDX-License-Identifier: MIT */
/*
 * rephubd configuration: an INI file read with libinih and checked against
 * one table of keys (section, name, default, bounds, validator). Every
 * problem is collected as "FILE:LINE: key 'K' in [SECTION]: reason" in
 * cfg->errors; nothing is printed. Keys and their meaning: docs/CONFIG.md.
 */
#ifndef REPHUB_CONFIG_H
#define REPHUB_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "repfabric/ctl.h"
#include "repfabric/log.h"

struct hub_vol_config {
	char name[RF_CTL_MAX_NAME + 1];
	char recovery[PATH_MAX];         /* the recovery image (absolute path) */
	uint64_t journal_time_ms;        /* retention window; 0 = no journal */
	uint64_t journal_size;           /* retention bytes */
	char agent[RF_CTL_MAX_NAME + 1]; /* "" = any agent; else only this one may report it */
	int line;                        /* line of the [volume NAME] header */
	unsigned seen;                   /* bit per table key: set in the file */
	int seen_line[32];
};

/* Where a record becomes durable (docs/DURABILITY.md). */
enum hub_durability {
	HUB_DURABLE_AUTO = 0, /* in the ring when libpmem says it is pmem, else applied */
	HUB_DURABLE_PMEM,     /* in the ring, always (hardware libpmem cannot detect) */
	HUB_DURABLE_APPLY,    /* applied to the image or journal and synced */
};

/* "auto", "pmem", "apply". */
const char *hub_durability_name(enum hub_durability d);

struct hub_config {
	char path[PATH_MAX]; /* the file, as given */
	char control[256];   /* HOST:PORT of the control channel */
	char data[RF_CTL_MAX_TEXT + 1];
	char state_dir[PATH_MAX];
	char ring_dir[PATH_MAX]; /* "" = state_dir/rings */
	uint64_t ring_size;      /* data area bytes of each agent's ring */
	uint64_t sync_rate;      /* bytes per second per volume, 0 = unlimited */
	uint64_t resync_rate;    /* the agent's resends, bytes/s per volume, 0 = unlimited */
	enum rf_log_level log_level;
	char metrics[256];             /* HOST:PORT of the Prometheus endpoint, "" = off */
	char psk_file[PATH_MAX];       /* the control channel's keys; "" = no authentication */
	uint64_t handshake_timeout_ms; /* an unproven connection is closed after this */
	uint64_t max_pending;          /* unproven connections held per listener */
	uint64_t durability;           /* enum hub_durability */
	uint64_t poll_us; /* busy-poll this long before sleeping, while records arrive */

	struct hub_vol_config *vols;
	size_t nvols;

	int hub_line; /* line of the [hub] header, 0 when absent */
	unsigned hub_seen;
	int hub_seen_line[32];

	char **errors; /* one message per problem */
	size_t nerrors;
};

/*
 * Read and check @path into @cfg (zeroed first). Returns 0, or -EINVAL when
 * the file has problems (each listed in cfg->errors), or -errno when it
 * cannot be read (also listed). Free with hub_config_free() in every case.
 */
int hub_config_load(struct hub_config *cfg, const char *path);
void hub_config_free(struct hub_config *cfg);

/* The volume named @name, or NULL. */
const struct hub_vol_config *hub_config_volume(const struct hub_config *cfg, const char *name);

/*
 * Parse a size: digits with an optional K, M, G or T suffix (powers of
 * 1024, case-insensitive). Returns 0 or -EINVAL (@why says what is wrong).
 */
int hub_parse_size(const char *s, uint64_t *out, const char **why);

/* Check "HOST:PORT" (a name, an IPv4 address or [IPv6]). 0 or -EINVAL. */
int hub_check_hostport(const char *s, char *why, size_t whylen);

#endif /* REPHUB_CONFIG_H */

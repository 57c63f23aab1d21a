/* SPDX-License-Identifier: MIT */
/*
 * rephubd configuration: see config.h and docs/CONFIG.md.
 *
 * libinih does the INI syntax; a reader of our own feeds it one line at a
 * time so we know the line number of every key, see every section header
 * (inih reports only keys) and can refuse over-long lines instead of having
 * them split. Leading blanks are stripped before inih sees a line, so
 * indentation is allowed and inih's multi-line continuation never applies.
 */
#include <errno.h>
#include <ini.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "repfabric/auth.h"
#include "repfabric/fabric.h"
#include "repfabric/ring.h"

#define SIZE_1M (1ull << 20)
#define SIZE_1T (1ull << 40)

enum cfg_section {
	SEC_NONE,    /* before any header */
	SEC_HUB,     /* [hub] */
	SEC_VOLUME,  /* [volume NAME] */
	SEC_INVALID, /* a header we refused: its keys are skipped */
};

struct cfg_key;
typedef int (*cfg_setter)(const struct cfg_key *k, const char *val, void *dst, char *why,
                          size_t whylen);

/* One configuration key. */
struct cfg_key {
	const char *name;
	enum cfg_section section;
	const char *def; /* NULL: required */
	uint64_t min, max, multiple;
	size_t off;  /* offset in struct hub_config or struct hub_vol_config */
	size_t size; /* capacity of a string field */
	cfg_setter set;
};

static int set_hostport(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen);
static int set_opt_hostport(const struct cfg_key *k, const char *val, void *dst, char *why,
                            size_t whylen);
static int set_url(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_dir(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_ring_dir(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen);
static int set_image(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_size(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_level(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_duration(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen);
static int set_psk_file(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen);
static int set_opt_name(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen);
static int set_count(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen);
static int set_durability(const struct cfg_key *k, const char *val, void *dst, char *why,
                          size_t whylen);

#define HUB_STR(f) offsetof(struct hub_config, f), sizeof(((struct hub_config *)0)->f)
#define HUB_NUM(f) offsetof(struct hub_config, f), 0
#define VOL_STR(f) offsetof(struct hub_vol_config, f), sizeof(((struct hub_vol_config *)0)->f)
#define VOL_NUM(f) offsetof(struct hub_vol_config, f), 0
#define DAY_MS     (86400ull * 1000)

/* The table. Keep docs/CONFIG.md in step with it. */
static const struct cfg_key keys[] = {
    {"control", SEC_HUB, "127.0.0.1:7470", 0, 0, 0, HUB_STR(control), set_hostport},
    {"data", SEC_HUB, "tcp://127.0.0.1:7471", 0, 0, 0, HUB_STR(data), set_url},
    {"state_dir", SEC_HUB, "/var/lib/rephub", 0, 0, 0, HUB_STR(state_dir), set_dir},
    {"ring_dir", SEC_HUB, "", 0, 0, 0, HUB_STR(ring_dir), set_ring_dir},
    {"ring_size", SEC_HUB, "64M", SIZE_1M, RF_RING_MAX_DATA_SIZE, RF_RING_ALIGN, HUB_NUM(ring_size),
     set_size},
    {"sync_rate", SEC_HUB, "0", 0, SIZE_1T, 1, HUB_NUM(sync_rate), set_size},
    {"resync_rate", SEC_HUB, "0", 0, SIZE_1T, 1, HUB_NUM(resync_rate), set_size},
    {"log_level", SEC_HUB, "info", 0, 0, 0, HUB_NUM(log_level), set_level},
    {"metrics", SEC_HUB, "", 0, 0, 0, HUB_STR(metrics), set_opt_hostport},
    {"psk_file", SEC_HUB, "", 0, 0, 0, HUB_STR(psk_file), set_psk_file},
    {"handshake_timeout", SEC_HUB, "5s", 100, 300 * 1000, 0, HUB_NUM(handshake_timeout_ms),
     set_duration},
    {"max_pending", SEC_HUB, "64", 1, 65536, 0, HUB_NUM(max_pending), set_count},
    {"durability", SEC_HUB, "auto", 0, 0, 0, HUB_NUM(durability), set_durability},
    {"poll_us", SEC_HUB, "0", 0, 100000, 0, HUB_NUM(poll_us), set_count},
    {"recovery", SEC_VOLUME, NULL, 0, 0, 0, VOL_STR(recovery), set_image},
    {"journal_time", SEC_VOLUME, "0", 0, 365 * DAY_MS, 0, VOL_NUM(journal_time_ms), set_duration},
    {"journal_size", SEC_VOLUME, "1G", SIZE_1M, SIZE_1T, 1, VOL_NUM(journal_size), set_size},
    {"agent", SEC_VOLUME, "", 0, 0, 0, VOL_STR(agent), set_opt_name},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= 32, "seen_line[] in config.h holds 32 keys");

/* ---- messages ---------------------------------------------------------- */

static void add_error(struct hub_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_error(struct hub_config *cfg, const char *fmt, ...)
{
	char **n;
	char *msg;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return;
	n = realloc(cfg->errors, (cfg->nerrors + 1) * sizeof(*n));
	if (!n) {
		free(msg);
		return;
	}
	cfg->errors = n;
	cfg->errors[cfg->nerrors++] = msg;
}

/* "FILE:LINE: " or "FILE: " when the line is unknown (a default value). */
static const char *where(const struct hub_config *cfg, int line, char *buf, size_t len)
{
	if (line > 0)
		snprintf(buf, len, "%s:%d", cfg->path, line);
	else
		snprintf(buf, len, "%s", cfg->path);
	return buf;
}

/* ---- value parsers ------------------------------------------------------ */

int hub_parse_size(const char *s, uint64_t *out, const char **why)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (*p < '0' || *p > '9') {
		*why = "not a size (digits with an optional K, M, G or T suffix)";
		return -EINVAL;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
			*why = "size too large";
			return -EINVAL;
		}
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = 1ull << 10;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		break;
	default:
		*why = "not a size (digits with an optional K, M, G or T suffix)";
		return -EINVAL;
	}
	if (*p && p[1] != '\0') {
		*why = "not a size (digits with an optional K, M, G or T suffix)";
		return -EINVAL;
	}
	if (v > UINT64_MAX / mult) {
		*why = "size too large";
		return -EINVAL;
	}
	*out = v * mult;
	return 0;
}

int hub_check_hostport(const char *s, char *why, size_t whylen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
	                *ai = NULL;
	const char *colon, *h = s, *hend;
	char host[256], port[16];
	long pn;
	char *end;
	int rc;

	if (s[0] == '[') {
		hend = strchr(s, ']');
		if (!hend || hend[1] != ':') {
			snprintf(why, whylen, "'%s' is not HOST:PORT ([IPv6]:PORT for IPv6)", s);
			return -EINVAL;
		}
		h = s + 1;
		colon = hend + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon) {
			snprintf(why, whylen, "'%s' is not HOST:PORT ([IPv6]:PORT for IPv6)", s);
			return -EINVAL;
		}
		hend = colon;
	}
	if (hend == h || (size_t)(hend - h) >= sizeof(host)) {
		snprintf(why, whylen, "'%s': missing or over-long host", s);
		return -EINVAL;
	}
	errno = 0;
	pn = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end || errno || pn < 1 || pn > 65535) {
		snprintf(why, whylen, "'%s': the port must be a number in 1..65535", s);
		return -EINVAL;
	}
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	snprintf(port, sizeof(port), "%ld", pn);
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		snprintf(why, whylen, "'%s': cannot resolve host '%s': %s", s, host,
		         gai_strerror(rc));
		return -EINVAL;
	}
	freeaddrinfo(ai);
	return 0;
}

/* Copy a string value into its field. */
static int store_str(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	if (strlen(val) >= k->size) {
		snprintf(why, whylen, "value longer than %zu characters", k->size - 1);
		return -EINVAL;
	}
	strcpy((char *)dst + k->off, val);
	return 0;
}

static int set_hostport(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen)
{
	if (hub_check_hostport(val, why, whylen))
		return -EINVAL;
	return store_str(k, val, dst, why, whylen);
}

/* psk_file: empty means no authentication; else a key file that loads. */
static int set_psk_file(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen)
{
	struct rf_auth_keys ks;

	if (val[0] == '\0')
		return store_str(k, val, dst, why, whylen);
	if (val[0] != '/') {
		snprintf(why, whylen, "'%s' is not an absolute path", val);
		return -EINVAL;
	}
	if (rf_auth_keys_load(&ks, val, why, whylen))
		return -EINVAL;
	rf_auth_keys_free(&ks);
	return store_str(k, val, dst, why, whylen);
}

/* agent: empty (any agent may report the volume) or an agent id. */
static int set_opt_name(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen)
{
	if (val[0] && !rf_ctl_name_ok(val)) {
		snprintf(why, whylen, "'%s' is not 1..64 of [A-Za-z0-9._-]", val);
		return -EINVAL;
	}
	return store_str(k, val, dst, why, whylen);
}

/* metrics: empty means off; otherwise HOST:PORT like control. */
static int set_opt_hostport(const struct cfg_key *k, const char *val, void *dst, char *why,
                            size_t whylen)
{
	if (val[0] == '\0')
		return store_str(k, val, dst, why, whylen);
	return set_hostport(k, val, dst, why, whylen);
}

/* The same rules as rf_fab_url_check(), with our own message (it logs its own). */
static int set_url(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	const char *sep = strstr(val, "://"), *addr;
	size_t sl = sep ? (size_t)(sep - val) : 0;

	if (!sep || sl == 0) {
		snprintf(why, whylen,
		         "'%s' is not a transport URL (rdma://IP:PORT, tcp://HOST:PORT or "
		         "shm:///PATH)",
		         val);
		return -EINVAL;
	}
	addr = sep + 3;
	if (sl == 3 && strncmp(val, "shm", 3) == 0) {
		if (addr[0] != '/' || addr[1] == '\0') {
			snprintf(why, whylen,
			         "'%s': shm needs an absolute socket path (shm:///PATH)", val);
			return -EINVAL;
		}
		if (strlen(addr) >= 108) {
			snprintf(why, whylen, "'%s': the socket path is longer than 107 bytes",
			         val);
			return -EINVAL;
		}
	} else if ((sl == 3 && strncmp(val, "tcp", 3) == 0) ||
	           (sl == 4 && strncmp(val, "rdma", 4) == 0)) {
		char inner[160];

		if (hub_check_hostport(addr, inner, sizeof(inner))) {
			snprintf(why, whylen, "'%s': %s", val, inner);
			return -EINVAL;
		}
	} else {
		snprintf(why, whylen, "'%s': unknown transport '%.*s' (rdma, tcp or shm)", val,
		         (int)sl, val);
		return -EINVAL;
	}
	if (rf_fab_url_check(val)) {
		snprintf(why, whylen, "'%s' is not a valid transport URL", val);
		return -EINVAL;
	}
	return store_str(k, val, dst, why, whylen);
}

/*
 * Can @path be created? Walk up to the nearest existing ancestor, which must
 * be a writable directory.
 */
static int check_creatable(const char *path, char *why, size_t whylen)
{
	char buf[PATH_MAX];
	struct stat st;
	char *slash;

	snprintf(buf, sizeof(buf), "%s", path);
	for (;;) {
		slash = strrchr(buf, '/');
		if (!slash)
			return -EINVAL;
		if (slash == buf)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (stat(buf, &st) == 0)
			break;
		if (errno != ENOENT && errno != ENOTDIR) {
			snprintf(why, whylen, "'%s' cannot be created: %s: %s", path, buf,
			         strerror(errno));
			return -EINVAL;
		}
		if (strcmp(buf, "/") == 0)
			return -EINVAL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "'%s' cannot be created: %s is not a directory", path, buf);
		return -EINVAL;
	}
	if (access(buf, W_OK | X_OK)) {
		snprintf(why, whylen, "'%s' cannot be created: %s is not writable: %s", path, buf,
		         strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int check_absolute(const char *val, char *why, size_t whylen)
{
	if (val[0] != '/') {
		snprintf(why, whylen, "'%s' is not an absolute path", val);
		return -EINVAL;
	}
	return 0;
}

static int set_dir(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	struct stat st;

	if (check_absolute(val, why, whylen))
		return -EINVAL;
	if (stat(val, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			snprintf(why, whylen, "'%s' exists and is not a directory", val);
			return -EINVAL;
		}
		if (access(val, R_OK | W_OK | X_OK)) {
			snprintf(why, whylen, "'%s' is not writable: %s", val, strerror(errno));
			return -EINVAL;
		}
	} else if (errno != ENOENT && errno != ENOTDIR) {
		snprintf(why, whylen, "'%s': %s", val, strerror(errno));
		return -EINVAL;
	} else if (check_creatable(val, why, whylen)) {
		return -EINVAL;
	}
	return store_str(k, val, dst, why, whylen);
}

/* ring_dir: empty means state_dir/rings; otherwise a directory like state_dir. */
static int set_ring_dir(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen)
{
	if (val[0] == '\0')
		return store_str(k, val, dst, why, whylen);
	return set_dir(k, val, dst, why, whylen);
}

static int set_image(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	struct stat st;
	size_t n = strlen(val);

	if (check_absolute(val, why, whylen))
		return -EINVAL;
	if (n == 0 || val[n - 1] == '/') {
		snprintf(why, whylen, "'%s' names a directory, not an image file", val);
		return -EINVAL;
	}
	if (stat(val, &st) == 0) {
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
			snprintf(why, whylen, "'%s' is neither a regular file nor a block device",
			         val);
			return -EINVAL;
		}
		if (access(val, R_OK | W_OK)) {
			snprintf(why, whylen, "'%s' is not readable and writable: %s", val,
			         strerror(errno));
			return -EINVAL;
		}
	} else if (errno != ENOENT && errno != ENOTDIR) {
		snprintf(why, whylen, "'%s': %s", val, strerror(errno));
		return -EINVAL;
	} else if (check_creatable(val, why, whylen)) {
		return -EINVAL;
	}
	return store_str(k, val, dst, why, whylen);
}

static int set_size(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	const char *w = NULL;
	uint64_t v;

	if (hub_parse_size(val, &v, &w)) {
		snprintf(why, whylen, "'%s' is %s", val, w);
		return -EINVAL;
	}
	if (v < k->min || v > k->max) {
		snprintf(why, whylen, "'%s' is out of bounds (%llu..%llu bytes)", val,
		         (unsigned long long)k->min, (unsigned long long)k->max);
		return -EINVAL;
	}
	if (k->multiple > 1 && v % k->multiple) {
		snprintf(why, whylen, "'%s' is not a multiple of %llu bytes", val,
		         (unsigned long long)k->multiple);
		return -EINVAL;
	}
	*(uint64_t *)((char *)dst + k->off) = v;
	return 0;
}

static int set_level(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	enum rf_log_level lvl;

	if (rf_log_level_parse(val, &lvl)) {
		snprintf(why, whylen, "'%s' is not a log level (err, warn, info or debug)", val);
		return -EINVAL;
	}
	*(enum rf_log_level *)((char *)dst + k->off) = lvl;
	return 0;
}

/* "0", or digits with ms, s, m, h or d (no suffix: seconds); stored as ms. */
static int set_duration(const struct cfg_key *k, const char *val, void *dst, char *why,
                        size_t whylen)
{
	uint64_t v = 0, mult = 1000;
	const char *p = val;

	if (*p < '0' || *p > '9')
		goto bad;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX / 1000 - (uint64_t)(*p - '0')) / 10)
			goto big;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (strcmp(p, "ms") == 0)
		mult = 1;
	else if (strcmp(p, "s") == 0 || *p == '\0')
		mult = 1000;
	else if (strcmp(p, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(p, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(p, "d") == 0)
		mult = DAY_MS;
	else
		goto bad;
	if (v > k->max / mult || v * mult < k->min)
		goto big;
	*(uint64_t *)((char *)dst + k->off) = v * mult;
	return 0;
big:
	if (k->max >= DAY_MS)
		snprintf(why, whylen, "'%s' is out of bounds (0..%llu days)", val,
		         (unsigned long long)(k->max / DAY_MS));
	else
		snprintf(why, whylen, "'%s' is out of bounds (%llums..%llus)", val,
		         (unsigned long long)k->min, (unsigned long long)(k->max / 1000));
	return -EINVAL;
bad:
	snprintf(why, whylen, "'%s' is not a duration (digits with ms, s, m, h or d)", val);
	return -EINVAL;
}

const char *hub_durability_name(enum hub_durability d)
{
	return d == HUB_DURABLE_PMEM ? "pmem" : d == HUB_DURABLE_APPLY ? "apply" : "auto";
}

static int set_durability(const struct cfg_key *k, const char *val, void *dst, char *why,
                          size_t whylen)
{
	static const enum hub_durability all[] = {HUB_DURABLE_AUTO, HUB_DURABLE_PMEM,
	                                          HUB_DURABLE_APPLY};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(val, hub_durability_name(all[i])) == 0) {
			*(uint64_t *)((char *)dst + k->off) = all[i];
			return 0;
		}
	}
	snprintf(why, whylen, "'%s' is not auto, pmem or apply", val);
	return -EINVAL;
}

/* A plain count: digits only, within the key's bounds. */
static int set_count(const struct cfg_key *k, const char *val, void *dst, char *why, size_t whylen)
{
	uint64_t v = 0;
	const char *p = val;

	if (*p == '\0')
		goto bad;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > k->max)
			goto big;
	}
	if (v < k->min)
		goto big;
	*(uint64_t *)((char *)dst + k->off) = v;
	return 0;
big:
	snprintf(why, whylen, "'%s' is out of bounds (%llu..%llu)", val, (unsigned long long)k->min,
	         (unsigned long long)k->max);
	return -EINVAL;
bad:
	snprintf(why, whylen, "'%s' is not a whole number", val);
	return -EINVAL;
}

/* ---- the parse ---------------------------------------------------------- */

struct parse {
	struct hub_config *cfg;
	FILE *f;
	int lineno;
	char *line;
	size_t cap;
	enum cfg_section cur;
	size_t cur_vol;
	char cur_name[96]; /* the header text, for messages */
};

static const char *section_label(const struct parse *p, char *buf, size_t len)
{
	snprintf(buf, len, "[%s]", p->cur_name);
	return buf;
}

/* A "[...]" header at the current line. */
static void section_start(struct parse *p, const char *text)
{
	struct hub_config *cfg = p->cfg;
	char w[PATH_MAX + 16];
	const char *name;

	snprintf(p->cur_name, sizeof(p->cur_name), "%s", text);
	where(cfg, p->lineno, w, sizeof(w));
	if (strcmp(text, "hub") == 0) {
		if (cfg->hub_line) {
			add_error(cfg, "%s: section [hub]: given twice (first on line %d)", w,
			          cfg->hub_line);
			p->cur = SEC_INVALID;
			return;
		}
		cfg->hub_line = p->lineno;
		p->cur = SEC_HUB;
		return;
	}
	if (strncmp(text, "volume", 6) != 0 || (text[6] != ' ' && text[6] != '\t')) {
		add_error(cfg,
		          "%s: section [%s]: unknown section (expected [hub] or [volume NAME])", w,
		          text);
		p->cur = SEC_INVALID;
		return;
	}
	name = text + 6;
	name += strspn(name, " \t");
	if (!rf_ctl_name_ok(name)) {
		add_error(cfg,
		          "%s: section [%s]: '%s' is not a valid volume name (1..64 of "
		          "A-Z a-z 0-9 . _ -)",
		          w, text, name);
		p->cur = SEC_INVALID;
		return;
	}
	for (size_t i = 0; i < cfg->nvols; i++) {
		if (strcmp(cfg->vols[i].name, name) == 0) {
			add_error(cfg, "%s: section [%s]: duplicate volume (first on line %d)", w,
			          text, cfg->vols[i].line);
			p->cur = SEC_INVALID;
			return;
		}
	}
	{
		struct hub_vol_config *n = realloc(cfg->vols, (cfg->nvols + 1) * sizeof(*n));

		if (!n) {
			add_error(cfg, "%s: out of memory", w);
			p->cur = SEC_INVALID;
			return;
		}
		cfg->vols = n;
	}
	memset(&cfg->vols[cfg->nvols], 0, sizeof(cfg->vols[0]));
	strcpy(cfg->vols[cfg->nvols].name, name);
	cfg->vols[cfg->nvols].line = p->lineno;
	p->cur_vol = cfg->nvols++;
	p->cur = SEC_VOLUME;
}

/* Is there a '=' or ':' before an inline comment (" ;")? */
static bool has_separator(const char *s)
{
	for (const char *c = s; *c; c++) {
		if (*c == '=' || *c == ':')
			return true;
		if (*c == ';' && c > s && (c[-1] == ' ' || c[-1] == '\t'))
			return false;
	}
	return false;
}

/*
 * inih's reader: one physical line per call, leading blanks removed.
 * Section headers and syntax errors are handled here; inih gets an empty
 * line instead of a line we refused.
 */
static char *reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char w[PATH_MAX + 16];
	ssize_t n = getline(&p->line, &p->cap, p->f);
	char *s, *end;

	if (n < 0)
		return NULL;
	p->lineno++;
	while (n > 0 && (p->line[n - 1] == '\n' || p->line[n - 1] == '\r'))
		p->line[--n] = '\0';
	s = p->line + strspn(p->line, " \t");
	str[0] = '\0';
	if (strlen(s) + 3 > (size_t)num) {
		add_error(p->cfg, "%s: line longer than %d characters",
		          where(p->cfg, p->lineno, w, sizeof(w)), num - 3);
		return str;
	}
	if (strlen(p->line) != (size_t)n) {
		add_error(p->cfg, "%s: NUL byte in the line",
		          where(p->cfg, p->lineno, w, sizeof(w)));
		return str;
	}
	if (*s == '\0' || *s == ';' || *s == '#')
		return str;
	if (*s == '[') {
		end = strchr(s, ']');
		if (!end) {
			add_error(p->cfg, "%s: section header without a closing ']'",
			          where(p->cfg, p->lineno, w, sizeof(w)));
			p->cur = SEC_INVALID;
			return str;
		}
		*end = '\0';
		{
			char *rest = end + 1;

			rest += strspn(rest, " \t");
			if (*rest && *rest != ';' && *rest != '#') {
				add_error(p->cfg, "%s: text after the section header",
				          where(p->cfg, p->lineno, w, sizeof(w)));
			}
		}
		section_start(p, s + 1);
		/* inih keeps no state we use; give it a harmless header. */
		snprintf(str, (size_t)num, "[s]\n");
		return str;
	}
	if (!has_separator(s)) {
		add_error(p->cfg, "%s: expected 'key = value', a [section] or a comment",
		          where(p->cfg, p->lineno, w, sizeof(w)));
		return str;
	}
	snprintf(str, (size_t)num, "%s\n", s);
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	struct hub_config *cfg = p->cfg;
	char w[PATH_MAX + 16], sl[128], why[PATH_MAX + 256];
	unsigned *seen;
	int *seen_line;
	void *dst;

	where(cfg, p->lineno, w, sizeof(w));
	if (p->cur == SEC_INVALID)
		return 1; /* the header was refused; do not pile up messages */
	if (p->cur == SEC_NONE) {
		add_error(cfg, "%s: key '%s' outside any section (put it under [hub])", w, name);
		return 1;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &keys[i];

		if (k->section != p->cur || strcmp(k->name, name) != 0)
			continue;
		if (p->cur == SEC_HUB) {
			seen = &cfg->hub_seen;
			seen_line = cfg->hub_seen_line;
			dst = cfg;
		} else {
			seen = &cfg->vols[p->cur_vol].seen;
			seen_line = cfg->vols[p->cur_vol].seen_line;
			dst = &cfg->vols[p->cur_vol];
		}
		if (*seen & (1u << i)) {
			add_error(cfg, "%s: key '%s' in %s: set twice (first on line %d)", w, name,
			          section_label(p, sl, sizeof(sl)), seen_line[i]);
			return 1;
		}
		*seen |= 1u << i;
		seen_line[i] = p->lineno;
		if (k->set(k, value, dst, why, sizeof(why)))
			add_error(cfg, "%s: key '%s' in %s: %s", w, name,
			          section_label(p, sl, sizeof(sl)), why);
		return 1;
	}
	add_error(cfg, "%s: key '%s' in %s: unknown key", w, name,
	          section_label(p, sl, sizeof(sl)));
	return 1;
}

static int recovery_key_index(void)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].section == SEC_VOLUME && strcmp(keys[i].name, "recovery") == 0)
			return (int)i;
	return 0;
}

/* Defaults for keys the file did not set; required keys that are missing. */
static void finish(struct hub_config *cfg)
{
	char w[PATH_MAX + 16], why[PATH_MAX + 256];

	for (size_t i = 0; i < NKEYS; i++) {
		const struct cfg_key *k = &keys[i];

		if (k->section != SEC_HUB || (cfg->hub_seen & (1u << i)))
			continue;
		if (k->set(k, k->def, cfg, why, sizeof(why)))
			add_error(cfg, "%s: key '%s' in [hub] (default '%s'): %s",
			          where(cfg, cfg->hub_line, w, sizeof(w)), k->name, k->def, why);
	}
	for (size_t v = 0; v < cfg->nvols; v++) {
		struct hub_vol_config *vc = &cfg->vols[v];

		for (size_t i = 0; i < NKEYS; i++) {
			const struct cfg_key *k = &keys[i];

			if (k->section != SEC_VOLUME || (vc->seen & (1u << i)))
				continue;
			if (!k->def) {
				add_error(cfg, "%s: section [volume %s]: missing required key '%s'",
				          where(cfg, vc->line, w, sizeof(w)), vc->name, k->name);
				continue;
			}
			if (k->set(k, k->def, vc, why, sizeof(why)))
				add_error(cfg, "%s: key '%s' in [volume %s] (default '%s'): %s",
				          where(cfg, vc->line, w, sizeof(w)), k->name, vc->name,
				          k->def, why);
		}
		for (size_t u = 0; u < v; u++) {
			int ri = recovery_key_index();
			int line = vc->seen_line[ri] ? vc->seen_line[ri] : vc->line;

			if (vc->recovery[0] && strcmp(vc->recovery, cfg->vols[u].recovery) == 0)
				add_error(cfg,
				          "%s: key 'recovery' in [volume %s]: '%s' is already the "
				          "recovery image of volume %s",
				          where(cfg, line, w, sizeof(w)), vc->name, vc->recovery,
				          cfg->vols[u].name);
		}
	}
}

int hub_config_load(struct hub_config *cfg, const char *path)
{
	struct parse p = {.cfg = cfg, .cur = SEC_NONE};
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	p.f = fopen(path, "re");
	if (!p.f) {
		rc = -errno;
		add_error(cfg, "%s: cannot read: %s", path, strerror(errno));
		return rc;
	}
	rc = ini_parse_stream(reader, &p, handler, &p);
	if (rc < 0)
		add_error(cfg, "%s: cannot parse: out of memory", path);
	else if (rc > 0 && cfg->nerrors == 0)
		add_error(cfg, "%s:%d: syntax error", path, rc);
	if (ferror(p.f))
		add_error(cfg, "%s: read error", path);
	free(p.line);
	fclose(p.f);
	finish(cfg);
	return cfg->nerrors ? -EINVAL : 0;
}

void hub_config_free(struct hub_config *cfg)
{
	for (size_t i = 0; i < cfg->nerrors; i++)
		free(cfg->errors[i]);
	free(cfg->errors);
	free(cfg->vols);
	cfg->errors = NULL;
	cfg->nerrors = 0;
	cfg->vols = NULL;
	cfg->nvols = 0;
}

const struct hub_vol_config *hub_config_volume(const struct hub_config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nvols; i++)
		if (strcmp(cfg->vols[i].name, name) == 0)
			return &cfg->vols[i];
	return NULL;
}

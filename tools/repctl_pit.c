/* SPDX-License-Identifier: MIT */
/*
 * repctl's point-in-time commands:
 *
 *   repctl [--hub HOST:PORT] points VOLUME
 *   repctl [--hub HOST:PORT] test-failover start VOLUME [--at latest|TIME]
 *   repctl [--hub HOST:PORT] test-failover stop VOLUME
 *   repctl [--hub HOST:PORT] failover VOLUME [--at latest|TIME] [--force]
 *
 * TIME: "latest"; "seq:N" (a sequence as `points` lists it); "@SECONDS"
 * (unix time, fractions allowed); or "YYYY-MM-DDTHH:MM:SS[.mmm][Z]" (a
 * space instead of the T works; with Z it is UTC, else local time).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "repctl_conn.h"
#include "repctl_pit.h"
#include "repfabric/ctl.h"
#include "repfabric/log.h"

#define EXIT_UNMET 1
#define EXIT_HUB   2
#define EXIT_USAGE 64
#define REPLY_MS   120000 /* a failover applies the journal before it answers */

bool repctl_pit_command(const char *cmd)
{
	return strcmp(cmd, "points") == 0 || strcmp(cmd, "test-failover") == 0 ||
	       strcmp(cmd, "failover") == 0;
}

static void fmt_time(int64_t ms, char *buf, size_t len)
{
	if (ms <= 0)
		snprintf(buf, len, "(before the journal)");
	else
		rf_fmt_utc_ms(ms, buf, len);
}

/* Parse --at. 0 or -EINVAL. */
static int parse_at(const char *s, struct rf_ctl_admin *m)
{
	char *end;

	if (strcmp(s, "latest") == 0) {
		m->at = RF_AT_LATEST;
		return 0;
	}
	if (strncmp(s, "seq:", 4) == 0) {
		errno = 0;
		m->value = strtoull(s + 4, &end, 10);
		if (errno || end == s + 4 || *end)
			return -EINVAL;
		m->at = RF_AT_SEQ;
		return 0;
	}
	m->at = RF_AT_TIME;
	if (s[0] == '@') {
		double secs = strtod(s + 1, &end);

		if (end == s + 1 || *end || secs < 0)
			return -EINVAL;
		m->value = (uint64_t)(secs * 1000.0 + 0.5);
		return 0;
	}
	{
		struct tm tm = {0};
		int ms = 0, n = 0;
		char sep, z = 0;
		time_t t;

		if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		           &sep, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7 ||
		    (sep != 'T' && sep != ' '))
			return -EINVAL;
		s += n;
		if (*s == '.') {
			int digits = 0;

			for (s++; *s >= '0' && *s <= '9'; s++, digits++)
				if (digits < 3)
					ms = ms * 10 + (*s - '0');
			while (digits > 0 && digits < 3)
				ms *= 10, digits++;
		}
		if (*s == 'Z')
			z = *s++;
		if (*s)
			return -EINVAL;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		tm.tm_isdst = -1;
		t = z ? timegm(&tm) : mktime(&tm);
		if (t == (time_t)-1)
			return -EINVAL;
		m->value = (uint64_t)t * 1000 + (uint64_t)ms;
	}
	return 0;
}

/* Send one request, wait for its answer; ERROR is printed. */
static int roundtrip(const char *hub, uint16_t type, const uint8_t *pl, uint32_t len, uint16_t want,
                     uint8_t *buf, uint32_t *rlen)
{
	struct rf_ctl_hdr h;
	const char *why = "";
	int fd, rc;

	fd = repctl_dial(hub, DIAL_MS);
	if (fd < 0) {
		repctl_say_unreachable(hub, fd);
		return EXIT_HUB;
	}
	rc = rf_ctl_send(fd, type, 1, pl, len, NULL, 0);
	while (!rc) {
		rc = rf_ctl_recv(fd, &h, buf, RF_CTL_MAX_PAYLOAD, REPLY_MS, &why);
		if (!rc && h.req_id == 1)
			break;
	}
	close(fd);
	if (rc) {
		fprintf(stderr, "repctl: no answer from hub at %s: %s\n", hub,
		        rc == -EPROTO ? why : strerror(-rc));
		return EXIT_HUB;
	}
	if (h.type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(buf, h.len, &e, &why) == 0)
			fprintf(stderr, "repctl: %s\n", e.reason);
		else
			fprintf(stderr, "repctl: hub at %s sent a malformed ERROR\n", hub);
		return EXIT_HUB;
	}
	if (h.type != want) {
		fprintf(stderr, "repctl: hub at %s answered with message type %u\n", hub, h.type);
		return EXIT_HUB;
	}
	*rlen = h.len;
	return 0;
}

static int cmd_points(const char *hub, const char *name, uint8_t *buf)
{
	struct rf_ctl_points m;
	struct rf_ctl_points_ok ok;
	const char *why = "";
	char a[64], b[64];
	uint32_t rlen;
	int n, rc;

	snprintf(m.name, sizeof(m.name), "%s", name);
	n = rf_ctl_enc_points(buf, 256, &m);
	if (n < 0) {
		fprintf(stderr, "repctl: '%s' is not a volume name\n", name);
		return EXIT_USAGE;
	}
	rc = roundtrip(hub, RF_CTL_POINTS, buf, (uint32_t)n, RF_CTL_POINTS_OK, buf, &rlen);
	if (rc)
		return rc;
	if (rf_ctl_dec_points_ok(buf, rlen, &ok, &why)) {
		fprintf(stderr, "repctl: malformed POINTS_OK: %s\n", why);
		return EXIT_HUB;
	}
	if (!(ok.flags & RF_POINTS_JOURNAL)) {
		printf("%s: no journal (journal_time = 0): the recovery image is the only point "
		       "(seq %" PRIu64 ")\n",
		       name, ok.newest_seq);
	} else {
		fmt_time(ok.oldest_time_ms, a, sizeof(a));
		fmt_time(ok.newest_time_ms, b, sizeof(b));
		printf("%s: journal_time %" PRIu64 " s, journal_size %" PRIu64 " bytes\n", name,
		       ok.retain_ms / 1000, ok.retain_bytes);
		printf("oldest: seq %" PRIu64 " time %s (the recovery image)\n", ok.oldest_seq, a);
		printf("newest: seq %" PRIu64 " time %s\n", ok.newest_seq, b);
		printf("entries: %" PRIu64 " bytes: %" PRIu64 "\n", ok.entries, ok.bytes);
	}
	if (ok.flags & RF_POINTS_TEST)
		printf("test: running at seq %" PRIu64 " (journal not applied meanwhile)\n",
		       ok.test_seq);
	if (ok.flags & RF_POINTS_FAILED_OVER)
		printf("failed over: yes\n");
	return 0;
}

static int cmd_admin(const char *hub, struct rf_ctl_admin *m, uint8_t *buf)
{
	struct rf_ctl_admin_ok ok;
	const char *why = "";
	char t[64];
	uint32_t rlen;
	int n, rc;

	n = rf_ctl_enc_admin(buf, 256, m);
	if (n < 0) {
		fprintf(stderr, "repctl: '%s' is not a volume name\n", m->name);
		return EXIT_USAGE;
	}
	rc = roundtrip(hub, RF_CTL_ADMIN, buf, (uint32_t)n, RF_CTL_ADMIN_OK, buf, &rlen);
	if (rc)
		return rc;
	if (rf_ctl_dec_admin_ok(buf, rlen, &ok, &why)) {
		fprintf(stderr, "repctl: malformed ADMIN_OK: %s\n", why);
		return EXIT_HUB;
	}
	fmt_time(ok.time_ms, t, sizeof(t));
	printf("%s\n", ok.text);
	printf("point: seq %" PRIu64 " time %s\n", ok.seq, t);
	return 0;
}

int repctl_pit_main(const char *hub, int argc, char **argv)
{
	struct rf_ctl_admin m = {0};
	const char *cmd = argv[0], *name = NULL;
	uint8_t *buf;
	int i = 1, rc;

	if (strcmp(cmd, "test-failover") == 0) {
		if (argc < 2)
			goto usage;
		if (strcmp(argv[1], "start") == 0)
			m.op = RF_ADMIN_TEST_START;
		else if (strcmp(argv[1], "stop") == 0)
			m.op = RF_ADMIN_TEST_STOP;
		else
			goto usage;
		i = 2;
	} else if (strcmp(cmd, "failover") == 0) {
		m.op = RF_ADMIN_FAILOVER;
	}
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--at") == 0 && i + 1 < argc && m.op &&
		    m.op != RF_ADMIN_TEST_STOP) {
			if (parse_at(argv[++i], &m)) {
				fprintf(
				    stderr,
				    "repctl: --at '%s': expected latest, seq:N, @UNIXSECONDS or "
				    "YYYY-MM-DDTHH:MM:SS[.mmm][Z]\n",
				    argv[i]);
				return EXIT_USAGE;
			}
		} else if (strcmp(argv[i], "--force") == 0 && m.op == RF_ADMIN_FAILOVER) {
			m.force = 1;
		} else if (argv[i][0] != '-' && !name) {
			name = argv[i];
		} else {
			goto usage;
		}
	}
	if (!name)
		goto usage;
	buf = malloc(RF_CTL_MAX_PAYLOAD + 1);
	if (!buf)
		return EXIT_HUB;
	if (m.op == 0) {
		rc = cmd_points(hub, name, buf);
	} else {
		snprintf(m.name, sizeof(m.name), "%s", name);
		rc = cmd_admin(hub, &m, buf);
	}
	free(buf);
	return rc;
usage:
	fprintf(stderr,
	        "usage: repctl [--hub HOST:PORT] points VOLUME\n"
	        "       repctl [--hub HOST:PORT] test-failover start VOLUME [--at latest|TIME]\n"
	        "       repctl [--hub HOST:PORT] test-failover stop VOLUME\n"
	        "       repctl [--hub HOST:PORT] failover VOLUME [--at latest|TIME] [--force]\n"
	        "  TIME: seq:N, @UNIXSECONDS or YYYY-MM-DDTHH:MM:SS[.mmm][Z]\n");
	return EXIT_USAGE;
}

/* SPDX-License-Identifier: MIT */
/*
 * repctl: talk to rephubd over its control channel.
 *
 *   repctl [--hub HOST:PORT] status [--json]
 *   repctl [--hub HOST:PORT] wait VOLUME --synced [--timeout SECONDS]
 *   repctl [--hub HOST:PORT] points | test-failover | failover ...  (repctl_pit.c)
 *
 * The hub answers STATUS with JSON (fields: docs/HUB.md); "status"
 * prints it as a table, or raw with --json. "wait --synced" polls STATUS
 * every 100 ms until the volume is protected and the agent's newest
 * PROGRESS, received after the wait began, shows an empty queue, no dirty
 * bytes and a next sequence the hub has made durable (the hub computes
 * that as "caught_up").
 *
 * Exit status: 0 done; 1 the condition did not hold (timeout, unknown
 * volume); 2 the hub cannot be reached or answered with an error;
 * 64 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "repctl_pit.h"
#include "repfabric/ctl.h"

#define EXIT_UNMET  1
#define EXIT_HUB    2
#define EXIT_USAGE  64
#define DIAL_MS     5000
#define REPLY_MS    10000
#define POLL_MS     100
#define DEFAULT_HUB "127.0.0.1:7470"

static const char *hub_addr = DEFAULT_HUB;

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: repctl [--hub HOST:PORT] status [--json]\n"
	        "       repctl [--hub HOST:PORT] wait VOLUME --synced [--timeout SECONDS]\n"
	        "       repctl [--hub HOST:PORT] points VOLUME\n"
	        "       repctl [--hub HOST:PORT] test-failover start|stop VOLUME [--at TIME]\n"
	        "       repctl [--hub HOST:PORT] failover VOLUME [--at TIME] [--force]\n"
	        "\n"
	        "  --hub HOST:PORT   the hub's control address (default $REPCTL_HUB, else %s)\n"
	        "  --json            print the hub's status JSON as it is\n"
	        "  --synced          wait until VOLUME is protected and caught up\n"
	        "  --timeout SECS    give up after SECS seconds (default: never)\n",
	        DEFAULT_HUB);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int dial(void)
{
	return rf_ctl_dial(hub_addr, DIAL_MS);
}

/*
 * Ask for the status on @fd. Returns 0 with the JSON text in *@out (free
 * it), or -errno; @msg says what went wrong.
 */
static int fetch_status(int fd, char **out, char *msg, size_t msglen)
{
	static uint64_t next_req = 1;
	uint64_t req = next_req++;
	struct rf_ctl_hdr h;
	const char *why = "";
	uint8_t *buf;
	int rc;

	*out = NULL;
	buf = malloc(RF_CTL_MAX_PAYLOAD + 1);
	if (!buf)
		return -ENOMEM;
	rc = rf_ctl_send(fd, RF_CTL_STATUS, req, NULL, 0, NULL, 0);
	if (rc) {
		snprintf(msg, msglen, "cannot send to hub at %s: %s", hub_addr, strerror(-rc));
		goto out;
	}
	for (;;) {
		rc = rf_ctl_recv(fd, &h, buf, RF_CTL_MAX_PAYLOAD, REPLY_MS, &why);
		if (rc) {
			snprintf(msg, msglen, "no status from hub at %s: %s", hub_addr,
			         rc == -EPROTO ? why : strerror(-rc));
			goto out;
		}
		if (h.req_id != req)
			continue; /* a notification or a heartbeat: not ours */
		if (h.type == RF_CTL_STATUS_OK)
			break;
		if (h.type == RF_CTL_ERROR) {
			struct rf_ctl_error e;

			if (rf_ctl_dec_error(buf, h.len, &e, &why) == 0)
				snprintf(msg, msglen, "hub at %s refused STATUS: %s (%s)", hub_addr,
				         e.reason, strerror(e.code));
			else
				snprintf(msg, msglen, "hub at %s sent a malformed ERROR", hub_addr);
			rc = -EIO;
			goto out;
		}
		snprintf(msg, msglen, "hub at %s answered STATUS with message type %u", hub_addr,
		         h.type);
		rc = -EPROTO;
		goto out;
	}
	buf[h.len] = '\0';
	*out = (char *)buf;
	return 0;
out:
	free(buf);
	return rc;
}

static int parse_status(const char *text, struct json **out, char *msg, size_t msglen)
{
	char err[160];
	int rc = json_parse(text, strlen(text), out, err, sizeof(err));

	if (rc)
		snprintf(msg, msglen, "the hub's status is not valid JSON: %s", err);
	return rc;
}

static const struct json *find_volume(const struct json *st, const char *name)
{
	const struct json *vols = json_get(st, "volumes");

	if (!vols || vols->type != JSON_ARRAY)
		return NULL;
	for (size_t i = 0; i < vols->n; i++)
		if (strcmp(json_str(json_get(&vols->kid[i], "name"), ""), name) == 0)
			return &vols->kid[i];
	return NULL;
}

/* "1.5 GiB", "512 B" */
static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v;
	unsigned u = 0;

	if (v < 1024) {
		snprintf(buf, len, "%" PRIu64 " B", v);
		return buf;
	}
	while (d >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", d, units[u]);
	return buf;
}

static void print_table(const struct json *st)
{
	const struct json *vols = json_get(st, "volumes"), *agents = json_get(st, "agents");
	char b1[32], b2[32], b3[32], b4[32];

	printf("%-20s %-12s %10s %7s %-16s %12s %8s %10s %10s %10s\n", "VOLUME", "STATE", "SIZE",
	       "SYNCED", "AGENT", "DURABLE_SEQ", "LAG_RECS", "LAG_BYTES", "DIRTY", "RESENT");
	for (size_t i = 0; vols && vols->type == JSON_ARRAY && i < vols->n; i++) {
		const struct json *v = &vols->kid[i];

		printf("%-20s %-12s %10s %6.1f%% %-16s %12" PRIu64 " %8" PRIu64 " %10s %10s %10s\n",
		       json_str(json_get(v, "name"), "?"), json_str(json_get(v, "state"), "?"),
		       human(json_u64(json_get(v, "size"), 0), b1, sizeof(b1)),
		       json_num(json_get(v, "synced_percent"), 0),
		       json_str(json_get(v, "agent"), "-"), json_u64(json_get(v, "durable_seq"), 0),
		       json_u64(json_get(v, "lag_records"), 0),
		       human(json_u64(json_get(v, "lag_bytes"), 0), b2, sizeof(b2)),
		       human(json_u64(json_get(v, "dirty_bytes"), 0), b3, sizeof(b3)),
		       human(json_u64(json_get(v, "resent_bytes"), 0), b4, sizeof(b4)));
	}
	if (!agents || agents->type != JSON_ARRAY || agents->n == 0)
		return;
	printf("\n%-16s %-10s %-9s %10s %7s %12s %8s %7s %11s\n", "AGENT", "CONNECTED", "ATTACHED",
	       "RING_USED", "FILL", "RECORDS", "INVALID", "FENCES", "CONGESTIONS");
	for (size_t i = 0; i < agents->n; i++) {
		const struct json *a = &agents->kid[i];

		printf("%-16s %-10s %-9s %10s %6.1f%% %12" PRIu64 " %8" PRIu64 " %7" PRIu64
		       " %11" PRIu64 "\n",
		       json_str(json_get(a, "id"), "?"),
		       json_bool(json_get(a, "connected"), false) ? "yes" : "no",
		       json_bool(json_get(a, "attached"), false) ? "yes" : "no",
		       human(json_u64(json_get(a, "ring_used_bytes"), 0), b1, sizeof(b1)),
		       100.0 * json_num(json_get(a, "ring_fill"), 0),
		       json_u64(json_get(a, "records"), 0),
		       json_u64(json_get(a, "invalid_records"), 0),
		       json_u64(json_get(a, "fences"), 0), json_u64(json_get(a, "congestions"), 0));
	}
}

static int cmd_status(bool raw)
{
	struct json *st = NULL;
	char msg[1600], *text;
	int fd = dial(), rc;

	if (fd < 0) {
		fprintf(stderr, "repctl: cannot reach hub at %s: %s\n", hub_addr, strerror(-fd));
		return EXIT_HUB;
	}
	rc = fetch_status(fd, &text, msg, sizeof(msg));
	close(fd);
	if (rc) {
		fprintf(stderr, "repctl: %s\n", msg);
		return EXIT_HUB;
	}
	if (raw) {
		fputs(text, stdout);
		if (text[0] && text[strlen(text) - 1] != '\n')
			putchar('\n');
		free(text);
		return 0;
	}
	rc = parse_status(text, &st, msg, sizeof(msg));
	free(text);
	if (rc) {
		fprintf(stderr, "repctl: %s\n", msg);
		return EXIT_HUB;
	}
	print_table(st);
	json_free(st);
	return 0;
}

/* Why @v is not synced yet, for the timeout message. */
static void not_synced_reason(const struct json *v, uint64_t count0, char *buf, size_t len)
{
	const char *state = json_str(json_get(v, "state"), "?");
	double pct = json_num(json_get(v, "synced_percent"), 0);
	uint64_t dirty = json_u64(json_get(v, "dirty_bytes"), 0);
	char hb[32];
	int n;

	n = snprintf(buf, len, "state %s, %.0f%% synced", state, pct);
	if (n < 0 || (size_t)n >= len)
		return;
	if (strcmp(state, "resyncing") == 0)
		snprintf(buf + n, len - (size_t)n, ", %s left to resend",
		         human(json_u64(json_get(v, "resend_bytes"), 0), hb, sizeof(hb)));
	if (strcmp(state, "protected") != 0)
		return;
	if (!json_bool(json_get(v, "agent_connected"), false))
		snprintf(buf + n, len - (size_t)n, ", agent not connected");
	else if (json_u64(json_get(v, "progress_count"), 0) <= count0)
		snprintf(buf + n, len - (size_t)n,
		         ", no PROGRESS from the agent since the wait began");
	else if (dirty)
		snprintf(buf + n, len - (size_t)n, ", %s dirty", human(dirty, hb, sizeof(hb)));
	else
		snprintf(buf + n, len - (size_t)n, ", agent's queue not yet durable on the hub");
}

static int cmd_wait(const char *name, double timeout_s)
{
	int64_t start = now_ms(),
	        deadline = timeout_s > 0 ? start + (int64_t)(timeout_s * 1000) : 0;
	uint64_t count0 = 0;
	bool have_base = false;
	char msg[1600] = "", reason[1700] = "no status yet";
	int fd = dial();

	if (fd < 0) {
		fprintf(stderr, "repctl: cannot reach hub at %s: %s\n", hub_addr, strerror(-fd));
		return EXIT_HUB;
	}
	for (;;) {
		struct json *st = NULL;
		const struct json *v;
		char *text = NULL;

		if (fd < 0)
			fd = dial();
		if (fd >= 0 && fetch_status(fd, &text, msg, sizeof(msg)) == 0 &&
		    parse_status(text, &st, msg, sizeof(msg)) == 0) {
			v = find_volume(st, name);
			if (!v) {
				fprintf(stderr, "repctl: the hub at %s has no volume named '%s'\n",
				        hub_addr, name);
				json_free(st);
				free(text);
				close(fd);
				return EXIT_UNMET;
			}
			if (!have_base) {
				count0 = json_u64(json_get(v, "progress_count"), 0);
				have_base = true;
			} else if (strcmp(json_str(json_get(v, "state"), ""), "protected") == 0 &&
			           json_u64(json_get(v, "progress_count"), 0) > count0 &&
			           json_bool(json_get(v, "caught_up"), false)) {
				printf("%s: synced (durable seq %" PRIu64 ")\n", name,
				       json_u64(json_get(v, "durable_seq"), 0));
				json_free(st);
				free(text);
				close(fd);
				return 0;
			}
			not_synced_reason(v, count0, reason, sizeof(reason));
		} else {
			snprintf(reason, sizeof(reason), "%s", msg[0] ? msg : "hub unreachable");
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		json_free(st);
		free(text);
		if (deadline && now_ms() >= deadline) {
			fprintf(stderr, "repctl: %s not synced after %.0f s: %s\n", name, timeout_s,
			        reason);
			if (fd >= 0)
				close(fd);
			return EXIT_UNMET;
		}
		usleep(POLL_MS * 1000);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"hub", required_argument, NULL, 'H'}, {"json", no_argument, NULL, 'j'},
	    {"synced", no_argument, NULL, 's'},    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0}};
	bool raw = false, synced = false;
	double timeout_s = 0;
	const char *env = getenv("REPCTL_HUB"), *cmd;
	char *end;
	int c;

	if (env && *env)
		hub_addr = env;
	/* points, test-failover, failover: their own options (repctl_pit.c). */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--hub") == 0 && i + 1 < argc) {
			hub_addr = argv[++i];
			continue;
		}
		if (strncmp(argv[i], "--hub=", 6) == 0) {
			hub_addr = argv[i] + 6;
			continue;
		}
		if (repctl_pit_command(argv[i]))
			return repctl_pit_main(hub_addr, argc - i, argv + i);
		break;
	}
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			hub_addr = optarg;
			break;
		case 'j':
			raw = true;
			break;
		case 's':
			synced = true;
			break;
		case 't':
			timeout_s = strtod(optarg, &end);
			if (end == optarg || *end || timeout_s < 0) {
				fprintf(stderr, "repctl: --timeout '%s': expected seconds\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind++];
	if (strcmp(cmd, "status") == 0 && optind == argc && !synced)
		return cmd_status(raw);
	if (strcmp(cmd, "wait") == 0 && optind + 1 == argc && !raw) {
		if (!synced) {
			fprintf(stderr, "repctl: wait: say what to wait for (--synced)\n");
			return EXIT_USAGE;
		}
		return cmd_wait(argv[optind], timeout_s);
	}
	usage(stderr);
	return EXIT_USAGE;
}

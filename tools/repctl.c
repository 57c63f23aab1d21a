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
#include "repctl_conn.h"
#include "repctl_pit.h"
#include "repfabric/auth.h"
#include "repfabric/ctl.h"
#include "repfabric/sockio.h"

#define EXIT_UNMET 1
#define EXIT_HUB   2
#define EXIT_USAGE 64
#define REPLY_MS   10000
#define POLL_MS    100

static const char *hub_addr = DEFAULT_HUB;

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: repctl [OPTIONS] status [--json]\n"
	        "       repctl [OPTIONS] wait VOLUME --synced [--timeout SECONDS]\n"
	        "       repctl [OPTIONS] points VOLUME\n"
	        "       repctl [OPTIONS] test-failover start|stop VOLUME [--at TIME]\n"
	        "       repctl [OPTIONS] failover VOLUME [--at TIME] [--force]\n"
	        "       repctl genkey [IDENTITY [agent|admin]]\n"
	        "\n"
	        "  --hub HOST:PORT   the hub's control address (default $REPCTL_HUB, else %s)\n"
	        "  --psk-file FILE   authenticate with a key from FILE (mode 0600; default\n"
	        "                    $REPCTL_PSK_FILE): needed when the hub has psk_file\n"
	        "  --identity NAME   the key to use (default $REPCTL_IDENTITY, else the\n"
	        "                    file's only key); an admin identity\n"
	        "  --json            print the hub's status JSON as it is\n"
	        "  --synced          wait until VOLUME is protected and caught up\n"
	        "  --timeout SECS    give up after SECS seconds (default: never)\n",
	        DEFAULT_HUB);
}

static const char *psk_file, *identity;

/* Options before the command, for every command. */
static const struct {
	const char *name;
	const char **dst;
} conn_opts[] = {{"--hub", &hub_addr}, {"--psk-file", &psk_file}, {"--identity", &identity}};

/* repctl genkey [IDENTITY [ROLE]]: a fresh key as a key file line. */
static int cmd_genkey(int argc, char **argv)
{
	uint8_t k[32];
	const char *id = argc > 1 ? argv[1] : "NAME", *role = argc > 2 ? argv[2] : "agent";

	if (argc > 3 || (argc > 1 && !rf_ctl_name_ok(id)) ||
	    (strcmp(role, "agent") && strcmp(role, "admin"))) {
		fprintf(stderr, "usage: repctl genkey [IDENTITY [agent|admin]]\n");
		return EXIT_USAGE;
	}
	if (rf_auth_random(k, sizeof(k))) {
		fprintf(stderr, "repctl: genkey: no random bytes\n");
		return 1;
	}
	printf("%s ", id);
	for (size_t i = 0; i < sizeof(k); i++)
		printf("%02x", k[i]);
	printf(" %s\n", role);
	return 0;
}

static int dial(void)
{
	return repctl_dial(hub_addr, DIAL_MS);
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
		if (rc == -ETIMEDOUT) {
			snprintf(msg, msglen,
			         "no status from hub at %s: it accepted the connection but did "
			         "not answer in %d s",
			         hub_addr, REPLY_MS / 1000);
			goto out;
		}
		if (rc) {
			snprintf(msg, msglen, "no status from hub at %s: %s", hub_addr,
			         rc == -EPROTO       ? why
			         : rc == -ECONNRESET ? "it closed the connection"
			                             : strerror(-rc));
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

/* "2h05m", "5m07s", "42s" */
static const char *duration_s(uint64_t s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 "s", s);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
	return buf;
}

/* As duration_s, with tenths below 10 s: "1.5s" */
static const char *duration_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms >= 10000)
		return duration_s(ms / 1000, buf, len);
	snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
	return buf;
}

#define BAR_WIDTH 20

/* "[########............]  43%": the percent rounded down, 100 only when done. */
static const char *progress_bar(double pct, char *buf, size_t len)
{
	char bar[BAR_WIDTH + 1];
	unsigned fill;

	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	fill = (unsigned)(pct * BAR_WIDTH / 100);
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	snprintf(buf, len, "[%s] %3u%%", bar, (unsigned)pct);
	return buf;
}

/* The cells of a volume's line that need more than a lookup. */
struct vol_cells {
	char progress[BAR_WIDTH + 16], rate[32], eta[32], lag_age[32], journal[32];
};

static void volume_cells(const struct json *v, struct vol_cells *c)
{
	const char *state = json_str(json_get(v, "state"), "?");
	const struct json *eta = json_get(v, "eta_s"), *lag = json_get(v, "lag_ms");
	const struct json *rate = json_get(v, "sync_rate_bps"), *jr = json_get(v, "journal");
	bool resync = strcmp(state, "resyncing") == 0;
	bool active = resync || strcmp(state, "syncing") == 0;
	double pct = json_num(json_get(v, resync ? "resync_percent" : "synced_percent"), 0);
	uint64_t size = json_u64(json_get(v, "size"), 0);
	char hb[32];

	/* From the bytes: synced_percent has one decimal (99.96 reads 100.0). */
	if (!resync && size)
		pct = 100.0 * (double)json_u64(json_get(v, "synced_bytes"), 0) / (double)size;
	if (active)
		progress_bar(pct, c->progress, sizeof(c->progress));
	else
		snprintf(c->progress, sizeof(c->progress), "%u%%", (unsigned)pct);
	snprintf(c->rate, sizeof(c->rate), "%s", active ? "?" : "-");
	snprintf(c->eta, sizeof(c->eta), "%s", active ? "?" : "-");
	if (active && rate && rate->is_u64)
		snprintf(c->rate, sizeof(c->rate), "%s/s", human(rate->u64, hb, sizeof(hb)));
	if (active && eta && eta->is_u64)
		duration_s(eta->u64, c->eta, sizeof(c->eta));
	if (lag && lag->is_u64)
		duration_ms(lag->u64, c->lag_age, sizeof(c->lag_age));
	else
		snprintf(c->lag_age, sizeof(c->lag_age), "?");
	if (jr && jr->type == JSON_OBJECT)
		duration_ms(json_u64(json_get(jr, "span_ms"), 0), c->journal, sizeof(c->journal));
	else
		snprintf(c->journal, sizeof(c->journal), "-");
}

/* The widest @key (a string) in @arr, at least @min. */
static int col_width(const struct json *arr, const char *key, size_t min)
{
	for (size_t i = 0; arr && arr->type == JSON_ARRAY && i < arr->n; i++) {
		size_t n = strlen(json_str(json_get(&arr->kid[i], key), "-"));

		if (n > min)
			min = n;
	}
	return (int)min;
}

static void print_volumes(const struct json *vols)
{
	int nw = col_width(vols, "name", 6), aw = col_width(vols, "agent", 5);
	char b1[32], b2[32], b3[32], b4[32];
	struct vol_cells c;

	printf("%-*s %-12s %10s %-*s %12s %7s %-*s %8s %10s %7s %6s %8s %10s %10s\n", nw, "VOLUME",
	       "STATE", "SIZE", BAR_WIDTH + 7, "PROGRESS", "RATE", "ETA", aw, "AGENT", "LAG_RECS",
	       "LAG_BYTES", "LAG_AGE", "RING", "JOURNAL", "DIRTY", "RESENT");
	for (size_t i = 0; vols && vols->type == JSON_ARRAY && i < vols->n; i++) {
		const struct json *v = &vols->kid[i];

		volume_cells(v, &c);
		printf("%-*s %-12s %10s %*s %12s %7s %-*s %8" PRIu64 " %10s %7s %5.1f%% %8s %10s "
		       "%10s\n",
		       nw, json_str(json_get(v, "name"), "?"), json_str(json_get(v, "state"), "?"),
		       human(json_u64(json_get(v, "size"), 0), b1, sizeof(b1)), BAR_WIDTH + 7,
		       c.progress, c.rate, c.eta, aw, json_str(json_get(v, "agent"), "-"),
		       json_u64(json_get(v, "lag_records"), 0),
		       human(json_u64(json_get(v, "lag_bytes"), 0), b2, sizeof(b2)), c.lag_age,
		       100.0 * json_num(json_get(v, "ring_fill"), 0), c.journal,
		       human(json_u64(json_get(v, "dirty_bytes"), 0), b3, sizeof(b3)),
		       human(json_u64(json_get(v, "resent_bytes"), 0), b4, sizeof(b4)));
	}
}

/* A sequence, or "-" when the hub does not know it yet. */
static const char *seq_text(const struct json *v, char *buf, size_t len)
{
	if (!v || !v->is_u64)
		return "-";
	snprintf(buf, len, "%" PRIu64, v->u64);
	return buf;
}

static void print_agents(const struct json *agents)
{
	int aw = col_width(agents, "id", 5);
	char b1[32], b2[32], b3[32], b4[32];

	printf("\n%-*s %-10s %-9s %-5s %10s %10s %10s %10s %7s %8s %9s %12s %8s %7s %11s\n", aw,
	       "AGENT", "CONNECTED", "ATTACHED", "RULE", "LANDED", "DURABLE", "APPLIED",
	       "RING_USED", "FILL", "DUR_AGE", "APPLY_AGE", "RECORDS", "INVALID", "FENCES",
	       "CONGESTIONS");
	for (size_t i = 0; i < agents->n; i++) {
		const struct json *a = &agents->kid[i], *dlag = json_get(a, "durable_lag_ms"),
		                  *alag = json_get(a, "apply_lag_ms");

		printf("%-*s %-10s %-9s %-5s %10s %10" PRIu64 " %10" PRIu64 " %10s %6.1f%% %8s %9s "
		       "%12" PRIu64 " %8" PRIu64 " %7" PRIu64 " %11" PRIu64 "\n",
		       aw, json_str(json_get(a, "id"), "?"),
		       json_bool(json_get(a, "connected"), false) ? "yes" : "no",
		       json_bool(json_get(a, "attached"), false) ? "yes" : "no",
		       json_str(json_get(a, "durability"), "-"),
		       seq_text(json_get(a, "landed_seq"), b3, sizeof(b3)),
		       json_u64(json_get(a, "durable_seq"), 0),
		       json_u64(json_get(a, "applied_seq"), 0),
		       human(json_u64(json_get(a, "ring_used_bytes"), 0), b1, sizeof(b1)),
		       100.0 * json_num(json_get(a, "ring_fill"), 0),
		       dlag && dlag->is_u64 ? duration_ms(dlag->u64, b2, sizeof(b2)) : "?",
		       alag && alag->is_u64 ? duration_ms(alag->u64, b4, sizeof(b4)) : "?",
		       json_u64(json_get(a, "records"), 0),
		       json_u64(json_get(a, "invalid_records"), 0),
		       json_u64(json_get(a, "fences"), 0), json_u64(json_get(a, "congestions"), 0));
	}
}

/*
 * One line per volume (docs/HUB.md, "repctl"): state, progress (a bar while
 * syncing or resyncing), rate and ETA, lag in records, bytes and age, ring
 * fill, journal span; then one line per agent.
 */
static void print_table(const struct json *st)
{
	const struct json *agents = json_get(st, "agents");

	print_volumes(json_get(st, "volumes"));
	if (agents && agents->type == JSON_ARRAY && agents->n)
		print_agents(agents);
}

static void say_unreachable(int err)
{
	repctl_say_unreachable(hub_addr, err);
}

static int cmd_status(bool raw)
{
	struct json *st = NULL;
	char msg[1600], *text;
	int fd = dial(), rc;

	if (fd < 0) {
		say_unreachable(fd);
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
	int64_t start = rf_now_ms(),
	        deadline = timeout_s > 0 ? start + (int64_t)(timeout_s * 1000) : 0;
	uint64_t count0 = 0;
	bool have_base = false;
	char msg[1600] = "", reason[1700] = "no status yet";
	int fd = dial();

	if (fd < 0) {
		say_unreachable(fd);
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
		if (deadline && rf_now_ms() >= deadline) {
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
	    {"hub", required_argument, NULL, 'H'},      {"json", no_argument, NULL, 'j'},
	    {"psk-file", required_argument, NULL, 'P'}, {"identity", required_argument, NULL, 'I'},
	    {"synced", no_argument, NULL, 's'},         {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
	bool raw = false, synced = false;
	double timeout_s = 0;
	const char *env = getenv("REPCTL_HUB"), *cmd;
	char *end;
	int c;

	if (env && *env)
		hub_addr = env;
	psk_file = getenv("REPCTL_PSK_FILE");
	identity = getenv("REPCTL_IDENTITY");
	/* The connection options come first; points, test-failover and
	 * failover have their own options (repctl_pit.c). */
	for (int i = 1; i < argc; i++) {
		const char **dst = NULL;
		size_t n = 0;

		for (size_t k = 0; k < sizeof(conn_opts) / sizeof(conn_opts[0]); k++) {
			n = strlen(conn_opts[k].name);
			if (!strncmp(argv[i], conn_opts[k].name, n) &&
			    (argv[i][n] == '\0' || argv[i][n] == '=')) {
				dst = conn_opts[k].dst;
				break;
			}
		}
		if (dst && argv[i][n] == '=') {
			*dst = argv[i] + n + 1;
			continue;
		}
		if (dst && i + 1 < argc) {
			*dst = argv[++i];
			continue;
		}
		if (dst) {
			fprintf(stderr, "repctl: %s needs a value\n", argv[i]);
			return EXIT_USAGE;
		}
		if (!strcmp(argv[i], "genkey"))
			return cmd_genkey(argc - i, argv + i);
		if (repctl_pit_command(argv[i])) {
			if (psk_file && *psk_file && repctl_auth_setup(psk_file, identity))
				return EXIT_USAGE;
			return repctl_pit_main(hub_addr, argc - i, argv + i);
		}
		break;
	}
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			hub_addr = optarg;
			break;
		case 'P':
			psk_file = optarg;
			break;
		case 'I':
			identity = optarg;
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
	if (psk_file && *psk_file && repctl_auth_setup(psk_file, identity))
		return EXIT_USAGE;
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

/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-conformance: the same cases against every transport provider,
 * with a real persistent ring on the hub side.
 *
 *   rf-fabric-conformance run --url URL --dir DIR [--case NAME]...
 *   rf-fabric-conformance hub --url URL --ring FILE --state FILE --max-payload N
 *   rf-fabric-conformance produce --url URL --state FILE --max-payload N
 *
 * "run" forks hub processes (this program in "hub" mode) and acts as the
 * producer, so it can kill and restart either side. Every record's content
 * is derived from (volume, index): the hub checks each applied record's
 * length and bytes and that indices arrive contiguously per volume, so a
 * lost, duplicated, reordered or corrupted record fails the case. The hub
 * keeps its applied indices in a state file (written and fsynced before it
 * persists the ring head), which is also what it reports.
 *
 * Cases: ordering, wrap, backpressure, sizes, hub-crash, producer-crash,
 * reconnect. A hub that exits cleanly also checks the listener's counters
 * (struct rf_fab_stats) against the events and publishes it saw (a mismatch
 * fails the case like a verification error) and writes them to STATE.fab;
 * the driver checks them against what the producer did (posts, positions
 * received, a deliberately refused token in "ordering").
 *
 * This file is the driver ("run") and main(); the other modes and parts:
 * conformance_hub.c, conformance_producer.c, conformance_common.c (record
 * content, state files), conformance.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "repfabric/fabric.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h"

#include "conformance.h"

/* --------------------------------------------------------------- driver */

struct run_ctx {
	const char *self;
	const char *url;
	const char *dir;
	char ring[4096], state[4096], log[4096];
	uint64_t ring_size;
	uint32_t max_payload;
	pid_t hub;
};

static pid_t hub_spawn(struct run_ctx *r)
{
	char maxp[32], rsize[32], line[64] = "";
	int pfd[2];
	pid_t pid;
	FILE *f;

	snprintf(maxp, sizeof(maxp), "%u", r->max_payload);
	snprintf(rsize, sizeof(rsize), "%" PRIu64, r->ring_size);
	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		int logfd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		dup2(pfd[1], 1);
		if (logfd >= 0)
			dup2(logfd, 2);
		close(pfd[0]);
		execl(r->self, r->self, "hub", "--url", r->url, "--ring", r->ring, "--state",
		      r->state, "--max-payload", maxp, "--ring-size", rsize, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || strncmp(line, "hub ready", 9) != 0) {
		RF_ERR("run", "hub did not start (see %s)", r->log);
		if (f)
			fclose(f);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	fclose(f);
	r->hub = pid;
	return pid;
}

/* Stop the hub with SIGTERM and read its final state. */
static int hub_finish(struct run_ctx *r, struct hub_state *st)
{
	int status = 0;

	if (r->hub > 0) {
		kill(r->hub, SIGTERM);
		waitpid(r->hub, &status, 0);
		r->hub = 0;
	}
	if (state_load(r->state, st))
		return -EBADMSG;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static void hub_crash(struct run_ctx *r)
{
	kill(r->hub, SIGKILL);
	waitpid(r->hub, NULL, 0);
	r->hub = 0;
}

struct case_opts {
	uint64_t ring_size;
	uint32_t max_payload;
	uint64_t records;
	int hub_crashes;
	int producer_crashes;
	int reconnects;
	bool backpressure;
	bool bad_token; /* first try a token the hub refuses */
	bool landed;    /* ask for LANDED and check it covers every post */
};

/*
 * LANDED: with want_landed, the newest one must reach the last post (after
 * the quiesce; rdma may still hold its completion for a moment); without,
 * a stream provider (tcp, shm) must send none (rdma reports it anyway).
 */
static int check_landed(const char *name, const struct case_opts *o, struct producer *p,
                        bool stream)
{
	const char *why = p->landed_bad;
	int64_t deadline = rf_now_ms() + 10000;

	while (!why && o->landed && p->c && p->posted_any &&
	       (!p->landed_events || p->landed_seq < p->last_posted) && rf_now_ms() < deadline)
		producer_events(p, 20);
	if (!why && o->landed && p->posted_any &&
	    (!p->landed_events || p->landed_seq < p->last_posted))
		why = "the last post never landed";
	if (!why && !o->landed && stream && p->landed_events)
		why = "LANDED without asking";
	if (o->landed || why)
		printf("%-15s landed: %s (%" PRIu64 " events, last %" PRIu64
		       ", posted up to %" PRIu64 ")\n",
		       name, why ? why : "ok", p->landed_events, p->landed_seq, p->last_posted);
	return why ? -1 : 0;
}

static int check_final(struct run_ctx *r, const char *name, const struct producer *p,
                       const uint64_t *expect, int64_t t0, bool failed_before)
{
	struct hub_state st;
	int rc = hub_finish(r, &st), bad = rc != 0 || failed_before;

	for (int v = 0; v < MAX_VOLUMES; v++)
		if (st.next_index[v] != expect[v])
			bad = 1;
	bad |= st.errors != 0;
	printf("%-15s %s: applied %" PRIu64 " records (%" PRIu64 " bytes), replays %" PRIu64
	       ", errors %" PRIu64 ", per-volume next index %" PRIu64 "/%" PRIu64
	       " (expected %" PRIu64 "/%" PRIu64 "), reconnects %" PRIu64
	       ", ring-full waits %" PRIu64 ", %" PRId64 " ms\n",
	       name, bad ? "FAIL" : "ok", st.applied, st.bytes, st.replays, st.errors,
	       st.next_index[0], st.next_index[1], expect[0], expect[1], p ? p->reconnects : 0,
	       p ? p->enospc_waits : 0, rf_now_ms() - t0);
	fflush(stdout);
	return bad ? -1 : 0;
}

/*
 * The last hub's counters against what the producer did. Every post brings
 * at most one doorbell; every position the producer got was sent; with one
 * hub and one clean connection the attach, refusal and error counts are
 * exact. Returns 0 or -1 (the reason printed).
 */
static int check_fab(const struct run_ctx *r, const char *name, const struct case_opts *o,
                     const struct producer *p)
{
	bool one_hub = o->hub_crashes == 0,
	     clean = one_hub && !o->producer_crashes && !o->reconnects;
	uint64_t refused = o->bad_token ? 1 : 0;
	struct rf_fab_stats st;
	const char *why = NULL;

	if (fab_load(r->state, &st))
		why = "the hub left no counters";
	else if (st.completions == 0 || st.credits == 0 || st.credit_bytes == 0)
		why = "no completion, credit or credit byte counted";
	else if (!o->producer_crashes && st.completions > p->posts)
		why = "more completions than posts";
	else if (one_hub && st.credits < p->positions)
		why = "fewer credits than positions the producer received";
	else if (clean && (st.attaches != 1 || st.detaches > 1))
		why = "not exactly one attach";
	else if (clean && (st.refused != refused || st.errors != refused))
		why = "refusals or errors other than the refused token";
	printf("%-15s %s: fabric counters: attaches %" PRIu64 " detaches %" PRIu64
	       " refused %" PRIu64 " completions %" PRIu64 " (posts %" PRIu64 ") credits %" PRIu64
	       " (positions %" PRIu64 ") credit_bytes %" PRIu64 " errors %" PRIu64 "%s%s\n",
	       name, why ? "FAIL" : "ok", st.attaches, st.detaches, st.refused, st.completions,
	       p->posts, st.credits, p->positions, st.credit_bytes, st.errors, why ? ": " : "",
	       why ? why : "");
	fflush(stdout);
	return why ? -1 : 0;
}

/* Wait until the hub's state shows volume @vol past where it was. */
static int wait_for_progress(const char *state_path, uint32_t vol, int timeout_ms)
{
	int64_t deadline = rf_now_ms() + timeout_ms;
	struct hub_state st;
	uint64_t start;

	if (state_load(state_path, &st))
		return -EBADMSG;
	start = st.next_index[vol];
	while (rf_now_ms() < deadline) {
		usleep(10000);
		if (state_load(state_path, &st) == 0 && st.next_index[vol] > start)
			return 0;
	}
	return -ETIMEDOUT;
}

static int run_case(struct run_ctx *r, const char *name, const struct case_opts *o)
{
	struct producer p = {.url = r->url, .want_landed = o->landed};
	uint64_t expect[MAX_VOLUMES] = {0};
	int64_t t0 = rf_now_ms();
	int rc = 0, crash_every, rec_every;

	snprintf(r->ring, sizeof(r->ring), "%s/%s.ring", r->dir, name);
	snprintf(r->state, sizeof(r->state), "%s/%s.state", r->dir, name);
	snprintf(r->log, sizeof(r->log), "%s/%s.hub.log", r->dir, name);
	unlink(r->ring);
	unlink(r->state);
	r->ring_size = o->ring_size;
	r->max_payload = o->max_payload;
	p.max_payload = o->max_payload;
	if (hub_spawn(r) < 0)
		return -1;

	crash_every = o->hub_crashes ? (int)(o->records / (uint64_t)(o->hub_crashes + 1)) : 0;
	rec_every = o->reconnects ? (int)(o->records / (uint64_t)(o->reconnects + 1)) : 0;

	if (o->producer_crashes) {
		/* Volume 0 is written by children that are SIGKILLed mid-stream;
		 * the hub must hold a valid, contiguous prefix of each. Volume 1
		 * is then written by a producer that lives to the end. */
		for (int k = 0; k < o->producer_crashes; k++) {
			char maxp[32];
			pid_t child;

			/* fork + exec: a child may not reuse its parent's RDMA
			 * device handles, so it starts as a fresh process. */
			snprintf(maxp, sizeof(maxp), "%u", o->max_payload);
			child = fork();
			if (child == 0) {
				execl(r->self, r->self, "produce", "--url", r->url, "--state",
				      r->state, "--max-payload", maxp, (char *)NULL);
				_exit(127);
			}
			/* Kill it mid-stream: once the hub has applied some of its
			 * records (bounded wait: exec and connect are slow in the
			 * VM), after a further random moment. */
			if (wait_for_progress(r->state, 0, 20000) < 0)
				RF_WARN("run", "%s: producer %d made no progress in 20 s", name, k);
			usleep((useconds_t)(mix64((uint64_t)k) % 150000));
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			usleep(200000); /* let the hub see the disconnect and drain */
		}
	}

	if (o->bad_token) {
		struct rf_fab_ring_info info;
		struct rf_fab_conn *bad = NULL;

		rc = rf_fab_connect(r->url, TOKEN ^ 0xbad, 5000, &bad, &info);
		rf_fab_close(&bad);
		if (rc != -ENOENT) {
			RF_ERR("run", "%s: a bad token got %d, not -ENOENT", name, rc);
			rc = -1;
		} else {
			rc = 0;
		}
	}
	if (rc == 0)
		rc = producer_connect(&p);
	if (o->producer_crashes && rc == 0) {
		/* The attach drained the ring: the state holds how far volume 0
		 * got, and nothing past it may appear later. */
		struct hub_state st;

		if (state_load(r->state, &st))
			rc = -EBADMSG;
		expect[0] = st.next_index[0];
		if (expect[0] == 0) {
			RF_ERR("run", "%s: the killed producers got no record through", name);
			rc = -1;
		}
	}
	if (o->backpressure && rc == 0) {
		/* Hold the hub: the producer must be refused (-ENOSPC) once the
		 * ring is full, and never overwrite an unconsumed record. */
		uint64_t posted = 0;

		kill(r->hub, SIGUSR1);
		usleep(200000);
		for (;; posted++) {
			rc = producer_post(&p, 1, expect[1]);
			if (rc)
				break;
			expect[1]++;
			producer_events(&p, 0);
		}
		if (rc != -ENOSPC || posted == 0) {
			RF_ERR("run",
			       "%s: expected -ENOSPC after filling the ring, got %d after %" PRIu64,
			       name, rc, posted);
			rc = -1;
		} else {
			printf("%-15s ring full after %" PRIu64 " records (%" PRIu64
			       " bytes free): producer refused, as it must be\n",
			       name, posted, rf_ring_producer_free(p.rp));
			rc = 0;
		}
		kill(r->hub, SIGUSR1); /* release */
	}
	for (uint64_t i = 0; i < o->records && rc == 0; i++) {
		rc = producer_put(&p, 1, expect[1], false);
		if (rc)
			break;
		expect[1]++;
		if (crash_every && i % (uint64_t)crash_every == (uint64_t)crash_every - 1 &&
		    i + 1 < o->records) {
			hub_crash(r);
			if (hub_spawn(r) < 0)
				rc = -1;
		}
		if (rec_every && i % (uint64_t)rec_every == (uint64_t)rec_every - 1 &&
		    i + 1 < o->records) {
			p.reconnects++;
			rc = producer_connect(&p);
		}
		if (rc == 0)
			producer_events(&p, 0); /* a death shows on the next post */
	}
	if (rc == 0)
		rc = producer_quiesce(&p, 60000);
	if (rc) {
		if (rc != -1)
			RF_ERR("run", "%s: producer failed: %s", name, strerror(-rc));
		rc = -1;
	}
	if (rc == 0 && check_landed(name, o, &p, strncmp(r->url, "rdma://", 7) != 0))
		rc = -1;
	if (check_final(r, name, &p, expect, t0, rc != 0))
		rc = -1;
	else if (check_fab(r, name, o, &p))
		rc = -1;
	producer_free(&p);
	return rc;
}

static const struct {
	const char *name;
	struct case_opts o;
} cases[] = {
    {"ordering",
     {.ring_size = 8 << 20, .max_payload = 256 << 10, .records = 3000, .bad_token = true}},
    {"landed", {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 2000, .landed = true}},
    {"wrap", {.ring_size = 256 << 10, .max_payload = 16 << 10, .records = 4000}},
    {"backpressure",
     {.ring_size = 256 << 10, .max_payload = 8 << 10, .records = 500, .backpressure = true}},
    {"sizes", {.ring_size = 64 << 20, .max_payload = 16 << 20, .records = 40}},
    {"reconnect",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 2000, .reconnects = 5}},
    {"hub-crash",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 2000, .hub_crashes = 5}},
    {"producer-crash",
     {.ring_size = 1 << 20, .max_payload = 32 << 10, .records = 300, .producer_crashes = 3}},
};

static int run_main(const char *self, const char *url, const char *dir, char **only, int nonly)
{
	struct run_ctx r = {.self = self, .url = url, .dir = dir};
	int failed = 0, ran = 0;

	signal(SIGPIPE, SIG_IGN);
	printf("conformance: %s, ring files in %s\n", url, dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool want = nonly == 0;

		for (int k = 0; k < nonly; k++)
			want |= strcmp(only[k], cases[i].name) == 0;
		if (!want)
			continue;
		ran++;
		if (run_case(&r, cases[i].name, &cases[i].o)) {
			failed++;
			if (r.hub > 0)
				hub_crash(&r);
		}
	}
	printf("conformance: %d of %d cases passed on %s\n", ran - failed, ran, url);
	return failed || ran == 0 ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: rf-fabric-conformance run --url URL --dir DIR [--case NAME]...\n"
	        "       rf-fabric-conformance hub --url URL --ring FILE --state FILE "
	        "--max-payload N --ring-size N\n"
	        "       rf-fabric-conformance produce --url URL --state FILE --max-payload N\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
	                                     {"dir", required_argument, NULL, 'd'},
	                                     {"case", required_argument, NULL, 'c'},
	                                     {"ring", required_argument, NULL, 'r'},
	                                     {"state", required_argument, NULL, 's'},
	                                     {"max-payload", required_argument, NULL, 'm'},
	                                     {"ring-size", required_argument, NULL, 'z'},
	                                     {"debug", no_argument, NULL, 'D'},
	                                     {NULL, 0, NULL, 0}};
	const char *url = NULL, *dir = NULL, *ring = NULL, *state = NULL;
	char *only[16];
	int nonly = 0, c;
	uint32_t maxp = 0;
	uint64_t rsize = 0;
	char self[4096];
	ssize_t n;

	if (argc < 2) {
		usage();
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'c':
			if (nonly < 16)
				only[nonly++] = optarg;
			break;
		case 'r':
			ring = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'm':
			maxp = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'z':
			rsize = strtoull(optarg, NULL, 0);
			break;
		case 'D':
			rf_log_set_level(RF_LOG_DEBUG);
			break;
		default:
			usage();
			return 2;
		}
	}
	rf_log_set_program(argv[1]);
	if (strcmp(argv[1], "hub") == 0 && url && ring && state && maxp && rsize)
		return hub_main(url, ring, state, maxp, rsize);
	if (strcmp(argv[1], "produce") == 0 && url && state && maxp)
		return produce_main(url, state, maxp);
	if (strcmp(argv[1], "run") == 0 && url && dir) {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return 2;
		self[n] = '\0';
		return run_main(self, url, dir, only, nonly);
	}
	usage();
	return 2;
}

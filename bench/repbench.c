/* SPDX-License-Identifier: MIT */
/*
 * repbench: drives librepagent directly (no NBD in the way) against a
 * running rephubd and measures what a guest's writes cost.
 *
 *   repbench --hub HOST:PORT --dir DIR [--hub-pid PID] [--agents N]
 *            [--volumes N] [--vol-size BYTES] [--record-size BYTES] [--qd N]
 *            [--threads N] [--pattern seq|rand] [--seconds S | --writes N]
 *            [--disk mem|FILE] [--sync-only] [--sync-timeout S]
 *            [--prefix NAME] [--json FILE] [-v]
 *
 * (--poll-us US is still accepted and ignored: the poller no longer polls.)
 *
 * Each agent (rf_agent_new, agent id PREFIX-aI) protects --volumes volumes
 * named PREFIX-aI-vJ; the hub's configuration must list them. The volumes'
 * "local disks" are memory (default) or, for one volume, a file; the agent's
 * read callback serves the initial sync and resends from them.
 *
 * The run: start the agents, wait until every volume is PROTECTED (the
 * initial sync, timed), then writer threads loop over write_begin / apply
 * to the local disk / write_end, with at most --qd writes per agent that
 * the hub has not made durable yet. The durable-ack latency of a write runs
 * from its write_begin to the moment a poller thread sees the agent's
 * durable_seq cover the write's record: one poller per agent, blocked in
 * rf_agent_wait_durable() until the agent's thread reports that the
 * oldest write not yet durable is (no polling, so the bench's own CPU
 * stays off the cores the agent and the hub share). librepagent does not return a
 * write's sequence: each write_end is numbered under a per-agent lock, and
 * the n-th write after the warm-up is the n-th record the agent posts after
 * it (PAD records at the ring's wrap take sequences too and are subtracted:
 * status next_seq - records). That holds while the agent posts nothing
 * else (no resend, no sync read, no split record), which is checked at the
 * end ("seq_map_exact").
 *
 * Prints one JSON object (bench/README.md). A benchmark, never a timed test.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "hist.h"
#include "repfabric/agent.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"

#define DRAIN_TIMEOUT_MS 30000
#define POLLER_WAIT_MS   100 /* a poller re-checks g_done at least this often */
#define WRITES_TIMEOUT_S 300
#define MAX_AGENTS       64

static void sleep_us(unsigned us)
{
	struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000};

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ histogram */

/* ------------------------------------------------------------ small bits */

/* VmHWM / VmRSS of /proc/PID/status in KiB (pid 0: self); -1 if unknown. */
static long proc_mem_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long kb = -1;
	FILE *f;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			kb = strtol(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

/* Reset the peak RSS of PID (0: self); false when not allowed. */
static bool peak_rss_reset(pid_t pid)
{
	char path[64];
	int fd;
	bool ok;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/clear_refs");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

/* utime + stime of PID in seconds (*@sys: stime); -1 when unreadable. */
static double proc_cpu_s(pid_t pid, double *sys)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* comm may hold blanks */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	if (sys)
		*sys = (double)st / (double)sysconf(_SC_CLK_TCK);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process (*@sys: system time). */
static double self_cpu_s(double *sys)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	if (sys)
		*sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------ state */

struct opts {
	const char *hub, *dir, *disk, *prefix, *json;
	pid_t hub_pid;
	unsigned agents, vols, qd, threads;
	uint64_t vol_size, writes;
	uint32_t rec;
	bool rand, sync_only;
	double seconds, sync_timeout;
};

struct vol {
	struct rf_agent_vol *v;
	uint8_t *mem; /* memory disk, or NULL */
	int fd;       /* file disk, or -1 */
	uint64_t size;
	char name[100], bitmap[700];
};

struct slot {
	uint64_t t0; /* write_begin of the write with this ordinal */
};

struct agent {
	struct rf_agent *a;
	struct vol *vols;
	unsigned nvols;
	char id[80];
	/* numbering: ordinals in write_end order */
	pthread_mutex_t seq_mu;
	pthread_cond_t cv_issued; /* with seq_mu: next_ord moved, or g_done */
	uint64_t next_ord;
	struct slot *slots;
	uint64_t slot_mask;
	/* credits: writes issued but not durable */
	pthread_mutex_t mu;
	pthread_cond_t cv_credit;
	unsigned outstanding;
	uint64_t acked; /* ordinals below this are durable (written by the poller) */
	uint64_t seq0;
	pthread_t poller;
	bool poller_started;
	double poller_cpu_s; /* the poller thread's CPU time (the bench's own overhead) */
	uint64_t last_durable_ns;
	struct hist dur;
	struct rf_agent_status st0;
};

struct writer {
	const struct opts *o;
	struct agent *ag;
	unsigned id;
	pthread_t th;
	struct hist post;
	uint64_t writes;
	uint64_t rng;
	uint8_t *buf;
	double cpu_s;
	int rc;
};

static atomic_int g_stop;      /* writers: stop issuing */
static atomic_int g_done;      /* pollers: exit */
static uint64_t g_writes_left; /* --writes: budget shared by writers */
static pthread_mutex_t g_budget_mu = PTHREAD_MUTEX_INITIALIZER;

static int disk_read(void *ctx, void *buf, uint32_t len, uint64_t off)
{
	struct vol *v = ctx;

	if (off + len > v->size)
		return -EINVAL;
	if (v->mem) {
		memcpy(buf, v->mem + off, len);
		return 0;
	}
	for (uint32_t done = 0; done < len;) {
		ssize_t n = pread(v->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) {
			memset((uint8_t *)buf + done, 0, len - done);
			break;
		}
		done += (uint32_t)n;
	}
	return 0;
}

static int disk_write(struct vol *v, const void *buf, uint32_t len, uint64_t off)
{
	if (v->mem) {
		memcpy(v->mem + off, buf, len);
		return 0;
	}
	for (uint32_t done = 0; done < len;) {
		ssize_t n =
		    pwrite(v->fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (uint32_t)n;
	}
	return 0;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static bool take_budget(void)
{
	bool ok = true;

	if (g_writes_left == UINT64_MAX)
		return true;
	pthread_mutex_lock(&g_budget_mu);
	if (g_writes_left == 0)
		ok = false;
	else
		g_writes_left--;
	pthread_mutex_unlock(&g_budget_mu);
	return ok;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct agent *ag = w->ag;
	const struct opts *o = w->o;
	uint64_t nrec_per_vol = ag->vols[0].size / o->rec;
	uint64_t seqpos = (uint64_t)w->id * 7919u;
	unsigned vi = w->id % ag->nvols;

	while (!g_stop) {
		struct vol *v;
		uint64_t off, t0;
		int rc;

		pthread_mutex_lock(&ag->mu);
		while (ag->outstanding >= o->qd && !g_stop)
			pthread_cond_wait(&ag->cv_credit, &ag->mu);
		if (g_stop) {
			pthread_mutex_unlock(&ag->mu);
			break;
		}
		ag->outstanding++;
		pthread_mutex_unlock(&ag->mu);
		if (!take_budget()) {
			pthread_mutex_lock(&ag->mu);
			ag->outstanding--;
			pthread_mutex_unlock(&ag->mu);
			break;
		}

		v = &ag->vols[vi];
		vi = (vi + 1) % ag->nvols;
		if (o->rand)
			off = (xorshift(&w->rng) % nrec_per_vol) * o->rec;
		else
			off = (seqpos++ % nrec_per_vol) * o->rec;
		memcpy(w->buf, &w->writes, sizeof(w->writes)); /* new content each time */

		t0 = rf_now_ns();
		rc = rf_agent_write_begin(v->v, off, o->rec);
		if (rc < 0) {
			w->rc = rc;
			g_stop = 1;
			pthread_mutex_lock(&ag->mu);
			ag->outstanding--;
			pthread_mutex_unlock(&ag->mu);
			break;
		}
		rc = disk_write(v, w->buf, o->rec, off);
		pthread_mutex_lock(&ag->seq_mu);
		ag->slots[ag->next_ord & ag->slot_mask].t0 = t0;
		ag->next_ord++;
		rf_agent_write_end(v->v, off, o->rec, w->buf, RF_AGENT_WRITE, rc == 0);
		pthread_cond_signal(&ag->cv_issued); /* the poller, if it waits for writes */
		pthread_mutex_unlock(&ag->seq_mu);
		hist_add(&w->post, rf_now_ns() - t0);
		if (rc < 0) { /* a failed local write: no record, the chunk is resent */
			w->rc = rc;
			g_stop = 1;
			break;
		}
		w->writes++;
	}
	pthread_mutex_lock(&ag->mu);
	pthread_cond_broadcast(&ag->cv_credit);
	pthread_mutex_unlock(&ag->mu);
	w->cpu_s = thread_cpu_s();
	return NULL;
}

/*
 * One poller per agent: waits (on cv_issued) while the agent has no write
 * that is not durable yet, else blocks in rf_agent_wait_durable() until
 * the agent's durable_seq covers the oldest such write; then stamps every
 * write it covers and hands the credits back.
 */

/* PADs take sequences too: next_seq - seq0 = records + PADs posted since
 * the warm-up. Subtracting every PAD posted so far is exact when the PADs
 * are durable, one write short while a PAD is in flight (that write is
 * credited once the durable_seq passes the PAD as well). */
static uint64_t pads_since(const struct agent *ag, const struct rf_agent_status *st)
{
	return (st->next_seq - ag->seq0) - (st->records - ag->st0.records);
}

/* Stamp the writes that @st's durable_seq covers; returns how many. */
static unsigned ack_agent(struct agent *ag, const struct rf_agent_status *st, uint64_t issued)
{
	uint64_t now = rf_now_ns(), cover, pads = pads_since(ag, st);
	unsigned n;

	cover = st->durable_seq > ag->seq0 ? st->durable_seq - ag->seq0 : 0;
	cover = cover > pads ? cover - pads : 0;
	if (cover > issued)
		cover = issued;
	if (cover <= ag->acked)
		return 0;
	n = (unsigned)(cover - ag->acked);
	pthread_mutex_lock(&ag->seq_mu);
	for (uint64_t i = ag->acked; i < cover; i++)
		hist_add(&ag->dur, now - ag->slots[i & ag->slot_mask].t0);
	pthread_mutex_unlock(&ag->seq_mu);
	ag->acked = cover;
	pthread_mutex_lock(&ag->mu);
	ag->outstanding -= n;
	ag->last_durable_ns = now;
	pthread_cond_broadcast(&ag->cv_credit);
	pthread_mutex_unlock(&ag->mu);
	return n;
}

static void *poller_main(void *arg)
{
	struct agent *ag = arg;

	for (;;) {
		struct rf_agent_status st;
		uint64_t issued;
		int rc;

		pthread_mutex_lock(&ag->seq_mu);
		while (ag->next_ord == ag->acked && !atomic_load(&g_done))
			pthread_cond_wait(&ag->cv_issued, &ag->seq_mu);
		issued = ag->next_ord;
		pthread_mutex_unlock(&ag->seq_mu);
		/* main sets g_done once every write is durable (or the drain
		 * timed out): nothing left to stamp */
		if (atomic_load(&g_done))
			break;
		rf_agent_status(ag->a, &st);
		if (ack_agent(ag, &st, issued))
			continue;
		/* The oldest write not durable (ordinal acked) is covered once
		 * durable_seq - seq0 - pads > acked. */
		rc = rf_agent_wait_durable(ag->a, ag->seq0 + pads_since(ag, &st) + ag->acked + 1,
		                           POLLER_WAIT_MS);
		if (rc == 0) {
			rf_agent_status(ag->a, &st);
			ack_agent(ag, &st, issued);
		} else if (rc != -ETIMEDOUT) {
			fprintf(stderr, "repbench: %s: waiting for durability: %s\n", ag->id,
			        strerror(-rc));
			break;
		}
	}
	ag->poller_cpu_s = thread_cpu_s();
	return NULL;
}

/* Wait until every volume of every agent is PROTECTED and the agent idle. */
static int wait_protected(struct agent *ags, unsigned n, double timeout_s, bool need_idle)
{
	uint64_t deadline = rf_now_ns() + (uint64_t)(timeout_s * 1e9);

	for (;;) {
		bool all = true;

		for (unsigned i = 0; i < n && all; i++) {
			struct rf_agent_status st;

			for (unsigned j = 0; j < ags[i].nvols && all; j++) {
				struct rf_agent_vol_status vs;

				rf_agent_vol_status(ags[i].vols[j].v, &vs);
				if (!vs.attached || vs.state != RF_VOL_PROTECTED)
					all = false;
			}
			if (all && need_idle) {
				rf_agent_status(ags[i].a, &st);
				if (!st.attached || st.queued || st.durable_seq != st.next_seq)
					all = false;
			}
		}
		if (all)
			return 0;
		if (rf_now_ns() > deadline)
			return -ETIMEDOUT;
		sleep_us(1000);
	}
}

static void print_lat(FILE *f, const char *name, const struct hist *h, bool comma)
{
	fprintf(f,
	        "  \"%s\": {\"samples\": %" PRIu64 ", \"p50\": %.2f, \"p99\": %.2f, "
	        "\"p99_9\": %.2f, \"max\": %.2f, \"mean\": %.2f}%s\n",
	        name, h->n, hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99),
	        hist_quantile_us(h, 0.999), (double)h->max / 1e3,
	        h->n ? (double)h->sum / (double)h->n / 1e3 : 0.0, comma ? "," : "");
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: repbench --hub HOST:PORT --dir DIR [--hub-pid PID] [--agents N]\n"
	        "                [--volumes N] [--vol-size BYTES] [--record-size BYTES] [--qd N]\n"
	        "                [--threads N] [--pattern seq|rand] [--seconds S | --writes N]\n"
	        "                [--disk mem|FILE] [--sync-only] [--sync-timeout S]\n"
	        "                [--prefix NAME] [--json FILE] [-v]\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {{"hub", required_argument, NULL, 'H'},
	                                      {"dir", required_argument, NULL, 'd'},
	                                      {"hub-pid", required_argument, NULL, 'p'},
	                                      {"agents", required_argument, NULL, 'a'},
	                                      {"volumes", required_argument, NULL, 'V'},
	                                      {"vol-size", required_argument, NULL, 'S'},
	                                      {"record-size", required_argument, NULL, 's'},
	                                      {"qd", required_argument, NULL, 'q'},
	                                      {"threads", required_argument, NULL, 'T'},
	                                      {"pattern", required_argument, NULL, 'P'},
	                                      {"seconds", required_argument, NULL, 't'},
	                                      {"writes", required_argument, NULL, 'n'},
	                                      {"disk", required_argument, NULL, 'D'},
	                                      {"sync-only", no_argument, NULL, 'O'},
	                                      {"sync-timeout", required_argument, NULL, 'W'},
	                                      {"prefix", required_argument, NULL, 'x'},
	                                      {"poll-us", required_argument, NULL, 'u'},
	                                      {"json", required_argument, NULL, 'j'},
	                                      {NULL, 0, NULL, 0}};
	struct opts o = {.disk = "mem",
	                 .prefix = "rb",
	                 .agents = 1,
	                 .vols = 1,
	                 .qd = 1,
	                 .vol_size = 256ull << 20,
	                 .rec = 4096,
	                 .seconds = 3.0,
	                 .sync_timeout = 300.0};
	struct agent *ags = NULL;
	struct writer *ws = NULL;
	unsigned nw = 0;
	double poller_cpu = 0;
	struct hist post = {0}, dur = {0};
	uint64_t t_sync0, t_sync1 = 0, t0 = 0, t_end = 0, writes = 0, total_vol_bytes;
	double cpu0 = 0, cpu1 = 0, hcpu0 = -1, hcpu1 = -1, hcpu_sync0 = -1, hcpu_sync1 = -1;
	double cpu_sync0, cpu_sync1 = 0, sys0 = 0, sys1 = 0, hsys0 = 0, hsys1 = 0, wcpu = 0;
	bool seq_exact = true, hub_hwm_reset = false, writes_given = false;
	long self_hwm, hub_hwm = -1, hub_rss = -1, self_rss;
	int c, rc = 1, err = 0;
	const char *stage = "done";
	FILE *out = stdout;

	rf_log_set_level(RF_LOG_WARN);
	while ((c = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
		switch (c) {
		case 'H':
			o.hub = optarg;
			break;
		case 'd':
			o.dir = optarg;
			break;
		case 'p':
			o.hub_pid = (pid_t)atoi(optarg);
			break;
		case 'a':
			o.agents = (unsigned)atoi(optarg);
			break;
		case 'V':
			o.vols = (unsigned)atoi(optarg);
			break;
		case 'S':
			o.vol_size = bench_parse_bytes_all(optarg);
			break;
		case 's':
			o.rec = (uint32_t)bench_parse_bytes_all(optarg);
			break;
		case 'q':
			o.qd = (unsigned)atoi(optarg);
			break;
		case 'T':
			o.threads = (unsigned)atoi(optarg);
			break;
		case 'P':
			if (strcmp(optarg, "rand") == 0)
				o.rand = true;
			else if (strcmp(optarg, "seq") != 0) {
				usage();
				return 2;
			}
			break;
		case 't':
			o.seconds = atof(optarg);
			break;
		case 'n':
			o.writes = strtoull(optarg, NULL, 10);
			writes_given = true;
			break;
		case 'D':
			o.disk = optarg;
			break;
		case 'O':
			o.sync_only = true;
			break;
		case 'W':
			o.sync_timeout = atof(optarg);
			break;
		case 'x':
			o.prefix = optarg;
			break;
		case 'u':
			/* obsolete: the poller blocks in rf_agent_wait_durable() */
			break;
		case 'j':
			o.json = optarg;
			break;
		case 'v':
			rf_log_set_level(rf_log_get_level() == RF_LOG_WARN ? RF_LOG_INFO
			                                                   : RF_LOG_DEBUG);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (o.threads == 0)
		o.threads = o.qd < 4 ? o.qd : 4;
	if (!o.hub || !o.dir || optind != argc || o.agents == 0 || o.agents > MAX_AGENTS ||
	    o.vols == 0 || o.vols > RF_AGENT_MAX_VOLS || o.qd == 0 || o.threads == 0 ||
	    o.threads > o.qd || strlen(o.prefix) > 40 || o.rec == 0 || o.rec % 512 ||
	    o.vol_size < o.rec || o.vol_size % 512 || (writes_given && o.writes == 0) ||
	    o.seconds <= 0 || (strcmp(o.disk, "mem") != 0 && (o.agents != 1 || o.vols != 1))) {
		usage();
		return 2;
	}
	g_writes_left = writes_given ? o.writes : UINT64_MAX;
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	ags = calloc(o.agents, sizeof(*ags));
	if (!ags)
		goto oom;
	for (unsigned i = 0; i < o.agents; i++) {
		struct agent *ag = &ags[i];
		uint64_t slots = 1;

		while (slots < 2ull * o.qd)
			slots <<= 1;
		ag->nvols = o.vols;
		ag->slot_mask = slots - 1;
		ag->slots = calloc(slots, sizeof(*ag->slots));
		ag->vols = calloc(o.vols, sizeof(*ag->vols));
		if (!ag->slots || !ag->vols)
			goto oom;
		for (unsigned j = 0; j < o.vols; j++)
			ag->vols[j].fd = -1;
		pthread_mutex_init(&ag->mu, NULL);
		pthread_mutex_init(&ag->seq_mu, NULL);
		pthread_cond_init(&ag->cv_issued, NULL);
		pthread_cond_init(&ag->cv_credit, NULL);
		snprintf(ag->id, sizeof(ag->id), "%s-a%u", o.prefix, i);
		err = rf_agent_new(&ag->a, o.hub, ag->id, NULL);
		if (err < 0) {
			fprintf(stderr, "repbench: rf_agent_new %s: %s\n", ag->id, strerror(-err));
			goto out;
		}
		for (unsigned j = 0; j < o.vols; j++) {
			struct vol *v = &ag->vols[j];
			struct rf_agent_vol_conf vc;

			v->size = o.vol_size;
			snprintf(v->name, sizeof(v->name), "%s-v%u", ag->id, j);
			snprintf(v->bitmap, sizeof(v->bitmap), "%s/%s.bitmap", o.dir, v->name);
			unlink(v->bitmap); /* a fresh start: nothing dirty */
			if (strcmp(o.disk, "mem") == 0) {
				v->mem = calloc(1, o.vol_size);
				if (!v->mem)
					goto oom;
			} else {
				struct stat sb;

				v->fd = open(o.disk, O_RDWR | O_CLOEXEC);
				if (v->fd < 0 || fstat(v->fd, &sb) < 0) {
					fprintf(stderr, "repbench: %s: %s\n", o.disk,
					        strerror(errno));
					goto out;
				}
				v->size = (uint64_t)sb.st_size & ~511ull;
				if (v->size < o.rec) {
					fprintf(stderr, "repbench: %s is too small\n", o.disk);
					goto out;
				}
			}
			vc = (struct rf_agent_vol_conf){.name = v->name,
			                                .size = v->size,
			                                .vol_id = j + 1,
			                                .bitmap_path = v->bitmap,
			                                .read = disk_read,
			                                .read_ctx = v};
			err = rf_agent_add_volume(ag->a, &vc, &v->v);
			if (err < 0) {
				fprintf(stderr, "repbench: add volume %s: %s\n", v->name,
				        strerror(-err));
				goto out;
			}
		}
	}
	total_vol_bytes = (uint64_t)o.agents * o.vols * ags[0].vols[0].size;

	/* Initial sync: from start to every volume PROTECTED. */
	if (o.hub_pid)
		hcpu_sync0 = proc_cpu_s(o.hub_pid, NULL);
	cpu_sync0 = self_cpu_s(NULL);
	t_sync0 = rf_now_ns();
	for (unsigned i = 0; i < o.agents; i++) {
		err = rf_agent_start(ags[i].a);
		if (err < 0) {
			fprintf(stderr, "repbench: start %s: %s\n", ags[i].id, strerror(-err));
			goto out;
		}
	}
	err = wait_protected(ags, o.agents, o.sync_timeout, false);
	t_sync1 = rf_now_ns();
	cpu_sync1 = self_cpu_s(NULL);
	if (o.hub_pid)
		hcpu_sync1 = proc_cpu_s(o.hub_pid, NULL);
	if (err < 0) {
		fprintf(stderr, "repbench: volumes not PROTECTED after %.0f s\n", o.sync_timeout);
		stage = "sync";
	} else if (!o.sync_only) {
		err = wait_protected(ags, o.agents, 30.0, true);
		if (err < 0) {
			fprintf(stderr, "repbench: agents not idle after the sync\n");
			stage = "idle after sync";
			goto report;
		}
		nw = o.agents * o.threads;
		ws = calloc(nw, sizeof(*ws));
		if (!ws)
			goto oom;
		for (unsigned i = 0; i < o.agents; i++) {
			rf_agent_status(ags[i].a, &ags[i].st0);
			ags[i].seq0 = ags[i].st0.next_seq;
		}
		for (unsigned k = 0; k < nw; k++) {
			ws[k].o = &o;
			ws[k].ag = &ags[k / o.threads];
			ws[k].id = k % o.threads;
			ws[k].rng = 0x9e3779b97f4a7c15ull * (k + 1);
			ws[k].buf = malloc(o.rec);
			if (!ws[k].buf)
				goto oom;
			for (uint32_t b = 0; b < o.rec; b++)
				ws[k].buf[b] = (uint8_t)xorshift(&ws[k].rng);
		}
		peak_rss_reset(0);
		if (o.hub_pid) {
			hub_hwm_reset = peak_rss_reset(o.hub_pid);
			hcpu0 = proc_cpu_s(o.hub_pid, &hsys0);
		}
		cpu0 = self_cpu_s(&sys0);
		t0 = rf_now_ns();
		for (unsigned i = 0; i < o.agents; i++) {
			if (pthread_create(&ags[i].poller, NULL, poller_main, &ags[i]) != 0) {
				fprintf(stderr, "repbench: cannot start a poller thread\n");
				err = -EAGAIN;
				stage = "poller";
				g_stop = 1; /* the writers issue nothing; the pollers are joined */
				break;
			}
			ags[i].poller_started = true;
		}
		for (unsigned k = 0; k < nw; k++)
			if (pthread_create(&ws[k].th, NULL, writer_main, &ws[k]) != 0) {
				g_stop = 1;
				nw = k;
				break;
			}
		{
			/* --seconds: the run's length; --writes: until the budget is
			 * taken, bounded by WRITES_TIMEOUT_S (a stalled hub must not
			 * hang the benchmark) */
			uint64_t end =
			    t0 + (uint64_t)((writes_given ? WRITES_TIMEOUT_S : o.seconds) * 1e9);

			while (!g_stop && rf_now_ns() < end) {
				if (writes_given) {
					bool spent;

					pthread_mutex_lock(&g_budget_mu);
					spent = g_writes_left == 0;
					pthread_mutex_unlock(&g_budget_mu);
					if (spent)
						break;
				}
				sleep_us(2000);
			}
			if (writes_given && rf_now_ns() >= end) {
				fprintf(stderr, "repbench: --writes not done after %d s\n",
				        WRITES_TIMEOUT_S);
				err = -ETIMEDOUT;
				stage = "writes";
			}
			g_stop = 1;
		}
		for (unsigned i = 0; i < o.agents; i++) {
			pthread_mutex_lock(&ags[i].mu);
			pthread_cond_broadcast(&ags[i].cv_credit);
			pthread_mutex_unlock(&ags[i].mu);
		}
		for (unsigned k = 0; k < nw; k++)
			pthread_join(ws[k].th, NULL);
		/* Drain: every issued write durable (or time out). */
		{
			uint64_t deadline = rf_now_ns() + DRAIN_TIMEOUT_MS * 1000000ull;
			bool drained = false;

			while (!drained && rf_now_ns() < deadline) {
				drained = true;
				for (unsigned i = 0; i < o.agents; i++) {
					pthread_mutex_lock(&ags[i].mu);
					if (ags[i].outstanding)
						drained = false;
					pthread_mutex_unlock(&ags[i].mu);
				}
				if (!drained)
					sleep_us(1000);
			}
			if (!drained) {
				fprintf(stderr, "repbench: writes not durable after %d ms\n",
				        DRAIN_TIMEOUT_MS);
				err = -ETIMEDOUT;
				stage = "drain";
			}
		}
		g_done = 1; /* also after a drain timeout: stop waiting */
		for (unsigned i = 0; i < o.agents; i++) {
			pthread_mutex_lock(&ags[i].seq_mu);
			pthread_cond_broadcast(&ags[i].cv_issued);
			pthread_mutex_unlock(&ags[i].seq_mu);
		}
		for (unsigned i = 0; i < o.agents; i++)
			if (ags[i].poller_started) {
				pthread_join(ags[i].poller, NULL);
				poller_cpu += ags[i].poller_cpu_s;
			}
		cpu1 = self_cpu_s(&sys1);
		if (o.hub_pid)
			hcpu1 = proc_cpu_s(o.hub_pid, &hsys1);
		for (unsigned i = 0; i < o.agents; i++) {
			struct rf_agent_status st;

			rf_agent_status(ags[i].a, &st);
			if (st.records - ags[i].st0.records != ags[i].next_ord ||
			    st.resent_bytes != ags[i].st0.resent_bytes ||
			    st.sync_reads != ags[i].st0.sync_reads ||
			    st.overflow_writes != ags[i].st0.overflow_writes)
				seq_exact = false;
			if (ags[i].last_durable_ns > t_end)
				t_end = ags[i].last_durable_ns;
			hist_merge(&dur, &ags[i].dur);
		}
		for (unsigned k = 0; k < nw; k++) {
			hist_merge(&post, &ws[k].post);
			writes += ws[k].writes;
			wcpu += ws[k].cpu_s;
			if (ws[k].rc < 0 && err == 0)
				err = ws[k].rc;
		}
		if (t_end <= t0)
			t_end = rf_now_ns();
	}
report:
	self_hwm = proc_mem_kb(0, "VmHWM");
	self_rss = proc_mem_kb(0, "VmRSS");
	if (o.hub_pid) {
		hub_hwm = proc_mem_kb(o.hub_pid, "VmHWM");
		hub_rss = proc_mem_kb(o.hub_pid, "VmRSS");
	}

	if (o.json) {
		out = fopen(o.json, "w");
		if (!out) {
			fprintf(stderr, "repbench: %s: %s\n", o.json, strerror(errno));
			out = stdout;
		}
	}
	{
		double secs = (double)(t_end - t0) / 1e9, ssecs = (double)(t_sync1 - t_sync0) / 1e9;
		double bytes = (double)writes * o.rec, gb = bytes / 1e9;
		struct stat bst;
		double bm_per_tib;
		long long bm_file = -1;
		long hub_rss_file = -1, hub_rss_shmem = -1;

		/* one bit per RF_AGENT_CHUNK_SIZE; the file adds a header page */
		bm_per_tib = (double)(1ull << 40) / RF_AGENT_CHUNK_SIZE / 8;
		if (stat(ags[0].vols[0].bitmap, &bst) == 0)
			bm_file = (long long)bst.st_size;
		if (o.hub_pid) {
			hub_rss_file = proc_mem_kb(o.hub_pid, "RssFile");
			hub_rss_shmem = proc_mem_kb(o.hub_pid, "RssShmem");
		}
		fprintf(out, "{\n  \"tool\": \"repbench\",\n  \"mode\": \"%s\",\n",
		        o.sync_only ? "sync" : "write");
		fprintf(
		    out,
		    "  \"hub_addr\": \"%s\",\n  \"agents\": %u,\n  \"volumes_per_agent\": %u,\n"
		    "  \"vol_size\": %" PRIu64 ",\n  \"record_size\": %u,\n  \"qd\": %u,\n"
		    "  \"threads_per_agent\": %u,\n  \"pattern\": \"%s\",\n  \"disk\": \"%s\",\n"
		    "  \"poll_us\": 0,\n  \"poller\": \"wait\",\n",
		    o.hub, o.agents, o.vols, ags[0].vols[0].size, o.rec, o.qd, o.threads,
		    o.rand ? "rand" : "seq", strcmp(o.disk, "mem") == 0 ? "mem" : "file");
		fprintf(
		    out,
		    "  \"sync\": {\"bytes\": %" PRIu64 ", \"seconds\": %.6f, \"mb_per_s\": %.2f, "
		    "\"agent_cpu_s\": %.4f, \"hub_cpu_s\": %.4f},\n",
		    total_vol_bytes, ssecs, ssecs > 0 ? (double)total_vol_bytes / 1e6 / ssecs : 0,
		    cpu_sync1 - cpu_sync0,
		    hcpu_sync0 >= 0 && hcpu_sync1 >= 0 ? hcpu_sync1 - hcpu_sync0 : -1.0);
		fprintf(out,
		        "  \"writes\": %" PRIu64 ",\n  \"bytes\": %.0f,\n  \"seconds\": %.6f,\n"
		        "  \"mb_per_s\": %.2f,\n  \"records_per_s\": %.1f,\n",
		        writes, bytes, secs, secs > 0 ? bytes / 1e6 / secs : 0,
		        secs > 0 ? (double)writes / secs : 0);
		print_lat(out, "post_latency_us", &post, true);
		print_lat(out, "durable_latency_us", &dur, true);
		fprintf(out, "  \"seq_map_exact\": %s,\n", seq_exact ? "true" : "false");
		fprintf(
		    out,
		    "  \"agent\": {\"cpu_s\": %.4f, \"cpu_sys_s\": %.4f, \"poller_cpu_s\": %.4f, "
		    "\"writers_cpu_s\": %.4f, \"cpu_s_per_gb\": %.4f, \"max_rss_kb\": %ld, "
		    "\"rss_kb\": %ld, \"bitmap_bytes_per_tib\": %.0f, \"bitmap_file_bytes\": "
		    "%lld},\n",
		    cpu1 - cpu0, sys1 - sys0, poller_cpu, wcpu,
		    gb > 0 ? (cpu1 - cpu0 - poller_cpu) / gb : 0, self_hwm, self_rss, bm_per_tib,
		    bm_file);
		fprintf(out,
		        "  \"hub\": {\"pid\": %d, \"cpu_s\": %.4f, \"cpu_sys_s\": %.4f, "
		        "\"cpu_s_per_gb\": %.4f, "
		        "\"max_rss_kb\": %ld, \"max_rss_reset\": %s, \"rss_kb\": %ld, "
		        "\"rss_file_kb\": %ld, \"rss_shmem_kb\": %ld},\n",
		        (int)o.hub_pid, hcpu0 >= 0 && hcpu1 >= 0 ? hcpu1 - hcpu0 : -1.0,
		        hsys1 - hsys0,
		        hcpu0 >= 0 && hcpu1 >= 0 && gb > 0 ? (hcpu1 - hcpu0) / gb : -1.0, hub_hwm,
		        hub_hwm_reset ? "true" : "false", hub_rss, hub_rss_file, hub_rss_shmem);
		fprintf(out, "  \"status\": \"%s\",\n  \"stage\": \"%s\"\n}\n",
		        err ? strerror(-err) : "ok", stage);
		fprintf(
		    stderr,
		    "repbench: %u agent(s) x %u vol(s), %u B, qd %u: %.1f MB/s, durable p50 %.1f "
		    "us, sync %.1f MB/s\n",
		    o.agents, o.vols, o.rec, o.qd, secs > 0 ? bytes / 1e6 / secs : 0,
		    hist_quantile_us(&dur, 0.5),
		    ssecs > 0 ? (double)total_vol_bytes / 1e6 / ssecs : 0);
	}
	if (out != stdout)
		fclose(out);
	rc = err ? 1 : 0;
	goto out;
oom:
	fprintf(stderr, "repbench: out of memory or threads\n");
	rc = 1;
out:
	for (unsigned i = 0; ags && i < o.agents; i++) {
		rf_agent_destroy(&ags[i].a);
		for (unsigned j = 0; ags[i].vols && j < o.vols; j++) {
			free(ags[i].vols[j].mem);
			if (ags[i].vols[j].fd >= 0)
				close(ags[i].vols[j].fd);
		}
		free(ags[i].vols);
		free(ags[i].slots);
	}
	for (unsigned k = 0; ws && k < o.agents * o.threads; k++)
		free(ws[k].buf);
	free(ws);
	free(ags);
	return rc;
}

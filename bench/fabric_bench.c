/* SPDX-License-Identifier: MIT */
/*
 * rf-fabric-bench: throughput and latency of one transport provider, from a
 * producer posting ring records to a hub that drains them from a real ring.
 *
 *   rf-fabric-bench --url URL --dir DIR [--record-size LIST] [--seconds S |
 *                   --records N] [--ring-size BYTES] [--qd1] [--memcpy-anchor]
 *                   [--json FILE] [-v]
 *
 * For every record size, this program forks and execs itself as the hub
 * (hidden "--hub" mode: a fresh ring file in DIR; on each doorbell it peeks
 * and advances every valid record, persists the head once and publishes the
 * position; nothing is applied to a volume) and is the producer: it encodes
 * records with rf_ring_producer_encode and posts them as fast as the ring
 * and the transport take them (or one at a time with --qd1, waiting for each
 * to become durable). It prints a JSON array, one object per record size;
 * bench/README.md explains the fields. A benchmark, never a timed test.
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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "hist.h"
#include "repfabric/fabric.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"
#include "repfabric/sockio.h"

#define TOKEN          0xbe4c4ull
#define MAX_SIZES      16
#define MAX_BUFS       64    /* encode buffers in flight */
#define DRAIN_TIMEOUT  30000 /* ms for the last records to become durable */
#define QD1_TIMEOUT    10000 /* ms for one record to become durable */
#define DEFAULT_RING   (16u << 20)
#define DEFAULT_SECS   3.0
#define HUB_EXIT_WAIT  10000 /* ms for the hub to exit after the producer left */
#define ANCHOR_MAX_SEC 1.0   /* memcpy anchor: at most this long ... */
#define ANCHOR_REC_SEC 0.25  /* ... and this long with --records */

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------ small bits */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static const char *fs_name(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0x01021994:
		return "tmpfs";
	case 0x958458f6:
		return "hugetlbfs";
	case 0xef53:
		return "ext4";
	case 0x58465342:
		return "xfs";
	case 0x9123683e:
		return "btrfs";
	case 0x794c7630:
		return "overlay";
	case 0x01021997:
		return "9p";
	default:
		return "other";
	}
}

/* Reset this process's peak RSS (Linux >= 4.0); false if not possible. */
static bool peak_rss_reset(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, "5", 1) == 1;
	close(fd);
	return ok;
}

/* Peak RSS in KiB since the last reset (VmHWM), else ru_maxrss. */
static long peak_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	struct rusage ru;

	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
				break;
		fclose(f);
	}
	if (kb >= 0)
		return kb;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* ------------------------------------------------------------------ hub */

struct hub {
	struct rf_ring *ring;
	const char *ring_path;
	struct rf_fab_peer *peer;
	bool served; /* a producer attached once: the next DETACHED ends the run */
	bool done;
	uint64_t records, bytes, batches;
	struct rusage ru0, ru1;
};

static volatile sig_atomic_t hub_stop;

static void on_term(int sig)
{
	hub_stop = 1;
}

static int hub_attach(void *ctx, uint64_t token, struct rf_fab_ring_mem *mem)
{
	struct hub *h = ctx;
	struct rf_ring_info info;
	int rc;

	if (token != TOKEN)
		return -ENOENT;
	if (h->peer || h->served)
		return -EBUSY;
	rc = rf_ring_begin_session(h->ring, &info);
	if (rc)
		return rc;
	memset(mem, 0, sizeof(*mem));
	mem->data = (uint8_t *)rf_ring_base(h->ring) + rf_ring_data_offset(h->ring);
	mem->data_size = info.data_size;
	mem->path = h->ring_path;
	mem->data_off = rf_ring_data_offset(h->ring);
	mem->info.ring_id = info.ring_id;
	mem->info.data_size = info.data_size;
	mem->info.pos = (struct rf_fab_position){.durable_pos = info.head_pos,
	                                         .durable_seq = info.head_seq,
	                                         .head_pos = info.head_pos,
	                                         .head_seq = info.head_seq};
	return 0;
}

static const struct rf_fab_hub_ops hub_ops = {.attach = hub_attach};

/* Consume every valid record, persist the head once, publish. */
static int hub_drain(struct hub *h)
{
	struct rf_ring_record r;
	struct rf_fab_position pos;
	int n = 0, rc;

	while (rf_ring_peek(h->ring, &r, NULL) == 0) {
		rc = rf_ring_advance(h->ring, &r);
		if (rc)
			return rc;
		h->records++;
		h->bytes += r.payload_len;
		n++;
	}
	if (n == 0)
		return 0;
	h->batches++;
	rc = rf_ring_persist_head(h->ring);
	if (rc)
		return rc;
	rf_ring_head(h->ring, &pos.head_pos, &pos.head_seq);
	pos.durable_pos = pos.head_pos;
	pos.durable_seq = pos.head_seq;
	if (h->peer)
		rf_fab_publish(h->peer, &pos);
	return n;
}

static int hub_main(const char *url, const char *ring_path, uint64_t ring_size,
                    const char *result_path)
{
	struct hub h = {.ring_path = ring_path};
	struct rf_fab_listener *l = NULL;
	FILE *f;
	int rc;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	rc = rf_ring_create(&h.ring, ring_path, ring_size);
	if (rc) {
		RF_ERR("hub", "cannot create the ring %s: %s", ring_path, strerror(-rc));
		return 1;
	}
	rc = rf_fab_listen(url, &hub_ops, &h, &l);
	if (rc) {
		RF_ERR("hub", "cannot listen on %s: %s", url, strerror(-rc));
		rf_ring_close(&h.ring);
		return 1;
	}
	printf("hub ready\n");
	fflush(stdout);
	getrusage(RUSAGE_SELF, &h.ru0);
	while (!hub_stop && !h.done) {
		struct rf_fab_hub_event evs[64];
		int n = rf_fab_listener_poll(l, evs, 64, 100);
		bool data = false;

		if (n < 0 && n != -EINTR) {
			rc = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			switch (evs[i].type) {
			case RF_FAB_HEV_ATTACHED:
				h.peer = evs[i].peer;
				h.served = true;
				getrusage(RUSAGE_SELF, &h.ru0);
				break;
			case RF_FAB_HEV_DATA:
				data = true;
				break;
			case RF_FAB_HEV_DETACHED:
				if (evs[i].peer == h.peer) {
					h.peer = NULL;
					h.done = true;
				}
				break;
			}
		}
		if (data || h.done) {
			rc = hub_drain(&h);
			if (rc < 0)
				break;
			rc = 0;
		}
	}
	getrusage(RUSAGE_SELF, &h.ru1);
	rf_fab_listener_close(&l);
	f = fopen(result_path, "w");
	if (f) {
		fprintf(f,
		        "records %" PRIu64 " bytes %" PRIu64 " batches %" PRIu64
		        " user %.6f sys %.6f maxrss_kb %ld pmem %d\n",
		        h.records, h.bytes, h.batches, tv_s(h.ru1.ru_utime) - tv_s(h.ru0.ru_utime),
		        tv_s(h.ru1.ru_stime) - tv_s(h.ru0.ru_stime), h.ru1.ru_maxrss,
		        rf_ring_is_pmem(h.ring) ? 1 : 0);
		fclose(f);
	}
	rf_ring_close(&h.ring);
	if (rc < 0)
		RF_ERR("hub", "exiting: %s", strerror(-rc));
	return rc < 0 || !f ? 1 : 0;
}

/* ------------------------------------------------------------- producer */

struct pending {
	uint64_t seq;
	uint64_t t_ns; /* start of the rf_fab_post that accepted it */
};

struct prod {
	struct rf_fab_conn *c;
	struct rf_ring_producer *rp;
	uint32_t size;
	uint8_t *bufs[MAX_BUFS];
	size_t buf_len;
	unsigned nbufs, freel[MAX_BUFS], nfree;
	struct pending *fifo; /* posted, not yet durable (a power of two) */
	size_t fifo_cap, fifo_head, fifo_len;
	uint64_t t_last_durable;
	uint64_t eagain, ring_full, positions;
	struct hist post_h, dur_h, land_h;
	/* --qd1: the one record in flight, until its LANDED */
	bool land_wait;
	uint64_t land_seq, land_t_ns;
};

/* Reap events; 0 or the -errno the connection died with. */
static int prod_events(struct prod *p, int timeout_ms)
{
	struct rf_fab_event evs[64];
	int n = rf_fab_poll(p->c, evs, 64, timeout_ms);
	uint64_t now = rf_now_ns();

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		switch (evs[i].type) {
		case RF_FAB_EV_SENT:
			p->freel[p->nfree++] = (unsigned)evs[i].cookie;
			break;
		case RF_FAB_EV_POSITION:
			p->positions++;
			rf_ring_producer_update_head(p->rp, evs[i].pos.head_pos);
			while (p->fifo_len && p->fifo[p->fifo_head].seq < evs[i].pos.durable_seq) {
				hist_add(&p->dur_h, now - p->fifo[p->fifo_head].t_ns);
				p->fifo_head = (p->fifo_head + 1) & (p->fifo_cap - 1);
				p->fifo_len--;
				p->t_last_durable = now;
			}
			break;
		case RF_FAB_EV_LANDED:
			if (p->land_wait && evs[i].seq >= p->land_seq) {
				hist_add(&p->land_h, now - p->land_t_ns);
				p->land_wait = false;
			}
			break;
		case RF_FAB_EV_CLOSED:
			RF_ERR("bench", "the connection died: %s", strerror(-evs[i].err));
			return evs[i].err ? evs[i].err : -ECONNRESET;
		}
	}
	return 0;
}

/* Encode one record into a free buffer and post it. */
static int prod_post_one(struct prod *p)
{
	struct rf_fab_seg segs[RF_RING_MAX_SEGS];
	struct rf_ring_image img;
	uint64_t t0, t1;
	unsigned idx;
	uint8_t *buf;
	int rc;

	while (p->nfree == 0) {
		rc = prod_events(p, 10);
		if (rc)
			return rc;
	}
	if (p->fifo_len == p->fifo_cap)
		return -EOVERFLOW; /* cannot happen: the ring holds fewer records */
	idx = p->freel[--p->nfree];
	buf = p->bufs[idx];
	for (;;) {
		rc = rf_ring_producer_encode(
		    p->rp,
		    &(struct rf_ring_desc){.type = RF_RING_REC_DATA,
		                           .offset = 0,
		                           .length = p->size,
		                           .payload = buf + RF_RING_REC_HDR_SIZE},
		    buf, p->buf_len, &img);
		if (rc != -ENOSPC)
			break;
		p->ring_full++; /* wait for the hub to publish a newer head */
		rc = prod_events(p, 10);
		if (rc)
			break;
	}
	if (rc) {
		p->freel[p->nfree++] = idx;
		return rc;
	}
	for (unsigned i = 0; i < img.nseg; i++)
		segs[i] = (struct rf_fab_seg){.off = img.seg[i].file_off - RF_RING_HEADER_SIZE,
		                              .buf = img.seg[i].src,
		                              .len = img.seg[i].len};
	for (;;) {
		t0 = rf_now_ns();
		rc = rf_fab_post(p->c, segs, img.nseg, img.seq, idx);
		t1 = rf_now_ns();
		if (rc != -EAGAIN)
			break;
		p->eagain++;
		rc = prod_events(p, 1);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	hist_add(&p->post_h, t1 - t0);
	p->land_wait = true;
	p->land_seq = img.seq;
	p->land_t_ns = t0;
	p->fifo[(p->fifo_head + p->fifo_len++) & (p->fifo_cap - 1)] =
	    (struct pending){.seq = img.seq, .t_ns = t0};
	return 0;
}

/* -------------------------------------------------------------- driver */

struct opts {
	const char *self, *url, *dir, *json;
	uint32_t sizes[MAX_SIZES];
	int nsizes;
	double seconds;
	uint64_t records;
	uint64_t ring_size;
	bool qd1, anchor;
};

struct result {
	uint32_t size;
	uint64_t records, bytes, ring_bytes;
	double seconds;
	struct hist *post_h, *dur_h, *land_h;
	uint64_t eagain, ring_full, positions;
	double p_user, p_sys;
	long p_rss;
	uint64_t h_records, h_bytes, h_batches;
	double h_user, h_sys;
	long h_rss;
	int h_pmem;
	double memcpy_mbps; /* 0: not measured */
};

/* Copy the hub's log to stderr (it says why the hub failed). */
static void hub_log_dump(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[1024];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "  hub: %s", line);
	fclose(f);
}

static pid_t hub_spawn(const struct opts *o, const char *ring, const char *result, const char *log)
{
	char rsize[32], line[64] = "";
	int pfd[2];
	pid_t pid, parent;
	FILE *f;

	snprintf(rsize, sizeof(rsize), "%" PRIu64, o->ring_size);
	if (pipe(pfd))
		return -1;
	parent = getpid();
	pid = fork();
	if (pid == 0) {
		int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* the hub leaves with its producer, also when the producer is
		 * killed (e.g. by timeout(1) in scripts/bench.sh) */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);

		dup2(pfd[1], 1);
		if (logfd >= 0)
			dup2(logfd, 2);
		close(pfd[0]);
		execl(o->self, o->self, "--hub", "--url", o->url, "--ring", ring, "--ring-size",
		      rsize, "--result", result, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		return -1;
	}
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) || strncmp(line, "hub ready", 9) != 0) {
		RF_ERR("bench", "the hub did not start; its log %s:", log);
		hub_log_dump(log);
		if (f)
			fclose(f);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -1;
	}
	fclose(f);
	return pid;
}

/* Wait for the hub to leave on its own (it stops once its producer
 * detached); SIGTERM, then SIGKILL, if it does not. */
static int hub_reap(pid_t pid)
{
	uint64_t deadline = rf_now_ns() + (uint64_t)HUB_EXIT_WAIT * 1000000;
	int status = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0)
			return -errno;
		if (rf_now_ns() > deadline) {
			RF_WARN("bench", "the hub did not exit; terminating it");
			kill(pid, SIGTERM);
			usleep(500000);
			if (waitpid(pid, &status, WNOHANG) != pid) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
			}
			break;
		}
		usleep(5000);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int hub_result_load(const char *path, struct result *r)
{
	FILE *f = fopen(path, "r");
	int n;

	if (!f)
		return -errno;
	n = fscanf(f,
	           "records %" SCNu64 " bytes %" SCNu64 " batches %" SCNu64
	           " user %lf sys %lf maxrss_kb %ld pmem %d",
	           &r->h_records, &r->h_bytes, &r->h_batches, &r->h_user, &r->h_sys, &r->h_rss,
	           &r->h_pmem);
	fclose(f);
	return n == 7 ? 0 : -EBADMSG;
}

/* Single-thread memcpy of @size bytes at successive offsets of a
 * @region-byte buffer (pre-faulted), as the shm producer copies into the
 * ring. MB/s (10^6 bytes). */
static double memcpy_anchor(uint32_t size, uint64_t region, double seconds)
{
	uint64_t step = (size + RF_RING_ALIGN - 1) / RF_RING_ALIGN * RF_RING_ALIGN, off = 0;
	uint64_t copies = 0, t0, t1, limit = (uint64_t)(seconds * 1e9);
	uint8_t *src, *dst;

	if (region < step)
		region = step;
	src = malloc(size);
	dst = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!src || dst == MAP_FAILED) {
		free(src);
		if (dst != MAP_FAILED)
			munmap(dst, region);
		return 0;
	}
	memset(src, 0x5a, size);
	memset(dst, 0, region);
	t0 = rf_now_ns();
	do {
		for (int k = 0; k < 16; k++) {
			memcpy(dst + off, src, size);
			__asm__ volatile("" : : "r"(dst) : "memory");
			off += step;
			if (off + size > region)
				off = 0;
			copies++;
		}
		t1 = rf_now_ns();
	} while (t1 - t0 < limit);
	munmap(dst, region);
	free(src);
	return (double)copies * size / 1e6 / ((double)(t1 - t0) / 1e9);
}

static int run_size(const struct opts *o, uint32_t size, struct result *res)
{
	char ring[4096], result[4096], log[4096];
	struct prod p = {.size = size};
	struct rf_fab_ring_info info;
	struct rusage ru0, ru1;
	uint64_t t_start, t_end, tail0, posted = 0, deadline, limit_ns;
	pid_t hub;
	int rc, hrc;

	snprintf(ring, sizeof(ring), "%s/fabric-bench.ring", o->dir);
	snprintf(result, sizeof(result), "%s/fabric-bench.hub-result", o->dir);
	snprintf(log, sizeof(log), "%s/fabric-bench.hub.log", o->dir);
	unlink(ring);
	unlink(result);
	unlink(log);
	memset(res, 0, sizeof(*res));
	res->size = size;

	hub = hub_spawn(o, ring, result, log);
	if (hub < 0)
		return -EIO;
	deadline = rf_now_ns() + 10000000000ull;
	for (;;) {
		rc = rf_fab_connect(o->url, TOKEN, 5000, &p.c, &info);
		if (rc == 0 || rf_now_ns() > deadline)
			break;
		usleep(50000);
	}
	if (rc) {
		RF_ERR("bench", "cannot connect to the hub at %s: %s", o->url, strerror(-rc));
		goto out;
	}
	rc = rf_ring_producer_new(&p.rp, &(struct rf_ring_info){.ring_id = info.ring_id,
	                                                        .data_size = info.data_size,
	                                                        .head_pos = info.pos.head_pos,
	                                                        .head_seq = info.pos.head_seq});
	if (rc)
		goto out;
	/* --qd1 measures the landed latency too (one record in flight). */
	rf_fab_conn_want_landed(p.c, o->qd1);
	/* Buffers: enough to keep the transport busy, no more than the ring holds. */
	p.buf_len = rf_ring_encode_buf_size(size);
	p.nbufs = (unsigned)(info.data_size / rf_ring_record_size(size));
	p.nbufs = p.nbufs < 2 ? 2 : p.nbufs > MAX_BUFS ? MAX_BUFS : p.nbufs;
	for (unsigned i = 0; i < p.nbufs; i++) {
		p.bufs[i] = malloc(p.buf_len);
		if (!p.bufs[i]) {
			rc = -ENOMEM;
			goto out;
		}
		for (uint32_t k = 0; k < size; k++)
			p.bufs[i][RF_RING_REC_HDR_SIZE + k] = (uint8_t)(k * 131 + i);
		p.freel[p.nfree++] = i;
	}
	/* Pending (not durable) records are in the ring: at most this many. */
	p.fifo_cap = 1;
	while (p.fifo_cap < info.data_size / rf_ring_record_size(size) + 4)
		p.fifo_cap <<= 1;
	p.fifo = malloc(p.fifo_cap * sizeof(*p.fifo));
	if (!p.fifo) {
		rc = -ENOMEM;
		goto out;
	}

	tail0 = rf_ring_producer_tail(p.rp);
	limit_ns = o->records ? UINT64_MAX : (uint64_t)(o->seconds * 1e9);
	peak_rss_reset();
	getrusage(RUSAGE_SELF, &ru0);
	t_start = rf_now_ns();
	p.t_last_durable = t_start;
	while ((o->records == 0 || posted < o->records) && rf_now_ns() - t_start < limit_ns) {
		rc = prod_post_one(&p);
		if (rc)
			goto out;
		posted++;
		if (o->qd1) {
			deadline = rf_now_ns() + (uint64_t)QD1_TIMEOUT * 1000000;
			while ((p.fifo_len || p.land_wait) && rc == 0) {
				if (rf_now_ns() > deadline)
					rc = -ETIMEDOUT;
				else
					rc = prod_events(&p, 100);
			}
		} else {
			rc = prod_events(&p, 0);
		}
		if (rc)
			goto out;
	}
	deadline = rf_now_ns() + (uint64_t)DRAIN_TIMEOUT * 1000000;
	while (p.fifo_len && rc == 0) {
		if (rf_now_ns() > deadline) {
			RF_ERR("bench", "%zu records not durable after %d ms", p.fifo_len,
			       DRAIN_TIMEOUT);
			rc = -ETIMEDOUT;
		} else {
			rc = prod_events(&p, 100);
		}
	}
	t_end = p.t_last_durable;
	getrusage(RUSAGE_SELF, &ru1);
	if (rc)
		goto out;

	res->records = posted;
	res->bytes = posted * size;
	res->ring_bytes = rf_ring_producer_tail(p.rp) - tail0;
	res->seconds = (double)(t_end - t_start) / 1e9;
	res->eagain = p.eagain;
	res->ring_full = p.ring_full;
	res->positions = p.positions;
	res->p_user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
	res->p_sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
	res->p_rss = peak_rss_kb();
	res->post_h = malloc(sizeof(*res->post_h));
	res->dur_h = malloc(sizeof(*res->dur_h));
	res->land_h = malloc(sizeof(*res->land_h));
	if (!res->post_h || !res->dur_h || !res->land_h) {
		rc = -ENOMEM;
		goto out;
	}
	*res->post_h = p.post_h;
	*res->dur_h = p.dur_h;
	*res->land_h = p.land_h;
out:
	rf_fab_close(&p.c);
	hrc = hub_reap(hub);
	if (rc == 0 && hrc) {
		RF_ERR("bench", "the hub failed; its log %s:", log);
		hub_log_dump(log);
	}
	if (rc == 0)
		rc = hrc;
	if (rc == 0 && hub_result_load(result, res)) {
		RF_ERR("bench", "no result file from the hub (see %s)", log);
		rc = -EIO;
	}
	if (rc == 0 && (res->h_records != res->records || res->h_bytes != res->bytes)) {
		RF_ERR("bench",
		       "the hub drained %" PRIu64 " records (%" PRIu64 " bytes), the producer "
		       "posted %" PRIu64 " (%" PRIu64 " bytes)",
		       res->h_records, res->h_bytes, res->records, res->bytes);
		rc = -EPROTO;
	}
	rf_ring_producer_delete(&p.rp);
	for (unsigned i = 0; i < p.nbufs; i++)
		free(p.bufs[i]);
	free(p.fifo);
	unlink(ring);
	unlink(result);
	if (rc == 0 && o->anchor) {
		double secs = o->seconds < ANCHOR_MAX_SEC ? o->seconds : ANCHOR_MAX_SEC;

		res->memcpy_mbps =
		    memcpy_anchor(size, o->ring_size, o->records ? ANCHOR_REC_SEC : secs);
	}
	return rc;
}

static void print_lat(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f,
	        "    \"%s\": {\"samples\": %" PRIu64 ", \"p50\": %.2f, \"p99\": %.2f, "
	        "\"p99_9\": %.2f, \"max\": %.2f, \"mean\": %.2f},\n",
	        name, h->n, hist_quantile_us(h, 0.50), hist_quantile_us(h, 0.99),
	        hist_quantile_us(h, 0.999), (double)h->max / 1e3,
	        h->n ? (double)h->sum / (double)h->n / 1e3 : 0.0);
}

static void print_result(FILE *f, const struct opts *o, const char *provider,
                         const struct result *r, bool first)
{
	double mbps = r->seconds > 0 ? (double)r->bytes / 1e6 / r->seconds : 0;
	double p_cpu = r->p_user + r->p_sys, h_cpu = r->h_user + r->h_sys;

	fprintf(f, "%s  {\n    \"provider\": ", first ? "" : ",\n");
	json_str(f, provider);
	fprintf(f, ",\n    \"url\": ");
	json_str(f, o->url);
	fprintf(f, ",\n    \"mode\": \"%s\",\n", o->qd1 ? "qd1" : "stream");
	fprintf(f, "    \"record_size\": %u,\n    \"ring_size\": %" PRIu64 ",\n    \"ring_fs\": ",
	        r->size, o->ring_size);
	json_str(f, fs_name(o->dir));
	fprintf(f, ",\n");
	fprintf(f,
	        "    \"records\": %" PRIu64 ",\n    \"bytes\": %" PRIu64
	        ",\n    \"ring_bytes\": %" PRIu64 ",\n",
	        r->records, r->bytes, r->ring_bytes);
	fprintf(f,
	        "    \"seconds\": %.6f,\n    \"mb_per_s\": %.2f,\n    \"records_per_s\": %.1f,\n",
	        r->seconds, mbps, r->seconds > 0 ? (double)r->records / r->seconds : 0);
	print_lat(f, "post_latency_us", r->post_h);
	print_lat(f, "durable_latency_us", r->dur_h);
	print_lat(f, "landed_latency_us", r->land_h);
	fprintf(f,
	        "    \"post_eagain\": %" PRIu64 ",\n    \"ring_full_waits\": %" PRIu64
	        ",\n    \"positions\": %" PRIu64 ",\n",
	        r->eagain, r->ring_full, r->positions);
	fprintf(f,
	        "    \"producer\": {\"cpu_s\": %.3f, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, "
	        "\"cpu_per_wall\": %.3f, \"max_rss_kb\": %ld},\n",
	        p_cpu, r->p_user, r->p_sys, r->seconds > 0 ? p_cpu / r->seconds : 0, r->p_rss);
	fprintf(f,
	        "    \"hub\": {\"cpu_s\": %.3f, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, "
	        "\"cpu_per_wall\": %.3f, \"max_rss_kb\": %ld, \"records\": %" PRIu64
	        ", \"bytes\": %" PRIu64 ", \"drain_batches\": %" PRIu64 ", \"ring_is_pmem\": %s}",
	        h_cpu, r->h_user, r->h_sys, r->seconds > 0 ? h_cpu / r->seconds : 0, r->h_rss,
	        r->h_records, r->h_bytes, r->h_batches, r->h_pmem ? "true" : "false");
	if (r->memcpy_mbps > 0)
		fprintf(f, ",\n    \"memcpy_anchor\": {\"mb_per_s\": %.2f, \"ratio\": %.4f}",
		        r->memcpy_mbps, mbps / r->memcpy_mbps);
	fprintf(f, "\n  }");
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: rf-fabric-bench --url URL --dir DIR [--record-size BYTES[,BYTES...]]\n"
	        "                       [--seconds S | --records N] [--ring-size BYTES] [--qd1]\n"
	        "                       [--memcpy-anchor] [--json FILE] [-v]\n"
	        "  URL: rdma://IP:PORT, tcp://HOST:PORT or shm:///PATH/TO/SOCKET\n"
	        "  DIR: where the hub creates its ring file (a tmpfs such as /dev/shm is\n"
	        "       best; on a disk file system every head persist is an msync)\n"
	        "  defaults: --record-size 4096,65536 --seconds 3 --ring-size 16M\n"
	        "  sizes take k/M/G suffixes (powers of 1024). See bench/README.md.\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {{"url", required_argument, NULL, 'u'},
	                                      {"dir", required_argument, NULL, 'd'},
	                                      {"record-size", required_argument, NULL, 's'},
	                                      {"seconds", required_argument, NULL, 't'},
	                                      {"records", required_argument, NULL, 'n'},
	                                      {"ring-size", required_argument, NULL, 'z'},
	                                      {"json", required_argument, NULL, 'j'},
	                                      {"qd1", no_argument, NULL, '1'},
	                                      {"memcpy-anchor", no_argument, NULL, 'm'},
	                                      {"verbose", no_argument, NULL, 'v'},
	                                      {"hub", no_argument, NULL, 'H'},
	                                      {"ring", required_argument, NULL, 'r'},
	                                      {"result", required_argument, NULL, 'R'},
	                                      {NULL, 0, NULL, 0}};
	struct opts o = {.seconds = DEFAULT_SECS, .ring_size = DEFAULT_RING};
	const char *sizes = "4096,65536", *ring = NULL, *result = NULL, *e;
	char self[4096], provider[16];
	bool hub = false, secs_given = false;
	struct result *res;
	FILE *out = stdout;
	int c, failed = 0, done = 0;
	ssize_t n;

	rf_log_set_program("rf-fabric-bench");
	rf_log_set_level(RF_LOG_WARN);
	while ((c = getopt_long(argc, argv, "v", lopts, NULL)) != -1) {
		switch (c) {
		case 'u':
			o.url = optarg;
			break;
		case 'd':
			o.dir = optarg;
			break;
		case 's':
			sizes = optarg;
			break;
		case 't':
			o.seconds = strtod(optarg, NULL);
			secs_given = true;
			break;
		case 'n':
			o.records = strtoull(optarg, NULL, 10);
			break;
		case 'z':
			o.ring_size = bench_parse_bytes(optarg, NULL);
			break;
		case 'j':
			o.json = optarg;
			break;
		case '1':
			o.qd1 = true;
			break;
		case 'm':
			o.anchor = true;
			break;
		case 'v':
			rf_log_set_level(rf_log_get_level() == RF_LOG_WARN ? RF_LOG_INFO
			                                                   : RF_LOG_DEBUG);
			break;
		case 'H':
			hub = true;
			break;
		case 'r':
			ring = optarg;
			break;
		case 'R':
			result = optarg;
			break;
		default:
			usage();
			return 2;
		}
	}
	if (hub) {
		rf_log_set_program("rf-fabric-bench hub");
		if (!o.url || !ring || !result || !o.ring_size) {
			usage();
			return 2;
		}
		return hub_main(o.url, ring, o.ring_size, result);
	}
	if (secs_given && o.records) {
		fprintf(stderr, "rf-fabric-bench: give --seconds or --records, not both\n");
		return 2;
	}
	if (!o.url || !o.dir || optind != argc || (!o.records && !(o.seconds > 0))) {
		usage();
		return 2;
	}
	if (rf_fab_url_check(o.url))
		return 2;
	if (rf_ring_check_data_size(o.ring_size)) {
		fprintf(stderr,
		        "rf-fabric-bench: --ring-size must be a multiple of %u in "
		        "[%u, 2^46]\n",
		        RF_RING_ALIGN, RF_RING_MIN_DATA_SIZE);
		return 2;
	}
	for (e = sizes; *e;) {
		uint64_t v = bench_parse_bytes(e, &e);

		if (v == 0 || v > rf_ring_max_payload(o.ring_size) || o.nsizes == MAX_SIZES ||
		    (*e && *e != ',')) {
			fprintf(stderr,
			        "rf-fabric-bench: bad --record-size '%s': up to %d sizes in "
			        "1..%u (a quarter of the ring, at most 16 MiB)\n",
			        sizes, MAX_SIZES, rf_ring_max_payload(o.ring_size));
			return 2;
		}
		o.sizes[o.nsizes++] = (uint32_t)v;
		if (*e == ',')
			e++;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 2;
	self[n] = '\0';
	o.self = self;
	snprintf(provider, sizeof(provider), "%.*s", (int)strcspn(o.url, ":"), o.url);
	signal(SIGPIPE, SIG_IGN);

	res = calloc((size_t)o.nsizes, sizeof(*res));
	if (!res)
		return 1;
	for (int i = 0; i < o.nsizes; i++) {
		int rc = run_size(&o, o.sizes[i], &res[i]);

		if (rc) {
			fprintf(stderr, "rf-fabric-bench: %s, %u-byte records: failed: %s\n",
			        provider, o.sizes[i], strerror(-rc));
			failed = 1;
			break;
		}
		done++;
		fprintf(stderr,
		        "rf-fabric-bench: %s %s %u B: %" PRIu64 " records in %.3f s, %.1f MB/s, "
		        "durable p50 %.1f us p99 %.1f us, landed p50 %.1f us\n",
		        provider, o.qd1 ? "qd1" : "stream", o.sizes[i], res[i].records,
		        res[i].seconds,
		        res[i].seconds > 0 ? (double)res[i].bytes / 1e6 / res[i].seconds : 0,
		        hist_quantile_us(res[i].dur_h, 0.5), hist_quantile_us(res[i].dur_h, 0.99),
		        hist_quantile_us(res[i].land_h, 0.5));
	}
	if (o.json) {
		out = fopen(o.json, "w");
		if (!out) {
			fprintf(stderr, "rf-fabric-bench: %s: %s\n", o.json, strerror(errno));
			return 1;
		}
	}
	fprintf(out, "[\n");
	for (int i = 0; i < done; i++)
		print_result(out, &o, provider, &res[i], i == 0);
	fprintf(out, "%s]\n", done ? "\n" : "");
	if (out != stdout && fclose(out)) {
		fprintf(stderr, "rf-fabric-bench: %s: %s\n", o.json, strerror(errno));
		failed = 1;
	}
	for (int i = 0; i < o.nsizes; i++) {
		free(res[i].post_h);
		free(res[i].dur_h);
		free(res[i].land_h);
	}
	free(res);
	return failed;
}

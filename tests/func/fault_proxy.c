/* SPDX-License-Identifier: MIT */
/*
 * rf-fault-proxy: a fault-injecting TCP proxy between an agent and rephubd,
 * for both connections of the protect flow:
 *
 *   rf-fault-proxy --ctl-listen PORT --ctl-to HOST:PORT
 *                  --data-listen PORT --data-to HOST:PORT --cmd FIFO
 *
 * The agent dials 127.0.0.1:CTL-LISTEN as its hub. Control frames from the
 * hub are parsed, and HELLO_OK's data URL is rewritten to
 * tcp://127.0.0.1:DATA-LISTEN, so the agent's data connection comes through
 * the proxy too (to DATA-TO). Everything else is forwarded as it is.
 *
 * Commands, one per line, from the FIFO (it is created if missing):
 *   cut       reset every connection (RST) and refuse new ones
 *   cut-data  reset the data connections only
 *   stall     stop forwarding in both directions (connections stay open;
 *             new ones are accepted and held): a link that drops packets
 *   up        forward again and accept connections
 * Each command prints one line (with the connections it touched), so a test
 * can wait for it. On SIGTERM/SIGINT it prints its counters and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repfabric/ctl.h"

#define MAX_PAIRS 64
#define BUF_CAP   (RF_CTL_HDR_LEN + RF_CTL_MAX_PAYLOAD + 4096) /* one whole control frame */
#define IO_CHUNK  (256u * 1024u)

enum kind { CTL, DATA };

struct half {
	uint8_t *buf; /* bytes read from one side, not yet written to the other */
	size_t len;
};

struct pair {
	bool used;
	enum kind kind;
	int fd[2];         /* 0: the agent's side, 1: the hub's side */
	struct half to[2]; /* to[i]: bytes waiting to be written to fd[i] */
	struct half parse; /* CTL: hub bytes not yet a whole frame */
};

static struct pair pairs[MAX_PAIRS];
static int lfd[2] = {-1, -1};
static const char *to_addr[2];
static int listen_port[2];
static bool down, stalled;
static volatile sig_atomic_t stop;
static uint64_t n_conns, n_reset, n_rewrites, n_bytes[2];

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static int listen_on(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;

	if (fd < 0)
		return -errno;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

/* Close with RST: the peer sees ECONNRESET, as after a network reset. */
static void rst_close(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	close(fd);
}

static void pair_close(struct pair *p, bool rst)
{
	for (int i = 0; i < 2; i++) {
		if (rst)
			rst_close(p->fd[i]);
		else if (p->fd[i] >= 0)
			close(p->fd[i]);
		free(p->to[i].buf);
	}
	free(p->parse.buf);
	memset(p, 0, sizeof(*p));
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static void accept_one(enum kind k)
{
	int fd = accept4(lfd[k], NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), up, one = 1;
	struct pair *p = NULL;

	if (fd < 0)
		return;
	if (down) {
		rst_close(fd); /* refused while the link is cut */
		n_reset++;
		return;
	}
	for (int i = 0; i < MAX_PAIRS && !p; i++)
		if (!pairs[i].used)
			p = &pairs[i];
	up = p ? rf_ctl_dial(to_addr[k], 2000) : -EMFILE;
	if (up < 0) {
		rst_close(fd);
		return;
	}
	nonblock(up);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(p, 0, sizeof(*p));
	p->used = true;
	p->kind = k;
	p->fd[0] = fd;
	p->fd[1] = up;
	p->to[0].buf = malloc(BUF_CAP);
	p->to[1].buf = malloc(BUF_CAP);
	p->parse.buf = k == CTL ? malloc(BUF_CAP) : NULL;
	if (!p->to[0].buf || !p->to[1].buf || (k == CTL && !p->parse.buf)) {
		pair_close(p, true);
		return;
	}
	n_conns++;
}

static void put(struct half *h, const void *src, size_t n)
{
	memcpy(h->buf + h->len, src, n);
	h->len += n;
}

/* Move whole control frames from the hub into to[0], rewriting HELLO_OK. */
static int ctl_frames(struct pair *p)
{
	struct half *in = &p->parse, *out = &p->to[0];
	size_t used = 0;

	while (in->len - used >= RF_CTL_HDR_LEN) {
		struct rf_ctl_hdr h;
		const char *why = "";
		const uint8_t *f = in->buf + used;
		size_t flen;

		if (rf_ctl_hdr_decode(f, &h, &why)) {
			fprintf(stderr, "rf-fault-proxy: bad frame from the hub: %s\n", why);
			return -EPROTO;
		}
		flen = RF_CTL_HDR_LEN + h.len;
		if (in->len - used < flen || BUF_CAP - out->len < flen + 64)
			break;
		if (h.type == RF_CTL_HELLO_OK) {
			struct rf_ctl_hello_ok m;
			uint8_t pl[RF_CTL_MAX_TEXT + 64], hdr[RF_CTL_HDR_LEN];
			int n;

			if (rf_ctl_dec_hello_ok(f + RF_CTL_HDR_LEN, h.len, &m, &why))
				return -EPROTO;
			snprintf(m.data_url, sizeof(m.data_url), "tcp://127.0.0.1:%d",
			         listen_port[DATA]);
			n = rf_ctl_enc_hello_ok(pl, sizeof(pl), &m);
			if (n < 0)
				return n;
			rf_ctl_hdr_encode(hdr, h.type, h.req_id, (uint32_t)n);
			put(out, hdr, sizeof(hdr));
			put(out, pl, (size_t)n);
			n_rewrites++;
		} else {
			put(out, f, flen);
		}
		used += flen;
	}
	memmove(in->buf, in->buf + used, in->len - used);
	in->len -= used;
	return 0;
}

/* Read what side @i has for the other side. Returns 0 or -1 (closed). */
static int pump_in(struct pair *p, int i)
{
	struct half *dst = (p->kind == CTL && i == 1) ? &p->parse : &p->to[1 - i];
	size_t room = BUF_CAP - dst->len;
	ssize_t n;

	if (room == 0)
		return 0;
	n = read(p->fd[i], dst->buf + dst->len, room < IO_CHUNK ? room : IO_CHUNK);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
		return -1;
	if (n < 0)
		return 0;
	dst->len += (size_t)n;
	n_bytes[i] += (uint64_t)n;
	if (p->kind == CTL && i == 1 && ctl_frames(p))
		return -1;
	return 0;
}

static int pump_out(struct pair *p, int i)
{
	struct half *h = &p->to[i];
	ssize_t n;

	if (!h->len)
		return 0;
	n = send(p->fd[i], h->buf, h->len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	memmove(h->buf, h->buf + n, h->len - (size_t)n);
	h->len -= (size_t)n;
	if (p->kind == CTL && i == 0 && ctl_frames(p))
		return -1;
	return 0;
}

static unsigned reset_all(bool data_only)
{
	unsigned n = 0;

	for (int i = 0; i < MAX_PAIRS; i++) {
		if (!pairs[i].used || (data_only && pairs[i].kind != DATA))
			continue;
		pair_close(&pairs[i], true);
		n++;
	}
	n_reset += n;
	return n;
}

static unsigned live_pairs(void)
{
	unsigned n = 0;

	for (int i = 0; i < MAX_PAIRS; i++)
		n += pairs[i].used;
	return n;
}

static void command(char *line)
{
	line[strcspn(line, "\r\n")] = '\0';
	if (strcmp(line, "cut") == 0) {
		down = true;
		stalled = false;
		printf("cut: %u connections reset, new ones refused\n", reset_all(false));
	} else if (strcmp(line, "cut-data") == 0) {
		printf("cut-data: %u data connections reset\n", reset_all(true));
	} else if (strcmp(line, "stall") == 0) {
		stalled = true;
		printf("stall: %u connections stalled\n", live_pairs());
	} else if (strcmp(line, "up") == 0) {
		down = stalled = false;
		printf("up: forwarding (%u connections)\n", live_pairs());
	} else if (line[0]) {
		printf("unknown command '%s'\n", line);
	}
}

static void fifo_read(int ffd)
{
	static char acc[256];
	static size_t alen;
	ssize_t n = read(ffd, acc + alen, sizeof(acc) - 1 - alen);
	char *nl;

	if (n <= 0)
		return;
	alen += (size_t)n;
	acc[alen] = '\0';
	while ((nl = strchr(acc, '\n'))) {
		*nl = '\0';
		command(acc);
		memmove(acc, nl + 1, alen - (size_t)(nl + 1 - acc) + 1);
		alen -= (size_t)(nl + 1 - acc);
	}
	if (alen == sizeof(acc) - 1)
		alen = 0; /* an over-long line: drop it */
}

static void usage(void)
{
	fprintf(stderr, "usage: rf-fault-proxy --ctl-listen PORT --ctl-to HOST:PORT "
	                "--data-listen PORT --data-to HOST:PORT --cmd FIFO\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"ctl-listen", required_argument, NULL, 'c'},
	                                     {"ctl-to", required_argument, NULL, 'C'},
	                                     {"data-listen", required_argument, NULL, 'd'},
	                                     {"data-to", required_argument, NULL, 'D'},
	                                     {"cmd", required_argument, NULL, 'f'},
	                                     {NULL, 0, NULL, 0}};
	const char *fifo = NULL;
	int o, ffd;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			listen_port[CTL] = atoi(optarg);
			break;
		case 'C':
			to_addr[CTL] = optarg;
			break;
		case 'd':
			listen_port[DATA] = atoi(optarg);
			break;
		case 'D':
			to_addr[DATA] = optarg;
			break;
		case 'f':
			fifo = optarg;
			break;
		default:
			usage();
		}
	}
	if (!fifo || !to_addr[CTL] || !to_addr[DATA] || listen_port[CTL] <= 0 ||
	    listen_port[DATA] <= 0)
		usage();
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (mkfifo(fifo, 0600) < 0 && errno != EEXIST) {
		perror("rf-fault-proxy: mkfifo");
		return 2;
	}
	ffd = open(fifo, O_RDWR | O_NONBLOCK | O_CLOEXEC); /* RDWR: never EOF */
	lfd[CTL] = listen_on(listen_port[CTL]);
	lfd[DATA] = listen_on(listen_port[DATA]);
	if (ffd < 0 || lfd[CTL] < 0 || lfd[DATA] < 0) {
		fprintf(stderr, "rf-fault-proxy: cannot open the fifo or listen\n");
		return 2;
	}
	printf("listening: control %d -> %s, data %d -> %s\n", listen_port[CTL], to_addr[CTL],
	       listen_port[DATA], to_addr[DATA]);

	while (!stop) {
		struct pollfd pf[3 + 2 * MAX_PAIRS];
		int map[3 + 2 * MAX_PAIRS], n = 0;

		pf[n] = (struct pollfd){.fd = ffd, .events = POLLIN};
		map[n++] = -1;
		pf[n] = (struct pollfd){.fd = lfd[CTL], .events = POLLIN};
		map[n++] = -2;
		pf[n] = (struct pollfd){.fd = lfd[DATA], .events = POLLIN};
		map[n++] = -3;
		for (int i = 0; i < MAX_PAIRS; i++) {
			struct pair *p = &pairs[i];

			if (!p->used)
				continue;
			for (int s = 0; s < 2; s++) {
				short ev = 0;

				if (!stalled) {
					struct half *in =
					    (p->kind == CTL && s == 1) ? &p->parse : &p->to[1 - s];

					if (in->len < BUF_CAP)
						ev |= POLLIN;
					if (p->to[s].len)
						ev |= POLLOUT;
				}
				pf[n] = (struct pollfd){.fd = p->fd[s], .events = ev};
				map[n++] = i * 2 + s;
			}
		}
		if (poll(pf, (nfds_t)n, 200) < 0) {
			if (errno == EINTR)
				continue;
			perror("rf-fault-proxy: poll");
			return 1;
		}
		for (int k = 0; k < n; k++) {
			struct pair *p;
			int s;

			if (!pf[k].revents)
				continue;
			if (map[k] == -1) {
				fifo_read(ffd);
				continue;
			}
			if (map[k] == -2 || map[k] == -3) {
				accept_one(map[k] == -2 ? CTL : DATA);
				continue;
			}
			p = &pairs[map[k] / 2];
			s = map[k] % 2;
			if (!p->used)
				continue;
			if (stalled) {
				if (pf[k].revents & (POLLHUP | POLLERR))
					pair_close(p, false); /* gone: do not spin on it */
				continue;
			}
			if ((pf[k].revents & (POLLIN | POLLHUP | POLLERR)) && pump_in(p, s)) {
				pair_close(p, false); /* one side closed: close the other */
				continue;
			}
			if ((pf[k].revents & POLLOUT) && pump_out(p, s))
				pair_close(p, false);
		}
	}
	printf("stopped: %" PRIu64 " connections, %" PRIu64 " reset or refused, %" PRIu64
	       " HELLO_OK rewritten, %" PRIu64 " bytes agent->hub, %" PRIu64 " bytes hub->agent\n",
	       n_conns, n_reset, n_rewrites, n_bytes[0], n_bytes[1]);
	reset_all(false);
	close(lfd[CTL]);
	close(lfd[DATA]);
	close(ffd);
	return 0;
}

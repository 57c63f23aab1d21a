/* SPDX-License-Identifier: MIT */
/*
 * The tcp:// and shm:// providers' producer side (struct sw_conn): connect
 * and say HELLO, post segments (tcp: WRITE frames; shm: copied into the
 * mapped ring) and a DOORBELL, read POSITION frames, close.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "provider.h"
#include "repfabric/le.h"
#include "repfabric/log.h"
#include "repfabric/sockio.h"
#include "stream_internal.h"
#include "stream_wire.h"

#define SW_SENT_MAX      1024  /* SENT events queued before post says -EAGAIN */
#define SW_IO_TIMEOUT_MS 30000 /* a producer write that makes no progress */

/* Open a non-blocking stream socket connected to @addr within @deadline. */
static int sock_connect(bool shm, const char *addr, int64_t deadline, int *out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const struct sockaddr *sa;
	socklen_t salen;
	int fd, rc, one = 1, err;
	socklen_t errlen = sizeof(err);
	char host[256], port[16];

	if (shm) {
		if (strlen(addr) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		strcpy(sun.sun_path, addr);
		sa = (const struct sockaddr *)&sun;
		salen = sizeof(sun);
	} else {
		rc = rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port));
		if (rc)
			return rc;
		rc = getaddrinfo(host, port, &hints, &ai);
		if (rc) {
			RF_ERR("fabric", "tcp://%s: cannot resolve: %s", addr, gai_strerror(rc));
			return -EHOSTUNREACH;
		}
		sa = ai->ai_addr;
		salen = ai->ai_addrlen;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		goto out_free_ai;
	}
	if (connect(fd, sa, salen) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto out_close;
		}
		rc = rf_wait_fd(fd, POLLOUT, deadline);
		if (rc)
			goto out_close;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err) {
			rc = err ? -err : -errno;
			goto out_close;
		}
	}
	if (!shm)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*out = fd;
	rc = 0;
	goto out_free_ai;
out_close:
	close(fd);
out_free_ai:
	if (ai)
		freeaddrinfo(ai);
	return rc;
}

struct sw_conn {
	struct rf_fab_conn base;
	bool shm;
	int fd;
	uint8_t *map; /* shm: the ring file */
	size_t map_len;
	uint8_t *data; /* shm: its data area */
	uint64_t sent[SW_SENT_MAX];
	unsigned sent_head, sent_count;
	int err; /* the connection died with this; CLOSED not yet reported */
	size_t rlen;
	uint8_t rbuf[RF_SW_HDR_LEN + RF_SW_MAX_CTRL];
};

static int welcome_decode(struct sw_conn *c, const uint8_t *p, uint32_t len, const char *addr,
                          struct rf_fab_ring_info *info)
{
	uint64_t data_off;
	uint16_t path_len;
	char path[RF_SW_MAX_PATH + 1];
	struct stat st;
	int fd, rc;

	if (len < RF_SW_WELCOME_FIXED)
		return -EPROTO;
	info->ring_id = rf_get_le64(p);
	info->data_size = rf_get_le64(p + 8);
	rf_sw_position_decode(p + 16, &info->pos);
	data_off = rf_get_le64(p + 48);
	path_len = rf_get_le16(p + 56);
	if (len != (uint32_t)RF_SW_WELCOME_FIXED + path_len || path_len > RF_SW_MAX_PATH)
		return -EPROTO;
	if (!c->shm)
		return path_len == 0 ? 0 : -EPROTO;
	if (path_len == 0 || info->data_size == 0 || data_off > SIZE_MAX - info->data_size)
		return -EPROTO;
	memcpy(path, p + RF_SW_WELCOME_FIXED, path_len);
	path[path_len] = '\0';
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		RF_ERR("fabric", "shm://%s: cannot open the ring file %s: %s", addr, path,
		       strerror(errno));
		return rc;
	}
	rc = 0;
	c->map_len = data_off + info->data_size;
	if (fstat(fd, &st) < 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < c->map_len)) {
		RF_ERR("fabric", "shm://%s: ring file %s is smaller than its announced geometry",
		       addr, path);
		rc = -EPROTO;
		goto out_close;
	}
	c->map = mmap(NULL, c->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (c->map == MAP_FAILED) {
		rc = -errno;
		c->map = NULL;
		RF_ERR("fabric", "shm://%s: cannot map %s: %s", addr, path, strerror(-rc));
		goto out_close;
	}
	c->data = c->map + data_off;
out_close:
	close(fd);
	return rc;
}

int rf_sw_connect(bool shm, const char *addr, uint64_t token, int timeout_ms,
                  struct rf_fab_conn **out, struct rf_fab_ring_info *info)
{
	int64_t deadline = rf_now_ms() + (timeout_ms < 0 ? 3600000 : timeout_ms);
	const char *scheme = shm ? "shm" : "tcp", *why;
	struct sw_conn *c;
	uint8_t h[RF_SW_HDR_LEN], hello[RF_SW_HELLO_LEN];
	uint8_t *payload = NULL;
	unsigned type;
	uint32_t len;
	int rc;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->shm = shm;
	rc = sock_connect(shm, addr, deadline, &c->fd);
	if (rc) {
		RF_ERR("fabric", "%s://%s: connect failed: %s", scheme, addr, strerror(-rc));
		goto out_free;
	}
	rf_put_le64(hello, token);
	rc = rf_sw_send_frame(c->fd, RF_SW_HELLO, hello, sizeof(hello),
	                      (int)(deadline - rf_now_ms()));
	if (rc)
		goto out_close;
	rc = rf_read_all(c->fd, h, sizeof(h), deadline);
	if (rc)
		goto out_close;
	rc = rf_sw_hdr_decode(h, &type, &len, NULL, &why);
	if (rc || len > RF_SW_MAX_CTRL || (type != RF_SW_WELCOME && type != RF_SW_REFUSE)) {
		RF_ERR("fabric", "%s://%s: bad reply to hello (%s)", scheme, addr,
		       rc ? why : "unexpected type or length");
		rc = -EPROTO;
		goto out_close;
	}
	payload = malloc(len + 1);
	if (!payload) {
		rc = -ENOMEM;
		goto out_close;
	}
	rc = rf_read_all(c->fd, payload, len, deadline);
	if (rc)
		goto out_close;
	if (type == RF_SW_REFUSE) {
		int32_t e = len >= 4 ? (int32_t)rf_get_le32(payload) : EPROTO;

		payload[len] = '\0';
		RF_ERR("fabric", "%s://%s: hub refused token %#llx: %s", scheme, addr,
		       (unsigned long long)token, len > 4 ? (char *)payload + 4 : "no reason");
		rc = (e > 0 && e < 4096) ? -e : -EACCES;
		goto out_close;
	}
	rc = welcome_decode(c, payload, len, addr, info);
	if (rc) {
		if (rc == -EPROTO)
			RF_ERR("fabric", "%s://%s: malformed welcome", scheme, addr);
		goto out_close;
	}
	free(payload);
	*out = &c->base;
	return 0;
out_close:
	if (rc == -ECONNRESET)
		RF_ERR("fabric", "%s://%s: hub closed the connection during the handshake", scheme,
		       addr);
	free(payload);
	close(c->fd);
out_free:
	free(c);
	return rc;
}

static struct sw_conn *to_conn(const struct rf_fab_conn *c)
{
	return container_of(c, struct sw_conn, base);
}

int rf_sw_post(struct rf_fab_conn *bc, const struct rf_fab_seg *segs, unsigned nseg,
               uint64_t last_seq, uint64_t cookie)
{
	struct sw_conn *c = to_conn(bc);
	uint8_t hdrs[RF_FAB_MAX_SEGS][RF_SW_HDR_LEN + RF_SW_WRITE_SUBHDR];
	uint8_t bell[RF_SW_HDR_LEN + RF_SW_DOORBELL_LEN];
	struct iovec iov[2 * RF_FAB_MAX_SEGS + 1];
	int n = 0, rc;

	if (c->err)
		return -ENOTCONN;
	if (c->sent_count == SW_SENT_MAX)
		return -EAGAIN;
	for (unsigned i = 0; i < nseg; i++) {
		if (c->shm) {
			memcpy(c->data + segs[i].off, segs[i].buf, segs[i].len);
			continue;
		}
		rf_sw_hdr_encode(hdrs[i], RF_SW_WRITE, RF_SW_WRITE_SUBHDR + segs[i].len);
		rf_put_le64(hdrs[i] + RF_SW_HDR_LEN, segs[i].off);
		rf_put_le32(hdrs[i] + RF_SW_HDR_LEN + 8, segs[i].len);
		iov[n++] = (struct iovec){hdrs[i], sizeof(hdrs[i])};
		iov[n++] = (struct iovec){(void *)segs[i].buf, segs[i].len};
	}
	rf_sw_hdr_encode(bell, RF_SW_DOORBELL, RF_SW_DOORBELL_LEN);
	if (bc->want_landed)
		bell[6] = RF_SW_DB_LANDED;
	rf_put_le64(bell + RF_SW_HDR_LEN, last_seq);
	iov[n++] = (struct iovec){bell, sizeof(bell)};
	rc = rf_write_all(c->fd, iov, n, rf_now_ms() + SW_IO_TIMEOUT_MS);
	if (rc) {
		RF_ERR("fabric", "post failed: %s", strerror(-rc));
		c->err = rc;
		return -ENOTCONN;
	}
	c->sent[(c->sent_head + c->sent_count++) % SW_SENT_MAX] = cookie;
	return 0;
}

/* Parse the frames in rbuf into events; returns the count or sets c->err. */
static int parse_frames(struct sw_conn *c, struct rf_fab_event *evs, int max)
{
	int n = 0;
	size_t used = 0;

	while (n < max && c->rlen - used >= RF_SW_HDR_LEN) {
		const uint8_t *h = c->rbuf + used;
		unsigned type;
		uint32_t len;
		const char *why = "unexpected frame type or length";

		if (rf_sw_hdr_decode(h, &type, &len, NULL, &why) ||
		    !((type == RF_SW_POSITION && len == RF_SW_POSITION_LEN) ||
		      (type == RF_SW_LANDED && len == RF_SW_LANDED_LEN))) {
			RF_ERR("fabric", "bad frame from hub: %s", why);
			c->err = -EPROTO;
			break;
		}
		if (c->rlen - used < RF_SW_HDR_LEN + len)
			break;
		if (type == RF_SW_LANDED) {
			evs[n] = (struct rf_fab_event){.type = RF_FAB_EV_LANDED,
			                               .seq = rf_get_le64(h + RF_SW_HDR_LEN)};
		} else {
			evs[n] = (struct rf_fab_event){.type = RF_FAB_EV_POSITION};
			rf_sw_position_decode(h + RF_SW_HDR_LEN, &evs[n].pos);
		}
		n++;
		used += RF_SW_HDR_LEN + len;
	}
	memmove(c->rbuf, c->rbuf + used, c->rlen - used);
	c->rlen -= used;
	return n;
}

int rf_sw_poll(struct rf_fab_conn *bc, struct rf_fab_event *evs, int max, int timeout_ms)
{
	struct sw_conn *c = to_conn(bc);
	int n = 0;

	while (n < max && c->sent_count) {
		evs[n++] =
		    (struct rf_fab_event){.type = RF_FAB_EV_SENT, .cookie = c->sent[c->sent_head]};
		c->sent_head = (c->sent_head + 1) % SW_SENT_MAX;
		c->sent_count--;
	}
	if (n < max && !c->err) {
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		ssize_t got;

		n += parse_frames(c, evs + n, max - n);
		if (n == 0 && !c->err && poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
			c->err = -errno;
		got = c->err ? 0 : read(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
		if (got > 0) {
			c->rlen += (size_t)got;
			n += parse_frames(c, evs + n, max - n);
		} else if (got == 0 && !c->err) {
			c->err = -ECONNRESET;
		} else if (got < 0 && errno != EAGAIN && errno != EINTR) {
			c->err = -errno;
		}
	}
	if (c->err && n < max) {
		evs[n++] = (struct rf_fab_event){.type = RF_FAB_EV_CLOSED, .err = c->err};
		RF_WARN("fabric", "connection to hub closed: %s", strerror(-c->err));
	}
	return n;
}

int rf_sw_conn_fd(const struct rf_fab_conn *bc)
{
	return to_conn(bc)->fd;
}

void rf_sw_close(struct rf_fab_conn *bc)
{
	struct sw_conn *c = to_conn(bc);

	if (c->map)
		munmap(c->map, c->map_len);
	close(c->fd);
	free(c);
}

/* SPDX-License-Identifier: MIT */
/*
 * The rdma:// provider's helpers that its producer (rdma_producer.c) and hub
 * (rdma_hub.c) sides share: the signal eventfd and event queue behind each
 * side's epoll fd, address resolution, the rdma_cm event channel, memory
 * registration with its failures explained, and completion status codes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rdma_internal.h"
#include "repfabric/log.h"

#define MIN_RNR_TIMER 12 /* 0.64 ms (the rdma_cm default 0 means 655 ms) */

int rf_rdma_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int rf_rdma_epoll_add(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	return 0;
}
void rf_rdma_sig_update(struct sigfd *s, int want)
{
	uint64_t v = 1;

	if (s->fd < 0)
		return;
	if (want && !s->set) {
		if (write(s->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
			s->set = 1;
	} else if (!want && s->set) {
		if (read(s->fd, &v, sizeof(v)) == (ssize_t)sizeof(v) || errno == EAGAIN)
			s->set = 0;
	}
}
int rf_rdma_evq_push(struct evq *q, const void *ev)
{
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 64;
		unsigned char *nb = malloc(ncap * q->esz);

		if (!nb)
			return -ENOMEM;
		for (size_t i = 0; i < q->n; i++)
			memcpy(nb + i * q->esz, q->buf + ((q->head + i) % q->cap) * q->esz, q->esz);
		free(q->buf);
		q->buf = nb;
		q->cap = ncap;
		q->head = 0;
	}
	memcpy(q->buf + ((q->head + q->n) % q->cap) * q->esz, ev, q->esz);
	q->n++;
	return 0;
}

int rf_rdma_evq_pop(struct evq *q, void *ev)
{
	if (q->n == 0)
		return 0;
	memcpy(ev, q->buf + q->head * q->esz, q->esz);
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return 1;
}
int rf_rdma_resolve(const char *addr, int passive, struct addrinfo **out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	char host[256], port[16];
	int rc;

	if (rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port))) {
		RF_ERR(SUBSYS, "'%s': expected IP:PORT", addr);
		return -EINVAL;
	}
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(host, port, &hints, out);
	if (rc) {
		RF_ERR(SUBSYS, "cannot resolve '%s': %s", host, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}
/*
 * librdmacm opens each RDMA device once per process and caches the context;
 * a fork()ed child inherits that cache, and the kernel refuses the parent's
 * uverbs file in the child ("changed security contexts": EACCES on the first
 * post). Refuse up front, with the reason, instead.
 */
static atomic_int rdma_owner_pid;

static int check_not_forked(const char *what)
{
	int owner = atomic_load(&rdma_owner_pid), me = (int)getpid();

	if (owner == 0) {
		atomic_compare_exchange_strong(&rdma_owner_pid, &owner, me);
		return 0;
	}
	if (owner == me)
		return 0;
	RF_ERR(SUBSYS,
	       "%s: this process was fork()ed from process %d, which already used RDMA; "
	       "librdmacm's device contexts cannot be used across fork() (the kernel "
	       "refuses them): exec a fresh program in the child",
	       what, owner);
	return -EPERM;
}

int rf_rdma_open_channel(struct rdma_event_channel **ch, const char *what)
{
	int rc = check_not_forked(what);

	if (rc)
		return rc;
	rc = rf_verbs->create_event_channel(ch);

	if (rc) {
		RF_ERR(SUBSYS,
		       "%s: cannot open the RDMA connection manager (%s); is an RDMA device "
		       "present (rdma link show) and rdma_ucm loaded?",
		       what, strerror(-rc));
		return (rc == -ENOENT || rc == -ENODEV || rc == -ENXIO) ? -ENODEV : rc;
	}
	rc = rf_rdma_set_nonblock((*ch)->fd);
	if (rc) {
		rf_verbs->destroy_event_channel(*ch);
		*ch = NULL;
	}
	return rc;
}

/* Log a failed memory registration with its likely cause. */
void rf_rdma_explain_reg_failure(int rc, uint64_t len, const char *what)
{
	if (rc == -EOPNOTSUPP || rc == -EFAULT)
		RF_ERR(SUBSYS,
		       "cannot register %s (%llu bytes) for RDMA: %s; this memory cannot be "
		       "pinned (an fsdax mount or an ordinary file on a newer kernel?): put "
		       "the ring on devdax, tmpfs or hugetlbfs",
		       what, (unsigned long long)len, strerror(-rc));
	else if (rc == -ENOMEM || rc == -EPERM)
		RF_ERR(SUBSYS,
		       "cannot register %s (%llu bytes) for RDMA: %s; the locked-memory limit "
		       "is probably too low (ulimit -l / LimitMEMLOCK=infinity)",
		       what, (unsigned long long)len, strerror(-rc));
	else
		RF_ERR(SUBSYS, "cannot register %s (%llu bytes) for RDMA: %s", what,
		       (unsigned long long)len, strerror(-rc));
}

/* Register ring, staging or message memory, explaining the usual failures. */
int rf_rdma_reg_mr_explained(struct ibv_pd *pd, void *addr, uint64_t len, int access,
                             struct ibv_mr **mr, const char *what)
{
	int rc = rf_verbs->reg_mr(pd, addr, (size_t)len, access, mr);

	if (rc)
		rf_rdma_explain_reg_failure(rc, len, what);
	return rc;
}

int rf_rdma_wc_errno(enum ibv_wc_status st)
{
	switch (st) {
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_WR_FLUSH_ERR:
		return -ECONNRESET;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_LOC_LEN_ERR:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* rdma_cm applies it when it moves the QP to RTS (the timeout cannot change
 * in RTS). Without it the QP gets the path's packet lifetime (about 1 s on
 * RoCE). */
void rf_rdma_set_ack_timeout(struct rdma_cm_id *id, const char *who)
{
	uint8_t t = RC_ACK_TIMEOUT;
	int rc =
	    rf_verbs->set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t));

	if (rc)
		RF_WARN(SUBSYS, "%s: cannot set the local ACK timeout: %s", who, strerror(-rc));
}

/* RTS -> RTS: shorten the RNR NAK wait a receiver asks of the sender. */
void rf_rdma_set_min_rnr_timer(struct ibv_qp *qp, const char *who)
{
	struct ibv_qp_attr a = {.min_rnr_timer = MIN_RNR_TIMER};
	int rc = rf_verbs->modify_qp(qp, &a, IBV_QP_MIN_RNR_TIMER);

	if (rc)
		RF_DEBUG(SUBSYS, "%s: cannot set min_rnr_timer: %s", who, strerror(-rc));
}

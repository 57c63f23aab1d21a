/* SPDX-License-Identifier: MIT */
/* Provider selection by URL scheme and argument checks before dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "repfabric/log.h"

static const struct rf_fab_provider *const providers[] = {
    &rf_fab_rdma_provider,
    &rf_fab_tcp_provider,
    &rf_fab_shm_provider,
};

static int find_provider(const char *url, const struct rf_fab_provider **prov, const char **addr)
{
	const char *sep;

	if (!url)
		return -EINVAL;
	sep = strstr(url, "://");
	if (!sep || sep == url) {
		RF_ERR("fabric",
		       "'%s' is not a URL (expected rdma://IP:PORT, tcp://HOST:PORT "
		       "or shm:///PATH)",
		       url);
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++) {
		size_t n = strlen(providers[i]->scheme);

		if ((size_t)(sep - url) == n && strncmp(url, providers[i]->scheme, n) == 0) {
			*prov = providers[i];
			*addr = sep + 3;
			if (**addr == '\0') {
				RF_ERR("fabric", "'%s': no address after the scheme", url);
				return -EINVAL;
			}
			return 0;
		}
	}
	RF_ERR("fabric", "'%s': unknown transport (rdma, tcp and shm are known)", url);
	return -EPROTONOSUPPORT;
}

int rf_fab_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = addr, *hend;

	if (addr[0] == '[') {
		hend = strchr(addr, ']');
		if (!hend || hend[1] != ':')
			return -EINVAL;
		h = addr + 1;
		colon = hend + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hend = colon;
	}
	if (hend == h || (size_t)(hend - h) >= hostlen || strlen(colon + 1) >= portlen ||
	    colon[1] == '\0')
		return -EINVAL;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	memcpy(host, h, (size_t)(hend - h));
	host[hend - h] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

int rf_fab_url_check(const char *url)
{
	const struct rf_fab_provider *prov;
	const char *addr;
	char host[256], port[16];
	int rc;

	rc = find_provider(url, &prov, &addr);
	if (rc)
		return rc;
	if (prov == &rf_fab_shm_provider) {
		if (addr[0] != '/') {
			RF_ERR("fabric", "'%s': shm needs an absolute path (shm:///dev/shm/x)",
			       url);
			return -EINVAL;
		}
		return 0;
	}
	if (rf_fab_split_hostport(addr, host, sizeof(host), port, sizeof(port)) ||
	    atoi(port) <= 0 || atoi(port) > 65535) {
		RF_ERR("fabric", "'%s': expected %s://HOST:PORT with a port in 1..65535", url,
		       prov->scheme);
		return -EINVAL;
	}
	return 0;
}

int rf_fab_connect(const char *url, uint64_t token, int timeout_ms, struct rf_fab_conn **out,
                   struct rf_fab_ring_info *info)
{
	const struct rf_fab_provider *prov;
	const char *addr;
	int rc;

	*out = NULL;
	rc = rf_fab_url_check(url);
	if (rc)
		return rc;
	find_provider(url, &prov, &addr);
	rc = prov->connect(addr, token, timeout_ms, out, info);
	if (rc)
		return rc;
	if (info->data_size == 0 || info->data_size % 256) {
		RF_ERR("fabric", "%s: hub announced a bad ring size %llu", url,
		       (unsigned long long)info->data_size);
		prov->close(*out);
		*out = NULL;
		return -EPROTO;
	}
	(*out)->prov = prov;
	(*out)->data_size = info->data_size;
	return 0;
}

int rf_fab_post(struct rf_fab_conn *c, const struct rf_fab_seg *segs, unsigned nseg,
                uint64_t last_seq, uint64_t cookie)
{
	if (c->dead)
		return -ENOTCONN;
	if (nseg == 0 || nseg > RF_FAB_MAX_SEGS)
		return -EINVAL;
	for (unsigned i = 0; i < nseg; i++) {
		if (segs[i].len == 0 || segs[i].len > RF_FAB_MAX_SEG_LEN ||
		    segs[i].off > c->data_size || segs[i].len > c->data_size - segs[i].off)
			return -EINVAL;
	}
	return c->prov->post(c, segs, nseg, last_seq, cookie);
}

int rf_fab_poll(struct rf_fab_conn *c, struct rf_fab_event *evs, int max, int timeout_ms)
{
	int n;

	if (max <= 0)
		return -EINVAL;
	if (c->dead)
		return -ENOTCONN;
	n = c->prov->poll(c, evs, max, timeout_ms);
	for (int i = 0; i < n; i++)
		if (evs[i].type == RF_FAB_EV_CLOSED)
			c->dead = 1;
	return n;
}

int rf_fab_conn_fd(const struct rf_fab_conn *c)
{
	return c->prov->conn_fd(c);
}

void rf_fab_conn_want_landed(struct rf_fab_conn *c, bool on)
{
	c->want_landed = on;
}

void rf_fab_close(struct rf_fab_conn **c)
{
	if (!c || !*c)
		return;
	(*c)->prov->close(*c);
	*c = NULL;
}

int rf_fab_listen(const char *url, const struct rf_fab_hub_ops *ops, void *ctx,
                  struct rf_fab_listener **out)
{
	const struct rf_fab_provider *prov;
	const char *addr;
	int rc;

	*out = NULL;
	if (!ops || !ops->attach)
		return -EINVAL;
	rc = rf_fab_url_check(url);
	if (rc)
		return rc;
	find_provider(url, &prov, &addr);
	rc = prov->listen(addr, ops, ctx, out);
	if (rc)
		return rc;
	(*out)->prov = prov;
	return 0;
}

int rf_fab_listener_poll(struct rf_fab_listener *l, struct rf_fab_hub_event *evs, int max,
                         int timeout_ms)
{
	if (max <= 0)
		return -EINVAL;
	return l->prov->listener_poll(l, evs, max, timeout_ms);
}

int rf_fab_listener_fd(const struct rf_fab_listener *l)
{
	return l->prov->listener_fd(l);
}

int rf_fab_publish(struct rf_fab_peer *p, const struct rf_fab_position *pos)
{
	return p->prov->publish(p, pos);
}

int rf_fab_peer_fence(struct rf_fab_peer *p)
{
	return p->prov->fence(p);
}

void rf_fab_listener_close(struct rf_fab_listener **l)
{
	if (!l || !*l)
		return;
	(*l)->prov->listener_close(*l);
	*l = NULL;
}

void rf_fab_count_credit(struct rf_fab_listener *l, struct rf_fab_peer *p,
                         const struct rf_fab_position *pos)
{
	RF_FAB_COUNT(l, p, credits, 1);
	if (pos->head_pos > p->credit_head) {
		RF_FAB_COUNT(l, p, credit_bytes, pos->head_pos - p->credit_head);
		p->credit_head = pos->head_pos;
	}
}

int rf_fab_listener_set_limits(struct rf_fab_listener *l, int handshake_ms, unsigned max_pending)
{
	return rf_admit_set_limits(&l->admit, handshake_ms, max_pending);
}

int rf_fab_listener_admit_stats(const struct rf_fab_listener *l, struct rf_admit_stats *out)
{
	*out = l->admit.stats;
	return 0;
}

unsigned rf_fab_listener_pending(const struct rf_fab_listener *l)
{
	return l->admit.npending;
}

int rf_fab_listener_stats(const struct rf_fab_listener *l, struct rf_fab_stats *out)
{
	*out = l->stats;
	return 0;
}

int rf_fab_peer_stats(const struct rf_fab_peer *p, struct rf_fab_stats *out)
{
	*out = p->stats;
	return 0;
}

const char *rf_fab_listener_scheme(const struct rf_fab_listener *l)
{
	return l->prov->scheme;
}

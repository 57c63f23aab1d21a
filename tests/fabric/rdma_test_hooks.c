/* SPDX-License-Identifier: MIT */
/*
 * TEST ONLY. The hooks of rdma_test.h, built into librffabric_testhooks
 * (tests/fabric/CMakeLists.txt) and never into the shipped librffabric.
 * They need the provider's private state (struct rdma_conn, its CQ and
 * staging area) and helpers, which fabric/rdma_internal.h declares for the
 * provider's own files; the test library is librffabric plus the hooks below.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../../fabric/rdma_internal.h"
#include "rdma_test.h"
#include "repfabric/log.h"

/*
 * rdma_test.h: a hostile producer for the isolation tests. Not used by the
 * library, the hub or the agent.
 */
#define WR_TEST (3ull << 62) /* the kind no other work request uses */

int rf_rdma_test_remote(struct rf_fab_conn *base, uint64_t *addr, uint32_t *rkey,
                        uint64_t *data_size)
{
	struct rdma_conn *c;

	if (!base || base->prov != &rf_fab_rdma_provider)
		return -EINVAL;
	c = container_of(base, struct rdma_conn, base);
	*addr = c->remote_addr;
	*rkey = c->rkey;
	*data_size = c->data_size;
	return 0;
}

int rf_rdma_test_write(struct rf_fab_conn *base, uint64_t addr, uint32_t rkey, const void *buf,
                       uint32_t len, int timeout_ms, int *wc_status)
{
	struct rdma_conn *c;
	struct ibv_sge sge;
	struct ibv_send_wr wr, *bad;
	int64_t deadline = deadline_of(timeout_ms);
	int rc;

	if (!base || base->prov != &rf_fab_rdma_provider)
		return -EINVAL;
	c = container_of(base, struct rdma_conn, base);
	if (c->broken)
		return -ENOTCONN;
	if (c->post_next != c->post_done)
		return -EBUSY;
	if (len == 0 || len > c->stage_size)
		return -EINVAL;
	memcpy(c->stage, buf, len);
	sge =
	    (struct ibv_sge){.addr = (uintptr_t)c->stage, .length = len, .lkey = c->stage_mr->lkey};
	wr = (struct ibv_send_wr){.wr_id = WR_TEST,
	                          .sg_list = &sge,
	                          .num_sge = 1,
	                          .opcode = IBV_WR_RDMA_WRITE,
	                          .send_flags = IBV_SEND_SIGNALED};
	wr.wr.rdma.remote_addr = addr;
	wr.wr.rdma.rkey = rkey;
	rc = rf_verbs->post_send(c->id->qp, &wr, &bad);
	if (rc)
		return rc;
	RF_WARN(SUBSYS, "%s: TEST ONLY: raw RDMA WRITE of %u bytes to %#llx rkey %#x", c->name, len,
	        (unsigned long long)addr, rkey);
	for (;;) {
		struct ibv_wc wc[CQ_BATCH];
		int n = rf_verbs->poll_cq(c->cq, CQ_BATCH, wc);

		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (wc[i].wr_id != WR_TEST) {
				rf_rdma_conn_handle_wc(c, &wc[i]);
				continue;
			}
			*wc_status = (int)wc[i].status;
			if (wc[i].status != IBV_WC_SUCCESS)
				rf_rdma_conn_fail(
				    c, rf_rdma_wc_errno(wc[i].status),
				    "the TEST ONLY raw write completed with %s (vendor error %#x)",
				    ibv_wc_status_str(wc[i].status), wc[i].vendor_err);
			return 0;
		}
		if (remaining_ms(deadline) == 0)
			return -ETIMEDOUT;
		if (n == 0)
			usleep(1000);
	}
}

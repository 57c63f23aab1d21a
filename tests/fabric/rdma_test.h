/* SPDX-License-Identifier: MIT */
/*
 * TEST ONLY. Hooks into the rdma:// producer for the isolation tests
 * (tests/func/hub_isolation_rdma.sh via rf-hub-agent-sim): they let a
 * hostile producer aim a raw RDMA WRITE at an address and rkey of its
 * choosing, to prove that the hub's per-producer memory regions keep one
 * agent out of another agent's ring. Nothing in the library, the hub or the
 * agent calls them; they are not part of the public API (include/) and must
 * never be used outside tests. They are defined in rdma_test_hooks.c and
 * exist only in librffabric_testhooks, not in the shipped librffabric.
 */
#ifndef REPFABRIC_TESTS_FABRIC_RDMA_TEST_H
#define REPFABRIC_TESTS_FABRIC_RDMA_TEST_H

#include <stdint.h>

#include "repfabric/fabric.h"

/*
 * TEST ONLY. The remote ring of an rdma:// connection, as the hub's accept
 * message gave it: the address of its data area, its rkey and its size.
 * Returns 0, or -EINVAL when @c is not an rdma:// connection.
 */
int rf_rdma_test_remote(struct rf_fab_conn *c, uint64_t *addr, uint32_t *rkey, uint64_t *data_size);

/*
 * TEST ONLY. Post one signaled RDMA WRITE of @len bytes of @buf (copied into
 * the staging area) to (@addr, @rkey) on @c's QP, whatever the connection
 * was given, and wait up to @timeout_ms for its completion. On a completion
 * returns 0 and its status (enum ibv_wc_status) in *@wc_status; a failed
 * completion also ends the connection (RF_FAB_EV_CLOSED), as any failed
 * write does. Other errors: -EINVAL (not rdma://, @len 0 or larger than the
 * staging area), -EBUSY (posts in flight), -ENOTCONN (the connection is
 * already broken), -ETIMEDOUT (no completion), or post_send's error.
 * Completions of other work requests seen meanwhile are handled as usual.
 */
int rf_rdma_test_write(struct rf_fab_conn *c, uint64_t addr, uint32_t rkey, const void *buf,
                       uint32_t len, int timeout_ms, int *wc_status);

#endif /* REPFABRIC_TESTS_FABRIC_RDMA_TEST_H */

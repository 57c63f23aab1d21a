/* SPDX-License-Identifier: MIT */
/*
 * State layer: the hub's record of an agent — find, create, map its ring,
 * publish its durable position (agent.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "repfabric/log.h"

#define SUBSYS "session"

struct hub_agent *agent_find(struct hub *h, const char *id)
{
	for (struct hub_agent *a = h->agents; a; a = a->next)
		if (strcmp(a->id, id) == 0)
			return a;
	return NULL;
}

struct hub_agent *agent_get(struct hub *h, const char *id)
{
	struct hub_agent *a = agent_find(h, id), **tail;

	if (a)
		return a;
	if (!rf_ctl_name_ok(id))
		return NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->hub = h;
	strcpy(a->id, id);
	if ((size_t)snprintf(a->ring_path, sizeof(a->ring_path), "%s/%s.ring", h->rings_dir, id) >=
	    sizeof(a->ring_path)) {
		free(a);
		return NULL;
	}
	for (tail = &h->agents; *tail; tail = &(*tail)->next)
		;
	*tail = a;
	return a;
}

bool agent_live(const struct hub_agent *a)
{
	return a && a->conn && !a->conn->dead;
}

void agent_set_error(struct hub_agent *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->last_error, sizeof(a->last_error), fmt, ap);
	va_end(ap);
}

/* Where this ring's records become durable (docs/DURABILITY.md). */
const char *hub_ring_rule(enum hub_durability d, bool is_pmem, bool *rule_pmem)
{
	*rule_pmem = d != HUB_DURABLE_APPLY && (is_pmem || d == HUB_DURABLE_PMEM);
	if (d == HUB_DURABLE_APPLY)
		return "durability = apply";
	if (is_pmem)
		return "pmem_is_pmem";
	return d == HUB_DURABLE_PMEM ? "forced by durability = pmem" : "not persistent memory";
}

static void choose_rule(struct hub_agent *a)
{
	enum hub_durability d = (enum hub_durability)a->hub->cfg->durability;
	bool pmem = rf_ring_is_pmem(a->ring);

	a->ring_rule_why = hub_ring_rule(d, pmem, &a->ring_pmem);
	if (a->ring_pmem && !pmem) {
		rf_ring_force_pmem(a->ring);
		RF_WARN(SUBSYS,
		        "agent %s: ring %s is not persistent memory to libpmem, but durability = "
		        "pmem: records are acknowledged once flushed there, which survives a "
		        "crash of rephubd but NOT a power failure unless this memory is "
		        "persistent",
		        a->id, a->ring_path);
	}
	RF_INFO(SUBSYS, "agent %s: ring %s uses rule %s (%s)", a->id, a->ring_path,
	        a->ring_pmem ? "pmem" : "apply", a->ring_rule_why);
}

/*
 * After a crash: every record before the durable mark was acknowledged
 * durable; a valid prefix that ends before it lost some (a media error or a
 * bug). Say so loudly and count it; what is valid is applied.
 */
static void check_durable_mark(struct hub_agent *a)
{
	struct rf_ring_scan_result sc;

	rf_ring_scan(a->ring, &sc);
	if (sc.end_seq >= sc.durable_seq)
		return;
	a->hub->rings_lost_acked++;
	agent_set_error(a, "ring %s lost records acknowledged durable (%" PRIu64 "..%" PRIu64 ")",
	                a->ring_path, sc.end_seq, sc.durable_seq - 1);
	RF_ERR(SUBSYS,
	       "agent %s: ring %s: the records from seq %" PRIu64 " to %" PRIu64
	       " were acknowledged durable but are not valid any more (%s: %s); the replica "
	       "misses them",
	       a->id, a->ring_path, sc.end_seq, sc.durable_seq - 1,
	       rf_ring_status_name(sc.stop.status), sc.stop.reason);
}

int agent_ring_open(struct hub_agent *a, bool create)
{
	int rc;

	if (a->ring)
		return 0;
	if (create) {
		rc = rf_ring_create(&a->ring, a->ring_path, a->hub->cfg->ring_size);
		if (!rc)
			RF_INFO(SUBSYS, "agent %s: created ring %s (%" PRIu64 " bytes of data)",
			        a->id, a->ring_path, a->hub->cfg->ring_size);
	} else {
		rc = access(a->ring_path, F_OK) == 0 ? rf_ring_open(&a->ring, a->ring_path)
		                                     : -ENOENT;
		if (rc == -ENODATA) {
			/* A device DAX (ring_dir/AGENT.ring -> /dev/daxX.Y) with no ring
			 * yet: like a missing file, the caller makes a new ring. */
			RF_INFO(SUBSYS, "agent %s: %s holds no ring yet: formatting it", a->id,
			        a->ring_path);
			return -ENOENT;
		}
		if (!rc) {
			RF_INFO(SUBSYS, "agent %s: opened ring %s (%" PRIu64 " bytes of data)",
			        a->id, a->ring_path, rf_ring_data_size(a->ring));
			if (rf_ring_data_size(a->ring) != a->hub->cfg->ring_size)
				RF_INFO(SUBSYS,
				        "agent %s: the ring keeps its size; ring_size applies to "
				        "new rings",
				        a->id);
		}
	}
	if (rc)
		return rc;
	a->ring_broken = false;
	rf_ring_head(a->ring, &a->durable_pos, &a->durable_seq);
	choose_rule(a);
	if (!create)
		check_durable_mark(a);
	return 0;
}

int agent_ring_failed(struct hub_agent *a, int rc)
{
	a->ring_broken = true;
	agent_set_error(a, "cannot open ring %s: %s", a->ring_path, strerror(-rc));
	RF_ERR(SUBSYS, "agent %s: cannot open or create ring %s: %s%s", a->id, a->ring_path,
	       strerror(-rc),
	       rc == -EBADMSG ? " (the header is damaged; move the file aside to start "
	                        "over with a full sync)"
	                      : "");
	return rc;
}

uint64_t agent_durable_seq(const struct hub_agent *a)
{
	uint64_t pos, seq;

	if (!a->ring_pmem || !a->ring)
		return a->durable_seq;
	rf_ring_durable(a->ring, &pos, &seq);
	return seq > a->durable_seq ? seq : a->durable_seq;
}

void agent_publish(struct hub_agent *a)
{
	struct rf_fab_position pos;

	pos.head_pos = pos.durable_pos = a->durable_pos;
	pos.head_seq = pos.durable_seq = a->durable_seq;
	if (a->ring_pmem && a->ring)
		rf_ring_durable(a->ring, &pos.durable_pos, &pos.durable_seq);
	a->head_due = false;
	if (!a->peer)
		return;
	a->published_head = pos.head_pos;
	rf_fab_publish(a->peer, &pos); /* -ENOTCONN: a DETACHED event follows */
}

void agent_publish_applied(struct hub_agent *a)
{
	if (!a->ring_pmem || !a->ring || !a->peer ||
	    a->durable_pos - a->published_head >= rf_ring_data_size(a->ring) / 4)
		agent_publish(a);
	else
		a->head_due = a->durable_pos != a->published_head;
}

void agent_publish_head_tick(struct hub_agent *a)
{
	if (a->head_due)
		agent_publish(a);
}

int agent_make_durable(struct hub_agent *a)
{
	struct rf_ring_verdict why;
	int n;

	if (!a->ring_pmem || !a->ring || !a->landed_valid)
		return 0;
	n = rf_ring_make_durable(a->ring, a->landed_seq, &why);
	if (n > 0)
		agent_publish(a);
	/* An invalid record (why) is the drain's to refuse and fence. */
	return n;
}

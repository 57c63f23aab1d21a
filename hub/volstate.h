/* SPDX-License-Identifier: MIT */
/*
 * State layer: the configured volumes. Each has a state file
 * state_dir/volumes/NAME.state (owner agent, its vol_id, size, whether a
 * full sync with that agent completed), written atomically (tmp file,
 * fsync, rename, fsync of the directory), and a storage stack: the
 * recovery image, its journal when journal_time > 0, and while a failover
 * test runs, the test's view (apply.h).
 *
 * The state file is written before VOLUME_OK is sent, so every record an
 * agent can post for a volume has its vol_id mapping on disk: a hub that
 * restarts drains the rings with it before any agent reconnects.
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: state. Uses agent.h, apply.h, journal.h, and
 * ctl_send() for VOLUME_STATE (the one upward call, see base.h).
 */
#ifndef REPHUB_VOLSTATE_H
#define REPHUB_VOLSTATE_H

#include "agent.h"
#include "apply.h"
#include "base.h"

enum chunk_state { CHUNK_PENDING = 0, CHUNK_INFLIGHT, CHUNK_POSTED, CHUNK_SYNCED };

struct sync_inflight {
	uint64_t req_id;
	uint64_t chunk;
	int64_t sent_at;
	uint64_t durable_at_send; /* the answer's record cannot be older */
};

struct sync_posted {
	uint64_t chunk;
	uint64_t seq;
};

/* A volume's initial sync (sync.c owns it; kept here, inside struct volume). */
struct vol_sync {
	bool active;
	uint64_t chunk; /* bytes per SYNC_READ: 1 MiB, less for a small ring */
	uint64_t nchunks, synced_chunks, cursor;
	uint64_t synced_bytes;
	uint8_t *cstate; /* enum chunk_state per chunk */
	struct sync_inflight infl[HUB_SYNC_WINDOW];
	unsigned ninfl;
	struct sync_posted *posted;
	size_t nposted, posted_cap;
	double tokens; /* pacing bucket, bytes */
	int64_t refill_at;
	int64_t retry_at;
	unsigned backoff_ms;   /* nonzero: refused (EAGAIN) since the last SYNC_POSTED */
	uint64_t last_req;     /* the newest SYNC_READ request id sent */
	uint64_t refused_upto; /* EAGAIN for requests up to this id: the same episode */
	uint64_t refused_seq;  /* the owner's durable seq at the last refusal */
	bool wait_durable;     /* refused: retry at the next durable progress */
	uint64_t errors, eagain, requests;
	int64_t started_at;
};

struct volume {
	struct hub *hub;
	const struct hub_vol_config *cfg;
	uint32_t handle; /* stable while the hub runs (a reload reorders vols[]) */
	int fd;          /* the recovery image, -1 until opened */
	uint64_t size;   /* bytes; 0 until known */
	enum rf_vol_state state;

	/* persisted in state_dir/volumes/NAME.state */
	bool has_state;
	char owner_id[RF_CTL_MAX_NAME + 1];
	uint32_t vol_id;
	bool synced;

	struct hub_agent *owner; /* agent of owner_id (maybe disconnected) */
	bool reported;           /* reported in the owner's current session */
	uint64_t reported_session;
	bool touched; /* written in the current drain batch */

	struct vol_sync sync;

	/* from PROGRESS */
	uint64_t dirty_bytes;
	bool ack_known;         /* the agent reported its acknowledgement level */
	uint8_t ack;            /* 0 async, 2 durable (docs/DURABILITY.md) */
	bool ack_fallback;      /* a sync level fell back to async, not caught up yet */
	uint32_t ack_fallbacks; /* times it fell back, in the agent's current run */
	uint64_t progress_count;
	int64_t progress_at;

	/* resync (resync.c) */
	uint64_t resend_bytes;         /* newest PROGRESS: waiting to be read back and resent */
	uint64_t resent_bytes;         /* resent since the hub started, over agent runs */
	uint64_t resent_seen;          /* the agent's own counter in its newest PROGRESS */
	uint64_t resent_instance;      /* ... and that agent run */
	uint64_t resyncs;              /* times it became resyncing */
	const char *resync_cause;      /* while resyncing: "reconnect", "congestion", ... */
	int64_t resync_started;        /* when the current or last resync began */
	uint64_t resync_bytes;         /* resent since then */
	const char *last_resync_cause; /* NULL until one completed */
	int64_t last_resync_ms;        /* how long the last completed one took */
	uint64_t last_resync_bytes;    /* and what it resent */

	uint64_t records, bytes, invalid_records;

	/* point in time: storage stack (apply.h) and points (points.c) */
	struct journal *jr;       /* NULL: journal_time = 0, records go straight to the image */
	struct test_view *test;   /* a failover test, or NULL */
	bool failed_over;         /* persisted: the owner is fenced off this volume */
	uint64_t failover_seq;    /* the point it failed over at */
	uint64_t dropped_records; /* the owner's records refused after the failover */
};

/* Set up every configured volume: state file, journal, image. 0 or -ENOMEM. */
int volumes_init(struct hub *h);
void volumes_fini(struct hub *h);
struct volumes_reload_stats {
	unsigned added, removed, kept; /* kept: dropped from the file but busy */
};
/*
 * Rebuild the volume list from @nc (not yet the running configuration):
 * new volumes are set up, unused dropped ones torn down, busy dropped ones
 * appended to @nc; kept volumes move with their state and keep their
 * recovery and journal settings (written back into @nc); a removed volume
 * is marked not synced (added back, it syncs in full). A volume is busy
 * while its agent is connected, its agent's ring holds records, its
 * journal holds entries, or a test runs. 0, -ENOMEM, or -EINVAL when two
 * volumes would share a recovery image (logged); on error nothing changed.
 */
int volumes_reload(struct hub *h, struct hub_config *nc, struct volumes_reload_stats *st);
struct volume *volume_find(struct hub *h, const char *name);
/* @a's volume @vol_id; @live: reported in @a's current session (else owning it is enough). */
struct volume *volume_by_vol_id(struct hub_agent *a, uint32_t vol_id, bool live);
/* state_dir/volumes/NAME.state@suffix. 0 or -ENAMETOOLONG. */
int volume_state_path(const struct volume *v, char *buf, size_t len, const char *suffix);
int volume_save_state(struct volume *v);
/* Log a change; with @notify tell the owner (VOLUME_STATE) if it reported @v in its session. */
void volume_set_state(struct volume *v, enum rf_vol_state st, bool notify);
/* Open (@create: make) the recovery image; @size 0: learn it. 0 or -errno with @why. */
int volume_open_image(struct volume *v, uint64_t size, bool create, char *why, size_t whylen);
/* Bytes of @v known synced: the sync's count, else all or nothing. */
uint64_t volume_synced_bytes(const struct volume *v);
/* Free the sync's state (sync.c's sync_stop). */
void volume_sync_clear(struct volume *v);

/* A failover test's view (apply.h) of @v at point @seq; the journal pauses. */
int testview_start(struct volume *v, uint64_t seq, int64_t time_ms, char *why, size_t whylen);
void testview_stop(struct volume *v);
/* The point the running test shows, 0 without one. */
uint64_t testview_seq(const struct volume *v);

#endif /* REPHUB_VOLSTATE_H */

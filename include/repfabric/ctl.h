/* SPDX-License-Identifier: MIT */
/*
 * The control channel (TCP) between agents, repctl and rephubd: framing,
 * message types and their payload codecs. Byte-level description in
 * docs/PROTOCOL.md, "Control channel".
 *
 * Every frame is a 24-byte header and a payload. Decoders treat input as
 * hostile: the header is validated (magic, version, reserved bytes, length
 * cap) before any payload is read, and every payload decoder checks each
 * field and that no byte is left over. Functions return 0 or -errno; on
 * -EPROTO/-EBADMSG a static reason string is stored through @why.
 */
#ifndef REPFABRIC_CTL_H
#define REPFABRIC_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RF_CTL_MAGIC       0x54434652u /* "RFCT" on the wire */
#define RF_CTL_VERSION     1
#define RF_CTL_HDR_LEN     24
#define RF_CTL_MAX_DATA    (1u << 20)                /* sync read / redirected IO size */
#define RF_CTL_MAX_PAYLOAD (RF_CTL_MAX_DATA + 4096u) /* any frame's payload */
#define RF_CTL_MAX_NAME    64                        /* volume and agent names */
#define RF_CTL_MAX_TEXT    1024                      /* reasons, URLs */

enum rf_ctl_type {
	RF_CTL_ERROR = 1,         /* reply: code i32, reason */
	RF_CTL_HELLO = 2,         /* agent -> hub request */
	RF_CTL_HELLO_OK = 3,      /* reply: session, token, data URL */
	RF_CTL_VOLUME_REPORT = 4, /* agent -> hub request */
	RF_CTL_VOLUME_OK = 5,     /* reply: volume accepted, sync mode */
	RF_CTL_SYNC_READ = 6,     /* hub -> agent request */
	RF_CTL_SYNC_POSTED = 7,   /* reply: the ring record that carries the bytes */
	RF_CTL_HEARTBEAT = 8,     /* either way; answered with HEARTBEAT */
	RF_CTL_STATUS = 9,        /* repctl -> hub request */
	RF_CTL_STATUS_OK = 10,    /* reply: JSON text */
	RF_CTL_VOLUME_STATE = 11, /* hub -> agent notification: state changed */
	RF_CTL_PROGRESS = 12,     /* agent -> hub notification: queue and dirty bytes */
	RF_CTL_REPORT_AGAIN = 13, /* hub -> agent notification: report refused volumes again */
	/* redirected IO: a failover test's view (the nbdkit plugin -> hub) */
	RF_CTL_IO_OPEN = 32,    /* request: volume name */
	RF_CTL_IO_OPEN_OK = 33, /* reply: handle, size, the test's point */
	RF_CTL_IO_READ = 34,    /* request: handle, offset, length */
	RF_CTL_IO_DATA = 35,    /* reply to IO_READ: the bytes */
	RF_CTL_IO_WRITE = 36,   /* request: handle, offset, length, the bytes */
	RF_CTL_IO_FLUSH = 37,   /* request: handle (offset and length 0) */
	RF_CTL_IO_DONE = 38,    /* reply to IO_WRITE / IO_FLUSH */
	/* point in time and failover (repctl -> hub) */
	RF_CTL_POINTS = 48,    /* request: volume name */
	RF_CTL_POINTS_OK = 49, /* reply: the journal's range */
	RF_CTL_ADMIN = 50,     /* request: test start/stop, failover */
	RF_CTL_ADMIN_OK = 51,  /* reply: point, time, a message */
	/* authentication (docs/PROTOCOL.md, "Authentication") */
	RF_CTL_AUTH_START = 64,     /* client -> hub request: method, identity, nonce */
	RF_CTL_AUTH_CHALLENGE = 65, /* reply: the hub's nonce */
	RF_CTL_AUTH_PROOF = 66,     /* client -> hub request: the client's MAC */
	RF_CTL_AUTH_OK = 67,        /* reply: role, the hub's MAC */
	/* 39..47 (redirected IO), 52..63 (failover and administration) and 68..79
	 * (authentication) are reserved. */
};

/* Flags of ring records posted by agents (struct rf_ring_desc.flags). */
#define RF_REC_FLAG_SYNC 0x0001u /* carries sync/resync data, not a guest write */

/* Volume states, as the hub reports them. */
enum rf_vol_state {
	RF_VOL_UNKNOWN = 0,      /* configured, no agent has reported it */
	RF_VOL_SYNCING = 1,      /* initial full sync running */
	RF_VOL_RESYNCING = 2,    /* resending dirty regions after an outage */
	RF_VOL_PROTECTED = 3,    /* every write is mirrored; replica converges */
	RF_VOL_DISCONNECTED = 4, /* the agent is gone; the bitmap tracks writes */
};

const char *rf_vol_state_name(enum rf_vol_state st);

struct rf_ctl_hdr {
	uint16_t type;
	uint64_t req_id; /* replies echo the request's id; notifications use 0 */
	uint32_t len;    /* payload bytes */
};

void rf_ctl_hdr_encode(uint8_t *buf, uint16_t type, uint64_t req_id, uint32_t len);
/* Returns 0 or -EPROTO (bad magic/version/reserved, length above the cap). */
int rf_ctl_hdr_decode(const uint8_t *buf, struct rf_ctl_hdr *h, const char **why);

/* ---- payloads -------------------------------------------------------- */

struct rf_ctl_error {
	int32_t code; /* a positive errno */
	char reason[RF_CTL_MAX_TEXT + 1];
};

struct rf_ctl_hello {
	uint16_t proto; /* RF_CTL_VERSION */
	char agent_id[RF_CTL_MAX_NAME + 1];
};

struct rf_ctl_hello_ok {
	uint64_t session; /* this connection's session id */
	uint64_t token;   /* present it to the data transport */
	char data_url[RF_CTL_MAX_TEXT + 1];
};

struct rf_ctl_volume_report {
	uint32_t vol_id;      /* agent-chosen id, unique within the agent, carried in records */
	uint64_t size;        /* bytes, a multiple of 512 */
	uint8_t bitmap_valid; /* 1: the agent's dirty bitmap covers every unacked write */
	char name[RF_CTL_MAX_NAME + 1];
};

enum rf_ctl_sync_mode {
	RF_SYNC_NONE = 0, /* the replica is current: nothing to send */
	RF_SYNC_FULL = 1, /* the hub reads the whole volume */
	RF_SYNC_DIRTY = 2 /* the hub reads the regions the agent reports dirty */
};

struct rf_ctl_volume_ok {
	uint32_t vol_id;
	uint8_t state; /* enum rf_vol_state */
	uint8_t sync;  /* enum rf_ctl_sync_mode */
	/* Appended field (#5): bytes per second the agent may spend on
	 * resending its dirty regions of this volume, 0 = unlimited. A
	 * VOLUME_OK without it (6 bytes) decodes as 0. */
	uint64_t resync_rate;
};

struct rf_ctl_sync_read {
	uint32_t vol_id;
	uint64_t offset;
	uint32_t length; /* 1..RF_CTL_MAX_DATA */
};

/* SYNC_POSTED: the agent read the range and posted it as ring record seq. */
struct rf_ctl_sync_posted {
	uint32_t vol_id;
	uint64_t offset;
	uint32_t length;
	uint64_t seq;
};

#define RF_CTL_MAX_PROGRESS_VOLS 256

/* PROGRESS flags (the resync tail). CONGESTED: the agent's queue overflowed,
 * and writes it tracked in the bitmap only are not all resent yet. */
#define RF_PROGRESS_CONGESTED    0x01u
#define RF_PROGRESS_ACK          0x02u /* the ack tail follows the resync tail */
#define RF_PROGRESS_VOL_FALLBACK 0x01u /* per volume: a sync ack level fell back to async */

struct rf_ctl_progress {
	uint64_t next_seq; /* the sequence the agent's next record will carry */
	uint32_t queued;   /* writes waiting to be posted */
	uint16_t nvols;
	/*
	 * The resync tail (#5), after the volume list. Present on the wire
	 * exactly when @instance is not 0: an encoder with instance 0 writes
	 * the short form, and a decoded short form has instance 0.
	 */
	uint64_t instance;    /* random per agent start, never 0 on the wire */
	uint32_t congestions; /* switches to bitmap tracking (queue full) since the start */
	uint8_t flags;        /* RF_PROGRESS_*; other bits 0 */
	struct {
		uint32_t vol_id;
		uint64_t dirty_bytes;  /* pending: not yet durable at the hub, or to be resent */
		uint64_t resend_bytes; /* tail: of those, only in the bitmap: to be read back */
		uint64_t resent_bytes; /* tail: read back and posted again since the start */
		/* ack tail (RF_PROGRESS_ACK; docs/DURABILITY.md) */
		uint8_t ack;            /* the volume's level: 0 async, 2 durable */
		uint8_t ack_flags;      /* RF_PROGRESS_VOL_FALLBACK; other bits 0 */
		uint32_t ack_fallbacks; /* times it fell back since the agent started */
	} vols[RF_CTL_MAX_PROGRESS_VOLS];
};

struct rf_ctl_volume_state {
	uint32_t vol_id;
	uint8_t state;
	uint64_t synced_bytes;
};

/* ---- redirected IO (32..47) ---- */

struct rf_ctl_io_open {
	char name[RF_CTL_MAX_NAME + 1];
};

struct rf_ctl_io_open_ok {
	uint32_t handle;
	uint64_t size;
	uint64_t seq; /* the point the view shows */
};

/* IO_READ, IO_WRITE (the bytes follow), IO_FLUSH (offset = length = 0). */
struct rf_ctl_io_req {
	uint32_t handle;
	uint64_t offset;
	uint32_t length;     /* 1..RF_CTL_MAX_DATA for READ and WRITE */
	const uint8_t *data; /* WRITE: points into the decoded payload */
};

/* ---- point in time and failover (48..63) ---- */

struct rf_ctl_points {
	char name[RF_CTL_MAX_NAME + 1];
};

#define RF_POINTS_JOURNAL     0x01u /* the volume has a journal (journal_time > 0) */
#define RF_POINTS_TEST        0x02u /* a failover test runs (test_seq is its point) */
#define RF_POINTS_FAILED_OVER 0x04u /* failed over: the agent is fenced */

struct rf_ctl_points_ok {
	uint32_t flags; /* RF_POINTS_* */
	uint64_t oldest_seq, newest_seq;
	int64_t oldest_time_ms, newest_time_ms; /* unix ms; 0: before the journal */
	uint64_t entries, bytes;
	uint64_t retain_ms, retain_bytes;
	uint64_t test_seq;
};

enum rf_ctl_admin_op {
	RF_ADMIN_TEST_START = 1,
	RF_ADMIN_TEST_STOP = 2,
	RF_ADMIN_FAILOVER = 3,
};

enum rf_ctl_at { RF_AT_LATEST = 0, RF_AT_TIME = 1, RF_AT_SEQ = 2 };

struct rf_ctl_admin {
	uint8_t op;     /* enum rf_ctl_admin_op */
	uint8_t at;     /* enum rf_ctl_at */
	uint8_t force;  /* failover while a test runs */
	uint64_t value; /* RF_AT_TIME: unix ms; RF_AT_SEQ: the sequence */
	char name[RF_CTL_MAX_NAME + 1];
};

struct rf_ctl_admin_ok {
	uint64_t seq;
	int64_t time_ms;
	char text[RF_CTL_MAX_TEXT + 1]; /* for people: what was done, image paths */
};

/* ---- authentication (64..79) ---- */

#define RF_AUTH_METHOD_HMAC_SHA256 1
#define RF_AUTH_NONCE_LEN          32
#define RF_AUTH_MAC_LEN            32

enum rf_auth_role { RF_AUTH_ROLE_AGENT = 1, RF_AUTH_ROLE_ADMIN = 2 };

struct rf_ctl_auth_start {
	uint16_t method; /* RF_AUTH_METHOD_HMAC_SHA256 */
	char identity[RF_CTL_MAX_NAME + 1];
	uint8_t nonce[RF_AUTH_NONCE_LEN];
};

/* AUTH_CHALLENGE: the hub's nonce; AUTH_PROOF: the client's MAC. */
struct rf_ctl_auth_blob {
	uint8_t b[RF_AUTH_NONCE_LEN]; /* == RF_AUTH_MAC_LEN */
};

struct rf_ctl_auth_ok {
	uint8_t role; /* enum rf_auth_role */
	uint8_t mac[RF_AUTH_MAC_LEN];
};

/*
 * Encoders write the payload into @buf (capacity @cap) and return its length,
 * or -ENOBUFS / -EINVAL (a string too long or not a valid name).
 * Decoders parse exactly @len bytes and return 0 or -EBADMSG with @why.
 */
int rf_ctl_enc_error(uint8_t *buf, size_t cap, const struct rf_ctl_error *m);
int rf_ctl_dec_error(const uint8_t *p, size_t len, struct rf_ctl_error *m, const char **why);
int rf_ctl_enc_hello(uint8_t *buf, size_t cap, const struct rf_ctl_hello *m);
int rf_ctl_dec_hello(const uint8_t *p, size_t len, struct rf_ctl_hello *m, const char **why);
int rf_ctl_enc_hello_ok(uint8_t *buf, size_t cap, const struct rf_ctl_hello_ok *m);
int rf_ctl_dec_hello_ok(const uint8_t *p, size_t len, struct rf_ctl_hello_ok *m, const char **why);
int rf_ctl_enc_volume_report(uint8_t *buf, size_t cap, const struct rf_ctl_volume_report *m);
int rf_ctl_dec_volume_report(const uint8_t *p, size_t len, struct rf_ctl_volume_report *m,
                             const char **why);
int rf_ctl_enc_volume_ok(uint8_t *buf, size_t cap, const struct rf_ctl_volume_ok *m);
int rf_ctl_dec_volume_ok(const uint8_t *p, size_t len, struct rf_ctl_volume_ok *m,
                         const char **why);
int rf_ctl_enc_sync_read(uint8_t *buf, size_t cap, const struct rf_ctl_sync_read *m);
int rf_ctl_dec_sync_read(const uint8_t *p, size_t len, struct rf_ctl_sync_read *m,
                         const char **why);
int rf_ctl_enc_sync_posted(uint8_t *buf, size_t cap, const struct rf_ctl_sync_posted *m);
int rf_ctl_dec_sync_posted(const uint8_t *p, size_t len, struct rf_ctl_sync_posted *m,
                           const char **why);
int rf_ctl_enc_progress(uint8_t *buf, size_t cap, const struct rf_ctl_progress *m);
int rf_ctl_dec_progress(const uint8_t *p, size_t len, struct rf_ctl_progress *m, const char **why);
int rf_ctl_enc_volume_state(uint8_t *buf, size_t cap, const struct rf_ctl_volume_state *m);
int rf_ctl_dec_volume_state(const uint8_t *p, size_t len, struct rf_ctl_volume_state *m,
                            const char **why);

int rf_ctl_enc_io_open(uint8_t *buf, size_t cap, const struct rf_ctl_io_open *m);
int rf_ctl_dec_io_open(const uint8_t *p, size_t len, struct rf_ctl_io_open *m, const char **why);
int rf_ctl_enc_io_open_ok(uint8_t *buf, size_t cap, const struct rf_ctl_io_open_ok *m);
int rf_ctl_dec_io_open_ok(const uint8_t *p, size_t len, struct rf_ctl_io_open_ok *m,
                          const char **why);
/* The IO_READ/IO_WRITE/IO_FLUSH header (16 bytes); WRITE's bytes follow it. */
int rf_ctl_enc_io_req(uint8_t *buf, size_t cap, const struct rf_ctl_io_req *m);
int rf_ctl_dec_io_req(const uint8_t *p, size_t len, uint16_t type, struct rf_ctl_io_req *m,
                      const char **why);
int rf_ctl_enc_points(uint8_t *buf, size_t cap, const struct rf_ctl_points *m);
int rf_ctl_dec_points(const uint8_t *p, size_t len, struct rf_ctl_points *m, const char **why);
int rf_ctl_enc_points_ok(uint8_t *buf, size_t cap, const struct rf_ctl_points_ok *m);
int rf_ctl_dec_points_ok(const uint8_t *p, size_t len, struct rf_ctl_points_ok *m,
                         const char **why);
int rf_ctl_enc_admin(uint8_t *buf, size_t cap, const struct rf_ctl_admin *m);
int rf_ctl_dec_admin(const uint8_t *p, size_t len, struct rf_ctl_admin *m, const char **why);
int rf_ctl_enc_admin_ok(uint8_t *buf, size_t cap, const struct rf_ctl_admin_ok *m);
int rf_ctl_dec_admin_ok(const uint8_t *p, size_t len, struct rf_ctl_admin_ok *m, const char **why);

int rf_ctl_enc_auth_start(uint8_t *buf, size_t cap, const struct rf_ctl_auth_start *m);
int rf_ctl_dec_auth_start(const uint8_t *p, size_t len, struct rf_ctl_auth_start *m,
                          const char **why);
/* AUTH_CHALLENGE and AUTH_PROOF: exactly 32 bytes. */
int rf_ctl_enc_auth_blob(uint8_t *buf, size_t cap, const struct rf_ctl_auth_blob *m);
int rf_ctl_dec_auth_blob(const uint8_t *p, size_t len, struct rf_ctl_auth_blob *m,
                         const char **why);
int rf_ctl_enc_auth_ok(uint8_t *buf, size_t cap, const struct rf_ctl_auth_ok *m);
int rf_ctl_dec_auth_ok(const uint8_t *p, size_t len, struct rf_ctl_auth_ok *m, const char **why);

/* ---- the message table (common/ctl_msgs.c) ------------------------------
 *
 * One row per message type: its name, which way it travels, who may send it
 * to the hub, and its decoder into union rf_ctl_msg. The hub's dispatcher
 * (hub/ctl_server.c) and the agent's control client (agent/ctl_client.c)
 * both look a received frame up here once.
 */

/* Which way a message travels. */
enum rf_ctl_dir {
	RF_CTL_TO_HUB = 1,  /* agents and clients send it to the hub */
	RF_CTL_TO_PEER = 2, /* the hub sends it to agents and clients */
	RF_CTL_BOTH = RF_CTL_TO_HUB | RF_CTL_TO_PEER,
};

/* Who may send a message to a hub that authenticates (psk_file). */
enum rf_ctl_role {
	RF_CTL_ROLE_NONE = 0, /* nobody: only the hub sends it */
	RF_CTL_ROLE_PREAUTH,  /* anyone, before authentication (the handshake itself) */
	RF_CTL_ROLE_ANY,      /* any authenticated identity */
	RF_CTL_ROLE_AGENT,    /* an identity of role agent */
	RF_CTL_ROLE_ADMIN,    /* an identity of role admin */
};

/* A received payload, decoded. Which member is set follows the type. */
union rf_ctl_msg {
	struct rf_ctl_error error;
	struct rf_ctl_hello hello;
	struct rf_ctl_hello_ok hello_ok;
	struct rf_ctl_volume_report volume_report;
	struct rf_ctl_volume_ok volume_ok;
	struct rf_ctl_sync_read sync_read;
	struct rf_ctl_sync_posted sync_posted;
	struct rf_ctl_progress progress;
	struct rf_ctl_volume_state volume_state;
	struct rf_ctl_io_open io_open;
	struct rf_ctl_io_open_ok io_open_ok;
	struct rf_ctl_io_req io_req; /* IO_READ, IO_WRITE, IO_FLUSH */
	struct rf_ctl_points points;
	struct rf_ctl_points_ok points_ok;
	struct rf_ctl_admin admin;
	struct rf_ctl_admin_ok admin_ok;
	struct rf_ctl_auth_start auth_start;
	struct rf_ctl_auth_blob auth_blob; /* AUTH_CHALLENGE, AUTH_PROOF */
	struct rf_ctl_auth_ok auth_ok;
	struct {
		const uint8_t *p; /* points into the payload */
		size_t len;
	} raw; /* STATUS_OK (JSON text), IO_DATA (the bytes) */
};

struct rf_ctl_msg_desc {
	uint16_t type;
	const char *name; /* "VOLUME_REPORT" */
	enum rf_ctl_dir dir;
	enum rf_ctl_role role; /* RF_CTL_ROLE_NONE when dir has no RF_CTL_TO_HUB */
	bool notify;           /* a notification: never answered; an ERROR about it has id 0 */
	/* Parse exactly @len bytes into @m: 0 or -EBADMSG with @why. NULL: the
	 * message has no payload (rf_ctl_decode refuses one). */
	int (*decode)(const uint8_t *p, size_t len, uint16_t type, union rf_ctl_msg *m,
	              const char **why);
};

/* The row of @type, or NULL for a type nobody defines (reserved included). */
const struct rf_ctl_msg_desc *rf_ctl_msg_desc(uint16_t type);
/* The name of @type, "?" when unknown. */
const char *rf_ctl_type_name(uint16_t type);
/* Decode @len payload bytes of a message of row @d into @m: 0 or -EBADMSG (@why). */
int rf_ctl_decode(const struct rf_ctl_msg_desc *d, const uint8_t *p, size_t len,
                  union rf_ctl_msg *m, const char **why);
/* Every type defined or reserved is below this (tests and the fuzzer walk them). */
#define RF_CTL_TYPE_LIMIT 80

/* True when @s is a valid volume/agent name: 1..64 of [A-Za-z0-9._-]. */
bool rf_ctl_name_ok(const char *s);

/* ---- blocking helpers (repctl, tests, the agent's handshake) ---------- */

/* Connect to "HOST:PORT" within @timeout_ms. Returns an fd or -errno. */
int rf_ctl_dial(const char *hostport, int timeout_ms);

/* Send one frame (header + @len payload bytes, + @data2/@len2 appended). */
int rf_ctl_send(int fd, uint16_t type, uint64_t req_id, const void *payload, uint32_t len,
                const void *data2, uint32_t len2);

/*
 * Receive one frame within @timeout_ms into @buf (capacity @cap, at least
 * RF_CTL_MAX_PAYLOAD). Returns 0, -ETIMEDOUT, -ECONNRESET, -EPROTO (@why).
 */
int rf_ctl_recv(int fd, struct rf_ctl_hdr *h, uint8_t *buf, size_t cap, int timeout_ms,
                const char **why);

#ifdef __cplusplus
}
#endif

#endif /* REPFABRIC_CTL_H */

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
	                          /* 32..47 redirected IO (failover test), 48..63 failover and
	                           * administration, 64..79 authentication: reserved. */
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

struct rf_ctl_progress {
	uint64_t next_seq; /* the sequence the agent's next record will carry */
	uint32_t queued;   /* writes waiting to be posted */
	uint16_t nvols;
	struct {
		uint32_t vol_id;
		uint64_t dirty_bytes; /* marked dirty and not yet resent */
	} vols[RF_CTL_MAX_PROGRESS_VOLS];
};

struct rf_ctl_volume_state {
	uint32_t vol_id;
	uint8_t state;
	uint64_t synced_bytes;
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

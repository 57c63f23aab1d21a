/* SPDX-License-Identifier: MIT */
/*
 * The framed stream protocol shared by the tcp:// and shm:// providers
 * (documented byte by byte in docs/PROTOCOL.md, "Data transport: tcp and
 * shm"). Every frame: a 16-byte header, then `length` payload bytes. All
 * integers little-endian.
 */
#ifndef REPFABRIC_FABRIC_STREAM_WIRE_H
#define REPFABRIC_FABRIC_STREAM_WIRE_H

#include <stdint.h>

#include "repfabric/fabric.h"

#define RF_SW_MAGIC    0x42465246u /* "FRFB" on the wire: 46 52 46 42 */
#define RF_SW_VERSION  1
#define RF_SW_HDR_LEN  16
#define RF_SW_MAX_CTRL 4096 /* payload cap for every type but WRITE */

enum rf_sw_type {
	RF_SW_HELLO = 1,    /* producer -> hub: token u64 */
	RF_SW_WELCOME = 2,  /* hub -> producer: ring info (+ shm path) */
	RF_SW_REFUSE = 3,   /* hub -> producer: errno i32 + reason text */
	RF_SW_WRITE = 4,    /* producer -> hub (tcp): off u64, len u32, bytes */
	RF_SW_DOORBELL = 5, /* producer -> hub: last_seq u64 */
	RF_SW_POSITION = 6, /* hub -> producer: 4 x u64 */
	RF_SW_LANDED = 7,   /* hub -> producer: last_seq u64 (a DOORBELL that asked) */
};

/* Header flags (byte 6); every other type carries 0. */
#define RF_SW_DB_LANDED 0x01u /* DOORBELL: answer with LANDED once read */

/* Payload sizes of the fixed parts. */
#define RF_SW_HELLO_LEN     8
#define RF_SW_WELCOME_FIXED 58 /* ring_id, data_size, 4 positions, data_off, path_len u16 */
#define RF_SW_WRITE_SUBHDR  12
#define RF_SW_DOORBELL_LEN  8
#define RF_SW_POSITION_LEN  32
#define RF_SW_LANDED_LEN    8
#define RF_SW_MAX_PATH      1024

/* The codec (stream_wire.c). */
void rf_sw_hdr_encode(uint8_t *h, enum rf_sw_type type, uint32_t len);
/* Validate a frame header (flags only on the types that define them);
 * returns 0 or -EPROTO with @why set. @flags may be NULL. */
int rf_sw_hdr_decode(const uint8_t *h, unsigned *type, uint32_t *len, unsigned *flags,
                     const char **why);
void rf_sw_position_encode(uint8_t *p, const struct rf_fab_position *pos);
void rf_sw_position_decode(const uint8_t *p, struct rf_fab_position *pos);
/* Send a header and @len bytes of @payload within @timeout_ms (rf_write_all). */
int rf_sw_send_frame(int fd, enum rf_sw_type type, const void *payload, uint32_t len,
                     int timeout_ms);

#endif /* REPFABRIC_FABRIC_STREAM_WIRE_H */

/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the control channel's frame header and every payload
 * decoder (common/ctl_wire.c), directly and through the message table
 * (common/ctl_msgs.c, every row's decoder). The input is one frame: 24
 * header bytes, then the payload; every decoder also sees the raw payload
 * whatever the type.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "repfabric/auth.h"
#include "repfabric/ctl.h"
#include "repfabric/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Rejections are the expected outcome here: keep the fuzzer fast and quiet. */
static void quiet_sink(void *ctx, enum rf_log_level level, const char *line)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rf_ctl_progress progress;
	static union rf_ctl_msg msg;
	struct rf_ctl_hdr h;
	struct rf_ctl_error er;
	struct rf_ctl_hello he;
	struct rf_ctl_hello_ok ho;
	struct rf_ctl_volume_report vr;
	struct rf_ctl_volume_ok vo;
	struct rf_ctl_sync_read sr;
	struct rf_ctl_sync_posted sp;
	struct rf_ctl_volume_state vs;
	struct rf_ctl_auth_start as;
	struct rf_ctl_auth_blob ab;
	struct rf_ctl_auth_ok ao;
	struct rf_auth_keys ks;
	const uint8_t *p = data;
	const char *why = NULL;
	char ebuf[256];
	size_t len = size;

	rf_log_set_sink(quiet_sink, NULL);

	if (size >= RF_CTL_HDR_LEN) {
		if (rf_ctl_hdr_decode(data, &h, &why) == 0 && h.len > size - RF_CTL_HDR_LEN)
			return 0; /* a real reader would wait for more bytes */
		p = data + RF_CTL_HDR_LEN;
		len = size - RF_CTL_HDR_LEN;
	}
	rf_ctl_dec_error(p, len, &er, &why);
	rf_ctl_dec_hello(p, len, &he, &why);
	rf_ctl_dec_hello_ok(p, len, &ho, &why);
	rf_ctl_dec_volume_report(p, len, &vr, &why);
	rf_ctl_dec_volume_ok(p, len, &vo, &why);
	rf_ctl_dec_sync_read(p, len, &sr, &why);
	rf_ctl_dec_sync_posted(p, len, &sp, &why);
	rf_ctl_dec_volume_state(p, len, &vs, &why);
	rf_ctl_dec_progress(p, len, &progress, &why);
	rf_ctl_dec_auth_start(p, len, &as, &why);
	rf_ctl_dec_auth_blob(p, len, &ab, &why);
	rf_ctl_dec_auth_ok(p, len, &ao, &why);
	for (unsigned t = 0; t < RF_CTL_TYPE_LIMIT; t++) {
		const struct rf_ctl_msg_desc *d = rf_ctl_msg_desc((uint16_t)t);

		if (d)
			rf_ctl_decode(d, p, len, &msg, &why);
	}
	/* The key file parser reads text from disk: the same bytes as a file. */
	if (rf_auth_keys_parse(&ks, (const char *)data, size, "fuzz", ebuf, sizeof(ebuf)) == 0)
		rf_auth_keys_free(&ks);
	return 0;
}

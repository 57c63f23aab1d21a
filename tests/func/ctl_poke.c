/* SPDX-License-Identifier: MIT */
/*
 * rf-ctl-poke: a scripted control-channel client for functional tests.
 * Connects to HOST:PORT and runs its steps in order on one connection:
 *
 *   hello AGENT [PROTO]         send HELLO
 *   report NAME VOLID SIZE [BITMAP]
 *                               send VOLUME_REPORT
 *   status                      send STATUS
 *   heartbeat                   send HEARTBEAT
 *   raw MAGIC VERSION TYPE LEN RESERVED NBYTES
 *                               send a raw header (numbers in C syntax) and
 *                               NBYTES zero bytes after it
 *   expect TYPE [ERRNO]         the next frame is TYPE (a name such as
 *                               HELLO_OK, or ERROR with the code's name,
 *                               e.g. EPROTO); hub heartbeats are answered
 *                               and skipped
 *   expect-close                the hub closes the connection (within 5 s)
 *   sleep MS
 *
 * Prints one line per step; exits 0 when every expectation held, 1 when
 * one did not, 2 on usage or connection errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repfabric/ctl.h"

static const struct {
	const char *name;
	int code;
} errnames[] = {
    {"EPROTO", EPROTO},
    {"EPROTONOSUPPORT", EPROTONOSUPPORT},
    {"EOPNOTSUPP", EOPNOTSUPP},
    {"ENOENT", ENOENT},
    {"EINVAL", EINVAL},
    {"EEXIST", EEXIST},
    {"EBUSY", EBUSY},
    {"EBADMSG", EBADMSG},
    {"EPERM", EPERM},
    {"EAGAIN", EAGAIN},
    {"EIO", EIO},
    {"ECONNRESET", ECONNRESET},
    {"EMSGSIZE", EMSGSIZE},
    {"ESTALE", ESTALE},
};

static const char *const types[] = {
    NULL,          "ERROR",     "HELLO",  "HELLO_OK",  "VOLUME_REPORT", "VOLUME_OK", "SYNC_READ",
    "SYNC_POSTED", "HEARTBEAT", "STATUS", "STATUS_OK", "VOLUME_STATE",  "PROGRESS"};

static const char *errname(int code)
{
	for (size_t i = 0; i < sizeof(errnames) / sizeof(errnames[0]); i++)
		if (errnames[i].code == code)
			return errnames[i].name;
	return "E?";
}

static const char *type_name(unsigned t)
{
	return t < sizeof(types) / sizeof(types[0]) && types[t] ? types[t] : "?";
}

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

static uint8_t buf[RF_CTL_MAX_PAYLOAD + 1];

/* Next frame that is not a hub heartbeat (those are answered). */
static int next_frame(int fd, struct rf_ctl_hdr *h, int timeout_ms)
{
	const char *why = "";

	for (;;) {
		int rc = rf_ctl_recv(fd, h, buf, RF_CTL_MAX_PAYLOAD, timeout_ms, &why);

		if (rc == -EPROTO)
			printf("  malformed frame from the hub: %s\n", why);
		if (rc)
			return rc;
		if (h->type == RF_CTL_HEARTBEAT && (h->req_id >> 63)) {
			rf_ctl_send(fd, RF_CTL_HEARTBEAT, h->req_id, NULL, 0, NULL, 0);
			continue;
		}
		return 0;
	}
}

static void describe(const struct rf_ctl_hdr *h)
{
	const char *why = "";

	if (h->type == RF_CTL_ERROR) {
		struct rf_ctl_error e;

		if (rf_ctl_dec_error(buf, h->len, &e, &why) == 0)
			printf("  got ERROR %s: %s\n", errname(e.code), e.reason);
		else
			printf("  got a malformed ERROR: %s\n", why);
	} else if (h->type == RF_CTL_HELLO_OK) {
		struct rf_ctl_hello_ok m;

		if (rf_ctl_dec_hello_ok(buf, h->len, &m, &why) == 0)
			printf("  got HELLO_OK session %" PRIu64 " data %s\n", m.session,
			       m.data_url);
	} else if (h->type == RF_CTL_VOLUME_OK) {
		struct rf_ctl_volume_ok m;

		if (rf_ctl_dec_volume_ok(buf, h->len, &m, &why) == 0)
			printf("  got VOLUME_OK vol_id %u state %s sync %u\n", m.vol_id,
			       rf_vol_state_name(m.state), m.sync);
	} else if (h->type == RF_CTL_STATUS_OK) {
		buf[h->len] = '\0';
		printf("  got STATUS_OK (%u bytes)\n", h->len);
	} else {
		printf("  got %s (%u bytes)\n", type_name(h->type), h->len);
	}
}

static int expect(int fd, const char *type, const char *code)
{
	struct rf_ctl_hdr h;
	int rc = next_frame(fd, &h, 5000);

	if (rc) {
		printf("  FAIL: expected %s, got %s\n", type, strerror(-rc));
		return 1;
	}
	describe(&h);
	if (strcmp(type_name(h.type), type) != 0) {
		printf("  FAIL: expected %s\n", type);
		return 1;
	}
	if (code && h.type == RF_CTL_ERROR) {
		struct rf_ctl_error e;
		const char *why = "";

		if (rf_ctl_dec_error(buf, h.len, &e, &why) || strcmp(errname(e.code), code) != 0) {
			printf("  FAIL: expected ERROR %s\n", code);
			return 1;
		}
	}
	return 0;
}

static int expect_close(int fd)
{
	struct rf_ctl_hdr h;
	int rc = next_frame(fd, &h, 5000);

	if (rc == -ECONNRESET) {
		printf("  connection closed by the hub\n");
		return 0;
	}
	if (rc == 0) {
		describe(&h);
		printf("  FAIL: expected the hub to close the connection\n");
	} else {
		printf("  FAIL: expected a close, got %s\n", strerror(-rc));
	}
	return 1;
}

int main(int argc, char **argv)
{
	uint8_t p[4096];
	int fd, i = 2, failed = 0, n;
	uint64_t req = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: rf-ctl-poke HOST:PORT STEP...\n");
		return 2;
	}
	fd = rf_ctl_dial(argv[1], 5000);
	if (fd < 0) {
		fprintf(stderr, "rf-ctl-poke: cannot reach %s: %s\n", argv[1], strerror(-fd));
		return 2;
	}
	while (i < argc && !failed) {
		const char *s = argv[i++];
		int left = argc - i;

		printf("%s\n", s);
		if (strcmp(s, "hello") == 0 && left >= 1) {
			struct rf_ctl_hello m = {.proto = RF_CTL_VERSION};

			snprintf(m.agent_id, sizeof(m.agent_id), "%s", argv[i++]);
			if (i < argc && argv[i][0] >= '0' && argv[i][0] <= '9')
				m.proto = (uint16_t)num(argv[i++]);
			n = rf_ctl_enc_hello(p, sizeof(p), &m);
			if (n < 0 || rf_ctl_send(fd, RF_CTL_HELLO, req++, p, (uint32_t)n, NULL, 0))
				failed = 1;
		} else if (strcmp(s, "report") == 0 && left >= 3) {
			struct rf_ctl_volume_report m = {0};

			snprintf(m.name, sizeof(m.name), "%s", argv[i++]);
			m.vol_id = (uint32_t)num(argv[i++]);
			m.size = num(argv[i++]);
			if (i < argc && (strcmp(argv[i], "0") == 0 || strcmp(argv[i], "1") == 0))
				m.bitmap_valid = (uint8_t)num(argv[i++]);
			n = rf_ctl_enc_volume_report(p, sizeof(p), &m);
			if (n < 0 ||
			    rf_ctl_send(fd, RF_CTL_VOLUME_REPORT, req++, p, (uint32_t)n, NULL, 0))
				failed = 1;
		} else if (strcmp(s, "status") == 0) {
			if (rf_ctl_send(fd, RF_CTL_STATUS, req++, NULL, 0, NULL, 0))
				failed = 1;
		} else if (strcmp(s, "heartbeat") == 0) {
			if (rf_ctl_send(fd, RF_CTL_HEARTBEAT, req++, NULL, 0, NULL, 0))
				failed = 1;
		} else if (strcmp(s, "raw") == 0 && left >= 6) {
			uint32_t magic = (uint32_t)num(argv[i]), len = (uint32_t)num(argv[i + 3]);
			uint16_t version = (uint16_t)num(argv[i + 1]),
			         type = (uint16_t)num(argv[i + 2]);
			uint32_t reserved = (uint32_t)num(argv[i + 4]);
			size_t nb = (size_t)num(argv[i + 5]);
			uint8_t *frame = calloc(1, RF_CTL_HDR_LEN + nb);

			i += 6;
			if (!frame)
				return 2;
			rf_ctl_hdr_encode(frame, type, req++, len);
			for (int k = 0; k < 4; k++)
				frame[k] = (uint8_t)(magic >> (8 * k));
			frame[4] = (uint8_t)version;
			frame[5] = (uint8_t)(version >> 8);
			for (int k = 0; k < 4; k++)
				frame[20 + k] = (uint8_t)(reserved >> (8 * k));
			if (write(fd, frame, RF_CTL_HDR_LEN + nb) != (ssize_t)(RF_CTL_HDR_LEN + nb))
				failed = 1;
			free(frame);
		} else if (strcmp(s, "expect") == 0 && left >= 1) {
			const char *type = argv[i++], *code = NULL;

			if (i < argc && argv[i][0] == 'E')
				code = argv[i++];
			failed = expect(fd, type, code);
		} else if (strcmp(s, "expect-close") == 0) {
			failed = expect_close(fd);
		} else if (strcmp(s, "sleep") == 0 && left >= 1) {
			usleep((useconds_t)num(argv[i++]) * 1000);
		} else {
			fprintf(stderr, "rf-ctl-poke: bad step '%s'\n", s);
			close(fd);
			return 2;
		}
	}
	close(fd);
	printf("%s\n", failed ? "FAILED" : "ok");
	return failed;
}

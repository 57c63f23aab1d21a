/* SPDX-License-Identifier: MIT */
/*
 * The ring mapping and the consumer side: create/open/wrap, the head slots,
 * peek/consume, producer sessions and the recovery scan.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpmem.h>

#include "repfabric/crc32c.h"
#include "repfabric/log.h"
#include "repfabric/ring.h"
#include "ring_internal.h"

typedef int (*persist_fn)(const void *addr, size_t len);

struct rf_ring {
	unsigned char *base;
	size_t map_len;
	bool is_pmem;
	bool owns_mapping; /* pmem_unmap() at close */
	persist_fn persist;
	struct ring_geom geom;
	uint64_t head_pos; /* in-memory consumer head */
	uint64_t head_seq;
	uint64_t saved_pos; /* the head as last persisted */
	uint64_t saved_seq;
	uint64_t slot_count; /* update count of the newest head slot */
	uint64_t dur_pos;    /* the durable mark (>= the persisted head when valid) */
	uint64_t dur_seq;
	uint64_t dslot_count; /* update count of the newest durable mark slot */
	bool forced_pmem;     /* rf_ring_force_pmem(): flushes without pmem_is_pmem() */
	char *name;           /* for log lines */
};

static int persist_pmem(const void *addr, size_t len)
{
	pmem_persist(addr, len);
	return 0;
}

static int persist_msync(const void *addr, size_t len)
{
	if (pmem_msync(addr, len) != 0)
		return -errno;
	return 0;
}

static int persist_fence(const void *addr, size_t len)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

/* fsync the directory holding @path, so a new file's entry is durable. */
static int fsync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, ret = 0;

	if (!slash)
		strcpy(dir, ".");
	else if (slash == path)
		strcpy(dir, "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return -ENAMETOOLONG;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

static uint64_t new_ring_id(void)
{
	uint64_t id = 0;
	struct timespec ts;

	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id) || id == 0) {
		/* No entropy: mix the clock and the pid (splitmix64 finaliser). */
		clock_gettime(CLOCK_REALTIME, &ts);
		id = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		id ^= (uint64_t)getpid() << 32;
		id = (id ^ (id >> 30)) * 0xbf58476d1ce4e5b9ull;
		id = (id ^ (id >> 27)) * 0x94d049bb133111ebull;
		id ^= id >> 31;
		if (id == 0)
			id = 1;
	}
	return id;
}

static struct rf_ring *ring_alloc(void *base, size_t map_len, bool is_pmem, bool owns,
                                  const char *name)
{
	struct rf_ring *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->name = strdup(name);
	if (!r->name) {
		free(r);
		return NULL;
	}
	r->base = base;
	r->map_len = map_len;
	r->is_pmem = is_pmem;
	r->owns_mapping = owns;
	/* Chosen once per mapping. */
	if (is_pmem)
		r->persist = persist_pmem;
	else if (owns)
		r->persist = persist_msync;
	else
		r->persist = persist_fence;
	return r;
}

static void ring_free(struct rf_ring *r)
{
	free(r->name);
	free(r);
}

/*
 * Write a fresh header at @h: everything but the magic, persisted, then the
 * magic, persisted, so a crash mid-format leaves no valid-looking ring.
 */
static int format_header(struct rf_ring *r, uint64_t data_size)
{
	unsigned char *h = r->base;
	struct timespec ts;
	uint64_t ring_id = new_ring_id();
	int ret;

	clock_gettime(CLOCK_REALTIME, &ts);
	memset(h, 0, RF_RING_HEADER_SIZE);
	rf_put_le32(h + RH_VERSION, RING_VERSION);
	rf_put_le32(h + RH_HEADER_SIZE, RF_RING_HEADER_SIZE);
	rf_put_le64(h + RH_DATA_SIZE, data_size);
	rf_put_le32(h + RH_RECORD_ALIGN, RF_RING_ALIGN);
	rf_put_le64(h + RH_RING_ID, ring_id);
	rf_put_le64(h + RH_CREATE_NS, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	memcpy(h + RH_MAGIC, RING_MAGIC, RING_MAGIC_LEN);
	rf_put_le32(h + RH_CRC, rf_crc32c(0, h, RH_CRC));
	/* Sequences start at 1; both slots valid, slot 1 newer. */
	ring_encode_slot(h + RH_SLOT0, 0, 1, 0);
	ring_encode_slot(h + RH_SLOT1, 0, 1, 1);
	memset(h + RH_MAGIC, 0, RING_MAGIC_LEN);
	ret = r->persist(h, RF_RING_HEADER_SIZE);
	if (ret)
		return ret;
	memcpy(h + RH_MAGIC, RING_MAGIC, RING_MAGIC_LEN);
	ret = r->persist(h, RING_MAGIC_LEN);
	if (ret)
		return ret;

	ring_geom_init(&r->geom, ring_id, data_size);
	r->head_pos = r->saved_pos = 0;
	r->head_seq = r->saved_seq = 1;
	r->slot_count = 1;
	return 0;
}

/*
 * Load the durable mark. A mark outside [head, head + data_size], or none
 * (a ring formatted before marks, or never made durable), means "durable
 * is the head".
 */
static void load_durable_mark(struct rf_ring *r)
{
	uint64_t pos, seq, count;

	r->dur_pos = r->head_pos;
	r->dur_seq = r->head_seq;
	r->dslot_count = 0;
	if (ring_durable_parse(r->base, &pos, &seq, &count))
		return;
	r->dslot_count = count;
	if (pos < r->head_pos || pos - r->head_pos > r->geom.data_size ||
	    seq - r->head_seq > pos - r->head_pos) {
		if (pos != r->head_pos || seq != r->head_seq)
			RF_DEBUG(RING_LOG,
			         "%s: durable mark %" PRIu64 "/%" PRIu64
			         " is behind the head %" PRIu64 "/%" PRIu64
			         " or out of range: the head is durable",
			         r->name, pos, seq, r->head_pos, r->head_seq);
		return;
	}
	r->dur_pos = pos;
	r->dur_seq = seq;
}

/*
 * Validate the header of a mapped ring and load the geometry and head.
 * @exact: the mapping must be exactly header + data (a regular file);
 * otherwise it may be larger (device DAX, caller memory).
 */
static int load_header(struct rf_ring *r, bool exact)
{
	struct rf_ring_info info;
	char reason[200];
	uint64_t count, need;
	int bad_slot, ret;

	if (r->map_len < RF_RING_HEADER_SIZE) {
		RF_ERR(RING_LOG, "%s: refused: size %zu is smaller than the ring header (%u)",
		       r->name, r->map_len, RF_RING_HEADER_SIZE);
		return -EBADMSG;
	}
	ret = ring_header_parse(r->base, r->map_len, &info, &count, &bad_slot, reason,
	                        sizeof(reason));
	if (ret) {
		RF_ERR(RING_LOG, "%s: refused: %s", r->name, reason);
		return ret;
	}
	need = RF_RING_HEADER_SIZE + info.data_size;
	if (exact ? r->map_len != need : r->map_len < need) {
		RF_ERR(RING_LOG,
		       "%s: refused: data_size: %" PRIu64
		       " does not match the size %zu (expected %s%" PRIu64 ")",
		       r->name, info.data_size, r->map_len, exact ? "" : "at least ", need);
		return -EBADMSG;
	}
	if (bad_slot >= 0)
		RF_WARN(RING_LOG, "%s: %s", r->name, reason);
	ring_geom_init(&r->geom, info.ring_id, info.data_size);
	r->head_pos = r->saved_pos = info.head_pos;
	r->head_seq = r->saved_seq = info.head_seq;
	r->slot_count = count;
	load_durable_mark(r);
	RF_DEBUG(RING_LOG,
	         "%s: ring %016" PRIx64 " data_size %" PRIu64 " head %" PRIu64 "/%" PRIu64, r->name,
	         info.ring_id, info.data_size, info.head_pos, info.head_seq);
	return 0;
}

static bool is_char_device(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISCHR(st.st_mode);
}

int rf_ring_create(struct rf_ring **out, const char *path, uint64_t data_size)
{
	size_t need = RF_RING_HEADER_SIZE + data_size, map_len = 0;
	bool devdax = is_char_device(path);
	struct rf_ring *r;
	int is_pmem = 0, ret;
	void *base;

	*out = NULL;
	if (rf_ring_check_data_size(data_size)) {
		RF_ERR(RING_LOG, "%s: data_size %" PRIu64 " must be a multiple of %u in [%u, %llu]",
		       path, data_size, RF_RING_ALIGN, RF_RING_MIN_DATA_SIZE,
		       (unsigned long long)RF_RING_MAX_DATA_SIZE);
		return -EINVAL;
	}
	if (devdax)
		base = pmem_map_file(path, 0, 0, 0, &map_len, &is_pmem);
	else
		base = pmem_map_file(path, need, PMEM_FILE_CREATE | PMEM_FILE_EXCL, 0600, &map_len,
		                     &is_pmem);
	if (!base) {
		ret = errno ? -errno : -EIO;
		RF_ERR(RING_LOG, "%s: cannot create the ring: %s", path, pmem_errormsg());
		return ret;
	}
	if (devdax && map_len < need) {
		RF_ERR(RING_LOG,
		       "%s: device dax is %zu bytes, a ring with data_size %" PRIu64 " needs %zu",
		       path, map_len, data_size, need);
		ret = -ENOSPC;
		goto err_unmap;
	}
	r = ring_alloc(base, map_len, is_pmem != 0, true, path);
	if (!r) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	ret = format_header(r, data_size);
	if (ret) {
		RF_ERR(RING_LOG, "%s: cannot persist the new header: %s", path, strerror(-ret));
		goto err_free;
	}
	if (!devdax) {
		ret = fsync_parent(path);
		if (ret) {
			RF_ERR(RING_LOG,
			       "%s: cannot make the new file's directory entry durable: %s", path,
			       strerror(-ret));
			goto err_free;
		}
	}
	RF_INFO(RING_LOG, "%s: created ring %016" PRIx64 " data_size %" PRIu64 " (%s)", path,
	        r->geom.ring_id, data_size, is_pmem ? "pmem" : "msync");
	*out = r;
	return 0;

err_free:
	ring_free(r);
err_unmap:
	pmem_unmap(base, map_len);
	if (!devdax)
		unlink(path);
	return ret;
}

int rf_ring_open(struct rf_ring **out, const char *path)
{
	bool devdax = is_char_device(path);
	size_t map_len = 0;
	struct rf_ring *r;
	int is_pmem = 0, ret;
	void *base;

	*out = NULL;
	base = pmem_map_file(path, 0, 0, 0, &map_len, &is_pmem);
	if (!base) {
		ret = errno ? -errno : -EIO;
		RF_ERR(RING_LOG, "%s: cannot map the ring: %s", path, pmem_errormsg());
		return ret;
	}
	r = ring_alloc(base, map_len, is_pmem != 0, true, path);
	if (!r) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	if (devdax && (map_len < RING_MAGIC_LEN || memcmp(base, RING_MAGIC, RING_MAGIC_LEN) != 0)) {
		/* A device that never held a ring (not a damaged one: no magic). */
		ret = -ENODATA;
		goto err_free;
	}
	ret = load_header(r, !devdax);
	if (ret)
		goto err_free;
	*out = r;
	return 0;

err_free:
	ring_free(r);
err_unmap:
	pmem_unmap(base, map_len);
	return ret;
}

int rf_ring_format_mem(struct rf_ring **out, void *mem, size_t len, uint64_t data_size)
{
	struct rf_ring *r;
	int ret;

	*out = NULL;
	if (rf_ring_check_data_size(data_size) || len < RF_RING_HEADER_SIZE + data_size) {
		RF_ERR(RING_LOG, "memory ring: data_size %" PRIu64 " invalid or above %zu bytes",
		       data_size, len);
		return -EINVAL;
	}
	r = ring_alloc(mem, len, pmem_is_pmem(mem, len) != 0, false, "memory ring");
	if (!r)
		return -ENOMEM;
	ret = format_header(r, data_size);
	if (ret)
		goto err_free;
	*out = r;
	return 0;

err_free:
	ring_free(r);
	return ret;
}

int rf_ring_attach_mem(struct rf_ring **out, void *mem, size_t len)
{
	struct rf_ring *r;
	int ret;

	*out = NULL;
	if (len < RF_RING_HEADER_SIZE + RF_RING_MIN_DATA_SIZE) {
		RF_ERR(RING_LOG, "memory ring: %zu bytes is too small for a ring", len);
		return -EINVAL;
	}
	r = ring_alloc(mem, len, pmem_is_pmem(mem, len) != 0, false, "memory ring");
	if (!r)
		return -ENOMEM;
	ret = load_header(r, false);
	if (ret)
		goto err_free;
	*out = r;
	return 0;

err_free:
	ring_free(r);
	return ret;
}

void rf_ring_close(struct rf_ring **ring)
{
	struct rf_ring *r = *ring;

	if (!r)
		return;
	if (r->owns_mapping && pmem_unmap(r->base, r->map_len) != 0)
		RF_WARN(RING_LOG, "%s: unmap: %s", r->name, strerror(errno));
	ring_free(r);
	*ring = NULL;
}

void *rf_ring_base(const struct rf_ring *ring)
{
	return ring->base;
}

size_t rf_ring_map_len(const struct rf_ring *ring)
{
	return ring->map_len;
}

uint64_t rf_ring_data_offset(const struct rf_ring *ring)
{
	return RF_RING_HEADER_SIZE;
}

uint64_t rf_ring_data_size(const struct rf_ring *ring)
{
	return ring->geom.data_size;
}

uint64_t rf_ring_id(const struct rf_ring *ring)
{
	return ring->geom.ring_id;
}

bool rf_ring_is_pmem(const struct rf_ring *ring)
{
	return ring->is_pmem;
}

int rf_ring_probe_pmem(const char *path, bool *is_pmem)
{
	struct stat st;
	size_t len = 0;
	int pm = 0;
	void *base;

	if (stat(path, &st))
		return -errno;
	if (S_ISDIR(st.st_mode))
		base = pmem_map_file(path, 4096, PMEM_FILE_CREATE | PMEM_FILE_TMPFILE, 0600, &len,
		                     &pm);
	else
		base = pmem_map_file(path, 0, 0, 0, &len, &pm);
	if (!base)
		return errno ? -errno : -EIO;
	pmem_unmap(base, len);
	*is_pmem = pm != 0;
	return 0;
}

void rf_ring_head(const struct rf_ring *ring, uint64_t *pos, uint64_t *seq)
{
	if (pos)
		*pos = ring->head_pos;
	if (seq)
		*seq = ring->head_seq;
}

int rf_ring_persist(struct rf_ring *ring, const void *addr, size_t len)
{
	const unsigned char *p = addr;

	if (p < ring->base || p > ring->base + ring->map_len ||
	    len > (size_t)(ring->base + ring->map_len - p))
		return -EINVAL;
	return ring->persist(addr, len);
}

static const unsigned char *ring_data(const struct rf_ring *r)
{
	return r->base + RF_RING_HEADER_SIZE;
}

int rf_ring_peek(struct rf_ring *ring, struct rf_ring_record *rec, struct rf_ring_verdict *why)
{
	struct rf_ring_record pad;
	enum rf_ring_status st;
	char first[sizeof(why->reason)];

	st = ring_check_record(&ring->geom, ring_data(ring), ring->head_pos, ring->head_seq, &pad,
	                       why);
	if (st != RF_RING_ST_OK)
		return -EAGAIN;
	if (pad.type != RF_RING_REC_PAD) {
		*rec = pad;
		return 0;
	}
	st = ring_check_record(&ring->geom, ring_data(ring), pad.next_pos, pad.next_seq, rec, why);
	if (st == RF_RING_ST_OK && rec->type == RF_RING_REC_PAD) {
		st = RF_RING_ST_BAD_FIELD;
		if (why) {
			why->status = st;
			snprintf(why->reason, sizeof(why->reason),
			         "PAD seq %" PRIu64 " follows PAD seq %" PRIu64, rec->seq, pad.seq);
		}
	}
	if (st != RF_RING_ST_OK) {
		if (why) {
			snprintf(first, sizeof(first), "%s", why->reason);
			snprintf(why->reason, sizeof(why->reason), "after PAD: %.140s", first);
		}
		return -EAGAIN;
	}
	rec->pad_bytes = pad.total_size;
	rec->start_pos = ring->head_pos;
	return 0;
}

int rf_ring_advance(struct rf_ring *ring, const struct rf_ring_record *rec)
{
	if (rec->start_pos != ring->head_pos ||
	    rec->seq != ring->head_seq + (rec->pad_bytes ? 1 : 0) ||
	    rec->next_pos != rec->pos + rec->total_size || rec->next_seq != rec->seq + 1 ||
	    rec->pos != rec->start_pos + rec->pad_bytes) {
		RF_ERR(RING_LOG,
		       "%s: consume of seq %" PRIu64 " at pos %" PRIu64 " but the head is %" PRIu64
		       "/%" PRIu64,
		       ring->name, rec->seq, rec->pos, ring->head_pos, ring->head_seq);
		return -EINVAL;
	}
	ring->head_pos = rec->next_pos;
	ring->head_seq = rec->next_seq;
	return 0;
}

int rf_ring_persist_head(struct rf_ring *ring)
{
	uint64_t count = ring->slot_count + 1;
	unsigned char *slot = ring->base + RH_SLOT0 + (count % 2) * RH_SLOT_STRIDE;
	unsigned char tmp[RS_SIZE];
	int ret;

	/* The other slot keeps the previous head until this one is durable. */
	ring_encode_slot(tmp, ring->head_pos, ring->head_seq, count);
	memcpy(slot, tmp, sizeof(tmp));
	ret = ring->persist(slot, sizeof(tmp));
	if (ret) {
		RF_ERR(RING_LOG, "%s: cannot persist the head: %s", ring->name, strerror(-ret));
		return ret;
	}
	ring->slot_count = count;
	ring->saved_pos = ring->head_pos;
	ring->saved_seq = ring->head_seq;
	return 0;
}

void rf_ring_durable(const struct rf_ring *ring, uint64_t *pos, uint64_t *seq)
{
	/* The drain may pass the mark (rule apply): then the head is durable. */
	bool head_ahead = ring->saved_pos > ring->dur_pos;

	*pos = head_ahead ? ring->saved_pos : ring->dur_pos;
	*seq = head_ahead ? ring->saved_seq : ring->dur_seq;
}

/* Write (pos, seq) to the older durable mark slot and persist it. */
static int persist_durable_mark(struct rf_ring *ring, uint64_t pos, uint64_t seq)
{
	uint64_t count = ring->dslot_count + 1;
	unsigned char *slot = ring->base + (count % 2 ? RH_DSLOT1 : RH_DSLOT0);
	unsigned char tmp[RS_SIZE];
	int ret;

	ring_encode_slot(tmp, pos, seq, count);
	memcpy(slot, tmp, sizeof(tmp));
	ret = ring->persist(slot, sizeof(tmp));
	if (ret) {
		RF_ERR(RING_LOG, "%s: cannot persist the durable mark: %s", ring->name,
		       strerror(-ret));
		return ret;
	}
	ring->dslot_count = count;
	ring->dur_pos = pos;
	ring->dur_seq = seq;
	return 0;
}

/* Persist the data-area bytes [from, to) (positions; wraps at most once). */
static int persist_range(struct rf_ring *ring, uint64_t from, uint64_t to)
{
	uint64_t ds = ring->geom.data_size, off = from % ds, len = to - from;
	unsigned char *data = ring->base + RF_RING_HEADER_SIZE;
	int ret;

	if (len == 0)
		return 0;
	if (off + len <= ds)
		return ring->persist(data + off, len);
	ret = ring->persist(data + off, ds - off);
	return ret ? ret : ring->persist(data, off + len - ds);
}

int rf_ring_make_durable(struct rf_ring *ring, uint64_t landed_seq, struct rf_ring_verdict *why)
{
	const struct ring_geom *g = &ring->geom;
	struct rf_ring_record rec;
	uint64_t start_pos, pos, seq;
	int n = 0, ret;

	rf_ring_durable(ring, &start_pos, &seq);
	pos = start_pos;
	if (why) {
		why->status = RF_RING_ST_OK;
		why->reason[0] = '\0';
	}
	/* Only records that landed, never past the ring's size (a lying doorbell). */
	while (seq <= landed_seq && pos - ring->saved_pos < g->data_size) {
		if (ring_check_record(g, ring_data(ring), pos, seq, &rec, why) != RF_RING_ST_OK)
			break;
		pos = rec.next_pos;
		seq = rec.next_seq;
		n++;
	}
	if (n == 0)
		return 0;
	ret = persist_range(ring, start_pos, pos);
	if (!ret)
		ret = persist_durable_mark(ring, pos, seq);
	if (ret) {
		RF_ERR(RING_LOG, "%s: cannot make records durable: %s", ring->name, strerror(-ret));
		return ret;
	}
	return n;
}

void rf_ring_force_pmem(struct rf_ring *ring)
{
	if (!ring->is_pmem && ring->persist == persist_msync) {
		ring->persist = persist_pmem;
		ring->forced_pmem = true;
	}
}

bool rf_ring_is_forced_pmem(const struct rf_ring *ring)
{
	return ring->forced_pmem;
}

void rf_ring_rewind(struct rf_ring *ring)
{
	ring->head_pos = ring->saved_pos;
	ring->head_seq = ring->saved_seq;
}

int rf_ring_consume(struct rf_ring *ring, const struct rf_ring_record *rec)
{
	int ret = rf_ring_advance(ring, rec);

	if (ret)
		return ret;
	return rf_ring_persist_head(ring);
}

int rf_ring_scan(const struct rf_ring *ring, struct rf_ring_scan_result *res)
{
	const struct ring_geom *g = &ring->geom;
	struct rf_ring_record rec;
	uint64_t pos = ring->head_pos, seq = ring->head_seq;

	memset(res, 0, sizeof(*res));
	res->start_pos = pos;
	res->start_seq = seq;
	rf_ring_durable(ring, &res->durable_pos, &res->durable_seq);
	for (;;) {
		if (pos - ring->head_pos >= g->data_size) {
			res->stop.status = RF_RING_ST_FULL;
			snprintf(res->stop.reason, sizeof(res->stop.reason),
			         "the whole data area (%" PRIu64 " bytes) holds valid records",
			         g->data_size);
			break;
		}
		if (ring_check_record(g, ring_data(ring), pos, seq, &rec, &res->stop) !=
		    RF_RING_ST_OK)
			break;
		if (rec.type == RF_RING_REC_PAD) {
			res->pads++;
		} else {
			res->records++;
			if (res->records == 1)
				res->first_ts_ns = rec.timestamp_ns;
			if (pos >= res->durable_pos && !res->durable_ts_ns)
				res->durable_ts_ns = rec.timestamp_ns;
		}
		pos = rec.next_pos;
		seq = rec.next_seq;
	}
	res->end_pos = pos;
	res->end_seq = seq;
	res->bytes = pos - ring->head_pos;
	return 0;
}

int rf_ring_begin_session(struct rf_ring *ring, struct rf_ring_info *info)
{
	struct rf_ring_scan_result res;
	uint64_t old_pos = ring->head_pos, old_seq = ring->head_seq;
	int ret;

	rf_ring_scan(ring, &res);
	if (res.records) {
		RF_ERR(RING_LOG,
		       "%s: producer session refused: %" PRIu64 " unconsumed records from %" PRIu64,
		       ring->name, res.records, ring->head_pos);
		return -EBUSY;
	}
	/* Consume any trailing PAD, then jump past every sequence left in the area. */
	ring->head_pos = res.end_pos;
	ring->head_seq = res.end_seq + ring->geom.data_size / RF_RING_ALIGN + 1;
	ret = rf_ring_persist_head(ring);
	if (ret) {
		ring->head_pos = old_pos;
		ring->head_seq = old_seq;
		return ret;
	}
	/* The old session's mark (if any) is behind: the new head is durable. */
	if (ring->dslot_count) {
		ret = persist_durable_mark(ring, ring->head_pos, ring->head_seq);
		if (ret)
			return ret;
	} else {
		ring->dur_pos = ring->head_pos;
		ring->dur_seq = ring->head_seq;
	}
	info->ring_id = ring->geom.ring_id;
	info->data_size = ring->geom.data_size;
	info->head_pos = ring->head_pos;
	info->head_seq = ring->head_seq;
	RF_INFO(RING_LOG, "%s: producer session starts at pos %" PRIu64 " seq %" PRIu64, ring->name,
	        info->head_pos, info->head_seq);
	return 0;
}

int rf_ring_write_local(struct rf_ring *ring, const struct rf_ring_image *img)
{
	uint64_t lo = RF_RING_HEADER_SIZE, hi = RF_RING_HEADER_SIZE + ring->geom.data_size;
	int ret;

	if (img->nseg > RF_RING_MAX_SEGS)
		return -EINVAL;
	for (unsigned i = 0; i < img->nseg; i++) {
		const struct rf_ring_seg *s = &img->seg[i];

		if (s->file_off < lo || s->file_off > hi || s->len > hi - s->file_off)
			return -EINVAL;
	}
	for (unsigned i = 0; i < img->nseg; i++)
		memcpy(ring->base + img->seg[i].file_off, img->seg[i].src, img->seg[i].len);
	for (unsigned i = 0; i < img->nseg; i++) {
		ret = ring->persist(ring->base + img->seg[i].file_off, img->seg[i].len);
		if (ret)
			return ret;
	}
	return 0;
}

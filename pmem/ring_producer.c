/* SPDX-License-Identifier: MIT */
/*
 * The producer side: placement from the geometry and the producer's own
 * positions, record images as segments. No mapping needed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "repfabric/ring.h"
#include "ring_internal.h"

struct rf_ring_producer {
	struct ring_geom geom;
	uint64_t tail_pos; /* where the next record (or PAD) goes */
	uint64_t next_seq; /* its sequence number */
	uint64_t head_pos; /* the consumer head as last known */
};

int rf_ring_producer_new(struct rf_ring_producer **out, const struct rf_ring_info *info)
{
	struct rf_ring_producer *p;

	*out = NULL;
	if (rf_ring_check_data_size(info->data_size) || info->ring_id == 0 ||
	    info->head_pos % RF_RING_ALIGN != 0 || info->head_seq == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	ring_geom_init(&p->geom, info->ring_id, info->data_size);
	p->tail_pos = info->head_pos;
	p->next_seq = info->head_seq;
	p->head_pos = info->head_pos;
	*out = p;
	return 0;
}

void rf_ring_producer_delete(struct rf_ring_producer **p)
{
	free(*p);
	*p = NULL;
}

size_t rf_ring_encode_buf_size(uint32_t payload_len)
{
	return (size_t)rf_ring_record_size(payload_len) + RF_RING_PAD_IMAGE_SIZE;
}

int rf_ring_producer_encode(struct rf_ring_producer *p, const struct rf_ring_desc *desc, void *buf,
                            size_t buf_len, struct rf_ring_image *img)
{
	const struct ring_geom *g = &p->geom;
	unsigned char *b = buf, *payload = b + RF_RING_REC_HDR_SIZE;
	uint32_t payload_len, size, pad = 0;
	uint64_t off, end, seq;

	switch (desc->type) {
	case RF_RING_REC_DATA:
		if (desc->length > g->max_payload)
			return -EMSGSIZE;
		if (desc->length && !desc->payload)
			return -EINVAL;
		payload_len = desc->length;
		break;
	case RF_RING_REC_ZERO:
	case RF_RING_REC_TRIM:
		payload_len = 0;
		break;
	default:
		return -EINVAL;
	}
	size = (uint32_t)rf_ring_record_size(payload_len);
	if (!buf || buf_len < rf_ring_encode_buf_size(payload_len))
		return -ENOBUFS;

	off = p->tail_pos % g->data_size;
	if (off + size > g->data_size)
		pad = (uint32_t)(g->data_size - off);
	end = p->tail_pos + pad + size;
	if (end - p->head_pos > g->data_size)
		return -ENOSPC;
	seq = p->next_seq + (pad ? 1 : 0);

	/* The record: header, payload, zeroed padding, trailer. */
	if (payload_len && desc->payload != payload)
		memmove(payload, desc->payload, payload_len);
	memset(payload + payload_len, 0,
	       size - RF_RING_REC_HDR_SIZE - payload_len - RF_RING_REC_TRL_SIZE);
	ring_encode_header(b, g, desc->type, desc->flags, payload_len, size, seq, desc->volume_id,
	                   desc->type == RF_RING_REC_DATA ? payload_len : desc->length,
	                   desc->offset, desc->timestamp_ns, payload);
	ring_encode_trailer(b + size - RF_RING_REC_TRL_SIZE, seq);

	memset(img, 0, sizeof(*img));
	if (pad) {
		/* The PAD: its header and trailer only, after the record in @buf. */
		unsigned char *ph = b + size, *pt = ph + RF_RING_REC_HDR_SIZE;

		ring_encode_header(ph, g, RF_RING_REC_PAD, 0, 0, pad, p->next_seq, 0, 0, 0, 0,
		                   NULL);
		ring_encode_trailer(pt, p->next_seq);
		img->seg[0].file_off = RF_RING_HEADER_SIZE + off;
		img->seg[0].src = ph;
		img->seg[0].len = RF_RING_REC_HDR_SIZE;
		img->seg[1].file_off = RF_RING_HEADER_SIZE + g->data_size - RF_RING_REC_TRL_SIZE;
		img->seg[1].src = pt;
		img->seg[1].len = RF_RING_REC_TRL_SIZE;
		img->nseg = 2;
	}
	img->seg[img->nseg].file_off = RF_RING_HEADER_SIZE + (p->tail_pos + pad) % g->data_size;
	img->seg[img->nseg].src = b;
	img->seg[img->nseg].len = size;
	img->nseg++;
	img->pos = p->tail_pos + pad;
	img->seq = seq;
	img->total_size = size;
	img->pad_bytes = pad;
	img->end_pos = end;

	p->tail_pos = end;
	p->next_seq = seq + 1;
	return 0;
}

int rf_ring_producer_update_head(struct rf_ring_producer *p, uint64_t head_pos)
{
	if (head_pos % RF_RING_ALIGN != 0 || head_pos > p->tail_pos)
		return -EINVAL;
	if (head_pos > p->head_pos)
		p->head_pos = head_pos;
	return 0;
}

uint64_t rf_ring_producer_tail(const struct rf_ring_producer *p)
{
	return p->tail_pos;
}

uint64_t rf_ring_producer_next_seq(const struct rf_ring_producer *p)
{
	return p->next_seq;
}

uint64_t rf_ring_producer_head(const struct rf_ring_producer *p)
{
	return p->head_pos;
}

uint64_t rf_ring_producer_free(const struct rf_ring_producer *p)
{
	return p->geom.data_size - (p->tail_pos - p->head_pos);
}

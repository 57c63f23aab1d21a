/* SPDX-License-Identifier: MIT */
/*
 * Loop layer: the Prometheus endpoint (libmicrohttpd, served from the
 * hub's loop; docs/HUB.md, "Metrics").
 *
 * Layers (the map is in base.h): base < storage < state < engines <
 * protocol < loop. This one: loop. Reads what status.h reads.
 */
#ifndef REPHUB_METRICS_H
#define REPHUB_METRICS_H

#include "base.h"

int metrics_start(struct hub *h);
void metrics_run(struct hub *h);
void metrics_stop(struct hub *h);
char *metrics_text(struct hub *h, size_t *len);

#endif /* REPHUB_METRICS_H */

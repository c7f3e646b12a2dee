/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Stable ids of the services (and their routes) that golden metrics are
 * recorded under (docs/metrics.md, "Series identity").
 *
 * A worker records a series under small integers, never strings
 * (http_metrics.h). Those integers used to be indices into the start-up
 * config, so a reordered file relabelled every series and a service added
 * later (all of them in Kubernetes mode) had none. Here each service
 * namespace/name gets an id the first time a published config holds it,
 * and keeps it for the agent's life: the same in every snapshot, so
 * requests on connections that still hold an older snapshot land in the
 * same series, and labels are resolved by id, never by position.
 *
 * The proxy assigns ids (series_ids_publish) on the thread that publishes
 * configs, before any worker sees the config: the ids are written into
 * config_service.metrics_id and config_route.metrics_id, so the hot path
 * reads a field and takes no lock. Scrapes read names under the lock.
 */
#ifndef SHOAL_RECORDING_SERIES_IDS_H
#define SHOAL_RECORDING_SERIES_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/*
 * Distinct services the agent records metrics for over its life (ids 1 ..
 * this; 0 is "none"). A config holds at most CONFIG_MAX_SERVICES, so one
 * full config always fits; ids are not reused, so a cluster that creates
 * and deletes more distinct services than this before the agent restarts
 * records the newer ones under no series (their requests and connections
 * counted in shoal_metrics_service_overflow_total) rather than growing
 * memory.
 */
#define SERIES_IDS_MAX_SERVICES CONFIG_MAX_SERVICES
/*
 * Distinct route labels per service over the agent's life; the key field
 * holds 7 bits (METRICS_KEY_ROUTE_BITS) and 0 is "no route". Beyond it a
 * route's requests record under route "" (logged once per service).
 */
#define SERIES_IDS_MAX_ROUTES 127
/*
 * A service no longer in the newest config keeps its series exported this
 * long, so that scrapes (every 15 - 60 s) still see its last requests,
 * including those of connections that drain on an old snapshot; then its
 * series leave /metrics. They come back, with their counts, if the
 * service does.
 */
#define SERIES_IDS_GRACE_NS (300 * 1000000000ull)
/* "route-N" for an unnamed route, or its name. */
#define SERIES_IDS_ROUTE_LABEL_MAX (CONFIG_MAX_NAME + 1)
/* "namespace/name". */
#define SERIES_IDS_SERVICE_LABEL_MAX (2 * CONFIG_MAX_NAME + 2)

struct series_ids;

/* An empty registry, or NULL when memory is short. */
struct series_ids *series_ids_new(void);
void series_ids_free(struct series_ids *r);

/*
 * cfg becomes the newest config: give each of its named services and
 * their routes an id (the one they had, or a new one) in metrics_id,
 * mark the services cfg lacks removed as of now_ns. Writes a field only
 * when its value changes, so a config_service shared with an older,
 * published config is never written. One thread at a time (the proxy's
 * publisher); cannot fail (what does not fit gets id 0, counted).
 */
void series_ids_publish(struct series_ids *r, struct config *cfg, uint64_t now_ns);

/*
 * Scrape side, any thread. Whether id's series are exported at now_ns
 * (in the newest config, or removed less than SERIES_IDS_GRACE_NS ago),
 * and its label; false for an unknown id.
 */
bool series_ids_service(struct series_ids *r, uint32_t id, uint64_t now_ns, char *label,
			size_t len);

/* The label of route id of service svc ("" for 0 or an unknown one). */
void series_ids_route(struct series_ids *r, uint32_t svc, uint32_t route, char *label, size_t len);

/* Service ids given so far (at most SERIES_IDS_MAX_SERVICES). */
uint32_t series_ids_count(struct series_ids *r);

#endif

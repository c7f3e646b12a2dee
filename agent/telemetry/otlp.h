/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * OTLP/HTTP JSON span exporter (docs/tracing.md).
 *
 * One thread drains every worker's span ring (trace.h), gathers batches,
 * and POSTs them to the collector's /v1/traces as an
 * ExportTraceServiceRequest in the OTLP JSON mapping. It is the only
 * consumer of the rings and never touches a worker's thread: when it is
 * slow or the collector is down, rings fill and the workers drop spans
 * (counted), they never wait.
 *
 * A failed POST drops its spans (counted by reason) and starts a backoff
 * during which batches are dropped without trying, so a dead collector
 * costs one timeout per backoff period, not one per batch.
 */
#ifndef SHOAL_TELEMETRY_OTLP_H
#define SHOAL_TELEMETRY_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "recording/trace.h"

/*
 * The URL, batch, delay and timeout defaults and the batch limit are the
 * config's (CONFIG_DEFAULT_TRACE_*, CONFIG_MAX_TRACE_BATCH in
 * config/config.h): a field of tracing: and the option it becomes have
 * one default.
 */

/* Connect alone: a collector on the node or in the cluster answers a SYN
 * in well under this. */
#define OTLP_CONNECT_TIMEOUT_MS 1000

/* How often the rings are drained between sends: a ring of
 * CONFIG_DEFAULT_TRACE_RING then absorbs ~10k sampled spans/s per worker. */
#define OTLP_POLL_MS 100

/* After a failure, batches are dropped without trying for a backoff that
 * doubles from MIN to MAX; one success resets it. */
#define OTLP_BACKOFF_MIN_MS 1000
#define OTLP_BACKOFF_MAX_MS 30000

/* Resource strings (service.name, host.name, service.version), bytes. */
#define OTLP_RESOURCE_STR_MAX 256

/*
 * The most one span can take in JSON: fixed text (keys, ids, numbers)
 * plus every string field escaped at worst (6 bytes a byte, \u00XX),
 * the two identities each with the trust domain in front.
 */
#define OTLP_SPAN_JSON_MAX                                                                         \
	(1280 + 6 * (TRACE_NAME_MAX + TRACE_SERVICE_MAX + TRACE_ROUTE_MAX + TRACE_ENDPOINT_MAX +   \
		     TRACE_METHOD_MAX + 2 * (OTLP_RESOURCE_STR_MAX + TRACE_IDENTITY_MAX)))
/* The envelope around the spans (resource and scope), at most. */
#define OTLP_ENVELOPE_JSON_MAX (512 + 3 * 6 * OTLP_RESOURCE_STR_MAX)
/* One POST body at most; a batch that does not fit goes in several POSTs.
 * Collectors accept far larger (the OpenTelemetry Collector: 20 MiB). */
#define OTLP_BODY_MAX (1024 * 1024)

struct otlp_resource {
	const char *service_name; /* NULL = CONFIG_DEFAULT_TRACE_SERVICE_NAME */
	const char *host_name;	  /* the node; NULL or "" = omitted */
	const char *version;	  /* NULL = the build's version */
	/*
	 * Not a resource attribute: the mesh's trust domain (identity.trust_domain),
	 * which makes a span's "namespace/serviceaccount" identities SPIFFE IDs.
	 * NULL or "" = CONFIG_DEFAULT_TRUST_DOMAIN.
	 */
	const char *trust_domain;
};

struct otlp_opts {
	const char *url;     /* http:// or https://; NULL = CONFIG_DEFAULT_TRACE_URL */
	uint32_t batch_max;  /* 0 = CONFIG_DEFAULT_TRACE_BATCH, at most CONFIG_MAX_TRACE_BATCH */
	uint32_t delay_ms;   /* 0 = CONFIG_DEFAULT_TRACE_BATCH_DELAY_MS */
	uint32_t timeout_ms; /* 0 = CONFIG_DEFAULT_TRACE_TIMEOUT_MS */
	struct otlp_resource resource;
};

/*
 * Render @spans[0..@n) as one ExportTraceServiceRequest in OTLP JSON into
 * @buf (@cap bytes, not NUL-terminated), for resource @res. Renders the
 * leading spans that fit and returns how many, with the body length in
 * *@len; 0 (and *@len = 0) when not even the first fits. @cap of
 * OTLP_ENVELOPE_JSON_MAX + OTLP_SPAN_JSON_MAX always fits one span.
 */
size_t otlp_render(const struct otlp_resource *res, const struct trace_span *spans, size_t n,
		   char *buf, size_t cap, size_t *len);

struct otlp_exporter;

/*
 * Check @o and start the exporter thread for @t's rings. Returns 0, or
 * -EINVAL / -ENOMEM / -errno with a message in @err. The collector need
 * not be up: failures are counted, not fatal.
 */
int otlp_exporter_start(struct tracer *t, const struct otlp_opts *o, struct otlp_exporter **out,
			char *err, size_t errlen);

/*
 * Stop: drain the rings one last time, send what they held (one try,
 * bounded by the timeout), join the thread and free everything. After it
 * the rings have no consumer. NULL is fine.
 */
void otlp_exporter_stop(struct otlp_exporter *e);

#endif

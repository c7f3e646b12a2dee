/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Prometheus text exposition of everything shoald measures. Every metric
 * family is declared once, in SHOAL_METRICS below (name, type, help,
 * labels); the /metrics output and docs/metrics.md (shoald
 * --list-metrics) are both rendered from it.
 *
 * Values are read at scrape time: the kernel's counters from the pinned
 * BPF maps, the proxy's from its per-worker atomics. Nothing is copied on
 * the request path.
 */
#ifndef SHOAL_TELEMETRY_METRICS_H
#define SHOAL_TELEMETRY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct proxy;
struct tracer;
struct discovery;
struct enroll;

/*
 * X(id, name, type, labels, help). Kernel, proxy and tracing counters are
 * families generated from their own tables (SHOAL_KERNEL_COUNTERS,
 * PROXY_STATS, TRACE_STATS); the names are shoal_datapath_<field>_total,
 * shoal_proxy_<field>[_total] and shoal_trace_<field>[_total].
 * Labels never carry an unbounded value: "service" and "backend" are
 * configured namespace/names, "route" a configured route name,
 * "endpoint" a configured endpoint address, "status_code" 100 - 599,
 * "method" a configured route's exact path or "other", "grpc_status"
 * 0 - 16 or "none"; every HTTP and gRPC series is also capped per
 * worker (http_metrics.h).
 */
#define SHOAL_METRICS(X)                                                                           \
	X(SVC_INTERCEPTED, "shoal_datapath_service_intercepted_total", "counter", "service",      \
	  "Connects to the service rewritten to the node proxy, per service.")                    \
	X(SVC_FAILED_OPEN, "shoal_datapath_service_failed_open_total", "counter", "service",      \
	  "Connects to the service left to their original path because the proxy was not alive.") \
	X(HTTP_REQUESTS, "shoal_http_requests_total", "counter", "service,route,backend,endpoint", \
	  "HTTP requests that ended (answered or reset), per addressed service, matched route, "  \
	  "serving service and endpoint.")                                                         \
	X(HTTP_RESPONSES, "shoal_http_responses_total", "counter",                                 \
	  "service,route,backend,endpoint,status_code,class",                                      \
	  "HTTP responses sent to the client by status code and class (1xx-5xx), the proxy's own " \
	  "errors included.")                                                                      \
	X(HTTP_LATENCY, "shoal_http_response_latency_seconds", "histogram",                        \
	  "service,route,backend,endpoint,status_code",                                            \
	  "Time from the first byte of the request head to the end of the response "              \
	  "(Linkerd's millisecond buckets, in seconds).")                                          \
	X(HTTP_RETRIES, "shoal_http_retries_total", "counter", "service,route",                    \
	  "HTTP request attempts after the first.")                                                \
	X(HTTP_RETRIES_REFUSED, "shoal_http_retries_refused_total", "counter", "service,route",    \
	  "HTTP retries the policy allowed but the retry budget refused.")                         \
	X(HTTP_DEADLINE, "shoal_http_deadline_exceeded_total", "counter", "service,route",         \
	  "HTTP requests whose route timeout expired before the response (504).")                  \
	X(GRPC_REQUESTS, "shoal_grpc_requests_total", "counter", "service,method,grpc_status",    \
	  "gRPC calls (HTTP/2 requests of content-type application/grpc) that ended, per "        \
	  "addressed service, method and grpc-status. method is the :path when a route of the "   \
	  "service names it exactly, else other; grpc_status is the code 0 - 16 the client got "  \
	  "(shoal's own UNAVAILABLE and DEADLINE_EXCEEDED included; a head of another :status "   \
	  "than 200 without grpc-status as a gRPC client reads it, 503 as 14), or none (reset, "  \
	  "or a 200 without grpc-status).")                                                        \
	X(GRPC_LATENCY, "shoal_grpc_response_latency_seconds", "histogram", "service,method",      \
	  "Time from a gRPC call's request head to the end of its response, per addressed "       \
	  "service and method (as shoal_grpc_requests_total; Linkerd's millisecond buckets, in "  \
	  "seconds).")                                                                             \
	X(HTTP_SERIES, "shoal_http_series", "gauge", "",                                           \
	  "HTTP and gRPC series held in the workers' tables (each worker holds at most "          \
	  "METRICS_HTTP_MAX_SERIES and METRICS_GRPC_MAX_SERIES).")                                 \
	X(HTTP_SERIES_OVERFLOW, "shoal_http_series_overflow_total", "counter", "",                 \
	  "HTTP and gRPC observations not recorded because a worker's series table was full.")     \
	X(SERVICE_IDS, "shoal_metrics_service_ids", "gauge", "",                                   \
	  "Services given a series id since start, at most SERIES_IDS_MAX_SERVICES (16384); "      \
	  "ids are kept for the agent's life (docs/metrics.md).")                                  \
	X(SERVICE_OVERFLOW, "shoal_metrics_service_overflow_total", "counter", "",                 \
	  "HTTP requests and TCP connections not recorded because their service got no series "    \
	  "id (more than SERIES_IDS_MAX_SERVICES services seen since start).")                     \
	X(TCP_OPEN, "shoal_tcp_open_total", "counter", "service",                                  \
	  "Opaque TCP connections (and HTTP tunnels) established to an endpoint.")                 \
	X(TCP_CLOSE, "shoal_tcp_close_total", "counter", "service",                                \
	  "Opaque TCP connections (and HTTP tunnels) closed after they were established.")         \
	X(TCP_READ, "shoal_tcp_read_bytes_total", "counter", "service",                            \
	  "Opaque bytes read from the application and sent on to the endpoint.")                   \
	X(TCP_WRITE, "shoal_tcp_write_bytes_total", "counter", "service",                          \
	  "Opaque bytes read from the endpoint and written to the application.")                   \
	X(EP_EJECTED, "shoal_endpoint_ejected", "gauge", "service,endpoint",                       \
	  "1 while the endpoint's circuit breaker keeps it out of balancing (open or half-open).") \
	X(EP_EJECTIONS, "shoal_endpoint_ejections_total", "counter", "service,endpoint",           \
	  "Times the endpoint's circuit breaker opened.")                                          \
	X(EP_EXPLORATIONS, "shoal_endpoint_explorations_total", "counter", "service,endpoint",     \
	  "Requests the balancer sent to the endpoint to measure it, because it was healthy, idle "\
	  "and sent nothing for resilience.balancer.explore_after_ms (docs/resilience.md).")       \
	X(EP_IN_FLIGHT, "shoal_endpoint_in_flight", "gauge", "service,endpoint",                   \
	  "Requests to the endpoint in flight now (the balancer's pending count).")                \
	X(EP_ESTIMATE, "shoal_endpoint_latency_estimate_seconds", "gauge", "service,endpoint",     \
	  "The balancer's PeakEWMA latency estimate of the endpoint, decayed to now.")             \
	X(EP_OUTCOMES, "shoal_endpoint_outcomes_total", "counter", "service,endpoint,outcome",     \
	  "Outcomes at the endpoint as its balancer and breaker saw them: every HTTP attempt "     \
	  "(first tries and retries alike; shoal_http_requests_total counts only a request's "     \
	  "last) and every opaque TCP connect. outcome is success or failure, as the breaker "    \
	  "counts them (docs/resilience.md).")                                                     \
	X(KL4_CONNECTS, "shoal_kernel_endpoint_connects_total", "counter", "endpoint",            \
	  "Kernel-mode connects to the endpoint (BPF map shoal_kl4_costs; per endpoint, over "    \
	  "every kernel-mode service that lists it).")                                             \
	X(KL4_FAILURES, "shoal_kernel_endpoint_connect_failures_total", "counter", "endpoint",    \
	  "Kernel-mode connects to the endpoint that failed before they were established "        \
	  "(refused, timed out, or abandoned).")                                                   \
	X(KL4_RTT, "shoal_kernel_endpoint_rtt_estimate_seconds", "gauge", "endpoint",             \
	  "The kernel's cost of the endpoint, decayed to now: a peak-EWMA of the TCP smoothed "   \
	  "RTT at each kernel-mode connect, a failed connect counting as 1 s (docs/bpf.md).")    \
	X(KL4_EJECTED, "shoal_kernel_endpoint_ejected", "gauge", "endpoint",                      \
	  "1 while the agent's breaker has the endpoint out of kernel-mode picks.")               \
	X(PROXY_REFUSED, "shoal_proxy_refused_total", "counter", "cap",                            \
	  "Clients the proxy refused at a cap (503 for HTTP, else a reset) or connections it "    \
	  "closed when a buffer would pass the budget; cap is memory "                             \
	  "(proxy.max_buffer_memory_mib), client (proxy.max_connections_per_client) or "           \
	  "connections (proxy.max_connections, per worker).")                                      \
	X(POLICY_DECISIONS, "shoal_policy_decisions_total", "counter",                             \
	  "namespace,service,policy,decision",                                                     \
	  "Authorization decisions of the node proxy per destination namespace and service, the "  \
	  "rule that decided (its name) or the default (default-allow, default-deny, "  \
	  "default-same-namespace), and decision (allow, deny). At most POLICY_STATS_MAX_SERIES "  \
	  "(512) series per worker, kept across policy reloads; decisions past it count as "       \
	  "namespace, service and policy other (docs/policy.md, \"Observability\").")             \
	X(DATAPATH_UP, "shoal_datapath_up", "gauge", "",                                           \
	  "1 when the pinned BPF maps could be read at this scrape, else 0.")                      \
	X(IDENTITY_REQUESTS, "shoal_identity_requests_total", "counter", "outcome",                \
	  "Certificate requests to shoal-identity by outcome: ok, refused (4xx), unauthorized "    \
	  "(401, 403), server_error, transport (connect, TLS, timeout), bad_answer, local (not "   \
	  "sent: no anchors, no token).")                                                          \
	X(PROCESS_OPEN_FDS, "shoal_process_open_fds", "gauge", "",                                 \
	  "File descriptors the agent holds open.")                                                \
	X(PROCESS_RSS, "shoal_process_resident_memory_bytes", "gauge", "",                         \
	  "Resident memory of the agent.")                                                         \
	X(PROCESS_START, "shoal_process_start_time_seconds", "gauge", "",                          \
	  "When the agent started, in seconds since the epoch.")                                   \
	X(BUILD_INFO, "shoal_build_info", "gauge", "version", "Always 1; the agent's version.")

/* Where the values come from; any may be NULL/absent. */
struct metrics_sources {
	const char *pin_root; /* pinned maps of the datapath */
	struct proxy *proxy;
	struct tracer *tracer; /* tracing: counters (TRACE_STATS); NULL when off */
	struct discovery *discovery; /* DISCOVERY_STATS; NULL: not running */
	struct enroll *enroll;	     /* ENROLL_STATS, /debug/pods; NULL: not running */
	struct identity *identity;   /* IDENTITY_STATS, /debug/identity; NULL: off */
	struct tunnel *tunnel;	     /* TUNNEL_STATS; NULL: mtls off */
	double start_time;    /* epoch seconds */
};

/* A growable text buffer; metrics_render appends to it. */
struct metrics_buf {
	char *data;
	size_t len, cap;
	bool failed; /* an allocation failed: the output is incomplete */
};

void metrics_buf_free(struct metrics_buf *b);

/* Append printf-style text to b; on failure b->failed is set. */
void metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Render every family in the Prometheus text format (version 0.0.4).
 * Returns 0, or -ENOMEM (b->failed). */
int metrics_render(const struct metrics_sources *src, struct metrics_buf *b);

/* Print docs/metrics.md's table of every family to stdout. */
void metrics_print_docs(void);

/*
 * The live state a scrape or a debug page renders (metrics.c, debug.c):
 * the newest config snapshot, held for the render, and its services by
 * series id. Open with metrics_live_open (0 or -ENOMEM; without a proxy,
 * cfg stays NULL and the merged series are empty), close always.
 */
struct proxy_snap;
struct config;
struct config_service;
struct metrics_http_snapshot;
struct metrics_live {
	struct proxy *proxy;
	struct proxy_snap *snap;
	const struct config *cfg;
	const struct config_service **by_id; /* series id -> service of cfg, or NULL */
	uint64_t now_ns;		     /* CLOCK_MONOTONIC, at open */
};
int metrics_live_open(struct proxy *proxy, struct metrics_live *l);
void metrics_live_close(struct metrics_live *l);

/* Every worker's series merged, as the live config exports them (http_metrics.h). */
int metrics_live_series(const struct metrics_live *l, struct metrics_http_snapshot *out);

/* Label "namespace/name" of series id svc; false when it is not exported. */
bool metrics_live_service(const struct metrics_live *l, uint32_t svc, char *label, size_t len);

#endif

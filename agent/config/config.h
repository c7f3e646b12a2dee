/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * shoald's configuration file (YAML), parsed into one immutable struct.
 * Every field is documented in docs/config.md; defaults live here, once.
 */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/abi.h"

struct policy_set; /* policy/policy.h: the compiled authorization policy */

/* Limits of one config file. Each bounds memory and parse time on hostile
 * input; raise them here if a real deployment needs more. */
#define CONFIG_MAX_FILE_BYTES (16u << 20) /* a file larger than this is refused */
#define CONFIG_MAX_NAME 63                 /* DNS label length (RFC 1123) */
#define CONFIG_MAX_VIPS 4                  /* v4 + v6 clusterIPs, with room */
#define CONFIG_MAX_PORTS 32                /* ports per service */
#define CONFIG_MAX_ENDPOINTS 1024          /* endpoints per service */
#define CONFIG_MAX_SERVICES SHOAL_MAX_SERVICES
#define CONFIG_MAX_K8S_URL 256             /* kubernetes.api_server: scheme, host, port */
#define CONFIG_MAX_OPAQUE_PORTS 64         /* proxy.opaque_ports; 8 are the default */

/*
 * Limits of routes. A request walks a service's routes in order, so these
 * bound the work per request as well as memory; each is far above what a
 * hand-written or Gateway-API-generated route table uses.
 */
#define CONFIG_MAX_ROUTES 64           /* per service: each costs a match per request */
#define CONFIG_MAX_ROUTES_TOTAL 4096   /* whole file: a route is ~4 KiB, so <= 16 MiB */
#define CONFIG_MAX_ROUTE_HOSTS 16      /* match.hosts entries */
#define CONFIG_MAX_ROUTE_METHODS 16    /* match.methods entries; RFC 9110 defines 8 */
#define CONFIG_MAX_ROUTE_HEADERS 16    /* match.headers entries */
#define CONFIG_MAX_ROUTE_BACKENDS 16   /* backends of one route (a split, not a pool) */
#define CONFIG_MAX_RETRY_STATUSES 16   /* retry_statuses entries */
#define CONFIG_MAX_RETRY_GRPC_STATUSES 16 /* retry_grpc_statuses: every gRPC code but OK */
#define CONFIG_MAX_HOST 253            /* DNS name length (RFC 1035) */
#define CONFIG_MAX_METHOD 32           /* longest registered method is 17 */
#define CONFIG_MAX_ROUTE_PATH 1024     /* match.path; far below max_request_line */
#define CONFIG_MAX_HEADER_NAME 128     /* match.headers key */
#define CONFIG_MAX_HEADER_VALUE 1024   /* match.headers value */
#define CONFIG_MAX_BACKEND_WEIGHT 10000 /* basis points: 1 = 0.01 % of a 100 % split */

/* Defaults. */
#define CONFIG_DEFAULT_CONNECT_TIMEOUT_MS 1000 /* per attempt (Linkerd's) */
#define CONFIG_DEFAULT_CONNECT_DEADLINE_MS 3000 /* all attempts of one connection */
#define CONFIG_DEFAULT_BUFFER_BYTES 16384      /* per direction per connection */
#define CONFIG_DEFAULT_MAX_CONNECTIONS 65536   /* per worker */
/*
 * proxy.max_buffer_memory_mib: what every worker's buffers, header slots,
 * HTTP states, replay slabs and HTTP/2 sessions and streams may take together. 256 MiB holds 8192
 * connections moving bytes both ways at once at the default 16 KiB
 * buffers (idle ones hold none), and keeps a flood of slow clients from
 * taking more than a quarter of a 1 GiB pod limit.
 */
#define CONFIG_DEFAULT_MAX_BUFFER_MEMORY_MIB 256
/*
 * proxy.max_connections_per_client: connections one client address may
 * hold open through the proxy, over all workers. Above the 10000 idle
 * connections the benchmark holds from one client, far below what would
 * starve the node's other pods of max_connections x workers.
 */
#define CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT 16384
#define CONFIG_DEFAULT_FAILOPEN_AFTER_MS 2000  /* heartbeat age that means "proxy dead" */
#define CONFIG_DEFAULT_CGROUP "/"              /* relative to the cgroup2 mount */
/* kubernetes.backoff_max_ms: client-go's ceiling; 30 s between retries
 * keeps a thousand agents from hammering a recovering API server. */
#define CONFIG_DEFAULT_K8S_BACKOFF_MAX_MS 30000
/* kubernetes.enrollment (docs/enrollment.md) */
#define CONFIG_MAX_NODE_NAME 254  /* a DNS subdomain: 253 characters */
#define CONFIG_MAX_CNI_SOCKET 108 /* sockaddr_un.sun_path, NUL included */
#define CONFIG_DEFAULT_CNI_SOCKET "/var/run/shoal/cni.sock"
#define CONFIG_DEFAULT_ENROLL_CGROUP_ROOT "/" /* relative to the cgroup2 mount */
#define CONFIG_DEFAULT_ENROLL_RESYNC_MS 5000
#define CONFIG_DEFAULT_ENROLL_NETNS_DIR "/var/run/netns" /* containerd's and CRI-O's */
/*
 * A request finding no candidate endpoint (all ejected or probing) waits
 * this long for one before its 503: about one breaker backoff, so a probe
 * that succeeds in the meantime still serves it.
 */
#define CONFIG_DEFAULT_FAIL_FAST_MS 1000

/*
 * Protocol detection. 100 ms is long enough for a client's first write to
 * follow its connect on any sane network, and short enough that a
 * server-speaks-first protocol (MySQL, SMTP) barely notices the wait;
 * Linkerd's 10 s is the trap this avoids.
 */
#define CONFIG_DEFAULT_DETECT_TIMEOUT_MS 100
/* Well-known server-speaks-first or binary ports (SMTP, submission, MySQL,
 * Galera SST, PostgreSQL, Redis, Elasticsearch transport, memcached):
 * detecting on them only costs the wait above. */
#define CONFIG_DEFAULT_OPAQUE_PORTS {25, 587, 3306, 4444, 5432, 6379, 9300, 11211}
/* A connection idle this long is closed: 5 min outlives every keep-alive
 * interval clients use, and still reclaims abandoned sockets. */
#define CONFIG_DEFAULT_IDLE_TIMEOUT_MS 300000
/*
 * Drain on SIGTERM (docs/proxy.md, "Stopping"): requests in flight get
 * this long to finish before the rest are reset. 5 s covers ordinary
 * requests and leaves half of the DaemonSet's 10 s
 * terminationGracePeriodSeconds for the rest of the shutdown; at most
 * 5 min, as a pod's grace period that long is rare.
 */
#define CONFIG_DEFAULT_DRAIN_TIMEOUT_MS 5000
#define CONFIG_MAX_DRAIN_TIMEOUT_MS 300000

/* HTTP/1 limits: nginx's and HAProxy's sizes, which real clients fit in. */
#define CONFIG_DEFAULT_HTTP_MAX_REQUEST_LINE 8192 /* past it: 414 */
#define CONFIG_DEFAULT_HTTP_MAX_HEAD_BYTES 32768  /* head incl. request line; past it: 431 */
#define CONFIG_DEFAULT_HTTP_MAX_HEADERS 100       /* header lines; past it: 431 */

/*
 * proxy.http2: the HTTP/2 kind's limits (docs/proxy.md, "HTTP/2 and
 * gRPC"). Defaults: 100 streams (RFC 9113's recommended minimum, the
 * low end of what Envoy and Go allow); nghttp2's own defaults for the
 * flood limits, which are the ones its CVE fixes chose.
 */
#define CONFIG_DEFAULT_H2_MAX_STREAMS 100	    /* concurrent streams per connection */
#define CONFIG_MAX_H2_STREAMS 10000
#define CONFIG_DEFAULT_H2_MAX_HEADER_LIST (64 * 1024) /* bytes, RFC 9113 6.5.2 accounting */
#define CONFIG_MIN_H2_HEADER_LIST 1024
#define CONFIG_MAX_H2_HEADER_LIST (1024 * 1024)
#define CONFIG_DEFAULT_H2_HPACK_TABLE 4096 /* bytes: the RFC 7541 default */
#define CONFIG_MAX_H2_HPACK_TABLE (64 * 1024)
#define CONFIG_DEFAULT_H2_STREAM_WINDOW (256 * 1024) /* bytes buffered per stream and way */
#define CONFIG_MIN_H2_WINDOW 16384		     /* one frame of the minimum size */
#define CONFIG_MAX_H2_WINDOW (16 * 1024 * 1024)
#define CONFIG_DEFAULT_H2_SESSION_WINDOW (1024 * 1024) /* bytes buffered per session and way */
#define CONFIG_DEFAULT_H2_MAX_PENDING_ACKS 1000	       /* SETTINGS/PING acks queued */
#define CONFIG_MAX_H2_PENDING_ACKS 100000
#define CONFIG_DEFAULT_H2_RESET_BURST 1000 /* client resets before the rate applies */
#define CONFIG_DEFAULT_H2_RESET_RATE 33	   /* client resets per second, sustained */
#define CONFIG_MAX_H2_RESETS 1000000
#define CONFIG_DEFAULT_H2_MAX_CONTINUATIONS 8 /* CONTINUATION frames per header block */
#define CONFIG_MAX_H2_CONTINUATIONS 1000
/*
 * RST_STREAMs the proxy itself sends a client before the reset_rate
 * applies to them too (MadeYouReset, CVE-2025-8671: frames that make the
 * server reset). nghttp2's own limit counts the client's resets only.
 */
#define CONFIG_DEFAULT_H2_MAX_SENT_RESETS 1000
/*
 * A client connection whose response bytes wait on its flow-control
 * window, with none of them going out for this long, is closed: a
 * window kept at zero would otherwise hold its streams, their buffers
 * and their endpoints' windows for ever. A minute: far longer than any
 * reader that is merely slow takes to open its window again.
 */
#define CONFIG_DEFAULT_H2_STALL_TIMEOUT_MS 60000
#define CONFIG_MAX_H2_STALL_TIMEOUT_MS 3600000
/*
 * A gRPC response head that a retry could still replace is held back this
 * long for its first message or its trailers (docs/proxy.md, "Retries"):
 * a failing endpoint sends its trailers within a millisecond or so of its
 * head, while a server-streaming call that sends its head and then waits
 * gets it at most this late. 100 ms: far longer than a local endpoint's
 * gap between head and trailers, short enough to go unnoticed as the
 * head's latency.
 */
#define CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS 100
#define CONFIG_MAX_H2_GRPC_HEAD_HOLD_MS 10000
/* An idle pooled upstream connection is dropped after this: below the
 * 60 s keep-alive timeout most servers use, so the proxy closes first and
 * rarely reuses a connection the server is closing. */
#define CONFIG_DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS 30000
/* Idle upstream connections kept per endpoint per worker: enough for a
 * burst's concurrency to be reused, few enough not to pin server slots. */
#define CONFIG_DEFAULT_HTTP_POOL_MAX_IDLE 64
/*
 * proxy.http.request_body_timeout_ms: the longest a request body may go
 * without a byte once it started (nginx's client_body_timeout is 60 s;
 * 30 s is far beyond any pause of a live client, and frees a stalled
 * upload's endpoint slot twice as fast).
 */
#define CONFIG_DEFAULT_HTTP_BODY_TIMEOUT_MS 30000
/*
 * proxy.http.response_head_timeout_ms: an endpoint that accepted a
 * request but sends no response head for this long gets a 504 (or a
 * retry). A minute, well below the 5 min idle timeout, is longer than any
 * synchronous API should think, and short enough that a hung endpoint
 * does not hold its clients for five.
 */
#define CONFIG_DEFAULT_HTTP_HEAD_TIMEOUT_MS 60000

/* proxy.http.upgrade_protocols: a short list of protocol names (RFC 9110 7.8 tokens). */
#define CONFIG_MAX_HTTP_UPGRADES 8
#define CONFIG_MAX_HTTP_UPGRADE_NAME 32
#define CONFIG_DEFAULT_HTTP_UPGRADE "websocket" /* h2c is not: HTTP/2 is carried opaque */
/* tracing.sample_rate: Istio's default, 1 % of new traces. */
#define CONFIG_DEFAULT_TRACE_SAMPLE_RATE 0.01

/* Route policy. 503 is the one status that says "try elsewhere" (RFC 9110
 * 15.6.4); others are opt-in. */
#define CONFIG_DEFAULT_RETRY_STATUS 503
/* gRPC UNAVAILABLE: the code gRPC defines as transient (grpc/doc/statuscodes.md). */
#define CONFIG_DEFAULT_RETRY_GRPC_STATUS 14

enum config_protocol {
	CONFIG_PROTO_TCP = 0, /* opaque TCP: bytes copied both ways */
	CONFIG_PROTO_HTTP,    /* HTTP/1.x (also kubernetes.io/ws: an Upgrade is HTTP/1.1) */
	CONFIG_PROTO_H2C,     /* HTTP/2 cleartext, prior knowledge (h2.c); gRPC too */
	CONFIG_PROTO_DETECT,  /* undeclared: peek the first bytes, up to detect_timeout_ms */
};

/*
 * Who carries a service port's connections (docs/config.md, "mode").
 * Zero is the proxy, so a port built outside the parser (discovery) is
 * proxied.
 */
enum config_port_mode {
	CONFIG_MODE_PROXY = 0, /* connect4/6 rewrite to the node proxy */
	/* connect4/6 pick the endpoint (P2C over the kernel's RTT costs) and
	 * rewrite to it: no proxy in the path. Opaque TCP only. */
	CONFIG_MODE_KERNEL,
};
/* Opaque ports are proxied unless they ask for kernel mode: the proxy
 * retries a refused connect on another endpoint and sees slow servers
 * (docs/benchmarks.md, finding 5b, has the figures and the reasons). */
#define CONFIG_DEFAULT_PORT_MODE CONFIG_MODE_PROXY

/*
 * What the endpoints of an HTTP/2 port speak (docs/config.md,
 * "upstream_protocol"). Zero is "as the client": an h2c port's endpoints
 * speak HTTP/2. HTTP1 makes the proxy translate each HTTP/2 stream into
 * an HTTP/1.1 request on a pooled keep-alive connection (h2_to_h1.c).
 */
enum config_upstream_protocol {
	CONFIG_UPSTREAM_SAME = 0, /* the client's protocol */
	CONFIG_UPSTREAM_HTTP1,	  /* HTTP/1.1 only: HTTP/2 streams are translated */
};

struct config_port {
	uint16_t port;        /* service port (host order) */
	uint16_t target_port; /* endpoint port (host order); defaults to port */
	/* What the proxy does. Never DETECT on a port (or target_port) listed
	 * in proxy.opaque_ports: the parser resolves that to TCP. */
	enum config_protocol protocol;
	bool declared;        /* protocol was written in the file */
	enum config_port_mode mode;
	int mode_line;        /* line of "mode", 0 when not written */
	/* Never HTTP1 on a port that cannot carry HTTP/2 (check_config). */
	enum config_upstream_protocol upstream;
	int upstream_line;    /* line of "upstream_protocol", 0 when not written */
	int line;             /* line in the file, for messages */
};

/* ---- routes (services[].routes[]) ---- */

enum config_path_match {
	CONFIG_PATH_ANY = 0, /* no path criterion */
	CONFIG_PATH_EXACT,   /* the path equals config_route.path */
	CONFIG_PATH_PREFIX,  /* path is config_route.path or continues it with '/' */
};

/* One match.hosts entry, lower-case, without port. */
struct config_route_host {
	char *name;   /* heap; for a suffix, the part after '*' (".example.com") */
	size_t len;
	bool suffix;  /* written "*.example.com": names ending in name, not name itself */
};

/* One match.headers entry: the request's field must equal value exactly. */
struct config_route_header {
	char *name;  /* heap, lower-case */
	size_t name_len;
	char *value; /* heap, case-sensitive */
	size_t value_len;
};

struct config_route_backend {
	uint32_t svc_index;  /* index in config.services, resolved at parse time */
	uint32_t weight;     /* 0..CONFIG_MAX_BACKEND_WEIGHT; 0 never picked */
	uint32_t cum_weight; /* weights of this and every earlier backend */
	char namespace[CONFIG_MAX_NAME + 1];
	char name[CONFIG_MAX_NAME + 1];
	int line;            /* the backend's line; the route's when implicit */
};

/*
 * One route: every criterion present must hold (none present: all requests
 * match). Strings are pre-normalised by the parser so that matching is
 * plain byte comparison (agent/proxy/http_routes.h).
 */
struct config_route {
	char name[CONFIG_MAX_NAME + 1]; /* "" when unnamed */

	struct config_route_host hosts[CONFIG_MAX_ROUTE_HOSTS];
	int n_hosts;                    /* 0: any host */
	enum config_path_match path_match;
	char *path;                     /* heap; prefixes have no trailing '/' unless "/" */
	size_t path_len;
	char methods[CONFIG_MAX_ROUTE_METHODS][CONFIG_MAX_METHOD + 1]; /* case-sensitive */
	int n_methods;                  /* 0: any method */
	struct config_route_header headers[CONFIG_MAX_ROUTE_HEADERS];
	int n_headers;

	/* Always at least one: without "backends" the route's own service,
	 * weight 1. total_weight > 0 == backends[n_backends - 1].cum_weight. */
	struct config_route_backend backends[CONFIG_MAX_ROUTE_BACKENDS];
	int n_backends;
	uint32_t total_weight;

	/* Policy, enforced by the resilience code. */
	uint32_t timeout_ms;         /* whole request incl. retries; 0: none */
	uint32_t per_try_timeout_ms; /* one attempt; 0: none (timeout_ms bounds it) */
	uint32_t connect_timeout_ms; /* one connect attempt; 0: the target service's */
	uint32_t idle_timeout_ms;    /* silence while a request is in flight; 0: the service's */
	bool retryable;              /* may retry non-idempotent methods too */
	uint16_t retry_statuses[CONFIG_MAX_RETRY_STATUSES]; /* default {503} */
	int n_retry_statuses;
	/* gRPC codes (1..16) retried on a retryable route; default {14} */
	uint8_t retry_grpc_statuses[CONFIG_MAX_RETRY_GRPC_STATUSES];
	int n_retry_grpc_statuses;
	/*
	 * How long a retryable gRPC head waits for its message or trailers
	 * on this route (0: never held), when grpc_head_hold_set; else
	 * proxy.http2.grpc_head_hold_ms. A server-streaming route that
	 * sends its head long before its first message turns it off here.
	 */
	uint32_t grpc_head_hold_ms;
	bool grpc_head_hold_set;
	int line;
	/* Telemetry's id of the route's label within its service
	 * (recording/series_ids.h); set by the proxy before it publishes the
	 * config, 0 until then. Not part of the file. */
	uint32_t metrics_id;
};

struct config_endpoint {
	struct shoal_addr addr;
	int line;
	/*
	 * Kubernetes EndpointSlice conditions (docs/discovery.md); endpoints
	 * of the file are ready and serving. The proxy's list holds the ones
	 * discovery selected: ready ones, or serving+terminating ones when
	 * none is ready.
	 */
	bool ready, serving, terminating;
	const char *zone; /* topology zone, or NULL; points into its service's strings */
	const char *node; /* node name, or NULL; points into its service's strings */
	/*
	 * The workload identity the endpoint serves as, "<namespace>/<service
	 * account>" in identity.trust_domain, or NULL (unknown: no shoal there, as
	 * far as this node knows); points into its service's strings. With
	 * node, what routes a call through the encrypted hop (docs/mtls.md).
	 */
	const char *identity;
};

/*
 * A service's balancing, retry, breaker and timeout knobs (the
 * "resilience:" block, docs/config.md). Integers only: ratios are
 * percentages, times milliseconds. The parser fills every field with its
 * default (config_resilience_default) before reading the block; the proxy
 * turns them into the modules' own cfg structs (agent/proxy/endpoint_state.c).
 */
struct config_resilience {
	/* balancer: PeakEWMA (balance/peak_ewma.h) */
	uint32_t default_rtt_ms;     /* estimate of an endpoint with no samples */
	uint32_t decay_ms;           /* decay time constant (tau), >= 1 */
	uint32_t failure_penalty_ms; /* the cost a penalised endpoint carries; 0: off */
	uint32_t penalty_ms;         /* how long a failure without Retry-After is penalised */
	uint32_t retry_after_cap_ms; /* Retry-After above this counts as this */
	uint32_t explore_after_ms;   /* an endpoint idle this long gets the next request; 0: off */
	/* retry_budget (resilience/retry_budget.h) */
	uint32_t budget_ratio_pct;   /* retries per 100 original requests */
	uint32_t budget_min_per_s;   /* retries per second always allowed */
	uint32_t budget_window_ms;   /* the sliding window */
	/* retries (resilience/retry_policy.h, backoff.h) */
	uint32_t max_retries;        /* per request, on top of the first try */
	uint32_t max_body_bytes;     /* larger request bodies are not retried */
	uint32_t backoff_base_ms;    /* full-jitter ceiling of the first retry */
	uint32_t backoff_max_ms;     /* the ceiling doubles up to this */
	bool connect_any_method;     /* connect failures retried whatever the method */
	/* breaker (resilience/breaker.h) */
	uint32_t consecutive_failures;      /* 0: off */
	uint32_t breaker_backoff_min_ms;
	uint32_t breaker_backoff_max_ms;
	uint32_t jitter_pct;
	uint32_t success_rate_pct;          /* 0: off */
	uint32_t success_rate_window_ms;
	uint32_t success_rate_min_requests;
	uint32_t max_ejection_pct;
	/* no candidate endpoint: wait this long, then 503 */
	uint32_t fail_fast_ms;
	/* timeouts; a route's timeout_ms and per_try_timeout_ms override */
	uint32_t connect_timeout_ms;  /* one connect attempt; 0: proxy.connect_timeout_ms */
	uint32_t request_timeout_ms;  /* whole request incl. retries; 0: none */
	uint32_t per_try_timeout_ms;  /* one try until the response head; 0: none */
	uint32_t idle_timeout_ms;     /* 0: proxy.idle_timeout_ms */
	uint32_t response_head_timeout_ms; /* 0: proxy.http.response_head_timeout_ms */
};

/*
 * Fill r with the defaults (docs/resilience.md, "Defaults"). A zeroed
 * struct (a service built outside the parser, e.g. by discovery) stands
 * for all defaults: decay_ms is never 0 once filled.
 */
void config_resilience_default(struct config_resilience *r);

/*
 * One service. Shared between configs (docs/discovery.md, "Snapshots"):
 * each config holds a reference, consecutive configs share the services
 * that did not change, and the last config_service_put frees it with
 * what it owns (endpoints, routes, strings). Once a config holding it is
 * published (or copied) it is never modified; a writer gets a private
 * copy first with config_service_mut.
 */
struct config_service {
	char name[CONFIG_MAX_NAME + 1];
	char namespace[CONFIG_MAX_NAME + 1]; /* default "default" */
	uint32_t id;                          /* index in config.services = BPF svc_id */
	struct shoal_addr vips[CONFIG_MAX_VIPS];
	int n_vips;
	struct config_port ports[CONFIG_MAX_PORTS];
	int n_ports;
	struct config_endpoint *endpoints; /* heap, n_endpoints entries */
	int n_endpoints;
	struct config_route *routes; /* heap, n_routes entries, in match order */
	int n_routes;                /* 0: every request to the own endpoints */
	struct config_resilience resilience;
	int line;
	/* Telemetry's id of namespace/name (recording/series_ids.h): the same
	 * in every config the proxy publishes; set by the proxy before it
	 * publishes the config, 0 until then (written only when it differs,
	 * so a shared service is not written twice). Not part of the file. */
	uint32_t metrics_id;
	char *strings; /* heap: zone and node names endpoints point into, or NULL */
	size_t strings_len;
	/* The Service's shoal.io/mtls-mode annotation (Kubernetes): 0 none,
	 * else 1 + enum config_mtls_mode; it can only raise the file's mode
	 * (config_mtls_mode_for). */
	uint8_t mtls_mode;
	atomic_uint refs; /* configs (and other owners) holding it */
	/*
	 * Unique to this object and content, never reused (config_service_new,
	 * _dup and _mut give a new one): a cache may take an equal serial for
	 * an unchanged service without comparing, and without holding a
	 * reference. 0 (a service built by hand): unknown, compare.
	 */
	uint64_t serial;
};

/*
 * tracing: spans of proxied HTTP requests and their export (docs/tracing.md).
 * The defaults and bounds are the tracer's and the exporter's own
 * (recording/trace.c, telemetry/otlp.c), which apply them to options left 0: they
 * are defined here, once, and recording/ and telemetry/ use these names.
 */
#define CONFIG_MAX_URL 512	    /* collector_url; OTLP endpoints are short */
#define CONFIG_MAX_SERVICE_NAME 255 /* resource service.name (OTLP_RESOURCE_STR_MAX - 1) */
/* The OTLP/HTTP default port and path, on the node. */
#define CONFIG_DEFAULT_TRACE_URL "http://127.0.0.1:4318/v1/traces"
#define CONFIG_DEFAULT_TRACE_SERVICE_NAME "shoal" /* the resource's service.name */
/* OTLP SpanKind values: what a proxied request's span says the proxy is. */
#define CONFIG_SPAN_KIND_SERVER 2
#define CONFIG_SPAN_KIND_CLIENT 3 /* the default: the proxy calls the endpoint */
/* Default per-worker ring: 1024 spans, ~456 KiB. The exporter drains
 * every 100 ms (OTLP_POLL_MS), so it absorbs ~10k sampled spans/s per
 * worker, or ~500/s through a POST that hangs its whole 2 s timeout. */
#define CONFIG_DEFAULT_TRACE_RING 1024
/* Ring sizes must be powers of two (index masking) within these bounds. */
#define CONFIG_MIN_TRACE_RING 8
#define CONFIG_MAX_TRACE_RING 65536
/* Spans per POST: the OpenTelemetry SDKs' default max export batch. */
#define CONFIG_DEFAULT_TRACE_BATCH 512
/* Bounds the exporter's batch buffer (456 bytes a span). */
#define CONFIG_MAX_TRACE_BATCH 16384
/* Longest a span waits in a batch before it is sent: the SDKs' 1 s
 * schedule delay, short enough to look live in a trace UI. */
#define CONFIG_DEFAULT_TRACE_BATCH_DELAY_MS 1000
/* One POST, connect included. Rings must hold this long of traffic for
 * nothing to drop while the collector is slow. */
#define CONFIG_DEFAULT_TRACE_TIMEOUT_MS 2000
struct config_tracing {
	bool enabled; /* default false: no spans, trace headers pass through untouched */
	char collector_url[CONFIG_MAX_URL + 1];
	double sample_rate; /* new traces only; parents' decisions are followed */
	uint8_t span_kind;  /* CONFIG_SPAN_KIND_CLIENT (default) or _SERVER */
	char service_name[CONFIG_MAX_SERVICE_NAME + 1];
	uint32_t ring_size;	 /* spans per worker, a power of two */
	uint32_t batch_size;	 /* spans per POST */
	uint32_t batch_delay_ms; /* longest a span waits for its batch */
	uint32_t timeout_ms;	 /* one POST, connect included */
};

/* admin: the admin endpoint (docs/metrics.md). */
#define CONFIG_MAX_LISTEN 63 /* "[v6 address]:port" is at most 53 */
/* Loopback only, so nothing outside the node can read the metrics or
 * probe the agent unless the operator says so. */
#define CONFIG_DEFAULT_ADMIN_LISTEN "127.0.0.1:15020"
/*
 * mtls: the encrypted hop between nodes (docs/mtls.md). Limits of the
 * static tables: a file lists what an operator writes by hand; a cluster
 * learns both from Kubernetes (nodeName) and the pod table instead.
 */
#define CONFIG_MAX_MTLS_NODES 256     /* mtls.nodes entries */
#define CONFIG_MAX_MTLS_WORKLOADS 256 /* mtls.workloads entries */
/* mtls.namespaces and mtls.services: modes an operator writes by hand. */
#define CONFIG_MAX_MTLS_NAMESPACES 256
#define CONFIG_MAX_MTLS_SERVICES 256
#define CONFIG_MAX_TRUST_DOMAIN 253 /* a DNS name */
#define CONFIG_MAX_IDENTITY 320	      /* "<ns>/<sa>": 63 + 1 + 253, NUL included */
#define CONFIG_DEFAULT_MTLS_PORT 15008
/* A TLS 1.3 handshake takes one round trip and two signatures: 5 s is
 * many times a loaded node's, and short enough that a stalled peer frees
 * its slot soon. */
#define CONFIG_DEFAULT_MTLS_HANDSHAKE_TIMEOUT_MS 5000
/* Handshakes in progress at once on the 15008 listener: each costs a
 * signature and a few KiB; beyond this a new connection is refused. */
#define CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES 256
/* ... and from one source address: a peer node opens one connection per
 * (source identity, destination identity), so 32 is a busy node's share. */
#define CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES_PER_SOURCE 32

enum config_mtls_mode {
	CONFIG_MTLS_OFF = 0,	/* plaintext between nodes; no 15008 listener */
	CONFIG_MTLS_PERMISSIVE, /* encrypt to endpoints with an identity, plaintext to the rest */
	CONFIG_MTLS_STRICT,	/* never plaintext to another node's endpoint */
};

struct config_mtls_node {
	char name[CONFIG_MAX_NODE_NAME];
	struct shoal_addr addr; /* where its shoald listens on mtls.port */
};

/*
 * Nodes' addresses learned from Kubernetes: each node's pods report it
 * (status.hostIP; discovery/model.h). Built by discovery, immutable once
 * in a config, and shared by reference between configs like the
 * services. Sorted by name. mtls.nodes wins over it (config_mtls_node).
 */
struct config_nodes {
	atomic_uint refs;
	int n;
	struct config_mtls_node nodes[]; /* n entries, sorted by name */
};

/* A set of room for n nodes (n set, entries zeroed, one reference), or NULL. */
struct config_nodes *config_nodes_new(int n);
/* Another reference to set (NULL is fine); returns set. */
struct config_nodes *config_nodes_get(struct config_nodes *set);
void config_nodes_put(struct config_nodes *set);

struct config_mtls_workload {
	struct shoal_addr addr;		    /* a local pod's address */
	char identity[CONFIG_MAX_IDENTITY]; /* "<ns>/<sa>" */
};

/* A mode for one namespace (name "") or one service, from the file. */
struct config_mtls_scope {
	char namespace[CONFIG_MAX_NAME + 1];
	char name[CONFIG_MAX_NAME + 1]; /* "": the whole namespace */
	enum config_mtls_mode mode;
};

struct config_mtls {
	enum config_mtls_mode mode;		    /* default CONFIG_MTLS_OFF */
	char node_name[CONFIG_MAX_NODE_NAME];	    /* this node, as endpoints name it */
	uint16_t port;				    /* default CONFIG_DEFAULT_MTLS_PORT */
	bool peer_identity_header;		    /* x-shoal-peer-identity to backends */
	bool ktls;				    /* default true: ask for kernel TLS */
	uint32_t handshake_timeout_ms;
	uint32_t max_handshakes;
	uint32_t max_handshakes_per_source;
	struct config_mtls_node nodes[CONFIG_MAX_MTLS_NODES];
	int n_nodes;
	struct config_mtls_workload workloads[CONFIG_MAX_MTLS_WORKLOADS];
	int n_workloads;
	/* Sorted by (namespace, name) once parsed, for config_mtls_mode_for. */
	struct config_mtls_scope namespaces[CONFIG_MAX_MTLS_NAMESPACES];
	int n_namespaces;
	struct config_mtls_scope services[CONFIG_MAX_MTLS_SERVICES];
	int n_services;
	/* mode, or a namespace's or service's, is not off: the hop runs. */
	bool on;
};

struct config_admin {
	char listen[CONFIG_MAX_LISTEN + 1]; /* "ADDR:PORT", "[ADDR]:PORT" or "off" */
};

/*
 * identity: the node's workload certificates (docs/identity.md, "The
 * agent side"). Absent, or enabled: false: no certificates.
 */
#define CONFIG_DEFAULT_TRUST_DOMAIN "cluster.local"
#define CONFIG_DEFAULT_ID_SERVER_URL "https://shoal-identity.shoal-system.svc:15012"
/* A projected service account token with the issuer's audience, which the
 * kubelet rotates: re-read for every request (manifests/). */
#define CONFIG_DEFAULT_ID_TOKEN_FILE "/var/run/secrets/shoal-identity/token"
/* The shoal-trust-anchors ConfigMap, mounted as a volume. */
#define CONFIG_DEFAULT_ID_ANCHORS_FILE "/var/run/shoal/trust/anchors.pem"
/* Istio's and Linkerd's lifetime: short enough that a stolen key is
 * useful for a day at most, long enough to ride out an issuer outage of
 * half a day. At least 10 s (tests), at most 90 days. */
#define CONFIG_DEFAULT_ID_LIFETIME_S 86400
#define CONFIG_MIN_ID_LIFETIME_S 10
#define CONFIG_MAX_ID_LIFETIME_S (90 * 86400)
/* Renew at half the life (Istio's): half is left to retry in. */
#define CONFIG_DEFAULT_ID_RENEW_FRACTION 0.5
#define CONFIG_MIN_ID_RENEW_FRACTION 0.1 /* sooner is churn */
#define CONFIG_MAX_ID_RENEW_FRACTION 0.9 /* later leaves no time to retry */
/* +-10 % of the renewal delay, so that a node's certificates (and a
 * cluster's nodes after a restart) do not all renew in the same second. */
#define CONFIG_DEFAULT_ID_RENEW_JITTER 0.1
#define CONFIG_MAX_ID_RENEW_JITTER 0.5
/* Failed requests back off exponentially from 1 s to 60 s: a thousand
 * nodes retrying at the cap cost the issuer ~17 requests per second. */
#define CONFIG_DEFAULT_ID_BACKOFF_MIN_MS 1000
#define CONFIG_DEFAULT_ID_BACKOFF_MAX_MS 60000
#define CONFIG_MIN_ID_BACKOFF_MS 10
#define CONFIG_MAX_ID_BACKOFF_MS 3600000
/* An account's certificate is kept this long after its last pod on the
 * node leaves: a pod restarted or rescheduled back finds it still there. */
#define CONFIG_DEFAULT_ID_DROP_GRACE_MS 60000
#define CONFIG_MAX_ID_DROP_GRACE_MS 3600000
/* How often the anchors file (or the files directory) is re-read; the
 * kubelet itself updates a ConfigMap volume within about a minute. */
#define CONFIG_DEFAULT_ID_POLL_MS 5000
#define CONFIG_MIN_ID_POLL_MS 100
#define CONFIG_MAX_ID_POLL_MS 300000
#define CONFIG_DEFAULT_ID_TIMEOUT_MS 10000 /* one request to the issuer */
enum config_id_source {
	CONFIG_ID_SOURCE_ISSUED = 0, /* keys in memory, certificates from shoal-identity */
	CONFIG_ID_SOURCE_FILES,	     /* a directory of keys and certificates (store.h) */
};
struct config_identity {
	bool enabled;
	uint8_t source; /* enum config_id_source */
	char trust_domain[CONFIG_MAX_TRUST_DOMAIN + 1];
	char server_url[CONFIG_MAX_URL + 1]; /* https:// only */
	char token_file[PATH_MAX];
	char anchors_file[PATH_MAX]; /* source issued */
	char dir[PATH_MAX];	     /* source files: <ns>_<sa>.key/.crt, anchors.pem */
	uint32_t lifetime_s;	     /* asked of the issuer; it may grant less */
	double renew_fraction;	     /* of the granted life */
	double renew_jitter;	     /* +- this fraction of the renewal delay */
	uint32_t backoff_min_ms, backoff_max_ms;
	uint32_t drop_grace_ms;
	uint32_t poll_ms;
	uint32_t timeout_ms;
};

struct config {
	char path[PATH_MAX]; /* the file it came from */

	/* node: where the node proxy listens. */
	struct shoal_addr proxy_v4; /* zero: no IPv4 listener */
	struct shoal_addr proxy_v6; /* zero: no IPv6 listener */
	uint16_t proxy_port;        /* host order; default SHOAL_DEFAULT_PROXY_PORT */

	/* bpf: the datapath. */
	char pin_root[PATH_MAX]; /* default SHOAL_DEFAULT_PIN_ROOT */
	char cgroup[PATH_MAX];   /* attach point; relative to the cgroup2 mount
				  * unless it is under it already */
	bool shortcut;           /* sockmap shortcut on at start; default true */
	uint32_t socket_mark;    /* default SHOAL_DEFAULT_SOCKET_MARK */
	uint32_t failopen_after_ms;

	/* proxy: the L4 node proxy. */
	int workers;                  /* 0: one per online CPU */
	uint32_t connect_timeout_ms;  /* one connect attempt */
	uint32_t connect_deadline_ms; /* all attempts of one connection */
	uint32_t buffer_bytes;        /* per direction per connection */
	uint32_t max_connections;     /* per worker; beyond it, accept waits */
	uint32_t max_buffer_memory_mib; /* all workers' buffers together; 0: no budget */
	uint32_t max_connections_per_client; /* per client address, node-wide; 0: no cap */
	uint32_t detect_timeout_ms;   /* no client bytes by then: opaque TCP */
	uint16_t opaque_ports[CONFIG_MAX_OPAQUE_PORTS]; /* skip detection */
	int n_opaque_ports;
	uint32_t idle_timeout_ms;     /* 0: none */
	uint32_t drain_timeout_ms;    /* SIGTERM: time for requests in flight; 0: none */

	/* proxy.http: the HTTP/1 proxy. */
	uint32_t http_max_request_line; /* bytes without CRLF; beyond: 414 */
	uint32_t http_max_head_bytes;    /* request line + headers; beyond: 431 */
	uint32_t http_max_headers;       /* header lines; beyond: 431 */
	uint32_t http_pool_idle_timeout_ms;
	uint32_t http_pool_max_idle_per_endpoint; /* 0: no reuse */
	uint32_t http_request_body_timeout_ms;	  /* no body byte this long: 408; 0: none */
	uint32_t http_response_head_timeout_ms;	  /* no response head this long: 504; 0: none */
	uint32_t http_request_timeout_ms;	  /* routes and services without one; 0: none */
	uint32_t http_max_requests_per_connection; /* then connection: close; 0: no limit */
	uint32_t http_max_connection_age_ms;	  /* then close after the response; 0: none */
	/* Forwarding (docs/proxy.md, "What the proxy changes in a head"). */
	bool http_forwarded_for;   /* append the client to X-Forwarded-For; default true */
	bool http_forwarded_proto; /* set X-Forwarded-Proto: http; default true */
	bool http_request_id;	   /* add an x-request-id when there is none; default true */
	bool http_timeout_header;  /* honour the client's x-shoal-timeout-ms; default true */
	/* Protocols an Upgrade may ask for (lowercase tokens); default websocket. */
	char http_upgrades[CONFIG_MAX_HTTP_UPGRADES][CONFIG_MAX_HTTP_UPGRADE_NAME + 1];
	int n_http_upgrades;
	/* proxy.http2: the HTTP/2 kind (both its server and client sessions). */
	struct config_http2 {
		uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS we send */
		uint32_t max_header_list_bytes;	 /* a larger request head: RST_STREAM */
		uint32_t hpack_table_bytes;	 /* HPACK dynamic table, both ways */
		uint32_t stream_window_bytes;	 /* SETTINGS_INITIAL_WINDOW_SIZE we send */
		uint32_t session_window_bytes;	 /* the connection's receive window */
		uint32_t max_pending_acks;	 /* SETTINGS/PING flood: GOAWAY past it */
		uint32_t reset_burst;		 /* rapid reset: token bucket size */
		uint32_t reset_rate;		 /* and refill per second */
		uint32_t max_continuations;	 /* CONTINUATION flood */
		uint32_t max_sent_resets;	 /* MadeYouReset: bucket of our own resets */
		uint32_t stall_timeout_ms;	 /* zero window: close after this; 0: never */
		uint32_t grpc_head_hold_ms;	 /* a retryable gRPC head waits; 0: never */
	} http2;

	struct config_tracing tracing; /* tracing: */
	struct config_admin admin;     /* admin: */
	struct config_identity identity; /* identity: */
	/*
	 * policy: authorization (docs/policy.md), compiled and immutable,
	 * shared by reference between copies like the services. policy_file
	 * is the file's policy: section; policy is what is in force: the
	 * file's, merged in Kubernetes with the AuthorizationPolicy objects.
	 * NULL: none written, and every call is allowed.
	 */
	struct policy_set *policy_file;
	struct policy_set *policy;
	struct config_mtls mtls;       /* mtls: */
	/* Node addresses discovery learned from the pods (a reference), or
	 * NULL: none (a file config, or no pod reports one). */
	struct config_nodes *nodes_learned;

	/* kubernetes: the API source (docs/discovery.md); absent: the file only. */
	bool k8s_enabled;
	char k8s_api_server[CONFIG_MAX_K8S_URL]; /* "": in-cluster (KUBERNETES_SERVICE_HOST/PORT) */
	char k8s_ca_file[PATH_MAX];          /* "": the service account's ca.crt */
	char k8s_token_file[PATH_MAX];       /* "": the service account's token */
	char k8s_proxy_url[CONFIG_MAX_K8S_URL]; /* "": direct, whatever the environment says */
	uint32_t k8s_backoff_max_ms;         /* ceiling of the jittered back-off */
	bool k8s_policies; /* watch AuthorizationPolicy objects (docs/policy.md) */
	/* kubernetes.enrollment: pods meshed by label (docs/enrollment.md). */
	bool k8s_enroll;
	char k8s_enroll_node_name[CONFIG_MAX_NODE_NAME];   /* "": $NODE_NAME at start */
	char k8s_enroll_cgroup_root[PATH_MAX];		   /* where the cgroup scan starts */
	char k8s_enroll_cni_socket[CONFIG_MAX_CNI_SOCKET]; /* "": no CNI plugin */
	char k8s_enroll_netns_dir[PATH_MAX];		   /* "": no netns mount matching */
	uint32_t k8s_enroll_resync_ms;

	/*
	 * services[i]->id == i; no entry is NULL. Configs built by
	 * discovery may hold vacant ids (no VIP, no port, empty name) so
	 * that ids stay stable while services come and go; they match
	 * nothing. Each entry is a reference (config_service_get): configs
	 * share the services that did not change.
	 */
	struct config_service **services; /* heap, n_services pointers */
	int n_services;
};

/*
 * Parse the YAML file at path. On success returns 0 and a new config in
 * *out (free with config_free). On failure returns -errno (-EINVAL for a
 * bad file) and writes "path:line: field: problem" into err.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Same, from a string; name stands in for the path in messages. */
int config_parse(const char *name, const char *text, size_t len, struct config **out, char *err,
		 size_t errlen);

void config_free(struct config *cfg);

/*
 * True when id is "<namespace>/<service account>": a namespace is an RFC
 * 1123 label, a service account an RFC 1123 subdomain (lower-case
 * letters, digits, '-', and '.' between labels). Neither may hold '_'
 * (the file source's separator) or anything a SPIFFE ID path could not.
 */
bool config_identity_valid(const char *id);
/*
 * Where node name's shoald listens: its mtls.nodes entry, else the
 * address its pods report (cfg->nodes_learned), else NULL. The file
 * wins: it is the operator's word (a dedicated underlay address, say),
 * while a pod's status.hostIP is only the kubelet's primary address.
 */
const struct config_mtls_node *config_mtls_node(const struct config *cfg, const char *name);

/*
 * The mtls mode in force for calls to service ns/name (docs/mtls.md,
 * "Modes"): mtls.services' entry for it, else mtls.namespaces' for ns,
 * else mtls.mode; then annotated (a service's mtls_mode, 0 for none)
 * when that is stricter. Costs one test when the file sets no namespace
 * or service mode and nothing is annotated, else two binary searches.
 */
enum config_mtls_mode config_mtls_mode_for(const struct config_mtls *m, const char *ns,
					   const char *name, uint8_t annotated);

/* config_mtls_mode_for of service svc. */
static inline enum config_mtls_mode config_mtls_mode_of(const struct config_mtls *m,
							const struct config_service *svc)
{
	if (!m->n_namespaces && !m->n_services && !svc->mtls_mode)
		return m->mode;
	return config_mtls_mode_for(m, svc->namespace, svc->name, svc->mtls_mode);
}

/*
 * A copy of src with room for n_services >= src->n_services services:
 * src's services are shared (a reference each, nothing copied), the
 * extra ones are new vacant services (zeroed, id set). Returns 0 and
 * *out (free with config_free), -EINVAL for a bad n_services, or -ENOMEM.
 */
int config_copy(const struct config *src, int n_services, struct config **out);

/* A new vacant service (zeroed, id and a new serial set) with one reference, or NULL. */
struct config_service *config_service_new(uint32_t id);
/* A serial no service had (for a writer that fills a service itself). */
uint64_t config_service_serial(void);
/* A copy of src (its endpoints, routes, strings copied too) with one
 * reference, a new serial and the metrics ids kept, or NULL when memory
 * is short. */
struct config_service *config_service_dup(const struct config_service *src);
/* Take a reference to s (any thread; the caller already holds one). */
void config_service_get(const struct config_service *s);
/* Drop a reference; the last one frees s and what it owns. NULL is fine. */
void config_service_put(const struct config_service *s);
/*
 * cfg->services[i], made cfg's own so that the caller may change it: a
 * copy replaces it when anyone else holds a reference, and a service
 * only cfg holds gets a new serial. Only for a config that is not
 * published yet. Returns the service or NULL (memory short; cfg
 * unchanged).
 */
struct config_service *config_service_mut(struct config *cfg, int i);
/* Make cfg->services[i] s, taking over the caller's reference (the old
 * entry's is dropped). Same rule as config_service_mut. */
void config_service_set(struct config *cfg, int i, struct config_service *s);

/* The service owning (vip, port_be), or NULL; *port_out gets its port. */
const struct config_service *config_find_service(const struct config *cfg,
						 const struct shoal_addr *vip, uint16_t port_be,
						 const struct config_port **port_out);

#endif

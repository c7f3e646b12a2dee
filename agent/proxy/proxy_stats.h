/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The proxy's counters and the caps that refuse a client, types only
 * (part of proxy.h, which includes it): the workers below proxy.c count
 * into them, and proxy_stats (proxy.h) sums them for any reader.
 */
#ifndef SHOAL_PROXY_STATS_H
#define SHOAL_PROXY_STATS_H

#include <stdint.h>

/*
 * The proxy's counters, declared once: X(name, kind, help), kind being
 * counter (only grows) or gauge. Exporters render them from this table.
 */
#define PROXY_STATS(X)                                                                             \
	X(accepted, counter, "Connections accepted on the proxy listeners.")                       \
	X(no_orig_dst, counter, "Accepted connections the datapath did not redirect; closed.")     \
	X(no_service, counter, "Redirected connections matching no service; reset.")               \
	X(connect_failures, counter,                                                               \
	  "Endpoint connect attempts that were refused, failed or timed out.")                     \
	X(gave_up, counter, "Connections reset because no endpoint could be reached in time.")     \
	X(local_refused, counter,                                                                  \
	  "Connections refused (HTTP 503 proxy-resources, TCP reset) because the proxy itself "    \
	  "was out of fds, memory or local ports when connecting upstream; no endpoint blamed.")   \
	X(active, gauge, "Connections open now (connecting or copying).")                          \
	X(buffers, gauge,                                                                          \
	  "Connection buffers (proxy.buffer_bytes each) held now: a connection holds one per "     \
	  "direction only while bytes wait in it, so idle connections hold none.")                 \
	X(header_slots, gauge,                                                                     \
	  "HTTP header slot arrays (2 x proxy.http.max_headers) held now: one per connection "     \
	  "with a request head being parsed or in flight; idle keep-alive connections hold none.") \
	X(detect_http, counter, "Connections on undeclared ports detected as HTTP/1.")             \
	X(detect_opaque, counter,                                                                  \
	  "Connections on undeclared ports carried as opaque TCP (not HTTP/1, or silent).")        \
	X(detect_h2, counter,                                                                      \
	  "Connections on undeclared ports detected as HTTP/2 (the client connection preface).")   \
	X(h2_sessions_opened, counter,                                                             \
	  "Pooled HTTP/2 client sessions the proxy opened to endpoints (many streams each).")      \
	X(h2_refused, counter,                                                                     \
	  "HTTP/2 streams endpoints refused unprocessed (RST_STREAM REFUSED_STREAM, or above a "   \
	  "GOAWAY's last-stream-id), retried elsewhere where the budget allowed.")                 \
	X(h2_protocol_errors, counter,                                                             \
	  "HTTP/2 client connections closed with a GOAWAY for a protocol error or a flood "        \
	  "(rapid reset, CONTINUATION, SETTINGS or PING floods, proxy.http2 limits).")             \
	X(h2_resets_sent, counter,                                                                 \
	  "RST_STREAM frames the proxy sent to HTTP/2 clients; past proxy.http2.max_sent_resets "  \
	  "(MadeYouReset) the connection ends with a GOAWAY.")                                     \
	X(h2_stalled, counter,                                                                     \
	  "HTTP/2 client streams reset because their response bytes waited on the client's "       \
	  "window for proxy.http2.stall_timeout_ms with none sent.")                               \
	X(h2_to_h1_requests, counter,                                                              \
	  "HTTP/2 requests translated to HTTP/1.1 for endpoints declared HTTP/1.1 only "           \
	  "(upstream_protocol: http1).")                                                           \
	X(http_requests, counter, "HTTP requests parsed and dispatched to a backend service.")     \
	X(http_errors, counter, "HTTP error responses the proxy answered itself (x-shoal-error).") \
	X(http_retries, counter,                                                                   \
	  "HTTP requests sent again: retries the policy and budget allowed, and resends "          \
	  "after a reused upstream connection turned out closed.")                                 \
	X(http_replay_no_slab, counter,                                                            \
	  "Retry-eligible HTTP requests with a body too large for the connection buffer that "     \
	  "were not retryable: every replay slab of the worker was in use.")                       \
	X(http_upgrades, counter, "HTTP connections turned into tunnels (101 or CONNECT).")        \
	X(pool_reused, counter, "HTTP requests sent on an idle pooled upstream connection.")       \
	X(upstream_tunnel_retired, counter,                                                            \
	  "Pooled upstreams through the tunnel given no new request (an idle HTTP/1 connection "  \
	  "closed, an HTTP/2 session drained): a TLS connection of their worker was retired "    \
	  "since they opened (a renewed certificate).")              \
	X(mtls_tunneled, counter,                                                                  \
	  "Upstream connections to another node's endpoint sent through the encrypted hop.")       \
	X(policy_allowed, counter,                                                                 \
	  "Calls (connections, or HTTP requests where the policy looks at requests) the "          \
	  "authorization policy allowed.")                                                         \
	X(policy_denied, counter,                                                                  \
	  "Calls the authorization policy denied: HTTP 403 (x-shoal-policy names the rule), "      \
	  "gRPC PERMISSION_DENIED, or a TCP reset.")                                               \
	X(mtls_refused, counter,                                                                   \
	  "Upstream connections to another node refused in mtls strict mode: no identity there, "  \
	  "no node address, or the caller's identity unknown (docs/mtls.md).")                     \
	X(buffer_memory_bytes, gauge,                                                              \
	  "Bytes of connection buffers, header slots, HTTP states, replay slabs and HTTP/2 "       \
	  "sessions and streams allocated now (held or cached for reuse), counted against "        \
	  "proxy.max_buffer_memory_mib.")

/*
 * The caps that refuse a client (docs/proxy.md, "Budgets"), declared
 * once: X(id, knob). Each is a value of the cap label of
 * shoal_proxy_refused_total, so the label's values are bounded by this
 * table.
 */
#define PROXY_CAPS(X)                                                                              \
	X(memory, "proxy.max_buffer_memory_mib")                                                   \
	X(client, "proxy.max_connections_per_client")                                              \
	X(connections, "proxy.max_connections")

enum proxy_cap {
#define PROXY_CAP_ENUM(id, knob) PROXY_CAP_##id,
	PROXY_CAPS(PROXY_CAP_ENUM)
#undef PROXY_CAP_ENUM
	    PROXY_CAP__COUNT
};

/* The cap's label value ("memory") and its knob ("proxy.max_buffer_memory_bytes"). */
const char *proxy_cap_name(enum proxy_cap cap);
const char *proxy_cap_knob(enum proxy_cap cap);

struct proxy_stats {
#define PROXY_STATS_FIELD(name, kind, help) uint64_t name;
	PROXY_STATS(PROXY_STATS_FIELD)
#undef PROXY_STATS_FIELD
	uint64_t refused[PROXY_CAP__COUNT]; /* clients refused at each cap (counters) */
};

#endif

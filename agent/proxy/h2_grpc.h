/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The gRPC rules the HTTP/2 kind applies (docs/proxy.md, "HTTP/2 and
 * gRPC"): which requests are gRPC, what a grpc-timeout says, and which
 * grpc-status codes count against an endpoint. Pure functions, no I/O.
 */
#ifndef SHOAL_PROXY_H2_GRPC_H
#define SHOAL_PROXY_H2_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes the proxy itself sends (grpc/doc/statuscodes.md). */
#define GRPC_STATUS_OK 0
#define GRPC_STATUS_UNKNOWN 2
#define GRPC_STATUS_DEADLINE_EXCEEDED 4
#define GRPC_STATUS_PERMISSION_DENIED 7 /* a policy denial (docs/policy.md) */
#define GRPC_STATUS_UNIMPLEMENTED 12
#define GRPC_STATUS_INTERNAL 13
#define GRPC_STATUS_UNAVAILABLE 14
#define GRPC_STATUS_UNAUTHENTICATED 16
/* No grpc-status seen (not gRPC, or the stream ended without one). */
#define GRPC_STATUS_NONE (-1)

/* A content-type of application/grpc, alone or with a "+proto"-like or ";" suffix. */
bool grpc_is_content_type(const char *v, size_t len);

/*
 * The grpc-timeout value v (len bytes: 1 to 8 digits, then one of H M S m
 * u n) in ns, saturating; -EINVAL when it is not one. PROTOCOL-HTTP2.md.
 */
int grpc_timeout_parse(const char *v, size_t len, uint64_t *ns);

/* The grpc-status value (decimal, 0..99) or GRPC_STATUS_NONE when malformed. */
int grpc_status_parse(const char *v, size_t len);

/*
 * The code a gRPC client reads from a final response head whose :status
 * is status and that has no grpc-status (grpc's "HTTP to gRPC Status Code
 * Mapping"): what an intermediary (an ingress, an overloaded server, an
 * HTTP/1.1 hop) answers a call with. 400 INTERNAL, 401 UNAUTHENTICATED,
 * 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429 502 503 504 UNAVAILABLE,
 * any other UNKNOWN. GRPC_STATUS_NONE for 200 (the trailers will say) and
 * for what is no final status (below 200). Only for a response without
 * grpc-status: one that has it is read by it.
 */
int grpc_status_from_http(int status);

/*
 * The code of a call whose response carried grpc_status (GRPC_STATUS_NONE:
 * none) under a head of :status http_status: grpc-status first, as gRPC
 * clients read it, else grpc_status_from_http.
 */
static inline int grpc_status_or_http(int grpc_status, int http_status)
{
	return grpc_status != GRPC_STATUS_NONE ? grpc_status : grpc_status_from_http(http_status);
}

/*
 * Does grpc-status code say the endpoint failed, for the balancer and the
 * breaker? UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL,
 * UNAVAILABLE and DATA_LOSS do: they come from a server in trouble. The
 * others (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, ...) are the
 * caller's answer, and a healthy endpoint gives them.
 */
bool grpc_status_is_failure(int code);

#endif

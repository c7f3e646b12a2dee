/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The responses the proxy itself gives an HTTP client when it cannot
 * forward a request: a proper status, a short text body, and a header
 * `x-shoal-error: <stage>` that says where it failed, so that a user can
 * tell a proxy 503 from an application's 503.
 */
#ifndef SHOAL_PROXY_HTTP_ERROR_H
#define SHOAL_PROXY_HTTP_ERROR_H

#include <stddef.h>

/*
 * X(id, status, stage, body): every error the proxy answers, declared
 * once; docs/proxy.md lists the same table.
 */
#define HTTP_ERRORS(X)                                                                             \
	X(NO_ENDPOINTS, 503, "no-endpoints", "no endpoints for this service")                      \
	X(SERVICE_GONE, 503, "service-gone",                                                       \
	  "the service of this connection no longer exists; reconnect")                            \
	X(CONNECT_FAILURE, 503, "connect-failure", "no endpoint accepted a connection")            \
	X(NO_CANDIDATE, 503, "no-candidate", "every endpoint is ejected")                          \
	X(LOCAL_RESOURCES, 503, "proxy-resources", "the proxy is out of sockets or memory")        \
	X(UPSTREAM_RESET, 502, "upstream-reset", "the endpoint closed the connection early")       \
	X(BAD_RESPONSE, 502, "bad-response", "the endpoint sent a malformed response")             \
	X(GRPC_OVER_HTTP1, 503, "grpc-over-http1",                                                 \
	  "gRPC needs HTTP/2; the endpoints are declared HTTP/1.1 only")                           \
	X(TIMEOUT, 504, "timeout", "the endpoint did not answer in time")                          \
	X(REQUEST_TIMEOUT, 408, "request-timeout", "the request head did not arrive in time")      \
	X(BODY_TIMEOUT, 408, "body-timeout", "the request body stopped arriving")                 \
	X(BAD_REQUEST, 400, "bad-request", "malformed request")                                    \
	X(POLICY_DENIED, 403, "policy-denied",                                                     \
	  "denied by authorization policy (x-shoal-policy names the rule)")                        \
	X(URI_TOO_LONG, 414, "uri-too-long", "request line too long")                              \
	X(HEAD_TOO_LARGE, 431, "head-too-large", "request head too large")                         \
	X(NOT_IMPLEMENTED, 501, "not-implemented", "unsupported transfer coding")                  \
	X(BAD_VERSION, 505, "bad-version", "HTTP version not supported")                          \
	X(LIMIT_MEMORY, 503, "limit-memory",                                                       \
	  "proxy buffer memory budget reached (proxy.max_buffer_memory_mib)")                      \
	X(LIMIT_CLIENT, 503, "limit-client",                                                       \
	  "too many connections from this client (proxy.max_connections_per_client)")              \
	X(LIMIT_CONNECTIONS, 503, "limit-connections",                                             \
	  "proxy connection cap reached (proxy.max_connections)")

enum http_error {
#define HTTP_ERROR_ENUM(id, status, stage, body) HTTP_ERR_##id,
	HTTP_ERRORS(HTTP_ERROR_ENUM)
#undef HTTP_ERROR_ENUM
	    HTTP_ERR__COUNT
};

/*
 * http_error_format with one more header field, name: value (both NULL:
 * none), such as the x-shoal-policy of a denial. 0 when it does not fit.
 */
size_t http_error_format_with(enum http_error err, const char *name, const char *value, char *buf,
			      size_t cap);

/* The status code and stage name of err. */
int http_error_status(enum http_error err);
const char *http_error_stage(enum http_error err);

/* The error for a negative http1_parse_head/http1_chunked_feed result. */
enum http_error http_error_from_parse(int result);

/*
 * Write the complete response for err into buf (cap bytes): status line,
 * content-type, content-length, x-shoal-error, and "connection: close"
 * (the proxy closes the client connection after every error it
 * answers). Returns its length, or 0 when cap is too small;
 * HTTP_ERROR_MAX_BYTES always suffices.
 */
size_t http_error_format(enum http_error err, char *buf, size_t cap);

/* Bound on a formatted error response; the table's texts are short. */
#define HTTP_ERROR_MAX_BYTES 320

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Whether a failed try of an HTTP request may be retried. One decision
 * function over the facts the proxy knows about the try, so every retry
 * path asks the same questions in the same order, the budget last (it is
 * the only check with a side effect). Docs: docs/resilience.md.
 */
#ifndef SHOAL_RESILIENCE_RETRY_POLICY_H
#define SHOAL_RESILIENCE_RETRY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resilience/retry_budget.h"

/* Only 503 by default: the status that means "not now, try elsewhere". */
#define RETRY_DEFAULT_STATUS 503
/* Statuses one route may list: config.h's CONFIG_MAX_RETRY_STATUSES. */
#define RETRY_MAX_STATUSES 16
/*
 * A request body is held for replay up to 64 KiB: most API bodies fit,
 * and a worker with thousands of requests in flight cannot hold more.
 */
#define RETRY_DEFAULT_MAX_BODY_BYTES (64 * 1024)
/*
 * Retries of one request. Budget and deadline bound them already; this
 * stops one request from spending the whole budget on itself.
 */
#define RETRY_DEFAULT_MAX_RETRIES 2

/*
 * gRPC status codes are 0 (OK) .. 16 (UNAUTHENTICATED); a retried set is a
 * mask of them (bit n: code n). By default only UNAVAILABLE (14): the
 * code gRPC itself defines as "transient, safe to retry" for a call the
 * service did not act on; the others may have had effects.
 */
#define RETRY_GRPC_MAX_CODE 16
#define RETRY_GRPC_DEFAULT_MASK (1u << 14)

/* Knobs, per service, overridable per route. Fill with retry_policy_cfg_default(). */
struct retry_policy_cfg {
	uint16_t statuses[RETRY_MAX_STATUSES]; /* response statuses that are retried */
	uint8_t n_statuses;
	uint32_t grpc_statuses;	 /* gRPC codes retried (a mask, RETRY_GRPC_MAX_CODE) */
	bool route_retryable;	 /* retry any method: the route says it is idempotent */
	bool connect_any_method; /* a connect failure is retried whatever the method */
	uint32_t max_body_bytes; /* larger bodies are not buffered, so not retried */
	uint32_t max_retries;	 /* per request, on top of the first try */
};

/* How a try failed. */
enum retry_failure {
	RETRY_FAIL_CONNECT,	/* no connection: not a byte of the request was sent */
	RETRY_FAIL_RESET_EARLY, /* reset or closed before the response headers */
	RETRY_FAIL_STATUS,	/* a complete response head with status `status` */
	RETRY_FAIL_RESET_LATE,	/* reset after the response headers */
	RETRY_FAIL_TIMEOUT,	/* the per-try timeout passed without response headers */
	/*
	 * HTTP/2: the endpoint refused the stream before processing it
	 * (RST_STREAM REFUSED_STREAM, or a stream above a GOAWAY's
	 * last-stream-id; RFC 9113 8.7 guarantees nothing was processed).
	 */
	RETRY_FAIL_REFUSED,
	RETRY_FAIL_GRPC_STATUS, /* a gRPC trailers-only answer, grpc-status `status` */
};

/* What the proxy knows about one failed try. */
struct retry_try {
	const char *method; /* the request method, as sent (case-sensitive) */
	size_t method_len;
	enum retry_failure failure;
	uint16_t status;     /* RETRY_FAIL_STATUS: the response's status; _GRPC_STATUS: the code */
	bool has_body;	     /* Content-Length > 0, or chunked */
	bool body_buffered;  /* has_body: the whole body is held for replay */
	uint64_t body_bytes; /* has_body: its length */
	bool response_started; /* a byte of any response reached the client */
	uint32_t retries_done; /* retries of this request so far */
	uint64_t deadline_ns;  /* the request's deadline (DEADLINE_NONE: none) */
};

/* The answer, and when it is no, the first reason found (for debug logs). */
enum retry_verdict {
	RETRY_YES,
	RETRY_NO_METHOD,   /* not idempotent, and the route is not marked retryable */
	RETRY_NO_FAILURE,  /* this failure or status is not retried */
	RETRY_NO_BODY,	   /* the body was not buffered, or is too large */
	RETRY_NO_STARTED,  /* the client already has part of a response */
	RETRY_NO_ATTEMPTS, /* max_retries reached */
	RETRY_NO_DEADLINE, /* the request's deadline has passed */
	RETRY_NO_BUDGET,   /* the service's retry budget is spent */
};

/*
 * The defaults above: status 503, gRPC UNAVAILABLE, 64 KiB, 2 retries,
 * connect failures for any method.
 */
void retry_policy_cfg_default(struct retry_policy_cfg *cfg);

/*
 * 0, or -EINVAL when n_statuses is above RETRY_MAX_STATUSES, a status
 * is not 400..599 (the config parser's limits: a 1xx-3xx is not a failure),
 * or grpc_statuses names OK or a code above RETRY_GRPC_MAX_CODE.
 */
int retry_policy_cfg_check(const struct retry_policy_cfg *cfg);

/*
 * RFC 9110 section 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. Methods
 * are case-sensitive, so "get" is not GET (and not idempotent).
 */
bool retry_method_idempotent(const char *method, size_t len);

/* Is status one of cfg's retried statuses? */
bool retry_status_listed(const struct retry_policy_cfg *cfg, uint16_t status);

/* Is gRPC status code one of cfg's retried codes? (Out of 0..16: no.) */
bool retry_grpc_status_listed(const struct retry_policy_cfg *cfg, int code);

/*
 * May try t be retried at now_ns? RETRY_YES only when all hold:
 *  - the method is idempotent, or the route is marked retryable, or the
 *    try failed to connect and cfg->connect_any_method (nothing was sent),
 *    or the endpoint refused it unprocessed (RETRY_FAIL_REFUSED);
 *  - it failed to connect, was refused or reset (or timed out) before the
 *    response headers, or answered a listed status or gRPC code;
 *  - without a body, or with one wholly buffered within max_body_bytes;
 *  - no response byte has reached the client;
 *  - fewer than max_retries retries were made;
 *  - the deadline has not passed;
 *  - and last, budget (NULL: no budget) allows a withdrawal, which this
 *    call then makes. Only a RETRY_YES withdraws.
 * RETRY_FAIL_TIMEOUT is retried as an early reset: the request may have
 * been processed, so the method check is what keeps that safe.
 */
enum retry_verdict retry_decide(const struct retry_policy_cfg *cfg, const struct retry_try *t,
				struct retry_budget *budget, uint64_t now_ns);

/* "yes", "method", "failure", ...: the verdict for logs. */
const char *retry_verdict_name(enum retry_verdict v);

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Deadlines: absolute times on the caller's monotonic clock. Pure
 * functions of their arguments, so tests are exact. Docs:
 * docs/resilience.md.
 */
#ifndef SHOAL_RESILIENCE_DEADLINE_H
#define SHOAL_RESILIENCE_DEADLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEADLINE_NS_PER_MS 1000000ull

/* A deadline that never passes. */
#define DEADLINE_NONE UINT64_MAX

/* now_ns + timeout_ns; DEADLINE_NONE for timeout_ns 0 (no timeout). */
uint64_t deadline_after(uint64_t now_ns, uint64_t timeout_ns);

/* The earlier of two deadlines, e.g. the route's and the client's header. */
uint64_t deadline_min(uint64_t a_ns, uint64_t b_ns);

/* True once now_ns has reached the deadline. */
bool deadline_expired(uint64_t deadline_ns, uint64_t now_ns);

/* ns left until the deadline: 0 once expired, UINT64_MAX for none. */
uint64_t deadline_remaining(uint64_t deadline_ns, uint64_t now_ns);

/*
 * The deadline of one try: the per-try timeout from now, but never past
 * the request's deadline. per_try_ns 0 means no per-try timeout.
 */
uint64_t deadline_try(uint64_t request_deadline_ns, uint64_t per_try_ns, uint64_t now_ns);

/*
 * The client's own timeout header (DEADLINE_HEADER): a decimal count of
 * milliseconds, 1 to DEADLINE_HEADER_MAX_MS, optional surrounding spaces
 * or tabs. Stores the timeout in ns in *timeout_ns and returns 0, or
 * returns -EINVAL for anything else (the header is then ignored, not an
 * error to the client). The caller applies it with deadline_min(), so a
 * client can shorten its deadline but never lengthen it.
 */
int deadline_parse_header(const char *val, size_t len, uint64_t *timeout_ns);

/* The request header a client sets to shorten its own deadline. */
#define DEADLINE_HEADER "x-shoal-timeout-ms"
/* A day: longer is surely a mistake, and ms * 1e6 stays far from overflow. */
#define DEADLINE_HEADER_MAX_MS (24 * 3600 * 1000ull)

#endif

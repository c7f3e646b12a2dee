/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Distributed tracing for proxied HTTP requests (docs/tracing.md).
 *
 * Three parts, all usable from a proxy worker without allocating or
 * taking a lock another worker could hold:
 *
 *  - Context: read the incoming W3C traceparent/tracestate or B3 headers
 *    through a callback (trace_extract), decide sampling and make the
 *    child context (trace_start), and write the outgoing header lines
 *    into the caller's buffer (trace_inject).
 *  - Spans: one struct trace_span per proxied request, filled by the
 *    caller, finished and copied into the worker's fixed-size ring
 *    (trace_record). A full ring drops the span and counts it.
 *  - Draining: one consumer (the OTLP exporter, otlp.h) takes spans out
 *    of every ring (trace_worker_drain) and reports what it exported or
 *    dropped (trace_count), so trace_stats() has every counter.
 *
 * Threading: a struct trace_worker belongs to one proxy worker thread
 * (producer) and to the exporter thread (consumer): a single-producer,
 * single-consumer ring. Everything else is read-only after tracer_create.
 */
#ifndef SHOAL_RECORDING_TRACE_H
#define SHOAL_RECORDING_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Id sizes fixed by W3C Trace Context (trace-id 16 bytes, parent-id 8). */
#define TRACE_ID_SIZE 16
#define TRACE_SPAN_ID_SIZE 8

/* "00-" 32 hex "-" 16 hex "-" 2 hex: the version-00 traceparent length. */
#define TRACE_TRACEPARENT_LEN 55

/*
 * tracestate limits from W3C Trace Context: at most 32 list members, and
 * a vendor should propagate at least 512 characters; we carry exactly
 * that much, dropping members over TRACE_TRACESTATE_BIG_MEMBER first
 * when the combined value is longer (the spec's truncation order).
 */
#define TRACE_TRACESTATE_MAX 512
#define TRACE_TRACESTATE_MAX_MEMBERS 32
#define TRACE_TRACESTATE_BIG_MEMBER 128

/*
 * Room trace_inject needs at most: traceparent (70 bytes with name and
 * CRLF), tracestate (526) and the four B3 lines (133), rounded up.
 */
#define TRACE_INJECT_MAX 768

/*
 * Span string fields, including the terminating NUL. Longer values are
 * truncated, never refused: a span is a diagnostic, not a contract.
 */
#define TRACE_SERVICE_MAX 128 /* "namespace/name", 63 + 1 + 63 (config limits) */
#define TRACE_ROUTE_MAX 64    /* route name, 63 (config limit) */
#define TRACE_ENDPOINT_MAX 56 /* "[v6 address]:port": 45 + 2 + 6 */
#define TRACE_METHOD_MAX 33   /* CONFIG_MAX_METHOD; registered methods are <= 17 */
#define TRACE_NAME_MAX 104    /* method, space, route: the default span name */
/*
 * A workload identity, "namespace/serviceaccount" as the proxy knows it
 * (conn.src_ident, config_endpoint.identity): 63 + 1 + 63. A service
 * account name may be longer (a DNS subdomain, 253); such a name is cut,
 * which a reader sees as an identity that matches no certificate.
 */
#define TRACE_IDENTITY_MAX 128

/* The ring's default size and bounds are the config's (CONFIG_DEFAULT_TRACE_RING,
 * CONFIG_MIN_TRACE_RING, CONFIG_MAX_TRACE_RING in config/config.h). */

/* Where an incoming context came from; the outgoing one speaks the same B3
 * dialect as well as W3C, so B3-only applications keep their traces. */
enum trace_format {
	TRACE_FMT_NONE = 0, /* no valid context: a new trace */
	TRACE_FMT_W3C,
	TRACE_FMT_B3_SINGLE, /* "b3: {trace}-{span}[-{sampled}[-{parent}]]" */
	TRACE_FMT_B3_MULTI,  /* X-B3-TraceId, X-B3-SpanId, ... */
};

enum trace_sampling {
	TRACE_SAMPLE_DEFER = 0, /* no decision came in: apply the rate */
	TRACE_SAMPLE_NO,
	TRACE_SAMPLE_YES,
};

/*
 * A trace context: incoming (trace_extract) or outgoing (trace_start).
 * 550 bytes, meant for the stack: the proxy needs it only between
 * reading the request head and writing it upstream.
 */
struct trace_ctx {
	uint8_t trace_id[TRACE_ID_SIZE];
	uint8_t span_id[TRACE_SPAN_ID_SIZE];   /* incoming: the caller's span */
	uint8_t parent_id[TRACE_SPAN_ID_SIZE]; /* outgoing: the incoming span id, or 0 */
	uint8_t format;			       /* enum trace_format */
	uint8_t sampling;		       /* enum trace_sampling */
	bool has_ids;		 /* trace_id/span_id valid (else only a B3 sampling decision) */
	bool b3_64bit;		 /* B3 trace id came as 16 hex digits */
	uint16_t tracestate_len; /* W3C only; validated, <= TRACE_TRACESTATE_MAX */
	char tracestate[TRACE_TRACESTATE_MAX];
};

/*
 * Header access. Find the @nth (0-based) header line whose name equals
 * @name case-insensitively (@name is given in lowercase), and return true
 * with *@val and *@len its value, surrounding whitespace trimmed. Return false
 * when there are fewer lines of that name. @val need not be NUL-terminated.
 * Called only from inside trace_extract.
 */
typedef bool (*trace_header_fn)(void *arg, const char *name, unsigned int nth, const char **val,
				size_t *len);

/*
 * Read the incoming context into @in. Precedence: a valid traceparent
 * (W3C; then tracestate too), else b3, else X-B3-*. A traceparent sent
 * twice is invalid (the W3C test suite restarts the trace). Never fails:
 * without a usable context @in->format is TRACE_FMT_NONE, possibly still
 * carrying a B3 sampling decision. Allocates nothing.
 */
void trace_extract(trace_header_fn get, void *arg, struct trace_ctx *in);

/*
 * The parsers trace_extract is made of, exposed for tests and tools.
 * Each returns 0 with @c filled, or -EINVAL (@c then unspecified).
 * trace_parse_tracestate combines @n header values.
 */
int trace_parse_traceparent(const char *s, size_t len, struct trace_ctx *c);
int trace_parse_tracestate(const char *const *vals, const size_t *lens, unsigned int n,
			   struct trace_ctx *c);
int trace_parse_b3(const char *s, size_t len, struct trace_ctx *c);

/*
 * Write the outgoing header lines for @out ("Name: value\r\n" each) into
 * @buf: traceparent, tracestate when there is one, and the B3 header(s)
 * when the incoming context was B3. Returns the bytes written (no NUL),
 * or -ENOSPC with nothing usable in @buf. TRACE_INJECT_MAX always fits.
 */
int trace_inject(const struct trace_ctx *out, char *buf, size_t cap);

/* Whether a request header is one trace_inject replaces: the proxy drops
 * these from the forwarded request (W3C and B3 names, any case). */
bool trace_is_propagation_header(const char *name, size_t len);

/* OTLP SpanKind values, as tracing.span_kind names them. */
enum trace_span_kind {
	TRACE_KIND_SERVER = CONFIG_SPAN_KIND_SERVER,
	TRACE_KIND_CLIENT = CONFIG_SPAN_KIND_CLIENT,
};

/*
 * One proxied request. trace_start fills the ids, kind and start time;
 * the caller sets the rest (trace_span_set for strings) as the request
 * goes on. 712 bytes (_Static_assert in trace.c); copied by value into a
 * ring slot, so a ring of CONFIG_DEFAULT_TRACE_RING is 712 KiB a worker.
 *
 * The identities are kept as "namespace/serviceaccount" and become SPIFFE
 * IDs at export, where the trust domain is the exporter's (otlp.h): it is
 * one for the whole mesh and read at start (identity.trust_domain), so
 * copying it into every span would cost each ring slot up to 253 bytes
 * twice and the request path a format, to say the same thing each time.
 */
struct trace_span {
	uint8_t trace_id[TRACE_ID_SIZE];
	uint8_t span_id[TRACE_SPAN_ID_SIZE];
	uint8_t parent_id[TRACE_SPAN_ID_SIZE]; /* all zero: a root span */
	uint64_t start_ns;		       /* unix time */
	uint64_t end_ns;		       /* unix time; 0 until trace_record */
	uint64_t start_mono_ns;		       /* for the duration, immune to clock steps */
	bool sampled;			       /* false: trace_record ignores it */
	bool error;			       /* failed: no response, 5xx or a proxy error */
	uint8_t kind;			       /* enum trace_span_kind */
	uint16_t status_code;		       /* HTTP status sent downstream; 0 = none */
	uint16_t retries;		       /* attempts after the first */
	bool grpc;			       /* a gRPC call (HTTP/2, application/grpc) */
	uint8_t grpc_status;		       /* with grpc: the code, or TRACE_GRPC_NONE */
	bool mtls;			       /* the last try went through the mTLS tunnel */
	char name[TRACE_NAME_MAX];	       /* "" = "{method} {route}" at export */
	char service[TRACE_SERVICE_MAX];       /* "namespace/name" */
	char route[TRACE_ROUTE_MAX];
	char endpoint[TRACE_ENDPOINT_MAX]; /* "10.0.0.5:8080" of the last attempt */
	char method[TRACE_METHOD_MAX];
	/* The caller's identity (conn.src_ident); "" = unknown (mtls off, no pod entry). */
	char source_identity[TRACE_IDENTITY_MAX];
	/* With mtls: the identity the endpoint proved to the tunnel; else "". */
	char destination_identity[TRACE_IDENTITY_MAX];
};

/* grpc_status of a gRPC call that got no grpc-status (reset, or none sent). */
#define TRACE_GRPC_NONE 255

/* Copy @len bytes of @src into a span string field, truncated, NUL-terminated. */
#define trace_span_set(span, field, src, len)                                                      \
	trace_copy_str((span)->field, sizeof((span)->field), (src), (len))
void trace_copy_str(char *dst, size_t size, const char *src, size_t len);

/*
 * Random source for ids and sampling: a uniformly random 64-bit value.
 * Called from worker @worker's thread only (a per-worker state in @arg
 * needs no lock). Without one, each worker runs its own xoshiro256**
 * seeded from getrandom(2) (or from trace_config.seed).
 */
typedef uint64_t (*trace_rand_fn)(void *arg, unsigned int worker);

struct trace_config {
	double sample_rate; /* new traces sampled, 0.0 - 1.0 */
	uint32_t ring_size; /* spans per worker; power of two; 0 = CONFIG_DEFAULT_TRACE_RING */
	uint8_t kind;	    /* enum trace_span_kind; 0 = TRACE_KIND_CLIENT */
	uint64_t seed;	    /* for the built-in generator; 0 = getrandom(2) */
	trace_rand_fn rand; /* NULL = built-in */
	void *rand_arg;
};

/*
 * Counters, declared once: (field, metric kind, help). All are totals
 * since tracer_create except "queued". The dropped_* fields are the
 * drops by reason; nothing else loses a sampled span.
 */
#define TRACE_STATS(X)                                                                             \
	X(started, counter, "Requests traced: a context was made (sampled or not).")               \
	X(sampled, counter, "Requests whose span is sampled (recorded for export).")               \
	X(recorded, counter, "Sampled spans written into a worker's ring.")                        \
	X(exported, counter, "Spans the collector accepted (2xx).")                                \
	X(dropped_ring_full, counter,                                                              \
	  "Spans dropped on the request path: the worker's ring was full (exporter behind).")      \
	X(dropped_unreachable, counter,                                                            \
	  "Spans dropped: the collector could not be reached or timed out (or is in backoff).")    \
	X(dropped_rejected, counter,                                                               \
	  "Spans dropped: the collector answered with a non-2xx status.")                          \
	X(export_requests, counter, "OTLP export POSTs attempted.")                                \
	X(export_failures, counter, "OTLP export POSTs that failed (unreachable or non-2xx).")     \
	X(queued, gauge,                                                                           \
	  "Spans in the rings and the exporter's batch, not yet exported or dropped.")

struct trace_stats {
#define TRACE_STATS_FIELD(field, kind, help) uint64_t field;
	TRACE_STATS(TRACE_STATS_FIELD)
#undef TRACE_STATS_FIELD
};

/* The exporter's counters, for trace_count. */
enum trace_export_stat {
	TRACE_STAT_EXPORTED,
	TRACE_STAT_DROPPED_UNREACHABLE,
	TRACE_STAT_DROPPED_REJECTED,
	TRACE_STAT_EXPORT_REQUESTS,
	TRACE_STAT_EXPORT_FAILURES,
	TRACE_STAT_COUNT,
};

struct tracer;
struct trace_worker;

/*
 * Make a tracer with @n_workers rings. Validates @cfg (rate within
 * [0, 1], ring size a power of two within bounds). Returns 0, or -EINVAL
 * / -ENOMEM with a message in @err. This is the only allocation.
 */
int tracer_create(const struct trace_config *cfg, unsigned int n_workers, struct tracer **out,
		  char *err, size_t errlen);

/* Free it. Producers and the exporter must have stopped. NULL is fine. */
void tracer_destroy(struct tracer *t);

unsigned int tracer_workers(const struct tracer *t);

/* Spans each worker's ring holds. */
uint32_t tracer_ring_size(const struct tracer *t);

/* Worker @i's handle (i < tracer_workers), for that worker's thread. */
struct trace_worker *tracer_worker(struct tracer *t, unsigned int i);

/*
 * Begin the span of one request on worker @w. From @in (trace_extract's
 * result, or NULL for none) make the child context @out: the same trace
 * id (a fresh one when none came in), a new span id, parent = the
 * incoming span id, and the sampling decision: the parent's when it made
 * one, else sample_rate. @out keeps @in's tracestate and B3 dialect.
 * @span gets the ids, kind and start time; the caller fills in the rest.
 * @in and @out must not be the same object. Returns @span->sampled.
 * O(1), no allocation, no lock.
 */
bool trace_start(struct trace_worker *w, const struct trace_ctx *in, struct trace_ctx *out,
		 struct trace_span *span);

/*
 * Finish @span (end time now, unless the caller set end_ns) and copy it
 * into @w's ring, from @w's thread. Returns 0 (recorded, or not sampled
 * so nothing to do) or -ENOBUFS: the ring was full, the span is dropped
 * and counted. Never blocks: O(1), two atomic loads and a store.
 */
int trace_record(struct trace_worker *w, struct trace_span *span);

/*
 * Consumer side (the exporter thread only): move up to @max spans out of
 * @w's ring into @out. Returns how many.
 */
size_t trace_worker_drain(struct trace_worker *w, struct trace_span *out, size_t max);

/* Add @n to one of the exporter's counters, from the exporter thread. */
void trace_count(struct tracer *t, enum trace_export_stat which, uint64_t n);

/* A snapshot of every counter, from any thread. */
void trace_stats(struct tracer *t, struct trace_stats *out);

/* Lowercase hex of @n bytes into @dst (2n chars, then a NUL). */
void trace_hex(char *dst, const uint8_t *src, size_t n);

/* CLOCK_REALTIME in ns: span times are unix times. */
uint64_t trace_now_ns(void);

#endif

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Trace context parsing and propagation (W3C Trace Context level 1, B3),
 * sampling, and the per-worker span rings. See trace.h for the contracts
 * and docs/tracing.md for what users see.
 */
#include "recording/trace.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "common/fixed_buf.h"
#include "common/log.h"

/* Separate cache lines for what the producer and the consumer write. */
#define TRACE_CACHELINE 64

/*
 * tracestate may arrive split over several header lines (RFC 9110
 * combining). More non-empty lines than members allowed can only be
 * invalid, so this bounds the work per request.
 */
#define TRACE_TRACESTATE_MAX_LINES TRACE_TRACESTATE_MAX_MEMBERS

/* W3C key and value length limits (simple-key 256, tenant 241, system 14). */
#define TS_KEY_MAX 256
#define TS_TENANT_MAX 241
#define TS_SYSTEM_MAX 14
#define TS_VALUE_MAX 256

/* trace.h gives the span's size (what a ring slot costs): keep it true. */
_Static_assert(sizeof(struct trace_span) == 712, "update struct trace_span's size comment");

struct trace_worker {
	/* Written by the producer (the proxy worker). */
	_Alignas(TRACE_CACHELINE) _Atomic uint64_t head; /* next slot to fill */
	_Atomic uint64_t started, sampled, recorded, dropped_ring_full;
	uint64_t rng[4]; /* xoshiro256** state, when no trace_rand_fn */
	/* Read-only after tracer_create. */
	struct trace_span *slots;
	uint32_t mask;
	unsigned int index;
	struct tracer *t;
	/* Written by the consumer (the exporter). */
	_Alignas(TRACE_CACHELINE) _Atomic uint64_t tail; /* next slot to take */
};

struct tracer {
	struct trace_config cfg;
	bool sample_all, sample_none;
	uint64_t threshold; /* sampled when a random u64 is below it */
	unsigned int n_workers;
	struct trace_worker *workers;
	_Atomic uint64_t export_stats[TRACE_STAT_COUNT];
};

/* ---- small helpers ---- */

static const char hexdigits[] = "0123456789abcdef";

void trace_hex(char *dst, const uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		dst[2 * i] = hexdigits[src[i] >> 4];
		dst[2 * i + 1] = hexdigits[src[i] & 0xf];
	}
	dst[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* uppercase too: both W3C and B3 say lowercase */
}

/* @n_hex lowercase hex digits (even) into @out; false on any other byte. */
static bool unhex(const char *s, size_t n_hex, uint8_t *out)
{
	for (size_t i = 0; i < n_hex; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
	while (*len && is_ows(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_ows((*s)[*len - 1]))
		(*len)--;
}

void trace_copy_str(char *dst, size_t size, const char *src, size_t len)
{
	if (!size)
		return;
	if (len >= size)
		len = size - 1;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

uint64_t trace_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Everything but the tracestate bytes, which only tracestate_len guards. */
static void ctx_clear(struct trace_ctx *c)
{
	memset(c, 0, offsetof(struct trace_ctx, tracestate));
}

/* ---- W3C traceparent ---- */

int trace_parse_traceparent(const char *s, size_t len, struct trace_ctx *c)
{
	uint8_t version, flags;

	ctx_clear(c);
	trim(&s, &len);
	if (len < TRACE_TRACEPARENT_LEN || !unhex(s, 2, &version))
		return -EINVAL;
	/* Version ff is forbidden. Version 00 is exactly 55 bytes; a later
	 * version may append fields after a '-', and is read as 00. */
	if (version == 0xff || (version == 0 && len != TRACE_TRACEPARENT_LEN))
		return -EINVAL;
	if (len > TRACE_TRACEPARENT_LEN && s[TRACE_TRACEPARENT_LEN] != '-')
		return -EINVAL;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return -EINVAL;
	if (!unhex(s + 3, 2 * TRACE_ID_SIZE, c->trace_id) ||
	    !unhex(s + 36, 2 * TRACE_SPAN_ID_SIZE, c->span_id) || !unhex(s + 53, 2, &flags))
		return -EINVAL;
	if (all_zero(c->trace_id, TRACE_ID_SIZE) || all_zero(c->span_id, TRACE_SPAN_ID_SIZE))
		return -EINVAL;
	/* Only the sampled bit is ours to act on; others are not propagated. */
	c->sampling = (flags & 0x01) ? TRACE_SAMPLE_YES : TRACE_SAMPLE_NO;
	c->format = TRACE_FMT_W3C;
	c->has_ids = true;
	return 0;
}

/* ---- W3C tracestate ---- */

static bool ts_keychar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
	       c == '*' || c == '/';
}

static bool ts_key_valid(const char *k, size_t n)
{
	const char *at = memchr(k, '@', n);

	if (!n || n > TS_KEY_MAX)
		return false;
	if (!at) {
		if (k[0] < 'a' || k[0] > 'z')
			return false;
		for (size_t i = 1; i < n; i++)
			if (!ts_keychar(k[i]))
				return false;
		return true;
	}
	/* multi-tenant: tenant-id "@" system-id */
	size_t tn = at - k, sn = n - tn - 1;

	if (!tn || tn > TS_TENANT_MAX || !sn || sn > TS_SYSTEM_MAX)
		return false;
	if (!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')))
		return false;
	if (at[1] < 'a' || at[1] > 'z')
		return false;
	for (size_t i = 1; i < n; i++)
		if (i != tn && !ts_keychar(k[i]))
			return false;
	return true;
}

static bool ts_value_valid(const char *v, size_t n)
{
	if (!n || n > TS_VALUE_MAX || v[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=')
			return false;
	return true;
}

struct ts_member {
	const char *s;
	uint16_t len, keylen;
};

int trace_parse_tracestate(const char *const *vals, const size_t *lens, unsigned int n,
			   struct trace_ctx *c)
{
	struct ts_member m[TRACE_TRACESTATE_MAX_MEMBERS];
	unsigned int count = 0;
	size_t total = 0;

	c->tracestate_len = 0;
	for (unsigned int i = 0; i < n; i++) {
		const char *p = vals[i], *end = vals[i] + lens[i];

		for (bool last = false; !last;) {
			const char *comma = memchr(p, ',', end - p);
			const char *stop = comma ? comma : end;
			const char *s = p;
			size_t len = stop - p;

			last = !comma;
			p = last ? end : comma + 1;
			trim(&s, &len);
			if (!len)
				continue; /* empty members are allowed and dropped */
			const char *eq = memchr(s, '=', len);

			if (!eq || count == TRACE_TRACESTATE_MAX_MEMBERS ||
			    !ts_key_valid(s, eq - s) || !ts_value_valid(eq + 1, len - (eq - s) - 1))
				return -EINVAL;
			for (unsigned int j = 0; j < count; j++)
				if (m[j].keylen == eq - s && !memcmp(m[j].s, s, eq - s))
					return -EINVAL; /* duplicate key */
			m[count++] = (struct ts_member){s, (uint16_t)len, (uint16_t)(eq - s)};
			total += len + (count > 1);
		}
	}
	/* Over the limit: drop big members first, then keep what fits in order. */
	bool shrink = total > TRACE_TRACESTATE_MAX;
	size_t out = 0;

	for (unsigned int j = 0; j < count; j++) {
		size_t need = m[j].len + (out > 0);

		if (shrink && m[j].len > TRACE_TRACESTATE_BIG_MEMBER)
			continue;
		if (out + need > TRACE_TRACESTATE_MAX)
			break;
		if (out)
			c->tracestate[out++] = ',';
		memcpy(c->tracestate + out, m[j].s, m[j].len);
		out += m[j].len;
	}
	c->tracestate_len = (uint16_t)out;
	return 0;
}

/* ---- B3 ---- */

/* "0", "1" or "d" (debug, which implies sampled). */
static int b3_sampling(const char *s, size_t len)
{
	if (len != 1)
		return -1;
	if (s[0] == '0')
		return TRACE_SAMPLE_NO;
	if (s[0] == '1' || s[0] == 'd')
		return TRACE_SAMPLE_YES;
	return -1;
}

/* A B3 trace id: 16 or 32 lowercase hex; a 64-bit id fills the low half. */
static bool b3_trace_id(const char *s, size_t len, struct trace_ctx *c)
{
	memset(c->trace_id, 0, TRACE_ID_SIZE);
	if (len == 16) {
		c->b3_64bit = true;
		if (!unhex(s, 16, c->trace_id + 8))
			return false;
	} else if (len != 32 || !unhex(s, 32, c->trace_id)) {
		return false;
	}
	return !all_zero(c->trace_id, TRACE_ID_SIZE);
}

static bool b3_span_id(const char *s, size_t len, uint8_t *id)
{
	return len == 16 && unhex(s, 16, id) && !all_zero(id, TRACE_SPAN_ID_SIZE);
}

int trace_parse_b3(const char *s, size_t len, struct trace_ctx *c)
{
	const char *part[4];
	size_t plen[4], nparts = 0;
	int smp;

	ctx_clear(c);
	trim(&s, &len);
	c->format = TRACE_FMT_B3_SINGLE;
	if (len == 1) { /* a sampling decision alone */
		smp = b3_sampling(s, len);
		if (smp < 0)
			return -EINVAL;
		c->sampling = (uint8_t)smp;
		return 0;
	}
	for (const char *p = s, *end = s + len;;) {
		const char *dash = memchr(p, '-', end - p);
		const char *stop = dash ? dash : end;

		if (nparts == 4)
			return -EINVAL;
		part[nparts] = p;
		plen[nparts++] = stop - p;
		if (!dash)
			break;
		p = dash + 1;
	}
	if (nparts < 2 || !b3_trace_id(part[0], plen[0], c) ||
	    !b3_span_id(part[1], plen[1], c->span_id))
		return -EINVAL;
	if (nparts >= 3) {
		smp = b3_sampling(part[2], plen[2]);
		if (smp < 0)
			return -EINVAL;
		c->sampling = (uint8_t)smp;
	}
	if (nparts == 4) { /* the caller's parent: checked, not needed */
		uint8_t parent[TRACE_SPAN_ID_SIZE];

		if (!b3_span_id(part[3], plen[3], parent))
			return -EINVAL;
	}
	c->has_ids = true;
	return 0;
}

/* X-B3-TraceId, X-B3-SpanId, X-B3-Sampled, X-B3-Flags. Returns whether any
 * of them said something usable. */
static bool b3_multi(trace_header_fn get, void *arg, struct trace_ctx *c)
{
	const char *tv, *sv, *v;
	size_t tn, sn, n;
	bool any = false;

	ctx_clear(c);
	c->format = TRACE_FMT_B3_MULTI;
	if (get(arg, "x-b3-sampled", 0, &v, &n)) {
		trim(&v, &n);
		if ((n == 1 && v[0] == '1') || (n == 4 && !strncasecmp(v, "true", 4)))
			c->sampling = TRACE_SAMPLE_YES;
		else if ((n == 1 && v[0] == '0') || (n == 5 && !strncasecmp(v, "false", 5)))
			c->sampling = TRACE_SAMPLE_NO;
		any |= c->sampling != TRACE_SAMPLE_DEFER;
	}
	if (get(arg, "x-b3-flags", 0, &v, &n)) {
		trim(&v, &n);
		if (n == 1 && v[0] == '1') { /* debug: sampled, whatever X-B3-Sampled says */
			c->sampling = TRACE_SAMPLE_YES;
			any = true;
		}
	}
	if (get(arg, "x-b3-traceid", 0, &tv, &tn) && get(arg, "x-b3-spanid", 0, &sv, &sn)) {
		trim(&tv, &tn);
		trim(&sv, &sn);
		if (b3_trace_id(tv, tn, c) && b3_span_id(sv, sn, c->span_id)) {
			c->has_ids = true;
			return true;
		}
		memset(c->trace_id, 0, TRACE_ID_SIZE);
		memset(c->span_id, 0, TRACE_SPAN_ID_SIZE);
		c->b3_64bit = false;
	}
	return any;
}

void trace_extract(trace_header_fn get, void *arg, struct trace_ctx *in)
{
	const char *v, *dup;
	size_t n, dupn;

	if (get(arg, "traceparent", 0, &v, &n) && !get(arg, "traceparent", 1, &dup, &dupn) &&
	    trace_parse_traceparent(v, n, in) == 0) {
		const char *vals[TRACE_TRACESTATE_MAX_LINES];
		size_t lens[TRACE_TRACESTATE_MAX_LINES];
		unsigned int lines = 0;

		while (lines < TRACE_TRACESTATE_MAX_LINES &&
		       get(arg, "tracestate", lines, &vals[lines], &lens[lines]))
			lines++;
		if (lines == TRACE_TRACESTATE_MAX_LINES && get(arg, "tracestate", lines, &v, &n))
			return; /* too many lines to be valid: carry none */
		trace_parse_tracestate(vals, lens, lines, in);
		return;
	}
	if (get(arg, "b3", 0, &v, &n) && trace_parse_b3(v, n, in) == 0)
		return;
	if (b3_multi(get, arg, in))
		return;
	ctx_clear(in);
}

/* ---- injection ---- */

static void put_hex(struct fixed_buf *o, const uint8_t *b, size_t n)
{
	char h[2 * TRACE_ID_SIZE + 1];

	trace_hex(h, b, n);
	fixed_buf_put(o, h, 2 * n);
}

static void put_b3_trace_id(struct fixed_buf *o, const struct trace_ctx *c)
{
	if (c->b3_64bit && all_zero(c->trace_id, 8))
		put_hex(o, c->trace_id + 8, 8);
	else
		put_hex(o, c->trace_id, TRACE_ID_SIZE);
}

int trace_inject(const struct trace_ctx *c, char *buf, size_t cap)
{
	struct fixed_buf o = {.p = buf, .cap = cap};
	bool sampled = c->sampling == TRACE_SAMPLE_YES;
	bool has_parent = !all_zero(c->parent_id, TRACE_SPAN_ID_SIZE);

	if (!c->has_ids)
		return -EINVAL;
	fixed_buf_puts(&o, "traceparent: 00-");
	put_hex(&o, c->trace_id, TRACE_ID_SIZE);
	fixed_buf_puts(&o, "-");
	put_hex(&o, c->span_id, TRACE_SPAN_ID_SIZE);
	fixed_buf_puts(&o, sampled ? "-01\r\n" : "-00\r\n");
	if (c->tracestate_len) {
		fixed_buf_puts(&o, "tracestate: ");
		fixed_buf_put(&o, c->tracestate, c->tracestate_len);
		fixed_buf_puts(&o, "\r\n");
	}
	if (c->format == TRACE_FMT_B3_SINGLE) {
		fixed_buf_puts(&o, "b3: ");
		put_b3_trace_id(&o, c);
		fixed_buf_puts(&o, "-");
		put_hex(&o, c->span_id, TRACE_SPAN_ID_SIZE);
		fixed_buf_puts(&o, sampled ? "-1" : "-0");
		if (has_parent) {
			fixed_buf_puts(&o, "-");
			put_hex(&o, c->parent_id, TRACE_SPAN_ID_SIZE);
		}
		fixed_buf_puts(&o, "\r\n");
	} else if (c->format == TRACE_FMT_B3_MULTI) {
		fixed_buf_puts(&o, "X-B3-TraceId: ");
		put_b3_trace_id(&o, c);
		fixed_buf_puts(&o, "\r\nX-B3-SpanId: ");
		put_hex(&o, c->span_id, TRACE_SPAN_ID_SIZE);
		if (has_parent) {
			fixed_buf_puts(&o, "\r\nX-B3-ParentSpanId: ");
			put_hex(&o, c->parent_id, TRACE_SPAN_ID_SIZE);
		}
		fixed_buf_puts(&o, sampled ? "\r\nX-B3-Sampled: 1\r\n" : "\r\nX-B3-Sampled: 0\r\n");
	}
	return o.over ? -ENOSPC : (int)o.len;
}

bool trace_is_propagation_header(const char *name, size_t len)
{
	static const char *const names[] = {
	    "traceparent", "tracestate",	"b3",		"x-b3-traceid",
	    "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && !strncasecmp(names[i], name, len))
			return true;
	return false;
}

/* ---- random source ---- */

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman and Vigna): fast, and plenty for ids and coin flips. */
static uint64_t xoshiro_next(uint64_t *s)
{
	uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* splitmix64, to spread one seed over the generator's 256 bits of state. */
static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rand64(struct trace_worker *w)
{
	const struct trace_config *cfg = &w->t->cfg;

	if (cfg->rand)
		return cfg->rand(cfg->rand_arg, w->index);
	return xoshiro_next(w->rng);
}

/* A non-zero random id of @n bytes (8 or 16): zero ids are invalid. */
static void random_id(struct trace_worker *w, uint8_t *id, size_t n)
{
	do {
		for (size_t i = 0; i < n; i += 8) {
			uint64_t r = rand64(w);

			memcpy(id + i, &r, 8);
		}
	} while (all_zero(id, n));
}

/* ---- spans and rings ---- */

static void bump(_Atomic uint64_t *c)
{
	/* Only the owning thread writes: a plain load and store, no locked op. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

bool trace_start(struct trace_worker *w, const struct trace_ctx *in, struct trace_ctx *out,
		 struct trace_span *span)
{
	struct tracer *t = w->t;
	bool sampled;

	ctx_clear(out);
	if (in && in->has_ids) {
		memcpy(out->trace_id, in->trace_id, TRACE_ID_SIZE);
		memcpy(out->parent_id, in->span_id, TRACE_SPAN_ID_SIZE);
		out->b3_64bit = in->b3_64bit;
		out->tracestate_len = in->tracestate_len;
		memcpy(out->tracestate, in->tracestate, in->tracestate_len);
	} else {
		random_id(w, out->trace_id, TRACE_ID_SIZE);
	}
	if (in)
		out->format = in->format;
	random_id(w, out->span_id, TRACE_SPAN_ID_SIZE);
	out->has_ids = true;

	if (in && in->sampling != TRACE_SAMPLE_DEFER)
		sampled = in->sampling == TRACE_SAMPLE_YES;
	else if (t->sample_all || t->sample_none)
		sampled = t->sample_all;
	else
		sampled = rand64(w) < t->threshold;
	out->sampling = sampled ? TRACE_SAMPLE_YES : TRACE_SAMPLE_NO;

	memset(span, 0, sizeof(*span));
	memcpy(span->trace_id, out->trace_id, TRACE_ID_SIZE);
	memcpy(span->span_id, out->span_id, TRACE_SPAN_ID_SIZE);
	memcpy(span->parent_id, out->parent_id, TRACE_SPAN_ID_SIZE);
	span->kind = t->cfg.kind;
	span->sampled = sampled;
	if (sampled) { /* unsampled spans are never recorded: skip the clocks */
		span->start_ns = trace_now_ns();
		span->start_mono_ns = mono_ns();
	}
	bump(&w->started);
	if (sampled)
		bump(&w->sampled);
	return sampled;
}

int trace_record(struct trace_worker *w, struct trace_span *span)
{
	if (!span->sampled)
		return 0;
	if (!span->end_ns)
		span->end_ns = span->start_ns + (mono_ns() - span->start_mono_ns);

	uint64_t head = atomic_load_explicit(&w->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&w->tail, memory_order_acquire);

	if (head - tail > w->mask) {
		bump(&w->dropped_ring_full);
		return -ENOBUFS;
	}
	w->slots[head & w->mask] = *span;
	bump(&w->recorded);
	atomic_store_explicit(&w->head, head + 1, memory_order_release);
	return 0;
}

size_t trace_worker_drain(struct trace_worker *w, struct trace_span *out, size_t max)
{
	uint64_t tail = atomic_load_explicit(&w->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&w->head, memory_order_acquire);
	size_t n = head - tail < max ? head - tail : max;

	for (size_t i = 0; i < n; i++)
		out[i] = w->slots[(tail + i) & w->mask];
	atomic_store_explicit(&w->tail, tail + n, memory_order_release);
	return n;
}

void trace_count(struct tracer *t, enum trace_export_stat which, uint64_t n)
{
	atomic_fetch_add_explicit(&t->export_stats[which], n, memory_order_relaxed);
}

void trace_stats(struct tracer *t, struct trace_stats *out)
{
	memset(out, 0, sizeof(*out));
	/* Exporter counters first: a span is recorded before it is exported,
	 * so reading in this order keeps "queued" from going negative. */
	out->exported = atomic_load(&t->export_stats[TRACE_STAT_EXPORTED]);
	out->dropped_unreachable = atomic_load(&t->export_stats[TRACE_STAT_DROPPED_UNREACHABLE]);
	out->dropped_rejected = atomic_load(&t->export_stats[TRACE_STAT_DROPPED_REJECTED]);
	out->export_requests = atomic_load(&t->export_stats[TRACE_STAT_EXPORT_REQUESTS]);
	out->export_failures = atomic_load(&t->export_stats[TRACE_STAT_EXPORT_FAILURES]);
	for (unsigned int i = 0; i < t->n_workers; i++) {
		struct trace_worker *w = &t->workers[i];

		out->started += atomic_load_explicit(&w->started, memory_order_relaxed);
		out->sampled += atomic_load_explicit(&w->sampled, memory_order_relaxed);
		out->recorded += atomic_load_explicit(&w->recorded, memory_order_relaxed);
		out->dropped_ring_full +=
		    atomic_load_explicit(&w->dropped_ring_full, memory_order_relaxed);
	}
	uint64_t done = out->exported + out->dropped_unreachable + out->dropped_rejected;

	out->queued = out->recorded > done ? out->recorded - done : 0;
}

/* ---- lifetime ---- */

int tracer_create(const struct trace_config *cfg, unsigned int n_workers, struct tracer **out,
		  char *err, size_t errlen)
{
	struct tracer *t;
	uint32_t ring = cfg->ring_size ? cfg->ring_size : CONFIG_DEFAULT_TRACE_RING;
	uint64_t seed = cfg->seed;

	*out = NULL;
	if (!(cfg->sample_rate >= 0.0 && cfg->sample_rate <= 1.0)) {
		log_errbuf(err, errlen, "tracing sample_rate %g is not within 0.0 - 1.0",
			   cfg->sample_rate);
		return -EINVAL;
	}
	if (ring < CONFIG_MIN_TRACE_RING || ring > CONFIG_MAX_TRACE_RING || (ring & (ring - 1))) {
		log_errbuf(err, errlen, "tracing ring size %u is not a power of two in %u - %u",
			   ring, CONFIG_MIN_TRACE_RING, CONFIG_MAX_TRACE_RING);
		return -EINVAL;
	}
	if (cfg->kind && cfg->kind != TRACE_KIND_CLIENT && cfg->kind != TRACE_KIND_SERVER) {
		log_errbuf(err, errlen, "tracing span kind %u is neither SERVER nor CLIENT",
			   cfg->kind);
		return -EINVAL;
	}
	if (!n_workers) {
		log_errbuf(err, errlen, "tracing needs at least one worker");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	t->cfg = *cfg;
	t->cfg.ring_size = ring;
	if (!t->cfg.kind)
		t->cfg.kind = TRACE_KIND_CLIENT;
	t->sample_all = cfg->sample_rate >= 1.0;
	t->sample_none = cfg->sample_rate <= 0.0;
	if (!t->sample_all && !t->sample_none)
		t->threshold = (uint64_t)ldexp(cfg->sample_rate, 64);
	t->n_workers = n_workers;
	t->workers = aligned_alloc(TRACE_CACHELINE, n_workers * sizeof(*t->workers));
	if (!t->workers)
		goto nomem;
	memset(t->workers, 0, n_workers * sizeof(*t->workers));
	if (!seed && getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = trace_now_ns() ^ mono_ns(); /* getrandom cannot fail on >= 3.17 */
	for (unsigned int i = 0; i < n_workers; i++) {
		struct trace_worker *w = &t->workers[i];

		w->t = t;
		w->index = i;
		w->mask = ring - 1;
		w->slots = calloc(ring, sizeof(*w->slots));
		if (!w->slots)
			goto nomem;
		for (int k = 0; k < 4; k++)
			w->rng[k] = splitmix(&seed);
	}
	*out = t;
	return 0;
nomem:
	tracer_destroy(t);
	log_errbuf(err, errlen, "cannot allocate %u tracing rings of %u spans: %s", n_workers, ring,
		   strerror(ENOMEM));
	return -ENOMEM;
}

void tracer_destroy(struct tracer *t)
{
	if (!t)
		return;
	if (t->workers)
		for (unsigned int i = 0; i < t->n_workers; i++)
			free(t->workers[i].slots);
	free(t->workers);
	free(t);
}

unsigned int tracer_workers(const struct tracer *t)
{
	return t->n_workers;
}

uint32_t tracer_ring_size(const struct tracer *t)
{
	return t->cfg.ring_size;
}

struct trace_worker *tracer_worker(struct tracer *t, unsigned int i)
{
	return i < t->n_workers ? &t->workers[i] : NULL;
}

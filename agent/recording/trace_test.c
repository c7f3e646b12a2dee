// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Trace context parsing and propagation, sampling, and the span rings. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "recording/trace.h"

/*
 * The request path's budget: 100k records in under 50 ms. Sanitizers
 * instrument every memory access (3-10x slower), so they get ten times it.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RECORD_BUDGET_MS 500.0
#else
#define RECORD_BUDGET_MS 50.0
#endif

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

/* ---- a header list for trace_extract ---- */

struct hdr {
	const char *name, *value;
};

struct hdrs {
	const struct hdr *h;
	size_t n;
	unsigned int calls;
};

static bool get_hdr(void *arg, const char *name, unsigned int nth, const char **val, size_t *len)
{
	struct hdrs *hs = arg;

	hs->calls++;
	for (size_t i = 0; i < hs->n; i++)
		if (!strcasecmp(hs->h[i].name, name) && nth-- == 0) {
			*val = hs->h[i].value;
			*len = strlen(hs->h[i].value);
			return true;
		}
	return false;
}

#define EXTRACT(ctx, ...)                                                                          \
	do {                                                                                       \
		static const struct hdr list_[] = {__VA_ARGS__};                                   \
		struct hdrs hs_ = {list_, sizeof(list_) / sizeof(list_[0])};                       \
		trace_extract(get_hdr, &hs_, (ctx));                                               \
	} while (0)

static void hex_of(char *dst, const uint8_t *id, size_t n)
{
	trace_hex(dst, id, n);
}

/* ---- traceparent corpus ---- */

struct tp_case {
	const char *in;
	int ok;	     /* 1 valid, 0 invalid */
	int sampled; /* when valid */
	const char *why;
};

static const struct tp_case tp_corpus[] = {
    {"00-" TID "-" SID "-01", 1, 1, "the spec's example"},
    {"00-" TID "-" SID "-00", 1, 0, "not sampled"},
    {"00-" TID "-" SID "-09", 1, 1, "unknown flag bits ignored, sampled kept"},
    {"00-" TID "-" SID "-fe", 1, 0, "unknown flag bits only"},
    {"  00-" TID "-" SID "-01\t", 1, 1, "surrounding whitespace trimmed"},
    {"cc-" TID "-" SID "-01", 1, 1, "future version, version-00 length"},
    {"cc-" TID "-" SID "-01-what-the-future-will-be-like", 1, 1, "future version with more fields"},
    {"01-" TID "-" SID "-00-", 1, 0, "future version, empty extra field"},
    {"ff-" TID "-" SID "-01", 0, 0, "version ff is forbidden"},
    {"00-" TID "-" SID "-01-extra", 0, 0, "version 00 with extra fields"},
    {"00-" TID "-" SID "-01 x", 0, 0, "version 00 with trailing junk"},
    {"cc-" TID "-" SID "-01x", 0, 0, "future version: extra must start with '-'"},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", 0, 0, "uppercase trace id"},
    {"00-" TID "-00F067AA0BA902B7-01", 0, 0, "uppercase span id"},
    {"0A-" TID "-" SID "-01", 0, 0, "uppercase version"},
    {"00-" TID "-" SID "-0A", 0, 0, "uppercase flags"},
    {"00-00000000000000000000000000000000-" SID "-01", 0, 0, "all-zero trace id"},
    {"00-" TID "-0000000000000000-01", 0, 0, "all-zero span id"},
    {"00-" TID "-" SID "-0", 0, 0, "short flags"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473-" SID "-01", 0, 0, "31-digit trace id"},
    {"00-" TID "-00f067aa0ba902b-01", 0, 0, "15-digit span id"},
    {"00_" TID "_" SID "_01", 0, 0, "wrong delimiters"},
    {"00-" TID "-" SID "-0g", 0, 0, "flags not hex"},
    {"00-4bf92f3577b34da6a3ce929d0e0e473g-" SID "-01", 0, 0, "trace id not hex"},
    {"0-0" TID "-" SID "-01", 0, 0, "one-digit version"},
    {"", 0, 0, "empty"},
    {"00", 0, 0, "version only"},
    {"00-" TID "-" SID "-01\r\n", 0, 0, "a line ending is not whitespace"},
};

Test(traceparent, corpus)
{
	for (size_t i = 0; i < sizeof(tp_corpus) / sizeof(tp_corpus[0]); i++) {
		const struct tp_case *c = &tp_corpus[i];
		struct trace_ctx ctx;
		int r = trace_parse_traceparent(c->in, strlen(c->in), &ctx);

		if (!c->ok) {
			cr_expect_eq(r, -EINVAL, "%s: \"%s\" accepted", c->why, c->in);
			continue;
		}
		char tid[33], sid[17];

		cr_expect_eq(r, 0, "%s: \"%s\" refused", c->why, c->in);
		if (r)
			continue;
		hex_of(tid, ctx.trace_id, 16);
		hex_of(sid, ctx.span_id, 8);
		cr_expect_str_eq(tid, TID, "%s", c->why);
		cr_expect_str_eq(sid, SID, "%s", c->why);
		cr_expect_eq(ctx.sampling, c->sampled ? TRACE_SAMPLE_YES : TRACE_SAMPLE_NO, "%s",
			     c->why);
		cr_expect_eq(ctx.format, TRACE_FMT_W3C);
		cr_expect(ctx.has_ids);
	}
}

/* ---- tracestate ---- */

static int parse_ts(struct trace_ctx *c, unsigned int n, ...)
{
	const char *vals[8];
	size_t lens[8];
	va_list ap;

	va_start(ap, n);
	for (unsigned int i = 0; i < n; i++) {
		vals[i] = va_arg(ap, const char *);
		lens[i] = strlen(vals[i]);
	}
	va_end(ap);
	return trace_parse_tracestate(vals, lens, n, c);
}

static void expect_ts(struct trace_ctx *c, const char *want)
{
	cr_expect_eq(c->tracestate_len, strlen(want), "tracestate \"%.*s\", want \"%s\"",
		     c->tracestate_len, c->tracestate, want);
	cr_expect(!memcmp(c->tracestate, want, c->tracestate_len),
		  "tracestate \"%.*s\", want \"%s\"", c->tracestate_len, c->tracestate, want);
}

Test(tracestate, valid_members_and_lines)
{
	struct trace_ctx c;

	cr_assert_eq(parse_ts(&c, 1, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), 0);
	expect_ts(&c, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	cr_assert_eq(parse_ts(&c, 2, "rojo=1", "congo=2"), 0);
	expect_ts(&c, "rojo=1,congo=2");
	cr_assert_eq(parse_ts(&c, 1, " a=1 ,, \t,b=2,"), 0);
	expect_ts(&c, "a=1,b=2");
	cr_assert_eq(parse_ts(&c, 1, "tenant1@vendor=x,0tenant@sys-1=y"), 0);
	expect_ts(&c, "tenant1@vendor=x,0tenant@sys-1=y");
	cr_assert_eq(parse_ts(&c, 1, "k=a value with spaces"), 0);
	expect_ts(&c, "k=a value with spaces");
	cr_assert_eq(parse_ts(&c, 1, ""), 0);
	cr_expect_eq(c.tracestate_len, 0);
	cr_assert_eq(parse_ts(&c, 0), 0);
	cr_expect_eq(c.tracestate_len, 0);
}

Test(tracestate, invalid_is_dropped_whole)
{
	struct trace_ctx c;
	static const char *bad[] = {
	    "novalue",
	    "=v",
	    "Upper=1",
	    "1digitfirst=1",
	    "k=",
	    "k=a,b",
	    "k=v=w",
	    "a=1,a=2",
	    "t@=1",
	    "@s=1",
	    "t@Sys=1",
	    "t@sys@x=1",
	    "t@abcdefghijklmno=1",
	    "k=\x7f",
	    "k=tab\there",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c.tracestate_len = 99;
		cr_expect_eq(parse_ts(&c, 1, bad[i]), -EINVAL, "\"%s\" accepted", bad[i]);
		cr_expect_eq(c.tracestate_len, 0, "\"%s\" left a tracestate", bad[i]);
	}
	/* A duplicate across lines is a duplicate too. */
	cr_expect_eq(parse_ts(&c, 2, "a=1", "b=2,a=3"), -EINVAL);
}

Test(tracestate, member_limit)
{
	char buf[32 * 8 + 16];
	struct trace_ctx c;
	size_t n = 0;

	for (int i = 0; i < 32; i++)
		n += sprintf(buf + n, "%sk%d=v", i ? "," : "", i);
	cr_assert_eq(parse_ts(&c, 1, buf), 0, "32 members are allowed");
	cr_expect_eq(c.tracestate_len, n);
	strcat(buf, ",k32=v");
	cr_expect_eq(parse_ts(&c, 1, buf), -EINVAL, "33 members are not");
}

Test(tracestate, truncation_drops_big_members_first)
{
	char big[200], mid[120], line[1024];
	struct trace_ctx c;

	/* 3 x 120 + 200 + small ones: > 512, the 200-byte member goes first. */
	memset(big, 'b', sizeof(big));
	memcpy(big, "big=", 4);
	big[sizeof(big) - 1] = '\0';
	memset(mid, 'm', sizeof(mid));
	mid[sizeof(mid) - 1] = '\0';
	snprintf(line, sizeof(line), "a=%s,%s,b=%s,c=%s,d=1", mid, big, mid, mid);
	cr_assert_eq(parse_ts(&c, 1, line), 0);
	cr_expect_null(memmem(c.tracestate, c.tracestate_len, "big=", 4), "big member kept");
	cr_expect_eq(c.tracestate_len, 3 * (2 + 119) + 3 + 3, "%u", c.tracestate_len);
	cr_expect(!memcmp(c.tracestate + c.tracestate_len - 4, ",d=1", 4));

	/* Small members only: keep the leading ones that fit in 512. */
	size_t n = 0;

	for (int i = 0; i < 30; i++)
		n += sprintf(line + n, "%skey%02d=%s", i ? "," : "", i, "0123456789abcd");
	cr_assert_gt(n, 512);
	cr_assert_eq(parse_ts(&c, 1, line), 0);
	cr_expect_leq(c.tracestate_len, TRACE_TRACESTATE_MAX);
	cr_expect_eq(c.tracestate_len, 24 * 21 - 1, "%u", c.tracestate_len);
	cr_expect(!memcmp(c.tracestate, "key00=0123456789abcd,key01=", 27));
}

/* ---- B3 ---- */

struct b3_case {
	const char *in;
	int ok;
	int has_ids;
	int sampling;
	const char *trace_hex; /* 32 digits, when has_ids */
	const char *why;
};

#define B3T "80f198ee56343ba864fe8b2a57d3eff7"
#define B3S "e457b5a2e4d86bd1"
#define B3P "05e3ac9a4f6e3b90"

static const struct b3_case b3_corpus[] = {
    {B3T "-" B3S "-1-" B3P, 1, 1, TRACE_SAMPLE_YES, B3T, "full form"},
    {B3T "-" B3S "-0", 1, 1, TRACE_SAMPLE_NO, B3T, "not sampled, no parent"},
    {B3T "-" B3S, 1, 1, TRACE_SAMPLE_DEFER, B3T, "no sampling state: deferred"},
    {B3T "-" B3S "-d", 1, 1, TRACE_SAMPLE_YES, B3T, "debug means sampled"},
    {"a3ce929d0e0e4736-" B3S "-1", 1, 1, TRACE_SAMPLE_YES, "0000000000000000a3ce929d0e0e4736",
     "64-bit trace id"},
    {"0", 1, 0, TRACE_SAMPLE_NO, NULL, "deny alone"},
    {"1", 1, 0, TRACE_SAMPLE_YES, NULL, "accept alone"},
    {"d", 1, 0, TRACE_SAMPLE_YES, NULL, "debug alone"},
    {" " B3T "-" B3S "-1 ", 1, 1, TRACE_SAMPLE_YES, B3T, "whitespace trimmed"},
    {"2", 0, 0, 0, NULL, "unknown sampling state"},
    {"", 0, 0, 0, NULL, "empty"},
    {B3T, 0, 0, 0, NULL, "trace id alone"},
    {"80F198EE56343BA864FE8B2A57D3EFF7-" B3S, 0, 0, 0, NULL, "uppercase"},
    {"80f198ee56343ba864fe8b2a-" B3S, 0, 0, 0, NULL, "96-bit trace id"},
    {"00000000000000000000000000000000-" B3S, 0, 0, 0, NULL, "zero trace id"},
    {"0000000000000000-" B3S, 0, 0, 0, NULL, "zero 64-bit trace id"},
    {B3T "-0000000000000000", 0, 0, 0, NULL, "zero span id"},
    {B3T "-e457b5a2e4d86bd", 0, 0, 0, NULL, "15-digit span id"},
    {B3T "-" B3S "-x", 0, 0, 0, NULL, "bad sampling state"},
    {B3T "-" B3S "-1-05e3ac9a4f6e3b9", 0, 0, 0, NULL, "short parent"},
    {B3T "-" B3S "-1-" B3P "-1", 0, 0, 0, NULL, "five fields"},
    {B3T "-" B3S "-", 0, 0, 0, NULL, "empty sampling field"},
    {B3T "--1", 0, 0, 0, NULL, "empty span id"},
};

Test(b3, single_header_corpus)
{
	for (size_t i = 0; i < sizeof(b3_corpus) / sizeof(b3_corpus[0]); i++) {
		const struct b3_case *c = &b3_corpus[i];
		struct trace_ctx ctx;
		int r = trace_parse_b3(c->in, strlen(c->in), &ctx);

		if (!c->ok) {
			cr_expect_eq(r, -EINVAL, "%s: \"%s\" accepted", c->why, c->in);
			continue;
		}
		cr_expect_eq(r, 0, "%s: \"%s\" refused", c->why, c->in);
		if (r)
			continue;
		cr_expect_eq(ctx.has_ids, c->has_ids, "%s", c->why);
		cr_expect_eq(ctx.sampling, c->sampling, "%s", c->why);
		cr_expect_eq(ctx.format, TRACE_FMT_B3_SINGLE);
		if (c->has_ids) {
			char tid[33], sid[17];

			hex_of(tid, ctx.trace_id, 16);
			hex_of(sid, ctx.span_id, 8);
			cr_expect_str_eq(tid, c->trace_hex, "%s", c->why);
			cr_expect_str_eq(sid, B3S, "%s", c->why);
		}
	}
}

Test(b3, multi_headers)
{
	struct trace_ctx c;
	char tid[33];

	EXTRACT(&c, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", B3S}, {"X-B3-Sampled", "1"});
	cr_expect_eq(c.format, TRACE_FMT_B3_MULTI);
	cr_expect(c.has_ids);
	cr_expect_eq(c.sampling, TRACE_SAMPLE_YES);

	EXTRACT(&c, {"x-b3-traceid", "a3ce929d0e0e4736"}, {"x-b3-spanid", B3S},
		{"x-b3-parentspanid", B3P});
	cr_expect(c.has_ids);
	cr_expect(c.b3_64bit);
	cr_expect_eq(c.sampling, TRACE_SAMPLE_DEFER);
	hex_of(tid, c.trace_id, 16);
	cr_expect_str_eq(tid, "0000000000000000a3ce929d0e0e4736");

	EXTRACT(&c, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", B3S}, {"X-B3-Sampled", "0"},
		{"X-B3-Flags", "1"});
	cr_expect_eq(c.sampling, TRACE_SAMPLE_YES, "debug flag overrides Sampled: 0");

	EXTRACT(&c, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", B3S}, {"X-B3-Sampled", "false"});
	cr_expect_eq(c.sampling, TRACE_SAMPLE_NO, "legacy \"false\"");

	EXTRACT(&c, {"X-B3-Sampled", "0"});
	cr_expect_eq(c.format, TRACE_FMT_B3_MULTI, "a decision alone is kept");
	cr_expect_not(c.has_ids);
	cr_expect_eq(c.sampling, TRACE_SAMPLE_NO);

	EXTRACT(&c, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", "zz"}, {"X-B3-Sampled", "1"});
	cr_expect_not(c.has_ids, "bad span id: no ids");
	cr_expect_eq(c.sampling, TRACE_SAMPLE_YES, "the decision survives");

	EXTRACT(&c, {"X-B3-TraceId", B3T});
	cr_expect_eq(c.format, TRACE_FMT_NONE, "trace id without span id: nothing");

	EXTRACT(&c, {"X-B3-Sampled", "maybe"});
	cr_expect_eq(c.format, TRACE_FMT_NONE);
}

/* ---- extraction precedence ---- */

Test(extract, precedence_and_duplicates)
{
	struct trace_ctx c;
	char tid[33];

	EXTRACT(&c, {"b3", B3T "-" B3S "-1"}, {"TraceParent", "00-" TID "-" SID "-00"},
		{"tracestate", "a=1"});
	cr_expect_eq(c.format, TRACE_FMT_W3C, "traceparent wins over b3");
	cr_expect_eq(c.sampling, TRACE_SAMPLE_NO);
	expect_ts(&c, "a=1");

	EXTRACT(&c, {"traceparent", "00-" TID "-" SID "-01"},
		{"traceparent", "00-" TID "-" SID "-01"}, {"b3", B3T "-" B3S "-0"});
	cr_expect_eq(c.format, TRACE_FMT_B3_SINGLE, "duplicated traceparent is ignored");
	hex_of(tid, c.trace_id, 16);
	cr_expect_str_eq(tid, B3T);

	EXTRACT(&c, {"traceparent", "00-" TID "-" SID "-01"},
		{"traceparent", "00-" TID "-" SID "-01"}, {"tracestate", "a=1"});
	cr_expect_eq(c.format, TRACE_FMT_NONE);
	cr_expect_eq(c.tracestate_len, 0, "no tracestate without a traceparent");

	EXTRACT(&c, {"traceparent", "00-" TID "-" SID "-0x"}, {"tracestate", "a=1"});
	cr_expect_eq(c.format, TRACE_FMT_NONE, "invalid traceparent");
	cr_expect_eq(c.tracestate_len, 0);

	EXTRACT(&c, {"traceparent", "00-" TID "-" SID "-01"}, {"tracestate", "a=1"},
		{"tracestate", "Bad=1"});
	cr_expect_eq(c.format, TRACE_FMT_W3C, "a bad tracestate leaves the traceparent");
	cr_expect_eq(c.tracestate_len, 0);

	EXTRACT(&c, {"b3", "garbage"}, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", B3S});
	cr_expect_eq(c.format, TRACE_FMT_B3_MULTI, "bad b3 falls back to X-B3-*");

	EXTRACT(&c, {"host", "x"});
	cr_expect_eq(c.format, TRACE_FMT_NONE);
	cr_expect_not(c.has_ids);
	cr_expect_eq(c.sampling, TRACE_SAMPLE_DEFER);
}

/* More tracestate lines than members can be valid: dropped, bounded work. */
Test(extract, tracestate_line_bound)
{
	struct hdr h[40];
	struct hdrs hs = {h, 40};
	struct trace_ctx c;

	h[0] = (struct hdr){"traceparent", "00-" TID "-" SID "-01"};
	for (int i = 1; i < 40; i++)
		h[i] = (struct hdr){"tracestate", ""};
	trace_extract(get_hdr, &hs, &c);
	cr_expect_eq(c.format, TRACE_FMT_W3C);
	cr_expect_eq(c.tracestate_len, 0);
	cr_expect_lt(hs.calls, 40, "%u header lookups", hs.calls);
}

/* ---- a tracer for the tests below ---- */

static struct tracer *tracer;
static struct trace_worker *worker;

static void make_tracer(double rate, uint32_t ring, uint64_t seed)
{
	struct trace_config cfg = {.sample_rate = rate, .ring_size = ring, .seed = seed};
	char err[256];

	cr_assert_eq(tracer_create(&cfg, 1, &tracer, err, sizeof(err)), 0, "%s", err);
	worker = tracer_worker(tracer, 0);
}

static void tracer_setup(void)
{
	make_tracer(1.0, 16, 42);
}

static void tracer_teardown(void)
{
	tracer_destroy(tracer);
	tracer = NULL;
}

TestSuite(propagate, .init = tracer_setup, .fini = tracer_teardown);

Test(propagate, child_of_w3c)
{
	struct trace_ctx in, out;
	struct trace_span span;
	char buf[TRACE_INJECT_MAX + 1], tid[33], sid[17], pid[17], want[256];
	int n;

	EXTRACT(&in, {"traceparent", "00-" TID "-" SID "-01"}, {"tracestate", "congo=t61rcWkgMzE"});
	cr_assert(trace_start(worker, &in, &out, &span));
	cr_expect(!memcmp(out.trace_id, in.trace_id, 16), "same trace id");
	cr_expect(memcmp(out.span_id, in.span_id, 8), "a new span id");
	cr_expect(!memcmp(out.parent_id, in.span_id, 8), "parent = incoming span id");
	cr_expect(!memcmp(span.trace_id, out.trace_id, 16));
	cr_expect(!memcmp(span.span_id, out.span_id, 8));
	cr_expect(!memcmp(span.parent_id, in.span_id, 8));
	cr_expect_eq(span.kind, TRACE_KIND_CLIENT);
	cr_expect_gt(span.start_ns, 1600000000ull * 1000000000ull);

	n = trace_inject(&out, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	hex_of(tid, out.trace_id, 16);
	hex_of(sid, out.span_id, 8);
	hex_of(pid, out.parent_id, 8);
	cr_expect_str_eq(tid, TID);
	cr_expect_str_eq(pid, SID);
	snprintf(want, sizeof(want),
		 "traceparent: 00-%s-%s-01\r\ntracestate: congo=t61rcWkgMzE\r\n", tid, sid);
	cr_expect_str_eq(buf, want);

	/* The emitted header parses back to the child. */
	struct trace_ctx back;

	cr_assert_eq(trace_parse_traceparent(buf + 13, 55, &back), 0);
	cr_expect(!memcmp(back.span_id, out.span_id, 8));
}

Test(propagate, unsampled_parent_is_followed)
{
	struct trace_ctx in, out;
	struct trace_span span;
	char buf[TRACE_INJECT_MAX];
	int n;

	EXTRACT(&in, {"traceparent", "00-" TID "-" SID "-00"});
	cr_expect_not(trace_start(worker, &in, &out, &span), "rate 1.0, but the parent said no");
	cr_expect_eq(out.sampling, TRACE_SAMPLE_NO);
	n = trace_inject(&out, buf, sizeof(buf));
	cr_assert_eq(n, 70);
	cr_expect(!memcmp(buf + 13 + 53, "00\r\n", 4), "flags 00 go on: %.*s", n, buf);
	cr_expect_eq(trace_record(worker, &span), 0);

	struct trace_stats st;

	trace_stats(tracer, &st);
	cr_expect_eq(st.recorded, 0, "an unsampled span is not recorded");
	cr_expect_eq(st.started, 1);
	cr_expect_eq(st.sampled, 0);
}

Test(propagate, fresh_context)
{
	struct trace_ctx out, out2;
	struct trace_span span;
	char buf[TRACE_INJECT_MAX];

	cr_assert(trace_start(worker, NULL, &out, &span));
	cr_expect(out.has_ids);
	cr_expect_eq(out.format, TRACE_FMT_NONE);
	for (int i = 0; i < 8; i++)
		cr_expect_eq(out.parent_id[i], 0, "a root has no parent");
	cr_expect_eq(trace_inject(&out, buf, sizeof(buf)), 70, "traceparent only");
	cr_assert(trace_start(worker, NULL, &out2, &span));
	cr_expect(memcmp(out.trace_id, out2.trace_id, 16), "a new trace id each time");

	struct trace_ctx none;

	EXTRACT(&none, {"host", "x"});
	cr_assert(trace_start(worker, &none, &out, &span));
	cr_expect_eq(out.tracestate_len, 0);
}

Test(propagate, b3_single_answered_in_b3)
{
	struct trace_ctx in, out;
	struct trace_span span;
	char buf[TRACE_INJECT_MAX + 1], sid[17], want[512];
	int n;

	EXTRACT(&in, {"b3", "a3ce929d0e0e4736-" B3S "-1"});
	cr_assert(trace_start(worker, &in, &out, &span));
	n = trace_inject(&out, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	hex_of(sid, out.span_id, 8);
	snprintf(want, sizeof(want),
		 "traceparent: 00-0000000000000000a3ce929d0e0e4736-%s-01\r\n"
		 "b3: a3ce929d0e0e4736-%s-1-" B3S "\r\n",
		 sid, sid);
	cr_expect_str_eq(buf, want);
}

Test(propagate, b3_multi_answered_in_b3_multi)
{
	struct trace_ctx in, out;
	struct trace_span span;
	char buf[TRACE_INJECT_MAX + 1], sid[17], want[512];
	int n;

	EXTRACT(&in, {"X-B3-TraceId", B3T}, {"X-B3-SpanId", B3S});
	cr_assert(trace_start(worker, &in, &out, &span), "deferred: rate 1.0 samples");
	n = trace_inject(&out, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	hex_of(sid, out.span_id, 8);
	snprintf(want, sizeof(want),
		 "traceparent: 00-" B3T "-%s-01\r\n"
		 "X-B3-TraceId: " B3T "\r\nX-B3-SpanId: %s\r\nX-B3-ParentSpanId: " B3S
		 "\r\nX-B3-Sampled: 1\r\n",
		 sid, sid);
	cr_expect_str_eq(buf, want);

	/* A decision alone: a new trace in B3, no parent line. */
	EXTRACT(&in, {"X-B3-Sampled", "0"});
	cr_assert_not(trace_start(worker, &in, &out, &span));
	n = trace_inject(&out, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_expect_null(strstr(buf, "ParentSpanId"), "%s", buf);
	cr_expect_not_null(strstr(buf, "X-B3-Sampled: 0\r\n"), "%s", buf);
}

Test(propagate, inject_bounds)
{
	struct trace_ctx in, out;
	struct trace_span span;
	char line[TRACE_TRACESTATE_MAX + 1], buf[TRACE_INJECT_MAX];
	size_t n = 0;

	/* The longest output: a full tracestate and B3 multi with a parent. */
	for (int k = 0; n + 19 <= TRACE_TRACESTATE_MAX; k++)
		n += sprintf(line + n, "%sk%02d=%s", n ? "," : "", k, "0123456789abcd");
	cr_assert_eq(trace_parse_traceparent("00-" TID "-" SID "-01", 55, &in), 0);
	cr_assert_eq(trace_parse_tracestate((const char *[]){line}, &n, 1, &in), 0);
	cr_assert_gt(in.tracestate_len, 480);
	cr_assert(trace_start(worker, &in, &out, &span));
	out.format = TRACE_FMT_B3_MULTI;
	int full = trace_inject(&out, buf, sizeof(buf));

	cr_assert_gt(full, 0, "worst case fits TRACE_INJECT_MAX");
	cr_expect_eq(trace_inject(&out, buf, full), full);
	cr_expect_eq(trace_inject(&out, buf, full - 1), -ENOSPC);
	cr_expect_eq(trace_inject(&out, buf, 0), -ENOSPC);
	struct trace_ctx empty = {.has_ids = false};

	cr_expect_eq(trace_inject(&empty, buf, sizeof(buf)), -EINVAL);
}

Test(propagate, propagation_header_names)
{
	static const char *yes[] = {"traceparent",  "TraceState",  "B3",
				    "X-B3-TraceId", "x-b3-spanid", "X-B3-ParentSpanId",
				    "X-B3-SAMPLED", "x-b3-flags"};
	static const char *no[] = {"trace", "traceparentx", "b", "b33", "x-b3", "host", ""};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		cr_expect(trace_is_propagation_header(yes[i], strlen(yes[i])), "%s", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		cr_expect_not(trace_is_propagation_header(no[i], strlen(no[i])), "%s", no[i]);
	cr_expect(trace_is_propagation_header("b3: x", 2), "length, not NUL, bounds the name");
}

/* ---- sampling ---- */

Test(sampling, rate_with_fixed_seed)
{
	static const double rates[] = {0.0, 0.01, 0.25, 0.5, 0.9, 1.0};
	const int n = 100000;

	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		struct trace_ctx out;
		struct trace_span span;
		int hits = 0;

		make_tracer(rates[r], 16, 12345);
		for (int i = 0; i < n; i++)
			hits += trace_start(worker, NULL, &out, &span);
		/* Binomial: 5 standard deviations is ~1 % of n at worst. */
		double sd = sqrt(n * rates[r] * (1 - rates[r]));

		cr_expect_leq(fabs(hits - n * rates[r]), 5 * sd + 0.5, "rate %.2f: %d of %d",
			      rates[r], hits, n);
		tracer_destroy(tracer);
	}
	tracer = NULL;
}

Test(sampling, same_seed_same_ids)
{
	struct trace_ctx a, b;
	struct trace_span span;
	struct tracer *first;

	make_tracer(0.5, 16, 7);
	first = tracer;
	trace_start(worker, NULL, &a, &span);
	make_tracer(0.5, 16, 7);
	trace_start(worker, NULL, &b, &span);
	cr_expect(!memcmp(a.trace_id, b.trace_id, 16));
	cr_expect(!memcmp(a.span_id, b.span_id, 8));
	tracer_destroy(first);
	tracer_destroy(tracer);
	tracer = NULL;
}

/* An injected source: a script of values, counting its calls. */
struct script {
	const uint64_t *v;
	size_t n, at;
	unsigned int last_worker;
};

static uint64_t scripted(void *arg, unsigned int w)
{
	struct script *s = arg;

	s->last_worker = w;
	return s->v[s->at++ % s->n];
}

Test(sampling, injected_source_and_parent_decision)
{
	/* ids then the coin: 16 bytes trace id (2 draws), 8 span id (1), coin (1). */
	static const uint64_t v[] = {1, 2, 3, 0x3fffffffffffffffull,
				     4, 5, 6, 0x4000000000000001ull};
	struct script s = {v, 8, 0};
	struct trace_config cfg = {.sample_rate = 0.25, .rand = scripted, .rand_arg = &s};
	struct trace_ctx in, out;
	struct trace_span span;
	char err[128];

	cr_assert_eq(tracer_create(&cfg, 3, &tracer, err, sizeof(err)), 0, "%s", err);
	worker = tracer_worker(tracer, 2);
	cr_expect(trace_start(worker, NULL, &out, &span), "coin just under 0.25");
	cr_expect_eq(s.last_worker, 2);
	cr_expect_eq(s.at, 4);
	cr_expect_not(trace_start(worker, NULL, &out, &span), "coin just over 0.25");
	cr_expect_eq(s.at, 8);

	/* A parent's decision needs no coin. */
	EXTRACT(&in, {"traceparent", "00-" TID "-" SID "-01"});
	cr_expect(trace_start(worker, &in, &out, &span));
	cr_expect_eq(s.at, 9, "one draw, for the span id");
	EXTRACT(&in, {"b3", B3T "-" B3S});
	trace_start(worker, &in, &out, &span);
	cr_expect_eq(s.at, 11, "deferred: span id and the coin");
	cr_expect_null(tracer_worker(tracer, 3));
}

Test(sampling, config_is_checked)
{
	static const double bad_rates[] = {-0.1, 1.01, NAN};
	struct trace_config cfg = {.sample_rate = 0.5};
	struct tracer *t;
	char err[256];

	for (size_t i = 0; i < 3; i++) {
		cfg.sample_rate = bad_rates[i];
		cr_expect_eq(tracer_create(&cfg, 1, &t, err, sizeof(err)), -EINVAL);
		cr_expect_not_null(strstr(err, "sample_rate"), "%s", err);
	}
	cfg.sample_rate = 0.5;
	cfg.ring_size = 1000;
	cr_expect_eq(tracer_create(&cfg, 1, &t, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "1000"), "%s", err);
	cfg.ring_size = CONFIG_MAX_TRACE_RING * 2;
	cr_expect_eq(tracer_create(&cfg, 1, &t, err, sizeof(err)), -EINVAL);
	cfg.ring_size = 0;
	cfg.kind = 7;
	cr_expect_eq(tracer_create(&cfg, 1, &t, err, sizeof(err)), -EINVAL);
	cfg.kind = TRACE_KIND_SERVER;
	cr_expect_eq(tracer_create(&cfg, 0, &t, err, sizeof(err)), -EINVAL);
	cr_assert_eq(tracer_create(&cfg, 2, &t, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(tracer_workers(t), 2);

	struct trace_ctx out;
	struct trace_span span;

	cfg.sample_rate = 1.0;
	tracer_destroy(t);
	cr_assert_eq(tracer_create(&cfg, 1, &t, err, sizeof(err)), 0, "%s", err);
	trace_start(tracer_worker(t, 0), NULL, &out, &span);
	cr_expect_eq(span.kind, TRACE_KIND_SERVER, "the configured kind");
	tracer_destroy(t);
}

/* ---- rings ---- */

TestSuite(ring, .init = tracer_setup, .fini = tracer_teardown);

Test(ring, full_ring_drops_and_counts)
{
	struct trace_ctx out;
	struct trace_span span, got[32];
	uint8_t first[8];
	struct trace_stats st;

	for (int i = 0; i < 20; i++) {
		trace_start(worker, NULL, &out, &span);
		trace_span_set(&span, service, "default/web", 11);
		span.status_code = 200 + i;
		if (i == 0)
			memcpy(first, span.span_id, 8);
		cr_expect_eq(trace_record(worker, &span), i < 16 ? 0 : -ENOBUFS, "record %d", i);
	}
	trace_stats(tracer, &st);
	cr_expect_eq(st.recorded, 16);
	cr_expect_eq(st.dropped_ring_full, 4);
	cr_expect_eq(st.queued, 16);

	cr_assert_eq(trace_worker_drain(worker, got, 10), 10);
	cr_expect(!memcmp(got[0].span_id, first, 8), "oldest first");
	cr_expect_str_eq(got[0].service, "default/web");
	cr_expect_geq(got[0].end_ns, got[0].start_ns);
	for (int i = 0; i < 10; i++)
		cr_expect_eq(got[i].status_code, 200 + i);
	cr_assert_eq(trace_worker_drain(worker, got, 32), 6);
	cr_expect_eq(got[5].status_code, 215);
	cr_expect_eq(trace_worker_drain(worker, got, 32), 0);

	/* Room again; a caller-set end time is kept. */
	trace_start(worker, NULL, &out, &span);
	span.end_ns = span.start_ns + 1234;
	cr_expect_eq(trace_record(worker, &span), 0);
	cr_assert_eq(trace_worker_drain(worker, got, 32), 1);
	cr_expect_eq(got[0].end_ns - got[0].start_ns, 1234);
}

Test(ring, strings_truncate)
{
	struct trace_ctx out;
	struct trace_span span;
	char longer[300];

	memset(longer, 'x', sizeof(longer));
	trace_start(worker, NULL, &out, &span);
	trace_span_set(&span, route, longer, sizeof(longer));
	cr_expect_eq(strlen(span.route), TRACE_ROUTE_MAX - 1);
	trace_span_set(&span, method, "GET", 3);
	cr_expect_str_eq(span.method, "GET");
	trace_span_set(&span, endpoint, "", 0);
	cr_expect_str_eq(span.endpoint, "");
}

/* Record while full: the request path's cost when the exporter is stuck. */
Test(ring, record_when_full_is_fast)
{
	struct trace_ctx out;
	struct trace_span span;
	struct timespec a, b;
	const int n = 100000;

	trace_start(worker, NULL, &out, &span);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		span.end_ns = 0;
		trace_record(worker, &span);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	struct trace_stats st;

	trace_stats(tracer, &st);
	cr_expect_eq(st.recorded + st.dropped_ring_full, (uint64_t)n);
	cr_expect_lt(ms, RECORD_BUDGET_MS, "%d records took %.2f ms", n, ms);
	fprintf(stderr, "ring: %d records (ring of 16, full) in %.2f ms\n", n, ms);
}

/* One producer, one consumer, no lock: nothing lost, torn or reordered. */
struct spsc {
	struct trace_worker *w;
	uint64_t n;
	_Atomic bool done;
};

static void *producer(void *arg)
{
	struct spsc *p = arg;
	struct trace_ctx out;
	struct trace_span span;

	for (uint64_t i = 1; i <= p->n; i++) {
		trace_start(p->w, NULL, &out, &span);
		span.end_ns = span.start_ns + i; /* the sequence number */
		memcpy(span.service, &i, sizeof(i));
		trace_record(p->w, &span);
	}
	atomic_store(&p->done, true);
	return NULL;
}

Test(ring, spsc_under_contention)
{
	struct spsc p = {.n = 1000000};
	struct trace_span got[64];
	uint64_t last = 0, seen = 0;
	pthread_t th;
	struct trace_stats st;

	tracer_destroy(tracer);
	make_tracer(1.0, 256, 9);
	p.w = worker;
	cr_assert_eq(pthread_create(&th, NULL, producer, &p), 0);
	/* Plain checks in the loop: a Criterion assert per span is too slow. */
	uint64_t torn = 0, reordered = 0;

	for (;;) {
		bool done = atomic_load(&p.done);
		size_t n = trace_worker_drain(worker, got, 64);

		for (size_t i = 0; i < n; i++) {
			uint64_t seq = got[i].end_ns - got[i].start_ns, copy;

			memcpy(&copy, got[i].service, sizeof(copy));
			torn += seq != copy;
			reordered += seq <= last;
			last = seq;
		}
		seen += n;
		if (done && !n)
			break;
	}
	pthread_join(th, NULL);
	cr_expect_eq(torn, 0, "torn slots");
	cr_expect_eq(reordered, 0, "spans out of order");
	trace_stats(tracer, &st);
	cr_expect_eq(st.recorded, seen);
	cr_expect_eq(st.recorded + st.dropped_ring_full, p.n);
	fprintf(stderr, "spsc: %llu of %llu spans through a 256-slot ring\n",
		(unsigned long long)seen, (unsigned long long)p.n);
}

/* The key length limits of the tracestate grammar, at and past each. */
Test(tracestate, key_length_limits)
{
	char key[300], line[600];
	struct trace_ctx c;

	memset(key, 'a', sizeof(key));
	key[256] = '\0';
	snprintf(line, sizeof(line), "%s=v", key);
	cr_expect_eq(parse_ts(&c, 1, line), 0, "simple key of 256");
	key[256] = 'a';
	key[257] = '\0';
	snprintf(line, sizeof(line), "%s=v", key);
	cr_expect_eq(parse_ts(&c, 1, line), -EINVAL, "simple key of 257");

	memset(key, 't', 241);
	snprintf(line, sizeof(line), "%.241s@abcdefghijklmn=v", key);
	cr_expect_eq(parse_ts(&c, 1, line), 0, "tenant 241, system 14");
	snprintf(line, sizeof(line), "%.241st@abcdefghijklmn=v", key);
	cr_expect_eq(parse_ts(&c, 1, line), -EINVAL, "tenant 242");

	memset(line, 'v', sizeof(line));
	memcpy(line, "k=", 2);
	line[2 + 256] = '\0';
	cr_expect_eq(parse_ts(&c, 1, line), 0, "value of 256");
	line[2 + 256] = 'v';
	line[2 + 257] = '\0';
	cr_expect_eq(parse_ts(&c, 1, line), -EINVAL, "value of 257");
}

/*
 * Random input over the parsers' own alphabets: nothing crashes (run it
 * under ASan), and whatever is accepted reads back as what was sent.
 */
Test(parsers, random_input)
{
	static const char alphabet[] = "0123456789abcdefABCDEF-=,@ \tdxz\x7f\x80";
	uint64_t x = 88172645463325252ull;
	char s[80], hex[33];
	struct trace_ctx c;
	int accepted = 0;

	for (int i = 0; i < 200000; i++) {
		size_t len;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		len = x % sizeof(s);
		for (size_t k = 0; k < len; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			s[k] = alphabet[x % (sizeof(alphabet) - 1)];
		}
		/* Half the time, start from a valid traceparent and mutate one byte. */
		if (i & 1) {
			memcpy(s, "00-" TID "-" SID "-01", 55);
			len = 55;
			s[x % 55] = alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
		}
		if (trace_parse_traceparent(s, len, &c) == 0) {
			accepted++;
			trace_hex(hex, c.trace_id, 16);
			cr_assert(!memcmp(hex, s + 3, 32), "%.*s", (int)len, s);
		}
		trace_parse_b3(s, len, &c);
		const char *v = s;

		trace_parse_tracestate(&v, &len, 1, &c);
		cr_assert_leq(c.tracestate_len, TRACE_TRACESTATE_MAX);
	}
	cr_expect_gt(accepted, 0);
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The OTLP JSON body (parsed back with json-c) and the exporter, against
 * tests/tools/otlp-receiver.py on 127.0.0.1, against nothing (collector
 * down) and against a listener that never answers (collector stuck).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/curl_api.h"
#include "recording/trace.h"
#include "telemetry/otlp.h"
#include "telemetry/otlp_test_config.h"

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

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- JSON helpers ---- */

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;

	cr_assert(json_object_object_get_ex(o, key, &v), "no \"%s\" in %s", key,
		  json_object_to_json_string(o));
	return v;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v = get(o, key);

	cr_assert(json_object_is_type(v, json_type_string), "\"%s\" is not a string", key);
	return json_object_get_string(v);
}

/* The value object of attribute @key in a KeyValue list, or NULL. */
static json_object *attr(json_object *list, const char *key)
{
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *kv = json_object_array_get_idx(list, i);

		if (!strcmp(get_str(kv, "key"), key))
			return get(kv, "value");
	}
	return NULL;
}

static const char *attr_str(json_object *list, const char *key)
{
	json_object *v = attr(list, key);

	return v ? get_str(v, "stringValue") : NULL;
}

static bool is_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* ---- spans to render ---- */

static struct trace_span make_span(int i)
{
	struct trace_span s = {.sampled = true, .kind = TRACE_KIND_CLIENT};

	memset(s.trace_id, 0x11, sizeof(s.trace_id));
	memset(s.span_id, 0x20 + i, sizeof(s.span_id));
	if (i) /* span 0 is a root */
		memset(s.parent_id, 0x30, sizeof(s.parent_id));
	s.start_ns = 1700000000123456789ull + i;
	s.end_ns = s.start_ns + 2500000;
	s.status_code = 200;
	s.retries = (uint16_t)i;
	trace_span_set(&s, service, "default/web", 11);
	trace_span_set(&s, route, "api", 3);
	trace_span_set(&s, endpoint, "10.0.0.5:8080", 13);
	trace_span_set(&s, method, "GET", 3);
	return s;
}

static json_object *parse(const char *buf, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o = json_tokener_parse_ex(tok, buf, (int)len);

	cr_assert_not_null(o, "not JSON (%s): %.*s",
			   json_tokener_error_desc(json_tokener_get_error(tok)), (int)len, buf);
	cr_assert_eq(tok->char_offset, (int)len, "trailing bytes after the JSON");
	json_tokener_free(tok);
	return o;
}

/* resourceSpans[0].scopeSpans[0].spans, checking the envelope on the way. */
static json_object *spans_of(json_object *root, const char *want_host)
{
	json_object *rs = get(root, "resourceSpans");

	cr_assert_eq(json_object_array_length(rs), 1);
	json_object *r0 = json_object_array_get_idx(rs, 0);
	json_object *res_attrs = get(get(r0, "resource"), "attributes");

	cr_expect_str_eq(attr_str(res_attrs, "service.name"), "shoal");
	if (want_host)
		cr_expect_str_eq(attr_str(res_attrs, "host.name"), want_host);
	cr_expect_not_null(attr_str(res_attrs, "service.version"));
	json_object *ss = get(r0, "scopeSpans");

	cr_assert_eq(json_object_array_length(ss), 1);
	json_object *s0 = json_object_array_get_idx(ss, 0);

	cr_expect_str_eq(get_str(get(s0, "scope"), "name"), "shoal.proxy");
	return get(s0, "spans");
}

Test(otlp_render, structure_and_types)
{
	struct otlp_resource res = {.host_name = "node-1"};
	struct trace_span sp[3] = {make_span(0), make_span(1), make_span(2)};
	static char buf[OTLP_BODY_MAX];
	size_t len;

	sp[1].error = true;
	sp[1].status_code = 503;
	sp[2].route[0] = '\0';
	sp[2].status_code = 0; /* no response */
	trace_span_set(&sp[2], name, "custom", 6);
	cr_assert_eq(otlp_render(&res, sp, 3, buf, sizeof(buf), &len), 3);
	json_object *root = parse(buf, len);
	json_object *spans = spans_of(root, "node-1");

	cr_assert_eq(json_object_array_length(spans), 3);
	for (int i = 0; i < 3; i++) {
		json_object *s = json_object_array_get_idx(spans, i);
		json_object *attrs = get(s, "attributes");
		char want[32];

		cr_expect(is_hex(get_str(s, "traceId"), 32));
		cr_expect_str_eq(get_str(s, "traceId"), "11111111111111111111111111111111");
		cr_expect(is_hex(get_str(s, "spanId"), 16));
		snprintf(want, sizeof(want), "%llu", 1700000000123456789ull + i);
		cr_expect_str_eq(get_str(s, "startTimeUnixNano"), want, "times are strings");
		snprintf(want, sizeof(want), "%llu", 1700000000123456789ull + i + 2500000);
		cr_expect_str_eq(get_str(s, "endTimeUnixNano"), want);
		cr_expect_eq(json_object_get_int(get(s, "kind")), 3, "SPAN_KIND_CLIENT");
		cr_expect(json_object_is_type(get(s, "kind"), json_type_int));
		cr_expect_str_eq(attr_str(attrs, "shoal.service"), "default/web");
		cr_expect_str_eq(attr_str(attrs, "shoal.endpoint"), "10.0.0.5:8080");
		cr_expect_str_eq(attr_str(attrs, "http.method"), "GET");
		snprintf(want, sizeof(want), "%d", i);
		cr_expect_str_eq(get_str(attr(attrs, "shoal.retries"), "intValue"), want);
		cr_expect(
		    json_object_is_type(get(attr(attrs, "error"), "boolValue"), json_type_boolean));
	}
	json_object *s0 = json_object_array_get_idx(spans, 0);
	json_object *s1 = json_object_array_get_idx(spans, 1);
	json_object *s2 = json_object_array_get_idx(spans, 2);
	json_object *v;

	cr_expect_not(json_object_object_get_ex(s0, "parentSpanId", &v), "a root has no parent");
	cr_expect_str_eq(get_str(s1, "parentSpanId"), "3030303030303030");
	cr_expect_str_eq(get_str(s0, "spanId"), "2020202020202020");
	cr_expect_str_eq(get_str(s0, "name"), "GET api", "default name: method and route");
	cr_expect_str_eq(get_str(s2, "name"), "custom");
	cr_expect_str_eq(get_str(attr(get(s0, "attributes"), "http.status_code"), "intValue"),
			 "200");
	cr_expect_not(json_object_object_get_ex(s0, "status", &v), "status unset when fine");
	cr_expect_eq(json_object_get_int(get(get(s1, "status"), "code")), 2, "STATUS_CODE_ERROR");
	cr_expect(json_object_get_boolean(get(attr(get(s1, "attributes"), "error"), "boolValue")));
	cr_expect_str_eq(get_str(attr(get(s1, "attributes"), "http.status_code"), "intValue"),
			 "503");
	cr_expect_null(attr(get(s2, "attributes"), "http.status_code"), "no response: no status");
	cr_expect_null(attr(get(s2, "attributes"), "shoal.route"), "empty strings left out");
	json_object_put(root);
}

Test(otlp_render, escaping)
{
	struct trace_span s = make_span(1);
	static char buf[OTLP_BODY_MAX];
	size_t len;

	trace_span_set(&s, route, "a\"b\\c\nd\x01\xff", 10);
	cr_assert_eq(otlp_render(NULL, &s, 1, buf, sizeof(buf), &len), 1);
	json_object *root = parse(buf, len);
	json_object *sp = json_object_array_get_idx(spans_of(root, NULL), 0);

	/* \u00ff reads back as U+00FF in UTF-8: valid JSON, no stray byte. */
	cr_expect_str_eq(attr_str(get(sp, "attributes"), "shoal.route"), "a\"b\\c\nd\x01\xc3\xbf");
	json_object_put(root);
}

Test(otlp_render, bounds)
{
	struct trace_span worst = make_span(1), two[2] = {make_span(1), make_span(2)};
	static char buf[OTLP_BODY_MAX];
	size_t len, one_len, two_len;

	/* Every string full of bytes that escape to six: the per-span bound. */
	memset(worst.name, 0x01, sizeof(worst.name) - 1);
	memset(worst.service, 0x01, sizeof(worst.service) - 1);
	memset(worst.route, 0x01, sizeof(worst.route) - 1);
	memset(worst.endpoint, 0x01, sizeof(worst.endpoint) - 1);
	memset(worst.method, 0x01, sizeof(worst.method) - 1);
	memset(worst.source_identity, 0x01, sizeof(worst.source_identity) - 1);
	memset(worst.destination_identity, 0x01, sizeof(worst.destination_identity) - 1);
	worst.source_identity[1] = worst.destination_identity[1] = '/'; /* rendered only so */
	worst.mtls = true;
	worst.start_ns = worst.end_ns = UINT64_MAX;
	worst.status_code = UINT16_MAX;
	worst.retries = UINT16_MAX;
	worst.error = true;
	worst.grpc = true;
	worst.grpc_status = 16;
	/* And the longest trust domain the exporter keeps, in front of both identities. */
	char td[OTLP_RESOURCE_STR_MAX];
	struct otlp_resource res = {.trust_domain = td};

	memset(td, 0x01, sizeof(td) - 1);
	td[sizeof(td) - 1] = '\0';
	cr_assert_eq(otlp_render(&res, &worst, 1, buf, sizeof(buf), &one_len), 1);
	cr_expect_leq(one_len, 512 + OTLP_SPAN_JSON_MAX, "%zu bytes", one_len);
	cr_assert_eq(
	    otlp_render(&res, &worst, 1, buf, OTLP_ENVELOPE_JSON_MAX + OTLP_SPAN_JSON_MAX, &len),
	    1);
	json_object *wr = parse(buf, len);
	json_object *wa = get(json_object_array_get_idx(spans_of(wr, NULL), 0), "attributes");

	cr_expect_not_null(attr_str(wa, "shoal.source.identity"), "the worst span has them all");
	cr_expect_not_null(attr_str(wa, "shoal.destination.identity"));
	json_object_put(wr);

	/* A cap between one and two spans renders one, valid. */
	cr_assert_eq(otlp_render(NULL, two, 2, buf, sizeof(buf), &two_len), 2);
	cr_assert_eq(otlp_render(NULL, two, 1, buf, sizeof(buf), &one_len), 1);
	cr_expect_eq(otlp_render(NULL, two, 2, buf, two_len - 1, &len), 1);
	cr_expect_eq(len, one_len);
	json_object_put(parse(buf, len));
	cr_expect_eq(otlp_render(NULL, two, 2, buf, two_len, &len), 2);
	cr_expect_eq(otlp_render(NULL, two, 2, buf, 40, &len), 0, "not even the envelope");
	cr_expect_eq(len, 0);
	cr_expect_eq(otlp_render(NULL, two, 0, buf, sizeof(buf), &len), 0, "no spans, no body");
}

/* ---- the receiver ---- */

static pid_t receiver_pid;
static int receiver_port;
static struct tracer *tracer;
static struct otlp_exporter *exporter;

static void receiver_start(const char *status)
{
	int pfd[2];
	char line[128] = "";
	size_t got = 0;

	if (!OTLP_TEST_PYTHON[0])
		cr_skip_test("python3 not found at configure time");
	cr_assert_eq(pipe(pfd), 0);
	receiver_pid = fork();
	cr_assert_geq(receiver_pid, 0);
	if (!receiver_pid) {
		dup2(pfd[1], STDOUT_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		execl(OTLP_TEST_PYTHON, "python3", OTLP_TEST_RECEIVER, "--port", "0", "--status",
		      status, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	/* "listening 127.0.0.1:PORT\n", within a few seconds. */
	while (!strchr(line, '\n')) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		ssize_t n;

		cr_assert_eq(poll(&p, 1, 10000), 1, "the receiver did not start");
		n = read(pfd[0], line + got, sizeof(line) - 1 - got);
		cr_assert_gt(n, 0, "the receiver exited");
		got += n;
		line[got] = '\0';
	}
	close(pfd[0]);
	cr_assert_eq(sscanf(line, "listening 127.0.0.1:%d", &receiver_port), 1, "%s", line);
}

static void teardown(void)
{
	otlp_exporter_stop(exporter);
	exporter = NULL;
	tracer_destroy(tracer);
	tracer = NULL;
	if (receiver_pid > 0) {
		kill(receiver_pid, SIGTERM);
		waitpid(receiver_pid, NULL, 0);
		receiver_pid = 0;
	}
}

struct grow {
	char *p;
	size_t len;
};

static size_t grow_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct grow *g = arg;
	size_t n = size * nmemb;

	g->p = realloc(g->p, g->len + n + 1);
	memcpy(g->p + g->len, ptr, n);
	g->len += n;
	g->p[g->len] = '\0';
	return n;
}

/* The test's own HTTP client: the libcurl the agent loads, loaded the same way. */
static CURL *test_client(void)
{
	char err[512];

	cr_assert_eq(curl_api_load("the test's HTTP client", err, sizeof(err)), 0, "%s", err);
	return curl_easy_init();
}

/* The receiver's GET /spans, parsed. */
static json_object *received(void)
{
	struct grow g = {0};
	char url[64];
	CURL *c = test_client();

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/spans", receiver_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	json_object *o = parse(g.p, g.len);

	free(g.p);
	return o;
}

static void make_tracer(unsigned int workers, uint32_t ring)
{
	struct trace_config cfg = {.sample_rate = 1.0, .ring_size = ring, .seed = 1};
	char err[256];

	cr_assert_eq(tracer_create(&cfg, workers, &tracer, err, sizeof(err)), 0, "%s", err);
}

static void start_exporter(const char *url, uint32_t delay_ms, uint32_t timeout_ms)
{
	struct otlp_opts o = {.url = url,
			      .delay_ms = delay_ms,
			      .timeout_ms = timeout_ms,
			      .resource = {.host_name = "node-1", .trust_domain = "mesh.example"}};
	char err[256];

	cr_assert_eq(otlp_exporter_start(tracer, &o, &exporter, err, sizeof(err)), 0, "%s", err);
}

/* Wait until nothing is queued (everything exported or dropped). */
static void wait_drained(double timeout_ms)
{
	struct trace_stats st;
	double until = now_ms() + timeout_ms;

	do {
		trace_stats(tracer, &st);
		if (!st.queued)
			return;
		usleep(10000);
	} while (now_ms() < until);
	cr_assert_fail("%llu spans still queued after %.0f ms", (unsigned long long)st.queued,
		       timeout_ms);
}

struct hdr_list {
	const char *const *names, *const *vals;
	size_t n;
};

static bool get_hdr(void *arg, const char *name, unsigned int nth, const char **val, size_t *len)
{
	struct hdr_list *h = arg;

	for (size_t i = 0; i < h->n; i++)
		if (!strcasecmp(h->names[i], name) && nth-- == 0) {
			*val = h->vals[i];
			*len = strlen(h->vals[i]);
			return true;
		}
	return false;
}

/* Feed the "traceparent: ...\r\n" lines trace_inject wrote to the next hop. */
static void next_hop(const char *lines, struct trace_ctx *in)
{
	static char vals[4][TRACE_INJECT_MAX];
	static const char *names[4], *valp[4];
	size_t n = 0;

	for (const char *p = lines; *p && n < 4;) {
		const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");
		static char namebuf[4][32];

		snprintf(namebuf[n], sizeof(namebuf[n]), "%.*s", (int)(colon - p), p);
		snprintf(vals[n], sizeof(vals[n]), "%.*s", (int)(eol - colon - 2), colon + 2);
		names[n] = namebuf[n];
		valp[n] = vals[n];
		n++;
		p = eol + 2;
	}
	struct hdr_list h = {names, valp, n};

	trace_extract(get_hdr, &h, in);
}

TestSuite(exporter, .fini = teardown, .timeout = 60);

/* Two hops through two workers: every span arrives, linked parent to child. */
Test(exporter, two_hops_reach_the_receiver)
{
	const int traces = 300;
	char url[64];
	uint8_t hop1_ids[300][8], hop2_parent[300][8];

	receiver_start("200");
	make_tracer(2, 1024);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", receiver_port);
	start_exporter(url, 50, 2000);

	for (int i = 0; i < traces; i++) {
		struct trace_ctx in, out, in2, out2;
		struct trace_span s1, s2;
		char lines[TRACE_INJECT_MAX + 1];
		static const char *const names[] = {"traceparent", "tracestate"};
		static const char *const vals[] = {"00-" TID "-" SID "-01", "vendor=x"};
		struct hdr_list h = {names, vals, 2};
		int n;

		trace_extract(get_hdr, &h, &in);
		cr_assert(trace_start(tracer_worker(tracer, 0), &in, &out, &s1));
		trace_span_set(&s1, service, "default/front", 13);
		trace_span_set(&s1, method, "GET", 3);
		trace_span_set(&s1, source_identity, "default/client", 14);
		s1.status_code = 200;
		n = trace_inject(&out, lines, sizeof(lines));
		cr_assert_gt(n, 0);
		lines[n] = '\0';
		/* The second proxy sees what the first sent on. */
		next_hop(lines, &in2);
		cr_assert_eq(in2.format, TRACE_FMT_W3C);
		cr_assert_eq(in2.tracestate_len, 8);
		cr_assert(trace_start(tracer_worker(tracer, 1), &in2, &out2, &s2));
		trace_span_set(&s2, service, "default/back", 12);
		s2.retries = 1;
		memcpy(hop1_ids[i], s1.span_id, 8);
		memcpy(hop2_parent[i], s2.parent_id, 8);
		cr_assert_eq(trace_record(tracer_worker(tracer, 1), &s2), 0);
		cr_assert_eq(trace_record(tracer_worker(tracer, 0), &s1), 0);
	}
	wait_drained(10000);

	struct trace_stats st;

	trace_stats(tracer, &st);
	cr_expect_eq(st.exported, 2 * traces);
	cr_expect_eq(st.dropped_ring_full + st.dropped_unreachable + st.dropped_rejected, 0);
	cr_expect_geq(st.export_requests, 1);

	json_object *r = received();
	json_object *spans = get(r, "spans");

	cr_expect_eq(json_object_array_length(get(r, "errors")), 0, "receiver found errors: %s",
		     json_object_to_json_string(get(r, "errors")));
	cr_assert_eq(json_object_array_length(spans), 2 * traces);
	/* Every hop-2 span's parent is a hop-1 span; every hop-1 span's parent
	 * is the caller's span; all in the caller's trace. */
	int front = 0, back = 0, linked = 0;

	for (size_t i = 0; i < json_object_array_length(spans); i++) {
		json_object *s = json_object_array_get_idx(spans, i);
		json_object *attrs = get(s, "attributes");
		const char *svc = get_str(attrs, "shoal.service");

		cr_expect_str_eq(get_str(s, "traceId"), TID);
		cr_expect_str_eq(get_str(get(s, "resource"), "host.name"), "node-1");
		if (!strcmp(svc, "default/front")) {
			front++;
			cr_expect_str_eq(get_str(s, "parentSpanId"), SID);
			/* The trust domain is the exporter's option (otlp_resource). */
			cr_expect_str_eq(get_str(attrs, "shoal.source.identity"),
					 "spiffe://mesh.example/ns/default/sa/client");
			continue;
		}
		back++;
		char parent[17];

		snprintf(parent, sizeof(parent), "%s", get_str(s, "parentSpanId"));
		for (int k = 0; k < traces; k++) {
			char h[17];

			trace_hex(h, hop1_ids[k], 8);
			if (!strcmp(h, parent)) {
				char p2[17];

				trace_hex(p2, hop2_parent[k], 8);
				linked += !strcmp(p2, parent);
				break;
			}
		}
	}
	cr_expect_eq(front, traces);
	cr_expect_eq(back, traces);
	cr_expect_eq(linked, traces, "hop-2 spans whose parent is a hop-1 span");
	json_object_put(r);
}

/* Record @n spans on worker 0 as fast as possible; returns the ms taken. */
static double record_burst(int n)
{
	struct trace_worker *w = tracer_worker(tracer, 0);
	double t0 = now_ms();

	for (int i = 0; i < n; i++) {
		struct trace_ctx out;
		struct trace_span s;

		trace_start(w, NULL, &out, &s);
		s.status_code = 200;
		trace_record(w, &s);
	}
	return now_ms() - t0;
}

/* trace_record alone, @n times, on one prepared span: the call the
 * request path makes at the end of every sampled request. */
static double record_only(int n)
{
	struct trace_worker *w = tracer_worker(tracer, 0);
	struct trace_ctx out;
	struct trace_span s;
	double t0;

	trace_start(w, NULL, &out, &s);
	t0 = now_ms();
	for (int i = 0; i < n; i++) {
		s.end_ns = 0;
		trace_record(w, &s);
	}
	return now_ms() - t0;
}

static int closed_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

Test(exporter, collector_down_drops_and_counts)
{
	const int n = 100000;
	char url[64];
	struct trace_stats st;

	make_tracer(1, CONFIG_DEFAULT_TRACE_RING);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	start_exporter(url, 20, 500);
	double ms = record_burst(n);
	double rec_ms = record_only(n);

	usleep(300000); /* a few export rounds against the closed port */
	otlp_exporter_stop(exporter);
	exporter = NULL;
	trace_stats(tracer, &st);
	fprintf(stderr,
		"collector down: %d spans started+recorded in %.2f ms, %d records alone "
		"in %.2f ms (recorded %llu, ring full %llu, unreachable %llu, requests %llu)\n",
		n, ms, n, rec_ms, (unsigned long long)st.recorded,
		(unsigned long long)st.dropped_ring_full,
		(unsigned long long)st.dropped_unreachable, (unsigned long long)st.export_requests);
	cr_expect_lt(ms, RECORD_BUDGET_MS, "%d starts and records took %.2f ms", n, ms);
	cr_expect_lt(rec_ms, RECORD_BUDGET_MS, "%d records took %.2f ms", n, rec_ms);
	cr_expect_eq(st.exported, 0);
	cr_expect_eq(st.recorded + st.dropped_ring_full, 2 * (uint64_t)n);
	cr_expect_eq(st.dropped_unreachable, st.recorded,
		     "every recorded span is dropped, counted");
	cr_expect_eq(st.queued, 0);
	cr_expect_geq(st.export_failures, 1);
	cr_expect_leq(st.export_requests, 2, "backoff: no retry per batch");
}

/* A collector that accepts the connection and never answers: the exporter
 * sits in its POST; the workers must not notice. */
Test(exporter, collector_stuck_never_slows_records)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	char url[64];
	struct trace_stats st;

	cr_assert_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(lfd, 16), 0); /* the kernel completes handshakes; nobody reads */
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	make_tracer(1, 64);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", ntohs(sin.sin_port));
	start_exporter(url, 10, 1000);
	record_burst(10);
	usleep(100000); /* the first batch is now in a POST that hangs */

	double worst = 0, total = 0;

	for (int round = 0; round < 10; round++) {
		double ms = record_burst(10000);

		total += ms;
		worst = ms > worst ? ms : worst;
	}
	trace_stats(tracer, &st);
	fprintf(stderr,
		"collector stuck: 100000 records in %.2f ms (worst 10k: %.2f ms), "
		"ring full %llu\n",
		total, worst, (unsigned long long)st.dropped_ring_full);
	cr_expect_lt(total, RECORD_BUDGET_MS, "100k records took %.2f ms with the exporter stuck",
		     total);
	cr_expect_geq(st.dropped_ring_full, 100000 - 64, "a stuck exporter fills the ring");
	cr_expect_eq(st.exported, 0);
	double t0 = now_ms();

	otlp_exporter_stop(exporter);
	exporter = NULL;
	fprintf(stderr, "collector stuck: stop took %.0f ms\n", now_ms() - t0);
	cr_expect_lt(now_ms() - t0, 2500, "stop is bounded by the POST timeout");
	trace_stats(tracer, &st);
	cr_expect_eq(st.queued, 0);
	cr_expect_eq(st.dropped_unreachable, st.recorded);
	close(lfd);
}

Test(exporter, rejected_then_recovered)
{
	char url[64], ctl[64];
	struct trace_stats st;

	receiver_start("503");
	make_tracer(1, 256);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", receiver_port);
	start_exporter(url, 20, 2000);
	record_burst(5);
	wait_drained(5000);
	trace_stats(tracer, &st);
	cr_expect_eq(st.dropped_rejected, 5, "503: the batch is dropped, counted as rejected");
	cr_expect_eq(st.exported, 0);

	/* Recover the collector; after the backoff (1 s) spans flow again. */
	CURL *c = test_client();

	snprintf(ctl, sizeof(ctl), "http://127.0.0.1:%d/_ctl/status", receiver_port);
	curl_easy_setopt(c, CURLOPT_URL, ctl);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, "200");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow_write);
	struct grow g = {0};

	curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_cleanup(c);
	free(g.p);
	usleep((OTLP_BACKOFF_MIN_MS + 200) * 1000);
	record_burst(7);
	wait_drained(5000);
	trace_stats(tracer, &st);
	cr_expect_eq(st.exported, 7, "exported %llu", (unsigned long long)st.exported);
	cr_expect_eq(st.dropped_rejected, 5);

	json_object *r = received();

	cr_expect_eq(json_object_array_length(get(r, "spans")), 7);
	cr_expect_eq(json_object_array_length(get(r, "errors")), 0);
	json_object_put(r);
}

/* The proxy variables of the environment are not the exporter's: with all
 * of them at a closed port, spans still reach the collector directly. */
Test(exporter, proxy_environment_is_ignored)
{
	static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "HTTPS_PROXY",
					   "https_proxy", "ALL_PROXY",	"all_proxy"};
	char url[64], proxy[64];
	struct trace_stats st;

	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", closed_port());
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		setenv(vars[i], proxy, 1);
	unsetenv("NO_PROXY");
	unsetenv("no_proxy");
	receiver_start("200");
	make_tracer(1, 256);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", receiver_port);
	start_exporter(url, 20, 2000);
	record_burst(3);
	wait_drained(5000);
	trace_stats(tracer, &st);
	cr_expect_eq(st.exported, 3, "exported %llu with the proxy variables at %s",
		     (unsigned long long)st.exported, proxy);
	cr_expect_eq(st.dropped_unreachable, 0);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

Test(exporter, options_are_checked)
{
	struct otlp_opts o = {.url = "ftp://127.0.0.1/v1/traces"};
	char err[256];

	make_tracer(1, 16);
	cr_expect_eq(otlp_exporter_start(tracer, &o, &exporter, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "ftp://"), "%s", err);
	o.url = "http://127.0.0.1:1/v1/traces";
	o.batch_max = CONFIG_MAX_TRACE_BATCH + 1;
	cr_expect_eq(otlp_exporter_start(tracer, &o, &exporter, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "batch"), "%s", err);
	cr_expect_null(exporter);
}

/* POST @body to the receiver's /v1/traces; returns the HTTP status. */
static long post_raw(const char *body)
{
	CURL *c = test_client(); /* first: it loads libcurl */
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	struct grow g = {0};
	char url[64];
	long status = 0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", receiver_port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
	cr_assert_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	free(g.p);
	return status;
}

#define RES                                                                                        \
	"{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":"     \
	"\"x\"}}]},"
#define SPAN_OK                                                                                    \
	"\"traceId\":\"" TID "\",\"spanId\":\"" SID "\",\"name\":\"n\",\"kind\":3,"                \
	"\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\""
#define BODY(res, span) "{\"resourceSpans\":[" res "\"scopeSpans\":[{\"spans\":[{" span "}]}]}]}"

/* The receiver is only worth its verdicts if it says no: the mistakes an
 * exporter could make, each refused. */
Test(exporter, receiver_refuses_malformed_requests)
{
	static const char *const bad[] = {
	    "{\"resourceSpans\":[]}",
	    "not json",
	    BODY("{\"resource\":{\"attributes\":[]},", SPAN_OK), /* no service.name */
	    BODY(RES, "\"traceId\":\"4BF92F3577B34DA6A3CE929D0E0E4736\",\"spanId\":\"" SID
		      "\",\"name\":\"n\",\"startTimeUnixNano\":\"1\",\"endTimeUnixNano\":\"2\""),
	    BODY(RES, "\"traceId\":\"" TID "\",\"spanId\":\"" SID
		      "\",\"name\":\"n\",\"startTimeUnixNano\":1,\"endTimeUnixNano\":\"2\""),
	    BODY(RES, SPAN_OK ",\"parentSpanId\":\"0000000000000000\""),
	    BODY(RES, SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":5}}]"),
	    BODY(RES, SPAN_OK ",\"attributes\":[{\"key\":\"a\",\"value\":{}}]"),
	    BODY(RES, SPAN_OK ",\"kind\":\"SPAN_KIND_CLIENT\""),
	    BODY(RES, SPAN_OK ",\"status\":{\"code\":7}"),
	    BODY(RES, SPAN_OK ",\"bogus\":1"),
	};

	receiver_start("200");
	cr_assert_eq(post_raw(BODY(RES, SPAN_OK)), 200, "the minimal valid request");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(post_raw(bad[i]), 400, "accepted: %s", bad[i]);

	json_object *r = received();

	cr_expect_eq(json_object_array_length(get(r, "spans")), 1);
	cr_expect_geq(json_object_array_length(get(r, "errors")), sizeof(bad) / sizeof(bad[0]));
	json_object_put(r);
}

struct busy {
	struct trace_worker *w;
	_Atomic bool quit;
	uint64_t n;
};

static void *busy_producer(void *arg)
{
	struct busy *b = arg;

	while (!atomic_load(&b->quit)) {
		struct trace_ctx out;
		struct trace_span s;

		trace_start(b->w, NULL, &out, &s);
		trace_record(b->w, &s);
		b->n++;
	}
	return NULL;
}

/* otlp_exporter_stop must return even when workers keep recording. */
Test(exporter, stop_is_bounded_under_load)
{
	struct busy b = {0};
	char url[64];
	pthread_t th;

	make_tracer(1, 64);
	b.w = tracer_worker(tracer, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	start_exporter(url, 5, 200);
	cr_assert_eq(pthread_create(&th, NULL, busy_producer, &b), 0);
	usleep(50000);
	double t0 = now_ms();

	otlp_exporter_stop(exporter);
	exporter = NULL;
	double took = now_ms() - t0;

	atomic_store(&b.quit, true);
	pthread_join(th, NULL);
	cr_expect_lt(took, 1000, "stop took %.0f ms", took);
	cr_expect_gt(b.n, 0);
}

Test(otlp_render, grpc_attributes)
{
	struct trace_span sp[3] = {make_span(0), make_span(1), make_span(2)};
	static char buf[OTLP_BODY_MAX];
	size_t len;

	/* An HTTP/1 span, a gRPC call answered 14, a gRPC call reset (no code). */
	sp[1].grpc = true;
	sp[1].grpc_status = 14;
	sp[2].grpc = true;
	sp[2].grpc_status = TRACE_GRPC_NONE;
	cr_assert_eq(otlp_render(NULL, sp, 3, buf, sizeof(buf), &len), 3);
	json_object *root = parse(buf, len);
	json_object *spans = spans_of(root, NULL);
	json_object *a0 = get(json_object_array_get_idx(spans, 0), "attributes");
	json_object *a1 = get(json_object_array_get_idx(spans, 1), "attributes");
	json_object *a2 = get(json_object_array_get_idx(spans, 2), "attributes");

	cr_expect_null(attr_str(a0, "rpc.system"), "HTTP/1: no rpc attributes");
	cr_expect_str_eq(attr_str(a1, "rpc.system"), "grpc");
	cr_expect_str_eq(get_str(attr(a1, "rpc.grpc.status_code"), "intValue"), "14");
	cr_expect_str_eq(attr_str(a2, "rpc.system"), "grpc");
	cr_expect_null(attr(a2, "rpc.grpc.status_code"), "no code, no attribute");
	json_object_put(root);
}

/*
 * The call's identities (docs/tracing.md): a call through the mTLS tunnel
 * carries both as SPIFFE IDs of the exporter's trust domain and
 * shoal.mtls true; a plaintext one from a known caller only the source and
 * shoal.mtls false; an unknown caller none; no endpoint tried, no
 * shoal.mtls at all.
 */
Test(otlp_render, identities)
{
	struct trace_span sp[4] = {make_span(0), make_span(1), make_span(2), make_span(3)};
	struct otlp_resource res = {.trust_domain = "prod.example"};
	static char buf[OTLP_BODY_MAX];
	json_object *a[4], *root;
	size_t len;

	trace_span_set(&sp[0], source_identity, "default/client", 14);
	trace_span_set(&sp[0], destination_identity, "shop/web", 8);
	sp[0].mtls = true;
	trace_span_set(&sp[1], source_identity, "default/client", 14);
	sp[3].endpoint[0] = '\0'; /* refused before any try */
	cr_assert_eq(otlp_render(&res, sp, 4, buf, sizeof(buf), &len), 4);
	root = parse(buf, len);
	for (int i = 0; i < 4; i++)
		a[i] = get(json_object_array_get_idx(spans_of(root, NULL), i), "attributes");

	cr_expect_str_eq(attr_str(a[0], "shoal.source.identity"),
			 "spiffe://prod.example/ns/default/sa/client");
	cr_expect_str_eq(attr_str(a[0], "shoal.destination.identity"),
			 "spiffe://prod.example/ns/shop/sa/web");
	cr_expect(json_object_get_boolean(get(attr(a[0], "shoal.mtls"), "boolValue")));

	cr_expect_str_eq(attr_str(a[1], "shoal.source.identity"),
			 "spiffe://prod.example/ns/default/sa/client");
	cr_expect_null(attr(a[1], "shoal.destination.identity"), "plaintext: no proven peer");
	cr_assert_not_null(attr(a[1], "shoal.mtls"));
	cr_expect(
	    json_object_is_type(get(attr(a[1], "shoal.mtls"), "boolValue"), json_type_boolean));
	cr_expect_not(json_object_get_boolean(get(attr(a[1], "shoal.mtls"), "boolValue")));

	cr_expect_null(attr(a[2], "shoal.source.identity"), "an unknown caller: left out");
	cr_expect_null(attr(a[2], "shoal.destination.identity"));
	cr_expect_null(attr(a[3], "shoal.mtls"), "no endpoint tried: no hop to tell");
	json_object_put(root);

	/* Without a trust domain, the default's (identity.trust_domain's). */
	cr_assert_eq(otlp_render(NULL, sp, 1, buf, sizeof(buf), &len), 1);
	root = parse(buf, len);
	a[0] = get(json_object_array_get_idx(spans_of(root, NULL), 0), "attributes");
	cr_expect_str_eq(attr_str(a[0], "shoal.source.identity"),
			 "spiffe://" CONFIG_DEFAULT_TRUST_DOMAIN "/ns/default/sa/client");
	json_object_put(root);
}

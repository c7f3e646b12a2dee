// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The OTLP/HTTP JSON exporter: a bounded JSON writer for the
 * ExportTraceServiceRequest, and the thread that drains the span rings
 * and POSTs batches with libcurl. See otlp.h for the contracts.
 */
#include "telemetry/otlp.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/curl_api.h"
#include "common/fixed_buf.h"
#include "common/log.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "unknown"
#endif

_Static_assert(OTLP_BODY_MAX >= OTLP_ENVELOPE_JSON_MAX + OTLP_SPAN_JSON_MAX,
	       "a POST body must hold at least one span");

/* What closes the body after the last span. */
#define OTLP_TRAILER "]}]}]}"

/* ---- the JSON writer, into the fixed-size body (common/fixed_buf.h) ---- */

/*
 * A JSON string. Bytes outside printable ASCII are written as \u00XX: span
 * strings come from config and request heads, and a collector must never
 * receive invalid UTF-8 because a header held a stray byte.
 */
static void jw_str(struct fixed_buf *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	fixed_buf_put(w, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') {
			char e[2] = {'\\', (char)*c};

			fixed_buf_put(w, e, 2);
		} else if (*c < 0x20 || *c >= 0x7f) {
			char e[6] = {'\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 0xf]};

			fixed_buf_put(w, e, 6);
		} else {
			fixed_buf_put(w, (const char *)c, 1);
		}
	}
	fixed_buf_put(w, "\"", 1);
}

/* OTLP JSON encodes 64-bit integers as decimal strings. */
static void jw_u64_str(struct fixed_buf *w, uint64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "\"%" PRIu64 "\"", v);

	fixed_buf_put(w, b, (size_t)n);
}

static void jw_hex(struct fixed_buf *w, const uint8_t *id, size_t n)
{
	char h[2 * TRACE_ID_SIZE + 1];

	trace_hex(h, id, n);
	fixed_buf_put(w, "\"", 1);
	fixed_buf_put(w, h, 2 * n);
	fixed_buf_put(w, "\"", 1);
}

/* One KeyValue; *first tracks the comma. */
static void attr_key(struct fixed_buf *w, bool *first, const char *key)
{
	if (!*first)
		fixed_buf_put(w, ",", 1);
	*first = false;
	fixed_buf_puts(w, "{\"key\":");
	jw_str(w, key);
	fixed_buf_puts(w, ",\"value\":{");
}

static void attr_str(struct fixed_buf *w, bool *first, const char *key, const char *val)
{
	if (!val || !*val)
		return; /* an empty value says nothing; leave it out */
	attr_key(w, first, key);
	fixed_buf_puts(w, "\"stringValue\":");
	jw_str(w, val);
	fixed_buf_puts(w, "}}");
}

static void attr_int(struct fixed_buf *w, bool *first, const char *key, uint64_t val)
{
	attr_key(w, first, key);
	fixed_buf_puts(w, "\"intValue\":");
	jw_u64_str(w, val);
	fixed_buf_puts(w, "}}");
}

static void attr_bool(struct fixed_buf *w, bool *first, const char *key, bool val)
{
	attr_key(w, first, key);
	fixed_buf_puts(w, val ? "\"boolValue\":true}}" : "\"boolValue\":false}}");
}

/*
 * A workload identity, "namespace/serviceaccount", as its SPIFFE ID in
 * trust domain td. Left out when empty, or not of that shape (nothing
 * the proxy records: config and the pod table check identities).
 */
static void attr_spiffe(struct fixed_buf *w, bool *first, const char *key, const char *td,
			const char *ident)
{
	char id[sizeof("spiffe:///ns//sa/") + OTLP_RESOURCE_STR_MAX + TRACE_IDENTITY_MAX];
	const char *slash = strchr(ident, '/');

	if (!slash)
		return;
	snprintf(id, sizeof(id), "spiffe://%s/ns/%.*s/sa/%s", td, (int)(slash - ident), ident,
		 slash + 1);
	attr_str(w, first, key, id);
}

static bool id_is_zero(const uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (id[i])
			return false;
	return true;
}

/* A span in the OTLP JSON mapping (opentelemetry-proto trace.proto). */
static void render_span(struct fixed_buf *w, const struct trace_span *s, const char *td)
{
	char name[TRACE_NAME_MAX];
	bool first = true;

	/* Default name per the HTTP client span convention: "{method} {route}". */
	if (s->name[0])
		snprintf(name, sizeof(name), "%s", s->name);
	else
		snprintf(name, sizeof(name), "%s%s%s", s->method[0] ? s->method : "HTTP",
			 s->route[0] ? " " : "", s->route);
	fixed_buf_puts(w, "{\"traceId\":");
	jw_hex(w, s->trace_id, TRACE_ID_SIZE);
	fixed_buf_puts(w, ",\"spanId\":");
	jw_hex(w, s->span_id, TRACE_SPAN_ID_SIZE);
	if (!id_is_zero(s->parent_id, TRACE_SPAN_ID_SIZE)) {
		fixed_buf_puts(w, ",\"parentSpanId\":");
		jw_hex(w, s->parent_id, TRACE_SPAN_ID_SIZE);
	}
	fixed_buf_puts(w, ",\"name\":");
	jw_str(w, name);
	fixed_buf_puts(w, s->kind == TRACE_KIND_SERVER ? ",\"kind\":2" : ",\"kind\":3");
	fixed_buf_puts(w, ",\"startTimeUnixNano\":");
	jw_u64_str(w, s->start_ns);
	fixed_buf_puts(w, ",\"endTimeUnixNano\":");
	jw_u64_str(w, s->end_ns);
	fixed_buf_puts(w, ",\"attributes\":[");
	attr_str(w, &first, "shoal.service", s->service);
	attr_str(w, &first, "shoal.route", s->route);
	attr_str(w, &first, "shoal.endpoint", s->endpoint);
	attr_str(w, &first, "http.method", s->method);
	attr_spiffe(w, &first, "shoal.source.identity", td, s->source_identity);
	attr_spiffe(w, &first, "shoal.destination.identity", td, s->destination_identity);
	/* Only when an endpoint was tried: false then says "in plaintext". */
	if (s->endpoint[0])
		attr_bool(w, &first, "shoal.mtls", s->mtls);
	if (s->status_code)
		attr_int(w, &first, "http.status_code", s->status_code);
	if (s->grpc) {
		/* OpenTelemetry's RPC conventions (rpc.system, rpc.grpc.status_code). */
		attr_str(w, &first, "rpc.system", "grpc");
		if (s->grpc_status != TRACE_GRPC_NONE)
			attr_int(w, &first, "rpc.grpc.status_code", s->grpc_status);
	}
	attr_int(w, &first, "shoal.retries", s->retries);
	attr_bool(w, &first, "error", s->error);
	/* STATUS_CODE_ERROR when failed; unset (omitted) otherwise, as the
	 * HTTP conventions ask of a client span without an error. */
	fixed_buf_puts(w, s->error ? "],\"status\":{\"code\":2}}" : "]}");
}

size_t otlp_render(const struct otlp_resource *res, const struct trace_span *spans, size_t n,
		   char *buf, size_t cap, size_t *len)
{
	const size_t trailer = sizeof(OTLP_TRAILER) - 1;
	const char *version = res && res->version ? res->version : SHOAL_VERSION;
	const char *td = res && res->trust_domain && *res->trust_domain
			     ? res->trust_domain
			     : CONFIG_DEFAULT_TRUST_DOMAIN;
	struct fixed_buf w = {.p = buf, .cap = cap > trailer ? cap - trailer : 0};
	bool first = true;
	size_t done = 0;

	*len = 0;
	fixed_buf_puts(&w, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
	attr_str(&w, &first, "service.name",
		 res && res->service_name && *res->service_name
		     ? res->service_name
		     : CONFIG_DEFAULT_TRACE_SERVICE_NAME);
	attr_str(&w, &first, "service.version", version);
	if (res)
		attr_str(&w, &first, "host.name", res->host_name);
	fixed_buf_puts(&w, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"shoal.proxy\",\"version\":");
	jw_str(&w, version);
	fixed_buf_puts(&w, "},\"spans\":[");
	if (w.over)
		return 0;
	for (; done < n; done++) {
		size_t mark = w.len;

		if (done)
			fixed_buf_put(&w, ",", 1);
		render_span(&w, &spans[done], td);
		if (w.over) {
			w.len = mark;
			w.over = false;
			break;
		}
	}
	if (!done)
		return 0;
	w.cap = cap;
	fixed_buf_puts(&w, OTLP_TRAILER);
	*len = w.len;
	return done;
}

/* ---- the exporter ---- */

enum post_result {
	POST_OK,
	POST_REJECTED,	  /* the collector answered, not 2xx */
	POST_UNREACHABLE, /* no answer: refused, reset, timed out */
};

struct otlp_exporter {
	struct tracer *t;
	char *url;
	uint32_t batch_max, delay_ms, timeout_ms;
	char service_name[OTLP_RESOURCE_STR_MAX], host_name[OTLP_RESOURCE_STR_MAX],
	    version[OTLP_RESOURCE_STR_MAX], trust_domain[OTLP_RESOURCE_STR_MAX];
	struct otlp_resource res;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* CLOCK_MONOTONIC */
	_Atomic bool stop;   /* set under lock (for the wait), read anywhere */

	/* The exporter thread's alone from here on. */
	struct trace_span *batch;
	size_t n;
	uint64_t oldest_ns;	  /* monotonic time the batch got its first span */
	unsigned int next_worker; /* drain start, rotated for fairness */
	char *body;
	CURL *curl;
	struct curl_slist *headers;
	uint64_t backoff_ms, retry_at_ns; /* 0: healthy */
	bool down_logged;
	char curl_err[CURL_ERROR_SIZE];
};

static uint64_t now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

static enum post_result post(struct otlp_exporter *e, size_t len, long *status)
{
	CURLcode rc;

	*status = 0;
	e->curl_err[0] = '\0';
	curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, e->body);
	curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	rc = curl_easy_perform(e->curl);
	if (rc != CURLE_OK) {
		if (!e->curl_err[0])
			snprintf(e->curl_err, sizeof(e->curl_err), "%s", curl_easy_strerror(rc));
		return POST_UNREACHABLE;
	}
	curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, status);
	return *status >= 200 && *status < 300 ? POST_OK : POST_REJECTED;
}

/* Back off after a failure; the first one of a run is logged. */
static void failed(struct otlp_exporter *e, const char *why)
{
	e->backoff_ms = e->backoff_ms ? e->backoff_ms * 2 : OTLP_BACKOFF_MIN_MS;
	if (e->backoff_ms > OTLP_BACKOFF_MAX_MS)
		e->backoff_ms = OTLP_BACKOFF_MAX_MS;
	e->retry_at_ns = now_mono_ns() + e->backoff_ms * 1000000ull;
	if (!e->down_logged)
		pr_warn("cannot export spans to %s: %s; dropping spans, retrying in %" PRIu64
			" ms\n",
			e->url, why, e->backoff_ms);
	e->down_logged = true;
}

static void recovered(struct otlp_exporter *e)
{
	if (e->down_logged)
		pr_info("exporting spans to %s again\n", e->url);
	e->down_logged = false;
	e->backoff_ms = 0;
	e->retry_at_ns = 0;
}

/*
 * Send the batch, in as many POSTs as the body bound needs, and empty it.
 * Every span in it ends up exported or counted in one dropped_* reason.
 */
static void send_batch(struct otlp_exporter *e)
{
	size_t off = 0;

	if (e->retry_at_ns && now_mono_ns() < e->retry_at_ns) {
		trace_count(e->t, TRACE_STAT_DROPPED_UNREACHABLE, e->n);
		goto out;
	}
	while (off < e->n) {
		size_t len, k = otlp_render(&e->res, e->batch + off, e->n - off, e->body,
					    OTLP_BODY_MAX, &len);
		long status;
		char why[64];

		if (!k) { /* cannot happen: the body holds any one span */
			trace_count(e->t, TRACE_STAT_DROPPED_REJECTED, e->n - off);
			break;
		}
		trace_count(e->t, TRACE_STAT_EXPORT_REQUESTS, 1);
		switch (post(e, len, &status)) {
		case POST_OK:
			trace_count(e->t, TRACE_STAT_EXPORTED, k);
			recovered(e);
			break;
		case POST_REJECTED:
			trace_count(e->t, TRACE_STAT_DROPPED_REJECTED, k);
			trace_count(e->t, TRACE_STAT_EXPORT_FAILURES, 1);
			snprintf(why, sizeof(why), "HTTP status %ld", status);
			/* Overload answers ask us to slow down (the OTLP/HTTP retry
			 * rules); any other status judged this body, and the
			 * collector is up. */
			if (status == 429 || status == 502 || status == 503 || status == 504) {
				failed(e, why);
			} else {
				recovered(e);
				pr_debug("collector %s refused %zu spans: %s\n", e->url, k, why);
			}
			break;
		case POST_UNREACHABLE:
			trace_count(e->t, TRACE_STAT_DROPPED_UNREACHABLE, k);
			trace_count(e->t, TRACE_STAT_EXPORT_FAILURES, 1);
			failed(e, e->curl_err);
			break;
		}
		off += k;
		if (e->retry_at_ns && off < e->n) { /* backing off: the rest goes too */
			trace_count(e->t, TRACE_STAT_DROPPED_UNREACHABLE, e->n - off);
			break;
		}
	}
out:
	e->n = 0;
	e->oldest_ns = 0;
}

/* Move spans from the rings into the batch, up to batch_max. Returns
 * whether the rings may hold more. */
static bool fill_batch(struct otlp_exporter *e)
{
	unsigned int workers = tracer_workers(e->t);
	bool more = false;

	for (unsigned int i = 0; i < workers && e->n < e->batch_max; i++) {
		struct trace_worker *w = tracer_worker(e->t, (e->next_worker + i) % workers);
		size_t room = e->batch_max - e->n;
		size_t got = trace_worker_drain(w, e->batch + e->n, room);

		if (got && !e->oldest_ns)
			e->oldest_ns = now_mono_ns();
		e->n += got;
		more |= got == room;
	}
	e->next_worker = (e->next_worker + 1) % workers;
	return more || e->n == e->batch_max;
}

static void *exporter_main(void *arg)
{
	struct otlp_exporter *e = arg;
	const uint64_t delay_ns = e->delay_ms * 1000000ull;
	const uint64_t poll_ns =
	    (e->delay_ms < OTLP_POLL_MS ? e->delay_ms : OTLP_POLL_MS) * 1000000ull;

	while (!atomic_load(&e->stop)) {
		bool more = fill_batch(e);

		if (e->n == e->batch_max || (e->n && now_mono_ns() - e->oldest_ns >= delay_ns))
			send_batch(e);
		if (more)
			continue;

		struct timespec until;
		uint64_t at;

		clock_gettime(CLOCK_MONOTONIC, &until);
		at = (uint64_t)until.tv_sec * 1000000000ull + (uint64_t)until.tv_nsec + poll_ns;
		until.tv_sec = at / 1000000000ull;
		until.tv_nsec = at % 1000000000ull;
		pthread_mutex_lock(&e->lock);
		if (!atomic_load(&e->stop))
			pthread_cond_timedwait(&e->wake, &e->lock, &until);
		pthread_mutex_unlock(&e->lock);
	}
	/*
	 * Last call: what the rings held when stop came. Bounded by their
	 * capacity, so workers that are still recording cannot keep the
	 * exporter (and otlp_exporter_stop) going.
	 */
	uint64_t left = (uint64_t)tracer_workers(e->t) * tracer_ring_size(e->t);

	for (;;) {
		size_t before = e->n;
		bool more = fill_batch(e);
		size_t got = e->n - before;

		left = got < left ? left - got : 0;
		if (e->n)
			send_batch(e);
		if (!more || !left)
			break;
	}
	return NULL;
}

static void copy_res(char *dst, const char *src, const char *dflt)
{
	snprintf(dst, OTLP_RESOURCE_STR_MAX, "%s", src ? src : dflt);
}

static void exporter_free(struct otlp_exporter *e)
{
	if (e->curl)
		curl_easy_cleanup(e->curl);
	curl_slist_free_all(e->headers);
	free(e->body);
	free(e->batch);
	free(e->url);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/* libcurl setup done once: the handle is reused, so the connection is too. */
static int setup_curl(struct otlp_exporter *e, char *err, size_t errlen)
{
	CURL *c = e->curl = curl_easy_init();
	struct curl_slist *h;

	if (!c) {
		log_errbuf(err, errlen, "cannot create the OTLP HTTP client");
		return -ENOMEM;
	}
	/* No "Expect: 100-continue": it would stall every body over 1 KiB. */
	static const char *const lines[] = {"Content-Type: application/json", "Expect:"};

	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		h = curl_slist_append(e->headers, lines[i]);
		if (!h) {
			log_errbuf(err, errlen, "cannot allocate the OTLP request headers");
			return -ENOMEM;
		}
		e->headers = h;
	}
	if (curl_easy_setopt(c, CURLOPT_URL, e->url) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
		log_errbuf(err, errlen, "tracing collector_url %s is not usable", e->url);
		return -EINVAL;
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM timeouts */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(e->timeout_ms < OTLP_CONNECT_TIMEOUT_MS ? e->timeout_ms
									: OTLP_CONNECT_TIMEOUT_MS));
	/* The collector is addressed directly; an http_proxy in shoald's
	 * environment is for something else. */
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "shoal/" SHOAL_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, e->curl_err);
	return 0;
}

int otlp_exporter_start(struct tracer *t, const struct otlp_opts *o, struct otlp_exporter **out,
			char *err, size_t errlen)
{
	const char *url = o->url && *o->url ? o->url : CONFIG_DEFAULT_TRACE_URL;
	struct otlp_exporter *e;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
		log_errbuf(err, errlen, "tracing collector_url %s: want http:// or https://", url);
		return -EINVAL;
	}
	if (o->batch_max > CONFIG_MAX_TRACE_BATCH) {
		log_errbuf(err, errlen, "tracing batch size %u is over the limit of %u",
			   o->batch_max, CONFIG_MAX_TRACE_BATCH);
		return -EINVAL;
	}
	rc = curl_api_load("the OTLP trace exporter", err, errlen);
	if (rc)
		return rc;
	e = calloc(1, sizeof(*e));
	if (!e) {
		log_errbuf(err, errlen, "cannot allocate the OTLP exporter: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &ca);
	pthread_condattr_destroy(&ca);
	e->t = t;
	e->batch_max = o->batch_max ? o->batch_max : CONFIG_DEFAULT_TRACE_BATCH;
	e->delay_ms = o->delay_ms ? o->delay_ms : CONFIG_DEFAULT_TRACE_BATCH_DELAY_MS;
	e->timeout_ms = o->timeout_ms ? o->timeout_ms : CONFIG_DEFAULT_TRACE_TIMEOUT_MS;
	copy_res(e->service_name, o->resource.service_name, CONFIG_DEFAULT_TRACE_SERVICE_NAME);
	copy_res(e->host_name, o->resource.host_name, "");
	copy_res(e->version, o->resource.version, SHOAL_VERSION);
	copy_res(e->trust_domain, o->resource.trust_domain, CONFIG_DEFAULT_TRUST_DOMAIN);
	e->res = (struct otlp_resource){e->service_name, e->host_name, e->version, e->trust_domain};
	e->url = strdup(url);
	e->batch = calloc(e->batch_max, sizeof(*e->batch));
	e->body = malloc(OTLP_BODY_MAX);
	if (!e->url || !e->batch || !e->body) {
		log_errbuf(err, errlen, "cannot allocate the OTLP exporter: %s", strerror(ENOMEM));
		rc = -ENOMEM;
		goto fail;
	}
	rc = setup_curl(e, err, errlen);
	if (rc)
		goto fail;
	rc = -pthread_create(&e->thread, NULL, exporter_main, e);
	if (rc) {
		log_errbuf(err, errlen, "cannot start the OTLP exporter thread: %s", strerror(-rc));
		goto fail;
	}
	*out = e;
	return 0;
fail:
	exporter_free(e);
	return rc;
}

void otlp_exporter_stop(struct otlp_exporter *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	exporter_free(e);
}

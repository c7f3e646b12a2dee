// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pure half of the HTTP/2 to HTTP/1.1 translation (h2_to_h1.h), and h2_fields copies. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy/h2_int.h"
#include "proxy/h2_to_h1.h"

#define NV(n, v)                                                                                   \
	{(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE}

static char out[4096];
static size_t len;
static bool chunked;

static int request(const nghttp2_nv *nv, size_t n, bool body)
{
	int r = h2h1_format_request(nv, n, body, out, sizeof(out) - 1, &len, &chunked);

	out[r ? 0 : len] = '\0';
	return r;
}

Test(h2_to_h1, request_head)
{
	const nghttp2_nv nv[] = {
	    NV(":method", "GET"),	     NV(":scheme", "http"),	NV(":authority", "api.shop:80"),
	    NV(":path", "/v1/items?a=1"),    NV("host", "ignored"),	NV("cookie", "a=1"),
	    NV("user-agent", "t/1"),	     NV("te", "trailers"),	NV("cookie", "b=2"),
	    NV("connection", "keep-alive"), NV("keep-alive", "5"),	NV("upgrade", "websocket"),
	    NV("http2-settings", "AAA"),    NV("x-request-id", "r1"),
	};

	cr_assert_eq(request(nv, H2_ARRAY_SIZE(nv), false), 0);
	cr_assert_str_eq(out, "GET /v1/items?a=1 HTTP/1.1\r\n"
			      "host: api.shop:80\r\n"
			      "cookie: a=1; b=2\r\n"
			      "user-agent: t/1\r\n"
			      "x-request-id: r1\r\n"
			      "\r\n");
	cr_assert_not(chunked, "no body: no framing field");
}

Test(h2_to_h1, request_body_framing)
{
	const nghttp2_nv cl[] = {NV(":method", "POST"), NV(":path", "/echo"),
				 NV("content-length", "5"), NV("host", "h")};
	const nghttp2_nv none[] = {NV(":method", "POST"), NV(":path", "/echo")};

	cr_assert_eq(request(cl, H2_ARRAY_SIZE(cl), true), 0);
	cr_assert_str_eq(out, "POST /echo HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\n",
			 "the host field when there is no :authority");
	cr_assert_not(chunked);
	cr_assert_eq(request(none, H2_ARRAY_SIZE(none), true), 0);
	cr_assert_str_eq(out, "POST /echo HTTP/1.1\r\nhost: \r\n"
			      "transfer-encoding: chunked\r\n\r\n");
	cr_assert(chunked);
}

Test(h2_to_h1, request_refused)
{
	const nghttp2_nv no_path[] = {NV(":method", "GET"), NV(":authority", "a")};
	const nghttp2_nv connect[] = {NV(":method", "CONNECT"), NV(":authority", "a:443")};
	const nghttp2_nv ws[] = {NV(":method", "CONNECT"), NV(":protocol", "websocket"),
				 NV(":path", "/chat")};
	const nghttp2_nv crlf[] = {NV(":method", "GET"), NV(":path", "/"),
				   NV("x-a", "1\r\nx-smuggled: 1")};
	const nghttp2_nv big[] = {NV(":method", "GET"), NV(":path", "/"), NV("x-a", "1")};

	cr_assert_eq(request(no_path, H2_ARRAY_SIZE(no_path), false), -EINVAL);
	cr_assert_eq(request(connect, H2_ARRAY_SIZE(connect), false), -EOPNOTSUPP);
	cr_assert_eq(request(ws, H2_ARRAY_SIZE(ws), false), -EOPNOTSUPP);
	cr_assert_eq(request(crlf, H2_ARRAY_SIZE(crlf), false), -EINVAL);
	cr_assert_eq(h2h1_format_request(big, H2_ARRAY_SIZE(big), false, out, 20, &len, &chunked),
		     -E2BIG);
}

Test(h2_to_h1, request_trailers)
{
	const nghttp2_nv tr[] = {NV("x-sum", "42"), NV("content-length", "9"), NV("host", "x"),
				 NV("x-other", "b")};

	cr_assert_eq(h2h1_format_trailers(tr, H2_ARRAY_SIZE(tr), out, sizeof(out), &len), 0);
	cr_assert_eq(len, strlen("0\r\nx-sum: 42\r\nx-other: b\r\n\r\n"));
	cr_assert(!memcmp(out, "0\r\nx-sum: 42\r\nx-other: b\r\n\r\n", len));
	cr_assert_eq(h2h1_format_trailers(NULL, 0, out, sizeof(out), &len), 0);
	cr_assert(len == 5 && !memcmp(out, "0\r\n\r\n", 5));
	cr_assert_eq(h2h1_format_trailers(tr, H2_ARRAY_SIZE(tr), out, 8, &len), -E2BIG);
}

/* The field named name in f ("" when absent), and how many there are. */
static const char *field(const struct h2_fields *f, const char *name, int *count)
{
	static char v[256];
	const char *first = NULL;

	*count = 0;
	for (uint32_t i = 0; i < f->n; i++) {
		if (f->nv[i].namelen == strlen(name) && !memcmp(f->nv[i].name, name, strlen(name))) {
			if (!first) {
				snprintf(v, sizeof(v), "%.*s", (int)f->nv[i].valuelen,
					 (const char *)f->nv[i].value);
				first = v;
			}
			(*count)++;
		}
	}
	return first ? first : "";
}

Test(h2_to_h1, response_fields)
{
	static const char head[] = "HTTP/1.1 200 OK\r\n"
				   "Content-Type: text/plain\r\n"
				   "Connection: keep-alive, X-Hop\r\n"
				   "Keep-Alive: timeout=5\r\n"
				   "X-Hop: secret\r\n"
				   "Set-Cookie: a=1\r\n"
				   "Set-Cookie: b=2\r\n"
				   "Transfer-Encoding: chunked\r\n"
				   "Trailer: x-checksum\r\n"
				   "\r\n";
	struct http1_header hdrs[32];
	struct http1_head h = {.headers = hdrs, .cap = 32};
	struct http1_parser p;
	struct h2_fields f = {0};
	size_t consumed;
	int n;

	http1_parser_init(&p, HTTP1_RESPONSE, NULL);
	cr_assert_eq(http1_parse_head(&p, head, strlen(head), &h, &consumed), HTTP1_DONE);
	cr_assert_eq(h2h1_response_fields(head, &h, &f), 0);
	cr_assert_eq(f.nv[0].namelen, 7);
	cr_assert(!memcmp(f.nv[0].name, ":status", 7) && !memcmp(f.nv[0].value, "200", 3));
	cr_assert_str_eq(field(&f, "content-type", &n), "text/plain", "lower-cased");
	cr_assert_str_eq(field(&f, "set-cookie", &n), "a=1");
	cr_assert_eq(n, 2, "each Set-Cookie its own field");
	cr_assert_str_eq(field(&f, "trailer", &n), "x-checksum");
	field(&f, "connection", &n);
	cr_assert_eq(n, 0);
	field(&f, "keep-alive", &n);
	cr_assert_eq(n, 0);
	field(&f, "x-hop", &n);
	cr_assert_eq(n, 0, "a field Connection names is hop-by-hop");
	field(&f, "transfer-encoding", &n);
	cr_assert_eq(n, 0);
	cr_assert_eq(f.n, 5);
	h2_fields_free(&f);
	cr_assert_eq(f.n, 0);
}

/* Decode body with the chunked decoder as h2_to_h1.c does: the framing after the last data. */
static size_t tail_of(const char *body, char *t, char *payload)
{
	struct http1_chunked c;
	size_t off = 0, tl = 0, pl = 0, n = strlen(body);
	int r = HTTP1_NEED_MORE;

	http1_chunked_init(&c);
	while (off < n && r == HTTP1_NEED_MORE) {
		struct http1_chunk_step st;

		r = http1_chunked_feed(&c, body + off, n - off, &st);
		cr_assert_geq(r, 0);
		if (st.payload) {
			memcpy(payload + pl, body + off, st.len);
			pl += st.len;
			tl = 0;
		} else {
			memcpy(t + tl, body + off, st.len);
			tl += st.len;
		}
		off += st.len;
	}
	payload[pl] = '\0';
	cr_assert_eq(r, HTTP1_DONE);
	return tl;
}

Test(h2_to_h1, chunked_trailers)
{
	char t[256], payload[64];
	struct h2_fields f = {0};
	size_t tl;
	int n;

	tl = tail_of("5\r\nhello\r\n6\r\n world\r\n0;ext=1\r\nX-Checksum:  abc123 \r\n"
		     "Content-Length: 11\r\nx-count:2\r\n\r\n",
		     t, payload);
	cr_assert_str_eq(payload, "hello world");
	cr_assert_eq(h2h1_chunked_trailers(t, tl, &f), 0);
	cr_assert_eq(f.n, 2);
	cr_assert_str_eq(field(&f, "x-checksum", &n), "abc123", "lower-cased, OWS trimmed");
	cr_assert_str_eq(field(&f, "x-count", &n), "2");
	field(&f, "content-length", &n);
	cr_assert_eq(n, 0, "a trailer may not frame the message");
	h2_fields_free(&f);

	tl = tail_of("0\r\nx-a: b\r\n\r\n", t, payload);
	cr_assert_eq(h2h1_chunked_trailers(t, tl, &f), 0);
	cr_assert_eq(f.n, 1, "an empty body's trailers");
	h2_fields_free(&f);

	tl = tail_of("3\r\nabc\r\n0\r\n\r\n", t, payload);
	cr_assert_eq(h2h1_chunked_trailers(t, tl, &f), 0);
	cr_assert_eq(f.n, 0, "no trailers");
	h2_fields_free(&f);
}

static char seen[256];

static int seen_header(nghttp2_session *s, const nghttp2_frame *fr, const uint8_t *name,
		       size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	size_t n = strlen(seen);

	(void)s, (void)flags, (void)ud;
	snprintf(seen + n, sizeof(seen) - n, "%s%.*s=%.*s;",
		 fr->headers.cat == NGHTTP2_HCAT_HEADERS ? "T:" : "", (int)nlen, name, (int)vlen,
		 value);
	return 0;
}

/* The body's end, with trailers of copied fields freed at once (as h2_up_read does). */
static ssize_t end_with_trailers(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
				 uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct h2_fields f = {0};

	(void)buf, (void)length, (void)src, (void)ud;
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	cr_assert_eq(h2_fields_add_copy(&f, "x-sum", 5, "42", 2), 0);
	cr_assert_eq(f.nv[0].flags, NGHTTP2_NV_FLAG_NONE);
	cr_assert_eq(h2_submit_fields(s, id, &f, true), 0);
	h2_fields_free(&f);
	return 0;
}

/*
 * h2_submit_fields copies: copied fields (h2_fields_add_copy) sent as
 * trailers, freed before the frame is framed, still arrive whole (ASan
 * would see a use after free otherwise).
 */
Test(h2_to_h1, submit_copies)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *c, *srv;
	nghttp2_nv nv[] = {NV(":method", "POST"), NV(":path", "/"), NV(":scheme", "http"),
			   NV(":authority", "a")};
	nghttp2_data_provider dp = {.read_callback = end_with_trailers};
	const uint8_t *data;
	ssize_t n;
	int32_t id;

	cr_assert_eq(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_header_callback(cb, seen_header);
	cr_assert_eq(nghttp2_session_client_new(&c, cb, NULL), 0);
	cr_assert_eq(nghttp2_session_server_new(&srv, cb, NULL), 0);
	cr_assert_eq(nghttp2_submit_settings(c, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	id = nghttp2_submit_request(c, NULL, nv, 4, &dp, NULL);
	cr_assert_gt(id, 0);
	while ((n = nghttp2_session_mem_send(c, &data)) > 0)
		cr_assert_eq(nghttp2_session_mem_recv(srv, data, (size_t)n), n);
	cr_assert_str_eq(seen, ":method=POST;:path=/;:scheme=http;:authority=a;T:x-sum=42;");
	nghttp2_session_del(c);
	nghttp2_session_del(srv);
	nghttp2_session_callbacks_del(cb);
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for the HTTP/1 parser (proxy/http1_parser.c). The
 * first input byte picks request or response and the piece size; the rest
 * is the message. Besides what ASan and UBSan catch, it checks the
 * contract: feeding in pieces gives the same result as one call, spans lie
 * inside the head, and the chunked decoder accounts for every byte it
 * consumes. A parsed head is also rewritten as the proxy forwards it
 * (http1_rewrite_head: requests into another buffer, responses in place)
 * and must parse again to the same framing, without hop-by-hop fields.
 * Any breach aborts, so libFuzzer saves the input. Built by
 * scripts/fuzz-http1.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/http1_parser.h"

#define CAP 128

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "http1_fuzz: broken invariant: %s\n", what);
		abort();
	}
}

static void check_span(struct http1_span sp, size_t head_len, const char *what)
{
	check((size_t)sp.off + sp.len <= head_len, what);
}

static void check_head(const struct http1_head *h, size_t n)
{
	check(h->n_headers <= CAP && h->n_headers <= HTTP1_MAX_HEADERS_DEFAULT, "header count");
	check(n <= HTTP1_MAX_HEAD_DEFAULT + 2 * 4, "head length");
	for (uint32_t i = 0; i < h->n_headers; i++) {
		check_span(h->headers[i].name, n, "name span");
		check_span(h->headers[i].value, n, "value span");
		check(h->headers[i].name.len > 0, "empty name");
	}
	check(!(h->has_content_length && h->has_transfer_encoding), "CL with TE");
	check(h->version_minor <= 1, "version");
	if (h->kind == HTTP1_REQUEST) {
		check_span(h->target, n, "target span");
		check(h->target.len > 0, "empty target");
		check(!h->has_transfer_encoding || h->chunked, "request TE not chunked");
		check(h->version_minor == 0 || h->has_host, "1.1 without Host");
	} else {
		check(h->status >= 100 && h->status <= 999, "status");
		check_span(h->reason, n, "reason span");
	}
	if (h->has_host)
		check_span(h->host, n, "host span");
}

static int parse(enum http1_kind kind, const char *buf, size_t len, size_t piece,
		 struct http1_head *h, size_t *consumed)
{
	struct http1_parser p;
	size_t have = 0;
	int rc = HTTP1_NEED_MORE;

	http1_parser_init(&p, kind, NULL);
	while (have < len && rc == HTTP1_NEED_MORE) {
		have = len - have < piece ? len : have + piece;
		rc = http1_parse_head(&p, buf, have, h, consumed);
	}
	return rc;
}

static void fuzz_chunked(const char *buf, size_t len, size_t piece)
{
	struct http1_chunked c;
	size_t off = 0, payload = 0;
	int rc = HTTP1_NEED_MORE;

	http1_chunked_init(&c);
	while (off < len && rc == HTTP1_NEED_MORE) {
		struct http1_chunk_step st;
		size_t n = len - off < piece ? len - off : piece;

		rc = http1_chunked_feed(&c, buf + off, n, &st);
		check(st.len <= n, "step past input");
		check(rc != HTTP1_NEED_MORE || st.len > 0, "no progress");
		if (st.payload)
			payload += st.len;
		off += st.len;
	}
	check(payload == c.payload, "payload count");
	check(rc == HTTP1_NEED_MORE || rc == HTTP1_DONE || rc == HTTP1_E_BAD_REQUEST ||
		  rc == HTTP1_E_HEAD_TOO_LARGE,
	      "chunked result");
}

static bool name_is(const char *buf, const struct http1_header *f, const char *name)
{
	return f->name.len == strlen(name) && !strncasecmp(buf + f->name.off, name, f->name.len);
}

/*
 * Rewrite the head h (n bytes of buf) and parse the result: the framing a
 * peer acts on is unchanged, hop-by-hop fields are gone, and in place the
 * bytes after the head survive.
 */
static void fuzz_rewrite(const char *buf, size_t len, size_t n, const struct http1_head *h)
{
	static const char *const ups[] = {"websocket"};
	static char out[HTTP1_MAX_HEAD_DEFAULT * 2 + 1024];
	static struct http1_header f3[CAP + HTTP1_REWRITE_ADDED_FIELDS];
	struct http1_head h3 = {.headers = f3, .cap = CAP + HTTP1_REWRITE_ADDED_FIELDS};
	struct http1_rewrite rw = {
	    .upgrades = ups,
	    .n_upgrades = 1,
	    .keep_upgrade = h->kind == HTTP1_RESPONSE && h->status == 101,
	    .strip_shoal = true,
	    .forwarded_for = "fd00::1",
	    .forwarded_proto = true,
	    .request_id = "0123456789abcdef0123456789abcdef",
	};
	struct http1_limits lim;
	struct http1_parser p;
	size_t out_len = 0, start = 0, m = 0, rest = len - n;
	int rc;

	while (start + 1 < n && buf[start] == '\r' && buf[start + 1] == '\n')
		start += 2;
	if (h->kind == HTTP1_REQUEST) {
		rc = http1_rewrite_head(buf, h, (uint32_t)start, (uint32_t)n, &rw, out, sizeof(out),
					&out_len);
	} else {
		/* In place, as http1.c does it: the rest moves up by the slack, then down. */
		if (len + HTTP1_REWRITE_RESPONSE_SLACK > sizeof(out))
			return;
		memcpy(out, buf, n);
		memcpy(out + n + HTTP1_REWRITE_RESPONSE_SLACK, buf + n, rest);
		rc = http1_rewrite_head(out, h, (uint32_t)start, (uint32_t)n, &rw, out + start,
					n + HTTP1_REWRITE_RESPONSE_SLACK - start, &out_len);
		if (rc == 0) {
			memmove(out + start + out_len, out + n + HTTP1_REWRITE_RESPONSE_SLACK,
				rest);
			check(!memcmp(out + start + out_len, buf + n, rest),
			      "bytes after the head");
			memmove(out, out + start, out_len);
		}
	}
	if (rc) {
		check(rc == HTTP1_E_BAD_REQUEST, "rewrite result");
		return;
	}
	http1_limits_default(&lim);
	lim.max_headers += HTTP1_REWRITE_ADDED_FIELDS;
	lim.max_head += HTTP1_REWRITE_GROWTH_MAX;
	http1_parser_init(&p, h->kind, &lim);
	rc = http1_parse_head(&p, out, out_len, &h3, &m);
	check(rc == HTTP1_DONE && m == out_len, "a rewritten head parses");
	check(h3.keep_alive == h->keep_alive && h3.chunked == h->chunked &&
		  h3.has_content_length == h->has_content_length &&
		  h3.content_length == h->content_length &&
		  h3.has_transfer_encoding == h->has_transfer_encoding &&
		  h3.version_minor == h->version_minor && h3.method == h->method &&
		  h3.status == h->status,
	      "a rewrite changed the framing");
	check(h->kind == HTTP1_RESPONSE || !h3.absolute, "origin form");
	for (uint32_t i = 0; i < h3.n_headers; i++) {
		const struct http1_header *f = &h3.headers[i];

		check(!name_is(out, f, "keep-alive") && !name_is(out, f, "proxy-connection"),
		      "hop-by-hop field kept");
		check(h->kind == HTTP1_RESPONSE || f->name.len < 8 ||
			  strncasecmp(out + f->name.off, "x-shoal-", 8),
		      "x-shoal-* kept");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http1_header f1[CAP], f2[CAP];
	struct http1_head h1 = {.headers = f1, .cap = CAP};
	struct http1_head h2 = {.headers = f2, .cap = CAP};
	enum http1_kind kind;
	size_t piece, n1 = 0, n2 = 0;
	const char *buf;
	int rc1, rc2;

	if (size < 1)
		return 0;
	kind = data[0] & 1 ? HTTP1_RESPONSE : HTTP1_REQUEST;
	piece = (data[0] >> 1) + 1;
	buf = (const char *)data + 1;
	size--;

	rc1 = parse(kind, buf, size, size ? size : 1, &h1, &n1);
	rc2 = parse(kind, buf, size, piece, &h2, &n2);
	check(rc1 == rc2, "result depends on how bytes arrive");
	check(rc1 == HTTP1_NEED_MORE || rc1 == HTTP1_DONE || http1_error_status(rc1) == -rc1,
	      "result is not a status");
	if (rc1 == HTTP1_DONE) {
		check(n1 == n2 && n1 <= size, "consumed");
		check(!memcmp(&h1.n_headers, &h2.n_headers,
			      sizeof(h1) - offsetof(struct http1_head, n_headers)),
		      "head depends on how bytes arrive");
		check(!memcmp(f1, f2, h1.n_headers * sizeof(f1[0])), "fields differ");
		check_head(&h1, n1);
		(void)http1_request_body(&h1);
		(void)http1_response_body(HTTP1_METHOD_GET, &h1);
		fuzz_rewrite(buf, size, n1, &h1);
		/* What follows the head is a body: maybe chunked. */
		fuzz_chunked(buf + n1, size - n1, piece);
	} else {
		fuzz_chunked(buf, size, piece);
	}
	return 0;
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "proxy/http1_parser.h"

static struct http1_header fields[HTTP1_MAX_HEADERS_DEFAULT + 8];
static struct http1_head head;
static struct http1_parser parser;

static void setup(void)
{
	memset(&head, 0, sizeof(head));
	head.headers = fields;
	head.cap = sizeof(fields) / sizeof(fields[0]);
}

TestSuite(http1_parser, .init = setup);

/* Parse @s, all at once, with @lim (NULL: defaults). */
static int parse_lim(enum http1_kind kind, const char *s, size_t len,
		     const struct http1_limits *lim, size_t *consumed)
{
	http1_parser_init(&parser, kind, lim);
	return http1_parse_head(&parser, s, len, &head, consumed);
}

static int req(const char *s)
{
	size_t n = 0;

	return parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n);
}

static int resp(const char *s)
{
	size_t n = 0;

	return parse_lim(HTTP1_RESPONSE, s, strlen(s), NULL, &n);
}

static bool span_is(struct http1_span sp, const char *buf, const char *want)
{
	return sp.len == strlen(want) && !memcmp(buf + sp.off, want, sp.len);
}

Test(http1_parser, simple_get)
{
	const char *s = "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-A:  v 1 \t\r\n\r\n";
	size_t n = 0;

	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(n, strlen(s));
	cr_assert_eq(head.method, HTTP1_METHOD_GET);
	cr_assert(span_is(head.target, s, "/a?b=c"));
	cr_assert_eq(head.version_minor, 1);
	cr_assert_eq(head.n_headers, 2);
	cr_assert(span_is(head.headers[0].name, s, "Host"));
	cr_assert(span_is(head.headers[1].value, s, "v 1"));
	cr_assert(head.has_host);
	cr_assert(span_is(head.host, s, "example.com"));
	cr_assert(head.keep_alive);
	cr_assert_not(head.has_content_length);
	cr_assert_eq(http1_request_body(&head), HTTP1_BODY_NONE);
}

Test(http1_parser, methods)
{
	static const struct {
		const char *line;
		enum http1_method m;
	} cases[] = {
	    {"GET", HTTP1_METHOD_GET},	      {"HEAD", HTTP1_METHOD_HEAD},
	    {"POST", HTTP1_METHOD_POST},      {"PUT", HTTP1_METHOD_PUT},
	    {"DELETE", HTTP1_METHOD_DELETE},  {"OPTIONS", HTTP1_METHOD_OPTIONS},
	    {"TRACE", HTTP1_METHOD_TRACE},    {"PATCH", HTTP1_METHOD_PATCH},
	    {"PROPFIND", HTTP1_METHOD_OTHER}, {"get", HTTP1_METHOD_OTHER},
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].line);
		cr_assert_eq(req(buf), HTTP1_DONE, "%s", cases[i].line);
		cr_assert_eq(head.method, cases[i].m, "%s", cases[i].line);
		cr_assert(span_is(head.method_tok, buf, cases[i].line));
	}
	cr_assert_eq(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert_eq(head.method, HTTP1_METHOD_CONNECT);
}

Test(http1_parser, absolute_form_and_asterisk)
{
	cr_assert_eq(req("GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert_eq(req("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(req("GET / HTTP/1.1\r\nHost: [fd00::1]:8080\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(req("GET / HTTP/1.1\r\nHost:\r\n\r\n"), HTTP1_DONE);
	cr_assert(head.has_host);
	cr_assert_eq(head.host.len, 0);
}

Test(http1_parser, http10_defaults)
{
	cr_assert_eq(req("GET / HTTP/1.0\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(head.version_minor, 0);
	cr_assert_not(head.keep_alive);
	cr_assert_eq(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), HTTP1_DONE);
	cr_assert(head.keep_alive);
	cr_assert_eq(req("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.conn_close);
	cr_assert_not(head.keep_alive);
}

Test(http1_parser, expect_and_upgrade)
{
	cr_assert_eq(req("PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n"
			 "Expect: 100-Continue\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.expect_continue);
	cr_assert_eq(head.content_length, 10);
	cr_assert_eq(http1_request_body(&head), HTTP1_BODY_LENGTH);
	cr_assert_eq(req("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
			 "Upgrade: websocket\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.upgrade);
	cr_assert(head.conn_upgrade);
	cr_assert_not(head.expect_continue);
}

Test(http1_parser, chunked_request)
{
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.chunked);
	cr_assert_eq(http1_request_body(&head), HTTP1_BODY_CHUNKED);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.chunked);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
			 "Transfer-Encoding: CHUNKED\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert(head.chunked);
}

Test(http1_parser, content_length_values)
{
	cr_assert_eq(
	    req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n"),
	    HTTP1_DONE);
	cr_assert_eq(head.content_length, UINT64_MAX);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(head.content_length, 7);
}

/* A list of equal values, or the same value twice, is refused (docs/proxy.md). */
Test(http1_parser, content_length_list_refused)
{
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,5\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
			 "Content-Length: 5\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
}

/* chunked takes no parameters: "chunked;x=y" is not chunked to every peer. */
Test(http1_parser, chunked_with_params_refused)
{
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=y\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked ; x\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked;q=1\r\n"
			 "\r\n"),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=y\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
	/* Parameters of another coding are that coding's business. */
	cr_assert_eq(req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip;x=1, chunked\r\n"
			 "\r\n"),
		     HTTP1_DONE);
	cr_assert(head.chunked);
}

Test(http1_parser, leading_empty_lines)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
	size_t n = 0;

	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(n, strlen(s));
	cr_assert(span_is(head.target, s, "/"));
	cr_assert_eq(req("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
		     HTTP1_E_BAD_REQUEST);
}

/*
 * The smuggling and malformed-input corpus: each must be refused.
 * Inline arrays, not pointers: Criterion runs each parameterized test in
 * a fresh process, where the parent's addresses mean nothing.
 */
struct bad_case {
	char what[48];
	char msg[160];
	int want;
};

static struct bad_case bad_requests[] = {
    {"CL with TE",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
    {"TE with CL",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -400},
    {"differing CL lines",
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -400},
    {"differing CL list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", -400},
    {"CL empty element", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,,5\r\n\r\n", -400},
    {"CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", -400},
    {"CL non-numeric", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", -400},
    {"CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", -400},
    {"CL plus", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", -400},
    {"CL minus", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", -400},
    {"CL overflow", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n",
     -400},
    {"CL huge", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
     -400},
    {"CL inner space", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", -400},
    {"TE final gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", -400},
    {"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     -400},
    {"TE chunked then gzip line",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     -400},
    {"TE chunked twice",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", -400},
    {"TE empty", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n", -400},
    {"TE xchunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", -501},
    {"TE unknown then chunked",
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: foo, chunked\r\n\r\n", -501},
    {"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", -400},
    {"space before colon", "GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", -400},
    {"tab before colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", -400},
    {"bare CR in value", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", -400},
    {"bare CR in request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"bare CR ends head", "GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", -400},
    {"bare LF ending", "GET / HTTP/1.1\nHost: h\n\n", -400},
    {"bare LF header", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", -400},
    {"bare LF final", "GET / HTTP/1.1\r\nHost: h\r\n\n", -400},
    {"obs-fold SP", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", -400},
    {"obs-fold HTAB", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", -400},
    {"first header folded", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", -400},
    {"CTL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", -400},
    {"DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", -400},
    {"ESC in value", "GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[0m\r\n\r\n", -400},
    {"CTL in name", "GET / HTTP/1.1\r\nHost: h\r\nX\x01Y: a\r\n\r\n", -400},
    {"bad name char", "GET / HTTP/1.1\r\nHost: h\r\nX(Y): a\r\n\r\n", -400},
    {"name with slash", "GET / HTTP/1.1\r\nHost: h\r\nX/Y: a\r\n\r\n", -400},
    {"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n", -400},
    {"no colon", "GET / HTTP/1.1\r\nHost: h\r\nXY\r\n\r\n", -400},
    {"bad method char", "G(ET / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"method with slash", "GE/T / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"no target", "GET HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", -400},
    {"CTL in target", "GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n", -400},
    {"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", -400},
    {"short version", "GET / HTTP/1\r\nHost: h\r\n\r\n", -400},
    {"HTTP/0.9 line", "GET /\r\n\r\n", -400},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", -505},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", -505},
    {"HTTP/0.9", "GET / HTTP/0.9\r\nHost: h\r\n\r\n", -505},
    {"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", -400},
    {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400},
    {"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", -400},
    {"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", -400},
    {"Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", -400},
    {"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", -400},
    {"two equal Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", -400},
};

/* Each corpus entry is its own test, so a report names every case that fails. */
ParameterizedTestParameters(http1_parser, smuggling_corpus)
{
	return cr_make_param_array(struct bad_case, bad_requests,
				   sizeof(bad_requests) / sizeof(bad_requests[0]));
}

ParameterizedTest(struct bad_case *c, http1_parser, smuggling_corpus)
{
	int rc = req(c->msg);

	cr_assert_eq(rc, c->want, "%s: got %d, want %d", c->what, rc, c->want);
}

Test(http1_parser, nul_bytes)
{
	static const char m1[] = "GET / HTTP/1.1\r\nHost: h\0\r\n\r\n";
	static const char m2[] = "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char m3[] = "GET / HTTP/1.1\r\nX\0: h\r\nHost: h\r\n\r\n";
	size_t n;

	cr_assert_eq(parse_lim(HTTP1_REQUEST, m1, sizeof(m1) - 1, NULL, &n), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, m2, sizeof(m2) - 1, NULL, &n), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, m3, sizeof(m3) - 1, NULL, &n), HTTP1_E_BAD_REQUEST);
	/* Refused as soon as the NUL arrives, before the head is complete. */
	cr_assert_eq(parse_lim(HTTP1_REQUEST, m1, 25, NULL, &n), HTTP1_E_BAD_REQUEST);
}

Test(http1_parser, errors_are_early)
{
	size_t n;

	cr_assert_eq(parse_lim(HTTP1_REQUEST, "GET / HTTP/1.1\nHo", 17, NULL, &n),
		     HTTP1_E_BAD_REQUEST);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, "GET / HTTP/1.1\rX", 16, NULL, &n),
		     HTTP1_E_BAD_REQUEST);
	/* A CR at the end is not yet bare. */
	cr_assert_eq(parse_lim(HTTP1_REQUEST, "GET / HTTP/1.1\r", 15, NULL, &n), HTTP1_NEED_MORE);
}

Test(http1_parser, error_status)
{
	cr_assert_eq(http1_error_status(HTTP1_E_BAD_REQUEST), 400);
	cr_assert_eq(http1_error_status(HTTP1_E_URI_TOO_LONG), 414);
	cr_assert_eq(http1_error_status(HTTP1_E_HEAD_TOO_LARGE), 431);
	cr_assert_eq(http1_error_status(HTTP1_E_NOT_IMPLEMENTED), 501);
	cr_assert_eq(http1_error_status(HTTP1_E_BAD_VERSION), 505);
	cr_assert_eq(http1_error_status(-7), 400);
}

static const char *valid_requests[] = {
    "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "\r\nPOST /upload?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\n"
    "Expect: 100-continue\r\nConnection: keep-alive\r\n\r\n",
    "POST / HTTP/1.1\r\nhost: h\r\nTransfer-Encoding: gzip , chunked\r\nX-Empty:\r\n\r\n",
    "GET http://a.example/ HTTP/1.0\r\nUser-Agent: t\xc3\xa9st\r\nConnection: keep-alive\r\n\r\n",
};

/* Feeding a growing prefix must give the same result as one call. */
Test(http1_parser, split_at_every_offset)
{
	for (size_t k = 0; k < sizeof(valid_requests) / sizeof(valid_requests[0]); k++) {
		const char *s = valid_requests[k];
		size_t len = strlen(s), n_all = 0, n = 0;
		struct http1_header ref_fields[16];
		struct http1_head ref = {.headers = ref_fields, .cap = 16};
		struct http1_parser p;

		http1_parser_init(&p, HTTP1_REQUEST, NULL);
		cr_assert_eq(http1_parse_head(&p, s, len, &ref, &n_all), HTTP1_DONE, "%zu", k);
		cr_assert_eq(n_all, len);

		for (size_t split = 0; split < len; split++) {
			int rc;

			http1_parser_init(&p, HTTP1_REQUEST, NULL);
			cr_assert_eq(http1_parse_head(&p, s, split, &head, &n), HTTP1_NEED_MORE,
				     "%zu at %zu", k, split);
			rc = http1_parse_head(&p, s, len, &head, &n);
			cr_assert_eq(rc, HTTP1_DONE, "%zu at %zu", k, split);
			cr_assert_eq(n, n_all);
			cr_assert_eq(head.n_headers, ref.n_headers);
			cr_assert_eq(head.chunked, ref.chunked);
			cr_assert_eq(head.content_length, ref.content_length);
			cr_assert_eq(memcmp(&head.target, &ref.target, sizeof(ref.target)), 0);
			cr_assert_eq(memcmp(head.headers, ref.headers,
					    ref.n_headers * sizeof(ref.headers[0])),
				     0);
		}
		/* And one byte at a time. */
		http1_parser_init(&p, HTTP1_REQUEST, NULL);
		for (size_t i = 1; i < len; i++)
			cr_assert_eq(http1_parse_head(&p, s, i, &head, &n), HTTP1_NEED_MORE);
		cr_assert_eq(http1_parse_head(&p, s, len, &head, &n), HTTP1_DONE);
		cr_assert_eq(n, n_all);
		cr_assert_eq(head.keep_alive, ref.keep_alive);
		cr_assert_eq(head.has_host, ref.has_host);
	}
}

Test(http1_parser, pipelined)
{
	const char *s = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
			"POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
			"HEAD /3 HTTP/1.1\r\nHost: h\r\n\r\n";
	size_t off = 0, n = 0, len = strlen(s);

	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, len, NULL, &n), HTTP1_DONE);
	cr_assert(span_is(head.target, s, "/1"));
	off += n;
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s + off, len - off, NULL, &n), HTTP1_DONE);
	cr_assert(span_is(head.target, s + off, "/2"));
	off += n + head.content_length;
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s + off, len - off, NULL, &n), HTTP1_DONE);
	cr_assert(span_is(head.target, s + off, "/3"));
	cr_assert_eq(head.method, HTTP1_METHOD_HEAD);
	cr_assert_eq(off + n, len);
}

/* A request line of exactly @line bytes (no CRLF), padded in the target. */
static size_t make_request(char *buf, size_t line, size_t extra_headers)
{
	size_t off;

	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', line - 14);
	memcpy(buf + line - 9, " HTTP/1.1\r\nHost: h\r\n", 20);
	off = line + 11;
	for (size_t i = 0; i < extra_headers; i++)
		off += sprintf(buf + off, "X-%zu: v\r\n", i);
	memcpy(buf + off, "\r\n", 2);
	return off + 2;
}

Test(http1_parser, request_line_limit)
{
	static char buf[HTTP1_MAX_LINE_DEFAULT + 64];
	size_t n, len;

	len = make_request(buf, HTTP1_MAX_LINE_DEFAULT, 0);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_DONE);
	len = make_request(buf, HTTP1_MAX_LINE_DEFAULT + 1, 0);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_E_URI_TOO_LONG);
	/* Known as soon as the line outgrows the limit, without its end. */
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, HTTP1_MAX_LINE_DEFAULT + 1, NULL, &n),
		     HTTP1_E_URI_TOO_LONG);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, HTTP1_MAX_LINE_DEFAULT, NULL, &n),
		     HTTP1_NEED_MORE);
}

Test(http1_parser, header_count_limit)
{
	static char buf[8192];
	struct http1_limits lim;
	size_t n, len;

	/* Host plus 99 others: exactly the default limit. */
	len = make_request(buf, 16, HTTP1_MAX_HEADERS_DEFAULT - 1);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_DONE);
	cr_assert_eq(head.n_headers, HTTP1_MAX_HEADERS_DEFAULT);
	len = make_request(buf, 16, HTTP1_MAX_HEADERS_DEFAULT);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_E_HEAD_TOO_LARGE);

	http1_limits_default(&lim);
	lim.max_headers = 3;
	len = make_request(buf, 16, 2);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, &lim, &n), HTTP1_DONE);
	len = make_request(buf, 16, 3);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, &lim, &n), HTTP1_E_HEAD_TOO_LARGE);
	/* The caller's array is a limit too. */
	head.cap = 2;
	len = make_request(buf, 16, 2);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_E_HEAD_TOO_LARGE);
}

Test(http1_parser, head_size_limit)
{
	static char buf[HTTP1_MAX_HEAD_DEFAULT + 64];
	struct http1_limits lim;
	size_t n, len;
	int pad;

	/* One big header so the head is exactly max_head bytes. */
	len = make_request(buf, 16, 0) - 2; /* the request line and Host */
	pad = HTTP1_MAX_HEAD_DEFAULT - (int)len - 2 - 5;
	memcpy(buf + len, "X: ", 3);
	memset(buf + len + 3, 'v', pad);
	memcpy(buf + len + 3 + pad, "\r\n\r\n", 4);
	len += 3 + pad + 4;
	cr_assert_eq(len, HTTP1_MAX_HEAD_DEFAULT);
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, NULL, &n), HTTP1_DONE);
	cr_assert_eq(n, HTTP1_MAX_HEAD_DEFAULT);

	http1_limits_default(&lim);
	lim.max_head = HTTP1_MAX_HEAD_DEFAULT - 1;
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len, &lim, &n), HTTP1_E_HEAD_TOO_LARGE);
	/* Over the limit without a final CRLF: refused, not NEED_MORE forever. */
	lim.max_head = HTTP1_MAX_HEAD_DEFAULT - 8;
	cr_assert_eq(parse_lim(HTTP1_REQUEST, buf, len - 4, &lim, &n), HTTP1_E_HEAD_TOO_LARGE);
}

Test(http1_parser, responses)
{
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
	size_t n = 0;

	cr_assert_eq(parse_lim(HTTP1_RESPONSE, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(head.status, 200);
	cr_assert(span_is(head.reason, s, "OK"));
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_LENGTH);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_HEAD, &head), HTTP1_BODY_NONE);

	cr_assert_eq(resp("HTTP/1.1 204\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(head.status, 204);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_NONE);
	cr_assert_eq(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_NONE);
	cr_assert_eq(resp("HTTP/1.1 100 Continue\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_POST, &head), HTTP1_BODY_NONE);
	cr_assert_eq(resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			  "Connection: upgrade\r\n\r\n"),
		     HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_TUNNEL);
	cr_assert_eq(resp("HTTP/1.1 200 Connection established\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_CONNECT, &head), HTTP1_BODY_TUNNEL);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_UNTIL_CLOSE);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_CHUNKED);
	cr_assert(head.keep_alive);
	/* In a response an unknown or non-final coding is relayed, read to close. */
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, br\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_UNTIL_CLOSE);
	cr_assert_not(head.keep_alive);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: br, chunked\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_CHUNKED);
	cr_assert_eq(resp("HTTP/1.0 200 OK\r\n\r\n"), HTTP1_DONE);
	cr_assert_not(head.keep_alive);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_UNTIL_CLOSE);
	cr_assert_eq(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_UNTIL_CLOSE);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), HTTP1_DONE);
	cr_assert_eq(http1_response_body(HTTP1_METHOD_GET, &head), HTTP1_BODY_NONE);
}

Test(http1_parser, bad_responses)
{
	cr_assert_eq(
	    resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
	    HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 20 OK\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 2000 OK\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 099 OK\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/2.0 200 OK\r\n\r\n"), HTTP1_E_BAD_VERSION);
	cr_assert_eq(resp("HTTP/1.1 200 O\x01K\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 200 OK\nX: a\n\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(resp("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n"), HTTP1_E_BAD_REQUEST);
}

/* Chunked decoder. */

struct decoded {
	int rc;
	size_t payload;
	size_t framing;
	size_t consumed;
	char data[256];
};

/* Feed @s in pieces of at most @step bytes; stop at DONE or an error. */
static void decode(const char *s, size_t len, size_t piece, struct decoded *d)
{
	struct http1_chunked c;
	size_t off = 0;

	memset(d, 0, sizeof(*d));
	http1_chunked_init(&c);
	while (off < len) {
		struct http1_chunk_step st;
		size_t n = len - off < piece ? len - off : piece;

		d->rc = http1_chunked_feed(&c, s + off, n, &st);
		cr_assert_leq(st.len, n);
		if (st.payload) {
			cr_assert_lt(d->payload + st.len, sizeof(d->data));
			memcpy(d->data + d->payload, s + off, st.len);
			d->payload += st.len;
		} else {
			d->framing += st.len;
		}
		off += st.len;
		if (d->rc != HTTP1_NEED_MORE)
			break;
	}
	d->consumed = off;
}

Test(http1_parser, chunked_body)
{
	const char *s = "5\r\nhello\r\n1;ext=\"x\"\r\n \r\nA \r\n0123456789\r\n0\r\n\r\nNEXT";
	size_t len = strlen(s);
	struct decoded d;

	for (size_t piece = 1; piece <= len; piece++) {
		decode(s, len, piece, &d);
		cr_assert_eq(d.rc, HTTP1_DONE, "piece %zu", piece);
		cr_assert_eq(d.consumed, len - 4, "piece %zu", piece);
		cr_assert_eq(d.payload, 16);
		cr_assert_eq(memcmp(d.data, "hello 0123456789", 16), 0);
		cr_assert_eq(d.payload + d.framing, d.consumed);
	}
}

/* RFC 9112 7.1.1 chunk-ext, the forms it allows. */
Test(http1_parser, chunked_ext_grammar)
{
	static const char *ok[] = {
	    "5;a\r\nhello\r\n0\r\n\r\n",
	    "5;a=b\r\nhello\r\n0\r\n\r\n",
	    "5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
	    "5;a=\"b c;d=\\\"e\\\\\"\r\nhello\r\n0\r\n\r\n",
	    "5;a=\"\" ;b\r\nhello\r\n0;last\r\n\r\n",
	    "5;a=b \r\nhello\r\n0\r\n\r\n",
	    "5\t;\ta\r\nhello\r\n0\r\n\r\n",
	};
	struct decoded d;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		decode(ok[i], strlen(ok[i]), 1, &d);
		cr_assert_eq(d.rc, HTTP1_DONE, "%s: got %d", ok[i], d.rc);
		cr_assert_eq(d.payload, 5);
		decode(ok[i], strlen(ok[i]), strlen(ok[i]), &d);
		cr_assert_eq(d.rc, HTTP1_DONE, "%s at once: got %d", ok[i], d.rc);
	}
}

Test(http1_parser, chunked_trailers)
{
	const char *s = "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n";
	struct decoded d;

	decode(s, strlen(s), 1, &d);
	cr_assert_eq(d.rc, HTTP1_DONE);
	cr_assert_eq(d.consumed, strlen(s));
	cr_assert_eq(d.payload, 3);
}

static struct bad_case bad_chunked[] = {
    {"non-hex size", "g\r\nx\r\n0\r\n\r\n", -400},
    {"empty size", "\r\nx\r\n0\r\n\r\n", -400},
    {"negative size", "-1\r\nx\r\n0\r\n\r\n", -400},
    {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", -400},
    {"overflow", "10000000000000000\r\n", -400},
    {"huge", "fffffffffffffffff\r\n", -400},
    {"ext without size", ";a\r\n", -400},
    {"bare LF size", "5\nhello\r\n0\r\n\r\n", -400},
    {"bare CR size", "5\rhello\r\n0\r\n\r\n", -400},
    {"data too long", "5\r\nhelloX\r\n0\r\n\r\n", -400},
    {"data LF only", "5\r\nhello\n0\r\n\r\n", -400},
    {"CTL in ext", "5;\x01\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: empty name", "5;\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: empty name after one", "5;a;\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: no value", "5;a=\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: separator in name", "5;a/b=1\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: space in name", "5;a b\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: separator in value", "5;a=b/c\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: two values", "5;a=b c\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: open quote", "5;a=\"b\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: after quote", "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: escaped CTL", "5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: no semicolon", "5 a\r\nhello\r\n0\r\n\r\n", -400},
    {"ext: double equals", "5;a==b\r\nhello\r\n0\r\n\r\n", -400},
    {"size over 2^31-1", "80000000\r\n", -400},
    {"size far over 2^31-1", "ffffffffff\r\n", -400},
    {"NUL in size", "5\0\r\nhello\r\n", -400},
    {"trailer fold", "0\r\nX: a\r\n b\r\n\r\n", -400},
    {"trailer space before colon", "0\r\nX : a\r\n\r\n", -400},
    {"trailer no colon", "0\r\nX\r\n\r\n", -400},
    {"trailer bare LF", "0\r\nX: a\n\r\n", -400},
    {"final bare LF", "0\r\n\n", -400},
    {"final CR junk", "0\r\n\rx", -400},
    {"trailer CTL", "0\r\nX: \x01\r\n\r\n", -400},
};

ParameterizedTestParameters(http1_parser, chunked_bad)
{
	return cr_make_param_array(struct bad_case, bad_chunked,
				   sizeof(bad_chunked) / sizeof(bad_chunked[0]));
}

ParameterizedTest(struct bad_case *c, http1_parser, chunked_bad)
{
	/* The one entry with a NUL: its length is not strlen. */
	size_t len = strcmp(c->what, "NUL in size") ? strlen(c->msg) : 11;
	struct decoded d;

	decode(c->msg, len, 1, &d);
	cr_assert_eq(d.rc, c->want, "%s: got %d, want %d", c->what, d.rc, c->want);
	/* Whole input at once: the same verdict. */
	decode(c->msg, len, len, &d);
	cr_assert_eq(d.rc, c->want, "%s at once: got %d", c->what, d.rc);
}

Test(http1_parser, chunked_limits)
{
	static char buf[HTTP1_MAX_TRAILERS + 64];
	struct decoded d;
	size_t len;

	/* A size line exactly at the limit (CR included) passes, one more fails. */
	memset(buf, 0, sizeof(buf));
	buf[0] = '1';
	buf[1] = ';';
	memset(buf + 2, 'e', HTTP1_MAX_CHUNK_LINE - 3);
	memcpy(buf + HTTP1_MAX_CHUNK_LINE - 1, "\r\nx\r\n0\r\n\r\n", 11);
	decode(buf, strlen(buf), 7, &d);
	cr_assert_eq(d.rc, HTTP1_DONE);
	memset(buf + 2, 'e', HTTP1_MAX_CHUNK_LINE - 2);
	memcpy(buf + HTTP1_MAX_CHUNK_LINE, "\r\nx\r\n0\r\n\r\n", 11);
	decode(buf, strlen(buf), 7, &d);
	cr_assert_eq(d.rc, HTTP1_E_HEAD_TOO_LARGE);

	/* Trailers over their limit. */
	memcpy(buf, "0\r\nX: ", 6);
	memset(buf + 6, 'v', HTTP1_MAX_TRAILERS);
	memcpy(buf + 6 + HTTP1_MAX_TRAILERS, "\r\n\r\n", 5);
	len = strlen(buf);
	decode(buf, len, 100, &d);
	cr_assert_eq(d.rc, HTTP1_E_HEAD_TOO_LARGE);

	/* The largest size allowed is only framing; the data is counted. */
	decode("7fffffff\r\nabc", 13, 13, &d);
	cr_assert_eq(d.rc, HTTP1_NEED_MORE);
	cr_assert_eq(d.payload, 3);
	decode("0007fffffff\r\nabc", 16, 1, &d);
	cr_assert_eq(d.rc, HTTP1_NEED_MORE);
	/* One more is refused, before any data. */
	decode("80000000\r\nabc", 13, 13, &d);
	cr_assert_eq(d.rc, HTTP1_E_BAD_REQUEST);
	decode("7fffffff0\r\n", 11, 1, &d);
	cr_assert_eq(d.rc, HTTP1_E_BAD_REQUEST);
}

Test(http1_parser, chunked_after_done)
{
	struct http1_chunked c;
	struct http1_chunk_step st;

	http1_chunked_init(&c);
	cr_assert_eq(http1_chunked_feed(&c, "0\r\n\r\n", 5, &st), HTTP1_DONE);
	cr_assert_eq(st.len, 5);
	cr_assert_eq(http1_chunked_feed(&c, "x", 1, &st), HTTP1_E_BAD_REQUEST);
}

/* ---- rewriting ------------------------------------------------------- */

static const char *const ws_only[] = {"websocket"};

/* Parse @s as @kind and rewrite it with @rw into a static buffer; NULL on error (*@rc). */
static const char *rewrite(enum http1_kind kind, const char *s, const struct http1_rewrite *rw,
			   int *rc)
{
	static char out[4096];
	size_t n = 0, len = 0;
	int r = parse_lim(kind, s, strlen(s), NULL, &n);

	cr_assert_eq(r, HTTP1_DONE, "parse: %d", r);
	*rc =
	    http1_rewrite_head(s, &head, parser.start, (uint32_t)n, rw, out, sizeof(out) - 1, &len);
	if (*rc)
		return NULL;
	out[len] = '\0';
	/* What comes out parses again, as the proxy reparses it. */
	http1_parser_init(&parser, kind, NULL);
	cr_assert_eq(http1_parse_head(&parser, out, len, &head, &n), HTTP1_DONE, "reparse: %s",
		     out);
	cr_assert_eq(n, len);
	return out;
}

Test(http1_parser, rewrite_hop_by_hop_request)
{
	struct http1_rewrite rw = {.upgrades = ws_only, .n_upgrades = 1};
	int rc;
	const char *out =
	    rewrite(HTTP1_REQUEST,
		    "GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop, TE\r\n"
		    "X-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: close\r\n"
		    "TE: gzip, trailers;q=0.5\r\nX-Keep: 2\r\nUpgrade: h2c\r\n"
		    "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
		    &rw, &rc);

	cr_assert_str_eq(out, "GET /a HTTP/1.1\r\nHost: h\r\nX-Keep: 2\r\n"
			      "HTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: keep-alive\r\n"
			      "TE: trailers\r\n\r\n");
	cr_assert(head.keep_alive);
	cr_assert_not(head.upgrade);

	/* Connection: close survives, and keeps its meaning. */
	out =
	    rewrite(HTTP1_REQUEST,
		    "GET / HTTP/1.1\r\nHost: h\r\nconnection:close\r\nTE: gzip\r\n\r\n", &rw, &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
	cr_assert_not(head.keep_alive);
}

Test(http1_parser, rewrite_upgrades)
{
	struct http1_rewrite rw = {.upgrades = ws_only, .n_upgrades = 1};
	int rc;
	const char *out;

	/* WebSocket is allowed: Upgrade and the upgrade token go on. */
	out = rewrite(HTTP1_REQUEST,
		      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
		      "Sec-WebSocket-Key: k\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n"
			      "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
	cr_assert(head.upgrade && head.conn_upgrade);

	/* h2c is not: the request goes on as a plain one. */
	out = rewrite(HTTP1_REQUEST,
		      "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
		      "Upgrade: h2c\r\nHTTP2-Settings: x\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_not(head.upgrade);

	/* A list keeps only what is allowed, versions included. */
	out = rewrite(HTTP1_REQUEST,
		      "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n"
		      "Upgrade: h2c, WebSocket/13\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n"
			      "Upgrade: WebSocket/13\r\n\r\n");

	/* Upgrade without the Connection token is no upgrade request. */
	out = rewrite(HTTP1_REQUEST, "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", &rw,
		      &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");

	/* Nothing allowed at all. */
	rw.n_upgrades = 0;
	out = rewrite(
	    HTTP1_REQUEST,
	    "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", &rw,
	    &rc);
	cr_assert_str_eq(out, "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n");
}

Test(http1_parser, rewrite_response)
{
	struct http1_rewrite rw = {0};
	int rc;
	const char *out;

	out = rewrite(HTTP1_RESPONSE,
		      "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive, X-A\r\n"
		      "X-A: 1\r\nUpgrade: h2c\r\nContent-Length: 0\r\nX-Shoal-Thing: kept\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Shoal-Thing: kept\r\n"
			      "Connection: keep-alive\r\n\r\n");
	rw.keep_upgrade = true;
	out = rewrite(HTTP1_RESPONSE,
		      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		      "Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
			      "Sec-WebSocket-Accept: a\r\nConnection: upgrade\r\n\r\n");
}

Test(http1_parser, rewrite_forwarding_fields)
{
	struct http1_rewrite rw = {
	    .strip_shoal = true,
	    .forwarded_for = "10.0.0.7",
	    .forwarded_proto = true,
	    .request_id = "0123456789abcdef0123456789abcdef",
	};
	int rc;
	const char *out;

	out = rewrite(HTTP1_REQUEST,
		      "POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n"
		      "x-shoal-timeout-ms: 5\r\nX-Forwarded-Proto: https\r\n"
		      "x-forwarded-for: 192.0.2.2, 192.0.2.3\r\nContent-Length: 0\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
			      "X-Forwarded-For: 192.0.2.1, 192.0.2.2, 192.0.2.3, 10.0.0.7\r\n"
			      "X-Forwarded-Proto: http\r\n"
			      "x-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n");
	cr_assert_eq(head.content_length, 0);
	cr_assert(head.has_request_id);

	/* A request id already there is kept, and no other is added. */
	out = rewrite(HTTP1_REQUEST, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine\r\n\r\n", &rw,
		      &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine\r\n"
			      "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n\r\n");

	/* Each is optional. */
	memset(&rw, 0, sizeof(rw));
	out = rewrite(HTTP1_REQUEST,
		      "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n"
		      "x-shoal-timeout-ms: 5\r\n\r\n",
		      &rw, &rc);
	cr_assert_str_eq(out, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n"
			      "x-shoal-timeout-ms: 5\r\n\r\n");
}

Test(http1_parser, rewrite_refuses)
{
	struct http1_rewrite rw = {0};
	char small[40];
	size_t n = 0, len;
	const char *s;

	/* Dropping a framing field would change what the next hop reads. */
	s = "POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\n";
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(http1_rewrite_head(s, &head, 0, (uint32_t)n, &rw, small, sizeof(small), &len),
		     HTTP1_E_BAD_REQUEST);
	s = "POST / HTTP/1.1\r\nHost: h\r\nConnection: Transfer-Encoding\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n";
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(http1_rewrite_head(s, &head, 0, (uint32_t)n, &rw, small, sizeof(small), &len),
		     HTTP1_E_BAD_REQUEST);
	s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\r\n\r\n";
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(http1_rewrite_head(s, &head, 0, (uint32_t)n, &rw, small, sizeof(small), &len),
		     HTTP1_E_BAD_REQUEST);
	/* No room. */
	s = "GET /a-long-enough-path HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n";
	cr_assert_eq(parse_lim(HTTP1_REQUEST, s, strlen(s), NULL, &n), HTTP1_DONE);
	cr_assert_eq(http1_rewrite_head(s, &head, 0, (uint32_t)n, &rw, small, sizeof(small), &len),
		     HTTP1_E_HEAD_TOO_LARGE);
}

/* RFC 9112 3.2.2: the absolute form's authority replaces Host, and its path is the path. */
Test(http1_parser, absolute_form_replaces_host)
{
	struct http1_rewrite rw = {0};
	const char *s = "GET http://svc.example:8080/a/b?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
	const char *out;
	int rc;

	cr_assert_eq(req(s), HTTP1_DONE);
	cr_assert(head.absolute);
	cr_assert(span_is(head.host, s, "svc.example:8080"));
	cr_assert(span_is(head.path, s, "/a/b?q=1"));
	cr_assert_eq(req("GET HTTPS://h HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP1_DONE);
	cr_assert(head.absolute);
	cr_assert_eq(head.path.len, 0);
	cr_assert_eq(req("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), HTTP1_DONE);
	cr_assert_not(head.absolute);
	/* An authority Host would refuse is refused here too. */
	cr_assert_eq(req("GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP1_E_BAD_REQUEST);
	cr_assert_eq(req("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"), HTTP1_E_BAD_REQUEST);

	out = rewrite(HTTP1_REQUEST, s, &rw, &rc);
	cr_assert_str_eq(out, "GET /a/b?q=1 HTTP/1.1\r\nHost: svc.example:8080\r\n\r\n");
	out = rewrite(HTTP1_REQUEST, "GET http://h?x HTTP/1.0\r\n\r\n", &rw, &rc);
	cr_assert_str_eq(out, "GET /?x HTTP/1.0\r\nHost: h\r\n\r\n");
}

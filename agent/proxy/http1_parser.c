// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/1.x head parser, chunked decoder and body framing rules. The
 * head rewriting a proxy does on the way through is in http1_rewrite.c.
 *
 * The head is parsed in two passes. A resumable scan checks line endings,
 * NUL bytes and the size limits as bytes arrive, so an oversized or
 * malformed head fails early and feeding byte by byte stays linear. Once
 * the empty line is in, one pass over the complete head checks the
 * grammar and derives the framing.
 */
#include <stddef.h>
#include <string.h>

#include "proxy/http1_parser.h"
#include "proxy/http1_text.h"

/* RFC 9110 tchar: the bytes a method or a field name may hold. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c);
}

/* field-vchar, SP or HTAB: what a field value or reason phrase may hold. */
static bool is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void http1_limits_default(struct http1_limits *lim)
{
	lim->max_line = HTTP1_MAX_LINE_DEFAULT;
	lim->max_head = HTTP1_MAX_HEAD_DEFAULT;
	lim->max_headers = HTTP1_MAX_HEADERS_DEFAULT;
}

void http1_parser_init(struct http1_parser *p, enum http1_kind kind, const struct http1_limits *lim)
{
	memset(p, 0, sizeof(*p));
	if (lim)
		p->limits = *lim;
	else
		http1_limits_default(&p->limits);
	p->kind = kind;
}

int http1_error_status(int result)
{
	switch (result) {
	case HTTP1_E_URI_TOO_LONG:
	case HTTP1_E_HEAD_TOO_LARGE:
	case HTTP1_E_NOT_IMPLEMENTED:
	case HTTP1_E_BAD_VERSION:
		return -result;
	default:
		return 400;
	}
}

/* The error for a start line over max_line: 414 is only meaningful for a target. */
static int line_too_long(const struct http1_parser *p)
{
	return p->kind == HTTP1_REQUEST ? HTTP1_E_URI_TOO_LONG : HTTP1_E_BAD_REQUEST;
}

static const struct {
	const char *name;
	enum http1_method method;
} methods[] = {
    {"GET", HTTP1_METHOD_GET},	       {"HEAD", HTTP1_METHOD_HEAD},
    {"POST", HTTP1_METHOD_POST},       {"PUT", HTTP1_METHOD_PUT},
    {"DELETE", HTTP1_METHOD_DELETE},   {"CONNECT", HTTP1_METHOD_CONNECT},
    {"OPTIONS", HTTP1_METHOD_OPTIONS}, {"TRACE", HTTP1_METHOD_TRACE},
    {"PATCH", HTTP1_METHOD_PATCH},
};

/* Methods are case-sensitive (RFC 9110 9.1): "get" is an OTHER method. */
static enum http1_method method_lookup(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strlen(methods[i].name) == len && !memcmp(methods[i].name, s, len))
			return methods[i].method;
	return HTTP1_METHOD_OTHER;
}

/*
 * "HTTP/" DIGIT "." DIGIT at @s (8 bytes available). Returns 0 with the
 * minor version for 1.0 and 1.1, HTTP1_E_BAD_VERSION for another
 * well-formed version, HTTP1_E_BAD_REQUEST for anything else.
 */
static int parse_version(const char *s, uint8_t *minor)
{
	if (memcmp(s, "HTTP/", 5) || !is_digit(s[5]) || s[6] != '.' || !is_digit(s[7]))
		return HTTP1_E_BAD_REQUEST;
	if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
		return HTTP1_E_BAD_VERSION;
	*minor = s[7] - '0';
	return 0;
}

/*
 * An absolute-form target, "http://" or "https://" (scheme
 * case-insensitive) then the authority up to '/', '?' or the end: marks
 * @h absolute, with its authority and path. The authority is checked
 * with Host's rules once the head is read (check_framing).
 */
static void parse_absolute_form(const char *base, struct http1_head *h)
{
	const char *t = base + h->target.off;
	uint32_t len = h->target.len, i;

	if (len >= 7 && eq_nocase(t, 7, "http://"))
		i = 7;
	else if (len >= 8 && eq_nocase(t, 8, "https://"))
		i = 8;
	else
		return;
	h->absolute = true;
	h->authority.off = h->target.off + i;
	while (i < len && t[i] != '/' && t[i] != '?')
		i++;
	h->authority.len = h->target.off + i - h->authority.off;
	h->path = (struct http1_span){h->target.off + i, len - i};
}

/* Request line in [s, s+len), no CRLF. Offsets are relative to @base. */
static int parse_request_line(const char *base, uint32_t off, uint32_t len, struct http1_head *h)
{
	const char *s = base + off;
	uint32_t i = 0, t;

	while (i < len && is_tchar(s[i]))
		i++;
	if (i == 0 || i >= len || s[i] != ' ')
		return HTTP1_E_BAD_REQUEST;
	h->method_tok = (struct http1_span){off, i};
	h->method = method_lookup(s, i);
	t = ++i;
	/* Target: visible ASCII or obs-text; SP ends it, a CTL is an error. */
	while (i < len && (unsigned char)s[i] > 0x20 && s[i] != 0x7f)
		i++;
	if (i == t || i >= len || s[i] != ' ')
		return HTTP1_E_BAD_REQUEST;
	h->target = (struct http1_span){off + t, i - t};
	h->path = h->target;
	parse_absolute_form(base, h);
	i++;
	if (len - i != 8)
		return HTTP1_E_BAD_REQUEST;
	return parse_version(s + i, &h->version_minor);
}

/*
 * Status line: version SP 3DIGIT [SP reason]. The missing SP before an
 * empty reason is tolerated: some servers send it, and it cannot change
 * framing.
 */
static int parse_status_line(const char *base, uint32_t off, uint32_t len, struct http1_head *h)
{
	const char *s = base + off;
	int err;

	if (len < 12 || s[8] != ' ')
		return HTTP1_E_BAD_REQUEST;
	err = parse_version(s, &h->version_minor);
	if (err)
		return err;
	if (!is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11]) || s[9] == '0')
		return HTTP1_E_BAD_REQUEST;
	h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	if (len == 12) {
		h->reason = (struct http1_span){off + 12, 0};
		return 0;
	}
	if (s[12] != ' ')
		return HTTP1_E_BAD_REQUEST;
	for (uint32_t i = 13; i < len; i++)
		if (!is_value_char(s[i]))
			return HTTP1_E_BAD_REQUEST;
	h->reason = (struct http1_span){off + 13, len - 13};
	return 0;
}

/*
 * Content-Length value: 1*DIGIT, once. RFC 9110 8.6 lets a recipient
 * either refuse a list of identical values ("5, 5") and repeated lines or
 * reduce them to one; the proxy refuses them (400; 502 from a server):
 * no peer behind it can then read a length the proxy did not, and no
 * client needs to send one (docs/proxy.md, "Framing"). Signs, empty
 * values and overflow are 400 too.
 */
static int parse_content_length(const char *v, uint32_t len, struct http1_head *h)
{
	uint64_t n = 0;

	if (h->has_content_length || len == 0)
		return HTTP1_E_BAD_REQUEST;
	for (uint32_t i = 0; i < len; i++) {
		unsigned int digit;

		if (!is_digit(v[i]))
			return HTTP1_E_BAD_REQUEST;
		digit = v[i] - '0';
		if (n > (UINT64_MAX - digit) / 10)
			return HTTP1_E_BAD_REQUEST;
		n = n * 10 + digit;
	}
	h->has_content_length = true;
	h->content_length = n;
	return 0;
}

/*
 * Call @fn on each element of a comma-separated list value, OWS
 * trimmed, empty elements skipped (RFC 9110 5.6.1). An element ends at
 * ';' too: @fn gets the name without its parameters, and params says
 * whether it had any. Stops at the first non-zero return.
 */
static int for_each_element(const char *v, uint32_t len,
			    int (*fn)(const char *e, uint32_t elen, struct http1_head *h,
				      bool params),
			    struct http1_head *h)
{
	uint32_t i = 0;

	while (i < len) {
		uint32_t b, e, next;
		bool params;
		int err;

		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		if (i == len)
			break;
		b = i;
		while (i < len && v[i] != ',' && v[i] != ';')
			i++;
		e = i;
		params = i < len && v[i] == ';';
		while (i < len && v[i] != ',')
			i++;
		next = i;
		while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		err = fn(v + b, e - b, h, params);
		if (err)
			return err;
		i = next;
	}
	return 0;
}

/* Set while a Transfer-Encoding list is read: chunked was not the last element. */
#define TE_CHUNKED_NOT_LAST 1

static int te_element(const char *e, uint32_t len, struct http1_head *h, bool params)
{
	for (uint32_t i = 0; i < len; i++)
		if (!is_tchar(e[i]))
			return HTTP1_E_BAD_REQUEST;
	h->has_transfer_encoding = true;
	if (eq_nocase(e, len, "chunked")) {
		/*
		 * chunked twice would be decoded twice by one side only;
		 * chunked has no parameters (RFC 9112 7), so "chunked;x=y"
		 * is a coding some peers call chunked and others do not.
		 */
		if (h->chunked || params)
			return HTTP1_E_BAD_REQUEST;
		h->chunked = true;
		return 0;
	}
	/* A coding after chunked: the message is no longer chunk-delimited. */
	if (h->chunked)
		return TE_CHUNKED_NOT_LAST;
	if (eq_nocase(e, len, "gzip") || eq_nocase(e, len, "x-gzip") ||
	    eq_nocase(e, len, "deflate") || eq_nocase(e, len, "compress") ||
	    eq_nocase(e, len, "x-compress"))
		return 0;
	return h->kind == HTTP1_RESPONSE ? 0 : HTTP1_E_NOT_IMPLEMENTED;
}

static int connection_element(const char *e, uint32_t len, struct http1_head *h, bool params)
{
	(void)params;
	if (eq_nocase(e, len, "close"))
		h->conn_close = true;
	else if (eq_nocase(e, len, "keep-alive"))
		h->conn_keep_alive = true;
	else if (eq_nocase(e, len, "upgrade"))
		h->conn_upgrade = true;
	return 0;
}

/*
 * Transfer-Encoding, possibly over several lines (one list, in order).
 * In a request the final coding must be chunked, or the body length is
 * unknowable: 400. An unknown coding in a request is 501 (RFC 9112 6.1),
 * checked before the "final is chunked" rule so "foo, chunked" is 501.
 * In a response, a non-chunked final coding means read until close, and
 * unknown codings are passed through: the proxy does not decode them.
 */
static int parse_transfer_encoding(const char *v, uint32_t len, struct http1_head *h,
				   bool *chunked_not_last)
{
	int err;

	if (*chunked_not_last)
		return 0;
	err = for_each_element(v, len, te_element, h);
	if (err == TE_CHUNKED_NOT_LAST) {
		*chunked_not_last = true;
		return 0;
	}
	if (!err && !h->has_transfer_encoding)
		return HTTP1_E_BAD_REQUEST; /* empty value */
	return err;
}

/*
 * Host is uri-host [":" port]. Routing keys on it, so a value that two
 * parsers could split differently (spaces, a list, a path, userinfo) is
 * refused rather than guessed at. Empty is valid (RFC 9112 3.2).
 */
static bool host_is_valid(const char *v, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++) {
		unsigned char c = v[i];

		if (c <= 0x20 || c >= 0x7f || strchr(",/?#@\\\"<>{}|^`", c))
			return false;
	}
	return true;
}

/* One header line in [off, off+len), no CRLF. */
static int parse_header_line(const char *base, uint32_t off, uint32_t len, struct http1_head *h,
			     bool *chunked_not_last)
{
	const char *s = base + off;
	uint32_t i = 0, vb, ve;
	struct http1_header *f;
	int err = 0;

	/* obs-fold (a line starting with SP/HTAB) fails here: not a tchar. */
	while (i < len && is_tchar(s[i]))
		i++;
	if (i == 0 || i >= len || s[i] != ':')
		return HTTP1_E_BAD_REQUEST;
	vb = i + 1;
	while (vb < len && (s[vb] == ' ' || s[vb] == '\t'))
		vb++;
	ve = len;
	while (ve > vb && (s[ve - 1] == ' ' || s[ve - 1] == '\t'))
		ve--;
	for (uint32_t j = vb; j < ve; j++)
		if (!is_value_char(s[j]))
			return HTTP1_E_BAD_REQUEST;

	if (h->n_headers >= h->cap)
		return HTTP1_E_HEAD_TOO_LARGE;
	f = &h->headers[h->n_headers++];
	f->name = (struct http1_span){off, i};
	f->value = (struct http1_span){off + vb, ve - vb};

	if (eq_nocase(s, i, "content-length"))
		err = parse_content_length(s + vb, ve - vb, h);
	else if (eq_nocase(s, i, "transfer-encoding"))
		err = parse_transfer_encoding(s + vb, ve - vb, h, chunked_not_last);
	else if (eq_nocase(s, i, "connection"))
		err = for_each_element(s + vb, ve - vb, connection_element, h);
	else if (eq_nocase(s, i, "expect"))
		h->expect_continue = eq_nocase(s + vb, ve - vb, "100-continue");
	else if (eq_nocase(s, i, "upgrade"))
		h->upgrade = true;
	else if (eq_nocase(s, i, "x-request-id"))
		h->has_request_id = true;
	else if (eq_nocase(s, i, "host")) {
		/* Two Hosts let the proxy and the server route differently. */
		if (h->has_host || !host_is_valid(s + vb, ve - vb))
			return HTTP1_E_BAD_REQUEST;
		h->has_host = true;
		h->host = f->value;
	}
	return err;
}

/* Cross-header rules, once every line is read (@buf: the head's buffer). */
static int check_framing(const char *buf, struct http1_head *h, bool chunked_not_last)
{
	if (chunked_not_last)
		h->chunked = false;
	/*
	 * Both framings: RFC 9112 6.3 lets TE win, but a peer that picks CL
	 * is the classic smuggling pair. Refused in responses too.
	 */
	if (h->has_transfer_encoding && h->has_content_length)
		return HTTP1_E_BAD_REQUEST;
	if (h->kind == HTTP1_REQUEST) {
		if (h->has_transfer_encoding && !h->chunked)
			return HTTP1_E_BAD_REQUEST;
		/* RFC 9112 6.1: TE in HTTP/1.0 means faulty framing. */
		if (h->has_transfer_encoding && h->version_minor == 0)
			return HTTP1_E_BAD_REQUEST;
		if (h->version_minor == 1 && !h->has_host)
			return HTTP1_E_BAD_REQUEST;
		/* RFC 9112 3.2.2: the absolute form's authority replaces Host. */
		if (h->absolute) {
			if (!h->authority.len ||
			    !host_is_valid(buf + h->authority.off, h->authority.len))
				return HTTP1_E_BAD_REQUEST;
			h->has_host = true;
			h->host = h->authority;
		}
	}
	if (h->version_minor == 0)
		h->keep_alive = h->conn_keep_alive && !h->conn_close;
	else
		h->keep_alive = !h->conn_close;
	/*
	 * RFC 9112 6.1: a 1.0 response with TE has faulty framing; reading
	 * it to the close is the reading every peer agrees on.
	 */
	if (h->kind == HTTP1_RESPONSE && h->has_transfer_encoding && h->version_minor == 0)
		h->chunked = false;
	/* A response whose end is the close cannot be followed by another. */
	if (h->kind == HTTP1_RESPONSE && h->has_transfer_encoding && !h->chunked)
		h->keep_alive = false;
	return 0;
}

/* Grammar pass over a complete head: [p->start, end), end after the empty line. */
static int parse_complete(const struct http1_parser *p, const char *buf, uint32_t end,
			  struct http1_head *h)
{
	uint32_t off = p->start;
	bool chunked_not_last = false;
	int err;

	/* Everything after the caller's array description. */
	memset(&h->n_headers, 0, sizeof(*h) - offsetof(struct http1_head, n_headers));
	h->kind = p->kind;

	for (bool first = true;; first = false) {
		const char *cr = memchr(buf + off, '\r', end - off);
		uint32_t len = cr - (buf + off);

		if (len == 0)
			break; /* the empty line */
		if (first)
			err = p->kind == HTTP1_REQUEST ? parse_request_line(buf, off, len, h)
						       : parse_status_line(buf, off, len, h);
		else
			err = parse_header_line(buf, off, len, h, &chunked_not_last);
		if (err)
			return err;
		off += len + 2;
	}
	return check_framing(buf, h, chunked_not_last);
}

/* The error for a head over max_head: 414 while still in the request line. */
static int head_too_large(const struct http1_parser *p)
{
	return p->lines == 0 ? line_too_long(p) : HTTP1_E_HEAD_TOO_LARGE;
}

/*
 * Empty lines tolerated before the start line: RFC 9112 2.2 asks for at
 * least one (clients send a stray CRLF after a body); more is noise, and
 * bounding it keeps a stream of CRLFs from pinning the connection.
 */
#define HTTP1_MAX_LEADING_EMPTY 4

int http1_parse_head(struct http1_parser *p, const char *buf, size_t len, struct http1_head *head,
		     size_t *consumed)
{
	const struct http1_limits *lim = &p->limits;
	uint32_t i = p->scanned;
	int err;

	for (; i < len; i++) {
		unsigned char c = buf[i];

		if (i - p->start >= lim->max_head)
			return head_too_large(p);
		if (c == '\0')
			return HTTP1_E_BAD_REQUEST;
		/*
		 * A bare LF ends a line for some parsers and not others, so
		 * accepting it (as RFC 9112 2.2 allows) opens smuggling.
		 */
		if (c == '\n')
			return HTTP1_E_BAD_REQUEST;
		if (c != '\r') {
			if (p->lines == 0 && i - p->start >= lim->max_line)
				return line_too_long(p);
			continue;
		}
		if (i + 1 >= len)
			break; /* is it CRLF? wait for the next byte */
		if (buf[i + 1] != '\n')
			return HTTP1_E_BAD_REQUEST; /* bare CR */
		i++;
		if (i - p->start >= lim->max_head)
			return head_too_large(p);
		if (i - 1 == p->line_start) {
			if (p->lines == 0) {
				if (p->start / 2 >= HTTP1_MAX_LEADING_EMPTY)
					return HTTP1_E_BAD_REQUEST;
				p->start = p->line_start = i + 1;
				continue;
			}
			p->scanned = i + 1;
			err = parse_complete(p, buf, i + 1, head);
			if (err)
				return err;
			*consumed = i + 1;
			return HTTP1_DONE;
		}
		p->lines++;
		p->line_start = i + 1;
		/* lines counts the start line too: headers are lines - 1. */
		if (p->lines - 1 > lim->max_headers || p->lines - 1 > head->cap)
			return HTTP1_E_HEAD_TOO_LARGE;
	}
	p->scanned = i;
	return HTTP1_NEED_MORE;
}

enum chunked_state {
	CH_SIZE,    /* hex digits, then extensions, up to CR */
	CH_SIZE_LF, /* CR of the size line seen */
	CH_DATA,    /* remaining bytes of data */
	CH_DATA_CR, /* CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER_START, /* start of a trailer line, or the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_FINAL_LF,
	CH_DONE,
};

void http1_chunked_init(struct http1_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

/*
 * Where a chunk-size line is, past its digits (RFC 9112 7.1.1):
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * with a token name and a token or quoted-string value. Extensions are
 * not interpreted, only checked: a line two parsers would split
 * differently is where a smuggled chunk hides. Whitespace after the size,
 * a name or a value is tolerated before the CR too (BWS), as most servers
 * do; it cannot change the size.
 */
enum chunk_ext_state {
	EXT_NONE,	/* in the size digits */
	EXT_BWS_SEMI,	/* whitespace after the size or a value: ';' or CR next */
	EXT_NAME_AT,	/* after ';': BWS, then a name */
	EXT_NAME,	/* in a name */
	EXT_AFTER_NAME, /* whitespace after a name: '=', ';' or CR */
	EXT_VAL_AT,	/* after '=': BWS, then a token or a quoted-string */
	EXT_TOKEN,	/* in a token value */
	EXT_QUOTED,	/* in a quoted-string */
	EXT_QUOTED_ESC, /* after a backslash in it */
};

/* May the size line end (CR) in state @ext? */
static bool chunk_ext_may_end(uint8_t ext)
{
	return ext == EXT_NONE || ext == EXT_BWS_SEMI || ext == EXT_NAME || ext == EXT_AFTER_NAME ||
	       ext == EXT_TOKEN;
}

/* One byte of a size line past the digits (not CR). 0 or HTTP1_E_BAD_REQUEST. */
static int chunk_ext_byte(struct http1_chunked *c, unsigned char b)
{
	bool ws = b == ' ' || b == '\t';

	switch (c->ext) {
	case EXT_BWS_SEMI:
		if (b == ';')
			c->ext = EXT_NAME_AT;
		else if (!ws)
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_NAME_AT:
		if (is_tchar(b))
			c->ext = EXT_NAME;
		else if (!ws)
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_NAME:
	case EXT_AFTER_NAME:
		if (b == '=')
			c->ext = EXT_VAL_AT;
		else if (b == ';')
			c->ext = EXT_NAME_AT;
		else if (ws)
			c->ext = EXT_AFTER_NAME;
		else if (c->ext != EXT_NAME || !is_tchar(b))
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_VAL_AT:
		if (b == '"')
			c->ext = EXT_QUOTED;
		else if (is_tchar(b))
			c->ext = EXT_TOKEN;
		else if (!ws)
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_TOKEN:
		if (b == ';')
			c->ext = EXT_NAME_AT;
		else if (ws)
			c->ext = EXT_BWS_SEMI;
		else if (!is_tchar(b))
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_QUOTED:
		/* qdtext: HTAB, SP, VCHAR but '"' and '\\', obs-text. */
		if (b == '"')
			c->ext = EXT_BWS_SEMI;
		else if (b == '\\')
			c->ext = EXT_QUOTED_ESC;
		else if (!is_value_char(b))
			return HTTP1_E_BAD_REQUEST;
		return 0;
	case EXT_QUOTED_ESC:
		if (!is_value_char(b))
			return HTTP1_E_BAD_REQUEST;
		c->ext = EXT_QUOTED;
		return 0;
	default:
		return HTTP1_E_BAD_REQUEST;
	}
}

/* One framing byte. Returns 0, HTTP1_DONE, or an error. */
static int chunked_framing_byte(struct http1_chunked *c, unsigned char b)
{
	int v;

	switch (c->state) {
	case CH_SIZE:
		if (++c->line_len > HTTP1_MAX_CHUNK_LINE)
			return HTTP1_E_HEAD_TOO_LARGE;
		if (b == '\r') {
			if (!c->digits || !chunk_ext_may_end(c->ext))
				return HTTP1_E_BAD_REQUEST;
			c->state = CH_SIZE_LF;
			return 0;
		}
		if (c->ext != EXT_NONE)
			return chunk_ext_byte(c, b);
		v = hex_value(b);
		if (v >= 0) {
			c->remaining = c->remaining << 4 | (uint64_t)v;
			if (c->remaining > HTTP1_MAX_CHUNK_SIZE)
				return HTTP1_E_BAD_REQUEST;
			c->digits = true;
			return 0;
		}
		if (!c->digits)
			return HTTP1_E_BAD_REQUEST;
		c->ext = EXT_BWS_SEMI;
		return chunk_ext_byte(c, b);
	case CH_SIZE_LF:
		if (b != '\n')
			return HTTP1_E_BAD_REQUEST;
		c->line_len = 0;
		c->digits = false;
		c->ext = EXT_NONE;
		c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
		return 0;
	case CH_DATA_CR:
		if (b != '\r')
			return HTTP1_E_BAD_REQUEST;
		c->state = CH_DATA_LF;
		return 0;
	case CH_DATA_LF:
		if (b != '\n')
			return HTTP1_E_BAD_REQUEST;
		c->state = CH_SIZE;
		return 0;
	case CH_TRAILER_START:
	case CH_TRAILER_NAME:
	case CH_TRAILER_VALUE:
		if (++c->trailer_len > HTTP1_MAX_TRAILERS)
			return HTTP1_E_HEAD_TOO_LARGE;
		if (c->state == CH_TRAILER_START && b == '\r') {
			c->state = CH_FINAL_LF;
			return 0;
		}
		if (c->state == CH_TRAILER_VALUE) {
			if (b == '\r')
				c->state = CH_TRAILER_LF;
			else if (!is_value_char(b))
				return HTTP1_E_BAD_REQUEST;
			return 0;
		}
		if (b == ':' && c->state == CH_TRAILER_NAME) {
			c->state = CH_TRAILER_VALUE;
			return 0;
		}
		/* Covers obs-fold and whitespace before the colon. */
		if (!is_tchar(b))
			return HTTP1_E_BAD_REQUEST;
		c->state = CH_TRAILER_NAME;
		return 0;
	case CH_TRAILER_LF:
		if (b != '\n')
			return HTTP1_E_BAD_REQUEST;
		c->state = CH_TRAILER_START;
		return 0;
	case CH_FINAL_LF:
		if (b != '\n')
			return HTTP1_E_BAD_REQUEST;
		c->state = CH_DONE;
		return HTTP1_DONE;
	default:
		/* Fed after HTTP1_DONE or after an error. */
		return HTTP1_E_BAD_REQUEST;
	}
}

int http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len,
		       struct http1_chunk_step *step)
{
	size_t i = 0;

	step->len = 0;
	step->payload = false;
	if (c->state == CH_DATA) {
		size_t n = len < c->remaining ? len : (size_t)c->remaining;

		c->remaining -= n;
		c->payload += n;
		if (!c->remaining)
			c->state = CH_DATA_CR;
		step->len = n;
		step->payload = true;
		return HTTP1_NEED_MORE;
	}
	while (i < len && c->state != CH_DATA) {
		int rc = chunked_framing_byte(c, (unsigned char)buf[i++]);

		if (rc) {
			step->len = i;
			return rc;
		}
	}
	step->len = i;
	return HTTP1_NEED_MORE;
}

enum http1_body http1_request_body(const struct http1_head *req)
{
	if (req->chunked)
		return HTTP1_BODY_CHUNKED;
	if (req->has_content_length && req->content_length)
		return HTTP1_BODY_LENGTH;
	return HTTP1_BODY_NONE;
}

enum http1_body http1_response_body(enum http1_method req_method, const struct http1_head *resp)
{
	if (resp->status == 101)
		return HTTP1_BODY_TUNNEL;
	if (req_method == HTTP1_METHOD_CONNECT && resp->status / 100 == 2)
		return HTTP1_BODY_TUNNEL;
	if (req_method == HTTP1_METHOD_HEAD || resp->status / 100 == 1 || resp->status == 204 ||
	    resp->status == 304)
		return HTTP1_BODY_NONE;
	if (resp->chunked)
		return HTTP1_BODY_CHUNKED;
	if (resp->has_transfer_encoding)
		return HTTP1_BODY_UNTIL_CLOSE;
	if (resp->has_content_length)
		return resp->content_length ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
	return HTTP1_BODY_UNTIL_CLOSE;
}

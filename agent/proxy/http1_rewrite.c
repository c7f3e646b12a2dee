// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/1.x head rewriting on the way through the proxy
 * (http1_rewrite_head(), declared in http1_parser.h): hop-by-hop fields
 * dropped, an absolute-form target turned into origin form, forwarding
 * fields added. Works on a head http1_parse_head() accepted; allocates
 * nothing.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "proxy/http1_parser.h"
#include "proxy/http1_text.h"

/* Case-insensitive equality of two byte ranges. */
static bool eq_nocase2(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

/*
 * The next element of a comma-separated list value from *@pos: [*@b, *@e)
 * trimmed, empty elements skipped. False at the end.
 */
static bool list_next(const char *v, uint32_t len, uint32_t *pos, uint32_t *b, uint32_t *e)
{
	uint32_t i = *pos;

	while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
		i++;
	if (i == len) {
		*pos = i;
		return false;
	}
	*b = i;
	while (i < len && v[i] != ',')
		i++;
	*pos = i;
	while (i > *b && (v[i - 1] == ' ' || v[i - 1] == '\t'))
		i--;
	*e = i;
	return true;
}

/* Bytes of the element [e, e+len) before the first of @stops or whitespace. */
static uint32_t elem_name_len(const char *e, uint32_t len, const char *stops)
{
	uint32_t i = 0;

	while (i < len && e[i] != ' ' && e[i] != '\t' && !strchr(stops, e[i]))
		i++;
	return i;
}

/* Is protocol element [e, e+len) ("name" or "name/version") one @rw allows? */
static bool upgrade_allowed(const struct http1_rewrite *rw, const char *e, uint32_t len)
{
	uint32_t n = elem_name_len(e, len, "/");

	for (uint32_t i = 0; i < rw->n_upgrades; i++)
		if (eq_nocase2(e, n, rw->upgrades[i], strlen(rw->upgrades[i])))
			return true;
	return false;
}

/* Bounded output of a rewrite: over is set, and nothing more written, once it is full. */
struct rw_out {
	char *p;
	size_t cap, len;
	bool over;
};

static void out_put(struct rw_out *o, const char *s, size_t n)
{
	if (o->over || o->cap - o->len < n) {
		o->over = true;
		return;
	}
	memmove(o->p + o->len, s, n); /* in place, a line moves down over dropped ones */
	o->len += n;
}

static void out_str(struct rw_out *o, const char *s)
{
	out_put(o, s, strlen(s));
}

/* Offset of the CR that ends the line holding offset @off. */
static uint32_t line_end(const char *buf, uint32_t off, uint32_t end)
{
	const char *cr = memchr(buf + off, '\r', end - off);

	return cr ? (uint32_t)(cr - buf) : end;
}

static bool field_is(const char *buf, const struct http1_header *f, const char *name)
{
	return eq_nocase(buf + f->name.off, f->name.len, name);
}

/* Fields that frame or route a message: a Connection naming one is refused. */
static bool connection_token_protected(const char *t, uint32_t len)
{
	return eq_nocase(t, len, "content-length") || eq_nocase(t, len, "transfer-encoding") ||
	       eq_nocase(t, len, "host");
}

/* What the first pass over the fields found. */
struct rw_scan {
	struct http1_span conn[HTTP1_MAX_CONNECTION_TOKENS]; /* Connection's tokens */
	uint32_t n_conn;
	bool trailers;	   /* TE held "trailers" */
	bool upgrade_kept; /* an Upgrade goes on */
};

static int rewrite_scan(const char *buf, const struct http1_head *h, const struct http1_rewrite *rw,
			struct rw_scan *sc)
{
	bool req = h->kind == HTTP1_REQUEST;

	memset(sc, 0, sizeof(*sc));
	for (uint32_t i = 0; i < h->n_headers; i++) {
		const struct http1_header *f = &h->headers[i];
		const char *v = buf + f->value.off;
		uint32_t pos = 0, b, e;

		if (field_is(buf, f, "connection")) {
			while (list_next(v, f->value.len, &pos, &b, &e)) {
				if (sc->n_conn == HTTP1_MAX_CONNECTION_TOKENS ||
				    connection_token_protected(v + b, e - b))
					return HTTP1_E_BAD_REQUEST;
				sc->conn[sc->n_conn++] =
				    (struct http1_span){f->value.off + b, e - b};
			}
		} else if (req && field_is(buf, f, "te")) {
			while (list_next(v, f->value.len, &pos, &b, &e))
				if (eq_nocase(v + b, elem_name_len(v + b, e - b, ";"), "trailers"))
					sc->trailers = true;
		} else if (req && h->conn_upgrade && field_is(buf, f, "upgrade")) {
			while (list_next(v, f->value.len, &pos, &b, &e))
				if (upgrade_allowed(rw, v + b, e - b))
					sc->upgrade_kept = true;
		}
	}
	if (!req)
		sc->upgrade_kept = rw->keep_upgrade;
	return 0;
}

/* Does Connection list the field @f? */
static bool connection_lists(const char *buf, const struct rw_scan *sc,
			     const struct http1_header *f)
{
	for (uint32_t i = 0; i < sc->n_conn; i++)
		if (eq_nocase2(buf + sc->conn[i].off, sc->conn[i].len, buf + f->name.off,
			       f->name.len))
			return true;
	return false;
}

/* Is field @f dropped from the copy (hop-by-hop, replaced or stripped)? */
static bool rewrite_drops(const char *buf, const struct http1_head *h,
			  const struct http1_rewrite *rw, const struct rw_scan *sc,
			  const struct http1_header *f)
{
	bool req = h->kind == HTTP1_REQUEST;

	if (field_is(buf, f, "upgrade"))
		return req || !sc->upgrade_kept; /* a request's is re-sent filtered */
	if (field_is(buf, f, "connection") || field_is(buf, f, "keep-alive") ||
	    field_is(buf, f, "proxy-connection") || field_is(buf, f, "te") ||
	    connection_lists(buf, sc, f))
		return true;
	if (!req)
		return false;
	if (h->absolute && field_is(buf, f, "host"))
		return true;
	if (rw->strip_shoal && f->name.len >= 8 && eq_nocase(buf + f->name.off, 8, "x-shoal-"))
		return true;
	if (rw->forwarded_for && field_is(buf, f, "x-forwarded-for"))
		return true;
	return rw->forwarded_proto && field_is(buf, f, "x-forwarded-proto");
}

/* The fields a request rewrite adds before the empty line. */
static void rewrite_add(const char *buf, const struct http1_head *h, const struct http1_rewrite *rw,
			const struct rw_scan *sc, struct rw_out *o)
{
	bool first = true;

	if (sc->trailers)
		out_str(o, "TE: trailers\r\n");
	if (sc->upgrade_kept) {
		out_str(o, "Upgrade: ");
		for (uint32_t i = 0; i < h->n_headers; i++) {
			const struct http1_header *f = &h->headers[i];
			const char *v = buf + f->value.off;
			uint32_t pos = 0, b, e;

			if (!field_is(buf, f, "upgrade"))
				continue;
			while (list_next(v, f->value.len, &pos, &b, &e)) {
				if (!upgrade_allowed(rw, v + b, e - b))
					continue;
				if (!first)
					out_str(o, ", ");
				out_put(o, v + b, e - b);
				first = false;
			}
		}
		out_str(o, "\r\n");
	}
	if (rw->forwarded_for) {
		/* The hops before this one, in order, then the client. */
		out_str(o, "X-Forwarded-For: ");
		for (uint32_t i = 0; i < h->n_headers; i++) {
			const struct http1_header *f = &h->headers[i];

			if (!field_is(buf, f, "x-forwarded-for") || !f->value.len)
				continue;
			out_put(o, buf + f->value.off, f->value.len);
			out_str(o, ", ");
		}
		out_str(o, rw->forwarded_for);
		out_str(o, "\r\n");
	}
	if (rw->forwarded_proto)
		out_str(o, "X-Forwarded-Proto: http\r\n");
	if (rw->peer_identity) {
		/* Any the client sent was dropped with the other x-shoal-* fields. */
		out_str(o, "x-shoal-peer-identity: ");
		out_str(o, rw->peer_identity);
		out_str(o, "\r\n");
	}
	if (rw->request_id && !h->has_request_id) {
		out_str(o, "x-request-id: ");
		out_str(o, rw->request_id);
		out_str(o, "\r\n");
	}
}

int http1_rewrite_head(const char *buf, const struct http1_head *h, uint32_t start, uint32_t end,
		       const struct http1_rewrite *rw, char *out, size_t cap, size_t *out_len)
{
	bool req = h->kind == HTTP1_REQUEST;
	struct rw_out o = {.p = out, .cap = cap};
	uint32_t sl_end = line_end(buf, start, end);
	uint64_t drop[HTTP1_REWRITE_MAX_FIELDS / 64] = {0};
	struct rw_scan sc;
	int err;

	if (h->n_headers > HTTP1_REWRITE_MAX_FIELDS)
		return HTTP1_E_HEAD_TOO_LARGE;
	err = rewrite_scan(buf, h, rw, &sc);
	if (err)
		return err;
	/* Decided before anything is written: in place, names get overwritten. */
	for (uint32_t i = 0; i < h->n_headers; i++)
		if (rewrite_drops(buf, h, rw, &sc, &h->headers[i]))
			drop[i / 64] |= 1ull << (i % 64);
	if (req && h->absolute) {
		/* Origin form: the path ("/" when empty), and the authority as Host. */
		out_put(&o, buf + h->method_tok.off, h->method_tok.len);
		out_str(&o, " ");
		if (!h->path.len || buf[h->path.off] != '/')
			out_str(&o, "/");
		out_put(&o, buf + h->path.off, h->path.len);
		out_str(&o, " ");
		out_put(&o, buf + sl_end - 8, 8); /* HTTP/1.x */
		out_str(&o, "\r\nHost: ");
		out_put(&o, buf + h->authority.off, h->authority.len);
	} else {
		out_put(&o, buf + start, sl_end - start);
	}
	out_str(&o, "\r\n");
	for (uint32_t i = 0; i < h->n_headers; i++) {
		const struct http1_header *f = &h->headers[i];

		if (drop[i / 64] & (1ull << (i % 64)))
			continue;
		out_put(&o, buf + f->name.off,
			line_end(buf, f->value.off + f->value.len, end) - f->name.off);
		out_str(&o, "\r\n");
	}
	/* Connection again, with only what this hop means by it. */
	if (h->conn_close || h->conn_keep_alive || sc.upgrade_kept) {
		const char *sep = "";

		out_str(&o, "Connection: ");
		if (h->conn_close) {
			out_str(&o, "close");
			sep = ", ";
		}
		if (h->conn_keep_alive) {
			out_str(&o, sep);
			out_str(&o, "keep-alive");
			sep = ", ";
		}
		if (sc.upgrade_kept) {
			out_str(&o, sep);
			out_str(&o, "upgrade");
		}
		out_str(&o, "\r\n");
	}
	if (req)
		rewrite_add(buf, h, rw, &sc, &o);
	out_str(&o, "\r\n");
	if (o.over)
		return HTTP1_E_HEAD_TOO_LARGE;
	*out_len = o.len;
	return 0;
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * HTTP/1.x message framing (RFC 9112): an incremental, bounded parser for
 * request and response heads, a chunked-body decoder, and the rules that
 * decide how a response body is delimited.
 *
 * Nothing here allocates: results are offsets into the caller's buffer,
 * and the one function that writes, http1_rewrite_head(), writes into a
 * buffer the caller gives. The head parser is strict where leniency enables request
 * smuggling (bare CR or LF, obs-fold, whitespace before a colon,
 * conflicting framing headers): a proxy that reads framing differently
 * from the server behind it is the smuggling bug.
 */
#ifndef SHOAL_PROXY_HTTP1_PARSER_H
#define SHOAL_PROXY_HTTP1_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Results. Errors are the negated HTTP status a server should answer
 * with (http1_error_status()), not -errno: the caller's next step is a
 * response, not a syscall diagnosis.
 */
enum http1_result {
	HTTP1_NEED_MORE = 0, /* feed more bytes, same buffer start */
	HTTP1_DONE = 1,	     /* complete; see the consumed length */
	HTTP1_E_BAD_REQUEST = -400,
	HTTP1_E_URI_TOO_LONG = -414,
	HTTP1_E_HEAD_TOO_LARGE = -431,
	HTTP1_E_NOT_IMPLEMENTED = -501, /* unknown transfer-coding */
	HTTP1_E_BAD_VERSION = -505,
};

/* The methods of RFC 9110 section 9 plus PATCH (RFC 5789); others are OTHER. */
enum http1_method {
	HTTP1_METHOD_OTHER = 0,
	HTTP1_METHOD_GET,
	HTTP1_METHOD_HEAD,
	HTTP1_METHOD_POST,
	HTTP1_METHOD_PUT,
	HTTP1_METHOD_DELETE,
	HTTP1_METHOD_CONNECT,
	HTTP1_METHOD_OPTIONS,
	HTTP1_METHOD_TRACE,
	HTTP1_METHOD_PATCH,
};

enum http1_kind {
	HTTP1_REQUEST,
	HTTP1_RESPONSE,
};

/*
 * Limit defaults. Each can be overridden per listener in struct
 * http1_limits; these are what nginx and HAProxy ship with, in size.
 */
/* Request line: longer than any sane URL; past it the client gets 414. */
#define HTTP1_MAX_LINE_DEFAULT (8 * 1024)
/* Whole head: bounds per-connection memory before the body starts (431). */
#define HTTP1_MAX_HEAD_DEFAULT (32 * 1024)
/* Header lines: bounds the result array and per-request work (431). */
#define HTTP1_MAX_HEADERS_DEFAULT 100
/* Chunk-size line incl. extensions: nobody needs extensions, cap them small. */
#define HTTP1_MAX_CHUNK_LINE 1024
/*
 * Largest chunk size: 2^31 - 1. Servers that keep the size in a signed
 * 32-bit int wrap past it, and a peer reading a different size is a
 * smuggled request; real senders use chunks of kilobytes.
 */
#define HTTP1_MAX_CHUNK_SIZE 0x7fffffffull
/* Trailer section of a chunked body: same order as a small head. */
#define HTTP1_MAX_TRAILERS (8 * 1024)

struct http1_limits {
	uint32_t max_line;    /* request line or status line, bytes, no CRLF */
	uint32_t max_head;    /* head incl. the final empty line, bytes */
	uint32_t max_headers; /* header field lines */
};

/* A byte range of the caller's buffer. */
struct http1_span {
	uint32_t off;
	uint32_t len;
};

struct http1_header {
	struct http1_span name;	 /* token, case as sent */
	struct http1_span value; /* OWS trimmed; may be empty */
};

/*
 * One parsed head. The caller provides the header array (headers, cap);
 * fields below "derived" are the framing facts a proxy acts on.
 */
struct http1_head {
	struct http1_header *headers; /* caller's array */
	uint32_t cap;		      /* its length */
	uint32_t n_headers;

	enum http1_kind kind;
	uint8_t version_minor; /* 0 or 1: HTTP/1.0 or HTTP/1.1 */
	/* request line */
	enum http1_method method;
	struct http1_span method_tok;
	struct http1_span target; /* as sent: origin, absolute, authority or * */
	/*
	 * Absolute form (http:// or https://, RFC 9112 3.2.2): authority is
	 * its host[:port], which replaces Host (host below is it), and path
	 * what follows it (may be empty, or start with '?'). Otherwise path
	 * is the target.
	 */
	bool absolute;
	struct http1_span authority;
	struct http1_span path;
	/* status line */
	uint16_t status;
	struct http1_span reason;

	/* derived */
	bool has_content_length;
	uint64_t content_length;
	bool has_transfer_encoding;
	bool chunked;	 /* final transfer coding is chunked */
	bool conn_close; /* Connection: close */
	bool conn_keep_alive;
	bool conn_upgrade; /* Connection: upgrade */
	bool keep_alive;   /* persistence after this message (version + tokens) */
	bool expect_continue;
	bool upgrade;		/* an Upgrade header is present */
	bool has_host;		/* a Host field, or an absolute-form target */
	struct http1_span host; /* the absolute form's authority, else Host's value */
	bool has_request_id;	/* an x-request-id field */
};

/*
 * Incremental parser state. Keeps how far the bytes were checked, so
 * feeding a growing buffer costs linear time in total.
 */
struct http1_parser {
	struct http1_limits limits;
	enum http1_kind kind;
	uint32_t start;	     /* first byte of the start line (after empty lines) */
	uint32_t scanned;    /* bytes checked so far */
	uint32_t line_start; /* start of the line being scanned */
	uint32_t lines;	     /* complete lines seen, start line included */
};

/* struct http1_limits holding the defaults above. */
void http1_limits_default(struct http1_limits *lim);

/*
 * Prepare @p for a new message of @kind. @lim may be NULL for the
 * defaults; it is copied.
 */
void http1_parser_init(struct http1_parser *p, enum http1_kind kind,
		       const struct http1_limits *lim);

/*
 * Parse a message head from @buf, @len bytes. Call again with the same
 * buffer start and a larger @len as bytes arrive (the bytes already passed
 * must not change). @head->headers/@head->cap must be set by the caller;
 * at most min(cap, limits.max_headers) lines are accepted.
 *
 * Returns HTTP1_NEED_MORE; HTTP1_DONE with *@consumed the head length
 * (leading empty lines and the final CRLF included; the body or the next
 * pipelined message starts there) and @head filled; or a negative
 * enum http1_result. After DONE or an error @p is spent: http1_parser_init()
 * it again for the next message, at buf + *consumed once the body is skipped.
 */
int http1_parse_head(struct http1_parser *p, const char *buf, size_t len, struct http1_head *head,
		     size_t *consumed);

/* The HTTP status for an error result (400 for anything unexpected). */
int http1_error_status(int result);

/* Chunked body decoder: a streaming state machine, fed fresh bytes only. */
struct http1_chunked {
	uint8_t state;
	bool digits;	      /* the size line had at least one hex digit */
	uint8_t ext;	      /* past the digits: where in the extensions (http1_parser.c) */
	uint64_t remaining;   /* data bytes left in the current chunk */
	uint32_t line_len;    /* bytes of the current size or trailer line */
	uint32_t trailer_len; /* bytes of the trailer section so far */
	uint64_t payload;     /* total data bytes decoded */
};

/* One step of the decoder: @len bytes of the input, all payload or all framing. */
struct http1_chunk_step {
	size_t len;
	bool payload;
};

void http1_chunked_init(struct http1_chunked *c);

/*
 * Decode the start of @buf (@len > 0 bytes of body not yet fed). Consumes
 * a run of framing bytes or a run of chunk data and describes it in
 * @step; the caller advances by step->len and calls again.
 *
 * Returns HTTP1_NEED_MORE while the body goes on, HTTP1_DONE when
 * step->len ends with the final CRLF of the message (what follows belongs
 * to the next message), or HTTP1_E_BAD_REQUEST (bad size line, missing
 * CRLF after data, malformed trailer) or HTTP1_E_HEAD_TOO_LARGE (size
 * line or trailers over their limit).
 */
int http1_chunked_feed(struct http1_chunked *c, const char *buf, size_t len,
		       struct http1_chunk_step *step);

/* How a message body is delimited (RFC 9112 section 6.3). */
enum http1_body {
	HTTP1_BODY_NONE,	/* no body: HEAD, 1xx, 204, 304, or a request without one */
	HTTP1_BODY_LENGTH,	/* content_length bytes */
	HTTP1_BODY_CHUNKED,	/* run http1_chunked_feed */
	HTTP1_BODY_UNTIL_CLOSE, /* response only: read until the server closes */
	HTTP1_BODY_TUNNEL,	/* 2xx to CONNECT, or 101: bytes flow both ways */
};

/* Body framing of a parsed request head. */
enum http1_body http1_request_body(const struct http1_head *req);

/* Body framing of a parsed response head, given the request's method. */
enum http1_body http1_response_body(enum http1_method req_method, const struct http1_head *resp);

/*
 * Head rewriting on the way through a proxy (RFC 9110 7.6.1): what
 * http1_rewrite_head() drops and adds. Requests and responses both lose
 * the hop-by-hop fields: Connection (re-sent with only close, keep-alive
 * and an allowed upgrade), the fields Connection lists, Keep-Alive,
 * Proxy-Connection, TE (re-sent as "TE: trailers" when it held trailers)
 * and Upgrade, unless the upgrade is allowed.
 */
struct http1_rewrite {
	/* Requests: protocols an Upgrade may ask for (lowercase names, no version). */
	const char *const *upgrades;
	uint32_t n_upgrades;
	bool keep_upgrade;	   /* responses: a 101, whose Upgrade names the new protocol */
	bool strip_shoal;	   /* drop every x-shoal-* field (the proxy's own namespace) */
	const char *forwarded_for; /* append this address to X-Forwarded-For; NULL: leave it */
	bool forwarded_proto;	   /* replace X-Forwarded-Proto with "http" */
	const char *request_id;	   /* x-request-id to add when there is none; NULL: none */
	/* x-shoal-peer-identity to add: the caller's SPIFFE ID (docs/mtls.md); NULL: none */
	const char *peer_identity;
};

/*
 * Header fields a rewrite may add beyond those it was given:
 * X-Forwarded-For, -Proto, x-request-id, x-shoal-peer-identity, the Host of an absolute-form
 * target that had none, and a re-sent Connection line.
 */
#define HTTP1_REWRITE_ADDED_FIELDS 6
/*
 * Bytes a request head grows by in a rewrite, as the proxy sizes for it:
 * the three added fields (about 150 bytes with a 45-byte address and a
 * 32-digit request id) and a few bytes of re-sent Connection, TE, Host and
 * Upgrade fields. The proxy keeps this much room in the client buffer
 * (HTTP1_HEAD_RESERVE, http1.h); a head that grows more (an Upgrade list
 * of many allowed protocols without spaces) and then does not fit is 431.
 */
#define HTTP1_REWRITE_GROWTH_MAX 256
/* Bytes a response head may grow by in a rewrite: one re-sent Connection line. */
#define HTTP1_REWRITE_RESPONSE_SLACK 40
/* Header fields one rewrite handles; a head with more is HTTP1_E_HEAD_TOO_LARGE. */
#define HTTP1_REWRITE_MAX_FIELDS 2048
/* Tokens of the Connection fields of one head; more is a 400. */
#define HTTP1_MAX_CONNECTION_TOKENS 16

/*
 * Write head @h (parsed from @buf; the head is [@h's start, @end)) to
 * @out (@cap bytes) as a proxy forwards it, per @rw: hop-by-hop fields
 * dropped, an absolute-form target turned into origin form with its
 * authority as Host, the forwarding fields added before the empty line.
 * Other lines are copied byte for byte and in order.
 *
 * @out may be @buf + @start for a response (in place): lines only move
 * towards the start, and what is added (Connection) comes last, so @out
 * then needs HTTP1_REWRITE_RESPONSE_SLACK bytes of room past @end. A
 * request is always written elsewhere.
 *
 * Returns 0 with *@out_len the new head's length; HTTP1_E_BAD_REQUEST
 * when Connection lists more than HTTP1_MAX_CONNECTION_TOKENS tokens or
 * names a field that frames or routes the message (Content-Length,
 * Transfer-Encoding, Host): dropping it would change how the next hop
 * reads the message; HTTP1_E_HEAD_TOO_LARGE when @cap is too small.
 */
int http1_rewrite_head(const char *buf, const struct http1_head *h, uint32_t start, uint32_t end,
		       const struct http1_rewrite *rw, char *out, size_t cap, size_t *out_len);

#endif /* SHOAL_PROXY_HTTP1_PARSER_H */

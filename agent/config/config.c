// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The config file parser: a schema-driven walk over libyaml's event stream.
 * Each mapping is described by a table of fields, so unknown, duplicate,
 * missing and mistyped keys are caught in one place, and the first problem
 * ends the parse with "path:line: field: problem".
 *
 * Events rather than libyaml's document loader: the loader builds the whole
 * tree (aliases included) before we could look at it, so a hostile 16 MiB
 * file would cost hundreds of MiB. On events we stop at the first node that
 * does not fit the schema, and memory is bounded by what the schema keeps.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "balance/p2c.h"
#include "balance/peak_ewma.h"
#include "common/addr.h"
#include "telemetry/admin.h"
#include "telemetry/otlp.h"
#include "telemetry/trace.h"
#include "resilience/backoff.h"
#include "resilience/breaker.h"
#include "resilience/retry_budget.h"
#include "resilience/retry_policy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Limits of single fields. They live here rather than in config.h because
 * nothing outside the parser needs them; docs/config.md lists them all.
 */
#define CONFIG_MAX_WORKERS 256	     /* more threads than any node has cores */
#define CONFIG_MAX_TIMEOUT_MS 600000 /* 10 min: longer is a typo, not a policy */
#define CONFIG_MIN_FAILOPEN_MS 100   /* below a few heartbeats' jitter */
#define CONFIG_MIN_BUFFER_BYTES 1024 /* smaller only multiplies syscalls */
#define CONFIG_MAX_BUFFER_BYTES (1u << 20)
#define CONFIG_MAX_CONNECTIONS (1u << 20)   /* per worker; fds run out first */
#define CONFIG_MAX_BUFFER_MEMORY_MIB (1u << 20) /* 1 TiB: more is a typo */
#define CONFIG_MAX_REQUESTS_PER_CONN 100000000 /* 0 already means "no limit" */
#define CONFIG_MAX_DETECT_TIMEOUT_MS 10000  /* Linkerd's stall: longer is that trap */
#define CONFIG_MAX_IDLE_TIMEOUT_MS 86400000 /* a day; 0 already means "never" */
#define CONFIG_MIN_HTTP_LINE 64		    /* shorter refuses ordinary requests */
#define CONFIG_MIN_HTTP_HEAD 1024	    /* a browser's head is bigger than this */
#define CONFIG_MAX_HTTP_HEAD (1u << 20)	    /* more is a memory lever, not a use case */
#define CONFIG_MAX_HTTP_HEADERS 1024	    /* each costs parse and lookup work */
#define CONFIG_MAX_POOL_IDLE 4096	    /* idle connections pin server slots */
#define CONFIG_MIN_RETRY_STATUS 400	    /* retrying a success would replay it */
#define CONFIG_MAX_RETRY_STATUS 599

/*
 * Deepest nesting accepted. The schema itself needs 7 levels and refuses a
 * collection wherever it wants a scalar, so today this is a backstop: it
 * keeps the bound if a free-form field (labels, annotations) is ever added.
 */
#define CONFIG_MAX_DEPTH 8

/* Room for the longest dotted path:
 * "services[16383].routes[63].match.headers.<key quoted back, 51 bytes>". */
#define CONFIG_PATH_BUF 160
/* How much of a user's key or value is quoted back in a message. */
#define CONFIG_ECHO_MAX 48

/*
 * Longest value after ${NAME} substitution, with its NUL. Every field's own
 * limit is below it (a path is PATH_MAX - 1), so a value that outgrows it
 * could never be accepted anyway, and one that fits gets its field's own
 * message. It also caps what the environment can make one value cost.
 */
#define CONFIG_MAX_EXPANDED PATH_MAX
/* Longest NAME in ${NAME}: far beyond any real one, small enough to copy. */
#define CONFIG_MAX_ENV_NAME 128

enum field_kind {
	FIELD_U16,   /* uint16_t in [min, max] */
	FIELD_U32,   /* uint32_t in [min, max] */
	FIELD_INT,   /* int in [min, max] */
	FIELD_BOOL,  /* bool */
	FIELD_IPV4,  /* struct shoal_addr, IPv4 only */
	FIELD_IPV6,  /* struct shoal_addr, IPv6 only (not v4-mapped) */
	FIELD_IP,    /* struct shoal_addr, either family */
	FIELD_PATH,  /* char[PATH_MAX], absolute */
	FIELD_LABEL, /* char[CONFIG_MAX_NAME + 1], RFC 1123 label */
	FIELD_PROTO, /* enum config_protocol */
	FIELD_FUNC,  /* parsed by field.parse */
};

struct cfg_parser;

/* One key of a mapping: how to parse its value and where it goes. */
struct field {
	const char *key;
	enum field_kind kind;
	size_t off;	   /* offset of the value in the object being filled */
	uint32_t min, max; /* integer kinds */
	bool required;
	int (*parse)(struct cfg_parser *p, void *obj); /* FIELD_FUNC */
};

/* Enough bits for the largest table below. */
#define MAP_MAX_FIELDS 16

/* What one mapping set, for checks that span several of its fields. */
struct map_seen {
	uint32_t mask;		  /* bit i: fields[i] was present */
	int line[MAP_MAX_FIELDS]; /* line of each present key */
	int start_line;		  /* line of the mapping itself */
};

struct cfg_parser {
	yaml_parser_t yaml;
	yaml_event_t ev; /* the current event, owned while have_ev */
	bool have_ev;
	int depth; /* collections open at the current event */

	const char *name; /* the file, as messages name it */
	const char *text;
	size_t len;
	char *err;
	size_t errlen;

	/* Dotted path of the node being parsed, e.g. "services[0].ports[1]". */
	char path[CONFIG_PATH_BUF];
	size_t path_len;

	struct config *cfg;
	struct config_service *svc; /* the service being parsed */
	int n_routes_total;	    /* routes in the whole file so far */
	int key_line;		    /* line of the key whose value is being parsed */
	int node_line;		    /* where node: was, for the "address required" check */

	/* The current value after ${NAME} substitution, when it had any "$". */
	char expanded[CONFIG_MAX_EXPANDED];
};

/* Lines in messages are 1-based; libyaml's marks are 0-based. */
static int mark_line(size_t line0)
{
	return line0 >= INT_MAX ? INT_MAX : (int)line0 + 1;
}

static int cp_line(const struct cfg_parser *p)
{
	return mark_line(p->ev.start_mark.line);
}

/*
 * Copy a user's text into buf (CONFIG_ECHO_MAX + 4 bytes) for a message:
 * printable ASCII only, cut with "..." when long, so that a hostile file
 * cannot put control characters or megabytes into a log line. Returns buf.
 */
static const char *echo(const char *s, size_t n, char *buf)
{
	size_t i, m = n > CONFIG_ECHO_MAX ? CONFIG_ECHO_MAX : n;

	for (i = 0; i < m; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (m < n) {
		memcpy(buf + m, "...", 3);
		m += 3;
	}
	buf[m] = '\0';
	return buf;
}

/*
 * Write "name:line: path: problem" into the caller's err (an empty path
 * reads "yaml": the problem is with the document, not a field). Always
 * returns -EINVAL so that callers can "return cp_fail(...)".
 */
static int __attribute__((format(printf, 3, 4)))
cp_fail(struct cfg_parser *p, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!p->err || !p->errlen)
		return -EINVAL;
	n = snprintf(p->err, p->errlen, "%s:%d: %s: ", p->name, line,
		     p->path_len ? p->path : "yaml");
	if (n >= 0 && (size_t)n < p->errlen) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Allocation failed: not the file's fault, so no line or field. Returns -ENOMEM. */
static int cp_oom(struct cfg_parser *p)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s: out of memory", p->name);
	return -ENOMEM;
}

/*
 * Room for element n of the array *arr of elem-byte elements, n of them in
 * use: the array doubles whenever n reaches a power of two (the capacity
 * is implied, nothing to store). 0, or -ENOMEM with the message set.
 */
static int cp_grow(struct cfg_parser *p, void **arr, size_t n, size_t elem)
{
	void *grown;

	if (n & (n - 1))
		return 0;
	grown = realloc(*arr, (n ? 2 * n : 1) * elem);
	if (!grown)
		return cp_oom(p);
	*arr = grown;
	return 0;
}

/* Append ".key" ("key" at the top). Returns the length to restore with cp_path_pop. */
static size_t cp_path_push_key(struct cfg_parser *p, const char *key)
{
	size_t old = p->path_len;

	snprintf(p->path + old, sizeof(p->path) - old, "%s%s", old ? "." : "", key);
	p->path_len = strlen(p->path);
	return old;
}

static size_t cp_path_push_index(struct cfg_parser *p, int i)
{
	size_t old = p->path_len;

	snprintf(p->path + old, sizeof(p->path) - old, "[%d]", i);
	p->path_len = strlen(p->path);
	return old;
}

static void cp_path_pop(struct cfg_parser *p, size_t old)
{
	p->path_len = old;
	p->path[old] = '\0';
}

/* Replace the path wholesale, for checks made after the walk. */
static void __attribute__((format(printf, 2, 3)))
cp_path_set(struct cfg_parser *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->path, sizeof(p->path), fmt, ap);
	va_end(ap);
	p->path_len = strlen(p->path);
}

/* libyaml failed: report its problem at the line it points to. */
static int cp_yaml_error(struct cfg_parser *p)
{
	const yaml_parser_t *y = &p->yaml;
	int line;

	if (y->error == YAML_MEMORY_ERROR)
		return cp_oom(p);
	if (y->error == YAML_READER_ERROR) {
		/* Reader errors (bad UTF-8, control characters) carry only an offset. */
		size_t i, end = y->problem_offset < p->len ? y->problem_offset : p->len;

		line = 1;
		for (i = 0; i < end && line < INT_MAX; i++)
			line += p->text[i] == '\n';
	} else {
		line = mark_line(y->problem_mark.line);
	}
	cp_path_pop(p, 0);
	return cp_fail(p, line, "%s", y->problem ? y->problem : "syntax error");
}

/*
 * Advance to the next event. Refuses what the schema never needs and what
 * makes YAML hostile: aliases and anchors (exponential expansion), tags,
 * and nesting beyond CONFIG_MAX_DEPTH. Returns 0 or -errno with err set.
 */
static int cp_next(struct cfg_parser *p)
{
	yaml_event_t *ev = &p->ev;
	const yaml_char_t *anchor = NULL, *tag = NULL;

	if (p->have_ev) {
		yaml_event_delete(ev);
		p->have_ev = false;
	}
	if (!yaml_parser_parse(&p->yaml, ev))
		return cp_yaml_error(p);
	p->have_ev = true;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		return cp_fail(p, cp_line(p), "YAML aliases are not allowed");
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		tag = ev->data.scalar.tag;
		break;
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->data.sequence_start.anchor;
		tag = ev->data.sequence_start.tag;
		p->depth++;
		break;
	case YAML_MAPPING_START_EVENT:
		anchor = ev->data.mapping_start.anchor;
		tag = ev->data.mapping_start.tag;
		p->depth++;
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		p->depth--;
		break;
	default:
		break;
	}
	if (anchor)
		return cp_fail(p, cp_line(p), "YAML anchors are not allowed");
	if (tag)
		return cp_fail(p, cp_line(p), "YAML tags are not supported");
	if (p->depth > CONFIG_MAX_DEPTH)
		return cp_fail(p, cp_line(p), "nested deeper than %d levels", CONFIG_MAX_DEPTH);
	return 0;
}

/* An unquoted empty, "~" or "null" scalar: YAML's null, as in "key:" with no value. */
static bool ev_is_null(const yaml_event_t *ev)
{
	const char *v = (const char *)ev->data.scalar.value;
	size_t n = ev->data.scalar.length;

	if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return n == 0 || (n == 1 && v[0] == '~') ||
	       (n == 4 &&
		(!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

/* What the current event is, for "must be X, got Y". */
static const char *ev_kind(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
		return "a mapping";
	case YAML_SEQUENCE_START_EVENT:
		return "a sequence";
	case YAML_SCALAR_EVENT:
		return ev_is_null(ev) ? "nothing" : "a scalar";
	default:
		return "something else";
	}
}

static bool is_env_name_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

/* Append n bytes to the value being expanded, within CONFIG_MAX_EXPANDED. */
static int cp_expand_append(struct cfg_parser *p, size_t *len, const char *s, size_t n)
{
	if (n >= sizeof(p->expanded) - *len)
		return cp_fail(p, cp_line(p), "expands to more than %zu bytes",
			       sizeof(p->expanded) - 1);
	memcpy(p->expanded + *len, s, n);
	*len += n;
	return 0;
}

/*
 * Substitute ${NAME} and ${NAME:-default} in a value from the environment,
 * so that one file shared by every node (a DaemonSet's ConfigMap) can carry
 * per-node values such as the node's address. "$$" is a literal "$", and
 * any other "$" is an error: a "$" meant literally must never be read as a
 * reference or the other way round. One pass: what a variable holds is not
 * expanded again. A default is used when the variable is unset or empty,
 * as in the shell, and is taken literally up to the first "}".
 *
 * On success *s and *n point into p->expanded (valid until the next value)
 * or are left alone when the value has no "$". Returns 0 or -EINVAL.
 */
static int cp_expand(struct cfg_parser *p, const char **s, size_t *n)
{
	char name[CONFIG_MAX_ENV_NAME + 1], buf[CONFIG_ECHO_MAX + 4];
	const char *in = *s, *end = *s + *n, *dollar, *ref, *close, *val;
	size_t len = 0, name_len, val_len;
	int err;

	if (!memchr(in, '$', *n))
		return 0;
	while ((dollar = memchr(in, '$', (size_t)(end - in)))) {
		err = cp_expand_append(p, &len, in, (size_t)(dollar - in));
		if (err)
			return err;
		if (end - dollar >= 2 && dollar[1] == '$') {
			err = cp_expand_append(p, &len, "$", 1);
			if (err)
				return err;
			in = dollar + 2;
			continue;
		}
		if (end - dollar < 2 || dollar[1] != '{')
			return cp_fail(
			    p, cp_line(p),
			    "a \"$\" must start ${NAME} or be written \"$$\", got \"%s\"",
			    echo(*s, *n, buf));
		ref = dollar + 2;
		close = memchr(ref, '}', (size_t)(end - ref));
		if (!close)
			return cp_fail(p, cp_line(p), "\"${\" without a closing \"}\", got \"%s\"",
				       echo(dollar, (size_t)(end - dollar), buf));
		for (name_len = 0; ref + name_len < close; name_len++) {
			if (!is_env_name_char(ref[name_len], name_len == 0))
				break;
		}
		/* After the name: "}" or ":-default}", nothing else. */
		if (name_len == 0 || name_len > CONFIG_MAX_ENV_NAME ||
		    (ref + name_len < close &&
		     (close - (ref + name_len) < 2 || memcmp(ref + name_len, ":-", 2))))
			return cp_fail(p, cp_line(p),
				       "must be ${NAME} or ${NAME:-default} with NAME of "
				       "[A-Za-z_][A-Za-z0-9_]* (at most %d), got \"%s\"",
				       CONFIG_MAX_ENV_NAME,
				       echo(dollar, (size_t)(close + 1 - dollar), buf));
		memcpy(name, ref, name_len);
		name[name_len] = '\0';
		val = getenv(name);
		val_len = val ? strlen(val) : 0;
		if (ref + name_len < close && !val_len) {
			val = ref + name_len + 2;
			val_len = (size_t)(close - val);
		}
		if (!val)
			return cp_fail(p, cp_line(p), "environment variable %s is not set", name);
		err = cp_expand_append(p, &len, val, val_len);
		if (err)
			return err;
		in = close + 1;
	}
	err = cp_expand_append(p, &len, in, (size_t)(end - in));
	if (err)
		return err;
	*s = p->expanded;
	*n = len;
	return 0;
}

/*
 * The current event must be a non-null scalar; want names the expected
 * type for the message. Returns 0 with *s (not NUL-terminated, may contain
 * NUL from a "\0" escape) and *n, or -EINVAL.
 *
 * Every value of every field is read here, so ${NAME} is substituted here,
 * once, before any field looks at the text: each field then checks what
 * the environment gave as it checks what the file says. Keys are read
 * elsewhere and never substituted.
 */
static int cp_scalar(struct cfg_parser *p, const char *want, const char **s, size_t *n)
{
	*s = "";
	*n = 0;
	if (p->ev.type != YAML_SCALAR_EVENT || ev_is_null(&p->ev))
		return cp_fail(p, cp_line(p), "must be %s, got %s", want, ev_kind(&p->ev));
	*s = (const char *)p->ev.data.scalar.value;
	*n = p->ev.data.scalar.length;
	return cp_expand(p, s, n);
}

static bool ev_is_plain(const yaml_event_t *ev)
{
	return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/*
 * Read "123" or "0x7b". Leading zeros are refused: YAML 1.1 reads "010" as
 * octal, and guessing which one the user meant is worse than asking.
 * Returns false if s is not such an integer; *big if it exceeds 64 bits.
 */
static bool scan_uint(const char *s, size_t n, uint64_t *out, bool *big)
{
	unsigned int base = 10, d;
	uint64_t v = 0;
	size_t i = 0;

	*big = false;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	} else if (n == 0 || (n > 1 && s[0] == '0')) {
		return false;
	}
	for (; i < n; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			d = s[i] - '0';
		else if (base == 16 && s[i] >= 'a' && s[i] <= 'f')
			d = s[i] - 'a' + 10;
		else if (base == 16 && s[i] >= 'A' && s[i] <= 'F')
			d = s[i] - 'A' + 10;
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			*big = true;
		else
			v = v * base + d;
	}
	*out = v;
	return true;
}

/* An unquoted integer in [min, max]. Returns 0 with *out, or -EINVAL. */
static int cp_uint(struct cfg_parser *p, uint64_t min, uint64_t max, uint64_t *out)
{
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n;
	bool neg, big;
	uint64_t v = 0;
	int err;

	err = cp_scalar(p, "an integer", &s, &n);
	if (err)
		return err;
	if (!ev_is_plain(&p->ev))
		return cp_fail(p, cp_line(p), "must be an integer, got the string \"%s\"",
			       echo(s, n, buf));
	neg = n > 1 && s[0] == '-';
	if (!scan_uint(s + neg, n - neg, &v, &big))
		return cp_fail(p, cp_line(p), "must be a decimal or 0x hex integer, got \"%s\"",
			       echo(s, n, buf));
	if (neg || big || v < min || v > max)
		return cp_fail(p, cp_line(p), "must be %" PRIu64 "..%" PRIu64 ", got %s", min, max,
			       echo(s, n, buf));
	*out = v;
	return 0;
}

/* An unquoted YAML 1.1 boolean: true/false, yes/no, on/off, any case. */
static int cp_bool(struct cfg_parser *p, bool *out)
{
	static const struct {
		const char *word;
		bool value;
	} words[] = {
	    {"true", true}, {"false", false}, {"yes", true},
	    {"no", false},  {"on", true},     {"off", false},
	};
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n, i;
	int err;

	err = cp_scalar(p, "true or false", &s, &n);
	if (err)
		return err;
	for (i = 0; ev_is_plain(&p->ev) && i < ARRAY_SIZE(words); i++) {
		if (strlen(words[i].word) == n && !strncasecmp(s, words[i].word, n)) {
			*out = words[i].value;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be true or false, got %s\"%s\"",
		       ev_is_plain(&p->ev) ? "" : "the string ", echo(s, n, buf));
}

/* Any scalar that fits size with its NUL and holds no NUL of its own. */
static int cp_string(struct cfg_parser *p, const char *want, char *out, size_t size)
{
	const char *s;
	size_t n;
	int err;

	err = cp_scalar(p, want, &s, &n);
	if (err)
		return err;
	if (memchr(s, '\0', n))
		return cp_fail(p, cp_line(p), "must not contain NUL characters");
	if (n >= size)
		return cp_fail(p, cp_line(p), "must be at most %zu characters, got %zu", size - 1,
			       n);
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* [a-z0-9-], 1..63 characters, alphanumeric at both ends (RFC 1123 label). */
static bool is_label(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > CONFIG_MAX_NAME || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	}
	return true;
}

static int cp_label(struct cfg_parser *p, char out[CONFIG_MAX_NAME + 1])
{
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n;
	int err;

	err = cp_scalar(p, "a name", &s, &n);
	if (err)
		return err;
	if (n > CONFIG_MAX_NAME || memchr(s, '\0', n))
		goto bad;
	memcpy(out, s, n);
	out[n] = '\0';
	if (is_label(out))
		return 0;
bad:
	return cp_fail(p, cp_line(p),
		       "must be an RFC 1123 label (a-z, 0-9 and '-', at most %d, alphanumeric at "
		       "both ends), got \"%s\"",
		       CONFIG_MAX_NAME, echo(s, n, buf));
}

static int cp_abs_path(struct cfg_parser *p, char out[PATH_MAX])
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err;

	err = cp_string(p, "a path", out, PATH_MAX);
	if (err)
		return err;
	if (out[0] != '/')
		return cp_fail(p, cp_line(p), "must be an absolute path, got \"%s\"",
			       echo(out, strlen(out), buf));
	return 0;
}

/* 0.0.0.0 arrives v4-mapped, so addr_is_zero alone misses it. */
static bool addr_is_unspecified(const struct shoal_addr *a)
{
	return addr_is_zero(a) || (addr_is_v4(a) && a->ip6[3] == 0);
}

/*
 * An IP address of the family kind asks for (FIELD_IPV4, FIELD_IPV6 or
 * FIELD_IP), never the unspecified one: every address in the file is one a
 * packet is sent to or a listener binds for a specific node.
 */
static int cp_addr(struct cfg_parser *p, enum field_kind kind, struct shoal_addr *out)
{
	static const char *const want[] = {
	    [FIELD_IPV4] = "an IPv4 address",
	    [FIELD_IPV6] = "an IPv6 address (not v4-mapped)",
	    [FIELD_IP] = "an IP address",
	};
	char text[INET6_ADDRSTRLEN + 8], buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n;
	int err;

	err = cp_scalar(p, want[kind], &s, &n);
	if (err)
		return err;
	if (n >= sizeof(text) || memchr(s, '\0', n))
		goto bad;
	memcpy(text, s, n);
	text[n] = '\0';
	if (addr_parse(text, out))
		goto bad;
	/* "::ffff:10.0.0.1" parses v4-mapped but is not what "an IPv4 address" means. */
	if (kind == FIELD_IPV4 && (!addr_is_v4(out) || strchr(text, ':')))
		goto bad;
	if (kind == FIELD_IPV6 && addr_is_v4(out))
		goto bad;
	if (addr_is_unspecified(out))
		return cp_fail(p, cp_line(p), "must not be the unspecified address, got %s", text);
	return 0;
bad:
	return cp_fail(p, cp_line(p), "must be %s, got \"%s\"", want[kind], echo(s, n, buf));
}

/*
 * tcp, http or h2c, or the Kubernetes appProtocol spelling of one of them,
 * so that a Service's appProtocol can be copied as it is. There is no
 * spelling for CONFIG_PROTO_DETECT: leaving the field out asks for it.
 */
static int cp_proto(struct cfg_parser *p, enum config_protocol *out)
{
	static const struct {
		const char *name;
		enum config_protocol proto;
	} names[] = {
	    {"tcp", CONFIG_PROTO_TCP},
	    {"http", CONFIG_PROTO_HTTP},
	    {"h2c", CONFIG_PROTO_H2C},
	    {"kubernetes.io/h2c", CONFIG_PROTO_H2C},
	    /* WebSocket starts as an HTTP/1.1 Upgrade, which the proxy tunnels. */
	    {"kubernetes.io/ws", CONFIG_PROTO_HTTP},
	    /* WebSocket over TLS: the proxy cannot see inside, so bytes. */
	    {"kubernetes.io/wss", CONFIG_PROTO_TCP},
	};
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n, i;
	int err;

	err = cp_scalar(p, "tcp, http or h2c", &s, &n);
	if (err)
		return err;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (strlen(names[i].name) == n && !memcmp(s, names[i].name, n)) {
			*out = names[i].proto;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be tcp, http or h2c, got \"%s\"", echo(s, n, buf));
}

/* Parse the value at the current event into obj as f describes. */
static int cp_field(struct cfg_parser *p, const struct field *f, void *obj)
{
	void *dst = (char *)obj + f->off;
	uint64_t v = 0;
	int err;

	switch (f->kind) {
	case FIELD_U16:
	case FIELD_U32:
	case FIELD_INT:
		err = cp_uint(p, f->min, f->max, &v);
		if (err)
			return err;
		if (f->kind == FIELD_U16)
			*(uint16_t *)dst = (uint16_t)v;
		else if (f->kind == FIELD_U32)
			*(uint32_t *)dst = (uint32_t)v;
		else
			*(int *)dst = (int)v;
		return 0;
	case FIELD_BOOL:
		return cp_bool(p, dst);
	case FIELD_IPV4:
	case FIELD_IPV6:
	case FIELD_IP:
		return cp_addr(p, f->kind, dst);
	case FIELD_PATH:
		return cp_abs_path(p, dst);
	case FIELD_LABEL:
		return cp_label(p, dst);
	case FIELD_PROTO:
		return cp_proto(p, dst);
	case FIELD_FUNC:
		return f->parse(p, obj);
	}
	return cp_fail(p, cp_line(p), "internal error: field kind %d", (int)f->kind);
}

/* One "key: value" of a mapping whose key is the current event. */
static int cp_map_entry(struct cfg_parser *p, const struct field *fields, size_t n_fields,
			void *obj, struct map_seen *seen)
{
	char buf[CONFIG_ECHO_MAX + 4];
	const struct field *f = NULL;
	int line = cp_line(p), err;
	const char *key;
	size_t i, klen, old;

	if (p->ev.type != YAML_SCALAR_EVENT)
		return cp_fail(p, line, "keys must be scalars, got %s", ev_kind(&p->ev));
	key = (const char *)p->ev.data.scalar.value;
	klen = p->ev.data.scalar.length;
	for (i = 0; i < n_fields && !f; i++) {
		if (strlen(fields[i].key) == klen && !memcmp(fields[i].key, key, klen))
			f = &fields[i];
	}
	if (!f) {
		cp_path_push_key(p, klen ? echo(key, klen, buf) : "\"\"");
		return cp_fail(p, line, "unknown field");
	}
	old = cp_path_push_key(p, f->key);
	i = f - fields;
	if (seen->mask & (1u << i))
		return cp_fail(p, line, "duplicate field (first at line %d)", seen->line[i]);
	seen->mask |= 1u << i;
	seen->line[i] = line;
	p->key_line = line;

	err = cp_next(p);
	if (err)
		return err;
	err = cp_field(p, f, obj);
	if (err)
		return err;
	cp_path_pop(p, old);
	return 0;
}

/*
 * Parse the mapping at the current event into obj. A null value counts as
 * an empty mapping ("node:" with everything commented out). Fills *seen.
 * Returns 0 with the mapping's end as the current event, or -errno.
 */
static int cp_map(struct cfg_parser *p, const struct field *fields, size_t n_fields, void *obj,
		  struct map_seen *seen)
{
	size_t i;
	int err;

	memset(seen, 0, sizeof(*seen));
	seen->start_line = cp_line(p);
	if (!ev_is_null(&p->ev)) {
		if (p->ev.type != YAML_MAPPING_START_EVENT)
			return cp_fail(p, cp_line(p), "must be a mapping, got %s", ev_kind(&p->ev));
		for (;;) {
			err = cp_next(p);
			if (err)
				return err;
			if (p->ev.type == YAML_MAPPING_END_EVENT)
				break;
			err = cp_map_entry(p, fields, n_fields, obj, seen);
			if (err)
				return err;
		}
	}
	for (i = 0; i < n_fields; i++) {
		if (fields[i].required && !(seen->mask & (1u << i))) {
			cp_path_push_key(p, fields[i].key);
			return cp_fail(p, seen->start_line, "is required");
		}
	}
	return 0;
}

/*
 * Parse the sequence at the current event, calling item for each element
 * (the element is the current event; i its index). Null counts as empty.
 */
static int cp_seq(struct cfg_parser *p, int (*item)(struct cfg_parser *p, void *obj, int i),
		  void *obj)
{
	size_t old;
	int i, err;

	if (ev_is_null(&p->ev))
		return 0;
	if (p->ev.type != YAML_SEQUENCE_START_EVENT)
		return cp_fail(p, cp_line(p), "must be a sequence, got %s", ev_kind(&p->ev));
	for (i = 0;; i++) {
		err = cp_next(p);
		if (err)
			return err;
		if (p->ev.type == YAML_SEQUENCE_END_EVENT)
			return 0;
		old = cp_path_push_index(p, i);
		err = item(p, obj, i);
		if (err)
			return err;
		cp_path_pop(p, old);
	}
}

/* ---- services[i].endpoints ---- */

/*
 * An address an endpoint can have: never loopback, link-local, multicast,
 * broadcast or unspecified (addr_endpoint_refusal), which from the node's
 * own netns, where the proxy dials, reach the node itself or nothing. The
 * node's own address is allowed here, unlike in an EndpointSlice: the
 * file is the node operator's, who may mean a host-network server
 * (docs/discovery.md, "Addresses no endpoint can have").
 */
static int parse_endpoint_address(struct cfg_parser *p, void *obj)
{
	struct config_endpoint *ep = obj;
	char text[INET6_ADDRSTRLEN];
	const char *why;
	int err = cp_addr(p, FIELD_IP, &ep->addr);

	if (err)
		return err;
	why = addr_endpoint_refusal(&ep->addr);
	if (why)
		return cp_fail(p, cp_line(p),
			       "must not be %s %s address, got %s (the proxy dials endpoints from "
			       "the node's own network namespace)",
			       strchr("aeiou", why[0]) ? "an" : "a", why, addr_ntop(&ep->addr, text, sizeof(text)));
	return 0;
}

static const struct field endpoint_fields[] = {
    {"address", FIELD_FUNC, .parse = parse_endpoint_address, .required = true},
};

static int parse_endpoint(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_endpoint *ep;
	struct map_seen seen;

	if (i >= CONFIG_MAX_ENDPOINTS)
		return cp_fail(p, cp_line(p), "too many endpoints, at most %d",
			       CONFIG_MAX_ENDPOINTS);
	if (cp_grow(p, (void **)&svc->endpoints, (size_t)svc->n_endpoints, sizeof(*ep)))
		return -ENOMEM;
	ep = &svc->endpoints[svc->n_endpoints++];
	memset(ep, 0, sizeof(*ep));
	ep->ready = ep->serving = true; /* the file lists endpoints to use */
	ep->line = cp_line(p);
	return cp_map(p, endpoint_fields, ARRAY_SIZE(endpoint_fields), ep, &seen);
}

static int parse_endpoints(struct cfg_parser *p, void *obj)
{
	return cp_seq(p, parse_endpoint, obj);
}

/* ---- services[i].ports ---- */

enum { PORT_F_PORT, PORT_F_TARGET, PORT_F_PROTOCOL };

static const struct field port_fields[] = {
    [PORT_F_PORT] = {"port", FIELD_U16, offsetof(struct config_port, port), 1, 65535,
		     .required = true},
    [PORT_F_TARGET] = {"target_port", FIELD_U16, offsetof(struct config_port, target_port), 1,
		       65535},
    [PORT_F_PROTOCOL] = {"protocol", FIELD_PROTO, offsetof(struct config_port, protocol)},
};

static int parse_port(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_port *port;
	struct map_seen seen;
	int j, err;

	if (i >= CONFIG_MAX_PORTS)
		return cp_fail(p, cp_line(p), "too many ports, at most %d", CONFIG_MAX_PORTS);
	port = &svc->ports[svc->n_ports];
	memset(port, 0, sizeof(*port));
	/* Opaque ports turn this into TCP once the whole file is read. */
	port->protocol = CONFIG_PROTO_DETECT;
	port->line = cp_line(p);
	err = cp_map(p, port_fields, ARRAY_SIZE(port_fields), port, &seen);
	if (err)
		return err;
	if (!(seen.mask & (1u << PORT_F_TARGET)))
		port->target_port = port->port;
	port->declared = seen.mask & (1u << PORT_F_PROTOCOL);
	for (j = 0; j < svc->n_ports; j++) {
		if (svc->ports[j].port == port->port) {
			cp_path_push_key(p, "port");
			return cp_fail(p, seen.line[PORT_F_PORT],
				       "duplicate port %u (also ports[%d] at line %d)", port->port,
				       j, svc->ports[j].line);
		}
	}
	svc->n_ports++;
	return 0;
}

static int parse_ports(struct cfg_parser *p, void *obj)
{
	struct config_service *svc = obj;
	int line = cp_line(p), err;

	err = cp_seq(p, parse_port, svc);
	if (err)
		return err;
	if (svc->n_ports == 0)
		return cp_fail(p, line, "must list 1..%d ports, got none", CONFIG_MAX_PORTS);
	return 0;
}

/* ---- services[i].vips ---- */

static int parse_vip(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct shoal_addr vip;
	int j, err;

	if (i >= CONFIG_MAX_VIPS)
		return cp_fail(p, cp_line(p), "too many VIPs, at most %d", CONFIG_MAX_VIPS);
	err = cp_addr(p, FIELD_IP, &vip);
	if (err)
		return err;
	for (j = 0; j < svc->n_vips; j++) {
		if (addr_equal(&svc->vips[j], &vip))
			return cp_fail(p, cp_line(p), "duplicate VIP (also vips[%d])", j);
	}
	svc->vips[svc->n_vips++] = vip;
	return 0;
}

static int parse_vips(struct cfg_parser *p, void *obj)
{
	struct config_service *svc = obj;
	int line = cp_line(p), err;

	err = cp_seq(p, parse_vip, svc);
	if (err)
		return err;
	if (svc->n_vips == 0)
		return cp_fail(p, line, "must list 1..%d addresses, got none", CONFIG_MAX_VIPS);
	return 0;
}

/* ---- services[i].routes ---- */

/* A heap copy of n bytes plus a NUL, for strings the config keeps. */
static char *cp_strndup(struct cfg_parser *p, const char *s, size_t n, int *err)
{
	char *d = malloc(n + 1);

	if (!d) {
		*err = cp_oom(p);
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	*err = 0;
	return d;
}

/* RFC 9110 tchar: what methods and header names are made of. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/*
 * A host as a route matches it: a DNS-style name ([a-z0-9._-], no empty
 * label), optionally "*." in front for a suffix, or a bracketed IPv6
 * literal. Lower-cased in place. No port: requests are compared without
 * theirs, so a port here could never match.
 */
static bool host_valid(char *h, bool *suffix)
{
	size_t i, n = strlen(h);
	char *name = h;

	*suffix = false;
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		for (i = 1; i + 1 < n; i++) {
			h[i] = ascii_lower(h[i]);
			if (!strchr("0123456789abcdef:.", h[i]))
				return false;
		}
		return n > 2;
	}
	if (n > 2 && h[0] == '*' && h[1] == '.') {
		*suffix = true;
		name = h + 2;
	}
	n = strlen(name);
	if (n == 0 || name[0] == '.' || name[n - 1] == '.' || strstr(name, ".."))
		return false;
	for (i = 0; i < n; i++) {
		name[i] = ascii_lower(name[i]);
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '-' || name[i] == '.' || name[i] == '_'))
			return false;
	}
	return true;
}

static int parse_host(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	char h[CONFIG_MAX_HOST + 1], buf[CONFIG_ECHO_MAX + 4];
	const char *stored;
	bool suffix;
	int j, err;

	if (i >= CONFIG_MAX_ROUTE_HOSTS)
		return cp_fail(p, cp_line(p), "too many hosts, at most %d", CONFIG_MAX_ROUTE_HOSTS);
	err = cp_string(p, "a host name", h, sizeof(h));
	if (err)
		return err;
	if (!host_valid(h, &suffix))
		return cp_fail(p, cp_line(p),
			       "must be a host name without port, \"*.\" and a name, or [IPv6], "
			       "got \"%s\"",
			       echo(h, strlen(h), buf));
	/* The suffix keeps its dot: "*.a.com" matches "x.a.com", never "xa.com". */
	stored = suffix ? h + 1 : h;
	for (j = 0; j < r->n_hosts; j++) {
		if (r->hosts[j].suffix == suffix && !strcmp(r->hosts[j].name, stored))
			return cp_fail(p, cp_line(p), "duplicate host (also hosts[%d])", j);
	}
	r->hosts[i].name = cp_strndup(p, stored, strlen(stored), &err);
	if (err)
		return err;
	r->hosts[i].len = strlen(stored);
	r->hosts[i].suffix = suffix;
	r->n_hosts++;
	return 0;
}

static int parse_hosts(struct cfg_parser *p, void *obj)
{
	return cp_seq(p, parse_host, obj);
}

/*
 * A path criterion: absolute, visible ASCII, no query or fragment (the
 * matcher compares the path alone). A prefix loses its trailing '/', so
 * "/api/" and "/api" both mean "/api" and everything under it.
 */
static int parse_path_value(struct cfg_parser *p, struct config_route *r,
			    enum config_path_match how)
{
	char path[CONFIG_MAX_ROUTE_PATH + 1], buf[CONFIG_ECHO_MAX + 4];
	size_t i, n;
	int err;

	err = cp_string(p, "a path", path, sizeof(path));
	if (err)
		return err;
	n = strlen(path);
	for (i = 0; i < n; i++) {
		if (path[i] <= 0x20 || path[i] >= 0x7f || path[i] == '?' || path[i] == '#')
			break;
	}
	if (path[0] != '/' || i < n)
		return cp_fail(p, cp_line(p),
			       "must start with \"/\" and hold no spaces, '?' or '#', got \"%s\"",
			       echo(path, n, buf));
	if (r->path_match != CONFIG_PATH_ANY)
		return cp_fail(p, cp_line(p), "exact and prefix exclude each other");
	if (how == CONFIG_PATH_PREFIX) {
		while (n > 1 && path[n - 1] == '/')
			n--;
	}
	r->path = cp_strndup(p, path, n, &err);
	if (err)
		return err;
	r->path_len = n;
	r->path_match = how;
	return 0;
}

static int parse_path_exact(struct cfg_parser *p, void *obj)
{
	return parse_path_value(p, obj, CONFIG_PATH_EXACT);
}

static int parse_path_prefix(struct cfg_parser *p, void *obj)
{
	return parse_path_value(p, obj, CONFIG_PATH_PREFIX);
}

static const struct field path_fields[] = {
    {"exact", FIELD_FUNC, .parse = parse_path_exact},
    {"prefix", FIELD_FUNC, .parse = parse_path_prefix},
};

static int parse_path(struct cfg_parser *p, void *obj)
{
	struct config_route *r = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, path_fields, ARRAY_SIZE(path_fields), r, &seen);
	if (err)
		return err;
	if (r->path_match == CONFIG_PATH_ANY)
		return cp_fail(p, seen.start_line, "exact or prefix is required");
	return 0;
}

/* Upper-case tokens only: methods are case-sensitive, so "get" would never match. */
static int parse_method(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	char m[CONFIG_MAX_METHOD + 1], buf[CONFIG_ECHO_MAX + 4];
	size_t k, n;
	int j, err;

	if (i >= CONFIG_MAX_ROUTE_METHODS)
		return cp_fail(p, cp_line(p), "too many methods, at most %d",
			       CONFIG_MAX_ROUTE_METHODS);
	err = cp_string(p, "a method", m, sizeof(m));
	if (err)
		return err;
	n = strlen(m);
	for (k = 0; k < n; k++) {
		if (!is_tchar(m[k]) || (m[k] >= 'a' && m[k] <= 'z'))
			break;
	}
	if (n == 0 || k < n)
		return cp_fail(p, cp_line(p), "must be an upper-case method token, got \"%s\"",
			       echo(m, n, buf));
	for (j = 0; j < r->n_methods; j++) {
		if (!strcmp(r->methods[j], m))
			return cp_fail(p, cp_line(p), "duplicate method (also methods[%d])", j);
	}
	memcpy(r->methods[r->n_methods++], m, n + 1);
	return 0;
}

static int parse_methods(struct cfg_parser *p, void *obj)
{
	return cp_seq(p, parse_method, obj);
}

/*
 * match.headers: a mapping from field name to the exact value. The keys
 * are free, so this walks the mapping itself rather than through a field
 * table; names are lower-cased, and two that differ only in case clash.
 */
static int parse_headers(struct cfg_parser *p, void *obj)
{
	struct config_route *r = obj;
	char val[CONFIG_MAX_HEADER_VALUE + 1], buf[CONFIG_ECHO_MAX + 4];
	int lines[CONFIG_MAX_ROUTE_HEADERS];
	struct config_route_header *h;
	const char *key;
	size_t klen, k, n, old;
	int j, line, err;

	if (ev_is_null(&p->ev))
		return 0;
	if (p->ev.type != YAML_MAPPING_START_EVENT)
		return cp_fail(p, cp_line(p), "must be a mapping, got %s", ev_kind(&p->ev));
	for (;;) {
		err = cp_next(p);
		if (err)
			return err;
		if (p->ev.type == YAML_MAPPING_END_EVENT)
			return 0;
		line = cp_line(p);
		if (p->ev.type != YAML_SCALAR_EVENT)
			return cp_fail(p, line, "keys must be scalars, got %s", ev_kind(&p->ev));
		key = (const char *)p->ev.data.scalar.value;
		klen = p->ev.data.scalar.length;
		old = cp_path_push_key(p, klen ? echo(key, klen, buf) : "\"\"");
		for (k = 0; k < klen && is_tchar(key[k]); k++)
			;
		if (klen == 0 || k < klen || klen > CONFIG_MAX_HEADER_NAME)
			return cp_fail(p, line, "must be a header name (a token of at most %d)",
				       CONFIG_MAX_HEADER_NAME);
		for (j = 0; j < r->n_headers; j++) {
			if (r->headers[j].name_len == klen &&
			    !strncasecmp(r->headers[j].name, key, klen))
				return cp_fail(p, line, "duplicate header (first at line %d)",
					       lines[j]);
		}
		if (r->n_headers >= CONFIG_MAX_ROUTE_HEADERS)
			return cp_fail(p, line, "too many headers, at most %d",
				       CONFIG_MAX_ROUTE_HEADERS);
		h = &r->headers[r->n_headers];
		h->name = cp_strndup(p, key, klen, &err);
		if (err)
			return err;
		for (k = 0; k < klen; k++)
			h->name[k] = ascii_lower(h->name[k]);
		h->name_len = klen;
		lines[r->n_headers++] = line;

		err = cp_next(p);
		if (err)
			return err;
		err = cp_string(p, "a header value", val, sizeof(val));
		if (err)
			return err;
		n = strlen(val);
		for (k = 0; k < n; k++) {
			if ((unsigned char)val[k] < 0x20 && val[k] != '\t')
				break;
			if (val[k] == 0x7f)
				break;
		}
		/* The proxy trims a field's surrounding whitespace, so such a value never matches.
		 */
		if (k < n || (n && (val[0] == ' ' || val[0] == '\t' || val[n - 1] == ' ' ||
				    val[n - 1] == '\t')))
			return cp_fail(p, cp_line(p),
				       "must be a header value without control characters or "
				       "surrounding spaces, got \"%s\"",
				       echo(val, n, buf));
		h->value = cp_strndup(p, val, n, &err);
		if (err)
			return err;
		h->value_len = n;
		cp_path_pop(p, old);
	}
}

static const struct field match_fields[] = {
    {"hosts", FIELD_FUNC, .parse = parse_hosts},
    {"path", FIELD_FUNC, .parse = parse_path},
    {"methods", FIELD_FUNC, .parse = parse_methods},
    {"headers", FIELD_FUNC, .parse = parse_headers},
};

static int parse_match(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	return cp_map(p, match_fields, ARRAY_SIZE(match_fields), obj, &seen);
}

/* "name" (in the route's own namespace) or "namespace/name"; resolved in check_backends. */
static int parse_backend_service(struct cfg_parser *p, void *obj)
{
	struct config_route_backend *b = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s, *slash, *name;
	size_t n, ns_len, name_len;
	int err;

	err = cp_scalar(p, "a service name", &s, &n);
	if (err)
		return err;
	slash = memchr(s, '/', n);
	name = slash ? slash + 1 : s;
	name_len = n - (size_t)(name - s);
	ns_len = slash ? (size_t)(slash - s) : 0;
	if (memchr(s, '\0', n) || ns_len > CONFIG_MAX_NAME || name_len > CONFIG_MAX_NAME)
		goto bad;
	if (slash) {
		memcpy(b->namespace, s, ns_len);
		b->namespace[ns_len] = '\0';
	} else {
		strcpy(b->namespace, p->svc->namespace);
	}
	memcpy(b->name, name, name_len);
	b->name[name_len] = '\0';
	if (!is_label(b->namespace) || !is_label(b->name))
		goto bad;
	b->line = cp_line(p);
	return 0;
bad:
	return cp_fail(p, cp_line(p),
		       "must be NAME or NAMESPACE/NAME (RFC 1123 labels), got \"%s\"",
		       echo(s, n, buf));
}

enum { BACKEND_F_SERVICE, BACKEND_F_WEIGHT };

static const struct field backend_fields[] = {
    [BACKEND_F_SERVICE] = {"service", FIELD_FUNC, .required = true, .parse = parse_backend_service},
    [BACKEND_F_WEIGHT] = {"weight", FIELD_U32, offsetof(struct config_route_backend, weight), 0,
			  CONFIG_MAX_BACKEND_WEIGHT},
};

static int parse_backend(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	struct config_route_backend *b;
	struct map_seen seen;
	int err;

	if (i >= CONFIG_MAX_ROUTE_BACKENDS)
		return cp_fail(p, cp_line(p), "too many backends, at most %d",
			       CONFIG_MAX_ROUTE_BACKENDS);
	b = &r->backends[r->n_backends];
	memset(b, 0, sizeof(*b));
	b->weight = 1;
	err = cp_map(p, backend_fields, ARRAY_SIZE(backend_fields), b, &seen);
	if (err)
		return err;
	r->total_weight += b->weight;
	b->cum_weight = r->total_weight;
	r->n_backends++;
	return 0;
}

static int parse_backends(struct cfg_parser *p, void *obj)
{
	struct config_route *r = obj;
	int line = p->key_line, err;

	err = cp_seq(p, parse_backend, r);
	if (err)
		return err;
	if (r->n_backends == 0)
		return cp_fail(p, line, "must list 1..%d backends, got none",
			       CONFIG_MAX_ROUTE_BACKENDS);
	if (r->total_weight == 0)
		return cp_fail(p, line, "weights add up to 0; at least one must be above 0");
	return 0;
}

static int parse_retry_status(struct cfg_parser *p, void *obj, int i)
{
	struct config_route *r = obj;
	uint64_t v;
	int j, err;

	if (i >= CONFIG_MAX_RETRY_STATUSES)
		return cp_fail(p, cp_line(p), "too many statuses, at most %d",
			       CONFIG_MAX_RETRY_STATUSES);
	err = cp_uint(p, CONFIG_MIN_RETRY_STATUS, CONFIG_MAX_RETRY_STATUS, &v);
	if (err)
		return err;
	for (j = 0; j < r->n_retry_statuses; j++) {
		if (r->retry_statuses[j] == v)
			return cp_fail(p, cp_line(p), "duplicate status (also retry_statuses[%d])",
				       j);
	}
	r->retry_statuses[r->n_retry_statuses++] = (uint16_t)v;
	return 0;
}

/* Replaces the default {503}; an empty list retries on no status at all. */
static int parse_retry_statuses(struct cfg_parser *p, void *obj)
{
	struct config_route *r = obj;

	r->n_retry_statuses = 0;
	return cp_seq(p, parse_retry_status, r);
}

enum {
	ROUTE_F_NAME,
	ROUTE_F_MATCH,
	ROUTE_F_BACKENDS,
	ROUTE_F_TIMEOUT,
	ROUTE_F_PER_TRY,
	ROUTE_F_RETRYABLE,
	ROUTE_F_STATUSES,
	ROUTE_F_CONNECT,
	ROUTE_F_IDLE
};

static const struct field route_fields[] = {
    [ROUTE_F_NAME] = {"name", FIELD_LABEL, offsetof(struct config_route, name)},
    [ROUTE_F_MATCH] = {"match", FIELD_FUNC, .parse = parse_match},
    [ROUTE_F_BACKENDS] = {"backends", FIELD_FUNC, .parse = parse_backends},
    [ROUTE_F_TIMEOUT] = {"timeout_ms", FIELD_U32, offsetof(struct config_route, timeout_ms), 0,
			 CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_PER_TRY] = {"per_try_timeout_ms", FIELD_U32,
			 offsetof(struct config_route, per_try_timeout_ms), 0,
			 CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_RETRYABLE] = {"retryable", FIELD_BOOL, offsetof(struct config_route, retryable)},
    [ROUTE_F_STATUSES] = {"retry_statuses", FIELD_FUNC, .parse = parse_retry_statuses},
    [ROUTE_F_CONNECT] = {"connect_timeout_ms", FIELD_U32,
			 offsetof(struct config_route, connect_timeout_ms), 0, CONFIG_MAX_TIMEOUT_MS},
    [ROUTE_F_IDLE] = {"idle_timeout_ms", FIELD_U32, offsetof(struct config_route, idle_timeout_ms),
		      0, CONFIG_MAX_TIMEOUT_MS},
};

static int parse_route(struct cfg_parser *p, void *obj, int i)
{
	struct config_service *svc = obj;
	struct config_route *r;
	struct map_seen seen;
	int j, err;

	if (i >= CONFIG_MAX_ROUTES)
		return cp_fail(p, cp_line(p), "too many routes, at most %d", CONFIG_MAX_ROUTES);
	if (p->n_routes_total >= CONFIG_MAX_ROUTES_TOTAL)
		return cp_fail(p, cp_line(p), "too many routes in the file, at most %d",
			       CONFIG_MAX_ROUTES_TOTAL);
	if (cp_grow(p, (void **)&svc->routes, (size_t)svc->n_routes, sizeof(*r)))
		return -ENOMEM;
	/* Counted before it is filled, so config_free sees its strings on error. */
	r = &svc->routes[svc->n_routes++];
	memset(r, 0, sizeof(*r));
	p->n_routes_total++;
	r->line = cp_line(p);
	r->retry_statuses[0] = CONFIG_DEFAULT_RETRY_STATUS;
	r->n_retry_statuses = 1;
	err = cp_map(p, route_fields, ARRAY_SIZE(route_fields), r, &seen);
	if (err)
		return err;
	if (r->timeout_ms && r->per_try_timeout_ms > r->timeout_ms) {
		cp_path_push_key(p, "per_try_timeout_ms");
		return cp_fail(
		    p, (seen.mask & (1u << ROUTE_F_PER_TRY)) ? seen.line[ROUTE_F_PER_TRY] : r->line,
		    "must be <= timeout_ms (%u), got %u", r->timeout_ms, r->per_try_timeout_ms);
	}
	if (r->name[0]) {
		for (j = 0; j < i; j++) {
			if (!strcmp(svc->routes[j].name, r->name)) {
				cp_path_push_key(p, "name");
				return cp_fail(
				    p, seen.line[ROUTE_F_NAME],
				    "duplicate route name %s (also routes[%d] at line %d)", r->name,
				    j, svc->routes[j].line);
			}
		}
	}
	if (!(seen.mask & (1u << ROUTE_F_BACKENDS))) {
		/* No split: the service's own endpoints; svc_index is set in check_backends. */
		struct config_route_backend *b = &r->backends[0];

		strcpy(b->namespace, svc->namespace);
		strcpy(b->name, svc->name);
		b->weight = 1;
		b->cum_weight = 1;
		b->line = r->line;
		r->n_backends = 1;
		r->total_weight = 1;
	}
	return 0;
}

static int parse_routes(struct cfg_parser *p, void *obj)
{
	return cp_seq(p, parse_route, obj);
}

/* ---- a service's resilience: block (docs/config.md, docs/resilience.md) ---- */

/*
 * Limits of the resilience knobs. Each bounds a value past which it stops
 * meaning anything (docs/config.md lists them); the modules' own checks
 * (peak_ewma_cfg_check, breaker_cfg_check, retry_budget_cfg_check) accept
 * everything inside them.
 */
#define CONFIG_MAX_RTT_MS 60000	      /* a "typical" latency above 1 min is no estimate */
#define CONFIG_MAX_PENALTY_MS 3600000 /* Retry-After cap and failure penalty: 1 h */
#define CONFIG_MAX_BUDGET_RATIO_PCT (RETRY_BUDGET_MAX_RATIO_MILLI / 10)
#define CONFIG_MAX_BUDGET_MIN_PER_S 100000
#define CONFIG_MIN_BUDGET_WINDOW_MS (RETRY_BUDGET_MIN_TTL_NS / 1000000)
#define CONFIG_MAX_RETRIES 10		 /* beyond this a budget bounds nothing per request */
#define CONFIG_MAX_RETRY_BODY (1u << 20) /* replay is from the connection buffer anyway */
#define CONFIG_MAX_CONSECUTIVE 100000
#define CONFIG_MAX_BREAKER_BACKOFF_MS 3600000 /* an hour out is a removal, not a backoff */
#define CONFIG_MAX_MIN_REQUESTS 1000000

static const struct field balancer_fields[] = {
    {"default_rtt_ms", FIELD_U32, offsetof(struct config_resilience, default_rtt_ms), 1,
     CONFIG_MAX_RTT_MS},
    {"decay_ms", FIELD_U32, offsetof(struct config_resilience, decay_ms), 1, CONFIG_MAX_TIMEOUT_MS},
    {"failure_penalty_ms", FIELD_U32, offsetof(struct config_resilience, failure_penalty_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"retry_after_cap_ms", FIELD_U32, offsetof(struct config_resilience, retry_after_cap_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"penalty_ms", FIELD_U32, offsetof(struct config_resilience, penalty_ms), 0,
     CONFIG_MAX_PENALTY_MS},
    {"explore_after_ms", FIELD_U32, offsetof(struct config_resilience, explore_after_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
};

static const struct field budget_fields[] = {
    {"ratio_pct", FIELD_U32, offsetof(struct config_resilience, budget_ratio_pct), 0,
     CONFIG_MAX_BUDGET_RATIO_PCT},
    {"min_per_second", FIELD_U32, offsetof(struct config_resilience, budget_min_per_s), 0,
     CONFIG_MAX_BUDGET_MIN_PER_S},
    {"window_ms", FIELD_U32, offsetof(struct config_resilience, budget_window_ms),
     CONFIG_MIN_BUDGET_WINDOW_MS, CONFIG_MAX_TIMEOUT_MS},
};

enum { RETRIES_F_MAX, RETRIES_F_BODY, RETRIES_F_BASE, RETRIES_F_CAP, RETRIES_F_CONNECT };

static const struct field retries_fields[] = {
    [RETRIES_F_MAX] = {"max_retries", FIELD_U32, offsetof(struct config_resilience, max_retries), 0,
		       CONFIG_MAX_RETRIES},
    [RETRIES_F_BODY] = {"max_body_bytes", FIELD_U32,
			offsetof(struct config_resilience, max_body_bytes), 0,
			CONFIG_MAX_RETRY_BODY},
    [RETRIES_F_BASE] = {"backoff_base_ms", FIELD_U32,
			offsetof(struct config_resilience, backoff_base_ms), 0,
			CONFIG_MAX_TIMEOUT_MS},
    [RETRIES_F_CAP] = {"backoff_max_ms", FIELD_U32,
		       offsetof(struct config_resilience, backoff_max_ms), 0,
		       CONFIG_MAX_TIMEOUT_MS},
    [RETRIES_F_CONNECT] = {"connect_any_method", FIELD_BOOL,
			   offsetof(struct config_resilience, connect_any_method)},
};

enum { BREAKER_F_CONSEC, BREAKER_F_MIN, BREAKER_F_MAX };

static const struct field breaker_fields[] = {
    [BREAKER_F_CONSEC] = {"consecutive_failures", FIELD_U32,
			  offsetof(struct config_resilience, consecutive_failures), 0,
			  CONFIG_MAX_CONSECUTIVE},
    [BREAKER_F_MIN] = {"backoff_min_ms", FIELD_U32,
		       offsetof(struct config_resilience, breaker_backoff_min_ms), 1,
		       CONFIG_MAX_BREAKER_BACKOFF_MS},
    [BREAKER_F_MAX] = {"backoff_max_ms", FIELD_U32,
		       offsetof(struct config_resilience, breaker_backoff_max_ms), 1,
		       CONFIG_MAX_BREAKER_BACKOFF_MS},
    {"jitter_pct", FIELD_U32, offsetof(struct config_resilience, jitter_pct), 0, 100},
    {"success_rate_pct", FIELD_U32, offsetof(struct config_resilience, success_rate_pct), 0, 100},
    {"success_rate_window_ms", FIELD_U32,
     offsetof(struct config_resilience, success_rate_window_ms), 10, CONFIG_MAX_TIMEOUT_MS},
    {"success_rate_min_requests", FIELD_U32,
     offsetof(struct config_resilience, success_rate_min_requests), 0, CONFIG_MAX_MIN_REQUESTS},
    {"max_ejection_pct", FIELD_U32, offsetof(struct config_resilience, max_ejection_pct), 0, 100},
};

enum {
	TIMEOUTS_F_CONNECT,
	TIMEOUTS_F_REQUEST,
	TIMEOUTS_F_PER_TRY,
	TIMEOUTS_F_IDLE,
	TIMEOUTS_F_RESPONSE_HEAD,
};

static const struct field timeouts_fields[] = {
    [TIMEOUTS_F_CONNECT] = {"connect_ms", FIELD_U32,
			    offsetof(struct config_resilience, connect_timeout_ms), 0,
			    CONFIG_MAX_TIMEOUT_MS},
    [TIMEOUTS_F_REQUEST] = {"request_ms", FIELD_U32,
			    offsetof(struct config_resilience, request_timeout_ms), 0,
			    CONFIG_MAX_TIMEOUT_MS},
    [TIMEOUTS_F_PER_TRY] = {"per_try_ms", FIELD_U32,
			    offsetof(struct config_resilience, per_try_timeout_ms), 0,
			    CONFIG_MAX_TIMEOUT_MS},
    [TIMEOUTS_F_IDLE] = {"idle_ms", FIELD_U32, offsetof(struct config_resilience, idle_timeout_ms),
			 0, CONFIG_MAX_TIMEOUT_MS},
    [TIMEOUTS_F_RESPONSE_HEAD] = {"response_head_ms", FIELD_U32,
				  offsetof(struct config_resilience, response_head_timeout_ms), 0,
				  CONFIG_MAX_TIMEOUT_MS},
};

/* "a must be <= b" for two fields of one mapping; the line is a's, else b's. */
static int cp_fail_order(struct cfg_parser *p, const struct map_seen *seen, int ia, int ib,
			 const char *a, const char *b, uint32_t va, uint32_t vb)
{
	cp_path_push_key(p, a);
	return cp_fail(p, (seen->mask & (1u << ia)) ? seen->line[ia] : seen->line[ib],
		       "must be <= %s (%u), got %u", b, vb, va);
}

static int parse_balancer(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	return cp_map(p, balancer_fields, ARRAY_SIZE(balancer_fields), obj, &seen);
}

static int parse_budget(struct cfg_parser *p, void *obj)
{
	struct config_resilience *r = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, budget_fields, ARRAY_SIZE(budget_fields), obj, &seen);
	if (err)
		return err;
	/* The budget's reserve, min_per_second x window in milli-retries, fits 31 bits. */
	if ((uint64_t)r->budget_min_per_s * r->budget_window_ms > RETRY_BUDGET_MAX_RESERVE_MILLI) {
		cp_path_push_key(p, "min_per_second");
		return cp_fail(p, cp_line(p), "min_per_second x window_ms must be <= %d, got %llu",
			       RETRY_BUDGET_MAX_RESERVE_MILLI,
			       (unsigned long long)r->budget_min_per_s * r->budget_window_ms);
	}
	return 0;
}

static int parse_retries(struct cfg_parser *p, void *obj)
{
	struct config_resilience *r = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, retries_fields, ARRAY_SIZE(retries_fields), obj, &seen);
	if (err)
		return err;
	if (r->backoff_base_ms > r->backoff_max_ms)
		return cp_fail_order(p, &seen, RETRIES_F_BASE, RETRIES_F_CAP, "backoff_base_ms",
				     "backoff_max_ms", r->backoff_base_ms, r->backoff_max_ms);
	return 0;
}

static int parse_breaker(struct cfg_parser *p, void *obj)
{
	struct config_resilience *r = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, breaker_fields, ARRAY_SIZE(breaker_fields), obj, &seen);
	if (err)
		return err;
	if (r->breaker_backoff_min_ms > r->breaker_backoff_max_ms)
		return cp_fail_order(p, &seen, BREAKER_F_MIN, BREAKER_F_MAX, "backoff_min_ms",
				     "backoff_max_ms", r->breaker_backoff_min_ms,
				     r->breaker_backoff_max_ms);
	return 0;
}

static int parse_timeouts(struct cfg_parser *p, void *obj)
{
	struct config_resilience *r = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, timeouts_fields, ARRAY_SIZE(timeouts_fields), obj, &seen);
	if (err)
		return err;
	if (r->request_timeout_ms && r->per_try_timeout_ms > r->request_timeout_ms)
		return cp_fail_order(p, &seen, TIMEOUTS_F_PER_TRY, TIMEOUTS_F_REQUEST, "per_try_ms",
				     "request_ms", r->per_try_timeout_ms, r->request_timeout_ms);
	return 0;
}

static const struct field resilience_fields[] = {
    {"balancer", FIELD_FUNC, .parse = parse_balancer},
    {"retry_budget", FIELD_FUNC, .parse = parse_budget},
    {"retries", FIELD_FUNC, .parse = parse_retries},
    {"breaker", FIELD_FUNC, .parse = parse_breaker},
    {"fail_fast_ms", FIELD_U32, offsetof(struct config_resilience, fail_fast_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"timeouts", FIELD_FUNC, .parse = parse_timeouts},
};

static int parse_resilience(struct cfg_parser *p, void *obj)
{
	struct config_service *svc = obj;
	struct map_seen seen;

	return cp_map(p, resilience_fields, ARRAY_SIZE(resilience_fields), &svc->resilience, &seen);
}

/* ---- services ---- */

static const struct field service_fields[] = {
    {"name", FIELD_LABEL, offsetof(struct config_service, name), .required = true},
    {"namespace", FIELD_LABEL, offsetof(struct config_service, namespace)},
    {"vips", FIELD_FUNC, .required = true, .parse = parse_vips},
    {"ports", FIELD_FUNC, .required = true, .parse = parse_ports},
    {"endpoints", FIELD_FUNC, .parse = parse_endpoints},
    {"routes", FIELD_FUNC, .parse = parse_routes},
    {"resilience", FIELD_FUNC, .parse = parse_resilience},
};

static int parse_service(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	struct config_service *svc;
	struct map_seen seen;

	if (i >= CONFIG_MAX_SERVICES)
		return cp_fail(p, cp_line(p), "too many services, at most %d", CONFIG_MAX_SERVICES);
	if (cp_grow(p, (void **)&cfg->services, (size_t)cfg->n_services, sizeof(*svc)))
		return -ENOMEM;
	/* Counted before it is filled, so config_free sees its endpoints on error. */
	svc = &cfg->services[cfg->n_services++];
	memset(svc, 0, sizeof(*svc));
	svc->id = (uint32_t)i;
	strcpy(svc->namespace, "default");
	svc->line = cp_line(p);
	config_resilience_default(&svc->resilience);
	p->svc = svc;
	return cp_map(p, service_fields, ARRAY_SIZE(service_fields), svc, &seen);
}

static int parse_services(struct cfg_parser *p, void *obj)
{
	return cp_seq(p, parse_service, obj);
}

/* ---- node, bpf, proxy ---- */

static const struct field node_fields[] = {
    {"address_v4", FIELD_IPV4, offsetof(struct config, proxy_v4)},
    {"address_v6", FIELD_IPV6, offsetof(struct config, proxy_v6)},
    {"proxy_port", FIELD_U16, offsetof(struct config, proxy_port), 1, 65535},
};

static int parse_node(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	p->node_line = p->key_line;
	return cp_map(p, node_fields, ARRAY_SIZE(node_fields), obj, &seen);
}

static const struct field bpf_fields[] = {
    {"pin_root", FIELD_PATH, offsetof(struct config, pin_root)},
    {"cgroup", FIELD_PATH, offsetof(struct config, cgroup)},
    {"shortcut", FIELD_BOOL, offsetof(struct config, shortcut)},
    {"socket_mark", FIELD_U32, offsetof(struct config, socket_mark), 1, UINT32_MAX},
    {"failopen_after_ms", FIELD_U32, offsetof(struct config, failopen_after_ms),
     CONFIG_MIN_FAILOPEN_MS, CONFIG_MAX_TIMEOUT_MS},
};

static int parse_bpf(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	return cp_map(p, bpf_fields, ARRAY_SIZE(bpf_fields), obj, &seen);
}

static int parse_opaque_port(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	uint64_t v;
	int j, err;

	if (i >= CONFIG_MAX_OPAQUE_PORTS)
		return cp_fail(p, cp_line(p), "too many ports, at most %d",
			       CONFIG_MAX_OPAQUE_PORTS);
	err = cp_uint(p, 1, 65535, &v);
	if (err)
		return err;
	for (j = 0; j < cfg->n_opaque_ports; j++) {
		if (cfg->opaque_ports[j] == v)
			return cp_fail(p, cp_line(p), "duplicate port %u (also opaque_ports[%d])",
				       (unsigned int)v, j);
	}
	cfg->opaque_ports[cfg->n_opaque_ports++] = (uint16_t)v;
	return 0;
}

/* Replaces the default list; an empty list detects on every undeclared port. */
static int parse_opaque_ports(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;

	cfg->n_opaque_ports = 0;
	return cp_seq(p, parse_opaque_port, cfg);
}

/* One protocol name of proxy.http.upgrade_protocols: a token, stored lowercase. */
static int parse_http_upgrade(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	char *out;
	int err;

	if (i >= CONFIG_MAX_HTTP_UPGRADES)
		return cp_fail(p, cp_line(p), "too many protocols, at most %d",
			       CONFIG_MAX_HTTP_UPGRADES);
	out = cfg->http_upgrades[i];
	err = cp_string(p, "a protocol name", out, CONFIG_MAX_HTTP_UPGRADE_NAME + 1);
	if (err)
		return err;
	if (!out[0])
		return cp_fail(p, cp_line(p), "must not be empty");
	for (char *c = out; *c; c++) {
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
		/* A name without its version: a token without '/'. */
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", *c)))
			return cp_fail(p, cp_line(p),
				       "must be a protocol name (a token, no version), got \"%s\"",
				       out);
	}
	for (int j = 0; j < i; j++)
		if (!strcmp(cfg->http_upgrades[j], out))
			return cp_fail(p, cp_line(p), "duplicate protocol \"%s\"", out);
	cfg->n_http_upgrades = i + 1;
	return 0;
}

/* Replaces the default list; [] allows no upgrade. */
static int parse_http_upgrades(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;

	cfg->n_http_upgrades = 0;
	return cp_seq(p, parse_http_upgrade, cfg);
}

enum {
	HTTP_F_LINE,
	HTTP_F_HEAD,
	HTTP_F_HEADERS,
	HTTP_F_POOL_IDLE,
	HTTP_F_POOL_MAX,
	HTTP_F_BODY_TIMEOUT,
	HTTP_F_HEAD_TIMEOUT,
	HTTP_F_REQ_TIMEOUT,
	HTTP_F_MAX_REQUESTS,
	HTTP_F_MAX_AGE,
};

static const struct field http_fields[] = {
    [HTTP_F_LINE] = {"max_request_line", FIELD_U32, offsetof(struct config, http_max_request_line),
		     CONFIG_MIN_HTTP_LINE, CONFIG_MAX_HTTP_HEAD},
    [HTTP_F_HEAD] = {"max_head_bytes", FIELD_U32, offsetof(struct config, http_max_head_bytes),
		     CONFIG_MIN_HTTP_HEAD, CONFIG_MAX_HTTP_HEAD},
    [HTTP_F_HEADERS] = {"max_headers", FIELD_U32, offsetof(struct config, http_max_headers), 1,
			CONFIG_MAX_HTTP_HEADERS},
    [HTTP_F_POOL_IDLE] = {"pool_idle_timeout_ms", FIELD_U32,
			  offsetof(struct config, http_pool_idle_timeout_ms), 1,
			  CONFIG_MAX_TIMEOUT_MS},
    [HTTP_F_POOL_MAX] = {"pool_max_idle_per_endpoint", FIELD_U32,
			 offsetof(struct config, http_pool_max_idle_per_endpoint), 0,
			 CONFIG_MAX_POOL_IDLE},
    [HTTP_F_BODY_TIMEOUT] = {"request_body_timeout_ms", FIELD_U32,
			     offsetof(struct config, http_request_body_timeout_ms), 0,
			     CONFIG_MAX_TIMEOUT_MS},
    [HTTP_F_HEAD_TIMEOUT] = {"response_head_timeout_ms", FIELD_U32,
			     offsetof(struct config, http_response_head_timeout_ms), 0,
			     CONFIG_MAX_TIMEOUT_MS},
    [HTTP_F_REQ_TIMEOUT] = {"request_timeout_ms", FIELD_U32,
			    offsetof(struct config, http_request_timeout_ms), 0,
			    CONFIG_MAX_TIMEOUT_MS},
    [HTTP_F_MAX_REQUESTS] = {"max_requests_per_connection", FIELD_U32,
			     offsetof(struct config, http_max_requests_per_connection), 0,
			     CONFIG_MAX_REQUESTS_PER_CONN},
    [HTTP_F_MAX_AGE] = {"max_connection_age_ms", FIELD_U32,
			offsetof(struct config, http_max_connection_age_ms), 0,
			CONFIG_MAX_IDLE_TIMEOUT_MS},
    {"forwarded_for", FIELD_BOOL, offsetof(struct config, http_forwarded_for)},
    {"forwarded_proto", FIELD_BOOL, offsetof(struct config, http_forwarded_proto)},
    {"request_id", FIELD_BOOL, offsetof(struct config, http_request_id)},
    {"timeout_header", FIELD_BOOL, offsetof(struct config, http_timeout_header)},
    {"upgrade_protocols", FIELD_FUNC, 0, 0, 0, false, parse_http_upgrades},
};

static int parse_http(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct map_seen seen;
	int err;

	err = cp_map(p, http_fields, ARRAY_SIZE(http_fields), cfg, &seen);
	if (err)
		return err;
	/* The request line is part of the head, so it cannot be the longer. */
	if (cfg->http_max_request_line > cfg->http_max_head_bytes) {
		cp_path_push_key(p, "max_request_line");
		return cp_fail(p,
			       (seen.mask & (1u << HTTP_F_LINE)) ? seen.line[HTTP_F_LINE]
								 : seen.line[HTTP_F_HEAD],
			       "must be <= max_head_bytes (%u), got %u", cfg->http_max_head_bytes,
			       cfg->http_max_request_line);
	}
	return 0;
}

enum {
	PROXY_F_WORKERS,
	PROXY_F_TIMEOUT,
	PROXY_F_DEADLINE,
	PROXY_F_BUFFER,
	PROXY_F_MAXCONN,
	PROXY_F_MAXMEM,
	PROXY_F_MAXCLIENT,
	PROXY_F_DETECT,
	PROXY_F_OPAQUE,
	PROXY_F_IDLE,
	PROXY_F_DRAIN,
	PROXY_F_HTTP
};

static const struct field proxy_fields[] = {
    [PROXY_F_WORKERS] = {"workers", FIELD_INT, offsetof(struct config, workers), 0,
			 CONFIG_MAX_WORKERS},
    [PROXY_F_TIMEOUT] = {"connect_timeout_ms", FIELD_U32,
			 offsetof(struct config, connect_timeout_ms), 1, CONFIG_MAX_TIMEOUT_MS},
    [PROXY_F_DEADLINE] = {"connect_deadline_ms", FIELD_U32,
			  offsetof(struct config, connect_deadline_ms), 1, CONFIG_MAX_TIMEOUT_MS},
    [PROXY_F_BUFFER] = {"buffer_bytes", FIELD_U32, offsetof(struct config, buffer_bytes),
			CONFIG_MIN_BUFFER_BYTES, CONFIG_MAX_BUFFER_BYTES},
    [PROXY_F_MAXCONN] = {"max_connections", FIELD_U32, offsetof(struct config, max_connections), 1,
			 CONFIG_MAX_CONNECTIONS},
    [PROXY_F_MAXMEM] = {"max_buffer_memory_mib", FIELD_U32,
			offsetof(struct config, max_buffer_memory_mib), 0,
			CONFIG_MAX_BUFFER_MEMORY_MIB},
    [PROXY_F_MAXCLIENT] = {"max_connections_per_client", FIELD_U32,
			   offsetof(struct config, max_connections_per_client), 0,
			   CONFIG_MAX_CONNECTIONS},
    [PROXY_F_DETECT] = {"detect_timeout_ms", FIELD_U32, offsetof(struct config, detect_timeout_ms),
			1, CONFIG_MAX_DETECT_TIMEOUT_MS},
    [PROXY_F_OPAQUE] = {"opaque_ports", FIELD_FUNC, .parse = parse_opaque_ports},
    [PROXY_F_IDLE] = {"idle_timeout_ms", FIELD_U32, offsetof(struct config, idle_timeout_ms), 0,
		      CONFIG_MAX_IDLE_TIMEOUT_MS},
    [PROXY_F_DRAIN] = {"drain_timeout_ms", FIELD_U32, offsetof(struct config, drain_timeout_ms), 0,
		       CONFIG_MAX_DRAIN_TIMEOUT_MS},
    [PROXY_F_HTTP] = {"http", FIELD_FUNC, .parse = parse_http},
};

static int parse_proxy(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct map_seen seen;
	int err, line;

	err = cp_map(p, proxy_fields, ARRAY_SIZE(proxy_fields), cfg, &seen);
	if (err)
		return err;
	if (cfg->connect_deadline_ms < cfg->connect_timeout_ms) {
		/* Point at whichever of the two the user wrote; the other may be a default. */
		line = seen.mask & (1u << PROXY_F_DEADLINE) ? seen.line[PROXY_F_DEADLINE]
							    : seen.line[PROXY_F_TIMEOUT];
		cp_path_push_key(p, "connect_deadline_ms");
		return cp_fail(p, line, "must be >= connect_timeout_ms (%u), got %u",
			       cfg->connect_timeout_ms, cfg->connect_deadline_ms);
	}
	return 0;
}

/* ---- tracing, admin ---- */

static int parse_tracing_url(struct cfg_parser *p, void *obj)
{
	struct config_tracing *t = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	int err;

	err = cp_string(p, "a URL", t->collector_url, sizeof(t->collector_url));
	if (err)
		return err;
	if (strncmp(t->collector_url, "http://", 7) && strncmp(t->collector_url, "https://", 8))
		return cp_fail(p, cp_line(p), "must start with http:// or https://, got \"%s\"",
			       echo(t->collector_url, strlen(t->collector_url), buf));
	return 0;
}

static int parse_sample_rate(struct cfg_parser *p, void *obj)
{
	struct config_tracing *t = obj;
	char num[64], buf[CONFIG_ECHO_MAX + 4], *end;
	const char *s;
	size_t n;
	double v;
	int err;

	err = cp_scalar(p, "a number from 0.0 to 1.0", &s, &n);
	if (err)
		return err;
	if (n && n < sizeof(num)) {
		memcpy(num, s, n);
		num[n] = '\0';
		errno = 0;
		v = strtod(num, &end);
		if (!errno && end == num + n && !memchr(num, '\0', n) && v >= 0.0 && v <= 1.0) {
			t->sample_rate = v;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be a number from 0.0 to 1.0, got \"%s\"",
		       echo(s, n, buf));
}

static int parse_span_kind(struct cfg_parser *p, void *obj)
{
	struct config_tracing *t = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *s;
	size_t n;
	int err;

	err = cp_scalar(p, "client or server", &s, &n);
	if (err)
		return err;
	if (n == 6 && !memcmp(s, "client", 6))
		t->span_kind = TRACE_KIND_CLIENT;
	else if (n == 6 && !memcmp(s, "server", 6))
		t->span_kind = TRACE_KIND_SERVER;
	else
		return cp_fail(p, cp_line(p), "must be client or server, got \"%s\"",
			       echo(s, n, buf));
	return 0;
}

static int parse_service_name(struct cfg_parser *p, void *obj)
{
	struct config_tracing *t = obj;
	int err = cp_string(p, "a name", t->service_name, sizeof(t->service_name));

	if (!err && !t->service_name[0])
		return cp_fail(p, cp_line(p), "must not be empty");
	return err;
}

enum { TRACING_F_RING = 5 };

static const struct field tracing_fields[] = {
    {"enabled", FIELD_BOOL, offsetof(struct config_tracing, enabled)},
    {"collector_url", FIELD_FUNC, .parse = parse_tracing_url},
    {"sample_rate", FIELD_FUNC, .parse = parse_sample_rate},
    {"span_kind", FIELD_FUNC, .parse = parse_span_kind},
    {"service_name", FIELD_FUNC, .parse = parse_service_name},
    [TRACING_F_RING] = {"ring_size", FIELD_U32, offsetof(struct config_tracing, ring_size),
			TRACE_RING_MIN, TRACE_RING_MAX},
    {"batch_size", FIELD_U32, offsetof(struct config_tracing, batch_size), 1, OTLP_BATCH_LIMIT},
    {"batch_delay_ms", FIELD_U32, offsetof(struct config_tracing, batch_delay_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
    {"timeout_ms", FIELD_U32, offsetof(struct config_tracing, timeout_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
};

static int parse_tracing(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct config_tracing *t = &cfg->tracing;
	struct map_seen seen;
	int err;

	err = cp_map(p, tracing_fields, ARRAY_SIZE(tracing_fields), t, &seen);
	if (err)
		return err;
	/* The rings index with a mask. */
	if (t->ring_size & (t->ring_size - 1)) {
		cp_path_push_key(p, "ring_size");
		return cp_fail(p, seen.line[TRACING_F_RING], "must be a power of two, got %u",
			       t->ring_size);
	}
	return 0;
}

static int parse_admin_listen(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	struct shoal_addr addr;
	uint16_t port_be;
	int err;

	err = cp_string(p, "ADDR:PORT or off", cfg->admin.listen, sizeof(cfg->admin.listen));
	if (err)
		return err;
	if (strcmp(cfg->admin.listen, "off") &&
	    (addr_parse_hostport(cfg->admin.listen, &addr, &port_be) || !port_be))
		return cp_fail(p, cp_line(p), "must be ADDR:PORT, [ADDR]:PORT or off, got \"%s\"",
			       echo(cfg->admin.listen, strlen(cfg->admin.listen), buf));
	return 0;
}

static const struct field admin_fields[] = {
    {"listen", FIELD_FUNC, .parse = parse_admin_listen},
};

static int parse_admin(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	return cp_map(p, admin_fields, ARRAY_SIZE(admin_fields), obj, &seen);
}

/* ---- kubernetes ---- */

/* Limits of kubernetes.backoff_max_ms: below 100 ms a dead API server is
 * polled in a busy loop; above 5 min an agent is blind too long. */
#define CONFIG_MIN_K8S_BACKOFF_MS 100
#define CONFIG_MAX_K8S_BACKOFF_MS 300000

/* An https:// URL without path: where the API server listens. */
static int parse_api_server(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *host;
	int err;

	err = cp_string(p, "an https:// URL", cfg->k8s_api_server, sizeof(cfg->k8s_api_server));
	if (err)
		return err;
	host = cfg->k8s_api_server + strlen("https://");
	if (strncmp(cfg->k8s_api_server, "https://", strlen("https://")) || !*host ||
	    strpbrk(host, "/?# \t"))
		return cp_fail(p, cp_line(p),
			       "must be https://HOST[:PORT] (TLS, no path), got \"%s\"",
			       echo(cfg->k8s_api_server, strlen(cfg->k8s_api_server), buf));
	return 0;
}

/*
 * SCHEME://[USER:PASSWORD@]HOST[:PORT] with a scheme libcurl proxies
 * through, and nothing after the authority: the proxy the Kubernetes
 * client uses, instead of none (docs/config.md). A URL without a scheme
 * would leave libcurl to guess one.
 */
static int parse_proxy_url(struct cfg_parser *p, void *obj)
{
	static const char *const schemes[] = {"http://",    "https://",	 "socks4://",
					      "socks4a://", "socks5://", "socks5h://"};
	struct config *cfg = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	const char *rest = NULL;
	int err;

	err = cp_string(p, "a proxy URL", cfg->k8s_proxy_url, sizeof(cfg->k8s_proxy_url));
	if (err)
		return err;
	for (size_t i = 0; i < ARRAY_SIZE(schemes) && !rest; i++)
		if (!strncmp(cfg->k8s_proxy_url, schemes[i], strlen(schemes[i])))
			rest = cfg->k8s_proxy_url + strlen(schemes[i]);
	if (!rest || !*rest || *rest == '@' || *rest == ':' || strpbrk(rest, "/?# \t"))
		return cp_fail(p, cp_line(p),
			       "must be http://, https://, socks4://, socks4a://, socks5:// or "
			       "socks5h:// followed by [USER:PASSWORD@]HOST[:PORT] (no path), "
			       "got \"%s\"",
			       echo(cfg->k8s_proxy_url, strlen(cfg->k8s_proxy_url), buf));
	return 0;
}

static const struct field kubernetes_fields[] = {
    {"api_server", FIELD_FUNC, .parse = parse_api_server},
    {"proxy_url", FIELD_FUNC, .parse = parse_proxy_url},
    {"ca_file", FIELD_PATH, offsetof(struct config, k8s_ca_file)},
    {"token_file", FIELD_PATH, offsetof(struct config, k8s_token_file)},
    {"backoff_max_ms", FIELD_U32, offsetof(struct config, k8s_backoff_max_ms),
     CONFIG_MIN_K8S_BACKOFF_MS, CONFIG_MAX_K8S_BACKOFF_MS},
};

/* The section's presence turns the source on; an empty one means in-cluster. */
static int parse_kubernetes(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct map_seen seen;

	cfg->k8s_enabled = true;
	return cp_map(p, kubernetes_fields, ARRAY_SIZE(kubernetes_fields), obj, &seen);
}

static const struct field root_fields[] = {
    {"node", FIELD_FUNC, .parse = parse_node},
    {"bpf", FIELD_FUNC, .parse = parse_bpf},
    {"proxy", FIELD_FUNC, .parse = parse_proxy},
    {"tracing", FIELD_FUNC, .parse = parse_tracing},
    {"admin", FIELD_FUNC, .parse = parse_admin},
    {"services", FIELD_FUNC, .parse = parse_services},
    {"kubernetes", FIELD_FUNC, .parse = parse_kubernetes},
};

/* ---- checks across services ---- */

/* One (VIP, port) a service claims, for finding two claims of the same one. */
struct claim {
	struct shoal_addr vip;
	uint16_t port;
	int svc, port_idx; /* file order, so the later claim is the one reported */
};

static bool claim_same(const struct claim *a, const struct claim *b)
{
	return addr_equal(&a->vip, &b->vip) && a->port == b->port;
}

static int claim_cmp(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	int c = memcmp(&x->vip, &y->vip, sizeof(x->vip));

	if (c)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->svc != y->svc)
		return x->svc < y->svc ? -1 : 1;
	return (x->port_idx > y->port_idx) - (x->port_idx < y->port_idx);
}

/*
 * No two services may claim the same (VIP, port): the BPF service map has
 * one entry per pair. Also bounds the pairs by that map's size. Sorting
 * keeps this O(n log n) for CONFIG_MAX_SERVICES services.
 */
static int check_claims(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct claim *dup = NULL, *first = NULL;
	struct claim *claims;
	size_t n = 0, total = 0, k, end;
	char text[ADDR_STR_MAX];
	int i, v, j, err = 0;

	for (i = 0; i < cfg->n_services; i++) {
		total += (size_t)cfg->services[i].n_vips * cfg->services[i].n_ports;
		if (total > SHOAL_MAX_SERVICE_KEYS) {
			cp_path_set(p, "services[%d]", i);
			return cp_fail(p, cfg->services[i].line,
				       "the file claims more than %d (VIP, port) pairs in all",
				       SHOAL_MAX_SERVICE_KEYS);
		}
	}
	if (total < 2)
		return 0;
	claims = calloc(total, sizeof(*claims));
	if (!claims)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *svc = &cfg->services[i];

		for (v = 0; v < svc->n_vips; v++) {
			for (j = 0; j < svc->n_ports; j++) {
				claims[n].vip = svc->vips[v];
				claims[n].port = svc->ports[j].port;
				claims[n].svc = i;
				claims[n].port_idx = j;
				n++;
			}
		}
	}
	qsort(claims, n, sizeof(*claims), claim_cmp);
	/*
	 * Each run of equal (VIP, port) is in file order: its head is the
	 * first claim, the next one the conflict. Report the conflict that
	 * comes first in the file.
	 */
	for (k = 0; k < n; k = end) {
		for (end = k + 1; end < n && claim_same(&claims[k], &claims[end]); end++)
			;
		if (end - k < 2)
			continue;
		if (!dup || claims[k + 1].svc < dup->svc ||
		    (claims[k + 1].svc == dup->svc && claims[k + 1].port_idx < dup->port_idx)) {
			first = &claims[k];
			dup = &claims[k + 1];
		}
	}
	if (dup) {
		const struct config_service *s = &cfg->services[dup->svc];
		const struct config_service *o = &cfg->services[first->svc];

		cp_path_set(p, "services[%d].ports[%d].port", dup->svc, dup->port_idx);
		err = cp_fail(p, s->ports[dup->port_idx].line,
			      "%s is already claimed by services[%d] (%s/%s, line %d)",
			      addr_format(&dup->vip, htons(dup->port), text, sizeof(text)),
			      first->svc, o->namespace, o->name, o->line);
	}
	free(claims);
	return err;
}

static bool svc_same_name(const struct config_service *a, const struct config_service *b)
{
	return !strcmp(a->namespace, b->namespace) && !strcmp(a->name, b->name);
}

static int svc_name_cmp(const void *a, const void *b)
{
	const struct config_service *x = *(const struct config_service *const *)a;
	const struct config_service *y = *(const struct config_service *const *)b;
	int c = strcmp(x->namespace, y->namespace);

	if (!c)
		c = strcmp(x->name, y->name);
	if (!c)
		c = (x->id > y->id) - (x->id < y->id);
	return c;
}

/* namespace/name identifies a service to users and metrics: it must be unique. */
static int check_names(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct config_service **order, *dup = NULL, *first = NULL;
	int i, end, err = 0;

	if (cfg->n_services < 2)
		return 0;
	order = calloc(cfg->n_services, sizeof(*order));
	if (!order)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++)
		order[i] = &cfg->services[i];
	qsort(order, cfg->n_services, sizeof(*order), svc_name_cmp);
	/* As in check_claims: runs are in file order, report the earliest conflict. */
	for (i = 0; i < cfg->n_services; i = end) {
		for (end = i + 1; end < cfg->n_services && svc_same_name(order[i], order[end]);
		     end++)
			;
		if (end - i >= 2 && (!dup || order[i + 1]->id < dup->id)) {
			first = order[i];
			dup = order[i + 1];
		}
	}
	if (dup) {
		cp_path_set(p, "services[%u].name", dup->id);
		err =
		    cp_fail(p, dup->line, "duplicate service %s/%s (also services[%u] at line %d)",
			    dup->namespace, dup->name, first->id, first->line);
	}
	free(order);
	return err;
}

static int svc_ref_cmp(const void *key, const void *elem)
{
	const struct config_route_backend *b = key;
	const struct config_service *s = *(const struct config_service *const *)elem;
	int c = strcmp(b->namespace, s->namespace);

	return c ? c : strcmp(b->name, s->name);
}

/* The service's port numbered port, or NULL. */
static const struct config_port *svc_port(const struct config_service *svc, uint16_t port)
{
	int j;

	for (j = 0; j < svc->n_ports; j++) {
		if (svc->ports[j].port == port)
			return &svc->ports[j];
	}
	return NULL;
}

/*
 * A routed request keeps its port number: the backend service must have
 * every port of svc that can carry HTTP, or part of a split would fail at
 * request time instead of at load. Returns 0 or -EINVAL with err set.
 */
static int check_backend_ports(struct cfg_parser *p, const struct config_service *svc,
			       const struct config_route_backend *be, int i, int r, int b)
{
	const struct config_service *to = &p->cfg->services[be->svc_index];
	int j;

	for (j = 0; j < svc->n_ports; j++) {
		const struct config_port *port = &svc->ports[j];

		if (port->protocol != CONFIG_PROTO_HTTP && port->protocol != CONFIG_PROTO_DETECT)
			continue;
		if (svc_port(to, port->port))
			continue;
		cp_path_set(p, "services[%d].routes[%d].backends[%d].service", i, r, b);
		return cp_fail(p, be->line,
			       "%s/%s has no port %u, which requests routed from "
			       "services[%d].ports[%d] (line %d) arrive on",
			       to->namespace, to->name, port->port, i, j, port->line);
	}
	return 0;
}

/*
 * Resolve every backend to its service's index, now that all services are
 * known (a route may name one further down), and check its ports. Names
 * are unique by now, so a binary search over them keeps this
 * O(backends log services). Runs after resolve_opaque_ports.
 */
static int check_backends(struct cfg_parser *p)
{
	const struct config *cfg = p->cfg;
	const struct config_service **order, *const *hit;
	int i, r, b, err = 0;

	if (!p->n_routes_total || cfg->n_services <= 0)
		return 0;
	order = calloc((size_t)cfg->n_services, sizeof(*order));
	if (!order)
		return cp_oom(p);
	for (i = 0; i < cfg->n_services; i++)
		order[i] = &cfg->services[i];
	qsort(order, (size_t)cfg->n_services, sizeof(*order), svc_name_cmp);
	for (i = 0; i < cfg->n_services && !err; i++) {
		struct config_service *svc = &cfg->services[i];

		for (r = 0; r < svc->n_routes && !err; r++) {
			struct config_route *route = &svc->routes[r];

			for (b = 0; b < route->n_backends && !err; b++) {
				struct config_route_backend *be = &route->backends[b];

				hit = bsearch(be, order, (size_t)cfg->n_services, sizeof(*order),
					      svc_ref_cmp);
				if (hit) {
					be->svc_index = (*hit)->id;
					err = check_backend_ports(p, svc, be, i, r, b);
					continue;
				}
				cp_path_set(p, "services[%d].routes[%d].backends[%d].service", i, r,
					    b);
				err = cp_fail(p, be->line, "no service %s/%s in the file",
					      be->namespace, be->name);
			}
		}
	}
	free(order);
	return err;
}

/* An undeclared port listed in proxy.opaque_ports skips detection. Cannot fail. */
static void resolve_opaque_ports(struct config *cfg)
{
	int i, j, k;

	for (i = 0; i < cfg->n_services; i++) {
		for (j = 0; j < cfg->services[i].n_ports; j++) {
			struct config_port *port = &cfg->services[i].ports[j];

			if (port->declared)
				continue;
			for (k = 0; k < cfg->n_opaque_ports; k++) {
				if (cfg->opaque_ports[k] == port->port ||
				    cfg->opaque_ports[k] == port->target_port)
					port->protocol = CONFIG_PROTO_TCP;
			}
		}
	}
}

/* Checks that need the whole file, in the order a reader meets the fields. */
static int check_config(struct cfg_parser *p)
{
	int err;

	if (addr_is_zero(&p->cfg->proxy_v4) && addr_is_zero(&p->cfg->proxy_v6)) {
		cp_path_set(p, "node");
		return cp_fail(p, p->node_line ? p->node_line : 1,
			       "address_v4 or address_v6 is required");
	}
	err = check_names(p);
	if (err)
		return err;
	err = check_claims(p);
	if (err)
		return err;
	resolve_opaque_ports(p->cfg);
	return check_backends(p);
}

/* The stream: exactly one document whose top level is a mapping. */
static int cp_document(struct cfg_parser *p)
{
	struct map_seen seen;
	int err;

	err = cp_next(p); /* STREAM-START */
	if (!err)
		err = cp_next(p);
	if (err)
		return err;
	if (p->ev.type == YAML_STREAM_END_EVENT)
		return cp_fail(p, cp_line(p), "file is empty");
	err = cp_next(p); /* the top-level node, after DOCUMENT-START */
	if (err)
		return err;
	if (ev_is_null(&p->ev))
		return cp_fail(p, cp_line(p), "file is empty");
	err = cp_map(p, root_fields, ARRAY_SIZE(root_fields), p->cfg, &seen);
	if (!err)
		err = cp_next(p); /* DOCUMENT-END */
	if (!err)
		err = cp_next(p);
	if (err)
		return err;
	if (p->ev.type != YAML_STREAM_END_EVENT)
		return cp_fail(p, cp_line(p), "multiple documents are not supported");
	return 0;
}

/* One place for every resilience default: the modules' own constants. */
void config_resilience_default(struct config_resilience *r)
{
	memset(r, 0, sizeof(*r));
	r->default_rtt_ms = PEAK_EWMA_DEFAULT_RTT_NS / 1000000;
	r->decay_ms = PEAK_EWMA_DEFAULT_TAU_NS / 1000000;
	r->failure_penalty_ms = PEAK_EWMA_DEFAULT_FAILURE_PENALTY_NS / 1000000;
	r->retry_after_cap_ms = PEAK_EWMA_DEFAULT_RETRY_AFTER_CAP_NS / 1000000;
	r->penalty_ms = PEAK_EWMA_DEFAULT_PENALTY_DURATION_NS / 1000000;
	r->explore_after_ms = P2C_DEFAULT_EXPLORE_AFTER_NS / 1000000;
	r->budget_ratio_pct = RETRY_BUDGET_DEFAULT_RATIO_MILLI / 10;
	r->budget_min_per_s = RETRY_BUDGET_DEFAULT_MIN_PER_S;
	r->budget_window_ms = RETRY_BUDGET_DEFAULT_TTL_NS / 1000000;
	r->max_retries = RETRY_DEFAULT_MAX_RETRIES;
	r->max_body_bytes = RETRY_DEFAULT_MAX_BODY_BYTES;
	r->backoff_base_ms = BACKOFF_RETRY_BASE_NS / 1000000;
	r->backoff_max_ms = BACKOFF_RETRY_MAX_NS / 1000000;
	r->connect_any_method = true;
	r->consecutive_failures = BREAKER_DEFAULT_CONSECUTIVE_FAILURES;
	r->breaker_backoff_min_ms = BREAKER_DEFAULT_BACKOFF_MIN_NS / 1000000;
	r->breaker_backoff_max_ms = BREAKER_DEFAULT_BACKOFF_MAX_NS / 1000000;
	r->jitter_pct = (uint32_t)(BREAKER_DEFAULT_JITTER * 100);
	r->success_rate_pct = BREAKER_DEFAULT_SUCCESS_RATE_PCT;
	r->success_rate_window_ms = BREAKER_DEFAULT_SUCCESS_RATE_WINDOW_NS / 1000000;
	r->success_rate_min_requests = BREAKER_DEFAULT_SUCCESS_RATE_MIN_REQUESTS;
	r->max_ejection_pct = BREAKER_DEFAULT_MAX_EJECTION_PCT;
	r->fail_fast_ms = CONFIG_DEFAULT_FAIL_FAST_MS;
}

static void config_set_defaults(struct config *cfg)
{
	static const uint16_t default_opaque_ports[] = CONFIG_DEFAULT_OPAQUE_PORTS;

	cfg->proxy_port = SHOAL_DEFAULT_PROXY_PORT;
	snprintf(cfg->pin_root, sizeof(cfg->pin_root), "%s", SHOAL_DEFAULT_PIN_ROOT);
	snprintf(cfg->cgroup, sizeof(cfg->cgroup), "%s", CONFIG_DEFAULT_CGROUP);
	cfg->shortcut = true;
	cfg->socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg->failopen_after_ms = CONFIG_DEFAULT_FAILOPEN_AFTER_MS;
	cfg->workers = 0;
	cfg->connect_timeout_ms = CONFIG_DEFAULT_CONNECT_TIMEOUT_MS;
	cfg->connect_deadline_ms = CONFIG_DEFAULT_CONNECT_DEADLINE_MS;
	cfg->buffer_bytes = CONFIG_DEFAULT_BUFFER_BYTES;
	cfg->max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
	cfg->max_buffer_memory_mib = CONFIG_DEFAULT_MAX_BUFFER_MEMORY_MIB;
	cfg->max_connections_per_client = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
	cfg->detect_timeout_ms = CONFIG_DEFAULT_DETECT_TIMEOUT_MS;
	cfg->n_opaque_ports = ARRAY_SIZE(default_opaque_ports);
	memcpy(cfg->opaque_ports, default_opaque_ports, sizeof(default_opaque_ports));
	cfg->idle_timeout_ms = CONFIG_DEFAULT_IDLE_TIMEOUT_MS;
	cfg->drain_timeout_ms = CONFIG_DEFAULT_DRAIN_TIMEOUT_MS;
	cfg->http_max_request_line = CONFIG_DEFAULT_HTTP_MAX_REQUEST_LINE;
	cfg->http_max_head_bytes = CONFIG_DEFAULT_HTTP_MAX_HEAD_BYTES;
	cfg->http_max_headers = CONFIG_DEFAULT_HTTP_MAX_HEADERS;
	cfg->http_pool_idle_timeout_ms = CONFIG_DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS;
	cfg->http_pool_max_idle_per_endpoint = CONFIG_DEFAULT_HTTP_POOL_MAX_IDLE;
	cfg->http_request_body_timeout_ms = CONFIG_DEFAULT_HTTP_BODY_TIMEOUT_MS;
	cfg->http_response_head_timeout_ms = CONFIG_DEFAULT_HTTP_HEAD_TIMEOUT_MS;
	cfg->http_forwarded_for = true;
	cfg->http_forwarded_proto = true;
	cfg->http_request_id = true;
	cfg->http_timeout_header = true;
	snprintf(cfg->http_upgrades[0], sizeof(cfg->http_upgrades[0]), "%s",
		 CONFIG_DEFAULT_HTTP_UPGRADE);
	cfg->n_http_upgrades = 1;
	cfg->k8s_backoff_max_ms = CONFIG_DEFAULT_K8S_BACKOFF_MAX_MS;
	/* tracing: the library's own defaults (docs/tracing.md). */
	cfg->tracing.enabled = false;
	snprintf(cfg->tracing.collector_url, sizeof(cfg->tracing.collector_url), "%s",
		 OTLP_DEFAULT_URL);
	cfg->tracing.sample_rate = CONFIG_DEFAULT_TRACE_SAMPLE_RATE;
	cfg->tracing.span_kind = TRACE_KIND_CLIENT;
	snprintf(cfg->tracing.service_name, sizeof(cfg->tracing.service_name), "shoal");
	cfg->tracing.ring_size = TRACE_RING_DEFAULT;
	cfg->tracing.batch_size = OTLP_BATCH_DEFAULT;
	cfg->tracing.batch_delay_ms = OTLP_DELAY_MS_DEFAULT;
	cfg->tracing.timeout_ms = OTLP_TIMEOUT_MS_DEFAULT;
	snprintf(cfg->admin.listen, sizeof(cfg->admin.listen), "%s", ADMIN_DEFAULT_LISTEN);
}

/*
 * Parse len bytes of text (not necessarily NUL-terminated). On success 0
 * and a new *out; on failure *out is NULL, err holds one line and the
 * result is -EINVAL (bad file) or -ENOMEM.
 */
int config_parse(const char *name, const char *text, size_t len, struct config **out, char *err,
		 size_t errlen)
{
	struct cfg_parser p = {
	    .name = name, .text = text, .len = len, .err = err, .errlen = errlen};
	const char *nul;
	struct config *cfg;
	int ret;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!text) {
		text = "";
		p.text = text;
		len = 0;
	}
	if (len > CONFIG_MAX_FILE_BYTES)
		return cp_fail(&p, 1, "file is larger than %u bytes", CONFIG_MAX_FILE_BYTES);
	/* libyaml would stop at a NUL with a vaguer message; a NUL means a binary or truncated
	 * file. */
	nul = memchr(text, '\0', len);
	if (nul) {
		int line = 1;

		for (; text < nul && line < INT_MAX; text++)
			line += *text == '\n';
		return cp_fail(&p, line, "NUL byte in input");
	}

	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return cp_oom(&p);
	snprintf(cfg->path, sizeof(cfg->path), "%s", name);
	config_set_defaults(cfg);
	p.cfg = cfg;
	if (!yaml_parser_initialize(&p.yaml)) {
		free(cfg);
		return cp_oom(&p);
	}
	yaml_parser_set_input_string(&p.yaml, (const unsigned char *)p.text, len);

	ret = cp_document(&p);
	if (!ret)
		ret = check_config(&p);

	if (p.have_ev)
		yaml_event_delete(&p.ev);
	yaml_parser_delete(&p.yaml);
	if (ret) {
		config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}

/*
 * Read the file at path (at most CONFIG_MAX_FILE_BYTES + 1 bytes, enough
 * for config_parse to refuse a larger one) and parse it. Returns 0 and
 * *out, or -errno with "path: cannot read: reason" or config_parse's message.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	const size_t limit = (size_t)CONFIG_MAX_FILE_BYTES + 1;
	size_t len = 0, cap = 0;
	char *buf = NULL, *nbuf;
	ssize_t n;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto err_read;
	}
	while (len < limit) {
		if (len == cap) {
			cap = cap ? 2 * cap : 65536;
			if (cap > limit)
				cap = limit;
			nbuf = realloc(buf, cap);
			if (!nbuf) {
				ret = -ENOMEM;
				goto err_close;
			}
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto err_close;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	ret = config_parse(path, buf, len, out, err, errlen);
	free(buf);
	return ret;

err_close:
	close(fd);
	free(buf);
err_read:
	if (err && errlen)
		snprintf(err, errlen, "%s: cannot read: %s", path, strerror(-ret));
	return ret;
}

/* The strings a service's routes own, then the routes. */
static void free_routes(struct config_service *svc)
{
	int r, k;

	for (r = 0; r < svc->n_routes; r++) {
		struct config_route *route = &svc->routes[r];

		for (k = 0; k < route->n_hosts; k++)
			free(route->hosts[k].name);
		for (k = 0; k < route->n_headers; k++) {
			free(route->headers[k].name);
			free(route->headers[k].value);
		}
		free(route->path);
	}
	free(svc->routes);
}

/* Frees cfg and everything it owns; NULL is fine. */
void config_free(struct config *cfg)
{
	int i;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n_services; i++) {
		free(cfg->services[i].endpoints);
		free_routes(&cfg->services[i]);
	}
	free(cfg->services);
	free(cfg->strings);
	free(cfg);
}

/* A heap copy of n bytes plus a NUL, or NULL (also for a NULL s). */
static char *dup_bytes(const char *s, size_t n)
{
	char *d;

	if (!s)
		return NULL;
	d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* dst = src's routes, every string duplicated. 0 or -ENOMEM (dst then
 * owns what was copied, for free_routes). */
static int copy_routes(struct config_service *dst, const struct config_service *src)
{
	dst->routes = NULL;
	dst->n_routes = 0;
	if (!src->n_routes)
		return 0;
	dst->routes = calloc((size_t)src->n_routes, sizeof(*dst->routes));
	if (!dst->routes)
		return -ENOMEM;
	for (int r = 0; r < src->n_routes; r++) {
		const struct config_route *s = &src->routes[r];
		struct config_route *d = &dst->routes[r];

		*d = *s;
		d->n_hosts = d->n_headers = 0;
		d->path = NULL;
		dst->n_routes = r + 1;
		if (s->path && !(d->path = dup_bytes(s->path, s->path_len)))
			return -ENOMEM;
		for (int k = 0; k < s->n_hosts; k++) {
			d->hosts[k].name = dup_bytes(s->hosts[k].name, s->hosts[k].len);
			if (!d->hosts[k].name)
				return -ENOMEM;
			d->n_hosts = k + 1;
		}
		for (int k = 0; k < s->n_headers; k++) {
			d->headers[k].name = dup_bytes(s->headers[k].name, s->headers[k].name_len);
			d->headers[k].value =
			    dup_bytes(s->headers[k].value, s->headers[k].value_len);
			d->n_headers = k + 1;
			if (!d->headers[k].name || !d->headers[k].value)
				return -ENOMEM;
		}
	}
	return 0;
}

/* p, a pointer into src's string table, moved into dst's. */
static const char *rebase(const char *p, const struct config *src, const struct config *dst)
{
	return p ? dst->strings + (p - src->strings) : NULL;
}

int config_copy(const struct config *src, int n_services, struct config **out)
{
	struct config *cfg;
	int i;

	if (n_services < src->n_services)
		return -EINVAL;
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return -ENOMEM;
	*cfg = *src;
	cfg->n_services = 0;
	cfg->strings = NULL;
	cfg->services = n_services ? calloc((size_t)n_services, sizeof(*cfg->services)) : NULL;
	if (n_services && !cfg->services)
		goto oom;
	if (src->strings) {
		cfg->strings = dup_bytes(src->strings, src->strings_len);
		if (!cfg->strings)
			goto oom;
	}
	for (i = 0; i < src->n_services; i++) {
		const struct config_service *s = &src->services[i];
		struct config_service *d = &cfg->services[i];

		*d = *s;
		d->endpoints = NULL;
		d->routes = NULL;
		d->n_routes = 0;
		cfg->n_services = i + 1; /* so that config_free frees what d got */
		if (s->n_endpoints) {
			d->endpoints = malloc((size_t)s->n_endpoints * sizeof(*d->endpoints));
			if (!d->endpoints)
				goto oom;
			for (int e = 0; e < s->n_endpoints; e++) {
				d->endpoints[e] = s->endpoints[e];
				d->endpoints[e].zone = rebase(s->endpoints[e].zone, src, cfg);
				d->endpoints[e].node = rebase(s->endpoints[e].node, src, cfg);
			}
		}
		if (copy_routes(d, s))
			goto oom;
	}
	cfg->n_services = n_services;
	*out = cfg;
	return 0;
oom:
	config_free(cfg);
	return -ENOMEM;
}

/*
 * The service claiming (vip, port_be), or NULL. A linear scan: it runs when
 * the proxy accepts, and the datapath already resolved the service, so
 * this is off the per-packet path.
 */
const struct config_service *config_find_service(const struct config *cfg,
						 const struct shoal_addr *vip, uint16_t port_be,
						 const struct config_port **port_out)
{
	uint16_t port = ntohs(port_be);
	int i, v, j;

	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *svc = &cfg->services[i];

		for (v = 0; v < svc->n_vips; v++) {
			if (!addr_equal(&svc->vips[v], vip))
				continue;
			for (j = 0; j < svc->n_ports; j++) {
				if (svc->ports[j].port != port)
					continue;
				if (port_out)
					*port_out = &svc->ports[j];
				return svc;
			}
		}
	}
	return NULL;
}

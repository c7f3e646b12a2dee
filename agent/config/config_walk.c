// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The config file's YAML walker: a schema-driven walk over libyaml's event
 * stream. Each mapping is described by a table of fields (struct field,
 * config_int.h), so unknown, duplicate, missing and mistyped keys are
 * caught in one place, and the first problem ends the parse with
 * "path:line: field: problem". The tables themselves are the schema, in
 * config_node.c and config_services.c.
 *
 * Events rather than libyaml's document loader: the loader builds the whole
 * tree (aliases included) before we could look at it, so a hostile 16 MiB
 * file would cost hundreds of MiB. On events we stop at the first node that
 * does not fit the schema, and memory is bounded by what the schema keeps.
 */
#include "config/config_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "common/addr.h"

/* Lines in messages are 1-based; libyaml's marks are 0-based. */
static int mark_line(size_t line0)
{
	return line0 >= INT_MAX ? INT_MAX : (int)line0 + 1;
}

int cp_line(const struct cfg_parser *p)
{
	return mark_line(p->ev.start_mark.line);
}

/*
 * Copy a user's text into buf (CONFIG_ECHO_MAX + 4 bytes) for a message:
 * printable ASCII only, cut with "..." when long, so that a hostile file
 * cannot put control characters or megabytes into a log line. Returns buf.
 */
const char *cp_echo(const char *s, size_t n, char *buf)
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
int __attribute__((format(printf, 3, 4)))
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
int cp_oom(struct cfg_parser *p)
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
int cp_grow(struct cfg_parser *p, void **arr, size_t n, size_t elem)
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
size_t cp_path_push_key(struct cfg_parser *p, const char *key)
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

void cp_path_pop(struct cfg_parser *p, size_t old)
{
	p->path_len = old;
	p->path[old] = '\0';
}

/* Replace the path wholesale, for checks made after the walk. */
void __attribute__((format(printf, 2, 3))) cp_path_set(struct cfg_parser *p, const char *fmt, ...)
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
int cp_next(struct cfg_parser *p)
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
bool ev_is_null(const yaml_event_t *ev)
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
const char *ev_kind(const yaml_event_t *ev)
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
			    cp_echo(*s, *n, buf));
		ref = dollar + 2;
		close = memchr(ref, '}', (size_t)(end - ref));
		if (!close)
			return cp_fail(p, cp_line(p), "\"${\" without a closing \"}\", got \"%s\"",
				       cp_echo(dollar, (size_t)(end - dollar), buf));
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
				       cp_echo(dollar, (size_t)(close + 1 - dollar), buf));
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
int cp_scalar(struct cfg_parser *p, const char *want, const char **s, size_t *n)
{
	*s = "";
	*n = 0;
	if (p->ev.type != YAML_SCALAR_EVENT || ev_is_null(&p->ev))
		return cp_fail(p, cp_line(p), "must be %s, got %s", want, ev_kind(&p->ev));
	*s = (const char *)p->ev.data.scalar.value;
	*n = p->ev.data.scalar.length;
	return cp_expand(p, s, n);
}

int cp_word(struct cfg_parser *p, const struct cp_word *words, size_t n_words, int *out)
{
	char want[128] = "", buf[CONFIG_ECHO_MAX + 4];
	size_t at = 0;
	const char *s;
	size_t n;
	int err;

	/* "a, b or c", for both messages. */
	for (size_t i = 0; i < n_words && at < sizeof(want); i++) {
		const char *sep = i == 0 ? "" : i + 1 == n_words ? " or " : ", ";

		at += (size_t)snprintf(want + at, sizeof(want) - at, "%s%s", sep, words[i].word);
	}
	err = cp_scalar(p, want, &s, &n);
	if (err)
		return err;
	for (size_t i = 0; i < n_words; i++) {
		if (strlen(words[i].word) == n && !memcmp(s, words[i].word, n)) {
			*out = words[i].value;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be %s, got \"%s\"", want, cp_echo(s, n, buf));
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
int cp_uint(struct cfg_parser *p, uint64_t min, uint64_t max, uint64_t *out)
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
			       cp_echo(s, n, buf));
	neg = n > 1 && s[0] == '-';
	if (!scan_uint(s + neg, n - neg, &v, &big))
		return cp_fail(p, cp_line(p), "must be a decimal or 0x hex integer, got \"%s\"",
			       cp_echo(s, n, buf));
	if (neg || big || v < min || v > max)
		return cp_fail(p, cp_line(p), "must be %" PRIu64 "..%" PRIu64 ", got %s", min, max,
			       cp_echo(s, n, buf));
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
		       ev_is_plain(&p->ev) ? "" : "the string ", cp_echo(s, n, buf));
}

/* Any scalar that fits size with its NUL and holds no NUL of its own. */
int cp_string(struct cfg_parser *p, const char *want, char *out, size_t size)
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
bool cp_is_label(const char *s)
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
	if (cp_is_label(out))
		return 0;
bad:
	return cp_fail(p, cp_line(p),
		       "must be an RFC 1123 label (a-z, 0-9 and '-', at most %d, alphanumeric at "
		       "both ends), got \"%s\"",
		       CONFIG_MAX_NAME, cp_echo(s, n, buf));
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
			       cp_echo(out, strlen(out), buf));
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
int cp_addr(struct cfg_parser *p, enum field_kind kind, struct shoal_addr *out)
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
	return cp_fail(p, cp_line(p), "must be %s, got \"%s\"", want[kind], cp_echo(s, n, buf));
}

/*
 * tcp, http, h2c (also spelt http2 or grpc: gRPC is HTTP/2), or the
 * Kubernetes appProtocol spelling of one of them, so that a Service's
 * appProtocol can be copied as it is. There is no
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
	    {"http2", CONFIG_PROTO_H2C},
	    {"grpc", CONFIG_PROTO_H2C},
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

	err = cp_scalar(p, "tcp, http, h2c, http2 or grpc", &s, &n);
	if (err)
		return err;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		if (strlen(names[i].name) == n && !memcmp(s, names[i].name, n)) {
			*out = names[i].proto;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be tcp, http, h2c, http2 or grpc, got \"%s\"", cp_echo(s, n, buf));
}

/* Parse the value at the current event into obj as f describes. */
static int cp_field(struct cfg_parser *p, const struct field *f, void *obj)
{
	void *dst = (char *)obj + f->off;
	struct map_seen seen;
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
	case FIELD_MAP:
		err = cp_map(p, f->fields, f->n_fields, dst, &seen);
		if (err || !f->check)
			return err;
		return f->check(p, dst, &seen);
	case FIELD_SEQ:
		return cp_seq(p, f->seq, dst);
	case FIELD_FUNC:
		return f->parse(p, obj);
	}
	return cp_fail(p, cp_line(p), "internal error: field kind %d", (int)f->kind);
}

/*
 * Walk the mapping at the current event (null counts as empty), calling
 * entry for each key, with the key as the current event (a scalar: klen
 * bytes at key, on line); entry parses the key's value too. Returns 0 with
 * the mapping's end as the current event, or the first -errno.
 */
int cp_map_walk(struct cfg_parser *p,
		int (*entry)(struct cfg_parser *p, void *ctx, const char *key, size_t klen,
			     int line),
		void *ctx)
{
	int line, err;

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
		err = entry(p, ctx, (const char *)p->ev.data.scalar.value, p->ev.data.scalar.length,
			    line);
		if (err)
			return err;
	}
}

/* A mapping described by a field table, being read into obj. */
struct map_walk {
	const struct field *fields;
	size_t n_fields;
	void *obj;
	struct map_seen *seen;
};

/* One "key: value" of a mapping with a field table (a cp_map_walk entry). */
static int cp_map_entry(struct cfg_parser *p, void *ctx, const char *key, size_t klen, int line)
{
	const struct map_walk *m = ctx;
	const struct field *fields = m->fields, *f = NULL;
	size_t i, n_fields = m->n_fields, old;
	struct map_seen *seen = m->seen;
	char buf[CONFIG_ECHO_MAX + 4];
	int err;

	for (i = 0; i < n_fields && !f; i++) {
		if (strlen(fields[i].key) == klen && !memcmp(fields[i].key, key, klen))
			f = &fields[i];
	}
	if (!f) {
		cp_path_push_key(p, klen ? cp_echo(key, klen, buf) : "\"\"");
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
	err = cp_field(p, f, m->obj);
	if (err)
		return err;
	cp_path_pop(p, old);
	return 0;
}

/* The u32 at fields[i].off in obj. */
static uint32_t field_u32(const struct field *f, const void *obj)
{
	return *(const uint32_t *)((const char *)obj + f->off);
}

/* Index of key in fields, or n_fields. */
static size_t field_index(const struct field *fields, size_t n_fields, const char *key)
{
	size_t i;

	for (i = 0; i < n_fields && strcmp(fields[i].key, key); i++)
		;
	return i;
}

/* fields[i]'s at_most or at_least rule holds for the mapping read into obj, or -EINVAL. */
static int cp_map_order(struct cfg_parser *p, const struct field *fields, size_t n_fields, size_t i,
			const void *obj, const struct map_seen *seen)
{
	const struct field *f = &fields[i];
	const char *other = f->at_most ? f->at_most : f->at_least;
	size_t j;
	uint32_t v, bound;

	if (!other)
		return 0;
	j = field_index(fields, n_fields, other);
	if (j == n_fields)
		return cp_fail(p, seen->start_line, "internal error: no field %s", other);
	v = field_u32(f, obj);
	bound = field_u32(&fields[j], obj);
	if (f->at_most ? v <= bound || (f->unless_zero && !bound) : v >= bound)
		return 0;
	cp_path_push_key(p, f->key);
	return cp_fail(p, (seen->mask & (1u << i)) ? seen->line[i] : seen->line[j],
		       "must be %s %s (%u), got %u", f->at_most ? "<=" : ">=", other, bound, v);
}

/*
 * Parse the mapping at the current event into obj. A null value counts as
 * an empty mapping ("node:" with everything commented out). Fills *seen.
 * Returns 0 with the mapping's end as the current event, or -errno.
 */
int cp_map(struct cfg_parser *p, const struct field *fields, size_t n_fields, void *obj,
	   struct map_seen *seen)
{
	struct map_walk m = {fields, n_fields, obj, seen};
	size_t i;
	int err;

	memset(seen, 0, sizeof(*seen));
	seen->start_line = cp_line(p);
	if (n_fields > MAP_MAX_FIELDS)
		return cp_fail(p, seen->start_line, "internal error: %zu fields, at most %d",
			       n_fields, MAP_MAX_FIELDS);
	err = cp_map_walk(p, cp_map_entry, &m);
	if (err)
		return err;
	for (i = 0; i < n_fields; i++) {
		if (fields[i].required && !(seen->mask & (1u << i))) {
			cp_path_push_key(p, fields[i].key);
			return cp_fail(p, seen->start_line, "is required");
		}
	}
	for (i = 0; i < n_fields; i++) {
		err = cp_map_order(p, fields, n_fields, i, obj, seen);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Parse the sequence at the current event as seq describes, calling
 * seq->item for each element (the element is the current event; i its
 * index). Null counts as empty.
 */
int cp_seq(struct cfg_parser *p, const struct seq_spec *seq, void *obj)
{
	int line = seq->at_key ? p->key_line : cp_line(p), i, err;
	bool null = ev_is_null(&p->ev);
	size_t old;

	if (!null && p->ev.type != YAML_SEQUENCE_START_EVENT)
		return cp_fail(p, cp_line(p), "must be a sequence, got %s", ev_kind(&p->ev));
	if (seq->replaces_default)
		*(int *)((char *)obj + seq->count_off) = 0;
	for (i = 0; !null; i++) {
		err = cp_next(p);
		if (err)
			return err;
		if (p->ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		old = cp_path_push_index(p, i);
		if (i >= seq->max)
			return cp_fail(p, cp_line(p), "too many %s, at most %d", seq->many,
				       seq->max);
		err = seq->item(p, obj, i);
		if (err)
			return err;
		cp_path_pop(p, old);
	}
	if (i == 0 && seq->none)
		return cp_fail(p, line, "must list 1..%d %s, got none", seq->max, seq->none);
	return 0;
}

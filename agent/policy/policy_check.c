// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The parameters of a policy check (policy_check.h). */
#include "policy/policy_check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int __attribute__((format(printf, 3, 4))) bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode src[0..len) into out (cap bytes); -1 on a bad escape, control byte or no room. */
static int decode(const char *src, size_t len, char *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)src[i];

		if (c == '%') {
			if (i + 2 >= len)
				return -1;
			int hi = hex(src[i + 1]), lo = hex(src[i + 2]);

			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c < 0x21 || c == 0x7f || n + 1 >= cap)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

static bool is_label(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > POLICY_MAX_LABEL || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* A service account: a DNS subdomain of at most POLICY_MAX_LABEL characters. */
static bool is_sa(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > POLICY_MAX_LABEL || s[0] == '.' || s[0] == '-' || s[n - 1] == '.' ||
	    s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.'))
			return false;
	return true;
}

/* ns/sa of "a/b" into ns and sa (each POLICY_MAX_LABEL + 1 bytes); false when not that shape. */
static bool split2(const char *s, char *a, char *b)
{
	const char *slash = strchr(s, '/');

	if (!slash || (size_t)(slash - s) > POLICY_MAX_LABEL ||
	    strlen(slash + 1) > POLICY_MAX_LABEL)
		return false;
	memcpy(a, s, (size_t)(slash - s));
	a[slash - s] = '\0';
	strcpy(b, slash + 1);
	return true;
}

static int parse_src(const char *v, const char *td, struct policy_check *c, char *err,
		     size_t errlen)
{
	static const char scheme[] = "spiffe://";

	if (!strcmp(v, "unauthenticated"))
		return 0;
	c->authenticated = true;
	if (!strncmp(v, scheme, sizeof(scheme) - 1)) {
		const char *p = v + sizeof(scheme) - 1, *slash = strchr(p, '/');
		char ns[POLICY_MAX_LABEL + 1], sa[POLICY_MAX_LABEL + 1];

		if (!slash || slash == p || strlen(v) > POLICY_MAX_ID)
			return bad(
			    err, errlen,
			    "src: \"%.80s\" is not a SPIFFE ID (spiffe://<trust-domain>/<path>)",
			    v);
		for (const char *q = p; q < slash; q++)
			if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' ||
			      *q == '.' || *q == '_'))
				return bad(err, errlen,
					   "src: trust domain of \"%.80s\" is not valid", v);
		snprintf(c->id, sizeof(c->id), "%s", v);
		memcpy(c->trust_domain, p, (size_t)(slash - p));
		c->trust_domain[slash - p] = '\0';
		/* The mesh's form, /ns/<ns>/sa/<sa>, gives namespace and service-account rules
		 * their parts. */
		if (sscanf(slash, "/ns/%63[a-z0-9-]/sa/%63[a-z0-9.-]", ns, sa) == 2) {
			char again[POLICY_MAX_ID + 1];

			snprintf(again, sizeof(again), "/ns/%s/sa/%s", ns, sa);
			if (!strcmp(again, slash)) {
				strcpy(c->ns, ns);
				strcpy(c->sa, sa);
			}
		}
		return 0;
	}
	if (!split2(v, c->ns, c->sa) || !is_label(c->ns) || !is_sa(c->sa))
		return bad(err, errlen,
			   "src: \"%.80s\" is none of unauthenticated, namespace/service-account "
			   "or spiffe://...",
			   v);
	snprintf(c->trust_domain, sizeof(c->trust_domain), "%s", td ? td : "");
	if (snprintf(c->id, sizeof(c->id), "spiffe://%s/ns/%s/sa/%s", c->trust_domain, c->ns,
		     c->sa) >= (int)sizeof(c->id))
		return bad(err, errlen, "src: the SPIFFE ID of \"%.80s\" is too long", v);
	return 0;
}

static int parse_port(const char *name, const char *v, uint16_t *out, char *err, size_t errlen)
{
	char *end;
	unsigned long p;

	if (v[0] < '0' || v[0] > '9')
		return bad(err, errlen, "%s: \"%.16s\" is not a port 1..65535", name, v);
	p = strtoul(v, &end, 10);
	if (*end || p < 1 || p > 65535)
		return bad(err, errlen, "%s: \"%.16s\" is not a port 1..65535", name, v);
	*out = (uint16_t)p;
	return 0;
}

static int parse_dst(const char *v, struct policy_check *c, char *err, size_t errlen)
{
	char buf[2 * POLICY_MAX_LABEL + 8];
	char *colon;

	if (strlen(v) >= sizeof(buf))
		return bad(err, errlen, "dst: \"%.80s\" is too long for namespace/service[:port]",
			   v);
	strcpy(buf, v);
	colon = strchr(buf, ':');
	if (colon) {
		*colon = '\0';
		if (parse_port("dst", colon + 1, &c->port, err, errlen))
			return -EINVAL;
	}
	if (!split2(buf, c->dst_ns, c->dst_service) || !is_label(c->dst_ns) ||
	    !is_label(c->dst_service))
		return bad(err, errlen, "dst: \"%.80s\" is not namespace/service[:port]", v);
	return 0;
}

int policy_check_parse(const char *query, const char *trust_domain, struct policy_check *out,
		       char *err, size_t errlen)
{
	static const char *const keys[] = {"src", "dst", "port", "method", "path"};
	char vals[5][POLICY_MAX_PATH + 1];
	bool seen[5] = {};
	size_t qlen = query ? strlen(query) : 0;

	memset(out, 0, sizeof(*out));
	if (qlen > POLICY_CHECK_MAX_QUERY)
		return bad(err, errlen, "the query is longer than %d bytes",
			   POLICY_CHECK_MAX_QUERY);
	for (const char *p = query; p && *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		size_t klen = eq ? (size_t)(eq - p) : (size_t)(end - p);
		int k = -1;

		for (int i = 0; i < 5; i++)
			if (strlen(keys[i]) == klen && !memcmp(keys[i], p, klen))
				k = i;
		if (k < 0)
			return bad(
			    err, errlen,
			    "unknown parameter \"%.*s\": src, dst, port, method and path are "
			    "known",
			    (int)(klen > 32 ? 32 : klen), p);
		if (seen[k])
			return bad(err, errlen, "%s: given twice", keys[k]);
		seen[k] = true;
		if (!eq || eq + 1 == end)
			return bad(err, errlen, "%s: empty", keys[k]);
		if (decode(eq + 1, (size_t)(end - eq - 1), vals[k], sizeof(vals[k])))
			return bad(
			    err, errlen,
			    "%s: a bad %%-escape, a blank or control byte, or longer than %d "
			    "bytes",
			    keys[k], POLICY_MAX_PATH);
		p = amp ? amp + 1 : end;
	}
	if (!seen[0] || !seen[1])
		return bad(err, errlen, "src and dst are required");
	if (parse_src(vals[0], trust_domain, out, err, errlen) ||
	    parse_dst(vals[1], out, err, errlen))
		return -EINVAL;
	if (seen[2]) {
		if (out->port)
			return bad(err, errlen, "port: given in dst already");
		if (parse_port("port", vals[2], &out->port, err, errlen))
			return -EINVAL;
	}
	if (seen[3] != seen[4])
		return bad(err, errlen, "method and path go together (neither: a connection)");
	if (seen[3]) {
		if (strlen(vals[3]) > POLICY_MAX_METHOD)
			return bad(err, errlen, "method: longer than %d bytes", POLICY_MAX_METHOD);
		for (const char *q = vals[3]; *q; q++)
			if (!strchr("!#$%&'*+-.^_`|~", *q) &&
			    !((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			      (*q >= '0' && *q <= '9')))
				return bad(err, errlen,
					   "method: \"%.32s\" is not an HTTP method token",
					   vals[3]);
		if (vals[4][0] != '/' || strpbrk(vals[4], "?#"))
			return bad(
			    err, errlen,
			    "path: \"%.80s\" must start with '/' and have no query or fragment",
			    vals[4]);
		out->request = true;
		strcpy(out->method, vals[3]);
		strcpy(out->path, vals[4]);
	}
	return 0;
}

void policy_check_caller(const struct policy_check *c, struct policy_caller *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->authenticated)
		return;
	out->authenticated = true;
	out->id = c->id;
	out->trust_domain = c->trust_domain;
	out->ns = c->ns;
	out->sa = c->sa;
}

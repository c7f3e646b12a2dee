// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * SPIFFE IDs of the Kubernetes shape (spiffe.h). The rules are the
 * SPIFFE ID spec's (lowercase scheme and trust domain, no empty, "." or
 * ".." segments, no percent-encoding, no query, fragment, port or
 * userinfo) narrowed to Kubernetes names: a namespace is a DNS label and
 * a service account a DNS subdomain, both lowercase. Anything looser
 * would let two spellings name one workload.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "identity/spiffe.h"

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool dns_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/*
 * s[0..len) as a DNS label (RFC 1123 as Kubernetes checks it): [a-z0-9-],
 * starting and ending alphanumeric. Returns NULL or why not.
 */
static const char *dns_label_why(const char *s, size_t len)
{
	if (len == 0)
		return "empty segment";
	if (len == 1 && s[0] == '.')
		return "\".\" segment";
	if (len == 2 && s[0] == '.' && s[1] == '.')
		return "\"..\" segment";
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%')
			return "percent-encoding";
		if (!dns_alnum(s[i]) && s[i] != '-')
			return "character outside [a-z0-9-] in a DNS label";
	}
	if (s[0] == '-' || s[len - 1] == '-')
		return "DNS label starts or ends with '-'";
	return NULL;
}

/* s[0..len) as a DNS subdomain: dot-separated DNS labels. */
static const char *dns_subdomain_why(const char *s, size_t len)
{
	size_t start = 0;

	if (len == 0)
		return "empty segment";
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return len == 1 ? "\".\" segment" : "\"..\" segment";
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		const char *why = dns_label_why(s + start, i - start);
		if (why)
			return i - start == 0 ? "empty label in a DNS subdomain" : why;
		start = i + 1;
	}
	return NULL;
}

static const char *td_why(const char *s, size_t len)
{
	if (len == 0)
		return "empty trust domain";
	if (len > SPIFFE_TD_MAX)
		return "trust domain longer than 255 bytes";
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%')
			return "percent-encoding in the trust domain";
		if (s[i] == ':')
			return "port in the trust domain";
		if (s[i] == '@')
			return "userinfo in the trust domain";
		if (s[i] >= 'A' && s[i] <= 'Z')
			return "uppercase in the trust domain";
		if (!td_char(s[i]))
			return "character outside [a-z0-9._-] in the trust domain";
	}
	return NULL;
}

bool spiffe_trust_domain_valid(const char *td)
{
	return td && td_why(td, strnlen(td, SPIFFE_TD_MAX + 1)) == NULL;
}

static int fail(struct spiffe_id *out, const char **why, const char *reason, int err)
{
	memset(out, 0, sizeof(*out));
	if (why)
		*why = reason;
	return err;
}

int spiffe_id_parse_why(const char *uri, struct spiffe_id *out, const char **why)
{
	const size_t scheme_len = sizeof(SPIFFE_SCHEME) - 1;
	const char *p, *td, *slash, *ns, *sa;
	size_t len, ns_len, sa_len;
	const char *w;

	if (!uri)
		return fail(out, why, "no ID", -EINVAL);
	len = strnlen(uri, SPIFFE_URI_MAX + 1);
	if (len > SPIFFE_URI_MAX)
		return fail(out, why, "ID longer than 2048 bytes", -ENAMETOOLONG);
	if (len == 0)
		return fail(out, why, "empty ID", -EINVAL);
	if (strncmp(uri, SPIFFE_SCHEME, scheme_len) != 0)
		return fail(out, why,
			    strncasecmp(uri, SPIFFE_SCHEME, scheme_len) == 0
				? "scheme is not lowercase \"spiffe://\""
				: "scheme is not \"spiffe://\"",
			    -EINVAL);
	if (strpbrk(uri, "?#"))
		return fail(out, why, "query or fragment in the ID", -EINVAL);
	td = uri + scheme_len;
	slash = strchr(td, '/');
	if (!slash)
		return fail(out, why, "no path (want /ns/<namespace>/sa/<service-account>)",
			    -EINVAL);
	w = td_why(td, (size_t)(slash - td));
	if (w)
		return fail(out, why, w,
			    (size_t)(slash - td) > SPIFFE_TD_MAX ? -ENAMETOOLONG : -EINVAL);

	p = slash;
	if (strncmp(p, "/ns/", 4) != 0)
		return fail(out, why, "path does not start with /ns/", -EINVAL);
	ns = p + 4;
	slash = strchr(ns, '/');
	if (!slash)
		return fail(out, why, "path has no /sa/ after the namespace", -EINVAL);
	ns_len = (size_t)(slash - ns);
	if (ns_len > SPIFFE_NS_MAX)
		return fail(out, why, "namespace longer than 63 bytes", -ENAMETOOLONG);
	w = dns_label_why(ns, ns_len);
	if (w)
		return fail(out, why, w, -EINVAL);
	if (strncmp(slash, "/sa/", 4) != 0)
		return fail(out, why, "path has no /sa/ after the namespace", -EINVAL);
	sa = slash + 4;
	sa_len = strlen(sa);
	if (memchr(sa, '/', sa_len))
		return fail(out, why, "path has segments after the service account", -EINVAL);
	if (sa_len > SPIFFE_SA_MAX)
		return fail(out, why, "service account longer than 253 bytes", -ENAMETOOLONG);
	w = dns_subdomain_why(sa, sa_len);
	if (w)
		return fail(out, why, w, -EINVAL);

	memset(out, 0, sizeof(*out));
	memcpy(out->trust_domain, td, (size_t)(ns - 4 - td));
	memcpy(out->ns, ns, ns_len);
	memcpy(out->sa, sa, sa_len);
	if (why)
		*why = NULL;
	return 0;
}

int spiffe_id_parse(const char *uri, struct spiffe_id *out)
{
	return spiffe_id_parse_why(uri, out, NULL);
}

int spiffe_id_make(struct spiffe_id *id, const char *trust_domain, const char *ns, const char *sa)
{
	char buf[SPIFFE_ID_STR_MAX];
	int n;

	if (!trust_domain || !ns || !sa)
		return -EINVAL;
	n = snprintf(buf, sizeof(buf), SPIFFE_SCHEME "%s/ns/%s/sa/%s", trust_domain, ns, sa);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= sizeof(buf))
		return -ENAMETOOLONG;
	return spiffe_id_parse(buf, id);
}

int spiffe_id_format(const struct spiffe_id *id, char *buf, size_t n)
{
	struct spiffe_id back;
	int len;

	if (n == 0)
		return -ENOSPC;
	buf[0] = '\0';
	if (memchr(id->trust_domain, 0, sizeof(id->trust_domain)) == NULL ||
	    memchr(id->ns, 0, sizeof(id->ns)) == NULL || memchr(id->sa, 0, sizeof(id->sa)) == NULL)
		return -EINVAL;
	len = snprintf(buf, n, SPIFFE_SCHEME "%s/ns/%s/sa/%s", id->trust_domain, id->ns, id->sa);
	if (len < 0)
		return -EINVAL;
	if ((size_t)len >= n) {
		buf[0] = '\0';
		return -ENOSPC;
	}
	if (spiffe_id_parse(buf, &back) != 0) {
		buf[0] = '\0';
		return -EINVAL;
	}
	return 0;
}

bool spiffe_id_equal(const struct spiffe_id *a, const struct spiffe_id *b)
{
	return strcmp(a->trust_domain, b->trust_domain) == 0 && strcmp(a->ns, b->ns) == 0 &&
	       strcmp(a->sa, b->sa) == 0;
}

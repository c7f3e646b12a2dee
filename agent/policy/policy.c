// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Authorization policy: the written form's checks, its compilation into
 * per-service tables, and decisions (policy.h has the evaluation order).
 */
#include "policy/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity/spiffe.h"

/* ---- the written form ------------------------------------------------- */

static void *grow(void *arr, int n, size_t elem)
{
	/* Double at powers of two, so n additions cost O(n) copies. */
	if (n & (n - 1))
		return arr;
	size_t cap = n ? (size_t)n * 2 : 4;

	return realloc(arr, cap * elem);
}

struct policy_rule *policy_doc_add_rule(struct policy_doc *d)
{
	if (d->n_rules >= POLICY_MAX_RULES)
		return NULL;
	void *p = grow(d->rules, d->n_rules, sizeof(*d->rules));

	if (!p)
		return NULL;
	d->rules = p;
	struct policy_rule *r = &d->rules[d->n_rules++];

	memset(r, 0, sizeof(*r));
	return r;
}

struct policy_default_rule *policy_doc_add_default(struct policy_doc *d)
{
	if (d->n_defaults >= POLICY_MAX_DEFAULTS)
		return NULL;
	void *p = grow(d->defaults, d->n_defaults, sizeof(*d->defaults));

	if (!p)
		return NULL;
	d->defaults = p;
	struct policy_default_rule *r = &d->defaults[d->n_defaults++];

	memset(r, 0, sizeof(*r));
	return r;
}

struct policy_peer *policy_rule_add_from(struct policy_rule *r)
{
	if (r->n_from >= POLICY_MAX_FROM)
		return NULL;
	void *p = grow(r->from, r->n_from, sizeof(*r->from));

	if (!p)
		return NULL;
	r->from = p;
	memset(&r->from[r->n_from], 0, sizeof(*r->from));
	return &r->from[r->n_from++];
}

struct policy_request_match *policy_rule_add_to(struct policy_rule *r)
{
	if (r->n_to >= POLICY_MAX_TO)
		return NULL;
	void *p = grow(r->to, r->n_to, sizeof(*r->to));

	if (!p)
		return NULL;
	r->to = p;
	memset(&r->to[r->n_to], 0, sizeof(*r->to));
	return &r->to[r->n_to++];
}

bool policy_method_valid(const char *method)
{
	size_t n = strlen(method);

	return n >= 1 && n <= POLICY_MAX_METHOD &&
	       strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_") == n;
}

void policy_match_path_kind(struct policy_request_match *m, enum policy_path_kind kind)
{
	for (size_t n = strlen(m->path);
	     kind == POLICY_PATH_PREFIX && n > 1 && m->path[n - 1] == '/';)
		m->path[--n] = '\0';
	m->path_kind = kind;
}

static bool grpc_name_valid(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") == n;
}

int policy_match_grpc(struct policy_request_match *m, const char *service, const char *method)
{
	bool has_method = method && *method;
	int n;

	if (!grpc_name_valid(service) || (has_method && !grpc_name_valid(method)))
		return -EINVAL;
	n = snprintf(m->path, sizeof(m->path), "/%s%s%s", service, has_method ? "/" : "",
		     has_method ? method : "");
	if (n < 0 || (size_t)n >= sizeof(m->path))
		return -EINVAL;
	m->path_kind = has_method ? POLICY_PATH_EXACT : POLICY_PATH_PREFIX;
	return 0;
}

static void rule_free(struct policy_rule *r)
{
	free(r->from);
	free(r->to);
	r->from = NULL;
	r->to = NULL;
	r->n_from = r->n_to = 0;
}

void policy_doc_free(struct policy_doc *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->n_rules; i++)
		rule_free(&d->rules[i]);
	free(d->rules);
	free(d->defaults);
	memset(d, 0, sizeof(*d));
}

const char *policy_default_name(enum policy_default d)
{
	switch (d) {
	case POLICY_DEFAULT_ALLOW:
		return "allow";
	case POLICY_DEFAULT_DENY:
		return "deny";
	case POLICY_DEFAULT_SAME_NAMESPACE:
		return "same-namespace";
	case POLICY_DEFAULT_UNSET:
		break;
	}
	return "unset";
}

static int __attribute__((format(printf, 3, 4)))
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* RFC 1123 label: what Kubernetes allows for namespace and service names. */
static bool is_label(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* RFC 1123 subdomain (dots between labels): a service account or a rule name. */
static bool is_subdomain(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		bool edge = i == 0 || i == n - 1 || s[i - 1] == '.' || s[i + 1] == '.';

		if (alnum)
			continue;
		if ((ch == '-' || ch == '.') && !edge)
			continue;
		return false;
	}
	return true;
}

/* An RFC 9110 token character (methods). */
static bool is_tchar(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int policy_rule_check(const struct policy_rule *r, char *err, size_t errlen)
{
	const char *o = r->origin[0] ? r->origin : "a policy rule";

	if (!is_subdomain(r->name, POLICY_MAX_NAME))
		return fail(err, errlen,
			    "%s: name \"%s\" must be a DNS subdomain (lower-case letters, digits, "
			    "'-', '.'), "
			    "at most %d characters",
			    o, r->name, POLICY_MAX_NAME);
	if (!is_label(r->namespace))
		return fail(err, errlen, "%s: namespace \"%s\" is not a DNS label", o,
			    r->namespace);
	if (r->service[0] && !is_label(r->service))
		return fail(err, errlen, "%s: service \"%s\" is not a DNS label", o, r->service);
	for (int i = 0; i < r->n_ports; i++) {
		if (r->ports[i] == 0)
			return fail(err, errlen, "%s: ports[%d]: 0 is not a port", o, i);
		for (int j = 0; j < i; j++)
			if (r->ports[j] == r->ports[i])
				return fail(err, errlen, "%s: ports[%d]: %u is listed twice", o, i,
					    r->ports[i]);
	}
	if (r->n_from == 0)
		return fail(err, errlen,
			    "%s: from must list 1..%d callers (\"*\" for any authenticated one, "
			    "\"unauthenticated\" for plaintext ones), got none",
			    o, POLICY_MAX_FROM);
	for (int i = 0; i < r->n_from; i++) {
		const struct policy_peer *pe = &r->from[i];

		switch (pe->kind) {
		case POLICY_PEER_AUTHENTICATED:
		case POLICY_PEER_UNAUTHENTICATED:
			break;
		case POLICY_PEER_NAMESPACE:
			if (!is_label(pe->ns))
				return fail(err, errlen,
					    "%s: from[%d]: namespace \"%s\" is not a DNS label", o,
					    i, pe->ns);
			break;
		case POLICY_PEER_SERVICE_ACCOUNT:
			if (!is_label(pe->ns))
				return fail(err, errlen,
					    "%s: from[%d]: service account namespace \"%s\" is not "
					    "a DNS label",
					    o, i, pe->ns);
			if (!is_subdomain(pe->sa, POLICY_MAX_LABEL))
				return fail(
				    err, errlen,
				    "%s: from[%d]: service account \"%s\" is not a DNS name of at "
				    "most %d characters",
				    o, i, pe->sa, POLICY_MAX_LABEL);
			break;
		case POLICY_PEER_ID: {
			struct spiffe_id sid;
			const char *why = "";

			/* The callers' IDs are of this shape (spiffe.h): no other could match. */
			if (spiffe_id_parse_why(pe->id, &sid, &why))
				return fail(err, errlen,
					    "%s: from[%d]: identity \"%.64s\" is not a SPIFFE ID "
					    "spiffe://<trust-domain>/ns/<ns>/sa/<sa>: %s",
					    o, i, pe->id, why);
			break;
		}
		default:
			return fail(err, errlen, "%s: from[%d]: unknown caller kind %d", o, i,
				    pe->kind);
		}
	}
	for (int i = 0; i < r->n_to; i++) {
		const struct policy_request_match *m = &r->to[i];

		if (m->n_methods == 0 && m->path_kind == POLICY_PATH_ANY)
			return fail(err, errlen,
				    "%s: to[%d] names neither methods nor a path: leave to out to "
				    "match every request",
				    o, i);
		for (int j = 0; j < m->n_methods; j++) {
			const char *me = m->methods[j];

			if (!me[0])
				return fail(err, errlen, "%s: to[%d].methods[%d] is empty", o, i,
					    j);
			for (const char *q = me; *q; q++)
				if (!is_tchar(*q))
					return fail(err, errlen,
						    "%s: to[%d].methods[%d]: \"%s\" is not an HTTP "
						    "method token",
						    o, i, j, me);
		}
		if (m->path_kind != POLICY_PATH_ANY) {
			if (m->path[0] != '/')
				return fail(err, errlen,
					    "%s: to[%d]: path \"%.64s\" must start with '/'", o, i,
					    m->path);
			if (strpbrk(m->path, "?# \t"))
				return fail(err, errlen,
					    "%s: to[%d]: path \"%.64s\" has a query, fragment or "
					    "blank: a path match compares the path only",
					    o, i, m->path);
		}
	}
	return 0;
}

int policy_default_check(const struct policy_default_rule *df, char *err, size_t errlen)
{
	if (!is_label(df->namespace))
		return fail(err, errlen, "%s: namespace \"%s\" is not a DNS label", df->origin,
			    df->namespace);
	if (df->service[0] && !is_label(df->service))
		return fail(err, errlen, "%s: service \"%s\" is not a DNS label", df->origin,
			    df->service);
	if (df->def == POLICY_DEFAULT_UNSET)
		return fail(err, errlen, "%s: default must be allow, deny or same-namespace",
			    df->origin);
	return 0;
}

int policy_doc_check(const struct policy_doc *d, char *err, size_t errlen)
{
	int rc;

	for (int i = 0; i < d->n_rules; i++) {
		const struct policy_rule *r = &d->rules[i];

		rc = policy_rule_check(r, err, errlen);
		if (rc)
			return rc;
		/* O(n^2) over a bounded n, once per change: simpler than a table. */
		for (int j = 0; j < i; j++)
			if (!strcmp(d->rules[j].namespace, r->namespace) &&
			    !strcmp(d->rules[j].name, r->name))
				return fail(
				    err, errlen,
				    "%s: a rule named \"%s\" is already in namespace %s (%s)",
				    r->origin, r->name, r->namespace, d->rules[j].origin);
	}
	for (int i = 0; i < d->n_defaults; i++) {
		const struct policy_default_rule *df = &d->defaults[i];

		rc = policy_default_check(df, err, errlen);
		if (rc)
			return rc;
		for (int j = 0; j < i; j++)
			if (!strcmp(d->defaults[j].namespace, df->namespace) &&
			    !strcmp(d->defaults[j].service, df->service))
				return fail(err, errlen, "%s: %s%s%s already has a default (%s)",
					    df->origin, df->namespace, df->service[0] ? "/" : "",
					    df->service, d->defaults[j].origin);
	}
	return 0;
}

/* ---- compiled ---------------------------------------------------------- */

/*
 * The compiled form of a rule, what a decision reads: small and flat, so
 * that a table's rules are a few cache lines in a row (a proxy decides
 * between system calls, with its caches cold) and a comparison of strings
 * is reached only past a length that matches. Strings point into the
 * set's copy of the rule.
 */
struct cpeer {
	uint8_t kind;	       /* POLICY_PEER_NAMESPACE, _SERVICE_ACCOUNT or _ID */
	uint8_t ns_len, sa_len; /* at most POLICY_MAX_LABEL */
	uint16_t id_len;	/* at most POLICY_MAX_ID */
	const char *ns, *sa, *id;
};

struct cstr {
	const char *s;
	size_t len;
};

struct cmatch {
	uint32_t methods;     /* the standard methods named, a bit each (std_methods) */
	uint32_t first_other; /* other methods named: s->cothers[first_other..] */
	uint16_t n_other;
	bool any_method;      /* names no method */
	uint8_t path_kind;    /* enum policy_path_kind */
	uint16_t path_len;    /* at most POLICY_MAX_PATH */
	const char *path;
};

struct crule {
	const struct policy_rule *r; /* the rule as written (its name, for the reason) */
	uint32_t first_port, first_peer, first_match; /* into s->cports, cpeers, cmatches */
	uint8_t n_ports, n_peers, n_match; /* n_peers: those that name a namespace, account or ID */
	bool deny;
	bool any_authenticated, unauthenticated; /* from names "*" / unauthenticated */
};

struct policy_table {
	/* What a decision reads first. */
	const struct crule *rules; /* deny rules first, then allow, each in written order */
	int n_rules, n_deny;
	enum policy_default def; /* resolved: never UNSET */
	bool has_requests;
	const char *reason_default;
	const char *trust_domain; /* the set's */
	const struct policy_set *set;
	char ns[POLICY_MAX_LABEL + 1], name[POLICY_MAX_LABEL + 1]; /* name "": a namespace's */
};

struct policy_set {
	atomic_uint refs;
	uint64_t serial; /* policy_set_serial */
	char *trust_domain;
	struct policy_rule *rules; /* copies of the written rules */
	int n_rules;
	struct policy_table *tables; /* sorted by (ns, name) */
	int n_tables;
	struct policy_table mesh; /* for a service nothing names */
	struct crule *crules;	  /* per written rule */
	struct crule *rule_slots; /* what the tables' rules point into */
	uint16_t *cports;
	struct cpeer *cpeers;
	struct cmatch *cmatches;
	struct cstr *cothers;
	/* The written defaults, kept for policy_set_written. */
	struct policy_default_rule *defaults;
	int n_defaults;
	enum policy_default mesh_default;
};

/*
 * The methods a request form names as a bit each: RFC 9110's and PATCH. A
 * request's method is looked up here once per decision; a rule's other
 * methods are compared as strings.
 */
static const struct cstr std_methods[] = {
    {"GET", 3},	    {"HEAD", 4},    {"POST", 4},  {"PUT", 3},	{"DELETE", 6},
    {"CONNECT", 7}, {"OPTIONS", 7}, {"TRACE", 5}, {"PATCH", 5},
};

static uint32_t method_bit(const char *m, size_t len)
{
	for (size_t i = 0; i < sizeof(std_methods) / sizeof(std_methods[0]); i++)
		if (std_methods[i].len == len && !memcmp(std_methods[i].s, m, len))
			return 1u << i;
	return 0;
}

static const char *default_reason(enum policy_default d)
{
	switch (d) {
	case POLICY_DEFAULT_DENY:
		return "default-deny";
	case POLICY_DEFAULT_SAME_NAMESPACE:
		return "default-same-namespace";
	default:
		return "default-allow";
	}
}

static int table_cmp(const void *a, const void *b)
{
	const struct policy_table *x = a, *y = b;
	int c = strcmp(x->ns, y->ns);

	return c ? c : strcmp(x->name, y->name);
}

static int table_key_cmp(const char *ns, const char *name, const struct policy_table *t)
{
	int c = strcmp(ns, t->ns);

	return c ? c : strcmp(name, t->name);
}

static const struct policy_table *table_find(const struct policy_set *s, const char *ns,
					     const char *name)
{
	size_t lo = 0, hi = (size_t)s->n_tables;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = table_key_cmp(ns, name, &s->tables[mid]);

		if (!c)
			return &s->tables[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool rule_applies(const struct policy_rule *r, const struct policy_table *t)
{
	if (strcmp(r->namespace, t->ns))
		return false;
	return !r->service[0] || !strcmp(r->service, t->name);
}

static enum policy_default find_default(const struct policy_doc *d, const char *ns,
					const char *name)
{
	for (int i = 0; i < d->n_defaults; i++)
		if (!strcmp(d->defaults[i].namespace, ns) && !strcmp(d->defaults[i].service, name))
			return d->defaults[i].def;
	return POLICY_DEFAULT_UNSET;
}

static int copy_rule(struct policy_rule *dst, const struct policy_rule *src)
{
	*dst = *src;
	dst->from = NULL;
	dst->to = NULL;
	dst->from = malloc((size_t)src->n_from * sizeof(*src->from));
	if (!dst->from)
		return -ENOMEM;
	memcpy(dst->from, src->from, (size_t)src->n_from * sizeof(*src->from));
	if (src->n_to) {
		dst->to = malloc((size_t)src->n_to * sizeof(*src->to));
		if (!dst->to)
			return -ENOMEM;
		memcpy(dst->to, src->to, (size_t)src->n_to * sizeof(*src->to));
	}
	return 0;
}

static void set_free(struct policy_set *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_rules; i++)
		rule_free(&s->rules[i]);
	free(s->rules);
	free(s->tables);
	free(s->rule_slots);
	free(s->crules);
	free(s->cports);
	free(s->cpeers);
	free(s->cmatches);
	free(s->cothers);
	free(s->defaults);
	free(s->trust_domain);
	free(s);
}

/* Add the table of (ns, name) unless there is one. O(tables) per call, once per change. */
static void table_add(struct policy_set *s, const char *ns, const char *name)
{
	for (int i = 0; i < s->n_tables; i++)
		if (!strcmp(s->tables[i].ns, ns) && !strcmp(s->tables[i].name, name))
			return;
	struct policy_table *t = &s->tables[s->n_tables++];

	snprintf(t->ns, sizeof(t->ns), "%s", ns);
	snprintf(t->name, sizeof(t->name), "%s", name);
}

/*
 * The compiled form of s's rules (struct crule): their ports, named
 * callers and request forms in arrays of the set, in rule order.
 */
static int compile_rules(struct policy_set *s)
{
	size_t n_ports = 0, n_peers = 0, n_match = 0, n_other = 0;

	for (int i = 0; i < s->n_rules; i++) {
		const struct policy_rule *r = &s->rules[i];

		n_ports += (size_t)r->n_ports;
		n_peers += (size_t)r->n_from;
		n_match += (size_t)r->n_to;
		for (int k = 0; k < r->n_to; k++)
			n_other += (size_t)r->to[k].n_methods;
	}
	s->crules = calloc((size_t)s->n_rules + 1, sizeof(*s->crules));
	s->cports = calloc(n_ports + 1, sizeof(*s->cports));
	s->cpeers = calloc(n_peers + 1, sizeof(*s->cpeers));
	s->cmatches = calloc(n_match + 1, sizeof(*s->cmatches));
	s->cothers = calloc(n_other + 1, sizeof(*s->cothers));
	if (!s->crules || !s->cports || !s->cpeers || !s->cmatches || !s->cothers)
		return -ENOMEM;
	n_ports = n_peers = n_match = n_other = 0;
	for (int i = 0; i < s->n_rules; i++) {
		const struct policy_rule *r = &s->rules[i];
		struct crule *cr = &s->crules[i];

		cr->r = r;
		cr->deny = r->action == POLICY_DENY;
		cr->first_port = (uint32_t)n_ports;
		cr->n_ports = (uint8_t)r->n_ports;
		for (int k = 0; k < r->n_ports; k++)
			s->cports[n_ports++] = r->ports[k];
		cr->first_peer = (uint32_t)n_peers;
		for (int k = 0; k < r->n_from; k++) {
			const struct policy_peer *pe = &r->from[k];
			struct cpeer *cp = &s->cpeers[n_peers];

			switch (pe->kind) {
			case POLICY_PEER_AUTHENTICATED:
				cr->any_authenticated = true;
				continue;
			case POLICY_PEER_UNAUTHENTICATED:
				cr->unauthenticated = true;
				continue;
			case POLICY_PEER_NAMESPACE:
			case POLICY_PEER_SERVICE_ACCOUNT:
			case POLICY_PEER_ID:
				break;
			}
			cp->kind = (uint8_t)pe->kind;
			cp->ns = pe->ns;
			cp->ns_len = (uint8_t)strnlen(pe->ns, POLICY_MAX_LABEL);
			cp->sa = pe->sa;
			cp->sa_len = (uint8_t)strnlen(pe->sa, POLICY_MAX_LABEL);
			cp->id = pe->id;
			cp->id_len = (uint16_t)strnlen(pe->id, POLICY_MAX_ID);
			n_peers++;
			cr->n_peers++;
		}
		cr->first_match = (uint32_t)n_match;
		cr->n_match = (uint8_t)r->n_to;
		for (int k = 0; k < r->n_to; k++) {
			const struct policy_request_match *m = &r->to[k];
			struct cmatch *cm = &s->cmatches[n_match++];

			cm->any_method = m->n_methods == 0;
			cm->first_other = (uint32_t)n_other;
			for (int j = 0; j < m->n_methods; j++) {
				size_t len = strnlen(m->methods[j], POLICY_MAX_METHOD);
				uint32_t bit = method_bit(m->methods[j], len);

				if (bit) {
					cm->methods |= bit;
					continue;
				}
				s->cothers[n_other++] = (struct cstr){m->methods[j], len};
				cm->n_other++;
			}
			cm->path_kind = (uint8_t)m->path_kind;
			cm->path = m->path;
			cm->path_len = (uint16_t)strnlen(m->path, POLICY_MAX_PATH);
		}
	}
	return 0;
}

/* The last serial given (policy_set_serial). */
static _Atomic uint64_t set_serials;

struct policy_set *policy_compile(const struct policy_doc *d, const char *trust_domain, char *err,
				  size_t errlen)
{
	struct policy_set *s;
	enum policy_default mesh = d->mesh_default ? d->mesh_default : POLICY_DEFAULT_ALLOW;
	int slots = 0;

	if (policy_doc_check(d, err, errlen))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		goto oom;
	atomic_init(&s->refs, 1);
	s->serial = atomic_fetch_add_explicit(&set_serials, 1, memory_order_relaxed) + 1;
	s->trust_domain = strdup(trust_domain ? trust_domain : "");
	s->rules = calloc((size_t)d->n_rules + 1, sizeof(*s->rules));
	s->defaults = calloc((size_t)d->n_defaults + 1, sizeof(*s->defaults));
	if (!s->defaults)
		goto oom;
	if (d->n_defaults) /* memcpy's pointers must be valid even for 0 bytes */
		memcpy(s->defaults, d->defaults, (size_t)d->n_defaults * sizeof(*d->defaults));
	s->n_defaults = d->n_defaults;
	s->mesh_default = d->mesh_default;
	/* At most a namespace table and a service table per rule and per default. */
	s->tables =
	    calloc(2 * ((size_t)d->n_rules + (size_t)d->n_defaults) + 1, sizeof(*s->tables));
	if (!s->trust_domain || !s->rules || !s->tables)
		goto oom;
	for (int i = 0; i < d->n_rules; i++) {
		s->n_rules = i + 1; /* set_free frees a half copy too */
		if (copy_rule(&s->rules[i], &d->rules[i]))
			goto oom;
	}

	/*
	 * Tables: every service a rule or a default names, and every namespace
	 * one names. A service's table takes its namespace's rules too, so that
	 * a decision reads one table.
	 */
	for (int i = 0; i < s->n_rules; i++) {
		table_add(s, s->rules[i].namespace, "");
		if (s->rules[i].service[0])
			table_add(s, s->rules[i].namespace, s->rules[i].service);
	}
	for (int i = 0; i < d->n_defaults; i++) {
		table_add(s, d->defaults[i].namespace, "");
		if (d->defaults[i].service[0])
			table_add(s, d->defaults[i].namespace, d->defaults[i].service);
	}
	if (compile_rules(s))
		goto oom;
	for (int i = 0; i < s->n_tables; i++)
		for (int k = 0; k < s->n_rules; k++)
			if (rule_applies(&s->rules[k], &s->tables[i]))
				slots++;
	s->rule_slots = calloc((size_t)slots + 1, sizeof(*s->rule_slots));
	if (!s->rule_slots)
		goto oom;

	slots = 0;
	for (int i = 0; i < s->n_tables; i++) {
		struct policy_table *t = &s->tables[i];
		enum policy_default def = POLICY_DEFAULT_UNSET;

		struct crule *slot = &s->rule_slots[slots];

		t->rules = slot;
		for (int pass = 0; pass < 2; pass++) /* 0: deny rules, 1: allow rules */
			for (int k = 0; k < s->n_rules; k++) {
				const struct policy_rule *r = &s->rules[k];

				if (!rule_applies(r, t) ||
				    (r->action == POLICY_DENY) != (pass == 0))
					continue;
				slot[t->n_rules++] = s->crules[k];
				t->n_deny += pass == 0;
				t->has_requests |= r->n_to > 0;
			}
		slots += t->n_rules;
		if (t->name[0])
			def = find_default(d, t->ns, t->name);
		if (!def)
			def = find_default(d, t->ns, "");
		t->def = def ? def : mesh;
		t->reason_default = default_reason(t->def);
		t->trust_domain = s->trust_domain;
		t->set = s;
	}
	qsort(s->tables, (size_t)s->n_tables, sizeof(*s->tables), table_cmp);
	s->mesh.def = mesh;
	s->mesh.reason_default = default_reason(mesh);
	s->mesh.trust_domain = s->trust_domain;
	s->mesh.set = s;
	return s;
oom:
	set_free(s);
	fail(err, errlen, "policy: out of memory compiling %d rules", d->n_rules);
	return NULL;
}

struct policy_set *policy_set_get(struct policy_set *s)
{
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void policy_set_put(struct policy_set *s)
{
	if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		set_free(s);
}

int policy_set_written(const struct policy_set *s, struct policy_doc *out)
{
	if (s->mesh_default)
		out->mesh_default = s->mesh_default;
	for (int i = 0; i < s->n_rules; i++) {
		struct policy_rule *r = policy_doc_add_rule(out);

		if (!r || copy_rule(r, &s->rules[i]))
			return r ? -ENOMEM : -E2BIG;
	}
	for (int i = 0; i < s->n_defaults; i++) {
		struct policy_default_rule *df = policy_doc_add_default(out);

		if (!df)
			return -E2BIG;
		*df = s->defaults[i];
	}
	return 0;
}

int policy_set_rules(const struct policy_set *s)
{
	return s ? s->n_rules : 0;
}

uint64_t policy_set_serial(const struct policy_set *s)
{
	return s ? s->serial : 0;
}

const char *policy_set_trust_domain(const struct policy_set *s)
{
	return s ? s->trust_domain : "";
}

const struct policy_table *policy_lookup(const struct policy_set *s, const char *ns,
					 const char *name)
{
	const struct policy_table *t = table_find(s, ns, name);

	if (!t)
		t = table_find(s, ns, "");
	return t ? t : &s->mesh;
}

const struct policy_table *policy_lookup_cached(struct policy_table_cache *c,
						const struct policy_set *s, uint32_t id,
						const char *ns, const char *name)
{
	uint32_t h = (id * 0x9e3779b1u) >> 26; /* the top 6 bits: POLICY_TABLE_CACHE */
	const struct policy_table *t;

	_Static_assert(POLICY_TABLE_CACHE == 64, "h takes 6 bits");
	if (c && id && c->e[h].serial == s->serial && c->e[h].id == id)
		return c->e[h].t;
	t = policy_lookup(s, ns, name);
	if (c && id) {
		c->e[h].serial = s->serial;
		c->e[h].id = id;
		c->e[h].t = t;
	}
	return t;
}

bool policy_table_has_requests(const struct policy_table *t)
{
	return t->has_requests;
}

/* ---- decisions ---------------------------------------------------------- */

/*
 * What a call without a request (rq NULL) is: a connection, or (for the
 * destination node of a tunneled call) whatever requests it may carry.
 */
enum unseen_requests {
	UNSEEN_ARE_CONNECTION, /* opaque TCP: the safe direction (policy.h) */
	UNSEEN_MAY_BE_ANY,     /* any request: allow rules may, deny rules may not, match */
};

/* The caller and the request as a decision compares them: lengths known. */
struct ccall {
	enum unseen_requests unseen;
	const struct policy_caller *c;
	bool same_td; /* authenticated, of the set's trust domain */
	size_t id_len, ns_len, sa_len;
	const struct policy_request *rq;
	uint32_t method; /* its bit in std_methods, 0: another method */
};

static bool peer_matches(const struct cpeer *pe, const struct ccall *k)
{
	const struct policy_caller *c = k->c;

	switch (pe->kind) {
	case POLICY_PEER_NAMESPACE:
		return k->same_td && k->ns_len == pe->ns_len && !memcmp(c->ns, pe->ns, pe->ns_len);
	case POLICY_PEER_SERVICE_ACCOUNT:
		return k->same_td && k->ns_len == pe->ns_len && k->sa_len == pe->sa_len &&
		       !memcmp(c->ns, pe->ns, pe->ns_len) && !memcmp(c->sa, pe->sa, pe->sa_len);
	case POLICY_PEER_ID:
		return c->authenticated && k->id_len == pe->id_len &&
		       !memcmp(c->id, pe->id, pe->id_len);
	}
	return false;
}

static bool path_matches(const struct cmatch *m, const struct policy_request *rq)
{
	size_t n = m->path_len;

	switch (m->path_kind) {
	case POLICY_PATH_ANY:
		return true;
	case POLICY_PATH_EXACT:
		return rq->path_len == n && !memcmp(rq->path, m->path, n);
	case POLICY_PATH_PREFIX:
		if (n == 1) /* "/": every path */
			return rq->path_len >= 1 && rq->path[0] == '/';
		return rq->path_len >= n && !memcmp(rq->path, m->path, n) &&
		       (rq->path_len == n || rq->path[n] == '/');
	}
	return false;
}

static bool request_matches(const struct policy_set *s, const struct cmatch *m,
			    const struct ccall *k)
{
	if (!m->any_method && !(m->methods & k->method)) {
		bool any = false;

		for (uint32_t i = 0; i < m->n_other && !any; i++) {
			const struct cstr *o = &s->cothers[m->first_other + i];

			any = o->len == k->rq->method_len && !memcmp(o->s, k->rq->method, o->len);
		}
		if (!any)
			return false;
	}
	return path_matches(m, k->rq);
}

static bool rule_matches(const struct policy_set *s, const struct crule *r, uint16_t port,
			 const struct ccall *k)
{
	bool hit = r->n_ports == 0;

	for (uint32_t i = 0; i < r->n_ports && !hit; i++)
		hit = s->cports[r->first_port + i] == port;
	if (!hit)
		return false;
	hit = k->c->authenticated ? r->any_authenticated : r->unauthenticated;
	for (uint32_t i = 0; i < r->n_peers && !hit; i++)
		hit = peer_matches(&s->cpeers[r->first_peer + i], k);
	if (!hit)
		return false;
	if (r->n_match == 0)
		return true;
	if (!k->rq)
		return k->unseen == UNSEEN_ARE_CONNECTION ? r->deny : !r->deny;
	for (uint32_t i = 0; i < r->n_match; i++)
		if (request_matches(s, &s->cmatches[r->first_match + i], k))
			return true;
	return false;
}

static void decide(const struct policy_table *t, const char *dest_ns, uint16_t port,
		   const struct policy_caller *caller, const struct policy_request *rq,
		   enum unseen_requests unseen, struct policy_decision *out)
{
	struct ccall k = {.c = caller, .rq = rq, .unseen = unseen};

	if (t->n_rules) {
		/* A part the caller lacks (NULL) has length 0: no rule's matches it. */
		if (caller->authenticated) {
			k.same_td =
			    caller->trust_domain && !strcmp(caller->trust_domain, t->trust_domain);
			k.id_len = caller->id ? strlen(caller->id) : 0;
			k.ns_len = caller->ns ? strlen(caller->ns) : 0;
			k.sa_len = caller->sa ? strlen(caller->sa) : 0;
		}
		if (rq && t->has_requests)
			k.method = method_bit(rq->method, rq->method_len);
	}
	for (int i = 0; i < t->n_rules; i++) {
		const struct crule *r = &t->rules[i];

		if (rule_matches(t->set, r, port, &k)) {
			out->allow = !r->deny;
			out->rule = r->r;
			out->def = POLICY_DEFAULT_UNSET;
			out->reason = r->r->name;
			return;
		}
	}
	out->rule = NULL;
	out->def = t->def;
	out->reason = t->reason_default;
	switch (t->def) {
	case POLICY_DEFAULT_DENY:
		out->allow = false;
		break;
	case POLICY_DEFAULT_SAME_NAMESPACE:
		out->allow = caller->authenticated &&
			     !strcmp(caller->trust_domain, t->trust_domain) &&
			     !strcmp(caller->ns, dest_ns);
		break;
	default:
		out->allow = true;
		break;
	}
}

void policy_decide(const struct policy_table *t, const char *dest_ns, uint16_t port,
		   const struct policy_caller *caller, const struct policy_request *rq,
		   struct policy_decision *out)
{
	decide(t, dest_ns, port, caller, rq, UNSEEN_ARE_CONNECTION, out);
}

void policy_decide_caller(const struct policy_table *t, const char *dest_ns, uint16_t port,
			  const struct policy_caller *caller, struct policy_decision *out)
{
	decide(t, dest_ns, port, caller, NULL, UNSEEN_MAY_BE_ANY, out);
}

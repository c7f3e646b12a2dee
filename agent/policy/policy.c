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

struct policy_table {
	char ns[POLICY_MAX_LABEL + 1], name[POLICY_MAX_LABEL + 1]; /* name "": a namespace's */
	const struct policy_rule **rules; /* deny rules first, then allow, each in written order */
	int n_rules, n_deny;
	enum policy_default def; /* resolved: never UNSET */
	const char *reason_default;
	bool has_requests;
	const char *trust_domain; /* the set's */
};

struct policy_set {
	atomic_uint refs;
	uint64_t serial; /* policy_set_serial */
	char *trust_domain;
	struct policy_rule *rules; /* copies of the written rules */
	int n_rules;
	struct policy_table *tables; /* sorted by (ns, name) */
	int n_tables;
	struct policy_table mesh;	       /* for a service nothing names */
	const struct policy_rule **rule_slots; /* what the tables' rules point into */
	/* The written defaults, kept for policy_set_written. */
	struct policy_default_rule *defaults;
	int n_defaults;
	enum policy_default mesh_default;
};

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

static const struct policy_table *table_find(const struct policy_set *s, const char *ns,
					     const char *name)
{
	struct policy_table key;

	if (s->n_tables == 0 || strlen(ns) > POLICY_MAX_LABEL || strlen(name) > POLICY_MAX_LABEL)
		return NULL;
	strcpy(key.ns, ns);
	strcpy(key.name, name);
	return bsearch(&key, s->tables, (size_t)s->n_tables, sizeof(*s->tables), table_cmp);
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

		t->rules = &s->rule_slots[slots];
		for (int pass = 0; pass < 2; pass++) /* 0: deny rules, 1: allow rules */
			for (int k = 0; k < s->n_rules; k++) {
				const struct policy_rule *r = &s->rules[k];

				if (!rule_applies(r, t) ||
				    (r->action == POLICY_DENY) != (pass == 0))
					continue;
				t->rules[t->n_rules++] = r;
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
	}
	qsort(s->tables, (size_t)s->n_tables, sizeof(*s->tables), table_cmp);
	s->mesh.def = mesh;
	s->mesh.reason_default = default_reason(mesh);
	s->mesh.trust_domain = s->trust_domain;
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

bool policy_table_has_requests(const struct policy_table *t)
{
	return t->has_requests;
}

/* ---- decisions ---------------------------------------------------------- */

static bool peer_matches(const struct policy_peer *pe, const struct policy_caller *c,
			 const char *trust_domain)
{
	switch (pe->kind) {
	case POLICY_PEER_AUTHENTICATED:
		return c->authenticated;
	case POLICY_PEER_UNAUTHENTICATED:
		return !c->authenticated;
	case POLICY_PEER_NAMESPACE:
		return c->authenticated && !strcmp(c->trust_domain, trust_domain) &&
		       !strcmp(c->ns, pe->ns);
	case POLICY_PEER_SERVICE_ACCOUNT:
		return c->authenticated && !strcmp(c->trust_domain, trust_domain) &&
		       !strcmp(c->ns, pe->ns) && !strcmp(c->sa, pe->sa);
	case POLICY_PEER_ID:
		return c->authenticated && !strcmp(c->id, pe->id);
	}
	return false;
}

static bool path_matches(const struct policy_request_match *m, const struct policy_request *rq)
{
	size_t n = strlen(m->path);

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

static bool request_matches(const struct policy_request_match *m, const struct policy_request *rq)
{
	if (m->n_methods) {
		bool any = false;

		for (int i = 0; i < m->n_methods && !any; i++)
			any = strlen(m->methods[i]) == rq->method_len &&
			      !memcmp(m->methods[i], rq->method, rq->method_len);
		if (!any)
			return false;
	}
	return path_matches(m, rq);
}

/*
 * What a call without a request (rq NULL) is: a connection, or (for the
 * destination node of a tunneled call) whatever requests it may carry.
 */
enum unseen_requests {
	UNSEEN_ARE_CONNECTION, /* opaque TCP: the safe direction (policy.h) */
	UNSEEN_MAY_BE_ANY,     /* any request: allow rules may, deny rules may not, match */
};

static bool rule_matches(const struct policy_rule *r, uint16_t port, const struct policy_caller *c,
			 const struct policy_request *rq, enum unseen_requests unseen,
			 const char *trust_domain)
{
	bool hit = r->n_ports == 0;

	for (int i = 0; i < r->n_ports && !hit; i++)
		hit = r->ports[i] == port;
	if (!hit)
		return false;
	hit = false;
	for (int i = 0; i < r->n_from && !hit; i++)
		hit = peer_matches(&r->from[i], c, trust_domain);
	if (!hit)
		return false;
	if (r->n_to == 0)
		return true;
	if (!rq)
		return unseen == UNSEEN_ARE_CONNECTION ? r->action == POLICY_DENY
						       : r->action == POLICY_ALLOW;
	for (int i = 0; i < r->n_to; i++)
		if (request_matches(&r->to[i], rq))
			return true;
	return false;
}

static void decide(const struct policy_table *t, const char *dest_ns, uint16_t port,
		   const struct policy_caller *caller, const struct policy_request *rq,
		   enum unseen_requests unseen, struct policy_decision *out)
{
	for (int i = 0; i < t->n_rules; i++) {
		const struct policy_rule *r = t->rules[i];

		if (rule_matches(r, port, caller, rq, unseen, t->trust_domain)) {
			out->allow = r->action == POLICY_ALLOW;
			out->rule = r;
			out->def = POLICY_DEFAULT_UNSET;
			out->reason = r->name;
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

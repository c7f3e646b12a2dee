// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The mtls: section (docs/mtls.md, docs/config.md "mtls"): the encrypted
 * hop between nodes, its mode, this node's name and the static node and
 * workload tables (the certificates are the identity: section's); and the
 * strings an endpoint's node and identity keep in its service.
 */
#include "config/config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"

void config_mtls_defaults(struct config_mtls *m)
{
	memset(m, 0, sizeof(*m));
	m->mode = CONFIG_MTLS_OFF;
	m->port = CONFIG_DEFAULT_MTLS_PORT;
	m->ktls = true;
	m->handshake_timeout_ms = CONFIG_DEFAULT_MTLS_HANDSHAKE_TIMEOUT_MS;
	m->max_handshakes = CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES;
	m->max_handshakes_per_source = CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES_PER_SOURCE;
}

/* A DNS label (RFC 1123) of n bytes at s: [a-z0-9-], 1..63, no '-' at either end. */
static bool dns_label(const char *s, size_t n)
{
	if (n < 1 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* A DNS subdomain (RFC 1123): labels joined by '.', 1..253 bytes. */
static bool dns_subdomain(const char *s, size_t n)
{
	size_t start = 0;

	if (n < 1 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (!dns_label(s + start, i - start))
			return false;
		start = i + 1;
	}
	return true;
}

bool config_identity_valid(const char *id)
{
	const char *slash = strchr(id, '/');

	return slash && dns_label(id, (size_t)(slash - id)) &&
	       dns_subdomain(slash + 1, strlen(slash + 1));
}

static int node_name_cmp(const void *key, const void *entry)
{
	return strcmp(key, ((const struct config_mtls_node *)entry)->name);
}

const struct config_mtls_node *config_mtls_node(const struct config *cfg, const char *name)
{
	const struct config_nodes *learned = cfg->nodes_learned;

	if (!name)
		return NULL;
	for (int i = 0; i < cfg->mtls.n_nodes; i++)
		if (!strcmp(cfg->mtls.nodes[i].name, name))
			return &cfg->mtls.nodes[i];
	/* A cluster's nodes can be thousands: sorted, so a binary search per call. */
	if (!learned || !learned->n)
		return NULL;
	return bsearch(name, learned->nodes, (size_t)learned->n, sizeof(learned->nodes[0]),
		       node_name_cmp);
}

struct config_nodes *config_nodes_new(int n)
{
	struct config_nodes *set =
	    calloc(1, sizeof(*set) + (size_t)(n > 0 ? n : 0) * sizeof(set->nodes[0]));

	if (!set)
		return NULL;
	atomic_init(&set->refs, 1);
	set->n = n;
	return set;
}

struct config_nodes *config_nodes_get(struct config_nodes *set)
{
	if (set)
		atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
	return set;
}

void config_nodes_put(struct config_nodes *set)
{
	/* acq_rel: the freeing thread sees every other holder's last read. */
	if (set && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
		free(set);
}

const char *config_svc_strings_add(struct config_service *svc, const char *s)
{
	size_t n = strlen(s) + 1;
	char *old = svc->strings, *grown = malloc(svc->strings_len + n);
	char *at;

	if (!grown)
		return NULL;
	if (svc->strings_len)
		memcpy(grown, old, svc->strings_len);
	/* Every endpoint's pointer into the old table moves with it. */
	for (int i = 0; i < svc->n_endpoints; i++) {
		struct config_endpoint *ep = &svc->endpoints[i];

		if (ep->zone)
			ep->zone = grown + (ep->zone - old);
		if (ep->node)
			ep->node = grown + (ep->node - old);
		if (ep->identity)
			ep->identity = grown + (ep->identity - old);
	}
	free(old);
	svc->strings = grown;
	at = grown + svc->strings_len;
	memcpy(at, s, n);
	svc->strings_len += n;
	return at;
}

static int scope_cmp(const void *a, const void *b)
{
	const struct config_mtls_scope *x = a, *y = b;
	int c = strcmp(x->namespace, y->namespace);

	return c ? c : strcmp(x->name, y->name);
}

static const struct config_mtls_scope *scope_find(const struct config_mtls_scope *v, int n,
						  const char *ns, const char *name)
{
	struct config_mtls_scope key;

	if (!n || strlen(ns) > CONFIG_MAX_NAME || strlen(name) > CONFIG_MAX_NAME)
		return NULL;
	strcpy(key.namespace, ns);
	strcpy(key.name, name);
	key.mode = CONFIG_MTLS_OFF; /* not compared; set for the analysers */
	return bsearch(&key, v, (size_t)n, sizeof(*v), scope_cmp);
}

enum config_mtls_mode config_mtls_mode_for(const struct config_mtls *m, const char *ns,
					   const char *name, uint8_t annotated)
{
	const struct config_mtls_scope *s = scope_find(m->services, m->n_services, ns, name);
	enum config_mtls_mode mode = m->mode;

	if (!s)
		s = scope_find(m->namespaces, m->n_namespaces, ns, "");
	if (s)
		mode = s->mode;
	/* An annotation is the service owner's: it may ask for more, never less. */
	if (annotated && annotated - 1 > (int)mode && annotated - 1 <= CONFIG_MTLS_STRICT)
		mode = (enum config_mtls_mode)(annotated - 1);
	return mode;
}

/* "off", "permissive" or "strict" into *out. */
static int parse_a_mode(struct cfg_parser *p, enum config_mtls_mode *out)
{
	static const struct cp_word modes[] = {{"off", CONFIG_MTLS_OFF},
					       {"permissive", CONFIG_MTLS_PERMISSIVE},
					       {"strict", CONFIG_MTLS_STRICT}};
	int v, err = cp_word(p, modes, ARRAY_SIZE(modes), &v);

	if (!err)
		*out = (enum config_mtls_mode)v;
	return err;
}

static int parse_mode(struct cfg_parser *p, void *obj)
{
	struct config_mtls *m = obj;

	return parse_a_mode(p, &m->mode);
}

/* A node name (DNS subdomain) into out. */
static int parse_a_node_name(struct cfg_parser *p, char *out, size_t size)
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a node name", out, size);

	if (err)
		return err;
	if (!dns_subdomain(out, strlen(out)))
		return cp_fail(p, cp_line(p),
			       "must be a node name (lower-case letters, digits, '-' and '.'), "
			       "got \"%s\"",
			       cp_echo(out, strlen(out), buf));
	return 0;
}

static int parse_self_name(struct cfg_parser *p, void *obj)
{
	struct config_mtls *m = obj;

	return parse_a_node_name(p, m->node_name, sizeof(m->node_name));
}

/* An identity "<ns>/<sa>" into out (CONFIG_MAX_IDENTITY bytes). */
static int parse_an_identity(struct cfg_parser *p, char *out)
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err =
	    cp_string(p, "an identity <namespace>/<service account>", out, CONFIG_MAX_IDENTITY);

	if (err)
		return err;
	if (!config_identity_valid(out))
		return cp_fail(p, cp_line(p),
			       "must be <namespace>/<service account> (a DNS label, '/', a DNS "
			       "subdomain), got \"%s\"",
			       cp_echo(out, strlen(out), buf));
	return 0;
}

/* ---- mtls.nodes[] ---- */

static int parse_node_entry_name(struct cfg_parser *p, void *obj)
{
	struct config_mtls_node *n = obj;

	return parse_a_node_name(p, n->name, sizeof(n->name));
}

static int parse_node_entry_address(struct cfg_parser *p, void *obj)
{
	struct config_mtls_node *n = obj;

	return cp_addr(p, FIELD_IP, &n->addr);
}

static const struct field node_entry_fields[] = {
    {"name", FIELD_FUNC, .parse = parse_node_entry_name, .required = true},
    {"address", FIELD_FUNC, .parse = parse_node_entry_address, .required = true},
};

static int parse_node_entry(struct cfg_parser *p, void *obj, int i)
{
	struct config_mtls *m = obj;
	struct config_mtls_node *n = &m->nodes[i];
	struct map_seen seen;
	int line = cp_line(p), err;

	memset(n, 0, sizeof(*n));
	err = cp_map(p, node_entry_fields, ARRAY_SIZE(node_entry_fields), n, &seen);
	if (err)
		return err;
	for (int k = 0; k < i; k++)
		if (!strcmp(m->nodes[k].name, n->name))
			return cp_fail(p, line, "node \"%s\" is listed twice", n->name);
	m->n_nodes = i + 1;
	return 0;
}

static const struct seq_spec nodes_seq = {parse_node_entry, CONFIG_MAX_MTLS_NODES, "nodes"};

/* ---- mtls.workloads[] ---- */

static int parse_workload_address(struct cfg_parser *p, void *obj)
{
	struct config_mtls_workload *w = obj;

	return cp_addr(p, FIELD_IP, &w->addr);
}

static int parse_workload_identity(struct cfg_parser *p, void *obj)
{
	struct config_mtls_workload *w = obj;

	return parse_an_identity(p, w->identity);
}

static const struct field workload_fields[] = {
    {"address", FIELD_FUNC, .parse = parse_workload_address, .required = true},
    {"identity", FIELD_FUNC, .parse = parse_workload_identity, .required = true},
};

static int parse_workload(struct cfg_parser *p, void *obj, int i)
{
	struct config_mtls *m = obj;
	struct config_mtls_workload *w = &m->workloads[i];
	struct map_seen seen;
	int line = cp_line(p), err;
	char text[ADDR_STR_MAX];

	memset(w, 0, sizeof(*w));
	err = cp_map(p, workload_fields, ARRAY_SIZE(workload_fields), w, &seen);
	if (err)
		return err;
	for (int k = 0; k < i; k++)
		if (addr_equal(&m->workloads[k].addr, &w->addr))
			return cp_fail(p, line, "workload address %s is listed twice",
				       addr_ntop(&w->addr, text, sizeof(text)));
	m->n_workloads = i + 1;
	return 0;
}

static const struct seq_spec workloads_seq = {parse_workload, CONFIG_MAX_MTLS_WORKLOADS,
					      "workloads"};

/* ---- mtls.namespaces[] and mtls.services[] ---- */

/* A namespace or service name (a DNS label) into out (CONFIG_MAX_NAME + 1 bytes). */
static int parse_a_label(struct cfg_parser *p, const char *what, char *out)
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, what, out, CONFIG_MAX_NAME + 1);

	if (err)
		return err;
	if (!dns_label(out, strlen(out)))
		return cp_fail(p, cp_line(p),
			       "must be %s (a DNS label: lower-case letters, digits and '-'), "
			       "got \"%s\"",
			       what, cp_echo(out, strlen(out), buf));
	return 0;
}

static int parse_scope_namespace(struct cfg_parser *p, void *obj)
{
	struct config_mtls_scope *s = obj;

	return parse_a_label(p, "a namespace", s->namespace);
}

static int parse_scope_name(struct cfg_parser *p, void *obj)
{
	struct config_mtls_scope *s = obj;

	return parse_a_label(p, "a service name", s->name);
}

static int parse_scope_mode(struct cfg_parser *p, void *obj)
{
	struct config_mtls_scope *s = obj;

	return parse_a_mode(p, &s->mode);
}

/* namespaces[]: {name, mode}; the namespace's name is the entry's name. */
static const struct field ns_scope_fields[] = {
    {"name", FIELD_FUNC, .parse = parse_scope_namespace, .required = true},
    {"mode", FIELD_FUNC, .parse = parse_scope_mode, .required = true},
};

static const struct field svc_scope_fields[] = {
    {"namespace", FIELD_FUNC, .parse = parse_scope_namespace, .required = true},
    {"name", FIELD_FUNC, .parse = parse_scope_name, .required = true},
    {"mode", FIELD_FUNC, .parse = parse_scope_mode, .required = true},
};

static int parse_scope(struct cfg_parser *p, struct config_mtls_scope *v, int i, bool svc)
{
	struct config_mtls_scope *s = &v[i];
	struct map_seen seen;
	int line = cp_line(p), err;

	memset(s, 0, sizeof(*s));
	err = svc ? cp_map(p, svc_scope_fields, ARRAY_SIZE(svc_scope_fields), s, &seen)
		  : cp_map(p, ns_scope_fields, ARRAY_SIZE(ns_scope_fields), s, &seen);
	if (err)
		return err;
	for (int k = 0; k < i; k++)
		if (!scope_cmp(&v[k], s))
			return svc ? cp_fail(p, line, "service %s/%s is listed twice", s->namespace,
					     s->name)
				   : cp_fail(p, line, "namespace \"%s\" is listed twice",
					     s->namespace);
	return 0;
}

static int parse_ns_scope(struct cfg_parser *p, void *obj, int i)
{
	struct config_mtls *m = obj;
	int err = parse_scope(p, m->namespaces, i, false);

	if (!err)
		m->n_namespaces = i + 1;
	return err;
}

static int parse_svc_scope(struct cfg_parser *p, void *obj, int i)
{
	struct config_mtls *m = obj;
	int err = parse_scope(p, m->services, i, true);

	if (!err)
		m->n_services = i + 1;
	return err;
}

static const struct seq_spec ns_scopes_seq = {parse_ns_scope, CONFIG_MAX_MTLS_NAMESPACES,
					      "namespaces"};
static const struct seq_spec svc_scopes_seq = {parse_svc_scope, CONFIG_MAX_MTLS_SERVICES,
					       "services"};

/* ---- mtls ---- */

/* Below 100 ms a handshake across a loaded node fails; above 60 s a stalled one holds its slot. */
#define CONFIG_MIN_MTLS_HANDSHAKE_TIMEOUT_MS 100
#define CONFIG_MAX_MTLS_HANDSHAKE_TIMEOUT_MS 60000
#define CONFIG_MAX_MTLS_HANDSHAKES 65536

static const struct field mtls_fields[] = {
    {"mode", FIELD_FUNC, .parse = parse_mode},
    {"node_name", FIELD_FUNC, .parse = parse_self_name},
    {"port", FIELD_U16, offsetof(struct config_mtls, port), 1, 65535},
    {"peer_identity_header", FIELD_BOOL, offsetof(struct config_mtls, peer_identity_header)},
    {"ktls", FIELD_BOOL, offsetof(struct config_mtls, ktls)},
    {"handshake_timeout_ms", FIELD_U32, offsetof(struct config_mtls, handshake_timeout_ms),
     CONFIG_MIN_MTLS_HANDSHAKE_TIMEOUT_MS, CONFIG_MAX_MTLS_HANDSHAKE_TIMEOUT_MS},
    {"max_handshakes", FIELD_U32, offsetof(struct config_mtls, max_handshakes), 1,
     CONFIG_MAX_MTLS_HANDSHAKES},
    {"max_handshakes_per_source", FIELD_U32,
     offsetof(struct config_mtls, max_handshakes_per_source), 1, CONFIG_MAX_MTLS_HANDSHAKES,
     .at_most = "max_handshakes"},
    {"nodes", FIELD_SEQ, .seq = &nodes_seq},
    {"workloads", FIELD_SEQ, .seq = &workloads_seq},
    {"namespaces", FIELD_SEQ, .seq = &ns_scopes_seq},
    {"services", FIELD_SEQ, .seq = &svc_scopes_seq},
};

int parse_mtls(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct config_mtls *m = &cfg->mtls;
	struct map_seen seen;
	int line = cp_line(p), err;

	p->mtls_line = p->key_line;
	err = cp_map(p, mtls_fields, ARRAY_SIZE(mtls_fields), m, &seen);
	if (err)
		return err;
	qsort(m->namespaces, (size_t)m->n_namespaces, sizeof(m->namespaces[0]), scope_cmp);
	qsort(m->services, (size_t)m->n_services, sizeof(m->services[0]), scope_cmp);
	m->on = m->mode != CONFIG_MTLS_OFF;
	for (int i = 0; i < m->n_namespaces; i++)
		m->on |= m->namespaces[i].mode != CONFIG_MTLS_OFF;
	for (int i = 0; i < m->n_services; i++)
		m->on |= m->services[i].mode != CONFIG_MTLS_OFF;
	if (!m->on)
		return 0;
	/* Without them the hop can neither name this node nor present a certificate. */
	if (!m->node_name[0])
		return cp_fail(p, line,
			       "node_name is required when mode, or a namespace's or service's "
			       "mode, is not off (the name endpoints give this node, to tell "
			       "local endpoints from remote)");
	return 0;
}

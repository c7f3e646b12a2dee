// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The schema of policy: (docs/policy.md, "In the config file"): the mesh's
 * default, namespace and service defaults, and rules, read into the
 * parser's written policy and compiled once the whole file is read (the
 * trust domain of identity: may come after it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "policy/policy.h"

static int parse_default_value(struct cfg_parser *p, enum policy_default *out)
{
	static const struct cp_word defaults[] = {
	    {"allow", POLICY_DEFAULT_ALLOW},
	    {"deny", POLICY_DEFAULT_DENY},
	    {"same-namespace", POLICY_DEFAULT_SAME_NAMESPACE}};
	int v, err = cp_word(p, defaults, ARRAY_SIZE(defaults), &v);

	if (!err)
		*out = (enum policy_default)v;
	return err;
}

static int parse_mesh_default(struct cfg_parser *p, void *obj)
{
	return parse_default_value(p, &((struct policy_doc *)obj)->mesh_default);
}

static int parse_one_default(struct cfg_parser *p, void *obj)
{
	return parse_default_value(p, &((struct policy_default_rule *)obj)->def);
}

static const struct field default_fields[] = {
    {"namespace", FIELD_LABEL, offsetof(struct policy_default_rule, namespace), .required = true},
    {"service", FIELD_LABEL, offsetof(struct policy_default_rule, service)},
    {"default", FIELD_FUNC, .parse = parse_one_default, .required = true},
};

static void set_origin(struct cfg_parser *p, char *origin, size_t size, int line)
{
	snprintf(origin, size, "%.96s (line %d)", p->path, line);
}

static int parse_default_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_default_rule *df = policy_doc_add_default(obj);
	struct map_seen seen;

	(void)i;
	if (!df)
		return cp_oom(p);
	set_origin(p, df->origin, sizeof(df->origin), cp_line(p));
	return cp_map(p, default_fields, ARRAY_SIZE(default_fields), df, &seen);
}

static const struct seq_spec defaults_seq = {parse_default_item, POLICY_MAX_DEFAULTS, "defaults"};

/* ---- rules ---- */

static int parse_rule_name(struct cfg_parser *p, void *obj)
{
	struct policy_rule *r = obj;

	return cp_string(p, "a rule name", r->name, sizeof(r->name));
}

static int parse_action(struct cfg_parser *p, void *obj)
{
	static const struct cp_word actions[] = {{"allow", POLICY_ALLOW}, {"deny", POLICY_DENY}};
	struct policy_rule *r = obj;
	int v, err = cp_word(p, actions, ARRAY_SIZE(actions), &v);

	if (!err)
		r->action = (enum policy_action)v;
	return err;
}

static int parse_port_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_rule *r = obj;
	uint64_t v;
	int err = cp_uint(p, 1, 65535, &v);

	if (err)
		return err;
	for (int j = 0; j < r->n_ports; j++)
		if (r->ports[j] == v)
			return cp_fail(p, cp_line(p), "%u is listed twice (also ports[%d])",
				       (unsigned int)v, j);
	r->ports[i] = (uint16_t)v;
	r->n_ports = i + 1;
	return 0;
}

static const struct seq_spec ports_seq = {parse_port_item, POLICY_MAX_PORTS, "ports"};

/* A caller written as a mapping: exactly one of these keys. */
static int parse_peer_ns(struct cfg_parser *p, void *obj)
{
	struct policy_peer *pe = obj;

	pe->kind = POLICY_PEER_NAMESPACE;
	return cp_string(p, "a namespace", pe->ns, sizeof(pe->ns));
}

static int parse_peer_sa(struct cfg_parser *p, void *obj)
{
	struct policy_peer *pe = obj;
	char v[2 * POLICY_MAX_LABEL + 2], buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "namespace/service-account", v, sizeof(v));
	char *slash;

	if (err)
		return err;
	slash = strchr(v, '/');
	if (!slash || slash == v || !slash[1] || strchr(slash + 1, '/') ||
	    (size_t)(slash - v) > POLICY_MAX_LABEL || strlen(slash + 1) > POLICY_MAX_LABEL)
		return cp_fail(p, cp_line(p), "must be namespace/service-account, got \"%s\"",
			       cp_echo(v, strlen(v), buf));
	pe->kind = POLICY_PEER_SERVICE_ACCOUNT;
	memcpy(pe->ns, v, (size_t)(slash - v));
	pe->ns[slash - v] = '\0';
	snprintf(pe->sa, sizeof(pe->sa), "%s", slash + 1);
	return 0;
}

static int parse_peer_id(struct cfg_parser *p, void *obj)
{
	struct policy_peer *pe = obj;

	pe->kind = POLICY_PEER_ID;
	return cp_string(p, "a SPIFFE ID", pe->id, sizeof(pe->id));
}

static const struct field peer_fields[] = {
    {"namespace", FIELD_FUNC, .parse = parse_peer_ns},
    {"service_account", FIELD_FUNC, .parse = parse_peer_sa},
    {"identity", FIELD_FUNC, .parse = parse_peer_id},
};

static int check_peer(struct cfg_parser *p, const struct map_seen *seen)
{
	if (__builtin_popcount(seen->mask) != 1)
		return cp_fail(
		    p, seen->start_line,
		    "a caller is \"*\", \"unauthenticated\", or a mapping of exactly one "
		    "of namespace, service_account, identity");
	return 0;
}

static int parse_from_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_peer *pe = policy_rule_add_from(obj);
	char buf[CONFIG_ECHO_MAX + 4];
	struct map_seen seen;
	const char *s;
	size_t n;
	int err;

	(void)i;
	if (!pe)
		return cp_oom(p);
	if (p->ev.type == YAML_MAPPING_START_EVENT) {
		err = cp_map(p, peer_fields, ARRAY_SIZE(peer_fields), pe, &seen);
		return err ? err : check_peer(p, &seen);
	}
	err = cp_scalar(p, "a caller", &s, &n);
	if (err)
		return err;
	if (n == 1 && s[0] == '*')
		pe->kind = POLICY_PEER_AUTHENTICATED;
	else if (n == 15 && !memcmp(s, "unauthenticated", 15))
		pe->kind = POLICY_PEER_UNAUTHENTICATED;
	else
		return cp_fail(p, cp_line(p),
			       "must be \"*\", \"unauthenticated\" or a mapping (namespace, "
			       "service_account or identity), got \"%s\"",
			       cp_echo(s, n, buf));
	return 0;
}

static const struct seq_spec from_seq = {parse_from_item, POLICY_MAX_FROM, "callers",
					 .none = "callers (\"*\" for any authenticated one)"};

/* to[].methods: upper-case tokens, as routes take them (methods are case-sensitive). */
static int parse_method_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_request_match *m = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a method", m->methods[i], sizeof(m->methods[i]));
	size_t n = strlen(m->methods[i]);

	if (err)
		return err;
	if (!policy_method_valid(m->methods[i]))
		return cp_fail(p, cp_line(p), "must be an upper-case method token, got \"%s\"",
			       cp_echo(m->methods[i], n, buf));
	for (int j = 0; j < i; j++)
		if (!strcmp(m->methods[j], m->methods[i]))
			return cp_fail(p, cp_line(p), "duplicate method (also methods[%d])", j);
	m->n_methods = i + 1;
	return 0;
}

static const struct seq_spec methods_seq = {parse_method_item, POLICY_MAX_METHODS, "methods"};

static int set_path(struct cfg_parser *p, struct policy_request_match *m,
		    enum policy_path_kind kind)
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err;

	if (m->path_kind != POLICY_PATH_ANY)
		return cp_fail(p, cp_line(p), "exact, prefix and grpc exclude each other");
	err = cp_string(p, "a path", m->path, sizeof(m->path));
	if (err)
		return err;
	if (m->path[0] != '/' || strpbrk(m->path, "?# \t"))
		return cp_fail(p, cp_line(p),
			       "must start with \"/\" and hold no spaces, '?' or '#', got \"%s\"",
			       cp_echo(m->path, strlen(m->path), buf));
	policy_match_path_kind(m, kind);
	return 0;
}

static int parse_exact(struct cfg_parser *p, void *obj)
{
	return set_path(p, obj, POLICY_PATH_EXACT);
}

static int parse_prefix(struct cfg_parser *p, void *obj)
{
	return set_path(p, obj, POLICY_PATH_PREFIX);
}

static const struct field path_fields[] = {
    {"exact", FIELD_FUNC, .parse = parse_exact},
    {"prefix", FIELD_FUNC, .parse = parse_prefix},
};

/* grpc: {service: pkg.Service, method: Name}: the path /pkg.Service[/Name]. */
struct grpc_match {
	char service[POLICY_MAX_PATH / 2];
	char method[POLICY_MAX_PATH / 2 - 2];
};

static int parse_grpc_service(struct cfg_parser *p, void *obj)
{
	struct grpc_match *g = obj;

	return cp_string(p, "a gRPC service (package.Service)", g->service, sizeof(g->service));
}

static int parse_grpc_method(struct cfg_parser *p, void *obj)
{
	struct grpc_match *g = obj;

	return cp_string(p, "a gRPC method", g->method, sizeof(g->method));
}

static const struct field grpc_match_fields[] = {
    {"service", FIELD_FUNC, .parse = parse_grpc_service, .required = true},
    {"method", FIELD_FUNC, .parse = parse_grpc_method},
};

static int parse_grpc(struct cfg_parser *p, void *obj)
{
	struct policy_request_match *m = obj;
	struct grpc_match g = {0};
	struct map_seen seen;
	int line = cp_line(p);
	int err = cp_map(p, grpc_match_fields, ARRAY_SIZE(grpc_match_fields), &g, &seen);

	if (err)
		return err;
	if (m->path_kind != POLICY_PATH_ANY)
		return cp_fail(p, line, "path and grpc exclude each other");
	if (policy_match_grpc(m, g.service, g.method))
		return cp_fail(p, line,
			       "service and method must be gRPC names (letters, digits, '_', '.'), "
			       "got \"%.48s\" and \"%.48s\"",
			       g.service, g.method);
	return 0;
}

static int check_path_present(struct cfg_parser *p, void *obj, const struct map_seen *seen)
{
	const struct policy_request_match *m = obj;

	if (m->path_kind == POLICY_PATH_ANY)
		return cp_fail(p, seen->start_line, "exact or prefix is required");
	return 0;
}

static const struct field to_fields[] = {
    {"methods", FIELD_SEQ, .seq = &methods_seq},
    {"path", FIELD_MAP, FIELD_MAP_OF(path_fields), .check = check_path_present},
    {"grpc", FIELD_FUNC, .parse = parse_grpc},
};

static int parse_to_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_request_match *m = policy_rule_add_to(obj);
	struct map_seen seen;
	int line = cp_line(p), err;

	(void)i;
	if (!m)
		return cp_oom(p);
	err = cp_map(p, to_fields, ARRAY_SIZE(to_fields), m, &seen);
	if (err)
		return err;
	if (!seen.mask)
		return cp_fail(p, line,
			       "a request names methods, a path or a gRPC service: leave to out to "
			       "match every request");
	return 0;
}

static const struct seq_spec to_seq = {parse_to_item, POLICY_MAX_TO, "requests"};

static const struct field rule_fields[] = {
    {"name", FIELD_FUNC, .parse = parse_rule_name, .required = true},
    {"namespace", FIELD_LABEL, offsetof(struct policy_rule, namespace), .required = true},
    {"service", FIELD_LABEL, offsetof(struct policy_rule, service)},
    {"ports", FIELD_SEQ, .seq = &ports_seq},
    {"action", FIELD_FUNC, .parse = parse_action, .required = true},
    {"from", FIELD_SEQ, .seq = &from_seq, .required = true},
    {"to", FIELD_SEQ, .seq = &to_seq},
};

static int parse_rule_item(struct cfg_parser *p, void *obj, int i)
{
	struct policy_rule *r = policy_doc_add_rule(obj);
	struct map_seen seen;

	(void)i;
	if (!r)
		return cp_oom(p);
	set_origin(p, r->origin, sizeof(r->origin), cp_line(p));
	return cp_map(p, rule_fields, ARRAY_SIZE(rule_fields), r, &seen);
}

static const struct seq_spec rules_seq = {parse_rule_item, POLICY_MAX_RULES, "rules"};

static const struct field policy_fields[] = {
    {"default", FIELD_FUNC, .parse = parse_mesh_default},
    {"defaults", FIELD_SEQ, .seq = &defaults_seq},
    {"rules", FIELD_SEQ, .seq = &rules_seq},
};

int parse_policy(struct cfg_parser *p, void *obj)
{
	struct map_seen seen;

	(void)obj;
	p->policy_line = p->key_line;
	return cp_map(p, policy_fields, ARRAY_SIZE(policy_fields), &p->policy, &seen);
}

int config_policy_compile(struct cfg_parser *p)
{
	char msg[512];

	if (!p->policy_line)
		return 0;
	p->cfg->policy_file =
	    policy_compile(&p->policy, p->cfg->identity.trust_domain, msg, sizeof(msg));
	if (!p->cfg->policy_file) {
		/* The message names the rule's path and line; the file names itself. */
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "%s: %s", p->name, msg);
		return -EINVAL;
	}
	p->cfg->policy = policy_set_get(p->cfg->policy_file);
	return 0;
}

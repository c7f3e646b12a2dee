// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The AuthorizationPolicy custom resource, decoded strictly (policy_crd.h). */
#include "policy/policy_crd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The decoder's state: the object's name for messages, and the field path. */
struct crd_dec {
	const char *ns, *name;
	char path[128];
	char *err;
	size_t errlen;
};

static int __attribute__((format(printf, 2, 3))) bad(struct crd_dec *d, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!d->err || !d->errlen)
		return -EINVAL;
	n = snprintf(d->err, d->errlen, "AuthorizationPolicy %s/%s: %s%s", d->ns ? d->ns : "?",
		     d->name ? d->name : "?", d->path, d->path[0] ? ": " : "");
	if (n >= 0 && (size_t)n < d->errlen) {
		va_start(ap, fmt);
		vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static size_t push(struct crd_dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t push(struct crd_dec *d, const char *fmt, ...)
{
	size_t old = strlen(d->path);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->path + old, sizeof(d->path) - old, fmt, ap);
	va_end(ap);
	return old;
}

static void pop(struct crd_dec *d, size_t old)
{
	d->path[old] = '\0';
}

static const char *type_name(json_object *v)
{
	return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

/* Refuse keys of obj not in keys (NULL-terminated). */
static int only_keys(struct crd_dec *d, json_object *obj, const char *const *keys)
{
	json_object_object_foreach(obj, k, v)
	{
		const char *const *q = keys;

		(void)v;
		while (*q && strcmp(*q, k))
			q++;
		if (!*q) {
			size_t old = push(d, "%s%.40s", d->path[0] ? "." : "", k);
			int ret = bad(d, "unknown field");

			pop(d, old);
			return ret;
		}
	}
	return 0;
}

/* A string field key of obj into buf (size bytes), required or not. */
static int str_field(struct crd_dec *d, json_object *obj, const char *key, char *buf, size_t size,
		     bool required)
{
	json_object *v;
	size_t old = push(d, "%s%s", d->path[0] ? "." : "", key);
	int ret = 0;

	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (required)
			ret = bad(d, "is required");
	} else if (!json_object_is_type(v, json_type_string)) {
		ret = bad(d, "must be a string, got %s", type_name(v));
	} else if ((size_t)json_object_get_string_len(v) >= size) {
		ret = bad(d, "longer than %zu characters", size - 1);
	} else if (memchr(json_object_get_string(v), '\0', (size_t)json_object_get_string_len(v))) {
		ret = bad(d, "holds a NUL byte");
	} else {
		memcpy(buf, json_object_get_string(v), (size_t)json_object_get_string_len(v) + 1);
	}
	pop(d, old);
	return ret;
}

static int array_field(struct crd_dec *d, json_object *obj, const char *key, int max,
		       json_object **out, int *n)
{
	json_object *v;
	size_t old = push(d, "%s%s", d->path[0] ? "." : "", key);
	int ret = 0;

	*out = NULL;
	*n = 0;
	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		pop(d, old);
		return 0;
	}
	if (!json_object_is_type(v, json_type_array))
		ret = bad(d, "must be a list, got %s", type_name(v));
	else if ((int)json_object_array_length(v) > max)
		ret = bad(d, "at most %d entries, got %zu", max, json_object_array_length(v));
	pop(d, old);
	if (!ret) {
		*out = v;
		*n = (int)json_object_array_length(v);
	}
	return ret;
}

static int decode_default(struct crd_dec *d, const char *s, enum policy_default *out)
{
	if (!strcmp(s, "allow"))
		*out = POLICY_DEFAULT_ALLOW;
	else if (!strcmp(s, "deny"))
		*out = POLICY_DEFAULT_DENY;
	else if (!strcmp(s, "same-namespace"))
		*out = POLICY_DEFAULT_SAME_NAMESPACE;
	else
		return bad(d, "must be allow, deny or same-namespace, got \"%.40s\"", s);
	return 0;
}

static int decode_peer(struct crd_dec *d, json_object *v, struct policy_peer *pe)
{
	static const char *const keys[] = {"namespace", "serviceAccount", "identity", NULL};
	char sa[2 * POLICY_MAX_LABEL + 2] = "";
	int ret, n = 0;

	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);

		if (!strcmp(s, "*"))
			pe->kind = POLICY_PEER_AUTHENTICATED;
		else if (!strcmp(s, "unauthenticated"))
			pe->kind = POLICY_PEER_UNAUTHENTICATED;
		else
			return bad(d,
				   "must be \"*\", \"unauthenticated\" or an object (namespace, "
				   "serviceAccount or identity), got \"%.40s\"",
				   s);
		return 0;
	}
	if (!json_object_is_type(v, json_type_object))
		return bad(d, "must be a string or an object, got %s", type_name(v));
	ret = only_keys(d, v, keys);
	json_object_object_foreach(v, k, val)
	{
		(void)k;
		(void)val;
		n++;
	}
	if (!ret && n != 1)
		ret = bad(d, "must name exactly one of namespace, serviceAccount, identity");
	if (!ret && json_object_object_get_ex(v, "namespace", NULL)) {
		pe->kind = POLICY_PEER_NAMESPACE;
		ret = str_field(d, v, "namespace", pe->ns, sizeof(pe->ns), true);
	} else if (!ret && json_object_object_get_ex(v, "identity", NULL)) {
		pe->kind = POLICY_PEER_ID;
		ret = str_field(d, v, "identity", pe->id, sizeof(pe->id), true);
	} else if (!ret) {
		char *slash;

		ret = str_field(d, v, "serviceAccount", sa, sizeof(sa), true);
		slash = ret ? NULL : strchr(sa, '/');
		if (!ret && (!slash || slash == sa || !slash[1] || strchr(slash + 1, '/') ||
			     (size_t)(slash - sa) > POLICY_MAX_LABEL ||
			     strlen(slash + 1) > POLICY_MAX_LABEL)) {
			size_t old = push(d, ".serviceAccount");

			ret = bad(d, "must be namespace/service-account, got \"%.40s\"", sa);
			pop(d, old);
		}
		if (!ret) {
			pe->kind = POLICY_PEER_SERVICE_ACCOUNT;
			*slash = '\0';
			snprintf(pe->ns, sizeof(pe->ns), "%s", sa);
			snprintf(pe->sa, sizeof(pe->sa), "%s", slash + 1);
		}
	}
	return ret;
}

static int decode_path(struct crd_dec *d, json_object *v, struct policy_request_match *m)
{
	static const char *const keys[] = {"exact", "prefix", NULL};
	bool exact = json_object_object_get_ex(v, "exact", NULL);
	bool prefix = json_object_object_get_ex(v, "prefix", NULL);
	int ret;

	if (!json_object_is_type(v, json_type_object))
		return bad(d, "must be an object (exact or prefix), got %s", type_name(v));
	ret = only_keys(d, v, keys);
	if (ret)
		return ret;
	if (exact == prefix)
		return bad(d, "must name exactly one of exact, prefix");
	ret = str_field(d, v, exact ? "exact" : "prefix", m->path, sizeof(m->path), true);
	if (ret)
		return ret;
	policy_match_path_kind(m, exact ? POLICY_PATH_EXACT : POLICY_PATH_PREFIX);
	return 0;
}

static int decode_grpc(struct crd_dec *d, json_object *v, struct policy_request_match *m)
{
	static const char *const keys[] = {"service", "method", NULL};
	char svc[POLICY_MAX_PATH / 2] = "", method[POLICY_MAX_PATH / 2 - 2] = "";
	int ret;

	if (!json_object_is_type(v, json_type_object))
		return bad(d, "must be an object (service, method), got %s", type_name(v));
	ret = only_keys(d, v, keys);
	if (!ret)
		ret = str_field(d, v, "service", svc, sizeof(svc), true);
	if (!ret)
		ret = str_field(d, v, "method", method, sizeof(method), false);
	if (ret)
		return ret;
	if (policy_match_grpc(m, svc, method))
		return bad(d, "service and method must be gRPC names (letters, digits, '_', '.')");
	return 0;
}

static int decode_request(struct crd_dec *d, json_object *v, struct policy_request_match *m)
{
	static const char *const keys[] = {"methods", "path", "grpc", NULL};
	json_object *methods, *path = NULL, *grpc = NULL;
	int ret, n;

	if (!json_object_is_type(v, json_type_object))
		return bad(d, "must be an object (methods, path, grpc), got %s", type_name(v));
	ret = only_keys(d, v, keys);
	if (!ret)
		ret = array_field(d, v, "methods", POLICY_MAX_METHODS, &methods, &n);
	if (ret)
		return ret;
	for (int i = 0; i < n; i++) {
		json_object *mv = json_object_array_get_idx(methods, i);
		size_t old = push(d, ".methods[%d]", i);
		const char *s = json_object_get_string(mv);

		if (!json_object_is_type(mv, json_type_string))
			ret = bad(d, "must be a string, got %s", type_name(mv));
		else if (!policy_method_valid(s))
			ret = bad(d, "must be an upper-case method token, got \"%.40s\"", s);
		pop(d, old);
		if (ret)
			return ret;
		snprintf(m->methods[m->n_methods++], sizeof(m->methods[0]), "%s", s);
	}
	json_object_object_get_ex(v, "path", &path);
	json_object_object_get_ex(v, "grpc", &grpc);
	if (path && grpc)
		return bad(d, "path and grpc exclude each other");
	if (path || grpc) {
		size_t old = push(d, path ? ".path" : ".grpc");

		ret = path ? decode_path(d, path, m) : decode_grpc(d, grpc, m);
		pop(d, old);
		if (ret)
			return ret;
	}
	if (!n && !path && !grpc)
		return bad(d, "names neither methods, a path nor grpc: leave it out to match every "
			      "request");
	return 0;
}

static int decode_rule(struct crd_dec *d, json_object *spec, struct policy_rule *r)
{
	json_object *ports, *from, *to, *action;
	int ret, n;

	if (!json_object_object_get_ex(spec, "action", &action) || !action)
		return bad(
		    d, "spec.action is required (allow or deny), or spec.default for a default");
	if (!json_object_is_type(action, json_type_string) ||
	    (strcmp(json_object_get_string(action), "allow") &&
	     strcmp(json_object_get_string(action), "deny"))) {
		size_t old = push(d, "spec.action");

		ret =
		    bad(d, "must be allow or deny, got %.40s", json_object_to_json_string(action));
		pop(d, old);
		return ret;
	}
	r->action = strcmp(json_object_get_string(action), "deny") ? POLICY_ALLOW : POLICY_DENY;

	size_t old = push(d, "spec");

	ret = array_field(d, spec, "ports", POLICY_MAX_PORTS, &ports, &n);
	for (int i = 0; !ret && i < n; i++) {
		json_object *pv = json_object_array_get_idx(ports, i);
		size_t o2 = push(d, ".ports[%d]", i);
		int64_t port = json_object_get_int64(pv);

		if (!json_object_is_type(pv, json_type_int) || port < 1 || port > 65535)
			ret = bad(d, "must be a port 1..65535, got %.40s",
				  json_object_to_json_string(pv));
		pop(d, o2);
		if (!ret)
			r->ports[r->n_ports++] = (uint16_t)port;
	}
	if (!ret)
		ret = array_field(d, spec, "from", POLICY_MAX_FROM, &from, &n);
	if (!ret && n == 0)
		ret = bad(d,
			  "from must list 1..%d callers (\"*\" for any authenticated one), got "
			  "none",
			  POLICY_MAX_FROM);
	for (int i = 0; !ret && i < n; i++) {
		struct policy_peer *pe = policy_rule_add_from(r);
		size_t o2 = push(d, ".from[%d]", i);

		ret = pe ? decode_peer(d, json_object_array_get_idx(from, i), pe) : -ENOMEM;
		pop(d, o2);
	}
	if (!ret)
		ret = array_field(d, spec, "to", POLICY_MAX_TO, &to, &n);
	for (int i = 0; !ret && i < n; i++) {
		struct policy_request_match *m = policy_rule_add_to(r);
		size_t o2 = push(d, ".to[%d]", i);

		ret = m ? decode_request(d, json_object_array_get_idx(to, i), m) : -ENOMEM;
		pop(d, o2);
	}
	pop(d, old);
	return ret;
}

int policy_crd_decode(json_object *obj, struct policy_crd *out, char *err, size_t errlen)
{
	static const char *const spec_keys[] = {"service", "ports",   "action", "from",
						"to",	   "default", NULL};
	struct crd_dec d = {.err = err, .errlen = errlen};
	json_object *meta, *spec, *def;
	char check[512];
	int ret;

	memset(out, 0, sizeof(*out));
	if (!json_object_is_type(obj, json_type_object))
		return bad(&d, "not an object");
	if (!json_object_object_get_ex(obj, "metadata", &meta) ||
	    !json_object_is_type(meta, json_type_object))
		return bad(&d, "metadata is required");
	ret = str_field(&d, meta, "namespace", out->ns, sizeof(out->ns), true);
	if (!ret)
		ret = str_field(&d, meta, "name", out->name, sizeof(out->name), true);
	if (ret) {
		/* Name it by what it has: the message says which is missing. */
		return ret;
	}
	str_field(&d, meta, "resourceVersion", out->resource_version, sizeof(out->resource_version),
		  false);
	d.ns = out->ns;
	d.name = out->name;
	if (!json_object_object_get_ex(obj, "spec", &spec) ||
	    !json_object_is_type(spec, json_type_object))
		return bad(&d, "spec is required");
	push(&d, "spec");
	ret = only_keys(&d, spec, spec_keys);
	if (!ret)
		ret = str_field(&d, spec, "service", out->rule.service, sizeof(out->rule.service),
				false);
	pop(&d, 0);
	if (ret)
		return ret;
	snprintf(out->rule.name, sizeof(out->rule.name), "%s", out->name);
	snprintf(out->rule.namespace, sizeof(out->rule.namespace), "%s", out->ns);
	snprintf(out->rule.origin, sizeof(out->rule.origin), "AuthorizationPolicy %.40s/%.60s",
		 out->ns, out->name);

	if (json_object_object_get_ex(spec, "default", &def)) {
		static const char *const default_keys[] = {"service", "default", NULL};

		out->is_default = true;
		push(&d, "spec");
		ret = only_keys(&d, spec, default_keys);
		pop(&d, 0);
		if (ret)
			return bad(&d, "spec.default stands alone (with spec.service at most): a "
				       "default is not a rule");
		push(&d, "spec.default");
		ret = json_object_is_type(def, json_type_string)
			  ? decode_default(&d, json_object_get_string(def), &out->def.def)
			  : bad(&d, "must be a string, got %s", type_name(def));
		pop(&d, 0);
		if (ret)
			return ret;
		snprintf(out->def.namespace, sizeof(out->def.namespace), "%s", out->ns);
		snprintf(out->def.service, sizeof(out->def.service), "%s", out->rule.service);
		snprintf(out->def.origin, sizeof(out->def.origin), "%s", out->rule.origin);
		ret = policy_default_check(&out->def, check, sizeof(check));
	} else {
		ret = decode_rule(&d, spec, &out->rule);
		if (ret == -ENOMEM)
			bad(&d, "out of memory");
		if (ret) {
			policy_crd_clear(out);
			return ret == -ENOMEM ? -ENOMEM : -EINVAL;
		}
		ret = policy_rule_check(&out->rule, check, sizeof(check));
	}
	if (ret) {
		/* The engine's message starts with the origin, which names the object. */
		snprintf(err, errlen, "%s", check);
		policy_crd_clear(out);
		return -EINVAL;
	}
	return 0;
}

void policy_crd_clear(struct policy_crd *c)
{
	free(c->rule.from);
	free(c->rule.to);
	c->rule.from = NULL;
	c->rule.to = NULL;
	c->rule.n_from = c->rule.n_to = 0;
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Kubernetes objects to model structs. The API server is trusted to send
 * well-formed objects, but not blindly: every field is type-checked and
 * every copy bounded, because the same code also reads whatever a
 * misconfigured URL or a fuzzer feeds it.
 */
#include "discovery/k8s_decode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/addr.h"

#define K8S_SERVICE_NAME_LABEL "kubernetes.io/service-name"

static int dec_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write a reason into err; returns -EINVAL for the caller to pass on. */
static int dec_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* obj[key] when present and not null, else NULL. */
static json_object *get(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (!obj || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

/*
 * Copy string obj[key] into buf (size len). A missing or null field
 * gives "" when optional, an error otherwise; a non-string or a string
 * that does not fit is an error. Returns 0 or -EINVAL (reason in err).
 */
static int get_str(json_object *obj, const char *key, char *buf, size_t len, bool optional,
		   char *err, size_t errlen)
{
	json_object *v = get(obj, key);
	const char *s;
	size_t n;

	buf[0] = '\0';
	if (!v)
		return optional ? 0 : dec_err(err, errlen, "%s: is required", key);
	if (!json_object_is_type(v, json_type_string))
		return dec_err(err, errlen, "%s: must be a string", key);
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n >= len || strlen(s) != n)
		return dec_err(err, errlen, "%s: longer than %zu bytes or holds NUL", key, len - 1);
	memcpy(buf, s, n + 1);
	return 0;
}

/* Port number obj[key] in 1..65535; missing or null gives 0 when optional. */
static int get_port(json_object *obj, const char *key, uint16_t *out, bool optional, char *err,
		    size_t errlen)
{
	json_object *v = get(obj, key);
	int64_t n;

	*out = 0;
	if (!v)
		return optional ? 0 : dec_err(err, errlen, "%s: is required", key);
	if (!json_object_is_type(v, json_type_int))
		return dec_err(err, errlen, "%s: must be an integer", key);
	n = json_object_get_int64(v);
	if (n < 1 || n > 65535)
		return dec_err(err, errlen, "%s: must be 1..65535, got %lld", key, (long long)n);
	*out = (uint16_t)n;
	return 0;
}

/* Bool condition obj[key]; missing or null gives dflt (API rule). */
static int get_bool(json_object *obj, const char *key, bool dflt, bool *out, char *err,
		    size_t errlen)
{
	json_object *v = get(obj, key);

	*out = dflt;
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return dec_err(err, errlen, "%s: must be a boolean", key);
	*out = json_object_get_boolean(v);
	return 0;
}

/* Array obj[key], or NULL when missing or null; error when another type. */
static int get_array(json_object *obj, const char *key, json_object **out, char *err, size_t errlen)
{
	json_object *v = get(obj, key);

	*out = NULL;
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return dec_err(err, errlen, "%s: must be an array", key);
	*out = v;
	return 0;
}

/* Object obj[key], or NULL when missing or null; error when another type. */
static int get_object(json_object *obj, const char *key, json_object **out, char *err,
		      size_t errlen)
{
	json_object *v = get(obj, key);

	*out = NULL;
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return dec_err(err, errlen, "%s: must be an object", key);
	*out = v;
	return 0;
}

static int decode_l4(json_object *port, enum model_l4 *out, char *err, size_t errlen)
{
	char proto[8];
	int ret = get_str(port, "protocol", proto, sizeof(proto), true, err, errlen);

	if (ret)
		return ret;
	if (!proto[0] || !strcmp(proto, "TCP"))
		*out = MODEL_L4_TCP; /* the API's default */
	else if (!strcmp(proto, "UDP"))
		*out = MODEL_L4_UDP;
	else if (!strcmp(proto, "SCTP"))
		*out = MODEL_L4_SCTP;
	else
		return dec_err(err, errlen, "protocol: must be TCP, UDP or SCTP");
	return 0;
}

/*
 * What a service port speaks, from its appProtocol and, when that is
 * absent, its name (docs/discovery.md, "Protocols"). One row per value
 * users write: Kubernetes' own kubernetes.io/ names (KEP-3726), IANA
 * service names (compared without case, as IANA does) and the values
 * Istio and Linkerd document. HTTP/2 (h2c, gRPC) is CONFIG_PROTO_H2C,
 * the proxy's HTTP/2 kind; TLS (https, wss, tls) is opaque: there is
 * nothing to parse in it.
 */
struct app_protocol {
	const char *value;
	enum config_protocol proto;
};

static const struct app_protocol app_protocols[] = {
    {"http", CONFIG_PROTO_HTTP},
    {"kubernetes.io/http", CONFIG_PROTO_HTTP}, /* not standard, but written */
    {"http/1.1", CONFIG_PROTO_HTTP},
    {"kubernetes.io/ws", CONFIG_PROTO_HTTP}, /* an Upgrade is an HTTP/1.1 request */
    {"ws", CONFIG_PROTO_HTTP},
    {"kubernetes.io/h2c", CONFIG_PROTO_H2C},
    {"h2c", CONFIG_PROTO_H2C},
    {"http2", CONFIG_PROTO_H2C},
    {"grpc", CONFIG_PROTO_H2C},
    /* gRPC-Web runs over HTTP/1.1 or HTTP/2: the preface tells which. */
    {"grpc-web", CONFIG_PROTO_DETECT},
    {"kubernetes.io/wss", CONFIG_PROTO_TCP},
    {"https", CONFIG_PROTO_TCP},
    {"wss", CONFIG_PROTO_TCP},
    {"tls", CONFIG_PROTO_TCP},
    {"tcp", CONFIG_PROTO_TCP},
    {"mysql", CONFIG_PROTO_TCP},
    {"postgresql", CONFIG_PROTO_TCP},
    {"postgres", CONFIG_PROTO_TCP},
    {"redis", CONFIG_PROTO_TCP},
    {"mongo", CONFIG_PROTO_TCP},
    {"mongodb", CONFIG_PROTO_TCP},
    {"kafka", CONFIG_PROTO_TCP},
    {"amqp", CONFIG_PROTO_TCP},
    {"memcached", CONFIG_PROTO_TCP},
    {"cassandra", CONFIG_PROTO_TCP},
    {"zookeeper", CONFIG_PROTO_TCP},
    {"smtp", CONFIG_PROTO_TCP},
    {"nats", CONFIG_PROTO_TCP},
    {"mqtt", CONFIG_PROTO_TCP},
    {"dns", CONFIG_PROTO_TCP},
};

/*
 * Istio's port naming, "<protocol>[-<suffix>]", for a port without
 * appProtocol: only the protocols Istio lists for it, longest first so
 * that "grpc-web-ui" is gRPC-Web and "http2-x" is HTTP/2.
 */
static const struct app_protocol port_name_protocols[] = {
    {"grpc-web", CONFIG_PROTO_DETECT}, {"http2", CONFIG_PROTO_H2C}, {"https", CONFIG_PROTO_TCP},
    {"mongo", CONFIG_PROTO_TCP},       {"mysql", CONFIG_PROTO_TCP}, {"redis", CONFIG_PROTO_TCP},
    {"grpc", CONFIG_PROTO_H2C},	       {"http", CONFIG_PROTO_HTTP}, {"tcp", CONFIG_PROTO_TCP},
    {"tls", CONFIG_PROTO_TCP},
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum config_protocol k8s_app_protocol(const char *app, const char *port_name)
{
	if (app[0]) {
		for (size_t i = 0; i < ARRAY_LEN(app_protocols); i++)
			if (!strcasecmp(app, app_protocols[i].value))
				return app_protocols[i].proto;
		return CONFIG_PROTO_DETECT; /* unknown: the first bytes tell */
	}
	for (size_t i = 0; i < ARRAY_LEN(port_name_protocols); i++) {
		const char *v = port_name_protocols[i].value;
		size_t n = strlen(v);

		if (!strncasecmp(port_name, v, n) && (!port_name[n] || port_name[n] == '-'))
			return port_name_protocols[i].proto;
	}
	return CONFIG_PROTO_DETECT;
}

/* metadata.namespace and metadata.name; both required. */
static int decode_meta(json_object *obj, char *ns, size_t nslen, char *name, size_t namelen,
		       json_object **meta_out, char *err, size_t errlen)
{
	json_object *meta;
	int ret = get_object(obj, "metadata", &meta, err, errlen);

	if (ret)
		return ret;
	if (!meta)
		return dec_err(err, errlen, "metadata: is required");
	ret = get_str(meta, "namespace", ns, nslen, false, err, errlen);
	if (!ret)
		ret = get_str(meta, "name", name, namelen, false, err, errlen);
	if (ret)
		return ret;
	if (!ns[0] || !name[0])
		return dec_err(err, errlen, "metadata: empty name or namespace");
	if (meta_out)
		*meta_out = meta;
	return 0;
}

/*
 * Longest appProtocol the API accepts: a qualified name, a DNS prefix of
 * up to 253 bytes, '/', and a name of up to 63.
 */
#define K8S_MAX_APP_PROTOCOL (253 + 1 + 63)

static int decode_service_port(json_object *jp, struct model_port *p, char *err, size_t errlen)
{
	char app[K8S_MAX_APP_PROTOCOL + 1];
	json_object *tp;
	int ret;

	memset(p, 0, sizeof(*p));
	if (!json_object_is_type(jp, json_type_object))
		return dec_err(err, errlen, "must be an object");
	ret = get_str(jp, "name", p->name, sizeof(p->name), true, err, errlen);
	if (!ret)
		ret = get_port(jp, "port", &p->port, false, err, errlen);
	if (!ret)
		ret = decode_l4(jp, &p->l4, err, errlen);
	if (!ret)
		ret = get_str(jp, "appProtocol", app, sizeof(app), true, err, errlen);
	if (ret)
		return ret;
	p->app = k8s_app_protocol(app, p->name);
	tp = get(jp, "targetPort");
	if (!tp) {
		p->target_port = p->port; /* the API's default */
	} else if (json_object_is_type(tp, json_type_int)) {
		ret = get_port(jp, "targetPort", &p->target_port, false, err, errlen);
	} else if (json_object_is_type(tp, json_type_string)) {
		ret = get_str(jp, "targetPort", p->target_name, sizeof(p->target_name), false, err,
			      errlen);
		if (!ret && !p->target_name[0])
			ret = dec_err(err, errlen, "targetPort: empty name");
	} else {
		ret = dec_err(err, errlen, "targetPort: must be an integer or a name");
	}
	return ret;
}

/*
 * The service's shoal.io/kernel-ports annotation, if any: mark the ports
 * it names (by number or by name). A token that names no port, or names
 * one that speaks HTTP, is left out and said in out->note: a typo in an
 * annotation must not take the whole service out of the mesh.
 */
static void decode_kernel_ports(json_object *meta, struct model_service *out)
{
	char val[K8S_MAX_KERNEL_PORTS + 1], why[64], *save = NULL, *tok;
	json_object *ann = NULL;

	if (get_object(meta, "annotations", &ann, why, sizeof(why)) || !ann ||
	    get_str(ann, K8S_KERNEL_PORTS_ANNOTATION, val, sizeof(val), true, why, sizeof(why))) {
		if (ann && get(ann, K8S_KERNEL_PORTS_ANNOTATION))
			snprintf(out->note, sizeof(out->note),
				 "annotation %s: must be a string of at most %d bytes; ignored",
				 K8S_KERNEL_PORTS_ANNOTATION, K8S_MAX_KERNEL_PORTS);
		return;
	}
	for (tok = strtok_r(val, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char *end;
		unsigned long num = strtoul(tok, &end, 10);
		bool by_number = *tok >= '0' && *tok <= '9' && !*end;
		struct model_port *hit = NULL;

		for (int i = 0; i < out->n_ports && !hit; i++)
			if (by_number ? out->ports[i].port == num : !strcmp(out->ports[i].name, tok))
				hit = &out->ports[i];
		if (hit && (hit->app == CONFIG_PROTO_HTTP || hit->app == CONFIG_PROTO_H2C)) {
			if (!out->note[0])
				snprintf(out->note, sizeof(out->note),
					 "annotation %s: port %u speaks %s; kernel mode is for opaque TCP only, it stays proxied",
					 K8S_KERNEL_PORTS_ANNOTATION, hit->port,
					 hit->app == CONFIG_PROTO_HTTP ? "http" : "h2c");
			continue;
		}
		if (hit)
			hit->kernel = true;
		else if (!out->note[0])
			snprintf(out->note, sizeof(out->note),
				 "annotation %s: \"%.32s\" names no port of the service; ignored",
				 K8S_KERNEL_PORTS_ANNOTATION, tok);
	}
}

/* May a port of this protocol carry HTTP/2, to be translated? (config_checks.c's rule) */
static bool port_may_translate(const struct model_port *mp)
{
	return mp->app == CONFIG_PROTO_H2C || mp->app == CONFIG_PROTO_DETECT;
}

/* Note why, once (the first problem wins, as for kernel-ports): "annotation <name>: <why>;
 * ignored". */
__attribute__((format(printf, 2, 3))) static void note_once(struct model_service *out,
							    const char *fmt, ...)
{
	size_t n;
	va_list ap;

	if (out->note[0])
		return;
	n = (size_t)snprintf(out->note, sizeof(out->note),
			     "annotation %s: ", K8S_UPSTREAM_PROTOCOL_ANNOTATION);
	va_start(ap, fmt);
	n += (size_t)vsnprintf(out->note + n, sizeof(out->note) - n, fmt, ap);
	va_end(ap);
	if (n < sizeof(out->note))
		snprintf(out->note + n, sizeof(out->note) - n, "; ignored");
}

/*
 * The service's shoal.io/upstream-protocol annotation, if any: "http1"
 * (or "h2") for every port that can carry HTTP/2, or a list of
 * "<port>=<protocol>" by number or name. A token with another protocol,
 * or naming no port or one that cannot carry HTTP/2, is left out and
 * said in out->note: a typo must not take the service out of the mesh.
 */
static void decode_upstream_protocol(json_object *meta, struct model_service *out)
{
	char val[K8S_MAX_KERNEL_PORTS + 1], why[64], *save = NULL, *tok;
	json_object *ann = NULL;

	if (get_object(meta, "annotations", &ann, why, sizeof(why)) || !ann ||
	    get_str(ann, K8S_UPSTREAM_PROTOCOL_ANNOTATION, val, sizeof(val), true, why,
		    sizeof(why))) {
		if (ann && get(ann, K8S_UPSTREAM_PROTOCOL_ANNOTATION))
			snprintf(out->note, sizeof(out->note),
				 "annotation %s: must be a string of at most %d bytes; ignored",
				 K8S_UPSTREAM_PROTOCOL_ANNOTATION, K8S_MAX_KERNEL_PORTS);
		return;
	}
	for (tok = strtok_r(val, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char *eq = strchr(tok, '='), *proto = eq ? eq + 1 : tok, *end;
		bool http1 = !strcmp(proto, "http1"), by_number;
		struct model_port *hit = NULL;
		unsigned long num;

		if (!http1 && strcmp(proto, "h2")) {
			note_once(out, "\"%.32s\" is no protocol (http1 or h2)", proto);
			continue;
		}
		if (!eq) {
			/* The service's endpoints: every port that can carry HTTP/2. */
			for (int i = 0; i < out->n_ports; i++)
				if (port_may_translate(&out->ports[i]))
					out->ports[i].http1_upstream = http1;
			continue;
		}
		*eq = '\0';
		num = strtoul(tok, &end, 10);
		by_number = *tok >= '0' && *tok <= '9' && !*end;
		for (int i = 0; i < out->n_ports && !hit; i++)
			if (by_number ? out->ports[i].port == num
				      : !strcmp(out->ports[i].name, tok))
				hit = &out->ports[i];
		if (!hit)
			note_once(out, "\"%.32s\" names no port of the service", tok);
		else if (!port_may_translate(hit))
			note_once(out, "port \"%.32s\" speaks %s, not HTTP/2", tok,
				  hit->app == CONFIG_PROTO_HTTP ? "http" : "tcp");
		else
			hit->http1_upstream = http1;
	}
}

/*
 * The service's shoal.io/mtls-mode annotation, if any, into out->mtls_mode
 * (1 + enum config_mtls_mode). Another value is left out and said in
 * out->note, as for the other annotations.
 */
static int mtls_mode_annotation(json_object *meta, uint8_t *mode)
{
	static const char *const modes[] = {"off", "permissive", "strict"};
	char val[16], why[64];
	json_object *ann = NULL;

	*mode = 0;
	if (get_object(meta, "annotations", &ann, why, sizeof(why)) || !ann ||
	    !get(ann, K8S_MTLS_MODE_ANNOTATION))
		return 0;
	if (!get_str(ann, K8S_MTLS_MODE_ANNOTATION, val, sizeof(val), true, why, sizeof(why)))
		for (int i = 0; i < 3; i++)
			if (!strcmp(val, modes[i])) {
				*mode = (uint8_t)(1 + i);
				return 0;
			}
	return -EINVAL;
}

static void decode_mtls_mode(json_object *meta, struct model_service *out)
{
	if (mtls_mode_annotation(meta, &out->mtls_mode) && !out->note[0])
		snprintf(out->note, sizeof(out->note),
			 "annotation %s: must be off, permissive or strict; ignored",
			 K8S_MTLS_MODE_ANNOTATION);
}

int k8s_decode_namespace_mode(json_object *obj, char *name, size_t namelen, uint8_t *mode,
			      char *note, size_t notelen)
{
	json_object *meta = NULL;
	int ret;

	*mode = 0;
	note[0] = '\0';
	name[0] = '\0';
	ret = get_object(obj, "metadata", &meta, note, notelen);
	if (!ret && !meta)
		ret = dec_err(note, notelen, "metadata: is required");
	if (!ret)
		ret = get_str(meta, "name", name, namelen, false, note, notelen);
	if (!ret && !name[0])
		ret = dec_err(note, notelen, "metadata.name: is empty");
	if (ret)
		return ret;
	if (mtls_mode_annotation(meta, mode))
		snprintf(note, notelen, "annotation %s: must be off, permissive or strict; ignored",
			 K8S_MTLS_MODE_ANNOTATION);
	return 0;
}

int k8s_decode_service(json_object *obj, struct model_service *out, char *err, size_t errlen)
{
	json_object *spec, *ips, *ports, *meta = NULL;
	char type[32], ip[64], why[192];
	int ret, n;

	memset(out, 0, sizeof(*out));
	ret = decode_meta(obj, out->ns, sizeof(out->ns), out->name, sizeof(out->name), &meta, err,
			  errlen);
	if (ret)
		return ret;
	ret = get_object(obj, "spec", &spec, err, errlen);
	if (ret)
		return ret;
	if (!spec) {
		out->headless = true; /* nothing to intercept */
		return 0;
	}
	ret = get_str(spec, "type", type, sizeof(type), true, why, sizeof(why));
	if (!ret)
		ret = get_array(spec, "clusterIPs", &ips, why, sizeof(why));
	if (!ret)
		ret = get_array(spec, "ports", &ports, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "spec.%s", why);

	/* clusterIPs supersedes clusterIP (dual-stack); old servers send only the latter. */
	if (ips) {
		n = (int)json_object_array_length(ips);
		for (int i = 0; i < n; i++) {
			json_object *v = json_object_array_get_idx(ips, i);

			if (!v || !json_object_is_type(v, json_type_string))
				return dec_err(err, errlen, "spec.clusterIPs[%d]: must be a string",
					       i);
			snprintf(ip, sizeof(ip), "%s", json_object_get_string(v));
			if (!strcmp(ip, "None") || !ip[0])
				continue;
			if (out->n_vips == MODEL_MAX_VIPS)
				return dec_err(err, errlen, "spec.clusterIPs: more than %d",
					       MODEL_MAX_VIPS);
			if (addr_parse(ip, &out->vips[out->n_vips]) ||
			    addr_is_zero(&out->vips[out->n_vips]))
				return dec_err(err, errlen, "spec.clusterIPs[%d]: bad address", i);
			out->n_vips++;
		}
	} else {
		ret = get_str(spec, "clusterIP", ip, sizeof(ip), true, why, sizeof(why));
		if (ret)
			return dec_err(err, errlen, "spec.%s", why);
		if (ip[0] && strcmp(ip, "None")) {
			if (addr_parse(ip, &out->vips[0]) || addr_is_zero(&out->vips[0]))
				return dec_err(err, errlen, "spec.clusterIP: bad address");
			out->n_vips = 1;
		}
	}
	/* Headless and ExternalName services have no VIP to intercept. */
	out->headless = out->n_vips == 0 || !strcmp(type, "ExternalName");

	n = ports ? (int)json_object_array_length(ports) : 0;
	for (int i = 0; i < n; i++) {
		if (out->n_ports == MODEL_MAX_PORTS)
			return dec_err(err, errlen, "spec.ports: more than %d", MODEL_MAX_PORTS);
		ret = decode_service_port(json_object_array_get_idx(ports, i),
					  &out->ports[out->n_ports], why, sizeof(why));
		if (ret)
			return dec_err(err, errlen, "spec.ports[%d]: %s", i, why);
		out->n_ports++;
	}
	decode_kernel_ports(meta, out);
	decode_upstream_protocol(meta, out);
	decode_mtls_mode(meta, out);
	return 0;
}

void model_endpoint_clear(struct model_endpoint *ep)
{
	free(ep->zone);
	free(ep->node);
	free(ep->pod);
	free(ep->pod_uid);
	ep->zone = ep->node = ep->pod = ep->pod_uid = NULL;
}

void model_slice_clear(struct model_slice *s)
{
	for (int i = 0; i < s->n_eps; i++)
		model_endpoint_clear(&s->eps[i]);
	free(s->eps);
	s->eps = NULL;
	s->n_eps = 0;
}

/* A heap copy of string obj[key], NULL when absent; -EINVAL/-ENOMEM. */
static int get_dup(json_object *obj, const char *key, size_t max, char **out, char *err,
		   size_t errlen)
{
	char buf[MODEL_MAX_SUBDOMAIN + 1];
	int ret;

	*out = NULL;
	if (max >= sizeof(buf))
		max = sizeof(buf) - 1;
	ret = get_str(obj, key, buf, max + 1, true, err, errlen);
	if (ret || !buf[0])
		return ret;
	*out = strdup(buf);
	return *out ? 0 : -ENOMEM;
}

/*
 * An endpoint's targetRef, when it names a Pod: "namespace/name" (the
 * namespace defaults to the slice's, ns) in ep->pod and its uid in
 * ep->pod_uid. Another kind, or none: nothing. 0, -EINVAL or -ENOMEM.
 */
static int decode_target_ref(json_object *je, const char *ns, struct model_endpoint *ep, char *err,
			     size_t errlen)
{
	char kind[16], rns[MODEL_MAX_LABEL + 1], name[MODEL_MAX_SUBDOMAIN + 1], why[128];
	char uid[MODEL_MAX_UID + 1], key[MODEL_MAX_KEY + 1];
	json_object *ref;
	int ret = get_object(je, "targetRef", &ref, err, errlen);

	if (ret || !ref)
		return ret;
	ret = get_str(ref, "kind", kind, sizeof(kind), true, why, sizeof(why));
	if (ret || strcmp(kind, "Pod"))
		return ret ? dec_err(err, errlen, "targetRef.%s", why) : 0;
	ret = get_str(ref, "namespace", rns, sizeof(rns), true, why, sizeof(why));
	if (!ret)
		ret = get_str(ref, "name", name, sizeof(name), false, why, sizeof(why));
	if (!ret)
		ret = get_str(ref, "uid", uid, sizeof(uid), true, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "targetRef.%s", why);
	if (!name[0])
		return 0; /* names no pod */
	snprintf(key, sizeof(key), "%s/%s", rns[0] ? rns : ns, name);
	ep->pod = strdup(key);
	ep->pod_uid = uid[0] ? strdup(uid) : NULL;
	return ep->pod && (!uid[0] || ep->pod_uid) ? 0 : -ENOMEM;
}

static int decode_endpoint(json_object *je, const char *ns, bool ipv6, struct model_endpoint *ep,
			   char *err, size_t errlen)
{
	json_object *addrs, *cond, *a0;
	int ret;

	memset(ep, 0, sizeof(*ep));
	if (!json_object_is_type(je, json_type_object))
		return dec_err(err, errlen, "must be an object");
	ret = get_array(je, "addresses", &addrs, err, errlen);
	if (ret)
		return ret;
	/* The API promises one address at least; consumers use the first. */
	if (!addrs || json_object_array_length(addrs) < 1)
		return dec_err(err, errlen, "addresses: is required");
	a0 = json_object_array_get_idx(addrs, 0);
	if (!a0 || !json_object_is_type(a0, json_type_string) ||
	    addr_parse(json_object_get_string(a0), &ep->addr) || addr_is_zero(&ep->addr) ||
	    addr_is_v4(&ep->addr) == ipv6)
		return dec_err(err, errlen, "addresses[0]: not an %s address",
			       ipv6 ? "IPv6" : "IPv4");
	ret = get_object(je, "conditions", &cond, err, errlen);
	if (!ret)
		ret = get_bool(cond, "ready", true, &ep->ready, err, errlen);
	if (!ret)
		ret = get_bool(cond, "serving", true, &ep->serving, err, errlen);
	if (!ret)
		ret = get_bool(cond, "terminating", false, &ep->terminating, err, errlen);
	if (!ret)
		ret = get_dup(je, "zone", MODEL_MAX_LABEL, &ep->zone, err, errlen);
	if (!ret)
		ret = get_dup(je, "nodeName", MODEL_MAX_SUBDOMAIN, &ep->node, err, errlen);
	if (!ret)
		ret = decode_target_ref(je, ns, ep, err, errlen);
	if (ret)
		model_endpoint_clear(ep);
	return ret;
}

int k8s_decode_slice(json_object *obj, struct model_slice *out, char *err, size_t errlen)
{
	json_object *meta = NULL, *labels, *eps, *ports;
	char type[16], why[192];
	int ret, n;

	memset(out, 0, sizeof(*out));
	ret = decode_meta(obj, out->ns, sizeof(out->ns), out->name, sizeof(out->name), &meta, err,
			  errlen);
	if (ret)
		return ret;
	ret = get_object(meta, "labels", &labels, why, sizeof(why));
	if (!ret)
		ret = get_str(labels, K8S_SERVICE_NAME_LABEL, out->service, sizeof(out->service),
			      true, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "metadata.labels: %s", why);
	ret = get_str(obj, "addressType", type, sizeof(type), false, err, errlen);
	if (ret)
		return ret;
	if (!strcmp(type, "IPv6"))
		out->ipv6 = true;
	else if (strcmp(type, "IPv4") && strcmp(type, "FQDN"))
		return dec_err(err, errlen, "addressType: must be IPv4, IPv6 or FQDN");

	ret = get_array(obj, "ports", &ports, err, errlen);
	if (ret)
		return ret;
	n = ports ? (int)json_object_array_length(ports) : 0;
	for (int i = 0; i < n; i++) {
		json_object *jp = json_object_array_get_idx(ports, i);
		struct model_slice_port *p = &out->ports[out->n_ports];

		if (out->n_ports == MODEL_MAX_PORTS)
			return dec_err(err, errlen, "ports: more than %d", MODEL_MAX_PORTS);
		if (!jp || !json_object_is_type(jp, json_type_object))
			return dec_err(err, errlen, "ports[%d]: must be an object", i);
		ret = get_str(jp, "name", p->name, sizeof(p->name), true, why, sizeof(why));
		if (!ret)
			ret = get_port(jp, "port", &p->port, true, why, sizeof(why));
		if (!ret)
			ret = decode_l4(jp, &p->l4, why, sizeof(why));
		if (ret)
			return dec_err(err, errlen, "ports[%d].%s", i, why);
		out->n_ports++;
	}

	/* FQDN endpoints cannot be proxied to by address: keep the slice, empty. */
	if (!strcmp(type, "FQDN"))
		return 0;
	ret = get_array(obj, "endpoints", &eps, err, errlen);
	if (ret)
		return ret;
	n = eps ? (int)json_object_array_length(eps) : 0; /* "endpoints": null is legal */
	if (n > MODEL_MAX_SLICE_ENDPOINTS)
		return dec_err(err, errlen, "endpoints: more than %d", MODEL_MAX_SLICE_ENDPOINTS);
	if (!n)
		return 0;
	out->eps = calloc((size_t)n, sizeof(*out->eps));
	if (!out->eps)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		ret = decode_endpoint(json_object_array_get_idx(eps, i), out->ns, out->ipv6,
				      &out->eps[out->n_eps], why, sizeof(why));
		if (ret) {
			model_slice_clear(out);
			if (ret == -ENOMEM)
				return ret;
			return dec_err(err, errlen, "endpoints[%d].%s", i, why);
		}
		out->n_eps++;
	}
	return 0;
}

/* A DNS subdomain (RFC 1123), as a service account's name is. */
static bool is_subdomain(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n < 1 || n > MODEL_MAX_SUBDOMAIN)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '.' || !c) {
			if (!label || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') ||
		    (c == '-' && !label) || ++label > MODEL_MAX_LABEL)
			return false;
	}
	return true;
}

/*
 * A host address of a pod (status.hostIP or one of status.hostIPs) from
 * text: 0, or -EINVAL with the reason in note (where the pod's node
 * could not be dialled at it).
 */
static int host_addr(const char *field, const char *text, struct shoal_addr *out, char *note,
		     size_t notelen)
{
	const char *why;

	if (addr_parse(text, out))
		return dec_err(note, notelen, "%s: \"%.64s\" is not an IP address", field, text);
	/* The hop would dial the node itself (or nothing) at such an address. */
	why = addr_endpoint_refusal(out);
	if (why)
		return dec_err(note, notelen, "%s: %.64s is %s", field, text, why);
	return 0;
}

/*
 * The pod's node (spec.nodeName) and its addresses (status.hostIP, the
 * primary, then the other family's from status.hostIPs) into out. Never
 * an error: an identity must not be lost over its node's address. What
 * is refused leaves out->n_host 0 (or the node "") with the reason in
 * out->note.
 */
static void decode_pod_node(json_object *spec, json_object *status, struct model_pod *out)
{
	char ip[INET6_ADDRSTRLEN + 1], why[160];
	json_object *ips = NULL;
	size_t n_ips;

	if (get_str(spec, "nodeName", out->node, sizeof(out->node), true, why, sizeof(why))) {
		out->node[0] = '\0';
		dec_err(out->note, sizeof(out->note), "spec.%s", why);
		return;
	}
	if (!out->node[0])
		return; /* not scheduled yet: no node to learn */
	if (!is_subdomain(out->node)) {
		dec_err(out->note, sizeof(out->note),
			"spec.nodeName: \"%.64s\" is not a DNS subdomain", out->node);
		out->node[0] = '\0';
		return;
	}
	if (get_str(status, "hostIP", ip, sizeof(ip), true, why, sizeof(why))) {
		dec_err(out->note, sizeof(out->note), "status.%s", why);
		return;
	}
	if (get_array(status, "hostIPs", &ips, why, sizeof(why))) {
		dec_err(out->note, sizeof(out->note), "status.%s", why);
		return;
	}
	n_ips = ips ? json_object_array_length(ips) : 0;
	/* hostIPs[0] is hostIP (the API's rule); a server that sends only the list. */
	if (!ip[0] && n_ips &&
	    get_str(json_object_array_get_idx(ips, 0), "ip", ip, sizeof(ip), true, why,
		    sizeof(why))) {
		dec_err(out->note, sizeof(out->note), "status.hostIPs[0].%s", why);
		return;
	}
	if (!ip[0]) {
		/* Pending: the kubelet has not reported yet, which is normal. */
		if (out->running)
			dec_err(out->note, sizeof(out->note),
				"status.hostIP: missing on a running pod");
		return;
	}
	if (host_addr("status.hostIP", ip, &out->host[0], out->note, sizeof(out->note)))
		return;
	out->n_host = 1;
	/* Dual stack: the other family's address, for a node that listens there only. */
	for (size_t i = 0; i < n_ips && out->n_host < 2; i++) {
		char field[48], bad[MODEL_MAX_NOTE] = "";
		struct shoal_addr a;

		snprintf(field, sizeof(field), "status.hostIPs[%zu]", i);
		if (get_str(json_object_array_get_idx(ips, i), "ip", ip, sizeof(ip), false, why,
			    sizeof(why))) {
			dec_err(bad, sizeof(bad), "%s.%s", field, why);
		} else if (!host_addr(field, ip, &a, bad, sizeof(bad)) &&
			   addr_is_v4(&a) != addr_is_v4(&out->host[0])) {
			out->host[1] = a;
			out->n_host = 2;
		}
		/* The primary is good: a bad other entry is only noted. */
		if (bad[0] && !out->note[0])
			snprintf(out->note, sizeof(out->note), "%s", bad);
	}
}

int k8s_decode_pod(json_object *obj, struct model_pod *out, char *err, size_t errlen)
{
	json_object *meta = NULL, *spec, *status;
	char phase[16], why[192];
	int ret;

	memset(out, 0, sizeof(*out));
	ret = decode_meta(obj, out->ns, sizeof(out->ns), out->name, sizeof(out->name), &meta, err,
			  errlen);
	if (ret)
		return ret;
	ret = get_str(meta, "uid", out->uid, sizeof(out->uid), true, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "metadata.%s", why);
	ret = get_object(obj, "spec", &spec, err, errlen);
	if (!ret)
		ret = get_object(obj, "status", &status, err, errlen);
	if (ret)
		return ret;
	ret = get_str(spec, "serviceAccountName", out->service_account,
		      sizeof(out->service_account), true, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "spec.%s", why);
	/* The API server's admission sets it; "default" is what it would set. */
	if (!out->service_account[0])
		snprintf(out->service_account, sizeof(out->service_account), "default");
	if (!is_subdomain(out->service_account))
		return dec_err(err, errlen,
			       "spec.serviceAccountName: \"%.64s\" is not a DNS subdomain",
			       out->service_account);
	{
		/* What the hop will present and ask for: the SPIFFE path's rule. */
		char id[CONFIG_MAX_IDENTITY];

		snprintf(id, sizeof(id), "%s/%s", out->ns, out->service_account);
		if (!config_identity_valid(id))
			return dec_err(err, errlen,
				       "metadata.namespace: \"%.64s\" is not a DNS label", out->ns);
	}
	ret = get_str(status, "phase", phase, sizeof(phase), true, why, sizeof(why));
	if (ret)
		return dec_err(err, errlen, "status.%s", why);
	out->finished = !strcmp(phase, "Succeeded") || !strcmp(phase, "Failed");
	out->running = !strcmp(phase, "Running");
	decode_pod_node(spec, status, out);
	return 0;
}

int k8s_decode_status(json_object *obj, struct k8s_status *out)
{
	json_object *code = get(obj, "code");
	char kind[16];

	memset(out, 0, sizeof(*out));
	if (get_str(obj, "kind", kind, sizeof(kind), false, NULL, 0) || strcmp(kind, "Status"))
		return -EINVAL;
	if (code && json_object_is_type(code, json_type_int))
		out->code = (int)json_object_get_int64(code);
	/* Long texts are cut, not refused: they only go to the log. */
	snprintf(out->reason, sizeof(out->reason), "%s",
		 get(obj, "reason") ? json_object_get_string(get(obj, "reason")) : "");
	snprintf(out->message, sizeof(out->message), "%s",
		 get(obj, "message") ? json_object_get_string(get(obj, "message")) : "");
	return 0;
}

void k8s_event_clear(struct k8s_event *ev)
{
	if (ev->kind == K8S_KIND_ENDPOINTSLICE && ev->type != K8S_EV_BOOKMARK &&
	    ev->type != K8S_EV_ERROR)
		model_slice_clear(&ev->slice);
}

/* metadata.resourceVersion of obj, "" when absent. */
static int decode_rv(json_object *obj, char *rv, size_t len, char *err, size_t errlen)
{
	json_object *meta;
	int ret = get_object(obj, "metadata", &meta, err, errlen);

	rv[0] = '\0';
	if (ret || !meta)
		return ret;
	return get_str(meta, "resourceVersion", rv, len, true, err, errlen);
}

int k8s_decode_event(json_object *obj, enum k8s_kind kind, struct k8s_event *ev, char *err,
		     size_t errlen)
{
	static const char *const types[] = {
	    [K8S_EV_ADDED] = "ADDED",	  [K8S_EV_MODIFIED] = "MODIFIED",
	    [K8S_EV_DELETED] = "DELETED", [K8S_EV_BOOKMARK] = "BOOKMARK",
	    [K8S_EV_ERROR] = "ERROR",
	};
	json_object *object;
	char type[16];
	int ret;

	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	ev->type = K8S_EV_ERROR; /* so that clearing a half-decoded event frees nothing */
	if (!json_object_is_type(obj, json_type_object))
		return dec_err(err, errlen, "event: must be a JSON object");
	ret = get_str(obj, "type", type, sizeof(type), false, err, errlen);
	if (ret)
		return ret;
	ret = get_object(obj, "object", &object, err, errlen);
	if (ret)
		return ret;
	if (!object)
		return dec_err(err, errlen, "object: is required");
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(type, types[i]))
			continue;
		if (i == K8S_EV_ERROR) {
			if (k8s_decode_status(object, &ev->status))
				return dec_err(err, errlen, "ERROR event without a Status");
			return 0;
		}
		ret = decode_rv(object, ev->rv, sizeof(ev->rv), err, errlen);
		if (ret)
			return ret;
		if (i == K8S_EV_BOOKMARK) {
			ev->type = K8S_EV_BOOKMARK;
			return 0;
		}
		if (kind == K8S_KIND_SERVICE)
			ret = k8s_decode_service(object, &ev->svc, err, errlen);
		else if (kind == K8S_KIND_ENDPOINTSLICE)
			ret = k8s_decode_slice(object, &ev->slice, err, errlen);
		else
			ret = 0; /* K8S_KIND_RAW: the caller decodes "object" */
		if (!ret)
			ev->type = (enum k8s_event_type)i;
		return ret;
	}
	return dec_err(err, errlen, "type: unknown event type");
}

int k8s_decode_event_text(const char *text, size_t len, enum k8s_kind kind, struct k8s_event *ev,
			  char *err, size_t errlen)
{
	json_tokener *tok = json_tokener_new();
	json_object *obj;
	int ret;

	memset(ev, 0, sizeof(*ev));
	ev->type = K8S_EV_ERROR;
	if (!tok)
		return -ENOMEM;
	obj = json_tokener_parse_ex(tok, text, (int)len);
	if (!obj) {
		ret = dec_err(err, errlen, "json: %s",
			      json_tokener_error_desc(json_tokener_get_error(tok)));
	} else {
		ret = k8s_decode_event(obj, kind, ev, err, errlen);
		json_object_put(obj);
	}
	json_tokener_free(tok);
	return ret;
}

int k8s_decode_list(json_object *obj, char *rv, size_t rvlen, char *cont, size_t contlen,
		    json_object **items)
{
	json_object *meta;
	char why[64];

	*items = NULL;
	if (decode_rv(obj, rv, rvlen, why, sizeof(why)) ||
	    get_object(obj, "metadata", &meta, why, sizeof(why)) || !meta ||
	    get_str(meta, "continue", cont, contlen, true, why, sizeof(why)) ||
	    get_array(obj, "items", items, why, sizeof(why)))
		return -EINVAL;
	return 0;
}

/* ---- framing ---- */

int k8s_stream_init(struct k8s_stream *s, size_t max_bytes)
{
	/* json-c's default depth (32) is plenty: a slice nests 5 deep. */
	s->tok = json_tokener_new();
	s->max_bytes = max_bytes;
	s->in_value = 0;
	return s->tok ? 0 : -ENOMEM;
}

void k8s_stream_fini(struct k8s_stream *s)
{
	if (s->tok)
		json_tokener_free(s->tok);
	s->tok = NULL;
}

void k8s_stream_reset(struct k8s_stream *s)
{
	json_tokener_reset(s->tok);
	s->in_value = 0;
}

int k8s_stream_feed(struct k8s_stream *s, const char *buf, size_t len, k8s_stream_cb cb, void *ctx)
{
	while (len) {
		/* json-c takes an int length: feed huge buffers in slices. */
		int n = len > (1u << 30) ? (1 << 30) : (int)len;
		json_object *obj;
		enum json_tokener_error jerr;
		size_t used;
		int ret;

		/* Whitespace between values (the newline framing) is not a value. */
		if (s->in_value == 0 &&
		    (*buf == '\n' || *buf == '\r' || *buf == ' ' || *buf == '\t')) {
			buf++;
			len--;
			continue;
		}
		obj = json_tokener_parse_ex(s->tok, buf, n);
		jerr = json_tokener_get_error(s->tok);
		used = obj ? json_tokener_get_parse_end(s->tok) : (size_t)n;
		if (!obj && jerr != json_tokener_continue)
			return -EBADMSG;
		s->in_value += used;
		if (s->in_value > s->max_bytes) {
			json_object_put(obj);
			return -EMSGSIZE;
		}
		buf += used;
		len -= used;
		if (!obj)
			continue;
		/*
		 * A bare number or literal at the top level ends only at the
		 * next byte; objects and arrays end at their bracket. Only
		 * objects are events, so any other value is a framing error.
		 */
		if (!json_object_is_type(obj, json_type_object)) {
			json_object_put(obj);
			return -EBADMSG;
		}
		json_tokener_reset(s->tok);
		s->in_value = 0;
		ret = cb(ctx, obj);
		if (ret)
			return ret;
	}
	return 0;
}

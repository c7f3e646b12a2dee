// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The node schema: the top level of the file and every section but
 * services (node, bpf, proxy and proxy.http, tracing, admin, kubernetes),
 * as field tables for the walker (config_walk.c) and the parse functions
 * of their fields.
 */
#include "config/config_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/addr.h"

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

static int parse_opaque_port(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	uint64_t v;
	int j, err;

	(void)i;
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
static const struct seq_spec opaque_ports_seq = {
    parse_opaque_port, CONFIG_MAX_OPAQUE_PORTS, "ports",
    SEQ_REPLACES_DEFAULT(struct config, n_opaque_ports)};

/* One protocol name of proxy.http.upgrade_protocols: a token, stored lowercase. */
static int parse_http_upgrade(struct cfg_parser *p, void *obj, int i)
{
	struct config *cfg = obj;
	char *out;
	int err;

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
static const struct seq_spec http_upgrades_seq = {
    parse_http_upgrade, CONFIG_MAX_HTTP_UPGRADES, "protocols",
    SEQ_REPLACES_DEFAULT(struct config, n_http_upgrades)};

static const struct field http_fields[] = {
    /* The request line is part of the head, so it cannot be the longer. */
    {"max_request_line", FIELD_U32, offsetof(struct config, http_max_request_line),
     CONFIG_MIN_HTTP_LINE, CONFIG_MAX_HTTP_HEAD, .at_most = "max_head_bytes"},
    {"max_head_bytes", FIELD_U32, offsetof(struct config, http_max_head_bytes),
     CONFIG_MIN_HTTP_HEAD, CONFIG_MAX_HTTP_HEAD},
    {"max_headers", FIELD_U32, offsetof(struct config, http_max_headers), 1,
     CONFIG_MAX_HTTP_HEADERS},
    {"pool_idle_timeout_ms", FIELD_U32, offsetof(struct config, http_pool_idle_timeout_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
    {"pool_max_idle_per_endpoint", FIELD_U32,
     offsetof(struct config, http_pool_max_idle_per_endpoint), 0, CONFIG_MAX_POOL_IDLE},
    {"request_body_timeout_ms", FIELD_U32, offsetof(struct config, http_request_body_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"response_head_timeout_ms", FIELD_U32, offsetof(struct config, http_response_head_timeout_ms),
     0, CONFIG_MAX_TIMEOUT_MS},
    {"request_timeout_ms", FIELD_U32, offsetof(struct config, http_request_timeout_ms), 0,
     CONFIG_MAX_TIMEOUT_MS},
    {"max_requests_per_connection", FIELD_U32,
     offsetof(struct config, http_max_requests_per_connection), 0, CONFIG_MAX_REQUESTS_PER_CONN},
    {"max_connection_age_ms", FIELD_U32, offsetof(struct config, http_max_connection_age_ms), 0,
     CONFIG_MAX_IDLE_TIMEOUT_MS},
    {"forwarded_for", FIELD_BOOL, offsetof(struct config, http_forwarded_for)},
    {"forwarded_proto", FIELD_BOOL, offsetof(struct config, http_forwarded_proto)},
    {"request_id", FIELD_BOOL, offsetof(struct config, http_request_id)},
    {"timeout_header", FIELD_BOOL, offsetof(struct config, http_timeout_header)},
    {"upgrade_protocols", FIELD_SEQ, .seq = &http_upgrades_seq},
};

static const struct field http2_fields[] = {
    {"max_concurrent_streams", FIELD_U32, offsetof(struct config, http2.max_concurrent_streams), 1,
     CONFIG_MAX_H2_STREAMS},
    {"max_header_list_bytes", FIELD_U32, offsetof(struct config, http2.max_header_list_bytes),
     CONFIG_MIN_H2_HEADER_LIST, CONFIG_MAX_H2_HEADER_LIST},
    {"hpack_table_bytes", FIELD_U32, offsetof(struct config, http2.hpack_table_bytes), 0,
     CONFIG_MAX_H2_HPACK_TABLE},
    {"stream_window_bytes", FIELD_U32, offsetof(struct config, http2.stream_window_bytes),
     CONFIG_MIN_H2_WINDOW, CONFIG_MAX_H2_WINDOW},
    {"session_window_bytes", FIELD_U32, offsetof(struct config, http2.session_window_bytes),
     CONFIG_MIN_H2_WINDOW, CONFIG_MAX_H2_WINDOW, .at_least = "stream_window_bytes"},
    {"max_pending_acks", FIELD_U32, offsetof(struct config, http2.max_pending_acks), 1,
     CONFIG_MAX_H2_PENDING_ACKS},
    {"reset_burst", FIELD_U32, offsetof(struct config, http2.reset_burst), 1, CONFIG_MAX_H2_RESETS},
    {"reset_rate", FIELD_U32, offsetof(struct config, http2.reset_rate), 1, CONFIG_MAX_H2_RESETS},
    {"max_continuations", FIELD_U32, offsetof(struct config, http2.max_continuations), 1,
     CONFIG_MAX_H2_CONTINUATIONS},
    {"max_sent_resets", FIELD_U32, offsetof(struct config, http2.max_sent_resets), 1,
     CONFIG_MAX_H2_RESETS},
    {"stall_timeout_ms", FIELD_U32, offsetof(struct config, http2.stall_timeout_ms), 0,
     CONFIG_MAX_H2_STALL_TIMEOUT_MS},
    {"grpc_head_hold_ms", FIELD_U32, offsetof(struct config, http2.grpc_head_hold_ms), 0,
     CONFIG_MAX_H2_GRPC_HEAD_HOLD_MS},
};

static const struct field proxy_fields[] = {
    {"workers", FIELD_INT, offsetof(struct config, workers), 0, CONFIG_MAX_WORKERS},
    {"connect_timeout_ms", FIELD_U32, offsetof(struct config, connect_timeout_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
    {"connect_deadline_ms", FIELD_U32, offsetof(struct config, connect_deadline_ms), 1,
     CONFIG_MAX_TIMEOUT_MS, .at_least = "connect_timeout_ms"},
    {"buffer_bytes", FIELD_U32, offsetof(struct config, buffer_bytes), CONFIG_MIN_BUFFER_BYTES,
     CONFIG_MAX_BUFFER_BYTES},
    {"max_connections", FIELD_U32, offsetof(struct config, max_connections), 1,
     CONFIG_MAX_CONNECTIONS},
    {"max_buffer_memory_mib", FIELD_U32, offsetof(struct config, max_buffer_memory_mib), 0,
     CONFIG_MAX_BUFFER_MEMORY_MIB},
    {"max_connections_per_client", FIELD_U32, offsetof(struct config, max_connections_per_client),
     0, CONFIG_MAX_CONNECTIONS},
    {"detect_timeout_ms", FIELD_U32, offsetof(struct config, detect_timeout_ms), 1,
     CONFIG_MAX_DETECT_TIMEOUT_MS},
    {"opaque_ports", FIELD_SEQ, .seq = &opaque_ports_seq},
    {"idle_timeout_ms", FIELD_U32, offsetof(struct config, idle_timeout_ms), 0,
     CONFIG_MAX_IDLE_TIMEOUT_MS},
    {"drain_timeout_ms", FIELD_U32, offsetof(struct config, drain_timeout_ms), 0,
     CONFIG_MAX_DRAIN_TIMEOUT_MS},
    {"http", FIELD_MAP, FIELD_MAP_OF(http_fields)},
    {"http2", FIELD_MAP, FIELD_MAP_OF(http2_fields)},
};

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
			       cp_echo(t->collector_url, strlen(t->collector_url), buf));
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
		       cp_echo(s, n, buf));
}

static int parse_span_kind(struct cfg_parser *p, void *obj)
{
	static const struct cp_word kinds[] = {{"client", CONFIG_SPAN_KIND_CLIENT},
					       {"server", CONFIG_SPAN_KIND_SERVER}};
	struct config_tracing *t = obj;
	int v, err = cp_word(p, kinds, ARRAY_SIZE(kinds), &v);

	if (!err)
		t->span_kind = v;
	return err;
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
			CONFIG_MIN_TRACE_RING, CONFIG_MAX_TRACE_RING},
    {"batch_size", FIELD_U32, offsetof(struct config_tracing, batch_size), 1,
     CONFIG_MAX_TRACE_BATCH},
    {"batch_delay_ms", FIELD_U32, offsetof(struct config_tracing, batch_delay_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
    {"timeout_ms", FIELD_U32, offsetof(struct config_tracing, timeout_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
};

static int check_tracing(struct cfg_parser *p, void *obj, const struct map_seen *seen)
{
	const struct config_tracing *t = obj;

	/* The rings index with a mask. */
	if (t->ring_size & (t->ring_size - 1)) {
		cp_path_push_key(p, "ring_size");
		return cp_fail(p, seen->line[TRACING_F_RING], "must be a power of two, got %u",
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
			       cp_echo(cfg->admin.listen, strlen(cfg->admin.listen), buf));
	return 0;
}

static const struct field admin_fields[] = {
    {"listen", FIELD_FUNC, .parse = parse_admin_listen},
};

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
			       cp_echo(cfg->k8s_api_server, strlen(cfg->k8s_api_server), buf));
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
			       cp_echo(cfg->k8s_proxy_url, strlen(cfg->k8s_proxy_url), buf));
	return 0;
}

/* Limits of kubernetes.enrollment.resync_ms: below 500 ms the /proc and
 * cgroup scans would busy a core; above 5 min a dead netns lingers. */
#define CONFIG_MIN_ENROLL_RESYNC_MS 500
#define CONFIG_MAX_ENROLL_RESYNC_MS 300000

/* A node name: a DNS subdomain, as the API server requires of Node objects. */
static int parse_node_name(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	char *n = cfg->k8s_enroll_node_name, buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a node name", n, sizeof(cfg->k8s_enroll_node_name));

	if (err)
		return err;
	if (!*n || strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(n) || *n == '-' ||
	    *n == '.')
		return cp_fail(p, cp_line(p),
			       "must be a node name (lower-case letters, digits, '-' and '.'), "
			       "got \"%s\"",
			       cp_echo(n, strlen(n), buf));
	return 0;
}

/* An absolute path into out (size bytes), or "" for none. */
static int parse_path_or_none(struct cfg_parser *p, char *out, size_t size)
{
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a path", out, size);

	if (err)
		return err;
	if (*out && *out != '/')
		return cp_fail(p, cp_line(p), "must be an absolute path or \"\", got \"%s\"",
			       cp_echo(out, strlen(out), buf));
	return 0;
}

/* A socket path that fits sun_path, or "" for no CNI plugin. */
static int parse_cni_socket(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;

	return parse_path_or_none(p, cfg->k8s_enroll_cni_socket,
				  sizeof(cfg->k8s_enroll_cni_socket));
}

static int parse_netns_dir(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;

	return parse_path_or_none(p, cfg->k8s_enroll_netns_dir, sizeof(cfg->k8s_enroll_netns_dir));
}

static const struct field enrollment_fields[] = {
    {"enabled", FIELD_BOOL, offsetof(struct config, k8s_enroll)},
    {"node_name", FIELD_FUNC, .parse = parse_node_name},
    {"cgroup_root", FIELD_PATH, offsetof(struct config, k8s_enroll_cgroup_root)},
    {"cni_socket", FIELD_FUNC, .parse = parse_cni_socket},
    {"netns_dir", FIELD_FUNC, .parse = parse_netns_dir},
    {"resync_ms", FIELD_U32, offsetof(struct config, k8s_enroll_resync_ms),
     CONFIG_MIN_ENROLL_RESYNC_MS, CONFIG_MAX_ENROLL_RESYNC_MS},
};

/* The section's presence turns enrollment on, unless enabled: false. */
static int parse_enrollment(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct map_seen seen;

	cfg->k8s_enroll = true;
	return cp_map(p, enrollment_fields, ARRAY_SIZE(enrollment_fields), obj, &seen);
}

static const struct field kubernetes_fields[] = {
    {"api_server", FIELD_FUNC, .parse = parse_api_server},
    {"proxy_url", FIELD_FUNC, .parse = parse_proxy_url},
    {"ca_file", FIELD_PATH, offsetof(struct config, k8s_ca_file)},
    {"token_file", FIELD_PATH, offsetof(struct config, k8s_token_file)},
    {"backoff_max_ms", FIELD_U32, offsetof(struct config, k8s_backoff_max_ms),
     CONFIG_MIN_K8S_BACKOFF_MS, CONFIG_MAX_K8S_BACKOFF_MS},
    {"enrollment", FIELD_FUNC, .parse = parse_enrollment},
    {"authorization_policies", FIELD_BOOL, offsetof(struct config, k8s_policies)},
};

/* The section's presence turns the source on; an empty one means in-cluster. */
static int parse_kubernetes(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct map_seen seen;

	cfg->k8s_enabled = true;
	return cp_map(p, kubernetes_fields, ARRAY_SIZE(kubernetes_fields), obj, &seen);
}

/* ---- identity ---- */

/* A number from lo to hi into *out; what names it in the message. */
static int parse_fraction(struct cfg_parser *p, double lo, double hi, double *out)
{
	char num[64], want[64], buf[CONFIG_ECHO_MAX + 4], *end;
	const char *s;
	size_t n;
	double v;
	int err;

	snprintf(want, sizeof(want), "a number from %g to %g", lo, hi);
	err = cp_scalar(p, want, &s, &n);
	if (err)
		return err;
	if (n && n < sizeof(num)) {
		memcpy(num, s, n);
		num[n] = '\0';
		errno = 0;
		v = strtod(num, &end);
		if (!errno && end == num + n && !memchr(num, '\0', n) && v >= lo && v <= hi) {
			*out = v;
			return 0;
		}
	}
	return cp_fail(p, cp_line(p), "must be %s, got \"%s\"", want, cp_echo(s, n, buf));
}

static int parse_renew_fraction(struct cfg_parser *p, void *obj)
{
	struct config_identity *id = obj;

	return parse_fraction(p, CONFIG_MIN_ID_RENEW_FRACTION, CONFIG_MAX_ID_RENEW_FRACTION,
			      &id->renew_fraction);
}

static int parse_renew_jitter(struct cfg_parser *p, void *obj)
{
	struct config_identity *id = obj;

	return parse_fraction(p, 0.0, CONFIG_MAX_ID_RENEW_JITTER, &id->renew_jitter);
}

/* A trust domain: a DNS name in lower case (SPIFFE's rule for the host part). */
static int parse_trust_domain(struct cfg_parser *p, void *obj)
{
	struct config_identity *id = obj;
	char *t = id->trust_domain, buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "a trust domain", t, sizeof(id->trust_domain));

	if (err)
		return err;
	if (!*t || strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != strlen(t) || *t == '.' ||
	    *t == '-' || t[strlen(t) - 1] == '.' || strstr(t, ".."))
		return cp_fail(p, cp_line(p),
			       "must be a trust domain (lower-case letters, digits, '-', '_' "
			       "and '.'), got \"%s\"",
			       cp_echo(t, strlen(t), buf));
	return 0;
}

static int parse_id_source(struct cfg_parser *p, void *obj)
{
	static const struct cp_word sources[] = {{"issued", CONFIG_ID_SOURCE_ISSUED},
						 {"files", CONFIG_ID_SOURCE_FILES}};
	struct config_identity *id = obj;
	int v, err = cp_word(p, sources, ARRAY_SIZE(sources), &v);

	if (!err)
		id->source = (uint8_t)v;
	return err;
}

/* https:// and a host: the issuer is always verified against the anchors. */
static int parse_id_server_url(struct cfg_parser *p, void *obj)
{
	struct config_identity *id = obj;
	char buf[CONFIG_ECHO_MAX + 4];
	int err = cp_string(p, "an https:// URL", id->server_url, sizeof(id->server_url));

	if (err)
		return err;
	if (strncmp(id->server_url, "https://", 8) || !id->server_url[8] ||
	    strchr("/:?#", id->server_url[8]) || strpbrk(id->server_url, " \t"))
		return cp_fail(p, cp_line(p), "must be https://HOST[:PORT], got \"%s\"",
			       cp_echo(id->server_url, strlen(id->server_url), buf));
	return 0;
}

static int parse_id_dir(struct cfg_parser *p, void *obj)
{
	struct config_identity *id = obj;

	return parse_path_or_none(p, id->dir, sizeof(id->dir));
}

enum { ID_F_SOURCE = 2, ID_F_DIR = 6 };

static const struct field identity_fields[] = {
    {"enabled", FIELD_BOOL, offsetof(struct config_identity, enabled)},
    {"trust_domain", FIELD_FUNC, .parse = parse_trust_domain},
    [ID_F_SOURCE] = {"source", FIELD_FUNC, .parse = parse_id_source},
    {"server_url", FIELD_FUNC, .parse = parse_id_server_url},
    {"token_file", FIELD_PATH, offsetof(struct config_identity, token_file)},
    {"anchors_file", FIELD_PATH, offsetof(struct config_identity, anchors_file)},
    [ID_F_DIR] = {"dir", FIELD_FUNC, .parse = parse_id_dir},
    {"lifetime_s", FIELD_U32, offsetof(struct config_identity, lifetime_s),
     CONFIG_MIN_ID_LIFETIME_S, CONFIG_MAX_ID_LIFETIME_S},
    {"renew_fraction", FIELD_FUNC, .parse = parse_renew_fraction},
    {"renew_jitter", FIELD_FUNC, .parse = parse_renew_jitter},
    {"backoff_min_ms", FIELD_U32, offsetof(struct config_identity, backoff_min_ms),
     CONFIG_MIN_ID_BACKOFF_MS, CONFIG_MAX_ID_BACKOFF_MS, .at_most = "backoff_max_ms"},
    {"backoff_max_ms", FIELD_U32, offsetof(struct config_identity, backoff_max_ms),
     CONFIG_MIN_ID_BACKOFF_MS, CONFIG_MAX_ID_BACKOFF_MS},
    {"drop_grace_ms", FIELD_U32, offsetof(struct config_identity, drop_grace_ms), 0,
     CONFIG_MAX_ID_DROP_GRACE_MS},
    {"poll_ms", FIELD_U32, offsetof(struct config_identity, poll_ms), CONFIG_MIN_ID_POLL_MS,
     CONFIG_MAX_ID_POLL_MS},
    {"timeout_ms", FIELD_U32, offsetof(struct config_identity, timeout_ms), 1,
     CONFIG_MAX_TIMEOUT_MS},
};

/* The section's presence turns identity on, unless enabled: false. */
static int parse_identity(struct cfg_parser *p, void *obj)
{
	struct config *cfg = obj;
	struct config_identity *id = &cfg->identity;
	struct map_seen seen;
	int err;

	id->enabled = true;
	p->identity_line = p->key_line;
	err = cp_map(p, identity_fields, ARRAY_SIZE(identity_fields), id, &seen);
	if (err)
		return err;
	if (id->enabled && id->source == CONFIG_ID_SOURCE_FILES && !id->dir[0]) {
		int line = seen.mask & (1u << ID_F_DIR)	     ? seen.line[ID_F_DIR]
			   : seen.mask & (1u << ID_F_SOURCE) ? seen.line[ID_F_SOURCE]
							     : seen.start_line;

		cp_path_push_key(p, "dir");
		return cp_fail(p, line,
			       "source files needs dir, the directory of "
			       "<ns>_<sa>.key/.crt and anchors.pem");
	}
	return 0;
}

static const struct field root_fields[] = {
    {"node", FIELD_FUNC, .parse = parse_node},
    {"bpf", FIELD_MAP, FIELD_MAP_OF(bpf_fields)},
    {"proxy", FIELD_MAP, FIELD_MAP_OF(proxy_fields)},
    {"tracing", FIELD_MAP, offsetof(struct config, tracing), FIELD_MAP_OF(tracing_fields),
     .check = check_tracing},
    {"admin", FIELD_MAP, FIELD_MAP_OF(admin_fields)},
    {"services", FIELD_SEQ, .seq = &services_seq},
    {"kubernetes", FIELD_FUNC, .parse = parse_kubernetes},
    {"identity", FIELD_FUNC, .parse = parse_identity},
    {"policy", FIELD_FUNC, .parse = parse_policy},
    {"mtls", FIELD_FUNC, .parse = parse_mtls},
};

/* The stream: exactly one document whose top level is a mapping. */
int cp_document(struct cfg_parser *p)
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

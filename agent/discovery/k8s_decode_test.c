// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The decoder against every line of the API-shaped fixtures
 * (tests/k8s/fixtures, copied from shared/fixtures/k8s), and the framer
 * against those lines split at every byte offset.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "discovery/k8s_decode.h"
#include "discovery/test_paths.h"

static char *text;
static size_t text_len;
static struct k8s_event ev;
static char err[256];

static void setup(void)
{
	text = NULL;
	memset(&ev, 0, sizeof(ev));
	ev.type = K8S_EV_ERROR;
	err[0] = '\0';
}

static void teardown(void)
{
	k8s_event_clear(&ev);
	free(text);
}

TestSuite(k8s_decode, .init = setup, .fini = teardown);

static void load(const char *name)
{
	char path[512];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", K8S_FIXTURES_DIR, name);
	f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = malloc((size_t)n + 1);
	cr_assert_not_null(text);
	cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
	text[n] = '\0';
	text_len = (size_t)n;
	fclose(f);
}

/* Line i (0-based) of text, its length in *len; NULL past the end. */
static const char *line(int i, size_t *len)
{
	const char *p = text;

	*len = 0;

	while (i-- > 0) {
		p = strchr(p, '\n');
		if (!p)
			return NULL;
		p++;
	}
	if (!*p)
		return NULL;
	*len = strchrnul(p, '\n') - p;
	return p;
}

static void decode_line(int i, enum k8s_kind kind)
{
	size_t len;
	const char *l = line(i, &len);

	cr_assert_not_null(l, "fixture has no line %d", i);
	k8s_event_clear(&ev);
	cr_assert_eq(k8s_decode_event_text(l, len, kind, &ev, err, sizeof(err)), 0, "line %d: %s",
		     i + 1, err);
}

static void expect_addr(const struct shoal_addr *a, const char *want)
{
	char buf[ADDR_STR_MAX];

	cr_expect_str_eq(addr_ntop(a, buf, sizeof(buf)), want);
}

Test(k8s_decode, slice_added_two_ready_endpoints)
{
	load("endpointslices.watch.ndjson");
	decode_line(0, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_ADDED);
	cr_expect_str_eq(ev.rv, "48213");
	cr_expect_str_eq(ev.slice.ns, "shop");
	cr_expect_str_eq(ev.slice.name, "web-7xq2k");
	cr_expect_str_eq(ev.slice.service, "web");
	cr_expect_not(ev.slice.ipv6);
	cr_assert_eq(ev.slice.n_eps, 2);
	expect_addr(&ev.slice.eps[0].addr, "10.244.1.17");
	cr_expect(ev.slice.eps[0].ready && ev.slice.eps[0].serving);
	cr_expect_not(ev.slice.eps[0].terminating);
	cr_expect_str_eq(ev.slice.eps[0].node, "node-a");
	cr_expect_str_eq(ev.slice.eps[0].zone, "zone-1");
	cr_expect_str_eq(ev.slice.eps[1].node, "node-b");
	/* targetRef: the pod behind each, for its identity. */
	cr_expect_str_eq(ev.slice.eps[0].pod, "shop/web-6d9f7c9b8-abcde");
	cr_expect_str_eq(ev.slice.eps[0].pod_uid, "a1b2c3d4-0000-4000-8000-000000000001");
	cr_expect_str_eq(ev.slice.eps[1].pod, "shop/web-6d9f7c9b8-fghij");
	cr_assert_eq(ev.slice.n_ports, 1);
	cr_expect_str_eq(ev.slice.ports[0].name, "http");
	cr_expect_eq(ev.slice.ports[0].port, 8080);
	cr_expect_eq(ev.slice.ports[0].l4, MODEL_L4_TCP);
}

Test(k8s_decode, slice_modified_terminating_and_missing_conditions)
{
	load("endpointslices.watch.ndjson");
	decode_line(1, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_MODIFIED);
	cr_assert_eq(ev.slice.n_eps, 3);
	cr_expect_not(ev.slice.eps[0].ready);
	cr_expect(ev.slice.eps[0].serving);
	cr_expect(ev.slice.eps[0].terminating);
	/* "conditions": {} means ready and serving, not terminating. */
	expect_addr(&ev.slice.eps[2].addr, "10.244.1.18");
	cr_expect(ev.slice.eps[2].ready);
	cr_expect(ev.slice.eps[2].serving);
	cr_expect_not(ev.slice.eps[2].terminating);
}

Test(k8s_decode, slice_with_null_endpoints_and_ports)
{
	load("endpointslices.watch.ndjson");
	decode_line(2, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_ADDED);
	cr_expect_str_eq(ev.slice.service, "cache");
	cr_expect_eq(ev.slice.n_eps, 0);
	cr_expect_eq(ev.slice.n_ports, 0);
	cr_expect_null(ev.slice.eps);
}

Test(k8s_decode, slice_ipv6_without_serving_or_zone)
{
	load("endpointslices.watch.ndjson");
	decode_line(3, K8S_KIND_ENDPOINTSLICE);
	cr_expect(ev.slice.ipv6);
	cr_assert_eq(ev.slice.n_eps, 1);
	expect_addr(&ev.slice.eps[0].addr, "fd00:10:244:1::17");
	cr_expect(ev.slice.eps[0].ready);
	cr_expect(ev.slice.eps[0].serving);
	cr_expect_null(ev.slice.eps[0].zone);
	cr_expect_str_eq(ev.slice.eps[0].node, "node-a");
	cr_expect_eq(ev.slice.ports[0].l4, MODEL_L4_TCP); /* protocol defaults to TCP */
}

Test(k8s_decode, bookmark_deleted_and_error_410)
{
	load("endpointslices.watch.ndjson");
	decode_line(4, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_BOOKMARK);
	cr_expect_str_eq(ev.rv, "48412");
	decode_line(5, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_DELETED);
	cr_expect_str_eq(ev.slice.name, "cache-q8w4r");
	cr_expect_str_eq(ev.rv, "48420");
	decode_line(6, K8S_KIND_ENDPOINTSLICE);
	cr_expect_eq(ev.type, K8S_EV_ERROR);
	cr_expect_eq(ev.status.code, 410);
	cr_expect_str_eq(ev.status.reason, "Expired");
	cr_expect(strstr(ev.status.message, "too old resource version") != NULL);
}

Test(k8s_decode, service_cluster_ip_named_target_port)
{
	load("services.watch.ndjson");
	decode_line(0, K8S_KIND_SERVICE);
	cr_expect_eq(ev.type, K8S_EV_ADDED);
	cr_expect_str_eq(ev.svc.ns, "shop");
	cr_expect_str_eq(ev.svc.name, "web");
	cr_expect_not(ev.svc.headless);
	cr_assert_eq(ev.svc.n_vips, 1);
	expect_addr(&ev.svc.vips[0], "10.96.14.2");
	cr_assert_eq(ev.svc.n_ports, 1);
	cr_expect_eq(ev.svc.ports[0].port, 80);
	cr_expect_eq(ev.svc.ports[0].target_port, 0);
	cr_expect_str_eq(ev.svc.ports[0].target_name, "http");
	cr_expect_eq(ev.svc.ports[0].app, CONFIG_PROTO_HTTP);
}

Test(k8s_decode, service_dual_stack)
{
	load("services.watch.ndjson");
	decode_line(1, K8S_KIND_SERVICE);
	cr_assert_eq(ev.svc.n_vips, 2);
	expect_addr(&ev.svc.vips[0], "10.96.14.9");
	expect_addr(&ev.svc.vips[1], "fd00:10:96::e09");
	cr_assert_eq(ev.svc.n_ports, 2);
	cr_expect_eq(ev.svc.ports[0].app, CONFIG_PROTO_H2C);
	cr_expect_eq(ev.svc.ports[0].target_port, 9090);
	/* No appProtocol, name "db": detected (model_build makes 5432 opaque). */
	cr_expect_eq(ev.svc.ports[1].app, CONFIG_PROTO_DETECT);
}

Test(k8s_decode, service_headless_added_and_deleted)
{
	load("services.watch.ndjson");
	decode_line(2, K8S_KIND_SERVICE);
	cr_expect(ev.svc.headless);
	cr_expect_eq(ev.svc.n_vips, 0);
	decode_line(3, K8S_KIND_SERVICE);
	cr_expect_eq(ev.type, K8S_EV_DELETED);
	cr_expect_str_eq(ev.svc.name, "db-headless");
}

Test(k8s_decode, every_fixture_line_decodes)
{
	static const struct {
		const char *file;
		enum k8s_kind kind;
		int lines;
	} files[] = {
	    {"endpointslices.watch.ndjson", K8S_KIND_ENDPOINTSLICE, 7},
	    {"services.watch.ndjson", K8S_KIND_SERVICE, 4},
	    {"extra.watch.ndjson", K8S_KIND_ENDPOINTSLICE, 3},
	};

	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		int n = 0;
		size_t len;

		free(text);
		load(files[f].file);
		while (line(n, &len)) {
			decode_line(n, files[f].kind);
			n++;
		}
		cr_expect_eq(n, files[f].lines, "%s: %d lines", files[f].file, n);
	}
}

Test(k8s_decode, list_reply)
{
	json_object *obj, *items;
	char rv[K8S_MAX_RV], cont[256];

	load("endpointslices.list.json");
	obj = json_tokener_parse(text);
	cr_assert_not_null(obj);
	cr_assert_eq(k8s_decode_list(obj, rv, sizeof(rv), cont, sizeof(cont), &items), 0);
	cr_expect_str_eq(rv, "48200");
	cr_expect_str_eq(cont, "");
	cr_assert_eq(json_object_array_length(items), 1);
	cr_expect_eq(
	    k8s_decode_slice(json_object_array_get_idx(items, 0), &ev.slice, err, sizeof(err)), 0,
	    "%s", err);
	ev.kind = K8S_KIND_ENDPOINTSLICE;
	ev.type = K8S_EV_ADDED;
	cr_expect_str_eq(ev.slice.eps[0].zone, "zone-1");
	json_object_put(obj);
}

/* Bad shapes are refused with the field named, never crash. */
Test(k8s_decode, refused_shapes)
{
	static const struct {
		const char *line;
		const char *why;
	} bad[] = {
	    {"[]", "event"},
	    {"{\"type\":\"ADDED\"}", "object"},
	    {"{\"type\":\"SIDEWAYS\",\"object\":{}}", "type"},
	    {"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}", "namespace"},
	    {"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"},"
	     "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"fd00::1\"]}]}}",
	     "endpoints[0].addresses[0]"},
	    {"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"},"
	     "\"addressType\":\"IPv4\",\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],"
	     "\"conditions\":{\"ready\":\"yes\"}}]}}",
	     "ready"},
	    {"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"},"
	     "\"addressType\":\"IPv4\",\"ports\":[{\"port\":70000}]}}",
	     "ports[0].port"},
	    {"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"},"
	     "\"addressType\":\"Carrier-Pigeon\"}}",
	     "addressType"},
	    {"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Service\"}}", "Status"},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		k8s_event_clear(&ev);
		err[0] = '\0';
		cr_expect_eq(k8s_decode_event_text(bad[i].line, strlen(bad[i].line),
						   K8S_KIND_ENDPOINTSLICE, &ev, err, sizeof(err)),
			     -EINVAL, "accepted: %s", bad[i].line);
		cr_expect(strstr(err, bad[i].why) != NULL, "'%s': error '%s' lacks '%s'",
			  bad[i].line, err, bad[i].why);
	}
}

/* ---- framing ---- */

struct collect {
	int n;
	char types[16];
};

static int collect_cb(void *ctx, json_object *value)
{
	struct collect *c = ctx;
	struct k8s_event e;
	char why[256];
	int ret = k8s_decode_event(value, K8S_KIND_ENDPOINTSLICE, &e, why, sizeof(why));

	json_object_put(value);
	if (ret)
		return ret;
	if (c->n < (int)sizeof(c->types) - 1)
		c->types[c->n] = "AMDBE"[e.type];
	c->n++;
	k8s_event_clear(&e);
	return 0;
}

Test(k8s_decode, stream_split_at_every_offset)
{
	load("endpointslices.watch.ndjson");
	for (size_t cut = 0; cut <= text_len; cut++) {
		struct k8s_stream s;
		struct collect c = {0};

		cr_assert_eq(k8s_stream_init(&s, K8S_MAX_EVENT_BYTES), 0);
		cr_assert_eq(k8s_stream_feed(&s, text, cut, collect_cb, &c), 0, "cut %zu", cut);
		cr_assert_eq(k8s_stream_feed(&s, text + cut, text_len - cut, collect_cb, &c), 0,
			     "cut %zu", cut);
		cr_assert_eq(c.n, 7, "cut at %zu: %d events", cut, c.n);
		cr_assert_str_eq(c.types, "AMAABDE");
		k8s_stream_fini(&s);
	}
}

Test(k8s_decode, stream_byte_by_byte)
{
	struct k8s_stream s;
	struct collect c = {0};

	load("endpointslices.watch.ndjson");
	cr_assert_eq(k8s_stream_init(&s, K8S_MAX_EVENT_BYTES), 0);
	for (size_t i = 0; i < text_len; i++)
		cr_assert_eq(k8s_stream_feed(&s, text + i, 1, collect_cb, &c), 0, "byte %zu", i);
	cr_expect_eq(c.n, 7);
	k8s_stream_fini(&s);
}

Test(k8s_decode, stream_bounds_one_event)
{
	struct k8s_stream s;
	struct collect c = {0};
	size_t len = 0;
	const char *l;

	load("endpointslices.watch.ndjson");
	l = line(0, &len);
	/* The first event is ~1 KiB: a 512-byte bound must stop it midway. */
	cr_assert_eq(k8s_stream_init(&s, 512), 0);
	cr_expect_eq(k8s_stream_feed(&s, l, len, collect_cb, &c), -EMSGSIZE);
	cr_expect_eq(c.n, 0);
	/* After a reset a small event passes again. */
	k8s_stream_reset(&s);
	cr_expect_eq(
	    k8s_stream_feed(&s, "{\"type\":\"BOOKMARK\",\"object\":{}}\n", 32, collect_cb, &c), 0);
	cr_expect_eq(c.n, 1);
	k8s_stream_fini(&s);
}

Test(k8s_decode, stream_refuses_garbage)
{
	struct k8s_stream s;
	struct collect c = {0};

	cr_assert_eq(k8s_stream_init(&s, K8S_MAX_EVENT_BYTES), 0);
	cr_expect_eq(k8s_stream_feed(&s, "{\"a\":1}\n}", 9, collect_cb, &c), -EINVAL);
	k8s_stream_reset(&s);
	cr_expect_eq(k8s_stream_feed(&s, "\n\n]", 3, collect_cb, &c), -EBADMSG);
	k8s_stream_reset(&s);
	cr_expect_eq(k8s_stream_feed(&s, "\"str\"", 5, collect_cb, &c), -EBADMSG);
	k8s_stream_fini(&s);
}

/* docs/discovery.md, "Protocols": appProtocol first, then the port's name. */
Test(k8s_decode, app_protocol_table)
{
	static const struct {
		const char *app, *name;
		enum config_protocol want;
	} rows[] = {
	    {"", "", CONFIG_PROTO_DETECT},
	    {"", "web", CONFIG_PROTO_DETECT},
	    {"http", "", CONFIG_PROTO_HTTP},
	    {"HTTP", "", CONFIG_PROTO_HTTP},
	    {"kubernetes.io/http", "", CONFIG_PROTO_HTTP},
	    {"kubernetes.io/ws", "", CONFIG_PROTO_HTTP},
	    {"kubernetes.io/h2c", "", CONFIG_PROTO_H2C},
	    {"grpc", "", CONFIG_PROTO_H2C},
	    {"GRPC", "", CONFIG_PROTO_H2C},
	    {"http2", "", CONFIG_PROTO_H2C},
	    {"grpc-web", "", CONFIG_PROTO_DETECT},
	    {"kubernetes.io/wss", "", CONFIG_PROTO_TCP},
	    {"https", "", CONFIG_PROTO_TCP},
	    {"tls", "", CONFIG_PROTO_TCP},
	    {"tcp", "", CONFIG_PROTO_TCP},
	    {"TCP", "", CONFIG_PROTO_TCP},
	    {"mysql", "", CONFIG_PROTO_TCP},
	    {"redis", "", CONFIG_PROTO_TCP},
	    {"postgresql", "", CONFIG_PROTO_TCP},
	    {"example.com/custom", "", CONFIG_PROTO_DETECT},
	    {"httpx", "", CONFIG_PROTO_DETECT},
	    /* appProtocol wins over the name */
	    {"tcp", "http-web", CONFIG_PROTO_TCP},
	    {"example.com/custom", "http", CONFIG_PROTO_DETECT},
	    /* Istio's port names, without appProtocol */
	    {"", "http", CONFIG_PROTO_HTTP},
	    {"", "http-web", CONFIG_PROTO_HTTP},
	    {"", "HTTP-web", CONFIG_PROTO_HTTP},
	    {"", "http2-api", CONFIG_PROTO_H2C},
	    {"", "grpc", CONFIG_PROTO_H2C},
	    {"", "grpc-api", CONFIG_PROTO_H2C},
	    {"", "grpc-web", CONFIG_PROTO_DETECT},
	    {"", "grpc-web-ui", CONFIG_PROTO_DETECT},
	    {"", "tcp-db", CONFIG_PROTO_TCP},
	    {"", "https", CONFIG_PROTO_TCP},
	    {"", "tls-x", CONFIG_PROTO_TCP},
	    {"", "mysql", CONFIG_PROTO_TCP},
	    {"", "redis-cache", CONFIG_PROTO_TCP},
	    {"", "httpbin", CONFIG_PROTO_DETECT}, /* a prefix only up to '-' */
	    {"", "webhttp", CONFIG_PROTO_DETECT},
	    {"", "dns", CONFIG_PROTO_DETECT}, /* not one of Istio's names */
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		cr_expect_eq(k8s_app_protocol(rows[i].app, rows[i].name), rows[i].want,
			     "appProtocol '%s', name '%s': %d, want %d", rows[i].app, rows[i].name,
			     k8s_app_protocol(rows[i].app, rows[i].name), rows[i].want);
}

/* The decoder applies the table to each port; a long qualified appProtocol decodes. */
Test(k8s_decode, service_ports_without_app_protocol_are_detected)
{
	static const char line[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"plain\"},\"spec\":{\"clusterIPs\":[\"10.96.1.1\"],\"ports\":["
	    "{\"port\":80},"
	    "{\"name\":\"http-admin\",\"port\":81},"
	    "{\"name\":\"x\",\"port\":82,\"appProtocol\":\"kubernetes.io/h2c\"},"
	    "{\"name\":\"y\",\"port\":83,\"appProtocol\":"
	    "\"a-rather-long-dns-prefix-of-a-vendor.subdomain.example.com/"
	    "a-protocol-name-of-sixty-three-bytes-aaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}}}";

	cr_assert_eq(
	    k8s_decode_event_text(line, strlen(line), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(ev.svc.n_ports, 4);
	cr_expect_eq(ev.svc.ports[0].app, CONFIG_PROTO_DETECT);
	cr_expect_eq(ev.svc.ports[1].app, CONFIG_PROTO_HTTP);
	cr_expect_eq(ev.svc.ports[2].app, CONFIG_PROTO_H2C);
	cr_expect_eq(ev.svc.ports[3].app, CONFIG_PROTO_DETECT);
}

/*
 * shoal.io/kernel-ports names ports by number or name; an HTTP port stays
 * proxied, and a token that names no port is ignored: both are said in
 * the note, and the service still decodes.
 */
Test(k8s_decode, service_kernel_ports_annotation)
{
	static const char line[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"db\",\"annotations\":{\"shoal.io/kernel-ports\":\"5432, cache,9999\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.2\"],\"ports\":["
	    "{\"name\":\"pg\",\"port\":5432,\"appProtocol\":\"postgresql\"},"
	    "{\"name\":\"cache\",\"port\":6379},"
	    "{\"name\":\"web\",\"port\":80,\"appProtocol\":\"http\"}]}}}";
	static const char http_line[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"web\",\"annotations\":{\"shoal.io/kernel-ports\":\"web\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.3\"],\"ports\":["
	    "{\"name\":\"web\",\"port\":80,\"appProtocol\":\"http\"}]}}}";
	static const char plain[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"p\",\"annotations\":{\"other\":\"x\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.4\"],\"ports\":[{\"port\":5432}]}}}";

	cr_assert_eq(
	    k8s_decode_event_text(line, strlen(line), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(ev.svc.n_ports, 3);
	cr_expect(ev.svc.ports[0].kernel, "5432, by number");
	cr_expect(ev.svc.ports[1].kernel, "cache, by name");
	cr_expect(!ev.svc.ports[2].kernel, "80 was not named");
	cr_expect(strstr(ev.svc.note, "\"9999\" names no port"), "note: '%s'", ev.svc.note);
	k8s_event_clear(&ev);

	cr_assert_eq(k8s_decode_event_text(http_line, strlen(http_line), K8S_KIND_SERVICE, &ev, err,
					   sizeof(err)),
		     0, "%s", err);
	cr_expect(!ev.svc.ports[0].kernel, "an HTTP port is never kernel mode");
	cr_expect(strstr(ev.svc.note, "port 80 speaks http"), "note: '%s'", ev.svc.note);
	k8s_event_clear(&ev);

	cr_assert_eq(
	    k8s_decode_event_text(plain, strlen(plain), K8S_KIND_SERVICE, &ev, err, sizeof(err)),
	    0, "%s", err);
	cr_expect(!ev.svc.ports[0].kernel);
	cr_expect_str_eq(ev.svc.note, "");
}

/*
 * shoal.io/upstream-protocol: "http1" marks every port that can carry
 * HTTP/2 (h2c, grpc, undeclared), never an http or tcp one; the list form
 * names ports by number or name, and a token naming no port, a port that
 * is not HTTP/2, or no protocol is ignored and said in the note.
 */
Test(k8s_decode, service_upstream_protocol_annotation)
{
	static const char all[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"api\",\"annotations\":{\"shoal.io/upstream-protocol\":\"http1\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.2\"],\"ports\":["
	    "{\"name\":\"h2\",\"port\":80,\"appProtocol\":\"kubernetes.io/h2c\"},"
	    "{\"name\":\"web\",\"port\":81,\"appProtocol\":\"http\"},"
	    "{\"name\":\"other\",\"port\":82},"
	    "{\"name\":\"pg\",\"port\":5432,\"appProtocol\":\"postgresql\"}]}}}";
	static const char list[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"api\",\"annotations\":{\"shoal.io/upstream-protocol\":"
	    "\"81=http1, grpc-a=http1,web=http1,9999=http1\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.3\"],\"ports\":["
	    "{\"name\":\"grpc-a\",\"port\":80},"
	    "{\"name\":\"grpc-b\",\"port\":81,\"appProtocol\":\"grpc\"},"
	    "{\"name\":\"web\",\"port\":82,\"appProtocol\":\"http\"},"
	    "{\"name\":\"grpc-c\",\"port\":83,\"appProtocol\":\"grpc\"}]}}}";
	static const char bad[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"api\",\"annotations\":{\"shoal.io/upstream-protocol\":\"HTTP/1.1\"}},"
	    "\"spec\":{\"clusterIPs\":[\"10.96.1.4\"],\"ports\":["
	    "{\"port\":80,\"appProtocol\":\"h2c\"}]}}}";

	cr_assert_eq(
	    k8s_decode_event_text(all, strlen(all), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_eq(ev.svc.n_ports, 4);
	cr_expect(ev.svc.ports[0].http1_upstream, "h2c port");
	cr_expect(!ev.svc.ports[1].http1_upstream, "an http port's requests are HTTP/1.1 already");
	cr_expect(ev.svc.ports[2].http1_upstream, "undeclared: HTTP/2 clients are translated");
	cr_expect(!ev.svc.ports[3].http1_upstream, "tcp");
	cr_expect_str_eq(ev.svc.note, "", "the bare form skips ports it cannot apply to");
	k8s_event_clear(&ev);

	cr_assert_eq(
	    k8s_decode_event_text(list, strlen(list), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0,
	    "%s", err);
	cr_expect(ev.svc.ports[0].http1_upstream, "grpc-a, by name");
	cr_expect(ev.svc.ports[1].http1_upstream, "81, by number");
	cr_expect(!ev.svc.ports[2].http1_upstream);
	cr_expect(!ev.svc.ports[3].http1_upstream, "grpc-c was not named");
	cr_expect(strstr(ev.svc.note, "port \"web\" speaks http, not HTTP/2"), "note: '%s'",
		  ev.svc.note);
	k8s_event_clear(&ev);

	cr_assert_eq(
	    k8s_decode_event_text(bad, strlen(bad), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0,
	    "%s", err);
	cr_expect(!ev.svc.ports[0].http1_upstream);
	cr_expect(strstr(ev.svc.note, "\"HTTP/1.1\" is no protocol (http1 or h2)"), "note: '%s'",
		  ev.svc.note);
}

/* shoal.io/mtls-mode (docs/mtls.md, "Modes"): 1 + the mode; another value is said in the note. */
Test(k8s_decode, service_mtls_mode_annotation)
{
	static const char *const vals[] = {"off", "permissive", "strict"};
	char obj[512];

	for (int i = 0; i < 3; i++) {
		snprintf(obj, sizeof(obj),
			 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"pay\","
			 "\"name\":\"api\",\"annotations\":{\"shoal.io/mtls-mode\":\"%s\"}},"
			 "\"spec\":{\"clusterIPs\":[\"10.96.1.2\"],\"ports\":[{\"port\":80}]}}}",
			 vals[i]);
		cr_assert_eq(k8s_decode_event_text(obj, strlen(obj), K8S_KIND_SERVICE, &ev, err,
						   sizeof(err)),
			     0, "%s", err);
		cr_expect_eq(ev.svc.mtls_mode, 1 + i, "%s", vals[i]);
		cr_expect_str_eq(ev.svc.note, "");
		k8s_event_clear(&ev);
	}
	static const char *const bad[] = {"\"STRICT\"", "\"strict-ish-and-much-longer\"", "3"};

	for (int i = 0; i < 3; i++) {
		snprintf(obj, sizeof(obj),
			 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"pay\","
			 "\"name\":\"api\",\"annotations\":{\"shoal.io/mtls-mode\":%s}},"
			 "\"spec\":{\"clusterIPs\":[\"10.96.1.2\"],\"ports\":[{\"port\":80}]}}}",
			 bad[i]);
		cr_assert_eq(k8s_decode_event_text(obj, strlen(obj), K8S_KIND_SERVICE, &ev, err,
						   sizeof(err)),
			     0, "%s: a bad annotation leaves the service in: %s", bad[i], err);
		cr_expect_eq(ev.svc.mtls_mode, 0, "%s", bad[i]);
		cr_expect(
		    strstr(ev.svc.note, "shoal.io/mtls-mode: must be off, permissive or strict"),
		    "note: '%s'", ev.svc.note);
		k8s_event_clear(&ev);
	}
	snprintf(obj, sizeof(obj),
		 "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"pay\","
		 "\"name\":\"api\"},"
		 "\"spec\":{\"clusterIPs\":[\"10.96.1.2\"],\"ports\":[{\"port\":80}]}}}");
	cr_assert_eq(
	    k8s_decode_event_text(obj, strlen(obj), K8S_KIND_SERVICE, &ev, err, sizeof(err)), 0);
	cr_expect_eq(ev.svc.mtls_mode, 0, "none");
}

/* A targetRef: its namespace defaults to the slice's; another kind, or no name, names no pod. */
Test(k8s_decode, slice_target_refs)
{
	static const char refs[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"web-1\",\"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
	    "\"addressType\":\"IPv4\",\"endpoints\":["
	    "{\"addresses\":[\"10.0.0.1\"],\"targetRef\":{\"kind\":\"Pod\",\"name\":\"a\"}},"
	    "{\"addresses\":[\"10.0.0.2\"],\"targetRef\":{\"kind\":\"Pod\",\"namespace\":"
	    "\"other\",\"name\":\"b\",\"uid\":\"u-b\"}},"
	    "{\"addresses\":[\"10.0.0.3\"],\"targetRef\":{\"kind\":\"Node\",\"name\":\"n\"}},"
	    "{\"addresses\":[\"10.0.0.4\"],\"targetRef\":{\"kind\":\"Pod\",\"name\":\"\"}},"
	    "{\"addresses\":[\"10.0.0.5\"]}],\"ports\":[{\"port\":8080}]}}";
	static const char bad[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"namespace\":\"shop\","
	    "\"name\":\"web-1\"},\"addressType\":\"IPv4\",\"endpoints\":["
	    "{\"addresses\":[\"10.0.0.1\"],\"targetRef\":{\"kind\":\"Pod\",\"name\":7}}]}}";

	cr_assert_eq(k8s_decode_event_text(refs, strlen(refs), K8S_KIND_ENDPOINTSLICE, &ev, err,
					   sizeof(err)),
		     0, "%s", err);
	cr_assert_eq(ev.slice.n_eps, 5);
	cr_expect_str_eq(ev.slice.eps[0].pod, "shop/a");
	cr_expect_null(ev.slice.eps[0].pod_uid);
	cr_expect_str_eq(ev.slice.eps[1].pod, "other/b");
	cr_expect_str_eq(ev.slice.eps[1].pod_uid, "u-b");
	cr_expect_null(ev.slice.eps[2].pod, "a Node is no pod");
	cr_expect_null(ev.slice.eps[3].pod);
	cr_expect_null(ev.slice.eps[4].pod);
	k8s_event_clear(&ev);
	cr_expect_eq(
	    k8s_decode_event_text(bad, strlen(bad), K8S_KIND_ENDPOINTSLICE, &ev, err, sizeof(err)),
	    -EINVAL);
	cr_expect(strstr(err, "endpoints[0].targetRef.name: must be a string"), "err: %s", err);
}

/* What the model keeps of a Pod: its service account ("default" when unset), uid, phase. */
Test(k8s_decode, pod_identity_fields)
{
	struct model_pod p;
	json_object *obj;
	size_t len;
	const char *l;

	load("pods.watch.ndjson");
	l = line(0, &len);
	cr_assert_not_null(l);
	obj = json_tokener_parse(l);
	cr_assert_not_null(obj);
	cr_assert_eq(k8s_decode_pod(json_object_object_get(obj, "object"), &p, err, sizeof(err)), 0,
		     "%s", err);
	json_object_put(obj);
	cr_expect_str_eq(p.ns, "shop");
	cr_expect_str_eq(p.name, "web-7d9f8-x2k4q");
	cr_expect_str_eq(p.uid, "3f5c2b9e-8f0a-4d2e-9c1b-6a7d8e9f0a1b");
	cr_expect_str_eq(p.service_account, "web");
	cr_expect_not(p.finished);

	static const struct {
		const char *json, *sa, *err;
		bool finished;
	} cases[] = {
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{}}", "default", NULL,
	     false},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{"
	     "\"serviceAccountName\":\"ci.bot\"},\"status\":{\"phase\":\"Succeeded\"}}",
	     "ci.bot", NULL, true},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"status\":{\"phase\":"
	     "\"Failed\"}}",
	     "default", NULL, true},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{"
	     "\"serviceAccountName\":\"Web_1\"}}",
	     NULL, "spec.serviceAccountName: \"Web_1\" is not a DNS subdomain", false},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{"
	     "\"serviceAccountName\":\"a/b\"}}",
	     NULL, "is not a DNS subdomain", false},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{"
	     "\"serviceAccountName\":\"-a\"}}",
	     NULL, "is not a DNS subdomain", false},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{"
	     "\"serviceAccountName\":3}}",
	     NULL, "spec.serviceAccountName: must be a string", false},
	    {"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\",\"uid\":[]}}", NULL,
	     "metadata.uid: must be a string", false},
	    {"{\"metadata\":{\"name\":\"p\"}}", NULL, "namespace: is required", false},
	    {"{\"metadata\":{\"namespace\":\"A_b\",\"name\":\"p\"}}", NULL,
	     "metadata.namespace: \"A_b\" is not a DNS label", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		obj = json_tokener_parse(cases[i].json);
		cr_assert_not_null(obj, "case %zu", i);
		int ret = k8s_decode_pod(obj, &p, err, sizeof(err));

		json_object_put(obj);
		if (cases[i].err) {
			cr_expect_eq(ret, -EINVAL, "case %zu", i);
			cr_expect(strstr(err, cases[i].err), "case %zu: err '%s'", i, err);
			continue;
		}
		cr_expect_eq(ret, 0, "case %zu: %s", i, err);
		cr_expect_str_eq(p.service_account, cases[i].sa, "case %zu", i);
		cr_expect_eq(p.finished, cases[i].finished, "case %zu", i);
	}
}

/*
 * A pod's node and host addresses (docs/mtls.md, "Node addresses"):
 * spec.nodeName, status.hostIP, the other family from status.hostIPs. A
 * bad or missing one is a note and no address, never an error: the pod
 * keeps its identity.
 */
Test(k8s_decode, pod_node_and_host_ip)
{
	char a0[INET6_ADDRSTRLEN], a1[INET6_ADDRSTRLEN];
	struct model_pod p;
	json_object *obj;
	size_t len;
	const char *l;

	load("pods.watch.ndjson");
	for (int i = 0; i < 2; i++) {
		l = line(i, &len);
		cr_assert_not_null(l);
		obj = json_tokener_parse(l);
		cr_assert_not_null(obj);
		cr_assert_eq(
		    k8s_decode_pod(json_object_object_get(obj, "object"), &p, err, sizeof(err)), 0,
		    "%s", err);
		json_object_put(obj);
		cr_expect_str_eq(p.node, "node-1");
		cr_expect_str_eq(p.note, "", "line %d: %s", i, p.note);
		if (i == 0) {
			cr_expect(p.running);
			cr_assert_eq(p.n_host, 1);
			cr_expect_str_eq(addr_ntop(&p.host[0], a0, sizeof(a0)), "10.0.0.11");
		} else {
			cr_expect_eq(p.n_host, 0, "Pending: no hostIP yet, and no note for it");
		}
	}

#define POD(spec, status)                                                                          \
	"{\"metadata\":{\"namespace\":\"a\",\"name\":\"p\"},\"spec\":{" spec                       \
	"},\"status\":{" status "}}"
	static const struct {
		const char *json, *node, *h0, *h1, *note;
	} cases[] = {
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"10.0.0.2\","
					"\"hostIPs\":[{\"ip\":\"10.0.0.2\"},{\"ip\":\"fd00::2\"}]"),
	     "n1", "10.0.0.2", "fd00::2", ""},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"fd00::2\","
					"\"hostIPs\":[{\"ip\":\"fd00::2\"},{\"ip\":\"10.0.0.2\"}]"),
	     "n1", "fd00::2", "10.0.0.2", ""},
	    /* A server that sends only the list. */
	    {POD("\"nodeName\":\"n1\"",
		 "\"phase\":\"Running\",\"hostIPs\":[{\"ip\":\"10.0.0.3\"}]"),
	     "n1", "10.0.0.3", NULL, ""},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"node-1.example\""),
	     "n1", NULL, NULL, "status.hostIP: \"node-1.example\" is not an IP address"},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"127.0.0.1\""), "n1",
	     NULL, NULL, "status.hostIP: 127.0.0.1 is loopback"},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":7"), "n1", NULL, NULL,
	     "status.hostIP: must be a string"},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\""), "n1", NULL, NULL,
	     "status.hostIP: missing on a running pod"},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIPs\":{}"), "n1", NULL, NULL,
	     "status.hostIPs: must be an array"},
	    /* The primary stands; a bad other entry is noted. */
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"10.0.0.4\","
					"\"hostIPs\":[{\"ip\":\"10.0.0.4\"},{\"ip\":\"ff02::1\"}]"),
	     "n1", "10.0.0.4", NULL, "status.hostIPs[1]: ff02::1 is multicast"},
	    {POD("\"nodeName\":\"n1\"", "\"phase\":\"Running\",\"hostIP\":\"10.0.0.4\","
					"\"hostIPs\":[3]"),
	     "n1", "10.0.0.4", NULL, "status.hostIPs[0].ip: is required"},
	    {POD("\"nodeName\":\"Node_1\"", "\"phase\":\"Running\",\"hostIP\":\"10.0.0.5\""), "",
	     NULL, NULL, "spec.nodeName: \"Node_1\" is not a DNS subdomain"},
	    {POD("\"nodeName\":[]", "\"phase\":\"Running\",\"hostIP\":\"10.0.0.5\""), "", NULL,
	     NULL, "spec.nodeName: must be a string"},
	    /* Not scheduled: nothing to learn, nothing to say. */
	    {POD("\"serviceAccountName\":\"web\"", "\"phase\":\"Pending\""), "", NULL, NULL, ""},
	};
#undef POD

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		obj = json_tokener_parse(cases[i].json);
		cr_assert_not_null(obj, "case %zu", i);
		int ret = k8s_decode_pod(obj, &p, err, sizeof(err));

		json_object_put(obj);
		cr_expect_eq(ret, 0, "case %zu: never an error: %s", i, err);
		cr_expect_str_eq(p.node, cases[i].node, "case %zu", i);
		cr_expect_str_eq(p.note, cases[i].note, "case %zu", i);
		cr_expect_eq(p.n_host, !cases[i].h0 ? 0 : !cases[i].h1 ? 1 : 2, "case %zu", i);
		if (cases[i].h0 && p.n_host > 0)
			cr_expect_str_eq(addr_ntop(&p.host[0], a0, sizeof(a0)), cases[i].h0,
					 "case %zu", i);
		if (cases[i].h1 && p.n_host > 1)
			cr_expect_str_eq(addr_ntop(&p.host[1], a1, sizeof(a1)), cases[i].h1,
					 "case %zu", i);
	}
}

/* A Namespace's shoal.io/mtls-mode: its name and 1 + the mode; a bad value is a note, not an error.
 */
Test(k8s_decode, namespace_mtls_mode)
{
	static const struct {
		const char *json;
		int ret;
		uint8_t mode;
		const char *note;
	} cases[] = {
	    {"{\"metadata\":{\"name\":\"pay\",\"annotations\":{\"shoal.io/"
	     "mtls-mode\":\"strict\"}}}",
	     0, 1 + CONFIG_MTLS_STRICT, ""},
	    {"{\"metadata\":{\"name\":\"pay\",\"labels\":{\"a\":\"b\"}}}", 0, 0, ""},
	    {"{\"metadata\":{\"name\":\"pay\",\"annotations\":{\"shoal.io/mtls-mode\":\"on\"}}}", 0,
	     0, "must be off, permissive or strict"},
	    {"{\"metadata\":{\"annotations\":{}}}", -EINVAL, 0, "name: is required"},
	    {"{\"kind\":\"Namespace\"}", -EINVAL, 0, "metadata: is required"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_object *obj = json_tokener_parse(cases[i].json);
		char name[64], note[192];
		uint8_t mode = 99;

		cr_assert_not_null(obj);
		cr_expect_eq(
		    k8s_decode_namespace_mode(obj, name, sizeof(name), &mode, note, sizeof(note)),
		    cases[i].ret, "case %zu: %s", i, note);
		json_object_put(obj);
		cr_expect_eq(mode, cases[i].mode, "case %zu", i);
		cr_expect(strstr(note, cases[i].note), "case %zu: note '%s'", i, note);
		if (!cases[i].ret)
			cr_expect_str_eq(name, "pay");
	}
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The config parser: the file, YAML, ${NAME}, node, bpf, proxy, tracing, admin, kubernetes. */
#include "config/config_test.h"

/* ---- valid files ---- */

static const char full_file[] = "# every field set\n"
				"node:\n"
				"  address_v4: 10.0.1.1\n"
				"  address_v6: fd00:1::1\n"
				"  proxy_port: 15002\n"
				"bpf:\n"
				"  pin_root: /sys/fs/bpf/shoal2\n"
				"  cgroup: /kubepods.slice\n"
				"  shortcut: off\n"
				"  socket_mark: 0x1234abcd\n"
				"  failopen_after_ms: 5000\n"
				"proxy:\n"
				"  workers: 4\n"
				"  connect_timeout_ms: 500\n"
				"  connect_deadline_ms: 1500\n"
				"  buffer_bytes: 65536\n"
				"  max_connections: 1000\n"
				"services:\n"
				"  - name: web\n" /* line 19 */
				"    namespace: shop\n"
				"    vips: [10.96.0.10, \"fd00:96::10\"]\n"
				"    ports:\n"
				"      - port: 80\n" /* line 23 */
				"        target_port: 8080\n"
				"        protocol: http\n"
				"      - port: 443\n" /* line 26 */
				"        protocol: h2c\n"
				"    endpoints:\n"
				"      - address: 10.0.1.2\n"  /* line 29 */
				"      - address: fd00:1::2\n" /* line 30 */
				"  - name: db\n"	       /* line 31 */
				"    vips:\n"
				"      - 10.96.0.11\n"
				"    ports:\n"
				"      - {port: 5432, protocol: tcp}\n" /* line 35 */
				"    endpoints: []\n";

Test(config, full_file_sets_every_field)
{
	const struct config_service *s;
	struct shoal_addr a = ip("10.0.1.1"), b = ip("fd00:1::1");

	cr_assert_eq(parse(full_file), 0, "%s", err);
	cr_assert_str_eq(cfg->path, "t.yaml");
	cr_assert(addr_equal(&cfg->proxy_v4, &a));
	cr_assert(addr_equal(&cfg->proxy_v6, &b));
	cr_assert_eq(cfg->proxy_port, 15002);
	cr_assert_str_eq(cfg->pin_root, "/sys/fs/bpf/shoal2");
	cr_assert_str_eq(cfg->cgroup, "/kubepods.slice");
	cr_assert_eq(cfg->shortcut, false);
	cr_assert_eq(cfg->socket_mark, 0x1234abcd);
	cr_assert_eq(cfg->failopen_after_ms, 5000);
	cr_assert_eq(cfg->workers, 4);
	cr_assert_eq(cfg->connect_timeout_ms, 500);
	cr_assert_eq(cfg->connect_deadline_ms, 1500);
	cr_assert_eq(cfg->buffer_bytes, 65536);
	cr_assert_eq(cfg->max_connections, 1000);
	cr_assert_eq(cfg->n_services, 2);

	s = cfg->services[0];
	cr_assert_str_eq(s->name, "web");
	cr_assert_str_eq(s->namespace, "shop");
	cr_assert_eq(s->id, 0);
	cr_assert_eq(s->line, 19);
	cr_assert_eq(s->n_vips, 2);
	a = ip("10.96.0.10");
	b = ip("fd00:96::10");
	cr_assert(addr_equal(&s->vips[0], &a));
	cr_assert(addr_equal(&s->vips[1], &b));
	cr_assert_eq(s->n_ports, 2);
	cr_assert_eq(s->ports[0].port, 80);
	cr_assert_eq(s->ports[0].target_port, 8080);
	cr_assert_eq(s->ports[0].protocol, CONFIG_PROTO_HTTP);
	cr_assert_eq(s->ports[0].line, 23);
	cr_assert_eq(s->ports[1].port, 443);
	cr_assert_eq(s->ports[1].target_port, 443);
	cr_assert_eq(s->ports[1].protocol, CONFIG_PROTO_H2C);
	cr_assert_eq(s->ports[1].line, 26);
	cr_assert_eq(s->n_endpoints, 2);
	a = ip("10.0.1.2");
	b = ip("fd00:1::2");
	cr_assert(addr_equal(&s->endpoints[0].addr, &a));
	cr_assert_eq(s->endpoints[0].line, 29);
	cr_assert(addr_equal(&s->endpoints[1].addr, &b));
	cr_assert_eq(s->endpoints[1].line, 30);

	s = cfg->services[1];
	cr_assert_str_eq(s->name, "db");
	cr_assert_str_eq(s->namespace, "default");
	cr_assert_eq(s->id, 1);
	cr_assert_eq(s->line, 31);
	cr_assert_eq(s->n_vips, 1);
	cr_assert_eq(s->n_ports, 1);
	cr_assert_eq(s->ports[0].port, 5432);
	cr_assert_eq(s->ports[0].protocol, CONFIG_PROTO_TCP);
	cr_assert_eq(s->ports[0].line, 35);
	cr_assert_eq(s->n_endpoints, 0);
	cr_assert_null(s->endpoints);
}

Test(config, defaults)
{
	const struct config_service *s;
	struct shoal_addr zero = {{0}};

	cr_assert_eq(parse(NODE "services:\n"
				"  - name: web\n"
				"    vips: [10.96.0.10]\n"
				"    ports: [{port: 80}]\n"),
		     0, "%s", err);
	cr_assert(addr_equal(&cfg->proxy_v6, &zero));
	cr_assert_eq(cfg->proxy_port, SHOAL_DEFAULT_PROXY_PORT);
	cr_assert_str_eq(cfg->pin_root, SHOAL_DEFAULT_PIN_ROOT);
	cr_assert_str_eq(cfg->cgroup, CONFIG_DEFAULT_CGROUP);
	cr_assert_eq(cfg->shortcut, true);
	cr_assert_eq(cfg->socket_mark, SHOAL_DEFAULT_SOCKET_MARK);
	cr_assert_eq(cfg->failopen_after_ms, CONFIG_DEFAULT_FAILOPEN_AFTER_MS);
	cr_assert_eq(cfg->workers, 0);
	cr_assert_eq(cfg->connect_timeout_ms, CONFIG_DEFAULT_CONNECT_TIMEOUT_MS);
	cr_assert_eq(cfg->connect_deadline_ms, CONFIG_DEFAULT_CONNECT_DEADLINE_MS);
	cr_assert_eq(cfg->buffer_bytes, CONFIG_DEFAULT_BUFFER_BYTES);
	cr_assert_eq(cfg->max_connections, CONFIG_DEFAULT_MAX_CONNECTIONS);
	s = cfg->services[0];
	cr_assert_str_eq(s->namespace, "default");
	cr_assert_eq(s->ports[0].target_port, 80);
	cr_assert_eq(s->ports[0].protocol, CONFIG_PROTO_DETECT);
	cr_assert_eq(s->ports[0].declared, false);
	cr_assert_eq(s->n_endpoints, 0);
}

Test(config, node_only_and_null_sections_are_fine)
{
	cr_assert_eq(parse("node:\n  address_v6: fd00:1::1\nbpf:\nproxy: ~\nservices:\n"), 0, "%s",
		     err);
	cr_assert_eq(cfg->n_services, 0);
	cr_assert(addr_is_zero(&cfg->proxy_v4));
}

Test(config, booleans_and_hex)
{
	static const char *const words[] = {"true", "True", "yes", "ON"};
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		char text[128];

		snprintf(text, sizeof(text), NODE "bpf:\n  shortcut: %s\n  socket_mark: 0X53\n",
			 words[i]);
		cr_assert_eq(parse(text), 0, "%s: %s", words[i], err);
		cr_assert_eq(cfg->shortcut, true);
		cr_assert_eq(cfg->socket_mark, 0x53);
		config_free(cfg);
		cfg = NULL;
	}
}

Test(config, find_service)
{
	const struct config_port *port = NULL;
	const struct config_service *s;
	struct shoal_addr vip;

	cr_assert_eq(parse(full_file), 0, "%s", err);
	vip = ip("fd00:96::10");
	s = config_find_service(cfg, &vip, htons(443), &port);
	cr_assert_not_null(s);
	cr_assert_str_eq(s->name, "web");
	cr_assert_eq(port, &s->ports[1]);
	vip = ip("10.96.0.11");
	s = config_find_service(cfg, &vip, htons(5432), NULL);
	cr_assert_not_null(s);
	cr_assert_str_eq(s->name, "db");
	cr_assert_null(config_find_service(cfg, &vip, htons(80), &port));
	vip = ip("10.96.0.12");
	cr_assert_null(config_find_service(cfg, &vip, htons(5432), &port));
}

Test(config, load_reads_a_file)
{
	int fd;

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/shoal-config-XXXXXX");
	fd = mkstemp(tmp_path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, full_file, strlen(full_file)), (ssize_t)strlen(full_file));
	close(fd);
	cr_assert_eq(config_load(tmp_path, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(cfg->path, tmp_path);
	cr_assert_eq(cfg->n_services, 2);
}

Test(config, load_error_names_the_file)
{
	cr_assert_eq(config_load("/nonexistent/shoal.yaml", &cfg, err, sizeof(err)), -ENOENT);
	cr_assert_null(cfg);
	cr_assert_str_eq(err, "/nonexistent/shoal.yaml: cannot read: No such file or directory");
	cr_assert_eq(config_load("/", &cfg, err, sizeof(err)), -EISDIR);
	cr_assert_str_eq(err, "/: cannot read: Is a directory");
}

Test(config, load_messages_use_the_path)
{
	static const char bad[] = "node:\n  address_v4: 10.0.1.1\n  port: 1\n";
	char want[128];
	int fd;

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/shoal-config-XXXXXX");
	fd = mkstemp(tmp_path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
	close(fd);
	cr_assert_eq(config_load(tmp_path, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:3: node.port: unknown field", tmp_path);
	cr_assert_str_eq(err, want);
}

/* ---- error classes: each names the line and the field ---- */

Test(config, unknown_field)
{
	assert_refused("node:\n  adress_v4: 10.0.1.1\n", "t.yaml:2: node.adress_v4: unknown field");
	assert_refused(NODE "service:\n  - name: web\n", "t.yaml:3: service: unknown field");
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips: [10.96.0.10]\n"
			    "    ports:\n"
			    "      - port: 80\n"
			    "        targetPort: 8080\n",
		       "t.yaml:8: services[0].ports[0].targetPort: unknown field");
	/* Keys are exact; a YAML merge key is just another unknown one. */
	assert_refused(NODE "Proxy: {}\n", "t.yaml:3: Proxy: unknown field");
	assert_refused(NODE "<<: {}\n", "t.yaml:3: <<: unknown field");
}

Test(config, wrong_types)
{
	assert_refused(
	    NODE "proxy:\n  workers: many\n",
	    "t.yaml:4: proxy.workers: must be a decimal or 0x hex integer, got \"many\"");
	assert_refused(NODE "proxy:\n  workers: \"4\"\n",
		       "t.yaml:4: proxy.workers: must be an integer, got the string \"4\"");
	assert_refused(NODE "bpf:\n  shortcut: maybe\n",
		       "t.yaml:4: bpf.shortcut: must be true or false, got \"maybe\"");
	assert_refused(NODE "bpf:\n  shortcut: \"true\"\n",
		       "t.yaml:4: bpf.shortcut: must be true or false, got the string \"true\"");
	assert_refused("node: [10.0.1.1]\n", "t.yaml:1: node: must be a mapping, got a sequence");
	assert_refused(NODE "services: {name: web}\n",
		       "t.yaml:3: services: must be a sequence, got a mapping");
	assert_refused(NODE "services:\n  - web\n",
		       "t.yaml:4: services[0]: must be a mapping, got a scalar");
	assert_refused(NODE "services:\n  - name: [web]\n",
		       "t.yaml:4: services[0].name: must be a name, got a sequence");
	assert_refused(NODE "services:\n  - name: web\n    vips: 10.96.0.10\n",
		       "t.yaml:5: services[0].vips: must be a sequence, got a scalar");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: [80]}]\n",
		       "t.yaml:6: services[0].ports[0].port: must be an integer, got a sequence");
	assert_refused(NODE "bpf:\n  pin_root:\n",
		       "t.yaml:4: bpf.pin_root: must be a path, got nothing");
	assert_refused(NODE "? [a]\n: b\n", "t.yaml:3: yaml: keys must be scalars, got a sequence");
}

Test(config, duplicate_keys)
{
	assert_refused(NODE "node:\n  address_v4: 10.0.1.2\n",
		       "t.yaml:3: node: duplicate field (first at line 1)");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports:\n      - port: 80\n        port: 81\n",
		       "t.yaml:8: services[0].ports[0].port: duplicate field (first at line 7)");
}

Test(config, node_address_required)
{
	assert_refused("node:\n  proxy_port: 15001\n",
		       "t.yaml:1: node: address_v4 or address_v6 is required");
	assert_refused("bpf:\n  shortcut: true\n",
		       "t.yaml:1: node: address_v4 or address_v6 is required");
}

Test(config, node_address_families)
{
	assert_refused("node:\n  address_v4: fd00:1::1\n",
		       "t.yaml:2: node.address_v4: must be an IPv4 address, got \"fd00:1::1\"");
	assert_refused("node:\n  address_v4: \"::ffff:10.0.1.1\"\n",
		       "t.yaml:2: node.address_v4: must be an IPv4 address");
	assert_refused("node:\n  address_v6: 10.0.1.1\n",
		       "t.yaml:2: node.address_v6: must be an IPv6 address (not v4-mapped)");
	assert_refused("node:\n  address_v6: \"::ffff:10.0.1.1\"\n",
		       "t.yaml:2: node.address_v6: must be an IPv6 address (not v4-mapped)");
	assert_refused("node:\n  address_v4: 10.0.1\n",
		       "t.yaml:2: node.address_v4: must be an IPv4 address, got \"10.0.1\"");
	assert_refused("node:\n  address_v4: 0.0.0.0\n",
		       "t.yaml:2: node.address_v4: must not be the unspecified address");
}

/* kubernetes.proxy_url: off by default; a scheme, an authority, no path. */
Test(config, kubernetes_proxy_url)
{
	static const char *const bad[] = {
	    "proxy.example:3128",     "ftp://proxy:21",	     "http://",
	    "http://proxy:3128/path", "http://proxy:3128?x", "http://@proxy",
	};
	char yaml[256], want[128];

	cr_assert_eq(parse(NODE "kubernetes: {}\n"), 0, "%s", err);
	cr_expect_str_eq(cfg->k8s_proxy_url, "", "no proxy unless the config names one");
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "kubernetes:\n  proxy_url: http://user:pw@proxy.corp:3128\n"), 0,
		     "%s", err);
	cr_expect_str_eq(cfg->k8s_proxy_url, "http://user:pw@proxy.corp:3128");
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "kubernetes:\n  proxy_url: \"socks5h://[fd00::9]:1080\"\n"), 0,
		     "%s", err);
	config_free(cfg);
	cfg = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(yaml, sizeof(yaml), NODE "kubernetes:\n  proxy_url: \"%s\"\n", bad[i]);
		snprintf(want, sizeof(want), "t.yaml:4: kubernetes.proxy_url: must be http://");
		assert_refused(yaml, want);
	}
}

/* kubernetes.enrollment: off without the section; on with it, unless enabled: false. */
Test(config, kubernetes_enrollment)
{
	cr_assert_eq(parse(NODE "kubernetes: {}\n"), 0, "%s", err);
	cr_expect_not(cfg->k8s_enroll);
	cr_expect_str_eq(cfg->k8s_enroll_cni_socket, CONFIG_DEFAULT_CNI_SOCKET);
	cr_expect_str_eq(cfg->k8s_enroll_cgroup_root, "/");
	cr_expect_str_eq(cfg->k8s_enroll_node_name, "", "$NODE_NAME unless configured");
	cr_expect_eq(cfg->k8s_enroll_resync_ms, CONFIG_DEFAULT_ENROLL_RESYNC_MS);
	cr_expect_str_eq(cfg->k8s_enroll_netns_dir, "/var/run/netns");
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "kubernetes:\n  enrollment: {}\n"), 0, "%s", err);
	cr_expect(cfg->k8s_enroll);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "kubernetes:\n  enrollment:\n    enabled: false\n"), 0, "%s", err);
	cr_expect_not(cfg->k8s_enroll);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "kubernetes:\n  enrollment:\n    node_name: node-7.example\n"
				"    cgroup_root: /kubepods.slice\n    cni_socket: \"\"\n"
				"    resync_ms: 1000\n    netns_dir: \"\"\n"),
		     0, "%s", err);
	cr_expect(cfg->k8s_enroll);
	cr_expect_str_eq(cfg->k8s_enroll_node_name, "node-7.example");
	cr_expect_str_eq(cfg->k8s_enroll_cgroup_root, "/kubepods.slice");
	cr_expect_str_eq(cfg->k8s_enroll_cni_socket, "", "no CNI socket");
	cr_expect_eq(cfg->k8s_enroll_resync_ms, 1000);
	cr_expect_str_eq(cfg->k8s_enroll_netns_dir, "", "no netns mount matching");
	config_free(cfg);
	cfg = NULL;
	assert_refused(NODE "kubernetes:\n  enrollment:\n    node_name: Node_1\n",
		       "t.yaml:5: kubernetes.enrollment.node_name: must be a node name");
	assert_refused(NODE "kubernetes:\n  enrollment:\n    cni_socket: run/cni.sock\n",
		       "t.yaml:5: kubernetes.enrollment.cni_socket: must be an absolute path");
	assert_refused(
	    NODE "kubernetes:\n  enrollment:\n    cni_socket: /"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	    "t.yaml:5: kubernetes.enrollment.cni_socket: must be at most 107 characters");
	assert_refused(NODE "kubernetes:\n  enrollment:\n    netns_dir: run/netns\n",
		       "t.yaml:5: kubernetes.enrollment.netns_dir: must be an absolute path");
	assert_refused(NODE "kubernetes:\n  enrollment:\n    resync_ms: 100\n",
		       "t.yaml:5: kubernetes.enrollment.resync_ms:");
	assert_refused(NODE "kubernetes:\n  enrollment:\n    nodename: x\n",
		       "t.yaml:5: kubernetes.enrollment.nodename:");
}

Test(config, ranges)
{
	assert_refused(NODE "services:\n"
			    "  - name: web\n"
			    "    vips: [10.96.0.10]\n"
			    "    ports:\n"
			    "      - port: 70000\n",
		       "t.yaml:7: services[0].ports[0].port: must be 1..65535, got 70000");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 0}]\n",
		       "t.yaml:6: services[0].ports[0].port: must be 1..65535, got 0");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80, target_port: 65536}]\n",
		       "t.yaml:6: services[0].ports[0].target_port: must be 1..65535, got 65536");
	assert_refused("node:\n  address_v4: 10.0.1.1\n  proxy_port: 0\n",
		       "t.yaml:3: node.proxy_port: must be 1..65535, got 0");
	assert_refused(NODE "bpf:\n  socket_mark: 0\n",
		       "t.yaml:4: bpf.socket_mark: must be 1..4294967295, got 0");
	assert_refused(NODE "bpf:\n  socket_mark: 0x100000000\n",
		       "t.yaml:4: bpf.socket_mark: must be 1..4294967295, got 0x100000000");
	assert_refused(NODE "bpf:\n  failopen_after_ms: 99\n",
		       "t.yaml:4: bpf.failopen_after_ms: must be 100..600000, got 99");
	assert_refused(NODE "proxy:\n  workers: 257\n",
		       "t.yaml:4: proxy.workers: must be 0..256, got 257");
	assert_refused(NODE "proxy:\n  connect_timeout_ms: 0\n",
		       "t.yaml:4: proxy.connect_timeout_ms: must be 1..600000, got 0");
	assert_refused(NODE "proxy:\n  buffer_bytes: 1023\n",
		       "t.yaml:4: proxy.buffer_bytes: must be 1024..1048576, got 1023");
	assert_refused(NODE "proxy:\n  max_connections: 1048577\n",
		       "t.yaml:4: proxy.max_connections: must be 1..1048576, got 1048577");
}

Test(config, proxy_budgets)
{
	cr_assert_eq(parse(NODE "proxy:\n"), 0, "%s", err);
	cr_assert_eq(cfg->max_buffer_memory_mib, CONFIG_DEFAULT_MAX_BUFFER_MEMORY_MIB);
	cr_assert_eq(cfg->max_connections_per_client, CONFIG_DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "proxy:\n  max_buffer_memory_mib: 64\n"
				"  max_connections_per_client: 0\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->max_buffer_memory_mib, 64);
	cr_assert_eq(cfg->max_connections_per_client, 0);
	assert_refused(NODE "proxy:\n  max_buffer_memory_mib: 1048577\n",
		       "t.yaml:4: proxy.max_buffer_memory_mib: must be 0..1048576, got 1048577");
	assert_refused(NODE "proxy:\n  max_connections_per_client: -1\n",
		       "t.yaml:4: proxy.max_connections_per_client: must be 0..1048576, got -1");
}

Test(config, http_timeouts_and_connection_limits)
{
	cr_assert_eq(parse(NODE "proxy:\n  http: {}\n"), 0, "%s", err);
	cr_assert_eq(cfg->http_request_body_timeout_ms, CONFIG_DEFAULT_HTTP_BODY_TIMEOUT_MS);
	cr_assert_eq(cfg->http_response_head_timeout_ms, CONFIG_DEFAULT_HTTP_HEAD_TIMEOUT_MS);
	cr_assert_lt(cfg->http_response_head_timeout_ms, cfg->idle_timeout_ms);
	cr_assert_eq(cfg->http_request_timeout_ms, 0);
	cr_assert_eq(cfg->http_max_requests_per_connection, 0);
	cr_assert_eq(cfg->http_max_connection_age_ms, 0);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "proxy:\n  http:\n    request_body_timeout_ms: 5000\n"
				"    response_head_timeout_ms: 0\n    request_timeout_ms: 15000\n"
				"    max_requests_per_connection: 1000\n"
				"    max_connection_age_ms: 600000\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->http_request_body_timeout_ms, 5000);
	cr_assert_eq(cfg->http_response_head_timeout_ms, 0);
	cr_assert_eq(cfg->http_request_timeout_ms, 15000);
	cr_assert_eq(cfg->http_max_requests_per_connection, 1000);
	cr_assert_eq(cfg->http_max_connection_age_ms, 600000);
	assert_refused(NODE "proxy:\n  http:\n    response_head_timeout_ms: 600001\n",
		       "t.yaml:5: proxy.http.response_head_timeout_ms: must be 0..600000, got 600001");
	assert_refused(NODE "proxy:\n  http:\n    max_connection_age_ms: 86400001\n",
		       "t.yaml:5: proxy.http.max_connection_age_ms: must be 0..86400000, got 86400001");
}

Test(config, deadline_not_below_timeout)
{
	assert_refused(NODE "proxy:\n  connect_timeout_ms: 2000\n  connect_deadline_ms: 1000\n",
		       "t.yaml:5: proxy.connect_deadline_ms: must be >= connect_timeout_ms (2000), "
		       "got 1000");
	/* Against the default deadline, the timeout's line is the one to fix. */
	assert_refused(NODE "proxy:\n  connect_timeout_ms: 5000\n",
		       "t.yaml:4: proxy.connect_deadline_ms: must be >= connect_timeout_ms (5000), "
		       "got 3000");
}

Test(config, paths_and_protocols)
{
	assert_refused(NODE "bpf:\n  pin_root: sys/fs/bpf\n",
		       "t.yaml:4: bpf.pin_root: must be an absolute path, got \"sys/fs/bpf\"");
	assert_refused(NODE "bpf:\n  cgroup: kubepods\n",
		       "t.yaml:4: bpf.cgroup: must be an absolute path");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 53, protocol: udp}]\n",
		       "t.yaml:6: services[0].ports[0].protocol: must be tcp, http, h2c, http2 or grpc, got "
		       "\"udp\"");
}

Test(config, long_path_is_refused)
{
	size_t n = strlen(NODE "bpf:\n  pin_root: /") + PATH_MAX + 2;

	buf = malloc(n);
	cr_assert_not_null(buf);
	strcpy(buf, NODE "bpf:\n  pin_root: /");
	memset(buf + strlen(buf), 'a', PATH_MAX);
	strcpy(buf + n - 2, "\n");
	assert_refused(buf, "t.yaml:4: bpf.pin_root: must be at most 4095 characters, got 4097");
}

Test(config, required_fields)
{
	assert_refused(NODE "services:\n  - vips: [10.96.0.10]\n    ports: [{port: 80}]\n",
		       "t.yaml:4: services[0].name: is required");
	assert_refused(NODE "services:\n  - name: web\n    ports: [{port: 80}]\n",
		       "t.yaml:4: services[0].vips: is required");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n",
		       "t.yaml:4: services[0].ports: is required");
	assert_refused(NODE "services:\n  - name: web\n    vips: []\n    ports: [{port: 80}]\n",
		       "t.yaml:5: services[0].vips: must list 1..4 addresses, got none");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports:\n",
		       "t.yaml:6: services[0].ports: must list 1..32 ports, got none");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports:\n      - target_port: 80\n",
		       "t.yaml:7: services[0].ports[0].port: is required");
	assert_refused(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
			    "    ports: [{port: 80}]\n    endpoints:\n      - {}\n",
		       "t.yaml:8: services[0].endpoints[0].address: is required");
	assert_refused(NODE "services:\n  -\n", "t.yaml:4: services[0].name: is required");
}

Test(config, names_are_labels)
{
	assert_refused(NODE "services:\n  - name: Web\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	assert_refused(NODE "services:\n  - name: -web\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	assert_refused(NODE "services:\n  - name: web-\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	assert_refused(NODE "services:\n  - name: \"\"\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	assert_refused(NODE "services:\n  - name: web\n    namespace: kube_system\n",
		       "t.yaml:5: services[0].namespace: must be an RFC 1123 label");
	assert_refused(NODE "services:\n  - name: "
			    "a234567890123456789012345678901234567890123456789012345678901234\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	cr_assert_eq(parse(NODE "services:\n  - name: "
				"a23456789012345678901234567890123456789012345678901234567890123\n"
				"    vips: [10.96.0.10]\n    ports: [{port: 80}]\n"),
		     0, "%s", err);
}

Test(config, yaml_syntax_error)
{
	assert_refused(NODE " bpf: {}\n", "t.yaml:3: yaml: did not find expected key");
	assert_refused(NODE "\tbpf: {}\n",
		       "t.yaml:3: yaml: found a tab character that violates indentation");
	assert_refused("node: {address_v4: 10.0.1.1\n",
		       "t.yaml:2: yaml: did not find expected ',' or '}'");
	assert_refused("node:\n  address_v4: \"10.0.1.1\n", "t.yaml:3: yaml: found unexpected end");
}

Test(config, multiple_documents)
{
	assert_refused(NODE "---\n" NODE, "t.yaml:3: yaml: multiple documents are not supported");
	assert_refused(NODE "...\n---\n", "t.yaml:4: yaml: multiple documents are not supported");
}

Test(config, file_too_large)
{
	size_t n = (size_t)CONFIG_MAX_FILE_BYTES + 1;

	buf = malloc(n);
	cr_assert_not_null(buf);
	memset(buf, '\n', n);
	cr_assert_eq(parse_len(buf, n), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1: yaml: file is larger than 16777216 bytes");
}

/* ---- hostile input: refused, never a crash ---- */

Test(config, aliases_and_anchors)
{
	assert_refused(NODE "services:\n  - &svc {name: web}\n",
		       "t.yaml:4: services: YAML anchors are not allowed");
	assert_refused("node: *n\n", "t.yaml:1: node: YAML aliases are not allowed");
	assert_refused("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
		       "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
		       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
		       "t.yaml:1: a: unknown field");
	assert_refused("node: &a [\"lol\",\"lol\"]\n",
		       "t.yaml:1: node: YAML anchors are not allowed");
}

Test(config, tags)
{
	assert_refused("node: !!map {address_v4: 10.0.1.1}\n",
		       "t.yaml:1: node: YAML tags are not supported");
	assert_refused("node:\n  proxy_port: !!int 80\n",
		       "t.yaml:2: node.proxy_port: YAML tags are not supported");
}

Test(config, deep_nesting)
{
	const int depth = 100000;
	size_t len = 2 * depth + 32, off;

	buf = malloc(len);
	cr_assert_not_null(buf);
	off = (size_t)sprintf(buf, "services: ");
	memset(buf + off, '[', depth);
	memset(buf + off + depth, ']', depth);
	buf[off + 2 * depth] = '\0';
	assert_refused(buf, "t.yaml:1: services[0]: must be a mapping, got a sequence");

	/* Block style, and nested where a scalar is due. */
	assert_refused(NODE "services:\n  - - - - - - - - - - - - - - - - - - - -\n",
		       "t.yaml:4: services[0]: must be a mapping, got a sequence");
	assert_refused("node:\n  address_v4: {a: {b: {c: {d: {e: {f: {g: {h: {}}}}}}}}}\n",
		       "t.yaml:2: node.address_v4: must be an IPv4 address, got a mapping");
}

Test(config, hostile_numbers)
{
	assert_refused(
	    "node:\n  address_v4: 10.0.1.1\n  proxy_port: 999999999999999999999999999\n",
	    "t.yaml:3: node.proxy_port: must be 1..65535, got 999999999999999999999999999");
	assert_refused("node:\n  address_v4: 10.0.1.1\n  proxy_port: 0xffffffffffffffffffff\n",
		       "t.yaml:3: node.proxy_port: must be 1..65535, got 0xffffffffffffffffffff");
	assert_refused("node:\n  address_v4: 10.0.1.1\n  proxy_port: -1\n",
		       "t.yaml:3: node.proxy_port: must be 1..65535, got -1");
	assert_refused(NODE "proxy:\n  workers: -0\n",
		       "t.yaml:4: proxy.workers: must be 0..256, got -0");
	assert_refused(
	    "node:\n  address_v4: 10.0.1.1\n  proxy_port: 0x\n",
	    "t.yaml:3: node.proxy_port: must be a decimal or 0x hex integer, got \"0x\"");
	assert_refused(
	    "node:\n  address_v4: 10.0.1.1\n  proxy_port: 080\n",
	    "t.yaml:3: node.proxy_port: must be a decimal or 0x hex integer, got \"080\"");
	assert_refused("node:\n  address_v4: 10.0.1.1\n  proxy_port: 8e1\n",
		       "t.yaml:3: node.proxy_port: must be a decimal or 0x hex integer");
	assert_refused("node:\n  address_v4: 10.0.1.1\n  proxy_port: \"-\"\n",
		       "t.yaml:3: node.proxy_port: must be an integer, got the string \"-\"");
	assert_refused(
	    "node:\n  address_v4: 10.0.1.1\n  proxy_port: --1\n",
	    "t.yaml:3: node.proxy_port: must be a decimal or 0x hex integer, got \"--1\"");
}

Test(config, nul_bytes)
{
	static const char text[] = "node:\n  address_v4: 10.0.1.1\0\n";

	cr_assert_eq(parse_len(text, sizeof(text) - 1), -EINVAL);
	cr_assert_null(cfg);
	cr_assert_str_eq(err, "t.yaml:2: yaml: NUL byte in input");
	/* An escaped NUL inside a quoted string reaches us as a byte too. */
	assert_refused(NODE "services:\n  - name: \"w\\0b\"\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
	assert_refused(NODE "bpf:\n  pin_root: \"/a\\0b\"\n",
		       "t.yaml:4: bpf.pin_root: must not contain NUL characters");
	assert_refused("node:\n  address_v4: \"10.0.1.1\\0junk\"\n",
		       "t.yaml:2: node.address_v4: must be an IPv4 address, got \"10.0.1.1?junk\"");
}

Test(config, empty_and_non_mapping)
{
	cr_assert_eq(parse_len("", 0), -EINVAL);
	cr_assert_str_eq(err, "t.yaml:1: yaml: file is empty");
	cr_assert_eq(config_parse("t.yaml", NULL, 0, &cfg, err, sizeof(err)), -EINVAL);
	assert_refused("# only a comment\n", "t.yaml:");
	cr_assert(strstr(err, ": yaml: file is empty"), "%s", err);
	assert_refused("---\n", "t.yaml:");
	cr_assert(strstr(err, ": yaml: file is empty"), "%s", err);
	assert_refused("- node\n- services\n", "t.yaml:1: yaml: must be a mapping, got a sequence");
	assert_refused("hello\n", "t.yaml:1: yaml: must be a mapping, got a scalar");
	assert_refused("\"\"\n", "t.yaml:1: yaml: must be a mapping, got a scalar");
}

Test(config, bad_encoding)
{
	assert_refused("node:\n  address_v4: \xff\xfe\n", "t.yaml:2: yaml: ");
	assert_refused("node:\n  address_v4: 10.0.1.1\x01\n", "t.yaml:2: yaml: ");
}

Test(config, long_keys_and_values_are_cut_in_messages)
{
	char key[300];

	memset(key, 'k', sizeof(key));
	memcpy(key, "node:\n  ", 8);
	strcpy(key + 250, ": 1\n");
	assert_refused(key, "t.yaml:2: node.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...: "
			    "unknown field");
	cr_assert_lt(strlen(err), 120);
	assert_refused("node:\n  \"a\\tb\\e\": 1\n", "t.yaml:2: node.a?b?: unknown field");
}

Test(config, error_buffer_is_optional_and_bounded)
{
	char small[12];

	cr_assert_eq(config_parse("t.yaml", "x: 1\n", 5, &cfg, NULL, 0), -EINVAL);
	memset(small, 'X', sizeof(small));
	cr_assert_eq(config_parse("t.yaml", "x: 1\n", 5, &cfg, small, sizeof(small)), -EINVAL);
	cr_assert_str_eq(small, "t.yaml:1: x");
	cr_assert_eq(config_load("/nonexistent", &cfg, NULL, 0), -ENOENT);
}

/* ---- ${NAME} from the environment (Criterion runs each test in its own process) ---- */

/* As assert_refused, but the whole message must be want. */
#define assert_refused_exactly(text, want)                                                         \
	do {                                                                                       \
		assert_refused(text, want);                                                        \
		cr_assert_str_eq(err, want);                                                       \
	} while (0)

Test(config, env_values_are_substituted)
{
	struct shoal_addr a = ip("10.0.1.7");

	setenv("SHOAL_TEST_NODE_IP", "10.0.1.7", 1);
	setenv("SHOAL_TEST_PORT", "15005", 1);
	setenv("SHOAL_TEST_NODE", "node-a", 1);
	/* What a variable holds is not expanded again. */
	setenv("SHOAL_TEST_REF", "${SHOAL_TEST_NODE}", 1);
	cr_assert_eq(parse("node:\n"
			   "  address_v4: ${SHOAL_TEST_NODE_IP}\n"
			   "  proxy_port: ${SHOAL_TEST_PORT}\n"
			   "bpf:\n"
			   "  pin_root: /sys/fs/bpf/${SHOAL_TEST_NODE}/a$$b\n"
			   "  cgroup: \"/${SHOAL_TEST_REF}\"\n"),
		     0, "%s", err);
	cr_assert(addr_equal(&cfg->proxy_v4, &a));
	cr_assert_eq(cfg->proxy_port, 15005);
	cr_assert_str_eq(cfg->pin_root, "/sys/fs/bpf/node-a/a$b");
	cr_assert_str_eq(cfg->cgroup, "/${SHOAL_TEST_NODE}");
}

Test(config, env_keys_are_not_substituted)
{
	setenv("SHOAL_TEST_KEY", "address_v4", 1);
	assert_refused_exactly("node:\n  ${SHOAL_TEST_KEY}: 10.0.1.1\n",
			       "t.yaml:2: node.${SHOAL_TEST_KEY}: unknown field");
}

Test(config, env_defaults)
{
	struct shoal_addr a = ip("10.0.1.8"), b = ip("10.0.1.9");

	unsetenv("SHOAL_TEST_UNSET");
	cr_assert_eq(parse("node:\n  address_v4: ${SHOAL_TEST_UNSET:-10.0.1.8}\n"), 0, "%s", err);
	cr_assert(addr_equal(&cfg->proxy_v4, &a));
	config_free(cfg);
	cfg = NULL;

	/* Empty counts as unset, as in the shell. */
	setenv("SHOAL_TEST_EMPTY", "", 1);
	cr_assert_eq(parse("node:\n  address_v4: ${SHOAL_TEST_EMPTY:-10.0.1.8}\n"), 0, "%s", err);
	cr_assert(addr_equal(&cfg->proxy_v4, &a));
	config_free(cfg);
	cfg = NULL;

	setenv("SHOAL_TEST_NODE_IP", "10.0.1.9", 1);
	cr_assert_eq(parse("node:\n  address_v4: ${SHOAL_TEST_NODE_IP:-10.0.1.8}\n"), 0, "%s", err);
	cr_assert(addr_equal(&cfg->proxy_v4, &b));
	config_free(cfg);
	cfg = NULL;

	/* A default is literal: no "$$" inside it, no reference. */
	cr_assert_eq(parse(NODE "bpf:\n  pin_root: /${SHOAL_TEST_UNSET:-$$x}\n"), 0, "%s", err);
	cr_assert_str_eq(cfg->pin_root, "/$$x");
}

Test(config, env_unset_variable_is_an_error)
{
	unsetenv("SHOAL_TEST_UNSET");
	assert_refused_exactly(
	    "node:\n  address_v4: ${SHOAL_TEST_UNSET}\n",
	    "t.yaml:2: node.address_v4: environment variable SHOAL_TEST_UNSET is not set");
	assert_refused_exactly(NODE "services:\n"
				    "  - name: web\n"
				    "    vips: [10.96.0.10, \"${SHOAL_TEST_UNSET}\"]\n",
			       "t.yaml:5: services[0].vips[1]: environment variable "
			       "SHOAL_TEST_UNSET is not set");
	/* Set but empty, without a default: the field judges "". */
	setenv("SHOAL_TEST_EMPTY", "", 1);
	assert_refused_exactly("node:\n  address_v4: ${SHOAL_TEST_EMPTY}\n",
			       "t.yaml:2: node.address_v4: must be an IPv4 address, got \"\"");
}

Test(config, env_malformed_references)
{
	setenv("SHOAL_TEST_NODE_IP", "10.0.1.7", 1);
	assert_refused_exactly("node:\n  address_v4: ${SHOAL_TEST_NODE_IP\n",
			       "t.yaml:2: node.address_v4: \"${\" without a closing \"}\", got "
			       "\"${SHOAL_TEST_NODE_IP\"");
	assert_refused_exactly("node:\n  address_v4: ${}\n",
			       "t.yaml:2: node.address_v4: must be ${NAME} or ${NAME:-default} "
			       "with NAME of [A-Za-z_][A-Za-z0-9_]* (at most 128), got \"${}\"");
	assert_refused("node:\n  address_v4: ${1IP}\n",
		       "t.yaml:2: node.address_v4: must be ${NAME} or ${NAME:-default}");
	assert_refused("node:\n  address_v4: ${NODE IP}\n",
		       "t.yaml:2: node.address_v4: must be ${NAME} or ${NAME:-default}");
	assert_refused("node:\n  address_v4: ${SHOAL_TEST_NODE_IP-10.0.1.1}\n",
		       "t.yaml:2: node.address_v4: must be ${NAME} or ${NAME:-default}");
	assert_refused("node:\n  address_v4: ${SHOAL_TEST_NODE_IP:}\n",
		       "t.yaml:2: node.address_v4: must be ${NAME} or ${NAME:-default}");
	assert_refused_exactly(NODE "bpf:\n  pin_root: /a$b\n",
			       "t.yaml:4: bpf.pin_root: a \"$\" must start ${NAME} or be written "
			       "\"$$\", got \"/a$b\"");
	assert_refused(NODE "bpf:\n  pin_root: /a$\n",
		       "t.yaml:4: bpf.pin_root: a \"$\" must start ${NAME}");
}

Test(config, env_value_is_checked_by_its_field)
{
	setenv("SHOAL_TEST_NODE_IP", "fd00:1::1", 1);
	assert_refused_exactly("node:\n  address_v4: ${SHOAL_TEST_NODE_IP}\n",
			       "t.yaml:2: node.address_v4: must be an IPv4 address, got "
			       "\"fd00:1::1\"");
	setenv("SHOAL_TEST_PORT", "70000", 1);
	assert_refused_exactly(NODE "  proxy_port: ${SHOAL_TEST_PORT}\n",
			       "t.yaml:3: node.proxy_port: must be 1..65535, got 70000");
	/* Quoted, it is a string before and after substitution. */
	setenv("SHOAL_TEST_PORT", "15005", 1);
	assert_refused(NODE "  proxy_port: \"${SHOAL_TEST_PORT}\"\n",
		       "t.yaml:3: node.proxy_port: must be an integer, got the string \"15005\"");
	setenv("SHOAL_TEST_NODE", "Node_A", 1);
	assert_refused(NODE "services:\n  - name: ${SHOAL_TEST_NODE}\n",
		       "t.yaml:4: services[0].name: must be an RFC 1123 label");
}

Test(config, env_expansion_is_bounded)
{
	char big[3001];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	setenv("SHOAL_TEST_BIG", big, 1);
	/* One fits a path; twice is past every field's limit and refused at once. */
	cr_assert_eq(parse(NODE "bpf:\n  pin_root: /${SHOAL_TEST_BIG}\n"), 0, "%s", err);
	cr_assert_eq(strlen(cfg->pin_root), 3001);
	config_free(cfg);
	cfg = NULL;
	assert_refused_exactly(NODE "bpf:\n  pin_root: /${SHOAL_TEST_BIG}${SHOAL_TEST_BIG}\n",
			       "t.yaml:4: bpf.pin_root: expands to more than 4095 bytes");
	/* Below the bound, the field's own limit speaks. */
	assert_refused_exactly(NODE "services:\n  - name: ${SHOAL_TEST_BIG}\n",
			       "t.yaml:4: services[0].name: must be an RFC 1123 label (a-z, 0-9 "
			       "and '-', at most 63, alphanumeric at both ends), got "
			       "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
}

/* ---- protocol detection and the proxy's HTTP knobs ---- */

Test(config, proxy_http_defaults)
{
	static const uint16_t opaque[] = CONFIG_DEFAULT_OPAQUE_PORTS;
	int i;

	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_assert_eq(cfg->detect_timeout_ms, 100);
	cr_assert_eq(cfg->idle_timeout_ms, 300000);
	cr_assert_eq(cfg->n_opaque_ports, 8);
	for (i = 0; i < cfg->n_opaque_ports; i++)
		cr_assert_eq(cfg->opaque_ports[i], opaque[i]);
	cr_assert_eq(cfg->opaque_ports[0], 25);
	cr_assert_eq(cfg->opaque_ports[7], 11211);
	cr_assert_eq(cfg->http_max_request_line, 8192);
	cr_assert_eq(cfg->http_max_head_bytes, 32768);
	cr_assert_eq(cfg->http_max_headers, 100);
	cr_assert_eq(cfg->http_pool_idle_timeout_ms, 30000);
	cr_assert_eq(cfg->http_pool_max_idle_per_endpoint, 64);
	cr_assert(cfg->http_forwarded_for);
	cr_assert(cfg->http_forwarded_proto);
	cr_assert(cfg->http_request_id);
	cr_assert(cfg->http_timeout_header);
	cr_assert_eq(cfg->n_http_upgrades, 1);
	cr_assert_str_eq(cfg->http_upgrades[0], "websocket");
}

Test(config, proxy_http_forwarding_fields)
{
	cr_assert_eq(parse(NODE "proxy:\n"
				"  http:\n"
				"    forwarded_for: false\n"
				"    forwarded_proto: false\n"
				"    request_id: false\n"
				"    timeout_header: false\n"
				"    upgrade_protocols: [WebSocket, h2c, my-proto]\n"),
		     0, "%s", err);
	cr_assert_not(cfg->http_forwarded_for);
	cr_assert_not(cfg->http_forwarded_proto);
	cr_assert_not(cfg->http_request_id);
	cr_assert_not(cfg->http_timeout_header);
	cr_assert_eq(cfg->n_http_upgrades, 3);
	cr_assert_str_eq(cfg->http_upgrades[0], "websocket");
	cr_assert_str_eq(cfg->http_upgrades[1], "h2c");
	cr_assert_str_eq(cfg->http_upgrades[2], "my-proto");
	cr_assert_eq(parse(NODE "proxy:\n  http:\n    upgrade_protocols: []\n"), 0, "%s", err);
	cr_assert_eq(cfg->n_http_upgrades, 0);
	assert_refused(NODE "proxy:\n  http:\n    upgrade_protocols: [websocket/13]\n",
		       "t.yaml:5: proxy.http.upgrade_protocols[0]: must be a protocol name (a "
		       "token, no version), got \"websocket/13\"");
	assert_refused(NODE "proxy:\n  http:\n    upgrade_protocols: [h2c, H2C]\n",
		       "t.yaml:5: proxy.http.upgrade_protocols[1]: duplicate protocol \"h2c\"");
	assert_refused(NODE "proxy:\n  http:\n    upgrade_protocols: [a, b, c, d, e, f, g, h, i]\n",
		       "t.yaml:5: proxy.http.upgrade_protocols[8]: too many protocols, at most 8");
	assert_refused(NODE "proxy:\n  http:\n    request_id: maybe\n",
		       "t.yaml:5: proxy.http.request_id: must be true or false, got \"maybe\"");
}

Test(config, proxy_http_fields)
{
	cr_assert_eq(parse(NODE "proxy:\n"
				"  detect_timeout_ms: 250\n"
				"  opaque_ports: [3306, 9000]\n"
				"  idle_timeout_ms: 0\n"
				"  http:\n"
				"    max_request_line: 4096\n"
				"    max_head_bytes: 65536\n"
				"    max_headers: 50\n"
				"    pool_idle_timeout_ms: 10000\n"
				"    pool_max_idle_per_endpoint: 0\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->detect_timeout_ms, 250);
	cr_assert_eq(cfg->n_opaque_ports, 2);
	cr_assert_eq(cfg->opaque_ports[0], 3306);
	cr_assert_eq(cfg->opaque_ports[1], 9000);
	cr_assert_eq(cfg->idle_timeout_ms, 0);
	cr_assert_eq(cfg->http_max_request_line, 4096);
	cr_assert_eq(cfg->http_max_head_bytes, 65536);
	cr_assert_eq(cfg->http_max_headers, 50);
	cr_assert_eq(cfg->http_pool_idle_timeout_ms, 10000);
	cr_assert_eq(cfg->http_pool_max_idle_per_endpoint, 0);
}

Test(config, empty_opaque_ports_detects_everywhere)
{
	cr_assert_eq(parse(NODE "proxy:\n  opaque_ports: []\n"
				"services:\n  - name: db\n    vips: [10.96.0.11]\n"
				"    ports: [{port: 5432}]\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->n_opaque_ports, 0);
	cr_assert_eq(cfg->services[0]->ports[0].protocol, CONFIG_PROTO_DETECT);
}

Test(config, proxy_http_errors)
{
	assert_refused(NODE "proxy:\n  detect_timeout_ms: 0\n",
		       "t.yaml:4: proxy.detect_timeout_ms: must be 1..10000, got 0");
	assert_refused(NODE "proxy:\n  detect_timeout_ms: 10001\n",
		       "t.yaml:4: proxy.detect_timeout_ms: must be 1..10000, got 10001");
	assert_refused(NODE "proxy:\n  idle_timeout_ms: 86400001\n",
		       "t.yaml:4: proxy.idle_timeout_ms: must be 0..86400000, got 86400001");
	assert_refused(NODE "proxy:\n  opaque_ports: [25, 0]\n",
		       "t.yaml:4: proxy.opaque_ports[1]: must be 1..65535, got 0");
	assert_refused(NODE "proxy:\n  opaque_ports:\n    - 25\n    - 25\n",
		       "t.yaml:6: proxy.opaque_ports[1]: duplicate port 25 (also opaque_ports[0])");
	assert_refused(NODE "proxy:\n  opaque_ports: 25\n",
		       "t.yaml:4: proxy.opaque_ports: must be a sequence, got a scalar");
	assert_refused(NODE "proxy:\n  http:\n    max_request_line: 63\n",
		       "t.yaml:5: proxy.http.max_request_line: must be 64..1048576, got 63");
	assert_refused(NODE "proxy:\n  http:\n    max_head_bytes: 1023\n",
		       "t.yaml:5: proxy.http.max_head_bytes: must be 1024..1048576, got 1023");
	assert_refused(NODE "proxy:\n  http:\n    max_headers: 0\n",
		       "t.yaml:5: proxy.http.max_headers: must be 1..1024, got 0");
	assert_refused(NODE "proxy:\n  http:\n    pool_idle_timeout_ms: 0\n",
		       "t.yaml:5: proxy.http.pool_idle_timeout_ms: must be 1..600000, got 0");
	assert_refused(
	    NODE "proxy:\n  http:\n    pool_max_idle_per_endpoint: 4097\n",
	    "t.yaml:5: proxy.http.pool_max_idle_per_endpoint: must be 0..4096, got 4097");
	assert_refused(NODE
		       "proxy:\n  http:\n    max_request_line: 9000\n    max_head_bytes: 8192\n",
		       "t.yaml:5: proxy.http.max_request_line: must be <= max_head_bytes (8192), "
		       "got 9000");
	/* Against the default line limit, the head's line is the one to fix. */
	assert_refused(NODE "proxy:\n  http:\n    max_head_bytes: 4096\n",
		       "t.yaml:5: proxy.http.max_request_line: must be <= max_head_bytes (4096), "
		       "got 8192");
	assert_refused(NODE "proxy:\n  http:\n    max_body: 1\n",
		       "t.yaml:5: proxy.http.max_body: unknown field");
}

Test(config, proxy_drain_timeout)
{
	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_assert_eq(cfg->drain_timeout_ms, CONFIG_DEFAULT_DRAIN_TIMEOUT_MS);
	cr_assert_eq(cfg->drain_timeout_ms, 5000);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "proxy:\n  drain_timeout_ms: 0\n"), 0, "%s", err);
	cr_assert_eq(cfg->drain_timeout_ms, 0);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "proxy:\n  drain_timeout_ms: 300000\n"), 0, "%s", err);
	cr_assert_eq(cfg->drain_timeout_ms, 300000);
	config_free(cfg);
	cfg = NULL;
	assert_refused(NODE "proxy:\n  drain_timeout_ms: 300001\n",
		       "t.yaml:4: proxy.drain_timeout_ms: must be 0..300000, got 300001");
	assert_refused(NODE "proxy:\n  drain_timeout_ms: -1\n",
		       "t.yaml:4: proxy.drain_timeout_ms: must be 0..300000, got -1");
}

Test(config, http2_limits)
{
	cr_assert_eq(parse(NODE "proxy:\n  http2: {}\n"), 0, "%s", err);
	cr_assert_eq(cfg->http2.max_concurrent_streams, CONFIG_DEFAULT_H2_MAX_STREAMS);
	cr_assert_eq(cfg->http2.max_header_list_bytes, CONFIG_DEFAULT_H2_MAX_HEADER_LIST);
	cr_assert_eq(cfg->http2.hpack_table_bytes, CONFIG_DEFAULT_H2_HPACK_TABLE);
	cr_assert_eq(cfg->http2.stream_window_bytes, CONFIG_DEFAULT_H2_STREAM_WINDOW);
	cr_assert_eq(cfg->http2.session_window_bytes, CONFIG_DEFAULT_H2_SESSION_WINDOW);
	cr_assert_eq(cfg->http2.max_pending_acks, CONFIG_DEFAULT_H2_MAX_PENDING_ACKS);
	cr_assert_eq(cfg->http2.reset_burst, CONFIG_DEFAULT_H2_RESET_BURST);
	cr_assert_eq(cfg->http2.reset_rate, CONFIG_DEFAULT_H2_RESET_RATE);
	cr_assert_eq(cfg->http2.max_continuations, CONFIG_DEFAULT_H2_MAX_CONTINUATIONS);
	cr_assert_eq(cfg->http2.max_sent_resets, CONFIG_DEFAULT_H2_MAX_SENT_RESETS);
	cr_assert_eq(cfg->http2.stall_timeout_ms, CONFIG_DEFAULT_H2_STALL_TIMEOUT_MS);
	cr_assert_eq(cfg->http2.grpc_head_hold_ms, CONFIG_DEFAULT_H2_GRPC_HEAD_HOLD_MS);
	config_free(cfg);
	cfg = NULL;
	cr_assert_eq(parse(NODE "proxy:\n  http2:\n    max_concurrent_streams: 250\n"
				"    max_header_list_bytes: 8192\n    hpack_table_bytes: 0\n"
				"    stream_window_bytes: 65535\n    session_window_bytes: 65535\n"
				"    max_pending_acks: 10\n    reset_burst: 5\n    reset_rate: 2\n"
				"    max_continuations: 3\n    max_sent_resets: 7\n"
				"    stall_timeout_ms: 0\n    grpc_head_hold_ms: 0\n"),
		     0, "%s", err);
	cr_assert_eq(cfg->http2.max_concurrent_streams, 250);
	cr_assert_eq(cfg->http2.max_header_list_bytes, 8192);
	cr_assert_eq(cfg->http2.hpack_table_bytes, 0);
	cr_assert_eq(cfg->http2.stream_window_bytes, 65535);
	cr_assert_eq(cfg->http2.session_window_bytes, 65535);
	cr_assert_eq(cfg->http2.max_pending_acks, 10);
	cr_assert_eq(cfg->http2.reset_burst, 5);
	cr_assert_eq(cfg->http2.reset_rate, 2);
	cr_assert_eq(cfg->http2.max_continuations, 3);
	cr_assert_eq(cfg->http2.max_sent_resets, 7);
	cr_assert_eq(cfg->http2.stall_timeout_ms, 0);
	cr_assert_eq(cfg->http2.grpc_head_hold_ms, 0);
	assert_refused(NODE "proxy:\n  http2:\n    max_concurrent_streams: 0\n",
		       "t.yaml:5: proxy.http2.max_concurrent_streams: must be 1..10000, got 0");
	assert_refused(
	    NODE "proxy:\n  http2:\n    stream_window_bytes: 100\n",
	    "t.yaml:5: proxy.http2.stream_window_bytes: must be 16384..16777216, got 100");
	assert_refused(NODE "proxy:\n  http2:\n    session_window_bytes: 65536\n",
		       "t.yaml:5: proxy.http2.session_window_bytes: must be >= stream_window_bytes "
		       "(262144), got 65536");
	assert_refused(NODE "proxy:\n  http2:\n    max_sent_resets: 0\n",
		       "t.yaml:5: proxy.http2.max_sent_resets: must be 1..1000000, got 0");
	assert_refused(NODE "proxy:\n  http2:\n    stall_timeout_ms: 3600001\n",
		       "t.yaml:5: proxy.http2.stall_timeout_ms: must be 0..3600000, got 3600001");
	assert_refused(NODE "proxy:\n  http2:\n    grpc_head_hold_ms: 10001\n",
		       "t.yaml:5: proxy.http2.grpc_head_hold_ms: must be 0..10000, got 10001");
	assert_refused(NODE "proxy:\n  http2:\n    max_streams: 10\n",
		       "t.yaml:5: proxy.http2.max_streams: unknown field");
}

Test(config, http2_protocol_spellings)
{
	cr_assert_eq(parse(NODE "services:\n  - name: g\n    vips: [10.96.0.9]\n    ports:\n"
				"      - {port: 50051, protocol: grpc}\n"
				"      - {port: 50052, protocol: http2}\n"
				"      - {port: 50053, protocol: kubernetes.io/h2c}\n"
				"    endpoints: []\n"),
		     0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(cfg->services[0]->ports[i].protocol, CONFIG_PROTO_H2C, "port %d", i);
}

/* identity: off without the section; the defaults of docs/config.md. */
Test(config, identity_defaults)
{
	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_assert_not(cfg->identity.enabled);
	cr_assert_eq(parse(NODE "kubernetes:\n  enrollment: {}\nidentity: {}\n"), 0, "%s", err);
	cr_assert(cfg->identity.enabled);
	cr_assert_eq(cfg->identity.source, CONFIG_ID_SOURCE_ISSUED);
	cr_assert_str_eq(cfg->identity.trust_domain, "cluster.local");
	cr_assert_str_eq(cfg->identity.server_url, CONFIG_DEFAULT_ID_SERVER_URL);
	cr_assert_str_eq(cfg->identity.token_file, CONFIG_DEFAULT_ID_TOKEN_FILE);
	cr_assert_str_eq(cfg->identity.anchors_file, CONFIG_DEFAULT_ID_ANCHORS_FILE);
	cr_assert_eq(cfg->identity.lifetime_s, 86400);
	cr_assert_float_eq(cfg->identity.renew_fraction, 0.5, 1e-9);
	cr_assert_float_eq(cfg->identity.renew_jitter, 0.1, 1e-9);
	cr_assert_eq(cfg->identity.backoff_min_ms, 1000);
	cr_assert_eq(cfg->identity.backoff_max_ms, 60000);
	cr_assert_eq(cfg->identity.drop_grace_ms, 60000);
	cr_assert_eq(cfg->identity.poll_ms, 5000);
	cr_assert_eq(cfg->identity.timeout_ms, 10000);
	cr_assert_eq(parse(NODE "identity:\n  enabled: false\n"), 0, "%s", err);
	cr_assert_not(cfg->identity.enabled);
}

Test(config, identity_fields)
{
	cr_assert_eq(parse(NODE "kubernetes:\n  enrollment: {}\n"
				"identity:\n"
				"  trust_domain: prod.example.org\n"
				"  source: issued\n"
				"  server_url: https://id.shoal.svc:8443\n"
				"  token_file: /run/tok\n"
				"  anchors_file: /run/trust/anchors.pem\n"
				"  lifetime_s: 20\n"
				"  renew_fraction: 0.7\n"
				"  renew_jitter: 0\n"
				"  backoff_min_ms: 50\n"
				"  backoff_max_ms: 2000\n"
				"  drop_grace_ms: 0\n"
				"  poll_ms: 200\n"
				"  timeout_ms: 3000\n"),
		     0, "%s", err);
	cr_assert_str_eq(cfg->identity.trust_domain, "prod.example.org");
	cr_assert_str_eq(cfg->identity.server_url, "https://id.shoal.svc:8443");
	cr_assert_str_eq(cfg->identity.token_file, "/run/tok");
	cr_assert_str_eq(cfg->identity.anchors_file, "/run/trust/anchors.pem");
	cr_assert_eq(cfg->identity.lifetime_s, 20);
	cr_assert_float_eq(cfg->identity.renew_fraction, 0.7, 1e-9);
	cr_assert_float_eq(cfg->identity.renew_jitter, 0.0, 1e-9);
	cr_assert_eq(cfg->identity.backoff_min_ms, 50);
	cr_assert_eq(cfg->identity.backoff_max_ms, 2000);
	cr_assert_eq(cfg->identity.drop_grace_ms, 0);
	cr_assert_eq(cfg->identity.poll_ms, 200);
	cr_assert_eq(cfg->identity.timeout_ms, 3000);
	/* the files source needs no enrollment */
	cr_assert_eq(parse(NODE "identity:\n  source: files\n  dir: /etc/shoal/id\n"), 0, "%s",
		     err);
	cr_assert_eq(cfg->identity.source, CONFIG_ID_SOURCE_FILES);
	cr_assert_str_eq(cfg->identity.dir, "/etc/shoal/id");
}

Test(config, identity_errors)
{
	assert_refused(NODE "identity:\n  source: vault\n",
		       "t.yaml:4: identity.source: must be issued or files, got \"vault\"");
	assert_refused(NODE "identity:\n  source: files\n",
		       "t.yaml:4: identity.dir: source files needs dir");
	assert_refused(NODE "identity:\n  source: files\n  dir: id\n",
		       "t.yaml:5: identity.dir: must be an absolute path");
	assert_refused(NODE "identity: {}\n",
		       "t.yaml:3: identity.source: issued needs kubernetes.enrollment");
	assert_refused(NODE "identity:\n  trust_domain: Cluster.Local\n",
		       "t.yaml:4: identity.trust_domain: must be a trust domain");
	assert_refused(NODE "identity:\n  trust_domain: \"\"\n",
		       "t.yaml:4: identity.trust_domain: must be a trust domain");
	assert_refused(NODE "identity:\n  trust_domain: a..b\n",
		       "t.yaml:4: identity.trust_domain: must be a trust domain");
	assert_refused(NODE "identity:\n  server_url: http://id:8443\n",
		       "t.yaml:4: identity.server_url: must be https://HOST[:PORT]");
	assert_refused(NODE "identity:\n  server_url: https://\n",
		       "t.yaml:4: identity.server_url: must be https://HOST[:PORT]");
	assert_refused(NODE "identity:\n  lifetime_s: 9\n", "t.yaml:4: identity.lifetime_s:");
	assert_refused(NODE "identity:\n  lifetime_s: 7776001\n", "t.yaml:4: identity.lifetime_s:");
	assert_refused(NODE "identity:\n  renew_fraction: 0.95\n",
		       "t.yaml:4: identity.renew_fraction: must be a number from 0.1 to 0.9, "
		       "got \"0.95\"");
	assert_refused(NODE "identity:\n  renew_fraction: half\n",
		       "t.yaml:4: identity.renew_fraction: must be a number");
	assert_refused(NODE "identity:\n  renew_jitter: 0.6\n",
		       "t.yaml:4: identity.renew_jitter: must be a number from 0 to 0.5");
	assert_refused(NODE "identity:\n  backoff_min_ms: 5000\n  backoff_max_ms: 1000\n",
		       "t.yaml:4: identity.backoff_min_ms: must be <= backoff_max_ms");
	assert_refused(NODE "identity:\n  poll_ms: 50\n", "t.yaml:4: identity.poll_ms:");
	assert_refused(NODE "identity:\n  token_file: tok\n", "t.yaml:4: identity.token_file:");
	assert_refused(NODE "identity:\n  certs: /x\n", "t.yaml:4: identity.certs:");
}

/* mtls (docs/mtls.md): off by default; on, it needs a node name and an identity source. */
Test(config, mtls_section)
{
	cr_assert_eq(parse(NODE), 0, "%s", err);
	cr_expect_eq(cfg->mtls.mode, CONFIG_MTLS_OFF, "off unless configured");
	cr_expect_eq(cfg->mtls.port, CONFIG_DEFAULT_MTLS_PORT);
	cr_expect(cfg->mtls.ktls, "kTLS asked for unless turned off");
	cr_expect_eq(cfg->mtls.handshake_timeout_ms, CONFIG_DEFAULT_MTLS_HANDSHAKE_TIMEOUT_MS);
	cr_expect_eq(cfg->mtls.max_handshakes, CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES);
	cr_expect_eq(cfg->mtls.max_handshakes_per_source,
		     CONFIG_DEFAULT_MTLS_MAX_HANDSHAKES_PER_SOURCE);
	cr_assert_eq(parse(NODE "identity: {source: files, dir: /etc/shoal/id}\n"
				"mtls:\n  mode: strict\n  node_name: node-a\n  port: 15100\n"
				"  peer_identity_header: true\n  ktls: false\n"
				"  handshake_timeout_ms: 2000\n  max_handshakes: 10\n"
				"  max_handshakes_per_source: 5\n"
				"  nodes: [{name: node-b, address: 192.168.77.2}]\n"
				"  workloads: [{address: 10.77.1.2, identity: default/client}]\n"),
		     0, "%s", err);
	cr_expect_eq(cfg->mtls.mode, CONFIG_MTLS_STRICT);
	cr_expect_str_eq(cfg->mtls.node_name, "node-a");
	cr_expect_eq(cfg->mtls.port, 15100);
	cr_expect(cfg->mtls.peer_identity_header);
	cr_expect_not(cfg->mtls.ktls);
	cr_expect_eq(cfg->mtls.handshake_timeout_ms, 2000);
	cr_expect_eq(cfg->mtls.max_handshakes, 10);
	cr_expect_eq(cfg->mtls.max_handshakes_per_source, 5);
	cr_assert_eq(cfg->mtls.n_nodes, 1);
	cr_expect_str_eq(cfg->mtls.nodes[0].name, "node-b");
	cr_expect(config_mtls_node(cfg, "node-b") == &cfg->mtls.nodes[0]);
	cr_expect_null(config_mtls_node(cfg, "node-c"));
	cr_assert_eq(cfg->mtls.n_workloads, 1);
	cr_expect_str_eq(cfg->mtls.workloads[0].identity, "default/client");
	cr_assert_eq(parse(NODE "mtls: {mode: permissive, node_name: n1}\n"
				"identity: {source: files, dir: /id}\n"),
		     0, "%s", err);
	cr_expect_eq(cfg->mtls.mode, CONFIG_MTLS_PERMISSIVE);

	assert_refused(NODE "mtls: {mode: on}\n",
		       "t.yaml:3: mtls.mode: must be off, permissive or strict");
	assert_refused(NODE "mtls: {mode: strict}\n",
		       "t.yaml:3: mtls: node_name is required when mode");
	assert_refused(NODE "mtls: {mode: strict, node_name: n1}\n",
		       "t.yaml:3: mtls.mode: needs the identity section");
	assert_refused(NODE "mtls: {mode: strict, node_name: n1}\nidentity: {enabled: false}\n",
		       "t.yaml:3: mtls.mode: needs the identity section");
	assert_refused(NODE "mtls: {node_name: Node_1}\n",
		       "t.yaml:3: mtls.node_name: must be a node name");
	assert_refused(NODE "mtls: {trust_domain: x.y}\n", "t.yaml:3: mtls.trust_domain:");
	assert_refused(NODE "mtls: {handshake_timeout_ms: 10}\n",
		       "t.yaml:3: mtls.handshake_timeout_ms:");
	assert_refused(NODE "mtls: {max_handshakes: 4, max_handshakes_per_source: 8}\n",
		       "t.yaml:3: mtls.max_handshakes_per_source: must be <= max_handshakes");
	assert_refused(
	    NODE "mtls:\n  workloads: [{address: 10.0.0.1, identity: default}]\n",
	    "t.yaml:4: mtls.workloads[0].identity: must be <namespace>/<service account>");
	assert_refused(
	    NODE "mtls:\n  workloads: [{address: 10.0.0.1, identity: de_f/sa}]\n",
	    "t.yaml:4: mtls.workloads[0].identity: must be <namespace>/<service account>");
	assert_refused(NODE "mtls:\n  nodes: [{name: a, address: 10.0.0.1}, {name: a, address: "
			    "10.0.0.2}]\n",
		       "t.yaml:4: mtls.nodes[1]: node \"a\" is listed twice");
	assert_refused(NODE "mtls:\n  nodes: [{name: a}]\n",
		       "t.yaml:4: mtls.nodes[0].address: is required");
	assert_refused(NODE "mtls: {tls: true}\n", "t.yaml:3: mtls.tls:");
}

/* Modes per namespace and per service (docs/mtls.md, "Modes"), and which one is in force. */
Test(config, mtls_scoped_modes)
{
	const struct config_mtls *m;

	cr_assert_eq(parse(NODE
			   "identity: {source: files, dir: /id}\n"
			   "mtls:\n  mode: permissive\n  node_name: n1\n"
			   "  namespaces:\n    - {name: pay, mode: strict}\n"
			   "    - {name: legacy, mode: off}\n"
			   "  services:\n    - {namespace: pay, name: export, mode: permissive}\n"
			   "    - {namespace: web, name: api, mode: strict}\n"),
		     0, "%s", err);
	m = &cfg->mtls;
	cr_expect(m->on);
	cr_assert_eq(m->n_namespaces, 2);
	cr_assert_eq(m->n_services, 2);
	/* Sorted for the binary search. */
	cr_expect_str_eq(m->namespaces[0].namespace, "legacy");
	cr_expect_str_eq(m->namespaces[1].namespace, "pay");
	cr_expect_eq(config_mtls_mode_for(m, "pay", "ledger", 0), CONFIG_MTLS_STRICT,
		     "the namespace's mode");
	cr_expect_eq(config_mtls_mode_for(m, "pay", "export", 0), CONFIG_MTLS_PERMISSIVE,
		     "a service's mode beats its namespace's");
	cr_expect_eq(config_mtls_mode_for(m, "legacy", "x", 0), CONFIG_MTLS_OFF);
	cr_expect_eq(config_mtls_mode_for(m, "web", "api", 0), CONFIG_MTLS_STRICT);
	cr_expect_eq(config_mtls_mode_for(m, "web", "other", 0), CONFIG_MTLS_PERMISSIVE,
		     "mtls.mode elsewhere");
	/* An annotation (1 + mode) raises, never lowers. */
	cr_expect_eq(config_mtls_mode_for(m, "legacy", "x", 1 + CONFIG_MTLS_STRICT),
		     CONFIG_MTLS_STRICT);
	cr_expect_eq(config_mtls_mode_for(m, "pay", "ledger", 1 + CONFIG_MTLS_OFF),
		     CONFIG_MTLS_STRICT);
	cr_expect_eq(config_mtls_mode_for(m, "web", "other", 1 + CONFIG_MTLS_PERMISSIVE),
		     CONFIG_MTLS_PERMISSIVE);
	cr_expect_eq(config_mtls_mode_for(m, "web", "other", 99), CONFIG_MTLS_PERMISSIVE,
		     "a value out of range is no mode");
	/* A name longer than any label matches nothing, without overflowing the key. */
	cr_expect_eq(config_mtls_mode_for(m,
					  "pay-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
					  "xxxxxxxxxxxxxxxxxxxxxxxxx",
					  "a", 0),
		     CONFIG_MTLS_PERMISSIVE);

	/* The hop runs when only a namespace asks for it. */
	cr_assert_eq(parse(NODE "identity: {source: files, dir: /id}\n"
				"mtls:\n  node_name: n1\n"
				"  namespaces: [{name: pay, mode: permissive}]\n"),
		     0, "%s", err);
	cr_expect_eq(cfg->mtls.mode, CONFIG_MTLS_OFF);
	cr_expect(cfg->mtls.on);
	cr_expect_eq(config_mtls_mode_for(&cfg->mtls, "pay", "a", 0), CONFIG_MTLS_PERMISSIVE);
	cr_expect_eq(config_mtls_mode_for(&cfg->mtls, "web", "a", 0), CONFIG_MTLS_OFF);
	cr_assert_eq(parse(NODE "mtls:\n  namespaces: [{name: pay, mode: off}]\n"), 0, "%s", err);
	cr_expect_not(cfg->mtls.on, "every mode off: no hop, no node_name needed");

	assert_refused(NODE "mtls:\n  namespaces: [{name: pay, mode: strict}]\n",
		       "t.yaml:4: mtls: node_name is required when mode, or a namespace's");
	assert_refused(NODE "mtls:\n  node_name: n1\n  services: [{namespace: a, name: b, "
			    "mode: strict}]\n",
		       "t.yaml:3: mtls.services: needs the identity section");
	assert_refused(NODE "mtls:\n  node_name: n1\n  namespaces: [{name: a, mode: strict}]\n",
		       "t.yaml:3: mtls.namespaces: needs the identity section");
	assert_refused(NODE "mtls:\n  namespaces: [{name: pay, mode: on}]\n",
		       "t.yaml:4: mtls.namespaces[0].mode: must be off, permissive or strict");
	assert_refused(NODE "mtls:\n  namespaces: [{name: Pay, mode: off}]\n",
		       "t.yaml:4: mtls.namespaces[0].name: must be a namespace (a DNS label");
	assert_refused(NODE "mtls:\n  namespaces: [{name: pay}]\n",
		       "t.yaml:4: mtls.namespaces[0].mode: is required");
	assert_refused(NODE "mtls:\n  namespaces: [{name: a, mode: off}, {name: a, mode: off}]\n",
		       "t.yaml:4: mtls.namespaces[1]: namespace \"a\" is listed twice");
	assert_refused(NODE "mtls:\n  services: [{namespace: a, mode: off}]\n",
		       "t.yaml:4: mtls.services[0].name: is required");
	assert_refused(NODE "mtls:\n  services: [{namespace: a, name: b.c, mode: off}]\n",
		       "t.yaml:4: mtls.services[0].name: must be a service name");
	assert_refused(NODE "mtls:\n  services:\n    - {namespace: a, name: b, mode: off}\n"
			    "    - {namespace: a, name: b, mode: strict}\n",
		       "t.yaml:6: mtls.services[1]: service a/b is listed twice");
	assert_refused(NODE "mtls:\n  services: [{namespace: a, name: b, mode: off, port: 80}]\n",
		       "t.yaml:4: mtls.services[0].port:");
}

/* An endpoint's node and identity (docs/mtls.md), kept in its service's strings. */
Test(config, endpoint_node_and_identity)
{
	cr_assert_eq(
	    parse(NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n"
		       "    ports: [{port: 80}]\n"
		       "    endpoints: [{address: 10.0.0.1, node: node-b, identity: default/web},\n"
		       "                {address: 10.0.0.2},\n"
		       "                {address: 10.0.0.3, identity: prod/api.v2}]\n"),
	    0, "%s", err);
	const struct config_service *s = cfg->services[0];

	cr_assert_eq(s->n_endpoints, 3);
	cr_expect_str_eq(s->endpoints[0].node, "node-b");
	cr_expect_str_eq(s->endpoints[0].identity, "default/web");
	cr_expect_null(s->endpoints[1].node);
	cr_expect_null(s->endpoints[1].identity);
	cr_expect_null(s->endpoints[2].node);
	cr_expect_str_eq(s->endpoints[2].identity, "prod/api.v2");
	/* A copy keeps them, in its own string table. */
	struct config_service *d = config_service_dup(s);

	cr_assert(d);
	cr_expect_str_eq(d->endpoints[0].node, "node-b");
	cr_expect_str_eq(d->endpoints[2].identity, "prod/api.v2");
	cr_expect(d->endpoints[0].identity != s->endpoints[0].identity);
	config_service_put(d);

	assert_refused(
	    NODE "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports: [{port: 80}]\n"
		 "    endpoints: [{address: 10.0.0.1, identity: web}]\n",
	    "t.yaml:7: services[0].endpoints[0].identity: must be <namespace>/<service account>");
	assert_refused(NODE
		       "services:\n  - name: web\n    vips: [10.96.0.10]\n    ports: [{port: 80}]\n"
		       "    endpoints: [{address: 10.0.0.1, node: Node_B}]\n",
		       "t.yaml:7: services[0].endpoints[0].node: must be a node name");
}

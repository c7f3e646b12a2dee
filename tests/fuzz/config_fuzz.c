// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libFuzzer harness for config_parse. Besides what ASan and UBSan catch,
 * it checks the parser's contract on every input: a refusal leaves no
 * config and a "name:line: " message; an accepted config keeps the
 * invariants the loader and the proxy rely on. Any breach aborts, so
 * libFuzzer saves the input. Built by scripts/fuzz-config.sh.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "config/config.h"

#define NAME "fuzz.yaml"

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "config_fuzz: broken invariant: %s\n", what);
		abort();
	}
}

static void check_config(const struct config *cfg)
{
	int i, v, j;

	check(!addr_is_zero(&cfg->proxy_v4) || !addr_is_zero(&cfg->proxy_v6), "a node address");
	check(addr_is_zero(&cfg->proxy_v4) || addr_is_v4(&cfg->proxy_v4), "proxy_v4 is v4");
	check(addr_is_zero(&cfg->proxy_v6) || !addr_is_v4(&cfg->proxy_v6), "proxy_v6 is v6");
	check(cfg->proxy_port != 0 && cfg->socket_mark != 0, "nonzero port and mark");
	check(cfg->pin_root[0] == '/' && cfg->cgroup[0] == '/', "absolute paths");
	check(cfg->connect_deadline_ms >= cfg->connect_timeout_ms, "deadline >= timeout");
	check(cfg->n_services >= 0 && cfg->n_services <= CONFIG_MAX_SERVICES, "service count");
	for (i = 0; i < cfg->n_services; i++) {
		const struct config_service *s = &cfg->services[i];

		check(s->id == (uint32_t)i, "ids in file order");
		check(s->name[0] && strlen(s->name) <= CONFIG_MAX_NAME, "name set");
		check(s->namespace[0] && strlen(s->namespace) <= CONFIG_MAX_NAME, "namespace set");
		check(s->n_vips >= 1 && s->n_vips <= CONFIG_MAX_VIPS, "vip count");
		check(s->n_ports >= 1 && s->n_ports <= CONFIG_MAX_PORTS, "port count");
		check(s->n_endpoints >= 0 && s->n_endpoints <= CONFIG_MAX_ENDPOINTS,
		      "endpoint count");
		check(s->line >= 1, "service line");
		for (j = 0; j < s->n_endpoints; j++)
			check(s->endpoints[j].line >= 1 && !addr_is_zero(&s->endpoints[j].addr),
			      "endpoint");
		for (v = 0; v < s->n_vips; v++) {
			for (j = 0; j < s->n_ports; j++) {
				const struct config_port *port = NULL;

				check(s->ports[j].port && s->ports[j].target_port, "ports nonzero");
				/* (VIP, port) is unique, so the lookup finds this very one. */
				check(config_find_service(cfg, &s->vips[v], htons(s->ports[j].port),
							  &port) == s &&
					  port == &s->ports[j],
				      "find_service round trip");
			}
		}
	}
}

/*
 * Variables for ${NAME} references to find, so the fuzzer reaches the
 * substitution's every branch: a node address, a port, an empty value
 * (defaults) and one long enough that two of them pass the bound.
 */
static void set_fuzz_env(void)
{
	static char big[3001];

	memset(big, 'a', sizeof(big) - 1);
	setenv("SHOAL_FUZZ_V4", "10.0.0.1", 1);
	setenv("SHOAL_FUZZ_PORT", "80", 1);
	setenv("SHOAL_FUZZ_EMPTY", "", 1);
	setenv("SHOAL_FUZZ_BIG", big, 1);
	unsetenv("SHOAL_FUZZ_UNSET");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	set_fuzz_env();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = (struct config *)1;
	char err[256];
	int ret;

	memset(err, 'X', sizeof(err));
	ret = config_parse(NAME, (const char *)data, size, &cfg, err, sizeof(err));
	if (ret == 0) {
		check(cfg != NULL, "config on success");
		check_config(cfg);
		config_free(cfg);
		return 0;
	}
	check(ret == -EINVAL || ret == -ENOMEM, "-EINVAL or -ENOMEM");
	check(cfg == NULL, "no config on failure");
	check(memchr(err, '\0', sizeof(err)) != NULL, "message terminated");
	if (ret == -EINVAL)
		check(!strncmp(err, NAME ":", strlen(NAME ":")) && strstr(err, ": ") != NULL,
		      "message is name:line: field: problem");
	return 0;
}

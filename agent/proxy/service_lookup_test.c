// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include <arpa/inet.h>
#include <criterion/criterion.h>

#include "common/addr.h"
#include "proxy/service_lookup.h"

static struct config cfg;
static struct config_service svcs[2];
static struct config_service *svc_list[2] = {&svcs[0], &svcs[1]}; /* cfg.services */

/* Two services, built by hand: web (10.96.0.10:80 -> 8080) and db
 * (10.96.0.20:5432, no target port). */
static void setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(svcs, 0, sizeof(svcs));
	strcpy(svcs[0].name, "web");
	strcpy(svcs[0].namespace, "default");
	addr_parse("10.96.0.10", &svcs[0].vips[0]);
	addr_parse("fd00:96::10", &svcs[0].vips[1]);
	svcs[0].n_vips = 2;
	svcs[0].ports[0] = (struct config_port){.port = 80, .target_port = 8080};
	svcs[0].ports[1] = (struct config_port){.port = 443, .target_port = 8443};
	svcs[0].n_ports = 2;
	strcpy(svcs[1].name, "db");
	strcpy(svcs[1].namespace, "default");
	svcs[1].id = 1;
	addr_parse("10.96.0.20", &svcs[1].vips[0]);
	svcs[1].n_vips = 1;
	svcs[1].ports[0] = (struct config_port){.port = 5432};
	svcs[1].n_ports = 1;
	cfg.services = svc_list;
	cfg.n_services = 2;
}

TestSuite(proxy_route, .init = setup);

static struct shoal_orig_dst orig(const char *ip, uint16_t port, uint32_t svc_id)
{
	struct shoal_orig_dst o = {.port = htons(port), .svc_id = svc_id};

	cr_assert_eq(addr_parse(ip, &o.ip), 0);
	return o;
}

Test(proxy_route, trusts_a_consistent_svc_id)
{
	const struct config_port *port = NULL;
	struct shoal_orig_dst o = orig("fd00:96::10", 443, 0);

	cr_assert_eq(service_lookup(&cfg, &o, &port), &svcs[0]);
	cr_assert_eq(port, &svcs[0].ports[1]);
	cr_assert_eq(ntohs(service_target_port_be(port)), 8443);
}

Test(proxy_route, falls_back_when_the_id_is_stale)
{
	const struct config_port *port = NULL;
	struct shoal_orig_dst wrong = orig("10.96.0.20", 5432, 0);
	struct shoal_orig_dst out_of_range = orig("10.96.0.10", 80, 7);

	cr_assert_eq(service_lookup(&cfg, &wrong, &port), &svcs[1]);
	/* No target port: the service port is used. */
	cr_assert_eq(ntohs(service_target_port_be(port)), 5432);
	cr_assert_eq(service_lookup(&cfg, &out_of_range, &port), &svcs[0]);
	cr_assert_eq(ntohs(service_target_port_be(port)), 8080);
}

Test(proxy_route, unknown_destination)
{
	const struct config_port *port = NULL;
	struct shoal_orig_dst wrong_port = orig("10.96.0.10", 81, 0);
	struct shoal_orig_dst wrong_ip = orig("10.96.0.11", 80, 0);

	cr_assert_null(service_lookup(&cfg, &wrong_port, &port));
	cr_assert_null(service_lookup(&cfg, &wrong_ip, &port));
}

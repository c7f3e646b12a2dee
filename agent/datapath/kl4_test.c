// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Kernel mode's agent half against real BPF maps of the same shapes as
 * the pinned ones (no programs): sets and costs follow the config, costs
 * of endpoints that remain survive a change, the breaker ejects from the
 * kernel's failure counts and doubles, and the ejection cap holds.
 * Skips without root.
 */
#include <bpf/bpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/addr.h"
#include "config/config.h"
#include "datapath/env.h"
#include "datapath/kl4.h"

static int sets_fd = -1, costs_fd = -1;
static struct kl4 *k;
static struct config cfg;
static struct config_service svc;
static struct config_service *svc_list[1] = { &svc };
static struct config_endpoint eps[CONFIG_MAX_ENDPOINTS];

static void setup(void)
{
	if (geteuid() == 0) {
		sets_fd = bpf_map_create(BPF_MAP_TYPE_HASH, "t_kl4_sets",
					 sizeof(struct shoal_kl4_set_key),
					 sizeof(struct shoal_kl4_set), SHOAL_KL4_MAX_SETS, NULL);
		costs_fd = bpf_map_create(BPF_MAP_TYPE_HASH, "t_kl4_costs",
					  sizeof(struct shoal_kl4_cost_key),
					  sizeof(struct shoal_kl4_cost), SHOAL_KL4_MAX_COSTS, NULL);
	}
	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	strcpy(svc.name, "db");
	strcpy(svc.namespace, "default");
	svc.id = 0; /* ids are indices in cfg.services */
	addr_parse("10.96.0.50", &svc.vips[0]);
	svc.n_vips = 1;
	svc.ports[0].port = 5432;
	svc.ports[0].target_port = 15432;
	svc.ports[0].protocol = CONFIG_PROTO_TCP;
	svc.ports[0].mode = CONFIG_MODE_KERNEL;
	svc.n_ports = 1;
	svc.endpoints = eps;
	config_resilience_default(&svc.resilience);
	cfg.services = svc_list;
	cfg.n_services = 1;
}

static void teardown(void)
{
	kl4_close(k);
	k = NULL;
	if (sets_fd >= 0)
		close(sets_fd);
	if (costs_fd >= 0)
		close(costs_fd);
	sets_fd = costs_fd = -1;
}

TestSuite(kl4, .init = setup, .fini = teardown);

static void skip_unless_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (creates BPF maps)");
	cr_assert(sets_fd >= 0 && costs_fd >= 0, "bpf_map_create: %s", strerror(errno));
}

static void set_endpoints(const char *const *addrs, int n)
{
	for (int i = 0; i < n; i++) {
		memset(&eps[i], 0, sizeof(eps[i]));
		cr_assert_eq(addr_parse(addrs[i], &eps[i].addr), 0, "%s", addrs[i]);
		eps[i].ready = eps[i].serving = true;
	}
	svc.n_endpoints = n;
}

static struct shoal_kl4_cost_key cost_key(const char *addr)
{
	struct shoal_kl4_cost_key key = { .port = htons(15432) };

	addr_parse(addr, &key.ip);
	return key;
}

static struct shoal_kl4_set get_set(int family)
{
	struct shoal_kl4_set_key key = { .svc_id = 0, .port = htons(5432), .family = family };
	struct shoal_kl4_set set;

	cr_assert_eq(bpf_map_lookup_elem(sets_fd, &key, &set), 0, "no IPv%d set", family);
	return set;
}

static uint64_t ejected_until(const char *addr)
{
	struct shoal_kl4_set set = get_set(4);
	struct shoal_kl4_cost_key key = cost_key(addr);

	for (uint32_t i = 0; i < set.n; i++)
		if (addr_equal(&set.endpoints[i].ip, &key.ip))
			return set.endpoints[i].ejected_until_boot_ns;
	cr_assert_fail("%s not in the set", addr);
	return 0;
}

static int count_keys(int fd, size_t key_size)
{
	char key[64], next[64];
	int n = 0;

	cr_assert(key_size <= sizeof(key));
	while (bpf_map_get_next_key(fd, n ? key : NULL, next) == 0) {
		memcpy(key, next, key_size);
		n++;
	}
	return n;
}

Test(kl4, sets_and_costs_follow_the_config)
{
	static const char *const three[] = { "10.77.1.3", "10.77.2.2", "fd77:1::3" };
	static const char *const two[] = { "10.77.2.2", "10.77.1.9" };
	struct shoal_kl4_cost c = { .est_us = 20000, .connects = 7, .established = 7 };
	struct shoal_kl4_cost_key kept = cost_key("10.77.2.2");
	struct shoal_kl4_set set;

	skip_unless_root();
	set_endpoints(three, 3);
	cr_assert(kl4_port_is_kernel(&svc, &svc.ports[0]));
	cr_assert_eq(kl4_open(sets_fd, costs_fd, &k), 0);
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	set = get_set(4);
	cr_assert_eq(set.n, 2);
	cr_assert_eq(set.endpoints[0].port, htons(15432), "the target port, network order");
	cr_assert_eq(get_set(6).n, 1);
	cr_assert_eq(count_keys(costs_fd, sizeof(struct shoal_kl4_cost_key)), 3);

	/* The kernel measured one endpoint; the next config keeps it. */
	cr_assert_eq(bpf_map_update_elem(costs_fd, &kept, &c, BPF_EXIST), 0);
	set_endpoints(two, 2);
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	cr_assert_eq(get_set(4).n, 2);
	{
		struct shoal_kl4_set_key v6 = { .svc_id = 0, .port = htons(5432), .family = 6 };

		cr_assert_neq(bpf_map_lookup_elem(sets_fd, &v6, &set), 0, "the IPv6 set is gone");
	}
	cr_assert_eq(count_keys(costs_fd, sizeof(struct shoal_kl4_cost_key)), 2);
	memset(&c, 0, sizeof(c));
	cr_assert_eq(bpf_map_lookup_elem(costs_fd, &kept, &c), 0);
	cr_assert_eq(c.est_us, 20000, "the cost of an endpoint that stays is kept");
	cr_assert_eq(c.connects, 7);

	/* A new agent (a fresh kl4 over the same maps) keeps it too, and a
	 * port back in proxy mode takes everything out. */
	kl4_close(k);
	cr_assert_eq(kl4_open(sets_fd, costs_fd, &k), 0);
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	cr_assert_eq(bpf_map_lookup_elem(costs_fd, &kept, &c), 0);
	cr_assert_eq(c.est_us, 20000);
	svc.ports[0].mode = CONFIG_MODE_PROXY;
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	cr_assert_eq(count_keys(sets_fd, sizeof(struct shoal_kl4_set_key)), 0);
	cr_assert_eq(count_keys(costs_fd, sizeof(struct shoal_kl4_cost_key)), 0);
}

Test(kl4, breaker_ejects_doubles_and_resets)
{
	static const char *const three[] = { "10.77.1.3", "10.77.2.2", "10.77.1.4" };
	struct shoal_kl4_cost_key bad = cost_key("10.77.1.4");
	struct shoal_kl4_cost c = {};
	uint64_t now = env_boot_ns(), sec = 1000000000ull;

	skip_unless_root();
	set_endpoints(three, 3);
	cr_assert_eq(kl4_open(sets_fd, costs_fd, &k), 0);
	cr_assert_eq(kl4_publish(k, &cfg), 0);

	/* Six failures in a row: below the default seven, nothing. */
	c.connects = c.failures = c.consecutive_failures = 6;
	cr_assert_eq(bpf_map_update_elem(costs_fd, &bad, &c, BPF_EXIST), 0);
	cr_assert_eq(kl4_tick(k, now), 0);
	cr_assert_eq(ejected_until("10.77.1.4"), 0);

	/* The seventh ejects for the minimum backoff (1 s). */
	c.connects = c.failures = c.consecutive_failures = 7;
	cr_assert_eq(bpf_map_update_elem(costs_fd, &bad, &c, BPF_EXIST), 0);
	cr_assert_eq(kl4_tick(k, now), 1);
	cr_assert_eq(ejected_until("10.77.1.4"), now + sec);
	cr_assert_eq(kl4_tick(k, now + sec / 2), 0, "no new failure: no new ejection");

	/* Let back in, it fails again: out for twice as long. */
	c.connects = c.failures = c.consecutive_failures = 8;
	cr_assert_eq(bpf_map_update_elem(costs_fd, &bad, &c, BPF_EXIST), 0);
	cr_assert_eq(kl4_tick(k, now + 2 * sec), 1);
	cr_assert_eq(ejected_until("10.77.1.4"), now + 4 * sec);

	/* A connect that establishes resets the backoff. */
	c.established = 1;
	c.consecutive_failures = 0;
	cr_assert_eq(bpf_map_update_elem(costs_fd, &bad, &c, BPF_EXIST), 0);
	cr_assert_eq(kl4_tick(k, now + 5 * sec), 0);
	c.connects = c.failures = 15;
	c.consecutive_failures = 7;
	cr_assert_eq(bpf_map_update_elem(costs_fd, &bad, &c, BPF_EXIST), 0);
	cr_assert_eq(kl4_tick(k, now + 6 * sec), 1);
	cr_assert_eq(ejected_until("10.77.1.4"), now + 7 * sec, "backoff back to 1 s");

	/* A config change keeps the ejection. */
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	cr_assert_eq(ejected_until("10.77.1.4"), now + 7 * sec);
}

Test(kl4, ejection_cap)
{
	static const char *const two[] = { "10.77.1.3", "10.77.1.4" };
	struct shoal_kl4_cost c = { .connects = 9, .failures = 9, .consecutive_failures = 9 };
	uint64_t now = env_boot_ns();

	skip_unless_root();
	set_endpoints(two, 2);
	cr_assert_eq(kl4_open(sets_fd, costs_fd, &k), 0);
	cr_assert_eq(kl4_publish(k, &cfg), 0);
	for (int i = 0; i < 2; i++) {
		struct shoal_kl4_cost_key key = cost_key(two[i]);

		cr_assert_eq(bpf_map_update_elem(costs_fd, &key, &c, BPF_EXIST), 0);
	}
	cr_assert_eq(kl4_tick(k, now), 2, "both breakers open");
	/* Default max_ejection_pct 50: one of two may be out of the set. */
	cr_assert_eq((ejected_until("10.77.1.3") > now) + (ejected_until("10.77.1.4") > now), 1);
}

Test(kl4, too_many_endpoints_stay_in_the_proxy)
{
	char text[32];

	svc.endpoints = eps;
	for (int i = 0; i < SHOAL_KL4_MAX_ENDPOINTS + 1; i++) {
		memset(&eps[i], 0, sizeof(eps[i]));
		snprintf(text, sizeof(text), "10.77.%d.%d", 4 + i / 200, 1 + i % 200);
		cr_assert_eq(addr_parse(text, &eps[i].addr), 0);
	}
	svc.n_endpoints = SHOAL_KL4_MAX_ENDPOINTS;
	cr_assert(kl4_port_is_kernel(&svc, &svc.ports[0]));
	svc.n_endpoints = SHOAL_KL4_MAX_ENDPOINTS + 1;
	cr_assert_not(kl4_port_is_kernel(&svc, &svc.ports[0]));
}

Test(kl4, cost_halves_per_half_life)
{
	struct shoal_kl4_cost c = { .est_us = 8000, .updated_boot_ns = 1000 };

	cr_assert_eq(kl4_cost_now(&c, 1000), 8000);
	cr_assert_eq(kl4_cost_now(&c, 1000 + SHOAL_KL4_HALF_LIFE_NS - 1), 8000);
	cr_assert_eq(kl4_cost_now(&c, 1000 + SHOAL_KL4_HALF_LIFE_NS), 4000);
	cr_assert_eq(kl4_cost_now(&c, 1000 + 3 * SHOAL_KL4_HALF_LIFE_NS), 1000);
	cr_assert_eq(kl4_cost_now(&c, 1000 + 100 * SHOAL_KL4_HALF_LIFE_NS), 0);
	cr_assert_eq(kl4_cost_now(&c, 0), 8000, "a clock behind the sample: no decay");
}

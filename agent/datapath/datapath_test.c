// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The loader against the real kernel: load into a scratch cgroup and pin
 * root, adopt on a second open, refuse a foreign layout, uninstall to
 * nothing. Skips (with the reason) without root, cgroup2 or bpffs.
 */
#include <bpf/bpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "config/config.h"
#include "datapath/env.h"
#include "datapath/datapath.h"
#include "datapath/pins.h"

static struct config cfg;
static struct config_service svc;
static struct config_service *svc_list[1] = {&svc}; /* cfg.services */
static char cg_path[PATH_MAX + 64];

static void skip_unless_capable(void)
{
	char mnt[PATH_MAX];

	if (geteuid() != 0)
		cr_skip_test("needs root (loads BPF programs)");
	if (env_cgroup2_mount(mnt, sizeof(mnt)) != 0)
		cr_skip_test("cgroup2 is not mounted");
	if (env_check_bpffs("/sys/fs/bpf") != 0)
		cr_skip_test("no bpffs at /sys/fs/bpf (scripts/setup.sh mounts it)");
	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
		cr_skip_test("no kernel BTF at /sys/kernel/btf/vmlinux");
}

static void setup(void)
{
	char mnt[PATH_MAX];

	memset(&cfg, 0, sizeof(cfg));
	memset(&svc, 0, sizeof(svc));
	if (env_cgroup2_mount(mnt, sizeof(mnt)) != 0)
		return;
	snprintf(cfg.pin_root, sizeof(cfg.pin_root), "/sys/fs/bpf/shoal-unit-%d", getpid());
	snprintf(cfg.cgroup, sizeof(cfg.cgroup), "/shoal-unit-%d", getpid());
	snprintf(cg_path, sizeof(cg_path), "%s/shoal-unit-%d", mnt, getpid());
	mkdir(cg_path, 0755);
	addr_parse("10.66.0.1", &cfg.proxy_v4);
	cfg.proxy_port = 15001;
	cfg.shortcut = true;
	cfg.socket_mark = SHOAL_DEFAULT_SOCKET_MARK;
	cfg.failopen_after_ms = 1000;
	strcpy(svc.name, "web");
	strcpy(svc.namespace, "default");
	addr_parse("10.96.0.10", &svc.vips[0]);
	svc.n_vips = 1;
	svc.ports[0].port = 80;
	svc.ports[0].target_port = 8080;
	svc.n_ports = 1;
	cfg.services = svc_list;
	cfg.n_services = 1;
}

static void teardown(void)
{
	datapath_uninstall(cfg.pin_root);
	rmdir(cg_path);
}

static int count_links(const char *pin_root)
{
	static const char *const names[] = { "connect4",     "connect6", "getpeername4",
					     "getpeername6", "sockops",  "sk_msg" };
	char path[PATH_MAX + 32];
	int n = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/links/%s", pin_root, names[i]);
		n += access(path, F_OK) == 0;
	}
	return n;
}

TestSuite(loader, .init = setup, .fini = teardown);

Test(loader, loads_pins_adopts_and_uninstalls)
{
	struct datapath *dp;
	struct shoal_counters c;
	struct stat st;

	skip_unless_capable();
	cr_assert_eq(datapath_open(&cfg, false, &dp), 0);
	cr_assert_eq(count_links(cfg.pin_root), 6, "all six links are pinned");
	datapath_close(dp);
	/* Closing the agent leaves the programs attached. */
	cr_assert_eq(count_links(cfg.pin_root), 6);
	cr_assert_eq(pins_read_counters(cfg.pin_root, &c), 0);

	/* A second agent adopts the same pins. */
	cr_assert_eq(datapath_open(&cfg, false, &dp), 0);
	cr_assert_eq(count_links(cfg.pin_root), 6);
	datapath_close(dp);

	cr_assert_eq(datapath_uninstall(cfg.pin_root), 0);
	cr_assert_neq(stat(cfg.pin_root, &st), 0, "pin root is gone");
	cr_assert_eq(errno, ENOENT);
}

Test(loader, refuses_pins_of_another_layout)
{
	struct shoal_meta meta = { .layout_version = SHOAL_LAYOUT_VERSION + 1 };
	struct datapath *dp;
	__u32 zero = 0;
	int fd;

	skip_unless_capable();
	cr_assert_eq(datapath_open(&cfg, false, &dp), 0);
	datapath_close(dp);
	fd = pins_open_map(cfg.pin_root, "shoal_meta");
	cr_assert_geq(fd, 0);
	cr_assert_eq(bpf_map_update_elem(fd, &zero, &meta, BPF_ANY), 0);
	close(fd);
	cr_assert_eq(datapath_open(&cfg, false, &dp), -EPROTO);
}

Test(loader, names_a_missing_cgroup)
{
	struct datapath *dp;

	skip_unless_capable();
	snprintf(cfg.cgroup, sizeof(cfg.cgroup), "shoal-unit-no-such-cgroup-%d", getpid());
	cr_assert_eq(datapath_open(&cfg, false, &dp), -ENOENT);
}

Test(loader, publishes_services_and_heartbeat)
{
	struct shoal_svc_key key = { .port = htons(80), .protocol = 6 };
	struct shoal_svc_val val;
	struct shoal_config c;
	struct datapath *dp;
	__u32 zero = 0;
	int fd;

	skip_unless_capable();
	addr_parse("10.96.0.10", &key.vip);
	cr_assert_eq(datapath_open(&cfg, false, &dp), 0);
	fd = pins_open_map(cfg.pin_root, "shoal_services");
	cr_assert_eq(bpf_map_lookup_elem(fd, &key, &val), 0);
	cr_assert_eq(val.svc_id, 0);
	close(fd);

	fd = pins_open_map(cfg.pin_root, "shoal_config");
	cr_assert_eq(bpf_map_lookup_elem(fd, &zero, &c), 0);
	cr_assert_eq(c.heartbeat_boot_ns, 0, "fail open until the proxy is up");
	cr_assert_eq(c.proxy_port, htons(15001));
	datapath_heartbeat(dp, true);
	cr_assert_eq(bpf_map_lookup_elem(fd, &zero, &c), 0);
	cr_assert_gt(c.heartbeat_boot_ns, 0);
	datapath_heartbeat(dp, false);
	cr_assert_eq(bpf_map_lookup_elem(fd, &zero, &c), 0);
	cr_assert_eq(c.heartbeat_boot_ns, 0);
	close(fd);
	datapath_close(dp);

	/* A restart with the service gone removes its key. */
	cfg.n_services = 0;
	cr_assert_eq(datapath_open(&cfg, false, &dp), 0);
	fd = pins_open_map(cfg.pin_root, "shoal_services");
	cr_assert_neq(bpf_map_lookup_elem(fd, &key, &val), 0);
	close(fd);
	datapath_close(dp);
}

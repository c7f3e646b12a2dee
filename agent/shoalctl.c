// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoalctl: inspect and steer a node's datapath through its pinned maps.
 * It works whether shoald runs or not, so it can also clean up after a
 * crashed agent.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "loader/env.h"
#include "loader/loader.h"
#include "loader/pins.h"
#include "telemetry/kernel_counters.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: shoalctl [--pin-root DIR | -c FILE] COMMAND\n"
		   "\n"
		   "commands:\n"
		   "  status               layout, proxy liveness, shortcut, counts\n"
		   "  counters             datapath counters, then per-service counters\n"
		   "  bpf                  pinned links with their programs, maps with entry counts\n"
		   "  enroll NETNS         mesh a pod: NETNS is a path (/run/netns/NAME) or a PID\n"
		   "  unenroll NETNS       stop meshing it\n"
		   "  shortcut on|off      the sockmap kill switch, for new connections\n"
		   "  uninstall [--force]  remove every link, map and pin shoal made\n"
		   "\n"
		   "The pin root defaults to " SHOAL_DEFAULT_PIN_ROOT
		   "; -c FILE reads bpf.pin_root from a config.\n");
}

static int open_map_or_explain(const char *pin_root, const char *name)
{
	int fd = pins_open_map(pin_root, name);

	if (fd < 0)
		fprintf(stderr, "shoalctl: cannot open %s/maps/%s: %s%s\n", pin_root, name,
			strerror(-fd),
			fd == -ENOENT ? " (is shoal installed there? see --pin-root)" : "");
	return fd;
}

/* Read shoal_config[0]. */
static int read_config(const char *pin_root, struct shoal_config *out)
{
	__u32 zero = 0;
	int fd = open_map_or_explain(pin_root, "shoal_config"), err = 0;

	if (fd < 0)
		return fd;
	if (bpf_map_lookup_elem(fd, &zero, out) < 0)
		err = -errno;
	close(fd);
	return err;
}

static bool proxy_alive(const struct shoal_config *c)
{
	return c->heartbeat_boot_ns && env_boot_ns() - c->heartbeat_boot_ns < c->failopen_after_ns;
}

static int count_keys(int fd, size_t key_size)
{
	char key[64], next[64];
	int n = 0;

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(fd, n ? key : NULL, next) == 0) {
		memcpy(key, next, key_size);
		n++;
	}
	return n;
}

static int cmd_status(const char *pin_root)
{
	struct shoal_meta meta = {};
	struct shoal_config c;
	__u32 zero = 0;
	int fd, err;

	fd = open_map_or_explain(pin_root, "shoal_meta");
	if (fd < 0)
		return 1;
	bpf_map_lookup_elem(fd, &zero, &meta);
	close(fd);
	err = read_config(pin_root, &c);
	if (err)
		return 1;
	printf("layout_version %u\n", meta.layout_version);
	printf("proxy %s\n", proxy_alive(&c) ? "alive" : "stale");
	printf("shortcut %s\n", c.flags & SHOAL_CFG_SHORTCUT ? "on" : "off");
	fd = open_map_or_explain(pin_root, "shoal_enrolled");
	if (fd < 0)
		return 1;
	printf("enrolled %d\n", count_keys(fd, sizeof(struct shoal_enroll_key)));
	close(fd);
	fd = open_map_or_explain(pin_root, "shoal_svc_names");
	if (fd < 0)
		return 1;
	printf("services %d\n", count_keys(fd, sizeof(__u32)));
	close(fd);
	return 0;
}

static int cmd_counters(const char *pin_root)
{
	struct shoal_counters sum;
	int names_fd, stats_fd, err;
	__u32 id, next;
	bool walking = false;

	err = pins_read_counters(pin_root, &sum);
	if (err) {
		fprintf(stderr, "shoalctl: cannot read %s/maps/shoal_counters: %s\n", pin_root,
			strerror(-err));
		return 1;
	}
#define PRINT_COUNTER(field, help) printf(#field " %llu\n", (unsigned long long)sum.field);
	SHOAL_KERNEL_COUNTERS(PRINT_COUNTER)
#undef PRINT_COUNTER

	names_fd = open_map_or_explain(pin_root, "shoal_svc_names");
	stats_fd = open_map_or_explain(pin_root, "shoal_svc_stats");
	if (names_fd < 0 || stats_fd < 0)
		return 1;
	while (bpf_map_get_next_key(names_fd, walking ? &id : NULL, &next) == 0) {
		struct shoal_svc_name name = {};
		struct shoal_svc_stats st = {};

		id = next;
		walking = true;
		if (bpf_map_lookup_elem(names_fd, &id, &name) < 0 ||
		    pins_read_svc_stats(stats_fd, id, &st) < 0)
			continue;
		name.name[sizeof(name.name) - 1] = '\0';
		printf("service %u %s intercepted %llu failed_open %llu\n", id, name.name,
		       (unsigned long long)st.intercepted, (unsigned long long)st.failed_open);
	}
	close(names_fd);
	close(stats_fd);
	return 0;
}

/* enum bpf_link_type's BPF_LINK_TYPE_SOCKMAP (Linux 6.10), newer than the
 * uapi headers this builds against. */
#define SHOAL_LINK_TYPE_SOCKMAP 14

/* Entries in a map, by walking its keys; -1 when the type cannot be walked
 * (socket storage). Bounded by max_entries, so a map that changes under
 * the walk cannot keep it going. */
static long map_entries(int fd, const struct bpf_map_info *info)
{
	char key[256], next[256];
	long n = 0;

	if (info->key_size > sizeof(key))
		return -1;
	while (n <= (long)info->max_entries &&
	       bpf_map_get_next_key(fd, n ? key : NULL, next) == 0) {
		memcpy(key, next, info->key_size);
		n++;
	}
	if (n == 0 && errno != ENOENT)
		return -1;
	return n;
}

/* What is loaded, attached and pinned: the links with their programs, and
 * the maps with their sizes. The bpftool commands for each are in docs/bpf.md. */
static int cmd_bpf(const char *pin_root)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (snprintf(dir, sizeof(dir), "%s/%s", pin_root, SHOAL_PIN_LINKS_DIR) >= (int)sizeof(dir)) {
		fprintf(stderr, "shoalctl: pin root too long\n");
		return 1;
	}
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "shoalctl: cannot open %s: %s (is shoal installed there?)\n", dir,
			strerror(errno));
		return 1;
	}
	printf("%-14s %-6s %-12s %-22s %-8s %s\n", "LINK", "ID", "TYPE", "PROGRAM", "PROG_ID",
	       "ATTACHED");
	while ((de = readdir(d))) {
		struct bpf_link_info li = {};
		struct bpf_prog_info pi = {};
		__u32 len = sizeof(li);
		int fd, pfd;
		char where[64] = "-";

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &li, &len) < 0) {
			printf("%-14s unreadable: %s\n", de->d_name, strerror(errno));
			rc = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		pfd = bpf_prog_get_fd_by_id(li.prog_id);
		len = sizeof(pi);
		if (pfd >= 0)
			bpf_obj_get_info_by_fd(pfd, &pi, &len);
		if (li.type == BPF_LINK_TYPE_CGROUP)
			snprintf(where, sizeof(where), "cgroup id %llu",
				 (unsigned long long)li.cgroup.cgroup_id);
		else
			snprintf(where, sizeof(where), "map shoal_shortcut");
		/* libbpf 1.1 predates sockmap links (Linux 6.10): name that type here. */
		const char *type = libbpf_bpf_link_type_str(li.type);

		if (!type)
			type = li.type == SHOAL_LINK_TYPE_SOCKMAP ? "sockmap" : "?";
		printf("%-14s %-6u %-12s %-22s %-8u %s\n", de->d_name, li.id, type,
		       pi.name[0] ? pi.name : "?", li.prog_id, where);
		if (pfd >= 0)
			close(pfd);
		close(fd);
	}
	closedir(d);

	printf("\n%-20s %-6s %-16s %-10s %s\n", "MAP", "ID", "TYPE", "ENTRIES", "MAX");
	for (int i = 0; i < pins_n_map_names; i++) {
		struct bpf_map_info mi = {};
		__u32 len = sizeof(mi);
		int fd = pins_open_map(pin_root, pins_map_names[i]);
		long n;

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) {
			printf("%-20s missing: %s\n", pins_map_names[i], strerror(fd < 0 ? -fd : errno));
			rc = 1;
			if (fd >= 0)
				close(fd);
			continue;
		}
		n = map_entries(fd, &mi);
		if (n >= 0)
			printf("%-20s %-6u %-16s %-10ld %u\n", pins_map_names[i], mi.id,
			       libbpf_bpf_map_type_str(mi.type), n, mi.max_entries);
		else
			printf("%-20s %-6u %-16s %-10s %u\n", pins_map_names[i], mi.id,
			       libbpf_bpf_map_type_str(mi.type), "-", mi.max_entries);
		close(fd);
	}
	return rc;
}

static int cmd_enroll(const char *pin_root, const char *netns, bool enroll)
{
	uint64_t cookie;
	int err;

	if (pins_netns_cookie(netns, &cookie))
		return 1;
	err = pins_enroll(pin_root, cookie, enroll);
	if (err) {
		fprintf(stderr, "shoalctl: cannot %s netns %s (cookie %llu): %s\n",
			enroll ? "enroll" : "unenroll", netns, (unsigned long long)cookie,
			err == -ENOENT && !enroll ? "not enrolled" : strerror(-err));
		return 1;
	}
	printf("%s netns cookie %llu (%s)\n", enroll ? "enrolled" : "unenrolled",
	       (unsigned long long)cookie, netns);
	return 0;
}

static int cmd_shortcut(const char *pin_root, const char *state)
{
	struct shoal_config *c;
	bool on;
	int fd;

	if (!strcmp(state, "on"))
		on = true;
	else if (!strcmp(state, "off"))
		on = false;
	else {
		fprintf(stderr, "shoalctl: shortcut takes on or off, not '%s'\n", state);
		return 2;
	}
	fd = open_map_or_explain(pin_root, "shoal_config");
	if (fd < 0)
		return 1;
	c = pins_config_map(fd);
	close(fd);
	if (!c) {
		fprintf(stderr, "shoalctl: cannot mmap shoal_config: %s\n", strerror(errno));
		return 1;
	}
	/* A single atomic store: the heartbeat written next to it is untouched. */
	if (on)
		__atomic_fetch_or(&c->flags, SHOAL_CFG_SHORTCUT, __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&c->flags, ~SHOAL_CFG_SHORTCUT, __ATOMIC_RELEASE);
	pins_config_unmap(c);
	printf("shortcut %s for new connections (established ones keep their path, so no byte "
	       "is reordered)\n",
	       on ? "on" : "off");
	return 0;
}

static int cmd_uninstall(const char *pin_root, bool force)
{
	struct shoal_config c;

	if (read_config(pin_root, &c) == 0 && proxy_alive(&c) && !force) {
		fprintf(stderr, "shoalctl: shoald is still running on %s (heartbeat fresh); stop it "
				"first, or pass --force\n",
			pin_root);
		return 1;
	}
	return datapath_uninstall(pin_root) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pin-root", required_argument, NULL, 'P' },
		{ "config", required_argument, NULL, 'c' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	const char *pin_root = SHOAL_DEFAULT_PIN_ROOT, *config_path = NULL, *cmd;
	struct config *cfg = NULL;
	char pin_buf[4096], err_msg[1024];
	bool force = false;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'P':
			pin_root = optarg;
			break;
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (config_path) {
		if (config_load(config_path, &cfg, err_msg, sizeof(err_msg))) {
			fprintf(stderr, "shoalctl: %s\n", err_msg);
			return 2;
		}
		snprintf(pin_buf, sizeof(pin_buf), "%s", cfg->pin_root);
		pin_root = pin_buf;
		config_free(cfg);
	}
	log_route_libbpf();
	cmd = argv[optind++];
	if (!strcmp(cmd, "status") && optind == argc)
		rc = cmd_status(pin_root);
	else if (!strcmp(cmd, "counters") && optind == argc)
		rc = cmd_counters(pin_root);
	else if (!strcmp(cmd, "bpf") && optind == argc)
		rc = cmd_bpf(pin_root);
	else if (!strcmp(cmd, "enroll") && optind + 1 == argc)
		rc = cmd_enroll(pin_root, argv[optind], true);
	else if (!strcmp(cmd, "unenroll") && optind + 1 == argc)
		rc = cmd_enroll(pin_root, argv[optind], false);
	else if (!strcmp(cmd, "shortcut") && optind + 1 == argc)
		rc = cmd_shortcut(pin_root, argv[optind]);
	else if (!strcmp(cmd, "uninstall") &&
		 (optind == argc || (optind + 1 == argc && !strcmp(argv[optind], "--force"))))
		rc = cmd_uninstall(pin_root, force || optind + 1 == argc);
	else {
		fprintf(stderr, "shoalctl: unknown command or wrong arguments: %s\n", cmd);
		usage(stderr);
		rc = 2;
	}
	return rc;
}

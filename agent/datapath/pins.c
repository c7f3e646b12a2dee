// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "datapath/pins.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "datapath/env.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

const char *const pins_map_names[] = {
	"shoal_meta",	 "shoal_config",  "shoal_enrolled", "shoal_services",
	"shoal_svc_stats", "shoal_svc_names", "shoal_counters", "shoal_sk_orig",  "shoal_handoff",
	"shoal_upstream",  "shoal_shortcut",  "shoal_sk_shortcut", "shoal_kl4_sets",
	"shoal_kl4_costs",
};
const int pins_n_map_names = sizeof(pins_map_names) / sizeof(pins_map_names[0]);

int pins_open_map(const char *pin_root, const char *name)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s/%s", pin_root, SHOAL_PIN_MAPS_DIR, name) >=
	    (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

struct shoal_config *pins_config_map(int config_fd)
{
	void *m = mmap(NULL, sizeof(struct shoal_config), PROT_READ | PROT_WRITE, MAP_SHARED,
		       config_fd, 0);

	return m == MAP_FAILED ? NULL : m;
}

void pins_config_unmap(struct shoal_config *cfg)
{
	if (cfg)
		munmap(cfg, sizeof(*cfg));
}

int pins_netns_cookie(const char *netns, uint64_t *cookie)
{
	char path[PATH_MAX];
	socklen_t len = sizeof(*cookie);
	int self, target, sock, err = 0;
	char *end;
	long pid = strtol(netns, &end, 10);

	if (*netns && !*end && pid > 0)
		snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
	else if (snprintf(path, sizeof(path), "%s", netns) >= (int)sizeof(path))
		return -ENAMETOOLONG;

	target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0) {
		err = -errno;
		pr_warn("cannot open network namespace %s: %s", path, strerror(errno));
		return err;
	}
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		err = -errno;
		goto out_target;
	}
	/* A socket belongs to the netns it was created in: create one there
	 * and ask it. Single-threaded callers only (setns is per thread). */
	if (setns(target, CLONE_NEWNET) < 0) {
		err = -errno;
		pr_warn("%s is not a network namespace (setns: %s)", path, strerror(errno));
		goto out_self;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		err = -errno;
	if (setns(self, CLONE_NEWNET) < 0) {
		pr_warn("cannot return to the original network namespace: %s", strerror(errno));
		abort(); /* continuing in the wrong netns would misconfigure everything */
	}
	if (sock < 0) {
		pr_warn("cannot open a socket in %s: %s", path, strerror(-err));
		goto out_self;
	}
	if (getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len) < 0) {
		err = -errno;
		pr_warn("SO_NETNS_COOKIE on a socket in %s: %s (needs Linux 5.14)", path,
			strerror(errno));
	}
	close(sock);
out_self:
	close(self);
out_target:
	close(target);
	return err;
}

int pins_enroll(const char *pin_root, uint64_t cookie, bool enroll)
{
	struct shoal_enroll_key key = { .netns_cookie = cookie };
	struct shoal_enroll_val val = { .enrolled_boot_ns = env_boot_ns() };
	int fd = pins_open_map(pin_root, "shoal_enrolled"), err = 0;

	if (fd < 0)
		return fd;
	if (enroll ? bpf_map_update_elem(fd, &key, &val, BPF_ANY) : bpf_map_delete_elem(fd, &key))
		err = -errno;
	close(fd);
	return err;
}

int pins_read_counters(const char *pin_root, struct shoal_counters *sum)
{
	int ncpu = libbpf_num_possible_cpus(), fd, err = 0;
	struct shoal_counters *per_cpu;
	__u32 zero = 0;

	if (ncpu < 0)
		return ncpu;
	fd = pins_open_map(pin_root, "shoal_counters");
	if (fd < 0)
		return fd;
	per_cpu = calloc(ncpu, sizeof(*per_cpu));
	if (!per_cpu) {
		close(fd);
		return -ENOMEM;
	}
	memset(sum, 0, sizeof(*sum));
	if (bpf_map_lookup_elem(fd, &zero, per_cpu) < 0) {
		err = -errno;
		goto out;
	}
	/* Every field is a __u64: sum them as an array. */
	for (int c = 0; c < ncpu; c++) {
		const __u64 *src = (const __u64 *)&per_cpu[c];
		__u64 *dst = (__u64 *)sum;

		for (size_t i = 0; i < sizeof(*sum) / sizeof(__u64); i++)
			dst[i] += src[i];
	}
out:
	free(per_cpu);
	close(fd);
	return err;
}

int pins_read_svc_stats(int stats_fd, uint32_t svc_id, struct shoal_svc_stats *sum)
{
	int ncpu = libbpf_num_possible_cpus(), err = 0;
	struct shoal_svc_stats *per_cpu;

	if (ncpu < 0)
		return ncpu;
	per_cpu = calloc(ncpu, sizeof(*per_cpu));
	if (!per_cpu)
		return -ENOMEM;
	memset(sum, 0, sizeof(*sum));
	if (bpf_map_lookup_elem(stats_fd, &svc_id, per_cpu) < 0) {
		err = -errno;
	} else {
		for (int c = 0; c < ncpu; c++) {
			sum->intercepted += per_cpu[c].intercepted;
			sum->failed_open += per_cpu[c].failed_open;
		}
	}
	free(per_cpu);
	return err;
}

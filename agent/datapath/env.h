/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Where the kernel's filesystems are on this node: cgroup2 and bpffs. */
#ifndef SHOAL_DATAPATH_ENV_H
#define SHOAL_DATAPATH_ENV_H

#include <stddef.h>
#include <stdint.h>

/* Find the cgroup2 mount point from /proc/self/mountinfo. Returns 0, or
 * -ENOENT when cgroup2 is not mounted. */
int env_cgroup2_mount(char *out, size_t len);

/*
 * Resolve the configured cgroup (absolute under the mount, or relative to
 * it) to a path, and its cgroup id. Returns 0 or -errno after logging.
 */
int env_resolve_cgroup(const char *configured, char *path, size_t len, uint64_t *cgroup_id);

/* The cgroup id of a cgroup2 directory (its kernfs inode). -errno on error. */
int env_cgroup_id(const char *path, uint64_t *id);

/* Check that path (or its nearest existing ancestor) is on bpffs.
 * Returns 0, -ENOENT (no bpffs there) or -errno. */
int env_check_bpffs(const char *path);

/* mkdir -p, mode 0700. */
int env_mkdir_p(const char *path);

/* CLOCK_BOOTTIME in ns: the clock bpf_ktime_get_boot_ns() reads. */
uint64_t env_boot_ns(void);

#endif

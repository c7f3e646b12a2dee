// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "datapath/env.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

int env_cgroup2_mount(char *out, size_t len)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int err = -ENOENT;

	if (!f)
		return -errno;
	/* Fields: id parent maj:min root mountpoint opts [optional...] - fstype src superopts */
	while (fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");
		char mnt[PATH_MAX];

		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		if ((size_t)snprintf(out, len, "%s", mnt) >= len) {
			err = -ENAMETOOLONG;
			break;
		}
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

int env_cgroup_id(const char *path, uint64_t *id)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	/* On cgroup2 (kernfs) the inode number is the cgroup id that
	 * bpf_get_current_cgroup_id() and bpf_link_info report. */
	*id = st.st_ino;
	return 0;
}

int env_resolve_cgroup(const char *configured, char *path, size_t len, uint64_t *cgroup_id)
{
	char mnt[PATH_MAX];
	size_t mlen;
	int err;

	err = env_cgroup2_mount(mnt, sizeof(mnt));
	if (err) {
		pr_warn("cgroup2 is not mounted in this mount namespace (needed to attach "
			"connect4/6, getpeername4/6 and sockops): mount -t cgroup2 none "
			"/sys/fs/cgroup. Note that 'ip netns exec' remounts /sys and hides it; "
			"enter a network namespace with 'nsenter --net=...' instead");
		return err;
	}
	mlen = strlen(mnt);
	if (strncmp(configured, mnt, mlen) == 0 &&
	    (configured[mlen] == '/' || configured[mlen] == '\0'))
		err = snprintf(path, len, "%s", configured) >= (int)len ? -ENAMETOOLONG : 0;
	else
		err = snprintf(path, len, "%s/%s", mnt, configured[0] == '/' ? configured + 1 : configured) >=
				      (int)len ? -ENAMETOOLONG : 0;
	if (err) {
		pr_warn("cgroup path %s: too long", configured);
		return err;
	}
	err = env_cgroup_id(path, cgroup_id);
	if (err)
		pr_warn("cgroup %s (bpf.cgroup '%s' under the cgroup2 mount %s): %s", path, configured,
			mnt, strerror(-err));
	return err;
}

int env_check_bpffs(const char *path)
{
	char p[PATH_MAX];
	struct statfs sfs;

	if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (;;) {
		char *slash;

		if (statfs(p, &sfs) == 0)
			return sfs.f_type == BPF_FS_MAGIC ? 0 : -ENOENT;
		if (errno != ENOENT)
			return -errno;
		slash = strrchr(p, '/');
		if (!slash || slash == p)
			return -ENOENT;
		*slash = '\0';
	}
}

int env_mkdir_p(const char *path)
{
	char p[PATH_MAX];

	if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

uint64_t env_boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "enroll/cgroup_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * A pod UID as the kubelet writes it: 36 characters of a random UUID, or
 * 32 hex digits for a static pod (the hash of its manifest).
 */
static bool uid_ok(const char *s, size_t n)
{
	if (n != 32 && n != 36)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);

	return n >= m && !strcmp(s + n - m, tail);
}

bool enroll_cgroup_pod_uid(const char *dirname, char *uid, size_t len)
{
	const char *p;
	size_t n;

	if (!strncmp(dirname, "kubepods-", 9) && ends_with(dirname, ".slice")) {
		/* systemd: kubepods[-<qos>]-pod<uid_>.slice; the last "-pod" starts it. */
		p = strstr(dirname, "-pod");
		if (!p)
			return false;
		while (strstr(p + 1, "-pod"))
			p = strstr(p + 1, "-pod");
		p += 4;
		n = strlen(p) - strlen(".slice");
	} else if (!strncmp(dirname, "pod", 3)) {
		p = dirname + 3; /* cgroupfs: pod<uid> */
		n = strlen(p);
	} else {
		return false;
	}
	if (!uid_ok(p, n) || n + 1 > len)
		return false;
	for (size_t i = 0; i < n; i++)
		uid[i] = p[i] == '_' ? '-' : p[i];
	uid[n] = '\0';
	return true;
}

bool enroll_cgroup_is_container(const char *dirname)
{
	/* CRI-O's monitor (conmon) sits beside the container, in the node's netns. */
	if (!strncmp(dirname, "crio-conmon-", 12))
		return false;
	if (ends_with(dirname, ".scope"))
		return !strncmp(dirname, "cri-containerd-", 15) || !strncmp(dirname, "crio-", 5) ||
		       !strncmp(dirname, "docker-", 7);
	/* cgroupfs: the bare container id, 64 hex digits. */
	if (strlen(dirname) != 64)
		return false;
	for (const char *c = dirname; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	return true;
}

/* Up to ENROLL_CGROUP_PIDS_PER_CONTAINER pids of dir/cgroup.procs to cb. */
static int scan_container(const char *dir, const char *uid, enroll_scan_cb cb, void *ctx)
{
	char path[PATH_MAX];
	int n = 0, ret = 0;
	FILE *f;
	long pid;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return 0;
	f = fopen(path, "re");
	if (!f)
		return 0; /* the container is gone: nothing to take */
	while (!ret && n < ENROLL_CGROUP_PIDS_PER_CONTAINER && fscanf(f, "%ld", &pid) == 1) {
		/* 0: a process outside our pid namespace (a DaemonSet without hostPID). */
		if (pid <= 0)
			continue;
		n++;
		ret = cb(ctx, uid, (pid_t)pid);
	}
	fclose(f);
	return ret;
}

static void scan_pod(const char *dir, const char *uid, enroll_scan_cb cb, void *ctx)
{
	char path[PATH_MAX];
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || !enroll_cgroup_is_container(e->d_name))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		if (scan_container(path, uid, cb, ctx))
			break;
	}
	closedir(d);
}

static int walk(const char *dir, int depth, enroll_scan_cb cb, void *ctx)
{
	char path[PATH_MAX], uid[40];
	DIR *d = opendir(dir);
	struct dirent *e;
	int found = 0;

	if (!d)
		return depth ? 0 : -errno;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		if (enroll_cgroup_pod_uid(e->d_name, uid, sizeof(uid))) {
			found++;
			scan_pod(path, uid, cb, ctx);
		} else if (depth + 1 < ENROLL_CGROUP_MAX_DEPTH) {
			found += walk(path, depth + 1, cb, ctx);
		}
	}
	closedir(d);
	return found;
}

int enroll_cgroup_scan(const char *root, enroll_scan_cb cb, void *ctx)
{
	return walk(root, 0, cb, ctx);
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "enroll/netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static int cookie_here(uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), err = 0;

	if (sock < 0)
		return -errno;
	if (getsockopt(sock, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len) < 0)
		err = -errno;
	close(sock);
	return err;
}

int enroll_netns_self_cookie(uint64_t *cookie)
{
	return cookie_here(cookie);
}

static void addrs_here(struct enroll_netns_info *info)
{
	struct ifaddrs *ifa, *i;

	info->n_addrs = 0;
	if (getifaddrs(&ifa) < 0)
		return;
	for (i = ifa; i && info->n_addrs < ENROLL_NETNS_MAX_ADDRS; i = i->ifa_next) {
		struct shoal_addr a;

		if (!i->ifa_addr ||
		    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
			continue;
		if (addr_from_sockaddr(i->ifa_addr, &a, NULL) == 0)
			info->addrs[info->n_addrs++] = a;
	}
	freeifaddrs(ifa);
}

int enroll_netns_probe(const char *path, bool addrs, struct enroll_netns_info *info)
{
	int self, target, err;

	memset(info, 0, sizeof(*info));
	target = open(path, O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return -errno;
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		err = -errno;
		close(target);
		return err;
	}
	if (setns(target, CLONE_NEWNET) < 0) {
		err = -errno;
		goto out;
	}
	err = cookie_here(&info->cookie);
	if (!err && addrs)
		addrs_here(info);
	if (setns(self, CLONE_NEWNET) < 0) {
		pr_warn("enroll: cannot return to the agent's network namespace: %s",
			strerror(errno));
		abort(); /* going on in a pod's netns would misconfigure everything */
	}
out:
	close(self);
	close(target);
	return err;
}

int enroll_cookie_set_add(struct enroll_cookie_set *s, uint64_t cookie)
{
	if (enroll_cookie_set_has(s, cookie))
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = cookie;
	return 0;
}

bool enroll_cookie_set_has(const struct enroll_cookie_set *s, uint64_t cookie)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == cookie)
			return true;
	return false;
}

void enroll_cookie_set_clear(struct enroll_cookie_set *s)
{
	s->n = 0;
}

void enroll_cookie_set_free(struct enroll_cookie_set *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* The inodes seen in one scan: a netns is probed once, however many
 * processes share it (inode numbers are unique among live namespaces). */
struct ino_set {
	ino_t *v;
	size_t n, cap;
};

static bool ino_seen(struct ino_set *s, ino_t ino)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == ino)
			return true;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		ino_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return false; /* probe it again rather than miss it */
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ino;
	return false;
}

static void add_live(const char *path, struct ino_set *seen, struct enroll_cookie_set *out)
{
	struct enroll_netns_info info;
	struct stat st;

	if (stat(path, &st) < 0 || ino_seen(seen, st.st_ino))
		return;
	if (enroll_netns_probe(path, false, &info) == 0)
		enroll_cookie_set_add(out, info.cookie);
}

int enroll_netns_live(struct enroll_cookie_set *out)
{
	static const char *const dirs[] = ENROLL_NETNS_DIRS;
	struct ino_set seen = {0};
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d;

	enroll_cookie_set_clear(out);
	d = opendir("/proc");
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/ns/net", e->d_name);
		add_live(path, &seen, out);
	}
	closedir(d);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		d = opendir(dirs[i]);
		if (!d)
			continue;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			if (snprintf(path, sizeof(path), "%s/%s", dirs[i], e->d_name) <
			    (int)sizeof(path))
				add_live(path, &seen, out);
		}
		closedir(d);
	}
	free(seen.v);
	return 0;
}

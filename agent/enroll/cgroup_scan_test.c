// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod UIDs from kubelet cgroup names, both drivers and the runtimes'
 * scope names, and the scan over a directory tree laid out as the
 * kubelet lays out cgroup2 (plain directories: the scan only reads
 * names and cgroup.procs).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enroll/cgroup_scan.h"

#define UID "3f5c2b9e-8f0a-4d2e-9c1b-6a7d8e9f0a1b"
#define UID_ "3f5c2b9e_8f0a_4d2e_9c1b_6a7d8e9f0a1b"
#define CID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

Test(enroll_cgroup, pod_uids)
{
	char uid[40];

	cr_assert(enroll_cgroup_pod_uid("kubepods-besteffort-pod" UID_ ".slice", uid, sizeof(uid)));
	cr_assert_str_eq(uid, UID);
	cr_assert(enroll_cgroup_pod_uid("kubepods-burstable-pod" UID_ ".slice", uid, sizeof(uid)));
	cr_assert_str_eq(uid, UID);
	cr_assert(enroll_cgroup_pod_uid("kubepods-pod" UID_ ".slice", uid, sizeof(uid)));
	cr_assert_str_eq(uid, UID);
	cr_assert(enroll_cgroup_pod_uid("pod" UID, uid, sizeof(uid)));
	cr_assert_str_eq(uid, UID);
	/* a static pod's UID is a 32-digit hash */
	cr_assert(enroll_cgroup_pod_uid("pod6a7f0c3b9d2e4f5a8b1c0d9e8f7a6b5c", uid, sizeof(uid)));
	cr_assert_str_eq(uid, "6a7f0c3b9d2e4f5a8b1c0d9e8f7a6b5c");

	cr_assert_not(enroll_cgroup_pod_uid("kubepods.slice", uid, sizeof(uid)));
	cr_assert_not(enroll_cgroup_pod_uid("kubepods-besteffort.slice", uid, sizeof(uid)));
	cr_assert_not(enroll_cgroup_pod_uid("besteffort", uid, sizeof(uid)));
	cr_assert_not(enroll_cgroup_pod_uid("podman-1234.scope", uid, sizeof(uid)));
	cr_assert_not(
	    enroll_cgroup_pod_uid("kubepods-besteffort-pod" UID_ ".scope", uid, sizeof(uid)));
	cr_assert_not(enroll_cgroup_pod_uid("pod" UID "x", uid, sizeof(uid)));
	cr_assert_not(enroll_cgroup_pod_uid("pod" UID, uid, 20), "no room: refused");
}

Test(enroll_cgroup, container_scopes)
{
	cr_assert(enroll_cgroup_is_container("cri-containerd-" CID ".scope"));
	cr_assert(enroll_cgroup_is_container("crio-" CID ".scope"));
	cr_assert(enroll_cgroup_is_container("docker-" CID ".scope"));
	cr_assert(enroll_cgroup_is_container(CID));
	cr_assert_not(enroll_cgroup_is_container("crio-conmon-" CID ".scope"),
		      "conmon runs in the node's netns");
	cr_assert_not(enroll_cgroup_is_container("init.scope"));
	cr_assert_not(enroll_cgroup_is_container("cgroup.procs"));
}

static char root[64];

struct seen {
	char uids[8][40];
	pid_t pids[8];
	int n;
};

static int record(void *ctx, const char *uid, pid_t pid)
{
	struct seen *s = ctx;

	if (s->n < 8) {
		snprintf(s->uids[s->n], sizeof(s->uids[0]), "%s", uid);
		s->pids[s->n++] = pid;
	}
	return 0;
}

static void mk(const char *rel, const char *procs)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/%s'", root, rel);
	cr_assert_eq(system(cmd), 0);
	if (procs) {
		char path[512];
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s/cgroup.procs", root, rel);
		f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs(procs, f);
		fclose(f);
	}
}

static bool has(const struct seen *s, const char *uid, pid_t pid)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->uids[i], uid) && s->pids[i] == pid)
			return true;
	return false;
}

Test(enroll_cgroup, scan_both_drivers)
{
	struct seen s = {0};
	char cmd[128];

	snprintf(root, sizeof(root), "/tmp/shoal-cgscan-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	/* systemd driver, containerd */
	mk("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
	   ".slice/cri-containerd-" CID ".scope",
	   "101\n102\n");
	/* systemd driver, CRI-O, with its monitor beside it */
	mk("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
	   "11111111_2222_3333_4444_555555555555.slice/crio-" CID ".scope",
	   "201\n");
	mk("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
	   "11111111_2222_3333_4444_555555555555.slice/crio-conmon-" CID ".scope",
	   "299\n");
	/* cgroupfs driver, Guaranteed (no QoS level) and a QoS level */
	mk("kubepods/pod66666666-7777-8888-9999-000000000000/" CID, "301\n");
	mk("kubepods/besteffort/podaaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/" CID, "0\n401\n");
	/* not pods */
	mk("system.slice/containerd.service", "1\n");
	cr_assert_eq(enroll_cgroup_scan(root, record, &s), 4);
	cr_assert_eq(s.n, 5, "101 102 201 301 401: got %d", s.n);
	cr_assert(has(&s, UID, 101));
	cr_assert(has(&s, UID, 102));
	cr_assert(has(&s, "11111111-2222-3333-4444-555555555555", 201));
	cr_assert(has(&s, "66666666-7777-8888-9999-000000000000", 301));
	cr_assert(has(&s, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 401), "pid 0 skipped");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Finding pods' processes from the node: the kubelet names each pod's
 * cgroup after the pod's UID, under either cgroup driver
 * (docs/enrollment.md, "From a pod to its network namespace"):
 *
 *   systemd:  kubepods.slice/kubepods-<qos>.slice/
 *               kubepods-<qos>-pod<uid, - as _>.slice/<runtime>-<id>.scope
 *             (Guaranteed pods: kubepods.slice/kubepods-pod<uid>.slice)
 *   cgroupfs: kubepods/<qos>/pod<uid>/<id>   (Guaranteed: kubepods/pod<uid>)
 *
 * with containerd's cri-containerd-<id>.scope, CRI-O's crio-<id>.scope
 * (its crio-conmon-<id>.scope holds the monitor, which runs in the
 * node's netns, and is skipped) and docker-<id>.scope.
 */
#ifndef SHOAL_ENROLL_CGROUP_SCAN_H
#define SHOAL_ENROLL_CGROUP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * How deep under the scan root a pod cgroup may sit: 3 levels for the
 * kubelet's own layout, more when the node's cgroups are nested (kind's
 * kubelet.slice/kubelet-kubepods.slice, a test's own root).
 */
#define ENROLL_CGROUP_MAX_DEPTH 8
/* Processes tried per container cgroup: the first that is still there. */
#define ENROLL_CGROUP_PIDS_PER_CONTAINER 4

/*
 * If dirname is a pod's cgroup, true with its UID (the API's form, with
 * dashes) in uid. len must hold 37 bytes.
 */
bool enroll_cgroup_pod_uid(const char *dirname, char *uid, size_t len);

/* Whether a pod cgroup's child dirname holds a container's processes
 * (in the pod's netns), as opposed to a runtime's monitor. */
bool enroll_cgroup_is_container(const char *dirname);

/* Called for processes of a pod's containers; a non-zero return stops
 * the pod's scan (the rest of the tree goes on). */
typedef int (*enroll_scan_cb)(void *ctx, const char *uid, pid_t pid);

/*
 * Walk the cgroup2 tree at root (a directory on the cgroup2 mount) for
 * pod cgroups, calling cb for up to ENROLL_CGROUP_PIDS_PER_CONTAINER
 * processes of each container cgroup. Returns the number of pod cgroups
 * found, or -errno when root cannot be read.
 */
int enroll_cgroup_scan(const char *root, enroll_scan_cb cb, void *ctx);

#endif

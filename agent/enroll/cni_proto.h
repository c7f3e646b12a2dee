/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What shoal-cni (the chained CNI plugin, agent/cni/) and shoald say to
 * each other over the enrollment socket: one request per connection, a
 * JSON object on one line, answered by one JSON object on one line
 * (docs/enrollment.md, "The CNI plugin").
 *
 *   request:  {"command": "ADD"|"DEL"|"CHECK", "container_id": "...",
 *              "netns": "/var/run/netns/cni-...", "pod_namespace": "...",
 *              "pod_name": "...", "pod_uid": "..."}   (pod_uid may be "")
 *   answer:   {"result": "enrolled"|"unmeshed"|"unenrolled"|
 *              "unknown-pod"|"error", "cookie": N, "message": "..."}
 *
 * Whatever the answer, the plugin lets the pod start: the mesh fails
 * open, and the agent's own re-scan enrolls a pod it missed.
 */
#ifndef SHOAL_ENROLL_CNI_PROTO_H
#define SHOAL_ENROLL_CNI_PROTO_H

/* Where shoald listens and the plugin connects, unless configured. */
#define ENROLL_CNI_DEFAULT_SOCKET "/var/run/shoal/cni.sock"
/* A request or answer line: a few paths and names. */
#define ENROLL_CNI_MAX_MESSAGE 8192
/*
 * How long shoald waits for a pod it has not seen on its watch yet: the
 * kubelet creates the sandbox right after the API server told it about
 * the pod, and the agent's watch hears of it at the same time, so this
 * only covers a slow watch. Shorter than the plugin's timeout below.
 */
#define ENROLL_CNI_POD_WAIT_MS 3000
/*
 * The plugin's whole exchange with shoald (connect, send, answer). The
 * runtime waits for the plugin, and a pod must never hang on the mesh:
 * past this the pod starts unenrolled (fail open).
 */
#define ENROLL_CNI_TIMEOUT_MS 5000

#endif

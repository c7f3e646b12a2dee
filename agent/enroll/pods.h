/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What enrollment knows from the API server: the Pods on this node and
 * the Namespaces that carry the mesh label, decoded from their JSON, and
 * the rule that says which pods are meshed (docs/enrollment.md):
 *
 *   hostNetwork pod                      -> never
 *   pod label shoal.io/mesh=enabled      -> meshed
 *   pod label shoal.io/mesh=disabled     -> not meshed
 *   otherwise the namespace's label      -> meshed iff it is "enabled"
 *
 * No I/O and no locking here: the controller (enroll.c) holds its lock
 * around every call.
 */
#ifndef SHOAL_ENROLL_PODS_H
#define SHOAL_ENROLL_PODS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/abi.h"

/* The label, on a Namespace or a Pod, that opts in (or out). */
#define ENROLL_LABEL "shoal.io/mesh"
/*
 * Pods on one node: the kubelet's default max-pods is 110 and 250 is
 * the largest the project tests; room for as many terminating ones.
 */
#define ENROLL_MAX_PODS 512
/* Namespaces with the label (the watch selects only those). */
#define ENROLL_MAX_NAMESPACES 4096
/* status.podIPs: one per family; more is malformed, but keep a few. */
#define ENROLL_MAX_POD_IPS 4
/* Kubernetes' own limits: a DNS label (63), a DNS subdomain (253), a UID. */
#define ENROLL_MAX_NS 64
#define ENROLL_MAX_NAME 254
#define ENROLL_MAX_UID 64

enum enroll_label {
	ENROLL_LABEL_ABSENT = 0, /* no label, or a value other than the two */
	ENROLL_LABEL_ENABLED,
	ENROLL_LABEL_DISABLED,
};

/* Where a pod is on its way into the mesh; shoalctl pods prints it. */
enum enroll_state {
	ENROLL_STATE_UNMESHED = 0, /* the rule says no */
	ENROLL_STATE_HOST_NETWORK, /* never meshed */
	ENROLL_STATE_PENDING,	   /* meshed by the rule, no verified netns yet */
	ENROLL_STATE_ENROLLED,	   /* its netns cookie is in shoal_enrolled */
};

const char *enroll_state_name(enum enroll_state s);

struct enroll_pod {
	char uid[ENROLL_MAX_UID];
	char ns[ENROLL_MAX_NS];
	char name[ENROLL_MAX_NAME];
	char service_account[ENROLL_MAX_NAME]; /* spec.serviceAccountName, "default" if unset */
	char phase[16];			       /* status.phase, "" if unset */
	enum enroll_label label;
	bool host_network;
	int n_ips;
	struct shoal_addr ips[ENROLL_MAX_POD_IPS];

	/* The controller's (enroll.c), kept across updates of the object. */
	enum enroll_state state;
	uint64_t cookie;     /* the enrolled netns cookie; 0: none */
	uint64_t cni_cookie; /* the netns the CNI plugin reported; 0: none */
	char cni_netns[256]; /* its path (CNI_NETNS) */
	bool mark;	     /* list in progress: seen in it */
};

struct enroll_ns {
	char name[ENROLL_MAX_NS];
	enum enroll_label label;
	bool mark;
};

struct enroll_table {
	struct enroll_pod *pods; /* ENROLL_MAX_PODS of them; n_pods used */
	int n_pods;
	struct enroll_ns *nss;
	int n_nss;
};

/* 0 or -ENOMEM. */
int enroll_table_init(struct enroll_table *t);
void enroll_table_fini(struct enroll_table *t);

/*
 * Decode a v1 Pod into *out (the controller's fields zeroed). Returns 0,
 * or -EINVAL with the reason in err (no metadata.uid/name/namespace, a
 * field of the wrong type, an address that does not parse).
 */
int enroll_decode_pod(json_object *obj, struct enroll_pod *out, char *err, size_t errlen);

/* Same for a v1 Namespace. */
int enroll_decode_ns(json_object *obj, struct enroll_ns *out, char *err, size_t errlen);

/*
 * Insert or update a pod by uid, keeping the controller's fields of an
 * existing entry, and mark it. Returns the entry, or NULL when the table
 * is full (ENROLL_MAX_PODS).
 */
struct enroll_pod *enroll_put_pod(struct enroll_table *t, const struct enroll_pod *p);
/* Remove by uid; false when it was not there. *gone gets a copy if non-NULL. */
bool enroll_del_pod(struct enroll_table *t, const char *uid, struct enroll_pod *gone);
struct enroll_pod *enroll_find_pod(struct enroll_table *t, const char *uid);
/* By namespace/name (the CNI plugin knows those, and maybe the uid). */
struct enroll_pod *enroll_find_pod_name(struct enroll_table *t, const char *ns, const char *name);

/* Namespaces: same contract. put returns -ENOSPC when full, else 0. */
int enroll_put_ns(struct enroll_table *t, const struct enroll_ns *n);
bool enroll_del_ns(struct enroll_table *t, const char *name);
enum enroll_label enroll_ns_label(const struct enroll_table *t, const char *name);

/* A list starts: clear the marks of pods (pods true) or namespaces. */
void enroll_mark(struct enroll_table *t, bool pods);
/* A list ended: drop the unmarked ones; returns how many (pods: their
 * copies in gone[], at most max_gone, for the controller to unenroll). */
int enroll_sweep(struct enroll_table *t, bool pods, struct enroll_pod *gone, int max_gone);

/* The rule above: whether p is meshed, given the namespaces known. */
bool enroll_wanted(const struct enroll_table *t, const struct enroll_pod *p);

/* Whether addr is one of p's status.podIPs. */
bool enroll_pod_has_ip(const struct enroll_pod *p, const struct shoal_addr *addr);

#endif

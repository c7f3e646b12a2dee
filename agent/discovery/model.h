/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The discovery model: services and the endpoint slices that back them,
 * as the Kubernetes API describes them, keyed by namespace/name. A source
 * (the Kubernetes watcher) keeps one model up to date event by event;
 * model_build() turns it into the `struct config` shape the proxy and
 * the loader consume (docs/discovery.md).
 *
 * A model is not thread-safe: its owner serialises access.
 */
#ifndef SHOAL_DISCOVERY_MODEL_H
#define SHOAL_DISCOVERY_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "shoal/abi.h"

/* Namespaces and service names are RFC 1123 labels (Kubernetes' rule). */
#define MODEL_MAX_LABEL 63
/* EndpointSlice and node names are RFC 1123 subdomains. */
#define MODEL_MAX_SUBDOMAIN 253
/* Port names are IANA service names: at most 15 characters. */
#define MODEL_MAX_PORT_NAME 15
/* "namespace/name" of a slice: both parts plus the slash. */
#define MODEL_MAX_KEY (MODEL_MAX_LABEL + 1 + MODEL_MAX_SUBDOMAIN)
/* Ports per service or slice; the config's own limit, which the BPF map
 * keys are budgeted on. Extra ports are dropped with a warning. */
#define MODEL_MAX_PORTS CONFIG_MAX_PORTS
/* VIPs per service: clusterIPs hold at most one per family. */
#define MODEL_MAX_VIPS CONFIG_MAX_VIPS
/*
 * Endpoints per slice. The EndpointSlice API caps a slice at 1000; a
 * little room guards against a server that raises it, and the bound keeps
 * one hostile object from costing unbounded memory.
 */
#define MODEL_MAX_SLICE_ENDPOINTS 2000
/*
 * Endpoints the proxy gets per service. A Kubernetes service may have
 * many more than the file's CONFIG_MAX_ENDPOINTS; this bounds the memory
 * of one service in a published config (16 k x 48 bytes).
 */
#define MODEL_MAX_SERVICE_ENDPOINTS 16384
/*
 * Pods whose service account the model keeps, to give endpoints an
 * identity (docs/discovery.md, "Identities"): Kubernetes' tested limit
 * of a cluster, 150,000 pods. An entry is one allocation of its key, uid
 * and identity, plus its share of the hash table: about 165 bytes a pod
 * for usual names (measured: 0.8 MB for 5,000 pods, 24 MB for 150,000).
 * Beyond it a pod is not kept (counted: its endpoints have no identity).
 */
#define MODEL_MAX_PODS 150000
/* A pod's metadata.uid: a UUID (36 characters); room for others. */
#define MODEL_MAX_UID 63

enum model_l4 {
	MODEL_L4_TCP = 0,
	MODEL_L4_UDP,  /* not intercepted (the datapath is TCP only) */
	MODEL_L4_SCTP, /* not intercepted */
};

struct model_port {
	char name[MODEL_MAX_PORT_NAME + 1]; /* "" when unnamed */
	uint16_t port;			    /* service port */
	uint16_t target_port;		    /* 0: by name, see target_name */
	char target_name[MODEL_MAX_PORT_NAME + 1];
	enum model_l4 l4;
	enum config_protocol app; /* k8s_app_protocol: appProtocol, else the name; DETECT: neither */
	/* Named by the service's shoal.io/kernel-ports annotation: kernel
	 * mode if the port turns out opaque TCP (model_build), else proxied. */
	bool kernel;
	/* shoal.io/upstream-protocol says its endpoints speak HTTP/1.1 only:
	 * translated if the port carries HTTP/2 (h2c or detected; model_build). */
	bool http1_upstream;
};

/* A problem with a service's annotations, for the log; the rest applies. */
#define MODEL_MAX_NOTE 160

struct model_service {
	char ns[MODEL_MAX_LABEL + 1];
	char name[MODEL_MAX_LABEL + 1];
	bool headless; /* clusterIP None, or no clusterIP at all: not intercepted */
	struct shoal_addr vips[MODEL_MAX_VIPS];
	int n_vips;
	struct model_port ports[MODEL_MAX_PORTS];
	int n_ports;
	char note[MODEL_MAX_NOTE]; /* "" when its annotations were all understood */
	uint8_t mtls_mode;	   /* shoal.io/mtls-mode: 0 none, else 1 + enum config_mtls_mode */
	uint32_t slot; /* stable index, assigned by the model; see model_build */
	bool stale;    /* model_mark'ed and not put since */
};

struct model_slice_port {
	char name[MODEL_MAX_PORT_NAME + 1];
	uint16_t port; /* 0: the slice does not say (ports: null or no port) */
	enum model_l4 l4;
};

struct model_endpoint {
	struct shoal_addr addr;
	bool ready;	  /* missing condition means true (API rule) */
	bool serving;	  /* missing condition means true */
	bool terminating; /* missing condition means false */
	char *zone;	  /* heap, or NULL */
	char *node;	  /* heap, or NULL */
	/* targetRef, when it is a Pod: "namespace/name", heap, or NULL; and
	 * its uid, heap, or NULL when the reference gives none. */
	char *pod;
	char *pod_uid;
};

struct model_slice {
	char ns[MODEL_MAX_LABEL + 1];
	char name[MODEL_MAX_SUBDOMAIN + 1];
	char service[MODEL_MAX_LABEL + 1]; /* kubernetes.io/service-name; "" none */
	bool ipv6;			   /* addressType IPv6 (else IPv4; FQDN is refused) */
	struct model_slice_port ports[MODEL_MAX_PORTS];
	int n_ports;
	struct model_endpoint *eps; /* heap, n_eps entries */
	int n_eps;
	bool stale; /* model_mark'ed and not put since */
};

/* Release what s owns (endpoints and their strings); s itself stays. */
void model_slice_clear(struct model_slice *s);
/* Release what one endpoint owns (its strings). */
void model_endpoint_clear(struct model_endpoint *ep);

/*
 * What the model keeps of a Pod: enough to name its endpoints' identity,
 * and its node's address (the encrypted hop dials it, docs/mtls.md).
 */
struct model_pod {
	char ns[MODEL_MAX_LABEL + 1];
	char name[MODEL_MAX_SUBDOMAIN + 1];
	char uid[MODEL_MAX_UID + 1];		       /* "" when the object has none */
	char service_account[MODEL_MAX_SUBDOMAIN + 1]; /* spec.serviceAccountName, or "default" */
	bool finished; /* phase Succeeded or Failed: backs no endpoint, not kept */
	bool running;  /* phase Running: the kubelet has reported its host address */
	/* spec.nodeName, "" when not scheduled (or not a DNS subdomain: see note). */
	char node[MODEL_MAX_SUBDOMAIN + 1];
	/* Its node's addresses: [0] status.hostIP (the primary), [1] the
	 * other family from status.hostIPs when there is one. n_host 0: none
	 * known (not yet reported, or refused: see note). */
	struct shoal_addr host[2];
	int n_host;
	/* Why the node or its address was not taken, for the log; "" none. */
	char note[MODEL_MAX_NOTE];
};

struct model;

/* Counters of what model_build had to leave out, for telemetry. */
struct model_build_stats {
	uint32_t services;	       /* services published */
	uint32_t endpoints;	       /* endpoints published */
	uint32_t skipped_headless;     /* services not intercepted: headless */
	uint32_t skipped_conflict;     /* (VIP, port) taken, or no room left in a BPF map */
	uint32_t endpoints_unresolved; /* a named target port the slice lacks */
	/* Published endpoints of a Pod (targetRef) whose pod is not known, or
	 * is another one (uid): no identity (model_put_pod). */
	uint32_t endpoints_no_identity;
};

/* A new empty model, or NULL when memory is short. */
struct model *model_new(void);
void model_free(struct model *m);

/*
 * A relist in two steps: model_mark flags every object of kind (0:
 * services, 1: slices, 2: pods, 3: namespaces) stale; a put clears the flag of what it touches;
 * model_sweep removes what is still stale. Until the sweep the model
 * stays whole, and services that survive a relist keep their slot.
 * model_sweep returns the number of objects removed.
 */
void model_mark(struct model *m, int kind);
size_t model_sweep(struct model *m, int kind);

/*
 * Insert or replace service svc (copied). Returns 0, -ENOSPC when every
 * slot (SHOAL_MAX_SERVICES) is taken, or -ENOMEM.
 */
int model_put_service(struct model *m, const struct model_service *svc);
/* Remove service ns/name; 0 or -ENOENT. */
int model_del_service(struct model *m, const char *ns, const char *name);

/*
 * Insert or replace slice s. Takes ownership of s->eps and its strings
 * (s is left empty) whatever the result. Returns 0 or -ENOMEM.
 */
int model_put_slice(struct model *m, struct model_slice *s);
/* Remove slice ns/name; 0 or -ENOENT. */
int model_del_slice(struct model *m, const char *ns, const char *name);

/*
 * Insert or replace what the model knows of pod p (a finished one is
 * removed). Returns 0 when that changed an endpoint's identity could
 * depend on, 1 when it did not (same uid and service account: a status
 * update), -ENOSPC when MODEL_MAX_PODS are kept already, or -ENOMEM.
 */
int model_put_pod(struct model *m, const struct model_pod *p);
/* Remove pod ns/name; 0 or -ENOENT. */
int model_del_pod(struct model *m, const char *ns, const char *name);
size_t model_n_pods(const struct model *m);

/*
 * Nodes: a pod with a node and a host address (model_pod.n_host) teaches
 * the model where that node is; the last such pod to go takes the node
 * with it. When a node's pods disagree (its address changed), the pod put
 * last wins. model_put_pod returns 0 (not 1) when the nodes as
 * model_build publishes them changed. model_build gives each config
 * the learned nodes (config.nodes_learned): one address each, the
 * primary (status.hostIP) unless base's node has no listener of that
 * family and the node has an address of one it does have (the DaemonSet
 * gives every node the same listeners).
 */
size_t model_n_nodes(const struct model *m);

/*
 * Namespaces whose shoal.io/mtls-mode annotation asks for a mode (1 +
 * enum config_mtls_mode; 0: none, the namespace is not kept). Bounded
 * by MODEL_MAX_NAMESPACES; only annotated ones take room.
 */
#define MODEL_MAX_NAMESPACES 10000
/* Returns 0 when the mode of ns changed, 1 when not, -ENOSPC or -ENOMEM. */
int model_put_ns_mode(struct model *m, const char *ns, uint8_t mode);
/* Forget ns; 0, or 1 when it was not kept. */
int model_del_ns(struct model *m, const char *ns);

/* Told about each endpoint model_slice_refuse removes, before it goes. */
typedef void (*model_refused_fn)(void *ctx, const struct model_slice *s,
				 const struct model_endpoint *ep, const char *why);

/*
 * Remove from s (before model_put_slice) every endpoint whose address no
 * endpoint can have (addr_endpoint_refusal: loopback, link-local,
 * unspecified, multicast, broadcast) or that is one of own[0..n_own), the
 * node's own addresses, why "the node's own". An EndpointSlice is written
 * by whoever may write one, and the proxy dials from the node's netns
 * with the node's reach: such an address would aim it at the node's own
 * services. refused (may be NULL) hears of each. Returns how many went.
 */
size_t model_slice_refuse(struct model_slice *s, const struct shoal_addr *own, int n_own,
			  model_refused_fn refused, void *ctx);

size_t model_n_services(const struct model *m);
size_t model_n_slices(const struct model *m);

/*
 * A new config: a copy of base (node, bpf, proxy and its own services,
 * shared with base and keeping their ids), followed by the model's
 * services. A model service (or vacant id) that says the same as in the
 * model's previous build is that build's object, shared (config.h); only
 * the ones that changed are new. The model holds a reference to each
 * service of its last build until the next one or model_free.
 * Model services get id base->n_services + slot, and services[id] is
 * that service: ids stay put while other services come and go, so the
 * BPF counters and map values of a service do not move. An id no
 * service holds is a vacant entry (no VIP, no port, empty name).
 * Endpoints: the ready ones; when none is ready, the serving and
 * terminating ones (kube-proxy's rule). An endpoint whose targetRef is
 * a pod the model keeps (same uid, when the reference names one) gets
 * the identity "<pod namespace>/<service account>". A service's
 * mtls_mode is the stricter of its own annotation and its namespace's. Returns 0 and *out (free
 * with config_free), or -ENOMEM. *st (may be NULL) says what was left out.
 */
int model_build(struct model *m, const struct config *base, struct config **out,
		struct model_build_stats *st);

#endif

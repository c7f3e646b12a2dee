/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Kubernetes wire format, decoded: watch-stream framing (one JSON
 * object per line, split anywhere by HTTP chunks), watch events, and the
 * two kinds shoal reads, v1 Service and discovery.k8s.io/v1
 * EndpointSlice. No I/O here: the watcher (k8s.c) feeds bytes in, tests
 * and the fuzzer feed fixtures in.
 */
#ifndef SHOAL_DISCOVERY_K8S_DECODE_H
#define SHOAL_DISCOVERY_K8S_DECODE_H

#include <json-c/json.h>
#include <stddef.h>

#include "discovery/model.h"

/*
 * Largest watch event accepted. The API server's own limit on an object
 * is about 1.5 MiB (etcd's request size); a full 1000-endpoint slice is
 * ~300 KiB. A bigger event means a broken or hostile peer, and the watch
 * is restarted rather than buffered without bound.
 */
#define K8S_MAX_EVENT_BYTES (4u << 20)
/*
 * Largest list page accepted. Lists are paged (K8S_LIST_PAGE_LIMIT
 * objects per page, k8s.c), so a page is at most that many events.
 */
#define K8S_MAX_LIST_BYTES (256u << 20)
/* resourceVersion is an opaque string; etcd's are decimal uint64s. */
#define K8S_MAX_RV 64
/*
 * The Service annotation that asks for kernel mode (docs/discovery.md,
 * "Kernel mode"): a comma-separated list of service port numbers or port
 * names, e.g. "5432, redis".
 */
#define K8S_KERNEL_PORTS_ANNOTATION "shoal.io/kernel-ports"
/* Longest annotation value read; the API allows 256 KiB in all. */
#define K8S_MAX_KERNEL_PORTS 512
/*
 * The Service annotation that says its endpoints speak HTTP/1.1 only
 * while clients speak HTTP/2 (docs/discovery.md, "Upstream protocol"):
 * "http1" for every port that can carry HTTP/2 (h2c, grpc, or
 * undeclared), or a comma-separated list of "<port number or
 * name>=http1|h2". Read with K8S_MAX_KERNEL_PORTS bytes at most.
 */
#define K8S_UPSTREAM_PROTOCOL_ANNOTATION "shoal.io/upstream-protocol"
/*
 * The Service (or Namespace) annotation that asks for a stricter mtls
 * mode for calls to it (to its services) (docs/mtls.md, "Modes"): "off",
 * "permissive" or "strict". It can raise the node's mode, never lower it.
 */
#define K8S_MTLS_MODE_ANNOTATION "shoal.io/mtls-mode"
/* The part of a Status message kept for the log. */
#define K8S_MAX_MESSAGE 256

enum k8s_kind {
	K8S_KIND_SERVICE,
	K8S_KIND_ENDPOINTSLICE,
	/* Any other kind (Pods, Namespaces): the event's type and
	 * resourceVersion only; the object is left for the caller. */
	K8S_KIND_RAW,
};

enum k8s_event_type {
	K8S_EV_ADDED,
	K8S_EV_MODIFIED,
	K8S_EV_DELETED,
	K8S_EV_BOOKMARK, /* only carries a resourceVersion */
	K8S_EV_ERROR,	 /* a Status: code, reason, message */
};

/* A Status object (an ERROR event, or the body of a 4xx/5xx reply). */
struct k8s_status {
	int code; /* HTTP-like: 410 Expired, 401, 403 ... */
	char reason[64];
	char message[K8S_MAX_MESSAGE];
};

/* One decoded watch event or list item. */
struct k8s_event {
	enum k8s_event_type type;
	enum k8s_kind kind;
	char rv[K8S_MAX_RV]; /* the object's resourceVersion; "" if none */
	union {
		struct model_service svc; /* kind SERVICE, not BOOKMARK/ERROR */
		struct model_slice slice; /* kind ENDPOINTSLICE; owns its eps */
		struct k8s_status status; /* type ERROR */
	};
};

/* Release what ev owns (a slice's endpoints). */
void k8s_event_clear(struct k8s_event *ev);

/*
 * The protocol of a service port from its appProtocol (app, "" when
 * absent) and, without one, its name (port_name, "" when unnamed), by the
 * table in docs/discovery.md ("Protocols"). Unknown or absent:
 * CONFIG_PROTO_DETECT (model_build turns that into opaque TCP on
 * proxy.opaque_ports).
 */
enum config_protocol k8s_app_protocol(const char *app, const char *port_name);

/*
 * Decode a Service object into *out. Unknown fields are ignored (the API
 * grows); a field of the wrong type or a bad address is an error.
 * Returns 0, or -EINVAL with the reason in err.
 */
int k8s_decode_service(json_object *obj, struct model_service *out, char *err, size_t errlen);

/* Same for an EndpointSlice; *out owns heap memory on success only. */
int k8s_decode_slice(json_object *obj, struct model_slice *out, char *err, size_t errlen);

/*
 * Decode the parts of a v1 Pod that name its endpoints' identity
 * (metadata.namespace, name, uid; spec.serviceAccountName, "default"
 * when absent; status.phase). 0, or -EINVAL with the reason in err (a
 * field of the wrong type, a service account that is not a DNS
 * subdomain).
 */
int k8s_decode_pod(json_object *obj, struct model_pod *out, char *err, size_t errlen);

/*
 * A v1 Namespace's name and its shoal.io/mtls-mode annotation (*mode: 0
 * none, else 1 + enum config_mtls_mode). Returns 0 (a bad annotation
 * value leaves *mode 0 and says why in note, for the log), or -EINVAL
 * with the reason in note when the object has no name.
 */
int k8s_decode_namespace_mode(json_object *obj, char *name, size_t namelen, uint8_t *mode,
			      char *note, size_t notelen);

/* Decode a Status object. 0 or -EINVAL. */
int k8s_decode_status(json_object *obj, struct k8s_status *out);

/*
 * Decode one watch event {"type":..., "object":...} of a watch on kind.
 * Returns 0 with *ev filled (clear it with k8s_event_clear), or -EINVAL
 * with the reason in err.
 */
int k8s_decode_event(json_object *obj, enum k8s_kind kind, struct k8s_event *ev, char *err,
		     size_t errlen);

/* The same from one line of text (fixtures, the fuzzer). */
int k8s_decode_event_text(const char *text, size_t len, enum k8s_kind kind, struct k8s_event *ev,
			  char *err, size_t errlen);

/*
 * The metadata.resourceVersion and, when present, metadata.continue of a
 * list reply; items is set to its "items" array (borrowed; may be NULL
 * for "items": null). Returns 0 or -EINVAL.
 */
int k8s_decode_list(json_object *obj, char *rv, size_t rvlen, char *cont, size_t contlen,
		    json_object **items);

/*
 * The framer: turns a byte stream into complete JSON values with json-c's
 * incremental tokener, whatever the chunk boundaries. A value may not
 * exceed max_bytes (whitespace between values included).
 */
struct k8s_stream {
	json_tokener *tok;
	size_t max_bytes;
	size_t in_value; /* bytes fed since the last complete value */
};

/* 0, or -ENOMEM. */
int k8s_stream_init(struct k8s_stream *s, size_t max_bytes);
void k8s_stream_fini(struct k8s_stream *s);
/* Forget a partial value (a new HTTP response starts). */
void k8s_stream_reset(struct k8s_stream *s);

/*
 * Called for each complete value; it owns the object (json_object_put).
 * Returns 0 to go on, or a negative errno that stops k8s_stream_feed and
 * is returned by it.
 */
typedef int (*k8s_stream_cb)(void *ctx, json_object *value);

/*
 * Feed len bytes. Returns 0 (the tail of a value may stay buffered),
 * -EMSGSIZE when a value outgrows max_bytes, -EBADMSG on malformed JSON,
 * or what cb returned. After an error, reset before feeding again.
 */
int k8s_stream_feed(struct k8s_stream *s, const char *buf, size_t len, k8s_stream_cb cb, void *ctx);

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the config parser's files share; private to agent/config/.
 *   config_walk.c      the YAML walker: events, scalars, field tables
 *   config_node.c      the schema of the top level, node, bpf, proxy,
 *                      tracing, admin and kubernetes
 *   config_services.c  the schema of services[]
 *   config_checks.c    checks that need the whole file
 *   config.c           defaults, config_parse/config_load, free, copy
 */
#ifndef SHOAL_CONFIG_INT_H
#define SHOAL_CONFIG_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config/config.h"
#include "policy/policy.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Limits of single fields. They live here rather than in config.h because
 * nothing outside the parser needs them; docs/config.md lists them all.
 */
#define CONFIG_MAX_WORKERS 256	     /* more threads than any node has cores */
#define CONFIG_MAX_TIMEOUT_MS 600000 /* 10 min: longer is a typo, not a policy */
#define CONFIG_MIN_FAILOPEN_MS 100   /* below a few heartbeats' jitter */
#define CONFIG_MIN_BUFFER_BYTES 1024 /* smaller only multiplies syscalls */
#define CONFIG_MAX_BUFFER_BYTES (1u << 20)
#define CONFIG_MAX_CONNECTIONS (1u << 20)	/* per worker; fds run out first */
#define CONFIG_MAX_BUFFER_MEMORY_MIB (1u << 20) /* 1 TiB: more is a typo */
#define CONFIG_MAX_REQUESTS_PER_CONN 100000000	/* 0 already means "no limit" */
#define CONFIG_MAX_DETECT_TIMEOUT_MS 10000	/* Linkerd's stall: longer is that trap */
#define CONFIG_MAX_IDLE_TIMEOUT_MS 86400000	/* a day; 0 already means "never" */
#define CONFIG_MIN_HTTP_LINE 64			/* shorter refuses ordinary requests */
#define CONFIG_MIN_HTTP_HEAD 1024		/* a browser's head is bigger than this */
#define CONFIG_MAX_HTTP_HEAD (1u << 20)		/* more is a memory lever, not a use case */
#define CONFIG_MAX_HTTP_HEADERS 1024		/* each costs parse and lookup work */
#define CONFIG_MAX_POOL_IDLE 4096		/* idle connections pin server slots */
#define CONFIG_MIN_RETRY_STATUS 400		/* retrying a success would replay it */
#define CONFIG_MAX_RETRY_STATUS 599

/*
 * Deepest nesting accepted. The schema itself needs 7 levels and refuses a
 * collection wherever it wants a scalar, so today this is a backstop: it
 * keeps the bound if a free-form field (labels, annotations) is ever added.
 */
#define CONFIG_MAX_DEPTH 8

/* Room for the longest dotted path:
 * "services[16383].routes[63].match.headers.<key quoted back, 51 bytes>". */
#define CONFIG_PATH_BUF 160
/* How much of a user's key or value is quoted back in a message. */
#define CONFIG_ECHO_MAX 48

/*
 * Longest value after ${NAME} substitution, with its NUL. Every field's own
 * limit is below it (a path is PATH_MAX - 1), so a value that outgrows it
 * could never be accepted anyway, and one that fits gets its field's own
 * message. It also caps what the environment can make one value cost.
 */
#define CONFIG_MAX_EXPANDED PATH_MAX
/* Longest NAME in ${NAME}: far beyond any real one, small enough to copy. */
#define CONFIG_MAX_ENV_NAME 128

enum field_kind {
	FIELD_U16,   /* uint16_t in [min, max] */
	FIELD_U32,   /* uint32_t in [min, max] */
	FIELD_INT,   /* int in [min, max] */
	FIELD_BOOL,  /* bool */
	FIELD_IPV4,  /* struct shoal_addr, IPv4 only */
	FIELD_IPV6,  /* struct shoal_addr, IPv6 only (not v4-mapped) */
	FIELD_IP,    /* struct shoal_addr, either family */
	FIELD_PATH,  /* char[PATH_MAX], absolute */
	FIELD_LABEL, /* char[CONFIG_MAX_NAME + 1], RFC 1123 label */
	FIELD_PROTO, /* enum config_protocol */
	FIELD_MAP,   /* a mapping of field.fields, into the object at off */
	FIELD_SEQ,   /* a sequence as field.seq describes, into the object at off */
	FIELD_FUNC,  /* parsed by field.parse */
};

struct cfg_parser;
struct map_seen;

/*
 * A sequence of the schema: how each element is parsed, how many there may
 * be, and what its messages call them. One more than max is refused with
 * "too many <many>, at most <max>" before item sees it.
 */
struct seq_spec {
	int (*item)(struct cfg_parser *p, void *obj, int i); /* element i is the current event */
	int max;
	const char *many;
	/*
	 * Non-NULL: the list must not be empty, and an empty (or null) one
	 * is refused with "must list 1..<max> <none>, got none", on the
	 * value's line, or on its key's when at_key.
	 */
	const char *none;
	bool at_key;
	/*
	 * The list replaces a default: the int element count at count_off in
	 * the object is zeroed before the first element (an empty list
	 * empties it).
	 */
	bool replaces_default;
	size_t count_off;
};

#define SEQ_REPLACES_DEFAULT(type, count)                                                          \
	.replaces_default = true, .count_off = offsetof(type, count)

/* One key of a mapping: how to parse its value and where it goes. */
struct field {
	const char *key;
	enum field_kind kind;
	size_t off;	   /* offset of the value in the object being filled */
	uint32_t min, max; /* integer kinds */
	bool required;
	int (*parse)(struct cfg_parser *p, void *obj); /* FIELD_FUNC */
	const struct field *fields;		       /* FIELD_MAP: n_fields of them */
	size_t n_fields;
	/* FIELD_MAP, optional: rules across its fields, once it is read (at its end). */
	int (*check)(struct cfg_parser *p, void *obj, const struct map_seen *seen);
	const struct seq_spec *seq; /* FIELD_SEQ */
	/*
	 * FIELD_U32: a bound by another field of the same table (its key),
	 * checked once the mapping is read, so that either may be a default:
	 * "must be <= <at_most> (its value), got <this>" on this field's
	 * line, or the other's when only that one was written. A 0 in
	 * at_most means "no limit" and bounds nothing when unless_zero.
	 */
	const char *at_most, *at_least;
	bool unless_zero;
};

/* The FIELD_MAP initialiser for the mapping of the table fields. */
#define FIELD_MAP_OF(table) .fields = (table), .n_fields = ARRAY_SIZE(table)

/* Enough for the largest field table (proxy.http: 15); cp_map refuses a larger one. */
#define MAP_MAX_FIELDS 16

/* What one mapping set, for checks that span several of its fields. */
struct map_seen {
	uint32_t mask;		  /* bit i: fields[i] was present */
	int line[MAP_MAX_FIELDS]; /* line of each present key */
	int start_line;		  /* line of the mapping itself */
};

struct cfg_parser {
	yaml_parser_t yaml;
	yaml_event_t ev; /* the current event, owned while have_ev */
	bool have_ev;
	int depth; /* collections open at the current event */

	const char *name; /* the file, as messages name it */
	const char *text;
	size_t len;
	char *err;
	size_t errlen;

	/* Dotted path of the node being parsed, e.g. "services[0].ports[1]". */
	char path[CONFIG_PATH_BUF];
	size_t path_len;

	struct config *cfg;
	struct config_service *svc; /* the service being parsed */
	int n_routes_total;	    /* routes in the whole file so far */
	int key_line;		    /* line of the key whose value is being parsed */
	int node_line;		    /* where node: was, for the "address required" check */
	int mtls_line;		    /* where mtls: was, for its check against identity */
	int identity_line;	    /* where identity: was, for its check against kubernetes */

	/* policy: as written, compiled once the file is read (config_policy_compile). */
	struct policy_doc policy;
	int policy_line; /* 0: no policy: section */

	/* The current value after ${NAME} substitution, when it had any "$". */
	char expanded[CONFIG_MAX_EXPANDED];
};

/* ---- copies (config.c) ---- */

/* A heap copy of n bytes plus a NUL, or NULL (also for a NULL s). */
char *config_dup_bytes(const char *s, size_t n);

/* ---- the walker (config_walk.c) ---- */

int cp_line(const struct cfg_parser *p);
const char *cp_echo(const char *s, size_t n, char *buf);
int __attribute__((format(printf, 3, 4)))
cp_fail(struct cfg_parser *p, int line, const char *fmt, ...);
int cp_oom(struct cfg_parser *p);
int cp_grow(struct cfg_parser *p, void **arr, size_t n, size_t elem);
size_t cp_path_push_key(struct cfg_parser *p, const char *key);
void cp_path_pop(struct cfg_parser *p, size_t old);
void __attribute__((format(printf, 2, 3))) cp_path_set(struct cfg_parser *p, const char *fmt, ...);
int cp_next(struct cfg_parser *p);
bool ev_is_null(const yaml_event_t *ev);
const char *ev_kind(const yaml_event_t *ev);
int cp_scalar(struct cfg_parser *p, const char *want, const char **s, size_t *n);
int cp_uint(struct cfg_parser *p, uint64_t min, uint64_t max, uint64_t *out);
int cp_string(struct cfg_parser *p, const char *want, char *out, size_t size);
/* One word of a closed set and the value it stands for (cp_word). */
struct cp_word {
	const char *word;
	int value;
};
/*
 * The current scalar, one of words[0..n_words): its value in *out.
 * Anything else is refused with "must be a, b or c, got \"x\"".
 */
int cp_word(struct cfg_parser *p, const struct cp_word *words, size_t n_words, int *out);
bool cp_is_label(const char *s);
int cp_addr(struct cfg_parser *p, enum field_kind kind, struct shoal_addr *out);
int cp_map_walk(struct cfg_parser *p,
		int (*entry)(struct cfg_parser *p, void *ctx, const char *key, size_t klen,
			     int line),
		void *ctx);
int cp_map(struct cfg_parser *p, const struct field *fields, size_t n_fields, void *obj,
	   struct map_seen *seen);
int cp_seq(struct cfg_parser *p, const struct seq_spec *seq, void *obj);

/* ---- the schema (config_node.c, config_services.c) ---- */

/* The whole stream: one document, its top level the root mapping. */
int cp_document(struct cfg_parser *p);
/* services: the sequence of services, into a struct config. */
extern const struct seq_spec services_seq;

/* policy: (config_policy.c), a FIELD_FUNC of the root, and its compilation after the checks. */
int parse_policy(struct cfg_parser *p, void *obj);
int config_policy_compile(struct cfg_parser *p);
/* ---- mtls (config_mtls.c) ---- */

/* The mtls: section's defaults (the section absent: mode off). */
void config_mtls_defaults(struct config_mtls *m);
/* The root's mtls: field. */
int parse_mtls(struct cfg_parser *p, void *obj);
/*
 * s, a copy in svc's string table, or NULL when memory is short; the
 * endpoints' pointers into the table follow it when it moves.
 */
const char *config_svc_strings_add(struct config_service *svc, const char *s);

/* ---- the checks (config_checks.c) ---- */

/* Checks that need the whole file; 0 or -errno with the message set. */
int check_config(struct cfg_parser *p);

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * shoald's configuration file (YAML), parsed into one immutable struct.
 * Every field is documented in docs/config.md; defaults live here, once.
 */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/abi.h"

/* Limits of one config file. Each bounds memory and parse time on hostile
 * input; raise them here if a real deployment needs more. */
#define CONFIG_MAX_FILE_BYTES (16u << 20) /* a file larger than this is refused */
#define CONFIG_MAX_NAME 63                 /* DNS label length (RFC 1123) */
#define CONFIG_MAX_VIPS 4                  /* v4 + v6 clusterIPs, with room */
#define CONFIG_MAX_PORTS 32                /* ports per service */
#define CONFIG_MAX_ENDPOINTS 1024          /* endpoints per service */
#define CONFIG_MAX_SERVICES SHOAL_MAX_SERVICES

/* Defaults. */
#define CONFIG_DEFAULT_CONNECT_TIMEOUT_MS 1000 /* per attempt (Linkerd's) */
#define CONFIG_DEFAULT_CONNECT_DEADLINE_MS 3000 /* all attempts of one connection */
#define CONFIG_DEFAULT_BUFFER_BYTES 16384      /* per direction per connection */
#define CONFIG_DEFAULT_MAX_CONNECTIONS 65536   /* per worker */
#define CONFIG_DEFAULT_FAILOPEN_AFTER_MS 2000  /* heartbeat age that means "proxy dead" */
#define CONFIG_DEFAULT_CGROUP "/"              /* relative to the cgroup2 mount */

enum config_protocol {
	CONFIG_PROTO_TCP = 0, /* opaque TCP (the only one proxied for now) */
	CONFIG_PROTO_HTTP,    /* declared, carried as TCP until L7 lands */
	CONFIG_PROTO_H2C,
};

struct config_port {
	uint16_t port;        /* service port (host order) */
	uint16_t target_port; /* endpoint port (host order); defaults to port */
	enum config_protocol protocol;
	int line;             /* line in the file, for messages */
};

struct config_endpoint {
	struct shoal_addr addr;
	int line;
};

struct config_service {
	char name[CONFIG_MAX_NAME + 1];
	char namespace[CONFIG_MAX_NAME + 1]; /* default "default" */
	uint32_t id;                          /* index in config.services = BPF svc_id */
	struct shoal_addr vips[CONFIG_MAX_VIPS];
	int n_vips;
	struct config_port ports[CONFIG_MAX_PORTS];
	int n_ports;
	struct config_endpoint *endpoints; /* heap, n_endpoints entries */
	int n_endpoints;
	int line;
};

struct config {
	char path[PATH_MAX]; /* the file it came from */

	/* node: where the node proxy listens. */
	struct shoal_addr proxy_v4; /* zero: no IPv4 listener */
	struct shoal_addr proxy_v6; /* zero: no IPv6 listener */
	uint16_t proxy_port;        /* host order; default SHOAL_DEFAULT_PROXY_PORT */

	/* bpf: the datapath. */
	char pin_root[PATH_MAX]; /* default SHOAL_DEFAULT_PIN_ROOT */
	char cgroup[PATH_MAX];   /* attach point; relative to the cgroup2 mount
				  * unless it is under it already */
	bool shortcut;           /* sockmap shortcut on at start; default true */
	uint32_t socket_mark;    /* default SHOAL_DEFAULT_SOCKET_MARK */
	uint32_t failopen_after_ms;

	/* proxy: the L4 node proxy. */
	int workers;                  /* 0: one per online CPU */
	uint32_t connect_timeout_ms;  /* one connect attempt */
	uint32_t connect_deadline_ms; /* all attempts of one connection */
	uint32_t buffer_bytes;        /* per direction per connection */
	uint32_t max_connections;     /* per worker; beyond it, accept waits */

	struct config_service *services; /* heap, n_services entries */
	int n_services;
};

/*
 * Parse the YAML file at path. On success returns 0 and a new config in
 * *out (free with config_free). On failure returns -errno (-EINVAL for a
 * bad file) and writes "path:line: field: problem" into err.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/* Same, from a string; name stands in for the path in messages. */
int config_parse(const char *name, const char *text, size_t len, struct config **out, char *err,
		 size_t errlen);

void config_free(struct config *cfg);

/* The service owning (vip, port_be), or NULL; *port_out gets its port. */
const struct config_service *config_find_service(const struct config *cfg,
						 const struct shoal_addr *vip, uint16_t port_be,
						 const struct config_port **port_out);

#endif

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/accept.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/authz.h"
#include "proxy/conn_io.h"
#include "proxy/detect.h"
#include "proxy/h2.h"
#include "proxy/http1.h"
#include "proxy/http_error.h"
#include "proxy/opaque.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "proxy/worker.h"

/*
 * The kind a port's protocol starts as. The one place that maps
 * protocols to kinds: a new protocol adds its line here
 * (docs/adding-a-protocol.md).
 */
static const struct conn_ops *accept_kind(enum config_protocol protocol)
{
	switch (protocol) {
	case CONFIG_PROTO_HTTP:
		return &http1_ops;
	case CONFIG_PROTO_DETECT:
		return &detect_ops;
	case CONFIG_PROTO_H2C:
		return &h2_ops;
	default: /* tcp */
		return &opaque_ops;
	}
}

/*
 * Bytes of a refused client's request read (and dropped) before its fd
 * is closed: a close with unread bytes sends a reset, which can destroy
 * the 503 before the client reads it. One head's worth, in a few reads.
 */
#define ACCEPT_REFUSE_DRAIN_READS 4
#define ACCEPT_REFUSE_DRAIN_BYTES 4096

/* The 503 that names cap. */
/*
 * The policy's connection decision (docs/policy.md, "Enforcement"), made
 * here once for an opaque TCP port (request rules taken the safe way).
 * HTTP and HTTP/2 are decided request by request, and a detected port once
 * detection says opaque (detect.c).
 */
static bool accept_authorized(struct worker *w, struct conn *c, const struct config_port *port)
{
	const char *reason;

	if (port->protocol != CONFIG_PROTO_TCP)
		return true;
	return authz_allow(w, c, NULL, c->svc, c->svc_port, NULL, &reason);
}

static enum http_error accept_refuse_error(enum proxy_cap cap)
{
	switch (cap) {
	case PROXY_CAP_memory:
		return HTTP_ERR_LIMIT_MEMORY;
	case PROXY_CAP_client:
		return HTTP_ERR_LIMIT_CLIENT;
	case PROXY_CAP_connections:
	default:
		return HTTP_ERR_LIMIT_CONNECTIONS;
	}
}

/*
 * Refuse fd, just accepted from from, at cap: an HTTP client (a declared
 * HTTP port, or a detected one whose first bytes arrived and are a
 * request line) gets a 503 naming the cap, any other a reset. Counted
 * and logged by worker_refused. fd is consumed: closed before this
 * returns, so a worker holds at most one refused socket at any time,
 * whatever the rate of refusals (docs/proxy.md, "Budgets"). A 503 the
 * socket's send buffer does not take whole at once is not waited for:
 * the client gets a reset instead.
 */
static void accept_refuse(struct worker *w, int fd, const struct config_port *port,
			  enum proxy_cap cap, const char *from)
{
	char what[32 + ADDR_STR_MAX], buf[ACCEPT_REFUSE_DRAIN_BYTES];
	bool http = port->protocol == CONFIG_PROTO_HTTP;
	ssize_t n;
	size_t len;

	snprintf(what, sizeof(what), "a connection from %s", from);
	worker_refused(w, cap, what);
	if (port->protocol == CONFIG_PROTO_DETECT) {
		n = recv(fd, buf, DETECT_MAX_METHOD + 1, MSG_PEEK | MSG_DONTWAIT);
		http = n > 0 && detect_classify(buf, (size_t)n) == DETECT_HTTP1;
	}
	if (!http) {
		sock_close_reset(fd);
		return;
	}
	len = http_error_format(accept_refuse_error(cap), buf, sizeof(buf));
	/* A fresh socket's send buffer takes the short answer whole, or it is lost. */
	n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 || (size_t)n != len) {
		pr_debug("proxy worker %d: cannot answer a refused connection from %s: %s; "
			 "resetting it",
			 w->id, from, n < 0 ? strerror(errno) : "short write");
		sock_close_reset(fd);
		return;
	}
	WORKER_STAT_INC(w, http_errors);
	shutdown(fd, SHUT_WR);
	for (int i = 0; i < ACCEPT_REFUSE_DRAIN_READS; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	close(fd);
}

void conn_accept(struct worker *w, int fd, const struct sockaddr_storage *peer)
{
	struct proxy *p = w->p;
	const struct config *cfg = w->cfg;
	const struct config_service *svc;
	const struct config_port *port;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct shoal_orig_dst orig = {0};
	char from[ADDR_STR_MAX], svcname[2 * CONFIG_MAX_NAME + 16];
	struct shoal_addr peer_addr;
	uint16_t peer_port = 0;
	struct conn *c;
	int err;

	addr_from_sockaddr((const struct sockaddr *)peer, &peer_addr, &peer_port);
	addr_format(&peer_addr, peer_port, from, sizeof(from));

	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
		err = -errno;
	else
		err = p->orig_dst(p->orig_ctx, (const struct sockaddr *)peer,
				  (const struct sockaddr *)&local, &orig);
	if (err) {
		/* Not redirected by the datapath: someone dialled the port directly. */
		WORKER_STAT_INC(w, no_orig_dst);
		pr_debug("proxy worker %d: connection from %s has no original destination (%s); "
			 "closing it",
			 w->id, from, strerror(-err));
		close(fd);
		return;
	}

	svc = service_lookup(cfg, &orig, &port);
	if (!svc) {
		char to[ADDR_STR_MAX];

		WORKER_STAT_INC(w, no_service);
		worker_warn_ratelimited(
		    w,
		    "proxy worker %d: connection from %s to %s (svc_id %u) "
		    "matches no service; resetting it",
		    w->id, from, addr_format(&orig.ip, orig.port, to, sizeof(to)), orig.svc_id);
		sock_close_reset(fd);
		return;
	}
	/*
	 * Budgets (docs/proxy.md): refused with an answer, not left to fail
	 * later. At max_connections (worker_on_accept closed what idle pooled
	 * sockets it could), the connection was accepted only to be refused,
	 * rather than left waiting unanswered in the accept queue.
	 */
	if (w->n_active >= cfg->max_connections) {
		accept_refuse(w, fd, port, PROXY_CAP_connections, from);
		return;
	}
	if (!worker_mem_room(w)) {
		accept_refuse(w, fd, port, PROXY_CAP_memory, from);
		return;
	}
	err = limits_client_enter(&p->clients, &peer_addr);
	if (err < 0) {
		accept_refuse(w, fd, port, PROXY_CAP_client, from);
		return;
	}
	c = worker_conn_get(w);
	if (c && err > 0) {
		c->client_addr = peer_addr;
		c->client_counted = true;
	} else if (err > 0) {
		limits_client_leave(&p->clients, &peer_addr);
	}
	if (!c) {
		worker_warn_ratelimited(w,
					"proxy worker %d: out of memory; resetting a connection "
					"from %s",
					w->id, from);
		sock_close_reset(fd);
		return;
	}
	conn_init(c);
	c->client.pl.fd = fd;
	c->client.plain_tcp = worker_plain_tcp(w, fd);
	c->orig = orig;
	c->svc = svc;
	c->svc_port = port->port;
	c->port_be = service_target_port_be(port);
	c->accepted_ns = timer_now_ns();
	callers_conn_accept(w, c, (const struct sockaddr *)peer, &peer_addr);
	c->src_ident = attempt_src_ident(w, &peer_addr);
	/* The service's knobs (idle timeout) hold for every mode; HTTP
	 * requests look up their own target's. */
	c->sv = worker_es_service(w, c, cfg, svc);
	if (cfg->policy && !accept_authorized(w, c, port)) {
		sock_close_reset(fd); /* the client sees a reset, as for no service */
		c->client.pl.fd = -1;
		worker_conn_release(w, c);
		return;
	}
	sock_set_nodelay(fd);
	err = worker_watch(w, &c->client.pl);
	if (err) {
		worker_warn_ratelimited(w,
					"proxy worker %d: %s: cannot watch a connection from "
					"%s: %s; resetting it",
					w->id, conn_svc_name(c, svcname, sizeof(svcname)), from,
					strerror(-err));
		/* Not watched, so no unwatch: close it by hand. */
		sock_close_reset(fd);
		c->client.pl.fd = -1;
		worker_conn_release(w, c);
		return;
	}
	if (log_debug_on())
		pr_debug("proxy worker %d: %s: connection from %s (%s)", w->id,
			 conn_svc_name(c, svcname, sizeof(svcname)), from,
			 port->protocol == CONFIG_PROTO_HTTP	 ? "http"
			 : port->protocol == CONFIG_PROTO_DETECT ? "detect"
								 : "opaque");
	accept_kind(port->protocol)->start(w, c);
}

void accept_size_caches(struct worker *w, const struct config *cfg)
{
	w->states.size = sizeof(struct http1_conn);
	w->slots.size = http1_headers_size(cfg);
}

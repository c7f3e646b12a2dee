/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A tiny HTTP/1.0 client for the admin endpoint (admin.h), for shoalctl:
 * one GET, the whole answer read until the server closes. Only for the
 * agent's own loopback endpoint: no TLS, no redirects, no chunking (the
 * admin server sends Content-Length and closes).
 */
#ifndef SHOAL_TELEMETRY_ADMIN_CLIENT_H
#define SHOAL_TELEMETRY_ADMIN_CLIENT_H

#include <stddef.h>

/* The admin server answers in milliseconds; a stuck one fails fast. */
#define ADMIN_CLIENT_TIMEOUT_MS 5000
/* Larger answers are refused: /debug/endpoints of a big node is < 8 MiB. */
#define ADMIN_CLIENT_MAX_BYTES (64u << 20)

/*
 * GET path from the admin endpoint at listen ("127.0.0.1:15020"). Returns
 * 0 with the body (NUL-terminated, malloc'd) in *body and its length in
 * *len; or -errno with a message in err ("cannot connect to ...: ...",
 * "... answered 503: not serving yet").
 */
int admin_client_get(const char *listen, const char *path, char **body, size_t *len, char *err,
		     size_t errlen);

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A worker's thread and loop (worker_loop.c); struct worker and the
 * services its connections use are in worker.h.
 */
#ifndef SHOAL_PROXY_WORKER_LOOP_H
#define SHOAL_PROXY_WORKER_LOOP_H

#include <stddef.h>

struct proxy;
struct worker;

/*
 * Set up worker id of p: its epoll and its listeners on the configured
 * proxy addresses. Returns 0, or -errno with a message in err. On
 * failure w holds nothing; worker_fini is still safe to call.
 */
int worker_init(struct worker *w, struct proxy *p, int id, char *err, size_t errlen);

/* Thread body: serves until p->stop_fd becomes readable, then closes its
 * listeners and resets every connection it still holds. */
void *worker_main(void *arg);

/* Release everything w holds; its thread must have exited (or never run). */
void worker_fini(struct worker *w);

struct tunnel;

/*
 * Put t's loop of w in w's epoll, once (its calls' TLS connections then
 * run on w's thread). 0, or -errno.
 */
int worker_watch_tunnel(struct worker *w, struct tunnel *t);

#endif

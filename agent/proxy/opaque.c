// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "proxy/opaque.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/log.h"
#include "proxy/attempt.h"
#include "proxy/conn_io.h"
#include "proxy/endpoint_pick.h"
#include "proxy/http_error.h"
#include "proxy/service_lookup.h"
#include "proxy/sock.h"
#include "proxy/observe.h"

/*
 * Close both sides and release c. reset: the peers see RST, because the
 * exchange did not complete (a side reset, no endpoint, shutdown).
 */
static void opaque_close(struct worker *w, struct conn *c, bool reset)
{
	pick_cancel(c->at.sv, &c->at.bt, timer_now_ns());
	metrics_tcp_close(w, c);
	conn_side_close(w, &c->client, reset);
	conn_side_close(w, &c->upstream, reset);
	worker_conn_release(w, c);
}

void opaque_abort(struct worker *w, struct conn *c)
{
	opaque_close(w, c, true);
}

/*
 * Move bytes from src to dst through b until neither side can make
 * progress (EAGAIN, buffer full or empty). Sets *progress when any byte
 * moved. Returns 0, or -errno of a hard error on either side.
 */
static int opaque_flow(struct worker *w, struct conn_side *src, struct conn_side *dst,
		       struct conn_buf *b, uint32_t cap, bool *progress)
{
	uint32_t got, head = b->head;
	int err;

	/* A full buffer stops reading until the other side drains it. */
	err = conn_side_read(w, src, b, cap, &got);
	b->unreported += got;
	if (got)
		*progress = true;
	if (err)
		return err;
	err = conn_side_send(dst, b->data, &b->head, b->tail);
	if (b->head != head)
		*progress = true;
	if (err)
		return err;
	conn_buf_release_empty(w, b);
	/* Pass the FIN on only once everything before it was written. */
	if (src->eof && b->tail == 0 && !dst->shut_wr) {
		if (shutdown(dst->pl.fd, SHUT_WR) < 0)
			return -errno;
		dst->shut_wr = true;
	}
	return 0;
}

/*
 * One side failed hard (reset, EPIPE, timeout): there is no clean way to
 * finish, so the other side learns it the same way, by a reset.
 */
static void opaque_fail(struct worker *w, struct conn *c, int err)
{
	if (log_debug_on()) {
		char svc[2 * CONFIG_MAX_NAME + 16];

		pr_debug("proxy worker %d: %s: connection failed: %s; resetting both sides", w->id,
			 conn_svc_name(c, svc, sizeof(svc)), strerror(err));
	}
	opaque_close(w, c, true);
}

/* Copy both ways for up to CONN_PUMP_ROUNDS rounds; close c once both
 * directions have finished, or reset it on a hard error. */
static void opaque_pump(struct worker *w, struct conn *c)
{
	uint32_t cap = w->cfg->buffer_bytes;
	int err;

	for (int round = 0;; round++) {
		bool progress = false;

		if (round == CONN_PUMP_ROUNDS) {
			worker_conn_defer(w, c);
			return;
		}
		err = opaque_flow(w, &c->client, &c->upstream, &c->to_upstream, cap, &progress);
		if (!err)
			err =
			    opaque_flow(w, &c->upstream, &c->client, &c->to_client, cap, &progress);
		if (err) {
			opaque_fail(w, c, -err);
			return;
		}
		if (!progress)
			break;
		/* The idle timer is lazy: it checks this when it fires. */
		if (round == 0)
			c->last_active_ns = timer_now_ns();
	}
	metrics_tcp_flush(w, c);
	if (c->client.shut_wr && c->upstream.shut_wr)
		opaque_close(w, c, false);
}

/*
 * Arm the idle deadline (proxy.idle_timeout_ms after the last byte moved);
 * none when it is 0. Failing to queue it only loses the idle close.
 */
static void opaque_arm_idle(struct worker *w, struct conn *c)
{
	uint64_t idle = conn_idle_ns(w, c);

	if (idle)
		timer_heap_add(&w->timers, &c->timer, c->last_active_ns + idle);
}

static void opaque_established(struct worker *w, struct conn *c)
{
	timer_heap_del(&w->timers, &c->timer);
	c->state = CONN_ESTABLISHED;
	c->last_active_ns = timer_now_ns();
	metrics_tcp_open(w, c);
	opaque_arm_idle(w, c);
	/*
	 * Edges seen while connecting were not acted on: assume both sides
	 * ready. A wrong guess costs one EAGAIN, a missed edge a hang.
	 */
	c->client.readable = c->client.writable = true;
	c->upstream.readable = c->upstream.writable = true;
	opaque_pump(w, c);
}

/*
 * Start connecting c to endpoint idx of its service (attempt_kind.open):
 * returns 1 when connected at once, 0 when in progress (watched, with the
 * attempt's timer armed at its connect timeout, deadline at the latest),
 * or -errno when the attempt failed already.
 */
static int opaque_open(struct worker *w, struct conn *c, uint32_t idx, uint64_t now,
		       uint64_t deadline)
{
	uint64_t attempt = c->sv && c->sv->connect_timeout_ns
			       ? c->sv->connect_timeout_ns
			       : (uint64_t)w->cfg->connect_timeout_ms * 1000000;
	uint64_t attempt_end = now + attempt;
	bool connected, tunneled;
	int fd, err;

	fd = attempt_connect_ep(w, c, c->svc, &c->svc->endpoints[idx], c->port_be, &connected,
				&tunneled);
	if (fd < 0)
		return fd;
	c->upstream.pl.fd = fd;
	err = worker_watch(w, &c->upstream.pl);
	if (err)
		goto err_unset;
	if (connected)
		return 1;
	err =
	    timer_heap_add(&w->timers, &c->timer, attempt_end < deadline ? attempt_end : deadline);
	if (err) {
		worker_unwatch(w, &c->upstream.pl);
		goto err_unset;
	}
	return 0;

err_unset:
	c->upstream.pl.fd = -1;
	close(fd);
	return err;
}

/* attempt_kind.target: an opaque connection's tries go to its own service. */
static const struct config_service *opaque_target(const struct conn *c, uint16_t *port_be)
{
	*port_be = c->port_be;
	return c->svc;
}

/*
 * attempt_kind.admit: a connect to another endpoint is a retry, so the
 * service's retry budget decides.
 */
static bool opaque_admit_retry(struct worker *w, struct conn *c, uint64_t now)
{
	struct attempt *at = &c->at;

	(void)w;
	if (!at->sv)
		return true;
	if (!retry_budget_withdraw(at->sv->budget, now)) {
		pick_cancel(at->sv, &at->bt, now);
		atomic_fetch_add_explicit(&at->sv->state->retries_refused, 1, memory_order_relaxed);
		at->last_err = at->last_err ?: EAGAIN;
		return false;
	}
	atomic_fetch_add_explicit(&at->sv->state->retries, 1, memory_order_relaxed);
	return true;
}

/* attempt_kind.fail_over: each endpoint is tried once at most. */
static bool opaque_fail_over(struct worker *w, struct conn *c)
{
	(void)w;
	return c->at.tried < (uint32_t)c->svc->n_endpoints;
}

/* attempt_kind.wait: opaque_timeout picks again at until. */
static bool opaque_wait(struct worker *w, struct conn *c, uint64_t until)
{
	if (timer_heap_add(&w->timers, &c->timer, until))
		return false;
	c->state = CONN_RETRY;
	return true;
}

/* attempt_kind.refuse: reset the client. */
static void opaque_local_refused(struct worker *w, struct conn *c, int err)
{
	char svc[2 * CONFIG_MAX_NAME + 16];

	worker_warn_ratelimited(w,
				"proxy worker %d: %s: cannot open a connection to an endpoint: %s "
				"(the proxy's own limit, not the endpoint's); resetting the client",
				w->id, conn_svc_name(c, svc, sizeof(svc)), strerror(err));
	opaque_close(w, c, true);
}

/* attempt_kind.give_up: reset the client, whatever the reason. */
static void opaque_give_up(struct worker *w, struct conn *c, enum attempt_end why)
{
	char svc[2 * CONFIG_MAX_NAME + 16];
	uint64_t ms = (timer_now_ns() - c->accepted_ns) / 1000000;

	(void)why;
	WORKER_STAT_INC(w, gave_up);
	worker_warn_ratelimited(w,
				"proxy worker %d: %s: giving up on a connection after %u of %d "
				"endpoints in %llu ms; last error: %s",
				w->id, conn_svc_name(c, svc, sizeof(svc)), c->at.tried,
				c->svc->n_endpoints, (unsigned long long)ms,
				strerror(c->at.last_err ? c->at.last_err : ETIMEDOUT));
	opaque_close(w, c, true);
}

/*
 * attempt_kind.connected: the connect of c->at.bt completed. Its latency
 * is the endpoint's sample (opaque TCP balances on connect latency, and
 * on the connections open: pending lasts until opaque_close), then copy.
 */
static void opaque_connected(struct worker *w, struct conn *c)
{
	c->upstream.plain_tcp = worker_plain_tcp(w, c->upstream.pl.fd);
	pick_connected(c->at.sv, &c->at.bt, timer_now_ns());
	opaque_established(w, c);
}

/*
 * Opaque TCP in the attempt loop (attempt.h): P2C over connect latency,
 * breakers admitting, failing over to endpoints not yet tried, each
 * failover a retry the budget must allow; giving up resets the client.
 */
static const struct attempt_kind opaque_attempts = {
    .target = opaque_target,
    .admit = opaque_admit_retry,
    .open = opaque_open,
    .connected = opaque_connected,
    .fail_over = opaque_fail_over,
    .wait = opaque_wait,
    .give_up = opaque_give_up,
    .refuse = opaque_local_refused,
};

/*
 * Connect to the endpoint the balancer picks, failing over until one is
 * connecting or connected; give up (reset the client) when every
 * endpoint was tried, none is a candidate, the budget is spent, or the
 * connect deadline has passed.
 */
static void opaque_connect_next(struct worker *w, struct conn *c)
{
	c->state = CONN_CONNECTING;
	attempt_next(w, c, &opaque_attempts);
}

/*
 * The attempt in flight failed. Its socket is closed now, but the next
 * attempt waits for a deferred turn: events of this epoll round may still
 * name the upstream side and must not be taken for the new socket's.
 */
static void opaque_attempt_failed_async(struct worker *w, struct conn *c, int err)
{
	timer_heap_del(&w->timers, &c->timer);
	conn_side_close(w, &c->upstream, false);
	if (!attempt_failed(w, c, &opaque_attempts, err))
		return;
	c->state = CONN_RETRY;
	worker_conn_defer(w, c);
}

/* The idle deadline passed: close c if nothing moved since, else re-arm. */
static void opaque_idle_check(struct worker *w, struct conn *c)
{
	uint64_t idle = conn_idle_ns(w, c);
	char svc[2 * CONFIG_MAX_NAME + 16];

	if (!idle)
		return;
	if (timer_now_ns() < c->last_active_ns + idle) {
		opaque_arm_idle(w, c);
		return;
	}
	if (log_debug_on())
		pr_debug("proxy worker %d: %s: idle for %llu ms; closing", w->id,
			 conn_svc_name(c, svc, sizeof(svc)),
			 (unsigned long long)(idle / 1000000));
	opaque_close(w, c, false);
}

/* c's timer: the attempt's deadline, the wait for a candidate, or idle. */
static void opaque_timeout(struct worker *w, struct conn *c)
{
	if (c->state == CONN_CONNECTING)
		opaque_attempt_failed_async(w, c, ETIMEDOUT);
	else if (c->state == CONN_RETRY)
		opaque_connect_next(w, c); /* the wait for a candidate endpoint */
	else if (c->state == CONN_ESTABLISHED)
		opaque_idle_check(w, c);
}

/* c's deferred turn: retry, or keep copying. */
static void opaque_resume(struct worker *w, struct conn *c)
{
	if (c->state == CONN_RETRY)
		opaque_connect_next(w, c);
	else if (c->state == CONN_ESTABLISHED)
		opaque_pump(w, c);
}

static void opaque_event(struct worker *w, struct conn_side *s, uint32_t events)
{
	struct conn *c = s->conn;
	int err;

	switch (c->state) {
	case CONN_CLOSED:
		return;
	case CONN_CONNECTING:
	case CONN_RETRY:
		if (s == &c->client) {
			/* The application gave up (reset) while we were connecting. */
			if (events & EPOLLERR)
				opaque_fail(w, c, sock_error(s->pl.fd) ?: ECONNRESET);
			return;
		}
		if (c->state == CONN_RETRY || !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		err = attempt_connect_result(w, s->pl.fd, events);
		if (err)
			opaque_attempt_failed_async(w, c, err);
		else
			opaque_connected(w, c);
		return;
	case CONN_ESTABLISHED:
		if (events & EPOLLERR) {
			err = sock_error(s->pl.fd);
			if (err) {
				opaque_fail(w, c, err);
				return;
			}
		}
		opaque_pump(w, c);
		return;
	}
}

void opaque_start(struct worker *w, struct conn *c)
{
	const struct config_service *svc = c->svc;

	c->kind = CONN_KIND_OPAQUE;
	c->ops = &opaque_ops;
	if (svc->n_endpoints <= 0) {
		char name[2 * CONFIG_MAX_NAME + 16];

		WORKER_STAT_INC(w, gave_up);
		worker_warn_ratelimited(w,
					"proxy worker %d: %s has no endpoints; resetting a "
					"connection",
					w->id, conn_svc_name(c, name, sizeof(name)));
		opaque_close(w, c, true);
		return;
	}
	/* Its one request's tries go to its own service, timed from accept. */
	attempt_begin(&c->at, c->sv, w->cfg, c->accepted_ns);
	if (c->at.sv) {
		/* Every connection is an original request for the retry budget. */
		retry_budget_deposit(c->at.sv->budget, timer_now_ns());
		atomic_fetch_add_explicit(&c->at.sv->state->requests, 1, memory_order_relaxed);
	}
	opaque_connect_next(w, c);
}

void opaque_tunnel(struct worker *w, struct conn *c)
{
	c->kind = CONN_KIND_OPAQUE;
	c->ops = &opaque_ops;
	opaque_established(w, c);
}

/*
 * Copying, and no tunnel (whose HTTP state still names its old config):
 * its endpoint was picked and connected, and it holds no balancer
 * ticket, so nothing of it depends on its config any more but its
 * service's identity and knobs.
 */
static bool opaque_settled(const struct conn *c)
{
	return c->state == CONN_ESTABLISHED && !c->http && !c->at.bt.active;
}

/* Its one request's tries go to its own service, in the new snapshot too. */
static void opaque_followed(struct conn *c)
{
	c->at.sv = c->sv;
}

const struct conn_ops opaque_ops = {
    .name = "opaque",
    .start = opaque_start,
    .event = opaque_event,
    .timeout = opaque_timeout,
    .resume = opaque_resume,
    .abort = opaque_abort,
    .settled = opaque_settled,
    .followed = opaque_followed,
};

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* An HTTP/2 endpoint on loopback for the h2 kind's tests (h2_test_backend.h). */
#include "proxy/h2_test_backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

/* One response body: how many bytes are left of it; freed with its connection. */
struct h2tb_body {
	size_t left;
	bool big;
	bool grpc;	  /* trailers grpc-status 0 end it */
	const char *text; /* not big: its bytes ("ok", or H2TB_HTML) */
	size_t len;
	struct h2tb_body *next;
};

struct h2tb_conn {
	struct h2tb *b;
	struct h2tb_slot *slot;
	int fd;
	struct h2tb_body *bodies;
};

/* The stream user data of a request for /big (or a gRPC method), until it is answered. */
static char h2tb_big, h2tb_grpc, h2tb_grpc_reset;

/* The gRPC methods backend 'a' answers with a bare HTTP status (the stream user data). */
static const struct h2tb_http_answer {
	const char *path;
	const char *status;
	bool body; /* H2TB_HTML follows the head */
} h2tb_http_answers[] = {
    {H2TB_GRPC_503, "503", false},
    {H2TB_GRPC_503_BODY, "503", true},
    {H2TB_GRPC_400, "400", false},
};

/* The answer of :path value (len bytes) of h2tb_http_answers, or NULL. */
static const struct h2tb_http_answer *h2tb_http_answer_of(const uint8_t *value, size_t len)
{
	for (size_t i = 0; i < sizeof(h2tb_http_answers) / sizeof(h2tb_http_answers[0]); i++)
		if (len == strlen(h2tb_http_answers[i].path) &&
		    !memcmp(value, h2tb_http_answers[i].path, len))
			return &h2tb_http_answers[i];
	return NULL;
}

static bool h2tb_is_http_answer(const void *ud)
{
	for (size_t i = 0; i < sizeof(h2tb_http_answers) / sizeof(h2tb_http_answers[0]); i++)
		if (ud == &h2tb_http_answers[i])
			return true;
	return false;
}

static const nghttp2_nv h2tb_grpc_head[] = {
    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
};

static ssize_t h2tb_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct h2tb_body *body = src->ptr;
	size_t n = body->left < length ? body->left : length;

	(void)ud;
	if (body->big)
		memset(buf, 'x', n);
	else
		memcpy(buf, body->text + (body->len - body->left), n);
	body->left -= n;
	if (!body->left)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	if (!body->left && body->grpc) {
		nghttp2_nv tr[] = {
		    {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
		};

		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(s, id, tr, 1))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return (ssize_t)n;
}

static int h2tb_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
			  size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			  void *ud)
{
	struct h2tb *b = ((struct h2tb_conn *)ud)->b;

	(void)flags;
	if (namelen == 21 && !memcmp(name, "x-shoal-peer-identity", 21)) {
		size_t n = valuelen < sizeof(b->peer_id) ? valuelen : sizeof(b->peer_id) - 1;

		memcpy(b->peer_id, value, n);
		b->peer_id[n] = 0;
		atomic_fetch_add(&b->peer_ids, 1);
	} else if (namelen >= 8 && !memcmp(name, "x-shoal-", 8)) {
		atomic_fetch_add(&b->shoal_fields, 1);
	}
	if (frame->hd.type == NGHTTP2_HEADERS && namelen == 5 && !memcmp(name, ":path", 5) &&
	    valuelen == 4 && !memcmp(value, "/big", 4))
		nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, &h2tb_big);
	if (frame->hd.type == NGHTTP2_HEADERS && namelen == 5 && !memcmp(name, ":path", 5) &&
	    valuelen == strlen(H2TB_GRPC_FLAKY) && !memcmp(value, H2TB_GRPC_FLAKY, valuelen))
		nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, &h2tb_grpc);
	if (frame->hd.type == NGHTTP2_HEADERS && namelen == 5 && !memcmp(name, ":path", 5) &&
	    valuelen == strlen(H2TB_GRPC_RESET) && !memcmp(value, H2TB_GRPC_RESET, valuelen))
		nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, &h2tb_grpc_reset);
	if (frame->hd.type == NGHTTP2_HEADERS && namelen == 5 && !memcmp(name, ":path", 5) &&
	    h2tb_http_answer_of(value, valuelen))
		nghttp2_session_set_stream_user_data(s, frame->hd.stream_id,
						     (void *)h2tb_http_answer_of(value, valuelen));
	return 0;
}

/* A request head came: answer it at once (its body, if any, is read and dropped). */
static int h2tb_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
	struct h2tb_conn *hc = ud;
	struct h2tb *b = hc->b;
	char id[2] = {b->id, 0};
	struct h2tb_body *body;
	void *ud_stream = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
	nghttp2_data_provider dp = {.read_callback = h2tb_read};
	nghttp2_nv nv[] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"x-backend", (uint8_t *)id, 9, 1, NGHTTP2_NV_FLAG_NONE},
	};

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (b->id == 'a' && ud_stream == &h2tb_grpc) {
		/* A head, then trailers in a HEADERS frame of their own: not trailers-only. */
		nghttp2_nv tr[] = {
		    {(uint8_t *)"grpc-status", (uint8_t *)"14", 11, 2, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"grpc-message", (uint8_t *)"flaky", 12, 5, NGHTTP2_NV_FLAG_NONE},
		};

		atomic_fetch_add(&b->requests, 1);
		if (nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NULL,
					   h2tb_grpc_head, 2, NULL) < 0 ||
		    nghttp2_submit_headers(s, NGHTTP2_FLAG_END_STREAM, frame->hd.stream_id, NULL,
					   tr, 2, NULL) < 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	if (ud_stream == &h2tb_grpc_reset) {
		atomic_fetch_add(&b->requests, 1);
		if (nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NULL,
					   h2tb_grpc_head, 2, NULL) < 0 ||
		    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					      NGHTTP2_INTERNAL_ERROR))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	body = calloc(1, sizeof(*body));
	if (!body)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	body->big = ud_stream == &h2tb_big;
	body->grpc = ud_stream == &h2tb_grpc || h2tb_is_http_answer(ud_stream);
	body->text = "ok";
	body->len = 2;
	if (b->id == 'a' && h2tb_is_http_answer(ud_stream)) {
		/* An intermediary's answer: no gRPC content-type, no grpc-status. */
		const struct h2tb_http_answer *a = ud_stream;
		nghttp2_nv head[] = {
		    {(uint8_t *)":status", (uint8_t *)a->status, 7, 3, NGHTTP2_NV_FLAG_NONE},
		    {(uint8_t *)"content-type", (uint8_t *)"text/html", 12, 9,
		     NGHTTP2_NV_FLAG_NONE},
		};

		body->grpc = false;
		body->text = H2TB_HTML;
		body->len = strlen(H2TB_HTML);
		body->left = body->len;
		body->next = hc->bodies;
		hc->bodies = body;
		dp.source.ptr = body;
		atomic_fetch_add(&b->requests, 1);
		if (nghttp2_submit_response(s, frame->hd.stream_id, head, 2, a->body ? &dp : NULL))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	body->left = body->big ? H2TB_BIG_BYTES : 2;
	body->next = hc->bodies;
	hc->bodies = body;
	dp.source.ptr = body;
	atomic_fetch_add(&b->requests, 1);
	if (body->grpc) {
		/* The message "ok" (no length prefix: the proxy reads none), then grpc-status 0. */
		if (nghttp2_submit_response(s, frame->hd.stream_id, h2tb_grpc_head, 2, &dp))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		return 0;
	}
	if (nghttp2_submit_response(s, frame->hd.stream_id, nv, 2, &dp))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static void *h2tb_conn_main(void *arg)
{
	struct h2tb_conn *hc = arg;
	nghttp2_session_callbacks *cb;
	nghttp2_session *s = NULL;
	uint8_t buf[16384];

	if (nghttp2_session_callbacks_new(&cb))
		goto out;
	nghttp2_session_callbacks_set_on_header_callback(cb, h2tb_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2tb_on_frame_recv);
	if (nghttp2_session_server_new(&s, cb, hc)) {
		nghttp2_session_callbacks_del(cb);
		goto out;
	}
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
	while (nghttp2_session_want_read(s) || nghttp2_session_want_write(s)) {
		const uint8_t *out;
		ssize_t n;

		while ((n = nghttp2_session_mem_send(s, &out)) > 0)
			if (send(hc->fd, out, (size_t)n, MSG_NOSIGNAL) != n)
				goto out;
		if (n < 0)
			break;
		n = recv(hc->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || nghttp2_session_mem_recv(s, buf, (size_t)n) < 0)
			break;
	}
out:
	if (s)
		nghttp2_session_del(s);
	while (hc->bodies) {
		struct h2tb_body *next = hc->bodies->next;

		free(hc->bodies);
		hc->bodies = next;
	}
	atomic_store(&hc->slot->done, true);
	free(hc);
	return NULL;
}

/* Join the connection threads that ended and free their slots. */
static void h2tb_reap(struct h2tb *b)
{
	for (int i = 0; i < H2TB_MAX_CONNS; i++) {
		struct h2tb_slot *sl = &b->slots[i];

		if (sl->used && atomic_load(&sl->done)) {
			pthread_join(sl->thread, NULL);
			close(sl->fd);
			sl->used = false;
		}
	}
}

static void *h2tb_main(void *arg)
{
	struct h2tb *b = arg;

	for (;;) {
		struct h2tb_conn *hc;
		struct h2tb_slot *sl = NULL;
		int fd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* h2tb_stop shut the listener down */
		}
		atomic_fetch_add(&b->conns, 1);
		h2tb_reap(b);
		for (int i = 0; i < H2TB_MAX_CONNS && !sl; i++)
			if (!b->slots[i].used)
				sl = &b->slots[i];
		hc = sl ? calloc(1, sizeof(*hc)) : NULL;
		if (!hc) {
			close(fd);
			continue;
		}
		atomic_store(&sl->done, false);
		sl->fd = fd;
		hc->b = b;
		hc->slot = sl;
		hc->fd = fd;
		if (pthread_create(&sl->thread, NULL, h2tb_conn_main, hc)) {
			free(hc);
			close(fd);
			continue;
		}
		sl->used = true;
	}
}

int h2tb_start(struct h2tb *b, char id)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int err;

	memset(b, 0, sizeof(*b));
	b->id = id;
	b->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b->lfd < 0)
		return -errno;
	if (bind(b->lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(b->lfd, 64) ||
	    getsockname(b->lfd, (struct sockaddr *)&sin, &len)) {
		err = -errno;
		close(b->lfd);
		return err;
	}
	b->port = ntohs(sin.sin_port);
	err = -pthread_create(&b->thread, NULL, h2tb_main, b);
	if (err) {
		close(b->lfd);
		return err;
	}
	b->running = true;
	return 0;
}

void h2tb_stop(struct h2tb *b)
{
	if (!b->running)
		return;
	shutdown(b->lfd, SHUT_RDWR); /* wakes the blocked accept() */
	pthread_join(b->thread, NULL);
	for (int i = 0; i < H2TB_MAX_CONNS; i++) {
		struct h2tb_slot *sl = &b->slots[i];

		if (!sl->used)
			continue;
		shutdown(sl->fd, SHUT_RDWR);
		pthread_join(sl->thread, NULL);
		close(sl->fd);
		sl->used = false;
	}
	close(b->lfd);
	b->running = false;
}

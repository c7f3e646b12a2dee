// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Kubernetes watcher. Per resource kind, one thread runs the loop
 * that client-go's reflector runs:
 *
 *   list (paged) -> replace the kind in the model -> watch from the
 *   list's resourceVersion -> apply each event -> on a clean end of the
 *   watch (timeoutSeconds), watch again from the last version seen ->
 *   on 410 (in-stream ERROR or HTTP), list again -> on any other error,
 *   back off with full jitter and watch again.
 *
 * The model keeps its last state through every error, so the proxy goes
 * on serving what was last known while the API server is away.
 */
#include "discovery/k8s.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/curl_api.h"
#include "common/log.h"
#include "discovery/k8s_decode.h"

/* A continue token is opaque; the API server's are ~100 bytes. */
#define K8S_MAX_CONTINUE 1024
/* Room for one request URL: server, path, query and a continue token. */
#define K8S_MAX_REQUEST_URL (K8S_MAX_URL + K8S_MAX_CONTINUE + 512)

enum k8s_outcome {
	K8S_DONE = 0,	 /* request completed (watch: ended at its timeout) */
	K8S_RELIST = 1,	 /* 410: the version is gone, list again */
	K8S_FAILED = 2,	 /* error: back off, then retry */
	K8S_STOPPED = 3, /* k8s_stop was called */
};

struct k8s_kind_ctx {
	struct k8s_watcher *w;
	enum k8s_kind kind;
	const char *what; /* "services", "endpointslices" */
	const char *path; /* the collection's URL path */
	char selector[K8S_MAX_SELECTOR]; /* "" or a query: "fieldSelector=..." */
	const struct k8s_sink *sink;	 /* NULL: discovery's model */
	struct k8s_sink sink_copy;
	pthread_t thread;
	bool started;
	CURL *curl;
	struct k8s_stream stream;
	unsigned int seed;   /* rand_r state for the jitter */
	uint32_t backoff_ms; /* the current back-off ceiling */

	char rv[K8S_MAX_RV];   /* last version applied: the next watch starts here */
	atomic_bool listed;    /* the model holds a full list of this kind */
	atomic_bool connected; /* last request reached the server and got 200 */

	/* Per request. */
	bool watching;
	long http_code;
	bool relist;
	int cb_err;
	char cont[K8S_MAX_CONTINUE];   /* list paging */
	char body[K8S_MAX_ERROR_BODY]; /* a failed request's Status */
	size_t body_len;
};

struct k8s_watcher {
	struct k8s_opts opts;
	struct model *m;
	pthread_mutex_t *lock;
	int notify_fd;

	pthread_mutex_t mu; /* guards stopping and the token; cv sleeps on it */
	pthread_cond_t cv;
	bool stopping;
	atomic_bool stop_flag; /* lock-free copy for curl's progress callback */
	char token[K8S_MAX_TOKEN];
	uint64_t token_read_ns;

	struct k8s_kind_ctx kinds[K8S_MAX_COLLECTIONS];
	int n_kinds;

	struct {
		_Atomic uint64_t lists, watches, events, relists_410, errors, unauthorized,
		    bad_objects, refused_endpoints;
	} st;

	/* Rate limit of the refused-address lines; under *lock. */
	uint64_t refused_window_ns;  /* start of the current window */
	unsigned int refused_logged; /* lines in it */
	uint64_t refused_unlogged;   /* refused since the last line, not logged */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int k8s_opts_in_cluster(struct k8s_opts *opts)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");

	if (!opts->ca_file[0])
		snprintf(opts->ca_file, sizeof(opts->ca_file), "%s", K8S_DEFAULT_CA_FILE);
	if (!opts->token_file[0])
		snprintf(opts->token_file, sizeof(opts->token_file), "%s", K8S_DEFAULT_TOKEN_FILE);
	if (opts->api_server[0])
		return 0;
	if (!host || !*host)
		return -ENOENT;
	/* An IPv6 service address needs brackets in a URL. */
	snprintf(opts->api_server, sizeof(opts->api_server),
		 strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		 port && *port ? port : "443");
	return 0;
}

/* ---- token ---- */

/*
 * (Re)read the token file into w->token when forced or when it is older
 * than K8S_TOKEN_REREAD_MS. Caller holds w->mu. A failed read keeps the
 * old token: the file is swapped by rename and may be missing briefly.
 */
static void token_refresh(struct k8s_watcher *w, bool force)
{
	uint64_t now = now_ns();
	char buf[K8S_MAX_TOKEN];
	ssize_t n;
	int fd;

	if (!force && w->token_read_ns &&
	    now - w->token_read_ns < (uint64_t)K8S_TOKEN_REREAD_MS * 1000000ull)
		return;
	w->token_read_ns = now;
	if (!w->opts.token_file[0])
		return;
	fd = open(w->opts.token_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pr_warn("kubernetes: cannot read the token %s: %s", w->opts.token_file,
			strerror(errno));
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0 || n == (ssize_t)sizeof(buf) - 1) {
		pr_warn("kubernetes: cannot read the token %s: %s", w->opts.token_file,
			n < 0 ? strerror(errno) : "larger than K8S_MAX_TOKEN");
		return;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	memcpy(w->token, buf, (size_t)n + 1);
}

/* The Authorization header, built from the current token; NULL if none. */
static struct curl_slist *auth_headers(struct k8s_watcher *w, bool force_reread)
{
	char *h = malloc(K8S_MAX_TOKEN + 32);
	struct curl_slist *list = NULL, *l;

	if (!h)
		return NULL;
	pthread_mutex_lock(&w->mu);
	token_refresh(w, force_reread);
	if (w->token[0])
		snprintf(h, K8S_MAX_TOKEN + 32, "Authorization: Bearer %s", w->token);
	else
		h[0] = '\0';
	pthread_mutex_unlock(&w->mu);
	l = curl_slist_append(NULL, "Accept: application/json");
	if (l && h[0])
		list = curl_slist_append(l, h);
	else
		list = l;
	free(h);
	return list;
}

/* ---- the model side ---- */

static void notify(struct k8s_watcher *w)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is huge: a wakeup is pending anyway. */
	if (write(w->notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		pr_warn("kubernetes: cannot wake the agent: %s", strerror(errno));
}

/* model_refused_fn: count, and log within the rate limit. Under *lock. */
static void on_refused(void *ctx, const struct model_slice *s, const struct model_endpoint *ep,
		       const char *why)
{
	struct k8s_watcher *w = ctx;
	uint64_t now = now_ns();
	char a[ADDR_STR_MAX];

	atomic_fetch_add(&w->st.refused_endpoints, 1);
	if (!w->refused_window_ns ||
	    now - w->refused_window_ns >= (uint64_t)K8S_REFUSED_LOG_WINDOW_MS * 1000000ull) {
		w->refused_window_ns = now;
		w->refused_logged = 0;
	}
	if (w->refused_logged >= K8S_REFUSED_LOG_BURST) {
		w->refused_unlogged++;
		return;
	}
	w->refused_logged++;
	if (w->refused_unlogged)
		pr_warn("kubernetes: EndpointSlice %s/%s: endpoint %s refused: %s address "
			"(and %" PRIu64 " more refused since the last such line)",
			s->ns, s->name, addr_ntop(&ep->addr, a, sizeof(a)), why,
			w->refused_unlogged);
	else
		pr_warn("kubernetes: EndpointSlice %s/%s: endpoint %s refused: %s address", s->ns,
			s->name, addr_ntop(&ep->addr, a, sizeof(a)), why);
	w->refused_unlogged = 0;
}

/*
 * Hand a sink's object over (obj: the undecoded object of an event or a
 * list item); caller holds the lock. An undecodable one is logged and
 * counted, and returns -EINVAL.
 */
static int sink_apply_locked(struct k8s_kind_ctx *k, enum k8s_event_type type, json_object *obj,
			     const char *where)
{
	char err[256] = "";
	int ret;

	ret = type == K8S_EV_DELETED ? k->sink->del(k->sink->ctx, obj, err, sizeof(err))
				     : k->sink->put(k->sink->ctx, obj, err, sizeof(err));
	if (ret == -EINVAL) {
		atomic_fetch_add(&k->w->st.bad_objects, 1);
		pr_warn("kubernetes: %s %s: object ignored: %s", where, k->what, err);
	}
	return ret;
}

/* Apply one decoded ADDED/MODIFIED/DELETED event; caller holds the lock. */
static int apply_locked(struct k8s_kind_ctx *k, struct k8s_event *ev)
{
	struct k8s_watcher *w = k->w;
	int ret;

	if (k->kind == K8S_KIND_SERVICE) {
		if (ev->type == K8S_EV_DELETED) {
			model_del_service(w->m, ev->svc.ns, ev->svc.name);
			return 0;
		}
		if (ev->svc.note[0])
			pr_warn("kubernetes: service %s/%s: %s", ev->svc.ns, ev->svc.name,
				ev->svc.note);
		ret = model_put_service(w->m, &ev->svc);
		if (ret == -ENOSPC)
			pr_warn("kubernetes: service %s/%s: more than %d services; ignored",
				ev->svc.ns, ev->svc.name, SHOAL_MAX_SERVICES);
		return ret == -ENOSPC ? 0 : ret;
	}
	if (ev->type == K8S_EV_DELETED) {
		model_del_slice(w->m, ev->slice.ns, ev->slice.name);
		return 0;
	}
	{
		const struct shoal_addr own[] = {w->opts.node_v4, w->opts.node_v6};

		model_slice_refuse(&ev->slice, own, 2, on_refused, w);
	}
	return model_put_slice(w->m, &ev->slice);
}

/* k8s_stream_cb for a watch: one event. */
static int on_event(void *ctx, json_object *obj)
{
	struct k8s_kind_ctx *k = ctx;
	struct k8s_watcher *w = k->w;
	struct k8s_event ev;
	char err[256];
	int ret = k8s_decode_event(obj, k->kind, &ev, err, sizeof(err));

	if (!ret && k->sink && ev.type <= K8S_EV_DELETED) {
		pthread_mutex_lock(w->lock);
		ret = sink_apply_locked(k, ev.type, json_object_object_get(obj, "object"), "watch");
		pthread_mutex_unlock(w->lock);
		json_object_put(obj);
		if (ret < 0) {
			k->relist = true; /* a relist drops what was skipped */
			return ret == -EINVAL ? -ECANCELED : ret;
		}
		atomic_fetch_add(&w->st.events, 1);
		if (!ret) /* > 0: applied, and nothing that matters changed */
			notify(w);
		if (ev.rv[0])
			memcpy(k->rv, ev.rv, sizeof(k->rv));
		return 0;
	}
	json_object_put(obj);
	if (ret) {
		/* Skipping it would leave the model wrong; a relist drops it. */
		atomic_fetch_add(&w->st.bad_objects, 1);
		pr_warn("kubernetes: watch %s: undecodable event (%s); listing again", k->what,
			err);
		k->relist = true;
		return -ECANCELED;
	}
	switch (ev.type) {
	case K8S_EV_ERROR:
		if (ev.status.code == 410) {
			pr_info("kubernetes: watch %s: %s; listing again", k->what,
				ev.status.message);
			atomic_fetch_add(&w->st.relists_410, 1);
			k->relist = true;
		} else {
			pr_warn("kubernetes: watch %s: error %d %s: %s", k->what, ev.status.code,
				ev.status.reason, ev.status.message);
		}
		return -ECANCELED;
	case K8S_EV_BOOKMARK:
		break;
	default:
		pthread_mutex_lock(w->lock);
		ret = apply_locked(k, &ev);
		pthread_mutex_unlock(w->lock);
		k8s_event_clear(&ev);
		if (ret)
			return ret;
		atomic_fetch_add(&w->st.events, 1);
		notify(w);
		break;
	}
	if (ev.rv[0])
		memcpy(k->rv, ev.rv, sizeof(k->rv));
	return 0;
}

/* k8s_stream_cb for a list: one page. */
static int on_list_page(void *ctx, json_object *obj)
{
	struct k8s_kind_ctx *k = ctx;
	struct k8s_watcher *w = k->w;
	char rv[K8S_MAX_RV];
	json_object *items;
	int n, ret = 0;

	if (k8s_decode_list(obj, rv, sizeof(rv), k->cont, sizeof(k->cont), &items)) {
		json_object_put(obj);
		pr_warn("kubernetes: list %s: the reply is not a list", k->what);
		return -EBADMSG;
	}
	n = items ? (int)json_object_array_length(items) : 0;
	pthread_mutex_lock(w->lock);
	for (int i = 0; i < n && !ret; i++) {
		json_object *item = json_object_array_get_idx(items, i);
		struct k8s_event ev = {.kind = k->kind, .type = K8S_EV_ADDED};
		char err[256];
		int dret;

		if (k->sink) {
			/* Undecodable items are left out; the sink's end drops older copies. */
			ret = sink_apply_locked(k, K8S_EV_ADDED, item, "list");
			if (ret == -EINVAL || ret > 0)
				ret = 0;
			continue;
		}
		if (k->kind == K8S_KIND_SERVICE)
			dret = k8s_decode_service(item, &ev.svc, err, sizeof(err));
		else
			dret = k8s_decode_slice(item, &ev.slice, err, sizeof(err));
		if (dret) {
			/* Left out of the model: the sweep drops an older copy. */
			atomic_fetch_add(&w->st.bad_objects, 1);
			pr_warn("kubernetes: list %s: item %d ignored: %s", k->what, i, err);
			continue;
		}
		ret = apply_locked(k, &ev);
		k8s_event_clear(&ev);
	}
	pthread_mutex_unlock(w->lock);
	json_object_put(obj);
	memcpy(k->rv, rv, sizeof(rv));
	return ret;
}

/* ---- HTTP ---- */

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct k8s_kind_ctx *k = ud;

	(void)buf;
	/* The blank line ends the headers: the watch is established. */
	if (size * n <= 2) {
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &k->http_code);
		if (k->http_code == 200)
			atomic_store(&k->connected, true);
	}
	return size * n;
}

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
	struct k8s_kind_ctx *k = ud;
	size_t len = size * n;
	int ret;

	if (!k->http_code)
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &k->http_code);
	if (k->http_code != 200) {
		/* Keep the start of a Status body for the log. */
		size_t room = sizeof(k->body) - 1 - k->body_len;

		if (len < room)
			room = len;
		memcpy(k->body + k->body_len, buf, room);
		k->body_len += room;
		k->body[k->body_len] = '\0';
		return len;
	}
	ret = k8s_stream_feed(&k->stream, buf, len, k->watching ? on_event : on_list_page, k);
	if (ret) {
		k->cb_err = ret;
		return 0; /* aborts the transfer */
	}
	return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct k8s_kind_ctx *k = ud;

	(void)a, (void)b, (void)c, (void)d;
	return atomic_load(&k->w->stop_flag) ? 1 : 0;
}

/* Log a non-200 reply with its Status message, if it carried one. */
static void log_http_error(struct k8s_kind_ctx *k, const char *verb)
{
	json_object *obj = json_tokener_parse(k->body);
	struct k8s_status st;

	if (obj && !k8s_decode_status(obj, &st))
		pr_warn("kubernetes: %s %s: HTTP %ld %s: %s", verb, k->what, k->http_code,
			st.reason, st.message);
	else
		pr_warn("kubernetes: %s %s: HTTP %ld", verb, k->what, k->http_code);
	json_object_put(obj);
}

/*
 * One request to url, its body fed through the stream (list pages or
 * watch events). Returns a k8s_outcome.
 */
static int k8s_request(struct k8s_kind_ctx *k, const char *url, bool watch, long timeout_s,
		       bool force_token)
{
	struct k8s_watcher *w = k->w;
	const char *verb = watch ? "watch" : "list";
	struct curl_slist *hdrs = auth_headers(w, force_token);
	char curl_err[CURL_ERROR_SIZE] = "";
	CURLcode res;

	k->watching = watch;
	k->http_code = 0;
	k->relist = false;
	k->cb_err = 0;
	k->body_len = 0;
	k->body[0] = '\0';
	k8s_stream_fini(&k->stream);
	if (k8s_stream_init(&k->stream, watch ? K8S_MAX_EVENT_BYTES : K8S_MAX_LIST_BYTES)) {
		curl_slist_free_all(hdrs);
		return K8S_FAILED;
	}
	curl_easy_reset(k->curl);
	curl_easy_setopt(k->curl, CURLOPT_URL, url);
	curl_easy_setopt(k->curl, CURLOPT_HTTPHEADER, hdrs);
	if (w->opts.ca_file[0])
		curl_easy_setopt(k->curl, CURLOPT_CAINFO, w->opts.ca_file);
	/* The config's proxy or none: "" makes libcurl skip the environment's
	 * proxy variables, and NOPROXY "" its NO_PROXY (k8s_opts.proxy_url). */
	curl_easy_setopt(k->curl, CURLOPT_PROXY, w->opts.proxy_url);
	curl_easy_setopt(k->curl, CURLOPT_NOPROXY, "");
	curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(k->curl, CURLOPT_SSL_VERIFYHOST, 2L);
	/* HTTP/1.1: one stream per connection, and the framing the tests check. */
	curl_easy_setopt(k->curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(k->curl, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
	curl_easy_setopt(k->curl, CURLOPT_CONNECTTIMEOUT, (long)K8S_CONNECT_TIMEOUT_S);
	curl_easy_setopt(k->curl, CURLOPT_TIMEOUT, timeout_s);
	curl_easy_setopt(k->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(k->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(k->curl, CURLOPT_HEADERDATA, k);
	curl_easy_setopt(k->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k->curl, CURLOPT_WRITEDATA, k);
	curl_easy_setopt(k->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(k->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(k->curl, CURLOPT_XFERINFODATA, k);
	curl_easy_setopt(k->curl, CURLOPT_ERRORBUFFER, curl_err);
	res = curl_easy_perform(k->curl);
	curl_slist_free_all(hdrs);
	if (!k->http_code)
		curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &k->http_code);

	if (atomic_load(&w->stop_flag))
		return K8S_STOPPED;
	if (k->relist)
		return K8S_RELIST;
	if (k->http_code && k->http_code != 200) {
		atomic_store(&k->connected, false);
		atomic_fetch_add(&w->st.errors, 1);
		log_http_error(k, verb);
		if (k->http_code == 401) {
			/* The kubelet may have rotated it: read it again now. */
			atomic_fetch_add(&w->st.unauthorized, 1);
			pthread_mutex_lock(&w->mu);
			token_refresh(w, true);
			pthread_mutex_unlock(&w->mu);
		}
		if (k->http_code == 410) {
			atomic_fetch_add(&w->st.relists_410, 1);
			return K8S_RELIST;
		}
		return K8S_FAILED;
	}
	if (k->cb_err) {
		atomic_store(&k->connected, false);
		atomic_fetch_add(&w->st.errors, 1);
		pr_warn("kubernetes: %s %s: %s; starting over", verb, k->what,
			k->cb_err == -EMSGSIZE	? "an object exceeds the size limit"
			: k->cb_err == -EBADMSG ? "malformed JSON"
						: strerror(-k->cb_err));
		return watch ? K8S_RELIST : K8S_FAILED;
	}
	/* A watch that hit the client's own deadline just ends: renew it. */
	if (res != CURLE_OK && !(watch && res == CURLE_OPERATION_TIMEDOUT)) {
		atomic_store(&k->connected, false);
		atomic_fetch_add(&w->st.errors, 1);
		pr_warn("kubernetes: %s %s: %s", verb, k->what,
			curl_err[0] ? curl_err : curl_easy_strerror(res));
		return K8S_FAILED;
	}
	/* A list page must have been decoded whole. */
	if (!watch && k->stream.in_value) {
		atomic_fetch_add(&w->st.errors, 1);
		pr_warn("kubernetes: list %s: the reply ended early", k->what);
		return K8S_FAILED;
	}
	return K8S_DONE;
}

/* List every object of the kind, page by page, replacing it in the model. */
static int k8s_list(struct k8s_kind_ctx *k)
{
	struct k8s_watcher *w = k->w;
	char url[K8S_MAX_REQUEST_URL];
	bool first = true;
	size_t gone;
	int ret;

	pthread_mutex_lock(w->lock);
	if (k->sink)
		k->sink->begin(k->sink->ctx);
	else
		model_mark(w->m, k->kind == K8S_KIND_ENDPOINTSLICE);
	pthread_mutex_unlock(w->lock);
	k->cont[0] = '\0';
	do {
		char *cont = NULL;

		if (!first) {
			cont = curl_easy_escape(k->curl, k->cont, 0);
			if (!cont)
				return K8S_FAILED;
		}
		snprintf(url, sizeof(url), "%s%s?limit=%d%s%s%s%s", w->opts.api_server, k->path,
			 K8S_LIST_PAGE_LIMIT, k->selector[0] ? "&" : "", k->selector,
			 cont ? "&continue=" : "", cont ? cont : "");
		curl_free(cont);
		first = false;
		ret = k8s_request(k, url, false, K8S_LIST_TIMEOUT_S, false);
		if (ret != K8S_DONE)
			return ret;
	} while (k->cont[0]);

	pthread_mutex_lock(w->lock);
	if (k->sink) {
		k->sink->end(k->sink->ctx);
		gone = 0; /* the sink logs its own */
	} else {
		gone = model_sweep(w->m, k->kind == K8S_KIND_ENDPOINTSLICE);
	}
	pthread_mutex_unlock(w->lock);
	/* Before the wakeup: whoever reads the model then sees it synced. */
	atomic_store(&k->listed, true);
	atomic_store(&k->connected, true);
	atomic_fetch_add(&w->st.lists, 1);
	pr_info("kubernetes: listed %s at resourceVersion %s (%zu removed since the last list)",
		k->what, k->rv, gone);
	notify(w);
	return K8S_DONE;
}

static int k8s_watch(struct k8s_kind_ctx *k)
{
	struct k8s_watcher *w = k->w;
	uint32_t t = w->opts.watch_timeout_s ? w->opts.watch_timeout_s : K8S_WATCH_TIMEOUT_S;
	char url[K8S_MAX_REQUEST_URL];

	snprintf(url, sizeof(url),
		 "%s%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u%s%s",
		 w->opts.api_server, k->path, k->rv, t, k->selector[0] ? "&" : "", k->selector);
	atomic_fetch_add(&w->st.watches, 1);
	return k8s_request(k, url, true, (long)t + K8S_WATCH_SLACK_S, false);
}

/* Sleep up to ms unless k8s_stop is called. Returns true when stopping. */
static bool k8s_sleep(struct k8s_watcher *w, uint32_t ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->stopping && pthread_cond_timedwait(&w->cv, &w->mu, &ts) != ETIMEDOUT)
		;
	stop = w->stopping;
	pthread_mutex_unlock(&w->mu);
	return stop;
}

/* Full jitter: uniform in [0, ceiling]; the ceiling doubles up to the max. */
static bool k8s_backoff(struct k8s_kind_ctx *k)
{
	struct k8s_watcher *w = k->w;
	uint32_t lo = w->opts.backoff_min_ms ? w->opts.backoff_min_ms : K8S_BACKOFF_MIN_MS;
	uint32_t hi = w->opts.backoff_max_ms ? w->opts.backoff_max_ms : K8S_BACKOFF_MAX_MS;
	uint32_t sleep_ms;

	k->backoff_ms = k->backoff_ms ? k->backoff_ms * 2 : lo;
	if (k->backoff_ms > hi)
		k->backoff_ms = hi;
	sleep_ms = (uint32_t)((uint64_t)rand_r(&k->seed) * k->backoff_ms / RAND_MAX);
	pr_debug("kubernetes: %s: retrying in %u ms", k->what, sleep_ms);
	return k8s_sleep(w, sleep_ms);
}

static void *k8s_thread(void *arg)
{
	struct k8s_kind_ctx *k = arg;

	while (!atomic_load(&k->w->stop_flag)) {
		int ret;

		if (!atomic_load(&k->listed)) {
			ret = k8s_list(k);
			if (ret == K8S_DONE)
				k->backoff_ms = 0;
		} else {
			ret = k8s_watch(k);
			if (ret == K8S_DONE || ret == K8S_RELIST)
				k->backoff_ms = 0;
		}
		if (ret == K8S_STOPPED)
			break;
		if (ret == K8S_RELIST) {
			atomic_store(&k->listed, false);
			continue;
		}
		if (ret == K8S_FAILED && k8s_backoff(k))
			break;
	}
	return NULL;
}

void k8s_stop(struct k8s_watcher *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	atomic_store(&w->stop_flag, true);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->n_kinds; i++) {
		struct k8s_kind_ctx *k = &w->kinds[i];

		if (k->started)
			pthread_join(k->thread, NULL);
		if (k->curl)
			curl_easy_cleanup(k->curl);
		k8s_stream_fini(&k->stream);
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

/*
 * The common start: a watcher for n collections, the model's (sink NULL
 * in cols: kinds[i] picks the decoder) or a sink's. Returns 0 and *out
 * or -errno after logging.
 */
static int k8s_start_n(const struct k8s_opts *opts, const struct k8s_collection *cols,
		       const enum k8s_kind *kinds, int n, struct model *m, pthread_mutex_t *lock,
		       int notify_fd, struct k8s_watcher **out)
{
	struct k8s_watcher *w;
	pthread_condattr_t ca;
	sigset_t all, old;
	char err[512];
	int ret = 0;

	if (n < 1 || n > K8S_MAX_COLLECTIONS)
		return -EINVAL;
	ret = curl_api_load("the kubernetes discovery source", err, sizeof(err));
	if (ret) {
		pr_warn("kubernetes: %s", err);
		return ret;
	}
	if (strncmp(opts->api_server, "https://", 8)) {
		pr_warn("kubernetes: api_server '%s' is not an https:// URL", opts->api_server);
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->opts = *opts;
	w->m = m;
	w->lock = lock;
	w->notify_fd = notify_fd;
	w->n_kinds = n;
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&w->mu);
	token_refresh(w, true);
	pthread_mutex_unlock(&w->mu);

	/* Threads with every signal blocked: signals belong to the main loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < n && !ret; i++) {
		struct k8s_kind_ctx *k = &w->kinds[i];
		char name[16];

		k->w = w;
		k->kind = kinds[i];
		k->what = cols[i].what;
		k->path = cols[i].path;
		snprintf(k->selector, sizeof(k->selector), "%s", cols[i].selector);
		if (cols[i].sink.put) {
			k->sink_copy = cols[i].sink;
			k->sink = &k->sink_copy;
		}
		k->seed = (unsigned int)(now_ns() ^ (uint64_t)getpid() ^ (uint64_t)i);
		k->curl = curl_easy_init();
		if (!k->curl || k8s_stream_init(&k->stream, K8S_MAX_EVENT_BYTES)) {
			ret = -ENOMEM;
			break;
		}
		ret = -pthread_create(&k->thread, NULL, k8s_thread, k);
		if (ret) {
			pr_warn("kubernetes: cannot start the %s watcher: %s", k->what,
				strerror(-ret));
			break;
		}
		k->started = true;
		/* 15 characters at most (the kernel's limit). */
		snprintf(name, sizeof(name), "shoal-k8s/%.5s",
			 k->kind == K8S_KIND_SERVICE	     ? "svc"
			 : k->kind == K8S_KIND_ENDPOINTSLICE ? "eps"
							     : k->what);
		pthread_setname_np(k->thread, name);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		k8s_stop(w);
		return ret;
	}
	*out = w;
	return 0;
}

int k8s_start(const struct k8s_opts *opts, struct model *m, pthread_mutex_t *lock, int notify_fd,
	      struct k8s_watcher **out)
{
	static const struct k8s_collection cols[2] = {
	    {.what = "services", .path = "/api/v1/services"},
	    {.what = "endpointslices", .path = "/apis/discovery.k8s.io/v1/endpointslices"},
	};
	static const enum k8s_kind kinds[2] = {K8S_KIND_SERVICE, K8S_KIND_ENDPOINTSLICE};
	int ret = k8s_start_n(opts, cols, kinds, 2, m, lock, notify_fd, out);

	if (!ret)
		pr_info("kubernetes: watching services and endpointslices at %s", opts->api_server);
	return ret;
}

int k8s_start_collections(const struct k8s_opts *opts, const struct k8s_collection *cols, int n,
			  pthread_mutex_t *lock, int notify_fd, struct k8s_watcher **out)
{
	enum k8s_kind kinds[K8S_MAX_COLLECTIONS] = {K8S_KIND_RAW};
	int ret;

	if (n < 1 || n > K8S_MAX_COLLECTIONS)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (!cols[i].sink.put || !cols[i].sink.del || !cols[i].sink.begin ||
		    !cols[i].sink.end)
			return -EINVAL;
		kinds[i] = K8S_KIND_RAW;
	}
	ret = k8s_start_n(opts, cols, kinds, n, NULL, lock, notify_fd, out);
	if (!ret)
		for (int i = 0; i < n; i++)
			pr_info("kubernetes: watching %s%s%s at %s", cols[i].what,
				cols[i].selector[0] ? " with " : "", cols[i].selector,
				opts->api_server);
	return ret;
}

bool k8s_synced(struct k8s_watcher *w)
{
	if (!w)
		return false;
	for (int i = 0; i < w->n_kinds; i++)
		if (!atomic_load(&w->kinds[i].listed) || !atomic_load(&w->kinds[i].connected))
			return false;
	return true;
}

void k8s_get_stats(struct k8s_watcher *w, struct k8s_stats *out)
{
	out->lists = atomic_load(&w->st.lists);
	out->watches = atomic_load(&w->st.watches);
	out->events = atomic_load(&w->st.events);
	out->relists_410 = atomic_load(&w->st.relists_410);
	out->errors = atomic_load(&w->st.errors);
	out->unauthorized = atomic_load(&w->st.unauthorized);
	out->bad_objects = atomic_load(&w->st.bad_objects);
	out->refused_endpoints = atomic_load(&w->st.refused_endpoints);
}

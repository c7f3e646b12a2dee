// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * What both HTTP/2 kinds share (h2_int.h): header fields and body bytes
 * of a stream, the nghttp2 options and SETTINGS of proxy.http2, writing a
 * session's framed bytes, and a request's outcome.
 */
#include "proxy/h2_int.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proxy/conn_io.h"
#include "proxy/h2_grpc.h"
#include "proxy/observe.h"
#include "proxy/proxy_int.h"
#include "proxy/worker.h"
#include "recording/callers.h"
#include "recording/http_metrics.h"

/* ---- memory: proxy.max_buffer_memory_mib -------------------------------- */

/*
 * Every byte nghttp2 allocates for a session, and every byte of a
 * stream's fields and body buffers, is charged to the proxy's buffer
 * budget (limits.h), as HTTP/1's buffers are. The proxy refuses work at
 * the budget (h2_mem_out: new streams get REFUSED_STREAM, a stream's
 * buffers stop growing); nghttp2's own allocations may pass it by
 * H2_MEM_SLACK, since they come mid-frame (the HPACK state, the RST and
 * GOAWAY frames of the refusals themselves) and failing them ends the
 * session. Past that nghttp2 gets NULL, and the session ends with
 * GOAWAY ENHANCE_YOUR_CALM.
 *
 * Charges go to the node-wide counter in chunks of H2_MEM_CHUNK, kept
 * as the worker's credit (its sessions are its thread's only): nghttp2
 * allocates a few dozen times per request, and an atomic on a line every worker
 * shares for each would cost more than the work. So the budget may
 * count up to 2 * H2_MEM_CHUNK a worker more than its sessions hold.
 */
#define H2_MEM_CHUNK (64 * 1024)
#define H2_MEM_SLACK (2u << 20)

/*
 * What each allocation carries before its bytes: the size asked for, its
 * size class and the worker it is charged to (NULL: not charged). 16
 * bytes, so that the bytes keep malloc's alignment.
 */
struct h2_mem_hdr {
	uint32_t size;
	uint32_t cls; /* H2_MEM_LARGE: malloc'd to size, never cached */
	struct worker *w;
};
_Static_assert(sizeof(struct h2_mem_hdr) == 16, "an allocation's bytes keep malloc's alignment");

/*
 * Size classes: H2_MEM_CLASSES capacities, 32 bytes doubled up to 8 KiB.
 * A worker keeps the blocks its sessions and streams freed, per class,
 * for the next ones (struct h2_mem_cache): nghttp2 allocates a few dozen
 * times per request (streams, outbound items, header copies, HPACK
 * buffers) and we a few more (the stream, its fields and body bytes),
 * and glibc's malloc and free were a quarter of the proxy's CPU under
 * many connections (docs/benchmarks.md, finding 7): its per-thread cache
 * holds 7 blocks a size, fewer than a hundred streams in flight free.
 * Charged is the block's capacity while it is in use; a cached block is
 * charged to no one, and a worker caches at most H2_MEM_CACHE_BYTES
 * (past that, freed). Under ASan nothing is cached, so that a use after
 * free is still caught.
 */
#define H2_MEM_MIN 32u
#define H2_MEM_CLASSES 9
#define H2_MEM_LARGE UINT32_MAX
#if defined(__SANITIZE_ADDRESS__)
#define H2_MEM_CACHE_BYTES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H2_MEM_CACHE_BYTES 0
#endif
#endif
#ifndef H2_MEM_CACHE_BYTES
#define H2_MEM_CACHE_BYTES (1u << 20)
#endif

struct h2_mem_cache {
	struct h2_mem_hdr *free[H2_MEM_CLASSES]; /* linked through their first bytes */
	size_t bytes;				 /* cached, headers included */
};

/* Charge n bytes of w's (over: nghttp2's, allowed H2_MEM_SLACK past the budget). */
static bool h2_mem_take(struct worker *w, size_t n, bool over)
{
	struct limits_mem *m = &w->p->mem;
	size_t need, chunk;

	if (w->h2_mem_credit >= n) {
		w->h2_mem_credit -= n;
		return true;
	}
	need = n - w->h2_mem_credit;
	chunk = need < H2_MEM_CHUNK ? H2_MEM_CHUNK : need;
	if (!limits_mem_charge_over(m, chunk, over ? H2_MEM_SLACK : 0)) {
		if (chunk == need || !limits_mem_charge_over(m, need, over ? H2_MEM_SLACK : 0))
			return false;
		chunk = need;
	}
	WORKER_STAT_ADD(w, buffer_memory_bytes, chunk);
	w->h2_mem_credit += chunk - n;
	return true;
}

static void h2_mem_give(struct worker *w, size_t n)
{
	w->h2_mem_credit += n;
	if (w->h2_mem_credit > 2 * H2_MEM_CHUNK) {
		size_t back = w->h2_mem_credit - H2_MEM_CHUNK;

		limits_mem_uncharge(&w->p->mem, back);
		__atomic_fetch_sub(&w->stats.buffer_memory_bytes, back, __ATOMIC_RELAXED);
		w->h2_mem_credit = H2_MEM_CHUNK;
	}
}

/* The class of n bytes, or H2_MEM_LARGE. */
static uint32_t h2_mem_class(size_t n)
{
	uint32_t cls = 0;
	size_t cap = H2_MEM_MIN;

	while (cap < n) {
		if (++cls == H2_MEM_CLASSES)
			return H2_MEM_LARGE;
		cap *= 2;
	}
	return cls;
}

/* The bytes a block holds (and is charged for). */
static size_t h2_mem_cap(const struct h2_mem_hdr *h)
{
	return h->cls == H2_MEM_LARGE ? h->size : (size_t)H2_MEM_MIN << h->cls;
}

/* A block for n bytes charged to w (NULL: not charged); NULL past the budget. */
static struct h2_mem_hdr *h2_mem_block(struct worker *w, size_t n, bool over)
{
	uint32_t cls = h2_mem_class(n);
	size_t cap = cls == H2_MEM_LARGE ? n : (size_t)H2_MEM_MIN << cls;
	struct h2_mem_cache *c = w ? w->h2_cache : NULL;
	struct h2_mem_hdr *h;

	if (n > UINT32_MAX)
		return NULL;
	if (w && !h2_mem_take(w, cap, over))
		return NULL;
	if (c && cls != H2_MEM_LARGE && c->free[cls]) {
		h = c->free[cls];
		memcpy(&c->free[cls], h + 1, sizeof(h));
		c->bytes -= sizeof(*h) + cap;
	} else {
		h = malloc(sizeof(*h) + cap);
		if (!h) {
			if (w)
				h2_mem_give(w, cap);
			return NULL;
		}
	}
	h->size = (uint32_t)n;
	h->cls = cls;
	h->w = w;
	return h;
}

/* Give block h back: its charge to its worker, itself to the worker's cache or to free. */
static void h2_mem_unblock(struct h2_mem_hdr *h)
{
	struct worker *w = h->w;
	struct h2_mem_cache *c = w ? w->h2_cache : NULL;
	size_t cap = h2_mem_cap(h);

	if (w)
		h2_mem_give(w, cap);
	if (c && h->cls != H2_MEM_LARGE && c->bytes + sizeof(*h) + cap <= H2_MEM_CACHE_BYTES) {
		memcpy(h + 1, &c->free[h->cls], sizeof(h));
		c->free[h->cls] = h;
		c->bytes += sizeof(*h) + cap;
		return;
	}
	free(h);
}

/*
 * realloc(p, n) charged to w (NULL: not charged; an existing block stays
 * with its own worker): within its block's capacity in place, else a
 * new block, the bytes copied. NULL, p untouched, when the budget says no.
 */
static void *h2_mem_resize(struct worker *w, void *p, size_t n, bool over)
{
	struct h2_mem_hdr *h = p ? (struct h2_mem_hdr *)p - 1 : NULL, *nh;

	if (h && n <= h2_mem_cap(h)) {
		h->size = (uint32_t)n;
		return p;
	}
	nh = h2_mem_block(h ? h->w : w, n, over);
	if (!nh)
		return NULL;
	if (h) {
		memcpy(nh + 1, p, h->size < n ? h->size : n);
		h2_mem_unblock(h);
	}
	return nh + 1;
}

static void h2_mem_release(void *p)
{
	if (p)
		h2_mem_unblock((struct h2_mem_hdr *)p - 1);
}

/*
 * The worker whose sessions run on this thread, for the streams' buffers
 * (h2_bytes, h2_fields take no worker): bound when a session starts.
 * Each allocation remembers the worker it was charged to, so that it is
 * given back to that one, whichever is bound then.
 */
static __thread struct worker *h2_mem_w;

void h2_mem_bind(struct worker *w)
{
	h2_mem_w = w;
	/* Not charged: a few pointers; without it nothing is cached. */
	if (!w->h2_cache && H2_MEM_CACHE_BYTES)
		w->h2_cache = calloc(1, sizeof(*w->h2_cache));
}

void h2_mem_fini(struct worker *w)
{
	struct h2_mem_cache *c = w->h2_cache;

	if (!c)
		return;
	for (int i = 0; i < H2_MEM_CLASSES; i++) {
		while (c->free[i]) {
			struct h2_mem_hdr *h = c->free[i];

			memcpy(&c->free[i], h + 1, sizeof(h));
			free(h);
		}
	}
	free(c);
	w->h2_cache = NULL;
}

void *h2_mem_zalloc(struct worker *w, size_t n)
{
	void *p = h2_mem_resize(w, NULL, n, false);

	if (p)
		memset(p, 0, n);
	return p;
}

void h2_mem_free(void *p)
{
	h2_mem_release(p);
}

bool h2_mem_out(struct worker *w)
{
	return !limits_mem_room(&w->p->mem, 1);
}

static void *h2_ng_malloc(size_t n, void *ud)
{
	return h2_mem_resize(ud, NULL, n, true);
}

static void h2_ng_free(void *p, void *ud)
{
	(void)ud;
	h2_mem_release(p);
}

static void *h2_ng_calloc(size_t k, size_t n, void *ud)
{
	void *p;

	if (n && k > SIZE_MAX / n)
		return NULL;
	p = h2_mem_resize(ud, NULL, k * n, true);
	if (p)
		memset(p, 0, k * n);
	return p;
}

static void *h2_ng_realloc(void *p, size_t n, void *ud)
{
	if (!n) {
		h2_mem_release(p);
		return NULL;
	}
	return h2_mem_resize(ud, p, n, true);
}

nghttp2_mem h2_mem(struct worker *w)
{
	return (nghttp2_mem){
	    .mem_user_data = w,
	    .malloc = h2_ng_malloc,
	    .free = h2_ng_free,
	    .calloc = h2_ng_calloc,
	    .realloc = h2_ng_realloc,
	};
}

/* ---- small pieces ------------------------------------------------------- */

uint64_t h2_turn_ns(struct worker *w)
{
	uint64_t now = atomic_load_explicit(&w->busy_since_ns, memory_order_relaxed);

	return now ? now : timer_now_ns();
}

void h2_stream_waits(struct worker *w, struct h2_stream *st)
{
	uint64_t stall =
	    (uint64_t)worker_conn_config(w, st->d->c)->http2.stall_timeout_ms * 1000000;

	if (!stall || st->stall_ns || st->to_down.off == st->to_down.len)
		return;
	/* The turn's start: a clock read per DATA frame is not worth a 60 s timer's ms. */
	st->stall_ns = h2_turn_ns(w);
	h2_down_by(st->d, st->stall_ns + stall);
}

/*
 * The first allocation of a stream's bytes, doubled as they grow: most
 * bodies are small (a gRPC reply, a JSON answer), and a first 16 KiB
 * per stream, as before, went to glibc's large bins: malloc and free
 * were a quarter of the proxy's CPU under h2load (docs/benchmarks.md).
 */
#define H2_BYTES_MIN 256

int h2_bytes_put(struct h2_bytes *b, const uint8_t *p, size_t n)
{
	if (b->off && b->off == b->len && !b->keep)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : H2_BYTES_MIN;
		uint8_t *d;

		while (cap < b->len + n)
			cap *= 2;
		d = h2_mem_resize(h2_mem_w, b->data, cap, false);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void h2_bytes_free(struct h2_bytes *b)
{
	h2_mem_release(b->data);
	memset(b, 0, sizeof(*b));
}

/*
 * The fields a head starts with room for: a request or response head
 * has fewer than 8 in most traffic (h2load's 7, nginx's 5), and the
 * first block (nv and rc, one allocation) then fits 512 bytes.
 */
#define H2_FIELDS_MIN 8

/*
 * Room for one more field in f: 0, -E2BIG past H2_MAX_FIELDS, -ENOMEM.
 * One block holds both arrays: cap nghttp2_nv, then 2 * cap references.
 */
static int h2_fields_room(struct h2_fields *f)
{
	if (f->n == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : H2_FIELDS_MIN;
		nghttp2_nv *nv;
		nghttp2_rcbuf **rc;

		if (cap > H2_MAX_FIELDS)
			return -E2BIG;
		nv = h2_mem_resize(h2_mem_w, NULL, cap * (sizeof(*nv) + 2 * sizeof(*rc)), false);
		if (!nv)
			return -ENOMEM;
		rc = (nghttp2_rcbuf **)(nv + cap);
		if (f->n) {
			memcpy(nv, f->nv, f->n * sizeof(*nv));
			memcpy(rc, f->rc, 2 * f->n * sizeof(*rc));
		}
		h2_mem_release(f->nv);
		f->nv = nv;
		f->rc = rc;
		f->cap = cap;
	}
	return 0;
}

int h2_fields_add(struct h2_fields *f, nghttp2_rcbuf *name, nghttp2_rcbuf *value)
{
	nghttp2_vec nm = nghttp2_rcbuf_get_buf(name), vl = nghttp2_rcbuf_get_buf(value);
	int err = h2_fields_room(f);

	if (err)
		return err;
	nghttp2_rcbuf_incref(name);
	nghttp2_rcbuf_incref(value);
	f->rc[2 * f->n] = name;
	f->rc[2 * f->n + 1] = value;
	f->nv[f->n] = (nghttp2_nv){
	    .name = nm.base,
	    .namelen = nm.len,
	    .value = vl.base,
	    .valuelen = vl.len,
	    /* The names are in nghttp2's buffers until we let go of them. */
	    .flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE,
	};
	f->n++;
	f->bytes += nm.len + vl.len + 32;
	return 0;
}

int h2_fields_add_own(struct h2_fields *f, const char *name, size_t name_len, const char *value,
		      size_t value_len)
{
	int err = h2_fields_room(f);

	if (err)
		return err;
	f->rc[2 * f->n] = f->rc[2 * f->n + 1] = NULL;
	/* No NO_COPY flag: nghttp2 copies them when the request is submitted. */
	f->nv[f->n] = (nghttp2_nv){
	    .name = (uint8_t *)name,
	    .namelen = name_len,
	    .value = (uint8_t *)value,
	    .valuelen = value_len,
	    .flags = NGHTTP2_NV_FLAG_NONE,
	};
	f->n++;
	f->bytes += name_len + value_len + 32;
	return 0;
}

/*
 * The name slot of a copied field (h2_fields_add_copy): a mark, never an
 * rcbuf, so that it is told apart from a referenced field (rcbufs) and an
 * owned one (NULL, h2_fields_add_own).
 */
static char h2_copied_mark;
#define H2_FIELD_COPIED ((nghttp2_rcbuf *)(void *)&h2_copied_mark)

/* Let go of field i of f: its references, or its copy. */
static void h2_field_release(struct h2_fields *f, uint32_t i)
{
	if (f->rc[2 * i] == H2_FIELD_COPIED) {
		h2_mem_release(f->nv[i].name);
		return;
	}
	if (f->rc[2 * i])
		nghttp2_rcbuf_decref(f->rc[2 * i]);
	if (f->rc[2 * i + 1])
		nghttp2_rcbuf_decref(f->rc[2 * i + 1]);
}

void h2_fields_drop(struct h2_fields *f, bool (*drop)(const char *name, size_t len))
{
	uint32_t kept = 0;

	for (uint32_t i = 0; i < f->n; i++) {
		if (drop((const char *)f->nv[i].name, f->nv[i].namelen)) {
			f->bytes -= f->nv[i].namelen + f->nv[i].valuelen + 32;
			h2_field_release(f, i);
			continue;
		}
		f->nv[kept] = f->nv[i];
		f->rc[2 * kept] = f->rc[2 * i];
		f->rc[2 * kept + 1] = f->rc[2 * i + 1];
		kept++;
	}
	f->n = kept;
}

/* A copied field is one allocation, name then value, at nv.name (H2_FIELD_COPIED). */
int h2_fields_add_copy(struct h2_fields *f, const char *name, size_t nlen, const char *value,
		       size_t vlen)
{
	int err = h2_fields_room(f);
	uint8_t *m;

	if (err)
		return err;
	m = h2_mem_resize(h2_mem_w, NULL, nlen + vlen + 1, false);
	if (!m)
		return -ENOMEM;
	memcpy(m, name, nlen);
	memcpy(m + nlen, value, vlen);
	f->rc[2 * f->n] = H2_FIELD_COPIED;
	f->rc[2 * f->n + 1] = NULL;
	f->nv[f->n] = (nghttp2_nv){
	    .name = m,
	    .namelen = nlen,
	    .value = m + nlen,
	    .valuelen = vlen,
	    .flags = NGHTTP2_NV_FLAG_NONE,
	};
	f->n++;
	f->bytes += nlen + vlen + 32;
	return 0;
}

int h2_submit_fields(nghttp2_session *s, int32_t id, const struct h2_fields *f, bool end)
{
	/* A few fields (gRPC's trailers, a 103's) on the stack; nghttp2 copies them. */
	nghttp2_nv small[16] = {{0}};
	nghttp2_nv *nv = f->n <= H2_ARRAY_SIZE(small) ? small : malloc(f->n * sizeof(*nv));
	int rv;

	if (!nv)
		return NGHTTP2_ERR_NOMEM;
	for (uint32_t i = 0; i < f->n; i++) {
		nv[i] = f->nv[i];
		nv[i].flags = NGHTTP2_NV_FLAG_NONE; /* copied at submit */
	}
	rv = nghttp2_submit_headers(s, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id,
				    NULL, nv, f->n, NULL);
	if (nv != small)
		free(nv);
	return rv < 0 ? rv : 0;
}

void h2_fields_free(struct h2_fields *f)
{
	for (uint32_t i = 0; i < f->n; i++)
		h2_field_release(f, i);
	h2_mem_release(f->nv); /* rc is in the same block */
	memset(f, 0, sizeof(*f));
}

/* The value of the first field named name (lower case) in f, or NULL. */
const nghttp2_nv *h2_field(const struct h2_fields *f, const char *name)
{
	size_t n = strlen(name);

	for (uint32_t i = 0; i < f->n; i++)
		if (f->nv[i].namelen == n && !memcmp(f->nv[i].name, name, n))
			return &f->nv[i];
	return NULL;
}

/* Options both kinds of session share: the limits of proxy.http2. */
nghttp2_option *h2_options(const struct config *cfg)
{
	nghttp2_option *o;

	if (nghttp2_option_new(&o))
		return NULL;
	/* Flow control is ours: nghttp2_session_consume once a byte went on. */
	nghttp2_option_set_no_auto_window_update(o, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(o, cfg->http2.hpack_table_bytes);
	nghttp2_option_set_max_outbound_ack(o, cfg->http2.max_pending_acks);
	/*
	 * A full client list plus the fields the proxy adds to a request:
	 * the trace context (TRACE_INJECT_MAX) and x-shoal-peer-identity
	 * (PEER_IDENTITY_MAX), each under 1 KiB.
	 */
	nghttp2_option_set_max_send_header_block_length(o, cfg->http2.max_header_list_bytes + 4096);
	nghttp2_option_set_stream_reset_rate_limit(o, cfg->http2.reset_burst,
						   cfg->http2.reset_rate);
	nghttp2_option_set_max_continuations(o, cfg->http2.max_continuations);
	return o;
}

/* Our SETTINGS and the session's receive window, from proxy.http2. */
int h2_settings(nghttp2_session *s, const struct config *cfg, bool server)
{
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->http2.max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->http2.stream_window_bytes},
	    {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, cfg->http2.hpack_table_bytes},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->http2.max_header_list_bytes},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int rv;

	/* A client has no push to refuse, and ENABLE_PUSH from a server is an error. */
	rv =
	    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, H2_ARRAY_SIZE(iv) - (server ? 1 : 0));
	if (rv)
		return -EIO;
	rv = nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0,
						   (int32_t)cfg->http2.session_window_bytes);
	return rv ? -EIO : 0;
}

bool h2_reset_take(struct h2_down *d, const struct config *cfg, uint64_t now_ns)
{
	uint64_t burst = cfg->http2.max_sent_resets, rate = cfg->http2.reset_rate;
	uint64_t since = now_ns - d->resets_ns, add;

	/* Past 1000 s the bucket is full whatever the rate (and the product cannot wrap). */
	add = !d->resets_ns || since >= 1000000000000ull ? burst : since * rate / 1000000000ull;

	if (add) {
		d->resets_left =
		    d->resets_left + add > burst ? (uint32_t)burst : d->resets_left + (uint32_t)add;
		/* Whole tokens only: the remainder keeps accruing from the old time. */
		d->resets_ns = d->resets_ns && d->resets_left < burst
				   ? d->resets_ns + add * 1000000000ull / rate
				   : now_ns;
	}
	if (!d->resets_left)
		return false;
	d->resets_left--;
	return true;
}

/*
 * Write what session s has framed to side sd while it takes bytes,
 * gathered in b: nghttp2_session_mem_send hands out one frame at a time,
 * and a send per frame was a syscall (and, on the sockmap, a wake-up of
 * the peer) for each HEADERS, DATA and WINDOW_UPDATE; gathered, one send
 * carries up to a buffer of them. A frame that does not fit waits in
 * nghttp2's buffer (*out, *len) and nothing more is framed meanwhile, so
 * a slow peer holds one buffer and one chunk at most. b holds a worker
 * buffer only while bytes wait; without one to spare a frame goes on its
 * own. Returns 0 or -errno (a socket error, or nghttp2's -EIO).
 */
int h2_send(struct worker *w, struct conn_side *sd, nghttp2_session *s, struct conn_buf *b,
	    const uint8_t **out, size_t *len)
{
	const uint32_t cap = (uint32_t)w->bufs.size;

	for (;;) {
		int err;

		/* Gather: the frames nghttp2 has, while they fit in b. */
		for (;;) {
			uint32_t k;

			if (!*len) {
				ssize_t n = nghttp2_session_mem_send(s, out);

				if (n < 0)
					return -EIO;
				if (n == 0)
					break;
				*len = (size_t)n;
			}
			if (!conn_buf_hold(w, b)) {
				/* No buffer to spare (b is empty then): the frame goes alone. */
				uint32_t pos = 0;

				err = conn_side_send(sd, (const char *)*out, &pos, (uint32_t)*len);
				*out += pos;
				*len -= pos;
				if (err || *len)
					return err; /* EAGAIN: EPOLLOUT resumes */
				continue;
			}
			k = cap - b->tail;
			if (k > *len)
				k = (uint32_t)*len;
			memcpy(b->data + b->tail, *out, k);
			b->tail += k;
			*out += k;
			*len -= k;
			if (*len)
				break; /* b is full */
		}
		if (!b->data || b->head == b->tail) {
			conn_buf_release_empty(w, b);
			return 0;
		}
		err = conn_side_send(sd, b->data, &b->head, b->tail);
		if (err)
			return err;
		if (b->head < b->tail)
			return 0; /* EAGAIN: EPOLLOUT resumes */
		b->head = b->tail = 0;
	}
}

/* ---- outcomes ----------------------------------------------------------- */

/* The series key of st (recording/http_metrics.h), false when unkeyed. */
bool h2_key(struct worker *w, const struct h2_stream *st, struct metrics_http_key *k,
	    const struct shoal_addr **ep)
{
	const struct conn *c = st->d->c;
	/* The stream's own snapshot's service: c may have followed a newer one. */
	const struct config_service *svc = st->svc ? st->svc : c->svc;
	const struct config_service *t = st->target ? st->target : svc;

	memset(k, 0, sizeof(*k));
	*ep = NULL;
	if (st->target && st->bt.idx != PICK_NONE && st->bt.idx < (uint32_t)t->n_endpoints) {
		k->endpoint = st->bt.idx + 1;
		*ep = &t->endpoints[st->bt.idx].addr;
	}
	if (!svc || !svc->metrics_id || !t->metrics_id) {
		metrics_http_shard_unkeyed(w->metrics);
		return false;
	}
	k->svc = svc->metrics_id;
	k->backend = t->metrics_id;
	if (st->route && st->route >= svc->routes && st->route < svc->routes + svc->n_routes)
		k->route = st->route->metrics_id;
	return true;
}

/*
 * The status a request is recorded with: its HTTP status, or for gRPC a
 * failing grpc-status as the HTTP status a client would see for it
 * (UNAVAILABLE 503, DEADLINE_EXCEEDED 504, other failures 500), so that
 * the golden metrics' success rate is gRPC's and not HTTP's 200.
 */
unsigned int h2_recorded_status(const struct h2_stream *st)
{
	if (st->grpc && st->grpc_status > 0) {
		if (st->grpc_status == GRPC_STATUS_UNAVAILABLE)
			return 503;
		if (st->grpc_status == GRPC_STATUS_DEADLINE_EXCEEDED)
			return 504;
		if (grpc_status_is_failure(st->grpc_status))
			return 500;
	}
	return (unsigned int)st->status;
}

/*
 * The method series id of gRPC request st: the id of the first route of
 * its addressed service that names its :path exactly, else 0 ("other"),
 * so that the label's values are the config's, never a client's.
 */
static uint32_t h2_grpc_method(const struct h2_stream *st)
{
	/* The stream's own snapshot's: its connection may have followed a newer one. */
	const struct config_service *svc = st->svc ? st->svc : st->d->c->svc;
	const nghttp2_nv *p = h2_field(&st->rq, ":path");

	if (!p)
		return 0;
	for (int i = 0; i < svc->n_routes; i++) {
		const struct config_route *r = &svc->routes[i];

		if (r->path_match == CONFIG_PATH_EXACT && r->path_len == p->valuelen &&
		    !memcmp(r->path, p->value, p->valuelen))
			return r->metrics_id;
	}
	return 0;
}

int h2_grpc_status_of(const struct h2_stream *st)
{
	/* The proxy's own answers are a 200 with grpc-status: another head is the endpoint's. */
	return grpc_status_or_http(st->grpc_status, st->status);
}

/*
 * The grpc-status the client of gRPC request st gets: the endpoint's,
 * or the one its non-200 head reads as (h2_grpc_status_of), else the
 * one the proxy answers a failure with (h2_stream_error, which some
 * callers run after h2_done: DEADLINE_EXCEEDED for 504, else
 * UNAVAILABLE), else none (reset, or a 200 response without one).
 */
static int h2_grpc_code(const struct h2_stream *st, unsigned int status)
{
	int code = h2_grpc_status_of(st);

	if (code != GRPC_STATUS_NONE || st->rs_submitted || status < 500)
		return code;
	return status == 504 ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_UNAVAILABLE;
}

/*
 * st ended (once): its outcome to the balancer and the breaker (when an
 * endpoint was tried; failed says the endpoint failed), and to the
 * metrics with status (0: reset): HTTP's, gRPC's for a gRPC call, and
 * the callers table.
 */
void h2_done(struct worker *w, struct h2_stream *st, bool tried, bool failed, unsigned int status,
	     const char *what)
{
	struct metrics_http_key k;
	const struct shoal_addr *ep;
	uint64_t now = timer_now_ns();
	int code;

	if (st->answered)
		return;
	st->answered = true;
	if (st->bt.active) {
		if (tried)
			pick_outcome(st->sv, &st->bt, !failed, PEAK_EWMA_NO_RETRY_AFTER, now, what);
		else
			pick_cancel(st->sv, &st->bt, now);
	}
	if (!st->start_ns)
		return;
	code = st->grpc ? h2_grpc_code(st, status) : GRPC_STATUS_NONE;
	if (h2_key(w, st, &k, &ep)) {
		metrics_http_shard_request(w->metrics, &k, ep, status, now - st->start_ns);
		if (st->grpc)
			metrics_grpc_shard_request(w->metrics, k.svc, h2_grpc_method(st), code,
						   now - st->start_ns);
		callers_record(w->callers, st->d->c->caller, k.svc, status);
	}
	tele_h2_finish(w, st, status, code, ep);
}

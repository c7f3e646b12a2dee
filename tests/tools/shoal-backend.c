// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoal-backend: the HTTP/1.1 server that the L7 end-to-end tests put behind
 * the mesh.
 *
 * The proxy and resilience tests need a backend whose behaviour they control
 * per request (latency, status, failure rate, resets, body shape) and which
 * reports what it saw (method, path, host, peer, traceparent) and how often,
 * so a test can prove, e.g., that a POST was never sent twice.
 *
 *   shoal-backend --listen ADDR:PORT [--listen ...] --name NAME
 *                 [--delay-ms N] [--status N] [--fail-rate F]
 *                 [--fail-status N] [--body-bytes N] [--seed S]
 *                 [--stats-file PATH]
 *
 * ADDR is a.b.c.d or [v6]; port 0 picks a free port. Each listener is printed
 * on stdout as "shoal-backend NAME listening on ADDR:PORT" once it is bound.
 * tests/tools/README.md documents the query parameters and /_ctl endpoints.
 *
 * One thread per connection with blocking I/O: a delay is then just a sleep,
 * pipelined requests are answered in order for free, and a few thousand
 * threads are cheap on loopback. Exit status: 0 on SIGTERM/SIGINT, 1 when
 * a listener cannot be bound, 2 on a usage error.
 *
 * Why one file of about 2000 lines: it is a test tool, built alone and
 * run in the tests' network namespaces, with no code shared with the agent
 * (it must not inherit the proxy's parser bugs); its ten sections (I/O,
 * request parsing, responses, /_ctl, upgrades, statistics...) are marked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "shoal-backend-sha1.h"

/* v4 + v6 on a few ports is all any test needs. */
#define BACKEND_MAX_LISTENERS 16
/* Request head (line + headers) beyond this gets 431, as the proxy's default. */
#define HEAD_MAX (16 * 1024)
/* A request line that alone fills this without ending gets 414. */
#define REQUEST_LINE_MAX (8 * 1024)
/* More header fields than this gets 431: no real client sends 100. */
#define HEADERS_MAX 100
/* A chunk-size line (with extensions) or trailer line longer than this is garbage. */
#define CHUNK_LINE_MAX 1024
/* Connection threads alive at once; beyond this new connections are closed. */
#define CONN_MAX 8192
/* Buffers live on the heap, so a connection thread needs little stack. */
#define CONN_STACK_SIZE (128 * 1024)
/* A connection idle (or stuck writing) this long is dropped. */
#define CONN_IO_TIMEOUT_S 60
/* After a close we drain input this long so the client reads our answer, not a RST. */
#define LINGER_DRAIN_MS 1000
/* A /_ctl request body is a short form; anything larger is a mistake. */
#define CTL_BODY_MAX 4096
/* Largest WebSocket frame echoed; larger is closed with 1009 (too big). */
#define WS_FRAME_MAX (64ULL * 1024 * 1024)
/* Largest ?body_bytes=; a test wanting more is streaming, not requesting. */
#define BODY_BYTES_MAX (4ULL * 1024 * 1024 * 1024)
/* Longest ?delay_ms=: ten minutes covers every deadline test. */
#define DELAY_MS_MAX 600000
/* Distinct methods counted by name in /_ctl/stats; the rest count as OTHER. */
#define METHODS_MAX 16
#define METHOD_NAME_MAX 24
/* Response body pattern is 'a'..'z' repeated; a multiple of 26 keeps it seamless. */
#define PATTERN_LEN (26 * 2520)
/* Chunk size of chunked responses: small enough that a test sees several. */
#define CHUNK_OUT_MAX (8 * 1024)
/* Room for /_ctl JSON: METHODS_MAX methods and every status code. */
#define JSON_MAX (32 * 1024)
/* Our response head echoes at most a whole request head, plus our own fields. */
#define OUT_HEAD_MAX (2 * HEAD_MAX + 2048)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#define pr_warn(fmt, ...) fprintf(stderr, "shoal-backend %s: " fmt "\n", opt_name, ##__VA_ARGS__)

/* The defaults every request starts from; /_ctl/mode changes them at runtime. */
struct backend_mode {
	int delay_ms;
	int status;
	double fail_rate;
	int fail_status;
	uint64_t body_bytes; /* UINT64_MAX: the default "NAME\n" body */
	bool reset;	     /* RST every new request */
	bool refuse;	     /* listening sockets closed */
};

struct listener {
	struct sockaddr_storage ss; /* port filled in after the first bind */
	socklen_t len;
	char text[INET6_ADDRSTRLEN + 16];
	int fd; /* -1 while refusing */
};

/* One parsed request head. Strings point into conn.head, NUL-terminated. */
struct request {
	char *method;
	char *target;
	char *path;  /* target up to '?', or "/" for absolute-form without path */
	char *query; /* after '?', or "" */
	int minor;   /* HTTP/1.<minor> */
	char *host;
	char *traceparent;
	char *upgrade;
	char *ws_key;
	char *ws_version;
	bool has_cl;
	uint64_t cl;
	bool chunked;
	bool expect_continue;
	bool conn_close;
	bool conn_keep_alive;
	bool conn_upgrade;
	bool is_head;
};

/* Per-request behaviour: the mode, overridden by the query string. */
struct req_opts {
	int delay_ms;
	int status;
	double fail_rate;
	int fail_status;
	uint64_t body_bytes;
	int retry_after;
	bool chunked;
	bool close;
	bool reset;
	bool reset_after_headers;
	bool echo;
	bool headers; /* the body is the request head as received */
};

struct conn {
	int fd;
	char peer_ip[INET6_ADDRSTRLEN];
	unsigned int peer_port;
	size_t start, end; /* unread bytes are in[start, end) */
	char in[HEAD_MAX];
	char head[HEAD_MAX + 1];
	char raw[HEAD_MAX]; /* the last request head as received, for ?headers=1 */
	size_t raw_len;
	char out[OUT_HEAD_MAX];
};

static const char *opt_name = "backend";
static const char *opt_stats_file;
static uint64_t opt_seed;

static struct listener listeners[BACKEND_MAX_LISTENERS];
static int n_listeners;

static pthread_mutex_t mode_lock = PTHREAD_MUTEX_INITIALIZER;
static struct backend_mode mode = {
    .status = 200,
    .fail_status = 503,
    .body_bytes = UINT64_MAX,
};

/* Refuse/re-bind is done by the accept loop; /_ctl/mode waits for it here. */
static pthread_mutex_t refuse_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refuse_cond = PTHREAD_COND_INITIALIZER;
static bool refuse_want, refuse_applied;
static int refuse_err;
static int refuse_efd = -1;
/* Serialises whole /_ctl/mode requests so two refuse toggles cannot interleave. */
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;

/* x-request-count: every request served since start, never reset. */
static atomic_ulong served_total;
static atomic_ulong rand_counter;
static atomic_int conn_count;

/* /_ctl/stats counters; POST /_ctl/stats/reset zeroes them. */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long stat_requests, stat_resets;
static unsigned long stat_by_status[1000];
static char stat_method_name[METHODS_MAX][METHOD_NAME_MAX];
static unsigned long stat_method_count[METHODS_MAX];
static unsigned long stat_method_other;

static char pattern[PATTERN_LEN];

/* ---- small helpers ---- */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * A uniform double in [0, 1). The n-th draw depends only on --seed and n, so
 * a single-client test run with a seed sees the same failures every time.
 */
static double backend_random(void)
{
	uint64_t n = atomic_fetch_add(&rand_counter, 1);

	return (double)(splitmix64(opt_seed ^ splitmix64(n)) >> 11) / (double)(1ULL << 53);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a decimal in [min, max] that fills all of s. Returns 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_int(const char *s, int min, int max, int *out)
{
	uint64_t v;
	int err = parse_u64(s, (uint64_t)min, (uint64_t)max, &v);

	if (!err)
		*out = (int)v;
	return err;
}

static int parse_rate(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (!*s || *end || errno || !(v >= 0.0 && v <= 1.0))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "1") || !strcmp(s, "true")) {
		*out = true;
		return 0;
	}
	if (!strcmp(s, "0") || !strcmp(s, "false")) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* True when the comma-separated list s holds token tok (case-insensitive). */
static bool list_has_token(const char *s, const char *tok)
{
	size_t n = strlen(tok);

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (!strncasecmp(s, tok, n) &&
		    (s[n] == '\0' || s[n] == ',' || s[n] == ' ' || s[n] == '\t' || s[n] == ';'))
			return true;
		while (*s && *s != ',')
			s++;
	}
	return false;
}

/* Reason phrases for the statuses tests use; any other gets "Status". */
static const struct {
	int status;
	const char *reason;
} status_reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {417, "Expectation Failed"},
    {426, "Upgrade Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static const char *status_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(status_reasons) / sizeof(status_reasons[0]); i++)
		if (status_reasons[i].status == status)
			return status_reasons[i].reason;
	return "Status";
}

/* 1xx, 204 and 304 carry no body (RFC 9110 6.4.1). */
static bool status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

/* ---- statistics ---- */

/* Counts one request under its method: a known slot, a free one, or OTHER. */
static void stats_count_request(const char *method)
{
	int i;

	pthread_mutex_lock(&stats_lock);
	stat_requests++;
	for (i = 0; i < METHODS_MAX && stat_method_name[i][0]; i++)
		if (!strcmp(stat_method_name[i], method))
			break;
	if (i < METHODS_MAX && !stat_method_name[i][0] && strlen(method) < METHOD_NAME_MAX)
		strcpy(stat_method_name[i], method);
	if (i < METHODS_MAX && stat_method_name[i][0])
		stat_method_count[i]++;
	else
		stat_method_other++;
	pthread_mutex_unlock(&stats_lock);
}

static void stats_count_status(int status)
{
	pthread_mutex_lock(&stats_lock);
	if (status >= 0 && status < 1000)
		stat_by_status[status]++;
	pthread_mutex_unlock(&stats_lock);
}

static void stats_count_reset(void)
{
	pthread_mutex_lock(&stats_lock);
	stat_resets++;
	pthread_mutex_unlock(&stats_lock);
}

static void stats_reset(void)
{
	pthread_mutex_lock(&stats_lock);
	stat_requests = 0;
	stat_resets = 0;
	memset(stat_by_status, 0, sizeof(stat_by_status));
	memset(stat_method_name, 0, sizeof(stat_method_name));
	memset(stat_method_count, 0, sizeof(stat_method_count));
	stat_method_other = 0;
	pthread_mutex_unlock(&stats_lock);
}

/* Appends printf output to buf[*len, cap); on overflow *len becomes cap. */
static void __attribute__((format(printf, 4, 5)))
buf_printf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		*len = cap;
	else
		*len += (size_t)n;
}

/* Appends s as a JSON string literal. */
static void buf_json_string(char *buf, size_t cap, size_t *len, const char *s)
{
	buf_printf(buf, cap, len, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			buf_printf(buf, cap, len, "\\%c", ch);
		else if (ch < 0x20)
			buf_printf(buf, cap, len, "\\u%04x", ch);
		else
			buf_printf(buf, cap, len, "%c", ch);
	}
	buf_printf(buf, cap, len, "\"");
}

/* Renders the /_ctl/stats JSON into buf (JSON_MAX bytes). Returns its length. */
static size_t stats_render(char *buf)
{
	size_t len = 0;
	bool first = true;
	int i;

	pthread_mutex_lock(&stats_lock);
	buf_printf(buf, JSON_MAX, &len, "{\"name\":");
	buf_json_string(buf, JSON_MAX, &len, opt_name);
	buf_printf(buf, JSON_MAX, &len, ",\"requests\":%lu,\"resets\":%lu,\"served_total\":%lu",
		   stat_requests, stat_resets, atomic_load(&served_total));
	buf_printf(buf, JSON_MAX, &len, ",\"by_method\":{");
	for (i = 0; i < METHODS_MAX && stat_method_name[i][0]; i++) {
		buf_printf(buf, JSON_MAX, &len, "%s\"%s\":%lu", first ? "" : ",",
			   stat_method_name[i], stat_method_count[i]);
		first = false;
	}
	if (stat_method_other)
		buf_printf(buf, JSON_MAX, &len, "%s\"OTHER\":%lu", first ? "" : ",",
			   stat_method_other);
	buf_printf(buf, JSON_MAX, &len, "},\"by_status\":{");
	first = true;
	for (i = 0; i < 1000; i++) {
		if (!stat_by_status[i])
			continue;
		buf_printf(buf, JSON_MAX, &len, "%s\"%d\":%lu", first ? "" : ",", i,
			   stat_by_status[i]);
		first = false;
	}
	buf_printf(buf, JSON_MAX, &len, "}}\n");
	pthread_mutex_unlock(&stats_lock);
	return len < JSON_MAX ? len : JSON_MAX - 1;
}

static size_t mode_render(char *buf)
{
	struct backend_mode m;
	size_t len = 0;

	pthread_mutex_lock(&mode_lock);
	m = mode;
	pthread_mutex_unlock(&mode_lock);
	buf_printf(buf, JSON_MAX, &len,
		   "{\"delay_ms\":%d,\"status\":%d,\"fail_rate\":%g,\"fail_status\":%d,",
		   m.delay_ms, m.status, m.fail_rate, m.fail_status);
	if (m.body_bytes == UINT64_MAX)
		buf_printf(buf, JSON_MAX, &len, "\"body_bytes\":null,");
	else
		buf_printf(buf, JSON_MAX, &len, "\"body_bytes\":%" PRIu64 ",", m.body_bytes);
	buf_printf(buf, JSON_MAX, &len, "\"reset\":%d,\"refuse\":%d}\n", m.reset, m.refuse);
	return len < JSON_MAX ? len : JSON_MAX - 1;
}

/* Writes the stats JSON to --stats-file atomically (tmp + rename). */
static void stats_write_file(void)
{
	char *json, tmp[4096];
	size_t len;
	FILE *f;

	if (!opt_stats_file)
		return;
	json = malloc(JSON_MAX);
	if (!json)
		return;
	len = stats_render(json);
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt_stats_file);
	f = fopen(tmp, "w");
	if (!f) {
		pr_warn("cannot write stats file %s: %s", tmp, strerror(errno));
		free(json);
		return;
	}
	fwrite(json, 1, len, f);
	if (fclose(f) || rename(tmp, opt_stats_file))
		pr_warn("cannot write stats file %s: %s", opt_stats_file, strerror(errno));
	free(json);
}

/* ---- connection I/O ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes all of iov[0..cnt); iov is consumed. Returns 0 or -errno. */
static int writev_all(int fd, struct iovec *iov, int cnt)
{
	ssize_t n;

	while (cnt) {
		n = writev(fd, iov, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (cnt && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/*
 * Reads more input into c->in, compacting first. Returns bytes read, 0 on
 * EOF, -ENOBUFS when the buffer is full of unread data, or -errno.
 */
static ssize_t conn_fill(struct conn *c)
{
	ssize_t n;

	if (c->start == c->end) {
		c->start = 0;
		c->end = 0;
	} else if (c->end == sizeof(c->in) && c->start) {
		memmove(c->in, c->in + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == sizeof(c->in))
		return -ENOBUFS;
	do {
		n = recv(c->fd, c->in + c->end, sizeof(c->in) - c->end, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->end += (size_t)n;
	return n;
}

/* Makes at least n (<= sizeof(in)) bytes available. Returns 0 or -EIO. */
static int conn_need(struct conn *c, size_t n)
{
	if (c->start + n > sizeof(c->in) && c->start) {
		memmove(c->in, c->in + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	while (c->end - c->start < n)
		if (conn_fill(c) <= 0)
			return -EIO;
	return 0;
}

/*
 * Returns the next CRLF-terminated line (without CRLF, not NUL-terminated)
 * in *line and *len and consumes it. Returns 0, -EBADMSG when no CRLF comes
 * within CHUNK_LINE_MAX bytes or a bare CR or NUL is present, or -EIO.
 */
static int conn_getline(struct conn *c, char **line, size_t *len)
{
	char *lf;
	size_t i, scanned = 0;

	for (;;) {
		lf = memchr(c->in + c->start + scanned, '\n', c->end - c->start - scanned);
		if (lf)
			break;
		scanned = c->end - c->start;
		if (scanned > CHUNK_LINE_MAX)
			return -EBADMSG;
		if (conn_fill(c) <= 0)
			return -EIO;
	}
	*line = c->in + c->start;
	*len = (size_t)(lf - *line);
	if (*len == 0 || (*line)[*len - 1] != '\r')
		return -EBADMSG;
	(*len)--;
	for (i = 0; i < *len; i++)
		if ((*line)[i] == '\r' || (*line)[i] == '\0')
			return -EBADMSG;
	c->start += *len + 2;
	return 0;
}

/* Called with each piece of a request body, in order. Returns 0 or -errno. */
typedef int (*body_sink_fn)(struct conn *c, const char *data, size_t len, void *arg);

/* Passes exactly n body bytes from the connection to sink. */
static int conn_copy_bytes(struct conn *c, uint64_t n, body_sink_fn sink, void *arg)
{
	size_t avail;
	int err;

	while (n) {
		if (c->start == c->end && conn_fill(c) <= 0)
			return -EIO;
		avail = c->end - c->start;
		if (avail > n)
			avail = (size_t)n;
		if (sink) {
			err = sink(c, c->in + c->start, avail, arg);
			if (err)
				return err;
		}
		c->start += avail;
		n -= avail;
	}
	return 0;
}

/*
 * Reads the request body framed by rq (Content-Length or chunked), passing
 * it to sink (NULL discards). *total gets the body length. Returns 0, -EIO
 * when the client went away, -EBADMSG on bad chunked framing, or the sink's
 * error.
 */
static int conn_read_body(struct conn *c, const struct request *rq, body_sink_fn sink, void *arg,
			  uint64_t *total)
{
	char *line;
	size_t len, i;
	uint64_t size;
	int err, digits;

	*total = 0;
	if (!rq->chunked) {
		if (!rq->has_cl)
			return 0;
		*total = rq->cl;
		return conn_copy_bytes(c, rq->cl, sink, arg);
	}
	for (;;) {
		err = conn_getline(c, &line, &len);
		if (err)
			return err;
		size = 0;
		digits = 0;
		for (i = 0; i < len; i++) {
			char ch = line[i];
			int v;

			if (ch >= '0' && ch <= '9')
				v = ch - '0';
			else if (ch >= 'a' && ch <= 'f')
				v = ch - 'a' + 10;
			else if (ch >= 'A' && ch <= 'F')
				v = ch - 'A' + 10;
			else
				break;
			/* 15 hex digits already exceed any body a test sends. */
			if (++digits > 15)
				return -EBADMSG;
			size = size * 16 + (uint64_t)v;
		}
		/* After the size only a chunk extension may follow. */
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (!digits || (i < len && line[i] != ';'))
			return -EBADMSG;
		if (!size)
			break;
		err = conn_copy_bytes(c, size, sink, arg);
		if (err)
			return err;
		*total += size;
		err = conn_need(c, 2);
		if (err)
			return err;
		if (c->in[c->start] != '\r' || c->in[c->start + 1] != '\n')
			return -EBADMSG;
		c->start += 2;
	}
	/* Trailer fields, discarded, up to the empty line. */
	for (i = 0; i <= HEADERS_MAX; i++) {
		err = conn_getline(c, &line, &len);
		if (err)
			return err;
		if (!len)
			return 0;
	}
	return -EBADMSG;
}

/*
 * Closes after a final response: half-close, then drain input for a while,
 * so that unread request bytes do not turn our answer into a RST.
 */
static void conn_close_lingering(struct conn *c)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = 100 * 1000};
	long long deadline = now_ms() + LINGER_DRAIN_MS;
	char sink[4096];
	ssize_t n;

	shutdown(c->fd, SHUT_WR);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (now_ms() < deadline) {
		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			break;
	}
	close(c->fd);
	c->fd = -1;
}

/* Aborts the connection with a TCP RST (SO_LINGER {1, 0} then close). */
static void conn_reset(struct conn *c)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
}

/*
 * Sends a minimal response (for errors found before or while parsing) with
 * Connection: close. The caller then closes.
 */
static void conn_send_simple(struct conn *c, int status, const char *msg)
{
	char buf[1024];
	int n;

	n = snprintf(
	    buf, sizeof(buf),
	    "HTTP/1.1 %d %s\r\nx-backend: %s\r\nx-request-count: %lu\r\n"
	    "Content-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    status, status_reason(status), opt_name, atomic_load(&served_total), strlen(msg), msg);
	if (n > 0 && (size_t)n < sizeof(buf))
		write_all(c->fd, buf, (size_t)n);
}

/* ---- request parsing ---- */

/*
 * Parses the head in c->head (head_len bytes, ending in CRLF CRLF) into rq.
 * Returns 0, or the HTTP status to refuse it with and a reason in *why.
 * Strict on purpose: whatever the proxy lets through should be clean.
 */
static int request_parse(struct conn *c, size_t head_len, struct request *rq, const char **why)
{
	char *p = c->head, *end = c->head + head_len, *line, *eol, *colon, *v, *ve, *sp;
	int n_headers = 0;
	size_t i;

	memset(rq, 0, sizeof(*rq));
	c->head[head_len] = '\0';
	for (i = 0; i < head_len; i++) {
		if (p[i] == '\0') {
			*why = "NUL byte in head";
			return 400;
		}
		if (p[i] == '\r' && (i + 1 >= head_len || p[i + 1] != '\n')) {
			*why = "bare CR in head";
			return 400;
		}
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
			*why = "bare LF in head";
			return 400;
		}
	}

	/* Request line: method SP target SP HTTP/1.x */
	eol = strstr(p, "\r\n");
	*eol = '\0';
	line = p;
	sp = strchr(line, ' ');
	if (!sp || sp == line) {
		*why = "malformed request line";
		return 400;
	}
	*sp = '\0';
	rq->method = line;
	for (v = line; *v; v++)
		if (!is_tchar((unsigned char)*v)) {
			*why = "bad method";
			return 400;
		}
	rq->target = sp + 1;
	sp = strchr(rq->target, ' ');
	if (!sp || sp == rq->target) {
		*why = "malformed request line";
		return 400;
	}
	*sp = '\0';
	for (v = rq->target; *v; v++)
		if ((unsigned char)*v <= 0x20 || *v == 0x7f) {
			*why = "bad request target";
			return 400;
		}
	v = sp + 1;
	if (!strcmp(v, "HTTP/1.1")) {
		rq->minor = 1;
	} else if (!strcmp(v, "HTTP/1.0")) {
		rq->minor = 0;
	} else if (!strncmp(v, "HTTP/", 5) && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
		   v[7] >= '0' && v[7] <= '9' && !v[8]) {
		*why = "only HTTP/1.0 and HTTP/1.1";
		return 505;
	} else {
		*why = "bad HTTP version";
		return 400;
	}
	rq->is_head = !strcmp(rq->method, "HEAD");

	/* Target: origin-form, absolute-form, or "*". */
	if (rq->target[0] == '/' || !strcmp(rq->target, "*")) {
		rq->path = rq->target;
	} else if ((v = strstr(rq->target, "://"))) {
		rq->path = strchr(v + 3, '/');
		if (!rq->path)
			rq->path = "/";
	} else if (!strcmp(rq->method, "CONNECT")) {
		rq->path = rq->target;
	} else {
		*why = "bad request target";
		return 400;
	}
	/* The path is echoed, so split the query off a copy-free way: in place. */
	rq->query = "";
	if (rq->path != rq->target || rq->path[0] == '/') {
		v = strchr(rq->path, '?');
		if (v) {
			*v = '\0';
			rq->query = v + 1;
		}
	}

	/* Header fields. */
	for (line = eol + 2; line < end; line = eol + 2) {
		eol = strstr(line, "\r\n");
		*eol = '\0';
		if (!*line)
			break;
		if (++n_headers > HEADERS_MAX) {
			*why = "too many header fields";
			return 431;
		}
		if (*line == ' ' || *line == '\t') {
			*why = "obs-fold";
			return 400;
		}
		colon = strchr(line, ':');
		if (!colon || colon == line) {
			*why = "header field without name";
			return 400;
		}
		*colon = '\0';
		for (v = line; *v; v++)
			if (!is_tchar((unsigned char)*v)) {
				*why = "bad header name (whitespace before colon?)";
				return 400;
			}
		v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';

		if (!strcasecmp(line, "host")) {
			if (rq->host) {
				*why = "duplicate Host";
				return 400;
			}
			rq->host = v;
		} else if (!strcasecmp(line, "content-length")) {
			uint64_t cl;

			if (parse_u64(v, 0, UINT64_MAX / 2, &cl) || (rq->has_cl && cl != rq->cl)) {
				*why = "bad or conflicting Content-Length";
				return 400;
			}
			rq->has_cl = true;
			rq->cl = cl;
		} else if (!strcasecmp(line, "transfer-encoding")) {
			/* Only the last coding matters: it must be chunked. */
			const char *last = strrchr(v, ',');

			last = last ? last + 1 : v;
			while (*last == ' ' || *last == '\t')
				last++;
			if (strcasecmp(last, "chunked")) {
				*why = "final transfer coding is not chunked";
				return 400;
			}
			rq->chunked = true;
		} else if (!strcasecmp(line, "connection")) {
			rq->conn_close |= list_has_token(v, "close");
			rq->conn_keep_alive |= list_has_token(v, "keep-alive");
			rq->conn_upgrade |= list_has_token(v, "upgrade");
		} else if (!strcasecmp(line, "expect")) {
			if (strcasecmp(v, "100-continue")) {
				*why = "unsupported Expect";
				return 417;
			}
			rq->expect_continue = true;
		} else if (!strcasecmp(line, "upgrade")) {
			rq->upgrade = v;
		} else if (!strcasecmp(line, "traceparent")) {
			rq->traceparent = v;
		} else if (!strcasecmp(line, "sec-websocket-key")) {
			rq->ws_key = v;
		} else if (!strcasecmp(line, "sec-websocket-version")) {
			rq->ws_version = v;
		}
	}
	if (rq->chunked && rq->has_cl) {
		*why = "both Content-Length and Transfer-Encoding";
		return 400;
	}
	if (rq->minor == 1 && !rq->host) {
		*why = "HTTP/1.1 request without Host";
		return 400;
	}
	return 0;
}

/* Longest key or value in a query or /_ctl form; longer ones are invalid. */
#define FORM_FIELD_MAX 64

/*
 * Copies the next k=v pair of the form at *s (separated by '&' or line
 * breaks) into key and val, and advances *s. A pair without '=' has value
 * "1"; a field too long for its buffer comes back empty, which no parser
 * accepts. Returns false at the end. The form is left intact so it can
 * still be echoed.
 */
static bool form_next(const char **s, char key[FORM_FIELD_MAX], char val[FORM_FIELD_MAX])
{
	const char *p = *s, *seg, *eq, *end;
	size_t kl, vl;

	while (*p == '&' || *p == '\r' || *p == '\n')
		p++;
	if (!*p)
		return false;
	seg = p;
	end = seg + strcspn(seg, "&\r\n");
	*s = end;
	eq = memchr(seg, '=', (size_t)(end - seg));
	kl = (size_t)((eq ? eq : end) - seg);
	vl = eq ? (size_t)(end - eq - 1) : 0;
	if (kl >= FORM_FIELD_MAX)
		kl = 0;
	memcpy(key, seg, kl);
	key[kl] = '\0';
	if (!eq) {
		strcpy(val, "1");
	} else {
		if (vl >= FORM_FIELD_MAX)
			vl = 0;
		memcpy(val, eq + 1, vl);
		val[vl] = '\0';
	}
	return true;
}

/*
 * Applies the query string to o. Returns 0, or 400 with the reason in *why.
 * Unknown parameters are ignored: they may be the test's own cache busters.
 */
static int request_parse_query(const char *query, struct req_opts *o, const char **why)
{
	char kv[FORM_FIELD_MAX], val[FORM_FIELD_MAX];
	int err = 0;

	while (form_next(&query, kv, val)) {
		if (!strcmp(kv, "delay_ms"))
			err = parse_int(val, 0, DELAY_MS_MAX, &o->delay_ms);
		else if (!strcmp(kv, "status"))
			err = parse_int(val, 200, 999, &o->status);
		else if (!strcmp(kv, "fail_rate"))
			err = parse_rate(val, &o->fail_rate);
		else if (!strcmp(kv, "fail_status"))
			err = parse_int(val, 200, 999, &o->fail_status);
		else if (!strcmp(kv, "body_bytes"))
			err = parse_u64(val, 0, BODY_BYTES_MAX, &o->body_bytes);
		else if (!strcmp(kv, "retry_after"))
			err = parse_int(val, 0, 86400, &o->retry_after);
		else if (!strcmp(kv, "chunked"))
			err = parse_bool(val, &o->chunked);
		else if (!strcmp(kv, "close"))
			err = parse_bool(val, &o->close);
		else if (!strcmp(kv, "reset"))
			err = parse_bool(val, &o->reset);
		else if (!strcmp(kv, "reset_after_headers"))
			err = parse_bool(val, &o->reset_after_headers);
		else if (!strcmp(kv, "echo"))
			err = parse_bool(val, &o->echo);
		else if (!strcmp(kv, "headers"))
			err = parse_bool(val, &o->headers);
		if (err) {
			*why = "bad query parameter value\n";
			return 400;
		}
	}
	return 0;
}

/* ---- responses ---- */

/*
 * Renders the response head into c->out: status line, the x-backend and
 * x-seen-* fields, framing (body_len, or chunked when body_len is
 * UINT64_MAX) and Connection. Returns its length, or 0 when it did not fit.
 */
static size_t response_head(struct conn *c, const struct request *rq, int status, uint64_t body_len,
			    bool keep_alive, const char *extra, unsigned long count)
{
	size_t len = 0;

	buf_printf(c->out, sizeof(c->out), &len,
		   "HTTP/1.1 %d %s\r\nx-backend: %s\r\nx-request-count: %lu\r\n"
		   "x-seen-method: %s\r\nx-seen-path: %s\r\nx-seen-peer: %s\r\n"
		   "x-seen-peer-port: %u\r\n",
		   status, status_reason(status), opt_name, count, rq->method, rq->path, c->peer_ip,
		   c->peer_port);
	if (rq->query[0])
		buf_printf(c->out, sizeof(c->out), &len, "x-seen-query: %s\r\n", rq->query);
	if (rq->host)
		buf_printf(c->out, sizeof(c->out), &len, "x-seen-host: %s\r\n", rq->host);
	if (rq->traceparent)
		buf_printf(c->out, sizeof(c->out), &len, "x-seen-traceparent: %s\r\n",
			   rq->traceparent);
	if (extra)
		buf_printf(c->out, sizeof(c->out), &len, "%s", extra);
	if (body_len == UINT64_MAX)
		buf_printf(c->out, sizeof(c->out), &len, "Transfer-Encoding: chunked\r\n");
	else if (status != 204 && status >= 200)
		buf_printf(c->out, sizeof(c->out), &len, "Content-Length: %" PRIu64 "\r\n",
			   body_len);
	if (!keep_alive)
		buf_printf(c->out, sizeof(c->out), &len, "Connection: close\r\n");
	else if (rq->minor == 0)
		buf_printf(c->out, sizeof(c->out), &len, "Connection: keep-alive\r\n");
	buf_printf(c->out, sizeof(c->out), &len, "\r\n");
	return len < sizeof(c->out) ? len : 0;
}

/* Sends n bytes of the a..z pattern, starting at pattern offset 0. */
static int send_pattern(int fd, uint64_t n, bool chunked)
{
	char hdr[32];
	struct iovec iov[3];
	uint64_t off = 0;
	size_t piece;
	int err, cnt;

	while (off < n) {
		piece = chunked ? CHUNK_OUT_MAX : PATTERN_LEN;
		/* A piece never runs past the pattern's end; the next one wraps. */
		if (piece > PATTERN_LEN - off % PATTERN_LEN)
			piece = PATTERN_LEN - off % PATTERN_LEN;
		if (piece > n - off)
			piece = (size_t)(n - off);
		cnt = 0;
		if (chunked) {
			iov[cnt].iov_base = hdr;
			iov[cnt++].iov_len = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", piece);
		}
		iov[cnt].iov_base = pattern + off % PATTERN_LEN;
		iov[cnt++].iov_len = piece;
		if (chunked) {
			iov[cnt].iov_base = "\r\n";
			iov[cnt++].iov_len = 2;
		}
		err = writev_all(fd, iov, cnt);
		if (err)
			return err;
		off += piece;
	}
	return chunked ? write_all(fd, "0\r\n\r\n", 5) : 0;
}

/* Body sink that echoes each piece, as a chunk when arg points to true. */
static int echo_sink(struct conn *c, const char *data, size_t len, void *arg)
{
	bool chunked = *(bool *)arg;
	char hdr[32];
	struct iovec iov[3] = {
	    {.iov_base = hdr},
	    {.iov_base = (char *)data, .iov_len = len},
	    {.iov_base = "\r\n", .iov_len = 2},
	};

	if (!chunked)
		return write_all(c->fd, data, len);
	iov[0].iov_len = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
	return writev_all(c->fd, iov, 3);
}

/* Body sink that collects a /_ctl form into a CTL_BODY_MAX buffer. */
struct ctl_body {
	char data[CTL_BODY_MAX + 1];
	size_t len;
};

static int ctl_sink(struct conn *c, const char *data, size_t len, void *arg)
{
	struct ctl_body *b = arg;

	(void)c;
	if (b->len + len > CTL_BODY_MAX)
		return -EMSGSIZE;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

/* ---- refuse: closing and re-binding the listeners ---- */

static int listener_bind(struct listener *l)
{
	int one = 1, fd, err;

	fd = socket(l->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* v4 and v6 listeners on one port must not collide on the v4 half. */
	if (l->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&l->ss, l->len) || listen(fd, 4096)) {
		err = -errno;
		close(fd);
		return err;
	}
	/* Port 0 was resolved: refuse=0 must re-bind the very same port. */
	l->len = sizeof(l->ss);
	getsockname(fd, (struct sockaddr *)&l->ss, &l->len);
	l->fd = fd;
	return 0;
}

static void listener_format(struct listener *l)
{
	char ip[INET6_ADDRSTRLEN];

	if (l->ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l->ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(l->text, sizeof(l->text), "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&l->ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(l->text, sizeof(l->text), "%s:%u", ip, ntohs(s4->sin_port));
	}
}

/* Called by the accept loop when refuse_efd fires. */
static void listeners_apply_refuse(void)
{
	uint64_t v;
	int i, err = 0;

	if (read(refuse_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("cannot read refuse eventfd: %s", strerror(errno));
	pthread_mutex_lock(&refuse_lock);
	for (i = 0; i < n_listeners; i++) {
		struct listener *l = &listeners[i];

		if (refuse_want && l->fd >= 0) {
			close(l->fd);
			l->fd = -1;
		} else if (!refuse_want && l->fd < 0) {
			int e = listener_bind(l);

			if (e) {
				pr_warn("cannot re-bind %s: %s", l->text, strerror(-e));
				err = e;
			}
		}
	}
	refuse_applied = refuse_want;
	refuse_err = err;
	pthread_cond_broadcast(&refuse_cond);
	pthread_mutex_unlock(&refuse_lock);
}

/* Asks the accept loop to close or re-bind, and waits. Returns 0 or -errno. */
static int listeners_set_refuse(bool refuse)
{
	uint64_t one = 1;
	int err;

	pthread_mutex_lock(&refuse_lock);
	refuse_want = refuse;
	if (write(refuse_efd, &one, sizeof(one)) < 0) {
		err = -errno;
		pthread_mutex_unlock(&refuse_lock);
		return err;
	}
	while (refuse_applied != refuse_want)
		pthread_cond_wait(&refuse_cond, &refuse_lock);
	err = refuse_err;
	pthread_mutex_unlock(&refuse_lock);
	return err;
}

/* ---- /_ctl ---- */

/*
 * Applies a mode form (k=v&...) to *m. Returns 0, or -EINVAL with the
 * offending key copied into bad.
 */
static int mode_parse_form(const char *form, struct backend_mode *m, char bad[FORM_FIELD_MAX])
{
	char kv[FORM_FIELD_MAX], val[FORM_FIELD_MAX];
	int err = 0;

	while (form_next(&form, kv, val)) {
		if (!strcmp(kv, "delay_ms"))
			err = parse_int(val, 0, DELAY_MS_MAX, &m->delay_ms);
		else if (!strcmp(kv, "status"))
			err = parse_int(val, 200, 999, &m->status);
		else if (!strcmp(kv, "fail_rate"))
			err = parse_rate(val, &m->fail_rate);
		else if (!strcmp(kv, "fail_status"))
			err = parse_int(val, 200, 999, &m->fail_status);
		else if (!strcmp(kv, "body_bytes") && !strcmp(val, "default"))
			m->body_bytes = UINT64_MAX;
		else if (!strcmp(kv, "body_bytes"))
			err = parse_u64(val, 0, BODY_BYTES_MAX, &m->body_bytes);
		else if (!strcmp(kv, "reset"))
			err = parse_bool(val, &m->reset);
		else if (!strcmp(kv, "refuse"))
			err = parse_bool(val, &m->refuse);
		else
			err = -EINVAL;
		if (err) {
			strcpy(bad, kv);
			return err;
		}
	}
	return 0;
}

/*
 * Serves a /_ctl request (not counted in the stats). Returns 0 to keep the
 * connection, or -1 after closing it.
 */
static int ctl_handle(struct conn *c, struct request *rq, bool keep_alive)
{
	struct ctl_body *body = NULL;
	char *json = NULL;
	char bad[FORM_FIELD_MAX] = "";
	struct backend_mode m;
	struct iovec iov[2];
	size_t json_len = 0, head_len;
	uint64_t total;
	int status = 200, err;

	json = malloc(JSON_MAX);
	body = calloc(1, sizeof(*body));
	if (!json || !body)
		goto fail;
	if (rq->expect_continue && rq->minor == 1 && (rq->chunked || rq->cl))
		write_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	err = conn_read_body(c, rq, ctl_sink, body, &total);
	if (err == -EMSGSIZE) {
		conn_send_simple(c, 413, "control body too large\n");
		conn_close_lingering(c);
		goto out;
	} else if (err) {
		goto fail;
	}

	if (!strcmp(rq->path, "/_ctl/stats") && !strcmp(rq->method, "GET")) {
		json_len = stats_render(json);
	} else if (!strcmp(rq->path, "/_ctl/stats/reset") && !strcmp(rq->method, "POST")) {
		stats_reset();
		json_len = stats_render(json);
	} else if (!strcmp(rq->path, "/_ctl/mode") && !strcmp(rq->method, "GET")) {
		json_len = mode_render(json);
	} else if (!strcmp(rq->path, "/_ctl/mode") && !strcmp(rq->method, "POST")) {
		pthread_mutex_lock(&ctl_lock);
		pthread_mutex_lock(&mode_lock);
		m = mode;
		pthread_mutex_unlock(&mode_lock);
		err = mode_parse_form(rq->query, &m, bad);
		if (!err)
			err = mode_parse_form(body->data, &m, bad);
		if (err) {
			status = 400;
			snprintf(json, JSON_MAX, "{\"error\":\"bad mode field '%.64s'\"}\n", bad);
			json_len = strlen(json);
		} else {
			err = listeners_set_refuse(m.refuse);
			pthread_mutex_lock(&mode_lock);
			mode = m;
			pthread_mutex_unlock(&mode_lock);
			if (err) {
				status = 500;
				snprintf(json, JSON_MAX, "{\"error\":\"cannot re-bind: %s\"}\n",
					 strerror(-err));
				json_len = strlen(json);
			} else {
				json_len = mode_render(json);
			}
		}
		pthread_mutex_unlock(&ctl_lock);
	} else {
		status = 404;
		snprintf(json, JSON_MAX,
			 "{\"error\":\"GET /_ctl/stats, POST /_ctl/stats/reset, GET|POST "
			 "/_ctl/mode\"}\n");
		json_len = strlen(json);
	}

	head_len = response_head(c, rq, status, json_len, keep_alive,
				 "Content-Type: application/json\r\n", atomic_load(&served_total));
	if (!head_len)
		goto fail;
	iov[0].iov_base = c->out;
	iov[0].iov_len = head_len;
	iov[1].iov_base = json;
	iov[1].iov_len = rq->is_head ? 0 : json_len;
	if (writev_all(c->fd, iov, 2))
		goto fail;
	free(json);
	free(body);
	if (keep_alive)
		return 0;
	conn_close_lingering(c);
	return -1;
fail:
	close(c->fd);
	c->fd = -1;
out:
	free(json);
	free(body);
	return -1;
}

/* ---- upgrades: WebSocket echo and the raw shoal-echo tunnel ---- */

static int ws_send_frame_head(int fd, unsigned int b0, uint64_t len)
{
	unsigned char h[10];
	size_t n = 2;
	int i;

	h[0] = (unsigned char)b0;
	if (len < 126) {
		h[1] = (unsigned char)len;
	} else if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		n = 4;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	return write_all(fd, h, n);
}

static void ws_close(struct conn *c, unsigned int code)
{
	unsigned char p[2] = {(unsigned char)(code >> 8), (unsigned char)code};

	if (!ws_send_frame_head(c->fd, 0x88, 2))
		write_all(c->fd, p, 2);
	conn_close_lingering(c);
}

/*
 * Echoes WebSocket frames (RFC 6455) until a close handshake or error.
 * Data frames come back with the same opcode and FIN, so fragmented
 * messages are echoed fragment by fragment; ping gets pong. Always closes.
 */
static void ws_echo(struct conn *c)
{
	unsigned char b0, b1, mask[4];
	unsigned int opcode;
	uint64_t len, i, off;
	size_t hlen, avail;
	char *p;

	for (;;) {
		if (conn_need(c, 2))
			break;
		b0 = (unsigned char)c->in[c->start];
		b1 = (unsigned char)c->in[c->start + 1];
		opcode = b0 & 0x0f;
		hlen = 2 + ((b1 & 0x7f) == 126 ? 2 : (b1 & 0x7f) == 127 ? 8 : 0) + 4;
		if (!(b1 & 0x80) || (b0 & 0x70)) {
			/* Clients must mask; RSV bits need an extension we never agreed to. */
			ws_close(c, 1002);
			return;
		}
		if (conn_need(c, hlen))
			break;
		p = c->in + c->start + 2;
		len = b1 & 0x7f;
		if (len == 126) {
			len = (uint64_t)(unsigned char)p[0] << 8 | (unsigned char)p[1];
			p += 2;
		} else if (len == 127) {
			len = 0;
			for (i = 0; i < 8; i++)
				len = len << 8 | (unsigned char)p[i];
			p += 8;
		}
		memcpy(mask, p, 4);
		c->start += hlen;
		if (opcode >= 8 && (len > 125 || !(b0 & 0x80))) {
			ws_close(c, 1002);
			return;
		}
		if ((opcode > 2 && opcode < 8) || opcode > 10) {
			ws_close(c, 1002);
			return;
		}
		if (len > WS_FRAME_MAX) {
			ws_close(c, 1009);
			return;
		}
		if (opcode == 8) {
			/* Close: answer with the same payload (status code), then go. */
			if (conn_need(c, (size_t)len))
				break;
			for (i = 0; i < len; i++)
				c->in[c->start + i] ^= (char)mask[i % 4];
			if (!ws_send_frame_head(c->fd, 0x88, len))
				write_all(c->fd, c->in + c->start, (size_t)len);
			c->start += (size_t)len;
			conn_close_lingering(c);
			return;
		}
		if (opcode == 10) { /* pong: nothing to answer */
			if (conn_copy_bytes(c, len, NULL, NULL))
				break;
			continue;
		}
		/* Ping becomes pong; data frames keep opcode and FIN. */
		if (ws_send_frame_head(c->fd, opcode == 9 ? 0x8a : b0, len))
			break;
		for (off = 0; off < len;) {
			if (c->start == c->end && conn_fill(c) <= 0)
				goto out;
			avail = c->end - c->start;
			if (avail > len - off)
				avail = (size_t)(len - off);
			for (i = 0; i < avail; i++)
				c->in[c->start + i] ^= (char)mask[(off + i) % 4];
			if (write_all(c->fd, c->in + c->start, avail))
				goto out;
			c->start += avail;
			off += avail;
		}
	}
out:
	close(c->fd);
	c->fd = -1;
}

/* Echoes raw bytes until EOF, then half-closes and closes. */
static void tunnel_echo(struct conn *c)
{
	ssize_t n;

	for (;;) {
		if (c->start < c->end) {
			if (write_all(c->fd, c->in + c->start, c->end - c->start))
				break;
			c->start = c->end;
		}
		n = conn_fill(c);
		if (n <= 0) {
			if (n == 0)
				shutdown(c->fd, SHUT_WR);
			break;
		}
	}
	close(c->fd);
	c->fd = -1;
}

/*
 * Answers an Upgrade to /ws (websocket) or /echo (shoal-echo) with 101 and
 * runs the echo. Returns 1 when it took the connection (now closed), 0 when
 * the request is not an upgrade we serve.
 */
static int upgrade_handle(struct conn *c, struct request *rq)
{
	uint8_t digest[SHA1_DIGEST_LEN];
	char keybuf[128 + sizeof(WS_GUID)], accept[BASE64_LEN(SHA1_DIGEST_LEN)];
	char extra[256];
	unsigned long count;
	size_t len;
	bool ws;

	if (!rq->upgrade || !rq->conn_upgrade)
		return 0;
	if (!strcmp(rq->path, "/ws") && list_has_token(rq->upgrade, "websocket"))
		ws = true;
	else if (!strcmp(rq->path, "/echo") && list_has_token(rq->upgrade, "shoal-echo"))
		ws = false;
	else
		return 0;

	if (ws) {
		if (strcmp(rq->method, "GET") || !rq->ws_key || strlen(rq->ws_key) > 128) {
			conn_send_simple(c, 400, "websocket needs GET and Sec-WebSocket-Key\n");
			conn_close_lingering(c);
			return 1;
		}
		if (!rq->ws_version || strcmp(rq->ws_version, "13")) {
			conn_send_simple(c, 426, "Sec-WebSocket-Version: 13 only\n");
			conn_close_lingering(c);
			return 1;
		}
		len = (size_t)snprintf(keybuf, sizeof(keybuf), "%s%s", rq->ws_key, WS_GUID);
		backend_sha1(keybuf, len, digest);
		backend_base64(digest, SHA1_DIGEST_LEN, accept);
		snprintf(
		    extra, sizeof(extra),
		    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
		    accept);
	} else {
		snprintf(extra, sizeof(extra), "Upgrade: shoal-echo\r\nConnection: Upgrade\r\n");
	}
	stats_count_request(rq->method);
	count = atomic_fetch_add(&served_total, 1) + 1;
	/* 101 has no framing fields; keep_alive true keeps "Connection: close" out. */
	len = response_head(c, rq, 101, 0, true, extra, count);
	if (!len || write_all(c->fd, c->out, len)) {
		close(c->fd);
		c->fd = -1;
		return 1;
	}
	stats_count_status(101);
	if (ws)
		ws_echo(c);
	else
		tunnel_echo(c);
	return 1;
}

/* ---- serving one request ---- */

/*
 * Serves the request in rq: body, delay, failure roll, then the response or
 * a reset. Returns 0 to read the next request, -1 once the connection is
 * closed.
 */
static int request_serve(struct conn *c, struct request *rq)
{
	struct backend_mode m;
	struct req_opts o;
	struct iovec iov[2];
	char extra[128], defbody[METHOD_NAME_MAX + 256];
	const char *why = "";
	uint64_t body_total = 0, body_len;
	unsigned long count;
	bool keep_alive, send_body, reset_now;
	size_t head_len, elen = 0;
	int err, status;

	keep_alive = rq->minor == 1 ? !rq->conn_close : rq->conn_keep_alive && !rq->conn_close;

	if (!strncmp(rq->path, "/_ctl/", 6))
		return ctl_handle(c, rq, keep_alive);
	if (upgrade_handle(c, rq))
		return -1;

	pthread_mutex_lock(&mode_lock);
	m = mode;
	pthread_mutex_unlock(&mode_lock);
	o = (struct req_opts){
	    .delay_ms = m.delay_ms,
	    .status = m.status,
	    .fail_rate = m.fail_rate,
	    .fail_status = m.fail_status,
	    .body_bytes = m.body_bytes,
	    .reset = m.reset,
	};
	status = request_parse_query(rq->query, &o, &why);
	if (status) {
		conn_send_simple(c, status, why);
		conn_close_lingering(c);
		return -1;
	}

	stats_count_request(rq->method);
	count = atomic_fetch_add(&served_total, 1) + 1;

	if (o.reset) {
		/* Reset instead of answering: the body is not worth waiting for. */
		if (o.delay_ms)
			sleep_ms(o.delay_ms);
		stats_count_reset();
		conn_reset(c);
		return -1;
	}

	/* RFC 9110 10.1.1: no 100 (Continue) to an HTTP/1.0 client. */
	if (rq->expect_continue && rq->minor == 1 && (rq->chunked || rq->cl)) {
		err = write_all(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		if (err)
			goto fail;
	}

	if (o.echo && !rq->is_head) {
		/* Echo streams the body back as it arrives, so framing mirrors the request. */
		bool chunked = rq->chunked;

		if (o.delay_ms)
			sleep_ms(o.delay_ms);
		if (o.close)
			keep_alive = false;
		head_len = response_head(c, rq, 200, chunked ? UINT64_MAX : rq->cl, keep_alive,
					 "Content-Type: application/octet-stream\r\n", count);
		if (!head_len || write_all(c->fd, c->out, head_len))
			goto fail;
		err = conn_read_body(c, rq, echo_sink, &chunked, &body_total);
		if (err == -EBADMSG) /* the head is out; all we can do is cut it short */
			goto fail;
		if (err || (chunked && write_all(c->fd, "0\r\n\r\n", 5)))
			goto fail;
		stats_count_status(200);
		goto done;
	}

	err = conn_read_body(c, rq, NULL, NULL, &body_total);
	if (err == -EBADMSG) {
		conn_send_simple(c, 400, "bad chunked framing\n");
		conn_close_lingering(c);
		return -1;
	} else if (err) {
		goto fail;
	}

	if (o.delay_ms)
		sleep_ms(o.delay_ms);
	status = o.status;
	if (o.fail_rate > 0 && backend_random() < o.fail_rate)
		status = o.fail_status;
	if (o.close)
		keep_alive = false;

	if (o.headers) {
		/* The head as it arrived, from the request line to the blank line. */
		body_len = c->raw_len;
		o.body_bytes = UINT64_MAX;
		o.chunked = false;
	} else if (o.body_bytes == UINT64_MAX) {
		body_len = (uint64_t)snprintf(defbody, sizeof(defbody), "%s\n", opt_name);
		if (body_len >= sizeof(defbody))
			body_len = sizeof(defbody) - 1;
	} else {
		body_len = o.body_bytes;
	}
	/*
	 * 304, like HEAD, announces the length a 200 would have had (RFC 9110
	 * 8.6) but sends nothing: a proxy that waits for those bytes hangs.
	 */
	if (status < 200 || status == 204)
		body_len = 0;
	send_body = !rq->is_head && status_has_body(status) && body_len;

	buf_printf(extra, sizeof(extra), &elen, "x-seen-body-bytes: %" PRIu64 "\r\n", body_total);
	if (o.retry_after)
		buf_printf(extra, sizeof(extra), &elen, "Retry-After: %d\r\n", o.retry_after);
	buf_printf(extra, sizeof(extra), &elen, "Content-Type: text/plain\r\n");
	head_len = response_head(c, rq, status,
				 o.chunked && status_has_body(status) ? UINT64_MAX : body_len,
				 keep_alive, extra, count);
	if (!head_len)
		goto fail;

	reset_now = o.reset_after_headers;
	if (o.chunked && status_has_body(status) && !rq->is_head && !reset_now) {
		if (write_all(c->fd, c->out, head_len) || send_pattern(c->fd, body_len, true))
			goto fail;
	} else if (o.body_bytes == UINT64_MAX || !send_body || reset_now) {
		iov[0].iov_base = c->out;
		iov[0].iov_len = head_len;
		iov[1].iov_base = o.headers ? c->raw : defbody;
		iov[1].iov_len = send_body && !reset_now ? (size_t)body_len : 0;
		if (writev_all(c->fd, iov, 2))
			goto fail;
	} else {
		if (write_all(c->fd, c->out, head_len) || send_pattern(c->fd, body_len, false))
			goto fail;
	}
	if (reset_now) {
		stats_count_reset();
		conn_reset(c);
		return -1;
	}
	stats_count_status(status);
done:
	if (keep_alive)
		return 0;
	conn_close_lingering(c);
	return -1;
fail:
	close(c->fd);
	c->fd = -1;
	return -1;
}

/*
 * Reads and serves requests on one connection until it closes. Leading
 * empty lines before a request are skipped (RFC 9112 2.2).
 */
static void conn_serve(struct conn *c)
{
	struct request rq;
	const char *why = "";
	char *eoh;
	size_t head_len, scanned;
	ssize_t n;
	int status;

	for (;;) {
		scanned = 0;
		for (;;) {
			while (c->end - c->start >= 2 && c->in[c->start] == '\r' &&
			       c->in[c->start + 1] == '\n')
				c->start += 2;
			eoh = memmem(c->in + c->start + scanned, c->end - c->start - scanned,
				     "\r\n\r\n", 4);
			if (eoh)
				break;
			scanned = c->end - c->start > 3 ? c->end - c->start - 3 : 0;
			if (c->end - c->start >= HEAD_MAX) {
				bool has_line =
				    memmem(c->in + c->start, REQUEST_LINE_MAX, "\r\n", 2);

				conn_send_simple(c, has_line ? 431 : 414,
						 has_line ? "request head too large\n"
							  : "request line too long\n");
				conn_close_lingering(c);
				return;
			}
			n = conn_fill(c);
			if (n <= 0) {
				close(c->fd);
				c->fd = -1;
				return;
			}
		}
		head_len = (size_t)(eoh - (c->in + c->start)) + 4;
		memcpy(c->head, c->in + c->start, head_len);
		memcpy(c->raw, c->in + c->start, head_len);
		c->raw_len = head_len;
		c->start += head_len;
		status = request_parse(c, head_len, &rq, &why);
		if (status) {
			char msg[128];

			snprintf(msg, sizeof(msg), "%s\n", why);
			conn_send_simple(c, status, msg);
			conn_close_lingering(c);
			return;
		}
		if (request_serve(c, &rq))
			return;
	}
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;

	conn_serve(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	atomic_fetch_sub(&conn_count, 1);
	return NULL;
}

/* ---- accept loop, signals, main ---- */

static void conn_start(int fd, const struct sockaddr_storage *ss, pthread_attr_t *attr)
{
	struct timeval tv = {.tv_sec = CONN_IO_TIMEOUT_S};
	struct conn *c;
	pthread_t tid;
	int one = 1;

	if (atomic_fetch_add(&conn_count, 1) >= CONN_MAX) {
		atomic_fetch_sub(&conn_count, 1);
		close(fd);
		return;
	}
	c = malloc(sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&conn_count, 1);
		close(fd);
		return;
	}
	c->fd = fd;
	c->start = 0;
	c->end = 0;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
		c->peer_port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof(c->peer_ip));
		c->peer_port = ntohs(s4->sin_port);
	}
	/* Small writes (100 Continue, then the response) must not wait for Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (pthread_create(&tid, attr, conn_thread, c)) {
		pr_warn("cannot start a connection thread: %s", strerror(errno));
		close(fd);
		free(c);
		atomic_fetch_sub(&conn_count, 1);
	}
}

static void accept_loop(void)
{
	struct pollfd pfd[BACKEND_MAX_LISTENERS + 1];
	struct sockaddr_storage ss = {0};
	pthread_attr_t attr;
	socklen_t sl;
	int i, n, fd;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, CONN_STACK_SIZE);
	for (;;) {
		for (i = 0; i < n_listeners; i++) {
			pfd[i].fd = listeners[i].fd; /* -1 while refusing: poll skips it */
			pfd[i].events = POLLIN;
		}
		pfd[n_listeners].fd = refuse_efd;
		pfd[n_listeners].events = POLLIN;
		n = poll(pfd, (nfds_t)n_listeners + 1, -1);
		if (n < 0) {
			if (errno != EINTR)
				pr_warn("poll: %s", strerror(errno));
			continue;
		}
		if (pfd[n_listeners].revents & POLLIN) {
			listeners_apply_refuse();
			continue;
		}
		for (i = 0; i < n_listeners; i++) {
			if (!(pfd[i].revents & POLLIN) || listeners[i].fd < 0)
				continue;
			sl = sizeof(ss);
			fd = accept4(listeners[i].fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
			if (fd < 0) {
				/* Out of fds: back off instead of spinning on a ready listener. */
				if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
					sleep_ms(10);
				continue;
			}
			conn_start(fd, &ss, &attr);
		}
	}
}

/* SIGUSR1 writes the stats file; SIGTERM/SIGINT write it and exit. */
static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int sig;

	for (;;) {
		if (sigwait(set, &sig))
			continue;
		stats_write_file();
		if (sig != SIGUSR1) {
			fflush(stdout);
			_exit(0);
		}
	}
	return NULL;
}

/* Parses a.b.c.d:PORT or [v6]:PORT into l. Returns 0 or -EINVAL. */
static int listener_parse(const char *s, struct listener *l)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon;
	int port;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host) || parse_int(colon + 1, 0, 65535, &port))
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (host[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&l->ss;
		size_t hl = strlen(host);

		if (hl < 3 || host[hl - 1] != ']')
			return -EINVAL;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		l->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&l->ss;

		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -EINVAL;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		l->len = sizeof(*s4);
	}
	return 0;
}

static void __attribute__((noreturn)) usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "shoal-backend: %s\n", msg);
	fprintf(stderr, "usage: shoal-backend --listen ADDR:PORT [--listen ...] --name NAME\n"
			"         [--delay-ms N] [--status N] [--fail-rate F] [--fail-status N]\n"
			"         [--body-bytes N] [--seed S] [--stats-file PATH]\n"
			"ADDR is a.b.c.d or [v6]; see tests/tools/README.md for query parameters\n"
			"and the /_ctl endpoints.\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"name", required_argument, NULL, 'n'},
	    {"delay-ms", required_argument, NULL, 'd'},
	    {"status", required_argument, NULL, 's'},
	    {"fail-rate", required_argument, NULL, 'f'},
	    {"fail-status", required_argument, NULL, 'F'},
	    {"body-bytes", required_argument, NULL, 'b'},
	    {"seed", required_argument, NULL, 'S'},
	    {"stats-file", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {},
	};
	static sigset_t sigs;
	struct rlimit nofile;
	pthread_t tid;
	int opt, i, err;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			if (n_listeners == BACKEND_MAX_LISTENERS)
				usage("too many --listen");
			if (listener_parse(optarg, &listeners[n_listeners++]))
				usage("--listen wants a.b.c.d:PORT or [v6]:PORT");
			break;
		case 'n':
			/* The name goes into a header: keep it a token. */
			for (i = 0; optarg[i]; i++)
				if (!is_tchar((unsigned char)optarg[i]))
					usage("--name must be a token (letters, digits, -._~...)");
			if (!i || i > 200)
				usage("--name must be 1 to 200 characters");
			opt_name = optarg;
			break;
		case 'd':
			if (parse_int(optarg, 0, DELAY_MS_MAX, &mode.delay_ms))
				usage("bad --delay-ms");
			break;
		case 's':
			if (parse_int(optarg, 200, 999, &mode.status))
				usage("bad --status (200..999)");
			break;
		case 'f':
			if (parse_rate(optarg, &mode.fail_rate))
				usage("bad --fail-rate (0..1)");
			break;
		case 'F':
			if (parse_int(optarg, 200, 999, &mode.fail_status))
				usage("bad --fail-status (200..999)");
			break;
		case 'b':
			if (parse_u64(optarg, 0, BODY_BYTES_MAX, &mode.body_bytes))
				usage("bad --body-bytes");
			break;
		case 'S':
			if (parse_u64(optarg, 0, UINT64_MAX, &opt_seed))
				usage("bad --seed");
			break;
		case 'o':
			opt_stats_file = optarg;
			break;
		default:
			usage(NULL);
		}
	}
	if (optind != argc || !n_listeners)
		usage("need at least one --listen");

	for (i = 0; i < PATTERN_LEN; i++)
		pattern[i] = (char)('a' + i % 26);

	/* One fd per connection: a 1024 soft limit would cap us below CONN_MAX. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile) && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}

	/* Signals go to one thread only, so the handlers may take locks. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	refuse_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (refuse_efd < 0) {
		pr_warn("cannot create eventfd: %s", strerror(errno));
		return 1;
	}
	for (i = 0; i < n_listeners; i++) {
		listener_format(&listeners[i]);
		err = listener_bind(&listeners[i]);
		if (err) {
			pr_warn("cannot listen on %s: %s", listeners[i].text, strerror(-err));
			return 1;
		}
		listener_format(&listeners[i]);
		printf("shoal-backend %s listening on %s\n", opt_name, listeners[i].text);
	}
	fflush(stdout);
	err = pthread_create(&tid, NULL, signal_thread, &sigs);
	if (err) {
		pr_warn("cannot start the signal thread: %s", strerror(err));
		return 1;
	}
	accept_loop();
	return 0;
}

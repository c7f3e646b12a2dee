// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * shoal-cni: a chained CNI plugin (CNI spec 1.0, and 0.3.x/0.4.0) that
 * enrolls a pod's network namespace synchronously, before the pod's
 * containers start, by asking shoald over its Unix socket
 * (enroll/cni_proto.h, docs/enrollment.md "The CNI plugin").
 *
 *   ADD    ask shoald to enroll CNI_NETNS; print prevResult unchanged
 *   DEL    tell shoald the sandbox goes; print nothing
 *   CHECK  check the config and prevResult; print nothing
 *   VERSION  the versions this plugin speaks
 *
 * It never fails a pod because of the mesh: when shoald is down or
 * slow, or refuses, the plugin logs to stderr (the runtime's log) and
 * succeeds; the pod starts unenrolled (fail open), and shoald's re-scan
 * enrolls it once it is back. Only a broken invocation (no prevResult,
 * a missing variable, bad JSON) is an error, as the spec requires.
 *
 * Also its own installer, for the DaemonSet's init container:
 *   shoal-cni install --bin-dir DIR --conf-dir DIR [--socket PATH]
 *                     [--socket-owner UID] [--owner TOKEN] [--wait]
 *   shoal-cni uninstall --bin-dir DIR --conf-dir DIR
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "enroll/cni_proto.h"

#define PLUGIN_TYPE "shoal-cni"
/* Largest network config on stdin: a conflist entry and its prevResult. */
#define CNI_MAX_STDIN (1u << 20)
/*
 * The installer that owns the plugin, in the conf dir (a dot file: no
 * runtime loads it): the last one to install. One that stops removes the
 * plugin only while it still owns it, so that a surge pod's installer
 * keeps what it installed when the old pod's stops (docs/enrollment.md).
 */
#define OWNER_FILE ".shoal-cni.owner"
/* An owner token: --owner's, or 16 random hex digits. */
#define OWNER_MAX 128
/*
 * A waiting installer checks this often that its plugin binary and
 * conflist entry are still there, and puts them back if not (another
 * installer that owned them stopped): cheap, and a few seconds without
 * the plugin on a node is what a pod created then would see anyway.
 */
#define INSTALL_RECHECK_SEC 2
/* The CNI spec's error codes. */
#define CNI_ERR_INCOMPATIBLE 1
#define CNI_ERR_ENV 4
#define CNI_ERR_DECODE 6
#define CNI_ERR_CONFIG 7

static const char *const versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};

static const char *cni_version = "1.0.0"; /* of the config, for error replies */

static void __attribute__((format(printf, 1, 2))) logf_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shoal-cni: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The spec's error object on stdout; returns the exit status. */
static int cni_error(int code, const char *msg, const char *details)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "cniVersion", json_object_new_string(cni_version));
	json_object_object_add(o, "code", json_object_new_int(code));
	json_object_object_add(o, "msg", json_object_new_string(msg));
	json_object_object_add(o, "details", json_object_new_string(details ? details : ""));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
	logf_("%s: %s", msg, details ? details : "");
	return 1;
}

/* cni_error, then release conf (msg and details may point into it). */
static int conf_error(json_object *conf, int code, const char *msg, const char *details)
{
	int rc = cni_error(code, msg, details);

	json_object_put(conf);
	return rc;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static char *read_stdin(size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);

	if (!buf)
		return NULL;
	for (;;) {
		ssize_t r;

		if (n + 1 >= cap) {
			char *grown = cap >= CNI_MAX_STDIN ? NULL : realloc(buf, cap * 2);

			if (!grown) {
				free(buf);
				return NULL;
			}
			buf = grown;
			cap *= 2;
		}
		r = read(STDIN_FILENO, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* value of KEY in CNI_ARGS ("K1=V1;K2=V2"), into out; "" when absent. */
static void cni_arg(const char *args, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);
	const char *p = args;

	out[0] = '\0';
	while (p && *p) {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			n -= klen + 1;
			if (n >= len)
				n = len - 1;
			memcpy(out, p + klen + 1, n);
			out[n] = '\0';
			return;
		}
		p = end ? end + 1 : NULL;
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Send the request to shoald and read its answer into reply, all within
 * ENROLL_CNI_TIMEOUT_MS. Returns 0, or -errno (shoald down, slow).
 */
static int ask_shoald(const char *socket_path, const char *req, char *reply, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t end = now_ms() + ENROLL_CNI_TIMEOUT_MS;
	size_t got = 0, sent = 0, rlen = strlen(req);
	int fd, err = 0;

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A Unix connect either succeeds or fails at once (EAGAIN: backlog full). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		goto out;
	}
	while (!err) {
		struct pollfd pfd = {.fd = fd, .events = sent < rlen ? POLLOUT : POLLIN};
		uint64_t now = now_ms();
		ssize_t n;

		if (now >= end) {
			err = -ETIMEDOUT;
			break;
		}
		if (poll(&pfd, 1, (int)(end - now)) <= 0)
			continue;
		if (sent < rlen) {
			n = write(fd, req + sent, rlen - sent);
			if (n < 0 && errno != EAGAIN)
				err = -errno;
			else if (n > 0)
				sent += (size_t)n;
			continue;
		}
		n = read(fd, reply + got, len - 1 - got);
		if (n < 0 && errno != EAGAIN) {
			err = -errno;
		} else if (n == 0 || (n > 0 && memchr(reply + got, '\n', (size_t)n))) {
			got += n > 0 ? (size_t)n : 0;
			break;
		} else if (n > 0) {
			got += (size_t)n;
			if (got == len - 1)
				break;
		}
	}
	reply[got] = '\0';
	if (!err && !got)
		err = -ECONNRESET;
out:
	close(fd);
	return err;
}

static bool version_known(const char *v)
{
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		if (!strcmp(v, versions[i]))
			return true;
	return false;
}

static int cmd_version(void)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
		json_object_array_add(a, json_object_new_string(versions[i]));
	json_object_object_add(o, "cniVersion", json_object_new_string("1.0.0"));
	json_object_object_add(o, "supportedVersions", a);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return 0;
}

/* The plugin proper: CNI_COMMAND ADD, DEL or CHECK. */
static int cmd_plugin(const char *command)
{
	const char *netns = getenv("CNI_NETNS"), *cid = getenv("CNI_CONTAINERID");
	const char *args = getenv("CNI_ARGS"), *sock, *v;
	char ns[256], name[256], uid[64], reply[ENROLL_CNI_MAX_MESSAGE];
	json_object *conf, *prev = NULL, *req, *ans;
	size_t len;
	char *text = read_stdin(&len);
	int err;

	if (!text)
		return cni_error(CNI_ERR_DECODE, "cannot read the network configuration",
				 "stdin unreadable or larger than 1 MiB");
	conf = json_tokener_parse(text);
	free(text);
	if (!conf || !json_object_is_type(conf, json_type_object))
		return conf_error(conf, CNI_ERR_DECODE,
				  "the network configuration is not a JSON object", NULL);
	v = jstr(conf, "cniVersion");
	if (v)
		cni_version = v;
	if (!v || !version_known(v))
		return conf_error(conf, CNI_ERR_INCOMPATIBLE, "incompatible CNI version",
				  v ? v : "cniVersion missing");
	sock = jstr(conf, "socket");
	if (!sock || !*sock)
		sock = ENROLL_CNI_DEFAULT_SOCKET;
	json_object_object_get_ex(conf, "prevResult", &prev);
	if (strcmp(command, "DEL") && (!prev || !json_object_is_type(prev, json_type_object)))
		return conf_error(conf, CNI_ERR_CONFIG, "no prevResult",
				  PLUGIN_TYPE
				  " is a chained plugin: it must follow the plugin that "
				  "sets up the pod's interface");
	if (!cid || !*cid)
		return conf_error(conf, CNI_ERR_ENV, "CNI_CONTAINERID is not set", NULL);
	if (strcmp(command, "DEL") && (!netns || !*netns))
		return conf_error(conf, CNI_ERR_ENV, "CNI_NETNS is not set", NULL);
	cni_arg(args, "K8S_POD_NAMESPACE", ns, sizeof(ns));
	cni_arg(args, "K8S_POD_NAME", name, sizeof(name));
	cni_arg(args, "K8S_POD_UID", uid, sizeof(uid));

	req = json_object_new_object();
	json_object_object_add(req, "command", json_object_new_string(command));
	json_object_object_add(req, "container_id", json_object_new_string(cid));
	json_object_object_add(req, "netns", json_object_new_string(netns ? netns : ""));
	json_object_object_add(req, "pod_namespace", json_object_new_string(ns));
	json_object_object_add(req, "pod_name", json_object_new_string(name));
	json_object_object_add(req, "pod_uid", json_object_new_string(uid));
	{
		char line[ENROLL_CNI_MAX_MESSAGE];

		snprintf(line, sizeof(line), "%s\n",
			 json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
		err = !*ns || !*name ? -EINVAL : ask_shoald(sock, line, reply, sizeof(reply));
	}
	json_object_put(req);
	if (err == -EINVAL) {
		logf_("%s %s: CNI_ARGS names no pod (K8S_POD_NAMESPACE, K8S_POD_NAME): not a "
		      "Kubernetes sandbox, left alone",
		      command, cid);
	} else if (err) {
		/* Fail open: the pod starts; shoald's re-scan enrolls it later. */
		logf_("%s %s/%s: shoald at %s did not answer (%s): the pod starts unenrolled "
		      "and is enrolled once shoald is back",
		      command, ns, name, sock, strerror(-err));
	} else {
		ans = json_tokener_parse(reply);
		v = jstr(ans, "result");
		if (!v ||
		    (strcmp(v, "enrolled") && strcmp(v, "unmeshed") && strcmp(v, "unenrolled")))
			logf_("%s %s/%s: shoald answered %s: %s", command, ns, name, v ? v : "?",
			      jstr(ans, "message") ? jstr(ans, "message") : reply);
		json_object_put(ans);
	}
	if (!strcmp(command, "ADD"))
		puts(json_object_to_json_string_ext(prev, JSON_C_TO_STRING_PLAIN));
	json_object_put(conf);
	return 0;
}

/* ---- install / uninstall ---- */

static int write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.shoal-tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

/* Copy this very binary to bin_dir/shoal-cni. */
static int install_binary(const char *bin_dir)
{
	char path[PATH_MAX];
	struct stat st;
	char *buf;
	int fd, err;

	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	buf = malloc((size_t)st.st_size);
	if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
		free(buf);
		close(fd);
		return -EIO;
	}
	close(fd);
	snprintf(path, sizeof(path), "%s/%s", bin_dir, PLUGIN_TYPE);
	err = write_atomic(path, buf, (size_t)st.st_size, 0755);
	free(buf);
	return err;
}

/* The primary network's conflist: the first *.conflist by name, not ours. */
static int find_conflist(const char *conf_dir, char *out, size_t len)
{
	struct dirent **names;
	int n = scandir(conf_dir, &names, NULL, alphasort), found = -ENOENT;

	if (n < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		const char *d = names[i]->d_name;
		size_t l = strlen(d);

		if (found && l > 9 && !strcmp(d + l - 9, ".conflist"))
			found =
			    snprintf(out, len, "%s/%s", conf_dir, d) < (int)len ? 0 : -ENAMETOOLONG;
		free(names[i]);
	}
	free(names);
	return found;
}

/* Add (or, when socket is NULL, remove) our entry in the conflist at path. */
static int edit_conflist(const char *path, const char *socket_path, bool *changed)
{
	json_object *conf = json_object_from_file(path), *plugins, *kept;
	const char *text;
	bool ours = false;
	int err;

	*changed = false;
	if (!conf || !json_object_object_get_ex(conf, "plugins", &plugins) ||
	    !json_object_is_type(plugins, json_type_array)) {
		json_object_put(conf);
		logf_("%s: not a conflist with a plugins array", path);
		return -EINVAL;
	}
	kept = json_object_new_array();
	for (size_t i = 0; i < json_object_array_length(plugins); i++) {
		json_object *p = json_object_array_get_idx(plugins, i);
		const char *type = jstr(p, "type");

		if (type && !strcmp(type, PLUGIN_TYPE)) {
			ours = true;
			if (!socket_path) {
				*changed = true;
				continue;
			}
			/* Ours, already: keep it, with the socket asked for. */
			if (!jstr(p, "socket") || strcmp(jstr(p, "socket"), socket_path)) {
				json_object_object_add(p, "socket",
						       json_object_new_string(socket_path));
				*changed = true;
			}
		}
		json_object_array_add(kept, json_object_get(p));
	}
	if (socket_path && !ours) {
		json_object *p = json_object_new_object();

		json_object_object_add(p, "type", json_object_new_string(PLUGIN_TYPE));
		json_object_object_add(p, "socket", json_object_new_string(socket_path));
		json_object_array_add(kept, p);
		*changed = true;
	}
	json_object_object_add(conf, "plugins", kept);
	err = 0;
	if (*changed) {
		text = json_object_to_json_string_ext(conf, JSON_C_TO_STRING_PRETTY);
		err = write_atomic(path, text, strlen(text), 0644);
	}
	json_object_put(conf);
	return err;
}

static int do_uninstall(const char *bin_dir, const char *conf_dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(conf_dir);
	int rc = 0;

	/* Every conflist: the primary one may have been renamed meanwhile. */
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		bool changed;

		if (l <= 9 || strcmp(e->d_name + l - 9, ".conflist"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", conf_dir, e->d_name);
		if (edit_conflist(path, NULL, &changed))
			rc = 1;
		else if (changed)
			logf_("removed from %s", path);
	}
	if (d)
		closedir(d);
	snprintf(path, sizeof(path), "%s/%s", bin_dir, PLUGIN_TYPE);
	if (unlink(path) == 0)
		logf_("removed %s", path);
	else if (errno != ENOENT)
		rc = 1;
	snprintf(path, sizeof(path), "%s/%s", conf_dir, OWNER_FILE);
	if (unlink(path) < 0 && errno != ENOENT)
		rc = 1;
	return rc;
}

/* The owner token in conf_dir into out ("" when none); 0 or -errno. */
static int owner_read(const char *conf_dir, char *out, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", conf_dir, OWNER_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, out, len - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	out[n] = '\0';
	out[strcspn(out, "\n")] = '\0';
	return 0;
}

/* True when bin_dir holds the plugin and the primary conflist chains it. */
static bool installed(const char *bin_dir, const char *conf_dir)
{
	char path[PATH_MAX];
	json_object *conf, *plugins;
	bool found = false;

	snprintf(path, sizeof(path), "%s/%s", bin_dir, PLUGIN_TYPE);
	if (access(path, X_OK) < 0 || find_conflist(conf_dir, path, sizeof(path)))
		return false;
	conf = json_object_from_file(path);
	if (conf && json_object_object_get_ex(conf, "plugins", &plugins) &&
	    json_object_is_type(plugins, json_type_array))
		for (size_t i = 0; i < json_object_array_length(plugins); i++) {
			const char *type = jstr(json_object_array_get_idx(plugins, i), "type");

			found |= type && !strcmp(type, PLUGIN_TYPE);
		}
	json_object_put(conf);
	return found;
}

/*
 * Install the binary, chain it in the primary conflist and record owner
 * as the plugin's owner. Returns 0 or 1 (logged).
 */
static int do_install(const char *bin_dir, const char *conf_dir, const char *socket_path,
		      const char *owner)
{
	char conflist[PATH_MAX], path[PATH_MAX];
	bool changed;
	int err;

	err = install_binary(bin_dir);
	if (err) {
		logf_("cannot install the plugin into %s: %s", bin_dir, strerror(-err));
		return 1;
	}
	err = find_conflist(conf_dir, conflist, sizeof(conflist));
	if (!err)
		err = edit_conflist(conflist, socket_path, &changed);
	if (err) {
		logf_("cannot chain the plugin in %s: %s (is the node's CNI configured? shoal-cni "
		      "chains after the primary network's *.conflist)",
		      conf_dir, strerror(-err));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s", conf_dir, OWNER_FILE);
	err = write_atomic(path, owner, strlen(owner), 0644);
	if (err) {
		logf_("cannot write the plugin's owner to %s: %s", path, strerror(-err));
		return 1;
	}
	logf_("installed %s/%s, chained in %s (socket %s, owner %s)", bin_dir, PLUGIN_TYPE,
	      conflist, socket_path, owner);
	return 0;
}

/*
 * The socket's directory, made if missing and handed to uid (gid = uid):
 * shoald runs as that user and creates the socket there; only it and
 * root may then connect (the socket is 0600).
 */
static int socket_dir(const char *socket_path, uid_t uid)
{
	char dir[PATH_MAX];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", socket_path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return -EINVAL;
	*slash = '\0';
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return -errno;
	if (chown(dir, uid, (gid_t)uid) < 0 || chmod(dir, 0750) < 0)
		return -errno;
	return 0;
}

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
	stop_sig = sig;
}

static int cmd_install(int argc, char **argv, bool install)
{
	static const struct option opts[] = {
	    {"bin-dir", required_argument, NULL, 'b'},
	    {"conf-dir", required_argument, NULL, 'c'},
	    {"socket", required_argument, NULL, 's'},
	    {"wait", no_argument, NULL, 'w'},
	    {"socket-owner", required_argument, NULL, 'o'},
	    {"owner", required_argument, NULL, 'O'},
	    {},
	};
	const char *bin_dir = NULL, *conf_dir = NULL, *socket_path = ENROLL_CNI_DEFAULT_SOCKET;
	char token[OWNER_MAX], now[OWNER_MAX];
	bool wait = false;
	long owner = -1;
	int opt, err;

	token[0] = '\0';
	optind = 2;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b':
			bin_dir = optarg;
			break;
		case 'c':
			conf_dir = optarg;
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'w':
			wait = true;
			break;
		case 'o':
			owner = strtol(optarg, NULL, 10);
			break;
		case 'O':
			if (!*optarg || strlen(optarg) >= sizeof(token) || strchr(optarg, '\n')) {
				logf_("--owner '%s': 1 to %d characters, one line", optarg,
				      OWNER_MAX - 1);
				return 2;
			}
			snprintf(token, sizeof(token), "%s", optarg);
			break;
		default:
			return 2;
		}
	}
	if (!bin_dir || !conf_dir) {
		fprintf(stderr, "usage: shoal-cni install --bin-dir DIR --conf-dir DIR "
				"[--socket PATH] [--socket-owner UID] [--owner TOKEN] [--wait]\n"
				"       shoal-cni uninstall --bin-dir DIR --conf-dir DIR\n");
		return 2;
	}
	if (!install)
		return do_uninstall(bin_dir, conf_dir);
	if (owner >= 0) {
		err = socket_dir(socket_path, (uid_t)owner);
		if (err) {
			logf_("cannot prepare the directory of %s for uid %ld: %s", socket_path,
			      owner, strerror(-err));
			return 1;
		}
	}
	if (!token[0]) {
		uint8_t r[8];

		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			logf_("cannot draw an owner token: %s (give one with --owner)",
			      strerror(errno));
			return 1;
		}
		for (size_t i = 0; i < sizeof(r); i++)
			snprintf(token + 2 * i, 3, "%02x", r[i]);
	}
	if (do_install(bin_dir, conf_dir, socket_path, token))
		return 1;
	if (!wait)
		return 0;
	/*
	 * As long as this container runs, kept in place (put back when it
	 * went, as when the installer that owned it last stopped); removed
	 * when it stops, unless another installer owns it by then
	 * (docs/enrollment.md).
	 */
	signal(SIGTERM, on_stop);
	signal(SIGINT, on_stop);
	while (!stop_sig) {
		sleep(INSTALL_RECHECK_SEC); /* a signal ends it early */
		if (!stop_sig && !installed(bin_dir, conf_dir)) {
			logf_("the plugin or its conflist entry is gone: installing it again");
			do_install(bin_dir, conf_dir, socket_path, token);
		}
	}
	err = owner_read(conf_dir, now, sizeof(now));
	if (!err && now[0] && strcmp(now, token)) {
		logf_("signal %d: the plugin is owner %s's now (it installed after this one, "
		      "owner %s): left in place",
		      (int)stop_sig, now, token);
		return 0;
	}
	logf_("signal %d: removing the plugin (owner %s)", (int)stop_sig, token);
	return do_uninstall(bin_dir, conf_dir);
}

int main(int argc, char **argv)
{
	const char *command = getenv("CNI_COMMAND");

	if (argc >= 2 && !strcmp(argv[1], "install"))
		return cmd_install(argc, argv, true);
	if (argc >= 2 && !strcmp(argv[1], "uninstall"))
		return cmd_install(argc, argv, false);
	if (!command || !*command)
		return cni_error(CNI_ERR_ENV, "CNI_COMMAND is not set",
				 "run by a container runtime, or: shoal-cni install|uninstall");
	if (!strcmp(command, "VERSION"))
		return cmd_version();
	if (!strcmp(command, "ADD") || !strcmp(command, "DEL") || !strcmp(command, "CHECK"))
		return cmd_plugin(command);
	return cni_error(CNI_ERR_ENV, "unknown CNI_COMMAND", command);
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The hand-over protocol between a running shoald (the old one) and a new
 * one that takes over from it (docs/upgrade.md). A SOCK_SEQPACKET Unix
 * socket, one fixed-size message per packet, each carrying magic and
 * version:
 *
 *   new -> old  HELLO    (the new one's pid)
 *   old -> new  OFFER... its listening sockets, SCM_RIGHTS, in packets of
 *                        at most HANDOVER_FDS_PER_MSG; the last has `last`
 *   new -> old  READY    (the new proxy runs on them and beats the heartbeat)
 *   old -> new  DONE     (the old one stopped accepting and drains)
 *   either      REFUSE   (text says why; the session ends)
 *
 * Until READY the old one keeps its fds and serves; a session that ends
 * any other way changes nothing on its side.
 */
#ifndef SHOAL_HANDOVER_H
#define SHOAL_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the running shoald listens, unless --handover-socket says otherwise.
 * Not under the pin root: bpffs holds no sockets. */
#define HANDOVER_DEFAULT_SOCKET "/run/shoal/handover.sock"

#define HANDOVER_MAGIC 0x53484f48u /* "SHOH" */
/* Bump on any change to struct handover_msg or to the sequence above. */
#define HANDOVER_VERSION 1

/*
 * Fds per OFFER: below the kernel's SCM_MAX_FD (253) per message, and a
 * few packets carry the most a proxy has (PROXY_MAX_LISTEN_FDS).
 */
#define HANDOVER_FDS_PER_MSG 64

/*
 * How long each side waits for the other's next message. The new one
 * starts its proxy between OFFER and READY (a few ms per worker); 10 s is
 * room for a loaded node, and short enough that a wedged new process does
 * not hold the old one's hand-over slot for long.
 */
#define HANDOVER_STEP_TIMEOUT_MS 10000

enum handover_type {
	HANDOVER_HELLO = 1,
	HANDOVER_OFFER = 2,
	HANDOVER_READY = 3,
	HANDOVER_DONE = 4,
	HANDOVER_REFUSE = 5,
};

/* One packet; the layout is part of HANDOVER_VERSION. */
struct handover_msg {
	uint32_t magic;	  /* HANDOVER_MAGIC */
	uint16_t version; /* HANDOVER_VERSION */
	uint16_t type;	  /* enum handover_type */
	uint32_t pid;	  /* the sender's */
	uint32_t n_fds;	  /* OFFER: fds attached to this packet */
	uint32_t last;	  /* OFFER: 1 on the last one */
	uint32_t total;	  /* OFFER: fds in all of them */
	char text[128];	  /* REFUSE: why, NUL-terminated */
};

/*
 * The socket of the datapath under pin_root: HANDOVER_DEFAULT_SOCKET for
 * the default pin root, /run/shoal/handover-<16 hex digits>.sock (a hash
 * of pin_root) for another, so that shoalds of different datapaths (tests
 * side by side) never take over from each other, and two of the same one
 * always do.
 */
void handover_default_path(const char *pin_root, char *buf, size_t len);

/* The name of t, for messages ("HELLO"; "?" when unknown). */
const char *handover_type_name(uint16_t t);

/*
 * Old side: listen on path (its directory is created). A socket file left
 * by a dead process is replaced; one with a live listener is not:
 * -EADDRINUSE (another shoald runs and has not handed over). Returns the
 * listening fd (non-blocking, close-on-exec) or -errno.
 */
int handover_listen(const char *path);

/*
 * New side: connect to path. Returns the fd (blocking, with
 * HANDOVER_STEP_TIMEOUT_MS receive and send timeouts), or -ENOENT /
 * -ECONNREFUSED when no shoald listens there, or another -errno.
 */
int handover_connect(const char *path);

/* Send a message of type t with n fds attached (n <= HANDOVER_FDS_PER_MSG). 0 or -errno. */
int handover_send(int fd, enum handover_type t, const int *fds, uint32_t n, uint32_t last,
		  uint32_t total, const char *text);

/*
 * Receive one message into *m, and its fds (close-on-exec) into fds
 * (room for max; *n_fds set). Checks what it can before trusting it: the
 * packet's size, magic and version, and the fd count against n_fds and
 * max; every fd received is closed on a refusal. Returns 0, -EPIPE when
 * the peer closed, -EAGAIN on a timeout, -EPROTO (a malformed packet or a
 * version mismatch) with err naming the problem, or another -errno.
 */
int handover_recv(int fd, struct handover_msg *m, int *fds, uint32_t max, uint32_t *n_fds,
		  char *err, size_t errlen);

/*
 * Close the listening fd; with path, remove the socket file too (a plain
 * stop: after a hand-over the file is the new shoald's).
 */
void handover_close(int fd, const char *path);

#endif

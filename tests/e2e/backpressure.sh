#!/bin/bash
# backpressure.sh: a writer faster than its reader, through the sockmap
# shortcut, must not queue without bound, and nothing may be lost or stuck
# when the shortcut yields to TCP.
# The kernel's sk_msg ingress redirect ignores the receiver's SO_RCVBUF, so
# before the datapath bounded it, one stream whose reader stalled parked
# everything it wrote in the node's TCP memory, until sendmsg failed with
# ENOMEM (docs/benchmarks.md, finding 1). Two runs of 128 MiB each way
# through VIP 10.96.0.30 (a1 -> proxy -> a2, both enrolled, all four sockets
# on the shortcut):
#  - "server stalls": a2 sleeps 3 s before it reads; a1 and the proxy write
#    into the stall;
#  - "client stalls": a1 sleeps 3 s; a2 and the proxy write into it. This
#    leaves the proxy, once the client reads again, with sockets whose
#    redirect queue and TCP queue both hold bytes: a proxy that stopped
#    reading after a short read there would strand the TCP bytes (no edge
#    comes for them) and the stream would hang (docs/proxy.md);
#  - the same with a2 -> a1 only, where no write edge on the proxy's
#    upstream socket can rescue such a proxy.
# Each run checks:
#  - 2 s into the stall, no socket in node-a or the two pods holds more
#    than 16 MiB of queued receive memory (ss -tm: rmem_alloc), and all of
#    them together less than 48 MiB: TCP stopped the writers;
#  - redirect_backlog_tcp counted the sockets moved off the shortcut;
#  - after the stall both directions arrive intact (checksums), in time,
#    which also shows the move to TCP mid-stream kept the byte order.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BYTES=$((128 * 1024 * 1024))
STALL_MS=3000
SOCKET_MAX=$((16 * 1024 * 1024))
TOTAL_MAX=$((48 * 1024 * 1024))

e2e_init
e2e_topology
write_config "$(tcp_service bulk 10.96.0.30 9000 9000 10.77.1.3)"
shoald_start
enroll a1
# a2 is enrolled so that its socket joins the shortcut too (docs/bpf.md,
# "Which sockets join the shortcut"): then all four sockets are on it.
enroll a2

# queued_bytes NETNS...: "LARGEST TOTAL" receive memory (skmem r) over the
# TCP sockets of the given namespaces.
queued_bytes() {
	local ns
	for ns in "$@"; do
		in_ns "$ns" ss -Htmn 2>/dev/null
	done | grep -o 'skmem:(r[0-9]*' | tr -dc '0-9\n' |
		awk '{ t += $1; if ($1 > m) m = $1 } END { printf "%d %d\n", m, t }'
}

# run_stalled LABEL SERVER_STALL_MS CLIENT_STALL_MS SEED [CLIENT_BYTES]: the
# server sends BYTES, the client BYTES or CLIENT_BYTES.
run_stalled() {
	local label=$1 sstall=$2 cstall=$3 seed=$4 cbytes=${5:-$BYTES} spid cpid largest total rc=0
	local cout sout backlog0
	local -a sopt=() copt=()
	((sstall)) && sopt=(--stall-ms "$sstall")
	((cstall)) && copt=(--stall-ms "$cstall")
	backlog0=$(counter redirect_backlog_tcp)
	pod_spawn a2 "$LOGDIR/$label.server.log" "$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 \
		--bytes "$BYTES" --seed "$seed" "${sopt[@]}" --timeout-ms 20000
	spid=$LAST_PID
	wait_listen "${POD_NS[a2]}" 9000
	pod_spawn a1 "$LOGDIR/$label.client.log" "$SHOAL_PEER" stream-client --to 10.96.0.30:9000 \
		--bytes "$cbytes" --seed "$seed" "${copt[@]}" --timeout-ms 20000
	cpid=$LAST_PID

	sleep 2
	read -r largest total < <(queued_bytes "$NS_A" "${POD_NS[a1]}" "${POD_NS[a2]}")
	say "$label: 2 s into the stall, largest socket receive queue $((largest / 1024)) KiB, all sockets $((total / 1024)) KiB"
	if ((largest <= SOCKET_MAX && total <= TOTAL_MAX)); then
		pass "$label: a stalled reader bounds what its writers queue ($((largest / 1024)) KiB on one socket, $((total / 1024)) KiB in all; the stream is $((BYTES / 1048576)) MiB)"
	else
		fail "$label: a stalled reader let its writers queue $((largest / 1024)) KiB on one socket, $((total / 1024)) KiB in all (limits $((SOCKET_MAX / 1024)) / $((TOTAL_MAX / 1024)) KiB)"
		in_ns "$NS_A" ss -tmn >&2
	fi

	wait "$cpid" || rc=$?
	wait "$spid" || rc=$?
	cout=$(grep '^sent=' "$LOGDIR/$label.client.log" || true)
	sout=$(grep '^sent=' "$LOGDIR/$label.server.log" || true)
	if ((rc)) || [[ -z $cout || -z $sout ]]; then
		fail "$label: the stream did not complete: client: $(tail -2 "$LOGDIR/$label.client.log"); server: $(tail -2 "$LOGDIR/$label.server.log")"
	elif stream_intact "$label" "$cout" "$sout" "$cbytes" "$BYTES"; then
		pass "$label: everything arrived intact after the stall ($cbytes bytes up, $BYTES down, checksums match)"
	fi
	backlog0=$(($(counter redirect_backlog_tcp) - backlog0))
	if ((backlog0 > 0)); then
		pass "$label: redirect_backlog_tcp +$backlog0: sockets whose peer fell behind moved to TCP"
	else
		fail "$label: redirect_backlog_tcp did not move; the shortcut never yielded to TCP"
	fi
}

run_stalled server-stalls "$STALL_MS" 0 7
run_stalled client-stalls 0 "$STALL_MS" 8
# One way only: no write edges on the proxy's upstream socket that would
# also report its pending input (epoll reports the whole readiness).
run_stalled client-stalls-one-way 0 "$STALL_MS" 9 0
say "redirect_bytes $(counter redirect_bytes), redirect_msgs $(counter redirect_msgs), redirect_backlog_tcp $(counter redirect_backlog_tcp)"
finish

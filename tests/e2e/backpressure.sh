#!/bin/bash
# backpressure.sh: a writer faster than its reader, through the sockmap
# shortcut, must not queue without bound.
# The kernel's sk_msg ingress redirect ignores the receiver's SO_RCVBUF, so
# before the datapath bounded it, one stream whose reader stalled parked
# everything it wrote in the node's TCP memory, until sendmsg failed with
# ENOMEM (docs/benchmarks.md, finding 1). Here a1 streams 128 MiB through
# VIP 10.96.0.30 to a2, whose reader sleeps 3 s first:
#  - 2 s into the stall, no socket in node-a or the two pods holds more
#    than 16 MiB of queued receive memory (ss -tm: rmem_alloc), and the
#    sockets together less than 48 MiB: the writer was stopped by TCP;
#  - redirect_backlog_tcp counted the sockets moved off the shortcut;
#  - after the stall both directions arrive intact (checksums), which also
#    shows that moving from the redirect path to TCP mid-stream keeps the
#    byte order.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BYTES=$((128 * 1024 * 1024))
STALL_MS=3000
SOCKET_MAX=$((16 * 1024 * 1024))
TOTAL_MAX=$((48 * 1024 * 1024))

e2e_init
e2e_topology
write_config '  - name: bulk
    namespace: default
    vips: [10.96.0.30]
    ports: [{port: 9000, target_port: 9000, protocol: tcp}]
    endpoints: [{address: 10.77.1.3}]'
shoald_start
enroll a1

field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }

# queued_bytes NETNS...: "LARGEST TOTAL" receive memory (skmem r) over the
# TCP sockets of the given namespaces.
queued_bytes() {
	local ns
	for ns in "$@"; do
		in_ns "$ns" ss -Htmn 2>/dev/null
	done | grep -o 'skmem:(r[0-9]*' | tr -dc '0-9\n' |
		awk '{ t += $1; if ($1 > m) m = $1 } END { printf "%d %d\n", m, t }'
}

backlog0=$(counter redirect_backlog_tcp)
bytes0=$(counter redirect_bytes)
pod_spawn a2 "$LOGDIR/backpressure.server.log" \
	"$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 --bytes "$BYTES" --seed 7 --stall-ms "$STALL_MS"
spid=$LAST_PID
wait_listen "${POD_NS[a2]}" 9000
pod_spawn a1 "$LOGDIR/backpressure.client.log" \
	"$SHOAL_PEER" stream-client --to 10.96.0.30:9000 --bytes "$BYTES" --seed 7
cpid=$LAST_PID

sleep 2
read -r largest total < <(queued_bytes "$NS_A" "${POD_NS[a1]}" "${POD_NS[a2]}")
say "2 s into the reader's stall: largest socket receive queue $((largest / 1024)) KiB, all sockets $((total / 1024)) KiB (redirect_bytes +$(($(counter redirect_bytes) - bytes0)))"
if ((largest <= SOCKET_MAX && total <= TOTAL_MAX)); then
	pass "a stalled reader bounds what its writer queues ($((largest / 1024)) KiB on one socket, $((total / 1024)) KiB in all; the stream is $((BYTES / 1048576)) MiB)"
else
	fail "a stalled reader let its writer queue $((largest / 1024)) KiB on one socket, $((total / 1024)) KiB in all (limits $((SOCKET_MAX / 1024)) / $((TOTAL_MAX / 1024)) KiB)"
	in_ns "$NS_A" ss -tmn >&2
	in_ns "${POD_NS[a2]}" ss -tmn >&2
fi

rc=0
wait "$cpid" || rc=$?
wait "$spid" || rc=$?
cout=$(grep '^sent=' "$LOGDIR/backpressure.client.log" || true)
sout=$(grep '^sent=' "$LOGDIR/backpressure.server.log" || true)
if ((rc)) || [[ -z $cout || -z $sout ]]; then
	fail "the stream did not complete: client: $(cat "$LOGDIR/backpressure.client.log"); server: $(cat "$LOGDIR/backpressure.server.log")"
elif [[ $(field "$cout" sent_sum) == "$(field "$sout" recv_sum)" && $(field "$sout" recv) == "$BYTES" &&
	$(field "$sout" sent_sum) == "$(field "$cout" recv_sum)" && $(field "$cout" recv) == "$BYTES" ]]; then
	pass "both directions arrived intact after the stall ($BYTES bytes each, checksums match)"
else
	fail "stream differs: client $cout, server $sout"
fi

backlog=$(($(counter redirect_backlog_tcp) - backlog0))
if ((backlog > 0)); then
	pass "redirect_backlog_tcp +$backlog: sockets whose peer fell behind moved to TCP"
else
	fail "redirect_backlog_tcp did not move; the shortcut never yielded to TCP"
fi
say "redirect_bytes +$(($(counter redirect_bytes) - bytes0)), redirect_msgs $(counter redirect_msgs)"
finish

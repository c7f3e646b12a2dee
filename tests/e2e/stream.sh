#!/bin/bash
# stream.sh: byte-exact streams through the mesh, with the sockmap
# shortcut on and off.
# Each run sends 256 MiB of seeded random data in each direction at once,
# in random write sizes, with a half-close at the end (shoal-peer
# stream-client/stream-server), from enrolled a1 through a VIP (a2 enrolled too):
#  - "bulk" 10.96.0.30:9000 -> a2 (same node), shortcut on: both checksums
#    match, and the shortcut carried bytes (each writer here outruns its
#    reader, so each socket moves to TCP once its peer's redirect queue is
#    full: redirect_backlog_tcp; backpressure.sh tests that bound);
#  - the same after `shoalctl shortcut off`: checksums match and
#    redirect_bytes did not move;
#  - "bulk-remote" 10.96.0.31:9000 -> b1 on node-b, shortcut on again:
#    checksums match.
# The transfer times are printed, to compare on against off.
# SHOAL_E2E_STREAM_BYTES overrides the size (for a quick local run).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BYTES=${SHOAL_E2E_STREAM_BYTES:-$((256 * 1024 * 1024))}

e2e_init
e2e_topology
write_config "$(tcp_service bulk 10.96.0.30 9000 9000 10.77.1.3)
$(tcp_service bulk-remote 10.96.0.31 9000 9000 10.77.2.2)"
shoald_start
enroll a1
# a2 is a meshed pod too: only an enrolled backend's socket joins the
# shortcut (docs/bpf.md, "Which sockets join the shortcut").
enroll a2


# run_stream LABEL SERVER_POD TARGET SEED: one bidirectional transfer from
# a1 to TARGET, served by a stream-server in SERVER_POD. Returns 1 and
# reports the reason if anything did not arrive intact.
run_stream() {
	local label=$1 srv=$2 to=$3 seed=$4 spid cout sout t0 t1 ms rate rc=0
	pod_spawn "$srv" "$LOGDIR/stream-$label.server.log" \
		"$SHOAL_PEER" stream-server --listen 0.0.0.0:9000 --bytes "$BYTES" --seed "$seed"
	spid=$LAST_PID
	wait_listen "${POD_NS[$srv]}" 9000
	t0=$(date +%s%N)
	cout=$(pod_run a1 "$SHOAL_PEER" stream-client --to "$to" --bytes "$BYTES" --seed "$seed" \
		2>"$LOGDIR/stream-$label.client.err") || rc=$?
	t1=$(date +%s%N)
	if ((rc)); then
		fail "$label: stream-client failed: $(cat "$LOGDIR/stream-$label.client.err")"
		stop_pid "$spid" TERM
		return 1
	fi
	wait "$spid" || rc=$?
	sout=$(grep '^sent=' "$LOGDIR/stream-$label.server.log" || true)
	if ((rc)) || [[ -z $sout ]]; then
		fail "$label: stream-server failed: $(cat "$LOGDIR/stream-$label.server.log")"
		return 1
	fi
	say "$label client: $cout"
	say "$label server: $sout"
	ms=$(((t1 - t0) / 1000000))
	rate=$(awk -v b="$BYTES" -v ms="$ms" 'BEGIN { printf "%.0f", ms ? 2 * b / 1048576 / (ms / 1000) : 0 }')
	say "$label: $((BYTES / 1048576)) MiB each way in $ms ms ($rate MiB/s both directions together)"

	stream_intact "$label (a1 <-> $srv)" "$cout" "$sout" "$BYTES" "$BYTES" || rc=1
	((rc == 0)) && pass "$label: both directions arrived intact ($BYTES bytes each, checksums match)"
	return "$rc"
}

# shortcut_is on|off: what `shoalctl status` reports.
shortcut_is() { ctl status | grep -qx "shortcut $1"; }

shortcut_is on || fail "status does not say 'shortcut on' with shortcut: true in the config"

bytes0=$(counter redirect_bytes)
if run_stream local-on a2 10.96.0.30:9000 11; then
	bytes1=$(counter redirect_bytes)
	say "redirect_bytes +$((bytes1 - bytes0)) ($(((bytes1 - bytes0) / 1048576)) MiB); redirect_msgs $(counter redirect_msgs); redirect_backlog_tcp $(counter redirect_backlog_tcp)"
	expect_grew redirect_bytes "$bytes0" 1
fi

ctl shortcut off >/dev/null || fatal "shoalctl shortcut off failed"
shortcut_is off && pass "shortcut off: status says so" || fail "status does not say 'shortcut off'"
bytes0=$(counter redirect_bytes)
msgs0=$(counter redirect_msgs)
if run_stream local-off a2 10.96.0.30:9000 22; then
	bytes1=$(counter redirect_bytes)
	msgs1=$(counter redirect_msgs)
	if ((bytes1 == bytes0 && msgs1 == msgs0)); then
		pass "shortcut off: redirect_bytes and redirect_msgs did not move (the sockmap carried nothing)"
	else
		fail "shortcut off: redirect_bytes +$((bytes1 - bytes0)), redirect_msgs +$((msgs1 - msgs0)); expected no change"
	fi
fi

ctl shortcut on >/dev/null || fatal "shoalctl shortcut on failed"
shortcut_is on || fail "status does not say 'shortcut on' after 'shoalctl shortcut on'"
bytes0=$(counter redirect_bytes)
if run_stream remote-on b1 10.96.0.31:9000 33; then
	bytes1=$(counter redirect_bytes)
	say "cross-node: redirect_bytes +$((bytes1 - bytes0)) (only a1 <-> proxy is node-local)"
fi
finish

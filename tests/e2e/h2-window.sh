#!/bin/bash
# h2-window.sh: HTTP/2 flow control gives every byte back, so that a pooled
# upstream session serves on past its window. An nginx h2c backend in a2
# answers a 4 KiB body; h2load in a1 sends through shoal:
#  - 3000 requests on ONE connection, 100 streams at a time: 12 MiB of
#    responses on one upstream session, 12 times its receive window
#    (proxy.http2.session_window_bytes, 1 MiB). Every response byte must
#    go back to that session's window, also those of a response whose
#    upstream stream ended before the client's session framed them (all
#    of them at this size: body and END_STREAM come in one read). Found
#    by scripts/bench's h2 section: at 3eeab79 such bytes were never
#    given back, and a pooled session stalled after 1 MiB (here after
#    256 responses; in the bench after 29 959 of 35 bytes); 919bd32
#    gives the session's window back on receipt;
#  - the same over 8 connections, 10 streams each (several sessions);
#  - every request 2xx, none failed, errored or timed out.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v h2load >/dev/null || skip "missing tool: h2load (nghttp2-client, scripts/setup.sh)"
command -v nginx >/dev/null || skip "missing tool: nginx (scripts/setup.sh)"

e2e_init
e2e_topology

# nginx, h2c with prior knowledge, one process (master_process off: no
# user switch, no daemon), a 4 KiB body from a file.
www=$LOGDIR/www
mkdir -p "$www"
head -c 4096 /dev/zero | tr '\0' 'x' >"$www/body"
cat >"$LOGDIR/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
pid $LOGDIR/nginx.pid;
error_log $LOGDIR/nginx.error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 100000000;
	client_body_temp_path $LOGDIR/nginx-body;
	proxy_temp_path $LOGDIR/nginx-proxy;
	fastcgi_temp_path $LOGDIR/nginx-fastcgi;
	uwsgi_temp_path $LOGDIR/nginx-uwsgi;
	scgi_temp_path $LOGDIR/nginx-scgi;
	server {
		listen 0.0.0.0:8081 http2;
		root $www;
		location / { default_type application/octet-stream; }
	}
}
NGINX
pod_spawn a2 "$LOGDIR/nginx.log" nginx -e stderr -c "$LOGDIR/nginx.conf"
wait_listen "${POD_NS[a2]}" 8081

write_config "
  - name: h2big
    vips: [10.96.0.44]
    ports: [{port: 80, target_port: 8081, protocol: h2c}]
    endpoints: [{address: 10.77.1.3}]"
shoald_start
enroll a1

# h2load_all N C M WHAT: N requests over C connections, M streams each,
# all 2xx within 20 s.
h2load_all() {
	local n=$1 c=$2 m=$3 what=$4 out okn failn errn codes
	out=$(pod_run a1 timeout 20 h2load -n "$n" -c "$c" -m "$m" http://10.96.0.44/body 2>&1) || true
	read -r okn failn errn < <(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2 \3/p' <<<"$out") || true
	codes=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
	if [[ $okn == "$n" && $failn == 0 && $errn == 0 && $codes == "$n" ]]; then
		pass "$what: $n requests of 4 KiB, all 2xx ($(grep -m1 '^finished in' <<<"$out"))"
	else
		[[ -n $okn ]] || out="h2load did not finish in 20 s (a stalled session?): $(tail -3 <<<"$out" | tr '\n' ' ')"
		fail "$what: want $n 2xx, got: $(grep -E '^(requests|status codes|finished)|did not finish' <<<"$out" | tr '\n' ' ')"
	fi
}

opened0=$(proxy_metric shoal_proxy_h2_sessions_opened_total)
h2load_all 3000 1 100 "one connection, 100 streams (12 MiB through one upstream session)"
h2load_all 3000 8 10 "8 connections, 10 streams each"
opened=$(($(proxy_metric shoal_proxy_h2_sessions_opened_total) - opened0))
# 100 streams at a time fit one upstream session (the peer allows 128,
# shoal 100), so the first run needs one; it and the second stay pooled.
if ((opened >= 1 && opened <= 4)); then
	pass "the runs shared pooled upstream sessions ($opened opened for 6000 requests)"
else
	fail "want 1..4 upstream sessions opened for 6000 requests, got $opened"
fi
kill -0 "$SHOALD_PID" 2>/dev/null || fatal "shoald died"
if grep -qiE 'AddressSanitizer|runtime error' "$SHOALD_LOG"; then
	fail "shoald's log has a sanitizer report"
fi
finish

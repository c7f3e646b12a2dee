#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz the HTTP/1 head parser and chunked decoder (http1_parse_head,
# http1_chunked_feed) with libFuzzer, ASan and UBSan.
#
#   scripts/fuzz-http1.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Seeds are written to build-fuzz/http1-seeds/
# (a request, a response, chunked bodies, smuggling attempts), plus
# SEED_DIR when given; what the fuzzer learns goes to
# build-fuzz/http1-corpus/ (override the directory with FUZZ_OUT), so runs
# build on each other. The first byte of each input picks request (even)
# or response (odd) and the size of the pieces it is fed in. Exits
# non-zero when the fuzzer finds a crash, a leak, undefined behaviour or a
# timeout; the input that did it is saved in $FUZZ_OUT/ as http1-crash-*,
# leak-* or timeout-*.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
mkdir -p "$out/http1-corpus" "$out/http1-seeds"

fuzz_build http1 \
	"$root/tests/fuzz/http1_fuzz.c" \
	"$root/agent/proxy/http1_parser.c" \
	"$root/agent/proxy/http1_rewrite.c"

# Seeds: first byte 'A' (0x41, odd) = response, '@' (0x40, even) = request.
seed() {
	printf '%b' "$2" >"$out/http1-seeds/$1"
}
seed get '@GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'
seed post-cl '\002POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\nhello'
seed post-chunked '\006POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n'
seed pipelined '@GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n'
seed http10 '\010\r\nGET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
seed upgrade '@GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'
seed resp-cl 'AHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'
seed resp-chunked '\003HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n'
seed resp-204 'AHTTP/1.1 204\r\nConnection: close\r\n\r\n'
seed smuggle-clte '@POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n'
seed smuggle-fold '@GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n'
seed smuggle-lf '@GET / HTTP/1.1\nHost: h\n\n'
seed chunks '@0x5\r\n-1\r\nfffffffffffffffff\r\n'

cat >"$out/http1.dict" <<'DICT'
"\x0d\x0a"
"\x0d\x0a\x0d\x0a"
" HTTP/1.1"
" HTTP/1.0"
"HTTP/1.1 "
"GET"
"HEAD"
"CONNECT"
"Host:"
"Content-Length:"
"Transfer-Encoding:"
"chunked"
"gzip"
"Connection:"
"close"
"keep-alive"
"upgrade"
"Upgrade:"
"Expect:"
"100-continue"
";ext="
", "
DICT

fuzz_run http1 40000 "the HTTP/1 parser" "$out/http1-corpus" "$out/http1-seeds" ${2:+"$2"}

#!/bin/sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# Fuzz the HTTP/2 frame path (the h2 kind's server session, its
# callbacks, limits and stream state, the pooled upstream session behind
# it) with libFuzzer, ASan and UBSan: tests/fuzz/h2_fuzz.c runs the real
# proxy in-process in front of a loopback HTTP/2 endpoint, each input one
# client connection's bytes. Needs root (the proxy's sockets carry SO_MARK).
#
#   scripts/fuzz-h2.sh [SECONDS [SEED_DIR]]
#
# SECONDS defaults to 30. Unlike the parser fuzzers this one needs the
# whole agent, so it is a meson build of its own (-Dfuzz=true, clang, in
# build-fuzz/h2-build/; incremental after the first). Seeds are
# tests/fuzz/corpus/h2/ (a preface, SETTINGS and frames each), plus
# SEED_DIR when given; what the fuzzer learns goes to
# build-fuzz/h2-corpus/ (override the directory with FUZZ_OUT). Exits
# non-zero when the fuzzer finds a crash, a leak, undefined behaviour, a
# timeout or a proxy that no longer answers a valid request; the input
# that did it is saved in $FUZZ_OUT/ as h2-crash-*, leak-* or timeout-*.
set -eu

. "$(dirname "$0")/lib/fuzz.sh"
fuzz_init "$@"
if [ "$(id -u)" != 0 ]; then
	echo "fuzz-h2: needs root (SO_MARK on the proxy's sockets); skipped" >&2
	exit 0
fi
mkdir -p "$out/h2-corpus"

dir=$out/h2-build
if [ ! -f "$dir/build.ninja" ]; then
	CC=$cc meson setup "$dir" "$root" -Dfuzz=true -Dtests=false \
		-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false >/dev/null
fi
meson compile -C "$dir" tests/h2-fuzz >/dev/null
cp "$dir/tests/h2-fuzz" "$out/h2_fuzz"

cat >"$out/h2.dict" <<'DICT'
"PRI * HTTP/2.0\x0d\x0a\x0d\x0aSM\x0d\x0a\x0d\x0a"
"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
"\x00\x00\x08\x06\x00\x00\x00\x00\x00"
"\x00\x00\x04\x08\x00\x00\x00\x00\x00"
"\x00\x00\x04\x03\x00\x00\x00\x00\x01"
"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
"\x00\x00\x08\x01\x05\x00\x00\x00\x01\x82\x86\x84\x01\x03web"
"\x00\x00\x08\x01\x04\x00\x00\x00\x03\x83\x86\x84\x01\x03web"
"\x00\x00\x02\x00\x01\x00\x00\x00\x01"
"\x00\x00\x00\x09\x04\x00\x00\x00\x01"
"\x00\x00\x05\x02\x00\x00\x00\x00\x01"
"\x7f\xff\xff\xff"
"\x04:path\x04/big"
"\x04:path\x11/shoal.Echo/Flaky"
"\x04:path\x11/shoal.Echo/Reset"
"\x0a:authority"
"\x0ccontent-type\x10application/grpc"
"\x02te\x08trailers"
"\x3f\xe1\x1f"
DICT

# meson's b_sanitize=undefined recovers: make a UBSan report fail the run,
# as -fno-sanitize-recover does for the other fuzzers.
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export UBSAN_OPTIONS
fuzz_run h2 16384 "the HTTP/2 frame path" "$out/h2-corpus" "$root/tests/fuzz/corpus/h2" ${2:+"$2"}

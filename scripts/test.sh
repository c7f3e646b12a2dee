#!/usr/bin/env bash
# The whole test suite, from a fresh clone, as root:
#   1. install what the build and tests need, mount bpffs (scripts/setup.sh)
#   2. build and run every test: Criterion unit tests and the end-to-end
#      tests in real network namespaces with real BPF (meson test)
#   3. rebuild with ASan/UBSan and run every test again: the agent under
#      real traffic, with leaks checked at exit
#   4. validate manifests/ offline against the Kubernetes schemas
#   5. fuzz the parsers of hostile input (config, HTTP/1, Kubernetes,
#      identities, AuthorizationPolicy objects) and
#      the HTTP/2 frame path for a short while
# Exit status is non-zero if anything failed. Tests that need a feature
# this machine lacks are reported as SKIP with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

setup_build() { # dir, meson options...
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

echo "== build"
setup_build build
meson compile -C build

echo "== unit and end-to-end tests"
meson test -C build --print-errorlogs --num-processes 1

echo "== unit and end-to-end tests under ASan/UBSan"
setup_build build-asan -Db_sanitize=address,undefined -Db_lundef=false
meson compile -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	meson test -C build-asan --print-errorlogs --num-processes 1

echo "== manifests against the Kubernetes schemas, offline"
bash scripts/validate-manifests.sh

echo "== fuzz the parsers of hostile input"
bash scripts/fuzz-config.sh "${SHOAL_FUZZ_SECONDS:-30}"
bash scripts/fuzz-http1.sh "${SHOAL_FUZZ_SECONDS:-30}"
bash scripts/fuzz-k8s.sh "${SHOAL_FUZZ_SECONDS:-30}"
bash scripts/fuzz-h2.sh "${SHOAL_FUZZ_SECONDS:-30}"
bash scripts/fuzz-identity.sh "${SHOAL_FUZZ_SECONDS:-30}"
bash scripts/fuzz-policy.sh "${SHOAL_FUZZ_SECONDS:-30}"

echo "== all tests passed"

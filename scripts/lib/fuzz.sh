# shellcheck shell=sh
# SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#
# What every scripts/fuzz-*.sh shares: argument checking, the libFuzzer
# build (clang, not meson: libFuzzer needs clang and the regular build may
# use gcc) and the run. Sourced, not run.

# fuzz_init "$@": SECONDS (default 30) from $1; sets duration, root, out, cc.
fuzz_init() {
	duration=${1:-30}
	case $duration in
	'' | *[!0-9]*)
		echo "usage: $0 [SECONDS [SEED_DIR]]" >&2
		exit 2
		;;
	esac
	root=$(cd "$(dirname "$0")/.." && pwd)
	out=${FUZZ_OUT:-$root/build-fuzz}
	cc=${CC_FUZZ:-clang-14}
	mkdir -p "$out"
}

# fuzz_build NAME ARGS...: build $out/NAME_fuzz with ASan and UBSan from
# the sources, include flags and libraries in ARGS.
fuzz_build() {
	name=$1
	shift
	"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-I"$root/include" -I"$root/agent" \
		"$@" -o "$out/${name}_fuzz"
}

# fuzz_build_config NAME ARGS...: fuzz_build with the config parser's
# sources too (listed here once; the harness and the libraries in ARGS).
fuzz_build_config() {
	name=$1
	shift
	fuzz_build "$name" \
		"$root/agent/config/config.c" \
		"$root/agent/config/config_checks.c" \
		"$root/agent/config/config_node.c" \
		"$root/agent/config/config_services.c" \
		"$root/agent/config/config_policy.c" \
		"$root/agent/config/config_mtls.c" \
		"$root/agent/config/config_walk.c" \
		"$root/agent/policy/policy.c" \
		"$root/agent/identity/spiffe.c" \
		"$@"
}

# fuzz_run NAME MAX_LEN WHAT CORPUS_DIRS...: fuzz for $duration seconds with
# $out/NAME.dict. New inputs go to the first corpus dir; a crash, a leak,
# undefined behaviour or a timeout is saved as $out/NAME-crash-* etc. and
# makes the run exit non-zero.
fuzz_run() {
	name=$1 max_len=$2 what=$3
	shift 3
	echo "fuzzing $what for ${duration}s (corpus $1)"
	# -timeout: one input taking seconds is a bug (quadratic scan, runaway loop).
	exec "$out/${name}_fuzz" \
		-max_total_time="$duration" \
		-timeout=10 \
		-max_len="$max_len" \
		-dict="$out/$name.dict" \
		-artifact_prefix="$out/$name-" \
		-print_final_stats=1 \
		"$@"
}

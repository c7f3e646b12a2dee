#!/usr/bin/env bash
# Installs every Debian package that shoal's build, tests and demo need, and
# makes sure bpffs and cgroup2 are mounted. Idempotent: safe to run again.
set -euo pipefail

packages=(
	# build
	build-essential meson ninja-build pkg-config
	clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
	libnl-3-dev libnl-route-3-dev
	libyaml-dev
	libjson-c-dev libcurl4-openssl-dev # discovery: JSON decoding, Kubernetes API client
	libnghttp2-dev # the proxy's HTTP/2 kind (frames, HPACK, flow control)
	libssl-dev # workload identity and mTLS: keys, CSRs, certificates, TLS 1.3 (OpenSSL 3)
	# tests: unit, end-to-end (netns, nsenter, bpftool), fuzzing (libFuzzer)
	libcriterion-dev libclang-rt-14-dev
	iproute2 util-linux socat curl procps python3 openssl # python3: test collector and API stand-in; openssl: test CA
	tcpdump # e2e mtls: a capture on the underlay holds no plaintext
	python3-grpcio # e2e h2: a real gRPC client and server (h2load: nghttp2-client below)
	python3-yaml # unit policy_crd: the AuthorizationPolicy fixtures, YAML to JSON
	python3-h2 # e2e h2-h1: an HTTP/2 endpoint that shows what reached it (trailers) and sends 1xx
	prometheus # promtool, and a real scraper for the telemetry e2e test
	chromium python3-websockets # the web dashboard's e2e: a real headless browser, driven over CDP
	# the image (scripts/image) and its e2e test: a Debian root unpacked
	# offline, file capabilities, podman to build, save and run it; runc
	# where podman's crun cannot run on the machine's cgroup layout
	mmdebstrap libcap2-bin podman runc
	# benchmarks (scripts/bench): peers, load generators, iptables in a netns
	haproxy nginx wrk nghttp2-client iperf3 iptables linux-perf
	nghttp2-proxy # nghttpx, the h2 section's peer (run by scripts/bench itself, never as a service)
)

if [ "$(id -u)" -ne 0 ]; then
	echo "setup.sh: must run as root (installs packages, mounts bpffs)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's kubectl (kubernetes-client), a real client the Kubernetes
# stand-in is checked with (tests/k8s/test_apiserver.py). Where another
# package already owns /usr/bin/kubectl (the Google Cloud SDK's), the two
# cannot both be installed: the Debian package is unpacked, not installed,
# into KUBECTL_DEBIAN_DIR instead, and the test looks there.
KUBECTL_DEBIAN_DIR=/opt/shoal/kubernetes-client
if ! dpkg-query -W -f='${Status}' kubernetes-client 2>/dev/null | grep -q "install ok installed"; then
	owner=$(dpkg -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
	if [ -z "$owner" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client
	elif [ ! -x "$KUBECTL_DEBIAN_DIR/usr/bin/kubectl" ]; then
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download -qq kubernetes-client)
		mkdir -p "$KUBECTL_DEBIAN_DIR"
		dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$KUBECTL_DEBIAN_DIR"
		rm -rf "$tmp"
		echo "setup.sh: /usr/bin/kubectl belongs to $owner; Debian's kubectl unpacked in $KUBECTL_DEBIAN_DIR"
	fi
fi

# node and npm, for scripts/validate-manifests.sh (scripts/test.sh runs
# it). Debian's nodejs and npm where either is missing; not listed above,
# since a NodeSource nodejs brings its own npm and conflicts with Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "setup.sh: installing nodejs npm (scripts/validate-manifests.sh)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends nodejs npm
fi

# bpffs: pins live here. Mount it where it is missing.
if ! grep -qs ' /sys/fs/bpf bpf ' /proc/mounts; then
	mkdir -p /sys/fs/bpf
	mount -t bpf bpffs /sys/fs/bpf
	echo "setup.sh: mounted bpffs at /sys/fs/bpf"
fi

# cgroup2: found wherever it is; mounted only if there is none at all.
if ! awk '$3 == "cgroup2" { found = 1 } END { exit !found }' /proc/mounts; then
	mkdir -p /sys/fs/cgroup/unified
	mount -t cgroup2 none /sys/fs/cgroup/unified
	echo "setup.sh: mounted cgroup2 at /sys/fs/cgroup/unified"
fi

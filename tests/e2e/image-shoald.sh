#!/bin/bash
# image-shoald.sh: starts shoald from the image with podman as the
# DaemonSet does (manifests/daemonset.yaml), for lib.sh's SHOALD_LAUNCHER
# hook (tests/e2e/image.sh sets it). Not a test by itself.
#
#   image-shoald.sh -c CONFIG [SHOALD_ARGS...]
#
# First the init container: shoal-init from the image, as root,
# privileged, with the host's /sys/fs/bpf shared both ways; it makes the
# pin root ($SHOALD_PIN_ROOT) the agent's. Then shoald, like the
# DaemonSet's container:
#  - the network namespace of whoever runs this (podman --network host;
#    the harness runs it in node-a's netns, the test's "host");
#  - the image's own user (not root); every capability dropped, then the
#    DaemonSet's list added (SHOAL_IMAGE_CAPS, comma-separated); the
#    runtime's default seccomp profile; a read-only root filesystem;
#  - the pin root alone from the host's bpffs (HostToContainer: rslave),
#    on a tmpfs at /sys/fs/bpf that holds its mount point (the container's
#    sysfs cannot), the host's cgroup hierarchy at /sys/fs/cgroup read-only, and
#    CONFIG's directory at /etc/shoal read-only, as the ConfigMap is;
#  - named $SHOALD_CONTAINER, and removed when it ends.
# It stays in the foreground, and podman passes SIGTERM on to shoald.
set -euo pipefail

[[ ${1:-} == -c && -n ${2:-} ]] || { echo "image-shoald.sh: usage: -c CONFIG [ARGS...]" >&2; exit 2; }
config=$(readlink -f "$2")
shift 2
: "${SHOAL_IMAGE:?SHOAL_IMAGE (the image reference) is not set}"
: "${SHOALD_CONTAINER:?SHOALD_CONTAINER (the container name) is not set}"
: "${SHOALD_PIN_ROOT:?SHOALD_PIN_ROOT (the pin root of the config) is not set}"
# manifests/daemonset.yaml's capabilities.add.
caps=${SHOAL_IMAGE_CAPS:-BPF,NET_ADMIN,PERFMON,SYS_ADMIN}

runtime=()
[[ -n ${SHOAL_PODMAN_RUNTIME:-} ]] && runtime=(--runtime "$SHOAL_PODMAN_RUNTIME")
# podman's rootful default raises RLIMIT_NOFILE and RLIMIT_NPROC past what
# a runtime without CAP_SYS_RESOURCE may set (this machine's root lacks
# it): keep the caller's open-files limit, and no more processes than
# conmon, which runs the runtime, allows itself (32768 here).
CONMON_NPROC=32768
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
((nproc <= CONMON_NPROC)) || nproc=$CONMON_NPROC
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

podman "${runtime[@]}" run --rm --name "$SHOALD_CONTAINER-init" "${limits[@]}" \
	--network none --user 0:0 --privileged \
	--env SHOAL_PIN_ROOT="$SHOALD_PIN_ROOT" \
	--volume /sys/fs/bpf:/sys/fs/bpf:rshared \
	"$SHOAL_IMAGE" shoal-init

exec podman "${runtime[@]}" run --rm --name "$SHOALD_CONTAINER" "${limits[@]}" \
	--network host \
	--cap-drop all --cap-add "$caps" \
	--read-only \
	--tmpfs /sys/fs/bpf:rw,size=64k,mode=0755 \
	--volume "$SHOALD_PIN_ROOT:$SHOALD_PIN_ROOT:rslave" \
	--volume /sys/fs/cgroup:/sys/fs/cgroup:ro \
	--volume "$(dirname "$config")":/etc/shoal:ro \
	"$SHOAL_IMAGE" shoald -c "/etc/shoal/$(basename "$config")" "$@"

#!/bin/bash
# image.sh: the image that scripts/image builds runs shoald as the
# DaemonSet does, and the mesh works through it (docs/image.md).
#  - scripts/image builds it offline from this build's binaries (tag
#    e2e-<pid>, removed at the end); the OCI archive it writes loads back
#    into podman (as `ctr import` or `kind load image-archive` would load
#    it on a node), and the loaded image is the one every check runs;
#  - the image is small (under IMAGE_MAX_MIB), its user is not root, and
#    its shoald carries exactly the DaemonSet's capabilities as file
#    capabilities: with one of them missing from the container it cannot
#    even be executed;
#  - shoald from the image (tests/e2e/image-shoald.sh, after shoal-init,
#    the init container, from the same image): host network (node-a's
#    netns), the pin root from bpffs, cgroup2 and config mounts, every
#    capability dropped but the DaemonSet's four. Its process runs as uid
#    65532 with those four effective and no other, its pins are that uid's,
#    and an enrolled pod's connection to a VIP is proxied;
#  - then intercept.sh and http.sh run whole against the image (lib.sh's
#    SHOALD_LAUNCHER) and pass.
# Skips when podman or mmdebstrap is missing, mmdebstrap cannot fetch
# from the apt sources, podman cannot run a container here, or the build
# is a sanitizer build (the image holds plain binaries).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E_DIR/../.." && pwd)
# 26 MiB at the time of writing (docs/image.md): a regression that pulls
# in a distribution's worth of packages fails, a new library does not.
IMAGE_MAX_MIB=48
# The image's user (scripts/image SHOAL_UID, the DaemonSet's runAsUser).
IMAGE_UID=65532
# What the DaemonSet grants shoald, and those bits in /proc/PID/status
# (linux/capability.h: NET_ADMIN 12, SYS_ADMIN 21, PERFMON 38, BPF 39).
IMAGE_CAPS=BPF,NET_ADMIN,PERFMON,SYS_ADMIN
IMAGE_CAPS_MASK=000000c000201000

# The container gets what the manifest says, not what this file says.
ds_caps=$(sed -n 's/^ *add: \[\(.*\)\]$/\1/p' "$ROOT/manifests/daemonset.yaml" | tr -d ' ')
if [[ $ds_caps != "$IMAGE_CAPS" ]]; then
	echo "[image] FAIL: manifests/daemonset.yaml grants '$ds_caps', this test expects $IMAGE_CAPS" >&2
	exit 1
fi
export SHOAL_IMAGE_CAPS=$ds_caps

[[ $(id -u) -eq 0 ]] || skip "needs root (podman's storage, mmdebstrap, BPF)"
for tool in podman mmdebstrap setcap objdump; do
	command -v "$tool" >/dev/null || skip "missing tool: $tool (scripts/setup.sh installs it)"
done
[[ -n $SHOALD && -x $SHOALD ]] || skip "shoald binary not found (SHOALD='$SHOALD'); build it first"
BUILD_DIR=$(cd "$(dirname "$SHOALD")/.." && pwd)
# From a variable, not a pipe: grep -q's early exit would fail objdump
# (SIGPIPE) under pipefail and hide the match.
grep -q 'NEEDED.*lib[at]san' <<<"$(objdump -p "$SHOALD")" &&
	skip "$BUILD_DIR is a sanitizer build: the image holds plain binaries (the plain build's run tests it)"

e2e_init

TAG=e2e-$$
IMAGE_REF=$(bash "$ROOT/scripts/image" --print-ref --tag "$TAG")
ARCHIVE=$BUILD_DIR/image/shoal-$TAG.oci.tar
# By name: an image with the same content under another tag keeps it.
image_cleanup() {
	podman rmi "$IMAGE_REF" >/dev/null 2>&1 || true
	rm -f "$ARCHIVE"
}
# e2e_cleanup reads the exit status from $?: hand it on.
trap 'rc=$?; image_cleanup; (exit $rc); e2e_cleanup' EXIT

# ---- the build ----------------------------------------------------------------

t0=$(date +%s)
bash "$ROOT/scripts/image" --build "$BUILD_DIR" --tag "$TAG" >"$LOGDIR/image-build.log" 2>&1 || {
	sed 's/^/    /' "$LOGDIR/image-build.log"
	# Debian's mirror out of reach is this machine's state, not a fault of
	# the image; anything else scripts/image refuses is.
	grep -q '^image: mmdebstrap failed' "$LOGDIR/image-build.log" &&
		skip "mmdebstrap cannot unpack Debian's packages here (see the log above)"
	fatal "scripts/image failed"
}
build_s=$(($(date +%s) - t0))
sed 's/^/    /' "$LOGDIR/image-build.log"
pass "scripts/image built $IMAGE_REF in ${build_s} s"

# The archive is what an operator carries to the nodes: load it back.
podman rmi "$IMAGE_REF" >/dev/null || fatal "cannot remove $IMAGE_REF before loading its archive"
podman load --quiet --input "$ARCHIVE" >"$LOGDIR/image-load.log" 2>&1 ||
	fatal "podman load of $ARCHIVE failed: $(cat "$LOGDIR/image-load.log")"
podman image exists "$IMAGE_REF" && pass "the OCI archive loads back as $IMAGE_REF" ||
	fatal "loading $ARCHIVE gave no $IMAGE_REF: $(cat "$LOGDIR/image-load.log")"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE_REF")
((size <= IMAGE_MAX_MIB * 1048576)) && pass "image size $((size / 1048576)) MiB (at most $IMAGE_MAX_MIB)" ||
	fail "image is $((size / 1048576)) MiB, more than $IMAGE_MAX_MIB"
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE_REF")
[[ $user == "$IMAGE_UID:$IMAGE_UID" ]] && pass "image user $user (not root)" ||
	fail "image user is '$user', expected $IMAGE_UID:$IMAGE_UID"

# A runtime that can start a container here: podman's default, or runc
# where the default cannot (crun refuses a hybrid cgroup layout whose v2
# side has controllers).
probe() { podman ${1:+--runtime "$1"} run --rm --network none --ulimit nofile=1024:1024 \
	--ulimit nproc=1024:1024 --cap-drop all --cap-add "$IMAGE_CAPS" \
	"$IMAGE_REF" shoald --list-metrics >"$LOGDIR/probe.log" 2>&1; }
SHOAL_PODMAN_RUNTIME=""
if ! probe ""; then
	command -v runc >/dev/null && probe runc && SHOAL_PODMAN_RUNTIME=runc ||
		skip "podman cannot run a container here: $(tail -n 2 "$LOGDIR/probe.log" | tr '\n' ' ')"
fi
pass "shoald runs in the image (its libraries resolve)${SHOAL_PODMAN_RUNTIME:+, with runtime $SHOAL_PODMAN_RUNTIME}"
export SHOAL_PODMAN_RUNTIME SHOAL_IMAGE=$IMAGE_REF SHOALD_LAUNCHER=$E2E_DIR/image-shoald.sh

# File capabilities: with PERFMON missing from the container, exec fails.
out=$(podman ${SHOAL_PODMAN_RUNTIME:+--runtime "$SHOAL_PODMAN_RUNTIME"} run --rm --network none \
	--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --cap-drop all --cap-add BPF,NET_ADMIN,SYS_ADMIN \
	"$IMAGE_REF" shoald --list-metrics 2>&1) &&
	fail "shoald ran in a container without CAP_PERFMON: its file capabilities are missing" ||
	{ [[ $out == *"operation not permitted"* ]] &&
		pass "without CAP_PERFMON the container cannot exec shoald (its file capabilities hold)" ||
		fail "without CAP_PERFMON: expected 'operation not permitted', got: $out"; }

# ---- shoald from the image, as the DaemonSet runs it ------------------------------

e2e_topology
write_config
shoald_start
cpid=$(podman inspect --format '{{.State.Pid}}' "$RUN-shoald" 2>/dev/null) ||
	fatal "no container $RUN-shoald"
read -r _ uid _ < <(grep '^Uid:' "/proc/$cpid/status")
eff=$(awk '$1 == "CapEff:" { print $2 }' "/proc/$cpid/status")
comm=$(cat "/proc/$cpid/comm")
[[ $comm == shoald && $uid == "$IMAGE_UID" ]] && pass "the container runs shoald as uid $uid" ||
	fail "container process $cpid is '$comm' as uid $uid, expected shoald as $IMAGE_UID"
[[ $eff == "$IMAGE_CAPS_MASK" ]] && pass "shoald's effective capabilities are $IMAGE_CAPS, no others ($eff)" ||
	fail "shoald's effective capabilities are $eff, expected $IMAGE_CAPS_MASK ($IMAGE_CAPS)"
owners=$(find "$PIN_ROOT" -printf '%u\n' | sort -u | tr '\n' ' ')
[[ $owners == "$IMAGE_UID " ]] && pass "every pin under $PIN_ROOT belongs to uid $IMAGE_UID" ||
	fail "pins under $PIN_ROOT belong to: $owners"
enroll a1
expect_proxied a1 10.96.0.10:80 10.96.0.10:80
shoald_stop
podman container exists "$RUN-shoald" && fail "container $RUN-shoald outlived SIGTERM" ||
	pass "SIGTERM reached shoald through podman, and the container is gone"

# ---- the intercept and HTTP tests, whole, against the image -----------------------

for t in intercept http; do
	t0=$(date +%s)
	if SHOAL_E2E_LOGDIR=$LOGDIR/sub bash "$E2E_DIR/$t.sh" >"$LOGDIR/$t.log" 2>&1; then
		pass "$t.sh passed against the image ($(grep -c '\] ok: ' "$LOGDIR/$t.log") checks, $(($(date +%s) - t0)) s)"
	else
		sed 's/^/    /' "$LOGDIR/$t.log" | tail -n 30
		fail "$t.sh failed against the image (log: $LOGDIR/$t.log)"
	fi
done
finish

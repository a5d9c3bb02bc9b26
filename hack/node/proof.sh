#!/usr/bin/env bash
# Standalone proof of the node's build half, without kubelet: start CRI-O
# (hack/node/crio.sh), run a pod sandbox and in it a container of the buildah
# image with the CRI default capabilities plus SYS_ADMIN and SYS_CHROOT and
# RuntimeDefault seccomp, which runs `buildah --version` and a tiny
# `buildah bud --storage-driver=vfs --isolation=chroot` (FROM scratch + COPY),
# and a container of the shell image with hugepage limits as kubelet sets
# them; then remove everything again
# (hack/node/cleanup.sh) unless --keep.
#
#   hack/node/proof.sh [--keep]
#
# Needs hack/node/build.sh and hack/node/images.sh first. Exit 0 only if the
# build succeeded inside the container with exactly the expected capabilities.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE="$ROOT/hack/node"
OUT="${NODE_DIR:-$ROOT/target/node}"
BIN="$OUT/bin"
STATE="$OUT/state"
WORK="$OUT/proof"
SOCKET="$STATE/crio.sock"
SUITE="${NODE_SUITE:-$( . /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
BUILDAH_IMAGE="localhost/buildpolicy/buildah:$SUITE"
SHELL_IMAGE="localhost/buildpolicy/shell:busybox"
# Every pod cgroup of the proof sits below this (cgroupfs), so cleanup.sh
# knows what to remove.
CGROUP_PARENT="/buildpolicy-node"
KEEP=0
[[ "${1:-}" == --keep ]] && KEEP=1

log() { printf '[node-proof] %s\n' "$*" >&2; }
die() { printf '[node-proof] FAILED: %s\n' "$*" >&2; exit 1; }
crictl_() { "$BIN/crictl" --config "$OUT/crictl.yaml" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The CRI's (and CRI-O's, and OpenShift's) default list, and what the proof adds.
DEFAULT_CAPS="CHOWN DAC_OVERRIDE FSETID FOWNER SETGID SETUID SETPCAP NET_BIND_SERVICE KILL"
ADDED_CAPS="SYS_ADMIN SYS_CHROOT"

cleanup_on_exit() {
  local rc=$?
  if (( KEEP )); then
    log "--keep: CRI-O and the pod stay; hack/node/cleanup.sh removes them"
  else
    "$NODE/cleanup.sh" || rc=1
  fi
  exit $rc
}

main() {
  [[ $EUID -eq 0 ]] || die "run as root"
  trap cleanup_on_exit EXIT
  mkdir -p "$WORK"
  "$NODE/crio.sh" start

  log "CRI-O: $(crictl_ version | tr '\n' ' ')"
  crictl_ images | grep -q "localhost/buildpolicy/buildah *$SUITE" ||
    die "CRI-O does not see $BUILDAH_IMAGE: run hack/node/images.sh (crictl images shows:
$(crictl_ images))"
  crictl_ images | grep -q 'localhost/buildpolicy/shell *busybox' ||
    die "CRI-O does not see $SHELL_IMAGE: run hack/node/images.sh"

  local uid; uid="proof-$(date +%s)"
  # namespace_options (sandbox and each container, as kubelet sends them):
  # network 0 = POD, pid 1 = CONTAINER (kubelet's choice without
  # shareProcessNamespace; a pod-wide PID namespace needs the infra container
  # that drop_infra_ctr leaves out), ipc 0 = POD.
  cat > "$WORK/pod.json" <<EOF
{
  "metadata": { "name": "buildah-proof", "namespace": "node-proof", "uid": "$uid", "attempt": 0 },
  "hostname": "buildah-proof",
  "log_directory": "$STATE/pod-logs/$uid",
  "annotations": { "io.openshift.builder": "true" },
  "linux": {
    "cgroup_parent": "$CGROUP_PARENT/pod-$uid",
    "security_context": {
      "namespace_options": { "network": 0, "pid": 1, "ipc": 0 }
    }
  }
}
EOF
  local caps_json
  caps_json="$(printf '"%s",' $ADDED_CAPS)"; caps_json="[${caps_json%,}]"
  # seccomp profile_type 0 = RuntimeDefault.
  local script
  script='set -e
grep "^Cap" /proc/self/status
buildah --version
mkdir -p /tmp/ctx && cd /tmp/ctx
echo "built inside a CRI-O pod" > hello.txt
printf "FROM scratch\nCOPY hello.txt /hello.txt\n" > Containerfile
start=$(date +%s.%N)
buildah bud --storage-driver=vfs --isolation=chroot -t localhost/proof/hello:1 .
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" "BEGIN { printf \"buildah bud took %.2f s\\n\", b - a }"
buildah images --storage-driver=vfs
echo PROOF-OK'
  cat > "$WORK/buildah.json" <<EOF
{
  "metadata": { "name": "buildah", "attempt": 0 },
  "image": { "image": "$BUILDAH_IMAGE" },
  "command": [ "/bin/bash", "-c", $(printf '%s' "$script" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))') ],
  "log_path": "buildah.log",
  "linux": {
    "security_context": {
      "namespace_options": { "network": 0, "pid": 1, "ipc": 0 },
      "run_as_user": { "value": 0 },
      "capabilities": { "add_capabilities": $caps_json },
      "seccomp": { "profile_type": 0 }
    }
  }
}
EOF
  # Kubelet sets a hugepage limit (0 unless asked) for every page size the
  # machine has; the shell container gets the same, so the proof meets the
  # hugetlb fix-up (hack/node/host-fixups.sh) as kubelet's pods will.
  local size HUGEPAGE_LIMITS=""
  for size in /sys/kernel/mm/hugepages/hugepages-*kB; do
    [[ -e "$size" ]] || continue
    size="${size##*hugepages-}"; size="${size%kB}"
    if (( size >= 1048576 )); then size="$((size / 1048576))GB"; else size="$((size / 1024))MB"; fi
    HUGEPAGE_LIMITS+="${HUGEPAGE_LIMITS:+, }{ \"page_size\": \"$size\", \"limit\": 0 }"
  done
  cat > "$WORK/shell.json" <<EOF
{
  "metadata": { "name": "shell", "attempt": 0 },
  "image": { "image": "$SHELL_IMAGE" },
  "command": [ "/bin/sh", "-c", "echo hello from busybox; id; grep ^CapEff /proc/self/status" ],
  "log_path": "shell.log",
  "linux": {
    "resources": { "hugepage_limits": [ $HUGEPAGE_LIMITS ] },
    "security_context": {
      "namespace_options": { "network": 0, "pid": 1, "ipc": 0 },
      "seccomp": { "profile_type": 0 }
    }
  }
}
EOF

  local t0 pod ctr shell
  t0="$(now)"
  pod="$(crictl_ runp "$WORK/pod.json")" || die "crictl runp failed (CRI-O log: $STATE/crio.log)"
  log "pod sandbox $pod ready in $(since "$t0")s"

  t0="$(now)"
  shell="$(crictl_ create "$pod" "$WORK/shell.json" "$WORK/pod.json")" || die "crictl create (shell) failed"
  crictl_ start "$shell" >/dev/null || die "crictl start (shell) failed"
  wait_exit "$shell" 30
  log "shell container ran in $(since "$t0")s: $(crictl_ logs "$shell" 2>&1 | tr '\n' ' ')"
  [[ "$(exit_code "$shell")" == 0 ]] || die "the shell container exited $(exit_code "$shell")"

  t0="$(now)"
  ctr="$(crictl_ create "$pod" "$WORK/buildah.json" "$WORK/pod.json")" || die "crictl create (buildah) failed"
  crictl_ start "$ctr" >/dev/null || die "crictl start (buildah) failed"
  wait_exit "$ctr" 300
  local took; took="$(since "$t0")"
  crictl_ logs "$ctr" > "$WORK/buildah.out" 2>&1 || true
  sed 's/^/    | /' "$WORK/buildah.out" >&2
  local code; code="$(exit_code "$ctr")"
  [[ "$code" == 0 ]] || die "the buildah container exited $code (output above)"
  grep -q '^PROOF-OK' "$WORK/buildah.out" || die "the buildah container did not finish its script"
  log "buildah container: created, built and exited 0 in ${took}s"

  # The container's bounding set must be exactly the default list plus
  # SYS_ADMIN and SYS_CHROOT.
  crictl_ inspect "$ctr" > "$WORK/buildah.inspect.json"
  local want got
  want="$(printf 'CAP_%s\n' $DEFAULT_CAPS $ADDED_CAPS | sort | tr '\n' ' ')"
  got="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" ".join(sorted(d["info"]["runtimeSpec"]["process"]["capabilities"]["bounding"])))' "$WORK/buildah.inspect.json") "
  [[ "$got" == "$want" ]] || die "bounding capabilities are '$got', expected '$want'"
  log "bounding set as asked: $got"
  local seccomp
  seccomp="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["info"]["runtimeSpec"]["linux"].get("seccomp"); print("default action %s, %d syscall rules" % (s["defaultAction"], len(s["syscalls"])) if s else "none")' "$WORK/buildah.inspect.json")"
  log "seccomp: $seccomp"
  log "PROOF PASSED"
}

exit_code() { crictl_ inspect -o go-template --template '{{.status.exitCode}}' "$1" 2>/dev/null; }

wait_exit() { # container timeout-seconds
  local i state
  for ((i = 0; i < $2 * 2; i++)); do
    state="$(crictl_ inspect -o go-template --template '{{.status.state}}' "$1" 2>/dev/null || true)"
    [[ "$state" == CONTAINER_EXITED ]] && return 0
    sleep 0.5
  done
  die "container $1 did not exit within $2 s (state $state)"
}

main "$@"

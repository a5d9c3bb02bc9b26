#!/usr/bin/env bash
# Host fix-ups the node needs on this kind of machine, each applied only when
# the machine needs it, logged to target/node/state/fixups.log (one
# "<what> <argument>" a line) and undone by hack/node/cleanup.sh in reverse.
# hack/node/crio.sh start runs it.
#
#   hack/node/host-fixups.sh         apply what is needed, say what was done
#   hack/node/host-fixups.sh check   only say what would be needed
#   hack/node/host-fixups.sh kubelet the sysctls kubelet insists on (hack/node/node.sh up runs it)
#
# mount-hugetlb: the machine mounts every cgroup controller as a v1 hierarchy
#   except hugetlb, which stays on the cgroup2 root (/sys/fs/cgroup/unified,
#   which has no other controller and no cgroup using it). runc in v1 mode
#   then fails every container that has hugepage limits, and kubelet sets
#   them (0) for every page size the machine has:
#     runc create failed: unable to start container process: error during
#     container init: error setting cgroup config for procHooks process:
#     cannot set hugetlb limit: container could not join or create cgroup
#   Fix: mount hugetlb as its own v1 hierarchy at /sys/fs/cgroup/hugetlb
#   (the controller moves there while the v2 root does not use it; unmounting
#   gives it back).
#
# sysctl (kubelet mode): kubelet's container manager sets six kernel tunables
#   at start (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables:
#   "modify" with protectKernelDefaults false, "error" with true, no config
#   for "warn"). Set here first, with the value before logged, so that
#   cleanup.sh puts them back: on this machine vm.overcommit_memory 0 -> 1,
#   kernel.panic 1 -> 10, kernel.panic_on_oops 0 -> 1.
#
# Nothing else is changed: /etc/subuid and /etc/subgid stay empty (the proof's
# buildah runs as root inside the container with no user namespace of its
# own: FROM scratch + COPY needs none).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${NODE_DIR:-$ROOT/target/node}"
STATE="${NODE_STATE:-$OUT/state}"   # hack/node/node.sh sets NODE_STATE
FIXUPS="$STATE/fixups.log"
HUGETLB_MOUNT="/sys/fs/cgroup/hugetlb"

log() { printf '[node-fixups] %s\n' "$*" >&2; }
die() { printf '[node-fixups] ERROR: %s\n' "$*" >&2; exit 1; }

# hugetlb needs the fix-up when cgroup v1 is in use (cgroupfs driver, v1
# controllers mounted) and /proc/cgroups puts hugetlb on hierarchy 0, the
# cgroup2 one, while the kernel has hugepage sizes.
hugetlb_needed() {
  [[ -d /sys/kernel/mm/hugepages ]] && compgen -G '/sys/kernel/mm/hugepages/hugepages-*' >/dev/null || return 1
  [[ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]] || return 1   # pure cgroup v2: nothing to do
  awk '$1 == "hugetlb" && $2 == 0 && $4 == 1 {found=1} END {exit !found}' /proc/cgroups || return 1
  ! findmnt -rn -t cgroup -o OPTIONS | tr ',' '\n' | grep -qx hugetlb
}

apply_hugetlb() {
  local v2; v2="$(findmnt -rn -t cgroup2 -o TARGET | head -1)"
  if [[ -n "$v2" ]] && find "$v2" -mindepth 1 -maxdepth 1 -type d | grep -q .; then
    # hugetlb can only move to a v1 hierarchy while no v2 cgroup uses it.
    grep -qw hugetlb "$v2/cgroup.subtree_control" 2>/dev/null &&
      die "hugetlb is enabled in $v2/cgroup.subtree_control: it cannot be mounted as a v1 hierarchy; disable it there first"
  fi
  mkdir -p "$HUGETLB_MOUNT"
  mount -t cgroup -o hugetlb hugetlb "$HUGETLB_MOUNT" ||
    die "mount -t cgroup -o hugetlb hugetlb $HUGETLB_MOUNT failed: containers with hugepage limits (all of kubelet's) will fail 'cannot set hugetlb limit'"
  echo "mount-hugetlb $HUGETLB_MOUNT" >> "$FIXUPS"
  log "fix-up applied (logged in ${FIXUPS#"$ROOT"/}): mounted the hugetlb controller as a v1 hierarchy at $HUGETLB_MOUNT"
}

KUBELET_SYSCTLS="vm.overcommit_memory=1 vm.panic_on_oom=0 kernel.panic=10 kernel.panic_on_oops=1 kernel.keys.root_maxkeys=1000000 kernel.keys.root_maxbytes=25000000"

apply_sysctls() {
  local kv key want have
  for kv in $KUBELET_SYSCTLS; do
    key="${kv%%=*}" want="${kv#*=}"
    have="$(sysctl -n "$key")" || die "cannot read sysctl $key"
    [[ "$have" == "$want" ]] && continue
    sysctl -qw "$key=$want" || die "cannot set sysctl $key=$want (kubelet would fail the same way)"
    echo "sysctl $key $have" >> "$FIXUPS"
    log "fix-up applied (logged in ${FIXUPS#"$ROOT"/}): sysctl $key $have -> $want (kubelet's setupKernelTunables)"
  done
}

mkdir -p "$STATE"
case "${1:-apply}" in
  kubelet) apply_sysctls ;;
  apply)
    if hugetlb_needed; then apply_hugetlb; else log "hugetlb: no fix-up needed"; fi ;;
  check)
    if hugetlb_needed; then echo "mount-hugetlb needed"; else echo "no fix-up needed"; fi ;;
  *) die "usage: hack/node/host-fixups.sh [apply|check|kubelet]" ;;
esac

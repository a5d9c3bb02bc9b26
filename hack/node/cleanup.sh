#!/usr/bin/env bash
# Removes everything the node's CRI-O left on the machine, in an order that
# leaves nothing behind: containers and pod sandboxes first (conmon outlives
# CRI-O unless its containers are removed through CRI-O), then CRI-O itself,
# then whatever a crash may have left (a CRI-O that died is started once more
# to remove its pods; then conmon and container processes, runc state, shm
# mounts, namespace mounts, cgroups, CNI cache entries), then the
# host fix-ups logged in target/node/state/fixups.log, undone in reverse.
# Images in /var/lib/containers/storage stay (hack/node/images.sh remove
# drops them); CRI-O's log is kept as target/node/crio.last.log.
#
#   hack/node/cleanup.sh
#
# Only touches what this node made: processes found by their pid or by a
# command line naming this node's state directory, cgroups below
# $CGROUP_PARENT, sandboxes whose OCI config names the state directory,
# mounts below the state directory.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE="$ROOT/hack/node"
OUT="${NODE_DIR:-$ROOT/target/node}"
BIN="$OUT/bin"
# NODE_STATE / NODE_CONF_DIR (set by hack/node/node.sh): this CRI-O's state
# directory and where its config, crictl.yaml and last log go; default
# target/node/state and target/node.
STATE="${NODE_STATE:-$OUT/state}"
CONF_DIR="${NODE_CONF_DIR:-$OUT}"
SOCKET="$STATE/crio.sock"
CGROUP_PARENT="buildpolicy-node"
CNI_NETWORK="buildpolicy-loopback"
# NODE_KUBELET_DIR (set by hack/node/node.sh down, after it stopped kubelet):
# kubelet's root directory. Its volume mounts (projected service-account
# tokens, tmpfs) are unmounted, processes naming it killed, and kubelet's
# cgroups (/kubepods in every hierarchy) removed like CRI-O's.
KUBELET_DIR="${NODE_KUBELET_DIR:-}"
CGROUP_PARENTS="$CGROUP_PARENT${KUBELET_DIR:+ kubepods}"
STORAGE_ROOT="/var/lib/containers/storage"
STORAGE_RUNROOT="/run/containers/storage"

log() { printf '[node-cleanup] %s\n' "$*" >&2; }
FAILED=0
warn() { printf '[node-cleanup] LEFT BEHIND: %s\n' "$*" >&2; FAILED=1; }

crictl_() { "$BIN/crictl" --config "$CONF_DIR/crictl.yaml" "$@"; }
crio_alive() { "$NODE/crio.sh" status >/dev/null 2>&1; }

# Pids of processes whose command line names this node's state directory
# (conmon: --exit-dir, -r; runc: --root; pinns: -d).
node_pids() {
  local d cmd
  for d in /proc/[0-9]*; do
    [[ "${d#/proc/}" == "$$" ]] && continue
    cmd="$( { tr '\0' ' ' < "$d/cmdline"; } 2>/dev/null)" || continue
    [[ "$cmd" == *cleanup.sh* ]] && continue
    [[ "$cmd" == *"$STATE/"* || ( -n "$KUBELET_DIR" && "$cmd" == *"$KUBELET_DIR"* ) ]] && echo "${d#/proc/}"
  done
}

# Something of this node's CRI-O is left: a container in its runc root, or a
# sandbox in the storage's run root whose OCI config names its namespaces
# directory (every sandbox's does).
leftovers() {
  [[ -n "$("$BIN/runc" --root "$STATE/runc" list -q 2>/dev/null)" ]] && return 0
  grep -qsl -- "$STATE/ns/" "$STORAGE_RUNROOT"/overlay-containers/*/userdata/config.json
}

# 0. CRI-O is gone (crashed, killed) but left pods: start it again, so that it
#    restores them (conmon survives CRI-O) or, when it cannot, removes them
#    itself ("Deleting all containers under sandbox ... since it could not be
#    restored") with their storage containers, shm mounts and CNI state.
if ! crio_alive && [[ -x "$BIN/crio" ]] && leftovers; then
  log "CRI-O is not running but left pods behind: starting it once more to remove them"
  "$NODE/crio.sh" start || warn "could not restart CRI-O (see $STATE/crio.log)"
fi

# 1. Through CRI-O: every container, then every pod sandbox.
if crio_alive && [[ -S "$SOCKET" ]]; then
  ctrs="$(crictl_ ps -a -q 2>/dev/null)"
  if [[ -n "$ctrs" ]]; then
    log "removing containers: $(echo $ctrs)"
    # shellcheck disable=SC2086
    crictl_ rm --force $ctrs >/dev/null || warn "crictl rm failed"
  fi
  pods="$(crictl_ pods -q 2>/dev/null)"
  if [[ -n "$pods" ]]; then
    log "removing pod sandboxes: $(echo $pods)"
    # shellcheck disable=SC2086
    crictl_ stopp $pods >/dev/null; crictl_ rmp --force $pods >/dev/null || warn "crictl rmp failed"
  fi
fi

# 2. CRI-O.
[[ -x "$NODE/crio.sh" ]] && "$NODE/crio.sh" stop

# 3. Leftovers of a crash: runc containers in this node's runc root, conmon
#    and other processes naming the state directory.
if [[ -d "$STATE/runc" ]]; then
  for id in $("$BIN/runc" --root "$STATE/runc" list -q 2>/dev/null); do
    log "runc delete --force $id"
    "$BIN/runc" --root "$STATE/runc" delete --force "$id" || warn "runc container $id"
  done
fi
pids="$(node_pids)"
if [[ -n "$pids" ]]; then
  log "killing leftover processes: $(for p in $pids; do printf '%s(%s) ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)"
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null; sleep 1
  for p in $pids; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
fi

# 4. Sandboxes CRI-O could not remove (their shm mount and run root
#    directory), found as in leftovers().
for cfg in "$STORAGE_RUNROOT"/overlay-containers/*/userdata/config.json; do
  [[ -f "$cfg" ]] && grep -q -- "$STATE/ns/" "$cfg" || continue
  dir="${cfg%/userdata/config.json}"
  mountpoint -q "$dir/userdata/shm" && { log "umount $dir/userdata/shm"; umount "$dir/userdata/shm" || warn "mount $dir/userdata/shm"; }
  warn "sandbox ${dir##*/} is still in the containers storage: run 'hack/node/crio.sh start' and this script again (CRI-O removes sandboxes it cannot restore)"
done

# 5. Mounts below the state directory (pinns' namespace files, shm) and
#    kubelet's root directory (kubelet bind-mounts it onto itself, shared)
#    and below it (volumes), deepest first.
for m in $(awk -v s="$STATE/" -v k="$KUBELET_DIR" 'index($5, s) == 1 || (k != "" && ($5 == k || index($5, k "/") == 1)) {print $5}' /proc/self/mountinfo | sort -r); do
  log "umount $m"
  umount "$m" 2>/dev/null || umount -l "$m" || warn "mount $m"
done

# 6. Cgroups below /$CGROUP_PARENT (and kubelet's /kubepods) in every
#    hierarchy, deepest first.
for h in $(for p in $CGROUP_PARENTS; do printf "%s$p\n" /sys/fs/cgroup/*/; done); do
  [[ -d "$h" ]] || continue
  while read -r cg; do
    # Anything still inside was started by this node: kill it by pid.
    for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    if rmdir "$cg" 2>/dev/null || { sleep 0.5; rmdir "$cg" 2>/dev/null; }; then
      log "rmdir $cg"
    else
      warn "cgroup $cg"
    fi
  done < <(find "$h" -depth -type d)
done

# 7. CNI's cache of this network (libcni keeps results in /var/lib/cni).
for f in /var/lib/cni/results/"$CNI_NETWORK"-*; do
  [[ -e "$f" ]] && { log "rm $f"; rm -f "$f"; }
done

# 8. Host fix-ups, undone in reverse order of their log.
if [[ -s "$STATE/fixups.log" ]]; then
  tac "$STATE/fixups.log" | while read -r what arg; do
    case "$what" in
      mount-hugetlb)
        log "undoing fix-up: umount $arg (hugetlb v1 hierarchy)"
        # The kernel keeps an unmounted v1 hierarchy alive while a cgroup of
        # it is still dying (a killed conmon not yet reaped): it then stays
        # hierarchy N in /proc/cgroups, off the cgroup2 root. Mounting and
        # unmounting it again once the cgroups are gone releases it.
        for i in 1 2 3 4 5 6; do
          umount "$arg" 2>/dev/null
          awk '$1 == "hugetlb" && $2 == 0 {ok=1} END {exit !ok}' /proc/cgroups && break
          sleep 1
          awk '$1 == "hugetlb" && $2 == 0 {ok=1} END {exit !ok}' /proc/cgroups && break
          mount -t cgroup -o hugetlb hugetlb "$arg" 2>/dev/null
        done
        rmdir "$arg" 2>/dev/null
        awk '$1 == "hugetlb" && $2 == 0 {ok=1} END {exit !ok}' /proc/cgroups ||
          warn "hugetlb is still a v1 hierarchy ($(grep hugetlb /proc/cgroups)); mount -t cgroup -o hugetlb hugetlb $arg, remove its child cgroups, umount it" ;;
      sysctl)
        # arg: "<key> <value before>"; only put back if still what we set.
        read -r key old <<< "$arg"
        log "undoing fix-up: sysctl $key=$old (was $(sysctl -n "$key" 2>/dev/null))"
        sysctl -qw "$key=$old" || warn "sysctl $key could not be set back to $old" ;;
      created-dir)
        # Only if nothing else has put anything there since.
        find "$arg" -depth -type d -empty -delete 2>/dev/null
        if [[ -e "$arg" ]]; then log "kept $arg (not empty: someone else uses it)"; else log "removed $arg (made by the node's CRI-O or kubelet)"; fi ;;
      *) warn "unknown fix-up '$what $arg' in $STATE/fixups.log" ;;
    esac
  done
  rm -f "$STATE/fixups.log"
fi

# 9. State, keeping CRI-O's log.
if [[ -d "$STATE" ]]; then
  [[ -f "$STATE/crio.log" ]] && mv "$STATE/crio.log" "$CONF_DIR/crio.last.log"
  if awk -v s="$STATE" 'index($5, s) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    warn "mounts remain below $STATE: not removing it"
  else
    rm -rf "$STATE"
  fi
fi

# What is left, if anything.
left="$(node_pids)"; [[ -z "$left" ]] || warn "processes $(echo $left)"
for p in $CGROUP_PARENTS; do
  ls -d /sys/fs/cgroup/*/"$p" >/dev/null 2>&1 && warn "cgroups $(ls -d /sys/fs/cgroup/*/"$p")"
done
if (( FAILED )); then log "done, with leftovers (above)"; exit 1; fi
log "done: no CRI-O, conmon, container, mount or cgroup of the node is left"

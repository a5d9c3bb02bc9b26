#!/usr/bin/env bash
# The proof that a node made by hack/node/node.sh works with its cluster
# (LOCAL_CLUSTER_DIR, default target/local-cluster), as the cluster admin:
#
#   1. a busybox pod without nodeName: kube-scheduler puts it on "localhost",
#      it runs, `kubectl logs` prints hello, `kubectl exec` works, it Succeeds;
#   2. a buildah pod, root, capabilities add SETUID SETGID SYS_ADMIN
#      SYS_CHROOT drop KILL MKNOD, seccomp RuntimeDefault, building FROM
#      scratch + COPY with `buildah bud --storage-driver=vfs
#      --isolation=chroot`: Succeeds.
#
#   hack/node/node-proof.sh    (the node must be up: hack/node/node.sh up)
#
# Works in its own namespace (node-proof), deleted at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="$(realpath -m "${LOCAL_CLUSTER_DIR:-$ROOT/target/local-cluster}")"
KUBECTL="${LOCAL_CLUSTER_BIN:-$ROOT/target/local-cluster/bin}/kubectl"
NS=node-proof

log() { printf '[node-proof] %s\n' "$*" >&2; }
die() { printf '[node-proof] ERROR: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" --kubeconfig "$CLUSTER/kubeconfig" -n "$NS" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

[[ "$(k get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] ||
  die "node localhost is not Ready: LOCAL_CLUSTER_DIR=$CLUSTER hack/node/node.sh up"
k get namespace "$NS" >/dev/null 2>&1 || k create namespace "$NS" >/dev/null
# The service account the pods run as (the controller manager makes it).
for _ in $(seq 1 50); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

# wait_phase POD PHASE SECONDS: until the pod reaches PHASE (dies on Failed).
wait_phase() {
  local i phase
  for i in $(seq 1 $(($3 * 10))); do
    phase="$(k get pod "$1" -o jsonpath='{.status.phase}')"
    [[ "$phase" == "$2" ]] && return 0
    [[ "$phase" == Failed ]] && { k logs "$1" >&2 || true; die "pod $1 Failed"; }
    [[ "$2" == Running && "$phase" == Succeeded ]] && return 0
    sleep 0.1
  done
  k describe pod "$1" >&2; die "pod $1 not $2 after $3 s"
}

log "1. busybox pod, scheduled by kube-scheduler"
t="$(now)"
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: shell
    image: localhost/buildpolicy/shell:busybox
    imagePullPolicy: Never
    command: [sh, -c, "echo hello; sleep 5"]
EOF
wait_phase hello Running 60
running="$(since "$t")"
log "   created -> Running: ${running}s, on node $(k get pod hello -o jsonpath='{.spec.nodeName}'), scc $(k get pod hello -o jsonpath='{.metadata.annotations.openshift\.io/scc}')"
log "   scheduled by: $(k get events --field-selector involvedObject.name=hello,reason=Scheduled -o jsonpath='{.items[0].reportingComponent}: {.items[0].message}')"
out="$(k logs hello)"; log "   kubectl logs: $out"; [[ "$out" == hello ]] || die "kubectl logs printed '$out'"
out="$(k exec hello -- sh -c 'echo exec ok: uid $(id -u) in $(hostname)')"; log "   kubectl exec: $out"
wait_phase hello Succeeded 60
log "   created -> Succeeded: $(since "$t")s"

log "2. buildah pod: root, caps +SETUID +SETGID +SYS_ADMIN +SYS_CHROOT -KILL -MKNOD, seccomp RuntimeDefault"
t="$(now)"
k apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: buildah}
spec:
  restartPolicy: Never
  containers:
  - name: buildah
    image: localhost/buildpolicy/buildah:bookworm
    imagePullPolicy: Never
    securityContext:
      runAsUser: 0
      capabilities:
        add: [SETUID, SETGID, SYS_ADMIN, SYS_CHROOT]
        drop: [KILL, MKNOD]
      seccompProfile: {type: RuntimeDefault}
    command:
    - sh
    - -c
    - |
      set -e
      grep -E '^Cap(Eff|Bnd)|^Seccomp:' /proc/self/status
      mkdir -p /tmp/ctx && cd /tmp/ctx
      echo 'hello from a pod-built image' > hello.txt
      printf 'FROM scratch\nCOPY hello.txt /hello.txt\n' > Containerfile
      buildah --version
      buildah bud --storage-driver=vfs --isolation=chroot -f Containerfile -t localhost/proof/hello:1 .
      echo BUILD-OK
EOF
wait_phase buildah Running 60
log "   created -> Running: $(since "$t")s, scc $(k get pod buildah -o jsonpath='{.metadata.annotations.openshift\.io/scc}')"
wait_phase buildah Succeeded 120
log "   created -> Succeeded: $(since "$t")s"
k logs buildah | sed 's/^/    | /' >&2
k logs buildah | grep -qx BUILD-OK || die "the build did not finish"

"$KUBECTL" --kubeconfig "$CLUSTER/kubeconfig" delete namespace "$NS" --wait=false >/dev/null
log "proof OK (namespace $NS is being deleted)"

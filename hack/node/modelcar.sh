#!/usr/bin/env bash
# The ModelCar pipeline, run to the end on a local cluster with a node:
# download-model writes a model file to a shared workspace, build-and-push-v2
# builds a ModelCar image with Buildah under the SCC the operator generates
# for the sample BuildPolicy and pushes it to an OCI layout on the workspace,
# mirror-to-internal copies it, register-model records its digest as a
# result. Nothing is pulled: the images are made on this machine.
#
#   LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/local-cluster.sh up --node
#   LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/node/modelcar.sh
#   LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/node/modelcar.sh clean   # what a kept run left
#
# The scene (hack/node/modelcar-pipeline.yaml and a sample policy, see MODELCAR_ISOLATION):
#   - Tekton's feature flag coschedule: disabled (the affinity assistant is a
#     StatefulSet, and no StatefulSet controller runs), put back at the end;
#   - the policy's namespace (private-ai-demo) and service account (model-build-sa);
#   - a hostPath PersistentVolume the admin creates (a directory under
#     $LOCAL_CLUSTER_DIR/modelcar, mode 0777: restricted-v2 pods run as a
#     namespace UID and hostPath has no fsGroup ownership), and the
#     PersistentVolumeClaim bound to it by kube-controller-manager's
#     persistentvolume-binder;
#   - the four Tasks and the Pipeline (the node variant of the sample);
#   - the operator (BUILDPOLICY_OPERATOR, else built with hack/cargo-bins.sh),
#     log in $LOCAL_CLUSTER_DIR/modelcar/operator.log, and the sample policy.
# Then one PipelineRun, waited for (MODELCAR_TIMEOUT seconds, default 600);
# prints each TaskRun's status, the pods' SCC annotations, the digest and
# the times; removes everything it created but the operator's logs
# (MODELCAR_KEEP=1: keeps the scene for a look; the next run removes it).
#
# MODELCAR_ISOLATION picks the sample policy, and with it the namespace:
#   HostUserNamespace (default)  config/samples/modelcar-build.yaml, private-ai-demo
#   PodUserNamespace             config/samples/modelcar-build-pod-userns.yaml,
#                                private-ai-demo-pod-userns; the PipelineRun sets
#                                hostUsers: false for the build task
#                                (taskRunSpecs[].podTemplate)
#   CRIOUserNamespace            config/samples/modelcar-build-crio-userns.yaml,
#                                private-ai-demo-crio-userns (the operator
#                                annotates the pinned Task; nothing else changes)
#
# Exit status 0 only when every TaskRun Succeeded, the build pod ran under
# the policy's SCC (buildpolicy-<policy>) and the other three under restricted-v2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

log() { printf '[modelcar] %s\n' "$*" >&2; }
die() { printf '[modelcar] ERROR: %s\n' "$*" >&2; exit 1; }
say() { printf '\n# %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

[[ -n "${LOCAL_CLUSTER_DIR:-}" ]] ||
  die "set LOCAL_CLUSTER_DIR to a cluster started with hack/local-cluster.sh up --node (e.g. \$PWD/target/node-cluster)"
[[ "$(id -u)" == 0 ]] || die "run as root (the node's images are in root's containers storage)"
RUN="$LOCAL_CLUSTER_DIR/run"
[[ -f "$RUN/node.enabled" ]] ||
  die "$LOCAL_CLUSTER_DIR has no node: LOCAL_CLUSTER_DIR=$LOCAL_CLUSTER_DIR hack/local-cluster.sh up --node"
eval "$(LOCAL_CLUSTER_DIR="$LOCAL_CLUSTER_DIR" hack/local-cluster.sh env)"
export KUBECONFIG
[[ "$KUBECONFIG" == "$LOCAL_CLUSTER_DIR/kubeconfig" ]] || die "hack/local-cluster.sh env named $KUBECONFIG"

ISOLATION="${MODELCAR_ISOLATION:-HostUserNamespace}"
case "$ISOLATION" in
  HostUserNamespace) POLICY_FILE=config/samples/modelcar-build.yaml ;;
  PodUserNamespace) POLICY_FILE=config/samples/modelcar-build-pod-userns.yaml ;;
  CRIOUserNamespace) POLICY_FILE=config/samples/modelcar-build-crio-userns.yaml ;;
  *) die "MODELCAR_ISOLATION=$ISOLATION: one of HostUserNamespace, PodUserNamespace, CRIOUserNamespace" ;;
esac
POLICY="$(sed -n 's/^  name: //p' "$POLICY_FILE" | head -n1)"
NS="$(sed -n 's/^  namespace: //p' "$POLICY_FILE" | head -n1)"
SA="$(sed -n 's/^  serviceAccountName: //p' "$POLICY_FILE" | head -n1)"
[[ -n "$POLICY" && -n "$NS" && -n "$SA" ]] || die "cannot read name, namespace and service account from $POLICY_FILE"
SCC=buildpolicy-$POLICY
TEKTON_NS=openshift-pipelines
PV=modelcar-workspace-$NS
PVC=modelcar-workspace
WORK="$LOCAL_CLUSTER_DIR/modelcar"
WORKSPACE_DIR="$WORK/workspace-$NS"
PIPELINE=hack/node/modelcar-pipeline.yaml
TIMEOUT="${MODELCAR_TIMEOUT:-600}"

# ------------------------------------------------------------ preflight ----

kubectl get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True ||
  die "node localhost is not Ready: LOCAL_CLUSTER_DIR=$LOCAL_CLUSTER_DIR hack/local-cluster.sh status"
[[ -f "$RUN/tekton-controller.pid" ]] && kill -0 "$(cat "$RUN/tekton-controller.pid")" 2>/dev/null ||
  die "Tekton's controller does not run in this cluster (up without --no-tekton starts it)"
grep -q 'localhost/buildpolicy/tekton-entrypoint' "$RUN/tekton-controller.images" 2>/dev/null ||
  die "Tekton's controller runs with placeholder step images: LOCAL_CLUSTER_DIR=$LOCAL_CLUSTER_DIR hack/local-cluster.sh up --node restarts it with the node's"
for image in $(grep -o 'localhost/buildpolicy/[a-z-]*:[a-z0-9.]*' "$PIPELINE" | sort -u); do
  [[ "$image" == localhost/buildpolicy/buildah-capabilities:* ]] && continue
  buildah --storage-driver "${NODE_STORAGE_DRIVER:-overlay}" images --quiet "$image" >/dev/null 2>&1 || die "$image is missing: run hack/node/images.sh"
done
build_image="$(hack/node/capability-image.sh)"   # made once, stamp-cached
grep -q "image: $build_image\$" "$PIPELINE" || die "$PIPELINE does not use $build_image"

if [[ -n "${BUILDPOLICY_OPERATOR:-}" ]]; then
  OPERATOR="$BUILDPOLICY_OPERATOR"
else
  log "building the operator (nice -n 10 hack/cargo-bins.sh)"
  OPERATOR="$(nice -n 10 hack/cargo-bins.sh -q)/buildpolicy-operator"
fi
[[ -x "$OPERATOR" ]] || die "no operator binary at $OPERATOR"

mkdir -p "$WORK"
operator_pid=""
start_operator() { # log file
  "$OPERATOR" run --metrics-addr 127.0.0.1:0 >"$1" 2>&1 &
  operator_pid=$!
}
stop_operator() {
  [[ -n "$operator_pid" ]] || return 0
  kill "$operator_pid" 2>/dev/null || true
  wait "$operator_pid" 2>/dev/null || true
  operator_pid=""
}

# What this script creates, removed in reverse (the operator runs while a
# policy goes: it releases the grant and the policy's finalizer). A scene is
# one sample policy's: policy, namespace, PersistentVolume, workspace dir.
SAMPLES=(config/samples/modelcar-build.yaml config/samples/modelcar-build-pod-userns.yaml
  config/samples/modelcar-build-crio-userns.yaml)
COSCHEDULE_FILE="$WORK/coschedule.before"   # the value before the first kept scene
remove_scene() { # policy namespace
  local policy="$1" ns="$2" rc=0
  if kubectl get buildpolicy "$policy" >/dev/null 2>&1; then
    [[ -n "$operator_pid" ]] || start_operator "$WORK/operator-cleanup.log"
    kubectl delete buildpolicy "$policy" --wait=true --timeout=60s >/dev/null || rc=1
  fi
  stop_operator
  kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null || rc=1
  kubectl delete pv "modelcar-workspace-$ns" --ignore-not-found --wait=true --timeout=60s >/dev/null || rc=1
  rm -rf "$WORK/workspace-$ns"
  return $rc
}
restore_coschedule() {
  [[ -f "$COSCHEDULE_FILE" ]] || return 0
  local before; before="$(cat "$COSCHEDULE_FILE")"
  if [[ -n "$before" ]]; then
    kubectl -n "$TEKTON_NS" patch configmap feature-flags --type merge \
      -p "{\"data\":{\"coschedule\":\"$before\"}}" >/dev/null || return 1
  else
    kubectl -n "$TEKTON_NS" patch configmap feature-flags --type json \
      -p '[{"op":"remove","path":"/data/coschedule"}]' >/dev/null || return 1
  fi
  rm -f "$COSCHEDULE_FILE"
}
# Every sample's scene an earlier run kept (MODELCAR_KEEP=1) or left.
remove_all_scenes() {
  local file policy ns rc=0
  for file in "${SAMPLES[@]}"; do
    policy="$(sed -n 's/^  name: //p' "$file" | head -n1)"
    ns="$(sed -n 's/^  namespace: //p' "$file" | head -n1)"
    if kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl get pv "modelcar-workspace-$ns" >/dev/null 2>&1 ||
       kubectl get buildpolicy "$policy" >/dev/null 2>&1 || [[ -e "$WORK/workspace-$ns" ]]; then
      log "removing the scene of $policy an earlier run left"
      remove_scene "$policy" "$ns" || rc=1
    fi
  done
  restore_coschedule || rc=1
  return $rc
}

remove_all_scenes || die "could not remove an earlier run's scene"
if [[ "${1:-}" == clean ]]; then
  log "nothing of an earlier run is left"
  exit 0
fi

on_exit() {
  local rc=$?
  if [[ "${MODELCAR_KEEP:-0}" == 1 ]]; then
    stop_operator
    log "MODELCAR_KEEP=1: the scene stays (namespace $NS, PV $PV, policy $POLICY, coschedule disabled); the next run, or $0 clean, removes it"
  else
    log "cleaning up"
    local t0; t0="$(now)"
    { remove_scene "$POLICY" "$NS" && restore_coschedule; } || { log "cleanup left something (see above)"; rc=1; }
    log "cleaned up in $(secs "$t0" "$(now)")s"
  fi
  exit $rc
}
trap on_exit EXIT

# ---------------------------------------------------------------- scene ----

say "Tekton: the affinity assistant off (coschedule: disabled; no StatefulSet controller runs here)"
kubectl -n "$TEKTON_NS" get configmap feature-flags -o jsonpath='{.data.coschedule}' > "$COSCHEDULE_FILE"
echo "coschedule was: $(cat "$COSCHEDULE_FILE")"
kubectl -n "$TEKTON_NS" patch configmap feature-flags --type merge -p '{"data":{"coschedule":"disabled"}}'

say "Namespace $NS, service account $SA"
kubectl create namespace "$NS"
kubectl -n "$NS" create serviceaccount "$SA"

say "The shared workspace: PersistentVolume $PV (hostPath ${WORKSPACE_DIR#"$ROOT"/}) and the claim $PVC bound to it"
rm -rf "$WORKSPACE_DIR" && mkdir -p "$WORKSPACE_DIR" && chmod 0777 "$WORKSPACE_DIR"
kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $PV
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: $NS, name: $PVC}
  hostPath: {path: $WORKSPACE_DIR, type: Directory}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: $PVC
  namespace: $NS
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $PV
  resources: {requests: {storage: 1Gi}}
EOF
kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Bound "pvc/$PVC" --timeout=60s
kubectl -n "$NS" get pvc "$PVC"

say "The four Tasks and the Pipeline ($PIPELINE: the sample's, on local images, with the workspace)"
kubectl -n "$NS" apply -f "$PIPELINE"
kubectl -n "$NS" get tasks,pipelines

say "The operator (log ${WORK#"$ROOT"/}/operator.log) and the sample policy ($POLICY_FILE)"
start_operator "$WORK/operator.log"
echo "operator running, pid $operator_pid (${OPERATOR#"$ROOT"/})"
kubectl apply -f "$POLICY_FILE"
kubectl wait --for=condition=Ready --timeout=60s "buildpolicy/$POLICY"
kubectl get buildpolicy "$POLICY" -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}){"\n"}{end}'
kubectl -n "$NS" get task build-and-push-v2 -o jsonpath='build-and-push-v2 pinned: openshift.io/required-scc={.metadata.annotations.openshift\.io/required-scc}{"\n"}'

# ---------------------------------------------------------------- run ----

say "The PipelineRun ($ISOLATION)"
t_create="$(now)"
PR="$(kubectl -n "$NS" create -o name -f - <<EOF
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata:
  generateName: modelcar-
spec:
  pipelineRef: {name: modelcar}
  taskRunTemplate:
    serviceAccountName: $SA
  workspaces:
    - name: shared
      persistentVolumeClaim: {claimName: $PVC}
$(if [[ "$ISOLATION" == PodUserNamespace ]]; then
  printf '  taskRunSpecs:\n    - pipelineTaskName: build-and-push\n      podTemplate: {hostUsers: false}\n'
fi)
EOF
)"
PR="${PR#*/}"
echo "created $PR"

status=""
deadline=$(( SECONDS + TIMEOUT ))
while :; do
  status="$(kubectl -n "$NS" get pipelinerun "$PR" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}')"
  [[ "$status" == True || "$status" == False ]] && break
  (( SECONDS < deadline )) || break
  sleep 0.5
done
t_done="$(now)"
echo "PipelineRun $PR: Succeeded=${status:-Unknown} after $(secs "$t_create" "$t_done")s (created to Succeeded, as this script saw it)"

# ---------------------------------------------------------------- report ----

# A pod's phase follows its TaskRun's end by a moment (kubelet's status update).
[[ "$status" == True || "$status" == False ]] && for _ in $(seq 60); do
  kubectl -n "$NS" get pods -l "tekton.dev/pipelineRun=$PR" -o jsonpath='{.items[*].status.phase}' |
    grep -qE 'Pending|Running' || break
  sleep 0.5
done

say "PipelineRun"
kubectl -n "$NS" get pipelinerun "$PR" \
  -o 'custom-columns=NAME:.metadata.name,SUCCEEDED:.status.conditions[0].status,REASON:.status.conditions[0].reason,CREATED:.metadata.creationTimestamp,COMPLETED:.status.completionTime'
kubectl -n "$NS" get pipelinerun "$PR" -o jsonpath='{.status.conditions[0].message}{"\n"}'

say "TaskRuns"
kubectl -n "$NS" get taskruns -l "tekton.dev/pipelineRun=$PR" --sort-by=.metadata.creationTimestamp \
  -o 'custom-columns=TASK:.metadata.labels.tekton\.dev/pipelineTask,TASKRUN:.metadata.name,SUCCEEDED:.status.conditions[0].status,REASON:.status.conditions[0].reason,START:.status.startTime,COMPLETION:.status.completionTime'

say "Pods: the SCC each was admitted under (openshift.io/scc), and the pin (openshift.io/required-scc)"
kubectl -n "$NS" get pods -l "tekton.dev/pipelineRun=$PR" --sort-by=.metadata.creationTimestamp \
  -o 'custom-columns=POD:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,HOSTUSERS:.spec.hostUsers,SCC:.metadata.annotations.openshift\.io/scc,REQUIRED-SCC:.metadata.annotations.openshift\.io/required-scc'

# A pod that did not finish: why its containers wait.
kubectl -n "$NS" get pods -l "tekton.dev/pipelineRun=$PR" \
  -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.name}: {range .status.initContainerStatuses[*]}{.name} {.state.waiting.reason} {.state.waiting.message}; {end}{range .status.containerStatuses[*]}{.name} {.state.waiting.reason} {.state.waiting.message}; {end}{"\n"}{end}' |
  sed 's/^/still pending: /'

# Each step's log (Buildah's "Copying blob" progress lines left out).
for task_step in download-model:download build-and-push:build mirror-to-internal:mirror register-model:register; do
  task="${task_step%%:*}" step="${task_step#*:}"
  pod="$(kubectl -n "$NS" get pods -l "tekton.dev/pipelineRun=$PR,tekton.dev/pipelineTask=$task" -o name | head -n1)"
  [[ -n "$pod" ]] || continue
  say "$task: the log of step $step"
  kubectl -n "$NS" logs "$pod" -c "step-$step" 2>&1 |
    grep -vE '^(Getting image source signatures|Copying (blob|config) |Writing manifest to image destination|Storing signatures)' |
    tail -n 40 || true
done

say "Results"
kubectl -n "$NS" get taskruns -l "tekton.dev/pipelineRun=$PR" \
  -o jsonpath='{range .items[*]}{.metadata.labels.tekton\.dev/pipelineTask}: {.status.results}{"\n"}{end}'
echo "PipelineRun $PR results: $(kubectl -n "$NS" get pipelinerun "$PR" -o jsonpath='{.status.results}')"
echo "OCI layouts on the workspace:"
find "$WORKSPACE_DIR/oci" -maxdepth 1 -mindepth 1 2>/dev/null | sed "s|^$ROOT/||" || true

# ------------------------------------------------------------- verdict ----

failed=0
[[ "$status" == True ]] || { log "PipelineRun $PR did not succeed (Succeeded=${status:-Unknown})"; failed=1; }
while read -r task ok scc; do
  [[ "$ok" == True ]] || { log "TaskRun of $task: Succeeded=$ok"; failed=1; }
  want=restricted-v2; [[ "$task" == build-and-push ]] && want="$SCC"
  [[ "$scc" == "$want" ]] || { log "the pod of $task ran under '$scc', not $want"; failed=1; }
done < <(kubectl -n "$NS" get taskruns -l "tekton.dev/pipelineRun=$PR" \
  -o jsonpath='{range .items[*]}{.metadata.labels.tekton\.dev/pipelineTask} {.status.conditions[0].status} {.status.podName}{"\n"}{end}' |
  while read -r task ok pod; do
    echo "$task $ok $(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.metadata.annotations.openshift\.io/scc}' 2>/dev/null || echo none)"
  done)
count="$(kubectl -n "$NS" get taskruns -l "tekton.dev/pipelineRun=$PR" -o name | wc -l)"
[[ "$count" == 4 ]] || { log "$count TaskRuns, not 4"; failed=1; }
if (( failed )); then
  log "FAILED; Tekton's controller log: $RUN/tekton-controller.log, the operator's: $WORK/operator.log"
  exit 1
fi
say "All four TaskRuns Succeeded; build-and-push under $SCC, the others under restricted-v2; PipelineRun created to Succeeded in $(secs "$t_create" "$t_done")s"

#!/usr/bin/env bash
# A walk through the buildpolicy operator on the local control plane:
# everything it shows runs for real, nothing is mocked.
#
#   hack/demo.sh
#
# The control plane stays up afterwards; hack/local-cluster.sh down stops it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -t 1 ]]; then BOLD=$'\033[1m' RESET=$'\033[0m'; else BOLD='' RESET=''; fi
# say TEXT: what the next commands show.
say() { printf '\n%s# %s%s\n' "$BOLD" "$*" "$RESET"; }
# run COMMAND...: show the command, then run it.
run() { printf '$ %s\n' "$*"; "$@"; }

say "Start the local control plane: etcd, kube-apiserver (RBAC on) and kube-controller-manager, with OpenShift's SCCs and Tekton's CRDs"
export_line="$(hack/local-cluster.sh up)"
echo "$export_line"
eval "$export_line"

say "The BuildPolicy CRD is installed and Established"
run kubectl wait --for=condition=Established --timeout=60s crd/buildpolicies.buildpolicy.dev
run kubectl get crd buildpolicies.buildpolicy.dev \
  -o 'custom-columns=NAME:.metadata.name,SCOPE:.spec.scope,VERSIONS:.spec.versions[*].name,ESTABLISHED:.status.conditions[?(@.type=="Established")].status'

say "What a platform team writes: four fields, and spec.isolation for user-namespace builds"
run kubectl explain buildpolicy.spec

DEMO_DIR="target/demo"   # relative: the commands the demo prints stay the same in any checkout
mkdir -p "$DEMO_DIR"
NS=private-ai-demo
SA=model-build-sa
SCC=buildpolicy-modelcar-build

say "Build the operator"
OPERATOR="$(hack/cargo-bins.sh -q)/buildpolicy-operator"
OPERATOR="${OPERATOR#"$ROOT"/}"   # printed relative to the checkout, like every path the demo shows

POLICIES=(modelcar-build modelcar-build-pod-userns modelcar-build-crio-userns)
NAMESPACES=("$NS" "$NS-pod-userns" "$NS-crio-userns")

# A clean stage: remove what an earlier run of the demo left behind (the
# operator must run to release the policies' grants and finalizers).
if kubectl get buildpolicy "${POLICIES[@]}" 2>/dev/null | grep -q . || kubectl get namespace "${NAMESPACES[@]}" 2>/dev/null | grep -q .; then
  "$OPERATOR" run --metrics-addr 127.0.0.1:0 >"$DEMO_DIR/cleanup.log" 2>&1 &
  cleanup_pid=$!
  kubectl delete buildpolicy "${POLICIES[@]}" --ignore-not-found --wait=true --timeout=60s >/dev/null
  kill "$cleanup_pid"; wait "$cleanup_pid" 2>/dev/null || true
  kubectl delete namespace "${NAMESPACES[@]}" --ignore-not-found --wait=true --timeout=120s >/dev/null
fi
kubectl delete events.events.k8s.io -n default --field-selector regarding.name=modelcar-build >/dev/null 2>&1 || true

say "The ModelCar scene: a namespace, the build service account, four Tekton Tasks and the Pipeline that runs them"
run kubectl create namespace "$NS"
run kubectl -n "$NS" create serviceaccount "$SA"
PIPELINE=config/samples/tekton/modelcar-pipeline.yaml
PIPELINE_RUN=config/samples/tekton/modelcar-pipelinerun.yaml
run kubectl -n "$NS" apply -f "$PIPELINE"
run kubectl -n "$NS" get tasks

say "What the platform team commits to Git"
run cat config/samples/modelcar-build.yaml

say "Review it before it merges: exactly what the operator will create"
run "$OPERATOR" check -f config/samples/modelcar-build.yaml
run "$OPERATOR" render -f config/samples/modelcar-build.yaml

say "Start the operator (logs in target/demo/operator.log)"
"$OPERATOR" run --metrics-addr 127.0.0.1:0 >"$DEMO_DIR/operator.log" 2>&1 &
operator_pid=$!
trap 'kill $operator_pid 2>/dev/null || true' EXIT
echo "operator running, pid $operator_pid"

say "Apply the policy and wait until it is Ready"
run kubectl apply -f config/samples/modelcar-build.yaml
run kubectl wait --for=condition=Ready --timeout=60s buildpolicy/modelcar-build
run kubectl get buildpolicies
run kubectl get buildpolicy modelcar-build \
  -o 'custom-columns=CONDITIONS:.status.conditions[*].type,STATUS:.status.conditions[*].status,GENERATION:.metadata.generation,OBSERVED:.status.observedGeneration'

say "What each condition says, in one line (PreemptionSafe and TasksAdmissible are advice for the pipeline owner)"
run kubectl get buildpolicy modelcar-build \
  -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'

say "The generated SCC: five capabilities, nothing privileged, no host access, no users or groups, no priority"
run kubectl get scc "$SCC"
run kubectl get scc "$SCC" -o 'custom-columns=PRIVILEGED:.allowPrivilegedContainer,HOSTNETWORK:.allowHostNetwork,HOSTPID:.allowHostPID,USERS:.users,GROUPS:.groups,PRIORITY:.priority,DROP:.requiredDropCapabilities'

say "Who may use it: only $SA in $NS"
# SCC admission asks "may this service account use the SCC in the pod's
# namespace?"; kubectl warns that SCCs themselves are cluster-scoped.
can_i() { run kubectl auth can-i use "scc/$SCC" -n "$1" --as="system:serviceaccount:$1:$2" 2>/dev/null || true; }
can_i "$NS" "$SA"
can_i "$NS" default
can_i default "$SA"

say "Which Tasks are pinned to it (Tekton copies the annotation to the TaskRun and its pod)"
run kubectl -n "$NS" get tasks -o 'custom-columns=TASK:.metadata.name,REQUIRED-SCC:.metadata.annotations.openshift\.io/required-scc'

say "Someone makes the SCC privileged by hand: the operator reverts it"
run kubectl patch scc "$SCC" --type=merge -p '{"allowPrivilegedContainer":true}'
run kubectl wait --for=jsonpath='{.allowPrivilegedContainer}'=false --timeout=30s "scc/$SCC"

say "What the pipeline owner sees in the policy's events"
run kubectl events -n default --for buildpolicy/modelcar-build

say "The policy is Ready"
run kubectl get buildpolicy modelcar-build

say "User-namespace builds: the same build in the two other spec.isolation modes, each in its own namespace"
for ns in "$NS-pod-userns" "$NS-crio-userns"; do
  kubectl create namespace "$ns" >/dev/null
  kubectl -n "$ns" create serviceaccount "$SA" >/dev/null
  kubectl -n "$ns" apply -f "$PIPELINE" >/dev/null
done
run diff config/samples/modelcar-build.yaml config/samples/modelcar-build-pod-userns.yaml || true
run kubectl apply -f config/samples/modelcar-build-pod-userns.yaml -f config/samples/modelcar-build-crio-userns.yaml
run kubectl wait --for=condition=Ready --timeout=60s buildpolicy/modelcar-build-pod-userns buildpolicy/modelcar-build-crio-userns
run kubectl get buildpolicies -o 'custom-columns=NAME:.metadata.name,ISOLATION:.spec.isolation,SCC:.status.sccName,READY:.status.conditions[?(@.type=="Ready")].status'

say "The three SCCs side by side: PodUserNamespace requires hostUsers: false and ids 0-65534 (as OpenShift's nested-container); the CRI-O mode's SCC is the host-level one"
run kubectl get scc buildpolicy-modelcar-build buildpolicy-modelcar-build-pod-userns buildpolicy-modelcar-build-crio-userns \
  -o 'custom-columns=SCC:.metadata.name,USERNS:.userNamespaceLevel,RUNASUSER:.runAsUser.type,UIDS:.runAsUser.uidRangeMax,FSGROUP:.fsGroup.type,SELINUX:.seLinuxContext.seLinuxOptions.type,CAPS:.allowedCapabilities'

say "The pinned Tasks side by side: the CRI-O mode adds CRI-O's user-namespace request next to the pin"
for ns in "${NAMESPACES[@]}"; do
  run kubectl -n "$ns" get task build-and-push-v2 -o 'custom-columns=NAMESPACE:.metadata.namespace,REQUIRED-SCC:.metadata.annotations.openshift\.io/required-scc,USERNS-MODE:.metadata.annotations.io\.kubernetes\.cri-o\.userns-mode,BUILDER:.metadata.annotations.io\.openshift\.builder'
done

say "What the pipeline owner of the PodUserNamespace build is told"
run kubectl get buildpolicy modelcar-build-pod-userns -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}{"\n"}'

say "An admin can require a user namespace for SYS_ADMIN (ceiling userNamespaceRequiredFor); the host-level policy would be refused"
run "$OPERATOR" check --user-namespace-required-for SYS_ADMIN -f config/samples/modelcar-build.yaml || true
run "$OPERATOR" check --user-namespace-required-for SYS_ADMIN -f config/samples/modelcar-build-crio-userns.yaml

say "The last mile: Tekton's own controller runs the ModelCar pipeline, as openshift-pipelines/tekton-pipelines-controller (Tekton's RBAC, no SCC of its own), and OpenShift's SCC admission decides each pod"
hack/local-cluster.sh status | grep tekton-controller
run cat "$PIPELINE_RUN"

# start_run NAMESPACE [HOST_USERS]: create a PipelineRun of the sample; prints its name.
start_run() {
  local ns="$1" host_users="${2:-}"
  if [[ -n "$host_users" ]]; then
    sed "s/^    serviceAccountName: $SA$/    serviceAccountName: $SA\n    podTemplate: {hostUsers: $host_users}/" "$PIPELINE_RUN"
  else
    cat "$PIPELINE_RUN"
  fi | kubectl -n "$ns" create -f - -o jsonpath='{.metadata.name}'
}
# settled NAMESPACE RUN: true once each of the four TaskRuns has a pod or has failed.
settled() {
  [[ "$(kubectl -n "$1" get taskruns -l "tekton.dev/pipelineRun=$2" \
    -o jsonpath='{range .items[*]}{.status.podName}{.status.conditions[?(@.status=="False")].reason}{"\n"}{end}' | grep -c .)" == 4 ]]
}
await_run() {
  local deadline=$((SECONDS + 60))
  until settled "$1" "$2"; do
    (( SECONDS < deadline )) || { echo "PipelineRun $1/$2 did not settle in 60s; see target/local-cluster/run/tekton-controller.log" >&2; exit 1; }
    sleep 0.5
  done
}
# show_run NAMESPACE RUN: each TaskRun, its pod and the SCC OpenShift admitted it under.
show_run() {
  run kubectl -n "$1" get taskruns -l "tekton.dev/pipelineRun=$2" --sort-by=.spec.taskRef.name \
    -o 'custom-columns=TASKRUN:.metadata.name,TASK:.spec.taskRef.name,SERVICEACCOUNT:.spec.serviceAccountName,POD:.status.podName,REFUSED:.status.conditions[?(@.reason=="PodAdmissionFailed")].reason'
  run kubectl -n "$1" get pods -l "tekton.dev/pipelineRun=$2" --sort-by=.metadata.labels.tekton\\.dev/task \
    -o 'custom-columns=POD:.metadata.name,TASK:.metadata.labels.tekton\.dev/task,HOSTUSERS:.spec.hostUsers,SCC:.metadata.annotations.openshift\.io/scc,PHASE:.status.phase'
}

run_name="$(start_run "$NS")"
printf '$ kubectl -n %s create -f %s\npipelinerun.tekton.dev/%s created\n' "$NS" "$PIPELINE_RUN" "$run_name"
await_run "$NS" "$run_name"
show_run "$NS" "$run_name"
echo "(Pods stay Pending: the local control plane runs no kubelet. What it shows is admission: the build pod under $SCC, the others under restricted-v2.)"

say "Confinement: a namespace editor who may create pods tries to use the grant outside the pipeline, as the build service account with the pin copied; the API server refuses"
kubectl -n "$NS" create serviceaccount editor >/dev/null
kubectl -n "$NS" create role editor --verb=create --resource=pods,taskruns.tekton.dev,pipelineruns.tekton.dev >/dev/null
kubectl -n "$NS" create rolebinding editor --role=editor --serviceaccount="$NS:editor" >/dev/null
cat > "$DEMO_DIR/attack-pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: not-a-build
  annotations: {openshift.io/required-scc: $SCC}
spec:
  serviceAccountName: $SA
  containers:
    - name: shell
      image: quay.io/buildah/stable:latest
      command: [sleep, infinity]
      securityContext: {capabilities: {add: [SYS_ADMIN]}}
EOF
# The API server learns a new binding within moments; wait for it quietly.
for _ in $(seq 1 60); do
  kubectl -n "$NS" --as "system:serviceaccount:$NS:editor" create --dry-run=server -f "$DEMO_DIR/attack-pod.yaml" >/dev/null 2>&1 || break
  sleep 0.5
done
run kubectl -n "$NS" --as "system:serviceaccount:$NS:editor" create --dry-run=server -f "$DEMO_DIR/attack-pod.yaml" || true
run kubectl get buildpolicy modelcar-build -o jsonpath='{.status.conditions[?(@.type=="Confined")].message}{"\n"}'

say "The same editor may change Tekton Tasks (as OpenShift's edit role does) and tries to change what the listed Task runs; the API server refuses: only the ceiling's Task editors may"
kubectl -n "$NS" create role editor-tasks --verb=get,patch --resource=tasks.tekton.dev >/dev/null
kubectl -n "$NS" create rolebinding editor-tasks --role=editor-tasks --serviceaccount="$NS:editor" >/dev/null
run kubectl -n "$NS" --as "system:serviceaccount:$NS:editor" patch task build-and-push-v2 --type=json \
  -p '[{"op":"replace","path":"/spec/steps/0/image","value":"quay.io/someone-else/buildah:latest"}]' || true

say "The policy reports what admission decided for the pinned Task's latest run"
run kubectl get buildpolicy modelcar-build -o jsonpath='{.status.conditions[?(@.type=="BuildsAdmitted")].message}{"\n"}'

say "A PodUserNamespace build whose PipelineRun forgot hostUsers: false: OpenShift refuses the build pod, Tekton fails the TaskRun, the policy says why"
run_name="$(start_run "$NS-pod-userns")"
printf '$ kubectl -n %s create -f %s\npipelinerun.tekton.dev/%s created\n' "$NS-pod-userns" "$PIPELINE_RUN" "$run_name"
await_run "$NS-pod-userns" "$run_name"
show_run "$NS-pod-userns" "$run_name"
run kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="BuildsAdmitted")].status}'=False --timeout=30s buildpolicy/modelcar-build-pod-userns
run kubectl get buildpolicy modelcar-build-pod-userns -o jsonpath='{.status.conditions[?(@.type=="BuildsAdmitted")].reason}: {.status.conditions[?(@.type=="BuildsAdmitted")].message}{"\n"}'

say "The same PipelineRun with taskRunTemplate.podTemplate.hostUsers: false: the build pod gets the pod-level SCC"
run_name="$(start_run "$NS-pod-userns" false)"
printf '$ kubectl -n %s create -f - (the same, with podTemplate: {hostUsers: false})\npipelinerun.tekton.dev/%s created\n' "$NS-pod-userns" "$run_name"
await_run "$NS-pod-userns" "$run_name"
show_run "$NS-pod-userns" "$run_name"
run kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="BuildsAdmitted")].status}'=True --timeout=30s buildpolicy/modelcar-build-pod-userns

say "Done. The operator stops with this script; the control plane keeps running (hack/local-cluster.sh down stops it)"

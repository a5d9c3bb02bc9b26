#!/usr/bin/env bash
# A real node, "localhost", for a running local control plane
# (hack/local-cluster.sh): CRI-O (hack/node/crio.sh), kube-scheduler and
# kubelet v1.37.2 (hack/node/build.sh), certificates from that cluster's CA.
#
#   hack/node/node.sh up       join the node to the cluster in LOCAL_CLUSTER_DIR
#                              (default target/local-cluster); waits until it is Ready
#   hack/node/node.sh down     delete its pods, stop kubelet, kube-scheduler and CRI-O,
#                              remove mounts, cgroups and host fix-ups (hack/node/cleanup.sh)
#   hack/node/node.sh status   say what runs
#
# State (certificates, kubeconfigs, kubelet's root dir, CRI-O's state, logs,
# step times) lives in $LOCAL_CLUSTER_DIR/node/, beside the cluster's run/
# (which `hack/local-cluster.sh down` removes; node.sh down first).
# One node per machine: kubelet's port 10250 and its /kubepods cgroups are
# machine-wide; up refuses when another cluster's node runs.
#
# Kubelet's API (logs, exec) takes the API server's client certificate
# (--kubelet-client-certificate, read from its command line) and asks the API
# server what it may do; without one (a cluster started by hack/local-cluster.sh
# before it made that certificate) it lets anonymous callers on 127.0.0.1 in. NODE_KUBELET_AUTH=webhook|anonymous
# forces either (default auto). NODE_DOWN_GRACE: seconds pods get at down (2).
#
# Needs hack/node/build.sh and hack/node/images.sh to have run. Runs as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE="$ROOT/hack/node"
OUT="${NODE_DIR:-$ROOT/target/node}"
BIN="$OUT/bin"
CLUSTER="$(realpath -m "${LOCAL_CLUSTER_DIR:-$ROOT/target/local-cluster}")"
RUN="$CLUSTER/run"
CA="$RUN/pki"
ADMIN_KUBECONFIG="$CLUSTER/kubeconfig"
KUBECTL="${LOCAL_CLUSTER_BIN:-$ROOT/target/local-cluster/bin}/kubectl"
DIR="$CLUSTER/node"
PKI="$DIR/pki"
KUBELET_DIR="$DIR/kubelet"
# crio.sh, cleanup.sh and host-fixups.sh: CRI-O's state under this cluster's
# node directory, not target/node/state (proof.sh's).
export NODE_STATE="$DIR/crio" NODE_CONF_DIR="$DIR"
SOCKET="$NODE_STATE/crio.sock"
NODE_NAME=localhost
KUBELET_PORT=10250
RBAC_NAME="buildpolicy-node:system:node:$NODE_NAME"
# down: seconds each pod gets to stop (a shell's "sleep" as PID 1 ignores
# SIGTERM and would hold down for the default 30).
GRACE="${NODE_DOWN_GRACE:-2}"
# Directories kubelet 1.37 creates whatever its flags say: the device
# manager's socket (pluginapi.KubeletSocket) and the container log symlinks
# (kubelet.ContainerLogsDir).
FIXED_DIRS="/var/lib/kubelet /var/log/containers"

log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] ERROR: %s\n' "$*" >&2; exit 1; }

kubectl_() { "$KUBECTL" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout 10s "$@"; }
crictl_() { "$BIN/crictl" --config "$DIR/crictl.yaml" "$@"; }
api_up() { [[ -f "$ADMIN_KUBECONFIG" ]] && kubectl_ get --raw /readyz >/dev/null 2>&1; }

pid_of() { cat "$DIR/$1.pid" 2>/dev/null || true; }
alive() {
  local p; p="$(pid_of "$1")"
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]]
}

stop_proc() { # name
  alive "$1" || { rm -f "$DIR/$1.pid"; return 0; }
  local p i; p="$(pid_of "$1")"
  kill -TERM "$p"
  for i in $(seq 1 100); do alive "$1" || break; sleep 0.1; done
  if alive "$1"; then log "$1 (pid $p) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$p"; fi
  rm -f "$DIR/$1.pid"
  log "$1 stopped"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
# step NAME COMMAND...: run it, log and record how long it took.
step() {
  local name="$1" t; shift
  t="$(now)"
  "$@"
  local dt; dt="$(since "$t")"
  log "step '$name' took ${dt}s"
  echo "$(date -u +%FT%TZ) $name ${dt}s" >> "$DIR/times.txt"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A kubelet of target/node/bin running, whatever cluster it belongs to.
other_kubelets() {
  local d
  for d in /proc/[0-9]*; do
    [[ "$(readlink "$d/exe" 2>/dev/null)" == "$BIN/kubelet" ]] || continue
    [[ "${d#/proc/}" == "$(pid_of kubelet)" ]] && continue
    echo "${d#/proc/} ($(tr '\0' ' ' < "$d/cmdline" | grep -o -- '--root-dir [^ ]*'))"
  done
}

# ----------------------------------------------------------------- up ----

preflight() {
  [[ $EUID -eq 0 ]] || die "the node runs as root"
  local b
  for b in kubelet kube-scheduler crio crictl runc pinns; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing: run hack/node/build.sh"
  done
  [[ -x "$KUBECTL" ]] || die "$KUBECTL is missing: run hack/local-cluster.sh build"
  [[ -f "$CA/ca.crt" && -f "$CA/ca.key" && -f "$RUN/api.port" ]] ||
    die "no local cluster state in $RUN: start it first (LOCAL_CLUSTER_DIR=$CLUSTER hack/local-cluster.sh up)"
  api_up || die "the cluster in $CLUSTER does not answer (hack/local-cluster.sh status)"
  local others; others="$(other_kubelets)"
  [[ -z "$others" ]] || die "another kubelet runs: $others. One node per machine: LOCAL_CLUSTER_DIR=<its cluster> hack/node/node.sh down first"
  if ! alive kubelet; then
    if ls -d /sys/fs/cgroup/*/kubepods >/dev/null 2>&1; then
      die "kubelet cgroups are left on this machine ($(ls -d /sys/fs/cgroup/*/kubepods | head -2 | tr '\n' ' ')...): run 'LOCAL_CLUSTER_DIR=<the cluster it ran for> hack/node/node.sh down'"
    fi
    if ss -Hltn "sport = :$KUBELET_PORT" 2>/dev/null | grep -q .; then
      die "port $KUBELET_PORT is taken: $(ss -Hltnp "sport = :$KUBELET_PORT")"
    fi
  fi
  kubectl_ get node "$NODE_NAME" >/dev/null 2>&1 && ! alive kubelet &&
    log "node $NODE_NAME is already registered (a kubelet that was not stopped with node.sh down); kubelet takes it over"
  for b in localhost/buildpolicy/shell:busybox; do
    buildah images -q "$b" >/dev/null 2>&1 || log "WARNING: image $b is missing: run hack/node/images.sh"
  done
  return 0
}

host_fixups() {
  mkdir -p "$NODE_STATE"
  "$NODE/host-fixups.sh" apply
  "$NODE/host-fixups.sh" kubelet
  local d
  for d in $FIXED_DIRS; do
    if [[ ! -e "$d" ]] && ! grep -qx "created-dir $d" "$NODE_STATE/fixups.log" 2>/dev/null; then
      echo "created-dir $d" >> "$NODE_STATE/fixups.log"
      log "kubelet will create $d (noted: node.sh down removes it again if empty)"
    fi
  done
}

# leaf NAME SUBJECT EXTENSIONS: a key and certificate signed by the cluster's
# CA, as hack/local-cluster.sh's gen_certs makes its own (without writing a
# serial file into the cluster's pki directory).
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$PKI/$1.ext"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$CA/ca.crt" -CAkey "$CA/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
}

kubeconfig() { # file user
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$(cat "$RUN/api.port")
    certificate-authority: $CA/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}

certs() {
  mkdir -p "$PKI"
  # Made anew on every up: a cluster brought down and up again has a new CA.
  leaf kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
  leaf kubelet-serving "/CN=$NODE_NAME" "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
  leaf kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  kubeconfig "$DIR/kubelet.kubeconfig" kubelet-client
  kubeconfig "$DIR/kube-scheduler.kubeconfig" kube-scheduler
  # The API server's RBAC has no Node authorizer: kubelet gets what the
  # built-in system:node role grants (pods, nodes, leases, tokens, events...).
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: $RBAC_NAME
  labels: {app.kubernetes.io/managed-by: hack-node}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:node}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:node:$NODE_NAME}
EOF
}

# The client certificate kube-apiserver shows kubelet for logs, exec,
# attach, port-forward (--kubelet-client-certificate), read from the
# running process' command line; empty when it has none.
apiserver_kubelet_client_cert() {
  local p; p="$(cat "$RUN/kube-apiserver.pid" 2>/dev/null)" || return 0
  tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | awk 'f {print; exit} /^--kubelet-client-certificate(=|$)/ {if (index($0, "=")) {sub(/^[^=]*=/, ""); print; exit} f=1}'
}

start_crio() { "$NODE/crio.sh" start; }

start_scheduler() {
  if alive kube-scheduler; then log "kube-scheduler runs (pid $(pid_of kube-scheduler))"; return 0; fi
  local port; port="$(free_port)"
  echo "$port" > "$DIR/kube-scheduler.port"
  setsid "$BIN/kube-scheduler" --kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$port" --leader-elect=false --v 1 \
    >> "$DIR/kube-scheduler.log" 2>&1 < /dev/null &
  echo $! > "$DIR/kube-scheduler.pid"
  local i
  for i in $(seq 1 120); do
    alive kube-scheduler || { tail -20 "$DIR/kube-scheduler.log" >&2; die "kube-scheduler exited ($DIR/kube-scheduler.log)"; }
    curl -fsSk --max-time 2 "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { log "kube-scheduler healthy on 127.0.0.1:$port"; return 0; }
    sleep 0.5
  done
  tail -20 "$DIR/kube-scheduler.log" >&2; die "kube-scheduler not healthy after 60 s"
}

write_kubelet_config() {
  local authn authz client_cert
  client_cert="$(apiserver_kubelet_client_cert)"
  case "${NODE_KUBELET_AUTH:-auto}" in
    auto) ;;
    webhook) client_cert="${client_cert:-none (NODE_KUBELET_AUTH=webhook)}" ;;
    anonymous) client_cert="" ;;
    *) die "NODE_KUBELET_AUTH must be auto, webhook or anonymous" ;;
  esac
  if [[ -n "$client_cert" ]]; then
    log "kube-apiserver shows kubelet the client certificate $client_cert: kubelet authenticates it against the cluster CA and asks the API server (SubjectAccessReview) what it may do"
    authn="anonymous: {enabled: false}"
    authz="mode: Webhook"
  else
    # Without --kubelet-client-certificate the API server calls kubelet
    # anonymously: with anonymous off kubelet answers 401 (kubectl logs:
    # "Unauthorized"), with anonymous on and Webhook authorization 403
    # (system:anonymous may not get nodes/proxy). Kubelet listens on
    # 127.0.0.1 only, so allowing anonymous callers there is the fallback.
    log "WARNING: kube-apiserver has no --kubelet-client-certificate: kubelet on 127.0.0.1:$KUBELET_PORT lets anonymous callers in (authorization AlwaysAllow) so that kubectl logs/exec work; see hack/node/README.md for the two flags hack/local-cluster.sh needs"
    authn="anonymous: {enabled: true}"
    authz="mode: AlwaysAllow"
  fi
  cat > "$DIR/kubelet.yaml" <<EOF
# Generated by hack/node/node.sh for the cluster in $CLUSTER.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The API server reaches kubelet at the node's Hostname address,
# localhost:$KUBELET_PORT (kube-apiserver's default
# --kubelet-preferred-address-types puts Hostname first).
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  $authn
  webhook: {enabled: true}
  x509: {clientCAFile: $CA/ca.crt}
authorization:
  $authz
# The machine: cgroup v1 controllers, no systemd, no swap.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$SOCKET
imageServiceEndpoint: unix://$SOCKET
# Root lacks CAP_SYS_RESOURCE here: kubelet cannot lower its own oom_score_adj.
oomScoreAdj: 0
podLogsDir: $DIR/pod-logs
volumePluginDir: $KUBELET_DIR/volume-plugins
# The images in /var/lib/containers/storage are made by hack/node/images.sh
# and shared: kubelet's image garbage collection must never remove them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# A shared machine with a full-ish disk: evict nothing but in real need.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
EOF
}

start_kubelet() {
  if alive kubelet; then log "kubelet runs (pid $(pid_of kubelet))"; return 0; fi
  write_kubelet_config
  mkdir -p "$KUBELET_DIR" "$DIR/pod-logs"
  setsid "$BIN/kubelet" --config "$DIR/kubelet.yaml" --kubeconfig "$DIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_DIR" --cert-dir "$KUBELET_DIR/pki" --hostname-override "$NODE_NAME" --v 1 \
    >> "$DIR/kubelet.log" 2>&1 < /dev/null &
  echo $! > "$DIR/kubelet.pid"
}

node_ready() {
  [[ "$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

wait_ready() {
  local i
  for i in $(seq 1 240); do
    alive kubelet || { tail -30 "$DIR/kubelet.log" >&2; die "kubelet exited ($DIR/kubelet.log)"; }
    node_ready && { log "node $NODE_NAME is Ready"; return 0; }
    sleep 0.5
  done
  tail -30 "$DIR/kubelet.log" >&2
  die "node $NODE_NAME not Ready after 120 s ($DIR/kubelet.log)"
}

# The API server's TaintNodesByCondition admission plugin gives every new
# node the taint node.kubernetes.io/not-ready:NoSchedule; the node lifecycle
# controller of kube-controller-manager takes it off once the node is Ready.
# hack/local-cluster.sh's controller manager runs that controller only in
# clusters started since `up --node` exists; without it the taint would
# stay and kube-scheduler would never place a pod here ("0/1 nodes are available: 1 node(s) had untolerated taint
# {node.kubernetes.io/not-ready: }"): node.sh takes it off itself then.
untaint() {
  local cm; cm="$(cat "$RUN/kube-controller-manager.pid" 2>/dev/null)" || true
  if [[ -n "$cm" ]] && tr '\0' '\n' < "/proc/$cm/cmdline" 2>/dev/null | grep -Eq '(^|,)(\*|nodelifecycle|node-lifecycle-controller)(,|$)'; then
    return 0
  fi
  if kubectl_ get node "$NODE_NAME" -o jsonpath='{.spec.taints[*].key}' | grep -qw node.kubernetes.io/not-ready; then
    kubectl_ taint node "$NODE_NAME" node.kubernetes.io/not-ready:NoSchedule- >/dev/null
    log "took the taint node.kubernetes.io/not-ready:NoSchedule off $NODE_NAME (no node lifecycle controller runs)"
  fi
}

cmd_up() {
  preflight
  mkdir -p "$DIR"
  if alive kubelet && alive kube-scheduler && "$NODE/crio.sh" status >/dev/null 2>&1 && node_ready; then
    untaint
    log "the node runs and is Ready (node.sh status)"; return 0
  fi
  local t0; t0="$(now)"
  echo "$(date -u +%FT%TZ) --- up (cluster $CLUSTER)" >> "$DIR/times.txt"
  step "host fix-ups" host_fixups
  step "CRI-O started" start_crio
  step "certificates, kubeconfigs, RBAC" certs
  step "kube-scheduler healthy" start_scheduler
  step "kubelet started" start_kubelet
  step "node Ready" wait_ready
  step "not-ready taint" untaint
  local dt; dt="$(since "$t0")"
  echo "$(date -u +%FT%TZ) total ${dt}s" >> "$DIR/times.txt"
  log "node $NODE_NAME up in ${dt}s (times in ${DIR#"$ROOT"/}/times.txt, logs in ${DIR#"$ROOT"/}/*.log)"
}

# --------------------------------------------------------------- down ----

delete_pods() {
  api_up || { log "the API server does not answer: pods are removed through CRI-O"; return 0; }
  alive kubelet || { log "kubelet is not running: pods are removed through CRI-O"; return 0; }
  local pods
  pods="$(kubectl_ get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null | wc -l)"
  if (( pods > 0 )); then
    log "deleting the $pods pod(s) bound to $NODE_NAME (kubelet stops their containers and unmounts their volumes)"
    kubectl_ delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --grace-period="$GRACE" --wait=true --timeout=60s >/dev/null ||
      log "not every pod went within 60 s: the rest is removed through CRI-O"
  fi
  # Kubelet stops the containers and sandboxes of deleted pods at once but
  # removes them only at its next garbage collection (a minute): wait for
  # nothing to run, cleanup.sh removes the stopped rest through CRI-O.
  local i
  for i in $(seq 1 40); do
    [[ -z "$(crictl_ ps -q 2>/dev/null)$(crictl_ pods --state ready -q 2>/dev/null)" ]] && return 0
    sleep 0.5
  done
  log "CRI-O still runs containers or sandboxes: cleanup.sh removes them"
}

remove_node() {
  api_up || return 0
  kubectl_ delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  # A pod still bound to the deleted node (kubelet gone) would never finish deleting.
  kubectl_ delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --force --grace-period=0 >/dev/null 2>&1 || true
  kubectl_ delete clusterrolebinding "$RBAC_NAME" --ignore-not-found >/dev/null 2>&1 || true
}

fixed_dir_leftovers() {
  # Container log symlinks kubelet left that point into this node's logs,
  # and the device manager's socket and checkpoint.
  local l
  for l in /var/log/containers/*.log; do
    [[ -L "$l" && "$(readlink "$l")" == "$DIR/"* ]] && rm -f "$l"
  done
  if [[ -d /var/lib/kubelet/device-plugins ]] && grep -qx "created-dir /var/lib/kubelet" "$NODE_STATE/fixups.log" 2>/dev/null; then
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
  fi
  return 0
}

run_cleanup() {
  NODE_KUBELET_DIR="$KUBELET_DIR" "$NODE/cleanup.sh" || touch "$DIR/cleanup.failed"
}

cmd_down() {
  [[ $EUID -eq 0 ]] || die "the node runs as root"
  [[ -d "$DIR" ]] || { log "no node state in $DIR"; }
  local t0; t0="$(now)"
  mkdir -p "$DIR"
  echo "$(date -u +%FT%TZ) --- down" >> "$DIR/times.txt"
  step "pods deleted" delete_pods
  step "kubelet stopped" stop_proc kubelet
  step "node deleted" remove_node
  step "kube-scheduler stopped" stop_proc kube-scheduler
  fixed_dir_leftovers
  local rc=0
  # CRI-O's containers and sandboxes, CRI-O, mounts below its state and
  # kubelet's root dir, /kubepods and /buildpolicy-node cgroups, fix-ups.
  step "cleanup.sh" run_cleanup
  [[ -f "$DIR/cleanup.failed" ]] && { rc=1; rm -f "$DIR/cleanup.failed"; }
  if awk -v s="$DIR/" 'index($5, s) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    log "mounts remain below $DIR: keeping it"; rc=1
  else
    # Keep the logs and times; the rest is made anew by up.
    rm -rf "$KUBELET_DIR" "$PKI" "$DIR/pod-logs" "$DIR"/*.pid "$DIR"/*.port "$DIR"/*.yaml "$DIR"/*.kubeconfig "$DIR/crio.conf"
    local f; for f in kubelet kube-scheduler; do [[ -f "$DIR/$f.log" ]] && mv "$DIR/$f.log" "$DIR/$f.last.log"; done
  fi
  local dt; dt="$(since "$t0")"
  echo "$(date -u +%FT%TZ) total ${dt}s" >> "$DIR/times.txt"
  if (( rc )); then log "down in ${dt}s, with leftovers (above)"; return "$rc"; fi
  log "node down in ${dt}s: no kubelet, kube-scheduler, CRI-O, container, mount, cgroup or fix-up of it is left"
}

# ------------------------------------------------------------- status ----

cmd_status() {
  local name rc=0
  echo "cluster: $CLUSTER ($(api_up && echo "API server answers" || echo "API server does not answer"))"
  if "$NODE/crio.sh" status >/dev/null 2>&1; then echo "crio: running (pid $(cat "$NODE_STATE/crio.pid")), socket $SOCKET"; else echo "crio: stopped"; rc=1; fi
  for name in kube-scheduler kubelet; do
    if alive "$name"; then echo "$name: running (pid $(pid_of "$name"))"; else echo "$name: stopped"; rc=1; fi
  done
  if api_up; then
    local ready
    ready="$(kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
    echo "node $NODE_NAME: $( [[ -n "$ready" ]] && echo "Ready=$ready" || echo "not registered")"
    echo "pods on $NODE_NAME: $(kubectl_ get pods -A --field-selector "spec.nodeName=$NODE_NAME" --no-headers 2>/dev/null | wc -l)"
  fi
  echo "host fix-ups: $( [[ -s "$NODE_STATE/fixups.log" ]] && tr '\n' ';' < "$NODE_STATE/fixups.log" || echo none)"
  echo "mounts below $DIR: $(awk -v s="$DIR/" 'index($5, s) == 1' /proc/self/mountinfo | wc -l)"
  echo "kubepods cgroups: $(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null | wc -l) hierarchies"
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) die "usage: [LOCAL_CLUSTER_DIR=<cluster dir>] hack/node/node.sh up|down|status" ;;
esac

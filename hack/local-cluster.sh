#!/usr/bin/env bash
# A real, local Kubernetes control plane for the buildpolicy operator, built
# from Go modules: etcd, kube-apiserver (RBAC on) and kube-controller-manager
# (garbage collection, namespace deletion, service accounts, node lifecycle,
# binding PersistentVolumeClaims to PersistentVolumes), on loopback
# only, with OpenShift's SCC CRD and default SCCs and Tekton's CRDs installed,
# OpenShift's own SCC admission plugin serving pods as an admission webhook
# (hack/scc-admission), Tekton Pipelines' own controller
# (hack/tekton-controller) turning PipelineRuns into TaskRuns and pods, and
# Tekton's remote resolvers (hack/tekton-resolvers) resolving taskRefs that
# name a resolver. With `up --node` also a real node "localhost" (CRI-O,
# runc, kubelet and kube-scheduler, hack/node/node.sh; root only, one per
# machine) that runs the pods, Tekton's TaskRun pods included (its step
# images made on this machine by hack/node/images.sh).
#
#   hack/local-cluster.sh build    build (or reuse) the binaries
#       build --kube <minor>       ... and the older API server and controller manager (1.27, 1.30, all)
#   hack/local-cluster.sh up       start, or reuse a running cluster; prints the export line
#       up --no-scc-admission      ... without OpenShift's SCC admission webhook
#       up --scc-crd <release>     ... with the SCC CRD of that OpenShift release (default, 4.18, 4.16)
#   hack/local-cluster.sh scc-crd <release>  switch the running cluster's SCC CRD to that release
#       up --no-tekton             ... without Tekton's controller and resolvers
#       up --kube <minor>          ... with an older kube-apiserver and kube-controller-manager (1.27, 1.30)
#       up --node                  ... with a node (hack/node: build.sh, images.sh, node.sh up); remembered:
#                                  a later plain `up` keeps it, `down` takes it down first. Off by default
#                                  for now. up --no-node on a running cluster takes its node down.
#   hack/local-cluster.sh restart  kill kube-apiserver and etcd and start them again (same ports, same data;
#                                  the node's kubelet and kube-scheduler reconnect by themselves)
#       stop-apiserver / start-apiserver   ... the two halves of restart, for an outage of any length
#       pause-apiserver / resume-apiserver SIGSTOP / SIGCONT kube-apiserver: connections hang, nothing fails
#   hack/local-cluster.sh down     stop everything it started (the node first) and remove its state
#   hack/local-cluster.sh status   say what runs (and hack/node/node.sh status with a node)
#   hack/local-cluster.sh env      print the export line of the running cluster
#
# State lives in target/local-cluster/ (override with LOCAL_CLUSTER_DIR, to run
# a second cluster beside the first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HACK="$ROOT/hack/local-cluster"
STATE="${LOCAL_CLUSTER_DIR:-$ROOT/target/local-cluster}"
# Binaries are shared by every cluster of this checkout (a second cluster
# under another LOCAL_CLUSTER_DIR reuses them).
BIN="${LOCAL_CLUSTER_BIN:-$ROOT/target/local-cluster/bin}"
RUN="$STATE/run"
KUBECONFIG_FILE="$STATE/kubeconfig"
K8S_VERSION="v1.37.2"
SCC_ADMISSION_SRC="$ROOT/hack/scc-admission"
# Name of the webhook configurations (and of their one webhook each).
SCC_WEBHOOK="scc-admission.local-cluster.buildpolicy.dev"
# up: start OpenShift's SCC admission webhook (up --no-scc-admission: don't).
SCC_ADMISSION=1
# up --scc-crd <release>: the SCC CRD of which OpenShift release to serve
# (see scc_crd_file); empty: "default" for a new cluster, unchanged for a
# running one.
SCC_CRD=""
# Tekton Pipelines' controller: its module, and where and as whom it runs
# (named as OpenShift Pipelines names them).
TEKTON_SRC="$ROOT/hack/tekton-controller"
TEKTON_NS="openshift-pipelines"
TEKTON_SA="tekton-pipelines-controller"
# Tekton's remote resolvers: their module (a main of our own, see
# hack/tekton-resolvers/main.go) and their service account, in $TEKTON_NS.
TEKTON_RESOLVERS_SRC="$ROOT/hack/tekton-resolvers"
TEKTON_RESOLVERS_SA="tekton-pipelines-resolvers"
# up: start Tekton's controller and resolvers (up --no-tekton: neither).
# Both are mains of our own with knative's health probes on *:8080 off
# (hack/tekton-controller/main.go, hack/tekton-resolvers/main.go), so that
# every cluster on the machine can run Tekton.
TEKTON=1
# up --kube <minor>: run the kube-apiserver (and, where its module builds one,
# the kube-controller-manager) of an older Kubernetes, for the compatibility
# matrix, each built from its own module hack/local-cluster/k8s-<minor> into
# $BIN/k8s-<minor>/. kubectl, etcd and everything else stay as they are.
# Empty: $K8S_VERSION.
KUBE=""
KUBE_MINORS="1.27 1.30"
# up --node / --no-node: a node for this cluster (hack/node/node.sh), or
# not; empty: what the running cluster was started with ($RUN/node.enabled),
# no node for a new cluster (the default flips to --node later).
NODE_WANTED=""
NODE_SRC="$ROOT/hack/node"

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { printf '[local-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed: $2"
}

# ---------------------------------------------------------------- build ----

build_stamp() {
  # Rebuild when the pinned modules or the version change, not otherwise.
  cat "$HACK/k8s/go.mod" "$HACK/k8s/go.sum" "$HACK/etcd/go.mod" "$HACK/etcd/go.sum" \
    <(echo "$K8S_VERSION") | sha256sum | cut -d' ' -f1
}

# The link flags that stamp a Kubernetes build with its version, in both
# packages that report it (--version reads component-base's, the API
# server's /version of older releases reads client-go's).
k8s_ldflags() { # version (v1.Y.Z)
  local minor="${1#v1.}" p flags="-s -w"; minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=$1 -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$flags"
}

cmd_build() {
  need go "install Go 1.26 or newer (https://go.dev/doc/install or your distribution's golang package)"
  mkdir -p "$BIN"
  local stamp; stamp="$(build_stamp)"
  if [[ -f "$BIN/.stamp" && "$(cat "$BIN/.stamp")" == "$stamp" ]] &&
     [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kubectl" && -x "$BIN/etcd" ]]; then
    log "binaries are up to date in $BIN"
    return 0
  fi
  local start=$SECONDS
  log "building kube-apiserver, kube-controller-manager and kubectl $K8S_VERSION from the Go module proxy (first build takes several minutes)"
  (cd "$HACK/k8s" && go build -trimpath -ldflags "$(k8s_ldflags "$K8S_VERSION")" \
      -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  log "building etcd"
  (cd "$HACK/etcd" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  echo "$stamp" > "$BIN/.stamp"
  log "built in $((SECONDS - start))s"
}

# build_module NAME DIR PACKAGE WHAT STAMP_FILES...: `go build` PACKAGE in the
# module DIR into $BIN/NAME, unless the hash of STAMP_FILES is the one it was
# last built from.
build_module() {
  local name="$1" dir="$2" package="$3" what="$4"; shift 4
  local stamp; stamp="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  if [[ -f "$BIN/.stamp-$name" && "$(cat "$BIN/.stamp-$name")" == "$stamp" && -x "$BIN/$name" ]]; then
    log "$name is up to date in $BIN"
    return 0
  fi
  local start=$SECONDS
  log "building $name ($what, ${dir#"$ROOT"/}; first build takes several minutes)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/$name" "$package") || return 1
  echo "$stamp" > "$BIN/.stamp-$name"
  log "built $name in $((SECONDS - start))s"
}

# An older kube-apiserver, and its kube-controller-manager where the module's
# tools.go names one (1.27's cannot be built from the module proxy: it
# imports k8s.io/legacy-cloud-providers, which is not served at v0.27.x; the
# 1.27 cluster runs $K8S_VERSION's, which needs nothing newer of the API
# server for the four controllers it runs here).
old_kube_commands() { # minor
  sed -n 's|^\s*_ "k8s.io/kubernetes/\(cmd/[a-z-]*\)"$|k8s.io/kubernetes/\1|p' "$HACK/k8s-$1/tools.go"
}

build_old_kube() { # minor
  local minor="$1" dir="$HACK/k8s-$1" version
  [[ " $KUBE_MINORS " == *" $minor "* ]] || die "unknown Kubernetes minor '$minor' (one of: $KUBE_MINORS)"
  version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$dir/go.mod")"
  [[ -n "$version" ]] || die "$dir/go.mod does not require k8s.io/kubernetes"
  local out="$BIN/k8s-$minor" stamp ldflags
  ldflags="$(k8s_ldflags "$version")"
  local commands; mapfile -t commands < <(old_kube_commands "$minor")
  (( ${#commands[@]} )) || die "$dir/tools.go names no command"
  stamp="$(cat "$dir/go.mod" "$dir/go.sum" <(echo "${commands[*]} $ldflags") | sha256sum | cut -d' ' -f1)"
  if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" && -x "$out/kube-apiserver" ]]; then
    log "kube-apiserver $version is up to date in $out"
    return 0
  fi
  local start=$SECONDS
  mkdir -p "$out"
  log "building ${commands[*]##*/} $version (hack/local-cluster/k8s-$minor; first build takes several minutes)"
  # providerless: without the in-tree cloud providers, which nothing here uses.
  (cd "$dir" && go build -trimpath -tags providerless -ldflags "$ldflags" -o "$out/" "${commands[@]}") ||
    die "building Kubernetes $version failed (hack/local-cluster/k8s-$minor)"
  echo "$stamp" > "$out/.stamp"
  log "built Kubernetes $version in $((SECONDS - start))s"
}

# The running (or starting) cluster's binary NAME: the older Kubernetes'
# where it was built, else $K8S_VERSION's.
kube_bin() { # name
  local minor; minor="$(cat "$RUN/kube.minor" 2>/dev/null || true)"
  if [[ -n "$minor" && -x "$BIN/k8s-$minor/$1" ]]; then echo "$BIN/k8s-$minor/$1"; else echo "$BIN/$1"; fi
}

# OpenShift's SCC admission plugin as a webhook: its own module (Kubernetes
# 1.32 as a library), rebuilt when its sources change.
build_scc_admission() {
  build_module scc-admission "$SCC_ADMISSION_SRC" . "OpenShift's SCC admission plugin" \
    "$SCC_ADMISSION_SRC"/go.mod "$SCC_ADMISSION_SRC"/go.sum "$SCC_ADMISSION_SRC"/*.go ||
    die "building hack/scc-admission failed (up --no-scc-admission starts the cluster without it)"
}

# Tekton Pipelines' controller: upstream's cmd/controller at the pin in
# hack/tekton-controller/go.mod, through a main of our own that turns
# knative's health probes on *:8080 off (hack/tekton-controller/main.go),
# rebuilt when it or the pin changes.
build_tekton() {
  build_module tekton-controller "$TEKTON_SRC" . \
    "Tekton Pipelines' cmd/controller without knative's probes on *:8080" \
    "$TEKTON_SRC"/go.mod "$TEKTON_SRC"/go.sum "$TEKTON_SRC"/*.go ||
    die "building hack/tekton-controller failed (up --no-tekton starts the cluster without it)"
}

# Tekton Pipelines' remote resolvers: upstream's cmd/resolvers at the same pin,
# through a main of our own that turns knative's health probes on *:8080 off
# (hack/tekton-resolvers/main.go), rebuilt when it or the pin changes.
build_tekton_resolvers() {
  build_module tekton-resolvers "$TEKTON_RESOLVERS_SRC" . \
    "Tekton Pipelines' cmd/resolvers without knative's probes on *:8080" \
    "$TEKTON_RESOLVERS_SRC"/go.mod "$TEKTON_RESOLVERS_SRC"/go.sum "$TEKTON_RESOLVERS_SRC"/*.go ||
    die "building hack/tekton-resolvers failed (up --no-tekton starts the cluster without Tekton)"
}

# ------------------------------------------------------------------- up ----

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

running() {
  alive etcd && alive kube-apiserver && [[ -f "$KUBECONFIG_FILE" ]] &&
    kubectl_ --request-timeout 5s get --raw /readyz >/dev/null 2>&1
}

gen_certs() {
  local pki="$RUN/pki"
  mkdir -p "$pki"
  local ossl=(openssl)
  "${ossl[@]}" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=buildpolicy-local-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  leaf() { # name subject extensions
    "${ossl[@]}" req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
      -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$3" > "$pki/$1.ext"
    "${ossl[@]}" x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 3650 -extfile "$pki/$1.ext" -out "$pki/$1.crt" 2>/dev/null
  }
  leaf apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  leaf admin "/O=system:masters/CN=local-admin" "extendedKeyUsage=clientAuth"
  leaf controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  # What kube-apiserver shows a kubelet (logs, exec, port-forward):
  # system:masters, so the kubelet's webhook authorization lets it in.
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() { # file server user
  local pki="$RUN/pki"
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $2
    certificate-authority: $pki/ca.crt
users:
- name: $3
  user:
    client-certificate: $pki/$3.crt
    client-key: $pki/$3.key
contexts:
- name: local
  context: {cluster: local, user: $3}
current-context: local
EOF
}

# A kubeconfig with a token of service account $TEKTON_NS/SA, as its pod
# would mount (signed with the cluster's key, so it outlives `restart`).
write_token_kubeconfig() { # file service-account
  local token
  token="$(kubectl_ -n "$TEKTON_NS" create token "$2" --duration 87600h)" ||
    die "cannot get a token for $TEKTON_NS/$2"
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$(cat "$RUN/api.port")
    certificate-authority: $RUN/pki/ca.crt
users:
- name: $2
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: $2, namespace: $TEKTON_NS}
current-context: local
EOF
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds; after SECONDS,
# dies with the last lines of the logs.
wait_for() { wait_while_alive "" "$@"; }

# wait_up NAME SECONDS COMMAND...: wait_for, except that it returns 1 as
# soon as process NAME has exited.
wait_up() { wait_while_alive "$1" "$@"; }

wait_while_alive() { # process-or-empty what seconds command...
  local process="$1" what="$2" deadline=$((SECONDS + $3)); shift 3
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$process" ]] && ! alive "$process"; then
      return 1
    fi
    if (( SECONDS >= deadline )); then
      log "timed out waiting for $what; last lines of the logs:"
      tail -n 20 "$RUN"/*.log >&2 || true
      die "$what did not become ready"
    fi
    sleep 0.2
  done
}

start() { # name command...
  local name="$1"; shift
  nohup "$@" > "$RUN/$name.log" 2>&1 &
  echo $! > "$RUN/$name.pid"
}

# Published CRDs, read from the Go module cache at the versions pinned in
# hack/local-cluster/crds/go.mod (or in the module dir given second).
module_dir() { # module [module dir]
  (cd "${2:-$HACK/crds}" && go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')
}

# The SCC CRD of an OpenShift release. "default" is today's pin
# (hack/local-cluster/crds); an older release pins github.com/openshift/api
# in a module of its own (hack/local-cluster/crds-<release>), since one Go
# module cannot require two versions of another.
SCC_CRD_RELEASES="default 4.18 4.16"
scc_crd_file() { # release
  local openshift
  case "$1" in
    default)
      openshift="$(module_dir github.com/openshift/api)" || return 1
      echo "$openshift/security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml" ;;
    4.18) # October 2024; the CRD of the Default feature set
      openshift="$(module_dir github.com/openshift/api "$HACK/crds-4.18")" || return 1
      echo "$openshift/security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints-Default.crd.yaml" ;;
    4.16) # May 2024; the layout before per-feature-set CRDs
      openshift="$(module_dir github.com/openshift/api "$HACK/crds-4.16")" || return 1
      echo "$openshift/security/v1/0000_03_security-openshift_01_scc.crd.yaml" ;;
    *) die "unknown SCC CRD release '$1' (one of: $SCC_CRD_RELEASES)" ;;
  esac
}

# An SCC that names userNamespaceLevel, for a server-side dry run: accepted
# exactly when the served SCC schema has the field.
user_namespace_level_probe() {
  printf '%s' '{"apiVersion":"security.openshift.io/v1","kind":"SecurityContextConstraints","metadata":{"name":"local-cluster-schema-probe"},"allowHostDirVolumePlugin":false,"allowHostIPC":false,"allowHostNetwork":false,"allowHostPID":false,"allowHostPorts":false,"allowPrivilegedContainer":false,"allowedCapabilities":null,"defaultAddCapabilities":null,"priority":null,"readOnlyRootFilesystem":false,"requiredDropCapabilities":null,"volumes":null,"userNamespaceLevel":"AllowHostLevel"}'
}

serves_user_namespace_level() { # 1|0: whether it should
  local out
  if out="$(user_namespace_level_probe | kubectl_ apply --server-side --dry-run=server --field-manager=local-cluster -f - 2>&1)"; then
    [[ $1 == 1 ]]
  else
    [[ $1 == 0 && $out == *userNamespaceLevel* ]]
  fi
}

# Installs (or replaces) the SCC CRD of a release and OpenShift's default
# SCCs, and returns once the API server applies SCCs with that schema. The
# 4.20 default SCCs that need userNamespaceLevel (nested-container,
# restricted-v3, which older releases do not ship) are left out, and
# deleted when switching to a release without the field.
install_scc_crd() { # release
  local release="$1" crd has_level
  crd="$(scc_crd_file "$release")" || die "cannot download github.com/openshift/api for SCC CRD release $release"
  [[ -f "$crd" ]] || die "SCC CRD of release $release not found at $crd"
  # The published CRD has no short name; OpenShift's `oc` expands "scc" by
  # itself. Add it so that plain `kubectl get scc` works here too.
  has_level="$(kubectl_ create --dry-run=client -o json -f "$crd" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["names"]["shortNames"]=["scc"]; json.dump(d,open(sys.argv[1],"w")); print(int(any("userNamespaceLevel" in v["schema"]["openAPIV3Schema"].get("properties",{}) for v in d["spec"]["versions"] if v["name"]=="v1")))' "$RUN/scc-crd.json")"
  kubectl_ apply --server-side --force-conflicts --field-manager=local-cluster -f "$RUN/scc-crd.json" >/dev/null
  kubectl_ wait --for=condition=Established --timeout=60s crd/securitycontextconstraints.security.openshift.io >/dev/null
  wait_for "the API server to serve the SCC schema of release $release" 30 serves_user_namespace_level "$has_level"
  # OpenShift's default SCCs and the RBAC that grants restricted-v2 to everyone.
  local f files=()
  for f in "$HACK"/default-sccs/*.yaml; do
    if (( ! has_level )) && grep -q '^userNamespaceLevel:' "$f"; then
      kubectl_ delete --ignore-not-found -f "$f" >/dev/null
    else
      files+=(-f "$f")
    fi
  done
  kubectl_ apply --server-side --field-manager=local-cluster "${files[@]}" >/dev/null
  echo "$release" > "$RUN/scc-crd.release"
  log "SCC CRD of release $release loaded ($(basename "$crd"); userNamespaceLevel: $( (( has_level )) && echo yes || echo no))"
}

install_crds() {
  local tekton
  tekton="$(module_dir github.com/tektoncd/pipeline)" || die "cannot download github.com/tektoncd/pipeline"
  # Tekton's CRDs convert through Tekton's webhook, which does not run here.
  local f
  for f in task taskrun pipeline pipelinerun customrun stepaction verificationpolicy resolutionrequest; do
    kubectl_ create --dry-run=client -o json -f "$tekton/config/300-crds/300-$f.yaml" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["conversion"]={"strategy":"None"}; json.dump(d,sys.stdout)' |
      kubectl_ apply --server-side --field-manager=local-cluster -f - >/dev/null
  done
  kubectl_ apply --server-side --field-manager=local-cluster -f "$ROOT/manifests/crds/" >/dev/null
  kubectl_ wait --for=condition=Established --timeout=60s \
    crd/tasks.tekton.dev crd/taskruns.tekton.dev \
    crd/pipelines.tekton.dev crd/pipelineruns.tekton.dev crd/customruns.tekton.dev crd/stepactions.tekton.dev \
    crd/verificationpolicies.tekton.dev crd/resolutionrequests.resolution.tekton.dev \
    crd/buildpolicies.buildpolicy.dev >/dev/null
  install_scc_crd "${SCC_CRD:-default}"
}

# Switches a running cluster's SCC CRD to another release, as an OpenShift
# upgrade (or downgrade) would; clients see the CRD change on their watches.
cmd_scc_crd() { # release
  [[ -n "${1:-}" && " $SCC_CRD_RELEASES " == *" $1 "* ]] || die "usage: $0 scc-crd <release> (one of: $SCC_CRD_RELEASES)"
  running || die "no local cluster is running (hack/local-cluster.sh up)"
  install_scc_crd "$1"
}

# etcd and kube-apiserver on the ports recorded in $RUN, so that `restart`
# brings them back where every client expects them.
start_etcd() {
  launch_etcd
  wait_for etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$(cut -d' ' -f1 "$RUN/etcd.ports")/health"
}

launch_etcd() {
  local etcd_port etcd_peer
  read -r etcd_port etcd_peer < "$RUN/etcd.ports"
  start etcd "$BIN/etcd" --name local --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "local=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
}

# etcd and kube-apiserver on ports free_port picked. Another process (a
# second cluster starting beside this one, as the tests start them) can take
# such a port between the pick and the bind: on "address already in use"
# they start again on new ports, up to five times.
start_on_free_ports() {
  local attempt etcd_port etcd_peer api_port
  for attempt in 1 2 3 4 5; do
    etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
    echo "$api_port" > "$RUN/api.port"
    printf '%s %s\n' "$etcd_port" "$etcd_peer" > "$RUN/etcd.ports"
    write_kubeconfig "$KUBECONFIG_FILE" "https://127.0.0.1:$api_port" admin
    launch_etcd
    if wait_up etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"; then
      start_apiserver
      # Both still alive once the API server answers: what answered was
      # ours, not a server of another cluster on a port ours failed to bind.
      if wait_up kube-apiserver 120 kubectl_ --request-timeout 5s get --raw /readyz &&
         alive etcd && alive kube-apiserver; then
        return 0
      fi
    fi
    if grep -qs "address already in use" "$RUN/etcd.log" "$RUN/kube-apiserver.log"; then
      log "a port was taken before it was bound (attempt $attempt of 5); starting again on other ports"
      stop_one kube-apiserver; stop_one etcd
      rm -rf "$RUN/etcd" "$RUN/etcd.log" "$RUN/kube-apiserver.log"
      continue
    fi
    log "etcd or kube-apiserver exited while starting; last lines of the logs:"
    tail -n 20 "$RUN"/*.log >&2 || true
    die "the control plane did not start"
  done
  die "etcd or kube-apiserver found its port taken five times in a row"
}

start_apiserver() {
  local etcd_port etcd_peer api_port pki="$RUN/pki" kubelet_client=()
  read -r etcd_port etcd_peer < "$RUN/etcd.ports"
  api_port="$(cat "$RUN/api.port")"
  # Kubelet's API with a client certificate, and kubelet's serving
  # certificate checked against the cluster CA (hack/node/node.sh signs it
  # with that CA for localhost/127.0.0.1). A cluster started by an older
  # script has no such certificate: `restart` keeps it as it was.
  if [[ -f "$pki/apiserver-kubelet-client.crt" ]]; then
    kubelet_client=(--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt"
      --kubelet-client-key "$pki/apiserver-kubelet-client.key" --kubelet-certificate-authority "$pki/ca.crt")
  fi
  start kube-apiserver "$(kube_bin kube-apiserver)" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" "${kubelet_client[@]}" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true --endpoint-reconciler-type none \
    --profiling=false --v 1
}

stop_one() { # name [signal]
  local pid
  [[ -f "$RUN/$1.pid" ]] || return 0
  pid="$(cat "$RUN/$1.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true # a paused process handles its signal once resumed
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

# OpenShift's SCC admission plugin (hack/scc-admission) as the mutating and
# validating webhook for pods, as the admin; it also gives namespaces the
# openshift.io/sa.scc.* annotations the plugin needs. failurePolicy Fail: a
# pod is never admitted without it. sideEffects None: server-side dry-run
# requests go through it too.
scc_admission_cert() { # serving certificate for 127.0.0.1, from the cluster's CA
  local pki="$RUN/pki"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=scc-admission" \
    -keyout "$pki/scc-admission.key" -out "$pki/scc-admission.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1" > "$pki/scc-admission.ext"
  openssl x509 -req -in "$pki/scc-admission.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/scc-admission.ext" -out "$pki/scc-admission.crt" 2>/dev/null
}

start_scc_admission() {
  local pki="$RUN/pki" port t0=$SECONDS
  [[ -x "$BIN/scc-admission" ]] || die "$BIN/scc-admission is missing: run hack/local-cluster.sh build"
  [[ -f "$pki/scc-admission.crt" ]] || scc_admission_cert || die "cannot make a serving certificate for scc-admission in $pki"
  local attempt
  for attempt in 1 2 3 4 5; do
    port="$(free_port)"
    echo "$port" > "$RUN/scc-admission.port"
    start scc-admission "$BIN/scc-admission" --kubeconfig "$KUBECONFIG_FILE" --listen "127.0.0.1:$port" \
      --tls-cert-file "$pki/scc-admission.crt" --tls-private-key-file "$pki/scc-admission.key" --v 1
    # Only ours passes --cacert: another cluster's webhook has another CA.
    if wait_up scc-admission 60 curl -fsS --max-time 2 --cacert "$pki/ca.crt" "https://127.0.0.1:$port/healthz"; then
      break
    fi
    grep -qs "address already in use" "$RUN/scc-admission.log" ||
      { tail -n 20 "$RUN/scc-admission.log" >&2; die "scc-admission exited while starting"; }
    (( attempt < 5 )) || die "scc-admission found its port taken five times in a row"
    log "scc-admission's port was taken before it was bound (attempt $attempt of 5); trying another"
  done
  local ca rules
  ca="$(base64 -w0 < "$pki/ca.crt")"
  rules='[{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["pods","pods/ephemeralcontainers"],"scope":"Namespaced"}]'
  local kind path hook defaulting
  hook='{"name":"%s","clientConfig":{"url":"https://127.0.0.1:%s/%s","caBundle":"%s"},"rules":%s,"failurePolicy":"Fail","sideEffects":"None","admissionReviewVersions":["v1"],"timeoutSeconds":30}'
  # SCCs are stored defaulted, as OpenShift's kube-apiserver stores them
  # (sccdefaults.SetDefaults_SCC).
  # shellcheck disable=SC2059
  defaulting="$(printf "$hook" "scc-defaulting.${SCC_WEBHOOK#scc-admission.}" "$port" default-sccs "$ca" \
    '[{"apiGroups":["security.openshift.io"],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["securitycontextconstraints"],"scope":"Cluster"}]')"
  for kind in MutatingWebhookConfiguration ValidatingWebhookConfiguration; do
    path=validate; [[ $kind == Mutating* ]] && path=mutate
    # shellcheck disable=SC2059
    printf '{"apiVersion":"admissionregistration.k8s.io/v1","kind":"%s","metadata":{"name":"%s"},"webhooks":[%s%s]}' \
      "$kind" "$SCC_WEBHOOK" "$(printf "$hook" "$SCC_WEBHOOK" "$port" "$path" "$ca" "$rules")" \
      "$([[ $kind == Mutating* ]] && echo ",$defaulting")" |
      kubectl_ apply --server-side --force-conflicts --field-manager=local-cluster -f - >/dev/null
  done
  log "scc-admission serving on 127.0.0.1:$port and registered in $((SECONDS - t0))s"
}

# Tekton Pipelines' controller, as OpenShift Pipelines runs it: its own
# service account openshift-pipelines/tekton-pipelines-controller bound to
# Tekton's published ClusterRoles and Roles, with Tekton's published
# ConfigMaps, never as an admin (OpenShift's SCC admission checks `use` for
# the requesting user too: an admin creator would get anyuid). No Tekton
# webhook (the controller defaults and validates by itself). Remote
# resolution is start_tekton_resolvers'.
tekton_objects() { # the published SA, RBAC and ConfigMaps of the controller, in $TEKTON_NS
  local dir="$1/config" f files=()
  for f in 200-serviceaccount 200-clusterrole 200-role 201-clusterrolebinding 201-rolebinding \
           config-defaults config-events config-feature-flags config-leader-election-controller \
           config-logging config-observability config-registry-cert config-spire config-tracing \
           config-wait-exponential-backoff; do
    [[ -f "$dir/$f.yaml" ]] || die "Tekton's $f.yaml not found in $dir"
    files+=(-f "$dir/$f.yaml")
  done
  kubectl_ create --dry-run=client -o json "${files[@]}" | python3 -c '
import json, sys
ns, sa = sys.argv[1], sys.argv[2]
# kubectl prints one JSON document per object, one after another.
text, items, at, decoder = sys.stdin.read(), [], 0, json.JSONDecoder()
while text[at:].strip():
    at += len(text[at:]) - len(text[at:].lstrip())
    doc, at = decoder.raw_decode(text, at)
    items += doc["items"] if doc.get("kind") == "List" else [doc]
def for_controller(o):
    return any(s.get("kind") == "ServiceAccount" and s.get("name") == sa for s in o.get("subjects") or [])
kept = [o for o in items if o["kind"] == "ConfigMap"
        or (o["kind"] == "ServiceAccount" and o["metadata"]["name"] == sa)
        or (o["kind"] in ("RoleBinding", "ClusterRoleBinding") and for_controller(o))]
roles = {(o["roleRef"]["kind"], o["roleRef"]["name"]) for o in kept if "roleRef" in o}
kept += [o for o in items if (o["kind"], o["metadata"]["name"]) in roles]
for o in kept:
    if o["metadata"].get("namespace") == "tekton-pipelines":
        o["metadata"]["namespace"] = ns
    for s in o.get("subjects") or []:
        if s.get("namespace") == "tekton-pipelines":
            s["namespace"] = ns
json.dump({"apiVersion": "v1", "kind": "List", "items": kept}, sys.stdout)
' "$TEKTON_NS" "$TEKTON_SA"
}

tekton_controller_started() {
  local probes; probes="$(cut -d' ' -f1 "$RUN/tekton-controller.ports")"
  curl -fsS --max-time 2 "http://127.0.0.1:$probes/readiness" >/dev/null &&
    grep -qs '"Starting controllers..."' "$RUN/tekton-controller.log"
}

start_tekton() {
  local t0=$SECONDS tekton
  [[ -x "$BIN/tekton-controller" ]] || die "$BIN/tekton-controller is missing: run hack/local-cluster.sh build"
  tekton="$(module_dir github.com/tektoncd/pipeline)" || die "cannot download github.com/tektoncd/pipeline"
  kubectl_ create namespace "$TEKTON_NS" --dry-run=client -o json |
    kubectl_ apply --server-side --field-manager=local-cluster -f - >/dev/null
  tekton_objects "$tekton" | kubectl_ apply --server-side --force-conflicts --field-manager=local-cluster -f - >/dev/null
  write_token_kubeconfig "$RUN/tekton-controller.kubeconfig" "$TEKTON_SA"
  local probes metrics profiling
  probes="$(free_port)"; metrics="$(free_port)"; profiling="$(free_port)"
  printf '%s %s %s\n' "$probes" "$metrics" "$profiling" > "$RUN/tekton-controller.ports"
  # Image flags: without a node placeholders (nothing runs the pods, nothing
  # is pulled); with one the step images hack/node/images.sh made on this
  # machine (non-latest tags: pods get imagePullPolicy IfNotPresent).
  local images; images="$(tekton_images)"
  echo "$images" > "$RUN/tekton-controller.images"
  # shellcheck disable=SC2086 # flags and values, one a word
  start tekton-controller env SYSTEM_NAMESPACE="$TEKTON_NS" METRICS_DOMAIN=tekton.dev/pipeline \
    CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging \
    CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags \
    CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire \
    PROBES_PORT="$probes" METRICS_PROMETHEUS_HOST=127.0.0.1 METRICS_PROMETHEUS_PORT="$metrics" \
    PROFILING_PORT="$profiling" \
    "$BIN/tekton-controller" --kubeconfig "$RUN/tekton-controller.kubeconfig" --disable-ha \
    $images -shell-image-win local.invalid/tekton/powershell
  # Tekton's own probes server (PROBES_PORT) answers once the process runs;
  # sharedmain logs "Starting controllers..." once its ConfigMaps are loaded
  # and its informers started (knative's readiness on *:8080 is off).
  wait_up tekton-controller 120 tekton_controller_started || {
    tail -n 20 "$RUN/tekton-controller.log" >&2
    die "tekton-controller exited while starting; see $RUN/tekton-controller.log"
  }
  log "tekton-controller running as $TEKTON_NS/$TEKTON_SA in $((SECONDS - t0))s"
}

# The image flags Tekton's controller gets: the node's step images when this
# cluster has a node, else placeholders.
TEKTON_PLACEHOLDER_IMAGES="-entrypoint-image local.invalid/tekton/entrypoint -nop-image local.invalid/tekton/nop -sidecarlogresults-image local.invalid/tekton/sidecarlogresults -workingdirinit-image local.invalid/tekton/workingdirinit -shell-image local.invalid/tekton/busybox"
tekton_images() {
  if [[ -f "$RUN/node.enabled" ]]; then
    "$NODE_SRC/images.sh" tekton-refs || die "hack/node/images.sh tekton-refs failed"
  else
    echo "$TEKTON_PLACEHOLDER_IMAGES"
  fi
}

# A running controller whose image flags are not what this cluster needs now
# (a node was added or taken away) is started again. One started by an older
# script recorded none: placeholders.
restart_tekton_if_images_changed() {
  alive tekton-controller || return 0
  local have want
  have="$(cat "$RUN/tekton-controller.images" 2>/dev/null || echo "$TEKTON_PLACEHOLDER_IMAGES")"
  want="$(tekton_images)"
  [[ "$have" == "$want" ]] && return 0
  log "restarting tekton-controller with the image flags: $want"
  stop_one tekton-controller
  start_tekton
}

# ----------------------------------------------------------------- node ----

# A node of this cluster: hack/node/node.sh with LOCAL_CLUSTER_DIR=$STATE
# (its state in $STATE/node/). One per machine: kubelet's port 10250 and
# /kubepods cgroups are machine-wide, and hack/node/cleanup.sh removes
# /kubepods everywhere, so node.sh down runs only for the cluster that
# owns the node.
node_sh() { LOCAL_CLUSTER_DIR="$STATE" LOCAL_CLUSTER_BIN="$BIN" "$NODE_SRC/node.sh" "$@"; }

# This cluster has (or had, and has not cleaned up) a node: started with
# --node, or node.sh up left pid files or CRI-O state in $STATE/node.
node_owned() {
  [[ -f "$RUN/node.enabled" || -d "$STATE/node/crio" ]] || compgen -G "$STATE/node/*.pid" >/dev/null
}

# Before anything starts: root, and no other cluster's kubelet on this machine.
node_preflight() {
  [[ $EUID -eq 0 ]] || die "up --node runs CRI-O and kubelet as root: run as root, or without --node"
  local d own
  own="$(realpath -m "$STATE/node/kubelet")"
  for d in /proc/[0-9]*; do
    [[ "$(readlink "$d/exe" 2>/dev/null)" == "$ROOT/target/node/bin/kubelet" ]] || continue
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- "--root-dir $own " && continue
    die "another cluster's kubelet runs (pid ${d#/proc/}: $(tr '\0' ' ' < "$d/cmdline" | grep -o -- '--root-dir [^ ]*')); one node per machine: take that one down first (LOCAL_CLUSTER_DIR=<its cluster> hack/node/node.sh down)"
  done
}

# Binaries (target/node/bin) and images (/var/lib/containers/storage), both
# stamp-cached: nothing happens when they are up to date.
build_node() {
  local t0=$SECONDS
  nice -n 19 "$NODE_SRC/build.sh" || die "hack/node/build.sh failed (up without --node starts the cluster without a node)"
  "$NODE_SRC/images.sh" || die "hack/node/images.sh failed (up without --node starts the cluster without a node)"
  log "node binaries and images ready in $((SECONDS - t0))s"
}

start_node() {
  local t0=$SECONDS
  touch "$RUN/node.enabled"
  node_sh up || die "hack/node/node.sh up failed; see $STATE/node/*.log (LOCAL_CLUSTER_DIR=$STATE hack/node/node.sh down cleans up)"
  log "node localhost Ready in $((SECONDS - t0))s"
}

# node.sh down while the API server still answers (pods are deleted through
# kubelet); it also works without one (pods are removed through CRI-O).
stop_node() {
  node_owned || return 0
  local rc=0
  node_sh down || { rc=1; log "hack/node/node.sh down left something behind (above): LOCAL_CLUSTER_DIR=$STATE hack/node/node.sh down again"; }
  rm -f "$RUN/node.enabled"
  return "$rc"
}

# Tekton Pipelines' remote resolvers, as OpenShift Pipelines runs them:
# beside the controller in $TEKTON_NS, as their own service account
# $TEKTON_NS/tekton-pipelines-resolvers bound to Tekton's published
# ClusterRole and Role of config/resolvers, with that folder's ConfigMaps
# (resolvers-feature-flags, cluster-resolver-config, ...). Its config-logging
# and config-observability have the controller's names, so in the shared
# namespace the controller's (start_tekton) serve both, as on OpenShift.
# The cluster resolver is enabled and may read Tasks of every namespace
# (empty allowed- and blocked-namespaces); git, hub, bundles and http are
# registered and contact the network only when a run names them.
TEKTON_RESOLVERS_OBJECTS="200-serviceaccount 200-clusterrole 200-role 201-clusterrolebinding 201-rolebinding
  bundleresolver-config cluster-resolver-config config-feature-flags config-leader-election
  git-resolver-config http-resolver-config hubresolver-config resolver-cache-config"
tekton_resolvers_objects() { # pipeline module dir; YAML with its namespace moved to $TEKTON_NS
  local dir="$1/config/resolvers" f files=() out
  for f in $TEKTON_RESOLVERS_OBJECTS; do
    [[ -f "$dir/$f.yaml" ]] || die "Tekton's resolvers/$f.yaml not found in $dir"
    files+=(-f "$dir/$f.yaml")
  done
  out="$(kubectl_ create --dry-run=client -o yaml "${files[@]}" |
    sed 's/^\([ -]*namespace:\) tekton-pipelines-resolvers$/\1 '"$TEKTON_NS"'/')" ||
    die "cannot read Tekton's config/resolvers in $dir"
  [[ $out != *"namespace: tekton-pipelines-resolvers"* ]] ||
    die "Tekton's config/resolvers names its namespace in a way this script does not rewrite (see tekton_resolvers_objects)"
  printf '%s\n' "$out"
}

# The resolvers' leader election has no off switch (cmd/resolvers has no
# --disable-ha): each of the five resolvers holds a lease
# controller.tektonresolverframework.<resolver>.00-of-01 in $TEKTON_NS, and
# reconciles only once it holds it. A lone replica takes a free lease at
# once and releases it on SIGTERM; a lease left by a killed one would keep a
# new one waiting until it expires (lease-duration, 60 s). Only this script
# runs resolvers here, so leases of one that is not running are stale.
tekton_resolvers_leading() { # the cluster resolver reconciles
  grep -qs 'has started leading .*tektonresolverframework\.cluster\.' "$RUN/tekton-resolvers.log"
}

start_tekton_resolvers() {
  local t0=$SECONDS tekton
  [[ -x "$BIN/tekton-resolvers" ]] || die "$BIN/tekton-resolvers is missing: run hack/local-cluster.sh build"
  tekton="$(module_dir github.com/tektoncd/pipeline)" || die "cannot download github.com/tektoncd/pipeline"
  local objects; objects="$(tekton_resolvers_objects "$tekton")"
  kubectl_ apply --server-side --force-conflicts --field-manager=local-cluster -f - <<<"$objects" >/dev/null
  kubectl_ -n "$TEKTON_NS" patch configmap resolvers-feature-flags --type merge \
    -p '{"data":{"enable-cluster-resolver":"true"}}' >/dev/null
  kubectl_ -n "$TEKTON_NS" patch configmap cluster-resolver-config --type merge \
    -p '{"data":{"allowed-namespaces":"","blocked-namespaces":""}}' >/dev/null
  local stale
  stale="$(kubectl_ -n "$TEKTON_NS" get leases -o name | grep '/controller\.tektonresolverframework\.' || true)"
  if [[ -n "$stale" ]]; then
    # shellcheck disable=SC2086 # one lease name per word
    kubectl_ -n "$TEKTON_NS" delete --ignore-not-found $stale >/dev/null
  fi
  write_token_kubeconfig "$RUN/tekton-resolvers.kubeconfig" "$TEKTON_RESOLVERS_SA"
  local metrics profiling
  metrics="$(free_port)"; profiling="$(free_port)"
  printf '%s %s\n' "$metrics" "$profiling" > "$RUN/tekton-resolvers.ports"
  # The environment of upstream's resolvers-deployment.yaml; no hub is asked
  # anything until a run names the hub resolver.
  start tekton-resolvers env SYSTEM_NAMESPACE="$TEKTON_NS" KUBERNETES_MIN_VERSION=v1.28.0 \
    CONFIG_LOGGING_NAME=config-logging CONFIG_OBSERVABILITY_NAME=config-observability \
    CONFIG_FEATURE_FLAGS_NAME=feature-flags CONFIG_LEADERELECTION_NAME=config-leader-election-resolvers \
    METRICS_DOMAIN=tekton.dev/resolution TEKTON_HUB_API= ARTIFACT_HUB_API=https://artifacthub.io/ \
    METRICS_PROMETHEUS_HOST=127.0.0.1 METRICS_PROMETHEUS_PORT="$metrics" PROFILING_PORT="$profiling" \
    "$BIN/tekton-resolvers" --kubeconfig "$RUN/tekton-resolvers.kubeconfig"
  # No health probes (see hack/tekton-resolvers/main.go): ready once the
  # cluster resolver leads, that is, reconciles ResolutionRequests.
  wait_up tekton-resolvers 120 tekton_resolvers_leading || {
    tail -n 20 "$RUN/tekton-resolvers.log" >&2
    die "tekton-resolvers exited while starting; see $RUN/tekton-resolvers.log"
  }
  log "tekton-resolvers running as $TEKTON_NS/$TEKTON_RESOLVERS_SA in $((SECONDS - t0))s"
}

# Kill kube-apiserver and etcd (SIGKILL: a crash, not a shutdown) and start
# them again on the same ports with the same data. Clients see connections
# drop and must come back by themselves.
cmd_restart() {
  running || die "no local cluster is running (hack/local-cluster.sh up)"
  local t0=$SECONDS
  stop_one kube-apiserver KILL
  stop_one etcd KILL
  start_etcd
  start_apiserver
  wait_for kube-apiserver 120 kubectl_ --request-timeout 5s get --raw /readyz
  log "kube-apiserver and etcd restarted in $((SECONDS - t0))s"
  # scc-admission, tekton-controller and tekton-resolvers keep running:
  # their informers reconnect by themselves (and the resolvers' leader
  # election renews its leases, or takes them again). So do the node's
  # kubelet (it renews its lease and node status) and kube-scheduler.
}

cmd_stop_apiserver() {
  running || die "no local cluster is running (hack/local-cluster.sh up)"
  stop_one kube-apiserver KILL
  stop_one etcd KILL
  log "kube-apiserver and etcd killed"
}

cmd_start_apiserver() {
  [[ -f "$RUN/api.port" ]] || die "no local cluster state in $RUN (hack/local-cluster.sh up)"
  local t0=$SECONDS
  alive etcd || start_etcd
  alive kube-apiserver || start_apiserver
  wait_for kube-apiserver 120 kubectl_ --request-timeout 5s get --raw /readyz
  log "kube-apiserver and etcd started in $((SECONDS - t0))s"
}

# A hung server: the process stays, its connections stay open, and no
# request gets an answer until it is resumed.
cmd_signal_apiserver() { # signal
  alive kube-apiserver || die "kube-apiserver is not running"
  kill "-$1" "$(cat "$RUN/kube-apiserver.pid")"
}

cmd_up() {
  need openssl "install it with your package manager (Debian: apt-get install openssl)"
  need python3 "install Python 3"
  need curl "install it with your package manager (Debian: apt-get install curl)"
  if running; then
    log "already running"
    if [[ -n "$KUBE" && "$KUBE" != "$(cat "$RUN/kube.minor" 2>/dev/null)" ]]; then
      die "the running cluster is not Kubernetes $KUBE: hack/local-cluster.sh down first"
    fi
    if [[ -n "$SCC_CRD" && "$SCC_CRD" != "$(cat "$RUN/scc-crd.release" 2>/dev/null)" ]]; then
      install_scc_crd "$SCC_CRD"
    fi
    if (( SCC_ADMISSION )) && ! alive scc-admission; then
      # A cluster started without it, by --no-scc-admission or an older script.
      build_scc_admission
      start_scc_admission
    fi
    if [[ -z "$NODE_WANTED" ]]; then
      NODE_WANTED=0; [[ -f "$RUN/node.enabled" ]] && NODE_WANTED=1
    fi
    if (( NODE_WANTED )); then
      # Added to a running cluster, or started again (node.sh up does
      # nothing when the node runs and is Ready).
      node_preflight
      build_node
      start_node
    elif node_owned; then
      log "up --no-node: taking this cluster's node down"
      stop_node || die "the node was not taken down cleanly (above)"
    fi
    if (( TEKTON )); then restart_tekton_if_images_changed; fi
    if (( TEKTON )) && ! alive tekton-controller; then
      build_tekton
      start_tekton
    fi
    if (( TEKTON )) && ! alive tekton-resolvers; then
      build_tekton_resolvers
      start_tekton_resolvers
    fi
    cmd_env
    return 0
  fi
  NODE_WANTED="${NODE_WANTED:-0}"
  if (( NODE_WANTED )); then node_preflight; fi
  # A half-started or crashed cluster: clean up before starting anew.
  stop_all
  cmd_build
  if (( SCC_ADMISSION )); then build_scc_admission; fi
  if (( TEKTON )); then build_tekton; build_tekton_resolvers; fi
  if [[ -n "$KUBE" ]]; then build_old_kube "$KUBE"; fi
  if (( NODE_WANTED )); then build_node; fi
  local t0=$SECONDS
  mkdir -p "$RUN"
  if [[ -n "$KUBE" ]]; then echo "$KUBE" > "$RUN/kube.minor"; fi
  gen_certs
  start_on_free_ports
  local api_port
  api_port="$(cat "$RUN/api.port")"

  local pki="$RUN/pki"
  write_kubeconfig "$RUN/controller-manager.kubeconfig" "https://127.0.0.1:$api_port" controller-manager
  start kube-controller-manager "$(kube_bin kube-controller-manager)" \
    --kubeconfig "$RUN/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$RUN/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$RUN/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --controllers namespace-controller,garbage-collector-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,node-lifecycle-controller,persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
    --use-service-account-credentials=true --concurrent-gc-syncs 10 --concurrent-namespace-syncs 10 --v 1

  install_crds
  if (( SCC_ADMISSION )); then start_scc_admission; fi
  # The node before Tekton: the controller's image flags follow it.
  if (( NODE_WANTED )); then start_node; fi
  if (( TEKTON )); then start_tekton; start_tekton_resolvers; fi
  log "ready in $((SECONDS - t0))s: $("$BIN/kubectl" version --kubeconfig "$KUBECONFIG_FILE" 2>/dev/null | grep Server || true)"
  cmd_env
}

# ----------------------------------------------------------- down / env ----

stop_all() {
  local name rc=0
  # The node first, while the API server (if any) still answers.
  stop_node || rc=1
  for name in tekton-resolvers tekton-controller scc-admission kube-controller-manager kube-apiserver etcd; do
    stop_one "$name"
  done
  rm -rf "$RUN" "$KUBECONFIG_FILE"
  return "$rc"
}

cmd_down() {
  stop_all || die "stopped, but the node left something behind (above)"
  log "stopped"
}

cmd_env() {
  [[ -f "$KUBECONFIG_FILE" ]] || die "no local cluster is running (hack/local-cluster.sh up)"
  echo "export KUBECONFIG=$KUBECONFIG_FILE PATH=$BIN:\$PATH"
}

cmd_status() {
  local name
  echo "kubernetes: $(cat "$RUN/kube.minor" 2>/dev/null || echo "$K8S_VERSION")"
  for name in etcd kube-apiserver kube-controller-manager; do
    if alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
  done
  if alive scc-admission; then
    echo "scc-admission: running (pid $(cat "$RUN/scc-admission.pid"), https://127.0.0.1:$(cat "$RUN/scc-admission.port"))"
  elif [[ -f "$RUN/scc-admission.port" ]]; then
    echo "scc-admission: stopped (pods cannot be created: hack/local-cluster.sh up starts it again)"
  else
    echo "scc-admission: not started (up --no-scc-admission, or a cluster from an older script; up starts it)"
  fi
  echo "scc-crd: $(cat "$RUN/scc-crd.release" 2>/dev/null || echo "unknown (a cluster from an older script: the default release)")"
  if alive tekton-controller; then
    echo "tekton-controller: running (pid $(cat "$RUN/tekton-controller.pid"), as $TEKTON_NS/$TEKTON_SA)"
  else
    echo "tekton-controller: not running (up --no-tekton, or it exited: $RUN/tekton-controller.log; up starts it)"
  fi
  if alive tekton-resolvers; then
    echo "tekton-resolvers: running (pid $(cat "$RUN/tekton-resolvers.pid"), as $TEKTON_NS/$TEKTON_RESOLVERS_SA, metrics 127.0.0.1:$(cut -d' ' -f1 "$RUN/tekton-resolvers.ports"))"
  else
    echo "tekton-resolvers: not running (up --no-tekton, or it exited: $RUN/tekton-resolvers.log; up starts it)"
  fi
  local node_rc=0
  if node_owned; then
    echo "node: $( [[ -f "$RUN/node.enabled" ]] && echo "started with up --node" || echo "not wanted, but left over (down takes it down)"); hack/node/node.sh status:"
    node_sh status 2>&1 | sed 's/^/  /' || node_rc=1
  else
    echo "node: none (up --node starts one)"
  fi
  if alive tekton-controller; then
    echo "tekton-controller images: $(cat "$RUN/tekton-controller.images" 2>/dev/null || echo "$TEKTON_PLACEHOLDER_IMAGES")"
  fi
  if running; then echo "readyz: ok ($(cat "$RUN/api.port"))"; else echo "readyz: not ready"; return 1; fi
  return "$node_rc"
}

case "${1:-}" in
  build)
    cmd_build; build_scc_admission; build_tekton; build_tekton_resolvers
    case "${2:-}" in
      "") ;;
      --kube) [[ -n "${3:-}" ]] || die "--kube needs a minor version (one of: $KUBE_MINORS, all)"
        if [[ "$3" == all ]]; then for m in $KUBE_MINORS; do build_old_kube "$m"; done; else build_old_kube "$3"; fi ;;
      *) die "unknown option for build: $2 (--kube <minor>)" ;;
    esac ;;
  up)
    shift
    while (( $# )); do
      case "$1" in
        --scc-admission) SCC_ADMISSION=1 ;;
        --no-scc-admission) SCC_ADMISSION=0 ;;
        --scc-crd) [[ -n "${2:-}" ]] || die "--scc-crd needs a release (one of: $SCC_CRD_RELEASES)"; SCC_CRD="$2"; shift ;;
        --scc-crd=*) SCC_CRD="${1#--scc-crd=}" ;;
        --tekton) TEKTON=1 ;;
        --no-tekton) TEKTON=0 ;;
        --kube) [[ -n "${2:-}" ]] || die "--kube needs a minor version (one of: $KUBE_MINORS)"; KUBE="$2"; shift ;;
        --node) NODE_WANTED=1 ;;
        --no-node) NODE_WANTED=0 ;;
        *) die "unknown option for up: $1 (--node, --no-node, --no-scc-admission, --no-tekton, --scc-crd <release>, --kube <minor>)" ;;
      esac
      shift
    done
    if [[ -n "$KUBE" && " $KUBE_MINORS " != *" $KUBE "* ]]; then
      die "unknown Kubernetes minor '$KUBE' (one of: $KUBE_MINORS)"
    fi
    if [[ -n "$SCC_CRD" && " $SCC_CRD_RELEASES " != *" $SCC_CRD "* ]]; then
      die "unknown SCC CRD release '$SCC_CRD' (one of: $SCC_CRD_RELEASES)"
    fi
    cmd_up ;;
  scc-crd) cmd_scc_crd "${2:-}" ;;
  restart) cmd_restart ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  pause-apiserver) cmd_signal_apiserver STOP ;;
  resume-apiserver) cmd_signal_apiserver CONT ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 build [--kube <minor>|all]|up [--node|--no-node] [--no-scc-admission] [--no-tekton] [--scc-crd <release>] [--kube <minor>]|scc-crd <release>|restart|stop-apiserver|start-apiserver|pause-apiserver|resume-apiserver|down|status|env" >&2; exit 2 ;;
esac

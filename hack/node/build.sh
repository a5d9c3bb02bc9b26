#!/usr/bin/env bash
# The build half of a real node for the local control plane
# (hack/local-cluster.sh): everything a kubelet needs under it, built from Go
# modules or installed from Debian, on this machine, with no other download.
#
#   hack/node/build.sh             build (or reuse) everything below
#   hack/node/build.sh PIECE...    only these pieces: debian k8s crio runc crictl
#   hack/node/build.sh versions    print what is built and its versions
#
#   debian  conmon, containernetworking-plugins (CNI plugins in /usr/lib/cni),
#           buildah, mmdebstrap, busybox-static, uidmap from Debian (apt), and
#           the build's own needs (gcc, make, libc6-dev, libseccomp-dev)
#   k8s     kubelet and kube-scheduler $K8S_VERSION from hack/node/k8s, a
#           sibling of the API server's module hack/local-cluster/k8s (same
#           k8s.io/kubernetes, same replace list, same version link flags)
#   crio    CRI-O $CRIO_VERSION and its pinns, from the Go module
#           github.com/cri-o/cri-o, built inside a writable copy of it
#   runc    runc $RUNC_VERSION from the Go module github.com/opencontainers/runc
#   crictl  crictl $CRICTL_VERSION from the Go module sigs.k8s.io/cri-tools
#           (Debian bookworm has no cri-tools package)
#
# Outputs go to target/node/bin (override the whole tree with NODE_DIR). Each
# piece carries a stamp of its pins (module, version, tags, link flags) and is
# rebuilt only when one changes. Every build runs under `nice -n 19`: other
# people build and run the control plane on the same two cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE="$ROOT/hack/node"
OUT="${NODE_DIR:-$ROOT/target/node}"
BIN="$OUT/bin"
SRC="$OUT/src"
TIMES="$OUT/build-times.txt"

K8S_MODULE="$NODE/k8s"
# The API server's module and script: the node's Kubernetes must match them.
APISERVER_MODULE="$ROOT/hack/local-cluster/k8s"
LOCAL_CLUSTER_SH="$ROOT/hack/local-cluster.sh"
K8S_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$K8S_MODULE/go.mod")"

CRIO_MODULE="github.com/cri-o/cri-o"
CRIO_VERSION="v1.34.0"   # v1.33.4, v1.34.2, v1.35.0 are refused by the module proxy
CRIO_TAGS="containers_image_ostree_stub containers_image_openpgp exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper seccomp"

RUNC_MODULE="github.com/opencontainers/runc"
RUNC_VERSION="v1.5.3"
# Upstream's default adds libpathrs (a Rust library Debian does not ship).
RUNC_TAGS="seccomp urfave_cli_no_docs"

CRICTL_MODULE="sigs.k8s.io/cri-tools"
CRICTL_VERSION="v1.37.0"  # the proxy serves v1.34.0 and v1.37.0

# What the node runs (conmon, CNI plugins), makes images with (buildah,
# mmdebstrap, busybox-static, uidmap for /etc/subuid tools), and what the C and
# cgo parts of the build need (pinns is linked -static: libc6-dev's libc.a;
# runc and CRI-O link libseccomp through cgo).
DEBIAN_PACKAGES=(conmon containernetworking-plugins buildah mmdebstrap busybox-static uidmap
                 gcc make libc6-dev pkg-config libseccomp-dev)

log() { printf '[node-build] %s\n' "$*" >&2; }
die() { printf '[node-build] ERROR: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed: $2"; }

# Seconds taken by each piece, printed at the end and kept in $TIMES.
declare -a TIMINGS=()
took() { # piece seconds what
  TIMINGS+=("$(printf '%-8s %5ss  %s' "$1" "$2" "$3")")
}

stamp_of() { sha256sum | cut -d' ' -f1; }
fresh() { # name stamp file...: the stamp matches and every file is there
  local name="$1" stamp="$2"; shift 2
  [[ -f "$BIN/.stamp-$name" && "$(cat "$BIN/.stamp-$name")" == "$stamp" ]] || return 1
  local f; for f in "$@"; do [[ -x "$f" ]] || return 1; done
}

check_go() {
  need go "install Go 1.26.6 or newer (sigs.k8s.io/cri-tools $CRICTL_VERSION needs it): https://go.dev/doc/install"
  local v; v="$(go env GOVERSION)"; v="${v#go}"
  local IFS=.; read -r major minor patch <<<"$v"
  if (( major == 1 && (minor < 26 || (minor == 26 && ${patch:-0} < 6)) )); then
    die "Go $v is too old: cri-tools $CRICTL_VERSION needs go 1.26.6 (install a newer Go)"
  fi
}

# `go mod download` one module version outside any module and print its
# directory in the module cache (read-only).
module_dir() { # module version
  local json dir
  json="$(cd / && GOWORK=off GOFLAGS=-mod=mod nice -n 19 go mod download -json "$1@$2" 2>&1)" ||
    die "go mod download $1@$2 failed (the Go module proxy must serve it):
$json"
  dir="$(sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p' <<<"$json")"
  [[ -n "$dir" && -f "$dir/go.mod" ]] || die "go mod download $1@$2 gave no module directory:
$json"
  echo "$dir"
}

# ------------------------------------------------------------- debian ----

build_debian() {
  local start=$SECONDS missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if (( ${#missing[@]} == 0 )); then
    log "Debian packages are installed (${DEBIAN_PACKAGES[*]})"
    return 0
  fi
  need apt-get "this script installs ${missing[*]} from Debian; on another distribution install their equivalents by hand"
  [[ $EUID -eq 0 ]] || die "installing ${missing[*]} needs root: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'"
  log "installing from Debian: ${missing[*]}"
  nice -n 19 apt-get update -qq ||
    die "apt-get update failed (Debian's package archive must be reachable)"
  DEBIAN_FRONTEND=noninteractive nice -n 19 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
  took debian $((SECONDS - start)) "apt-get install ${missing[*]}"
}

require_debian() { # command package
  command -v "$1" >/dev/null 2>&1 || [[ -e "$1" ]] ||
    die "'$1' is missing: run 'hack/node/build.sh debian' (or apt-get install $2)"
}

# ---------------------------------------------------------------- k8s ----

# The version link flags, taken from hack/local-cluster.sh itself so the two
# can never differ.
k8s_ldflags_of_local_cluster() { # version
  local def
  def="$(sed -n '/^k8s_ldflags() {/,/^}/p' "$LOCAL_CLUSTER_SH")"
  [[ -n "$def" ]] || die "hack/local-cluster.sh has no k8s_ldflags(): update hack/node/build.sh to the way it stamps versions now"
  eval "$def"
  k8s_ldflags "$1"
}

check_k8s_module_matches_apiserver() {
  local api_version cluster_version
  api_version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$APISERVER_MODULE/go.mod")"
  cluster_version="$(sed -n 's/^K8S_VERSION="\(.*\)"$/\1/p' "$LOCAL_CLUSTER_SH")"
  [[ -n "$K8S_VERSION" ]] || die "hack/node/k8s/go.mod does not require k8s.io/kubernetes"
  [[ "$K8S_VERSION" == "$api_version" && "$K8S_VERSION" == "$cluster_version" ]] ||
    die "hack/node/k8s requires k8s.io/kubernetes $K8S_VERSION, the API server's module $api_version and hack/local-cluster.sh K8S_VERSION=$cluster_version: make them one (edit hack/node/k8s/go.mod's require and replace lines to match hack/local-cluster/k8s/go.mod, then 'cd hack/node/k8s && go mod tidy')"
  diff <(sed -n '/^replace (/,/^)/p' "$K8S_MODULE/go.mod") \
       <(sed -n '/^replace (/,/^)/p' "$APISERVER_MODULE/go.mod") >/dev/null ||
    die "the replace lists of hack/node/k8s/go.mod and hack/local-cluster/k8s/go.mod differ: copy the API server's into the node's and run 'cd hack/node/k8s && go mod tidy'"
}

build_k8s() {
  check_go
  check_k8s_module_matches_apiserver
  local ldflags stamp
  ldflags="$(k8s_ldflags_of_local_cluster "$K8S_VERSION")"
  stamp="$(cat "$K8S_MODULE/go.mod" "$K8S_MODULE/go.sum" "$K8S_MODULE/tools.go" <(echo "$ldflags") | stamp_of)"
  if fresh k8s "$stamp" "$BIN/kubelet" "$BIN/kube-scheduler"; then
    log "kubelet and kube-scheduler $K8S_VERSION are up to date in $BIN"
    return 0
  fi
  local start=$SECONDS
  log "building kubelet and kube-scheduler $K8S_VERSION (hack/node/k8s; minutes, fewer once the API server's packages are in Go's build cache)"
  (cd "$K8S_MODULE" && GOWORK=off nice -n 19 go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler) ||
    die "building kubelet and kube-scheduler failed (hack/node/k8s)"
  echo "$stamp" > "$BIN/.stamp-k8s"
  took k8s $((SECONDS - start)) "kubelet + kube-scheduler $K8S_VERSION"
}

# --------------------------------------------------------------- crio ----

build_crio() {
  check_go
  need gcc "run 'hack/node/build.sh debian' (or apt-get install gcc libc6-dev): pinns and CRI-O's cgo need a C compiler"
  need make "run 'hack/node/build.sh debian' (or apt-get install make): pinns is built with make -C pinns"
  pkg-config --exists libseccomp 2>/dev/null ||
    die "libseccomp-dev is missing (the seccomp tag links it through cgo): run 'hack/node/build.sh debian' (or apt-get install libseccomp-dev pkg-config)"
  local stamp
  stamp="$(echo "$CRIO_MODULE $CRIO_VERSION $CRIO_TAGS pinns" | stamp_of)"
  if fresh crio "$stamp" "$BIN/crio" "$BIN/pinns"; then
    log "CRI-O $CRIO_VERSION and pinns are up to date in $BIN"
    return 0
  fi
  local start=$SECONDS dir copy="$SRC/cri-o@$CRIO_VERSION"
  dir="$(module_dir "$CRIO_MODULE" "$CRIO_VERSION")"
  # `go install github.com/cri-o/cri-o/cmd/crio@v1.34.0` fails: the proxy
  # refuses the module's version list. pinns' Makefile writes ../bin and
  # *.o next to its sources, so both builds run in a writable copy.
  log "building CRI-O $CRIO_VERSION and pinns in ${copy#"$ROOT"/} (about 6 minutes on 2 idle cores)"
  rm -rf "$copy" && mkdir -p "$SRC" && cp -r "$dir" "$copy" && chmod -R u+w "$copy"
  local build_date
  build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/$CRIO_MODULE/@v/$CRIO_VERSION.info" 2>/dev/null || true)"
  [[ -n "$build_date" ]] || build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  (cd "$copy" && GOWORK=off nice -n 19 go build -trimpath -tags "$CRIO_TAGS" \
      -ldflags "-s -w -X $CRIO_MODULE/internal/version.buildDate=$build_date" -o "$BIN/crio" ./cmd/crio) ||
    die "building CRI-O $CRIO_VERSION failed (in ${copy#"$ROOT"/})"
  nice -n 19 make -s -C "$copy/pinns" >/dev/null || die "make -C pinns failed (in ${copy#"$ROOT"/}; needs gcc and libc6-dev's static libc)"
  install -m 0755 "$copy/bin/pinns" "$BIN/pinns"
  echo "$stamp" > "$BIN/.stamp-crio"
  took crio $((SECONDS - start)) "CRI-O $CRIO_VERSION + pinns"
}

# --------------------------------------------------------------- runc ----

build_runc() {
  check_go
  need gcc "run 'hack/node/build.sh debian' (or apt-get install gcc libc6-dev): runc's cgo needs a C compiler"
  pkg-config --exists libseccomp 2>/dev/null ||
    die "libseccomp-dev is missing (the seccomp tag links it through cgo): run 'hack/node/build.sh debian' (or apt-get install libseccomp-dev pkg-config)"
  local stamp ldflags="-s -w -X main.gitCommit=$RUNC_VERSION"
  stamp="$(echo "$RUNC_MODULE $RUNC_VERSION $RUNC_TAGS $ldflags" | stamp_of)"
  if fresh runc "$stamp" "$BIN/runc"; then
    log "runc $RUNC_VERSION is up to date in $BIN"
    return 0
  fi
  local start=$SECONDS dir
  dir="$(module_dir "$RUNC_MODULE" "$RUNC_VERSION")"
  log "building runc $RUNC_VERSION (under a minute on 2 idle cores)"
  # Built in the (read-only) module directory: go build writes nothing there.
  (cd "$dir" && GOWORK=off nice -n 19 go build -trimpath -buildmode=pie -tags "$RUNC_TAGS" \
      -ldflags "$ldflags" -o "$BIN/runc" .) || die "building runc $RUNC_VERSION failed"
  echo "$stamp" > "$BIN/.stamp-runc"
  took runc $((SECONDS - start)) "runc $RUNC_VERSION"
}

# ------------------------------------------------------------- crictl ----

build_crictl() {
  check_go
  local stamp ldflags="-s -w -X $CRICTL_MODULE/pkg/version.Version=${CRICTL_VERSION#v}"
  stamp="$(echo "$CRICTL_MODULE $CRICTL_VERSION $ldflags" | stamp_of)"
  if fresh crictl "$stamp" "$BIN/crictl"; then
    log "crictl $CRICTL_VERSION is up to date in $BIN"
    return 0
  fi
  local start=$SECONDS dir
  dir="$(module_dir "$CRICTL_MODULE" "$CRICTL_VERSION")"
  log "building crictl $CRICTL_VERSION"
  (cd "$dir" && GOWORK=off CGO_ENABLED=0 nice -n 19 go build -trimpath -ldflags "$ldflags" \
      -o "$BIN/crictl" ./cmd/crictl) || die "building crictl $CRICTL_VERSION failed"
  echo "$stamp" > "$BIN/.stamp-crictl"
  took crictl $((SECONDS - start)) "crictl $CRICTL_VERSION"
}

# ------------------------------------------------------------------------

versions() {
  local b
  for b in kubelet kube-scheduler crio pinns runc crictl; do
    [[ -x "$BIN/$b" ]] || { printf '%-15s (not built)\n' "$b"; continue; }
    case "$b" in
      pinns) printf '%-15s %s\n' "$b" "from CRI-O $CRIO_VERSION" ;;
      crictl) printf '%-15s %s\n' "$b" "$("$BIN/$b" --version 2>&1 | head -1)" ;;
      *) printf '%-15s %s\n' "$b" "$("$BIN/$b" --version 2>&1 | head -1)" ;;
    esac
  done
  local p
  for p in conmon containernetworking-plugins buildah mmdebstrap busybox-static; do
    printf '%-15s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '(not installed)')"
  done
}

main() {
  mkdir -p "$BIN"
  local pieces=("$@")
  (( ${#pieces[@]} )) || pieces=(debian k8s crio runc crictl)
  if [[ "${pieces[0]}" == versions ]]; then versions; return; fi
  local total=$SECONDS piece
  for piece in "${pieces[@]}"; do
    case "$piece" in
      debian|k8s|crio|runc|crictl) "build_$piece" ;;
      *) die "unknown piece '$piece' (debian k8s crio runc crictl, or versions)" ;;
    esac
  done
  if (( ${#TIMINGS[@]} )); then
    log "time taken:"
    {
      printf '# %s, %s cores, load %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
      printf '%s\n' "${TIMINGS[@]}"
    } | tee -a "$TIMES" | sed 's/^/[node-build]   /' >&2
  fi
  log "done in $((SECONDS - total))s; binaries in ${BIN#"$ROOT"/}"
}

main "$@"

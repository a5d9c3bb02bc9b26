#!/usr/bin/env bash
# Installs what the integration tests need besides Rust, Go and the local
# control plane, each only when it is missing, and says so:
#
#   promtool, prometheus   Debian's `prometheus` package (apt-get), for
#                          tests/metrics.rs: `promtool check metrics` on the
#                          operator's exposition, a real Prometheus scraping it
#   kubeconform            built from the Go module proxy with the module in
#                          hack/tools (go.mod pins the version) into
#                          target/tools/bin, for tests/install.rs
#   Prometheus Operator    CRD manifests of ServiceMonitor, PodMonitor and
#   CRDs                   PrometheusRule, from the Go module pinned in
#                          hack/tools/crds/go.mod, copied to target/tools/crds,
#                          so tests/install.rs validates config/prometheus
#
# hack/test.sh runs it before the tests; the tests fail (they do not skip)
# when a tool is missing, naming this script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="$ROOT/hack/tools"
BIN="$ROOT/target/tools/bin"
CRDS="$ROOT/target/tools/crds"

fail() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

install_prometheus() {
  if have promtool && have prometheus; then
    echo "  $(promtool --version 2>&1 | head -n1)"
    return 0
  fi
  echo "  promtool and prometheus are missing: installing Debian's prometheus package"
  have apt-get || fail "apt-get is not available: install promtool and prometheus (Prometheus 2.x, e.g. your distribution's prometheus package) and put them on PATH"
  (( EUID == 0 )) || fail "installing the prometheus package needs root: run as root, or by hand: sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus"
  apt-get update -qq || fail "apt-get update failed"
  # Where an init system runs, Debian's postinst also starts the packaged
  # service (127.0.0.1:9090 and friends); the tests start their own.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
    fail "apt-get install prometheus failed"
  have promtool && have prometheus || fail "the prometheus package did not put promtool and prometheus on PATH"
  echo "  installed: $(promtool --version 2>&1 | head -n1)"
}

# Rebuild (re-copy) when the pinned module versions change, not otherwise.
stamp() { cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -d' ' -f1; }

build_kubeconform() {
  local want; want="$(stamp "$TOOLS")"
  if [[ -x "$BIN/kubeconform" && -f "$BIN/.stamp" && "$(cat "$BIN/.stamp")" == "$want" ]]; then
    echo "  kubeconform $("$BIN/kubeconform" -v) (cached in target/tools/bin)"
    return 0
  fi
  have go || fail "go is needed to build kubeconform: https://go.dev/dl/"
  mkdir -p "$BIN"
  local version
  version="$(cd "$TOOLS" && go list -m -f '{{.Version}}' github.com/yannh/kubeconform)" ||
    fail "cannot resolve the kubeconform version pinned in hack/tools/go.mod"
  echo "  building kubeconform $version from the Go module proxy (hack/tools/go.mod)"
  (cd "$TOOLS" && go build -trimpath -ldflags "-s -w -X main.version=$version" \
      -o "$BIN/kubeconform" github.com/yannh/kubeconform/cmd/kubeconform) ||
    fail "go build of kubeconform failed"
  echo "$want" > "$BIN/.stamp"
  echo "  built kubeconform $("$BIN/kubeconform" -v)"
}

copy_crds() {
  local want; want="$(stamp "$TOOLS/crds")"
  if [[ -f "$CRDS/.stamp" && "$(cat "$CRDS/.stamp")" == "$want" ]]; then
    echo "  Prometheus Operator CRDs $(cat "$CRDS/VERSION") (cached in target/tools/crds)"
    return 0
  fi
  local json dir version
  json="$(cd "$TOOLS/crds" && go mod download -json github.com/prometheus-operator/prometheus-operator)" ||
    fail "cannot download github.com/prometheus-operator/prometheus-operator (hack/tools/crds/go.mod)"
  dir="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))' <<<"$json")" ||
    fail "go mod download: $json"
  version="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Version"])' <<<"$json")"
  rm -rf "$CRDS"
  mkdir -p "$CRDS"
  local kind
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$CRDS/" ||
      fail "the Prometheus Operator module $version has no CRD for $kind"
  done
  echo "$version" > "$CRDS/VERSION"
  echo "$want" > "$CRDS/.stamp"
  echo "  copied the Prometheus Operator CRDs $version to target/tools/crds"
}

install_prometheus
build_kubeconform
copy_crds

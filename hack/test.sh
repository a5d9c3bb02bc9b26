#!/usr/bin/env bash
# Everything CI checks, from a fresh machine, in this order:
#
#   toolchain → build the local control plane (and the older API servers of
#   the compatibility matrix) → cargo fmt → cargo clippy → generated files up
#   to date → start the control plane → build the tests → run every test
#   (cargo-nextest) → README's compatibility table against what the compat
#   tests saw → the GitOps checks on the statuses the tests saved → the
#   benchmark's gate (hack/bench.sh --quick)
#
# Just before the tests are built, the tools the tests use are installed when
# missing (hack/tools/install.sh: promtool, prometheus, kubeconform) and the
# operator binary is built.
#
# The last line of output is the test runner's summary line (repeated after
# the benchmark's gate); the timings of the other steps are printed just
# before the tests run.
#
#   hack/test.sh                   what .ci/run runs
#   KEEP_CLUSTER=1 hack/test.sh    leave the control plane running afterwards
#   SKIP_BENCH=1 hack/test.sh      leave out the benchmark's gate
#
# A control plane this script starts is stopped at exit (unless
# KEEP_CLUSTER=1); one that was already running is reused and left running,
# so running this on a workstation does not pull the cluster from under
# whoever else uses it. With BUILDPOLICY_TEST_KUBECONFIG set, the tests run
# against that cluster and no local control plane is started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="$ROOT/target/test-logs"
mkdir -p "$LOG_DIR"

TIMINGS=()
STARTED_CLUSTER=0
USE_NEXTEST=1
NEEDS_FREE_GB=12

section() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# timed TITLE COMMAND...: a section with its duration.
timed() {
  local title="$1" t0=$SECONDS; shift
  section "$title"
  "$@"
  local took=$((SECONDS - t0))
  printf '    (%ss)\n' "$took"
  TIMINGS+=("$(printf '  %-34s %5ss' "$title" "$took")")
}

# The control plane goes down silently: nothing may follow the summary line.
cleanup() {
  local status=$?
  if (( STARTED_CLUSTER )) && [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
    hack/local-cluster.sh down >>"$LOG_DIR/local-cluster-down.log" 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT

# ------------------------------------------------------------- steps ----

check_toolchain() {
  local missing=()
  have() { command -v "$1" >/dev/null 2>&1; }
  if have cargo; then
    cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt: rustup component add rustfmt")
    cargo clippy --version >/dev/null 2>&1 || missing+=("clippy: rustup component add clippy")
  else
    missing+=("cargo: install Rust with rustup, https://rustup.rs")
  fi
  if have go; then
    local version; version="$(go env GOVERSION)"
    # 1.26.3: the floor of operator-framework/api, which hack/olm builds.
    if ! [[ $version =~ go([0-9]+)\.([0-9]+)(\.([0-9]+))? ]] ||
       (( BASH_REMATCH[1] == 1 && (BASH_REMATCH[2] < 26 ||
          (BASH_REMATCH[2] == 26 && ${BASH_REMATCH[4]:-0} < 3)) )); then
      missing+=("go 1.26.3 or newer (found $version): https://go.dev/dl/")
    fi
  else
    missing+=("go 1.26.3 or newer, to build the local control plane: https://go.dev/dl/")
  fi
  have openssl || missing+=("openssl: apt-get install openssl (dnf install openssl)")
  have python3 || missing+=("python3: apt-get install python3 (dnf install python3)")
  have curl || missing+=("curl: apt-get install curl (dnf install curl)")
  have flock || missing+=("flock: apt-get install util-linux (dnf install util-linux)")
  have git || missing+=("git: apt-get install git (dnf install git)")
  if (( ${#missing[@]} )); then
    printf 'missing: %s\n' "${missing[@]}" >&2
    fail "install the tools above and run hack/test.sh again"
  fi
  printf '  %s\n' "$(cargo --version)" "$(cargo fmt --version)" "$(cargo clippy --version)" \
    "$(go version)" "$(openssl version)" "$(python3 --version)" "$(curl --version | head -n1 | cut -d" " -f1-2)" \
    "$(flock --version | head -n1)" "$(git --version)"
}

# With the older API servers of the compatibility matrix (tests/compat.rs).
build_control_plane() {
  hack/local-cluster.sh build --kube all
}

check_fmt() {
  cargo fmt --all --check || fail "the code is not formatted: run cargo fmt --all"
}

check_clippy() {
  cargo clippy --workspace --all-targets -- -D warnings ||
    fail "clippy found problems: fix them (cargo clippy --workspace --all-targets -- -D warnings)"
}

# The CRD and the install bundle are generated from the Rust types and
# committed; regenerating them must change nothing.
check_generated() {
  hack/generate.sh
  local untracked
  untracked="$(git ls-files --others --exclude-standard -- manifests/ config/ docs/ bundle/ catalog/)"
  if ! git diff --exit-code --stat -- manifests/ config/ docs/ bundle/ catalog/ || [[ -n "$untracked" ]]; then
    [[ -z "$untracked" ]] || printf 'not committed: %s\n' $untracked
    fail "generated files are out of date: run hack/generate.sh (it builds and runs crdgen and crddoc) and commit the result"
  fi
  echo "  manifests/, config/, docs/, bundle/ and catalog/ match the sources"
}

# The OLM bundle and catalog: hack/olm's tests (the committed bundle
# validates clean, broken copies fail, generate is deterministic), then
# operator-framework's validators on the committed bundle and catalog.
check_olm() {
  (cd hack/olm && go test -count=1 ./... && go run . validate -catalog ../../catalog/buildpolicy-operator ../../bundle)
}

# What Argo CD (its Lua interpreter), kstatus and Flux make of a
# BuildPolicy's status (hack/gitops-status): on hand-written fixtures before
# the tests (this also builds it), and on the policies tests/gitops_status.rs
# saved in target/status-samples/ after them.
check_gitops_status() {
  (cd hack/gitops-status && go test -count=1 ./...)
}
check_gitops_status_samples() {
  (cd hack/gitops-status && STATUS_SAMPLES="$ROOT/target/status-samples" go test -count=1 ./...)
}

# The local control plane's SCC admission webhook (hack/scc-admission): its
# own code (rule matching against RBAC's, both authorization modes giving
# byte-identical responses, the namespace allocator, pod conversion and
# JSON patches, SCC defaulting), with fakes and no cluster.
check_scc_admission() {
  (cd hack/scc-admission && go vet ./... && go test -count=1 ./...)
}

start_control_plane() {
  if [[ -n "${BUILDPOLICY_TEST_KUBECONFIG:-}" ]]; then
    echo "  BUILDPOLICY_TEST_KUBECONFIG=$BUILDPOLICY_TEST_KUBECONFIG: the tests use that cluster; nothing started"
    return 0
  fi
  if hack/local-cluster.sh status >/dev/null 2>&1; then
    echo "  a control plane is already running: reusing it, and leaving it running"
  else
    STARTED_CLUSTER=1
    [[ "${KEEP_CLUSTER:-0}" == 1 ]] && echo "  KEEP_CLUSTER=1: it stays up afterwards (hack/local-cluster.sh down stops it)"
  fi
  hack/local-cluster.sh up
}

ensure_nextest() {
  if cargo nextest --version >/dev/null 2>&1; then
    echo "  $(cargo nextest --version | head -n1)"
    return 0
  fi
  echo "  installing cargo-nextest from crates.io (once; it stays in ~/.cargo/bin)"
  if ! cargo install cargo-nextest --locked; then
    echo "  WARNING: cargo-nextest could not be installed; falling back to cargo test --workspace" >&2
    USE_NEXTEST=0
  fi
}

# promtool and prometheus (Debian's prometheus package), kubeconform (built
# from hack/tools/go.mod) and the Prometheus Operator CRDs
# (hack/tools/crds/go.mod): each installed only when missing. The tests that
# use them fail without them; they do not skip.
install_test_tools() {
  hack/tools/install.sh
}

# The tests run the real binary (crates/test-support/src/process.rs builds
# it too, once per test process); built here, its build time is not counted
# against the first test's timeout.
build_operator_binary() {
  BIN_DIR="$(hack/cargo-bins.sh)"
}

build_tests() {
  if (( USE_NEXTEST )); then
    cargo nextest run --workspace --no-run
  else
    cargo test --workspace --no-run
  fi
}

run_tests() {
  local status
  set +e
  if (( USE_NEXTEST )); then
    section "tests (cargo nextest run --workspace --no-fail-fast)"
    # nextest ends a failed run with "error: test run failed" after its
    # summary; the exit status says as much, and the summary stays last.
    cargo nextest run --workspace --no-fail-fast 2>&1 |
      grep --line-buffered -v -x 'error: test run failed' | tee "$LOG_DIR/tests.log"
    status=${PIPESTATUS[0]}
  else
    section "tests (cargo test --workspace --no-fail-fast; cargo-nextest is not available)"
    cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG_DIR/cargo-test.log"
    status=${PIPESTATUS[0]}
    # cargo test prints one result per test binary; add them up.
    awk '/^test result:/ {
           for (i = 2; i <= NF; i++) {
             if ($i ~ /^passed;?$/) p += $(i-1)
             if ($i ~ /^failed;?$/) f += $(i-1)
             if ($i ~ /^ignored;?$/) g += $(i-1)
           }
         }
         END { printf "Summary (cargo test): %d passed, %d failed, %d ignored\n", p, f, g }' \
      "$LOG_DIR/cargo-test.log" | tee "$LOG_DIR/tests.log"
  fi
  set -e
  return "$status"
}

# The alert rules parse, and their promtool unit tests pass.
check_alert_rules() {
  promtool check rules config/prometheus/rules.yaml
  promtool test rules config/prometheus/rules_test.yaml
}

# disk_report WHEN: free space where target/ is, and target/'s size. A run
# from a clean clone leaves about 3.2 GB in target/ (measured; when debug
# builds kept full debug info, each of the 19 test binaries was about 300 MB
# and the dependencies were built with four feature sets, and one such run
# filled a CI machine's disk), and a fresh machine adds Go's and cargo's
# caches: with less than NEEDS_FREE_GB free it warns before the builds start.
disk_report() {
  local free_kb target_size
  free_kb="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
  target_size="$(du -sh target 2>/dev/null | cut -f1)"
  printf '  disk %s: %s GiB free, target/ %s\n' "$1" "$((free_kb / 1024 / 1024))" "${target_size:-0}"
  if [[ "$1" == "at the start" ]] && (( free_kb < NEEDS_FREE_GB * 1024 * 1024 )); then
    printf '  WARNING: less than %s GiB free: a run from a clean clone may fill the disk (rustc then fails with "No space left on device")\n' "$NEEDS_FREE_GB" >&2
  fi
}

# -------------------------------------------------------------- main ----

started=$SECONDS
timed "toolchain" check_toolchain
disk_report "at the start"
timed "build the local control plane" build_control_plane
timed "cargo fmt --all --check" check_fmt
timed "cargo clippy -D warnings" check_clippy
timed "generated files are up to date" check_generated
timed "OLM bundle and catalog (hack/olm)" check_olm
timed "SCC admission webhook's Go tests (hack/scc-admission)" check_scc_admission
timed "start the local control plane" start_control_plane
timed "cargo-nextest" ensure_nextest
timed "test tools (promtool, prometheus, kubeconform)" install_test_tools
timed "alert rules (promtool)" check_alert_rules
timed "GitOps status checks on fixtures (hack/gitops-status)" check_gitops_status
timed "build the operator binary" build_operator_binary
timed "build the tests" build_tests

section "timings"
printf '%s\n' "${TIMINGS[@]}"
printf '  %-34s %5ss\n' "total before the tests" "$((SECONDS - started))"

tests_status=0
# Only this run's rows make the compatibility table.
rm -rf target/compat-matrix target/status-samples
run_tests || tests_status=$?

# Tekton's controller, and confinement, across an API server crash: each
# restarts the shared control plane, so they run one at a time after the
# other tests (they are #[ignore]d in the parallel run). Only on a control
# plane of this checkout.
if [[ -z "${BUILDPOLICY_TEST_KUBECONFIG:-}" ]]; then
  section "after an API server restart (tests/tekton.rs, tests/confinement.rs; ignored in the parallel run)"
  set +e
  if (( USE_NEXTEST )); then
    # The binaries the parallel run built: a `-p` selection would build kube
    # and the controller again with other features (hack/cargo-bins.sh).
    cargo nextest run --workspace --test-threads 1 --run-ignored only \
      -E 'binary_id(buildpolicy-integration-tests::tekton) | binary_id(buildpolicy-integration-tests::confinement)' 2>&1 |
      grep --line-buffered -v -x 'error: test run failed' | tee "$LOG_DIR/tekton-restart.log"
  else
    cargo test --workspace --test tekton --test confinement -- --ignored --test-threads=1 2>&1 |
      tee "$LOG_DIR/tekton-restart.log"
  fi
  restart_status=${PIPESTATUS[0]}
  set -e
  if (( restart_status != 0 )); then
    printf '\nERROR: a test after an API server restart failed (above)\n' >&2
    (( tests_status != 0 )) || tests_status=$restart_status
  fi
fi

gitops_status=0
if (( tests_status == 0 )); then
  section "GitOps status checks on the integration tests' objects (hack/gitops-status)"
  check_gitops_status_samples || gitops_status=$?
  (( gitops_status == 0 )) || printf '\nERROR: the GitOps status checks failed on target/status-samples/ (above)\n' >&2
fi

# README.md's "Supported OpenShift versions" table is what the compat tests
# (tests/compat.rs) recorded in this run under target/compat-matrix/.
matrix_status=0
if (( tests_status == 0 )) && [[ -z "${BUILDPOLICY_TEST_KUBECONFIG:-}" ]]; then
  section "compatibility table (README.md against target/compat-matrix/)"
  "$BIN_DIR/compat-matrix" --check README.md || matrix_status=$?
  (( matrix_status == 0 )) || printf '\nERROR: README.md'"'"'s compatibility table is not what the compat tests saw (above)\n' >&2
fi

# The benchmark's gate, after the tests: N=100 on a control plane of its own
# (target/bench-cluster); fails if the operator sends any write request in
# steady state (BENCHMARKS.md). About 2 minutes.
bench_status=0
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
  section "benchmark gate (hack/bench.sh --quick)"
  bench_t0=$SECONDS
  hack/bench.sh --quick || bench_status=$?
  printf '    (%ss)\n' "$((SECONDS - bench_t0))"
  (( bench_status == 0 )) || printf '\nERROR: the benchmark gate failed (hack/bench.sh --quick, above)\n' >&2
fi

section "disk"
disk_report "at the end"

# The tests' summary once more, so that it stays the last line.
summary="$(sed -n '/^ *Summary \[/,$p' "$LOG_DIR/tests.log" 2>/dev/null)"
[[ -n "$summary" ]] || summary="$(tail -n 1 "$LOG_DIR/tests.log" 2>/dev/null)"
printf '\n%s\n' "$summary"
(( tests_status == 0 )) || exit "$tests_status"
(( matrix_status == 0 )) || exit "$matrix_status"
(( gitops_status == 0 )) || exit "$gitops_status"
exit "$bench_status"

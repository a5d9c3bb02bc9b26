#!/usr/bin/env bash
# The operator benchmark: convergence against a kubectl baseline,
# steady-state write requests, drift-repair latency, memory and CPU, for
# N BuildPolicies (each with its own namespace, service account and one
# pinned Task among 5 Tasks per namespace). BENCHMARKS.md explains the method
# and the figures.
#
#   hack/bench.sh                      N = 100, 500, 1000, 2000; results in docs/bench/ and
#                                      the generated tables of BENCHMARKS.md
#   hack/bench.sh --sizes 100,500      other sizes
#   hack/bench.sh --quick              N = 100 only, results in target/bench/quick/,
#                                      no plot; exits 1 if the operator sends any
#                                      write request in steady state (CI runs it);
#                                      it runs the dev build (--release: the release one);
#                                      also exits 1 above 9.5 write requests per policy to
#                                      converge (--max-requests-per-policy X: another bound)
#   hack/bench.sh --dev                a full run with the operator's dev build (no 10-minute
#                                      release build): for figures that are the API
#                                      server's, such as pod admission with N policies
#                                      (--admission-probes N dry runs, default 1000)
#   hack/bench.sh --keep               leave the benchmark's control plane running
#   hack/bench.sh --out DIR            write results.json/results.md/the plot to DIR
#   hack/bench.sh --resync-seconds R   the operator's --resync-seconds (default 30;
#                                      steady state is observed for 2 x R)
#   hack/bench.sh --perf               also profile the operator while it converges (perf
#                                      record --call-graph dwarf; slows the run down)
#   hack/bench.sh --heap-profile       with one size: also record the operator's heap with
#                                      heaptrack (its LD_PRELOAD library) into OUT/heaptrack.gz,
#                                      for heaptrack_print or heaptrack_gui; slows the run down,
#                                      so its timings and RSS are not the benchmark's
#   hack/bench.sh --rev REV            build the operator from commit REV (git archive into
#                                      target/bench/src, cargo target dir target/bench/cargo-target)
#                                      rather than from the working tree
#   Passed on to buildpolicy-bench run: --drift-edits N, --parallel P, --timeout S,
#   --settle-seconds S, --long-steady-seconds S, --operator-env KEY=VALUE (an
#   experiment, e.g. MALLOC_ARENA_MAX=2).
#
# The harness is crates/bench (buildpolicy-bench: `run` measures and writes
# results.json and results.md, `report` rebuilds the tables from a
# results.json), built by hack/cargo-bins.sh with the rest of the workspace.
# It runs on a control plane of its own (target/bench-cluster, started with
# hack/local-cluster.sh, fresh for each N and stopped at the end), never on
# the tests' one; the control-plane binaries are shared. The operator is the
# release build, run as a child process with the admin kubeconfig of that
# control plane. The plot (full runs only) is hack/bench/plot.py, which needs
# python3 and matplotlib, installed from PyPI into target/bench-venv on first
# use. Logs: target/bench/logs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0 DEV=0 KEEP=0 RELEASE=0 HEAP=0 SIZES="100,500,1000,2000" RESYNC=30 OUT="" REV=""
# The gate (--quick) also counts the write requests converging took (with
# kubectl's apply of the policies): 9.1 to 9.2 per policy measured at N=100
# (BENCHMARKS.md), the admission rules' shards included (they take the wants
# of the reconciles in flight in one write per shard); a write more for
# every other policy fails it.
MAX_REQUESTS_PER_POLICY=9.5
EXTRA=()
usage() { sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (( $# )); do
  case "$1" in
    --quick) QUICK=1 ;;
    --dev) DEV=1 ;;
    --keep) KEEP=1 ;;
    --release) RELEASE=1 ;;
    --sizes) SIZES="${2:?--sizes needs a list, e.g. 100,500}"; shift ;;
    --sizes=*) SIZES="${1#*=}" ;;
    --out) OUT="${2:?--out needs a directory}"; shift ;;
    --out=*) OUT="${1#*=}" ;;
    --rev) REV="${2:?--rev needs a commit}"; shift ;;
    --rev=*) REV="${1#*=}" ;;
    --resync-seconds) RESYNC="${2:?--resync-seconds needs a number}"; shift ;;
    --resync-seconds=*) RESYNC="${1#*=}" ;;
    -h|--help) usage ;;
    # Passed through to buildpolicy-bench run (see its --help).
    --long-steady-seconds|--drift-edits|--parallel|--timeout|--settle-seconds|--operator-env|--admission-probes)
      EXTRA+=("$1" "${2:?$1 needs a value}"); shift ;;
    --max-requests-per-policy) MAX_REQUESTS_PER_POLICY="${2:?$1 needs a number}"; shift ;;
    --perf) PERF=1 ;;
    --heap-profile) HEAP=1 ;;
    *) echo "bench: unknown argument $1" >&2; usage ;;
  esac
  shift
done

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

BENCH="$ROOT/target/bench"
mkdir -p "$BENCH/logs" "$BENCH/work"
if (( QUICK )); then
  SIZES=100
  OUT="${OUT:-$BENCH/quick}"
else
  OUT="${OUT:-$ROOT/docs/bench}"
fi
OUT="$(realpath -m "$OUT")"
mkdir -p "$OUT"

# One benchmark at a time per checkout: they share target/bench-cluster.
exec 9>"$BENCH/lock"
if ! flock -n 9; then
  log "another hack/bench.sh runs in this checkout; waiting for it"
  flock 9
fi

t0=$SECONDS
log "control-plane binaries"
hack/local-cluster.sh build >>"$BENCH/logs/local-cluster.log" 2>&1 ||
  die "hack/local-cluster.sh build failed; see $BENCH/logs/local-cluster.log"
# The harness, and the operator's dev build, from one cargo command.
log "buildpolicy-bench (hack/cargo-bins.sh: the workspace's binaries, dev build)"
bin_dir="$(hack/cargo-bins.sh -q)" || die "cargo build failed"
BENCH_BIN="$bin_dir/buildpolicy-bench"
# bin_dir is <cargo target dir>/debug (CARGO_TARGET_DIR is honoured).
TARGET_DIR="$(dirname "$bin_dir")"
SOURCE=()
if [[ -n "$REV" ]]; then
  # A commit, not the working tree (which others may be editing): its files
  # from git archive, built with a target dir of its own.
  sha="$(git rev-parse --verify "$REV^{commit}")" || die "--rev $REV is not a commit"
  src="$BENCH/src"
  log "operator from commit ${sha:0:12} (git archive into $src; cargo build --release)"
  rm -rf "$src" && mkdir -p "$src"
  git archive "$sha" | tar -x -C "$src"
  (cd "$src" && CARGO_TARGET_DIR="$BENCH/cargo-target" cargo build --release -q --locked -p buildpolicy-operator --bin buildpolicy-operator) ||
    die "cargo build --release of $sha failed"
  OPERATOR="$BENCH/cargo-target/release/buildpolicy-operator"
  SOURCE=(--source-commit "$sha")
elif (( (QUICK || DEV) && ! RELEASE )); then
  # The gate is a count of write requests, which the optimisation level does
  # not change; the dev build is the one hack/test.sh has just built, where a
  # release build from scratch (whole-program LTO) takes about 10 minutes on
  # two cores. --quick's timings are therefore not the benchmark's figures.
  log "operator: the dev build (--quick, --dev)"
  OPERATOR="$bin_dir/buildpolicy-operator"
else
  log "operator (cargo build --release -p buildpolicy-operator)"
  cargo build --release -q -p buildpolicy-operator --bin buildpolicy-operator || die "cargo build --release failed"
  OPERATOR="$TARGET_DIR/release/buildpolicy-operator"
fi

PLOT_PY=""
if (( ! QUICK )); then
  command -v python3 >/dev/null || die "python3 is required for the plot"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "python3 3.9 or newer is required for the plot"
  VENV="$ROOT/target/bench-venv"
  if ! [[ -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "matplotlib for the plot: python3 -m venv $VENV; pip install matplotlib (from PyPI, once)"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check matplotlib ||
      die "pip install matplotlib failed (it comes from PyPI); the benchmark needs it for the plot"
  fi
  PLOT_PY="$VENV/bin/python"
fi

ARGS=(--sizes "$SIZES" --out "$OUT" --work-dir "$BENCH/work" --log-dir "$BENCH/logs"
      --cluster-dir "$ROOT/target/bench-cluster" --operator "$OPERATOR" --resync-seconds "$RESYNC")
(( KEEP )) && ARGS+=(--keep)
(( QUICK )) && ARGS+=(--gate --max-requests-per-policy "$MAX_REQUESTS_PER_POLICY" --admission-probes 200)
# A CPU profile of the operator while it converges (perf with DWARF call
# graphs: it costs CPU, so the timings of such a run are not the headline).
[[ -n "${PERF:-}" ]] && ARGS+=(--perf)
# A heap profile: heaptrack's preload library writes its trace into a FIFO
# that heaptrack_interpret turns into OUT/heaptrack.gz while the run goes on.
HEAP_PID=""
if (( HEAP )); then
  [[ "$SIZES" =~ ^[0-9]+$ ]] || die "--heap-profile takes one size (--sizes N): the operator runs once per size"
  interpret=/usr/lib/heaptrack/libexec/heaptrack_interpret
  preload=/usr/lib/heaptrack/libheaptrack_preload.so
  [[ -x "$interpret" && -f "$preload" ]] ||
    die "--heap-profile needs heaptrack ($interpret, $preload; Debian: apt-get install heaptrack)"
  fifo="$BENCH/work/heaptrack.fifo"
  rm -f "$fifo" && mkfifo "$fifo"
  "$interpret" <"$fifo" | gzip >"$OUT/heaptrack.gz" &
  HEAP_PID=$!
  ARGS+=(--operator-env "LD_PRELOAD=$preload" --operator-env "DUMP_HEAPTRACK_OUTPUT=$fifo")
fi
COMMAND="hack/bench.sh"
(( QUICK )) && COMMAND+=" --quick"
(( QUICK && RELEASE )) && COMMAND+=" --release"
(( DEV )) && COMMAND+=" --dev"
[[ "$SIZES" != "100,500,1000,2000" && "$QUICK" == 0 ]] && COMMAND+=" --sizes $SIZES"
[[ "$RESYNC" != 30 ]] && COMMAND+=" --resync-seconds $RESYNC"
[[ -n "$REV" ]] && COMMAND+=" --rev $REV"
[[ -n "${PERF:-}" ]] && COMMAND+=" --perf"
(( HEAP )) && COMMAND+=" --heap-profile"
(( QUICK )) && [[ "$MAX_REQUESTS_PER_POLICY" != 9.5 ]] && COMMAND+=" --max-requests-per-policy $MAX_REQUESTS_PER_POLICY"
[[ "$OUT" != "$ROOT/docs/bench" && "$OUT" != "$BENCH/quick" ]] && COMMAND+=" --out ${OUT#"$ROOT"/}"
(( ${#EXTRA[@]} )) && COMMAND+=" ${EXTRA[*]}"

status=0
"$BENCH_BIN" run "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} ${SOURCE[@]+"${SOURCE[@]}"} --command "$COMMAND" || status=$?
if [[ -n "$HEAP_PID" ]]; then
  # The operator has exited: the interpreter reads to the end of the trace.
  # Had the operator never started, the interpreter would wait for a writer
  # for ever: open the FIFO once (it gives up after 5 s if nobody reads).
  timeout 5 sh -c ': >"$1"' _ "$fifo" 2>/dev/null || true
  wait "$HEAP_PID" || die "heaptrack_interpret failed"
  rm -f "$fifo"
  log "heap profile: $OUT/heaptrack.gz (heaptrack_print -f $OUT/heaptrack.gz)"
fi
if [[ -n "$PLOT_PY" && -f "$OUT/results.json" ]]; then
  "$PLOT_PY" "$ROOT/hack/bench/plot.py" "$OUT/results.json" "$OUT/ready-over-time.png" ||
    die "the plot failed"
  log "plot: $OUT/ready-over-time.png"
fi
# The generated tables in BENCHMARKS.md follow a full run into docs/bench/.
if [[ "$OUT" == "$ROOT/docs/bench" && -f "$OUT/results.json" ]] && grep -q '^<!-- bench:begin' BENCHMARKS.md 2>/dev/null; then
  "$BENCH_BIN" report "$OUT/results.json" --update-doc BENCHMARKS.md
  log "BENCHMARKS.md: generated tables updated (the prose around them is not: read it again)"
fi
log "results: $OUT/results.md, $OUT/results.json (${SECONDS}s in all, $((SECONDS - t0))s after the lock)"
exit "$status"

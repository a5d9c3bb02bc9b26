#!/usr/bin/env bash
# Builds every binary of the workspace (the operator, crdgen, crddoc,
# compat-matrix, buildpolicy-bench) with one cargo command and prints the
# directory they are in.
#
#   bin_dir="$(hack/cargo-bins.sh)"            # the dev build
#   bin_dir="$(hack/cargo-bins.sh --release)"
#
# Why one command: cargo resolves dependency features for the packages a
# command selects, so `cargo build -p buildpolicy-operator`, `cargo run -p
# buildpolicy-api` and `cargo test --workspace` would each build kube, hyper,
# tokio and the controller again with a feature set of their own (time, and
# gigabytes of target/). `--workspace` gives the feature set the tests build
# with too (crates/test-support/src/process.rs builds the operator the same
# way). Cargo's messages go to stderr; stdout is the directory only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
profile=debug
for arg in "$@"; do
  [[ "$arg" == --release ]] && profile=release
done
cargo build --workspace --bins "$@" >&2
target_dir="$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[[ -n "$target_dir" ]] || { echo "cargo-bins: cargo metadata named no target directory" >&2; exit 1; }
echo "$target_dir/$profile"

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

say "What a platform team writes: four fields"
run kubectl explain buildpolicy.spec

# ============================================================================
# OPERATOR DEMO GOES HERE
#
# To be filled in by the operator's author: start the operator, apply the
# ModelCar BuildPolicy, and show the SCC, the Role/RoleBinding, the pinned
# Tasks, the Ready condition, and what happens on change, drift and delete.
# Use `say` for each scene and `run` for each command. KUBECONFIG and PATH
# (kubectl) are already set for the local control plane.
# ============================================================================

say "Done. The control plane keeps running; stop it with: hack/local-cluster.sh down"

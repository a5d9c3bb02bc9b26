// Pins the Go modules whose published CRD manifests the local control plane
// installs: OpenShift's SecurityContextConstraints and Tekton Pipelines.
// Nothing is compiled from here; hack/local-cluster.sh reads the files from
// the module cache ("go mod download -json").
//
// openshift/api has no semver tags; the pseudo-version is the one served by
// the module proxy for the 2026-07 state of the default branch.
module buildpolicy.dev/hack/local-cluster/crds

go 1.26.0

require (
	github.com/openshift/api v0.0.0-20260709102940-580f1c1ba691
	github.com/tektoncd/pipeline v1.15.0
)

// Pins github.com/openshift/api at a commit of OpenShift 4.16, for
// `hack/local-cluster.sh up --scc-crd 4.16` (and `scc-crd 4.16`): the SCC CRD
// of May 2024 (release-4.16 line): the older layout, security/v1/0000_03_security-openshift_01_scc.crd.yaml, no userNamespaceLevel.
// A Go module cannot require two versions of one module, so each older
// release has a small module of its own beside hack/local-cluster/crds (the
// default, today's pin). Nothing is compiled from here; the script reads
// the CRD from the module cache ("go mod download -json").
module buildpolicy.dev/hack/local-cluster/crds-4.16

go 1.26.0

require github.com/openshift/api v0.0.0-20240522145529-93d6bda14341

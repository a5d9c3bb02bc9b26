// Pins github.com/openshift/api at a commit of OpenShift 4.18, for
// `hack/local-cluster.sh up --scc-crd 4.18` (and `scc-crd 4.18`): the SCC CRD
// of October 2024 (release-4.18 line): its SCC CRD comes per feature set, and the Default one has no userNamespaceLevel (TechPreviewNoUpgrade has).
// A Go module cannot require two versions of one module, so each older
// release has a small module of its own beside hack/local-cluster/crds (the
// default, today's pin). Nothing is compiled from here; the script reads
// the CRD from the module cache ("go mod download -json").
module buildpolicy.dev/hack/local-cluster/crds-4.18

go 1.26.0

require github.com/openshift/api v0.0.0-20241001152557-e415140e5d5f

// Pins the Go module whose published CRD manifests tests/install.rs
// validates config/prometheus against: the Prometheus Operator's
// ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1), which the
// local control plane does not serve. Nothing is compiled from here;
// hack/tools/install.sh copies the files from the module cache
// ("go mod download -json") to target/tools/crds.
module buildpolicy.dev/hack/tools/crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0

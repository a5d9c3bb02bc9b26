//go:build tools

// Package tools pins the command this module builds so that "go mod tidy"
// keeps its dependencies. Only kube-apiserver: 1.27's kube-controller-manager
// needs the in-tree cloud providers (k8s.io/legacy-cloud-providers), which
// the module proxy does not serve at v0.27.x. The API server is built with
// the providerless tag, which leaves them out.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)

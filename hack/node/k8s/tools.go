//go:build tools

// Package tools pins the node's Kubernetes commands so that "go mod tidy"
// keeps their dependencies.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)

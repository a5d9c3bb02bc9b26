//go:build tools

// Package tools pins the commands the tests build from the Go module proxy:
// kubeconform validates every manifest against its schema (tests/install.rs).
package tools

import _ "github.com/yannh/kubeconform/cmd/kubeconform"

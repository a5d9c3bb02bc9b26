//go:build tools

// Package tools pins Tekton Pipelines' controller, which the local control
// plane runs unchanged, so that PipelineRuns become TaskRuns and pods there as
// they do on OpenShift.
package tools

import _ "github.com/tektoncd/pipeline/cmd/controller"

// Package gitopsstatus checks what GitOps tools make of the status a
// BuildPolicy carries:
//
//   - argocd/: the Argo CD health check in docs/argocd.md, run the way Argo
//     CD runs a resource.customizations.health.<group>_<kind> entry of
//     argocd-cm (gopher-lua, the same libraries, the same checks on the
//     script's return);
//   - kstatus/: what sigs.k8s.io/cli-utils' kstatus (Flux, kpt, cli-utils)
//     computes for each object;
//   - flux/: the healthCheckExprs docs/flux.md recommends, evaluated as
//     Flux's kustomize-controller evaluates them (cel-go).
//
// Both read the same BuildPolicy objects: the ones the integration tests
// saved as the API server returned them, from the directory named by
// STATUS_SAMPLES (hack/test.sh sets it to target/status-samples), or, with
// STATUS_SAMPLES unset, the hand-written fixtures in testdata/ of the same
// shape.
//
//	cd hack/gitops-status && go test ./...
package gitopsstatus

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Cases are the samples every run needs, by file name without ".json".
var Cases = []string{
	"ready",
	"capability-not-allowed",
	"task-conflict",
	"namespace-not-found",
	"task-not-found",
	"stale-generation",
	"deleting",
	"no-status",
}

// EnvSamples names the directory of samples written by the integration tests.
const EnvSamples = "STATUS_SAMPLES"

// moduleDir is the directory of this module, wherever the test runs from.
func moduleDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("cannot locate samples.go")
	}
	return filepath.Dir(file)
}

// TestdataDir holds the hand-written fixtures, and the fixture-only cases
// under extra/.
func TestdataDir() string { return filepath.Join(moduleDir(), "testdata") }

// SamplesDir is $STATUS_SAMPLES when set, else TestdataDir. The second
// result says which. A STATUS_SAMPLES that is set but is not a directory
// is an error: a run must not quietly fall back to the fixtures.
func SamplesDir() (dir string, real bool, err error) {
	if dir, ok := os.LookupEnv(EnvSamples); ok && dir != "" {
		info, err := os.Stat(dir)
		if err != nil {
			return "", true, fmt.Errorf("%s=%s: %w", EnvSamples, dir, err)
		}
		if !info.IsDir() {
			return "", true, fmt.Errorf("%s=%s is not a directory", EnvSamples, dir)
		}
		return dir, true, nil
	}
	return TestdataDir(), false, nil
}

// Load reads one object from a JSON (or YAML) file and decodes it the way
// client-go decodes what the API server sends (unstructured JSON: integers
// become int64), which is how Argo CD's and Flux's controllers see it.
func Load(path string) (*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if obj.GetAPIVersion() != "buildpolicy.dev/v1alpha1" || obj.GetKind() != "BuildPolicy" {
		return nil, fmt.Errorf("%s: %s %s is not a buildpolicy.dev/v1alpha1 BuildPolicy", path, obj.GetAPIVersion(), obj.GetKind())
	}
	return obj, nil
}

// Condition returns the condition of that type in status.conditions.
func Condition(obj *unstructured.Unstructured, type_ string) (map[string]any, bool) {
	conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conditions {
		if m, ok := c.(map[string]any); ok && m["type"] == type_ {
			return m, true
		}
	}
	return nil, false
}

// CheckShape says whether a sample shows what its case name says, so that
// a sample written by a changed integration test cannot pass for the wrong
// reason.
func CheckShape(name string, obj *unstructured.Unstructured) error {
	generation := obj.GetGeneration()
	observed, hasObserved, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	hasStatus := obj.Object["status"] != nil // absent, or null
	deleting := obj.GetDeletionTimestamp() != nil
	_, hasReady := Condition(obj, "Ready")
	cond := func(type_, status, reason string) error {
		c, ok := Condition(obj, type_)
		if !ok {
			return fmt.Errorf("no %s condition", type_)
		}
		if c["status"] != status || (reason != "" && c["reason"] != reason) {
			return fmt.Errorf("%s is %v (%v), want %s (%s)", type_, c["status"], c["reason"], status, reason)
		}
		return nil
	}
	current := func() error {
		if deleting {
			return fmt.Errorf("metadata.deletionTimestamp is set")
		}
		if !hasObserved || observed != generation {
			return fmt.Errorf("status.observedGeneration %d (set: %v) is not metadata.generation %d", observed, hasObserved, generation)
		}
		return nil
	}
	var err error
	switch name {
	case "ready":
		if err = current(); err == nil {
			err = cond("Ready", "True", "Reconciled")
		}
		if _, stalled := Condition(obj, "Stalled"); err == nil && stalled {
			err = fmt.Errorf("a Stalled condition on a Ready policy")
		}
	case "capability-not-allowed", "task-conflict":
		reason := map[string]string{"capability-not-allowed": "CapabilityNotAllowed", "task-conflict": "TaskConflict"}[name]
		if err = current(); err == nil {
			err = cond("Ready", "False", reason)
		}
		if err == nil {
			err = cond("Stalled", "True", reason)
		}
	case "namespace-not-found", "task-not-found":
		reason := map[string]string{"namespace-not-found": "NamespaceNotFound", "task-not-found": "TaskNotFound"}[name]
		if err = current(); err == nil {
			err = cond("Ready", "False", reason)
		}
		if err == nil {
			err = cond("Reconciling", "True", reason)
		}
	case "stale-generation":
		if deleting {
			err = fmt.Errorf("metadata.deletionTimestamp is set")
		} else if !hasObserved || observed >= generation {
			err = fmt.Errorf("status.observedGeneration %d (set: %v) is not below metadata.generation %d", observed, hasObserved, generation)
		} else if !hasReady {
			err = fmt.Errorf("no Ready condition")
		}
	case "deleting":
		if !deleting {
			err = fmt.Errorf("metadata.deletionTimestamp is not set")
		} else if len(obj.GetFinalizers()) == 0 {
			err = fmt.Errorf("no finalizer left")
		}
	case "no-status":
		if hasStatus {
			err = fmt.Errorf("it has a status")
		}
	default:
		err = fmt.Errorf("no such case")
	}
	if err != nil {
		return fmt.Errorf("sample %s: %w", name, err)
	}
	return nil
}

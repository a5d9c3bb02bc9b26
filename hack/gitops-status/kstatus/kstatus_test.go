// Package kstatus checks what kstatus (sigs.k8s.io/cli-utils
// pkg/kstatus/status, the library behind Flux's health checks, kpt and
// cli-utils) computes for BuildPolicies: docs/flux.md's table.
package kstatus

import (
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	gitopsstatus "buildpolicy.dev/hack/gitops-status"
)

// The eight cases, on the integration tests' objects when STATUS_SAMPLES
// names them, else on testdata/.
func TestComputeOnSamples(t *testing.T) {
	dir, real, err := gitopsstatus.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("samples: %s (from the integration tests: %v)", dir, real)
	want := map[string]status.Status{
		"ready":                  status.CurrentStatus,
		"capability-not-allowed": status.FailedStatus,
		"task-conflict":          status.FailedStatus,
		"namespace-not-found":    status.InProgressStatus,
		"task-not-found":         status.InProgressStatus,
		"stale-generation":       status.InProgressStatus,
		"deleting":               status.TerminatingStatus,
		// kstatus cannot tell that the operator has not acted yet on an
		// object without status: no observedGeneration to compare, no
		// condition, so it takes the object for current (docs/flux.md).
		"no-status": status.CurrentStatus,
	}
	if len(want) != len(gitopsstatus.Cases) {
		t.Fatalf("want covers %d cases, there are %d", len(want), len(gitopsstatus.Cases))
	}
	for _, name := range gitopsstatus.Cases {
		t.Run(name, func(t *testing.T) {
			obj, err := gitopsstatus.Load(filepath.Join(dir, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := gitopsstatus.CheckShape(name, obj); err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s", res.Status, res.Message)
			if res.Status != want[name] {
				t.Fatalf("kstatus says %s (%q), want %s", res.Status, res.Message, want[name])
			}
			// Failed carries Stalled's message; InProgress from a condition
			// carries Reconciling's.
			switch name {
			case "capability-not-allowed", "task-conflict":
				stalled, _ := gitopsstatus.Condition(obj, "Stalled")
				if res.Message != stalled["message"] {
					t.Errorf("message %q, want Stalled's %q", res.Message, stalled["message"])
				}
			case "namespace-not-found", "task-not-found":
				reconciling, _ := gitopsstatus.Condition(obj, "Reconciling")
				if res.Message != reconciling["message"] {
					t.Errorf("message %q, want Reconciling's %q", res.Message, reconciling["message"])
				}
			case "stale-generation":
				if !strings.Contains(res.Message, "latest observed generation") {
					t.Errorf("message %q, want kstatus's generation message", res.Message)
				}
			}
		})
	}
}

// The hand-written cases the integration tests do not save.
func TestComputeOnFixtures(t *testing.T) {
	for _, c := range []struct {
		file string
		want status.Status
		why  string
	}{
		{"old-operator-capability-not-allowed", status.InProgressStatus,
			"without Stalled, kstatus falls back to Ready=False, which it reads as InProgress: only an operator that sets Stalled is Failed"},
		{"old-operator-task-not-found", status.InProgressStatus, "Ready=False"},
		{"apply-failed", status.InProgressStatus, "Reconciling=True"},
		{"unknown-reason", status.InProgressStatus, "Reconciling=True"},
		{"unknown-reason-stalled", status.FailedStatus, "Stalled=True"},
		{"ready-unknown", status.InProgressStatus, "Ready=Unknown"},
		{"no-ready-condition", status.CurrentStatus, "no Ready, Stalled or Reconciling condition: current"},
		{"stale-ready-condition", status.CurrentStatus,
			"kstatus compares status.observedGeneration only, not the conditions' own observedGeneration"},
		{"no-observed-generation", status.CurrentStatus,
			"without status.observedGeneration kstatus skips the generation check"},
		{"deleting-hook-finalizer", status.TerminatingStatus, "deletionTimestamp"},
	} {
		t.Run(c.file, func(t *testing.T) {
			obj, err := gitopsstatus.Load(filepath.Join(gitopsstatus.TestdataDir(), "extra", c.file+".json"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(obj)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s", res.Status, res.Message)
			if res.Status != c.want {
				t.Fatalf("kstatus says %s (%q), want %s: %s", res.Status, res.Message, c.want, c.why)
			}
		})
	}
}

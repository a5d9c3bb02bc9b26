// Package flux checks the healthCheckExprs that docs/flux.md recommends for
// BuildPolicies, evaluated as Flux's kustomize-controller evaluates them:
// cel-go at the version of kustomize-controller v1.9.4's go.mod, with the
// environment of github.com/fluxcd/pkg/runtime/cel's NewExpression
// (parsed, not compiled) and the order of its StatusEvaluator.Evaluate:
// status.observedGeneration against metadata.generation first, then
// inProgress, failed, current, else InProgress. An expression that cannot
// be evaluated is an error, which Flux's poller reports as an unknown
// status and keeps waiting on.
package flux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	gitopsstatus "buildpolicy.dev/hack/gitops-status"
)

type exprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	Failed     string `json:"failed"`
	InProgress string `json:"inProgress"`
}

// docExprs returns the healthCheckExprs entry for BuildPolicy in the
// ```yaml block of docs/flux.md that holds "healthCheckExprs:".
func docExprs(t *testing.T) exprs {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "flux.md")
	page, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	var in bool
	for line := range strings.SplitSeq(string(page), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```yaml":
			in, block = true, nil
		case in && trimmed == "```":
			in = false
			text := strings.Join(block, "\n")
			if !strings.Contains(text, "healthCheckExprs:") {
				continue
			}
			// The block is indented under a list item of the page.
			var doc struct {
				Spec struct {
					HealthCheckExprs []exprs `json:"healthCheckExprs"`
				} `json:"spec"`
			}
			indent := len(block[0]) - len(strings.TrimLeft(block[0], " "))
			for i, l := range block {
				if len(l) >= indent {
					block[i] = l[indent:]
				}
			}
			// Not strict: the block may hold other fields of the spec (wait).
			if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &doc); err != nil {
				t.Fatalf("%s: the healthCheckExprs block does not parse: %v", path, err)
			}
			for _, e := range doc.Spec.HealthCheckExprs {
				if e.APIVersion == "buildpolicy.dev/v1alpha1" && e.Kind == "BuildPolicy" {
					return e
				}
			}
		case in:
			block = append(block, line)
		}
	}
	t.Fatalf("%s: no ```yaml block with healthCheckExprs for buildpolicy.dev/v1alpha1 BuildPolicy", path)
	return exprs{}
}

// expression is fluxcd/pkg/runtime/cel's NewExpression without options.
func expression(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, err
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("failed to parse the CEL expression '%s': %s", expr, issues.String())
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
}

var errUnknown = errors.New("cannot be evaluated: Flux reports the status as unknown and keeps waiting")

// evaluate is StatusEvaluator.Evaluate.
func evaluate(e exprs, u *unstructured.Unstructured) (status.Status, error) {
	observed, ok, err := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if err != nil {
		return "", err
	}
	if ok {
		generation, ok, err := unstructured.NestedInt64(u.Object, "metadata", "generation")
		if err != nil {
			return "", err
		}
		if ok && observed != generation {
			return status.InProgressStatus, nil
		}
	}
	for _, step := range []struct {
		expr   string
		status status.Status
	}{
		{e.InProgress, status.InProgressStatus},
		{e.Failed, status.FailedStatus},
		{e.Current, status.CurrentStatus},
	} {
		if step.expr == "" {
			continue
		}
		prog, err := expression(step.expr)
		if err != nil {
			return "", err
		}
		val, _, err := prog.ContextEval(context.Background(), u.Object)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errUnknown, err)
		}
		b, ok := val.(types.Bool)
		if !ok {
			return "", fmt.Errorf("'%s' is not a boolean", step.expr)
		}
		if b {
			return step.status, nil
		}
	}
	return status.InProgressStatus, nil
}

func TestHealthCheckExprs(t *testing.T) {
	e := docExprs(t)
	if e.Current == "" {
		t.Fatal("docs/flux.md: the BuildPolicy entry has no current expression (Flux requires one)")
	}
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
		"deleting":               "", // Flux does not health-check objects it deletes: only not Failed
		"no-status":              status.UnknownStatus,
	}
	for _, name := range gitopsstatus.Cases {
		t.Run(name, func(t *testing.T) {
			obj, err := gitopsstatus.Load(filepath.Join(dir, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := evaluate(e, obj)
			if errors.Is(err, errUnknown) {
				got = status.UnknownStatus
			} else if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%v)", got, err)
			switch w := want[name]; {
			case w == "" && got == status.FailedStatus:
				t.Fatalf("got %s", got)
			case w != "" && got != w:
				t.Fatalf("got %s (%v), want %s", got, err, w)
			}
		})
	}
	// Without Stalled (an older operator), failed cannot tell: InProgress.
	old, err := gitopsstatus.Load(filepath.Join(gitopsstatus.TestdataDir(), "extra", "old-operator-capability-not-allowed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := evaluate(e, old); got != status.InProgressStatus || err != nil {
		t.Errorf("an older operator's refused policy: %s %v, want InProgress", got, err)
	}
}

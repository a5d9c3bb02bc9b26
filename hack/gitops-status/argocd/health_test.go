package argocd

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	gitopsstatus "buildpolicy.dev/hack/gitops-status"
)

// The key of the check in argocd-cm, and the resource override Argo CD
// makes of it.
const (
	healthKey  = "resource.customizations.health.buildpolicy.dev_BuildPolicy"
	overrideOf = "buildpolicy.dev/BuildPolicy"
)

// Argo CD's health_test.yaml format (util/lua/health_test.go: TestStructure).
type healthTests struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus HealthStatus `json:"healthStatus"`
	} `json:"tests"`
}

func here() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

func docPath() string { return filepath.Join(here(), "..", "..", "..", "docs", "argocd.md") }

// argocdCM returns the data of the argocd-cm ConfigMap in docs/argocd.md:
// the ```yaml block that holds the health key, parsed as YAML, so the
// script is exactly what Argo CD reads from that ConfigMap (the block
// scalar's indentation removed, a final newline kept).
func argocdCM(t *testing.T) map[string]string {
	t.Helper()
	page, err := os.ReadFile(docPath())
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	var inYAML, found bool
	for line := range strings.SplitSeq(string(page), "\n") {
		switch {
		case !inYAML && strings.TrimSpace(line) == "```yaml":
			inYAML, block = true, nil
		case inYAML && strings.TrimSpace(line) == "```":
			inYAML = false
			if found {
				goto parse
			}
		case inYAML:
			block = append(block, line)
			if strings.TrimSpace(line) == healthKey+": |" {
				found = true
			}
		}
	}
	t.Fatalf("%s: no ```yaml block with the line %q", docPath(), healthKey+": |")
parse:
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict([]byte(strings.Join(block, "\n")), &cm); err != nil {
		t.Fatalf("%s: the argocd-cm example does not parse: %v", docPath(), err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "argocd-cm" {
		t.Fatalf("%s: the block with the check is a %s %q, not the ConfigMap argocd-cm", docPath(), cm.Kind, cm.Metadata.Name)
	}
	return cm.Data
}

// healthCheck is the override Argo CD builds from the page's argocd-cm.
func healthCheck(t *testing.T) Override {
	t.Helper()
	overrides, err := Overrides(argocdCM(t))
	if err != nil {
		t.Fatalf("Argo CD would refuse the page's argocd-cm: %v", err)
	}
	o, ok := overrides[overrideOf]
	if !ok || o.HealthLua == "" {
		t.Fatalf("the page's argocd-cm has no health check for %s", overrideOf)
	}
	if o.UseOpenLibs {
		t.Fatalf("the page's argocd-cm sets useOpenLibs: the check must run without Lua's standard libraries, as Argo CD's default")
	}
	return o
}

func readTests(t *testing.T, name string) healthTests {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(here(), name))
	if err != nil {
		t.Fatal(err)
	}
	var tests healthTests
	if err := yaml.UnmarshalStrict(data, &tests); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(tests.Tests) == 0 {
		t.Fatalf("%s: no tests", name)
	}
	return tests
}

// runCase runs script on the object at path and compares with want, the
// way Argo CD's TestLuaHealthScript does (status and message equal), but
// with the libraries of an argocd-cm check (useOpenLibs false) rather than
// the open ones Argo CD's own test gives its built-in scripts. The object
// is decoded twice: as client-go decodes the API server's JSON (integers
// as int64, what the application controller sees) and as Argo CD's test
// decodes a file (sigs.k8s.io/yaml: numbers as float64); both must agree.
func runCase(script, path string, want HealthStatus) error {
	obj, err := gitopsstatus.Load(path)
	if err != nil {
		return err
	}
	got, err := ExecuteHealthLua(obj, script, false)
	if err != nil {
		return fmt.Errorf("%s: the check failed in Argo CD's interpreter: %w", filepath.Base(path), err)
	}
	if got.Status == HealthStatusUnknown && got.Message == InvalidHealthStatus {
		return fmt.Errorf("%s: the check returned a status Argo CD does not know (Argo CD shows Unknown %q)", filepath.Base(path), InvalidHealthStatus)
	}
	if *got != want {
		return fmt.Errorf("%s: got %s %q, want %s %q", filepath.Base(path), got.Status, got.Message, want.Status, want.Message)
	}
	data, _ := os.ReadFile(path)
	asFile := map[string]any{}
	if err := yaml.Unmarshal(data, &asFile); err != nil {
		return err
	}
	again, err := ExecuteHealthLua(&unstructured.Unstructured{Object: asFile}, script, false)
	if err != nil || *again != *got {
		return fmt.Errorf("%s: decoded as Argo CD's test decodes files: %v, %v; as the controller sees it: %v", filepath.Base(path), again, err, got)
	}
	return nil
}

func describe(c map[string]any) string {
	reason, _ := c["reason"].(string)
	message, _ := c["message"].(string)
	return reason + ": " + message
}

// fromSample is the message the check must give for a sample written by
// the integration tests, whose wording health_test.yaml cannot know: the
// same rule as the page's table, read off the sample's own conditions.
func fromSample(name, path string, want HealthStatus) (HealthStatus, error) {
	obj, err := gitopsstatus.Load(path)
	if err != nil {
		return want, err
	}
	ready, _ := gitopsstatus.Condition(obj, "Ready")
	switch name {
	case "ready":
		want.Message, _ = ready["message"].(string)
	case "capability-not-allowed", "task-conflict":
		stalled, _ := gitopsstatus.Condition(obj, "Stalled")
		want.Message = describe(stalled)
	case "namespace-not-found", "task-not-found":
		want.Message = describe(ready)
	case "stale-generation":
		want.Message = fmt.Sprintf("Waiting for the operator to act on generation %d", obj.GetGeneration())
	}
	return want, nil
}

// The eight cases, on the integration tests' objects when STATUS_SAMPLES
// names them, else on testdata/.
func TestHealthCheckOnSamples(t *testing.T) {
	check := healthCheck(t)
	dir, real, err := gitopsstatus.SamplesDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("samples: %s (from the integration tests: %v)", dir, real)
	tests := readTests(t, "health_test.yaml")
	var covered []string
	for _, tc := range tests.Tests {
		name := strings.TrimSuffix(tc.InputPath, ".json")
		covered = append(covered, name)
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, tc.InputPath)
			obj, err := gitopsstatus.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := gitopsstatus.CheckShape(name, obj); err != nil {
				t.Fatal(err)
			}
			want := tc.HealthStatus
			if real {
				if want, err = fromSample(name, path, want); err != nil {
					t.Fatal(err)
				}
			}
			if err := runCase(check.HealthLua, path, want); err != nil {
				t.Fatal(err)
			}
			// And the whole path of the application controller.
			got, err := ResourceHealth(obj, map[string]Override{overrideOf: check})
			if err != nil {
				t.Fatal(err)
			}
			if name == "deleting" {
				want = HealthStatus{Status: HealthStatusProgressing, Message: "Pending deletion"}
			}
			if got == nil || *got != want {
				t.Fatalf("as the application controller reports it: got %v, want %v", got, want)
			}
		})
	}
	if !reflect.DeepEqual(covered, gitopsstatus.Cases) {
		t.Errorf("health_test.yaml covers %v, want one test per sample case %v", covered, gitopsstatus.Cases)
	}
}

// Cases only the hand-written fixtures show: an operator without the
// Stalled condition, ApplyFailed, unknown reasons, Ready=Unknown, stale
// conditions.
func TestHealthCheckOnFixtures(t *testing.T) {
	check := healthCheck(t)
	for _, tc := range readTests(t, "health_test_fixtures.yaml").Tests {
		t.Run(strings.TrimSuffix(tc.InputPath, ".json"), func(t *testing.T) {
			if err := runCase(check.HealthLua, filepath.Join(gitopsstatus.TestdataDir(), tc.InputPath), tc.HealthStatus); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The harness must fail a check that Argo CD would not run as meant.
func TestHarnessCatchesBrokenChecks(t *testing.T) {
	check := healthCheck(t).HealthLua
	tests := readTests(t, "health_test.yaml")
	dir := gitopsstatus.TestdataDir()
	healthy := 0
	for _, tc := range tests.Tests {
		if tc.HealthStatus.Status == HealthStatusHealthy {
			healthy++
		}
	}
	if healthy == 0 || !strings.Contains(check, `"Healthy"`) {
		t.Fatal("the page's check or health_test.yaml has no Healthy case to break")
	}
	for _, broken := range []struct {
		name, script string
		failing      int // how many of the cases must fail
	}{
		{"status Great", strings.ReplaceAll(check, `"Healthy"`, `"Great"`), healthy},
		{"returns Great only", `return {status = "Great", message = "fine"}`, len(tests.Tests)},
		{"os.time (os is not a global in argocd-cm)", "local now = os.time()\n" + check, len(tests.Tests)},
		{"io.open (no io library)", "local f = io.open(\"/etc/hostname\")\n" + check, len(tests.Tests)},
		{"string.format (no string library)", "local s = string.format(\"%d\", 1)\n" + check, len(tests.Tests)},
		{"a string method (no string metatable)", "local s = (\"x\"):upper()\n" + check, len(tests.Tests)},
		{"require json (not preloaded)", "local json = require(\"json\")\n" + check, len(tests.Tests)},
		{"returns a string", "return \"Healthy\"", len(tests.Tests)},
		{"returns nothing", "local hs = {}", len(tests.Tests)},
		{"returns an empty table", "return {}", len(tests.Tests)},
	} {
		t.Run(broken.name, func(t *testing.T) {
			failed := 0
			for _, tc := range tests.Tests {
				err := runCase(broken.script, filepath.Join(dir, tc.InputPath), tc.HealthStatus)
				if err != nil {
					if failed == 0 {
						t.Logf("caught: %v", err)
					}
					failed++
				}
			}
			if failed != broken.failing {
				t.Errorf("%d of %d cases failed, want %d", failed, len(tests.Tests), broken.failing)
			}
		})
	}
}

// What Argo CD gives a check in argocd-cm, pinned so that a change of the
// reproduction shows: these mirror util/lua/lua.go of Argo CD v3.5.1.
func TestSandbox(t *testing.T) {
	obj, err := gitopsstatus.Load(filepath.Join(gitopsstatus.TestdataDir(), "ready.json"))
	if err != nil {
		t.Fatal(err)
	}
	ok := func(script string) string { return script + "\nreturn {status = \"Healthy\", message = \"ok\"}" }
	for _, c := range []struct {
		script      string
		useOpenLibs bool
		works       bool
	}{
		{ok(`local t = require("os").time()`), false, true},
		{ok(`local d = require("os").date("!%Y")`), false, true},
		{ok(`assert(require("os").exit == nil and require("os").getenv == nil)`), false, true},
		{ok(`assert(os == nil and io == nil and string == nil and math == nil and debug == nil and coroutine == nil)`), false, true},
		{ok(`assert(table.time == nil)`), false, true},
		{ok(`table.insert({}, 1); assert(tostring(1) == "1"); assert(type(pairs) == "function")`), false, true},
		{ok(`assert(obj.metadata.generation == 1 and obj.metadata.generation + 1 == 2)`), false, true},
		{ok(`assert(#obj.status.conditions > 0 and obj.status.conditions[1].type == "Ready")`), false, true},
		{ok(`assert(next(actionParams) == nil)`), false, true},
		{ok(`local t = os.time()`), false, false},
		{ok(`local t = os.time(); local s = string.format("%d", t)`), true, true},
		{ok(`error("refused")`), false, false},
	} {
		_, err := ExecuteHealthLua(obj, c.script, c.useOpenLibs)
		if (err == nil) != c.works {
			t.Errorf("useOpenLibs=%v %q: error %v, want it to work: %v", c.useOpenLibs, c.script, err, c.works)
		}
	}

	// The 1 s timeout.
	start := time.Now()
	_, err = ExecuteHealthLua(obj, "while true do end", false)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("an endless loop: error %v after %s, want a timeout after 1 s", err, time.Since(start))
	}

	// A runtime error reaches the user without a Lua stack trace, and the
	// controller shows it as Unknown.
	hs, err := ResourceHealth(obj, map[string]Override{overrideOf: {HealthLua: `error("boom")`}})
	if err == nil || hs.Status != HealthStatusUnknown || strings.Contains(hs.Message, "stack traceback") || !strings.Contains(hs.Message, "boom") {
		t.Errorf("a failing check: %v, %v", hs, err)
	}
	// Another kind is not this check's business.
	other := obj.DeepCopy()
	other.SetAPIVersion("example.com/v1")
	if hs, err := ResourceHealth(other, map[string]Override{overrideOf: {HealthLua: ok("")}}); hs != nil || err != nil {
		t.Errorf("another kind: %v, %v", hs, err)
	}
}

// The override key Argo CD derives from the page's argocd-cm, and the
// parsing of the split keys.
func TestOverrides(t *testing.T) {
	o, err := Overrides(map[string]string{
		healthKey: "return nil",
		"resource.customizations.useOpenLibs.buildpolicy.dev_BuildPolicy": "true",
		"resource.customizations.health.Pod":                              "return nil",
		"resource.customizations.ignoreDifferences.all":                   "jsonPointers: []",
		"resource.exclusions":                                             "[]",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Override{
		overrideOf: {HealthLua: "return nil", UseOpenLibs: true},
		"Pod":      {HealthLua: "return nil"},
		"*/*":      {},
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %v, want %v", o, want)
	}
	if _, err := Overrides(map[string]string{"resource.customizations.health.a_b_c": "x"}); err == nil {
		t.Error("a key with two underscores is accepted")
	}
	if _, err := Overrides(map[string]string{"resource.customizations.colour.a_b": "x"}); err == nil {
		t.Error("an unknown customization type is accepted")
	}
}

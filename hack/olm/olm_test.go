package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/operator-framework/api/pkg/manifests"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const csvPath = "manifests/" + packageName + ".clusterserviceversion.yaml"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func report(r Report) string {
	var b bytes.Buffer
	r.Print(&b)
	return b.String()
}

// The committed bundle and catalog pass every validator: no error, no warning.
func TestCommittedBundleAndCatalogValidateClean(t *testing.T) {
	root := repoRoot(t)
	r := ValidateBundle(filepath.Join(root, "bundle"))
	r.Merge(ValidateCatalog(filepath.Join(root, "catalog", packageName), filepath.Join(root, "bundle")))
	t.Log("\n" + report(r))
	if r.Errors() != 0 || r.Warnings() != 0 {
		t.Fatalf("want a clean bundle and catalog, got %d error(s) and %d warning(s):\n%s", r.Errors(), r.Warnings(), report(r))
	}
	// Every validator ran (a validator that silently did not run would pass).
	if len(r.Ran) != 1+len(upstream)+1+2 {
		t.Fatalf("validators run: %v", r.Ran)
	}
}

// generate twice gives the same bytes, and they are what is committed: no
// file differs, none is missing, none is left over.
func TestGenerateIsDeterministicAndMatchesTheCommittedFiles(t *testing.T) {
	root := repoRoot(t)
	first, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Generate(root)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, second) {
		t.Fatal("two runs of generate differ")
	}
	// Through the file system too, as hack/generate.sh runs it.
	out := t.TempDir()
	if err := first.Write(out); err != nil {
		t.Fatal(err)
	}
	if err := first.Write(out); err != nil {
		t.Fatal(err)
	}
	for _, dir := range ownedDirs {
		committed := listFiles(t, filepath.Join(root, dir))
		written := listFiles(t, filepath.Join(out, dir))
		if !reflect.DeepEqual(committed, written) {
			t.Fatalf("%s: committed files %v, generate writes %v: run `go run . generate` in hack/olm (hack/generate.sh)", dir, committed, written)
		}
		for _, f := range written {
			want, _ := os.ReadFile(filepath.Join(out, dir, f))
			got, _ := os.ReadFile(filepath.Join(root, dir, f))
			if !bytes.Equal(want, got) {
				t.Errorf("%s/%s is not what generate writes: run `go run . generate` in hack/olm (hack/generate.sh)", dir, f)
			}
		}
	}
}

// The CSV carries the shipped objects as they are: the CRD byte for byte,
// the ClusterRole's and the leader-election Role's rules, the Deployment's spec.
func TestTheBundleCarriesTheShippedObjects(t *testing.T) {
	root := repoRoot(t)
	crd, _ := os.ReadFile(filepath.Join(root, crdFile))
	inBundle, _ := os.ReadFile(filepath.Join(root, "bundle", "manifests", filepath.Base(crdFile)))
	if len(crd) == 0 || !bytes.Equal(crd, inBundle) {
		t.Fatalf("bundle/manifests/%s is not %s byte for byte", filepath.Base(crdFile), crdFile)
	}
	b, err := manifests.GetBundleFromDir(filepath.Join(root, "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	spec := b.CSV.Spec.InstallStrategy.StrategySpec

	var clusterRole rbacv1.ClusterRole
	readYAML(t, filepath.Join(root, "config/rbac/cluster_role.yaml"), &clusterRole)
	if len(spec.ClusterPermissions) != 1 || spec.ClusterPermissions[0].ServiceAccountName != "buildpolicy-operator" ||
		!rulesEqual(spec.ClusterPermissions[0].Rules, clusterRole.Rules) {
		t.Fatalf("clusterPermissions are not config/rbac/cluster_role.yaml's rules for buildpolicy-operator: %+v", spec.ClusterPermissions)
	}
	var role rbacv1.Role
	readYAML(t, filepath.Join(root, "config/rbac/leader_election_role.yaml"), &role)
	if len(spec.Permissions) != 1 || spec.Permissions[0].ServiceAccountName != "buildpolicy-operator" ||
		!rulesEqual(spec.Permissions[0].Rules, role.Rules) {
		t.Fatalf("permissions are not config/rbac/leader_election_role.yaml's rules: %+v", spec.Permissions)
	}
	var deployment appsv1.Deployment
	readYAML(t, filepath.Join(root, "config/manager/deployment.yaml"), &deployment)
	if len(spec.DeploymentSpecs) != 1 || spec.DeploymentSpecs[0].Name != deployment.Name ||
		!reflect.DeepEqual(spec.DeploymentSpecs[0].Spec, deployment.Spec) {
		t.Fatalf("the CSV's deployment is not config/manager/deployment.yaml's")
	}
	kinds := map[string]bool{}
	for _, o := range b.Objects {
		kinds[o.GetKind()+"/"+o.GetName()] = true
	}
	for _, want := range []string{"ConfigMap/buildpolicy-ceiling", "Service/buildpolicy-operator-metrics", "CustomResourceDefinition/buildpolicies.buildpolicy.dev"} {
		if !kinds[want] {
			t.Errorf("bundle/manifests has no %s; it has %v", want, kinds)
		}
	}
}

// Broken copies of the real bundle each fail, with a message naming the problem.
func TestBrokenBundlesFail(t *testing.T) {
	root := repoRoot(t)
	cases := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		// Each of these must appear in an error's line of the report.
		want []string
	}{
		{
			name: "CSV without icon",
			break_: func(t *testing.T, dir string) {
				editCSV(t, dir, func(csv object) { delete(csv["spec"].(object), "icon") })
			},
			want: []string{"csv.Spec.Icon is missing"},
		},
		{
			name: "wildcard verb in clusterPermissions",
			break_: func(t *testing.T, dir string) {
				editCSV(t, dir, func(csv object) { firstRule(csv, "clusterPermissions")["verbs"] = []any{"*"} })
			},
			want: []string{`wildcard "*" in csv.Spec.InstallStrategy.StrategySpec.clusterPermissions[0].rules[0].verbs`},
		},
		{
			name: "wildcard resource in clusterPermissions",
			break_: func(t *testing.T, dir string) {
				editCSV(t, dir, func(csv object) { firstRule(csv, "clusterPermissions")["resources"] = []any{"*"} })
			},
			want: []string{`wildcard "*" in csv.Spec.InstallStrategy.StrategySpec.clusterPermissions[0].rules[0].resources`},
		},
		{
			name: "wildcard verb in permissions",
			break_: func(t *testing.T, dir string) {
				editCSV(t, dir, func(csv object) { firstRule(csv, "permissions")["verbs"] = []any{"get", "*"} })
			},
			want: []string{`wildcard "*" in csv.Spec.InstallStrategy.StrategySpec.permissions[0].rules[0].verbs`},
		},
		{
			name: "owned CRD removed from bundle/manifests",
			break_: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "manifests", filepath.Base(crdFile))); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				// operator-framework/api's BundleValidator
				`owned CRD "buildpolicy.dev/v1alpha1, Kind=BuildPolicy" not found in bundle`,
				// and this repository's check, naming the file
				"owned CRD buildpolicies.buildpolicy.dev is not in",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, filepath.Join(root, "bundle"), dir)
			c.break_(t, dir)

			r := ValidateBundle(dir)
			out := report(r)
			t.Logf("validate %s:\n%s", c.name, out)
			if r.Errors() == 0 {
				t.Fatalf("a bundle with %s validates without error", c.name)
			}
			for _, want := range c.want {
				if !errorLineContains(out, want) {
					t.Errorf("no ERROR line containing %q", want)
				}
			}
			// The command fails too.
			var stdout, stderr bytes.Buffer
			if code := run([]string{"validate", dir}, &stdout, &stderr); code != 1 {
				t.Errorf("validate exits %d, want 1", code)
			}
		})
	}
}

// A catalog whose channel no longer lists its bundle fails
// operator-registry's own model validation.
func TestBrokenCatalogFails(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	copyTree(t, filepath.Join(root, "catalog", packageName), dir)
	path := filepath.Join(dir, "catalog.yaml")
	b, _ := os.ReadFile(path)
	broken := strings.Replace(string(b), "- name: "+packageName+".v", "- name: "+packageName+".v9", 1)
	if broken == string(b) {
		t.Fatal("no channel entry to break")
	}
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	r := ValidateCatalog(dir, filepath.Join(root, "bundle"))
	out := report(r)
	t.Logf("validate the broken catalog:\n%s", out)
	if r.Errors() == 0 || !errorLineContains(out, `bundle "`+packageName+`.v0.1.0" not found in any channel entries`) {
		t.Fatalf("a channel naming a missing bundle passes:\n%s", out)
	}
}

// The committed bundle passes through the command line too, as hack/test.sh runs it.
func TestValidateCommandPassesOnTheCommittedBundle(t *testing.T) {
	root := repoRoot(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "-catalog", filepath.Join(root, "catalog", packageName), filepath.Join(root, "bundle")}, &stdout, &stderr)
	if code != 0 || !strings.HasSuffix(stdout.String(), "0 error(s), 0 warning(s)\n") {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

// ---- helpers ----

func errorLineContains(out, want string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ERROR") && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

func firstRule(csv object, field string) object {
	perms := dig(csv, "spec", "install", "spec", field).([]any)
	rules := perms[0].(object)["rules"].([]any)
	return rules[0].(object)
}

func editCSV(t *testing.T, dir string, edit func(object)) {
	t.Helper()
	path := filepath.Join(dir, filepath.FromSlash(csvPath))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var csv object
	if err := yaml.Unmarshal(b, &csv); err != nil {
		t.Fatal(err)
	}
	edit(csv)
	out, err := yaml.Marshal(csv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range listFiles(t, from) {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(to, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

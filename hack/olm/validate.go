package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	rbacv1 "k8s.io/api/rbac/v1"
)

// Finding is one error or warning of one validator.
type Finding struct {
	Error     bool
	Validator string
	Subject   string
	Message   string
}

// Report collects the findings of every validator, and which validators ran.
type Report struct {
	Ran      []string
	Findings []Finding
}

func (r *Report) add(validator, subject string, isError bool, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Error: isError, Validator: validator, Subject: subject, Message: fmt.Sprintf(format, args...)})
}

// Merge appends another report.
func (r *Report) Merge(o Report) {
	r.Ran = append(r.Ran, o.Ran...)
	r.Findings = append(r.Findings, o.Findings...)
}

// Errors counts the findings that fail validation.
func (r Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Error {
			n++
		}
	}
	return n
}

// Warnings counts the findings that do not.
func (r Report) Warnings() int { return len(r.Findings) - r.Errors() }

// Print writes one line per finding, grouped by validator, then a summary.
func (r Report) Print(w io.Writer) {
	for _, v := range r.Ran {
		var lines []string
		for _, f := range r.Findings {
			if f.Validator != v {
				continue
			}
			level := "WARNING"
			if f.Error {
				level = "ERROR"
			}
			lines = append(lines, fmt.Sprintf("  %s %s: %s", level, f.Subject, f.Message))
		}
		if len(lines) == 0 {
			fmt.Fprintf(w, "%s: passed\n", v)
			continue
		}
		fmt.Fprintf(w, "%s:\n%s\n", v, strings.Join(lines, "\n"))
	}
	fmt.Fprintf(w, "%d error(s), %d warning(s)\n", r.Errors(), r.Warnings())
}

// The upstream validators run on every bundle, in this order.
var upstream = []struct {
	name      string
	validator interfaces.Validator
}{
	{"operator-framework/api ClusterServiceVersionValidator (default)", validation.ClusterServiceVersionValidator},
	{"operator-framework/api CustomResourceDefinitionValidator (default)", validation.CustomResourceDefinitionValidator},
	{"operator-framework/api BundleValidator (default)", validation.BundleValidator},
	// OperatorHubValidator is deprecated in favour of these three together.
	{"operator-framework/api OperatorHubV2Validator", validation.OperatorHubV2Validator},
	{"operator-framework/api StandardCapabilitiesValidator", validation.StandardCapabilitiesValidator},
	{"operator-framework/api StandardCategoriesValidator", validation.StandardCategoriesValidator},
	{"operator-framework/api GoodPracticesValidator", validation.GoodPracticesValidator},
}

// Checks of this repository, for what the upstream validators let through.
const ownChecks = "buildpolicy checks (hack/olm/validate.go)"

// ValidateBundle loads a registry+v1 bundle directory and runs every validator on it.
func ValidateBundle(dir string) Report {
	r := Report{Ran: []string{"load (operator-framework/api manifests.GetBundleFromDir)"}}
	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		r.add(r.Ran[0], dir, true, "%v", err)
		return r
	}
	if bundle == nil || bundle.CSV == nil {
		r.add(r.Ran[0], dir, true, "no ClusterServiceVersion found")
		return r
	}
	objs := bundle.ObjectsToValidate()
	for _, v := range upstream {
		r.Ran = append(r.Ran, v.name)
		for _, result := range v.validator.Validate(objs...) {
			for _, e := range result.Errors {
				r.add(v.name, subject(result, e), true, "%s", e.Error())
			}
			for _, e := range result.Warnings {
				r.add(v.name, subject(result, e), false, "%s", e.Error())
			}
		}
	}
	r.Ran = append(r.Ran, ownChecks)
	checkBundle(&r, dir, bundle)
	return r
}

func subject(result apierrors.ManifestResult, _ apierrors.Error) string {
	if result.Name != "" {
		return result.Name
	}
	return "bundle"
}

// checkBundle holds what this repository requires beyond the upstream
// validators: OperatorHubV2 only warns about a missing icon, and no upstream
// validator looks for wildcards in the operator's RBAC.
func checkBundle(r *Report, dir string, bundle *manifests.Bundle) {
	csv := bundle.CSV
	who := csv.GetName()
	bad := func(format string, args ...any) { r.add(ownChecks, who, true, format, args...) }

	// The icon: exactly one, an SVG, decodable.
	switch len(csv.Spec.Icon) {
	case 0:
		bad("csv.Spec.Icon is missing: OperatorHub shows the operator without an icon (add hack/olm/icon.svg back)")
	case 1:
		icon := csv.Spec.Icon[0]
		data, err := base64.StdEncoding.DecodeString(icon.Data)
		switch {
		case icon.MediaType != iconMediaType:
			bad("csv.Spec.Icon mediatype is %q, want %q", icon.MediaType, iconMediaType)
		case err != nil:
			bad("csv.Spec.Icon base64data does not decode: %v", err)
		case !bytes.Contains(data, []byte("<svg")):
			bad("csv.Spec.Icon is not an SVG image")
		}
	default:
		bad("csv.Spec.Icon has %d entries, want 1", len(csv.Spec.Icon))
	}

	// No wildcard anywhere in the operator's permissions.
	spec := csv.Spec.InstallStrategy.StrategySpec
	wildcards := func(field string, perms []v1alpha1.StrategyDeploymentPermissions) {
		for i, p := range perms {
			for j, rule := range p.Rules {
				where := fmt.Sprintf("csv.Spec.InstallStrategy.StrategySpec.%s[%d].rules[%d]", field, i, j)
				for _, list := range []struct {
					name   string
					values []string
				}{{"verbs", rule.Verbs}, {"apiGroups", rule.APIGroups}, {"resources", rule.Resources}, {"resourceNames", rule.ResourceNames}, {"nonResourceURLs", rule.NonResourceURLs}} {
					for _, v := range list.values {
						if strings.Contains(v, "*") {
							bad("wildcard %q in %s.%s: list each %s the operator needs", v, where, list.name, strings.TrimSuffix(list.name, "s"))
						}
					}
				}
				if len(rule.NonResourceURLs) > 0 {
					bad("%s grants nonResourceURLs %v: the operator needs none", where, rule.NonResourceURLs)
				}
			}
		}
	}
	wildcards("clusterPermissions", spec.ClusterPermissions)
	wildcards("permissions", spec.Permissions)

	// BuildPolicy is cluster-scoped: only AllNamespaces makes sense.
	for _, m := range csv.Spec.InstallModes {
		want := m.Type == v1alpha1.InstallModeTypeAllNamespaces
		if m.Supported != want {
			bad("installMode %s supported=%v, want %v: the CRD is cluster-scoped, so the operator serves all namespaces", m.Type, m.Supported, want)
		}
	}
	if len(csv.Spec.InstallModes) != 4 {
		bad("csv.Spec.InstallModes lists %d modes, want all 4 (only AllNamespaces supported)", len(csv.Spec.InstallModes))
	}

	// Every owned CRD ships in the bundle (the upstream BundleValidator says
	// the same; this names the file to put back).
	crds := map[string]bool{}
	for _, c := range bundle.V1CRDs {
		crds[c.GetName()] = true
	}
	for _, o := range csv.Spec.CustomResourceDefinitions.Owned {
		if !crds[o.Name] {
			bad("owned CRD %s is not in %s: put manifests/crds/%s.yaml there", o.Name, filepath.Join(dir, "manifests"), crdFileStem(o.Name))
		}
	}

	// The OpenShift annotations the bundle promises.
	for _, key := range []string{
		"features.operators.openshift.io/disconnected", "features.operators.openshift.io/fips-compliant",
		"features.operators.openshift.io/proxy-aware", "features.operators.openshift.io/tls-profiles",
		"features.operators.openshift.io/token-auth-aws", "features.operators.openshift.io/token-auth-azure",
		"features.operators.openshift.io/token-auth-gcp", "features.operators.openshift.io/cnf",
		"features.operators.openshift.io/cni", "features.operators.openshift.io/csi",
	} {
		if v := csv.GetAnnotations()[key]; v != "true" && v != "false" {
			bad("annotation %s is %q, want \"true\" or \"false\"", key, v)
		}
	}
	for _, key := range []string{"alm-examples", "capabilities", "categories", "containerImage", "repository", "support", "operatorframework.io/suggested-namespace", "description"} {
		if csv.GetAnnotations()[key] == "" {
			bad("annotation %s is missing", key)
		}
	}
	if len(csv.Spec.RelatedImages) == 0 {
		bad("csv.Spec.RelatedImages is empty: list the operator image, so that mirroring for disconnected clusters finds it")
	}

	// bundle/metadata/annotations.yaml.
	ann, err := readAnnotations(filepath.Join(dir, "metadata", "annotations.yaml"))
	if err != nil {
		bad("%v", err)
		return
	}
	for key, want := range map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1": "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":  "metadata/",
	} {
		if ann[key] != want {
			bad("metadata/annotations.yaml: %s is %q, want %q", key, ann[key], want)
		}
	}
	for _, key := range []string{
		"operators.operatorframework.io.bundle.package.v1",
		"operators.operatorframework.io.bundle.channels.v1",
		"operators.operatorframework.io.bundle.channel.default.v1",
		"com.redhat.openshift.versions",
	} {
		if ann[key] == "" {
			bad("metadata/annotations.yaml: %s is missing", key)
		}
	}
	if d := ann["operators.operatorframework.io.bundle.channel.default.v1"]; d != "" &&
		!contains(strings.Split(ann["operators.operatorframework.io.bundle.channels.v1"], ","), d) {
		bad("metadata/annotations.yaml: the default channel %q is not one of the channels %q", d, ann["operators.operatorframework.io.bundle.channels.v1"])
	}
}

func readAnnotations(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := unmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Annotations, nil
}

// crdFileStem is <group>_<plural> for a CRD named <plural>.<group>.
func crdFileStem(crdName string) string {
	plural, group, _ := strings.Cut(crdName, ".")
	return group + "_" + plural
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

// rulesEqual compares RBAC rules ignoring order inside each list.
func rulesEqual(a, b []rbacv1.PolicyRule) bool {
	norm := func(rs []rbacv1.PolicyRule) []rbacv1.PolicyRule {
		out := make([]rbacv1.PolicyRule, len(rs))
		for i, r := range rs {
			r = *r.DeepCopy()
			for _, l := range [][]string{r.Verbs, r.APIGroups, r.Resources, r.ResourceNames, r.NonResourceURLs} {
				sort.Strings(l)
			}
			out[i] = r
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

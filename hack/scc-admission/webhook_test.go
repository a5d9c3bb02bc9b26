package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	coreapi "k8s.io/kubernetes/pkg/apis/core"
)

// ---------------------------------------------------------------- pods ----

var created = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

// richPod is a pod with most of what a workload sets, defaulted by the
// API server's v1 defaults, with the fields the API server fills in.
func richPod() *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", GenerateName: "web-", Namespace: nsA, UID: "6f1c2d9e-0000-4000-8000-000000000001",
			ResourceVersion: "4711", CreationTimestamp: created,
			Labels:      map[string]string{"app": "web", "pod-template-hash": "abc"},
			Annotations: map[string]string{"example.com/a": "1", "example.com/b~c": "2"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web",
				UID: "6f1c2d9e-0000-4000-8000-000000000002", Controller: ref(true), BlockOwnerDeletion: ref(true)}},
			Finalizers: []string{"example.com/keep"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName:       "builder",
			DeprecatedServiceAccount: "builder",
			NodeSelector:             map[string]string{"kubernetes.io/os": "linux"},
			InitContainers: []corev1.Container{{
				Name: "init", Image: "registry.example/init:1", Command: []string{"sh", "-c", "true"},
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ref(true), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example/web:1", Args: []string{"--port=8080"}, WorkingDir: "/srv",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env: []corev1.EnvVar{
					{Name: "A", Value: "1"},
					{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				},
				VolumeMounts:   []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: ref(int64(1000)), AllowPrivilegeEscalation: ref(false), ReadOnlyRootFilesystem: ref(true),
					Capabilities:   &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
					SELinuxOptions: &corev1.SELinuxOptions{Level: "s0:c5,c0"},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}},
			SecurityContext: &corev1.PodSecurityContext{
				FSGroup: ref(int64(1000)), SupplementalGroups: []int64{1000, 2000},
				Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ping_group_range", Value: "0 2147483647"}},
			},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ref(resource.MustParse("1Gi"))}}},
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ref(int64(3607))}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ref(int64(300))}},
			Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 10, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
			}}}},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
			HostAliases:    []corev1.HostAlias{{IP: "10.0.0.1", Hostnames: []string{"db"}}},
			DNSConfig:      &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ref("2")}}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/ready"}},
			Hostname:       "web-0", Subdomain: "web",
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable},
	}
	legacyscheme.Scheme.Default(pod)
	return pod
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func generic(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return out
}

// setPath sets a value in generic JSON at a path of keys and list indexes.
func setPath(t testing.TB, obj map[string]any, value any, path ...any) {
	t.Helper()
	var cur any = obj
	for i, p := range path {
		last := i == len(path)-1
		switch k := p.(type) {
		case string:
			m := cur.(map[string]any)
			if last {
				m[k] = value
				return
			}
			if m[k] == nil {
				m[k] = map[string]any{}
			}
			cur = m[k]
		case int:
			l := cur.([]any)
			if last {
				l[k] = value
				return
			}
			cur = l[k]
		}
	}
}

func getPath(obj map[string]any, path ...any) (any, bool) {
	var cur any = obj
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil, false
			}
			cur = l[k]
		}
	}
	return cur, true
}

// unknownFields are fields a newer Kubernetes may serve and 1.32 does not
// know, with where they go in a pod.
var unknownFields = []struct {
	path  []any
	value any
}{
	{[]any{"spec", "futureSpecField"}, map[string]any{"mode": "strict", "n": float64(3)}},
	{[]any{"spec", "securityContext", "futurePodKnob"}, "on"},
	{[]any{"spec", "containers", 0, "futureContainerField"}, []any{"x"}},
	{[]any{"spec", "containers", 0, "securityContext", "futureKnob"}, true},
	{[]any{"metadata", "futureMetadataField"}, "m"},
}

func withUnknownFields(t testing.TB, raw []byte) []byte {
	t.Helper()
	obj := generic(t, raw)
	for _, f := range unknownFields {
		setPath(t, obj, f.value, f.path...)
	}
	return marshal(t, obj)
}

// ------------------------------------------------- conversion and patch ----

// TestInternalPodRoundTrip: a v1 pod with the common fields converts to the
// 1.32 internal type and back to the same JSON.
func TestInternalPodRoundTrip(t *testing.T) {
	raw := marshal(t, richPod())
	pod, err := internalPod(raw)
	if err != nil {
		t.Fatal(err)
	}
	if pod.Name != "web-0" || pod.Spec.ServiceAccountName != "builder" || len(pod.Spec.Containers) != 1 ||
		*pod.Spec.Containers[0].SecurityContext.RunAsUser != 1000 || pod.Spec.SecurityContext.FSGroup == nil {
		t.Fatalf("internal pod lost fields: %+v", pod)
	}
	back, err := externalJSON(pod)
	if err != nil {
		t.Fatal(err)
	}
	want := generic(t, raw)
	// The conversion leaves the type meta out; jsonPatch never looks at it.
	if back["apiVersion"] != nil || back["kind"] != nil {
		t.Errorf("type meta after the round trip: %v %v", back["apiVersion"], back["kind"])
	}
	delete(want, "apiVersion")
	delete(want, "kind")
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip changed the pod:\n got %s\nwant %s", marshal(t, back), marshal(t, want))
	}
	if ops := jsonPatch(want, back); len(ops) != 0 {
		t.Errorf("patch between a pod and its round trip: %s", marshal(t, ops))
	}
}

// TestInternalPodIgnoresUnknownFields: fields unknown to 1.32 are neither an
// error nor part of the internal pod; everything else is as without them.
func TestInternalPodIgnoresUnknownFields(t *testing.T) {
	raw := marshal(t, richPod())
	plain, err := internalPod(raw)
	if err != nil {
		t.Fatal(err)
	}
	withUnknown, err := internalPod(withUnknownFields(t, raw))
	if err != nil {
		t.Fatalf("a pod with fields unknown to 1.32: %v", err)
	}
	if !equality.Semantic.DeepEqual(plain, withUnknown) {
		t.Errorf("unknown fields changed the internal pod")
	}
	back, err := externalJSON(withUnknown)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range unknownFields {
		if _, ok := getPath(back, f.path...); ok {
			t.Errorf("%v survived conversion to the 1.32 types", f.path)
		}
	}
	if _, err := internalPod([]byte(`{"spec":`)); err == nil {
		t.Error("internalPod accepted truncated JSON")
	}
	if _, err := internalPod([]byte(`{"spec":{"containers":"no"}}`)); err == nil {
		t.Error("internalPod accepted containers that are not a list")
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"plain":               "plain",
		"openshift.io/scc":    "openshift.io~1scc",
		"a~b":                 "a~0b",
		"~1":                  "~01",
		"~0":                  "~00",
		"/":                   "~1",
		"a/b~c/d":             "a~1b~0c~1d",
		"example.com/b~c":     "example.com~1b~0c",
		"//~~":                "~1~1~0~0",
		"kubernetes.io/os~/x": "kubernetes.io~1os~0~1x",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPatchOpJSON(t *testing.T) {
	for _, c := range []struct {
		op   patchOp
		want string
	}{
		{patchOp{Op: "remove", Path: "/spec/a"}, `{"op":"remove","path":"/spec/a"}`},
		{patchOp{Op: "remove", Path: "/spec/a", Value: "ignored"}, `{"op":"remove","path":"/spec/a"}`},
		{patchOp{Op: "add", Path: "/spec/a", Value: nil}, `{"op":"add","path":"/spec/a","value":null}`},
		{patchOp{Op: "replace", Path: "/spec/l/0", Value: float64(3)}, `{"op":"replace","path":"/spec/l/0","value":3}`},
		{patchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]any{"openshift.io/scc": "anyuid"}}, `{"op":"add","path":"/metadata/annotations","value":{"openshift.io/scc":"anyuid"}}`},
	} {
		if got := string(marshal(t, c.op)); got != c.want {
			t.Errorf("%+v marshals as %s, want %s", c.op, got, c.want)
		}
	}
}

// applyPatch applies an RFC 6902 patch (the API server's library for
// webhook patches) to a JSON document.
func applyPatch(t testing.TB, doc []byte, ops []byte) []byte {
	t.Helper()
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", ops, err)
	}
	out, err := patch.Apply(doc)
	if err != nil {
		t.Fatalf("applying patch %s to %s: %v", ops, doc, err)
	}
	return out
}

// patchedWant is before with after's metadata.annotations and spec: what
// applying jsonPatch(before, after) must give.
func patchedWant(t testing.TB, before, after map[string]any) map[string]any {
	t.Helper()
	want := generic(t, marshal(t, before))
	a := generic(t, marshal(t, after))
	meta, _ := want["metadata"].(map[string]any)
	if ann, ok := lookup(a, "metadata", "annotations"); ok {
		meta["annotations"] = ann
	} else {
		delete(meta, "annotations")
	}
	if spec, ok := a["spec"]; ok {
		want["spec"] = spec
	} else {
		delete(want, "spec")
	}
	return want
}

func checkPatch(t testing.TB, name string, before, after map[string]any) []patchOp {
	t.Helper()
	ops := jsonPatch(before, after)
	raw := marshal(t, ops)
	if len(ops) == 0 {
		raw = []byte("[]")
	}
	got := generic(t, applyPatch(t, marshal(t, before), raw))
	if want := patchedWant(t, before, after); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: patch %s applied to %s gives\n%s\nwant\n%s", name, raw, marshal(t, before), marshal(t, got), marshal(t, want))
	}
	return ops
}

func TestJSONPatchCases(t *testing.T) {
	doc := func(annotations any, spec any, extra ...any) map[string]any {
		meta := map[string]any{"name": "p", "labels": map[string]any{"app": "x"}}
		if annotations != nil {
			meta["annotations"] = annotations
		}
		d := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": map[string]any{"phase": "Pending"}}
		if spec != nil {
			d["spec"] = spec
		}
		for i := 0; i+1 < len(extra); i += 2 {
			setPath(t, d, extra[i+1], extra[i].([]any)...)
		}
		return d
	}
	m := func(kv ...any) map[string]any {
		out := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	container := func(sc any) map[string]any {
		c := m("name", "c", "image", "i")
		if sc != nil {
			c["securityContext"] = sc
		}
		return c
	}
	for _, c := range []struct {
		name          string
		before, after map[string]any
		want          []patchOp
	}{
		{"identical", doc(m("a", "1"), m("x", float64(1))), doc(m("a", "1"), m("x", float64(1))), nil},
		{"annotations added", doc(nil, m()), doc(m("openshift.io/scc", "anyuid"), m()),
			[]patchOp{{Op: "add", Path: "/metadata/annotations", Value: m("openshift.io/scc", "anyuid")}}},
		{"annotation added to others", doc(m("a", "1"), m()), doc(m("a", "1", "openshift.io/scc", "anyuid"), m()),
			[]patchOp{{Op: "add", Path: "/metadata/annotations/openshift.io~1scc", Value: "anyuid"}}},
		{"annotation changed", doc(m("openshift.io/scc", "anyuid"), m()), doc(m("openshift.io/scc", "restricted-v2"), m()),
			[]patchOp{{Op: "add", Path: "/metadata/annotations/openshift.io~1scc", Value: "restricted-v2"}}},
		{"annotation removed", doc(m("a", "1", "b~c", "2"), m()), doc(m("a", "1"), m()),
			[]patchOp{{Op: "remove", Path: "/metadata/annotations/b~0c"}}},
		{"all annotations removed", doc(m("a", "1"), m()), doc(nil, m()),
			[]patchOp{{Op: "remove", Path: "/metadata/annotations"}}},
		{"labels and status are not compared", doc(nil, m()), doc(nil, m(), []any{"metadata", "labels"}, m("app", "y"), []any{"status", "phase"}, "Running"), nil},
		{"container securityContext added", doc(nil, m("containers", []any{container(nil)})),
			doc(nil, m("containers", []any{container(m("runAsUser", float64(1000)))})),
			[]patchOp{{Op: "add", Path: "/spec/containers/0/securityContext", Value: m("runAsUser", float64(1000))}}},
		{"securityContext fields added, replaced and removed", doc(nil, m("containers", []any{container(m("privileged", false, "runAsUser", float64(0)))})),
			doc(nil, m("containers", []any{container(m("runAsUser", float64(1000), "capabilities", m("drop", []any{"ALL"})))})),
			[]patchOp{
				{Op: "add", Path: "/spec/containers/0/securityContext/capabilities", Value: m("drop", []any{"ALL"})},
				{Op: "remove", Path: "/spec/containers/0/securityContext/privileged"},
				{Op: "add", Path: "/spec/containers/0/securityContext/runAsUser", Value: float64(1000)},
			}},
		{"second container only", doc(nil, m("containers", []any{container(nil), container(nil)})),
			doc(nil, m("containers", []any{container(nil), container(m("runAsNonRoot", true))})),
			[]patchOp{{Op: "add", Path: "/spec/containers/1/securityContext", Value: m("runAsNonRoot", true)}}},
		{"list of scalars, same length", doc(nil, m("supplementalGroups", []any{float64(1), float64(2)})),
			doc(nil, m("supplementalGroups", []any{float64(1), float64(3)})),
			[]patchOp{{Op: "replace", Path: "/spec/supplementalGroups/1", Value: float64(3)}}},
		{"list longer", doc(nil, m("drop", []any{"KILL"})), doc(nil, m("drop", []any{"KILL", "MKNOD"})),
			[]patchOp{{Op: "add", Path: "/spec/drop", Value: []any{"KILL", "MKNOD"}}}},
		{"list element changes type", doc(nil, m("l", []any{m("a", "1")})), doc(nil, m("l", []any{"a"})),
			[]patchOp{{Op: "replace", Path: "/spec/l/0", Value: "a"}}},
		{"value changes type", doc(nil, m("v", m("a", "1"))), doc(nil, m("v", "a")),
			[]patchOp{{Op: "add", Path: "/spec/v", Value: "a"}}},
		{"null value", doc(nil, m("v", "a")), doc(nil, m("v", nil)),
			[]patchOp{{Op: "add", Path: "/spec/v", Value: nil}}},
		{"spec added", doc(nil, nil), doc(nil, m("a", "1")), []patchOp{{Op: "add", Path: "/spec", Value: m("a", "1")}}},
		{"keys that need escaping", doc(nil, m("nodeSelector", m("kubernetes.io/os", "linux"))),
			doc(nil, m("nodeSelector", m("kubernetes.io/os", "linux", "a~b/c", "x"))),
			[]patchOp{{Op: "add", Path: "/spec/nodeSelector/a~0b~1c", Value: "x"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ops := checkPatch(t, c.name, c.before, c.after)
			if !reflect.DeepEqual(ops, c.want) {
				t.Errorf("jsonPatch = %s, want %s", marshal(t, ops), marshal(t, c.want))
			}
		})
	}
}

// TestJSONPatchRandom: for random JSON documents and random changes to
// them, the patch applied to the first gives the second (in
// metadata.annotations and spec, and nothing else changes).
func TestJSONPatchRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	keys := []string{"a", "b", "c", "d/e", "f~g", "~1", "h~0/", "x.y", ""}
	var value func(depth int) any
	value = func(depth int) any {
		n := rng.Intn(8)
		if depth >= 4 {
			n = rng.Intn(4)
		}
		switch n {
		case 0:
			return keys[rng.Intn(len(keys))]
		case 1:
			return float64(rng.Intn(5))
		case 2:
			return rng.Intn(2) == 0
		case 3:
			return nil
		case 4, 5:
			l := make([]any, rng.Intn(4))
			for i := range l {
				l[i] = value(depth + 1)
			}
			return l
		default:
			m := map[string]any{}
			for i := rng.Intn(5); i > 0; i-- {
				m[keys[rng.Intn(len(keys))]] = value(depth + 1)
			}
			return m
		}
	}
	var mutate func(v any, depth int) any
	mutate = func(v any, depth int) any {
		if rng.Intn(6) == 0 {
			return value(depth)
		}
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				switch rng.Intn(5) {
				case 0: // dropped
				case 1:
					out[k] = mutate(e, depth+1)
				default:
					out[k] = e
				}
			}
			if rng.Intn(3) == 0 {
				out[keys[rng.Intn(len(keys))]] = value(depth + 1)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = e
				if rng.Intn(3) == 0 {
					out[i] = mutate(e, depth+1)
				}
			}
			if rng.Intn(4) == 0 {
				out = append(out, value(depth+1))
			}
			return out
		}
		return v
	}
	object := func(depth int) map[string]any {
		for {
			if m, ok := value(depth).(map[string]any); ok {
				return m
			}
		}
	}
	changed := 0
	for i := 0; i < 3000; i++ {
		before := map[string]any{"apiVersion": "v1", "metadata": map[string]any{"name": "p"}, "spec": object(1), "status": value(1)}
		if rng.Intn(2) == 0 {
			before["metadata"].(map[string]any)["annotations"] = object(2)
		}
		after := generic(t, marshal(t, before))
		after["spec"] = mutate(after["spec"], 1)
		meta := after["metadata"].(map[string]any)
		switch ann := meta["annotations"].(type) {
		case nil:
			if rng.Intn(2) == 0 {
				meta["annotations"] = map[string]any{"openshift.io/scc": "restricted-v2"}
			}
		default:
			if rng.Intn(4) == 0 {
				delete(meta, "annotations")
			} else {
				meta["annotations"] = mutate(ann, 2)
			}
		}
		after["status"] = value(1) // not compared
		if ops := checkPatch(t, fmt.Sprintf("case %d", i), before, after); len(ops) > 0 {
			changed++
		}
		if t.Failed() {
			return
		}
	}
	if changed < 1000 {
		t.Fatalf("only %d of 3000 random cases changed anything", changed)
	}
}

// -------------------------------------------------- audit annotations ----

type annotationSink struct {
	admission.Attributes
	got map[string]string
}

func (s *annotationSink) AddAnnotation(k, v string) error {
	s.got[k] = v
	return nil
}

func TestAuditAnnotations(t *testing.T) {
	sink := &annotationSink{got: map[string]string{}}
	a := &recordingAttributes{Attributes: sink, annotations: map[string]string{}}
	if got := a.auditAnnotations(); got != nil {
		t.Errorf("no annotations: %v, want nil", got)
	}
	in := map[string]string{
		"securitycontextconstraints.admission.openshift.io/reason":                     "\"restricted-v2\" is the only one not too restrictive and not denied",
		"securityserviceconstraints.admission.openshift.io/denied":                     "anyuid,privileged",
		"securitycontextconstraints.admission.openshift.io/too-restrictive-nonroot-v2": "provider \"nonroot-v2\": Forbidden: ...",
		"securitycontextconstraints.admission.openshift.io/chosen":                     "restricted-v2",
		"no-prefix": "kept",
		"a/b/c":     "after the last slash",
	}
	for k, v := range in {
		if err := a.AddAnnotation(k, v); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"reason":                     in["securitycontextconstraints.admission.openshift.io/reason"],
		"denied":                     "anyuid,privileged",
		"too-restrictive-nonroot-v2": in["securitycontextconstraints.admission.openshift.io/too-restrictive-nonroot-v2"],
		"chosen":                     "restricted-v2",
		"no-prefix":                  "kept",
		"c":                          "after the last slash",
	}
	if got := a.auditAnnotations(); !reflect.DeepEqual(got, want) {
		t.Errorf("auditAnnotations = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(sink.got, in) {
		t.Errorf("the request's own attributes got %v, want %v", sink.got, in)
	}
	for k := range a.auditAnnotations() {
		if strings.Contains(k, "/") {
			t.Errorf("audit annotation key %q contains a slash", k)
		}
	}
}

// ------------------------------------------------------------- review ----

type stubPlugin struct {
	handles bool
	admit   func(admission.Attributes) error
	got     admission.Attributes
}

func (s *stubPlugin) Handles(admission.Operation) bool { return s.handles }
func (s *stubPlugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	s.got = a
	return s.admit(a)
}
func (s *stubPlugin) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	s.got = a
	return s.admit(a)
}

func stubHandler(t testing.TB, p *stubPlugin) *handler {
	return &handler{plugin: p, sccLister: sccLister(t, nil), authz: &prefetchingAuthorizer{
		delegate: authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
			return authorizer.DecisionNoOpinion, "", nil
		}),
		sccs: sccLister(t, nil), parallel: 1,
	}}
}

func podRequest(t testing.TB, uid, namespace string, raw []byte, requester user.Info, op admissionv1.Operation) *admissionv1.AdmissionRequest {
	t.Helper()
	extra := map[string]authenticationv1.ExtraValue{}
	for k, v := range requester.GetExtra() {
		extra[k] = v
	}
	if len(extra) == 0 {
		extra = nil
	}
	var name string
	if raw != nil {
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = json.Unmarshal(raw, &meta)
		name = meta.Metadata.Name
	}
	return &admissionv1.AdmissionRequest{
		UID:             types.UID(uid),
		Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:            name,
		Namespace:       namespace,
		Operation:       op,
		UserInfo:        authenticationv1.UserInfo{Username: requester.GetName(), UID: requester.GetUID(), Groups: requester.GetGroups(), Extra: extra},
		Object:          runtime.RawExtension{Raw: raw},
		DryRun:          ref(false),
	}
}

// TestReviewBuildsAttributes: the plugin sees the request as the API server
// would hand it to an in-process admission plugin, and what it changes comes
// back as a patch; its refusals come back with its status.
func TestReviewBuildsAttributes(t *testing.T) {
	requester := &user.DefaultInfo{Name: "alice", UID: "uid-alice", Groups: []string{"ops", user.AllAuthenticated}, Extra: map[string][]string{"scopes.example.com": {"a", "b"}}}
	raw := marshal(t, richPod())
	p := &stubPlugin{handles: true, admit: func(a admission.Attributes) error {
		pod := a.GetObject().(*coreapi.Pod)
		pod.Annotations[securityv1.ValidatedSCCAnnotation] = "anyuid"
		pod.Spec.Containers[0].SecurityContext.RunAsUser = ref(int64(0))
		return a.AddAnnotation("securitycontextconstraints.admission.openshift.io/reason", "because")
	}}
	h := stubHandler(t, p)
	req := podRequest(t, "uid-1", nsA, raw, requester, admissionv1.Create)
	req.SubResource = ""
	req.DryRun = ref(true)
	resp := h.review(context.Background(), req, true)
	if !resp.Allowed || resp.Result != nil {
		t.Fatalf("not allowed: %+v", resp)
	}
	a := p.got
	if a.GetNamespace() != nsA || a.GetName() != "web-0" || a.GetOperation() != admission.Create || !a.IsDryRun() ||
		a.GetResource() != (schema.GroupVersionResource{Version: "v1", Resource: "pods"}) || a.GetKind() != (schema.GroupVersionKind{Version: "v1", Kind: "Pod"}) ||
		a.GetSubresource() != "" || a.GetOldObject() != nil {
		t.Errorf("attributes: ns=%s name=%s op=%s dryRun=%v resource=%v kind=%v sub=%q old=%v", a.GetNamespace(), a.GetName(), a.GetOperation(), a.IsDryRun(), a.GetResource(), a.GetKind(), a.GetSubresource(), a.GetOldObject())
	}
	if u := a.GetUserInfo(); u.GetName() != "alice" || u.GetUID() != "uid-alice" || !reflect.DeepEqual(u.GetGroups(), requester.Groups) || !reflect.DeepEqual(u.GetExtra(), requester.Extra) {
		t.Errorf("user: %+v, want %+v", u, requester)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", resp.PatchType)
	}
	var ops []map[string]any
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"op": "add", "path": "/metadata/annotations/openshift.io~1scc", "value": "anyuid"},
		{"op": "add", "path": "/spec/containers/0/securityContext/runAsUser", "value": float64(0)},
	}
	if !reflect.DeepEqual(ops, want) {
		t.Errorf("patch %s, want %s", resp.Patch, marshal(t, want))
	}
	if !reflect.DeepEqual(resp.AuditAnnotations, map[string]string{"reason": "because"}) {
		t.Errorf("audit annotations %v", resp.AuditAnnotations)
	}

	// UPDATE of an ephemeral container: the old object is passed; validate
	// returns no patch.
	p.admit = func(admission.Attributes) error { return nil }
	req = podRequest(t, "uid-2", nsA, raw, requester, admissionv1.Update)
	req.SubResource = "ephemeralcontainers"
	req.OldObject = runtime.RawExtension{Raw: raw}
	for _, mutate := range []bool{true, false} {
		resp = h.review(context.Background(), req, mutate)
		if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil || resp.AuditAnnotations != nil {
			t.Errorf("mutate=%v: unchanged pod: %+v", mutate, resp)
		}
		if p.got.GetSubresource() != "ephemeralcontainers" || p.got.GetOperation() != admission.Update {
			t.Errorf("mutate=%v: attributes %v %v", mutate, p.got.GetOperation(), p.got.GetSubresource())
		}
		if old, ok := p.got.GetOldObject().(*coreapi.Pod); !ok || old.Name != "web-0" {
			t.Errorf("mutate=%v: old object %v", mutate, p.got.GetOldObject())
		}
	}

	// A refusal that is an API status keeps it; any other error is a 403.
	p.admit = func(a admission.Attributes) error {
		return admission.NewForbidden(a, errors.New("unable to validate against any security context constraint: []"))
	}
	resp = h.review(context.Background(), podRequest(t, "uid-3", nsA, raw, requester, admissionv1.Create), true)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Reason != metav1.StatusReasonForbidden ||
		resp.Result.Message != `pods "web-0" is forbidden: unable to validate against any security context constraint: []` || resp.Patch != nil {
		t.Errorf("forbidden: %+v", resp.Result)
	}
	p.admit = func(admission.Attributes) error { return errors.New("plain error") }
	resp = h.review(context.Background(), podRequest(t, "uid-4", nsA, raw, requester, admissionv1.Create), false)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Result.Message != "plain error" || resp.Result.Status != metav1.StatusFailure {
		t.Errorf("plain error: %+v", resp.Result)
	}
	p.admit = func(a admission.Attributes) error {
		return apierrors.NewInternalError(errors.New("boom"))
	}
	resp = h.review(context.Background(), podRequest(t, "uid-5", nsA, raw, requester, admissionv1.Create), true)
	if resp.Allowed || resp.Result.Code != http.StatusInternalServerError {
		t.Errorf("internal error: %+v", resp.Result)
	}
}

func TestReviewPassesOtherRequests(t *testing.T) {
	raw := marshal(t, richPod())
	called := false
	p := &stubPlugin{handles: true, admit: func(admission.Attributes) error { called = true; return errors.New("must not be asked") }}
	h := stubHandler(t, p)
	alice := authenticated("alice")

	other := podRequest(t, "u", nsA, []byte(`{"kind":"ConfigMap"}`), alice, admissionv1.Create)
	other.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	grouped := podRequest(t, "u", nsA, raw, alice, admissionv1.Create)
	grouped.Resource = metav1.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "pods"}
	for name, req := range map[string]*admissionv1.AdmissionRequest{"configmap": other, "pods of another group": grouped} {
		if resp := h.review(context.Background(), req, true); !resp.Allowed || resp.Patch != nil || resp.Result != nil {
			t.Errorf("%s: %+v", name, resp)
		}
	}
	p.handles = false
	if resp := h.review(context.Background(), podRequest(t, "u", nsA, raw, alice, admissionv1.Delete), true); !resp.Allowed || resp.Patch != nil {
		t.Errorf("an operation the plugin does not handle: %+v", resp)
	}
	if called {
		t.Error("the plugin was asked")
	}
	p.handles = true
	for name, req := range map[string]*admissionv1.AdmissionRequest{
		"not JSON":  podRequest(t, "u", nsA, []byte(`{`), alice, admissionv1.Create),
		"not a pod": podRequest(t, "u", nsA, []byte(`{"spec":{"containers":1}}`), alice, admissionv1.Create),
		"bad old pod": func() *admissionv1.AdmissionRequest {
			r := podRequest(t, "u", nsA, raw, alice, admissionv1.Update)
			r.OldObject.Raw = []byte(`[]`)
			return r
		}(),
	} {
		resp := h.review(context.Background(), req, true)
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
			t.Errorf("%s: %+v", name, resp)
		}
	}
	if called {
		t.Error("the plugin was asked about a request that could not be decoded")
	}
}

func post(t testing.TB, mux http.Handler, path string, body []byte) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	return rec.Code, rec.Body.Bytes()
}

func reviewBody(t testing.TB, req *admissionv1.AdmissionRequest) []byte {
	return marshal(t, admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
}

func decodeResponse(t testing.TB, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Response == nil {
		t.Fatalf("not an AdmissionReview response (%v): %s", err, body)
	}
	if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
		t.Errorf("response type %v", review.TypeMeta)
	}
	return review.Response
}

// TestEndpoints: the HTTP side of the webhook as run serves it.
func TestEndpoints(t *testing.T) {
	h := newHarness(t)

	// Not started: informers not synced.
	sar, err := authorizationclient.NewForConfig(h.api.config())
	if err != nil {
		t.Fatal(err)
	}
	unstarted, err := newWebhook(h.kube, h.security, sar, nil, defaultRange, "s0")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	unstarted.mux().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the informers synced: %d %s", rec.Code, rec.Body)
	}

	w := h.webhook(t, true)
	mux := w.mux()
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Errorf("/healthz: %d %q", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/sccs", nil))
	var listing struct {
		SCCs []sccEntry `json:"sccs"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &listing); err != nil || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("/debug/sccs: %v %s", err, rec.Body)
	}
	var want []sccEntry
	for _, scc := range h.sccs {
		want = append(want, sccEntry{Name: scc.Name, ResourceVersion: scc.ResourceVersion})
	}
	if !reflect.DeepEqual(listing.SCCs, want) {
		t.Errorf("/debug/sccs = %+v, want %+v", listing.SCCs, want)
	}

	for _, path := range []string{"/mutate", "/validate"} {
		rec = httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d", path, rec.Code)
		}
		for _, body := range []string{"", "{", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`} {
			if code, out := post(t, mux, path, []byte(body)); code != http.StatusBadRequest {
				t.Errorf("POST %s %q: %d %s", path, body, code, out)
			}
		}
	}

	pod := gridPod(nsA, "default", "", "none")
	code, out := post(t, mux, "/mutate", reviewBody(t, podRequest(t, "0b7e-uid", nsA, marshal(t, pod), authenticated("alice"), admissionv1.Create)))
	if code != http.StatusOK {
		t.Fatalf("/mutate: %d %s", code, out)
	}
	resp := decodeResponse(t, out)
	if resp.UID != "0b7e-uid" || !resp.Allowed || resp.Patch == nil || resp.AuditAnnotations["reason"] == "" {
		t.Errorf("/mutate response: %+v", resp)
	}
	h.api.checkNoUnexpected(t)
}

// ------------------------------------------------- the plugin, two modes ----

var podVariants = []string{"none", "runAsUser 0", "SYS_ADMIN", "privileged", "hostNetwork"}

// gridPod is a pod as the API server hands it to the webhook: defaulted,
// with a service account token volume.
func gridPod(namespace, sa, pin, variant string) *corev1.Pod {
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "p-" + strings.ReplaceAll(strings.ToLower(variant), " ", "-"), Namespace: namespace,
			UID: "6f1c2d9e-0000-4000-8000-0000000000aa", CreationTimestamp: created, Labels: map[string]string{"app": "grid"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa, DeprecatedServiceAccount: sa,
			Containers: []corev1.Container{{
				Name: "main", Image: "registry.example/app:1", Command: []string{"/app"},
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ref(int64(3607))}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			}}}}},
		},
	}
	if pin != "" {
		pod.Annotations = map[string]string{securityv1.RequiredSCCAnnotation: pin}
	}
	c := &pod.Spec.Containers[0]
	switch variant {
	case "none":
	case "runAsUser 0":
		c.SecurityContext = &corev1.SecurityContext{RunAsUser: ref(int64(0))}
	case "SYS_ADMIN":
		c.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
	case "privileged":
		c.SecurityContext = &corev1.SecurityContext{Privileged: ref(true)}
	case "hostNetwork":
		pod.Spec.HostNetwork = true
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	default:
		panic(variant)
	}
	legacyscheme.Scheme.Default(pod)
	return pod
}

// TestRulesReviewModeAgreesWithSubjectAccessReviews is the comparison of
// --rules-review on and off: for every pod securityContext, requesting
// user, pod service account, openshift.io/required-scc pin and namespace,
// both webhooks (each wired as run wires it, against the same API server)
// give byte-identical /mutate responses. In rules mode a request costs one
// SelfSubjectRulesReview per identity and, for an authenticated requester,
// no SubjectAccessReview; every allowed pod, patched as the API server
// patches it, passes /validate with the SCC the patch names.
func TestRulesReviewModeAgreesWithSubjectAccessReviews(t *testing.T) {
	h := newHarness(t)
	withRules, withSARs := h.webhook(t, true).mux(), h.webhook(t, false).mux()

	chosen := map[string]int{}
	denied, n := 0, 0
	outcome := map[string]string{} // spot checks: "<ns> <requester> <sa> <pin> <variant>" -> scc or "denied"
	for _, ns := range []string{nsA, nsB} {
		for _, requester := range requesters() {
			for _, sa := range []string{"builder", "default"} {
				for _, pin := range []string{"", "anyuid", customSCC, "hostnetwork-v2"} {
					for _, variant := range podVariants {
						n++
						name := fmt.Sprintf("%s %s %s %q %s", ns, requester.Name, sa, pin, variant)
						raw := marshal(t, gridPod(ns, sa, pin, variant))
						body := reviewBody(t, podRequest(t, fmt.Sprintf("uid-%d", n), ns, raw, requester, admissionv1.Create))

						sars, ssrrs := h.api.sars.Load(), h.api.ssrrs.Load()
						codeR, outR := post(t, withRules, "/mutate", body)
						sarsR, ssrrsR := h.api.sars.Load()-sars, h.api.ssrrs.Load()-ssrrs
						sars, ssrrs = h.api.sars.Load(), h.api.ssrrs.Load()
						codeS, outS := post(t, withSARs, "/mutate", body)
						ssrrsS := h.api.ssrrs.Load() - ssrrs

						if codeR != http.StatusOK || codeS != http.StatusOK {
							t.Fatalf("%s: HTTP %d / %d", name, codeR, codeS)
						}
						if !bytes.Equal(outR, outS) {
							t.Errorf("%s: responses differ\n rules: %s\n  SARs: %s", name, outR, outS)
							continue
						}
						wantSSRRs := int64(1)
						if hasGroup(requester, user.AllAuthenticated) {
							wantSSRRs = 2
						}
						if ssrrsR != wantSSRRs || ssrrsS != 0 {
							t.Errorf("%s: %d SelfSubjectRulesReviews with rules (want %d), %d without (want 0)", name, ssrrsR, wantSSRRs, ssrrsS)
						}
						if hasGroup(requester, user.AllAuthenticated) && sarsR != 0 {
							t.Errorf("%s: %d SubjectAccessReviews in rules mode for an authenticated requester", name, sarsR)
						}

						resp := decodeResponse(t, outR)
						key := strings.Join([]string{ns, requester.Name, sa, pin, variant}, " ")
						if !resp.Allowed {
							denied++
							outcome[key] = "denied"
							if resp.Result == nil || resp.Result.Code != http.StatusForbidden || resp.Patch != nil {
								t.Errorf("%s: refusal %+v", name, resp)
							}
							continue
						}
						patched := generic(t, applyPatch(t, raw, resp.Patch))
						scc, _ := getPath(patched, "metadata", "annotations", securityv1.ValidatedSCCAnnotation)
						sccName, _ := scc.(string)
						if sccName == "" || (pin != "" && sccName != pin) {
							t.Errorf("%s: admitted with scc %q (pin %q)", name, sccName, pin)
						}
						chosen[sccName]++
						outcome[key] = sccName

						// The API server then calls /validate with the patched pod.
						vreq := podRequest(t, fmt.Sprintf("uid-%d-v", n), ns, marshal(t, patched), requester, admissionv1.Create)
						code, out := post(t, withRules, "/validate", reviewBody(t, vreq))
						vresp := decodeResponse(t, out)
						if code != http.StatusOK || !vresp.Allowed || vresp.Patch != nil || vresp.AuditAnnotations["chosen"] != sccName {
							t.Errorf("%s: /validate of the patched pod: %s", name, out)
						}
					}
				}
			}
		}
	}
	t.Logf("%d AdmissionReviews per mode: %d denied, admitted with %v", n, denied, chosen)
	for _, scc := range []string{"restricted-v2", "anyuid", customSCC, "hostnetwork-v2", "privileged", "nonroot"} {
		if chosen[scc] == 0 {
			t.Errorf("no pod of the grid was admitted with %s", scc)
		}
	}
	if denied == 0 || denied == n {
		t.Errorf("%d of %d denied", denied, n)
	}
	for k, want := range map[string]string{
		nsA + " frank default  none":                                      "restricted-v2",
		nsA + " alice default  none":                                      "anyuid", // priority 10
		nsA + " alice default  runAsUser 0":                               "anyuid",
		nsB + " alice default  runAsUser 0":                               "denied",
		nsA + " alice builder  hostNetwork":                               "hostnetwork-v2",
		nsA + " alice default  hostNetwork":                               "denied",
		nsA + " frank default  SYS_ADMIN":                                 customSCC,
		nsB + " frank default  SYS_ADMIN":                                 "denied",
		nsA + " frank builder build-scc SYS_ADMIN":                        customSCC,
		nsB + " frank builder build-scc SYS_ADMIN":                        "denied",
		nsA + " bob default  privileged":                                  "privileged",
		nsA + " carol default  runAsUser 0":                               customSCC,
		nsB + " carol default  runAsUser 0":                               "denied",
		nsA + " kube-admin default  privileged":                           "insights-runtime-extractor-scc", // privileged containers, more restrictive than privileged
		nsA + " kube-admin default anyuid none":                           "anyuid",
		nsA + " " + user.Anonymous + " default  none":                     customSCC,
		nsB + " " + user.Anonymous + " default  none":                     "nonroot",
		nsA + " " + user.Anonymous + " builder  hostNetwork":              "hostnetwork-v2",
		nsB + " system:serviceaccount:team-a:builder default  privileged": "privileged",
	} {
		if got := outcome[k]; got != want {
			t.Errorf("%s: %s, want %s", k, got, want)
		}
	}
	h.api.checkNoUnexpected(t)
}

// TestMutatePatchLeavesUnknownFieldsAlone: a pod with fields 1.32 does not
// know gets the same decision as without them, and a patch that leaves them
// as they are and gives the known fields the plugin's result.
func TestMutatePatchLeavesUnknownFieldsAlone(t *testing.T) {
	h := newHarness(t)
	mux := h.webhook(t, true).mux()
	admitted := 0
	for _, requester := range []*user.DefaultInfo{authenticated("kube-admin", user.SystemPrivilegedGroup), authenticated("frank")} {
		for _, pin := range []string{"", "anyuid", customSCC, "privileged"} {
			for _, variant := range podVariants {
				name := fmt.Sprintf("%s pin %q %s", requester.Name, pin, variant)
				plain := marshal(t, gridPod(nsA, "builder", pin, variant))
				unknown := withUnknownFields(t, plain)
				_, outPlain := post(t, mux, "/mutate", reviewBody(t, podRequest(t, "a", nsA, plain, requester, admissionv1.Create)))
				_, outUnknown := post(t, mux, "/mutate", reviewBody(t, podRequest(t, "a", nsA, unknown, requester, admissionv1.Create)))
				respPlain, respUnknown := decodeResponse(t, outPlain), decodeResponse(t, outUnknown)
				if respPlain.Allowed != respUnknown.Allowed || !reflect.DeepEqual(respPlain.AuditAnnotations, respUnknown.AuditAnnotations) {
					t.Errorf("%s: unknown fields changed the decision:\n%s\n%s", name, outPlain, outUnknown)
					continue
				}
				if !respUnknown.Allowed {
					if !bytes.Equal(outPlain, outUnknown) {
						t.Errorf("%s: refusals differ:\n%s\n%s", name, outPlain, outUnknown)
					}
					continue
				}
				admitted++
				var ops []patchOp
				if err := json.Unmarshal(respUnknown.Patch, &ops); err != nil {
					t.Fatal(err)
				}
				for _, op := range ops {
					if strings.Contains(strings.ToLower(op.Path), "future") {
						t.Errorf("%s: the patch touches %s", name, op.Path)
					}
				}
				patched := applyPatch(t, unknown, respUnknown.Patch)
				obj := generic(t, patched)
				for _, f := range unknownFields {
					if got, ok := getPath(obj, f.path...); !ok || !reflect.DeepEqual(got, f.value) {
						t.Errorf("%s: %v is %v after the patch, want %v", name, f.path, got, f.value)
					}
				}
				// The known fields are those of the patch applied to the pod as
				// the plugin saw it (its conversion to 1.32 and back).
				before, err := internalPod(unknown)
				if err != nil {
					t.Fatal(err)
				}
				beforeJSON, err := externalJSON(before)
				if err != nil {
					t.Fatal(err)
				}
				a, err := internalPod(patched)
				if err != nil {
					t.Fatal(err)
				}
				b, err := internalPod(applyPatch(t, marshal(t, beforeJSON), respUnknown.Patch))
				if err != nil {
					t.Fatal(err)
				}
				if !equality.Semantic.DeepEqual(a, b) {
					ja, _ := externalJSON(a)
					jb, _ := externalJSON(b)
					t.Errorf("%s: the patched pod differs from the plugin's:\n%s\n%s", name, marshal(t, ja), marshal(t, jb))
				}
				if scc := a.Annotations[securityv1.ValidatedSCCAnnotation]; scc == "" || (pin != "" && scc != pin) {
					t.Errorf("%s: admitted with %q", name, scc)
				}
			}
		}
	}
	if admitted < 10 {
		t.Errorf("only %d pods admitted", admitted)
	}
}

package main

import (
	"encoding/json"
	"reflect"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccdefaults"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// An SCC written without the defaulted fields comes out, once the
// webhook's patch is applied to what was sent, as SetDefaults_SCC makes it;
// fields this openshift/api does not know stay as sent; an SCC that is
// already defaulted gets no patch.
func TestDefaultSCCPatchGivesWhatSetDefaultsGives(t *testing.T) {
	cases := map[string]string{
		"bare": `{"apiVersion":"security.openshift.io/v1","kind":"SecurityContextConstraints",
			"metadata":{"name":"bare"},"allowPrivilegedContainer":false,
			"runAsUser":{"type":"RunAsAny"},"seLinuxContext":{"type":"RunAsAny"}}`,
		"host dir and empty volumes": `{"apiVersion":"security.openshift.io/v1","kind":"SecurityContextConstraints",
			"metadata":{"name":"hostdir"},"allowPrivilegedContainer":false,"allowHostDirVolumePlugin":true,
			"volumes":[],"runAsUser":{"type":"MustRunAsRange"},"seLinuxContext":{"type":"MustRunAs"},
			"fsGroup":{"type":"MustRunAs"},"allowPrivilegeEscalation":false}`,
		"star without host dir": `{"apiVersion":"security.openshift.io/v1","kind":"SecurityContextConstraints",
			"metadata":{"name":"star"},"allowPrivilegedContainer":false,"volumes":["*","hostPath"],
			"runAsUser":{"type":"RunAsAny"},"seLinuxContext":{"type":"RunAsAny"},"futureField":{"x":1}}`,
	}
	for name, sent := range cases {
		t.Run(name, func(t *testing.T) {
			response := defaultSCC(&admissionv1.AdmissionRequest{
				Name: name, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(sent)},
			})
			if !response.Allowed || response.Patch == nil {
				t.Fatalf("want an allowed response with a patch, got %+v", response)
			}
			patched := applyPatch(t, []byte(sent), response.Patch)

			var want securityv1.SecurityContextConstraints
			if err := json.Unmarshal([]byte(sent), &want); err != nil {
				t.Fatal(err)
			}
			sccdefaults.SetDefaults_SCC(&want)
			var got securityv1.SecurityContextConstraints
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("patched SCC\n%+v\nwant (SetDefaults_SCC)\n%+v", got, want)
			}
			if name == "star without host dir" && !reflect.DeepEqual(generic(t, patched)["futureField"], map[string]any{"x": float64(1)}) {
				t.Errorf("an unknown field changed: %s", patched)
			}

			again := defaultSCC(&admissionv1.AdmissionRequest{
				Name: name, Operation: admissionv1.Update, Object: runtime.RawExtension{Raw: patched},
			})
			if !again.Allowed || again.Patch != nil {
				t.Errorf("a defaulted SCC got a patch again: %s", again.Patch)
			}
		})
	}
}

func TestDefaultSCCRefusesWhatIsNotAnSCC(t *testing.T) {
	response := defaultSCC(&admissionv1.AdmissionRequest{Object: runtime.RawExtension{Raw: []byte(`[1,2]`)}})
	if response.Allowed || response.Result == nil || response.Result.Code != 400 {
		t.Errorf("want a 400 refusal, got %+v", response)
	}
}

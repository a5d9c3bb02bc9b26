package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccdefaults"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"
)

// serveDefaultSCC is OpenShift's SCC defaulting as a mutating webhook for
// SecurityContextConstraints: OpenShift's kube-apiserver runs
// sccdefaults.SetDefaults_SCC on every SCC written (fsGroup and
// supplementalGroups RunAsAny when unset, users and groups [] when unset,
// volumes from allowHostDirVolumePlugin and `*`, allowPrivilegeEscalation
// true when unset), so what is stored, and what SCC admission orders and
// applies, is the defaulted SCC. The local control plane stores SCCs the
// same way.
func serveDefaultSCC(w http.ResponseWriter, r *http.Request) {
	serveReview(w, r, 10*time.Second, func(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return defaultSCC(req)
	})
}

// defaultSCC answers one AdmissionRequest for an SCC: allowed, with a JSON
// patch of the top-level fields SetDefaults_SCC changed. Fields are
// compared in the form openshift/api gives them (decoded and encoded
// again), so encoding artifacts cancel out; a field that the request did
// not have is added, one it had is replaced. Fields this openshift/api does
// not know are never touched.
func defaultSCC(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var scc securityv1.SecurityContextConstraints
	if err := json.Unmarshal(req.Object.Raw, &scc); err != nil {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("not a SecurityContextConstraints: %v", err))
	}
	var sent map[string]any
	if err := json.Unmarshal(req.Object.Raw, &sent); err != nil {
		return errorResponse(http.StatusBadRequest, err.Error())
	}
	before, err := topLevel(&scc)
	if err != nil {
		return errorResponse(http.StatusInternalServerError, err.Error())
	}
	sccdefaults.SetDefaults_SCC(&scc)
	after, err := topLevel(&scc)
	if err != nil {
		return errorResponse(http.StatusInternalServerError, err.Error())
	}
	ops := defaultingPatch(sent, before, after)
	response := &admissionv1.AdmissionResponse{Allowed: true}
	if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			return errorResponse(http.StatusInternalServerError, err.Error())
		}
		pt := admissionv1.PatchTypeJSONPatch
		response.Patch, response.PatchType = patch, &pt
	}
	klog.Infof("default-scc %s %s: %d field(s) defaulted", req.Operation, req.Name, len(ops))
	return response
}

// topLevel is the SCC as generic JSON, without its type and metadata.
func topLevel(scc *securityv1.SecurityContextConstraints) (map[string]any, error) {
	raw, err := json.Marshal(scc)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	for _, k := range []string{"apiVersion", "kind", "metadata"} {
		delete(out, k)
	}
	return out, nil
}

// defaultingPatch adds or replaces, in the object as sent, each top-level
// field whose value defaulting changed, in name order.
func defaultingPatch(sent, before, after map[string]any) []patchOp {
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops []patchOp
	for _, k := range keys {
		if reflect.DeepEqual(before[k], after[k]) {
			continue
		}
		op := "add"
		if _, ok := sent[k]; ok {
			op = "replace"
		}
		ops = append(ops, patchOp{Op: op, Path: "/" + escape(k), Value: after[k]})
	}
	return ops
}

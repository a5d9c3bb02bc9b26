package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	securityv1listers "github.com/openshift/client-go/security/listers/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	coreapi "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install" // internal <-> v1 conversions and defaults in legacyscheme
)

// plugin is OpenShift's SCC admission plugin (sccadmission.NewConstraint()).
type plugin interface {
	admission.MutationInterface
	admission.ValidationInterface
}

type handler struct {
	plugin    plugin
	authz     *prefetchingAuthorizer
	sccLister securityv1listers.SecurityContextConstraintsLister
}

func (h *handler) serveMutate(w http.ResponseWriter, r *http.Request)   { h.serve(w, r, true) }
func (h *handler) serveValidate(w http.ResponseWriter, r *http.Request) { h.serve(w, r, false) }

func (h *handler) serve(w http.ResponseWriter, r *http.Request, mutate bool) {
	// The API server gives a webhook at most 30 s; the plugin itself waits up
	// to 10 s for its caches and for the namespace's annotations.
	serveReview(w, r, 25*time.Second, func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return h.review(ctx, req, mutate)
	})
}

// serveReview reads an admission.k8s.io/v1 AdmissionReview, answers its
// request with `answer` (given at most `timeout`) and writes the review
// back with the request's UID.
func serveReview(w http.ResponseWriter, r *http.Request, timeout time.Duration, answer func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an admission.k8s.io/v1 AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	response := answer(ctx, review.Request)
	response.UID = review.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: response,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (h *handler) review(ctx context.Context, req *admissionv1.AdmissionRequest, mutate bool) *admissionv1.AdmissionResponse {
	allowed := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Resource.Group != "" || req.Resource.Resource != "pods" {
		return allowed
	}
	operation := admission.Operation(req.Operation)
	if !h.plugin.Handles(operation) {
		return allowed
	}
	pod, err := internalPod(req.Object.Raw)
	if err != nil {
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("decoding the pod: %v", err))
	}
	var oldPod runtime.Object
	if len(req.OldObject.Raw) > 0 {
		old, err := internalPod(req.OldObject.Raw)
		if err != nil {
			return errorResponse(http.StatusBadRequest, fmt.Sprintf("decoding the old pod: %v", err))
		}
		oldPod = old
	}

	// The requesting user, as the API server authenticated it: OpenShift
	// checks `use` for this user and for the pod's service account.
	extra := map[string][]string{}
	for k, v := range req.UserInfo.Extra {
		extra[k] = []string(v)
	}
	userInfo := &user.DefaultInfo{Name: req.UserInfo.Username, UID: req.UserInfo.UID, Groups: req.UserInfo.Groups, Extra: extra}
	dryRun := req.DryRun != nil && *req.DryRun
	attrs := &recordingAttributes{
		Attributes: admission.NewAttributesRecord(pod, oldPod,
			schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind},
			req.Namespace, req.Name,
			schema.GroupVersionResource{Group: req.Resource.Group, Version: req.Resource.Version, Resource: req.Resource.Resource},
			req.SubResource, operation, nil, dryRun, userInfo),
		annotations: map[string]string{},
	}

	phase := "validate"
	var before map[string]any
	if mutate {
		phase = "mutate"
		if before, err = externalJSON(pod); err != nil {
			return errorResponse(http.StatusInternalServerError, err.Error())
		}
		// Validate tries the SCC Admit chose first and needs one or two
		// answers; Admit may need two for every SCC.
		ctx = h.authz.prefetch(ctx, req.Namespace, userInfo, pod.Spec.ServiceAccountName, pod.Annotations[securityv1.RequiredSCCAnnotation])
		err = h.plugin.Admit(ctx, attrs, nil)
	} else {
		err = h.plugin.Validate(ctx, attrs, nil)
	}
	name := req.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	if err != nil {
		klog.Infof("%s %s %s/%s user=%s dryRun=%v: denied: %v", phase, req.Operation, req.Namespace, name, req.UserInfo.Username, dryRun, err)
		status := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: err.Error()}
		if apiStatus, ok := err.(apierrors.APIStatus); ok {
			status = apiStatus.Status()
		}
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &status, AuditAnnotations: attrs.auditAnnotations()}
	}
	response := &admissionv1.AdmissionResponse{Allowed: true, AuditAnnotations: attrs.auditAnnotations()}
	if mutate {
		after, err := externalJSON(pod)
		if err != nil {
			return errorResponse(http.StatusInternalServerError, err.Error())
		}
		ops := jsonPatch(before, after)
		if len(ops) > 0 {
			patch, err := json.Marshal(ops)
			if err != nil {
				return errorResponse(http.StatusInternalServerError, err.Error())
			}
			patchType := admissionv1.PatchTypeJSONPatch
			response.Patch, response.PatchType = patch, &patchType
		}
	}
	klog.Infof("%s %s %s/%s user=%s dryRun=%v: allowed, scc=%s", phase, req.Operation, req.Namespace, name, req.UserInfo.Username, dryRun, pod.Annotations[securityv1.ValidatedSCCAnnotation])
	return response
}

func errorResponse(code int32, message string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: message}}
}

// internalPod decodes a v1 pod, as the API server sends it (defaulted), into
// the internal type that OpenShift's admission plugins see in-process.
func internalPod(raw []byte) (*coreapi.Pod, error) {
	var external corev1.Pod
	if err := json.Unmarshal(raw, &external); err != nil {
		return nil, err
	}
	var internal coreapi.Pod
	if err := legacyscheme.Scheme.Convert(&external, &internal, nil); err != nil {
		return nil, err
	}
	return &internal, nil
}

// externalJSON is the v1 form of an internal pod as generic JSON.
func externalJSON(pod *coreapi.Pod) (map[string]any, error) {
	var external corev1.Pod
	if err := legacyscheme.Scheme.Convert(pod, &external, nil); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(&external)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(raw, &out)
}

// recordingAttributes keeps the audit annotations the plugin adds (the
// chosen SCC and why, the SCCs that were denied or too restrictive).
type recordingAttributes struct {
	admission.Attributes
	annotations map[string]string
}

func (a *recordingAttributes) AddAnnotation(key, value string) error {
	a.annotations[key] = value
	return a.Attributes.AddAnnotation(key, value)
}

// auditAnnotations returns the plugin's annotations in the form a webhook
// response allows (the API server prefixes each key with the webhook's name
// and a slash, so a key may not contain one): the part after the plugin's
// own prefix.
func (a *recordingAttributes) auditAnnotations() map[string]string {
	if len(a.annotations) == 0 {
		return nil
	}
	out := make(map[string]string, len(a.annotations))
	for k, v := range a.annotations {
		if i := strings.LastIndex(k, "/"); i >= 0 {
			k = k[i+1:]
		}
		out[k] = v
	}
	return out
}

// ------------------------------------------------------------ JSON patch ----

type patchOp struct {
	Op    string
	Path  string
	Value any
}

// MarshalJSON writes "value" for every operation but "remove" (whose value
// may be JSON null, so omitempty would not do).
func (p patchOp) MarshalJSON() ([]byte, error) {
	if p.Op == "remove" {
		return json.Marshal(map[string]string{"op": p.Op, "path": p.Path})
	}
	return json.Marshal(map[string]any{"op": p.Op, "path": p.Path, "value": p.Value})
}

// jsonPatch turns the changes the plugin made (SCC annotation, pod and
// container securityContexts) into an RFC 6902 patch. Both sides are the
// plugin's pod converted to v1 (before and after Admit), so conversion
// artifacts cancel out and fields that this Kubernetes version does not know
// are never touched in the object the API server patches. Only
// metadata.annotations and spec are compared.
func jsonPatch(before, after map[string]any) []patchOp {
	var ops []patchOp
	for _, p := range [][2]string{{"metadata", "annotations"}, {"spec", ""}} {
		b, bok := lookup(before, p[0], p[1])
		a, aok := lookup(after, p[0], p[1])
		path := "/" + p[0]
		if p[1] != "" {
			path += "/" + p[1]
		}
		ops = diff(ops, path, b, bok, a, aok)
	}
	return ops
}

func lookup(obj map[string]any, first, second string) (any, bool) {
	v, ok := obj[first]
	if !ok || second == "" {
		return v, ok
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return nil, false
	}
	v, ok = m[second]
	return v, ok
}

func diff(ops []patchOp, path string, before any, hadBefore bool, after any, hasAfter bool) []patchOp {
	switch {
	case !hadBefore && !hasAfter:
		return ops
	case hadBefore && !hasAfter:
		return append(ops, patchOp{Op: "remove", Path: path})
	case !hadBefore:
		return append(ops, patchOp{Op: "add", Path: path, Value: after})
	case reflect.DeepEqual(before, after):
		return ops
	}
	bm, bIsMap := before.(map[string]any)
	am, aIsMap := after.(map[string]any)
	if bIsMap && aIsMap {
		keys := map[string]struct{}{}
		for k := range bm {
			keys[k] = struct{}{}
		}
		for k := range am {
			keys[k] = struct{}{}
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			bv, bok := bm[k]
			av, aok := am[k]
			ops = diff(ops, path+"/"+escape(k), bv, bok, av, aok)
		}
		return ops
	}
	bl, bIsList := before.([]any)
	al, aIsList := after.([]any)
	if bIsList && aIsList && len(bl) == len(al) {
		for i := range bl {
			if !reflect.DeepEqual(bl[i], al[i]) {
				_, bElemMap := bl[i].(map[string]any)
				_, aElemMap := al[i].(map[string]any)
				if bElemMap && aElemMap {
					ops = diff(ops, path+"/"+strconv.Itoa(i), bl[i], true, al[i], true)
				} else {
					ops = append(ops, patchOp{Op: "replace", Path: path + "/" + strconv.Itoa(i), Value: al[i]})
				}
			}
		}
		return ops
	}
	// "add" on an object member replaces it if present (RFC 6902 4.1).
	return append(ops, patchOp{Op: "add", Path: path, Value: after})
}

func escape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// ------------------------------------------------------------ /debug/sccs ----

type sccEntry struct {
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion"`
}

// serveSCCs lists the SCCs the plugin's informer holds, so that a test can
// wait until the webhook has seen an SCC it just created, changed or deleted.
func (h *handler) serveSCCs(w http.ResponseWriter, _ *http.Request) {
	sccs, err := h.sccLister.List(labels.Everything())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	entries := make([]sccEntry, 0, len(sccs))
	for _, scc := range sccs {
		entries = append(entries, sccEntry{Name: scc.Name, ResourceVersion: scc.ResourceVersion})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"sccs": entries})
}

package main

// Test fixtures shared by the tests of this package: OpenShift's default SCCs
// and their RBAC (hack/local-cluster/default-sccs), a custom SCC, RBAC grants
// for a set of identities, annotated namespaces, and an in-process stand-in
// for the API server's authorization endpoints (SubjectAccessReview and
// SelfSubjectRulesReview) built from Kubernetes' own RBAC authorizer and
// registry code, with impersonation resolved as kube-apiserver resolves it.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	securityfake "github.com/openshift/client-go/security/clientset/versioned/fake"
	securityv1listers "github.com/openshift/client-go/security/listers/security/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/authorization/union"
	"k8s.io/apiserver/pkg/endpoints/request"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	authorizationapi "k8s.io/kubernetes/pkg/apis/authorization"
	_ "k8s.io/kubernetes/pkg/apis/authorization/install" // internal <-> v1 conversions of the review types
	"k8s.io/kubernetes/pkg/registry/authorization/selfsubjectrulesreview"
	"k8s.io/kubernetes/pkg/registry/authorization/subjectaccessreview"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

const (
	nsA       = "team-a"
	nsB       = "team-b"
	customSCC = "build-scc"
	// defaultSCCDir holds OpenShift's default SCCs and the RBAC that grants them.
	defaultSCCDir = "../local-cluster/default-sccs"
	defaultRange  = "1000000000-1999999999/10000"
)

// ---------------------------------------------------------------- SCCs ----

// yamlDocuments returns the JSON of every non-empty YAML document in a file.
func yamlDocuments(t testing.TB, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if s := strings.TrimSpace(string(j)); s == "" || s == "null" {
			continue
		}
		docs = append(docs, j)
	}
}

// strictUnmarshal decodes JSON into a typed object and fails on a field the
// type does not have, so that a fixture field the pinned API does not know
// cannot be dropped silently.
func strictUnmarshal(t testing.TB, what string, data []byte, into any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(into); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// loadSCCs returns OpenShift's default SCCs, the custom SCC, each with a
// distinct resourceVersion, sorted by name.
func loadSCCs(t testing.TB) []*securityv1.SecurityContextConstraints {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(defaultSCCDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no SCC manifests in %s: %v", defaultSCCDir, err)
	}
	var sccs []*securityv1.SecurityContextConstraints
	for _, f := range files {
		if filepath.Base(f) == "rbac.yaml" {
			continue
		}
		for _, doc := range yamlDocuments(t, f) {
			scc := &securityv1.SecurityContextConstraints{}
			strictUnmarshal(t, f, doc, scc)
			if scc.Kind != "SecurityContextConstraints" || scc.Name == "" {
				t.Fatalf("%s: not an SCC: %s", f, doc)
			}
			sccs = append(sccs, scc)
		}
	}
	sccs = append(sccs, buildSCC())
	sort.Slice(sccs, func(i, j int) bool { return sccs[i].Name < sccs[j].Name })
	for i, scc := range sccs {
		scc.ResourceVersion = fmt.Sprint(100 + i)
	}
	return sccs
}

// buildSCC is a custom SCC like one generated for a build: any UID, the
// capabilities a container build needs, the namespace's SELinux level.
func buildSCC() *securityv1.SecurityContextConstraints {
	return &securityv1.SecurityContextConstraints{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "security.openshift.io/v1", Kind: "SecurityContextConstraints"},
		ObjectMeta:               metav1.ObjectMeta{Name: customSCC},
		AllowPrivilegeEscalation: ref(true),
		AllowedCapabilities:      []corev1.Capability{"SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"},
		RequiredDropCapabilities: []corev1.Capability{"KILL", "MKNOD"},
		RunAsUser:                securityv1.RunAsUserStrategyOptions{Type: securityv1.RunAsUserStrategyRunAsAny},
		SELinuxContext:           securityv1.SELinuxContextStrategyOptions{Type: securityv1.SELinuxStrategyMustRunAs},
		FSGroup:                  securityv1.FSGroupStrategyOptions{Type: securityv1.FSGroupStrategyRunAsAny},
		SupplementalGroups:       securityv1.SupplementalGroupsStrategyOptions{Type: securityv1.SupplementalGroupsStrategyRunAsAny},
		SeccompProfiles:          []string{"runtime/default", "unconfined"},
		Volumes: []securityv1.FSType{securityv1.FSTypeConfigMap, securityv1.FSTypeDownwardAPI, securityv1.FSTypeEmptyDir,
			securityv1.FSTypePersistentVolumeClaim, securityv1.FSProjected, securityv1.FSTypeSecret, securityv1.FSTypeEphemeral},
		Users:  []string{},
		Groups: []string{},
	}
}

func sccNames(sccs []*securityv1.SecurityContextConstraints) []string {
	names := make([]string, len(sccs))
	for i, scc := range sccs {
		names[i] = scc.Name
	}
	return names
}

func sccLister(t testing.TB, sccs []*securityv1.SecurityContextConstraints) securityv1listers.SecurityContextConstraintsLister {
	t.Helper()
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, scc := range sccs {
		if err := indexer.Add(scc); err != nil {
			t.Fatal(err)
		}
	}
	return securityv1listers.NewSecurityContextConstraintsLister(indexer)
}

// ---------------------------------------------------------------- RBAC ----

// rbacObjects is the RBAC of the test cluster.
type rbacObjects struct {
	roles               []*rbacv1.Role
	roleBindings        []*rbacv1.RoleBinding
	clusterRoles        []*rbacv1.ClusterRole
	clusterRoleBindings []*rbacv1.ClusterRoleBinding
}

func sccRule(verbs, groups, resources, names []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: groups, Resources: resources, ResourceNames: names}
}

func useSCC(names ...string) rbacv1.PolicyRule {
	return sccRule([]string{"use"}, []string{securityv1.GroupName}, []string{"securitycontextconstraints"}, names)
}

func roleBinding(namespace, name string, roleKind, roleName string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: roleKind, Name: roleName},
		Subjects:   subjects,
	}
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

func groupSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

func saSubject(namespace, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}
}

// testRBAC is Kubernetes' bootstrap policy (cluster-admin for system:masters
// and the rest), OpenShift's SCC roles and bindings from rbac.yaml, and these
// grants:
//
//	alice                      anyuid in team-a (namespaced Role, RoleBinding to the user)
//	bob (group ops)            privileged in team-a (ClusterRole, RoleBinding to the group)
//	carol                      nonroot-v2 everywhere (ClusterRoleBinding)
//	dave                       verbs "*" on every SCC in team-a (apiGroups "*")
//	erin                       only rules that do not match: another SCC's name, verb get,
//	                           another API group, another resource
//	frank                      nothing; a RoleBinding to a Role that does not exist
//	gina                       resourceNames ["*"] (a literal name in RBAC, not a wildcard)
//	heidi (group ops-b)        anyuid in team-b only
//	SA team-a/builder          hostnetwork-v2 in team-a (RoleBinding to the service account);
//	                           privileged in team-b (RoleBinding in team-b to team-a's SA)
//	group system:serviceaccounts:team-a   build-scc in team-a
//	SA team-b/builder          anyuid in team-b
//	group system:serviceaccounts          nonroot in team-b
func testRBAC(t testing.TB) rbacObjects {
	t.Helper()
	var o rbacObjects
	for _, cr := range bootstrappolicy.ClusterRoles() {
		o.clusterRoles = append(o.clusterRoles, cr.DeepCopy())
	}
	for _, crb := range bootstrappolicy.ClusterRoleBindings() {
		o.clusterRoleBindings = append(o.clusterRoleBindings, crb.DeepCopy())
	}
	for _, doc := range yamlDocuments(t, filepath.Join(defaultSCCDir, "rbac.yaml")) {
		var meta metav1.TypeMeta
		if err := json.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ClusterRole":
			cr := &rbacv1.ClusterRole{}
			strictUnmarshal(t, "rbac.yaml", doc, cr)
			o.clusterRoles = append(o.clusterRoles, cr)
		case "ClusterRoleBinding":
			crb := &rbacv1.ClusterRoleBinding{}
			strictUnmarshal(t, "rbac.yaml", doc, crb)
			o.clusterRoleBindings = append(o.clusterRoleBindings, crb)
		default:
			t.Fatalf("rbac.yaml: unexpected kind %q", meta.Kind)
		}
	}

	o.clusterRoles = append(o.clusterRoles, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "use-" + customSCC},
		Rules:      []rbacv1.PolicyRule{useSCC(customSCC)},
	})
	o.clusterRoleBindings = append(o.clusterRoleBindings, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "carol-nonroot-v2"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:openshift:scc:nonroot-v2"},
		Subjects:   []rbacv1.Subject{userSubject("carol")},
	})
	o.roles = []*rbacv1.Role{
		{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "use-anyuid"}, Rules: []rbacv1.PolicyRule{useSCC("anyuid")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "all-verbs"}, Rules: []rbacv1.PolicyRule{
			sccRule([]string{"*"}, []string{"*"}, []string{"securitycontextconstraints"}, nil),
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "near-misses"}, Rules: []rbacv1.PolicyRule{
			useSCC("no-such-scc"),
			sccRule([]string{"get", "list"}, []string{securityv1.GroupName}, []string{"securitycontextconstraints"}, []string{"anyuid"}),
			sccRule([]string{"use"}, []string{"security.example.com"}, []string{"securitycontextconstraints"}, nil),
			sccRule([]string{"use"}, []string{securityv1.GroupName}, []string{"securitycontextconstraints/status"}, nil),
			sccRule([]string{"use"}, []string{""}, []string{"pods"}, []string{"privileged"}),
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: nsA, Name: "literal-star"}, Rules: []rbacv1.PolicyRule{useSCC("*")}},
	}
	o.roleBindings = []*rbacv1.RoleBinding{
		roleBinding(nsA, "alice-anyuid", "Role", "use-anyuid", userSubject("alice")),
		roleBinding(nsA, "ops-privileged", "ClusterRole", "system:openshift:scc:privileged", groupSubject("ops")),
		roleBinding(nsA, "dave-all", "Role", "all-verbs", userSubject("dave")),
		roleBinding(nsA, "erin-near-misses", "Role", "near-misses", userSubject("erin")),
		roleBinding(nsA, "frank-dangling", "Role", "does-not-exist", userSubject("frank")),
		roleBinding(nsA, "gina-literal-star", "Role", "literal-star", userSubject("gina")),
		roleBinding(nsA, "builder-hostnetwork", "ClusterRole", "system:openshift:scc:hostnetwork-v2", saSubject(nsA, "builder")),
		roleBinding(nsA, "sas-build-scc", "ClusterRole", "use-"+customSCC, groupSubject("system:serviceaccounts:"+nsA)),
		roleBinding(nsB, "heidi-anyuid", "ClusterRole", "system:openshift:scc:anyuid", groupSubject("ops-b")),
		roleBinding(nsB, "builder-anyuid", "ClusterRole", "system:openshift:scc:anyuid", saSubject(nsB, "builder")),
		roleBinding(nsB, "team-a-builder-privileged", "ClusterRole", "system:openshift:scc:privileged", saSubject(nsA, "builder")),
		roleBinding(nsB, "all-sas-nonroot", "ClusterRole", "system:openshift:scc:nonroot", groupSubject("system:serviceaccounts")),
	}
	return o
}

func namespacedIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// rbacAuthorizer is Kubernetes' RBAC authorizer over the given objects.
func (o rbacObjects) authorizer(t testing.TB) *rbac.RBACAuthorizer {
	t.Helper()
	roles, roleBindings, clusterRoles, clusterRoleBindings := namespacedIndexer(), namespacedIndexer(), namespacedIndexer(), namespacedIndexer()
	add := func(i cache.Indexer, obj any) {
		if err := i.Add(obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range o.roles {
		add(roles, x)
	}
	for _, x := range o.roleBindings {
		add(roleBindings, x)
	}
	for _, x := range o.clusterRoles {
		add(clusterRoles, x)
	}
	for _, x := range o.clusterRoleBindings {
		add(clusterRoleBindings, x)
	}
	return rbac.New(
		&rbac.RoleGetter{Lister: rbaclisters.NewRoleLister(roles)},
		&rbac.RoleBindingLister{Lister: rbaclisters.NewRoleBindingLister(roleBindings)},
		&rbac.ClusterRoleGetter{Lister: rbaclisters.NewClusterRoleLister(clusterRoles)},
		&rbac.ClusterRoleBindingLister{Lister: rbaclisters.NewClusterRoleBindingLister(clusterRoleBindings)},
	)
}

// serverAuthorizer is what kube-apiserver authorizes with (system:masters,
// then RBAC; the Node authorizer has nothing to say about SCCs), and the rule
// resolver behind its SelfSubjectRulesReviews (RBAC only).
func serverAuthorizer(t testing.TB) (authorizer.Authorizer, authorizer.RuleResolver) {
	t.Helper()
	r := testRBAC(t).authorizer(t)
	return union.New(authorizerfactory.NewPrivilegedGroups(user.SystemPrivilegedGroup), r), union.NewRuleResolvers(r)
}

// resourceRules converts resolved rules as the SelfSubjectRulesReview
// registry does; complete unless the resolver says its rules are incomplete
// (a resolution error is only reported as evaluationError there).
func resourceRules(ctx context.Context, resolver authorizer.RuleResolver, namespace string, identity user.Info) ([]authorizationv1.ResourceRule, bool) {
	infos, _, incomplete, _ := resolver.RulesFor(ctx, identity, namespace)
	rules := make([]authorizationv1.ResourceRule, 0, len(infos))
	for _, info := range infos {
		rules = append(rules, authorizationv1.ResourceRule{
			Verbs: info.GetVerbs(), APIGroups: info.GetAPIGroups(), Resources: info.GetResources(), ResourceNames: info.GetResourceNames(),
		})
	}
	return rules, !incomplete
}

// countingAuthorizer counts the questions it is asked.
type countingAuthorizer struct {
	authorizer.Authorizer
	calls atomic.Int64
}

func (c *countingAuthorizer) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	c.calls.Add(1)
	return c.Authorizer.Authorize(ctx, a)
}

// ----------------------------------------------------------- identities ----

func authenticated(name string, groups ...string) *user.DefaultInfo {
	return &user.DefaultInfo{Name: name, Groups: append(groups, user.AllAuthenticated)}
}

var anonymous = &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}}

// podServiceAccount is how a service account authenticates with a bound
// token from a pod: its name, UID, groups and the pod in extra.
func podServiceAccount(namespace, name string) *user.DefaultInfo {
	sa := serviceaccount.UserInfo(namespace, name, "uid-"+namespace+"-"+name)
	return &user.DefaultInfo{
		Name:   sa.GetName(),
		UID:    sa.GetUID(),
		Groups: append(sa.GetGroups(), user.AllAuthenticated),
		Extra: map[string][]string{
			serviceaccount.PodNameKey: {"controller-0"},
			serviceaccount.PodUIDKey:  {"pod-uid-0"},
		},
	}
}

// requesters are the requesting users of the tests (see testRBAC).
func requesters() []*user.DefaultInfo {
	return []*user.DefaultInfo{
		authenticated("alice"),
		authenticated("bob", "ops"),
		authenticated("carol"),
		authenticated("dave"),
		authenticated("erin"),
		authenticated("frank"),
		authenticated("gina"),
		{Name: "heidi", UID: "uid-heidi", Groups: []string{"ops-b", user.AllAuthenticated}, Extra: map[string][]string{"scopes.example.com": {"a", "b"}}},
		authenticated("kube-admin", user.SystemPrivilegedGroup),
		authenticated("system:admin"),                  // listed in privileged's users
		authenticated("ivan", "system:cluster-admins"), // listed in anyuid's and privileged's groups
		podServiceAccount(nsA, "builder"),
		anonymous,
	}
}

// ---------------------------------------------------------- namespaces ----

// annotatedNamespace has the annotations the allocator would give block n.
func annotatedNamespace(name string, block uint32) *corev1.Namespace {
	r := fmt.Sprintf("%d/10000", 1000000000+block*10000)
	return &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "1", Annotations: map[string]string{
			securityv1.UIDRangeAnnotation:           r,
			securityv1.SupplementalGroupsAnnotation: r,
			securityv1.MCSAnnotation:                mcsLabel("s0", block),
		}},
	}
}

// --------------------------------------------------------- API server ----

// apiServer stands in for kube-apiserver's authorization endpoints as an
// http.RoundTripper (nothing listens): SubjectAccessReviews and
// SelfSubjectRulesReviews, answered by Kubernetes' own registry code, with
// impersonation as the API server resolves it, for a requester (the
// webhook's own identity) that may impersonate anyone.
type apiServer struct {
	handler          http.Handler
	sars, ssrrs      atomic.Int64
	mu               sync.Mutex
	unexpected       []string
	impersonatedSeen []user.Info
}

func newAPIServer(t testing.TB) *apiServer {
	t.Helper()
	authz, resolver := serverAuthorizer(t)
	s := &apiServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/subjectaccessreviews", func(w http.ResponseWriter, r *http.Request) {
		s.sars.Add(1)
		var in authorizationv1.SubjectAccessReview
		var internal authorizationapi.SubjectAccessReview
		if !s.decode(w, r, &in, &internal) {
			return
		}
		out, err := subjectaccessreview.NewREST(authz).Create(r.Context(), &internal, nil, &metav1.CreateOptions{})
		s.respond(w, out, err, &authorizationv1.SubjectAccessReview{})
	})
	mux.HandleFunc("POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews", func(w http.ResponseWriter, r *http.Request) {
		s.ssrrs.Add(1)
		if u, ok := request.UserFrom(r.Context()); ok {
			s.mu.Lock()
			s.impersonatedSeen = append(s.impersonatedSeen, u)
			s.mu.Unlock()
		}
		var in authorizationv1.SelfSubjectRulesReview
		var internal authorizationapi.SelfSubjectRulesReview
		if !s.decode(w, r, &in, &internal) {
			return
		}
		out, err := selfsubjectrulesreview.NewREST(resolver).Create(r.Context(), &internal, nil, &metav1.CreateOptions{})
		s.respond(w, out, err, &authorizationv1.SelfSubjectRulesReview{})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.unexpected = append(s.unexpected, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		http.NotFound(w, r)
	})
	s.handler = withImpersonation(mux)
	return s
}

// withImpersonation replaces the request's user with the one its
// Impersonate-* headers name, as kube-apiserver's impersonation filter
// (k8s.io/apiserver/pkg/endpoints/filters.WithImpersonation) does for a
// requester allowed to impersonate: a service account's groups when its
// name is given without groups, system:authenticated added to any user but
// system:anonymous (unless system:authenticated or system:unauthenticated is
// given), system:unauthenticated added to system:anonymous.
func withImpersonation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get(authenticationv1.ImpersonateUserHeader)
		if name == "" {
			next.ServeHTTP(w, r)
			return
		}
		groups := append([]string(nil), r.Header.Values(authenticationv1.ImpersonateGroupHeader)...)
		if ns, _, err := serviceaccount.SplitUsername(name); err == nil && len(groups) == 0 {
			groups = serviceaccount.MakeGroupNames(ns)
		}
		extra := map[string][]string{}
		for header, values := range r.Header {
			if !strings.HasPrefix(header, authenticationv1.ImpersonateUserExtraHeaderPrefix) {
				continue
			}
			k, err := url.PathUnescape(strings.ToLower(strings.TrimPrefix(header, authenticationv1.ImpersonateUserExtraHeaderPrefix)))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			extra[k] = append(extra[k], values...)
		}
		if name != user.Anonymous {
			if !contains(groups, user.AllAuthenticated) && !contains(groups, user.AllUnauthenticated) {
				groups = append(groups, user.AllAuthenticated)
			}
		} else if !contains(groups, user.AllUnauthenticated) {
			groups = append(groups, user.AllUnauthenticated)
		}
		impersonated := &user.DefaultInfo{Name: name, UID: r.Header.Get(authenticationv1.ImpersonateUIDHeader), Groups: groups, Extra: extra}
		next.ServeHTTP(w, r.WithContext(request.WithUser(r.Context(), impersonated)))
	})
}

func (s *apiServer) decode(w http.ResponseWriter, r *http.Request, external, internal runtime.Object) bool {
	// JSON (the delegating authorizer) or protobuf (typed clients)
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_, _, err = legacyscheme.Codecs.UniversalDeserializer().Decode(body, nil, external)
	}
	if err == nil {
		err = legacyscheme.Scheme.Convert(external, internal, nil)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (s *apiServer) respond(w http.ResponseWriter, out runtime.Object, err error, external runtime.Object) {
	if err == nil {
		err = legacyscheme.Scheme.Convert(out, external, nil)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	gvks, _, _ := legacyscheme.Scheme.ObjectKinds(external)
	external.GetObjectKind().SetGroupVersionKind(gvks[0])
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(external)
}

// RoundTrip serves a request in-process, as the webhook's own identity.
func (s *apiServer) RoundTrip(req *http.Request) (*http.Response, error) {
	self := &user.DefaultInfo{Name: "system:admin", Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated}}
	r := req.Clone(request.WithUser(req.Context(), self))
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// config is a client configuration for this API server.
func (s *apiServer) config() *rest.Config {
	return &rest.Config{Host: "https://kube-apiserver.test", Transport: s, QPS: 2000, Burst: 4000, UserAgent: "scc-admission"}
}

func (s *apiServer) checkNoUnexpected(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.unexpected) > 0 {
		t.Errorf("unexpected requests to the API server: %v", s.unexpected)
	}
}

// ------------------------------------------------------------- webhook ----

// harness is the webhook wired as run wires it, against fake clientsets for
// SCCs and namespaces and the in-process authorization endpoints.
type harness struct {
	api      *apiServer
	kube     *k8sfake.Clientset
	security *securityfake.Clientset
	sccs     []*securityv1.SecurityContextConstraints
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	sccs := loadSCCs(t)
	// Created through the client: the fake's tracker would file objects
	// given to NewClientset under a resource guessed from the kind
	// ("securitycontextconstraintses").
	security := securityfake.NewClientset()
	for _, scc := range sccs {
		if _, err := security.SecurityV1().SecurityContextConstraints().Create(context.Background(), scc.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &harness{
		api:      newAPIServer(t),
		kube:     k8sfake.NewClientset(annotatedNamespace(nsA, 5), annotatedNamespace(nsB, 6)),
		security: security,
		sccs:     sccs,
	}
}

// webhook is the webhook as run builds it (rules: --rules-review), started.
func (h *harness) webhook(t testing.TB, rules bool) *webhook {
	t.Helper()
	config := h.api.config()
	sar, err := authorizationclient.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	var rulesFn func(context.Context, string, user.Info) ([]authorizationv1.ResourceRule, bool)
	if rules {
		rulesFn = rulesReview(config)
	}
	w, err := newWebhook(h.kube, h.security, sar, rulesFn, defaultRange, "s0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := w.start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

// poll calls cond until it is true, failing the test after 10 s.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// ref is a pointer to a copy of v.
func ref[T any](v T) *T { return &v }

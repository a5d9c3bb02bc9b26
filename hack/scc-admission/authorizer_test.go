package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccmatching"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac"
)

func TestContainsAndMatches(t *testing.T) {
	for _, c := range []struct {
		values          []string
		want            string
		contains, match bool
	}{
		{nil, "use", false, false},
		{[]string{}, "", false, false},
		{[]string{"use"}, "use", true, true},
		{[]string{"get", "use"}, "use", true, true},
		{[]string{"get"}, "use", false, false},
		{[]string{"*"}, "use", false, true},
		{[]string{"*"}, "*", true, true},
		{[]string{"us*"}, "use", false, false},
		{[]string{"USE"}, "use", false, false},
	} {
		if got := contains(c.values, c.want); got != c.contains {
			t.Errorf("contains(%q, %q) = %v, want %v", c.values, c.want, got, c.contains)
		}
		if got := matches(c.values, c.want); got != c.match {
			t.Errorf("matches(%q, %q) = %v, want %v", c.values, c.want, got, c.match)
		}
	}
}

func TestRulesAllowCases(t *testing.T) {
	q := useAttributes(authenticated("alice"), nsA, "anyuid")
	rule := func(verbs, groups, resources, names string) authorizationv1.ResourceRule {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ",")
		}
		return authorizationv1.ResourceRule{Verbs: split(verbs), APIGroups: split(groups), Resources: split(resources), ResourceNames: split(names)}
	}
	for _, c := range []struct {
		name  string
		rules []authorizationv1.ResourceRule
		want  bool
	}{
		{"no rules", nil, false},
		{"exact rule", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints", "anyuid")}, true},
		{"no resourceNames: every SCC", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints", "")}, true},
		{"resourceNames of another SCC", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints", "restricted-v2,privileged")}, false},
		{"resourceNames listing it among others", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints", "restricted-v2,anyuid")}, true},
		{"resourceNames * is a name, not a wildcard", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints", "*")}, false},
		{"verbs *", []authorizationv1.ResourceRule{rule("*", "security.openshift.io", "securitycontextconstraints", "anyuid")}, true},
		{"other verb", []authorizationv1.ResourceRule{rule("get,list,watch", "security.openshift.io", "securitycontextconstraints", "anyuid")}, false},
		{"apiGroups *", []authorizationv1.ResourceRule{rule("use", "*", "securitycontextconstraints", "")}, true},
		{"other apiGroup", []authorizationv1.ResourceRule{rule("use", "security.example.com", "securitycontextconstraints", "")}, false},
		{"core apiGroup", []authorizationv1.ResourceRule{rule("use", "", "securitycontextconstraints", "")}, false},
		{"resources *", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "*", "")}, true},
		{"other resource", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "pods", "anyuid")}, false},
		{"a subresource only", []authorizationv1.ResourceRule{rule("use", "security.openshift.io", "securitycontextconstraints/status", "")}, false},
		{"cluster-admin", []authorizationv1.ResourceRule{rule("*", "*", "*", "")}, true},
		{"a later rule matches", []authorizationv1.ResourceRule{
			rule("get", "security.openshift.io", "securitycontextconstraints", ""),
			rule("use", "security.openshift.io", "securitycontextconstraints", "anyuid"),
		}, true},
		{"each part matched by a different rule", []authorizationv1.ResourceRule{
			rule("use", "security.openshift.io", "pods", "anyuid"),
			rule("get", "security.openshift.io", "securitycontextconstraints", "anyuid"),
			rule("use", "security.openshift.io", "securitycontextconstraints", "privileged"),
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := rulesAllow(c.rules, q); got != c.want {
				t.Errorf("rulesAllow(%+v, use anyuid) = %v, want %v", c.rules, got, c.want)
			}
		})
	}
}

// TestRulesAllowIsRBAC compares rulesAllow with Kubernetes' own RBAC rule
// match (rbac.RuleAllows / rbac.RulesAllow) for every rule built from a
// vocabulary of verbs, API groups, resources and resource names, alone and
// in pairs, and every question the plugin asks.
func TestRulesAllowIsRBAC(t *testing.T) {
	verbs := [][]string{nil, {"use"}, {"*"}, {"get", "list"}, {"get", "use"}}
	groups := [][]string{nil, {securityv1.GroupName}, {"*"}, {""}, {"security.example.com", securityv1.GroupName}}
	resources := [][]string{nil, {"securitycontextconstraints"}, {"*"}, {"pods"}, {"securitycontextconstraints/status"}, {"*/use"}}
	names := [][]string{nil, {"anyuid"}, {"restricted-v2", "anyuid"}, {"privileged"}, {"*"}, {""}}
	var rules []rbacv1.PolicyRule
	for _, v := range verbs {
		for _, g := range groups {
			for _, r := range resources {
				for _, n := range names {
					rules = append(rules, rbacv1.PolicyRule{Verbs: v, APIGroups: g, Resources: r, ResourceNames: n})
				}
			}
		}
	}
	convert := func(rs ...rbacv1.PolicyRule) []authorizationv1.ResourceRule {
		var out []authorizationv1.ResourceRule
		for _, r := range rs {
			out = append(out, authorizationv1.ResourceRule{Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
		}
		return out
	}
	var questions []authorizer.AttributesRecord
	for _, scc := range []string{"anyuid", "restricted-v2", "privileged", "*"} {
		questions = append(questions, useAttributes(authenticated("alice"), nsA, scc))
	}
	allowed := 0
	for _, q := range questions {
		for i := range rules {
			want := rbac.RuleAllows(q, &rules[i])
			if got := rulesAllow(convert(rules[i]), q); got != want {
				t.Errorf("use %s, rule %+v: rulesAllow = %v, RBAC = %v", q.Name, rules[i], got, want)
			}
			if want {
				allowed++
			}
		}
		// pairs: a stride through the rules keeps this quick
		for i := 0; i < len(rules); i += 7 {
			for j := 0; j < len(rules); j += 11 {
				want := rbac.RulesAllow(q, rules[i], rules[j])
				if got := rulesAllow(convert(rules[i], rules[j]), q); got != want {
					t.Errorf("use %s, rules %+v, %+v: rulesAllow = %v, RBAC = %v", q.Name, rules[i], rules[j], got, want)
				}
			}
		}
	}
	if allowed == 0 || allowed == len(rules)*len(questions) {
		t.Fatalf("degenerate vocabulary: %d of %d allowed", allowed, len(rules)*len(questions))
	}
}

func TestUseAttributesIsThePluginsQuestion(t *testing.T) {
	u := authenticated("alice")
	q := useAttributes(u, nsA, "anyuid")
	want := authorizer.AttributesRecord{
		User: u, Verb: "use", Namespace: nsA, Name: "anyuid",
		APIGroup: "security.openshift.io", Resource: "securitycontextconstraints", ResourceRequest: true,
	}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("useAttributes = %+v, want %+v", q, want)
	}
	// The plugin's own question, as a recording authorizer sees it.
	rec := &recordingAuthorizer{}
	sccmatching.ConstraintAppliesTo(context.Background(), "anyuid", nil, nil, u, nsA, rec)
	if len(rec.asked) != 1 || key(rec.asked[0]) != key(q) {
		t.Errorf("the plugin asked %v, useAttributes is %v", rec.asked, q)
	}
}

type recordingAuthorizer struct {
	mu    sync.Mutex
	asked []authorizer.Attributes
}

func (r *recordingAuthorizer) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, a)
	return authorizer.DecisionNoOpinion, "", nil
}

// TestListedIsThePluginsCheck compares listed with the plugin's own check of
// an SCC's users and groups (sccmatching.ConstraintAppliesTo without an
// authorizer) for the default SCCs and SCCs that name service accounts and
// service account groups.
func TestListedIsThePluginsCheck(t *testing.T) {
	sccs := loadSCCs(t)
	sccs = append(sccs,
		&securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "for-team-a-sas"}, Groups: []string{"system:serviceaccounts:" + nsA}},
		&securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "for-all-sas"}, Groups: []string{"system:serviceaccounts"}},
		&securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "for-one-sa"}, Users: []string{"system:serviceaccount:" + nsA + ":builder"}},
		&securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: "for-authenticated"}, Groups: []string{user.AllAuthenticated}},
	)
	var identities []user.Info
	for _, r := range requesters() {
		identities = append(identities, r)
	}
	for _, ns := range []string{nsA, nsB, "openshift-infra", "openshift-machine-api"} {
		for _, sa := range []string{"builder", "default", "build-controller", "pv-recycler-controller", "machine-api-termination-handler"} {
			identities = append(identities, serviceaccount.UserInfo(ns, sa, ""))
		}
	}
	for _, scc := range sccs {
		for _, id := range identities {
			want := sccmatching.ConstraintAppliesTo(context.Background(), scc.Name, scc.Users, scc.Groups, id, nsA, nil)
			if got := listed(scc, id); got != want {
				t.Errorf("listed(%s, %s %v) = %v, the plugin says %v", scc.Name, id.GetName(), id.GetGroups(), got, want)
			}
		}
	}

	byName := map[string]*securityv1.SecurityContextConstraints{}
	for _, scc := range sccs {
		byName[scc.Name] = scc
	}
	for _, c := range []struct {
		scc  string
		id   user.Info
		want bool
	}{
		{"privileged", authenticated("system:admin"), true},
		{"privileged", serviceaccount.UserInfo("openshift-infra", "build-controller", ""), true},
		{"privileged", serviceaccount.UserInfo(nsA, "build-controller", ""), false},
		{"privileged", authenticated("kube-admin", user.SystemPrivilegedGroup), true},
		{"anyuid", authenticated("ivan", "system:cluster-admins"), true},
		{"anyuid", authenticated("alice"), false},
		{"restricted-v2", authenticated("alice"), false},
		{"for-team-a-sas", serviceaccount.UserInfo(nsA, "default", ""), true},
		{"for-team-a-sas", serviceaccount.UserInfo(nsB, "default", ""), false},
		{"for-all-sas", serviceaccount.UserInfo(nsB, "default", ""), true},
		{"for-all-sas", authenticated("alice"), false},
		{"for-one-sa", serviceaccount.UserInfo(nsA, "builder", ""), true},
		{"for-one-sa", serviceaccount.UserInfo(nsB, "builder", ""), false},
		{"for-authenticated", authenticated("alice"), true},
		{"for-authenticated", serviceaccount.UserInfo(nsA, "builder", ""), false},
		{"for-authenticated", anonymous, false},
	} {
		if got := listed(byName[c.scc], c.id); got != c.want {
			t.Errorf("listed(%s, %s %v) = %v, want %v", c.scc, c.id.GetName(), c.id.GetGroups(), got, c.want)
		}
	}
}

func TestKey(t *testing.T) {
	base := func() (*user.DefaultInfo, authorizer.AttributesRecord) {
		u := &user.DefaultInfo{Name: "alice", UID: "uid-1", Groups: []string{"b", "a", user.AllAuthenticated},
			Extra: map[string][]string{"x": {"1", "2"}, "y": {"3"}}}
		q := useAttributes(u, nsA, "anyuid")
		return u, q
	}
	_, q := base()
	k := key(q)

	// The same question with groups and extra keys in another order.
	same := &user.DefaultInfo{Name: "alice", UID: "uid-1", Groups: []string{user.AllAuthenticated, "a", "b"},
		Extra: map[string][]string{"y": {"3"}, "x": {"1", "2"}}}
	if got := key(useAttributes(same, nsA, "anyuid")); got != k {
		t.Errorf("key depends on the order of groups or extra: %q != %q", got, k)
	}
	// key sorts a copy: the user's own groups keep their order.
	u, q2 := base()
	_ = key(q2)
	if !reflect.DeepEqual(u.Groups, []string{"b", "a", user.AllAuthenticated}) {
		t.Errorf("key reordered the user's groups: %v", u.Groups)
	}

	changes := map[string]func(u *user.DefaultInfo, q *authorizer.AttributesRecord){
		"name":          func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Name = "bob" },
		"uid":           func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.UID = "uid-2" },
		"no uid":        func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.UID = "" },
		"a group more":  func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Groups = append(u.Groups, "c") },
		"a group less":  func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Groups = u.Groups[:2] },
		"extra value":   func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Extra["y"] = []string{"4"} },
		"extra key":     func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Extra["z"] = []string{"3"} },
		"no extra":      func(u *user.DefaultInfo, _ *authorizer.AttributesRecord) { u.Extra = nil },
		"verb":          func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Verb = "get" },
		"api group":     func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.APIGroup = "" },
		"resource":      func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Resource = "pods" },
		"subresource":   func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Subresource = "status" },
		"namespace":     func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Namespace = nsB },
		"no namespace":  func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Namespace = "" },
		"resource name": func(_ *user.DefaultInfo, q *authorizer.AttributesRecord) { q.Name = "privileged" },
	}
	seen := map[string]string{k: "base"}
	for name, change := range changes {
		u, q := base()
		change(u, &q)
		q.User = u
		got := key(q)
		if other, dup := seen[got]; dup {
			t.Errorf("key does not tell %q from %q: %q", name, other, got)
		}
		seen[got] = name
	}

	// The two identities of one request never share a key, not even when the
	// requester is the pod's own service account (it has
	// system:authenticated, a UID and extra; the plugin's SA identity has not).
	sa := podServiceAccount(nsA, "builder")
	if key(useAttributes(sa, nsA, "anyuid")) == key(useAttributes(serviceaccount.UserInfo(nsA, "builder", ""), nsA, "anyuid")) {
		t.Error("the requesting service account and the plugin's service account identity share a key")
	}
}

// TestPrefetchAgreesWithRBAC builds Kubernetes' RBAC authorizer over the
// test cluster's RBAC, uses its rule resolution (what a
// SelfSubjectRulesReview returns) as the rules and the API server's
// authorizer (system:masters, then RBAC) as the delegate, and checks, for
// every requesting user, pod service account, namespace and
// openshift.io/required-scc pin, that every `use` answer the plugin may ask
// for is the delegate's, that answers read from rules cost no delegate
// question, and that the answers are the grants of testRBAC.
func TestPrefetchAgreesWithRBAC(t *testing.T) {
	sccs := loadSCCs(t)
	all := sccNames(sccs)
	reference, resolver := serverAuthorizer(t)
	delegate := &countingAuthorizer{Authorizer: reference}
	a := &prefetchingAuthorizer{
		delegate: delegate,
		sccs:     sccLister(t, sccs),
		parallel: 8,
		rules: func(ctx context.Context, namespace string, identity user.Info) ([]authorizationv1.ResourceRule, bool) {
			return resourceRules(ctx, resolver, namespace, identity)
		},
	}
	ctx := context.Background()
	// "<namespace> <identity>" -> SCCs it may use (listed or allowed), with no pin
	usable := map[string]map[string]bool{}
	label := func(ns string, id user.Info) string {
		if hasGroup(id, user.AllAuthenticated) {
			return ns + " " + id.GetName() + " (authenticated)"
		}
		return ns + " " + id.GetName()
	}
	allows, denials := 0, 0
	for _, ns := range []string{nsA, nsB} {
		for _, requester := range requesters() {
			for _, sa := range []string{"", "builder", "default"} {
				for _, pin := range []string{"", "anyuid", customSCC, "no-such-scc"} {
					name := fmt.Sprintf("ns=%s requester=%s sa=%q pin=%q", ns, requester.Name, sa, pin)
					calls := delegate.calls.Load()
					pctx := a.prefetch(ctx, ns, requester, sa, pin)
					prefetchCalls := delegate.calls.Load() - calls

					identities := []user.Info{requester}
					if sa != "" {
						identities = append(identities, serviceaccount.UserInfo(ns, sa, ""))
					}
					covered := map[string]bool{}
					switch pin {
					case "":
						for _, n := range all {
							covered[n] = true
						}
					case "no-such-scc":
					default:
						covered[pin] = true
					}
					wantPrefetchCalls := int64(0)
					for i, id := range identities {
						k := label(ns, id)
						if pin == "" && usable[k] == nil {
							usable[k] = map[string]bool{}
						}
						for _, scc := range sccs {
							if listed(scc, id) {
								if pin == "" {
									usable[k][scc.Name] = true
								}
								continue // the plugin does not ask
							}
							if i == 1 && !hasGroup(requester, user.AllAuthenticated) && covered[scc.Name] {
								// an unauthenticated requester's service account is asked about by SubjectAccessReview
								wantPrefetchCalls++
							}
							q := useAttributes(id, ns, scc.Name)
							want, _, err := reference.Authorize(ctx, q)
							if err != nil {
								t.Fatalf("%s: reference: %v", name, err)
							}
							before := delegate.calls.Load()
							got, _, err := a.Authorize(pctx, q)
							asked := delegate.calls.Load() - before
							if err != nil || got != want {
								t.Errorf("%s: %s may use %s: got %v (%v), RBAC says %v", name, id.GetName(), scc.Name, got, err, want)
							}
							if covered[scc.Name] && asked != 0 {
								t.Errorf("%s: %s may use %s: answered by the delegate, not from the prefetch", name, id.GetName(), scc.Name)
							}
							if !covered[scc.Name] && asked != 1 {
								t.Errorf("%s: %s may use %s: not prefetched, but the delegate was asked %d times", name, id.GetName(), scc.Name, asked)
							}
							if want == authorizer.DecisionAllow {
								allows++
								if pin == "" {
									usable[k][scc.Name] = true
								}
							} else {
								denials++
							}
						}
					}
					if prefetchCalls != wantPrefetchCalls {
						t.Errorf("%s: the prefetch asked the delegate %d questions, want %d", name, prefetchCalls, wantPrefetchCalls)
					}
				}
			}
		}
	}
	if allows == 0 || denials == 0 {
		t.Fatalf("degenerate grid: %d allowed, %d denied", allows, denials)
	}

	restricted := []string{"restricted-v2", "restricted-v3"}
	with := func(names ...string) []string { return append(names, restricted...) }
	sa := func(ns, n string) string { return "system:serviceaccount:" + ns + ":" + n }
	const auth = " (authenticated)"
	want := map[string][]string{
		nsA + " alice" + auth:                 with("anyuid"),
		nsB + " alice" + auth:                 with(),
		nsA + " bob" + auth:                   with("privileged"),
		nsB + " bob" + auth:                   with(),
		nsA + " carol" + auth:                 with("nonroot-v2"),
		nsB + " carol" + auth:                 with("nonroot-v2"),
		nsA + " dave" + auth:                  all,
		nsB + " dave" + auth:                  with(),
		nsA + " erin" + auth:                  with(),
		nsA + " frank" + auth:                 with(),
		nsA + " gina" + auth:                  with(),
		nsA + " heidi" + auth:                 with(),
		nsB + " heidi" + auth:                 with("anyuid"),
		nsA + " kube-admin" + auth:            all,
		nsB + " kube-admin" + auth:            all,
		nsA + " system:admin" + auth:          with("privileged"),
		nsA + " ivan" + auth:                  with("anyuid", "privileged"),
		nsA + " " + sa(nsA, "builder") + auth: with(customSCC, "hostnetwork-v2"),
		nsB + " " + sa(nsA, "builder") + auth: with("privileged", "nonroot"),
		nsA + " " + user.Anonymous:            {},
		nsB + " " + user.Anonymous:            {},
		nsA + " " + sa(nsA, "builder"):        {customSCC, "hostnetwork-v2"},
		nsA + " " + sa(nsA, "default"):        {customSCC},
		nsB + " " + sa(nsB, "builder"):        {"anyuid", "nonroot"},
		nsB + " " + sa(nsB, "default"):        {"nonroot"},
	}
	for k, names := range want {
		set, ok := usable[k]
		if !ok {
			t.Errorf("no answers for %s", k)
			continue
		}
		got := []string{}
		for n := range set {
			got = append(got, n)
		}
		sort.Strings(got)
		names = append([]string{}, names...)
		sort.Strings(names)
		if !reflect.DeepEqual(got, names) {
			t.Errorf("%s may use %v, want %v", k, got, names)
		}
	}
}

// TestPrefetchWithoutCompleteRules: when there are no rules (--rules-review
// false) or they are incomplete, every question goes to the delegate in the
// prefetch and the plugin's questions are answered from it.
func TestPrefetchWithoutCompleteRules(t *testing.T) {
	sccs := loadSCCs(t)
	reference, resolver := serverAuthorizer(t)
	for _, mode := range []string{"no rules", "incomplete rules"} {
		t.Run(mode, func(t *testing.T) {
			delegate := &countingAuthorizer{Authorizer: reference}
			a := &prefetchingAuthorizer{delegate: delegate, sccs: sccLister(t, sccs), parallel: 4}
			rulesAsked := 0
			if mode == "incomplete rules" {
				a.rules = func(ctx context.Context, ns string, id user.Info) ([]authorizationv1.ResourceRule, bool) {
					rulesAsked++
					// everything, but incomplete: not to be used
					rules, _ := resourceRules(ctx, resolver, ns, id)
					return append(rules, authorizationv1.ResourceRule{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}), false
				}
			}
			requester := authenticated("alice")
			pctx := a.prefetch(context.Background(), nsA, requester, "builder", "")
			ids := []user.Info{requester, serviceaccount.UserInfo(nsA, "builder", "")}
			questions := int64(0)
			for _, id := range ids {
				for _, scc := range sccs {
					if !listed(scc, id) {
						questions++
					}
				}
			}
			if got := delegate.calls.Load(); got != questions {
				t.Errorf("the prefetch asked the delegate %d questions, want %d", got, questions)
			}
			if mode == "incomplete rules" && rulesAsked != 2 {
				t.Errorf("rules asked %d times, want 2 (requester and service account)", rulesAsked)
			}
			for _, id := range ids {
				for _, scc := range sccs {
					if listed(scc, id) {
						continue
					}
					q := useAttributes(id, nsA, scc.Name)
					want, wantReason, _ := reference.Authorize(context.Background(), q)
					before := delegate.calls.Load()
					got, reason, err := a.Authorize(pctx, q)
					if err != nil || got != want || reason != wantReason {
						t.Errorf("%s may use %s: got %v %q (%v), want %v %q", id.GetName(), scc.Name, got, reason, err, want, wantReason)
					}
					if delegate.calls.Load() != before {
						t.Errorf("%s may use %s: asked again", id.GetName(), scc.Name)
					}
				}
			}
		})
	}
}

// flakyAuthorizer fails the first question about each SCC, then answers.
type flakyAuthorizer struct {
	mu     sync.Mutex
	failed map[string]bool
	calls  int
}

func (f *flakyAuthorizer) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if !f.failed[a.GetName()] {
		f.failed[a.GetName()] = true
		return authorizer.DecisionNoOpinion, "", errors.New("connection refused")
	}
	return authorizer.DecisionAllow, "second time lucky", nil
}

// TestPrefetchLeavesFailedQuestionsOut: a question the delegate could not
// answer in the prefetch is asked again when the plugin asks it.
func TestPrefetchLeavesFailedQuestionsOut(t *testing.T) {
	sccs := loadSCCs(t)
	delegate := &flakyAuthorizer{failed: map[string]bool{}}
	a := &prefetchingAuthorizer{delegate: delegate, sccs: sccLister(t, sccs), parallel: 3}
	requester := authenticated("alice")
	pctx := a.prefetch(context.Background(), nsA, requester, "", "")
	asked := delegate.calls
	if asked != len(sccs) {
		t.Fatalf("prefetch asked %d questions, want %d", asked, len(sccs))
	}
	d, reason, err := a.Authorize(pctx, useAttributes(requester, nsA, "anyuid"))
	if err != nil || d != authorizer.DecisionAllow || reason != "second time lucky" || delegate.calls != asked+1 {
		t.Errorf("Authorize after a failed prefetch: %v %q %v, delegate calls %d (want %d)", d, reason, err, delegate.calls, asked+1)
	}
}

// TestPrefetchKeepsNothingBetweenRequests: the answers travel with the
// request's context only; another request asks afresh.
func TestPrefetchKeepsNothingBetweenRequests(t *testing.T) {
	sccs := loadSCCs(t)
	grant := true
	a := &prefetchingAuthorizer{
		delegate: authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
			return authorizer.DecisionNoOpinion, "", nil
		}),
		sccs:     sccLister(t, sccs),
		parallel: 1,
		rules: func(context.Context, string, user.Info) ([]authorizationv1.ResourceRule, bool) {
			if !grant {
				return nil, true
			}
			return []authorizationv1.ResourceRule{{Verbs: []string{"use"}, APIGroups: []string{securityv1.GroupName}, Resources: []string{"securitycontextconstraints"}, ResourceNames: []string{"anyuid"}}}, true
		},
	}
	alice := authenticated("alice")
	q := useAttributes(alice, nsA, "anyuid")
	first := a.prefetch(context.Background(), nsA, alice, "", "")
	grant = false
	second := a.prefetch(context.Background(), nsA, alice, "", "")
	if d, _, _ := a.Authorize(first, q); d != authorizer.DecisionAllow {
		t.Errorf("first request: %v, want allow", d)
	}
	if d, _, _ := a.Authorize(second, q); d != authorizer.DecisionNoOpinion {
		t.Errorf("second request after the grant went away: %v, want no opinion", d)
	}
	if d, _, _ := a.Authorize(context.Background(), q); d != authorizer.DecisionNoOpinion {
		t.Errorf("outside a request: %v, want the delegate's no opinion", d)
	}
}

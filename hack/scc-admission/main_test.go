package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
)

// ruleSet is a list of rules in a canonical order (RBAC resolves them in
// no particular order).
func ruleSet(t testing.TB, rules []authorizationv1.ResourceRule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		out = append(out, string(marshal(t, r)))
	}
	sort.Strings(out)
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRulesReview: rulesReview asks, impersonating the identity (name, UID,
// groups, extra), for its SelfSubjectRulesReview in the namespace, and
// returns the rules the API server resolves for the user it impersonates.
func TestRulesReview(t *testing.T) {
	api := newAPIServer(t)
	_, resolver := serverAuthorizer(t)
	rules := rulesReview(api.config())
	for _, c := range []struct {
		identity user.Info
		ns       string
		want     user.Info // as the API server sees the impersonated user
	}{
		{authenticated("alice"), nsA, authenticated("alice")},
		{authenticated("alice"), nsB, authenticated("alice")},
		{&user.DefaultInfo{Name: "heidi", UID: "uid-heidi", Groups: []string{"ops-b", user.AllAuthenticated}, Extra: map[string][]string{"example.com/scopes": {"a", "b"}, "x": {"1"}}}, nsB,
			&user.DefaultInfo{Name: "heidi", UID: "uid-heidi", Groups: []string{"ops-b", user.AllAuthenticated}, Extra: map[string][]string{"example.com/scopes": {"a", "b"}, "x": {"1"}}}},
		// The plugin's service account identity: impersonation adds system:authenticated.
		{serviceaccount.UserInfo(nsA, "builder", ""), nsA,
			&user.DefaultInfo{Name: "system:serviceaccount:team-a:builder", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team-a", user.AllAuthenticated}, Extra: map[string][]string{}}},
		{anonymous, nsA, &user.DefaultInfo{Name: user.Anonymous, Groups: []string{user.AllUnauthenticated}, Extra: map[string][]string{}}},
		{authenticated("kube-admin", user.SystemPrivilegedGroup), nsA, authenticated("kube-admin", user.SystemPrivilegedGroup)},
	} {
		api.mu.Lock()
		api.impersonatedSeen = nil
		api.mu.Unlock()
		got, complete := rules(context.Background(), c.ns, c.identity)
		if !complete {
			t.Errorf("%s in %s: incomplete", c.identity.GetName(), c.ns)
			continue
		}
		api.mu.Lock()
		seen := api.impersonatedSeen
		api.mu.Unlock()
		if len(seen) != 1 {
			t.Fatalf("%s: %d SelfSubjectRulesReviews", c.identity.GetName(), len(seen))
		}
		s := seen[0]
		extra := s.GetExtra()
		if extra == nil {
			extra = map[string][]string{}
		}
		wantExtra := c.want.GetExtra()
		if wantExtra == nil {
			wantExtra = map[string][]string{}
		}
		if s.GetName() != c.want.GetName() || s.GetUID() != c.want.GetUID() || !reflect.DeepEqual(s.GetGroups(), c.want.GetGroups()) || !reflect.DeepEqual(extra, wantExtra) {
			t.Errorf("%s: the API server saw %#v, want %#v", c.identity.GetName(), s, c.want)
		}
		want, _ := resourceRules(context.Background(), resolver, c.ns, c.want)
		if g, w := ruleSet(t, got), ruleSet(t, want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s in %s: rules\n%s\nwant\n%s", c.identity.GetName(), c.ns, g, w)
		}
	}
	api.checkNoUnexpected(t)
}

func TestRulesReviewUnusableAnswers(t *testing.T) {
	respond := func(code int, body string) *rest.Config {
		return &rest.Config{Host: "https://kube-apiserver.test", Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
		})}
	}
	var askedNamespace string
	for name, config := range map[string]*rest.Config{
		"incomplete": {Host: "https://kube-apiserver.test", Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			var review authorizationv1.SelfSubjectRulesReview
			body, _ := io.ReadAll(r.Body)
			if strings.Contains(r.Header.Get("Content-Type"), "json") {
				_ = json.Unmarshal(body, &review)
				askedNamespace = review.Spec.Namespace
			}
			out, _ := json.Marshal(authorizationv1.SelfSubjectRulesReview{
				Status: authorizationv1.SubjectRulesReviewStatus{Incomplete: true, ResourceRules: []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}},
			})
			return &http.Response{StatusCode: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(string(out))), Request: r}, nil
		})},
		"forbidden":    respond(403, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`),
		"server error": respond(500, `oops`),
	} {
		config.ContentType = "application/json"
		rules, complete := rulesReview(config)(context.Background(), nsA, authenticated("alice"))
		if complete || rules != nil {
			t.Errorf("%s: %v %v, want nothing", name, rules, complete)
		}
	}
	if askedNamespace != nsA {
		t.Errorf("asked about namespace %q, want %q", askedNamespace, nsA)
	}
}

func TestNewWebhookRejectsBadRange(t *testing.T) {
	h := newHarness(t)
	sar, err := authorizationclient.NewForConfig(h.api.config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newWebhook(h.kube, h.security, sar, nil, "1000-2000", "s0"); err == nil || !strings.Contains(err.Error(), "--uid-range") {
		t.Errorf("newWebhook with a range without block size: %v", err)
	}
}

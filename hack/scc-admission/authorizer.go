package main

import (
	"context"
	"sort"
	"strings"
	"sync"

	securityv1 "github.com/openshift/api/security/v1"
	securityv1listers "github.com/openshift/client-go/security/listers/security/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// prefetchingAuthorizer answers the plugin's `use` checks with what the
// API server says during the request being admitted, asked before the
// plugin asks.
//
// The plugin asks one `use` question per SCC and identity, one after the
// other (the requesting user, then the pod's service account): for a pod
// that no SCC admits, or for the audit annotation that names the next
// usable SCC, that is two questions for every SCC in the cluster. In
// OpenShift they go to the in-process authorizer; here each would be a
// SubjectAccessReview, and with hundreds of SCCs on a busy server they add
// up to more than the webhook's timeout. So for each identity the API server
// is asked once for its rules in the pod's namespace (SelfSubjectRulesReview
// as that identity, by impersonation: the API server's own RBAC rule
// resolution), and the `use` answers for every SCC are read from them.
// Where the rules are incomplete or cannot be had, the questions go to the
// delegating authorizer (SubjectAccessReviews), in parallel. Nothing is
// kept for another request, so an RBAC change counts for the next pod.
type prefetchingAuthorizer struct {
	delegate authorizer.Authorizer
	sccs     securityv1listers.SecurityContextConstraintsLister
	rules    func(ctx context.Context, namespace string, identity user.Info) ([]authorizationv1.ResourceRule, bool)
	parallel int
}

type decision struct {
	decision authorizer.Decision
	reason   string
}

type memo struct {
	mu        sync.Mutex
	decisions map[string]decision
}

type memoKey struct{}

func (a *prefetchingAuthorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if m, ok := ctx.Value(memoKey{}).(*memo); ok {
		m.mu.Lock()
		d, found := m.decisions[key(attrs)]
		m.mu.Unlock()
		if found {
			return d.decision, d.reason, nil
		}
	}
	return a.delegate.Authorize(ctx, attrs)
}

// prefetch asks, in parallel, whether the requesting user and the pod's
// service account may use each SCC the plugin may consider, and returns a
// context that carries the answers to Authorize. Questions that fail are
// left out: the plugin's own call asks again.
func (a *prefetchingAuthorizer) prefetch(ctx context.Context, namespace string, requester user.Info, serviceAccount, requiredSCC string) context.Context {
	identities := []user.Info{requester}
	if serviceAccount != "" {
		identities = append(identities, serviceaccount.UserInfo(namespace, serviceAccount, ""))
	}
	var sccs []*securityv1.SecurityContextConstraints
	if requiredSCC != "" {
		if scc, err := a.sccs.Get(requiredSCC); err == nil {
			sccs = append(sccs, scc)
		}
	} else {
		sccs, _ = a.sccs.List(labels.Everything())
	}
	m := &memo{decisions: map[string]decision{}}
	var questions []authorizer.AttributesRecord
	for i, identity := range identities {
		var rules []authorizationv1.ResourceRule
		complete := false
		// Impersonation always adds system:authenticated, which the plugin's
		// service account identity lacks. Its answers are still the same:
		// the plugin asks for the service account only where the requesting
		// user may not use the SCC, and an authenticated requester may use
		// everything granted to system:authenticated.
		if a.rules != nil && (i == 0 || hasGroup(requester, user.AllAuthenticated)) {
			rules, complete = a.rules(ctx, namespace, identity)
		}
		for _, scc := range sccs {
			if listed(scc, identity) {
				continue // the plugin does not ask the authorizer
			}
			q := useAttributes(identity, namespace, scc.Name)
			if !complete {
				questions = append(questions, q)
				continue
			}
			d := decision{decision: authorizer.DecisionNoOpinion}
			if rulesAllow(rules, q) {
				d = decision{decision: authorizer.DecisionAllow, reason: "allowed by the SelfSubjectRulesReview"}
			}
			m.decisions[key(q)] = d
		}
	}
	work := make(chan authorizer.AttributesRecord)
	var wg sync.WaitGroup
	for i := 0; i < a.parallel && i < len(questions); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range work {
				d, reason, err := a.delegate.Authorize(ctx, q)
				if err != nil {
					continue
				}
				m.mu.Lock()
				m.decisions[key(q)] = decision{decision: d, reason: reason}
				m.mu.Unlock()
			}
		}()
	}
	for _, q := range questions {
		work <- q
	}
	close(work)
	wg.Wait()
	return context.WithValue(ctx, memoKey{}, m)
}

// rulesAllow is RBAC's rule match (k8s.io/kubernetes/pkg/apis/rbac/v1
// ResourceMatches and friends) for a resource request without subresource.
func rulesAllow(rules []authorizationv1.ResourceRule, q authorizer.AttributesRecord) bool {
	for _, r := range rules {
		if matches(r.Verbs, q.Verb) && matches(r.APIGroups, q.APIGroup) && matches(r.Resources, q.Resource) &&
			(len(r.ResourceNames) == 0 || contains(r.ResourceNames, q.Name)) {
			return true
		}
	}
	return false
}

func matches(values []string, want string) bool {
	return contains(values, "*") || contains(values, want)
}

func contains(values []string, want string) bool {
	for _, v := range values {
		if v == want {
			return true
		}
	}
	return false
}

func hasGroup(u user.Info, group string) bool {
	return contains(u.GetGroups(), group)
}

// useAttributes is the question sccmatching.authorizedForSCC asks.
func useAttributes(identity user.Info, namespace, scc string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{
		User:            identity,
		Verb:            "use",
		Namespace:       namespace,
		Name:            scc,
		APIGroup:        securityv1.GroupName,
		Resource:        "securitycontextconstraints",
		ResourceRequest: true,
	}
}

// listed mirrors the first half of sccmatching.ConstraintAppliesTo: an SCC
// that names the user or one of its groups is usable without asking.
func listed(scc *securityv1.SecurityContextConstraints, identity user.Info) bool {
	for _, u := range scc.Users {
		if u == identity.GetName() {
			return true
		}
	}
	for _, g := range identity.GetGroups() {
		for _, sg := range scc.Groups {
			if g == sg {
				return true
			}
		}
	}
	return false
}

// key identifies a question by everything the API server's answer depends on.
func key(attrs authorizer.Attributes) string {
	u := attrs.GetUser()
	groups := append([]string(nil), u.GetGroups()...)
	sort.Strings(groups)
	var extra []string
	for k, v := range u.GetExtra() {
		extra = append(extra, k+"="+strings.Join(v, ","))
	}
	sort.Strings(extra)
	return strings.Join([]string{
		u.GetName(), u.GetUID(), strings.Join(groups, ","), strings.Join(extra, ";"),
		attrs.GetVerb(), attrs.GetAPIGroup(), attrs.GetResource(), attrs.GetSubresource(),
		attrs.GetNamespace(), attrs.GetName(),
	}, "\x00")
}

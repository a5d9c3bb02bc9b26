package main

import (
	"context"
	"sort"
	"strings"
	"sync"

	securityv1 "github.com/openshift/api/security/v1"
	securityv1listers "github.com/openshift/client-go/security/listers/security/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// prefetchingAuthorizer answers the plugin's `use` checks with
// SubjectAccessReviews (through the delegating authorizer) made for the
// request being admitted, in parallel, before the plugin asks.
//
// The plugin asks one `use` question per SCC and identity, one after the
// other (the requesting user, then the pod's service account): for a pod
// that no SCC admits, or for the audit annotation that names the next
// usable SCC, that is two questions for every SCC in the cluster. In
// OpenShift they go to the in-process authorizer; here each is a round trip
// to the API server, and with many SCCs on a busy server they add up to
// more than the webhook's timeout. The answers are the API server's own,
// asked during this request and never reused for another one, so an RBAC
// change counts for the next pod exactly as without the prefetch.
type prefetchingAuthorizer struct {
	delegate authorizer.Authorizer
	sccs     securityv1listers.SecurityContextConstraintsLister
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
	var questions []authorizer.AttributesRecord
	for _, scc := range sccs {
		for _, identity := range identities {
			if listed(scc, identity) {
				continue // the plugin does not ask the authorizer
			}
			questions = append(questions, useAttributes(identity, namespace, scc.Name))
		}
	}
	m := &memo{decisions: make(map[string]decision, len(questions))}
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

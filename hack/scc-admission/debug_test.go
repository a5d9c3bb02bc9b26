package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	v1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
)

type rtf func(*http.Request) (*http.Response, error)

func (f rtf) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDebugSSRR(t *testing.T) {
	api := newAPIServer(t)
	cfg := api.config()
	cfg.Transport = rtf(func(r *http.Request) (*http.Response, error) {
		t.Logf("%s %s %v", r.Method, r.URL, r.Header)
		resp, err := api.RoundTrip(r)
		b, _ := io.ReadAll(resp.Body)
		t.Logf("%d %v %s", resp.StatusCode, resp.Header, b)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, err
	})
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice"}
	c, _ := v1.NewForConfig(cfg)
	_, err := c.SelfSubjectRulesReviews().Create(context.Background(), &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "team-a"}}, metav1.CreateOptions{})
	t.Log(err)
}

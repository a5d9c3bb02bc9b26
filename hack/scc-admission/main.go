// Command scc-admission serves OpenShift's SecurityContextConstraints admission
// plugin (security.openshift.io/SecurityContextConstraint, from
// github.com/openshift/apiserver-library-go) as a mutating and validating
// admission webhook for pods, so that a plain kube-apiserver admits pods the
// way OpenShift's does. It also allocates the namespace annotations the plugin
// needs (openshift.io/sa.scc.uid-range, .mcs, .supplemental-groups), as
// OpenShift's cluster-policy-controller does.
//
// Endpoints (HTTPS):
//
//	POST /mutate       AdmissionReview (admission.k8s.io/v1): the plugin's Admit
//	POST /validate     AdmissionReview (admission.k8s.io/v1): the plugin's Validate
//	GET  /healthz      200 once the SCC and namespace informers have synced
//	POST /default-sccs AdmissionReview for a SecurityContextConstraints: OpenShift's SCC defaulting (sccdefaults.SetDefaults_SCC)
//	GET  /debug/sccs   the SCCs the informer holds: {"sccs":[{"name":..,"resourceVersion":..}]}
//
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/openshift/apiserver-library-go/pkg/securitycontextconstraints/sccadmission"
	securityclient "github.com/openshift/client-go/security/clientset/versioned"
	securityinformers "github.com/openshift/client-go/security/informers/externalversions"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", "", "kubeconfig of an identity that may list/watch SCCs and namespaces, patch namespaces and create SubjectAccessReviews")
		listen     = flag.String("listen", "127.0.0.1:8443", "address to serve HTTPS on")
		certFile   = flag.String("tls-cert-file", "", "serving certificate (PEM)")
		keyFile    = flag.String("tls-private-key-file", "", "serving key (PEM)")
		uidRange   = flag.String("uid-range", "1000000000-1999999999/10000", "UID range and block size the namespace allocator hands out (OpenShift's default)")
		mcsPrefix  = flag.String("mcs-prefix", "s0", "MCS level prefix of allocated labels")
		rules      = flag.Bool("rules-review", true, "answer a request's `use` questions from one SelfSubjectRulesReview per identity (false: a SubjectAccessReview per question)")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *certFile == "" || *keyFile == "" {
		fmt.Fprintln(os.Stderr, "scc-admission: --kubeconfig, --tls-cert-file and --tls-private-key-file are required")
		os.Exit(2)
	}
	if err := run(*kubeconfig, *listen, *certFile, *keyFile, *uidRange, *mcsPrefix, *rules); err != nil {
		klog.Errorf("scc-admission: %v", err)
		os.Exit(1)
	}
}

func run(kubeconfig, listen, certFile, keyFile, uidRange, mcsPrefix string, useRules bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	// Loopback, and admin requests are exempt from API Priority and Fairness:
	// the limit only has to let one pod's SubjectAccessReviews (up to two per
	// SCC, see prefetchingAuthorizer) through at once.
	config.QPS, config.Burst = 2000, 4000
	config.UserAgent = "scc-admission"
	kubeClient, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	securityClient, err := securityclient.NewForConfig(config)
	if err != nil {
		return err
	}
	var rules func(context.Context, string, user.Info) ([]authorizationv1.ResourceRule, bool)
	if useRules {
		rules = rulesReview(config)
	}

	w, err := newWebhook(kubeClient, securityClient, kubeClient.AuthorizationV1(), rules, uidRange, mcsPrefix)
	if err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	server := &http.Server{Handler: w.mux(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = server.Shutdown(shutdown)
	}()
	klog.Infof("serving OpenShift SCC admission on https://%s (informers synced)", ln.Addr())
	if err := server.ServeTLS(ln, certFile, keyFile); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// webhook is everything run serves: the plugin with its informers and
// authorizer, the HTTP handler, and the namespace allocator.
type webhook struct {
	kubeInformers     informers.SharedInformerFactory
	securityInformers securityinformers.SharedInformerFactory
	synced            []cache.InformerSynced
	handler           *handler
	allocator         *allocator
}

// newWebhook wires the plugin as OpenShift's kube-apiserver does: SCC and
// namespace informers, and an authorizer that asks `sar` (the API server's
// SubjectAccessReviews) during the request, or reads the answers from
// `rules` (SelfSubjectRulesReviews) when that is not nil.
func newWebhook(kubeClient kubernetes.Interface, securityClient securityclient.Interface, sar authorizationclient.AuthorizationV1Interface,
	rules func(context.Context, string, user.Info) ([]authorizationv1.ResourceRule, bool), uidRange, mcsPrefix string) (*webhook, error) {
	kubeInformers := informers.NewSharedInformerFactory(kubeClient, 0)
	securityInformers := securityinformers.NewSharedInformerFactory(securityClient, 0)
	sccInformer := securityInformers.Security().V1().SecurityContextConstraints()
	namespaceInformer := kubeInformers.Core().V1().Namespaces()

	// `use` is asked of the API server for every request: OpenShift's plugin
	// asks the in-process authorizer, which has no cache either. The
	// delegating authorizer's cache is set to zero TTL (an entry expires as it
	// is written), so RBAC changes take effect on the next pod. The questions
	// of one request are asked in parallel (see prefetchingAuthorizer).
	delegating, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: sar,
		AllowCacheTTL:             0,
		DenyCacheTTL:              0,
		WebhookRetryBackoff:       &wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5},
	}.New()
	if err != nil {
		return nil, fmt.Errorf("authorizer: %w", err)
	}
	authz := &prefetchingAuthorizer{delegate: delegating, sccs: sccInformer.Lister(), parallel: 32, rules: rules}

	plugin := sccadmission.NewConstraint()
	plugin.SetSecurityInformers(sccInformer)
	plugin.SetExternalKubeInformerFactory(kubeInformers)
	plugin.SetAuthorizer(authz)
	if err := plugin.ValidateInitialization(); err != nil {
		return nil, err
	}

	allocator, err := newAllocator(kubeClient, namespaceInformer, uidRange, mcsPrefix)
	if err != nil {
		return nil, err
	}
	return &webhook{
		kubeInformers:     kubeInformers,
		securityInformers: securityInformers,
		synced:            []cache.InformerSynced{sccInformer.Informer().HasSynced, namespaceInformer.Informer().HasSynced},
		handler:           &handler{plugin: plugin, authz: authz, sccLister: sccInformer.Lister()},
		allocator:         allocator,
	}, nil
}

// start starts the informers, waits until they have synced, and starts the
// allocator; all of them stop with ctx.
func (w *webhook) start(ctx context.Context) error {
	w.kubeInformers.Start(ctx.Done())
	w.securityInformers.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.synced...) {
		return errors.New("informers did not sync")
	}
	go w.allocator.run(ctx)
	return nil
}

// mux serves the endpoints listed at the top of this file.
func (w *webhook) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/mutate", w.handler.serveMutate)
	mux.HandleFunc("/validate", w.handler.serveValidate)
	mux.HandleFunc("/default-sccs", serveDefaultSCC)
	mux.HandleFunc("/debug/sccs", w.handler.serveSCCs)
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
		for _, s := range w.synced {
			if !s() {
				http.Error(rw, "informers not synced", http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = rw.Write([]byte("ok"))
	})
	return mux
}

// rulesReview asks the API server, as `identity` (impersonated by the admin),
// for its rules in a namespace: a SelfSubjectRulesReview. false when the
// review fails or the server says its rules are incomplete.
func rulesReview(config *rest.Config) func(context.Context, string, user.Info) ([]authorizationv1.ResourceRule, bool) {
	return func(ctx context.Context, namespace string, identity user.Info) ([]authorizationv1.ResourceRule, bool) {
		impersonating := rest.CopyConfig(config)
		impersonating.Impersonate = rest.ImpersonationConfig{
			UserName: identity.GetName(), UID: identity.GetUID(), Groups: identity.GetGroups(), Extra: identity.GetExtra(),
		}
		client, err := authorizationclient.NewForConfig(impersonating)
		if err != nil {
			klog.Warningf("rules of %s: %v", identity.GetName(), err)
			return nil, false
		}
		review, err := client.SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: namespace},
		}, metav1.CreateOptions{})
		if err != nil {
			klog.Warningf("rules of %s in %s: %v (asking SubjectAccessReviews instead)", identity.GetName(), namespace, err)
			return nil, false
		}
		if review.Status.Incomplete {
			return nil, false
		}
		return review.Status.ResourceRules, true
	}
}

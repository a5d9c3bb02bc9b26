// Command tekton-resolvers runs Tekton Pipelines' remote resolvers (git, hub,
// bundles, cluster, http) for the local control plane, as upstream's
// cmd/resolvers of github.com/tektoncd/pipeline (pinned in go.mod) runs them,
// with one difference: knative's health probes are off. sharedmain serves
// them on *:8080 (injection.HealthCheckDefaultPort, not configurable), where
// Tekton's controller (hack/tekton-controller) already serves its own; two
// processes of one host cannot both bind it. hack/local-cluster.sh waits for
// the cluster resolver's leader election instead.
//
// Everything else is upstream's: the same flags (-kubeconfig,
// -threads-per-controller, ...), environment (SYSTEM_NAMESPACE,
// THREADS_PER_CONTROLLER, TEKTON_HUB_API, ARTIFACT_HUB_API, METRICS_*,
// PROFILING_PORT, CONFIG_*_NAME), client rate limits, component name and
// leader election (there is no -disable-ha: one replica takes every lease).
// None of the resolvers contacts the network before a ResolutionRequest
// asks for it.
package main

import (
	"flag"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/tektoncd/pipeline/pkg/apis/resolution/v1alpha1"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/bundle"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/cluster"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/framework"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/git"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/http"
	"github.com/tektoncd/pipeline/pkg/remoteresolution/resolver/hub"
	hubresolution "github.com/tektoncd/pipeline/pkg/resolution/resolver/hub"
	"k8s.io/client-go/rest"
	filteredinformerfactory "knative.dev/pkg/client/injection/kube/informers/factory/filtered"
	"knative.dev/pkg/controller"
	"knative.dev/pkg/injection"
	"knative.dev/pkg/injection/sharedmain"
	"knative.dev/pkg/signals"
)

func main() {
	if value, ok := os.LookupEnv("THREADS_PER_CONTROLLER"); ok {
		threads, err := strconv.Atoi(value)
		if err != nil {
			log.Fatalf("THREADS_PER_CONTROLLER=%q is not a number: %v", value, err)
		}
		controller.DefaultThreadsPerController = threads
	}
	flag.IntVar(&controller.DefaultThreadsPerController, "threads-per-controller",
		controller.DefaultThreadsPerController, "Threads (goroutines) to create per controller")

	// As upstream: filtered informers select by app.kubernetes.io/managed-by.
	ctx := filteredinformerfactory.WithSelectors(signals.NewContext(), v1alpha1.ManagedByLabelKey)
	ctx = sharedmain.WithHealthProbesDisabled(ctx)
	tektonHub := hubURL(os.Getenv("TEKTON_HUB_API"), "")
	artifactHub := hubURL(os.Getenv("ARTIFACT_HUB_API"), hubresolution.DefaultArtifactHubURL)

	// Parses the flags.
	cfg := injection.ParseAndGetRESTConfigOrDie()
	if cfg.QPS == 0 {
		cfg.QPS = 2 * rest.DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = rest.DefaultBurst
	}
	// Five controllers share the client.
	cfg.QPS *= 5
	cfg.Burst *= 5

	sharedmain.MainWithConfig(ctx, "controller", cfg,
		framework.NewController(ctx, &git.Resolver{}),
		framework.NewController(ctx, &hub.Resolver{TektonHubURL: tektonHub, ArtifactHubURL: artifactHub}),
		framework.NewController(ctx, &bundle.Resolver{}),
		framework.NewController(ctx, &cluster.Resolver{}),
		framework.NewController(ctx, &http.Resolver{}))
}

// hubURL is the configured hub API, else the default, without a trailing
// slash.
func hubURL(configured, fallback string) string {
	if configured == "" {
		configured = fallback
	}
	return strings.TrimSuffix(configured, "/")
}

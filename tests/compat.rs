//! The operator on an older OpenShift: the SCC CRD of OpenShift 4.18's
//! Default feature set (openshift/api `v0.0.0-20241001152557-e415140e5d5f`),
//! whose schema has no `userNamespaceLevel`. A server-side apply naming that
//! field is refused there as a whole, so the operator reads the served
//! schema from the CRD and renders for it.
//!
//! Each test runs on a private cluster (`hack/local-cluster.sh up --scc-crd
//! <release>`): the 4.18 one replaces the SCC CRD halfway, as an upgrade of
//! the cluster would. The operator runs as the real binary with the shipped
//! RBAC. OpenShift 4.16's CRD (openshift/api
//! `v0.0.0-20240522145529-93d6bda14341`, the layout before per-feature-set
//! CRDs) has the same top-level fields and gets the shorter test.

use std::time::{Duration, Instant};

use buildpolicy_api::keys::{REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::{BuildPolicy, Isolation, SecurityContextConstraints, Task};
use buildpolicy_test_support::TempNamespace;
use buildpolicy_test_support::exposition::metric_sum;
use buildpolicy_test_support::private_cluster::PrivateCluster;
use buildpolicy_test_support::process::OperatorProcess;
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, create_policy,
    delete_scope_policies, is_ready, may_use_scc, modelcar_policy, modelcar_scene,
};
use buildpolicy_test_support::{eventually, unique_name, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// For one object to reach a state; the first one also waits for the
/// operator's start and first sync.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long a converged SCC is watched for a write it should not get.
const STEADY_STATE: Duration = Duration::from_secs(15);

fn refused_as(reason: &'static str) -> impl Fn(&BuildPolicy) -> bool {
    move |policy| {
        policy
            .condition("Ready")
            .is_some_and(|c| c.status == "False" && c.reason == reason)
            && policy.status.as_ref().and_then(|s| s.observed_generation)
                == policy.metadata.generation
    }
}

async fn may_use(client: &Client, ns: &str, scc: &str) -> bool {
    let groups = [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ];
    let user = format!("system:serviceaccount:{ns}:{MODELCAR_SERVICE_ACCOUNT}");
    may_use_scc(client, &user, &groups, ns, scc).await
}

async fn counter(operator: &OperatorProcess, name: &str) -> u64 {
    // Counters are whole numbers far below 2^53.
    metric_sum(&operator.scrape().await, name, &[]).unwrap_or(0.0) as u64
}

/// Watches SCC `name` from `resource_version` for `window` and fails on any
/// change: the operator must not rewrite an SCC that is as it wants it.
async fn assert_not_rewritten(
    sccs: &Api<SecurityContextConstraints>,
    name: &str,
    resource_version: &str,
    window: Duration,
) {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(window.as_secs() as u32 + 30);
    let mut events = sccs
        .watch(&params, resource_version)
        .await
        .unwrap_or_else(|e| panic!("watching SCC {name}: {e}"))
        .boxed();
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, events.try_next()).await {
            // The window passed without an event.
            Err(_) => break,
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => continue,
            Ok(Ok(Some(event))) => panic!(
                "SCC {name} was written at steady state (resourceVersion {resource_version}): {event:?}"
            ),
            Ok(Ok(None)) => panic!("the watch of SCC {name} ended before the window did"),
            Ok(Err(e)) => panic!("watching SCC {name}: {e}"),
        }
    }
    let now = sccs.get(name).await.expect("the SCC");
    assert_eq!(
        now.resource_version().as_deref(),
        Some(resource_version),
        "SCC {name} changed during the window"
    );
}

/// A private cluster serving `release`'s SCC CRD, the ModelCar scene in two
/// namespaces (one for a host-level policy, one for a user-namespace one),
/// and the operator binary on it.
struct Compat {
    scope: String,
    release: &'static str,
    cluster: PrivateCluster,
    client: Client,
    policies: Api<BuildPolicy>,
    sccs: Api<SecurityContextConstraints>,
    host_ns: TempNamespace,
    userns_ns: TempNamespace,
    operator: OperatorProcess,
}

impl Compat {
    async fn start(release: &'static str) -> Self {
        let scope = unique_name("compat");
        let cluster = PrivateCluster::builder(&scope)
            .scc_crd(release)
            .start()
            .await;
        let client = cluster.client().await;
        let host_ns = TempNamespace::create(&client).await;
        let userns_ns = TempNamespace::create(&client).await;
        for ns in [&host_ns, &userns_ns] {
            modelcar_scene(&client, ns.name()).await;
        }
        let operator = OperatorProcess::builder(&scope)
            .kubeconfig(cluster.operator_kubeconfig().await)
            .start()
            .await;
        Self {
            policies: Api::all(client.clone()),
            sccs: Api::all(client.clone()),
            scope,
            release,
            cluster,
            client,
            host_ns,
            userns_ns,
            operator,
        }
    }

    /// The ModelCar policy becomes Ready: its SCC grants the four
    /// capabilities, without `userNamespaceLevel`, the service account may
    /// use it and the build Task is pinned. Returns the policy's name.
    async fn modelcar_is_granted(&self) -> String {
        let host = unique_name("modelcar");
        let ns = self.host_ns.name();
        create_policy(&self.client, &modelcar_policy(&self.scope, &host, ns)).await;
        let started = Instant::now();
        wait_for(&self.policies, &host, TIMEOUT, is_ready).await;
        eprintln!(
            "compat: ModelCar policy Ready on the {} schema in {:.2}s",
            self.release,
            started.elapsed().as_secs_f64()
        );
        let host_scc = owned_name(&host);
        let scc = self.sccs.get(&host_scc).await.expect("the ModelCar SCC");
        let mut capabilities = scc.allowed_capabilities.clone().unwrap_or_default();
        capabilities.sort();
        let mut wanted = BUILDAH_CAPABILITIES.map(str::to_owned).to_vec();
        wanted.sort();
        assert_eq!(capabilities, wanted);
        assert!(!scc.allow_privileged_container);
        assert_eq!(
            scc.user_namespace_level, None,
            "the {} schema has no such field",
            self.release
        );
        assert!(may_use(&self.client, ns, &host_scc).await);
        let task = Api::<Task>::namespaced(self.client.clone(), ns)
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the build Task");
        assert_eq!(
            task.annotations().get(REQUIRED_SCC_ANNOTATION),
            Some(&host_scc)
        );
        host
    }

    /// A PodUserNamespace policy is refused, naming the missing support and
    /// the way out, and gets nothing. Returns the policy's name.
    async fn pod_user_namespace_is_refused(&self) -> String {
        let userns = unique_name("userns");
        let ns = self.userns_ns.name();
        let mut policy = modelcar_policy(&self.scope, &userns, ns);
        policy.spec.isolation = Isolation::PodUserNamespace;
        create_policy(&self.client, &policy).await;
        let refused = wait_for(
            &self.policies,
            &userns,
            TIMEOUT,
            refused_as("UnsupportedByCluster"),
        )
        .await;
        let message = &refused.condition("Ready").expect("Ready").message;
        for part in [
            "spec.isolation is PodUserNamespace",
            "no pod user namespaces in SCCs",
            "no userNamespaceLevel",
            "upgrade the cluster",
            "HostUserNamespace or CRIOUserNamespace",
        ] {
            assert!(message.contains(part), "{part:?} is not in: {message}");
        }
        let userns_scc = owned_name(&userns);
        assert_eq!(
            refused.status.as_ref().and_then(|s| s.scc_name.clone()),
            None
        );
        assert!(self.sccs.get_opt(&userns_scc).await.expect("get").is_none());
        assert!(
            Api::<Role>::namespaced(self.client.clone(), ns)
                .get_opt(&userns_scc)
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .get_opt(&userns_scc)
                .await
                .expect("get")
                .is_none()
        );
        assert!(!may_use(&self.client, ns, &userns_scc).await);
        let task = Api::<Task>::namespaced(self.client.clone(), ns)
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the build Task");
        assert_eq!(task.annotations().get(REQUIRED_SCC_ANNOTATION), None);
        userns
    }

    /// Revokes every policy of the test while the operator still runs.
    async fn finish(self) {
        delete_scope_policies(&self.client, &self.scope, TIMEOUT).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_openshift_4_18_scc_schema_builds_are_granted_and_pod_user_namespaces_wait_for_the_upgrade()
 {
    let mut compat = Compat::start("4.18").await;

    // 1. The ModelCar grant and pin work on the 4.18 schema.
    let host = compat.modelcar_is_granted().await;

    // 2. At steady state its SCC is not rewritten, even when the policy is
    // reconciled: what is compared is what the 4.18 schema holds.
    let host_scc = owned_name(&host);
    let scc = compat.sccs.get(&host_scc).await.expect("the ModelCar SCC");
    let resource_version = scc.resource_version().expect("a resourceVersion");
    let operator = &compat.operator;
    let reconciles = counter(operator, "buildpolicy_reconciliations_total").await;
    compat
        .policies
        .patch(
            &host,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .expect("annotating the policy");
    let observed = assert_not_rewritten(&compat.sccs, &host_scc, &resource_version, STEADY_STATE);
    let reconciled = async {
        eventually(
            "the annotated policy to be reconciled",
            STEADY_STATE,
            || async {
                (counter(operator, "buildpolicy_reconciliations_total").await > reconciles)
                    .then_some(())
            },
        )
        .await
    };
    tokio::join!(observed, reconciled);
    assert_eq!(
        counter(operator, "buildpolicy_drift_corrections_total").await,
        0,
        "nothing drifted, so nothing is repaired"
    );

    // 3. A PodUserNamespace policy is refused and gets nothing.
    let userns = compat.pod_user_namespace_is_refused().await;

    // 4. The cluster is upgraded to today's SCC schema: without a restart,
    // the operator sees the CRD change and grants the same policy.
    let took = compat.cluster.switch_scc_crd("default").await;
    let switched = Instant::now();
    eprintln!(
        "compat: SCC CRD switched to today's release in {:.2}s",
        took.as_secs_f64()
    );
    wait_for(&compat.policies, &userns, TIMEOUT, is_ready).await;
    eprintln!(
        "compat: PodUserNamespace policy Ready {:.2}s after the switch",
        switched.elapsed().as_secs_f64()
    );
    assert!(
        compat.operator.is_running(),
        "the same operator process, not restarted"
    );
    let userns_scc = owned_name(&userns);
    let scc = compat
        .sccs
        .get(&userns_scc)
        .await
        .expect("the user-namespace SCC");
    assert_eq!(scc.user_namespace_level.as_deref(), Some("RequirePodLevel"));
    assert!(may_use(&compat.client, compat.userns_ns.name(), &userns_scc).await);
    wait_for(&compat.policies, &host, TIMEOUT, is_ready).await;

    compat.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_openshift_4_16_scc_schema_builds_are_granted_and_pod_user_namespaces_refused() {
    let compat = Compat::start("4.16").await;
    compat.modelcar_is_granted().await;
    compat.pod_user_namespace_is_refused().await;
    compat.finish().await;
}

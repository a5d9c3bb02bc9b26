//! The operator on every OpenShift a platform team runs: a compatibility
//! matrix of Kubernetes API servers and OpenShift SCC schemas, each on a
//! private cluster (`hack/local-cluster.sh up --kube <minor> --scc-crd
//! <release>`) with the operator binary and its shipped RBAC.
//!
//! Each combination installs the bundle, checks the CRD's validation
//! messages, grants the ModelCar policy, holds its SCC unwritten at steady
//! state, repairs drift, tries `PodUserNamespace` and confinement, and
//! revokes on deletion; what it saw becomes a row of README.md's
//! "Supported OpenShift versions" table (see
//! `crates/test-support/src/matrix.rs`; `hack/test.sh` checks the table).
//!
//! The SCC schemas: today's (`default`); OpenShift 4.18's Default feature
//! set (openshift/api `v0.0.0-20241001152557-e415140e5d5f`), whose schema
//! has no `userNamespaceLevel`, so that a server-side apply naming it is
//! refused as a whole and the operator renders for the served schema; and
//! OpenShift 4.16's (openshift/api `v0.0.0-20240522145529-93d6bda14341`,
//! the layout before per-feature-set CRDs, the same top-level fields). The
//! 4.18 combination also upgrades the CRD halfway, as an upgrade of the
//! cluster would.

use std::time::{Duration, Instant};

use buildpolicy_api::conditions::{self, reason};
use buildpolicy_api::keys::owned_name;
use buildpolicy_api::{BuildPolicy, Isolation, SecurityContextConstraints, Task};
use buildpolicy_test_support::matrix::{Feature, Row};
use buildpolicy_test_support::private_cluster::PrivateCluster;
use buildpolicy_test_support::process::OperatorProcess;
use buildpolicy_test_support::scc_admission::{may_use_scc, service_account_user};
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, buildah_pod,
    create_policy, delete_scope_policies, is_ready, modelcar_policy, modelcar_scene, pin_of,
    refused_as,
};
use buildpolicy_test_support::{
    TempNamespace, eventually, feed, unique_name, wait_for, wait_for_deletion,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// For one object to reach a state; the first one also waits for the
/// operator's start and first sync.
const TIMEOUT: Duration = Duration::from_secs(60);

/// How long a converged SCC is watched for a write it should not get.
const STEADY_STATE: Duration = Duration::from_secs(15);

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

/// A private cluster of one combination, the ModelCar scene in two
/// namespaces (one for a host-level policy, one for a user-namespace one),
/// the install bundle applied, and the operator binary on it; `row` collects
/// what the combination did.
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
    row: Row,
}

impl Compat {
    /// `kube`: the older API server's minor (`None`: the default one).
    async fn start(kube: Option<&str>, release: &'static str) -> Self {
        let scope = unique_name("compat");
        let mut cluster = PrivateCluster::builder(&scope).scc_crd(release);
        if let Some(minor) = kube {
            cluster = cluster.kube(minor);
        }
        let cluster = cluster.start().await;
        let client = cluster.client().await;
        let version = client
            .apiserver_version()
            .await
            .expect("the API server's /version")
            .git_version;
        if let Some(minor) = kube {
            assert!(
                version.starts_with(&format!("v{minor}.")),
                "asked for Kubernetes {minor}, the server says {version}"
            );
        }
        let mut row = Row::new(&version, release);
        // What a platform team installs: the CRD, the operator's namespace,
        // RBAC, ceiling and Deployment (no kubelet runs it here).
        cluster.apply("-f", "manifests/install.yaml");
        row.saw(Feature::Install, "yes");
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
            row,
        }
    }

    /// Whether this SCC schema declares `userNamespaceLevel`.
    fn has_user_namespace_level(&self) -> bool {
        self.release == "default"
    }

    /// A capability written with `CAP_` is refused by the CRD; the message
    /// is the rule's own `messageExpression` where the server evaluates it.
    async fn validation_messages(&mut self) {
        let mut policy = modelcar_policy(&self.scope, &unique_name("cap"), self.host_ns.name());
        policy.spec.capabilities = vec!["CAP_SYS_ADMIN".to_owned()];
        let refused = self
            .policies
            .create(&PostParams::default(), &policy)
            .await
            .expect_err("a capability written with CAP_ is refused by the CRD");
        let message = refused.to_string();
        assert!(message.contains("spec.capabilities[0]"), "{message}");
        let outcome = if message.contains("write SYS_ADMIN instead of CAP_SYS_ADMIN") {
            "yes"
        } else {
            eprintln!(
                "compat: the CRD's message on {}: {message}",
                self.row.kubernetes
            );
            "the rule's name, not its message"
        };
        self.row.saw(Feature::Validation, outcome);
    }

    /// The ModelCar policy becomes Ready: its SCC grants the four
    /// capabilities (with `userNamespaceLevel` exactly where the schema has
    /// it), the service account may use it and the build Task is pinned.
    /// Returns the policy's name.
    async fn modelcar_is_granted(&mut self) -> String {
        let host = unique_name("modelcar");
        let ns = self.host_ns.name();
        create_policy(&self.client, &modelcar_policy(&self.scope, &host, ns)).await;
        let started = Instant::now();
        wait_for(&self.policies, &host, TIMEOUT, is_ready).await;
        eprintln!(
            "compat: ModelCar policy Ready on {} with the {} SCC schema in {:.2}s",
            self.row.kubernetes,
            self.release,
            started.elapsed().as_secs_f64()
        );
        let host_scc = owned_name(&host);
        let scc = self.sccs.get(&host_scc).await.expect("the ModelCar SCC");
        assert_eq!(sorted(scc.allowed_capabilities.clone()), sorted_buildah());
        assert!(!scc.allow_privileged_container);
        let level = self
            .has_user_namespace_level()
            .then(|| "AllowHostLevel".to_owned());
        assert_eq!(
            scc.user_namespace_level, level,
            "the {} schema",
            self.release
        );
        assert!(
            may_use_scc(
                &self.client,
                &service_account_user(ns, MODELCAR_SERVICE_ACCOUNT),
                ns,
                &host_scc
            )
            .await
        );
        assert_eq!(
            build_task_pin(&self.client, ns).await.as_ref(),
            Some(&host_scc)
        );
        self.row.saw(Feature::Grant, "yes");
        host
    }

    /// At steady state the policy's SCC is not rewritten, even when the
    /// policy is reconciled: what is compared is what the schema holds.
    async fn steady_state(&mut self, host: &str) {
        let host_scc = owned_name(host);
        let scc = self.sccs.get(&host_scc).await.expect("the ModelCar SCC");
        let resource_version = scc.resource_version().expect("a resourceVersion");
        let operator = &self.operator;
        let reconciles = operator
            .counter("buildpolicy_reconciliations_total", &[])
            .await;
        self.policies
            .patch(
                host,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
            )
            .await
            .expect("annotating the policy");
        let observed = assert_not_rewritten(&self.sccs, &host_scc, &resource_version, STEADY_STATE);
        let reconciled = async {
            eventually(
                "the annotated policy to be reconciled",
                STEADY_STATE,
                || async {
                    (operator
                        .counter("buildpolicy_reconciliations_total", &[])
                        .await
                        > reconciles)
                        .then_some(())
                },
            )
            .await
        };
        tokio::join!(observed, reconciled);
        assert_eq!(
            operator
                .counter("buildpolicy_drift_corrections_total", &[])
                .await,
            0,
            "nothing drifted, so nothing is repaired"
        );
        self.row.saw(Feature::SteadyState, "yes");
    }

    /// A hand edit widening the SCC is reverted.
    async fn drift_is_repaired(&mut self, host: &str) {
        let host_scc = owned_name(host);
        let mut widened = BUILDAH_CAPABILITIES.map(str::to_owned).to_vec();
        widened.push("NET_ADMIN".to_owned());
        self.sccs
            .patch(
                &host_scc,
                &PatchParams::default(),
                &Patch::Merge(json!({"allowedCapabilities": widened})),
            )
            .await
            .expect("widening the SCC by hand");
        wait_for(
            &self.sccs,
            &host_scc,
            TIMEOUT,
            |scc: &SecurityContextConstraints| {
                sorted(scc.allowed_capabilities.clone()) == sorted_buildah()
            },
        )
        .await;
        self.row.saw(Feature::Drift, "yes");
    }

    /// A PodUserNamespace policy: granted where the schema has
    /// `userNamespaceLevel`; elsewhere refused, naming the missing support
    /// and the way out, and given nothing. Returns the policy's name.
    async fn pod_user_namespace(&mut self) -> String {
        let userns = unique_name("userns");
        let ns = self.userns_ns.name();
        let mut policy = modelcar_policy(&self.scope, &userns, ns);
        policy.spec.isolation = Isolation::PodUserNamespace;
        create_policy(&self.client, &policy).await;
        let userns_scc = owned_name(&userns);
        if self.has_user_namespace_level() {
            wait_for(&self.policies, &userns, TIMEOUT, is_ready).await;
            let scc = self.sccs.get(&userns_scc).await.expect("the SCC");
            assert_eq!(scc.user_namespace_level.as_deref(), Some("RequirePodLevel"));
            assert!(
                may_use_scc(
                    &self.client,
                    &service_account_user(ns, MODELCAR_SERVICE_ACCOUNT),
                    ns,
                    &userns_scc
                )
                .await
            );
            self.row.saw(Feature::PodUserNamespace, "yes");
            return userns;
        }
        let refused = wait_for(
            &self.policies,
            &userns,
            TIMEOUT,
            refused_as(reason::UNSUPPORTED_BY_CLUSTER),
        )
        .await;
        let message = &refused.condition(conditions::READY).expect("Ready").message;
        for part in [
            "spec.isolation is PodUserNamespace",
            "no pod user namespaces in SCCs",
            "no userNamespaceLevel",
            "upgrade the cluster",
            "HostUserNamespace or CRIOUserNamespace",
        ] {
            assert!(message.contains(part), "{part:?} is not in: {message}");
        }
        assert_eq!(
            refused.status.as_ref().and_then(|s| s.scc_name.clone()),
            None
        );
        self.holds_nothing(ns, &userns_scc).await;
        self.row.saw(
            Feature::PodUserNamespace,
            format!(
                "refused: `Ready=False`, `{}`",
                reason::UNSUPPORTED_BY_CLUSTER
            ),
        );
        userns
    }

    /// No SCC, Role, RoleBinding, `use` or pin of `scc` in `ns`.
    async fn holds_nothing(&self, ns: &str, scc: &str) {
        assert!(self.sccs.get_opt(scc).await.expect("get").is_none());
        let roles: Api<Role> = Api::namespaced(self.client.clone(), ns);
        assert!(roles.get_opt(scc).await.expect("get").is_none());
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), ns);
        assert!(bindings.get_opt(scc).await.expect("get").is_none());
        assert!(
            !may_use_scc(
                &self.client,
                &service_account_user(ns, MODELCAR_SERVICE_ACCOUNT),
                ns,
                scc
            )
            .await
        );
        assert_eq!(build_task_pin(&self.client, ns).await, None);
    }

    /// Confinement as the policy's `Confined` condition says, held to it:
    /// where it says `Enforced`, a pod pinned to the SCC that the pipeline
    /// controller did not create is refused, naming the policy; where it
    /// says it cannot confine, that pod is admitted under the SCC.
    async fn confinement(&mut self, host: &str) {
        let policy = self.policies.get(host).await.expect("the policy");
        let confined = policy
            .condition(conditions::CONFINED)
            .expect("a Confined condition")
            .clone();
        let scc = owned_name(host);
        let ns = self.host_ns.name().to_owned();
        let pod = buildah_pod(Some(&scc));
        if confined.status == "True" && confined.reason == reason::ENFORCED {
            // The API server learns the binding moments after it exists.
            let refused = eventually("the binding to be enforced", TIMEOUT, || async {
                let (admitted, said) = dry_run_create(&self.cluster, &ns, &pod);
                (!admitted).then_some(said)
            })
            .await;
            assert!(
                refused.contains(&format!("BuildPolicy {host}")),
                "{refused}"
            );
            self.row.saw(
                Feature::Confinement,
                format!("yes (`{}`)", reason::ENFORCED),
            );
        } else {
            assert_eq!(
                confined.reason,
                reason::CONFINEMENT_UNSUPPORTED,
                "{confined:?}"
            );
            let (admitted, said) = dry_run_create(&self.cluster, &ns, &pod);
            assert!(admitted, "unconfined, the pinned pod is admitted: {said}");
            assert!(
                said.contains(&format!("\"openshift.io/scc\": \"{scc}\"")),
                "{said}"
            );
            self.row.saw(
                Feature::Confinement,
                format!(
                    "no: `Confined={}`, `{}`; granted as without confinement",
                    confined.status, confined.reason
                ),
            );
        }
    }

    /// Deleting the policy revokes its SCC, RBAC and pin.
    async fn deletion_revokes(&mut self, host: &str) {
        self.policies
            .delete(host, &DeleteParams::default())
            .await
            .expect("deleting the policy");
        wait_for_deletion(&self.policies, host, TIMEOUT).await;
        self.holds_nothing(self.host_ns.name(), &owned_name(host))
            .await;
        self.row.saw(Feature::Revocation, "yes");
    }

    /// Revokes every policy of the test while the operator still runs, and
    /// records the row: the combination passed.
    async fn finish(self) {
        delete_scope_policies(&self.client, &self.scope, TIMEOUT).await;
        self.row.record();
    }
}

fn sorted(capabilities: Option<Vec<String>>) -> Vec<String> {
    let mut capabilities = capabilities.unwrap_or_default();
    capabilities.sort();
    capabilities
}

fn sorted_buildah() -> Vec<String> {
    sorted(Some(BUILDAH_CAPABILITIES.map(str::to_owned).to_vec()))
}

/// The build Task's pin.
async fn build_task_pin(client: &Client, ns: &str) -> Option<String> {
    let task = Api::<Task>::namespaced(client.clone(), ns)
        .get(MODELCAR_BUILD_TASK)
        .await
        .expect("the build Task");
    pin_of(&task).cloned()
}

/// `kubectl create --dry-run=server -o json -f -` of `object` in `ns`, as
/// the cluster's admin: whether it was admitted, and what was said.
fn dry_run_create(
    cluster: &PrivateCluster,
    ns: &str,
    object: &serde_json::Value,
) -> (bool, String) {
    let said = feed(
        cluster.kubectl().args([
            "-n",
            ns,
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ]),
        object,
    );
    (said.admitted, said.all())
}

/// Every check of one combination but deletion, in the order a platform
/// team meets them; returns the ModelCar policy's and the PodUserNamespace
/// policy's names.
async fn whole_row(compat: &mut Compat) -> (String, String) {
    compat.validation_messages().await;
    let host = compat.modelcar_is_granted().await;
    compat.steady_state(&host).await;
    compat.drift_is_repaired(&host).await;
    compat.confinement(&host).await;
    let userns = compat.pod_user_namespace().await;
    (host, userns)
}

/// OpenShift 4.14's Kubernetes (1.27) with the oldest SCC schema the module
/// proxy serves (4.16's, the same top-level fields as 4.14's): no
/// ValidatingAdmissionPolicy, no `userNamespaceLevel`.
#[tokio::test(flavor = "multi_thread")]
async fn on_kubernetes_1_27_with_the_4_16_scc_schema_builds_are_granted() {
    let mut compat = Compat::start(Some("1.27"), "4.16").await;
    let (host, _) = whole_row(&mut compat).await;
    compat.deletion_revokes(&host).await;
    compat.finish().await;
}

/// OpenShift 4.17's Kubernetes (1.30, ValidatingAdmissionPolicy GA) with
/// 4.18's Default SCC schema.
#[tokio::test(flavor = "multi_thread")]
async fn on_kubernetes_1_30_with_the_4_18_scc_schema_builds_are_granted_and_confined() {
    let mut compat = Compat::start(Some("1.30"), "4.18").await;
    let (host, _) = whole_row(&mut compat).await;
    compat.deletion_revokes(&host).await;
    compat.finish().await;
}

/// Today's Kubernetes and SCC schema: every feature.
#[tokio::test(flavor = "multi_thread")]
async fn on_todays_kubernetes_and_scc_schema_every_feature_works() {
    let mut compat = Compat::start(None, "default").await;
    let (host, _) = whole_row(&mut compat).await;
    compat.deletion_revokes(&host).await;
    compat.finish().await;
}

/// 4.18's SCC schema, then the upgrade: without a restart, the operator
/// sees the CRD change and grants the PodUserNamespace policy it refused.
#[tokio::test(flavor = "multi_thread")]
async fn on_the_openshift_4_18_scc_schema_builds_are_granted_and_pod_user_namespaces_wait_for_the_upgrade()
 {
    let mut compat = Compat::start(None, "4.18").await;
    let (host, userns) = whole_row(&mut compat).await;

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
    assert!(
        may_use_scc(
            &compat.client,
            &service_account_user(compat.userns_ns.name(), MODELCAR_SERVICE_ACCOUNT),
            compat.userns_ns.name(),
            &userns_scc
        )
        .await
    );
    let refused = compat.row.features[&Feature::PodUserNamespace].clone();
    compat.row.saw(
        Feature::PodUserNamespace,
        format!("{refused}; granted once the CRD is upgraded, without a restart"),
    );
    wait_for(&compat.policies, &host, TIMEOUT, is_ready).await;
    compat.deletion_revokes(&host).await;
    compat.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_openshift_4_16_scc_schema_builds_are_granted_and_pod_user_namespaces_refused() {
    let mut compat = Compat::start(None, "4.16").await;
    let (host, _) = whole_row(&mut compat).await;
    compat.deletion_revokes(&host).await;
    compat.finish().await;
}

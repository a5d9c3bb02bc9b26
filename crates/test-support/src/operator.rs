//! An operator for one test: the real controller, in-process, scoped by a
//! label selector to the BuildPolicies this test creates, so tests run in
//! parallel against one control plane without reconciling each other's
//! policies.

use std::sync::Arc;
use std::time::Duration;

use buildpolicy_api::BuildPolicy;
use buildpolicy_controller::{Config, Handle, Metrics};
use buildpolicy_policy::Ceiling;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Label every BuildPolicy of a test carries; its value scopes the test's operator.
pub const SCOPE_LABEL: &str = "buildpolicy.dev/test-scope";

/// Namespace and name of the operator's ServiceAccount in `config/rbac`.
pub const OPERATOR_NAMESPACE: &str = "buildpolicy-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "buildpolicy-operator";

static OPERATOR_TOKEN: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// A client that authenticates as the operator's own ServiceAccount, bound
/// to the shipped `config/rbac` (applied here), with a token from the
/// TokenRequest API: the operator under test holds exactly the rights an
/// installation gives it, not a cluster admin's.
///
/// `BUILDPOLICY_TEST_OPERATOR_AS=admin` runs it as the admin instead.
pub async fn operator_client() -> Client {
    if std::env::var("BUILDPOLICY_TEST_OPERATOR_AS").as_deref() == Ok("admin") {
        return crate::client().await;
    }
    let token = OPERATOR_TOKEN
        .get_or_init(|| async {
            crate::client().await;
            let root = crate::repo_root();
            for path in ["config/manager/namespace.yaml", "config/rbac"] {
                let mut apply = crate::kubectl();
                apply.args([
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "--field-manager=integration-tests",
                ]);
                if path.ends_with(".yaml") {
                    apply.args(["-f", &root.join(path).to_string_lossy()]);
                } else {
                    apply.args(["-k", &root.join(path).to_string_lossy()]);
                }
                let out = apply.output().expect("running kubectl");
                assert!(
                    out.status.success(),
                    "kubectl apply {path}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await
        })
        .await;
    crate::client_with_token(token).await
}

/// A two-hour token for a ServiceAccount, from the TokenRequest API.
pub async fn service_account_token(namespace: &str, name: &str) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let api: Api<ServiceAccount> = Api::namespaced(crate::client().await, namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(7200),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let response = api
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("requesting a token for {namespace}/{name}: {e}"));
    response
        .status
        .and_then(|s| s.token)
        .expect("TokenRequest returned a token")
}

/// The ceiling tests run under: the default one, except that the test
/// client (`system:masters`, as a cluster admin is) may create and change
/// listed Tasks, which many tests do to the Tasks of their own scenes. The
/// Task-edit guard itself is tested against other identities.
pub fn test_ceiling() -> Ceiling {
    let mut ceiling = Ceiling::default();
    ceiling.confinement.task_editor_groups = vec!["system:masters".to_owned()];
    ceiling
}

/// A running in-process operator, reconciling only the policies labelled
/// `SCOPE_LABEL=<scope>`.
pub struct Operator {
    pub scope: String,
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Operator {
    /// Starts an operator for `scope` with the default ceiling.
    pub async fn start(client: &Client, scope: &str) -> Self {
        Self::start_with(client, scope, test_ceiling()).await
    }

    /// Starts an operator for `scope` with `ceiling`, and waits for its caches.
    pub async fn start_with(client: &Client, scope: &str, ceiling: Ceiling) -> Self {
        Self::start_as(client, operator_client().await, scope, ceiling).await
    }

    /// Starts an operator that acts with `identity` (a client of another
    /// identity than the shipped ServiceAccount); `client` creates and
    /// deletes the test's policies.
    pub async fn start_as(
        client: &Client,
        identity: Client,
        scope: &str,
        ceiling: Ceiling,
    ) -> Self {
        Self::start_configured(client, identity, scope, ceiling, |_| {}).await
    }

    /// Starts an operator with the shipped identity and the default ceiling,
    /// with `configure` applied to its configuration (e.g. an API server
    /// that serves no ValidatingAdmissionPolicy).
    pub async fn start_with_config(
        client: &Client,
        scope: &str,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_configured(
            client,
            operator_client().await,
            scope,
            test_ceiling(),
            configure,
        )
        .await
    }

    async fn start_configured(
        client: &Client,
        identity: Client,
        scope: &str,
        ceiling: Ceiling,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config {
            ceiling,
            policy_selector: Some(format!("{SCOPE_LABEL}={scope}")),
            reporter: format!("buildpolicy-operator-test-{scope}"),
            ..Config::default()
        };
        configure(&mut config);
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handle, run) =
            buildpolicy_controller::build(identity, config, metrics.clone(), async move {
                let _ = stop_rx.await;
            });
        let task = tokio::spawn(run);
        tokio::time::timeout(Duration::from_secs(30), handle.caches.ready())
            .await
            .expect("the operator's caches did not sync within 30s");
        Self {
            scope: scope.to_owned(),
            client: client.clone(),
            metrics,
            handle,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// A BuildPolicy labelled for this operator.
    pub fn policy(
        &self,
        name: &str,
        namespace: &str,
        sa: &str,
        capabilities: &[&str],
        tasks: &[&str],
    ) -> BuildPolicy {
        let mut policy = BuildPolicy::new(
            name,
            buildpolicy_api::BuildPolicySpec {
                namespace: namespace.into(),
                service_account_name: sa.into(),
                capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
                tasks: tasks.iter().map(|t| t.to_string()).collect(),
                isolation: Default::default(),
                task_digests: Default::default(),
            },
        );
        policy
            .labels_mut()
            .insert(SCOPE_LABEL.into(), self.scope.clone());
        policy
    }

    /// Creates a policy built with [`Operator::policy`].
    pub async fn create(&self, policy: &BuildPolicy) -> BuildPolicy {
        Api::<BuildPolicy>::all(self.client.clone())
            .create(&PostParams::default(), policy)
            .await
            .unwrap_or_else(|e| panic!("creating BuildPolicy {}: {e}", policy.name_any()))
    }

    /// Changes the ceiling of the running operator, as editing its ceiling
    /// file does: every policy is re-validated.
    pub fn set_ceiling(&self, ceiling: Ceiling) {
        self.handle.ceiling.send_replace(ceiling);
    }

    /// Stops reconciling (the caches and watches end too).
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Deletes every policy of this scope and waits until the operator has
    /// revoked them: each policy is gone (its finalizer removed), and so are
    /// its SCC, its Role and RoleBinding, its admission-policy binding and
    /// its pin on every Task of its namespace. Then stops. Tests call it at
    /// the end so no policy or grant outlives its test.
    ///
    /// # Panics
    ///
    /// When a policy or any of its grants is still there after 30 s (a
    /// stuck finalizer, a revocation that left something behind).
    pub async fn delete_policies_and_stop(mut self) {
        let api: Api<BuildPolicy> = Api::all(self.client.clone());
        let selector = ListParams::default().labels(&format!("{SCOPE_LABEL}={}", self.scope));
        let policies = api
            .list(&selector)
            .await
            .unwrap_or_else(|e| panic!("listing the BuildPolicies of scope {}: {e}", self.scope))
            .items;
        let timeout = Duration::from_secs(30);
        crate::scene::delete_scope_policies(&self.client, &self.scope, timeout).await;
        let deadline = tokio::time::Instant::now() + timeout;
        for policy in &policies {
            loop {
                let left = leftovers(&self.client, policy).await;
                if left.is_empty() {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "BuildPolicy {} is gone, but not its grant after {timeout:?}: {}",
                    policy.name_any(),
                    left.join(", ")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.shutdown().await;
    }
}

/// The API server's answer, `None` when the resource type does not exist
/// (no Tekton, so nothing pinned).
///
/// # Panics
///
/// On any other error: a leftover check that cannot look must not say
/// "nothing left".
fn answered<T>(result: kube::Result<T>, what: &str) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(error) => panic!("checking for leftovers: {what}: {error}"),
    }
}

/// What of `policy`'s grant still exists: its SCC (labelled for it or
/// owned by it), its entry in the admission rules, Roles and RoleBindings labelled for it,
/// Tasks still carrying its pin (the operator labels the Tasks it pins).
pub async fn leftovers(client: &Client, policy: &BuildPolicy) -> Vec<String> {
    use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name};
    use buildpolicy_api::{SecurityContextConstraints, Task};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let name = policy.name_any();
    let ns = &policy.spec.namespace;
    let scc = owned_name(&name);
    let labelled = ListParams::default().labels(&format!("{POLICY_LABEL}={name}"));
    // An object of that name that is neither labelled for the policy nor
    // owned by it is someone else's (a squatter the operator left alone).
    let uid = policy.metadata.uid.clone();
    let ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.labels.as_ref().and_then(|l| l.get(POLICY_LABEL)) == Some(&name)
            || meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(&o.uid) == uid.as_ref())
    };
    let mut left = Vec::new();
    if let Some(o) = answered(
        Api::<SecurityContextConstraints>::all(client.clone())
            .get_opt(&scc)
            .await,
        "reading the SCC",
    )
    .flatten()
        && ours(&o.metadata)
    {
        left.push(format!("SecurityContextConstraints {scc}"));
    }
    if let Some(held) = admission_entry(client, &name).await {
        left.push(format!(
            "its entry in ValidatingAdmissionPolicy {}",
            held.shard
        ));
    }
    if let Some(roles) = answered(
        Api::<Role>::namespaced(client.clone(), ns)
            .list(&labelled)
            .await,
        "listing Roles",
    ) {
        left.extend(
            roles
                .items
                .iter()
                .map(|r| format!("Role {ns}/{}", r.name_any())),
        );
    }
    if let Some(bindings) = answered(
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .list(&labelled)
            .await,
        "listing RoleBindings",
    ) {
        left.extend(
            bindings
                .items
                .iter()
                .map(|b| format!("RoleBinding {ns}/{}", b.name_any())),
        );
    }
    // The operator's pin carries its label; a copy of the annotation that
    // someone else wrote is theirs, and stays.
    if let Some(tasks) = answered(
        Api::<Task>::namespaced(client.clone(), ns)
            .list(&labelled)
            .await,
        "listing Tasks",
    ) {
        left.extend(tasks.items.iter().map(|t| {
            let pin = t.annotations().get(REQUIRED_SCC_ANNOTATION);
            format!("the pin on Task {ns}/{} ({pin:?})", t.name_any())
        }));
    }
    left
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where the admission rules hold one policy.
#[derive(Debug, Clone)]
pub struct AdmissionEntry {
    /// The shard: its ValidatingAdmissionPolicy and binding have this name.
    pub shard: String,
    pub namespace: String,
    pub entry: buildpolicy_policy::confinement::Entry,
    /// The shard's binding, if it exists.
    pub binding:
        Option<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>,
}

/// The shard of the admission rules that holds `policy`, read from the API
/// server (every ValidatingAdmissionPolicy the operator manages).
///
/// # Panics
///
/// When the API server cannot list them.
pub async fn admission_entry(client: &Client, policy: &str) -> Option<AdmissionEntry> {
    use buildpolicy_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    use buildpolicy_policy::confinement::{find, live_entries};
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let shards = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .list(&managed)
        .await
        .unwrap_or_else(|e| panic!("listing the admission rules: {e}"));
    for shard in shards.items {
        let Some(entries) = live_entries(&shard) else {
            continue;
        };
        if let Some((namespace, entry)) = find(&entries, policy) {
            let name = shard.name_any();
            let binding = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                .get_opt(&name)
                .await
                .unwrap_or_else(|e| panic!("reading binding {name}: {e}"));
            return Some(AdmissionEntry {
                shard: name,
                namespace: namespace.to_owned(),
                entry: entry.clone(),
                binding,
            });
        }
    }
    None
}

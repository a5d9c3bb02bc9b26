//! An operator for one test: the real controller, in-process, scoped by a
//! label selector to the BuildPolicies this test creates, so tests run in
//! parallel against one control plane without reconciling each other's
//! policies.

use std::sync::Arc;
use std::time::Duration;

use buildpolicy_api::BuildPolicy;
use buildpolicy_controller::{Config, Handle, Metrics};
use buildpolicy_policy::Ceiling;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Label every BuildPolicy of a test carries; its value scopes the test's operator.
pub const SCOPE_LABEL: &str = "buildpolicy.dev/test-scope";

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
        Self::start_with(client, scope, Ceiling::default()).await
    }

    /// Starts an operator for `scope` with `ceiling`, and waits for its caches.
    pub async fn start_with(client: &Client, scope: &str, ceiling: Ceiling) -> Self {
        let config = Config {
            ceiling,
            policy_selector: Some(format!("{SCOPE_LABEL}={scope}")),
            reporter: format!("buildpolicy-operator-test-{scope}"),
            ..Config::default()
        };
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handle, run) =
            buildpolicy_controller::build(client.clone(), config, metrics.clone(), async move {
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
    /// revoked them (their finalizer is gone), then stops. Tests call it at
    /// the end so no policy outlives its test.
    pub async fn delete_policies_and_stop(mut self) {
        let api: Api<BuildPolicy> = Api::all(self.client.clone());
        let selector = ListParams::default().labels(&format!("{SCOPE_LABEL}={}", self.scope));
        let _ = api
            .delete_collection(&DeleteParams::default(), &selector)
            .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = api
                .list(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                eprintln!(
                    "warning: {left} BuildPolicies of scope {} still exist after 30s",
                    self.scope
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shutdown().await;
    }
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

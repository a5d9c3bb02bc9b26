//! Wiring: the watches that feed the caches, how their events map back to
//! policies, and the kube-runtime `Controller` that runs reconciles.

use std::sync::Arc;

use buildpolicy_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_PREFIX, POLICY_LABEL};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use futures::{Future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info};

use crate::caches::Caches;
use crate::context::{Config, Context};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};

/// A cache and the stream of objects that change in it (applied or deleted).
fn cached<K, S>(stream: S) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (reader, writer) = reflector::store();
    // managedFields are dropped: they are the bulk of most objects and
    // nothing here reads them.
    let stream = stream
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

fn managed_selector() -> watcher::Config {
    watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
}

fn policy_of_label<K: Resource>(object: &K) -> Option<ObjectRef<BuildPolicy>> {
    object.meta().labels.as_ref()?.get(POLICY_LABEL).map(|p| ObjectRef::new(p))
}

/// Policies whose spec matches `predicate`, as references.
fn policies_where(
    policies: &Store<BuildPolicy>,
    predicate: impl Fn(&BuildPolicy) -> bool,
) -> Vec<ObjectRef<BuildPolicy>> {
    policies.state().iter().filter(|p| predicate(p)).map(|p| ObjectRef::from_obj(p.as_ref())).collect()
}

/// A running controller's handles, for `main` and for tests.
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
}

/// Builds the controller. The returned future runs it until `shutdown`
/// resolves; the handle exposes its metrics and caches (for `/readyz`).
pub fn build(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> (Handle, impl Future<Output = ()> + Send) {
    let policy_watch = match &config.policy_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    let (policies_reader, policies_writer) = reflector::store();
    let policy_stream = watcher(Api::<BuildPolicy>::all(client.clone()), policy_watch)
        .default_backoff()
        .modify(|p: &mut BuildPolicy| p.metadata.managed_fields = None)
        .reflect(policies_writer)
        .applied_objects();

    let (sccs, scc_stream) =
        cached(watcher(Api::<SecurityContextConstraints>::all(client.clone()), watcher::Config::default()));
    let (roles, role_stream) = cached(watcher(Api::<Role>::all(client.clone()), managed_selector()));
    let (role_bindings, binding_stream) = cached(watcher(Api::<RoleBinding>::all(client.clone()), managed_selector()));
    let (tasks, task_stream) =
        cached(watcher(Api::<PartialObjectMeta<Task>>::all(client.clone()), watcher::Config::default()));
    let (namespaces, namespace_stream) =
        cached(watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default()));
    let (service_accounts, sa_stream) =
        cached(watcher(Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()), watcher::Config::default()));

    let caches = Caches {
        policies: policies_reader.clone(),
        sccs,
        roles,
        role_bindings,
        tasks,
        namespaces,
        service_accounts,
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter { controller: config.reporter.clone(), instance: std::env::var("POD_NAME").ok() },
    );
    let ctx = Arc::new(Context { client, recorder, metrics: metrics.clone(), config, caches: caches.clone() });

    let by_task = policies_reader.clone();
    let by_namespace = policies_reader.clone();
    let by_sa = policies_reader.clone();
    let controller = Controller::for_stream(policy_stream, policies_reader)
        .with_config(ControllerConfig::default().concurrency(16))
        .watches_stream(scc_stream, |scc: SecurityContextConstraints| {
            scc.name_any().strip_prefix(NAME_PREFIX).map(ObjectRef::new)
        })
        .watches_stream(role_stream, |role: Role| policy_of_label(&role))
        .watches_stream(binding_stream, |binding: RoleBinding| policy_of_label(&binding))
        .watches_stream(task_stream, move |task| {
            let (ns, name) = (task.namespace().unwrap_or_default(), task.name_any());
            let mut refs =
                policies_where(&by_task, |p| p.spec.namespace == ns && p.spec.tasks.iter().any(|t| *t == name));
            refs.extend(policy_of_label(&task));
            refs
        })
        .watches_stream(namespace_stream, move |namespace| {
            let name = namespace.name_any();
            policies_where(&by_namespace, |p| p.spec.namespace == name)
        })
        .watches_stream(sa_stream, move |sa| {
            let (ns, name) = (sa.namespace().unwrap_or_default(), sa.name_any());
            policies_where(&by_sa, |p| p.spec.namespace == ns && p.spec.service_account_name == name)
        })
        .graceful_shutdown_on(shutdown);

    let run = async move {
        info!("controller started");
        controller
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                match result {
                    Ok((policy, _)) => debug!(policy = %policy.name, "reconciled"),
                    Err(error) => debug!(%error, "reconcile did not run"),
                }
            })
            .await;
        info!("controller stopped");
    };
    (Handle { metrics, caches }, run)
}

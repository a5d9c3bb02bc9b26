//! Wiring: the watches that feed the caches, how their events map back to
//! policies, and the kube-runtime `Controller` that runs reconciles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use buildpolicy_api::keys::{
    FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_PREFIX, POLICY_LABEL, ownership,
};
use buildpolicy_api::tekton::TASK_LABEL;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task, TaskRun, scc};
use buildpolicy_policy::Ceiling;
use buildpolicy_policy::admission::namespace::ALLOCATION_ANNOTATIONS;
use buildpolicy_policy::rbac::grants_scc_use;
use buildpolicy_policy::render::{PIN_ANNOTATION_KEYS, applied_annotations};
use futures::stream::BoxStream;
use futures::{Future, Stream, StreamExt};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{UnboundedReceiverStream, WatchStream};
use tracing::{debug, info, warn};

use crate::caches::Caches;
use crate::confinement::{Confiner, Written};
use crate::context::{Config, Context};
use crate::health::Health;
use crate::index::{self, Indexed, Key, Keys, no_keys};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};

/// Keeps the watch tasks of one controller alive, and ends them with it.
struct WatchTasks(Vec<JoinHandle<()>>);

impl Drop for WatchTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The watch tasks being built, where they report a re-list, their
/// synced flags (for [`Caches::ready`]) and their health.
struct Watches {
    client: Client,
    tasks: Vec<JoinHandle<()>>,
    relisted: mpsc::UnboundedSender<()>,
    synced: Vec<tokio::sync::watch::Receiver<bool>>,
    health: Health,
}

impl Watches {
    /// [`cached`], with its synced flag kept for [`Caches::ready`].
    fn cache<K, S>(
        &mut self,
        stream: S,
        include_deleted: bool,
        prune: fn(&mut K),
        keys: Keys<K>,
    ) -> (
        Indexed<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static + use<K, S>,
    )
    where
        K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let (cache, synced, stream) = cached(stream, include_deleted, prune, keys, never, self);
        self.synced.push(synced);
        (cache, stream)
    }

    /// [`Watches::cache`] of a watch of every `K` in the cluster, filtered
    /// by `config`, whose deletions are passed on.
    fn all<K>(
        &mut self,
        config: watcher::Config,
        prune: fn(&mut K),
        keys: Keys<K>,
    ) -> (
        Indexed<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static + use<K>,
    )
    where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let stream = watcher(Api::<K>::all(self.client.clone()), config);
        self.cache(stream, true, prune, keys)
    }

    /// [`Watches::all`] when `served`; otherwise an empty cache that counts
    /// as synced and a stream that never yields.
    fn all_if_served<K>(
        &mut self,
        served: bool,
        config: watcher::Config,
        keys: Keys<K>,
    ) -> (Indexed<K>, BoxStream<'static, Result<K, watcher::Error>>)
    where
        K: Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        if served {
            let (cache, stream) = self.all(config, keep_all, keys);
            (cache, stream.boxed())
        } else {
            let (store, _writer) = reflector::store();
            (
                Indexed::new(store, keys),
                futures::stream::pending().boxed(),
            )
        }
    }
}

fn never(_: &watcher::Error) -> bool {
    false
}

/// A cache fed by its own task: the cache with its index (by `keys`), a flag
/// that turns true once the cache holds a full list, and the stream of
/// objects that change in it.
///
/// The watch runs apart from the controller so that the caches fill even
/// while the controller applies backpressure (a reconcile waiting for the
/// caches would otherwise starve the very stream it waits for). Readiness is
/// a `watch` channel because any number of tasks may wait on it.
///
/// Errors for which `tolerated` is true (an optional permission) do not
/// count against the watch's health.
fn cached<K, S>(
    stream: S,
    include_deleted: bool,
    prune: fn(&mut K),
    keys: Keys<K>,
    tolerated: fn(&watcher::Error) -> bool,
    watches: &mut Watches,
) -> (
    Indexed<K>,
    tokio::sync::watch::Receiver<bool>,
    // The stream borrows nothing: `watches` is free again for the next cache.
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static + use<K, S>,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let (reader, writer) = reflector::store();
    let cache = Indexed::new(reader, keys);
    let index = cache.clone();
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let (tx, rx) = mpsc::unbounded_channel();
    // managedFields and kubectl's last-applied copy are dropped: they are
    // the bulk of most objects and nothing here reads them (`prune` may
    // keep what it needs first).
    let stream = stream
        .default_backoff()
        .modify(move |o: &mut K| {
            prune(o);
            let meta = o.meta_mut();
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.remove(LAST_APPLIED);
            }
            meta.managed_fields = meta.managed_fields.take().and_then(|entries| {
                let kept: Vec<_> = entries.into_iter().filter(is_kept_entry).collect();
                (!kept.is_empty()).then_some(kept)
            });
        })
        .reflect(writer);
    let relisted = watches.relisted.clone();
    let health = watches.health.watch_started(&K::kind(&()));
    watches.tasks.push(tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(event) = &event {
                health.ok();
                // The cache has taken the event in (`reflect`); its index
                // follows before any policy hears of it.
                index.observe(event);
            }
            let item = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => Ok(o),
                Ok(watcher::Event::Delete(o)) if include_deleted => Ok(o),
                Ok(watcher::Event::InitDone) => {
                    health.synced();
                    // A list after the first one follows a broken watch:
                    // whatever was deleted meanwhile left no Delete event,
                    // so every policy takes a look.
                    if synced_tx.send_replace(true) {
                        info!(kind = %K::kind(&()), "watch re-listed: every policy takes a look");
                        let _ = relisted.send(());
                    }
                    continue;
                }
                Ok(_) => continue,
                // The watch retries by itself (`default_backoff`). Passing
                // the error on would pause the Controller's triggers, every
                // watch's at once, for a backoff per error: after an API
                // server restart, minutes of queued errors and no reconcile.
                Err(error) => {
                    if tolerated(&error) {
                        health.synced();
                    } else {
                        warn!(%error, kind = %K::kind(&()), "watch failed; retrying");
                        health.failed(&error);
                    }
                    continue;
                }
            };
            if tx.send(item).is_err() {
                break;
            }
        }
    }));
    (cache, synced_rx, UnboundedReceiverStream::new(rx))
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Marks the one managedFields entry a cache keeps (see [`keep_own_annotations`]).
const KEPT: &str = "buildpolicy.dev/kept";

fn is_kept_entry(entry: &ManagedFieldsEntry) -> bool {
    entry.subresource.as_deref() == Some(KEPT)
}

/// Tasks: keep which annotation keys the operator's own apply holds, so a
/// pin of an earlier `spec.isolation` mode can be told apart from
/// annotations others set ([`applied_annotations_kept`] reads them). They
/// are kept as one managedFields entry marked [`KEPT`] whose `fieldsV1` is
/// the list of keys, where the entry as the server has it nests three JSON
/// maps, each an allocation of its own, for every pinned Task.
fn keep_own_annotations<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    let applied = applied_annotations(meta, FIELD_MANAGER);
    meta.managed_fields = (!applied.is_empty()).then(|| {
        vec![ManagedFieldsEntry {
            subresource: Some(KEPT.to_owned()),
            fields_v1: Some(FieldsV1(serde_json::Value::Array(
                applied.into_iter().map(serde_json::Value::String).collect(),
            ))),
            ..ManagedFieldsEntry::default()
        }]
    });
}

/// The annotation keys the operator's own apply holds on a Task of the
/// cache, as [`keep_own_annotations`] kept them.
pub(crate) fn applied_annotations_kept(meta: &ObjectMeta) -> BTreeSet<String> {
    let kept = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| is_kept_entry(e));
    kept.filter_map(|e| e.fields_v1.as_ref()?.0.as_array())
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect()
}

fn keep_all<K>(_: &mut K) {}

/// Tasks, thousands of them: what a pin is compared with (the policy label,
/// the annotations a pin sets, the operator's own managedFields entry) and
/// the resourceVersion the Task checks go by. The rest of their metadata
/// (catalog labels and annotations, most of it) is dropped.
fn prune_task(task: &mut PartialObjectMeta<Task>) {
    keep_own_annotations(task);
    task.types = None;
    let meta = &mut task.metadata;
    retain_keys(&mut meta.labels, |k| k == POLICY_LABEL);
    retain_keys(&mut meta.annotations, |k| PIN_ANNOTATION_KEYS.contains(&k));
    forget_bookkeeping(meta);
}

/// Namespaces: their name and the allocation annotations.
fn prune_namespace(namespace: &mut PartialObjectMeta<Namespace>) {
    namespace.types = None;
    let meta = &mut namespace.metadata;
    meta.labels = None;
    retain_keys(&mut meta.annotations, |k| {
        ALLOCATION_ANNOTATIONS.contains(&k)
    });
    forget_bookkeeping(meta);
}

/// Service accounts: their name.
fn prune_service_account(account: &mut PartialObjectMeta<ServiceAccount>) {
    account.types = None;
    let meta = &mut account.metadata;
    meta.labels = None;
    meta.annotations = None;
    forget_bookkeeping(meta);
}

/// What no reader of a metadata cache looks at.
fn forget_bookkeeping(meta: &mut ObjectMeta) {
    meta.uid = None;
    meta.creation_timestamp = None;
    meta.generation = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

/// Keeps the entries whose key `keep` accepts; none left is no map.
fn retain_keys(map: &mut Option<BTreeMap<String, String>>, keep: impl Fn(&str) -> bool) {
    if let Some(entries) = map.as_mut() {
        entries.retain(|k, _| keep(k));
        if entries.is_empty() {
            *map = None;
        }
    }
}

/// TaskRuns: the type already dropped all but the Task, pod and condition;
/// of the metadata only the labels that map a run to its policy stay.
fn prune_task_run(run: &mut TaskRun) {
    let meta = &mut run.metadata;
    meta.annotations = None;
    meta.owner_references = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| k == POLICY_LABEL || k == TASK_LABEL);
    }
}

/// Counts TaskRuns whose pod admission refused, once each, and only those
/// refused since this controller started (a restart does not count old ones
/// again).
struct RefusalCounter {
    metrics: Arc<Metrics>,
    since: k8s_openapi::jiff::Timestamp,
    counted: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RefusalCounter {
    fn observe(&self, run: &TaskRun) {
        if run.pod_refused().is_none() {
            return;
        }
        let when = run
            .succeeded()
            .and_then(|c| c.last_transition_time.as_deref())
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
        // Conditions carry whole seconds.
        if when.is_none_or(|t| t.as_second() < self.since.as_second()) {
            return;
        }
        let uid = run.metadata.uid.clone().unwrap_or_default();
        if self
            .counted
            .lock()
            .expect("refusal counter lock")
            .insert(uid)
        {
            self.metrics.build_refused();
        }
    }
}

fn is_managed<K: Resource>(object: &K) -> bool {
    ownership(object).managed().is_some()
}

/// Rules that cannot grant SCC `use` are never read (except on the Roles the
/// operator manages, whose rules it compares in full).
fn prune_rules(rules: &mut Option<Vec<PolicyRule>>) {
    if let Some(rules) = rules.as_mut() {
        rules.retain(grants_scc_use);
    }
}

fn prune_role(role: &mut Role) {
    if !is_managed(role) {
        prune_rules(&mut role.rules);
        role.metadata.annotations = None;
    }
}

fn prune_cluster_role(role: &mut ClusterRole) {
    prune_rules(&mut role.rules);
    role.aggregation_rule = None;
    role.metadata.annotations = None;
}

fn prune_binding<K: Resource>(binding: &mut K) {
    if !is_managed(binding) {
        binding.meta_mut().annotations = None;
    }
}

/// The SCC CRD: only the names of each version's top-level fields are read
/// (the full schema, with its descriptions, is most of the object).
fn prune_crd(crd: &mut CustomResourceDefinition) {
    crd.metadata.annotations = None;
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        *schema = JSONSchemaProps {
            properties: schema.properties.take().map(|properties| {
                properties
                    .into_keys()
                    .map(|field| (field, JSONSchemaProps::default()))
                    .collect()
            }),
            x_kubernetes_preserve_unknown_fields: schema.x_kubernetes_preserve_unknown_fields,
            ..JSONSchemaProps::default()
        };
    }
}

/// Whether a watch failed because the operator may not read what it
/// watches (no RBAC for it).
fn is_forbidden(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 403,
        watcher::Error::WatchError(status) => status.code == 403,
        _ => false,
    }
}

/// The SCC CRD's cache: its flag turns true once the CRD was listed, or
/// once the operator turns out not to be allowed to read it, so that
/// readiness never waits on an optional permission. Either way, until the
/// CRD is read the operator renders for the newest SCC schema.
fn cached_scc_crd(
    watches: &mut Watches,
) -> (
    Store<CustomResourceDefinition>,
    impl Stream<Item = Result<CustomResourceDefinition, watcher::Error>> + Send + 'static + use<>,
) {
    let (forbidden_tx, mut forbidden) = tokio::sync::watch::channel(false);
    let stream = watcher(
        Api::<CustomResourceDefinition>::all(watches.client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={}", scc::CRD_NAME)),
    )
    .inspect(move |event| {
        if let Err(error) = event
            && is_forbidden(error)
            && !forbidden_tx.send_replace(true)
        {
            warn!(
                crd = scc::CRD_NAME,
                %error,
                "cannot read the SCC CRD: assuming the newest SCC schema (grant get, list and watch on it, as config/rbac does)"
            );
        }
    });
    // Forbidden is an answer here, not a failure of the watch.
    let (cache, mut synced, stream) =
        cached(stream, true, prune_crd, no_keys, is_forbidden, watches);
    let store = (*cache).clone();
    let (settled_tx, settled) = tokio::sync::watch::channel(false);
    let listed = store.clone();
    watches.tasks.push(tokio::spawn(async move {
        tokio::select! {
            _ = synced.wait_for(|synced| *synced) => {
                if listed.get(&ObjectRef::new(scc::CRD_NAME)).is_none() {
                    warn!(crd = scc::CRD_NAME, "the SCC CRD does not exist: assuming the newest SCC schema");
                }
            }
            _ = forbidden.wait_for(|forbidden| *forbidden) => {}
        }
        settled_tx.send_replace(true);
    }));
    watches.synced.push(settled);
    (store, stream)
}

/// Fires when the SCC schema the cluster serves changes (a CRD upgrade or
/// downgrade): every policy renders its SCC anew for it.
fn scc_schema_changes(
    crd_stream: impl Stream<Item = Result<CustomResourceDefinition, watcher::Error>> + Send + 'static,
    caches: Caches,
) -> impl Stream<Item = ()> + Send + 'static {
    let mut current = caches.scc_schema();
    crd_stream.filter_map(move |_| {
        let schema = caches.scc_schema();
        let changed = schema != current;
        if changed {
            info!(
                pod_user_namespaces = schema.has_pod_user_namespaces(),
                "the SCC schema changed: rendering every policy's SCC for it"
            );
            current = schema;
        }
        futures::future::ready(changed.then_some(()))
    })
}

/// The policy an object of ours belongs to: by its label, or else by its
/// name (`buildpolicy-<policy>`), so that an object whose label was removed
/// by hand is still repaired at once, not at the next resync.
fn policy_of<K: Resource>(object: &K) -> Option<ObjectRef<BuildPolicy>> {
    policy_of_label(object).or_else(|| {
        object
            .meta()
            .name
            .as_deref()?
            .strip_prefix(NAME_PREFIX)
            .map(ObjectRef::new)
    })
}

fn policy_of_label<K: Resource>(object: &K) -> Option<ObjectRef<BuildPolicy>> {
    ownership(object).policy().map(ObjectRef::new)
}

/// The policies naming `namespace` whose spec matches `predicate`, as
/// references (from the index: as many as there are, not a scan of all).
fn policies_in(
    policies: &Indexed<BuildPolicy>,
    namespace: &str,
    predicate: impl Fn(&BuildPolicy) -> bool,
) -> Vec<ObjectRef<BuildPolicy>> {
    policies
        .under(&Key::Namespace(namespace.to_owned()))
        .iter()
        .filter(|p| p.spec.namespace == namespace && predicate(p))
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Every policy: for what concerns all of them (a ClusterRole granting SCC
/// use, the one admission policy).
/// The policies to look at after a watch event of `object`, an admission
/// policy or binding: a shard changed by someone else wakes every policy
/// whose entry it holds (or should); the writer's own writes wake nobody;
/// an object of an earlier release wakes its policy.
fn shard_changed<K>(
    ctx: &Context,
    written: &Written<K>,
    cache: &Indexed<K>,
    object: &K,
) -> Vec<ObjectRef<BuildPolicy>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + 'static,
{
    let name = object.name_any();
    if !ctx.confiner.shards.owns(&name) {
        return policy_of(object).into_iter().collect();
    }
    let cached = cache.get(&ObjectRef::from_obj(object)).is_some();
    if !written.observe(object, cached) {
        return Vec::new();
    }
    ctx.caches
        .policies
        .state()
        .iter()
        .filter(|p| ctx.confiner.shards.of(&p.name_any()) == name)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// A spawned task that stops with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn every_policy(policies: &Store<BuildPolicy>) -> Vec<ObjectRef<BuildPolicy>> {
    policies
        .state()
        .iter()
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Looks up the (pruned) rules a binding's `roleRef` points at.
#[derive(Clone)]
struct RoleRules {
    roles: Store<Role>,
    cluster_roles: Store<ClusterRole>,
}

impl RoleRules {
    /// Whether the role a binding refers to grants `use` on any SCC.
    fn grant_scc_use(
        &self,
        role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
        ns: Option<&str>,
    ) -> bool {
        let rules = match (role_ref.kind.as_str(), ns) {
            ("ClusterRole", _) => self
                .cluster_roles
                .get(&ObjectRef::new(&role_ref.name))
                .and_then(|r| r.rules.clone()),
            ("Role", Some(ns)) => self
                .roles
                .get(&ObjectRef::new(&role_ref.name).within(ns))
                .and_then(|r| r.rules.clone()),
            _ => None,
        };
        rules.iter().flatten().any(grants_scc_use)
    }
}

/// A running controller's handles, for `main` and for tests.
pub struct Handle {
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// What `/readyz` and `/healthz` report.
    pub health: Health,
    /// Sending a new ceiling re-validates every policy against it: grants
    /// now over the ceiling are revoked.
    pub ceiling: tokio::sync::watch::Sender<Ceiling>,
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
    let (relisted_tx, relisted_rx) = mpsc::unbounded_channel();
    let mut watches = Watches {
        client: client.clone(),
        tasks: Vec::new(),
        relisted: relisted_tx,
        synced: Vec::new(),
        health: Health::default(),
    };
    let (policies, policy_stream) = watches.cache(
        watcher(Api::<BuildPolicy>::all(client.clone()), policy_watch),
        false,
        keep_all,
        index::policy_keys,
    );
    let everything = watcher::Config::default;
    let (sccs, scc_stream) = watches.all(everything(), keep_all, index::scc_keys);
    let (roles, role_stream) = watches.all(everything(), prune_role, index::managed_keys);
    let (role_bindings, binding_stream) =
        watches.all(everything(), prune_binding, index::role_binding_keys);
    let (cluster_roles, cluster_role_stream) =
        watches.all(everything(), prune_cluster_role, no_keys);
    let (cluster_role_bindings, cluster_binding_stream) =
        watches.all(everything(), prune_binding, no_keys);
    let (tasks, task_stream) = watches.all(everything(), prune_task, index::labelled_keys);
    let (namespaces, namespace_stream) = watches.all(everything(), prune_namespace, no_keys);
    let (service_accounts, sa_stream) = watches.all(everything(), prune_service_account, no_keys);
    let (scc_crd, scc_crd_stream) = cached_scc_crd(&mut watches);
    // Only TaskRuns of Tasks some policy pinned: Tekton copies the Task's
    // policy label onto them. Their deletions say nothing.
    let (task_runs, task_run_stream) = watches.cache(
        watcher(
            Api::<TaskRun>::all(client.clone()),
            everything().labels(POLICY_LABEL),
        ),
        false,
        prune_task_run,
        index::labelled_keys,
    );
    // Confinement: each policy's ValidatingAdmissionPolicy and binding
    // (and a shared policy of earlier releases, to delete); nothing to
    // watch where the server lacks the API.
    let served = config.admission_policies_served;
    let (admission_policies, admission_policy_stream) = watches.all_if_served(
        served,
        everything().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        index::managed_keys,
    );
    let (admission_bindings, admission_binding_stream) = watches.all_if_served(
        served,
        everything().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        index::managed_keys,
    );

    let caches = Caches {
        policies: policies.clone(),
        sccs,
        roles: roles.clone(),
        role_bindings,
        cluster_roles: cluster_roles.clone(),
        cluster_role_bindings,
        tasks,
        namespaces,
        service_accounts,
        scc_crd,
        task_runs,
        admission_policies,
        admission_bindings,
        synced: std::mem::take(&mut watches.synced),
    };
    metrics.count_managed_objects_in(caches.clone());
    let reporter = Reporter {
        controller: config.reporter.clone(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter.clone());
    let (ceiling_tx, ceiling_rx) = tokio::sync::watch::channel(config.ceiling.clone());
    let ceiling_changes = WatchStream::from_changes(ceiling_rx.clone()).map(|_| ());
    // A new ceiling, a new SCC schema, or a cache re-listed after a broken
    // watch: look at all.
    let look_at_all = futures::stream::select(
        futures::stream::select(ceiling_changes, UnboundedReceiverStream::new(relisted_rx)),
        scc_schema_changes(scc_crd_stream, caches.clone()),
    );
    let config_selector = config.policy_selector.clone();
    let ctx = Arc::new(Context {
        client,
        recorder,
        reporter,
        metrics: metrics.clone(),
        config,
        caches: caches.clone(),
        ceiling: ceiling_rx,
        task_checks: Default::default(),
        task_contents: Default::default(),
        journal: Default::default(),
        health: watches.health.clone(),
        confiner: Confiner::new(config_selector.as_deref()),
    });

    let binding_ctx = ctx.clone();
    let policy_ctx = ctx.clone();
    let by_task = policies.clone();
    let by_binding = policies.clone();
    let by_cluster_binding = policies.clone();
    let by_cluster_role = policies.clone();
    let grants = RoleRules {
        roles: (*roles).clone(),
        cluster_roles: (*cluster_roles).clone(),
    };
    let grants_for_cluster_bindings = grants.clone();
    let by_namespace = policies.clone();
    let by_sa = policies.clone();
    let refusals = RefusalCounter {
        metrics: metrics.clone(),
        since: k8s_openapi::jiff::Timestamp::now(),
        counted: Default::default(),
    };
    let controller = Controller::for_stream(policy_stream, (*policies).clone())
        .with_config(ControllerConfig::default().concurrency(16))
        .watches_stream(scc_stream, |scc: SecurityContextConstraints| {
            scc.name_any().strip_prefix(NAME_PREFIX).map(ObjectRef::new)
        })
        .watches_stream(role_stream, |role: Role| policy_of(&role))
        // A binding that changes who may use which SCC changes the
        // preemption analysis of the policies it can concern.
        .watches_stream(binding_stream, move |binding: RoleBinding| {
            if is_managed(&binding) {
                return policy_of_label(&binding).into_iter().collect();
            }
            let ns = binding.namespace().unwrap_or_default();
            let mut refs: Vec<_> = policy_of(&binding).into_iter().collect();
            if grants.grant_scc_use(&binding.role_ref, Some(&ns)) {
                refs.extend(policies_in(&by_binding, &ns, |_| true));
            }
            refs
        })
        .watches_stream(
            cluster_binding_stream,
            move |binding: ClusterRoleBinding| {
                if !grants_for_cluster_bindings.grant_scc_use(&binding.role_ref, None) {
                    return Vec::new();
                }
                every_policy(&by_cluster_binding)
            },
        )
        .watches_stream(cluster_role_stream, move |role: ClusterRole| {
            if !role.rules.iter().flatten().any(grants_scc_use) {
                return Vec::new();
            }
            every_policy(&by_cluster_role)
        })
        .watches_stream(task_stream, move |task| {
            let (ns, name) = (task.namespace().unwrap_or_default(), task.name_any());
            let mut refs = policies_in(&by_task, &ns, |p| p.spec.tasks.contains(&name));
            refs.extend(policy_of_label(&task));
            refs
        })
        .watches_stream(namespace_stream, move |namespace| {
            let name = namespace.name_any();
            policies_in(&by_namespace, &name, |_| true)
        })
        .watches_stream(sa_stream, move |sa| {
            let (ns, name) = (sa.namespace().unwrap_or_default(), sa.name_any());
            policies_in(&by_sa, &ns, |p| p.spec.service_account_name == name)
        })
        .watches_stream(task_run_stream, move |run: TaskRun| {
            refusals.observe(&run);
            policy_of_label(&run)
        })
        // A shard changed by someone else: every policy it holds looks at
        // its rules (the writer's own writes wake nobody).
        .watches_stream(admission_binding_stream, move |binding| {
            shard_changed(
                &binding_ctx,
                &binding_ctx.confiner.bindings,
                &binding_ctx.caches.admission_bindings,
                &binding,
            )
        })
        .watches_stream(admission_policy_stream, move |policy| {
            shard_changed(
                &policy_ctx,
                &policy_ctx.confiner.policies,
                &policy_ctx.caches.admission_policies,
                &policy,
            )
        })
        .reconcile_all_on(look_at_all)
        .graceful_shutdown_on(shutdown);

    let health = watches.health.clone();
    let watch_tasks = WatchTasks(watches.tasks);
    let writer = served.then(|| tokio::spawn(Confiner::run(ctx.clone())));
    let run = async move {
        let _watch_tasks = watch_tasks;
        let _writer = writer.map(AbortOnDrop);
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
    (
        Handle {
            metrics,
            caches,
            health,
            ceiling: ceiling_tx,
        },
        run,
    )
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::Isolation;
    use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
    use buildpolicy_policy::TaskPin;
    use buildpolicy_policy::admission::NamespaceAllocation;
    use buildpolicy_policy::render::pin_annotations;
    use serde_json::json;

    use super::*;

    fn pin(isolation: Isolation) -> TaskPin {
        TaskPin {
            namespace: "team".into(),
            name: "buildah".into(),
            annotations: pin_annotations("buildpolicy-p", isolation),
            labels: BTreeMap::from([(POLICY_LABEL.to_owned(), "p".to_owned())]),
        }
    }

    /// A catalog Task the operator pinned, with `applied` the annotations
    /// its own apply holds.
    fn task(applied: serde_json::Value) -> PartialObjectMeta<Task> {
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "buildah", "namespace": "team", "uid": "u-1",
                "resourceVersion": "42", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {POLICY_LABEL: "p", "app.kubernetes.io/version": "0.9"},
                "annotations": {
                    REQUIRED_SCC_ANNOTATION: "buildpolicy-p",
                    "tekton.dev/tags": "image-build",
                    "tekton.dev/displayName": "Buildah",
                },
                "managedFields": [
                    {"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "tekton.dev/v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:annotations": applied,
                                                 "f:labels": {format!("f:{POLICY_LABEL}"): {}}}}},
                    {"manager": "kubectl", "operation": "Apply", "apiVersion": "tekton.dev/v1",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_pruned_task_compares_with_a_pin_as_the_whole_task_does() {
        // The kept keys of a Task the operator never applied to: none.
        let mut unpinned = task(json!({}));
        unpinned.metadata.managed_fields.as_mut().unwrap().remove(0);
        prune_task(&mut unpinned);
        assert!(unpinned.metadata.managed_fields.is_none());

        let own = json!({format!("f:{REQUIRED_SCC_ANNOTATION}"): {}});
        let stale = json!({
            format!("f:{REQUIRED_SCC_ANNOTATION}"): {},
            "f:io.kubernetes.cri-o.userns-mode": {},
        });
        for (applied, isolation, current) in [
            (own.clone(), Isolation::HostUserNamespace, true),
            // The operator's apply of an earlier mode still holds CRI-O's
            // annotation: not current.
            (stale, Isolation::HostUserNamespace, false),
            // The pin of another mode is missing its annotations.
            (own, Isolation::CrioUserNamespace, false),
        ] {
            let whole = task(applied);
            let mut pruned = whole.clone();
            prune_task(&mut pruned);
            let pin = pin(isolation);
            assert_eq!(pin.is_current_on(&whole.metadata), current, "{isolation:?}");
            let kept = applied_annotations_kept(&pruned.metadata);
            assert_eq!(kept, applied_annotations(&whole.metadata, FIELD_MANAGER));
            assert_eq!(
                pin.is_current_with(&pruned.metadata, &kept),
                current,
                "{isolation:?}, pruned"
            );
            assert_eq!(ownership(&pruned).policy(), Some("p"));
            let meta = &pruned.metadata;
            assert_eq!(meta.resource_version.as_deref(), Some("42"));
            assert_eq!(
                meta.annotations
                    .as_ref()
                    .map(|a| a.keys().collect::<Vec<_>>()),
                Some(vec![&REQUIRED_SCC_ANNOTATION.to_owned()])
            );
            assert_eq!(meta.labels.as_ref().map(BTreeMap::len), Some(1));
            assert!(meta.uid.is_none() && pruned.types.is_none());
        }
    }

    #[test]
    fn a_pruned_namespace_keeps_its_allocation() {
        let mut namespace: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
            "metadata": {
                "name": "team", "uid": "u-2",
                "labels": {"kubernetes.io/metadata.name": "team"},
                "annotations": {
                    "openshift.io/sa.scc.uid-range": "1000680000/10000",
                    "openshift.io/sa.scc.supplemental-groups": "1000680000/10000",
                    "openshift.io/sa.scc.mcs": "s0:c26,c5",
                    "openshift.io/description": "the team's builds",
                },
            },
        }))
        .unwrap();
        let before =
            NamespaceAllocation::from_annotations(namespace.metadata.annotations.as_ref().unwrap());
        prune_namespace(&mut namespace);
        let annotations = namespace.metadata.annotations.as_ref().unwrap();
        assert_eq!(NamespaceAllocation::from_annotations(annotations), before);
        assert!(before.is_ok());
        assert_eq!(annotations.len(), 3);
        assert!(namespace.metadata.labels.is_none());
        assert_eq!(namespace.metadata.name.as_deref(), Some("team"));
    }
}

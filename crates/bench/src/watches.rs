//! The watches that feed the [`Tracker`]: SCCs, Roles, RoleBindings and
//! Tasks labelled `buildpolicy.dev/policy`, and BuildPolicies. Roles,
//! RoleBindings and Tasks are watched as metadata, which holds all that is
//! read of them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use buildpolicy_api::conditions::READY;
use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use futures::{Stream, StreamExt};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::logging::log;
use crate::tracker::{Part, Seen, SeenObject, Tracker};

/// How long the first list of a watch may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The running watches; they stop when this drops.
pub struct Watches {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the five watches; returns once each has delivered its first list.
///
/// # Errors
///
/// When a watch has not listed within two minutes.
pub async fn start(client: &Client, tracker: &Arc<Tracker>) -> anyhow::Result<Watches> {
    let labelled = watcher::Config::default().labels(POLICY_LABEL);
    let mut watches = Watches { tasks: Vec::new() };
    let mut synced = Vec::new();

    let t = tracker.clone();
    synced.push(watches.spawn(
        "SecurityContextConstraints",
        watcher::watcher(
            Api::<SecurityContextConstraints>::all(client.clone()),
            labelled.clone(),
        ),
        move |scc: &SecurityContextConstraints, present, at| {
            t.part(policy_of(scc), Part::Scc, present, at);
            if present {
                t.saw(Seen {
                    object: SeenObject::Scc {
                        name: scc.name_any(),
                        allowed_capabilities: scc.allowed_capabilities.clone(),
                    },
                    resource_version: resource_version(scc),
                    at,
                });
            }
        },
    ));
    let t = tracker.clone();
    synced.push(watches.spawn(
        "Role",
        watcher::watcher(
            Api::<PartialObjectMeta<Role>>::all(client.clone()),
            labelled.clone(),
        ),
        move |role: &PartialObjectMeta<Role>, present, at| {
            t.part(policy_of(role), Part::Role, present, at);
        },
    ));
    let t = tracker.clone();
    synced.push(watches.spawn(
        "RoleBinding",
        watcher::watcher(
            Api::<PartialObjectMeta<RoleBinding>>::all(client.clone()),
            labelled.clone(),
        ),
        move |binding: &PartialObjectMeta<RoleBinding>, present, at| {
            t.part(policy_of(binding), Part::RoleBinding, present, at);
        },
    ));
    let t = tracker.clone();
    synced.push(watches.spawn(
        "Task",
        watcher::watcher(
            Api::<PartialObjectMeta<Task>>::all(client.clone()),
            labelled,
        ),
        move |task: &PartialObjectMeta<Task>, present, at| {
            let policy = policy_of(task);
            let required_scc = task.annotations().get(REQUIRED_SCC_ANNOTATION).cloned();
            let pinned = policy.is_some_and(|p| required_scc.as_deref() == Some(&*owned_name(p)));
            t.part(policy, Part::Task, present && pinned, at);
            if present {
                t.saw(Seen {
                    object: SeenObject::Task {
                        namespace: task.namespace().unwrap_or_default(),
                        name: task.name_any(),
                        required_scc,
                    },
                    resource_version: resource_version(task),
                    at,
                });
            }
        },
    ));
    let t = tracker.clone();
    synced.push(watches.spawn(
        "BuildPolicy",
        watcher::watcher(
            Api::<BuildPolicy>::all(client.clone()),
            watcher::Config::default(),
        ),
        move |policy: &BuildPolicy, present, at| {
            let ready = present && policy.condition(READY).is_some_and(|c| c.status == "True");
            t.policy_ready(policy.name(), ready, at);
        },
    ));

    for (kind, listed) in synced {
        tokio::time::timeout(SYNC_TIMEOUT, listed)
            .await
            .map_err(|_| anyhow!("watch of {kind}: no initial list within {SYNC_TIMEOUT:?}"))?
            .with_context(|| format!("watch of {kind} ended before its first list"))?;
    }
    Ok(watches)
}

impl Watches {
    /// Runs a watch in a task of its own: `on_event(object, present, time
    /// it arrived)` for every object it lists or sees change, and for every
    /// object that vanished while it was reconnecting (a new list misses
    /// it: `present` false). The receiver fires after the first list.
    fn spawn<K, S, F>(
        &mut self,
        kind: &'static str,
        stream: S,
        on_event: F,
    ) -> (&'static str, oneshot::Receiver<()>)
    where
        K: Resource + Clone + Debug + Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
        F: Fn(&K, bool, Instant) + Send + 'static,
    {
        let (synced_tx, synced_rx) = oneshot::channel();
        self.tasks.push(tokio::spawn(async move {
            let mut synced = Some(synced_tx);
            let mut known: HashMap<String, K> = HashMap::new();
            let mut listing: Option<HashMap<String, K>> = None;
            let stream = stream.default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let at = Instant::now();
                let event = match event {
                    Ok(event) => event,
                    // The watcher retries by itself (default_backoff).
                    Err(e) => {
                        log!("  watch of {kind}: {e}; retrying");
                        continue;
                    }
                };
                match event {
                    Event::Init => listing = Some(HashMap::new()),
                    Event::InitApply(o) => {
                        on_event(&o, true, at);
                        listing.get_or_insert_default().insert(key(&o), o);
                    }
                    Event::InitDone => {
                        let listed = listing.take().unwrap_or_default();
                        for (k, gone) in &known {
                            if !listed.contains_key(k) {
                                on_event(gone, false, at);
                            }
                        }
                        known = listed;
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    Event::Apply(o) => {
                        on_event(&o, true, at);
                        known.insert(key(&o), o);
                    }
                    Event::Delete(o) => {
                        on_event(&o, false, at);
                        known.remove(&key(&o));
                    }
                }
            }
        }));
        (kind, synced_rx)
    }
}

/// `namespace/name`.
fn key<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

/// The policy an object is labelled with.
fn policy_of<K: Resource>(o: &K) -> Option<&str> {
    o.meta()
        .labels
        .as_ref()?
        .get(POLICY_LABEL)
        .map(String::as_str)
}

fn resource_version<K: Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

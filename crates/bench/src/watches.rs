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
            let mut listing = Listing::default();
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
                let (changes, listed) = listing.apply(event);
                for (object, present) in &changes {
                    on_event(object, *present, at);
                }
                if listed && let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
        }));
        (kind, synced_rx)
    }
}

/// What a watch's events say about the objects it watches: each object it
/// lists or sees change is present, each it sees deleted is gone, and so is
/// each that a new list (after a broken watch) lacks, of which no Delete
/// event came.
struct Listing<K> {
    /// By `namespace/name`, as of the last complete list and the events
    /// since.
    known: HashMap<String, K>,
    /// A list under way.
    listing: Option<HashMap<String, K>>,
}

impl<K> Default for Listing<K> {
    fn default() -> Self {
        Self {
            known: HashMap::new(),
            listing: None,
        }
    }
}

impl<K: Resource + Clone> Listing<K> {
    /// The objects the event shows present (`true`) or gone, and whether
    /// it completed a list.
    fn apply(&mut self, event: Event<K>) -> (Vec<(K, bool)>, bool) {
        match event {
            Event::Init => {
                self.listing = Some(HashMap::new());
                (Vec::new(), false)
            }
            Event::InitApply(o) => {
                let listing = self.listing.get_or_insert_default();
                listing.insert(key(&o), o.clone());
                (vec![(o, true)], false)
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone = self
                    .known
                    .iter()
                    .filter(|(k, _)| !listed.contains_key(*k))
                    .map(|(_, o)| (o.clone(), false))
                    .collect();
                self.known = listed;
                (gone, true)
            }
            Event::Apply(o) => {
                self.known.insert(key(&o), o.clone());
                (vec![(o, true)], false)
            }
            Event::Delete(o) => {
                self.known.remove(&key(&o));
                (vec![(o, false)], false)
            }
        }
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

/// An object's resourceVersion, as a number to compare (etcd's revision).
pub fn resource_version<K: Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> PartialObjectMeta<Role> {
        let mut role = PartialObjectMeta::<Role>::default();
        role.metadata.namespace = Some("bench-0000".to_owned());
        role.metadata.name = Some(name.to_owned());
        role
    }

    fn names(changes: &[(PartialObjectMeta<Role>, bool)]) -> Vec<(String, bool)> {
        let mut names: Vec<(String, bool)> = changes
            .iter()
            .map(|(o, present)| (o.name_any(), *present))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_list_reports_what_vanished_meanwhile() {
        let mut listing = Listing::default();
        let (changes, listed) = listing.apply(Event::Init);
        assert!(changes.is_empty() && !listed);
        let (changes, _) = listing.apply(Event::InitApply(role("a")));
        assert_eq!(names(&changes), [("a".to_owned(), true)]);
        listing.apply(Event::InitApply(role("b")));
        let (changes, listed) = listing.apply(Event::InitDone);
        assert!(changes.is_empty() && listed);
        listing.apply(Event::Apply(role("c")));
        let (changes, _) = listing.apply(Event::Delete(role("a")));
        assert_eq!(names(&changes), [("a".to_owned(), false)]);
        // The watch broke; b was deleted meanwhile, d created.
        listing.apply(Event::Init);
        listing.apply(Event::InitApply(role("c")));
        listing.apply(Event::InitApply(role("d")));
        let (changes, listed) = listing.apply(Event::InitDone);
        assert!(listed);
        assert_eq!(names(&changes), [("b".to_owned(), false)]);
        assert_eq!(listing.known.len(), 2);
    }
}

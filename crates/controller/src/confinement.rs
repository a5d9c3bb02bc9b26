//! Confinement's shared objects: the shard ValidatingAdmissionPolicies
//! (and their bindings) that hold every policy's admission rules, and the
//! one writer that applies them.
//!
//! A reconcile says what its policy wants in its shard ([`Confiner::hold`])
//! and waits until the writer has applied it; only then does it grant RBAC.
//! The writer applies every shard whose live rules differ from what the
//! policies want, so the wants of the reconciles in flight go out in one
//! write per shard. A shard holds the wants of this process's reconciles
//! and, for a policy that has not been reconciled since the operator
//! started, what the live shard says of it: a restart never drops a policy
//! from its rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use buildpolicy_policy::ceiling::{Confinement, ConfinementMode};
use buildpolicy_policy::confinement::{self as rules, Entries, Entry, Shards};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::api::{DeleteParams, Patch};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::caches::Caches;
use crate::context::Context;
use crate::error::{Doing as _, Error};
use crate::index::Indexed;
use crate::reconcile::apply_params;

/// How long a reconcile waits for the writer before it reports an error.
const WAIT: Duration = Duration::from_secs(60);

/// What a policy wants of its shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Its entry, in its namespace.
    In { namespace: String, entry: Entry },
    /// Nothing: it was revoked.
    Out,
}

#[derive(Default)]
struct State {
    /// Counts the changes of `wants`; a pass reports the count it wrote.
    generation: u64,
    wants: BTreeMap<String, Want>,
}

/// What the writer's last pass did.
#[derive(Clone, Debug, Default)]
struct Pass {
    /// The wants up to this generation are written, but for `failed`.
    generation: u64,
    /// Shards it could not write, and why.
    failed: HashMap<String, String>,
    /// The ceiling's confinement it wrote the rules for.
    confinement: Option<Confinement>,
}

/// The shards, the wants of the policies, and what the writer last wrote.
pub(crate) struct Confiner {
    pub shards: Shards,
    state: Mutex<State>,
    wake: Notify,
    passes: watch::Sender<Pass>,
    /// What the writer last wrote to each shard's policy and binding.
    pub policies: Written<ValidatingAdmissionPolicy>,
    pub bindings: Written<ValidatingAdmissionPolicyBinding>,
    /// What the last look at each shard found, by resourceVersion: every
    /// reconcile of its policies reads it, and it changes only on a write.
    examined: Mutex<HashMap<String, Examined>>,
}

/// A live shard, read.
#[derive(Clone)]
pub(crate) struct Examined {
    version: Option<String>,
    confinement: Confinement,
    /// The entries it holds.
    pub entries: Arc<Entries>,
    /// Whether its rules are what this release writes for `confinement`.
    pub rules_hold: bool,
}

/// What the writer wrote to one object.
struct Applied<K> {
    /// What it asked for (set before the request: the watch event of the
    /// write can come before the answer).
    desired: Arc<K>,
    /// What the API server answered.
    object: Option<Arc<K>>,
}

impl<K> Clone for Applied<K> {
    fn clone(&self) -> Self {
        Self {
            desired: self.desired.clone(),
            object: self.object.clone(),
        }
    }
}

fn version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// What the writer last wrote to the objects of one kind, by shard name:
/// the cache may not have it yet.
pub(crate) struct Written<K> {
    objects: Mutex<HashMap<String, Applied<K>>>,
}

impl<K> Default for Written<K> {
    fn default() -> Self {
        Self {
            objects: Mutex::default(),
        }
    }
}

impl<K> Written<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + 'static,
{
    /// The freshest view of shard `name`: the newer of the cached object
    /// and the one the writer applied (by resourceVersion, which the API
    /// server hands out in increasing order). An applied object the cache
    /// lacks is one it has not seen yet: a deletion makes the writer forget
    /// it (see [`Written::observe`]).
    pub fn live(&self, cache: &Indexed<K>, name: &str) -> Option<Arc<K>> {
        let cached = cache.get(&ObjectRef::new(name));
        match (cached, lock(&self.objects).get(name).cloned()) {
            (
                Some(c),
                Some(Applied {
                    object: Some(a), ..
                }),
            ) if version(a.as_ref()) > version(c.as_ref()) => Some(a),
            (Some(c), _) => Some(c),
            (None, a) => a.and_then(|a| a.object),
        }
    }

    /// Follows a watch event of a shard's object (`cached`: whether the
    /// cache still holds it; a deleted object has left it). Says whether
    /// someone else changed it, so that the policies it holds look at it:
    /// the writer's own writes (and older states) wake nobody.
    pub fn observe(&self, object: &K, cached: bool) -> bool {
        let name = object.meta().name.clone().unwrap_or_default();
        let mut applied = lock(&self.objects);
        if !cached {
            // Deleted: what the writer applied before is gone too.
            if applied.get(&name).is_some_and(|a| {
                a.object
                    .as_ref()
                    .is_none_or(|o| at_or_before(o.as_ref(), object))
            }) {
                applied.remove(&name);
            }
            return true;
        }
        // As the writer wants it (its own write, whichever came first, the
        // event or the answer), or an older state: nothing to look at.
        !applied.get(&name).is_some_and(|a| {
            rules::spec_holds(a.desired.as_ref(), object)
                || a.object
                    .as_ref()
                    .is_some_and(|o| at_or_before(object, o.as_ref()))
        })
    }

    /// The shards the writer applied an object to.
    fn names(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    /// Applies `desired` unless the live object holds it; remembers what
    /// it asked for before the request and what the server answered.
    async fn apply(&self, ctx: &Context, cache: &Indexed<K>, desired: K) -> Result<(), String> {
        let name = desired.meta().name.clone().unwrap_or_default();
        if self
            .live(cache, &name)
            .is_some_and(|live| rules::spec_holds(&desired, &live))
        {
            return Ok(());
        }
        {
            let mut objects = lock(&self.objects);
            let object = objects.get(&name).and_then(|a| a.object.clone());
            objects.insert(
                name.clone(),
                Applied {
                    desired: Arc::new(desired.clone()),
                    object,
                },
            );
        }
        let applied = Api::<K>::all(ctx.client.clone())
            .patch(&name, &apply_params(), &Patch::Apply(&desired))
            .await
            .doing(|| format!("applying {} {name}", K::kind(&())))
            .map_err(|e| e.one_line())?;
        if let Some(a) = lock(&self.objects).get_mut(&name) {
            a.object = Some(Arc::new(applied));
        }
        Ok(())
    }

    /// Deletes shard `name`'s object, if it exists; says whether it did.
    async fn delete(&self, ctx: &Context, cache: &Indexed<K>, name: &str) -> Result<bool, String> {
        if self.live(cache, name).is_none() {
            return Ok(false);
        }
        match Api::<K>::all(ctx.client.clone())
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                let action = format!("deleting {} {name}", K::kind(&()));
                return Err(Error::Kube { action, source }.one_line());
            }
        }
        lock(&self.objects).remove(name);
        Ok(true)
    }
}

/// Whether `object` is `applied` or older.
fn at_or_before<K: Resource>(object: &K, applied: &K) -> bool {
    object.meta().resource_version == applied.meta().resource_version
        || matches!((version(object), version(applied)), (Some(v), Some(a)) if v < a)
}

impl Confiner {
    pub fn new(selector: Option<&str>) -> Self {
        Self {
            shards: Shards::new(selector),
            state: Mutex::default(),
            wake: Notify::new(),
            passes: watch::channel(Pass::default()).0,
            policies: Written::default(),
            bindings: Written::default(),
            examined: Mutex::default(),
        }
    }

    /// The entries of a live shard and whether its rules hold, read once
    /// per resourceVersion.
    pub fn examine(&self, live: &ValidatingAdmissionPolicy, confinement: &Confinement) -> Examined {
        let name = live.name_any();
        let version = live.resource_version();
        if let Some(seen) = lock(&self.examined).get(&name)
            && seen.version == version
            && version.is_some()
            && seen.confinement == *confinement
        {
            return seen.clone();
        }
        let examined = Examined {
            version,
            confinement: confinement.clone(),
            entries: Arc::new(rules::live_entries(live).unwrap_or_default()),
            rules_hold: rules::rules_hold(&self.shards, live, confinement),
        };
        lock(&self.examined).insert(name, examined.clone());
        examined
    }

    /// Records what `policy` wants without asking for a write: its shard
    /// already holds it.
    pub fn note(&self, policy: &str, want: Want) {
        lock(&self.state).wants.insert(policy.to_owned(), want);
    }

    /// Withdraws `policy` from its shard (its RBAC is gone by then) and
    /// waits until the writer has, so that nothing of a deleted policy
    /// outlives it.
    pub async fn release(&self, caches: &Caches, policy: &str) -> Result<(), String> {
        let shard = self.shards.of(policy);
        let listed = self
            .policies
            .live(&caches.admission_policies, &shard)
            .and_then(|live| rules::live_entries(&live))
            .is_some_and(|entries| rules::find(&entries, policy).is_some());
        let generation = {
            let mut state = lock(&self.state);
            let before = state.wants.insert(policy.to_owned(), Want::Out);
            if !listed && matches!(before, None | Some(Want::Out)) {
                return Ok(());
            }
            state.generation += 1;
            state.generation
        };
        self.written(generation, &shard).await
    }

    /// Waits for the writer's pass that covers `generation`; says whether
    /// it wrote `shard`.
    async fn written(&self, generation: u64, shard: &str) -> Result<(), String> {
        let mut passes = self.passes.subscribe();
        self.wake.notify_one();
        let pass = tokio::time::timeout(WAIT, passes.wait_for(|p| p.generation >= generation))
            .await
            .map_err(|_| {
                format!(
                    "the admission rules were not written within {} s",
                    WAIT.as_secs()
                )
            })?
            .map_err(|_| "the operator is stopping".to_owned())?
            .clone();
        match pass.failed.get(shard) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Asks for `policy`'s entry in its shard and waits until the writer
    /// has applied it. Returns what the policy wanted before, and whether
    /// the rules were last written for the same confinement settings.
    pub async fn hold(
        &self,
        policy: &str,
        want: Want,
        confinement: &Confinement,
    ) -> Result<(Option<Want>, bool), String> {
        let (generation, before) = {
            let mut state = lock(&self.state);
            let before = state.wants.insert(policy.to_owned(), want);
            state.generation += 1;
            (state.generation, before)
        };
        let same_settings = self.passes.borrow().confinement.as_ref() == Some(confinement);
        self.written(generation, &self.shards.of(policy)).await?;
        Ok((before, same_settings))
    }

    /// The writer: one pass whenever a want changes, until the controller
    /// stops.
    pub async fn run(ctx: Arc<Context>) {
        let this = &ctx.confiner;
        loop {
            this.wake.notified().await;
            ctx.caches.ready().await;
            let (generation, wants) = {
                let state = lock(&this.state);
                (state.generation, state.wants.clone())
            };
            let confinement = ctx.ceiling.borrow().confinement.clone();
            let failed = this.pass(&ctx, &wants, &confinement).await;
            this.passes.send_replace(Pass {
                generation,
                failed,
                confinement: Some(confinement),
            });
        }
    }

    /// Writes every shard whose live rules differ from the wants; deletes
    /// the shards left with no policy (and all of them when confinement is
    /// off).
    async fn pass(
        &self,
        ctx: &Context,
        wants: &BTreeMap<String, Want>,
        confinement: &Confinement,
    ) -> HashMap<String, String> {
        let existing: HashSet<String> = ctx
            .caches
            .policies
            .state()
            .iter()
            .map(|p| p.name_any())
            .collect();
        let mut shards: BTreeMap<String, Entries> = BTreeMap::new();
        let live_names: Vec<String> = ctx
            .caches
            .admission_policies
            .state()
            .iter()
            .map(|p| p.name_any())
            .chain(self.policies.names())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|name| self.shards.owns(name))
            .collect();
        for name in live_names {
            let live = self
                .policies
                .live(&ctx.caches.admission_policies, &name)
                .and_then(|l| rules::live_entries(&l))
                .unwrap_or_default();
            shards.entry(name).or_default();
            for (namespace, policies) in live {
                for (policy, entry) in policies {
                    if !wants.contains_key(&policy) && existing.contains(&policy) {
                        shards
                            .entry(self.shards.of(&policy))
                            .or_default()
                            .entry(namespace.clone())
                            .or_default()
                            .insert(policy, entry);
                    }
                }
            }
        }
        for (policy, want) in wants {
            if let Want::In { namespace, entry } = want {
                shards
                    .entry(self.shards.of(policy))
                    .or_default()
                    .entry(namespace.clone())
                    .or_default()
                    .insert(policy.clone(), entry.clone());
            }
        }
        // The shards are written side by side: a pass takes as long as its
        // slowest write, whatever the number of shards it changes.
        let writes = shards.into_iter().map(|(name, entries)| async move {
            let result = if entries.is_empty() || confinement.mode == ConfinementMode::Off {
                self.delete(ctx, &name).await
            } else {
                self.apply(ctx, &name, &entries, confinement).await
            };
            result.map_err(|error| {
                warn!(shard = %name, %error, "could not write the admission rules");
                (name, error)
            })
        });
        let failed: HashMap<String, String> = futures::future::join_all(writes)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        // A revoked policy that is gone needs no want any more.
        lock(&self.state)
            .wants
            .retain(|policy, want| *want != Want::Out || existing.contains(policy));
        failed
    }

    /// Applies shard `name`'s policy, then its binding, where they differ.
    async fn apply(
        &self,
        ctx: &Context,
        name: &str,
        entries: &Entries,
        confinement: &Confinement,
    ) -> Result<(), String> {
        let desired = rules::admission_policy(&self.shards, name, entries, confinement)
            .map_err(|e| e.to_string())?;
        self.policies
            .apply(ctx, &ctx.caches.admission_policies, desired)
            .await?;
        if let Some(binding) = rules::binding(&self.shards, name, confinement.mode) {
            self.bindings
                .apply(ctx, &ctx.caches.admission_bindings, binding)
                .await?;
        }
        Ok(())
    }

    /// Deletes shard `name`: the binding first (a policy without its
    /// binding refuses nothing), then the policy.
    async fn delete(&self, ctx: &Context, name: &str) -> Result<(), String> {
        self.bindings
            .delete(ctx, &ctx.caches.admission_bindings, name)
            .await?;
        if self
            .policies
            .delete(ctx, &ctx.caches.admission_policies, name)
            .await?
        {
            info!(shard = name, "deleted admission rules that hold no policy");
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

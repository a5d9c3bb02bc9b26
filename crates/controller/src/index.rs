//! Secondary indexes over the caches: which objects carry a key (the policy
//! they belong to, the namespace a policy names, a user an SCC lists), so
//! that mapping an event to its policies and a reconcile's reads cost the
//! objects concerned, not a scan of every object in the cluster.
//!
//! An index is kept by the watch task of its cache, from the same events in
//! the same order as the cache itself, and answers with objects read from
//! that cache: an entry the cache no longer holds is never returned.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use buildpolicy_api::keys::ownership;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints};
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

/// What an object is indexed under.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// Created by the operator for this policy (the policy and managed-by
    /// labels), or a Task or TaskRun labelled with the policy.
    Policy(String),
    /// A policy naming this namespace; an object in it.
    Namespace(String),
    /// An SCC listing this user or group in its `users` or `groups`.
    User(String),
    Group(String),
}

/// The keys of one object.
pub type Keys<K> = fn(&K) -> Vec<Key>;

/// Most keys hold one object, so each holds a `Vec`, not a set (a set of
/// one takes four slots); the references carry no resourceVersion or UID
/// (equality ignores them, and the cache has them).
struct State<K: Resource> {
    by_key: HashMap<Key, Vec<ObjectRef<K>>>,
    keys_of: HashMap<ObjectRef<K>, Vec<Key>>,
    /// During a re-list: the objects it has listed so far. Those it did not
    /// list when it is done were deleted while the watch was down.
    listed: Option<HashSet<ObjectRef<K>>>,
}

/// A cache and an index over it.
pub struct Indexed<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    keys: Keys<K>,
    state: Arc<RwLock<State<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Indexed<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: self.keys,
            state: self.state.clone(),
        }
    }
}

impl<K> Indexed<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// An empty index over `store` (filled by [`Indexed::observe`]).
    pub fn new(store: Store<K>, keys: Keys<K>) -> Self {
        Self {
            store,
            keys,
            state: Arc::new(RwLock::new(State {
                by_key: HashMap::new(),
                keys_of: HashMap::new(),
                listed: None,
            })),
        }
    }

    /// The objects in the cache under `key`, in no particular order.
    pub fn under(&self, key: &Key) -> Vec<Arc<K>> {
        self.refs(key)
            .into_iter()
            .filter_map(|r| self.store.get(&r))
            .collect()
    }

    /// References of the objects under `key` (some may have just left the
    /// cache).
    pub fn refs(&self, key: &Key) -> Vec<ObjectRef<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .by_key
            .get(key)
            .map(|refs| refs.to_vec())
            .unwrap_or_default()
    }

    /// Follows one watch event, after the cache has.
    pub fn observe(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(object) => state.put(object, self.keys),
            watcher::Event::Delete(object) => state.remove(&reference(object)),
            watcher::Event::Init => state.listed = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(listed) = state.listed.as_mut() {
                    listed.insert(reference(object));
                }
                state.put(object, self.keys);
            }
            watcher::Event::InitDone => {
                if let Some(listed) = state.listed.take() {
                    let gone: Vec<_> = state
                        .keys_of
                        .keys()
                        .filter(|r| !listed.contains(*r))
                        .cloned()
                        .collect();
                    for object in gone {
                        state.remove(&object);
                    }
                }
            }
        }
    }
}

/// The cache itself: `get`, `state` and the rest of [`Store`].
impl<K: Resource<DynamicType = ()> + 'static> std::ops::Deref for Indexed<K> {
    type Target = Store<K>;

    fn deref(&self) -> &Store<K> {
        &self.store
    }
}

/// The name and namespace of `object`, which is all the index compares.
fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let meta = object.meta();
    let name = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(ns) => name.within(ns),
        None => name,
    }
}

impl<K: Resource<DynamicType = ()>> State<K> {
    fn put(&mut self, object: &K, keys: Keys<K>) {
        let object_ref = reference(object);
        self.remove(&object_ref);
        let mut keys = keys(object);
        // An SCC may list a user twice; the object is under it once.
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        keys.shrink_to_fit();
        for key in &keys {
            self.by_key
                .entry(key.clone())
                .or_default()
                .push(object_ref.clone());
        }
        self.keys_of.insert(object_ref, keys);
    }

    fn remove(&mut self, object: &ObjectRef<K>) {
        for key in self.keys_of.remove(object).into_iter().flatten() {
            if let Some(refs) = self.by_key.get_mut(&key) {
                refs.retain(|r| r != object);
                if refs.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// Not indexed.
pub fn no_keys<K>(_: &K) -> Vec<Key> {
    Vec::new()
}

/// A policy, under the namespace it names.
pub fn policy_keys(policy: &BuildPolicy) -> Vec<Key> {
    vec![Key::Namespace(policy.spec.namespace.clone())]
}

/// An object the operator created, under its policy; a Task or TaskRun
/// under the policy of its label.
pub fn labelled_keys<K: Resource>(object: &K) -> Vec<Key> {
    let policy = ownership(object).policy();
    policy
        .map(|p| Key::Policy(p.to_owned()))
        .into_iter()
        .collect()
}

/// An object the operator created (policy and managed-by labels), under
/// its policy.
pub fn managed_keys<K: Resource>(object: &K) -> Vec<Key> {
    let policy = ownership(object).managed();
    policy
        .map(|p| Key::Policy(p.to_owned()))
        .into_iter()
        .collect()
}

/// A RoleBinding: under its namespace (who may use which SCC there), and
/// under its policy when the operator created it.
pub fn role_binding_keys<K: Resource>(binding: &K) -> Vec<Key> {
    let mut keys = managed_keys(binding);
    keys.extend(binding.meta().namespace.clone().map(Key::Namespace));
    keys
}

/// An SCC, under every user and group it lists.
pub fn scc_keys(scc: &SecurityContextConstraints) -> Vec<Key> {
    let users = scc.users.iter().flatten().cloned().map(Key::User);
    let groups = scc.groups.iter().flatten().cloned().map(Key::Group);
    users.chain(groups).collect()
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::runtime::reflector;
    use serde_json::json;

    use super::*;

    fn binding(ns: &str, name: &str, policy: Option<&str>) -> RoleBinding {
        let mut labels = serde_json::Map::new();
        if let Some(policy) = policy {
            labels.insert(POLICY_LABEL.into(), json!(policy));
            labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY_VALUE));
        }
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        }))
        .unwrap()
    }

    /// A cache and its index, fed the same events as the controller feeds
    /// them (the cache first).
    struct Fed {
        writer: reflector::store::Writer<RoleBinding>,
        index: Indexed<RoleBinding>,
    }

    impl Fed {
        fn new() -> Self {
            let (store, writer) = reflector::store();
            Self {
                writer,
                index: Indexed::new(store, role_binding_keys),
            }
        }

        fn feed(&mut self, event: watcher::Event<RoleBinding>) {
            self.writer.apply_watcher_event(&event);
            self.index.observe(&event);
        }

        fn names(&self, key: &Key) -> Vec<String> {
            let mut names: Vec<_> = self
                .index
                .under(key)
                .iter()
                .map(|b| b.metadata.name.clone().unwrap_or_default())
                .collect();
            names.sort();
            names
        }
    }

    fn policy(name: &str) -> Key {
        Key::Policy(name.into())
    }

    fn namespace(name: &str) -> Key {
        Key::Namespace(name.into())
    }

    #[test]
    fn objects_are_found_under_each_of_their_keys() {
        let mut fed = Fed::new();
        fed.feed(watcher::Event::Apply(binding("a", "ours", Some("p"))));
        fed.feed(watcher::Event::Apply(binding("a", "theirs", None)));
        fed.feed(watcher::Event::Apply(binding("b", "other", Some("q"))));
        assert_eq!(fed.names(&policy("p")), ["ours"]);
        assert_eq!(fed.names(&namespace("a")), ["ours", "theirs"]);
        assert_eq!(fed.names(&namespace("b")), ["other"]);
        assert!(fed.names(&policy("theirs")).is_empty());
    }

    #[test]
    fn a_changed_object_leaves_its_old_keys() {
        let mut fed = Fed::new();
        fed.feed(watcher::Event::Apply(binding("a", "x", Some("p"))));
        // Its labels removed by hand: no longer the policy's.
        fed.feed(watcher::Event::Apply(binding("a", "x", None)));
        assert!(fed.names(&policy("p")).is_empty());
        assert_eq!(fed.names(&namespace("a")), ["x"]);
        fed.feed(watcher::Event::Delete(binding("a", "x", None)));
        assert!(fed.names(&namespace("a")).is_empty());
        assert!(fed.index.state.read().unwrap().by_key.is_empty());
    }

    #[test]
    fn a_relist_drops_what_was_deleted_while_the_watch_was_down() {
        let mut fed = Fed::new();
        fed.feed(watcher::Event::Init);
        fed.feed(watcher::Event::InitApply(binding("a", "kept", Some("p"))));
        fed.feed(watcher::Event::InitApply(binding("a", "gone", Some("p"))));
        fed.feed(watcher::Event::InitDone);
        assert_eq!(fed.names(&policy("p")), ["gone", "kept"]);
        // The watch broke; the new list no longer has "gone".
        fed.feed(watcher::Event::Init);
        fed.feed(watcher::Event::InitApply(binding("a", "kept", Some("p"))));
        // Until the list is done, the cache still serves the old state.
        assert_eq!(fed.names(&policy("p")), ["gone", "kept"]);
        fed.feed(watcher::Event::InitDone);
        assert_eq!(fed.names(&policy("p")), ["kept"]);
        assert_eq!(fed.index.refs(&policy("p")).len(), 1);
    }

    #[test]
    fn a_user_listed_twice_holds_the_scc_once_and_lets_go_of_it() {
        let (store, mut writer) = reflector::store();
        let index = Indexed::new(store, scc_keys);
        let scc: SecurityContextConstraints = serde_json::from_value(json!({
            "metadata": {"name": "twice"},
            "users": ["system:serviceaccount:a:builder", "system:serviceaccount:a:builder"],
        }))
        .unwrap();
        let user = Key::User("system:serviceaccount:a:builder".into());
        for event in [
            watcher::Event::Apply(scc.clone()),
            watcher::Event::Apply(scc.clone()),
        ] {
            writer.apply_watcher_event(&event);
            index.observe(&event);
        }
        assert_eq!(index.refs(&user).len(), 1);
        let event = watcher::Event::Delete(scc);
        writer.apply_watcher_event(&event);
        index.observe(&event);
        assert!(index.refs(&user).is_empty());
        assert!(index.state.read().unwrap().by_key.is_empty());
    }
}

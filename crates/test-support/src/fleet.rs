//! Many policies at once, for scale and fault tests: namespaces, service
//! accounts and Tasks created in bulk and concurrently, one policy per Task,
//! every policy labelled for one operator's scope, and an audit of what the
//! cluster holds for them (exactly one grant per policy, or nothing at all).
//!
//! ```no_run
//! use std::time::Duration;
//! use buildpolicy_test_support::fleet::Fleet;
//!
//! # async fn test(client: kube::Client) {
//! let fleet = Fleet::create(&client, "scale-abc123", 10, 200).await;
//! fleet.create_policies(&client).await;
//! fleet.wait_all_ready(&client, Duration::from_secs(120)).await;
//! let problems = fleet.audit(&client).await.converged_problems();
//! assert!(problems.is_empty(), "{problems:#?}");
//! # }
//! ```
//!
//! A fleet lives on the tests' cluster ([`client`](crate::client)): when it
//! drops, its namespaces are deleted, and policies that are still there
//! (a test that failed halfway, its operator gone) are deleted with their
//! finalizers removed, so none is stuck for the tests that follow.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::{BuildPolicy, BuildPolicySpec, SecurityContextConstraints, Task};
use buildpolicy_policy::drift::{role_binding_drift, role_drift, scc_drift};
use buildpolicy_policy::{Owner, render};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::namespace::TEST_LABEL;
use crate::operator::SCOPE_LABEL;
use crate::scene::{BUILDAH_CAPABILITIES, create_service_account, create_task, is_ready};

/// The service account of every fleet namespace; the policies name it.
pub const FLEET_SERVICE_ACCOUNT: &str = "builder";

/// A Task in every fleet namespace that no policy lists: nothing may pin it.
pub const BYSTANDER_TASK: &str = "bystander";

/// Label on a fleet's namespaces, valued with its scope, to find and delete them.
const FLEET_LABEL: &str = "buildpolicy.dev/test-fleet";

/// Requests in flight at once while setting a fleet up or down: enough to
/// fill the API server's pipeline, few enough not to trip its
/// max-in-flight limit next to the other tests.
const CONCURRENCY: usize = 16;

/// One policy of a fleet and what it grants to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The BuildPolicy's name, `<scope>-<index>`.
    pub policy: String,
    /// Its `spec.namespace`.
    pub namespace: String,
    /// Its one Task, which no other policy lists.
    pub task: String,
}

/// Namespaces, service accounts and Tasks for `members.len()` policies.
#[derive(Debug)]
pub struct Fleet {
    scope: String,
    namespaces: Vec<String>,
    members: Vec<Member>,
}

/// Runs `futures` with [`CONCURRENCY`] in flight, in any order.
async fn all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    stream::iter(futures)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

impl Fleet {
    /// Creates `namespaces` namespaces (`<scope>-n<j>`, labelled
    /// `buildpolicy.dev/test=true`), each with the service account
    /// [`FLEET_SERVICE_ACCOUNT`] and the Task [`BYSTANDER_TASK`], and one
    /// Task per policy (`build-<i>`), the `policies` spread evenly over the
    /// namespaces. Creates no policy yet: [`create_policies`](Self::create_policies).
    ///
    /// # Panics
    ///
    /// When the server refuses an object.
    pub async fn create(client: &Client, scope: &str, namespaces: usize, policies: usize) -> Self {
        assert!(namespaces > 0, "a fleet needs a namespace");
        let started = Instant::now();
        let namespace_names: Vec<String> = (0..namespaces)
            .map(|j| format!("{scope}-n{j:02}"))
            .collect();
        let members: Vec<Member> = (0..policies)
            .map(|i| Member {
                policy: format!("{scope}-{i:03}"),
                namespace: namespace_names[i % namespaces].clone(),
                task: format!("build-{i:03}"),
            })
            .collect();
        let fleet = Self {
            scope: scope.to_owned(),
            namespaces: namespace_names,
            members,
        };

        let namespace_api: Api<Namespace> = Api::all(client.clone());
        all(fleet.namespaces.iter().map(|name| {
            let namespace: Namespace = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "labels": {TEST_LABEL: "true", FLEET_LABEL: scope}
                }
            }))
            .expect("a Namespace");
            let api = namespace_api.clone();
            async move {
                api.create(&Default::default(), &namespace)
                    .await
                    .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
            }
        }))
        .await;

        let accounts = fleet
            .namespaces
            .iter()
            .map(|ns| (ns.as_str(), None))
            .collect::<Vec<_>>();
        let tasks = fleet
            .namespaces
            .iter()
            .map(|ns| (ns.as_str(), Some(BYSTANDER_TASK)))
            .chain(
                fleet
                    .members
                    .iter()
                    .map(|m| (m.namespace.as_str(), Some(m.task.as_str()))),
            );
        all(accounts
            .into_iter()
            .chain(tasks)
            .map(|(ns, task)| async move {
                match task {
                    Some(task) => drop(create_task(client, ns, task).await),
                    None => drop(create_service_account(client, ns, FLEET_SERVICE_ACCOUNT).await),
                }
            }))
        .await;
        eprintln!(
            "[test-support] fleet {scope}: {} namespaces with a service account, {} Tasks and \
             a bystander Task each, created in {:.1}s",
            fleet.namespaces.len(),
            fleet.members.len(),
            started.elapsed().as_secs_f64()
        );
        fleet
    }

    /// The scope its policies are labelled with.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Its namespaces.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Its policies, in order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// `buildpolicy.dev/test-scope=<scope>`, which selects its policies.
    pub fn selector(&self) -> String {
        format!("{SCOPE_LABEL}={}", self.scope)
    }

    /// The BuildPolicy of `member`: the Buildah capabilities for
    /// [`FLEET_SERVICE_ACCOUNT`], pinned to its Task, labelled for the scope.
    pub fn policy(&self, member: &Member) -> BuildPolicy {
        let mut policy = BuildPolicy::new(
            &member.policy,
            BuildPolicySpec {
                namespace: member.namespace.clone(),
                service_account_name: FLEET_SERVICE_ACCOUNT.to_owned(),
                capabilities: BUILDAH_CAPABILITIES.map(str::to_owned).to_vec(),
                tasks: vec![member.task.clone()],
                isolation: Default::default(),
                task_digests: Default::default(),
            },
        );
        policy
            .labels_mut()
            .insert(SCOPE_LABEL.to_owned(), self.scope.clone());
        policy
    }

    /// Creates every policy, concurrently; returns how long that took.
    ///
    /// # Panics
    ///
    /// When the server refuses one.
    pub async fn create_policies(&self, client: &Client) -> Duration {
        let started = Instant::now();
        let api: Api<BuildPolicy> = Api::all(client.clone());
        all(self.members.iter().map(|member| {
            let policy = self.policy(member);
            let api = api.clone();
            async move {
                api.create(&Default::default(), &policy)
                    .await
                    .unwrap_or_else(|e| panic!("creating BuildPolicy {}: {e}", member.policy));
            }
        }))
        .await;
        started.elapsed()
    }

    /// Deletes every policy of the scope in one request (as `kubectl delete
    /// buildpolicies -l ...` does), without waiting for the operator.
    ///
    /// # Panics
    ///
    /// When the server refuses it.
    pub async fn delete_policies(&self, client: &Client) {
        Api::<BuildPolicy>::all(client.clone())
            .delete_collection(
                &DeleteParams::background(),
                &ListParams::default().labels(&self.selector()),
            )
            .await
            .unwrap_or_else(|e| panic!("deleting the BuildPolicies of scope {}: {e}", self.scope));
    }

    /// Watches the policies of the scope until `done` holds for the whole
    /// set (after the watch's first full list), and returns that set.
    ///
    /// # Panics
    ///
    /// After `timeout`, with `what` and a summary of the last set seen.
    pub async fn wait_policies(
        &self,
        client: &Client,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Arc<BuildPolicy>]) -> bool,
    ) -> Vec<Arc<BuildPolicy>> {
        let (reader, writer) = reflector::store();
        let mut synced = false;
        let mut last_error = None;
        let watch = async {
            let config = watcher::Config::default().labels(&self.selector());
            let mut events = pin!(
                watcher(Api::<BuildPolicy>::all(client.clone()), config)
                    .default_backoff()
                    .reflect(writer)
            );
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => synced = true,
                    Ok(_) => {}
                    Err(e) => last_error = Some(e.to_string()),
                }
                if synced {
                    let policies = reader.state();
                    if done(&policies) {
                        return policies;
                    }
                }
            }
            unreachable!("a watch stream does not end")
        };
        match tokio::time::timeout(timeout, watch).await {
            Ok(policies) => policies,
            Err(_) => panic!(
                "timed out after {timeout:?} waiting for {what} (scope {}); last seen: {}{}",
                self.scope,
                summary(&reader.state()),
                last_error
                    .map(|e| format!("; last watch error: {e}"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Waits until every policy of the fleet exists and its current
    /// generation is Ready; returns how long that took.
    pub async fn wait_all_ready(&self, client: &Client, timeout: Duration) -> Duration {
        let started = Instant::now();
        let want = self.members.len();
        self.wait_policies(
            client,
            &format!("all {want} policies to be Ready"),
            timeout,
            |policies| policies.len() == want && ready_count(policies) == want,
        )
        .await;
        started.elapsed()
    }

    /// Waits until no policy of the scope exists any more (the operator has
    /// revoked each and removed its finalizer); returns how long that took.
    pub async fn wait_all_gone(&self, client: &Client, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.wait_policies(
            client,
            "every policy to be revoked and gone",
            timeout,
            <[_]>::is_empty,
        )
        .await;
        started.elapsed()
    }

    /// Everything on the cluster that belongs to the fleet's policies, or
    /// claims to: its policies, the SCCs, Roles and RoleBindings labelled
    /// with one of their names (in any namespace), and the Tasks in its
    /// namespaces or pinned or labelled for one of them (anywhere).
    ///
    /// # Panics
    ///
    /// When a list fails.
    pub async fn audit(&self, client: &Client) -> Audit {
        let labelled = ListParams::default().labels(POLICY_LABEL);
        let prefix = format!("{}-", self.scope);
        let ours = |meta: &ObjectMeta| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(POLICY_LABEL))
                .is_some_and(|p| p.starts_with(&prefix))
        };
        let (policies, sccs, roles, role_bindings, tasks) = tokio::join!(
            list(
                Api::<BuildPolicy>::all(client.clone()),
                ListParams::default().labels(&self.selector())
            ),
            list(
                Api::<SecurityContextConstraints>::all(client.clone()),
                labelled.clone()
            ),
            list(Api::<Role>::all(client.clone()), labelled.clone()),
            list(Api::<RoleBinding>::all(client.clone()), labelled.clone()),
            async {
                Api::<Task>::all(client.clone())
                    .list_metadata(&ListParams::default())
                    .await
                    .unwrap_or_else(|e| panic!("listing Tasks: {e}"))
                    .items
            },
        );
        let scc_prefix = owned_name(&prefix);
        let namespaces: BTreeSet<&String> = self.namespaces.iter().collect();
        Audit {
            scope: self.scope.clone(),
            members: self.members.clone(),
            namespaces: self.namespaces.clone(),
            policies,
            sccs: sccs.into_iter().filter(|s| ours(&s.metadata)).collect(),
            roles: roles.into_iter().filter(|r| ours(&r.metadata)).collect(),
            role_bindings: role_bindings
                .into_iter()
                .filter(|b| ours(&b.metadata))
                .collect(),
            tasks: tasks
                .into_iter()
                .filter(|t| {
                    ours(&t.metadata)
                        || t.namespace().is_some_and(|ns| namespaces.contains(&ns))
                        || pin(t).is_some_and(|scc| scc.starts_with(&scc_prefix))
                })
                .collect(),
        }
    }
}

async fn list<K>(api: Api<K>, params: ListParams) -> Vec<K>
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    api.list(&params)
        .await
        .unwrap_or_else(|e| panic!("listing {kind}: {e}"))
        .items
}

/// How many of `policies` have their current generation Ready.
pub fn ready_count(policies: &[Arc<BuildPolicy>]) -> usize {
    policies.iter().filter(|p| is_ready(p)).count()
}

/// "N policies, M Ready; not Ready: name (reason: message), ..." (the first five).
fn summary(policies: &[Arc<BuildPolicy>]) -> String {
    let not_ready: Vec<String> = policies
        .iter()
        .filter(|p| !is_ready(p))
        .take(5)
        .map(|p| match p.condition("Ready") {
            Some(c) => format!("{} ({}: {})", p.name_any(), c.reason, c.message),
            None => format!("{} (no Ready condition)", p.name_any()),
        })
        .collect();
    format!(
        "{} policies, {} Ready; not Ready (first five): {}",
        policies.len(),
        ready_count(policies),
        not_ready.join("; ")
    )
}

fn pin(task: &PartialObjectMeta<Task>) -> Option<&String> {
    task.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUIRED_SCC_ANNOTATION))
}

fn policy_label(meta: &ObjectMeta) -> Option<&String> {
    meta.labels.as_ref().and_then(|l| l.get(POLICY_LABEL))
}

/// What the cluster holds for a fleet, from [`Fleet::audit`].
#[derive(Debug)]
pub struct Audit {
    scope: String,
    members: Vec<Member>,
    namespaces: Vec<String>,
    /// The policies of the scope.
    pub policies: Vec<BuildPolicy>,
    /// SCCs labelled with the name of one of the fleet's policies.
    pub sccs: Vec<SecurityContextConstraints>,
    /// Roles labelled with the name of one of the fleet's policies.
    pub roles: Vec<Role>,
    /// RoleBindings labelled with the name of one of the fleet's policies.
    pub role_bindings: Vec<RoleBinding>,
    /// Tasks in the fleet's namespaces, and Tasks elsewhere labelled or
    /// pinned for one of its policies.
    pub tasks: Vec<PartialObjectMeta<Task>>,
}

/// Groups `objects` by the policy their label names.
fn by_policy<K: kube::Resource>(objects: &[K]) -> BTreeMap<&str, Vec<&K>> {
    let mut groups: BTreeMap<&str, Vec<&K>> = BTreeMap::new();
    for object in objects {
        if let Some(policy) = policy_label(object.meta()) {
            groups.entry(policy).or_default().push(object);
        }
    }
    groups
}

/// What is wrong unless `found`, the `kind`s labelled for `policy`, is
/// exactly one object named `derived` in `namespace` (`None`: cluster-scoped)
/// that does not differ from the rendered one (`drift`: the fields that do).
fn exactly_one<K: kube::Resource>(
    kind: &str,
    policy: &str,
    found: &[&K],
    derived: &str,
    namespace: Option<&str>,
    drift: impl Fn(&K) -> Vec<&'static str>,
) -> Option<String> {
    let want = match namespace {
        Some(ns) => format!("{ns}/{derived}"),
        None => derived.to_owned(),
    };
    match found {
        [object] if location(object.meta()) == want => {
            let drift = drift(object);
            (!drift.is_empty())
                .then(|| format!("{kind} {want} differs from the rendered one in {drift:?}"))
        }
        other => Some(format!(
            "policy {policy}: {} {kind}s labelled for it ({:?}), want exactly {want}",
            other.len(),
            other.iter().map(|o| location(o.meta())).collect::<Vec<_>>()
        )),
    }
}

fn location(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

impl Audit {
    /// Everything that differs from a converged fleet: per policy, the
    /// policy Ready, exactly one SCC, one Role and one RoleBinding labelled
    /// for it (in its namespace, with its derived name, each exactly as
    /// rendered), its Task pinned to its SCC; no object labelled for a
    /// policy that does not exist, and no other Task pinned. Empty when
    /// converged.
    pub fn converged_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let policies: BTreeMap<&str, &BuildPolicy> =
            self.policies.iter().map(|p| (p.name(), p)).collect();
        let sccs = by_policy(&self.sccs);
        let roles = by_policy(&self.roles);
        let role_bindings = by_policy(&self.role_bindings);
        let tasks: BTreeMap<(String, String), &PartialObjectMeta<Task>> = self
            .tasks
            .iter()
            .map(|t| ((t.namespace().unwrap_or_default(), t.name_any()), t))
            .collect();
        let mut pinned_tasks = BTreeSet::new();

        for member in &self.members {
            let name = member.policy.as_str();
            let Some(policy) = policies.get(name) else {
                problems.push(format!("policy {name} does not exist"));
                continue;
            };
            if !is_ready(policy) {
                let ready = policy
                    .condition("Ready")
                    .map(|c| format!("{} {}: {}", c.status, c.reason, c.message));
                problems.push(format!("policy {name} is not Ready: {ready:?}"));
            }
            let desired = render(&Owner::of(policy), &policy.spec);
            let derived = owned_name(name);

            let ns = member.namespace.as_str();
            problems.extend(exactly_one(
                "SCC",
                name,
                &sccs.get(name).cloned().unwrap_or_default(),
                &derived,
                None,
                |scc| scc_drift(&desired.scc, scc),
            ));
            problems.extend(exactly_one(
                "Role",
                name,
                &roles.get(name).cloned().unwrap_or_default(),
                &derived,
                Some(ns),
                |role| role_drift(&desired.role, role),
            ));
            problems.extend(exactly_one(
                "RoleBinding",
                name,
                &role_bindings.get(name).cloned().unwrap_or_default(),
                &derived,
                Some(ns),
                |binding| role_binding_drift(&desired.role_binding, binding),
            ));
            let key = (member.namespace.clone(), member.task.clone());
            match tasks.get(&key) {
                None => problems.push(format!("Task {}/{} does not exist", key.0, key.1)),
                Some(task) => {
                    let pinned = pin(task) == Some(&derived)
                        && policy_label(&task.metadata).map(String::as_str) == Some(name)
                        && desired.pins.iter().all(|p| {
                            p.is_satisfied_by(
                                task.metadata.labels.as_ref(),
                                task.metadata.annotations.as_ref(),
                            )
                        });
                    if !pinned {
                        problems.push(format!(
                            "Task {}/{} is not pinned to {derived}: {REQUIRED_SCC_ANNOTATION}={:?}, {POLICY_LABEL}={:?}",
                            key.0,
                            key.1,
                            pin(task),
                            policy_label(&task.metadata)
                        ));
                    }
                }
            }
            pinned_tasks.insert(key);
        }

        let members: BTreeSet<&str> = self.members.iter().map(|m| m.policy.as_str()).collect();
        for (kind, groups) in [
            ("SCC", sccs.keys().copied().collect::<Vec<_>>()),
            ("Role", roles.keys().copied().collect()),
            ("RoleBinding", role_bindings.keys().copied().collect()),
        ] {
            for policy in groups.into_iter().filter(|p| !members.contains(p)) {
                problems.push(format!(
                    "a {kind} is labelled for {policy}, which is not a policy of the fleet"
                ));
            }
        }
        for task in &self.tasks {
            let key = (task.namespace().unwrap_or_default(), task.name_any());
            if pinned_tasks.contains(&key) {
                continue;
            }
            if pin(task).is_some() || policy_label(&task.metadata).is_some() {
                problems.push(format!(
                    "Task {}/{} should not be pinned: {REQUIRED_SCC_ANNOTATION}={:?}, {POLICY_LABEL}={:?}",
                    key.0,
                    key.1,
                    pin(task),
                    policy_label(&task.metadata)
                ));
            }
        }
        problems
    }

    /// Everything of the fleet still on the cluster after its policies were
    /// deleted: any policy (with its finalizers), any SCC, Role or
    /// RoleBinding labelled for one, any Task still carrying a pin or a
    /// policy label. Empty when nothing is left behind.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .policies
            .iter()
            .map(|p| {
                format!(
                    "BuildPolicy {} (finalizers {:?}, deletionTimestamp {:?})",
                    p.name(),
                    p.finalizers(),
                    p.metadata
                        .deletion_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                )
            })
            .collect();
        left.extend(
            self.sccs
                .iter()
                .map(|s| format!("SCC {}", location(&s.metadata))),
        );
        left.extend(
            self.roles
                .iter()
                .map(|r| format!("Role {}", location(&r.metadata))),
        );
        left.extend(
            self.role_bindings
                .iter()
                .map(|b| format!("RoleBinding {}", location(&b.metadata))),
        );
        left.extend(
            self.tasks
                .iter()
                .filter(|t| pin(t).is_some() || policy_label(&t.metadata).is_some())
                .map(|t| {
                    format!(
                        "Task {}: {REQUIRED_SCC_ANNOTATION}={:?}, {POLICY_LABEL}={:?}",
                        location(&t.metadata),
                        pin(t),
                        policy_label(&t.metadata)
                    )
                }),
        );
        left
    }

    /// One line for the test log: what the audit found.
    pub fn counts(&self) -> String {
        let pinned = self.tasks.iter().filter(|t| pin(t).is_some()).count();
        format!(
            "scope {}: {} policies ({} Ready), {} SCCs, {} Roles, {} RoleBindings, {} pinned Tasks \
             (of {} Tasks in {} namespaces)",
            self.scope,
            self.policies.len(),
            self.policies.iter().filter(|p| is_ready(p)).count(),
            self.sccs.len(),
            self.roles.len(),
            self.role_bindings.len(),
            pinned,
            self.tasks.len(),
            self.namespaces.len()
        )
    }
}

impl Drop for Fleet {
    /// Deletes its namespaces, and any policy of its scope still there with
    /// its finalizer removed (its SCC is then garbage-collected; labelled
    /// SCCs are deleted too), on a thread of its own with a runtime of its
    /// own: drop cannot await, and the test's runtime may be unwinding.
    /// Never panics: a panic here, while a failed test unwinds, would abort
    /// the test binary.
    fn drop(&mut self) {
        let scope = self.scope.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(remove_fleet(&scope))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("[test-support] cleaning up fleet {}: {e}", self.scope),
            Err(_) => eprintln!("[test-support] cleaning up fleet {} panicked", self.scope),
        }
    }
}

async fn remove_fleet(scope: &str) -> Result<(), String> {
    let client = crate::client().await;
    let policies: Api<BuildPolicy> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{SCOPE_LABEL}={scope}"));
    let left = policies.list(&selector).await.map_err(|e| e.to_string())?;
    if !left.items.is_empty() {
        eprintln!(
            "[test-support] fleet {scope}: {} policies left; deleting them without their finalizer",
            left.items.len()
        );
        let _ = policies
            .delete_collection(&DeleteParams::background(), &selector)
            .await;
        let unfinalize = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        all(left.items.iter().map(|p| {
            let (policies, unfinalize) = (policies.clone(), &unfinalize);
            async move {
                let _ = policies
                    .patch(p.name(), &PatchParams::default(), unfinalize)
                    .await;
            }
        }))
        .await;
        let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());
        let prefix = format!("{scope}-");
        if let Ok(list) = sccs.list(&ListParams::default().labels(POLICY_LABEL)).await {
            all(list
                .items
                .iter()
                .filter(|s| policy_label(&s.metadata).is_some_and(|p| p.starts_with(&prefix)))
                .map(|s| {
                    let sccs = sccs.clone();
                    async move {
                        let _ = sccs.delete(s.name(), &DeleteParams::background()).await;
                    }
                }))
            .await;
        }
    }
    // Namespaces cannot be deleted by collection: one by one.
    let namespaces: Api<Namespace> = Api::all(client);
    let list = namespaces
        .list_metadata(&ListParams::default().labels(&format!("{FLEET_LABEL}={scope}")))
        .await
        .map_err(|e| e.to_string())?;
    all(list.items.iter().map(|ns| {
        let namespaces = namespaces.clone();
        async move {
            let _ = namespaces
                .delete(&ns.name_any(), &DeleteParams::background())
                .await;
        }
    }))
    .await;
    Ok(())
}

//! In-memory caches of everything a reconcile reads. Reconciles read only
//! from these, so a converged cluster costs the API server no requests, and
//! the watches behind them are what wake the controller up on drift.

use std::sync::Arc;

use buildpolicy_api::keys::ownership;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task, TaskRun, scc};
use buildpolicy_policy::SccSchema;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::index::{Indexed, Key};

/// Read handles of every cache the controller keeps.
#[derive(Clone)]
pub struct Caches {
    /// Indexed by the namespace each names.
    pub policies: Indexed<BuildPolicy>,
    /// Indexed by the users and groups each lists.
    pub sccs: Indexed<SecurityContextConstraints>,
    /// Every Role and RoleBinding (the managed ones in full, the others
    /// reduced to what decides SCC `use`), and every ClusterRole and
    /// ClusterRoleBinding likewise: who may use which SCC. The managed ones
    /// are indexed by policy, RoleBindings by namespace too.
    pub roles: Indexed<Role>,
    pub role_bindings: Indexed<RoleBinding>,
    pub cluster_roles: Indexed<ClusterRole>,
    pub cluster_role_bindings: Indexed<ClusterRoleBinding>,
    /// Indexed by their policy label.
    pub tasks: Indexed<PartialObjectMeta<Task>>,
    pub namespaces: Indexed<PartialObjectMeta<Namespace>>,
    pub service_accounts: Indexed<PartialObjectMeta<ServiceAccount>>,
    /// The SCC CRD (only it, reduced to its versions' top-level field
    /// names): which SCC fields the cluster's OpenShift knows.
    pub scc_crd: Store<CustomResourceDefinition>,
    /// TaskRuns of pinned Tasks (Tekton copies the Task's policy label onto
    /// them), reduced to their Task, pod and `Succeeded` condition; indexed
    /// by that label.
    pub task_runs: Indexed<TaskRun>,
    /// The confinement ValidatingAdmissionPolicy (by name) and the bindings
    /// the operator manages; empty where the server has no such API.
    pub admission_policies: Indexed<ValidatingAdmissionPolicy>,
    /// Indexed by policy.
    pub admission_bindings: Indexed<ValidatingAdmissionPolicyBinding>,
    /// One flag per cache, true once it holds a full list (the SCC CRD's:
    /// or once it turned out unreadable).
    pub synced: Vec<tokio::sync::watch::Receiver<bool>>,
}

impl Caches {
    /// Resolves once every cache has seen its first full list.
    pub async fn ready(&self) {
        for synced in &self.synced {
            // A closed channel means the controller is shutting down; the
            // reconcile then fails on its API calls, as it should.
            let _ = synced.clone().wait_for(|synced| *synced).await;
        }
    }

    /// The SCC schema the cluster serves; the newest one the operator knows
    /// when the CRD is absent or cannot be read.
    pub fn scc_schema(&self) -> SccSchema {
        self.scc_crd
            .get(&ObjectRef::new(scc::CRD_NAME))
            .and_then(|crd| SccSchema::from_crd(&crd))
            .unwrap_or_default()
    }

    pub fn scc(&self, name: &str) -> Option<Arc<SecurityContextConstraints>> {
        self.sccs.get(&ObjectRef::new(name))
    }

    pub fn namespace_exists(&self, name: &str) -> bool {
        self.namespaces.get(&ObjectRef::new(name)).is_some()
    }

    pub fn service_account_exists(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    pub fn task(&self, namespace: &str, name: &str) -> Option<Arc<PartialObjectMeta<Task>>> {
        self.tasks.get(&ObjectRef::new(name).within(namespace))
    }

    /// TaskRuns in `namespace` of Tasks that `policy` pinned.
    pub fn task_runs_of(&self, policy: &str, namespace: &str) -> Vec<Arc<TaskRun>> {
        let mut runs = Self::labelled(&self.task_runs, policy);
        runs.retain(|r| r.metadata.namespace.as_deref() == Some(namespace));
        runs
    }

    pub fn policy(&self, name: &str) -> Option<Arc<BuildPolicy>> {
        self.policies.get(&ObjectRef::new(name))
    }

    /// Objects in `cache` labelled as belonging to `policy` (Tasks and
    /// TaskRuns carry the policy label only), from its index: the cache must
    /// be indexed by [`crate::index::labelled_keys`].
    pub fn labelled<K>(cache: &Indexed<K>, policy: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut objects = cache.under(&Key::Policy(policy.to_owned()));
        objects.retain(|o| ownership(o.as_ref()).policy() == Some(policy));
        objects
    }

    /// Objects in `cache` the operator created for `policy`: the policy label
    /// and the managed-by label (the RBAC caches hold everyone's objects),
    /// from its index: the cache must be indexed by
    /// [`crate::index::managed_keys`] or [`crate::index::role_binding_keys`].
    pub fn managed<K>(cache: &Indexed<K>, policy: &str) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut objects = cache.under(&Key::Policy(policy.to_owned()));
        objects.retain(|o| ownership(o.as_ref()).managed() == Some(policy));
        objects
    }
}

//! In-memory caches of everything a reconcile reads. Reconciles read only
//! from these, so a converged cluster costs the API server no requests, and
//! the watches behind them are what wake the controller up on drift.

use std::sync::Arc;

use buildpolicy_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task, TaskRun, scc};
use buildpolicy_policy::SccSchema;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// Read handles of every cache the controller keeps.
#[derive(Clone)]
pub struct Caches {
    pub policies: Store<BuildPolicy>,
    pub sccs: Store<SecurityContextConstraints>,
    /// Every Role and RoleBinding (the managed ones in full, the others
    /// reduced to what decides SCC `use`), and every ClusterRole and
    /// ClusterRoleBinding likewise: who may use which SCC.
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub cluster_roles: Store<ClusterRole>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    pub tasks: Store<PartialObjectMeta<Task>>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// The SCC CRD (only it, reduced to its versions' top-level field
    /// names): which SCC fields the cluster's OpenShift knows.
    pub scc_crd: Store<CustomResourceDefinition>,
    /// TaskRuns of pinned Tasks (Tekton copies the Task's policy label onto
    /// them), reduced to their Task, pod and `Succeeded` condition.
    pub task_runs: Store<TaskRun>,
    /// The confinement ValidatingAdmissionPolicy (by name) and the bindings
    /// the operator manages; empty where the server has no such API.
    pub admission_policies: Store<ValidatingAdmissionPolicy>,
    pub admission_bindings: Store<ValidatingAdmissionPolicyBinding>,
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
        self.task_runs.state_filter(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && r.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy)
        })
    }

    pub fn policy(&self, name: &str) -> Option<Arc<BuildPolicy>> {
        self.policies.get(&ObjectRef::new(name))
    }

    /// Objects in `store` labelled as belonging to `policy` (Tasks carry the
    /// policy label only).
    pub fn labelled<K>(store: &Store<K>, policy: &str) -> Vec<Arc<K>>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        store.state_filter(|o| o.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy))
    }

    /// Objects in `store` the operator created for `policy`: the policy label
    /// and the managed-by label (the RBAC caches hold everyone's objects).
    pub fn managed<K>(store: &Store<K>, policy: &str) -> Vec<Arc<K>>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        store.state_filter(|o| {
            let labels = o.labels();
            labels.get(POLICY_LABEL).map(String::as_str) == Some(policy)
                && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
        })
    }
}

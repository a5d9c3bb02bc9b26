//! API types of the buildpolicy operator: the `BuildPolicy` custom resource
//! and the foreign resources it produces (OpenShift SCCs, Tekton Tasks).

pub mod capability;
pub mod conditions;
pub mod keys;
pub mod policy;
pub mod scc;
pub mod tekton;

pub use policy::{BuildPolicy, BuildPolicySpec, BuildPolicyStatus, Isolation};
pub use scc::SecurityContextConstraints;
pub use tekton::{Task, TaskRun};

use kube::CustomResourceExt;

/// The CRD of `BuildPolicy`, as YAML, exactly as `crdgen` writes it.
pub fn crd_yaml() -> String {
    let crd = BuildPolicy::crd();
    serde_yaml_ng::to_string(&crd).expect("the CRD serialises to YAML")
}

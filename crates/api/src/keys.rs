//! Names of the labels, annotations and markers the operator writes.

/// The one field manager every write of the operator uses.
pub const FIELD_MANAGER: &str = "buildpolicy-operator";

/// OpenShift's annotation that pins a pod to one SCC (openshift/api
/// `security/v1/consts.go`, GA since OpenShift 4.14). Tekton copies Task
/// annotations to the TaskRun and its pod.
pub const REQUIRED_SCC_ANNOTATION: &str = "openshift.io/required-scc";

/// The SCC OpenShift admitted a pod under.
pub const ADMITTED_SCC_ANNOTATION: &str = "openshift.io/scc";

/// Label naming the BuildPolicy that owns (or pinned) an object.
pub const POLICY_LABEL: &str = "buildpolicy.dev/policy";

/// Conventional label saying which tool manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY_LABEL`] on everything the operator creates.
pub const MANAGED_BY_VALUE: &str = "buildpolicy-operator";

/// Finalizer that lets the operator revoke a policy's grant before the
/// policy disappears, also where garbage collection does not run.
pub const FINALIZER: &str = "buildpolicy.dev/cleanup";

/// Prefix of every generated SCC, Role and RoleBinding name.
pub const NAME_PREFIX: &str = "buildpolicy-";

/// Name of the SCC, Role and RoleBinding a policy owns.
pub fn owned_name(policy: &str) -> String {
    format!("{NAME_PREFIX}{policy}")
}

/// CRI-O's per-pod user namespace request (`io.kubernetes.cri-o.userns-mode`,
/// honoured for pods whose runtime class allows it). `auto` lets CRI-O pick
/// a free range of host IDs; `size=65536` maps uid/gid 0–65535 inside, which
/// `newuidmap` needs for the build's own nested mappings.
pub const CRIO_USERNS_MODE_ANNOTATION: &str = "io.kubernetes.cri-o.userns-mode";
pub const CRIO_USERNS_MODE_VALUE: &str = "auto:size=65536";

/// Activates CRI-O's `openshift-builder` workload on OpenShift nodes, the
/// workload that allows the userns-mode annotation.
pub const OPENSHIFT_BUILDER_ANNOTATION: &str = "io.openshift.builder";

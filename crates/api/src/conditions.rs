//! Condition types and reasons on `BuildPolicy.status.conditions`.
//!
//! `Ready` summarises the others. Reasons are stable CamelCase words that
//! alerts and Argo CD health checks may match on.

/// Everything the policy grants is in place and pinned.
pub const READY: &str = "Ready";
/// The generated SCC exists with exactly the wanted fields.
pub const SCC_READY: &str = "SCCReady";
/// The Role and RoleBinding let exactly the service account use the SCC.
pub const RBAC_READY: &str = "RBACReady";
/// Every listed Task carries the pin.
pub const TASKS_PINNED: &str = "TasksPinned";

/// Advisory: unpinned pods of the service account would not be admitted
/// under the generated SCC ahead of the SCC they get without it. Does not
/// change `Ready`.
pub const PREEMPTION_SAFE: &str = "PreemptionSafe";
/// Advisory: every step of the pinned Tasks would pass SCC admission under
/// the generated SCC. Does not change `Ready`.
pub const TASKS_ADMISSIBLE: &str = "TasksAdmissible";

/// Advisory: the pods Tekton created for the latest TaskRun of each pinned
/// Task were admitted (reported from the TaskRuns; absent until one ran).
/// Does not change `Ready`.
pub const BUILDS_ADMITTED: &str = "BuildsAdmitted";

/// Advisory: the generated SCC is admitted only for the pods the pipeline
/// controller creates for the listed Tasks (a ValidatingAdmissionPolicy
/// binding). `False` says why not: Warn mode, Off, or unsupported. Does not
/// change `Ready`.
pub const CONFINED: &str = "Confined";

/// kstatus (the convention of Flux, kpt and cli-utils): present, `True`, only
/// while `Ready` is `False` for a reason only a person can fix (an invalid
/// spec, the ceiling, a conflict, the cluster's OpenShift); reason and
/// message are `Ready`'s. Absent otherwise.
pub const STALLED: &str = "Stalled";
/// kstatus: present, `True`, only while `Ready` is `False` for a reason the
/// operator clears by itself (it waits for a namespace, service account or
/// Task to appear, or retries a failed write); reason and message are
/// `Ready`'s. Absent otherwise.
pub const RECONCILING: &str = "Reconciling";

/// Whether `Ready=False` with `reason` waits for a person (`Stalled`)
/// rather than for the operator or for an object to appear (`Reconciling`).
pub fn needs_a_person(reason: &str) -> bool {
    matches!(
        reason,
        reason::INVALID_SPEC
            | reason::CAPABILITY_NOT_ALLOWED
            | reason::NAMESPACE_NOT_ALLOWED
            | reason::SERVICE_ACCOUNT_NOT_ALLOWED
            | reason::USER_NAMESPACE_REQUIRED
            | reason::UNSUPPORTED_BY_CLUSTER
            | reason::SCC_CONFLICT
            | reason::TASK_CONFLICT
            | reason::TASK_DIGEST_REQUIRED
            | reason::TASK_CONTENT_CHANGED
    )
}

/// Reasons. One per thing that can be wrong, so a reader knows what to fix.
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const NAMESPACE_NOT_FOUND: &str = "NamespaceNotFound";
    pub const SERVICE_ACCOUNT_NOT_FOUND: &str = "ServiceAccountNotFound";
    pub const TASK_NOT_FOUND: &str = "TaskNotFound";
    pub const TASK_CONFLICT: &str = "TaskConflict";
    pub const SCC_CONFLICT: &str = "SCCConflict";
    pub const CAPABILITY_NOT_ALLOWED: &str = "CapabilityNotAllowed";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// `spec.serviceAccountName` is `default` and the ceiling does not allow it.
    pub const SERVICE_ACCOUNT_NOT_ALLOWED: &str = "ServiceAccountNotAllowed";
    /// The ceiling requires a user-namespace `spec.isolation` for a
    /// capability the policy asks for.
    pub const USER_NAMESPACE_REQUIRED: &str = "UserNamespaceRequired";
    /// The policy needs an SCC field the cluster's SCC schema does not have
    /// (an older OpenShift): `spec.isolation: PodUserNamespace` without
    /// `userNamespaceLevel`.
    pub const UNSUPPORTED_BY_CLUSTER: &str = "UnsupportedByCluster";
    /// The ceiling requires a reviewed digest (`spec.taskDigests`) for
    /// every listed Task, and one has none.
    pub const TASK_DIGEST_REQUIRED: &str = "TaskDigestRequired";
    /// A listed Task's live `spec` differs from its reviewed digest: it is
    /// not granted until the Task is restored or the digest updated.
    pub const TASK_CONTENT_CHANGED: &str = "TaskContentChanged";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const WAITING: &str = "Waiting";
    /// PreemptionSafe=True: unpinned pods get the SCC they got before.
    pub const SORTS_AFTER_DEFAULT: &str = "SortsAfterDefault";
    /// PreemptionSafe=False: the generated SCC would win over another SCC.
    pub const PREEMPTS: &str = "Preempts";
    /// TasksAdmissible=True.
    pub const ADMISSIBLE: &str = "Admissible";
    /// TasksAdmissible=False: a step would be refused by SCC admission.
    pub const NOT_ADMISSIBLE: &str = "NotAdmissible";
    /// TasksAdmissible=False: the pods would be admitted, but a step that
    /// runs a Buildah build lacks a capability Buildah needs (for `RUN`, a
    /// base image with file capabilities, a `USER` switch, or any build).
    pub const BUILDAH_LACKS_CAPABILITIES: &str = "BuildahLacksCapabilities";
    /// BuildsAdmitted=True: the latest TaskRuns' pods were admitted.
    pub const PODS_ADMITTED: &str = "PodsAdmitted";
    /// BuildsAdmitted=False: admission refused the pod of a TaskRun.
    pub const POD_REFUSED: &str = "PodRefused";
    /// Confined=True: the binding denies everything else.
    pub const ENFORCED: &str = "Enforced";
    /// Confined=False: the ceiling's confinement mode is `Warn`.
    pub const WARN_ONLY: &str = "WarnOnly";
    /// Confined=False: the ceiling's confinement mode is `Off`.
    pub const CONFINEMENT_OFF: &str = "ConfinementOff";
    /// Confined=False: the API server serves no ValidatingAdmissionPolicy.
    pub const CONFINEMENT_UNSUPPORTED: &str = "ConfinementUnsupported";
}

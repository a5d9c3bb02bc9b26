//! The `BuildPolicy` custom resource, `buildpolicy.dev/v1alpha1`.
//!
//! The validation rules below are the first line of defence: the API server
//! rejects a bad policy before anything is stored, with a message that says
//! what to write instead. The controller re-validates everything (see the
//! `buildpolicy-policy` crate), because a CRD can be old or edited by hand.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::capability::KNOWN_CAPABILITIES_CEL_LIST;

/// Longest policy name: the name is also a label value on every object the
/// policy owns, and label values are at most 63 characters.
pub const MAX_POLICY_NAME_LEN: usize = 63;
/// Most capabilities one policy may list (Linux defines 41).
pub const MAX_CAPABILITIES: usize = 64;
/// Most Tasks one policy may pin.
pub const MAX_TASKS: usize = 64;

/// What the policy grants: which capabilities, to which service account in
/// which namespace, for the pods of which Tekton Tasks.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "buildpolicy.dev",
    version = "v1alpha1",
    kind = "BuildPolicy",
    plural = "buildpolicies",
    singular = "buildpolicy",
    shortname = "bpol",
    category = "tekton",
    status = "BuildPolicyStatus",
    derive = "PartialEq",
    doc = "Grants the builds of one service account in one namespace exactly the Linux capabilities they need, through a generated SecurityContextConstraints that only the named Tekton Tasks are pinned to.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace", description = "Namespace the builds run in"),
    printcolumn(name = "ServiceAccount", type_ = "string", json_path = ".spec.serviceAccountName", description = "The only service account that may use the SCC"),
    printcolumn(name = "SCC", type_ = "string", json_path = ".status.sccName", description = "The SecurityContextConstraints this policy owns"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether everything the policy grants is in place"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1, description = "Why the policy is (not) Ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(format!(
        "self.metadata.name.size() <= {MAX_POLICY_NAME_LEN} && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    ))
    .message(Message::Message(format!(
        "metadata.name must be a DNS label of at most {MAX_POLICY_NAME_LEN} characters (lower-case letters, digits and '-'): it names the generated SCC 'buildpolicy-<name>' and labels every object the policy owns"
    ))),
)]
#[serde(rename_all = "camelCase")]
pub struct BuildPolicySpec {
    /// Namespace the builds run in. The Role and RoleBinding that allow the
    /// service account to use the SCC are created here, and the Tasks are
    /// looked up here.
    #[x_kube(validation = Rule::new("self.size() <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.namespace must be a namespace name: a DNS label of at most 63 lower-case letters, digits and '-', e.g. private-ai-demo"))]
    pub namespace: String,

    /// The only subject that may use the generated SCC:
    /// `system:serviceaccount:<namespace>:<serviceAccountName>`. It is the
    /// service account the build's TaskRuns run as.
    #[x_kube(validation = Rule::new("self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("spec.serviceAccountName must be a service account name: lower-case letters, digits, '-' and '.', e.g. model-build-sa"))]
    pub service_account_name: String,

    /// Linux capabilities the builds need, without the `CAP_` prefix, e.g.
    /// `[SETUID, SETGID, SYS_ADMIN, SYS_CHROOT]` for Buildah. They become the
    /// SCC's `allowedCapabilities`, and nothing else is granted. `ALL` and `*`
    /// are refused: list each capability. The operator's ceiling may refuse
    /// capabilities this schema accepts.
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[x_kube(
        validation = Rule::new("self.size() > 0").message("spec.capabilities must list at least one capability, e.g. [SETUID, SETGID]"),
        validation = Rule::new("self.all(c, !c.startsWith('CAP_'))").message(Message::Expression("'spec.capabilities: write capability names without the CAP_ prefix: write ' + self.filter(c, c.startsWith('CAP_')).map(c, c.substring(4)).join(', ') + ' instead of ' + self.filter(c, c.startsWith('CAP_')).join(', ')".into())),
        validation = Rule::new("self.all(c, c != 'ALL' && c != '*')").message("spec.capabilities: ALL and * are refused: list each capability the build needs, e.g. SETUID, SETGID, SYS_ADMIN, SYS_CHROOT"),
        validation = Rule::new("self.all(c, c.startsWith('CAP_') || c == 'ALL' || c == '*' || c in KNOWN)".replace("KNOWN", KNOWN_CAPABILITIES_CEL_LIST)).message(Message::Expression("'spec.capabilities: unknown capability ' + self.filter(c, !c.startsWith('CAP_') && c != 'ALL' && c != '*' && !(c in KNOWN)).join(', ') + ': write Linux capability names in upper case, e.g. SYS_ADMIN'".replace("KNOWN", KNOWN_CAPABILITIES_CEL_LIST))),
        validation = Rule::new("self.all(c, self.filter(d, d == c).size() == 1)").message(Message::Expression("'spec.capabilities: each capability may appear once; remove the repeated ' + self.filter(c, self.filter(d, d == c).size() > 1)[0]".into())),
    )]
    pub capabilities: Vec<String>,

    /// Names of the Tekton Tasks (`tekton.dev`, in `spec.namespace`) whose pods
    /// run the build. Each gets the annotation `openshift.io/required-scc`,
    /// which Tekton copies to the TaskRun and its pod, so only those pods are
    /// admitted under the generated SCC and no other pod is affected by it.
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[x_kube(
        validation = Rule::new("self.size() > 0").message("spec.tasks must name at least one Tekton Task to pin: an SCC that no Task is pinned to could be picked for other pods"),
        validation = Rule::new("self.all(t, t.size() <= 253 && t.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))").message("spec.tasks: each entry must be a Task name: lower-case letters, digits, '-' and '.', e.g. build-and-push-v2"),
        validation = Rule::new("self.all(t, self.filter(u, u == t).size() == 1)").message(Message::Expression("'spec.tasks: each Task may appear once; remove the repeated ' + self.filter(t, self.filter(u, u == t).size() > 1)[0]".into())),
    )]
    pub tasks: Vec<String>,
}

/// What the operator observed the last time it reconciled the policy.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuildPolicyStatus {
    /// The `metadata.generation` this status describes. When it is lower
    /// than `metadata.generation`, the operator has not yet acted on the
    /// latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the SecurityContextConstraints this policy owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scc_name: Option<String>,

    /// Tasks that currently carry this policy's `openshift.io/required-scc`
    /// pin, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned_tasks: Vec<String>,

    /// `Ready` summarises the others: `SCCReady`, `RBACReady`, `TasksPinned`.
    /// Each carries `observedGeneration`, a CamelCase `reason` and a one-line
    /// `message` naming what is wrong and how to fix it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

impl BuildPolicy {
    /// The policy's name (cluster-scoped objects always have one once stored).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The condition of the given type, if the status has one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }
}

/// `apiVersion` of BuildPolicy objects.
pub const API_VERSION: &str = "buildpolicy.dev/v1alpha1";
/// `kind` of BuildPolicy objects.
pub const KIND: &str = "BuildPolicy";

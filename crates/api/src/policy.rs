//! The `BuildPolicy` custom resource, `buildpolicy.dev/v1alpha1`.
//!
//! The validation rules below are the first line of defence: the API server
//! rejects a bad policy before anything is stored, with a message that says
//! what to write instead. The controller re-validates everything (see the
//! `buildpolicy-policy` crate), because a CRD can be old or edited by hand.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::capability::KNOWN_CAPABILITIES_CEL_LIST;

/// Longest policy name: the name is also a label value on every object the
/// policy owns, and label values are at most 63 characters.
pub const MAX_POLICY_NAME_LEN: usize = 63;
/// Most capabilities one policy may list: Linux defines 41.
pub const MAX_CAPABILITIES: usize = 41;
/// Most Tasks one policy may pin.
pub const MAX_TASKS: usize = 32;

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
    validation = Rule::new("!has(self.spec.taskDigests) || self.spec.taskDigests.all(t, t in self.spec.tasks)")
        .message("spec.taskDigests names a Task that spec.tasks does not list: digest only the listed Tasks, or add the Task to spec.tasks"),
)]
#[serde(rename_all = "camelCase")]
pub struct BuildPolicySpec {
    /// Namespace the builds run in. The Role and RoleBinding that allow the
    /// service account to use the SCC are created here, and the Tasks are
    /// looked up here.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.size() <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("spec.namespace must be a namespace name: a DNS label of at most 63 lower-case letters, digits and '-', e.g. private-ai-demo"))]
    pub namespace: String,

    /// The only subject that may use the generated SCC:
    /// `system:serviceaccount:<namespace>:<serviceAccountName>`. It is the
    /// service account the build's TaskRuns run as.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')")
        .message("spec.serviceAccountName must be a service account name: lower-case letters, digits, '-' and '.', e.g. model-build-sa"))]
    pub service_account_name: String,

    /// Linux capabilities the builds need, without the `CAP_` prefix, e.g.
    /// `[SETUID, SETGID, SYS_ADMIN, SYS_CHROOT, SETFCAP]` for Buildah
    /// (docs/capabilities.md). They become the
    /// SCC's `allowedCapabilities`, and nothing else is granted. `ALL` and `*`
    /// are refused: list each capability. The operator's ceiling may refuse
    /// capabilities this schema accepts.
    #[schemars(schema_with = "capabilities_schema")]
    pub capabilities: Vec<String>,

    /// Names of the Tekton Tasks (`tekton.dev`, in `spec.namespace`) whose pods
    /// run the build. Each gets the annotation `openshift.io/required-scc`,
    /// which Tekton copies to the TaskRun and its pod, so only those pods are
    /// admitted under the generated SCC and no other pod is affected by it.
    #[schemars(schema_with = "tasks_schema")]
    pub tasks: Vec<String>,

    /// The reviewed content of listed Tasks: Task name to `sha256:<hex>`,
    /// the digest of the Task's `spec` that `buildpolicy-operator render`
    /// and `check --task FILE` print. A listed Task whose live `spec` has
    /// another digest is not granted: its pin is removed, its pods are
    /// refused, and `TasksPinned` names both digests and who last changed
    /// it, until the Task is restored or the digest updated. Optional per
    /// Task, unless the operator's ceiling sets
    /// `confinement.requireTaskDigests`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "task_digests_schema")]
    pub task_digests: BTreeMap<String, String>,

    /// Which user namespace the build's root and capabilities live in.
    /// `HostUserNamespace` (the default): the SCC admits pods in the host's
    /// user namespace, so the capabilities are the host's. `PodUserNamespace`:
    /// the SCC requires `hostUsers: false` (Kubernetes user namespaces), so
    /// root and the capabilities exist only inside the pod's own user
    /// namespace; the PipelineRun must set `hostUsers: false` in its pod
    /// template. `CRIOUserNamespace`: the pinned Tasks also get CRI-O's
    /// `io.kubernetes.cri-o.userns-mode` and `io.openshift.builder`
    /// annotations, and CRI-O puts the pod in a user namespace by itself
    /// (no pipeline change; needs CRI-O's builder workload, as on OpenShift).
    #[serde(default, skip_serializing_if = "Isolation::is_default")]
    pub isolation: Isolation,
}

/// Where a build's root user and capabilities live: see `spec.isolation`.
#[derive(
    schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum Isolation {
    /// The host's user namespace: today's OpenShift builds. Root in the
    /// build is root on the node, so the capabilities are the node's.
    #[default]
    HostUserNamespace,
    /// A Kubernetes pod-level user namespace (`hostUsers: false`), required
    /// by the SCC (`userNamespaceLevel: RequirePodLevel`), as OpenShift's
    /// `nested-container` SCC does.
    PodUserNamespace,
    /// A user namespace CRI-O creates when the pod carries
    /// `io.kubernetes.cri-o.userns-mode`; the operator sets it on the
    /// pinned Tasks, and Tekton copies it to their pods.
    #[serde(rename = "CRIOUserNamespace")]
    CrioUserNamespace,
}

impl Isolation {
    pub const ALL: [Isolation; 3] = [
        Isolation::HostUserNamespace,
        Isolation::PodUserNamespace,
        Isolation::CrioUserNamespace,
    ];

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The value as written in `spec.isolation`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HostUserNamespace => "HostUserNamespace",
            Self::PodUserNamespace => "PodUserNamespace",
            Self::CrioUserNamespace => "CRIOUserNamespace",
        }
    }

    /// Whether the build's root is confined to a user namespace.
    pub fn is_user_namespace(&self) -> bool {
        *self != Self::HostUserNamespace
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

/// DNS-1123 subdomain, as a CEL regular expression.
const DNS_SUBDOMAIN_CEL: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Rules on each capability name sit on the list items, so the API server's
/// error names the offending entry (`spec.capabilities[2]`).
fn capabilities_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Linux capabilities the builds need, without the `CAP_` prefix, e.g. `[SETUID, SETGID, SYS_ADMIN, SYS_CHROOT, SETFCAP]` for Buildah (docs/capabilities.md). They become the SCC's `allowedCapabilities`, and nothing else is granted. `ALL` and `*` are refused: list each capability. The operator's ceiling may refuse capabilities this schema accepts.",
        "type": "array",
        "maxItems": MAX_CAPABILITIES,
        "items": {
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [
                {
                    "rule": "!self.startsWith('CAP_')",
                    "messageExpression": "'write ' + self.substring(4) + ' instead of ' + self + ': capability names are written without the CAP_ prefix'"
                },
                {
                    "rule": "self != 'ALL' && self != '*'",
                    "message": "ALL and * are refused: list each capability the build needs, e.g. SETUID, SETGID, SYS_ADMIN, SYS_CHROOT, SETFCAP"
                },
                {
                    "rule": format!("self.startsWith('CAP_') || self == 'ALL' || self == '*' || self in {KNOWN_CAPABILITIES_CEL_LIST}"),
                    "messageExpression": format!("'unknown capability ' + self + ': ' + (self.upperAscii() in {KNOWN_CAPABILITIES_CEL_LIST} ? 'write ' + self.upperAscii() + ' (capability names are upper case, without CAP_)' : (self.upperAscii().startsWith('CAP_') && self.upperAscii().substring(4) in {KNOWN_CAPABILITIES_CEL_LIST} ? 'write ' + self.upperAscii().substring(4) + ' (capability names are upper case, without CAP_)' : 'write a Linux capability name in upper case, e.g. SYS_ADMIN'))")
                }
            ]
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.size() > 0",
                "message": "list at least one capability, e.g. [SETUID, SETGID]"
            },
            {
                "rule": "self.all(c, self.filter(d, d == c).size() == 1)",
                "messageExpression": "'each capability may appear once: remove the repeated ' + self.filter(c, self.filter(d, d == c).size() > 1)[0]"
            }
        ]
    })
}

fn tasks_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Names of the Tekton Tasks (`tekton.dev`, in `spec.namespace`) whose pods run the build. Each gets the annotation `openshift.io/required-scc`, which Tekton copies to the TaskRun and its pod, so only those pods are admitted under the generated SCC and no other pod is affected by it.",
        "type": "array",
        "maxItems": MAX_TASKS,
        "items": {
            "type": "string",
            "maxLength": 253,
            "x-kubernetes-validations": [
                {
                    "rule": format!("self.matches('{DNS_SUBDOMAIN_CEL}')"),
                    "messageExpression": "'\\'' + self + '\\' is not a Task name: use lower-case letters, digits, - and ., e.g. build-and-push-v2'"
                }
            ]
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.size() > 0",
                "message": "name at least one Tekton Task to pin: an SCC that no Task is pinned to could be picked for other pods"
            },
            {
                "rule": "self.all(t, self.filter(u, u == t).size() == 1)",
                "messageExpression": "'each Task may appear once: remove the repeated ' + self.filter(t, self.filter(u, u == t).size() > 1)[0]"
            }
        ]
    })
}

fn task_digests_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The reviewed content of listed Tasks: Task name to `sha256:<hex>`, the digest of the Task's `spec` that `buildpolicy-operator render` and `check --task FILE` print. A listed Task whose live `spec` has another digest is not granted: its pin is removed, its pods are refused, and `TasksPinned` names both digests and who last changed it, until the Task is restored or the digest updated. Optional per Task, unless the operator's ceiling sets `confinement.requireTaskDigests`.",
        "type": "object",
        "maxProperties": MAX_TASKS,
        "additionalProperties": {
            "type": "string",
            "maxLength": 71,
            "x-kubernetes-validations": [
                {
                    "rule": "self.matches('^sha256:[0-9a-f]{64}$')",
                    "messageExpression": "'\\'' + self + '\\' is not a Task digest: write sha256: and 64 lower-case hex digits, as buildpolicy-operator check --task FILE prints it'"
                }
            ]
        }
    })
}

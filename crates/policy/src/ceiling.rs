//! The admin ceiling: what any BuildPolicy may ask for at most.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Capabilities Buildah builds use; the default ceiling. None gives access
/// to the host: SETFCAP is there because Buildah hands it to `RUN` processes
/// and needs it to extract a base image's files that carry file capabilities
/// (measured on a real node: docs/capabilities.md).
pub const DEFAULT_ALLOWED_CAPABILITIES: &[&str] =
    &["SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"];

/// Namespaces no policy may target by default. A trailing `*` matches any suffix.
pub const DEFAULT_PROTECTED_NAMESPACES: &[&str] = &["default", "kube-*", "openshift-*"];

/// What cluster admins allow BuildPolicies to grant, at most.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ceiling {
    /// Capabilities a policy may request.
    #[serde(default = "default_allowed_capabilities")]
    pub allowed_capabilities: BTreeSet<String>,
    /// Namespaces a policy may not target; a trailing `*` matches any suffix.
    #[serde(default = "default_protected_namespaces")]
    pub protected_namespaces: Vec<String>,
    /// Capabilities a policy may only ask for with a user-namespace
    /// `spec.isolation` (`PodUserNamespace` or `CRIOUserNamespace`), e.g.
    /// `[SYS_ADMIN]`: root with them is then root in the build's own user
    /// namespace, not on the node. Empty by default.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub user_namespace_required_for: BTreeSet<String>,
    /// Whether a policy may name the namespace's `default` service account,
    /// which every pod that names no other runs as. Off by default.
    #[serde(default)]
    pub allow_default_service_account: bool,
    /// Whether, and as whom, the generated SCC is confined to the pods the
    /// pipeline controller creates for the listed Tasks.
    #[serde(default)]
    pub confinement: Confinement,
}

/// Admission-time confinement of each policy's SCC (a
/// ValidatingAdmissionPolicy and one binding per policy).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Confinement {
    /// `Enforce` (default): other pods under the SCC, and TaskRuns forging a
    /// listed Task's label, are refused. `Warn`: admitted with a warning and
    /// an audit annotation. `Off`: no binding.
    #[serde(default)]
    pub mode: ConfinementMode,
    /// Users that create the pods of TaskRuns: Tekton's controller. Default
    /// OpenShift Pipelines' `system:serviceaccount:openshift-pipelines:tekton-pipelines-controller`.
    #[serde(default = "default_pipeline_controllers")]
    pub pipeline_controllers: Vec<String>,
    /// Whether creating a listed Task, or changing its `spec`, is refused at
    /// admission for everyone but `taskEditors` and `taskEditorGroups`
    /// (default `true`): whoever changes a listed Task chooses what runs
    /// with the grant. Changes to metadata (the operator's pin) pass.
    #[serde(default = "yes")]
    pub guard_task_edits: bool,
    /// Users who may create listed Tasks and change their `spec`, e.g. the
    /// GitOps controller that syncs them from the reviewed repository
    /// (`system:serviceaccount:openshift-gitops:openshift-gitops-argocd-application-controller`).
    /// Empty by default: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_editors: Vec<String>,
    /// Groups whose members may do the same. Empty by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_editor_groups: Vec<String>,
    /// Whether every listed Task must carry a reviewed digest in the
    /// policy's `spec.taskDigests` (default `false`).
    #[serde(default)]
    pub require_task_digests: bool,
}

fn yes() -> bool {
    true
}

/// See [`Confinement::mode`].
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConfinementMode {
    #[default]
    Enforce,
    Warn,
    Off,
}

/// OpenShift Pipelines' controller, which creates the pods of TaskRuns.
pub const DEFAULT_PIPELINE_CONTROLLER: &str =
    "system:serviceaccount:openshift-pipelines:tekton-pipelines-controller";

fn default_pipeline_controllers() -> Vec<String> {
    vec![DEFAULT_PIPELINE_CONTROLLER.to_owned()]
}

impl Default for Confinement {
    fn default() -> Self {
        Self {
            mode: ConfinementMode::default(),
            pipeline_controllers: default_pipeline_controllers(),
            guard_task_edits: true,
            task_editors: Vec::new(),
            task_editor_groups: Vec::new(),
            require_task_digests: false,
        }
    }
}

fn default_allowed_capabilities() -> BTreeSet<String> {
    DEFAULT_ALLOWED_CAPABILITIES
        .iter()
        .map(|c| c.to_string())
        .collect()
}

fn default_protected_namespaces() -> Vec<String> {
    DEFAULT_PROTECTED_NAMESPACES
        .iter()
        .map(|n| n.to_string())
        .collect()
}

impl Default for Ceiling {
    fn default() -> Self {
        Self {
            allowed_capabilities: default_allowed_capabilities(),
            protected_namespaces: default_protected_namespaces(),
            user_namespace_required_for: BTreeSet::new(),
            allow_default_service_account: false,
            confinement: Confinement::default(),
        }
    }
}

impl Ceiling {
    /// Also protect `namespace` (the operator's own).
    pub fn protecting(mut self, namespace: &str) -> Self {
        if !self.protected_namespaces.iter().any(|n| n == namespace) {
            self.protected_namespaces.push(namespace.to_owned());
        }
        self
    }

    /// The pattern protecting `namespace`, if any.
    pub fn protection_of(&self, namespace: &str) -> Option<&str> {
        self.protected_namespaces
            .iter()
            .find(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => namespace.starts_with(prefix),
                None => namespace == pattern.as_str(),
            })
            .map(String::as_str)
    }

    /// Capabilities of `requested` that the ceiling grants only in a user
    /// namespace.
    pub fn needing_user_namespace<'a>(&self, requested: &'a [String]) -> Vec<&'a str> {
        requested
            .iter()
            .filter(|c| self.user_namespace_required_for.contains(c.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Whether a policy may request `capability`.
    pub fn allows_capability(&self, capability: &str) -> bool {
        self.allowed_capabilities.contains(capability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ceiling_allows_buildah_capabilities_only() {
        let ceiling = Ceiling::default();
        for cap in ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"] {
            assert!(ceiling.allows_capability(cap), "{cap}");
        }
        for cap in ["NET_ADMIN", "SYS_PTRACE", "ALL", "CAP_SYS_ADMIN"] {
            assert!(!ceiling.allows_capability(cap), "{cap}");
        }
    }

    #[test]
    fn protected_namespace_patterns_match_prefixes_and_exact_names() {
        let ceiling = Ceiling::default().protecting("buildpolicy-system");
        assert_eq!(ceiling.protection_of("kube-system"), Some("kube-*"));
        assert_eq!(
            ceiling.protection_of("openshift-config"),
            Some("openshift-*")
        );
        assert_eq!(ceiling.protection_of("default"), Some("default"));
        assert_eq!(
            ceiling.protection_of("buildpolicy-system"),
            Some("buildpolicy-system")
        );
        assert_eq!(ceiling.protection_of("defaults"), None);
        assert_eq!(ceiling.protection_of("private-ai-demo"), None);
    }

    #[test]
    fn ceiling_file_fields_default_and_unknown_fields_are_refused() {
        let ceiling: Ceiling = serde_yaml_ng::from_str("allowedCapabilities: [SETUID]").unwrap();
        assert_eq!(ceiling.allowed_capabilities.len(), 1);
        assert_eq!(ceiling.protected_namespaces, default_protected_namespaces());
        let err = serde_yaml_ng::from_str::<Ceiling>("allowedCapabilites: [SETUID]").unwrap_err();
        assert!(err.to_string().contains("allowedCapabilites"), "{err}");
    }
}

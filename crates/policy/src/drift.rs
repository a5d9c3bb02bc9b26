//! Semantic comparison of rendered objects with what the server holds.
//!
//! The operator only writes when something it owns differs, so a converged
//! cluster sees no writes at all. The comparison ignores what the server adds
//! (defaults, other managers' labels) and what OpenShift normalises (list
//! order, empty lists dropped), and names the fields that drifted so events
//! and metrics can say what was repaired.

use std::collections::BTreeMap;

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Whether `live` carries every label, annotation and ownerReference
/// `desired` asks for.
fn metadata_matches(desired: &ObjectMeta, live: &ObjectMeta) -> bool {
    fn subset(
        want: Option<&BTreeMap<String, String>>,
        have: Option<&BTreeMap<String, String>>,
    ) -> bool {
        want.into_iter()
            .flatten()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    }
    fn owner_present(want: &OwnerReference, have: &[OwnerReference]) -> bool {
        have.iter()
            .any(|o| o.uid == want.uid && o.controller == want.controller && o.kind == want.kind)
    }
    subset(desired.labels.as_ref(), live.labels.as_ref())
        && subset(desired.annotations.as_ref(), live.annotations.as_ref())
        && desired
            .owner_references
            .iter()
            .flatten()
            .all(|o| owner_present(o, live.owner_references.as_deref().unwrap_or_default()))
}

fn normalized_list(list: &Option<Vec<String>>) -> Vec<String> {
    let mut v = list.clone().unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

/// The SCC fields in which `live` differs from `desired`; empty when in sync.
pub fn scc_drift(
    desired: &SecurityContextConstraints,
    live: &SecurityContextConstraints,
) -> Vec<&'static str> {
    let mut drifted = Vec::new();
    let mut check = |name: &'static str, same: bool| {
        if !same {
            drifted.push(name);
        }
    };
    check(
        "metadata",
        metadata_matches(&desired.metadata, &live.metadata),
    );
    check("priority", desired.priority == live.priority);
    check(
        "allowPrivilegedContainer",
        desired.allow_privileged_container == live.allow_privileged_container,
    );
    check(
        "allowedCapabilities",
        normalized_list(&desired.allowed_capabilities)
            == normalized_list(&live.allowed_capabilities),
    );
    check(
        "defaultAddCapabilities",
        normalized_list(&desired.default_add_capabilities)
            == normalized_list(&live.default_add_capabilities),
    );
    check(
        "requiredDropCapabilities",
        normalized_list(&desired.required_drop_capabilities)
            == normalized_list(&live.required_drop_capabilities),
    );
    check(
        "allowHostDirVolumePlugin",
        desired.allow_host_dir_volume_plugin == live.allow_host_dir_volume_plugin,
    );
    check(
        "volumes",
        normalized_list(&desired.volumes) == normalized_list(&live.volumes),
    );
    check(
        "allowedFlexVolumes",
        desired.allowed_flex_volumes.clone().unwrap_or_default()
            == live.allowed_flex_volumes.clone().unwrap_or_default(),
    );
    check(
        "allowHostNetwork",
        desired.allow_host_network == live.allow_host_network,
    );
    check(
        "allowHostPorts",
        desired.allow_host_ports == live.allow_host_ports,
    );
    check(
        "allowHostPID",
        desired.allow_host_pid == live.allow_host_pid,
    );
    check(
        "allowHostIPC",
        desired.allow_host_ipc == live.allow_host_ipc,
    );
    // The CRD defaults an unset userNamespaceLevel to AllowHostLevel.
    let level = |l: &Option<String>| l.clone().unwrap_or_else(|| "AllowHostLevel".into());
    check(
        "userNamespaceLevel",
        level(&desired.user_namespace_level) == level(&live.user_namespace_level),
    );
    check(
        "defaultAllowPrivilegeEscalation",
        desired.default_allow_privilege_escalation == live.default_allow_privilege_escalation,
    );
    check(
        "allowPrivilegeEscalation",
        desired.allow_privilege_escalation == live.allow_privilege_escalation,
    );
    check(
        "seLinuxContext",
        desired.se_linux_context == live.se_linux_context,
    );
    check("runAsUser", desired.run_as_user == live.run_as_user);
    check(
        "supplementalGroups",
        desired.supplemental_groups == live.supplemental_groups,
    );
    check("fsGroup", desired.fs_group == live.fs_group);
    check(
        "readOnlyRootFilesystem",
        desired.read_only_root_filesystem == live.read_only_root_filesystem,
    );
    check(
        "users",
        normalized_list(&desired.users) == normalized_list(&live.users),
    );
    check(
        "groups",
        normalized_list(&desired.groups) == normalized_list(&live.groups),
    );
    check(
        "seccompProfiles",
        normalized_list(&desired.seccomp_profiles) == normalized_list(&live.seccomp_profiles),
    );
    check(
        "allowedUnsafeSysctls",
        normalized_list(&desired.allowed_unsafe_sysctls)
            == normalized_list(&live.allowed_unsafe_sysctls),
    );
    check(
        "forbiddenSysctls",
        normalized_list(&desired.forbidden_sysctls) == normalized_list(&live.forbidden_sysctls),
    );
    drifted
}

/// The Role fields in which `live` differs from `desired`.
pub fn role_drift(desired: &Role, live: &Role) -> Vec<&'static str> {
    let mut drifted = Vec::new();
    if !metadata_matches(&desired.metadata, &live.metadata) {
        drifted.push("metadata");
    }
    if desired.rules.clone().unwrap_or_default() != live.rules.clone().unwrap_or_default() {
        drifted.push("rules");
    }
    drifted
}

/// The RoleBinding fields in which `live` differs from `desired`.
pub fn role_binding_drift(desired: &RoleBinding, live: &RoleBinding) -> Vec<&'static str> {
    let mut drifted = Vec::new();
    if !metadata_matches(&desired.metadata, &live.metadata) {
        drifted.push("metadata");
    }
    if desired.role_ref != live.role_ref {
        drifted.push("roleRef");
    }
    // The server defaults a ServiceAccount subject's apiGroup to "".
    let subjects = |b: &RoleBinding| {
        let mut s = b.subjects.clone().unwrap_or_default();
        for subject in &mut s {
            subject.api_group = subject.api_group.take().filter(|g| !g.is_empty());
        }
        s
    };
    if subjects(desired) != subjects(live) {
        drifted.push("subjects");
    }
    drifted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Owner, render};
    use buildpolicy_api::BuildPolicySpec;

    fn desired() -> crate::Desired {
        let spec = BuildPolicySpec {
            namespace: "ns".into(),
            service_account_name: "sa".into(),
            capabilities: vec!["SETUID".into(), "SYS_ADMIN".into()],
            tasks: vec!["build".into()],
            isolation: Default::default(),
            task_digests: Default::default(),
        };
        render(
            &Owner {
                name: "p".into(),
                uid: Some("u1".into()),
            },
            &spec,
        )
    }

    #[test]
    fn identical_objects_have_no_drift() {
        let d = desired();
        assert!(scc_drift(&d.scc, &d.scc).is_empty());
        assert!(role_drift(&d.role, &d.role).is_empty());
        assert!(role_binding_drift(&d.role_binding, &d.role_binding).is_empty());
    }

    #[test]
    fn server_normalisation_is_not_drift() {
        let d = desired();
        let mut live = d.scc.clone();
        live.volumes.as_mut().unwrap().reverse();
        live.user_namespace_level = Some("AllowHostLevel".into());
        live.default_add_capabilities = Some(vec![]);
        live.metadata.resource_version = Some("42".into());
        live.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "x".into());
        assert_eq!(scc_drift(&d.scc, &live), Vec::<&str>::new());
        let mut binding = d.role_binding.clone();
        binding.subjects.as_mut().unwrap()[0].api_group = Some(String::new());
        assert!(role_binding_drift(&d.role_binding, &binding).is_empty());
    }

    #[test]
    fn escalations_by_hand_are_drift_and_named() {
        let d = desired();
        let mut live = d.scc.clone();
        live.allow_privileged_container = true;
        live.allowed_capabilities
            .as_mut()
            .unwrap()
            .push("NET_ADMIN".into());
        live.users = Some(vec!["system:admin".into()]);
        live.priority = Some(20);
        assert_eq!(
            scc_drift(&d.scc, &live),
            vec![
                "priority",
                "allowPrivilegedContainer",
                "allowedCapabilities",
                "users"
            ]
        );
    }

    #[test]
    fn removed_owner_reference_or_label_is_drift() {
        let d = desired();
        let mut live = d.role.clone();
        live.metadata.owner_references = None;
        assert_eq!(role_drift(&d.role, &live), vec!["metadata"]);
        let mut live = d.role_binding.clone();
        live.metadata.labels = None;
        live.subjects.as_mut().unwrap()[0].name = "default".into();
        assert_eq!(
            role_binding_drift(&d.role_binding, &live),
            vec!["metadata", "subjects"]
        );
    }
}

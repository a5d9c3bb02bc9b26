//! What the SCC defaulting admission (`security.openshift.io/DefaultSecurityContextConstraints`,
//! `SetDefaults_SCC` in openshift/apiserver-library-go `pkg/securitycontextconstraints/sccdefaults`)
//! does to an SCC on write. Admission orders and applies SCCs as stored, so
//! an SCC that is only rendered must go through this before it is compared.

use std::collections::BTreeSet;

use buildpolicy_api::SecurityContextConstraints;
use buildpolicy_api::scc::GroupStrategyOptions;

/// Every volume type `*` stands for, except `hostPath`
/// (`GetAllFSTypesExcept` in `pkg/securitycontextconstraints/util`).
pub const ALL_VOLUME_TYPES_BUT_HOST_PATH: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephFS",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageOS",
    "vsphere",
];

/// The SCC as the API server stores it.
///
/// The volume rules matter for the restriction score:
/// `allowHostDirVolumePlugin: true` adds `hostPath` to `volumes`, and `false`
/// removes `hostPath` and expands `*` to every other type, so such an SCC
/// scores as "non-trivial volumes" (100,000), not "host volumes" (200,000).
pub fn as_stored(scc: &SecurityContextConstraints) -> SecurityContextConstraints {
    let mut scc = scc.clone();
    for groups in [&mut scc.fs_group, &mut scc.supplemental_groups] {
        let strategy = groups.get_or_insert_with(GroupStrategyOptions::default);
        if strategy.type_.as_deref().unwrap_or_default().is_empty() {
            strategy.type_ = Some("RunAsAny".into());
        }
    }
    scc.users.get_or_insert_with(Vec::new);
    scc.groups.get_or_insert_with(Vec::new);

    let mut volumes: BTreeSet<String> = match &scc.volumes {
        None => BTreeSet::from(["*".to_owned()]),
        Some(v) if v.is_empty() && scc.allow_host_dir_volume_plugin => {
            BTreeSet::from(["hostPath".to_owned()])
        }
        Some(v) if v.is_empty() => BTreeSet::from(["none".to_owned()]),
        Some(v) => v.iter().cloned().collect(),
    };
    if scc.allow_host_dir_volume_plugin {
        if !volumes.contains("*") {
            volumes.insert("hostPath".to_owned());
        }
    } else {
        let had_all = volumes.remove("*");
        volumes.remove("hostPath");
        if had_all {
            volumes.extend(ALL_VOLUME_TYPES_BUT_HOST_PATH.iter().map(|v| v.to_string()));
        }
    }
    scc.volumes = Some(volumes.into_iter().collect());

    scc.allow_privilege_escalation.get_or_insert(true);
    scc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::restriction_score;
    use crate::admission::test_sccs::all_default_sccs;

    type List = Option<Vec<String>>;

    fn volumes(list: &[&str]) -> List {
        Some(list.iter().map(|v| v.to_string()).collect())
    }

    #[test]
    fn volume_defaults_follow_the_host_dir_volume_plugin_flag() {
        // (case, volumes, allowHostDirVolumePlugin, stored volumes)
        let cases: Vec<(&str, List, bool, Vec<&str>)> = vec![
            ("unset with the plugin keeps all", None, true, vec!["*"]),
            (
                "unset without the plugin is every type but hostPath",
                None,
                false,
                ALL_VOLUME_TYPES_BUT_HOST_PATH.to_vec(),
            ),
            (
                "empty with the plugin is hostPath",
                volumes(&[]),
                true,
                vec!["hostPath"],
            ),
            (
                "empty without the plugin is none",
                volumes(&[]),
                false,
                vec!["none"],
            ),
            (
                "the plugin adds hostPath",
                volumes(&["secret"]),
                true,
                vec!["hostPath", "secret"],
            ),
            (
                "without the plugin hostPath is removed",
                volumes(&["secret", "hostPath"]),
                false,
                vec!["secret"],
            ),
            (
                "the list comes back sorted and unique",
                volumes(&["secret", "emptyDir", "secret"]),
                false,
                vec!["emptyDir", "secret"],
            ),
        ];
        for (case, given, plugin, want) in cases {
            let scc = SecurityContextConstraints {
                volumes: given,
                allow_host_dir_volume_plugin: plugin,
                ..SecurityContextConstraints::named("t")
            };
            assert_eq!(as_stored(&scc).volumes, volumes(&want), "{case}");
        }
    }

    #[test]
    fn star_volumes_without_the_plugin_score_as_non_trivial_once_stored() {
        let scc = SecurityContextConstraints {
            volumes: volumes(&["*"]),
            ..SecurityContextConstraints::named("t")
        };
        assert_eq!(restriction_score(&scc), 205_000);
        assert_eq!(restriction_score(&as_stored(&scc)), 105_000);
    }

    #[test]
    fn unset_strategies_escalation_users_and_groups_get_their_defaults() {
        let stored = as_stored(&SecurityContextConstraints::named("t"));
        assert_eq!(stored.fs_group.unwrap().type_.as_deref(), Some("RunAsAny"));
        assert_eq!(
            stored.supplemental_groups.unwrap().type_.as_deref(),
            Some("RunAsAny")
        );
        assert_eq!(stored.allow_privilege_escalation, Some(true));
        assert_eq!(stored.users, Some(vec![]));
        assert_eq!(stored.groups, Some(vec![]));
        assert_eq!(stored.run_as_user, None, "runAsUser has no default");
    }

    #[test]
    fn the_default_sccs_are_already_stored_form() {
        for scc in all_default_sccs() {
            let stored = as_stored(&scc);
            let sorted = |v: &Option<Vec<String>>| {
                let mut v = v.clone().unwrap_or_default();
                v.sort();
                v
            };
            assert_eq!(
                sorted(&stored.volumes),
                sorted(&scc.volumes),
                "{}",
                scc.name()
            );
            assert_eq!(
                restriction_score(&stored),
                restriction_score(&scc),
                "{}",
                scc.name()
            );
            assert_eq!(as_stored(&stored), stored, "defaulting is idempotent");
        }
    }
}

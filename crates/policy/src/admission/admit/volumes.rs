//! `volumes`: the volume types a pod may use.

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::Volume;

use super::Reason;

/// The SCC name of a volume's type, as `GetVolumeFSType` reads it.
pub fn volume_type(v: &Volume) -> Option<&'static str> {
    let types: [(bool, &'static str); 30] = [
        (v.host_path.is_some(), "hostPath"),
        (v.empty_dir.is_some(), "emptyDir"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.secret.is_some(), "secret"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.persistent_volume_claim.is_some(), "persistentVolumeClaim"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephFS"),
        (v.flocker.is_some(), "flocker"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.config_map.is_some(), "configMap"),
        (v.vsphere_volume.is_some(), "vsphere"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.projected.is_some(), "projected"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageOS"),
        (v.csi.is_some(), "csi"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.image.is_some(), "image"),
    ];
    types.into_iter().find(|(set, _)| *set).map(|(_, t)| t)
}

/// The pod's volumes whose type the SCC does not allow.
pub(super) fn refusals(scc: &SecurityContextConstraints, volumes: &[Volume]) -> Vec<Reason> {
    let allowed = scc.volumes.as_deref().unwrap_or_default();
    let allows = |t: &str| allowed.iter().any(|a| a == t);
    if allows("*") {
        return Vec::new();
    }
    volumes
        .iter()
        .filter_map(|v| match volume_type(v) {
            None => Some(Reason::UnknownVolumeType {
                name: v.name.clone(),
            }),
            Some(t) if allows(t) => None,
            // Allowing secrets allows the service account token volume.
            Some("projected") if allows("secret") && only_service_account_token_sources(v) => None,
            Some(t) => Some(Reason::Volume {
                name: v.name.clone(),
                fs_type: t.to_owned(),
            }),
        })
        .collect()
}

/// `IsOnlyServiceAccountTokenSources`: a projected volume of nothing but the
/// token, the cluster CA bundles and the namespace name.
fn only_service_account_token_sources(v: &Volume) -> bool {
    let sources = v
        .projected
        .as_ref()
        .and_then(|p| p.sources.as_deref())
        .unwrap_or_default();
    sources.iter().all(|s| {
        if s.service_account_token.is_none() && s.config_map.is_none() && s.downward_api.is_none() {
            return false;
        }
        if let Some(t) = &s.service_account_token
            && (t.path != "token" || t.audience.as_deref().is_some_and(|a| !a.is_empty()))
        {
            return false;
        }
        if let Some(cm) = &s.config_map {
            let expected_key = match cm.name.as_str() {
                "kube-root-ca.crt" => "ca.crt",
                "openshift-service-ca.crt" => "service-ca.crt",
                _ => return false,
            };
            let items = cm.items.as_deref().unwrap_or_default();
            if items.len() != 1 || items[0].key != expected_key || items[0].path != expected_key {
                return false;
            }
        }
        if let Some(d) = &s.downward_api {
            let namespace_only = d.items.iter().flatten().all(|item| {
                item.path == "namespace"
                    && item.field_ref.as_ref().is_some_and(|f| {
                        f.api_version.as_deref() == Some("v1")
                            && f.field_path == "metadata.namespace"
                    })
            });
            if !namespace_only {
                return false;
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Volume;

    use super::volume_type;
    use crate::admission::PodSecurityRequest;
    use crate::admission::admit::test_pods::{cap_list, reasons, scc_with, with_volume};
    use crate::admission::admit::{Reason, admits};
    use crate::admission::test_sccs::default_scc;

    #[test]
    fn volumes_must_be_listed_unless_the_scc_allows_all() {
        let cases = [
            (
                "restricted-v2",
                serde_json::json!({"name": "host", "hostPath": {"path": "/var"}}),
                vec![Reason::Volume {
                    name: "host".into(),
                    fs_type: "hostPath".into(),
                }],
            ),
            (
                "restricted-v2",
                serde_json::json!({"name": "cache", "emptyDir": {}}),
                vec![],
            ),
            (
                "restricted-v2",
                serde_json::json!({"name": "data", "persistentVolumeClaim": {"claimName": "d"}}),
                vec![],
            ),
            (
                "restricted-v2",
                serde_json::json!({"name": "share", "nfs": {"server": "s", "path": "/"}}),
                vec![Reason::Volume {
                    name: "share".into(),
                    fs_type: "nfs".into(),
                }],
            ),
            (
                "privileged",
                serde_json::json!({"name": "host", "hostPath": {"path": "/var"}}),
                vec![],
            ),
            (
                "restricted-v2",
                serde_json::json!({"name": "mystery"}),
                vec![Reason::UnknownVolumeType {
                    name: "mystery".into(),
                }],
            ),
        ];
        for (scc, volume, want) in cases {
            assert_eq!(
                reasons(&default_scc(scc), &with_volume(volume.clone())),
                want,
                "{scc}: {volume}"
            );
        }
    }

    #[test]
    fn allowing_secrets_allows_the_service_account_token_volume_but_no_other_projection() {
        let secrets_only = scc_with(|s| s.volumes = cap_list(&["secret"]));
        assert!(admits(&secrets_only, &PodSecurityRequest::ordinary()));

        let mut projected_secret = PodSecurityRequest::ordinary();
        projected_secret.volumes = vec![
            serde_json::from_value(serde_json::json!({
                "name": "creds",
                "projected": {"sources": [{"secret": {"name": "registry"}}]}
            }))
            .unwrap(),
        ];
        assert_eq!(
            reasons(&secrets_only, &projected_secret),
            [Reason::Volume {
                name: "creds".into(),
                fs_type: "projected".into()
            }]
        );

        let mut audience = PodSecurityRequest::ordinary();
        audience.volumes = vec![serde_json::from_value(serde_json::json!({
            "name": "vault",
            "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "vault"}}]}
        }))
        .unwrap()];
        assert!(
            !admits(&secrets_only, &audience),
            "a token for another audience is not the default token"
        );
    }

    #[test]
    fn volume_types_use_the_scc_spelling() {
        let cases = [
            (
                serde_json::json!({"name": "v", "cephfs": {"monitors": ["m"]}}),
                Some("cephFS"),
            ),
            (
                serde_json::json!({"name": "v", "vsphereVolume": {"volumePath": "p"}}),
                Some("vsphere"),
            ),
            (
                serde_json::json!({"name": "v", "downwardAPI": {}}),
                Some("downwardAPI"),
            ),
            (
                serde_json::json!({"name": "v", "image": {"reference": "r"}}),
                Some("image"),
            ),
            (serde_json::json!({"name": "v"}), None),
        ];
        for (volume, want) in cases {
            let volume: Volume = serde_json::from_value(volume.clone()).unwrap();
            assert_eq!(volume_type(&volume), want, "{}", volume.name);
        }
    }
}

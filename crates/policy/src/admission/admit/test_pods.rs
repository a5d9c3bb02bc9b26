//! Pods, SCCs and a namespace for the admission tests of every concern.

use buildpolicy_api::SecurityContextConstraints;

use super::{PodSecurityRequest, Reason, refusals};
use crate::admission::NamespaceAllocation;
use crate::admission::test_sccs::default_scc;

/// A pod in its own user namespace, so that restricted-v3 and
/// nested-container judge the container alone.
pub(super) fn with_container(sc: serde_json::Value) -> PodSecurityRequest {
    let mut pod = PodSecurityRequest {
        host_users: Some(false),
        ..PodSecurityRequest::ordinary()
    };
    pod.containers[0].security_context =
        Some(serde_json::from_value(sc).expect("a valid securityContext"));
    pod
}

pub(super) fn with_pod_context(sc: serde_json::Value) -> PodSecurityRequest {
    PodSecurityRequest {
        security_context: Some(serde_json::from_value(sc).expect("a valid pod securityContext")),
        ..PodSecurityRequest::ordinary()
    }
}

pub(super) fn with_volume(volume: serde_json::Value) -> PodSecurityRequest {
    let mut pod = PodSecurityRequest::ordinary();
    pod.volumes
        .push(serde_json::from_value(volume).expect("a valid volume"));
    pod
}

pub(super) fn reasons(scc: &SecurityContextConstraints, pod: &PodSecurityRequest) -> Vec<Reason> {
    refusals(scc, pod).into_iter().map(|r| r.reason).collect()
}

pub(super) fn scc_with(
    edit: impl FnOnce(&mut SecurityContextConstraints),
) -> SecurityContextConstraints {
    let mut scc = default_scc("restricted-v2");
    scc.metadata.name = Some("custom".into());
    edit(&mut scc);
    scc
}

pub(super) type List = Option<Vec<String>>;

pub(super) fn cap_list(caps: &[&str]) -> List {
    Some(caps.iter().map(|c| c.to_string()).collect())
}

/// A namespace as the local cluster's allocator (and OpenShift's)
/// annotates it.
pub(super) fn namespace() -> NamespaceAllocation {
    NamespaceAllocation::from_annotations(
        &[
            ("openshift.io/sa.scc.uid-range", "1000070000/10000"),
            (
                "openshift.io/sa.scc.supplemental-groups",
                "1000070000/10000",
            ),
            ("openshift.io/sa.scc.mcs", "s0:c4,c1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    )
    .expect("a complete allocation")
}

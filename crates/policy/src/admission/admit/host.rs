//! The host's namespaces and ports: `allowHostNetwork`, `allowHostPID`,
//! `allowHostIPC`, `userNamespaceLevel` and `allowHostPorts`.

use buildpolicy_api::SecurityContextConstraints;

use super::{PodSecurityRequest, Reason};

/// The host namespaces the pod shares and the SCC does not allow, and the
/// host's user namespace where the SCC requires the pod's own.
pub(super) fn namespaces(
    scc: &SecurityContextConstraints,
    pod: &PodSecurityRequest,
) -> Vec<Reason> {
    let mut out: Vec<Reason> = [
        (
            pod.host_network,
            scc.allow_host_network,
            Reason::HostNetwork,
        ),
        (pod.host_pid, scc.allow_host_pid, Reason::HostPid),
        (pod.host_ipc, scc.allow_host_ipc, Reason::HostIpc),
    ]
    .into_iter()
    .filter(|(asked, allowed, _)| *asked && !allowed)
    .map(|(_, _, reason)| reason)
    .collect();
    if scc.user_namespace_level.as_deref() == Some("RequirePodLevel")
        && pod.host_users != Some(false)
    {
        out.push(Reason::HostUsers);
    }
    out
}

/// A container's host ports, unless the SCC allows host ports.
pub(super) fn ports(scc: &SecurityContextConstraints, host_ports: &[i32]) -> Vec<Reason> {
    if scc.allow_host_ports {
        return Vec::new();
    }
    host_ports
        .iter()
        .filter(|&&p| p > 0)
        .map(|&port| Reason::HostPort(port))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::admission::PodSecurityRequest;
    use crate::admission::admit::Reason;
    use crate::admission::admit::test_pods::reasons;
    use crate::admission::test_sccs::default_scc;

    #[test]
    fn host_namespaces_ports_and_user_namespaces_follow_the_scc() {
        let host = PodSecurityRequest {
            host_network: true,
            host_pid: true,
            host_ipc: true,
            ..PodSecurityRequest::ordinary()
        };
        assert_eq!(
            reasons(&default_scc("restricted-v2"), &host),
            [Reason::HostNetwork, Reason::HostPid, Reason::HostIpc]
        );
        assert_eq!(
            reasons(&default_scc("hostnetwork-v2"), &host),
            [Reason::HostPid, Reason::HostIpc]
        );
        assert_eq!(reasons(&default_scc("privileged"), &host), []);

        let mut ports = PodSecurityRequest::ordinary();
        ports.containers[0].host_ports = vec![0, 8080];
        assert_eq!(
            reasons(&default_scc("restricted-v2"), &ports),
            [Reason::HostPort(8080)]
        );
        assert_eq!(reasons(&default_scc("hostnetwork-v2"), &ports), []);

        let user_namespaced = PodSecurityRequest {
            host_users: Some(false),
            ..PodSecurityRequest::ordinary()
        };
        assert_eq!(reasons(&default_scc("restricted-v3"), &user_namespaced), []);
    }
}

//! What a pod asks of SCC admission: the settings admission looks at, taken
//! from a pod spec or built by hand.

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, SecurityContext, Volume};

use crate::admission::namespace::NamespaceAllocation;

/// What a pod asks of SCC admission.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodSecurityRequest {
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// `spec.hostUsers`; unset means the host's user namespace.
    pub host_users: Option<bool>,
    pub security_context: Option<PodSecurityContext>,
    pub volumes: Vec<Volume>,
    pub containers: Vec<ContainerRequest>,
    /// The allocation of the namespace the pod is created in, when known:
    /// SCCs that leave the uid range, the groups or the SELinux level to the
    /// namespace are checked against it. `None` accepts any value there
    /// but uid 0.
    pub namespace: Option<NamespaceAllocation>,
}

/// What one container asks of SCC admission.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerRequest {
    /// How findings name the container: "container app", "step build".
    pub label: String,
    pub security_context: Option<SecurityContext>,
    pub host_ports: Vec<i32>,
}

impl ContainerRequest {
    /// A container that sets nothing.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }

    /// A container of a pod spec. With `host_network`, the API server
    /// defaults every container port's `hostPort` to its `containerPort`
    /// (`SetDefaults_Pod`) before admission sees the pod, so each port is a
    /// host port.
    fn from_container(kind: &str, container: &Container, host_network: bool) -> Self {
        Self {
            label: format!("{kind} {}", container.name),
            security_context: container.security_context.clone(),
            host_ports: container
                .ports
                .iter()
                .flatten()
                .filter_map(|p| match p.host_port {
                    Some(port) if port != 0 => Some(port),
                    _ if host_network => Some(p.container_port),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The capabilities this container adds.
    pub fn capabilities_added(&self) -> &[String] {
        self.security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref())
            .and_then(|c| c.add.as_deref())
            .unwrap_or_default()
    }
}

impl PodSecurityRequest {
    /// A pod that asks for nothing: one container without a security
    /// context and the service account token volume every pod gets.
    pub fn ordinary() -> Self {
        Self {
            volumes: vec![service_account_token_volume()],
            containers: vec![ContainerRequest::new("container")],
            ..Self::default()
        }
    }

    /// What a pod spec asks for; init and ephemeral containers included, as
    /// admission validates them too. The spec may be as written: what the
    /// API server defaults before admission and admission checks (the host
    /// ports of a host network pod) is filled in.
    pub fn from_pod_spec(spec: &PodSpec) -> Self {
        let host_network = spec.host_network.unwrap_or(false);
        let mut containers: Vec<ContainerRequest> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerRequest::from_container("init container", c, host_network))
            .collect();
        containers.extend(
            spec.containers
                .iter()
                .map(|c| ContainerRequest::from_container("container", c, host_network)),
        );
        containers.extend(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| ContainerRequest {
                    label: format!("ephemeral container {}", c.name),
                    security_context: c.security_context.clone(),
                    host_ports: Vec::new(),
                }),
        );
        Self {
            host_network,
            host_pid: spec.host_pid.unwrap_or(false),
            host_ipc: spec.host_ipc.unwrap_or(false),
            host_users: spec.host_users,
            security_context: spec.security_context.clone(),
            volumes: spec.volumes.clone().unwrap_or_default(),
            containers,
            namespace: None,
        }
    }

    /// The same pod, created in a namespace with `allocation`.
    pub fn in_namespace(mut self, allocation: NamespaceAllocation) -> Self {
        self.namespace = Some(allocation);
        self
    }
}

/// The `kube-api-access-*` volume the API server adds to every pod: a
/// projected service account token, the cluster CA and the namespace.
pub fn service_account_token_volume() -> Volume {
    serde_json::from_value(serde_json::json!({
        "name": "kube-api-access",
        "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            {"configMap": {"name": "openshift-service-ca.crt", "items": [{"key": "service-ca.crt", "path": "service-ca.crt"}]}}
        ]}
    }))
    .expect("the service account token volume is a valid Volume")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::admit::test_pods::{reasons, scc_with};
    use crate::admission::admit::{Reason, refusals};
    use crate::admission::test_sccs::default_scc;

    #[test]
    fn a_pod_spec_brings_every_container_and_its_host_ports() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "hostNetwork": true,
            "initContainers": [{"name": "setup", "securityContext": {"privileged": true}}],
            "containers": [{"name": "app", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }))
        .unwrap();
        let pod = PodSecurityRequest::from_pod_spec(&spec);
        let labels: Vec<&str> = pod.containers.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["init container setup", "container app"]);
        let got: Vec<String> = refusals(&default_scc("restricted-v2"), &pod)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "pod: host network is not allowed",
                "init container setup: privileged containers are not allowed",
                "container app: host port 8080 is not allowed",
            ]
        );
    }

    /// Found by tests/scc_differential.rs: the API server turns a host
    /// network pod's container ports into host ports before admission, so
    /// an SCC that allows host network but not host ports refuses it.
    #[test]
    fn regression_a_host_network_pod_asks_for_its_container_ports_as_host_ports() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "hostNetwork": true,
            "initContainers": [{"name": "setup", "image": "x", "ports": [{"containerPort": 9090}]}],
            "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 8001}, {"containerPort": 8002, "hostPort": 8002}]}]
        }))
        .unwrap();
        let pod = PodSecurityRequest::from_pod_spec(&spec);
        assert_eq!(pod.containers[0].host_ports, [9090]);
        assert_eq!(pod.containers[1].host_ports, [8001, 8002]);
        let network_only = scc_with(|s| s.allow_host_network = true);
        assert_eq!(
            reasons(&network_only, &pod),
            [
                Reason::HostPort(9090),
                Reason::HostPort(8001),
                Reason::HostPort(8002)
            ]
        );
        assert_eq!(reasons(&default_scc("hostnetwork-v2"), &pod), []);
        // Without host network a container port is only a container port.
        let mut own_network = spec.clone();
        own_network.host_network = None;
        assert_eq!(
            PodSecurityRequest::from_pod_spec(&own_network).containers[1].host_ports,
            [8002]
        );
    }
}

//! Whether one SCC admits a pod, decided as SCC admission decides it
//! (openshift/apiserver-library-go `pkg/securitycontextconstraints/sccmatching/provider.go`
//! and the strategies it builds), but from what the pod asks for alone.
//!
//! Admission first fills in what the pod leaves unset (a uid from the SCC's
//! range, the namespace's SELinux level, the SCC's first seccomp profile,
//! `allowPrivilegeEscalation: false`, the required drops) and then validates.
//! Whatever it fills in passes, so only what the pod sets explicitly can be
//! refused. Values that come from the namespace (its uid range, groups and
//! MCS level) are checked against [`PodSecurityRequest::namespace`] when the
//! caller knows it; without it a uid, group or level checked against them is
//! accepted, except uid 0, which no allocated namespace range contains
//! (OpenShift allocates them from 1000000000 up by default).
//!
//! One refusal is not the plugin's: a container left with
//! `allowPrivilegeEscalation: false` next to `privileged: true` or an added
//! `CAP_SYS_ADMIN` passes SCC admission and fails pod validation after it
//! ([`Reason::EscalationConflict`]). Admission has then already chosen that
//! SCC, so no later one is tried: [`admitted_under`] says where a pod ends up.
//!
//! Not modelled: sysctls, flex volume drivers, AppArmor, the deprecated
//! seccomp annotations.

use std::fmt;

use buildpolicy_api::SecurityContextConstraints;
use buildpolicy_api::scc::IdRange;
use k8s_openapi::api::core::v1::{
    Container, PodSecurityContext, PodSpec, SELinuxOptions, SeccompProfile, SecurityContext, Volume,
};

use super::namespace::NamespaceAllocation;
use super::{as_stored, sort_sccs};

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

/// One reason an SCC refuses a pod, and what it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// A container's label, or "pod" for pod-level settings and volumes,
    /// or "scc" when the SCC itself cannot be used.
    pub subject: String,
    pub reason: Reason,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.reason)
    }
}

/// Why an SCC refuses a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A strategy cannot be built from the SCC, so it admits nothing.
    InvalidScc(String),
    Privileged,
    /// A capability in `capabilities.add` that is neither allowed nor added
    /// by default (compared as written: `CAP_SYS_ADMIN` is not `SYS_ADMIN`).
    Capability(String),
    /// `allowPrivilegeEscalation: true` where the SCC forbids it.
    PrivilegeEscalation,
    /// `allowPrivilegeEscalation` false (set by the container or forced by
    /// the SCC) together with `privileged: true` or `CAP_SYS_ADMIN`, which
    /// pod validation rejects after admission.
    EscalationConflict(&'static str),
    /// `runAsUser` outside what the strategy allows.
    RunAsUser {
        uid: i64,
        required: String,
    },
    /// `runAsUser: 0` under `MustRunAsNonRoot`.
    RootUser,
    /// `runAsNonRoot: false` under `MustRunAsNonRoot`.
    RunAsNonRootFalse,
    /// A `seLinuxOptions` field that differs from what `MustRunAs` requires.
    SeLinux {
        field: &'static str,
        requested: String,
        required: String,
    },
    /// A seccomp profile (in annotation form: `runtime/default`,
    /// `unconfined`, `localhost/<file>`) not in `seccompProfiles`.
    Seccomp {
        profile: String,
        allowed: Vec<String>,
    },
    /// `readOnlyRootFilesystem: false` where the SCC requires true.
    ReadOnlyRootFilesystem,
    HostPort(i32),
    HostNetwork,
    HostPid,
    HostIpc,
    /// `hostUsers` not false under `userNamespaceLevel: RequirePodLevel`.
    HostUsers,
    Volume {
        name: String,
        fs_type: String,
    },
    UnknownVolumeType {
        name: String,
    },
    /// An fsGroup or supplemental group outside the SCC's ranges.
    Group {
        field: &'static str,
        id: i64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidScc(why) => write!(f, "the SCC cannot be used: {why}"),
            Self::Privileged => f.write_str("privileged containers are not allowed"),
            Self::Capability(cap) => write!(f, "capability {cap} may not be added"),
            Self::PrivilegeEscalation => {
                f.write_str("allowing privilege escalation for containers is not allowed")
            }
            Self::EscalationConflict(what) => write!(
                f,
                "allowPrivilegeEscalation is false together with {what}, which pod validation rejects"
            ),
            Self::RunAsUser { uid, required } => {
                write!(f, "runAsUser {uid} is not allowed: {required}")
            }
            Self::RootUser => f.write_str("running with the root UID is forbidden"),
            Self::RunAsNonRootFalse => f.write_str("runAsNonRoot must be true"),
            Self::SeLinux {
                field,
                requested,
                required,
            } => write!(
                f,
                "seLinuxOptions.{field} {requested:?} is not allowed: must be {required}"
            ),
            Self::Seccomp { profile, allowed } if allowed.is_empty() => {
                write!(f, "seccomp profile {profile} may not be set")
            }
            Self::Seccomp { profile, allowed } => write!(
                f,
                "{profile} is not an allowed seccomp profile (allowed: {})",
                allowed.join(", ")
            ),
            Self::ReadOnlyRootFilesystem => f.write_str("readOnlyRootFilesystem must be true"),
            Self::HostPort(port) => write!(f, "host port {port} is not allowed"),
            Self::HostNetwork => f.write_str("host network is not allowed"),
            Self::HostPid => f.write_str("host PID is not allowed"),
            Self::HostIpc => f.write_str("host IPC is not allowed"),
            Self::HostUsers => f.write_str("hostUsers must be set to false"),
            Self::Volume { name, fs_type } => {
                write!(f, "volume {name}: {fs_type} volumes are not allowed")
            }
            Self::UnknownVolumeType { name } => write!(f, "volume {name} has no known type"),
            Self::Group { field, id } => write!(f, "{field} {id} is not an allowed group"),
        }
    }
}

/// Whether `scc` admits the pod: SCC admission accepts it under `scc`, and
/// the pod it makes of it passes pod validation.
pub fn admits(scc: &SecurityContextConstraints, pod: &PodSecurityRequest) -> bool {
    refusals(scc, pod).is_empty()
}

/// Whether SCC admission, trying `scc`, takes it for the pod: every check
/// of the plugin passes. The pod may still fail pod validation afterwards
/// ([`Reason::EscalationConflict`]); [`admits`] says whether it does not.
pub fn selects(scc: &SecurityContextConstraints, pod: &PodSecurityRequest) -> bool {
    refusals(scc, pod)
        .iter()
        .all(|r| matches!(r.reason, Reason::EscalationConflict(_)))
}

/// The SCC an unpinned pod ends up with when it may use `usable` (SCCs as
/// stored, or rendered: compared as stored): admission sorts them
/// ([`sort_sccs`]) and takes the first that [`selects`] the pod; the pod is
/// created if that SCC also [`admits`] it, and refused otherwise (by pod
/// validation: no later SCC is tried). `None` when the pod is refused.
pub fn admitted_under(
    usable: &[&SecurityContextConstraints],
    pod: &PodSecurityRequest,
) -> Option<String> {
    let stored: Vec<SecurityContextConstraints> = usable.iter().map(|s| as_stored(s)).collect();
    let mut order: Vec<&SecurityContextConstraints> = stored.iter().collect();
    sort_sccs(&mut order);
    order
        .into_iter()
        .find(|s| selects(s, pod))
        .filter(|s| admits(s, pod))
        .map(|s| s.name().to_owned())
}

/// Every reason `scc` (stored form: see [`as_stored`]) refuses the pod; empty
/// when it admits it.
pub fn refusals(scc: &SecurityContextConstraints, pod: &PodSecurityRequest) -> Vec<Refusal> {
    let scc = as_stored(scc);
    let strategies = match Strategies::of(&scc, pod.namespace.as_ref()) {
        Ok(s) => s,
        Err(why) => {
            return vec![Refusal {
                subject: "scc".into(),
                reason: Reason::InvalidScc(why),
            }];
        }
    };
    let mut out = Vec::new();
    let mut refuse = |subject: &str, reason: Reason| {
        out.push(Refusal {
            subject: subject.to_owned(),
            reason,
        })
    };

    for (asked, allowed, reason) in [
        (
            pod.host_network,
            scc.allow_host_network,
            Reason::HostNetwork,
        ),
        (pod.host_pid, scc.allow_host_pid, Reason::HostPid),
        (pod.host_ipc, scc.allow_host_ipc, Reason::HostIpc),
    ] {
        if asked && !allowed {
            refuse("pod", reason);
        }
    }
    if scc.user_namespace_level.as_deref() == Some("RequirePodLevel")
        && pod.host_users != Some(false)
    {
        refuse("pod", Reason::HostUsers);
    }

    let pod_sc = pod.security_context.as_ref();
    if let (GroupRule::Ranges(ranges), Some(id)) =
        (&strategies.fs_group, pod_sc.and_then(|sc| sc.fs_group))
        && !in_ranges(ranges, id)
    {
        refuse(
            "pod",
            Reason::Group {
                field: "fsGroup",
                id,
            },
        );
    }
    if let GroupRule::Ranges(ranges) = &strategies.supplemental_groups {
        for &id in pod_sc
            .and_then(|sc| sc.supplemental_groups.as_deref())
            .unwrap_or_default()
        {
            if !in_ranges(ranges, id) {
                refuse(
                    "pod",
                    Reason::Group {
                        field: "supplementalGroups",
                        id,
                    },
                );
            }
        }
    }
    if let Some(profile) = pod_sc.and_then(|sc| sc.seccomp_profile.as_ref())
        && let Some(reason) = seccomp_refusal(&scc, profile)
    {
        refuse("pod", reason);
    }
    if let Some(requested) = pod_sc.and_then(|sc| sc.se_linux_options.as_ref()) {
        for reason in strategies.se_linux.refusals(requested) {
            refuse("pod", reason);
        }
    }
    for reason in volume_refusals(&scc, &pod.volumes) {
        refuse("pod", reason);
    }

    for container in &pod.containers {
        let label = container.label.as_str();
        let sc = container.security_context.clone().unwrap_or_default();
        let uid = sc.run_as_user.or(pod_sc.and_then(|p| p.run_as_user));
        let non_root = sc
            .run_as_non_root
            .or(pod_sc.and_then(|p| p.run_as_non_root));
        if let Some(reason) = strategies.run_as_user.refusal(uid, non_root) {
            refuse(label, reason);
        }
        if let Some(requested) = &sc.se_linux_options {
            for reason in strategies.se_linux.refusals(requested) {
                refuse(label, reason);
            }
        }
        if let Some(profile) = &sc.seccomp_profile
            && let Some(reason) = seccomp_refusal(&scc, profile)
        {
            refuse(label, reason);
        }
        let privileged = sc.privileged == Some(true);
        if privileged && !scc.allow_privileged_container {
            refuse(label, Reason::Privileged);
        }
        for cap in container.capabilities_added() {
            if !capability_allowed(&scc, cap) {
                refuse(label, Reason::Capability(cap.clone()));
            }
        }
        let added = added_with_defaults(&scc, &sc);
        if !scc.allow_host_ports {
            for &port in container.host_ports.iter().filter(|&&p| p > 0) {
                refuse(label, Reason::HostPort(port));
            }
        }
        if scc.read_only_root_filesystem && sc.read_only_root_filesystem == Some(false) {
            refuse(label, Reason::ReadOnlyRootFilesystem);
        }
        let escalation_forbidden = scc.allow_privilege_escalation == Some(false);
        if escalation_forbidden && sc.allow_privilege_escalation == Some(true) {
            refuse(label, Reason::PrivilegeEscalation);
        }
        // Admission sets the field to false when the SCC forbids escalation;
        // the conflict only matters for what the SCC would otherwise allow.
        let escalation_off = sc.allow_privilege_escalation == Some(false)
            || (escalation_forbidden && sc.allow_privilege_escalation.is_none());
        if escalation_off {
            if privileged && scc.allow_privileged_container {
                refuse(label, Reason::EscalationConflict("privileged: true"));
            }
            let sys_admin = "CAP_SYS_ADMIN";
            if added.iter().any(|c| c == sys_admin) && capability_allowed(&scc, sys_admin) {
                refuse(
                    label,
                    Reason::EscalationConflict("capabilities.add CAP_SYS_ADMIN"),
                );
            }
        }
    }
    out
}

/// The capabilities a container adds once admission has added the SCC's
/// `defaultAddCapabilities` (all but those the container drops), as pod
/// validation sees them.
fn added_with_defaults(scc: &SecurityContextConstraints, sc: &SecurityContext) -> Vec<String> {
    let caps = sc.capabilities.as_ref();
    let drops = caps.and_then(|c| c.drop.as_deref()).unwrap_or_default();
    let mut added: Vec<String> = caps.and_then(|c| c.add.clone()).unwrap_or_default();
    added.extend(
        scc.default_add_capabilities
            .iter()
            .flatten()
            .filter(|c| !drops.contains(c))
            .cloned(),
    );
    added
}

/// Admission only lets `*` in `allowedCapabilities` allow everything (`ALL`,
/// which counts as "all" for the restriction score, does not), and compares
/// names exactly.
fn capability_allowed(scc: &SecurityContextConstraints, cap: &str) -> bool {
    let listed =
        |caps: &Option<Vec<String>>, wanted: &str| caps.iter().flatten().any(|c| c == wanted);
    listed(&scc.allowed_capabilities, "*")
        || listed(&scc.allowed_capabilities, cap)
        || listed(&scc.default_add_capabilities, cap)
}

struct Strategies {
    run_as_user: UserRule,
    se_linux: SeLinuxRule,
    fs_group: GroupRule,
    supplemental_groups: GroupRule,
}

impl Strategies {
    /// The SCC's strategies, with what it leaves to the namespace filled in
    /// from `namespace` when that is known.
    fn of(
        scc: &SecurityContextConstraints,
        namespace: Option<&NamespaceAllocation>,
    ) -> Result<Self, String> {
        let mut run_as_user = UserRule::of(scc)?;
        let mut se_linux = SeLinuxRule::of(scc)?;
        let mut fs_group = GroupRule::of("fsGroup", scc.fs_group.as_ref())?;
        let mut supplemental_groups =
            GroupRule::of("supplementalGroups", scc.supplemental_groups.as_ref())?;
        if let Some(ns) = namespace {
            if let UserRule::NamespaceRange = run_as_user {
                run_as_user = UserRule::Range(ns.uids.min, ns.uids.max);
            }
            if let SeLinuxRule::MustRunAs(options) = &mut se_linux
                && options.level.as_deref().unwrap_or_default().is_empty()
            {
                options.level = Some(ns.mcs_level.clone());
            }
            if let GroupRule::Namespace = fs_group {
                fs_group = GroupRule::Ranges(vec![ns.fs_group()]);
            }
            if let GroupRule::Namespace = supplemental_groups {
                supplemental_groups = GroupRule::Ranges(ns.groups.clone());
            }
        }
        Ok(Self {
            run_as_user,
            se_linux,
            fs_group,
            supplemental_groups,
        })
    }
}

enum UserRule {
    Any,
    NonRoot,
    Exactly(i64),
    Range(i64, i64),
    /// `MustRunAsRange` without bounds: the namespace's allocated range.
    NamespaceRange,
}

impl UserRule {
    fn of(scc: &SecurityContextConstraints) -> Result<Self, String> {
        let opts = scc.run_as_user.clone().unwrap_or_default();
        match opts.type_.as_deref().unwrap_or_default() {
            "RunAsAny" => Ok(Self::Any),
            "MustRunAsNonRoot" => Ok(Self::NonRoot),
            "MustRunAs" => opts
                .uid
                .map(Self::Exactly)
                .ok_or_else(|| "runAsUser MustRunAs requires a uid".to_owned()),
            "MustRunAsRange" => match (opts.uid_range_min, opts.uid_range_max) {
                (None, None) => Ok(Self::NamespaceRange),
                (Some(min), Some(max)) => Ok(Self::Range(min, max)),
                _ => {
                    Err("runAsUser MustRunAsRange requires both uidRangeMin and uidRangeMax".into())
                }
            },
            other => Err(format!("unrecognized runAsUser strategy type {other:?}")),
        }
    }

    fn refusal(&self, uid: Option<i64>, non_root: Option<bool>) -> Option<Reason> {
        match (self, uid) {
            (Self::NonRoot, _) if non_root == Some(false) => Some(Reason::RunAsNonRootFalse),
            (Self::NonRoot, Some(0)) => Some(Reason::RootUser),
            (Self::Exactly(want), Some(uid)) if uid != *want => Some(Reason::RunAsUser {
                uid,
                required: format!("MustRunAs {want}"),
            }),
            (Self::Range(min, max), Some(uid)) if uid < *min || uid > *max => {
                Some(Reason::RunAsUser {
                    uid,
                    required: format!("MustRunAsRange {min}-{max}"),
                })
            }
            (Self::NamespaceRange, Some(0)) => Some(Reason::RunAsUser {
                uid: 0,
                required: "MustRunAsRange in the namespace's range (openshift.io/sa.scc.uid-range)"
                    .into(),
            }),
            _ => None,
        }
    }
}

enum SeLinuxRule {
    Any,
    /// The SCC's options; an empty level means the namespace's MCS level.
    MustRunAs(SELinuxOptions),
}

impl SeLinuxRule {
    fn of(scc: &SecurityContextConstraints) -> Result<Self, String> {
        let opts = scc.se_linux_context.clone().unwrap_or_default();
        match opts.type_.as_deref().unwrap_or_default() {
            "RunAsAny" => Ok(Self::Any),
            "MustRunAs" => Ok(Self::MustRunAs(opts.se_linux_options.unwrap_or_default())),
            other => Err(format!(
                "unrecognized seLinuxContext strategy type {other:?}"
            )),
        }
    }

    /// A set `seLinuxOptions` replaces the generated one whole, so every
    /// field must match, including a level left empty.
    fn refusals(&self, requested: &SELinuxOptions) -> Vec<Reason> {
        let Self::MustRunAs(required) = self else {
            return Vec::new();
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let mut out = Vec::new();
        let (want_level, got_level) = (text(&required.level), text(&requested.level));
        if want_level.is_empty() {
            if got_level.is_empty() {
                out.push(Reason::SeLinux {
                    field: "level",
                    requested: got_level,
                    required: "the namespace's MCS level (openshift.io/sa.scc.mcs)".into(),
                });
            }
        } else if !equal_levels(&want_level, &got_level) {
            out.push(Reason::SeLinux {
                field: "level",
                requested: got_level,
                required: format!("{want_level:?}"),
            });
        }
        for (field, want, got) in [
            ("role", &required.role, &requested.role),
            ("type", &required.type_, &requested.type_),
            ("user", &required.user, &requested.user),
        ] {
            if text(want) != text(got) {
                out.push(Reason::SeLinux {
                    field,
                    requested: text(got),
                    required: format!("{:?}", text(want)),
                });
            }
        }
        out
    }
}

/// MCS levels are equal when the sensitivity is and the categories are the
/// same set in any order (`s0:c1,c2` equals `s0:c2,c1`).
fn equal_levels(want: &str, got: &str) -> bool {
    if want == got {
        return true;
    }
    let (Some((want_s, want_c)), Some((got_s, got_c))) =
        (want.split_once(':'), got.split_once(':'))
    else {
        return false;
    };
    want_s == got_s && sorted_categories(want_c) == sorted_categories(got_c)
}

fn sorted_categories(categories: &str) -> Vec<&str> {
    let mut v: Vec<&str> = categories.split(',').collect();
    v.sort_unstable();
    v
}

enum GroupRule {
    Any,
    Ranges(Vec<IdRange>),
    /// `MustRunAs` without ranges: the namespace's allocation.
    Namespace,
}

impl GroupRule {
    fn of(
        field: &str,
        opts: Option<&buildpolicy_api::scc::GroupStrategyOptions>,
    ) -> Result<Self, String> {
        let opts = opts.cloned().unwrap_or_default();
        match opts.type_.as_deref().unwrap_or_default() {
            "RunAsAny" => Ok(Self::Any),
            "MustRunAs" => match opts.ranges {
                Some(r) if !r.is_empty() => Ok(Self::Ranges(r)),
                _ => Ok(Self::Namespace),
            },
            other => Err(format!("unrecognized {field} strategy type {other:?}")),
        }
    }
}

fn in_ranges(ranges: &[IdRange], id: i64) -> bool {
    ranges.iter().any(|r| r.min <= id && id <= r.max)
}

/// A seccomp profile field in the annotation form SCCs list.
pub fn seccomp_profile_name(profile: &SeccompProfile) -> String {
    match profile.type_.as_str() {
        "Unconfined" => "unconfined".into(),
        "RuntimeDefault" => "runtime/default".into(),
        "Localhost" => profile
            .localhost_profile
            .as_deref()
            .map(|p| format!("localhost/{p}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn seccomp_refusal(scc: &SecurityContextConstraints, profile: &SeccompProfile) -> Option<Reason> {
    let profile = seccomp_profile_name(profile);
    let listed = scc.seccomp_profiles.as_deref().unwrap_or_default();
    let allow_any = listed.iter().any(|p| p == "*");
    let allowed: Vec<String> = listed.iter().filter(|p| *p != "*").cloned().collect();
    let is_runtime_default = |p: &str| p == "runtime/default" || p == "docker/default";
    let admitted = if allowed.is_empty() {
        allow_any || profile.is_empty()
    } else {
        allow_any
            || allowed.contains(&profile)
            || (allowed.iter().any(|p| is_runtime_default(p)) && is_runtime_default(&profile))
    };
    (!admitted).then_some(Reason::Seccomp { profile, allowed })
}

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

fn volume_refusals(scc: &SecurityContextConstraints, volumes: &[Volume]) -> Vec<Reason> {
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
    use buildpolicy_api::scc::{RunAsUserStrategyOptions, SELinuxContextStrategyOptions};
    use k8s_openapi::api::core::v1::Capabilities;

    use super::*;
    use crate::admission::test_sccs::default_scc;

    /// A pod in its own user namespace, so that restricted-v3 and
    /// nested-container judge the container alone.
    fn with_container(sc: serde_json::Value) -> PodSecurityRequest {
        let mut pod = PodSecurityRequest {
            host_users: Some(false),
            ..PodSecurityRequest::ordinary()
        };
        pod.containers[0].security_context =
            Some(serde_json::from_value(sc).expect("a valid securityContext"));
        pod
    }

    fn with_pod_context(sc: serde_json::Value) -> PodSecurityRequest {
        PodSecurityRequest {
            security_context: Some(
                serde_json::from_value(sc).expect("a valid pod securityContext"),
            ),
            ..PodSecurityRequest::ordinary()
        }
    }

    fn with_volume(volume: serde_json::Value) -> PodSecurityRequest {
        let mut pod = PodSecurityRequest::ordinary();
        pod.volumes
            .push(serde_json::from_value(volume).expect("a valid volume"));
        pod
    }

    fn reasons(scc: &SecurityContextConstraints, pod: &PodSecurityRequest) -> Vec<Reason> {
        refusals(scc, pod).into_iter().map(|r| r.reason).collect()
    }

    fn scc_with(edit: impl FnOnce(&mut SecurityContextConstraints)) -> SecurityContextConstraints {
        let mut scc = default_scc("restricted-v2");
        scc.metadata.name = Some("custom".into());
        edit(&mut scc);
        scc
    }

    type List = Option<Vec<String>>;

    fn cap_list(caps: &[&str]) -> List {
        Some(caps.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn an_ordinary_pod_is_admitted_by_every_default_scc_without_user_namespace_rules() {
        let pod = PodSecurityRequest::ordinary();
        for name in [
            "restricted-v2",
            "restricted",
            "nonroot-v2",
            "anyuid",
            "hostnetwork-v2",
            "privileged",
        ] {
            assert_eq!(reasons(&default_scc(name), &pod), [], "{name}");
        }
        for name in ["restricted-v3", "nested-container"] {
            assert_eq!(
                reasons(&default_scc(name), &pod),
                [Reason::HostUsers],
                "{name}"
            );
        }
    }

    #[test]
    fn container_requests_are_refused_as_admission_refuses_them() {
        let cases: Vec<(&str, &str, serde_json::Value, Vec<Reason>)> = vec![
            (
                "restricted-v2",
                "privileged",
                serde_json::json!({"privileged": true}),
                vec![Reason::Privileged],
            ),
            (
                "privileged",
                "privileged",
                serde_json::json!({"privileged": true}),
                vec![],
            ),
            (
                "restricted-v2",
                "a capability not allowed",
                serde_json::json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
                vec![Reason::Capability("SYS_ADMIN".into())],
            ),
            (
                "restricted-v2",
                "an allowed capability",
                serde_json::json!({"capabilities": {"add": ["NET_BIND_SERVICE"]}}),
                vec![],
            ),
            (
                "restricted-v2",
                "CAP_-prefixed name of an allowed capability",
                serde_json::json!({"capabilities": {"add": ["CAP_NET_BIND_SERVICE"]}}),
                vec![Reason::Capability("CAP_NET_BIND_SERVICE".into())],
            ),
            (
                "privileged",
                "any capability under *",
                serde_json::json!({"capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"]}}),
                vec![],
            ),
            (
                "restricted-v2",
                "escalation where the SCC forbids it",
                serde_json::json!({"allowPrivilegeEscalation": true}),
                vec![Reason::PrivilegeEscalation],
            ),
            (
                "anyuid",
                "escalation where the SCC allows it",
                serde_json::json!({"allowPrivilegeEscalation": true}),
                vec![],
            ),
            (
                "restricted-v2",
                "root in a namespace range",
                serde_json::json!({"runAsUser": 0}),
                vec![Reason::RunAsUser {
                    uid: 0,
                    required:
                        "MustRunAsRange in the namespace's range (openshift.io/sa.scc.uid-range)"
                            .into(),
                }],
            ),
            (
                "restricted-v2",
                "a uid the namespace range decides",
                serde_json::json!({"runAsUser": 1000}),
                vec![],
            ),
            (
                "restricted-v3",
                "a uid below a fixed range",
                serde_json::json!({"runAsUser": 999}),
                vec![Reason::RunAsUser {
                    uid: 999,
                    required: "MustRunAsRange 1000-65534".into(),
                }],
            ),
            (
                "restricted-v3",
                "the top of a fixed range",
                serde_json::json!({"runAsUser": 65534}),
                vec![],
            ),
            (
                "nonroot-v2",
                "root under MustRunAsNonRoot",
                serde_json::json!({"runAsUser": 0}),
                vec![Reason::RootUser],
            ),
            (
                "nonroot-v2",
                "runAsNonRoot false under MustRunAsNonRoot",
                serde_json::json!({"runAsNonRoot": false}),
                vec![Reason::RunAsNonRootFalse],
            ),
            (
                "nonroot-v2",
                "a non-root uid",
                serde_json::json!({"runAsUser": 1001}),
                vec![],
            ),
            (
                "anyuid",
                "root under RunAsAny",
                serde_json::json!({"runAsUser": 0}),
                vec![],
            ),
            (
                "restricted-v2",
                "Unconfined seccomp",
                serde_json::json!({"seccompProfile": {"type": "Unconfined"}}),
                vec![Reason::Seccomp {
                    profile: "unconfined".into(),
                    allowed: vec!["runtime/default".into()],
                }],
            ),
            (
                "restricted-v2",
                "RuntimeDefault seccomp",
                serde_json::json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                vec![],
            ),
            (
                "restricted-v2",
                "a Localhost seccomp profile",
                serde_json::json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "buildah.json"}}),
                vec![Reason::Seccomp {
                    profile: "localhost/buildah.json".into(),
                    allowed: vec!["runtime/default".into()],
                }],
            ),
            (
                "privileged",
                "Unconfined under *",
                serde_json::json!({"seccompProfile": {"type": "Unconfined"}}),
                vec![],
            ),
            (
                "anyuid",
                "any seccomp profile where the SCC lists none",
                serde_json::json!({"seccompProfile": {"type": "RuntimeDefault"}}),
                vec![Reason::Seccomp {
                    profile: "runtime/default".into(),
                    allowed: vec![],
                }],
            ),
            (
                "restricted-v2",
                "an SELinux type without a level",
                serde_json::json!({"seLinuxOptions": {"type": "spc_t"}}),
                vec![
                    Reason::SeLinux {
                        field: "level",
                        requested: "".into(),
                        required: "the namespace's MCS level (openshift.io/sa.scc.mcs)".into(),
                    },
                    Reason::SeLinux {
                        field: "type",
                        requested: "spc_t".into(),
                        required: "\"\"".into(),
                    },
                ],
            ),
            (
                "restricted-v2",
                "a level the namespace decides",
                serde_json::json!({"seLinuxOptions": {"level": "s0:c26,c5"}}),
                vec![],
            ),
            (
                "privileged",
                "any SELinux options under RunAsAny",
                serde_json::json!({"seLinuxOptions": {"type": "spc_t"}}),
                vec![],
            ),
            (
                "nested-container",
                "the SCC's own SELinux type",
                serde_json::json!({"seLinuxOptions": {"type": "container_engine_t", "level": "s0:c1,c2"}}),
                vec![],
            ),
            (
                "restricted-v2",
                "a container that asks for nothing in particular",
                serde_json::json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}),
                vec![],
            ),
        ];
        for (scc, case, sc, want) in cases {
            assert_eq!(
                reasons(&default_scc(scc), &with_container(sc)),
                want,
                "{scc}: {case}"
            );
        }
    }

    #[test]
    fn pod_level_user_settings_apply_to_every_container() {
        let pod = with_pod_context(serde_json::json!({"runAsUser": 0}));
        assert_eq!(
            reasons(&default_scc("nonroot-v2"), &pod),
            [Reason::RootUser]
        );
        let mut overridden = pod.clone();
        overridden.containers[0].security_context = Some(SecurityContext {
            run_as_user: Some(1001),
            ..SecurityContext::default()
        });
        assert_eq!(reasons(&default_scc("nonroot-v2"), &overridden), []);
    }

    #[test]
    fn pod_level_seccomp_and_selinux_are_checked_once_for_the_pod() {
        let pod = with_pod_context(serde_json::json!({
            "seccompProfile": {"type": "Unconfined"},
            "seLinuxOptions": {"type": "spc_t", "level": "s0:c1,c2"}
        }));
        let got = refusals(&default_scc("restricted-v2"), &pod);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|r| r.subject == "pod"));
    }

    #[test]
    fn a_fixed_selinux_level_matches_its_categories_in_any_order() {
        let scc = scc_with(|s| {
            s.se_linux_context = Some(SELinuxContextStrategyOptions {
                type_: Some("MustRunAs".into()),
                se_linux_options: Some(SELinuxOptions {
                    level: Some("s0:c5,c26".into()),
                    ..SELinuxOptions::default()
                }),
            })
        });
        let cases = [
            ("s0:c26,c5", true),
            ("s0:c5,c26", true),
            ("s1:c5,c26", false),
            ("s0:c5", false),
            ("s0", false),
        ];
        for (level, admitted) in cases {
            let pod = with_container(serde_json::json!({"seLinuxOptions": {"level": level}}));
            assert_eq!(admits(&scc, &pod), admitted, "{level}");
        }
    }

    #[test]
    fn capabilities_match_exactly_and_only_star_allows_all() {
        // (case, allowedCapabilities, defaultAddCapabilities, added, admitted)
        let cases: Vec<(&str, List, List, &str, bool)> = vec![
            ("listed", cap_list(&["SYS_ADMIN"]), None, "SYS_ADMIN", true),
            (
                "added by default",
                None,
                cap_list(&["SYS_ADMIN"]),
                "SYS_ADMIN",
                true,
            ),
            ("star", cap_list(&["*"]), None, "NET_RAW", true),
            // ALL counts as "allows all" for the score, not for admission.
            ("ALL", cap_list(&["ALL"]), None, "NET_RAW", false),
            (
                "case differs",
                cap_list(&["sys_admin"]),
                None,
                "SYS_ADMIN",
                false,
            ),
            (
                "CAP_ prefix differs",
                cap_list(&["SYS_ADMIN"]),
                None,
                "CAP_SYS_ADMIN",
                false,
            ),
            (
                "not listed",
                cap_list(&["SETUID"]),
                None,
                "SYS_ADMIN",
                false,
            ),
        ];
        for (case, allowed, default_add, cap, admitted) in cases {
            let scc = scc_with(|s| {
                s.allowed_capabilities = allowed;
                s.default_add_capabilities = default_add;
                s.allow_privilege_escalation = Some(true);
            });
            let mut pod = PodSecurityRequest::ordinary();
            pod.containers[0].security_context = Some(SecurityContext {
                capabilities: Some(Capabilities {
                    add: Some(vec![cap.into()]),
                    drop: None,
                }),
                ..SecurityContext::default()
            });
            assert_eq!(admits(&scc, &pod), admitted, "{case}");
        }
    }

    #[test]
    fn escalation_forced_off_conflicts_with_privileged_and_cap_sys_admin() {
        let scc = scc_with(|s| {
            s.allow_privileged_container = true;
            s.allowed_capabilities = cap_list(&["*"]);
            s.allow_privilege_escalation = Some(false);
        });
        let cases = [
            (
                serde_json::json!({"privileged": true}),
                vec![Reason::EscalationConflict("privileged: true")],
            ),
            (
                serde_json::json!({"capabilities": {"add": ["CAP_SYS_ADMIN"]}}),
                vec![Reason::EscalationConflict("capabilities.add CAP_SYS_ADMIN")],
            ),
            // Pod validation only knows the CAP_ spelling.
            (
                serde_json::json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
                vec![],
            ),
        ];
        for (sc, want) in cases {
            assert_eq!(reasons(&scc, &with_container(sc.clone())), want, "{sc}");
        }
        let lax = scc_with(|s| {
            s.allow_privileged_container = true;
            s.allow_privilege_escalation = Some(true);
        });
        assert_eq!(
            reasons(
                &lax,
                &with_container(
                    serde_json::json!({"privileged": true, "allowPrivilegeEscalation": false})
                )
            ),
            [Reason::EscalationConflict("privileged: true")],
            "an explicit false conflicts under any SCC"
        );
        assert_eq!(
            reasons(
                &lax,
                &with_container(serde_json::json!({"privileged": true}))
            ),
            []
        );
    }

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

    #[test]
    fn groups_outside_fixed_ranges_are_refused() {
        let scc = default_scc("restricted-v3");
        let pod = PodSecurityRequest {
            host_users: Some(false),
            ..with_pod_context(serde_json::json!({"fsGroup": 0, "supplementalGroups": [1000, 5]}))
        };
        assert_eq!(
            reasons(&scc, &pod),
            [
                Reason::Group {
                    field: "fsGroup",
                    id: 0
                },
                Reason::Group {
                    field: "supplementalGroups",
                    id: 5
                }
            ]
        );
        // restricted-v2's fsGroup range comes from the namespace.
        assert_eq!(
            reasons(
                &default_scc("restricted-v2"),
                &with_pod_context(serde_json::json!({"fsGroup": 0}))
            ),
            []
        );
    }

    #[test]
    fn read_only_root_filesystem_required_refuses_an_explicit_false() {
        let scc = scc_with(|s| s.read_only_root_filesystem = true);
        assert_eq!(
            reasons(
                &scc,
                &with_container(serde_json::json!({"readOnlyRootFilesystem": false}))
            ),
            [Reason::ReadOnlyRootFilesystem]
        );
        assert!(
            admits(&scc, &PodSecurityRequest::ordinary()),
            "admission sets it when unset"
        );
    }

    #[test]
    fn an_scc_whose_strategies_cannot_be_built_admits_nothing() {
        let cases: Vec<(&str, SecurityContextConstraints)> = vec![
            (
                "MustRunAs without a uid",
                scc_with(|s| {
                    s.run_as_user = Some(RunAsUserStrategyOptions {
                        type_: Some("MustRunAs".into()),
                        ..RunAsUserStrategyOptions::default()
                    })
                }),
            ),
            (
                "a range with one bound",
                scc_with(|s| {
                    s.run_as_user = Some(RunAsUserStrategyOptions {
                        type_: Some("MustRunAsRange".into()),
                        uid_range_min: Some(1),
                        ..RunAsUserStrategyOptions::default()
                    })
                }),
            ),
            ("no runAsUser", scc_with(|s| s.run_as_user = None)),
            ("no seLinuxContext", scc_with(|s| s.se_linux_context = None)),
            (
                "an unknown SELinux type",
                scc_with(|s| {
                    s.se_linux_context = Some(SELinuxContextStrategyOptions {
                        type_: Some("MustRunAsRange".into()),
                        se_linux_options: None,
                    })
                }),
            ),
        ];
        for (case, scc) in cases {
            let got = refusals(&scc, &PodSecurityRequest::ordinary());
            assert!(
                matches!(
                    got.as_slice(),
                    [Refusal {
                        reason: Reason::InvalidScc(_),
                        ..
                    }]
                ),
                "{case}: {got:?}"
            );
        }
        let mut exact = scc_with(|s| {
            s.run_as_user = Some(RunAsUserStrategyOptions {
                type_: Some("MustRunAs".into()),
                uid: Some(1000),
                ..RunAsUserStrategyOptions::default()
            })
        });
        assert!(admits(
            &exact,
            &with_container(serde_json::json!({"runAsUser": 1000}))
        ));
        assert_eq!(
            reasons(
                &exact,
                &with_container(serde_json::json!({"runAsUser": 1001}))
            ),
            [Reason::RunAsUser {
                uid: 1001,
                required: "MustRunAs 1000".into()
            }]
        );
        exact.fs_group = None;
        assert!(
            admits(&exact, &PodSecurityRequest::ordinary()),
            "unset group strategies default to RunAsAny"
        );
    }

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

    // ------------------------------------------------------------------
    // Regressions found by the differential test against OpenShift's SCC
    // admission (tests/scc_differential.rs), each reduced to its core.

    /// A namespace as the local cluster's allocator (and OpenShift's)
    /// annotates it.
    fn namespace() -> NamespaceAllocation {
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

    /// restricted-v2 leaves the uid range to the namespace: a uid just past
    /// the namespace's block (or a small one such as 1000) is refused, as
    /// OpenShift refuses it, once the namespace is known.
    #[test]
    fn regression_a_uid_outside_the_namespace_range_is_refused() {
        let scc = default_scc("restricted-v2");
        for (uid, admitted) in [
            (1_000_070_000, true),
            (1_000_079_999, true),
            (1_000_080_000, false),
            (1000, false),
            (65534, false),
        ] {
            let pod = with_container(serde_json::json!({"runAsUser": uid}));
            assert!(
                admits(&scc, &pod),
                "{uid}: accepted while the namespace is unknown"
            );
            assert_eq!(
                admits(&scc, &pod.clone().in_namespace(namespace())),
                admitted,
                "{uid}"
            );
        }
        assert_eq!(
            reasons(
                &scc,
                &with_container(serde_json::json!({"runAsUser": 1000})).in_namespace(namespace())
            ),
            [Reason::RunAsUser {
                uid: 1000,
                required: "MustRunAsRange 1000070000-1000079999".into()
            }]
        );
    }

    /// `fsGroup: MustRunAs` without ranges allows the namespace's first
    /// group and nothing else; supplemental groups may be anywhere in its
    /// blocks.
    #[test]
    fn regression_the_namespace_gives_fs_group_one_value_and_supplemental_groups_its_blocks() {
        let scc = default_scc("restricted-v2");
        let pod = |sc: serde_json::Value| with_pod_context(sc).in_namespace(namespace());
        assert!(admits(
            &scc,
            &pod(serde_json::json!({"fsGroup": 1_000_070_000}))
        ));
        assert_eq!(
            reasons(&scc, &pod(serde_json::json!({"fsGroup": 1_000_070_001}))),
            [Reason::Group {
                field: "fsGroup",
                id: 1_000_070_001
            }]
        );
        assert!(
            admits(
                &scc,
                &with_pod_context(serde_json::json!({"fsGroup": 1_000_070_001}))
            ),
            "accepted while the namespace is unknown"
        );
        // restricted-v2's supplemental groups are RunAsAny; an SCC that
        // leaves them to the namespace allows its whole block.
        let namespaced_groups = scc_with(|s| {
            s.supplemental_groups = Some(buildpolicy_api::scc::GroupStrategyOptions {
                type_: Some("MustRunAs".into()),
                ranges: None,
            })
        });
        assert!(admits(
            &namespaced_groups,
            &pod(serde_json::json!({"supplementalGroups": [1_000_070_001, 1_000_079_999]}))
        ));
        assert_eq!(
            reasons(
                &namespaced_groups,
                &pod(serde_json::json!({"supplementalGroups": [1_000_080_000]}))
            ),
            [Reason::Group {
                field: "supplementalGroups",
                id: 1_000_080_000
            }]
        );
    }

    /// SELinux `MustRunAs` without a level takes the namespace's MCS level:
    /// another level is refused, the same categories in another order pass.
    #[test]
    fn regression_a_selinux_level_other_than_the_namespace_mcs_is_refused() {
        let scc = default_scc("restricted-v2");
        for (level, admitted) in [("s0:c4,c1", true), ("s0:c1,c4", true), ("s0:c1,c2", false)] {
            let pod = with_container(serde_json::json!({"seLinuxOptions": {"level": level}}));
            assert!(
                admits(&scc, &pod),
                "{level}: accepted while the namespace is unknown"
            );
            assert_eq!(
                admits(&scc, &pod.in_namespace(namespace())),
                admitted,
                "{level}"
            );
        }
    }

    /// An SCC that adds `CAP_SYS_ADMIN` by default and forbids escalation
    /// makes every container it admits invalid: admission adds the
    /// capability and sets `allowPrivilegeEscalation: false`, which pod
    /// validation rejects. A container that drops it is not affected.
    #[test]
    fn regression_cap_sys_admin_added_by_the_scc_conflicts_with_escalation_forced_off() {
        let scc = scc_with(|s| {
            s.default_add_capabilities = cap_list(&["CAP_SYS_ADMIN"]);
            s.allow_privilege_escalation = Some(false);
        });
        let ordinary = PodSecurityRequest::ordinary();
        assert_eq!(
            reasons(&scc, &ordinary),
            [Reason::EscalationConflict("capabilities.add CAP_SYS_ADMIN")]
        );
        assert!(selects(&scc, &ordinary), "the plugin itself takes the SCC");
        assert!(!admits(&scc, &ordinary));
        let dropping =
            with_container(serde_json::json!({"capabilities": {"drop": ["CAP_SYS_ADMIN"]}}));
        assert_eq!(reasons(&scc, &dropping), []);
    }

    /// Admission takes the first SCC whose own checks pass; when the pod it
    /// makes then fails validation, the pod is refused: the next SCC (here
    /// restricted-v2, which would admit it) is never tried.
    #[test]
    fn regression_a_pod_invalid_under_the_first_scc_is_not_tried_under_the_next() {
        let mut first = scc_with(|s| {
            s.default_add_capabilities = cap_list(&["CAP_SYS_ADMIN"]);
            s.allow_privilege_escalation = Some(false);
        });
        first.priority = Some(10);
        let restricted = default_scc("restricted-v2");
        let ordinary = PodSecurityRequest::ordinary();
        assert_eq!(admitted_under(&[&first, &restricted], &ordinary), None);
        assert_eq!(
            admitted_under(&[&restricted], &ordinary).as_deref(),
            Some("restricted-v2")
        );
        first.priority = None;
        // Now restricted-v2 sorts first (fewer points) and takes the pod.
        assert_eq!(
            admitted_under(&[&first, &restricted], &ordinary).as_deref(),
            Some("restricted-v2")
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

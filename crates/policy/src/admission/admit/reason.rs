//! Why an SCC refuses a pod, and the messages that say so.

use std::fmt;

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
///
/// What each reason means is its message, in the `Display` impl below; a
/// variant's comment only adds what the message leaves out: the SCC setting
/// that refuses, and what the fields hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The only refusal then, with subject "scc": an SCC whose strategies
    /// cannot be built admits nothing.
    InvalidScc(String),
    /// `allowPrivilegedContainer` is false.
    Privileged,
    /// Neither `allowedCapabilities` (or `*` there) nor
    /// `defaultAddCapabilities` lists it; names are compared as written
    /// (`CAP_SYS_ADMIN` is not `SYS_ADMIN`).
    Capability(String),
    /// An explicit `allowPrivilegeEscalation: true` under the SCC's
    /// `allowPrivilegeEscalation: false`.
    PrivilegeEscalation,
    /// The false may be the container's or forced by the SCC; the field
    /// holds `privileged: true` or `capabilities.add CAP_SYS_ADMIN`. Pod
    /// validation runs after admission has taken the SCC.
    EscalationConflict(&'static str),
    /// Under `MustRunAs` or `MustRunAsRange`; `required` names the strategy
    /// and its uids.
    RunAsUser {
        uid: i64,
        required: String,
    },
    /// `runAsUser: 0` under `MustRunAsNonRoot`.
    RootUser,
    /// Under `MustRunAsNonRoot`.
    RunAsNonRootFalse,
    /// Under `seLinuxContext: MustRunAs`; `required` is the SCC's value,
    /// quoted, or where the namespace's level comes from.
    SeLinux {
        field: &'static str,
        requested: String,
        required: String,
    },
    /// Profiles in the annotation form SCCs list (`runtime/default`,
    /// `unconfined`, `localhost/<file>`); `allowed` is `seccompProfiles`
    /// without `*`.
    Seccomp {
        profile: String,
        allowed: Vec<String>,
    },
    /// An explicit false under the SCC's `readOnlyRootFilesystem: true`.
    ReadOnlyRootFilesystem,
    HostPort(i32),
    HostNetwork,
    HostPid,
    HostIpc,
    /// Under `userNamespaceLevel: RequirePodLevel`.
    HostUsers,
    /// A type the SCC's `volumes` does not list; `fs_type` is spelled as
    /// SCCs spell it ([`super::volume_type`]).
    Volume {
        name: String,
        fs_type: String,
    },
    /// A volume with no source set.
    UnknownVolumeType {
        name: String,
    },
    /// `field` is `fsGroup` or `supplementalGroups`; the ranges are the
    /// SCC's, or the namespace's when the SCC leaves them to it.
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

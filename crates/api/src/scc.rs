//! OpenShift's `SecurityContextConstraints` (`security.openshift.io/v1`),
//! with the fields of `github.com/openshift/api` `security/v1/types.go`.
//!
//! SCCs are cluster-scoped and keep their fields at the top level (no
//! `spec`). Fields that the Go type serialises without `omitempty` are
//! required by the published CRD (it allows `null`), so they are always
//! written here too, as `null` when unset.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::SELinuxOptions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ClusterResourceScope;
use serde::{Deserialize, Serialize};

/// API group of SCCs.
pub const GROUP: &str = "security.openshift.io";
/// API version of SCCs.
pub const VERSION: &str = "v1";
/// Kind of SCCs.
pub const KIND: &str = "SecurityContextConstraints";
/// Resource (plural) of SCCs, as RBAC rules name it.
pub const PLURAL: &str = "securitycontextconstraints";
/// Name of the CustomResourceDefinition that serves SCCs: its schema says
/// which SCC fields the cluster's OpenShift knows.
pub const CRD_NAME: &str = "securitycontextconstraints.security.openshift.io";

/// A SecurityContextConstraints object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContextConstraints {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,

    /// Sort order: higher first; `None` counts as 0.
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub allow_privileged_container: bool,
    #[serde(default)]
    pub default_add_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub required_drop_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_capabilities: Option<Vec<String>>,
    #[serde(default)]
    pub allow_host_dir_volume_plugin: bool,
    #[serde(default)]
    pub volumes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_flex_volumes: Option<Vec<AllowedFlexVolume>>,
    #[serde(default)]
    pub allow_host_network: bool,
    #[serde(default)]
    pub allow_host_ports: bool,
    #[serde(default, rename = "allowHostPID")]
    pub allow_host_pid: bool,
    #[serde(default, rename = "allowHostIPC")]
    pub allow_host_ipc: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se_linux_context: Option<SELinuxContextStrategyOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<RunAsUserStrategyOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplemental_groups: Option<GroupStrategyOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<GroupStrategyOptions>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    #[serde(default)]
    pub users: Option<Vec<String>>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profiles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forbidden_sysctls: Option<Vec<String>>,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.to_owned()
}

/// A flex volume driver an SCC allows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AllowedFlexVolume {
    pub driver: String,
}

/// `seLinuxContext`: `MustRunAs` or `RunAsAny`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SELinuxContextStrategyOptions {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SELinuxOptions>,
}

/// `runAsUser`: `MustRunAs`, `MustRunAsRange`, `MustRunAsNonRoot` or `RunAsAny`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunAsUserStrategyOptions {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, rename = "uid", skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    #[serde(
        default,
        rename = "uidRangeMin",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid_range_min: Option<i64>,
    #[serde(
        default,
        rename = "uidRangeMax",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid_range_max: Option<i64>,
}

/// `fsGroup` and `supplementalGroups`: `MustRunAs` or `RunAsAny`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupStrategyOptions {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<IdRange>>,
}

/// An inclusive range of ids.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IdRange {
    #[serde(default)]
    pub min: i64,
    #[serde(default)]
    pub max: i64,
}

impl kube::Resource for SecurityContextConstraints {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl SecurityContextConstraints {
    /// An SCC with the given name and every other field at its zero value.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Self::default()
        }
    }

    /// The SCC's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

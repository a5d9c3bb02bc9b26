//! Rendering an SCC for the schema the cluster serves.
//!
//! The SCC schema grows with OpenShift: `userNamespaceLevel` exists only
//! where OpenShift supports pod user namespaces in SCCs (openshift/api's
//! `UserNamespacesPodSecurityStandards` feature gate: the Default feature set
//! of OpenShift 4.18 has no such field, its TechPreviewNoUpgrade set has).
//! A server-side apply naming a field the served schema lacks is refused as
//! a whole ("field not declared in schema"), so the operator learns the
//! schema from the SCC CRD and renders for it: a field the schema lacks is
//! left out where leaving it out means the same to SCC admission, and the
//! policy is refused where it does not.

use std::collections::BTreeSet;

use buildpolicy_api::Isolation;
use buildpolicy_api::conditions::reason;
use buildpolicy_api::scc::{self, SecurityContextConstraints};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

use crate::Rejection;

/// The SCC field that lets an SCC require a pod user namespace.
pub const USER_NAMESPACE_LEVEL: &str = "userNamespaceLevel";

/// Fields whose absence SCC admission reads as one particular value: where
/// the schema lacks the field, an SCC rendered with that value admits the
/// same pods without it. OpenShift's admission treats a missing
/// `userNamespaceLevel` as `AllowHostLevel` (and admission code older than
/// the field allows host users and pod user namespaces alike).
const ABSENT_MEANS: &[(&str, &str)] = &[(USER_NAMESPACE_LEVEL, "AllowHostLevel")];

/// Top-level keys of every object, whatever the schema says.
const OBJECT_KEYS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Which top-level SCC fields the cluster's SCC schema declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SccSchema {
    /// `None`: unknown, taken to be the newest schema (every field the
    /// operator knows exists).
    declared: Option<BTreeSet<String>>,
}

impl Default for SccSchema {
    fn default() -> Self {
        Self::newest()
    }
}

impl SccSchema {
    /// The newest schema: every field the operator knows. Assumed where the
    /// CRD cannot be read, which is how the operator behaved before it read it.
    pub fn newest() -> Self {
        Self { declared: None }
    }

    /// A schema that declares exactly `fields` at the top level.
    pub fn declaring<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            declared: Some(fields.into_iter().map(Into::into).collect()),
        }
    }

    /// The schema of the SCC CRD's `v1` version, the one the operator
    /// writes (the only version OpenShift serves, and its storage version);
    /// `None` when the CRD does not serve `v1` with a schema. A schema that
    /// keeps unknown fields at the top level accepts every field.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Option<Self> {
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == scc::VERSION && v.served)?;
        let schema = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
        if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
            return Some(Self::newest());
        }
        Some(Self::declaring(schema.properties.as_ref()?.keys().cloned()))
    }

    /// Whether the schema has top-level `field` (always, for the newest).
    pub fn declares(&self, field: &str) -> bool {
        self.declared.as_ref().is_none_or(|d| d.contains(field))
    }

    /// Whether this is the assumed newest schema rather than one read from
    /// a CRD.
    pub fn is_newest(&self) -> bool {
        self.declared.is_none()
    }

    /// Whether SCCs on this cluster can require a pod user namespace
    /// (`spec.isolation: PodUserNamespace`).
    pub fn has_pod_user_namespaces(&self) -> bool {
        self.declares(USER_NAMESPACE_LEVEL)
    }

    /// `scc` as this schema can hold it: fields the schema lacks are left
    /// out where their absence means the same to SCC admission. The result's
    /// `scc` is what the server will hold (compare the live SCC with it) and
    /// `body` what to apply.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] (`UnsupportedByCluster`) naming the field and the fix
    /// when the SCC needs a field the schema lacks, so that leaving it out
    /// would admit other pods than the policy asks for.
    pub fn fit(
        &self,
        scc: &SecurityContextConstraints,
        isolation: Isolation,
    ) -> Result<FittedScc, Rejection> {
        let Value::Object(mut body) = serde_json::to_value(scc).expect("an SCC serialises") else {
            unreachable!("an SCC serialises to an object");
        };
        let mut left_out = Vec::new();
        let mut needed = Vec::new();
        let undeclared: Vec<String> = body
            .keys()
            .filter(|k| !OBJECT_KEYS.contains(&k.as_str()) && !self.declares(k))
            .cloned()
            .collect();
        for field in undeclared {
            let value = body.remove(&field).expect("a key of the body");
            let same_as_absent = value.is_null()
                || ABSENT_MEANS
                    .iter()
                    .any(|(f, absent)| *f == field && value.as_str() == Some(absent));
            if same_as_absent {
                left_out.push(field);
            } else {
                needed.push((field, value));
            }
        }
        if !needed.is_empty() {
            return Err(unsupported(&needed, isolation));
        }
        let body = Value::Object(body);
        let scc = serde_json::from_value(body.clone()).expect("a fitted SCC deserialises");
        Ok(FittedScc {
            scc,
            body,
            left_out,
        })
    }
}

/// An SCC rendered for the cluster's schema.
#[derive(Clone, Debug, PartialEq)]
pub struct FittedScc {
    /// What the server holds once `body` is applied: compare the live SCC
    /// with this, not with the unfitted rendering, or every look is drift.
    pub scc: SecurityContextConstraints,
    /// The server-side apply body: only fields the schema declares.
    pub body: Value,
    /// Fields left out because the schema lacks them (and their absence
    /// means the same).
    pub left_out: Vec<String>,
}

fn unsupported(needed: &[(String, Value)], isolation: Isolation) -> Rejection {
    let schema = format!(
        "its SecurityContextConstraints schema (CRD {})",
        scc::CRD_NAME
    );
    let message = if needed.iter().any(|(f, _)| f == USER_NAMESPACE_LEVEL) {
        format!(
            "spec.isolation is {isolation}, but this cluster's OpenShift has no pod user namespaces in SCCs: {schema} has no {USER_NAMESPACE_LEVEL}, the field that makes an SCC require hostUsers: false (it came with OpenShift's user-namespace support, generally available from OpenShift 4.20; OpenShift 4.18 has it only in the TechPreviewNoUpgrade feature set); upgrade the cluster, or set spec.isolation to {} or {}",
            Isolation::HostUserNamespace,
            Isolation::CrioUserNamespace,
        )
    } else {
        let fields: Vec<String> = needed.iter().map(|(f, v)| format!("{f}: {v}")).collect();
        format!(
            "the SCC for this policy needs {}, which {schema} does not have: upgrade the cluster's OpenShift",
            fields.join(", ")
        )
    };
    Rejection {
        reason: reason::UNSUPPORTED_BY_CLUSTER,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::scc_drift;
    use crate::fixtures::modelcar_spec;
    use crate::{Owner, render};

    /// The top-level fields of OpenShift 4.18's Default SCC CRD
    /// (openshift/api v0.0.0-20241001152557-e415140e5d5f).
    const OPENSHIFT_4_18: &[&str] = &[
        "allowHostDirVolumePlugin",
        "allowHostIPC",
        "allowHostNetwork",
        "allowHostPID",
        "allowHostPorts",
        "allowPrivilegeEscalation",
        "allowPrivilegedContainer",
        "allowedCapabilities",
        "allowedFlexVolumes",
        "allowedUnsafeSysctls",
        "apiVersion",
        "defaultAddCapabilities",
        "defaultAllowPrivilegeEscalation",
        "forbiddenSysctls",
        "fsGroup",
        "groups",
        "kind",
        "metadata",
        "priority",
        "readOnlyRootFilesystem",
        "requiredDropCapabilities",
        "runAsUser",
        "seLinuxContext",
        "seccompProfiles",
        "supplementalGroups",
        "users",
        "volumes",
    ];

    fn openshift_4_18() -> SccSchema {
        SccSchema::declaring(OPENSHIFT_4_18.iter().copied())
    }

    fn newest() -> SccSchema {
        SccSchema::declaring(OPENSHIFT_4_18.iter().copied().chain([USER_NAMESPACE_LEVEL]))
    }

    fn rendered(isolation: Isolation) -> SecurityContextConstraints {
        let owner = Owner {
            name: "modelcar-build".into(),
            uid: Some("0000-uid".into()),
        };
        render(&owner, &modelcar_spec(isolation)).scc
    }

    /// What the API server holds after applying `body`: the body, with the
    /// CRD's default for `userNamespaceLevel` where the schema has it.
    fn stored(schema: &SccSchema, body: &Value) -> SecurityContextConstraints {
        let mut scc: SecurityContextConstraints = serde_json::from_value(body.clone()).unwrap();
        if schema.has_pod_user_namespaces() && scc.user_namespace_level.is_none() {
            scc.user_namespace_level = Some("AllowHostLevel".into());
        }
        scc
    }

    #[test]
    fn on_the_newest_schema_nothing_is_left_out() {
        for schema in [SccSchema::newest(), newest()] {
            for isolation in Isolation::ALL {
                let scc = rendered(isolation);
                let fitted = schema.fit(&scc, isolation).unwrap();
                assert_eq!(fitted.scc, scc, "{isolation}");
                assert_eq!(fitted.body, serde_json::to_value(&scc).unwrap());
                assert!(fitted.left_out.is_empty());
            }
        }
    }

    #[test]
    fn without_user_namespace_level_host_modes_leave_it_out_and_keep_the_rest() {
        for isolation in [Isolation::HostUserNamespace, Isolation::CrioUserNamespace] {
            let scc = rendered(isolation);
            let fitted = openshift_4_18().fit(&scc, isolation).unwrap();
            assert_eq!(fitted.left_out, vec![USER_NAMESPACE_LEVEL]);
            assert!(fitted.body.get(USER_NAMESPACE_LEVEL).is_none());
            // Every other field is applied as rendered.
            let mut expected = serde_json::to_value(&scc).unwrap();
            expected
                .as_object_mut()
                .unwrap()
                .remove(USER_NAMESPACE_LEVEL);
            assert_eq!(fitted.body, expected);
            assert_eq!(fitted.scc.user_namespace_level, None);
            assert_eq!(fitted.scc.allowed_capabilities, scc.allowed_capabilities);
        }
    }

    #[test]
    fn every_body_key_is_declared_by_the_schema() {
        let schema = openshift_4_18();
        let fitted = schema
            .fit(
                &rendered(Isolation::HostUserNamespace),
                Isolation::HostUserNamespace,
            )
            .unwrap();
        for key in fitted.body.as_object().unwrap().keys() {
            assert!(schema.declares(key), "{key} is not in the 4.18 schema");
        }
    }

    #[test]
    fn pod_user_namespace_without_user_namespace_level_is_refused_naming_the_field_and_the_fix() {
        let err = openshift_4_18()
            .fit(
                &rendered(Isolation::PodUserNamespace),
                Isolation::PodUserNamespace,
            )
            .unwrap_err();
        assert_eq!(err.reason, reason::UNSUPPORTED_BY_CLUSTER);
        for part in [
            "spec.isolation is PodUserNamespace",
            "has no pod user namespaces in SCCs",
            "has no userNamespaceLevel",
            scc::CRD_NAME,
            "upgrade the cluster",
            "HostUserNamespace or CRIOUserNamespace",
        ] {
            assert!(
                err.message.contains(part),
                "{part:?} not in {}",
                err.message
            );
        }
    }

    #[test]
    fn an_undeclared_field_with_a_meaning_is_refused_by_name() {
        let schema = SccSchema::declaring(
            OPENSHIFT_4_18
                .iter()
                .copied()
                .filter(|f| *f != "seccompProfiles"),
        );
        let err = schema
            .fit(
                &rendered(Isolation::HostUserNamespace),
                Isolation::HostUserNamespace,
            )
            .unwrap_err();
        assert_eq!(err.reason, reason::UNSUPPORTED_BY_CLUSTER);
        assert!(
            err.message
                .contains("seccompProfiles: [\"runtime/default\"]"),
            "{}",
            err.message
        );
    }

    /// The fitted SCC, stored by the server, is no drift: a steady state
    /// causes no write, on either schema.
    #[test]
    fn what_the_server_stores_from_the_fitted_body_is_not_drift() {
        for schema in [openshift_4_18(), newest()] {
            for isolation in [Isolation::HostUserNamespace, Isolation::CrioUserNamespace] {
                let fitted = schema.fit(&rendered(isolation), isolation).unwrap();
                let live = stored(&schema, &fitted.body);
                assert_eq!(
                    scc_drift(&fitted.scc, &live),
                    Vec::<&str>::new(),
                    "{isolation}"
                );
            }
        }
        let schema = newest();
        let fitted = schema
            .fit(
                &rendered(Isolation::PodUserNamespace),
                Isolation::PodUserNamespace,
            )
            .unwrap();
        assert!(scc_drift(&fitted.scc, &stored(&schema, &fitted.body)).is_empty());
    }

    /// Drift is still seen on the older schema: a hand edit of a declared
    /// field is repaired.
    #[test]
    fn on_the_older_schema_a_hand_edit_is_still_drift() {
        let schema = openshift_4_18();
        let fitted = schema
            .fit(
                &rendered(Isolation::HostUserNamespace),
                Isolation::HostUserNamespace,
            )
            .unwrap();
        let mut live = stored(&schema, &fitted.body);
        live.allow_privileged_container = true;
        assert_eq!(
            scc_drift(&fitted.scc, &live),
            vec!["allowPrivilegedContainer"]
        );
    }

    #[test]
    fn the_schema_is_read_from_the_served_v1_version_of_the_crd() {
        let crd = |versions: Value| -> CustomResourceDefinition {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": scc::CRD_NAME},
                "spec": {
                    "group": scc::GROUP,
                    "names": {"plural": scc::PLURAL, "kind": scc::KIND},
                    "scope": "Cluster",
                    "versions": versions,
                }
            }))
            .unwrap()
        };
        let version = |name: &str, served: bool, properties: &[&str]| {
            let properties: serde_json::Map<String, Value> = properties
                .iter()
                .map(|p| ((*p).to_owned(), serde_json::json!({})))
                .collect();
            serde_json::json!({
                "name": name, "served": served, "storage": served,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": properties}}
            })
        };
        let older = crd(serde_json::json!([version("v1", true, OPENSHIFT_4_18)]));
        assert_eq!(SccSchema::from_crd(&older), Some(openshift_4_18()));
        assert!(!openshift_4_18().has_pod_user_namespaces());
        let with_level = crd(serde_json::json!([version(
            "v1",
            true,
            &[USER_NAMESPACE_LEVEL, "volumes"]
        )]));
        let schema = SccSchema::from_crd(&with_level).unwrap();
        assert!(schema.has_pod_user_namespaces() && !schema.declares("seccompProfiles"));
        // v1 not served: nothing to learn from.
        let unserved = crd(serde_json::json!([version("v1", false, OPENSHIFT_4_18)]));
        assert_eq!(SccSchema::from_crd(&unserved), None);
        // Unknown fields kept at the top level: every field is accepted.
        let mut open = older.clone();
        open.spec.versions[0]
            .schema
            .as_mut()
            .unwrap()
            .open_api_v3_schema
            .as_mut()
            .unwrap()
            .x_kubernetes_preserve_unknown_fields = Some(true);
        assert!(SccSchema::from_crd(&open).unwrap().is_newest());
    }
}

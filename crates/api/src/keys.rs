//! Names of the labels, annotations and markers the operator writes, and
//! how it reads them back ([`Ownership`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The one field manager every write of the operator uses.
pub const FIELD_MANAGER: &str = "buildpolicy-operator";

/// OpenShift's annotation that pins a pod to one SCC (openshift/api
/// `security/v1/consts.go`, GA since OpenShift 4.14). Tekton copies Task
/// annotations to the TaskRun and its pod.
pub const REQUIRED_SCC_ANNOTATION: &str = "openshift.io/required-scc";

/// The SCC OpenShift admitted a pod under.
pub const ADMITTED_SCC_ANNOTATION: &str = "openshift.io/scc";

/// Label naming the BuildPolicy that owns (or pinned) an object.
pub const POLICY_LABEL: &str = "buildpolicy.dev/policy";

/// Conventional label saying which tool manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Value of [`MANAGED_BY_LABEL`] on everything the operator creates.
pub const MANAGED_BY_VALUE: &str = "buildpolicy-operator";

/// Finalizer that lets the operator revoke a policy's grant before the
/// policy disappears, also where garbage collection does not run.
pub const FINALIZER: &str = "buildpolicy.dev/cleanup";

/// Prefix of every generated SCC, Role and RoleBinding name.
pub const NAME_PREFIX: &str = "buildpolicy-";

/// Name of the SCC, Role and RoleBinding a policy owns.
pub fn owned_name(policy: &str) -> String {
    format!("{NAME_PREFIX}{policy}")
}

/// The one way to ask whose an object is, from its metadata.
///
/// An object the operator created (SCC, Role, RoleBinding, admission
/// binding) carries [`MANAGED_BY_LABEL`] and [`POLICY_LABEL`]: it is
/// [`Ownership::Managed`]. A Task the operator pinned, and the runs of such a
/// Task, carry [`POLICY_LABEL`] alone: [`Ownership::Labelled`]. Anything else
/// is someone else's. Who may hold an SCC's name is a stronger question,
/// answered by its owner reference (the policy's UID), not by labels anyone
/// can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership<'a> {
    /// Created by the operator for this policy.
    Managed(&'a str),
    /// Pinned by (or run under the pin of) this policy.
    Labelled(&'a str),
    /// Not the operator's.
    Foreign,
}

impl<'a> Ownership<'a> {
    pub fn of(meta: &'a ObjectMeta) -> Self {
        let Some(labels) = meta.labels.as_ref() else {
            return Self::Foreign;
        };
        match labels.get(POLICY_LABEL) {
            None => Self::Foreign,
            Some(policy)
                if labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE) =>
            {
                Self::Managed(policy)
            }
            Some(policy) => Self::Labelled(policy),
        }
    }

    /// The policy an object the operator created belongs to.
    pub fn managed(self) -> Option<&'a str> {
        match self {
            Self::Managed(policy) => Some(policy),
            _ => None,
        }
    }

    /// The policy named by the object's policy label, whether or not the
    /// operator created it (a pinned Task, a run).
    pub fn policy(self) -> Option<&'a str> {
        match self {
            Self::Managed(policy) | Self::Labelled(policy) => Some(policy),
            Self::Foreign => None,
        }
    }
}

/// [`Ownership::of`] the object's metadata.
pub fn ownership<K: kube::Resource>(object: &K) -> Ownership<'_> {
    Ownership::of(object.meta())
}

/// CRI-O's per-pod user namespace request (`io.kubernetes.cri-o.userns-mode`,
/// honoured for pods whose runtime class allows it). `auto` lets CRI-O pick
/// a free range of host IDs; `size=65536` maps uid/gid 0–65535 inside, which
/// `newuidmap` needs for the build's own nested mappings.
pub const CRIO_USERNS_MODE_ANNOTATION: &str = "io.kubernetes.cri-o.userns-mode";
pub const CRIO_USERNS_MODE_VALUE: &str = "auto:size=65536";

/// Activates CRI-O's `openshift-builder` workload on OpenShift nodes, the
/// workload that allows the userns-mode annotation.
pub const OPENSHIFT_BUILDER_ANNOTATION: &str = "io.openshift.builder";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn meta(labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            labels: (!labels.is_empty()).then(|| {
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn both_labels_make_an_object_the_operators() {
        let m = meta(&[
            (POLICY_LABEL, "buildah"),
            (MANAGED_BY_LABEL, MANAGED_BY_VALUE),
        ]);
        assert_eq!(Ownership::of(&m), Ownership::Managed("buildah"));
        assert_eq!(Ownership::of(&m).managed(), Some("buildah"));
        assert_eq!(Ownership::of(&m).policy(), Some("buildah"));
    }

    #[test]
    fn the_policy_label_alone_is_a_pin_not_an_object_the_operator_created() {
        let m = meta(&[(POLICY_LABEL, "buildah")]);
        assert_eq!(Ownership::of(&m), Ownership::Labelled("buildah"));
        assert_eq!(Ownership::of(&m).managed(), None);
        assert_eq!(Ownership::of(&m).policy(), Some("buildah"));
        let other_manager = meta(&[(POLICY_LABEL, "buildah"), (MANAGED_BY_LABEL, "helm")]);
        assert_eq!(Ownership::of(&other_manager).managed(), None);
    }

    #[test]
    fn without_the_policy_label_an_object_is_someone_elses() {
        for m in [meta(&[]), meta(&[(MANAGED_BY_LABEL, MANAGED_BY_VALUE)])] {
            assert_eq!(Ownership::of(&m), Ownership::Foreign);
            assert_eq!(Ownership::of(&m).policy(), None);
        }
    }
}

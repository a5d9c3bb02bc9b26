//! The `runAsUser` strategy: the uids a container may run as.

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

use super::Reason;
use crate::admission::namespace::NamespaceAllocation;

pub(super) enum UserRule {
    Any,
    NonRoot,
    Exactly(i64),
    Range(i64, i64),
    /// `MustRunAsRange` without bounds: the namespace's allocated range.
    NamespaceRange,
}

impl UserRule {
    /// The SCC's `runAsUser` strategy; a range left to the namespace is
    /// `namespace`'s range when that is known.
    pub(super) fn of(
        scc: &SecurityContextConstraints,
        namespace: Option<&NamespaceAllocation>,
    ) -> Result<Self, String> {
        Ok(match (Self::of_scc(scc)?, namespace) {
            (Self::NamespaceRange, Some(ns)) => Self::Range(ns.uids.min, ns.uids.max),
            (rule, _) => rule,
        })
    }

    fn of_scc(scc: &SecurityContextConstraints) -> Result<Self, String> {
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

    /// What the rule refuses in a container; the `runAsUser` and
    /// `runAsNonRoot` it leaves unset are the pod's.
    pub(super) fn refusals(
        &self,
        pod: Option<&PodSecurityContext>,
        container: &SecurityContext,
    ) -> Vec<Reason> {
        let uid = container.run_as_user.or(pod.and_then(|p| p.run_as_user));
        let non_root = container
            .run_as_non_root
            .or(pod.and_then(|p| p.run_as_non_root));
        self.refusal(uid, non_root).into_iter().collect()
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::SecurityContext;

    use crate::admission::admit::test_pods::{
        namespace, reasons, with_container, with_pod_context,
    };
    use crate::admission::admit::{Reason, admits};
    use crate::admission::test_sccs::default_scc;

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
}

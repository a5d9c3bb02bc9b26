//! The `fsGroup` and `supplementalGroups` strategies: the groups a pod may
//! ask for.

use buildpolicy_api::SecurityContextConstraints;
use buildpolicy_api::scc::{GroupStrategyOptions, IdRange};
use k8s_openapi::api::core::v1::PodSecurityContext;

use super::Reason;
use crate::admission::namespace::NamespaceAllocation;

/// The SCC's two group strategies.
pub(super) struct GroupRules {
    fs_group: GroupRule,
    supplemental_groups: GroupRule,
}

enum GroupRule {
    Any,
    Ranges(Vec<IdRange>),
    /// `MustRunAs` without ranges: the namespace's allocation.
    Namespace,
}

impl GroupRules {
    /// The SCC's group strategies; groups left to the namespace are
    /// `namespace`'s when that is known: its first group for `fsGroup`, its
    /// blocks for supplemental groups.
    pub(super) fn of(
        scc: &SecurityContextConstraints,
        namespace: Option<&NamespaceAllocation>,
    ) -> Result<Self, String> {
        let mut fs_group = GroupRule::of("fsGroup", scc.fs_group.as_ref())?;
        let mut supplemental_groups =
            GroupRule::of("supplementalGroups", scc.supplemental_groups.as_ref())?;
        if let Some(ns) = namespace {
            if let GroupRule::Namespace = fs_group {
                fs_group = GroupRule::Ranges(vec![ns.fs_group()]);
            }
            if let GroupRule::Namespace = supplemental_groups {
                supplemental_groups = GroupRule::Ranges(ns.groups.clone());
            }
        }
        Ok(Self {
            fs_group,
            supplemental_groups,
        })
    }

    /// The `fsGroup` and supplemental groups of the pod's security context
    /// outside the ranges.
    pub(super) fn refusals(&self, pod: Option<&PodSecurityContext>) -> Vec<Reason> {
        let mut out = Vec::new();
        if let (GroupRule::Ranges(ranges), Some(id)) =
            (&self.fs_group, pod.and_then(|sc| sc.fs_group))
            && !in_ranges(ranges, id)
        {
            out.push(Reason::Group {
                field: "fsGroup",
                id,
            });
        }
        if let GroupRule::Ranges(ranges) = &self.supplemental_groups {
            for &id in pod
                .and_then(|sc| sc.supplemental_groups.as_deref())
                .unwrap_or_default()
            {
                if !in_ranges(ranges, id) {
                    out.push(Reason::Group {
                        field: "supplementalGroups",
                        id,
                    });
                }
            }
        }
        out
    }
}

impl GroupRule {
    fn of(field: &str, opts: Option<&GroupStrategyOptions>) -> Result<Self, String> {
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

#[cfg(test)]
mod tests {
    use crate::admission::PodSecurityRequest;
    use crate::admission::admit::test_pods::{namespace, reasons, scc_with, with_pod_context};
    use crate::admission::admit::{Reason, admits};
    use crate::admission::test_sccs::default_scc;

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
}

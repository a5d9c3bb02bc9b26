//! The `seLinuxContext` strategy: the `seLinuxOptions` a pod or container
//! may set.

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::SELinuxOptions;

use super::Reason;
use crate::admission::namespace::NamespaceAllocation;

pub(super) enum SeLinuxRule {
    Any,
    /// The SCC's options; an empty level means the namespace's MCS level.
    MustRunAs(SELinuxOptions),
}

impl SeLinuxRule {
    /// The SCC's `seLinuxContext` strategy; a level left to the namespace is
    /// `namespace`'s MCS level when that is known.
    pub(super) fn of(
        scc: &SecurityContextConstraints,
        namespace: Option<&NamespaceAllocation>,
    ) -> Result<Self, String> {
        let opts = scc.se_linux_context.clone().unwrap_or_default();
        let mut rule = match opts.type_.as_deref().unwrap_or_default() {
            "RunAsAny" => Self::Any,
            "MustRunAs" => Self::MustRunAs(opts.se_linux_options.unwrap_or_default()),
            other => {
                return Err(format!(
                    "unrecognized seLinuxContext strategy type {other:?}"
                ));
            }
        };
        if let (Self::MustRunAs(options), Some(ns)) = (&mut rule, namespace)
            && options.level.as_deref().unwrap_or_default().is_empty()
        {
            options.level = Some(ns.mcs_level.clone());
        }
        Ok(rule)
    }

    /// What the rule refuses in the `seLinuxOptions` of a pod or container,
    /// if it sets them. Set options replace the generated ones whole, so
    /// every field must match, including a level left empty.
    pub(super) fn refusals(&self, requested: Option<&SELinuxOptions>) -> Vec<Reason> {
        let (Self::MustRunAs(required), Some(requested)) = (self, requested) else {
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

#[cfg(test)]
mod tests {
    use buildpolicy_api::scc::SELinuxContextStrategyOptions;
    use k8s_openapi::api::core::v1::SELinuxOptions;

    use crate::admission::admit::admits;
    use crate::admission::admit::test_pods::{namespace, scc_with, with_container};
    use crate::admission::test_sccs::default_scc;

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
}

//! Would a generated SCC take pods it was not made for?
//!
//! The policy's RBAC lets the whole service account `use` the generated SCC;
//! pinning (`openshift.io/required-scc`) only decides the SCC of the pinned
//! Tasks' pods. Every other pod of the service account still goes through
//! the ordinary search: all SCCs it may use, sorted, first to admit it wins.
//! The generated SCC is designed to lose that search for ordinary pods: with
//! no priority, its `runAsUser: RunAsAny` (40,000 points against
//! `MustRunAsRange`'s 20,000) and its capabilities put it after
//! `restricted-v2` (`MustRunAsRange`, 20,000), so an ordinary pod gets
//! `restricted-v2` first. A priority, or a lower score, would change that.

use std::cmp::Ordering;
use std::fmt;

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::PodSpec;

use super::admit::service_account_token_volume;
use super::{
    NamespaceAllocation, OrderReason, PodSecurityRequest, Refusal, admits, as_stored, compare,
    refusals, selects, sort_sccs,
};

/// The pods the `PreemptionSafe` analysis tries, by kind: an ordinary one
/// (restricted-v2 admits it), one that runs as root, as unpinned
/// build-adjacent steps often do, and both again in a pod user namespace
/// (`hostUsers: false`).
pub fn probe_pods() -> Vec<(&'static str, PodSpec)> {
    let pod = |host_users: Option<bool>, run_as_user: Option<i64>| {
        serde_json::from_value(serde_json::json!({
            "hostUsers": host_users,
            "securityContext": {"runAsUser": run_as_user},
            "containers": [{"name": "step", "image": "image"}]
        }))
        .expect("static pod spec")
    };
    vec![
        ("ordinary", pod(None, None)),
        ("root", pod(None, Some(0))),
        ("user-namespaced", pod(Some(false), None)),
        ("user-namespaced root", pod(Some(false), Some(0))),
    ]
}

/// [`probe_pods`] as admission sees them: with the service account token
/// volume the API server adds, in a namespace with `namespace`'s
/// allocation (unknown: `None`).
pub fn probe_requests(
    namespace: Option<&NamespaceAllocation>,
) -> Vec<(&'static str, PodSecurityRequest)> {
    probe_pods()
        .into_iter()
        .map(|(kind, spec)| {
            let mut request = PodSecurityRequest::from_pod_spec(&spec);
            request.volumes.push(service_account_token_volume());
            request.namespace = namespace.cloned();
            (kind, request)
        })
        .collect()
}

/// What admission would do with an unpinned pod of the service account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preemption {
    /// The pod gets `first_usable`, as it would without the generated SCC.
    Safe {
        generated: String,
        first_usable: String,
        because: SafeBecause,
    },
    /// The generated SCC is tried before SCCs that would otherwise admit the
    /// pod, and admits it: the pod lands on it instead of on `beats[0]`.
    Unsafe {
        generated: String,
        /// Every usable SCC that admits the pod, in admission order; all of
        /// them sort after the generated SCC.
        beats: Vec<String>,
        reason: OrderReason,
    },
    /// No other SCC the service account may use admits the pod, but the
    /// generated one does: without it the pod would be refused.
    OnlyGenerated { generated: String },
    /// Nothing the service account may use admits the pod.
    NoneAdmits { generated: String },
}

/// Why the generated SCC does not take the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SafeBecause {
    /// The usable SCC is tried first.
    SortsFirst(OrderReason),
    /// The generated SCC is tried first but refuses the pod.
    GeneratedRefuses(Vec<Refusal>),
}

impl Preemption {
    /// Whether an unpinned pod like this one would be admitted under the
    /// generated SCC.
    pub fn generated_chosen(&self) -> bool {
        matches!(self, Self::Unsafe { .. } | Self::OnlyGenerated { .. })
    }

    /// One line for the owner of `service_account`, with the fix when there
    /// is one.
    pub fn message(&self, service_account: &str) -> String {
        match self {
            Self::Safe {
                generated,
                first_usable,
                because: SafeBecause::SortsFirst(reason),
            } => format!(
                "unpinned pods of {service_account} get SCC {first_usable}, which sorts before {generated} ({reason})"
            ),
            Self::Safe {
                generated,
                first_usable,
                because: SafeBecause::GeneratedRefuses(why),
            } => format!(
                "unpinned pods of {service_account} get SCC {first_usable}: {generated} is tried first but refuses them ({})",
                why.first().map(ToString::to_string).unwrap_or_default()
            ),
            Self::Unsafe {
                generated,
                beats,
                reason,
            } => {
                let other = beats.first().map(String::as_str).unwrap_or_default();
                let fix = match reason {
                    OrderReason::Priority { .. } => "remove the priority".to_owned(),
                    OrderReason::Score { .. } | OrderReason::Name => format!(
                        "give the pinned Tasks a service account of their own, or stop granting {other} to this one"
                    ),
                };
                format!(
                    "SCC {generated} sorts before {other} ({reason}): unpinned pods of {service_account} would be admitted under it; {fix}"
                )
            }
            Self::OnlyGenerated { generated } => format!(
                "no other SCC {service_account} may use admits this pod, so unpinned pods like it are admitted under SCC {generated}: the RBAC grant covers the whole service account, pinning only narrows the pinned Tasks"
            ),
            Self::NoneAdmits { generated } => format!(
                "neither SCC {generated} nor any other SCC {service_account} may use admits this pod"
            ),
        }
    }
}

impl fmt::Display for Preemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message("the service account"))
    }
}

/// Where an unpinned pod of the service account lands once it may use
/// `generated` as well as `usable_by_sa` (the SCCs it may use without the
/// policy: `restricted-v2` through `system:authenticated`, plus anything
/// granted to it; the caller works that out). `pod` defaults to
/// [`PodSecurityRequest::ordinary`]. SCCs are compared as stored.
///
/// Admission takes the first SCC, in its order, that [`selects`] the pod;
/// the pod lands there if that SCC also [`admits`] it, and is refused
/// otherwise (it fails pod validation, no later SCC is tried). A generated
/// SCC that is tried first and then fails the pod that way takes no pod
/// either: the verdict is [`Preemption::NoneAdmits`].
pub fn preemption(
    generated: &SecurityContextConstraints,
    usable_by_sa: &[&SecurityContextConstraints],
    pod: Option<&PodSecurityRequest>,
) -> Preemption {
    let ordinary = PodSecurityRequest::ordinary();
    let pod = pod.unwrap_or(&ordinary);
    let generated = as_stored(generated);
    let name = generated.name().to_owned();
    let others: Vec<SecurityContextConstraints> = usable_by_sa
        .iter()
        .filter(|s| s.name() != generated.name())
        .map(|s| as_stored(s))
        .collect();
    let mut sorted: Vec<&SecurityContextConstraints> = others.iter().collect();
    sort_sccs(&mut sorted);
    // Where the pod lands without the generated SCC: the first SCC that
    // selects it, if it also admits it.
    let first_selecting = sorted.iter().copied().find(|s| selects(s, pod));
    let without = first_selecting.filter(|s| admits(s, pod));
    let generated_first = selects(&generated, pod)
        && first_selecting.is_none_or(|s| compare(&generated, s) == Ordering::Less);

    if generated_first {
        if !admits(&generated, pod) {
            return Preemption::NoneAdmits { generated: name };
        }
        return match without {
            None => Preemption::OnlyGenerated { generated: name },
            Some(first) => Preemption::Unsafe {
                reason: OrderReason::of(&generated, first).expect("distinct names order strictly"),
                beats: sorted
                    .iter()
                    .filter(|s| admits(s, pod) && compare(&generated, s) == Ordering::Less)
                    .map(|s| s.name().to_owned())
                    .collect(),
                generated: name,
            },
        };
    }
    let Some(first) = without else {
        return Preemption::NoneAdmits { generated: name };
    };
    match OrderReason::of(first, &generated) {
        Some(reason) => Preemption::Safe {
            generated: name,
            first_usable: first.name().to_owned(),
            because: SafeBecause::SortsFirst(reason),
        },
        None => Preemption::Safe {
            generated: name,
            first_usable: first.name().to_owned(),
            because: SafeBecause::GeneratedRefuses(refusals(&generated, pod)),
        },
    }
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::Isolation;
    use buildpolicy_api::scc::{RunAsUserStrategyOptions, SELinuxContextStrategyOptions};
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

    use super::*;
    use crate::admission::test_sccs::default_scc;
    use crate::fixtures::modelcar_scc;

    fn user_namespaced(run_as_user: Option<i64>) -> PodSecurityRequest {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "hostUsers": false,
            "securityContext": {"runAsUser": run_as_user},
            "containers": [{"name": "step", "image": "image"}]
        }))
        .unwrap();
        PodSecurityRequest::from_pod_spec(&spec)
    }

    /// OpenShift's restriction points for the PodUserNamespace SCC:
    /// non-default volume (persistentVolumeClaim) 100,000 + MustRunAsRange
    /// 20,000 + SELinux MustRunAs 10,000 + capabilities (5,000 + 5 × 10 −
    /// 2 × 50 required drops) 4,950 = 134,950: more restrictive than the
    /// host-level SCC (RunAsAny user: 154,950), less than restricted-v2 and
    /// restricted-v3 (132,010 each), more than nested-container (135,020).
    #[test]
    fn the_pod_user_namespace_scc_scores_between_restricted_v3_and_nested_container() {
        use crate::admission::order::restriction_score;
        let pod_level = modelcar_scc(Isolation::PodUserNamespace);
        assert_eq!(restriction_score(&pod_level), 134_950);
        assert_eq!(
            restriction_score(&modelcar_scc(Isolation::HostUserNamespace)),
            154_950
        );
        assert_eq!(
            restriction_score(&modelcar_scc(Isolation::CrioUserNamespace)),
            154_950
        );
        assert_eq!(restriction_score(&default_scc("restricted-v3")), 132_010);
        assert_eq!(restriction_score(&default_scc("nested-container")), 135_020);
    }

    #[test]
    fn the_pod_user_namespace_scc_takes_no_pod_from_the_default_sccs() {
        let generated = modelcar_scc(Isolation::PodUserNamespace);
        let usable = authenticated();
        // Pods in the host's user namespace: the SCC refuses them outright.
        let root: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(serde_json::json!({
            "securityContext": {"runAsUser": 0},
            "containers": [{"name": "step", "image": "image"}]
        }))
        .unwrap();
        assert!(matches!(
            preemption(&generated, &refs(&usable), Some(&PodSecurityRequest::ordinary())),
            Preemption::Safe { ref first_usable, .. } if first_usable == "restricted-v2"
        ));
        // Root on the host: refused by everything, the generated SCC too.
        assert!(
            !preemption(
                &generated,
                &refs(&usable),
                Some(&PodSecurityRequest::from_pod_spec(&root))
            )
            .generated_chosen()
        );
        // Pods with hostUsers: false that restricted-v2/v3 admit keep them.
        assert!(matches!(
            preemption(&generated, &refs(&usable), Some(&user_namespaced(None))),
            Preemption::Safe { ref first_usable, .. } if first_usable == "restricted-v2"
        ));
        // Root inside a user namespace: no default SCC admits it, so only
        // the generated one would: no other SCC loses the pod.
        assert_eq!(
            preemption(&generated, &refs(&usable), Some(&user_namespaced(Some(0)))),
            Preemption::OnlyGenerated {
                generated: "buildpolicy-modelcar-build".into()
            }
        );
    }

    #[test]
    fn granted_nested_container_the_pod_user_namespace_scc_takes_its_root_pods() {
        // An admin also let the service account use nested-container: its
        // root-in-a-user-namespace pods got nested-container. The generated
        // SCC is more restrictive (134,950 < 135,020), sorts first, admits
        // them: the analysis must say so.
        let generated = modelcar_scc(Isolation::PodUserNamespace);
        let mut usable = authenticated();
        usable.push(default_scc("nested-container"));
        let got = preemption(&generated, &refs(&usable), Some(&user_namespaced(Some(0))));
        assert!(
            matches!(got, Preemption::Unsafe { ref beats, reason: OrderReason::Score { .. }, .. } if beats == &["nested-container".to_owned()]),
            "{got:?}"
        );
    }

    /// What every authenticated service account may use on OpenShift 4.20.
    fn authenticated() -> Vec<SecurityContextConstraints> {
        vec![default_scc("restricted-v2"), default_scc("restricted-v3")]
    }

    fn refs(sccs: &[SecurityContextConstraints]) -> Vec<&SecurityContextConstraints> {
        sccs.iter().collect()
    }

    fn pod_adding(caps: &[&str]) -> PodSecurityRequest {
        let mut pod = PodSecurityRequest::ordinary();
        pod.containers[0].security_context = Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(caps.iter().map(|c| c.to_string()).collect()),
                drop: None,
            }),
            ..SecurityContext::default()
        });
        pod
    }

    #[test]
    fn rendered_scc_sorts_after_restricted_v2_so_ordinary_pods_keep_it() {
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let usable = authenticated();
        let got = preemption(&generated, &refs(&usable), None);
        assert_eq!(
            got,
            Preemption::Safe {
                generated: "buildpolicy-modelcar-build".into(),
                first_usable: "restricted-v2".into(),
                because: SafeBecause::SortsFirst(OrderReason::Score {
                    first: 132_010,
                    // volumes 100,000 + MustRunAs 10,000 + RunAsAny 40,000 +
                    // caps 5,000 + 5 x 10 - 2 x 50 (KILL, MKNOD)
                    second: 154_950,
                    because: "permits less runAs strategies",
                }),
            }
        );
        assert!(!got.generated_chosen());
        assert_eq!(
            got.message("model-build-sa"),
            "unpinned pods of model-build-sa get SCC restricted-v2, which sorts before buildpolicy-modelcar-build (equal priority, restriction score 132,010 < 154,950: it permits less runAs strategies)"
        );
    }

    #[test]
    fn a_priority_puts_the_generated_scc_ahead_of_restricted_v2() {
        let mut generated = modelcar_scc(Isolation::HostUserNamespace);
        generated.priority = Some(20);
        let usable = authenticated();
        let got = preemption(&generated, &refs(&usable), None);
        assert_eq!(
            got,
            Preemption::Unsafe {
                generated: "buildpolicy-modelcar-build".into(),
                beats: vec!["restricted-v2".into()],
                reason: OrderReason::Priority {
                    first: 20,
                    second: 0
                },
            }
        );
        assert!(got.generated_chosen());
        assert_eq!(
            got.message("model-build-sa"),
            "SCC buildpolicy-modelcar-build sorts before restricted-v2 (priority 20 > 0): unpinned pods of model-build-sa would be admitted under it; remove the priority"
        );
    }

    #[test]
    fn a_service_account_granted_anyuid_keeps_getting_anyuid() {
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let mut usable = authenticated();
        usable.push(default_scc("anyuid"));
        let got = preemption(&generated, &refs(&usable), None);
        assert_eq!(
            got,
            Preemption::Safe {
                generated: "buildpolicy-modelcar-build".into(),
                first_usable: "anyuid".into(),
                because: SafeBecause::SortsFirst(OrderReason::Priority {
                    first: 10,
                    second: 0
                }),
            }
        );
    }

    #[test]
    fn a_priority_above_anyuid_beats_every_admitting_scc_in_order() {
        let mut generated = modelcar_scc(Isolation::HostUserNamespace);
        generated.priority = Some(20);
        let mut usable = authenticated();
        usable.push(default_scc("anyuid"));
        let Preemption::Unsafe { beats, .. } = preemption(&generated, &refs(&usable), None) else {
            panic!("priority 20 beats anyuid's 10");
        };
        // restricted-v3 requires hostUsers: false, so it never admitted the pod.
        assert_eq!(beats, ["anyuid", "restricted-v2"]);
    }

    /// Restrictive looks safe but is not: `MustRunAs` uid 0 scores lower than
    /// `restricted-v2`'s range, so every unpinned pod would run as root.
    #[test]
    fn a_more_restrictive_generated_scc_takes_ordinary_pods() {
        let generated = SecurityContextConstraints {
            allowed_capabilities: Some(vec!["SYS_ADMIN".into()]),
            volumes: Some(vec!["emptyDir".into(), "projected".into(), "secret".into()]),
            run_as_user: Some(RunAsUserStrategyOptions {
                type_: Some("MustRunAs".into()),
                uid: Some(0),
                ..RunAsUserStrategyOptions::default()
            }),
            se_linux_context: Some(SELinuxContextStrategyOptions {
                type_: Some("MustRunAs".into()),
                se_linux_options: None,
            }),
            ..SecurityContextConstraints::named("buildpolicy-root")
        };
        assert_eq!(restriction_score_of(&generated), 10_000 + 10_000 + 5_010);
        let usable = authenticated();
        let got = preemption(&generated, &refs(&usable), None);
        let Preemption::Unsafe { beats, reason, .. } = &got else {
            panic!("expected Unsafe, got {got:?}");
        };
        assert_eq!(beats, &["restricted-v2"]);
        assert!(matches!(
            reason,
            OrderReason::Score {
                because: "forbids non-trivial volume mounts",
                ..
            }
        ));
        assert!(
            got.message("sa")
                .contains("give the pinned Tasks a service account of their own"),
            "{}",
            got.message("sa")
        );
    }

    fn restriction_score_of(scc: &SecurityContextConstraints) -> u32 {
        crate::admission::restriction_score(&as_stored(scc))
    }

    #[test]
    fn a_build_pod_only_the_generated_scc_admits_is_reported_as_such() {
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let usable = authenticated();
        let pod = pod_adding(&["SYS_ADMIN"]);
        let got = preemption(&generated, &refs(&usable), Some(&pod));
        assert_eq!(
            got,
            Preemption::OnlyGenerated {
                generated: "buildpolicy-modelcar-build".into()
            }
        );
        assert!(got.generated_chosen());
        assert!(
            got.message("model-build-sa")
                .contains("whole service account")
        );
    }

    #[test]
    fn a_pod_nothing_admits_is_reported_as_none_admits() {
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let usable = authenticated();
        let pod = PodSecurityRequest {
            host_network: true,
            ..PodSecurityRequest::ordinary()
        };
        assert_eq!(
            preemption(&generated, &refs(&usable), Some(&pod)),
            Preemption::NoneAdmits {
                generated: "buildpolicy-modelcar-build".into()
            }
        );
    }

    #[test]
    fn a_generated_scc_tried_first_but_refusing_the_pod_is_safe() {
        let mut generated = modelcar_scc(Isolation::HostUserNamespace);
        generated.priority = Some(20);
        let usable = authenticated();
        // restricted-v2 allows NET_BIND_SERVICE; the generated SCC does not.
        let pod = pod_adding(&["NET_BIND_SERVICE"]);
        let got = preemption(&generated, &refs(&usable), Some(&pod));
        let Preemption::Safe {
            first_usable,
            because: SafeBecause::GeneratedRefuses(why),
            ..
        } = &got
        else {
            panic!("expected Safe because refused, got {got:?}");
        };
        assert_eq!(first_usable, "restricted-v2");
        assert_eq!(
            why[0].reason,
            crate::admission::Reason::Capability("NET_BIND_SERVICE".into())
        );
        assert!(
            got.message("sa")
                .ends_with("(container: capability NET_BIND_SERVICE may not be added)")
        );
    }

    #[test]
    fn the_generated_scc_listed_among_the_usable_ones_is_not_counted_twice() {
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let mut usable = authenticated();
        usable.push(generated.clone());
        let got = preemption(&generated, &refs(&usable), None);
        assert!(
            matches!(got, Preemption::Safe { ref first_usable, .. } if first_usable == "restricted-v2")
        );
    }

    #[test]
    fn without_restricted_v2_ordinary_pods_fall_to_the_generated_scc() {
        // restricted-v3 alone refuses pods that do not set hostUsers: false.
        let generated = modelcar_scc(Isolation::HostUserNamespace);
        let usable = [default_scc("restricted-v3")];
        assert_eq!(
            preemption(&generated, &refs(&usable), None),
            Preemption::OnlyGenerated {
                generated: "buildpolicy-modelcar-build".into()
            }
        );
        let user_namespaced = PodSecurityRequest {
            host_users: Some(false),
            ..PodSecurityRequest::ordinary()
        };
        assert!(matches!(
            preemption(&generated, &refs(&usable), Some(&user_namespaced)),
            Preemption::Safe { ref first_usable, .. } if first_usable == "restricted-v3"
        ));
    }

    #[test]
    fn a_tie_on_priority_and_score_is_decided_by_name() {
        let generated = SecurityContextConstraints {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("a-copy-of-restricted-v2".into()),
                ..Default::default()
            },
            ..default_scc("restricted-v2")
        };
        let usable = authenticated();
        let got = preemption(&generated, &refs(&usable), None);
        assert!(
            matches!(
                got,
                Preemption::Unsafe {
                    reason: OrderReason::Name,
                    ..
                }
            ),
            "{got:?}"
        );
    }

    /// An SCC that adds `CAP_SYS_ADMIN` by default and forbids escalation:
    /// admission takes it, then pod validation rejects what it made.
    fn invalidating(name: &str, priority: i32) -> SecurityContextConstraints {
        let mut scc = default_scc("restricted-v2");
        scc.metadata.name = Some(name.into());
        scc.priority = Some(priority);
        scc.default_add_capabilities = Some(vec!["CAP_SYS_ADMIN".into()]);
        scc.allow_privilege_escalation = Some(false);
        scc
    }

    /// Found by tests/scc_differential.rs: a generated SCC tried first whose
    /// pod then fails validation takes no pod; the pod is refused, it does
    /// not land on restricted-v2.
    #[test]
    fn regression_a_generated_scc_that_makes_the_pod_invalid_takes_no_pod() {
        let generated = invalidating("buildpolicy-invalid", 20);
        let got = preemption(&generated, &refs(&authenticated()), None);
        assert_eq!(
            got,
            Preemption::NoneAdmits {
                generated: "buildpolicy-invalid".into()
            }
        );
        assert!(!got.generated_chosen());
    }

    /// Found by tests/scc_differential.rs: when another usable SCC is tried
    /// first and makes the pod invalid, the pod is refused: it lands neither
    /// on restricted-v2 nor on the generated SCC.
    #[test]
    fn regression_an_scc_that_makes_the_pod_invalid_ends_the_search() {
        let mut usable = authenticated();
        usable.push(invalidating("granted-by-hand", 20));
        assert_eq!(
            preemption(
                &modelcar_scc(Isolation::HostUserNamespace),
                &refs(&usable),
                None
            ),
            Preemption::NoneAdmits {
                generated: "buildpolicy-modelcar-build".into()
            }
        );
    }
}

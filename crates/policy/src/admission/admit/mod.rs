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
//!
//! [`refusals`] is the list of checks; each concern is a module of its own,
//! with the tests of that concern alone (the tests here cross concerns):
//!
//! - `request`: what a pod asks for ([`PodSecurityRequest`]);
//! - `reason`: why it is refused ([`Refusal`], [`Reason`]) and the messages;
//! - `host`: host network, PID, IPC, user namespace and ports;
//! - `groups`: `fsGroup` and supplemental groups;
//! - `seccomp`: seccomp profiles;
//! - `selinux`: `seLinuxOptions`;
//! - `volumes`: volume types;
//! - `user`: `runAsUser` and `runAsNonRoot`;
//! - `privilege`: privileged containers, capabilities and privilege
//!   escalation.
//!
//! `readOnlyRootFilesystem`, a single comparison, is checked here.
//!
//! Tests named `regression_*` are disagreements with OpenShift's SCC
//! admission that the differential test (tests/scc_differential.rs) found,
//! each reduced to its core.

mod groups;
mod host;
mod privilege;
mod reason;
mod request;
mod seccomp;
mod selinux;
mod user;
mod volumes;

#[cfg(test)]
mod test_pods;

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

pub use reason::{Reason, Refusal};
pub use request::{ContainerRequest, PodSecurityRequest, service_account_token_volume};
pub use seccomp::seccomp_profile_name;
pub use volumes::volume_type;

use self::groups::GroupRules;
use self::selinux::SeLinuxRule;
use self::user::UserRule;
use super::namespace::NamespaceAllocation;
use super::{as_stored, sort_sccs};

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
/// when it admits it. The pod's own refusals come first, then each
/// container's in the pod's order.
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
    let mut refuse = |subject: &str, reasons: Vec<Reason>| {
        out.extend(reasons.into_iter().map(|reason| Refusal {
            subject: subject.to_owned(),
            reason,
        }))
    };
    refuse("pod", pod_refusals(&scc, &strategies, pod));
    let pod_sc = pod.security_context.as_ref();
    for container in &pod.containers {
        let sc = container.security_context.clone().unwrap_or_default();
        refuse(
            &container.label,
            container_refusals(&scc, &strategies, pod_sc, &sc, &container.host_ports),
        );
    }
    out
}

/// What `scc` refuses in the pod's own settings and its volumes.
fn pod_refusals(
    scc: &SecurityContextConstraints,
    strategies: &Strategies,
    pod: &PodSecurityRequest,
) -> Vec<Reason> {
    let sc = pod.security_context.as_ref();
    [
        host::namespaces(scc, pod),
        strategies.groups.refusals(sc),
        seccomp::refusals(scc, sc.and_then(|sc| sc.seccomp_profile.as_ref())),
        strategies
            .se_linux
            .refusals(sc.and_then(|sc| sc.se_linux_options.as_ref())),
        volumes::refusals(scc, &pod.volumes),
    ]
    .concat()
}

/// What `scc` refuses in one container, whose security context is `sc`;
/// the user settings it leaves unset are the pod's (`pod_sc`).
fn container_refusals(
    scc: &SecurityContextConstraints,
    strategies: &Strategies,
    pod_sc: Option<&PodSecurityContext>,
    sc: &SecurityContext,
    host_ports: &[i32],
) -> Vec<Reason> {
    [
        strategies.run_as_user.refusals(pod_sc, sc),
        strategies.se_linux.refusals(sc.se_linux_options.as_ref()),
        seccomp::refusals(scc, sc.seccomp_profile.as_ref()),
        privilege::privileged(scc, sc),
        privilege::capabilities(scc, sc),
        host::ports(scc, host_ports),
        read_only_root_filesystem(scc, sc),
        privilege::escalation(scc, sc),
    ]
    .concat()
}

/// An explicit `readOnlyRootFilesystem: false` where the SCC requires a
/// read-only root filesystem (admission sets it when unset).
fn read_only_root_filesystem(
    scc: &SecurityContextConstraints,
    sc: &SecurityContext,
) -> Vec<Reason> {
    if scc.read_only_root_filesystem && sc.read_only_root_filesystem == Some(false) {
        vec![Reason::ReadOnlyRootFilesystem]
    } else {
        Vec::new()
    }
}

/// The SCC's strategies whose allowed values may come from the namespace.
struct Strategies {
    run_as_user: UserRule,
    se_linux: SeLinuxRule,
    groups: GroupRules,
}

impl Strategies {
    /// The SCC's strategies, with what it leaves to the namespace filled in
    /// from `namespace` when that is known; the first that cannot be built
    /// says why.
    fn of(
        scc: &SecurityContextConstraints,
        namespace: Option<&NamespaceAllocation>,
    ) -> Result<Self, String> {
        Ok(Self {
            run_as_user: UserRule::of(scc, namespace)?,
            se_linux: SeLinuxRule::of(scc, namespace)?,
            groups: GroupRules::of(scc, namespace)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::scc::{RunAsUserStrategyOptions, SELinuxContextStrategyOptions};

    use super::test_pods::{cap_list, reasons, scc_with, with_container, with_pod_context};
    use super::*;
    use crate::admission::test_sccs::default_scc;

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
}

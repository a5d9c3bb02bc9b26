//! A container's privileges: `allowPrivilegedContainer`, the capabilities
//! (`allowedCapabilities`, `defaultAddCapabilities`) and
//! `allowPrivilegeEscalation`, with the escalation conflict pod validation
//! rejects after admission.

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::SecurityContext;

use super::Reason;

/// `privileged: true` where the SCC does not allow privileged containers.
pub(super) fn privileged(scc: &SecurityContextConstraints, sc: &SecurityContext) -> Vec<Reason> {
    if sc.privileged == Some(true) && !scc.allow_privileged_container {
        vec![Reason::Privileged]
    } else {
        Vec::new()
    }
}

/// The capabilities the container adds that the SCC does not allow.
pub(super) fn capabilities(scc: &SecurityContextConstraints, sc: &SecurityContext) -> Vec<Reason> {
    sc.capabilities
        .as_ref()
        .and_then(|c| c.add.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|cap| !capability_allowed(scc, cap))
        .map(|cap| Reason::Capability(cap.clone()))
        .collect()
}

/// Escalation the SCC forbids, and escalation left off next to what pod
/// validation requires it for.
pub(super) fn escalation(scc: &SecurityContextConstraints, sc: &SecurityContext) -> Vec<Reason> {
    let mut out = Vec::new();
    let escalation_forbidden = scc.allow_privilege_escalation == Some(false);
    if escalation_forbidden && sc.allow_privilege_escalation == Some(true) {
        out.push(Reason::PrivilegeEscalation);
    }
    // Admission sets the field to false when the SCC forbids escalation;
    // the conflict only matters for what the SCC would otherwise allow.
    let escalation_off = sc.allow_privilege_escalation == Some(false)
        || (escalation_forbidden && sc.allow_privilege_escalation.is_none());
    if escalation_off {
        if sc.privileged == Some(true) && scc.allow_privileged_container {
            out.push(Reason::EscalationConflict("privileged: true"));
        }
        let sys_admin = "CAP_SYS_ADMIN";
        if added_with_defaults(scc, sc).iter().any(|c| c == sys_admin)
            && capability_allowed(scc, sys_admin)
        {
            out.push(Reason::EscalationConflict("capabilities.add CAP_SYS_ADMIN"));
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Capabilities, SecurityContext};

    use crate::admission::PodSecurityRequest;
    use crate::admission::admit::test_pods::{List, cap_list, reasons, scc_with, with_container};
    use crate::admission::admit::{Reason, admits, selects};

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
}

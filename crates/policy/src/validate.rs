//! Validation of a BuildPolicy: the same rules the CRD schema enforces
//! (re-checked, because a CRD can be old or edited) plus the admin ceiling.

use std::collections::BTreeSet;
use std::fmt;

use buildpolicy_api::conditions::reason;
use buildpolicy_api::policy::{MAX_CAPABILITIES, MAX_POLICY_NAME_LEN, MAX_TASKS};
use buildpolicy_api::{BuildPolicySpec, Isolation, capability};

use crate::Ceiling;

/// Why a policy is refused: a condition reason and a one-line message that
/// names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `InvalidSpec`, `NamespaceNotAllowed`, `CapabilityNotAllowed` or
    /// `UserNamespaceRequired`.
    pub reason: &'static str,
    /// Every problem found, separated by "; ".
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Rejection {}

/// Checks a policy named `name` with `spec` against the schema rules and the
/// ceiling. Schema problems win over ceiling problems: a malformed spec says
/// nothing reliable about what it asks for.
pub fn validate(name: &str, spec: &BuildPolicySpec, ceiling: &Ceiling) -> Result<(), Rejection> {
    let problems = schema_problems(name, spec);
    if !problems.is_empty() {
        return Err(Rejection {
            reason: reason::INVALID_SPEC,
            message: problems.join("; "),
        });
    }
    if let Some(pattern) = ceiling.protection_of(&spec.namespace) {
        return Err(Rejection {
            reason: reason::NAMESPACE_NOT_ALLOWED,
            message: format!(
                "spec.namespace {:?} is protected by the operator's ceiling (pattern {pattern:?}): run builds in an application namespace",
                spec.namespace
            ),
        });
    }
    let over: Vec<&str> = spec
        .capabilities
        .iter()
        .filter(|c| !ceiling.allows_capability(c))
        .map(String::as_str)
        .collect();
    if !over.is_empty() {
        let allowed: Vec<&str> = ceiling
            .allowed_capabilities
            .iter()
            .map(String::as_str)
            .collect();
        return Err(Rejection {
            reason: reason::CAPABILITY_NOT_ALLOWED,
            message: format!(
                "spec.capabilities asks for {} beyond the operator's ceiling: remove {} or ask a cluster admin to allow {} (allowed: {})",
                over.join(", "),
                if over.len() == 1 { "it" } else { "them" },
                if over.len() == 1 { "it" } else { "them" },
                allowed.join(", ")
            ),
        });
    }
    if spec.service_account_name == DEFAULT_SERVICE_ACCOUNT
        && !ceiling.allow_default_service_account
    {
        return Err(Rejection {
            reason: reason::SERVICE_ACCOUNT_NOT_ALLOWED,
            message: format!(
                "spec.serviceAccountName is {DEFAULT_SERVICE_ACCOUNT}: every pod in {} that names no service account runs as it, so they could all reach the SCC; create a dedicated service account (kubectl -n {} create serviceaccount model-build-sa), run the builds as it and name it here, or have a cluster admin set allowDefaultServiceAccount: true in the operator's ceiling",
                spec.namespace, spec.namespace
            ),
        });
    }
    let undigested: Vec<&str> = spec
        .tasks
        .iter()
        .filter(|t| !spec.task_digests.contains_key(t.as_str()))
        .map(String::as_str)
        .collect();
    if ceiling.confinement.require_task_digests && !undigested.is_empty() {
        return Err(Rejection {
            reason: reason::TASK_DIGEST_REQUIRED,
            message: format!(
                "the operator's ceiling requires a reviewed digest for every listed Task, and spec.taskDigests has none for {}: add the digest that buildpolicy-operator check --task <file> prints for each reviewed Task file",
                undigested.join(", ")
            ),
        });
    }
    let confined = ceiling.needing_user_namespace(&spec.capabilities);
    if !confined.is_empty() && !spec.isolation.is_user_namespace() {
        let modes: Vec<&str> = Isolation::ALL
            .iter()
            .filter(|m| m.is_user_namespace())
            .map(Isolation::as_str)
            .collect();
        return Err(Rejection {
            reason: reason::USER_NAMESPACE_REQUIRED,
            message: format!(
                "spec.isolation is {}, but the operator's ceiling grants {} only to builds in a user namespace: set spec.isolation to {}, or remove {} from spec.capabilities",
                spec.isolation,
                confined.join(", "),
                modes.join(" or "),
                confined.join(", "),
            ),
        });
    }
    Ok(())
}

/// The service account every pod of a namespace runs as unless it names
/// another.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The known capability `written` means, when it is one written in lower
/// case or with the `CAP_` prefix (`cap_sys_module` means `SYS_MODULE`).
pub fn meant_capability(written: &str) -> Option<String> {
    let upper = written.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned();
    (bare != written && capability::is_known(&bare)).then_some(bare)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Kubernetes' IsDNS1123Subdomain: at most 253 characters of dot-separated
/// parts; unlike a label, a part may be longer than 63 characters.
fn is_dns_subdomain(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    s.len() <= 253 && s.split('.').all(part)
}

fn first_duplicate(items: &[String]) -> Option<&str> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .find(|i| !seen.insert(i.as_str()))
        .map(String::as_str)
}

fn schema_problems(name: &str, spec: &BuildPolicySpec) -> Vec<String> {
    let mut problems = Vec::new();
    if !(name.len() <= MAX_POLICY_NAME_LEN && is_dns_label(name)) {
        problems.push(format!(
            "metadata.name {name:?} must be a DNS label of at most {MAX_POLICY_NAME_LEN} characters (lower-case letters, digits and '-'): it names the generated SCC 'buildpolicy-<name>' and labels every object the policy owns"
        ));
    }
    if !is_dns_label(&spec.namespace) {
        problems.push(format!(
            "spec.namespace {:?} must be a namespace name: a DNS label of at most 63 lower-case letters, digits and '-', e.g. private-ai-demo",
            spec.namespace
        ));
    }
    if !is_dns_subdomain(&spec.service_account_name) {
        problems.push(format!(
            "spec.serviceAccountName {:?} must be a service account name: lower-case letters, digits, '-' and '.', e.g. model-build-sa",
            spec.service_account_name
        ));
    }
    problems.extend(capability_problems(&spec.capabilities));
    if spec.tasks.is_empty() {
        problems.push("spec.tasks must name at least one Tekton Task to pin: an SCC that no Task is pinned to could be picked for other pods".into());
    }
    if spec.tasks.len() > MAX_TASKS {
        problems.push(format!(
            "spec.tasks lists {} Tasks; at most {MAX_TASKS} are allowed",
            spec.tasks.len()
        ));
    }
    let bad_tasks: Vec<&str> = spec
        .tasks
        .iter()
        .filter(|t| !is_dns_subdomain(t))
        .map(String::as_str)
        .collect();
    if !bad_tasks.is_empty() {
        problems.push(format!(
            "spec.tasks: each entry must be a Task name: lower-case letters, digits, '-' and '.', e.g. build-and-push-v2 (not {bad_tasks:?})"
        ));
    }
    if let Some(dup) = first_duplicate(&spec.tasks) {
        problems.push(format!(
            "spec.tasks: each Task may appear once; remove the repeated {dup}"
        ));
    }
    for (task, digest) in &spec.task_digests {
        if !spec.tasks.contains(task) {
            problems.push(format!(
                "spec.taskDigests names {task}, which spec.tasks does not list: digest only the listed Tasks, or add the Task to spec.tasks"
            ));
        }
        if !crate::digest::is_well_formed(digest) {
            problems.push(format!(
                "spec.taskDigests.{task}: {digest:?} is not a Task digest: write sha256: and 64 lower-case hex digits, as buildpolicy-operator check --task FILE prints it"
            ));
        }
    }
    problems
}

fn capability_problems(capabilities: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if capabilities.is_empty() {
        problems.push(
            "spec.capabilities must list at least one capability, e.g. [SETUID, SETGID]".into(),
        );
    }
    if capabilities.len() > MAX_CAPABILITIES {
        problems.push(format!(
            "spec.capabilities lists {} entries; at most {MAX_CAPABILITIES} are allowed",
            capabilities.len()
        ));
    }
    let prefixed: Vec<&str> = capabilities
        .iter()
        .filter(|c| c.starts_with("CAP_"))
        .map(String::as_str)
        .collect();
    if !prefixed.is_empty() {
        let fixed: Vec<&str> = prefixed.iter().map(|c| &c[4..]).collect();
        problems.push(format!(
            "spec.capabilities: write capability names without the CAP_ prefix: write {} instead of {}",
            fixed.join(", "),
            prefixed.join(", ")
        ));
    }
    if capabilities.iter().any(|c| c == "ALL" || c == "*") {
        problems.push("spec.capabilities: ALL and * are refused: list each capability the build needs, e.g. SETUID, SETGID, SYS_ADMIN, SYS_CHROOT, SETFCAP".into());
    }
    let unknown: Vec<&str> = capabilities
        .iter()
        .filter(|c| !c.starts_with("CAP_") && *c != "ALL" && *c != "*" && !capability::is_known(c))
        .map(String::as_str)
        .collect();
    for written in unknown {
        problems.push(match meant_capability(written) {
            Some(meant) => format!(
                "spec.capabilities: unknown capability {written}: write {meant} (capability names are upper case, without CAP_)"
            ),
            None => format!(
                "spec.capabilities: unknown capability {written}: write a Linux capability name in upper case, e.g. SYS_ADMIN"
            ),
        });
    }
    if let Some(dup) = first_duplicate(capabilities) {
        problems.push(format!(
            "spec.capabilities: each capability may appear once; remove the repeated {dup}"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miswritten_capability_is_answered_with_the_name_meant() {
        let err =
            validate("p", &spec(&["cap_sys_module"], &["t"]), &Ceiling::default()).unwrap_err();
        assert!(
            err.message
                .contains("unknown capability cap_sys_module: write SYS_MODULE"),
            "{err}"
        );
        let err = validate("p", &spec(&["sys_admin"], &["t"]), &Ceiling::default()).unwrap_err();
        assert!(err.message.contains("write SYS_ADMIN"), "{err}");
        let err = validate("p", &spec(&["FLY"], &["t"]), &Ceiling::default()).unwrap_err();
        assert!(err.message.contains("e.g. SYS_ADMIN"), "{err}");
        assert_eq!(meant_capability("SYS_ADMIN"), None);
    }

    #[test]
    fn the_default_service_account_is_refused_unless_the_ceiling_allows_it() {
        let mut s = spec(&["SETUID"], &["t"]);
        s.service_account_name = "default".into();
        let err = validate("p", &s, &Ceiling::default()).unwrap_err();
        assert_eq!(err.reason, reason::SERVICE_ACCOUNT_NOT_ALLOWED);
        assert!(
            err.message.contains("create a dedicated service account"),
            "{err}"
        );
        let ceiling = Ceiling {
            allow_default_service_account: true,
            ..Ceiling::default()
        };
        assert_eq!(validate("p", &s, &ceiling), Ok(()));
    }

    fn spec(caps: &[&str], tasks: &[&str]) -> BuildPolicySpec {
        BuildPolicySpec {
            namespace: "private-ai-demo".into(),
            service_account_name: "model-build-sa".into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            isolation: Default::default(),
            task_digests: Default::default(),
        }
    }

    fn modelcar() -> BuildPolicySpec {
        spec(
            &["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"],
            &["build-and-push-v2"],
        )
    }

    #[test]
    fn modelcar_policy_is_valid_under_the_default_ceiling() {
        assert_eq!(
            validate("modelcar-build", &modelcar(), &Ceiling::default()),
            Ok(())
        );
    }

    #[test]
    fn the_user_namespace_switch_refuses_sys_admin_in_the_host_user_namespace_naming_the_modes() {
        let ceiling = Ceiling {
            user_namespace_required_for: ["SYS_ADMIN".to_owned()].into(),
            ..Ceiling::default()
        };
        let err = validate("modelcar-build", &modelcar(), &ceiling).unwrap_err();
        assert_eq!(err.reason, reason::USER_NAMESPACE_REQUIRED);
        assert_eq!(
            err.message,
            "spec.isolation is HostUserNamespace, but the operator's ceiling grants SYS_ADMIN only to builds in a user namespace: set spec.isolation to PodUserNamespace or CRIOUserNamespace, or remove SYS_ADMIN from spec.capabilities"
        );
        for isolation in [Isolation::PodUserNamespace, Isolation::CrioUserNamespace] {
            let spec = BuildPolicySpec {
                isolation,
                ..modelcar()
            };
            assert_eq!(
                validate("modelcar-build", &spec, &ceiling),
                Ok(()),
                "{isolation}"
            );
        }
        // Policies without SYS_ADMIN are not concerned.
        assert_eq!(
            validate("p", &spec(&["SETUID", "SETGID"], &["t"]), &ceiling),
            Ok(())
        );
        // Off by default.
        assert_eq!(
            validate("modelcar-build", &modelcar(), &Ceiling::default()),
            Ok(())
        );
    }

    #[test]
    fn cap_prefix_is_refused_with_the_name_to_write() {
        let err =
            validate("p", &spec(&["CAP_SYS_ADMIN"], &["t"]), &Ceiling::default()).unwrap_err();
        assert_eq!(err.reason, reason::INVALID_SPEC);
        assert!(
            err.message
                .contains("write SYS_ADMIN instead of CAP_SYS_ADMIN"),
            "{err}"
        );
    }

    #[test]
    fn all_and_star_are_refused() {
        for cap in ["ALL", "*"] {
            let err = validate("p", &spec(&[cap], &["t"]), &Ceiling::default()).unwrap_err();
            assert!(err.message.contains("ALL and * are refused"), "{err}");
        }
    }

    #[test]
    fn lower_case_and_unknown_capabilities_are_refused() {
        let err = validate(
            "p",
            &spec(&["sys_admin", "FLY"], &["t"]),
            &Ceiling::default(),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("unknown capability sys_admin: write SYS_ADMIN"),
            "{err}"
        );
        assert!(
            err.message
                .contains("unknown capability FLY: write a Linux capability name"),
            "{err}"
        );
    }

    #[test]
    fn duplicates_and_empty_lists_are_refused() {
        let err = validate(
            "p",
            &spec(&["SETUID", "SETUID"], &["t", "t"]),
            &Ceiling::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("remove the repeated SETUID"), "{err}");
        assert!(err.message.contains("remove the repeated t"), "{err}");
        let err = validate("p", &spec(&[], &[]), &Ceiling::default()).unwrap_err();
        assert!(err.message.contains("at least one capability"), "{err}");
        assert!(err.message.contains("at least one Tekton Task"), "{err}");
    }

    #[test]
    fn names_must_be_dns_names() {
        let mut s = modelcar();
        s.namespace = "Private_AI".into();
        s.service_account_name = "-sa".into();
        s.tasks = vec!["Build".into()];
        let err = validate(&"x".repeat(64), &s, &Ceiling::default()).unwrap_err();
        for field in [
            "metadata.name",
            "spec.namespace",
            "spec.serviceAccountName",
            "spec.tasks",
        ] {
            assert!(err.message.contains(field), "{field} missing from {err}");
        }
    }

    #[test]
    fn capability_over_the_ceiling_names_it_and_the_allowed_set() {
        let err = validate(
            "p",
            &spec(&["SETUID", "NET_ADMIN"], &["t"]),
            &Ceiling::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason, reason::CAPABILITY_NOT_ALLOWED);
        assert!(err.message.contains("asks for NET_ADMIN beyond"), "{err}");
        assert!(
            err.message
                .contains("allowed: SETFCAP, SETGID, SETUID, SYS_ADMIN, SYS_CHROOT"),
            "{err}"
        );
    }

    #[test]
    fn protected_namespace_is_refused() {
        let mut s = modelcar();
        s.namespace = "kube-system".into();
        let err = validate("p", &s, &Ceiling::default()).unwrap_err();
        assert_eq!(err.reason, reason::NAMESPACE_NOT_ALLOWED);
        assert!(err.message.contains("\"kube-*\""), "{err}");
    }

    #[test]
    fn schema_problems_win_over_ceiling_problems() {
        let mut s = spec(&["NET_ADMIN", "CAP_SETUID"], &["t"]);
        s.namespace = "kube-system".into();
        assert_eq!(
            validate("p", &s, &Ceiling::default()).unwrap_err().reason,
            reason::INVALID_SPEC
        );
    }

    #[test]
    fn a_required_digest_missing_names_the_task_and_how_to_get_it() {
        let mut s = spec(&["SETUID"], &["build", "push"]);
        let digest = crate::digest::task_spec_digest(&serde_json::json!({"steps": []}));
        s.task_digests.insert("build".into(), digest.clone());
        assert_eq!(validate("p", &s, &Ceiling::default()), Ok(()));
        let mut ceiling = Ceiling::default();
        ceiling.confinement.require_task_digests = true;
        let err = validate("p", &s, &ceiling).unwrap_err();
        assert_eq!(err.reason, reason::TASK_DIGEST_REQUIRED);
        assert!(
            err.message.contains("none for push") && err.message.contains("check --task"),
            "{err}"
        );
        s.task_digests.insert("push".into(), digest);
        assert_eq!(validate("p", &s, &ceiling), Ok(()));
    }

    #[test]
    fn a_malformed_digest_or_one_for_an_unlisted_task_is_invalid() {
        let mut s = spec(&["SETUID"], &["build"]);
        s.task_digests.insert("build".into(), "sha256:abc".into());
        s.task_digests.insert(
            "other".into(),
            crate::digest::task_spec_digest(&serde_json::Value::Null),
        );
        let err = validate("p", &s, &Ceiling::default()).unwrap_err();
        assert_eq!(err.reason, reason::INVALID_SPEC);
        assert!(err.message.contains("spec.taskDigests.build"), "{err}");
        assert!(
            err.message
                .contains("names other, which spec.tasks does not list"),
            "{err}"
        );
    }
}

//! `seccompProfiles`: the seccomp profiles a pod or container may set.

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::SeccompProfile;

use super::Reason;

/// A seccomp profile field in the annotation form SCCs list.
pub fn seccomp_profile_name(profile: &SeccompProfile) -> String {
    match profile.type_.as_str() {
        "Unconfined" => "unconfined".into(),
        "RuntimeDefault" => "runtime/default".into(),
        "Localhost" => profile
            .localhost_profile
            .as_deref()
            .map(|p| format!("localhost/{p}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// What the SCC refuses in the seccomp profile of a pod or container, if it
/// sets one.
pub(super) fn refusals(
    scc: &SecurityContextConstraints,
    profile: Option<&SeccompProfile>,
) -> Vec<Reason> {
    profile.and_then(|p| refusal(scc, p)).into_iter().collect()
}

fn refusal(scc: &SecurityContextConstraints, profile: &SeccompProfile) -> Option<Reason> {
    let profile = seccomp_profile_name(profile);
    let listed = scc.seccomp_profiles.as_deref().unwrap_or_default();
    let allow_any = listed.iter().any(|p| p == "*");
    let allowed: Vec<String> = listed.iter().filter(|p| *p != "*").cloned().collect();
    let is_runtime_default = |p: &str| p == "runtime/default" || p == "docker/default";
    let admitted = if allowed.is_empty() {
        allow_any || profile.is_empty()
    } else {
        allow_any
            || allowed.contains(&profile)
            || (allowed.iter().any(|p| is_runtime_default(p)) && is_runtime_default(&profile))
    };
    (!admitted).then_some(Reason::Seccomp { profile, allowed })
}

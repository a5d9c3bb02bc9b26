//! The ModelCar policy of the samples (config/samples/modelcar-build.yaml), as the unit tests use it.

use buildpolicy_api::{BuildPolicySpec, Isolation, SecurityContextConstraints};

use crate::render::{Owner, render};

/// Buildah's five capabilities (docs/capabilities.md) for
/// `build-and-push-v2`, run as `private-ai-demo/model-build-sa`.
pub fn modelcar_spec(isolation: Isolation) -> BuildPolicySpec {
    BuildPolicySpec {
        namespace: "private-ai-demo".into(),
        service_account_name: "model-build-sa".into(),
        capabilities: ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"]
            .map(String::from)
            .to_vec(),
        tasks: vec!["build-and-push-v2".into()],
        isolation,
        task_digests: Default::default(),
    }
}

/// The SCC `modelcar-build` generates for `spec` (not stored: no uid).
pub fn scc_of(spec: &BuildPolicySpec) -> SecurityContextConstraints {
    let owner = Owner {
        name: "modelcar-build".into(),
        uid: None,
    };
    render(&owner, spec).scc
}

/// The SCC of [`modelcar_spec`].
pub fn modelcar_scc(isolation: Isolation) -> SecurityContextConstraints {
    scc_of(&modelcar_spec(isolation))
}

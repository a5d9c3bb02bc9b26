//! SCC admission as OpenShift performs it, without a cluster: the order in
//! which SCCs are tried ([`order`]), whether one SCC admits a pod ([`admit`]),
//! and whether a generated SCC would take pods it was not made for
//! ([`preemption`]).
//!
//! Admission lists every SCC, sorts them ([`sort_sccs`]), skips those the
//! pod's service account (or the requesting user) may not `use`, and takes
//! the first that admits the pod. A pod with `openshift.io/required-scc`
//! only ever tries that one SCC, which is what makes pinning safe; this
//! module answers what happens to the pods that are not pinned.

pub mod admit;
pub mod defaults;
pub mod namespace;
pub mod order;
pub mod preemption;

pub use admit::{
    ContainerRequest, PodSecurityRequest, Reason, Refusal, admits, admitted_under, refusals,
    selects,
};
pub use defaults::as_stored;
pub use namespace::NamespaceAllocation;
pub use order::{OrderReason, compare, restriction_score, sort_sccs};
pub use preemption::{Preemption, preemption};

/// OpenShift 4.20's default SCCs, from `hack/local-cluster/default-sccs`.
#[cfg(test)]
pub(crate) mod test_sccs {
    use buildpolicy_api::SecurityContextConstraints;

    macro_rules! default_sccs {
        ($($name:literal),* $(,)?) => {
            &[$(($name, include_str!(concat!(
                "../../../../hack/local-cluster/default-sccs/", $name, ".yaml"
            )))),*]
        };
    }

    const DEFAULT_SCCS: &[(&str, &str)] = default_sccs!(
        "anyuid",
        "hostaccess",
        "hostmount-anyuid",
        "hostmount-anyuid-v2",
        "hostnetwork",
        "hostnetwork-v2",
        "insights-runtime-extractor-scc",
        "machine-api-termination-handler",
        "nested-container",
        "node-exporter",
        "nonroot",
        "nonroot-v2",
        "privileged",
        "restricted",
        "restricted-v2",
        "restricted-v3",
    );

    /// The default SCC called `name`.
    pub fn default_scc(name: &str) -> SecurityContextConstraints {
        let (_, yaml) = DEFAULT_SCCS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no default SCC {name}"));
        let scc: SecurityContextConstraints =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(scc.name(), name);
        scc
    }

    pub fn all_default_sccs() -> Vec<SecurityContextConstraints> {
        DEFAULT_SCCS.iter().map(|(n, _)| default_scc(n)).collect()
    }
}

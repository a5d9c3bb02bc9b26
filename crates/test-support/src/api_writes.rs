//! Which requests the API server counts (`apiserver_request_total`) are the
//! operator's writes: the one list the tests and the benchmark count them by.

use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;

/// The verbs that change something (the API server labels server-side
/// apply `APPLY`).
pub const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

pub fn is_write(verb: &str) -> bool {
    WRITE_VERBS.contains(&verb)
}

fn of<K: Resource<DynamicType = ()>>() -> (String, String) {
    (K::group(&()).into_owned(), K::plural(&()).into_owned())
}

/// (group, resource) of everything the operator writes but Events, which
/// kube-controller-manager writes too. Leases are not in the list: the
/// operator writes its Lease only with leader election, by design.
pub fn operator_objects() -> [(String, String); 8] {
    [
        of::<BuildPolicy>(),
        of::<SecurityContextConstraints>(),
        of::<Role>(),
        of::<RoleBinding>(),
        of::<Task>(),
        of::<ValidatingAdmissionPolicy>(),
        of::<ValidatingAdmissionPolicyBinding>(),
        of::<SubjectAccessReview>(),
    ]
}

/// Whether the operator writes resources `group/resource`: its objects
/// ([`operator_objects`]) and Events (both groups).
pub fn is_operator_resource(group: &str, resource: &str) -> bool {
    let is = |(g, r): &(String, String)| g == group && r == resource;
    operator_objects().iter().any(is) || [of::<Event>(), of::<CoreEvent>()].iter().any(is)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_resources_as_the_api_server_labels_them() {
        for (group, resource) in [
            ("security.openshift.io", "securitycontextconstraints"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("tekton.dev", "tasks"),
            ("buildpolicy.dev", "buildpolicies"),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
            ),
            ("events.k8s.io", "events"),
            ("", "events"),
        ] {
            assert!(is_operator_resource(group, resource), "{group}/{resource}");
        }
        assert!(!is_operator_resource("coordination.k8s.io", "leases"));
        assert!(!is_operator_resource("", "namespaces"));
        assert!(is_write("APPLY") && !is_write("GET") && !is_write("WATCH"));
    }
}

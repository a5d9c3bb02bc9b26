//! Which SCCs a service account may `use`, decided from RBAC objects the way
//! Kubernetes' RBAC authorizer decides it, without asking the API server.
//!
//! SCC admission asks the authorizer whether the pod's service account may
//! `use` (API group `security.openshift.io`, resource
//! `securitycontextconstraints`, the SCC's name, in the pod's namespace). On
//! OpenShift that authorizer is RBAC: the answer is "yes" when a
//! ClusterRoleBinding, or a RoleBinding in the namespace, binds a subject that
//! is the service account (or one of its groups) to a role with a rule
//! matching that request. This module answers the same question from the
//! objects themselves, so the controller can keep them in watch caches and
//! answer for every policy at every resync without a request.
//!
//! Rule matching follows `k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac`:
//! `*` matches any verb, API group or resource; an empty `resourceNames`
//! matches every name; a ServiceAccount subject without a namespace means the
//! binding's own namespace.

use std::collections::BTreeSet;

use buildpolicy_api::scc::{GROUP, PLURAL};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject};

const VERB: &str = "use";

/// Who asks: a service account, with the groups the API server gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountUser {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountUser {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `system:serviceaccount:<ns>:<name>`.
    pub fn user_name(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The groups every service account token carries.
    pub fn groups(&self) -> [String; 3] {
        [
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_owned(),
        ]
    }

    /// Whether a binding's subject names this service account, as the RBAC
    /// authorizer reads it (`binding_namespace` is `None` for a
    /// ClusterRoleBinding).
    pub fn is(&self, subject: &Subject, binding_namespace: Option<&str>) -> bool {
        match subject.kind.as_str() {
            "ServiceAccount" => {
                let ns = subject
                    .namespace
                    .as_deref()
                    .filter(|ns| !ns.is_empty())
                    .or(binding_namespace);
                subject.name == self.name && ns == Some(self.namespace.as_str())
            }
            "User" => subject.name == self.user_name(),
            "Group" => self.groups().contains(&subject.name),
            _ => false,
        }
    }
}

/// The SCC names a set of rules lets its holder `use`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SccGrant {
    /// None.
    #[default]
    Nothing,
    /// These, by name.
    Named(BTreeSet<String>),
    /// Every SCC (a rule without `resourceNames`).
    All,
}

impl SccGrant {
    pub fn allows(&self, scc: &str) -> bool {
        match self {
            Self::Nothing => false,
            Self::Named(names) => names.contains(scc),
            Self::All => true,
        }
    }

    fn add(&mut self, other: SccGrant) {
        *self = match (std::mem::take(self), other) {
            (Self::All, _) | (_, Self::All) => Self::All,
            (Self::Nothing, other) | (other, Self::Nothing) => other,
            (Self::Named(mut a), Self::Named(b)) => {
                a.extend(b);
                Self::Named(a)
            }
        };
    }
}

fn matches(values: Option<&Vec<String>>, wanted: &str) -> bool {
    values
        .into_iter()
        .flatten()
        .any(|v| v == "*" || v == wanted)
}

/// Whether `rule` lets its holder `use` some SCC (which ones: [`rule_grant`]).
pub fn grants_scc_use(rule: &PolicyRule) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == VERB)
        && matches(rule.api_groups.as_ref(), GROUP)
        && matches(rule.resources.as_ref(), PLURAL)
}

/// The SCCs one rule lets its holder `use`.
pub fn rule_grant(rule: &PolicyRule) -> SccGrant {
    if !grants_scc_use(rule) {
        return SccGrant::Nothing;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => SccGrant::All,
        Some(names) => SccGrant::Named(names.iter().cloned().collect()),
    }
}

/// The SCCs a whole role lets its holder `use`.
pub fn rules_grant<'a>(rules: impl IntoIterator<Item = &'a PolicyRule>) -> SccGrant {
    let mut grant = SccGrant::Nothing;
    for rule in rules {
        grant.add(rule_grant(rule));
    }
    grant
}

/// What a binding's `roleRef` points at, for the caller to look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKey<'a> {
    ClusterRole(&'a str),
    /// A Role in the binding's namespace.
    Role {
        namespace: &'a str,
        name: &'a str,
    },
}

fn role_key<'a>(role_ref: &'a RoleRef, binding_namespace: Option<&'a str>) -> Option<RoleKey<'a>> {
    match (role_ref.kind.as_str(), binding_namespace) {
        ("ClusterRole", _) => Some(RoleKey::ClusterRole(&role_ref.name)),
        ("Role", Some(namespace)) => Some(RoleKey::Role {
            namespace,
            name: &role_ref.name,
        }),
        _ => None,
    }
}

/// The SCCs `who` may `use` in its own namespace, from every
/// ClusterRoleBinding and the RoleBindings of that namespace. `rules` looks a
/// role up (a missing role grants nothing, as in the authorizer).
pub fn scc_use_in_namespace<'a, R>(
    who: &ServiceAccountUser,
    cluster_role_bindings: impl IntoIterator<Item = &'a ClusterRoleBinding>,
    role_bindings: impl IntoIterator<Item = &'a RoleBinding>,
    rules: impl Fn(RoleKey<'_>) -> Option<R>,
) -> SccGrant
where
    R: std::ops::Deref<Target = [PolicyRule]>,
{
    let mut grant = SccGrant::Nothing;
    let mut consider = |role_ref: &RoleRef, subjects: Option<&Vec<Subject>>, ns: Option<&str>| {
        if grant == SccGrant::All || !subjects.into_iter().flatten().any(|s| who.is(s, ns)) {
            return;
        }
        if let Some(role) = role_key(role_ref, ns).and_then(&rules) {
            grant.add(rules_grant(role.iter()));
        }
    };
    for binding in cluster_role_bindings {
        consider(&binding.role_ref, binding.subjects.as_ref(), None);
    }
    for binding in role_bindings {
        let ns = binding.metadata.namespace.as_deref();
        if ns != Some(who.namespace.as_str()) {
            continue;
        }
        consider(&binding.role_ref, binding.subjects.as_ref(), ns);
    }
    grant
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn rule(value: serde_json::Value) -> PolicyRule {
        serde_json::from_value(value).unwrap()
    }

    fn crb(role: &str, subjects: serde_json::Value) -> ClusterRoleBinding {
        serde_json::from_value(json!({
            "metadata": {"name": format!("crb-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }))
        .unwrap()
    }

    fn rb(ns: &str, kind: &str, role: &str, subjects: serde_json::Value) -> RoleBinding {
        serde_json::from_value(json!({
            "metadata": {"name": format!("rb-{role}"), "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects,
        }))
        .unwrap()
    }

    fn use_scc(names: &[&str]) -> Vec<PolicyRule> {
        vec![rule(json!({
            "apiGroups": ["security.openshift.io"],
            "resources": ["securitycontextconstraints"],
            "resourceNames": names,
            "verbs": ["use"],
        }))]
    }

    struct Roles(HashMap<String, Vec<PolicyRule>>);

    impl Roles {
        fn lookup(&self, key: RoleKey<'_>) -> Option<Vec<PolicyRule>> {
            let id = match key {
                RoleKey::ClusterRole(name) => format!("cluster/{name}"),
                RoleKey::Role { namespace, name } => format!("{namespace}/{name}"),
            };
            self.0.get(&id).cloned()
        }
    }

    fn builder() -> ServiceAccountUser {
        ServiceAccountUser::new("builds", "pipeline")
    }

    #[test]
    fn rule_matching_follows_the_rbac_authorizer() {
        let exact = use_scc(&["a"]).remove(0);
        assert_eq!(rule_grant(&exact), SccGrant::Named(["a".into()].into()));
        let any_name = rule(
            json!({"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"], "verbs": ["use"]}),
        );
        assert_eq!(rule_grant(&any_name), SccGrant::All);
        let wildcard = rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        assert_eq!(rule_grant(&wildcard), SccGrant::All);
        for not_use in [
            json!({"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"], "verbs": ["get", "list"]}),
            json!({"apiGroups": [""], "resources": ["securitycontextconstraints"], "verbs": ["use"]}),
            json!({"apiGroups": ["security.openshift.io"], "resources": ["rangeallocations"], "verbs": ["use"]}),
            json!({"nonResourceURLs": ["/healthz"], "verbs": ["*"]}),
        ] {
            assert_eq!(
                rule_grant(&rule(not_use.clone())),
                SccGrant::Nothing,
                "{not_use}"
            );
        }
    }

    #[test]
    fn the_openshift_default_binding_to_authenticated_grants_restricted_v2() {
        let roles = Roles(HashMap::from([(
            "cluster/system:openshift:scc:restricted-v2".into(),
            use_scc(&["restricted-v2"]),
        )]));
        let bindings = [crb(
            "system:openshift:scc:restricted-v2",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]),
        )];
        let grant = scc_use_in_namespace(&builder(), &bindings, &[], |k| roles.lookup(k));
        assert!(grant.allows("restricted-v2"));
        assert!(!grant.allows("anyuid"));
    }

    #[test]
    fn role_bindings_count_only_in_the_service_accounts_namespace() {
        let roles = Roles(HashMap::from([
            (
                "cluster/system:openshift:scc:anyuid".into(),
                use_scc(&["anyuid"]),
            ),
            ("builds/local".into(), use_scc(&["buildpolicy-x"])),
            ("other/local".into(), use_scc(&["privileged"])),
        ]));
        let sa = json!([{"kind": "ServiceAccount", "name": "pipeline", "namespace": "builds"}]);
        let bindings = [
            rb(
                "builds",
                "ClusterRole",
                "system:openshift:scc:anyuid",
                sa.clone(),
            ),
            // Namespace omitted: the binding's own namespace.
            rb(
                "builds",
                "Role",
                "local",
                json!([{"kind": "ServiceAccount", "name": "pipeline"}]),
            ),
            // Another namespace's binding grants nothing here.
            rb("other", "Role", "local", sa.clone()),
        ];
        let grant = scc_use_in_namespace(&builder(), &[], &bindings, |k| roles.lookup(k));
        assert_eq!(
            grant,
            SccGrant::Named(["anyuid".into(), "buildpolicy-x".into()].into())
        );
    }

    #[test]
    fn subjects_must_be_this_service_account_or_its_groups() {
        let roles = Roles(HashMap::from([("cluster/r".into(), use_scc(&["s"]))]));
        let grant_for = |subjects: serde_json::Value| {
            scc_use_in_namespace(&builder(), &[crb("r", subjects)], &[], |k| roles.lookup(k))
        };
        for yes in [
            json!([{"kind": "ServiceAccount", "name": "pipeline", "namespace": "builds"}]),
            json!([{"kind": "User", "name": "system:serviceaccount:builds:pipeline"}]),
            json!([{"kind": "Group", "name": "system:serviceaccounts"}]),
            json!([{"kind": "Group", "name": "system:serviceaccounts:builds"}]),
        ] {
            assert!(grant_for(yes.clone()).allows("s"), "{yes}");
        }
        for no in [
            json!([{"kind": "ServiceAccount", "name": "pipeline", "namespace": "other"}]),
            // A ClusterRoleBinding has no namespace to default to.
            json!([{"kind": "ServiceAccount", "name": "pipeline"}]),
            json!([{"kind": "ServiceAccount", "name": "default", "namespace": "builds"}]),
            json!([{"kind": "User", "name": "pipeline"}]),
            json!([{"kind": "Group", "name": "system:serviceaccounts:other"}]),
            json!([]),
        ] {
            assert!(!grant_for(no.clone()).allows("s"), "{no}");
        }
    }

    #[test]
    fn a_binding_to_a_missing_role_grants_nothing() {
        let roles = Roles(HashMap::new());
        let sa = json!([{"kind": "ServiceAccount", "name": "pipeline", "namespace": "builds"}]);
        let grant = scc_use_in_namespace(&builder(), &[crb("gone", sa)], &[], |k| roles.lookup(k));
        assert_eq!(grant, SccGrant::Nothing);
    }
}

//! The operator runs with exactly the rights `config/rbac` gives it: the
//! whole suite runs the controller as that ServiceAccount (see
//! `buildpolicy_test_support::operator::operator_client`), and these tests
//! show the rules are tight: no wildcards, and removing one rule breaks the
//! behaviour that needs it, with a status that says so.

use std::time::Duration;

use buildpolicy_api::keys::owned_name;
use buildpolicy_api::{BuildPolicy, Isolation, SecurityContextConstraints};
use buildpolicy_test_support::operator::{
    OPERATOR_NAMESPACE, Operator, service_account_token, test_ceiling,
};
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, is_ready, modelcar_scene,
};
use buildpolicy_test_support::{client_with_token, repo_root, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

fn shipped_cluster_role() -> ClusterRole {
    let path = repo_root().join("config/rbac/cluster_role.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn shipped_cluster_role_has_no_wildcards_and_no_escalation_verbs() {
    for rule in shipped_cluster_role().rules.unwrap() {
        let items = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten());
        for item in items {
            assert!(!item.contains('*'), "wildcard {item:?} in {rule:?}");
        }
        for verb in ["escalate", "bind", "impersonate"] {
            assert!(!rule.verbs.iter().any(|v| v == verb), "{verb} in {rule:?}");
        }
    }
}

/// A ServiceAccount bound to `role`, and a client acting as it; removed on drop of the returned guard.
async fn identity_with(
    client: &Client,
    role: ClusterRole,
) -> (Client, impl std::future::Future<Output = ()>) {
    let name = role.metadata.name.clone().unwrap();
    let roles: Api<ClusterRole> = Api::all(client.clone());
    roles.create(&PostParams::default(), &role).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}]
    });
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).unwrap(),
        )
        .await
        .unwrap();
    let identity = client_with_token(&service_account_token(OPERATOR_NAMESPACE, &name).await).await;
    let cleanup = async move {
        let _ = bindings.delete(&name, &DeleteParams::default()).await;
        let _ = roles.delete(&name, &DeleteParams::default()).await;
        let _ = sas.delete(&name, &DeleteParams::default()).await;
    };
    (identity, cleanup)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_use_rule_rbac_refuses_the_operators_role_and_status_says_so() {
    with_temp_ns(|client, ns| async move {
        let mut role = shipped_cluster_role();
        role.metadata =
            serde_json::from_value(json!({"name": unique_name("operator-without-use")})).unwrap();
        let rules = role.rules.as_mut().unwrap();
        let before = rules.len();
        rules.retain(|r| r.verbs != ["use"]);
        assert_eq!(
            rules.len(),
            before - 1,
            "the shipped role has exactly one `use` rule"
        );
        let (identity, cleanup) = identity_with(&client, role).await;

        let op = Operator::start_as(&client, identity, &ns, test_ceiling()).await;
        let sa: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "builder"}})).unwrap();
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
        let name = unique_name("needs-use");
        op.create(&op.policy(&name, &ns, "builder", &["SETUID", "SETGID"], &["build"]))
            .await;

        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            Duration::from_secs(30),
            |p| {
                p.condition("RBACReady")
                    .is_some_and(|c| c.status == "False" && c.reason == "ApplyFailed")
            },
        )
        .await;
        let message = &policy.condition("RBACReady").unwrap().message;
        println!("RBACReady: {message}");
        assert!(message.contains("forbidden"), "{message}");
        assert!(
            message.contains("escalat") || message.contains("not currently held"),
            "{message}"
        );
        assert_eq!(policy.condition("Ready").unwrap().status, "False");
        let binding = Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .get_opt(&format!("buildpolicy-{name}"))
            .await
            .unwrap();
        assert!(binding.is_none(), "nothing may be bound without the rule");

        op.delete_policies_and_stop().await;
        cleanup.await;
    })
    .await;
}

/// The SCC CRD rule is optional: without it the operator cannot learn the
/// cluster's SCC schema, says so in its log, and assumes the newest one, as
/// before it read the CRD. Its caches still count as synced (the in-process
/// operator waits for them), and a policy that needs the newest schema's
/// `userNamespaceLevel` is granted on a cluster that has it.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_crd_rule_the_operator_assumes_the_newest_scc_schema() {
    with_temp_ns(|client, ns| async move {
        let mut role = shipped_cluster_role();
        role.metadata =
            serde_json::from_value(json!({"name": unique_name("operator-without-crd")})).unwrap();
        let rules = role.rules.as_mut().unwrap();
        let before = rules.len();
        rules.retain(|r| {
            !r.api_groups
                .iter()
                .flatten()
                .any(|g| g == "apiextensions.k8s.io")
        });
        assert_eq!(
            rules.len(),
            before - 1,
            "the shipped role has exactly one CRD rule"
        );
        let (identity, cleanup) = identity_with(&client, role).await;

        let op = Operator::start_as(&client, identity, &ns, test_ceiling()).await;
        modelcar_scene(&client, &ns).await;
        let name = unique_name("newest-schema");
        let mut policy = op.policy(
            &name,
            &ns,
            MODELCAR_SERVICE_ACCOUNT,
            &BUILDAH_CAPABILITIES,
            &[MODELCAR_BUILD_TASK],
        );
        policy.spec.isolation = Isolation::PodUserNamespace;
        op.create(&policy).await;
        wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            Duration::from_secs(30),
            is_ready,
        )
        .await;
        let scc = Api::<SecurityContextConstraints>::all(client.clone())
            .get(&owned_name(&name))
            .await
            .unwrap();
        assert_eq!(scc.user_namespace_level.as_deref(), Some("RequirePodLevel"));

        op.delete_policies_and_stop().await;
        cleanup.await;
    })
    .await;
}

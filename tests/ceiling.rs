//! The admin ceiling: a policy over it gets nothing, and lowering it on a
//! running operator revokes grants that are now over it.

use std::time::Duration;

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_test_support::operator::{Operator, test_ceiling};
use buildpolicy_test_support::scene::{buildah_scene, is_ready, refused_as};
use buildpolicy_test_support::{unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Asserts that nothing at all is granted for the policy `name` in `ns`.
async fn assert_nothing_granted(client: &Client, ns: &str, name: &str) {
    let owned = format!("buildpolicy-{name}");
    assert!(
        Api::<SecurityContextConstraints>::all(client.clone())
            .get_opt(&owned)
            .await
            .unwrap()
            .is_none(),
        "SCC exists"
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), ns)
            .get_opt(&owned)
            .await
            .unwrap()
            .is_none(),
        "Role exists"
    );
    assert!(
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get_opt(&owned)
            .await
            .unwrap()
            .is_none(),
        "RoleBinding exists"
    );
    if let Some(task) = Api::<Task>::namespaced(client.clone(), ns)
        .get_opt("build")
        .await
        .unwrap()
    {
        assert!(
            !task
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key(REQUIRED_SCC_ANNOTATION),
            "Task pinned"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn capability_over_the_ceiling_gets_capability_not_allowed_and_nothing_is_created() {
    with_temp_ns(|client, ns| async move {
        buildah_scene(&client, &ns, json!({})).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("net-admin");
        op.create(&op.policy(&name, &ns, "builder", &["SETUID", "NET_ADMIN"], &["build"]))
            .await;
        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            refused_as("CapabilityNotAllowed"),
        )
        .await;
        let message = &policy.condition("Ready").unwrap().message;
        assert!(message.contains("NET_ADMIN"), "{message}");
        assert_eq!(policy.status.as_ref().unwrap().scc_name, None);
        assert_nothing_granted(&client, &ns, &name).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_namespace_gets_namespace_not_allowed_and_nothing_is_created() {
    with_temp_ns(|client, ns| async move {
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("kube-system");
        op.create(&op.policy(&name, "kube-system", "default", &["SETUID"], &["build"]))
            .await;
        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            refused_as("NamespaceNotAllowed"),
        )
        .await;
        assert!(
            policy
                .condition("Ready")
                .unwrap()
                .message
                .contains("kube-*")
        );
        assert_nothing_granted(&client, "kube-system", &name).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lowering_the_ceiling_on_a_running_operator_revokes_an_existing_grant() {
    with_temp_ns(|client, ns| async move {
        buildah_scene(&client, &ns, json!({})).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("lowered");
        op.create(&op.policy(
            &name,
            &ns,
            "builder",
            &["SETUID", "SETGID", "SYS_ADMIN"],
            &["build"],
        ))
        .await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        wait_for(&policies, &name, TIMEOUT, is_ready).await;

        let mut lowered = test_ceiling();
        lowered.allowed_capabilities.remove("SYS_ADMIN");
        op.set_ceiling(lowered);
        let policy = wait_for(
            &policies,
            &name,
            TIMEOUT,
            refused_as("CapabilityNotAllowed"),
        )
        .await;
        assert!(
            policy
                .condition("Ready")
                .unwrap()
                .message
                .contains("SYS_ADMIN")
        );
        assert_nothing_granted(&client, &ns, &name).await;

        op.set_ceiling(test_ceiling());
        wait_for(&policies, &name, TIMEOUT, is_ready).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

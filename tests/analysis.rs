//! The advisory conditions: `PreemptionSafe`, computed from the SCCs in the
//! cluster and what the service account may use, and `TasksAdmissible`, the
//! static check of the pinned Tasks against the generated SCC.

use std::time::Duration;

use buildpolicy_api::{BuildPolicy, Task};
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scene::create_service_account;
use buildpolicy_test_support::{repo_root, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const BUILDAH: [&str; 4] = ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"];

async fn service_account(client: &Client, ns: &str) {
    create_service_account(client, ns, "model-build-sa").await;
}

/// The seed's build Task, from the policy crate's fixtures, into `ns`.
async fn fixture_task(client: &Client, ns: &str, fixture: &str) {
    let path = repo_root()
        .join("crates/policy/tests/fixtures")
        .join(fixture);
    let mut task: Task = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    task.metadata.namespace = Some(ns.to_owned());
    Api::<Task>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &task)
        .await
        .unwrap();
}

fn condition_settled(type_: &'static str) -> impl Fn(&BuildPolicy) -> bool {
    move |p| {
        p.condition("Ready").is_some_and(|c| c.status == "True")
            && p.condition(type_)
                .is_some_and(|c| c.observed_generation == p.metadata.generation)
    }
}

async fn condition(client: &Client, name: &str, type_: &'static str) -> (String, String, String) {
    let policy = wait_for(
        &Api::<BuildPolicy>::all(client.clone()),
        name,
        TIMEOUT,
        condition_settled(type_),
    )
    .await;
    let c = policy.condition(type_).unwrap().clone();
    println!("{type_}={} {}: {}", c.status, c.reason, c.message);
    (c.status, c.reason, c.message)
}

#[tokio::test(flavor = "multi_thread")]
async fn modelcar_policy_is_preemption_safe_with_the_default_sccs() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.capabilities.yaml").await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("safe");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2"],
        ))
        .await;
        let (status, reason, message) = condition(&client, &name, "PreemptionSafe").await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "SortsAfterDefault")
        );
        assert!(message.contains("restricted-v2"), "{message}");
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn granting_the_service_account_hostmount_anyuid_makes_the_generated_scc_preempt_it() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.capabilities.yaml").await;
        // An admin once granted the build SA hostmount-anyuid: its root pods
        // got that SCC. The generated SCC sorts before it and admits root.
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "build-sa-hostmount-anyuid"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:openshift:scc:hostmount-anyuid"},
            "subjects": [{"kind": "ServiceAccount", "name": "model-build-sa", "namespace": ns}]
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(client.clone(), &ns).create(&PostParams::default(), &binding).await.unwrap();
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("preempts");
        op.create(&op.policy(&name, &ns, "model-build-sa", &BUILDAH, &["build-and-push-v2"])).await;
        let (status, reason, message) = condition(&client, &name, "PreemptionSafe").await;
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Preempts"));
        assert!(message.contains("hostmount-anyuid"), "names the SCC it beats: {message}");
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeds_privileged_build_task_is_reported_with_the_fix() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.privileged.yaml").await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("privileged-task");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2"],
        ))
        .await;
        let (status, reason, message) = condition(&client, &name, "TasksAdmissible").await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "NotAdmissible")
        );
        assert!(
            message.contains("step build asks privileged: true"),
            "{message}"
        );
        assert!(
            message.contains("set securityContext.capabilities.add instead"),
            "{message}"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_task_with_capabilities_add_is_admissible_and_privilege_is_confined_to_one_step() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.capabilities.yaml").await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("caps-task");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2"],
        ))
        .await;
        let (status, reason, message) = condition(&client, &name, "TasksAdmissible").await;
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Admissible"));
        assert!(
            message.contains("build-and-push-v2 step build adds"),
            "{message}"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

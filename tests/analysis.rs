//! The advisory conditions: `PreemptionSafe`, computed from the SCCs in the
//! cluster and what the service account may use, and `TasksAdmissible`, the
//! static check of the pinned Tasks against the generated SCC.

use std::time::Duration;

use buildpolicy_api::{BuildPolicy, Task};
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scc_admission::may_use_scc;
use buildpolicy_test_support::scene::{BUILDAH_CAPABILITIES, create_service_account};
use buildpolicy_test_support::{repo_root, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const BUILDAH: [&str; 5] = BUILDAH_CAPABILITIES;

async fn service_account(client: &Client, ns: &str) {
    create_service_account(client, ns, "model-build-sa").await;
}

/// The ModelCar build Task, from the policy crate's fixtures, into `ns`.
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
async fn a_privileged_build_task_is_reported_with_the_fix() {
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

/// Admission is not the end of the line: a Task whose Buildah step has the
/// four capabilities the samples had before `docs/capabilities.md` (no
/// SETFCAP, no `--cap-drop`) is admitted, but its `RUN` fails on a node.
/// The policy says so before any run, with the flags and the capability
/// that fix it (the advice is held to the node's outcomes by
/// `crates/policy/tests/capability_advice.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn a_buildah_step_lacking_what_run_needs_is_told_the_fix_before_it_runs() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        let four = ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"];
        let path =
            repo_root().join("crates/policy/tests/fixtures/build-and-push-v2.capabilities.yaml");
        let mut task: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        task["metadata"]["namespace"] = json!(ns);
        let step = &mut task["spec"]["steps"][0];
        step["securityContext"]["capabilities"]["add"] = json!(four);
        let script = step["script"]
            .as_str()
            .unwrap()
            .replace(" --cap-drop=KILL", "");
        assert!(script.contains("buildah bud"), "{script}");
        step["script"] = json!(script);
        let task: Task = serde_json::from_value(task).unwrap();
        Api::<Task>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &task)
            .await
            .unwrap();
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("buildah-run");
        op.create(&op.policy(&name, &ns, "model-build-sa", &four, &["build-and-push-v2"]))
            .await;
        let (status, reason, message) = condition(&client, &name, "TasksAdmissible").await;
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildahLacksCapabilities"),
            "{message}"
        );
        assert!(
            message.contains("Task build-and-push-v2: step build runs Buildah"),
            "{message}"
        );
        assert!(
            message.contains("add --cap-drop=KILL --cap-drop=SETFCAP to the buildah command"),
            "{message}"
        );
        assert!(
            message.contains("lsetxattr") && message.contains("add SETFCAP"),
            "{message}"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// The Task check is remembered per Task resourceVersion (a converged
/// policy reads no Task); an edit to the Task must still be checked anew.
#[tokio::test(flavor = "multi_thread")]
async fn editing_a_pinned_task_is_checked_again() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.capabilities.yaml").await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("task-edit");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2"],
        ))
        .await;
        let (status, _, _) = condition(&client, &name, "TasksAdmissible").await;
        assert_eq!(status, "True");
        // Someone makes the build step privileged.
        let tasks = Api::<Task>::namespaced(client.clone(), &ns);
        let mut task = tasks.get("build-and-push-v2").await.unwrap();
        let spec = task.spec.as_mut().unwrap();
        spec["steps"][0]["securityContext"] = json!({"privileged": true});
        tasks
            .replace("build-and-push-v2", &Default::default(), &task)
            .await
            .unwrap();
        let refused = |p: &BuildPolicy| {
            p.condition("TasksAdmissible")
                .is_some_and(|c| c.status == "False" && c.message.contains("privileged: true"))
        };
        wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            refused,
        )
        .await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_made_after_the_policy_is_ready_changes_preemption_safe_at_once() {
    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        fixture_task(&client, &ns, "build-and-push-v2.capabilities.yaml").await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("late-grant");
        op.create(&op.policy(&name, &ns, "model-build-sa", &BUILDAH, &["build-and-push-v2"])).await;
        let (status, _, _) = condition(&client, &name, "PreemptionSafe").await;
        assert_eq!(status, "True");
        // The binding arrives later. The operator's resync is minutes away
        // (300 s by default, longer than this test's timeout): only the
        // RBAC watch can bring the change in time.
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "late-hostmount-anyuid"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:openshift:scc:hostmount-anyuid"},
            "subjects": [{"kind": "ServiceAccount", "name": "model-build-sa", "namespace": ns}]
        }))
        .unwrap();
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
        bindings.create(&PostParams::default(), &binding).await.unwrap();
        let preempts = |p: &BuildPolicy| {
            p.condition("PreemptionSafe").is_some_and(|c| c.status == "False" && c.message.contains("hostmount-anyuid"))
        };
        wait_for(&Api::<BuildPolicy>::all(client.clone()), &name, TIMEOUT, preempts).await;
        bindings.delete("late-hostmount-anyuid", &Default::default()).await.unwrap();
        let safe = |p: &BuildPolicy| p.condition("PreemptionSafe").is_some_and(|c| c.status == "True");
        wait_for(&Api::<BuildPolicy>::all(client.clone()), &name, TIMEOUT, safe).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// The operator decides "may this service account use that SCC?" from the
/// RBAC objects in its caches instead of asking; here the same function runs
/// on the objects listed from the server and must agree with the server's
/// own authorizer (SubjectAccessReview) for every SCC and binding shape.
#[tokio::test(flavor = "multi_thread")]
async fn reading_rbac_agrees_with_the_api_servers_authorizer() {
    use buildpolicy_policy::rbac::{RoleKey, ServiceAccountUser, scc_use_in_namespace};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
    use kube::api::ListParams;

    with_temp_ns(|client, ns| async move {
        service_account(&client, &ns).await;
        let other = format!("{ns}-x");
        let create = |kind: &'static str, body: serde_json::Value| {
            let client = client.clone();
            let ns = ns.clone();
            async move {
                match kind {
                    "Role" => drop(Api::<Role>::namespaced(client, &ns).create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap()),
                    _ => drop(Api::<RoleBinding>::namespaced(client, &ns).create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap()),
                }
            }
        };
        let scc_rule = |names: serde_json::Value| json!({"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"], "resourceNames": names, "verbs": ["use"]});
        // A namespaced Role naming two SCCs, bound without a subject namespace.
        create("Role", json!({"metadata": {"name": "two-sccs"}, "rules": [scc_rule(json!(["anyuid", "made-up"]))]})).await;
        create("RoleBinding", json!({"metadata": {"name": "two-sccs"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "two-sccs"}, "subjects": [{"kind": "ServiceAccount", "name": "model-build-sa"}]})).await;
        // A ClusterRole bound to the namespace's service-account group.
        create("RoleBinding", json!({"metadata": {"name": "group-nonroot"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:openshift:scc:nonroot-v2"}, "subjects": [{"kind": "Group", "name": format!("system:serviceaccounts:{ns}")}]})).await;
        // Bound to the same name in another namespace: grants nothing here.
        create("RoleBinding", json!({"metadata": {"name": "elsewhere"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:openshift:scc:privileged"}, "subjects": [{"kind": "ServiceAccount", "name": "model-build-sa", "namespace": other}]})).await;
        // A Role with a wildcard verb but another resource: grants nothing.
        create("Role", json!({"metadata": {"name": "not-sccs"}, "rules": [{"apiGroups": ["security.openshift.io"], "resources": ["rangeallocations"], "verbs": ["*"]}]})).await;
        create("RoleBinding", json!({"metadata": {"name": "not-sccs"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "not-sccs"}, "subjects": [{"kind": "User", "name": format!("system:serviceaccount:{ns}:model-build-sa")}]})).await;
        // Bound to a Role that does not exist: grants nothing.
        create("RoleBinding", json!({"metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "absent"}, "subjects": [{"kind": "ServiceAccount", "name": "model-build-sa"}]})).await;

        let lp = ListParams::default();
        let crbs = Api::<ClusterRoleBinding>::all(client.clone()).list(&lp).await.unwrap().items;
        let rbs = Api::<RoleBinding>::all(client.clone()).list(&lp).await.unwrap().items;
        let cluster_roles = Api::<ClusterRole>::all(client.clone()).list(&lp).await.unwrap().items;
        let roles = Api::<Role>::all(client.clone()).list(&lp).await.unwrap().items;
        let who = ServiceAccountUser::new(ns.as_str(), "model-build-sa");
        let grant = scc_use_in_namespace(&who, &crbs, &rbs, |key| match key {
            RoleKey::ClusterRole(name) => cluster_roles.iter().find(|r| r.metadata.name.as_deref() == Some(name)).map(|r| r.rules.clone().unwrap_or_default()),
            RoleKey::Role { namespace, name } => roles.iter().find(|r| r.metadata.namespace.as_deref() == Some(namespace) && r.metadata.name.as_deref() == Some(name)).map(|r| r.rules.clone().unwrap_or_default()),
        });
        let names = ["restricted-v2", "restricted-v3", "anyuid", "made-up", "nonroot-v2", "nonroot", "privileged", "hostaccess", "hostmount-anyuid", "nested-container", "buildpolicy-none"];
        let mut allowed = Vec::new();
        for scc in names {
let server = may_use_scc(&client, &who.user_name(), &ns, scc).await;
            assert_eq!(grant.allows(scc), server, "SCC {scc}: cache reading says {}, the authorizer says {server}", grant.allows(scc));
            if server {
                allowed.push(scc);
            }
        }
        // The comparison is not vacuous: both answers occur.
        assert_eq!(allowed, ["restricted-v2", "restricted-v3", "anyuid", "made-up", "nonroot-v2"]);
    })
    .await;
}

//! What one BuildPolicy produces, and keeps, on a real API server: the SCC,
//! the RBAC that lets exactly one service account use it, the Task pins, the
//! status, revocation on change and delete, and drift repair.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scc_admission::may_use_scc;
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, create_service_account, create_task, is_ready, pin_of,
    policy_event_objects, policy_events, refused_as,
};
use buildpolicy_test_support::{eventually, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const MODELCAR_TASKS: [&str; 4] = [
    "download-model",
    "build-and-push-v2",
    "mirror-to-internal",
    "register-model",
];
const BUILDAH: [&str; 5] = BUILDAH_CAPABILITIES;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The ModelCar scene in `ns` with all four of its Tasks (test-support's
/// `modelcar_scene` has only the build Task): the build service account
/// and `MODELCAR_TASKS`.
async fn four_task_scene(client: &Client, ns: &str) {
    create_service_account(client, ns, "model-build-sa").await;
    for task in MODELCAR_TASKS {
        create_task(client, ns, task).await;
    }
}

/// The ModelCar scene in `ns` with a converged policy pinning
/// build-and-push-v2, and the operator that converged it.
async fn converged_modelcar(client: &Client, ns: &str, prefix: &str) -> (Operator, String) {
    four_task_scene(client, ns).await;
    let op = Operator::start(client, ns).await;
    let name = unique_name(prefix);
    op.create(&op.policy(
        &name,
        ns,
        "model-build-sa",
        &BUILDAH,
        &["build-and-push-v2"],
    ))
    .await;
    wait_ready(client, &name).await;
    (op, name)
}

async fn wait_ready(client: &Client, name: &str) -> BuildPolicy {
    wait_for(
        &Api::<BuildPolicy>::all(client.clone()),
        name,
        TIMEOUT,
        is_ready,
    )
    .await
}

async fn patch_policy(client: &Client, name: &str, spec: serde_json::Value) {
    Api::<BuildPolicy>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn modelcar_policy_grants_exactly_four_capabilities_to_one_service_account() {
    with_temp_ns(|client, ns| async move {
        four_task_scene(&client, &ns).await;
        let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
        let before: BTreeMap<String, Task> = tasks
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|t| (t.name_any(), t))
            .collect();

        let op = Operator::start(&client, &ns).await;
        let name = unique_name("modelcar");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2"],
        ))
        .await;
        let policy = wait_ready(&client, &name).await;

        let status = policy.status.as_ref().unwrap();
        let scc_name = status.scc_name.clone().expect("status.sccName");
        assert_eq!(scc_name, format!("buildpolicy-{name}"));
        assert_eq!(status.pinned_tasks, vec!["build-and-push-v2".to_string()]);
        for part in ["SCCReady", "RBACReady", "TasksPinned"] {
            let c = policy
                .condition(part)
                .unwrap_or_else(|| panic!("{part} condition"));
            assert_eq!(
                (c.status.as_str(), c.observed_generation),
                ("True", policy.metadata.generation),
                "{part}"
            );
        }

        let scc = Api::<SecurityContextConstraints>::all(client.clone())
            .get(&scc_name)
            .await
            .unwrap();
        let mut caps = scc.allowed_capabilities.clone().unwrap();
        caps.sort();
        assert_eq!(
            caps,
            ["SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"]
        );
        assert!(!scc.allow_privileged_container);
        assert!(
            !(scc.allow_host_network
                || scc.allow_host_pid
                || scc.allow_host_ipc
                || scc.allow_host_ports)
        );
        assert!(!scc.allow_host_dir_volume_plugin);
        assert_eq!(scc.users.clone().unwrap_or_default(), Vec::<String>::new());
        assert_eq!(scc.groups.clone().unwrap_or_default(), Vec::<String>::new());
        assert_eq!(scc.priority, None);
        assert!(
            scc.volumes
                .clone()
                .unwrap()
                .iter()
                .all(|v| v != "hostPath" && v != "*")
        );

        let sa_user = format!("system:serviceaccount:{ns}:model-build-sa");
        assert!(
            may_use_scc(&client, &sa_user, &ns, &scc_name).await,
            "the build SA may use the SCC"
        );
        assert!(
            !may_use_scc(
                &client,
                &format!("system:serviceaccount:{ns}:default"),
                &ns,
                &scc_name
            )
            .await
        );
        let elsewhere = format!("{ns}-other");
        assert!(
            !may_use_scc(
                &client,
                &format!("system:serviceaccount:{elsewhere}:model-build-sa"),
                &elsewhere,
                &scc_name
            )
            .await
        );
        assert!(
            !may_use_scc(&client, &sa_user, &ns, "privileged").await,
            "no other SCC is granted"
        );

        let after: BTreeMap<String, Task> = tasks
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|t| (t.name_any(), t))
            .collect();
        for task in MODELCAR_TASKS {
            if task == "build-and-push-v2" {
                assert_eq!(pin_of(&after[task]), Some(&scc_name));
                assert_eq!(
                    after[task].annotations()["team.example.com/owner"],
                    "ai-platform"
                );
                assert_eq!(after[task].spec, before[task].spec);
            } else {
                assert_eq!(
                    after[task], before[task],
                    "{task} must be byte-for-byte unchanged"
                );
            }
        }
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_sys_admin_from_the_policy_removes_it_from_the_scc() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "shrink").await;

        patch_policy(
            &client,
            &name,
            json!({"capabilities": ["SETUID", "SETGID", "SYS_CHROOT", "SETFCAP"]}),
        )
        .await;
        wait_ready(&client, &name).await;
        let scc = Api::<SecurityContextConstraints>::all(client.clone())
            .get(&format!("buildpolicy-{name}"))
            .await
            .unwrap();
        let mut caps = scc.allowed_capabilities.unwrap();
        caps.sort();
        assert_eq!(caps, ["SETFCAP", "SETGID", "SETUID", "SYS_CHROOT"]);
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_the_pin_moves_the_annotation_and_keeps_the_tasks_other_annotations() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "move-pin").await;

        patch_policy(&client, &name, json!({"tasks": ["mirror-to-internal"]})).await;
        let policy = wait_ready(&client, &name).await;
        assert_eq!(
            policy.status.unwrap().pinned_tasks,
            vec!["mirror-to-internal".to_string()]
        );

        let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
        let old = tasks.get("build-and-push-v2").await.unwrap();
        assert_eq!(pin_of(&old), None, "the old Task is unpinned");
        assert!(!old.labels().contains_key(POLICY_LABEL));
        assert_eq!(
            old.annotations()["team.example.com/owner"],
            "ai-platform",
            "other annotations stay"
        );
        assert_eq!(
            old.labels()["app.kubernetes.io/part-of"],
            "modelcar",
            "other labels stay"
        );
        let new = tasks.get("mirror-to-internal").await.unwrap();
        assert_eq!(pin_of(&new), Some(&format!("buildpolicy-{name}")));
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_the_policy_to_another_namespace_and_service_account_revokes_the_old_grant() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "move-ns").await;

        let other = format!("{ns}-b");
        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": other, "labels": {"buildpolicy.dev/test": "true"}}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        create_service_account(&client, &other, "builder").await;
        create_task(&client, &other, "build").await;
        patch_policy(
            &client,
            &name,
            json!({"namespace": other, "serviceAccountName": "builder", "tasks": ["build"]}),
        )
        .await;
        wait_ready(&client, &name).await;

        let scc_name = format!("buildpolicy-{name}");
        assert!(
            Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .get_opt(&scc_name)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            Api::<Role>::namespaced(client.clone(), &ns)
                .get_opt(&scc_name)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            pin_of(
                &Api::<Task>::namespaced(client.clone(), &ns)
                    .get("build-and-push-v2")
                    .await
                    .unwrap()
            ),
            None
        );
        assert!(
            !may_use_scc(
                &client,
                &format!("system:serviceaccount:{ns}:model-build-sa"),
                &ns,
                &scc_name
            )
            .await
        );
        assert!(
            may_use_scc(
                &client,
                &format!("system:serviceaccount:{other}:builder"),
                &other,
                &scc_name
            )
            .await
        );
        assert_eq!(
            pin_of(
                &Api::<Task>::namespaced(client.clone(), &other)
                    .get("build")
                    .await
                    .unwrap()
            ),
            Some(&scc_name)
        );

        op.delete_policies_and_stop().await;
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&other, &DeleteParams::default())
            .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_policy_leaves_no_scc_rbac_or_annotation() {
    with_temp_ns(|client, ns| async move {
        four_task_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("delete");
        op.create(&op.policy(
            &name,
            &ns,
            "model-build-sa",
            &BUILDAH,
            &["build-and-push-v2", "register-model"],
        ))
        .await;
        wait_ready(&client, &name).await;

        Api::<BuildPolicy>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await
            .unwrap();
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        eventually("the policy is gone", TIMEOUT, || async {
            policies
                .get_opt(&name)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        })
        .await;

        let scc_name = format!("buildpolicy-{name}");
        assert!(
            Api::<SecurityContextConstraints>::all(client.clone())
                .get_opt(&scc_name)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            Api::<Role>::namespaced(client.clone(), &ns)
                .get_opt(&scc_name)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .get_opt(&scc_name)
                .await
                .unwrap()
                .is_none()
        );
        for task in Api::<Task>::namespaced(client.clone(), &ns)
            .list(&Default::default())
            .await
            .unwrap()
        {
            assert_eq!(pin_of(&task), None, "{} still pinned", task.name_any());
            assert!(!task.labels().contains_key(POLICY_LABEL));
            assert_eq!(task.annotations()["team.example.com/owner"], "ai-platform");
        }
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Waits until `check` holds on the live SCC, returning how long it took.
async fn time_until_scc(
    client: &Client,
    scc_name: &str,
    check: impl Fn(&SecurityContextConstraints) -> bool,
) -> Duration {
    let start = Instant::now();
    wait_for(
        &Api::<SecurityContextConstraints>::all(client.clone()),
        scc_name,
        TIMEOUT,
        check,
    )
    .await;
    start.elapsed()
}

/// A new policy records one Event (what was granted, led by `Ready`), not
/// one per object; a hand edit repaired records one Warning, and the same
/// edit again adds to that Warning's series; a reconcile that changes
/// nothing records none.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_policy_records_one_event_and_a_repair_one_warning() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "events").await;
        let scc_name = format!("buildpolicy-{name}");
        let granted = eventually("the grant's Event", TIMEOUT, || async {
            let events = policy_events(&client, &name).await;
            (!events.is_empty()).then_some(events)
        })
        .await;
        assert_eq!(granted.len(), 1, "{granted:?}");
        let (type_, reason, note) = &granted[0];
        assert_eq!((type_.as_str(), reason.as_str()), ("Normal", "Reconciled"));
        for part in [
            "Ready=True: SCC ",
            &format!("SecurityContextConstraints {scc_name} allows"),
            &format!("Role {ns}/{scc_name}"),
            &format!("RoleBinding {ns}/{scc_name}"),
            &format!("Task {ns}/build-and-push-v2 pinned"),
        ] {
            assert!(note.contains(part), "{part:?} is not in {note:?}");
        }

        // A hand edit that widens the SCC.
        let widen_scc = || async {
            Api::<SecurityContextConstraints>::all(client.clone())
                .patch(
                    &scc_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"allowPrivilegedContainer": true})),
                )
                .await
                .unwrap();
        };
        widen_scc().await;
        let events = eventually("the repair's Event", TIMEOUT, || async {
            let events = policy_events(&client, &name).await;
            (events.len() > 1).then_some(events)
        })
        .await;
        let (type_, reason, note) = &events[1];
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Warning", "DriftCorrected")
        );
        assert!(note.contains("allowPrivilegedContainer"), "{note}");

        // The same hand edit again: the Warning repeats, and the repeat is
        // folded into the first one's series, not a third Event.
        widen_scc().await;
        eventually(
            "the repeated repair in the Warning's series",
            TIMEOUT,
            || async {
                let events = policy_event_objects(&client, &name).await;
                let warning = events
                    .iter()
                    .find(|e| e.reason.as_deref() == Some("DriftCorrected"))?;
                (warning.series.as_ref()?.count >= 2).then_some(())
            },
        )
        .await;
        assert_eq!(policy_events(&client, &name).await.len(), 2);

        // A reconcile that changes nothing says nothing.
        let reconciled = reconciles(&op);
        Api::<BuildPolicy>::all(client.clone())
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
            )
            .await
            .unwrap();
        eventually("the poked policy to be reconciled", TIMEOUT, || async {
            (reconciles(&op) > reconciled).then_some(())
        })
        .await;
        assert_eq!(policy_events(&client, &name).await.len(), 2);
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Reconciles the in-process operator finished, every result added up.
fn reconciles(op: &Operator) -> f64 {
    buildpolicy_test_support::exposition::metric_sum(
        &op.metrics.encode(),
        "buildpolicy_reconciliations_total",
        &[],
    )
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edits_that_widen_the_scc_are_reverted() {
    with_temp_ns(|client, ns| async move {
        four_task_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("drift-scc");
        op.create(&op.policy(&name, &ns, "model-build-sa", &BUILDAH, &["build-and-push-v2"])).await;
        wait_ready(&client, &name).await;
        let scc_name = format!("buildpolicy-{name}");
        let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());

        for (what, edit) in [
            ("adding NET_ADMIN", json!({"allowedCapabilities": ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP", "NET_ADMIN"]})),
            ("setting allowPrivilegedContainer", json!({"allowPrivilegedContainer": true})),
            ("adding users", json!({"users": ["system:serviceaccount:default:default"]})),
            ("adding groups", json!({"groups": ["system:authenticated"]})),
            ("setting a priority", json!({"priority": 20})),
        ] {
            sccs.patch(&scc_name, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
            let took = time_until_scc(&client, &scc_name, |scc| {
                !scc.allow_privileged_container
                    && scc.allowed_capabilities.as_ref().is_some_and(|c| c.len() == BUILDAH.len())
                    && scc.users.clone().unwrap_or_default().is_empty()
                    && scc.groups.clone().unwrap_or_default().is_empty()
                    && scc.priority.is_none()
            })
            .await;
            println!("drift repair: {what} on the SCC reverted in {took:?}");
        }

        sccs.delete(&scc_name, &DeleteParams::default()).await.unwrap();
        let start = Instant::now();
        eventually("the deleted SCC is recreated", TIMEOUT, || async {
            sccs.get_opt(&scc_name).await.unwrap().filter(|s| s.metadata.deletion_timestamp.is_none()).map(|_| ())
        })
        .await;
        println!("drift repair: deleted SCC recreated in {:?}", start.elapsed());
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_rolebinding_and_edited_role_are_restored() {
    with_temp_ns(|client, ns| async move {
        four_task_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("drift-rbac");
        op.create(&op.policy(&name, &ns, "model-build-sa", &BUILDAH, &["build-and-push-v2"])).await;
        wait_ready(&client, &name).await;
        let rb_name = format!("buildpolicy-{name}");
        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
        let old_uid = bindings.get(&rb_name).await.unwrap().uid();

        let start = Instant::now();
        bindings.delete(&rb_name, &DeleteParams::default()).await.unwrap();
        eventually("the deleted RoleBinding is recreated", TIMEOUT, || async {
            bindings.get_opt(&rb_name).await.unwrap().filter(|b| b.uid() != old_uid).map(|_| ())
        })
        .await;
        println!("drift repair: deleted RoleBinding recreated in {:?}", start.elapsed());

        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let start = Instant::now();
        roles
            .patch(&rb_name, &PatchParams::default(), &Patch::Merge(json!({"rules": [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"], "resourceNames": ["privileged"], "verbs": ["use"]}]})))
            .await
            .unwrap();
        wait_for(&roles, &rb_name, TIMEOUT, |role: &Role| {
            role.rules.as_ref().is_some_and(|r| r.len() == 1 && r[0].resource_names.as_deref() == Some(&[rb_name.clone()][..]))
        })
        .await;
        println!("drift repair: Role widened to privileged reverted in {:?}", start.elapsed());
        assert!(may_use_scc(&client, &format!("system:serviceaccount:{ns}:model-build-sa"), &ns, &rb_name).await);
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Drift that hides: a Role whose policy label is removed no longer says
/// which policy it belongs to, but its name does; widened to `use` on
/// `privileged`, it is repaired as fast as any other drift (not at the next
/// resync, five minutes away), label and rules.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_stripped_of_its_policy_label_and_widened_is_repaired() {
    with_temp_ns(|client, ns| async move {
        four_task_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("drift-hidden");
        op.create(&op.policy(&name, &ns, "model-build-sa", &BUILDAH, &["build-and-push-v2"])).await;
        wait_ready(&client, &name).await;
        let role_name = format!("buildpolicy-{name}");
        let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
        let start = Instant::now();
        roles
            .patch(
                &role_name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"labels": {POLICY_LABEL: null}},
                    "rules": [{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"], "resourceNames": ["privileged"], "verbs": ["use"]}]
                })),
            )
            .await
            .unwrap();
        wait_for(&roles, &role_name, TIMEOUT, |role: &Role| {
            role.labels().get(POLICY_LABEL) == Some(&name)
                && role.rules.as_ref().is_some_and(|r| r.len() == 1 && r[0].resource_names.as_deref() == Some(&[role_name.clone()][..]))
        })
        .await;
        // Within the drift bound of the other tests (30 s), far below the
        // operator's resync (5 min): the watch event did it.
        println!("drift repair: label-stripped Role widened to privileged reverted in {:?}", start.elapsed());
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_or_changed_task_pin_is_restored() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "drift-pin").await;
        let scc_name = format!("buildpolicy-{name}");
        let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);

        for (what, value) in [
            ("removed", serde_json::Value::Null),
            ("changed to privileged", json!("privileged")),
        ] {
            let start = Instant::now();
            tasks
                .patch(
                    "build-and-push-v2",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {REQUIRED_SCC_ANNOTATION: value}}}),
                    ),
                )
                .await
                .unwrap();
            wait_for(&tasks, "build-and-push-v2", TIMEOUT, |t: &Task| {
                pin_of(t) == Some(&scc_name)
            })
            .await;
            println!(
                "drift repair: pin {what} on the Task restored in {:?}",
                start.elapsed()
            );
        }
        let task = tasks.get("build-and-push-v2").await.unwrap();
        assert_eq!(task.annotations()["team.example.com/owner"], "ai-platform");
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_created_before_its_targets_reports_each_missing_one_then_converges() {
    with_temp_ns(|client, ns| async move {
        let op = Operator::start(&client, &ns).await;
        let target = format!("{ns}-late");
        let name = unique_name("early");
        op.create(&op.policy(&name, &target, "builder", &["SETUID", "SETGID"], &["build"]))
            .await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());

        let p = wait_for(&policies, &name, TIMEOUT, refused_as("NamespaceNotFound")).await;
        assert!(
            p.condition("Ready").unwrap().message.contains(&target),
            "message names the namespace"
        );

        let namespace: Namespace = serde_json::from_value(
            json!({"metadata": {"name": target, "labels": {"buildpolicy.dev/test": "true"}}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
        let p = wait_for(
            &policies,
            &name,
            TIMEOUT,
            refused_as("ServiceAccountNotFound"),
        )
        .await;
        assert!(
            p.condition("Ready")
                .unwrap()
                .message
                .contains(&format!("{target}/builder"))
        );

        create_service_account(&client, &target, "builder").await;
        let p = wait_for(&policies, &name, TIMEOUT, refused_as("TaskNotFound")).await;
        assert!(
            p.condition("TasksPinned")
                .unwrap()
                .message
                .contains("Task build not found")
        );

        create_task(&client, &target, "build").await;
        wait_ready(&client, &name).await;
        op.delete_policies_and_stop().await;
        let _ = Api::<Namespace>::all(client.clone())
            .delete(&target, &DeleteParams::default())
            .await;
    })
    .await;
}

/// The resourceVersion of the object `name` behind `api`.
async fn version_of<K>(api: Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name).await.unwrap().resource_version().unwrap()
}

/// resourceVersions of the policy and everything it manages.
async fn versions(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let scc_name = format!("buildpolicy-{name}");
    let mut v = BTreeMap::new();
    v.insert(
        "policy".into(),
        version_of(Api::<BuildPolicy>::all(client.clone()), name).await,
    );
    v.insert(
        "scc".into(),
        version_of(
            Api::<SecurityContextConstraints>::all(client.clone()),
            &scc_name,
        )
        .await,
    );
    v.insert(
        "role".into(),
        version_of(Api::<Role>::namespaced(client.clone(), ns), &scc_name).await,
    );
    v.insert(
        "binding".into(),
        version_of(
            Api::<RoleBinding>::namespaced(client.clone(), ns),
            &scc_name,
        )
        .await,
    );
    for task in Api::<Task>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
    {
        v.insert(
            format!("task/{}", task.name_any()),
            task.resource_version().unwrap(),
        );
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_the_operator_on_a_converged_cluster_writes_nothing() {
    with_temp_ns(|client, ns| async move {
        let (op, name) = converged_modelcar(&client, &ns, "restart").await;
        op.stop().await;
        let before = versions(&client, &ns, &name).await;

        let op = Operator::start(&client, &ns).await;
        // The restarted operator has looked at the policy once it counts a reconcile.
        eventually("the restarted operator reconciles", TIMEOUT, || async {
            (op.metrics.reconcile_count() > 0).then_some(())
        })
        .await;
        let after = versions(&client, &ns, &name).await;
        assert_eq!(
            before, after,
            "a converged cluster must see no writes after a restart"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// The teardown check of every test cannot read "nothing left" from an
/// answer it did not get: an identity that may not list is an error.
#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "checking for leftovers")]
async fn the_leftover_check_fails_when_it_may_not_look() {
    let policy: BuildPolicy = serde_json::from_value(json!({
        "apiVersion": "buildpolicy.dev/v1alpha1",
        "kind": "BuildPolicy",
        "metadata": {"name": unique_name("cannot-look")},
        "spec": {
            "namespace": "default",
            "serviceAccountName": "model-build-sa",
            "capabilities": ["SETUID"],
            "tasks": ["build-and-push-v2"],
        },
    }))
    .expect("a BuildPolicy");
    let nobody = buildpolicy_test_support::client_as("system:serviceaccount:default:nobody").await;
    buildpolicy_test_support::operator::leftovers(&nobody, &policy).await;
}

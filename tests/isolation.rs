//! `spec.isolation`: each mode's SCC and Task annotations as the real SCC
//! CRD stores them, switching modes on a live policy, and the ceiling's
//! user-namespace switch.

use std::collections::BTreeMap;
use std::time::Duration;

use buildpolicy_api::keys::{
    CRIO_USERNS_MODE_ANNOTATION, OPENSHIFT_BUILDER_ANNOTATION, POLICY_LABEL,
    REQUIRED_SCC_ANNOTATION, owned_name,
};
use buildpolicy_api::{BuildPolicy, Isolation, SecurityContextConstraints, Task};
use buildpolicy_policy::drift::scc_drift;
use buildpolicy_policy::render::pin_annotations;
use buildpolicy_policy::{Ceiling, Owner, render};
use buildpolicy_test_support::operator::{Operator, test_ceiling};
use buildpolicy_test_support::scene::{
    MODELCAR_BUILD_TASK, is_ready, modelcar_policy, modelcar_scene,
};
use buildpolicy_test_support::{unique_name, wait_for, wait_for_deletion, with_temp_ns};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Annotations that only some modes set; none may outlive its mode.
const MODE_ANNOTATIONS: [&str; 2] = [CRIO_USERNS_MODE_ANNOTATION, OPENSHIFT_BUILDER_ANNOTATION];

/// Waits until the policy's current generation is Ready, and returns it.
async fn ready(client: &Client, name: &str) -> BuildPolicy {
    wait_for(
        &Api::<BuildPolicy>::all(client.clone()),
        name,
        TIMEOUT,
        is_ready,
    )
    .await
}

/// The SCC as the API server stores it, as raw JSON (what `oc get -o json`
/// shows, with the CRD's defaulting applied).
async fn stored_scc(client: &Client, name: &str) -> Value {
    let scc = Api::<SecurityContextConstraints>::all(client.clone())
        .get(name)
        .await
        .unwrap();
    serde_json::to_value(scc).unwrap()
}

/// The fields that differ between the modes, as stored.
fn mode_fields(scc: &Value) -> Value {
    json!({
        "userNamespaceLevel": scc["userNamespaceLevel"],
        "runAsUser": scc["runAsUser"],
        "seLinuxContext": scc["seLinuxContext"],
        "fsGroup": scc["fsGroup"],
        "supplementalGroups": scc["supplementalGroups"],
        "allowedCapabilities": scc["allowedCapabilities"],
        "allowPrivilegeEscalation": scc["allowPrivilegeEscalation"],
    })
}

/// What each mode's SCC stores, written out from docs/user-namespaces.md.
fn documented(isolation: Isolation) -> Value {
    let capabilities = json!(["SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"]);
    match isolation {
        Isolation::PodUserNamespace => json!({
            "userNamespaceLevel": "RequirePodLevel",
            "runAsUser": {"type": "MustRunAsRange", "uidRangeMin": 0, "uidRangeMax": 65534},
            "seLinuxContext": {"type": "MustRunAs", "seLinuxOptions": {"type": "container_engine_t"}},
            "fsGroup": {"type": "MustRunAs", "ranges": [{"min": 0, "max": 65534}]},
            "supplementalGroups": {"type": "MustRunAs", "ranges": [{"min": 0, "max": 65534}]},
            "allowedCapabilities": capabilities,
            "allowPrivilegeEscalation": true,
        }),
        Isolation::HostUserNamespace | Isolation::CrioUserNamespace => json!({
            "userNamespaceLevel": "AllowHostLevel",
            "runAsUser": {"type": "RunAsAny"},
            "seLinuxContext": {"type": "MustRunAs"},
            "fsGroup": {"type": "RunAsAny"},
            "supplementalGroups": {"type": "RunAsAny"},
            "allowedCapabilities": capabilities,
            "allowPrivilegeEscalation": true,
        }),
    }
}

async fn task(client: &Client, ns: &str) -> Task {
    Api::<Task>::namespaced(client.clone(), ns)
        .get(MODELCAR_BUILD_TASK)
        .await
        .unwrap()
}

/// Asserts the live SCC and Task are exactly what `isolation` produces:
/// the documented fields, no drift from the rendering, the mode's
/// annotations and none of another mode's.
async fn assert_mode(client: &Client, policy: &BuildPolicy, isolation: Isolation) {
    let scc_name = owned_name(&policy.name_any());
    let stored = stored_scc(client, &scc_name).await;
    assert_eq!(
        mode_fields(&stored),
        documented(isolation),
        "{isolation}: stored SCC fields"
    );
    let live: SecurityContextConstraints = serde_json::from_value(stored).unwrap();
    let desired = render(&Owner::of(policy), &policy.spec).scc;
    assert_eq!(
        scc_drift(&desired, &live),
        Vec::<&str>::new(),
        "{isolation}: SCC drift"
    );

    let task = task(client, &policy.spec.namespace).await;
    let annotations = task.annotations();
    let want = pin_annotations(&scc_name, isolation);
    for (key, value) in &want {
        assert_eq!(
            annotations.get(key),
            Some(value),
            "{isolation}: Task annotation {key}"
        );
    }
    for key in MODE_ANNOTATIONS.iter().filter(|k| !want.contains_key(**k)) {
        assert!(
            !annotations.contains_key(*key),
            "{isolation}: {key} left on the Task: {annotations:?}"
        );
    }
    // The Task's own annotation is never touched.
    assert_eq!(
        annotations
            .get("team.example.com/owner")
            .map(String::as_str),
        Some("ai-platform")
    );
}

async fn set_isolation(client: &Client, name: &str, isolation: Isolation) {
    Api::<BuildPolicy>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"isolation": isolation.as_str()}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mode_produces_its_documented_scc_and_task_annotations() {
    for isolation in Isolation::ALL {
        with_temp_ns(|client, ns| async move {
            modelcar_scene(&client, &ns).await;
            let op = Operator::start(&client, &ns).await;
            let name = unique_name("mode");
            let mut policy = modelcar_policy(&ns, &name, &ns);
            policy.spec.isolation = isolation;
            op.create(&policy).await;
            let policy = ready(&client, &name).await;
            assert_mode(&client, &policy, isolation).await;

            let ready_message = &policy.condition("Ready").unwrap().message;
            let admissible = wait_for(
                &Api::<BuildPolicy>::all(client.clone()),
                &name,
                TIMEOUT,
                |p| {
                    p.condition("TasksAdmissible")
                        .is_some_and(|c| c.observed_generation == p.metadata.generation)
                },
            )
            .await;
            let admissible = admissible.condition("TasksAdmissible").unwrap();
            println!(
                "{isolation}: Ready: {ready_message}\n{isolation}: TasksAdmissible: {}",
                admissible.message
            );
            match isolation {
                // The pipeline owner is told what to set, and where.
                Isolation::PodUserNamespace => {
                    for message in [ready_message, &admissible.message] {
                        assert!(message.contains("hostUsers: false"), "{message}");
                        assert!(
                            message.contains("spec.taskRunTemplate.podTemplate.hostUsers"),
                            "{message}"
                        );
                    }
                }
                Isolation::CrioUserNamespace => {
                    assert!(
                        ready_message.contains("io.kubernetes.cri-o.userns-mode=auto:size=65536"),
                        "{ready_message}"
                    );
                }
                Isolation::HostUserNamespace => {
                    assert!(!ready_message.contains("user namespace"), "{ready_message}");
                }
            }
            op.delete_policies_and_stop().await;
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_modes_on_a_live_policy_leaves_nothing_of_the_old_mode_and_deleting_leaves_nothing()
 {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("switch");
        op.create(&modelcar_policy(&ns, &name, &ns)).await;
        let policy = ready(&client, &name).await;
        assert_mode(&client, &policy, Isolation::HostUserNamespace).await;
        // Every mode to every other: pod-level fields and CRI-O annotations
        // come and go.
        for isolation in [
            Isolation::CrioUserNamespace,
            Isolation::PodUserNamespace,
            Isolation::CrioUserNamespace,
            Isolation::HostUserNamespace,
            Isolation::PodUserNamespace,
            Isolation::HostUserNamespace,
        ] {
            set_isolation(&client, &name, isolation).await;
            let policy = ready(&client, &name).await;
            assert_eq!(policy.spec.isolation, isolation);
            assert_mode(&client, &policy, isolation).await;
        }
        // Leave it in the CRI-O mode, then delete it: nothing remains.
        set_isolation(&client, &name, Isolation::CrioUserNamespace).await;
        let policy = ready(&client, &name).await;
        assert_mode(&client, &policy, Isolation::CrioUserNamespace).await;
        Api::<BuildPolicy>::all(client.clone())
            .delete(&name, &Default::default())
            .await
            .unwrap();
        wait_for_deletion(&Api::<BuildPolicy>::all(client.clone()), &name, TIMEOUT).await;
        let sccs = Api::<SecurityContextConstraints>::all(client.clone());
        assert!(sccs.get_opt(&owned_name(&name)).await.unwrap().is_none());
        let task = task(&client, &ns).await;
        let ours: BTreeMap<_, _> = task
            .annotations()
            .iter()
            .filter(|(k, _)| {
                *k == REQUIRED_SCC_ANNOTATION || MODE_ANNOTATIONS.contains(&k.as_str())
            })
            .collect();
        assert!(ours.is_empty(), "annotations left on the Task: {ours:?}");
        assert!(
            !task.labels().contains_key(POLICY_LABEL),
            "{:?}",
            task.labels()
        );
        assert_eq!(
            task.annotations()
                .get("team.example.com/owner")
                .map(String::as_str),
            Some("ai-platform")
        );
        op.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ceiling_can_require_a_user_namespace_for_sys_admin() {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let ceiling = Ceiling {
            user_namespace_required_for: ["SYS_ADMIN".to_owned()].into(),
            ..test_ceiling()
        };
        let op = Operator::start_with(&client, &ns, ceiling).await;
        let name = unique_name("userns-required");
        op.create(&modelcar_policy(&ns, &name, &ns)).await;
        let refused = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            |p| {
                p.condition("Ready").is_some_and(|c| {
                    c.status == "False" && c.observed_generation == p.metadata.generation
                })
            },
        )
        .await;
        let ready = refused.condition("Ready").unwrap();
        println!("{}: {}", ready.reason, ready.message);
        assert_eq!(ready.reason, "UserNamespaceRequired");
        for mode in [
            "PodUserNamespace",
            "CRIOUserNamespace",
            "SYS_ADMIN",
            "spec.isolation",
        ] {
            assert!(ready.message.contains(mode), "{}", ready.message);
        }
        // Refused means nothing granted.
        let sccs = Api::<SecurityContextConstraints>::all(client.clone());
        assert!(sccs.get_opt(&owned_name(&name)).await.unwrap().is_none());
        assert!(
            !task(&client, &ns)
                .await
                .annotations()
                .contains_key(REQUIRED_SCC_ANNOTATION)
        );

        // Choosing a user-namespace mode is what the message says to do.
        set_isolation(&client, &name, Isolation::PodUserNamespace).await;
        let policy = self::ready(&client, &name).await;
        assert_mode(&client, &policy, Isolation::PodUserNamespace).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

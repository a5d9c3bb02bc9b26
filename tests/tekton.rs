//! The last mile, with the real parts: Tekton's own controller turns a
//! PipelineRun of the ModelCar pipeline (`config/samples/tekton/`) into
//! TaskRuns and pods, as `openshift-pipelines/tekton-pipelines-controller`
//! (Tekton's published RBAC, no SCC of its own), and OpenShift's SCC
//! admission plugin (the local control plane's pod webhook) decides each
//! pod. Nothing here creates a pod: every pod is Tekton's.
//!
//! What this answers for a platform team: when my pipeline runs, which pod
//! gets which SCC, and what does the pipeline owner see when one is refused.

use std::time::{Duration, Instant};

use buildpolicy_api::conditions::{self, reason};
use buildpolicy_api::keys::{
    ADMITTED_SCC_ANNOTATION, CRIO_USERNS_MODE_ANNOTATION, CRIO_USERNS_MODE_VALUE,
    OPENSHIFT_BUILDER_ANNOTATION, REQUIRED_SCC_ANNOTATION,
};
use buildpolicy_api::{BuildPolicy, Isolation, Task};
use buildpolicy_policy::task_check::HOST_USERS_FIX;
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scc_admission::{NO_SCC, webhook_forgets};
use buildpolicy_test_support::scene::{
    MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, policy_events,
};
use buildpolicy_test_support::tekton::{
    BUILD_PIPELINE_TASK, UNPRIVILEGED_PIPELINE_TASKS, has_pod, modelcar_pipeline_run,
    pipeline_run_failure, pipeline_scene, pods_of, ready_modelcar_policy, refused, start, task_run,
    task_run_of, wait_for_confinement,
};
use buildpolicy_test_support::{exposition, wait_for, wait_for_deletion, with_temp_ns};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
/// What OpenShift's restricted-v2 admits: every unprivileged ModelCar pod.
const RESTRICTED: &str = "restricted-v2";

fn scc_of(pod: &Pod) -> &str {
    pod.annotations()
        .get(ADMITTED_SCC_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("<none>")
}

/// Waits for the policy's `BuildsAdmitted` condition to satisfy `want`.
async fn builds_admitted(
    client: &Client,
    name: &str,
    want: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition) -> bool,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    wait_for(
        &Api::<BuildPolicy>::all(client.clone()),
        name,
        TIMEOUT,
        |p: &BuildPolicy| p.condition(conditions::BUILDS_ADMITTED).is_some_and(&want),
    )
    .await
    .condition(conditions::BUILDS_ADMITTED)
    .cloned()
    .expect("the condition was just seen")
}

/// The whole pipeline in one mode: the build pod under the generated SCC,
/// the three others under restricted-v2, as the same service account, and
/// the policy reporting the build admitted.
async fn run_modelcar_in(isolation: Isolation) {
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, scc) = ready_modelcar_policy(&op, &client, &ns, isolation, &[], |_| true).await;

        let host_users = (isolation == Isolation::PodUserNamespace).then_some(false);
        let created = Instant::now();
        let run = start(&client, &ns, &modelcar_pipeline_run(host_users)).await;
        let pods = pods_of(&client, &ns, &run, 4).await;
        eprintln!(
            "[measure] {isolation}: 4 pods admitted {:.2}s after PipelineRun {run} was created",
            created.elapsed().as_secs_f64()
        );

        let build = &pods[BUILD_PIPELINE_TASK];
        assert_eq!(scc_of(build), scc, "{isolation}: the build pod's SCC");
        assert_eq!(
            build
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref()),
            Some(MODELCAR_SERVICE_ACCOUNT)
        );
        for task in UNPRIVILEGED_PIPELINE_TASKS {
            assert_eq!(
                scc_of(&pods[task]),
                RESTRICTED,
                "{isolation}: the {task} pod's SCC"
            );
            assert!(
                !pods[task]
                    .annotations()
                    .contains_key(REQUIRED_SCC_ANNOTATION),
                "{isolation}: {task} is not pinned"
            );
        }
        match isolation {
            Isolation::PodUserNamespace => assert_eq!(
                build.spec.as_ref().and_then(|s| s.host_users),
                Some(false),
                "the build pod runs in its own user namespace"
            ),
            Isolation::CrioUserNamespace => {
                let a = build.annotations();
                assert_eq!(
                    a.get(CRIO_USERNS_MODE_ANNOTATION).map(String::as_str),
                    Some(CRIO_USERNS_MODE_VALUE)
                );
                assert_eq!(
                    a.get(OPENSHIFT_BUILDER_ANNOTATION).map(String::as_str),
                    Some("true")
                );
            }
            Isolation::HostUserNamespace => {
                assert!(
                    !build
                        .annotations()
                        .contains_key(CRIO_USERNS_MODE_ANNOTATION)
                );
            }
        }

        let admitted = builds_admitted(&client, &name, |c| c.status == "True").await;
        assert_eq!(admitted.reason, reason::PODS_ADMITTED);
        let build_run = task_run_of(&client, &ns, &run, BUILD_PIPELINE_TASK, has_pod).await;
        assert!(
            admitted.message.contains(&build_run.name_any()),
            "names the TaskRun: {}",
            admitted.message
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_user_namespace_pipeline_pods_get_the_generated_scc_only_for_the_build() {
    run_modelcar_in(Isolation::HostUserNamespace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_user_namespace_pipeline_with_host_users_false_is_admitted_under_the_pod_level_scc() {
    run_modelcar_in(Isolation::PodUserNamespace).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crio_user_namespace_build_pod_carries_crios_userns_annotation() {
    run_modelcar_in(Isolation::CrioUserNamespace).await;
}

/// A PodUserNamespace policy, and a PipelineRun that forgot
/// `hostUsers: false`: OpenShift refuses the build pod, Tekton fails the
/// TaskRun, and the policy tells the pipeline owner which run and what to
/// set, with an event and a counter for SREs.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_refused_for_want_of_host_users_false_is_reported_on_the_policy() {
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, _) =
            ready_modelcar_policy(&op, &client, &ns, Isolation::PodUserNamespace, &[], |_| {
                true
            })
            .await;
        let refused_before = refusals(&op);

        let run = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let build = task_run_of(&client, &ns, &run, BUILD_PIPELINE_TASK, refused).await;
        let pods = pods_of(&client, &ns, &run, 3).await;
        assert!(
            !pods.contains_key(BUILD_PIPELINE_TASK),
            "the build pod was refused"
        );

        let condition = builds_admitted(&client, &name, |c| c.status == "False").await;
        assert_eq!(condition.reason, reason::POD_REFUSED);
        let message = &condition.message;
        assert!(
            message.contains(&format!("TaskRun {}", build.name_any())),
            "{message}"
        );
        assert!(message.contains(NO_SCC), "OpenShift's words: {message}");
        assert!(message.contains(HOST_USERS_FIX), "the fix: {message}");
        assert!(!message.contains('\n'));
        // Advisory: the grant itself is in place.
        let policy = Api::<BuildPolicy>::all(client.clone())
            .get(&name)
            .await
            .unwrap();
        assert_eq!(
            policy
                .condition(conditions::READY)
                .map(|c| c.status.as_str()),
            Some("True")
        );

        let events = policy_events(&client, &name).await;
        assert!(
            events
                .iter()
                .any(|(_, r, note)| r == reason::POD_REFUSED && note.contains(&build.name_any())),
            "an event names the TaskRun: {events:?}"
        );
        assert_eq!(
            refusals(&op),
            refused_before + 1.0,
            "buildpolicy_builds_refused_total"
        );

        // The fix: the next run with hostUsers: false clears the condition.
        let fixed = start(&client, &ns, &modelcar_pipeline_run(Some(false))).await;
        pods_of(&client, &ns, &fixed, 4).await;
        let condition = builds_admitted(&client, &name, |c| c.status == "True").await;
        assert_eq!(condition.reason, reason::PODS_ADMITTED);
        op.delete_policies_and_stop().await;
    })
    .await;
}

fn refusals(op: &Operator) -> f64 {
    exposition::metric_sum(
        &op.metrics.encode(),
        "buildpolicy_builds_refused_total",
        &[],
    )
    .unwrap_or_default()
}

/// Revocation through the real pipeline: once the policy is deleted, the
/// Task is unpinned and the next run's build pod is refused with
/// OpenShift's message, while the other three still run.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_policy_is_deleted_the_next_build_pod_is_refused() {
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, scc) =
            ready_modelcar_policy(&op, &client, &ns, Isolation::HostUserNamespace, &[], |_| {
                true
            })
            .await;
        let first = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        assert_eq!(
            scc_of(&pods_of(&client, &ns, &first, 4).await[BUILD_PIPELINE_TASK]),
            scc
        );

        let policies = Api::<BuildPolicy>::all(client.clone());
        policies
            .delete(&name, &DeleteParams::default())
            .await
            .expect("deleting the policy");
        wait_for_deletion(&policies, &name, TIMEOUT).await;
        wait_for(
            &Api::<Task>::namespaced(client.clone(), &ns),
            MODELCAR_BUILD_TASK,
            TIMEOUT,
            |t: &Task| !t.annotations().contains_key(REQUIRED_SCC_ANNOTATION),
        )
        .await;
        webhook_forgets(&client, &scc).await;

        let second = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let build = task_run_of(&client, &ns, &second, BUILD_PIPELINE_TASK, refused).await;
        let message = build.pod_refused().unwrap_or_default();
        assert!(message.contains(NO_SCC), "OpenShift's refusal: {message}");
        assert!(
            message.contains("SYS_ADMIN"),
            "names the capability: {message}"
        );
        let pods = pods_of(&client, &ns, &second, 3).await;
        for task in UNPRIVILEGED_PIPELINE_TASKS {
            assert_eq!(scc_of(&pods[task]), RESTRICTED);
        }
        op.stop().await;
    })
    .await;
}

/// Tekton copies a Task's metadata into a TaskRun once, on its first
/// reconcile, and creates the pod in the same pass: a run started before
/// the policy pinned its Task never gets the pin. Its build pod is refused
/// and stays refused; the next run, after the policy is Ready, is admitted.
/// The refused run predates the pin, so it carries no policy label and the
/// policy does not report it.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_before_the_task_was_pinned_keeps_its_refusal_and_the_next_run_is_admitted() {
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let early = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let refused_run = task_run_of(&client, &ns, &early, BUILD_PIPELINE_TASK, refused).await;

        let op = Operator::start(&client, &ns).await;
        let (name, scc) =
            ready_modelcar_policy(&op, &client, &ns, Isolation::HostUserNamespace, &[], |_| {
                true
            })
            .await;
        let again = task_run(&client, &ns, &refused_run.name_any(), |_| true).await;
        assert!(refused(&again), "a failed TaskRun is not retried");
        assert!(
            !again
                .labels()
                .contains_key(buildpolicy_api::keys::POLICY_LABEL),
            "its metadata was copied before the pin"
        );

        let later = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        assert_eq!(
            scc_of(&pods_of(&client, &ns, &later, 4).await[BUILD_PIPELINE_TASK]),
            scc
        );
        let condition = builds_admitted(&client, &name, |c| c.status == "True").await;
        assert!(
            !condition.message.contains(&refused_run.name_any()),
            "{}",
            condition.message
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// A pipeline task that embeds its `taskSpec` runs no listed Task. The
/// service account may use the generated SCC and no default SCC admits
/// SYS_ADMIN, so SCC admission alone would admit its pod under it, pin or
/// no pin; the policy's confinement refuses the TaskRun Tekton makes for it
/// (a TaskRun as the build service account must name a Task of the
/// namespace), and the PipelineRun fails with the policy's message
/// (tests/confinement.rs has every way around the listed Tasks, and what
/// Warn and Off do).
#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_task_spec_is_refused_pin_or_no_pin() {
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, scc) = ready_modelcar_policy(&op, &client, &ns, Isolation::HostUserNamespace, &[], |_| true).await;
        wait_for_confinement(&client, &ns, MODELCAR_SERVICE_ACCOUNT, &scc).await;
        let task = Api::<Task>::namespaced(client.clone(), &ns)
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the build Task");
        let spec = task.spec.clone().expect("a Task spec");

        let embedded = |pin: Option<&str>| -> DynamicObject {
            let metadata = match pin {
                Some(scc) => json!({"annotations": {REQUIRED_SCC_ANNOTATION: scc}}),
                None => json!({}),
            };
            serde_json::from_value(json!({
                "apiVersion": "tekton.dev/v1",
                "kind": "PipelineRun",
                "metadata": {"generateName": "embedded-"},
                "spec": {
                    "pipelineSpec": {"tasks": [{
                        "name": BUILD_PIPELINE_TASK,
                        "taskSpec": {"metadata": metadata, "params": spec["params"], "volumes": spec["volumes"], "steps": spec["steps"]},
                        "params": [{"name": "IMAGE", "value": "registry.example.com/modelcar:embedded"}]
                    }]},
                    "taskRunTemplate": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT}
                }
            }))
            .expect("a PipelineRun")
        };

        for pin in [None, Some(scc.as_str())] {
            let run = start(&client, &ns, &embedded(pin)).await;
            let message = pipeline_run_failure(&client, &ns, &run).await;
            assert!(
                message.contains(&format!("BuildPolicy {name}: a TaskRun in {ns}")),
                "embedded taskSpec, pin copied: {}: {message}",
                pin.is_some()
            );
        }
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Tekton's controller outlives a crash of the API server and etcd: after
/// `hack/local-cluster.sh restart` (SIGKILL, back on the same ports and
/// data) a new run still becomes TaskRuns and pods. It restarts the shared
/// control plane, so it is ignored in the parallel run and `hack/test.sh`
/// runs it alone, after every other test.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the shared control plane: hack/test.sh runs it alone, after the other tests"]
async fn tekton_turns_runs_into_pods_after_the_api_server_restarts() {
    let status = std::process::Command::new(
        buildpolicy_test_support::repo_root().join("hack/local-cluster.sh"),
    )
    .arg("restart")
    .status()
    .expect("running hack/local-cluster.sh restart");
    assert!(status.success(), "hack/local-cluster.sh restart failed");
    with_temp_ns(|client, ns| async move {
        pipeline_scene(&client, &ns).await;
        let run = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let pods = pods_of(&client, &ns, &run, 3).await;
        for task in UNPRIVILEGED_PIPELINE_TASKS {
            assert_eq!(scc_of(&pods[task]), RESTRICTED);
        }
        // No policy here: the build pod asks SYS_ADMIN and is refused.
        task_run_of(&client, &ns, &run, BUILD_PIPELINE_TASK, refused).await;
    })
    .await;
}

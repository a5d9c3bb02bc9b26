//! Confinement: the generated SCC is admitted only for the pods that the
//! pipeline controller creates for the policy's listed Tasks.
//!
//! Attacks come from a namespace editor (a service account that may create
//! pods, TaskRuns and PipelineRuns in the namespace, and `use` no SCC of its
//! own): without confinement, every one of them gets the SCC, because SCC
//! admission checks `use` for the pod's service account. Pods are decided by
//! OpenShift's own SCC admission plugin (the pod webhook) and then by the
//! API server's ValidatingAdmissionPolicy the operator binds; pods of
//! TaskRuns are created by Tekton's own controller.

use std::time::Duration;

use buildpolicy_api::conditions::{self, reason};
use buildpolicy_api::keys::{ADMITTED_SCC_ANNOTATION, REQUIRED_SCC_ANNOTATION};
use buildpolicy_api::{BuildPolicy, Isolation, Task};
use buildpolicy_policy::Ceiling;
use buildpolicy_policy::ceiling::{ConfinementMode, DEFAULT_PIPELINE_CONTROLLER};
use buildpolicy_policy::digest::task_spec_digest;
use buildpolicy_test_support::operator::{Operator, admission_entry, test_ceiling};
use buildpolicy_test_support::scene::policy_events;
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, buildah_pod,
    create_service_account,
};
use buildpolicy_test_support::tekton::{
    BUILD_PIPELINE_TASK, UNPRIVILEGED_PIPELINE_TASKS, has_pod, modelcar_pipeline_run,
    pipeline_run_failure, pipeline_scene, pods_of, ready_modelcar_policy, start, task_run,
    task_run_of, wait_for_confinement,
};
use buildpolicy_test_support::{
    Said, eventually, feed, kubectl, unique_name, wait_for, wait_for_deletion, with_temp_ns,
};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const EDITOR: &str = "editor";

fn ceiling(mode: ConfinementMode) -> Ceiling {
    let mut ceiling = test_ceiling();
    ceiling.confinement.mode = mode;
    ceiling
}

/// The build service account, the ModelCar Tasks and Pipeline, and an
/// editor who may create pods, TaskRuns and PipelineRuns in `ns`.
async fn scene(client: &Client, ns: &str) {
    pipeline_scene(client, ns).await;
    create_service_account(client, ns, EDITOR).await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": EDITOR},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]},
            {"apiGroups": ["tekton.dev"], "resources": ["taskruns", "pipelineruns"], "verbs": ["create", "get", "list"]},
            // OpenShift's namespace `edit` includes Tekton Tasks.
            {"apiGroups": ["tekton.dev"], "resources": ["tasks"], "verbs": ["create", "get", "list", "update", "patch", "delete"]},
        ]
    }))
    .expect("a Role");
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the editor's Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": EDITOR},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EDITOR},
        "subjects": [{"kind": "ServiceAccount", "name": EDITOR, "namespace": ns}]
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the editor's RoleBinding");
}

/// Until the policy's `Confined` condition has `status`, and `reason` when
/// given.
fn confined(status: &'static str, reason: Option<&'static str>) -> impl Fn(&BuildPolicy) -> bool {
    move |p| {
        p.condition(conditions::CONFINED)
            .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
    }
}

/// `kubectl --as <ns>/editor create [--dry-run=server] -f -` of `object`.
fn as_editor(ns: &str, object: &Value, dry_run: bool) -> Said {
    create_as(
        &format!("system:serviceaccount:{ns}:{EDITOR}"),
        ns,
        object,
        dry_run,
    )
}

/// `kubectl --as <user> -n <ns> create [--dry-run=server] -f -` of `object`.
fn create_as(user: &str, ns: &str, object: &Value, dry_run: bool) -> Said {
    let mut command = kubectl();
    command.args(["--as", user, "-n", ns, "create", "-o", "json", "-f", "-"]);
    if dry_run {
        command.arg("--dry-run=server");
    }
    feed(&mut command, object)
}

/// An embedded Buildah step: what a TaskRun or pipeline task without the
/// listed Task would run.
fn embedded_task_spec(pin: Option<&str>) -> Value {
    let metadata = match pin {
        Some(scc) => json!({"annotations": {REQUIRED_SCC_ANNOTATION: scc}}),
        None => json!({}),
    };
    json!({
        "metadata": metadata,
        "steps": [{
            "name": "build",
            "image": "quay.io/buildah/stable:latest",
            "script": "unshare -m id",
            "securityContext": {"capabilities": {"add": BUILDAH_CAPABILITIES}}
        }]
    })
}

/// A TaskRun forging the listed build Task's label on an embedded spec.
fn forged_task_run(scc: &str) -> Value {
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"generateName": "forged-", "labels": {"tekton.dev/task": MODELCAR_BUILD_TASK}},
        "spec": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT, "taskSpec": embedded_task_spec(Some(scc))}
    })
}

/// A TaskRun with an embedded spec carrying the pin.
fn embedded_task_run(scc: &str) -> Value {
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"generateName": "embedded-"},
        "spec": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT, "taskSpec": embedded_task_spec(Some(scc))}
    })
}

/// The unlisted Task `not-listed`, carrying a copy of the pin.
async fn create_unlisted_task(client: &Client, ns: &str, scc: &str) {
    let copy: Task = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": {"name": "not-listed", "annotations": {REQUIRED_SCC_ANNOTATION: scc}},
        "spec": embedded_task_spec(None),
    }))
    .expect("a Task");
    Api::<Task>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &copy)
        .await
        .expect("creating the unlisted Task");
}

/// A TaskRun of the unlisted Task.
fn unlisted_task_run() -> Value {
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"generateName": "unlisted-"},
        "spec": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT, "taskRef": {"name": "not-listed"}}
    })
}

/// A PipelineRun whose one pipeline task embeds its spec with the pin.
fn embedded_pipeline_run(scc: &str) -> Value {
    json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"generateName": "embedded-pipeline-"},
        "spec": {
            "pipelineSpec": {"tasks": [{"name": BUILD_PIPELINE_TASK, "taskSpec": embedded_task_spec(Some(scc))}]},
            "taskRunTemplate": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT}
        }
    })
}

/// The SCC OpenShift admitted the pod of TaskRun `run` under, once Tekton
/// created it.
async fn scc_of_task_run_pod(client: &Client, ns: &str, run: &str) -> String {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns);
    let selector = format!("tekton.dev/taskRun={run}");
    eventually(
        &format!("the pod of TaskRun {ns}/{run}"),
        TIMEOUT,
        || async {
            let list = pods
                .list(&kube::api::ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items
                .first()
                .and_then(|p| p.annotations().get(ADMITTED_SCC_ANNOTATION).cloned())
        },
    )
    .await
}

/// Without enforcement (Warn, Off) every way around the listed Tasks gets
/// the SCC; with Warn, what the editor submits itself comes back with the
/// policy's warning (the pods Tekton creates warn Tekton, not the editor).
async fn every_attack_gets_the_scc(client: &Client, ns: &str, name: &str, scc: &str, warned: bool) {
    for (what, object) in [
        ("pinned pod", buildah_pod(Some(scc))),
        ("forged TaskRun label", forged_task_run(scc)),
    ] {
        let said = as_editor(ns, &object, true);
        assert!(said.admitted, "{what}: {}", said.all());
        assert_eq!(
            said.stderr.contains("Warning:"),
            warned,
            "{what}: {}",
            said.stderr
        );
        if warned {
            assert!(names_policy(&said.stderr, name), "{what}: {}", said.stderr);
        }
    }
    let embedded = as_editor(ns, &embedded_task_run(scc), false).name();
    assert_eq!(
        scc_of_task_run_pod(client, ns, &embedded).await,
        scc,
        "embedded taskSpec"
    );
    let unlisted = as_editor(ns, &unlisted_task_run(), false).name();
    assert_eq!(
        scc_of_task_run_pod(client, ns, &unlisted).await,
        scc,
        "unlisted Task"
    );
    let pipeline = as_editor(ns, &embedded_pipeline_run(scc), false).name();
    let pods = pods_of(client, ns, &pipeline, 1).await;
    assert_eq!(
        pods[BUILD_PIPELINE_TASK]
            .annotations()
            .get(ADMITTED_SCC_ANNOTATION)
            .map(String::as_str),
        Some(scc),
        "embedded pipeline task"
    );
}

/// `buildpolicy_drift_corrections_total` of the in-process operator for `kind`.
fn drift_corrections(op: &Operator, kind: &str) -> f64 {
    buildpolicy_test_support::exposition::metric_sum(
        &op.metrics.encode(),
        "buildpolicy_drift_corrections_total",
        &[("kind", kind)],
    )
    .unwrap_or_default()
}

fn names_policy(message: &str, policy: &str) -> bool {
    message.contains(&format!("BuildPolicy {policy}"))
}

/// Tekton's message for a TaskRun that failed because its pod was refused.
fn failure(run: &buildpolicy_api::TaskRun) -> Option<String> {
    run.succeeded()
        .filter(|c| c.status == "False")
        .and_then(|c| c.message.clone())
}

/// Enforce (the default): every attack is refused with a message naming the
/// policy; the pipeline's own pods are admitted as before.
#[tokio::test(flavor = "multi_thread")]
async fn enforce_refuses_each_way_around_the_listed_tasks_and_admits_the_pipeline() {
    with_temp_ns(|client, ns| async move {
        scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, scc) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &[],
            confined("True", Some(reason::ENFORCED)),
        )
        .await;

        // 1. A pod as the build service account, without and with the pin.
        // The API server's admission-policy informer learns the binding
        // moments after it is created: wait for the refusal, then expect it.
        let refused = eventually("the binding to be enforced", TIMEOUT, || async {
            let said = as_editor(&ns, &buildah_pod(None), true);
            (!said.admitted).then(|| said.all())
        })
        .await;
        assert!(names_policy(&refused, &name), "unpinned: {refused}");
        assert!(refused.contains("runs no Tekton Task"), "{refused}");
        let said = as_editor(&ns, &buildah_pod(Some(&scc)), true).all();
        assert!(names_policy(&said, &name), "pinned: {said}");

        // 2. A TaskRun with an embedded taskSpec, the pin and a forged
        // tekton.dev/task label of the listed Task: refused at creation.
        let forged = forged_task_run(&scc);
        let said = as_editor(&ns, &forged, false);
        assert!(!said.admitted, "forged label: admitted: {}", said.all());
        let said = said.all();
        assert!(
            names_policy(&said, &name) && said.contains("spec.taskRef.name"),
            "{said}"
        );
        // Other namespaces are unaffected: the binding selects the policy's
        // namespace only, so the same TaskRun, written by an editor of a
        // namespace no policy names, is admitted and nothing names the policy.
        let (policy, pin) = (name.clone(), scc.clone());
        with_temp_ns(|client, other| async move {
            scene(&client, &other).await;
            let said = as_editor(&other, &forged_task_run(&pin), true);
            assert!(said.admitted, "other namespace: refused: {}", said.all());
            assert!(!names_policy(&said.all(), &policy), "{}", said.all());
        })
        .await;

        // Without the forged label the TaskRun is refused at creation too:
        // it runs as the build service account and names no Task of the
        // namespace.
        let said = as_editor(&ns, &embedded_task_run(&scc), false);
        assert!(
            !said.admitted,
            "embedded taskSpec: admitted: {}",
            said.all()
        );
        let said = said.all();
        assert!(
            names_policy(&said, &name)
                && said.contains("must reference a Task of")
                && said.contains("taskRunSpecs[].serviceAccountName"),
            "embedded taskSpec: {said}"
        );

        // 3. A TaskRun of an unlisted Task that carries the pin.
        create_unlisted_task(&client, &ns, &scc).await;
        let unlisted = unlisted_task_run();
        let run_name = as_editor(&ns, &unlisted, false).name();
        let run = task_run(&client, &ns, &run_name, |r| failure(r).is_some()).await;
        let message = failure(&run).unwrap_or_default();
        assert!(
            names_policy(&message, &name) && message.contains("runs Task not-listed"),
            "unlisted Task: {message}"
        );

        // 4. A PipelineRun whose pipeline task embeds its taskSpec and sets
        // the pin in its metadata: Tekton's TaskRun for it is refused, and
        // the PipelineRun fails saying so.
        let pipeline_run = embedded_pipeline_run(&scc);
        let pipeline_run = as_editor(&ns, &pipeline_run, false).name();
        let message = pipeline_run_failure(&client, &ns, &pipeline_run).await;
        assert!(
            names_policy(&message, &name),
            "embedded pipeline task: {message}"
        );
        assert_no_pod_under(&client, &ns, &scc, "before the pipeline").await;

        // 5. The pipeline itself, started by the editor: the build pod under
        // the generated SCC, the service account's unpinned pods under
        // restricted-v2, as without confinement.
        let run = as_editor(
            &ns,
            &serde_json::to_value(modelcar_pipeline_run(None)).unwrap(),
            false,
        )
        .name();
        let pods = pods_of(&client, &ns, &run, 4).await;
        let scc_of = |task: &str| {
            pods[task]
                .annotations()
                .get(ADMITTED_SCC_ANNOTATION)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(scc_of(BUILD_PIPELINE_TASK), scc);
        for task in UNPRIVILEGED_PIPELINE_TASKS {
            assert_eq!(scc_of(task), "restricted-v2", "{task}");
        }
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Warn: the same pod is admitted under the generated SCC, with the
/// policy's warning; Off: admitted, no binding, nothing said. `Confined`
/// tells the pipeline owner which is in force.
#[tokio::test(flavor = "multi_thread")]
async fn warn_admits_with_a_warning_and_off_binds_nothing() {
    with_temp_ns(|client, ns| async move {
        scene(&client, &ns).await;

        let op = Operator::start_with(&client, &ns, ceiling(ConfinementMode::Warn)).await;
        let (name, scc) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &[],
            confined("False", Some(reason::WARN_ONLY)),
        )
        .await;
        let said = eventually("the Warn binding to be in force", TIMEOUT, || async {
            let said = as_editor(&ns, &buildah_pod(None), true);
            (said.admitted && said.stderr.contains("Warning:")).then_some(said)
        })
        .await;
        assert!(names_policy(&said.stderr, &name), "{}", said.stderr);
        let pod = said.created();
        assert_eq!(
            pod["metadata"]["annotations"][ADMITTED_SCC_ANNOTATION],
            scc.as_str()
        );
        create_unlisted_task(&client, &ns, &scc).await;
        every_attack_gets_the_scc(&client, &ns, &name, &scc, true).await;
        op.delete_policies_and_stop().await;
        // Its rules leave the API server's informer a moment after they
        // are deleted.
        eventually("the Warn policy's rules to be gone", TIMEOUT, || async {
            let said = as_editor(&ns, &forged_task_run(&scc), true);
            (said.admitted && !said.stderr.contains("Warning:")).then_some(())
        })
        .await;

        let op = Operator::start_with(&client, &ns, ceiling(ConfinementMode::Off)).await;
        let (name, scc) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &[],
            confined("False", Some(reason::CONFINEMENT_OFF)),
        )
        .await;
        assert!(admission_entry(&client, &name).await.is_none());
        let said = as_editor(&ns, &buildah_pod(None), true);
        assert!(
            said.admitted && !said.stderr.contains("Warning:"),
            "{}",
            said.all()
        );
        let pod = said.created();
        assert_eq!(
            pod["metadata"]["annotations"][ADMITTED_SCC_ANNOTATION],
            scc.as_str()
        );
        // The unlisted Task still carries the first policy's pin: copy the
        // second's.
        Api::<Task>::namespaced(client.clone(), &ns)
            .patch(
                "not-listed",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {REQUIRED_SCC_ANNOTATION: scc}}})),
            )
            .await
            .expect("copying the pin");
        every_attack_gets_the_scc(&client, &ns, &name, &scc, false).await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// A Task dropped from `spec.tasks` loses its pin and its place in the
/// binding: its next pod is refused. Deleting the policy deletes its
/// binding; switching the ceiling to Off deletes it too.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_task_refuses_its_pods_and_deleting_the_policy_removes_its_binding() {
    with_temp_ns(|client, ns| async move {
        scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, scc) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &["download-model"],
            confined("True", None),
        )
        .await;
        let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
        let held = admission_entry(&client, &name)
            .await
            .expect("the policy's entry in the admission rules");
        assert!(held.binding.is_some(), "{held:?}");
        assert_eq!(held.entry.listed, held.entry.granted);
        let binding = held.shard;

        let first = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let pods = pods_of(&client, &ns, &first, 4).await;
        assert_eq!(
            pods["download-model"]
                .annotations()
                .get(ADMITTED_SCC_ANNOTATION),
            Some(&scc),
            "a listed, pinned Task"
        );

        let policies = Api::<BuildPolicy>::all(client.clone());
        policies
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"tasks": ["download-model"]}})),
            )
            .await
            .expect("dropping the build Task");
        wait_for(
            &Api::<Task>::namespaced(client.clone(), &ns),
            MODELCAR_BUILD_TASK,
            TIMEOUT,
            |t: &Task| !t.annotations().contains_key(REQUIRED_SCC_ANNOTATION),
        )
        .await;
        wait_for(&policies, &name, TIMEOUT, |p: &BuildPolicy| {
            p.condition(conditions::CONFINED)
                .is_some_and(|c| c.observed_generation == p.metadata.generation)
        })
        .await;
        controller_pod_is(&ns, &scc, false).await;
        let second = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let run = task_run_of(&client, &ns, &second, BUILD_PIPELINE_TASK, |r| {
            failure(r).is_some()
        })
        .await;
        let message = failure(&run).unwrap_or_default();
        assert!(
            names_policy(&message, &name),
            "the dropped Task's pod: {message}"
        );

        // A binding deleted by hand comes back.
        let before = bindings.get(&binding).await.expect("the binding").uid();
        bindings
            .delete(&binding, &DeleteParams::default())
            .await
            .expect("deleting the binding by hand");
        eventually("the deleted binding to be recreated", TIMEOUT, || async {
            bindings
                .get_opt(&binding)
                .await
                .ok()
                .flatten()
                .filter(|b| b.uid() != before)
        })
        .await;

        op.set_ceiling(ceiling(ConfinementMode::Off));
        wait_for_deletion(&bindings, &binding, TIMEOUT).await;
        op.set_ceiling(test_ceiling());
        wait_for(&bindings, &binding, TIMEOUT, |_| true).await;

        policies
            .delete(&name, &DeleteParams::default())
            .await
            .expect("deleting the policy");
        wait_for_deletion(&bindings, &binding, TIMEOUT).await;
        op.stop().await;
    })
    .await;
}

/// The policy's admission policy is repaired like any granted object: a
/// hand edit that would make it fail open (`failurePolicy: Ignore`) is
/// reverted, with a `DriftCorrected` Warning and the drift counter.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_edit_of_the_admission_policy_is_reverted_and_reported() {
    with_temp_ns(|client, ns| async move {
        scene(&client, &ns).await;
        let op = Operator::start(&client, &ns).await;
        let (name, _) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &[],
            confined("True", None),
        )
        .await;
        let admission_policy = admission_entry(&client, &name)
            .await
            .expect("the policy's entry in the admission rules")
            .shard;
        let kind = "ValidatingAdmissionPolicy";
        let before = drift_corrections(&op, kind);
        let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
        policies
            .patch(
                &admission_policy,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"failurePolicy": "Ignore"}})),
            )
            .await
            .expect("editing the admission policy by hand");
        wait_for(
            &policies,
            &admission_policy,
            TIMEOUT,
            |p: &ValidatingAdmissionPolicy| {
                p.spec.as_ref().and_then(|s| s.failure_policy.as_deref()) == Some("Fail")
            },
        )
        .await;
        let event = eventually("the repair's Warning", TIMEOUT, || async {
            policy_events(&client, &name)
                .await
                .into_iter()
                .find(|(type_, reason, note)| {
                    type_ == "Warning" && reason == "DriftCorrected" && note.contains(kind)
                })
        })
        .await;
        assert!(event.2.contains(&admission_policy), "{event:?}");
        assert!(drift_corrections(&op, kind) > before);
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// An API server without ValidatingAdmissionPolicy (before Kubernetes 1.30
/// / OpenShift 4.17): the policy is granted as before, no binding is made,
/// and `Confined` says the grant is the service account's.
#[tokio::test(flavor = "multi_thread")]
async fn without_admission_policies_the_policy_says_it_is_not_confined() {
    with_temp_ns(|client, ns| async move {
        scene(&client, &ns).await;
        let op = Operator::start_with_config(&client, &ns, |config| {
            config.admission_policies_served = false;
        })
        .await;
        let (name, _) = ready_modelcar_policy(
            &op,
            &client,
            &ns,
            Isolation::HostUserNamespace,
            &[],
            confined("False", Some(reason::CONFINEMENT_UNSUPPORTED)),
        )
        .await;
        assert!(admission_entry(&client, &name).await.is_none());
        let policy = Api::<BuildPolicy>::all(client.clone())
            .get(&name)
            .await
            .expect("the policy");
        let message = &policy
            .condition(conditions::CONFINED)
            .expect("Confined")
            .message;
        assert!(
            message.contains("not confined to the listed Tasks"),
            "{message}"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// A namespace admin cannot grant their own pods capabilities: BuildPolicy
/// is cluster-scoped, so even a Role granting every verb on buildpolicies in
/// the namespace lets its holder create none.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_role_on_buildpolicies_cannot_create_one() {
    with_temp_ns(|client, ns| async move {
        create_service_account(&client, &ns, "ns-admin").await;
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "ns-admin"},
            "rules": [{"apiGroups": ["buildpolicy.dev"], "resources": ["buildpolicies"], "verbs": ["*"]}]
        }))
        .expect("a Role");
        Api::<Role>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &role)
            .await
            .expect("creating the Role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "ns-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ns-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "ns-admin", "namespace": ns}]
        }))
        .expect("a RoleBinding");
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await
            .expect("creating the RoleBinding");
        let policy = json!({
            "apiVersion": "buildpolicy.dev/v1alpha1",
            "kind": "BuildPolicy",
            "metadata": {"name": unique_name("self-grant")},
            "spec": {"namespace": ns, "serviceAccountName": MODELCAR_SERVICE_ACCOUNT, "capabilities": ["SYS_ADMIN"], "tasks": [MODELCAR_BUILD_TASK]}
        });
        let said = create_as(&format!("system:serviceaccount:{ns}:ns-admin"), &ns, &policy, true);
        assert!(!said.admitted, "a namespace Role created a BuildPolicy");
        assert!(
            said.stderr.contains("forbidden") && said.stderr.contains("at the cluster scope"),
            "{}",
            said.stderr
        );
    })
    .await;
}

/// The scene, an operator, and a ModelCar policy whose confinement is
/// enforced and in force at the API server: (operator, policy, SCC).
async fn enforced_policy(client: &Client, ns: &str) -> (Operator, String, String) {
    scene(client, ns).await;
    let op = Operator::start(client, ns).await;
    let (name, scc) = ready_modelcar_policy(
        &op,
        client,
        ns,
        Isolation::HostUserNamespace,
        &[],
        confined("True", Some(reason::ENFORCED)),
    )
    .await;
    wait_for_confinement(client, ns, MODELCAR_SERVICE_ACCOUNT, &scc).await;
    (op, name, scc)
}

/// No pod of `ns` was admitted under `scc`.
async fn assert_no_pod_under(client: &Client, ns: &str, scc: &str, when: &str) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("listing pods");
    let under: Vec<String> = pods
        .items
        .iter()
        .filter(|p| p.annotations().get(ADMITTED_SCC_ANNOTATION) == Some(&scc.to_owned()))
        .map(|p| p.name_any())
        .collect();
    assert!(
        under.is_empty(),
        "{when}: pods admitted under {scc}: {under:?}"
    );
}

/// `kubectl --as <ns>/editor -n <ns> patch task <task> --type merge -p <patch>`.
fn editor_patches_task(ns: &str, task: &str, patch: &Value) -> Said {
    let mut command = kubectl();
    command.args([
        "--as",
        &format!("system:serviceaccount:{ns}:{EDITOR}"),
        "-n",
        ns,
        "patch",
        "task",
        task,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
    feed(&mut command, &json!({}))
}

/// Until the API server decides, for a pod of the listed build Task as
/// Tekton's controller would create it (a server-side dry run as that
/// identity), as `admitted` says: the operator's change to the admission
/// policy reaches the API server's informer a moment after it is written.
async fn controller_pod_is(ns: &str, scc: &str, admitted: bool) {
    let mut pod = buildah_pod(Some(scc));
    pod["metadata"]["labels"] = json!({"tekton.dev/task": MODELCAR_BUILD_TASK});
    let what = if admitted { "admitted" } else { "refused" };
    eventually(
        &format!("a pod of Task {MODELCAR_BUILD_TASK} from the pipeline controller to be {what}"),
        TIMEOUT,
        || async {
            let said = create_as(DEFAULT_PIPELINE_CONTROLLER, ns, &pod, true);
            (said.admitted == admitted).then_some(())
        },
    )
    .await;
}

/// The steps of `task` with a line added to the first step's script: what
/// an editor would slip into a reviewed build.
fn steps_with_an_extra_line(task: &Task) -> Value {
    let mut steps = task.spec.as_ref().expect("a Task has a spec")["steps"].clone();
    let script = steps[0]["script"].as_str().unwrap_or_default().to_owned();
    steps[0]["script"] = json!(format!("{script}\necho 'and something else'"));
    steps
}

/// Whoever edits a listed Task chooses what runs with the grant. An editor
/// of the namespace (OpenShift's `edit` includes Tasks) may not change a
/// listed Task's spec, nor delete and create it again; metadata passes.
/// With that guard off in the ceiling, a policy that carries the Task's
/// reviewed digest stops granting it the moment its content changes: the
/// pin goes, the next build pod is refused and `TasksPinned` names both
/// digests and who changed it; the reviewed content restored, the grant
/// returns without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_listed_task_changed_by_an_editor_is_refused_or_loses_its_grant() {
    with_temp_ns(|client, ns| async move {
        let (op, name, scc) = enforced_policy(&client, &ns).await;
        let tasks = Api::<Task>::namespaced(client.clone(), &ns);
        let reviewed = tasks
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the build Task");
        let edit = json!({"spec": {"steps": steps_with_an_extra_line(&reviewed)}});

        // 1. The guard (on by default): the editor's change is refused,
        // naming the policy and who may change the Task. (Tried once the
        // policy's rules are in force: an edit let through before that
        // would make every later try a change of nothing.)
        let said = editor_patches_task(&ns, MODELCAR_BUILD_TASK, &edit);
        assert!(
            !said.admitted,
            "the editor's change: admitted: {}",
            said.all()
        );
        let refused = said.all();
        assert!(
            names_policy(&refused, &name)
                && refused.contains("confinement.taskEditorGroups")
                && refused.contains("only group system:masters may"),
            "{refused}"
        );
        let said = editor_patches_task(
            &ns,
            MODELCAR_BUILD_TASK,
            &json!({"metadata": {"labels": {"team": "ml"}}}),
        );
        assert!(said.admitted, "a label on the Task: {}", said.all());
        // Deleting it stops builds and grants nothing; creating it again
        // with other content is the edit by another way, and is refused.
        let mut command = kubectl();
        command.args([
            "--as",
            &format!("system:serviceaccount:{ns}:{EDITOR}"),
            "-n",
            &ns,
            "delete",
            "task",
            MODELCAR_BUILD_TASK,
        ]);
        let deleted = feed(&mut command, &json!({}));
        assert!(deleted.admitted, "{}", deleted.all());
        let mut replacement = serde_json::to_value(&reviewed).expect("a Task as JSON");
        replacement["metadata"] = json!({"name": MODELCAR_BUILD_TASK});
        replacement["spec"]["steps"] = edit["spec"]["steps"].clone();
        let said = as_editor(&ns, &replacement, false);
        assert!(!said.admitted, "recreated by the editor: {}", said.all());
        assert!(names_policy(&said.all(), &name), "{}", said.all());
        // The platform team (here the test's cluster admin, a Task editor
        // in its ceiling) puts the reviewed Task back.
        let mut restored = serde_json::to_value(&reviewed).expect("a Task as JSON");
        restored["metadata"] = json!({"name": MODELCAR_BUILD_TASK});
        let restored: Task = serde_json::from_value(restored).expect("a Task");
        tasks
            .create(&PostParams::default(), &restored)
            .await
            .expect("restoring the build Task as a Task editor");

        // 2. The guard off, the reviewed digest in the policy.
        let digest = task_spec_digest(reviewed.spec.as_ref().expect("a spec"));
        let before = tasks
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the restored Task");
        assert_eq!(
            task_spec_digest(before.spec.as_ref().expect("a spec")),
            digest,
            "the restored Task is the reviewed one: {}",
            serde_json::to_string(&before).unwrap_or_default()
        );
        let policies = Api::<BuildPolicy>::all(client.clone());
        policies
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taskDigests": {MODELCAR_BUILD_TASK: digest}}})),
            )
            .await
            .expect("adding the reviewed digest");
        let mut open = test_ceiling();
        open.confinement.guard_task_edits = false;
        op.set_ceiling(open);
        wait_for(&policies, &name, TIMEOUT, |p: &BuildPolicy| {
            p.condition(conditions::READY).is_some_and(|c| {
                c.status == "True" && c.observed_generation == p.metadata.generation
            })
        })
        .await;
        eventually("the editor's change to be admitted", TIMEOUT, || async {
            editor_patches_task(&ns, MODELCAR_BUILD_TASK, &edit)
                .admitted
                .then_some(())
        })
        .await;
        let changed = wait_for(&policies, &name, TIMEOUT, |p: &BuildPolicy| {
            p.condition(conditions::TASKS_PINNED)
                .is_some_and(|c| c.reason == reason::TASK_CONTENT_CHANGED)
        })
        .await;
        let message = changed
            .condition(conditions::TASKS_PINNED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let live = tasks
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the edited Task");
        let live_digest = task_spec_digest(live.spec.as_ref().expect("a spec"));
        assert_ne!(live_digest, digest);
        assert!(
            message.contains(&digest)
                && message.contains(&live_digest)
                && message.contains("kubectl-patch")
                && message.contains(MODELCAR_BUILD_TASK),
            "{message}\nreviewed: {}\nlive: {}",
            serde_json::to_string(&reviewed.spec).unwrap_or_default(),
            serde_json::to_string(&live.spec).unwrap_or_default()
        );
        assert_eq!(
            changed
                .condition(conditions::READY)
                .map(|c| c.status.as_str()),
            Some("False")
        );
        wait_for(&tasks, MODELCAR_BUILD_TASK, TIMEOUT, |t: &Task| {
            !t.annotations().contains_key(REQUIRED_SCC_ANNOTATION)
        })
        .await;
        controller_pod_is(&ns, &scc, false).await;
        let run = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let build = task_run_of(&client, &ns, &run, BUILD_PIPELINE_TASK, |r| {
            failure(r).is_some()
        })
        .await;
        let message = failure(&build).unwrap_or_default();
        assert!(
            names_policy(&message, &name)
                && message.contains("differs from the digest the policy reviewed"),
            "the changed Task's pod: {message}"
        );

        // 3. The reviewed content back: granted again, no restart.
        let mut back = tasks.get(MODELCAR_BUILD_TASK).await.expect("the Task");
        back.spec = reviewed.spec.clone();
        tasks
            .replace(MODELCAR_BUILD_TASK, &PostParams::default(), &back)
            .await
            .expect("restoring the reviewed spec");
        wait_for(&policies, &name, TIMEOUT, |p: &BuildPolicy| {
            p.condition(conditions::READY)
                .is_some_and(|c| c.status == "True")
        })
        .await;
        wait_for(&tasks, MODELCAR_BUILD_TASK, TIMEOUT, |t: &Task| {
            t.annotations().get(REQUIRED_SCC_ANNOTATION) == Some(&scc)
        })
        .await;
        controller_pod_is(&ns, &scc, true).await;
        let run = start(&client, &ns, &modelcar_pipeline_run(None)).await;
        let pods = pods_of(&client, &ns, &run, 4).await;
        assert_eq!(
            pods[BUILD_PIPELINE_TASK]
                .annotations()
                .get(ADMITTED_SCC_ANNOTATION),
            Some(&scc),
            "the restored Task's pod"
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// A Task that calls itself by a listed name, fetched from another
/// namespace by Tekton's own cluster resolver (running in the local control
/// plane), carrying the pin and asking the capabilities: a TaskRun as the
/// build service account that references it is refused at creation, and so
/// is one that names no service account; inside a PipelineRun the TaskRun
/// Tekton makes for it is refused and the run fails. No pod is ever
/// admitted under the generated SCC. The same reference run as another
/// service account resolves and runs, so the resolver path is real.
#[tokio::test(flavor = "multi_thread")]
async fn a_listed_task_name_fetched_through_a_resolver_gets_no_grant() {
    with_temp_ns(|client, ns| async move {
        let (op, name, scc) = enforced_policy(&client, &ns).await;
        let (policy, build_ns) = (name.clone(), ns.clone());
        with_temp_ns(|client, scratch| async move {
            // The editor's own Task, named like the listed one.
            let lookalike: Task = serde_json::from_value(json!({
                "apiVersion": "tekton.dev/v1",
                "kind": "Task",
                "metadata": {"name": MODELCAR_BUILD_TASK, "annotations": {REQUIRED_SCC_ANNOTATION: scc}},
                "spec": embedded_task_spec(None),
            }))
            .expect("a Task");
            Api::<Task>::namespaced(client.clone(), &scratch)
                .create(&PostParams::default(), &lookalike)
                .await
                .expect("creating the look-alike Task");
            let task_ref = json!({"resolver": "cluster", "params": [
                {"name": "kind", "value": "task"},
                {"name": "name", "value": MODELCAR_BUILD_TASK},
                {"name": "namespace", "value": scratch},
            ]});
            let run_as = |account: Option<&str>| {
                let mut spec = json!({"taskRef": task_ref});
                if let Some(account) = account {
                    spec["serviceAccountName"] = json!(account);
                }
                json!({
                    "apiVersion": "tekton.dev/v1",
                    "kind": "TaskRun",
                    "metadata": {"generateName": "resolved-"},
                    "spec": spec,
                })
            };
            for (what, account) in [
                ("as the build service account", Some(MODELCAR_SERVICE_ACCOUNT)),
                ("naming no service account", None),
            ] {
                let said = as_editor(&build_ns, &run_as(account), false);
                assert!(!said.admitted, "{what}: admitted: {}", said.all());
                let said = said.all();
                assert!(
                    names_policy(&said, &policy) && said.contains("must reference a Task of"),
                    "{what}: {said}"
                );
            }
            let pipeline_run = json!({
                "apiVersion": "tekton.dev/v1",
                "kind": "PipelineRun",
                "metadata": {"generateName": "resolved-pipeline-"},
                "spec": {
                    "pipelineSpec": {"tasks": [{"name": BUILD_PIPELINE_TASK, "taskRef": task_ref}]},
                    "taskRunTemplate": {"serviceAccountName": MODELCAR_SERVICE_ACCOUNT}
                }
            });
            let pipeline_run = as_editor(&build_ns, &pipeline_run, false).name();
            let message = pipeline_run_failure(&client, &build_ns, &pipeline_run).await;
            assert!(
                names_policy(&message, &policy),
                "resolver in a PipelineRun: {message}"
            );

            // The control: as the editor's own service account the same
            // reference resolves (the fetched Task's name and pin reach the
            // pod), and SCC admission keeps the SCC from it.
            let control = as_editor(&build_ns, &run_as(Some(EDITOR)), false).name();
            let run = task_run(&client, &build_ns, &control, |r| {
                failure(r).is_some() || has_pod(r)
            })
            .await;
            let provenance = serde_json::to_value(&run).expect("a TaskRun as JSON");
            assert!(
                failure(&run).is_some_and(|m| m.contains(&scc)) || has_pod(&run),
                "the resolved TaskRun: {provenance}"
            );
            assert_no_pod_under(&client, &build_ns, &scc, "after the resolver attacks").await;
        })
        .await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Confinement has no window after an API server restart: for three
/// minutes after `hack/local-cluster.sh restart`, every 2 s, a pod forged
/// to get the SCC in the build namespace is refused by the policy, and a
/// plain pod in a namespace no policy names is admitted. It restarts the
/// shared control plane, so `hack/test.sh` runs it alone, after the others.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the shared control plane: hack/test.sh runs it alone, after the other tests"]
async fn confinement_refuses_forged_pods_right_after_an_api_server_restart() {
    with_temp_ns(|client, ns| async move {
        let (op, name, scc) = enforced_policy(&client, &ns).await;
        let (policy, build_ns) = (name.clone(), ns.clone());
        with_temp_ns(|client, other| async move {
            create_service_account(&client, &other, MODELCAR_SERVICE_ACCOUNT).await;
            let status = std::process::Command::new(
                buildpolicy_test_support::repo_root().join("hack/local-cluster.sh"),
            )
            .arg("restart")
            .status()
            .expect("running hack/local-cluster.sh restart");
            assert!(status.success(), "hack/local-cluster.sh restart failed");
            let restarted = std::time::Instant::now();
            let forged = probe_pod(Some(&scc));
            let plain = probe_pod(None);
            let mut probes = 0;
            while restarted.elapsed() < Duration::from_secs(180) {
                let next = tokio::time::Instant::now() + Duration::from_secs(2);
                let refused = dry_run_pod(&client, &build_ns, &forged).await;
                let at = restarted.elapsed().as_secs_f32();
                match refused {
                    Err(message) => assert!(
                        names_policy(&message, &policy),
                        "{at:.0} s after the restart the forged pod was refused, but not by the policy: {message}"
                    ),
                    Ok(()) => panic!("{at:.0} s after the restart the forged pod was admitted"),
                }
                if let Err(message) = dry_run_pod(&client, &other, &plain).await {
                    panic!("{at:.0} s after the restart a plain pod elsewhere was refused: {message}");
                }
                probes += 1;
                tokio::time::sleep_until(next).await;
            }
            assert!(probes >= 80, "{probes} probes in three minutes");
        })
        .await;
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// A pod as the build service account: pinned to `scc` and adding
/// Buildah's capabilities (what a forger would write), or a plain one.
fn probe_pod(scc: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
    let (annotations, security) = match scc {
        Some(scc) => (
            json!({REQUIRED_SCC_ANNOTATION: scc}),
            json!({"capabilities": {"add": BUILDAH_CAPABILITIES}}),
        ),
        None => (json!({}), json!({})),
    };
    serde_json::from_value(json!({
        "metadata": {"generateName": "probe-", "annotations": annotations},
        "spec": {
            "serviceAccountName": MODELCAR_SERVICE_ACCOUNT,
            "containers": [{
                "name": "probe",
                "image": "registry.access.redhat.com/ubi9/ubi-minimal",
                "command": ["true"],
                "securityContext": security
            }]
        }
    }))
    .expect("a pod")
}

/// Creates `pod` in `ns` as a server-side dry run; the refusal's message.
async fn dry_run_pod(
    client: &Client,
    ns: &str,
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Result<(), String> {
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .create(&params, pod)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

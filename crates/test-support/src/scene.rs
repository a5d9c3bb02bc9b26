//! The objects a build needs before a policy can grant anything: the
//! ModelCar scene of the samples (config/samples), and policies for an operator's scope.

use std::time::Duration;

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{BuildPolicy, BuildPolicySpec, Task};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::operator::SCOPE_LABEL;
use crate::wait::eventually;

/// The service account the ModelCar build runs as.
pub const MODELCAR_SERVICE_ACCOUNT: &str = "model-build-sa";
/// The Task that runs Buildah.
pub const MODELCAR_BUILD_TASK: &str = "build-and-push-v2";
/// The capabilities Buildah needs (`config/samples/modelcar-build.yaml`),
/// with `--cap-drop=KILL`: the smallest set with which every build of
/// docs/capabilities.md passes on a real node.
pub const BUILDAH_CAPABILITIES: [&str; 5] =
    ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"];

/// Creates a ServiceAccount `name` in `ns`.
///
/// # Panics
///
/// When the server refuses it.
pub async fn create_service_account(client: &Client, ns: &str, name: &str) -> ServiceAccount {
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("a ServiceAccount");
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("creating ServiceAccount {ns}/{name}: {e}"))
}

/// Creates a one-step Tekton Task `name` in `ns`, with an annotation and a
/// label of its own that a pin must leave alone.
///
/// # Panics
///
/// When the server refuses it.
pub async fn create_task(client: &Client, ns: &str, name: &str) -> Task {
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1",
        "kind": "Task",
        "metadata": {
            "name": name,
            "annotations": {"team.example.com/owner": "ai-platform"},
            "labels": {"app.kubernetes.io/part-of": "modelcar"}
        },
        "spec": {"steps": [{
            "name": "main",
            "image": "registry.access.redhat.com/ubi9/ubi-minimal",
            "script": format!("echo {name}")
        }]}
    }))
    .expect("a Task");
    Api::<Task>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &task)
        .await
        .unwrap_or_else(|e| panic!("creating Task {ns}/{name}: {e}"))
}

/// The smallest scene a policy can be Ready in: the build service account
/// `builder` and a Task `build` that runs Buildah, with `task_annotations`,
/// in `ns`.
pub async fn buildah_scene(client: &Client, ns: &str, task_annotations: serde_json::Value) {
    create_service_account(client, ns, "builder").await;
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "tekton.dev/v1", "kind": "Task",
        "metadata": {"name": "build", "annotations": task_annotations},
        "spec": {"steps": [{"name": "build", "image": "quay.io/buildah/stable", "script": "buildah bud ."}]}
    }))
    .expect("a Task");
    Api::<Task>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &task)
        .await
        .unwrap_or_else(|e| panic!("creating Task {ns}/build: {e}"));
}

/// The ModelCar build's service account and Task in `ns`.
pub async fn modelcar_scene(client: &Client, ns: &str) {
    create_service_account(client, ns, MODELCAR_SERVICE_ACCOUNT).await;
    create_task(client, ns, MODELCAR_BUILD_TASK).await;
}

/// The ModelCar BuildPolicy (`config/samples/modelcar-build.yaml`) for `ns`,
/// named `name` and labelled for the operator of `scope`, as
/// [`Operator::policy`](crate::operator::Operator::policy) builds them.
pub fn modelcar_policy(scope: &str, name: &str, ns: &str) -> BuildPolicy {
    let mut policy = BuildPolicy::new(
        name,
        BuildPolicySpec {
            namespace: ns.to_owned(),
            service_account_name: MODELCAR_SERVICE_ACCOUNT.to_owned(),
            capabilities: BUILDAH_CAPABILITIES.map(str::to_owned).to_vec(),
            tasks: vec![MODELCAR_BUILD_TASK.to_owned()],
            isolation: Default::default(),
            task_digests: Default::default(),
        },
    );
    policy
        .labels_mut()
        .insert(SCOPE_LABEL.to_owned(), scope.to_owned());
    policy
}

/// Creates `policy`.
///
/// # Panics
///
/// When the server refuses it.
pub async fn create_policy(client: &Client, policy: &BuildPolicy) -> BuildPolicy {
    Api::<BuildPolicy>::all(client.clone())
        .create(&PostParams::default(), policy)
        .await
        .unwrap_or_else(|e| panic!("creating BuildPolicy {}: {e}", policy.name_any()))
}

/// Whether the policy's current generation is Ready.
pub fn is_ready(policy: &BuildPolicy) -> bool {
    policy
        .condition("Ready")
        .is_some_and(|c| c.status == "True")
        && policy.status.as_ref().and_then(|s| s.observed_generation) == policy.metadata.generation
}

/// Whether the policy's current generation is refused: `Ready=False` with
/// `reason`.
pub fn refused_as(reason: &'static str) -> impl Fn(&BuildPolicy) -> bool {
    move |policy| {
        policy
            .condition("Ready")
            .is_some_and(|c| c.status == "False" && c.reason == reason)
            && policy.status.as_ref().and_then(|s| s.observed_generation)
                == policy.metadata.generation
    }
}

/// The Task's pin: its `openshift.io/required-scc` annotation.
pub fn pin_of(task: &Task) -> Option<&String> {
    task.metadata
        .annotations
        .as_ref()?
        .get(REQUIRED_SCC_ANNOTATION)
}

/// Deletes every policy of `scope` and waits until they are gone, which
/// needs a running operator to revoke them and drop their finalizer. Call
/// it before stopping the operator, so no policy outlives its test.
///
/// # Panics
///
/// When they are still there after `timeout`.
pub async fn delete_scope_policies(client: &Client, scope: &str, timeout: Duration) {
    let api: Api<BuildPolicy> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{SCOPE_LABEL}={scope}"));
    api.delete_collection(&DeleteParams::default(), &selector)
        .await
        .unwrap_or_else(|e| panic!("deleting the BuildPolicies of scope {scope}: {e}"));
    eventually(
        &format!("the BuildPolicies of scope {scope} to be revoked and gone"),
        timeout,
        || async {
            api.list(&selector)
                .await
                .ok()
                .filter(|l| l.items.is_empty())
        },
    )
    .await;
}

/// A pod as the build service account adding Buildah's capabilities, with
/// or without the pin (`openshift.io/required-scc`): what an editor would
/// write to get the SCC.
pub fn buildah_pod(pin: Option<&str>) -> Value {
    let annotations = match pin {
        Some(scc) => json!({REQUIRED_SCC_ANNOTATION: scc}),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "attack-", "annotations": annotations},
        "spec": {
            "serviceAccountName": MODELCAR_SERVICE_ACCOUNT,
            "containers": [{
                "name": "build",
                "image": "quay.io/buildah/stable:latest",
                "command": ["sh", "-c", "unshare -m id"],
                "securityContext": {"capabilities": {"add": BUILDAH_CAPABILITIES}}
            }]
        }
    })
}

/// The Events about BuildPolicy `name`, oldest first.
///
/// # Panics
///
/// When the server does not answer.
pub async fn policy_event_objects(
    client: &Client,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    use k8s_openapi::api::events::v1::Event;
    let mut events = Api::<Event>::all(client.clone())
        .list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .expect("listing events")
        .items;
    events.sort_by(|a, b| a.event_time.cmp(&b.event_time));
    events
}

/// `(type, reason, note)` of the Events about BuildPolicy `name`, oldest
/// first.
///
/// # Panics
///
/// When the server does not answer.
pub async fn policy_events(client: &Client, name: &str) -> Vec<(String, String, String)> {
    policy_event_objects(client, name)
        .await
        .into_iter()
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// An SCC named `name` that no one may use, with every strategy set as
/// OpenShift's API server defaults them. An SCC without strategies makes
/// OpenShift's SCC admission (the local control plane's pod webhook) refuse
/// every pod of the cluster while it exists, so tests never create one.
pub fn unused_scc(name: &str) -> buildpolicy_api::SecurityContextConstraints {
    use buildpolicy_api::scc::{
        GroupStrategyOptions, RunAsUserStrategyOptions, SELinuxContextStrategyOptions,
    };
    let any = || Some("RunAsAny".to_owned());
    let mut scc = buildpolicy_api::SecurityContextConstraints::named(name);
    scc.users = Some(vec![]);
    scc.groups = Some(vec![]);
    scc.run_as_user = Some(RunAsUserStrategyOptions {
        type_: any(),
        ..Default::default()
    });
    scc.se_linux_context = Some(SELinuxContextStrategyOptions {
        type_: any(),
        ..Default::default()
    });
    scc.fs_group = Some(GroupStrategyOptions {
        type_: any(),
        ..Default::default()
    });
    scc.supplemental_groups = scc.fs_group.clone();
    scc
}

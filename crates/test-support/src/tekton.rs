//! Runs of the ModelCar pipeline through Tekton's own controller (the local
//! control plane runs it, as `openshift-pipelines/tekton-pipelines-controller`,
//! with OpenShift's SCC admission as the pod webhook): the pipeline and the
//! run come from `config/samples/tekton/`, the pods are Tekton's.
//!
//! Tekton's controller is shared by every test: a test waits on its own
//! namespace's objects only, with a deadline, never a sleep.

use std::collections::BTreeMap;
use std::time::Duration;

use buildpolicy_api::conditions;
use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{BuildPolicy, Isolation, Task, TaskRun};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::core::ApiResource;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::operator::Operator;
use crate::repo_root;
use crate::scc_admission::webhook_holds;
use crate::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, create_service_account,
};
use crate::unique_name;
use crate::wait::{eventually, wait_for};

/// Tasks and Pipeline of the ModelCar build.
pub const PIPELINE_SAMPLE: &str = "config/samples/tekton/modelcar-pipeline.yaml";
/// A PipelineRun of it as the build service account.
pub const PIPELINE_RUN_SAMPLE: &str = "config/samples/tekton/modelcar-pipelinerun.yaml";
/// The pipeline task that runs the pinned Buildah Task.
pub const BUILD_PIPELINE_TASK: &str = "build-and-push";
/// The pipeline tasks that need no privilege.
pub const UNPRIVILEGED_PIPELINE_TASKS: [&str; 3] =
    ["download-model", "mirror-to-internal", "register-model"];

/// Labels Tekton's controller puts on TaskRuns and pods.
pub const PIPELINE_RUN_LABEL: &str = "tekton.dev/pipelineRun";
pub const PIPELINE_TASK_LABEL: &str = "tekton.dev/pipelineTask";

/// How long Tekton gets to turn a run into pods: it reconciles at once, but
/// the suite runs many tests beside it.
pub const TEKTON_TIMEOUT: Duration = Duration::from_secs(60);

const HINT: &str = "is Tekton's controller running? `hack/local-cluster.sh status` says; its log is target/local-cluster/run/tekton-controller.log";

/// The objects of a sample file (YAML, `---`-separated).
///
/// # Panics
///
/// When the file cannot be read or holds something else than objects.
pub fn sample(path: &str) -> Vec<DynamicObject> {
    let path = repo_root().join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            DynamicObject::deserialize(doc)
                .unwrap_or_else(|e| panic!("an object in {}: {e}", path.display()))
        })
        .collect()
}

/// The API resource of a Tekton object by its `apiVersion` and `kind`.
pub fn api_resource(object: &DynamicObject) -> ApiResource {
    let types = object
        .types
        .as_ref()
        .expect("objects carry apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .expect("a grouped apiVersion");
    let plural = format!("{}s", types.kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, &types.kind), &plural)
}

/// Creates `object` in `ns`; returns it as stored (with its generated name).
///
/// # Panics
///
/// When the server refuses it.
pub async fn create(client: &Client, ns: &str, object: &DynamicObject) -> DynamicObject {
    let resource = api_resource(object);
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource)
        .create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {} {ns}/{}: {e}",
                resource.kind,
                object
                    .metadata
                    .name
                    .as_deref()
                    .or(object.metadata.generate_name.as_deref())
                    .unwrap_or_default()
            )
        })
}

/// Creates the ModelCar Tasks and Pipeline in `ns`.
pub async fn create_modelcar_pipeline(client: &Client, ns: &str) {
    for object in sample(PIPELINE_SAMPLE) {
        create(client, ns, &object).await;
    }
}

/// The build service account and the ModelCar Tasks and Pipeline in `ns`.
pub async fn pipeline_scene(client: &Client, ns: &str) {
    create_service_account(client, ns, MODELCAR_SERVICE_ACCOUNT).await;
    create_modelcar_pipeline(client, ns).await;
}

/// A ModelCar policy created by `op` for the build Task and `more` Tasks,
/// in mode `isolation`. Returns its name and SCC once it is Ready for its
/// current generation, `until` holds, the build Task carries the pin and
/// the SCC admission webhook knows the SCC.
///
/// # Panics
///
/// When that does not happen within [`TEKTON_TIMEOUT`].
pub async fn ready_modelcar_policy(
    op: &Operator,
    client: &Client,
    ns: &str,
    isolation: Isolation,
    more: &[&str],
    until: impl Fn(&BuildPolicy) -> bool,
) -> (String, String) {
    let name = unique_name("modelcar");
    let mut tasks = vec![MODELCAR_BUILD_TASK];
    tasks.extend_from_slice(more);
    let mut policy = op.policy(
        &name,
        ns,
        MODELCAR_SERVICE_ACCOUNT,
        &BUILDAH_CAPABILITIES,
        &tasks,
    );
    policy.spec.isolation = isolation;
    op.create(&policy).await;
    let policy = wait_for(
        &Api::<BuildPolicy>::all(client.clone()),
        &name,
        TEKTON_TIMEOUT,
        |p: &BuildPolicy| {
            p.condition(conditions::READY)
                .is_some_and(|c| c.status == "True")
                && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
                && until(p)
        },
    )
    .await;
    let scc = policy
        .status
        .and_then(|s| s.scc_name)
        .expect("a Ready policy names its SCC");
    wait_for(
        &Api::<Task>::namespaced(client.clone(), ns),
        MODELCAR_BUILD_TASK,
        TEKTON_TIMEOUT,
        |t: &Task| t.annotations().get(REQUIRED_SCC_ANNOTATION) == Some(&scc),
    )
    .await;
    webhook_holds(client, &scc).await;
    (name, scc)
}

/// The sample PipelineRun, with `hostUsers` in its pod template when given.
pub fn modelcar_pipeline_run(host_users: Option<bool>) -> DynamicObject {
    let mut run = sample(PIPELINE_RUN_SAMPLE).remove(0);
    if let Some(host_users) = host_users {
        run.data["spec"]["taskRunTemplate"]["podTemplate"]["hostUsers"] = host_users.into();
    }
    run
}

/// Creates `run` (a PipelineRun or TaskRun) in `ns`; returns its name.
pub async fn start(client: &Client, ns: &str, run: &DynamicObject) -> String {
    create(client, ns, run).await.name_any()
}

/// The pods of PipelineRun `run` once there are `count`, by pipeline task.
///
/// # Panics
///
/// When Tekton has not created `count` pods within [`TEKTON_TIMEOUT`].
pub async fn pods_of(client: &Client, ns: &str, run: &str, count: usize) -> BTreeMap<String, Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let selector = format!("{PIPELINE_RUN_LABEL}={run}");
    eventually(
        &format!("{count} pods of PipelineRun {ns}/{run} ({HINT})"),
        TEKTON_TIMEOUT,
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            (list.items.len() == count).then(|| {
                list.items
                    .into_iter()
                    .map(|p| {
                        (
                            p.labels()
                                .get(PIPELINE_TASK_LABEL)
                                .cloned()
                                .unwrap_or_default(),
                            p,
                        )
                    })
                    .collect()
            })
        },
    )
    .await
}

/// The TaskRun of `pipeline_task` in PipelineRun `run`, once `done` holds
/// for it.
///
/// # Panics
///
/// When there is no such TaskRun for which `done` holds within
/// [`TEKTON_TIMEOUT`].
pub async fn task_run_of(
    client: &Client,
    ns: &str,
    run: &str,
    pipeline_task: &str,
    done: impl Fn(&TaskRun) -> bool,
) -> TaskRun {
    let runs = Api::<TaskRun>::namespaced(client.clone(), ns);
    let selector = format!("{PIPELINE_RUN_LABEL}={run},{PIPELINE_TASK_LABEL}={pipeline_task}");
    eventually(
        &format!("the TaskRun of {pipeline_task} in PipelineRun {ns}/{run} ({HINT})"),
        TEKTON_TIMEOUT,
        || async {
            let list = runs
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.into_iter().find(|r| done(r))
        },
    )
    .await
}

/// PipelineRun `run`'s failure message, once Tekton failed it (e.g. when
/// admission refused a TaskRun it made).
///
/// # Panics
///
/// When the run has not failed within [`TEKTON_TIMEOUT`].
pub async fn pipeline_run_failure(client: &Client, ns: &str, run: &str) -> String {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("tekton.dev", "v1", "PipelineRun"),
        "pipelineruns",
    );
    let runs = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource);
    eventually(
        &format!("PipelineRun {ns}/{run} to fail ({HINT})"),
        TEKTON_TIMEOUT,
        || async {
            let run = runs.get(run).await.ok()?;
            let conditions = run.data["status"]["conditions"].as_array()?.clone();
            conditions
                .iter()
                .find(|c| c["type"] == "Succeeded" && c["status"] == "False")
                .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
        },
    )
    .await
}

/// A TaskRun in `ns` named `name`, once `done` holds for it.
///
/// # Panics
///
/// Like [`task_run_of`].
pub async fn task_run(
    client: &Client,
    ns: &str,
    name: &str,
    done: impl Fn(&TaskRun) -> bool,
) -> TaskRun {
    let runs = Api::<TaskRun>::namespaced(client.clone(), ns);
    eventually(
        &format!("TaskRun {ns}/{name} ({HINT})"),
        TEKTON_TIMEOUT,
        || async { runs.get(name).await.ok().filter(|r| done(r)) },
    )
    .await
}

/// Whether Tekton failed the run because admission refused its pod.
pub fn refused(run: &TaskRun) -> bool {
    run.pod_refused().is_some()
}

/// Whether Tekton created the run's pod.
pub fn has_pod(run: &TaskRun) -> bool {
    run.status
        .as_ref()
        .and_then(|s| s.pod_name.as_deref())
        .is_some_and(|p| !p.is_empty())
}

/// Waits until the API server enforces the confinement binding of the
/// policy whose SCC is `scc` in `ns`: its admission-policy informer learns a
/// new binding moments after the operator creates it. Probes with a
/// server-side dry-run pod pinned to the SCC as `service_account`, created by
/// the admin (no pipeline controller), until the policy refuses it.
///
/// # Panics
///
/// When the binding is not in force within [`TEKTON_TIMEOUT`].
pub async fn wait_for_confinement(client: &Client, ns: &str, service_account: &str, scc: &str) {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "confinement-probe-", "annotations": {"openshift.io/required-scc": scc}},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "probe", "image": "registry.access.redhat.com/ubi9/ubi-minimal", "command": ["true"]}]
        }
    }))
    .expect("a pod");
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        &format!("the confinement binding of SCC {scc} to be enforced in {ns}"),
        TEKTON_TIMEOUT,
        || async {
            match pods.create(&params, &pod).await {
                Err(kube::Error::Api(status))
                    if status.message.contains(&format!("confines SCC {scc}")) =>
                {
                    Some(())
                }
                _ => None,
            }
        },
    )
    .await;
}

//! Tekton `Task` (`tekton.dev/v1`), as far as this operator reads it.
//!
//! The controller only watches Task metadata; the spec is kept as plain JSON
//! for the offline checks, which read the few fields they need.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Serialize};

/// API group of Tekton Tasks.
pub const GROUP: &str = "tekton.dev";
/// API version of Tekton Tasks this operator writes.
pub const VERSION: &str = "v1";
/// Kind of Tekton Tasks.
pub const KIND: &str = "Task";
/// Resource (plural) of Tekton Tasks.
pub const PLURAL: &str = "tasks";

/// A Tekton Task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    KIND.to_owned()
}

impl kube::Resource for Task {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Label Tekton's controller sets on a TaskRun (and its pod) naming the Task
/// of its `taskRef`. A user may set it too: it is evidence only together
/// with the TaskRun's own `taskRef`.
pub const TASK_LABEL: &str = "tekton.dev/task";

/// Kind of Tekton TaskRuns.
pub const TASK_RUN_KIND: &str = "TaskRun";
/// Resource (plural) of Tekton TaskRuns.
pub const TASK_RUN_PLURAL: &str = "taskruns";

/// `status.conditions[].reason` Tekton (v1.x) sets on a TaskRun whose pod
/// the API server refused with a message about security context
/// constraints or Pod Security (`handlePodCreationError`).
pub const REASON_POD_ADMISSION_FAILED: &str = "PodAdmissionFailed";
/// The catch-all reason of a pod that could not be created.
pub const REASON_POD_CREATION_FAILED: &str = "PodCreationFailed";

/// A Tekton TaskRun, reduced to what tells whether its pod was admitted:
/// every other field is dropped when it is read, so a cache of them stays
/// small.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskRun {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "task_run_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: TaskRunSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskRunStatus>,
}

/// The parts of `TaskRun.spec` read here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_ref: Option<TaskRef>,
}

/// `TaskRun.spec.taskRef`, by name (a resolver's `taskRef` has none).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The parts of `TaskRun.status` read here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskRunStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<RunCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}

/// A knative condition (`Succeeded` on TaskRuns).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl TaskRun {
    /// The Task this run runs, by its `taskRef` (not by its labels).
    pub fn task_name(&self) -> Option<&str> {
        self.spec.task_ref.as_ref()?.name.as_deref()
    }

    /// The `Succeeded` condition, once Tekton set one.
    pub fn succeeded(&self) -> Option<&RunCondition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
    }

    /// Tekton's message when the run failed because the API server refused
    /// its pod at admission (SCC admission, Pod Security, or a
    /// ValidatingAdmissionPolicy such as the policy's confinement).
    pub fn pod_refused(&self) -> Option<&str> {
        let c = self.succeeded().filter(|c| c.status == "False")?;
        let message = c.message.as_deref().unwrap_or_default();
        match c.reason.as_deref() {
            Some(REASON_POD_ADMISSION_FAILED) => Some(message),
            Some(REASON_POD_CREATION_FAILED)
                if message.contains("security context constraint")
                    || message.contains("ValidatingAdmissionPolicy") =>
            {
                Some(message)
            }
            _ => None,
        }
    }
}

fn task_run_kind() -> String {
    TASK_RUN_KIND.to_owned()
}

impl kube::Resource for TaskRun {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        TASK_RUN_KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        TASK_RUN_PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod task_run_tests {
    use super::*;

    fn run(reason: &str, message: &str) -> TaskRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"taskRef": {"name": "build"}, "serviceAccountName": "sa", "params": [{"name": "x", "value": "y"}]},
            "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": reason, "message": message}],
                       "steps": [{"name": "s"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_refused_by_scc_admission_is_read_from_tekton_reasons() {
        assert_eq!(
            run("PodAdmissionFailed", "pods \"r-pod\" is forbidden: x").pod_refused(),
            Some("pods \"r-pod\" is forbidden: x")
        );
        let creation = "failed to create task run pod \"r\": admission webhook denied the request: unable to validate against any security context constraint: []";
        assert_eq!(
            run("PodCreationFailed", creation).pod_refused(),
            Some(creation)
        );
        assert_eq!(
            run("PodCreationFailed", "failed to create task run pod: quota").pod_refused(),
            None
        );
        assert_eq!(run("Failed", "step exited 1").pod_refused(), None);
    }

    #[test]
    fn only_the_fields_read_are_kept() {
        let r = run("PodAdmissionFailed", "m");
        assert_eq!(r.task_name(), Some("build"));
        let back = serde_json::to_value(&r).unwrap();
        assert!(back["spec"].get("params").is_none());
        assert!(back["status"].get("steps").is_none());
    }
}

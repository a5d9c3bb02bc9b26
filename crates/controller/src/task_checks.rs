//! The last `TasksAdmissible` check of each pinned Task, kept while the
//! Task, the SCC and the namespace's allocation stay the same, so a resync
//! reads no Task.

use std::collections::HashMap;
use std::sync::Mutex;

use buildpolicy_api::SecurityContextConstraints;
use buildpolicy_policy::admission::NamespaceAllocation;
use buildpolicy_policy::task_check::TaskReport;

/// What the check is made from, in a number: the SCC, and the namespace's
/// allocation (its UID range and SELinux level decide some strategies).
pub(crate) fn fingerprint(
    scc: &SecurityContextConstraints,
    allocation: Option<&NamespaceAllocation>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(scc)
        .expect("an SCC serialises")
        .hash(&mut hasher);
    format!("{allocation:?}").hash(&mut hasher);
    hasher.finish()
}

/// (namespace, Task).
pub(crate) type TaskKey = (String, String);

/// A Task check and what it was made from: the Task's resourceVersion and
/// the [`fingerprint`] of the SCC and the namespace's allocation.
type TaskCheck = (String, u64, TaskReport);

/// The last Task check of each pinned Task.
#[derive(Default)]
pub struct TaskChecks(Mutex<HashMap<TaskKey, TaskCheck>>);

impl TaskChecks {
    pub(crate) fn get(&self, key: &TaskKey, version: &str, scc: u64) -> Option<TaskReport> {
        let checks = self.0.lock().expect("task check cache lock");
        checks
            .get(key)
            .filter(|(v, s, _)| v == version && *s == scc)
            .map(|(_, _, report)| report.clone())
    }

    pub(crate) fn put(&self, key: TaskKey, version: String, scc: u64, report: TaskReport) {
        self.0
            .lock()
            .expect("task check cache lock")
            .insert(key, (version, scc, report));
    }

    /// Forgets the Tasks of a namespace and name no longer pinned.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .expect("task check cache lock")
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
}

/// What a Task's content is, by the [`buildpolicy_policy::digest`] of its
/// `spec`, and who last changed that `spec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskContent {
    pub digest: String,
    pub changed_by: Option<String>,
}

impl TaskContent {
    pub(crate) fn of(task: &buildpolicy_api::Task) -> Self {
        Self {
            digest: buildpolicy_policy::digest::task_spec_digest(
                task.spec.as_ref().unwrap_or(&serde_json::Value::Null),
            ),
            changed_by: last_spec_change(
                task.metadata.managed_fields.as_deref().unwrap_or_default(),
            ),
        }
    }
}

/// The managedFields entries that own part of `spec` and were written last,
/// as "manager (Operation at time)". Their times have whole seconds: when
/// several were written in the same second, each is named ("a or b").
fn last_spec_change(
    entries: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
) -> Option<String> {
    let owning: Vec<_> = entries
        .iter()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.as_object())
                .is_some_and(|f| f.contains_key("f:spec"))
        })
        .collect();
    let latest = owning
        .iter()
        .filter_map(|e| e.time.as_ref())
        .map(|t| t.0)
        .max();
    let last: Vec<_> = owning
        .into_iter()
        .filter(|e| e.time.as_ref().map(|t| t.0) == latest)
        .collect();
    if last.is_empty() {
        return None;
    }
    let who: Vec<String> = last
        .iter()
        .map(|e| {
            let manager = e.manager.as_deref().unwrap_or("an unnamed field manager");
            match &e.operation {
                Some(op) => format!("{manager} ({op})"),
                None => manager.to_owned(),
            }
        })
        .collect();
    Some(match latest {
        Some(time) => format!("{} at {time}", who.join(" or ")),
        None => who.join(" or "),
    })
}

/// The content of each digested Task, by the resourceVersion it was read at,
/// so a resync reads no Task.
#[derive(Default)]
pub struct TaskContents(Mutex<HashMap<TaskKey, (String, TaskContent)>>);

impl TaskContents {
    pub(crate) fn get(&self, key: &TaskKey, version: &str) -> Option<TaskContent> {
        let contents = self.0.lock().expect("task content cache lock");
        contents
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, c)| c.clone())
    }

    pub(crate) fn put(&self, key: TaskKey, version: String, content: TaskContent) {
        self.0
            .lock()
            .expect("task content cache lock")
            .insert(key, (version, content));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn allocation(uids: &str) -> NamespaceAllocation {
        let annotations: BTreeMap<String, String> = [
            ("openshift.io/sa.scc.uid-range", uids),
            ("openshift.io/sa.scc.supplemental-groups", uids),
            ("openshift.io/sa.scc.mcs", "s0:c26,c5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        NamespaceAllocation::from_annotations(&annotations).expect("a valid allocation")
    }

    #[test]
    fn a_check_stands_while_the_task_the_scc_and_the_allocation_stay_the_same() {
        let scc: SecurityContextConstraints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "buildpolicy-build"},
            "allowedCapabilities": ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"],
        }))
        .expect("an SCC");
        let (a, b) = (
            allocation("1000680000/10000"),
            allocation("1000690000/10000"),
        );
        let here = fingerprint(&scc, Some(&a));
        assert_ne!(
            here,
            fingerprint(&scc, Some(&b)),
            "another namespace's allocation"
        );
        assert_ne!(here, fingerprint(&scc, None), "the allocation unknown");
        let mut other = scc.clone();
        other.allowed_capabilities = Some(vec!["SETUID".into()]);
        assert_ne!(here, fingerprint(&other, Some(&a)), "another SCC");

        let checks = TaskChecks::default();
        let key = ("ns".to_owned(), "build".to_owned());
        let report = TaskReport {
            task: "build".into(),
            ..TaskReport::default()
        };
        checks.put(key.clone(), "7".into(), here, report.clone());
        assert_eq!(checks.get(&key, "7", here), Some(report));
        assert_eq!(checks.get(&key, "8", here), None, "the Task changed");
        assert_eq!(
            checks.get(&key, "7", fingerprint(&scc, Some(&b))),
            None,
            "the allocation changed"
        );
        checks.forget("ns", "build");
        assert_eq!(checks.get(&key, "7", here), None, "forgotten");
    }

    #[test]
    fn the_last_spec_change_is_the_newest_entry_that_owns_spec() {
        let task: buildpolicy_api::Task = serde_json::from_value(serde_json::json!({
            "apiVersion": "tekton.dev/v1", "kind": "Task",
            "metadata": {"name": "build", "managedFields": [
                {"manager": "argocd-controller", "operation": "Apply", "time": "2026-12-01T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:steps": {}}}},
                {"manager": "kubectl-edit", "operation": "Update", "time": "2026-12-02T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:steps": {}}}},
                {"manager": "buildpolicy-operator", "operation": "Apply", "time": "2026-12-03T10:00:00Z",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {}}}}
            ]},
            "spec": {"steps": []}
        }))
        .unwrap();
        let content = TaskContent::of(&task);
        assert_eq!(
            content.changed_by.as_deref(),
            Some("kubectl-edit (Update) at 2026-12-02T10:00:00Z")
        );
        assert_eq!(
            content.digest,
            buildpolicy_policy::digest::task_spec_digest(&serde_json::json!({"steps": []}))
        );
    }

    #[test]
    fn spec_changes_in_the_same_second_name_every_manager() {
        let entry = |manager: &str| {
            serde_json::json!({"manager": manager, "operation": "Update", "time": "2026-12-02T10:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}})
        };
        let task: buildpolicy_api::Task = serde_json::from_value(serde_json::json!({
            "apiVersion": "tekton.dev/v1", "kind": "Task",
            "metadata": {"name": "build", "managedFields": [entry("unknown"), entry("kubectl-patch")]},
        }))
        .unwrap();
        assert_eq!(
            TaskContent::of(&task).changed_by.as_deref(),
            Some("unknown (Update) or kubectl-patch (Update) at 2026-12-02T10:00:00Z")
        );
    }
}

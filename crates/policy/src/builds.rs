//! `BuildsAdmitted`: what the API server decided for the pods Tekton created
//! for a policy's pinned Tasks, read from the TaskRuns Tekton reports on.
//!
//! The last word on a pod is SCC admission's, not the operator's analysis:
//! `TasksAdmissible` predicts, this condition reports. Per listed Task only
//! the newest TaskRun that has an outcome counts (its pod was created, or
//! Tekton failed it because admission refused the pod), so a fixed pipeline
//! clears the condition with its next run.

use buildpolicy_api::conditions::reason;
use buildpolicy_api::{Isolation, TaskRun};

use crate::status::Advice;
use crate::task_check::HOST_USERS_FIX;

/// Longest excerpt of Tekton's message kept in the condition: OpenShift
/// lists every SCC it tried, which can run to kilobytes.
const MAX_MESSAGE: usize = 600;

/// What admission decided for one TaskRun's pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome<'a> {
    Admitted,
    Refused(&'a str),
}

fn outcome(run: &TaskRun) -> Option<Outcome<'_>> {
    if let Some(message) = run.pod_refused() {
        return Some(Outcome::Refused(message));
    }
    run.status
        .as_ref()
        .and_then(|s| s.pod_name.as_deref())
        .filter(|p| !p.is_empty())
        .map(|_| Outcome::Admitted)
}

/// The condition for a policy whose listed Tasks are `tasks`, in mode
/// `isolation`, from `runs` (TaskRuns in the policy's namespace). `None`
/// while no TaskRun of a listed Task has an outcome.
pub fn builds_advice(tasks: &[String], isolation: Isolation, runs: &[&TaskRun]) -> Option<Advice> {
    // The newest decided run of each listed Task, Tasks in spec order.
    let mut newest: Vec<(&str, &TaskRun, Outcome<'_>)> = Vec::new();
    for task in tasks {
        let latest = runs
            .iter()
            .filter(|r| r.task_name() == Some(task.as_str()))
            .filter_map(|r| outcome(r).map(|o| (*r, o)))
            .max_by(|(a, _), (b, _)| {
                let key = |r: &TaskRun| {
                    (
                        r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        r.metadata.name.clone(),
                    )
                };
                key(a).cmp(&key(b))
            });
        if let Some((run, o)) = latest {
            newest.push((task, run, o));
        }
    }
    if newest.is_empty() {
        return None;
    }
    let refused: Vec<String> = newest
        .iter()
        .filter_map(|(task, run, o)| match o {
            Outcome::Refused(message) => Some(refusal(task, run, message, isolation)),
            Outcome::Admitted => None,
        })
        .collect();
    if !refused.is_empty() {
        return Some(Advice::bad(reason::POD_REFUSED, refused.join("; ")));
    }
    let admitted: Vec<String> = newest
        .iter()
        .map(|(task, run, _)| format!("{task} (TaskRun {})", name(run)))
        .collect();
    Some(Advice::good(
        reason::PODS_ADMITTED,
        format!(
            "the pod of the latest TaskRun of each pinned Task that ran was admitted: {}",
            admitted.join(", ")
        ),
    ))
}

fn name(run: &TaskRun) -> &str {
    run.metadata.name.as_deref().unwrap_or_default()
}

fn refusal(task: &str, run: &TaskRun, message: &str, isolation: Isolation) -> String {
    let mut one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() > MAX_MESSAGE {
        let cut = (0..=MAX_MESSAGE)
            .rev()
            .find(|i| one_line.is_char_boundary(*i))
            .unwrap_or(0);
        one_line.truncate(cut);
        one_line.push_str(" …");
    }
    let fix = if isolation == Isolation::PodUserNamespace && mentions_host_users(message) {
        format!("; the policy's SCC admits only pods in their own user namespace: {HOST_USERS_FIX}")
    } else {
        String::new()
    };
    format!(
        "TaskRun {} of Task {task} failed: its pod was refused at admission: {one_line}{fix}",
        name(run)
    )
}

/// OpenShift's refusal of a host-user-namespace pod under `RequirePodLevel`
/// (`"hostUsers": must be false ...`, or the user-namespace level).
fn mentions_host_users(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("hostusers") || lower.contains("user namespace") || lower.contains("podlevel")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(name: &str, task: &str, created: &str, status: serde_json::Value) -> TaskRun {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"taskRef": {"name": task}},
            "status": status,
        }))
        .unwrap()
    }

    fn admitted(name: &str, task: &str, created: &str) -> TaskRun {
        run(
            name,
            task,
            created,
            json!({"podName": format!("{name}-pod")}),
        )
    }

    fn refused(name: &str, task: &str, created: &str, message: &str) -> TaskRun {
        run(
            name,
            task,
            created,
            json!({"conditions": [{"type": "Succeeded", "status": "False", "reason": "PodAdmissionFailed", "message": message}]}),
        )
    }

    fn tasks() -> Vec<String> {
        vec!["build".into(), "push".into()]
    }

    #[test]
    fn no_condition_until_a_run_of_a_listed_task_has_an_outcome() {
        let pending = run("p", "build", "2026-01-01T00:00:00Z", json!({}));
        let other = admitted("o", "unlisted", "2026-01-01T00:00:00Z");
        assert_eq!(
            builds_advice(&tasks(), Isolation::HostUserNamespace, &[&pending, &other]),
            None
        );
    }

    #[test]
    fn the_newest_refused_run_names_the_taskrun_and_openshifts_words() {
        let old = admitted("build-1", "build", "2026-01-01T00:00:00Z");
        let new = refused(
            "build-2",
            "build",
            "2026-01-01T00:01:00Z",
            "pods \"build-2-pod\" is forbidden: unable to validate against any security context constraint:\n[provider x: forbidden]",
        );
        let advice = builds_advice(&tasks(), Isolation::HostUserNamespace, &[&old, &new]).unwrap();
        assert!(!advice.ok);
        assert_eq!(advice.reason, reason::POD_REFUSED);
        assert!(advice.message.starts_with("TaskRun build-2 of Task build failed: its pod was refused at admission: pods \"build-2-pod\" is forbidden: unable to validate against any security context constraint: [provider x: forbidden]"), "{}", advice.message);
        assert!(!advice.message.contains('\n'));
    }

    #[test]
    fn a_later_admitted_run_clears_the_refusal() {
        let old = refused("build-1", "build", "2026-01-01T00:00:00Z", "forbidden");
        let new = admitted("build-2", "build", "2026-01-01T00:01:00Z");
        let advice = builds_advice(&tasks(), Isolation::HostUserNamespace, &[&new, &old]).unwrap();
        assert!(advice.ok, "{advice:?}");
        assert_eq!(advice.reason, reason::PODS_ADMITTED);
        assert!(advice.message.contains("build (TaskRun build-2)"));
    }

    #[test]
    fn pod_user_namespace_refusals_say_to_set_host_users_false() {
        let r = refused(
            "build-1",
            "build",
            "2026-01-01T00:00:00Z",
            "unable to validate against any security context constraint: [provider \"buildpolicy-p\": .spec.hostUsers: Invalid value: true: Host Users must be set to false]",
        );
        let pod = builds_advice(&tasks(), Isolation::PodUserNamespace, &[&r]).unwrap();
        assert!(pod.message.contains(HOST_USERS_FIX), "{}", pod.message);
        let host = builds_advice(&tasks(), Isolation::HostUserNamespace, &[&r]).unwrap();
        assert!(!host.message.contains(HOST_USERS_FIX));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(2 * MAX_MESSAGE);
        let r = refused("b", "build", "2026-01-01T00:00:00Z", &long);
        let advice = builds_advice(&tasks(), Isolation::HostUserNamespace, &[&r]).unwrap();
        assert!(advice.message.ends_with(" …"));
        assert!(advice.message.len() < 2 * MAX_MESSAGE);
    }

    #[test]
    fn the_run_is_judged_by_its_task_ref_not_its_labels() {
        let mut forged = refused("f", "unlisted", "2026-01-01T00:00:00Z", "forbidden");
        forged.metadata.labels = Some([("tekton.dev/task".to_owned(), "build".to_owned())].into());
        assert_eq!(
            builds_advice(&tasks(), Isolation::HostUserNamespace, &[&forged]),
            None
        );
    }
}

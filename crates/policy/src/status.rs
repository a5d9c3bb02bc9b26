//! Conditions derived from what one reconcile observed. Nothing is set
//! piecemeal: the controller records facts in [`Observation`] and this
//! module turns them into the conditions a pipeline owner reads.

use buildpolicy_api::Isolation;
use buildpolicy_api::conditions::{self, reason};
use buildpolicy_api::keys;

use crate::{Rejection, render};

/// The state of one part of the grant (the SCC, the RBAC).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Part {
    /// In place and as wanted.
    Ready,
    /// Not (yet) in place: a reason and the message saying why.
    Blocked {
        reason: &'static str,
        message: String,
    },
    /// Deliberately not created (the policy is refused, or a prerequisite
    /// failed).
    #[default]
    Withheld,
}

/// The outcome of an advisory analysis: a condition that does not change
/// `Ready`, because the grant is in place either way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Advice {
    pub fn good(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: true,
            reason,
            message: message.into(),
        }
    }

    pub fn bad(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            reason,
            message: message.into(),
        }
    }
}

/// Facts one reconcile established about a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Set when validation or the ceiling refused the policy.
    pub rejection: Option<Rejection>,
    /// `spec.namespace`.
    pub namespace: String,
    /// `spec.isolation`: what the pipeline must know about it.
    pub isolation: Isolation,
    pub scc_name: String,
    pub scc: Part,
    pub rbac: Part,
    /// `spec.namespace` is missing.
    pub namespace_missing: Option<String>,
    /// `spec.serviceAccountName` is missing (namespace/name).
    pub service_account_missing: Option<String>,
    /// Listed Tasks that do not exist.
    pub missing_tasks: Vec<String>,
    /// Listed Tasks left alone because someone else pins them: (task, holder).
    pub conflicting_tasks: Vec<(String, String)>,
    /// Listed Tasks that carry the pin.
    pub pinned_tasks: Vec<String>,
    /// Listed Tasks the operator could not pin: (task, error).
    pub failed_tasks: Vec<(String, String)>,
    /// Listed Tasks whose live content is not what `spec.taskDigests`
    /// reviewed: not pinned, their pods refused.
    pub changed_tasks: Vec<ChangedTask>,
    /// `PreemptionSafe`, once the SCC is in place.
    pub preemption: Option<Advice>,
    /// `TasksAdmissible`, once Tasks are pinned.
    pub tasks_admissible: Option<Advice>,
    /// `BuildsAdmitted`, once a TaskRun of a listed Task had an outcome.
    pub builds: Option<Advice>,
    /// `Confined`, once the SCC is in place.
    pub confinement: Option<Advice>,
}

/// A listed Task whose live `spec` differs from its reviewed digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedTask {
    pub task: String,
    /// `spec.taskDigests` of the policy.
    pub reviewed: String,
    /// The digest of the live `spec`, or why it could not be read.
    pub live: String,
    /// Who last changed the Task's `spec`, from its managedFields: the
    /// field manager, the operation and the time.
    pub changed_by: Option<String>,
}

/// One condition, without timestamps (the controller keeps
/// `lastTransitionTime` stable while `status` does not change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionSpec {
    fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn part_condition(
    type_: &'static str,
    part: &Part,
    ready_message: String,
    withheld: &ConditionSpec,
) -> ConditionSpec {
    match part {
        Part::Ready => ConditionSpec::new(type_, true, reason::RECONCILED, ready_message),
        Part::Blocked { reason, message } => {
            ConditionSpec::new(type_, false, reason, message.clone())
        }
        Part::Withheld => {
            ConditionSpec::new(type_, false, withheld.reason, withheld.message.clone())
        }
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// The conditions for an observation: `Ready` first, one per part, the
/// advisory ones, then kstatus's `Stalled` or `Reconciling` while `Ready` is
/// `False`.
pub fn conditions(obs: &Observation) -> Vec<ConditionSpec> {
    let mut all = grant_conditions(obs);
    let ready = &all[0];
    if !ready.status {
        let type_ = if conditions::needs_a_person(ready.reason) {
            conditions::STALLED
        } else {
            conditions::RECONCILING
        };
        let kstatus = ConditionSpec::new(type_, true, ready.reason, ready.message.clone());
        all.push(kstatus);
    }
    all
}

fn grant_conditions(obs: &Observation) -> Vec<ConditionSpec> {
    if let Some(rejection) = &obs.rejection {
        let message = format!(
            "{} (nothing is granted while the policy is refused)",
            rejection.message
        );
        return [
            conditions::READY,
            conditions::SCC_READY,
            conditions::RBAC_READY,
            conditions::TASKS_PINNED,
        ]
        .into_iter()
        .map(|t| ConditionSpec::new(t, false, rejection.reason, message.clone()))
        .collect();
    }

    let scc = part_condition(
        conditions::SCC_READY,
        &obs.scc,
        format!(
            "SecurityContextConstraints {} grants exactly the requested capabilities",
            obs.scc_name
        ),
        &ConditionSpec::new("", false, reason::WAITING, "the SCC is not created yet"),
    );

    let rbac = if let Some(ns) = &obs.namespace_missing {
        ConditionSpec::new(
            conditions::RBAC_READY,
            false,
            reason::NAMESPACE_NOT_FOUND,
            format!(
                "namespace {ns} does not exist: create it (the grant follows by itself) or fix spec.namespace"
            ),
        )
    } else {
        match (&obs.rbac, &obs.service_account_missing) {
            (Part::Ready, Some(sa)) => ConditionSpec::new(
                conditions::RBAC_READY,
                false,
                reason::SERVICE_ACCOUNT_NOT_FOUND,
                format!(
                    "service account {sa} does not exist: create it or fix spec.serviceAccountName (the RoleBinding already names it)"
                ),
            ),
            (part, _) => part_condition(
                conditions::RBAC_READY,
                part,
                format!("only the service account may use SCC {}", obs.scc_name),
                &ConditionSpec::new(
                    "",
                    false,
                    reason::WAITING,
                    "the Role and RoleBinding wait for the SCC",
                ),
            ),
        }
    };

    let tasks = tasks_condition(obs);

    let ready = [&scc, &rbac, &tasks]
        .into_iter()
        .find(|c| !c.status)
        .map(|c| ConditionSpec::new(conditions::READY, false, c.reason, c.message.clone()))
        .unwrap_or_else(|| {
            ConditionSpec::new(
                conditions::READY,
                true,
                reason::RECONCILED,
                format!(
                    "SCC {} is granted and pinned to {}{}",
                    obs.scc_name,
                    list(&obs.pinned_tasks),
                    isolation_note(obs.isolation)
                ),
            )
        });
    let mut all = vec![ready, scc, rbac, tasks];
    for (type_, advice) in [
        (conditions::PREEMPTION_SAFE, &obs.preemption),
        (conditions::TASKS_ADMISSIBLE, &obs.tasks_admissible),
        (conditions::BUILDS_ADMITTED, &obs.builds),
        (conditions::CONFINED, &obs.confinement),
    ] {
        if let Some(advice) = advice {
            all.push(ConditionSpec::new(
                type_,
                advice.ok,
                advice.reason,
                advice.message.clone(),
            ));
        }
    }
    all
}

fn tasks_condition(obs: &Observation) -> ConditionSpec {
    let t = conditions::TASKS_PINNED;
    if let Some(ns) = &obs.namespace_missing {
        return ConditionSpec::new(
            t,
            false,
            reason::NAMESPACE_NOT_FOUND,
            format!("namespace {ns} does not exist"),
        );
    }
    if !obs.changed_tasks.is_empty() {
        let what: Vec<String> = obs
            .changed_tasks
            .iter()
            .map(|c| {
                let by = c
                    .changed_by
                    .as_ref()
                    .map(|b| format!(", last changed by {b}"))
                    .unwrap_or_default();
                format!(
                    "Task {} has spec digest {}, not the reviewed {}{by}",
                    c.task, c.live, c.reviewed
                )
            })
            .collect();
        let tasks: Vec<&str> = obs.changed_tasks.iter().map(|c| c.task.as_str()).collect();
        return ConditionSpec::new(
            t,
            false,
            reason::TASK_CONTENT_CHANGED,
            format!(
                "{}: {} not pinned and {} pods are refused; restore the reviewed Task, or review the change and set spec.taskDigests to the new digest",
                what.join("; "),
                if tasks.len() == 1 {
                    "it is"
                } else {
                    "they are"
                },
                if tasks.len() == 1 { "its" } else { "their" },
            ),
        );
    }
    if !obs.conflicting_tasks.is_empty() {
        let who: Vec<String> = obs
            .conflicting_tasks
            .iter()
            .map(|(task, holder)| format!("Task {task} is pinned by {holder}"))
            .collect();
        return ConditionSpec::new(
            t,
            false,
            reason::TASK_CONFLICT,
            format!(
                "{}: left unchanged; remove the other pin or drop the Task from this policy",
                who.join("; ")
            ),
        );
    }
    if !obs.failed_tasks.is_empty() {
        let what: Vec<String> = obs
            .failed_tasks
            .iter()
            .map(|(task, err)| format!("{task}: {err}"))
            .collect();
        return ConditionSpec::new(
            t,
            false,
            reason::APPLY_FAILED,
            format!("could not pin {}", what.join("; ")),
        );
    }
    if !obs.missing_tasks.is_empty() {
        return ConditionSpec::new(
            t,
            false,
            reason::TASK_NOT_FOUND,
            format!(
                "Task {} not found in namespace {}: create it (it is pinned as soon as it exists) or fix spec.tasks",
                list(&obs.missing_tasks),
                obs.namespace
            ),
        );
    }
    if obs.scc != Part::Ready {
        return ConditionSpec::new(
            t,
            false,
            reason::WAITING,
            "Tasks are pinned once the SCC is in place",
        );
    }
    ConditionSpec::new(
        t,
        true,
        reason::RECONCILED,
        format!(
            "{} set on {}",
            render::pin_annotations(&obs.scc_name, obs.isolation)
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
            list(&obs.pinned_tasks)
        ),
    )
}

/// What a pipeline owner reads in `Ready` about the policy's isolation mode.
pub fn isolation_note(isolation: Isolation) -> String {
    match isolation {
        Isolation::HostUserNamespace => String::new(),
        Isolation::PodUserNamespace => format!(
            "; the SCC admits only pods in their own user namespace: {}",
            crate::task_check::HOST_USERS_FIX
        ),
        Isolation::CrioUserNamespace => format!(
            "; the Tasks also ask CRI-O for a user namespace ({}={}, {}=true), which needs CRI-O's builder workload on the nodes (OpenShift has it)",
            keys::CRIO_USERNS_MODE_ANNOTATION,
            keys::CRIO_USERNS_MODE_VALUE,
            keys::OPENSHIFT_BUILDER_ANNOTATION
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_observation() -> Observation {
        Observation {
            scc_name: "buildpolicy-p".into(),
            scc: Part::Ready,
            rbac: Part::Ready,
            pinned_tasks: vec!["build".into()],
            ..Observation::default()
        }
    }

    fn find<'a>(c: &'a [ConditionSpec], t: &str) -> &'a ConditionSpec {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn all_parts_ready_makes_ready_true() {
        let c = conditions(&ready_observation());
        assert_eq!(c[0].type_, conditions::READY);
        assert!(c.iter().all(|c| c.status), "{c:?}");
        assert_eq!(
            c[0].message,
            "SCC buildpolicy-p is granted and pinned to build"
        );
    }

    #[test]
    fn rejection_marks_everything_false_with_its_reason() {
        let obs = Observation {
            rejection: Some(Rejection {
                reason: reason::CAPABILITY_NOT_ALLOWED,
                message: "NET_ADMIN".into(),
            }),
            ..ready_observation()
        };
        let c = conditions(&obs);
        let (kstatus, grant): (Vec<_>, Vec<_>) =
            c.iter().partition(|c| c.type_ == conditions::STALLED);
        assert!(
            grant
                .iter()
                .all(|c| !c.status && c.reason == reason::CAPABILITY_NOT_ALLOWED),
            "{grant:?}"
        );
        assert_eq!(kstatus.len(), 1, "{c:?}");
        assert!(kstatus[0].status && kstatus[0].reason == reason::CAPABILITY_NOT_ALLOWED);
    }

    fn kstatus_of(obs: &Observation) -> Vec<(&'static str, &'static str)> {
        conditions(obs)
            .into_iter()
            .filter(|c| c.type_ == conditions::STALLED || c.type_ == conditions::RECONCILING)
            .map(|c| {
                assert!(
                    c.status,
                    "kstatus conditions are present only when True: {c:?}"
                );
                (c.type_, c.reason)
            })
            .collect()
    }

    #[test]
    fn kstatus_stalled_for_a_person_reconciling_for_the_operator_neither_when_ready() {
        assert_eq!(kstatus_of(&ready_observation()), []);
        let waiting_for_namespace = Observation {
            namespace_missing: Some("builds".into()),
            rbac: Part::Withheld,
            pinned_tasks: vec![],
            ..ready_observation()
        };
        assert_eq!(
            kstatus_of(&waiting_for_namespace),
            [(conditions::RECONCILING, reason::NAMESPACE_NOT_FOUND)]
        );
        let write_failed = Observation {
            failed_tasks: vec![("build".into(), "forbidden".into())],
            ..ready_observation()
        };
        assert_eq!(
            kstatus_of(&write_failed),
            [(conditions::RECONCILING, reason::APPLY_FAILED)]
        );
        let conflict = Observation {
            conflicting_tasks: vec![("build".into(), "BuildPolicy older".into())],
            ..ready_observation()
        };
        assert_eq!(
            kstatus_of(&conflict),
            [(conditions::STALLED, reason::TASK_CONFLICT)]
        );
        let unsupported = Observation {
            rejection: Some(Rejection {
                reason: reason::UNSUPPORTED_BY_CLUSTER,
                message: "no userNamespaceLevel".into(),
            }),
            ..ready_observation()
        };
        assert_eq!(
            kstatus_of(&unsupported),
            [(conditions::STALLED, reason::UNSUPPORTED_BY_CLUSTER)]
        );
    }

    #[test]
    fn missing_namespace_is_the_ready_reason() {
        let obs = Observation {
            namespace_missing: Some("builds".into()),
            rbac: Part::Withheld,
            pinned_tasks: vec![],
            ..ready_observation()
        };
        let c = conditions(&obs);
        assert_eq!(
            find(&c, conditions::READY).reason,
            reason::NAMESPACE_NOT_FOUND
        );
        assert!(
            find(&c, conditions::READY)
                .message
                .contains("namespace builds does not exist")
        );
        assert!(find(&c, conditions::SCC_READY).status);
    }

    #[test]
    fn missing_service_account_and_task_are_named() {
        let obs = Observation {
            service_account_missing: Some("ns/sa".into()),
            missing_tasks: vec!["build".into()],
            pinned_tasks: vec![],
            ..ready_observation()
        };
        let c = conditions(&obs);
        assert_eq!(
            find(&c, conditions::READY).reason,
            reason::SERVICE_ACCOUNT_NOT_FOUND
        );
        assert_eq!(
            find(&c, conditions::TASKS_PINNED).reason,
            reason::TASK_NOT_FOUND
        );
        assert!(
            find(&c, conditions::TASKS_PINNED)
                .message
                .starts_with("Task build not found")
        );
    }

    #[test]
    fn conflicts_name_the_holder() {
        let obs = Observation {
            conflicting_tasks: vec![("build".into(), "BuildPolicy older".into())],
            ..ready_observation()
        };
        let c = conditions(&obs);
        assert_eq!(find(&c, conditions::READY).reason, reason::TASK_CONFLICT);
        assert!(
            find(&c, conditions::READY)
                .message
                .contains("Task build is pinned by BuildPolicy older")
        );
    }
}

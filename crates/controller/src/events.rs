//! What a reconcile tells the pipeline owner: everything one reconcile of a
//! policy did that is news (what it granted, repaired, revoked; `Ready`
//! changing; a refused build) becomes one Event, not one per object. A new
//! policy costs one Event; a hand edit repaired costs one.
//!
//! The reconcile steps [`record`] notes as they go; [`flush`] publishes them
//! as one Event when the reconcile ends, successful or not. The
//! kube-runtime Controller never runs two reconciles of one policy at once,
//! so the notes of a policy belong to one reconcile.

use std::collections::HashMap;
use std::sync::Mutex;

use buildpolicy_api::BuildPolicy;
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::context::Context;

/// The most a note of an Event may hold (events.k8s.io/v1 `note`).
const NOTE_LIMIT: usize = 1024;

/// The action of the note that reports `Ready` changing.
pub const READY_ACTION: &str = "UpdateStatus";

/// One thing a reconcile did.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub action: String,
    pub text: String,
}

/// The notes of the reconciles in flight, by policy name.
#[derive(Debug, Default)]
pub struct Journal {
    notes: Mutex<HashMap<String, Vec<Note>>>,
}

impl Journal {
    fn push(&self, policy: &str, note: Note) {
        self.notes
            .lock()
            .expect("the journal's lock is never poisoned")
            .entry(policy.to_owned())
            .or_default()
            .push(note);
    }

    fn take(&self, policy: &str) -> Vec<Note> {
        self.notes
            .lock()
            .expect("the journal's lock is never poisoned")
            .remove(policy)
            .unwrap_or_default()
    }
}

/// The kind of object an [`Outcome`] concerns (a Task: its pin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scc,
    Role,
    RoleBinding,
    AdmissionPolicy,
    AdmissionBinding,
    Task,
}

impl Kind {
    /// The Kubernetes kind, as Events and the metrics' `kind` label name it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Scc => "SecurityContextConstraints",
            Self::Role => "Role",
            Self::RoleBinding => "RoleBinding",
            Self::AdmissionPolicy => "ValidatingAdmissionPolicy",
            Self::AdmissionBinding => "ValidatingAdmissionPolicyBinding",
            Self::Task => "Task",
        }
    }
}

/// The objects a grant is made of, each with its [`Kind`].
pub trait Granted: kube::Resource<DynamicType = ()> {
    const KIND: Kind;
}

impl Granted for buildpolicy_api::SecurityContextConstraints {
    const KIND: Kind = Kind::Scc;
}

impl Granted for k8s_openapi::api::rbac::v1::Role {
    const KIND: Kind = Kind::Role;
}

impl Granted for k8s_openapi::api::rbac::v1::RoleBinding {
    const KIND: Kind = Kind::RoleBinding;
}

impl Granted for k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy {
    const KIND: Kind = Kind::AdmissionPolicy;
}

impl Granted for k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding {
    const KIND: Kind = Kind::AdmissionBinding;
}

/// One thing a reconcile did that the pipeline owner hears of.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// An object created, or brought to what the policy asks, for the grant.
    Granted { kind: Kind, text: String },
    /// A hand edit of a granted object undone (counted as a drift
    /// correction).
    Repaired { kind: Kind, text: String },
    /// Part of a grant withdrawn (counted as a revocation).
    Revoked { kind: Kind, text: String },
    /// Admission refused the pod of a pinned Task's run.
    BuildRefused { reason: String, text: String },
    /// `Ready` changed.
    ReadyChanged {
        ready: bool,
        reason: String,
        text: String,
    },
}

impl Outcome {
    /// The Event note this outcome becomes: its type, reason and action.
    fn note(self) -> Note {
        let note = |type_, reason: &str, action: String, text| Note {
            type_,
            reason: reason.to_owned(),
            action,
            text,
        };
        match self {
            Self::Granted { kind, text } => match kind {
                Kind::Scc => note(EventType::Normal, "SCCApplied", "CreateSCC".into(), text),
                Kind::Task => note(EventType::Normal, "TaskPinned", "PinTask".into(), text),
                Kind::Role | Kind::RoleBinding => note(
                    EventType::Normal,
                    "RBACApplied",
                    format!("Create{}", kind.name()),
                    text,
                ),
                Kind::AdmissionPolicy | Kind::AdmissionBinding => note(
                    EventType::Normal,
                    "ConfinementApplied",
                    format!("Create{}", kind.name()),
                    text,
                ),
            },
            Self::Repaired { kind, text } => {
                let action = match kind {
                    Kind::Scc => "RepairSCC".to_owned(),
                    Kind::Task => "RepairPin".to_owned(),
                    _ => format!("Repair{}", kind.name()),
                };
                note(EventType::Warning, "DriftCorrected", action, text)
            }
            Self::Revoked { kind, text } => {
                let action = match kind {
                    Kind::Task => "UnpinTask".to_owned(),
                    _ => format!("Delete{}", kind.name()),
                };
                note(EventType::Normal, "Revoked", action, text)
            }
            Self::BuildRefused { reason, text } => {
                note(EventType::Warning, &reason, "ObserveBuild".into(), text)
            }
            Self::ReadyChanged {
                ready,
                reason,
                text,
            } => {
                let type_ = if ready {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                note(type_, &reason, READY_ACTION.into(), text)
            }
        }
    }
}

/// Notes what the reconcile of `policy` did, and counts repairs and
/// revocations in the metrics; published as one Event by [`flush`].
pub fn record(ctx: &Context, policy: &BuildPolicy, outcome: Outcome) {
    match &outcome {
        Outcome::Repaired { kind, .. } => ctx.metrics.drift_corrected(kind.name()),
        Outcome::Revoked { kind, .. } => ctx.metrics.revoked(kind.name()),
        _ => {}
    }
    ctx.journal.push(&policy.name_any(), outcome.note());
}

/// Publishes the notes of the reconcile of `policy` that just ended as one
/// Event (none when it did nothing new).
pub async fn flush(ctx: &Context, policy: &BuildPolicy) {
    let Some(event) = combine(ctx.journal.take(&policy.name_any())) else {
        return;
    };
    // Warnings (a repair, a refused build) are what repeats: kube's Recorder
    // folds a repeat within six minutes into the first Event's series, and
    // keeps every Event it published for that long to do so. A Normal Event
    // reports a change of outcome, which does not repeat, so it goes through
    // a Recorder that keeps nothing: otherwise every new policy's Event
    // would stay in memory for six minutes (BENCHMARKS.md has the heap
    // profile that found it).
    let recorder = match event.type_ {
        EventType::Warning => ctx.recorder.clone(),
        EventType::Normal => Recorder::new(ctx.client.clone(), ctx.reporter.clone()),
    };
    if let Err(error) = recorder.publish(&event, &policy.object_ref(&())).await {
        warn!(%error, "could not publish event");
    }
}

/// One Event for the notes of one reconcile. What needs attention leads:
/// warnings (a repair, a refusal) first, then `Ready` changing, then the
/// rest, in the order they happened; the Event takes the reason and action
/// of the first, and is a Warning if any note is. The texts are joined, and
/// cut to the 1 KiB a note may hold, saying how many were left out.
pub fn combine(mut notes: Vec<Note>) -> Option<Event> {
    let rank = |n: &Note| match (&n.type_, n.action.as_str()) {
        (EventType::Warning, _) => 0,
        (_, READY_ACTION) => 1,
        _ => 2,
    };
    notes.sort_by_key(rank);
    let first = notes.first()?;
    let type_ = if notes.iter().any(|n| n.type_ == EventType::Warning) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    let mut text = String::new();
    for (i, note) in notes.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let left = notes.len() - i;
        let more = format!("; and {left} more");
        if text.len() + sep.len() + note.text.len() + more.len() > NOTE_LIMIT && left > 1 {
            text.push_str(&more);
            break;
        }
        text.push_str(sep);
        text.push_str(&note.text);
    }
    if text.len() > NOTE_LIMIT {
        let mut cut = NOTE_LIMIT - '…'.len_utf8();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Some(Event {
        type_,
        reason: first.reason.clone(),
        note: Some(text),
        action: first.action.clone(),
        secondary: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(type_: EventType, reason: &str, action: &str, text: &str) -> Note {
        Note {
            type_,
            reason: reason.into(),
            action: action.into(),
            text: text.into(),
        }
    }

    #[test]
    fn each_outcome_has_its_type_reason_and_action() {
        let text = || "t".to_owned();
        let cases = [
            (
                Outcome::Granted {
                    kind: Kind::Scc,
                    text: text(),
                },
                note(EventType::Normal, "SCCApplied", "CreateSCC", "t"),
            ),
            (
                Outcome::Granted {
                    kind: Kind::RoleBinding,
                    text: text(),
                },
                note(EventType::Normal, "RBACApplied", "CreateRoleBinding", "t"),
            ),
            (
                Outcome::Granted {
                    kind: Kind::Task,
                    text: text(),
                },
                note(EventType::Normal, "TaskPinned", "PinTask", "t"),
            ),
            (
                Outcome::Repaired {
                    kind: Kind::Scc,
                    text: text(),
                },
                note(EventType::Warning, "DriftCorrected", "RepairSCC", "t"),
            ),
            (
                Outcome::Repaired {
                    kind: Kind::Role,
                    text: text(),
                },
                note(EventType::Warning, "DriftCorrected", "RepairRole", "t"),
            ),
            (
                Outcome::Repaired {
                    kind: Kind::Task,
                    text: text(),
                },
                note(EventType::Warning, "DriftCorrected", "RepairPin", "t"),
            ),
            (
                Outcome::Revoked {
                    kind: Kind::Role,
                    text: text(),
                },
                note(EventType::Normal, "Revoked", "DeleteRole", "t"),
            ),
            (
                Outcome::Revoked {
                    kind: Kind::Task,
                    text: text(),
                },
                note(EventType::Normal, "Revoked", "UnpinTask", "t"),
            ),
            (
                Outcome::BuildRefused {
                    reason: "PodRefused".into(),
                    text: text(),
                },
                note(EventType::Warning, "PodRefused", "ObserveBuild", "t"),
            ),
            (
                Outcome::ReadyChanged {
                    ready: true,
                    reason: "Granted".into(),
                    text: text(),
                },
                note(EventType::Normal, "Granted", READY_ACTION, "t"),
            ),
            (
                Outcome::ReadyChanged {
                    ready: false,
                    reason: "TaskNotFound".into(),
                    text: text(),
                },
                note(EventType::Warning, "TaskNotFound", READY_ACTION, "t"),
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(outcome.clone().note(), want, "{outcome:?}");
        }
    }

    #[test]
    fn nothing_new_is_no_event() {
        assert!(combine(vec![]).is_none());
    }

    #[test]
    fn a_new_policy_is_one_event_led_by_ready() {
        let event = combine(vec![
            note(
                EventType::Normal,
                "SCCApplied",
                "CreateSCC",
                "SCC s allows SETUID",
            ),
            note(EventType::Normal, "RBACApplied", "CreateRole", "Role ns/s"),
            note(
                EventType::Normal,
                "TaskPinned",
                "PinTask",
                "Task ns/build pinned",
            ),
            note(
                EventType::Normal,
                "Reconciled",
                READY_ACTION,
                "Ready=True: granted",
            ),
        ])
        .unwrap();
        assert_eq!(event.type_, EventType::Normal);
        assert_eq!(event.reason, "Reconciled");
        assert_eq!(event.action, READY_ACTION);
        assert_eq!(
            event.note.as_deref(),
            Some("Ready=True: granted; SCC s allows SETUID; Role ns/s; Task ns/build pinned")
        );
    }

    #[test]
    fn a_repair_leads_and_makes_it_a_warning() {
        let event = combine(vec![
            note(EventType::Normal, "TaskPinned", "PinTask", "pinned"),
            note(
                EventType::Warning,
                "DriftCorrected",
                "RepairSCC",
                "SCC restored",
            ),
        ])
        .unwrap();
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, "DriftCorrected");
        assert_eq!(event.note.as_deref(), Some("SCC restored; pinned"));
    }

    #[test]
    fn a_long_reconcile_is_cut_to_the_note_limit_and_says_how_much_is_left_out() {
        let notes: Vec<Note> = (0..100)
            .map(|i| {
                note(
                    EventType::Normal,
                    "Revoked",
                    "UnpinTask",
                    &format!("Task ns/task-{i:03} unpinned"),
                )
            })
            .collect();
        let text = combine(notes).unwrap().note.unwrap();
        assert!(text.len() <= NOTE_LIMIT, "{}", text.len());
        assert!(text.starts_with("Task ns/task-000 unpinned; Task ns/task-001"));
        let left: usize = text
            .rsplit_once("; and ")
            .and_then(|(_, tail)| tail.strip_suffix(" more"))
            .and_then(|n| n.parse().ok())
            .expect("says how many were left out");
        let shown = text.matches("unpinned").count();
        assert_eq!(shown + left, 100);
    }

    #[test]
    fn one_huge_note_is_cut_on_a_character_boundary() {
        let text = combine(vec![note(EventType::Normal, "R", "A", &"é".repeat(2000))])
            .unwrap()
            .note
            .unwrap();
        assert!(text.len() <= NOTE_LIMIT);
        assert!(text.ends_with('…'));
    }
}

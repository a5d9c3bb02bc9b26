//! What `/readyz` and `/healthz` report: whether every watch is synced and
//! alive, and whether reconciles finish.
//!
//! - **Ready**: every cache has seen a full list, no watch has been failing
//!   (error after error, without one event in between) for longer than a
//!   grace period, and no watch task has stopped. A watch retries by itself
//!   with a backoff, so one failed attempt is not worth a probe failure; an
//!   API server that stays away, or a permission taken from the operator, is.
//! - **Live**: no reconcile has been running longer than a limit. A
//!   reconcile only reads caches and makes a handful of requests; one that
//!   runs for minutes waits on something that will not answer (a hung
//!   connection, a lock), and the controller's queue behind it is stuck.
//!   Restarting the process is what unsticks it.
//!
//! Both are computed when asked, from timestamps the watch tasks and the
//! reconciles leave here: nothing runs in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shared by the watch tasks, the reconciles and the admin listener.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Per watched kind.
    watches: BTreeMap<String, Watch>,
    /// Per policy whose reconcile is running: since when. The controller
    /// never runs two reconciles of one policy at once.
    running: HashMap<String, Instant>,
}

#[derive(Default)]
struct Watch {
    synced: bool,
    /// Since when every attempt failed, and the last error.
    failing: Option<(Instant, String)>,
    stopped: bool,
}

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: use it.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new watch, not synced yet.
    pub(crate) fn watch_started(&self, kind: &str) -> WatchReporter {
        self.state()
            .watches
            .insert(kind.to_owned(), Watch::default());
        WatchReporter {
            health: self.clone(),
            kind: kind.to_owned(),
        }
    }

    /// Marks a reconcile of `policy` as running until the guard drops
    /// (it finished, failed, or was cancelled).
    pub(crate) fn reconcile_running(&self, policy: &str) -> Running {
        self.state()
            .running
            .insert(policy.to_owned(), Instant::now());
        Running {
            health: self.clone(),
            policy: policy.to_owned(),
        }
    }

    /// `Ok` when every watch is synced and alive; otherwise what is wrong,
    /// one clause per watch. A watch counts as failing once it has failed
    /// for longer than `grace` without a success in between.
    pub fn readiness(&self, grace: Duration) -> Result<(), String> {
        self.readiness_at(Instant::now(), grace)
    }

    fn readiness_at(&self, now: Instant, grace: Duration) -> Result<(), String> {
        let state = self.state();
        let mut problems = Vec::new();
        for (kind, watch) in &state.watches {
            if watch.stopped {
                problems.push(format!("the {kind} watch stopped"));
            } else if let Some((since, error)) = &watch.failing
                && now.saturating_duration_since(*since) > grace
            {
                let secs = now.saturating_duration_since(*since).as_secs();
                problems.push(format!(
                    "the {kind} watch has been failing for {secs}s: {error}"
                ));
            } else if !watch.synced {
                problems.push(format!("the {kind} cache is not synced yet"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// `Ok` unless a reconcile has been running for longer than `limit`;
    /// then which one, and for how long.
    pub fn liveness(&self, limit: Duration) -> Result<(), String> {
        self.liveness_at(Instant::now(), limit)
    }

    fn liveness_at(&self, now: Instant, limit: Duration) -> Result<(), String> {
        let state = self.state();
        let mut stuck: Vec<_> = state
            .running
            .iter()
            .map(|(policy, since)| (now.saturating_duration_since(*since), policy))
            .filter(|(running, _)| *running > limit)
            .collect();
        if stuck.is_empty() {
            return Ok(());
        }
        stuck.sort_by(|a, b| b.cmp(a));
        let (longest, policy) = stuck[0];
        Err(format!(
            "{} reconcile(s) running for longer than {}s; the longest, of BuildPolicy {policy}, for {}s",
            stuck.len(),
            limit.as_secs(),
            longest.as_secs()
        ))
    }
}

/// What one watch task reports.
pub(crate) struct WatchReporter {
    health: Health,
    kind: String,
}

impl WatchReporter {
    fn update(&self, f: impl FnOnce(&mut Watch)) {
        if let Some(watch) = self.health.state().watches.get_mut(&self.kind) {
            f(watch);
        }
    }

    /// An event arrived: the watch works.
    pub(crate) fn ok(&self) {
        self.update(|w| w.failing = None);
    }

    /// A full list arrived.
    pub(crate) fn synced(&self) {
        self.update(|w| {
            w.failing = None;
            w.synced = true;
        });
    }

    /// An attempt failed; the watch retries by itself.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        let error = error.to_string();
        self.update(|w| match &mut w.failing {
            Some((_, last)) => *last = error,
            None => w.failing = Some((Instant::now(), error)),
        });
    }
}

impl Drop for WatchReporter {
    /// The task ended (the controller stops, or the task panicked).
    fn drop(&mut self) {
        self.update(|w| w.stopped = true);
    }
}

/// A reconcile in progress; see [`Health::reconcile_running`].
pub(crate) struct Running {
    health: Health,
    policy: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.health.state().running.remove(&self.policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn ready_once_every_watch_is_synced() {
        let health = Health::default();
        let tasks = health.watch_started("Task");
        let sccs = health.watch_started("SecurityContextConstraints");
        assert_eq!(
            health.readiness(GRACE),
            Err("the SecurityContextConstraints cache is not synced yet; the Task cache is not synced yet".into())
        );
        tasks.synced();
        assert!(
            health
                .readiness(GRACE)
                .unwrap_err()
                .contains("SecurityContextConstraints")
        );
        sccs.synced();
        assert_eq!(health.readiness(GRACE), Ok(()));
    }

    #[test]
    fn a_watch_failing_longer_than_the_grace_makes_it_unready_until_an_event_arrives() {
        let health = Health::default();
        let tasks = health.watch_started("Task");
        tasks.synced();
        let start = Instant::now();
        tasks.failed(&"connection refused");
        assert_eq!(health.readiness_at(start + GRACE / 2, GRACE), Ok(()));
        tasks.failed(&"connection reset");
        let err = health
            .readiness_at(start + GRACE * 2, GRACE)
            .expect_err("failing for twice the grace");
        assert!(
            err.starts_with("the Task watch has been failing for"),
            "{err}"
        );
        assert!(err.ends_with(": connection reset"), "the last error: {err}");
        tasks.ok();
        assert_eq!(health.readiness_at(start + GRACE * 2, GRACE), Ok(()));
    }

    #[test]
    fn a_stopped_watch_is_never_ready() {
        let health = Health::default();
        let tasks = health.watch_started("Task");
        tasks.synced();
        drop(tasks);
        assert_eq!(
            health.readiness(GRACE),
            Err("the Task watch stopped".into())
        );
    }

    #[test]
    fn live_unless_a_reconcile_outlives_the_limit() {
        let health = Health::default();
        let limit = Duration::from_secs(60);
        let now = Instant::now();
        let a = health.reconcile_running("a");
        let b = health.reconcile_running("b");
        assert_eq!(health.liveness_at(now + limit / 2, limit), Ok(()));
        let err = health
            .liveness_at(now + limit * 2, limit)
            .expect_err("two reconciles past the limit");
        assert!(
            err.starts_with("2 reconcile(s) running for longer than 60s"),
            "{err}"
        );
        drop(a);
        drop(b);
        assert_eq!(health.liveness_at(now + limit * 2, limit), Ok(()));
    }
}

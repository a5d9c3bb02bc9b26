//! Progress as the watches see it: per policy, which of its four rendered
//! objects exist (its Task carrying the pin), and whether its Ready
//! condition is True; each count over time since [`Tracker::begin`].
//!
//! The same tracker, fed by the same watches (`watches.rs`), measures the
//! baselines and the operator. A count's time is when its watch event
//! reached this process.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::logging::log;
use crate::pyfmt::round_to;

/// One of the four objects a policy's grant consists of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Scc,
    Role,
    RoleBinding,
    /// Its Task, carrying the pin.
    Task,
}

const PARTS: usize = 4;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Policies whose four objects exist.
    Objects,
    /// Policies whose Ready condition is True.
    Ready,
}

impl Count {
    fn name(self) -> &'static str {
        match self {
            Count::Objects => "objects",
            Count::Ready => "ready",
        }
    }
}

/// An SCC or a Task as a watch event showed it, for the drift latencies.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub object: SeenObject,
    pub resource_version: u64,
    /// When the event arrived.
    pub at: Instant,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SeenObject {
    Scc {
        name: String,
        allowed_capabilities: Option<Vec<String>>,
    },
    Task {
        namespace: String,
        name: String,
        required_scc: Option<String>,
    },
}

/// The counts and their timelines: the tracker's pure part.
#[derive(Debug, Default)]
struct Progress {
    names: HashSet<String>,
    parts: HashMap<String, HashSet<Part>>,
    objects_done: HashSet<String>,
    ready: HashSet<String>,
    t0: Option<Instant>,
    objects_timeline: Vec<(f64, usize)>,
    ready_timeline: Vec<(f64, usize)>,
}

impl Progress {
    fn new(names: &[String]) -> Self {
        Self {
            names: names.iter().cloned().collect(),
            ..Self::default()
        }
    }

    fn begin(&mut self, t0: Instant) {
        self.t0 = Some(t0);
        self.objects_timeline = vec![(0.0, self.objects_done.len())];
        self.ready_timeline = vec![(0.0, self.ready.len())];
    }

    /// Seconds since [`Progress::begin`]; negative for an event that arrived
    /// before it.
    fn since_begin(&self, t: Instant) -> Option<f64> {
        let t0 = self.t0?;
        Some(match t.checked_duration_since(t0) {
            Some(after) => after.as_secs_f64(),
            None => -t0.duration_since(t).as_secs_f64(),
        })
    }

    /// Whether a count changed.
    fn part(&mut self, policy: Option<&str>, part: Part, present: bool, t: Instant) -> bool {
        let Some(policy) = policy.filter(|p| self.names.contains(*p)) else {
            return false;
        };
        let parts = self.parts.entry(policy.to_owned()).or_default();
        if present {
            parts.insert(part);
        } else {
            parts.remove(&part);
        }
        let done = parts.len() == PARTS;
        if done == self.objects_done.contains(policy) {
            return false;
        }
        if done {
            self.objects_done.insert(policy.to_owned());
        } else {
            self.objects_done.remove(policy);
        }
        if let Some(at) = self.since_begin(t) {
            self.objects_timeline.push((at, self.objects_done.len()));
        }
        true
    }

    /// Whether the count changed.
    fn policy_ready(&mut self, policy: &str, ready: bool, t: Instant) -> bool {
        if !self.names.contains(policy) || ready == self.ready.contains(policy) {
            return false;
        }
        if ready {
            self.ready.insert(policy.to_owned());
        } else {
            self.ready.remove(policy);
        }
        if let Some(at) = self.since_begin(t) {
            self.ready_timeline.push((at, self.ready.len()));
        }
        true
    }

    fn count(&self, what: Count) -> usize {
        match what {
            Count::Objects => self.objects_done.len(),
            Count::Ready => self.ready.len(),
        }
    }

    fn timeline(&self, what: Count) -> &[(f64, usize)] {
        match what {
            Count::Objects => &self.objects_timeline,
            Count::Ready => &self.ready_timeline,
        }
    }

    /// When the count last changed since `begin`, if it did.
    fn last_time(&self, what: Count) -> Option<f64> {
        let timeline = self.timeline(what);
        (timeline.len() > 1).then(|| timeline[timeline.len() - 1].0)
    }
}

/// The tracker the watches feed and the benchmark waits on.
pub struct Tracker {
    progress: Mutex<Progress>,
    changed: watch::Sender<()>,
    seen: broadcast::Sender<Seen>,
}

impl Tracker {
    /// A tracker of the policies `names`.
    pub fn new(names: &[String]) -> Self {
        Self {
            progress: Mutex::new(Progress::new(names)),
            changed: watch::Sender::new(()),
            seen: broadcast::Sender::new(1024),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the timelines at `t0`, with the counts as they are.
    pub fn begin(&self, t0: Instant) {
        self.progress().begin(t0);
    }

    /// A watch saw `part` of `policy` appear (`present`) or go.
    pub fn part(&self, policy: Option<&str>, part: Part, present: bool, t: Instant) {
        if self.progress().part(policy, part, present, t) {
            self.changed.send_replace(());
        }
    }

    /// A watch saw `policy` with or without `Ready=True`.
    pub fn policy_ready(&self, policy: &str, ready: bool, t: Instant) {
        if self.progress().policy_ready(policy, ready, t) {
            self.changed.send_replace(());
        }
    }

    /// Passes an SCC or Task on to whoever waits for one ([`Tracker::subscribe`]).
    pub fn saw(&self, seen: Seen) {
        // Nobody listening is fine.
        let _ = self.seen.send(seen);
    }

    /// The SCCs and Tasks the watches see from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Seen> {
        self.seen.subscribe()
    }

    pub fn count(&self, what: Count) -> usize {
        self.progress().count(what)
    }

    /// When the count last changed since `begin`.
    pub fn last_time(&self, what: Count) -> Option<f64> {
        self.progress().last_time(what)
    }

    /// When the count first changed since `begin` (the first Ready).
    pub fn first_time(&self, what: Count) -> Option<f64> {
        self.progress().timeline(what).get(1).map(|(t, _)| *t)
    }

    /// The count over time, at most 400 points.
    pub fn thinned_timeline(&self, what: Count) -> Vec<(f64, i64)> {
        thin(self.progress().timeline(what), TIMELINE_POINTS)
    }

    /// Objects of the policies that the watches still see.
    pub fn parts_left(&self) -> usize {
        self.progress().parts.values().map(HashSet::len).sum()
    }

    /// Waits until the count reaches `count` (or, with `exact`, equals
    /// it), at most `timeout`; logs progress every 30 s. Whether it did.
    pub async fn wait(&self, what: Count, count: usize, timeout: Duration, exact: bool) -> bool {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut next_log = start + Duration::from_secs(30);
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let have = self.count(what);
            if (exact && have == count) || (!exact && have >= count) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if now >= next_log {
                let since = self.progress().since_begin(now).unwrap_or(0.0);
                log!("  ... {}: {have}/{count} after {since:.0}s", what.name());
                next_log = now + Duration::from_secs(30);
            }
            let nap = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(nap, changed.changed()).await;
        }
    }
}

/// Points a timeline keeps in results.json.
const TIMELINE_POINTS: usize = 400;

/// At most about `keep` points, evenly picked, always with the first and
/// the last; times rounded to milliseconds.
// Timeline lengths and counts, far below 2^53.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]
pub fn thin(timeline: &[(f64, usize)], keep: usize) -> Vec<(f64, i64)> {
    let point = |(t, c): &(f64, usize)| (round_to(*t, 3), *c as i64);
    if timeline.len() <= keep {
        return timeline.iter().map(point).collect();
    }
    let step = timeline.len() as f64 / keep as f64;
    (0..keep)
        .map(|k| &timeline[(k as f64 * step) as usize])
        .chain(timeline.last())
        .map(point)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("bp-{i}")).collect()
    }

    #[test]
    fn a_policy_counts_once_all_four_objects_exist() {
        let mut p = Progress::new(&names(2));
        let t0 = Instant::now();
        p.begin(t0);
        let t = t0 + Duration::from_millis(1500);
        for part in [Part::Scc, Part::Role, Part::RoleBinding] {
            assert!(!p.part(Some("bp-0"), part, true, t));
        }
        assert!(p.part(Some("bp-0"), Part::Task, true, t));
        assert_eq!(p.count(Count::Objects), 1);
        assert_eq!(p.last_time(Count::Objects), Some(1.5));
        // The pin taken off: no longer complete.
        assert!(p.part(Some("bp-0"), Part::Task, false, t + Duration::from_secs(1)));
        assert_eq!(p.count(Count::Objects), 0);
        assert_eq!(p.timeline(Count::Objects), [(0.0, 0), (1.5, 1), (2.5, 0)]);
    }

    #[test]
    fn other_objects_are_ignored() {
        let mut p = Progress::new(&names(1));
        let t = Instant::now();
        assert!(!p.part(None, Part::Scc, true, t));
        assert!(!p.part(Some("someone-else"), Part::Scc, true, t));
        assert!(!p.policy_ready("someone-else", true, t));
        assert!(p.parts.is_empty());
    }

    #[test]
    fn ready_counts_and_times_from_begin() {
        let mut p = Progress::new(&names(3));
        let t0 = Instant::now();
        // Before begin: counted, not timed.
        assert!(p.policy_ready("bp-0", true, t0));
        p.begin(t0 + Duration::from_secs(10));
        assert_eq!(p.last_time(Count::Ready), None);
        assert!(p.policy_ready("bp-1", true, t0 + Duration::from_secs(12)));
        assert!(!p.policy_ready("bp-1", true, t0 + Duration::from_secs(13)));
        assert_eq!(p.timeline(Count::Ready), [(0.0, 1), (2.0, 2)]);
        // An event that arrived just before begin is timed negatively.
        assert!(p.policy_ready("bp-2", true, t0 + Duration::from_secs(9)));
        assert_eq!(p.last_time(Count::Ready), Some(-1.0));
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let timeline: Vec<(f64, usize)> = (0..1000)
            .map(|i| (f64::from(i) / 1000.0, i as usize))
            .collect();
        let thinned = thin(&timeline, 400);
        assert_eq!(thinned.len(), 401);
        assert_eq!(thinned[0], (0.0, 0));
        assert_eq!(thinned[1], (0.002, 2));
        assert_eq!(thinned[400], (0.999, 999));
        let short = [(0.0, 0), (0.123_45, 1)];
        assert_eq!(thin(&short, 400), [(0.0, 0), (0.123, 1)]);
    }

    #[tokio::test]
    async fn waiting_ends_at_the_count_or_the_deadline() {
        let tracker = std::sync::Arc::new(Tracker::new(&names(2)));
        tracker.begin(Instant::now());
        assert!(!tracker.wait(Count::Ready, 1, Duration::ZERO, false).await);
        let feeder = tracker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            feeder.policy_ready("bp-0", true, Instant::now());
            feeder.policy_ready("bp-1", true, Instant::now());
        });
        assert!(
            tracker
                .wait(Count::Ready, 2, Duration::from_secs(5), false)
                .await
        );
        assert!(tracker.wait(Count::Objects, 0, Duration::ZERO, true).await);
    }
}

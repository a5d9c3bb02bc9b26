//! Prometheus metrics of the controller, all prefixed `buildpolicy_`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The controller's metrics, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    reconciliations: IntCounterVec,
    reconcile_duration: Histogram,
    errors: IntCounterVec,
    drift_corrections: IntCounterVec,
    revocations: IntCounterVec,
    policies: IntGaugeVec,
    managed_objects: ManagedObjects,
    builds_refused: IntCounter,
    pub leader: IntGauge,
    ready_by_policy: Mutex<BTreeMap<String, bool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "buildpolicy_reconciliations_total",
                "Reconciles of BuildPolicies, by result (success, error).",
            ),
            &["result"],
        )
        .unwrap();
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "buildpolicy_reconcile_duration_seconds",
                "Time one reconcile of a BuildPolicy took.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new(
                "buildpolicy_reconcile_errors_total",
                "Failed reconciles, by reason.",
            ),
            &["reason"],
        )
        .unwrap();
        let drift_corrections = IntCounterVec::new(
            Opts::new(
                "buildpolicy_drift_corrections_total",
                "Managed objects found changed by hand (or missing) and repaired, by kind.",
            ),
            &["kind"],
        )
        .unwrap();
        let revocations = IntCounterVec::new(
            Opts::new(
                "buildpolicy_revocations_total",
                "Grants withdrawn because a policy was deleted, shrunk, moved or refused, by kind of object.",
            ),
            &["kind"],
        )
        .unwrap();
        let policies = IntGaugeVec::new(
            Opts::new(
                "buildpolicy_policies",
                "BuildPolicies by the status of their Ready condition.",
            ),
            &["ready"],
        )
        .unwrap();
        let managed_objects = ManagedObjects::new();
        let builds_refused = IntCounter::new(
            "buildpolicy_builds_refused_total",
            "TaskRuns of pinned Tasks that Tekton failed because admission refused their pod, seen while this replica led.",
        )
        .unwrap();
        let leader = IntGauge::new(
            "buildpolicy_leader",
            "1 while this replica holds the leader lease and reconciles, 0 on standby.",
        )
        .unwrap();
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(errors.clone()),
            Box::new(drift_corrections.clone()),
            Box::new(revocations.clone()),
            Box::new(policies.clone()),
            Box::new(managed_objects.clone()),
            Box::new(builds_refused.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).unwrap();
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        // Expose every series from the start, so rates work from the first scrape.
        for result in ["success", "error"] {
            reconciliations.with_label_values(&[result]);
        }
        for ready in ["true", "false"] {
            policies.with_label_values(&[ready]);
        }
        for reason in crate::error::METRIC_REASONS {
            errors.with_label_values(&[reason]);
        }
        Self {
            registry,
            reconciliations,
            reconcile_duration,
            errors,
            drift_corrections,
            revocations,
            policies,
            managed_objects,
            builds_refused,
            leader,
            ready_by_policy: Mutex::default(),
        }
    }

    /// Starts timing a reconcile; the time is recorded when the guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub fn reconciled(&self, ok: bool) {
        self.reconciliations
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
    }

    pub fn reconcile_failed(&self, reason: &str) {
        self.errors.with_label_values(&[reason]).inc();
    }

    pub fn drift_corrected(&self, kind: &str) {
        self.drift_corrections.with_label_values(&[kind]).inc();
    }

    pub fn revoked(&self, kind: &str) {
        self.revocations.with_label_values(&[kind]).inc();
    }

    /// Records the Ready status of a policy (`None`: the policy is gone).
    pub fn policy_ready(&self, policy: &str, ready: Option<bool>) {
        let mut by_policy = self.ready_by_policy.lock().expect("metrics lock");
        match ready {
            Some(r) => by_policy.insert(policy.to_owned(), r),
            None => by_policy.remove(policy),
        };
        let ready = by_policy.values().filter(|r| **r).count() as i64;
        self.policies.with_label_values(&["true"]).set(ready);
        self.policies
            .with_label_values(&["false"])
            .set(by_policy.len() as i64 - ready);
    }

    pub fn build_refused(&self) {
        self.builds_refused.inc();
    }

    /// From now on, `buildpolicy_managed_objects` counts the objects in
    /// `caches` at each scrape (a new controller's caches replace the last).
    pub fn count_managed_objects_in(&self, caches: crate::caches::Caches) {
        *self.managed_objects.caches.lock().expect("not poisoned") = Some(caches);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("metrics encode");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }

    /// Reconciles counted so far (both results); tests use it to know a
    /// restarted controller has looked at the cluster.
    pub fn reconcile_count(&self) -> u64 {
        ["success", "error"]
            .iter()
            .map(|r| self.reconciliations.with_label_values(&[r]).get())
            .sum()
    }
}

/// Records the duration of a reconcile when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// `buildpolicy_managed_objects`, computed when scraped: the objects in the
/// leader's caches that carry the policy label, by kind. Nothing is counted
/// while reconciling, so a reconcile never scans the caches for it.
#[derive(Clone)]
struct ManagedObjects {
    gauge: IntGaugeVec,
    caches: std::sync::Arc<Mutex<Option<crate::caches::Caches>>>,
}

impl ManagedObjects {
    fn new() -> Self {
        Self {
            gauge: IntGaugeVec::new(
                Opts::new(
                    "buildpolicy_managed_objects",
                    "Objects the operator currently manages, by kind.",
                ),
                &["kind"],
            )
            .unwrap(),
            caches: std::sync::Arc::default(),
        }
    }
}

impl prometheus::core::Collector for ManagedObjects {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use buildpolicy_api::keys::{Ownership, ownership};
        let Some(caches) = self.caches.lock().expect("not poisoned").clone() else {
            return Vec::new();
        };
        // Objects the operator created; Tasks, the ones it pinned.
        fn count<K: kube::Resource + Clone>(
            store: &kube::runtime::reflector::Store<K>,
            ours: fn(Ownership<'_>) -> bool,
        ) -> i64
        where
            K::DynamicType: Eq + std::hash::Hash + Clone,
        {
            let n = store
                .state()
                .iter()
                .filter(|o| ours(ownership(o.as_ref())))
                .count();
            i64::try_from(n).unwrap_or(i64::MAX)
        }
        fn managed(o: Ownership<'_>) -> bool {
            o.managed().is_some()
        }
        fn pinned(o: Ownership<'_>) -> bool {
            o.policy().is_some()
        }
        // The RBAC caches hold everyone's Roles and RoleBindings.
        for (kind, n) in [
            ("SecurityContextConstraints", count(&caches.sccs, managed)),
            ("Role", count(&caches.roles, managed)),
            ("RoleBinding", count(&caches.role_bindings, managed)),
            ("Task", count(&caches.tasks, pinned)),
        ] {
            self.gauge.with_label_values(&[kind]).set(n);
        }
        self.gauge.collect()
    }
}

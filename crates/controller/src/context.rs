//! What every reconcile gets: a client, the event recorder, metrics, the
//! configuration and the caches.

use std::sync::Arc;
use std::time::Duration;

use buildpolicy_policy::Ceiling;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};

use crate::caches::Caches;
use crate::metrics::Metrics;

/// How the controller behaves; built once in `main`.
#[derive(Clone, Debug)]
pub struct Config {
    /// What policies may ask for at most, at start; [`crate::Handle::ceiling`]
    /// changes it while the controller runs.
    pub ceiling: Ceiling,
    /// Only reconcile BuildPolicies matching this label selector (shards,
    /// tests); `None` reconciles all.
    pub policy_selector: Option<String>,
    /// How often a converged policy is looked at again without any event.
    /// Looking costs no API request unless something drifted.
    pub resync: Duration,
    /// The name events are reported under.
    pub reporter: String,
    /// Whether the API server serves ValidatingAdmissionPolicies
    /// (Kubernetes 1.30, OpenShift 4.17): without them the SCC cannot be
    /// confined, and `Confined` says so. `main` asks discovery.
    pub admission_policies_served: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ceiling: Ceiling::default(),
            policy_selector: None,
            resync: Duration::from_secs(300),
            reporter: "buildpolicy-operator".into(),
            admission_policies_served: true,
        }
    }
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    /// Publishes the Warning Events, folding a repeat into a series.
    pub recorder: Recorder,
    /// Who publishes Events (for the Normal ones, see [`crate::events::flush`]).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub caches: Caches,
    /// The ceiling in force (it may change at run time).
    pub ceiling: tokio::sync::watch::Receiver<Ceiling>,
    /// The last `TasksAdmissible` check of each pinned Task.
    pub(crate) task_checks: crate::task_checks::TaskChecks,
    /// The reviewed-content check of each digested Task.
    pub(crate) task_contents: crate::task_checks::TaskContents,
    /// What the reconciles in flight did, published as one Event each.
    pub(crate) journal: crate::events::Journal,
    /// Which reconciles are running, and since when (for `/healthz`).
    pub(crate) health: crate::health::Health,
    /// The shared admission rules and their writer.
    pub(crate) confiner: crate::confinement::Confiner,
}

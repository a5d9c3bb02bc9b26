//! The schema of `results.json`: what a run measured, per N.
//!
//! Fields are in the order the first (Python) harness wrote them, and typed
//! as it typed them (`5.0` for a float even when whole), so that a file from
//! either harness diffs cleanly against the other's. Optional fields are
//! the ones older files lack or a run may not have measured (`null`).
//! `hack/bench/plot.py` reads the same file.

use serde::{Deserialize, Serialize};

use crate::pyjson::{OrderedMap, PyFloat};

/// A whole run: the machine, the build, and the results for each N.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Results {
    /// The command line that produced it (`hack/bench.sh --quick`).
    pub command: String,
    /// UTC, `2026-11-23T18:21:27Z`.
    pub started: String,
    pub machine: Machine,
    pub git: Git,
    /// The first 16 hex digits of the operator binary's SHA-256.
    pub operator_sha256: String,
    /// `release` or `dev (unoptimised)`.
    #[serde(default = "release")]
    pub operator_build: String,
    pub resync_seconds: i64,
    pub steady_seconds: i64,
    #[serde(default)]
    pub perf: bool,
    /// `--operator-env`; older files lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_env: Option<OrderedMap<String>>,
    pub parallel: i64,
    pub tasks_per_namespace: i64,
    pub drift_edits: i64,
    pub loadavg_start: Vec<f64>,
    /// By N (as a string), in the order they ran.
    pub sizes: OrderedMap<SizeResult>,
    /// Set once every N ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadavg_end: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<i64>,
}

fn release() -> String {
    "release".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Machine {
    pub nproc: i64,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// The Python harness's interpreter; not written any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Git {
    pub commit: String,
    /// Whether crates/, Cargo.toml or Cargo.lock had uncommitted changes.
    #[serde(default)]
    pub crates_dirty: bool,
    pub built_from: String,
}

/// One N: a fresh control plane, two baselines and the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SizeResult {
    pub n: i64,
    pub loadavg_start: Vec<f64>,
    pub cluster_up_seconds: f64,
    pub server_version: String,
    pub setup_seconds: f64,
    pub baseline_serial: Baseline,
    pub baseline_parallel: Baseline,
    pub operator: OperatorRun,
    /// What the policies' admission rules add to a pod request elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<crate::admission::AdmissionCost>,
    pub loadavg_end: Vec<f64>,
}

/// `kubectl apply --server-side` of the rendered objects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Baseline {
    /// kubectl processes at once.
    pub processes: i64,
    /// When the last policy's four objects existed; `null` on a timeout.
    pub convergence_seconds: Option<f64>,
    pub kubectl_wall_seconds: Option<f64>,
    pub kubectl_cpu_seconds: Option<f64>,
    /// Policies whose four objects existed at the end.
    pub complete: i64,
    /// CPU seconds of etcd, kube-apiserver, kube-controller-manager.
    #[serde(default)]
    pub cpu_seconds: OrderedMap<f64>,
    /// API requests meanwhile (watches left out).
    pub requests: Vec<RequestRow>,
    pub timeline: Vec<(f64, i64)>,
    /// Removing the objects again, until the watches saw it.
    pub cleanup_seconds: f64,
}

/// The API server's requests of one (verb, group, resource, subresource)
/// between two reads of its `/metrics`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RequestRow {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub count: i64,
    /// By HTTP status code.
    pub codes: OrderedMap<i64>,
    /// Their `apiserver_request_duration_seconds`, added up.
    pub seconds: f64,
    /// Whether the operator writes this resource; in full lists only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_resource: Option<bool>,
}

impl RequestRow {
    /// Without `operator_resource`, as the steady-state and drift lists
    /// hold them.
    pub fn stripped(&self) -> Self {
        Self {
            operator_resource: None,
            ..self.clone()
        }
    }
}

/// The operator's run: convergence, steady state, drift repair, memory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct OperatorRun {
    /// From its start to `/readyz` answering `leader`.
    pub startup_seconds: Option<f64>,
    pub rss_kib_idle: Option<i64>,
    pub kubectl_wall_seconds: Option<f64>,
    /// When the last policy turned Ready; `null` on a timeout.
    pub convergence_seconds: Option<f64>,
    pub ready: Option<i64>,
    pub first_ready_seconds: Option<f64>,
    pub objects_complete_seconds: Option<f64>,
    pub timeline: Vec<(f64, i64)>,
    pub objects_timeline: Vec<(f64, i64)>,
    pub rss_peak_kib_at_convergence: Option<i64>,
    pub rss_kib_at_convergence: Option<i64>,
    pub cpu_seconds_at_convergence: Option<f64>,
    pub cpu_seconds_convergence: Option<f64>,
    pub cluster_cpu_seconds: OrderedMap<f64>,
    pub reconciles: Option<Reconciles>,
    /// API requests while converging (watches left out).
    pub requests: Option<Vec<RequestRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_out_after_seconds: Option<i64>,
    pub steady: Option<Steady>,
    pub rss_peak_kib_after_steady: Option<i64>,
    pub cpu_seconds_after_steady: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub long_steady: Option<LongSteady>,
    pub drift: Option<Drift>,
    pub rss_peak_kib: Option<i64>,
    pub rss_kib_end: Option<i64>,
    pub rss_anon_kib_end: Option<i64>,
    pub rss_file_kib_end: Option<i64>,
    pub cpu_seconds_total: Option<f64>,
    pub profile: Option<Profile>,
}

/// Two resync periods after convergence (and a settle before them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Steady {
    pub window_seconds: i64,
    pub settle_seconds: f64,
    pub settle_writes: i64,
    #[serde(default)]
    pub settle_breakdown: Vec<RequestRow>,
    /// Write requests to the operator's resources in the window: the gate.
    pub operator_writes: i64,
    pub breakdown: Vec<RequestRow>,
    pub other_writers: Vec<RequestRow>,
    /// GETs and LISTs of the operator's resources.
    #[serde(default)]
    pub reads: Vec<RequestRow>,
    pub reconciles: Reconciles,
}

/// `--long-steady-seconds`: a further window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LongSteady {
    pub window_seconds: i64,
    pub operator_writes: i64,
    pub breakdown: Vec<RequestRow>,
}

/// Out-of-band edits and how long the operator took to revert them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Drift {
    pub edits: i64,
    pub reverted: i64,
    /// The wait per edit, when some edit was not reverted in it.
    pub not_reverted_within_s: Option<i64>,
    pub missed: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub scc_p50_ms: Option<f64>,
    pub task_p50_ms: Option<f64>,
    pub samples_ms: Vec<f64>,
    #[serde(default)]
    pub requests: Vec<RequestRow>,
    #[serde(default)]
    pub reconciles: Reconciles,
}

/// The operator's reconcile counters and duration histogram between two
/// scrapes of its `/metrics`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Reconciles {
    // The first four in the order of their metrics in the exposition, in
    // which the Python harness met them.
    /// Repairs by kind of object, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_corrections: Option<OrderedMap<i64>>,
    /// Failed reconciles by reason, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<OrderedMap<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciles_error: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciles_success: Option<i64>,
    pub reconcile_seconds_total: f64,
    pub reconcile_count: i64,
    pub reconcile_mean_ms: Option<f64>,
    /// `[le, count]`, cumulative, the last bucket's `le` infinite.
    pub reconcile_buckets: Vec<(PyFloat, i64)>,
    /// Upper bounds of the buckets holding these quantiles.
    pub reconcile_p50_le_seconds: Option<PyFloat>,
    pub reconcile_p90_le_seconds: Option<PyFloat>,
    pub reconcile_p99_le_seconds: Option<PyFloat>,
}

/// `--perf`: the operator's CPU profile while it converged; `{}` when perf
/// failed. The oldest files hold the self-time list alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Profile {
    Split(ProfileParts),
    SelfOnly(Vec<ProfileRow>),
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ProfileParts {
    /// Self time per function.
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_time: Option<Vec<ProfileRow>>,
    /// Time including callees, for the operator's and kube-rs' functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusive: Option<Vec<ProfileRow>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProfileRow {
    pub percent: f64,
    pub dso: String,
    pub symbol: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyjson;

    /// Every committed results.json reads, and writes back as the Python
    /// harness wrote it: the same keys, the same types (a whole float stays
    /// `5.0`), the same values; `null` stands for a key older files lack.
    #[test]
    fn committed_results_round_trip() {
        for path in crate::report::committed_results() {
            let text = std::fs::read_to_string(&path).unwrap();
            let results: Results =
                pyjson::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let written = pyjson::to_string(&results).unwrap() + "\n";
            let again: Results = pyjson::from_str(&written).unwrap();
            assert_eq!(again, results, "{}", path.display());
            let original: serde_json::Value = pyjson::from_str(&text).unwrap();
            let rewritten: serde_json::Value = pyjson::from_str(&written).unwrap();
            if let Some(difference) = first_difference(&original, &rewritten, "") {
                panic!("{}: {difference}", path.display());
            }
        }
    }

    /// The latest results.json (of the last Python harness) is written back
    /// byte for byte, key order included.
    #[test]
    fn the_latest_results_json_is_written_back_byte_for_byte() {
        let root = buildpolicy_test_support::repo_root();
        for path in ["docs/bench/results.json", "docs/bench/profile/results.json"] {
            let text = std::fs::read_to_string(root.join(path)).unwrap();
            let results: Results = pyjson::from_str(&text).unwrap();
            let written = pyjson::to_string(&results).unwrap() + "\n";
            assert!(written == text, "{path} is written back differently");
        }
    }

    /// Where two JSON documents differ, a missing key counting as `null`.
    fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => a.keys().chain(b.keys()).find_map(|k| {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                first_difference(x, y, &format!("{at}.{k}"))
            }),
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{at}[{i}]"))),
            (a, b) if a == b => None,
            (a, b) => Some(format!("{at}: {a} read, {b} written")),
        }
    }
}

//! Drift repair: out-of-band edits of the operator's objects, one after
//! the other, and how long until the watches see each one reverted.

use std::time::Duration;

use anyhow::Context as _;
use buildpolicy_api::keys::{REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::{SecurityContextConstraints, Task};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::pyfmt::round_to;
use crate::results::{Drift, Reconciles};
use crate::scene::{PINNED_TASK, namespace_name, policy_name};
use crate::tracker::{Seen, SeenObject, Tracker};
use crate::watches::resource_version;

/// Field manager of the benchmark's edits of the operator's objects.
pub const DRIFT_MANAGER: &str = "bench-drift";

/// How long one edit may stay unrepaired before it counts as missed.
const REVERT_TIMEOUT: Duration = Duration::from_secs(30);

/// A capability the policies do not grant: the SCC edit adds it.
const EXTRA_CAPABILITY: &str = "NET_ADMIN";

/// `edits` edits on policies spread over the N, alternating: an extra
/// capability in a managed SCC's `allowedCapabilities`, and the pin
/// annotation removed from a pinned Task. The latency of one is from the
/// edit's response to the watch event that shows the object reverted (a
/// resourceVersion after the edit's).
///
/// # Errors
///
/// When an edit is refused.
pub async fn repairs(
    client: &Client,
    tracker: &Tracker,
    n: usize,
    edits: usize,
    capabilities: &[String],
) -> anyhow::Result<Drift> {
    let edit = PatchParams {
        field_manager: Some(DRIFT_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let (mut scc_samples, mut task_samples) = (Vec::new(), Vec::new());
    let mut missed = 0;
    for k in 0..edits {
        let i = (k * 37) % n;
        let (policy, ns) = (policy_name(i), namespace_name(i));
        let owned = owned_name(&policy);
        let mut seen = tracker.subscribe();
        let edit_one = if k % 2 == 0 {
            Edit::Capability { scc: owned }
        } else {
            Edit::Unpin {
                namespace: ns,
                pin: owned,
            }
        };
        let edited_version = edit_one.apply(client, &edit, capabilities).await?;
        let edited_at = Instant::now();
        let deadline = edited_at + REVERT_TIMEOUT;
        let mut hit = None;
        while hit.is_none() {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Ok(Seen {
                    object,
                    resource_version,
                    at,
                })) if resource_version > edited_version
                    && edit_one.reverted(&object, capabilities) =>
                {
                    hit = Some(at);
                }
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        match hit {
            None => missed += 1,
            Some(at) => {
                let latency = at.saturating_duration_since(edited_at).as_secs_f64();
                if k % 2 == 0 {
                    scc_samples.push(latency);
                } else {
                    task_samples.push(latency);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(summarise(edits, missed, scc_samples, task_samples))
}

/// One out-of-band edit of an object the operator manages.
enum Edit {
    /// An extra capability in the SCC's `allowedCapabilities`.
    Capability { scc: String },
    /// The pin annotation (`pin`) taken off the pinned Task of `namespace`.
    Unpin { namespace: String, pin: String },
}

impl Edit {
    /// Makes the edit; returns the resourceVersion it wrote.
    async fn apply(
        &self,
        client: &Client,
        edit: &PatchParams,
        capabilities: &[String],
    ) -> anyhow::Result<u64> {
        match self {
            Edit::Capability { scc } => {
                let mut wider = capabilities.to_vec();
                wider.push(EXTRA_CAPABILITY.to_owned());
                let edited = Api::<SecurityContextConstraints>::all(client.clone())
                    .patch(
                        scc,
                        edit,
                        &Patch::Merge(json!({"allowedCapabilities": wider})),
                    )
                    .await
                    .with_context(|| format!("editing SCC {scc}"))?;
                Ok(resource_version(&edited))
            }
            Edit::Unpin { namespace, .. } => {
                let unpin = json!({"metadata": {"annotations": {REQUIRED_SCC_ANNOTATION: null}}});
                let edited = Api::<Task>::namespaced(client.clone(), namespace)
                    .patch(PINNED_TASK, edit, &Patch::Merge(unpin))
                    .await
                    .with_context(|| format!("editing Task {namespace}/{PINNED_TASK}"))?;
                Ok(resource_version(&edited))
            }
        }
    }

    /// Whether a watch event shows the edited object as the operator wants it.
    fn reverted(&self, seen: &SeenObject, capabilities: &[String]) -> bool {
        match (self, seen) {
            (
                Edit::Capability { scc },
                SeenObject::Scc {
                    name,
                    allowed_capabilities,
                },
            ) => name == scc && allowed_capabilities.as_deref() == Some(capabilities),
            (
                Edit::Unpin { namespace, pin },
                SeenObject::Task {
                    namespace: seen_namespace,
                    name,
                    required_scc,
                },
            ) => {
                seen_namespace == namespace
                    && name == PINNED_TASK
                    && required_scc.as_ref() == Some(pin)
            }
            _ => false,
        }
    }
}

/// The latencies as results.json holds them, in milliseconds.
fn summarise(edits: usize, missed: usize, mut scc: Vec<f64>, mut task: Vec<f64>) -> Drift {
    let sort = |v: &mut Vec<f64>| v.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = scc.iter().chain(&task).copied().collect();
    sort(&mut all);
    sort(&mut scc);
    sort(&mut task);
    let count = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
    Drift {
        edits: count(edits),
        reverted: count(all.len()),
        not_reverted_within_s: (missed > 0)
            .then(|| i64::try_from(REVERT_TIMEOUT.as_secs()).unwrap_or(i64::MAX)),
        missed: count(missed),
        p50_ms: percentile(&all, 50).map(ms),
        p99_ms: percentile(&all, 99).map(ms),
        max_ms: all.last().copied().map(ms),
        scc_p50_ms: percentile(&scc, 50).map(ms),
        task_p50_ms: percentile(&task, 50).map(ms),
        samples_ms: all.iter().copied().map(ms).collect(),
        requests: Vec::new(),
        reconciles: Reconciles::default(),
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

fn ms(seconds: f64) -> f64 {
    round_to(seconds * 1000.0, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50), Some(50.0));
        assert_eq!(percentile(&values, 99), Some(99.0));
        assert_eq!(percentile(&[3.0], 99), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50), Some(2.0));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn summarises_in_milliseconds() {
        let drift = summarise(4, 1, vec![0.020, 0.008], vec![0.0123]);
        assert_eq!(drift.reverted, 3);
        assert_eq!(drift.missed, 1);
        assert_eq!(drift.not_reverted_within_s, Some(30));
        assert_eq!(drift.samples_ms, [8.0, 12.3, 20.0]);
        assert_eq!(drift.p50_ms, Some(12.3));
        assert_eq!(drift.p99_ms, Some(20.0));
        assert_eq!(drift.max_ms, Some(20.0));
        assert_eq!(drift.scc_p50_ms, Some(8.0));
        assert_eq!(drift.task_p50_ms, Some(12.3));
        let none = summarise(2, 0, vec![], vec![]);
        assert_eq!((none.p50_ms, none.not_reverted_within_s), (None, None));
    }
}

//! What the API server counted: `apiserver_request_total` and the sum of
//! `apiserver_request_duration_seconds` by (verb, group, resource,
//! subresource), read twice and subtracted; and which of those requests are
//! write requests to the resources the operator writes (the gate).

use std::collections::HashMap;

use buildpolicy_test_support::exposition::{Sample, samples};
use kube::Client;

use crate::cluster::api_server_metrics;

use crate::pyfmt::{round_int, round_to};
use crate::pyjson::OrderedMap;
use crate::results::RequestRow;

pub use buildpolicy_test_support::api_writes::{WRITE_VERBS, is_operator_resource};

/// The read verbs (the steady state lists the operator's resources read).
pub const READ_VERBS: [&str; 2] = ["GET", "LIST"];

const REQUESTS: &str = "apiserver_request_total";
const DURATION_SUM: &str = "apiserver_request_duration_seconds_sum";
const DURATION_COUNT: &str = "apiserver_request_duration_seconds_count";

/// (verb, group, resource, subresource).
type Key = (String, String, String, String);

/// The counters of one key at one read.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counters {
    count: f64,
    codes: OrderedMap<f64>,
    seconds: f64,
}

/// One read of the API server's counters, keys in the order the exposition
/// first named them (ties in [`delta`]'s order keep it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    entries: Vec<(Key, Counters)>,
    index: HashMap<Key, usize>,
}

impl Snapshot {
    /// The request counters among `samples` (the API server's `/metrics`).
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut snapshot = Self::default();
        for sample in samples {
            if ![REQUESTS, DURATION_SUM, DURATION_COUNT].contains(&sample.name.as_str()) {
                continue;
            }
            let label = |name: &str| sample.labels.get(name).cloned().unwrap_or_default();
            let key = (
                label("verb"),
                label("group"),
                label("resource"),
                label("subresource"),
            );
            let counters = snapshot.entry(key);
            match sample.name.as_str() {
                REQUESTS => {
                    counters.count += sample.value;
                    let code = label("code");
                    let before = counters.codes.get(&code).copied().unwrap_or(0.0);
                    counters.codes.insert(code, before + sample.value);
                }
                DURATION_SUM => counters.seconds += sample.value,
                _ => {}
            }
        }
        snapshot
    }

    fn entry(&mut self, key: Key) -> &mut Counters {
        let next = self.entries.len();
        let at = *self.index.entry(key.clone()).or_insert(next);
        if at == next {
            self.entries.push((key, Counters::default()));
        }
        &mut self.entries[at].1
    }

    fn get(&self, key: &Key) -> Option<&Counters> {
        self.index.get(key).map(|at| &self.entries[*at].1)
    }
}

/// Reads the API server's counters now.
///
/// # Errors
///
/// When the server does not answer.
pub async fn read(client: &Client) -> anyhow::Result<Snapshot> {
    let text = api_server_metrics(client).await?;
    Ok(Snapshot::from_samples(&samples(&text)))
}

/// The requests between two reads, most frequent first (then by resource
/// and verb), keys without a request left out.
pub fn delta(before: &Snapshot, after: &Snapshot) -> Vec<RequestRow> {
    let none = Counters::default();
    let mut rows: Vec<RequestRow> = after
        .entries
        .iter()
        .filter_map(|(key, a)| {
            let b = before.get(key).unwrap_or(&none);
            let count = round_int(a.count - b.count);
            if count <= 0 {
                return None;
            }
            let codes = a
                .codes
                .iter()
                .map(|(code, v)| {
                    let was = b.codes.get(code).copied().unwrap_or(0.0);
                    (code.clone(), round_int(v - was))
                })
                .filter(|(_, v)| *v > 0)
                .collect();
            let (verb, group, resource, subresource) = key.clone();
            let operator_resource = is_operator_resource(&group, &resource);
            Some(RequestRow {
                verb,
                group,
                resource,
                subresource,
                count,
                codes,
                seconds: round_to(a.seconds - b.seconds, 4),
                operator_resource: Some(operator_resource),
            })
        })
        .collect();
    rows.sort_by(|x, y| (-x.count, &x.resource, &x.verb).cmp(&(-y.count, &y.resource, &y.verb)));
    rows
}

/// The write requests among some rows: those to the operator's resources
/// and those to others.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes {
    /// Write requests to the operator's resources.
    pub count: i64,
    pub ours: Vec<RequestRow>,
    pub others: Vec<RequestRow>,
}

pub fn writes(rows: &[RequestRow]) -> Writes {
    let (ours, others): (Vec<RequestRow>, Vec<RequestRow>) = rows
        .iter()
        .filter(|r| WRITE_VERBS.contains(&r.verb.as_str()))
        .cloned()
        .partition(|r| r.operator_resource == Some(true));
    Writes {
        count: ours.iter().map(|r| r.count).sum(),
        ours,
        others,
    }
}

/// Every request but watches, which stay open for the whole run.
pub fn without_watches(rows: Vec<RequestRow>) -> Vec<RequestRow> {
    rows.into_iter().filter(|r| r.verb != "WATCH").collect()
}

/// Rows without their `operator_resource` flag.
pub fn stripped(rows: &[RequestRow]) -> Vec<RequestRow> {
    rows.iter().map(RequestRow::stripped).collect()
}

/// The write requests of a convergence, per policy: the gate's second
/// figure. Every write counts here, whoever sent it (kubectl's apply of the
/// policies is one per policy).
// Request counts and sizes, far below 2^53.
#[allow(clippy::cast_precision_loss)]
pub fn writes_per_policy(rows: &[RequestRow], policies: i64) -> f64 {
    let writes: i64 = rows
        .iter()
        .filter(|r| !matches!(r.verb.as_str(), "GET" | "LIST" | "WATCH"))
        .map(|r| r.count)
        .sum();
    writes as f64 / policies as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        Snapshot::from_samples(&samples(text))
    }

    const BEFORE: &str = r#"
apiserver_request_total{code="201",group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 10
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="PUT",version="v1"} 4
apiserver_request_total{code="200",group="",resource="pods",subresource="",verb="WATCH",version="v1"} 1
apiserver_request_duration_seconds_sum{group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 0.5
"#;

    const AFTER: &str = r#"
apiserver_request_total{code="201",group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 30
apiserver_request_total{code="200",group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 5
apiserver_request_total{code="200",group="coordination.k8s.io",resource="leases",subresource="",verb="PUT",version="v1"} 10
apiserver_request_total{code="200",group="",resource="pods",subresource="",verb="WATCH",version="v1"} 2
apiserver_request_total{code="200",group="buildpolicy.dev",resource="buildpolicies",subresource="status",verb="PATCH",version="v1alpha1"} 25
apiserver_request_total{code="200",group="buildpolicy.dev",resource="buildpolicies",subresource="",verb="GET",version="v1alpha1"} 3
apiserver_request_duration_seconds_sum{group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 1.25
apiserver_request_duration_seconds_count{group="rbac.authorization.k8s.io",resource="roles",subresource="",verb="APPLY",version="v1"} 35
"#;

    #[test]
    fn counts_the_requests_between_two_reads() {
        let rows = delta(&snapshot(BEFORE), &snapshot(AFTER));
        let summary: Vec<(&str, &str, &str, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r.verb.as_str(),
                    r.resource.as_str(),
                    r.subresource.as_str(),
                    r.count,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("PATCH", "buildpolicies", "status", 25),
                ("APPLY", "roles", "", 25),
                ("PUT", "leases", "", 6),
                ("GET", "buildpolicies", "", 3),
                ("WATCH", "pods", "", 1),
            ]
        );
        let roles = &rows[1];
        assert_eq!(
            roles.codes,
            OrderedMap(vec![("201".into(), 20), ("200".into(), 5)])
        );
        assert_eq!(roles.seconds, 0.75);
        assert_eq!(roles.operator_resource, Some(true));
        assert_eq!(rows[2].operator_resource, Some(false));
    }

    #[test]
    fn sorts_writes_into_the_operators_and_others() {
        let rows = delta(&snapshot(BEFORE), &snapshot(AFTER));
        let writes = writes(&rows);
        assert_eq!(writes.count, 50);
        assert_eq!(writes.ours.len(), 2);
        assert_eq!(writes.others.len(), 1);
        assert_eq!(writes.others[0].resource, "leases");
        // Reads and watches are neither.
        assert!(writes.ours.iter().all(|r| r.verb != "GET"));
        // 25 + 25 + 6 writes for, say, 10 policies; GET and WATCH left out.
        assert_eq!(writes_per_policy(&without_watches(rows), 10), 5.6);
    }

    #[test]
    fn nothing_changed_is_no_row() {
        assert!(delta(&snapshot(AFTER), &snapshot(AFTER)).is_empty());
    }
}

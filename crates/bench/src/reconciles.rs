//! The operator's own account of a phase: its reconcile counters and
//! duration histogram between two scrapes of its `/metrics`.

use std::collections::HashMap;

use buildpolicy_test_support::exposition::Sample;

use crate::pyfmt::{round_int, round_to};
use crate::pyjson::{OrderedMap, PyFloat};
use crate::results::Reconciles;

const RECONCILIATIONS: &str = "buildpolicy_reconciliations_total";
const ERRORS: &str = "buildpolicy_reconcile_errors_total";
const DRIFT_CORRECTIONS: &str = "buildpolicy_drift_corrections_total";
const DURATION_BUCKET: &str = "buildpolicy_reconcile_duration_seconds_bucket";
const DURATION_SUM: &str = "buildpolicy_reconcile_duration_seconds_sum";
const DURATION_COUNT: &str = "buildpolicy_reconcile_duration_seconds_count";

/// A metric's name and labels.
type Series<'a> = (&'a str, Vec<(&'a str, &'a str)>);

/// Reconciles, errors and repairs, and the reconcile-duration histogram,
/// from `before` to `after`.
pub fn summary(before: &[Sample], after: &[Sample]) -> Reconciles {
    let earlier: HashMap<Series<'_>, f64> = before
        .iter()
        .map(|s| ((s.name.as_str(), label_pairs(s)), s.value))
        .collect();
    let delta: Vec<(&Sample, f64)> = after
        .iter()
        .map(|s| {
            let was = earlier
                .get(&(s.name.as_str(), label_pairs(s)))
                .copied()
                .unwrap_or(0.0);
            (s, s.value - was)
        })
        .collect();
    let label = |s: &Sample, name: &str| s.labels.get(name).cloned().unwrap_or_default();

    let mut result = Reconciles::default();
    let mut errors = OrderedMap::default();
    let mut corrections = OrderedMap::default();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut count, mut total) = (0.0, 0.0);
    for (sample, v) in &delta {
        match sample.name.as_str() {
            RECONCILIATIONS => match label(sample, "result").as_str() {
                "success" => result.reconciles_success = Some(round_int(*v)),
                "error" => result.reconciles_error = Some(round_int(*v)),
                _ => {}
            },
            ERRORS if *v > 0.0 => errors.insert(label(sample, "reason"), round_int(*v)),
            DRIFT_CORRECTIONS if *v > 0.0 => {
                corrections.insert(label(sample, "kind"), round_int(*v))
            }
            DURATION_BUCKET => buckets.push((bucket_bound(&label(sample, "le")), *v)),
            DURATION_COUNT => count += v,
            DURATION_SUM => total += v,
            _ => {}
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    result.errors = (!errors.is_empty()).then_some(errors);
    result.drift_corrections = (!corrections.is_empty()).then_some(corrections);
    result.reconcile_seconds_total = round_to(total, 3);
    result.reconcile_count = round_int(count);
    result.reconcile_mean_ms = (count != 0.0).then(|| round_to(1000.0 * total / count, 2));
    result.reconcile_buckets = buckets
        .iter()
        .map(|(le, v)| (PyFloat(*le), round_int(*v)))
        .collect();
    result.reconcile_p50_le_seconds = quantile_bound(&buckets, count, 0.5).map(PyFloat);
    result.reconcile_p90_le_seconds = quantile_bound(&buckets, count, 0.9).map(PyFloat);
    result.reconcile_p99_le_seconds = quantile_bound(&buckets, count, 0.99).map(PyFloat);
    result
}

/// The upper bound of the (cumulative) histogram bucket holding quantile
/// `q` of `count` observations.
pub fn quantile_bound(buckets: &[(f64, f64)], count: f64, q: f64) -> Option<f64> {
    if count == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= q * count)
        .map(|(le, _)| *le)
}

fn bucket_bound(le: &str) -> f64 {
    match le {
        "+Inf" => f64::INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

fn label_pairs(s: &Sample) -> Vec<(&str, &str)> {
    s.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildpolicy_test_support::exposition::samples;

    const BEFORE: &str = r#"
buildpolicy_reconciliations_total{result="error"} 1
buildpolicy_reconciliations_total{result="success"} 10
buildpolicy_reconcile_errors_total{reason="Conflict"} 1
buildpolicy_reconcile_errors_total{reason="NotFound"} 0
buildpolicy_reconcile_duration_seconds_bucket{le="0.005"} 5
buildpolicy_reconcile_duration_seconds_bucket{le="0.01"} 9
buildpolicy_reconcile_duration_seconds_bucket{le="+Inf"} 11
buildpolicy_reconcile_duration_seconds_sum 0.1
buildpolicy_reconcile_duration_seconds_count 11
"#;

    const AFTER: &str = r#"
buildpolicy_drift_corrections_total{kind="Task"} 4
buildpolicy_reconciliations_total{result="error"} 1
buildpolicy_reconciliations_total{result="success"} 110
buildpolicy_reconcile_errors_total{reason="Conflict"} 1
buildpolicy_reconcile_errors_total{reason="NotFound"} 2
buildpolicy_reconcile_duration_seconds_bucket{le="0.005"} 55
buildpolicy_reconcile_duration_seconds_bucket{le="0.01"} 99
buildpolicy_reconcile_duration_seconds_bucket{le="+Inf"} 113
buildpolicy_reconcile_duration_seconds_sum 1.1
buildpolicy_reconcile_duration_seconds_count 113
"#;

    #[test]
    fn summarises_a_phase() {
        let r = summary(&samples(BEFORE), &samples(AFTER));
        assert_eq!(r.reconciles_success, Some(100));
        assert_eq!(r.reconciles_error, Some(0));
        assert_eq!(r.errors, Some(OrderedMap(vec![("NotFound".into(), 2)])));
        assert_eq!(
            r.drift_corrections,
            Some(OrderedMap(vec![("Task".into(), 4)]))
        );
        assert_eq!(r.reconcile_count, 102);
        assert_eq!(r.reconcile_seconds_total, 1.0);
        assert_eq!(r.reconcile_mean_ms, Some(9.8));
        assert_eq!(
            r.reconcile_buckets,
            [
                (PyFloat(0.005), 50),
                (PyFloat(0.01), 90),
                (PyFloat(f64::INFINITY), 102)
            ]
        );
        assert_eq!(r.reconcile_p50_le_seconds, Some(PyFloat(0.01)));
        assert_eq!(r.reconcile_p90_le_seconds, Some(PyFloat(f64::INFINITY)));
    }

    #[test]
    fn no_scrape_is_no_reconcile() {
        let r = summary(&[], &[]);
        assert_eq!(r.reconcile_count, 0);
        assert_eq!(r.reconcile_mean_ms, None);
        assert_eq!(r.reconcile_p50_le_seconds, None);
        assert!(r.errors.is_none() && r.reconciles_success.is_none());
    }

    #[test]
    fn quantiles_are_bucket_bounds() {
        let buckets = [(0.1, 2.0), (1.0, 9.0), (f64::INFINITY, 10.0)];
        assert_eq!(quantile_bound(&buckets, 10.0, 0.2), Some(0.1));
        assert_eq!(quantile_bound(&buckets, 10.0, 0.5), Some(1.0));
        assert_eq!(quantile_bound(&buckets, 10.0, 0.99), Some(f64::INFINITY));
        assert_eq!(quantile_bound(&buckets, 0.0, 0.5), None);
    }
}

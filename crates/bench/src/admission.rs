//! What the confinement rules cost every other pod of the cluster: the
//! latency of a server-side dry-run pod creation in a namespace no policy
//! names, with no policy and then with every policy's admission policy and
//! binding in place. Each BuildPolicy brings one ValidatingAdmissionPolicy
//! whose namespace selector the API server matches against every pod
//! request, so this is the price of failing closed per policy.

use std::time::Instant;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};

use crate::drift::percentile;
use crate::pyfmt::round_to;

/// The namespace the probes are created in; no policy names it.
pub const NAMESPACE: &str = "bench-admission";

/// Latency of `requests` dry-run pod creations, in milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub requests: i64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The same probe with no policy, with all N policies, and with all N
/// policies' objects but their admission policies and bindings deleted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AdmissionCost {
    pub without_policies: Latency,
    pub with_policies: Latency,
    /// `with_policies.p99_ms - without_policies.p99_ms`: everything N
    /// policies add, their N SCCs included (SCC admission considers every
    /// SCC the requester may use).
    pub added_p99_ms: Option<f64>,
    pub added_p50_ms: Option<f64>,
    /// The N policies' objects without their admission policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_admission_policies: Option<Latency>,
    /// `with_policies` against `without_admission_policies`: what the
    /// admission policies and bindings alone add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_policies_p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_policies_p50_ms: Option<f64>,
}

fn difference(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(round_to(b? - a?, 2))
}

impl AdmissionCost {
    pub fn new(
        without_policies: Latency,
        with_policies: Latency,
        without_admission_policies: Option<Latency>,
    ) -> Self {
        let share = without_admission_policies.as_ref();
        Self {
            added_p99_ms: difference(without_policies.p99_ms, with_policies.p99_ms),
            added_p50_ms: difference(without_policies.p50_ms, with_policies.p50_ms),
            admission_policies_p99_ms: share
                .and_then(|l| difference(l.p99_ms, with_policies.p99_ms)),
            admission_policies_p50_ms: share
                .and_then(|l| difference(l.p50_ms, with_policies.p50_ms)),
            without_policies,
            with_policies,
            without_admission_policies,
        }
    }
}

/// Deletes the operator's admission policies and bindings (the operator is
/// stopped) and waits until the API server no longer lists them.
pub async fn delete_admission_policies(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    use kube::api::{DeleteParams, ListParams};
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=buildpolicy-operator");
    let bindings = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone());
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
    bindings
        .delete_collection(&DeleteParams::default(), &managed)
        .await
        .context("deleting the admission policy bindings")?;
    policies
        .delete_collection(&DeleteParams::default(), &managed)
        .await
        .context("deleting the admission policies")?;
    for _ in 0..120 {
        let left =
            bindings.list(&managed).await?.items.len() + policies.list(&managed).await?.items.len();
        if left == 0 {
            // The API server's admission informer follows a moment later.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    anyhow::bail!("the admission policies were not gone within a minute")
}

/// Creates the probe namespace (once per control plane).
pub async fn prepare(client: &kube::Client) -> anyhow::Result<()> {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": NAMESPACE}
    }))?;
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the admission probe namespace"),
    }
}

/// `requests` sequential dry-run creations of a plain pod in [`NAMESPACE`],
/// after `warmup` unmeasured ones.
pub async fn measure(
    client: &kube::Client,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<Latency> {
    let pods = Api::<Pod>::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "probe-"},
        "spec": {"containers": [{"name": "probe", "image": "registry.access.redhat.com/ubi9/ubi-minimal", "command": ["true"]}]}
    }))?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut samples = Vec::with_capacity(requests);
    for i in 0..warmup + requests {
        let started = Instant::now();
        pods.create(&params, &pod)
            .await
            .context("a dry-run pod creation in the probe namespace")?;
        if i >= warmup {
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |p| percentile(&samples, p).map(|v| round_to(v, 2));
    Ok(Latency {
        requests: i64::try_from(samples.len()).unwrap_or(i64::MAX),
        p50_ms: at(50),
        p90_ms: at(90),
        p99_ms: at(99),
        max_ms: samples.last().map(|v| round_to(*v, 2)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_added_cost_is_the_difference_of_the_two_runs() {
        let without = Latency {
            requests: 10,
            p50_ms: Some(4.0),
            p99_ms: Some(9.5),
            ..Latency::default()
        };
        let with = Latency {
            requests: 10,
            p50_ms: Some(4.25),
            p99_ms: Some(11.0),
            ..Latency::default()
        };
        let share = Latency {
            p50_ms: Some(4.0),
            p99_ms: Some(10.0),
            ..Latency::default()
        };
        let cost = AdmissionCost::new(without, with, Some(share));
        assert_eq!(cost.added_p99_ms, Some(1.5));
        assert_eq!(cost.added_p50_ms, Some(0.25));
        assert_eq!(cost.admission_policies_p99_ms, Some(1.0));
        let missing = AdmissionCost::new(Latency::default(), Latency::default(), None);
        assert_eq!(missing.added_p99_ms, None);
        assert_eq!(missing.admission_policies_p99_ms, None);
    }
}

//! What an SRE sees of the real binary: its Prometheus metrics move with
//! what it does, `/healthz` and `/readyz` answer as the probes of the
//! Deployment expect, promtool finds nothing wrong with the exposition,
//! and a real Prometheus server scrapes it.

use std::time::Duration;

use buildpolicy_api::{BuildPolicy, SecurityContextConstraints};
use buildpolicy_test_support::exposition::metric_sum;
use buildpolicy_test_support::process::OperatorProcess;
use buildpolicy_test_support::prometheus::{PrometheusServer, promtool_check_metrics};
use buildpolicy_test_support::scene::{
    delete_scope_policies, is_ready, modelcar_policy, modelcar_scene,
};
use buildpolicy_test_support::{HttpResponse, eventually, unique_name, wait_for, with_temp_ns};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

const SCC: &str = "SecurityContextConstraints";

/// Scrapes until `check` holds for the exposition, and returns it.
async fn scrape_until(
    operator: &OperatorProcess,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    eventually(what, TIMEOUT, || async {
        let text = operator.scrape().await;
        check(&text).then_some(text)
    })
    .await
}

fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(text, name, labels).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_reconciles_ready_policies_managed_objects_and_drift_repairs() {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let operator = OperatorProcess::start(&ns).await;
        operator.wait_leading(TIMEOUT).await;

        let before = operator.scrape().await;
        let successes = value(
            &before,
            "buildpolicy_reconciliations_total",
            &[("result", "success")],
        );
        // Every series is there from the start, so rates work from the first scrape.
        for (name, labels) in [
            ("buildpolicy_reconciliations_total", ("result", "success")),
            ("buildpolicy_reconciliations_total", ("result", "error")),
            ("buildpolicy_policies", ("ready", "true")),
            ("buildpolicy_policies", ("ready", "false")),
        ] {
            assert!(
                metric_sum(&before, name, &[labels]).is_some(),
                "{name}{{{}=\"{}\"}} is missing before the first reconcile:\n{before}",
                labels.0,
                labels.1
            );
        }
        assert_eq!(
            metric_sum(&before, "buildpolicy_leader", &[]),
            Some(1.0),
            "{before}"
        );

        let name = unique_name("metrics");
        let policy = buildpolicy_test_support::scene::create_policy(
            &client,
            &modelcar_policy(&ns, &name, &ns),
        )
        .await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        let policy = wait_for(&policies, &policy.name_any(), TIMEOUT, is_ready).await;
        let scc_name = policy
            .status
            .as_ref()
            .and_then(|s| s.scc_name.clone())
            .expect("status.sccName");

        let after = scrape_until(
            &operator,
            "the metrics to show the reconcile, the Ready policy and its SCC",
            |text| {
                value(
                    text,
                    "buildpolicy_reconciliations_total",
                    &[("result", "success")],
                ) > successes
                    && value(text, "buildpolicy_policies", &[("ready", "true")]) >= 1.0
                    && value(text, "buildpolicy_managed_objects", &[("kind", SCC)]) >= 1.0
            },
        )
        .await;
        let drift_before = value(
            &after,
            "buildpolicy_drift_corrections_total",
            &[("kind", SCC)],
        );

        // Someone makes the SCC privileged by hand.
        let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());
        let patched = sccs
            .patch(
                &scc_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"allowPrivilegedContainer": true})),
            )
            .await
            .expect("patching the SCC by hand");
        assert!(patched.allow_privileged_container);
        let patched_version = patched.resource_version();
        wait_for(&sccs, &scc_name, TIMEOUT, |scc| {
            scc.resource_version() != patched_version && !scc.allow_privileged_container
        })
        .await;
        let repaired = scrape_until(
            &operator,
            "buildpolicy_drift_corrections_total{kind=\"SecurityContextConstraints\"} to count the repair",
            |text| {
                value(
                    text,
                    "buildpolicy_drift_corrections_total",
                    &[("kind", SCC)],
                ) > drift_before
            },
        )
        .await;

        let healthz = operator.healthz().await.expect("GET /healthz");
        assert_eq!(healthz.status, 200, "/healthz: {healthz:?}");
        let readyz = operator.readyz().await.expect("GET /readyz");
        assert_eq!(
            readyz,
            HttpResponse {
                status: 200,
                body: "leader".into()
            }
        );

        if let Err(problems) = promtool_check_metrics(&repaired) {
            panic!("{problems}\nthe exposition:\n{repaired}");
        }

        delete_scope_policies(&client, &ns, TIMEOUT).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_server_scrapes_the_operator() {
    with_temp_ns(|_client, ns| async move {
        let operator = OperatorProcess::start(&ns).await;
        operator.wait_leading(TIMEOUT).await;
        let mut prometheus =
            PrometheusServer::start(&ns, "buildpolicy-operator", &[operator.metrics_addr()]).await;

        let instance = operator.metrics_addr().to_string();
        let series = eventually(
            "Prometheus to return buildpolicy_reconciliations_total",
            Duration::from_secs(60),
            || async {
                let result = prometheus.query("buildpolicy_reconciliations_total").await;
                (!result.is_empty()).then_some(result)
            },
        )
        .await;
        for sample in &series {
            assert_eq!(sample["metric"]["job"], "buildpolicy-operator", "{sample}");
            assert_eq!(sample["metric"]["instance"], instance.as_str(), "{sample}");
        }
        let mut results: Vec<&str> = series
            .iter()
            .filter_map(|s| s["metric"]["result"].as_str())
            .collect();
        results.sort_unstable();
        assert_eq!(results, ["error", "success"], "{series:?}");

        // The scrape itself is healthy: Prometheus parsed every sample.
        let targets = prometheus.active_targets().await;
        let target = targets
            .iter()
            .find(|t| t["labels"]["instance"] == instance.as_str())
            .unwrap_or_else(|| panic!("no target for {instance}: {targets:?}"));
        assert_eq!(target["health"], "up", "{target}");
        assert_eq!(target["lastError"], "", "{target}");
        let up = prometheus.query("up{job=\"buildpolicy-operator\"}").await;
        assert_eq!(up.len(), 1, "{up:?}");
        assert_eq!(up[0]["value"][1], "1", "{up:?}");

        prometheus.kill();
    })
    .await;
}

/// The promtool check above can fail: it reports what the Prometheus
/// naming conventions forbid.
#[test]
fn promtool_reports_a_counter_without_the_total_suffix() {
    let problems = promtool_check_metrics(
        "# HELP buildpolicy_repairs Repairs.\n# TYPE buildpolicy_repairs counter\nbuildpolicy_repairs 1\n",
    )
    .expect_err("promtool accepted a counter without _total");
    assert!(problems.contains("_total"), "{problems}");
}

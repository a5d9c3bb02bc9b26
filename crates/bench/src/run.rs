//! A benchmark run: for each N, a fresh control plane, the scene, the two
//! baselines and the operator, one after the other on the same objects;
//! results.json and results.md written after each N.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use buildpolicy_test_support::repo_root;
use tokio::time::Instant;

use crate::admission;
use crate::baseline::{self, Setting};
use crate::cli::RunArgs;
use crate::cluster::{Cluster, server_version};
use crate::drift;
use crate::logging::{log, utc_now};
use crate::operator::OperatorProcess;
use crate::perf::{self, Perf};
use crate::procfs::{cpu_delta, loadavg, machine};
use crate::pyfmt::{repr_float, round_int, round_to};
use crate::pyjson::{self, OrderedMap};
use crate::reconciles::summary;
use crate::report;
use crate::requests::{self, READ_VERBS, WRITE_VERBS, stripped, without_watches, writes};
use crate::results::{Git, LongSteady, OperatorRun, Results, SizeResult, Steady};
use crate::scene::{self, Rendered, TASKS_PER_NAMESPACE, policy_name};
use crate::tracker::{Count, Tracker};
use crate::watches;

/// How long the operator gets to lead with synced caches.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the objects may lag behind the last Ready policy.
const OBJECTS_AFTER_READY: Duration = Duration::from_secs(30);

/// Every N of `args`; the results, also when the gate fails.
///
/// # Errors
///
/// When a step fails: the control plane is stopped then (unless `--keep`).
pub async fn run(args: &RunArgs) -> anyhow::Result<Results> {
    for dir in [&args.out, &args.work_dir, &args.log_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sizes = args.size_list()?;
    let perf = args.perf && perf::usable().await;
    if args.perf && !perf {
        log!("perf is not usable here (missing, or perf_event_paranoid): no CPU profile");
    }
    let binary = std::fs::read(&args.operator)
        .with_context(|| format!("reading {}", args.operator.display()))?;
    let mut results = Results {
        command: args.command.clone(),
        started: utc_now(),
        machine: machine(),
        git: git_info(args.source_commit.as_deref()).await,
        operator_sha256: sha256_prefix(&binary),
        operator_build: if args.operator.to_string_lossy().contains("/release/") {
            "release"
        } else {
            "dev (unoptimised)"
        }
        .to_owned(),
        resync_seconds: args.resync_seconds,
        steady_seconds: args.steady_seconds(),
        perf,
        operator_env: Some(args.operator_env.iter().cloned().collect()),
        parallel: i64::try_from(args.parallel).unwrap_or(i64::MAX),
        tasks_per_namespace: i64::try_from(TASKS_PER_NAMESPACE).unwrap_or(i64::MAX),
        drift_edits: i64::try_from(args.drift_edits).unwrap_or(i64::MAX),
        loadavg_start: loadavg(),
        sizes: OrderedMap::default(),
        loadavg_end: None,
        wall_seconds: None,
    };
    let cluster = Cluster::new(&args.cluster_dir, &args.log_dir);
    let started = Instant::now();
    let all = async {
        for n in sizes {
            let result = run_size(n, args, perf, &cluster).await?;
            results.sizes.insert(n.to_string(), result);
            write_results(&args.out, &results)?;
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        outcome = all => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = outcome {
        if !args.keep {
            let _ = cluster.down().await;
        }
        return Err(e);
    }
    results.loadavg_end = Some(loadavg());
    results.wall_seconds = Some(round_int(started.elapsed().as_secs_f64()));
    write_results(&args.out, &results)?;
    Ok(results)
}

/// results.json (as the Python harness wrote it) and results.md.
fn write_results(out: &Path, results: &Results) -> anyhow::Result<()> {
    let json = pyjson::to_string(results).context("serialising the results")? + "\n";
    let json_path = out.join("results.json");
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = out.join("results.md");
    std::fs::write(&md_path, report::markdown(results))
        .with_context(|| format!("writing {}", md_path.display()))
}

async fn run_size(
    n: usize,
    args: &RunArgs,
    perf: bool,
    cluster: &Cluster,
) -> anyhow::Result<SizeResult> {
    let loadavg_start = loadavg();
    log!(
        "N={n}: starting a fresh control plane in {}",
        cluster.dir().display()
    );
    let cluster_up_seconds = round_to(cluster.up().await?, 3);
    let client = cluster.client().await?;
    let server_version = server_version(&client).await;
    let names: Vec<String> = (0..n).map(policy_name).collect();
    let tracker = Arc::new(Tracker::new(&names));
    let watches = watches::start(&client, &tracker).await?;

    log!(
        "N={n}: {n} namespaces, {n} service accounts, {} Tasks",
        n * TASKS_PER_NAMESPACE
    );
    let setup_seconds = round_to(scene::set_up(&client, n, args.workers).await?, 3);
    let work = args.work_dir.join(n.to_string());
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let policies_file = work.join("policies.yaml");
    write(&policies_file, &scene::policies_yaml(n))?;
    let rendered = scene::render(&args.operator, &policies_file).await?;
    if !rendered.by_policy.keys().eq(names.iter()) {
        bail!("render did not print objects for every policy");
    }

    // Baselines: one kubectl for everything; then P kubectl on shards.
    let serial = work.join("rendered.yaml");
    write(&serial, &rendered.yaml(&names))?;
    let mut shards = Vec::new();
    for k in 0..args.parallel {
        let path = work.join(format!("rendered-{k}.yaml"));
        write(
            &path,
            &rendered.yaml(names.iter().skip(k).step_by(args.parallel)),
        )?;
        shards.push(path);
    }
    let timeout = args.convergence_timeout(n);
    let setting = Setting {
        cluster,
        client: &client,
        tracker: &tracker,
        n,
        workers: args.workers,
        timeout,
        log_dir: &args.log_dir,
    };
    let baseline_serial = baseline::measure("baseline-serial", &[serial], &setting).await?;
    let baseline_parallel = baseline::measure("baseline-parallel", &shards, &setting).await?;

    // Pod admission elsewhere with no policy, on the same control plane.
    let probes = args.admission_probes;
    let without_policies = if probes > 0 {
        admission::prepare(&client).await?;
        let latency = admission::measure(&client, probes, probes / 10).await?;
        log!(
            "N={n}: pod admission in {} with no policy: p50 {} ms, p99 {} ms ({probes} dry runs)",
            admission::NAMESPACE,
            py_seconds(latency.p50_ms),
            py_seconds(latency.p99_ms)
        );
        Some(latency)
    } else {
        None
    };

    let operator = OperatorMeasurement {
        n,
        args,
        perf,
        cluster,
        client: &client,
        tracker: &tracker,
        rendered: &rendered,
        work: &work,
        policies_file: &policies_file,
        timeout,
    }
    .measure()
    .await;
    drop(watches);
    let (operator, with_policies) = operator?;
    let admission = without_policies
        .zip(with_policies)
        .map(|(without, (with, share))| admission::AdmissionCost::new(without, with, Some(share)));
    if let Some(cost) = &admission {
        log!(
            "N={n}: pod admission with {n} policies: p50 {} ms, p99 {} ms ({} ms added at p99); without their admission policies: p50 {} ms, p99 {} ms (theirs: {} ms at p50, {} ms at p99)",
            py_seconds(cost.with_policies.p50_ms),
            py_seconds(cost.with_policies.p99_ms),
            py_seconds(cost.added_p99_ms),
            py_seconds(
                cost.without_admission_policies
                    .as_ref()
                    .and_then(|l| l.p50_ms)
            ),
            py_seconds(
                cost.without_admission_policies
                    .as_ref()
                    .and_then(|l| l.p99_ms)
            ),
            py_seconds(cost.admission_policies_p50_ms),
            py_seconds(cost.admission_policies_p99_ms)
        );
    }
    let loadavg_end = loadavg();
    if !args.keep {
        cluster.down().await?;
    }
    Ok(SizeResult {
        n: i64::try_from(n).unwrap_or(i64::MAX),
        loadavg_start,
        cluster_up_seconds,
        server_version,
        setup_seconds,
        baseline_serial,
        baseline_parallel,
        operator,
        admission,
        loadavg_end,
    })
}

/// The operator's run at one N.
struct OperatorMeasurement<'a> {
    n: usize,
    args: &'a RunArgs,
    perf: bool,
    cluster: &'a Cluster,
    client: &'a kube::Client,
    tracker: &'a Tracker,
    rendered: &'a Rendered,
    work: &'a Path,
    policies_file: &'a Path,
    timeout: Duration,
}

impl OperatorMeasurement<'_> {
    /// Starts the operator, measures, and stops it, also on failure; then
    /// the pod admission latency with every policy's admission rules in
    /// place (`--admission-probes`).
    async fn measure(
        &self,
    ) -> anyhow::Result<(
        OperatorRun,
        Option<(admission::Latency, admission::Latency)>,
    )> {
        let (n, args) = (self.n, self.args);
        log!(
            "N={n}: the operator (--resync-seconds {})",
            args.resync_seconds
        );
        let mut operator = OperatorProcess::start(
            &args.operator,
            &self.cluster.kubeconfig(),
            args.resync_seconds,
            &args.log_dir.join(format!("operator-{n}.log")),
            &args.operator_env,
        )?;
        let result = self.converge_and_observe(&mut operator).await;
        operator.stop().await;
        // With the operator stopped, as the probe without policies ran
        // before it started: the N admission policies and bindings are
        // still in place, and they are the only difference.
        let probes = args.admission_probes;
        if result.is_err() || probes == 0 {
            return Ok((result?, None));
        }
        let with = admission::measure(self.client, probes, probes / 10).await?;
        // The same objects but for the admission policies: their own share.
        admission::delete_admission_policies(self.client).await?;
        let without = admission::measure(self.client, probes, probes / 10).await?;
        Ok((result?, Some((with, without))))
    }

    async fn converge_and_observe(&self, op: &mut OperatorProcess) -> anyhow::Result<OperatorRun> {
        let (n, args, tracker) = (self.n, self.args, self.tracker);
        let mut o = OperatorRun {
            startup_seconds: Some(round_to(op.wait_leader(STARTUP_TIMEOUT).await?, 3)),
            rss_kib_idle: op.stats().vmrss_kib,
            ..OperatorRun::default()
        };
        let mut perf = if self.perf {
            Some(Perf::start(op.pid(), &self.work.join("perf.data"))?)
        } else {
            None
        };

        // Convergence.
        let (m0, cpu0, req0, st0) = (
            op.metrics().await,
            self.cluster.cpu(),
            requests::read(self.client).await?,
            op.stats(),
        );
        let t0 = Instant::now();
        tracker.begin(t0);
        let applied = self.apply_policies().await?;
        o.kubectl_wall_seconds = Some(round_to(applied, 3));
        let done = tracker.wait(Count::Ready, n, self.timeout, false).await;
        let t_conv = Instant::now();
        let convergence = if done {
            tracker.last_time(Count::Ready)
        } else {
            None
        };
        let objects_wait = if done {
            OBJECTS_AFTER_READY
        } else {
            Duration::ZERO
        };
        let objects_done = tracker.wait(Count::Objects, n, objects_wait, false).await;
        let (m1, cpu1, req1, st1) = (
            op.metrics().await,
            self.cluster.cpu(),
            requests::read(self.client).await?,
            op.stats(),
        );
        if let Some(perf) = perf.as_mut() {
            perf.stop().await;
        }
        let ready = tracker.count(Count::Ready);
        o.convergence_seconds = convergence.map(|c| round_to(c, 3));
        o.ready = Some(i64::try_from(ready).unwrap_or(i64::MAX));
        o.first_ready_seconds = tracker.first_time(Count::Ready).map(|t| round_to(t, 3));
        o.objects_complete_seconds = if objects_done {
            tracker.last_time(Count::Objects).map(|t| round_to(t, 3))
        } else {
            None
        };
        o.timeline = tracker.thinned_timeline(Count::Ready);
        o.objects_timeline = tracker.thinned_timeline(Count::Objects);
        o.rss_peak_kib_at_convergence = st1.vmhwm_kib;
        o.rss_kib_at_convergence = st1.vmrss_kib;
        o.cpu_seconds_at_convergence = st1.cpu_seconds.map(|c| round_to(c, 3));
        o.cpu_seconds_convergence = Some(round_to(
            st1.cpu_seconds.unwrap_or(0.0) - st0.cpu_seconds.unwrap_or(0.0),
            3,
        ));
        o.cluster_cpu_seconds = cpu_delta(&cpu0, &cpu1);
        o.reconciles = Some(summary(&m0, &m1));
        o.requests = Some(without_watches(requests::delta(&req0, &req1)));
        log!(
            "  operator: {ready}/{n} Ready in {}s (objects complete at {}s); wait at most {}s",
            py_seconds(convergence.map(|c| round_to(c, 2))),
            py_seconds(o.objects_complete_seconds),
            args.timeout_shown(n)
        );
        if !done {
            o.timed_out_after_seconds = Some(round_int(t0.elapsed().as_secs_f64()));
        }

        // Steady state: a short settle, then two resync periods.
        let settle = Duration::from_secs_f64(args.settle_seconds.max(0.0));
        tokio::time::sleep_until(t_conv + settle).await;
        let (req_s0, m_s0) = (requests::read(self.client).await?, op.metrics().await);
        let settle_writes = writes(&requests::delta(&req1, &req_s0));
        let steady_seconds = args.steady_seconds();
        log!(
            "  steady state: {steady_seconds}s (2 x --resync-seconds {})",
            args.resync_seconds
        );
        tokio::time::sleep(seconds(steady_seconds)).await;
        let (req_s1, m_s1, st2) = (
            requests::read(self.client).await?,
            op.metrics().await,
            op.stats(),
        );
        let window = requests::delta(&req_s0, &req_s1);
        let steady = writes(&window);
        let breakdown: Vec<String> = steady
            .ours
            .iter()
            .map(|r| {
                let sub = if r.subresource.is_empty() {
                    String::new()
                } else {
                    format!("/{}", r.subresource)
                };
                format!("{} {}{sub} x{}", r.verb, r.resource, r.count)
            })
            .collect();
        log!(
            "  steady state: {} operator write request(s){}",
            steady.count,
            if breakdown.is_empty() {
                String::new()
            } else {
                format!(": {}", breakdown.join(", "))
            }
        );
        o.steady = Some(Steady {
            window_seconds: steady_seconds,
            settle_seconds: args.settle_seconds,
            settle_writes: settle_writes.count,
            settle_breakdown: stripped(&settle_writes.ours),
            operator_writes: steady.count,
            breakdown: stripped(&steady.ours),
            other_writers: stripped(&steady.others),
            reads: stripped(
                &window
                    .iter()
                    .filter(|r| {
                        READ_VERBS.contains(&r.verb.as_str()) && r.operator_resource == Some(true)
                    })
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            reconciles: summary(&m_s0, &m_s1),
        });
        o.rss_peak_kib_after_steady = st2.vmhwm_kib;
        o.cpu_seconds_after_steady = st2.cpu_seconds.map(|c| round_to(c, 3));

        if args.long_steady_seconds > 0 {
            log!("  long steady state: {}s more", args.long_steady_seconds);
            tokio::time::sleep(seconds(args.long_steady_seconds)).await;
            let req_s2 = requests::read(self.client).await?;
            let longer = writes(&requests::delta(&req_s1, &req_s2));
            log!(
                "  long steady state: {} operator write request(s)",
                longer.count
            );
            o.long_steady = Some(LongSteady {
                window_seconds: args.long_steady_seconds,
                operator_writes: longer.count,
                breakdown: stripped(&longer.ours),
            });
        }

        // Drift repair.
        log!("  drift: {} out-of-band edits", args.drift_edits);
        let (req_d0, m_d0) = (requests::read(self.client).await?, op.metrics().await);
        let mut drift = drift::repairs(
            self.client,
            tracker,
            n,
            args.drift_edits,
            &self.rendered.capabilities,
        )
        .await?;
        let (req_d1, m_d1, st3) = (
            requests::read(self.client).await?,
            op.metrics().await,
            op.stats(),
        );
        drift.requests = stripped(
            &requests::delta(&req_d0, &req_d1)
                .into_iter()
                .filter(|r| {
                    WRITE_VERBS.contains(&r.verb.as_str()) && r.operator_resource == Some(true)
                })
                .collect::<Vec<_>>(),
        );
        drift.reconciles = summary(&m_d0, &m_d1);
        log!(
            "  drift: p50 {} ms, p99 {} ms, {} not reverted",
            py_seconds(drift.p50_ms),
            py_seconds(drift.p99_ms),
            drift.missed
        );
        o.drift = Some(drift);
        o.rss_peak_kib = st3.vmhwm_kib;
        o.rss_kib_end = st3.vmrss_kib;
        o.rss_anon_kib_end = st3.rssanon_kib;
        o.rss_file_kib_end = st3.rssfile_kib;
        o.cpu_seconds_total = st3.cpu_seconds.map(|c| round_to(c, 3));
        if let Some(perf) = &perf {
            o.profile = Some(perf.report().await);
        }
        Ok(o)
    }

    /// `kubectl apply --server-side -f policies.yaml`; the seconds it took.
    async fn apply_policies(&self) -> anyhow::Result<f64> {
        let log_path = self.args.log_dir.join(format!("policies-{}.log", self.n));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let started = Instant::now();
        self.cluster
            .kubectl_apply(self.policies_file, log, &log_path)
            .await?;
        Ok(started.elapsed().as_secs_f64())
    }
}

/// Python's `str()` of an optional float: `None` when absent.
fn py_seconds(x: Option<f64>) -> String {
    x.map_or_else(|| "None".to_owned(), repr_float)
}

fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The commit the operator was built from, and whether the crates had
/// uncommitted changes.
async fn git_info(source_commit: Option<&str>) -> Git {
    if let Some(commit) = source_commit {
        return Git {
            commit: commit.to_owned(),
            crates_dirty: false,
            built_from: "git archive of the commit".to_owned(),
        };
    }
    let git = |args: &'static [&'static str]| async move {
        tokio::process::Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    Git {
        commit: git(&["rev-parse", "HEAD"]).await,
        crates_dirty: !git(&[
            "status",
            "--porcelain",
            "--",
            "crates",
            "Cargo.lock",
            "Cargo.toml",
        ])
        .await
        .is_empty(),
        built_from: "the working tree".to_owned(),
    }
}

/// The first 16 hex digits of the SHA-256 of `data`.
fn sha256_prefix(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_named_by_its_digest() {
        // sha256("abc")
        assert_eq!(sha256_prefix(b"abc"), "ba7816bf8f01cfea");
    }
}

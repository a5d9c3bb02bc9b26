//! `run`: the controller, with its admin listener and, optionally, leader
//! election.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use buildpolicy_controller::{Config, Metrics};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::admin::{AdminState, Readiness, serve};
use crate::cli::RunArgs;
use crate::offline::ceiling;

fn init_logging(json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_json);
    match run_controller(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

async fn run_controller(args: RunArgs) -> Result<()> {
    let mut ceiling = ceiling(&args.ceiling)?;
    if let Some(ns) = &args.namespace {
        ceiling = ceiling.protecting(ns);
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let admission_policies_served = serves_admission_policies(&client).await?;
    if !admission_policies_served {
        tracing::warn!(
            "the API server serves no ValidatingAdmissionPolicy (Kubernetes 1.30 / OpenShift 4.17 and newer): SCCs are not confined to the listed Tasks; every policy's Confined condition says so"
        );
    }
    let config = Config {
        ceiling,
        policy_selector: args.policy_selector.clone(),
        resync: Duration::from_secs(args.resync_seconds),
        admission_policies_served,
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::new());
    let (readiness_tx, readiness) = watch::channel(Readiness::Starting);
    let health = Arc::new(std::sync::OnceLock::new());
    let admin = tokio::spawn(serve(
        args.metrics_addr,
        AdminState {
            metrics: metrics.clone(),
            readiness,
            health: health.clone(),
            watch_failure_grace: Duration::from_secs(args.watch_failure_grace_seconds),
            max_reconcile: Duration::from_secs(args.max_reconcile_seconds),
        },
    ));
    let admin = async move {
        match admin.await {
            Ok(Ok(())) => bail!("admin listener stopped"),
            Ok(Err(e)) => Err(e).context("admin listener failed"),
            Err(e) => Err(e).context("admin listener panicked"),
        }
    };
    tokio::pin!(admin);

    let mut leadership = None;
    if args.leader_elect {
        let namespace = args
            .namespace
            .clone()
            .context("--leader-elect needs --namespace")?;
        let identity = args.identity.clone().unwrap_or_else(random_identity);
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(args.lease_duration_seconds)
            .with_grace(args.lease_duration_seconds.div_ceil(3).max(1))
            .build()
            .await
            .context("setting up leader election")?;
        let (mut is_leader, lease_task) = manager.watch().await;
        readiness_tx.send_replace(Readiness::Standby);
        metrics.leader.set(0);
        tracing::info!(%identity, lease = %args.lease_name, "standing by for the leader lease");
        tokio::select! {
            waited = is_leader.wait_for(|leader| *leader) => { waited.context("leader election stopped")?; }
            failed = &mut admin => { failed?; }
            () = shutdown_signal() => return Ok(()),
        }
        tracing::info!(%identity, "acquired the leader lease");
        leadership = Some((is_leader, lease_task));
    }
    metrics.leader.set(1);
    readiness_tx.send_replace(Readiness::Syncing);

    let (handle, controller) =
        buildpolicy_controller::build(client, config, metrics.clone(), shutdown_signal());
    let caches = handle.caches.clone();
    let _ = health.set(handle.health.clone());
    if let Some(path) = args.ceiling.ceiling_file.clone() {
        tokio::spawn(follow_ceiling_file(
            path,
            args.ceiling.clone(),
            args.namespace.clone(),
            handle.ceiling,
        ));
    }
    let synced = async move {
        caches.ready().await;
        readiness_tx.send_replace(Readiness::Leader);
        tracing::info!("caches synced");
        std::future::pending::<()>().await;
    };
    let (mut is_leader, lease_task) = match leadership {
        Some((rx, task)) => (Some(rx), Some(task)),
        None => (None, None),
    };
    let mut watching = is_leader.clone();
    let lost = async move {
        match watching.as_mut() {
            Some(rx) => {
                let _ = rx.wait_for(|leader| !*leader).await;
                // Another replica may already be writing: stop at once.
                bail!("lost the leader lease; exiting so that only the new leader writes")
            }
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        () = controller => Ok(()),
        () = synced => Ok(()),
        failed = &mut admin => failed,
        failed = lost => failed,
    };
    // Closing every receiver makes the lease task release the Lease, so a
    // standby takes over at once instead of waiting for it to expire.
    is_leader.take();
    if let Some(task) = lease_task
        && tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .is_err()
    {
        tracing::warn!("the leader lease was not released in time; it expires by itself");
    }
    result
}

/// Re-reads the ceiling file (a mounted ConfigMap is updated in place) and
/// hands every change to the controller, which re-validates all policies.
/// A file that no longer parses keeps the ceiling in force, loudly.
async fn follow_ceiling_file(
    path: std::path::PathBuf,
    args: crate::cli::CeilingArgs,
    namespace: Option<String>,
    sender: watch::Sender<buildpolicy_policy::Ceiling>,
) {
    let mut last = std::fs::read_to_string(&path).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let now = std::fs::read_to_string(&path).ok();
        if now == last {
            continue;
        }
        last = now;
        match ceiling(&args) {
            Ok(mut new) => {
                if let Some(ns) = &namespace {
                    new = new.protecting(ns);
                }
                tracing::info!(file = %path.display(), ?new, "ceiling changed: re-validating every policy");
                sender.send_replace(new);
            }
            Err(e) => tracing::error!("{e:#}; keeping the ceiling in force"),
        }
    }
}

fn random_identity() -> String {
    format!(
        "buildpolicy-operator-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// Whether `admissionregistration.k8s.io/v1` serves
/// `validatingadmissionpolicies` (GA in Kubernetes 1.30).
async fn serves_admission_policies(client: &kube::Client) -> Result<bool> {
    match client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await
    {
        Ok(list) => Ok(list
            .resources
            .iter()
            .any(|r| r.name == "validatingadmissionpolicies")),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => {
            Err(error).context("asking the API server for admissionregistration.k8s.io/v1")
        }
    }
}

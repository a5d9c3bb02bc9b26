//! `run`: the controller, with its admin listener.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use buildpolicy_controller::{Config, Metrics};
use tracing_subscriber::EnvFilter;

use crate::admin::{AdminState, serve};
use crate::cli::RunArgs;
use crate::offline::ceiling;

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
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
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let config = Config {
        ceiling,
        policy_selector: args.policy_selector,
        resync: Duration::from_secs(args.resync_seconds),
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = tokio::spawn(serve(args.metrics_addr, AdminState { metrics: metrics.clone(), ready: ready.clone() }));

    metrics.leader.set(1);
    let (handle, controller) = buildpolicy_controller::build(client, config, metrics, shutdown_signal());
    let caches = handle.caches.clone();
    tokio::spawn(async move {
        caches.ready().await;
        ready.store(true, Ordering::Relaxed);
        tracing::info!("caches synced");
    });
    tokio::select! {
        () = controller => Ok(()),
        served = admin => match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("admin listener failed"),
            Err(e) => Err(e).context("admin listener panicked"),
        },
    }
}

//! The admin HTTP listener: `/metrics`, `/healthz` (liveness: no reconcile
//! is stuck) and `/readyz` (a standby, or a leader whose watches are synced
//! and alive). What each checks is in [`buildpolicy_controller::health`].

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use buildpolicy_controller::{Health, Metrics};
use tokio::sync::watch;

/// Where this replica is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Connecting, or setting up leader election.
    Starting,
    /// Waiting for the leader lease; ready to take over.
    Standby,
    /// Leading, caches not synced yet.
    Syncing,
    /// Leading with synced caches: reconciling.
    Leader,
}

/// What the listener reports on.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub readiness: watch::Receiver<Readiness>,
    /// The controller's, once this replica leads.
    pub health: Arc<OnceLock<Health>>,
    /// `--watch-failure-grace-seconds`.
    pub watch_failure_grace: Duration,
    /// `--max-reconcile-seconds`.
    pub max_reconcile: Duration,
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

/// 200 "ok", or 500 naming the reconcile that has run too long.
async fn healthz(State(state): State<AdminState>) -> (StatusCode, String) {
    match state.health.get().map(|h| h.liveness(state.max_reconcile)) {
        Some(Err(stuck)) => (StatusCode::INTERNAL_SERVER_ERROR, stuck),
        _ => (StatusCode::OK, "ok".into()),
    }
}

/// A standby is ready (it can take over at once); a leader is ready while
/// its caches are synced and its watches alive. The body says which, or
/// what is wrong.
async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    let readiness = *state.readiness.borrow();
    let unavailable = |why: &str| (StatusCode::SERVICE_UNAVAILABLE, why.to_owned());
    match readiness {
        Readiness::Starting => unavailable("starting"),
        Readiness::Standby => (StatusCode::OK, "standby".into()),
        Readiness::Syncing | Readiness::Leader => {
            match state
                .health
                .get()
                .map(|h| h.readiness(state.watch_failure_grace))
            {
                Some(Ok(())) if readiness == Readiness::Leader => (StatusCode::OK, "leader".into()),
                Some(Err(why)) => unavailable(&format!("leader, not ready: {why}")),
                _ => unavailable("leader, caches not synced"),
            }
        }
    }
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, state: AdminState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app).await
}

//! The admin HTTP listener: `/metrics`, `/healthz` (liveness) and `/readyz`
//! (ready once the caches have synced).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use buildpolicy_controller::Metrics;
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
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// A standby is ready (it can take over at once); a leader is ready once its
/// caches have synced. The body says which.
async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    match *state.readiness.borrow() {
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Readiness::Standby => (StatusCode::OK, "standby"),
        Readiness::Syncing => (StatusCode::SERVICE_UNAVAILABLE, "leader, caches not synced"),
        Readiness::Leader => (StatusCode::OK, "leader"),
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

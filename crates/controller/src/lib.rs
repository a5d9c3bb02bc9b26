//! The BuildPolicy controller: reconciles each policy into an SCC, the RBAC
//! that lets one service account use it, and the pin on the listed Tekton
//! Tasks, and keeps them so against drift.

mod analysis;
pub mod caches;
mod confinement;
pub mod context;
pub mod controller;
pub mod error;
mod events;
pub mod health;
pub mod index;
pub mod metrics;
mod reconcile;
mod status;
mod task_checks;

pub use context::Config;
pub use controller::{Handle, build};
pub use error::{Error, Result};
pub use health::Health;
pub use metrics::Metrics;
pub use reconcile::ERROR_REQUEUE;

//! Pure policy logic: validate a BuildPolicy against the admin ceiling and
//! build the objects it produces. Nothing here talks to a cluster, so every
//! rule is unit-tested without one; the controller and the CLI both call it.

pub mod admission;
pub mod buildah;
pub mod builds;
pub mod ceiling;
pub mod confinement;
pub mod digest;
pub mod drift;
pub mod rbac;
pub mod render;
pub mod scc_schema;
pub mod status;
pub mod task_check;
pub mod validate;

pub use ceiling::Ceiling;
pub use render::{Desired, Owner, TaskPin, render};
pub use scc_schema::{FittedScc, SccSchema};
pub use validate::{Rejection, validate};

#[cfg(test)]
mod fixtures;

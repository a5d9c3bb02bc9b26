//! What the integration tests share.
//!
//! The tests run against a real API server (the local control plane of
//! `hack/local-cluster.sh`, or the cluster named by
//! `BUILDPOLICY_TEST_KUBECONFIG`), each in its own temporary namespace, in
//! parallel, and never sleep to synchronise: they wait on a watch
//! ([`wait_for`]) or poll with a deadline ([`eventually`]).
//!
//! A test that cannot reach the server fails; nothing here skips a test.
//!
//! ```no_run
//! use buildpolicy_test_support::with_temp_ns;
//!
//! // In a test: `#[tokio::test(flavor = "multi_thread")] async fn ...`
//! # async fn creating_a_policy_grants_the_scc() {
//! with_temp_ns(|client, ns| async move {
//!     // ... create objects in `ns`, wait for what the operator does ...
//! })
//! .await;
//! # }
//! ```

mod cluster;
mod names;
mod namespace;
pub mod operator;
mod wait;

pub use cluster::{client, client_with_token, kubeconfig_path, kubectl, repo_root};
pub use names::unique_name;
pub use namespace::{TEST_LABEL, TempNamespace, test_labels, with_temp_ns};
pub use wait::{eventually, wait_for, wait_for_deletion};

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
//! The operator under test runs in-process ([`operator::Operator`]), or as
//! the real binary in a child process ([`process::OperatorProcess`]) when
//! the test is about what only the binary has: its command line, its admin
//! listener (`/metrics`, `/healthz`, `/readyz`), leader election between
//! replicas, signals. [`prometheus`] runs Prometheus' own tools against it,
//! and [`schemas`] makes the JSON schemas kubeconform validates manifests
//! with, offline.
//!
//! Tests of OpenShift's SCC admission (the local control plane's pod
//! webhook) create pods as a Tekton controller would and wait for the
//! webhook to see their SCCs with [`scc_admission`].
//!
//! Tests of the last mile run the ModelCar pipeline through Tekton's own
//! controller with [`tekton`].
//!
//! Fault and scale tests set up hundreds of policies at once with
//! [`fleet::Fleet`], and restart an API server on a control plane of their
//! own, [`private_cluster::PrivateCluster`], never on the shared one.
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
/// Owned strings of `items`, for the `Vec<String>` fields of API objects.
pub fn strings<I: IntoIterator<Item = S>, S: ToString>(items: I) -> Vec<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

/// How long the controller waits before it retries a failed reconcile.
pub use buildpolicy_controller::ERROR_REQUEUE;
pub mod api_writes;
pub mod exposition;
pub mod fleet;
mod http;
pub mod matrix;
mod names;
mod namespace;
pub mod operator;
pub mod private_cluster;
pub mod process;
pub mod prometheus;
pub mod scc_admission;
pub mod scc_generators;
pub mod scene;
pub mod schemas;
pub mod tekton;
mod wait;

pub use cluster::{
    Said, client, client_as, client_with_token, feed, kubeconfig_path, kubectl, repo_root,
};
pub use http::{HttpResponse, http_get};
pub use names::unique_name;
pub use namespace::{TEST_LABEL, TempNamespace, test_labels, with_temp_ns};
pub use wait::{eventually, wait_for, wait_for_deletion};

//! A namespace per test, deleted afterwards even when the test panics
//! (after linkerd2's `policy-test` `with_temp_ns`).

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use buildpolicy_api::{BuildPolicy, SecurityContextConstraints};
use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::cluster::client;
use crate::names::unique_name;

/// Label on every object the tests create. Temporary namespaces carry
/// `buildpolicy.dev/test=true`, so leftovers of an aborted run can be found
/// (`kubectl delete ns -l buildpolicy.dev/test=true`); cluster-scoped objects
/// carry `buildpolicy.dev/test=<namespace>`, see [`test_labels`].
pub const TEST_LABEL: &str = "buildpolicy.dev/test";

/// Prefix of temporary namespace names.
const NAMESPACE_PREFIX: &str = "bp-test";

/// Labels for a cluster-scoped object that a test in namespace `ns` creates.
///
/// Namespace deletion does not reach cluster-scoped objects, so
/// [`TempNamespace::delete`] deletes the BuildPolicies and SCCs carrying
/// these labels; a test that panics halfway leaves nothing behind.
pub fn test_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(TEST_LABEL.to_owned(), ns.to_owned())])
}

/// A namespace with a unique name that exists until [`TempNamespace::delete`].
///
/// Deleting cannot happen on drop (drop is not async), so prefer
/// [`with_temp_ns`], which always deletes.
pub struct TempNamespace {
    client: Client,
    name: String,
}

impl TempNamespace {
    /// Creates `bp-test-<random>`, labelled `buildpolicy.dev/test=true`.
    ///
    /// # Panics
    ///
    /// When the namespace cannot be created.
    pub async fn create(client: &Client) -> Self {
        let name = unique_name(NAMESPACE_PREFIX);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(TEST_LABEL.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create the test namespace {name}: {e}"));
        Self {
            client: client.clone(),
            name,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace and the cluster-scoped objects labelled
    /// [`test_labels`] for it. It does not wait: kube-controller-manager
    /// finalises the namespace in the background, and no later test can
    /// reuse the name.
    ///
    /// # Errors
    ///
    /// The first deletion that failed; the others are still attempted.
    pub async fn delete(self) -> Result<(), kube::Error> {
        let selector = format!("{TEST_LABEL}={}", self.name);
        let policies = delete_labelled::<BuildPolicy>(&self.client, &selector).await;
        let sccs = delete_labelled::<SecurityContextConstraints>(&self.client, &selector).await;
        let namespace = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
            .map(drop);
        policies.and(sccs).and(namespace)
    }
}

/// Deletes the cluster-scoped `K` matching `selector`. A resource type the
/// cluster does not serve (a foreign cluster without the CRD) has nothing to
/// delete.
async fn delete_labelled<K>(client: &Client, selector: &str) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::all(client.clone());
    match api
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(selector),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `test` with a client and the name of a fresh namespace, then deletes
/// the namespace (and the objects labelled [`test_labels`]) whether or not
/// `test` panicked, and re-raises its panic.
///
/// # Panics
///
/// When `test` panics, when the cluster is unreachable (see
/// [`client`](crate::client)), or when the cleanup fails after a passing test.
pub async fn with_temp_ns<F, Fut>(test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let namespace = TempNamespace::create(&client).await;
    let name = namespace.name().to_owned();

    let outcome = AssertUnwindSafe(test(client, name.clone()))
        .catch_unwind()
        .await;
    let cleanup = namespace.delete().await;

    match (outcome, cleanup) {
        (Err(panic), cleanup) => {
            if let Err(e) = cleanup {
                // The test's own panic is what matters; do not replace it.
                eprintln!("[test-support] cleaning up namespace {name} failed: {e}");
            }
            std::panic::resume_unwind(panic)
        }
        (Ok(()), Err(e)) => panic!("cleaning up namespace {name} failed: {e}"),
        (Ok(()), Ok(())) => {}
    }
}

impl std::fmt::Debug for TempNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

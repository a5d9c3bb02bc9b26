//! Waiting for the cluster to reach a state, with a deadline and never by
//! sleeping a fixed time: a watch when the state is one object, polling when
//! it is not.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

/// Pause between two polls of [`eventually`]: short enough that a test
/// rarely waits noticeably longer than needed, long enough not to load the
/// API server of parallel tests.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// Waits until the object `name` exists and satisfies `condition`, and
/// returns it. The object may not exist yet when the wait starts.
///
/// It watches the object (`metadata.name` field selector), so it returns as
/// soon as the change is visible, without polling. For a namespaced `K`,
/// pass an `Api::namespaced`: an `Api::all` would match same-named objects
/// of every namespace.
///
/// # Panics
///
/// After `timeout`, naming the object and showing the last version seen as
/// YAML, which usually says why the condition did not hold.
pub async fn wait_for<K, F>(api: &Api<K>, name: &str, timeout: Duration, condition: F) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
    K::DynamicType: Default,
    F: Fn(&K) -> bool,
{
    match watch_until(api, name, timeout, |object| object.is_some_and(&condition)).await {
        Ok(Some(object)) => object,
        Ok(None) => unreachable!("the condition only holds for an existing object"),
        Err(last_seen) => panic!(
            "timed out after {timeout:?} waiting for {} to satisfy the condition; {last_seen}",
            describe(api, name)
        ),
    }
}

/// Waits until the object `name` does not exist (or no longer exists).
///
/// # Panics
///
/// After `timeout`, showing the last version seen as YAML: its finalizers
/// and `deletionTimestamp` usually say what holds it.
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
    K::DynamicType: Default,
{
    if let Err(last_seen) = watch_until(api, name, timeout, |object| object.is_none()).await {
        panic!(
            "timed out after {timeout:?} waiting for {} to be deleted; {last_seen}",
            describe(api, name)
        );
    }
}

/// Watches `name` until `done` holds for it (`None`: it does not exist).
/// On timeout, returns a description of the last thing seen.
async fn watch_until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    done: impl Fn(Option<&K>) -> bool,
) -> Result<Option<K>, String>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    let mut last_object: Option<Option<K>> = None;
    let mut last_error: Option<String> = None;
    let watch = async {
        // Backoff, so a watch the server refuses (e.g. a CRD not installed)
        // does not spin until the deadline.
        let mut events = pin!(watcher::watch_object(api.clone(), name).default_backoff());
        while let Some(event) = events.next().await {
            match event {
                Ok(object) if done(object.as_ref()) => return object,
                Ok(object) => last_object = Some(object),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        unreachable!("a watch stream does not end")
    };
    let outcome = tokio::time::timeout(timeout, watch).await;
    outcome.map_err(|_elapsed| {
        let seen = match last_object {
            None => "nothing was received from the watch".to_owned(),
            Some(None) => "the object did not exist".to_owned(),
            Some(Some(object)) => format!("last seen:\n{}", to_yaml(object)),
        };
        match last_error {
            Some(error) => format!("{seen}\nlast watch error: {error}"),
            None => seen,
        }
    })
}

/// Polls `probe` until it returns `Some`, and returns that value. For states
/// that are not one object: a list, a permission that RBAC's cache has yet
/// to learn, a metric.
///
/// # Panics
///
/// When `probe` has not returned `Some` within `timeout`, with `what` (say
/// what was awaited, e.g. "the SubjectAccessReview to be allowed").
pub async fn eventually<F, Fut, T>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(value)) = tokio::time::timeout_at(deadline, probe()).await {
            return value;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

fn describe<K: Resource>(api: &Api<K>, name: &str) -> String
where
    K::DynamicType: Default,
{
    let dynamic_type = K::DynamicType::default();
    let kind = K::kind(&dynamic_type);
    match api.namespace() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The object as YAML without `managedFields`, which would bury the fields
/// that matter.
fn to_yaml<K: Resource + Serialize>(mut object: K) -> String {
    object.meta_mut().managed_fields = None;
    serde_yaml_ng::to_string(&object).unwrap_or_else(|e| format!("(not serialisable: {e})"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    // Real time, not tokio's paused clock: that needs tokio's `test-util`
    // feature, and a dev-dependency feature builds tokio and everything above
    // it (hyper, kube, the controller) a second time for the tests. The
    // timeout test spends its one second.
    #[tokio::test]
    async fn eventually_returns_the_first_value() {
        let calls = AtomicU32::new(0);
        let value = eventually("the third call", Duration::from_secs(5), || async {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            (call == 3).then_some(call)
        })
        .await;
        assert_eq!(value, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 1s waiting for something that never happens")]
    async fn eventually_panics_with_what_it_waited_for() {
        eventually::<_, _, ()>(
            "something that never happens",
            Duration::from_secs(1),
            || async { None },
        )
        .await;
    }
}

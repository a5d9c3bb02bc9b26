//! The baselines: what the operator would create for the N policies
//! (`render`), applied by `kubectl apply --server-side` without the
//! operator, in one process or in shards at once; and removing it again
//! before the next run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION};
use buildpolicy_api::{SecurityContextConstraints, Task};
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::drift::DRIFT_MANAGER;
use crate::logging::log;
use crate::procfs::{cpu_delta, waited_children_cpu_seconds};
use crate::pyfmt::round_to;
use crate::requests::{self, without_watches};
use crate::results::Baseline;
use crate::scene::{PINNED_TASK, namespace_name, retrying};
use crate::tracker::{Count, Tracker};

/// How long removing a baseline's objects may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);

/// What one baseline needs.
pub struct Setting<'a> {
    pub cluster: &'a Cluster,
    pub client: &'a Client,
    pub tracker: &'a Tracker,
    /// Policies.
    pub n: usize,
    /// Parallel requests while removing.
    pub workers: usize,
    /// How long converging may take.
    pub timeout: Duration,
    pub log_dir: &'a Path,
}

/// Applies `shards` (files of rendered objects), one kubectl each, all at
/// once; waits until the watches see every policy's four objects; then
/// removes them all again.
///
/// # Errors
///
/// When a kubectl fails, or the objects are not all gone after removal.
pub async fn measure(label: &str, shards: &[PathBuf], s: &Setting<'_>) -> anyhow::Result<Baseline> {
    log!(
        "  {label}: {} kubectl apply --server-side process(es)",
        shards.len()
    );
    let cpu0 = s.cluster.cpu();
    let req0 = requests::read(s.client).await?;
    let t0 = Instant::now();
    s.tracker.begin(t0);
    let children_cpu0 = waited_children_cpu_seconds();
    let applies = shards.iter().enumerate().map(|(k, shard)| {
        let log_path = s.log_dir.join(format!("{label}-{}-{k}.log", s.n));
        kubectl_apply(s.cluster, shard, log_path, t0)
    });
    let kubectl_end = try_join_all(applies).await?.into_iter().fold(0.0, f64::max);
    let kubectl_cpu = waited_children_cpu_seconds() - children_cpu0;
    let done = s.tracker.wait(Count::Objects, s.n, s.timeout, false).await;
    let convergence = if done {
        s.tracker.last_time(Count::Objects)
    } else {
        None
    };
    let cpu1 = s.cluster.cpu();
    let req1 = requests::read(s.client).await?;
    let complete = s.tracker.count(Count::Objects);
    log!(
        "  {label}: {complete}/{} in {}s (kubectl done at {kubectl_end:.2}s)",
        s.n,
        convergence.map_or_else(
            || "None".to_owned(),
            |c| crate::pyfmt::repr_float(round_to(c, 2))
        )
    );
    let mut baseline = Baseline {
        processes: i64::try_from(shards.len()).unwrap_or(i64::MAX),
        convergence_seconds: convergence.map(|c| round_to(c, 3)),
        kubectl_wall_seconds: Some(round_to(kubectl_end, 3)),
        kubectl_cpu_seconds: Some(round_to(kubectl_cpu, 3)),
        complete: i64::try_from(complete).unwrap_or(i64::MAX),
        cpu_seconds: cpu_delta(&cpu0, &cpu1),
        requests: without_watches(requests::delta(&req0, &req1)),
        timeline: s.tracker.thinned_timeline(Count::Objects),
        cleanup_seconds: 0.0,
    };
    baseline.cleanup_seconds = round_to(remove(s).await?, 3);
    Ok(baseline)
}

/// `kubectl apply --server-side -f <shard>`, its output in `log_path`;
/// returns when it ended, in seconds since `t0`.
async fn kubectl_apply(
    cluster: &Cluster,
    shard: &Path,
    log_path: PathBuf,
    t0: Instant,
) -> anyhow::Result<f64> {
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    cluster.kubectl_apply(shard, log, &log_path).await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Deletes the baseline's SCCs, Roles and RoleBindings and takes the pins
/// off the Tasks; waits until the watches saw all of it, and checks that
/// nothing labelled is left. Returns the seconds it took.
async fn remove(s: &Setting<'_>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let labelled = ListParams::default().labels(POLICY_LABEL);
    let client = s.client;
    retrying("deleting the SCCs", || async {
        Api::<SecurityContextConstraints>::all(client.clone())
            .delete_collection(&DeleteParams::default(), &labelled)
            .await
    })
    .await?;
    let unpin = json!({"metadata": {
        "labels": {POLICY_LABEL: null},
        "annotations": {REQUIRED_SCC_ANNOTATION: null},
    }});
    let edit = PatchParams {
        field_manager: Some(DRIFT_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    stream::iter(0..s.n)
        .map(|i| {
            let (labelled, unpin, edit) = (&labelled, &unpin, &edit);
            async move {
                let ns = namespace_name(i);
                let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
                let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
                let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
                retrying(&format!("deleting the Roles in {ns}"), || async {
                    roles
                        .delete_collection(&DeleteParams::default(), labelled)
                        .await
                })
                .await?;
                retrying(&format!("deleting the RoleBindings in {ns}"), || async {
                    bindings
                        .delete_collection(&DeleteParams::default(), labelled)
                        .await
                })
                .await?;
                retrying(&format!("unpinning Task {ns}/{PINNED_TASK}"), || async {
                    tasks.patch(PINNED_TASK, edit, &Patch::Merge(unpin)).await
                })
                .await
            }
        })
        .buffer_unordered(s.workers)
        .try_collect::<Vec<_>>()
        .await?;

    let deadline = started + CLEANUP_TIMEOUT;
    loop {
        let left = s.tracker.parts_left();
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "baseline objects still present after {}s ({left} left)",
                CLEANUP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = [
        labelled_count::<SecurityContextConstraints>(client, &labelled).await?,
        labelled_count::<Role>(client, &labelled).await?,
        labelled_count::<RoleBinding>(client, &labelled).await?,
        labelled_count::<Task>(client, &labelled).await?,
    ];
    if let Some((count, kind)) = left.into_iter().find(|(count, _)| *count > 0) {
        bail!("{count} {kind} labelled {POLICY_LABEL} remain");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// How many objects of kind `K` carry the policy label, and the kind.
async fn labelled_count<K>(
    client: &Client,
    labelled: &ListParams,
) -> anyhow::Result<(usize, String)>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&()).into_owned();
    let listed = Api::<K>::all(client.clone())
        .list_metadata(labelled)
        .await
        .with_context(|| format!("listing {kind}"))?;
    Ok((listed.items.len(), kind))
}

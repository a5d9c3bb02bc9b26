//! Replicas of the real binary, as the Deployment runs them: one holds the
//! Lease and writes; a standby sends no write, as the API server counts
//! them; it takes over when the leader dies without a chance to let go of
//! the Lease, or is stopped.

use std::time::{Duration, Instant};

use buildpolicy_api::BuildPolicy;
use buildpolicy_test_support::api_writes::{is_write, operator_objects};
use buildpolicy_test_support::exposition::{metric_sum, samples};
use buildpolicy_test_support::operator::OPERATOR_NAMESPACE;
use buildpolicy_test_support::private_cluster::PrivateCluster;
use buildpolicy_test_support::process::OperatorProcess;
use buildpolicy_test_support::scene::{
    create_policy, create_task, delete_scope_policies, is_ready, modelcar_policy, modelcar_scene,
};
use buildpolicy_test_support::{HttpResponse, eventually, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff;
use kube::api::PostParams;
use kube::{Api, Client};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The Task of the policy created after the leader's death.
const SECOND_TASK: &str = "mirror-to-internal";

/// Short, so the test is quick, and still three renewals long: the leader
/// renews every `duration - grace` = 4 s (grace is a third of it).
const LEASE_DURATION_SECONDS: u64 = 6;

/// How long after the leader's death a new policy must be Ready: the Lease
/// has to expire, the standby has to take it, sync its caches and reconcile.
const HANDOVER_BUDGET: Duration = Duration::from_secs(LEASE_DURATION_SECONDS + 10);

/// `/readyz` of a replica, `None` when it does not answer.
async fn readyz(replica: &OperatorProcess) -> Option<HttpResponse> {
    replica.readyz().await.ok()
}

fn answers(response: Option<&HttpResponse>, body: &str) -> bool {
    response.is_some_and(|r| r.status == 200 && r.body == body)
}

async fn leader_gauge(replica: &OperatorProcess) -> Option<f64> {
    metric_sum(&replica.scrape().await, "buildpolicy_leader", &[])
}

async fn holder(client: &Client, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Two replicas of scope `ns` competing for `lease`, and the index of the
/// one that leads (with synced caches) while the other stands by.
async fn two_replicas(ns: &str, lease: &str) -> ([(OperatorProcess, &'static str); 2], usize) {
    let replica = |identity: &'static str| async move {
        let process = OperatorProcess::builder(ns)
            .name(&format!("{ns}-{identity}"))
            .leader_election(lease, identity, LEASE_DURATION_SECONDS)
            .start()
            .await;
        (process, identity)
    };
    let (a, b) = tokio::join!(replica("a"), replica("b"));
    let replicas = [a, b];
    let leader_index = eventually(
        "one replica to answer /readyz \"leader\" and the other \"standby\"",
        TIMEOUT,
        || async {
            let a = readyz(&replicas[0].0).await;
            let b = readyz(&replicas[1].0).await;
            if answers(a.as_ref(), "leader") && answers(b.as_ref(), "standby") {
                Some(0)
            } else if answers(b.as_ref(), "leader") && answers(a.as_ref(), "standby") {
                Some(1)
            } else {
                None
            }
        },
    )
    .await;
    (replicas, leader_index)
}

/// Deletes the test's Lease: the operator's namespace outlives the test.
async fn delete_lease(client: &Client, lease: &str) {
    let _ = Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .delete(lease, &Default::default())
        .await;
}

/// When the current holder acquired the Lease.
async fn lease_acquired(client: &Client, lease: &str) -> jiff::Timestamp {
    Api::<Lease>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .get(lease)
        .await
        .expect("reading the Lease")
        .spec
        .and_then(|s| s.acquire_time)
        .expect("the Lease has an acquireTime")
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn one_replica_leads_and_the_standby_takes_over_when_the_leader_is_killed() {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        create_task(&client, &ns, SECOND_TASK).await;
        let lease = unique_name("bp-test-lease");
        let (mut replicas, leader_index) = two_replicas(&ns, &lease).await;
        let standby_index = 1 - leader_index;
        let (leader_id, standby_id) = (replicas[leader_index].1, replicas[standby_index].1);
        println!("replica {leader_id} leads, replica {standby_id} stands by");
        assert_eq!(
            leader_gauge(&replicas[leader_index].0).await,
            Some(1.0),
            "buildpolicy_leader of the leader"
        );
        assert_eq!(
            leader_gauge(&replicas[standby_index].0).await,
            Some(0.0),
            "buildpolicy_leader of the standby"
        );
        assert_eq!(
            holder(&client, &lease).await.as_deref(),
            Some(leader_id),
            "the Lease's holderIdentity"
        );

        // The leader reconciles; the standby does not even look.
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        let first = unique_name("leader-first");
        create_policy(&client, &modelcar_policy(&ns, &first, &ns)).await;
        wait_for(&policies, &first, TIMEOUT, is_ready).await;
        // Counted when the reconcile ends, just after the status it wrote.
        counted_a_reconcile(&replicas[leader_index].0, "the leader").await;
        let standby_metrics = replicas[standby_index].0.scrape().await;
        assert_eq!(
            metric_sum(&standby_metrics, "buildpolicy_reconciliations_total", &[]).unwrap_or(0.0),
            0.0,
            "the standby reconciled:\n{standby_metrics}"
        );
        assert_eq!(holder(&client, &lease).await.as_deref(), Some(leader_id));

        // The leader dies without releasing the Lease (a node failure, an OOM kill).
        let killed_at = Instant::now();
        let status = replicas[leader_index].0.kill();
        println!("killed replica {leader_id} ({status})");
        // Its own Task: one Task can be pinned by one policy only.
        let second = unique_name("leader-second");
        let mut policy = modelcar_policy(&ns, &second, &ns);
        policy.spec.tasks = vec![SECOND_TASK.to_owned()];
        create_policy(&client, &policy).await;

        let standby = &replicas[standby_index].0;
        let leading = format!("replica {standby_id} to answer /readyz \"leader\"");
        let (took_over, ready) = tokio::join!(
            eventually(&leading, HANDOVER_BUDGET,
                || async {
                    answers(readyz(standby).await.as_ref(), "leader").then(|| killed_at.elapsed())
                },
            ),
            async {
                let policy = wait_for(&policies, &second, HANDOVER_BUDGET, is_ready).await;
                (killed_at.elapsed(), policy)
            }
        );
        let (ready, policy) = ready;
        println!(
            "hand-over (lease duration {LEASE_DURATION_SECONDS}s): replica {standby_id} led with synced caches \
             {:.2}s after replica {leader_id} was killed; the policy created after the kill was Ready after {:.2}s",
            took_over.as_secs_f64(),
            ready.as_secs_f64()
        );
        assert!(
            ready <= HANDOVER_BUDGET,
            "the new policy took {ready:?}, over {HANDOVER_BUDGET:?}"
        );
        assert_eq!(holder(&client, &lease).await.as_deref(), Some(standby_id));
        assert_eq!(leader_gauge(standby).await, Some(1.0));
        // It was the new leader that made the policy Ready, not before it
        // held the Lease: anything else means another operator reconciles
        // this test's policies (one without --policy-selector, such as
        // hack/demo.sh's, on the same cluster), and the times above say
        // nothing about the hand-over.
        let acquired = lease_acquired(&client, &lease).await;
        let became_ready = policy
            .condition("Ready")
            .map(|c| c.last_transition_time.0)
            .expect("a Ready condition");
        assert!(
            became_ready.as_second() >= acquired.as_second(),
            "policy {second} became Ready at {became_ready}, before replica {standby_id} \
             acquired the Lease at {acquired}: another operator reconciles this test's policies"
        );
        counted_a_reconcile(standby, "the new leader").await;
        assert!(
            replicas[standby_index].0.is_running(),
            "the new leader exited:\n{}",
            replicas[standby_index].0.log_tail()
        );

        delete_scope_policies(&client, &ns, TIMEOUT).await;
        drop(replicas);
        delete_lease(&client, &lease).await;
    })
    .await;
}

/// A rolling update stops the leader with SIGTERM: it exits at once and
/// cleanly, and the standby takes over.
///
/// The Lease is not released on the way out today (the process exits
/// before kube-lease-manager's task can release it), so the standby waits
/// for it to expire, as after a SIGKILL; the bound below holds either way,
/// and the printed time and holder say which it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_stopped_with_sigterm_exits_cleanly_and_the_standby_takes_over() {
    with_temp_ns(|client, ns| async move {
        let lease = unique_name("bp-test-lease");
        let (mut replicas, leader_index) = two_replicas(&ns, &lease).await;
        let (leader_id, standby_id) = (replicas[leader_index].1, replicas[1 - leader_index].1);

        let stopped_at = Instant::now();
        let status = replicas[leader_index].0.terminate().await;
        let exited_after = stopped_at.elapsed();
        assert!(
            status.success(),
            "replica {leader_id} exited with {status} on SIGTERM\n{}",
            replicas[leader_index].0.log_tail()
        );
        assert!(
            exited_after < Duration::from_secs(5),
            "replica {leader_id} took {exited_after:?} to exit on SIGTERM"
        );
        let holder_after_exit = holder(&client, &lease).await;

        let standby = &replicas[1 - leader_index].0;
        let leading = format!("replica {standby_id} to answer /readyz \"leader\"");
        let took_over = eventually(&leading, HANDOVER_BUDGET, || async {
            answers(readyz(standby).await.as_ref(), "leader").then(|| stopped_at.elapsed())
        })
        .await;
        println!(
            "SIGTERM: replica {leader_id} exited ({status}) after {:.3}s; the Lease's holder then \
             was {holder_after_exit:?}; replica {standby_id} led with synced caches {:.2}s after \
             the SIGTERM (lease duration {LEASE_DURATION_SECONDS}s)",
            exited_after.as_secs_f64(),
            took_over.as_secs_f64()
        );
        assert_eq!(holder(&client, &lease).await.as_deref(), Some(standby_id));
        drop(replicas);
        delete_lease(&client, &lease).await;
    })
    .await;
}

/// Waits until `replica` has counted a successful reconcile: the counter
/// moves when the reconcile ends, a moment after the status it wrote.
async fn counted_a_reconcile(replica: &OperatorProcess, who: &str) {
    let succeeded = || async {
        let metrics = replica.scrape().await;
        metric_sum(
            &metrics,
            "buildpolicy_reconciliations_total",
            &[("result", "success")],
        )
        .is_some_and(|n| n > 0.0)
        .then_some(())
    };
    eventually(
        &format!("{who} to count a successful reconcile"),
        TIMEOUT,
        succeeded,
    )
    .await;
}

/// How long the other replica's Lease runs from its creation: the replica
/// under test stands by until then (kube-lease-manager sleeps until a held
/// Lease expires), and is watched for writes until a second before.
const OTHER_LEASE_SECONDS: i32 = 16;

/// Write requests the API server counted (`apiserver_request_total`) on the
/// resources the operator writes, by `group/resource verb`. Events are left
/// out: kube-controller-manager writes them too.
async fn writes_to_operator_resources(
    cluster: &PrivateCluster,
) -> std::collections::BTreeMap<String, f64> {
    let objects = operator_objects();
    let text = cluster.api_server_metrics().await;
    let mut counts = std::collections::BTreeMap::new();
    for sample in samples(&text) {
        let label = |k: &str| sample.labels.get(k).map(String::as_str).unwrap_or_default();
        if sample.name == "apiserver_request_total"
            && objects
                .iter()
                .any(|(g, r)| g == label("group") && r == label("resource"))
            && is_write(label("verb"))
        {
            *counts
                .entry(format!(
                    "{}/{} {}",
                    label("group"),
                    label("resource"),
                    label("verb")
                ))
                .or_insert(0.0) += sample.value;
        }
    }
    counts
}

/// A standby sends the API server no write at all, as the API server counts
/// them (on a private cluster, where nothing else writes the operator's
/// resources): its policy waits, ungranted, while another identity holds
/// the Lease. A replica that reconciled would write within a second or two
/// of its caches syncing. Once the Lease expires, the same replica leads,
/// and the same count shows its writes: the measure is not blind to them.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_sends_the_api_server_no_write() {
    let scope = unique_name("standby");
    let cluster = PrivateCluster::start(&scope).await;
    let admin = cluster.client().await;
    let kubeconfig = cluster.operator_kubeconfig().await;
    let ns = format!("{scope}-builds");
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
                .expect("a Namespace"),
        )
        .await
        .expect("creating the namespace");
    modelcar_scene(&admin, &ns).await;
    let lease = "buildpolicy-operator";
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let now = MicroTime(jiff::Timestamp::now());
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some(lease.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("another-replica".into()),
                    lease_duration_seconds: Some(OTHER_LEASE_SECONDS),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..LeaseSpec::default()
                }),
            },
        )
        .await
        .expect("creating the Lease, held by another replica");
    let lease_created = Instant::now();
    let expires = lease_created + Duration::from_secs(OTHER_LEASE_SECONDS.unsigned_abs().into());
    let policy = unique_name("waits");
    create_policy(&admin, &modelcar_policy(&scope, &policy, &ns)).await;

    let replica = OperatorProcess::builder(&scope)
        .kubeconfig(kubeconfig)
        .leader_election(lease, "standby", LEASE_DURATION_SECONDS)
        .start()
        .await;
    eventually(
        "the replica to answer /readyz \"standby\"",
        TIMEOUT,
        || async { answers(readyz(&replica).await.as_ref(), "standby").then_some(()) },
    )
    .await;
    let before = writes_to_operator_resources(&cluster).await;
    let watched = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() + Duration::from_secs(1) < expires {
        tick.tick().await;
        let now = writes_to_operator_resources(&cluster).await;
        assert_eq!(
            now,
            before,
            "writes to the operator's resources changed {:?} into the standby's window",
            watched.elapsed()
        );
        assert!(
            answers(readyz(&replica).await.as_ref(), "standby"),
            "the replica stopped standing by while the other replica's Lease ran"
        );
    }
    let window = watched.elapsed();

    // The other replica never renews: once its Lease expires, this one leads.
    let policies: Api<BuildPolicy> = Api::all(admin.clone());
    wait_for(&policies, &policy, TIMEOUT, is_ready).await;
    let granted_after = expires.elapsed();
    let after = writes_to_operator_resources(&cluster).await;
    assert_ne!(
        after, before,
        "the API server counted no write from the replica once it led"
    );
    assert_eq!(
        holder(&admin, lease).await.as_deref(),
        Some("standby"),
        "the replica under test holds the Lease"
    );
    let led: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} +{}", v - before.get(k).unwrap_or(&0.0)))
        .collect();
    println!(
        "standby: no write to the operator's resources in {:.1}s as a standby; policy {policy} was \
         Ready {:.2}s after the other replica's Lease expired, with these writes: {}",
        window.as_secs_f64(),
        granted_after.as_secs_f64(),
        led.join(", ")
    );
    assert!(
        window >= Duration::from_secs(5),
        "the standby was watched for only {window:?}"
    );
    delete_scope_policies(&admin, &scope, TIMEOUT).await;
}

//! Faults the operator must survive on a real control plane: its own death
//! halfway through converging 200 policies, a crash and restart of the API
//! server and etcd under it, the namespace of a policy deleted and
//! recreated, a writer fighting it over an SCC, and 500 policies deleted at
//! once. Each test prints what it measured (eprintln!), so the test log says
//! how long recovery took, not only that it happened.
//!
//! The scale tests run in the `faults` test group (.config/nextest.toml),
//! one at a time; the API server restart happens on a private cluster of its
//! own ([`PrivateCluster`]), never on the one the other tests share.

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use buildpolicy_api::keys::{POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_policy::drift::scc_drift;
use buildpolicy_policy::{Owner, render};
use buildpolicy_test_support::exposition::metric_sum;
use buildpolicy_test_support::fleet::{Fleet, ready_count};
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::private_cluster::PrivateCluster;
use buildpolicy_test_support::process::OperatorProcess;
use buildpolicy_test_support::scc_admission::{may_use_scc, service_account_user};
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, create_policy,
    create_service_account, create_task, delete_scope_policies, is_ready, modelcar_policy,
    modelcar_scene, pin_of, refused_as,
};
use buildpolicy_test_support::{
    ERROR_REQUEUE, HttpResponse, TEST_LABEL, client, eventually, unique_name, wait_for,
    wait_for_deletion, with_temp_ns,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// For one object to reach a state on a responsive server.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A capability the policies never ask for, which the ceiling allows no one.
const FOREIGN_CAPABILITY: &str = "NET_ADMIN";

/// The ModelCar policy's capabilities and [`FOREIGN_CAPABILITY`]: an SCC
/// someone widened.
fn widened_capabilities() -> Vec<&'static str> {
    let mut caps = BUILDAH_CAPABILITIES.to_vec();
    caps.push(FOREIGN_CAPABILITY);
    caps
}

fn secs(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

async fn create_namespace(client: &Client, name: &str) {
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}}))
            .expect("a Namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
}

// --------------------------------------------------------------------------
// SIGKILL while 200 policies converge

/// Policies of the SIGKILL test.
const KILL_POLICIES: usize = 200;
/// Namespaces they are spread over.
const KILL_NAMESPACES: usize = 10;
/// The first operator dies once this many policies are Ready: converging
/// has visibly started, and most of the work is still ahead.
const KILL_AFTER_READY: usize = 20;
/// For the fleet to converge, or be revoked, with the operator running: a
/// few hundred small writes for a loopback API server shared with other tests.
const FLEET_TIMEOUT: Duration = Duration::from_secs(120);

/// The operator dies (SIGKILL: no chance to finish a write) while 200
/// policies converge; a new one converges them all with exactly one SCC,
/// Role and RoleBinding each, every Task pinned right and nothing else
/// pinned; deleting all the policies then leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_while_200_policies_converge_recovers_without_orphans_or_duplicates() {
    let client = client().await;
    let scope = unique_name("kill");
    let fleet = Fleet::create(&client, &scope, KILL_NAMESPACES, KILL_POLICIES).await;

    let mut first = OperatorProcess::builder(&scope)
        .name(&format!("{scope}-first"))
        .start()
        .await;
    first.wait_leading(TIMEOUT).await;
    let started = Instant::now();
    let created = fleet.create_policies(&client).await;
    fleet
        .wait_policies(
            &client,
            &format!("{KILL_AFTER_READY} policies to be Ready"),
            FLEET_TIMEOUT,
            |policies| ready_count(policies) >= KILL_AFTER_READY,
        )
        .await;
    assert!(
        first.is_running(),
        "the first operator exited by itself:\n{}",
        first.log_tail()
    );
    let status = first.kill();
    let killed_after = started.elapsed();
    assert_eq!(status.signal(), Some(9), "the first operator was SIGKILLed");
    let at_kill = fleet.audit(&client).await;
    let ready_at_kill = at_kill.policies.iter().filter(|p| is_ready(p)).count();
    eprintln!(
        "SIGKILL: {KILL_POLICIES} policies created in {}; operator killed {} after the first \
         create; at the kill: {}",
        secs(created),
        secs(killed_after),
        at_kill.counts()
    );
    assert!(
        ready_at_kill < KILL_POLICIES,
        "all {KILL_POLICIES} policies were Ready before the kill: nothing was killed halfway"
    );

    let second = OperatorProcess::builder(&scope)
        .name(&format!("{scope}-second"))
        .start()
        .await;
    let restarted = Instant::now();
    let converged = fleet.wait_all_ready(&client, FLEET_TIMEOUT).await;
    let audit = fleet.audit(&client).await;
    eprintln!(
        "SIGKILL: the restarted operator converged all {KILL_POLICIES} in {} ({} reconciles); {}",
        secs(converged),
        second.reconciles().await,
        audit.counts()
    );
    let problems = audit.converged_problems();
    assert!(
        problems.is_empty(),
        "after the restart, {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(
        audit.tasks.len(),
        KILL_POLICIES + KILL_NAMESPACES,
        "every Task of the fleet is still there"
    );

    let deleting = Instant::now();
    fleet.delete_policies(&client).await;
    fleet.wait_all_gone(&client, FLEET_TIMEOUT).await;
    let gone = deleting.elapsed();
    let audit = fleet.audit(&client).await;
    eprintln!(
        "SIGKILL: all {KILL_POLICIES} policies revoked and gone {} after the delete request \
         ({} after the restart); {}",
        secs(gone),
        secs(restarted.elapsed()),
        audit.counts()
    );
    let left = audit.leftovers();
    assert!(
        left.is_empty(),
        "{} things left behind after deleting every policy:\n{}",
        left.len(),
        left.join("\n")
    );
    drop(second);
}

// --------------------------------------------------------------------------
// API server and etcd restart

/// After the API server is back, how long the operator may take to notice
/// and act. Its watches retry with kube's default backoff, as client-go's
/// do: 0.8 s doubling to at most 30 s between attempts, each stretched by a
/// random jitter of up to 100 %. A watch that failed through the outage (and
/// once more on a server still warming its authorizer's caches) is back at
/// most one such delay, 60 s, after the server answers; the rest is a relist
/// and one reconcile.
const RECONNECT_BUDGET: Duration = Duration::from_secs(90);

/// Runs `work` (a wait for something the operator does after the restart)
/// for at most [`RECONNECT_BUDGET`]; when it runs out, panics with what the
/// operator says of itself: running, `/readyz`, its reconcile count and the
/// end of its log.
async fn after_restart<T>(
    operator: &OperatorProcess,
    what: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    if let Ok(value) = tokio::time::timeout(RECONNECT_BUDGET, work).await {
        return value;
    }
    let readyz = operator.readyz().await;
    let reconciles = operator
        .get("/metrics")
        .await
        .ok()
        .and_then(|m| metric_sum(&m.body, "buildpolicy_reconciliations_total", &[]));
    panic!(
        "{what}: not done {RECONNECT_BUDGET:?} after the API server and etcd restart; the \
         operator answers /readyz {readyz:?} and has counted {reconciles:?} reconciles in all\n{}",
        operator.log_tail()
    );
}

/// Longer than [`RECONNECT_BUDGET`], so that [`after_restart`] reports first.
const WAIT_INSIDE_BUDGET: Duration = Duration::from_secs(180);

/// kube-apiserver and etcd are SIGKILLed and come back on the same ports
/// with the same data, under a running operator (the real binary, on a
/// private cluster): the operator does not exit, reconnects by itself, and
/// every watch resumes: a policy created after the restart converges as its
/// namespace, service account and Task appear, and drift made after the
/// restart on the SCC, Role, RoleBinding and Task pin is repaired.
#[tokio::test(flavor = "multi_thread")]
async fn operator_reconnects_after_the_api_server_and_etcd_restart() {
    let scope = unique_name("restart");
    let cluster = PrivateCluster::start(&scope).await;
    let client = cluster.client().await;
    let ns = format!("{scope}-builds");
    create_namespace(&client, &ns).await;
    modelcar_scene(&client, &ns).await;
    let operator = OperatorProcess::builder(&scope)
        .kubeconfig(cluster.operator_kubeconfig().await)
        .start()
        .await;
    operator.wait_leading(TIMEOUT).await;
    let policies: Api<BuildPolicy> = Api::all(client.clone());
    let before = unique_name("before");
    create_policy(&client, &modelcar_policy(&scope, &before, &ns)).await;
    wait_for(&policies, &before, TIMEOUT, is_ready).await;
    let reconciles_before = operator.reconciles().await;

    let outage = cluster.restart().await;
    let restarted = Instant::now();
    eprintln!(
        "restart: kube-apiserver and etcd killed and back (/readyz ok) in {}",
        secs(outage)
    );
    // A new client: the old one's connections went down with the server.
    let client = cluster.client().await;
    let policies: Api<BuildPolicy> = Api::all(client.clone());

    // A policy created after the restart, before its namespace: each object
    // it waits for appears after the restart too, so each watch must be back.
    let after = unique_name("after");
    let late_ns = format!("{scope}-late");
    create_policy(&client, &modelcar_policy(&scope, &after, &late_ns)).await;
    let p = after_restart(
        &operator,
        &format!("policy {after}, created after the restart, to report NamespaceNotFound"),
        wait_for(
            &policies,
            &after,
            WAIT_INSIDE_BUDGET,
            refused_as("NamespaceNotFound"),
        ),
    )
    .await;
    let first_status = restarted.elapsed();
    assert!(
        p.condition("Ready").unwrap().message.contains(&late_ns),
        "the Ready message names the missing namespace"
    );
    create_namespace(&client, &late_ns).await;
    after_restart(
        &operator,
        &format!("policy {after} to report ServiceAccountNotFound once its namespace exists"),
        wait_for(
            &policies,
            &after,
            WAIT_INSIDE_BUDGET,
            refused_as("ServiceAccountNotFound"),
        ),
    )
    .await;
    create_service_account(&client, &late_ns, MODELCAR_SERVICE_ACCOUNT).await;
    after_restart(
        &operator,
        &format!("policy {after} to report TaskNotFound once its service account exists"),
        wait_for(
            &policies,
            &after,
            WAIT_INSIDE_BUDGET,
            refused_as("TaskNotFound"),
        ),
    )
    .await;
    create_task(&client, &late_ns, MODELCAR_BUILD_TASK).await;
    after_restart(
        &operator,
        &format!("policy {after} to be Ready once its Task exists"),
        wait_for(&policies, &after, WAIT_INSIDE_BUDGET, is_ready),
    )
    .await;
    let converged = restarted.elapsed();
    eprintln!(
        "restart: a policy created after the restart had its first status {} after the server \
         was back, and was Ready {} after it (namespace, service account and Task created in between)",
        secs(first_status),
        secs(converged)
    );

    // Drift after the restart, on the policy from before it.
    let scc_name = owned_name(&before);
    let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());
    let t = Instant::now();
    sccs.patch(
        &scc_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"allowedCapabilities": widened_capabilities()})),
    )
    .await
    .expect("widening the SCC");
    after_restart(
        &operator,
        &format!("SCC {scc_name}, widened after the restart, to be repaired"),
        wait_for(&sccs, &scc_name, WAIT_INSIDE_BUDGET, |scc| {
            scc.allowed_capabilities.as_ref().is_some_and(|c| {
                c.len() == BUILDAH_CAPABILITIES.len() && !c.iter().any(|c| c == FOREIGN_CAPABILITY)
            })
        }),
    )
    .await;
    let scc_repaired = t.elapsed();

    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    roles
        .patch(
            &scc_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": [{
                "apiGroups": ["security.openshift.io"],
                "resources": ["securitycontextconstraints"],
                "resourceNames": ["privileged"],
                "verbs": ["use"]
            }]})),
        )
        .await
        .expect("widening the Role");
    after_restart(
        &operator,
        &format!("Role {ns}/{scc_name}, widened after the restart, to be repaired"),
        wait_for(&roles, &scc_name, WAIT_INSIDE_BUDGET, |role: &Role| {
            role.rules.as_ref().is_some_and(|r| {
                r.len() == 1
                    && r[0].resource_names.as_deref() == Some(std::slice::from_ref(&scc_name))
            })
        }),
    )
    .await;
    let role_repaired = t.elapsed();

    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let old_uid = bindings
        .get(&scc_name)
        .await
        .expect("the RoleBinding")
        .uid();
    let t = Instant::now();
    bindings
        .delete(&scc_name, &DeleteParams::default())
        .await
        .expect("deleting the RoleBinding");
    after_restart(
        &operator,
        &format!("RoleBinding {ns}/{scc_name}, deleted after the restart, to be recreated"),
        wait_for(
            &bindings,
            &scc_name,
            WAIT_INSIDE_BUDGET,
            |b: &RoleBinding| b.uid() != old_uid,
        ),
    )
    .await;
    let binding_repaired = t.elapsed();

    let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    tasks
        .patch(
            MODELCAR_BUILD_TASK,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {REQUIRED_SCC_ANNOTATION: null}}})),
        )
        .await
        .expect("removing the pin");
    after_restart(
        &operator,
        &format!(
            "the pin on Task {ns}/{MODELCAR_BUILD_TASK}, removed after the restart, to be restored"
        ),
        wait_for(&tasks, MODELCAR_BUILD_TASK, WAIT_INSIDE_BUDGET, |task| {
            pin_of(task) == Some(&scc_name)
        }),
    )
    .await;
    let pin_repaired = t.elapsed();
    eprintln!(
        "restart: drift after the restart repaired: SCC widened {}, Role widened {}, RoleBinding \
         deleted {}, Task pin removed {}",
        secs(scc_repaired),
        secs(role_repaired),
        secs(binding_repaired),
        secs(pin_repaired)
    );

    let mut operator = operator;
    assert!(
        operator.is_running(),
        "the operator exited during the API server restart:\n{}",
        operator.log_tail()
    );
    operator.wait_leading(TIMEOUT).await;
    let healthz = operator.healthz().await;
    assert!(
        matches!(healthz, Ok(HttpResponse { status: 200, .. })),
        "/healthz after the restart: {healthz:?}"
    );
    eprintln!(
        "restart: {} reconciles before the restart, {} after the drift repairs",
        reconciles_before,
        operator.reconciles().await
    );
    delete_scope_policies(&client, &scope, TIMEOUT).await;
}

// --------------------------------------------------------------------------
// What the probes say

/// `--max-reconcile-seconds` of the probes test: short, so that a stuck
/// reconcile shows within the test.
const MAX_RECONCILE: Duration = Duration::from_secs(3);

/// `--watch-failure-grace-seconds` of the probes test.
const WATCH_GRACE: Duration = Duration::from_secs(2);

/// The status and body of `/healthz` or `/readyz`; `None` when the listener
/// does not answer.
async fn probe(operator: &OperatorProcess, path: &str) -> Option<(u16, String)> {
    operator.get(path).await.ok().map(|r| (r.status, r.body))
}

/// Polls `path` until it answers `status`, for at most `timeout`; its body.
async fn probe_until(
    operator: &OperatorProcess,
    path: &str,
    status: u16,
    what: &str,
    timeout: Duration,
) -> String {
    eventually(what, timeout, || async {
        probe(operator, path)
            .await
            .filter(|(answered, _)| *answered == status)
            .map(|(_, body)| body)
    })
    .await
}

/// The real binary's probes mean what the Deployment's kubelet acts on:
/// - `/healthz` (liveness) fails, naming the policy, while a reconcile is
///   stuck: the API server hangs (SIGSTOP) just as a new ceiling, read from
///   the ceiling file, makes the policy's reconcile revoke its grant. Once
///   the server answers again the reconcile ends, the grant is revoked, and
///   `/healthz` is fine again. A hung server breaks no watch: `/readyz`
///   stays "leader" meanwhile.
/// - `/readyz` (readiness) fails, naming a failing watch, while the API
///   server is gone (killed) for longer than the grace, and is "leader"
///   again once the watches are back; `/healthz` meanwhile stays fine, since
///   requests to a server that is gone fail at once.
#[tokio::test(flavor = "multi_thread")]
async fn probes_fail_while_a_reconcile_is_stuck_or_a_watch_fails() {
    let scope = unique_name("probes");
    let cluster = PrivateCluster::start(&scope).await;
    let client = cluster.client().await;
    let ns = format!("{scope}-builds");
    create_namespace(&client, &ns).await;
    modelcar_scene(&client, &ns).await;
    let ceiling_file =
        buildpolicy_test_support::process::test_log_dir().join(format!("ceiling-{scope}.yaml"));
    let ceiling = |capabilities: &[&str]| {
        std::fs::write(
            &ceiling_file,
            format!("allowedCapabilities: [{}]\n", capabilities.join(", ")),
        )
        .expect("writing the ceiling file");
    };
    ceiling(&BUILDAH_CAPABILITIES);
    let operator = OperatorProcess::builder(&scope)
        .kubeconfig(cluster.operator_kubeconfig().await)
        .args([
            format!("--ceiling-file={}", ceiling_file.display()),
            format!("--max-reconcile-seconds={}", MAX_RECONCILE.as_secs()),
            format!("--watch-failure-grace-seconds={}", WATCH_GRACE.as_secs()),
        ])
        .start()
        .await;
    operator.wait_leading(TIMEOUT).await;
    let policies: Api<BuildPolicy> = Api::all(client.clone());
    let name = unique_name("stuck");
    create_policy(&client, &modelcar_policy(&scope, &name, &ns)).await;
    wait_for(&policies, &name, TIMEOUT, is_ready).await;
    assert_eq!(probe(&operator, "/healthz").await, Some((200, "ok".into())));

    // A reconcile that must write, against a server that does not answer.
    cluster.pause_api_server().await;
    let without_sys_admin: Vec<_> = BUILDAH_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != "SYS_ADMIN")
        .collect();
    ceiling(&without_sys_admin);
    let paused = Instant::now();
    let body = probe_until(
        &operator,
        "/healthz",
        500,
        "/healthz to fail while the revoking reconcile hangs",
        TIMEOUT,
    )
    .await;
    let failed_after = paused.elapsed();
    assert!(
        body.contains(&format!("of BuildPolicy {name}")),
        "/healthz names the stuck reconcile's policy: {body:?}"
    );
    assert!(
        failed_after >= MAX_RECONCILE,
        "/healthz failed after {failed_after:?}, before any reconcile could have run for {MAX_RECONCILE:?}"
    );
    assert_eq!(
        probe(&operator, "/readyz").await,
        Some((200, "leader".into())),
        "a hung server breaks no watch"
    );
    cluster.resume_api_server().await;
    probe_until(
        &operator,
        "/healthz",
        200,
        "/healthz to be fine once the server answers",
        TIMEOUT,
    )
    .await;
    wait_for(
        &policies,
        &name,
        TIMEOUT,
        refused_as(buildpolicy_api::conditions::reason::CAPABILITY_NOT_ALLOWED),
    )
    .await;
    eprintln!(
        "probes: /healthz failed {} after the server hung, with {body:?}",
        secs(failed_after)
    );

    // A server that is gone: every watch fails.
    assert_eq!(
        probe(&operator, "/readyz").await,
        Some((200, "leader".into()))
    );
    let stopped = Instant::now();
    cluster.stop_api_server().await;
    let body = probe_until(
        &operator,
        "/readyz",
        503,
        "/readyz to fail while the API server is gone",
        TIMEOUT,
    )
    .await;
    let unready_after = stopped.elapsed();
    assert!(
        body.starts_with("leader, not ready: the ")
            && body.contains(" watch has been failing for "),
        "/readyz names the failing watches: {body:?}"
    );
    assert!(
        unready_after >= WATCH_GRACE,
        "/readyz failed after {unready_after:?}, within the grace of {WATCH_GRACE:?}: {body:?}"
    );
    assert_eq!(
        probe(&operator, "/healthz").await,
        Some((200, "ok".into())),
        "requests to a server that is gone fail at once: nothing is stuck"
    );
    cluster.start_api_server().await;
    after_restart(
        &operator,
        "/readyz to answer \"leader\" once the watches are back",
        eventually(
            "/readyz to answer \"leader\"",
            WAIT_INSIDE_BUDGET,
            || async {
                probe(&operator, "/readyz")
                    .await
                    .filter(|answer| *answer == (200, "leader".to_owned()))
            },
        ),
    )
    .await;
    eprintln!(
        "probes: /readyz failed {} after the server went, with {body:?}",
        secs(unready_after)
    );
    let _ = std::fs::remove_file(&ceiling_file);
    let client = cluster.client().await;
    delete_scope_policies(&client, &scope, TIMEOUT).await;
}

// --------------------------------------------------------------------------
// The namespace of a policy deleted, then recreated

/// How long kube-controller-manager may take to empty and remove a
/// namespace on the shared server, next to the other tests' deletions.
const NAMESPACE_DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Deleting the namespace of a Ready policy (with its service account, Task,
/// Role and RoleBinding): the policy says in every part that the namespace
/// is missing and grants nothing there; once the namespace, service account
/// and Task are back, it converges again by itself.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_and_recreating_the_namespace_of_a_policy_reports_it_then_converges() {
    with_temp_ns(|client, ns| async move {
        let target = format!("{ns}-builds");
        create_namespace(&client, &target).await;
        modelcar_scene(&client, &target).await;
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("ns-gone");
        op.create(&modelcar_policy(&ns, &name, &target)).await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        wait_for(&policies, &name, TIMEOUT, is_ready).await;
        let scc = owned_name(&name);
        assert!(
            may_use_scc(
                &client,
                &service_account_user(&target, MODELCAR_SERVICE_ACCOUNT),
                &target,
                &scc
            )
            .await
        );

        let namespaces: Api<Namespace> = Api::all(client.clone());
        let t = Instant::now();
        namespaces
            .delete(&target, &DeleteParams::background())
            .await
            .expect("deleting the namespace");
        wait_for_deletion(&namespaces, &target, NAMESPACE_DELETION_TIMEOUT).await;
        let deleted_in = t.elapsed();
        let t = Instant::now();
        let policy = wait_for(&policies, &name, TIMEOUT, refused_as("NamespaceNotFound")).await;
        let reported_in = t.elapsed();
        for part in ["Ready", "RBACReady", "TasksPinned"] {
            let condition = policy
                .condition(part)
                .unwrap_or_else(|| panic!("a {part} condition"));
            assert_eq!(
                (condition.status.as_str(), condition.reason.as_str()),
                ("False", "NamespaceNotFound"),
                "{part}: {}",
                condition.message
            );
            assert!(
                condition.message.contains(&target),
                "{part} names the namespace: {}",
                condition.message
            );
        }
        let status = policy.status.as_ref().expect("a status");
        assert!(
            status.pinned_tasks.is_empty(),
            "no Task is pinned in a namespace that does not exist: {:?}",
            status.pinned_tasks
        );
        eprintln!(
            "namespace: deleted (and gone) in {}; the policy said NamespaceNotFound {} later: {}",
            secs(deleted_in),
            secs(reported_in),
            policy.condition("Ready").unwrap().message
        );

        let t = Instant::now();
        create_namespace(&client, &target).await;
        modelcar_scene(&client, &target).await;
        let policy = wait_for(&policies, &name, TIMEOUT, is_ready).await;
        let converged_in = t.elapsed();
        assert_eq!(
            policy.status.as_ref().unwrap().pinned_tasks,
            [MODELCAR_BUILD_TASK]
        );
        let task = Api::<Task>::namespaced(client.clone(), &target)
            .get(MODELCAR_BUILD_TASK)
            .await
            .expect("the recreated Task");
        assert_eq!(pin_of(&task), Some(&scc), "the recreated Task is pinned");
        assert_eq!(task.labels().get(POLICY_LABEL), Some(&name));
        Api::<Role>::namespaced(client.clone(), &target)
            .get(&scc)
            .await
            .expect("the Role is back");
        Api::<RoleBinding>::namespaced(client.clone(), &target)
            .get(&scc)
            .await
            .expect("the RoleBinding is back");
        assert!(
            may_use_scc(
                &client,
                &service_account_user(&target, MODELCAR_SERVICE_ACCOUNT),
                &target,
                &scc
            )
            .await,
            "the recreated service account may use the SCC again"
        );
        eprintln!(
            "namespace: recreated with its service account and Task; Ready again in {}",
            secs(converged_in)
        );

        op.delete_policies_and_stop().await;
        let _ = namespaces
            .delete(&target, &DeleteParams::background())
            .await;
    })
    .await;
}

// --------------------------------------------------------------------------
// A writer fighting the operator over the SCC

/// How long the writer fights, and how often it writes.
const FIGHT: Duration = Duration::from_secs(10);
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// Reconciles a correct operator may spend per out-of-band write: one for
/// the writer's change, one for the watch event of its own repair, one for
/// a status write (there should be none: Ready does not change).
const RECONCILES_PER_WRITE: u64 = 3;
/// Reconciles allowed on top: the resync of the policy and the like.
const RECONCILE_SLACK: u64 = 10;
/// How soon after the writer stops the SCC must be as rendered: the last
/// write's watch event and one reconcile, or one failed attempt and the
/// retry 5 s later.
const WIN_BUDGET: Duration = Duration::from_secs(10);
/// A settled operator's reconcile count does not move for this long: longer
/// than the retry of a failed reconcile, so a reconcile that fails and
/// retries forever cannot pass for settled...
const QUIET: Duration = Duration::from_secs(ERROR_REQUEUE.as_secs() + 2);
/// ...starting at most this long after the writer stopped (a last repair
/// that failed is retried once).
const SETTLE_BUDGET: Duration = Duration::from_secs(ERROR_REQUEUE.as_secs() + 2);

/// Polls the reconcile count until it has not moved for [`QUIET`]; returns
/// the count and when it last moved.
///
/// # Panics
///
/// When it still moves later than `budget` after `since` (`event` says
/// what happened then).
async fn settled_reconciles(
    operator: &OperatorProcess,
    event: &str,
    since: Instant,
    budget: Duration,
) -> (u64, Instant) {
    let last = std::sync::Mutex::new((operator.reconciles().await, Instant::now()));
    eventually(
        &format!(
            "the operator's reconcile count to stay unchanged for {QUIET:?}, from at most \
             {budget:?} after {event}"
        ),
        budget + QUIET + Duration::from_secs(1),
        || async {
            let now = operator.reconciles().await;
            let mut last = last.lock().expect("not poisoned");
            if now != last.0 {
                *last = (now, Instant::now());
                let moved = last.1.duration_since(since);
                assert!(
                    moved <= budget,
                    "the operator still reconciles {} after {event} (count {now}): it loops\n{}",
                    secs(moved),
                    operator.log_tail()
                );
            }
            (last.1.elapsed() >= QUIET).then_some(*last)
        },
    )
    .await
}

/// A writer adds a capability to the managed SCC every 50 ms for 10 s while
/// the operator runs: the operator undoes each write that changed the SCC
/// exactly once (the SCC's generation moves twice per such write, and for
/// nothing else), wins within a bounded time once the writer stops (the SCC
/// is exactly as rendered), and never hot-loops: its reconciles stay within
/// a small constant per out-of-band write, and stop moving, for longer than
/// a failed reconcile's retry, within seconds of the last one.
#[tokio::test(flavor = "multi_thread")]
async fn operator_outlasts_a_conflicting_writer_without_hot_looping() {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let operator = OperatorProcess::start(&ns).await;
        operator.wait_leading(TIMEOUT).await;
        let name = unique_name("fight");
        create_policy(&client, &modelcar_policy(&ns, &name, &ns)).await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        let policy = wait_for(&policies, &name, TIMEOUT, is_ready).await;
        let desired = render(&Owner::of(&policy), &policy.spec).scc;
        let scc_name = owned_name(&name);
        let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());
        let exactly_rendered = |scc: &SecurityContextConstraints| scc_drift(&desired, scc).is_empty();

        let (baseline, _) =
            settled_reconciles(&operator, "the policy was Ready", Instant::now(), TIMEOUT).await;
        let repairs_before = operator.counter("buildpolicy_drift_corrections_total",
            &[("kind", "SecurityContextConstraints")],
        )
        .await;
        let generation_before = sccs.get(&scc_name).await.unwrap().metadata.generation.unwrap_or(0);

        // The fight: a merge patch, as `kubectl patch` sends it, every 50 ms.
        let widened = json!({"allowedCapabilities": widened_capabilities()});
        let started = Instant::now();
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A write is effective when it changed the SCC: its generation
        // differs from the one the writer's previous write left. Otherwise
        // the SCC was still widened: the operator had not repaired it yet.
        let (mut writes, mut effective, mut failed) = (0_u64, 0_u64, 0_u64);
        let mut last_generation = generation_before;
        while started.elapsed() < FIGHT {
            tick.tick().await;
            match sccs
                .patch(&scc_name, &PatchParams::default(), &Patch::Merge(&widened))
                .await
            {
                Ok(scc) => {
                    writes += 1;
                    let generation = scc.metadata.generation.unwrap_or(0);
                    if generation != last_generation {
                        effective += 1;
                        last_generation = generation;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        let stopped = Instant::now();
        let during = operator.reconciles().await - baseline;

        let scc = wait_for(&sccs, &scc_name, WIN_BUDGET, exactly_rendered).await;
        let won_after = stopped.elapsed();
        let mut caps = scc.allowed_capabilities.clone().unwrap_or_default();
        caps.sort();
        let mut buildah = BUILDAH_CAPABILITIES.to_vec();
        buildah.sort_unstable();
        assert_eq!(caps, buildah);
        let (settled, last_change) =
            settled_reconciles(&operator, "the writes stopped", stopped, SETTLE_BUDGET).await;
        let total = settled - baseline;
        let repairs = operator.counter("buildpolicy_drift_corrections_total",
            &[("kind", "SecurityContextConstraints")],
        )
        .await
            - repairs_before;
        let generations = scc.metadata.generation.unwrap_or(0) - generation_before;
        eprintln!(
            "fight: {writes} out-of-band writes ({effective} effective, {failed} failed) in {}; \
             the operator ran {during} \
             reconciles during the fight and {total} in all ({:.2} per write), repaired the SCC \
             {repairs} times, the SCC's generation moved by {generations}; the SCC was as rendered \
             {} after the last write; the reconcile count last moved {} after it",
            secs(stopped - started),
            total as f64 / writes.max(1) as f64,
            secs(won_after),
            secs(last_change.saturating_duration_since(stopped)),
        );
        assert!(writes > 0, "the writer wrote nothing");
        assert!(
            effective > 1,
            "only {effective} of {writes} writes changed the SCC: the operator repaired nothing \
             during the fight"
        );
        // Every effective write was undone exactly once, and the operator
        // changed the SCC for nothing else: its generation moved once per
        // write and once per repair.
        assert_eq!(
            generations,
            i64::try_from(2 * effective).unwrap_or(i64::MAX),
            "the SCC changed {generations} times for {effective} effective out-of-band writes: \
             not one repair per write"
        );
        assert!(
            repairs >= effective,
            "the operator counted {repairs} repairs for {effective} effective writes"
        );
        assert!(
            repairs <= writes,
            "the operator counted {repairs} repairs for {writes} out-of-band writes: it repairs what did not drift"
        );
        let bound = RECONCILES_PER_WRITE * writes + RECONCILE_SLACK;
        assert!(
            total <= bound,
            "{total} reconciles for {writes} out-of-band writes, over {bound} \
             ({RECONCILES_PER_WRITE} per write + {RECONCILE_SLACK}): the operator loops"
        );
        delete_scope_policies(&client, &ns, TIMEOUT).await;
    })
    .await;
}

// --------------------------------------------------------------------------
// 500 policies deleted at once

const MASS_POLICIES: usize = 500;
const MASS_NAMESPACES: usize = 20;
/// For 500 policies to converge before the deletion.
const MASS_CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// For all 500 to be revoked and gone: a correct operator revokes at
/// least five policies a second on a loopback server (each is four deletes
/// or patches, a finalizer update and events, sixteen at a time).
const MASS_DELETE_BUDGET: Duration = Duration::from_secs(100);

/// 500 converged policies deleted with one request: every one is revoked
/// and gone within the budget, and nothing is left: no SCC, Role or
/// RoleBinding labelled for any of them, no pin or policy label on any
/// Task, no policy held by its finalizer.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_500_policies_at_once_leaves_nothing_behind() {
    let client = client().await;
    let scope = unique_name("mass");
    let fleet = Fleet::create(&client, &scope, MASS_NAMESPACES, MASS_POLICIES).await;
    let operator = OperatorProcess::start(&scope).await;
    operator.wait_leading(TIMEOUT).await;
    let created = fleet.create_policies(&client).await;
    let converged = fleet.wait_all_ready(&client, MASS_CONVERGE_TIMEOUT).await;
    let audit = fleet.audit(&client).await;
    eprintln!(
        "mass delete: {MASS_POLICIES} policies created in {}, all Ready {} after the first create; {}",
        secs(created),
        secs(converged),
        audit.counts()
    );
    let problems = audit.converged_problems();
    assert!(
        problems.is_empty(),
        "before the deletion, {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let reconciles_converged = operator.reconciles().await;

    let started = Instant::now();
    fleet.delete_policies(&client).await;
    let requested = started.elapsed();
    fleet.wait_all_gone(&client, MASS_DELETE_BUDGET).await;
    let gone = started.elapsed();
    let audit = fleet.audit(&client).await;
    let revoked = operator.counter("buildpolicy_revocations_total", &[]).await;
    eprintln!(
        "mass delete: one delete request for {MASS_POLICIES} policies took {}; all were revoked \
         and gone {} after it was sent ({:.0} policies/s; {} reconciles, {revoked} objects \
         revoked); {}",
        secs(requested),
        secs(gone),
        MASS_POLICIES as f64 / gone.as_secs_f64().max(0.001),
        operator.reconciles().await - reconciles_converged,
        audit.counts()
    );
    let left = audit.leftovers();
    assert!(
        left.is_empty(),
        "{} things left behind after deleting every policy:\n{}",
        left.len(),
        left.join("\n")
    );
    assert!(
        gone <= MASS_DELETE_BUDGET,
        "revoking {MASS_POLICIES} policies took {}, over the budget of {MASS_DELETE_BUDGET:?}",
        secs(gone)
    );
    assert_eq!(
        audit.tasks.len(),
        MASS_POLICIES + MASS_NAMESPACES,
        "revoking deletes no Task"
    );
}

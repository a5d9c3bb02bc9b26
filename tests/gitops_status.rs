//! The status GitOps tools read: kstatus's `Stalled` and `Reconciling`
//! conditions (Flux, kpt, cli-utils) on real policies, and those policies
//! saved as the API server returned them, for the Go checks under
//! `hack/gitops-status` (Argo CD's Lua interpreter running docs/argocd.md's
//! health check, and kstatus's own `status.Compute`), which `hack/test.sh`
//! runs on `target/status-samples/` after this test.
//!
//! The samples, one per state a platform team meets: `ready`,
//! `capability-not-allowed` (over the admin ceiling), `task-conflict` (a
//! Task pinned to another SCC by hand), `namespace-not-found`,
//! `task-not-found`, `stale-generation` (the spec changed while the
//! operator was stopped), `deleting` (deleted while the operator was
//! stopped: its finalizer holds it) and `no-status` (created while the
//! operator was stopped).

use std::time::Duration;

use buildpolicy_api::BuildPolicy;
use buildpolicy_api::conditions::{self, reason};
use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scene::{
    BUILDAH_CAPABILITIES, MODELCAR_BUILD_TASK, MODELCAR_SERVICE_ACCOUNT, create_policy,
    create_task, is_ready, modelcar_policy, modelcar_scene, refused_as,
};
use buildpolicy_test_support::{repo_root, unique_name, wait_for, with_temp_ns};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `target/status-samples/<case>.json`: the policy as the server has it now.
async fn save(policies: &Api<BuildPolicy>, name: &str, case: &str) -> BuildPolicy {
    let policy = policies.get(name).await.expect("the policy");
    let dir = repo_root().join("target/status-samples");
    std::fs::create_dir_all(&dir).expect("target/status-samples");
    let path = dir.join(format!("{case}.json"));
    let mut json = serde_json::to_value(&policy).expect("a policy serialises");
    // As the API server would answer a GET.
    json["apiVersion"] = json!("buildpolicy.dev/v1alpha1");
    json["kind"] = json!("BuildPolicy");
    std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    policy
}

/// `(type, reason)` of the policy's `Stalled` and `Reconciling` conditions.
fn kstatus(policy: &BuildPolicy) -> Vec<(String, String)> {
    policy
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .filter(|c| c.type_ == conditions::STALLED || c.type_ == conditions::RECONCILING)
        .map(|c| {
            assert_eq!(c.status, "True", "present only when True: {c:?}");
            let ready = policy.condition(conditions::READY).expect("Ready");
            assert_eq!((&c.reason, &c.message), (&ready.reason, &ready.message));
            (c.type_.clone(), c.reason.clone())
        })
        .collect()
}

fn pair(type_: &str, reason: &str) -> Vec<(String, String)> {
    vec![(type_.to_owned(), reason.to_owned())]
}

async fn create(op: &Operator, name: &str, ns: &str, capabilities: &[&str], tasks: &[&str]) {
    op.create(&op.policy(name, ns, MODELCAR_SERVICE_ACCOUNT, capabilities, tasks))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_and_reconciling_tell_gitops_tools_what_a_policy_waits_for() {
    with_temp_ns(|client: Client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        let scope = unique_name("gitops");
        let op = Operator::start(&client, &scope).await;

        // Ready: neither condition.
        let ready = unique_name("ready");
        create(
            &op,
            &ready,
            &ns,
            &BUILDAH_CAPABILITIES,
            &[MODELCAR_BUILD_TASK],
        )
        .await;
        wait_for(&policies, &ready, TIMEOUT, is_ready).await;
        assert_eq!(kstatus(&save(&policies, &ready, "ready").await), []);

        // Over the ceiling: only a person can fix it.
        let over = unique_name("over-ceiling");
        create(&op, &over, &ns, &["NET_ADMIN"], &[MODELCAR_BUILD_TASK]).await;
        wait_for(
            &policies,
            &over,
            TIMEOUT,
            refused_as(reason::CAPABILITY_NOT_ALLOWED),
        )
        .await;
        let saved = save(&policies, &over, "capability-not-allowed").await;
        assert_eq!(
            kstatus(&saved),
            pair(conditions::STALLED, reason::CAPABILITY_NOT_ALLOWED)
        );

        // A Task pinned to another SCC by hand: a conflict for a person.
        create_task(&client, &ns, "pinned-by-hand").await;
        Api::<buildpolicy_api::Task>::namespaced(client.clone(), &ns)
            .patch(
                "pinned-by-hand",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {REQUIRED_SCC_ANNOTATION: "anyuid"}}}),
                ),
            )
            .await
            .expect("pinning a Task by hand");
        let conflict = unique_name("conflict");
        create(
            &op,
            &conflict,
            &ns,
            &BUILDAH_CAPABILITIES,
            &["pinned-by-hand"],
        )
        .await;
        wait_for(
            &policies,
            &conflict,
            TIMEOUT,
            refused_as(reason::TASK_CONFLICT),
        )
        .await;
        let saved = save(&policies, &conflict, "task-conflict").await;
        assert_eq!(
            kstatus(&saved),
            pair(conditions::STALLED, reason::TASK_CONFLICT)
        );

        // Waiting for objects to appear: the operator goes on by itself.
        let no_ns = unique_name("no-namespace");
        let missing_ns = unique_name("not-yet");
        create(
            &op,
            &no_ns,
            &missing_ns,
            &BUILDAH_CAPABILITIES,
            &[MODELCAR_BUILD_TASK],
        )
        .await;
        wait_for(
            &policies,
            &no_ns,
            TIMEOUT,
            refused_as(reason::NAMESPACE_NOT_FOUND),
        )
        .await;
        let saved = save(&policies, &no_ns, "namespace-not-found").await;
        assert_eq!(
            kstatus(&saved),
            pair(conditions::RECONCILING, reason::NAMESPACE_NOT_FOUND)
        );
        let no_task = unique_name("no-task");
        create(
            &op,
            &no_task,
            &ns,
            &BUILDAH_CAPABILITIES,
            &["not-written-yet"],
        )
        .await;
        wait_for(
            &policies,
            &no_task,
            TIMEOUT,
            refused_as(reason::TASK_NOT_FOUND),
        )
        .await;
        let saved = save(&policies, &no_task, "task-not-found").await;
        assert_eq!(
            kstatus(&saved),
            pair(conditions::RECONCILING, reason::TASK_NOT_FOUND)
        );
        // The Task appears: Ready, and the kstatus condition is gone.
        create_task(&client, &ns, "not-written-yet").await;
        let policy = wait_for(&policies, &no_task, TIMEOUT, is_ready).await;
        assert_eq!(kstatus(&policy), []);

        // While the operator is stopped: a spec change it has not seen, a
        // deletion its finalizer holds, a policy it never saw.
        op.stop().await;
        policies
            .patch(
                &ready,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"capabilities": ["SETUID", "SETGID"]}})),
            )
            .await
            .expect("changing the spec");
        let stale = save(&policies, &ready, "stale-generation").await;
        assert!(
            stale.status.as_ref().and_then(|s| s.observed_generation) < stale.metadata.generation
        );
        policies
            .delete(&no_task, &DeleteParams::default())
            .await
            .expect("deleting");
        let deleting = save(&policies, &no_task, "deleting").await;
        assert!(deleting.metadata.deletion_timestamp.is_some());
        let fresh = unique_name("fresh");
        create_policy(&client, &modelcar_policy(&scope, &fresh, &ns)).await;
        let unseen = save(&policies, &fresh, "no-status").await;
        assert!(unseen.status.is_none(), "{:?}", unseen.status);

        // The operator back: everything is revoked and gone.
        Operator::start(&client, &scope)
            .await
            .delete_policies_and_stop()
            .await;
    })
    .await;
}

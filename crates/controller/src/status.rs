//! Writes `BuildPolicy.status` from an [`Observation`], only when it changed,
//! and tells the pipeline owner with an event when Ready changes.

use buildpolicy_api::conditions;
use buildpolicy_api::keys::FIELD_MANAGER;
use buildpolicy_api::{BuildPolicy, BuildPolicyStatus};
use buildpolicy_policy::status::{Observation, conditions as derive_conditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Doing as _, Result};
use crate::events::{self, Outcome};

/// The status for `obs`, keeping `lastTransitionTime` of conditions whose
/// status did not change.
pub fn desired_status(policy: &BuildPolicy, obs: &Observation) -> BuildPolicyStatus {
    let generation = policy.metadata.generation;
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    let conditions = derive_conditions(obs)
        .into_iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.into(),
                status: status.into(),
                reason: c.reason.into(),
                message: c.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    BuildPolicyStatus {
        observed_generation: generation,
        scc_name: obs.rejection.is_none().then(|| obs.scc_name.clone()),
        pinned_tasks: obs.pinned_tasks.clone(),
        conditions,
    }
}

/// Applies the status if it differs from the stored one.
pub async fn write(policy: &BuildPolicy, ctx: &Context, obs: &Observation) -> Result<()> {
    let status = desired_status(policy, obs);
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY)
        .cloned();
    ctx.metrics.policy_ready(
        &policy.name_any(),
        ready.as_ref().map(|c| c.status == "True"),
    );
    if policy.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<BuildPolicy> = Api::all(ctx.client.clone());
    let body = serde_json::json!({
        "apiVersion": buildpolicy_api::policy::API_VERSION,
        "kind": buildpolicy_api::policy::KIND,
        "status": status,
    });
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .doing(|| format!("writing the status of BuildPolicy {}", policy.name_any()))?;

    // A newly refused build is news for the pipeline owner even while
    // Ready stays True.
    let builds = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::BUILDS_ADMITTED && c.status == "False");
    let builds_before = policy.condition(conditions::BUILDS_ADMITTED);
    if let Some(refused) = builds
        && builds_before.map(|b| (&b.status, &b.message))
            != Some((&refused.status, &refused.message))
    {
        events::record(
            ctx,
            policy,
            Outcome::BuildRefused {
                reason: refused.reason.clone(),
                text: refused.message.clone(),
            },
        );
    }

    let before = policy.condition(conditions::READY);
    if let Some(ready) = ready
        && before.map(|b| (&b.status, &b.reason)) != Some((&ready.status, &ready.reason))
    {
        events::record(
            ctx,
            policy,
            Outcome::ReadyChanged {
                ready: ready.status == "True",
                reason: ready.reason.clone(),
                text: format!("Ready={}: {}", ready.status, ready.message),
            },
        );
    }
    Ok(())
}

//! Advisory analyses of a granted policy, reported as conditions that do not
//! change `Ready` (the grant is in place either way):
//!
//! - `PreemptionSafe`: could pods of the service account that are *not*
//!   pinned be admitted under the generated SCC, ahead of the SCC they get
//!   without it (seed 001)? Computed from the SCCs actually in the cluster
//!   and what the service account may use.
//! - `TasksAdmissible`: would SCC admission accept the pinned Tasks' pods,
//!   step by step (seeds 000 and 003)?

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use buildpolicy_api::conditions::reason;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_policy::admission::{PodSecurityRequest, Preemption, preemption};
use buildpolicy_policy::status::Advice;
use buildpolicy_policy::task_check::check_task;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::PodSpec;
use kube::Api;
use kube::api::PostParams;

use crate::context::Context;
use crate::error::{Context as _, Result};

/// How long an answer to "may this service account use that SCC?" is reused.
const ACCESS_TTL: Duration = Duration::from_secs(120);

/// (namespace, service account, SCC).
type AccessKey = (String, String, String);

/// Remembered SubjectAccessReview answers, so a resync costs no requests.
#[derive(Default)]
pub struct AccessCache(Mutex<HashMap<AccessKey, (bool, Instant)>>);

impl AccessCache {
    fn get(&self, key: &AccessKey) -> Option<bool> {
        let map = self.0.lock().expect("access cache lock");
        map.get(key)
            .filter(|(_, at)| at.elapsed() < ACCESS_TTL)
            .map(|(allowed, _)| *allowed)
    }

    fn put(&self, key: AccessKey, allowed: bool) {
        self.0
            .lock()
            .expect("access cache lock")
            .insert(key, (allowed, Instant::now()));
    }
}

/// Whether `system:serviceaccount:<ns>:<sa>` may use `scc`, as SCC admission
/// decides it: through RBAC (`use` in the pod's namespace), or through the
/// SCC's own `users` and `groups`.
async fn may_use(
    ctx: &Context,
    ns: &str,
    sa: &str,
    scc: &SecurityContextConstraints,
) -> Result<bool> {
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let groups = [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ];
    if scc.users.iter().flatten().any(|u| *u == user)
        || scc.groups.iter().flatten().any(|g| groups.contains(g))
    {
        return Ok(true);
    }
    let key = (ns.to_owned(), sa.to_owned(), scc.name().to_owned());
    if let Some(allowed) = ctx.access.get(&key) {
        return Ok(allowed);
    }
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user),
            groups: Some(groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(buildpolicy_api::scc::GROUP.into()),
                resource: Some(buildpolicy_api::scc::PLURAL.into()),
                name: Some(scc.name().into()),
                namespace: Some(ns.into()),
                verb: Some("use".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .doing(|| format!("asking whether {ns}/{sa} may use SCC {}", scc.name()))?;
    let allowed = answer.status.is_some_and(|s| s.allowed);
    ctx.access.put(key, allowed);
    Ok(allowed)
}

/// Pods the analysis tries: an ordinary one (restricted-v2 admits it) and
/// one that runs as root, as unpinned build-adjacent steps often do.
fn probe_pods() -> Vec<(&'static str, PodSecurityRequest)> {
    let root: PodSpec = serde_json::from_value(serde_json::json!({
        "securityContext": {"runAsUser": 0},
        "containers": [{"name": "step", "image": "image"}]
    }))
    .expect("static pod spec");
    vec![
        ("ordinary", PodSecurityRequest::ordinary()),
        ("root", PodSecurityRequest::from_pod_spec(&root)),
    ]
}

/// The `PreemptionSafe` advice for a policy whose SCC is `generated`.
pub async fn preemption_advice(
    policy: &BuildPolicy,
    ctx: &Context,
    generated: &SecurityContextConstraints,
) -> Result<Advice> {
    let (ns, sa) = (&policy.spec.namespace, &policy.spec.service_account_name);
    let live_generated = ctx.caches.scc(generated.name());
    let generated = live_generated.as_deref().unwrap_or(generated);
    let mut usable = Vec::new();
    let others = ctx.caches.sccs.state();
    for scc in others.iter().filter(|s| s.name() != generated.name()) {
        if may_use(ctx, ns, sa, scc).await? {
            usable.push(scc.clone());
        }
    }
    let usable: Vec<&SecurityContextConstraints> = usable.iter().map(|s| s.as_ref()).collect();
    let subject = format!("{ns}/{sa}");
    let mut safe_message = None;
    let mut widened = None;
    for (kind, pod) in probe_pods() {
        let verdict = preemption(generated, &usable, Some(&pod));
        let message = verdict.message(&subject);
        match verdict {
            Preemption::Unsafe { .. } => {
                return Ok(Advice::bad(
                    reason::PREEMPTS,
                    format!("{kind} pods: {message}"),
                ));
            }
            // Not preemption (no other SCC loses a pod), but worth knowing:
            // the grant covers the whole service account.
            Preemption::OnlyGenerated { .. } => {
                widened.get_or_insert(format!(
                    "{kind} pods that no other SCC admits would run under it"
                ));
            }
            _ => {
                safe_message.get_or_insert(message);
            }
        }
    }
    let mut message = safe_message.unwrap_or_default();
    if let Some(widened) = widened {
        message.push_str(&format!(
            "; note: {widened}: keep {subject} for the pinned Tasks only"
        ));
    }
    Ok(Advice::good(reason::SORTS_AFTER_DEFAULT, message))
}

/// The `TasksAdmissible` advice: each pinned Task checked against the SCC.
pub async fn tasks_advice(
    policy: &BuildPolicy,
    ctx: &Context,
    scc: &SecurityContextConstraints,
    pinned: &[String],
) -> Result<Option<Advice>> {
    if pinned.is_empty() {
        return Ok(None);
    }
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), &policy.spec.namespace);
    let mut problems = Vec::new();
    let mut privileged_steps = Vec::new();
    for name in pinned {
        let Some(task) = api
            .get_opt(name)
            .await
            .doing(|| format!("reading Task {name}"))?
        else {
            continue;
        };
        let report = check_task(
            name,
            task.spec.as_ref().unwrap_or(&serde_json::Value::Null),
            scc,
        );
        problems.extend(report.findings.iter().map(|f| format!("Task {name}: {f}")));
        privileged_steps.extend(
            report
                .capability_steps
                .iter()
                .map(|(step, caps)| format!("{name} {step} adds {}", caps.join(", "))),
        );
    }
    Ok(Some(if problems.is_empty() {
        let confined = if privileged_steps.is_empty() {
            "no step adds capabilities".to_owned()
        } else {
            format!(
                "capabilities are confined to: {}",
                privileged_steps.join("; ")
            )
        };
        Advice::good(
            reason::ADMISSIBLE,
            format!("every step of the pinned Tasks is admissible under the SCC; {confined}"),
        )
    } else {
        Advice::bad(reason::NOT_ADMISSIBLE, problems.join("; "))
    }))
}

//! One reconcile of one BuildPolicy:
//! read (caches) → validate → build desired objects → apply what differs →
//! revoke what is no longer wanted → write status.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use buildpolicy_api::conditions::reason;
use buildpolicy_api::keys::{
    FIELD_MANAGER, FINALIZER, POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name,
};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task, TaskRun};
use buildpolicy_policy::builds::builds_advice;
use buildpolicy_policy::ceiling::ConfinementMode;
use buildpolicy_policy::confinement;
use buildpolicy_policy::drift::{role_binding_drift, role_drift, scc_drift};
use buildpolicy_policy::status::Advice;
use buildpolicy_policy::status::{Observation, Part};
use buildpolicy_policy::{Desired, FittedScc, Owner, Rejection, TaskPin, render, validate};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use crate::analysis;
use crate::caches::Caches;
use crate::context::Context;
use crate::error::{Doing as _, Error, Result};
use crate::events::{self, Outcome};
use crate::status;

/// Entry point for the kube-runtime `Controller`.
#[instrument(skip(policy, ctx), fields(policy = %policy.name_any()))]
pub async fn reconcile(policy: Arc<BuildPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    ctx.caches.ready().await;
    let _running = ctx.health.reconcile_running(&policy.name_any());
    let api: Api<BuildPolicy> = Api::all(ctx.client.clone());
    let target = policy.clone();
    let result = finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            Finalizer::Apply(policy) => apply(&policy, &ctx).await,
            Finalizer::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await;
    let result = match result {
        // The cached policy was older than the one holding the finalizer: the
        // watch delivers the fresh object and reconciles again.
        Err(kube::runtime::finalizer::Error::AddFinalizer(kube::Error::Api(s)))
            if s.code == 422 || s.code == 409 =>
        {
            Ok(Action::await_change())
        }
        other => other.map_err(|e| Error::Finalizer(Box::new(e))),
    };
    // What it did, as one Event, whether it succeeded or not.
    events::flush(&ctx, &target).await;
    ctx.metrics.reconciled(result.is_ok());
    result
}

/// How long after a failed reconcile the policy is tried again.
pub const ERROR_REQUEUE: std::time::Duration = std::time::Duration::from_secs(5);

/// What to do after a failed reconcile: retry soon, without hot-looping.
pub fn error_policy(policy: Arc<BuildPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(policy = %policy.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(&error.metric_label());
    Action::requeue(ERROR_REQUEUE)
}

fn owned_by(meta: &ObjectMeta, owner: &Owner) -> bool {
    match &owner.uid {
        Some(uid) => meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| &o.uid == uid),
        None => false,
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply(policy: &BuildPolicy, ctx: &Context) -> Result<Action> {
    let name = policy.name_any();
    let owner = Owner::of(policy);
    let spec = &policy.spec;
    let mut obs = Observation {
        namespace: spec.namespace.clone(),
        scc_name: owned_name(&name),
        isolation: spec.isolation,
        ..Observation::default()
    };

    let ceiling = ctx.ceiling.borrow().clone();
    if let Err(rejection) = validate(&name, spec, &ceiling) {
        return refuse(policy, ctx, obs, rejection).await;
    }

    let desired = render(&owner, spec);
    // The SCC as the cluster's SCC schema can hold it; a policy that needs
    // a field this OpenShift lacks is refused like one over the ceiling
    // (the CRD watch looks at it again when the schema changes).
    let scc = match ctx.caches.scc_schema().fit(&desired.scc, spec.isolation) {
        Ok(fitted) => fitted,
        Err(rejection) => return refuse(policy, ctx, obs, rejection).await,
    };

    // 1. The SCC, unless someone else holds the name.
    match ctx.caches.scc(&obs.scc_name) {
        Some(live) if !owned_by(&live.metadata, &owner) => {
            obs.scc = Part::Blocked {
                reason: reason::SCC_CONFLICT,
                message: format!(
                    "an SCC named {} already exists and is not owned by this policy: it was left unchanged and nothing is granted; rename the policy or remove that SCC",
                    obs.scc_name
                ),
            };
            revoke(policy, ctx, &Keep::nothing_but_foreign_scc()).await?;
            status::write(policy, ctx, &obs).await?;
            return Ok(Action::await_change());
        }
        live => match apply_scc(policy, ctx, &scc, live.as_deref()).await {
            Ok(()) => obs.scc = Part::Ready,
            Err(e) => {
                // Nothing is granted without the SCC: say why, then retry.
                obs.scc = Part::Blocked {
                    reason: reason::APPLY_FAILED,
                    message: e.one_line(),
                };
                status::write(policy, ctx, &obs).await?;
                return Err(e);
            }
        },
    }

    // 2. RBAC in the policy's namespace, if it exists.
    let namespace_exists = ctx.caches.namespace_exists(&spec.namespace);
    let mut rbac_error = None;
    if namespace_exists {
        match apply_rbac(policy, ctx, &desired).await {
            Ok(()) => obs.rbac = Part::Ready,
            Err(e) => {
                obs.rbac = Part::Blocked {
                    reason: reason::APPLY_FAILED,
                    message: e.one_line(),
                };
                rbac_error = Some(e);
            }
        }
        if !ctx
            .caches
            .service_account_exists(&spec.namespace, &spec.service_account_name)
        {
            obs.service_account_missing =
                Some(format!("{}/{}", spec.namespace, spec.service_account_name));
        }
    } else {
        obs.namespace_missing = Some(spec.namespace.clone());
    }

    // 3. Pins on the listed Tasks; the Tasks the server answered a pin
    // with are what the Task check reads.
    let mut pinned_now = HashMap::new();
    if namespace_exists {
        pinned_now = pin_tasks(policy, ctx, &desired.pins, &mut obs).await?;
    }

    // 4. Confinement of the SCC to the listed Tasks' pods.
    let mut confine_error = None;
    if obs.scc == Part::Ready {
        match confine(policy, ctx, &owner, &ceiling).await {
            Ok(advice) => obs.confinement = Some(advice),
            Err(e) => {
                obs.confinement = Some(Advice::bad(reason::APPLY_FAILED, e.one_line()));
                confine_error = Some(e);
            }
        }
    }

    // 5. Advice on what the grant means for other pods and for the Tasks.
    if obs.scc == Part::Ready {
        obs.preemption = Some(analysis::preemption_advice(
            policy,
            &ctx.caches,
            &scc.scc,
            obs.confinement.as_ref().is_some_and(|c| c.ok),
        ));
        match analysis::tasks_advice(policy, ctx, &scc.scc, &obs.pinned_tasks, &pinned_now).await {
            Ok(advice) => obs.tasks_admissible = advice,
            Err(error) => warn!(%error, "Task admissibility check failed"),
        }
    }
    let runs = ctx.caches.task_runs_of(&name, &spec.namespace);
    let runs: Vec<&TaskRun> = runs.iter().map(AsRef::as_ref).collect();
    obs.builds = builds_advice(&spec.tasks, spec.isolation, &runs);

    // 6. Whatever the policy held before and no longer wants. A Task that
    // could not be re-pinned keeps whatever pin it has.
    let mut kept = obs.pinned_tasks.clone();
    kept.extend(obs.failed_tasks.iter().map(|(task, _)| task.clone()));
    let mut keep = Keep::from_desired(&desired, namespace_exists, &kept);
    keep.binding = obs
        .confinement
        .as_ref()
        .is_some_and(|c| c.ok || c.reason == reason::WARN_ONLY || confine_error.is_some());
    revoke(policy, ctx, &keep).await?;

    status::write(policy, ctx, &obs).await?;
    if let Some(error) = rbac_error.or(confine_error) {
        return Err(error);
    }
    if let Some((task, error)) = obs.failed_tasks.first() {
        return Err(Error::Pin {
            task: format!("{}/{task}", spec.namespace),
            error: error.clone(),
        });
    }
    if obs.namespace_missing.is_some() || !obs.missing_tasks.is_empty() {
        // The namespace, service account and Task watches wake us up.
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(ctx.config.resync))
    }
}

/// Refuses the policy: nothing is granted, anything granted earlier is
/// revoked, and the status says why.
async fn refuse(
    policy: &BuildPolicy,
    ctx: &Context,
    mut obs: Observation,
    rejection: Rejection,
) -> Result<Action> {
    info!(
        reason = rejection.reason,
        "policy refused: revoking anything it held"
    );
    obs.rejection = Some(rejection);
    revoke(policy, ctx, &Keep::nothing()).await?;
    status::write(policy, ctx, &obs).await?;
    Ok(Action::await_change())
}

async fn apply_scc(
    policy: &BuildPolicy,
    ctx: &Context,
    fitted: &FittedScc,
    live: Option<&SecurityContextConstraints>,
) -> Result<()> {
    // Compared in the schema's view: a field the schema lacks is neither
    // rendered nor stored, so it is no drift.
    let desired = &fitted.scc;
    let drift = match live {
        Some(live) => scc_drift(desired, live),
        None => vec![],
    };
    if live.is_some() && drift.is_empty() {
        return Ok(());
    }
    let api: Api<SecurityContextConstraints> = Api::all(ctx.client.clone());
    api.patch(desired.name(), &apply_params(), &Patch::Apply(&fitted.body))
        .await
        .doing(|| format!("applying SecurityContextConstraints {}", desired.name()))?;
    let kind = "SecurityContextConstraints".to_owned();
    events::record(
        ctx,
        policy,
        if live.is_some() {
            Outcome::Repaired {
                kind,
                text: format!(
                    "SecurityContextConstraints {} was changed by hand ({}); restored",
                    desired.name(),
                    drift.join(", ")
                ),
            }
        } else {
            Outcome::Granted {
                kind,
                text: format!(
                    "SecurityContextConstraints {} allows {}",
                    desired.name(),
                    desired
                        .allowed_capabilities
                        .clone()
                        .unwrap_or_default()
                        .join(", ")
                ),
            }
        },
    );
    Ok(())
}

async fn apply_rbac(policy: &BuildPolicy, ctx: &Context, desired: &Desired) -> Result<()> {
    let ns = &policy.spec.namespace;
    let role_name = desired
        .role
        .metadata
        .name
        .clone()
        .ok_or(Error::Incomplete("role name"))?;
    let live_role = ctx
        .caches
        .roles
        .get(&kube::runtime::reflector::ObjectRef::new(&role_name).within(ns));
    let live_binding = ctx
        .caches
        .role_bindings
        .get(&kube::runtime::reflector::ObjectRef::new(&role_name).within(ns));

    let role_drift = live_role
        .as_deref()
        .map(|live| role_drift(&desired.role, live));
    if role_drift.as_ref().is_none_or(|d| !d.is_empty()) {
        let api: Api<Role> = Api::namespaced(ctx.client.clone(), ns);
        api.patch(
            &role_name,
            &apply_params(),
            &Patch::Apply(with_type(&desired.role)),
        )
        .await
        .doing(|| format!("applying Role {ns}/{role_name}"))?;
        note_rbac_change(policy, ctx, "Role", &role_name, role_drift).await;
    }

    let binding_drift = live_binding
        .as_deref()
        .map(|live| role_binding_drift(&desired.role_binding, live));
    if binding_drift.as_ref().is_none_or(|d| !d.is_empty()) {
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), ns);
        if binding_drift
            .as_ref()
            .is_some_and(|d| d.contains(&"roleRef"))
        {
            // roleRef is immutable: replace the binding.
            api.delete(&role_name, &DeleteParams::default())
                .await
                .doing(|| format!("replacing RoleBinding {ns}/{role_name}"))?;
        }
        api.patch(
            &role_name,
            &apply_params(),
            &Patch::Apply(with_type(&desired.role_binding)),
        )
        .await
        .doing(|| format!("applying RoleBinding {ns}/{role_name}"))?;
        note_rbac_change(policy, ctx, "RoleBinding", &role_name, binding_drift).await;
    }
    Ok(())
}

async fn note_rbac_change(
    policy: &BuildPolicy,
    ctx: &Context,
    kind: &str,
    name: &str,
    drift: Option<Vec<&str>>,
) {
    let ns = &policy.spec.namespace;
    let kind = kind.to_owned();
    events::record(
        ctx,
        policy,
        match drift {
            Some(fields) => Outcome::Repaired {
                text: format!(
                    "{kind} {ns}/{name} was changed by hand ({}); restored",
                    fields.join(", ")
                ),
                kind,
            },
            None => Outcome::Granted {
                text: format!(
                    "{kind} {ns}/{name} lets only system:serviceaccount:{ns}:{} use the SCC",
                    policy.spec.service_account_name
                ),
                kind,
            },
        },
    );
}

/// Who holds a Task that this policy wants to pin, if not this policy.
fn task_holder(
    policy: &BuildPolicy,
    caches: &Caches,
    task: &PartialObjectMeta<Task>,
    scc_name: &str,
) -> Option<String> {
    let name = policy.name_any();
    let labels = task.metadata.labels.as_ref();
    let label_holder = labels
        .and_then(|l| l.get(POLICY_LABEL))
        .filter(|h| **h != name);
    if let Some(holder) = label_holder {
        // Another policy pinned it. The older policy wins; ties go to the
        // smaller name, so every replica and every run decides the same way.
        let other = caches.policy(holder)?;
        let task_name = task.name_any();
        let claims = other.spec.namespace == task.namespace().unwrap_or_default()
            && other.spec.tasks.contains(&task_name)
            && other.metadata.deletion_timestamp.is_none();
        let key = |p: &BuildPolicy| (p.metadata.creation_timestamp.clone(), p.name_any());
        return (claims && key(&other) < key(policy)).then(|| format!("BuildPolicy {holder}"));
    }
    let pinned_by_us = labels.and_then(|l| l.get(POLICY_LABEL)).is_some();
    let annotation = task
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUIRED_SCC_ANNOTATION));
    match annotation {
        Some(value) if !pinned_by_us && value != scc_name => Some(format!(
            "someone else ({REQUIRED_SCC_ANNOTATION}={value}, not set by a BuildPolicy)"
        )),
        _ => None,
    }
}

/// Pins the listed Tasks that are not pinned yet; returns the Tasks it
/// pinned, as the server answered the apply (spec included).
async fn pin_tasks(
    policy: &BuildPolicy,
    ctx: &Context,
    pins: &[TaskPin],
    obs: &mut Observation,
) -> Result<HashMap<String, Task>> {
    let mut pinned_now = HashMap::new();
    for pin in pins {
        let Some(task) = ctx.caches.task(&pin.namespace, &pin.name) else {
            obs.missing_tasks.push(pin.name.clone());
            continue;
        };
        if pin.is_current_on(&task.metadata) {
            obs.pinned_tasks.push(pin.name.clone());
            continue;
        }
        // Pinned, but with annotations of another spec.isolation mode: a
        // spec change to apply, not drift to report.
        let mode_changed = pin.is_satisfied_by(
            task.metadata.labels.as_ref(),
            task.metadata.annotations.as_ref(),
        );
        if let Some(holder) = task_holder(policy, &ctx.caches, &task, &obs.scc_name) {
            obs.conflicting_tasks.push((pin.name.clone(), holder));
            continue;
        }
        let was_ours = task
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POLICY_LABEL))
            == Some(&policy.name_any());
        let api: Api<Task> = Api::namespaced(ctx.client.clone(), &pin.namespace);
        match api
            .patch(&pin.name, &apply_params(), &Patch::Apply(pin.apply_body()))
            .await
        {
            Ok(task) => {
                obs.pinned_tasks.push(pin.name.clone());
                pinned_now.insert(pin.name.clone(), task);
                let kind = "Task".to_owned();
                events::record(
                    ctx,
                    policy,
                    if was_ours && !mode_changed {
                        Outcome::Repaired {
                            kind,
                            text: format!(
                                "the pin on Task {}/{} was changed by hand; restored",
                                pin.namespace, pin.name
                            ),
                        }
                    } else {
                        Outcome::Granted {
                            kind,
                            text: format!(
                                "Task {}/{} pinned to SCC {}",
                                pin.namespace, pin.name, obs.scc_name
                            ),
                        }
                    },
                );
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                obs.missing_tasks.push(pin.name.clone())
            }
            Err(e) => {
                // Reported in status; apply() fails the reconcile afterwards
                // so it is retried with backoff.
                warn!(task = %pin.name, error = %e, "could not pin Task");
                obs.failed_tasks.push((pin.name.clone(), short_error(&e)));
            }
        }
    }
    obs.pinned_tasks.sort();
    Ok(pinned_now)
}

/// Applies the confinement ValidatingAdmissionPolicy and this policy's
/// binding where they differ from what the ceiling wants; says what is in
/// force. The binding goes away with the policy (revoke, and its owner
/// reference); the admission policy is shared and stays.
async fn confine(
    policy: &BuildPolicy,
    ctx: &Context,
    owner: &Owner,
    ceiling: &buildpolicy_policy::Ceiling,
) -> Result<Advice> {
    let scc = owned_name(&policy.name_any());
    let confinement = &ceiling.confinement;
    if !ctx.config.admission_policies_served {
        return Ok(Advice::bad(
            reason::CONFINEMENT_UNSUPPORTED,
            format!(
                "the API server serves no ValidatingAdmissionPolicy (Kubernetes 1.30, OpenShift 4.17 and newer), so SCC {scc} is not confined to the listed Tasks: anyone who may create pods or TaskRuns in {} as {} can get it; upgrade the cluster, and keep that service account for the pinned Tasks only",
                policy.spec.namespace, policy.spec.service_account_name
            ),
        ));
    }
    let Some(binding) = confinement::binding(owner, &policy.spec.namespace, confinement.mode)
    else {
        return Ok(Advice::bad(
            reason::CONFINEMENT_OFF,
            format!(
                "confinement is off in the operator's ceiling: SCC {scc} goes to any pod of {}/{} that no other SCC admits, not only to the listed Tasks' pods; set confinement.mode: Enforce in the ceiling",
                policy.spec.namespace, policy.spec.service_account_name
            ),
        ));
    };
    let admission_policy = confinement::admission_policy(confinement);
    let live = ctx
        .caches
        .admission_policies
        .get(&ObjectRef::new(confinement::ADMISSION_POLICY_NAME));
    if !live.is_some_and(|l| confinement::spec_holds(&admission_policy, &l)) {
        Api::<ValidatingAdmissionPolicy>::all(ctx.client.clone())
            .patch(
                confinement::ADMISSION_POLICY_NAME,
                &apply_params(),
                &Patch::Apply(with_type(&admission_policy)),
            )
            .await
            .doing(|| {
                format!(
                    "applying ValidatingAdmissionPolicy {}",
                    confinement::ADMISSION_POLICY_NAME
                )
            })?;
    }
    let name = binding.metadata.name.clone().unwrap_or_default();
    let live = ctx.caches.admission_bindings.get(&ObjectRef::new(&name));
    if !live.is_some_and(|l| confinement::spec_holds(&binding, &l)) {
        Api::<ValidatingAdmissionPolicyBinding>::all(ctx.client.clone())
            .patch(&name, &apply_params(), &Patch::Apply(with_type(&binding)))
            .await
            .doing(|| format!("applying ValidatingAdmissionPolicyBinding {name}"))?;
    }
    let who = confinement.pipeline_controllers.join(", ");
    let tasks = policy.spec.tasks.join(", ");
    Ok(match confinement.mode {
        ConfinementMode::Warn => Advice::bad(
            reason::WARN_ONLY,
            format!(
                "confinement is in Warn mode in the operator's ceiling: pods under SCC {scc} that {who} did not create for Tasks {tasks} are admitted with a warning and an audit annotation, not refused; set confinement.mode: Enforce"
            ),
        ),
        _ => Advice::good(
            reason::ENFORCED,
            format!(
                "SCC {scc} is admitted only for pods that {who} creates for Tasks {tasks}, and a TaskRun labelled with one of them must run it by taskRef (ValidatingAdmissionPolicyBinding {name})"
            ),
        ),
    })
}

/// What a revoke must leave in place.
struct Keep {
    /// Keep the SCC (it is wanted).
    scc: bool,
    /// Role/RoleBinding to keep: (namespace, name).
    rbac: Option<(String, String)>,
    /// Tasks whose pin to keep: (namespace, name).
    tasks: BTreeSet<(String, String)>,
    /// Keep the confinement binding.
    binding: bool,
}

impl Keep {
    fn nothing() -> Self {
        Self {
            scc: false,
            rbac: None,
            tasks: BTreeSet::new(),
            binding: false,
        }
    }

    /// A foreign SCC holds our name: it is not ours to delete.
    fn nothing_but_foreign_scc() -> Self {
        Self {
            scc: true,
            ..Self::nothing()
        }
    }

    fn from_desired(desired: &Desired, namespace_exists: bool, pinned: &[String]) -> Self {
        let ns = desired.role.metadata.namespace.clone().unwrap_or_default();
        Self {
            scc: true,
            rbac: namespace_exists.then(|| {
                (
                    ns.clone(),
                    desired.role.metadata.name.clone().unwrap_or_default(),
                )
            }),
            tasks: desired
                .pins
                .iter()
                .filter(|p| pinned.contains(&p.name))
                .map(|p| (p.namespace.clone(), p.name.clone()))
                .collect(),
            binding: false,
        }
    }
}

/// Removes everything labelled as this policy's that `keep` does not name.
async fn revoke(policy: &BuildPolicy, ctx: &Context, keep: &Keep) -> Result<()> {
    let name = policy.name_any();
    let owner = Owner::of(policy);

    for task in Caches::labelled(&ctx.caches.tasks, &name) {
        let key = (task.namespace().unwrap_or_default(), task.name_any());
        if !keep.tasks.contains(&key) {
            unpin(policy, ctx, &key.0, &key.1).await?;
        }
    }

    let keep_rbac = |o: &ObjectMeta| {
        keep.rbac
            .as_ref()
            .is_some_and(|(ns, n)| o.namespace.as_ref() == Some(ns) && o.name.as_ref() == Some(n))
    };
    for binding in Caches::managed(&ctx.caches.role_bindings, &name) {
        if !keep_rbac(&binding.metadata) {
            delete_owned(
                policy,
                ctx,
                Api::<RoleBinding>::namespaced(
                    ctx.client.clone(),
                    &binding.namespace().unwrap_or_default(),
                ),
                &binding.metadata,
            )
            .await?;
        }
    }
    for role in Caches::managed(&ctx.caches.roles, &name) {
        if !keep_rbac(&role.metadata) {
            delete_owned(
                policy,
                ctx,
                Api::<Role>::namespaced(ctx.client.clone(), &role.namespace().unwrap_or_default()),
                &role.metadata,
            )
            .await?;
        }
    }

    if !keep.binding {
        for binding in Caches::managed(&ctx.caches.admission_bindings, &name) {
            delete_owned(
                policy,
                ctx,
                Api::<ValidatingAdmissionPolicyBinding>::all(ctx.client.clone()),
                &binding.metadata,
            )
            .await?;
        }
    }

    if !keep.scc
        && let Some(scc) = ctx.caches.scc(&owned_name(&name))
        && owned_by(&scc.metadata, &owner)
    {
        delete_owned(
            policy,
            ctx,
            Api::<SecurityContextConstraints>::all(ctx.client.clone()),
            &scc.metadata,
        )
        .await?;
    }
    Ok(())
}

async fn delete_owned<K>(
    policy: &BuildPolicy,
    ctx: &Context,
    api: Api<K>,
    meta: &ObjectMeta,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let kind = K::kind(&()).into_owned();
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(()),
        Err(e) => return Err(e).doing(|| format!("deleting {kind} {name}")),
    }
    let location = meta
        .namespace
        .as_ref()
        .map(|ns| format!("{ns}/{name}"))
        .unwrap_or(name);
    events::record(
        ctx,
        policy,
        Outcome::Revoked {
            text: format!("{kind} {location} deleted"),
            kind: kind.to_string(),
        },
    );
    Ok(())
}

/// Withdraws this policy's pin from a Task, leaving every other field alone.
async fn unpin(policy: &BuildPolicy, ctx: &Context, namespace: &str, task: &str) -> Result<()> {
    let name = policy.name_any();
    let scc_name = owned_name(&name);
    ctx.task_checks.forget(namespace, task);
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
    // Applying an empty body releases every field this manager owns; the
    // server removes those no other manager also owns.
    let after = match api
        .patch(
            task,
            &apply_params(),
            &Patch::Apply(TaskPin::withdraw_body(namespace, task)),
        )
        .await
    {
        Ok(t) => t,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e).doing(|| format!("unpinning Task {namespace}/{task}")),
    };
    // If someone else also set our values (kubectl annotate on a pinned
    // Task), they survive the release: remove them explicitly.
    let mut leftovers = serde_json::Map::new();
    if after.labels().get(POLICY_LABEL) == Some(&name) {
        leftovers.insert("labels".into(), serde_json::json!({ POLICY_LABEL: null }));
    }
    if after.annotations().get(REQUIRED_SCC_ANNOTATION) == Some(&scc_name) {
        leftovers.insert(
            "annotations".into(),
            serde_json::json!({ REQUIRED_SCC_ANNOTATION: null }),
        );
    }
    if !leftovers.is_empty() {
        api.patch(
            task,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "metadata": leftovers })),
        )
        .await
        .doing(|| format!("unpinning Task {namespace}/{task}"))?;
    }
    events::record(
        ctx,
        policy,
        Outcome::Revoked {
            kind: "Task".to_owned(),
            text: format!("Task {namespace}/{task} no longer pinned to SCC {scc_name}"),
        },
    );
    Ok(())
}

async fn cleanup(policy: &BuildPolicy, ctx: &Context) -> Result<Action> {
    info!("policy deleted: revoking its grant");
    revoke(policy, ctx, &Keep::nothing()).await?;
    ctx.metrics.policy_ready(&policy.name_any(), None);
    Ok(Action::await_change())
}

/// The API server's message, without the Rust error wrapping around it.
fn short_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.reason),
        other => other.to_string(),
    }
}

fn with_type<K: Resource<DynamicType = ()> + serde::Serialize>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).expect("object serialises");
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    value
}

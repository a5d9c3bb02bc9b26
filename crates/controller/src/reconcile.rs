//! One reconcile of one BuildPolicy:
//! read (caches) → validate → build desired objects → apply what differs →
//! revoke what is no longer wanted → write status.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use buildpolicy_api::conditions::reason;
use buildpolicy_api::keys::{
    FIELD_MANAGER, FINALIZER, POLICY_LABEL, REQUIRED_SCC_ANNOTATION, owned_name, ownership,
};
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task, TaskRun};
use buildpolicy_policy::builds::builds_advice;
use buildpolicy_policy::ceiling::ConfinementMode;
use buildpolicy_policy::confinement;
use buildpolicy_policy::drift::{role_binding_drift, role_drift, scc_drift};
use buildpolicy_policy::status::Advice;
use buildpolicy_policy::status::{ChangedTask, Observation, Part};
use buildpolicy_policy::{Desired, FittedScc, Owner, Rejection, TaskPin, render, validate};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
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
use crate::confinement::Want;
use crate::context::Context;
use crate::controller::applied_annotations_kept;
use crate::error::{Doing as _, Error, Result};
use crate::events::{self, Granted, Kind, Outcome};
use crate::status;
use crate::task_checks::TaskContent;

/// Entry point for the kube-runtime `Controller`.
#[instrument(skip(policy, ctx), fields(policy = %policy.name_any()))]
pub async fn reconcile(policy: Arc<BuildPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    ctx.caches.ready().await;
    let _running = ctx.health.reconcile_running(&policy.name_any());
    let api: Api<BuildPolicy> = Api::all(ctx.client.clone());
    let target = policy.clone();
    // A new policy: `finalizer` only adds the finalizer, and the watch event
    // of that change would bring the policy back through the queue before
    // anything is granted. It is applied right after instead.
    let adding_finalizer = policy.meta().deletion_timestamp.is_none()
        && !policy.finalizers().iter().any(|f| f == FINALIZER);
    let result = finalizer(&api, FINALIZER, policy.clone(), |event| async {
        match event {
            Finalizer::Apply(policy) => apply(&policy, &ctx).await,
            Finalizer::Cleanup(policy) => cleanup(&policy, &ctx).await,
        }
    })
    .await;
    let result = match result {
        Ok(_) if adding_finalizer => apply(&policy, &ctx).await,
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

pub(crate) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// What one reconcile found and did, for the one path that ends it.
struct Done {
    obs: Observation,
    /// What a revoke must leave in place; `None`: revoke nothing (the SCC
    /// could not be applied, so what is wanted is not known to be in place).
    keep: Option<Keep>,
    /// Fails the reconcile once the status is written, so it is retried.
    error: Option<Error>,
    action: Action,
}

impl Done {
    /// Nothing granted, anything granted earlier revoked (`keep`), the
    /// status saying why.
    fn refused(obs: Observation, keep: Keep) -> Self {
        Self {
            obs,
            keep: Some(keep),
            error: None,
            action: Action::await_change(),
        }
    }
}

async fn apply(policy: &BuildPolicy, ctx: &Context) -> Result<Action> {
    let done = grant(policy, ctx).await;
    // Every reconcile ends here: revoke what is no longer wanted, then say
    // so in the status, then fail if a step failed.
    if let Some(keep) = &done.keep {
        revoke(policy, ctx, keep).await?;
    }
    status::write(policy, ctx, &done.obs).await?;
    match done.error {
        Some(error) => Err(error),
        None => Ok(done.action),
    }
}

/// Applies what the policy asks for, step by step, each step answering
/// with its outcome; the observation is assembled from those outcomes.
async fn grant(policy: &BuildPolicy, ctx: &Context) -> Done {
    let name = policy.name_any();
    let owner = Owner::of(policy);
    let spec = &policy.spec;
    let base = Observation {
        namespace: spec.namespace.clone(),
        scc_name: owned_name(&name),
        isolation: spec.isolation,
        ..Observation::default()
    };
    let refuse = |rejection: Rejection| {
        info!(
            reason = rejection.reason,
            "policy refused: revoking anything it held"
        );
        let obs = Observation {
            rejection: Some(rejection),
            ..base.clone()
        };
        Done::refused(obs, Keep::nothing())
    };

    let ceiling = ctx.ceiling.borrow().clone();
    if let Err(rejection) = validate(&name, spec, &ceiling) {
        return refuse(rejection);
    }
    let desired = render(&owner, spec);
    // The SCC as the cluster's SCC schema can hold it; a policy that needs
    // a field this OpenShift lacks is refused like one over the ceiling
    // (the CRD watch looks at it again when the schema changes).
    let scc = match ctx.caches.scc_schema().fit(&desired.scc, spec.isolation) {
        Ok(fitted) => fitted,
        Err(rejection) => return refuse(rejection),
    };

    // 1. The SCC, unless someone else holds the name. Nothing is granted
    // without it.
    let live = ctx.caches.scc(&base.scc_name);
    if live
        .as_ref()
        .is_some_and(|live| !owned_by(&live.metadata, &owner))
    {
        let scc = Part::Blocked {
            reason: reason::SCC_CONFLICT,
            message: format!(
                "an SCC named {} already exists and is not owned by this policy: it was left unchanged and nothing is granted; rename the policy or remove that SCC",
                base.scc_name
            ),
        };
        return Done::refused(Observation { scc, ..base }, Keep::nothing_but_foreign_scc());
    }
    if let Err(error) = apply_scc(policy, ctx, &scc, live.as_deref()).await {
        let scc = Part::Blocked {
            reason: reason::APPLY_FAILED,
            message: error.one_line(),
        };
        return Done {
            obs: Observation { scc, ..base },
            keep: None,
            error: Some(error),
            action: Action::await_change(),
        };
    }

    let namespace_exists = ctx.caches.namespace_exists(&spec.namespace);
    let service_account_missing = (namespace_exists
        && !ctx
            .caches
            .service_account_exists(&spec.namespace, &spec.service_account_name))
    .then(|| format!("{}/{}", spec.namespace, spec.service_account_name));

    // 2. The listed Tasks' content against the digests the policy
    // reviewed; a Task that differs is neither pinned nor granted.
    let (changed_tasks, review_error) = if namespace_exists {
        review_tasks(policy, ctx).await
    } else {
        (Vec::new(), None)
    };
    let is_changed = |task: &str| changed_tasks.iter().any(|c| c.task == task);
    let granted_tasks: Vec<String> = spec
        .tasks
        .iter()
        .filter(|t| !is_changed(t))
        .cloned()
        .collect();
    let reviewed_pins: Vec<TaskPin> = desired
        .pins
        .iter()
        .filter(|p| !is_changed(&p.name))
        .cloned()
        .collect();

    // 3. Confinement of the SCC to the granted Tasks' pods, in force before
    // the service account may use the SCC.
    let (confinement, confine_error) = match confine(policy, ctx, &ceiling, &granted_tasks).await {
        Ok(advice) => (advice, None),
        Err(error) => (
            Advice::bad(reason::APPLY_FAILED, error.one_line()),
            Some(error),
        ),
    };

    // 4. RBAC in the policy's namespace, if it exists and the SCC's
    // confinement could be told.
    let rbac = if namespace_exists && confine_error.is_none() {
        apply_rbac(policy, ctx, &desired).await.err()
    } else {
        None
    };

    // 5. Pins on the listed Tasks; the Tasks the server answered a pin
    // with are what the Task check reads.
    let pins = if namespace_exists {
        pin_tasks(policy, ctx, &reviewed_pins).await
    } else {
        Pins::default()
    };

    // 6. Advice on what the grant means for other pods and for the Tasks,
    // both for the namespace's allocation.
    let allocation = analysis::allocation(&ctx.caches, &spec.namespace);
    let allocation = allocation.as_ref();
    let preemption =
        analysis::preemption_advice(policy, &ctx.caches, &scc.scc, allocation, confinement.ok);
    let tasks_admissible = match analysis::tasks_advice(
        policy,
        ctx,
        &scc.scc,
        allocation,
        &pins.pinned,
        &pins.pinned_now,
    )
    .await
    {
        Ok(advice) => advice,
        Err(error) => {
            warn!(%error, "Task admissibility check failed");
            None
        }
    };
    let runs = ctx.caches.task_runs_of(&name, &spec.namespace);
    let runs: Vec<&TaskRun> = runs.iter().map(AsRef::as_ref).collect();
    let builds = builds_advice(&spec.tasks, spec.isolation, &runs);

    // 7. Whatever the policy held before and no longer wants. A Task that
    // could not be re-pinned keeps whatever pin it has; the binding stays
    // while confinement is in force, or could not be told.
    let mut kept = pins.pinned.clone();
    kept.extend(pins.failed.iter().map(|(task, _)| task.clone()));
    let mut keep = Keep::from_desired(&desired, namespace_exists, &kept);
    keep.binding =
        confinement.ok || confinement.reason == reason::WARN_ONLY || confine_error.is_some();

    let pin_error = pins.failed.first().map(|(task, error)| Error::Pin {
        task: format!("{}/{task}", spec.namespace),
        error: error.clone(),
    });
    // The namespace, service account and Task watches wake a policy that
    // waits for them; the others look again at the next resync.
    let action = if !namespace_exists || !pins.missing.is_empty() {
        Action::await_change()
    } else {
        Action::requeue(ctx.config.resync)
    };
    let obs = Observation {
        scc: Part::Ready,
        rbac: match (&rbac, namespace_exists) {
            (Some(error), _) => Part::Blocked {
                reason: reason::APPLY_FAILED,
                message: error.one_line(),
            },
            (None, true) => Part::Ready,
            (None, false) => Part::Withheld,
        },
        namespace_missing: (!namespace_exists).then(|| spec.namespace.clone()),
        service_account_missing,
        missing_tasks: pins.missing,
        conflicting_tasks: pins.conflicting,
        pinned_tasks: pins.pinned,
        failed_tasks: pins.failed,
        changed_tasks,
        preemption: Some(preemption),
        tasks_admissible,
        builds,
        confinement: Some(confinement),
        ..base
    };
    Done {
        obs,
        keep: Some(keep),
        error: rbac.or(review_error).or(confine_error).or(pin_error),
        action,
    }
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
    let kind = Kind::Scc;
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
        note_rbac_change(policy, ctx, Kind::Role, &role_name, role_drift).await;
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
        note_rbac_change(policy, ctx, Kind::RoleBinding, &role_name, binding_drift).await;
    }
    Ok(())
}

async fn note_rbac_change(
    policy: &BuildPolicy,
    ctx: &Context,
    kind: Kind,
    name: &str,
    drift: Option<Vec<&str>>,
) {
    let ns = &policy.spec.namespace;
    let what = kind.name();
    events::record(
        ctx,
        policy,
        match drift {
            Some(fields) => Outcome::Repaired {
                text: format!(
                    "{what} {ns}/{name} was changed by hand ({}); restored",
                    fields.join(", ")
                ),
                kind,
            },
            None => Outcome::Granted {
                text: format!(
                    "{what} {ns}/{name} lets only system:serviceaccount:{ns}:{} use the SCC",
                    policy.spec.service_account_name
                ),
                kind,
            },
        },
    );
}

/// Who holds a Task that this policy wants to pin, if not this policy;
/// `policy_named` looks a policy up by name.
fn task_holder(
    policy: &BuildPolicy,
    policy_named: impl Fn(&str) -> Option<Arc<BuildPolicy>>,
    task: &PartialObjectMeta<Task>,
    scc_name: &str,
) -> Option<String> {
    let name = policy.name_any();
    let pinned_by = ownership(task).policy();
    let label_holder = pinned_by.filter(|h| *h != name);
    if let Some(holder) = label_holder {
        // Another policy pinned it. The older policy wins; ties go to the
        // smaller name, so every replica and every run decides the same way.
        let other = policy_named(holder)?;
        let task_name = task.name_any();
        let claims = other.spec.namespace == task.namespace().unwrap_or_default()
            && other.spec.tasks.contains(&task_name)
            && other.metadata.deletion_timestamp.is_none();
        let key = |p: &BuildPolicy| (p.metadata.creation_timestamp.clone(), p.name_any());
        return (claims && key(&other) < key(policy)).then(|| format!("BuildPolicy {holder}"));
    }
    let annotation = task
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUIRED_SCC_ANNOTATION));
    match annotation {
        Some(value) if pinned_by.is_none() && value != scc_name => Some(format!(
            "someone else ({REQUIRED_SCC_ANNOTATION}={value}, not set by a BuildPolicy)"
        )),
        _ => None,
    }
}

/// Where each listed Task stands after [`pin_tasks`].
#[derive(Default)]
struct Pins {
    /// Carry the pin (sorted).
    pinned: Vec<String>,
    /// Do not exist.
    missing: Vec<String>,
    /// Left alone, someone else pins them: (task, holder).
    conflicting: Vec<(String, String)>,
    /// Could not be pinned: (task, error).
    failed: Vec<(String, String)>,
    /// Pinned by this reconcile, as the server answered the apply (spec
    /// included).
    pinned_now: HashMap<String, Task>,
}

/// Pins the listed Tasks that are not pinned yet.
async fn pin_tasks(policy: &BuildPolicy, ctx: &Context, pins: &[TaskPin]) -> Pins {
    let mut out = Pins::default();
    let scc_name = owned_name(&policy.name_any());
    for pin in pins {
        let Some(task) = ctx.caches.task(&pin.namespace, &pin.name) else {
            out.missing.push(pin.name.clone());
            continue;
        };
        if pin.is_current_with(&task.metadata, &applied_annotations_kept(&task.metadata)) {
            out.pinned.push(pin.name.clone());
            continue;
        }
        // Pinned, but with annotations of another spec.isolation mode: a
        // spec change to apply, not drift to report.
        let mode_changed = pin.is_satisfied_by(
            task.metadata.labels.as_ref(),
            task.metadata.annotations.as_ref(),
        );
        if let Some(holder) = task_holder(policy, |n| ctx.caches.policy(n), &task, &scc_name) {
            out.conflicting.push((pin.name.clone(), holder));
            continue;
        }
        let was_ours = ownership(task.as_ref()).policy() == Some(&policy.name_any());
        let api: Api<Task> = Api::namespaced(ctx.client.clone(), &pin.namespace);
        match api
            .patch(&pin.name, &apply_params(), &Patch::Apply(pin.apply_body()))
            .await
        {
            Ok(task) => {
                // The pin changed the resourceVersion, not the spec: what
                // the review read stays known for the new version.
                if policy.spec.task_digests.contains_key(&pin.name)
                    && let Some(version) = task.metadata.resource_version.clone()
                {
                    ctx.task_contents.put(
                        (pin.namespace.clone(), pin.name.clone()),
                        version,
                        TaskContent::of(&task),
                    );
                }
                out.pinned.push(pin.name.clone());
                out.pinned_now.insert(pin.name.clone(), task);
                let kind = Kind::Task;
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
                                "Task {}/{} pinned to SCC {scc_name}",
                                pin.namespace, pin.name
                            ),
                        }
                    },
                );
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                out.missing.push(pin.name.clone())
            }
            Err(e) => {
                // Reported in status; apply() fails the reconcile afterwards
                // so it is retried after ERROR_REQUEUE.
                warn!(task = %pin.name, error = %e, "could not pin Task");
                out.failed.push((pin.name.clone(), short_error(&e)));
            }
        }
    }
    out.pinned.sort();
    out
}

/// The listed Tasks with a reviewed digest (`spec.taskDigests`) whose live
/// `spec` has another one. A Task is read only when its resourceVersion
/// changed since it was last looked at; one that cannot be read counts as
/// changed (nothing is granted on content nobody has seen), and the error
/// fails the reconcile so it is retried.
async fn review_tasks(policy: &BuildPolicy, ctx: &Context) -> (Vec<ChangedTask>, Option<Error>) {
    let ns = &policy.spec.namespace;
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), ns);
    let mut changed = Vec::new();
    let mut error = None;
    for (name, reviewed) in &policy.spec.task_digests {
        let Some(cached) = ctx.caches.task(ns, name) else {
            continue; // missing: TasksPinned says so
        };
        let key = (ns.clone(), name.clone());
        let version = cached.metadata.resource_version.clone().unwrap_or_default();
        let content = match ctx.task_contents.get(&key, &version) {
            Some(content) => content,
            None => match api
                .get_opt(name)
                .await
                .doing(|| format!("reading Task {ns}/{name}"))
            {
                Ok(Some(task)) => {
                    let content = TaskContent::of(&task);
                    if let Some(version) = task.metadata.resource_version.clone() {
                        ctx.task_contents.put(key, version, content.clone());
                    }
                    content
                }
                Ok(None) => continue,
                Err(e) => {
                    changed.push(ChangedTask {
                        task: name.clone(),
                        reviewed: reviewed.clone(),
                        live: format!("unknown (the Task could not be read: {})", e.one_line()),
                        changed_by: None,
                    });
                    error.get_or_insert(e);
                    continue;
                }
            },
        };
        if &content.digest != reviewed {
            changed.push(ChangedTask {
                task: name.clone(),
                reviewed: reviewed.clone(),
                live: content.digest,
                changed_by: content.changed_by,
            });
        }
    }
    if !changed.is_empty() {
        let what: Vec<String> = changed
            .iter()
            .map(|c| format!("{ns}/{} ({})", c.task, c.live))
            .collect();
        warn!(tasks = %what.join(", "), "listed Tasks differ from their reviewed digests: not granted");
    }
    (changed, error)
}

/// Puts this policy's entry (`granted`: the listed Tasks whose pods may get
/// the SCC) into its shard's admission rules and waits until they are
/// written, unless they hold it already; says what is in force. Also
/// deletes the admission objects of earlier releases: the shared one that
/// failed open, and this policy's own.
async fn confine(
    policy: &BuildPolicy,
    ctx: &Context,
    ceiling: &buildpolicy_policy::Ceiling,
    granted: &[String],
) -> Result<Advice> {
    let name = policy.name_any();
    let scc = owned_name(&name);
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
    delete_legacy_admission_policy(ctx).await?;
    let confiner = &ctx.confiner;
    let shard = confiner.shards.of(&name);
    let Some(binding) = confinement::binding(&confiner.shards, &shard, confinement.mode) else {
        return Ok(Advice::bad(
            reason::CONFINEMENT_OFF,
            format!(
                "confinement is off in the operator's ceiling: SCC {scc} goes to any pod of {}/{} that no other SCC admits, not only to the listed Tasks' pods; set confinement.mode: Enforce in the ceiling",
                policy.spec.namespace, policy.spec.service_account_name
            ),
        ));
    };
    let want = Want::In {
        namespace: policy.spec.namespace.clone(),
        entry: confinement::Entry::new(&name, &policy.spec, granted),
    };
    let examined = confiner
        .policies
        .live(&ctx.caches.admission_policies, &shard)
        .map(|live| confiner.examine(&live, confinement));
    let live_entry = examined.as_ref().and_then(|e| {
        confinement::find(&e.entries, &name).map(|(ns, entry)| Want::In {
            namespace: ns.to_owned(),
            entry: entry.clone(),
        })
    });
    let rules_hold = examined.as_ref().is_some_and(|e| e.rules_hold);
    let binding_holds = confiner
        .bindings
        .live(&ctx.caches.admission_bindings, &shard)
        .is_some_and(|l| confinement::spec_holds(&binding, &l));
    if live_entry.as_ref() == Some(&want) && rules_hold && binding_holds {
        confiner.note(&name, want);
    } else {
        let (before, same_settings) = confiner
            .hold(&name, want.clone(), confinement)
            .await
            .map_err(Error::Confinement)?;
        let ours = before.as_ref() == Some(&want);
        let (what, kind) = if live_entry.as_ref() != Some(&want) {
            ("this policy's entry", Kind::AdmissionPolicy)
        } else if !rules_hold {
            ("its rules", Kind::AdmissionPolicy)
        } else {
            ("its binding", Kind::AdmissionBinding)
        };
        let outcome = if live_entry.is_some() && ours && same_settings {
            Outcome::Repaired {
                kind,
                text: format!(
                    "ValidatingAdmissionPolicy {shard} was changed by hand ({what}); restored"
                ),
            }
        } else {
            Outcome::Granted {
                kind: Kind::AdmissionPolicy,
                text: format!(
                    "ValidatingAdmissionPolicy {shard} confines SCC {scc} to the listed Tasks"
                ),
            }
        };
        events::record(ctx, policy, outcome);
    }
    // This policy's own admission objects, from the release before shards.
    delete_all_managed(policy, ctx, &ctx.caches.admission_bindings).await?;
    delete_all_managed(policy, ctx, &ctx.caches.admission_policies).await?;

    let who = confinement.pipeline_controllers.join(", ");
    let tasks = if granted.is_empty() {
        "none of its Tasks".to_owned()
    } else {
        format!("Tasks {}", granted.join(", "))
    };
    let guard = if confinement.guard_task_edits {
        "; creating a listed Task or changing its spec is refused but for the ceiling's confinement.taskEditors"
    } else {
        ""
    };
    Ok(match confinement.mode {
        ConfinementMode::Warn => Advice::bad(
            reason::WARN_ONLY,
            format!(
                "confinement is in Warn mode in the operator's ceiling: pods under SCC {scc} that {who} did not create for {tasks} are admitted with a warning and an audit annotation, not refused; set confinement.mode: Enforce"
            ),
        ),
        _ => Advice::good(
            reason::ENFORCED,
            format!(
                "SCC {scc} is admitted only for pods that {who} creates for {tasks}; TaskRuns as {} must run a Task of {} by taskRef name{guard} (ValidatingAdmissionPolicy {shard})",
                policy.spec.service_account_name, policy.spec.namespace
            ),
        ),
    })
}

/// Deletes the shared ValidatingAdmissionPolicy of earlier releases (it
/// read each BuildPolicy as a parameter and failed open), once.
async fn delete_legacy_admission_policy(ctx: &Context) -> Result<()> {
    let name = confinement::LEGACY_ADMISSION_POLICY_NAME;
    if ctx
        .caches
        .admission_policies
        .get(&ObjectRef::new(name))
        .is_none()
    {
        return Ok(());
    }
    match Api::<ValidatingAdmissionPolicy>::all(ctx.client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {
            info!(
                admission_policy = name,
                "deleted the shared admission policy of an earlier release"
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).doing(|| format!("deleting ValidatingAdmissionPolicy {name}")),
    }
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
        // The binding first: a policy without its binding refuses nothing.
        delete_all_managed(policy, ctx, &ctx.caches.admission_bindings).await?;
        delete_all_managed(policy, ctx, &ctx.caches.admission_policies).await?;
        // Its RBAC is gone: its entry can leave its shard.
        ctx.confiner
            .release(&ctx.caches, &name)
            .await
            .map_err(Error::Confinement)?;
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

/// Deletes every cluster-scoped object of `cache` the operator made for
/// `policy`.
async fn delete_all_managed<K>(
    policy: &BuildPolicy,
    ctx: &Context,
    cache: &crate::index::Indexed<K>,
) -> Result<()>
where
    K: Granted + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>,
{
    for object in Caches::managed(cache, &policy.name_any()) {
        delete_owned(
            policy,
            ctx,
            Api::<K>::all(ctx.client.clone()),
            object.meta(),
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
    K: Granted + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let kind = K::KIND.name();
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
            kind: K::KIND,
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
    if ownership(&after).policy() == Some(&name) {
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
            kind: Kind::Task,
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

#[cfg(test)]
mod tests {
    use buildpolicy_api::BuildPolicySpec;
    use serde_json::json;

    use super::*;

    fn policy(name: &str, created: &str, namespace: &str, tasks: &[&str]) -> Arc<BuildPolicy> {
        let mut policy = BuildPolicy::new(
            name,
            serde_json::from_value::<BuildPolicySpec>(json!({
                "namespace": namespace,
                "serviceAccountName": "builder",
                "capabilities": ["SETUID"],
                "tasks": tasks,
            }))
            .unwrap(),
        );
        policy.metadata.creation_timestamp = Some(serde_json::from_value(json!(created)).unwrap());
        Arc::new(policy)
    }

    fn task(labels: serde_json::Value, annotations: serde_json::Value) -> PartialObjectMeta<Task> {
        serde_json::from_value(json!({
            "apiVersion": "tekton.dev/v1",
            "kind": "Task",
            "metadata": {"namespace": "ns", "name": "build", "labels": labels, "annotations": annotations},
        }))
        .unwrap()
    }

    fn holder_of(
        policy: &BuildPolicy,
        others: &[Arc<BuildPolicy>],
        task: &PartialObjectMeta<Task>,
    ) -> Option<String> {
        let named = |n: &str| others.iter().find(|p| p.name_any() == n).cloned();
        task_holder(policy, named, task, &owned_name(&policy.name_any()))
    }

    #[test]
    fn the_older_policy_holds_a_task_both_list() {
        let old = policy("old", "2026-01-01T00:00:00Z", "ns", &["build"]);
        let new = policy("new", "2026-06-01T00:00:00Z", "ns", &["build"]);
        let pinned_by_old = task(json!({ POLICY_LABEL: "old" }), json!({}));
        assert_eq!(
            holder_of(&new, &[old.clone(), new.clone()], &pinned_by_old).as_deref(),
            Some("BuildPolicy old")
        );
        let pinned_by_new = task(json!({ POLICY_LABEL: "new" }), json!({}));
        // The older one takes it over.
        assert_eq!(
            holder_of(&old, &[old.clone(), new.clone()], &pinned_by_new),
            None
        );
    }

    #[test]
    fn a_tie_goes_to_the_smaller_name() {
        let a = policy("a", "2026-01-01T00:00:00Z", "ns", &["build"]);
        let b = policy("b", "2026-01-01T00:00:00Z", "ns", &["build"]);
        let by_a = task(json!({ POLICY_LABEL: "a" }), json!({}));
        let by_b = task(json!({ POLICY_LABEL: "b" }), json!({}));
        assert_eq!(
            holder_of(&b, &[a.clone(), b.clone()], &by_a).as_deref(),
            Some("BuildPolicy a")
        );
        assert_eq!(holder_of(&a, &[a.clone(), b.clone()], &by_b), None);
    }

    #[test]
    fn a_pin_whose_policy_no_longer_claims_the_task_is_free() {
        let mine = policy("mine", "2026-06-01T00:00:00Z", "ns", &["build"]);
        let pinned_by_gone = task(json!({ POLICY_LABEL: "gone" }), json!({}));
        assert_eq!(
            holder_of(&mine, std::slice::from_ref(&mine), &pinned_by_gone),
            None
        );
        // Older, but it lists other Tasks now, or another namespace.
        let moved_on = policy("moved-on", "2026-01-01T00:00:00Z", "ns", &["other"]);
        let elsewhere = policy("elsewhere", "2026-01-01T00:00:00Z", "other-ns", &["build"]);
        for other in [moved_on, elsewhere] {
            let pinned = task(json!({ POLICY_LABEL: other.name_any() }), json!({}));
            assert_eq!(holder_of(&mine, &[other, mine.clone()], &pinned), None);
        }
    }

    #[test]
    fn a_hand_set_required_scc_is_someone_elses() {
        let mine = policy("mine", "2026-06-01T00:00:00Z", "ns", &["build"]);
        let by_hand = task(json!({}), json!({ REQUIRED_SCC_ANNOTATION: "privileged" }));
        let holder = holder_of(&mine, std::slice::from_ref(&mine), &by_hand).unwrap();
        assert!(holder.contains("privileged"), "{holder}");
        // The value this policy would set is no conflict.
        let same = task(
            json!({}),
            json!({ REQUIRED_SCC_ANNOTATION: owned_name("mine") }),
        );
        assert_eq!(holder_of(&mine, std::slice::from_ref(&mine), &same), None);
    }

    #[test]
    fn a_revoke_keeps_what_is_wanted_and_in_place() {
        let owner = Owner::of(&policy("p", "2026-01-01T00:00:00Z", "ns", &["a", "b", "c"]));
        let spec = policy("p", "2026-01-01T00:00:00Z", "ns", &["a", "b", "c"])
            .spec
            .clone();
        let desired = render(&owner, &spec);
        let pinned = ["a".to_owned(), "c".to_owned()];
        let keep = Keep::from_desired(&desired, true, &pinned);
        assert!(keep.scc);
        let tasks: Vec<_> = keep
            .tasks
            .iter()
            .map(|(ns, t)| format!("{ns}/{t}"))
            .collect();
        // "b" is listed but not pinned (missing, or held by another
        // policy): any pin of ours on it goes.
        assert_eq!(tasks, ["ns/a", "ns/c"]);
        assert_eq!(keep.rbac, Some(("ns".to_owned(), owned_name("p"))));
        assert!(
            !keep.binding,
            "the binding is kept only once confinement says so"
        );
        // Without the namespace there is no RBAC to keep.
        assert_eq!(Keep::from_desired(&desired, false, &pinned).rbac, None);
        let nothing = Keep::nothing();
        assert!(!nothing.scc && nothing.rbac.is_none() && nothing.tasks.is_empty());
        assert!(Keep::nothing_but_foreign_scc().scc);
    }
}

//! Advisory analyses of a granted policy, reported as conditions that do not
//! change `Ready` (the grant is in place either way):
//!
//! - `PreemptionSafe`: could pods of the service account that are *not*
//!   pinned be admitted under the generated SCC, ahead of the SCC they get
//!   without it (OpenShift tries SCCs by priority, then most restrictive
//!   first)? Computed from the SCCs actually in the cluster and what the
//!   service account may use through RBAC, both from caches.
//! - `TasksAdmissible`: would SCC admission accept the pinned Tasks' pods,
//!   step by step, in the policy's namespace (its allocated UID range and
//!   SELinux level decide `restricted-v2`-like strategies)?

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use buildpolicy_api::conditions::reason;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_policy::admission::preemption::probe_requests;
use buildpolicy_policy::admission::{NamespaceAllocation, Preemption, preemption};
use buildpolicy_policy::rbac::{RoleKey, SccGrant, ServiceAccountUser, scc_use_in_namespace};
use buildpolicy_policy::status::Advice;
use buildpolicy_policy::task_check::{HOST_USERS_FIX, check_task_in};
use kube::Api;
use kube::runtime::reflector::ObjectRef;

use crate::caches::Caches;
use crate::context::Context;
use crate::error::{Doing as _, Result};
use crate::index::Key;
use crate::task_checks::fingerprint;

/// The SCCs `who` may use through RBAC, read from the RBAC caches (no
/// request: a resync of a converged cluster sends nothing): every
/// ClusterRoleBinding, and the RoleBindings of `who`'s namespace only.
fn rbac_grant(caches: &Caches, who: &ServiceAccountUser) -> SccGrant {
    let cluster_role_bindings = caches.cluster_role_bindings.state();
    let role_bindings = caches
        .role_bindings
        .under(&Key::Namespace(who.namespace.clone()));
    scc_use_in_namespace(
        who,
        cluster_role_bindings.iter().map(|b| b.as_ref()),
        role_bindings.iter().map(AsRef::as_ref),
        |key| match key {
            RoleKey::ClusterRole(name) => caches
                .cluster_roles
                .get(&ObjectRef::new(name))
                .map(|r| r.rules.clone().unwrap_or_default()),
            RoleKey::Role { namespace, name } => caches
                .roles
                .get(&ObjectRef::new(name).within(namespace))
                .map(|r| r.rules.clone().unwrap_or_default()),
        },
    )
}

/// Whether `who` may use `scc`, as SCC admission decides it: through the
/// SCC's own `users` and `groups`, or through RBAC (`grant`).
fn may_use(who: &ServiceAccountUser, grant: &SccGrant, scc: &SecurityContextConstraints) -> bool {
    let (user, groups) = (who.user_name(), who.groups());
    scc.users.iter().flatten().any(|u| *u == user)
        || scc.groups.iter().flatten().any(|g| groups.contains(g))
        || grant.allows(scc.name())
}

/// The SCCs other than `generated` that `who` may use: those that list it
/// or one of its groups (from the SCC index), those its RBAC grant names, or
/// every SCC when the grant names none (a rule without `resourceNames`).
fn usable_sccs(
    caches: &Caches,
    who: &ServiceAccountUser,
    grant: &SccGrant,
    generated: &str,
) -> Vec<Arc<SecurityContextConstraints>> {
    let mut candidates: BTreeMap<String, Arc<SecurityContextConstraints>> = BTreeMap::new();
    let mut add = |sccs: Vec<Arc<SecurityContextConstraints>>| {
        for scc in sccs {
            candidates.entry(scc.name().to_owned()).or_insert(scc);
        }
    };
    match grant {
        SccGrant::All => add(caches.sccs.state()),
        SccGrant::Named(names) => add(names.iter().filter_map(|n| caches.scc(n)).collect()),
        SccGrant::Nothing => {}
    }
    add(caches.sccs.under(&Key::User(who.user_name())));
    for group in who.groups() {
        add(caches.sccs.under(&Key::Group(group)));
    }
    candidates
        .into_values()
        .filter(|s| s.name() != generated && may_use(who, grant, s))
        .collect()
}

/// The namespace's UID range, groups and MCS level, as the namespace
/// allocator annotated it; `None` until it has (the checks then accept
/// whatever the allocation decides).
pub fn allocation(caches: &Caches, namespace: &str) -> Option<NamespaceAllocation> {
    let ns = caches.namespaces.get(&ObjectRef::new(namespace))?;
    NamespaceAllocation::from_annotations(ns.metadata.annotations.as_ref()?).ok()
}

/// The `PreemptionSafe` advice for a policy whose SCC is `generated`, in a
/// namespace of that [`allocation`]; `confined`: its confinement binding is
/// enforced.
pub fn preemption_advice(
    policy: &BuildPolicy,
    caches: &Caches,
    generated: &SecurityContextConstraints,
    allocation: Option<&NamespaceAllocation>,
    confined: bool,
) -> Advice {
    // `generated` is the SCC this reconcile leaves in place (it has just
    // been applied where the live one differed): judged as it will be, not
    // as a hand edit that is being repaired left it in the cache, so a
    // repair does not flip the advice and write the status twice.
    let (ns, sa) = (&policy.spec.namespace, &policy.spec.service_account_name);
    let who = ServiceAccountUser::new(ns.as_str(), sa.as_str());
    let grant = rbac_grant(caches, &who);
    let others = usable_sccs(caches, &who, &grant, generated.name());
    let usable: Vec<&SecurityContextConstraints> = others.iter().map(AsRef::as_ref).collect();
    let subject = format!("{ns}/{sa}");
    let mut safe_message = None;
    let mut widened = None;
    for (kind, pod) in probe_requests(allocation) {
        let verdict = preemption(generated, &usable, Some(&pod));
        let message = verdict.message(&subject);
        match verdict {
            Preemption::Unsafe { .. } => {
                return Advice::bad(reason::PREEMPTS, format!("{kind} pods: {message}"));
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
        message.push_str(&if confined {
            format!("; {widened}, but confinement refuses them unless they run a listed Task")
        } else {
            format!("; note: {widened}: keep {subject} for the pinned Tasks only")
        });
    }
    Advice::good(reason::SORTS_AFTER_DEFAULT, message)
}

/// The `TasksAdmissible` advice: each pinned Task checked against the SCC.
/// `pinned_now` holds the Tasks this reconcile just pinned, as the server
/// answered the pin: checked from there, they are not read again. The
/// checks are against `scc` in a namespace of that [`allocation`].
pub async fn tasks_advice(
    policy: &BuildPolicy,
    ctx: &Context,
    scc: &SecurityContextConstraints,
    allocation: Option<&NamespaceAllocation>,
    pinned: &[String],
    pinned_now: &HashMap<String, Task>,
) -> Result<Option<Advice>> {
    if pinned.is_empty() {
        return Ok(None);
    }
    let ns = &policy.spec.namespace;
    let api: Api<Task> = Api::namespaced(ctx.client.clone(), ns);
    let scc_fingerprint = fingerprint(scc, allocation);
    let mut problems = Vec::new();
    let mut build_problems = Vec::new();
    let mut privileged_steps = Vec::new();
    let mut needs_host_users_false = false;
    for name in pinned {
        // The metadata cache knows the Task's resourceVersion: while it and
        // the SCC stay the same, the last answer stands and nothing is read.
        let version = ctx
            .caches
            .task(ns, name)
            .and_then(|t| t.metadata.resource_version.clone());
        let key = (ns.clone(), name.clone());
        let cached = version
            .as_ref()
            .and_then(|v| ctx.task_checks.get(&key, v, scc_fingerprint));
        let report = match cached {
            Some(report) => report,
            None => {
                let task = match pinned_now.get(name) {
                    Some(task) => task.clone(),
                    None => match api
                        .get_opt(name)
                        .await
                        .doing(|| format!("reading Task {name}"))?
                    {
                        Some(task) => task,
                        None => continue,
                    },
                };
                let report = check_task_in(
                    name,
                    task.spec.as_ref().unwrap_or(&serde_json::Value::Null),
                    scc,
                    allocation,
                );
                if let Some(version) = task.metadata.resource_version {
                    ctx.task_checks
                        .put(key, version, scc_fingerprint, report.clone());
                }
                report
            }
        };
        needs_host_users_false |= report.needs_host_users_false;
        problems.extend(report.findings.iter().map(|f| format!("Task {name}: {f}")));
        build_problems.extend(
            report
                .build_findings
                .iter()
                .map(|f| format!("Task {name}: {f}")),
        );
        privileged_steps.extend(
            report
                .capability_steps
                .iter()
                .map(|(step, caps)| format!("{name} {step} adds {}", caps.join(", "))),
        );
    }
    // The Task cannot ask for a user namespace; its runs' pod template must.
    let host_users = if needs_host_users_false {
        format!(
            " (checked as pods with hostUsers: false, which the SCC requires: {HOST_USERS_FIX})"
        )
    } else {
        String::new()
    };
    Ok(Some(if problems.is_empty() && !build_problems.is_empty() {
        Advice::bad(
            reason::BUILDAH_LACKS_CAPABILITIES,
            format!(
                "the pods would be admitted, but {}{host_users}",
                build_problems.join("; ")
            ),
        )
    } else if problems.is_empty() {
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
            format!(
                "every step of the pinned Tasks is admissible under the SCC{host_users}; {confined}"
            ),
        )
    } else {
        Advice::bad(
            reason::NOT_ADMISSIBLE,
            format!("{}{host_users}", problems.join("; ")),
        )
    }))
}

//! Would SCC admission let a Tekton Task's pods run under a given SCC?
//!
//! Checked from the Task alone (`tekton.dev/v1` `spec`), before any TaskRun:
//! each step (with `stepTemplate` merged in, as Tekton merges it) and each
//! sidecar becomes a container of the pod, the Task's `volumes` and the
//! volumes Tekton adds to every TaskRun pod become its volumes, and
//! [`crate::admission::refusals`] says what the SCC refuses. Each refusal
//! comes back as a [`Finding`] that names the step and the fix.

use std::fmt;

use buildpolicy_api::SecurityContextConstraints;
use k8s_openapi::api::core::v1::{SecurityContext, Volume};
use serde_json::Value;

use crate::admission::admit::service_account_token_volume;
use crate::admission::{
    ContainerRequest, NamespaceAllocation, PodSecurityRequest, Reason, Refusal, as_stored, refusals,
};
use crate::buildah;

/// One thing in the Task that the SCC refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it concerns: "step build", "sidecar registry", "volume cache",
    /// "pod", "task" or "scc".
    pub container: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.container, self.problem, self.fix)
    }
}

/// The result of checking one Task against one SCC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskReport {
    pub task: String,
    /// Empty when the SCC admits the Task's pods.
    pub findings: Vec<Finding>,
    /// The steps (and sidecars) that add capabilities, with what they add,
    /// in Task order: privilege confined to the steps that need it.
    pub capability_steps: Vec<(String, Vec<String>)>,
    /// What the Task alone cannot tell: workspace bindings, StepActions.
    pub unchecked: Vec<String>,
    /// The SCC requires a pod-level user namespace (`hostUsers: false`),
    /// which only the TaskRun's pod template can ask for: the Task was
    /// checked as if its pods set it.
    pub needs_host_users_false: bool,
    /// Admitted or not: what a Buildah build in a step would fail on, with
    /// the capabilities the container ends up with (see
    /// [`crate::buildah`]; `docs/capabilities.md` has the measurements).
    pub build_findings: Vec<Finding>,
}

impl TaskReport {
    /// Whether the SCC admits the Task's pods, as far as the Task shows.
    pub fn admissible(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Tekton's own volumes in every TaskRun pod (`pkg/pod`): scratch space as
/// `emptyDir` and the readiness signal as `downwardAPI`.
const TEKTON_VOLUMES: &[(&str, &str)] = &[
    ("tekton-internal-workspace", "emptyDir"),
    ("tekton-internal-downward", "downwardAPI"),
];

/// How pipeline owners ask for a pod-level user namespace for a Task's pods.
pub const HOST_USERS_FIX: &str = "set hostUsers: false in the pod template of the runs of these Tasks (PipelineRun spec.taskRunTemplate.podTemplate.hostUsers, or spec.taskRunSpecs[].podTemplate.hostUsers for one pipeline task; TaskRun spec.podTemplate.hostUsers)";

/// Checks Task `task_name` with `spec` against `scc`, for a namespace whose
/// allocation is not known: a uid, group or SELinux level that the SCC
/// leaves to the namespace is accepted (see [`check_task_in`]).
pub fn check_task(task_name: &str, spec: &Value, scc: &SecurityContextConstraints) -> TaskReport {
    check_task_in(task_name, spec, scc, None)
}

/// Checks Task `task_name` with `spec` against `scc`, for pods created in a
/// namespace with `namespace`'s allocation (its uid range, groups and MCS
/// level, which SCCs such as `restricted-v2` and the generated ones check
/// steps' `runAsUser` and `seLinuxOptions` against).
pub fn check_task_in(
    task_name: &str,
    spec: &Value,
    scc: &SecurityContextConstraints,
    namespace: Option<&NamespaceAllocation>,
) -> TaskReport {
    let scc = as_stored(scc);
    let mut report = TaskReport {
        task: task_name.to_owned(),
        ..TaskReport::default()
    };
    let mut pod = pod_of(spec, &mut report);
    pod.namespace = namespace.cloned();
    // A Task cannot set hostUsers; its PipelineRun's (or TaskRun's) pod
    // template does. Check the steps as they would run with it, and say so.
    if scc.user_namespace_level.as_deref() == Some("RequirePodLevel") {
        pod.host_users = Some(false);
        report.needs_host_users_false = true;
    }
    report.capability_steps = pod
        .containers
        .iter()
        .filter(|c| !c.capabilities_added().is_empty())
        .map(|c| (c.label.clone(), c.capabilities_added().to_vec()))
        .collect();
    report
        .findings
        .extend(refusals(&scc, &pod).iter().map(|r| finding(&scc, r)));
    report.build_findings = buildah_findings(spec, &pod, &scc, !report.needs_host_users_false);
    report
}

/// For each step that runs `buildah bud` or `buildah build`: each way a
/// Containerfile could fail in the step's container (the capabilities it
/// asks for, minus what it and the SCC drop), once.
fn buildah_findings(
    spec: &Value,
    pod: &PodSecurityRequest,
    scc: &SecurityContextConstraints,
    host_users: bool,
) -> Vec<Finding> {
    let steps = spec.get("steps").and_then(Value::as_array);
    let mut findings: Vec<Finding> = Vec::new();
    for (i, step) in steps.into_iter().flatten().enumerate() {
        let text: Vec<String> = ["command", "args"]
            .iter()
            .filter_map(|k| step.get(*k).and_then(Value::as_array))
            .map(|words| {
                words
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .chain(
                step.get("script")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
            .collect();
        let Some(dropped) = buildah::buildah_cap_drops(&text.join("\n")) else {
            continue;
        };
        let name = step
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| format!("unnamed-{i}"), str::to_owned);
        let label = format!("step {name}");
        let Some(container) = pod.containers.iter().find(|c| c.label == label) else {
            continue;
        };
        let capabilities = container
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.as_ref());
        let add = capabilities.and_then(|c| c.add.clone()).unwrap_or_default();
        let mut drop = capabilities
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        drop.extend(scc.required_drop_capabilities.iter().flatten().cloned());
        let bounding = buildah::bounding_set(&add, &drop);
        for build in buildah::Build::ALL {
            if let Some(failure) = buildah::fails(build, &bounding, &dropped, host_users) {
                let finding = Finding {
                    container: label.clone(),
                    problem: format!("runs Buildah, which {}", failure.problem),
                    fix: failure.fix,
                };
                if !findings.contains(&finding) {
                    findings.push(finding);
                }
            }
        }
    }
    findings
}

fn pod_of(spec: &Value, report: &mut TaskReport) -> PodSecurityRequest {
    let mut pod = PodSecurityRequest::default();
    let template = spec
        .pointer("/stepTemplate/securityContext")
        .cloned()
        .unwrap_or(Value::Null);
    for (kind, key) in [("step", "steps"), ("sidecar", "sidecars")] {
        for (i, container) in list(spec, key, report).iter().enumerate() {
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("unnamed-{i}"), str::to_owned);
            let label = format!("{kind} {name}");
            let own = container
                .get("securityContext")
                .cloned()
                .unwrap_or(Value::Null);
            // Tekton merges stepTemplate into steps only, never into sidecars.
            let merged = if kind == "step" {
                merge(&template, &own)
            } else {
                own
            };
            let security_context = match parse::<SecurityContext>(&merged) {
                Ok(sc) => sc,
                Err(e) => {
                    report.findings.push(Finding {
                        container: label.clone(),
                        problem: format!("has a securityContext that is not valid ({e})"),
                        fix: "correct it in the Task".into(),
                    });
                    None
                }
            };
            if let Some(step_action) = container.pointer("/ref/name").and_then(Value::as_str) {
                report.unchecked.push(format!(
                    "{label} runs StepAction {step_action}: the security context it brings is not checked"
                ));
            }
            let host_ports = container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("hostPort").and_then(Value::as_i64))
                .filter_map(|p| i32::try_from(p).ok())
                .collect();
            pod.containers.push(ContainerRequest {
                label,
                security_context,
                host_ports,
            });
        }
    }
    for volume in list(spec, "volumes", report) {
        match parse::<Volume>(&volume) {
            Ok(Some(v)) => pod.volumes.push(v),
            Ok(None) => {}
            Err(e) => report.findings.push(Finding {
                container: "task".into(),
                problem: format!("has a volume that is not valid ({e})"),
                fix: "correct spec.volumes".into(),
            }),
        }
    }
    pod.volumes
        .extend(TEKTON_VOLUMES.iter().map(|(name, fs_type)| {
            serde_json::from_value(serde_json::json!({"name": name, *fs_type: {}}))
                .expect("Tekton's volumes are valid")
        }));
    pod.volumes.push(service_account_token_volume());
    let workspaces: Vec<&str> = spec
        .get("workspaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| w.get("name").and_then(Value::as_str))
        .collect();
    if !workspaces.is_empty() {
        report.unchecked.push(format!(
            "workspaces {} are bound by each TaskRun: their volume types must be ones the SCC allows",
            workspaces.join(", ")
        ));
    }
    pod
}

fn list(spec: &Value, key: &str, report: &mut TaskReport) -> Vec<Value> {
    match spec.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            report.findings.push(Finding {
                container: "task".into(),
                problem: format!("has spec.{key} that is not a list"),
                fix: format!("make spec.{key} a list"),
            });
            Vec::new()
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Result<Option<T>, serde_json::Error> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value.clone()).map(Some)
}

/// Tekton's merge of `stepTemplate` into a step (a strategic merge patch of
/// the step onto the template): objects merge key by key, the step's value
/// wins, and lists (such as `capabilities.add`) are replaced whole.
fn merge(template: &Value, step: &Value) -> Value {
    match (template, step) {
        (Value::Object(t), Value::Object(s)) => {
            let mut merged = t.clone();
            for (key, value) in s {
                let base = t.get(key).unwrap_or(&Value::Null);
                merged.insert(key.clone(), merge(base, value));
            }
            Value::Object(merged)
        }
        (_, Value::Null) => template.clone(),
        _ => step.clone(),
    }
}

fn finding(scc: &SecurityContextConstraints, refusal: &Refusal) -> Finding {
    let granted = granted_capabilities(scc);
    let subject = refusal.subject.clone();
    let (container, problem, fix) = match &refusal.reason {
        Reason::Privileged if granted.is_empty() => (
            subject,
            "asks privileged: true; this SCC allows neither privileged containers nor added capabilities".to_owned(),
            "remove privileged: true, or grant the capabilities the step needs in the BuildPolicy and add them in securityContext.capabilities.add".to_owned(),
        ),
        Reason::Privileged => (
            subject,
            format!("asks privileged: true; this SCC grants {}", granted.join(", ")),
            "set securityContext.capabilities.add instead".to_owned(),
        ),
        Reason::Capability(cap) => match cap.strip_prefix("CAP_") {
            Some(bare) if granted.iter().any(|g| g == bare) => (
                subject,
                format!("adds {cap}; SCC admission compares names as written and this SCC grants {bare}"),
                format!("write {bare} in securityContext.capabilities.add"),
            ),
            _ => (
                subject,
                format!(
                    "adds {cap}, which this SCC does not grant ({})",
                    if granted.is_empty() {
                        "it grants none".to_owned()
                    } else {
                        format!("it grants {}", granted.join(", "))
                    }
                ),
                format!(
                    "remove {cap} from securityContext.capabilities.add, or add it to the BuildPolicy's capabilities"
                ),
            ),
        },
        Reason::PrivilegeEscalation => (
            subject,
            "sets allowPrivilegeEscalation: true; this SCC forbids privilege escalation".to_owned(),
            "remove allowPrivilegeEscalation: true (a BuildPolicy allows escalation only when it grants SETUID or SETGID)".to_owned(),
        ),
        Reason::EscalationConflict(what) => (
            subject,
            format!("sets {what} while allowPrivilegeEscalation is false, which the API server rejects"),
            if what.starts_with("privileged") {
                "set securityContext.capabilities.add instead of privileged: true".to_owned()
            } else {
                "write SYS_ADMIN instead of CAP_SYS_ADMIN".to_owned()
            },
        ),
        Reason::RunAsUser { uid, required } => (
            subject,
            format!("sets runAsUser: {uid}; this SCC requires {required}"),
            "remove runAsUser and let admission assign one, or choose a uid the SCC allows".to_owned(),
        ),
        Reason::RootUser => (
            subject,
            "sets runAsUser: 0; this SCC requires a non-root user (MustRunAsNonRoot)".to_owned(),
            "set a non-zero runAsUser".to_owned(),
        ),
        Reason::RunAsNonRootFalse => (
            subject,
            "sets runAsNonRoot: false; this SCC requires a non-root user (MustRunAsNonRoot)".to_owned(),
            "remove runAsNonRoot: false".to_owned(),
        ),
        Reason::SeLinux {
            field,
            requested,
            required,
        } => (
            subject,
            format!("sets seLinuxOptions.{field} {requested:?}; this SCC requires {required}"),
            "remove securityContext.seLinuxOptions and let admission assign the namespace's".to_owned(),
        ),
        Reason::Seccomp { profile, allowed } => (
            subject,
            format!(
                "asks seccompProfile {}; this SCC allows {}",
                seccomp_field(profile),
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
            if allowed.iter().any(|p| p == "runtime/default") {
                "use type: RuntimeDefault, or leave seccompProfile unset".to_owned()
            } else {
                "remove securityContext.seccompProfile".to_owned()
            },
        ),
        Reason::ReadOnlyRootFilesystem => (
            subject,
            "sets readOnlyRootFilesystem: false; this SCC requires a read-only root filesystem".to_owned(),
            "remove readOnlyRootFilesystem: false and write to volumes".to_owned(),
        ),
        Reason::HostPort(port) => (
            subject,
            format!("asks hostPort {port}; this SCC allows no host ports"),
            "remove hostPort".to_owned(),
        ),
        Reason::Volume { name, fs_type } if is_tekton_volume(name) => (
            format!("volume {name}"),
            format!(
                "is a {fs_type} volume that every TaskRun pod has; this SCC allows {}",
                allowed_volumes(scc)
            ),
            format!("add {fs_type} to the SCC's volumes"),
        ),
        Reason::Volume { name, fs_type } => (
            format!("volume {name}"),
            format!("is a {fs_type} volume; this SCC allows {}", allowed_volumes(scc)),
            "use one of those types (shared build data fits a workspace bound to a persistentVolumeClaim)".to_owned(),
        ),
        Reason::UnknownVolumeType { name } => (
            format!("volume {name}"),
            "has no volume type".to_owned(),
            format!("give it one of {}", allowed_volumes(scc)),
        ),
        Reason::InvalidScc(why) => (
            subject,
            format!("cannot be used: {why}"),
            "repair the SCC; the operator renders valid ones, so look for hand edits".to_owned(),
        ),
        other @ (Reason::HostNetwork
        | Reason::HostPid
        | Reason::HostIpc
        | Reason::HostUsers
        | Reason::Group { .. }) => (
            subject,
            format!("is refused: {other}"),
            "change the TaskRun's podTemplate".to_owned(),
        ),
    };
    Finding {
        container,
        problem,
        fix,
    }
}

fn granted_capabilities(scc: &SecurityContextConstraints) -> Vec<String> {
    let mut caps: Vec<String> = scc
        .allowed_capabilities
        .iter()
        .chain(scc.default_add_capabilities.iter())
        .flatten()
        .cloned()
        .collect();
    caps.sort();
    caps.dedup();
    caps
}

fn allowed_volumes(scc: &SecurityContextConstraints) -> String {
    scc.volumes.as_deref().unwrap_or_default().join(", ")
}

fn is_tekton_volume(name: &str) -> bool {
    name.starts_with("tekton-internal-") || name == "kube-api-access"
}

/// A profile in annotation form as the Task would write the field.
fn seccomp_field(profile: &str) -> String {
    match profile {
        "unconfined" => "type: Unconfined".into(),
        "runtime/default" => "type: RuntimeDefault".into(),
        "" => "type: Localhost without a localhostProfile".into(),
        other => match other.strip_prefix("localhost/") {
            Some(file) => format!("type: Localhost, localhostProfile: {file}"),
            None => other.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::BuildPolicySpec;
    use serde_json::json;

    use super::*;
    use crate::admission::test_sccs::default_scc;

    fn scc_for(capabilities: &[&str]) -> SecurityContextConstraints {
        scc_in(capabilities, buildpolicy_api::Isolation::HostUserNamespace)
    }

    fn scc_in(
        capabilities: &[&str],
        isolation: buildpolicy_api::Isolation,
    ) -> SecurityContextConstraints {
        crate::fixtures::scc_of(&BuildPolicySpec {
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            ..crate::fixtures::modelcar_spec(isolation)
        })
    }

    fn modelcar_scc() -> SecurityContextConstraints {
        scc_for(&["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"])
    }

    fn task_spec(yaml: &str) -> Value {
        let task: Value = serde_yaml_ng::from_str(yaml).expect("fixture is YAML");
        task["spec"].clone()
    }

    fn lines(report: &TaskReport) -> Vec<String> {
        report.findings.iter().map(ToString::to_string).collect()
    }

    fn buildah_task(capabilities: &[&str], flags: &str) -> Value {
        json!({"steps": [
            {"name": "fetch", "image": "shell", "script": "echo buildah push is not a build"},
            {"name": "build", "image": "buildah", "securityContext": {"capabilities": {"add": capabilities}},
             "script": format!("#!/bin/sh\nbuildah bud --storage-driver=vfs --isolation=chroot {flags} -f Containerfile -t img .\nbuildah push img oci:/out")},
        ]})
    }

    #[test]
    fn a_buildah_step_that_lacks_what_run_needs_is_told_the_flag_or_the_capability() {
        let four = ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"];
        let report = check_task(
            "build-and-push-v2",
            &buildah_task(&four, ""),
            &scc_for(&four),
        );
        assert!(report.admissible(), "{:?}", report.findings);
        let said: Vec<String> = report
            .build_findings
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].starts_with("step build runs Buildah, which fails a RUN instruction"),
            "{said:?}"
        );
        assert!(
            said[0].contains("--cap-drop=KILL --cap-drop=SETFCAP"),
            "{said:?}"
        );
        assert!(
            said[1].contains("lsetxattr") && said[1].ends_with("add SETFCAP"),
            "{said:?}"
        );
        // In the pod's own user namespace a file capability unpacks.
        let pod_level = scc_in(&four, buildpolicy_api::Isolation::PodUserNamespace);
        let report = check_task(
            "build-and-push-v2",
            &buildah_task(&four, "--cap-drop=KILL --cap-drop=SETFCAP"),
            &pod_level,
        );
        assert!(
            report.build_findings.is_empty(),
            "{:?}",
            report.build_findings
        );
        // The samples' five with --cap-drop=KILL: nothing to say in either mode.
        let five = ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"];
        let report = check_task(
            "build-and-push-v2",
            &buildah_task(&five, "--cap-drop=KILL"),
            &modelcar_scc(),
        );
        assert!(
            report.build_findings.is_empty(),
            "{:?}",
            report.build_findings
        );
        // A step that runs no Buildah build is not judged.
        let report = check_task(
            "t",
            &json!({"steps": [{"name": "s", "image": "x", "script": "buildah push a b"}]}),
            &modelcar_scc(),
        );
        assert!(report.build_findings.is_empty());
    }

    #[test]
    fn a_privileged_build_task_is_refused_with_the_capabilities_to_use_instead() {
        let spec = task_spec(include_str!(
            "../tests/fixtures/build-and-push-v2.privileged.yaml"
        ));
        let report = check_task("build-and-push-v2", &spec, &modelcar_scc());
        assert!(!report.admissible());
        assert_eq!(
            lines(&report),
            [
                "step build asks privileged: true; this SCC grants SETFCAP, SETGID, SETUID, SYS_ADMIN, SYS_CHROOT: set securityContext.capabilities.add instead"
            ]
        );
        assert!(report.capability_steps.is_empty());
        assert_eq!(
            report.unchecked,
            [
                "workspaces source are bound by each TaskRun: their volume types must be ones the SCC allows"
            ]
        );
    }

    #[test]
    fn the_capabilities_task_is_admitted_and_confines_them_to_the_build_step() {
        let spec = task_spec(include_str!(
            "../tests/fixtures/build-and-push-v2.capabilities.yaml"
        ));
        let report = check_task("build-and-push-v2", &spec, &modelcar_scc());
        assert_eq!(lines(&report), Vec::<String>::new());
        assert!(report.admissible());
        assert_eq!(
            report.capability_steps,
            [(
                "step build".to_owned(),
                ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"]
                    .map(String::from)
                    .to_vec()
            )]
        );
    }

    #[test]
    fn under_a_pod_user_namespace_scc_the_task_is_checked_as_running_with_host_users_false() {
        use buildpolicy_api::Isolation;
        let scc = scc_in(
            &["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT", "SETFCAP"],
            Isolation::PodUserNamespace,
        );
        let spec = task_spec(include_str!(
            "../tests/fixtures/build-and-push-v2.capabilities.yaml"
        ));
        let report = check_task("build-and-push-v2", &spec, &scc);
        assert!(report.needs_host_users_false);
        assert_eq!(lines(&report), Vec::<String>::new());
        // The host-level SCC of the other modes says nothing about hostUsers.
        for mode in [Isolation::HostUserNamespace, Isolation::CrioUserNamespace] {
            let report = check_task("build-and-push-v2", &spec, &scc_in(&["SETUID"], mode));
            assert!(!report.needs_host_users_false, "{mode}");
        }
    }

    #[test]
    fn under_a_pod_user_namespace_scc_uids_beyond_65534_and_privileged_steps_are_refused() {
        let scc = scc_in(
            &["SETUID", "SETGID"],
            buildpolicy_api::Isolation::PodUserNamespace,
        );
        let spec = json!({"steps": [
            {"name": "root-inside", "image": "buildah", "securityContext": {"runAsUser": 0, "capabilities": {"add": ["SETUID", "SETGID"]}}},
            {"name": "high-uid", "image": "ubi", "securityContext": {"runAsUser": 1000660000}},
            {"name": "privileged", "image": "buildah", "securityContext": {"privileged": true}},
        ]});
        let report = check_task("t", &spec, &scc);
        let found = lines(&report).join("\n");
        assert!(!found.contains("root-inside"), "{found}");
        assert!(
            found.contains("step high-uid sets runAsUser: 1000660000"),
            "{found}"
        );
        assert!(found.contains("MustRunAsRange"), "{found}");
        assert!(
            found.contains("step privileged asks privileged: true"),
            "{found}"
        );
        assert_eq!(report.findings.len(), 2, "{found}");
    }

    #[test]
    fn the_capabilities_task_is_refused_by_restricted_v2() {
        let spec = task_spec(include_str!(
            "../tests/fixtures/build-and-push-v2.capabilities.yaml"
        ));
        let report = check_task("build-and-push-v2", &spec, &default_scc("restricted-v2"));
        let refused: Vec<&str> = report.findings.iter().map(|f| f.problem.as_str()).collect();
        assert_eq!(
            refused,
            [
                "adds SETUID, which this SCC does not grant (it grants NET_BIND_SERVICE)",
                "adds SETGID, which this SCC does not grant (it grants NET_BIND_SERVICE)",
                "adds SYS_ADMIN, which this SCC does not grant (it grants NET_BIND_SERVICE)",
                "adds SYS_CHROOT, which this SCC does not grant (it grants NET_BIND_SERVICE)",
                "adds SETFCAP, which this SCC does not grant (it grants NET_BIND_SERVICE)",
            ]
        );
    }

    /// Each case: a Task spec, the capabilities the policy grants, and the
    /// findings expected (as displayed).
    #[test]
    fn step_settings_are_checked_as_admission_would() {
        let cases: Vec<(&str, Value, &[&str], Vec<&str>)> = vec![
            (
                "stepTemplate privileged reaches steps that do not set it",
                json!({
                    "stepTemplate": {"securityContext": {"privileged": true}},
                    "steps": [
                        {"name": "a", "image": "x"},
                        {"name": "b", "image": "x", "securityContext": {"privileged": false}}
                    ]
                }),
                &["SYS_ADMIN"],
                vec![
                    "step a asks privileged: true; this SCC grants SYS_ADMIN: set securityContext.capabilities.add instead",
                ],
            ),
            (
                "stepTemplate does not reach sidecars",
                json!({
                    "stepTemplate": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
                    "steps": [{"name": "a", "image": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
                    "sidecars": [{"name": "registry", "image": "x", "securityContext": {"privileged": true}}]
                }),
                &["SYS_ADMIN"],
                vec![
                    "sidecar registry asks privileged: true; this SCC grants SYS_ADMIN: set securityContext.capabilities.add instead",
                ],
            ),
            (
                "a step's drop keeps the template's add",
                json!({
                    "stepTemplate": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
                    "steps": [{"name": "a", "image": "x", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]
                }),
                &["SYS_ADMIN"],
                vec![
                    "step a adds NET_ADMIN, which this SCC does not grant (it grants SYS_ADMIN): remove NET_ADMIN from securityContext.capabilities.add, or add it to the BuildPolicy's capabilities",
                ],
            ),
            (
                "the CAP_ spelling of a granted capability",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}}]}),
                &["SYS_ADMIN"],
                vec![
                    "step a adds CAP_SYS_ADMIN; SCC admission compares names as written and this SCC grants SYS_ADMIN: write SYS_ADMIN in securityContext.capabilities.add",
                ],
            ),
            (
                "escalation without SETUID or SETGID",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": true}}]}),
                &["SYS_CHROOT"],
                vec![
                    "step a sets allowPrivilegeEscalation: true; this SCC forbids privilege escalation: remove allowPrivilegeEscalation: true (a BuildPolicy allows escalation only when it grants SETUID or SETGID)",
                ],
            ),
            (
                "escalation with SETUID",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"add": ["SETUID"]}}}]}),
                &["SETUID"],
                vec![],
            ),
            (
                "an Unconfined seccomp profile",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"seccompProfile": {"type": "Unconfined"}}}]}),
                &["SYS_ADMIN"],
                vec![
                    "step a asks seccompProfile type: Unconfined; this SCC allows runtime/default: use type: RuntimeDefault, or leave seccompProfile unset",
                ],
            ),
            (
                "a RuntimeDefault seccomp profile",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}]}),
                &["SYS_ADMIN"],
                vec![],
            ),
            (
                "an SELinux type",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"seLinuxOptions": {"type": "spc_t", "level": "s0:c1,c2"}}}]}),
                &["SYS_ADMIN"],
                vec![
                    "step a sets seLinuxOptions.type \"spc_t\"; this SCC requires \"\": remove securityContext.seLinuxOptions and let admission assign the namespace's",
                ],
            ),
            (
                "root is fine under RunAsAny",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"runAsUser": 0}}]}),
                &["SYS_ADMIN"],
                vec![],
            ),
            (
                "a hostPath volume",
                json!({
                    "steps": [{"name": "a", "image": "x"}],
                    "volumes": [{"name": "storage", "hostPath": {"path": "/var/lib/containers"}}]
                }),
                &["SYS_ADMIN"],
                vec![
                    "volume storage is a hostPath volume; this SCC allows configMap, downwardAPI, emptyDir, persistentVolumeClaim, projected, secret: use one of those types (shared build data fits a workspace bound to a persistentVolumeClaim)",
                ],
            ),
            (
                "a sidecar host port",
                json!({
                    "steps": [{"name": "a", "image": "x"}],
                    "sidecars": [{"name": "registry", "image": "x", "ports": [{"containerPort": 5000, "hostPort": 5000}]}]
                }),
                &["SYS_ADMIN"],
                vec![
                    "sidecar registry asks hostPort 5000; this SCC allows no host ports: remove hostPort",
                ],
            ),
            (
                "unnamed steps are numbered",
                json!({"steps": [{"image": "x"}, {"image": "x", "securityContext": {"privileged": true}}]}),
                &[],
                vec![
                    "step unnamed-1 asks privileged: true; this SCC allows neither privileged containers nor added capabilities: remove privileged: true, or grant the capabilities the step needs in the BuildPolicy and add them in securityContext.capabilities.add",
                ],
            ),
            (
                "a securityContext of the wrong shape",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"privileged": "yes"}}]}),
                &["SYS_ADMIN"],
                vec![
                    "step a has a securityContext that is not valid (invalid type: string \"yes\", expected a boolean): correct it in the Task",
                ],
            ),
            (
                "steps that are not a list",
                json!({"steps": {"name": "a"}}),
                &["SYS_ADMIN"],
                vec!["task has spec.steps that is not a list: make spec.steps a list"],
            ),
        ];
        for (case, spec, caps, want) in cases {
            let report = check_task("t", &spec, &scc_for(caps));
            assert_eq!(lines(&report), want, "{case}");
        }
    }

    #[test]
    fn policies_of_other_sccs_are_reported_with_their_rules() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "nonroot-v2",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"runAsUser": 0}}]}),
                vec![
                    "step a sets runAsUser: 0; this SCC requires a non-root user (MustRunAsNonRoot): set a non-zero runAsUser",
                ],
            ),
            (
                "restricted-v2",
                json!({"stepTemplate": {"securityContext": {"runAsUser": 0}}, "steps": [{"name": "a", "image": "x"}]}),
                vec![
                    "step a sets runAsUser: 0; this SCC requires MustRunAsRange in the namespace's range (openshift.io/sa.scc.uid-range): remove runAsUser and let admission assign one, or choose a uid the SCC allows",
                ],
            ),
            (
                "anyuid",
                json!({"steps": [{"name": "a", "image": "x", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "b.json"}}}]}),
                vec![
                    "step a asks seccompProfile type: Localhost, localhostProfile: b.json; this SCC allows none: remove securityContext.seccompProfile",
                ],
            ),
        ];
        for (scc, spec, want) in cases {
            assert_eq!(
                lines(&check_task("t", &spec, &default_scc(scc))),
                want,
                "{scc}"
            );
        }
    }

    #[test]
    fn an_scc_without_tekton_volume_types_refuses_every_task() {
        let mut scc = modelcar_scc();
        scc.volumes = Some(vec!["secret".into(), "persistentVolumeClaim".into()]);
        let report = check_task("t", &json!({"steps": [{"name": "a", "image": "x"}]}), &scc);
        let containers: Vec<&str> = report
            .findings
            .iter()
            .map(|f| f.container.as_str())
            .collect();
        assert_eq!(
            containers,
            [
                "volume tekton-internal-workspace",
                "volume tekton-internal-downward"
            ]
        );
        assert_eq!(report.findings[0].fix, "add emptyDir to the SCC's volumes");
    }

    #[test]
    fn capability_steps_list_only_the_steps_that_add_capabilities_in_order() {
        let spec = json!({
            "stepTemplate": {"securityContext": {"capabilities": {"add": ["SETUID"]}}},
            "steps": [
                {"name": "prepare", "image": "x", "securityContext": {"capabilities": {"add": []}}},
                {"name": "build", "image": "x"},
                {"name": "push", "image": "x", "securityContext": {"capabilities": {"add": ["SETGID"]}}}
            ]
        });
        let report = check_task("t", &spec, &scc_for(&["SETUID", "SETGID"]));
        assert!(report.admissible(), "{:?}", report.findings);
        assert_eq!(
            report.capability_steps,
            [
                ("step build".to_owned(), vec!["SETUID".to_owned()]),
                ("step push".to_owned(), vec!["SETGID".to_owned()]),
            ]
        );
    }

    #[test]
    fn step_actions_are_reported_as_unchecked() {
        let spec = json!({"steps": [{"name": "clone", "ref": {"name": "git-clone"}}]});
        let report = check_task("t", &spec, &modelcar_scc());
        assert!(report.admissible());
        assert_eq!(
            report.unchecked,
            ["step clone runs StepAction git-clone: the security context it brings is not checked"]
        );
    }

    #[test]
    fn merge_lets_the_step_win_and_replaces_lists() {
        let cases = [
            (
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
                json!({"b": {"d": 4}}),
                json!({"a": 1, "b": {"c": 2, "d": 4}}),
            ),
            (
                json!({"add": ["A", "B"]}),
                json!({"add": ["C"]}),
                json!({"add": ["C"]}),
            ),
            (json!({"a": 1}), Value::Null, json!({"a": 1})),
            (Value::Null, json!({"a": 1}), json!({"a": 1})),
            (json!({"a": 1}), json!({"a": null}), json!({"a": 1})),
        ];
        for (template, step, want) in cases {
            assert_eq!(merge(&template, &step), want, "{template} + {step}");
        }
    }

    /// Found by tests/scc_differential.rs: a step's uid and SELinux level
    /// that restricted-v2 leaves to the namespace are checked against the
    /// namespace's allocation when it is known.
    #[test]
    fn regression_check_task_in_a_known_namespace_checks_what_the_scc_leaves_to_it() {
        let namespace = NamespaceAllocation::from_annotations(
            &[
                ("openshift.io/sa.scc.uid-range", "1000070000/10000"),
                ("openshift.io/sa.scc.mcs", "s0:c4,c1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
        .unwrap();
        let scc = default_scc("restricted-v2");
        let task =
            |sc: Value| json!({"steps": [{"name": "s", "image": "x", "securityContext": sc}]});
        for (sc, admissible) in [
            (json!({"runAsUser": 1000}), false),
            (json!({"runAsUser": 1_000_070_001}), true),
            (json!({"seLinuxOptions": {"level": "s0:c1,c2"}}), false),
            (json!({"seLinuxOptions": {"level": "s0:c1,c4"}}), true),
        ] {
            assert!(
                check_task("t", &task(sc.clone()), &scc).admissible(),
                "{sc}"
            );
            assert_eq!(
                check_task_in("t", &task(sc.clone()), &scc, Some(&namespace)).admissible(),
                admissible,
                "{sc}"
            );
        }
    }
}

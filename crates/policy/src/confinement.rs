//! Admission-time confinement: the generated SCC is admitted only for the
//! pods that the pipeline controller creates for a policy's listed Tasks,
//! and the listed Tasks run only the content the platform team reviewed.
//!
//! OpenShift checks SCC `use` for the pod's service account, so without this
//! anyone who may create pods or TaskRuns in the namespace could run any
//! container as the build service account and get the SCC. The API server's
//! own ValidatingAdmissionPolicy closes that, with no webhook to run: one
//! policy and one binding per BuildPolicy, both limited to its namespace,
//! every value written into the rules as a literal. There is no parameter
//! resource, so nothing is left to resolve after an API server restarts,
//! and `failurePolicy: Fail` refuses what cannot be evaluated: confinement
//! never fails open, and pods of other namespaces are never matched. It runs
//! after mutating admission, so it sees the `openshift.io/scc` annotation
//! SCC admission set.
//!
//! Four rules, each naming the policy and the fix when it refuses:
//! - a pod admitted under the policy's SCC must be created by a pipeline
//!   controller identity and carry `tekton.dev/task` naming a granted Task
//!   (listed, and its content as reviewed when a digest is given);
//! - a TaskRun whose `tekton.dev/task` label names a listed Task must run
//!   exactly that Task by `spec.taskRef.name` (no embedded `taskSpec`, no
//!   resolver), so the label on its pod cannot be forged;
//! - a TaskRun that runs as the build service account (or names none: the
//!   pipeline's configured default could be it) must reference a Task of
//!   the namespace by `spec.taskRef.name`: a resolver can fetch a Task that
//!   calls itself by a listed name from anywhere, and Tekton labels the pod
//!   with that name;
//! - unless the ceiling turns it off, creating a listed Task or changing its
//!   `spec` is refused for everyone but the ceiling's Task editors: whoever
//!   edits a listed Task chooses what runs with the grant.

use buildpolicy_api::BuildPolicySpec;
use buildpolicy_api::keys::{ADMITTED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::tekton::TASK_LABEL;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

use crate::Owner;
use crate::ceiling::{Confinement, ConfinementMode};

/// Name of the one shared ValidatingAdmissionPolicy of earlier releases
/// (with the BuildPolicy as its parameter and `failurePolicy: Ignore`),
/// which the operator deletes when it finds it.
pub const LEGACY_ADMISSION_POLICY_NAME: &str = "buildpolicy.dev-confinement";

/// What one policy's admission rules are made of.
pub struct Scope<'a> {
    pub owner: &'a Owner,
    pub spec: &'a BuildPolicySpec,
    /// The listed Tasks whose pods may get the SCC: all of `spec.tasks` but
    /// those whose live content differs from their reviewed digest.
    pub granted_tasks: &'a [String],
}

/// `text` made safe inside a single-quoted CEL string literal.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A CEL literal of `value` (a JSON string or list of strings is one).
fn cel<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("strings serialise")
}

/// The ValidatingAdmissionPolicy of one BuildPolicy (named like its SCC),
/// with the policy's namespace, service account, SCC and Tasks and the
/// ceiling's identities written in.
pub fn admission_policy(scope: &Scope, confinement: &Confinement) -> ValidatingAdmissionPolicy {
    let Scope {
        owner,
        spec,
        granted_tasks,
    } = scope;
    let policy = &owner.name;
    let scc = owned_name(policy);
    let ns = &spec.namespace;
    let sa = &spec.service_account_name;
    let listed = quoted(&spec.tasks.join(", "));
    let scc_annotation = ADMITTED_SCC_ANNOTATION;
    let task_label = TASK_LABEL;
    let who = quoted(&confinement.pipeline_controllers.join(", "));

    let pod_rule = "!variables.isPod || variables.admittedScc != variables.scc || (request.userInfo.username in variables.controllers && variables.task in variables.granted)";
    let pod_message = format!(
        "'BuildPolicy {policy} confines SCC {scc} to the pods that the pipeline controller ({who}) creates for its Tasks ({listed}); this pod ' + (variables.task == '' ? 'runs no Tekton Task' : 'runs Task ' + variables.task + (variables.task in variables.listed && !(variables.task in variables.granted) ? ', whose content differs from the digest the policy reviewed (see its TasksPinned condition)' : '')) + ' and was created by ' + request.userInfo.username + ': run the build through a listed Task by taskRef, or list the Task in the BuildPolicy'"
    );
    let labelled_rule = "!variables.isTaskRun || !(variables.task in variables.listed) || (variables.taskRefName == variables.task && !variables.embedsOrResolves)";
    let labelled_message = format!(
        "'BuildPolicy {policy}: a TaskRun labelled {task_label}=' + variables.task + ' must run that Task by spec.taskRef.name, with no taskSpec and no resolver; remove the label, or reference the Task'"
    );
    let by_name_rule = "!variables.isTaskRun || !(variables.serviceAccount in variables.buildAccounts) || (request.operation == 'UPDATE' && object.spec == oldObject.spec) || (variables.taskRefName != '' && !variables.embedsOrResolves)";
    let by_name_message = format!(
        "'BuildPolicy {policy}: a TaskRun in {ns} that runs as ' + (variables.serviceAccount == '' ? 'the default service account (it names none, and the pipeline default may be {sa})' : 'service account {sa}') + ' must reference a Task of {ns} by spec.taskRef.name, with no taskSpec, resolver or bundle: {sa} holds SCC {scc}, and a Task fetched from elsewhere can call itself by a listed name. Run such tasks as another service account (taskRunSpecs[].serviceAccountName in a PipelineRun, spec.serviceAccountName in a TaskRun)'"
    );
    let editors =
        if confinement.task_editors.is_empty() && confinement.task_editor_groups.is_empty() {
            "nobody may (the operator ceiling names no confinement.taskEditors)".to_owned()
        } else {
            let mut names = confinement.task_editors.clone();
            names.extend(
                confinement
                    .task_editor_groups
                    .iter()
                    .map(|g| format!("group {g}")),
            );
            format!("only {} may", quoted(&names.join(", ")))
        };
    let guard_rule = "!variables.isTask || !(object.metadata.name in variables.listed) || request.userInfo.username in variables.editors || request.userInfo.groups.exists(g, g in variables.editorGroups) || (request.operation == 'UPDATE' && has(object.spec) == has(oldObject.spec) && (!has(object.spec) || object.spec == oldObject.spec))";
    let guard_message = format!(
        "'BuildPolicy {policy} grants SCC {scc} to the pods of Task {ns}/' + object.metadata.name + ': {editors} create it or change its spec, and ' + request.userInfo.username + ' is not one of them. Change the Task where it is reviewed and let that identity sync it; a cluster admin names such identities in the operator ceiling (confinement.taskEditors, confinement.taskEditorGroups)'"
    );

    let mut rules = vec![
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}),
        json!({"apiGroups": ["tekton.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["taskruns"]}),
    ];
    let mut validations = vec![
        json!({"expression": pod_rule, "messageExpression": pod_message, "reason": "Forbidden"}),
        // Invalid (422), not Forbidden (403): Tekton fails a PipelineRun at
        // once when a TaskRun it makes is invalid, and retries a forbidden
        // one forever, leaving the run Running with nothing said.
        json!({"expression": labelled_rule, "messageExpression": labelled_message, "reason": "Invalid"}),
        json!({"expression": by_name_rule, "messageExpression": by_name_message, "reason": "Invalid"}),
    ];
    if confinement.guard_task_edits {
        rules.push(json!({"apiGroups": ["tekton.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["tasks"]}));
        validations.push(
            json!({"expression": guard_rule, "messageExpression": guard_message, "reason": "Forbidden"}),
        );
    }
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": scc,
            "labels": owner.labels(),
            "ownerReferences": owner.owner_references(),
        },
        "spec": {
            // Fail: a request the API server cannot judge is refused. With
            // no parameter resource there is nothing to resolve, and the
            // namespace constraint keeps every other namespace out of it.
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": namespace_selector(ns),
                "resourceRules": rules,
            },
            "variables": [
                {"name": "scc", "expression": cel(&scc)},
                {"name": "isPod", "expression": "request.resource.resource == 'pods'"},
                {"name": "isTaskRun", "expression": "request.resource.resource == 'taskruns'"},
                {"name": "isTask", "expression": "request.resource.resource == 'tasks'"},
                {"name": "admittedScc", "expression": format!("variables.isPod ? object.metadata.?annotations[?'{scc_annotation}'].orValue('') : ''")},
                {"name": "task", "expression": format!("variables.isTask ? '' : object.metadata.?labels[?'{task_label}'].orValue('')")},
                {"name": "taskRefName", "expression": "variables.isTaskRun ? object.spec.?taskRef.?name.orValue('') : ''"},
                {"name": "embedsOrResolves", "expression": "variables.isTaskRun && (has(object.spec.taskSpec) || object.spec.?taskRef.?resolver.hasValue() || object.spec.?taskRef.?bundle.hasValue() || object.spec.?taskRef.?params.hasValue() || object.spec.?taskRef.?apiVersion.hasValue() || object.spec.?taskRef.?kind.orValue('Task') != 'Task')"},
                {"name": "serviceAccount", "expression": "variables.isTaskRun ? object.spec.?serviceAccountName.orValue('') : ''"},
                {"name": "buildAccounts", "expression": cel(&[sa.as_str(), ""])},
                {"name": "controllers", "expression": cel(&confinement.pipeline_controllers)},
                {"name": "listed", "expression": cel(&spec.tasks)},
                {"name": "granted", "expression": cel(granted_tasks)},
                {"name": "editors", "expression": cel(&confinement.task_editors)},
                {"name": "editorGroups", "expression": cel(&confinement.task_editor_groups)},
            ],
            "validations": validations,
        },
    }))
    .expect("the ValidatingAdmissionPolicy is well-formed")
}

fn namespace_selector(namespace: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}})
}

/// The binding of policy `owner`'s admission policy in `namespace`, or
/// `None` when confinement is off.
pub fn binding(
    owner: &Owner,
    namespace: &str,
    mode: ConfinementMode,
) -> Option<ValidatingAdmissionPolicyBinding> {
    let actions = match mode {
        ConfinementMode::Enforce => json!(["Deny"]),
        ConfinementMode::Warn => json!(["Warn", "Audit"]),
        ConfinementMode::Off => return None,
    };
    let name = owned_name(&owner.name);
    Some(
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {
                "name": name,
                "labels": owner.labels(),
                "ownerReferences": owner.owner_references(),
            },
            "spec": {
                "policyName": name,
                "matchResources": {"namespaceSelector": namespace_selector(namespace)},
                "validationActions": actions,
            },
        }))
        .expect("the binding is well-formed"),
    )
}

/// Whether every field `desired` sets has the same value in `live`
/// (the server adds defaults of its own, e.g. `matchPolicy`).
pub fn holds(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, v)| l.get(k).is_some_and(|lv| holds(v, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| holds(dv, lv))
        }
        _ => desired == live,
    }
}

/// Whether the live object's spec holds every field of the desired one.
pub fn spec_holds<K: serde::Serialize>(desired: &K, live: &K) -> bool {
    let spec = |o: &K| {
        serde_json::to_value(o)
            .map(|v| v["spec"].clone())
            .unwrap_or_default()
    };
    holds(&spec(desired), &spec(live))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            name: "modelcar".into(),
            uid: Some("uid-1".into()),
        }
    }

    fn spec() -> BuildPolicySpec {
        crate::fixtures::modelcar_spec(Default::default())
    }

    fn vap(confinement: &Confinement, granted: &[String]) -> Value {
        let spec = spec();
        let scope = Scope {
            owner: &owner(),
            spec: &spec,
            granted_tasks: granted,
        };
        serde_json::to_value(admission_policy(&scope, confinement)).unwrap()
    }

    fn variable(vap: &Value, name: &str) -> String {
        vap["spec"]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap()["expression"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn enforce_denies_warn_warns_and_audits_off_binds_nothing() {
        let actions = |mode| {
            binding(&owner(), "builds", mode)
                .map(|b| b.spec)
                .map(|s| s.validation_actions)
        };
        assert_eq!(
            actions(ConfinementMode::Enforce),
            Some(vec!["Deny".to_owned()])
        );
        assert_eq!(
            actions(ConfinementMode::Warn),
            Some(vec!["Warn".to_owned(), "Audit".to_owned()])
        );
        assert!(binding(&owner(), "builds", ConfinementMode::Off).is_none());
    }

    #[test]
    fn the_binding_names_its_own_policy_and_namespace_and_has_no_parameter() {
        let b = binding(&owner(), "builds", ConfinementMode::Enforce).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["metadata"]["name"], "buildpolicy-modelcar");
        assert_eq!(v["spec"]["policyName"], "buildpolicy-modelcar");
        assert!(v["spec"].get("paramRef").is_none(), "{v}");
        assert_eq!(
            v["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "builds"
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(
            v["metadata"]["labels"][buildpolicy_api::keys::POLICY_LABEL],
            "modelcar"
        );
    }

    #[test]
    fn the_admission_policy_fails_closed_in_the_policys_namespace_with_literals_only() {
        let granted = spec().tasks;
        let v = vap(&Confinement::default(), &granted);
        assert_eq!(v["metadata"]["name"], "buildpolicy-modelcar");
        assert_eq!(v["spec"]["failurePolicy"], "Fail");
        assert!(v["spec"].get("paramKind").is_none(), "{v}");
        assert_eq!(
            v["spec"]["matchConstraints"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            spec().namespace
        );
        let text = v.to_string();
        assert!(
            !text.contains("params.spec") && !text.contains("params.metadata"),
            "no parameter is read: {v}"
        );
        assert_eq!(variable(&v, "scc"), r#""buildpolicy-modelcar""#);
        assert_eq!(variable(&v, "listed"), cel(&spec().tasks));
        assert_eq!(
            variable(&v, "buildAccounts"),
            format!(r#"["{}",""]"#, spec().service_account_name)
        );
    }

    #[test]
    fn the_admission_policy_names_the_configured_controllers_and_editors() {
        let confinement = Confinement {
            pipeline_controllers: vec!["system:serviceaccount:ci:tekton".into(), "o'neil".into()],
            task_editors: vec!["system:serviceaccount:gitops:argocd".into()],
            task_editor_groups: vec!["platform".into()],
            ..Confinement::default()
        };
        let v = vap(&confinement, &[]);
        // A JSON list of strings is a CEL list literal, quotes escaped.
        assert_eq!(
            variable(&v, "controllers"),
            r#"["system:serviceaccount:ci:tekton","o'neil"]"#
        );
        assert_eq!(
            variable(&v, "editors"),
            r#"["system:serviceaccount:gitops:argocd"]"#
        );
        assert_eq!(variable(&v, "editorGroups"), r#"["platform"]"#);
        assert_eq!(variable(&v, "granted"), "[]");
        // Names inside a message's single-quoted CEL string are escaped.
        let pod = v["spec"]["validations"][0]["messageExpression"]
            .as_str()
            .unwrap();
        assert!(pod.contains(r"o\'neil"), "{pod}");
        let guard = v["spec"]["validations"][3]["messageExpression"]
            .as_str()
            .unwrap();
        assert!(
            guard.contains("only system:serviceaccount:gitops:argocd, group platform may"),
            "{guard}"
        );
    }

    #[test]
    fn the_task_edit_guard_can_be_turned_off_in_the_ceiling() {
        let on = vap(&Confinement::default(), &[]);
        let resources = |v: &Value| -> Vec<String> {
            v["spec"]["matchConstraints"]["resourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["resources"][0].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(resources(&on), ["pods", "taskruns", "tasks"]);
        assert_eq!(on["spec"]["validations"].as_array().unwrap().len(), 4);
        let off = vap(
            &Confinement {
                guard_task_edits: false,
                ..Confinement::default()
            },
            &[],
        );
        assert_eq!(resources(&off), ["pods", "taskruns"]);
        assert_eq!(off["spec"]["validations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn server_defaults_do_not_count_as_drift_but_changed_fields_do() {
        let desired = json!({"a": {"b": [1, {"c": 2}]}, "d": "x"});
        let mut live = json!({"a": {"b": [1, {"c": 2, "extra": 3}], "default": true}, "d": "x"});
        assert!(holds(&desired, &live));
        live["d"] = json!("y");
        assert!(!holds(&desired, &live));
        assert!(!holds(&desired, &json!({"a": {"b": [1]}, "d": "x"})));
    }
}

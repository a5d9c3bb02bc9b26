//! Admission-time confinement: the generated SCC is admitted only for the
//! pods that the pipeline controller creates for a policy's listed Tasks.
//!
//! OpenShift checks SCC `use` for the pod's service account, so without this
//! anyone who may create pods or TaskRuns in the namespace could run any
//! container as the build service account and get the SCC. The API server's
//! own ValidatingAdmissionPolicy closes that, with no webhook to run: one
//! policy for the cluster whose parameter is the BuildPolicy itself, and one
//! binding per BuildPolicy, limited to its namespace. It runs after mutating
//! admission, so it sees the `openshift.io/scc` annotation SCC admission set.
//!
//! Two rules, each naming the policy and the fix when it refuses:
//! - a pod admitted under the policy's SCC must be created by a pipeline
//!   controller identity and carry `tekton.dev/task` naming a listed Task;
//! - a TaskRun whose `tekton.dev/task` label names a listed Task must run
//!   exactly that Task by `spec.taskRef.name` (no embedded `taskSpec`, no
//!   resolver), so the label on its pod cannot be forged.

use buildpolicy_api::keys::{
    ADMITTED_SCC_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_PREFIX,
};
use buildpolicy_api::tekton::TASK_LABEL;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

use crate::Owner;
use crate::ceiling::{Confinement, ConfinementMode};

/// Name of the one ValidatingAdmissionPolicy every binding refers to.
pub const ADMISSION_POLICY_NAME: &str = "buildpolicy.dev-confinement";

/// The ValidatingAdmissionPolicy, with the pipeline controllers of
/// `confinement` written into it (a binding carries no data of its own).
pub fn admission_policy(confinement: &Confinement) -> ValidatingAdmissionPolicy {
    let controllers = serde_json::to_string(&confinement.pipeline_controllers)
        .expect("a list of strings serialises");
    let scc_annotation = ADMITTED_SCC_ANNOTATION;
    let task_label = TASK_LABEL;
    let pod_rule = format!(
        "!variables.isPod || object.metadata.?annotations[?'{scc_annotation}'].orValue('') != variables.scc || (request.userInfo.username in variables.controllers && variables.task in params.spec.tasks)"
    );
    let pod_message = "'BuildPolicy ' + params.metadata.name + ' confines SCC ' + variables.scc + ' to the pods that the pipeline controller creates for its Tasks (' + params.spec.tasks.join(', ') + '); this pod ' + (variables.task == '' ? 'runs no Tekton Task' : 'runs Task ' + variables.task) + ' and was created by ' + request.userInfo.username + ': run the build through a listed Task by taskRef, or list the Task in the BuildPolicy'".to_owned();
    let task_run_rule = "variables.isPod || !(variables.task in params.spec.tasks) || (object.spec.?taskRef.?name.orValue('') == variables.task && !has(object.spec.taskSpec) && !object.spec.?taskRef.?resolver.hasValue())".to_owned();
    let task_run_message = format!(
        "'BuildPolicy ' + params.metadata.name + ': a TaskRun labelled {task_label}=' + variables.task + ' must run that Task by spec.taskRef.name, with no taskSpec and no resolver; remove the label, or reference the Task'"
    );
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": ADMISSION_POLICY_NAME,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "spec": {
            // Ignore, not Fail: an API server that cannot evaluate the policy
            // (it has not yet discovered the BuildPolicy CRD, for a minute
            // or two after it starts; the CRD was removed) would otherwise
            // refuse every pod and TaskRun in the cluster, not only in the
            // build namespaces. SCC admission's own checks stay in force.
            "failurePolicy": "Ignore",
            "paramKind": {
                "apiVersion": buildpolicy_api::policy::API_VERSION,
                "kind": buildpolicy_api::policy::KIND,
            },
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]},
                    {"apiGroups": ["tekton.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["taskruns"]},
                ],
            },
            "variables": [
                {"name": "scc", "expression": format!("'{NAME_PREFIX}' + params.metadata.name")},
                {"name": "isPod", "expression": "request.resource.resource == 'pods'"},
                {"name": "task", "expression": format!("object.metadata.?labels[?'{task_label}'].orValue('')")},
                {"name": "controllers", "expression": controllers},
            ],
            "validations": [
                {"expression": pod_rule, "messageExpression": pod_message, "reason": "Forbidden"},
                {"expression": task_run_rule, "messageExpression": task_run_message, "reason": "Forbidden"},
            ],
        },
    }))
    .expect("the ValidatingAdmissionPolicy is well-formed")
}

/// The binding of policy `owner` in `namespace`, or `None` when
/// confinement is off.
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
    Some(
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {
                "name": format!("{NAME_PREFIX}{}", owner.name),
                "labels": owner.labels(),
                "ownerReferences": owner.owner_references(),
            },
            "spec": {
                "policyName": ADMISSION_POLICY_NAME,
                // The BuildPolicy outlives its SCC (its finalizer revokes
                // the SCC first), so a missing policy means a binding left
                // over for a moment after deletion, with nothing to
                // protect: Deny would refuse every pod in the namespace.
                "paramRef": {"name": owner.name, "parameterNotFoundAction": "Allow"},
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                },
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
    fn the_binding_names_its_policy_and_namespace_and_is_owned() {
        let b = binding(&owner(), "builds", ConfinementMode::Enforce).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["metadata"]["name"], "buildpolicy-modelcar");
        assert_eq!(v["spec"]["paramRef"]["name"], "modelcar");
        assert_eq!(v["spec"]["paramRef"]["parameterNotFoundAction"], "Allow");
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
    fn the_admission_policy_names_the_configured_controllers() {
        let confinement = Confinement {
            pipeline_controllers: vec!["system:serviceaccount:ci:tekton".into(), "o'neil".into()],
            ..Confinement::default()
        };
        let vap = serde_json::to_value(admission_policy(&confinement)).unwrap();
        let controllers = vap["spec"]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "controllers")
            .unwrap()["expression"]
            .as_str()
            .unwrap()
            .to_owned();
        // A JSON list of strings is a CEL list literal, quotes escaped.
        assert_eq!(
            controllers,
            r#"["system:serviceaccount:ci:tekton","o'neil"]"#
        );
        assert_eq!(vap["spec"]["failurePolicy"], "Ignore");
        assert_eq!(vap["spec"]["paramKind"]["kind"], "BuildPolicy");
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

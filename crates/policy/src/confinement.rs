//! Admission-time confinement: the generated SCC is admitted only for the
//! pods that the pipeline controller creates for a policy's listed Tasks,
//! and the listed Tasks run only the content the platform team reviewed.
//!
//! OpenShift checks SCC `use` for the pod's service account, so without this
//! anyone who may create pods or TaskRuns in the namespace could run any
//! container as the build service account and get the SCC. The API server's
//! own ValidatingAdmissionPolicy closes that, with no webhook to run.
//!
//! The policies are spread over at most [`SHARDS`] ValidatingAdmissionPolicies
//! (a policy's shard follows from its name), each with one binding and
//! every value written into its rules as a literal: a constant map from
//! namespace to the policies of that namespace. There is no parameter
//! resource, so nothing is left to resolve after an API server restarts,
//! and `failurePolicy: Fail` refuses what cannot be evaluated: confinement
//! never fails open. A `matchCondition` on the request's namespace (a set
//! lookup: the API server folds constant lists) keeps every other
//! namespace's requests to a few microseconds per shard, whatever the number
//! of policies. It runs after mutating admission, so it sees the
//! `openshift.io/scc` annotation SCC admission set.
//!
//! Four rules, each naming the policy and the fix when it refuses:
//! - a pod admitted under a policy's SCC must be created by a pipeline
//!   controller identity and carry `tekton.dev/task` naming a granted Task
//!   (listed, and its content as reviewed when a digest is given);
//! - a TaskRun whose `tekton.dev/task` label names a listed Task must run
//!   exactly that Task by `spec.taskRef.name` (no embedded `taskSpec`, no
//!   resolver), so the label on its pod cannot be forged;
//! - a TaskRun that runs as a build service account (or names none: the
//!   pipeline's configured default could be it) must reference a Task of
//!   the namespace by `spec.taskRef.name`: a resolver can fetch a Task that
//!   calls itself by a listed name from anywhere, and Tekton labels the pod
//!   with that name;
//! - unless the ceiling turns it off, creating a listed Task or changing its
//!   `spec` is refused for everyone but the ceiling's Task editors: whoever
//!   edits a listed Task chooses what runs with the grant.

use std::collections::BTreeMap;

use buildpolicy_api::BuildPolicySpec;
use buildpolicy_api::keys::{
    ADMITTED_SCC_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, owned_name,
};
use buildpolicy_api::tekton::TASK_LABEL;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ceiling::{Confinement, ConfinementMode};

/// Name of the one shared ValidatingAdmissionPolicy of earlier releases
/// (with the BuildPolicy as its parameter and `failurePolicy: Ignore`),
/// which the operator deletes when it finds it.
pub const LEGACY_ADMISSION_POLICY_NAME: &str = "buildpolicy.dev-confinement";

/// How many ValidatingAdmissionPolicies the policies are spread over, at
/// most. Each request of any namespace is matched against every shard
/// that exists; a shard's rules hold about 600 policies before its
/// literal reaches the API server's expression size limit.
pub const SHARDS: u32 = 16;

/// Label on the shard objects: which operator writes them (see [`Shards`]).
pub const SHARD_SCOPE_LABEL: &str = "buildpolicy.dev/confinement-scope";

/// The API server's limit on one CEL expression (cel-go's parser default,
/// in code points), with a margin for the rest of the expression.
const EXPRESSION_LIMIT: usize = 98_000;

/// The variable that holds the policies of a shard.
const POLICIES_VARIABLE: &str = "policies";

/// Which shard objects one operator writes. An operator started with a
/// policy selector (several operators sharing a cluster, each with its own
/// policies) writes shards of its own, so that none drops another's
/// policies; the API server enforces the rules of all of them.
#[derive(Clone, Debug)]
pub struct Shards {
    scope: String,
}

impl Shards {
    /// The shards of the operator reconciling the policies that `selector`
    /// selects (`None`: all of them).
    pub fn new(selector: Option<&str>) -> Self {
        let scope = match selector {
            None => "cluster".to_owned(),
            Some(selector) => format!("{:08x}", fnv1a(selector) as u32),
        };
        Self { scope }
    }

    /// The value of [`SHARD_SCOPE_LABEL`] on this operator's shards.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Name of the shard that holds `policy`.
    pub fn of(&self, policy: &str) -> String {
        self.name((fnv1a(policy) % u64::from(SHARDS)) as u32)
    }

    fn name(&self, index: u32) -> String {
        if self.scope == "cluster" {
            format!("{LEGACY_ADMISSION_POLICY_NAME}-{index:02}")
        } else {
            format!("{LEGACY_ADMISSION_POLICY_NAME}-{}-{index:02}", self.scope)
        }
    }

    /// Whether `name` is one of this operator's shards.
    pub fn owns(&self, name: &str) -> bool {
        (0..SHARDS).any(|i| self.name(i) == name)
    }

    fn labels(&self) -> Value {
        json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, SHARD_SCOPE_LABEL: self.scope})
    }
}

/// FNV-1a: a hash that stays the same across releases and platforms.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What one BuildPolicy puts in its shard's rules. Every value is a list of
/// strings: the API server wants the CEL map literal homogeneous.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The policy's SCC (one name).
    pub scc: Vec<String>,
    /// The service accounts whose TaskRuns must name a local Task: the
    /// policy's, and "" (a TaskRun naming none gets the pipeline default).
    pub accounts: Vec<String>,
    /// The listed Tasks.
    pub listed: Vec<String>,
    /// The listed Tasks whose pods may get the SCC: all of them but those
    /// whose live content differs from their reviewed digest.
    pub granted: Vec<String>,
}

impl Entry {
    /// The entry of policy `policy`, granting `granted` of its Tasks.
    pub fn new(policy: &str, spec: &BuildPolicySpec, granted: &[String]) -> Self {
        Self {
            scc: vec![owned_name(policy)],
            accounts: vec![spec.service_account_name.clone(), String::new()],
            listed: spec.tasks.clone(),
            granted: granted.to_vec(),
        }
    }
}

/// The policies of one shard: namespace, then policy name, then entry.
pub type Entries = BTreeMap<String, BTreeMap<String, Entry>>;

/// The entries of a live shard, read back from its rules (`None` when the
/// object is not one this release wrote).
pub fn live_entries(vap: &ValidatingAdmissionPolicy) -> Option<Entries> {
    let variables = vap.spec.as_ref()?.variables.as_ref()?;
    let literal = variables.iter().find(|v| v.name == POLICIES_VARIABLE)?;
    serde_json::from_str(&literal.expression).ok()
}

/// Where `policy` sits in `entries`, if anywhere: its namespace and entry.
pub fn find<'a>(entries: &'a Entries, policy: &str) -> Option<(&'a str, &'a Entry)> {
    entries
        .iter()
        .find_map(|(ns, policies)| policies.get(policy).map(|e| (ns.as_str(), e)))
}

/// A shard's rules could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    pub shard: String,
    pub size: usize,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the rules of ValidatingAdmissionPolicy {} would be {} characters long, over the API server's limit of {EXPRESSION_LIMIT}: too many policies in one shard; run a second operator with a policy selector for some of them",
            self.shard, self.size
        )
    }
}

/// `text` made safe inside a single-quoted CEL string literal.
fn quoted(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A CEL literal of `value` (JSON strings, lists of strings and maps with
/// string keys are CEL literals too).
fn cel<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("strings serialise")
}

/// The ValidatingAdmissionPolicy of shard `shard` holding `entries`, with
/// the ceiling's identities written in.
pub fn admission_policy(
    shards: &Shards,
    shard: &str,
    entries: &Entries,
    confinement: &Confinement,
) -> Result<ValidatingAdmissionPolicy, TooLarge> {
    let policies = cel(entries);
    if policies.chars().count() > EXPRESSION_LIMIT {
        return Err(TooLarge {
            shard: shard.to_owned(),
            size: policies.chars().count(),
        });
    }
    let namespaces: Vec<&String> = entries.keys().collect();
    let scc_annotation = ADMITTED_SCC_ANNOTATION;
    let task_label = TASK_LABEL;
    let who = quoted(&confinement.pipeline_controllers.join(", "));

    // Each rule's variable lists the policies of the namespace that refuse
    // the request; the message names the first.
    let pod_refusers = "variables.isPod ? variables.here.filter(p, variables.admittedScc in variables.here[p].scc && !(request.userInfo.username in variables.controllers && variables.task in variables.here[p].granted)) : []";
    let pod_message = format!(
        "'BuildPolicy ' + variables.podRefusers[0] + ' confines SCC ' + variables.admittedScc + ' to the pods that the pipeline controller ({who}) creates for its Tasks (' + variables.here[variables.podRefusers[0]].listed.join(', ') + '); this pod ' + (variables.task == '' ? 'runs no Tekton Task' : 'runs Task ' + variables.task + (variables.task in variables.here[variables.podRefusers[0]].listed && !(variables.task in variables.here[variables.podRefusers[0]].granted) ? ', whose content differs from the digest the policy reviewed (see its TasksPinned condition)' : '')) + ' and was created by ' + request.userInfo.username + ': run the build through a listed Task by taskRef, or list the Task in the BuildPolicy'"
    );
    let labelled_refusers = "variables.isTaskRun && !(variables.taskRefName == variables.task && !variables.embedsOrResolves) ? variables.here.filter(p, variables.task in variables.here[p].listed) : []";
    let labelled_message = format!(
        "'BuildPolicy ' + variables.labelledRefusers[0] + ': a TaskRun labelled {task_label}=' + variables.task + ' must run that Task by spec.taskRef.name, with no taskSpec and no resolver; remove the label, or reference the Task'"
    );
    let by_name_refusers = "variables.isTaskRun && !(request.operation == 'UPDATE' && object.spec == oldObject.spec) && !(variables.taskRefName != '' && !variables.embedsOrResolves) ? variables.here.filter(p, variables.serviceAccount in variables.here[p].accounts) : []";
    let by_name_message = "'BuildPolicy ' + variables.byNameRefusers[0] + ': a TaskRun in ' + request.namespace + ' that runs as ' + (variables.serviceAccount == '' ? 'the default service account (it names none, and the pipeline default may be ' + variables.here[variables.byNameRefusers[0]].accounts[0] + ')' : 'service account ' + variables.serviceAccount) + ' must reference a Task of ' + request.namespace + ' by spec.taskRef.name, with no taskSpec, resolver or bundle: ' + variables.here[variables.byNameRefusers[0]].accounts[0] + ' holds SCC ' + variables.here[variables.byNameRefusers[0]].scc[0] + ', and a Task fetched from elsewhere can call itself by a listed name. Run such tasks as another service account (taskRunSpecs[].serviceAccountName in a PipelineRun, spec.serviceAccountName in a TaskRun)'";
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
    let edit_refusers = "variables.isTask && !(request.userInfo.username in variables.editors || request.userInfo.groups.exists(g, g in variables.editorGroups) || (request.operation == 'UPDATE' && has(object.spec) == has(oldObject.spec) && (!has(object.spec) || object.spec == oldObject.spec))) ? variables.here.filter(p, object.metadata.name in variables.here[p].listed) : []";
    let edit_message = format!(
        "'BuildPolicy ' + variables.editRefusers[0] + ' grants SCC ' + variables.here[variables.editRefusers[0]].scc[0] + ' to the pods of Task ' + request.namespace + '/' + object.metadata.name + ': {editors} create it or change its spec, and ' + request.userInfo.username + ' is not one of them. Change the Task where it is reviewed and let that identity sync it; a cluster admin names such identities in the operator ceiling (confinement.taskEditors, confinement.taskEditorGroups)'"
    );

    let mut rules = vec![
        json!({"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}),
        json!({"apiGroups": ["tekton.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["taskruns"]}),
    ];
    let mut validations = vec![
        json!({"expression": "size(variables.podRefusers) == 0", "messageExpression": pod_message, "reason": "Forbidden"}),
        // Invalid (422), not Forbidden (403): Tekton fails a PipelineRun at
        // once when a TaskRun it makes is invalid, and retries a forbidden
        // one forever, leaving the run Running with nothing said.
        json!({"expression": "size(variables.labelledRefusers) == 0", "messageExpression": labelled_message, "reason": "Invalid"}),
        json!({"expression": "size(variables.byNameRefusers) == 0", "messageExpression": by_name_message, "reason": "Invalid"}),
    ];
    if confinement.guard_task_edits {
        rules.push(json!({"apiGroups": ["tekton.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["tasks"]}));
        validations.push(
            json!({"expression": "size(variables.editRefusers) == 0", "messageExpression": edit_message, "reason": "Forbidden"}),
        );
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": shard, "labels": shards.labels()},
        "spec": {
            // Fail: a request the API server cannot judge is refused. With
            // no parameter resource there is nothing to resolve, and the
            // namespace condition keeps every other namespace out of it.
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules},
            "matchConditions": [
                {"name": "in-a-build-namespace", "expression": format!("request.namespace in {}", cel(&namespaces))},
            ],
            "variables": [
                {"name": POLICIES_VARIABLE, "expression": policies},
                {"name": "here", "expression": format!("variables.{POLICIES_VARIABLE}[request.namespace]")},
                {"name": "isPod", "expression": "request.resource.resource == 'pods'"},
                {"name": "isTaskRun", "expression": "request.resource.resource == 'taskruns'"},
                {"name": "isTask", "expression": "request.resource.resource == 'tasks'"},
                {"name": "admittedScc", "expression": format!("variables.isPod ? object.metadata.?annotations[?'{scc_annotation}'].orValue('') : ''")},
                {"name": "task", "expression": format!("variables.isTask ? '' : object.metadata.?labels[?'{task_label}'].orValue('')")},
                {"name": "taskRefName", "expression": "variables.isTaskRun ? object.spec.?taskRef.?name.orValue('') : ''"},
                {"name": "embedsOrResolves", "expression": "variables.isTaskRun && (has(object.spec.taskSpec) || object.spec.?taskRef.?resolver.hasValue() || object.spec.?taskRef.?bundle.hasValue() || object.spec.?taskRef.?params.hasValue() || object.spec.?taskRef.?apiVersion.hasValue() || object.spec.?taskRef.?kind.orValue('Task') != 'Task')"},
                {"name": "serviceAccount", "expression": "variables.isTaskRun ? object.spec.?serviceAccountName.orValue('') : ''"},
                {"name": "controllers", "expression": cel(&confinement.pipeline_controllers)},
                {"name": "editors", "expression": cel(&confinement.task_editors)},
                {"name": "editorGroups", "expression": cel(&confinement.task_editor_groups)},
                {"name": "podRefusers", "expression": pod_refusers},
                {"name": "labelledRefusers", "expression": labelled_refusers},
                {"name": "byNameRefusers", "expression": by_name_refusers},
                {"name": "editRefusers", "expression": edit_refusers},
            ],
            "validations": validations,
        },
    }))
    .expect("the ValidatingAdmissionPolicy is well-formed"))
}

/// The binding of shard `shard`, or `None` when confinement is off. It
/// matches everything: the shard's own namespace condition selects.
pub fn binding(
    shards: &Shards,
    shard: &str,
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
            "metadata": {"name": shard, "labels": shards.labels()},
            "spec": {"policyName": shard, "validationActions": actions},
        }))
        .expect("the binding is well-formed"),
    )
}

/// Whether a live shard has the rules this release and `confinement` give
/// it, for the entries it holds.
pub fn rules_hold(
    shards: &Shards,
    live: &ValidatingAdmissionPolicy,
    confinement: &Confinement,
) -> bool {
    let name = live.metadata.name.clone().unwrap_or_default();
    live_entries(live)
        .and_then(|entries| admission_policy(shards, &name, &entries, confinement).ok())
        .is_some_and(|desired| spec_holds(&desired, live))
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

    fn shards() -> Shards {
        Shards::new(None)
    }

    fn entries(granted: &[String]) -> Entries {
        let spec = crate::fixtures::modelcar_spec(Default::default());
        let entry = Entry::new("modelcar", &spec, granted);
        Entries::from([(
            spec.namespace,
            BTreeMap::from([("modelcar".to_owned(), entry)]),
        )])
    }

    fn vap(confinement: &Confinement, granted: &[String]) -> Value {
        let shard = shards().of("modelcar");
        let vap = admission_policy(&shards(), &shard, &entries(granted), confinement).unwrap();
        serde_json::to_value(vap).unwrap()
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
    fn a_policy_always_lands_in_the_same_shard_of_its_operator() {
        let all = shards();
        assert_eq!(all.of("modelcar"), all.of("modelcar"));
        assert!(
            all.of("modelcar")
                .starts_with("buildpolicy.dev-confinement-")
        );
        assert_ne!(all.of("modelcar"), LEGACY_ADMISSION_POLICY_NAME);
        let names: std::collections::BTreeSet<String> =
            (0..1000).map(|i| all.of(&format!("policy-{i}"))).collect();
        assert_eq!(names.len(), SHARDS as usize, "{names:?}");
        assert!(names.iter().all(|n| all.owns(n)));
        // An operator with a policy selector writes shards of its own.
        let scoped = Shards::new(Some("team=a"));
        assert_ne!(scoped.of("modelcar"), all.of("modelcar"));
        assert!(!all.owns(&scoped.of("modelcar")));
        assert!(!scoped.owns(&all.of("modelcar")));
        assert_ne!(
            Shards::new(Some("team=b")).of("modelcar"),
            scoped.of("modelcar")
        );
    }

    #[test]
    fn enforce_denies_warn_warns_and_audits_off_binds_nothing() {
        let actions = |mode| {
            binding(&shards(), "s", mode)
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
        assert!(binding(&shards(), "s", ConfinementMode::Off).is_none());
    }

    #[test]
    fn the_binding_names_its_own_shard_and_has_no_parameter() {
        let b = binding(&shards(), "shard-a", ConfinementMode::Enforce).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["metadata"]["name"], "shard-a");
        assert_eq!(v["spec"]["policyName"], "shard-a");
        assert!(v["spec"].get("paramRef").is_none(), "{v}");
        assert_eq!(v["metadata"]["labels"][SHARD_SCOPE_LABEL], "cluster");
        assert_eq!(v["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    }

    #[test]
    fn the_admission_policy_fails_closed_in_its_namespaces_with_literals_only() {
        let spec = crate::fixtures::modelcar_spec(Default::default());
        let v = vap(&Confinement::default(), &spec.tasks);
        assert_eq!(v["spec"]["failurePolicy"], "Fail");
        assert!(v["spec"].get("paramKind").is_none(), "{v}");
        assert_eq!(
            v["spec"]["matchConditions"][0]["expression"],
            format!(r#"request.namespace in ["{}"]"#, spec.namespace)
        );
        let text = v.to_string();
        assert!(
            !text.contains("params.spec") && !text.contains("params.metadata"),
            "no parameter is read: {v}"
        );
        // The entries are a CEL map literal that reads back as written.
        let parsed: ValidatingAdmissionPolicy = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(live_entries(&parsed), Some(entries(&spec.tasks)));
        let (ns, entry) = find(&entries(&spec.tasks), "modelcar")
            .map(|(ns, e)| (ns.to_owned(), e.clone()))
            .unwrap();
        assert_eq!(ns, spec.namespace);
        assert_eq!(entry.scc, ["buildpolicy-modelcar"]);
        assert_eq!(
            entry.accounts,
            [spec.service_account_name.clone(), String::new()]
        );
        assert_eq!(entry.listed, spec.tasks);
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
    fn a_shard_over_the_expression_limit_is_refused_with_the_way_out() {
        let spec = crate::fixtures::modelcar_spec(Default::default());
        let mut many = Entries::new();
        for i in 0..2000 {
            many.entry(format!("namespace-{i}")).or_default().insert(
                format!("policy-{i}"),
                Entry::new(&format!("policy-{i}"), &spec, &spec.tasks),
            );
        }
        let error = admission_policy(&shards(), "s", &many, &Confinement::default()).unwrap_err();
        assert!(error.size > EXPRESSION_LIMIT);
        assert!(error.to_string().contains("policy selector"), "{error}");
    }

    #[test]
    fn a_hand_edited_rule_no_longer_holds_but_the_entries_alone_do() {
        let confinement = Confinement::default();
        let live: ValidatingAdmissionPolicy =
            serde_json::from_value(vap(&confinement, &[])).unwrap();
        assert!(rules_hold(&shards(), &live, &confinement));
        let mut edited = live.clone();
        edited.spec.as_mut().unwrap().failure_policy = Some("Ignore".into());
        assert!(!rules_hold(&shards(), &edited, &confinement));
        let mut emptied = live;
        emptied.spec.as_mut().unwrap().validations = Some(Vec::new());
        assert!(!rules_hold(&shards(), &emptied, &confinement));
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

//! Prints `docs/api.md`, the BuildPolicy API reference, from the CRD that
//! `crdgen` writes: every field of the `openAPIV3Schema` with its type,
//! whether it is required, its description, its limits and the messages of
//! its CEL rules; then the printer columns, and a hand-written section on
//! conditions and reasons.
//!
//! `cargo run -q -p buildpolicy-api --bin crddoc > docs/api.md` (hack/generate.sh).

use std::fmt::Write as _;

use buildpolicy_api::BuildPolicy;
use buildpolicy_api::conditions::{self, reason};
use kube::CustomResourceExt;
use serde_json::Value;

fn main() {
    let crd = serde_json::to_value(BuildPolicy::crd()).expect("the CRD serialises to JSON");
    check_template();
    print!("{}", render(&crd));
}

/// One field of the schema, in document order.
struct Field<'a> {
    /// `spec.capabilities`, `spec.capabilities[]`, `status.conditions[].type`;
    /// empty for the object itself.
    path: String,
    schema: &'a Value,
    /// `None` for list items, where "required" does not apply.
    required: Option<bool>,
}

/// Depth-first walk: an object's properties (alphabetically, as the CRD
/// stores them), an array's items as `path[]`.
fn collect<'a>(path: String, schema: &'a Value, required: Option<bool>, out: &mut Vec<Field<'a>>) {
    let is_item = path.ends_with("[]");
    let items = schema.get("items");
    let properties = schema.get("properties").and_then(Value::as_object);
    // A plain item (e.g. the strings of `status.pinnedTasks`) says nothing
    // its list does not already say.
    let trivial_item = is_item && properties.is_none() && !has_own_facts(schema);
    if !trivial_item {
        out.push(Field {
            path: path.clone(),
            schema,
            required,
        });
    }
    if let Some(properties) = properties {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, child) in properties {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            collect(
                child_path,
                child,
                Some(required.contains(&name.as_str())),
                out,
            );
        }
    }
    if let Some(items) = items {
        collect(format!("{path}[]"), items, None, out);
    }
}

/// Whether a schema carries anything worth its own entry.
fn has_own_facts(schema: &Value) -> bool {
    schema.get("description").is_some()
        || !limits(schema).is_empty()
        || list_type(schema).is_some()
        || !rules(schema).is_empty()
}

/// `string`, `integer (int64)`, `array of string`, `array of object`.
fn type_of(schema: &Value) -> String {
    let base = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let mut t = if base == "array" {
        format!(
            "array of {}",
            schema
                .get("items")
                .map(type_of)
                .unwrap_or_else(|| "any".into())
        )
    } else {
        base.to_owned()
    };
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        write!(t, " ({format})").unwrap();
    }
    t
}

/// Size limits and the like, in words.
fn limits(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let num = |key: &str| schema.get(key).and_then(Value::as_i64);
    if let Some(n) = num("minItems") {
        out.push(format!("at least {n} items"));
    }
    if let Some(n) = num("maxItems") {
        out.push(format!("at most {n} items"));
    }
    if let Some(n) = num("minLength") {
        out.push(format!("at least {n} characters"));
    }
    if let Some(n) = num("maxLength") {
        out.push(format!("at most {n} characters"));
    }
    if let Some(n) = schema.get("minimum") {
        out.push(format!("minimum {n}"));
    }
    if let Some(n) = schema.get("maximum") {
        out.push(format!("maximum {n}"));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        out.push(format!("matches {}", code(p)));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| code(&plain(v))).collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    out
}

/// How server-side apply merges a list, when it is not atomic.
fn list_type(schema: &Value) -> Option<String> {
    match schema
        .get("x-kubernetes-list-type")
        .and_then(Value::as_str)?
    {
        "map" => {
            let keys: Vec<String> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().map(|k| code(&plain(k))).collect())
                .unwrap_or_default();
            Some(format!(
                "a map keyed by {}: one entry per key, merged by it",
                keys.join(", ")
            ))
        }
        "set" => Some("a set: each value at most once".to_owned()),
        _ => None,
    }
}

/// A CEL rule and what the API server answers when it fails.
struct Rule {
    rule: String,
    message: Message,
}

enum Message {
    Fixed(String),
    Expression(String),
    None,
}

fn rules(schema: &Value) -> Vec<Rule> {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    let s = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_owned);
                    Rule {
                        rule: s("rule").unwrap_or_default(),
                        message: match (s("messageExpression"), s("message")) {
                            (Some(e), _) => Message::Expression(e),
                            (None, Some(m)) => Message::Fixed(m),
                            (None, None) => Message::None,
                        },
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn plain(v: &Value) -> String {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}

/// Inline code that survives backticks in `s`.
fn code(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if longest > 0 || s.starts_with('`') || s.ends_with('`') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// Prose from the schema as Markdown: `<` and `*` outside code spans are
/// escaped, so that `buildpolicy-<name>` is not taken for an HTML tag.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_code = false;
    for c in s.chars() {
        match c {
            '`' => in_code = !in_code,
            '<' | '*' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A table cell: no pipes, no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn title(field: &Field) -> String {
    if field.path.is_empty() {
        "(the object)".to_owned()
    } else {
        code(&field.path)
    }
}

fn required_word(field: &Field) -> &'static str {
    match field.required {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    }
}

fn render(crd: &Value) -> String {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let group = spec["group"].as_str().expect("spec.group");
    let kind = names["kind"].as_str().expect("spec.names.kind");
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "# {kind} API reference").unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "<!-- Generated by hack/generate.sh (cargo run -q -p buildpolicy-api --bin crddoc) from the CRD schema: do not edit. -->"
    )
    .unwrap();
    writeln!(w).unwrap();
    let list = |key: &str| -> String {
        names[key]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|s| code(&plain(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    writeln!(w, "| | |\n|---|---|").unwrap();
    writeln!(w, "| group | {} |", code(group)).unwrap();
    writeln!(w, "| kind | {} |", code(kind)).unwrap();
    writeln!(
        w,
        "| plural / singular | {} / {} |",
        code(&plain(&names["plural"])),
        code(&plain(&names["singular"]))
    )
    .unwrap();
    writeln!(w, "| short names | {} |", list("shortNames")).unwrap();
    writeln!(w, "| categories | {} |", list("categories")).unwrap();
    writeln!(w, "| scope | {} |", plain(&spec["scope"])).unwrap();
    writeln!(w).unwrap();
    writeln!(
        w,
        "Besides the fields below, every object has `apiVersion`, `kind` and `metadata`. \
         `metadata.name` names everything the policy generates (see the rule on the object)."
    )
    .unwrap();

    for version in spec["versions"].as_array().expect("spec.versions") {
        let v = version["name"].as_str().expect("version name");
        let schema = &version["schema"]["openAPIV3Schema"];
        writeln!(w).unwrap();
        writeln!(w, "## `{group}/{v}`").unwrap();
        writeln!(w).unwrap();
        let mut fields = Vec::new();
        collect(String::new(), schema, None, &mut fields);

        writeln!(w, "### Fields").unwrap();
        writeln!(w).unwrap();
        writeln!(
            w,
            "\"Required\" is relative to the enclosing object; `[]` stands for each item of a list."
        )
        .unwrap();
        writeln!(w).unwrap();
        writeln!(w, "| field | type | required | limits | CEL rules |").unwrap();
        writeln!(w, "|---|---|---|---|---|").unwrap();
        for f in &fields {
            writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                title(f),
                cell(&type_of(f.schema)),
                required_word(f),
                cell(&limits(f.schema).join("; ")),
                match rules(f.schema).len() {
                    0 => String::new(),
                    n => n.to_string(),
                }
            )
            .unwrap();
        }

        for f in &fields {
            writeln!(w).unwrap();
            writeln!(w, "#### {}", title(f)).unwrap();
            writeln!(w).unwrap();
            if let Some(d) = f.schema.get("description").and_then(Value::as_str) {
                writeln!(w, "{}", text(d.trim())).unwrap();
                writeln!(w).unwrap();
            }
            writeln!(w, "- Type: {}", type_of(f.schema)).unwrap();
            if f.required.is_some() {
                writeln!(w, "- Required: {}", required_word(f)).unwrap();
            }
            if f.schema.get("nullable").and_then(Value::as_bool) == Some(true) {
                writeln!(w, "- May be `null`.").unwrap();
            }
            let limits = limits(f.schema);
            if !limits.is_empty() {
                writeln!(w, "- Limits: {}", limits.join("; ")).unwrap();
            }
            if let Some(list) = list_type(f.schema) {
                writeln!(w, "- List: {list}").unwrap();
            }
            let rules = rules(f.schema);
            if !rules.is_empty() {
                writeln!(
                    w,
                    "- Validation (CEL, checked by the API server; the controller checks the same rules again):"
                )
                .unwrap();
                for r in rules {
                    writeln!(w, "  - rule {}", code(&r.rule)).unwrap();
                    match r.message {
                        Message::Fixed(m) => {
                            writeln!(w, "    - when it fails: \"{}\"", text(&m)).unwrap()
                        }
                        Message::Expression(e) => writeln!(
                            w,
                            "    - when it fails, the message is the CEL expression {}",
                            code(&e)
                        )
                        .unwrap(),
                        Message::None => {
                            writeln!(w, "    - when it fails: the API server's default message")
                                .unwrap()
                        }
                    }
                }
            }
        }

        if let Some(columns) = version["additionalPrinterColumns"].as_array() {
            writeln!(w).unwrap();
            writeln!(w, "### Printer columns").unwrap();
            writeln!(w).unwrap();
            writeln!(
                w,
                "What `kubectl get buildpolicies` shows; columns of priority 1 only with `-o wide`."
            )
            .unwrap();
            writeln!(w).unwrap();
            writeln!(w, "| column | JSONPath | type | priority | description |").unwrap();
            writeln!(w, "|---|---|---|---|---|").unwrap();
            for c in columns {
                writeln!(
                    w,
                    "| {} | {} | {} | {} | {} |",
                    plain(&c["name"]),
                    cell(&code(&plain(&c["jsonPath"]))),
                    plain(&c["type"]),
                    c["priority"].as_i64().unwrap_or(0),
                    cell(c["description"].as_str().unwrap_or_default()),
                )
                .unwrap();
            }
        }
    }
    writeln!(w).unwrap();
    out.push_str(CONDITIONS);
    out
}

/// Every condition type and reason the API defines must be explained in
/// [`CONDITIONS`]: renaming or adding one without documenting it fails here.
fn check_template() {
    let types = [
        conditions::READY,
        conditions::SCC_READY,
        conditions::RBAC_READY,
        conditions::TASKS_PINNED,
        conditions::PREEMPTION_SAFE,
        conditions::TASKS_ADMISSIBLE,
        conditions::STALLED,
        conditions::RECONCILING,
    ];
    let reasons = [
        reason::RECONCILED,
        reason::INVALID_SPEC,
        reason::NAMESPACE_NOT_FOUND,
        reason::SERVICE_ACCOUNT_NOT_FOUND,
        reason::TASK_NOT_FOUND,
        reason::TASK_CONFLICT,
        reason::SCC_CONFLICT,
        reason::CAPABILITY_NOT_ALLOWED,
        reason::NAMESPACE_NOT_ALLOWED,
        reason::USER_NAMESPACE_REQUIRED,
        reason::UNSUPPORTED_BY_CLUSTER,
        reason::APPLY_FAILED,
        reason::WAITING,
    ];
    // The Reasons table says which condition each reason sets; it must agree
    // with the operator's own rule.
    for name in reasons.iter().skip(1) {
        let kind = if conditions::needs_a_person(name) {
            "`Stalled`"
        } else {
            "`Reconciling`"
        };
        let row = CONDITIONS
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("crddoc: no row for reason `{name}`"));
        assert!(
            row.contains(&format!("| {kind} |")),
            "crddoc: the row of `{name}` does not say {kind}: {row}"
        );
    }
    for name in types.iter().chain(reasons.iter()) {
        assert!(
            CONDITIONS.contains(&format!("| `{name}` |")),
            "crddoc: the CONDITIONS template does not explain `{name}`"
        );
    }
}

/// Hand-written: what the conditions and reasons mean and what to do.
const CONDITIONS: &str = r#"## Status conditions

`status.conditions` holds standard `metav1.Condition`s, one per type (a list
map keyed by `type`). Each carries `observedGeneration` (the
`metadata.generation` it describes), a CamelCase `reason` that tools may match
on, and a one-line `message` that names what is wrong and how to fix it.
`lastTransitionTime` changes only when `status` changes. A condition whose
`observedGeneration` is below `metadata.generation` describes an older spec:
the operator has not acted on the latest one yet.

| type | `True` means | affects `Ready` |
|---|---|---|
| `Ready` | Everything the policy grants is in place: the SCC, the Role and RoleBinding, and the pin on every listed Task. When `False`, its reason and message are those of the first part that is not ready, in the order `SCCReady`, `RBACReady`, `TasksPinned`. | is the summary |
| `SCCReady` | The generated SecurityContextConstraints `status.sccName` exists with exactly the wanted fields (drift is reverted). | yes |
| `RBACReady` | The Role and RoleBinding in `spec.namespace` let exactly `system:serviceaccount:<namespace>:<serviceAccountName>` `use` the SCC, and that service account exists. | yes |
| `TasksPinned` | Every Task in `spec.tasks` carries `openshift.io/required-scc: <status.sccName>`; `status.pinnedTasks` lists them. | yes |
| `PreemptionSafe` | Advisory, set once the SCC exists: pods of the service account that are *not* pinned would not be admitted under the generated SCC ahead of the SCC they get without it (reason `SortsAfterDefault`; `False` with reason `Preempts` names the pods it would capture). | no |
| `TasksAdmissible` | Advisory, set once Tasks are pinned: every step of the pinned Tasks would pass SCC admission under the generated SCC (reason `Admissible`; `False` with reason `NotAdmissible` names the steps that would be refused; `False` with reason `BuildahLacksCapabilities` when they would be admitted but a step that runs `buildah bud` or `buildah build` lacks what Buildah needs in that container: the capabilities Buildah hands a `RUN` process (the fix names the `--cap-drop` flags, or the capability), `SETGID` for `RUN`, `SETUID` for `RUN` after `USER`, `SETFCAP` for a base image whose files carry capabilities in HostUserNamespace, `SYS_ADMIN` and `SYS_CHROOT` for any build; measured on a node in `docs/capabilities.md`). | no |
| `Confined` | Advisory, set once the SCC exists: the policy's entry in the admission rules is in force (reason `Enforced`; the rules are a ValidatingAdmissionPolicy and binding `buildpolicy.dev-confinement-NN` shared by the policies of one of 16 shards, matching requests of the policies' namespaces only, `failurePolicy: Fail`, no parameter resource; the message names it): the SCC is admitted only for pods that the pipeline controller (ceiling `confinement.pipelineControllers`) creates for the granted Tasks; a TaskRun labelled `tekton.dev/task: <listed Task>` must run it by `spec.taskRef.name`; a TaskRun as the build service account (or naming none) must reference a Task of the namespace by name (no resolver, `taskSpec` or bundle); and, unless the ceiling's `confinement.guardTaskEdits` is `false`, creating a listed Task or changing its `spec` is refused but for `confinement.taskEditors` and `confinement.taskEditorGroups`. `False`: `WarnOnly` (ceiling `confinement.mode: Warn`: admitted with a warning and an audit annotation), `ConfinementOff` (`mode: Off`: no rules), `ConfinementUnsupported` (the API server has no ValidatingAdmissionPolicy, before Kubernetes 1.30 / OpenShift 4.17), `ApplyFailed`. | no |
| `Stalled` | [kstatus](https://github.com/kubernetes-sigs/cli-utils/blob/master/pkg/kstatus/README.md): present only while `Ready` is `False` for a reason that needs a person (the table below), with `Ready`'s reason and message. Flux, kpt and cli-utils report the policy `Failed`. | mirrors it |
| `Reconciling` | kstatus: present only while `Ready` is `False` for a reason the operator clears by itself (it waits for an object to appear, or retries a failed write), with `Ready`'s reason and message. kstatus tools report the policy `InProgress`. | mirrors it |
| `BuildsAdmitted` | Advisory, set once a TaskRun of a listed Task had an outcome: the pod of the newest such TaskRun of each listed Task was admitted (reason `PodsAdmitted`, naming the TaskRuns). `False` with reason `PodRefused`: Tekton failed a TaskRun because the API server refused its pod (`PodAdmissionFailed`); the message names the TaskRun and quotes OpenShift's refusal on one line, with the fix when it is a missing `hostUsers: false`. A later admitted run of that Task clears it. Read from the TaskRuns that carry the policy's label, which Tekton copies from the pinned Task. | no |

When the policy is refused (`InvalidSpec`, `NamespaceNotAllowed`,
`ServiceAccountNotAllowed`, `CapabilityNotAllowed`, `UserNamespaceRequired`,
`UnsupportedByCluster`, `TaskDigestRequired`), `Ready`, `SCCReady`, `RBACReady` and `TasksPinned` are
all `False` with the same reason and message, `status.sccName` is unset,
nothing is granted, and anything granted earlier is revoked.

### Reasons

Reasons that need a person to change the policy, the ceiling or another
object set `Stalled`; the others clear by themselves (the operator watches
for the missing object, or retries the write) and set `Reconciling`. Argo CD
health checks map `Stalled` to `Degraded` and `Reconciling` to `Progressing`
(see [argocd.md](argocd.md)); Flux and kpt read them directly (see
[flux.md](flux.md)).

| reason | on conditions | sets | meaning and what to do |
|---|---|---|---|
| `Reconciled` | all (status `True`) | — | The part is in place. |
| `InvalidSpec` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | The spec breaks one of the schema rules above, which the controller re-checks because the CRD in a cluster may be older or edited. Fix the spec as the message says. |
| `NamespaceNotAllowed` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | `spec.namespace` matches the ceiling's `protectedNamespaces` (by default `default`, `kube-*`, `openshift-*`, and always the operator's own namespace). Run builds in an application namespace. |
| `ServiceAccountNotAllowed` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | `spec.serviceAccountName` is `default`, which every pod in the namespace that names no service account runs as. Create a dedicated service account and name it, or have a cluster admin set `allowDefaultServiceAccount: true` in the ceiling. |
| `CapabilityNotAllowed` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | `spec.capabilities` asks for more than the ceiling's `allowedCapabilities`. Remove the capability, or have a cluster admin raise the ceiling. Lowering the ceiling revokes the grants of policies that are now over it. |
| `UserNamespaceRequired` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | The ceiling's `userNamespaceRequiredFor` names a capability the policy asks for, and `spec.isolation` is `HostUserNamespace`. Set `spec.isolation` to `PodUserNamespace` or `CRIOUserNamespace`, or remove the capability (see [user-namespaces.md](user-namespaces.md)). |
| `UnsupportedByCluster` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | The policy needs an SCC field that the cluster's OpenShift does not have: the operator reads the SCC schema from the CRD `securitycontextconstraints.security.openshift.io`. Today this is `spec.isolation: PodUserNamespace` where the schema has no `userNamespaceLevel` (OpenShift before pod user-namespace support, e.g. the Default feature set of 4.18). Upgrade the cluster, or use `HostUserNamespace` or `CRIOUserNamespace`. The operator watches the CRD: after an upgrade the policy is granted without a restart. |
| `SCCConflict` | Ready, SCCReady | `Stalled` | An SCC named `buildpolicy-<name>` exists and is not owned by this policy. It is left unchanged and nothing is granted. Rename the policy or remove that SCC. |
| `TaskDigestRequired` | Ready, SCCReady, RBACReady, TasksPinned | `Stalled` | The ceiling's `confinement.requireTaskDigests` is `true` and `spec.taskDigests` has no digest for a listed Task. Add the digest `buildpolicy-operator check --task <file>` prints for the reviewed Task file. |
| `TaskContentChanged` | Ready, TasksPinned | `Stalled` | A listed Task's live `spec` has another digest than `spec.taskDigests` reviewed. The message names the Task, both digests and who last changed its `spec` (the field manager of its newest managedFields entry that owns `spec`). The Task is unpinned and its pods are refused until it is restored to the reviewed content or the digest is updated; the grant then returns by itself. |
| `TaskConflict` | Ready, TasksPinned | `Stalled` | A listed Task is already pinned to another SCC (by another policy, or by hand) and is left unchanged. Remove the other pin or drop the Task from this policy. |
| `ApplyFailed` | Ready, SCCReady, RBACReady, TasksPinned | `Reconciling` | A write to the API server failed; the message carries the error. The operator retries by itself, so it is `Reconciling`, not `Stalled`; a reason that stays means something keeps refusing the write (the operator's RBAC, an admission webhook, a quota) and needs a person: a GitOps tool waiting on the policy times out with this message. |
| `NamespaceNotFound` | Ready, RBACReady, TasksPinned | `Reconciling` | `spec.namespace` does not exist. The SCC is in place; the Role, RoleBinding and pins follow as soon as the namespace is created. |
| `ServiceAccountNotFound` | Ready, RBACReady | `Reconciling` | The Role and RoleBinding are in place and name the service account, which does not exist yet. Create it (or fix `spec.serviceAccountName`). |
| `TaskNotFound` | Ready, TasksPinned | `Reconciling` | A listed Task does not exist in `spec.namespace`. It is pinned as soon as it is created. |
| `Waiting` | Ready, SCCReady, RBACReady, TasksPinned | `Reconciling` | One part waits for another: the Role, RoleBinding and pins wait for the SCC. Normally seen only for a moment. |

Each reconcile that does something new records one Event on the policy,
not one per object: what it granted (`SCCApplied`, `RBACApplied`,
`TaskPinned`), repaired (`DriftCorrected`), revoked (`Revoked`), `Ready`
changing (reason = the condition's reason) and a newly refused build
(`PodRefused`, with the condition's message), joined in one note (at most
1 KiB, saying how many parts were left out). A repair or a refusal leads and
makes it a Warning; otherwise a change of `Ready` leads. A new policy
records one Event: `kubectl describe buildpolicy <name>`.
"#;

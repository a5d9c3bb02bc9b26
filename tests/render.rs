//! `buildpolicy-operator render` prints what the operator will create: for
//! the ModelCar sample, every field it prints is what the operator then
//! stores on a real API server, and the server stores nothing else but its
//! own bookkeeping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use buildpolicy_api::BuildPolicy;
use buildpolicy_test_support::operator::{Operator, SCOPE_LABEL};
use buildpolicy_test_support::process::operator_binary;
use buildpolicy_test_support::scene::{is_ready, modelcar_scene};
use buildpolicy_test_support::{
    TEST_LABEL, kubectl, repo_root, unique_name, wait_for, with_temp_ns,
};
use k8s_openapi::serde::Deserialize;
use kube::{Api, ResourceExt};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

const SAMPLE: &str = "config/samples/modelcar-build.yaml";
const SAMPLE_NAME: &str = "modelcar-build";
const SAMPLE_NAMESPACE: &str = "private-ai-demo";

/// Metadata the API server fills in on every object; render cannot know it.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
];

/// Fields the server stores although render does not print them: defaults
/// of the CRD's schema. `userNamespaceLevel` defaults to `AllowHostLevel`
/// in OpenShift's SCC CRD; render leaves it unset (the drift check knows,
/// crates/policy/src/drift.rs), so a reviewer of render's output does not
/// see it.
const SERVER_DEFAULTS: &[(&str, &str, &str)] = &[(
    "SecurityContextConstraints",
    ".userNamespaceLevel",
    "\"AllowHostLevel\"",
)];

/// `buildpolicy-operator render -f <file>`, as YAML documents.
async fn render(file: &Path) -> Vec<Value> {
    let binary = tokio::task::spawn_blocking(operator_binary)
        .await
        .expect("building the operator");
    let output = Command::new(&binary)
        .arg("render")
        .arg("-f")
        .arg(file)
        .output()
        .expect("running buildpolicy-operator render");
    assert!(
        output.status.success(),
        "render -f {} failed ({}): {}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("render prints UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("render prints YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The live object, as the server serves it (every field, not just the
/// ones our Rust types know).
fn live(resource: &str, name: &str, namespace: Option<&str>) -> Value {
    let mut get = kubectl();
    get.args(["get", resource, name, "-o", "json"]);
    if let Some(ns) = namespace {
        get.args(["-n", ns]);
    }
    let output = get.output().expect("running kubectl get");
    assert!(
        output.status.success(),
        "kubectl get {resource} {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}

/// Every field of `rendered` has the same value in `live` (a null field is
/// an absent one); differences are added to `diffs` with their path.
fn compare_rendered(path: &str, rendered: &Value, live: Option<&Value>, diffs: &mut Vec<String>) {
    match (rendered, live) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Object(fields), Some(Value::Object(live_fields))) => {
            for (key, value) in fields {
                compare_rendered(&format!("{path}.{key}"), value, live_fields.get(key), diffs);
            }
        }
        (Value::Array(items), Some(Value::Array(live_items)))
            if items.len() == live_items.len() =>
        {
            for (i, (item, live_item)) in items.iter().zip(live_items).enumerate() {
                compare_rendered(&format!("{path}[{i}]"), item, Some(live_item), diffs);
            }
        }
        (rendered, Some(live)) if rendered == live => {}
        (rendered, live) => diffs.push(format!("{path}: rendered {rendered}, live {live:?}")),
    }
}

/// The fields of `live` that `rendered` does not have, other than the
/// server's metadata and the ownerReferences (checked on their own).
fn extra_fields(path: &str, rendered: Option<&Value>, live: &Value, extras: &mut Vec<String>) {
    let Value::Object(live_fields) = live else {
        return;
    };
    for (key, value) in live_fields {
        let here = format!("{path}.{key}");
        if here == ".metadata.ownerReferences"
            || (path == ".metadata" && SERVER_METADATA.contains(&key.as_str()))
        {
            continue;
        }
        match rendered.and_then(|r| r.get(key)) {
            // Stored as null, printed as null or not at all: the same.
            None | Some(Value::Null) if value.is_null() => {}
            None | Some(Value::Null) => extras.push(format!("{here}: {value}")),
            Some(inner) => extra_fields(&here, Some(inner), value, extras),
        }
    }
}

fn resource_of(kind: &str) -> &'static str {
    match kind {
        "SecurityContextConstraints" => "securitycontextconstraints.security.openshift.io",
        "Role" => "roles.rbac.authorization.k8s.io",
        "RoleBinding" => "rolebindings.rbac.authorization.k8s.io",
        "Task" => "tasks.tekton.dev",
        other => panic!("render printed an unexpected kind {other}"),
    }
}

/// The sample, renamed (BuildPolicies are cluster-scoped, and parallel
/// tests and repeated runs share the cluster), moved to `ns`, and labelled
/// for this test's operator. The labels of a policy do not reach what it
/// renders.
fn sample_for(ns: &str, name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join(SAMPLE)).expect("reading the sample");
    let mut policy: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).expect("the sample is YAML");
    policy["metadata"]["name"] = name.into();
    policy["metadata"]["labels"] = serde_yaml_ng::to_value(
        [(SCOPE_LABEL, ns), (TEST_LABEL, ns)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )
    .unwrap();
    policy["spec"]["namespace"] = ns.into();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, serde_yaml_ng::to_string(&policy).unwrap()).expect("writing the policy");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn render_prints_exactly_what_the_operator_stores_for_the_modelcar_sample() {
    with_temp_ns(|client, ns| async move {
        modelcar_scene(&client, &ns).await;
        let name = unique_name(SAMPLE_NAME);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = sample_for(&ns, &name, &dir);

        // The moved sample renders as the sample does, but for its name and namespace.
        let rendered = render(&file).await;
        let sample = serde_json::to_string(&render(&repo_root().join(SAMPLE)).await)
            .unwrap()
            .replace(SAMPLE_NAME, &name)
            .replace(SAMPLE_NAMESPACE, &ns);
        assert_eq!(
            serde_json::to_string(&rendered).unwrap(),
            sample,
            "the moved sample renders differently from the sample"
        );
        let kinds: Vec<&str> = rendered.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["SecurityContextConstraints", "Role", "RoleBinding", "Task"]
        );

        let operator = Operator::start(&client, &ns).await;
        let apply = kubectl()
            .args(["apply", "-f"])
            .arg(&file)
            .output()
            .expect("running kubectl apply");
        assert!(
            apply.status.success(),
            "kubectl apply -f {}: {}",
            file.display(),
            String::from_utf8_lossy(&apply.stderr)
        );
        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            is_ready,
        )
        .await;
        let uid = policy.uid().expect("a stored policy has a uid");

        let mut diffs = Vec::new();
        for doc in &rendered {
            let kind = doc["kind"].as_str().unwrap();
            let object = doc["metadata"]["name"].as_str().unwrap();
            let namespace = doc["metadata"]["namespace"].as_str();
            let live = live(resource_of(kind), object, namespace);
            compare_rendered(kind, doc, Some(&live), &mut diffs);
            if kind == "Task" {
                // The pin is a few fields of someone else's object: the rest
                // of the Task is theirs, and stays as they wrote it.
                assert_eq!(
                    live["metadata"]["annotations"]["team.example.com/owner"], "ai-platform",
                    "{live}"
                );
                assert_eq!(
                    live["metadata"]["labels"]["app.kubernetes.io/part-of"], "modelcar",
                    "{live}"
                );
                assert!(live["metadata"].get("ownerReferences").is_none(), "{live}");
                continue;
            }
            let mut extras = Vec::new();
            extra_fields("", Some(doc), &live, &mut extras);
            extras.retain(|extra| {
                !SERVER_DEFAULTS
                    .iter()
                    .any(|(k, path, value)| *k == kind && *extra == format!("{path}: {value}"))
            });
            assert!(
                extras.is_empty(),
                "{kind} {object} has fields that render does not print:\n{}",
                extras.join("\n")
            );
            // render has no ownerReference: offline, there is no policy uid
            // to point at. The operator's is render's plus that uid.
            assert!(doc["metadata"].get("ownerReferences").is_none(), "{doc}");
            assert_eq!(
                live["metadata"]["ownerReferences"],
                serde_json::json!([{
                    "apiVersion": "buildpolicy.dev/v1alpha1",
                    "kind": "BuildPolicy",
                    "name": name,
                    "uid": uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]),
                "{kind} {object}"
            );
        }
        assert!(
            diffs.is_empty(),
            "render printed fields the operator did not store as printed:\n{}",
            diffs.join("\n")
        );

        operator.delete_policies_and_stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

#[test]
fn the_comparison_reports_changed_and_extra_fields_only() {
    let rendered = serde_json::json!({
        "kind": "Role",
        "metadata": {"name": "a", "labels": {"x": "1"}},
        "rules": [{"verbs": ["use"]}],
        "priority": null,
    });
    let live = serde_json::json!({
        "kind": "Role",
        "metadata": {"name": "a", "uid": "u", "resourceVersion": "1", "labels": {"x": "2"}},
        "rules": [{"verbs": ["use", "get"]}],
        "extra": true,
        "nothing": null,
    });
    let mut diffs = Vec::new();
    compare_rendered("Role", &rendered, Some(&live), &mut diffs);
    assert_eq!(
        diffs,
        [
            r#"Role.metadata.labels.x: rendered "1", live Some(String("2"))"#,
            r#"Role.rules[0].verbs: rendered ["use"], live Some(Array [String("use"), String("get")])"#,
        ]
    );
    let mut extras = Vec::new();
    extra_fields("", Some(&rendered), &live, &mut extras);
    assert_eq!(extras, [".extra: true"]);
}

/// `check --task FILE` prints the digest a policy's `spec.taskDigests`
/// carries for the Task in FILE (here checked against `sha256sum` of the
/// Task's spec written out by hand in canonical form: keys sorted, no
/// spaces, the parameter's defaulted type filled in), and refuses a policy
/// that reviewed other content.
#[test]
fn check_prints_a_task_files_digest_and_refuses_a_policy_that_reviewed_another() {
    let dir = std::env::temp_dir().join(unique_name("task-digest"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let task = dir.join("task.yaml");
    std::fs::write(
        &task,
        "apiVersion: tekton.dev/v1\nkind: Task\nmetadata:\n  name: build\nspec:\n  steps:\n    - name: build\n      image: buildah\n      script: buildah bud .\n  params:\n    - name: IMAGE\n",
    )
    .expect("writing the Task file");
    // printf '%s' '{"params":[{"name":"IMAGE","type":"string"}],"steps":[{"image":"buildah","name":"build","script":"buildah bud ."}]}' | sha256sum
    let digest = "sha256:7f79f8c0b92ad6864586cf3684b35b50a31910e83abf198e47b7af948a5cdcfc";
    let binary = operator_binary();
    let check = |args: &[&str]| {
        let out = Command::new(&binary)
            .arg("check")
            .args(args)
            .output()
            .expect("running buildpolicy-operator check");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let task_arg = task.to_string_lossy().into_owned();
    let (code, out) = check(&["--task", &task_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("Task build ({task_arg}): spec digest {digest}")),
        "{out}"
    );

    let policy = |reviewed: &str| {
        let path = dir.join("policy.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: buildpolicy.dev/v1alpha1\nkind: BuildPolicy\nmetadata:\n  name: p\nspec:\n  namespace: builds\n  serviceAccountName: builder\n  capabilities: [SETUID]\n  tasks: [build]\n  taskDigests:\n    build: {reviewed}\n"
            ),
        )
        .expect("writing the policy");
        path.to_string_lossy().into_owned()
    };
    let other = format!("sha256:{}", "0".repeat(64));
    let (code, out) = check(&["-f", &policy(&other), "--task", &task_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("spec.taskDigests.build is {other}")) && out.contains(digest),
        "{out}"
    );
    let (code, out) = check(&["-f", &policy(digest), "--task", &task_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("BuildPolicy p: ok"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

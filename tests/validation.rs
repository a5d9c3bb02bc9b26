//! The API server and the controller judge a BuildPolicy alike.
//!
//! The CRD's schema and CEL rules reject a bad policy at `kubectl apply`,
//! with a message that names the fix; `buildpolicy_policy::validate` re-checks
//! every policy in the controller, because a CRD can be old or edited by hand.
//! Each case below goes to the real API server (server-side dry run, so
//! nothing is stored and no namespace is needed) and through `validate`
//! under a ceiling that allows every capability and protects no namespace,
//! so only the schema rules are compared.

use std::io::Write;
use std::process::Stdio;

use buildpolicy_api::BuildPolicy;
use buildpolicy_api::capability::KNOWN_CAPABILITIES;
use buildpolicy_api::conditions::reason;
use buildpolicy_policy::ceiling::DEFAULT_ALLOWED_CAPABILITIES;
use buildpolicy_policy::{Ceiling, validate};
use buildpolicy_test_support::{client, kubectl, strings, unique_name};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Which path a case takes to the API server: `kubectl apply` is what the
/// issue and the platform team use; the client is what GitOps controllers
/// and the operator use. Both must get the same answer.
#[derive(Clone, Copy, Debug)]
enum Submit {
    Kubectl,
    Client,
}

/// What a judge said about a policy.
#[derive(Debug)]
enum Verdict {
    Accepted,
    Rejected(String),
}

struct Case {
    what: &'static str,
    submit: Submit,
    manifest: Value,
    /// Fragment of the API server's message (for rejected cases).
    server_says: &'static str,
    /// Fragment of `validate`'s message, or of the deserialisation error
    /// when the policy cannot even be read (for rejected cases).
    offline_says: &'static str,
}

/// The ModelCar sample policy, under a unique name, after `edit`.
fn policy(edit: impl FnOnce(&mut Value)) -> Value {
    let mut manifest = json!({
        "apiVersion": buildpolicy_api::policy::API_VERSION,
        "kind": buildpolicy_api::policy::KIND,
        "metadata": { "name": unique_name("bp-validation") },
        "spec": {
            "namespace": "private-ai-demo",
            "serviceAccountName": "model-build-sa",
            "capabilities": ["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"],
            "tasks": ["build-and-push-v2"],
        }
    });
    edit(&mut manifest);
    manifest
}

fn with_spec(field: &'static str, value: Value) -> impl FnOnce(&mut Value) {
    move |manifest| manifest["spec"][field] = value
}

fn with_name(name: String) -> impl FnOnce(&mut Value) {
    move |manifest| manifest["metadata"]["name"] = name.into()
}

/// A unique policy name padded with `x` to exactly `len` characters.
fn name_of_length(len: usize) -> String {
    let mut name = unique_name("bp-validation");
    name.extend(std::iter::repeat_n('x', len - name.len()));
    name
}

/// `count` distinct, valid Task names.
fn task_names(count: usize) -> Value {
    json!(
        (1..=count)
            .map(|i| format!("build-step-{i}"))
            .collect::<Vec<_>>()
    )
}

/// A DNS subdomain of `total` characters whose dot-separated labels are at
/// most 63 characters each (`aaa…a.bbb…b.…`).
fn subdomain_of_length(total: usize) -> String {
    let mut name = String::new();
    for letter in ('a'..='z').cycle() {
        let label = (total - name.len()).min(63);
        name.extend(std::iter::repeat_n(letter, label));
        if name.len() == total {
            return name;
        }
        // The dot must leave room for a non-empty label after it.
        assert!(
            total - name.len() >= 2,
            "no subdomain of {total} characters this way"
        );
        name.push('.');
    }
    unreachable!("a cycle never ends")
}

/// Allows every capability and protects no namespace: only schema rules bite.
fn schema_only_ceiling() -> Ceiling {
    Ceiling {
        allowed_capabilities: strings(KNOWN_CAPABILITIES).into_iter().collect(),
        protected_namespaces: Vec::new(),
        user_namespace_required_for: Default::default(),
        allow_default_service_account: false,
        confinement: Default::default(),
    }
}

/// What the API server says, on a server-side dry run.
///
/// # Panics
///
/// When the server fails the request for a reason other than validation
/// (unreachable, forbidden, conflict): that is not a verdict on the policy.
async fn server_verdict(client: &Client, submit: Submit, manifest: &Value) -> Verdict {
    match submit {
        Submit::Client => {
            let api: Api<DynamicObject> =
                Api::all_with(client.clone(), &ApiResource::erase::<BuildPolicy>(&()));
            let object: DynamicObject =
                serde_json::from_value(manifest.clone()).expect("a manifest is a DynamicObject");
            let params = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            match api.create(&params, &object).await {
                Ok(_) => Verdict::Accepted,
                Err(kube::Error::Api(status)) if status.code == 422 => {
                    Verdict::Rejected(status.message)
                }
                Err(e) => panic!("dry-run create failed for a reason other than validation: {e}"),
            }
        }
        Submit::Kubectl => {
            let body = serde_json::to_vec(manifest).expect("a manifest serialises");
            let output = tokio::task::spawn_blocking(move || {
                let mut child = kubectl()
                    .args(["apply", "--dry-run=server", "-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("kubectl runs");
                child
                    .stdin
                    .take()
                    .expect("stdin is piped")
                    .write_all(&body)
                    .expect("kubectl reads the manifest");
                child.wait_with_output().expect("kubectl finishes")
            })
            .await
            .expect("the kubectl task does not panic");
            if output.status.success() {
                return Verdict::Accepted;
            }
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(
                stderr.contains("is invalid"),
                "kubectl apply failed for a reason other than validation: {stderr}"
            );
            Verdict::Rejected(stderr)
        }
    }
}

/// What the controller's re-validation says. A manifest that does not even
/// deserialise is rejected too: the controller's guarded watch never
/// reconciles it.
fn offline_verdict(manifest: &Value) -> Verdict {
    let policy: BuildPolicy = match serde_json::from_value(manifest.clone()) {
        Ok(policy) => policy,
        Err(e) => return Verdict::Rejected(format!("does not deserialise: {e}")),
    };
    match validate(policy.name(), &policy.spec, &schema_only_ceiling()) {
        Ok(()) => Verdict::Accepted,
        Err(rejection) => {
            assert_eq!(
                rejection.reason,
                reason::INVALID_SPEC,
                "the schema-only ceiling refuses nothing: {rejection}"
            );
            Verdict::Rejected(rejection.message)
        }
    }
}

fn invalid_cases() -> Vec<Case> {
    let all_capabilities_and_one_more = {
        let mut caps = strings(KNOWN_CAPABILITIES);
        caps.push("SETUID".into());
        json!(caps)
    };
    let case = |what, submit, manifest, server_says, offline_says| Case {
        what,
        submit,
        manifest,
        server_says,
        offline_says,
    };
    use Submit::{Client, Kubectl};
    vec![
        case(
            "CAP_-prefixed capability",
            Kubectl,
            policy(with_spec(
                "capabilities",
                json!(["SETUID", "CAP_SYS_ADMIN"]),
            )),
            "write SYS_ADMIN instead of CAP_SYS_ADMIN",
            "write SYS_ADMIN instead of CAP_SYS_ADMIN",
        ),
        case(
            "ALL",
            Kubectl,
            policy(with_spec("capabilities", json!(["ALL"]))),
            "ALL and * are refused: list each capability the build needs",
            "ALL and * are refused: list each capability the build needs",
        ),
        case(
            "*",
            Client,
            policy(with_spec("capabilities", json!(["SETUID", "*"]))),
            "ALL and * are refused: list each capability the build needs",
            "ALL and * are refused: list each capability the build needs",
        ),
        case(
            "lower-case capability",
            Kubectl,
            policy(with_spec("capabilities", json!(["sys_admin"]))),
            "unknown capability sys_admin: write SYS_ADMIN (capability names are upper case, without CAP_)",
            "unknown capability sys_admin: write SYS_ADMIN (capability names are upper case, without CAP_)",
        ),
        case(
            "lower-case capability with the CAP_ prefix",
            Kubectl,
            policy(with_spec("capabilities", json!(["cap_sys_module"]))),
            "unknown capability cap_sys_module: write SYS_MODULE (capability names are upper case, without CAP_)",
            "unknown capability cap_sys_module: write SYS_MODULE (capability names are upper case, without CAP_)",
        ),
        case(
            "unknown capability",
            Client,
            policy(with_spec("capabilities", json!(["SETUID", "FLY"]))),
            "unknown capability FLY",
            "unknown capability FLY",
        ),
        case(
            "capability longer than any Linux capability",
            Client,
            policy(with_spec("capabilities", json!(["A".repeat(33)]))),
            "spec.capabilities[0]: Too long: may not be more than 32 bytes",
            "unknown capability AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ),
        case(
            "duplicate capability",
            Client,
            policy(with_spec(
                "capabilities",
                json!(["SETUID", "SYS_ADMIN", "SETUID"]),
            )),
            "each capability may appear once: remove the repeated SETUID",
            "remove the repeated SETUID",
        ),
        case(
            "empty capabilities",
            Kubectl,
            policy(with_spec("capabilities", json!([]))),
            "list at least one capability, e.g. [SETUID, SETGID]",
            "must list at least one capability, e.g. [SETUID, SETGID]",
        ),
        case(
            "missing capabilities field",
            Kubectl,
            policy(|p| {
                p["spec"]
                    .as_object_mut()
                    .expect("spec is an object")
                    .remove("capabilities");
            }),
            "spec.capabilities: Required value",
            "missing field `capabilities`",
        ),
        case(
            "more than 41 capabilities",
            Client,
            policy(with_spec("capabilities", all_capabilities_and_one_more)),
            "spec.capabilities: Too many: 42: must have at most 41 items",
            "spec.capabilities lists 42 entries; at most 41 are allowed",
        ),
        case(
            "empty tasks",
            Kubectl,
            policy(with_spec("tasks", json!([]))),
            "name at least one Tekton Task to pin",
            "must name at least one Tekton Task to pin",
        ),
        case(
            "duplicate task",
            Client,
            policy(with_spec(
                "tasks",
                json!(["build-and-push-v2", "lint", "build-and-push-v2"]),
            )),
            "each Task may appear once: remove the repeated build-and-push-v2",
            "each Task may appear once; remove the repeated build-and-push-v2",
        ),
        case(
            "invalid task name",
            Client,
            policy(with_spec("tasks", json!(["Build_And_Push"]))),
            "'Build_And_Push' is not a Task name: use lower-case letters, digits, - and .",
            "each entry must be a Task name: lower-case letters, digits, '-' and '.', e.g. build-and-push-v2 (not [\"Build_And_Push\"])",
        ),
        case(
            "more than 32 tasks",
            Client,
            policy(with_spec("tasks", task_names(33))),
            "spec.tasks: Too many: 33: must have at most 32 items",
            "spec.tasks lists 33 Tasks; at most 32 are allowed",
        ),
        case(
            "upper-case namespace",
            Kubectl,
            policy(with_spec("namespace", json!("Private-AI-Demo"))),
            "spec.namespace must be a namespace name: a DNS label of at most 63",
            "spec.namespace \"Private-AI-Demo\" must be a namespace name",
        ),
        case(
            "namespace longer than 63 characters",
            Client,
            policy(with_spec("namespace", json!("n".repeat(64)))),
            "spec.namespace: Too long: may not be more than 63 bytes",
            "must be a namespace name: a DNS label of at most 63",
        ),
        case(
            "namespace with dots",
            Client,
            policy(with_spec("namespace", json!("private.ai.demo"))),
            "spec.namespace must be a namespace name",
            "spec.namespace \"private.ai.demo\" must be a namespace name",
        ),
        case(
            "namespace with a trailing newline",
            Client,
            policy(with_spec("namespace", json!("private-ai-demo\n"))),
            "spec.namespace must be a namespace name",
            "must be a namespace name",
        ),
        case(
            "empty namespace",
            Client,
            policy(with_spec("namespace", json!(""))),
            "spec.namespace must be a namespace name",
            "spec.namespace \"\" must be a namespace name",
        ),
        case(
            "upper-case service account name with an underscore",
            Kubectl,
            policy(with_spec("serviceAccountName", json!("Model_Build_SA"))),
            "spec.serviceAccountName must be a service account name",
            "spec.serviceAccountName \"Model_Build_SA\" must be a service account name",
        ),
        case(
            "service account name starting with '-'",
            Client,
            policy(with_spec("serviceAccountName", json!("-build-sa"))),
            "spec.serviceAccountName must be a service account name",
            "must be a service account name",
        ),
        case(
            "service account name with an empty label",
            Client,
            policy(with_spec("serviceAccountName", json!("build..sa"))),
            "spec.serviceAccountName must be a service account name",
            "must be a service account name",
        ),
        case(
            "service account name longer than 253 characters",
            Client,
            policy(with_spec(
                "serviceAccountName",
                json!(subdomain_of_length(254)),
            )),
            "spec.serviceAccountName: Too long: may not be more than 253 bytes",
            "must be a service account name",
        ),
        case(
            "policy name longer than 63 characters",
            Kubectl,
            policy(with_name(name_of_length(64))),
            "metadata.name must be a DNS label of at most 63 characters",
            "must be a DNS label of at most 63 characters",
        ),
        case(
            "policy name with dots",
            Client,
            policy(with_name(format!("{}.build", unique_name("bp-validation")))),
            "metadata.name must be a DNS label of at most 63 characters",
            "must be a DNS label of at most 63 characters",
        ),
        case(
            "upper-case policy name",
            Client,
            policy(with_name(unique_name("bp-validation").to_uppercase())),
            "metadata.name must be a DNS label of at most 63 characters",
            "must be a DNS label of at most 63 characters",
        ),
    ]
}

fn valid_cases() -> Vec<Case> {
    let case = |what, submit, manifest| Case {
        what,
        submit,
        manifest,
        server_says: "",
        offline_says: "",
    };
    use Submit::{Client, Kubectl};
    vec![
        case(
            "policy name of exactly 63 characters",
            Kubectl,
            policy(with_name(name_of_length(63))),
        ),
        case(
            "all five capabilities of the default ceiling",
            Client,
            policy(with_spec(
                "capabilities",
                json!(DEFAULT_ALLOWED_CAPABILITIES),
            )),
        ),
        case(
            "every Linux capability (41)",
            Client,
            policy(with_spec("capabilities", json!(KNOWN_CAPABILITIES))),
        ),
        case(
            "a single capability",
            Client,
            policy(with_spec("capabilities", json!(["SYS_CHROOT"]))),
        ),
        case(
            "service account name with dots",
            Kubectl,
            policy(with_spec("serviceAccountName", json!("build.bot.v2"))),
        ),
        case(
            "service account name of exactly 253 characters",
            Client,
            policy(with_spec(
                "serviceAccountName",
                json!(subdomain_of_length(253)),
            )),
        ),
        case(
            "namespace of exactly 63 characters",
            Client,
            policy(with_spec("namespace", json!("n".repeat(63)))),
        ),
        case(
            "namespace of digits only",
            Client,
            policy(with_spec("namespace", json!("2024"))),
        ),
        case(
            "exactly 32 tasks",
            Client,
            policy(with_spec("tasks", task_names(32))),
        ),
        case(
            "task names with dots",
            Kubectl,
            policy(with_spec(
                "tasks",
                json!(["build-and-push.v2", "buildah.0.1"]),
            )),
        ),
    ]
}

/// Runs every case through both judges and returns one line per
/// disagreement with the expectation.
async fn judge(cases: Vec<Case>, expect_rejection: bool) -> Vec<String> {
    let client = client().await;
    let mut failures = Vec::new();
    for case in cases {
        let Case {
            what,
            submit,
            manifest,
            server_says,
            offline_says,
        } = case;
        let server = server_verdict(&client, submit, &manifest).await;
        let offline = offline_verdict(&manifest);
        println!("{what} ({submit:?}):\n  server:  {server:?}\n  offline: {offline:?}");
        for (judge, verdict, fragment) in [
            ("API server", &server, server_says),
            ("validate()", &offline, offline_says),
        ] {
            match (verdict, expect_rejection) {
                (Verdict::Rejected(message), true) if message.contains(fragment) => {}
                (Verdict::Rejected(message), true) => failures.push(format!(
                    "{what}: {judge} rejected it, but its message lacks {fragment:?}: {message}"
                )),
                (Verdict::Accepted, true) => {
                    failures.push(format!("{what}: {judge} accepted it"));
                }
                (Verdict::Accepted, false) => {}
                (Verdict::Rejected(message), false) => {
                    failures.push(format!("{what}: {judge} rejected it: {message}"));
                }
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_validation_rejects_invalid_policies_with_a_message_naming_the_fix() {
    let failures = judge(invalid_cases(), true).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_validation_accepts_valid_edge_cases() {
    let failures = judge(valid_cases(), false).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Kubernetes names service accounts with `IsDNS1123Subdomain`, which limits
/// only the whole name (253), not each dot-separated label: a service
/// account `<64 letters>` exists, and the CRD accepts it. Regression test:
/// `validate` once limited every label to 63, so the controller refused, as
/// `InvalidSpec`, a policy the API server had stored. Same for Task names.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_validation_and_validate_agree_on_labels_longer_than_63_characters() {
    let long_label = "a".repeat(64);
    let cases = vec![
        Case {
            what: "service account name with a 64-character label",
            submit: Submit::Client,
            manifest: policy(with_spec("serviceAccountName", json!(long_label))),
            server_says: "",
            offline_says: "",
        },
        Case {
            what: "task name with a 64-character label",
            submit: Submit::Client,
            manifest: policy(with_spec("tasks", json!([format!("v2.{long_label}")]))),
            server_says: "",
            offline_says: "",
        },
    ];
    let failures = judge(cases, false).await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

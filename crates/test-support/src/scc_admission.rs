//! Asking OpenShift's SCC admission about pods.
//!
//! The local control plane runs OpenShift's SCC admission plugin as its pod
//! admission webhook (`hack/scc-admission`). What the tests of that
//! admission share: an identity that creates pods as a Tekton controller
//! does (it may create pods but `use` no SCC of its own), the pod Tekton
//! would create for a TaskRun of a Task, creating pods (mostly with
//! server-side dry-run) and telling OpenShift's refusal from any other
//! failure, and waiting until the webhook's SCC informer has seen an SCC a
//! test just created, changed or deleted (`/debug/sccs`), so that nothing
//! depends on timing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use buildpolicy_api::keys::ADMITTED_SCC_ANNOTATION;
use buildpolicy_api::{SecurityContextConstraints, Task};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Pod, SecurityContext};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::cluster::{client_with_token, kubeconfig_path};
use crate::names::unique_name;
use crate::operator::service_account_token;
use crate::scene::create_service_account;
use crate::wait::{eventually, wait_for_deletion};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The identity that creates TaskRun pods.
pub const TEKTON_SA: &str = "tekton-pipelines-controller";

/// What OpenShift's plugin says when no SCC admits a pod.
pub const NO_SCC: &str = "unable to validate against any security context constraint";

// ------------------------------------------------- the requesting user ----

/// A `tekton-pipelines-controller` service account in `ns` that may create
/// pods there and may `use` no SCC but those every authenticated user may
/// (restricted-v2, restricted-v3), and a client that authenticates as it.
/// The admin is in system:masters and may use every SCC: as the requesting
/// user it would make every pod admissible.
///
/// # Panics
///
/// When the objects cannot be created, or the service account may use
/// `privileged`, `anyuid` or `nonroot-v2`.
pub async fn tekton_controller(admin: &Client, ns: &str) -> Client {
    create_service_account(admin, ns, TEKTON_SA).await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "tekton-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]}]
    }))
    .expect("a Role");
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the Tekton controller's Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "tekton-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tekton-pods"},
        "subjects": [{"kind": "ServiceAccount", "name": TEKTON_SA, "namespace": ns}]
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the Tekton controller's RoleBinding");
    let user = service_account_user(ns, TEKTON_SA);
    eventually(
        "RBAC to let the Tekton controller create pods",
        TIMEOUT,
        || async {
            allowed(admin, &user, ns, "create", "", "pods", "")
                .await
                .then_some(())
        },
    )
    .await;
    for scc in ["privileged", "anyuid", "nonroot-v2"] {
        assert!(
            !may_use_scc(admin, &user, ns, scc).await,
            "the Tekton controller must not use SCC {scc} itself"
        );
    }
    client_with_token(&service_account_token(ns, TEKTON_SA).await).await
}

/// The user name of service account `name` in `ns`.
pub fn service_account_user(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

/// The groups the API server puts a service account of `ns` in.
pub fn service_account_groups(ns: &str) -> [String; 3] {
    [
        "system:serviceaccounts".to_owned(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".to_owned(),
    ]
}

/// Whether `user` (a service account, with its groups) may `verb` the
/// resource, as the API server's authorizer answers a SubjectAccessReview.
///
/// # Panics
///
/// When the server does not answer.
pub async fn allowed(
    admin: &Client,
    user: &str,
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
) -> bool {
    let sa_namespace = user.split(':').nth(2).unwrap_or_default();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(service_account_groups(sa_namespace).to_vec()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(ns.to_owned()),
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(admin.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("the API server answers a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// Whether RBAC lets `user` (a service account) `use` SCC `scc` for pods in
/// `ns`: the question SCC admission asks the authorizer.
pub async fn may_use_scc(admin: &Client, user: &str, ns: &str, scc: &str) -> bool {
    allowed(
        admin,
        user,
        ns,
        "use",
        "security.openshift.io",
        "securitycontextconstraints",
        scc,
    )
    .await
}

// ------------------------------------------------------- Tekton's pods ----

/// The pod Tekton creates for a TaskRun of `task`: the Task's annotations
/// (all but `kubectl.kubernetes.io/last-applied-configuration`, which is
/// how the `openshift.io/required-scc` pin reaches the pod), its labels,
/// one `step-<name>` container per step with the step's image,
/// securityContext (`stepTemplate`'s merged in, the step's own fields
/// winning) and volume mounts, one `sidecar-<name>` container per sidecar,
/// the `prepare` init container, the Task's volumes and Tekton's internal
/// ones (empty dirs and the downward API volume of the readiness signal).
///
/// # Panics
///
/// When the Task has no steps, or a step no name.
pub fn taskrun_pod(task: &Task, service_account: &str) -> Pod {
    let task_name = task.name_any();
    let run = unique_name(&format!("{task_name}-run"));
    let mut annotations: BTreeMap<String, String> = task.annotations().clone();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.insert("pipeline.tekton.dev/release".into(), "v1.15.0".into());
    let mut labels: BTreeMap<String, String> = task.labels().clone();
    labels.extend([
        (
            "app.kubernetes.io/managed-by".into(),
            "tekton-pipelines".into(),
        ),
        ("tekton.dev/task".into(), task_name.clone()),
        ("tekton.dev/taskRun".into(), run.clone()),
    ]);
    let spec = task.spec.clone().unwrap_or_default();
    let internal_mounts = json!([
        {"name": "tekton-internal-bin", "mountPath": "/tekton/bin", "readOnly": true},
        {"name": "tekton-internal-scripts", "mountPath": "/tekton/scripts", "readOnly": true},
        {"name": "tekton-internal-workspace", "mountPath": "/workspace"},
        {"name": "tekton-internal-downward", "mountPath": "/tekton/downward", "readOnly": true},
    ]);
    let template = spec.pointer("/stepTemplate/securityContext");
    let mut containers: Vec<Value> = spec["steps"]
        .as_array()
        .expect("a Task has steps")
        .iter()
        .map(|step| {
            let mut mounts = internal_mounts.as_array().cloned().unwrap_or_default();
            mounts.extend(step["volumeMounts"].as_array().cloned().unwrap_or_default());
            let mut container = json!({
                "name": format!("step-{}", step["name"].as_str().expect("a named step")),
                "image": step["image"],
                "command": ["/tekton/bin/entrypoint"],
                "volumeMounts": mounts,
            });
            if let Some(sc) = with_step_template(template, step.get("securityContext")) {
                container["securityContext"] = sc;
            }
            container
        })
        .collect();
    containers.extend(
        spec["sidecars"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sidecar| {
                let mut container = json!({
                    "name": format!("sidecar-{}", sidecar["name"].as_str().expect("a named sidecar")),
                    "image": sidecar["image"],
                });
                if let Some(sc) = sidecar.get("securityContext").filter(|v| !v.is_null()) {
                    container["securityContext"] = sc.clone();
                }
                container
            }),
    );
    let mut volumes = vec![
        json!({"name": "tekton-internal-bin", "emptyDir": {}}),
        json!({"name": "tekton-internal-scripts", "emptyDir": {}}),
        json!({"name": "tekton-internal-workspace", "emptyDir": {}}),
        json!({"name": "tekton-internal-downward", "downwardAPI": {"items": [
            {"path": "ready", "fieldRef": {"fieldPath": "metadata.annotations['tekton.dev/ready']"}}
        ]}}),
    ];
    volumes.extend(spec["volumes"].as_array().cloned().unwrap_or_default());
    serde_json::from_value(json!({
        "metadata": {"name": format!("{run}-pod"), "annotations": annotations, "labels": labels},
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "initContainers": [{
                "name": "prepare",
                "image": "ghcr.io/tektoncd/pipeline/entrypoint:v1.15.0",
                "command": ["/ko-app/entrypoint", "init", "/ko-app/entrypoint", "/tekton/bin/entrypoint"],
                "volumeMounts": [{"name": "tekton-internal-bin", "mountPath": "/tekton/bin"}],
            }],
            "containers": containers,
            "volumes": volumes,
        }
    }))
    .expect("a Pod")
}

/// A step's securityContext with the Task's `stepTemplate.securityContext`
/// merged in, field by field on the typed struct (Tekton's strategic merge
/// of the step onto the template): the step's fields win, the template's
/// fill the fields the step leaves unset, `capabilities`, `seLinuxOptions`
/// and `seccompProfile` merge the same way one level down, and lists
/// (`capabilities.add`, `capabilities.drop`) are taken whole.
fn with_step_template(template: Option<&Value>, step: Option<&Value>) -> Option<Value> {
    let parse = |v: Option<&Value>| -> Option<SecurityContext> {
        v.filter(|v| !v.is_null()).map(|v| {
            serde_json::from_value(v.clone()).expect("a securityContext in a generated Task")
        })
    };
    let merged = match (parse(template), parse(step)) {
        (None, None) => return None,
        (Some(only), None) | (None, Some(only)) => only,
        (Some(base), Some(own)) => SecurityContext {
            allow_privilege_escalation: own
                .allow_privilege_escalation
                .or(base.allow_privilege_escalation),
            app_armor_profile: own.app_armor_profile.or(base.app_armor_profile),
            capabilities: match (base.capabilities, own.capabilities) {
                (Some(b), Some(o)) => Some(k8s_openapi::api::core::v1::Capabilities {
                    add: o.add.or(b.add),
                    drop: o.drop.or(b.drop),
                }),
                (b, o) => o.or(b),
            },
            privileged: own.privileged.or(base.privileged),
            proc_mount: own.proc_mount.or(base.proc_mount),
            read_only_root_filesystem: own
                .read_only_root_filesystem
                .or(base.read_only_root_filesystem),
            run_as_group: own.run_as_group.or(base.run_as_group),
            run_as_non_root: own.run_as_non_root.or(base.run_as_non_root),
            run_as_user: own.run_as_user.or(base.run_as_user),
            se_linux_options: match (base.se_linux_options, own.se_linux_options) {
                (Some(b), Some(o)) => Some(k8s_openapi::api::core::v1::SELinuxOptions {
                    level: o.level.or(b.level),
                    role: o.role.or(b.role),
                    type_: o.type_.or(b.type_),
                    user: o.user.or(b.user),
                }),
                (b, o) => o.or(b),
            },
            seccomp_profile: match (base.seccomp_profile, own.seccomp_profile) {
                (Some(b), Some(o)) => Some(k8s_openapi::api::core::v1::SeccompProfile {
                    localhost_profile: o.localhost_profile.or(b.localhost_profile),
                    type_: o.type_,
                }),
                (b, o) => o.or(b),
            },
            windows_options: own.windows_options.or(base.windows_options),
        },
    };
    Some(serde_json::to_value(merged).expect("JSON"))
}

// ------------------------------------------------------- creating pods ----

/// Why the API server did not create a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotCreated {
    /// 403: refused by admission (OpenShift's SCC admission, here), with
    /// the API server's message.
    Forbidden(String),
    /// 422: the pod as admission left it fails the API server's
    /// validation, with the message.
    Invalid(String),
}

/// Creates `pod` in `ns` as `client`. A refusal (403) is `Err` with the API
/// server's message; any other failure fails the test.
///
/// # Panics
///
/// When the server answers with anything but the created pod or a 403.
pub async fn create_pod(
    client: &Client,
    ns: &str,
    pod: &Pod,
    dry_run: bool,
) -> Result<Pod, String> {
    match try_create_pod(client, ns, pod, dry_run).await {
        Ok(created) => Ok(created),
        Err(NotCreated::Forbidden(message)) => Err(message),
        Err(NotCreated::Invalid(message)) => {
            panic!("creating pod {ns}/{}: invalid: {message}", pod.name_any())
        }
    }
}

/// Creates `pod` in `ns` as `client`: the created pod, or why the API
/// server did not create it (403 or 422).
///
/// # Panics
///
/// On any other failure.
pub async fn try_create_pod(
    client: &Client,
    ns: &str,
    pod: &Pod,
    dry_run: bool,
) -> Result<Pod, NotCreated> {
    let params = PostParams {
        dry_run,
        ..PostParams::default()
    };
    match Api::<Pod>::namespaced(client.clone(), ns)
        .create(&params, pod)
        .await
    {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            Err(NotCreated::Forbidden(status.message))
        }
        Err(kube::Error::Api(status)) if status.code == 422 => {
            Err(NotCreated::Invalid(status.message))
        }
        Err(e) => panic!("creating pod {ns}/{}: {e}", pod.name_any()),
    }
}

/// The SCC an admitted pod was given (`openshift.io/scc`).
///
/// # Panics
///
/// When the pod does not carry it.
pub fn admitted_scc(pod: &Pod) -> String {
    pod.annotations()
        .get(ADMITTED_SCC_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| panic!("an admitted pod carries {ADMITTED_SCC_ANNOTATION}: {pod:?}"))
}

// -------------------------------------------- the webhook's SCC informer ----

/// Where the local cluster's scc-admission listens, with its CA; `None`
/// against a cluster named by `BUILDPOLICY_TEST_KUBECONFIG` (OpenShift
/// itself, whose in-process informer cannot be asked).
fn webhook_endpoint() -> Option<(String, PathBuf)> {
    let state = kubeconfig_path().parent()?.to_path_buf();
    let port_file = state.join("run/scc-admission.port");
    match std::fs::read_to_string(&port_file) {
        Ok(port) => Some((
            format!("https://127.0.0.1:{}/debug/sccs", port.trim()),
            state.join("run/pki/ca.crt"),
        )),
        Err(_) if std::env::var_os("BUILDPOLICY_TEST_KUBECONFIG").is_some() => None,
        Err(e) => panic!(
            "{} is missing ({e}): the local cluster runs without OpenShift's SCC admission; \
             start it with hack/local-cluster.sh up (not --no-scc-admission)",
            port_file.display()
        ),
    }
}

/// The SCCs (name → resourceVersion) the webhook's informer holds.
async fn webhook_sccs(url: &str, ca: &PathBuf) -> BTreeMap<String, String> {
    let out = tokio::process::Command::new("curl")
        .args(["-fsS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .await
        .expect("running curl");
    assert!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON from /debug/sccs");
    body["sccs"]
        .as_array()
        .expect("an sccs list")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["resourceVersion"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until the webhook holds SCC `name` at the version the API server has.
///
/// # Panics
///
/// When it does not within 30 s.
pub async fn webhook_holds(admin: &Client, name: &str) {
    webhook_holds_all(admin, &[name]).await;
}

/// Waits until the webhook holds every SCC in `names`, each at the version
/// the API server has.
///
/// # Panics
///
/// When it does not within 30 s.
pub async fn webhook_holds_all(admin: &Client, names: &[&str]) {
    let Some((url, ca)) = webhook_endpoint() else {
        return;
    };
    let sccs = Api::<SecurityContextConstraints>::all(admin.clone());
    eventually(
        &format!("scc-admission's informer to hold SCCs {names:?}"),
        TIMEOUT,
        || async {
            let held = webhook_sccs(&url, &ca).await;
            for name in names {
                let current = sccs.get(name).await.ok()?.resource_version()?;
                if held.get(*name) != Some(&current) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// The resourceVersion at which the webhook's informer holds SCC `name`;
/// `None` when it does not hold it, or there is no webhook to ask.
pub async fn webhook_version(name: &str) -> Option<String> {
    let (url, ca) = webhook_endpoint()?;
    webhook_sccs(&url, &ca).await.remove(name)
}

/// Waits, for at most `timeout`, until the webhook's informer holds SCC
/// `name` at another version than `seen`, or not at all; whether it did.
pub async fn webhook_moved_on(name: &str, seen: &str, timeout: Duration) -> bool {
    let Some((url, ca)) = webhook_endpoint() else {
        return false;
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        if webhook_sccs(&url, &ca).await.get(name).map(String::as_str) != Some(seen) {
            return true;
        }
    }
    false
}

/// Waits until SCC `name` is gone from the API server and from the webhook.
///
/// # Panics
///
/// When it is still there after 30 s.
pub async fn webhook_forgets(admin: &Client, name: &str) {
    wait_for_deletion(
        &Api::<SecurityContextConstraints>::all(admin.clone()),
        name,
        TIMEOUT,
    )
    .await;
    let Some((url, ca)) = webhook_endpoint() else {
        return;
    };
    eventually(
        &format!("scc-admission's informer to drop SCC {name}"),
        TIMEOUT,
        || async { (!webhook_sccs(&url, &ca).await.contains_key(name)).then_some(()) },
    )
    .await;
}

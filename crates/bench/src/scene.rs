//! The scene: N namespaces `bench-NNNN`, each with a service account and 5
//! Tasks, and N policies `bp-NNNN` that each pin one of them; and what the
//! operator's `render` prints for those policies, the baselines' objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use buildpolicy_api::keys::POLICY_LABEL;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_test_support::scene::BUILDAH_CAPABILITIES;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::json;

/// Tasks in each namespace; the policy pins one.
pub const TASKS_PER_NAMESPACE: usize = 5;
/// The Task each policy pins.
pub const PINNED_TASK: &str = "task-2";
/// The service account each policy grants to.
const SERVICE_ACCOUNT: &str = "builder";
/// Field manager of the scene's objects.
const SETUP_MANAGER: &str = "bench-setup";

/// How long kube-controller-manager gets to give every namespace its
/// `default` service account and CA ConfigMap.
const POPULATE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a request is retried while the server answers 429 or 503 (a
/// CRD's storage initialising, priority and fairness).
const BUSY_RETRY: Duration = Duration::from_secs(60);

pub fn namespace_name(i: usize) -> String {
    format!("bench-{i:04}")
}

pub fn policy_name(i: usize) -> String {
    format!("bp-{i:04}")
}

/// The N policies, as `kubectl apply -f` reads them.
pub fn policies_yaml(n: usize) -> String {
    let capabilities = BUILDAH_CAPABILITIES.join(", ");
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: {}\nkind: {}\nmetadata:\n  name: {}\n\
                 spec:\n  namespace: {}\n  serviceAccountName: {SERVICE_ACCOUNT}\n\
                 \x20 capabilities: [{capabilities}]\n  tasks: [{PINNED_TASK}]\n",
                BuildPolicy::api_version(&()),
                BuildPolicy::kind(&()),
                policy_name(i),
                namespace_name(i)
            )
        })
        .collect()
}

/// Creates the namespaces, then their service accounts and Tasks, by
/// server-side apply, `workers` requests at a time; then waits until
/// kube-controller-manager has populated every namespace, so that its
/// backlog does not compete with the first run. Returns the seconds it
/// took.
///
/// # Errors
///
/// When the server refuses an object, or kube-controller-manager has not
/// caught up within five minutes.
pub async fn set_up(client: &Client, n: usize, workers: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let apply = PatchParams::apply(SETUP_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let (namespaces, apply) = (&namespaces, &apply);
            async move {
                let name = namespace_name(i);
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                retrying(&format!("applying Namespace {name}"), || async {
                    namespaces.patch(&name, apply, &Patch::Apply(&body)).await
                })
                .await
            }
        })
        .buffer_unordered(workers)
        .try_collect::<Vec<_>>()
        .await?;
    stream::iter(0..n)
        .map(|i| namespace_contents(client, namespace_name(i), &apply))
        .buffer_unordered(workers)
        .try_collect::<Vec<_>>()
        .await?;
    wait_until_populated(client, n).await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn namespace_contents(
    client: &Client,
    ns: String,
    apply: &PatchParams,
) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns},
    });
    retrying(
        &format!("applying ServiceAccount {ns}/{SERVICE_ACCOUNT}"),
        || async {
            accounts
                .patch(SERVICE_ACCOUNT, apply, &Patch::Apply(&account))
                .await
        },
    )
    .await?;
    let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
    for t in 0..TASKS_PER_NAMESPACE {
        let name = format!("task-{t}");
        let task = json!({
            "apiVersion": Task::api_version(&()), "kind": Task::kind(&()),
            "metadata": {"name": name, "namespace": ns},
            "spec": {"steps": [{
                "name": "build", "image": "quay.io/buildah/stable:v1.38",
                "script": "buildah bud -t image .",
            }]},
        });
        retrying(&format!("applying Task {ns}/{name}"), || async {
            tasks.patch(&name, apply, &Patch::Apply(&task)).await
        })
        .await?;
    }
    Ok(())
}

/// Waits until every `bench-` namespace has the `default` service account
/// and the `kube-root-ca.crt` ConfigMap kube-controller-manager gives it.
async fn wait_until_populated(client: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + POPULATE_TIMEOUT;
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::all(client.clone());
    loop {
        let in_bench = |namespaces: Vec<Option<String>>| {
            namespaces
                .iter()
                .filter(|ns| ns.as_deref().is_some_and(|ns| ns.starts_with("bench-")))
                .count()
        };
        let default_accounts = accounts
            .list_metadata(&ListParams::default().fields("metadata.name=default"))
            .await
            .context("listing service accounts")?;
        let ca_maps = config_maps
            .list_metadata(&ListParams::default().fields("metadata.name=kube-root-ca.crt"))
            .await
            .context("listing ConfigMaps")?;
        let done = [
            in_bench(
                default_accounts
                    .items
                    .into_iter()
                    .map(|o| o.metadata.namespace)
                    .collect(),
            ),
            in_bench(
                ca_maps
                    .items
                    .into_iter()
                    .map(|o| o.metadata.namespace)
                    .collect(),
            ),
        ];
        if done.iter().all(|d| *d >= n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "kube-controller-manager has not populated the namespaces after {} s ({done:?} of {n})",
                POPULATE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs a request again while the server answers 429 or 503, for at most a
/// minute.
pub async fn retrying<T, F, Fut>(what: &str, request: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        match request().await {
            Err(kube::Error::Api(status))
                if matches!(status.code, 429 | 503) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            result => return result.with_context(|| what.to_owned()),
        }
    }
}

/// What `buildpolicy-operator render` printed, by policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The YAML documents of each policy (its SCC, Role, RoleBinding and
    /// Task pin), as printed.
    pub by_policy: BTreeMap<String, Vec<String>>,
    /// The SCC's `allowedCapabilities`: what drift repair restores.
    pub capabilities: Vec<String>,
}

impl Rendered {
    /// The documents of `policies`, as one file for `kubectl apply -f`.
    pub fn yaml<'a>(&self, policies: impl IntoIterator<Item = &'a String>) -> String {
        policies
            .into_iter()
            .filter_map(|p| self.by_policy.get(p))
            .flatten()
            .map(|doc| format!("---\n{doc}\n"))
            .collect()
    }
}

/// `buildpolicy-operator render -f <policies>`, grouped by policy.
///
/// # Errors
///
/// When the command fails or prints something else than four objects per
/// policy.
pub async fn render(operator: &Path, policies_file: &Path) -> anyhow::Result<Rendered> {
    let out = tokio::process::Command::new(operator)
        .arg("render")
        .arg("-f")
        .arg(policies_file)
        .output()
        .await
        .with_context(|| format!("running {} render", operator.display()))?;
    if !out.status.success() {
        bail!(
            "{} render -f {} failed ({}): {}",
            operator.display(),
            policies_file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    group_rendered(&String::from_utf8_lossy(&out.stdout))
}

/// Splits `render`'s output into documents and groups them by the
/// `buildpolicy.dev/policy` label every rendered object has.
fn group_rendered(output: &str) -> anyhow::Result<Rendered> {
    let mut by_policy: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut capabilities = None;
    for doc in split_documents(output) {
        let object: serde_json::Value = serde_yaml_ng::from_str(&doc)
            .with_context(|| format!("render printed a document that is no YAML object:\n{doc}"))?;
        let Some(policy) = object["metadata"]["labels"][POLICY_LABEL].as_str() else {
            bail!(
                "render printed a document without the {POLICY_LABEL} label:\n{}",
                doc.chars().take(400).collect::<String>()
            );
        };
        if capabilities.is_none() && object["kind"] == *SecurityContextConstraints::kind(&()) {
            capabilities = Some(
                object["allowedCapabilities"]
                    .as_array()
                    .map(|caps| {
                        caps.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            );
        }
        by_policy.entry(policy.to_owned()).or_default().push(doc);
    }
    let Some(first) = by_policy.values().next() else {
        bail!("render printed no objects");
    };
    let mut kinds: Vec<String> = first
        .iter()
        .filter_map(|doc| serde_yaml_ng::from_str::<serde_json::Value>(doc).ok())
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    let mut expected = [
        Role::kind(&()),
        RoleBinding::kind(&()),
        SecurityContextConstraints::kind(&()),
        Task::kind(&()),
    ];
    expected.sort();
    if kinds != expected {
        bail!(
            "render printed {kinds:?} for one policy; expected an SCC, a Role, a RoleBinding and a Task"
        );
    }
    Ok(Rendered {
        by_policy,
        capabilities: capabilities.unwrap_or_default(),
    })
}

/// The non-empty documents of a YAML stream, trimmed.
fn split_documents(output: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in output.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().expect("never empty");
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_numbered_with_their_namespaces() {
        let yaml = policies_yaml(2);
        assert!(yaml.starts_with(
            "---\napiVersion: buildpolicy.dev/v1alpha1\nkind: BuildPolicy\nmetadata:\n  name: bp-0000\n\
             spec:\n  namespace: bench-0000\n  serviceAccountName: builder\n\
             \x20 capabilities: [SETUID, SETGID, SYS_ADMIN, SYS_CHROOT, SETFCAP]\n  tasks: [task-2]\n---\n"
        ));
        let policies: Vec<BuildPolicy> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
            .collect();
        assert_eq!(policies.len(), 2);
        assert_eq!(policies[1].spec.namespace, "bench-0001");
    }

    const RENDERED: &str = "\
---
apiVersion: security.openshift.io/v1
kind: SecurityContextConstraints
metadata:
  name: buildpolicy-bp-0000
  labels:
    buildpolicy.dev/policy: bp-0000
allowedCapabilities:
- SETUID
- SYS_ADMIN
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  labels:
    buildpolicy.dev/policy: bp-0000
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  labels:
    buildpolicy.dev/policy: bp-0000
---
apiVersion: tekton.dev/v1
kind: Task
metadata:
  name: task-2
  labels:
    buildpolicy.dev/policy: bp-0000
";

    #[test]
    fn groups_what_render_prints_by_policy() {
        let rendered = group_rendered(RENDERED).unwrap();
        assert_eq!(rendered.capabilities, ["SETUID", "SYS_ADMIN"]);
        let docs = &rendered.by_policy["bp-0000"];
        assert_eq!(docs.len(), 4);
        assert!(docs[0].starts_with("apiVersion: security.openshift.io/v1\n"));
        assert!(docs[3].ends_with("buildpolicy.dev/policy: bp-0000"));
        let file = rendered.yaml([&"bp-0000".to_owned()]);
        assert!(file.starts_with("---\napiVersion: security.openshift.io/v1\n"));
        assert_eq!(file.matches("---\n").count(), 4);
    }

    #[test]
    fn refuses_an_unlabelled_or_incomplete_render() {
        let unlabelled = "---\nkind: Role\nmetadata:\n  name: x\n";
        assert!(
            group_rendered(unlabelled)
                .unwrap_err()
                .to_string()
                .contains("without the")
        );
        let incomplete = RENDERED
            .split("---\napiVersion: tekton.dev")
            .next()
            .unwrap();
        assert!(
            group_rendered(incomplete)
                .unwrap_err()
                .to_string()
                .contains("expected an SCC")
        );
    }
}

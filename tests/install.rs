//! What a platform team applies is valid: `manifests/install.yaml` passes
//! a server-side dry run on a real API server, and every manifest in
//! `manifests/` and `config/` validates against its schema with
//! kubeconform, strictly (no field the schema does not know).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use buildpolicy_test_support::schemas::{
    OBJECT_META, definitions, find_kind, from_crd, from_openapi, openapi_path, schema_file_name,
};
use buildpolicy_test_support::{client, kubectl, repo_root, unique_name};
use k8s_openapi::serde::Deserialize;
use serde_json::{Map, Value, json};

const BUNDLE: &str = "manifests/install.yaml";

/// Where `hack/tools/install.sh` builds kubeconform.
const KUBECONFORM: &str = "target/tools/bin/kubeconform";

/// Where `hack/tools/install.sh` puts the CRDs of the Prometheus Operator
/// (ServiceMonitor, PrometheusRule), which the local control plane does
/// not serve: the schemas of `config/prometheus`.
const FOREIGN_CRDS: &str = "target/tools/crds";

/// The directories whose manifests are validated.
const MANIFEST_DIRS: &[&str] = &["manifests", "config"];

/// The documents of a YAML stream, as JSON.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn run(command: &mut Command, stdin: Option<&str>) -> (bool, String, String) {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `kind.group/name` as `kubectl -o name` prints it.
fn kubectl_name(doc: &Value) -> String {
    let kind = doc["kind"].as_str().unwrap().to_lowercase();
    let name = doc["metadata"]["name"].as_str().unwrap();
    match doc["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// A server-side dry run creates nothing, so the Namespace the bundle
/// creates is not there for the namespaced objects after it, and the
/// server refuses them (`namespaces "buildpolicy-system" not found`); a
/// real `kubectl apply` creates the Namespace first. The Namespace is
/// therefore applied for real (it is the one the suite's operator
/// ServiceAccount lives in anyway) and the whole bundle, Namespace
/// included, is dry-run. `--force-conflicts`: on a cluster that the suite
/// and `hack/local-cluster.sh` have applied these objects to with their
/// own field managers, a changed field is a conflict of ownership, not an
/// invalid manifest.
#[tokio::test(flavor = "multi_thread")]
async fn the_install_bundle_passes_a_server_side_dry_run() {
    client().await;
    let path = repo_root().join(BUNDLE);
    let bundle = std::fs::read_to_string(&path).expect("reading the install bundle");
    let docs = documents(&bundle);
    let namespaces: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "Namespace")
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    assert_eq!(namespaces.len(), 1, "{BUNDLE} creates one Namespace");
    let (ok, _, stderr) = run(
        kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=integration-tests",
            "-f",
            "-",
        ]),
        Some(&namespaces.join("\n")),
    );
    assert!(ok, "applying the bundle's Namespace: {stderr}");

    let (ok, stdout, stderr) = run(
        kubectl()
            .args([
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "-o",
                "name",
                "-f",
            ])
            .arg(&path),
        None,
    );
    assert!(
        ok,
        "kubectl apply --server-side --dry-run=server -f {BUNDLE} failed:\n{stderr}{stdout}"
    );
    let applied: BTreeSet<&str> = stdout.lines().collect();
    for doc in &docs {
        let name = kubectl_name(doc);
        assert!(
            applied.contains(name.as_str()),
            "{name} was not dry-run applied:\n{stdout}"
        );
    }
    assert_eq!(applied.len(), docs.len(), "{stdout}");
}

/// kubeconform, built by `hack/tools/install.sh` (which `hack/test.sh`
/// runs): a test that needs it fails without it.
fn kubeconform() -> PathBuf {
    let path = repo_root().join(KUBECONFORM);
    assert!(
        path.is_file(),
        "{} is missing: hack/test.sh builds it (hack/tools/install.sh: go build from the \
         module in hack/tools); run hack/tools/install.sh",
        path.display()
    );
    path
}

/// The CRDs of the kinds we ship manifests of but do not define.
fn foreign_crds() -> Vec<Value> {
    let dir = repo_root().join(FOREIGN_CRDS);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): hack/test.sh fills it (hack/tools/install.sh copies the \
             Prometheus Operator's CRDs from the Go module pinned in hack/tools/crds/go.mod); \
             run hack/tools/install.sh",
            dir.display()
        )
    });
    let mut crds = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            crds.extend(documents(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    assert!(!crds.is_empty(), "{} holds no CRD", dir.display());
    crds
}

/// The manifests of `dir`, recursively: every YAML file but kustomize's.
fn manifest_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            manifest_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            files.push(path);
        }
    }
}

/// The OpenAPI v3 components the server serves for a group version.
fn openapi_components(api_version: &str) -> Option<Map<String, Value>> {
    let (ok, stdout, _) = run(
        kubectl().args([
            "get",
            "--raw",
            &format!("/openapi/v3/{}", openapi_path(api_version)),
        ]),
        None,
    );
    if !ok {
        return None;
    }
    let document: Value = serde_json::from_str(&stdout).expect("the OpenAPI document is JSON");
    document["components"]["schemas"].as_object().cloned()
}

/// Writes the schema of every kind in `kinds` to `dir`, named as
/// kubeconform looks them up: a custom resource's from the first of `crds`
/// that defines it (for BuildPolicy, the repository's CRD: what we ship,
/// not what the cluster has installed), every other kind from the server's
/// OpenAPI v3. Returns the kinds no source has a schema for.
fn write_schemas(
    dir: &Path,
    kinds: &BTreeSet<(String, String)>,
    crds: &[Value],
) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut documents: BTreeMap<String, Option<Map<String, Value>>> = BTreeMap::new();
    let mut components = |api_version: &str| {
        documents
            .entry(openapi_path(api_version))
            .or_insert_with(|| openapi_components(api_version))
            .clone()
    };
    let core = components("v1").expect("the server serves /openapi/v3/api/v1");
    let object_meta = definitions(&core, &[OBJECT_META]);

    let mut written = BTreeSet::new();
    for crd in crds {
        for (api_version, kind, schema) in from_crd(crd, Some(&object_meta)) {
            if written.contains(&(api_version.clone(), kind.clone())) {
                continue;
            }
            let file = dir.join(schema_file_name(&api_version, &kind));
            std::fs::write(&file, serde_json::to_vec_pretty(&schema).unwrap()).unwrap();
            written.insert((api_version, kind));
        }
    }
    let mut missing = Vec::new();
    for (api_version, kind) in kinds {
        if written.contains(&(api_version.clone(), kind.clone())) {
            continue;
        }
        let schema = components(api_version).and_then(|components| {
            find_kind(&components, api_version, kind).map(|name| from_openapi(&components, name))
        });
        match schema {
            Some(schema) => {
                let file = dir.join(schema_file_name(api_version, kind));
                std::fs::write(&file, serde_json::to_vec_pretty(&schema).unwrap()).unwrap();
            }
            None => missing.push((api_version.clone(), kind.clone())),
        }
    }
    missing
}

/// Runs kubeconform strictly on `files` with the schemas in `dir`, and
/// returns its per-resource results (`-output json -verbose`).
fn kubeconform_results(dir: &Path, files: &[PathBuf]) -> (bool, Vec<Value>, Value, String) {
    let (ok, stdout, stderr) = run(
        Command::new(kubeconform())
            .args(["-strict", "-summary", "-verbose", "-output", "json"])
            .args(["-kubernetes-version", "1.37.0"])
            .arg("-schema-location")
            .arg(format!(
                "{}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
                dir.display()
            ))
            .args(files),
        None,
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("kubeconform printed no JSON ({e}):\n{stdout}\n{stderr}"));
    let resources = report["resources"].as_array().cloned().unwrap_or_default();
    (ok, resources, report["summary"].clone(), stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_manifest_validates_against_its_schema_with_kubeconform() {
    client().await;
    let binary = kubeconform();
    let root = repo_root();
    let mut files = Vec::new();
    for dir in MANIFEST_DIRS {
        manifest_files(&root.join(dir), &mut files);
    }
    let mut kinds = BTreeSet::new();
    // Ours first: a kind's schema comes from the first CRD defining it.
    let mut crds = Vec::new();
    let mut count = 0;
    let mut other_files = Vec::new();
    files.retain(|file| {
        let docs = documents(&std::fs::read_to_string(file).unwrap());
        // Prometheus rule files and promtool's rule tests sit beside the
        // manifests; they are not Kubernetes objects (promtool checks them).
        if docs
            .iter()
            .all(|d| d.get("apiVersion").is_none() && d.get("kind").is_none())
        {
            other_files.push(file.clone());
            return false;
        }
        for doc in docs {
            let (api_version, kind) = (doc["apiVersion"].as_str(), doc["kind"].as_str());
            let (Some(api_version), Some(kind)) = (api_version, kind) else {
                panic!("{}: a document without apiVersion or kind", file.display());
            };
            kinds.insert((api_version.to_owned(), kind.to_owned()));
            if kind == "CustomResourceDefinition" {
                crds.push(doc.clone());
            }
            count += 1;
        }
        true
    });
    crds.extend(foreign_crds());
    if !other_files.is_empty() {
        println!("not Kubernetes manifests, not validated here: {other_files:?}");
    }
    assert!(
        kinds.contains(&("buildpolicy.dev/v1alpha1".into(), "BuildPolicy".into())),
        "no sample BuildPolicy found in {MANIFEST_DIRS:?}"
    );

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name("kubeconform"));
    let missing = write_schemas(&dir.join("schemas"), &kinds, &crds);
    assert!(
        missing.is_empty(),
        "no schema for {missing:?}: neither the API server's OpenAPI v3 nor a CRD in \
         {MANIFEST_DIRS:?} defines them"
    );

    let (ok, resources, summary, stderr) = kubeconform_results(&dir.join("schemas"), &files);
    let problems: Vec<&Value> = resources
        .iter()
        .filter(|r| r["status"] != "statusValid")
        .collect();
    assert!(
        ok && problems.is_empty(),
        "{} -strict found problems:\n{}\n{stderr}",
        binary.display(),
        serde_json::to_string_pretty(&problems).unwrap()
    );
    assert_eq!(
        summary,
        json!({"valid": count, "invalid": 0, "errors": 0, "skipped": 0}),
        "every document of {} files is validated",
        files.len()
    );
    println!(
        "kubeconform: {count} documents in {} files valid against {} schemas: {kinds:?}",
        files.len(),
        kinds.len()
    );

    // The schemas are strict enough to catch what a reviewer could miss:
    // a misspelt field, a wrong type, a label that is not a string.
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        r#"apiVersion: buildpolicy.dev/v1alpha1
kind: BuildPolicy
metadata: {name: misspelt}
spec: {namespace: ns, serviceAccountName: sa, capabilites: [SYS_ADMIN], tasks: [t]}
---
apiVersion: buildpolicy.dev/v1alpha1
kind: BuildPolicy
metadata: {name: bad-label, labels: {team: 7}}
spec: {namespace: ns, serviceAccountName: sa, capabilities: [SYS_ADMIN], tasks: [t]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: wrong-type}
spec:
  replicas: two
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: x, image: x}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: unknown-field}
rules: [{apiGroups: [""], resources: [pods], verbs: [get], resourceName: [x]}]
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: misspelt-endpoint}
spec:
  selector: {matchLabels: {app: x}}
  endpoints: [{port: http-metrics, intervall: 30s}]
"#,
    )
    .unwrap();
    let (ok, resources, _, stderr) = kubeconform_results(&dir.join("schemas"), &[broken]);
    assert!(
        !ok,
        "kubeconform accepted broken manifests: {resources:?} {stderr}"
    );
    let invalid: BTreeSet<&str> = resources
        .iter()
        .filter(|r| r["status"] == "statusInvalid")
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        invalid,
        BTreeSet::from([
            "misspelt",
            "bad-label",
            "wrong-type",
            "unknown-field",
            "misspelt-endpoint"
        ]),
        "{}",
        serde_json::to_string_pretty(&resources).unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The uninstall docs/install.md documents, on a cluster of its own (it
/// deletes the CRD): with a ModelCar policy granted and confined, (1)
/// delete every BuildPolicy and wait, (2) delete the install bundle, (3)
/// delete the shared admission policy. Nothing the operator made is left:
/// no SCC, Role, RoleBinding, admission policy or binding, pin, ClusterRole
/// or CRD.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_uninstall_leaves_nothing_behind() {
    use buildpolicy_api::BuildPolicy;
    use buildpolicy_api::keys::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    use buildpolicy_test_support::TempNamespace;
    use buildpolicy_test_support::operator::leftovers;
    use buildpolicy_test_support::private_cluster::PrivateCluster;
    use buildpolicy_test_support::process::OperatorProcess;
    use buildpolicy_test_support::scene::{
        create_policy, is_ready, modelcar_policy, modelcar_scene,
    };
    use buildpolicy_test_support::wait_for;
    use kube::Api;
    use std::time::Duration;

    let started = std::time::Instant::now();
    let scope = unique_name("uninstall");
    let cluster = PrivateCluster::start(&scope).await;
    let client = cluster.client().await;
    let install = repo_root().join(BUNDLE);
    cluster.apply("-f", BUNDLE);
    let ns = TempNamespace::create(&client).await;
    modelcar_scene(&client, ns.name()).await;
    let mut operator = OperatorProcess::builder(&scope)
        .kubeconfig(cluster.operator_kubeconfig().await)
        .start()
        .await;
    let name = unique_name("modelcar");
    let policy = create_policy(&client, &modelcar_policy(&scope, &name, ns.name())).await;
    let policies: Api<BuildPolicy> = Api::all(client.clone());
    wait_for(&policies, &name, Duration::from_secs(60), is_ready).await;
    let managed = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let admission_policies = |cluster: &PrivateCluster| {
        run(
            cluster.kubectl().args([
                "get",
                "validatingadmissionpolicies,validatingadmissionpolicybindings",
                "-l",
                &managed,
                "-o",
                "name",
            ]),
            None,
        )
        .1
    };
    assert!(
        !admission_policies(&cluster).is_empty(),
        "a confined policy has an admission policy and binding"
    );
    assert!(!leftovers(&client, &policy).await.is_empty());

    eprintln!("uninstall: step 1 at {:?}", started.elapsed());
    // 1. Every BuildPolicy, and wait: the operator revokes each grant.
    let (ok, _, stderr) = run(
        cluster.kubectl().args([
            "delete",
            "buildpolicies",
            "--all",
            "--wait=true",
            "--timeout=120s",
        ]),
        None,
    );
    assert!(ok, "deleting the BuildPolicies: {stderr}");
    assert_eq!(leftovers(&client, &policy).await, Vec::<String>::new());

    eprintln!("uninstall: step 2 at {:?}", started.elapsed());
    // 2. The operator: its Deployment, RBAC, namespace and the CRD.
    let (ok, _, stderr) = run(
        cluster
            .kubectl()
            .args(["delete", "--wait=true", "--timeout=120s", "-f"])
            .arg(&install),
        None,
    );
    assert!(ok, "deleting the install bundle: {stderr}");
    operator.terminate().await;

    eprintln!("uninstall: step 3 at {:?}", started.elapsed());
    // 3. The admission policy all policies shared.
    let (ok, _, stderr) = run(
        cluster
            .kubectl()
            .args(["delete", "validatingadmissionpolicies", "-l", &managed]),
        None,
    );
    assert!(ok, "deleting the admission policy: {stderr}");

    eprintln!("uninstall: checks at {:?}", started.elapsed());
    assert_eq!(admission_policies(&cluster), "");
    let (_, everything, _) = run(
        cluster.kubectl().args([
            "get",
            "securitycontextconstraints,clusterroles,clusterrolebindings,roles,rolebindings,tasks.tekton.dev",
            "-A",
            "-o",
            "json",
        ]),
        None,
    );
    let everything: Value = serde_json::from_str(&everything).expect("kubectl get -o json");
    for item in everything["items"].as_array().expect("items") {
        let text = item.to_string();
        assert!(
            !text.contains("buildpolicy"),
            "left after the uninstall: {} {}",
            item["kind"],
            item["metadata"]["name"]
        );
    }
    let (crd_left, _, _) = run(
        cluster
            .kubectl()
            .args(["get", "crd", "buildpolicies.buildpolicy.dev"]),
        None,
    );
    assert!(!crd_left, "the CRD is gone");
}

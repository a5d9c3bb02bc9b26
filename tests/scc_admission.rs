//! Proof against OpenShift's own SCC admission code.
//!
//! The local control plane runs OpenShift's SCC admission plugin
//! (`security.openshift.io/SecurityContextConstraint` from
//! openshift/apiserver-library-go, served by `hack/scc-admission` as the
//! pod admission webhook), so a pod is admitted here exactly as OpenShift
//! would admit it. These tests create the pods Tekton would create for the
//! ModelCar Tasks (the Task's annotations copied onto the pod, the build
//! service account, the steps' securityContexts of the sample Tasks), as a
//! Tekton controller that may create pods but `use` no SCC of its own, and
//! check the operator's promises where they end: which SCC each pod gets.
//!
//! Pods are created with server-side dry-run (admission runs, nothing is
//! stored) except the one real build pod. Before asking about an SCC the
//! operator just created or deleted, a test waits until the webhook's SCC
//! informer holds that version (`/debug/sccs`), so no assertion depends on
//! timing.

use std::collections::BTreeMap;
use std::time::Duration;

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{BuildPolicy, Task};
use buildpolicy_policy::Ceiling;
use buildpolicy_policy::ceiling::ConfinementMode;
use buildpolicy_test_support::operator::{Operator, test_ceiling};
use buildpolicy_test_support::scc_admission::{
    NO_SCC, admitted_scc, create_pod, taskrun_pod, tekton_controller, webhook_forgets,
    webhook_holds,
};
use buildpolicy_test_support::scene::{BUILDAH_CAPABILITIES, create_service_account, create_task};
use buildpolicy_test_support::{repo_root, unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const BUILD_SA: &str = "model-build-sa";
const BUILD_TASK: &str = "build-and-push-v2";
/// The ModelCar Tasks that need no privilege.
const UNPRIVILEGED_TASKS: [&str; 3] = ["download-model", "mirror-to-internal", "register-model"];
const BUILDAH: [&str; 5] = BUILDAH_CAPABILITIES;
/// What it says of an SCC that does not allow a privileged first container.
const PRIVILEGED_STEP: &str =
    ".containers[0].privileged: Invalid value: true: Privileged containers are not allowed";

// ------------------------------------------------------------ the scene ----

/// A namespace with the ModelCar build service account, the seed's build
/// Task (`fixture`, from the policy crate's fixtures) and the three
/// unprivileged Tasks, and a client of the Tekton controller.
struct Scene {
    admin: Client,
    tekton: Client,
    ns: String,
}

impl Scene {
    async fn new(admin: Client, ns: String, fixture: &str) -> Self {
        create_service_account(&admin, &ns, BUILD_SA).await;
        create_fixture_task(&admin, &ns, fixture).await;
        for task in UNPRIVILEGED_TASKS {
            create_task(&admin, &ns, task).await;
        }
        let tekton = tekton_controller(&admin, &ns).await;
        Self { admin, tekton, ns }
    }

    async fn task(&self, name: &str) -> Task {
        Api::<Task>::namespaced(self.admin.clone(), &self.ns)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Task {}/{name}: {e}", self.ns))
    }

    /// The pod of a new TaskRun of `task`, run by `service_account`.
    async fn pod(&self, task: &str, service_account: &str) -> Pod {
        taskrun_pod(&self.task(task).await, service_account)
    }

    /// Creates `pod` as the Tekton controller with server-side dry-run:
    /// the admitted pod, or OpenShift's refusal.
    async fn admit(&self, pod: &Pod) -> Result<Pod, String> {
        create_pod(&self.tekton, &self.ns, pod, true).await
    }

    /// The SCC OpenShift gives `pod`, or its refusal.
    async fn scc_of(&self, pod: &Pod) -> Result<String, String> {
        self.admit(pod)
            .await
            .map(|admitted| admitted_scc(&admitted))
    }

    /// A converged ModelCar policy pinning the build Task, with the webhook
    /// holding its SCC. Returns the operator and the SCC's name.
    async fn converged_policy(&self, prefix: &str) -> (Operator, String, String) {
        // The SCC layer alone: confinement (tests/confinement.rs) would
        // refuse pods that this file's stand-in Tekton controller creates.
        let op = Operator::start_with(&self.admin, &self.ns, confinement_off()).await;
        let name = unique_name(prefix);
        op.create(&op.policy(&name, &self.ns, BUILD_SA, &BUILDAH, &[BUILD_TASK]))
            .await;
        let policy = wait_for(
            &Api::<BuildPolicy>::all(self.admin.clone()),
            &name,
            TIMEOUT,
            |p: &BuildPolicy| {
                p.condition("Ready").is_some_and(|c| c.status == "True")
                    && p.status.as_ref().and_then(|s| s.observed_generation)
                        == p.metadata.generation
            },
        )
        .await;
        let scc = policy
            .status
            .and_then(|s| s.scc_name)
            .expect("a Ready policy names its SCC");
        assert_eq!(scc, format!("buildpolicy-{name}"));
        wait_for(
            &Api::<Task>::namespaced(self.admin.clone(), &self.ns),
            BUILD_TASK,
            TIMEOUT,
            |t: &Task| t.annotations().get(REQUIRED_SCC_ANNOTATION) == Some(&scc),
        )
        .await;
        webhook_holds(&self.admin, &scc).await;
        (op, name, scc)
    }
}

/// The default ceiling with confinement off.
fn confinement_off() -> Ceiling {
    let mut ceiling = test_ceiling();
    ceiling.confinement.mode = ConfinementMode::Off;
    ceiling
}

/// Creates a Task from `crates/policy/tests/fixtures/<fixture>` in `ns`.
async fn create_fixture_task(client: &Client, ns: &str, fixture: &str) {
    let path = repo_root()
        .join("crates/policy/tests/fixtures")
        .join(fixture);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut task: Task = serde_yaml_ng::from_str(&text).expect("a Task fixture");
    task.metadata.namespace = Some(ns.to_owned());
    Api::<Task>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &task)
        .await
        .unwrap_or_else(|e| panic!("creating Task {ns}/{}: {e}", task.name_any()));
}

// ------------------------------------------------------- Tekton's pods ----

/// `pod` with its `step-<step>` container's securityContext changed by `edit`.
fn with_step(mut pod: Pod, step: &str, edit: impl FnOnce(&mut Value)) -> Pod {
    let spec = pod.spec.as_mut().expect("a pod spec");
    let container = spec
        .containers
        .iter_mut()
        .find(|c| c.name == format!("step-{step}"))
        .unwrap_or_else(|| panic!("no step {step}"));
    let mut sc = serde_json::to_value(container.security_context.take()).expect("JSON");
    if sc.is_null() {
        sc = json!({});
    }
    edit(&mut sc);
    container.security_context = serde_json::from_value(sc).expect("a securityContext");
    pod
}

/// `pod` without the `openshift.io/required-scc` pin.
fn unpinned(mut pod: Pod) -> Pod {
    pod.annotations_mut().remove(REQUIRED_SCC_ANNOTATION);
    pod
}

/// `result` is OpenShift's refusal and its message contains every part.
#[track_caller]
fn assert_refused(result: Result<String, String>, what: &str, parts: &[&str]) {
    match result {
        Ok(scc) => panic!("{what}: admitted under SCC {scc}, expected a refusal"),
        Err(message) => {
            for part in parts {
                assert!(
                    message.contains(part),
                    "{what}: refusal lacks {part:?}: {message}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------- tests ----

/// The promise: the pinned build pod is admitted, and gets the generated
/// SCC with OpenShift's defaults filled in (the SELinux level of the
/// namespace, the SCC's required drops). Created for real, once.
#[tokio::test(flavor = "multi_thread")]
async fn the_pinned_build_pod_is_admitted_under_the_generated_scc() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(
            client.clone(),
            ns.clone(),
            "build-and-push-v2.capabilities.yaml",
        )
        .await;
        let build = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_refused(
            scene.scc_of(&build).await,
            "the build pod before any policy",
            &[NO_SCC],
        );

        let (op, _, scc) = scene.converged_policy("pinned").await;
        let build = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_eq!(
            build.annotations().get(REQUIRED_SCC_ANNOTATION),
            Some(&scc),
            "Tekton copies the pin from the Task"
        );
        let created = create_pod(&scene.tekton, &ns, &build, false)
            .await
            .unwrap_or_else(|message| panic!("the pinned build pod was refused: {message}"));
        assert_eq!(admitted_scc(&created), scc);

        // What is stored is what admission made of it.
        let stored = Api::<Pod>::namespaced(client.clone(), &ns)
            .get(&build.name_any())
            .await
            .expect("the build pod was stored");
        assert_eq!(admitted_scc(&stored), scc);
        let spec = stored.spec.expect("a pod spec");
        let mcs = Api::<Namespace>::all(client.clone())
            .get(&ns)
            .await
            .expect("the namespace")
            .annotations()
            .get("openshift.io/sa.scc.mcs")
            .cloned()
            .expect("the namespace got its MCS label");
        let level = spec
            .security_context
            .and_then(|sc| sc.se_linux_options)
            .and_then(|se| se.level);
        assert_eq!(
            level.as_deref(),
            Some(mcs.as_str()),
            "the SCC's SELinux MustRunAs level"
        );
        let step = spec
            .containers
            .iter()
            .find(|c| c.name == "step-build")
            .expect("the build step");
        let caps = step
            .security_context
            .as_ref()
            .and_then(|sc| sc.capabilities.clone())
            .expect("the build step keeps its capabilities");
        let mut added = caps.add.unwrap_or_default();
        added.sort();
        assert_eq!(
            added,
            ["SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"]
        );
        let dropped = caps.drop.unwrap_or_default();
        for cap in ["KILL", "MKNOD"] {
            assert!(
                dropped.iter().any(|d| d == cap),
                "the SCC's required drop {cap}: {dropped:?}"
            );
        }

        // The same pinned pod asking privileged instead has nowhere to go.
        let mut privileged = with_step(build, "build", |sc| sc["privileged"] = json!(true));
        privileged.metadata.name = Some(unique_name("build-privileged"));
        assert_refused(
            scene.scc_of(&privileged).await,
            "the pinned build pod made privileged",
            &[NO_SCC, &format!("provider {scc}: {PRIVILEGED_STEP}")],
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Pinned to the generated SCC, a privileged build step has nowhere else to
/// go: OpenShift refuses it, naming the SCC and the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_privileged_build_pod_is_refused_even_when_pinned() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(client, ns, "build-and-push-v2.privileged.yaml").await;
        let (op, _, scc) = scene.converged_policy("privileged").await;
        let build = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_eq!(build.annotations().get(REQUIRED_SCC_ANNOTATION), Some(&scc));
        assert_refused(
            scene.scc_of(&build).await,
            "the seed's privileged build pod",
            &[NO_SCC, &format!("provider {scc}: {PRIVILEGED_STEP}")],
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// No preemption: the service account's unpinned pods (the download, mirror
/// and register steps) get the SCC they got before the policy existed.
#[tokio::test(flavor = "multi_thread")]
async fn unpinned_pods_of_the_build_service_account_keep_their_scc() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(client, ns, "build-and-push-v2.capabilities.yaml").await;
        let mut before = BTreeMap::new();
        for task in UNPRIVILEGED_TASKS {
            let scc = scene
                .scc_of(&scene.pod(task, BUILD_SA).await)
                .await
                .unwrap_or_else(|m| panic!("{task} without a policy was refused: {m}"));
            before.insert(task, scc);
        }

        let (op, _, generated) = scene.converged_policy("no-preemption").await;
        for task in UNPRIVILEGED_TASKS {
            let pod = scene.pod(task, BUILD_SA).await;
            assert_eq!(
                pod.annotations().get(REQUIRED_SCC_ANNOTATION),
                None,
                "{task} is not pinned"
            );
            let after = scene
                .scc_of(&pod)
                .await
                .unwrap_or_else(|m| panic!("{task} with the policy was refused: {m}"));
            assert_ne!(after, generated, "{task} must not get the generated SCC");
            assert_eq!(
                after, before[task],
                "{task} got another SCC than without the policy"
            );
        }
        println!("unpinned pods keep their SCCs: {before:?}");
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Only the policy's service account may use the SCC: a pod of another
/// service account in the same namespace, pinned or not, asking SYS_ADMIN,
/// is refused.
#[tokio::test(flavor = "multi_thread")]
async fn another_service_account_cannot_use_the_generated_scc() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(
            client.clone(),
            ns.clone(),
            "build-and-push-v2.capabilities.yaml",
        )
        .await;
        create_service_account(&client, &ns, "other-sa").await;
        let (op, _, scc) = scene.converged_policy("other-sa").await;
        let pinned = scene.pod(BUILD_TASK, "other-sa").await;
        assert_eq!(
            pinned.annotations().get(REQUIRED_SCC_ANNOTATION),
            Some(&scc)
        );
        assert_refused(
            scene.scc_of(&pinned).await,
            "another service account's pinned build pod",
            &[
                NO_SCC,
                &format!("provider \"{scc}\": Forbidden: not usable by user or serviceaccount"),
            ],
        );
        let only_sys_admin = with_step(unpinned(pinned), "build", |sc| {
            sc["capabilities"] = json!({"add": ["SYS_ADMIN"]});
        });
        assert_refused(
            scene.scc_of(&only_sys_admin).await,
            "another service account's pod asking SYS_ADMIN",
            &[
                NO_SCC,
                &format!("provider \"{scc}\": Forbidden: not usable by user or serviceaccount"),
            ],
        );
        // The build service account's own pod is admitted, so the refusals
        // above are about the service account.
        let own = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_eq!(scene.scc_of(&own).await, Ok(scc));
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// Revocation: once the policy is deleted, a pod of a TaskRun that started
/// while the Task was pinned is refused (its SCC is gone), and so is the
/// pod of a new TaskRun (the pin is gone, and no other SCC admits it).
#[tokio::test(flavor = "multi_thread")]
async fn after_the_policy_is_deleted_the_build_pod_is_refused() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(client.clone(), ns, "build-and-push-v2.capabilities.yaml").await;
        let (op, name, scc) = scene.converged_policy("revoked").await;
        let pinned = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_eq!(scene.scc_of(&pinned).await, Ok(scc.clone()));

        Api::<BuildPolicy>::all(client.clone())
            .delete(&name, &DeleteParams::default())
            .await
            .expect("deleting the policy");
        webhook_forgets(&client, &scc).await;
        assert_refused(
            scene.scc_of(&pinned).await,
            "the pinned build pod after the policy is deleted",
            &[&format!("failed to retrieve the required SCC \"{scc}\"")],
        );
        wait_for(
            &Api::<Task>::namespaced(client.clone(), &scene.ns),
            BUILD_TASK,
            TIMEOUT,
            |t: &Task| !t.annotations().contains_key(REQUIRED_SCC_ANNOTATION),
        )
        .await;
        let new_run = scene.pod(BUILD_TASK, BUILD_SA).await;
        assert_refused(
            scene.scc_of(&new_run).await,
            "a new build pod after the policy is deleted",
            &[NO_SCC],
        );
        op.delete_policies_and_stop().await;
    })
    .await;
}

/// What the pin does not do, as OpenShift decides it (and as the policy's
/// `PreemptionSafe` note says): `use` is granted to the service account,
/// not to the pinned Task, so an unpinned pod of that service account that
/// no default SCC admits (the build step without the pin, a root step) is
/// admitted under the generated SCC. Pods that a default SCC admits keep it
/// (see `unpinned_pods_of_the_build_service_account_keep_their_scc`).
#[tokio::test(flavor = "multi_thread")]
async fn unpinned_pods_that_no_default_scc_admits_get_the_generated_scc() {
    with_temp_ns(|client, ns| async move {
        let scene = Scene::new(client, ns, "build-and-push-v2.capabilities.yaml").await;
        let unpinned_build = scene.pod(BUILD_TASK, BUILD_SA).await;
        let root = with_step(scene.pod("download-model", BUILD_SA).await, "main", |sc| {
            sc["runAsUser"] = json!(0);
        });
        assert_refused(
            scene.scc_of(&unpinned_build).await,
            "the build pod without a policy",
            &[NO_SCC],
        );
        assert_refused(
            scene.scc_of(&root).await,
            "a root step without a policy",
            &[NO_SCC],
        );

        let (op, _, scc) = scene.converged_policy("unpinned").await;
        assert_eq!(
            scene
                .scc_of(&unpinned(scene.pod(BUILD_TASK, BUILD_SA).await))
                .await,
            Ok(scc.clone())
        );
        assert_eq!(scene.scc_of(&root).await, Ok(scc));
        op.delete_policies_and_stop().await;
    })
    .await;
}

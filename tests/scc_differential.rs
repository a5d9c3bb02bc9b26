//! Differential test of the SCC admission model: many generated
//! SCC sets and pods, each decided twice, by OpenShift's own SCC admission
//! plugin (the local control plane's pod webhook, `hack/scc-admission`) and
//! by this product's model of it (`buildpolicy_policy::admission` and
//! `buildpolicy_policy::task_check`). Every decision must agree.
//!
//! Each batch is a temporary namespace with a build service account
//! (`builder`), a requesting user that may create pods but `use` no SCC of
//! its own (the Tekton controller's service account), and one to four SCCs
//! with random but valid fields: half of them entirely random (capabilities,
//! the four runAsUser strategies, SELinux, fsGroup and supplemental groups
//! with fixed and namespace-allocated ranges, privilege escalation and its
//! default, privileged, host namespaces and ports, user namespaces, seccomp
//! profiles, volumes, read-only root filesystems, priority unset/0/5/10),
//! half a default SCC with one to three of those changed; and sometimes an
//! SCC rendered from a BuildPolicy in one of its isolation modes. They are
//! granted to `builder` alone through a Role and RoleBinding in the batch
//! namespace (never to groups or users: other tests share the cluster), and
//! created as generated, without defaults: the local cluster defaults them
//! with OpenShift's own code (`sccdefaults.SetDefaults_SCC`, served by
//! `hack/scc-admission`), and the model's defaulting (`as_stored`) must give
//! exactly what was stored; the model is then given the SCCs as written and
//! defaults them itself. Once the webhook's
//! informer holds them, the batch's pods are created with server-side
//! dry-run, eight at a time: random pod and container securityContexts,
//! host namespaces and ports, user namespaces, volumes of many types,
//! service account `builder` or `default`, sometimes an
//! `openshift.io/required-scc` pin, and the pods Tekton would create for
//! random pinned Tasks (steps, `stepTemplate`, sidecars, volumes). Each pod
//! asks for something unusual more or less often, so that ordinary pods
//! and pods that ask for much are both common.
//!
//! What is compared, for every pod, with the model given the namespace's
//! allocation (`NamespaceAllocation`, from its `openshift.io/sa.scc.*`
//! annotations):
//!
//! - the SCC: `admitted_under` the SCCs the pod may use (the default SCCs
//!   every authenticated service account may use, plus the batch's for
//!   `builder`), or `admits` of the pinned SCC when pinned (none if it may
//!   not use it or it does not exist), against `openshift.io/scc` on the
//!   admitted pod, or no SCC against a refusal;
//! - for the unpinned pods of `builder`: `preemption` with the batch's
//!   first SCC as the generated one (the BuildPolicy-rendered one when the
//!   batch has it) against where the webhook put the pod; among them, in
//!   every batch, the very pods the controller's `PreemptionSafe` analysis
//!   judges (`probe_pods`, asserted to be the requests `probe_requests`
//!   gives the controller for the namespace);
//! - for the pods of pinned Tasks: `check_task_in(..).admissible()`, with
//!   the namespace's allocation as the controller passes it, against the
//!   webhook's decision, and `check_task` (what the controller calls before
//!   the allocator has annotated the namespace) never stricter than it.
//!
//! A refusal is OpenShift's 403, or the API server's 422 for a pod that
//! admission left with `allowPrivilegeEscalation: false` next to
//! `privileged: true` or `CAP_SYS_ADMIN` (pod validation, after admission);
//! any other failure is a bug in this test's generator and fails it. A case
//! the webhook admitted under an SCC outside the batch's world is asked
//! again as the webhook's view of that SCC changes (another test may grant
//! one of its SCCs to everyone for a moment); any other difference is
//! reported at once.
//!
//! Generation is deterministic: the seed is printed, and
//! `SCC_DIFFERENTIAL_SEED=<n>` replays or explores another one
//! (`SCC_DIFFERENTIAL_BATCHES=<n>` runs more batches). Every disagreement
//! is printed with the pod, its SCCs and the model's refusals; the test
//! fails at the end if there was any. The counts of outcomes, SCCs picked,
//! preemption verdicts and the model's refusal reasons are printed and
//! checked against minimums, so a generator that stops reaching a branch
//! fails the test. Each disagreement found so far is a regression test of
//! the policy crate (`regression_*` in `admission/admit/`,
//! `admission/preemption.rs` and `task_check.rs`).
//!
//! Deliberately left out (the generator never produces them):
//!
//! - sysctls, and SCCs' `allowedUnsafeSysctls`/`forbiddenSysctls`: the
//!   model does not look at sysctls;
//! - flexVolume volumes and `allowedFlexVolumes`: not modelled;
//! - AppArmor profiles, `procMount`, `runAsGroup`, Windows options and
//!   Windows pods;
//! - the deprecated seccomp annotations on pods;
//! - ephemeral containers (added by `pods/ephemeralcontainers` updates,
//!   which this test does not make) and pod updates in general;
//! - pods without a service account name (the API server always sets one),
//!   service accounts with `automountServiceAccountToken: false` (the pod
//!   field is generated instead), and pods in a namespace the allocator has
//!   not annotated yet;
//! - SCCs that list `users` or `groups` (they would reach pods of other
//!   tests), SCCs that OpenShift's SCC validation rejects (on OpenShift they
//!   cannot be created), and SCCs whose strategies cannot be built (one such
//!   SCC anywhere makes OpenShift refuse every unpinned pod in the cluster,
//!   which would break every other test on the shared cluster);
//! - requesting users who may use SCCs themselves (the admin,
//!   system:masters), and Tasks' workspaces and StepActions (which
//!   `check_task` reports as unchecked).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{SecurityContextConstraints, Task};
use buildpolicy_policy::admission::admit::service_account_token_volume;
use buildpolicy_policy::admission::preemption::{SafeBecause, probe_pods, probe_requests};
use buildpolicy_policy::admission::{
    NamespaceAllocation, PodSecurityRequest, Preemption, Reason, admits, admitted_under, as_stored,
    preemption, refusals, selects, sort_sccs,
};
use buildpolicy_policy::task_check::{check_task, check_task_in};
use buildpolicy_test_support::scc_admission::{
    NotCreated, admitted_scc, may_use_scc, service_account_groups, service_account_user,
    taskrun_pod, tekton_controller, try_create_pod, webhook_holds_all, webhook_moved_on,
    webhook_version,
};
use buildpolicy_test_support::scc_generators::{
    Allocation, BUILDER, Gen, random_pod, random_scc, random_task_spec, rendered_scc,
};
use buildpolicy_test_support::scene::create_service_account;
use buildpolicy_test_support::{
    eventually, repo_root, test_labels, unique_name, wait_for, with_temp_ns,
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The seed of CI's run; `SCC_DIFFERENTIAL_SEED` overrides it.
const DEFAULT_SEED: u64 = 0x5cc0_d1ff;
/// Batches in CI's run; `SCC_DIFFERENTIAL_BATCHES` overrides it.
const DEFAULT_BATCHES: u64 = 20;
const PODS_PER_BATCH: usize = 56;
const TASKS_PER_BATCH: usize = 10;
/// Dry-run creations in flight at once.
const CONCURRENCY: usize = 8;
// ---------------------------------------------------------- the batch ----

/// One pod to create, and what to compare for it.
struct Case {
    id: String,
    pod: Pod,
    /// The Task the pod was made from, with its spec (pinned Tasks only).
    task: Option<(String, Value)>,
    /// Which of the `PreemptionSafe` analysis's probe pods this is.
    probe: Option<&'static str>,
}

/// The webhook's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Admitted(String),
    /// OpenShift's refusal (403).
    Refused(String),
    /// Pod validation's refusal after admission (422).
    Invalid(String),
}

impl Decision {
    fn scc(&self) -> Option<&str> {
        match self {
            Self::Admitted(scc) => Some(scc),
            _ => None,
        }
    }
}

/// What the model and the webhook said of one case, when they differ.
struct Disagreement {
    batch: u64,
    case: String,
    what: String,
    pod: Pod,
    model: String,
    webhook: Decision,
}

/// Counters, by name; printed sorted.
#[derive(Default)]
struct Counts(BTreeMap<String, usize>);

impl Counts {
    fn add(&mut self, key: impl Into<String>) {
        *self.0.entry(key.into()).or_default() += 1;
    }

    fn get(&self, key: &str) -> usize {
        self.0.get(key).copied().unwrap_or_default()
    }

    fn merge(&mut self, other: Counts) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }
}

/// The cluster's default SCCs as stored, and which of them every
/// authenticated service account may use (RBAC, or `users`/`groups`).
struct Defaults {
    sccs: BTreeMap<String, SecurityContextConstraints>,
    usable: Vec<String>,
}

async fn defaults(admin: &Client, ns: &str) -> Defaults {
    let api = Api::<SecurityContextConstraints>::all(admin.clone());
    let mut sccs = BTreeMap::new();
    let mut usable = Vec::new();
    let user = service_account_user(ns, BUILDER);
    let groups = service_account_groups(ns);
    for name in default_scc_names() {
        let name = name.as_str();
        let scc = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading default SCC {name}: {e}"));
        let listed = scc.users.iter().flatten().any(|u| *u == user)
            || scc
                .groups
                .iter()
                .flatten()
                .any(|g| groups.iter().any(|mine| mine == g));
        if listed || may_use_scc(admin, &user, ns, name).await {
            usable.push(name.to_owned());
        }
        sccs.insert(name.to_owned(), scc);
    }
    Defaults { sccs, usable }
}

/// The names of OpenShift 4.20's default SCCs, which the local cluster
/// installs from `hack/local-cluster/default-sccs` (one file each, besides
/// their RBAC).
fn default_scc_names() -> Vec<String> {
    let dir = repo_root().join("hack/local-cluster/default-sccs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let scc = name.strip_suffix(".yaml")?;
            (scc != "rbac").then(|| scc.to_owned())
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 16,
        "default SCCs in {}: {names:?}",
        dir.display()
    );
    names
}

/// The SCCs of one batch, as the API server stores them, and the batch's
/// "generated" SCC for the preemption comparison.
struct World {
    defaults: BTreeMap<String, SecurityContextConstraints>,
    default_usable: Vec<String>,
    batch: Vec<SecurityContextConstraints>,
    allocation: NamespaceAllocation,
}

impl World {
    fn scc(&self, name: &str) -> Option<&SecurityContextConstraints> {
        self.batch
            .iter()
            .find(|s| s.name() == name)
            .or_else(|| self.defaults.get(name))
    }

    /// The SCCs a pod of `service_account` may use, created by a requester
    /// who may use only what every authenticated user may.
    fn usable(&self, service_account: &str) -> Vec<&SecurityContextConstraints> {
        let mut usable: Vec<&SecurityContextConstraints> = self
            .default_usable
            .iter()
            .filter_map(|n| self.defaults.get(n))
            .collect();
        if service_account == BUILDER {
            usable.extend(self.batch.iter());
        }
        usable
    }

    /// The model's decision: the SCC admission gives the pod, or `None`.
    fn pick(
        &self,
        request: &PodSecurityRequest,
        service_account: &str,
        pin: Option<&str>,
    ) -> Option<String> {
        let usable = self.usable(service_account);
        match pin {
            Some(pin) => usable
                .iter()
                .find(|s| s.name() == pin)
                .filter(|s| admits(s, request))
                .map(|s| s.name().to_owned()),
            None => admitted_under(&usable, request),
        }
    }

    /// Every usable SCC with the model's refusals of the pod, in admission
    /// order, for the report of a disagreement.
    fn explain(&self, request: &PodSecurityRequest, service_account: &str) -> String {
        let stored: Vec<SecurityContextConstraints> = self
            .usable(service_account)
            .iter()
            .map(|s| as_stored(s))
            .collect();
        let mut order: Vec<&SecurityContextConstraints> = stored.iter().collect();
        sort_sccs(&mut order);
        let mut out = String::new();
        for scc in order {
            let mut why: Vec<String> = refusals(scc, request)
                .iter()
                .map(ToString::to_string)
                .collect();
            if !why.is_empty() && selects(scc, request) {
                why.insert(0, "selected, then pod validation fails:".to_owned());
            }
            let _ = write!(
                out,
                "\n      {}: {}",
                scc.name(),
                if why.is_empty() {
                    "admits".to_owned()
                } else {
                    why.join("; ")
                }
            );
        }
        out
    }
}

/// The name of a refusal reason, for the counts.
fn reason_kind(reason: &Reason) -> &'static str {
    match reason {
        Reason::InvalidScc(_) => "InvalidScc",
        Reason::Privileged => "Privileged",
        Reason::Capability(_) => "Capability",
        Reason::PrivilegeEscalation => "PrivilegeEscalation",
        Reason::EscalationConflict(_) => "EscalationConflict",
        Reason::RunAsUser { .. } => "RunAsUser",
        Reason::RootUser => "RootUser",
        Reason::RunAsNonRootFalse => "RunAsNonRootFalse",
        Reason::SeLinux { .. } => "SeLinux",
        Reason::Seccomp { .. } => "Seccomp",
        Reason::ReadOnlyRootFilesystem => "ReadOnlyRootFilesystem",
        Reason::HostPort(_) => "HostPort",
        Reason::HostNetwork => "HostNetwork",
        Reason::HostPid => "HostPid",
        Reason::HostIpc => "HostIpc",
        Reason::HostUsers => "HostUsers",
        Reason::Volume { .. } => "Volume",
        Reason::UnknownVolumeType { .. } => "UnknownVolumeType",
        Reason::Group { .. } => "Group",
    }
}

/// OpenShift's reasons in a 403 (`unable to validate against any security
/// context constraint: [provider <scc>: <field path>: <error>, ...]`).
///
/// Per SCC, the kinds of [`reason_kind`] its entries name, read from each
/// error's field path (for `runAsUser`, also its message), or
/// `Unclassified: <error>`; SCCs the requester and the service account may
/// not use ("not usable") are left out. Seccomp and volume errors carry
/// absolute field paths (`pod.metadata.annotations[...]`,
/// `spec.volumes[i]`) without their SCC's name, between the entries of the
/// SCCs tried, and identical ones (the same volume refused by two SCCs)
/// appear once: they are compared apart, by kind only.
#[derive(Debug, Default, PartialEq)]
struct OpenShiftReasons {
    by_scc: BTreeMap<String, BTreeSet<String>>,
    unattributed: BTreeSet<&'static str>,
}

fn openshift_reasons(message: &str) -> OpenShiftReasons {
    let mut out = OpenShiftReasons::default();
    let Some((_, list)) =
        message.split_once("unable to validate against any security context constraint: ")
    else {
        return out;
    };
    let list = list.trim();
    let list = list
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or(list);
    for entry in list.split(", ") {
        // A comma inside an error ("ranges: [1000, 65534]") starts no entry.
        let entry = entry.trim();
        if entry.starts_with("pod.metadata.annotations[")
            && entry.contains("seccomp")
            && entry.contains(": Forbidden: ")
        {
            out.unattributed.insert("Seccomp");
            continue;
        }
        if entry.starts_with("spec.volumes[")
            && entry.contains(" volumes are not allowed to be used")
        {
            out.unattributed.insert("Volume");
            continue;
        }
        let Some(entry) = entry.strip_prefix("provider ") else {
            continue;
        };
        let Some((scc, error)) = entry.split_once(": ") else {
            continue;
        };
        let scc = scc.trim_matches('"').to_owned();
        if error.contains("not usable by user or serviceaccount") {
            continue;
        }
        let path = error.split(": ").next().unwrap_or_default();
        let last = path.rsplit('.').next().unwrap_or_default();
        let kind = match last {
            "privileged" => "Privileged",
            "add" if path.ends_with("capabilities.add") => "Capability",
            "allowPrivilegeEscalation" => "PrivilegeEscalation",
            "runAsUser" if error.contains("running with the root UID is forbidden") => "RootUser",
            "runAsUser" => "RunAsUser",
            "runAsNonRoot" => "RunAsNonRootFalse",
            "level" | "role" | "type" | "user" if path.contains("seLinuxOptions") => "SeLinux",
            "readOnlyRootFilesystem" => "ReadOnlyRootFilesystem",
            "hostPort" => "HostPort",
            "hostNetwork" => "HostNetwork",
            "hostPID" => "HostPid",
            "hostIPC" => "HostIpc",
            "hostUsers" => "HostUsers",
            "fsGroup" | "supplementalGroups" => "Group",
            _ => "",
        };
        let kind = if kind.is_empty() {
            format!("Unclassified: {error}")
        } else {
            kind.to_owned()
        };
        out.by_scc.entry(scc).or_default().insert(kind);
    }
    out
}

/// The model's refusals of the same pod by `tried`, the SCCs admission
/// tried, as [`openshift_reasons`] reads a 403. What pod validation refuses
/// after admission (`EscalationConflict`) is not in a 403.
fn model_reasons(
    tried: &[&SecurityContextConstraints],
    request: &PodSecurityRequest,
) -> OpenShiftReasons {
    let mut out = OpenShiftReasons::default();
    for scc in tried {
        let mut kinds = BTreeSet::new();
        for refusal in refusals(scc, request) {
            match reason_kind(&refusal.reason) {
                "EscalationConflict" => {}
                kind @ ("Seccomp" | "Volume") => {
                    out.unattributed.insert(kind);
                }
                kind => {
                    kinds.insert(kind.to_owned());
                }
            }
        }
        if !kinds.is_empty() {
            out.by_scc.insert(scc.name().to_owned(), kinds);
        }
    }
    out
}

/// The namespace's allocation, once the allocator has annotated it.
fn allocation(ns: &Namespace) -> Result<NamespaceAllocation, String> {
    NamespaceAllocation::from_annotations(
        ns.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()),
    )
}

/// What admission is asked about `pod` in a namespace with `allocation`:
/// its spec as written, and the service account token volume the API
/// server adds to it unless it opts out (the ServiceAccount admission
/// plugin runs before the webhook).
fn request_of(pod: &Pod, allocation: &NamespaceAllocation) -> PodSecurityRequest {
    let spec = pod.spec.clone().expect("a pod spec");
    let mut request = PodSecurityRequest::from_pod_spec(&spec).in_namespace(allocation.clone());
    if spec.automount_service_account_token != Some(false) {
        request.volumes.push(service_account_token_volume());
    }
    request
}

/// Asks the webhook about `pod` (server-side dry-run, as `requester`).
async fn decide(requester: &Client, ns: &str, pod: &Pod) -> Decision {
    match try_create_pod(requester, ns, pod, true).await {
        Ok(admitted) => {
            // The volumes the model was given are those admission saw.
            let added = admitted
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .map_or(0, Vec::len)
                - pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .map_or(0, Vec::len);
            let automount = pod
                .spec
                .as_ref()
                .and_then(|s| s.automount_service_account_token)
                != Some(false);
            assert_eq!(
                added,
                usize::from(automount),
                "pod {}: the API server added {added} volumes",
                pod.name_any()
            );
            Decision::Admitted(admitted_scc(&admitted))
        }
        Err(NotCreated::Forbidden(message)) => {
            assert!(
                message.contains("security context constraint") || message.contains("required SCC"),
                "pod {} was refused by something other than SCC admission: {message}",
                pod.name_any()
            );
            Decision::Refused(message)
        }
        Err(NotCreated::Invalid(message)) => {
            assert!(
                message.contains("allowPrivilegeEscalation"),
                "pod {} is invalid for a reason the generator should have avoided: {message}",
                pod.name_any()
            );
            Decision::Invalid(message)
        }
    }
}

/// Creates the batch's SCCs as generated (not defaulted: the server
/// defaults them, as OpenShift does, and the model's defaulting must give
/// the same), grants them to `builder` alone, and waits until RBAC answers
/// and the webhook holds them. Returns them as written, undefaulted: the
/// model defaults them itself wherever it compares.
async fn install_sccs(
    admin: &Client,
    ns: &str,
    sccs: &[SecurityContextConstraints],
) -> Vec<SecurityContextConstraints> {
    let api = Api::<SecurityContextConstraints>::all(admin.clone());
    let mut written = Vec::new();
    for scc in sccs {
        let mut scc = scc.clone();
        scc.metadata.labels = Some(test_labels(ns));
        let stored = api
            .create(&PostParams::default(), &scc)
            .await
            .unwrap_or_else(|e| panic!("creating SCC {}: {e}\n{scc:#?}", scc.name()));
        // The server defaults it as OpenShift does; the model must agree.
        let without_metadata = |scc: &SecurityContextConstraints| {
            let mut value = serde_json::to_value(scc).expect("an SCC serialises");
            value.as_object_mut().expect("an object").remove("metadata");
            value
        };
        let mut stored = without_metadata(&stored);
        // The CRD's schema defaults `userNamespaceLevel` (OpenShift 4.19 and
        // later), not SCC defaulting; the model reads its absence the same.
        if scc.user_namespace_level.is_none()
            && stored["userNamespaceLevel"] == json!("AllowHostLevel")
        {
            stored
                .as_object_mut()
                .expect("an object")
                .remove("userNamespaceLevel");
        }
        assert_eq!(
            without_metadata(&as_stored(&scc)),
            stored,
            "SCC {}: the model's defaulting (left) differs from OpenShift's (right), for\n{}",
            scc.name(),
            serde_json::to_string(&without_metadata(&scc)).unwrap_or_default()
        );
        written.push(scc);
    }
    let names: Vec<&str> = written.iter().map(|s| s.name()).collect();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "use-batch-sccs"},
        "rules": [{
            "apiGroups": ["security.openshift.io"],
            "resources": ["securitycontextconstraints"],
            "resourceNames": names,
            "verbs": ["use"],
        }]
    }))
    .expect("a Role");
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("creating the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "use-batch-sccs"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "use-batch-sccs"},
        "subjects": [{"kind": "ServiceAccount", "name": BUILDER, "namespace": ns}]
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("creating the RoleBinding");
    let user = service_account_user(ns, BUILDER);
    let last = names.last().copied().unwrap_or_default();
    eventually(
        "RBAC to let the builder use the batch's SCCs",
        TIMEOUT,
        || async { may_use_scc(admin, &user, ns, last).await.then_some(()) },
    )
    .await;
    webhook_holds_all(admin, &names).await;
    written
}

/// Runs batch `index`: sets it up, asks the webhook about every case,
/// compares. Returns the counts and the disagreements.
async fn run_batch(seed: u64, index: u64) -> (Counts, Vec<Disagreement>) {
    let slot = Arc::new(Mutex::new(None));
    let out = Arc::clone(&slot);
    with_temp_ns(|admin, ns| async move {
        let result = batch_in(&admin, &ns, seed, index).await;
        *out.lock().expect("not poisoned") = Some(result);
    })
    .await;
    let result = slot.lock().expect("not poisoned").take();
    result.expect("the batch ran")
}

/// Batch `index` in namespace `ns`.
async fn batch_in(admin: &Client, ns: &str, seed: u64, index: u64) -> (Counts, Vec<Disagreement>) {
    let (_, requester) = tokio::join!(
        create_service_account(admin, ns, BUILDER),
        tekton_controller(admin, ns)
    );
    let namespace = wait_for(
        &Api::<Namespace>::all(admin.clone()),
        ns,
        TIMEOUT,
        |n: &Namespace| allocation(n).is_ok(),
    )
    .await;
    let allocation = allocation(&namespace).expect("allocated");
    let alloc = Allocation::of(&allocation);
    wait_for(
        &Api::<ServiceAccount>::namespaced(admin.clone(), ns),
        "default",
        TIMEOUT,
        |_| true,
    )
    .await;
    let defaults = defaults(admin, ns).await;

    let mut g = Gen::new(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut sccs = Vec::new();
    let batch_tag = unique_name("diff");
    if g.chance(0.4) {
        sccs.push(rendered_scc(&mut g, &format!("{batch_tag}-policy")));
    }
    let extra = g.int(1..=3) as usize + usize::from(sccs.is_empty() && g.chance(0.3));
    for i in 0..extra {
        sccs.push(random_scc(
            &mut g,
            &format!("{batch_tag}-{i}"),
            &alloc,
            &defaults.sccs,
        ));
    }
    let batch = install_sccs(admin, ns, &sccs).await;
    let names: Vec<String> = batch.iter().map(|s| s.name().to_owned()).collect();
    let world = World {
        defaults: defaults.sccs,
        default_usable: defaults.usable,
        batch,
        allocation,
    };

    let mut cases: Vec<Case> = (0..PODS_PER_BATCH)
        .map(|i| Case {
            id: format!("pod-{i}"),
            pod: random_pod(&mut g, &format!("pod-{i}"), &alloc, &names),
            task: None,
            probe: None,
        })
        .collect();
    // The very pods the controller's PreemptionSafe analysis judges.
    for (i, (kind, mut spec)) in probe_pods().into_iter().enumerate() {
        spec.service_account_name = Some(BUILDER.to_owned());
        cases.push(Case {
            id: format!("probe-{i}"),
            pod: Pod {
                metadata: ObjectMeta {
                    name: Some(format!("probe-{i}")),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
                ..Pod::default()
            },
            task: None,
            probe: Some(kind),
        });
    }
    for i in 0..TASKS_PER_BATCH {
        let name = format!("task-{i}");
        // Pinned to an SCC the builder may use: what check_task is for.
        let pin = if g.chance(0.75) {
            g.pick(&names)
        } else {
            g.pick(&world.default_usable)
        };
        let spec = random_task_spec(&mut g, &alloc);
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "tekton.dev/v1",
            "kind": "Task",
            "metadata": {"name": name, "namespace": ns, "annotations": {REQUIRED_SCC_ANNOTATION: pin}},
            "spec": spec,
        }))
        .expect("a generated Task");
        let mut pod = taskrun_pod(&task, BUILDER);
        let pinned = world.scc(&pin).expect("the pin exists");
        if pinned.user_namespace_level.as_deref() == Some("RequirePodLevel") {
            // As the pipeline owner is told to (check_task's HOST_USERS_FIX).
            pod.spec.as_mut().expect("a pod spec").host_users = Some(false);
        }
        cases.push(Case {
            id: name.clone(),
            pod,
            task: Some((name, spec)),
            probe: None,
        });
    }

    let decisions: Vec<(Case, Decision)> = futures::stream::iter(cases)
        .map(|case| {
            let requester = requester.clone();
            async move {
                let decision = decide(&requester, ns, &case.pod).await;
                (case, decision)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut counts = Counts::default();
    let mut disagreements = Vec::new();
    let generated = &world.batch[0];
    let label = |scc: &str| -> String {
        // A rendered SCC is named buildpolicy-<policy>, and comes first.
        if scc == generated.name() && scc.starts_with("buildpolicy-") {
            "batch SCC rendered from a BuildPolicy".to_owned()
        } else if names.iter().any(|n| n == scc) {
            "batch SCC".to_owned()
        } else {
            scc.to_owned()
        }
    };
    for (case, webhook) in decisions {
        let (case, webhook) = recheck(&requester, ns, &world, case, webhook).await;
        let spec = case.pod.spec.as_ref().expect("a pod spec");
        let service_account = spec.service_account_name.clone().unwrap_or_default();
        let pin = case.pod.annotations().get(REQUIRED_SCC_ANNOTATION).cloned();
        let request = request_of(&case.pod, &world.allocation);
        let model = world.pick(&request, &service_account, pin.as_deref());
        let mut disagree = |what: &str, model: String| {
            disagreements.push(Disagreement {
                batch: index,
                case: case.id.clone(),
                what: what.to_owned(),
                pod: case.pod.clone(),
                model: format!("{model}{}", world.explain(&request, &service_account)),
                webhook: webhook.clone(),
            });
        };

        counts.add(match (&case.task, case.probe) {
            (Some(_), _) => "cases: Task pods",
            (None, Some(_)) => "cases: PreemptionSafe probe pods",
            (None, None) => "cases: pods",
        });
        if let Some(kind) = case.probe {
            // The request compared is exactly the one the controller judges.
            let probes = probe_requests(Some(&world.allocation));
            let (_, controller) = probes
                .iter()
                .find(|(k, _)| *k == kind)
                .expect("a probe of this kind");
            assert_eq!(
                &request, controller,
                "probe pod {kind}: admission is asked about another pod than the controller judges"
            );
        }
        counts.add(match (&webhook, pin.is_some()) {
            (Decision::Admitted(_), false) => "decision: admitted, unpinned",
            (Decision::Admitted(_), true) => "decision: admitted, pinned",
            (Decision::Refused(_), false) => "decision: refused, unpinned",
            (Decision::Refused(_), true) => "decision: refused, pinned",
            (Decision::Invalid(_), _) => "decision: refused by pod validation",
        });
        if let Some(scc) = webhook.scc() {
            counts.add(format!("SCC picked: {}", label(scc)));
        }
        for scc in world.usable(&service_account) {
            if pin.as_deref().is_some_and(|p| p != scc.name()) {
                continue;
            }
            for refusal in refusals(scc, &request) {
                counts.add(format!("model refusal: {}", reason_kind(&refusal.reason)));
            }
        }

        if model.as_deref() != webhook.scc() {
            disagree(
                "the SCC",
                format!("model picks {}", model.as_deref().unwrap_or("no SCC")),
            );
        } else if let Decision::Refused(message) = &webhook {
            // Both refuse: OpenShift's reasons, SCC by SCC, are the model's.
            let openshift = openshift_reasons(message);
            if openshift == OpenShiftReasons::default() {
                counts.add("refusal reasons: none listed");
            } else {
                let tried: Vec<&SecurityContextConstraints> = world
                    .usable(&service_account)
                    .into_iter()
                    .filter(|scc| pin.as_deref().is_none_or(|p| p == scc.name()))
                    .collect();
                let model = model_reasons(&tried, &request);
                if model == openshift {
                    counts.add("refusal reasons: the same");
                } else {
                    disagree(
                        "the refusal reasons",
                        format!(
                            "OpenShift's refusal reasons are {openshift:?}, the model's {model:?}"
                        ),
                    );
                }
            }
        }

        if let Some((task, task_spec)) = &case.task {
            let pinned = world
                .scc(pin.as_deref().unwrap_or_default())
                .expect("the pin exists");
            let report = check_task_in(task, task_spec, pinned, Some(&world.allocation));
            counts.add(if report.admissible() {
                "check_task: admissible"
            } else {
                "check_task: not admissible"
            });
            // Without the namespace, check_task accepts the values the
            // namespace decides: it may only be more lenient.
            let unknown_namespace = check_task(task, task_spec, pinned).admissible();
            if unknown_namespace != report.admissible() {
                counts.add("check_task: admissible only while the namespace is unknown");
            }
            if report.admissible() && !unknown_namespace {
                disagree(
                    "check_task without the namespace",
                    "check_task refuses what check_task_in admits".to_owned(),
                );
            }
            if report.admissible() != webhook.scc().is_some() {
                let findings: Vec<String> =
                    report.findings.iter().map(ToString::to_string).collect();
                disagree(
                    "check_task",
                    format!("check_task admissible={} {findings:?}", report.admissible()),
                );
            }
        }

        if pin.is_none() && service_account == BUILDER {
            let others: Vec<&SecurityContextConstraints> = world
                .usable(BUILDER)
                .into_iter()
                .filter(|s| s.name() != generated.name())
                .collect();
            let verdict = preemption(generated, &others, Some(&request));
            let (kind, lands) = match &verdict {
                Preemption::Safe {
                    first_usable,
                    because: SafeBecause::SortsFirst(_),
                    ..
                } => ("Safe (sorts first)", Some(first_usable.clone())),
                Preemption::Safe {
                    first_usable,
                    because: SafeBecause::GeneratedRefuses(_),
                    ..
                } => ("Safe (generated refuses)", Some(first_usable.clone())),
                Preemption::Unsafe { .. } => ("Unsafe", Some(generated.name().to_owned())),
                Preemption::OnlyGenerated { .. } => {
                    ("OnlyGenerated", Some(generated.name().to_owned()))
                }
                Preemption::NoneAdmits { .. } => ("NoneAdmits", None),
            };
            counts.add(format!("preemption: {kind}"));
            if let Some(probe) = case.probe {
                counts.add(format!("preemption of the {probe} probe: {kind}"));
            }
            if verdict.generated_chosen() != (webhook.scc() == Some(generated.name()))
                || lands.as_deref() != webhook.scc()
            {
                disagree("preemption", format!("preemption says {verdict:?}"));
            }
        }
    }
    (counts, disagreements)
}

/// How long a recheck waits for the webhook's view of a foreign SCC to
/// change: the operator under another test reverts such a change within
/// milliseconds.
const FOREIGN_SCC_WAIT: Duration = Duration::from_secs(10);

/// Asks again about a case the webhook admitted under an SCC outside the
/// batch's world (neither a default SCC nor the batch's): another test may
/// for a moment let every authenticated user use one of its SCCs
/// (tests/reconcile.rs adds `system:authenticated` to a generated SCC's
/// `groups`, to see the operator revert it), which changes where unpinned
/// pods land. The case is asked again at once, and then each time the
/// webhook's informer holds another version of that SCC (or drops it), up
/// to three times. A disagreement on an SCC of the world is a model bug,
/// reported as it is: nothing outside the test changes those.
async fn recheck(
    requester: &Client,
    ns: &str,
    world: &World,
    case: Case,
    first: Decision,
) -> (Case, Decision) {
    let spec = case.pod.spec.as_ref().expect("a pod spec");
    let service_account = spec.service_account_name.clone().unwrap_or_default();
    let pin = case.pod.annotations().get(REQUIRED_SCC_ANNOTATION).cloned();
    let model = world.pick(
        &request_of(&case.pod, &world.allocation),
        &service_account,
        pin.as_deref(),
    );
    let mut decision = first.clone();
    for attempt in 0..3 {
        if model.as_deref() == decision.scc() {
            break;
        }
        let Some(foreign) = decision
            .scc()
            .filter(|scc| world.scc(scc).is_none())
            .map(str::to_owned)
        else {
            break;
        };
        if attempt > 0
            && let Some(seen) = webhook_version(&foreign).await
            && !webhook_moved_on(&foreign, &seen, FOREIGN_SCC_WAIT).await
        {
            break;
        }
        decision = decide(requester, ns, &case.pod).await;
    }
    if decision != first && model.as_deref() == decision.scc() {
        println!(
            "case {} agreed when asked again: first {first:?}, then {decision:?}",
            case.id
        );
    }
    (case, decision)
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={value}: {e}")))
}

// ---------------------------------------------------------------- test ----

#[tokio::test(flavor = "multi_thread")]
async fn the_model_agrees_with_openshift_scc_admission_on_generated_cases() {
    let seed = env_u64("SCC_DIFFERENTIAL_SEED").unwrap_or(DEFAULT_SEED);
    let batches = env_u64("SCC_DIFFERENTIAL_BATCHES").unwrap_or(DEFAULT_BATCHES);
    println!("seed {seed:#x} ({batches} batches; SCC_DIFFERENTIAL_SEED=<n> replays another)");
    let started = Instant::now();

    let mut counts = Counts::default();
    let mut disagreements = Vec::new();
    let results: Vec<(Counts, Vec<Disagreement>)> = futures::stream::iter(0..batches)
        .map(|index| run_batch(seed, index))
        .buffered(2)
        .collect()
        .await;
    for (c, d) in results {
        counts.merge(c);
        disagreements.extend(d);
    }
    let elapsed = started.elapsed();

    let cases = counts.get("cases: pods")
        + counts.get("cases: Task pods")
        + counts.get("cases: PreemptionSafe probe pods");
    println!(
        "{cases} cases in {elapsed:.1?}, {} disagreements",
        disagreements.len()
    );
    for (key, n) in &counts.0 {
        println!("  {key:<58} {n:>5}");
    }
    for d in &disagreements {
        println!(
            "\nDISAGREEMENT in batch {} case {} ({}):\n  webhook: {:?}\n  model: {}\n  pod: {}",
            d.batch,
            d.case,
            d.what,
            d.webhook,
            d.model,
            serde_json::to_string(&d.pod).unwrap_or_default()
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements between the model and OpenShift's SCC admission (above)",
        disagreements.len()
    );

    // The generator reaches every branch.
    let minimums: &[(&str, usize)] = &[
        ("decision: admitted, unpinned", 150),
        ("decision: refused, unpinned", 150),
        ("decision: admitted, pinned", 50),
        ("decision: refused, pinned", 100),
        ("decision: refused by pod validation", 2),
        ("SCC picked: restricted-v2", 50),
        ("SCC picked: restricted-v3", 3),
        ("SCC picked: batch SCC", 100),
        ("SCC picked: batch SCC rendered from a BuildPolicy", 5),
        ("check_task: admissible", 30),
        ("check_task: not admissible", 30),
        ("preemption: Safe (sorts first)", 30),
        ("preemption: Safe (generated refuses)", 20),
        ("preemption: Unsafe", 10),
        ("preemption: OnlyGenerated", 5),
        ("preemption: NoneAdmits", 100),
        ("refusal reasons: the same", 300),
    ];
    let mut missing = Vec::new();
    for (key, min) in minimums {
        if counts.get(key) < *min {
            missing.push(format!("{key}: {} < {min}", counts.get(key)));
        }
    }
    for kind in [
        "Privileged",
        "Capability",
        "PrivilegeEscalation",
        "EscalationConflict",
        "RunAsUser",
        "RootUser",
        "RunAsNonRootFalse",
        "SeLinux",
        "Seccomp",
        "ReadOnlyRootFilesystem",
        "HostPort",
        "HostNetwork",
        "HostPid",
        "HostIpc",
        "HostUsers",
        "Volume",
        "Group",
    ] {
        let key = format!("model refusal: {kind}");
        if counts.get(&key) < 5 {
            missing.push(format!("{key}: {} < 5", counts.get(&key)));
        }
    }
    assert!(
        missing.is_empty(),
        "the generator no longer reaches these branches often enough: {missing:#?}"
    );
}

//! The capability set, proven (issue 22): Buildah builds on the real node,
//! under exactly the securityContext the generated SCC gives a build pod,
//! for every capability set worth asking about. It writes
//! `docs/capabilities.md` and fails when the committed file differs.
//!
//! Needs the node (`hack/node`), so it is `#[ignore]`d; as root:
//!
//! ```sh
//! LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/local-cluster.sh up --node --no-tekton
//! LOCAL_CLUSTER_DIR=$PWD/target/node-cluster \
//!   cargo test -p buildpolicy-integration-tests --test capabilities -- --ignored
//! # BLESS=1 rewrites docs/capabilities.md with what the node said.
//! ```
//!
//! For each isolation mode (HostUserNamespace, PodUserNamespace) and each
//! capability set, the SCC the operator renders for a policy with that set
//! (`buildpolicy_policy::render`, as `buildpolicy-operator render` prints
//! it) is created, and pods pinned to it (`openshift.io/required-scc`) that
//! ask for the set in `capabilities.add`, as the ModelCar build step does,
//! are admitted by the local control plane's OpenShift SCC admission: the
//! drops, seccomp profile, privilege escalation and user settings are the
//! SCC's, not this file's. Each pod runs four builds, each with fresh
//! storage (`buildah bud --storage-driver=vfs --isolation=chroot`, then
//! `buildah push` to an OCI layout, as the ModelCar Task does): `FROM` an
//! OCI archive with `COPY`; the same with `RUN`; `FROM` a base whose file
//! carries a file capability (`security.capability`) with `COPY`; and a
//! ModelCar-shaped one (`COPY --chown`, `USER 1001`, `RUN` as that user).
//! The bases are made on this machine by `hack/node/capability-image.sh`,
//! which the test runs. Each pod's log is kept in `target/capabilities/`.
//!
//! Each set runs with two commands: Buildah as is, and with `--cap-drop`
//! for each capability Buildah hands RUN processes by default
//! (containers.conf `default_capabilities`) that the container's bounding
//! set lacks. The test checks its model against the node: the bounding set
//! each container reports must be CRI-O's default list plus the admitted
//! `add` minus the admitted `drop`, and the image's containers.conf must
//! list the defaults below.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use buildpolicy_api::keys::{ADMITTED_SCC_ANNOTATION, REQUIRED_SCC_ANNOTATION};
use buildpolicy_api::{BuildPolicySpec, Isolation, SecurityContextConstraints};
// CRI-O's `default_capabilities` on the node (OpenShift's list, written by
// `hack/node/crio.sh`) and what Buildah gives RUN processes
// (`default_capabilities` of the image's containers.conf) are the policy
// crate's, the advice's own assumptions: both are checked in every pod.
use buildpolicy_policy::buildah::{
    BUILDAH_RUN_CAPABILITIES as BUILDAH_RUN_DEFAULTS, RUNTIME_DEFAULT_CAPABILITIES as CRIO_DEFAULTS,
};
use buildpolicy_policy::{Owner, render};
use buildpolicy_test_support::scc_admission::{create_pod, webhook_holds_all};
use buildpolicy_test_support::scene::BUILDAH_CAPABILITIES;
use buildpolicy_test_support::{eventually, repo_root, test_labels, with_temp_ns};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// The generated file, relative to the repository root.
const DOC: &str = "docs/capabilities.md";

/// Capabilities a Buildah build may plausibly need beyond the policy's set.
const CANDIDATES: [&str; 6] = [
    "SETFCAP",
    "KILL",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "MKNOD",
];

/// Capability numbers (linux/capability.h), to read `CapBnd`.
const CAPABILITY_BITS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The builds: name, what it shows, Containerfile. The last is shaped like
/// a ModelCar image (files owned by a non-root user, `USER`) with a `RUN`
/// as that user.
const CONTAINERFILES: [(&str, &str, &str); 4] = [
    (
        "copy",
        "FROM an OCI archive + COPY",
        "FROM oci-archive:/bases/busybox.tar\nCOPY hello.txt /hello.txt\n",
    ),
    (
        "run",
        "FROM an OCI archive + COPY + RUN",
        "FROM oci-archive:/bases/busybox.tar\nCOPY hello.txt /hello.txt\nRUN cp /hello.txt /copied.txt\n",
    ),
    (
        "fcap",
        "FROM a base with a file capability + COPY",
        "FROM oci-archive:/bases/fcap.tar\nCOPY hello.txt /hello.txt\n",
    ),
    (
        "user",
        "FROM an OCI archive + COPY --chown + USER + RUN as that user",
        "FROM oci-archive:/bases/busybox.tar\nCOPY --chown=1001:0 hello.txt /models/hello.txt\nUSER 1001\nRUN cat /models/hello.txt\n",
    ),
];

/// The Buildah commands of each case; `$FLAGS` is empty, or the `--cap-drop`
/// flags of the second command.
const BUILD: &str = "buildah bud --storage-driver=vfs --isolation=chroot $FLAGS -f $c.Containerfile -t localhost/capabilities/$c:1 .";
const PUSH: &str =
    "buildah push --storage-driver=vfs localhost/capabilities/$c:1 oci:/tmp/out/$c:1";

/// First error lines that do not say why (see [`pod_script`]), as an
/// extended regular expression.
const LOST_CAUSE: &str = "copier subprocess: EOF|^Error: building at STEP .*: exit status [0-9]+$";

/// Pods running at once: each build is a second or two of one core.
const PARALLEL_PODS: usize = 3;
/// From creating a pod to its end (three builds, ~5 s when alone).
const POD_TIMEOUT: Duration = Duration::from_secs(240);

/// The script each pod runs: its view of itself, then the three builds,
/// each from empty storage, between markers the test parses.
fn pod_script() -> String {
    let mut script = String::from(
        "cd /tmp && mkdir -p ctx && cd ctx\n\
         echo 'hello from the capability matrix' > hello.txt\n",
    );
    for (name, _, containerfile) in CONTAINERFILES {
        writeln!(
            script,
            "printf '{}' > {name}.Containerfile",
            containerfile.replace('\n', "\\n")
        )
        .unwrap();
    }
    script.push_str(
        "echo \"@@ capbnd $(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)\"\n\
         echo \"@@ nonewprivs $(sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status)\"\n\
         echo \"@@ seccomp $(sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status)\"\n\
         echo \"@@ uid_map $(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')\"\n\
         echo \"@@ buildah $(buildah --version)\"\n\
         echo \"@@ buildah-run-defaults $(sed -n '/^default_capabilities = \\[/,/^\\]/p' /usr/share/containers/containers.conf | grep -o '\"[A-Z_]*\"' | tr -d '\"' | tr '\\n' ' ')\"\n",
    );
    // A failed build is tried again (up to four times) when its output lost
    // the cause: Buildah's child sometimes dies before its message reaches
    // the output (`copier subprocess: EOF`, or only `Error: building at
    // STEP ...: exit status 1`). The outcome never changed between tries.
    writeln!(
        script,
        "for c in {}; do\n  \
           a=0\n  \
           while :; do\n    \
             a=$((a+1))\n    \
             rm -rf /var/lib/containers /run/containers /tmp/out; mkdir -p /tmp/out\n    \
             {{ {BUILD} && {PUSH}; }} > /tmp/$c.log 2>&1\n    \
             rc=$?\n    \
             [ $a -eq 1 ] && first=$rc\n    \
             if [ $rc -ne 0 ] && [ $a -lt 4 ] && grep -i -m1 error /tmp/$c.log | \
                grep -qE '{LOST_CAUSE}'; then continue; fi\n    \
             break\n  \
           done\n  \
           echo \"@@ begin $c\"\n  \
           cat /tmp/$c.log\n  \
           echo \"@@ end $c rc=$rc first=$first attempts=$a\"\n\
         done",
        CONTAINERFILES.map(|(name, _, _)| name).join(" ")
    )
    .unwrap();
    script
}

// ------------------------------------------------------------ the matrix ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Host,
    PodUserNs,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Host, Mode::PodUserNs];

    fn isolation(self) -> Isolation {
        match self {
            Mode::Host => Isolation::HostUserNamespace,
            Mode::PodUserNs => Isolation::PodUserNamespace,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Mode::Host => "HostUserNamespace (root in the host's user namespace)",
            Mode::PodUserNs => "PodUserNamespace (`hostUsers: false`)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Mode::Host => "h",
            Mode::PodUserNs => "u",
        }
    }
}

/// One capability set: a label relative to the policy's set, and the set.
#[derive(Clone, Debug)]
struct CapSet {
    label: String,
    caps: Vec<String>,
}

fn with(base: &[String], add: &[&str], remove: &[&str]) -> Vec<String> {
    let mut caps: Vec<String> = base
        .iter()
        .filter(|c| !remove.contains(&c.as_str()))
        .cloned()
        .collect();
    caps.extend(add.iter().map(|c| c.to_string()));
    caps
}

/// The policy's set; it without each of its capabilities, so it is shown
/// to be the smallest; it with each candidate it lacks; it with every one
/// of Buildah's RUN defaults its container lacks (KILL, which the SCC
/// drops, and SETFCAP unless the policy has it), what plain Buildah needs;
/// and, while the policy lacks SETFCAP, it with SETFCAP without each of its
/// capabilities, so that the smallest passing set is shown to be the
/// smallest.
fn capability_sets() -> Vec<CapSet> {
    let policy: Vec<String> = BUILDAH_CAPABILITIES.map(str::to_owned).to_vec();
    let lacks = |cap: &str| !BUILDAH_CAPABILITIES.contains(&cap);
    let mut sets = vec![CapSet {
        label: "policy".into(),
        caps: policy.clone(),
    }];
    for cap in BUILDAH_CAPABILITIES {
        sets.push(CapSet {
            label: format!("policy − {cap}"),
            caps: with(&policy, &[], &[cap]),
        });
    }
    for cap in CANDIDATES.into_iter().filter(|c| lacks(c)) {
        sets.push(CapSet {
            label: format!("policy + {cap}"),
            caps: with(&policy, &[cap], &[]),
        });
    }
    let run_defaults_lacking: Vec<&str> = ["SETFCAP", "KILL"]
        .into_iter()
        .filter(|c| lacks(c))
        .collect();
    if run_defaults_lacking.len() > 1 {
        sets.push(CapSet {
            label: format!("policy + {}", run_defaults_lacking.join(" + ")),
            caps: with(&policy, &run_defaults_lacking, &[]),
        });
    }
    if lacks("SETFCAP") {
        for cap in BUILDAH_CAPABILITIES {
            sets.push(CapSet {
                label: format!("policy + SETFCAP − {cap}"),
                caps: with(&policy, &["SETFCAP"], &[cap]),
            });
        }
    }
    sets
}

/// What one build did.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    passed: bool,
    /// The first line naming an error, normalised (see [`normalise`]);
    /// empty when the build passed.
    error: String,
}

/// One pod: a set in a mode with one of the two commands.
#[derive(Clone, Debug)]
struct Run {
    mode: Mode,
    set: usize,
    cap_drop: bool,
    flags: Vec<String>,
    scc: String,
    /// The container's bounding set as the SCC's admission leaves it.
    bounding: BTreeSet<String>,
}

/// What a pod reported.
#[derive(Clone, Debug)]
struct Report {
    outcomes: BTreeMap<String, Outcome>,
    buildah: String,
    seconds: f64,
}

/// An error line as the table shows it: no timestamps, PIDs or digests,
/// which differ from run to run and machine to machine.
fn normalise(line: &str) -> String {
    let mut line = line.trim().to_owned();
    if let Some(rest) = line.strip_prefix("time=\"")
        && let Some(end) = rest.find("\" ")
    {
        line = rest[end + 2..].to_owned();
    }
    // /proc/<pid>/ -> /proc/N/
    let mut out = String::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("/proc/") {
        out.push_str(&rest[..at + 6]);
        rest = &rest[at + 6..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    // Runs of 12 or more hex digits (layer and image IDs) -> <id>
    let mut result = String::new();
    let mut run = String::new();
    for ch in out.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        if run.len() >= 12 {
            result.push_str("<id>");
        } else {
            result.push_str(&run);
        }
        run.clear();
        result.push(ch);
    }
    result.pop();
    result
}

/// The first line of a failed build's output that names an error, or its
/// last line.
fn first_error(lines: &[&str]) -> String {
    let line = lines
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(lines.last())
        .copied()
        .unwrap_or("(no output)");
    normalise(line)
}

fn parse_log(log: &str) -> (BTreeMap<String, String>, BTreeMap<String, Outcome>) {
    let mut facts = BTreeMap::new();
    let mut outcomes = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in log.lines() {
        if let Some(fact) = line.strip_prefix("@@ ") {
            if let Some(name) = fact.strip_prefix("begin ") {
                current = Some((name.to_owned(), Vec::new()));
            } else if let Some(end) = fact.strip_prefix("end ") {
                let (name, rc) = end.split_once(" rc=").expect("@@ end <case> rc=<n>");
                let mut fields = rc.split_whitespace();
                let rc = fields.next().unwrap_or_default();
                let first = fields.find_map(|f| f.strip_prefix("first=")).unwrap_or(rc);
                assert_eq!(
                    first == "0",
                    rc == "0",
                    "build {name} passed on one try and failed on another"
                );
                let lines = current.take().map(|(_, l)| l).unwrap_or_default();
                let passed = rc == "0";
                let error = if passed {
                    String::new()
                } else {
                    first_error(&lines)
                };
                outcomes.insert(name.to_owned(), Outcome { passed, error });
            } else if let Some((key, value)) = fact.split_once(' ') {
                facts.insert(key.to_owned(), value.trim().to_owned());
            }
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(line);
        }
    }
    (facts, outcomes)
}

fn capabilities_of_mask(hex: &str) -> BTreeSet<String> {
    let mask =
        u64::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("CapBnd {hex:?}: {e}"));
    (0..64)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| {
            CAPABILITY_BITS
                .get(bit)
                .map_or_else(|| format!("CAP_{bit}"), |c| c.to_string())
        })
        .collect()
}

fn strings_at(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------- the pods ----

fn build_pod(
    name: &str,
    image: &str,
    mode: Mode,
    scc: &str,
    caps: &[String],
    flags: &[String],
) -> Pod {
    let mut spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "containers": [{
            "name": "build",
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["sh", "-c", pod_script()],
            "env": [{"name": "FLAGS", "value": flags.join(" ")}],
            // What the ModelCar build step asks for; the SCC adds the rest.
            "securityContext": {"capabilities": {"add": caps}}
        }]
    });
    if mode == Mode::PodUserNs {
        spec["hostUsers"] = json!(false);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {REQUIRED_SCC_ANNOTATION: scc}},
        "spec": spec
    }))
    .expect("a Pod")
}

/// The container's bounding set under the admitted securityContext.
fn bounding_set(admitted: &Pod) -> BTreeSet<String> {
    let pod = serde_json::to_value(admitted).expect("pod as JSON");
    let add = strings_at(&pod, "/spec/containers/0/securityContext/capabilities/add");
    let drop = strings_at(&pod, "/spec/containers/0/securityContext/capabilities/drop");
    buildpolicy_policy::buildah::bounding_set(&add, &drop)
}

/// The securityContexts the SCC's admission gave `admitted`, for the doc;
/// the SELinux level is the namespace's (allocated per namespace), so the
/// doc names it rather than printing this run's.
fn admitted_contexts(admitted: &Pod) -> String {
    let mut pod = serde_json::to_value(admitted).expect("pod as JSON");
    if let Some(level) = pod.pointer_mut("/spec/securityContext/seLinuxOptions/level") {
        *level = json!("<the namespace's MCS level>");
    }
    let mut out = format!(
        "pod `securityContext`: `{}`  \ncontainer `securityContext`: `{}`",
        pod["spec"]["securityContext"], pod["spec"]["containers"][0]["securityContext"]
    );
    if let Some(host_users) = pod["spec"].get("hostUsers") {
        write!(out, "  \npod `hostUsers`: `{host_users}`").unwrap();
    }
    out
}

async fn run_pod(client: &Client, ns: &str, image: &str, sets: &[CapSet], run: &Run) -> Report {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let name = format!(
        "{}-{}-{}",
        run.mode.short(),
        run.set,
        if run.cap_drop { "drop" } else { "plain" }
    );
    let pod = build_pod(
        &name,
        image,
        run.mode,
        &run.scc,
        &sets[run.set].caps,
        &run.flags,
    );
    let started = Instant::now();
    let created = create_pod(client, ns, &pod, false)
        .await
        .unwrap_or_else(|e| panic!("pod {name} was refused: {e}"));
    assert_eq!(
        created.annotations().get(ADMITTED_SCC_ANNOTATION),
        Some(&run.scc),
        "pod {name} got another SCC"
    );
    let done = eventually(&format!("pod {name} to end"), POD_TIMEOUT, || async {
        let pod = pods.get(&name).await.ok()?;
        let status = pod.status.as_ref()?;
        match status.phase.as_deref() {
            Some("Succeeded" | "Failed") => Some(pod),
            _ => None,
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let log = pods
        .logs(&name, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("logs of pod {name}: {e}"));
    let logs = repo_root().join("target/capabilities");
    std::fs::create_dir_all(&logs).expect("creating target/capabilities");
    std::fs::write(logs.join(format!("{name}.log")), &log).expect("writing the pod's log");
    let (facts, outcomes) = parse_log(&log);
    assert_eq!(
        done.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "pod {name} did not run its script to the end:\n{log}"
    );
    assert_eq!(
        outcomes.len(),
        CONTAINERFILES.len(),
        "pod {name} reported {} builds:\n{log}",
        outcomes.len()
    );
    let observed = capabilities_of_mask(facts.get("capbnd").expect("@@ capbnd"));
    assert_eq!(
        observed, run.bounding,
        "pod {name}: the bounding set is not CRI-O's defaults + add - drop"
    );
    let defaults: Vec<&str> = facts
        .get("buildah-run-defaults")
        .map(|d| d.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        defaults, BUILDAH_RUN_DEFAULTS,
        "pod {name}: containers.conf's default_capabilities changed"
    );
    if run.mode == Mode::PodUserNs {
        let map = facts.get("uid_map").cloned().unwrap_or_default();
        assert!(
            !map.starts_with("0 0 "),
            "pod {name} runs in the host's user namespace: uid_map {map}"
        );
    }
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap_or_else(|e| panic!("deleting pod {name}: {e}"));
    eprintln!(
        "[capabilities] {name} ({}, {}): {} in {seconds:.1}s",
        sets[run.set].label,
        if run.cap_drop { "cap-drop" } else { "plain" },
        outcomes
            .iter()
            .map(|(c, o)| format!("{c} {}", if o.passed { "pass" } else { "FAIL" }))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Report {
        outcomes,
        buildah: facts.get("buildah").cloned().unwrap_or_default(),
        seconds,
    }
}

/// Makes the image with the two bases (`hack/node/capability-image.sh`).
fn capability_image() -> String {
    let out = std::process::Command::new(repo_root().join("hack/node/capability-image.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running hack/node/capability-image.sh");
    assert!(out.status.success(), "hack/node/capability-image.sh failed");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

// ------------------------------------------------------------ the doc ----

fn cell(outcome: Option<&Outcome>) -> String {
    match outcome {
        Some(Outcome { passed: true, .. }) => "pass".into(),
        Some(Outcome { error, .. }) => {
            format!("**fail** `{}`", error.replace('|', "\\|").replace('`', "'"))
        }
        None => "-".into(),
    }
}

struct Matrix {
    sets: Vec<CapSet>,
    runs: Vec<Run>,
    reports: Vec<Report>,
    /// The admitted securityContexts for the policy's set, per mode.
    contexts: BTreeMap<Mode, String>,
    node: String,
}

impl Matrix {
    fn report(&self, mode: Mode, set: usize, cap_drop: bool) -> Option<(&Run, &Report)> {
        self.runs
            .iter()
            .zip(&self.reports)
            .find(|(r, _)| r.mode == mode && r.set == set && r.cap_drop == cap_drop)
    }

    fn all_pass(&self, mode: Mode, set: usize, cap_drop: bool) -> bool {
        self.report(mode, set, cap_drop)
            .is_some_and(|(_, r)| r.outcomes.values().all(|o| o.passed))
    }

    /// "all pass", or which builds failed.
    fn summary(&self, mode: Mode, set: usize, cap_drop: bool) -> String {
        let Some((_, report)) = self.report(mode, set, cap_drop) else {
            return "-".into();
        };
        let failed: Vec<String> = CONTAINERFILES
            .iter()
            .filter(|(name, _, _)| !report.outcomes.get(*name).is_some_and(|o| o.passed))
            .map(|(name, _, _)| format!("`{name}`"))
            .collect();
        if failed.is_empty() {
            "all pass".into()
        } else {
            format!("**fail**: {}", failed.join(", "))
        }
    }

    /// The smallest sets (fewest capabilities) with which every build
    /// passes in every mode, per command.
    fn smallest(&self, cap_drop: bool) -> Vec<usize> {
        let passing: Vec<usize> = (0..self.sets.len())
            .filter(|&s| Mode::ALL.iter().all(|&m| self.all_pass(m, s, cap_drop)))
            .collect();
        let Some(fewest) = passing.iter().map(|&s| self.sets[s].caps.len()).min() else {
            return Vec::new();
        };
        passing
            .into_iter()
            .filter(|&s| self.sets[s].caps.len() == fewest)
            .collect()
    }

    fn flags_of(&self, set: usize) -> BTreeMap<Mode, String> {
        Mode::ALL
            .iter()
            .filter_map(|&m| {
                self.report(m, set, true)
                    .map(|(run, _)| (m, run.flags.join(" ")))
            })
            .collect()
    }

    fn markdown(&self) -> String {
        let mut doc = String::new();
        let policy = BUILDAH_CAPABILITIES.join(", ");
        let buildah = self
            .reports
            .first()
            .map(|r| r.buildah.clone())
            .unwrap_or_default();
        writeln!(
            doc,
            "# Capabilities a Buildah build needs, measured on a real node\n\n\
             <!-- Generated by tests/capabilities.rs: do not edit. Regenerate (as root, with the node):\n\
             LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/local-cluster.sh up --node --no-tekton\n\
             BLESS=1 LOCAL_CLUSTER_DIR=$PWD/target/node-cluster cargo test -p buildpolicy-integration-tests --test capabilities -- --ignored\n\
             -->\n\n\
             Node: {}; {buildah} (Debian), `--storage-driver=vfs --isolation=chroot`.\n\
             The policy's set (`config/samples/modelcar-build.yaml`): **{policy}**.\n\n\
             Each row is a BuildPolicy with that set: the SCC the operator renders for it was\n\
             created, and build pods pinned to it (`openshift.io/required-scc`) asking for\n\
             the set in `capabilities.add` (as the ModelCar build step does) were admitted\n\
             by OpenShift's SCC admission (the local control plane's webhook), which added\n\
             the drops (KILL, MKNOD, and SETUID/SETGID unless asked for), seccomp\n\
             `RuntimeDefault`, `allowPrivilegeEscalation: false` when neither SETUID nor\n\
             SETGID is allowed, and the user settings of the mode. The container's bounding\n\
             set is CRI-O's default list ({}) plus `add` minus `drop` (checked in every pod).\n\n\
             Each build starts from empty storage and runs, then pushes to an OCI layout\n\
             (as the ModelCar Task does):\n\n\
             ```sh\n{}\n{}\n```\n\n\
             - **plain**: `$FLAGS` empty.\n\
             - **`--cap-drop`**: `$FLAGS` drops each capability that Buildah hands RUN\n\
             processes by default (containers.conf `default_capabilities`: {}) and the\n\
             container's bounding set lacks; the flags are in the table.\n\n\
             A failure shows the first line of Buildah's output naming an error, verbatim\n\
             except timestamps, PIDs (`/proc/N/`) and IDs (`<id>`). A failed build whose\n\
             output lost the cause (Buildah's child died before its message got out:\n\
             `copier subprocess: EOF`, or only `Error: building at STEP ...: exit status 1`)\n\
             is tried again, up to four times; the outcome never changed between tries.\n",
            self.node,
            CRIO_DEFAULTS.join(", "),
            BUILD.replace("$c", "<case>"),
            PUSH.replace("$c", "<case>"),
            BUILDAH_RUN_DEFAULTS.join(", "),
        )
        .unwrap();
        doc.push_str("## Containerfiles\n\n");
        for (name, what, containerfile) in CONTAINERFILES {
            writeln!(
                doc,
                "`{name}`: {what}\n\n```Dockerfile\n{containerfile}```\n"
            )
            .unwrap();
        }
        doc.push_str(
            "`/bases/busybox.tar` is `localhost/buildpolicy/shell:busybox` as an OCI archive;\n\
             `/bases/fcap.tar` adds `/bin/fcap` with `cap_net_raw+ep` (a `security.capability`\n\
             xattr, as UBI images ship on some files); both made on the machine by\n\
             `hack/node/capability-image.sh`.\n\n",
        );

        doc.push_str("## Result: the smallest set\n\n");
        for (cap_drop, command) in [
            (false, "plain Buildah"),
            (true, "Buildah with `--cap-drop`"),
        ] {
            let smallest = self.smallest(cap_drop);
            if smallest.is_empty() {
                writeln!(
                    doc,
                    "- {command}: no set in this matrix passes every build in both modes."
                )
                .unwrap();
            }
            for s in smallest {
                let set = &self.sets[s];
                write!(
                    doc,
                    "- {command}: **{}** ({}) passes every build in both modes",
                    set.caps.join(", "),
                    set.label
                )
                .unwrap();
                if cap_drop {
                    let flags = self.flags_of(s);
                    let flags: BTreeSet<&String> = flags.values().collect();
                    let flags: Vec<String> = flags.into_iter().map(|f| format!("`{f}`")).collect();
                    write!(doc, ", with {}", flags.join(" / ")).unwrap();
                }
                doc.push_str(".\n");
            }
        }
        doc.push_str(
            "\n## Overview\n\n\
             Which builds fail, per set, mode and command (details and errors below).\n\n\
             | capabilities | HostUserNamespace, plain | HostUserNamespace, `--cap-drop` | PodUserNamespace, plain | PodUserNamespace, `--cap-drop` |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        for (s, set) in self.sets.iter().enumerate() {
            write!(doc, "| {} |", set.label).unwrap();
            for mode in Mode::ALL {
                for cap_drop in [false, true] {
                    write!(doc, " {} |", self.summary(mode, s, cap_drop)).unwrap();
                }
            }
            doc.push('\n');
        }
        doc.push('\n');

        for mode in Mode::ALL {
            writeln!(doc, "## {}\n\n{}\n", mode.title(), self.contexts[&mode]).unwrap();
            for (name, what, _) in CONTAINERFILES {
                writeln!(
                    doc,
                    "### {}: `{name}`\n\n\
                     | capabilities | plain | `--cap-drop` flags | with `--cap-drop` |\n\
                     | --- | --- | --- | --- |",
                    what
                )
                .unwrap();
                for (s, set) in self.sets.iter().enumerate() {
                    let plain = self
                        .report(mode, s, false)
                        .and_then(|(_, r)| r.outcomes.get(name));
                    let dropped = self.report(mode, s, true);
                    let flags = dropped
                        .map(|(run, _)| run.flags.join(" "))
                        .unwrap_or_default();
                    let flags = if flags.is_empty() {
                        "(none)".to_owned()
                    } else {
                        format!("`{flags}`")
                    };
                    writeln!(
                        doc,
                        "| {} | {} | {} | {} |",
                        set.label,
                        cell(plain),
                        flags,
                        cell(dropped.and_then(|(_, r)| r.outcomes.get(name)))
                    )
                    .unwrap();
                }
                doc.push('\n');
            }
        }
        doc.push_str("## The sets\n\n| label | capabilities |\n| --- | --- |\n");
        for set in &self.sets {
            writeln!(doc, "| {} | {} |", set.label, set.caps.join(", ")).unwrap();
        }
        doc
    }
}

// ------------------------------------------------------------ the test ----

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the node: LOCAL_CLUSTER_DIR=$PWD/target/node-cluster hack/local-cluster.sh up --node (as root)"]
async fn buildah_capability_matrix() {
    let image = capability_image();
    with_temp_ns(|client, ns| async move {
        let started = Instant::now();
        let node = Api::<Node>::all(client.clone())
            .get("localhost")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no node localhost ({e}): start the cluster with a node, \
                     hack/local-cluster.sh up --node"
                )
            });
        let info = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .expect("nodeInfo");
        let node_line = format!(
            "kubelet {}, {}",
            info.kubelet_version, info.container_runtime_version
        );
        eprintln!(
            "[capabilities] node localhost: {node_line}, kernel {}",
            info.kernel_version
        );
        eventually(
            "the namespace's default service account",
            Duration::from_secs(30),
            || async {
                Api::<ServiceAccount>::namespaced(client.clone(), &ns)
                    .get("default")
                    .await
                    .ok()
            },
        )
        .await;

        // One SCC per mode and set, rendered as the operator renders it.
        let sets = capability_sets();
        let scc_api = Api::<SecurityContextConstraints>::all(client.clone());
        let mut sccs = BTreeMap::new();
        for mode in Mode::ALL {
            for (s, set) in sets.iter().enumerate() {
                let spec = BuildPolicySpec {
                    namespace: ns.clone(),
                    service_account_name: "default".into(),
                    capabilities: set.caps.clone(),
                    tasks: vec!["build".into()],
                    isolation: mode.isolation(),
                    task_digests: Default::default(),
                };
                let owner = Owner {
                    name: format!("{ns}-{}{s}", mode.short()),
                    uid: None,
                };
                let mut scc = render(&owner, &spec).scc;
                scc.metadata
                    .labels
                    .get_or_insert_default()
                    .extend(test_labels(&ns));
                let created = scc_api
                    .create(&PostParams::default(), &scc)
                    .await
                    .unwrap_or_else(|e| panic!("creating SCC for {}: {e}", set.label));
                sccs.insert((mode, s), created.name_any());
            }
        }
        let names: Vec<&str> = sccs.values().map(String::as_str).collect();
        webhook_holds_all(&client, &names).await;

        // The admitted securityContext of each set (server-side dry run),
        // and from it the --cap-drop flags of the second command.
        let mut runs = Vec::new();
        let mut contexts = BTreeMap::new();
        for ((mode, s), scc) in &sccs {
            let probe = build_pod("probe", &image, *mode, scc, &sets[*s].caps, &[]);
            let admitted = create_pod(&client, &ns, &probe, true)
                .await
                .unwrap_or_else(|e| panic!("{} in {mode:?} was refused: {e}", sets[*s].label));
            if *s == 0 {
                contexts.insert(*mode, admitted_contexts(&admitted));
            }
            let bounding = bounding_set(&admitted);
            let flags: Vec<String> = BUILDAH_RUN_DEFAULTS
                .iter()
                .filter(|c| !bounding.contains(**c))
                .map(|c| format!("--cap-drop={c}"))
                .collect();
            for cap_drop in [false, true] {
                runs.push(Run {
                    mode: *mode,
                    set: *s,
                    cap_drop,
                    flags: if cap_drop { flags.clone() } else { Vec::new() },
                    scc: scc.clone(),
                    bounding: bounding.clone(),
                });
            }
        }

        let reports: Vec<Report> = futures::stream::iter(runs.iter())
            .map(|run| run_pod(&client, &ns, &image, &sets, run))
            .buffered(PARALLEL_PODS)
            .collect()
            .await;
        let pod_seconds: f64 = reports.iter().map(|r| r.seconds).sum();
        eprintln!(
            "[capabilities] {} pods, {} builds in {:.0}s ({pod_seconds:.0} pod-seconds)",
            reports.len(),
            reports.len() * CONTAINERFILES.len(),
            started.elapsed().as_secs_f64()
        );
        for scc in sccs.values() {
            scc_api
                .delete(scc, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("deleting SCC {scc}: {e}"));
        }

        let matrix = Matrix {
            sets,
            runs,
            reports,
            contexts,
            node: node_line,
        };
        let doc = matrix.markdown();
        let path = repo_root().join(DOC);
        if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &doc).unwrap_or_else(|e| panic!("writing {DOC}: {e}"));
            eprintln!("[capabilities] wrote {DOC}");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != doc {
            let generated = repo_root().join("target/capabilities/capabilities.md");
            std::fs::write(&generated, &doc).expect("writing target/capabilities/capabilities.md");
            panic!(
                "{DOC} differs from what the node says (written to {}); \
                 diff them, and rewrite it with BLESS=1 if the change is right",
                generated.display()
            );
        }
    })
    .await;
}

#[test]
fn error_lines_are_normalised() {
    assert_eq!(
        normalise(
            r#"time="2026-12-07T22:43:12Z" level=error msg="While applying layer: ApplyLayer stdout:  stderr: lsetxattr /bin/fcap: operation not permitted exit status 1""#
        ),
        r#"level=error msg="While applying layer: ApplyLayer stdout:  stderr: lsetxattr /bin/fcap: operation not permitted exit status 1""#
    );
    assert_eq!(
        normalise(
            r#"error writing "0 0 4294967295\n" to /proc/1234/uid_map: write /proc/1234/uid_map: operation not permitted"#
        ),
        r#"error writing "0 0 4294967295\n" to /proc/N/uid_map: write /proc/N/uid_map: operation not permitted"#
    );
    assert_eq!(
        normalise(
            "adding layer with blob \"sha256:34e1ca0d67b17eeb8a496fcc612aa793b7f1c9670f8353cd4f73abe3daa3a2f5\": x"
        ),
        "adding layer with blob \"sha256:<id>\": x"
    );
}

#[test]
fn capability_masks_read_as_names() {
    let caps = capabilities_of_mask("00000000002405db");
    let expected: BTreeSet<String> = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "NET_BIND_SERVICE",
        "SYS_CHROOT",
        "SYS_ADMIN",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(caps, expected);
}

#[test]
fn capability_sets_are_distinct_and_repeat_no_capability() {
    let sets = capability_sets();
    assert_eq!(sets[0].caps, BUILDAH_CAPABILITIES);
    let mut seen = BTreeSet::new();
    for set in &sets {
        let caps: BTreeSet<&String> = set.caps.iter().collect();
        assert_eq!(
            caps.len(),
            set.caps.len(),
            "{} repeats a capability",
            set.label
        );
        assert!(seen.insert(caps), "{} is another row's set", set.label);
    }
}

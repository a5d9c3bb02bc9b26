//! Seeded generators of SCCs, pods and Tasks for the differential test of
//! the SCC admission model (`tests/scc_differential.rs`): random but valid
//! SCCs (entirely random, or a default SCC with a few fields changed, or
//! one rendered from a BuildPolicy), pods that ask for something unusual
//! more or less often, and Tekton Task specs. Deterministic for a seed.

use std::collections::BTreeMap;

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::scc::{
    GroupStrategyOptions, IdRange, RunAsUserStrategyOptions, SELinuxContextStrategyOptions,
};
use buildpolicy_api::{BuildPolicySpec, Isolation, SecurityContextConstraints};
use buildpolicy_policy::admission::NamespaceAllocation;
use buildpolicy_policy::render::{Owner, render};
use k8s_openapi::api::core::v1::{Pod, SELinuxOptions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::strings;

/// The build service account of every batch.
pub const BUILDER: &str = "builder";

pub const CAPABILITIES: [&str; 14] = [
    "SETUID",
    "SETGID",
    "SYS_ADMIN",
    "SYS_CHROOT",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "KILL",
    "MKNOD",
    "SETFCAP",
    "CHOWN",
    "CAP_SYS_ADMIN",
    "CAP_NET_RAW",
    "net_raw",
];

pub const VOLUME_TYPES: [&str; 11] = [
    "configMap",
    "downwardAPI",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "secret",
    "hostPath",
    "nfs",
    "csi",
    "ephemeral",
    "image",
];

// --------------------------------------------------------- generation ----

/// Draws values from proptest strategies with a seeded, deterministic RNG.
pub struct Gen {
    runner: TestRunner,
    /// How often the pod being generated asks for something unusual
    /// ([`Gen::maybe`]): each pod gets its own, so that some pods are
    /// ordinary enough for most SCCs to admit and others ask for much.
    heat: f64,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&seed.rotate_left(29).to_le_bytes());
        Self {
            runner: TestRunner::new_with_rng(
                Config::default(),
                TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
            ),
            heat: 1.0,
        }
    }

    pub fn draw<S: Strategy>(&mut self, strategy: S) -> S::Value {
        strategy
            .new_tree(&mut self.runner)
            .expect("a simple strategy always yields a value")
            .current()
    }

    pub fn chance(&mut self, probability: f64) -> bool {
        self.draw(proptest::bool::weighted(probability))
    }

    /// `chance(probability)`, scaled by the current pod's heat.
    pub fn maybe(&mut self, probability: f64) -> bool {
        self.chance(probability * self.heat)
    }

    pub fn warm_up(&mut self) {
        self.heat = self.pick(&[0.2, 0.5, 1.0]);
    }

    pub fn pick<T: Clone + std::fmt::Debug + 'static>(&mut self, items: &[T]) -> T {
        self.draw(proptest::sample::select(items.to_vec()))
    }

    pub fn int(&mut self, range: std::ops::RangeInclusive<i64>) -> i64 {
        self.draw(range)
    }

    /// Up to `max` distinct items, in their order in `items`.
    pub fn some<T: Clone + std::fmt::Debug + 'static>(
        &mut self,
        items: &[T],
        min: usize,
        max: usize,
    ) -> Vec<T> {
        let max = max.min(items.len());
        self.draw(proptest::sample::subsequence(items.to_vec(), min..=max))
    }
}

/// What the namespace allocator gave the batch namespace
/// (`openshift.io/sa.scc.*` annotations, read by the model's
/// [`NamespaceAllocation`]): the generator aims at, and just outside, these
/// values.
#[derive(Clone, Debug)]
pub struct Allocation {
    pub uid_start: i64,
    pub uid_end: i64,
    pub groups_start: i64,
    pub mcs: String,
}

impl Allocation {
    pub fn of(ns: &NamespaceAllocation) -> Self {
        Self {
            uid_start: ns.uids.min,
            uid_end: ns.uids.max,
            groups_start: ns.fs_group().min,
            mcs: ns.mcs_level.clone(),
        }
    }

    /// The namespace's MCS level with its categories in the other order.
    pub fn mcs_reordered(&self) -> String {
        match self.mcs.split_once(':') {
            Some((sensitivity, categories)) => {
                let mut c: Vec<&str> = categories.split(',').collect();
                c.reverse();
                format!("{sensitivity}:{}", c.join(","))
            }
            None => self.mcs.clone(),
        }
    }

    pub fn uid(&self, g: &mut Gen) -> i64 {
        let inside = g.int(self.uid_start..=self.uid_end);
        // Inside restricted-v3's and nested-container's fixed range.
        let small = g.int(1000..=65534);
        g.pick(&[
            0,
            0,
            1000,
            small,
            65534,
            self.uid_start,
            self.uid_end,
            self.uid_end + 1,
            inside,
            inside,
            inside,
            inside,
        ])
    }

    pub fn group(&self, g: &mut Gen) -> i64 {
        g.pick(&[
            0,
            5,
            1000,
            self.groups_start,
            self.groups_start,
            self.groups_start + 1,
        ])
    }

    pub fn se_linux(&self, g: &mut Gen) -> Value {
        let level = g.pick(&[
            self.mcs.clone(),
            self.mcs.clone(),
            self.mcs_reordered(),
            "s0:c1,c2".to_owned(),
            "s0:c5,c26".to_owned(),
        ]);
        match g.int(0..=6) {
            0 => json!({"type": "spc_t"}),
            1 => json!({"type": "spc_t", "level": level}),
            2 => json!({"type": "container_engine_t", "level": level}),
            3 => json!({"user": "system_u", "level": level}),
            _ => json!({"level": level}),
        }
    }
}

/// An SCC with random but valid fields (valid as OpenShift's SCC validation
/// has them: no capability both allowed or added and required to be
/// dropped, no required drops next to `*`, a default of privilege
/// escalation only where escalation is allowed, `none` only alone, ranges
/// with min ≤ max, priority ≥ 0).
pub fn random_scc(
    g: &mut Gen,
    name: &str,
    alloc: &Allocation,
    defaults: &BTreeMap<String, SecurityContextConstraints>,
) -> SecurityContextConstraints {
    let wild = wild_scc(g, name, alloc);
    if g.chance(0.5) {
        return wild;
    }
    // A default SCC with one to three of its fields (or groups of fields that
    // OpenShift validates together) taken from the wild one: close enough to
    // the defaults to admit ordinary pods, and to tie or race them in order.
    let base = g.pick(&[
        "restricted-v2",
        "restricted-v2",
        "restricted-v3",
        "anyuid",
        "nonroot-v2",
        "hostnetwork-v2",
        "nested-container",
        "privileged",
    ]);
    let mut scc = defaults[base].clone();
    scc.metadata = SecurityContextConstraints::named(name).metadata;
    scc.users = Some(Vec::new());
    scc.groups = Some(Vec::new());
    let fields = [
        "priority",
        "host",
        "capabilities",
        "runAsUser",
        "seLinuxContext",
        "groups",
        "seccompProfiles",
        "volumes",
        "userNamespaceLevel",
        "escalation",
        "readOnlyRootFilesystem",
    ];
    for field in g.some(&fields, 1, 3) {
        match field {
            "priority" => scc.priority = wild.priority,
            "host" => {
                scc.allow_privileged_container = wild.allow_privileged_container;
                scc.allow_host_network = wild.allow_host_network;
                scc.allow_host_ports = wild.allow_host_ports;
                scc.allow_host_pid = wild.allow_host_pid;
                scc.allow_host_ipc = wild.allow_host_ipc;
            }
            "capabilities" => {
                scc.allowed_capabilities
                    .clone_from(&wild.allowed_capabilities);
                scc.default_add_capabilities
                    .clone_from(&wild.default_add_capabilities);
                scc.required_drop_capabilities
                    .clone_from(&wild.required_drop_capabilities);
            }
            "runAsUser" => scc.run_as_user.clone_from(&wild.run_as_user),
            "seLinuxContext" => scc.se_linux_context.clone_from(&wild.se_linux_context),
            "groups" => {
                scc.fs_group.clone_from(&wild.fs_group);
                scc.supplemental_groups
                    .clone_from(&wild.supplemental_groups);
            }
            "seccompProfiles" => scc.seccomp_profiles.clone_from(&wild.seccomp_profiles),
            "volumes" => {
                scc.volumes.clone_from(&wild.volumes);
                scc.allow_host_dir_volume_plugin = wild.allow_host_dir_volume_plugin;
            }
            "userNamespaceLevel" => scc
                .user_namespace_level
                .clone_from(&wild.user_namespace_level),
            "escalation" => {
                scc.allow_privilege_escalation = wild.allow_privilege_escalation;
                scc.default_allow_privilege_escalation = wild.default_allow_privilege_escalation;
            }
            _ => scc.read_only_root_filesystem = wild.read_only_root_filesystem,
        }
    }
    scc
}

/// An SCC with every field random.
pub fn wild_scc(g: &mut Gen, name: &str, alloc: &Allocation) -> SecurityContextConstraints {
    let mut scc = SecurityContextConstraints::named(name);
    scc.priority = g.pick(&[None, None, None, Some(0), Some(5), Some(10)]);
    scc.allow_privileged_container = g.chance(0.15);
    // Host network without host ports is the interesting one: the API
    // server turns a host network pod's container ports into host ports.
    let (network, ports, pid, ipc) = match g.int(0..=9) {
        0..=4 => (false, false, false, false),
        5 | 6 => (true, false, false, false),
        7 => (true, true, false, false),
        8 => (false, false, true, true),
        _ => (g.chance(0.5), g.chance(0.5), g.chance(0.5), g.chance(0.5)),
    };
    scc.allow_host_network = network;
    scc.allow_host_ports = ports;
    scc.allow_host_pid = pid;
    scc.allow_host_ipc = ipc;
    scc.allow_host_dir_volume_plugin = g.chance(0.15);
    scc.read_only_root_filesystem = g.chance(0.15);

    let allow_all = g.chance(0.1);
    scc.allowed_capabilities = if allow_all {
        Some(strings(["*"]))
    } else if g.chance(0.3) {
        None
    } else {
        Some(strings(g.some(&CAPABILITIES, 1, 4)))
    };
    scc.default_add_capabilities = g.chance(0.3).then(|| strings(g.some(&CAPABILITIES, 1, 2)));
    scc.required_drop_capabilities = match g.int(0..=2) {
        _ if allow_all => None,
        0 => None,
        1 => Some(strings([g.pick(&["ALL", "ALL", "all"])])),
        _ => {
            let granted: Vec<&String> = scc
                .allowed_capabilities
                .iter()
                .chain(scc.default_add_capabilities.iter())
                .flatten()
                .collect();
            let droppable: Vec<&str> = CAPABILITIES
                .iter()
                .copied()
                .filter(|c| !granted.iter().any(|g| g.as_str() == *c))
                .collect();
            Some(strings(g.some(&droppable, 1, 3)))
        }
    };

    scc.run_as_user = Some(match g.int(0..=6) {
        0 | 1 => user_strategy("RunAsAny", None, None),
        2 => user_strategy("MustRunAsNonRoot", None, None),
        3 => user_strategy("MustRunAsRange", None, None),
        4 => {
            let (min, max) = g.pick(&[(1000, 65534), (0, 65534), (alloc.uid_start, alloc.uid_end)]);
            user_strategy("MustRunAsRange", Some(min), Some(max))
        }
        _ => RunAsUserStrategyOptions {
            type_: Some("MustRunAs".into()),
            uid: Some(g.pick(&[0, 1000, alloc.uid_start])),
            ..RunAsUserStrategyOptions::default()
        },
    });
    scc.se_linux_context = Some(match g.int(0..=5) {
        0 => SELinuxContextStrategyOptions {
            type_: Some("RunAsAny".into()),
            se_linux_options: None,
        },
        1 => SELinuxContextStrategyOptions {
            type_: Some("MustRunAs".into()),
            se_linux_options: None,
        },
        2 => se_linux_strategy(None, Some("container_engine_t")),
        3 => se_linux_strategy(Some("s0:c1,c2"), None),
        4 => SELinuxContextStrategyOptions {
            type_: Some("MustRunAs".into()),
            se_linux_options: Some(SELinuxOptions {
                user: Some("system_u".into()),
                ..SELinuxOptions::default()
            }),
        },
        _ => se_linux_strategy(Some("s0:c5,c26"), Some("spc_t")),
    });
    scc.fs_group = group_strategy(g, alloc);
    scc.supplemental_groups = group_strategy(g, alloc);
    scc.seccomp_profiles = g.pick(&[
        None,
        Some(strings(["runtime/default"])),
        Some(strings(["*"])),
        Some(strings(["runtime/default", "unconfined"])),
        Some(strings(["localhost/profile.json"])),
        Some(strings(["unconfined"])),
        Some(strings(["localhost/profile.json", "runtime/default"])),
        Some(strings(["docker/default"])),
    ]);
    scc.volumes = match g.int(0..=7) {
        0 => None,
        1 => Some(strings(["*"])),
        2 => Some(Vec::new()),
        3 => Some(strings(g.some(&VOLUME_TYPES, 1, 4))),
        _ => Some(strings(g.some(&VOLUME_TYPES, 6, 11))),
    };
    scc.user_namespace_level = g
        .pick(&[
            None,
            None,
            None,
            Some("AllowHostLevel"),
            Some("RequirePodLevel"),
        ])
        .map(str::to_owned);
    scc.allow_privilege_escalation = g.pick(&[None, Some(true), Some(false)]);
    scc.default_allow_privilege_escalation = if scc.allow_privilege_escalation == Some(false) {
        g.pick(&[None, Some(false)])
    } else {
        g.pick(&[None, None, Some(false), Some(true)])
    };
    scc.users = Some(Vec::new());
    scc.groups = Some(Vec::new());
    scc
}

pub fn user_strategy(kind: &str, min: Option<i64>, max: Option<i64>) -> RunAsUserStrategyOptions {
    RunAsUserStrategyOptions {
        type_: Some(kind.into()),
        uid: None,
        uid_range_min: min,
        uid_range_max: max,
    }
}

pub fn se_linux_strategy(
    level: Option<&str>,
    type_: Option<&str>,
) -> SELinuxContextStrategyOptions {
    SELinuxContextStrategyOptions {
        type_: Some("MustRunAs".into()),
        se_linux_options: Some(SELinuxOptions {
            level: level.map(str::to_owned),
            type_: type_.map(str::to_owned),
            ..SELinuxOptions::default()
        }),
    }
}

pub fn group_strategy(g: &mut Gen, alloc: &Allocation) -> Option<GroupStrategyOptions> {
    let must = |ranges: Option<Vec<IdRange>>| GroupStrategyOptions {
        type_: Some("MustRunAs".into()),
        ranges,
    };
    match g.int(0..=4) {
        0 => None,
        1 => Some(GroupStrategyOptions {
            type_: Some("RunAsAny".into()),
            ranges: None,
        }),
        2 => Some(must(None)),
        3 => Some(must(Some(vec![IdRange {
            min: 1000,
            max: 65534,
        }]))),
        _ => Some(must(Some(vec![
            IdRange {
                min: alloc.groups_start,
                max: alloc.groups_start + 1000,
            },
            IdRange { min: 5, max: 5 },
        ]))),
    }
}

/// The SCC a BuildPolicy with random capabilities renders in one of its
/// isolation modes.
pub fn rendered_scc(g: &mut Gen, policy: &str) -> SecurityContextConstraints {
    let capabilities = g.some(
        &[
            "SETUID",
            "SETGID",
            "SYS_ADMIN",
            "SYS_CHROOT",
            "SETFCAP",
            "NET_BIND_SERVICE",
        ],
        1,
        4,
    );
    let spec = BuildPolicySpec {
        namespace: "unused".into(),
        service_account_name: BUILDER.into(),
        capabilities: strings(&capabilities),
        tasks: vec!["build".into()],
        isolation: g.pick(&Isolation::ALL),
        task_digests: Default::default(),
    };
    let owner = Owner {
        name: policy.to_owned(),
        uid: None,
    };
    let mut scc = render(&owner, &spec).scc;
    // Only the test's labels: no operator in another test may take it for its own.
    scc.metadata.labels = None;
    scc
}

/// A container or step securityContext, or none.
pub fn random_container_security_context(g: &mut Gen, alloc: &Allocation) -> Option<Value> {
    if g.chance(0.3) {
        return None;
    }
    let mut sc = json!({});
    if g.maybe(0.25) {
        sc["privileged"] = json!(g.chance(0.6));
    }
    if g.maybe(0.5) {
        sc["allowPrivilegeEscalation"] = json!(g.chance(0.4));
    }
    let mut caps = json!({});
    if g.maybe(0.35) {
        caps["add"] = json!(g.some(&CAPABILITIES, 1, 2));
    }
    match g.int(0..=5) {
        0 | 1 => caps["drop"] = json!(["ALL"]),
        2 => caps["drop"] = json!(g.some(&CAPABILITIES, 1, 2)),
        _ => {}
    }
    if caps != json!({}) {
        sc["capabilities"] = caps;
    }
    if g.maybe(0.35) {
        sc["runAsUser"] = json!(alloc.uid(g));
    }
    if g.chance(0.3) {
        sc["runAsNonRoot"] = json!(!g.maybe(0.5));
    }
    if g.chance(0.3) {
        sc["readOnlyRootFilesystem"] = json!(!g.maybe(0.5));
    }
    if g.maybe(0.25) {
        sc["seccompProfile"] = random_seccomp(g);
    }
    if g.maybe(0.2) {
        sc["seLinuxOptions"] = alloc.se_linux(g);
    }
    Some(sc)
}

pub fn random_seccomp(g: &mut Gen) -> Value {
    g.pick(&[
        json!({"type": "RuntimeDefault"}),
        json!({"type": "RuntimeDefault"}),
        json!({"type": "Unconfined"}),
        json!({"type": "Localhost", "localhostProfile": "profile.json"}),
        json!({"type": "Localhost", "localhostProfile": "other.json"}),
    ])
}

pub fn random_volume(g: &mut Gen, name: &str) -> Value {
    let ordinary = [
        json!({"emptyDir": {}}),
        json!({"configMap": {"name": "settings"}}),
        json!({"secret": {"secretName": "credentials"}}),
        json!({"persistentVolumeClaim": {"claimName": "data"}}),
    ];
    if !g.maybe(0.7) {
        let mut volume = g.pick(&ordinary);
        volume["name"] = json!(name);
        return volume;
    }
    let mut volume = g.pick(&[
        json!({"emptyDir": {}}),
        json!({"configMap": {"name": "settings"}}),
        json!({"secret": {"secretName": "credentials"}}),
        json!({"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}),
        json!({"projected": {"sources": [{"secret": {"name": "credentials"}}]}}),
        json!({"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
        json!({"projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "vault"}}]}}),
        json!({"persistentVolumeClaim": {"claimName": "data"}}),
        json!({"hostPath": {"path": "/var/tmp"}}),
        json!({"nfs": {"server": "nfs.example.com", "path": "/exports"}}),
        json!({"csi": {"driver": "csi.example.com"}}),
        json!({"ephemeral": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}
        }}}}),
        json!({"image": {"reference": "registry.example.com/data:1"}}),
    ]);
    volume["name"] = json!(name);
    volume
}

/// Where a pod is pinned: mostly the batch's SCCs, sometimes a default SCC
/// (usable or not) or one that does not exist.
pub fn random_pin(g: &mut Gen, batch_sccs: &[String]) -> String {
    if g.chance(0.6) {
        return g.pick(batch_sccs);
    }
    g.pick(&[
        "restricted-v2",
        "restricted-v3",
        "anyuid",
        "privileged",
        "nested-container",
        "no-such-scc",
    ])
    .to_owned()
}

/// A random pod of the batch.
pub fn random_pod(g: &mut Gen, name: &str, alloc: &Allocation, batch_sccs: &[String]) -> Pod {
    g.warm_up();
    let mut annotations = BTreeMap::new();
    if g.chance(0.3) {
        annotations.insert(
            REQUIRED_SCC_ANNOTATION.to_owned(),
            random_pin(g, batch_sccs),
        );
    }
    let mut spec = json!({
        "serviceAccountName": if g.chance(0.85) { BUILDER } else { "default" },
        "restartPolicy": "Never",
    });
    let host_network = g.maybe(0.15);
    let host_namespaces = [
        ("hostNetwork", host_network),
        ("hostPID", g.maybe(0.1)),
        ("hostIPC", g.maybe(0.1)),
    ];
    for (field, on) in host_namespaces {
        if on {
            spec[field] = json!(true);
        }
    }
    let any_host_namespace = host_namespaces.iter().any(|(_, on)| *on);
    // User namespaces cannot be combined with host namespaces (pod validation).
    let host_users = if any_host_namespace {
        g.pick(&[None, Some(true)])
    } else {
        g.pick(&[None, None, None, Some(false), Some(false), Some(true)])
    };
    if let Some(host_users) = host_users {
        spec["hostUsers"] = json!(host_users);
    }
    if g.chance(0.1) {
        spec["automountServiceAccountToken"] = json!(false);
    }
    if g.chance(0.5) {
        let mut sc = json!({});
        if g.maybe(0.5) {
            sc["runAsUser"] = json!(alloc.uid(g));
        }
        if g.chance(0.3) {
            sc["runAsNonRoot"] = json!(!g.maybe(0.5));
        }
        if g.maybe(0.4) {
            sc["fsGroup"] = json!(alloc.group(g));
        }
        if g.maybe(0.3) {
            let first = alloc.group(g);
            let mut groups = vec![first];
            if g.chance(0.4) {
                groups.push(alloc.group(g));
            }
            groups.dedup();
            sc["supplementalGroups"] = json!(groups);
        }
        if g.maybe(0.35) {
            sc["seLinuxOptions"] = alloc.se_linux(g);
        }
        if g.maybe(0.4) {
            sc["seccompProfile"] = random_seccomp(g);
        }
        spec["securityContext"] = sc;
    }
    let mut next_port = 8000;
    let mut container = |g: &mut Gen, name: String| {
        let mut c = json!({"name": name, "image": "registry.example.com/app:1"});
        if let Some(sc) = random_container_security_context(g, alloc) {
            c["securityContext"] = sc;
        }
        if g.chance(if host_network { 0.5 } else { 0.15 }) {
            next_port += 1;
            let mut port = json!({"containerPort": next_port});
            // With hostNetwork, a host port must equal the container port.
            if g.chance(0.4) {
                port["hostPort"] = json!(if host_network {
                    next_port
                } else {
                    next_port + 1000
                });
            }
            c["ports"] = json!([port]);
        }
        c
    };
    if g.chance(0.25) {
        spec["initContainers"] = json!([container(g, "init".into())]);
    }
    let count = g.int(1..=3);
    spec["containers"] = Value::Array((0..count).map(|i| container(g, format!("c{i}"))).collect());
    let volumes = g.int(0..=3);
    if volumes > 0 {
        spec["volumes"] = Value::Array(
            (0..volumes)
                .map(|i| random_volume(g, &format!("v{i}")))
                .collect(),
        );
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .expect("a generated Pod")
}

/// A random Task spec: one to three steps, sometimes a `stepTemplate`, a
/// sidecar and volumes.
pub fn random_task_spec(g: &mut Gen, alloc: &Allocation) -> Value {
    g.warm_up();
    let mut spec = json!({});
    if g.chance(0.25) {
        // No Localhost profile in the template: merged onto a step's other
        // seccomp type it would make an invalid pod.
        let mut sc = json!({});
        if let Some(escalation) = g.pick(&[None, Some(true), Some(false)]) {
            sc["allowPrivilegeEscalation"] = json!(escalation);
        }
        if g.chance(0.4) {
            sc["capabilities"] = json!({"drop": ["ALL"]});
        }
        if g.chance(0.3) {
            sc["runAsUser"] = json!(alloc.uid(g));
        }
        if g.chance(0.3) {
            sc["readOnlyRootFilesystem"] = json!(g.chance(0.5));
        }
        if g.chance(0.3) {
            sc["seccompProfile"] = json!({"type": g.pick(&["RuntimeDefault", "Unconfined"])});
        }
        spec["stepTemplate"] = json!({"securityContext": sc});
    }
    let steps = g.int(1..=3);
    spec["steps"] = Value::Array(
        (0..steps)
            .map(|i| {
                let mut step =
                    json!({"name": format!("s{i}"), "image": "registry.example.com/step:1"});
                if let Some(sc) = random_container_security_context(g, alloc) {
                    step["securityContext"] = sc;
                }
                step
            })
            .collect(),
    );
    if g.chance(0.15) {
        let mut sidecar = json!({"name": "helper", "image": "registry.example.com/helper:1"});
        if let Some(sc) = random_container_security_context(g, alloc) {
            sidecar["securityContext"] = sc;
        }
        spec["sidecars"] = json!([sidecar]);
    }
    if g.chance(0.3) {
        let count = g.int(1..=2);
        spec["volumes"] = Value::Array(
            (0..count)
                .map(|i| random_volume(g, &format!("task-v{i}")))
                .collect(),
        );
    }
    spec
}

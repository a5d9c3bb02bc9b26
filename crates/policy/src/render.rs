//! The objects one BuildPolicy produces: an SCC, a Role and RoleBinding that
//! let exactly one service account use it, and the pin on each listed Task.
//!
//! Lists are rendered sorted and without empty lists that OpenShift would
//! drop on write, so what is rendered is what the server stores and a
//! comparison with the live object is meaningful.

use std::collections::{BTreeMap, BTreeSet};

use buildpolicy_api::keys::{
    CRIO_USERNS_MODE_ANNOTATION, CRIO_USERNS_MODE_VALUE, FIELD_MANAGER, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, OPENSHIFT_BUILDER_ANNOTATION, POLICY_LABEL, REQUIRED_SCC_ANNOTATION,
    owned_name,
};
use buildpolicy_api::scc::{
    self, GroupStrategyOptions, RunAsUserStrategyOptions, SELinuxContextStrategyOptions,
    SecurityContextConstraints,
};
use buildpolicy_api::{BuildPolicy, BuildPolicySpec, Isolation, tekton};
use k8s_openapi::api::core::v1::SELinuxOptions;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;

/// Capabilities the generated SCC always requires containers to drop, unless
/// the policy asks for them: container runtimes grant some of them by default.
pub const DROPPED_UNLESS_REQUESTED: &[&str] = &["KILL", "MKNOD", "SETGID", "SETUID"];

/// Volume types pods under the generated SCC may use: no host paths, no
/// network file systems, nothing that raises the SCC's restriction score.
pub const VOLUMES: &[&str] = &[
    "configMap",
    "downwardAPI",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// `PodUserNamespace`: the IDs a pod may use inside its user namespace, as
/// OpenShift's `nested-container` SCC allows (0–65534; the kubelet maps them
/// to an unprivileged host range).
pub const USER_NAMESPACE_ID_RANGE: (i64, i64) = (0, 65534);

/// `PodUserNamespace`: the SELinux type of `nested-container`, under which a
/// container engine may mount and unshare inside its user namespace.
pub const USER_NAMESPACE_SELINUX_TYPE: &str = "container_engine_t";

/// The policy an object belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    /// Set for stored policies; `None` renders no ownerReference (offline).
    pub uid: Option<String>,
}

impl Owner {
    /// The owner of objects rendered for a stored (or offline) policy.
    pub fn of(policy: &BuildPolicy) -> Self {
        Self {
            name: policy.name().to_owned(),
            uid: policy.metadata.uid.clone(),
        }
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (POLICY_LABEL.to_owned(), self.name.clone()),
        ])
    }

    pub(crate) fn owner_references(&self) -> Option<Vec<OwnerReference>> {
        let uid = self.uid.clone()?;
        Some(vec![OwnerReference {
            api_version: buildpolicy_api::policy::API_VERSION.to_owned(),
            kind: buildpolicy_api::policy::KIND.to_owned(),
            name: self.name.clone(),
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    }

    fn meta(&self, name: String, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.labels()),
            owner_references: self.owner_references(),
            ..ObjectMeta::default()
        }
    }
}

/// The pin on one Task: the fields the operator owns on it, applied with
/// server-side apply so nothing else on the Task is touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskPin {
    pub namespace: String,
    pub name: String,
    /// Annotations this policy sets on the Task.
    pub annotations: BTreeMap<String, String>,
    /// Labels this policy sets on the Task (they name the policy, so pins can
    /// be found and revoked).
    pub labels: BTreeMap<String, String>,
}

impl TaskPin {
    /// The server-side apply body for this pin.
    pub fn apply_body(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": format!("{}/{}", tekton::GROUP, tekton::VERSION),
            "kind": tekton::KIND,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": self.annotations,
                "labels": self.labels,
            }
        })
    }

    /// The server-side apply body that withdraws this operator's fields from
    /// the Task (the server then removes the ones nobody else owns).
    pub fn withdraw_body(namespace: &str, name: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": format!("{}/{}", tekton::GROUP, tekton::VERSION),
            "kind": tekton::KIND,
            "metadata": { "name": name, "namespace": namespace }
        })
    }

    /// Whether a Task with these labels and annotations already carries the pin.
    pub fn is_satisfied_by(
        &self,
        labels: Option<&BTreeMap<String, String>>,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> bool {
        let contains = |have: Option<&BTreeMap<String, String>>,
                        want: &BTreeMap<String, String>| {
            want.iter()
                .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
        };
        contains(labels, &self.labels) && contains(annotations, &self.annotations)
    }
}

/// The annotation keys `manager` holds on an object through server-side
/// apply, read from its `managedFields` (`f:metadata` / `f:annotations`).
pub fn applied_annotations(meta: &ObjectMeta, manager: &str) -> BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| {
            e.manager.as_deref() == Some(manager) && e.operation.as_deref() == Some("Apply")
        })
        .filter_map(|e| e.fields_v1.as_ref())
        .filter_map(|f| f.0.pointer("/f:metadata/f:annotations")?.as_object())
        .flat_map(|a| {
            a.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_owned)
        })
        .collect()
}

impl TaskPin {
    /// Whether a Task carries exactly this pin: every annotation and label it
    /// asks for, and no annotation the operator applied earlier and no longer
    /// asks for (one of another `spec.isolation` mode). `meta` must keep the
    /// operator's own `managedFields` entry.
    pub fn is_current_on(&self, meta: &ObjectMeta) -> bool {
        self.is_current_with(meta, &applied_annotations(meta, FIELD_MANAGER))
    }

    /// [`TaskPin::is_current_on`], given the annotation keys the operator's
    /// own apply holds (`applied`) rather than reading them from `meta`.
    pub fn is_current_with(&self, meta: &ObjectMeta, applied: &BTreeSet<String>) -> bool {
        self.is_satisfied_by(meta.labels.as_ref(), meta.annotations.as_ref())
            && applied.iter().all(|k| self.annotations.contains_key(k))
    }
}

/// Everything one BuildPolicy produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub scc: SecurityContextConstraints,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub pins: Vec<TaskPin>,
}

/// Builds the objects for a policy. The spec must have passed
/// [`crate::validate`]; rendering never adds anything the spec does not ask for.
pub fn render(owner: &Owner, spec: &BuildPolicySpec) -> Desired {
    let scc_name = owned_name(&owner.name);
    Desired {
        scc: render_scc(owner, &scc_name, spec),
        role: render_role(owner, &scc_name, spec),
        role_binding: render_role_binding(owner, spec),
        pins: render_pins(owner, &scc_name, spec),
    }
}

fn sorted_unique(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

fn render_scc(owner: &Owner, name: &str, spec: &BuildPolicySpec) -> SecurityContextConstraints {
    let allowed = sorted_unique(spec.capabilities.iter().cloned());
    let dropped = sorted_unique(
        DROPPED_UNLESS_REQUESTED
            .iter()
            .filter(|c| !allowed.iter().any(|a| a == *c))
            .map(|c| c.to_string()),
    );
    // newuidmap/newgidmap are setuid binaries: they need no_new_privs off.
    let needs_escalation = allowed.iter().any(|c| c == "SETUID" || c == "SETGID");
    let mut meta = owner.meta(name.to_owned(), None);
    let confinement = match spec.isolation {
        Isolation::HostUserNamespace => "",
        Isolation::PodUserNamespace => {
            " Pods must run in their own user namespace (hostUsers: false); root and the capabilities hold only inside it."
        }
        Isolation::CrioUserNamespace => {
            " The pinned Tasks ask CRI-O for a user namespace (io.kubernetes.cri-o.userns-mode)."
        }
    };
    meta.annotations = Some(BTreeMap::from([(
        "kubernetes.io/description".to_owned(),
        format!(
            "Generated by buildpolicy-operator for BuildPolicy {}: only system:serviceaccount:{}:{} may use it, through RBAC, and only pods of the Tasks pinned to it with openshift.io/required-scc get it.{confinement}",
            owner.name, spec.namespace, spec.service_account_name
        ),
    )]));
    let strategy = |type_: &str| Some(type_.to_owned());
    let id_range = || {
        Some(vec![scc::IdRange {
            min: USER_NAMESPACE_ID_RANGE.0,
            max: USER_NAMESPACE_ID_RANGE.1,
        }])
    };
    // Pod user namespaces (modelled on OpenShift's nested-container SCC):
    // the pod must set hostUsers: false; inside, it may be any uid/gid up to
    // 65534, which the kubelet maps to an unprivileged host range. Elsewhere
    // the build runs in the host's user namespace, as whatever user its
    // image says (Buildah runs as root).
    let (level, se_linux_type, run_as_user, groups) = match spec.isolation {
        Isolation::PodUserNamespace => (
            "RequirePodLevel",
            Some(USER_NAMESPACE_SELINUX_TYPE.to_owned()),
            RunAsUserStrategyOptions {
                type_: strategy("MustRunAsRange"),
                uid_range_min: Some(USER_NAMESPACE_ID_RANGE.0),
                uid_range_max: Some(USER_NAMESPACE_ID_RANGE.1),
                ..RunAsUserStrategyOptions::default()
            },
            GroupStrategyOptions {
                type_: strategy("MustRunAs"),
                ranges: id_range(),
            },
        ),
        Isolation::HostUserNamespace | Isolation::CrioUserNamespace => (
            // The CRD's default, written out so `render` shows it to reviewers.
            "AllowHostLevel",
            None,
            RunAsUserStrategyOptions {
                type_: strategy("RunAsAny"),
                ..RunAsUserStrategyOptions::default()
            },
            GroupStrategyOptions {
                type_: strategy("RunAsAny"),
                ranges: None,
            },
        ),
    };
    SecurityContextConstraints {
        metadata: meta,
        priority: None,
        allow_privileged_container: false,
        default_add_capabilities: None,
        required_drop_capabilities: (!dropped.is_empty()).then_some(dropped),
        allowed_capabilities: Some(allowed),
        allow_host_dir_volume_plugin: false,
        volumes: Some(VOLUMES.iter().map(|v| v.to_string()).collect()),
        allowed_flex_volumes: None,
        allow_host_network: false,
        allow_host_ports: false,
        allow_host_pid: false,
        allow_host_ipc: false,
        user_namespace_level: Some(level.into()),
        default_allow_privilege_escalation: None,
        allow_privilege_escalation: Some(needs_escalation),
        se_linux_context: Some(SELinuxContextStrategyOptions {
            type_: strategy("MustRunAs"),
            se_linux_options: se_linux_type.map(|type_| SELinuxOptions {
                type_: Some(type_),
                ..SELinuxOptions::default()
            }),
        }),
        run_as_user: Some(run_as_user),
        supplemental_groups: Some(groups.clone()),
        fs_group: Some(groups),
        read_only_root_filesystem: false,
        users: Some(Vec::new()),
        groups: Some(Vec::new()),
        seccomp_profiles: Some(vec!["runtime/default".into()]),
        allowed_unsafe_sysctls: None,
        forbidden_sysctls: None,
        ..SecurityContextConstraints::named(name)
    }
}

fn render_role(owner: &Owner, scc_name: &str, spec: &BuildPolicySpec) -> Role {
    Role {
        metadata: owner.meta(owned_name(&owner.name), Some(&spec.namespace)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![scc::GROUP.into()]),
            resources: Some(vec![scc::PLURAL.into()]),
            resource_names: Some(vec![scc_name.to_owned()]),
            verbs: vec!["use".into()],
            non_resource_urls: None,
        }]),
    }
}

fn render_role_binding(owner: &Owner, spec: &BuildPolicySpec) -> RoleBinding {
    RoleBinding {
        metadata: owner.meta(owned_name(&owner.name), Some(&spec.namespace)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: owned_name(&owner.name),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            api_group: None,
            name: spec.service_account_name.clone(),
            namespace: Some(spec.namespace.clone()),
        }]),
    }
}

fn render_pins(owner: &Owner, scc_name: &str, spec: &BuildPolicySpec) -> Vec<TaskPin> {
    sorted_unique(spec.tasks.iter().cloned())
        .into_iter()
        .map(|task| TaskPin {
            namespace: spec.namespace.clone(),
            name: task,
            annotations: pin_annotations(scc_name, spec.isolation),
            labels: BTreeMap::from([(POLICY_LABEL.to_owned(), owner.name.clone())]),
        })
        .collect()
}

/// Every annotation key a pin sets, in any isolation mode: of a Task's
/// annotations, the only ones a pin is compared with.
pub const PIN_ANNOTATION_KEYS: [&str; 3] = [
    REQUIRED_SCC_ANNOTATION,
    CRIO_USERNS_MODE_ANNOTATION,
    OPENSHIFT_BUILDER_ANNOTATION,
];

/// The annotations a pinned Task carries: the SCC pin, and in
/// `CRIOUserNamespace` mode CRI-O's user-namespace request. Tekton copies
/// them to the TaskRun and its pod.
pub fn pin_annotations(scc_name: &str, isolation: Isolation) -> BTreeMap<String, String> {
    let mut annotations =
        BTreeMap::from([(REQUIRED_SCC_ANNOTATION.to_owned(), scc_name.to_owned())]);
    if isolation == Isolation::CrioUserNamespace {
        annotations.insert(
            CRIO_USERNS_MODE_ANNOTATION.to_owned(),
            CRIO_USERNS_MODE_VALUE.to_owned(),
        );
        annotations.insert(OPENSHIFT_BUILDER_ANNOTATION.to_owned(), "true".to_owned());
    }
    annotations
}

/// The rendered objects as one multi-document YAML stream, in apply order.
pub fn to_yaml(desired: &Desired) -> String {
    let mut docs = vec![
        serde_yaml_ng::to_string(&desired.scc).expect("SCC serialises"),
        serde_yaml_ng::to_string(&with_type(
            &desired.role,
            "rbac.authorization.k8s.io/v1",
            "Role",
        ))
        .expect("Role serialises"),
        serde_yaml_ng::to_string(&with_type(
            &desired.role_binding,
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
        ))
        .expect("RoleBinding serialises"),
    ];
    docs.extend(
        desired
            .pins
            .iter()
            .map(|p| serde_yaml_ng::to_string(&p.apply_body()).expect("pin serialises")),
    );
    docs.join("---\n")
}

fn with_type(object: &impl Serialize, api_version: &str, kind: &str) -> serde_json::Value {
    let mut value = serde_json::to_value(object).expect("object serialises");
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    value
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_pin_annotation_is_one_of_the_pin_annotation_keys() {
        for isolation in Isolation::ALL {
            for key in pin_annotations("buildpolicy-p", isolation).keys() {
                assert!(
                    PIN_ANNOTATION_KEYS.contains(&key.as_str()),
                    "{key} ({isolation:?}) is missing from PIN_ANNOTATION_KEYS"
                );
            }
        }
    }

    use super::*;

    fn modelcar() -> BuildPolicySpec {
        BuildPolicySpec {
            namespace: "private-ai-demo".into(),
            service_account_name: "model-build-sa".into(),
            capabilities: ["SYS_CHROOT", "SETUID", "SETGID", "SYS_ADMIN", "SETFCAP"]
                .map(String::from)
                .to_vec(),
            tasks: vec!["build-and-push-v2".into()],
            isolation: Default::default(),
            task_digests: Default::default(),
        }
    }

    fn owner() -> Owner {
        Owner {
            name: "modelcar-build".into(),
            uid: Some("0000-uid".into()),
        }
    }

    /// Snapshots of everything the ModelCar policy produces, in each
    /// isolation mode. A change here is a change of what the operator
    /// grants: review it as such.
    #[test]
    fn modelcar_renders_the_reviewed_snapshots() {
        for (isolation, file) in [
            (Isolation::HostUserNamespace, "modelcar.rendered.yaml"),
            (
                Isolation::PodUserNamespace,
                "modelcar.pod-user-namespace.rendered.yaml",
            ),
            (
                Isolation::CrioUserNamespace,
                "modelcar.crio-user-namespace.rendered.yaml",
            ),
        ] {
            let spec = BuildPolicySpec {
                isolation,
                ..modelcar()
            };
            let rendered = to_yaml(&render(&owner(), &spec));
            let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
            let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
            if rendered != snapshot && std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
                std::fs::write(&path, &rendered).unwrap();
                continue;
            }
            assert_eq!(
                rendered, snapshot,
                "{isolation}: run with UPDATE_SNAPSHOTS=1 to accept the new rendering"
            );
        }
    }

    #[test]
    fn pod_user_namespace_scc_requires_host_users_false_and_ids_within_65534() {
        let spec = BuildPolicySpec {
            isolation: Isolation::PodUserNamespace,
            ..modelcar()
        };
        let desired = render(&owner(), &spec);
        let scc = &desired.scc;
        assert_eq!(scc.user_namespace_level.as_deref(), Some("RequirePodLevel"));
        let user = scc.run_as_user.as_ref().unwrap();
        assert_eq!(
            (
                user.type_.as_deref(),
                user.uid_range_min,
                user.uid_range_max
            ),
            (Some("MustRunAsRange"), Some(0), Some(65534))
        );
        for groups in [&scc.fs_group, &scc.supplemental_groups] {
            let groups = groups.as_ref().unwrap();
            assert_eq!(groups.type_.as_deref(), Some("MustRunAs"));
            assert_eq!(
                groups.ranges.as_deref(),
                Some(&[scc::IdRange { min: 0, max: 65534 }][..])
            );
        }
        let selinux = scc.se_linux_context.as_ref().unwrap();
        assert_eq!(selinux.type_.as_deref(), Some("MustRunAs"));
        assert_eq!(
            selinux
                .se_linux_options
                .as_ref()
                .and_then(|o| o.type_.as_deref()),
            Some("container_engine_t")
        );
        // Everything else is what the host-level SCC grants: exactly the
        // capabilities asked, escalation for newuidmap, no host access.
        let host = render(&owner(), &modelcar()).scc;
        assert_eq!(scc.allowed_capabilities, host.allowed_capabilities);
        assert_eq!(
            scc.required_drop_capabilities,
            host.required_drop_capabilities
        );
        assert_eq!(scc.allow_privilege_escalation, Some(true));
        assert!(!scc.allow_privileged_container && !scc.allow_host_network && !scc.allow_host_pid);
        assert_eq!(scc.volumes, host.volumes);
        assert_eq!(scc.seccomp_profiles, host.seccomp_profiles);
        // Pins carry the SCC only.
        assert_eq!(desired.pins[0].annotations.len(), 1);
    }

    #[test]
    fn crio_user_namespace_adds_the_userns_annotations_to_the_pins_only() {
        let spec = BuildPolicySpec {
            isolation: Isolation::CrioUserNamespace,
            ..modelcar()
        };
        let desired = render(&owner(), &spec);
        assert_eq!(
            desired.pins[0].annotations,
            BTreeMap::from([
                (
                    REQUIRED_SCC_ANNOTATION.to_owned(),
                    "buildpolicy-modelcar-build".to_owned()
                ),
                (
                    CRIO_USERNS_MODE_ANNOTATION.to_owned(),
                    "auto:size=65536".to_owned()
                ),
                (OPENSHIFT_BUILDER_ANNOTATION.to_owned(), "true".to_owned()),
            ])
        );
        // The pod is not host-users: false as far as SCC admission can
        // tell, so the SCC is the host-level one, with its description.
        let mut scc = desired.scc;
        let mut host = render(&owner(), &modelcar()).scc;
        scc.metadata.annotations = None;
        host.metadata.annotations = None;
        assert_eq!(scc, host);
    }

    #[test]
    fn scc_grants_exactly_the_requested_capabilities_and_nothing_else() {
        let scc = render(&owner(), &modelcar()).scc;
        assert_eq!(
            scc.allowed_capabilities.as_deref(),
            Some(&["SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"].map(String::from)[..])
        );
        assert!(!scc.allow_privileged_container);
        assert!(
            !(scc.allow_host_network
                || scc.allow_host_pid
                || scc.allow_host_ipc
                || scc.allow_host_ports)
        );
        assert!(!scc.allow_host_dir_volume_plugin);
        assert_eq!(scc.priority, None);
        assert_eq!(scc.users, Some(vec![]));
        assert_eq!(scc.groups, Some(vec![]));
        assert_eq!(scc.default_add_capabilities, None);
        assert_eq!(
            scc.required_drop_capabilities,
            Some(vec!["KILL".into(), "MKNOD".into()])
        );
        assert_eq!(scc.allow_privilege_escalation, Some(true));
    }

    #[test]
    fn without_setuid_setgid_privilege_escalation_is_off_and_they_are_dropped() {
        let mut spec = modelcar();
        spec.capabilities = vec!["SYS_CHROOT".into()];
        let scc = render(&owner(), &spec).scc;
        assert_eq!(scc.allow_privilege_escalation, Some(false));
        assert_eq!(
            scc.required_drop_capabilities,
            Some(
                ["KILL", "MKNOD", "SETGID", "SETUID"]
                    .map(String::from)
                    .to_vec()
            )
        );
    }

    #[test]
    fn rbac_lets_only_the_service_account_use_only_this_scc() {
        let desired = render(&owner(), &modelcar());
        let rule = &desired.role.rules.as_ref().unwrap()[0];
        assert_eq!(rule.verbs, vec!["use"]);
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["buildpolicy-modelcar-build".to_string()][..])
        );
        assert_eq!(
            rule.api_groups.as_deref(),
            Some(&["security.openshift.io".to_string()][..])
        );
        let subjects = desired.role_binding.subjects.as_ref().unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "model-build-sa");
        assert_eq!(subjects[0].namespace.as_deref(), Some("private-ai-demo"));
        assert_eq!(
            desired.role_binding.role_ref.name,
            desired.role.metadata.name.clone().unwrap()
        );
    }

    #[test]
    fn every_object_names_its_policy_and_is_owned_by_it() {
        let desired = render(&owner(), &modelcar());
        for meta in [
            &desired.scc.metadata,
            &desired.role.metadata,
            &desired.role_binding.metadata,
        ] {
            assert_eq!(
                meta.labels.as_ref().unwrap()[POLICY_LABEL],
                "modelcar-build"
            );
            let owner_ref = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner_ref.kind.as_str(), owner_ref.uid.as_str()),
                ("BuildPolicy", "0000-uid")
            );
            assert_eq!(owner_ref.controller, Some(true));
        }
        let offline = render(
            &Owner {
                uid: None,
                ..owner()
            },
            &modelcar(),
        );
        assert!(offline.scc.metadata.owner_references.is_none());
    }

    #[test]
    fn pins_carry_the_required_scc_annotation_and_the_policy_label() {
        let pins = render(&owner(), &modelcar()).pins;
        assert_eq!(pins.len(), 1);
        assert_eq!(
            pins[0].annotations[REQUIRED_SCC_ANNOTATION],
            "buildpolicy-modelcar-build"
        );
        let mut annotations = pins[0].annotations.clone();
        let labels = pins[0].labels.clone();
        assert!(pins[0].is_satisfied_by(Some(&labels), Some(&annotations)));
        annotations.insert(REQUIRED_SCC_ANNOTATION.into(), "privileged".into());
        assert!(!pins[0].is_satisfied_by(Some(&labels), Some(&annotations)));
        assert!(!pins[0].is_satisfied_by(None, None));
    }

    #[test]
    fn a_pin_is_current_only_without_annotations_the_operator_applied_for_another_mode() {
        let crio = render(
            &owner(),
            &BuildPolicySpec {
                isolation: Isolation::CrioUserNamespace,
                ..modelcar()
            },
        )
        .pins
        .remove(0);
        let host = render(&owner(), &modelcar()).pins.remove(0);
        let task_with = |pin: &TaskPin, manager: &str| {
            let owned: serde_json::Map<String, serde_json::Value> = pin
                .annotations
                .keys()
                .map(|k| (format!("f:{k}"), serde_json::json!({})))
                .collect();
            serde_json::from_value::<ObjectMeta>(serde_json::json!({
                "labels": pin.labels,
                "annotations": pin.annotations,
                "managedFields": [{
                    "manager": manager, "operation": "Apply", "apiVersion": "tekton.dev/v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:annotations": owned}}
                }]
            }))
            .unwrap()
        };
        let crio_task = task_with(&crio, FIELD_MANAGER);
        assert!(crio.is_current_on(&crio_task));
        // Switched to the host mode: the pin is there, but the CRI-O
        // annotations the operator applied must go.
        assert!(host.is_satisfied_by(crio_task.labels.as_ref(), crio_task.annotations.as_ref()));
        assert!(!host.is_current_on(&crio_task));
        // The same annotations set by someone else are theirs to keep.
        assert!(host.is_current_on(&task_with(&crio, "kubectl")));
        assert_eq!(
            applied_annotations(&crio_task, FIELD_MANAGER),
            crio.annotations.keys().cloned().collect()
        );
    }
}

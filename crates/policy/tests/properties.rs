//! Whatever a BuildPolicy asks for, either `validate` refuses it or `render`
//! grants least privilege: the requested capabilities within the ceiling,
//! nothing privileged, no host access, and the SCC usable by exactly one
//! service account. The inputs mix valid values with the mistakes users make
//! (`CAP_` prefixes, lower case, `ALL`, `*`, bad names) and random text.

use std::cell::Cell;
use std::collections::BTreeSet;

use buildpolicy_api::capability::KNOWN_CAPABILITIES;
use buildpolicy_api::conditions::reason;
use buildpolicy_api::keys::{REQUIRED_SCC_ANNOTATION, owned_name};
use buildpolicy_api::scc;
use buildpolicy_api::{BuildPolicySpec, Isolation};
use buildpolicy_policy::render::{VOLUMES, to_yaml};
use buildpolicy_policy::{Ceiling, Desired, Owner, render, validate};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// Enough to hit every rule many times, few enough to run in about a second.
const CASES: u32 = 512;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failing input is saved beside this file and replayed first.
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// A policy to judge: its name, spec and owner UID, and the ceiling.
#[derive(Clone, Debug)]
struct Input {
    name: String,
    uid: Option<String>,
    spec: BuildPolicySpec,
    ceiling: Ceiling,
}

impl Input {
    fn owner(&self) -> Owner {
        Owner {
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

fn known_capability() -> impl Strategy<Value = String> {
    select(KNOWN_CAPABILITIES).prop_map(str::to_owned)
}

/// The capability names users write, right and wrong.
fn capability() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => known_capability(),
        2 => known_capability().prop_map(|c| format!("CAP_{c}")),
        2 => known_capability().prop_map(|c| c.to_lowercase()),
        1 => Just("ALL".to_owned()),
        1 => Just("*".to_owned()),
        1 => Just(String::new()),
        2 => "[A-Za-z_*]{1,12}",
        1 => any::<String>(),
    ]
}

fn capabilities() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        12 => vec(known_capability(), 1..6),
        6 => vec(capability(), 0..6),
        // Near the 41-entry limit, valid or one over.
        1 => subsequence(KNOWN_CAPABILITIES, 36..=41)
            .prop_map(|caps| caps.into_iter().map(str::to_owned).collect::<Vec<_>>())
            .prop_shuffle(),
        1 => vec(capability(), 38..46),
    ]
}

fn valid_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?"
}

/// Mostly valid DNS labels, some around the 63-character limit, some not
/// labels at all.
fn dns_label() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => valid_label(),
        1 => "[a-z0-9]{62,64}",
        1 => "-[a-z]{1,5}|[a-z]{1,5}-",
        1 => "[A-Za-z0-9._-]{0,20}",
        1 => any::<String>(),
    ]
}

fn valid_subdomain() -> impl Strategy<Value = String> {
    vec(valid_label(), 1..4).prop_map(|labels| labels.join("."))
}

/// Mostly valid DNS subdomains, as service account and Task names are.
fn dns_subdomain() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => valid_subdomain(),
        2 => dns_label(),
        1 => "[a-z.]{1,10}",
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => dns_label(),
        // Namespaces the default ceiling protects, and the operator's own.
        2 => select(&["default", "kube-system", "kube-public", "openshift-config", "buildpolicy-system"][..])
            .prop_map(str::to_owned),
    ]
}

fn tasks() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        16 => vec(valid_subdomain(), 1..5),
        4 => vec(dns_subdomain(), 0..5),
        // Near the 32-Task limit, valid or one over.
        1 => (31..=33usize).prop_map(|n| (0..n).map(|i| format!("task-{i}")).collect()),
    ]
}

fn isolation() -> impl Strategy<Value = Isolation> {
    proptest::sample::select(Isolation::ALL.to_vec())
}

fn spec() -> impl Strategy<Value = BuildPolicySpec> {
    (
        namespace(),
        dns_subdomain(),
        capabilities(),
        tasks(),
        isolation(),
    )
        .prop_map(
            |(namespace, service_account_name, capabilities, tasks, isolation)| BuildPolicySpec {
                namespace,
                service_account_name,
                capabilities,
                tasks,
                isolation,
                task_digests: Default::default(),
            },
        )
}

/// Any subset of the Linux capabilities, and of some protected-namespace
/// patterns. Now and then a careless admin also "allows" names that are not
/// capabilities: the schema rules must still refuse them.
fn ceiling() -> impl Strategy<Value = Ceiling> {
    let patterns: &'static [&'static str] = &[
        "default",
        "kube-*",
        "openshift-*",
        "buildpolicy-system",
        "private-*",
        "*",
    ];
    (
        subsequence(KNOWN_CAPABILITIES, 0..=KNOWN_CAPABILITIES.len()),
        subsequence(patterns, 0..=2),
        proptest::bool::weighted(0.1),
        // Half the time the admin requires a user namespace for some of
        // Buildah's capabilities.
        prop_oneof![
            Just(Vec::new()),
            subsequence(&["SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"][..], 1..=4),
        ],
    )
        .prop_map(|(capabilities, protected, careless, user_namespace_only)| {
            let not_capabilities: &[&str] = if careless {
                &["ALL", "*", "CAP_SYS_ADMIN", "sys_admin"]
            } else {
                &[]
            };
            Ceiling {
                allowed_capabilities: capabilities
                    .into_iter()
                    .chain(not_capabilities.iter().copied())
                    .map(str::to_owned)
                    .collect(),
                protected_namespaces: protected.into_iter().map(str::to_owned).collect(),
                user_namespace_required_for: user_namespace_only
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                allow_default_service_account: false,
                confinement: Default::default(),
            }
        })
}

fn input() -> impl Strategy<Value = Input> {
    (
        dns_label(),
        proptest::option::of("[0-9a-f]{8}-[0-9a-f]{4}"),
        spec(),
        ceiling(),
        // An admin who allows what the policy asks for: without it, nearly
        // every random ceiling refuses and rendering is seldom reached.
        proptest::bool::weighted(0.6),
        // An admin who requires a user namespace for one of them.
        proptest::bool::weighted(0.75),
    )
        .prop_map(
            |(name, uid, spec, mut ceiling, grants_request, confines_request)| {
                if confines_request {
                    ceiling.user_namespace_required_for.extend(
                        spec.capabilities
                            .iter()
                            .find(|c| KNOWN_CAPABILITIES.contains(&c.as_str()))
                            .cloned(),
                    );
                }
                if grants_request {
                    ceiling.allowed_capabilities.extend(
                        spec.capabilities
                            .iter()
                            .filter(|c| KNOWN_CAPABILITIES.contains(&c.as_str()))
                            .cloned(),
                    );
                }
                Input {
                    name,
                    uid,
                    spec,
                    ceiling,
                }
            },
        )
}

/// Entirely arbitrary text everywhere, to look for panics.
fn arbitrary_input() -> impl Strategy<Value = Input> {
    (
        any::<String>(),
        proptest::option::of(any::<String>()),
        (
            any::<String>(),
            any::<String>(),
            vec(any::<String>(), 0..8),
            vec(any::<String>(), 0..8),
        ),
        (vec(any::<String>(), 0..6), vec(any::<String>(), 0..4)),
    )
        .prop_map(
            |(name, uid, (namespace, sa, capabilities, tasks), (allowed, protected))| Input {
                name,
                uid,
                spec: BuildPolicySpec {
                    namespace,
                    service_account_name: sa,
                    capabilities,
                    tasks,
                    isolation: Default::default(),
                    task_digests: Default::default(),
                },
                ceiling: Ceiling {
                    allowed_capabilities: allowed.into_iter().collect(),
                    protected_namespaces: protected,
                    user_namespace_required_for: Default::default(),
                    allow_default_service_account: false,
                    confinement: Default::default(),
                },
            },
        )
}

fn is_empty(list: Option<&Vec<String>>) -> bool {
    list.is_none_or(Vec::is_empty)
}

/// The least-privilege guarantees of everything rendered for an accepted policy.
fn assert_least_privilege(input: &Input, desired: &Desired) -> Result<(), TestCaseError> {
    let Input {
        name,
        spec,
        ceiling,
        ..
    } = input;
    let scc_name = owned_name(name);

    let scc = &desired.scc;
    prop_assert_eq!(scc.metadata.name.as_deref(), Some(scc_name.as_str()));
    prop_assert_eq!(scc.metadata.namespace.as_deref(), None);
    prop_assert!(!scc.allow_privileged_container);
    prop_assert!(!scc.allow_host_network);
    prop_assert!(!scc.allow_host_ports);
    prop_assert!(!scc.allow_host_pid);
    prop_assert!(!scc.allow_host_ipc);
    prop_assert!(!scc.allow_host_dir_volume_plugin);
    let volumes = scc.volumes.as_deref().unwrap_or_default();
    prop_assert!(
        volumes.iter().all(|v| v != "hostPath" && v != "*"),
        "volumes {:?}",
        volumes
    );
    prop_assert!(
        volumes.iter().all(|v| VOLUMES.contains(&v.as_str())),
        "volumes {:?} beyond the conservative list",
        volumes
    );
    prop_assert!(is_empty(scc.users.as_ref()), "users {:?}", scc.users);
    prop_assert!(is_empty(scc.groups.as_ref()), "groups {:?}", scc.groups);
    prop_assert_eq!(scc.priority, None);
    prop_assert!(is_empty(scc.default_add_capabilities.as_ref()));
    prop_assert!(scc.allowed_flex_volumes.as_ref().is_none_or(Vec::is_empty));
    prop_assert!(is_empty(scc.allowed_unsafe_sysctls.as_ref()));

    let allowed = scc.allowed_capabilities.as_deref().unwrap_or_default();
    for capability in allowed {
        prop_assert!(capability != "ALL" && capability != "*");
        prop_assert!(
            ceiling.allows_capability(capability),
            "{} is beyond the ceiling",
            capability
        );
        prop_assert!(
            spec.capabilities.contains(capability),
            "{} was not requested",
            capability
        );
    }
    // The ceiling's user-namespace switch holds for what was granted.
    if !spec.isolation.is_user_namespace() {
        for capability in allowed {
            prop_assert!(
                !ceiling.user_namespace_required_for.contains(capability),
                "{} granted in the host user namespace against the ceiling",
                capability
            );
        }
    }
    // Pod user namespaces: the SCC enforces hostUsers: false and keeps IDs
    // within 0-65534; the other modes are host-level.
    let level = scc.user_namespace_level.as_deref();
    if spec.isolation == Isolation::PodUserNamespace {
        prop_assert_eq!(level, Some("RequirePodLevel"));
        let user = scc.run_as_user.as_ref().unwrap();
        prop_assert_eq!(user.type_.as_deref(), Some("MustRunAsRange"));
        prop_assert!(user.uid_range_max.is_some_and(|max| max <= 65534));
    } else {
        prop_assert_eq!(level, Some("AllowHostLevel"));
    }
    // Exactly what was asked: nothing requested is silently dropped either.
    let requested: BTreeSet<&String> = spec.capabilities.iter().collect();
    prop_assert_eq!(allowed.iter().collect::<BTreeSet<_>>(), requested);
    let dropped = scc
        .required_drop_capabilities
        .as_deref()
        .unwrap_or_default();
    prop_assert!(
        dropped.iter().all(|d| !allowed.contains(d)),
        "{:?} both allowed and dropped",
        dropped
    );

    let role = &desired.role;
    prop_assert_eq!(role.metadata.namespace.as_ref(), Some(&spec.namespace));
    let rules = role.rules.as_deref().unwrap_or_default();
    prop_assert!(!rules.is_empty());
    for rule in rules {
        prop_assert_eq!(&rule.verbs, &["use"]);
        prop_assert_eq!(
            rule.api_groups.as_deref(),
            Some(&[scc::GROUP.to_owned()][..])
        );
        prop_assert_eq!(
            rule.resources.as_deref(),
            Some(&[scc::PLURAL.to_owned()][..])
        );
        // An empty list would mean every SCC.
        prop_assert_eq!(
            rule.resource_names.as_deref(),
            Some(&[scc_name.clone()][..])
        );
        prop_assert!(rule.non_resource_urls.is_none());
    }

    let binding = &desired.role_binding;
    prop_assert_eq!(binding.metadata.namespace.as_ref(), Some(&spec.namespace));
    prop_assert_eq!(&binding.role_ref.kind, "Role");
    prop_assert_eq!(
        binding.role_ref.api_group.as_deref(),
        Some("rbac.authorization.k8s.io")
    );
    prop_assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    prop_assert_eq!(subjects.len(), 1, "subjects {:?}", subjects);
    prop_assert_eq!(&subjects[0].kind, "ServiceAccount");
    prop_assert_eq!(&subjects[0].name, &spec.service_account_name);
    prop_assert_eq!(subjects[0].namespace.as_ref(), Some(&spec.namespace));
    prop_assert!(
        subjects[0]
            .api_group
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );

    let pinned: BTreeSet<&String> = desired.pins.iter().map(|p| &p.name).collect();
    prop_assert_eq!(pinned, spec.tasks.iter().collect::<BTreeSet<_>>());
    for pin in &desired.pins {
        prop_assert_eq!(&pin.namespace, &spec.namespace);
        prop_assert_eq!(
            pin.annotations.get(REQUIRED_SCC_ANNOTATION),
            Some(&scc_name)
        );
    }
    Ok(())
}

/// How often each outcome came up, to show the inputs reach every branch.
#[derive(Default)]
struct Outcomes {
    rendered: Cell<u32>,
    invalid_spec: Cell<u32>,
    namespace_not_allowed: Cell<u32>,
    capability_not_allowed: Cell<u32>,
    user_namespace_required: Cell<u32>,
}

impl Outcomes {
    fn count(&self, outcome: &Cell<u32>) {
        outcome.set(outcome.get() + 1);
    }
}

#[test]
fn every_accepted_policy_renders_least_privilege() {
    let outcomes = Outcomes::default();
    let result = TestRunner::new(config()).run(&input(), |input| {
        match validate(&input.name, &input.spec, &input.ceiling) {
            Err(rejection) => {
                let outcome = match rejection.reason {
                    reason::INVALID_SPEC => &outcomes.invalid_spec,
                    reason::NAMESPACE_NOT_ALLOWED => &outcomes.namespace_not_allowed,
                    reason::CAPABILITY_NOT_ALLOWED => &outcomes.capability_not_allowed,
                    reason::USER_NAMESPACE_REQUIRED => &outcomes.user_namespace_required,
                    other => return Err(TestCaseError::fail(format!("unknown reason {other}"))),
                };
                prop_assert!(!rejection.message.is_empty());
                outcomes.count(outcome);
            }
            Ok(()) => {
                assert_least_privilege(&input, &render(&input.owner(), &input.spec))?;
                outcomes.count(&outcomes.rendered);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let counts = [
        ("rendered", outcomes.rendered.get()),
        ("InvalidSpec", outcomes.invalid_spec.get()),
        ("NamespaceNotAllowed", outcomes.namespace_not_allowed.get()),
        (
            "UserNamespaceRequired",
            outcomes.user_namespace_required.get(),
        ),
        (
            "CapabilityNotAllowed",
            outcomes.capability_not_allowed.get(),
        ),
    ];
    println!("outcomes of {CASES} policies: {counts:?}");
    // A generator that (almost) never reaches `render` would prove nothing.
    for (outcome, count) in counts {
        assert!(
            count >= CASES / 40,
            "only {count} of {CASES} policies were {outcome}: {counts:?}"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validate_never_panics_and_always_explains_a_refusal(input in arbitrary_input()) {
        let first = validate(&input.name, &input.spec, &input.ceiling);
        if let Err(rejection) = &first {
            prop_assert!(!rejection.message.is_empty());
        }
        prop_assert_eq!(first, validate(&input.name, &input.spec, &input.ceiling));
    }

    #[test]
    fn rendering_is_deterministic(input in prop_oneof![input(), arbitrary_input()]) {
        let owner = input.owner();
        let first = render(&owner, &input.spec);
        let again = render(&owner.clone(), &input.spec.clone());
        prop_assert_eq!(to_yaml(&first), to_yaml(&again));
        prop_assert_eq!(first, again);
    }

    /// What the server stores is compared with what is rendered: the order a
    /// user lists capabilities or Tasks in must not look like drift.
    #[test]
    fn rendering_ignores_the_order_of_capabilities_and_tasks(
        (input, capabilities, tasks) in input().prop_flat_map(|input| {
            let capabilities = Just(input.spec.capabilities.clone()).prop_shuffle();
            let tasks = Just(input.spec.tasks.clone()).prop_shuffle();
            (Just(input), capabilities, tasks)
        })
    ) {
        let mut shuffled = input.spec.clone();
        shuffled.capabilities = capabilities;
        shuffled.tasks = tasks;
        prop_assert_eq!(render(&input.owner(), &input.spec), render(&input.owner(), &shuffled));
    }
}

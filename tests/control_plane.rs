//! The local control plane behaves like the clusters the operator runs on:
//! our API types round-trip through the published CRDs, RBAC is enforced,
//! service account tokens authenticate, and OpenShift's default SCCs are
//! installed. When one of these fails, the operator's own integration tests
//! would fail for reasons that have nothing to do with the operator.

use std::time::Duration;

use buildpolicy_api::scc::{
    GroupStrategyOptions, RunAsUserStrategyOptions, SELinuxContextStrategyOptions,
};
use buildpolicy_api::{BuildPolicy, BuildPolicySpec, SecurityContextConstraints};
use buildpolicy_test_support::scene::{BUILDAH_CAPABILITIES, unused_scc};
use buildpolicy_test_support::{
    TempNamespace, client, client_with_token, eventually, strings, test_labels, unique_name,
    wait_for_deletion, with_temp_ns,
};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};

/// Generous for a loopback API server, short enough that a hang is reported.
const TIMEOUT: Duration = Duration::from_secs(30);

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buildpolicy_and_scc_round_trip_in_a_temp_namespace() {
    with_temp_ns(|client, ns| async move {
        let policies = Api::<BuildPolicy>::all(client.clone());
        let mut policy = BuildPolicy::new(
            &unique_name("bp-test"),
            BuildPolicySpec {
                namespace: ns.clone(),
                service_account_name: "model-build-sa".to_owned(),
                capabilities: strings(BUILDAH_CAPABILITIES),
                tasks: strings(["build-and-push-v2"]),
                isolation: Default::default(),
                task_digests: Default::default(),
            },
        );
        policy.metadata.labels = Some(test_labels(&ns));
        let policy_name = policy.name().to_owned();
        policies
            .create(&PostParams::default(), &policy)
            .await
            .expect("the API server accepts a valid BuildPolicy");
        let stored = policies
            .get(&policy_name)
            .await
            .expect("the BuildPolicy is stored");
        assert_eq!(stored.spec, policy.spec);
        assert_eq!(stored.metadata.labels, policy.metadata.labels);

        // The SCC the product wants: least privilege, granted through RBAC
        // only, never outranking the built-in SCCs.
        let sccs = Api::<SecurityContextConstraints>::all(client.clone());
        let mut scc = SecurityContextConstraints {
            allowed_capabilities: Some(strings(BUILDAH_CAPABILITIES)),
            allow_privileged_container: false,
            allow_privilege_escalation: Some(true),
            users: Some(vec![]),
            groups: Some(vec![]),
            priority: None,
            volumes: Some(strings([
                "configMap",
                "downwardAPI",
                "emptyDir",
                "projected",
                "secret",
            ])),
            run_as_user: Some(RunAsUserStrategyOptions {
                type_: Some("RunAsAny".to_owned()),
                ..RunAsUserStrategyOptions::default()
            }),
            se_linux_context: Some(SELinuxContextStrategyOptions {
                type_: Some("MustRunAs".to_owned()),
                se_linux_options: None,
            }),
            fs_group: Some(GroupStrategyOptions {
                type_: Some("RunAsAny".to_owned()),
                ranges: None,
            }),
            supplemental_groups: Some(GroupStrategyOptions {
                type_: Some("RunAsAny".to_owned()),
                ranges: None,
            }),
            ..SecurityContextConstraints::named(unique_name("bp-test-scc"))
        };
        scc.metadata.labels = Some(test_labels(&ns));
        let scc_name = scc.name().to_owned();
        sccs.create(&PostParams::default(), &scc)
            .await
            .expect("the API server accepts the SCC");
        let stored = sccs.get(&scc_name).await.expect("the SCC is stored");
        assert_eq!(
            stored.allowed_capabilities,
            Some(strings(BUILDAH_CAPABILITIES))
        );
        assert!(!stored.allow_privileged_container);
        assert_eq!(stored.users, Some(vec![]));
        assert_eq!(stored.groups, Some(vec![]));
        assert_eq!(stored.priority, None);
        // Every field we send survives: a field the CRD does not know would
        // be pruned silently, and the operator would keep "fixing" it.
        let expected = SecurityContextConstraints {
            metadata: stored.metadata.clone(),
            // The only field the CRD defaults.
            user_namespace_level: Some("AllowHostLevel".to_owned()),
            ..scc
        };
        assert_eq!(stored, expected, "the SCC round-trips field for field");

        policies
            .delete(&policy_name, &DeleteParams::default())
            .await
            .expect("the BuildPolicy can be deleted");
        sccs.delete(&scc_name, &DeleteParams::default())
            .await
            .expect("the SCC can be deleted");
        wait_for_deletion(&policies, &policy_name, TIMEOUT).await;
        wait_for_deletion(&sccs, &scc_name, TIMEOUT).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_is_enforced_for_service_accounts() {
    with_temp_ns(|client, ns| async move {
        let reviews = Api::<SubjectAccessReview>::all(client.clone());
        let can_create_pods = || {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(format!("system:serviceaccount:{ns}:nobody")),
                    groups: Some(vec![
                        "system:serviceaccounts".to_owned(),
                        format!("system:serviceaccounts:{ns}"),
                        "system:authenticated".to_owned(),
                    ]),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(ns.clone()),
                        verb: Some("create".to_owned()),
                        group: Some(String::new()),
                        resource: Some("pods".to_owned()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let reviews = reviews.clone();
            async move {
                let review = reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .expect("the API server answers a SubjectAccessReview");
                review
                    .status
                    .expect("a reviewed SubjectAccessReview has a status")
            }
        };

        let denied = can_create_pods().await;
        assert!(
            !denied.allowed,
            "a service account without bindings must not create pods: {denied:?}"
        );

        // Granting the permission flips the answer, so the denial above came
        // from RBAC and not from an authorizer that refuses everything.
        let roles = Api::<Role>::namespaced(client.clone(), &ns);
        roles
            .create(
                &PostParams::default(),
                &Role {
                    metadata: meta("pod-creator"),
                    rules: Some(vec![PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(strings(["pods"])),
                        verbs: strings(["create"]),
                        ..PolicyRule::default()
                    }]),
                },
            )
            .await
            .expect("the Role is created");
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(
                &PostParams::default(),
                &RoleBinding {
                    metadata: meta("nobody-creates-pods"),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".to_owned()),
                        kind: "Role".to_owned(),
                        name: "pod-creator".to_owned(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".to_owned(),
                        name: "nobody".to_owned(),
                        namespace: Some(ns.clone()),
                        ..Subject::default()
                    }]),
                },
            )
            .await
            .expect("the RoleBinding is created");
        // RBAC authorizes from an informer cache, which learns of the new
        // binding shortly after it is stored.
        eventually(
            "the RoleBinding to allow the service account to create pods",
            TIMEOUT,
            || async { can_create_pods().await.allowed.then_some(()) },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_authenticate() {
    with_temp_ns(|client, ns| async move {
        let service_accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
        let name = "builder";
        service_accounts
            .create(
                &PostParams::default(),
                &ServiceAccount {
                    metadata: meta(name),
                    ..ServiceAccount::default()
                },
            )
            .await
            .expect("the ServiceAccount is created");
        let token = service_accounts
            .create_token_request(
                name,
                &PostParams::default(),
                &TokenRequest {
                    spec: Some(TokenRequestSpec {
                        // None: the API server's own audience.
                        audiences: None,
                        // The shortest the API server accepts.
                        expiration_seconds: Some(600),
                        ..TokenRequestSpec::default()
                    }),
                    ..TokenRequest::default()
                },
            )
            .await
            .expect("the API server issues a token (TokenRequest)")
            .status
            .and_then(|status| status.token)
            .expect("an issued TokenRequest carries the token");

        let as_service_account = client_with_token(&token).await;
        let review = Api::<SelfSubjectReview>::all(as_service_account)
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .expect("the token authenticates (SelfSubjectReview)");
        let user = review
            .status
            .and_then(|status| status.user_info)
            .expect("a SelfSubjectReview answers with the user");
        assert_eq!(
            user.username.as_deref(),
            Some(format!("system:serviceaccount:{ns}:{name}").as_str())
        );
        assert!(
            user.groups
                .unwrap_or_default()
                .contains(&format!("system:serviceaccounts:{ns}")),
            "a service account is in its namespace's group"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn default_sccs_are_installed() {
    let client = client().await;
    let sccs = Api::<SecurityContextConstraints>::all(client.clone());
    let get = |name: &'static str| {
        let sccs = sccs.clone();
        async move {
            sccs.get(name).await.unwrap_or_else(|e| {
                panic!(
                    "the default SCC {name} is missing ({e}); hack/local-cluster.sh up installs it"
                )
            })
        }
    };
    let restricted = get("restricted-v2").await;
    let anyuid = get("anyuid").await;
    let privileged = get("privileged").await;
    assert!(!restricted.allow_privileged_container);
    assert_eq!(
        restricted.allowed_capabilities,
        Some(strings(["NET_BIND_SERVICE"]))
    );
    assert_eq!(
        anyuid.priority,
        Some(10),
        "anyuid outranks the SCCs without a priority"
    );
    assert!(privileged.allow_privileged_container);

    // Every authenticated user may use restricted-v2, through RBAC.
    let role_name = "system:openshift:scc:restricted-v2";
    let binding = Api::<ClusterRoleBinding>::all(client.clone())
        .get(role_name)
        .await
        .expect("the ClusterRoleBinding granting restricted-v2 exists");
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("ClusterRole", role_name)
    );
    assert!(
        binding
            .subjects
            .unwrap_or_default()
            .iter()
            .any(|s| s.kind == "Group" && s.name == "system:authenticated"),
        "restricted-v2 is bound to system:authenticated"
    );
    let role = Api::<ClusterRole>::all(client)
        .get(role_name)
        .await
        .expect("the ClusterRole it binds exists");
    assert!(
        role.rules.unwrap_or_default().iter().any(|rule| {
            rule.verbs.iter().any(|v| v == "use")
                && rule
                    .api_groups
                    .iter()
                    .flatten()
                    .any(|g| g == "security.openshift.io")
                && rule
                    .resources
                    .iter()
                    .flatten()
                    .any(|r| r == "securitycontextconstraints")
                && rule
                    .resource_names
                    .iter()
                    .flatten()
                    .any(|n| n == "restricted-v2")
        }),
        "the ClusterRole allows `use` of restricted-v2"
    );
}

/// The SCC a policy generates is owned by the policy, so deleting the policy
/// must delete the SCC even when the operator is not running. That takes
/// kube-controller-manager's garbage collector, with the right to delete.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_collection_deletes_the_scc_of_a_deleted_buildpolicy() {
    with_temp_ns(|client, ns| async move {
        let policies = Api::<BuildPolicy>::all(client.clone());
        let mut policy = BuildPolicy::new(
            &unique_name("bp-test-gc"),
            BuildPolicySpec {
                namespace: ns.clone(),
                service_account_name: "model-build-sa".to_owned(),
                capabilities: strings(BUILDAH_CAPABILITIES),
                tasks: strings(["build-and-push-v2"]),
                isolation: Default::default(),
                task_digests: Default::default(),
            },
        );
        policy.metadata.labels = Some(test_labels(&ns));
        let policy = policies
            .create(&PostParams::default(), &policy)
            .await
            .expect("the BuildPolicy is created");

        let sccs = Api::<SecurityContextConstraints>::all(client.clone());
        let mut scc = unused_scc(&unique_name("bp-test-gc"));
        scc.metadata.labels = Some(test_labels(&ns));
        scc.metadata.owner_references = Some(vec![OwnerReference {
            api_version: BuildPolicy::api_version(&()).into_owned(),
            kind: BuildPolicy::kind(&()).into_owned(),
            name: policy.name_any(),
            uid: policy.uid().expect("a stored object has a uid"),
            ..OwnerReference::default()
        }]);
        sccs.create(&PostParams::default(), &scc)
            .await
            .expect("the SCC is created");

        policies
            .delete(&policy.name_any(), &DeleteParams::background())
            .await
            .expect("the BuildPolicy is deleted");
        // The garbage collector rediscovers resource types every 30 s, and the
        // CRDs are installed after it starts: on a fresh cluster the first
        // collection of a BuildPolicy's dependents can take that long.
        wait_for_deletion(&sccs, scc.name(), Duration::from_secs(90)).await;
    })
    .await;
}

/// Tests clean up by deleting their namespace, and the operator is tested
/// on moving a policy away from a deleted namespace: kube-controller-manager's
/// namespace controller must empty and finalize a deleted namespace.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_namespaces_are_emptied_and_finalized() {
    let client = client().await;
    let namespace = TempNamespace::create(&client).await;
    let name = namespace.name().to_owned();
    Api::<ConfigMap>::namespaced(client.clone(), &name)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: meta("content"),
                ..ConfigMap::default()
            },
        )
        .await
        .expect("the ConfigMap is created");
    namespace.delete().await.expect("the namespace is deleted");
    wait_for_deletion(&Api::<Namespace>::all(client), &name, TIMEOUT).await;
}

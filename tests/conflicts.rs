//! Conflicts are never overwritten: a foreign SCC holding the derived name,
//! a Task pinned by hand, and a Task two policies want. The older policy
//! wins, deterministically.

use std::time::Duration;

use buildpolicy_api::keys::REQUIRED_SCC_ANNOTATION;
use buildpolicy_api::{BuildPolicy, SecurityContextConstraints, Task};
use buildpolicy_test_support::operator::Operator;
use buildpolicy_test_support::scene::{buildah_scene, pin_of, refused_as, unused_scc};
use buildpolicy_test_support::{unique_name, wait_for, with_temp_ns};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_scc_with_the_derived_name_is_left_untouched_and_nothing_is_granted() {
    with_temp_ns(|client, ns| async move {
        buildah_scene(&client, &ns, json!({})).await;
        let name = unique_name("squatted");
        let sccs: Api<SecurityContextConstraints> = Api::all(client.clone());
        let mut foreign = unused_scc(&format!("buildpolicy-{name}"));
        foreign.metadata.labels = Some([("buildpolicy.dev/test".to_string(), ns.clone())].into());
        foreign.allowed_capabilities = Some(vec!["NET_ADMIN".into()]);
        foreign.volumes = Some(vec!["secret".into()]);
        let foreign = sccs.create(&PostParams::default(), &foreign).await.unwrap();

        let op = Operator::start(&client, &ns).await;
        op.create(&op.policy(&name, &ns, "builder", &["SETUID"], &["build"]))
            .await;
        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            refused_as("SCCConflict"),
        )
        .await;
        println!("Ready: {}", policy.condition("Ready").unwrap().message);

        let after = sccs.get(&foreign.name_any()).await.unwrap();
        assert_eq!(
            after.resource_version(),
            foreign.resource_version(),
            "the foreign SCC must not be written"
        );
        assert!(
            Api::<RoleBinding>::namespaced(client.clone(), &ns)
                .get_opt(&foreign.name_any())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            pin_of(
                &Api::<Task>::namespaced(client.clone(), &ns)
                    .get("build")
                    .await
                    .unwrap()
            )
            .cloned(),
            None
        );

        op.delete_policies_and_stop().await;
        assert!(
            sccs.get_opt(&foreign.name_any()).await.unwrap().is_some(),
            "deleting the policy must not delete a foreign SCC"
        );
        sccs.delete(&foreign.name_any(), &DeleteParams::default())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_pinned_by_hand_to_another_scc_is_left_alone() {
    with_temp_ns(|client, ns| async move {
        buildah_scene(&client, &ns, json!({REQUIRED_SCC_ANNOTATION: "anyuid"})).await;
        let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);
        let before = tasks.get("build").await.unwrap();
        let op = Operator::start(&client, &ns).await;
        let name = unique_name("hand-pinned");
        op.create(&op.policy(&name, &ns, "builder", &["SETUID"], &["build"]))
            .await;
        let policy = wait_for(
            &Api::<BuildPolicy>::all(client.clone()),
            &name,
            TIMEOUT,
            refused_as("TaskConflict"),
        )
        .await;
        let message = &policy.condition("TasksPinned").unwrap().message;
        println!("TasksPinned: {message}");
        assert!(
            message.contains("openshift.io/required-scc=anyuid"),
            "{message}"
        );
        assert_eq!(
            tasks.get("build").await.unwrap().resource_version(),
            before.resource_version()
        );
        op.delete_policies_and_stop().await;
        assert_eq!(
            pin_of(&tasks.get("build").await.unwrap()).map(String::as_str),
            Some("anyuid"),
            "revocation leaves a foreign pin alone"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_policies_pinning_one_task_resolve_to_the_older_one_every_time() {
    with_temp_ns(|client, ns| async move {
        buildah_scene(&client, &ns, json!({})).await;
        let op = Operator::start(&client, &ns).await;
        let policies: Api<BuildPolicy> = Api::all(client.clone());
        let tasks: Api<Task> = Api::namespaced(client.clone(), &ns);

        // Created in the same instant: creationTimestamp ties (it has one-second
        // resolution), so the smaller name wins. Run it twice, with the names
        // in either order of creation.
        for round in 0..2 {
            let (a, b) = (
                format!("{}-a", unique_name("pin")),
                format!("{}-b", unique_name("pin")),
            );
            let first = op.policy(
                if round == 0 { &a } else { &b },
                &ns,
                "builder",
                &["SETUID"],
                &["build"],
            );
            let second = op.policy(
                if round == 0 { &b } else { &a },
                &ns,
                "builder",
                &["SETUID"],
                &["build"],
            );
            let (first, second) = tokio::join!(op.create(&first), op.create(&second));
            let key = |p: &BuildPolicy| (p.metadata.creation_timestamp.clone(), p.name_any());
            let (winner, loser) = if key(&first) < key(&second) {
                (first, second)
            } else {
                (second, first)
            };

            wait_for(&policies, &winner.name_any(), TIMEOUT, |p| {
                p.condition("Ready").is_some_and(|c| c.status == "True")
            })
            .await;
            let lost = wait_for(
                &policies,
                &loser.name_any(),
                TIMEOUT,
                refused_as("TaskConflict"),
            )
            .await;
            let message = lost.condition("TasksPinned").unwrap().message.clone();
            assert!(
                message.contains(&format!("BuildPolicy {}", winner.name_any())),
                "{message}"
            );
            assert_eq!(
                pin_of(&tasks.get("build").await.unwrap()).cloned(),
                Some(format!("buildpolicy-{}", winner.name_any()))
            );

            // The winner goes away: the other policy takes the Task over.
            policies
                .delete(&winner.name_any(), &DeleteParams::default())
                .await
                .unwrap();
            wait_for(&policies, &loser.name_any(), TIMEOUT, |p| {
                p.condition("Ready").is_some_and(|c| c.status == "True")
            })
            .await;
            assert_eq!(
                pin_of(&tasks.get("build").await.unwrap()).cloned(),
                Some(format!("buildpolicy-{}", loser.name_any()))
            );
            policies
                .delete(&loser.name_any(), &DeleteParams::default())
                .await
                .unwrap();
            buildpolicy_test_support::wait_for_deletion(&policies, &loser.name_any(), TIMEOUT)
                .await;
        }
        op.delete_policies_and_stop().await;
    })
    .await;
}

//! The cluster follows the branch whatever its history does (issue: a branch moved back to an
//! older commit was silently not deployed). `git push -f` of main back to a commit released
//! before deploys it again as a release of its own (`<env>-<sha10>-2`), and forward again
//! likewise; a tip that did not move does not undo a manual rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use ship_api::{Phase, Reason};
use ship_testkit::stack::{Stack, configmap, release_name};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn a_force_push_back_to_a_released_commit_deploys_it_again() {
    let mut stack = Stack::new("history", "{enabled: false}").await.unwrap();
    let first = stack.deploy_first(&[]).await.unwrap();
    let second = stack
        .push_main(&[("deploy/main/web.yaml", &configmap("healthy main, v2"))], "v2")
        .unwrap();
    stack
        .settled(&release_name("main", &second), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let web = || async {
        let cm = Api::<ConfigMap>::namespaced(stack.cluster.client(), &stack.ns)
            .get("web")
            .await
            .unwrap();
        cm.data.unwrap_or_default()["body"].clone()
    };
    assert_eq!(web().await, "healthy main, v2");

    // "Roll back first": reset the branch to the first commit and force-push it.
    stack.remote.git(&["reset", "-q", "--hard", &first]).unwrap();
    stack.remote.push("main", true).unwrap();
    let again = format!("{}-2", release_name("main", &first));
    let redeployed = stack
        .settled(&again, Phase::Succeeded, SETTLE)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.logs()));
    assert_eq!(redeployed.spec.commit, first);
    assert_eq!(redeployed.spec.reason, Reason::Push);
    assert_eq!(
        web().await,
        "healthy main",
        "the cluster runs the branch's tip again"
    );
    // The first release of that commit is still there, told apart by name and order.
    let original = stack.releases().get(&release_name("main", &first)).await.unwrap();
    assert!(original.sequence() < redeployed.sequence());

    // And forward again, to the commit the branch left.
    stack.remote.git(&["reset", "-q", "--hard", &second]).unwrap();
    stack.remote.push("main", true).unwrap();
    let forward = format!("{}-2", release_name("main", &second));
    stack.settled(&forward, Phase::Succeeded, SETTLE).await.unwrap();
    assert_eq!(web().await, "healthy main, v2");

    // A restart changes nothing: the environment already follows its tip.
    // (Nothing can be awaited for "nothing happens": five polls of the 1 s interval.)
    stack.start_shipd(&[]).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let names: Vec<String> = stack
        .releases()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.environment == "main")
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(names.len(), 4, "no release made twice: {names:?}");
}

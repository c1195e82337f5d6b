//! Hostile or mistaken input stays contained: a post-deployment test pointed outside the
//! environment's allowed hosts is refused without a request; manifests aimed at a namespace or
//! a cluster-scoped kind that ship.yaml does not allow change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use ship_api::Phase;
use ship_testkit::stack::{Stack, ready_reason, release_name};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test]
#[ignore = "needs the local control plane: tests/run.sh"]
async fn tests_outside_allowed_hosts_and_manifests_outside_the_environment_are_refused() {
    let mut stack = Stack::new("security", "{enabled: false}").await.unwrap();
    let ns = stack.ns.clone();
    let original = std::fs::read_to_string(stack.remote.work.join("ship.yaml")).unwrap();
    // main may only call web.example: the app stand-in on 127.0.0.1 is out of bounds.
    let restricted = original.replace(
        &format!("main: {{namespace: {ns}}}"),
        &format!("main: {{namespace: {ns}, allowedTestHosts: [web.example]}}"),
    );
    let commit = stack
        .remote
        .commit_files(&[("ship.yaml", &restricted)], "tests may only call web.example")
        .unwrap();
    stack.remote.push("main", false).unwrap();
    stack.start_shipd(&[]).unwrap();
    let release = stack
        .settled(&release_name("main", &commit), Phase::Failed, SETTLE)
        .await
        .unwrap();
    let status = release.status.clone().unwrap();
    assert!(
        status.tests[0]
            .message
            .contains("outside this environment's allowedTestHosts"),
        "{:?}",
        status.tests
    );
    assert_eq!(ready_reason(&release), "NoGoodRelease");

    // Back to an open ship.yaml, deployed; then commits that reach outside the environment.
    let good = stack
        .push_main(&[("ship.yaml", &original)], "open again")
        .unwrap();
    stack
        .settled(&release_name("main", &good), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    let outside = stack.cluster.namespace("security-outside").await.unwrap();
    let cases = [
        (
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: sneaky, namespace: {outside}}}\n"),
            "NamespaceNotAllowed",
        ),
        (
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}-sneaky}}\nrules: []\n"
            ),
            "ClusterScopedNotAllowed",
        ),
    ];
    for (manifest, expected) in cases {
        let bad = stack
            .push_main(&[("deploy/main/sneaky.yaml", &manifest)], expected)
            .unwrap();
        let refused = stack
            .settled(&release_name("main", &bad), Phase::Failed, SETTLE)
            .await
            .unwrap();
        let got = ready_reason(&refused);
        assert!(
            got == expected
                || refused
                    .status
                    .as_ref()
                    .unwrap()
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .contains(expected),
            "{expected}: got {got}: {:?}",
            refused.status.unwrap().message
        );
        stack.remote.git(&["revert", "--no-edit", "HEAD"]).unwrap();
    }
    // Nothing was created outside, and the environment still runs the good commit.
    let sneaky = Api::<ConfigMap>::namespaced(stack.cluster.client(), &outside)
        .get_opt("sneaky")
        .await
        .unwrap();
    assert!(sneaky.is_none());
    let role = Api::<ClusterRole>::all(stack.cluster.client())
        .get_opt(&format!("{ns}-sneaky"))
        .await
        .unwrap();
    assert!(role.is_none());
    // (The web ConfigMap itself was last written by the first commit: the good one changed
    // ship.yaml only, and a release writes only what changed.)
    let web = Api::<ConfigMap>::namespaced(stack.cluster.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.metadata
            .annotations
            .unwrap_or_default()
            .get(ship_api::keys::COMMIT),
        Some(&commit)
    );
    let good_release = release_name("main", &good);
    stack
        .environment_where("main", SETTLE, |e| {
            e.status
                .as_ref()
                .and_then(|s| s.deployed.as_ref())
                .map(|d| d.name.as_str())
                == Some(good_release.as_str())
        })
        .await
        .unwrap();
}

//! shipd over the transports users run: the git Secret as Flux spells it (`username` and
//! `password` with `ca.crt` for HTTPS from a private CA; `identity` and `known_hosts` for SSH),
//! fetching and deploying, and pushing the promotion, over real lighttpd and sshd on loopback.
//! A wrong token and a changed host key show as SourceReady=False with their own reasons on
//! the environment, and nothing secret appears there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ship_api::environment::SOURCE_READY;
use ship_api::{Phase, PromotionOutcome};
use ship_testkit::servers::{HttpsGit, SshGit};
use ship_testkit::stack::{Stack, environment_condition, release_name};

const SETTLE: Duration = Duration::from_secs(60);
const TOKEN: &str = "gt-8c1f-private-token";

async fn put_secret(stack: &Stack, data: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let secret: Secret =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "git"}, "stringData": data})).unwrap();
    if secrets.get_opt("git").await.unwrap().is_some() {
        secrets
            .patch("git", &PatchParams::default(), &Patch::Merge(&secret))
            .await
            .unwrap();
    } else {
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }
}

/// Deploys main over `url`, then promotes it into production (a push over the same transport).
async fn deploy_and_promote(stack: &mut Stack, url: &str) {
    stack.remote.push("main", false).unwrap();
    let main = stack.branch_tip("main").unwrap();
    stack
        .start_shipd(&["--repo-url", url, "--git-secret", "git"])
        .unwrap();
    stack
        .settled(&release_name("main", &main), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    stack
        .promotion_where("production", SETTLE, |_| true)
        .await
        .unwrap();
    stack.request_promotion("now", "transport-test").await.unwrap();
    stack
        .promotion_ran("production", SETTLE, PromotionOutcome::Promoted)
        .await
        .unwrap();
    stack
        .settled(&release_name("production", &main), Phase::Succeeded, SETTLE)
        .await
        .unwrap();
    assert_eq!(stack.branch_tip("production").unwrap(), main, "pushed over {url}");
}

async fn source_refused(stack: &Stack, reason: &str, secrets: &[&str]) {
    let main = stack
        .environment_where("main", SETTLE, |e| {
            environment_condition(e, SOURCE_READY) == Some(("False".into(), reason.into()))
        })
        .await
        .unwrap();
    let text = serde_json::to_string(&main).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "a secret reached the status");
    }
}

#[tokio::test]
#[ignore = "needs the local control plane and lighttpd: tests/run.sh"]
async fn https_from_a_private_ca_with_a_token() {
    let mut stack = Stack::new("https", "{enabled: true}").await.unwrap();
    let server = HttpsGit::start(stack.remote.dir.path(), "ship", TOKEN).unwrap();
    put_secret(
        &stack,
        serde_json::json!({"username": "ship", "password": TOKEN, "ca.crt": server.ca.ca_pem}),
    )
    .await;
    deploy_and_promote(&mut stack, &server.url("repo.git")).await;
    // The token is revoked (the Secret now holds another): refused, with that reason.
    put_secret(&stack, serde_json::json!({"password": "revoked-token-value"})).await;
    source_refused(&stack, "AuthenticationFailed", &[TOKEN, "revoked-token-value"]).await;
}

#[tokio::test]
#[ignore = "needs the local control plane and sshd: tests/run.sh"]
async fn ssh_with_a_deploy_key_and_a_changed_host_key() {
    let mut stack = Stack::new("ssh", "{enabled: true}").await.unwrap();
    let mut server = SshGit::start().unwrap();
    put_secret(
        &stack,
        serde_json::json!({"username": "root", "identity": server.identity, "known_hosts": server.keyscan().unwrap()}),
    )
    .await;
    let url = server.url(&stack.remote.bare);
    deploy_and_promote(&mut stack, &url).await;
    server.change_host_key().unwrap();
    let identity = server.identity.clone();
    source_refused(&stack, "HostKeyChanged", &[identity.trim()]).await;
}

/// Credentials that may fetch but not push: the promotion says so at startup, on its
/// ShipPromotion (PushReady False, PushRefused), not when Tuesday's run fails; and once the push
/// Secret is right, the next look reports PushAccepted (a new Secret value is asked about at
/// once, not after the check's 10-minute interval).
#[tokio::test]
#[ignore = "needs the local control plane and lighttpd: tests/run.sh"]
async fn a_promotion_that_cannot_push_says_so_at_startup() {
    let mut stack = Stack::new("push-ready", "{enabled: true}").await.unwrap();
    let server = HttpsGit::start(stack.remote.dir.path(), "ship", TOKEN).unwrap();
    put_secret(
        &stack,
        serde_json::json!({"username": "ship", "password": TOKEN, "ca.crt": server.ca.ca_pem}),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(stack.cluster.client(), &stack.ns);
    let push_secret = |password: &str| -> Secret {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "git-push"}, "stringData": {
            "username": "ship", "password": password, "ca.crt": server.ca.ca_pem}}),
        )
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &push_secret("read-only-or-wrong"))
        .await
        .unwrap();
    stack.remote.push("main", false).unwrap();
    let url = server.url("repo.git");
    let args = [
        "--repo-url",
        url.as_str(),
        "--git-secret",
        "git",
        "--git-push-secret",
        "git-push",
    ];
    stack.start_shipd(&args).unwrap();
    let push_ready = |p: &ship_api::ShipPromotion| {
        p.status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == ship_api::promotion::PUSH_READY)
            })
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let refused = stack
        .promotion_where("production", SETTLE, |p| {
            push_ready(p).is_some_and(|(status, _, _)| status == "False")
        })
        .await
        .unwrap();
    let (_, reason, message) = push_ready(&refused).unwrap();
    assert_eq!(reason, "PushRefused", "{message}");
    assert!(
        message.contains("production") && message.contains("git.pushCredentialsSecret"),
        "{message}"
    );
    let text = serde_json::to_string(&refused).unwrap();
    assert!(
        !text.contains("read-only-or-wrong") && !text.contains(TOKEN),
        "a secret reached the status"
    );

    // The right Secret, no restart: PushAccepted.
    secrets
        .patch(
            "git-push",
            &PatchParams::default(),
            &Patch::Merge(&push_secret(TOKEN)),
        )
        .await
        .unwrap();
    stack
        .promotion_where("production", SETTLE, |p| {
            push_ready(p).is_some_and(|(status, reason, _)| status == "True" && reason == "PushAccepted")
        })
        .await
        .unwrap();
}

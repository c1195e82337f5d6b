//! Fetch and the promotion's push over the transports users run, against real servers from
//! Debian's packages on loopback: smart HTTP behind lighttpd with TLS from a private CA and a
//! token, and SSH through sshd with a deploy key checked against `ssh-keyscan` output. Wrong
//! credentials and a changed host key are refused with their own reasons, and no secret
//! appears in any error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use git2::Oid;
use ship_git::mirror::ForcePushPolicy;
use ship_git::{Credentials, GitError, Mirror, PushOutcome};
use ship_testkit::git::Remote;
use ship_testkit::servers::{HttpsGit, SshGit};

const TOKEN: &str = "glpat-s3cr3t-token-value";

fn branches() -> Vec<String> {
    vec!["main".into(), "production".into()]
}

fn no_secret_in(err: &GitError, secrets: &[&str]) {
    let text = format!("{err} {err:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "a secret reached the error: {text}");
    }
}

/// Fetches, then fast-forwards production to main's new commit and sees the push land.
fn fetch_and_push(mirror: &Mirror, remote: &Remote, credentials: &Credentials) {
    let first = mirror
        .fetch(&branches(), credentials, ForcePushPolicy::Follow)
        .unwrap();
    assert_eq!(first.changes.len(), 2, "{first:?}");
    let tested = remote.commit_file("app.txt", "v2\n", "tested on main").unwrap();
    remote.push("main", false).unwrap();
    let fetched = mirror
        .fetch(&branches(), credentials, ForcePushPolicy::Follow)
        .unwrap();
    assert_eq!(fetched.changes[0].new, Oid::from_str(&tested).unwrap());
    let pushed = mirror
        .fast_forward("production", Oid::from_str(&tested).unwrap(), credentials)
        .unwrap();
    assert_eq!(pushed, PushOutcome::Pushed);
    let production = ship_testkit::git::git(&remote.bare, &["rev-parse", "refs/heads/production"]).unwrap();
    assert_eq!(production, tested, "the push reached the server");
}

#[test]
#[ignore = "needs lighttpd (tests/run.sh installs it)"]
fn https_with_a_private_ca_and_a_token() {
    let remote = Remote::new().unwrap();
    let server = HttpsGit::start(remote.dir.path(), "ship", TOKEN).unwrap();
    let url = server.url("repo.git");
    let dir = tempfile::tempdir().unwrap();
    let good = Credentials::Token {
        username: "ship".into(),
        token: TOKEN.into(),
        ca_bundle: Some(server.ca.ca_pem.clone()),
    };
    let mirror = Mirror::open(&dir.path().join("m.git"), &url).unwrap();
    fetch_and_push(&mirror, &remote, &good);

    // A wrong token: refused, named as such, and the wrong token is not printed.
    let wrong = Credentials::Token {
        username: "ship".into(),
        token: "not-the-token".into(),
        ca_bundle: Some(server.ca.ca_pem.clone()),
    };
    let other = Mirror::open(&dir.path().join("other.git"), &url).unwrap();
    let err = other
        .fetch(&branches(), &wrong, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "AuthenticationFailed", "{err}");
    no_secret_in(&err, &["not-the-token", TOKEN]);
    let err = other
        .fetch(&branches(), &Credentials::None, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(
        err.label(),
        "CertificateUntrusted",
        "no CA bundle: the private CA is unknown: {err}"
    );

    // The right token without the CA: the certificate is not trusted.
    let no_ca = Credentials::Token {
        username: "ship".into(),
        token: TOKEN.into(),
        ca_bundle: None,
    };
    let err = other
        .fetch(&branches(), &no_ca, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "CertificateUntrusted", "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    no_secret_in(&err, &[TOKEN]);

    // Another CA's bundle is not this server's.
    let stranger = tempfile::tempdir().unwrap();
    let other_ca = ship_testkit::servers::PrivateCa::make(stranger.path(), "Another CA").unwrap();
    let wrong_ca = Credentials::Token {
        username: "ship".into(),
        token: TOKEN.into(),
        ca_bundle: Some(other_ca.ca_pem),
    };
    let err = other
        .fetch(&branches(), &wrong_ca, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "CertificateUntrusted", "{err}");
    no_secret_in(&err, &[TOKEN]);
}

#[test]
#[ignore = "needs sshd (tests/run.sh installs openssh-server)"]
fn ssh_with_a_deploy_key_and_known_hosts_from_keyscan() {
    let remote = Remote::new().unwrap();
    let mut server = SshGit::start().unwrap();
    let url = server.url(&remote.bare);
    let known_hosts = server.keyscan().unwrap();
    assert!(
        known_hosts.lines().all(|l| l.starts_with("|1|")),
        "hashed: {known_hosts}"
    );
    let dir = tempfile::tempdir().unwrap();
    let good = Credentials::Ssh {
        username: "root".into(),
        private_key: server.identity.clone(),
        known_hosts: known_hosts.clone(),
    };
    let mirror = Mirror::open(&dir.path().join("m.git"), &url).unwrap();
    fetch_and_push(&mirror, &remote, &good);

    // A key the server does not authorise.
    let stranger = tempfile::tempdir().unwrap();
    ship_testkit::git::git(stranger.path(), &["--version"]).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(stranger.path().join("k"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let unauthorised = std::fs::read_to_string(stranger.path().join("k")).unwrap();
    let wrong = Credentials::Ssh {
        username: "root".into(),
        private_key: unauthorised.clone(),
        known_hosts: known_hosts.clone(),
    };
    let fresh = Mirror::open(&dir.path().join("fresh.git"), &url).unwrap();
    let err = fresh
        .fetch(&branches(), &wrong, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "AuthenticationFailed", "{err}");
    no_secret_in(&err, &[&unauthorised, &server.identity]);

    // An empty known_hosts: the server is unknown, and refused.
    let unknown = Credentials::Ssh {
        username: "root".into(),
        private_key: server.identity.clone(),
        known_hosts: String::new(),
    };
    let err = fresh
        .fetch(&branches(), &unknown, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "HostKeyUnknown", "{err}");

    // The server's key changes: refused, loudly, for fetch and push alike.
    server.change_host_key().unwrap();
    let err = mirror
        .fetch(&branches(), &good, ForcePushPolicy::Follow)
        .unwrap_err();
    assert_eq!(err.label(), "HostKeyChanged", "{err}");
    assert!(err.to_string().contains("CHANGED"), "{err}");
    let tip = mirror.tip("main").unwrap();
    let err = mirror.fast_forward("production", tip, &good).unwrap_err();
    assert_eq!(err.label(), "HostKeyChanged", "the push is refused too: {err}");
    no_secret_in(&err, &[&server.identity]);
}

/// A revoked token is not hammered: the fetch loop backs off (1 s doubling, here 100 ms to
/// 400 ms) like any failure, each attempt offers the token once, and the status names why.
#[tokio::test]
#[ignore = "needs lighttpd (tests/run.sh installs it)"]
async fn wrong_credentials_back_off_and_say_why() {
    use std::time::Duration;
    let remote = Remote::new().unwrap();
    let server = HttpsGit::start(remote.dir.path(), "ship", TOKEN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        ship_git::watch::SourceConfig::new(server.url("repo.git"), branches(), dir.path().join("m.git"));
    config.poll_interval = Duration::from_millis(100);
    config.min_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_millis(400);
    config.min_interval = Duration::ZERO;
    let wrong = Credentials::Token {
        username: "ship".into(),
        token: "revoked".into(),
        ca_bundle: Some(server.ca.ca_pem.clone()),
    };
    let (_creds_tx, creds) = tokio::sync::watch::channel(wrong);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::time::Instant::now();
    let (source, _tips) = ship_git::watch::spawn(config, creds, async move { drop(stop_rx.await) }).unwrap();
    let mut status = source.status();
    let failing = tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.consecutive_failures >= 4),
    )
    .await
    .expect("failures counted")
    .unwrap()
    .clone();
    // Four attempts waited at least 100 + 200 + 400 ms between them.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(failing.reason, "AuthenticationFailed");
    assert_eq!(failing.retry_in, Some(Duration::from_millis(400)));
    assert!(failing.message.contains("check the token"), "{}", failing.message);
    assert!(!failing.message.contains("revoked"), "no secret in the status");
    drop(stop_tx);
}

//! The webhook receiver over real HTTP, triggering real fetches from a real git daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use ship_git::watch::{SourceConfig, SourceHandle, spawn};
use ship_git::webhook::{Counters, Receiver, router};
use ship_git::{Credentials, TipChange};
use ship_testkit::git::{GitDaemon, Remote};
use tokio::sync::{mpsc, watch};

const SECRET: &str = "webhook-s3cret";

struct Harness {
    remote: Remote,
    _daemon: GitDaemon,
    _mirror_dir: tempfile::TempDir,
    source: SourceHandle,
    tips: mpsc::Receiver<TipChange>,
    counters: Arc<Counters>,
    url: String,
    client: reqwest::Client,
}

async fn harness() -> Harness {
    let remote = Remote::new().unwrap();
    let daemon = GitDaemon::start(remote.dir.path()).unwrap();
    let mirror_dir = tempfile::tempdir().unwrap();
    let mut config = SourceConfig::new(
        daemon.url("repo.git"),
        vec!["main".into(), "production".into()],
        mirror_dir.path().join("m.git"),
    );
    config.poll_interval = Duration::from_secs(3600); // only webhooks trigger fetches here
    let (_, creds) = watch::channel(Credentials::None); // the last value stays readable
    let (source, mut tips) = spawn(config, creds, std::future::pending()).unwrap();
    for _ in 0..2 {
        tips.recv().await.unwrap(); // the first fetch: both branches created
    }
    let counters = Arc::new(Counters::default());
    let trigger_source = source.clone();
    let receiver = Receiver {
        secret: Arc::from(SECRET.as_bytes()),
        branches: Arc::from(vec!["main".to_owned(), "production".to_owned()]),
        trigger: Arc::new(move |_branch: &str| trigger_source.trigger()),
        counters: counters.clone(),
        deliveries: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(receiver)).await });
    Harness {
        remote,
        _daemon: daemon,
        _mirror_dir: mirror_dir,
        source,
        tips,
        counters,
        url,
        client: reqwest::Client::new(),
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn push_body(branch: &str) -> Vec<u8> {
    format!(r#"{{"ref":"refs/heads/{branch}","before":"0","after":"1","repository":{{"name":"repo"}}}}"#)
        .into_bytes()
}

impl Harness {
    async fn post(&self, headers: &[(&str, String)], body: Vec<u8>) -> u16 {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        request.send().await.unwrap().status().as_u16()
    }

    fn fetches(&self) -> u64 {
        self.source.status().borrow().fetches
    }
}

#[tokio::test]
async fn valid_webhooks_of_each_provider_fetch_within_a_second() {
    let mut h = harness().await;
    type Signer = fn(&[u8]) -> Vec<(&'static str, String)>;
    let providers: [(&str, Signer); 4] = [
        ("github", |b| {
            vec![
                ("x-github-event", "push".into()),
                ("x-hub-signature-256", format!("sha256={}", hmac_hex(SECRET, b))),
            ]
        }),
        ("gitlab", |_| {
            vec![
                ("x-gitlab-event", "Push Hook".into()),
                ("x-gitlab-token", SECRET.into()),
            ]
        }),
        ("gitea", |b| {
            vec![
                ("x-gitea-event", "push".into()),
                ("x-gitea-signature", hmac_hex(SECRET, b)),
            ]
        }),
        ("generic", |b| {
            vec![("x-ship-signature-256", format!("sha256={}", hmac_hex(SECRET, b)))]
        }),
    ];
    for (i, (name, sign)) in providers.into_iter().enumerate() {
        let branch = if i % 2 == 0 { "main" } else { "production" };
        let commit = h.remote.commit_file(&format!("{name}.txt"), name, name).unwrap();
        h.remote.push(branch, false).unwrap();
        let body = push_body(branch);
        let started = Instant::now();
        assert_eq!(h.post(&sign(&body), body).await, 202, "{name}");
        let change = tokio::time::timeout(Duration::from_secs(1), h.tips.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: no fetch within 1 s"))
            .unwrap();
        assert_eq!(
            (change.branch.as_str(), change.new.to_string()),
            (branch, commit),
            "{name}"
        );
        eprintln!(
            "{name}: push seen {} ms after the webhook",
            started.elapsed().as_millis()
        );
    }
    assert_eq!(h.counters.get("triggered"), 4);
}

#[tokio::test]
async fn bad_webhooks_are_rejected_counted_and_fetch_nothing() {
    let h = harness().await;
    let body = push_body("main");
    let before = h.fetches();
    let gh = |sig: String| -> Vec<(&'static str, String)> {
        vec![("x-github-event", "push".into()), ("x-hub-signature-256", sig)]
    };
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, Vec<u8>, u16)> = vec![
        (
            "unsigned",
            vec![("x-github-event", "push".into())],
            body.clone(),
            401,
        ),
        (
            "forged",
            gh(format!("sha256={}", "0".repeat(64))),
            body.clone(),
            403,
        ),
        (
            "wrong secret",
            gh(format!("sha256={}", hmac_hex("not-the-secret", &body))),
            body.clone(),
            403,
        ),
        (
            "gitlab wrong token",
            vec![("x-gitlab-token", "guess".into())],
            body.clone(),
            403,
        ),
        (
            "2 MiB body",
            gh(format!("sha256={}", hmac_hex(SECRET, &vec![b' '; 2 << 20]))),
            vec![b' '; 2 << 20],
            413,
        ),
        (
            "invalid json",
            gh(format!("sha256={}", hmac_hex(SECRET, b"{not json"))),
            b"{not json".to_vec(),
            400,
        ),
        (
            "other branch",
            gh(format!("sha256={}", hmac_hex(SECRET, &push_body("feature")))),
            push_body("feature"),
            200,
        ),
    ];
    for (name, headers, body, status) in cases {
        assert_eq!(h.post(&headers, body).await, status, "{name}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.fetches(), before, "no rejected or ignored request fetched");
    for (label, count) in [
        ("unsigned", 1),
        ("bad_signature", 3),
        ("too_large", 1),
        ("malformed", 1),
        ("ignored", 1),
        ("triggered", 0),
    ] {
        assert_eq!(h.counters.get(label), count, "{label}");
    }
}

#[tokio::test]
async fn a_replayed_delivery_is_refused_and_a_forged_one_burns_nothing() {
    let h = harness().await;
    let body = push_body("main");
    let signed = |delivery: &str| {
        vec![
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            (
                "x-hub-signature-256",
                format!("sha256={}", hmac_hex(SECRET, &body)),
            ),
        ]
    };
    // A forged request carrying a real delivery id is refused, and does not use the id up.
    let forged = vec![
        ("x-github-event", "push".to_owned()),
        ("x-github-delivery", "d-1".to_owned()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex("wrong", &body)),
        ),
    ];
    assert_eq!(h.post(&forged, body.clone()).await, 403);
    assert_eq!(h.post(&signed("d-1"), body.clone()).await, 202);
    // The same signed delivery again: a replay.
    assert_eq!(h.post(&signed("d-1"), body.clone()).await, 409);
    assert_eq!(h.post(&signed("d-2"), body.clone()).await, 202);
    assert_eq!(h.counters.get("replayed"), 1);
    assert_eq!(h.counters.get("triggered"), 2);
    assert_eq!(h.counters.get("bad_signature"), 1);
}

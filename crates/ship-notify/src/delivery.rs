//! One delivery as requests, and what an answer means: pure. The notifier in shipd sends
//! them, retries as [`backoff`] says until its time runs out, and records the outcome.
//!
//! Most deliveries are one request ([`Step::Send`]). A GitHub deployment status needs the
//! deployment first: each attempt looks for the release's deployment
//! ([`Step::FindDeployment`]), creates it if GitHub has none ([`Step::CreateDeployment`]),
//! then sets its status ([`Step::SetDeploymentStatus`]). Looking first makes a retry or a
//! restart after a lost answer find the deployment, not create a second.

use std::time::Duration;

use crate::config::{Target, TargetKind, WebhookFormat};
use crate::forge::{
    CommitState, CommitStatus, DeploymentStatus, NewDeployment, Token, commit_status_request,
    created_deployment_id, deployment_create_request, deployment_of_release, deployment_status_request,
    deployments_list_request,
};
use crate::ledger::Owed;
use crate::message::{Notification, SIGNATURE_HEADER, signature};

/// The header a generic webhook's delivery id travels in (also in the body as `delivery`).
pub const DELIVERY_HEADER: &str = "x-ship-delivery";
/// The header naming what happened (`RolledBack`, `PromotionDone`, ...).
pub const EVENT_HEADER: &str = "x-ship-event";

/// The credentials a delivery needs, read from their Secrets just before it is sent.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// A forge's token.
    pub token: Option<Token>,
    /// A webhook's URL, when it is kept in a Secret (its `Debug` shows only whether it is set).
    pub url: Option<SecretUrl>,
    /// A json webhook's signing key.
    pub signing_key: Option<SigningKey>,
}

/// A webhook URL read from a Secret; its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretUrl(pub String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretUrl(<redacted>)")
    }
}

/// A signing key; its `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(pub Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a delivery cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A credential's Secret or key is missing.
    #[error("{0} is not set: create the Secret key the notifications file names")]
    MissingCredential(&'static str),
    /// The URL or a header cannot be used.
    #[error("the request cannot be built ({0}); check the target's URL")]
    BadRequest(String),
    /// A 2xx answer that lacks what the next step needs.
    #[error("the answer lacks {0}")]
    BadAnswer(&'static str),
}

impl DeliveryError {
    /// Stable label.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryError::MissingCredential(_) => "MissingCredential",
            DeliveryError::BadRequest(_) => "BadRequest",
            DeliveryError::BadAnswer(_) => "BadAnswer",
        }
    }
}

/// One request of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The one request of a commit status or a webhook.
    Send,
    /// List the commit's deployments to the environment, to find the release's.
    FindDeployment,
    /// Create the release's deployment.
    CreateDeployment,
    /// Set the status of deployment `id`.
    SetDeploymentStatus(u64),
    /// Mark `cleared[i]` `success`: a commit a bisection found good (after the culprit's own
    /// status, one request per commit).
    MarkGood(usize),
}

/// The first request of a delivery to `target`.
pub fn first_step(target: &Target) -> Step {
    match target.kind {
        TargetKind::Deployment { .. } => Step::FindDeployment,
        TargetKind::CommitStatus { .. } | TargetKind::Webhook { .. } => Step::Send,
    }
}

/// What follows `step`, given its accepted (2xx) answer's body: the next step, or `None` when
/// the delivery is done.
pub fn next_step(
    target: &Target,
    step: Step,
    answer: &[u8],
    notification: &Notification,
) -> Result<Option<Step>, DeliveryError> {
    let is_commit_status = matches!(target.kind, TargetKind::CommitStatus { .. });
    let mark_good =
        |i: usize| (is_commit_status && i < notification.cleared.len()).then_some(Step::MarkGood(i));
    Ok(match step {
        Step::Send => mark_good(0),
        Step::MarkGood(i) => mark_good(i + 1),
        Step::SetDeploymentStatus(_) => None,
        Step::FindDeployment => Some(
            deployment_of_release(answer, &notification.release)
                .map_or(Step::CreateDeployment, Step::SetDeploymentStatus),
        ),
        Step::CreateDeployment => Some(Step::SetDeploymentStatus(
            created_deployment_id(answer).ok_or(DeliveryError::BadAnswer("the new deployment's id"))?,
        )),
    })
}

/// The request `step` of delivering `owed` to `target`, saying `notification`.
pub fn request(
    target: &Target,
    owed: &Owed,
    notification: &Notification,
    credentials: &Credentials,
    step: Step,
) -> Result<http::Request<Vec<u8>>, DeliveryError> {
    let bad = |err: http::Error| DeliveryError::BadRequest(err.to_string());
    match &target.kind {
        TargetKind::Deployment {
            repo,
            environment_urls,
            ..
        } => {
            let token = credentials
                .token
                .as_ref()
                .ok_or(DeliveryError::MissingCredential("the GitHub token"))?;
            let environment = notification.environment.as_str();
            match step {
                Step::FindDeployment | Step::Send | Step::MarkGood(_) => {
                    deployments_list_request(repo, &notification.commit, environment, token)
                }
                Step::CreateDeployment => deployment_create_request(
                    repo,
                    &NewDeployment {
                        commit: &notification.commit,
                        environment,
                        release: &notification.release,
                        description: &notification.headline(),
                    },
                    token,
                ),
                Step::SetDeploymentStatus(id) => {
                    // Deployment targets fire only on triggers with a state (`Target::fires_on`).
                    let state = owed.trigger.deployment_state().ok_or_else(|| {
                        DeliveryError::BadRequest(format!(
                            "{} sets no deployment state",
                            owed.trigger.as_ref()
                        ))
                    })?;
                    let status = DeploymentStatus {
                        state,
                        description: &notification.description(),
                        log_url: notification.link.as_deref(),
                        environment_url: environment_urls.get(environment).map(String::as_str),
                    };
                    deployment_status_request(repo, id, &status, token)
                }
            }
            .map_err(bad)
        }
        TargetKind::CommitStatus { repo, context, .. } => {
            let token = credentials
                .token
                .as_ref()
                .ok_or(DeliveryError::MissingCredential("the forge token"))?;
            let context = format!("{context}/{}", notification.environment);
            let description = notification.description();
            // Commit-status targets fire only on triggers with a state (`Target::fires_on`).
            let state = owed.trigger.commit_state().ok_or_else(|| {
                DeliveryError::BadRequest(format!("{} sets no commit state", owed.trigger.as_ref()))
            })?;
            let (commit, state, description) = match step {
                Step::MarkGood(i) => (
                    notification
                        .cleared
                        .get(i)
                        .ok_or_else(|| DeliveryError::BadRequest(format!("no cleared commit {i}")))?,
                    CommitState::Success,
                    format!(
                        "{}: found good by the bisection of {}",
                        notification.environment, notification.release
                    ),
                ),
                _ => (&notification.commit, state, description),
            };
            let status = CommitStatus {
                commit,
                state,
                context: &context,
                description: &description,
                target_url: notification.link.as_deref(),
            };
            commit_status_request(repo, &status, token).map_err(bad)
        }
        TargetKind::Webhook {
            format, url, signing, ..
        } => {
            let url = match url {
                crate::config::UrlSource::Plain(url) => url.clone(),
                crate::config::UrlSource::Secret(_) => credentials
                    .url
                    .as_ref()
                    .map(|u| u.0.trim().to_owned())
                    .ok_or(DeliveryError::MissingCredential("the webhook URL"))?,
            };
            let body = match format {
                WebhookFormat::Slack => serde_json::to_vec(&notification.chat_body()).unwrap_or_default(),
                WebhookFormat::Json => notification.webhook_body(&owed.id),
            };
            let mut builder = http::Request::builder()
                .method(http::Method::POST)
                .uri(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(
                    http::header::USER_AGENT,
                    concat!("ship/", env!("CARGO_PKG_VERSION")),
                )
                .header(DELIVERY_HEADER, owed.id.as_str())
                .header(EVENT_HEADER, owed.trigger.as_ref());
            if signing.is_some() {
                let key = credentials
                    .signing_key
                    .as_ref()
                    .ok_or(DeliveryError::MissingCredential("the signing key"))?;
                builder = builder.header(SIGNATURE_HEADER, signature(&key.0, &body));
            }
            // The URI may be a credential (Slack's): the notifier never prints the request.
            builder.body(body).map_err(bad)
        }
    }
}

pub use ship_core::outbox::{Answer, backoff};

/// The meaning of an answer's status and headers. GitHub answers a rate limit with 403 (or
/// 429): its primary limit with `x-ratelimit-remaining: 0`, its secondary limits with
/// `retry-after`. That 403 is a wait, not a refusal; a 403 without them (a token without the
/// permission) is refused.
pub fn judge(status: u16, headers: &http::HeaderMap) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        408 | 429 | 500..=599 => Answer::Retry,
        403 if rate_limited(headers) => Answer::Retry,
        _ => Answer::Refused,
    }
}

fn header<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Whether the headers say a rate limit was hit.
fn rate_limited(headers: &http::HeaderMap) -> bool {
    header(headers, "x-ratelimit-remaining") == Some("0") || headers.contains_key(http::header::RETRY_AFTER)
}

/// The wait an answer asks for: `retry-after` (seconds), or, when the rate limit is spent,
/// until `x-ratelimit-reset` (seconds since the epoch; `now` is the same).
pub fn asked_wait(headers: &http::HeaderMap, now: u64) -> Option<Duration> {
    if let Some(seconds) = header(headers, "retry-after").and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if header(headers, "x-ratelimit-remaining") == Some("0") {
        let reset = header(headers, "x-ratelimit-reset")?.parse::<u64>().ok()?;
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::{NotifyConfig, Trigger};
    use jiff::Timestamp;

    fn notification() -> Notification {
        Notification {
            environment: "production".into(),
            release: "production-0123456".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            short_commit: "0123456".into(),
            subject: Some("Faster checkout".into()),
            author: Some("Ada".into()),
            phase: "RolledBack".into(),
            message: "rolled back".into(),
            failed_tests: vec![],
            rolled_back_to: Some("production-abcdef1".into()),
            suspects: vec![],
            link: Some("http://ship/status#production-0123456".into()),
            cleared: vec![],
        }
    }

    fn owed(target: usize, trigger: Trigger) -> Owed {
        Owed {
            id: format!("t/{}/7", trigger.as_ref()),
            target,
            trigger,
            at: Timestamp::from_second(7).unwrap(),
        }
    }

    fn targets() -> Vec<Target> {
        NotifyConfig::parse(
            "commitStatuses: [{name: gl, forge: gitlab, apiUrl: 'http://gl', repository: g/app, context: deploy, tokenSecret: {name: t, key: k}}]
webhooks:
  - {name: chat, format: slack, urlSecret: {name: s, key: u}}
  - {name: audit, format: json, url: 'http://audit/in', signingSecret: {name: s, key: k}}
",
        )
        .unwrap()
        .targets("/srv/app.git")
        .unwrap()
    }

    #[test]
    fn a_rollback_is_a_failed_gitlab_status_in_the_environments_context() {
        let credentials = Credentials {
            token: Some(Token::new("glpat-secret")),
            ..Credentials::default()
        };
        let r = request(
            &targets()[0],
            &owed(0, Trigger::RolledBack),
            &notification(),
            &credentials,
            Step::Send,
        )
        .unwrap();
        assert_eq!(
            r.uri(),
            "http://gl/api/v4/projects/g%2Fapp/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["state"], "failed");
        assert_eq!(body["name"], "deploy/production");
        assert_eq!(body["target_url"], "http://ship/status#production-0123456");
        assert!(!format!("{r:?}").contains("glpat-secret"));
        // Without its token, nothing is built.
        let err = request(
            &targets()[0],
            &owed(0, Trigger::RolledBack),
            &notification(),
            &Credentials::default(),
            Step::Send,
        )
        .unwrap_err();
        assert_eq!(err.label(), "MissingCredential");
    }

    #[test]
    fn a_culprits_commit_status_then_marks_each_commit_found_good_and_a_webhook_sends_once() {
        let credentials = Credentials {
            token: Some(Token::new("glpat-secret")),
            url: Some(SecretUrl("https://hooks.example/T/B/secret".into())),
            ..Credentials::default()
        };
        let mut n = notification();
        n.cleared = vec!["a".repeat(40), "b".repeat(40)];
        let targets = targets();
        let owed = owed(0, Trigger::CulpritNamed);
        let mut sent = Vec::new();
        let mut step = first_step(&targets[0]);
        loop {
            let r = request(&targets[0], &owed, &n, &credentials, step).unwrap();
            let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            let commit = r.uri().path().rsplit('/').next().unwrap().to_owned();
            sent.push((commit, body["state"].as_str().unwrap().to_owned()));
            match next_step(&targets[0], step, b"{}", &n).unwrap() {
                Some(next) => step = next,
                None => break,
            }
        }
        let expected = [
            (n.commit.clone(), "failed".to_owned()),
            ("a".repeat(40), "success".to_owned()),
            ("b".repeat(40), "success".to_owned()),
        ];
        assert_eq!(sent, expected);
        // A webhook says it once, whatever was cleared.
        assert_eq!(next_step(&targets[1], Step::Send, b"{}", &n).unwrap(), None);
        // No step past the list is built.
        let err = request(&targets[0], &owed, &n, &credentials, Step::MarkGood(2)).unwrap_err();
        assert_eq!(err.label(), "BadRequest");
    }

    #[test]
    fn webhooks_carry_the_id_and_json_ones_a_signature_of_the_body() {
        let credentials = Credentials {
            url: Some(SecretUrl("https://hooks.example/T/B/secret\n".into())),
            signing_key: Some(SigningKey(b"k3y".to_vec())),
            ..Credentials::default()
        };
        let chat = request(
            &targets()[1],
            &owed(1, Trigger::RolledBack),
            &notification(),
            &credentials,
            Step::Send,
        )
        .unwrap();
        assert_eq!(chat.uri(), "https://hooks.example/T/B/secret");
        assert!(chat.headers().get(SIGNATURE_HEADER).is_none());
        let text: serde_json::Value = serde_json::from_slice(chat.body()).unwrap();
        assert!(text["text"].as_str().unwrap().contains("RolledBack"));
        let audit = request(
            &targets()[2],
            &owed(2, Trigger::RolledBack),
            &notification(),
            &credentials,
            Step::Send,
        )
        .unwrap();
        assert_eq!(audit.uri(), "http://audit/in");
        assert_eq!(audit.headers()[DELIVERY_HEADER], "t/RolledBack/7");
        assert_eq!(audit.headers()[EVENT_HEADER], "RolledBack");
        assert_eq!(
            audit.headers()[SIGNATURE_HEADER].to_str().unwrap(),
            signature(b"k3y", audit.body())
        );
        let body: serde_json::Value = serde_json::from_slice(audit.body()).unwrap();
        assert_eq!(body["delivery"], "t/RolledBack/7");
    }

    #[test]
    fn a_deployment_status_finds_or_creates_the_releases_deployment_first() {
        let target = &NotifyConfig::parse(
            "deployments: [{name: gh, apiUrl: 'http://gh/api/v3', repository: acme/shop, environmentUrls: {production: 'https://shop.example.com'}, tokenSecret: {name: t, key: k}}]",
        )
        .unwrap()
        .targets("/srv/app.git")
        .unwrap()[0];
        let credentials = Credentials {
            token: Some(Token::new("ghp_secret")),
            ..Credentials::default()
        };
        let n = notification();
        let owed = owed(0, Trigger::RolledBack);
        let step = first_step(target);
        assert_eq!(step, Step::FindDeployment);
        let find = request(target, &owed, &n, &credentials, step).unwrap();
        assert_eq!(find.method(), http::Method::GET);
        assert!(
            find.uri()
                .to_string()
                .starts_with("http://gh/api/v3/repos/acme/shop/deployments?sha=0123456789abcdef")
        );
        // GitHub has no deployment of this release (another release's is there): create one.
        let others = br#"[{"id": 3, "payload": {"shipRelease": "production-abcdef1"}}]"#;
        let step = next_step(target, step, others, &n).unwrap().unwrap();
        assert_eq!(step, Step::CreateDeployment);
        let create = request(target, &owed, &n, &credentials, step).unwrap();
        let body: serde_json::Value = serde_json::from_slice(create.body()).unwrap();
        assert_eq!(body["description"], "production-0123456: Faster checkout");
        assert_eq!(body["payload"]["shipRelease"], "production-0123456");
        let step = next_step(target, step, br#"{"id": 44}"#, &n).unwrap().unwrap();
        assert_eq!(step, Step::SetDeploymentStatus(44));
        let status = request(target, &owed, &n, &credentials, step).unwrap();
        assert_eq!(
            status.uri(),
            "http://gh/api/v3/repos/acme/shop/deployments/44/statuses"
        );
        let body: serde_json::Value = serde_json::from_slice(status.body()).unwrap();
        assert_eq!(body["state"], "inactive");
        assert_eq!(
            body["description"],
            "production: rolled back to production-abcdef1"
        );
        assert_eq!(body["log_url"], "http://ship/status#production-0123456");
        assert_eq!(body["environment_url"], "https://shop.example.com");
        assert_eq!(next_step(target, step, b"{}", &n).unwrap(), None);
        // Found: straight to its status. A create answer without an id is a bad answer.
        let found = br#"[{"id": 3, "payload": {"shipRelease": "production-0123456"}}]"#;
        assert_eq!(
            next_step(target, Step::FindDeployment, found, &n).unwrap(),
            Some(Step::SetDeploymentStatus(3))
        );
        let err = next_step(
            target,
            Step::CreateDeployment,
            br#"{"message": "Auto-merged"}"#,
            &n,
        )
        .unwrap_err();
        assert_eq!(err.label(), "BadAnswer");
        // Without its token, nothing is built.
        let err = request(target, &owed, &n, &Credentials::default(), Step::FindDeployment).unwrap_err();
        assert_eq!(err.label(), "MissingCredential");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn answers_and_waits() {
        let none = http::HeaderMap::new();
        assert_eq!(judge(201, &none), Answer::Delivered);
        for retry in [408, 429, 500, 502, 503] {
            assert_eq!(judge(retry, &none), Answer::Retry, "{retry}");
        }
        for refused in [400, 401, 403, 404, 422] {
            assert_eq!(judge(refused, &none), Answer::Refused, "{refused}");
        }
        // GitHub's rate limits: a 403 that is a wait, for as long as it says.
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000042"),
        ]);
        assert_eq!(judge(403, &primary), Answer::Retry);
        assert_eq!(asked_wait(&primary, 1_700_000_000), Some(Duration::from_secs(42)));
        assert_eq!(asked_wait(&primary, 1_800_000_000), Some(Duration::ZERO));
        let secondary = headers(&[("retry-after", "60"), ("x-ratelimit-remaining", "12")]);
        assert_eq!(judge(403, &secondary), Answer::Retry);
        assert_eq!(asked_wait(&secondary, 0), Some(Duration::from_secs(60)));
        let permission = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(judge(403, &permission), Answer::Refused);
        assert_eq!(asked_wait(&permission, 0), None);
        assert_eq!(asked_wait(&none, 0), None);
    }
}

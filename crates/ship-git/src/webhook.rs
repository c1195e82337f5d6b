//! The push webhook receiver. One endpoint accepts GitHub (`X-Hub-Signature-256`), Gitea
//! (`X-Gitea-Signature`), GitLab (`X-Gitlab-Token`) and a generic HMAC-SHA256 form
//! (`X-Ship-Signature-256: sha256=<hex>`). The body is size-limited before anything else, the
//! signature is checked (in constant time) before the body is parsed, and only a push to a
//! followed branch triggers a fetch.
//!
//! Content types, as the providers document them: GitHub sends `application/json` or (its
//! default for a new webhook) `application/x-www-form-urlencoded` with the JSON in a `payload`
//! field; Gitea and Forgejo send either of the same two; GitLab sends JSON only. The signature
//! always covers the raw body as sent, so it is checked before the form is decoded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

/// Largest accepted body: 1 MiB. GitHub caps its payloads at 25 MB, but a push event for one
/// branch is a few KiB; anything larger is refused before it is read in full.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Path of the receiver.
pub const PATH: &str = "/hooks/push";

/// Who sent a verified request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitea-Signature`.
    Gitea,
    /// `X-Gitlab-Token`.
    GitLab,
    /// `X-Ship-Signature-256`.
    Generic,
}

/// The outcome of one request. Each has a fixed label for the counter and an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A push to a followed branch: a fetch was triggered.
    Triggered(String),
    /// A verified push to a branch Ship does not follow, or a non-push event (ping).
    Ignored(String),
    /// No signature or token header at all.
    Unsigned,
    /// A signature or token that does not match the secret.
    BadSignature,
    /// Body over [`MAX_BODY_BYTES`].
    TooLarge,
    /// Verified, but not a JSON push payload.
    Malformed(String),
    /// Verified, but its delivery id was seen before: a replayed request.
    Replayed,
}

impl Outcome {
    /// All labels, for pre-registering counters.
    pub const LABELS: [&'static str; 7] = [
        "triggered",
        "ignored",
        "unsigned",
        "bad_signature",
        "too_large",
        "malformed",
        "replayed",
    ];

    /// Stable label for the request counter.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Triggered(_) => "triggered",
            Outcome::Ignored(_) => "ignored",
            Outcome::Unsigned => "unsigned",
            Outcome::BadSignature => "bad_signature",
            Outcome::TooLarge => "too_large",
            Outcome::Malformed(_) => "malformed",
            Outcome::Replayed => "replayed",
        }
    }

    /// HTTP status and body of the response.
    pub fn response(&self) -> (StatusCode, String) {
        match self {
            Outcome::Triggered(b) => (StatusCode::ACCEPTED, format!("fetch triggered for {b}\n")),
            Outcome::Ignored(why) => (StatusCode::OK, format!("ignored: {why}\n")),
            Outcome::Unsigned => (
                StatusCode::UNAUTHORIZED,
                "missing signature or token header\n".into(),
            ),
            Outcome::BadSignature => (StatusCode::FORBIDDEN, "signature does not match\n".into()),
            Outcome::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {MAX_BODY_BYTES} bytes\n"),
            ),
            Outcome::Malformed(why) => (StatusCode::BAD_REQUEST, format!("malformed payload: {why}\n")),
            Outcome::Replayed => (StatusCode::CONFLICT, "delivery already received\n".into()),
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn hmac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Checks the request's signature or token against `secret`. Pure.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<Provider, Outcome> {
    if secret.is_empty() {
        // An empty secret would make every HMAC trivially forgeable.
        return Err(Outcome::BadSignature);
    }
    let signed = |value: &str, provider| {
        let hex = value.strip_prefix("sha256=").unwrap_or(value);
        if hmac_matches(secret, body, hex) {
            Ok(provider)
        } else {
            Err(Outcome::BadSignature)
        }
    };
    if let Some(sig) = header(headers, "x-gitea-signature") {
        return signed(sig, Provider::Gitea);
    }
    if let Some(sig) = header(headers, "x-hub-signature-256") {
        return match sig.strip_prefix("sha256=") {
            Some(_) => signed(sig, Provider::GitHub),
            None => Err(Outcome::BadSignature),
        };
    }
    if let Some(sig) = header(headers, "x-ship-signature-256") {
        return match sig.strip_prefix("sha256=") {
            Some(_) => signed(sig, Provider::Generic),
            None => Err(Outcome::BadSignature),
        };
    }
    if let Some(token) = header(headers, "x-gitlab-token") {
        return if bool::from(token.as_bytes().ct_eq(secret)) {
            Ok(Provider::GitLab)
        } else {
            Err(Outcome::BadSignature)
        };
    }
    Err(Outcome::Unsigned)
}

/// The push event's JSON: the body itself, or for a form-encoded body (by its Content-Type) the
/// value of its `payload` field. Pure.
pub fn push_json<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<std::borrow::Cow<'b, [u8]>, String> {
    let content_type = header(headers, "content-type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| std::borrow::Cow::Owned(value.into_owned().into_bytes()))
        .ok_or_else(|| "a form-encoded body without a \"payload\" field".to_owned())
}

/// Decides what a verified body asks for. Pure.
pub fn classify(provider: Provider, headers: &HeaderMap, body: &[u8], branches: &[String]) -> Outcome {
    let event = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::Gitea => header(headers, "x-gitea-event"),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Generic => Some("push"),
    };
    if let Some(event) = event
        && !matches!(event, "push" | "Push Hook")
    {
        return Outcome::Ignored(format!("event {event:?} is not a push"));
    }
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: String,
    }
    let json = match push_json(headers, body) {
        Ok(json) => json,
        Err(why) => return Outcome::Malformed(why),
    };
    let push: Push = match serde_json::from_slice(&json) {
        Ok(p) => p,
        Err(e) => return Outcome::Malformed(format!("expected a JSON object with a \"ref\" field ({e})")),
    };
    match push.git_ref.strip_prefix("refs/heads/") {
        Some(branch) if branches.iter().any(|b| b == branch) => Outcome::Triggered(branch.to_owned()),
        Some(branch) => Outcome::Ignored(format!("branch {branch:?} is not followed")),
        None => Outcome::Ignored(format!("{:?} is not a branch", push.git_ref)),
    }
}

/// Request counts by outcome label (exported as metrics by shipd).
#[derive(Debug, Default)]
pub struct Counters {
    counts: [AtomicU64; 7],
}

impl Counters {
    fn add(&self, outcome: &Outcome) {
        if let Some(i) = Outcome::LABELS.iter().position(|l| *l == outcome.label()) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    /// The count for `label`.
    pub fn get(&self, label: &str) -> u64 {
        Outcome::LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// Headers that carry a delivery's unique id, by provider.
const DELIVERY_HEADERS: [&str; 4] = [
    "x-github-delivery",
    "x-gitea-delivery",
    "x-gitlab-event-uuid",
    "x-ship-delivery",
];

/// Delivery ids remembered to refuse replays.
const REMEMBERED_DELIVERIES: usize = 4096;

/// The delivery ids of recent verified requests (bounded: the oldest are forgotten first).
#[derive(Debug, Default)]
pub struct Deliveries {
    order: std::collections::VecDeque<String>,
    seen: std::collections::HashSet<String>,
}

impl Deliveries {
    /// Records `id`; `false` if it was already there (a replay).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() == REMEMBERED_DELIVERIES
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.seen.insert(id.to_owned());
        true
    }
}

/// What the receiver needs.
#[derive(Clone)]
pub struct Receiver {
    /// The shared secret (from a Kubernetes Secret); never logged.
    pub secret: Arc<[u8]>,
    /// Followed branches.
    pub branches: Arc<[String]>,
    /// Called for a push to a followed branch.
    pub trigger: Arc<dyn Fn(&str) + Send + Sync>,
    /// Request counts.
    pub counters: Arc<Counters>,
    /// Delivery ids seen, to refuse replays of a signed request.
    pub deliveries: Arc<std::sync::Mutex<Deliveries>>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("branches", &self.branches)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A signed request whose delivery id was seen before. Requests without an id (some
    /// generic senders) cannot be told apart; replaying one only triggers another fetch.
    fn replayed(&self, headers: &HeaderMap) -> bool {
        let Some(id) = DELIVERY_HEADERS.iter().find_map(|h| header(headers, h)) else {
            return false;
        };
        match self.deliveries.lock() {
            Ok(mut deliveries) => !deliveries.first_time(id),
            Err(poisoned) => !poisoned.into_inner().first_time(id),
        }
    }

    /// Handles one request body (already read up to the limit). Pure but for the trigger call.
    pub fn handle(&self, headers: &HeaderMap, body: &[u8]) -> Outcome {
        let outcome = match verify(headers, body, &self.secret) {
            // Only a verified request's id is remembered: a forger cannot burn real ids.
            Ok(_) if self.replayed(headers) => Outcome::Replayed,
            Ok(provider) => classify(provider, headers, body, &self.branches),
            Err(rejected) => rejected,
        };
        if let Outcome::Triggered(branch) = &outcome {
            (self.trigger)(branch);
        }
        outcome
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Body) -> (StatusCode, String) {
    let outcome = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => receiver.handle(&headers, &bytes),
        Err(_) => Outcome::TooLarge,
    };
    receiver.counters.add(&outcome);
    match &outcome {
        Outcome::Triggered(branch) => info!(branch, "push webhook: fetching"),
        Outcome::Ignored(why) => debug!(why, "push webhook ignored"),
        rejected => warn!(result = rejected.label(), "push webhook rejected"),
    }
    outcome.response()
}

/// The receiver's router: `POST /hooks/push`.
pub fn router(receiver: Receiver) -> Router {
    Router::new().route(PATH, post(receive)).with_state(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"abc"}"#;

    #[test]
    fn deliveries_are_remembered_boundedly() {
        let mut d = Deliveries::default();
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        for i in 0..REMEMBERED_DELIVERIES {
            assert!(d.first_time(&format!("x{i}")));
        }
        // "a" was the oldest and has been forgotten; the set stays bounded.
        assert_eq!(d.order.len(), REMEMBERED_DELIVERIES);
        assert!(d.first_time("a"));
    }

    #[test]
    fn each_provider_verifies() {
        let s = b"s3cret";
        let gh = headers(&[
            ("x-hub-signature-256", format!("sha256={}", sign(s, BODY))),
            ("x-github-event", "push".into()),
        ]);
        assert_eq!(verify(&gh, BODY, s), Ok(Provider::GitHub));
        let gitea = headers(&[("x-gitea-signature", sign(s, BODY))]);
        assert_eq!(verify(&gitea, BODY, s), Ok(Provider::Gitea));
        let gl = headers(&[("x-gitlab-token", "s3cret".into())]);
        assert_eq!(verify(&gl, BODY, s), Ok(Provider::GitLab));
        let generic = headers(&[("x-ship-signature-256", format!("sha256={}", sign(s, BODY)))]);
        assert_eq!(verify(&generic, BODY, s), Ok(Provider::Generic));
    }

    #[test]
    fn forgeries_are_refused() {
        let s = b"s3cret";
        assert_eq!(verify(&HeaderMap::new(), BODY, s), Err(Outcome::Unsigned));
        let wrong = headers(&[("x-hub-signature-256", format!("sha256={}", sign(b"other", BODY)))]);
        assert_eq!(verify(&wrong, BODY, s), Err(Outcome::BadSignature));
        let tampered = headers(&[("x-hub-signature-256", format!("sha256={}", sign(s, BODY)))]);
        assert_eq!(
            verify(&tampered, br#"{"ref":"refs/heads/production"}"#, s),
            Err(Outcome::BadSignature)
        );
        let no_prefix = headers(&[("x-hub-signature-256", sign(s, BODY))]);
        assert_eq!(verify(&no_prefix, BODY, s), Err(Outcome::BadSignature));
        let not_hex = headers(&[("x-gitea-signature", "zz".into())]);
        assert_eq!(verify(&not_hex, BODY, s), Err(Outcome::BadSignature));
        let gl = headers(&[("x-gitlab-token", "s3cre".into())]);
        assert_eq!(verify(&gl, BODY, s), Err(Outcome::BadSignature));
        let gh = headers(&[("x-hub-signature-256", format!("sha256={}", sign(b"", BODY)))]);
        assert_eq!(
            verify(&gh, BODY, b""),
            Err(Outcome::BadSignature),
            "an empty secret accepts nothing"
        );
    }

    /// `payload=<urlencoded JSON>`, byte for byte as GitHub's form content type sends it.
    fn form(json: &[u8]) -> Vec<u8> {
        let mut body = b"payload=".to_vec();
        body.extend(form_urlencoded::byte_serialize(json).flat_map(str::bytes));
        body
    }

    #[test]
    fn githubs_and_giteas_form_encoded_pushes_are_verified_over_the_raw_body() {
        let s = b"s3cret";
        let branches = vec!["main".to_owned()];
        let body = form(BODY);
        assert!(
            body.starts_with(b"payload=%7B%22ref%22"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let github = headers(&[
            ("x-hub-signature-256", format!("sha256={}", sign(s, &body))),
            ("x-github-event", "push".into()),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ]);
        let receiver = receiver(s, &branches);
        assert_eq!(receiver.handle(&github, &body), Outcome::Triggered("main".into()));
        // Gitea and Forgejo: the same form, their own signature header; a charset parameter.
        let gitea = headers(&[
            ("x-gitea-signature", sign(s, &body)),
            ("x-gitea-event", "push".into()),
            (
                "content-type",
                "Application/X-WWW-Form-Urlencoded; charset=utf-8".into(),
            ),
        ]);
        assert_eq!(receiver.handle(&gitea, &body), Outcome::Triggered("main".into()));
        // A signature over the decoded JSON is not a signature over what was sent.
        let over_json = headers(&[
            ("x-hub-signature-256", format!("sha256={}", sign(s, BODY))),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ]);
        assert_eq!(receiver.handle(&over_json, &body), Outcome::BadSignature);
        // Tampering with the encoded payload breaks the signature.
        let tampered = form(br#"{"ref":"refs/heads/production","after":"abc"}"#);
        assert_eq!(receiver.handle(&github, &tampered), Outcome::BadSignature);
        // A signed form without a payload field is malformed, not a push.
        let empty = b"other=1".to_vec();
        let signed_empty = headers(&[
            ("x-hub-signature-256", format!("sha256={}", sign(s, &empty))),
            ("x-github-event", "push".into()),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ]);
        assert!(
            matches!(receiver.handle(&signed_empty, &empty), Outcome::Malformed(m) if m.contains("payload"))
        );
        // JSON stays JSON even when it happens to start like a form.
        assert_eq!(
            push_json(&HeaderMap::new(), b"payload=x").unwrap().as_ref(),
            b"payload=x"
        );
    }

    fn receiver(secret: &[u8], branches: &[String]) -> Receiver {
        Receiver {
            secret: secret.into(),
            branches: branches.into(),
            trigger: Arc::new(|_| {}),
            counters: Arc::default(),
            deliveries: Arc::default(),
        }
    }

    #[test]
    fn classification() {
        let branches = vec!["main".to_owned(), "production".to_owned()];
        let none = HeaderMap::new();
        assert_eq!(
            classify(Provider::Generic, &none, BODY, &branches),
            Outcome::Triggered("main".into())
        );
        let other = br#"{"ref":"refs/heads/feature"}"#;
        assert!(matches!(
            classify(Provider::Generic, &none, other, &branches),
            Outcome::Ignored(_)
        ));
        let tag = br#"{"ref":"refs/tags/v1"}"#;
        assert!(matches!(
            classify(Provider::Generic, &none, tag, &branches),
            Outcome::Ignored(_)
        ));
        assert!(matches!(
            classify(Provider::Generic, &none, b"not json", &branches),
            Outcome::Malformed(_)
        ));
        let ping = headers(&[("x-github-event", "ping".into())]);
        assert!(matches!(
            classify(Provider::GitHub, &ping, b"{}", &branches),
            Outcome::Ignored(_)
        ));
        let gl = headers(&[("x-gitlab-event", "Push Hook".into())]);
        assert_eq!(
            classify(Provider::GitLab, &gl, BODY, &branches),
            Outcome::Triggered("main".into())
        );
    }
}

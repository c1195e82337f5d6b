//! The notifier: sends what releases and the promotion are owed ([`ship_notify::ledger`]) and
//! records each outcome in their status (`status.notifications`, under its own field manager).
//!
//! It runs beside the release engine and never in its way. It reads the engine's reflector
//! store of releases (and its own of promotions), so it costs the API server nothing while
//! nothing is owed; each delivery is a task of its own, so a slow or dead receiver holds up
//! only its own deliveries, never a transition or a rollback. Per target and object one
//! delivery runs at a time, oldest first, so a receiver hears of a release's transitions in
//! order; a commit status that a newer one makes moot is dropped between attempts.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;

use kube::{Api, Client, Resource, ResourceExt};
use ship_api::{NOTIFIER_FIELD_MANAGER, NotificationOutcome, NotificationRecord, ShipPromotion, ShipRelease};
use ship_notify::config::{Target, TargetKind, UrlSource};
use ship_notify::delivery::{self, Answer, Credentials, SecretUrl, SigningKey};
use ship_notify::forge::Token;
use ship_notify::ledger::{self, Owed};
use ship_notify::message::Notification;
use tracing::{Instrument as _, debug, info, warn};

use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::metrics::Metrics;

/// The event a given-up delivery is announced by.
pub const NOTIFICATION_FAILED: &str = "NotificationFailed";

/// How often the notifier looks for owed deliveries: often enough that a release which
/// applies and succeeds within a second still sends `pending` first (a look that finds both
/// sends only the newest commit state). A look reads the store in memory and clones nothing
/// unless it starts a delivery.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// What the notifier needs.
#[derive(Clone)]
pub struct Notifier {
    /// The API client.
    pub client: Client,
    /// The ShipPromotions (shipd's store, shared with the status page; a malformed object is
    /// skipped, never a stalled watch).
    pub promotions: Store<DeserializeGuard<ShipPromotion>>,
    /// Where the Secrets the targets name live.
    pub secret_namespace: String,
    /// The targets, resolved.
    pub targets: Arc<Vec<Target>>,
    /// Base URL of the status page, for links.
    pub status_page_url: Option<String>,
    /// How long a delivery is retried before it is given up on.
    pub give_up_after: Duration,
    /// How old a transition may be and still be owed (a new target does not replay history).
    pub max_age: Duration,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// Events.
    pub recorder: EventRecorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The engine's reflector store of releases, once its first list is complete.
    pub releases: Arc<OnceLock<Store<DeserializeGuard<ShipRelease>>>>,
    /// The engine's clock (release transitions).
    pub clock: Clock,
    /// The promotion's clock (its runs' times).
    pub promotion_clock: Clock,
    /// The HTTP client deliveries go out with (no redirects: a redirect would carry the
    /// token elsewhere).
    pub http: reqwest::Client,
    /// Held while a record is written (see [`Notifier::record`]).
    pub record_lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.targets.len())
            .field("give_up_after", &self.give_up_after)
            .finish_non_exhaustive()
    }
}

/// A release or the promotion, as the notifier handles both.
#[derive(Clone)]
enum Subject {
    Release(Arc<DeserializeGuard<ShipRelease>>),
    Promotion(Arc<ShipPromotion>),
}

/// The release a guarded store entry holds (`None`: the object did not deserialize).
fn release_of(guard: &DeserializeGuard<ShipRelease>) -> Option<&ShipRelease> {
    guard.0.as_ref().ok()
}

impl Subject {
    /// A subject for each well-formed release (a malformed one owes nothing).
    fn release(guard: Arc<DeserializeGuard<ShipRelease>>) -> Option<Self> {
        release_of(&guard).is_some().then_some(Subject::Release(guard))
    }

    fn as_release(&self) -> Option<&ShipRelease> {
        match self {
            Subject::Release(guard) => release_of(guard),
            Subject::Promotion(_) => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Subject::Release(_) => "ShipRelease",
            Subject::Promotion(_) => "ShipPromotion",
        }
    }

    fn key(&self) -> (String, String, String) {
        let (namespace, name) = match (self, self.as_release()) {
            (_, Some(r)) => (r.namespace(), r.name_any()),
            (Subject::Promotion(p), _) => (p.namespace(), p.name_any()),
            (Subject::Release(_), None) => (None, String::new()),
        };
        (self.kind().to_owned(), namespace.unwrap_or_default(), name)
    }

    fn recorded(&self) -> &[NotificationRecord] {
        match (self, self.as_release()) {
            (_, Some(r)) => r.status.as_ref().map_or(&[], |s| s.notifications.as_slice()),
            (Subject::Promotion(p), _) => p.status.as_ref().map_or(&[], |s| s.notifications.as_slice()),
            (Subject::Release(_), None) => &[],
        }
    }

    fn object_ref(&self) -> ObjectReference {
        match (self, self.as_release()) {
            (_, Some(r)) => r.object_ref(&()),
            (Subject::Promotion(p), _) => p.object_ref(&()),
            (Subject::Release(_), None) => ObjectReference::default(),
        }
    }

    fn environment(&self) -> String {
        match (self, self.as_release()) {
            (_, Some(r)) => r.spec.environment.clone(),
            (Subject::Promotion(p), _) => p.spec.to.clone(),
            (Subject::Release(_), None) => String::new(),
        }
    }

    fn commit(&self) -> String {
        match (self, self.as_release()) {
            (_, Some(r)) => r.spec.commit.clone(),
            (Subject::Release(_), None) => String::new(),
            (Subject::Promotion(p), _) => p
                .status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .and_then(|r| r.commit.clone())
                .unwrap_or_default(),
        }
    }
}

/// One delivery in flight: its id, and the flag that drops it between attempts.
struct InFlight {
    id: String,
    drop: Arc<AtomicBool>,
}

/// What the notifier remembers between looks.
#[derive(Default)]
struct Memory {
    /// Per (kind, namespace, name, target): the delivery running.
    in_flight: HashMap<(String, String, String, usize), InFlight>,
    /// Records written by this process, until the store shows them.
    written: HashMap<(String, String, String), Vec<NotificationRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `records` and `more`, without repeats (by id), in order.
fn union(records: &[NotificationRecord], more: &[NotificationRecord]) -> Vec<NotificationRecord> {
    let mut all = records.to_vec();
    for record in more {
        if !all.iter().any(|r| r.id == record.id) {
            all.push(record.clone());
        }
    }
    all
}

/// `ts - d`, saturating at the epoch.
fn before(ts: Timestamp, d: Duration) -> Timestamp {
    let d = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    ts.checked_sub(d).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Runs the notifier until `stop` resolves.
pub async fn run(notifier: Notifier, stop: impl std::future::Future<Output = ()>) {
    if notifier.targets.is_empty() {
        return;
    }
    info!(targets = notifier.targets.len(), "notifier started");
    let memory = Arc::new(Mutex::new(Memory::default()));
    let looks = async {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(releases) = notifier.releases.get() else {
                continue;
            };
            let mut subjects: Vec<Subject> = releases
                .state()
                .into_iter()
                .filter_map(Subject::release)
                .collect();
            subjects.extend(
                notifier
                    .promotions
                    .state()
                    .iter()
                    .filter_map(|p| p.0.as_ref().ok())
                    .map(|p| Subject::Promotion(Arc::new(p.clone()))),
            );
            // Records of objects since deleted (history pruned) are no longer needed.
            let present: Option<std::collections::HashSet<_>> =
                (!lock(&memory).written.is_empty()).then(|| subjects.iter().map(Subject::key).collect());
            for subject in subjects {
                notifier.look(subject, &memory);
            }
            if let Some(present) = present {
                lock(&memory).written.retain(|key, _| present.contains(key));
            }
        }
    };
    tokio::select! {
        () = looks => {},
        () = stop => {},
    }
}

impl Notifier {
    /// Starts the deliveries `subject` is owed that are not running, and drops running ones
    /// that are owed no longer.
    fn look(&self, subject: Subject, memory: &Arc<Mutex<Memory>>) {
        let key = subject.key();
        let mut memory_now = lock(memory);
        // What the status records, and what this process wrote that the store does not show
        // yet. Usually nothing is pending: then the status's own list is read, not copied
        // (this runs for every release ten times a second).
        let recorded: std::borrow::Cow<'_, [NotificationRecord]> = match memory_now.written.get(&key) {
            None => std::borrow::Cow::Borrowed(subject.recorded()),
            Some(written) => {
                let all = union(subject.recorded(), written);
                // The store caught up with what this process wrote: forget it.
                if all.len() == subject.recorded().len() {
                    memory_now.written.remove(&key);
                }
                std::borrow::Cow::Owned(all)
            }
        };
        let owed = match (&subject, subject.as_release()) {
            (_, Some(r)) => {
                ledger::owed_for_release(r, &recorded, &self.targets, before((self.clock)(), self.max_age))
            }
            (Subject::Promotion(p), _) => ledger::owed_for_promotion(
                p,
                &recorded,
                &self.targets,
                before((self.promotion_clock)(), self.max_age),
            ),
            (Subject::Release(_), None) => return,
        };
        let mut first_per_target: BTreeMap<usize, &Owed> = BTreeMap::new();
        for o in &owed {
            first_per_target.entry(o.target).or_insert(o);
        }
        for index in 0..self.targets.len() {
            let flight = (key.0.clone(), key.1.clone(), key.2.clone(), index);
            let next = first_per_target.get(&index);
            if let Some(running) = memory_now.in_flight.get(&flight) {
                if !owed.iter().any(|o| o.id == running.id) {
                    // A newer commit status made it moot (or it was recorded meanwhile).
                    running.drop.store(true, Ordering::SeqCst);
                }
                continue;
            }
            let Some(next) = next else { continue };
            let drop = Arc::new(AtomicBool::new(false));
            memory_now.in_flight.insert(
                flight.clone(),
                InFlight {
                    id: next.id.clone(),
                    drop: drop.clone(),
                },
            );
            let notifier = self.clone();
            let memory = memory.clone();
            let owed = (*next).clone();
            let subject = subject.clone();
            let span = tracing::info_span!(
                "notify",
                environment = subject.environment(),
                commit = subject.commit(),
                release = key.2,
                delivery = owed.id,
            );
            tokio::spawn(
                async move {
                    notifier.deliver(&subject, &owed, &drop, &memory).await;
                    lock(&memory).in_flight.remove(&flight);
                }
                .instrument(span),
            );
        }
    }

    /// Sends `owed` until it lands, is refused, runs out of time or is dropped, and records
    /// the outcome.
    async fn deliver(&self, subject: &Subject, owed: &Owed, drop: &AtomicBool, memory: &Arc<Mutex<Memory>>) {
        let Some(target) = self.targets.get(owed.target) else {
            return;
        };
        let provider = target.provider();
        let Some(notification) = self.notification(subject, owed) else {
            return;
        };
        // When to try again and when to give up is the outbox machine's decision.
        use ship_core::outbox::{Delivery, Effect, Event, step};
        let began = tokio::time::Instant::now();
        let mut delivery = Delivery::new(self.give_up_after);
        let mut event = Some(Event::Due {
            dropped: drop.load(Ordering::SeqCst),
        });
        let mut finished = None;
        // What the receiver said last: the retry's log line says it (a missing Secret, say).
        let mut last_said = String::new();
        while let Some(happened) = event.take() {
            let (next, effects) = step(delivery, happened, began.elapsed());
            delivery = next;
            for effect in effects {
                match effect {
                    Effect::Attempt => {
                        let (answer, said, retry_after) = self.attempt(target, owed, &notification).await;
                        last_said.clone_from(&said);
                        event = Some(Event::Answered {
                            answer,
                            said,
                            retry_after,
                        });
                    }
                    Effect::CountRetry => self.metrics.notified(provider, "retried"),
                    Effect::Wait(wait) => {
                        debug!(
                            attempts = delivery.attempts,
                            said = last_said,
                            ?wait,
                            "delivery failed; trying again"
                        );
                        tokio::time::sleep(wait).await;
                        event = Some(Event::Due {
                            dropped: drop.load(Ordering::SeqCst),
                        });
                    }
                    Effect::Finish {
                        outcome,
                        attempts,
                        message,
                    } => finished = Some((outcome, attempts, message)),
                    Effect::Abandon => {
                        debug!("dropped: a newer commit status replaces it");
                    }
                }
            }
        }
        let Some((outcome, attempts, message)) = finished else {
            return;
        };
        let result = match outcome {
            NotificationOutcome::Delivered => "delivered",
            NotificationOutcome::GaveUp => "gave_up",
        };
        self.metrics.notified(provider, result);
        if let Some(message) = &message {
            warn!(
                target = target.name,
                provider, attempts, message, "notification given up"
            );
            self.recorder
                .announce(
                    &subject.object_ref(),
                    EventType::Warning,
                    NOTIFICATION_FAILED,
                    "Notify",
                    &format!(
                        "notification {} to {} ({provider}) given up: {message}",
                        owed.id, target.name
                    ),
                )
                .await;
        } else {
            info!(target = target.name, provider, attempts, "notification delivered");
        }
        let record = NotificationRecord {
            id: owed.id.clone(),
            outcome,
            attempts,
            at: Time((self.clock)()),
            message,
        };
        self.record(subject, record, memory).await;
    }

    /// One attempt: what the answer means, a sentence about it (no URL, no credential), and
    /// the wait the receiver asked for.
    async fn attempt(
        &self,
        target: &Target,
        owed: &Owed,
        notification: &Notification,
    ) -> (Answer, String, Option<Duration>) {
        let credentials = match self.credentials(target).await {
            Ok(credentials) => credentials,
            // A Secret may be created after shipd starts: retry until the time runs out.
            Err(said) => return (Answer::Retry, said, None),
        };
        // One request, or (a GitHub deployment status) a few: each must be accepted.
        let mut step = delivery::first_step(target);
        loop {
            let request = match delivery::request(target, owed, notification, &credentials, step) {
                Ok(request) => request,
                Err(err) => return (Answer::Refused, err.to_string(), None),
            };
            let (answer, said, retry_after, body) = self.send(request, &credentials).await;
            if answer != Answer::Delivered {
                return (answer, said, retry_after);
            }
            match delivery::next_step(target, step, &body, notification) {
                Ok(None) => return (answer, said, retry_after),
                Ok(Some(next)) => step = next,
                Err(err) => return (Answer::Refused, format!("{said}; {err}"), None),
            }
        }
    }

    /// Sends one request: what the answer means, a sentence about it (no URL, no credential),
    /// the wait the receiver asked for, and the answer's body.
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        credentials: &Credentials,
    ) -> (Answer, String, Option<Duration>, Vec<u8>) {
        let request = match reqwest::Request::try_from(request) {
            Ok(request) => request,
            Err(_) => {
                return (
                    Answer::Refused,
                    "the target's URL is not valid".into(),
                    None,
                    Vec::new(),
                );
            }
        };
        let sent = tokio::time::timeout(self.attempt_timeout, self.http.execute(request)).await;
        let response = match sent {
            Err(_) => {
                return (
                    Answer::Retry,
                    format!("no answer within {}s", self.attempt_timeout.as_secs()),
                    None,
                    Vec::new(),
                );
            }
            Ok(Err(err)) => {
                let what = if err.is_connect() {
                    "cannot connect"
                } else if err.is_timeout() {
                    "timed out"
                } else {
                    "the request failed"
                };
                return (Answer::Retry, what.to_owned(), None, Vec::new());
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        let answer = delivery::judge(status, response.headers());
        let now = u64::try_from((self.clock)().as_second()).unwrap_or_default();
        let retry_after = delivery::asked_wait(response.headers(), now);
        let body = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let text = redact(&String::from_utf8_lossy(&body), credentials);
        let said = format!("HTTP {status}: {}", crate::text::tail(text.trim(), 200));
        (answer, said, retry_after, body)
    }

    /// The notification `owed` sends about `subject`: as it stands, said as the transition
    /// that owes it.
    fn notification(&self, subject: &Subject, owed: &Owed) -> Option<Notification> {
        let base = self.status_page_url.as_deref().map(|u| u.trim_end_matches('/'));
        Some(match (subject, subject.as_release()) {
            (_, Some(r)) => {
                let name = r.name_any();
                let link = base.map(|b| format!("{b}/status#{name}"));
                if owed.trigger == ship_notify::config::Trigger::CulpritNamed {
                    return Notification::of_culprit(r, link.as_deref());
                }
                let mut n = Notification::of(r, link.as_deref());
                n.phase = owed.trigger.as_ref().to_owned();
                // The transition that owes it: its phase and time (times are whole seconds, so a
                // release that progresses and succeeds within one has two transitions at `at`).
                if let Some(t) = r.status.as_ref().and_then(|s| {
                    s.transitions
                        .iter()
                        .find(|t| t.at.0 == owed.at && owed.trigger.phase() == Some(t.phase))
                }) {
                    n.message = t.message.clone();
                }
                n
            }
            (Subject::Promotion(p), _) => {
                let link = base.map(|b| format!("{b}/status#promotion"));
                Notification::of_promotion(p, link.as_deref())
            }
            (Subject::Release(_), None) => return None,
        })
    }

    /// The credentials `target` names, read now (a rotated Secret takes effect at once).
    async fn credentials(&self, target: &Target) -> Result<Credentials, String> {
        let mut credentials = Credentials::default();
        match &target.kind {
            TargetKind::CommitStatus { token, .. } | TargetKind::Deployment { token, .. } => {
                credentials.token = Some(Token::new(self.secret_key(token).await?));
            }
            TargetKind::Webhook { url, signing, .. } => {
                if let UrlSource::Secret(key) = url {
                    credentials.url = Some(SecretUrl(self.secret_key(key).await?));
                }
                if let Some(key) = signing {
                    credentials.signing_key = Some(SigningKey(self.secret_key(key).await?.into_bytes()));
                }
            }
        }
        Ok(credentials)
    }

    async fn secret_key(&self, key: &ship_notify::config::SecretKey) -> Result<String, String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.secret_namespace);
        let where_ = format!("Secret {}/{} key {:?}", self.secret_namespace, key.name, key.key);
        let secret = match secrets.get_opt(&key.name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => return Err(format!("{where_}: the Secret does not exist")),
            Err(kube::Error::Api(status)) => {
                return Err(format!(
                    "{where_}: cannot read it ({} {})",
                    status.code, status.reason
                ));
            }
            Err(_) => {
                return Err(format!(
                    "{where_}: cannot read it (the API server did not answer)"
                ));
            }
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key.key))
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
            .filter(|v| !v.is_empty());
        value.ok_or_else(|| format!("{where_}: the key is missing or empty"))
    }

    /// Adds `record` to `subject`'s `status.notifications`, by server-side apply under the
    /// notifier's own field manager (the one writer of that field).
    async fn record(&self, subject: &Subject, record: NotificationRecord, memory: &Arc<Mutex<Memory>>) {
        let key = subject.key();
        // One write at a time, the list computed inside: two deliveries that end together
        // (four statuses of one release within a millisecond, say) must not each apply a list
        // without the other's record, or the later apply of the shorter list drops a record
        // and a restart sends that delivery again. The e2e caught exactly that.
        let _one_writer = self.record_lock.lock().await;
        let records = {
            let mut memory = lock(memory);
            let mine = memory.written.entry(key.clone()).or_default();
            mine.push(record);
            let fresh = self.current(subject);
            union(&fresh, mine)
        };
        let api_version = match subject {
            Subject::Release(_) => ShipRelease::api_version(&()),
            Subject::Promotion(_) => ShipPromotion::api_version(&()),
        };
        let patch = serde_json::json!({
            "apiVersion": api_version,
            "kind": subject.kind(),
            "status": { "notifications": records },
        });
        let params = kube::api::PatchParams::apply(NOTIFIER_FIELD_MANAGER).force();
        let patch = kube::api::Patch::Apply(&patch);
        let written = match subject {
            Subject::Release(_) => {
                let api: Api<ShipRelease> = Api::namespaced(self.client.clone(), &key.1);
                api.patch_status(&key.2, &params, &patch).await.map(drop)
            }
            Subject::Promotion(_) => {
                let api: Api<ShipPromotion> = Api::namespaced(self.client.clone(), &key.1);
                api.patch_status(&key.2, &params, &patch).await.map(drop)
            }
        };
        match written {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                debug!("the object is gone; nothing to record");
            }
            // Kept in memory: this process will not send it again. A restart before the record
            // lands sends it once more (at least once; the id lets a receiver drop it).
            Err(err) => warn!(error = %err, "cannot record the notification in the status"),
        }
    }

    /// The records the store holds now for `subject`.
    fn current(&self, subject: &Subject) -> Vec<NotificationRecord> {
        let (_, namespace, name) = subject.key();
        match subject {
            Subject::Release(_) => self
                .releases
                .get()
                .and_then(|store| {
                    store
                        .state()
                        .iter()
                        .filter_map(|r| r.0.as_ref().ok())
                        .find(|r| r.namespace().as_deref() == Some(&namespace) && r.name_any() == name)
                        .and_then(|r| r.status.as_ref().map(|s| s.notifications.clone()))
                })
                .unwrap_or_default(),
            Subject::Promotion(_) => subject.recorded().to_vec(),
        }
    }
}

/// `text` with every credential in `credentials` replaced by `<redacted>` (a receiver's answer
/// may echo what it was sent).
fn redact(text: &str, credentials: &Credentials) -> String {
    let mut text = text.to_owned();
    let secrets = [
        credentials.token.as_ref().map(Token::expose_for_redaction),
        credentials.url.as_ref().map(|u| u.0.clone()),
        credentials
            .signing_key
            .as_ref()
            .map(|k| String::from_utf8_lossy(&k.0).into_owned()),
    ];
    for secret in secrets.into_iter().flatten() {
        if !secret.is_empty() {
            text = text.replace(&secret, "<redacted>");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_never_echo_credentials() {
        let credentials = Credentials {
            token: Some(Token::new("ghp_abc")),
            url: Some(SecretUrl("https://hooks/T/x".into())),
            signing_key: Some(SigningKey(b"k3y".to_vec())),
        };
        assert_eq!(
            redact("bad token ghp_abc for https://hooks/T/x signed k3y", &credentials),
            "bad token <redacted> for <redacted> signed <redacted>"
        );
    }

    #[test]
    fn records_join_without_repeats() {
        let r = |id: &str| NotificationRecord {
            id: id.into(),
            outcome: NotificationOutcome::Delivered,
            attempts: 1,
            at: Time(Timestamp::UNIX_EPOCH),
            message: None,
        };
        let ids: Vec<String> = union(&[r("a"), r("b")], &[r("b"), r("c")])
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}

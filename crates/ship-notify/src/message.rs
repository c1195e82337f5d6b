//! What a notification says, from a release as its status stands: the commit status's state
//! and description, a chat message (Slack's incoming-webhook `text`, which Mattermost and
//! Rocket.Chat take too), and a generic JSON webhook signed with HMAC-SHA256. All pure.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use ship_api::{Phase, PromotionOutcome, PromotionRun, ShipPromotion, ShipRelease, TestVerdict};

use crate::forge::{CommitState, DeploymentState};

/// The header a signed webhook carries: `sha256=<hex HMAC-SHA256 of the body>`, the scheme
/// GitHub's webhooks use, so receivers can verify it with code they already have.
pub const SIGNATURE_HEADER: &str = "x-ship-signature-256";

/// The commit status a release's phase calls for: pending once it applies, success when it
/// succeeded, failure when it failed or rolled back, cancelled when a newer commit superseded
/// it (sent only if it had said pending: see `ledger`). `None` for the phases in between.
pub fn commit_state(phase: Phase) -> Option<CommitState> {
    match phase {
        Phase::Applying => Some(CommitState::Pending),
        Phase::Succeeded => Some(CommitState::Success),
        Phase::Failed | Phase::RolledBack => Some(CommitState::Failure),
        Phase::Superseded => Some(CommitState::Cancelled),
        Phase::Pending | Phase::Progressing | Phase::Testing | Phase::RollingBack => None,
    }
}

/// The GitHub deployment status a release's phase calls for: in progress once it applies,
/// success when it succeeded, failure when it failed, inactive once it no longer runs (rolled
/// back, or superseded after it had started: see `ledger`). `None` for the phases in between.
pub fn deployment_state(phase: Phase) -> Option<DeploymentState> {
    match phase {
        Phase::Applying => Some(DeploymentState::InProgress),
        Phase::Succeeded => Some(DeploymentState::Success),
        Phase::Failed => Some(DeploymentState::Failure),
        Phase::RolledBack | Phase::Superseded => Some(DeploymentState::Inactive),
        Phase::Pending | Phase::Progressing | Phase::Testing | Phase::RollingBack => None,
    }
}

/// What one release's notification says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The environment.
    pub environment: String,
    /// The release.
    pub release: String,
    /// The commit (full SHA).
    pub commit: String,
    /// Its short SHA.
    pub short_commit: String,
    /// The first line of its message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its author, when the release knows it (the newest suspect is the commit itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// The phase.
    pub phase: String,
    /// The status's message.
    pub message: String,
    /// The tests that failed, with what each said.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<FailedTest>,
    /// The release rolled back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
    /// The commits since the last good release (`short author: subject`), newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suspects: Vec<String>,
    /// Where to look (the status page), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Commits a bisection found good (full SHAs, oldest first; at most [`MAX_CLEARED`], the
    /// ones nearest the culprit): a commit-status target marks each `success`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleared: Vec<String>,
}

/// The most commits a culprit's notification clears: each is one forge request, and a forge
/// limits how many a token may make a minute (GitHub: 80 writes). Those nearest the culprit
/// are the ones a reader of the forge looks at.
pub const MAX_CLEARED: usize = 50;

/// A failed test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedTest {
    /// Its name.
    pub name: String,
    /// What it said.
    pub message: String,
}

impl Notification {
    /// The notification of `release` as its status stands, linking to `link`.
    pub fn of(release: &ShipRelease, link: Option<&str>) -> Self {
        let status = release.status.clone().unwrap_or_default();
        let own = status
            .suspects
            .iter()
            .find(|s| release.spec.commit.starts_with(&s.commit));
        Self {
            environment: release.spec.environment.clone(),
            release: release.metadata.name.clone().unwrap_or_default(),
            commit: release.spec.commit.clone(),
            short_commit: release.spec.short_commit().to_owned(),
            subject: status.commit_subject.clone(),
            author: own.map(|s| s.author.clone()),
            phase: status.phase.map(|p| p.as_str().to_owned()).unwrap_or_default(),
            message: status.message.clone().unwrap_or_default(),
            failed_tests: status
                .tests
                .iter()
                .filter(|t| t.verdict == TestVerdict::Failed)
                .map(|t| FailedTest {
                    name: t.name.clone(),
                    message: t.message.clone(),
                })
                .collect(),
            rolled_back_to: status.rolled_back_to.clone(),
            suspects: status
                .suspects
                .iter()
                .map(|s| format!("{} {}: {}", s.commit, s.author, s.subject))
                .collect(),
            link: link.map(str::to_owned),
            cleared: Vec::new(),
        }
    }

    /// The notification that `release`'s bisection named its culprit: about the culprit's
    /// commit and author, with what the bisection found and the culprit's failing test.
    /// `None` when no culprit is named.
    pub fn of_culprit(release: &ShipRelease, link: Option<&str>) -> Option<Self> {
        let bisection = release.status.as_ref()?.bisection.as_ref()?;
        let culprit = bisection.culprit.as_ref()?;
        let failed_tests = culprit
            .failed_test
            .as_deref()
            .and_then(|text| text.lines().next())
            .and_then(|first| first.split_once(": "))
            .map(|(name, message)| FailedTest {
                name: name.to_owned(),
                message: message.to_owned(),
            })
            .into_iter()
            .collect();
        Some(Self {
            environment: release.spec.environment.clone(),
            release: release.metadata.name.clone().unwrap_or_default(),
            commit: culprit.commit.clone(),
            short_commit: culprit.short_commit.clone(),
            subject: Some(culprit.subject.clone()),
            author: Some(culprit.author.clone()).filter(|a| !a.is_empty()),
            phase: "CulpritNamed".to_owned(),
            message: bisection.message.clone().unwrap_or_default(),
            failed_tests,
            rolled_back_to: None,
            suspects: Vec::new(),
            link: link.map(str::to_owned),
            cleared: {
                let good = bisection.known_good();
                good[good.len().saturating_sub(MAX_CLEARED)..].to_vec()
            },
        })
    }

    /// The notification of the promotion's last run, linking to `link`.
    pub fn of_promotion(promotion: &ShipPromotion, link: Option<&str>) -> Self {
        let status = promotion.status.clone().unwrap_or_default();
        let run = status.last_run.unwrap_or(PromotionRun {
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            requested_by: String::new(),
            outcome: PromotionOutcome::Error,
            commit: None,
            release: None,
            message: String::new(),
        });
        let commit = run.commit.clone().unwrap_or_default();
        Self {
            environment: promotion.spec.to.clone(),
            release: run
                .release
                .clone()
                .unwrap_or_else(|| promotion.metadata.name.clone().unwrap_or_default()),
            short_commit: commit.chars().take(7).collect(),
            commit,
            subject: None,
            author: None,
            phase: format!("Promotion {}", run.outcome.as_str()),
            message: format!(
                "promotion {} -> {} (requested by {}): {}",
                promotion.spec.from, promotion.spec.to, run.requested_by, run.message
            ),
            failed_tests: Vec::new(),
            rolled_back_to: None,
            suspects: Vec::new(),
            link: link.map(str::to_owned),
            cleared: Vec::new(),
        }
    }

    /// What the release is, in a line: `main-0123456: Faster checkout` (a GitHub deployment's
    /// description).
    pub fn headline(&self) -> String {
        match &self.subject {
            Some(subject) => format!("{}: {subject}", self.release),
            None => self.release.clone(),
        }
    }

    /// The commit status's description: what happened, the failed test and the rollback
    /// target first, since a forge keeps only the start.
    pub fn description(&self) -> String {
        let mut parts = Vec::new();
        if let Some(test) = self.failed_tests.first() {
            parts.push(format!("test {} failed: {}", test.name, test.message));
        }
        if let Some(target) = &self.rolled_back_to {
            parts.push(format!("rolled back to {target}"));
        }
        if parts.is_empty() {
            return format!("{}: {}", self.environment, self.message);
        }
        format!("{}: {}", self.environment, parts.join("; "))
    }

    /// A chat message: Slack's incoming-webhook JSON (`text`, with its `*bold*` and `<url|label>`
    /// marks, which Mattermost and Rocket.Chat read too).
    pub fn chat_body(&self) -> serde_json::Value {
        let mut lines = vec![format!(
            "*{}* {}: `{}` {}{}",
            self.environment,
            self.phase,
            self.short_commit,
            self.subject.as_deref().unwrap_or(""),
            self.author
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        )];
        lines.push(self.message.clone());
        for test in &self.failed_tests {
            lines.push(format!("• test *{}* failed: {}", test.name, test.message));
        }
        if !self.suspects.is_empty() {
            lines.push(format!("suspects: {}", self.suspects.join("; ")));
        }
        if let Some(link) = &self.link {
            lines.push(format!("<{link}|{}>", self.release));
        }
        serde_json::json!({ "text": lines.join("\n") })
    }

    /// A generic webhook's body: the notification as JSON, with a delivery id the receiver can
    /// drop duplicates by.
    pub fn webhook_body(&self, delivery: &str) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["delivery"] = serde_json::Value::String(delivery.to_owned());
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// The [`SIGNATURE_HEADER`] value for `body` signed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes a key of any length; this arm is never reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ship_api::{Reason, ShipReleaseSpec, ShipReleaseStatus, SuspectCommit, TestResult};

    fn rolled_back() -> ShipRelease {
        let mut release = ShipRelease::new(
            "production-0123456789",
            ShipReleaseSpec {
                environment: "production".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
                branch: "production".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
        );
        release.status = Some(ShipReleaseStatus {
            phase: Some(Phase::RolledBack),
            message: Some("1/2 tests passed; failed: checkout".into()),
            commit_subject: Some("Faster checkout".into()),
            rolled_back_to: Some("production-abcdef1234".into()),
            tests: vec![TestResult {
                name: "checkout".into(),
                verdict: TestVerdict::Failed,
                duration_millis: Some(12),
                message: "expected HTTP 200, got 500".into(),
                log: String::new(),
            }],
            suspects: vec![SuspectCommit {
                commit: "0123456".into(),
                author: "Ada".into(),
                subject: "Faster checkout".into(),
                committed_at: None,
            }],
            ..ShipReleaseStatus::default()
        });
        release
    }

    #[test]
    fn the_phase_decides_the_commit_state() {
        let states: Vec<Option<CommitState>> = Phase::ALL.iter().map(|p| commit_state(*p)).collect();
        for (phase, state) in Phase::ALL.iter().zip(states) {
            let want = match phase {
                Phase::Applying => Some(CommitState::Pending),
                Phase::Succeeded => Some(CommitState::Success),
                Phase::Failed | Phase::RolledBack => Some(CommitState::Failure),
                Phase::Superseded => Some(CommitState::Cancelled),
                _ => None,
            };
            assert_eq!(state, want, "{phase:?}");
        }
    }

    #[test]
    fn a_rollback_names_the_failed_test_the_target_and_the_suspects() {
        let n = Notification::of(&rolled_back(), Some("https://ship.example.com/#production"));
        assert_eq!(
            n.description(),
            "production: test checkout failed: expected HTTP 200, got 500; rolled back to production-abcdef1234"
        );
        assert_eq!(n.author.as_deref(), Some("Ada"));
        let text = n.chat_body()["text"].as_str().unwrap().to_owned();
        for said in [
            "*production* RolledBack: `0123456` Faster checkout (Ada)",
            "• test *checkout* failed: expected HTTP 200, got 500",
            "suspects: 0123456 Ada: Faster checkout",
            "<https://ship.example.com/#production|production-0123456789>",
        ] {
            assert!(text.contains(said), "{said}\n{text}");
        }
        let body: serde_json::Value = serde_json::from_slice(&n.webhook_body("d-1")).unwrap();
        assert_eq!(body["delivery"], "d-1");
        assert_eq!(body["failedTests"][0]["name"], "checkout");
        assert_eq!(body["rolledBackTo"], "production-abcdef1234");
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            signature(b"Jefe", b"what do ya want for nothing!"),
            signature(b"Jefe", b"what do ya want for nothing?")
        );
    }
}

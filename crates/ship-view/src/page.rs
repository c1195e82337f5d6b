//! The read-only status page, rendered on the server from what the controller's caches hold:
//! per environment what is deployed (commit, subject, author, phase, tests, age), the release
//! history with each test's verdict and the end of its log, the promotion (behind by, next
//! and last run), and the suspects of a failed release. No script and no build step: the page
//! reloads itself (`<meta http-equiv="refresh">`). It shows nothing status does not show, and
//! every value from the cluster is HTML-escaped.

use jiff::Timestamp;
use ship_api::{Phase, ShipEnvironment, ShipPromotion, ShipRelease, TestVerdict};

use crate::report::{self, ReleaseRow};

/// Most characters of a test's log the page shows (its end, where the cause usually is).
pub const LOG_TAIL: usize = 2000;

/// What the page is made of.
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    /// Every release in the namespace.
    pub releases: &'a [ShipRelease],
    /// The ShipEnvironments.
    pub environments: &'a [ShipEnvironment],
    /// The promotion, if there is one.
    pub promotion: Option<&'a ShipPromotion>,
    /// Seconds between reloads.
    pub refresh_seconds: u32,
    /// The time the page is rendered at.
    pub now: Timestamp,
}

/// `text` safe in HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The CSS class of a phase: good, bad, busy or quiet.
fn tone(phase: &str) -> &'static str {
    match phase {
        "Succeeded" => "good",
        "Failed" | "RollingBack" | "RolledBack" => "bad",
        "Superseded" | "" => "quiet",
        _ => "busy",
    }
}

/// The author of `release`'s own commit, when its suspects name it.
fn author(release: &ShipRelease) -> Option<String> {
    let status = release.status.as_ref()?;
    status
        .suspects
        .iter()
        .find(|s| release.spec.commit.starts_with(&s.commit))
        .map(|s| s.author.clone())
}

fn find<'a>(releases: &'a [ShipRelease], name: &str) -> Option<&'a ShipRelease> {
    releases.iter().find(|r| r.metadata.name.as_deref() == Some(name))
}

fn age_of(now: Timestamp, row: &ReleaseRow) -> String {
    row.created.map(|t| report::age(now, t)).unwrap_or_default()
}

/// The end of `log`, within [`LOG_TAIL`] characters.
fn tail(log: &str) -> &str {
    let count = log.chars().count();
    if count <= LOG_TAIL {
        return log;
    }
    let skip = count - LOG_TAIL;
    let start = log.char_indices().nth(skip).map_or(0, |(i, _)| i);
    &log[start..]
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}\
h1{margin:0 0 .2rem}h2{margin-top:2rem}.muted{color:#666}\
.envs{display:flex;gap:1rem;flex-wrap:wrap}.env{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1rem;min-width:22rem;flex:1}\
.phase{font-weight:600;padding:.1rem .5rem;border-radius:4px}.good{background:#dcfce7;color:#14532d}\
.bad{background:#fee2e2;color:#7f1d1d}.busy{background:#e0f2fe;color:#0c4a6e}.quiet{background:#eee;color:#444}\
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #eee;padding:.35rem .5rem;text-align:left;vertical-align:top}\
code{font-size:.95em}pre{background:#111;color:#eee;padding:.5rem;overflow:auto;max-height:16rem}\
.alert{border-left:4px solid #b91c1c;background:#fff5f5;padding:.5rem 1rem}";

/// The page.
pub fn render(input: &PageInput<'_>) -> String {
    let now = input.now;
    let environments = report::environments(input.releases, input.environments);
    let mut html = String::new();
    html.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\"><title>Ship: what is deployed where</title>\
         <style>{STYLE}</style></head><body>\
         <h1>Ship</h1><p class=\"muted\">What is deployed where, as of {} (this page reloads every {} s; it shows what the releases' status says).</p>",
        input.refresh_seconds,
        escape(&now.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
        input.refresh_seconds,
    ));

    html.push_str("<h2>Environments</h2><div class=\"envs\">");
    if environments.is_empty() {
        html.push_str("<p class=\"muted\">No releases yet.</p>");
    }
    for e in &environments {
        html.push_str(&environment_card(input, e));
    }
    html.push_str("</div>");

    if let Some(promotion) = input.promotion {
        html.push_str(&promotion_section(promotion, now));
    }

    html.push_str("<h2>Releases</h2>");
    html.push_str(&history(input));
    html.push_str("</body></html>\n");
    html
}

fn environment_card(input: &PageInput<'_>, e: &report::EnvironmentStatus) -> String {
    let now = input.now;
    let env = escape(&e.environment);
    let mut card = format!("<section class=\"env\" id=\"env-{env}\"><h3>{env}</h3>");
    match &e.deployed {
        Some(d) => {
            let release = find(input.releases, &d.name);
            let who = release.and_then(author).unwrap_or_default();
            card.push_str(&format!(
                "<p>Deployed: <code>{}</code> {} <span class=\"muted\">{}</span></p>\
                 <p><span class=\"phase {}\">{}</span> tests {} · {} old · <a href=\"#{}\">{}</a></p>",
                escape(d.short()),
                escape(&d.subject),
                if who.is_empty() {
                    String::new()
                } else {
                    format!("by {}", escape(&who))
                },
                tone(&d.phase),
                escape(&d.phase),
                escape(if d.tests.is_empty() { "-" } else { &d.tests }),
                escape(&age_of(now, d)),
                escape(&d.name),
                escape(&d.name),
            ));
        }
        None => card.push_str("<p class=\"muted\">Nothing deployed yet.</p>"),
    }
    let latest = &e.latest;
    if e.deployed.as_ref().map(|d| &d.name) != Some(&latest.name) {
        card.push_str(&format!(
            "<p>Newest: <a href=\"#{}\"><code>{}</code></a> <span class=\"phase {}\">{}</span> {}</p>",
            escape(&latest.name),
            escape(latest.short()),
            tone(&latest.phase),
            escape(&latest.phase),
            escape(&latest.message),
        ));
    }
    if let Some(sync) = &e.sync {
        card.push_str(&format!(
            "<p class=\"muted\">Branch <code>{}</code>: {}</p>",
            escape(&sync.branch),
            escape(&sync.message)
        ));
        if let Some(hold) = &sync.hold {
            card.push_str(&format!(
                "<p class=\"alert\">Held: {}</p>",
                escape(&hold.describe())
            ));
        }
        if let Some(v) = sync.verified.as_ref().filter(|v| !v.passed) {
            card.push_str(&format!(
                "<p class=\"alert\">Verification failing: {}</p>",
                escape(&v.message)
            ));
        }
    }
    // A failed newest release (rolling back or rolled back too): its suspects, the commits
    // since the last good release.
    if let Some(failed) = find(input.releases, &latest.name).filter(|r| {
        matches!(
            r.phase(),
            Some(Phase::Failed | Phase::RollingBack | Phase::RolledBack)
        )
    }) && let Some(status) = &failed.status
        && !status.suspects.is_empty()
    {
        card.push_str("<div class=\"alert\"><strong>Suspects</strong><ul>");
        for s in &status.suspects {
            card.push_str(&format!(
                "<li><code>{}</code> {} <span class=\"muted\">by {}</span></li>",
                escape(&s.commit),
                escape(&s.subject),
                escape(&s.author)
            ));
        }
        if status.suspects_truncated {
            card.push_str("<li class=\"muted\">and more</li>");
        }
        card.push_str("</ul></div>");
    }
    card.push_str("</section>");
    card
}

fn promotion_section(promotion: &ShipPromotion, now: Timestamp) -> String {
    let mut html = format!(
        "<h2 id=\"promotion\">Promotion: {} → {}</h2>",
        escape(&promotion.spec.from),
        escape(&promotion.spec.to)
    );
    if let Some(sentence) = report::behind_sentence(promotion, now) {
        html.push_str(&format!("<p>{}</p>", escape(&sentence)));
    }
    let status = promotion.status.clone().unwrap_or_default();
    if let Some(next) = &status.next_schedule_time {
        html.push_str(&format!(
            "<p>Next run: {} ({} {})</p>",
            escape(&next.0.strftime("%Y-%m-%d %H:%M UTC").to_string()),
            escape(status.schedule.as_deref().unwrap_or("")),
            escape(status.time_zone.as_deref().unwrap_or("")),
        ));
    }
    if let Some(last) = &status.last_run {
        html.push_str(&format!(
            "<p>Last run: <span class=\"phase {}\">{}</span> {} ago, requested by {}: {}</p>",
            if last.outcome == ship_api::PromotionOutcome::Promoted {
                "good"
            } else {
                "quiet"
            },
            escape(last.outcome.as_str()),
            escape(&report::age(now, last.at.0)),
            escape(&last.requested_by),
            escape(&last.message),
        ));
    }
    html
}

fn history(input: &PageInput<'_>) -> String {
    let mut html = String::from(
        "<table><thead><tr><th>Release</th><th>Environment</th><th>Commit</th><th>Phase</th>\
         <th>Why</th><th>Tests</th><th>Age</th></tr></thead><tbody>",
    );
    for release in report::newest_first(input.releases) {
        let row = ReleaseRow::of(release);
        html.push_str(&format!(
            "<tr id=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code> {}</td>\
             <td><span class=\"phase {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.name),
            escape(&row.name),
            escape(&row.environment),
            escape(row.short()),
            escape(&row.subject),
            tone(&row.phase),
            escape(&row.phase),
            escape(&row.message),
            escape(&row.tests),
            escape(&age_of(input.now, &row)),
        ));
        let tests = release
            .status
            .as_ref()
            .map(|s| s.tests.as_slice())
            .unwrap_or_default();
        for test in tests {
            let verdict = match test.verdict {
                TestVerdict::Passed => ("good", "passed"),
                TestVerdict::Failed => ("bad", "failed"),
                TestVerdict::Running => ("busy", "running"),
            };
            html.push_str(&format!(
                "<tr class=\"test\"><td></td><td colspan=\"6\">test <strong>{}</strong> \
                 <span class=\"phase {}\">{}</span> {}",
                escape(&test.name),
                verdict.0,
                verdict.1,
                escape(&test.message),
            ));
            if !test.log.is_empty() {
                html.push_str(&format!(
                    "<details{}><summary>log (end)</summary><pre>{}</pre></details>",
                    if test.verdict == TestVerdict::Failed {
                        " open"
                    } else {
                        ""
                    },
                    escape(tail(&test.log)),
                ));
            }
            html.push_str("</td></tr>");
        }
    }
    html.push_str("</tbody></table>");
    html
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;
    use ship_api::{Reason, ShipReleaseSpec, ShipReleaseStatus, SuspectCommit, TestResult};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn release(n: u8, phase: Phase, sequence: i64, subject: &str) -> ShipRelease {
        let commit = format!("{n:x}").repeat(40)[..40].to_owned();
        ShipRelease {
            metadata: ObjectMeta {
                name: Some(format!("main-{}", &commit[..10])),
                annotations: Some([(ship_api::keys::SEQUENCE.to_owned(), sequence.to_string())].into()),
                creation_timestamp: Some(Time(at(1_000 + sequence))),
                ..ObjectMeta::default()
            },
            spec: ShipReleaseSpec {
                environment: "main".into(),
                commit: commit.clone(),
                branch: "main".into(),
                reason: Reason::Push,
                rollback_of: None,
                promotion: None,
            },
            status: Some(ShipReleaseStatus {
                phase: Some(phase),
                commit_subject: Some(subject.into()),
                test_summary: Some("0/1".into()),
                suspects: vec![SuspectCommit {
                    commit: commit[..7].into(),
                    author: "Ada <ada@example.com>".into(),
                    subject: subject.into(),
                    committed_at: None,
                }],
                ..ShipReleaseStatus::default()
            }),
        }
    }

    #[test]
    fn a_rollback_shows_what_runs_the_failed_release_its_suspects_and_the_failed_log() {
        let good = release(1, Phase::Succeeded, 1, "good page");
        let mut bad = release(2, Phase::RolledBack, 2, "bad: <script>alert(1)</script>");
        if let Some(status) = bad.status.as_mut() {
            status.rolled_back_to = good.metadata.name.clone();
            status.message = Some("rolled back to main-1111111111".into());
            status.tests = vec![TestResult {
                name: "home".into(),
                verdict: TestVerdict::Failed,
                duration_millis: Some(3),
                message: "body does not contain \"healthy\"".into(),
                log: format!("{}GET / -> 200 broken", "x".repeat(5000)),
            }];
        }
        let releases = [good, bad];
        let html = render(&PageInput {
            releases: &releases,
            environments: &[],
            promotion: None,
            refresh_seconds: 5,
            now: at(1_100),
        });
        // The good release runs; the newest rolled back, with its suspects.
        assert!(
            html.contains("Deployed: <code>1111111</code> good page"),
            "{html}"
        );
        assert!(html.contains("<span class=\"phase bad\">RolledBack</span>"));
        assert!(html.contains("<strong>Suspects</strong>"));
        assert!(html.contains("by Ada &lt;ada@example.com&gt;"));
        // Values from the cluster are escaped, never markup.
        assert!(!html.contains("<script>"));
        assert!(html.contains("bad: &lt;script&gt;alert(1)&lt;/script&gt;"));
        // The failed test's log is open and cut to its end.
        assert!(html.contains("<details open><summary>log (end)</summary>"));
        assert!(html.contains("GET / -&gt; 200 broken</pre>"));
        assert!(!html.contains(&"x".repeat(LOG_TAIL + 1)));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        // Rows link by release name, as notifications do.
        assert!(html.contains("<tr id=\"main-2222222222\">"));
    }

    #[test]
    fn the_promotion_says_how_far_behind_when_next_and_how_the_last_run_went() {
        let mut promotion = ShipPromotion::new(
            "production",
            ship_api::ShipPromotionSpec {
                from: "main".into(),
                to: "production".into(),
            },
        );
        promotion.status = Some(ship_api::ShipPromotionStatus {
            schedule: Some("0 10 * * 2".into()),
            time_zone: Some("UTC".into()),
            next_schedule_time: Some(Time(at(7 * 86_400))),
            last_run: Some(ship_api::PromotionRun {
                at: Time(at(0)),
                requested_by: "schedule".into(),
                outcome: ship_api::PromotionOutcome::Diverged,
                commit: None,
                release: None,
                message: "production has 1 commit main lacks".into(),
            }),
            behind: Some(ship_api::Behind {
                commits: 3,
                truncated: false,
                oldest_commit: Some("abc1234".into()),
                oldest_commit_time: Some(Time(at(0))),
                source_commit: String::new(),
                target_commit: String::new(),
            }),
            ..ship_api::ShipPromotionStatus::default()
        });
        let html = render(&PageInput {
            releases: &[],
            environments: &[],
            promotion: Some(&promotion),
            refresh_seconds: 5,
            now: at(2 * 86_400),
        });
        assert!(
            html.contains("<h2 id=\"promotion\">Promotion: main → production</h2>"),
            "{html}"
        );
        assert!(html.contains("production is 3 commits behind main (oldest unreleased: abc1234, 2d old)"));
        assert!(html.contains("Next run: 1970-01-08 00:00 UTC (0 10 * * 2 UTC)"));
        assert!(
            html.contains(
                "Diverged</span> 2d ago, requested by schedule: production has 1 commit main lacks"
            )
        );
        assert!(html.contains("No releases yet."));
    }

    #[test]
    fn escape_covers_every_special_character() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(tail("é".repeat(LOG_TAIL + 3).as_str()).chars().count(), LOG_TAIL);
    }
}

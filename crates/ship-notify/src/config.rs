//! Where notifications go: shipd's `--notifications` file (the chart writes it from its
//! `notifications` values). Credentials are Secret references only: a forge token, a Slack
//! webhook URL (the URL is the credential) and a webhook's signing key are each a key of a
//! Secret in shipd's Secret namespace, read when a delivery is sent and never kept.
//!
//! ```yaml
//! statusPageUrl: https://ship.example.com        # links in statuses and messages
//! commitStatuses:
//!   - name: github
//!     tokenSecret: {name: ship-forge, key: token}
//!     # forge, apiUrl and repository follow from the repository URL on github.com and
//!     # gitlab.com; set them for a self-hosted forge.
//! deployments:                                   # GitHub Deployments, one per release
//!   - name: github-environments
//!     tokenSecret: {name: ship-forge, key: token}
//! webhooks:
//!   - name: team-chat
//!     format: slack
//!     urlSecret: {name: ship-chat, key: url}
//!   - name: audit
//!     format: json
//!     url: https://audit.example.com/ship
//!     signingSecret: {name: ship-audit, key: key}
//!     on: [Succeeded, Failed, RolledBack, PromotionDone, PromotionRefused]
//! ```
//!
//! Reading and resolving the file is pure ([`NotifyConfig::parse`], [`NotifyConfig::targets`]).

use serde::Deserialize;

use ship_api::Phase;

use crate::forge::{Forge, ForgeError, ForgeRepo, forge_repo};

/// The notifications file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyConfig {
    /// Base URL of Ship's status page as people reach it; statuses and messages link to the
    /// release on it.
    #[serde(default)]
    pub status_page_url: Option<String>,
    /// Commit statuses on the git host.
    #[serde(default)]
    pub commit_statuses: Vec<CommitStatusConfig>,
    /// GitHub Deployments, one per release, with a deployment status per transition.
    #[serde(default)]
    pub deployments: Vec<DeploymentsConfig>,
    /// Chat and generic webhooks.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// A key of a Secret in shipd's Secret namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKey {
    /// The Secret's name.
    pub name: String,
    /// The key in its data.
    pub key: String,
}

/// Commit statuses on one forge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommitStatusConfig {
    /// The target's name (in delivery ids, events and logs).
    pub name: String,
    /// `github`, `gitlab` or `gitea` (Forgejo too); known from the URL for github.com and
    /// gitlab.com.
    #[serde(default)]
    pub forge: Option<Forge>,
    /// The API's base URL, for a self-hosted forge (GitHub Enterprise: `https://host/api/v3`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// `owner/repo` (GitLab: the project's path or number); default: from the repository URL.
    #[serde(default)]
    pub repository: Option<String>,
    /// The status's context is `<context>/<environment>`.
    #[serde(default = "default_context")]
    pub context: String,
    /// The environments reported (default: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// The token: a GitHub token with `repo:status`, a GitLab token with `api`, a Gitea token
    /// with `write:repository`.
    pub token_secret: SecretKey,
}

/// GitHub Deployments (github.com or GitHub Enterprise Server): each release is a deployment
/// of its commit to the GitHub environment named as Ship's, and each transition a deployment
/// status, so the repository's Environments page shows what runs where.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentsConfig {
    /// The target's name (in delivery ids, events and logs).
    pub name: String,
    /// The API's base URL, for GitHub Enterprise Server (`https://host/api/v3`, the default
    /// for a host other than github.com).
    #[serde(default)]
    pub api_url: Option<String>,
    /// `owner/repo`; default: from the repository URL.
    #[serde(default)]
    pub repository: Option<String>,
    /// The environments reported (default: all).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Where each environment's application is reached (`{production: https://shop.example.com}`):
    /// GitHub links the environment's active deployment there.
    #[serde(default)]
    pub environment_urls: std::collections::BTreeMap<String, String>,
    /// The token: a GitHub token with `repo_deployment` (fine-grained: Deployments, write).
    pub token_secret: SecretKey,
}

fn default_context() -> String {
    "ship".into()
}

/// A chat or generic webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// The target's name (in delivery ids, events and logs).
    pub name: String,
    /// `slack` (Slack's incoming webhooks; Mattermost and Rocket.Chat take it too) or `json`
    /// (Ship's notification as JSON, signed with HMAC-SHA256).
    pub format: WebhookFormat,
    /// The URL, when it is not a credential (a `json` receiver, which checks the signature).
    #[serde(default)]
    pub url: Option<String>,
    /// The URL from a Secret (a Slack webhook URL is its own credential).
    #[serde(default)]
    pub url_secret: Option<SecretKey>,
    /// The HMAC-SHA256 key a `json` webhook is signed with.
    #[serde(default)]
    pub signing_secret: Option<SecretKey>,
    /// The transitions that send a message (default: Failed, RolledBack, PromotionDone,
    /// PromotionRefused).
    #[serde(default)]
    pub on: Option<Vec<Trigger>>,
    /// The environments reported (default: all).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// A webhook's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Slack's incoming-webhook JSON (`text`).
    Slack,
    /// Ship's notification as JSON, signed.
    Json,
}

/// What sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, strum::AsRefStr)]
pub enum Trigger {
    /// A release started applying.
    Applying,
    /// A release succeeded.
    Succeeded,
    /// A release failed.
    Failed,
    /// A release rolled back (the environment runs the last good release).
    RolledBack,
    /// A newer commit superseded a release before it finished.
    Superseded,
    /// The promotion created a promotion release.
    PromotionDone,
    /// The promotion ran and did not promote (diverged, held, nothing tested, a branch
    /// missing, an error).
    PromotionRefused,
    /// A bisection named the first bad commit of a failed range (sent once, about the
    /// culprit: its commit status is `failure`).
    CulpritNamed,
}

impl Trigger {
    /// The trigger a release's entering `phase` is, if any.
    pub fn of_phase(phase: Phase) -> Option<Self> {
        match phase {
            Phase::Applying => Some(Trigger::Applying),
            Phase::Succeeded => Some(Trigger::Succeeded),
            Phase::Failed => Some(Trigger::Failed),
            Phase::RolledBack => Some(Trigger::RolledBack),
            Phase::Superseded => Some(Trigger::Superseded),
            Phase::Pending | Phase::Progressing | Phase::Testing | Phase::RollingBack => None,
        }
    }

    /// The release phase this trigger is the entering of (`None` for a promotion's).
    pub fn phase(self) -> Option<Phase> {
        match self {
            Trigger::Applying => Some(Phase::Applying),
            Trigger::Succeeded => Some(Phase::Succeeded),
            Trigger::Failed => Some(Phase::Failed),
            Trigger::RolledBack => Some(Phase::RolledBack),
            Trigger::Superseded => Some(Phase::Superseded),
            Trigger::PromotionDone | Trigger::PromotionRefused | Trigger::CulpritNamed => None,
        }
    }

    /// The commit state it sets, if it sets one ([`crate::message::commit_state`] of its
    /// phase).
    pub fn commit_state(self) -> Option<crate::forge::CommitState> {
        if self == Trigger::CulpritNamed {
            return Some(crate::forge::CommitState::Failure);
        }
        self.phase().and_then(crate::message::commit_state)
    }

    /// The GitHub deployment state it sets, if it sets one
    /// ([`crate::message::deployment_state`] of its phase).
    pub fn deployment_state(self) -> Option<crate::forge::DeploymentState> {
        self.phase().and_then(crate::message::deployment_state)
    }
}

/// The triggers a webhook has without `on`.
pub const DEFAULT_TRIGGERS: [Trigger; 5] = [
    Trigger::Failed,
    Trigger::RolledBack,
    Trigger::PromotionDone,
    Trigger::PromotionRefused,
    Trigger::CulpritNamed,
];

/// Why the notifications file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML of the expected shape.
    #[error("the notifications file is not valid: {0}")]
    Malformed(String),
    /// Two targets share a name.
    #[error("two notification targets are named {0:?}; names must be unique")]
    DuplicateName(String),
    /// A name that cannot go into a delivery id.
    #[error(
        "notification target name {0:?} must be 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    BadName(String),
    /// A forge target whose repository cannot be worked out.
    #[error("commit statuses {target:?}: {source}")]
    Forge {
        /// The target.
        target: String,
        /// Why.
        source: ForgeError,
    },
    /// A deployments target whose GitHub repository cannot be worked out.
    #[error("deployments {target:?}: {source}")]
    Deployments {
        /// The target.
        target: String,
        /// Why.
        source: ForgeError,
    },
    /// A webhook without a URL, or with two.
    #[error("webhook {0:?} needs exactly one of url and urlSecret")]
    WebhookUrl(String),
    /// A Slack webhook URL written out (it is a credential).
    #[error(
        "webhook {0:?}: a Slack webhook URL is a credential; put it in a Secret and name it with urlSecret"
    )]
    SlackUrlInPlain(String),
    /// A json webhook without a key to sign with, or a slack one with one.
    #[error(
        "webhook {0:?}: format json needs signingSecret (receivers verify the signature); slack takes none"
    )]
    Signing(String),
    /// A URL that is not http(s).
    #[error("{target:?}: {url:?} is not an http or https URL")]
    NotHttp {
        /// The target.
        target: String,
        /// The URL.
        url: String,
    },
    /// Commit-status triggers are fixed.
    #[error("webhook {0:?}: `on` lists no trigger")]
    NoTriggers(String),
}

impl ConfigError {
    /// Stable label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            ConfigError::Malformed(_) => "Malformed",
            ConfigError::DuplicateName(_) => "DuplicateName",
            ConfigError::BadName(_) => "BadName",
            ConfigError::Forge { .. } => "Forge",
            ConfigError::Deployments { .. } => "Deployments",
            ConfigError::WebhookUrl(_) => "WebhookUrl",
            ConfigError::SlackUrlInPlain(_) => "SlackUrlInPlain",
            ConfigError::Signing(_) => "Signing",
            ConfigError::NotHttp { .. } => "NotHttp",
            ConfigError::NoTriggers(_) => "NoTriggers",
        }
    }
}

/// One place notifications go, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: TargetKind,
    /// The environments it reports (empty: all).
    pub environments: Vec<String>,
}

/// What a target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Commit statuses on a forge.
    CommitStatus {
        /// The repository there.
        repo: ForgeRepo,
        /// The context's prefix.
        context: String,
        /// The token.
        token: SecretKey,
    },
    /// GitHub Deployments.
    Deployment {
        /// The repository on GitHub.
        repo: ForgeRepo,
        /// The token.
        token: SecretKey,
        /// Where each environment's application is reached.
        environment_urls: std::collections::BTreeMap<String, String>,
    },
    /// A webhook.
    Webhook {
        /// Its body.
        format: WebhookFormat,
        /// Its URL.
        url: UrlSource,
        /// The key it is signed with (json).
        signing: Option<SecretKey>,
        /// What sends to it.
        triggers: Vec<Trigger>,
    },
}

/// Where a webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the file.
    Plain(String),
    /// A Secret's key.
    Secret(SecretKey),
}

impl Target {
    /// The provider, for the `ship_notifications_total{provider}` label: `github`, `gitlab`,
    /// `gitea`, `github_deployments`, `slack` or `webhook`.
    pub fn provider(&self) -> &'static str {
        match &self.kind {
            TargetKind::CommitStatus { repo, .. } => match repo.forge {
                Forge::GitHub => "github",
                Forge::GitLab => "gitlab",
                Forge::Gitea => "gitea",
            },
            TargetKind::Deployment { .. } => "github_deployments",
            TargetKind::Webhook {
                format: WebhookFormat::Slack,
                ..
            } => "slack",
            TargetKind::Webhook {
                format: WebhookFormat::Json,
                ..
            } => "webhook",
        }
    }

    /// Whether it reports `environment`.
    pub fn reports(&self, environment: &str) -> bool {
        self.environments.is_empty() || self.environments.iter().any(|e| e == environment)
    }

    /// Whether `trigger` sends to it. Commit statuses follow every release transition that
    /// changes the commit's state (Applying, Succeeded, Failed, RolledBack, Superseded), never
    /// a promotion; GitHub Deployments the same transitions, each its deployment status.
    pub fn fires_on(&self, trigger: Trigger) -> bool {
        match &self.kind {
            TargetKind::CommitStatus { .. } => trigger.commit_state().is_some(),
            TargetKind::Deployment { .. } => trigger.deployment_state().is_some(),
            TargetKind::Webhook { triggers, .. } => triggers.contains(&trigger),
        }
    }
}

fn http_url(target: &str, url: &str) -> Result<(), ConfigError> {
    if ship_core::urls::is_http(url) {
        Ok(())
    } else {
        Err(ConfigError::NotHttp {
            target: target.to_owned(),
            url: url.to_owned(),
        })
    }
}

impl NotifyConfig {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_norway::from_str(text).map_err(|err| ConfigError::Malformed(err.to_string()))
    }

    /// The targets, checked, with each forge repository worked out from `repo_url` (the
    /// repository Ship deploys from) where the file does not name it.
    pub fn targets(&self, repo_url: &str) -> Result<Vec<Target>, ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        let mut targets = Vec::new();
        for c in &self.commit_statuses {
            check_name(&mut names, &c.name)?;
            let repo = resolve_repo(
                &c.name,
                repo_url,
                (c.forge, c.api_url.as_deref(), c.repository.as_deref()),
                |target, source| ConfigError::Forge { target, source },
            )?;
            targets.push(Target {
                name: c.name.clone(),
                kind: TargetKind::CommitStatus {
                    repo,
                    context: c.context.clone(),
                    token: c.token_secret.clone(),
                },
                environments: c.environments.clone(),
            });
        }
        for d in &self.deployments {
            check_name(&mut names, &d.name)?;
            let repo = resolve_repo(
                &d.name,
                repo_url,
                (Some(Forge::GitHub), d.api_url.as_deref(), d.repository.as_deref()),
                |target, source| ConfigError::Deployments { target, source },
            )?;
            for url in d.environment_urls.values() {
                http_url(&d.name, url)?;
            }
            targets.push(Target {
                name: d.name.clone(),
                kind: TargetKind::Deployment {
                    repo,
                    token: d.token_secret.clone(),
                    environment_urls: d.environment_urls.clone(),
                },
                environments: d.environments.clone(),
            });
        }
        for w in &self.webhooks {
            check_name(&mut names, &w.name)?;
            let url = match (&w.url, &w.url_secret) {
                (Some(_), None) if w.format == WebhookFormat::Slack => {
                    return Err(ConfigError::SlackUrlInPlain(w.name.clone()));
                }
                (Some(url), None) => {
                    http_url(&w.name, url)?;
                    UrlSource::Plain(url.clone())
                }
                (None, Some(secret)) => UrlSource::Secret(secret.clone()),
                _ => return Err(ConfigError::WebhookUrl(w.name.clone())),
            };
            if (w.format == WebhookFormat::Json) != w.signing_secret.is_some() {
                return Err(ConfigError::Signing(w.name.clone()));
            }
            let triggers = w.on.clone().unwrap_or_else(|| DEFAULT_TRIGGERS.to_vec());
            if triggers.is_empty() {
                return Err(ConfigError::NoTriggers(w.name.clone()));
            }
            targets.push(Target {
                name: w.name.clone(),
                kind: TargetKind::Webhook {
                    format: w.format,
                    url,
                    signing: w.signing_secret.clone(),
                    triggers,
                },
                environments: w.environments.clone(),
            });
        }
        Ok(targets)
    }
}

/// A target's forge repository: named in the file (`forge`, `api_url`, `repository`) or
/// worked out from `repo_url`, the repository Ship deploys from.
/// `forge_error` says what went wrong as the target's kind's error.
fn resolve_repo(
    target: &str,
    repo_url: &str,
    (forge, api_url, repository): (Option<Forge>, Option<&str>, Option<&str>),
    forge_error: fn(String, ForgeError) -> ConfigError,
) -> Result<ForgeRepo, ConfigError> {
    if let Some(api) = api_url {
        http_url(target, api)?;
    }
    let mut repo = forge_repo(repo_url, forge, api_url);
    if let Some(path) = repository {
        // The file names the repository; the URL still tells the forge and API when the file
        // does not.
        repo = match repo {
            Ok(mut derived) => {
                derived.path = path.trim_matches('/').to_owned();
                Ok(derived)
            }
            Err(_) => match (forge, api_url) {
                (Some(forge), Some(api)) => Ok(ForgeRepo {
                    forge,
                    api: api.trim_end_matches('/').to_owned(),
                    path: path.trim_matches('/').to_owned(),
                }),
                _ => repo,
            },
        };
    }
    let repo = repo.map_err(|source| forge_error(target.to_owned(), source))?;
    if repo.forge != Forge::GitLab && repo.path.split('/').count() != 2 {
        return Err(forge_error(
            target.to_owned(),
            ForgeError::NotOwnerRepo(repo.path),
        ));
    }
    Ok(repo)
}

fn check_name(names: &mut std::collections::BTreeSet<String>, name: &str) -> Result<(), ConfigError> {
    if !ship_core::names::is_dns_label(name) {
        return Err(ConfigError::BadName(name.to_owned()));
    }
    if !names.insert(name.to_owned()) {
        return Err(ConfigError::DuplicateName(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const GITHUB_REPO: &str = "https://github.com/acme/shop.git";

    fn targets(text: &str, repo: &str) -> Result<Vec<Target>, ConfigError> {
        NotifyConfig::parse(text)?.targets(repo)
    }

    #[test]
    fn the_documented_example_resolves() {
        let text = "statusPageUrl: https://ship.example.com
commitStatuses:
  - name: github
    tokenSecret: {name: ship-forge, key: token}
webhooks:
  - name: team-chat
    format: slack
    urlSecret: {name: ship-chat, key: url}
  - name: audit
    format: json
    url: https://audit.example.com/ship
    signingSecret: {name: ship-audit, key: key}
    on: [Succeeded, Failed, RolledBack, PromotionDone, PromotionRefused]
";
        let t = targets(text, GITHUB_REPO).unwrap();
        assert_eq!(
            t.iter().map(Target::provider).collect::<Vec<_>>(),
            ["github", "slack", "webhook"]
        );
        let TargetKind::CommitStatus { repo, context, .. } = &t[0].kind else {
            panic!("{t:?}")
        };
        assert_eq!(repo.api, "https://api.github.com");
        assert_eq!(repo.path, "acme/shop");
        assert_eq!(context, "ship");
        assert!(t[1].fires_on(Trigger::RolledBack) && !t[1].fires_on(Trigger::Succeeded));
        assert!(t[2].fires_on(Trigger::Succeeded));
        assert!(t[0].fires_on(Trigger::Applying) && !t[0].fires_on(Trigger::PromotionDone));
    }

    #[test]
    fn a_self_hosted_forge_is_named_in_the_file() {
        let text = "commitStatuses:
  - name: gitea
    forge: gitea
    apiUrl: http://127.0.0.1:3000/
    repository: team/app
    environments: [production]
    tokenSecret: {name: t, key: token}
";
        // The repository URL is a local path: nothing to derive, all named.
        let t = targets(text, "/srv/git/app.git").unwrap();
        assert_eq!(
            t[0].kind,
            TargetKind::CommitStatus {
                repo: ForgeRepo {
                    forge: Forge::Gitea,
                    api: "http://127.0.0.1:3000".into(),
                    path: "team/app".into()
                },
                context: "ship".into(),
                token: SecretKey {
                    name: "t".into(),
                    key: "token".into()
                },
            }
        );
        assert!(t[0].reports("production") && !t[0].reports("main"));
        // Without the forge and API, an unknown host is refused with what to set.
        let err = targets(
            "commitStatuses: [{name: x, tokenSecret: {name: t, key: k}}]",
            "https://git.example.com/a/b",
        )
        .unwrap_err();
        assert!(err.to_string().contains("configure the forge"), "{err}");
    }

    #[test]
    fn github_deployments_resolve_like_commit_statuses() {
        let text = "deployments:
  - name: environments
    environments: [production]
    environmentUrls: {production: 'https://shop.example.com'}
    tokenSecret: {name: ship-forge, key: token}
";
        let t = targets(text, "git@github.com:acme/shop.git").unwrap();
        assert_eq!(t[0].provider(), "github_deployments");
        let TargetKind::Deployment {
            repo,
            environment_urls,
            ..
        } = &t[0].kind
        else {
            panic!("{t:?}")
        };
        assert_eq!(environment_urls["production"], "https://shop.example.com");
        assert_eq!(
            (repo.forge, repo.api.as_str(), repo.path.as_str()),
            (Forge::GitHub, "https://api.github.com", "acme/shop")
        );
        for trigger in [
            Trigger::Applying,
            Trigger::Succeeded,
            Trigger::Failed,
            Trigger::RolledBack,
            Trigger::Superseded,
        ] {
            assert!(t[0].fires_on(trigger), "{trigger:?}");
        }
        assert!(!t[0].fires_on(Trigger::PromotionDone));
        assert!(t[0].reports("production") && !t[0].reports("main"));
        // GitHub Enterprise: the API follows from the host.
        let t = targets(text, "https://git.example.com/acme/shop").unwrap();
        let TargetKind::Deployment { repo, .. } = &t[0].kind else {
            panic!("{t:?}")
        };
        assert_eq!(repo.api, "https://git.example.com/api/v3");
    }

    #[test]
    fn mistakes_are_refused_with_what_to_change() {
        let cases = [
            (
                "webhooks: [{name: c, format: slack, url: 'https://hooks.slack.com/services/T/B/x'}]",
                "SlackUrlInPlain",
            ),
            (
                "webhooks: [{name: c, format: json, url: 'https://a.example'}]",
                "Signing",
            ),
            (
                "webhooks: [{name: c, format: slack, urlSecret: {name: s, key: u}, signingSecret: {name: s, key: k}}]",
                "Signing",
            ),
            (
                "webhooks: [{name: c, format: json, signingSecret: {name: s, key: k}}]",
                "WebhookUrl",
            ),
            (
                "webhooks: [{name: c, format: json, url: 'ftp://a', signingSecret: {name: s, key: k}}]",
                "NotHttp",
            ),
            (
                "webhooks: [{name: c, format: slack, urlSecret: {name: s, key: u}, on: []}]",
                "NoTriggers",
            ),
            (
                "webhooks: [{name: c, format: slack, urlSecret: {name: s, key: u}, on: [Exploded]}]",
                "Malformed",
            ),
            (
                "webhooks: [{name: Chat, format: slack, urlSecret: {name: s, key: u}}]",
                "BadName",
            ),
            (
                "webhooks: [{name: -chat, format: slack, urlSecret: {name: s, key: u}}]",
                "BadName",
            ),
            (
                "webhooks: [{name: c, format: slack, urlSecret: {name: s, key: u}}, {name: c, format: slack, urlSecret: {name: s, key: u}}]",
                "DuplicateName",
            ),
            ("webhook: []", "Malformed"),
            (
                "commitStatuses: [{name: g, repository: a/b/c, tokenSecret: {name: t, key: k}}]",
                "Forge",
            ),
            (
                "deployments: [{name: d, repository: group/sub/app, tokenSecret: {name: t, key: k}}]",
                "Deployments",
            ),
            (
                "deployments: [{name: d, apiUrl: 'ftp://h', tokenSecret: {name: t, key: k}}]",
                "NotHttp",
            ),
            (
                "deployments: [{name: d, forge: gitlab, tokenSecret: {name: t, key: k}}]",
                "Malformed",
            ),
            (
                "deployments: [{name: d, environmentUrls: {main: 'shop.local'}, tokenSecret: {name: t, key: k}}]",
                "NotHttp",
            ),
            (
                "commitStatuses: [{name: g, tokenSecret: {name: t, key: k}}]\ndeployments: [{name: g, tokenSecret: {name: t, key: k}}]",
                "DuplicateName",
            ),
        ];
        for (text, label) in cases {
            let err = targets(text, GITHUB_REPO).unwrap_err();
            assert_eq!(err.label(), label, "{text}: {err}");
        }
        assert!(targets("", GITHUB_REPO).unwrap().is_empty());
    }
}

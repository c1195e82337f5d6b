//! Commit statuses on the git host ("forge"), one per environment and commit, each by its
//! host's documented REST contract:
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: Bearer`,
//!   `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`; JSON `state`
//!   (`pending`, `success`, `failure`, `error`), `context`, `description` (at most 140
//!   characters), `target_url`. The API is `https://api.github.com`, or `https://{host}/api/v3`
//!   on GitHub Enterprise Server.
//! - GitLab: `POST {base}/api/v4/projects/{id}/statuses/{sha}`, `PRIVATE-TOKEN`; JSON `state`
//!   (`pending`, `running`, `success`, `failed`, `canceled`), `name`, `description`,
//!   `target_url`. `{id}` is the project's number, or its path URL-encoded (`group%2Fapp`).
//! - Gitea and Forgejo: `POST {base}/api/v1/repos/{owner}/{repo}/statuses/{sha}`,
//!   `Authorization: token`; JSON `state` (`pending`, `success`, `error`, `failure`,
//!   `warning`), `context`, `description`, `target_url`.
//!
//! Building a request is pure; the token goes only into its header, and [`Token`]'s `Debug`
//! never shows it.

use serde::{Deserialize, Serialize};

/// The kind of git host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// github.com or GitHub Enterprise Server.
    GitHub,
    /// gitlab.com or a self-managed GitLab.
    GitLab,
    /// Gitea or Forgejo (the same API).
    Gitea,
}

/// What a commit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    /// The release started applying.
    Pending,
    /// The release succeeded.
    Success,
    /// The release failed, or rolled back.
    Failure,
    /// A newer commit superseded the release after it started applying: it never finished,
    /// so it neither passed nor failed.
    Cancelled,
}

impl CommitState {
    /// The state's name in `forge`'s API.
    pub fn name(self, forge: Forge) -> &'static str {
        match (self, forge) {
            (CommitState::Pending, _) => "pending",
            (CommitState::Success, _) => "success",
            (CommitState::Failure, Forge::GitLab) => "failed",
            (CommitState::Failure, Forge::GitHub | Forge::Gitea) => "failure",
            (CommitState::Cancelled, Forge::GitLab) => "canceled",
            // GitHub and Gitea have no "cancelled": "error" is their state for a run that did
            // not come to a verdict.
            (CommitState::Cancelled, Forge::GitHub | Forge::Gitea) => "error",
        }
    }
}

/// A repository on a forge, as its API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeRepo {
    /// The host's kind.
    pub forge: Forge,
    /// The API's base URL, without a trailing slash: `https://api.github.com`,
    /// `https://git.example.com/api/v3`, `https://gitlab.example.com`, `https://gitea.example.com`.
    pub api: String,
    /// `owner/repo`, or for GitLab the project's path (`group/subgroup/app`) or number.
    pub path: String,
}

/// Why a repository's forge could not be worked out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// The URL is not one a git remote can have.
    #[error(
        "{0:?} is not a repository URL (https://host/owner/repo, ssh://git@host/owner/repo or git@host:owner/repo)"
    )]
    NotARepositoryUrl(String),
    /// The host is neither github.com nor gitlab.com, and no forge was configured.
    #[error(
        "cannot tell which forge {0} is: configure the forge (github, gitlab or gitea) and, if it is not at the host's root, its API URL"
    )]
    UnknownHost(String),
    /// GitHub and Gitea name a repository `owner/repo`.
    #[error("{0:?} is not an owner/repo path")]
    NotOwnerRepo(String),
}

impl ForgeError {
    /// Stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ForgeError::NotARepositoryUrl(_) => "NotARepositoryUrl",
            ForgeError::UnknownHost(_) => "UnknownForge",
            ForgeError::NotOwnerRepo(_) => "NotOwnerRepo",
        }
    }
}

/// The host and the repository path (without `.git` and slashes around it) of a git remote
/// URL: `https://host[:port]/path`, `ssh://user@host[:port]/path`, `git://host/path`, or the
/// scp-like `user@host:path`. Credentials in the URL are dropped.
pub fn host_and_path(repo_url: &str) -> Result<(String, String), ForgeError> {
    let bad = || ForgeError::NotARepositoryUrl(redact(repo_url));
    let (host, path) = if let Ok(url) = url::Url::parse(repo_url)
        && matches!(url.scheme(), "https" | "http" | "ssh" | "git")
    {
        let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
        let host = match url.port() {
            Some(port) if url.scheme() == "https" || url.scheme() == "http" => format!("{host}:{port}"),
            _ => host,
        };
        (host, url.path().to_owned())
    } else {
        // scp-like: [user@]host:path (no scheme, and the colon before any slash).
        let (left, path) = repo_url.split_once(':').ok_or_else(bad)?;
        if left.contains('/') || path.starts_with("//") {
            return Err(bad());
        }
        let host = left
            .rsplit_once('@')
            .map_or(left, |(_, h)| h)
            .to_ascii_lowercase();
        (host, path.to_owned())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    // Every forge names a repository by its namespace and name: at least two segments.
    if host.is_empty() || path.split('/').count() < 2 || path.split('/').any(str::is_empty) {
        return Err(bad());
    }
    Ok((host, path.to_owned()))
}

/// The URL with any `user:password@` removed, for messages.
fn redact(repo_url: &str) -> String {
    match url::Url::parse(repo_url) {
        Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        _ => repo_url.to_owned(),
    }
}

/// The forge repository of `repo_url`. `forge` and `api` come from configuration when the
/// host is not github.com or gitlab.com, or the API is not at the host's root (GitHub
/// Enterprise's is at `/api/v3`, the default for a configured GitHub).
pub fn forge_repo(repo_url: &str, forge: Option<Forge>, api: Option<&str>) -> Result<ForgeRepo, ForgeError> {
    let (host, path) = host_and_path(repo_url)?;
    let forge = match (forge, host.as_str()) {
        (Some(forge), _) => forge,
        (None, "github.com") => Forge::GitHub,
        (None, "gitlab.com") => Forge::GitLab,
        (None, _) => return Err(ForgeError::UnknownHost(host)),
    };
    let api = match (api, forge, host.as_str()) {
        (Some(api), _, _) => api.trim_end_matches('/').to_owned(),
        (None, Forge::GitHub, "github.com") => "https://api.github.com".to_owned(),
        (None, Forge::GitHub, _) => format!("https://{host}/api/v3"),
        (None, Forge::GitLab | Forge::Gitea, _) => format!("https://{host}"),
    };
    if forge != Forge::GitLab && path.split('/').count() != 2 {
        return Err(ForgeError::NotOwnerRepo(path));
    }
    Ok(ForgeRepo { forge, api, path })
}

/// A forge token, from a Secret. Its `Debug` says only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token read from a Secret.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, for the one header it goes into.
    fn reveal(&self) -> &str {
        &self.0
    }

    /// The token, only to find and blank it in text that may echo it (a receiver's answer).
    pub fn expose_for_redaction(&self) -> String {
        self.0.clone()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One commit status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus<'a> {
    /// The commit (full SHA).
    pub commit: &'a str,
    /// What it says.
    pub state: CommitState,
    /// The context, one per environment: `ship/main`, `ship/production`.
    pub context: &'a str,
    /// The sentence shown beside it (cut to the forge's limit).
    pub description: &'a str,
    /// Where it links (the status page), if anywhere.
    pub target_url: Option<&'a str>,
}

/// The longest description each forge keeps, in characters.
pub fn description_limit(forge: Forge) -> usize {
    match forge {
        // GitHub refuses a longer one (422).
        Forge::GitHub => 140,
        Forge::GitLab | Forge::Gitea => 255,
    }
}

/// `text` cut to `limit` characters, ending in `…` when cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The request that sets `status` on `repo`, authenticated with `token`.
pub fn commit_status_request(
    repo: &ForgeRepo,
    status: &CommitStatus<'_>,
    token: &Token,
) -> Result<http::Request<Vec<u8>>, http::Error> {
    let forge = repo.forge;
    let description = cut(status.description, description_limit(forge));
    let state = status.state.name(forge);
    let (path, label, auth) = match forge {
        Forge::GitHub => (
            format!("/repos/{}/statuses/{}", repo.path, status.commit),
            "context",
            ("authorization", format!("Bearer {}", token.reveal())),
        ),
        Forge::GitLab => (
            format!(
                "/api/v4/projects/{}/statuses/{}",
                url::form_urlencoded::byte_serialize(repo.path.as_bytes()).collect::<String>(),
                status.commit
            ),
            "name",
            ("private-token", token.reveal().to_owned()),
        ),
        Forge::Gitea => (
            format!("/api/v1/repos/{}/statuses/{}", repo.path, status.commit),
            "context",
            ("authorization", format!("token {}", token.reveal())),
        ),
    };
    let mut body = serde_json::json!({
        "state": state,
        label: status.context,
        "description": description,
    });
    if let Some(target) = status.target_url {
        body["target_url"] = serde_json::Value::String(target.to_owned());
    }
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{}{path}", repo.api))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("ship/", env!("CARGO_PKG_VERSION")),
        );
    if forge == Forge::GitHub {
        request = request
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
    }
    let mut request = request.body(serde_json::to_vec(&body).unwrap_or_default())?;
    // Sensitive: `Debug` of the request (and of the header map) prints `Sensitive`, not it.
    let mut credential = http::HeaderValue::try_from(auth.1)?;
    credential.set_sensitive(true);
    request.headers_mut().insert(auth.0, credential);
    Ok(request)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn json(request: &http::Request<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(request.body()).unwrap()
    }

    fn header<'a>(request: &'a http::Request<Vec<u8>>, name: &str) -> &'a str {
        request.headers().get(name).unwrap().to_str().unwrap()
    }

    /// Every way a remote URL is written, for hosts with and without ports, names with
    /// subgroups, with and without `.git` and a trailing slash: the same host and path.
    #[test]
    fn remote_urls_of_every_form_name_the_same_repository() {
        for path in ["acme/shop", "acme/team/shop", "a.b-c/d_e"] {
            for suffix in ["", ".git", "/", ".git/"] {
                let forms = [
                    (
                        format!("https://git.example.com/{path}{suffix}"),
                        "git.example.com",
                    ),
                    (
                        format!("https://ship:s3cret@git.example.com/{path}{suffix}"),
                        "git.example.com",
                    ),
                    (
                        format!("https://GIT.example.com:8443/{path}{suffix}"),
                        "git.example.com:8443",
                    ),
                    (
                        format!("ssh://git@git.example.com/{path}{suffix}"),
                        "git.example.com",
                    ),
                    (
                        format!("ssh://git@git.example.com:2222/{path}{suffix}"),
                        "git.example.com",
                    ),
                    (format!("git://git.example.com/{path}{suffix}"), "git.example.com"),
                    (format!("git@git.example.com:{path}{suffix}"), "git.example.com"),
                    (format!("git.example.com:{path}{suffix}"), "git.example.com"),
                ];
                for (url, host) in forms {
                    assert_eq!(
                        host_and_path(&url),
                        Ok((host.to_owned(), path.to_owned())),
                        "{url}"
                    );
                }
            }
        }
        for bad in [
            "",
            "shop",
            "https://github.com/",
            "git@github.com:",
            "/srv/git/shop.git",
            "https://h//x",
        ] {
            assert!(host_and_path(bad).is_err(), "{bad:?}");
        }
        let err = host_and_path("https://ship:s3cret@h").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_forge_and_its_api_come_from_the_host_or_the_configuration() {
        let github = forge_repo("git@github.com:acme/shop.git", None, None).unwrap();
        assert_eq!(
            (github.forge, github.api.as_str(), github.path.as_str()),
            (Forge::GitHub, "https://api.github.com", "acme/shop")
        );
        let gitlab = forge_repo("https://gitlab.com/acme/team/shop.git", None, None).unwrap();
        assert_eq!(
            (gitlab.forge, gitlab.api.as_str()),
            (Forge::GitLab, "https://gitlab.com")
        );
        assert_eq!(
            forge_repo("https://git.example.com/acme/shop", None, None),
            Err(ForgeError::UnknownHost("git.example.com".into()))
        );
        let enterprise = forge_repo("https://git.example.com/acme/shop", Some(Forge::GitHub), None).unwrap();
        assert_eq!(enterprise.api, "https://git.example.com/api/v3");
        let gitea = forge_repo(
            "ssh://git@code.example.com:2222/acme/shop.git",
            Some(Forge::Gitea),
            Some("https://code.example.com/gitea/"),
        )
        .unwrap();
        assert_eq!(gitea.api, "https://code.example.com/gitea");
        assert_eq!(
            forge_repo("https://github.com/acme/team/shop", None, None),
            Err(ForgeError::NotOwnerRepo("acme/team/shop".into()))
        );
    }

    fn status<'a>(state: CommitState, description: &'a str) -> CommitStatus<'a> {
        CommitStatus {
            commit: "0123456789abcdef0123456789abcdef01234567",
            state,
            context: "ship/production",
            description,
            target_url: Some("https://ship.example.com/#production"),
        }
    }

    #[test]
    fn github_statuses_follow_its_contract() {
        let repo = forge_repo("https://github.com/acme/shop.git", None, None).unwrap();
        let long = "x".repeat(300);
        let request = commit_status_request(
            &repo,
            &status(CommitState::Failure, &long),
            &Token::new("ghp_secret"),
        )
        .unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(
            request.uri().to_string(),
            "https://api.github.com/repos/acme/shop/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(header(&request, "authorization"), "Bearer ghp_secret");
        assert_eq!(header(&request, "accept"), "application/vnd.github+json");
        assert_eq!(header(&request, "x-github-api-version"), "2022-11-28");
        let body = json(&request);
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "ship/production");
        assert_eq!(body["target_url"], "https://ship.example.com/#production");
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 140);
        assert!(body["description"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn gitlab_statuses_follow_its_contract() {
        let repo = forge_repo(
            "https://gitlab.example.com/acme/team/shop.git",
            Some(Forge::GitLab),
            None,
        )
        .unwrap();
        let request = commit_status_request(
            &repo,
            &status(CommitState::Failure, "test checkout failed"),
            &Token::new("glpat-secret"),
        )
        .unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://gitlab.example.com/api/v4/projects/acme%2Fteam%2Fshop/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(header(&request, "private-token"), "glpat-secret");
        assert!(request.headers().get("authorization").is_none());
        let body = json(&request);
        assert_eq!(body["state"], "failed");
        assert_eq!(body["name"], "ship/production");
        assert!(body.get("context").is_none());
        assert_eq!(body["description"], "test checkout failed");
    }

    #[test]
    fn gitea_statuses_follow_its_contract() {
        let repo = forge_repo("git@code.example.com:acme/shop.git", Some(Forge::Gitea), None).unwrap();
        let mut pending = status(CommitState::Pending, "applying 12 objects");
        pending.target_url = None;
        let request = commit_status_request(&repo, &pending, &Token::new("gitea-secret")).unwrap();
        assert_eq!(
            request.uri().to_string(),
            "https://code.example.com/api/v1/repos/acme/shop/statuses/0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(header(&request, "authorization"), "token gitea-secret");
        let body = json(&request);
        assert_eq!(
            (body["state"].as_str(), body["context"].as_str()),
            (Some("pending"), Some("ship/production"))
        );
        assert!(body.get("target_url").is_none());
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token::new("ghp_secret");
        let repo = forge_repo("https://github.com/acme/shop", None, None).unwrap();
        let request = commit_status_request(&repo, &status(CommitState::Success, "ok"), &token).unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(!format!("{request:?}").contains("ghp_secret"), "{request:?}");
        assert!(!String::from_utf8_lossy(request.body()).contains("ghp_secret"));
        assert!(!request.uri().to_string().contains("ghp_secret"));
    }

    #[test]
    fn cutting_keeps_whole_characters() {
        assert_eq!(cut("short", 140), "short");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("abcdef", 1), "…");
    }
}

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
            github_auth(token),
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
    forge_request(
        forge,
        http::Method::POST,
        format!("{}{path}", repo.api),
        Some(&body),
        auth,
    )
}

/// A request to `forge`'s API with its headers, the credential `auth` (header name, value)
/// marked sensitive, and `body` as JSON.
fn forge_request(
    forge: Forge,
    method: http::Method,
    uri: String,
    body: Option<&serde_json::Value>,
    auth: (&'static str, String),
) -> Result<http::Request<Vec<u8>>, http::Error> {
    let mut request = http::Request::builder().method(method).uri(uri).header(
        http::header::USER_AGENT,
        concat!("ship/", env!("CARGO_PKG_VERSION")),
    );
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    if forge == Forge::GitHub {
        request = request
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
    }
    let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
    let mut request = request.body(body.unwrap_or_default())?;
    // Sensitive: `Debug` of the request (and of the header map) prints `Sensitive`, not it.
    let mut credential = http::HeaderValue::try_from(auth.1)?;
    credential.set_sensitive(true);
    request.headers_mut().insert(auth.0, credential);
    Ok(request)
}

/// What a GitHub deployment status says (GitHub's own names): a deployment is
/// `in_progress` while Ship applies and tests it, `success` when it succeeded, `failure`
/// when it failed, and `inactive` once it no longer runs in its environment (rolled back, or
/// superseded by a newer commit while it was in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    /// Applying, waiting for health, testing.
    InProgress,
    /// Succeeded: the environment runs it.
    Success,
    /// Its tests failed (or it could not be applied).
    Failure,
    /// No longer running there: rolled back, or superseded.
    Inactive,
}

impl DeploymentState {
    /// The state's name in GitHub's API.
    pub fn name(self) -> &'static str {
        match self {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
        }
    }
}

/// The key of a deployment's `payload` that names the Ship release it is: one GitHub
/// deployment per release, found again (not created twice) after a retry or a restart.
pub const DEPLOYMENT_RELEASE_KEY: &str = "shipRelease";

/// `GET {api}/repos/{owner}/{repo}/deployments?sha=..&environment=..`: the deployments of
/// `commit` to `environment` (the newest 100; a release's is among the newest).
pub fn deployments_list_request(
    repo: &ForgeRepo,
    commit: &str,
    environment: &str,
    token: &Token,
) -> Result<http::Request<Vec<u8>>, http::Error> {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sha", commit)
        .append_pair("environment", environment)
        .append_pair("per_page", "100")
        .finish();
    forge_request(
        Forge::GitHub,
        http::Method::GET,
        format!("{}/repos/{}/deployments?{query}", repo.api, repo.path),
        None,
        github_auth(token),
    )
}

/// One release, as a GitHub deployment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment<'a> {
    /// The commit (full SHA): the deployment's `ref`.
    pub commit: &'a str,
    /// Ship's environment, GitHub's environment.
    pub environment: &'a str,
    /// The release's name, kept in the payload.
    pub release: &'a str,
    /// What it is (cut to 140 characters).
    pub description: &'a str,
}

/// `POST {api}/repos/{owner}/{repo}/deployments`. Ship has already decided to deploy, so the
/// deployment asks GitHub for nothing: `auto_merge: false` (GitHub would otherwise merge the
/// default branch into the ref) and `required_contexts: []` (it would otherwise refuse while
/// the commit's statuses, Ship's own `pending` among them, are not all green).
pub fn deployment_create_request(
    repo: &ForgeRepo,
    deployment: &NewDeployment<'_>,
    token: &Token,
) -> Result<http::Request<Vec<u8>>, http::Error> {
    let body = serde_json::json!({
        "ref": deployment.commit,
        "task": "deploy",
        "auto_merge": false,
        "required_contexts": [],
        "environment": deployment.environment,
        "description": cut(deployment.description, description_limit(Forge::GitHub)),
        "transient_environment": false,
        "payload": { DEPLOYMENT_RELEASE_KEY: deployment.release },
    });
    forge_request(
        Forge::GitHub,
        http::Method::POST,
        format!("{}/repos/{}/deployments", repo.api, repo.path),
        Some(&body),
        github_auth(token),
    )
}

/// One deployment status to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus<'a> {
    /// What it says.
    pub state: DeploymentState,
    /// The sentence shown beside it (cut to 140 characters).
    pub description: &'a str,
    /// Where its story is told (the release on the status page).
    pub log_url: Option<&'a str>,
    /// Where the environment's application is reached.
    pub environment_url: Option<&'a str>,
}

/// `POST {api}/repos/{owner}/{repo}/deployments/{id}/statuses`. `auto_inactive` stays GitHub's
/// default: a `success` marks the environment's earlier successful deployments inactive.
pub fn deployment_status_request(
    repo: &ForgeRepo,
    id: u64,
    status: &DeploymentStatus<'_>,
    token: &Token,
) -> Result<http::Request<Vec<u8>>, http::Error> {
    let mut body = serde_json::json!({
        "state": status.state.name(),
        "description": cut(status.description, description_limit(Forge::GitHub)),
    });
    for (field, url) in [
        ("log_url", status.log_url),
        ("environment_url", status.environment_url),
    ] {
        if let Some(url) = url {
            body[field] = serde_json::Value::String(url.to_owned());
        }
    }
    forge_request(
        Forge::GitHub,
        http::Method::POST,
        format!("{}/repos/{}/deployments/{id}/statuses", repo.api, repo.path),
        Some(&body),
        github_auth(token),
    )
}

fn github_auth(token: &Token) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", token.reveal()))
}

/// The id of `release`'s deployment in a deployments list answer, if it has one. The
/// payload comes back as the object sent, or (older GitHub Enterprise) as its JSON text.
pub fn deployment_of_release(list: &[u8], release: &str) -> Option<u64> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(list).ok()?;
    list.iter().find_map(|d| {
        let payload = match &d["payload"] {
            serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
            other => other.clone(),
        };
        (payload[DEPLOYMENT_RELEASE_KEY].as_str() == Some(release))
            .then(|| d["id"].as_u64())
            .flatten()
    })
}

/// The id of the deployment a create answer (201) describes.
pub fn created_deployment_id(answer: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(answer).ok()?["id"].as_u64()
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
    fn github_deployments_follow_its_contract() {
        let repo = forge_repo("https://git.example.com/acme/shop", Some(Forge::GitHub), None).unwrap();
        let token = Token::new("ghp_secret");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let list = deployments_list_request(&repo, commit, "production", &token).unwrap();
        assert_eq!(list.method(), http::Method::GET);
        assert_eq!(
            list.uri().to_string(),
            format!(
                "https://git.example.com/api/v3/repos/acme/shop/deployments?sha={commit}&environment=production&per_page=100"
            )
        );
        assert!(list.body().is_empty());
        assert!(list.headers().get("content-type").is_none());
        let create = deployment_create_request(
            &repo,
            &NewDeployment {
                commit,
                environment: "production",
                release: "production-0123456",
                description: &"d".repeat(200),
            },
            &token,
        )
        .unwrap();
        assert_eq!(create.method(), http::Method::POST);
        assert_eq!(
            create.uri().to_string(),
            "https://git.example.com/api/v3/repos/acme/shop/deployments"
        );
        let body = json(&create);
        assert_eq!(body["ref"], commit);
        assert_eq!(body["environment"], "production");
        assert_eq!(body["auto_merge"], false);
        assert_eq!(body["required_contexts"], serde_json::json!([]));
        assert_eq!(body["payload"]["shipRelease"], "production-0123456");
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 140);
        let status = deployment_status_request(
            &repo,
            42,
            &DeploymentStatus {
                state: DeploymentState::Inactive,
                description: "rolled back to production-abcdef1",
                log_url: Some("https://ship.example.com/status#production-0123456"),
                environment_url: Some("https://shop.example.com"),
            },
            &token,
        )
        .unwrap();
        assert_eq!(
            status.uri().to_string(),
            "https://git.example.com/api/v3/repos/acme/shop/deployments/42/statuses"
        );
        let body = json(&status);
        assert_eq!(body["state"], "inactive");
        assert_eq!(
            body["log_url"],
            "https://ship.example.com/status#production-0123456"
        );
        assert_eq!(body["environment_url"], "https://shop.example.com");
        for request in [&list, &create, &status] {
            assert_eq!(header(request, "authorization"), "Bearer ghp_secret");
            assert_eq!(header(request, "accept"), "application/vnd.github+json");
            assert_eq!(header(request, "x-github-api-version"), "2022-11-28");
            assert!(!format!("{request:?}").contains("ghp_secret"));
        }
    }

    #[test]
    fn a_releases_deployment_is_found_by_its_payload() {
        let list = serde_json::json!([
            {"id": 7, "payload": {}},
            {"id": 8, "payload": {"shipRelease": "main-1111111"}},
            {"id": 9, "payload": "{\"shipRelease\":\"main-2222222\"}"},
            {"id": "x", "payload": {"shipRelease": "main-3333333"}},
        ])
        .to_string();
        assert_eq!(deployment_of_release(list.as_bytes(), "main-1111111"), Some(8));
        assert_eq!(deployment_of_release(list.as_bytes(), "main-2222222"), Some(9));
        assert_eq!(deployment_of_release(list.as_bytes(), "main-3333333"), None);
        assert_eq!(deployment_of_release(list.as_bytes(), "main-4444444"), None);
        assert_eq!(deployment_of_release(b"not json", "main-1111111"), None);
        assert_eq!(created_deployment_id(br#"{"id": 12, "sha": "x"}"#), Some(12));
        assert_eq!(created_deployment_id(br#"{"message": "Conflict"}"#), None);
    }

    #[test]
    fn cutting_keeps_whole_characters() {
        assert_eq!(cut("short", 140), "short");
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("abcdef", 1), "…");
    }
}

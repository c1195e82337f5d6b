//! From a commit in the mirror to the validated objects of one environment, and the commits a
//! release brings. Blocking (libgit2 and the file system): call from a blocking task.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::Oid;
use ship_api::SuspectCommit;
use ship_git::Mirror;
use ship_git::mirror::ExportLimits;
use ship_render::{Limits, RenderError, Rendered, ShipConfig};

/// Most suspects recorded on a release.
pub const MAX_SUSPECTS: usize = 50;

/// Longest line of commits a bisection searches (⌈log₂ 1000⌉ = 10 test releases).
pub const MAX_BISECT_LINE: usize = 1000;

/// Why a commit cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The commit cannot be read or exported from the mirror.
    #[error(transparent)]
    Git(#[from] ship_git::GitError),
    /// Its configuration or manifests are invalid.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// No environment in its `ship.yaml` deploys the branch.
    #[error("no environment in ship.yaml deploys branch {0:?}")]
    NoEnvironment(String),
    /// A scratch directory could not be made.
    #[error("cannot create a scratch directory: {0}")]
    Scratch(String),
    /// `spec.commit` is not a commit the mirror holds.
    #[error("commit {0} is not in the repository mirror: push it to a followed branch first")]
    UnknownCommit(String),
    /// shipd follows no repository.
    #[error("shipd follows no repository (--repo-url), so it cannot read commit {0}")]
    NoRepository(String),
    /// The mirror lock was poisoned by a panicking thread.
    #[error("the repository mirror is unavailable after an internal error; restart shipd")]
    MirrorPoisoned,
    /// A promotion needs to push, and shipd has no write access configured.
    #[error(
        "shipd has no write access to the repository: set --git-push-secret (or --git-secret) to a Secret with push rights"
    )]
    NoPushAccess,
}

impl LoadError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            LoadError::Git(e) => e.label(),
            LoadError::Render(e) => e.label(),
            LoadError::NoEnvironment(_) => "NoEnvironment",
            LoadError::Scratch(_) => "ScratchDir",
            LoadError::UnknownCommit(_) => "UnknownCommit",
            LoadError::NoRepository(_) => "NoRepository",
            LoadError::MirrorPoisoned => "MirrorUnavailable",
            LoadError::NoPushAccess => "NoPushAccess",
        }
    }
}

/// The repository as the release engine reads it: the mirror and a scratch directory.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The mirror (shared with the fetch loop; lock briefly).
    pub mirror: Arc<Mutex<Mirror>>,
    /// Where commits are exported for rendering.
    pub scratch: PathBuf,
    /// The running fetch loop: to fetch again after a push, and to fetch by id a commit a
    /// release names that no branch reaches any more.
    pub source: Option<ship_git::watch::SourceHandle>,
    /// Write access, for promotions; without it a promotion release fails with `NoPushAccess`.
    pub push: Option<PushAccess>,
}

/// What a promotion's push needs: credentials with write access.
#[derive(Debug, Clone)]
pub struct PushAccess {
    /// Credentials with write access to the repository (never printed).
    pub credentials: tokio::sync::watch::Receiver<ship_git::Credentials>,
}

/// Prefix of the directories commits are exported to for rendering, in the scratch root.
const RENDER_DIR_PREFIX: &str = "render-";

/// Removes the export directories an earlier process left in `scratch_root` when it was killed
/// mid-render (each holds a whole tree of the repository, and the scratch root lives in a volume
/// that outlives the container, so they would pile up with every crash). Returns how many were
/// removed. Only for the owner of the data directory, before its first render: it holds the
/// mirror's owner lock, so no other process renders there.
pub fn clear_scratch(scratch_root: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(scratch_root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(RENDER_DIR_PREFIX) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
        removed += 1;
    }
    Ok(removed)
}

fn export<T>(
    mirror: &Mirror,
    commit: Oid,
    scratch_root: &Path,
    then: impl FnOnce(&Path) -> Result<T, LoadError>,
) -> Result<T, LoadError> {
    std::fs::create_dir_all(scratch_root).map_err(|e| LoadError::Scratch(e.to_string()))?;
    let scratch = tempfile::Builder::new()
        .prefix(RENDER_DIR_PREFIX)
        .tempdir_in(scratch_root)
        .map_err(|e| LoadError::Scratch(e.to_string()))?;
    if !mirror.has_commit(commit) {
        return Err(LoadError::UnknownCommit(commit.to_string()));
    }
    mirror.export_tree(commit, scratch.path(), ExportLimits::default())?;
    // Rendered once, so maybe deployed: keep it for a rollback whatever the branch does.
    mirror.keep(commit)?;
    then(scratch.path())
}

/// The `ship.yaml` at `commit`.
pub fn load_config(mirror: &Mirror, commit: Oid) -> Result<ShipConfig, LoadError> {
    let text = mirror
        .read_file(
            commit,
            ship_render::config::FILE_NAME,
            ship_render::config::MAX_CONFIG_BYTES,
        )?
        .ok_or(RenderError::Config(ship_render::ConfigError::Missing))?;
    let text = String::from_utf8_lossy(&text);
    Ok(ship_render::config::parse(&text).map_err(RenderError::from)?)
}

fn parse_commit(commit: &str) -> Result<Oid, LoadError> {
    Oid::from_str(commit).map_err(|_| LoadError::UnknownCommit(commit.to_owned()))
}

impl Repo {
    /// Runs `work` on the mirror in a blocking task (libgit2 and the file system block), for
    /// the async loops that read the repository (promotion, environments).
    pub async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Mirror) -> Result<T, LoadError> + Send + 'static,
    ) -> Result<T, LoadError> {
        let mirror = self.mirror.clone();
        tokio::task::spawn_blocking(move || {
            let mirror = mirror.lock().map_err(|_| LoadError::MirrorPoisoned)?;
            work(&mirror)
        })
        .await
        .map_err(|e| LoadError::Scratch(format!("repository task failed: {e}")))?
    }

    fn with_mirror<T>(&self, f: impl FnOnce(&Mirror) -> Result<T, LoadError>) -> Result<T, LoadError> {
        let mirror = self.mirror.lock().map_err(|_| LoadError::MirrorPoisoned)?;
        f(&mirror)
    }

    /// Renders and validates `environment` at `commit`. A commit the mirror lacks (a rewritten
    /// history and a new mirror) is fetched by id first, when the source can.
    pub fn render(&self, commit: &str, environment: &str) -> Result<Rendered, LoadError> {
        let oid = parse_commit(commit)?;
        self.with_mirror(|mirror| {
            if let Some(source) = self.source.as_ref().filter(|_| !mirror.has_commit(oid)) {
                if let Err(err) = mirror.fetch_commit(oid, &source.credentials()) {
                    tracing::warn!(commit, error = %err, "a release names a commit no branch reaches, and it cannot be fetched");
                    return Err(LoadError::UnknownCommit(commit.to_owned()));
                }
                tracing::info!(commit, "fetched by id a commit no branch reaches");
            }
            export(mirror, oid, &self.scratch, |tree| {
                Ok(ship_render::render_environment(
                    &ship_render::tools::Processes,
                    tree,
                    environment,
                    &Limits::default(),
                )?)
            })
        })
    }

    /// The commits `commit` brings over `good` (newest first), and whether the list was cut.
    pub fn suspects(
        &self,
        good: Option<&str>,
        commit: &str,
    ) -> Result<(Vec<SuspectCommit>, bool), LoadError> {
        let to = parse_commit(commit)?;
        let from = good.map(parse_commit).transpose()?;
        self.with_mirror(|mirror| {
            let (commits, truncated) = mirror.log_between(from, to, MAX_SUSPECTS)?;
            let suspects = commits
                .into_iter()
                .map(|c| SuspectCommit {
                    commit: ship_api::names::short_sha(&c.id.to_string()).to_owned(),
                    author: c.author,
                    subject: c.subject,
                    committed_at: jiff::Timestamp::from_second(c.time)
                        .ok()
                        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
                })
                .collect();
            Ok((suspects, truncated))
        })
    }

    /// The first-parent line a bisection searches, from `good` (exclusive) to `failed`,
    /// oldest first (see [`Mirror::first_parent_line`]); `None` when there is no one line.
    pub fn bisect_line(&self, good: &str, failed: &str) -> Result<Option<Vec<String>>, LoadError> {
        let (from, to) = (parse_commit(good)?, parse_commit(failed)?);
        self.with_mirror(|mirror| {
            let line = mirror.first_parent_line(from, to, MAX_BISECT_LINE)?;
            Ok(line.map(|commits| commits.into_iter().map(|c| c.id.to_string()).collect()))
        })
    }

    /// The tip of `branch` in the mirror (full SHA).
    pub fn tip(&self, branch: &str) -> Option<String> {
        let mirror = self.mirror.lock().ok()?;
        mirror.tip(branch).map(|oid| oid.to_string())
    }

    /// Where `branch` stands against `failed` in the mirror: its tip, a descendant (a new
    /// push), or a history without it (force-pushed, or the branch deleted). A commit the
    /// mirror cannot read counts as the tip: only what it can see rewrites anything.
    pub fn branch_against(&self, branch: &str, failed: &str) -> ship_core::bisect::Branch {
        use ship_core::bisect::Branch;
        let Ok(failed) = parse_commit(failed) else {
            return Branch::AtFailed;
        };
        let Ok(mirror) = self.mirror.lock() else {
            return Branch::AtFailed;
        };
        match mirror.tip(branch) {
            None => Branch::Rewritten,
            Some(tip) if tip == failed => Branch::AtFailed,
            Some(tip) => match mirror.is_ancestor(failed, tip) {
                Ok(true) => Branch::MovedOn,
                Ok(false) => Branch::Rewritten,
                Err(_) => Branch::AtFailed,
            },
        }
    }

    /// `commit`'s subject and author, when the mirror holds it.
    pub fn subject_and_author(&self, commit: &str) -> Option<(String, String)> {
        let oid = parse_commit(commit).ok()?;
        let mirror = self.mirror.lock().ok()?;
        let found = mirror.repository().find_commit(oid).ok()?;
        Some((
            String::from_utf8_lossy(found.summary_bytes().unwrap_or_default()).into_owned(),
            String::from_utf8_lossy(found.author().name_bytes()).into_owned(),
        ))
    }

    /// The first line of `commit`'s message, when the mirror holds it.
    pub fn subject(&self, commit: &str) -> Option<String> {
        let oid = parse_commit(commit).ok()?;
        let mirror = self.mirror.lock().ok()?;
        let found = mirror.repository().find_commit(oid).ok()?;
        Some(String::from_utf8_lossy(found.summary_bytes().unwrap_or_default()).into_owned())
    }

    /// Creates and pushes the annotated tag `name` on `commit` (see [`Mirror::push_tag`]).
    pub fn push_tag(
        &self,
        name: &str,
        commit: &str,
        message: &str,
    ) -> Result<ship_git::TagOutcome, LoadError> {
        let oid = parse_commit(commit)?;
        let credentials = self.push_credentials()?;
        self.with_mirror(|mirror| Ok(mirror.push_tag(name, oid, message, &credentials)?))
    }

    /// Whether a promotion could push to `branch`: the remote accepts a push connection with
    /// the push credentials and has the branch. Nothing is pushed. Answers at startup what a
    /// scheduled promotion would otherwise find out only when it runs.
    pub async fn push_access(&self, branch: &str) -> Result<bool, LoadError> {
        let push = self.push.as_ref().ok_or(LoadError::NoPushAccess)?;
        let credentials = push.credentials.borrow().clone();
        let branch = branch.to_owned();
        self.read(move |mirror| Ok(mirror.remote_has_branch(&branch, &credentials)?))
            .await
    }

    /// Fast-forwards `branch` on the remote to `commit` (see [`Mirror::fast_forward`]). A push
    /// the remote refused because the branch moved asks the source to fetch, so a retry sees
    /// the new tip (and reports the divergence, if that is what it is).
    pub fn fast_forward(&self, branch: &str, commit: &str) -> Result<ship_git::PushOutcome, LoadError> {
        let oid = parse_commit(commit)?;
        let credentials = self.push_credentials()?;
        let result = self.with_mirror(|mirror| Ok(mirror.fast_forward(branch, oid, &credentials)?));
        self.fetch_after_push(&result, |outcome| *outcome == ship_git::PushOutcome::Pushed);
        result
    }

    /// The push credentials, as they are now; `NoPushAccess` without write access.
    fn push_credentials(&self) -> Result<ship_git::Credentials, LoadError> {
        let push = self.push.as_ref().ok_or(LoadError::NoPushAccess)?;
        Ok(push.credentials.borrow().clone())
    }

    /// Fetches now after a push (`pushed` says whether the outcome pushed), so the mirror, and
    /// what is reported from it, sees the new tip at once; and after a stale refusal, so a retry
    /// sees what moved.
    fn fetch_after_push<T>(&self, result: &Result<T, LoadError>, pushed: impl Fn(&T) -> bool) {
        let fetch = match result {
            Ok(outcome) => pushed(outcome),
            Err(err) => matches!(err, LoadError::Git(ship_git::GitError::Push { stale: true, .. })),
        };
        if fetch && let Some(source) = &self.source {
            source.trigger();
        }
    }

    /// Pushes a `git revert` of `commit` onto `branch`'s tip ([`ship_git::Mirror::revert_onto_tip`]),
    /// with `note` closing its message; fetches at once after a push or a stale refusal.
    pub fn revert(
        &self,
        branch: &str,
        commit: &str,
        note: &str,
    ) -> Result<ship_git::RevertOutcome, LoadError> {
        let oid = parse_commit(commit)?;
        let credentials = self.push_credentials()?;
        let result =
            self.with_mirror(|mirror| Ok(mirror.revert_onto_tip(branch, oid, note, &credentials)?));
        self.fetch_after_push(&result, |outcome| {
            matches!(outcome, ship_git::RevertOutcome::Pushed(_))
        });
        result
    }

    /// The environment that deploys `branch` at `commit`, by that commit's `ship.yaml`.
    pub fn environment_for(&self, commit: &str, branch: &str) -> Result<String, LoadError> {
        let oid = parse_commit(commit)?;
        self.with_mirror(|mirror| {
            let config = load_config(mirror, oid)?;
            config
                .environment_for_branch(branch)
                .map(|(name, _)| name.to_owned())
                .ok_or_else(|| LoadError::NoEnvironment(branch.to_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_scratch_removes_only_leftover_exports() {
        let root = tempfile::tempdir().unwrap();
        let left = root.path().join("render-a1b2");
        std::fs::create_dir_all(left.join("apps/web")).unwrap();
        std::fs::write(left.join("apps/web/deploy.yaml"), "kind: Deployment\n").unwrap();
        std::fs::write(root.path().join("render-half-made"), "").unwrap();
        std::fs::create_dir(root.path().join("kept")).unwrap();

        assert_eq!(clear_scratch(root.path()).unwrap(), 2);
        let names: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["kept"]);
        assert_eq!(clear_scratch(root.path()).unwrap(), 0);
        assert_eq!(clear_scratch(&root.path().join("never-made")).unwrap(), 0);
    }
}

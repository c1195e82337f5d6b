//! A bare mirror of the repository, fetching exactly the configured branches.

use std::path::{Component, Path, PathBuf};

use git2::{AutotagOption, FetchOptions, ObjectType, Oid, Repository};

use crate::Credentials;
use crate::credentials::RefusalCell;

/// Where accepted tips live in the mirror: `refs/ship/fetched/<branch>`.
const FETCHED_PREFIX: &str = "refs/ship/fetched/";
/// Where a fetch lands before its tips are compared and accepted.
const INCOMING_PREFIX: &str = "refs/ship/incoming/";
/// Where commits a release deployed are kept (`refs/ship/keep/<sha>`): a force-push that drops
/// them from every branch must not drop what a rollback goes back to.
const KEEP_PREFIX: &str = "refs/ship/keep/";
/// The local ref a fast-forward push sends from (libgit2 pushes refs, not bare commit ids).
const PUSH_PREFIX: &str = "refs/ship/push/";
/// Most diverging commits named in a [`GitError::Diverged`].
const MAX_DIVERGING: usize = 10;
/// Packs above which [`Mirror::maintain`] rolls the small ones up (git's `gc.autoPackLimit`).
pub const MAX_PACKS: usize = 50;

/// What to do when a branch's history was rewritten (its new tip does not descend from the old).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForcePushPolicy {
    /// Follow the new tip, and report it.
    #[default]
    Follow,
    /// Keep the old tip, and report the refused one at every fetch until the branch
    /// descends from the old tip again.
    Refuse,
}

/// Why a git operation failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The mirror directory cannot be created or opened.
    #[error("cannot open the git mirror at {path}: {message}")]
    Open {
        /// Mirror directory.
        path: PathBuf,
        /// libgit2's message.
        message: String,
    },
    /// The remote could not be reached, refused us, or the fetch failed.
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// Remote URL without any user information.
        url: String,
        /// libgit2's message.
        message: String,
    },
    /// The remote refused us, or we refused it (credentials, SSH host key, TLS certificate).
    #[error("cannot reach {url}: {}", refusal.advice())]
    Refused {
        /// Remote URL without any user information.
        url: String,
        /// Why.
        refusal: crate::credentials::Refusal,
    },
    /// A branch that should exist on the remote does not.
    #[error("branch {branch:?} does not exist in {url}: create it or fix the configuration")]
    MissingBranch {
        /// The branch.
        branch: String,
        /// Remote URL without any user information.
        url: String,
    },
    /// An object or path could not be read from the mirror.
    #[error("cannot read {what}: {message}")]
    Read {
        /// What was being read.
        what: String,
        /// Why not.
        message: String,
    },
    /// The tree at a commit breaks a limit or contains an unsafe entry.
    #[error("commit {commit}: {problem}")]
    UnsafeTree {
        /// Commit SHA.
        commit: String,
        /// What is wrong.
        problem: String,
    },
    /// A branch cannot be fast-forwarded: it holds commits the new tip lacks.
    #[error(
        "branch {branch:?} has {} commit(s) that {commit} lacks ({}{}): nothing was forced; \
         merge {branch} back into the source branch, or reset {branch}",
        diverging.len(),
        diverging.iter().map(|c| format!("{} {}", short(c.id), c.subject)).collect::<Vec<_>>().join("; "),
        if *truncated { "; and more" } else { "" }
    )]
    Diverged {
        /// The branch.
        branch: String,
        /// Short SHA of the commit that could not be fast-forwarded to.
        commit: String,
        /// The branch's commits that the new tip lacks, newest first (at most 10).
        diverging: Vec<CommitSummary>,
        /// More diverging commits than listed.
        truncated: bool,
    },
    /// The remote refused the push (or it failed on the way).
    #[error("cannot push {branch} to {url}: {message}")]
    Push {
        /// The branch.
        branch: String,
        /// Remote URL without any user information.
        url: String,
        /// libgit2's or the server's message.
        message: String,
        /// The server refused it as not a fast-forward: its branch moved since the last fetch.
        stale: bool,
    },
    /// A commit cannot be reverted on a branch's tip: it is not on the branch, its revert
    /// conflicts with later changes, or the branch has no tip. Nothing was pushed.
    #[error("cannot revert commit {commit} on {branch}: {problem}; nothing was pushed")]
    RevertRefused {
        /// The branch.
        branch: String,
        /// Short SHA of the commit to revert.
        commit: String,
        /// Why, for a person.
        problem: String,
    },
    /// The mirror's packs could not be combined; the mirror is left as it was.
    #[error("cannot repack the git mirror at {path}: {message}")]
    Repack {
        /// Mirror directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn short(id: Oid) -> String {
    ship_api::names::short_sha(&id.to_string()).to_owned()
}

/// What [`Mirror::fast_forward`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// The branch was moved to the commit.
    Pushed,
    /// The branch already contained the commit (as its tip or an ancestor); nothing was pushed.
    AlreadyContained,
}

/// What [`Mirror::revert_onto_tip`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertOutcome {
    /// A revert commit was pushed onto the branch: this one.
    Pushed(Oid),
    /// The branch's tip already undoes the commit (reverted before): nothing was pushed.
    AlreadyReverted,
}

/// Most conflicting paths a refused revert names.
const CONFLICTS_SHOWN: usize = 10;

/// What pushing a release tag did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOutcome {
    /// The annotated tag was created and pushed.
    Pushed,
    /// The remote already has the tag, on this commit: nothing to do.
    AlreadyThere,
    /// The remote has a tag of this name on another commit (its id): it is never moved.
    Taken(String),
}

impl GitError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            GitError::Open { .. } => "MirrorOpen",
            GitError::Fetch { .. } => "FetchFailed",
            GitError::Refused { refusal, .. } => refusal.label(),
            GitError::MissingBranch { .. } => "MissingBranch",
            GitError::Read { .. } => "ReadFailed",
            GitError::UnsafeTree { .. } => "UnsafeTree",
            GitError::Diverged { .. } => "Diverged",
            GitError::Push { .. } => "PushFailed",
            GitError::RevertRefused { .. } => "RevertRefused",
            GitError::Repack { .. } => "RepackFailed",
        }
    }
}

/// How a branch tip moved in one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TipChangeKind {
    /// First time the branch was seen.
    Created,
    /// The new tip descends from the old one.
    FastForward,
    /// The new tip does not descend from the old one: history was rewritten.
    ForcePushed,
}

/// A branch tip that changed in a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipChange {
    /// Branch name (without `refs/heads/`).
    pub branch: String,
    /// Previous tip, if the branch was known.
    pub old: Option<Oid>,
    /// New tip.
    pub new: Oid,
    /// Fast-forward, creation, or force-push.
    pub kind: TipChangeKind,
}

/// What one [`Mirror::fetch`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Tips that moved (or were seen for the first time).
    pub changes: Vec<TipChange>,
    /// Followed branches the remote does not have (deleted, or never created), in the order
    /// they were asked for.
    pub missing: Vec<String>,
}

/// One commit, as a log line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// Commit id.
    pub id: Oid,
    /// Author name.
    pub author: String,
    /// First line of the message.
    pub subject: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
}

/// Limits on what [`Mirror::export_tree`] writes, so a hostile commit cannot fill the disk.
#[derive(Debug, Clone, Copy)]
pub struct ExportLimits {
    /// Largest single file.
    pub max_file_bytes: u64,
    /// Largest total.
    pub max_total_bytes: u64,
    /// Most entries (files, links and directories).
    pub max_entries: usize,
}

impl Default for ExportLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 << 20,
            max_total_bytes: 128 << 20,
            max_entries: 20_000,
        }
    }
}

/// A URL with any `user:password@` removed, safe to print.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url
            .rsplit_once('@')
            .map_or_else(|| url.to_owned(), |(_, h)| h.to_owned()),
    }
}

/// The file a mirror's owner holds an exclusive lock on (`flock`) while it has the mirror open.
const OWNER_LOCK: &str = "ship.lock";

/// Removes every `*.lock` file in the mirror `dir` but the owner's, outside `objects/` (libgit2
/// writes refs, reflogs, `packed-refs`, `FETCH_HEAD` and `config` through `<file>.lock`; objects
/// are written under temporary names that never block a later write). Returns the paths
/// removed, relative to `dir`. Only for the mirror's owner.
fn remove_stale_locks(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                if path != dir.join("objects") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "lock") && path != dir.join(OWNER_LOCK) {
                std::fs::remove_file(&path)?;
                removed.push(path.strip_prefix(dir).unwrap_or(&path).to_owned());
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// A bare mirror of one remote repository.
pub struct Mirror {
    repo: Repository,
    url: String,
    /// The owner's lock ([`OWNER_LOCK`]), released when the mirror is dropped or the process dies;
    /// `None` for a repository opened only to read ([`Mirror::open_local`]).
    _owner: Option<std::fs::File>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("path", &self.repo.path())
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

fn read_err(what: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let what = what.into();
    move |e| GitError::Read {
        what,
        message: e.message().to_owned(),
    }
}

impl Mirror {
    /// Opens the bare mirror in `dir`, creating it on first use, and takes it over: one process
    /// at a time owns a mirror (an exclusive lock on `ship.lock`), and the lock files a process
    /// killed mid-write left behind are removed.
    ///
    /// Why: libgit2 writes a ref as `<ref>.lock` and renames it into place. A shipd killed between
    /// the two (SIGKILL, OOM, a node lost) leaves the `.lock`, and every later fetch of that branch
    /// fails with "failed to lock file" until someone removes it by hand; the mirror lives in a
    /// volume that outlives the container. The owner's lock is what makes removing them safe: no
    /// other process can be writing.
    pub fn open(dir: &Path, url: &str) -> Result<Self, GitError> {
        let open_err = |message: String| GitError::Open {
            path: dir.to_owned(),
            message,
        };
        let repo = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
                Repository::init_bare(dir).map_err(|e| open_err(e.message().to_owned()))?
            }
        };
        let owner = std::fs::File::create(dir.join(OWNER_LOCK))
            .map_err(|e| open_err(format!("{OWNER_LOCK}: {e}")))?;
        owner.try_lock().map_err(|e| {
            open_err(match e {
                std::fs::TryLockError::WouldBlock => format!(
                    "another process has it open ({OWNER_LOCK} is locked); \
                     give each shipd a data directory of its own"
                ),
                std::fs::TryLockError::Error(e) => format!("{OWNER_LOCK}: {e}"),
            })
        })?;
        let removed = remove_stale_locks(dir).map_err(|e| open_err(format!("removing stale locks: {e}")))?;
        if !removed.is_empty() {
            tracing::warn!(
                locks = ?removed,
                "removed lock files an earlier process left in the git mirror when it stopped mid-write"
            );
        }
        Ok(Self {
            repo,
            url: url.to_owned(),
            _owner: Some(owner),
        })
    }

    /// Opens an existing repository (a developer's clone, bare or not) to read commits from it;
    /// never creates one. Fetching and pushing are not meant for it.
    pub fn open_local(path: &Path) -> Result<Self, GitError> {
        let repo = Repository::discover(path).map_err(|e| GitError::Open {
            path: path.to_owned(),
            message: e.message().to_owned(),
        })?;
        Ok(Self {
            repo,
            url: String::new(),
            _owner: None,
        })
    }

    /// The refusal the callbacks recorded (or libgit2's own certificate refusal) as an error;
    /// else `otherwise`.
    fn refused_or(
        &self,
        refused: &RefusalCell,
        error: &git2::Error,
        otherwise: impl FnOnce() -> GitError,
    ) -> GitError {
        let refusal = refused.get().or_else(|| {
            // libgit2 reports an untrusted certificate with one code or another by version and
            // TLS backend; its message names the certificate either way.
            let certificate = error.code() == git2::ErrorCode::Certificate
                || (error.class() == git2::ErrorClass::Ssl && error.message().contains("certificate"));
            certificate.then_some(crate::credentials::Refusal::CertificateUntrusted)
        });
        match refusal {
            Some(refusal) => GitError::Refused {
                url: self.display_url(),
                refusal,
            },
            None => otherwise(),
        }
    }

    /// The remote URL, safe to print.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The last fetched tip of `branch`.
    pub fn tip(&self, branch: &str) -> Option<Oid> {
        self.repo.refname_to_id(&format!("{FETCHED_PREFIX}{branch}")).ok()
    }

    /// Fetches exactly `branches` (`refs/heads/<b>`) and reports every tip that moved, and
    /// every branch the remote does not have. A missing branch keeps its last fetched tip (its
    /// environment keeps running what it has) and does not fail the fetch of the others.
    /// A force-pushed tip is reported, and accepted or not by `policy`.
    pub fn fetch(
        &self,
        branches: &[String],
        credentials: &Credentials,
        policy: ForcePushPolicy,
    ) -> Result<Fetched, GitError> {
        let refused = RefusalCell::default();
        let fetch_err = |e: git2::Error| {
            self.refused_or(&refused, &e, || GitError::Fetch {
                url: self.display_url(),
                message: e.message().to_owned(),
            })
        };
        let before: Vec<Option<Oid>> = branches.iter().map(|b| self.tip(b)).collect();
        let refspecs: Vec<String> = branches
            .iter()
            .map(|b| format!("+refs/heads/{b}:{INCOMING_PREFIX}{b}"))
            .collect();
        // A fetch leaves a branch the remote lacks untouched: without this, the incoming ref of
        // a deleted branch would still name its last tip, and the deletion would go unseen.
        for branch in branches {
            if let Ok(mut stale) = self.repo.find_reference(&format!("{INCOMING_PREFIX}{branch}")) {
                stale.delete().map_err(fetch_err)?;
            }
        }
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(fetch_err)?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(credentials.callbacks(&self.url, &refused));
        options.download_tags(AutotagOption::None);
        remote
            .fetch(&refspecs, Some(&mut options), None)
            .map_err(fetch_err)?;
        let mut fetched = Fetched::default();
        for (branch, old) in branches.iter().zip(before) {
            let Ok(new) = self.repo.refname_to_id(&format!("{INCOMING_PREFIX}{branch}")) else {
                fetched.missing.push(branch.clone());
                continue;
            };
            let kind = match old {
                None => TipChangeKind::Created,
                Some(old) if old == new => continue,
                Some(old) if self.repo.graph_descendant_of(new, old).map_err(fetch_err)? => {
                    TipChangeKind::FastForward
                }
                Some(_) => TipChangeKind::ForcePushed,
            };
            if kind != TipChangeKind::ForcePushed || policy == ForcePushPolicy::Follow {
                let name = format!("{FETCHED_PREFIX}{branch}");
                self.repo
                    .reference(&name, new, true, "ship: accept fetched tip")
                    .map_err(fetch_err)?;
            }
            fetched.changes.push(TipChange {
                branch: branch.clone(),
                old,
                new,
                kind,
            });
        }
        Ok(fetched)
    }

    /// Keeps `commit` in the mirror whatever the branches do (a ref of its own). Idempotent.
    pub fn keep(&self, commit: Oid) -> Result<(), GitError> {
        let name = format!("{KEEP_PREFIX}{commit}");
        if self.repo.find_reference(&name).is_ok() {
            return Ok(());
        }
        self.repo
            .reference(&name, commit, true, "ship: keep a released commit")
            .map(drop)
            .map_err(read_err(format!("keep {commit}")))
    }

    /// Holds the mirror `commit`? (It may be on no branch: kept, or fetched by id.)
    pub fn has_commit(&self, commit: Oid) -> bool {
        self.repo.find_commit(commit).is_ok()
    }

    /// Fetches `commit` by id, for a commit a release names that no followed branch reaches
    /// any more (history rewritten, and this mirror is new). Servers that allow it (GitHub,
    /// GitLab, git with `uploadpack.allowAnySHA1InWant`) send it; others refuse, and the error
    /// says so. The commit is then kept.
    pub fn fetch_commit(&self, commit: Oid, credentials: &Credentials) -> Result<(), GitError> {
        let refused = RefusalCell::default();
        let fetch_err = |e: git2::Error| {
            self.refused_or(&refused, &e, || GitError::Fetch {
                url: self.display_url(),
                message: format!("commit {commit} by id: {}", e.message()),
            })
        };
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(fetch_err)?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(credentials.callbacks(&self.url, &refused));
        options.download_tags(AutotagOption::None);
        remote
            .fetch(
                &[format!("+{commit}:{KEEP_PREFIX}{commit}")],
                Some(&mut options),
                None,
            )
            .map_err(fetch_err)?;
        if !self.has_commit(commit) {
            return Err(fetch_err(git2::Error::from_str("the remote did not send it")));
        }
        Ok(())
    }

    /// Is `ancestor` an ancestor of (or equal to) `commit`?
    pub fn is_ancestor(&self, ancestor: Oid, commit: Oid) -> Result<bool, GitError> {
        if ancestor == commit {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(commit, ancestor)
            .map_err(read_err("commit graph"))
    }

    /// Moves `branch` on the remote to `commit` with a plain (never forced) push, when its last
    /// fetched tip is an ancestor of `commit`. A branch that already contains `commit` is left
    /// alone; one that holds commits `commit` lacks is [`GitError::Diverged`] and nothing is
    /// pushed. The fetched tip is not moved here: the next fetch sees the push like any other.
    pub fn fast_forward(
        &self,
        branch: &str,
        commit: Oid,
        credentials: &Credentials,
    ) -> Result<PushOutcome, GitError> {
        if let Some(tip) = self.tip(branch) {
            if self.is_ancestor(commit, tip)? {
                return Ok(PushOutcome::AlreadyContained);
            }
            if !self.is_ancestor(tip, commit)? {
                let (diverging, truncated) = self.log_between(Some(commit), tip, MAX_DIVERGING)?;
                return Err(GitError::Diverged {
                    branch: branch.to_owned(),
                    commit: short(commit),
                    diverging,
                    truncated,
                });
            }
        }
        let push_err = |message: String, stale: bool| GitError::Push {
            branch: branch.to_owned(),
            url: self.display_url(),
            message,
            stale,
        };
        // A plain push to a branch the remote no longer has would create it: a promotion must
        // never bring back a branch someone deleted. Ask the remote first.
        if !self.remote_has_branch(branch, credentials)? {
            return Err(GitError::MissingBranch {
                branch: branch.to_owned(),
                url: self.display_url(),
            });
        }
        let local = format!("{PUSH_PREFIX}{branch}");
        self.repo
            .reference(&local, commit, true, "ship: fast-forward push")
            .map_err(|e| push_err(e.message().to_owned(), false))?;
        let refusal = RefusalCell::default();
        let pushed = self.push_refspec(&format!("{local}:refs/heads/{branch}"), credentials, &refusal);
        let refused = match pushed {
            Ok(refused) => refused,
            Err(err) => {
                let stale = err.code() == git2::ErrorCode::NotFastForward;
                return Err(self.refused_or(&refusal, &err, || push_err(err.message().to_owned(), stale)));
            }
        };
        if let Some(message) = refused {
            let stale = message.contains("fast-forward") || message.contains("fetch first");
            return Err(push_err(message, stale));
        }
        Ok(PushOutcome::Pushed)
    }

    /// Reverts `commit` on `branch`'s tip (as last fetched) and pushes the revert, a plain
    /// fast-forward push: never forced, so a branch that moved since the fetch refuses it
    /// (`Push` with `stale`). A merge is reverted against its first parent. Refused, with
    /// nothing pushed, when the commit is not on the branch or its revert conflicts with later
    /// changes (the conflicting paths named). The commit is authored by Ship, in git's revert
    /// form, with `note` (which names the failed release) as the message's last paragraph.
    pub fn revert_onto_tip(
        &self,
        branch: &str,
        commit: Oid,
        note: &str,
        credentials: &Credentials,
    ) -> Result<RevertOutcome, GitError> {
        let refused = |problem: String| GitError::RevertRefused {
            branch: branch.to_owned(),
            commit: short(commit),
            problem,
        };
        let read = |what: &str| read_err(what.to_owned());
        let tip = self
            .tip(branch)
            .ok_or_else(|| refused("the branch has not been fetched, or is missing".to_owned()))?;
        if commit != tip && !self.is_ancestor(commit, tip)? {
            return Err(refused(format!("it is not on {branch}")));
        }
        let culprit = self
            .repo
            .find_commit(commit)
            .map_err(read("the commit to revert"))?;
        let tip_commit = self.repo.find_commit(tip).map_err(read("the branch's tip"))?;
        let mainline = u32::from(culprit.parent_count() > 1);
        let mut index = self
            .repo
            .revert_commit(&culprit, &tip_commit, mainline, None)
            .map_err(read("the revert"))?;
        if index.has_conflicts() {
            let mut paths: Vec<String> = index
                .conflicts()
                .map_err(read("the revert's conflicts"))?
                .filter_map(Result::ok)
                .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                .map(|entry| String::from_utf8_lossy(&entry.path).into_owned())
                .collect();
            paths.dedup();
            let more = paths.len().saturating_sub(CONFLICTS_SHOWN);
            paths.truncate(CONFLICTS_SHOWN);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(refused(format!(
                "its revert conflicts with later changes to {}{more}; revert it by hand",
                paths.join(", ")
            )));
        }
        let tree_id = index
            .write_tree_to(&self.repo)
            .map_err(read("the revert's tree"))?;
        if tree_id == tip_commit.tree_id() {
            return Ok(RevertOutcome::AlreadyReverted);
        }
        let tree = self.repo.find_tree(tree_id).map_err(read("the revert's tree"))?;
        let subject = String::from_utf8_lossy(culprit.summary_bytes().unwrap_or_default()).into_owned();
        let message = format!("Revert \"{subject}\"\n\nThis reverts commit {commit}.\n\n{note}\n");
        let ship = git2::Signature::now("Ship", "ship@localhost").map_err(read("a signature"))?;
        let reverted = self
            .repo
            .commit(None, &ship, &ship, &message, &tree, &[&tip_commit])
            .map_err(read("the revert commit"))?;
        self.fast_forward(branch, reverted, credentials)?;
        Ok(RevertOutcome::Pushed(reverted))
    }

    /// Creates the annotated tag `name` on `commit` with `message` and pushes it (a plain push:
    /// the remote refuses to replace an existing tag, and Ship never asks it to). A tag the
    /// remote already has is left as it is: [`TagOutcome::AlreadyThere`] when it names
    /// `commit`, [`TagOutcome::Taken`] when it names another commit.
    pub fn push_tag(
        &self,
        name: &str,
        commit: Oid,
        message: &str,
        credentials: &Credentials,
    ) -> Result<TagOutcome, GitError> {
        let refname = format!("refs/tags/{name}");
        let push_err = |message: String| GitError::Push {
            branch: refname.clone(),
            url: self.display_url(),
            message,
            stale: false,
        };
        let refused = RefusalCell::default();
        let remote_err = |e: git2::Error| self.refused_or(&refused, &e, || push_err(e.message().to_owned()));
        {
            let mut remote = self.repo.remote_anonymous(&self.url).map_err(remote_err)?;
            // Listed as a fetch would: only that advertisement peels annotated tags (`^{}`).
            let connection = remote
                .connect_auth(
                    git2::Direction::Fetch,
                    Some(credentials.callbacks(&self.url, &refused)),
                    None,
                )
                .map_err(remote_err)?;
            let heads = connection.list().map_err(remote_err)?;
            // An annotated tag is listed twice: the tag object, and `^{}` peeled to its commit.
            let peeled = format!("{refname}^{{}}");
            let on = heads
                .iter()
                .find(|h| h.name() == peeled)
                .or_else(|| heads.iter().find(|h| h.name() == refname))
                .map(|h| h.oid());
            if let Some(on) = on {
                return Ok(if on == commit {
                    TagOutcome::AlreadyThere
                } else {
                    TagOutcome::Taken(on.to_string())
                });
            }
        }
        let target = self
            .repo
            .find_object(commit, Some(git2::ObjectType::Commit))
            .map_err(|e| push_err(e.message().to_owned()))?;
        let tagger =
            git2::Signature::now("Ship", "ship@localhost").map_err(|e| push_err(e.message().to_owned()))?;
        // A tag left in the mirror by an earlier attempt on the same commit is reused.
        match self.repo.tag(name, &target, &tagger, message, false) {
            Ok(_) => {}
            Err(e) if e.code() == git2::ErrorCode::Exists => {
                let existing = self
                    .repo
                    .revparse_single(&refname)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|e| push_err(e.message().to_owned()))?;
                if existing.id() != commit {
                    self.repo
                        .tag(name, &target, &tagger, message, true)
                        .map_err(|e| push_err(e.message().to_owned()))?;
                }
            }
            Err(e) => return Err(push_err(e.message().to_owned())),
        }
        match self.push_refspec(&format!("{refname}:{refname}"), credentials, &refused) {
            Ok(None) => Ok(TagOutcome::Pushed),
            Ok(Some(message)) => Err(push_err(message)),
            Err(err) => Err(self.refused_or(&refused, &err, || push_err(err.message().to_owned()))),
        }
    }

    /// Pushes `refspec`, never forced. `Ok(Some(message))` when the remote refused the update
    /// (a branch moved since, a tag that exists); errors of the transport as git2 gives them
    /// (`refusal` records a credential refusal, for [`Mirror::refused_or`]).
    fn push_refspec(
        &self,
        refspec: &str,
        credentials: &Credentials,
        refusal: &RefusalCell,
    ) -> Result<Option<String>, git2::Error> {
        let mut remote = self.repo.remote_anonymous(&self.url)?;
        // Declared before the callbacks that borrow it, so it outlives them.
        let mut refused: Option<String> = None;
        let mut callbacks = credentials.callbacks(&self.url, refusal);
        callbacks.push_update_reference(|_refname, status| {
            refused = status.map(str::to_owned);
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let pushed = remote.push(&[refspec], Some(&mut options));
        // The callbacks borrow `refused`; read it only once they are gone.
        drop(options);
        drop(remote);
        pushed.map(|()| refused)
    }

    /// Does the remote advertise `refs/heads/<branch>` to a pusher? (One connection, no fetch.)
    /// Whether the remote has `branch`, asked over a connection for pushing (git-receive-pack):
    /// the remote authenticates it as it would a push, and nothing is pushed. A refusal (no
    /// credentials, read-only ones, a server that takes no pushes) is the error.
    pub fn remote_has_branch(&self, branch: &str, credentials: &Credentials) -> Result<bool, GitError> {
        let refused = RefusalCell::default();
        let list_err = |e: git2::Error| {
            self.refused_or(&refused, &e, || GitError::Push {
                branch: branch.to_owned(),
                url: self.display_url(),
                message: e.message().to_owned(),
                stale: false,
            })
        };
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(list_err)?;
        let connection = remote
            .connect_auth(
                git2::Direction::Push,
                Some(credentials.callbacks(&self.url, &refused)),
                None,
            )
            .map_err(list_err)?;
        let wanted = format!("refs/heads/{branch}");
        let found = connection
            .list()
            .map_err(list_err)?
            .iter()
            .any(|head| head.name() == wanted);
        Ok(found)
    }

    /// The commits reachable from `to` but not from `from` (all of `to`'s history when `from` is
    /// `None`), newest first, at most `max`; the flag says whether more were left out.
    pub fn log_between(
        &self,
        from: Option<Oid>,
        to: Oid,
        max: usize,
    ) -> Result<(Vec<CommitSummary>, bool), GitError> {
        let err = read_err(format!("history of {to}"));
        let mut walk = self.repo.revwalk().map_err(read_err("history"))?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .map_err(read_err("history"))?;
        walk.push(to).map_err(err)?;
        if let Some(from) = from {
            // A `from` unknown to the mirror (a rewritten history) hides nothing.
            let _ = walk.hide(from);
        }
        let mut commits = Vec::new();
        for oid in walk {
            let oid = oid.map_err(read_err("history"))?;
            if commits.len() == max {
                return Ok((commits, true));
            }
            let commit = self
                .repo
                .find_commit(oid)
                .map_err(read_err(format!("commit {oid}")))?;
            commits.push(CommitSummary {
                id: oid,
                author: String::from_utf8_lossy(commit.author().name_bytes()).into_owned(),
                subject: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into_owned(),
                time: commit.time().seconds(),
            });
        }
        Ok((commits, false))
    }

    /// The first-parent line from `from` (exclusive) to `to` (inclusive), oldest first: the
    /// commits a bisection searches. A merge is one commit of the line; its side branch is not
    /// walked. `None` when `from` is not a first-parent ancestor of `to` (history rewritten,
    /// or a range that came in by a merge) or the line is longer than `max`: there is no one
    /// line to search.
    pub fn first_parent_line(
        &self,
        from: Oid,
        to: Oid,
        max: usize,
    ) -> Result<Option<Vec<CommitSummary>>, GitError> {
        let mut line = Vec::new();
        let mut at = self
            .repo
            .find_commit(to)
            .map_err(read_err(format!("commit {to}")))?;
        loop {
            if at.id() == from {
                line.reverse();
                return Ok(Some(line));
            }
            if line.len() == max {
                return Ok(None);
            }
            line.push(CommitSummary {
                id: at.id(),
                author: String::from_utf8_lossy(at.author().name_bytes()).into_owned(),
                subject: String::from_utf8_lossy(at.summary_bytes().unwrap_or_default()).into_owned(),
                time: at.time().seconds(),
            });
            at = match at.parent(0) {
                Ok(parent) => parent,
                // The root: `from` was not on the line.
                Err(_) => return Ok(None),
            };
        }
    }

    /// The bytes of `path` at `commit`, if it is a regular file no larger than `max_bytes`.
    pub fn read_file(&self, commit: Oid, path: &str, max_bytes: usize) -> Result<Option<Vec<u8>>, GitError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(read_err(format!("commit {commit}")))?;
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Blob) || entry.filemode() == 0o120000 {
            return Ok(None);
        }
        let blob = self.repo.find_blob(entry.id()).map_err(read_err(path))?;
        if blob.size() > max_bytes {
            return Err(GitError::UnsafeTree {
                commit: commit.to_string(),
                problem: format!(
                    "{path} is {} bytes, more than the {max_bytes} allowed",
                    blob.size()
                ),
            });
        }
        Ok(Some(blob.content().to_vec()))
    }

    /// Writes the tree of `commit` into the empty directory `dest`, refusing symlinks that point
    /// outside the tree and anything over `limits`. Symlinks inside the tree are recreated.
    pub fn export_tree(&self, commit: Oid, dest: &Path, limits: ExportLimits) -> Result<(), GitError> {
        let unsafe_tree = |problem: String| GitError::UnsafeTree {
            commit: commit.to_string(),
            problem,
        };
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(read_err(format!("commit {commit}")))?;
        let mut entries = 0usize;
        let mut total = 0u64;
        let mut failure: Option<GitError> = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let name = entry.name().unwrap_or("");
            let rel = PathBuf::from(dir).join(name);
            let result = (|| -> Result<(), GitError> {
                entries += 1;
                if entries > limits.max_entries {
                    return Err(unsafe_tree(format!(
                        "more than {} files and directories",
                        limits.max_entries
                    )));
                }
                let target = dest.join(&rel);
                let io = |e: std::io::Error| unsafe_tree(format!("cannot write {}: {e}", rel.display()));
                match entry.kind() {
                    Some(ObjectType::Tree) => std::fs::create_dir_all(&target).map_err(io),
                    Some(ObjectType::Blob) => {
                        let blob = self
                            .repo
                            .find_blob(entry.id())
                            .map_err(read_err(rel.display().to_string()))?;
                        let size = blob.size() as u64;
                        if size > limits.max_file_bytes {
                            return Err(unsafe_tree(format!(
                                "{} is {size} bytes, more than the {} allowed per file",
                                rel.display(),
                                limits.max_file_bytes
                            )));
                        }
                        total += size;
                        if total > limits.max_total_bytes {
                            return Err(unsafe_tree(format!(
                                "more than {} bytes in all",
                                limits.max_total_bytes
                            )));
                        }
                        if entry.filemode() == 0o120000 {
                            let link = String::from_utf8_lossy(blob.content()).into_owned();
                            if !link_stays_inside(&rel, Path::new(&link)) {
                                return Err(unsafe_tree(format!(
                                    "symlink {} points outside the repository ({link})",
                                    rel.display()
                                )));
                            }
                            std::os::unix::fs::symlink(&link, &target).map_err(io)
                        } else {
                            std::fs::write(&target, blob.content()).map_err(io)
                        }
                    }
                    // Submodules (commits) are not followed: their content is not in this repository.
                    _ => Ok(()),
                }
            })();
            match result {
                Ok(()) => git2::TreeWalkResult::Ok,
                Err(e) => {
                    failure = Some(e);
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .or_else(|e| if failure.is_some() { Ok(()) } else { Err(e) })
        .map_err(read_err(format!("tree of {commit}")))?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The underlying repository, for reading history.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The names (`pack-<hash>`) of the mirror's packs.
    pub fn packs(&self) -> Result<Vec<String>, GitError> {
        let dir = self.repo.path().join("objects").join("pack");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.repack_err(e.to_string())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| self.repack_err(e.to_string()))?.file_name();
            if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pack")) {
                names.push(stem.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn repack_err(&self, message: String) -> GitError {
        GitError::Repack {
            path: self.repo.path().to_owned(),
            message,
        }
    }

    /// Reopens the mirror, first combining packs when there are more than `max_packs`.
    ///
    /// Every fetch that brings commits adds a pack. An open repository keeps state for each pack
    /// it has seen, and a lookup of an object that is not there searches every pack, so without
    /// this both shipd's memory and its lookups would grow with the number of fetches.
    ///
    /// Which packs: git's geometric repacking (`git repack --geometric=2`). The big packs that
    /// already grow by a factor of two stay as they are and the small ones are rolled into one,
    /// so the work is proportional to what was fetched lately, not to the repository (measured
    /// on a 10,000-commit repository: the first clone's pack is left alone). Every object of the
    /// rolled-up packs is kept, reachable or not: a rollback may need a commit a force push left
    /// behind. Old packs are removed only after the new one is written, so a failure loses
    /// nothing.
    pub fn maintain(&mut self, max_packs: usize) -> Result<Maintenance, GitError> {
        let before = self.packs()?;
        let mut maintenance = Maintenance {
            packs_before: before.len(),
            packs_after: before.len(),
            objects: 0,
        };
        if before.len() > max_packs {
            let dir = self.repo.path().join("objects").join("pack");
            let mut sized = Vec::with_capacity(before.len());
            for pack in &before {
                if dir.join(format!("{pack}.keep")).exists() {
                    continue; // git's convention: a kept pack is never repacked away
                }
                let ids = pack_index_ids(&dir.join(format!("{pack}.idx")))
                    .map_err(|e| self.repack_err(format!("{pack}.idx: {e}")))?;
                sized.push((pack.as_str(), ids));
            }
            let counts: Vec<(&str, usize)> = sized.iter().map(|(p, ids)| (*p, ids.len())).collect();
            let rolled_up = packs_to_roll_up(&counts, GEOMETRIC_FACTOR);
            if rolled_up.len() >= 2 {
                let ids = sized
                    .iter()
                    .filter(|(p, _)| rolled_up.contains(p))
                    .flat_map(|(_, ids)| ids.iter().copied());
                let (name, objects) = self.write_pack(ids)?;
                for old in rolled_up.iter().filter(|old| **old != name) {
                    for ext in ["pack", "idx", "rev"] {
                        match std::fs::remove_file(dir.join(format!("{old}.{ext}"))) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                return Err(self.repack_err(format!("{old}.{ext}: {e}")));
                            }
                            _ => {}
                        }
                    }
                }
                maintenance.objects = objects;
            }
        }
        // The repository alone is reopened: this mirror keeps its owner's lock.
        self.repo = Repository::open_bare(self.repo.path()).map_err(|e| GitError::Open {
            path: self.repo.path().to_owned(),
            message: e.message().to_owned(),
        })?;
        maintenance.packs_after = self.packs()?.len();
        Ok(maintenance)
    }

    /// Writes one pack holding the objects `ids`; returns its name and object count.
    fn write_pack(&self, ids: impl Iterator<Item = Oid>) -> Result<(String, usize), GitError> {
        let err = |e: git2::Error| self.repack_err(e.message().to_owned());
        let mut builder = self.repo.packbuilder().map_err(err)?;
        // One delta-search thread per core, as git does.
        builder.set_threads(0);
        for id in ids {
            builder.insert_object(id, None).map_err(err)?;
        }
        let objects = builder.object_count();
        builder
            .write(&self.repo.path().join("objects").join("pack"), 0)
            .map_err(err)?;
        let name = builder
            .name()
            .ok()
            .flatten()
            .ok_or_else(|| self.repack_err("the new pack has no name".into()))?;
        Ok((format!("pack-{name}"), objects))
    }
}

/// The factor of git's geometric repacking: each pack left alone holds at least twice the
/// objects of all smaller packs together.
const GEOMETRIC_FACTOR: usize = 2;

/// The packs (name, object count) to roll up into one so that the others form a geometric
/// progression by `factor` (git's `split_pack_geometry`). Pure.
pub fn packs_to_roll_up<'a>(packs: &[(&'a str, usize)], factor: usize) -> Vec<&'a str> {
    let mut sorted = packs.to_vec();
    sorted.sort_by_key(|&(name, count)| (count, name));
    // From the big end: the first pack that is not `factor` times its smaller neighbour
    // breaks the progression; it and everything smaller are rolled up.
    let mut split = 0;
    for i in (1..sorted.len()).rev() {
        if sorted[i].1 < factor.saturating_mul(sorted[i - 1].1) {
            split = i;
            break;
        }
    }
    // The rolled-up pack may now outgrow a bigger neighbour: take that one in too.
    let mut rolled: usize = sorted[..split].iter().map(|p| p.1).sum();
    while split < sorted.len() && sorted[split].1 < factor.saturating_mul(rolled) {
        rolled += sorted[split].1;
        split += 1;
    }
    sorted[..split].iter().map(|p| p.0).collect()
}

/// The object ids a pack index (version 2, what git and libgit2 write) lists.
///
/// libgit2 has no call that lists one pack's objects, and a version-2 index is a fixed layout:
/// a magic number and version, 256 fan-out counts (the last is the object count), then the
/// sorted 20-byte ids.
fn pack_index_ids(path: &Path) -> Result<Vec<Oid>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    if bytes.get(..8) != Some(&[0xff, b't', b'O', b'c', 0, 0, 0, 2][..]) {
        return Err("not a version-2 pack index".into());
    }
    let count = bytes
        .get(8 + 255 * 4..8 + 256 * 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or("the pack index is truncated")? as usize;
    let start: usize = 8 + 256 * 4;
    let ids = bytes
        .get(start..start.saturating_add(count.saturating_mul(20)))
        .ok_or("the pack index is truncated")?;
    ids.chunks_exact(20)
        .map(|id| Oid::from_bytes(id).map_err(|e| e.message().to_owned()))
        .collect()
}

/// What [`Mirror::maintain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Packs before.
    pub packs_before: usize,
    /// Packs after.
    pub packs_after: usize,
    /// Objects written into the rolled-up pack (0 when nothing was rolled up).
    pub objects: usize,
}

/// Does a symlink at `link_path` (relative to the tree root) with target `target` resolve to a
/// path inside the tree? Absolute targets never do.
pub fn link_stays_inside(link_path: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    let parent = link_path.parent().unwrap_or(Path::new(""));
    for component in parent.components().chain(target.components()) {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_packs_are_rolled_up_and_a_geometric_progression_stays() {
        let roll = |packs: &[(&'static str, usize)]| {
            let mut names = packs_to_roll_up(packs, 2);
            names.sort();
            names
        };
        // A first clone's big pack and fifty one-commit fetches: only the fetches are combined.
        let mut piled: Vec<(&str, usize)> = vec![("clone", 50_000)];
        let names: Vec<String> = (0..50).map(|i| format!("fetch-{i:02}")).collect();
        piled.extend(names.iter().map(|n| (n.as_str(), 5)));
        let rolled = packs_to_roll_up(&piled, 2);
        assert_eq!(rolled.len(), 50);
        assert!(!rolled.contains(&"clone"));
        // Already a progression: nothing to do.
        assert!(roll(&[("a", 1), ("b", 2), ("c", 4), ("d", 100)]).is_empty());
        assert!(roll(&[("only", 7)]).is_empty());
        assert!(roll(&[]).is_empty());
        // The break is at the top: everything goes.
        assert_eq!(roll(&[("a", 10), ("b", 10), ("c", 11)]), ["a", "b", "c"]);
        // What is rolled up outgrows its neighbour, which joins it; the big one stays.
        assert_eq!(
            roll(&[("a", 3), ("b", 3), ("c", 7), ("d", 1_000)]),
            ["a", "b", "c"]
        );
        assert_eq!(roll(&[("a", 3), ("b", 3), ("c", 13), ("d", 1_000)]), ["a", "b"]);
    }

    #[test]
    fn a_pack_index_that_is_not_version_2_or_is_cut_short_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack-x.idx");
        std::fs::write(&path, b"PACK0000").unwrap();
        assert_eq!(pack_index_ids(&path).unwrap_err(), "not a version-2 pack index");
        let mut index = vec![0xff, b't', b'O', b'c', 0, 0, 0, 2];
        index.extend(std::iter::repeat_n(0, 255 * 4));
        index.extend(2u32.to_be_bytes());
        index.extend([7u8; 20]);
        std::fs::write(&path, &index).unwrap();
        assert_eq!(pack_index_ids(&path).unwrap_err(), "the pack index is truncated");
        index.extend([9u8; 20]);
        std::fs::write(&path, &index).unwrap();
        let ids = pack_index_ids(&path).unwrap();
        assert_eq!(
            ids,
            [
                Oid::from_bytes(&[7; 20]).unwrap(),
                Oid::from_bytes(&[9; 20]).unwrap()
            ]
        );
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://user:tok@git.example.com/a/b.git"),
            "https://git.example.com/a/b.git"
        );
        assert_eq!(
            redact_url("https://git.example.com/a.git"),
            "https://git.example.com/a.git"
        );
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "github.com:org/repo.git"
        );
        assert_eq!(redact_url("file:///srv/repo.git"), "file:///srv/repo.git");
    }

    #[test]
    fn symlinks_must_stay_inside() {
        assert!(link_stays_inside(
            Path::new("deploy/main/base"),
            Path::new("../base")
        ));
        assert!(link_stays_inside(Path::new("a/b/c"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("a/b/c"), Path::new("../../../x")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("/etc/passwd")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("..")));
    }
}

//! Why a reconcile of a release failed, and the one place that decides what that means: refuse
//! the commit, retry with backoff, or stall until a person acts ([`Error::disposition`]).

use std::time::Duration;

use crate::apply::ApplyError;
use crate::repo::LoadError;

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
pub enum Disposition {
    /// The commit is at fault: fail the release with nothing applied; retrying cannot help.
    Refuse,
    /// Passing (the network, a busy API server): try again soon.
    Retry,
    /// Needs a person (a missing Secret, RBAC, no repository configured): say so and try again
    /// slowly, so the fix is picked up without a restart.
    Stall,
}

impl Disposition {
    /// How long the controller waits before trying again.
    pub fn retry_after(self) -> Duration {
        match self {
            Disposition::Refuse | Disposition::Retry => Duration::from_secs(5),
            Disposition::Stall => Duration::from_secs(30),
        }
    }
}

/// An answer from the API server that may be different next time: no answer at all, a
/// conflict, too many requests, or the server (or a proxy before it) unavailable or timing out.
/// Not a bare 500: Kubernetes 1.20 answers a server-side apply patch that does not fit the
/// object's schema (`.spec.replicas: expected numeric`) with 500, and that is the commit's.
pub fn is_passing(code: Option<u16>) -> bool {
    code.is_none_or(|code| matches!(code, 409 | 429 | 502..=504))
}

fn kube_disposition(err: &kube::Error) -> Disposition {
    match err {
        kube::Error::Api(status) if matches!(status.code, 401 | 403) => Disposition::Stall,
        _ => Disposition::Retry,
    }
}

/// Why a reconcile failed. Each variant has a fixed label for metrics and events; kube errors
/// are kept whole, so their status code decides.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The status write was refused or did not reach the API server.
    #[error("cannot write the ShipRelease status (check the controller's RBAC for shipreleases/status): {0}")]
    StatusWrite(#[source] kube::Error),
    /// The object has no namespace, which a namespaced ShipRelease always has.
    #[error("the ShipRelease has no namespace")]
    NoNamespace,
    /// Listing, reading or deleting ShipReleases failed.
    #[error("cannot read the environment's ShipReleases: {0}")]
    Releases(#[source] kube::Error),
    /// The cluster could not be reached while applying, pruning or watching.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The commit could not be read yet (for example before the first fetch).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The environment's remote cluster cannot be reached with the Secret named in ship.yaml.
    #[error("cannot use the remote cluster of Secret {secret} (ship.yaml kubeconfigSecret): {problem}")]
    RemoteCluster {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        problem: String,
    },
}

impl Error {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::StatusWrite(_) => "StatusWrite",
            Error::NoNamespace => "NoNamespace",
            Error::Releases(_) => "ReleaseList",
            Error::Apply(e) => e.label(),
            Error::Load(e) => e.label(),
            Error::RemoteCluster { .. } => "RemoteCluster",
        }
    }

    /// How this failure is handled (the one place that decides it).
    pub fn disposition(&self) -> Disposition {
        use ship_git::GitError;
        match self {
            Error::StatusWrite(e) | Error::Releases(e) => kube_disposition(e),
            Error::NoNamespace | Error::RemoteCluster { .. } => Disposition::Stall,
            Error::Apply(e) => apply_disposition(e),
            Error::Load(LoadError::Render(_) | LoadError::NoPushAccess) => Disposition::Refuse,
            Error::Load(LoadError::Git(GitError::UnsafeTree { .. } | GitError::Diverged { .. })) => {
                Disposition::Refuse
            }
            Error::Load(
                LoadError::NoRepository(_)
                | LoadError::MirrorPoisoned
                | LoadError::Git(GitError::Refused { .. }),
            ) => Disposition::Stall,
            Error::Load(_) => Disposition::Retry,
        }
    }
}

/// How a failure to apply, prune or watch is handled: a refused object will not change by
/// itself (refuse the commit); a lost connection, a busy or failing API server may (retry).
pub fn apply_disposition(err: &ApplyError) -> Disposition {
    match err {
        ApplyError::Read(_) | ApplyError::Apply { .. } | ApplyError::Prune { .. } => Disposition::Retry,
        ApplyError::DryRun { code, .. } if is_passing(*code) => Disposition::Retry,
        ApplyError::DryRun { .. } | ApplyError::UnknownKind { .. } | ApplyError::CrdNotEstablished(_) => {
            Disposition::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("m", "r").with_code(code).boxed())
    }

    fn dry_run(code: Option<u16>) -> Error {
        Error::Apply(ApplyError::DryRun {
            object: "ConfigMap/a/b".into(),
            message: "m".into(),
            code,
        })
    }

    #[test]
    fn a_refused_object_refuses_the_commit_but_a_failing_server_is_retried() {
        assert_eq!(dry_run(Some(422)).disposition(), Disposition::Refuse);
        assert_eq!(dry_run(Some(400)).disposition(), Disposition::Refuse);
        assert_eq!(dry_run(Some(403)).disposition(), Disposition::Refuse);
        assert_eq!(dry_run(Some(503)).disposition(), Disposition::Retry);
        assert_eq!(dry_run(Some(504)).disposition(), Disposition::Retry);
        // 1.20's answer to a patch that does not fit the schema: the commit's fault.
        assert_eq!(dry_run(Some(500)).disposition(), Disposition::Refuse);
        assert_eq!(dry_run(Some(429)).disposition(), Disposition::Retry);
        assert_eq!(dry_run(None).disposition(), Disposition::Retry);
    }

    #[test]
    fn the_status_code_decides_for_the_controllers_own_requests() {
        assert_eq!(Error::StatusWrite(api(403)).disposition(), Disposition::Stall);
        assert_eq!(Error::StatusWrite(api(503)).disposition(), Disposition::Retry);
        assert_eq!(Error::Releases(api(409)).disposition(), Disposition::Retry);
        assert!(Disposition::Stall.retry_after() > Disposition::Retry.retry_after());
    }

    #[test]
    fn a_commit_the_mirror_lacks_is_waited_for_not_refused() {
        let unknown = Error::Load(LoadError::UnknownCommit("abc".into()));
        assert_eq!(unknown.disposition(), Disposition::Retry);
        assert_eq!(
            Error::Load(LoadError::NoPushAccess).disposition(),
            Disposition::Refuse
        );
        assert_eq!(
            Error::Load(LoadError::NoRepository("abc".into())).disposition(),
            Disposition::Stall
        );
    }
}

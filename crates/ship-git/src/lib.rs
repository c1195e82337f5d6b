//! Ship's git source.
//!
//! - [`mirror`]: a bare mirror of the repository in the controller's data dir, fetching exactly
//!   the configured branches, detecting force-pushes, reading files at a commit;
//! - [`credentials`]: tokens and SSH keys from Kubernetes Secrets, never printed;
//! - [`watch`]: polling with exponential backoff on failure, plus immediate fetches on demand;
//! - [`webhook`]: the push webhook receiver (GitHub, GitLab, Gitea, generic HMAC-SHA256).

pub mod credentials;
pub mod mirror;
pub mod watch;
pub mod webhook;

pub use credentials::Credentials;
pub use mirror::{
    CommitSummary, Fetched, ForcePushPolicy, GitError, Mirror, PushOutcome, RevertOutcome, TagOutcome,
    TipChange, TipChangeKind,
};

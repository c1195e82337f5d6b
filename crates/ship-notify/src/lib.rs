//! Ship's notifications, built as plain requests: commit statuses on the git host
//! ([`forge`]: GitHub, GitLab, Gitea/Forgejo, each by its documented REST contract), and what a
//! release's notification says ([`message`]: the commit status's state and description, a
//! Slack-compatible chat message, a generic JSON webhook signed with HMAC-SHA256).
//!
//! Where notifications go is [`config`]; what a release or promotion is owed, [`ledger`]; one
//! delivery as a request and what its answer means, [`delivery`].
//!
//! Everything here is pure: it decides and builds, and sends nothing. Delivery (at least once,
//! recorded with the release, retried with backoff, never delaying a release) belongs to the
//! engine's notifier; this crate is its vocabulary. Tokens are [`forge::Token`]s, whose `Debug`
//! never shows them, and go only into a sensitive header.

pub mod config;
pub mod delivery;
pub mod forge;
pub mod ledger;
pub mod message;

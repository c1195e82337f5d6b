//! Test fixtures shared by the engine's unit tests.

use ship_api::{InventoryEntry, Phase, Reason, ShipRelease, ShipReleaseSpec, ShipReleaseStatus, keys};

/// A push release of environment `main` named `name`, of a commit of 40 `commit_char`s, in
/// `phase`.
pub fn release(name: &str, commit_char: char, seq: i64, phase: Phase) -> ShipRelease {
    release_of("main", name, commit_char, seq, phase, Reason::Push)
}

/// A release of `environment` (from the branch of that name) for `reason`, otherwise as
/// [`release`].
pub fn release_of(
    environment: &str,
    name: &str,
    commit_char: char,
    seq: i64,
    phase: Phase,
    reason: Reason,
) -> ShipRelease {
    let mut r = ShipRelease::new(
        name,
        ShipReleaseSpec {
            environment: environment.into(),
            commit: std::iter::repeat_n(commit_char, 40).collect(),
            branch: environment.into(),
            reason,
            rollback_of: None,
            promotion: None,
        },
    );
    r.metadata.annotations = Some([(keys::SEQUENCE.to_owned(), seq.to_string())].into());
    r.status = Some(ShipReleaseStatus {
        phase: Some(phase),
        ..Default::default()
    });
    r
}

/// An inventory entry of `kind` in namespace `main` (none for a Namespace).
pub fn entry(kind: &str, name: &str) -> InventoryEntry {
    InventoryEntry {
        api_version: "v1".into(),
        kind: kind.into(),
        namespace: if kind == "Namespace" {
            String::new()
        } else {
            "main".into()
        },
        name: name.into(),
    }
}

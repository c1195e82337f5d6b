//! Test fixtures shared by the engine's unit tests.

use ship_api::{InventoryEntry, Phase, Reason, ShipRelease, ShipReleaseSpec, ShipReleaseStatus, keys};

/// A release of environment `main` named `name`, of a commit of 40 `commit_char`s, in `phase`.
pub fn release(name: &str, commit_char: char, seq: i64, phase: Phase) -> ShipRelease {
    let mut r = ShipRelease::new(
        name,
        ShipReleaseSpec {
            environment: "main".into(),
            commit: std::iter::repeat_n(commit_char, 40).collect(),
            branch: "main".into(),
            reason: Reason::Push,
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

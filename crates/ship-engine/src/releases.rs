//! An environment's releases: creating them (one per new branch tip, named deterministically so
//! that seeing the same tip again after a restart finds the release already made instead of
//! deploying twice), their order, what a failed one rolls back to, and the history kept.

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use ship_api::{Reason, ShipRelease, ShipReleaseSpec, keys};

use ship_api::names::release_name;

/// What to release.
#[derive(Debug, Clone)]
pub struct NewRelease<'a> {
    /// Environment.
    pub environment: &'a str,
    /// Branch the commit is the tip of.
    pub branch: &'a str,
    /// Full commit SHA.
    pub commit: &'a str,
    /// Why.
    pub reason: Reason,
    /// For promotions: where from, and who asked.
    pub promotion: Option<ship_api::PromotionOrigin>,
    /// Its place among the environment's releases (`ship.dev/sequence`): the engine's clock, in
    /// milliseconds, when it was made. Read from the engine's real clock by the caller, never
    /// from a test clock that moves the promotion's schedule only.
    pub sequence_millis: i64,
}

/// The ShipRelease object for `new`.
pub fn release_object(new: &NewRelease<'_>) -> ShipRelease {
    named_release_object(new, &release_name(new.environment, new.commit))
}

/// The ShipRelease object for `new` named `name`.
pub fn named_release_object(new: &NewRelease<'_>, name: &str) -> ShipRelease {
    ShipRelease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(keys::ENVIRONMENT.to_owned(), new.environment.to_owned())].into()),
            annotations: Some([(keys::SEQUENCE.to_owned(), new.sequence_millis.to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: ShipReleaseSpec {
            environment: new.environment.to_owned(),
            commit: new.commit.to_owned(),
            branch: new.branch.to_owned(),
            reason: new.reason,
            rollback_of: None,
            promotion: new.promotion.clone(),
        },
        status: None,
    }
}

/// Creates the release of a new tip in `namespace`. Returns its name, and whether it was new
/// (`false`: a release of this commit to this environment already exists, and stands).
pub async fn create(
    client: &Client,
    namespace: &str,
    new: &NewRelease<'_>,
) -> Result<(String, bool), kube::Error> {
    let object = release_object(new);
    let name = object.metadata.name.clone().unwrap_or_default();
    let api: Api<ShipRelease> = Api::namespaced(client.clone(), namespace);
    let created = create_or_stand(&api, &object).await?;
    Ok((name, created))
}

/// The releases `params` selects in `namespace` that this Ship can read
/// ([`ship_api::readable`]): one it cannot read is left out, never a failed list.
pub async fn list_readable(
    client: &Client,
    namespace: &str,
    params: &kube::api::ListParams,
) -> Result<Vec<ShipRelease>, kube::Error> {
    let api: Api<kube::core::DeserializeGuard<ShipRelease>> = Api::namespaced(client.clone(), namespace);
    let listed = ship_api::readable(api.list(params).await?.items);
    for (name, why) in &listed.unreadable {
        tracing::debug!(release = name, why, "left out a release this Ship cannot read");
    }
    Ok(listed.releases)
}

/// Creates `object`; `false` when a release of that name exists already (made before a
/// restart, or by the other path), which then stands.
pub(crate) async fn create_or_stand(
    api: &Api<ShipRelease>,
    object: &ShipRelease,
) -> Result<bool, kube::Error> {
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// A release's place in its environment's order (see [`ShipRelease::sequence`]).
pub fn sequence(release: &ShipRelease) -> (i64, String) {
    release.sequence()
}

/// What `release` rolls back to if it fails: the environment's last good release before it,
/// of another commit ([`ship_api::environment::last_good`], the one meaning of "last good").
pub fn rollback_target<'a>(release: &ShipRelease, others: &'a [ShipRelease]) -> Option<&'a ShipRelease> {
    ship_api::environment::rollback_target(release, others)
}

pub use ship_api::environment::to_collect;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::release;
    use ship_api::Phase;

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(
            release_name("main", "0123456789abcdef0123456789abcdef01234567"),
            "main-0123456789"
        );
    }

    #[test]
    fn last_good_skips_failures_and_same_commit() {
        let all = vec![
            release("a", 'a', 1, Phase::Succeeded),
            release("b", 'b', 2, Phase::Succeeded),
            release("c", 'c', 3, Phase::RolledBack),
            release("d", 'd', 4, Phase::Testing),
            release("e", 'b', 5, Phase::Progressing),
        ];
        assert_eq!(
            rollback_target(&all[3], &all).map(|r| r.metadata.name.as_deref()),
            Some(Some("b"))
        );
        // e deploys b's commit again: its last good release must be another commit.
        assert_eq!(
            rollback_target(&all[4], &all).map(|r| r.metadata.name.as_deref()),
            Some(Some("a"))
        );
        assert!(rollback_target(&all[0], &all).is_none());
    }

    #[test]
    fn collection_keeps_in_progress_and_newest_good() {
        let all = vec![
            release("a", 'a', 1, Phase::Succeeded),
            release("b", 'b', 2, Phase::Pending),
            release("c", 'c', 3, Phase::Failed),
            release("d", 'd', 4, Phase::RolledBack),
            release("e", 'e', 5, Phase::Failed),
        ];
        let mut gone = to_collect(&all, 2);
        gone.sort();
        // Keep e, d (newest two), b (in progress), a (the newest good one): collect c.
        assert_eq!(gone, vec!["c".to_owned()]);
        assert!(to_collect(&all, 10).is_empty());
        // After manual releases only, the newest release from the branch stays too.
        let manual = |name: &str, c: char, seq: i64| {
            let mut r = release(name, c, seq, Phase::Succeeded);
            r.spec.reason = Reason::Manual;
            r
        };
        let all = vec![
            release("push", 'a', 1, Phase::RolledBack),
            manual("m1", 'b', 2),
            manual("m2", 'c', 3),
            manual("m3", 'd', 4),
        ];
        let mut gone = to_collect(&all, 1);
        gone.sort();
        // keep m3 (newest, and newest good), push (newest from the branch): collect m1, m2
        assert_eq!(gone, vec!["m1".to_owned(), "m2".to_owned()]);
    }
}

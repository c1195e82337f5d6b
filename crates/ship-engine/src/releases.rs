//! Creating releases: one per new branch tip, named deterministically so that seeing the same
//! tip again (after a restart) finds the release already made instead of deploying twice.

use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use ship_api::{Reason, ShipRelease, ShipReleaseSpec, keys};

use crate::plan::release_name;

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
}

/// The ShipRelease object for `new`, sequenced at `sequence_millis`.
pub fn release_object(new: &NewRelease<'_>, sequence_millis: i64) -> ShipRelease {
    ShipRelease {
        metadata: ObjectMeta {
            name: Some(release_name(new.environment, new.commit)),
            labels: Some([(keys::ENVIRONMENT.to_owned(), new.environment.to_owned())].into()),
            annotations: Some([(keys::SEQUENCE.to_owned(), sequence_millis.to_string())].into()),
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
    let object = release_object(new, jiff::Timestamp::now().as_millisecond());
    let name = object.metadata.name.clone().unwrap_or_default();
    let api: Api<ShipRelease> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok((name, true)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok((name, false)),
        Err(err) => Err(err),
    }
}

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
    named_release_object(new, &release_name(new.environment, new.commit), sequence_millis)
}

/// The ShipRelease object for `new` named `name`, sequenced at `sequence_millis`.
pub fn named_release_object(new: &NewRelease<'_>, name: &str, sequence_millis: i64) -> ShipRelease {
    ShipRelease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
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
    let created = create_or_stand(&api, &object).await?;
    Ok((name, created))
}

/// Creates `object`; `false` when a release of that name exists already (made before a
/// restart, or by the other path), which then stands.
async fn create_or_stand(api: &Api<ShipRelease>, object: &ShipRelease) -> Result<bool, kube::Error> {
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Makes the release a branch tip asks for ([`crate::plan::tip_release`]), reading the
/// environment's releases in `namespace` first. Returns the name of the release made, or `None`
/// when the environment already follows the tip.
pub async fn create_for_tip(
    client: &Client,
    namespace: &str,
    new: &NewRelease<'_>,
    seen: crate::plan::TipSeen,
) -> Result<Option<String>, kube::Error> {
    let api: Api<ShipRelease> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", keys::ENVIRONMENT, new.environment);
    let releases = api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?
        .items;
    let Some(name) = crate::plan::tip_release(new.environment, new.commit, &releases, seen) else {
        return Ok(None);
    };
    let object = named_release_object(new, &name, jiff::Timestamp::now().as_millisecond());
    let created = create_or_stand(&api, &object).await?;
    Ok(created.then_some(name))
}

//! The executor of the release state machine: the thin layer that talks to the API server.
//!
//! [`crate::machine::step`] decides, and so do the other pure rules of
//! [`ship_core::release`] (what a change tells the metrics, which objects a deployed release
//! runs, what a stale view decides again). The executor has three parts:
//! - this module: the `ShipRelease` controller (kube-runtime's `Controller` on the one shared
//!   ShipRelease watch), which hands each release to a driver;
//! - [`drive`]: the loop. It builds a [`machine::Snapshot`], asks `step`, persists the
//!   transition (server-side apply on `/status`, fixed field manager, a compare-and-set on the
//!   resourceVersion the decision was taken on), then performs the actions in order;
//! - [`work`]: one function per [`machine::Work`]. Each observes or changes the cluster, the
//!   repository or the environment's other releases, and reports what happened as an
//!   [`machine::Event`] for the next step. None of them looks at the release's phase.
//!
//! Every transition is written before the work it announces, and every phase's work is
//! idempotent, so a controller killed anywhere resumes from the persisted phase and reaches
//! the same end state. The fault-injection pause points (tests only) hang off the executor:
//! after each persisted phase, and inside the work (see [`FAULT_POINTS`]).

mod bisect;
mod drive;
mod work;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use ship_api::{ShipRelease, StatusReason};
use ship_render::Rendered;
use tracing::{Instrument, warn};

pub use crate::context::{Context, FAULT_POINTS, Settings};
pub use crate::error::{Disposition, Error};
use crate::machine::{self, Event};
use crate::releases;
use drive::Driver;

/// Publishes a Kubernetes Event about `object`.
async fn publish(
    ctx: &Context,
    object: &impl Resource<DynamicType = ()>,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    ctx.recorder
        .announce(&object.object_ref(&()), type_, reason, "Reconcile", note)
        .await;
}

/// The namespace ship.yaml gives `environment` at this commit.
fn environment_namespace(rendered: &Rendered, environment: &str) -> String {
    rendered
        .config
        .environments
        .get(environment)
        .map(|e| e.namespace(environment).to_owned())
        .unwrap_or_default()
}

/// Reconciles one ShipRelease: level-based and idempotent.
pub async fn reconcile(
    object: Arc<DeserializeGuard<ShipRelease>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let name = object.name_any();
    let release = match &object.0 {
        Ok(release) => release.clone(),
        Err(invalid) => {
            // One malformed object must not stall the watch: say what is wrong, touch nothing.
            let message = format!("the ShipRelease cannot be read: {}", invalid.error);
            warn!(release = %name, namespace, error = %invalid.error, "malformed ShipRelease");
            // The message alone, by a merge patch: whatever else the status holds (the phase
            // and history another Ship version wrote) stays as it is, so nothing is lost when
            // a Ship that can read it comes back. An apply of a status this Ship built would
            // drop every field it owned and did not restate.
            let api: Api<DeserializeGuard<ShipRelease>> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = serde_json::json!({"status": {"message": message}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::StatusWrite)?;
            let reason = StatusReason::InvalidObject.label();
            publish(&ctx, object.as_ref(), EventType::Warning, reason, &message).await;
            return Ok(Requeue::await_change());
        }
    };
    let span = tracing::info_span!(
        "release",
        release = %name,
        namespace,
        environment = %release.spec.environment,
        commit = %release.spec.commit,
    );
    let release = if ctx.settings.stale_views {
        one_version_behind(&ctx, &namespace, &name, release)
    } else {
        release
    };
    reconcile_release(release, namespace, name, &ctx)
        .instrument(span)
        .await
}

/// Fault injection ([`Settings::stale_views`](crate::context::Settings)): hand this reconcile
/// the version of the release the previous reconcile was handed, as a cache lagging the
/// controller's own writes would. The first reconcile of a release sees it as it is.
fn one_version_behind(ctx: &Context, namespace: &str, name: &str, current: ShipRelease) -> ShipRelease {
    let key = format!("{namespace}/{name}");
    let Ok(mut handed) = ctx.last_handed.lock() else {
        return current;
    };
    match handed.insert(key, current.clone()) {
        Some(previous) if previous.metadata.resource_version != current.metadata.resource_version => previous,
        _ => current,
    }
}

async fn reconcile_release(
    release: ShipRelease,
    namespace: String,
    name: String,
    ctx: &Context,
) -> Result<Requeue, Error> {
    let slot = ctx.slot(&namespace, &release.spec.environment);
    let own = releases::sequence(&release);
    let mut driver = Driver::new(ctx, release, namespace, name, slot, own);
    if let Err(problem) = driver.release.spec.validate() {
        return driver.drive(Event::SpecInvalid(problem.to_string())).await;
    }
    driver.ensure_identity().await?;
    let requested = driver
        .release
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ship_api::keys::REVERT_REQUESTED_AT))
        .cloned();
    if let Some(requested_at) = ship_core::revert::unanswered(
        requested.as_deref(),
        driver.status().and_then(|s| s.revert.as_ref()),
    ) {
        let requested_at = requested_at.to_owned();
        driver.revert(&requested_at).await?;
    }
    let all = driver.environment_releases().await?;
    // What runs, from the environment's releases; a list that lacks this release (a store
    // behind the API server) says nothing, and the newest-runs rule stands.
    driver.standing = all
        .iter()
        .any(|r| r.metadata.name.as_deref() == Some(driver.name.as_str()))
        .then(|| ship_api::environment::standing(&driver.release.spec.environment, &all, &driver.name));
    // The release that runs pauses its drift correction under a frozen hold (from the watch
    // of environments: a freeze placed during an incident holds from its delivery on).
    let settled = driver
        .status()
        .is_some_and(ship_api::ShipReleaseStatus::is_settled);
    if settled && driver.standing == Some(ship_api::environment::Standing::RunsNow) {
        driver.frozen = ctx
            .hold(&driver.namespace, &driver.release.spec.environment)
            .await
            .map_err(Error::Releases)?
            .is_some_and(|hold| hold.freeze);
    }
    if let Some(newest) = all.iter().map(releases::sequence).max() {
        driver.slot.newest.send_if_modified(|current| {
            let newer = newest > *current;
            if newer {
                *current = newest;
            }
            newer
        });
    }
    // Seen again (for example after a restart): what the status already holds (the success
    // time, and the newest release's phase, on which alerts key) goes back into the metrics.
    let seen = machine::measures::on_sight(driver.status(), driver.release.spec.reason, !driver.superseded());
    driver.record(seen);
    let slot = driver.slot.clone();
    let turn = slot.lock.lock().await;
    let requeue = driver.drive(Event::Observed).await?;
    drop(turn);
    // A bisection's test release that settled wakes the failed release it answers.
    if let (Some(parent), Some(wake)) = (
        driver.release.labels().get(ship_api::keys::BISECTION_OF),
        ctx.wake.as_ref(),
    ) && driver
        .status()
        .is_some_and(ship_api::ShipReleaseStatus::is_settled)
    {
        let _ =
            wake.unbounded_send(kube::runtime::reflector::ObjectRef::new(parent).within(&driver.namespace));
    }
    // A failed release of several commits: its bisection (after the rollback, outside the
    // environment's turn, which its test releases take).
    Ok(match driver.bisect(&all).await? {
        Some(look_again) => Requeue::requeue(look_again),
        None => requeue,
    })
}

fn error_policy(_object: Arc<DeserializeGuard<ShipRelease>>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let disposition = error.disposition();
    let disposition_label: &'static str = disposition.into();
    warn!(error = %error, kind = error.label(), disposition = disposition_label, "reconcile failed; retrying");
    ctx.metrics.reconcile_error(error.label());
    Requeue::requeue(disposition.retry_after())
}

/// Runs the ShipRelease controller until `shutdown` resolves, driven by `releases`, the one
/// ShipRelease watch (its trigger and store; the keeper and the status page read them too).
/// `ready` turns true once the initial list of ShipReleases has been read (the controller can
/// act on every object).
pub async fn run(
    mut ctx: Context,
    releases: &crate::watches::ReleaseWatch,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Some(trigger) = releases.trigger() else {
        warn!("the ShipRelease watch already drives a controller; not starting a second");
        return;
    };
    let (wake, woken) = futures::channel::mpsc::unbounded();
    ctx.wake = Some(wake);
    let controller = Controller::for_stream(trigger, releases.shared.store())
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown);
    let (shared, ready_store) = (releases.shared.clone(), ctx.store.clone());
    tokio::spawn(async move {
        shared.wait_ready().await;
        // From now on the engine reads releases from the store.
        let _ = ready_store.set(shared.store());
        ready.store(true, Ordering::SeqCst);
    });
    controller
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %err, "reconcile result");
            }
        })
        .await;
}

//! The thin layer that talks to the API server: watch ShipReleases, write status, publish events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use ship_api::{FIELD_MANAGER, Phase, ShipRelease};
use tracing::{info, warn};

use crate::status::{Step, next_status};

/// Everything a reconcile needs, shared by all of them.
#[derive(Clone)]
pub struct Context {
    /// Client of the cluster holding the ShipReleases.
    pub client: Client,
    /// The one event recorder of this controller.
    pub recorder: Recorder,
    /// Only this namespace is watched when set; all namespaces otherwise.
    pub namespace: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events are reported as `controller`, from `instance` (the pod name).
    pub fn new(client: Client, namespace: Option<String>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: "ship-controller".into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            namespace,
        }
    }

    fn releases(&self, namespace: &str) -> Api<ShipRelease> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// Why a reconcile failed. Each variant has a fixed label for metrics and events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The status write was refused or did not reach the API server.
    #[error("cannot write the ShipRelease status (check the controller's RBAC for shipreleases/status): {0}")]
    StatusWrite(#[source] kube::Error),
    /// The object has no namespace, which a namespaced ShipRelease always has.
    #[error("the ShipRelease has no namespace")]
    NoNamespace,
}

impl Error {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            Error::StatusWrite(_) => "StatusWrite",
            Error::NoNamespace => "NoNamespace",
        }
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Server-side apply of `status` with Ship's fixed field manager.
async fn apply_status(
    ctx: &Context,
    namespace: &str,
    name: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    let patch = serde_json::json!({
        "apiVersion": ShipRelease::api_version(&()),
        "kind": ShipRelease::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    ctx.releases(namespace)
        .patch_status(name, &params, &Patch::Apply(&patch))
        .await
        .map_err(Error::StatusWrite)?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    object: &impl Resource<DynamicType = ()>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        // An event is a courtesy; failing to publish one must not fail the release.
        warn!(error = %err, reason, "cannot publish event");
    }
}

/// Reconciles one ShipRelease: level-based and idempotent.
pub async fn reconcile(
    object: Arc<DeserializeGuard<ShipRelease>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or(Error::NoNamespace)?;
    let name = object.name_any();
    let release = match &object.0 {
        Ok(release) => release,
        Err(invalid) => {
            // One malformed object must not stall the watch: say what is wrong, touch nothing.
            let message = format!("the ShipRelease cannot be read: {}", invalid.error);
            warn!(release = %name, namespace, error = %invalid.error, "malformed ShipRelease");
            let status = serde_json::json!({ "phase": Phase::Failed, "message": message });
            apply_status(&ctx, &namespace, &name, status).await?;
            publish(
                &ctx,
                object.as_ref(),
                EventType::Warning,
                "InvalidObject",
                message,
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let span = tracing::info_span!(
        "release",
        release = %name,
        namespace,
        environment = %release.spec.environment,
        commit = %release.spec.commit,
    );
    let _entered = span.enter();

    let current = release.status.as_ref().and_then(|s| s.phase);
    let step = match release.spec.validate() {
        Err(problem) => Step {
            phase: Phase::Failed,
            reason: "InvalidSpec",
            message: problem.to_string(),
        },
        Ok(()) => match current {
            None => Step {
                phase: Phase::Pending,
                reason: "Accepted",
                message: format!(
                    "release of {} to {} accepted",
                    release.spec.short_commit(),
                    release.spec.environment
                ),
            },
            // Later phases are driven by the release engine proper; until then keep what is there,
            // refreshing observedGeneration and conditions (level-based, idempotent).
            Some(phase) => Step {
                phase,
                reason: phase.as_str(),
                message: release
                    .status
                    .as_ref()
                    .and_then(|s| s.message.clone())
                    .unwrap_or_default(),
            },
        },
    };
    let status = next_status(release, &step, &now());
    if release.status.as_ref() == Some(&status) {
        return Ok(Action::await_change());
    }
    let changed_phase = current != Some(step.phase);
    let json = serde_json::to_value(&status).unwrap_or_default();
    apply_status(&ctx, &namespace, &name, json).await?;
    if changed_phase {
        let type_ = if step.phase == Phase::Failed {
            EventType::Warning
        } else {
            EventType::Normal
        };
        info!(phase = %step.phase, reason = step.reason, "{}", step.message);
        publish(&ctx, release, type_, step.reason, step.message).await;
    }
    Ok(Action::await_change())
}

fn error_policy(_object: Arc<DeserializeGuard<ShipRelease>>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, kind = error.label(), "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the ShipRelease controller until `shutdown` resolves. `ready` turns true once the
/// initial list of ShipReleases has been read (the controller can act on every object).
pub async fn run(
    ctx: Context,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DeserializeGuard<ShipRelease>> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default()).graceful_shutdown_on(shutdown);
    let store = controller.store();
    tokio::spawn(async move {
        // The store's readiness signal wakes only its most recent waiter, and the controller
        // waits on it too: poll again every 200 ms rather than wait once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => return ready.store(true, Ordering::SeqCst),
                Ok(Err(_)) => return,
                Err(_elapsed) => {}
            }
        }
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

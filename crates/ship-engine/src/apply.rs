//! The thin layer that puts objects into a cluster: discovery, server-side dry run, server-side
//! apply with Ship's field manager, pruning, and health by watches.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::{StreamExt, stream};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PropagationPolicy,
};
use kube::discovery::Scope;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use serde_json::Value;
use ship_api::{FIELD_MANAGER, InventoryEntry, PruneRefusal, keys};
use tokio::time::Instant;

use crate::changes::{Live, ObjectKey};
use crate::health::{Health, assess};
use crate::inventory::entry_of;
use crate::prune::{PruneVerdict, prune_verdict};

/// Requests a dry run or an apply keeps in flight at once, unless `--apply-concurrency` says
/// otherwise. Measured (bench/release.sh, 1,000 ConfigMaps on the 2-core bed): 8 in flight
/// took 1.78 s, 32 took 1.38 s, 64 took 1.28 s; 32 keeps most of the gain and stays well
/// inside the API server's default limits and its priority levels' shares (a 429 is retried,
/// never a refusal).
pub const IN_FLIGHT: usize = 32;

/// Objects a metadata-only list asks for per page.
const LIST_PAGE: u32 = 500;

/// Why objects could not be applied, pruned or watched.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The API server does not serve the object's kind.
    #[error("{object}: the cluster does not serve {api_version} {kind} (is its CRD installed?)")]
    UnknownKind {
        /// The object.
        object: String,
        /// apiVersion.
        api_version: String,
        /// kind.
        kind: String,
    },
    /// The server-side dry run refused an object: nothing was changed.
    #[error("{object}: refused by the API server's dry run: {message}")]
    DryRun {
        /// The object.
        object: String,
        /// The API server's message.
        message: String,
        /// The API server\'s HTTP status code, when it answered.
        code: Option<u16>,
    },
    /// The apply of an object failed.
    #[error("{object}: server-side apply failed: {message}")]
    Apply {
        /// The object.
        object: String,
        /// The API server's message.
        message: String,
        /// The API server\'s HTTP status code, when it answered.
        code: Option<u16>,
    },
    /// An object could not be deleted while pruning.
    #[error("{object}: cannot prune: {message}")]
    Prune {
        /// The object.
        object: String,
        /// The API server's message.
        message: String,
        /// The API server\'s HTTP status code, when it answered.
        code: Option<u16>,
    },
    /// A CRD applied by the release was not established in time.
    #[error("CustomResourceDefinition {0} was not established within 30 s")]
    CrdNotEstablished(String),
    /// Discovery or another read failed.
    #[error("cannot read from the API server: {0}")]
    Read(String),
}

impl ApplyError {
    /// Stable label for metrics and event reasons.
    pub fn label(&self) -> &'static str {
        match self {
            ApplyError::UnknownKind { .. } => "UnknownKind",
            ApplyError::DryRun { .. } => "DryRunFailed",
            ApplyError::Apply { .. } => "ApplyFailed",
            ApplyError::Prune { .. } => "PruneFailed",
            ApplyError::CrdNotEstablished(_) => "CrdNotEstablished",
            ApplyError::Read(_) => "ApiReadFailed",
        }
    }
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Resolved kinds, cached for the life of the process (a CRD applied by a release clears the
/// entries of its group).
#[derive(Debug)]
pub struct Applier {
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
    in_flight: usize,
}

impl Default for Applier {
    fn default() -> Self {
        Self::new(IN_FLIGHT)
    }
}

/// Result of an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Objects applied.
    pub objects: usize,
    /// Objects that had drifted (changed or deleted by hand) and were put back. Counted only
    /// when asked for.
    pub drifted: usize,
}

fn gvk_of(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

impl Applier {
    /// An applier that keeps at most `in_flight` dry runs or applies in flight (at least one).
    pub fn new(in_flight: usize) -> Self {
        Self {
            kinds: Mutex::default(),
            in_flight: in_flight.max(1),
        }
    }

    /// The live metadata of `environment`'s objects of the kinds and namespaces `objects`
    /// have: one metadata-only list (paged) per kind and namespace, selected by Ship's labels.
    /// A kind the cluster does not serve yet (its CRD comes with the set) has none.
    pub async fn live_metadata(
        &self,
        client: &Client,
        objects: &[Value],
        environment: &str,
    ) -> Result<Live, ApplyError> {
        Ok(self
            .list_environment(client, objects, environment, false)
            .await?
            .0)
    }

    /// Like [`Applier::live_metadata`], with the objects' bodies too (one list per kind and
    /// namespace, paged): what a full re-check compares.
    pub async fn live_objects(
        &self,
        client: &Client,
        objects: &[Value],
        environment: &str,
    ) -> Result<(Live, HashMap<ObjectKey, Value>), ApplyError> {
        self.list_environment(client, objects, environment, true).await
    }

    async fn list_environment(
        &self,
        client: &Client,
        objects: &[Value],
        environment: &str,
        bodies: bool,
    ) -> Result<(Live, HashMap<ObjectKey, Value>), ApplyError> {
        let groups = crate::inventory::groups_of(objects);
        let selector = crate::inventory::ship_selector(environment);
        let (mut live, mut held) = (Live::new(), HashMap::new());
        let read = |e: kube::Error| ApplyError::Read(api_message(&e));
        for (api_version, kind, namespace) in groups {
            let entry = InventoryEntry {
                api_version: api_version.clone(),
                kind: kind.clone(),
                namespace,
                name: String::new(),
            };
            let Some(api) = self.api_for(client, &entry).await? else {
                continue;
            };
            let group = gvk_of(&api_version, &kind).group;
            let key_of = |meta: &kube::api::ObjectMeta| {
                (
                    group.clone(),
                    kind.clone(),
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                )
            };
            let mut params = kube::api::ListParams::default()
                .labels(&selector)
                .limit(LIST_PAGE);
            loop {
                let next = if bodies {
                    let page = api.list(&params).await.map_err(read)?;
                    for mut item in page.items {
                        let key = key_of(&item.metadata);
                        let managed_fields = item.metadata.managed_fields.take();
                        // The body as the manifest is compared with it: managedFields aside
                        // (no manifest sets them; they are most of a small object's bytes).
                        held.insert(key.clone(), serde_json::to_value(&item).unwrap_or_default());
                        item.metadata.managed_fields = managed_fields;
                        live.insert(key, crate::changes::decided_on(item.metadata));
                    }
                    page.metadata.continue_
                } else {
                    let page = api.list_metadata(&params).await.map_err(read)?;
                    for item in page.items {
                        live.insert(key_of(&item.metadata), crate::changes::decided_on(item.metadata));
                    }
                    page.metadata.continue_
                };
                match next.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok((live, held))
    }

    /// Hands the fields at `paths` of `object` (prepared) over to the
    /// [`ship_api::HANDOVER_FIELD_MANAGER`]: applies their live values under it, so that Ship's
    /// next apply, without them, leaves them in place (the API server removes a field when its
    /// last manager stops applying it). Kubernetes' documented way to pass a field to another
    /// writer, such as an autoscaler.
    pub async fn hand_over(
        &self,
        client: &Client,
        object: &Value,
        paths: &[Vec<String>],
    ) -> Result<(), ApplyError> {
        let entry = entry_of(object);
        let Some(api) = self.api_for(client, &entry).await? else {
            return Ok(());
        };
        let live = match api.get_opt(&entry.name).await {
            Ok(Some(live)) => serde_json::to_value(&live).unwrap_or_default(),
            Ok(None) => return Ok(()),
            Err(err) => return Err(ApplyError::Read(api_message(&err))),
        };
        let mut patch = serde_json::json!({
            "apiVersion": entry.api_version,
            "kind": entry.kind,
            "metadata": {"name": entry.name},
        });
        if !entry.namespace.is_empty() {
            patch["metadata"]["namespace"] = Value::String(entry.namespace.clone());
        }
        for path in paths {
            let Some(value) = crate::changes::value_at(&live, path) else {
                continue;
            };
            crate::changes::set_at(&mut patch, path, value.clone());
        }
        api.patch(
            &entry.name,
            &PatchParams::apply(ship_api::HANDOVER_FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
        .map(drop)
        .map_err(|e| ApplyError::Apply {
            object: entry.to_string(),
            message: format!("handing fields over: {}", api_message(&e)),
            code: api_code(&e),
        })
    }

    /// The resolved kinds of `objects`, with each namespace they are in: what a watch of them
    /// needs. Kinds the cluster does not serve are left out.
    pub async fn resources_of(&self, client: &Client, objects: &[Value]) -> Vec<(ApiResource, bool, String)> {
        let groups = crate::inventory::groups_of(objects);
        let mut resolved = Vec::new();
        for (api_version, kind, namespace) in groups {
            if let Ok(Some((resource, namespaced))) = self.resolve(client, &api_version, &kind).await {
                resolved.push((resource, namespaced, namespace));
            }
        }
        resolved
    }

    /// Resolves `api_version`/`kind` to its resource and whether it is namespaced.
    pub async fn resolve(
        &self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, bool)>, ApplyError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(Some(found));
        }
        match kube::discovery::pinned_kind(client, &gvk_of(api_version, kind)).await {
            Ok((resource, caps)) => {
                let found = (resource, caps.scope == Scope::Namespaced);
                if let Ok(mut kinds) = self.kinds.lock() {
                    kinds.insert(key, found.clone());
                }
                Ok(Some(found))
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(err) => Err(ApplyError::Read(err.to_string())),
        }
    }

    fn forget_group(&self, group: &str) {
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.retain(|(api_version, _), _| gvk_of(api_version, "").group != group);
        }
    }

    async fn api_for(
        &self,
        client: &Client,
        entry: &InventoryEntry,
    ) -> Result<Option<Api<DynamicObject>>, ApplyError> {
        let Some((resource, namespaced)) = self.resolve(client, &entry.api_version, &entry.kind).await?
        else {
            return Ok(None);
        };
        Ok(Some(if namespaced {
            Api::namespaced_with(client.clone(), &entry.namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        }))
    }

    /// Creates the environment's namespace when it does not exist, labelled as Ship's for
    /// `environment`, so that an environment whose manifests declare no Namespace deploys on its
    /// first push. An existing namespace is left exactly as it is. Returns whether it was made.
    pub async fn ensure_namespace(
        &self,
        client: &Client,
        namespace: &str,
        environment: &str,
    ) -> Result<bool, ApplyError> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        match namespaces.get_opt(namespace).await {
            Ok(Some(_)) => return Ok(false),
            Ok(None) => {}
            // Not allowed to manage namespaces (the chart without manageNamespaces): the dry
            // run says what is missing, if anything is.
            Err(kube::Error::Api(e)) if e.code == 403 => return Ok(false),
            Err(err) => return Err(ApplyError::Read(api_message(&err))),
        }
        let labels = crate::inventory::ship_labels(environment);
        let object = k8s_openapi::api::core::v1::Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(namespace.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces
            .create(&kube::api::PostParams::default(), &object)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(false), // made meanwhile, or not ours to make
            Err(err) => Err(ApplyError::Apply {
                object: format!("Namespace/{namespace}"),
                message: api_message(&err),
                code: api_code(&err),
            }),
        }
    }

    /// A server-side dry run of every object. An object whose Namespace or CRD is part of the
    /// same set cannot be dry-run before that is applied; such objects are let through (the apply
    /// itself still checks them).
    pub async fn dry_run<O: Borrow<Value> + Sync>(
        &self,
        client: &Client,
        objects: &[O],
    ) -> Result<(), ApplyError> {
        let created_namespaces: HashSet<&str> = objects
            .iter()
            .map(Borrow::borrow)
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace"))
            .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        let created_kinds: HashSet<(&str, &str)> = objects
            .iter()
            .map(Borrow::borrow)
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
            .filter_map(|o| {
                Some((
                    o.pointer("/spec/group")?.as_str()?,
                    o.pointer("/spec/names/kind")?.as_str()?,
                ))
            })
            .collect();
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        // A handful at a time: fast on a large set, gentle on the API server. Each request is
        // made when its turn comes: thousands of request futures made up front would hold
        // their state (KiBs each) at once.
        // (A loop, not an iterator adapter: a closure making the futures, held across an await,
        // trips rustc's "Send is not general enough", rust-lang/rust#102211.)
        let mut results = Vec::with_capacity(objects.len());
        let (mut running, mut next) = (FuturesOrdered::new(), 0);
        loop {
            while running.len() < self.in_flight && next < objects.len() {
                running.push_back(self.dry_run_one(
                    client,
                    objects[next].borrow(),
                    &params,
                    &created_namespaces,
                    &created_kinds,
                ));
                next += 1;
            }
            match running.next().await {
                Some(result) => results.push(result),
                None => break,
            }
        }
        results.into_iter().collect()
    }

    async fn dry_run_one(
        &self,
        client: &Client,
        object: &Value,
        params: &PatchParams,
        created_namespaces: &HashSet<&str>,
        created_kinds: &HashSet<(&str, &str)>,
    ) -> Result<(), ApplyError> {
        let entry = entry_of(object);
        let Some(api) = self.api_for(client, &entry).await? else {
            let group = gvk_of(&entry.api_version, &entry.kind).group;
            if created_kinds.contains(&(group.as_str(), entry.kind.as_str())) {
                return Ok(());
            }
            return Err(ApplyError::UnknownKind {
                object: entry.to_string(),
                api_version: entry.api_version,
                kind: entry.kind,
            });
        };
        match api.patch(&entry.name, params, &Patch::Apply(object)).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) && created_namespaces.contains(entry.namespace.as_str()) => Ok(()),
            // Refused for what an old API server leaves of a probe the commit removed: the apply
            // removes it first (crate::orphans), which a dry run cannot show. The apply itself
            // still checks the object.
            Err(err)
                if api_code(&err) == Some(422)
                    && !self.orphans_of(&api, &entry, object).await?.is_empty() =>
            {
                Ok(())
            }
            Err(err) => Err(ApplyError::DryRun {
                object: entry.to_string(),
                message: api_message(&err),
                code: api_code(&err),
            }),
        }
    }

    /// Server-side applies `objects` in order (Namespaces and CRDs first, each CRD awaited until
    /// established). Given the live metadata read before (`before`), objects whose live state
    /// the apply changed are counted as drifted.
    pub async fn apply<O: Borrow<Value> + Sync>(
        &self,
        client: &Client,
        objects: &[O],
        before: Option<&Live>,
    ) -> Result<Applied, ApplyError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut applied = Applied::default();
        // Objects of one rank have no order among themselves: apply them concurrently.
        let mut start = 0;
        while start < objects.len() {
            let rank = crate::inventory::apply_rank(objects[start].borrow());
            let end = objects[start..]
                .iter()
                .position(|o| crate::inventory::apply_rank(o.borrow()) != rank)
                .map_or(objects.len(), |n| start + n);
            let batch = &objects[start..end];
            // Made as their turn comes, as the dry run's.
            let mut results = Vec::with_capacity(batch.len());
            let (mut running, mut next) = (FuturesOrdered::new(), 0);
            loop {
                while running.len() < self.in_flight && next < batch.len() {
                    let object: &Value = batch[next].borrow();
                    let was = before.map(|live| {
                        live.get(&crate::changes::key_of(object))
                            .and_then(|meta| meta.resource_version.clone())
                    });
                    running.push_back(self.apply_one(client, object, &params, was));
                    next += 1;
                }
                match running.next().await {
                    Some(result) => results.push(result),
                    None => break,
                }
            }
            for changed in results {
                applied.objects += 1;
                applied.drifted += usize::from(changed?);
            }
            for crd in batch.iter().map(Borrow::borrow).filter(|o: &&Value| {
                o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
            }) {
                self.await_crd(client, crd).await?;
            }
            start = end;
        }
        Ok(applied)
    }

    /// Applies one object; with `was` (its resourceVersion before, `Some(None)`: it did not
    /// exist), whether the apply changed it.
    async fn apply_one(
        &self,
        client: &Client,
        object: &Value,
        params: &PatchParams,
        was: Option<Option<String>>,
    ) -> Result<bool, ApplyError> {
        let entry = entry_of(object);
        let api = self
            .api_for(client, &entry)
            .await?
            .ok_or_else(|| ApplyError::UnknownKind {
                object: entry.to_string(),
                api_version: entry.api_version.clone(),
                kind: entry.kind.clone(),
            })?;
        let refused = |e: kube::Error| ApplyError::Apply {
            object: entry.to_string(),
            message: api_message(&e),
            code: api_code(&e),
        };
        let after = match api.patch(&entry.name, params, &Patch::Apply(object)).await {
            Ok(after) => after,
            // An old API server refuses what it left of a probe the commit dropped: remove it
            // and apply again (crate::orphans). Costs nothing on the usual path.
            Err(err) if api_code(&err) == Some(422) && self.remove_orphans(&api, &entry, object).await? => {
                api.patch(&entry.name, params, &Patch::Apply(object))
                    .await
                    .map_err(refused)?
            }
            Err(err) => return Err(refused(err)),
        };
        Ok(was.is_some_and(|before| before != after.metadata.resource_version))
    }

    /// The probes Ship's apply set in the live object that `object` no longer has
    /// ([`crate::orphans`]); none for kinds without a Pod template, or an object not there yet.
    async fn orphans_of(
        &self,
        api: &Api<DynamicObject>,
        entry: &InventoryEntry,
        object: &Value,
    ) -> Result<Vec<crate::orphans::Orphan>, ApplyError> {
        if crate::orphans::pod_spec_path(&entry.kind).is_none() {
            return Ok(Vec::new());
        }
        let Some(live) = api
            .get_opt(&entry.name)
            .await
            .map_err(|e| ApplyError::Read(api_message(&e)))?
        else {
            return Ok(Vec::new());
        };
        let live = serde_json::to_value(&live).unwrap_or_default();
        Ok(crate::orphans::orphans(&live, object, FIELD_MANAGER))
    }

    /// Removes the orphaned probes of `object` with a strategic merge patch, after an old API
    /// server refused the apply that left their defaulted fields behind. Whether there were any.
    async fn remove_orphans(
        &self,
        api: &Api<DynamicObject>,
        entry: &InventoryEntry,
        object: &Value,
    ) -> Result<bool, ApplyError> {
        let orphans = self.orphans_of(api, entry, object).await?;
        let Some(patch) = crate::orphans::removal_patch(&entry.kind, &orphans) else {
            return Ok(false);
        };
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(&entry.name, &params, &Patch::Strategic(patch))
            .await
            .map_err(|e| ApplyError::Apply {
                object: entry.to_string(),
                message: api_message(&e),
                code: api_code(&e),
            })?;
        Ok(true)
    }

    async fn await_crd(&self, client: &Client, crd: &Value) -> Result<(), ApplyError> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        // kube-runtime's wait watches the one CRD and returns when it is established.
        let established = kube::runtime::wait::await_condition(
            api,
            name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        match tokio::time::timeout(Duration::from_secs(30), established).await {
            Ok(Ok(_)) => {
                if let Some(group) = crd.pointer("/spec/group").and_then(Value::as_str) {
                    self.forget_group(group);
                }
                Ok(())
            }
            Ok(Err(err)) => Err(ApplyError::Read(format!(
                "watching CustomResourceDefinition {name}: {err}"
            ))),
            Err(_elapsed) => Err(ApplyError::CrdNotEstablished(name.to_owned())),
        }
    }

    /// Deletes the `entries` that [`prune_verdict`] lets go, for `environment` whose namespace is
    /// `environment_namespace`; leaves the rest. Returns how many were deleted and what was
    /// refused, with why.
    pub async fn prune(
        &self,
        client: &Client,
        entries: &[InventoryEntry],
        environment: &str,
        environment_namespace: &str,
    ) -> Result<(usize, Vec<PruneRefusal>), ApplyError> {
        let mut deleted = 0;
        let mut refused = Vec::new();
        for entry in entries {
            let Some(api) = self.api_for(client, entry).await? else {
                continue; // Its kind is gone (a pruned CRD): nothing left to delete.
            };
            let live = match api.get_opt(&entry.name).await {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(err) => return Err(ApplyError::Read(api_message(&err))),
            };
            let live = serde_json::to_value(&live).unwrap_or_default();
            let marked_enabled = crate::prune::prune_mark(&live) == Some(keys::PRUNE_ENABLED);
            // Only a Namespace git lets go is searched for what others keep in it.
            let unowned =
                if entry.kind == "Namespace" && marked_enabled && entry.name != environment_namespace {
                    self.first_unowned_in(client, &entry.name, environment).await?
                } else {
                    None
                };
            match prune_verdict(
                entry,
                &live,
                environment,
                environment_namespace,
                unowned.as_deref(),
            ) {
                PruneVerdict::NotOwned => {
                    tracing::warn!(object = %entry, "not pruned: it no longer carries Ship's labels");
                    continue;
                }
                PruneVerdict::Refuse(reason) => {
                    tracing::warn!(object = %entry, reason, "not pruned");
                    refused.push(PruneRefusal {
                        object: entry.to_string(),
                        reason,
                    });
                    continue;
                }
                PruneVerdict::Delete => {}
            }
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&entry.name, &params).await {
                Ok(_) => deleted += 1,
                Err(err) if is_not_found(&err) => {}
                Err(err) => {
                    return Err(ApplyError::Prune {
                        object: entry.to_string(),
                        message: api_message(&err),
                        code: api_code(&err),
                    });
                }
            }
        }
        Ok((deleted, refused))
    }

    /// The first object in `namespace` that neither Ship (for `environment`) nor Kubernetes
    /// itself made: what deleting the namespace would destroy. Objects with an owner go with
    /// their owner; Events, the `default` ServiceAccount, ServiceAccount token Secrets and the
    /// `kube-root-ca.crt` ConfigMap are made by Kubernetes in every namespace.
    async fn first_unowned_in(
        &self,
        client: &Client,
        namespace: &str,
        environment: &str,
    ) -> Result<Option<String>, ApplyError> {
        let discovery = kube::discovery::Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| ApplyError::Read(format!("discovery: {e}")))?;
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                let listable = caps.supports_operation(kube::discovery::verbs::LIST);
                if caps.scope != Scope::Namespaced || !listable || resource.kind == "Event" {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
                let list = match api.list(&kube::api::ListParams::default().limit(500)).await {
                    Ok(list) => list,
                    // Not allowed to look: assume the worst, the namespace holds something.
                    Err(_) => return Ok(Some(format!("{} (cannot be listed)", resource.plural))),
                };
                for item in list.items {
                    let value = serde_json::to_value(&item).unwrap_or_default();
                    if !crate::prune::made_by_kubernetes_or_ship(&resource.kind, &value, environment) {
                        let name = item.metadata.name.unwrap_or_default();
                        return Ok(Some(format!("{}/{namespace}/{name}", resource.kind)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Waits, by watching, until every object in `inventory` is healthy. Returns `Ok(Ok(()))`
    /// when healthy, `Ok(Err(message))` when one failed for good or the deadline passed.
    pub async fn wait_healthy(
        &self,
        client: &Client,
        inventory: &[InventoryEntry],
        environment: &str,
        deadline: Instant,
    ) -> Result<Result<(), HealthFailure>, ApplyError> {
        // One watch per (kind, namespace), narrowed to the environment's objects by label; and
        // where workloads roll out, their Pods and ReplicaSets (which carry no Ship label), so a
        // Pod stuck in CrashLoopBackOff or without its image fails the rollout at once.
        let mut groups: BTreeSet<(String, String, String)> = inventory
            .iter()
            .map(|e| (e.api_version.clone(), e.kind.clone(), e.namespace.clone()))
            .collect();
        let labelled: BTreeSet<(String, String, String)> = groups.clone();
        // EndpointSlices where the API server serves them (1.21 and later), else v1 Endpoints.
        let endpoints_kind = if inventory.iter().any(is_service)
            && self
                .resolve(client, "discovery.k8s.io/v1", "EndpointSlice")
                .await?
                .is_some()
        {
            ("discovery.k8s.io/v1", "EndpointSlice")
        } else {
            ("v1", "Endpoints")
        };
        for entry in inventory.iter().filter(|e| crate::health::judges_pods(&e.kind)) {
            groups.insert(("v1".into(), "Pod".into(), entry.namespace.clone()));
            groups.insert(("apps/v1".into(), "ReplicaSet".into(), entry.namespace.clone()));
            // A Service in front of a workload waits for the new Pods' endpoints.
            if inventory
                .iter()
                .any(|e| is_service(e) && e.namespace == entry.namespace)
            {
                groups.insert((
                    endpoints_kind.0.into(),
                    endpoints_kind.1.into(),
                    entry.namespace.clone(),
                ));
            }
        }
        let groups: Vec<(String, String, String)> = groups.into_iter().collect();
        let mut streams = Vec::new();
        for (index, group) in groups.iter().enumerate() {
            let (api_version, kind, namespace) = group;
            let probe = InventoryEntry {
                api_version: api_version.clone(),
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: String::new(),
            };
            let Some(api) = self.api_for(client, &probe).await? else {
                return Err(ApplyError::UnknownKind {
                    object: probe.to_string(),
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                });
            };
            let config = if labelled.contains(group) {
                watcher::Config::default().labels(&format!("{}={environment}", keys::ENVIRONMENT))
            } else {
                watcher::Config::default()
            };
            // With backoff: a watch that keeps failing (an API server refusing or gone) is
            // retried with growing delays until the deadline, not in a tight loop.
            let events = watcher(api, config)
                .default_backoff()
                .map(move |event| (index, event));
            streams.push(events.boxed());
        }
        let mut events = stream::select_all(streams);
        let mut live: HashMap<(String, String, String), Value> = HashMap::new();
        let mut synced: HashSet<usize> = HashSet::new();
        let group_count = groups.len();
        let mut last = String::from("no object reported yet");
        loop {
            if synced.len() == group_count {
                match evaluate(inventory, &live) {
                    Health::Healthy => return Ok(Ok(())),
                    Health::Failed(message) => return Ok(Err(HealthFailure::Failed(message))),
                    Health::Progressing(message) => last = message,
                }
            }
            let next = tokio::select! {
                next = events.next() => next,
                () = tokio::time::sleep_until(deadline) => return Ok(Err(HealthFailure::Timeout(last))),
            };
            let Some((index, event)) = next else {
                return Err(ApplyError::Read("the health watch ended".into()));
            };
            // List items come without apiVersion and kind: key them by the watch's kind.
            let group_kind = &groups[index].1;
            let key = |o: &DynamicObject| {
                let mut v = serde_json::to_value(o).unwrap_or_default();
                crate::health::slim(&mut v);
                if let Some(map) = v.as_object_mut() {
                    map.insert("kind".into(), Value::String(group_kind.clone()));
                }
                let e = entry_of(&v);
                ((e.kind, e.namespace, e.name), v)
            };
            match event {
                Ok(watcher::Event::Init) => {
                    // A relist: forget what this watch reported before.
                    let (_, group_kind, group_namespace) = &groups[index];
                    live.retain(|(kind, namespace, _), _| kind != group_kind || namespace != group_namespace);
                }
                Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) => {
                    let (k, v) = key(&o);
                    live.insert(k, v);
                }
                Ok(watcher::Event::Delete(o)) => {
                    live.remove(&key(&o).0);
                }
                Ok(watcher::Event::InitDone) => {
                    synced.insert(index);
                }
                // The watcher retries with backoff; a lasting failure ends at the deadline.
                Err(err) => last = format!("watch error: {err}"),
            }
        }
    }
}

/// Why a rollout is not healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthFailure {
    /// The deadline passed; the message says what was still awaited.
    Timeout(String),
    /// An object failed for good.
    Failed(String),
}

fn is_service(entry: &InventoryEntry) -> bool {
    entry.kind == "Service" && entry.api_version == "v1"
}

/// The health of a whole inventory given the live objects: the first failure, else the first
/// object still progressing, else healthy.
pub fn evaluate(inventory: &[InventoryEntry], live: &HashMap<(String, String, String), Value>) -> Health {
    let mut progressing = None;
    let in_namespace = |kind: &str, namespace: &str| -> Vec<&Value> {
        live.iter()
            .filter(|((k, ns, _), _)| k == kind && ns == namespace)
            .map(|(_, v)| v)
            .collect()
    };
    for entry in inventory {
        let key = (entry.kind.clone(), entry.namespace.clone(), entry.name.clone());
        let Some(object) = live.get(&key) else {
            progressing.get_or_insert_with(|| format!("{entry}: not found"));
            continue;
        };
        let health = match assess(object) {
            Health::Healthy if is_service(entry) => {
                let workloads: Vec<&Value> = inventory
                    .iter()
                    .filter(|e| crate::health::judges_pods(&e.kind) && e.namespace == entry.namespace)
                    .filter_map(|e| live.get(&(e.kind.clone(), e.namespace.clone(), e.name.clone())))
                    .collect();
                let endpoints = live
                    .get(&("Endpoints".into(), entry.namespace.clone(), entry.name.clone()))
                    .cloned()
                    .or_else(|| {
                        let slices = in_namespace("EndpointSlice", &entry.namespace);
                        crate::health::endpoints_from_slices(&slices, &entry.name)
                    });
                let pods = in_namespace("Pod", &entry.namespace);
                let replicasets = in_namespace("ReplicaSet", &entry.namespace);
                crate::health::service_endpoints(object, endpoints.as_ref(), &workloads, &pods, &replicasets)
                    .unwrap_or(Health::Healthy)
            }
            other => other,
        };
        match health {
            Health::Healthy => {}
            Health::Failed(message) => return Health::Failed(format!("{entry}: {message}")),
            Health::Progressing(message) => {
                if crate::health::judges_pods(&entry.kind) {
                    let pods = in_namespace("Pod", &entry.namespace);
                    let replicasets = in_namespace("ReplicaSet", &entry.namespace);
                    if let Some(stuck) = crate::health::stuck_pod(object, &pods, &replicasets) {
                        return Health::Failed(format!("{entry}: {stuck}"));
                    }
                }
                progressing.get_or_insert_with(|| format!("{entry}: {message}"));
            }
        }
    }
    progressing.map_or(Health::Healthy, Health::Progressing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_service_in_front_of_the_release_s_deployment_waits_for_its_endpoints() {
        let entry = |api_version: &str, kind: &str| InventoryEntry {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: "shop".into(),
            name: "web".into(),
        };
        let inventory = [entry("apps/v1", "Deployment"), entry("v1", "Service")];
        let deployment = json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "d", "generation": 1,
            "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}});
        let service =
            json!({"kind": "Service", "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}});
        let key = |kind: &str, name: &str| (kind.to_owned(), "shop".to_owned(), name.to_owned());
        let mut live = HashMap::from([
            (key("Deployment", "web"), deployment),
            (key("Service", "web"), service),
            (
                key("ReplicaSet", "web-1"),
                json!({"metadata": {"uid": "rs1", "ownerReferences": [{"uid": "d"}],
                       "annotations": {"deployment.kubernetes.io/revision": "1"}}}),
            ),
            (
                key("Pod", "web-1-a"),
                json!({"metadata": {"name": "web-1-a", "ownerReferences": [{"uid": "rs1"}]}}),
            ),
        ]);
        assert_eq!(
            evaluate(&inventory, &live),
            Health::Progressing("Service/shop/web: no ready endpoints yet".into())
        );
        // From 1.21: the Service's EndpointSlices (another Service's slice counts for nothing,
        // an endpoint marked unready neither).
        let slice = |service: &str, ready: bool| {
            json!({"kind": "EndpointSlice", "metadata": {"labels": {"kubernetes.io/service-name": service}},
                   "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": ready},
                                  "targetRef": {"kind": "Pod", "name": "web-1-a"}}]})
        };
        let mut sliced = live.clone();
        sliced.insert(key("EndpointSlice", "other-x1"), slice("other", true));
        sliced.insert(key("EndpointSlice", "web-x2"), slice("web", false));
        assert_eq!(
            evaluate(&inventory, &sliced),
            Health::Progressing("Service/shop/web: no ready endpoints yet".into())
        );
        sliced.insert(key("EndpointSlice", "web-x2"), slice("web", true));
        assert_eq!(evaluate(&inventory, &sliced), Health::Healthy);
        // 1.20: v1 Endpoints.
        live.insert(
            key("Endpoints", "web"),
            json!({"subsets": [{"addresses": [{"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "web-1-a"}}]}]}),
        );
        assert_eq!(evaluate(&inventory, &live), Health::Healthy);
    }
}

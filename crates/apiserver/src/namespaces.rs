//! Namespaces that exist from the start, and the clean-up of deleted ones.
//!
//! Deleting a namespace marks it `Terminating` (its `kubernetes` finalizer keeps it in the
//! store). The cleaner then deletes everything in it through the same delete path clients use
//! (so pods on a node still stop gracefully), and once nothing is left, drops the finalizer
//! and removes the namespace. It runs when woken by a namespace delete, and every few seconds
//! so that a clean-up interrupted by a restart resumes.
//!
//! Every namespaced write checks that its namespace exists and is not being deleted.
//! [`ActiveNamespaces`] remembers the namespaces found active, so that a stream of creates into
//! one namespace does not read that namespace from the store (a read transaction) each time.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use hollow_store::Precondition;
use hollow_types::{RESOURCES, ResourceInfo};
use serde_json::{Value, json};

use crate::State;
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::handlers::{DeleteOptions, delete_one, list_records};
use crate::object::{self, deletion_encoder, stamping_encoder};
use crate::request::ResourcePath;
use crate::strategy;

/// The namespaces a cluster has from the start.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces known to exist and not to be terminating.
///
/// Every write to a namespace object (a delete mark, a finalize, an update) forgets them all
/// once it has been committed ([`ActiveNamespaces::forget_all`]). A check that read the store
/// before such a write must not put its stale answer back afterwards, so each check notes the
/// epoch before it reads the store and [`ActiveNamespaces::remember`] refuses a name when the
/// epoch has moved since. Only this API server's writes are seen: another writer of the same
/// store (there is none in hollow) would have to go through an API server too.
#[derive(Default)]
pub struct ActiveNamespaces {
    known: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    epoch: u64,
    names: HashSet<String>,
}

impl ActiveNamespaces {
    /// More namespaces than this and the set starts over, so it cannot grow without bound.
    const LIMIT: usize = 4096;

    /// Whether `name` was found active and no namespace was written since.
    pub fn contains(&self, name: &str) -> bool {
        self.lock().names.contains(name)
    }

    /// The epoch to hand to [`ActiveNamespaces::remember`]; read it before reading the store.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Remembers that `name` was found active by a read that started at `epoch`.
    pub fn remember(&self, name: &str, epoch: u64) {
        let mut known = self.lock();
        if known.epoch != epoch {
            return;
        }
        if known.names.len() >= Self::LIMIT {
            known.names.clear();
        }
        known.names.insert(name.to_owned());
    }

    /// Called after every committed (or attempted) write to a namespace object.
    pub fn forget_all(&self) {
        let mut known = self.lock();
        known.epoch += 1;
        known.names.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // The set holds no invariant a panic could break half-way.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn namespaces() -> &'static ResourceInfo {
    ResourceInfo::find("", "namespaces").expect("namespaces are served")
}

/// Creates the default namespaces that are missing.
pub async fn ensure_defaults(state: &State) -> ApiResult<()> {
    for name in DEFAULT_NAMESPACES {
        let key = namespaces().key(None, name);
        if state.store.get(&key)?.is_some() {
            continue;
        }
        let mut object =
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}});
        strategy::prepare_for_create(namespaces(), &mut object, object::new_uid());
        match state.store.create(key, stamping_encoder(object)).await {
            Ok(_) | Err(hollow_store::Error::AlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Runs forever: finishes the deletion of terminating namespaces.
pub async fn run_cleaner(state: State) {
    loop {
        if let Err(error) = clean_once(&state).await {
            tracing::warn!(%error, "namespace clean-up failed; will retry");
        }
        tokio::select! {
            _ = state.namespace_deleted.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// One pass over every terminating namespace.
pub async fn clean_once(state: &State) -> ApiResult<()> {
    let listing = list_records(
        state,
        &namespaces().key_prefix(),
        &Filter::default(),
        None,
        None,
    )?;
    for record in listing.records {
        let namespace = object::from_record(&record)?;
        if namespace.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let name = object::name(&namespace).unwrap_or_default().to_string();
        if delete_contents(state, &name).await? {
            finish(state, &name).await?;
        }
    }
    Ok(())
}

/// Deletes what is in a namespace; true once it is empty.
async fn delete_contents(state: &State, namespace: &str) -> ApiResult<bool> {
    let mut empty = true;
    let options = DeleteOptions::default();
    for resource in RESOURCES.iter().filter(|resource| resource.is_namespaced()) {
        let listing = list_records(
            state,
            &resource.namespace_prefix(Some(namespace)),
            &Filter::default(),
            None,
            None,
        )?;
        for record in listing.records {
            empty = false;
            let object = object::from_record(&record)?;
            if object.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let path = ResourcePath {
                resource,
                namespace: Some(namespace.to_string()),
                name: object::name(&object).map(str::to_string),
                subresource: None,
                legacy_watch: false,
            };
            match delete_one(state, &path, &options).await {
                Ok(_) => {}
                Err(error) if error.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(empty)
}

/// Drops the namespace's finalizer and removes it.
async fn finish(state: &State, name: &str) -> ApiResult<()> {
    let key = namespaces().key(None, name);
    loop {
        let Some(current) = state.store.get(&key)? else {
            return Ok(());
        };
        let object = object::from_record(&current)?;
        let other_finalizers = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|items| !items.is_empty());
        let precondition = Precondition::ModRevision(current.mod_revision);
        let outcome = if other_finalizers {
            let mut finalized = object.clone();
            finalized["spec"]["finalizers"] = json!([]);
            state
                .store
                .update(key.clone(), precondition, stamping_encoder(finalized))
                .await
        } else {
            state
                .store
                .delete(key.clone(), precondition, deletion_encoder())
                .await
        };
        state.active_namespaces.forget_all();
        match outcome {
            Ok(_) | Err(hollow_store::Error::NotFound(_)) => return Ok(()),
            Err(hollow_store::Error::Conflict { .. }) => continue,
            Err(error) => return Err(ApiError::from(error)),
        }
    }
}

/// Marks the ClusterIPs and node ports of every stored Service as used (start-up).
pub fn rebuild_allocations(state: &State) -> ApiResult<()> {
    let services = ResourceInfo::find("", "services").expect("services are served");
    let listing = list_records(
        state,
        &services.key_prefix(),
        &Filter::default(),
        None,
        None,
    )?;
    for record in listing.records {
        let service = object::from_record(&record)?;
        state
            .allocators
            .mark_used(&crate::allocator::ServiceAllocations::of(&service));
    }
    Ok(())
}

/// The `kubernetes` service in `default`: the first address of the service range, with the API
/// server as its one endpoint (kept current when the server's address changes).
pub async fn ensure_kubernetes_service(
    state: &State,
    address: std::net::SocketAddr,
) -> ApiResult<()> {
    let services = ResourceInfo::find("", "services").expect("services are served");
    let query = crate::request::QueryOptions::default();
    let service_path = ResourcePath {
        resource: services,
        namespace: Some("default".into()),
        name: None,
        subresource: None,
        legacy_watch: false,
    };
    if state
        .store
        .get(&services.key(Some("default"), "kubernetes"))?
        .is_none()
    {
        let service = json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": state.allocators.kubernetes_service_ip().to_string(),
                "ports": [{"name": "http", "port": address.port(), "protocol": "TCP", "targetPort": address.port()}],
            },
        });
        match crate::handlers::create_object(state, &service_path, &query, service).await {
            Ok(_) => {}
            Err(error) if error.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let ip = address.ip().to_string();
    let port = address.port();
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes",
            "endpointslice.kubernetes.io/managed-by": "hollow-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    });
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}],
    });
    for (group, plural, body, field) in [
        ("discovery.k8s.io", "endpointslices", slice, "endpoints"),
        ("", "endpoints", endpoints, "subsets"),
    ] {
        let resource = ResourceInfo::find(group, plural).expect("served");
        let key = resource.key(Some("default"), "kubernetes");
        let path = ResourcePath {
            resource,
            namespace: Some("default".into()),
            name: None,
            subresource: None,
            legacy_watch: false,
        };
        match state.store.get(&key)? {
            None => match crate::handlers::create_object(state, &path, &query, body).await {
                Ok(_) => {}
                Err(error) if error.code == 409 => {}
                Err(error) => return Err(error),
            },
            Some(record) => {
                let mut current = object::from_record(&record)?;
                if current.get(field) != body.get(field)
                    || current.get("ports") != body.get("ports")
                {
                    current[field] = body[field].clone();
                    if let Some(ports) = body.get("ports") {
                        current["ports"] = ports.clone();
                    }
                    match state
                        .store
                        .update(
                            key,
                            Precondition::ModRevision(record.mod_revision),
                            stamping_encoder(current),
                        )
                        .await
                    {
                        Ok(_) | Err(hollow_store::Error::Conflict { .. }) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_that_straddles_a_namespace_write_is_not_remembered() {
        let active = ActiveNamespaces::default();
        active.remember("a", active.epoch());
        assert!(active.contains("a"));
        let started = active.epoch();
        // A namespace write commits while the check reads the store.
        active.forget_all();
        active.remember("b", started);
        assert!(!active.contains("a"), "a write forgets every namespace");
        assert!(
            !active.contains("b"),
            "a read from before the write is stale"
        );
        active.remember("b", active.epoch());
        assert!(active.contains("b"));
    }
}

//! The API side: list/watch Services, EndpointSlices, Namespaces (and Pods in verified mode)
//! and keep the served snapshot current through a [`LiveZone`].
//!
//! Data flow: one watcher task per kind trims each object to the fields DNS reads (the rest,
//! managedFields above all, would dominate resident memory) and sends it down one channel.
//! The update loop waits for the first complete list of every kind (until then the server
//! answers SERVFAIL in the zone), builds the zone in full, publishes, and from then on takes
//! whatever events are queued — all of them, without waiting for more — applies them to the
//! zone and publishes once. A burst that arrives while an update runs is therefore one update,
//! and a lone change is published as soon as it is read: there is no debounce delay.
//!
//! When the API server goes away the watchers retry with backoff while the zone, and so the
//! served snapshot, keeps the last good data. A relist after reconnecting replaces that kind's
//! objects and rebuilds the zone in full (on a blocking thread, as it takes about a second on
//! a cluster of 10,000 services).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodStatus, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::live::{Kind, LiveZone, Object};
use crate::records::{PodMode, SERVICE_NAME_LABEL, TOLERATE_UNREADY_ANNOTATION};
use crate::server::DnsServer;
use crate::snapshot::Snapshot;
use crate::{DnsConfig, Error};

/// What the watcher tasks report to the update loop.
enum Update {
    Applied(Object),
    Deleted(Object),
    /// A complete list of one kind (the first sync, or a relist after reconnecting).
    Relisted(Kind, Vec<Object>),
}

fn spawn_watcher<K>(
    api: Api<K>,
    kind: Kind,
    wrap: fn(Arc<K>) -> Object,
    trim: fn(&mut K),
    updates: mpsc::UnboundedSender<Update>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut listed = Vec::new();
        while let Some(event) = stream.next().await {
            let update = match event {
                Ok(watcher::Event::Apply(object)) => Update::Applied(wrap(Arc::new(object))),
                Ok(watcher::Event::Delete(object)) => Update::Deleted(wrap(Arc::new(object))),
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(object)) => {
                    listed.push(wrap(Arc::new(object)));
                    continue;
                }
                Ok(watcher::Event::InitDone) => Update::Relisted(kind, std::mem::take(&mut listed)),
                Err(error) => {
                    tracing::warn!(?kind, %error, "watch failed; retrying");
                    continue;
                }
            };
            if updates.send(update).is_err() {
                return;
            }
        }
    })
}

/// Keeps only name and namespace (plus what `keep` picks) of an object's metadata.
fn trim_metadata(
    metadata: &mut ObjectMeta,
    keep_label: Option<&str>,
    keep_annotation: Option<&str>,
) {
    let pick = |map: Option<BTreeMap<String, String>>, key: Option<&str>| {
        let (key, value) = map?.remove_entry(key?)?;
        Some(BTreeMap::from([(key, value)]))
    };
    *metadata = ObjectMeta {
        name: metadata.name.take(),
        namespace: metadata.namespace.take(),
        deletion_timestamp: metadata.deletion_timestamp.take(),
        labels: pick(metadata.labels.take(), keep_label),
        annotations: pick(metadata.annotations.take(), keep_annotation),
        ..ObjectMeta::default()
    };
}

fn trim_service(service: &mut Service) {
    trim_metadata(
        &mut service.metadata,
        None,
        Some(TOLERATE_UNREADY_ANNOTATION),
    );
    service.status = None;
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        cluster_ip: spec.cluster_ip,
        cluster_ips: spec.cluster_ips,
        external_name: spec.external_name,
        publish_not_ready_addresses: spec.publish_not_ready_addresses,
        ports: spec.ports.map(|ports| {
            ports
                .into_iter()
                .map(|port| ServicePort {
                    name: port.name,
                    port: port.port,
                    protocol: port.protocol,
                    ..ServicePort::default()
                })
                .collect()
        }),
        ..ServiceSpec::default()
    });
}

fn trim_endpoint_slice(slice: &mut EndpointSlice) {
    trim_metadata(&mut slice.metadata, Some(SERVICE_NAME_LABEL), None);
    if let Some(endpoints) = &mut slice.endpoints {
        for endpoint in endpoints.iter_mut() {
            *endpoint = Endpoint {
                addresses: std::mem::take(&mut endpoint.addresses),
                conditions: endpoint
                    .conditions
                    .take()
                    .map(|conditions| EndpointConditions {
                        ready: conditions.ready,
                        ..EndpointConditions::default()
                    }),
                hostname: endpoint.hostname.take(),
                ..Endpoint::default()
            };
        }
        endpoints.shrink_to_fit();
    }
    if let Some(ports) = &mut slice.ports {
        for port in ports.iter_mut() {
            *port = EndpointPort {
                name: port.name.take(),
                port: port.port,
                protocol: port.protocol.take(),
                ..EndpointPort::default()
            };
        }
    }
}

fn trim_namespace(namespace: &mut Namespace) {
    trim_metadata(&mut namespace.metadata, None, None);
    namespace.spec = None;
    namespace.status = None;
}

fn trim_pod(pod: &mut Pod) {
    trim_metadata(&mut pod.metadata, None, None);
    pod.spec = None;
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        ..PodStatus::default()
    });
}

/// Runs the DNS server against the API server `client` talks to, until `shutdown` resolves:
/// binds [`DnsConfig::listen`] (SERVFAIL in the zone until the first full sync), then
/// [`watch`]es the cluster into it.
pub async fn run(
    config: DnsConfig,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let server = DnsServer::start(
        config.server_settings()?,
        Snapshot::unsynced(&config.snapshot_settings()),
    )
    .await?;
    let result = watch(&server, client, &config, shutdown).await;
    server.shutdown().await;
    result
}

/// Keeps `server` answering from the cluster `client` talks to until `shutdown` resolves.
/// The server keeps its current snapshot until every watch has listed once.
pub async fn watch(
    server: &DnsServer,
    client: kube::Client,
    config: &DnsConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (sender, mut updates) = mpsc::unbounded_channel();
    let mut tasks = vec![
        spawn_watcher(
            Api::<Service>::all(client.clone()),
            Kind::Service,
            Object::Service,
            trim_service,
            sender.clone(),
        ),
        spawn_watcher(
            Api::<EndpointSlice>::all(client.clone()),
            Kind::EndpointSlice,
            Object::EndpointSlice,
            trim_endpoint_slice,
            sender.clone(),
        ),
        spawn_watcher(
            Api::<Namespace>::all(client.clone()),
            Kind::Namespace,
            Object::Namespace,
            trim_namespace,
            sender.clone(),
        ),
    ];
    let mut unlisted = HashSet::from([Kind::Service, Kind::EndpointSlice, Kind::Namespace]);
    if config.pod_mode == PodMode::Verified {
        tasks.push(spawn_watcher(
            Api::<Pod>::all(client),
            Kind::Pod,
            Object::Pod,
            trim_pod,
            sender.clone(),
        ));
        unlisted.insert(Kind::Pod);
    }
    drop(sender);

    let mut zone = LiveZone::new(config.snapshot_settings());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let first = tokio::select! {
            update = updates.recv() => update,
            _ = &mut shutdown => break,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(update) = next {
            match update {
                Update::Applied(object) => zone.apply(object),
                Update::Deleted(object) => zone.delete(&object),
                Update::Relisted(kind, objects) => {
                    zone.replace(kind, objects);
                    unlisted.remove(&kind);
                }
            }
            next = updates.try_recv().ok();
        }
        if !unlisted.is_empty() || !zone.has_changes() {
            continue;
        }
        let (returned, published) = if zone.full_rebuild_pending() {
            let built = tokio::task::spawn_blocking(move || {
                let snapshot = publish_catching_panics(&mut zone);
                (zone, snapshot)
            })
            .await;
            match built {
                Ok(built) => built,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            }
        } else {
            let snapshot = publish_catching_panics(&mut zone);
            (zone, snapshot)
        };
        zone = returned;
        let Some(snapshot) = published else {
            // The server keeps answering from the previous snapshot; the next event retries
            // with a full rebuild, since a half-done publish leaves the bookkeeping unreliable.
            zone.request_full_rebuild();
            continue;
        };
        let published = zone.last_publish();
        if published.full {
            server.record_rebuild(published.duration);
        } else {
            server.record_update(published.duration);
        }
        let stats = snapshot.stats();
        tracing::debug!(
            full = published.full,
            names = stats.names,
            encoded = published.names_encoded,
            shards = published.shards_repacked,
            took = ?published.duration,
            "snapshot published"
        );
        server.publish(snapshot);
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Publishes `zone`, turning a panic (a bug in deriving or encoding some object) into a
/// logged error so that one bad object cannot take the DNS server down.
fn publish_catching_panics(zone: &mut LiveZone) -> Option<Snapshot> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| zone.publish())) {
        Ok(snapshot) => Some(snapshot),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_owned());
            tracing::error!(%message, "building the DNS snapshot panicked; still serving the previous one");
            None
        }
    }
}

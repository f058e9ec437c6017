//! The API side: list/watch Services, EndpointSlices, Namespaces (and Pods in verified mode)
//! with kube-runtime reflectors, and rebuild the snapshot after every burst of changes.
//!
//! Data flow: each reflector keeps its store current and pokes a [`Notify`]; the rebuild loop
//! waits for the first full list of every store (until then the server answers SERVFAIL in
//! the zone), then builds, publishes, and waits for the next poke plus a short debounce so a
//! burst of events costs one rebuild. When the API server goes away the watchers retry with
//! backoff while the stores, and so the served snapshot, keep the last good data; a relist
//! after reconnecting triggers a rebuild like any other change.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::records::{ClusterState, PodMode};
use crate::server::DnsServer;
use crate::snapshot::Snapshot;
use crate::{DnsConfig, Error};

fn spawn_reflector<K>(
    api: Api<K>,
    changed: Arc<Notify>,
    kind: &'static str,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(error) => tracing::warn!(kind, %error, "watch failed; retrying"),
            }
        }
    });
    (store, task)
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
    let snapshot_settings = config.snapshot_settings();
    let changed = Arc::new(Notify::new());
    let (services, services_task) = spawn_reflector(
        Api::<Service>::all(client.clone()),
        changed.clone(),
        "Service",
    );
    let (slices, slices_task) = spawn_reflector(
        Api::<EndpointSlice>::all(client.clone()),
        changed.clone(),
        "EndpointSlice",
    );
    let (namespaces, namespaces_task) = spawn_reflector(
        Api::<Namespace>::all(client.clone()),
        changed.clone(),
        "Namespace",
    );
    let mut tasks = vec![services_task, slices_task, namespaces_task];
    let pods = if config.pod_mode == PodMode::Verified {
        let (pods, pods_task) = spawn_reflector(Api::<Pod>::all(client), changed.clone(), "Pod");
        tasks.push(pods_task);
        Some(pods)
    } else {
        None
    };

    let mut shutdown = std::pin::pin!(shutdown);
    let synced = async {
        services.wait_until_ready().await.ok();
        slices.wait_until_ready().await.ok();
        namespaces.wait_until_ready().await.ok();
        if let Some(pods) = &pods {
            pods.wait_until_ready().await.ok();
        }
    };
    tokio::select! {
        _ = synced => {
            loop {
                let state = ClusterState {
                    services: services.state(),
                    endpoint_slices: slices.state(),
                    namespaces: namespaces.state(),
                    pods: pods.as_ref().map(Store::state).unwrap_or_default(),
                };
                let settings = snapshot_settings.clone();
                let built = tokio::task::spawn_blocking(move || Snapshot::build(&state, &settings))
                    .await;
                match built {
                    Ok(snapshot) => {
                        let stats = snapshot.stats();
                        server.record_rebuild(stats.build_duration);
                        tracing::debug!(names = stats.names, records = stats.records, took = ?stats.build_duration, "snapshot rebuilt");
                        server.publish(snapshot);
                    }
                    Err(error) => tracing::error!(%error, "snapshot build panicked; keeping the previous one"),
                }
                tokio::select! {
                    _ = changed.notified() => tokio::time::sleep(config.rebuild_debounce).await,
                    _ = &mut shutdown => break,
                }
            }
        }
        _ = &mut shutdown => {}
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

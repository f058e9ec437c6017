//! A live [`Endpoints`] snapshot of one service port, kept current by an EndpointSlice watch.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Error;
use crate::endpoints::{Endpoint, EndpointFilter, Endpoints, PortSelector};
use crate::pick::{InFlight, PowerOfTwoChoices, RoundRobin, pick_by_key};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Picks endpoints of one service port. Clones share the snapshot and pickers; each clone
/// has its own [`changed`](Self::changed) cursor. The watch stops when the last clone drops.
#[derive(Clone, Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
    updates: watch::Receiver<u64>,
}

#[derive(Debug)]
struct Shared {
    namespace: String,
    service: String,
    port: PortSelector,
    endpoints: Arc<ArcSwap<Endpoints>>,
    round_robin: RoundRobin,
    least_loaded: PowerOfTwoChoices,
    watch_task: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = &self.watch_task {
            task.abort();
        }
    }
}

impl Balancer {
    /// Watches the EndpointSlices of `namespace/service` and returns once they have been
    /// listed, so the first [`pick`](Self::pick) already sees the current endpoints.
    /// `port` is a port name (`"http"`) or a number (`"8080"`, `8080u16`); see
    /// [`PortSelector`].
    pub async fn watch(
        client: Client,
        namespace: &str,
        service: &str,
        port: impl Into<PortSelector>,
    ) -> Result<Balancer, Error> {
        Self::watch_with(client, namespace, service, EndpointFilter::tcp(port)).await
    }

    /// [`watch`](Self::watch) with every [`EndpointFilter`] setting.
    pub async fn watch_with(
        client: Client,
        namespace: &str,
        service: &str,
        filter: EndpointFilter,
    ) -> Result<Balancer, Error> {
        let (updates_sender, updates) = watch::channel(0);
        let endpoints = Arc::new(ArcSwap::from_pointee(Endpoints::default()));
        let (listed, first_listing) = oneshot::channel();
        let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
        let task = tokio::spawn(follow_slices(
            watcher::watcher(api, config),
            filter.clone(),
            Arc::clone(&endpoints),
            updates_sender,
            listed,
        ));
        match first_listing.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                task.abort();
                return Err(Error::Watch {
                    namespace: namespace.to_owned(),
                    service: service.to_owned(),
                    source,
                });
            }
            Err(_) => return Err(Error::WatchStopped),
        }
        Ok(Balancer {
            shared: Arc::new(Shared {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                port: filter.port,
                endpoints,
                round_robin: RoundRobin::new(),
                least_loaded: PowerOfTwoChoices::new(),
                watch_task: Some(task),
            }),
            updates,
        })
    }

    /// A balancer over a fixed set of endpoints, never updated: for tests and static lists.
    pub fn fixed(endpoints: Endpoints) -> Balancer {
        let (_, updates) = watch::channel(0);
        Balancer {
            shared: Arc::new(Shared {
                namespace: String::new(),
                service: String::new(),
                port: PortSelector::Number(0),
                endpoints: Arc::new(ArcSwap::from_pointee(endpoints)),
                round_robin: RoundRobin::new(),
                least_loaded: PowerOfTwoChoices::new(),
                watch_task: None,
            }),
            updates,
        }
    }

    /// The current snapshot.
    pub fn endpoints(&self) -> Arc<Endpoints> {
        self.shared.endpoints.load_full()
    }

    /// The next endpoint in round-robin order.
    pub fn pick(&self) -> Result<Endpoint, Error> {
        let endpoints = self.shared.endpoints.load();
        self.shared
            .round_robin
            .pick(&endpoints)
            .cloned()
            .ok_or_else(|| self.no_endpoints())
    }

    /// The less busy of two random endpoints; hold the guard for as long as the request runs.
    pub fn pick_least_loaded(&self) -> Result<InFlight, Error> {
        let endpoints = self.shared.endpoints.load();
        self.shared
            .least_loaded
            .pick(&endpoints)
            .ok_or_else(|| self.no_endpoints())
    }

    /// The endpoint `key` (a client address, a user id, a shard key) maps to; stable while
    /// that endpoint stays usable.
    pub fn pick_by_key<K: Hash + ?Sized>(&self, key: &K) -> Result<Endpoint, Error> {
        let endpoints = self.shared.endpoints.load();
        pick_by_key(&endpoints, key)
            .cloned()
            .ok_or_else(|| self.no_endpoints())
    }

    /// Connects over TCP to the next endpoint in round-robin order, moving on to the
    /// following ones (up to three in all) when one refuses or does not answer within
    /// `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<TcpStream, Error> {
        let attempts = self.shared.endpoints.load().usable().len().clamp(1, 3);
        let mut last_failure = None;
        for _ in 0..attempts {
            let endpoint = self.pick()?;
            let address = endpoint.address();
            let source = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(source)) => source,
                Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            };
            last_failure = Some(Error::Connect { address, source });
        }
        Err(last_failure.unwrap_or_else(|| self.no_endpoints()))
    }

    /// Waits for the endpoints to change and returns the new snapshot.
    pub async fn changed(&mut self) -> Result<Arc<Endpoints>, Error> {
        self.updates
            .changed()
            .await
            .map_err(|_| Error::WatchStopped)?;
        Ok(self.endpoints())
    }

    fn no_endpoints(&self) -> Error {
        Error::NoEndpoints {
            namespace: self.shared.namespace.clone(),
            service: self.shared.service.clone(),
            port: self.shared.port.to_string(),
        }
    }
}

/// Applies watch events to the set of slices and publishes a snapshot after each change.
/// Errors before the first complete listing end the watch (the caller learns of them);
/// later ones are logged and retried with backoff while the last snapshot stays in use.
async fn follow_slices(
    events: impl futures::Stream<Item = Result<Event<EndpointSlice>, watcher::Error>> + Send,
    filter: EndpointFilter,
    endpoints: Arc<ArcSwap<Endpoints>>,
    updates: watch::Sender<u64>,
    listed: oneshot::Sender<Result<(), watcher::Error>>,
) {
    let mut events = std::pin::pin!(events.default_backoff());
    let mut listed = Some(listed);
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<String, EndpointSlice>> = None;
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(Event::Init) => {
                relisting = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(slice)) => {
                if let Some(relisting) = &mut relisting {
                    relisting.insert(slice.name_any(), slice);
                }
                false
            }
            Ok(Event::InitDone) => {
                if let Some(relisted) = relisting.take() {
                    slices = relisted;
                }
                if let Some(listed) = listed.take() {
                    let _ = listed.send(Ok(()));
                }
                true
            }
            Ok(Event::Apply(slice)) => {
                slices.insert(slice.name_any(), slice);
                true
            }
            Ok(Event::Delete(slice)) => {
                slices.remove(&slice.name_any());
                true
            }
            Err(error) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(Err(error));
                    return;
                }
                tracing::warn!(%error, "EndpointSlice watch failed; retrying");
                false
            }
        };
        if changed {
            let previous = endpoints.load();
            let next = Endpoints::from_slices(slices.values(), &filter, Some(&previous));
            endpoints.store(Arc::new(next));
            updates.send_modify(|generation| *generation += 1);
        }
    }
}

//! The control loop: watch Services and EndpointSlices, and after each burst of changes
//! bring the listeners, the endpoint snapshots and the load-balancer addresses in line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::StreamExt;
use hollow_lb::{AffinityTable, Endpoints, SERVICE_NAME_LABEL};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::ingress::{first_free, wants_address};
use crate::table::{ServicePort, ServicePortName, ingress_ips, service_ports};
use crate::tcp::{self, Backend, ConnectSettings};
use crate::udp;
use crate::{Error, ProxyConfig};

/// An address clients send to, per transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Frontend {
    address: SocketAddr,
    udp: bool,
}

impl std::fmt::Display for Frontend {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = if self.udp { "udp" } else { "tcp" };
        write!(formatter, "{}/{transport}", self.address)
    }
}

struct Listener {
    backend: Arc<Backend>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stops accepting and waits until the socket is closed, so the address can be bound
    /// again at once. Accepted connections carry on.
    async fn close(&self) {
        self.task.abort();
        while !self.task.is_finished() {
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Everything the loop owns between syncs.
pub(crate) struct Proxier {
    client: Client,
    config: ProxyConfig,
    settings: ConnectSettings,
    backends: HashMap<ServicePortName, Arc<Backend>>,
    listeners: HashMap<Frontend, Listener>,
    /// Frontends whose bind failed, so the warning is given once, not on every sync.
    bind_failures: HashSet<Frontend>,
    /// Load-balancer addresses written but maybe not yet seen back through the watch, by
    /// Service UID, so two Services never get the same one.
    assigned_ingress: HashMap<String, IpAddr>,
}

impl Proxier {
    pub fn new(client: Client, config: ProxyConfig) -> Proxier {
        let settings = ConnectSettings {
            picker: config.picker,
            connect_timeout: config.connect_timeout,
            connect_attempts: config.connect_attempts,
            buffer_size: config.buffer_size,
            udp_idle_timeout: config.udp_idle_timeout,
        };
        Proxier {
            client,
            config,
            settings,
            backends: HashMap::new(),
            listeners: HashMap::new(),
            bind_failures: HashSet::new(),
            assigned_ingress: HashMap::new(),
        }
    }

    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let changed = Arc::new(Notify::new());
        let (services, services_task) =
            spawn_reflector(Api::<Service>::all(self.client.clone()), changed.clone());
        let (slices, slices_task) = spawn_reflector(
            Api::<EndpointSlice>::all(self.client.clone()),
            changed.clone(),
        );
        let work = async {
            services
                .wait_until_ready()
                .await
                .map_err(|_| Error::WatchStopped)?;
            slices
                .wait_until_ready()
                .await
                .map_err(|_| Error::WatchStopped)?;
            tracing::info!("service proxy synced");
            loop {
                self.sync(&services.state(), &slices.state()).await;
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(self.config.resync_period) => {}
                }
                // Let a burst of watch events land so it costs one sync.
                tokio::time::sleep(self.config.sync_debounce).await;
            }
        };
        let result = tokio::select! {
            result = work => result,
            () = shutdown => Ok(()),
        };
        services_task.abort();
        slices_task.abort();
        self.listeners.clear();
        result
    }

    async fn sync(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        if self.config.load_balancer_range.is_some() {
            self.assign_load_balancer_addresses(services).await;
        }
        let mut slices_by_service: HashMap<(String, String), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                slices_by_service
                    .entry((slice.namespace().unwrap_or_default(), service.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let mut wanted_frontends: BTreeMap<Frontend, ServicePortName> = BTreeMap::new();
        let mut wanted_backends = HashSet::new();
        for service in services {
            for port in service_ports(service, self.config.node_address) {
                let udp = match port.name.protocol.as_str() {
                    "TCP" => false,
                    "UDP" => true,
                    _ => {
                        tracing::debug!(service = %port.name, "only TCP and UDP are proxied");
                        continue;
                    }
                };
                let key = (port.name.namespace.clone(), port.name.service.clone());
                let service_slices = slices_by_service
                    .get(&key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                self.update_backend(&port, service_slices);
                for frontend in &port.frontends {
                    let frontend = Frontend {
                        address: *frontend,
                        udp,
                    };
                    wanted_frontends.insert(frontend, port.name.clone());
                }
                wanted_backends.insert(port.name);
            }
        }
        self.backends
            .retain(|name, _| wanted_backends.contains(name));
        let stale: Vec<Frontend> = self
            .listeners
            .iter()
            .filter(|(frontend, listener)| {
                wanted_frontends.get(frontend) != Some(&listener.backend.name)
            })
            .map(|(frontend, _)| *frontend)
            .collect();
        for frontend in stale {
            if let Some(listener) = self.listeners.remove(&frontend) {
                listener.close().await;
                tracing::debug!(service = %listener.backend.name, %frontend, "stopped listening");
            }
        }
        self.bind_failures
            .retain(|frontend| wanted_frontends.contains_key(frontend));
        for (frontend, name) in wanted_frontends {
            if self.listeners.contains_key(&frontend) {
                continue;
            }
            let backend = Arc::clone(&self.backends[&name]);
            match self.listen(frontend, &backend).await {
                Ok(task) => {
                    self.bind_failures.remove(&frontend);
                    tracing::debug!(service = %name, %frontend, "listening");
                    self.listeners.insert(frontend, Listener { backend, task });
                }
                Err(error) => {
                    if self.bind_failures.insert(frontend) {
                        tracing::warn!(service = %name, %frontend, %error, "cannot listen; will retry");
                    }
                }
            }
        }
    }

    async fn listen(
        &self,
        frontend: Frontend,
        backend: &Arc<Backend>,
    ) -> std::io::Result<JoinHandle<()>> {
        let backend = Arc::clone(backend);
        Ok(if frontend.udp {
            let socket = UdpSocket::bind(frontend.address).await?;
            tokio::spawn(udp::serve(socket, backend, self.settings))
        } else {
            let listener = TcpListener::bind(frontend.address).await?;
            tokio::spawn(tcp::serve(listener, backend, self.settings))
        })
    }

    fn update_backend(&mut self, port: &ServicePort, slices: &[&EndpointSlice]) {
        let backend = self
            .backends
            .entry(port.name.clone())
            .or_insert_with(|| Arc::new(Backend::new(port.name.clone())));
        let previous = backend.endpoints.load();
        let endpoints =
            Endpoints::from_slices(slices.iter().copied(), &port.filter, Some(&previous));
        let current_timeout = backend
            .affinity
            .load()
            .as_ref()
            .map(|table| table.timeout());
        if current_timeout != port.affinity_timeout {
            backend.affinity.store(
                port.affinity_timeout
                    .map(|timeout| Arc::new(AffinityTable::new(timeout))),
            );
        } else if let Some(affinity) = &*backend.affinity.load() {
            // A client stuck to a removed endpoint picks afresh, as in kube-proxy.
            affinity.retain_usable(&endpoints);
        }
        backend.endpoints.store(Arc::new(endpoints));
    }

    /// Gives each LoadBalancer Service without an address the first free one of the range
    /// and writes it through the `services/status` subresource.
    async fn assign_load_balancer_addresses(&mut self, services: &[Arc<Service>]) {
        let Some(range) = self.config.load_balancer_range else {
            return;
        };
        let live: HashSet<String> = services.iter().filter_map(|s| s.uid()).collect();
        self.assigned_ingress.retain(|uid, _| live.contains(uid));
        let mut used: HashSet<IpAddr> = services
            .iter()
            .flat_map(|service| ingress_ips(service).collect::<Vec<_>>())
            .chain(self.assigned_ingress.values().copied())
            .collect();
        for service in services.iter().filter(|service| wants_address(service)) {
            let Some(uid) = service.uid() else { continue };
            if self.assigned_ingress.contains_key(&uid) {
                continue;
            }
            let Some(ip) = first_free(&range, &used) else {
                tracing::warn!(service = %service.name_any(), %range, "no load-balancer address left");
                continue;
            };
            let api: Api<Service> = Api::namespaced(
                self.client.clone(),
                &service.namespace().unwrap_or_default(),
            );
            let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
            match api
                .patch_status(
                    &service.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(service = %service.name_any(), %ip, "load-balancer address assigned");
                    used.insert(IpAddr::V4(ip));
                    self.assigned_ingress.insert(uid, IpAddr::V4(ip));
                }
                Err(error) => {
                    tracing::warn!(service = %service.name_any(), %error, "cannot write the load-balancer address");
                }
            }
        }
    }
}

fn spawn_reflector<K>(api: Api<K>, changed: Arc<Notify>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default()))
        .default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => changed.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch failed; retrying")
                }
            }
        }
    });
    (reader, task)
}

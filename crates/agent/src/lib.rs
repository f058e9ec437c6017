//! hollow's node agent: it registers a Node, gives each pod bound to that node an IP of the
//! node's range, runs the pod's containers as local processes (or only pretends to, in
//! simulate mode), probes them, and reports pod status the way kubelet does, so
//! `kubectl get pods` and the EndpointSlice controller see real readiness.
//!
//! It talks to the API only through kube-rs: a watch of the pods with
//! `spec.nodeName=<node>`, the `status` subresource of pods and its Node, and the final
//! `gracePeriodSeconds: 0` delete of a pod whose processes it has stopped. It therefore runs
//! the same against hollow's API server and against a real cluster.
//!
//! # Layout
//!
//! - [`run`] (this file): registration, the pod watch, and one worker per pod.
//! - `node`: the Node object, its pod range (carved from the cluster range), heartbeats.
//! - `ipam`: pod addresses of the node's range, lowest free first.
//! - `pod`: the per-pod worker (an actor): init containers in order, then start, probe,
//!   restart, delete.
//! - `process`: process groups, PID files, signals; `/proc` is the source of truth.
//! - `probe`: httpGet (HTTP and HTTPS), tcpSocket and exec checks and their schedule and
//!   thresholds; `grpc_probe`: the gRPC health check over h2c.
//! - `backoff`: kubelet's crash-loop back-off (10 s doubling to 300 s).
//! - `env`, `expand`: a container's environment and `$(VAR)` expansion.
//! - `status`: containerStatuses, conditions and phase as kubelet computes them.
//! - `writer`: coalesced, concurrent pod status writes.
//! - [`logs`]: log files and [`logs::read_log`].
//! - [`log_server`]: kubelet's `/containerLogs` endpoint over [`logs::read_log`]; the API
//!   server proxies `pods/log` to it at the port the Node publishes in
//!   `status.daemonEndpoints.kubeletEndpoint`.
//!
//! # Data flow
//!
//! The pod watch feeds the main loop. A new pod gets an address and a worker task; later
//! versions of it go to that worker through a `watch` channel; a pod that disappears from
//! the API gets its worker's processes killed at once. The worker receives process exits,
//! probe flips and back-off timers as messages, updates its containers, and hands the
//! resulting status to the writer only when it changed. The writer keeps the newest status
//! per pod and has up to 128 writes in flight. When a worker ends, the main loop releases the
//! pod's address.
//!
//! # On disk
//!
//! ```text
//! <data_dir>/pods/<namespace>_<pod>_<uid>/work/                 the containers' working directory
//! <data_dir>/pods/<namespace>_<pod>_<uid>/containers/<c>.pid    "<pid> <start ticks> <run>"
//! <data_dir>/pods/<namespace>_<pod>_<uid>/logs/<c>/<run>.log    see [`logs`]
//! ```
//!
//! A container's process leads its own process group. When the agent starts, it lists its
//! pods first: a pod directory whose pod is no longer on this node has its process groups
//! killed and is removed; a pod that is still there adopts its running processes (the PID
//! file's start time rules out a reused PID) and keeps its restart count and readiness.
//! Processes of an adopted container are watched through `/proc`; when one ends its exit
//! code is unknown and it is reported as `ContainerStatusUnknown` (exit code 137), as kubelet
//! does for a container it lost. By default the agent leaves processes running when it
//! stops, so a restarted agent finds them again; [`AgentConfig::stop_pods_on_shutdown`]
//! stops them instead.
//!
//! # Pod addresses
//!
//! Every pod gets an address of the node's range, skipping the network address, the one
//! after it and the broadcast address. The range is the configured `pod_cidr`, else the
//! Node's `spec.podCIDR`, else the lowest free `/24` of `cluster_cidr` (default
//! `127.244.0.0/16`), written to the Node. The Node's `pods` capacity is the number of
//! addresses. After a restart, the addresses pods already report in `status.podIP` are
//! reserved before any new one is handed out, so they are stable. A pod that finds the range
//! full waits until an address is released.
//!
//! # Simulate mode
//!
//! Like kwok: no process is started, every container is running, started and ready at
//! once, and the pod gets an address. The `hollow.dev/simulate-not-ready: "true"`
//! annotation (in either mode) holds a pod's containers not ready; changing it flips
//! readiness.

mod backoff;
mod env;
mod expand;
mod grpc_probe;
mod ipam;
pub mod log_server;
pub mod logs;
mod node;
mod pod;
mod probe;
mod process;
mod status;
mod writer;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, oneshot, watch};

pub use ipam::CidrError;
pub use logs::{LogError, LogOptions, LogStream, read_log};
pub use pod::NOT_READY_ANNOTATION;

use ipam::PodAddresses;

/// How often the Node's status is refreshed.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The Node this agent is.
    pub node_name: String,
    /// Where pod work directories, PID files and logs live.
    pub data_dir: PathBuf,
    /// This node's pod range; default: the Node's `spec.podCIDR`, else carved from
    /// `cluster_cidr`.
    pub pod_cidr: Option<String>,
    /// The cluster's pod range, node ranges are carved from it.
    pub cluster_cidr: String,
    /// The size of a carved node range.
    pub node_cidr_prefix: u8,
    /// The node's address (`status.addresses` InternalIP, pods' `hostIP`).
    pub node_ip: Ipv4Addr,
    /// Do not start processes: pods become Running and Ready at once.
    pub simulate: bool,
    /// Stop the pods' processes when the agent stops (instead of leaving them to be found
    /// again by the next agent).
    pub stop_pods_on_shutdown: bool,
}

impl AgentConfig {
    /// The defaults: cluster range `127.244.0.0/16` carved in `/24`s, node address
    /// `127.0.0.1`, real processes left running on shutdown.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> AgentConfig {
        AgentConfig {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            pod_cidr: None,
            cluster_cidr: "127.244.0.0/16".into(),
            node_cidr_prefix: 24,
            node_ip: Ipv4Addr::LOCALHOST,
            simulate: false,
            stop_pods_on_shutdown: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("talking to the API server: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error("no free /{prefix} left in the cluster pod range {cluster}")]
    NoPodRange { cluster: String, prefix: u8 },
    #[error("preparing the data directory: {0}")]
    DataDir(#[from] std::io::Error),
}

struct WorkerHandle {
    pod: watch::Sender<Arc<Pod>>,
    gone: Option<oneshot::Sender<()>>,
    address: Ipv4Addr,
    task: tokio::task::JoinHandle<()>,
}

struct Agent {
    shared: Arc<pod::Shared>,
    addresses: PodAddresses,
    workers: HashMap<String, WorkerHandle>,
    /// Pods waiting for an address, by uid.
    waiting: HashMap<String, Pod>,
    done: mpsc::UnboundedSender<String>,
    shutdown: watch::Receiver<bool>,
    listed_once: bool,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    tokio::fs::create_dir_all(config.data_dir.join("pods")).await?;
    let log_listener =
        tokio::net::TcpListener::bind(log_server::bind_address(config.node_ip)).await?;
    let kubelet_port = log_listener.local_addr()?.port();
    let log_server = tokio::spawn({
        let data_dir = config.data_dir.clone();
        async move {
            if let Err(error) = log_server::serve(log_listener, data_dir).await {
                tracing::warn!(%error, "the container log server stopped");
            }
        }
    });
    let range = node::register(&client, &config, kubelet_port).await?;
    tracing::info!(node = %config.node_name, pod_range = %range, simulate = config.simulate, "node registered");
    let heartbeat = {
        let nodes: Api<Node> = Api::all(client.clone());
        let config = config.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_PERIOD).await;
                if let Err(error) =
                    node::post_status(&nodes, &config, range, kubelet_port, false).await
                {
                    tracing::warn!(%error, "node heartbeat failed");
                }
            }
        })
    };
    let (writer, writer_task) = writer::StatusWriter::start(client.clone());
    let shared = Arc::new(pod::Shared {
        client: client.clone(),
        host_ip: config.node_ip.to_string(),
        data_dir: config.data_dir.clone(),
        simulate: config.simulate,
        stop_pods_on_shutdown: config.stop_pods_on_shutdown,
        writer: writer.clone(),
    });
    let (stop_workers, shutdown_receiver) = watch::channel(false);
    let (done_sender, mut done) = mpsc::unbounded_channel();
    let mut agent = Agent {
        shared,
        addresses: PodAddresses::new(range),
        workers: HashMap::new(),
        waiting: HashMap::new(),
        done: done_sender,
        shutdown: shutdown_receiver,
        listed_once: false,
    };
    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.node_name);
    let events = watcher(pods, watcher::Config::default().fields(&selector)).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut listing: Vec<Pod> = Vec::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(uid) = done.recv() => agent.worker_done(&uid),
            event = events.next() => match event {
                None => break,
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                Some(Ok(watcher::Event::Init)) => listing.clear(),
                Some(Ok(watcher::Event::InitApply(pod))) => listing.push(pod),
                Some(Ok(watcher::Event::InitDone)) => agent.listed(std::mem::take(&mut listing)),
                Some(Ok(watcher::Event::Apply(pod))) => agent.apply(pod, false),
                Some(Ok(watcher::Event::Delete(pod))) => agent.gone(&pod),
            },
        }
    }
    let _ = stop_workers.send(true);
    let tasks: Vec<_> = agent
        .workers
        .drain()
        .map(|(_, worker)| worker.task)
        .collect();
    futures::future::join_all(tasks).await;
    heartbeat.abort();
    log_server.abort();
    writer.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), writer_task).await;
    Ok(())
}

fn uid_of(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status
            .as_ref()
            .and_then(|status| status.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn reported_address(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

impl Agent {
    /// A complete list of the node's pods (at start, and after the watch had to re-list).
    fn listed(&mut self, pods: Vec<Pod>) {
        let present: HashSet<String> = pods.iter().filter_map(uid_of).collect();
        let missing: Vec<String> = self
            .workers
            .keys()
            .chain(self.waiting.keys())
            .filter(|uid| !present.contains(*uid))
            .cloned()
            .collect();
        for uid in missing {
            self.gone_uid(&uid);
        }
        let first = !self.listed_once;
        self.listed_once = true;
        if first {
            self.clean_stale_directories(&present);
            // Addresses pods already have are kept before any new one is handed out.
            let mut reserved = HashSet::new();
            for pod in &pods {
                if let (Some(uid), Some(address)) = (uid_of(pod), reported_address(pod))
                    && !is_terminal(pod)
                    && self.addresses.reserve(address)
                {
                    reserved.insert(uid);
                }
            }
            for pod in pods {
                let keeps_address = uid_of(&pod).is_some_and(|uid| reserved.contains(&uid));
                self.start_worker(pod, keeps_address, true);
            }
        } else {
            for pod in pods {
                self.apply(pod, false);
            }
        }
    }

    fn apply(&mut self, pod: Pod, recovered: bool) {
        let Some(uid) = uid_of(&pod) else { return };
        if let Some(worker) = self.workers.get(&uid) {
            worker.pod.send_replace(Arc::new(pod));
            return;
        }
        if !self.listed_once {
            return;
        }
        self.waiting.remove(&uid);
        self.start_worker(pod, false, recovered);
    }

    fn start_worker(&mut self, pod: Pod, keeps_address: bool, recovered: bool) {
        let Some(uid) = uid_of(&pod) else { return };
        if is_terminal(&pod) && pod.metadata.deletion_timestamp.is_none() {
            // Nothing runs for a finished pod.
            return;
        }
        let address = if keeps_address {
            reported_address(&pod)
        } else {
            self.addresses.allocate()
        };
        let Some(address) = address else {
            tracing::warn!(
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                range = %self.addresses.range(),
                "no free pod address on this node; the pod waits"
            );
            self.waiting.insert(uid, pod);
            return;
        };
        let directory_exists = logs::pod_directory(
            &self.shared.data_dir,
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            &uid,
        )
        .exists();
        let (pod_sender, pod_receiver) = watch::channel(Arc::new(pod));
        let (gone_sender, gone_receiver) = oneshot::channel();
        let inputs = pod::Inputs {
            pod: pod_receiver,
            gone: gone_receiver,
            shutdown: self.shutdown.clone(),
        };
        let shared = self.shared.clone();
        let done = self.done.clone();
        let worker_uid = uid.clone();
        let task = tokio::spawn(async move {
            pod::run_pod(shared, address, inputs, recovered && directory_exists).await;
            let _ = done.send(worker_uid);
        });
        self.workers.insert(
            uid,
            WorkerHandle {
                pod: pod_sender,
                gone: Some(gone_sender),
                address,
                task,
            },
        );
    }

    fn gone(&mut self, pod: &Pod) {
        if let Some(uid) = uid_of(pod) {
            self.gone_uid(&uid);
        }
    }

    fn gone_uid(&mut self, uid: &str) {
        self.waiting.remove(uid);
        if let Some(worker) = self.workers.get_mut(uid)
            && let Some(gone) = worker.gone.take()
        {
            let _ = gone.send(());
        }
    }

    fn worker_done(&mut self, uid: &str) {
        if *self.shutdown.borrow() {
            return;
        }
        if let Some(worker) = self.workers.remove(uid) {
            self.addresses.release(worker.address);
        }
        // A freed address may let a waiting pod start.
        let waiting: Vec<Pod> = self.waiting.drain().map(|(_, pod)| pod).collect();
        for pod in waiting {
            self.start_worker(pod, false, false);
        }
    }

    /// Kills the processes of pod directories whose pod is not on this node any more, and
    /// removes the directories.
    fn clean_stale_directories(&self, present: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(self.shared.data_dir.join("pods")) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(uid) = name.to_str().and_then(|name| name.rsplit('_').next()) else {
                continue;
            };
            if present.contains(uid) {
                continue;
            }
            let directory = entry.path();
            tokio::spawn(async move {
                for (container, record) in process::pid_files(&directory) {
                    tracing::info!(
                        ?directory,
                        container,
                        pid = record.pid,
                        "stopping a process whose pod is gone"
                    );
                    process::kill_group(&record).await;
                }
                let _ = tokio::fs::remove_dir_all(&directory).await;
            });
        }
    }
}

//! An in-process cluster: API server on an in-memory store, the controllers, one Ready
//! node and a stand-in for its agent.

use std::time::Duration;

use futures::StreamExt;
use hollow_testkit::{Kubectl, LocalApiServer, TempDir, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio::sync::watch;

pub const WAIT: Duration = Duration::from_secs(30);
pub const NODE: &str = "node-1";

pub struct Cluster {
    pub runtime: Runtime,
    pub client: Client,
    pub kubectl: Kubectl,
    pub directory: TempDir,
    stop: watch::Sender<bool>,
    /// Stops the API server when the cluster goes.
    _api: LocalApiServer,
}

impl Cluster {
    pub fn start() -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let directory = TempDir::new().expect("temporary directory");
        let (stop, stopped) = watch::channel(false);
        let shutdown = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let api = runtime.block_on(LocalApiServer::start());
        let kubeconfig = api.write_kubeconfig(directory.path());
        let client = api.client();
        let controllers = hollow_controllers::run(
            client.clone(),
            hollow_controllers::Options::default(),
            shutdown(stopped.clone()),
        );
        runtime.spawn(async move {
            if let Err(error) = controllers.await {
                panic!("controllers stopped: {error}");
            }
        });
        runtime.spawn(stand_in_agent(client.clone()));
        let cluster = Cluster {
            runtime,
            client,
            kubectl: Kubectl::new(&kubeconfig),
            directory,
            stop,
            _api: api,
        };
        cluster.register_node();
        cluster
    }

    fn register_node(&self) {
        self.runtime.block_on(async {
            let nodes: Api<Node> = Api::all(self.client.clone());
            let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).expect("node");
            nodes.create(&PostParams::default(), &node).await.expect("creating the node");
            let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
            nodes.patch_status(NODE, &PatchParams::default(), &Patch::Merge(&ready)).await.expect("node status");
        });
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn pod(&self, name: &str) -> Option<Pod> {
        self.runtime
            .block_on(self.pods().get_opt(name))
            .expect("reading a pod")
    }

    /// What the node agent would report: Running with an IP, Ready or not.
    pub fn set_pod_ready(&self, name: &str, ip: &str, ready: bool) {
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }});
        self.runtime
            .block_on(self.pods().patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            ))
            .unwrap_or_else(|error| panic!("patching status of {name}: {error}"));
    }

    /// Waits for `name` to exist (and be bound to the node), then marks it Running and Ready.
    pub fn wait_and_ready(&self, name: &str, ip: &str) -> Pod {
        let pod = wait_for(&format!("pod {name} scheduled"), WAIT, || {
            self.pod(name).filter(|pod| {
                pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) == Some(NODE)
            })
        });
        self.set_pod_ready(name, ip, true);
        pod
    }

    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl.ok(all)).expect("kubectl prints JSON")
    }
}

impl Cluster {
    /// The reasons of the events recorded about objects named `name`.
    pub fn event_reasons(&self, name: &str) -> Vec<String> {
        self.kubectl_json(&["get", "events"])["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|event| event["involvedObject"]["name"] == name)
            .map(|event| event["reason"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Finishes graceful deletions on the node, as its agent would once the process exits.
async fn stand_in_agent(client: Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let events = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let _ = api
                .delete(
                    &name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    },
                )
                .await;
        }
    }
}

//! hollow's API server inside the test process: the real server over HTTP on a loopback port,
//! on the memory store, reached with a kube-rs client as every component reaches it.

use std::net::SocketAddr;

use hollow_apiserver::{ApiServer, ApiServerConfig};
use hollow_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running in-process API server; it stops when dropped.
pub struct LocalApiServer {
    pub address: SocketAddr,
    pub client: kube::Client,
    stop: watch::Sender<bool>,
}

impl LocalApiServer {
    /// A server with the default configuration.
    pub async fn start() -> LocalApiServer {
        LocalApiServer::start_with(|_| {}).await
    }

    /// A server whose configuration `configure` adjusts (a service range of the test's own,
    /// say, so parallel tests never share an address).
    pub async fn start_with(configure: impl FnOnce(&mut ApiServerConfig)) -> LocalApiServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port for the API server");
        let address = listener.local_addr().expect("the API server's address");
        let mut config = ApiServerConfig::new(address);
        configure(&mut config);
        let store = Store::in_memory(StoreOptions::default());
        let server = ApiServer::with_config(store, config)
            .await
            .expect("starting the API server");
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(server.serve(listener, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
        let url = format!("http://{address}")
            .parse()
            .expect("the server's URL");
        let client = kube::Client::try_from(kube::Config::new(url)).expect("a kube client");
        LocalApiServer {
            address,
            client,
            stop,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Writes a kubeconfig for this server into `directory`, for kubectl.
    pub fn write_kubeconfig(&self, directory: &std::path::Path) -> std::path::PathBuf {
        let path = directory.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hollow\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: hollow\n  context:\n    cluster: hollow\n    user: hollow\n\
             current-context: hollow\nusers:\n- name: hollow\n  user: {{}}\n",
            self.address
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path
    }
}

impl Drop for LocalApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

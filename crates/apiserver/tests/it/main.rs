//! The API server as kube-rs sees it: a second real client beside kubectl.
//!
//! Each test runs the API server in-process on a loopback port over a redb store in a
//! temporary directory, and talks to it only over HTTP.

mod kube_client;
mod namespaces;

use std::net::SocketAddr;

use hollow_apiserver::ApiServer;
use hollow_store::{Store, StoreOptions};
use hollow_testkit::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A running API server; stops when dropped.
pub struct Server {
    pub address: SocketAddr,
    pub store: Store,
    _stop: oneshot::Sender<()>,
    _directory: TempDir,
}

impl Server {
    pub async fn start(options: StoreOptions) -> Server {
        let directory = TempDir::new().unwrap();
        let store = Store::open_redb(&directory.path().join("store.redb"), options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = ApiServer::new(store.clone(), address).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            address,
            store,
            _stop: stop,
            _directory: directory,
        }
    }

    pub fn client(&self) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.address).parse().unwrap();
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).unwrap()
    }
}

//! One lane of the tests: an API server on loopback, the proxy watching it, and echo
//! backends that name themselves.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hollow_proxy::ProxyConfig;
use hollow_testkit::LocalApiServer;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Cluster {
    lane: u8,
    api: LocalApiServer,
    stop: watch::Sender<bool>,
    proxy: JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.proxy.abort();
    }
}

impl Cluster {
    /// An API server allocating cluster IPs from 127.96.<lane>.0/24 and a proxy handing out
    /// load-balancer addresses from 127.97.<lane>.0/24, with node ports on 127.0.<lane>.1.
    pub async fn start(lane: u8) -> Cluster {
        let api = LocalApiServer::start_with(|config| {
            config.service_cidr = format!("127.96.{lane}.0/24")
                .parse()
                .expect("service range");
        })
        .await;
        let (stop, mut stopped) = watch::channel(false);
        let proxy_config = ProxyConfig {
            node_address: IpAddr::from([127, 0, lane, 1]),
            load_balancer_range: Some(format!("127.97.{lane}.0/24").parse().expect("range")),
            connect_timeout: Duration::from_millis(500),
            ..ProxyConfig::default()
        };
        let proxy = tokio::spawn({
            let client = api.client();
            async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                hollow_proxy::run(client, proxy_config, shutdown)
                    .await
                    .expect("proxy runs");
            }
        });
        Cluster {
            lane,
            api,
            stop,
            proxy,
        }
    }

    pub fn client(&self) -> Client {
        self.api.client()
    }

    pub fn node_address(&self) -> IpAddr {
        IpAddr::from([127, 0, self.lane, 1])
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.api.client(), "default")
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.api.client(), "default")
    }

    /// Echo servers on 127.0.<lane>.11, .12, … sharing one port, as pods of one
    /// Deployment share a container port.
    pub async fn backends(&self, names: &[&'static str]) -> Vec<SocketAddr> {
        let mut addresses: Vec<SocketAddr> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let ip = IpAddr::from([127, 0, self.lane, 11 + index as u8]);
            let port = addresses.first().map_or(0, SocketAddr::port);
            addresses.push(start_backend(SocketAddr::new(ip, port), name).await);
        }
        addresses
    }

    pub async fn create_service(&self, service: serde_json::Value) -> Service {
        let service: Service = serde_json::from_value(service).expect("service");
        self.services()
            .create(&PostParams::default(), &service)
            .await
            .expect("create service")
    }

    /// A hand-written slice named `<service>-1` with one port named `http`.
    pub async fn create_slice(&self, service: &str, port: u16, endpoints: serde_json::Value) {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-1"),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("slice");
        self.slices()
            .create(&PostParams::default(), &slice)
            .await
            .expect("create slice");
    }

    /// Replaces the endpoints of the slice `web-1`.
    pub async fn patch_slice(&self, endpoints: serde_json::Value) {
        self.slices()
            .patch(
                "web-1",
                &PatchParams::default(),
                &Patch::Merge(&json!({"endpoints": endpoints})),
            )
            .await
            .expect("patch slice");
    }
}

/// A server that greets each connection with its name on a line, then echoes.
pub async fn start_backend(address: SocketAddr, name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(address).await.expect("bind backend");
    let address = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                if writer
                    .write_all(format!("{name}\n").as_bytes())
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                }
            });
        }
    });
    address
}

/// Connects to `frontend` (from `from` if given), reads the backend's name, checks that a
/// line comes back echoed, and returns the name.
pub async fn ask(frontend: SocketAddr, from: Option<IpAddr>) -> io::Result<String> {
    let exchange = async {
        let stream = match from {
            None => TcpStream::connect(frontend).await?,
            Some(from) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(from, 0))?;
                socket.connect(frontend).await?
            }
        };
        let mut stream = BufReader::new(stream);
        let mut name = String::new();
        if stream.read_line(&mut name).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed at once",
            ));
        }
        stream.get_mut().write_all(b"ping\n").await?;
        let mut echo = String::new();
        stream.read_line(&mut echo).await?;
        if echo != "ping\n" {
            return Err(io::Error::other(format!("echo was {echo:?}")));
        }
        Ok(name.trim_end().to_owned())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")))
}

/// Retries `attempt` every 20 ms until it gives a value; panics after [`WAIT`].
pub async fn eventually<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

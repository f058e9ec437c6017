//! The data path: accept on a frontend address, choose an endpoint, splice bytes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use hollow_lb::{AffinityTable, Endpoint, Endpoints, InFlight, PowerOfTwoChoices, RoundRobin};
use tokio::net::{TcpListener, TcpStream};

use crate::Picker;
use crate::table::ServicePortName;

/// Settings every connection needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectSettings {
    pub picker: Picker,
    pub connect_timeout: Duration,
    pub connect_attempts: usize,
    pub buffer_size: usize,
    pub udp_idle_timeout: Duration,
}

/// Where the connections of one service port go. The sync loop swaps in new endpoints and
/// affinity settings; listeners and connections only ever load.
pub(crate) struct Backend {
    pub name: ServicePortName,
    pub endpoints: ArcSwap<Endpoints>,
    pub affinity: ArcSwapOption<AffinityTable<IpAddr>>,
    round_robin: RoundRobin,
    least_connections: PowerOfTwoChoices,
}

impl Backend {
    pub fn new(name: ServicePortName) -> Backend {
        Backend {
            name,
            endpoints: ArcSwap::from_pointee(Endpoints::default()),
            affinity: ArcSwapOption::empty(),
            round_robin: RoundRobin::new(),
            least_connections: PowerOfTwoChoices::new(),
        }
    }

    fn choose(&self, endpoints: &Endpoints, picker: Picker) -> Option<Endpoint> {
        match picker {
            Picker::RoundRobin => self.round_robin.pick(endpoints).cloned(),
            Picker::LeastConnections => self
                .least_connections
                .pick(endpoints)
                .map(|in_flight| in_flight.endpoint().clone()),
        }
    }

    /// The endpoint for a new connection from `client`: its sticky one under ClientIP
    /// affinity, else whatever the picker says.
    pub fn pick(&self, client: IpAddr, endpoints: &Endpoints, picker: Picker) -> Option<Endpoint> {
        match &*self.affinity.load() {
            Some(affinity) => affinity.pick(&client, endpoints, |endpoints| {
                self.choose(endpoints, picker)
            }),
            None => self.choose(endpoints, picker),
        }
    }
}

/// Accepts until the task is aborted (which closes the listening socket). Connections run
/// in their own tasks, so they outlive the listener.
pub(crate) async fn serve(listener: TcpListener, backend: Arc<Backend>, settings: ConnectSettings) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(proxy_connection(
                    client,
                    peer,
                    Arc::clone(&backend),
                    settings,
                ));
            }
            Err(error) => {
                // Out of descriptors or a connection reset before accept: keep serving,
                // but do not spin.
                tracing::warn!(service = %backend.name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn proxy_connection(
    client: TcpStream,
    peer: SocketAddr,
    backend: Arc<Backend>,
    settings: ConnectSettings,
) {
    let Some((upstream, endpoint)) = connect(&backend, peer.ip(), settings).await else {
        // Like kube-proxy's REJECT: the client learns at once, with a reset, instead of
        // waiting on a connection nobody will serve.
        let _ = client.set_zero_linger();
        return;
    };
    let _in_flight = InFlight::new(endpoint);
    let mut client = client;
    let mut upstream = upstream;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        settings.buffer_size,
        settings.buffer_size,
    )
    .await
    {
        tracing::debug!(service = %backend.name, %peer, %error, "connection ended with an error");
    }
}

/// Connects to an endpoint, moving on to another when one fails to answer — the connect-time
/// failover kernel NAT cannot do.
async fn connect(
    backend: &Backend,
    client: IpAddr,
    settings: ConnectSettings,
) -> Option<(TcpStream, Endpoint)> {
    let endpoints = backend.endpoints.load_full();
    let attempts = settings
        .connect_attempts
        .clamp(1, endpoints.usable().len().max(1));
    for _ in 0..attempts {
        let endpoint = backend.pick(client, &endpoints, settings.picker)?;
        match tokio::time::timeout(
            settings.connect_timeout,
            TcpStream::connect(endpoint.address()),
        )
        .await
        {
            Ok(Ok(stream)) => return Some((stream, endpoint)),
            Ok(Err(error)) => log_failure(backend, &endpoint, &error),
            Err(_) => log_failure(
                backend,
                &endpoint,
                &io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            ),
        }
        if let Some(affinity) = &*backend.affinity.load() {
            affinity.forget(&client);
        }
    }
    None
}

fn log_failure(backend: &Backend, endpoint: &Endpoint, error: &io::Error) {
    tracing::debug!(service = %backend.name, endpoint = %endpoint.address(), %error, "endpoint did not accept");
}

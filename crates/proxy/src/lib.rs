//! `hollow-proxy`: a userspace service proxy on loopback. Every ClusterIP, NodePort and
//! LoadBalancer Service gets real listening sockets on its virtual addresses (cluster IPs
//! such as `127.96.0.12` are loopback addresses, bindable without root), and each accepted
//! TCP connection is spliced to a ready endpoint chosen with `hollow-lb`'s pickers.
//!
//! # Data flow
//!
//! ```text
//! API server ──watch Services, EndpointSlices──▶ sync.rs (reflector stores, debounced)
//!                                                  │ every burst of changes
//!       table.rs: Service → ServicePorts (frontends, slice port, affinity)
//!       ingress.rs: LoadBalancer without an address → first free IP of the range,
//!                   written to status.loadBalancer.ingress (services/status)
//!                                                  │
//!                 per service port: Endpoints snapshot ──ArcSwap::store──▶ tcp::Backend
//!                 per frontend address: a TCP listener or UDP socket task (added / closed)
//!                                                  │ accept
//!       tcp.rs: pick (ClientIP affinity, else round robin or least connections),
//!               connect with failover, copy_bidirectional with fixed buffers
//!       udp.rs: a connected socket per client flow, replies sent back from the frontend
//! ```
//!
//! Semantics follow kube-proxy: ready endpoints first, serving+terminating ones only when
//! none is ready; a connection to a service with no usable endpoint is reset at once (the
//! REJECT rule); `sessionAffinity: ClientIP` sticks per client address with its timeout;
//! `publishNotReadyAddresses` makes every endpoint eligible. Headless and ExternalName
//! Services get no listener, nor do Services labelled for another proxy. When endpoints
//! change, new connections use the new set at once; established connections are left to
//! finish, even to removed endpoints. TCP and UDP are proxied (UDP as per-client flows with an
//! idle timeout; a datagram for a service without endpoints is dropped); SCTP is skipped.
//!
//! Where it departs from kube-proxy, on purpose: changes are applied after a 5 ms quiet
//! period instead of kube-proxy's 1 s `minSyncPeriod` (a sync here costs a few binds, not an
//! iptables restore); a failed connect moves on to another endpoint (as the old userspace
//! proxy did); backends see the proxy's address, not the client's. Ports below 1024 need
//! root or `CAP_NET_BIND_SERVICE`; an address that cannot be bound is logged once and
//! retried at each sync and every `resync_period`.
//!
//! Entry point: [`run`]. The benchmark: `cargo run --release -p hollow-proxy --example bench`.

mod ingress;
mod sync;
pub mod table;
mod tcp;
mod udp;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub use ingress::{InvalidCidr, Ipv4Cidr};

/// How a new connection's endpoint is chosen when no affinity applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Picker {
    /// Each endpoint in turn (IPVS's default; iptables picks at random, to the same effect).
    #[default]
    RoundRobin,
    /// The endpoint with fewer open connections of two drawn at random.
    LeastConnections,
}

/// Everything the proxy can be told.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where NodePorts listen (`--nodeport-address`).
    pub node_address: IpAddr,
    /// Addresses handed to LoadBalancer Services; `None` leaves them to another controller
    /// (the proxy still listens on whatever ingress IPs their status lists).
    pub load_balancer_range: Option<Ipv4Cidr>,
    pub picker: Picker,
    /// How long one endpoint gets to accept a connection before the next is tried.
    pub connect_timeout: Duration,
    /// Endpoints tried per connection at most.
    pub connect_attempts: usize,
    /// Copy buffer per direction per connection, bytes.
    pub buffer_size: usize,
    /// A UDP flow (client address → endpoint) ends after this long without a datagram
    /// either way.
    pub udp_idle_timeout: Duration,
    /// Quiet time after a change before syncing, so a burst of events costs one sync.
    pub sync_debounce: Duration,
    /// Full sync even without changes (retries addresses that could not be bound).
    pub resync_period: Duration,
}

/// The default load-balancer range, beside the default service range 127.96.0.0/16.
pub const DEFAULT_LOAD_BALANCER_RANGE: &str = "127.97.0.0/16";

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            node_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            load_balancer_range: Some(
                DEFAULT_LOAD_BALANCER_RANGE
                    .parse()
                    .expect("the default range parses"),
            ),
            picker: Picker::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            connect_attempts: 3,
            buffer_size: 64 * 1024,
            udp_idle_timeout: Duration::from_secs(30),
            sync_debounce: Duration::from_millis(5),
            resync_period: Duration::from_secs(30),
        }
    }
}

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch ended before its first listing, which only happens while shutting down.
    #[error("the Service or EndpointSlice watch stopped")]
    WatchStopped,
}

/// Proxies the Services of the cluster `client` talks to until `shutdown` completes. Waits
/// for the first complete listing of Services and EndpointSlices before opening any
/// listener, so no connection is refused for want of endpoints not yet seen.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    sync::Proxier::new(client, config).run(shutdown).await
}

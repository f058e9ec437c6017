//! `hollow-lb`: client-side load balancing over (headless) services, fed live from the
//! Kubernetes watch protocol, so a client spreads its own requests over a service's pods
//! without a proxy in the path and without trusting DNS caches.
//!
//! ```no_run
//! # async fn example(client: kube::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let balancer = hollow_lb::Balancer::watch(client, "default", "web", "http").await?;
//! let endpoint = balancer.pick()?;
//! let stream = tokio::net::TcpStream::connect(endpoint.address()).await?;
//! # drop(stream); Ok(()) }
//! ```
//!
//! # Layout and data flow
//!
//! ```text
//! API server ──watch EndpointSlices (label kubernetes.io/service-name=<svc>)──▶ balancer.rs
//!                                                                                 │ every change
//!                                                                                 ▼
//!   endpoints.rs: merge the service's slices, resolve the port by name or number,
//!                 dedupe, keep ready endpoints (serving+terminating ones only if none is
//!                 ready) ──▶ immutable Endpoints snapshot ──ArcSwap::store──┐
//!                                                                          ▼
//!   pick.rs: RoundRobin, PowerOfTwoChoices (+ InFlight guard), pick_by_key,
//!            AffinityTable — each pick is one ArcSwap load plus an atomic or two
//! ```
//!
//! * [`Balancer`] — one service port, watched: `pick`, `pick_least_loaded`, `pick_by_key`,
//!   `connect` (round robin with failover), `changed`.
//! * [`Endpoints::from_slices`] and the pickers in [`pick`] are plain functions of data, so a
//!   component with its own watches (the service proxy) reuses them without a `Balancer`.

mod balancer;
pub mod endpoints;
pub mod pick;

pub use balancer::{Balancer, SERVICE_NAME_LABEL};
pub use endpoints::{Conditions, Endpoint, EndpointFilter, Endpoints, PortSelector};
pub use pick::{AffinityTable, InFlight, PowerOfTwoChoices, RoundRobin, pick_by_key};

/// Errors of the load balancer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing to pick: no endpoint is ready, and none is serving while terminating.
    #[error("service {namespace}/{service} has no ready endpoint for port {port}")]
    NoEndpoints {
        namespace: String,
        service: String,
        port: String,
    },
    /// The first listing of the service's EndpointSlices failed.
    #[error("watching the EndpointSlices of {namespace}/{service}: {source}")]
    Watch {
        namespace: String,
        service: String,
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// Every endpoint tried refused the connection or did not answer in time; this is the
    /// last one's failure.
    #[error("connecting to endpoint {address}: {source}")]
    Connect {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The watch ended (its runtime is shutting down, or the balancer is fixed).
    #[error("the EndpointSlice watch stopped")]
    WatchStopped,
}

//! `hollow-dns`: the cluster DNS server, answering the Kubernetes DNS-based service discovery
//! specification (schema 1.1.0) for one cluster zone, fast enough to sit on every query path.
//!
//! # Data flow
//!
//! ```text
//! API server ──list/watch──▶ watch.rs (kube-runtime watchers, pages of 100)
//!                               │ each object converted to compact.rs records on arrival;
//!                               │ the Kubernetes structure is dropped right after
//!                               ▼
//!          one zone thread, live.rs: LiveZone — compact records, which sources (Service +
//!                   slices, Namespace, Pod…) feed which names; re-derives only the names a
//!                   change affects. Every queued event, then one publish (no debounce)
//!                               │ records.rs: compact records → names and records (per source)
//!                               ▼
//!          snapshot.rs: immutable index in 1,024 shards, answers pre-encoded in wire format;
//!                   an update re-packs only the shards it touched, the rest are shared
//!                               │ ArcSwap::store (atomic)
//!                               ▼
//!          server.rs: UDP workers (SO_REUSEPORT, one per core), TCP, forwarding ──▶ clients
//!                     wire.rs parses each query and frames each answer
//!                     metrics.rs counts them, served as Prometheus text
//! ```
//!
//! # Why compact records
//!
//! Resident memory is a goal of its own (≤ 20 MB for a cluster of 11,000 services and 31,000
//! endpoints). Kept as k8s-openapi structures, even trimmed to the fields DNS reads, the
//! cluster took more memory than the served index: a `Service` is 824 bytes before its first
//! string. [`compact`] keeps what records are derived from — parsed addresses, port triples,
//! flags, interned names — and the live zone keeps each Service with its slices packed into
//! one allocation of about 60 bytes ([`compact::PackedService`]), unpacked only while its
//! records are derived. [`live::LiveZone::memory_report`] (or
//! [`zone_memory_report`] for the watch-fed server) says where the rest of the heap goes.
//! The full build from a [`ClusterState`] of Kubernetes objects converts them the same way
//! first, so tests, benchmark and the live zone share one derivation.
//!
//! # Why incremental
//!
//! Encoding the whole zone of a 10,000-service cluster takes about a second, so a full rebuild
//! per change cannot meet "an EndpointSlice write is visible in DNS within 10 ms". A change
//! to one object affects a handful of names: the service's own names, its endpoints'
//! hostnames, its SRV names, the PTRs of its addresses, and the few answers that embed those
//! (SRV additional sections, chased in-zone aliases). [`live::LiveZone`] tracks which source
//! contributes to which name (by keyed name hash) and which answers read which names, so an
//! update re-derives and re-encodes only those names, re-packs the ~100-name shards holding
//! them and publishes a new vector of shard pointers: microseconds, independent of cluster
//! size. The full build remains for the first sync and relists, and is the oracle the
//! incremental path is property-tested against.
//!
//! The hot path (a UDP query for a cluster name) touches only `wire` and `snapshot`: parse into
//! a stack buffer, one hash lookup, a few `memcpy`s, send. No locks, no allocation, no
//! Kubernetes types. Names outside the zone go to upstream resolvers (the host's
//! `/etc/resolv.conf` by default), each tried in turn for `forward_timeout`, and get SERVFAIL
//! when none answers; with forwarding off they get REFUSED.
//!
//! # Entry points
//!
//! * [`run`] — watch an API server through a [`kube::Client`] and serve until shutdown.
//! * [`watch`] — the same into a [`DnsServer`] you started (to learn its bound address);
//!   [`zone_memory_report`] tells where its heap goes.
//! * [`DnsServer::start`] + [`DnsServer::publish`] — serve snapshots you build yourself with
//!   [`Snapshot::build`] from a [`ClusterState`] (what the tests and the benchmark use), or
//!   keep current with a [`live::LiveZone`] fed with object changes.
//!
//! Behaviour choices where the specification and CoreDNS differ are listed in the docs of
//! [`records`] and [`snapshot`].

pub mod compact;
pub mod example;
pub mod live;
pub mod metrics;
pub mod records;
pub mod server;
pub mod snapshot;
mod watch;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use records::{ClusterState, PodMode, RecordSettings};
pub use server::{DnsServer, ServerSettings};
pub use snapshot::{Snapshot, SnapshotSettings};
pub use watch::{release_free_heap, run, share_one_heap_arena, watch, zone_memory_report};

/// Where names outside the cluster zone are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upstreams {
    /// Not forwarded: such queries get REFUSED.
    Disabled,
    /// The `nameserver` lines of a resolv.conf file (port 53).
    ResolvConf(PathBuf),
    /// These servers, tried in order.
    Servers(Vec<SocketAddr>),
}

/// Everything the DNS server can be told.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// UDP and TCP address (`--dns-listen`).
    pub listen: SocketAddr,
    /// The cluster zone (`--cluster-domain`).
    pub cluster_domain: String,
    /// TTL of positive answers, seconds (0–3600).
    pub ttl: u32,
    /// TTL of NXDOMAIN/NODATA answers (SOA TTL and MINIMUM), seconds. Short by default so
    /// that a StatefulSet peer that appears is found at once, not after a negative cache
    /// expires (the classic 30 s stall).
    pub negative_ttl: u32,
    pub pod_mode: PodMode,
    /// Honour the deprecated tolerate-unready annotation (spec 1.1.0 text) — CoreDNS does not.
    pub tolerate_unready_annotation: bool,
    pub upstreams: Upstreams,
    /// Prometheus text endpoint; `None` for none.
    pub metrics_listen: Option<SocketAddr>,
    /// UDP worker threads (each with its own socket); 0 means one per core.
    pub udp_workers: usize,
    /// How long one upstream gets to answer a forwarded query.
    pub forward_timeout: Duration,
    /// Entries in the forwarding cache.
    pub forward_cache_entries: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1053)),
            cluster_domain: "cluster.local".to_owned(),
            ttl: 5,
            negative_ttl: 1,
            pod_mode: PodMode::Disabled,
            tolerate_unready_annotation: true,
            upstreams: Upstreams::ResolvConf(PathBuf::from("/etc/resolv.conf")),
            metrics_listen: None,
            udp_workers: 0,
            forward_timeout: Duration::from_secs(2),
            forward_cache_entries: 4096,
        }
    }
}

impl DnsConfig {
    /// Settings for [`Snapshot::build`] derived from this configuration.
    pub fn snapshot_settings(&self) -> SnapshotSettings {
        let listen_ip = self.listen.ip();
        let fallback_nameserver_addresses = if listen_ip.is_unspecified() {
            vec![IpAddr::from([127, 0, 0, 1])]
        } else {
            vec![listen_ip]
        };
        SnapshotSettings {
            records: RecordSettings {
                zone: self.cluster_domain.clone(),
                pod_mode: self.pod_mode,
                tolerate_unready_annotation: self.tolerate_unready_annotation,
                fallback_nameserver_addresses,
            },
            ttl: self.ttl.min(3600),
            negative_ttl: self.negative_ttl.min(3600),
        }
    }

    /// Settings for [`DnsServer::start`]; reads the resolv.conf if upstreams come from one.
    pub fn server_settings(&self) -> Result<ServerSettings, Error> {
        let upstreams = match &self.upstreams {
            Upstreams::Disabled => Vec::new(),
            Upstreams::Servers(servers) => servers.clone(),
            Upstreams::ResolvConf(path) => upstreams_from_resolv_conf(path)?,
        };
        // Forwarding to ourselves would loop.
        let upstreams = upstreams
            .into_iter()
            .filter(|upstream| *upstream != self.listen)
            .collect();
        Ok(ServerSettings {
            listen: self.listen,
            udp_workers: self.udp_workers,
            metrics_listen: self.metrics_listen,
            upstreams,
            forward_timeout: self.forward_timeout,
            forward_cache_entries: self.forward_cache_entries,
        })
    }
}

/// The `nameserver` addresses of a resolv.conf file, on port 53.
pub fn upstreams_from_resolv_conf(path: &std::path::Path) -> Result<Vec<SocketAddr>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ResolvConf {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_resolv_conf(&text))
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|address| address.split('%').next())
                .and_then(|address| address.parse::<IpAddr>().ok())
                .map(|address| SocketAddr::new(address, 53))
        })
        .collect()
}

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("reading upstream resolvers from {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resolv_conf() {
        let upstreams = parse_resolv_conf(
            "# comment\nsearch svc.cluster.local\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\noptions ndots:5\n",
        );
        assert_eq!(
            upstreams,
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}

//! From EndpointSlices to an immutable, deduplicated set of usable endpoints for one port.
//!
//! The eligibility rules are kube-proxy's (`CategorizeEndpoints`): endpoints whose `ready`
//! condition is true (or absent) are used; only when none is ready anywhere do endpoints that
//! are `serving` and `terminating` take over, so a rolling update or a drain never leaves a
//! service with nothing while old pods still answer.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};

/// Which port of each endpoint to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortSelector {
    /// The slice port with this name (`""` matches the unnamed port of single-port
    /// services). Slices without such a port contribute no endpoint.
    Name(String),
    /// This port number on every endpoint, whatever the slices list: what a client of a
    /// headless service that knows its backends' port wants.
    Number(u16),
}

impl From<&str> for PortSelector {
    /// Digits are a port number, anything else a port name.
    fn from(port: &str) -> Self {
        match port.parse::<u16>() {
            Ok(number) => PortSelector::Number(number),
            Err(_) => PortSelector::Name(port.to_owned()),
        }
    }
}

impl From<String> for PortSelector {
    fn from(port: String) -> Self {
        PortSelector::from(port.as_str())
    }
}

impl From<u16> for PortSelector {
    fn from(port: u16) -> Self {
        PortSelector::Number(port)
    }
}

impl fmt::Display for PortSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSelector::Name(name) if name.is_empty() => formatter.write_str("(unnamed)"),
            PortSelector::Name(name) => formatter.write_str(name),
            PortSelector::Number(number) => write!(formatter, "{number}"),
        }
    }
}

/// What to take from the slices of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointFilter {
    pub port: PortSelector,
    /// Transport protocol of the slice port (`TCP`, `UDP`, `SCTP`); an absent protocol in a
    /// slice means TCP.
    pub protocol: String,
    /// The Service's `publishNotReadyAddresses`: every endpoint counts as ready, but
    /// non-terminating ones are still preferred, so a forced-ready pod that is going away
    /// stops getting new connections as soon as a replacement exists.
    pub publish_not_ready_addresses: bool,
    /// Port to use for slices that list no port at all (hand-written slices of a
    /// selector-less service often omit them): the Service's numeric `targetPort`.
    pub port_when_slice_has_none: Option<u16>,
}

impl EndpointFilter {
    /// TCP endpoints on `port`, honouring readiness.
    pub fn tcp(port: impl Into<PortSelector>) -> Self {
        EndpointFilter {
            port: port.into(),
            protocol: "TCP".to_owned(),
            publish_not_ready_addresses: false,
            port_when_slice_has_none: None,
        }
    }

    fn resolve_port(&self, ports: Option<&[EndpointPort]>) -> Option<u16> {
        let ports = ports.unwrap_or_default();
        match &self.port {
            PortSelector::Number(number) => Some(*number),
            PortSelector::Name(_) if ports.is_empty() => self.port_when_slice_has_none,
            PortSelector::Name(name) => ports
                .iter()
                .find(|port| {
                    port.name.as_deref().unwrap_or_default() == name
                        && port.protocol.as_deref().unwrap_or("TCP") == self.protocol
                })
                .and_then(|port| port.port)
                .and_then(|port| u16::try_from(port).ok())
                .filter(|port| *port != 0),
        }
    }
}

/// An endpoint's conditions with the API's defaults applied (`ready` absent means ready,
/// `serving` absent means `ready`, `terminating` absent means not terminating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conditions {
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

impl Conditions {
    fn rank(self) -> u8 {
        u8::from(self.ready) * 4 + u8::from(self.serving) * 2 + u8::from(!self.terminating)
    }
}

/// One backend address, with what the slice said about it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    address: SocketAddr,
    conditions: Conditions,
    hostname: Option<String>,
    node_name: Option<String>,
    zone: Option<String>,
    target_name: Option<String>,
    /// Shared by every snapshot that holds this address, so load survives endpoint changes.
    in_flight: Arc<AtomicUsize>,
}

impl Endpoint {
    /// Where to connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
    pub fn conditions(&self) -> Conditions {
        self.conditions
    }
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }
    /// Name of the object behind the endpoint (`targetRef.name`, usually the pod).
    pub fn target_name(&self) -> Option<&str> {
        self.target_name.as_deref()
    }
    /// Requests currently holding an [`InFlight`](crate::InFlight) guard on this address.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    pub(crate) fn in_flight_counter(&self) -> &Arc<AtomicUsize> {
        &self.in_flight
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address && self.conditions == other.conditions
    }
}

/// The endpoints of one service port at one moment; never changed once built.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    usable: Vec<Endpoint>,
    all: Vec<Endpoint>,
    terminating_fallback: bool,
}

impl Endpoints {
    /// Merges `slices` (all of one service, any order) into one snapshot. Endpoints listed in
    /// several slices (as happens while one moves between slices) count once, with their
    /// best conditions. In-flight counters are carried over from `previous` for addresses
    /// that remain.
    pub fn from_slices<'a>(
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        filter: &EndpointFilter,
        previous: Option<&Endpoints>,
    ) -> Endpoints {
        let counters: HashMap<SocketAddr, &Arc<AtomicUsize>> = previous
            .map(|previous| {
                previous
                    .all
                    .iter()
                    .map(|endpoint| (endpoint.address, &endpoint.in_flight))
                    .collect()
            })
            .unwrap_or_default();
        let mut merged: HashMap<SocketAddr, Endpoint> = HashMap::new();
        for slice in slices {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                continue;
            }
            let Some(port) = filter.resolve_port(slice.ports.as_deref()) else {
                continue;
            };
            for endpoint in slice.endpoints.iter().flatten() {
                // Consumers use the first address only, as kube-proxy does.
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|address| address.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let mut conditions = Conditions {
                    ready,
                    serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                };
                if filter.publish_not_ready_addresses {
                    conditions.ready = true;
                    conditions.serving = true;
                }
                let address = SocketAddr::new(ip, port);
                let candidate = Endpoint {
                    address,
                    conditions,
                    hostname: endpoint.hostname.clone(),
                    node_name: endpoint.node_name.clone(),
                    zone: endpoint.zone.clone(),
                    target_name: endpoint
                        .target_ref
                        .as_ref()
                        .and_then(|target| target.name.clone()),
                    in_flight: counters
                        .get(&address)
                        .map(|counter| Arc::clone(counter))
                        .unwrap_or_default(),
                };
                match merged.entry(address) {
                    Entry::Vacant(vacant) => {
                        vacant.insert(candidate);
                    }
                    Entry::Occupied(mut occupied) => {
                        if candidate.conditions.rank() > occupied.get().conditions.rank() {
                            occupied.insert(candidate);
                        }
                    }
                }
            }
        }
        let mut all: Vec<Endpoint> = merged.into_values().collect();
        // A stable order makes round robin fair across rebuilds and tests repeatable.
        all.sort_by_key(|endpoint| endpoint.address);
        Endpoints::from_endpoints(all, filter.publish_not_ready_addresses)
    }

    fn from_endpoints(all: Vec<Endpoint>, publish_not_ready_addresses: bool) -> Endpoints {
        let preferred = |endpoint: &&Endpoint| {
            if publish_not_ready_addresses {
                !endpoint.conditions.terminating
            } else {
                endpoint.conditions.ready
            }
        };
        let mut usable: Vec<Endpoint> = all.iter().filter(preferred).cloned().collect();
        let mut terminating_fallback = false;
        if usable.is_empty() {
            usable = all
                .iter()
                .filter(|endpoint| endpoint.conditions.serving && endpoint.conditions.terminating)
                .cloned()
                .collect();
            terminating_fallback = !usable.is_empty();
        }
        Endpoints {
            usable,
            all,
            terminating_fallback,
        }
    }

    /// Endpoints with the given addresses, all ready: for tests and static configurations.
    pub fn ready(addresses: impl IntoIterator<Item = SocketAddr>) -> Endpoints {
        let mut all: Vec<Endpoint> = addresses
            .into_iter()
            .map(|address| Endpoint {
                address,
                conditions: Conditions {
                    ready: true,
                    serving: true,
                    terminating: false,
                },
                hostname: None,
                node_name: None,
                zone: None,
                target_name: None,
                in_flight: Arc::default(),
            })
            .collect();
        all.sort_by_key(|endpoint| endpoint.address);
        all.dedup_by_key(|endpoint| endpoint.address);
        Endpoints::from_endpoints(all, false)
    }

    /// The endpoints new connections should go to.
    pub fn usable(&self) -> &[Endpoint] {
        &self.usable
    }

    /// Every endpoint for the port, usable or not.
    pub fn all(&self) -> &[Endpoint] {
        &self.all
    }

    /// No endpoint can take a new connection.
    pub fn is_empty(&self) -> bool {
        self.usable.is_empty()
    }

    /// Whether [`usable`](Self::usable) holds terminating endpoints because none is ready.
    pub fn is_terminating_fallback(&self) -> bool {
        self.terminating_fallback
    }

    /// Whether `address` is among the usable endpoints.
    pub fn is_usable(&self, address: SocketAddr) -> bool {
        self.usable
            .binary_search_by_key(&address, |endpoint| endpoint.address)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).expect("slice")
    }

    fn addresses(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints
            .iter()
            .map(|endpoint| endpoint.address().to_string())
            .collect()
    }

    fn web_slices() -> Vec<EndpointSlice> {
        vec![
            slice(json!({
                "metadata": {"name": "web-a"}, "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
                "endpoints": [
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.1"]},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": false}},
                ]
            })),
            slice(json!({
                "metadata": {"name": "web-b"}, "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [
                    // Also in web-a: counted once, with its best conditions.
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.4", "10.0.0.40"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                ]
            })),
            slice(json!({
                "metadata": {"name": "web-fqdn"}, "addressType": "FQDN",
                "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": ["example.com"]}]
            })),
        ]
    }

    #[test]
    fn merges_slices_and_keeps_ready_endpoints() {
        let endpoints = Endpoints::from_slices(&web_slices(), &EndpointFilter::tcp("http"), None);
        assert_eq!(
            addresses(endpoints.usable()),
            ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
        );
        assert_eq!(endpoints.all().len(), 4);
        assert!(!endpoints.is_terminating_fallback());
        assert!(endpoints.is_usable("10.0.0.3:8080".parse().unwrap()));
        assert!(!endpoints.is_usable("10.0.0.4:8080".parse().unwrap()));
    }

    #[test]
    fn resolves_the_port_per_slice_by_name_or_takes_a_number() {
        let metrics = Endpoints::from_slices(&web_slices(), &EndpointFilter::tcp("metrics"), None);
        assert_eq!(
            addresses(metrics.usable()),
            ["10.0.0.1:9090", "10.0.0.2:9090"]
        );
        let numbered = Endpoints::from_slices(&web_slices(), &EndpointFilter::tcp(7000), None);
        assert_eq!(numbered.usable().len(), 3);
        assert!(numbered.usable().iter().all(|e| e.address().port() == 7000));
        let udp = EndpointFilter {
            protocol: "UDP".to_owned(),
            ..EndpointFilter::tcp("http")
        };
        assert!(
            Endpoints::from_slices(&web_slices(), &udp, None)
                .all()
                .is_empty()
        );
    }

    #[test]
    fn falls_back_to_serving_terminating_endpoints_only_when_none_is_ready() {
        let slices = [slice(json!({
            "metadata": {"name": "web"}, "addressType": "IPv4",
            "ports": [{"port": 80}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": false}},
            ]
        }))];
        let endpoints = Endpoints::from_slices(&slices, &EndpointFilter::tcp(""), None);
        assert_eq!(addresses(endpoints.usable()), ["10.0.0.1:80"]);
        assert!(endpoints.is_terminating_fallback());

        let nothing_serves = [slice(json!({
            "metadata": {"name": "web"}, "addressType": "IPv4", "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.0.0.3"], "conditions": {"ready": false}}]
        }))];
        let endpoints = Endpoints::from_slices(&nothing_serves, &EndpointFilter::tcp(""), None);
        assert!(endpoints.is_empty());
        assert!(!endpoints.is_terminating_fallback());
    }

    #[test]
    fn publish_not_ready_addresses_uses_every_endpoint_but_prefers_non_terminating() {
        let slices = [slice(json!({
            "metadata": {"name": "db"}, "addressType": "IPv4", "ports": [{"port": 5432}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": false}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true, "terminating": true}},
            ]
        }))];
        let filter = EndpointFilter {
            publish_not_ready_addresses: true,
            ..EndpointFilter::tcp("")
        };
        let endpoints = Endpoints::from_slices(&slices, &filter, None);
        assert_eq!(addresses(endpoints.usable()), ["10.0.0.1:5432"]);
        let only_terminating = [slice(json!({
            "metadata": {"name": "db"}, "addressType": "IPv4", "ports": [{"port": 5432}],
            "endpoints": [{"addresses": ["10.0.0.2"], "conditions": {"ready": true, "terminating": true}}]
        }))];
        let endpoints = Endpoints::from_slices(&only_terminating, &filter, None);
        assert_eq!(addresses(endpoints.usable()), ["10.0.0.2:5432"]);
    }

    #[test]
    fn slices_without_ports_use_the_fallback_port() {
        let slices = [slice(json!({
            "metadata": {"name": "legacy"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.9"]}]
        }))];
        assert!(Endpoints::from_slices(&slices, &EndpointFilter::tcp(""), None).is_empty());
        let filter = EndpointFilter {
            port_when_slice_has_none: Some(8443),
            ..EndpointFilter::tcp("")
        };
        let endpoints = Endpoints::from_slices(&slices, &filter, None);
        assert_eq!(addresses(endpoints.usable()), ["10.0.0.9:8443"]);
    }

    #[test]
    fn in_flight_counters_survive_a_rebuild() {
        let filter = EndpointFilter::tcp("http");
        let first = Endpoints::from_slices(&web_slices(), &filter, None);
        first.usable()[0]
            .in_flight_counter()
            .fetch_add(3, Ordering::Relaxed);
        let second = Endpoints::from_slices(&web_slices(), &filter, Some(&first));
        assert_eq!(second.usable()[0].in_flight(), 3);
        assert_eq!(second.usable()[1].in_flight(), 0);
    }
}

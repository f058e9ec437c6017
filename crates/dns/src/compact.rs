//! The cluster objects as DNS keeps them: only the fields that shape records, already parsed.
//!
//! A k8s-openapi `Service` is 824 bytes before its first string, and an `EndpointSlice`
//! carries an `Endpoint` of similar bulk per address; kept for the life of the server they
//! were the largest part of its resident memory. The watchers convert every object into the
//! forms below as it arrives and drop the original, so the Kubernetes structures live only for
//! the duration of one event. Addresses are parsed once (unparseable ones are left out, as the
//! derivation would skip them), hostnames are checked and lower-cased once, and namespace and
//! service names are [`Arc<str>`]s that [`Interner`] makes shared between every object, map key
//! and source key that names them.
//!
//! [`crate::records`] derives names and records from these forms only; a [`ClusterState`] of
//! Kubernetes objects (what tests and the benchmark build from) is converted first, so both
//! the full build and the incremental [`crate::live`] zone run the same derivation.
//!
//! [`ClusterState`]: crate::records::ClusterState

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;

use crate::records::{SERVICE_NAME_LABEL, TOLERATE_UNREADY_ANNOTATION};

/// What kind of names a Service gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// No `spec` at all: no records.
    Unspecified,
    /// `type: ExternalName`, with its target as written.
    ExternalName(Box<str>),
    /// `clusterIP: None`.
    Headless,
    /// Any other Service: its names answer with its cluster IPs.
    ClusterIp,
}

/// A Service or EndpointSlice port: name (non-empty), lower-case protocol, number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: Option<Box<str>>,
    pub protocol: Cow<'static, str>,
    pub number: u16,
}

/// What DNS reads of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub kind: ServiceKind,
    /// `spec.clusterIPs` (else `spec.clusterIP`), parsed and de-duplicated.
    pub cluster_ips: Box<[IpAddr]>,
    pub ports: Box<[Port]>,
    pub publish_not_ready_addresses: bool,
    /// The deprecated tolerate-unready annotation is `"true"`.
    pub tolerate_unready_annotation: bool,
}

/// One address of an EndpointSlice endpoint (an endpoint with two addresses is two of these).
///
/// 22 bytes: the hostname is a range of the slice's [`EndpointSlice::hostnames`] rather than
/// an `Option<Box<str>>` of its own, which took 40 bytes per address plus an allocation per
/// hostname (31,000 addresses on the benchmark cluster). Read it with
/// [`EndpointSlice::hostname`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    /// `conditions.ready`, unset counting as ready.
    pub ready: bool,
    hostname_start: u16,
    /// 0 for none (a DNS label is never empty).
    hostname_len: u8,
}

/// What DNS reads of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// The `kubernetes.io/service-name` label.
    pub service: Option<Arc<str>>,
    /// Address type IPv4 or IPv6 (FQDN slices publish nothing).
    pub ip_addresses: bool,
    pub ports: Box<[Port]>,
    pub endpoints: Box<[Endpoint]>,
    /// Every endpoint's hostname (a valid DNS label, lower-cased), one after the other.
    pub hostnames: Box<str>,
}

/// What DNS reads of a Pod (verified pod mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    /// `status.podIPs` (else `status.podIP`), parsed and de-duplicated; empty for a pod that
    /// is terminating or finished, whose addresses are not published.
    pub addresses: Box<[IpAddr]>,
}

fn text(value: Option<&String>) -> Arc<str> {
    Arc::from(value.map(String::as_str).unwrap_or_default())
}

fn protocol(value: Option<&str>) -> Cow<'static, str> {
    match value.unwrap_or("TCP") {
        "TCP" => Cow::Borrowed("tcp"),
        "UDP" => Cow::Borrowed("udp"),
        "SCTP" => Cow::Borrowed("sctp"),
        other => Cow::Owned(other.to_ascii_lowercase()),
    }
}

fn port_name(name: Option<&String>) -> Option<Box<str>> {
    name.filter(|name| !name.is_empty())
        .map(|name| Box::from(name.as_str()))
}

/// Parses addresses, leaving out unparseable ones and repeats.
pub(crate) fn parse_addresses<'a>(texts: impl IntoIterator<Item = &'a str>) -> Box<[IpAddr]> {
    let mut addresses = Vec::new();
    for text in texts {
        if let Ok(address) = text.parse::<IpAddr>()
            && !addresses.contains(&address)
        {
            addresses.push(address);
        }
    }
    addresses.into_boxed_slice()
}

pub(crate) fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

impl From<&core::Service> for Service {
    fn from(service: &core::Service) -> Self {
        let metadata = &service.metadata;
        let tolerate_unready_annotation = metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(TOLERATE_UNREADY_ANNOTATION))
            .is_some_and(|value| value == "true");
        let mut compact = Self {
            namespace: text(metadata.namespace.as_ref()),
            name: text(metadata.name.as_ref()),
            kind: ServiceKind::Unspecified,
            cluster_ips: Box::default(),
            ports: Box::default(),
            publish_not_ready_addresses: false,
            tolerate_unready_annotation,
        };
        let Some(spec) = &service.spec else {
            return compact;
        };
        compact.kind = if spec.type_.as_deref() == Some("ExternalName") {
            ServiceKind::ExternalName(Box::from(spec.external_name.as_deref().unwrap_or_default()))
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            ServiceKind::ClusterIp
        };
        compact.cluster_ips = match &spec.cluster_ips {
            Some(list) if !list.is_empty() => parse_addresses(list.iter().map(String::as_str)),
            _ => parse_addresses(spec.cluster_ip.as_deref()),
        };
        compact.ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                Some(Port {
                    name: port_name(port.name.as_ref()),
                    protocol: protocol(port.protocol.as_deref()),
                    number: u16::try_from(port.port).ok()?,
                })
            })
            .collect();
        compact.publish_not_ready_addresses = spec.publish_not_ready_addresses == Some(true);
        compact
    }
}

impl From<&discovery::EndpointSlice> for EndpointSlice {
    fn from(slice: &discovery::EndpointSlice) -> Self {
        let metadata = &slice.metadata;
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                Some(Port {
                    name: port_name(port.name.as_ref()),
                    protocol: protocol(port.protocol.as_deref()),
                    number: u16::try_from(port.port?).ok()?,
                })
            })
            .collect();
        let mut endpoints = Vec::new();
        let mut hostnames = String::new();
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true);
            let (hostname_start, hostname_len) = match endpoint
                .hostname
                .as_deref()
                .filter(|hostname| is_dns_label(hostname))
            {
                // Within u16 for any valid slice (at most 1,000 endpoints of 63 bytes each).
                Some(hostname) => match u16::try_from(hostnames.len()) {
                    Ok(start) if hostnames.len() + hostname.len() <= usize::from(u16::MAX) => {
                        hostnames.push_str(&hostname.to_ascii_lowercase());
                        (start, hostname.len() as u8)
                    }
                    _ => {
                        tracing::warn!(
                            slice = ?metadata.name,
                            hostname,
                            "EndpointSlice hostnames beyond 64 KiB in total; this one is left out"
                        );
                        (0, 0)
                    }
                },
                None => (0, 0),
            };
            for text in &endpoint.addresses {
                if let Ok(address) = text.parse::<IpAddr>() {
                    endpoints.push(Endpoint {
                        address,
                        ready,
                        hostname_start,
                        hostname_len,
                    });
                }
            }
        }
        Self {
            namespace: text(metadata.namespace.as_ref()),
            name: text(metadata.name.as_ref()),
            service: metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                .map(|service| Arc::from(service.as_str())),
            ip_addresses: matches!(slice.address_type.as_str(), "IPv4" | "IPv6"),
            ports,
            endpoints: endpoints.into_boxed_slice(),
            hostnames: hostnames.into_boxed_str(),
        }
    }
}

impl From<&core::Pod> for Pod {
    fn from(pod: &core::Pod) -> Self {
        let metadata = &pod.metadata;
        let published = metadata.deletion_timestamp.is_none()
            && pod.status.as_ref().is_some_and(|status| {
                !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
            });
        let addresses = match pod.status.as_ref().filter(|_| published) {
            None => Box::default(),
            Some(status) => match &status.pod_ips {
                Some(list) if !list.is_empty() => {
                    parse_addresses(list.iter().map(|ip| ip.ip.as_str()))
                }
                _ => parse_addresses(status.pod_ip.as_deref()),
            },
        };
        Self {
            namespace: text(metadata.namespace.as_ref()),
            name: text(metadata.name.as_ref()),
            addresses,
        }
    }
}

/// The name of a Namespace.
pub fn namespace_name(namespace: &core::Namespace) -> Arc<str> {
    text(namespace.metadata.name.as_ref())
}

/// Shares one allocation between every copy of a namespace or service name.
#[derive(Default)]
pub struct Interner {
    names: HashSet<Arc<str>>,
}

impl Interner {
    /// The shared copy of `name`. A new name is copied rather than kept: `name` was
    /// allocated by a watcher thread among that event's transient data, and a long-lived
    /// allocation there would pin that heap page (the zone copies objects likewise).
    pub fn intern(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.names.get(&**name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(&**name);
        self.names.insert(Arc::clone(&shared));
        shared
    }

    /// The shared copy of `name` if some object holds it.
    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        self.names.get(name).cloned()
    }

    /// Forgets names nothing else holds any more.
    pub fn purge(&mut self) {
        self.names.retain(|name| Arc::strong_count(name) > 1);
    }

    /// Approximate heap bytes: the table and the names.
    pub fn heap_bytes(&self) -> usize {
        self.names.capacity() * (size_of::<Arc<str>>() + 1)
            + self.names.iter().map(|name| name.len() + 16).sum::<usize>()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl Service {
    /// Shares the names with every other holder through `interner`.
    pub fn intern(&mut self, interner: &mut Interner) {
        self.namespace = interner.intern(&self.namespace);
        self.name = interner.intern(&self.name);
    }
}

impl EndpointSlice {
    /// The hostname of `endpoint`, one of this slice's endpoints.
    pub fn hostname(&self, endpoint: &Endpoint) -> Option<&str> {
        let start = usize::from(endpoint.hostname_start);
        (endpoint.hostname_len > 0)
            .then(|| {
                self.hostnames
                    .get(start..start + usize::from(endpoint.hostname_len))
            })
            .flatten()
    }
}

impl Pod {
    /// Shares the names with every other holder through `interner`.
    pub fn intern(&mut self, interner: &mut Interner) {
        self.namespace = interner.intern(&self.namespace);
        self.name = interner.intern(&self.name);
    }

    /// Approximate heap bytes owned by this record (not counting interned names).
    pub fn heap_bytes(&self) -> usize {
        size_of_val(&*self.addresses)
    }
}

/// A Service and the EndpointSlices filed under it, packed into one allocation of bytes.
///
/// The watch-fed zone keeps every object for the life of the server, but reads one only when
/// it re-derives that Service's records (an update, a full rebuild). As [`Service`] and
/// [`EndpointSlice`] structures with their own boxes of ports, endpoints and cluster IPs, a
/// Service with one slice took about 550 bytes in eight allocations, 5.8 MiB on the
/// benchmark cluster; packed it is one allocation of about 60 bytes. Deriving records
/// unpacks it first, which costs about a microsecond per Service.
///
/// The namespace and Service name are not stored (the zone's table key holds them), nor is
/// each slice's `kubernetes.io/service-name` label, which is the Service's name by filing.
/// The layout, in order: a flags byte (bit 0: the Service is present); the Service (kind,
/// ExternalName target, flags, cluster IPs, ports); the slice count; each slice (name,
/// whether it has IP addresses, ports, hostnames, endpoints). Counts and lengths are LEB128.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedService(Box<[u8]>);

impl std::fmt::Debug for PackedService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "PackedService({} bytes)", self.0.len())
    }
}

const HAS_SERVICE: u8 = 1;

impl PackedService {
    /// Packs `service` (if present) and `slices`, which are the slices labelled with its name.
    pub fn pack(service: Option<&Service>, slices: &[EndpointSlice]) -> Self {
        let mut packer = Packer(Vec::with_capacity(64));
        packer.byte(if service.is_some() { HAS_SERVICE } else { 0 });
        if let Some(service) = service {
            match &service.kind {
                ServiceKind::Unspecified => packer.byte(0),
                ServiceKind::ExternalName(target) => {
                    packer.byte(1);
                    packer.text(target);
                }
                ServiceKind::Headless => packer.byte(2),
                ServiceKind::ClusterIp => packer.byte(3),
            }
            packer.byte(
                u8::from(service.publish_not_ready_addresses)
                    | (u8::from(service.tolerate_unready_annotation) << 1),
            );
            packer.number(service.cluster_ips.len());
            for address in &service.cluster_ips {
                packer.address(*address);
            }
            packer.ports(&service.ports);
        }
        packer.number(slices.len());
        for slice in slices {
            packer.text(&slice.name);
            packer.byte(u8::from(slice.ip_addresses));
            packer.ports(&slice.ports);
            packer.text(&slice.hostnames);
            packer.number(slice.endpoints.len());
            for endpoint in &slice.endpoints {
                packer.address(endpoint.address);
                packer.byte(u8::from(endpoint.ready));
                packer.number(usize::from(endpoint.hostname_start));
                packer.byte(endpoint.hostname_len);
            }
        }
        Self(packer.0.into_boxed_slice())
    }

    /// Whether the Service itself is present (not only slices labelled with its name).
    pub fn has_service(&self) -> bool {
        self.0.first().is_some_and(|flags| flags & HAS_SERVICE != 0)
    }

    /// The Service and its slices, in the order packed, named from the table key.
    pub fn unpack(
        &self,
        namespace: &Arc<str>,
        name: &Arc<str>,
    ) -> (Option<Service>, Vec<EndpointSlice>) {
        let mut unpacker = Unpacker {
            bytes: &self.0,
            position: 0,
        };
        let service = (unpacker.byte() & HAS_SERVICE != 0).then(|| {
            let kind = match unpacker.byte() {
                0 => ServiceKind::Unspecified,
                1 => ServiceKind::ExternalName(Box::from(unpacker.text())),
                2 => ServiceKind::Headless,
                _ => ServiceKind::ClusterIp,
            };
            let flags = unpacker.byte();
            let cluster_ips = (0..unpacker.number()).map(|_| unpacker.address()).collect();
            Service {
                namespace: namespace.clone(),
                name: name.clone(),
                kind,
                cluster_ips,
                ports: unpacker.ports(),
                publish_not_ready_addresses: flags & 1 != 0,
                tolerate_unready_annotation: flags & 2 != 0,
            }
        });
        let slices = (0..unpacker.number())
            .map(|_| {
                let slice_name = Arc::from(unpacker.text());
                let ip_addresses = unpacker.byte() != 0;
                let ports = unpacker.ports();
                let hostnames = Box::from(unpacker.text());
                let endpoints = (0..unpacker.number())
                    .map(|_| Endpoint {
                        address: unpacker.address(),
                        ready: unpacker.byte() != 0,
                        hostname_start: u16::try_from(unpacker.number()).unwrap_or_default(),
                        hostname_len: unpacker.byte(),
                    })
                    .collect();
                EndpointSlice {
                    namespace: namespace.clone(),
                    name: slice_name,
                    service: Some(name.clone()),
                    ip_addresses,
                    ports,
                    endpoints,
                    hostnames,
                }
            })
            .collect();
        (service, slices)
    }

    /// Heap bytes of the packed form.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

struct Packer(Vec<u8>);

impl Packer {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// LEB128: seven bits a byte, low bits first; nearly every count and length is one byte.
    fn number(&mut self, mut number: usize) {
        while number >= 0x80 {
            self.0.push((number as u8) | 0x80);
            number >>= 7;
        }
        self.0.push(number as u8);
    }

    fn text(&mut self, text: &str) {
        self.number(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn address(&mut self, address: IpAddr) {
        match address {
            IpAddr::V4(address) => {
                self.byte(4);
                self.0.extend_from_slice(&address.octets());
            }
            IpAddr::V6(address) => {
                self.byte(6);
                self.0.extend_from_slice(&address.octets());
            }
        }
    }

    fn ports(&mut self, ports: &[Port]) {
        self.number(ports.len());
        for port in ports {
            self.0.extend_from_slice(&port.number.to_le_bytes());
            self.text(port.name.as_deref().unwrap_or_default());
            match &*port.protocol {
                "tcp" => self.byte(0),
                "udp" => self.byte(1),
                "sctp" => self.byte(2),
                other => {
                    self.byte(3);
                    self.text(other);
                }
            }
        }
    }
}

/// Reads what [`Packer`] wrote. The bytes never come from outside the process, so running
/// off the end is a bug; it reads zeros rather than panic in the zone thread.
struct Unpacker<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Unpacker<'a> {
    fn take(&mut self, count: usize) -> &'a [u8] {
        let start = self.position.min(self.bytes.len());
        let end = (start + count).min(self.bytes.len());
        debug_assert_eq!(end - start, count, "a packed Service ends early");
        self.position = start + count;
        &self.bytes[start..end]
    }

    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or_default()
    }

    fn number(&mut self) -> usize {
        let mut number = 0;
        for shift in (0..usize::BITS).step_by(7) {
            let byte = self.byte();
            number |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        number
    }

    fn text(&mut self) -> &'a str {
        let length = self.number();
        std::str::from_utf8(self.take(length)).unwrap_or_default()
    }

    fn address(&mut self) -> IpAddr {
        if self.byte() == 6 {
            let mut octets = [0; 16];
            octets.copy_from_slice(&pad::<16>(self.take(16)));
            IpAddr::from(octets)
        } else {
            IpAddr::from(pad::<4>(self.take(4)))
        }
    }

    fn ports(&mut self) -> Box<[Port]> {
        (0..self.number())
            .map(|_| {
                let number = u16::from_le_bytes(pad::<2>(self.take(2)));
                let name = Some(self.text())
                    .filter(|name| !name.is_empty())
                    .map(Box::from);
                let protocol = match self.byte() {
                    0 => Cow::Borrowed("tcp"),
                    1 => Cow::Borrowed("udp"),
                    2 => Cow::Borrowed("sctp"),
                    _ => Cow::Owned(self.text().to_owned()),
                };
                Port {
                    name,
                    protocol,
                    number,
                }
            })
            .collect()
    }
}

/// `bytes` as an array, zero-filled if short (see [`Unpacker`]).
fn pad<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0; N];
    array[..bytes.len().min(N)].copy_from_slice(&bytes[..bytes.len().min(N)]);
    array
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;
    use serde_json::json;

    #[test]
    fn a_service_keeps_what_dns_reads() {
        let service = example::service(
            "default",
            "web",
            json!({
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::a", "10.96.0.10", "bogus"],
                "ports": [{"name": "http", "port": 80}, {"port": 70000, "protocol": "UDP"},
                          {"name": "", "port": 53, "protocol": "UDP"}],
            }),
        );
        let compact = Service::from(&*service);
        assert_eq!(compact.kind, ServiceKind::ClusterIp);
        assert_eq!(
            &*compact.cluster_ips,
            &[
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fd00::a".parse().unwrap()
            ]
        );
        assert_eq!(
            &*compact.ports,
            &[
                Port {
                    name: Some("http".into()),
                    protocol: Cow::Borrowed("tcp"),
                    number: 80
                },
                Port {
                    name: None,
                    protocol: Cow::Borrowed("udp"),
                    number: 53
                }
            ]
        );
    }

    #[test]
    fn an_endpoint_with_two_addresses_is_two_entries() {
        let mut endpoint = example::endpoint("10.0.0.1", Some("Web-0"), false, false);
        endpoint["addresses"] = json!(["10.0.0.1", "nonsense", "10.0.0.2"]);
        let slice = example::slice(
            "default",
            "web-abc",
            "web",
            "IPv4",
            &[("http", 8080, "TCP")],
            vec![
                endpoint,
                example::endpoint("10.0.0.3", Some("bad.name"), true, false),
            ],
        );
        let compact = EndpointSlice::from(&*slice);
        assert_eq!(compact.service.as_deref(), Some("web"));
        let summary: Vec<(String, bool, Option<&str>)> = compact
            .endpoints
            .iter()
            .map(|endpoint| {
                (
                    endpoint.address.to_string(),
                    endpoint.ready,
                    compact.hostname(endpoint),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("10.0.0.1".to_owned(), false, Some("web-0")),
                ("10.0.0.2".to_owned(), false, Some("web-0")),
                ("10.0.0.3".to_owned(), true, None),
            ]
        );
    }

    #[test]
    fn interned_names_share_one_allocation() {
        let mut interner = Interner::default();
        let first = interner.intern(&Arc::from("default"));
        let second = interner.intern(&Arc::from("default"));
        assert!(Arc::ptr_eq(&first, &second));
        drop((first, second));
        interner.purge();
        assert!(interner.is_empty());
    }

    #[test]
    fn a_packed_service_unpacks_to_what_was_packed() {
        let service = Service::from(&*example::service(
            "default",
            "web",
            json!({
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::a"],
                "publishNotReadyAddresses": true,
                "ports": [{"name": "http", "port": 80}, {"port": 9000, "protocol": "SCTP"}],
            }),
        ));
        let external = Service::from(&*example::service(
            "default",
            "mail",
            json!({"type": "ExternalName", "externalName": "mail.example.com"}),
        ));
        let mut named = example::endpoint("10.0.0.1", Some("web-0"), true, false);
        named["addresses"] = json!(["10.0.0.1", "fd00::1"]);
        let slices: Vec<EndpointSlice> = [
            example::slice(
                "default",
                "web-abc",
                "web",
                "IPv4",
                &[("http", 8080, "TCP"), ("odd", 7, "QUIC")],
                vec![
                    named,
                    example::endpoint("10.0.0.2", None, false, false),
                    example::endpoint("10.0.0.3", Some("web-2"), true, false),
                ],
            ),
            example::slice("default", "web-def", "web", "FQDN", &[], vec![]),
        ]
        .iter()
        .map(|slice| EndpointSlice::from(&**slice))
        .collect();
        let (namespace, name) = (service.namespace.clone(), service.name.clone());
        for (service, slices) in [
            (Some(&service), &slices[..]),
            (None, &slices[..1]),
            (Some(&service), &[][..]),
            (Some(&external), &[][..]),
        ] {
            let packed = PackedService::pack(service, slices);
            assert_eq!(packed.has_service(), service.is_some());
            let name = service.map_or(name.clone(), |service| service.name.clone());
            let (unpacked_service, unpacked_slices) = packed.unpack(&namespace, &name);
            assert_eq!(unpacked_service.as_ref(), service);
            assert_eq!(unpacked_slices, slices);
        }
        assert!(
            PackedService::pack(Some(&service), &slices).heap_bytes() < 160,
            "a Service with two slices and four addresses packs small"
        );
    }

    #[test]
    fn packed_numbers_round_trip_across_byte_boundaries() {
        for number in [0, 1, 127, 128, 300, 16_383, 16_384, 65_535, usize::MAX >> 1] {
            let mut packer = Packer(Vec::new());
            packer.number(number);
            let mut unpacker = Unpacker {
                bytes: &packer.0,
                position: 0,
            };
            assert_eq!(unpacker.number(), number);
            assert_eq!(unpacker.position, packer.0.len());
        }
    }
}

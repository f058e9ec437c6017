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

    /// Approximate heap bytes owned by this record (not counting interned names).
    pub fn heap_bytes(&self) -> usize {
        let external = match &self.kind {
            ServiceKind::ExternalName(target) => target.len(),
            _ => 0,
        };
        external
            + size_of_val(&*self.cluster_ips)
            + size_of_val(&*self.ports)
            + self.ports.iter().map(Port::heap_bytes).sum::<usize>()
    }
}

impl Port {
    fn heap_bytes(&self) -> usize {
        self.name.as_ref().map_or(0, |name| name.len())
            + match &self.protocol {
                Cow::Owned(protocol) => protocol.capacity(),
                Cow::Borrowed(_) => 0,
            }
    }
}

impl EndpointSlice {
    /// Shares the names with every other holder through `interner`.
    pub fn intern(&mut self, interner: &mut Interner) {
        self.namespace = interner.intern(&self.namespace);
        self.name = interner.intern(&self.name);
        if let Some(service) = &mut self.service {
            *service = interner.intern(service);
        }
    }

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

    /// Approximate heap bytes owned by this record (not counting interned names).
    pub fn heap_bytes(&self) -> usize {
        size_of_val(&*self.ports)
            + self.ports.iter().map(Port::heap_bytes).sum::<usize>()
            + size_of_val(&*self.endpoints)
            + self.hostnames.len()
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
}

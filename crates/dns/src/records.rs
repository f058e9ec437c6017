//! From cluster objects to the set of DNS names and records the zone holds.
//!
//! This is the build side of a snapshot: per source for an incremental update, over the whole
//! cluster for a full build; it may allocate freely. It reads the [`crate::compact`] form of
//! the objects ([`collect`] converts a [`ClusterState`] of Kubernetes objects first). The
//! result, [`ZoneRecords`], is a map from lower-case wire names to the plain records at that
//! name, which [`crate::snapshot`] then encodes into the compact query index.
//!
//! Choices where the Kubernetes DNS specification 1.1.0 and CoreDNS differ (dns-spec.md §16):
//!
//! * Readiness comes from EndpointSlice `conditions.ready` (unset counts as ready), as in
//!   CoreDNS. A Service with `publishNotReadyAddresses: true` publishes every endpoint (the
//!   slice controller already marks them ready; this also covers hand-written slices).
//! * The deprecated annotation `service.alpha.kubernetes.io/tolerate-unready-endpoints:
//!   "true"` publishes not-ready endpoints too, as the spec's text still says. CoreDNS ignores
//!   it (and dns-spec.md §10.3 recommends ignoring it); set
//!   [`RecordSettings::tolerate_unready_annotation`] to `false` for CoreDNS behaviour.
//! * A headless service without ready endpoints does not exist (NXDOMAIN), per spec and CoreDNS.
//! * Headless SRV records carry the EndpointSlice port (the resolved targetPort), like CoreDNS
//!   and kube-dns, not the Service port: with no virtual IP, that is the port a client dials.
//! * Endpoint names are the slice's `hostname`, else the address with `.`/`:` replaced by `-`
//!   (CoreDNS's system-assigned name). They exist under ClusterIP services too (CoreDNS,
//!   documented on kubernetes.io).
//! * PTR records: ClusterIP service addresses and ready endpoints of headless services (the
//!   spec's set; CoreDNS also publishes non-headless endpoints). When an address has several
//!   names, hostname-bearing ones come first, since `getnameinfo` takes the first.
//! * An ExternalName that is an IP address is NXDOMAIN (CoreDNS), logged as a warning.
//! * `_port._proto` names require the underscores; `_proto.<svc>` is an empty non-terminal
//!   (NODATA, RFC 8020) rather than CoreDNS's NXDOMAIN.
//! * Pod records in verified mode index every `status.podIPs` entry, not only the primary IP,
//!   and skip terminating or finished pods.
//! * EndpointSlices of address type FQDN are ignored.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::compact::{self, ServiceKind};
use crate::wire::encode_name;

/// The deprecated annotation that used to publish not-ready endpoints.
pub const TOLERATE_UNREADY_ANNOTATION: &str =
    "service.alpha.kubernetes.io/tolerate-unready-endpoints";
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// How `<dashed-ip>.<namespace>.pod.<zone>` names are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PodMode {
    /// No pod records at all (CoreDNS's default).
    #[default]
    Disabled,
    /// Any well-formed dashed address in an existing namespace answers with that address.
    Insecure,
    /// Only addresses of pods that exist in that namespace answer (needs a Pod watch).
    Verified,
}

impl std::str::FromStr for PodMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "disabled" => Ok(Self::Disabled),
            "insecure" => Ok(Self::Insecure),
            "verified" => Ok(Self::Verified),
            other => Err(format!(
                "unknown pod mode {other:?} (expected disabled, insecure or verified)"
            )),
        }
    }
}

/// The Kubernetes objects a snapshot is built from.
#[derive(Clone, Debug, Default)]
pub struct ClusterState {
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub namespaces: Vec<Arc<Namespace>>,
    /// Only read in [`PodMode::Verified`].
    pub pods: Vec<Arc<Pod>>,
}

/// Settings that shape which records exist.
#[derive(Clone, Debug)]
pub struct RecordSettings {
    /// The cluster zone, e.g. `cluster.local`.
    pub zone: String,
    pub pod_mode: PodMode,
    pub tolerate_unready_annotation: bool,
    /// Addresses of `ns.dns.<zone>` when the cluster has no `kube-system/kube-dns` Service.
    pub fallback_nameserver_addresses: Vec<IpAddr>,
}

/// One SRV record before encoding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceRecord {
    pub port: u16,
    /// Lower-case wire-format target.
    pub target: Vec<u8>,
}

/// Everything at one name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRecords {
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// Rotate A/AAAA answers between queries (headless service names).
    pub rotate: bool,
    pub services: Vec<ServiceRecord>,
    /// PTR targets (wire format); hostname-bearing targets first.
    pub pointers: Vec<Vec<u8>>,
    /// ExternalName target (wire format).
    pub alias: Option<Vec<u8>>,
    pub text: Option<String>,
    /// The zone apex (SOA, NS).
    pub apex: bool,
    /// PTR targets with an explicit hostname, so they sort first.
    hostname_pointers: usize,
}

/// The whole zone before encoding: lower-case wire name → records. Names present with no
/// records are empty non-terminals (they exist: NODATA, not NXDOMAIN).
#[derive(Debug, Default)]
pub struct ZoneRecords {
    pub zone: Vec<u8>,
    pub names: HashMap<Vec<u8>, NameRecords>,
}

/// Read access to the records of any name, as the encoder needs it for SRV targets, alias
/// chains and glue. A full build reads a map; the incremental [`crate::live`] side merges the
/// name's contributions on demand (and notes which names an encoding read).
pub trait RecordLookup {
    fn lookup(&self, name: &[u8]) -> Option<Cow<'_, NameRecords>>;
}

impl RecordLookup for HashMap<Vec<u8>, NameRecords> {
    fn lookup(&self, name: &[u8]) -> Option<Cow<'_, NameRecords>> {
        self.get(name).map(Cow::Borrowed)
    }
}

impl NameRecords {
    /// Adds `part` (one source's records at this name) after what is already here, with the
    /// same de-duplication and ordering [`collect`] applies when sources are read in order.
    pub fn merge(&mut self, part: &NameRecords) {
        for &address in &part.ipv4 {
            if !self.ipv4.contains(&address) {
                self.ipv4.push(address);
            }
        }
        for &address in &part.ipv6 {
            if !self.ipv6.contains(&address) {
                self.ipv6.push(address);
            }
        }
        self.rotate |= part.rotate;
        for record in &part.services {
            if !self.services.contains(record) {
                self.services.push(record.clone());
            }
        }
        for (position, target) in part.pointers.iter().enumerate() {
            self.add_pointer(target.clone(), position < part.hostname_pointers);
        }
        if part.alias.is_some() {
            self.alias.clone_from(&part.alias);
        }
        if part.text.is_some() {
            self.text.clone_from(&part.text);
        }
        self.apex |= part.apex;
    }

    fn add_pointer(&mut self, target: Vec<u8>, has_hostname: bool) {
        if self.pointers.contains(&target) {
            return;
        }
        if has_hostname {
            self.pointers.insert(self.hostname_pointers, target);
            self.hostname_pointers += 1;
        } else {
            self.pointers.push(target);
        }
    }
}

impl ZoneRecords {
    fn entry(&mut self, name: Vec<u8>) -> &mut NameRecords {
        self.names.entry(name).or_default()
    }

    fn add_ip(&mut self, name: Vec<u8>, address: IpAddr) {
        let records = self.entry(name);
        match address {
            IpAddr::V4(v4) if !records.ipv4.contains(&v4) => records.ipv4.push(v4),
            IpAddr::V6(v6) if !records.ipv6.contains(&v6) => records.ipv6.push(v6),
            _ => {}
        }
    }

    fn add_service_record(&mut self, name: Vec<u8>, record: ServiceRecord) {
        let records = self.entry(name);
        if !records.services.contains(&record) {
            records.services.push(record);
        }
    }

    fn add_pointer(&mut self, address: IpAddr, target: Vec<u8>, has_hostname: bool) {
        let Some(name) = reverse_name(address) else {
            return;
        };
        self.entry(name).add_pointer(target, has_hostname);
    }
}

/// Builds a name below the zone from dotted labels, e.g. `["web-0", "nginx", "default", "svc"]`.
fn zone_name(labels: &[&str], zone: &str) -> Option<Vec<u8>> {
    let mut dotted = labels.join(".");
    if !zone.is_empty() {
        if !dotted.is_empty() {
            dotted.push('.');
        }
        dotted.push_str(zone);
    }
    encode_name(&dotted)
}

/// CoreDNS's system-assigned endpoint name: the address with separators turned into dashes.
pub fn dashed_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut text = v6.to_string().replace(':', "-");
            if text.starts_with('-') {
                text.insert(0, '0');
            }
            if text.ends_with('-') {
                text.push('0');
            }
            text
        }
    }
}

/// Reads a dashed pod label back into an address (dns-spec.md §8): exactly three dashes and no
/// empty group is IPv4, anything else is tried as IPv6.
pub fn parse_dashed_address(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    let dashes = text.bytes().filter(|&byte| byte == b'-').count();
    if dashes == 3 && !text.contains("--") {
        return text
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4);
    }
    text.replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The reverse-lookup name of an address, in wire format.
pub fn reverse_name(address: IpAddr) -> Option<Vec<u8>> {
    let dotted = match address {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut text = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                text.push_str(&format!("{:x}.{:x}.", byte & 0xF, byte >> 4));
            }
            text.push_str("ip6.arpa");
            text
        }
    };
    encode_name(&dotted)
}

/// One endpoint address as DNS sees it.
struct PublishedEndpoint<'a> {
    address: IpAddr,
    name: Cow<'a, str>,
    has_hostname: bool,
    /// Ports of the slice it came from.
    ports: &'a [compact::Port],
}

fn published_endpoints<'a>(
    slices: &[&'a compact::EndpointSlice],
    publish_all: bool,
) -> Vec<PublishedEndpoint<'a>> {
    let mut published = Vec::new();
    let mut seen = HashSet::new();
    for (slice_index, slice) in slices.iter().enumerate() {
        if !slice.ip_addresses {
            continue;
        }
        for endpoint in slice.endpoints.iter() {
            if !(endpoint.ready || publish_all) {
                continue;
            }
            let hostname = slice.hostname(endpoint);
            let name = match hostname {
                Some(hostname) => Cow::Borrowed(hostname),
                None => Cow::Owned(dashed_address(endpoint.address)),
            };
            // The same address may sit in two slices while the controller rebalances.
            if !seen.insert((endpoint.address, name.clone(), slice_index)) {
                continue;
            }
            published.push(PublishedEndpoint {
                address: endpoint.address,
                name,
                has_hostname: hostname.is_some(),
                ports: &slice.ports,
            });
        }
    }
    published
}

/// The cluster zone as typed in the settings, lower-cased and without the final dot.
fn zone_text(settings: &RecordSettings) -> String {
    settings.zone.trim_end_matches('.').to_ascii_lowercase()
}

fn empty_zone(settings: &RecordSettings) -> ZoneRecords {
    ZoneRecords {
        zone: encode_name(&zone_text(settings)).unwrap_or_else(|| vec![0]),
        names: HashMap::new(),
    }
}

/// The names that exist whatever the cluster holds: the apexes, `svc`, `pod`, `dns` and
/// `dns-version`.
pub fn fixed_part(settings: &RecordSettings) -> ZoneRecords {
    let zone = &zone_text(settings);
    let mut records = empty_zone(settings);
    let apex = records.zone.clone();
    records.entry(apex).apex = true;
    for reverse_apex in ["in-addr.arpa", "ip6.arpa"] {
        if let Some(name) = encode_name(reverse_apex) {
            records.entry(name).apex = true;
        }
    }
    for empty in ["svc", "pod", "dns"] {
        if let Some(name) = zone_name(&[empty], zone) {
            records.entry(name);
        }
    }
    if let Some(name) = zone_name(&["dns-version"], zone) {
        records.entry(name).text = Some(SCHEMA_VERSION.to_owned());
    }
    records
}

/// The empty non-terminals of one namespace that exists (as an object or through a Service).
pub fn namespace_part(namespace: &str, settings: &RecordSettings) -> ZoneRecords {
    let zone = &zone_text(settings);
    let mut records = empty_zone(settings);
    add_namespace(&mut records, namespace, zone, settings);
    records
}

fn add_namespace(
    records: &mut ZoneRecords,
    namespace: &str,
    zone: &str,
    settings: &RecordSettings,
) {
    if let Some(name) = zone_name(&[namespace, "svc"], zone) {
        records.entry(name);
    }
    if settings.pod_mode != PodMode::Disabled
        && let Some(name) = zone_name(&[namespace, "pod"], zone)
    {
        records.entry(name);
    }
}

/// The records of one Service given its EndpointSlices (sorted by name).
pub fn service_part(
    service: &compact::Service,
    slices: &[&compact::EndpointSlice],
    settings: &RecordSettings,
) -> ZoneRecords {
    let mut records = empty_zone(settings);
    add_service(&mut records, service, slices, settings);
    records
}

/// `ns.dns.<zone>`: the addresses of `kube-system/kube-dns` if it has cluster IPs, else the
/// configured fallback.
pub fn nameserver_part(
    kube_dns: Option<&compact::Service>,
    settings: &RecordSettings,
) -> ZoneRecords {
    let mut records = empty_zone(settings);
    let addresses = kube_dns
        .map(|service| service.cluster_ips.to_vec())
        .unwrap_or_default();
    add_nameserver(&mut records, addresses, &zone_text(settings), settings);
    records
}

fn add_nameserver(
    records: &mut ZoneRecords,
    mut addresses: Vec<IpAddr>,
    zone: &str,
    settings: &RecordSettings,
) {
    if addresses.is_empty() {
        addresses = settings.fallback_nameserver_addresses.clone();
    }
    if let Some(name) = zone_name(&["ns", "dns"], zone) {
        for address in addresses {
            records.add_ip(name.clone(), address);
        }
    }
}

/// The records of one Pod (verified pod mode only; empty otherwise).
pub fn pod_part(pod: &compact::Pod, settings: &RecordSettings) -> ZoneRecords {
    let mut records = empty_zone(settings);
    if settings.pod_mode == PodMode::Verified {
        add_pod(&mut records, pod, &zone_text(settings));
    }
    records
}

/// The cluster objects of a [`ClusterState`] in the form the derivation reads.
#[derive(Default)]
pub struct CompactState {
    pub services: Vec<compact::Service>,
    pub endpoint_slices: Vec<compact::EndpointSlice>,
    pub namespaces: Vec<Arc<str>>,
    pub pods: Vec<compact::Pod>,
}

impl From<&ClusterState> for CompactState {
    fn from(state: &ClusterState) -> Self {
        Self {
            services: state
                .services
                .iter()
                .map(|service| (&**service).into())
                .collect(),
            endpoint_slices: state
                .endpoint_slices
                .iter()
                .map(|slice| (&**slice).into())
                .collect(),
            namespaces: state
                .namespaces
                .iter()
                .map(|namespace| compact::namespace_name(namespace))
                .collect(),
            pods: state.pods.iter().map(|pod| (&**pod).into()).collect(),
        }
    }
}

/// Collects every name and record of the zone from the cluster objects, from scratch.
pub fn collect(state: &ClusterState, settings: &RecordSettings) -> ZoneRecords {
    collect_compact(&CompactState::from(state), settings)
}

/// [`collect`] from objects already in compact form.
pub fn collect_compact(state: &CompactState, settings: &RecordSettings) -> ZoneRecords {
    let zone_text = zone_text(settings);
    let zone = &zone_text;
    let mut records = fixed_part(settings);

    let mut namespaces: BTreeSet<&str> = state
        .namespaces
        .iter()
        .map(|namespace| &**namespace)
        .filter(|namespace| !namespace.is_empty())
        .collect();
    for service in &state.services {
        if !service.namespace.is_empty() {
            namespaces.insert(&service.namespace);
        }
    }
    for namespace in &namespaces {
        add_namespace(&mut records, namespace, zone, settings);
    }

    let mut slices_by_service: HashMap<(&str, &str), Vec<&compact::EndpointSlice>> = HashMap::new();
    for slice in &state.endpoint_slices {
        let Some(service) = slice.service.as_deref() else {
            continue;
        };
        slices_by_service
            .entry((&slice.namespace, service))
            .or_default()
            .push(slice);
    }
    for slices in slices_by_service.values_mut() {
        slices.sort_by(|left, right| {
            (&left.namespace, &left.name).cmp(&(&right.namespace, &right.name))
        });
    }

    let mut services: Vec<&compact::Service> = state.services.iter().collect();
    services
        .sort_by(|left, right| (&left.namespace, &left.name).cmp(&(&right.namespace, &right.name)));
    let mut nameserver_addresses = Vec::new();
    for service in services {
        if service.namespace.is_empty() || service.name.is_empty() {
            continue;
        }
        if (&*service.namespace, &*service.name) == ("kube-system", "kube-dns") {
            nameserver_addresses = service.cluster_ips.to_vec();
        }
        let slices = slices_by_service
            .get(&(&*service.namespace, &*service.name))
            .map(Vec::as_slice)
            .unwrap_or_default();
        add_service(&mut records, service, slices, settings);
    }
    add_nameserver(&mut records, nameserver_addresses, zone, settings);

    if settings.pod_mode == PodMode::Verified {
        let mut pods: Vec<&compact::Pod> = state.pods.iter().collect();
        pods.sort_by(|left, right| {
            (&left.namespace, &left.name).cmp(&(&right.namespace, &right.name))
        });
        for pod in pods {
            add_pod(&mut records, pod, zone);
        }
    }
    records
}

fn add_service(
    records: &mut ZoneRecords,
    service: &compact::Service,
    slices: &[&compact::EndpointSlice],
    settings: &RecordSettings,
) {
    let (namespace, name) = (&*service.namespace, &*service.name);
    if namespace.is_empty() || name.is_empty() {
        return;
    }
    let zone = zone_text(settings);
    let Some(service_name) = zone_name(&[name, namespace, "svc"], &zone) else {
        return;
    };
    let headless = match &service.kind {
        ServiceKind::Unspecified => return,
        ServiceKind::ExternalName(target) => {
            let target = target.trim_end_matches('.');
            if target.parse::<IpAddr>().is_ok() {
                tracing::warn!(
                    service = %format!("{namespace}/{name}"),
                    target,
                    "ExternalName holds an IP address; DNS cannot alias to an address, so the name answers NXDOMAIN"
                );
                return;
            }
            if let Some(target) = encode_name(target).filter(|target| target.len() > 1) {
                records.entry(service_name).alias = Some(target);
            }
            return;
        }
        ServiceKind::Headless => true,
        ServiceKind::ClusterIp => false,
    };

    let publish_all = service.publish_not_ready_addresses
        || (settings.tolerate_unready_annotation && service.tolerate_unready_annotation);
    let endpoints = published_endpoints(slices, publish_all);

    if headless && endpoints.is_empty() {
        return;
    }
    records.entry(service_name.clone()).rotate = headless;

    if !headless {
        for &address in service.cluster_ips.iter() {
            records.add_ip(service_name.clone(), address);
            records.add_pointer(address, service_name.clone(), false);
        }
        for port in service.ports.iter() {
            let record = ServiceRecord {
                port: port.number,
                target: service_name.clone(),
            };
            records.add_service_record(service_name.clone(), record.clone());
            if let Some(port_name) = port.name.as_deref() {
                add_port_names(
                    records,
                    port_name,
                    &port.protocol,
                    name,
                    namespace,
                    &zone,
                    record,
                );
            }
        }
    }

    for endpoint in &endpoints {
        let Some(endpoint_name) = zone_name(&[&endpoint.name, name, namespace, "svc"], &zone)
        else {
            continue;
        };
        records.add_ip(endpoint_name.clone(), endpoint.address);
        if !headless {
            continue;
        }
        records.add_ip(service_name.clone(), endpoint.address);
        records.add_pointer(
            endpoint.address,
            endpoint_name.clone(),
            endpoint.has_hostname,
        );
        for port in endpoint.ports {
            let record = ServiceRecord {
                port: port.number,
                target: endpoint_name.clone(),
            };
            records.add_service_record(service_name.clone(), record.clone());
            records.add_service_record(endpoint_name.clone(), record.clone());
            if let Some(port_name) = port.name.as_deref() {
                add_port_names(
                    records,
                    port_name,
                    &port.protocol,
                    name,
                    namespace,
                    &zone,
                    record,
                );
            }
        }
    }
}

fn add_port_names(
    records: &mut ZoneRecords,
    port_name: &str,
    protocol: &str,
    service: &str,
    namespace: &str,
    zone: &str,
    record: ServiceRecord,
) {
    let port_label = format!("_{}", port_name.to_ascii_lowercase());
    let protocol_label = format!("_{protocol}");
    if let Some(name) = zone_name(
        &[&port_label, &protocol_label, service, namespace, "svc"],
        zone,
    ) {
        records.add_service_record(name, record);
    }
    if let Some(name) = zone_name(&[&protocol_label, service, namespace, "svc"], zone) {
        records.entry(name);
    }
}

fn add_pod(records: &mut ZoneRecords, pod: &compact::Pod, zone: &str) {
    if pod.namespace.is_empty() {
        return;
    }
    for &address in pod.addresses.iter() {
        if let Some(name) = zone_name(&[&dashed_address(address), &pod.namespace, "pod"], zone) {
            records.add_ip(name, address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_addresses_round_trip() {
        for text in ["10.244.2.50", "fd00:10:244:1::a", "::1", "fd00::"] {
            let address: IpAddr = text.parse().unwrap();
            let dashed = dashed_address(address);
            assert!(
                !dashed.starts_with('-') && !dashed.ends_with('-'),
                "{dashed}"
            );
            assert_eq!(parse_dashed_address(dashed.as_bytes()), Some(address));
        }
        assert_eq!(
            dashed_address("fd00:10:244:1::a".parse().unwrap()),
            "fd00-10-244-1--a"
        );
        assert_eq!(parse_dashed_address(b"blah"), None);
        assert_eq!(parse_dashed_address(b"1-2-3"), None);
    }

    #[test]
    fn reverse_names() {
        let v4 = reverse_name("10.96.10.20".parse().unwrap()).unwrap();
        assert_eq!(crate::wire::display_name(&v4), "20.10.96.10.in-addr.arpa.");
        let v6 = reverse_name("fd00:10:96::1e".parse().unwrap()).unwrap();
        assert_eq!(
            crate::wire::display_name(&v6),
            "e.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."
        );
    }
}

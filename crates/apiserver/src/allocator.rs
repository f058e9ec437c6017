//! ClusterIP and NodePort allocation.
//!
//! The API server is the store's only writer, so the allocators are in memory: rebuilt from the
//! stored Services at start-up, changed only under their mutex. A create reserves what it needs
//! before it writes; a [`Reservation`] that is not kept (the write failed, validation refused
//! the object) gives everything back when dropped, so a refused create never leaks an address
//! or a port. A delete releases after the store has removed the object.
//!
//! Dynamic allocation walks the range from a rotating cursor, so an address just released is
//! the last to be handed out again (clients that cached it are not sent to a new service at
//! once). The first address of the service range belongs to the `kubernetes` service and the
//! tenth to `kube-dns`, as kubeadm lays them out; neither is ever handed out dynamically.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// The NodePort range kube-apiserver uses by default.
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// An IPv4 CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (want a.b.c.d/n)"))?;
        let base: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|prefix| (8..=30).contains(prefix))
            .ok_or_else(|| format!("{prefix:?} is not a prefix length between 8 and 30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(base) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.base, self.prefix)
    }
}

impl Cidr {
    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let offset = u32::from(address).wrapping_sub(u32::from(self.base));
        offset < self.size()
    }

    /// The `n`th address of the block (0 is the network address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }
}

/// Why an allocation was refused; the caller turns it into a 422 naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error(
        "failed to allocate IP {address}: provided IP is not in the valid range. The range of valid IPs is {range}"
    )]
    IpOutOfRange { address: String, range: String },
    #[error("failed to allocate IP {address}: provided IP is already allocated")]
    IpTaken { address: String },
    #[error("failed to allocate a serviceIP: range is full")]
    IpRangeFull,
    #[error("provided port is not in the valid range. The range of valid ports is 30000-32767")]
    PortOutOfRange { port: i64 },
    #[error("provided port is already allocated")]
    PortTaken { port: i64 },
    #[error("range is full")]
    PortRangeFull,
}

struct IpPool {
    range: Cidr,
    used: HashSet<u32>,
    cursor: u32,
}

struct PortPool {
    used: HashSet<u16>,
    cursor: u16,
}

/// The server's ClusterIP and NodePort allocators.
pub struct Allocators {
    ips: Mutex<IpPool>,
    ports: Mutex<PortPool>,
}

/// What one write reserved. Dropped without [`Reservation::keep`], it is given back.
pub struct Reservation {
    allocators: Arc<Allocators>,
    ips: Vec<u32>,
    ports: Vec<u16>,
    kept: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Reservation")
            .field("ips", &self.ips)
            .field("ports", &self.ports)
            .field("kept", &self.kept)
            .finish()
    }
}

impl Reservation {
    /// The write went through: the reservation stays allocated.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            self.allocators.release_raw(&self.ips, &self.ports);
        }
    }
}

/// A Service's allocation-relevant facts, read from its JSON.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServiceAllocations {
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_ports: Vec<u16>,
}

impl ServiceAllocations {
    pub fn of(service: &Value) -> ServiceAllocations {
        let cluster_ips = service
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .map(|ips| {
                ips.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|ip| ip.parse().ok())
                    .collect()
            })
            .or_else(|| {
                service
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .and_then(|ip| ip.parse().ok())
                    .map(|ip| vec![ip])
            })
            .unwrap_or_default();
        let node_ports = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|port| port.get("nodePort").and_then(Value::as_u64))
                    .filter_map(|port| u16::try_from(port).ok())
                    .collect()
            })
            .unwrap_or_default();
        ServiceAllocations {
            cluster_ips,
            node_ports,
        }
    }
}

impl Allocators {
    pub fn new(service_range: Cidr) -> Arc<Allocators> {
        Arc::new(Allocators {
            ips: Mutex::new(IpPool {
                range: service_range,
                used: HashSet::new(),
                cursor: 11,
            }),
            ports: Mutex::new(PortPool {
                used: HashSet::new(),
                cursor: *NODE_PORT_RANGE.start(),
            }),
        })
    }

    pub fn service_range(&self) -> Cidr {
        self.ips.lock().expect("allocator lock").range
    }

    /// The address the `kubernetes` service gets: the first of the range.
    pub fn kubernetes_service_ip(&self) -> Ipv4Addr {
        self.service_range().nth(1)
    }

    /// The address `kube-dns` gets: the tenth of the range.
    pub fn dns_service_ip(&self) -> Ipv4Addr {
        self.service_range().nth(10)
    }

    /// Marks what a stored Service holds as used (start-up).
    pub fn mark_used(&self, allocations: &ServiceAllocations) {
        let mut ips = self.ips.lock().expect("allocator lock");
        for ip in &allocations.cluster_ips {
            if ips.range.contains(*ip) {
                ips.used.insert(u32::from(*ip));
            }
        }
        drop(ips);
        let mut ports = self.ports.lock().expect("allocator lock");
        ports.used.extend(allocations.node_ports.iter().copied());
    }

    /// Gives back what a deleted (or changed) Service held.
    pub fn release(&self, allocations: &ServiceAllocations) {
        let ips: Vec<u32> = allocations
            .cluster_ips
            .iter()
            .map(|ip| u32::from(*ip))
            .collect();
        self.release_raw(&ips, &allocations.node_ports);
    }

    fn release_raw(&self, ips: &[u32], ports: &[u16]) {
        let mut pool = self.ips.lock().expect("allocator lock");
        for ip in ips {
            pool.used.remove(ip);
        }
        drop(pool);
        let mut pool = self.ports.lock().expect("allocator lock");
        for port in ports {
            pool.used.remove(port);
        }
    }

    /// An empty reservation to add to.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            allocators: self.clone(),
            ips: Vec::new(),
            ports: Vec::new(),
            kept: false,
        }
    }

    /// Reserves a requested address, or the next free one with `None`.
    pub fn reserve_ip(
        &self,
        reservation: &mut Reservation,
        requested: Option<&str>,
    ) -> Result<Ipv4Addr, AllocationError> {
        let mut pool = self.ips.lock().expect("allocator lock");
        let range = pool.range;
        let address = match requested {
            Some(text) => {
                let address: Ipv4Addr =
                    text.parse().map_err(|_| AllocationError::IpOutOfRange {
                        address: text.to_string(),
                        range: range.to_string(),
                    })?;
                // The network and broadcast addresses are never service addresses.
                let offset = u32::from(address).wrapping_sub(u32::from(range.base));
                if !range.contains(address) || offset == 0 || offset == range.size() - 1 {
                    return Err(AllocationError::IpOutOfRange {
                        address: text.to_string(),
                        range: range.to_string(),
                    });
                }
                if pool.used.contains(&u32::from(address)) {
                    return Err(AllocationError::IpTaken {
                        address: text.to_string(),
                    });
                }
                address
            }
            None => {
                let usable = range.size() - 2;
                let mut found = None;
                for step in 0..usable {
                    let offset = 1 + (pool.cursor - 1 + step) % usable;
                    // The first and tenth addresses are kept for the kubernetes and kube-dns
                    // services; they are taken only when asked for by address.
                    if offset == 1 || offset == 10 {
                        continue;
                    }
                    let candidate = u32::from(range.base) + offset;
                    if !pool.used.contains(&candidate) {
                        pool.cursor = 1 + offset % usable;
                        found = Some(Ipv4Addr::from(candidate));
                        break;
                    }
                }
                found.ok_or(AllocationError::IpRangeFull)?
            }
        };
        pool.used.insert(u32::from(address));
        reservation.ips.push(u32::from(address));
        Ok(address)
    }

    /// Reserves a requested node port, or the next free one with `None`.
    pub fn reserve_port(
        &self,
        reservation: &mut Reservation,
        requested: Option<i64>,
    ) -> Result<u16, AllocationError> {
        let mut pool = self.ports.lock().expect("allocator lock");
        let port = match requested {
            Some(port) => {
                let valid = u16::try_from(port)
                    .ok()
                    .filter(|port| NODE_PORT_RANGE.contains(port))
                    .ok_or(AllocationError::PortOutOfRange { port })?;
                if pool.used.contains(&valid) {
                    return Err(AllocationError::PortTaken { port });
                }
                valid
            }
            None => {
                let start = *NODE_PORT_RANGE.start();
                let size = NODE_PORT_RANGE.len() as u16;
                let mut found = None;
                for step in 0..size {
                    let candidate = start + (pool.cursor - start + step) % size;
                    if !pool.used.contains(&candidate) {
                        pool.cursor = start + (candidate - start + 1) % size;
                        found = Some(candidate);
                        break;
                    }
                }
                found.ok_or(AllocationError::PortRangeFull)?
            }
        };
        pool.used.insert(port);
        reservation.ports.push(port);
        Ok(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocators() -> Arc<Allocators> {
        Allocators::new("127.96.0.0/16".parse().unwrap())
    }

    #[test]
    fn dynamic_addresses_skip_the_reserved_ones_and_rotate() {
        let allocators = allocators();
        let mut reservation = allocators.reserve();
        let first = allocators.reserve_ip(&mut reservation, None).unwrap();
        assert_eq!(first, Ipv4Addr::new(127, 96, 0, 11));
        let second = allocators.reserve_ip(&mut reservation, None).unwrap();
        assert_eq!(second, Ipv4Addr::new(127, 96, 0, 12));
        reservation.keep();
        allocators.release(&ServiceAllocations {
            cluster_ips: vec![first],
            node_ports: vec![],
        });
        let mut next = allocators.reserve();
        assert_eq!(
            allocators.reserve_ip(&mut next, None).unwrap(),
            Ipv4Addr::new(127, 96, 0, 13),
            "a released address is not handed out again at once"
        );
        assert_eq!(
            allocators
                .reserve_ip(&mut next, Some("127.96.0.1"))
                .unwrap(),
            allocators.kubernetes_service_ip()
        );
    }

    #[test]
    fn static_requests_are_checked_for_range_and_conflict() {
        let allocators = allocators();
        let mut reservation = allocators.reserve();
        allocators
            .reserve_ip(&mut reservation, Some("127.96.3.4"))
            .unwrap();
        assert!(matches!(
            allocators.reserve_ip(&mut reservation, Some("127.96.3.4")),
            Err(AllocationError::IpTaken { .. })
        ));
        let error = allocators
            .reserve_ip(&mut reservation, Some("10.0.0.1"))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 127.96.0.0/16"
        );
        assert!(
            allocators
                .reserve_ip(&mut reservation, Some("127.96.255.255"))
                .is_err()
        );
    }

    #[test]
    fn a_dropped_reservation_gives_everything_back() {
        let allocators = allocators();
        {
            let mut reservation = allocators.reserve();
            allocators
                .reserve_ip(&mut reservation, Some("127.96.0.50"))
                .unwrap();
            allocators
                .reserve_port(&mut reservation, Some(30080))
                .unwrap();
        }
        let mut reservation = allocators.reserve();
        allocators
            .reserve_ip(&mut reservation, Some("127.96.0.50"))
            .unwrap();
        allocators
            .reserve_port(&mut reservation, Some(30080))
            .unwrap();
    }

    #[test]
    fn node_ports_static_and_dynamic() {
        let allocators = allocators();
        let mut reservation = allocators.reserve();
        assert_eq!(
            allocators
                .reserve_port(&mut reservation, Some(30000))
                .unwrap(),
            30000
        );
        assert_eq!(
            allocators.reserve_port(&mut reservation, None).unwrap(),
            30001
        );
        assert!(matches!(
            allocators.reserve_port(&mut reservation, Some(30001)),
            Err(AllocationError::PortTaken { port: 30001 })
        ));
        assert!(matches!(
            allocators.reserve_port(&mut reservation, Some(80)),
            Err(AllocationError::PortOutOfRange { port: 80 })
        ));
    }

    #[test]
    fn cidrs_parse_and_normalise() {
        let cidr: Cidr = "10.96.5.7/12".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert!(cidr.contains(Ipv4Addr::new(10, 111, 255, 254)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 112, 0, 0)));
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }
}

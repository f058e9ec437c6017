//! Pod IP address management: one node's pod range, and carving node ranges from the
//! cluster's.
//!
//! Addresses are handed out lowest-first so a restarted agent, which first re-reserves the
//! addresses its pods already report, never hands out one that is in use. The network
//! address, the one after it (a gateway on a real network) and the broadcast address are
//! never given to a pod.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 range such as `127.244.3.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

/// Why a range could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid IPv4 CIDR {text:?}: {reason}")]
pub struct CidrError {
    text: String,
    reason: &'static str,
}

impl Ipv4Cidr {
    pub fn new(address: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        if prefix > 32 {
            return None;
        }
        Some(Ipv4Cidr {
            network: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The addresses a pod may get.
    fn usable(&self) -> std::ops::RangeInclusive<u32> {
        if self.size() < 4 {
            // Too small to set aside network, gateway and broadcast: nothing to give.
            #[allow(clippy::reversed_empty_ranges)]
            return 1..=0;
        }
        let last = self.network + (self.size() - 1) as u32;
        (self.network + 2)..=(last - 1)
    }

    /// How many pods the range can hold.
    pub fn capacity(&self) -> u64 {
        let range = self.usable();
        if range.is_empty() {
            0
        } else {
            u64::from(range.end() - range.start()) + 1
        }
    }

    fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let prefix = self.prefix.min(other.prefix);
        self.network & mask(prefix) == other.network & mask(prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| CidrError {
            text: text.to_string(),
            reason,
        };
        let (address, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| error("missing /prefix"))?;
        let address: Ipv4Addr = address.parse().map_err(|_| error("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| error("prefix is not a number"))?;
        Ipv4Cidr::new(address, prefix).ok_or_else(|| error("prefix is larger than 32"))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network(), self.prefix)
    }
}

/// The lowest `/node_prefix` block of `cluster` that overlaps none of `taken`.
pub fn carve_node_range(
    cluster: Ipv4Cidr,
    node_prefix: u8,
    taken: &[Ipv4Cidr],
) -> Option<Ipv4Cidr> {
    if node_prefix < cluster.prefix || node_prefix > 32 {
        return None;
    }
    let step = 1u64 << (32 - node_prefix);
    let blocks = cluster.size() / step;
    (0..blocks)
        .map(|index| Ipv4Cidr {
            network: cluster.network + (index * step) as u32,
            prefix: node_prefix,
        })
        .find(|candidate| !taken.iter().any(|used| used.overlaps(candidate)))
}

/// The pod addresses of one node.
#[derive(Debug)]
pub struct PodAddresses {
    range: Ipv4Cidr,
    in_use: BTreeSet<u32>,
    /// Where the next search starts; addresses below it are known to be in use.
    lowest_free_hint: u32,
}

impl PodAddresses {
    pub fn new(range: Ipv4Cidr) -> PodAddresses {
        PodAddresses {
            range,
            in_use: BTreeSet::new(),
            lowest_free_hint: *range.usable().start(),
        }
    }

    pub fn range(&self) -> Ipv4Cidr {
        self.range
    }

    /// Marks an address a pod already has as taken; false when it is outside the usable
    /// range or already taken by another pod.
    pub fn reserve(&mut self, address: Ipv4Addr) -> bool {
        let value = u32::from(address);
        self.range.usable().contains(&value) && self.in_use.insert(value)
    }

    /// The lowest free address, now taken; `None` when the range is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let usable = self.range.usable();
        let mut candidate = self.lowest_free_hint.max(*usable.start());
        while usable.contains(&candidate) {
            if self.in_use.insert(candidate) {
                self.lowest_free_hint = candidate + 1;
                return Some(Ipv4Addr::from(candidate));
            }
            candidate += 1;
        }
        None
    }

    pub fn release(&mut self, address: Ipv4Addr) {
        let value = u32::from(address);
        if self.in_use.remove(&value) {
            self.lowest_free_hint = self.lowest_free_hint.min(value);
        }
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(cidr("127.244.3.7/24").to_string(), "127.244.3.0/24");
        assert_eq!(cidr("10.0.0.0/8").capacity(), (1 << 24) - 3);
        assert_eq!(cidr("127.244.0.0/24").capacity(), 253);
        assert!("127.0.0.1".parse::<Ipv4Cidr>().is_err());
        assert!("127.0.0.1/33".parse::<Ipv4Cidr>().is_err());
        assert!("::1/64".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn skips_network_gateway_and_broadcast() {
        let mut addresses = PodAddresses::new(cidr("127.244.0.0/30"));
        // A /30 has .0 network, .1 gateway, .3 broadcast: one pod address.
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(127, 244, 0, 2)));
        assert_eq!(addresses.allocate(), None);
        let mut addresses = PodAddresses::new(cidr("127.244.0.0/24"));
        let all: Vec<_> = std::iter::from_fn(|| addresses.allocate()).collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all[0], Ipv4Addr::new(127, 244, 0, 2));
        assert_eq!(all[252], Ipv4Addr::new(127, 244, 0, 254));
    }

    #[test]
    fn released_addresses_are_reused_lowest_first() {
        let mut addresses = PodAddresses::new(cidr("127.244.1.0/24"));
        let first = addresses.allocate().unwrap();
        let second = addresses.allocate().unwrap();
        let third = addresses.allocate().unwrap();
        addresses.release(second);
        addresses.release(first);
        assert_eq!(addresses.allocate(), Some(first));
        assert_eq!(addresses.allocate(), Some(second));
        assert_eq!(
            addresses.allocate(),
            Some(Ipv4Addr::from(u32::from(third) + 1))
        );
        assert_eq!(addresses.in_use(), 4);
    }

    #[test]
    fn reserved_addresses_are_never_handed_out() {
        let mut addresses = PodAddresses::new(cidr("127.244.1.0/24"));
        assert!(addresses.reserve(Ipv4Addr::new(127, 244, 1, 2)));
        assert!(addresses.reserve(Ipv4Addr::new(127, 244, 1, 4)));
        assert!(!addresses.reserve(Ipv4Addr::new(127, 244, 1, 4)));
        assert!(!addresses.reserve(Ipv4Addr::new(127, 244, 1, 1)));
        assert!(!addresses.reserve(Ipv4Addr::new(127, 244, 2, 9)));
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(127, 244, 1, 3)));
        assert_eq!(addresses.allocate(), Some(Ipv4Addr::new(127, 244, 1, 5)));
    }

    #[test]
    fn node_ranges_are_the_lowest_free_block() {
        let cluster = cidr("127.244.0.0/16");
        assert_eq!(
            carve_node_range(cluster, 24, &[]),
            Some(cidr("127.244.0.0/24"))
        );
        let taken = [cidr("127.244.0.0/24"), cidr("127.244.2.0/24")];
        assert_eq!(
            carve_node_range(cluster, 24, &taken),
            Some(cidr("127.244.1.0/24"))
        );
        // A larger foreign range blocks every /24 inside it.
        let taken = [cidr("127.244.0.0/23")];
        assert_eq!(
            carve_node_range(cluster, 24, &taken),
            Some(cidr("127.244.2.0/24"))
        );
        let small = cidr("127.244.0.0/23");
        assert_eq!(
            carve_node_range(small, 24, &[cidr("127.244.0.0/24"), cidr("127.244.1.0/24")]),
            None
        );
        assert_eq!(carve_node_range(cluster, 8, &[]), None);
    }
}

//! Load-balancer addresses for `type: LoadBalancer` Services, handed out from a loopback
//! range and written to `status.loadBalancer.ingress` — what k3s's ServiceLB does with node
//! addresses, here on one machine.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;

use crate::table::{ingress_ips, is_proxied};

/// An IPv4 range in CIDR notation, such as `127.97.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Cidr, InvalidCidr> {
        if prefix_len > 32 {
            return Err(InvalidCidr(format!("{network}/{prefix_len}")));
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(network) & mask),
            prefix_len,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// Addresses a service may get: all but the network and broadcast addresses (for
    /// ranges wider than two addresses), in order.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network);
        let size = 1u64 << (32 - u32::from(self.prefix_len));
        let (skip_front, skip_back) = if size > 2 { (1, 1) } else { (0, 0) };
        (u64::from(first) + skip_front..u64::from(first) + size - skip_back)
            .map(|ip| Ipv4Addr::from(ip as u32))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidCidr(text.to_owned());
        let (network, prefix_len) = text.split_once('/').ok_or_else(invalid)?;
        Ipv4Cidr::new(
            network.parse().map_err(|_| invalid())?,
            prefix_len.parse().map_err(|_| invalid())?,
        )
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix_len)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IPv4 CIDR such as 127.97.0.0/16")]
pub struct InvalidCidr(String);

/// Whether this proxy should give `service` a load-balancer address: a proxied
/// LoadBalancer Service without one, not claimed by another load-balancer class.
pub fn wants_address(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec.load_balancer_class.is_none()
        && is_proxied(service)
        && ingress_ips(service).next().is_none()
}

/// The first address of `range` not in `used`.
pub fn first_free(range: &Ipv4Cidr, used: &HashSet<IpAddr>) -> Option<Ipv4Addr> {
    range.hosts().find(|ip| !used.contains(&IpAddr::V4(*ip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_enumerates_a_range() {
        let range: Ipv4Cidr = "127.97.0.0/16".parse().unwrap();
        assert_eq!(range.to_string(), "127.97.0.0/16");
        assert_eq!(range.hosts().next(), Some(Ipv4Addr::new(127, 97, 0, 1)));
        assert_eq!(range.hosts().count(), 65_534);
        assert!(range.contains(Ipv4Addr::new(127, 97, 255, 1)));
        assert!(!range.contains(Ipv4Addr::new(127, 96, 0, 1)));
        let normalised: Ipv4Cidr = "127.97.3.9/24".parse().unwrap();
        assert_eq!(normalised.to_string(), "127.97.3.0/24");
        assert!("127.97.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("127.97.0.0/33".parse::<Ipv4Cidr>().is_err());
        let single: Ipv4Cidr = "127.97.0.7/32".parse().unwrap();
        assert_eq!(
            single.hosts().collect::<Vec<_>>(),
            [Ipv4Addr::new(127, 97, 0, 7)]
        );
    }

    #[test]
    fn skips_addresses_in_use() {
        let range: Ipv4Cidr = "127.97.0.0/30".parse().unwrap();
        let mut used = HashSet::new();
        assert_eq!(
            first_free(&range, &used),
            Some(Ipv4Addr::new(127, 97, 0, 1))
        );
        used.insert(IpAddr::V4(Ipv4Addr::new(127, 97, 0, 1)));
        assert_eq!(
            first_free(&range, &used),
            Some(Ipv4Addr::new(127, 97, 0, 2))
        );
        used.insert(IpAddr::V4(Ipv4Addr::new(127, 97, 0, 2)));
        assert_eq!(first_free(&range, &used), None);
    }

    #[test]
    fn only_unaddressed_load_balancers_of_no_other_class_want_one() {
        let service = |value| serde_json::from_value::<Service>(value).unwrap();
        assert!(wants_address(&service(json!({"metadata": {"name": "a"},
            "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.5", "ports": [{"port": 80}]}}))));
        assert!(!wants_address(&service(json!({"metadata": {"name": "b"},
            "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.5", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.97.0.1"}]}}}))));
        assert!(!wants_address(&service(json!({"metadata": {"name": "c"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb",
                     "clusterIP": "127.96.0.5", "ports": [{"port": 80}]}}))));
        assert!(!wants_address(&service(json!({"metadata": {"name": "d"},
            "spec": {"type": "NodePort", "clusterIP": "127.96.0.5", "ports": [{"port": 80}]}}))));
    }
}

//! What should be served, as a pure function of a Service: one [`ServicePort`] per port
//! the proxy handles, with the addresses to listen on and how to choose among endpoints.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hollow_lb::{EndpointFilter, PortSelector};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// Services carrying this label belong to another proxy implementation, as in kube-proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";

/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: Duration = Duration::from_secs(10_800);

/// Identifies one port of one Service: `namespace/service:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    pub namespace: String,
    pub service: String,
    /// The port's name (`""` for the single unnamed port).
    pub port: String,
    pub protocol: String,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}/{}:{}/{}",
            self.namespace, self.service, self.port, self.protocol
        )
    }
}

/// One Service port as the proxy serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePort {
    pub name: ServicePortName,
    /// Which slice port to use and how readiness counts.
    pub filter: EndpointFilter,
    /// `sessionAffinity: ClientIP` and its timeout.
    pub affinity_timeout: Option<Duration>,
    /// Cluster IPs, the node port, external IPs and load-balancer ingress IPs, each with the
    /// port clients use there.
    pub frontends: Vec<SocketAddr>,
}

/// Whether the proxy serves `service` at all: ClusterIP, NodePort and LoadBalancer services
/// with a cluster IP. Headless and ExternalName services have no virtual address.
pub fn is_proxied(service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") {
        return false;
    }
    if service.labels().contains_key(SERVICE_PROXY_NAME_LABEL) {
        return false;
    }
    cluster_ips(service).next().is_some()
}

fn cluster_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    let spec = service.spec.as_ref();
    let listed = spec.and_then(|spec| spec.cluster_ips.as_ref());
    let single = spec
        .and_then(|spec| spec.cluster_ip.as_ref())
        .filter(|_| listed.is_none_or(|ips| ips.is_empty()));
    listed
        .into_iter()
        .flatten()
        .chain(single)
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
}

/// The load-balancer ingress IPs in the Service's status.
pub fn ingress_ips(service: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|load_balancer| load_balancer.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
}

/// The ports of `service` the proxy serves; NodePorts listen on `node_address`.
pub fn service_ports(service: &Service, node_address: IpAddr) -> Vec<ServicePort> {
    if !is_proxied(service) {
        return Vec::new();
    }
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref())
            .and_then(|client_ip| client_ip.timeout_seconds)
            .and_then(|seconds| u64::try_from(seconds).ok())
            .filter(|seconds| *seconds > 0)
            .map_or(DEFAULT_AFFINITY_TIMEOUT, Duration::from_secs)
    });
    let external_ips: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let ingress: Vec<IpAddr> = if kind == "LoadBalancer" {
        ingress_ips(service).collect()
    } else {
        Vec::new()
    };
    let cluster_ips: Vec<IpAddr> = cluster_ips(service).collect();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let number = u16::try_from(port.port)
                .ok()
                .filter(|number| *number != 0)?;
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
            let port_name = port.name.clone().unwrap_or_default();
            let target_number = match &port.target_port {
                None => Some(number),
                Some(IntOrString::Int(target)) => u16::try_from(*target).ok(),
                // A named target port is resolved per pod by the EndpointSlice controller.
                Some(IntOrString::String(_)) => None,
            };
            let mut frontends: Vec<SocketAddr> = cluster_ips
                .iter()
                .chain(&external_ips)
                .chain(&ingress)
                .map(|ip| SocketAddr::new(*ip, number))
                .collect();
            if matches!(kind, "NodePort" | "LoadBalancer")
                && let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok())
                && node_port != 0
            {
                frontends.push(SocketAddr::new(node_address, node_port));
            }
            frontends.sort();
            frontends.dedup();
            Some(ServicePort {
                name: ServicePortName {
                    namespace: service.namespace().unwrap_or_default(),
                    service: service.name_any(),
                    port: port_name.clone(),
                    protocol: protocol.clone(),
                },
                filter: EndpointFilter {
                    port: PortSelector::Name(port_name),
                    protocol,
                    publish_not_ready_addresses: spec.publish_not_ready_addresses == Some(true),
                    port_when_slice_has_none: target_number,
                },
                affinity_timeout,
                frontends,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("service")
    }

    const NODE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn cluster_ip_ports_listen_on_the_cluster_ip() {
        let web = service(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "127.96.0.12", "clusterIPs": ["127.96.0.12"], "ports": [
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "admin", "port": 9000, "targetPort": 9001, "protocol": "TCP"},
            ]}
        }));
        let ports = service_ports(&web, NODE);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].name.to_string(), "shop/web:http/TCP");
        assert_eq!(ports[0].frontends, ["127.96.0.12:80".parse().unwrap()]);
        assert_eq!(ports[0].filter.port, PortSelector::Name("http".into()));
        assert_eq!(ports[0].filter.port_when_slice_has_none, None);
        assert_eq!(ports[1].filter.port_when_slice_has_none, Some(9001));
        assert_eq!(ports[0].affinity_timeout, None);
    }

    #[test]
    fn node_ports_load_balancer_ips_and_external_ips_are_frontends_too() {
        let lb = service(json!({
            "metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "127.96.0.20",
                     "externalIPs": ["127.98.0.1"],
                     "sessionAffinity": "ClientIP",
                     "publishNotReadyAddresses": true,
                     "ports": [{"port": 8080, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.97.0.1"}]}}
        }));
        let ports = service_ports(&lb, NODE);
        let frontends: Vec<String> = ports[0].frontends.iter().map(ToString::to_string).collect();
        assert_eq!(
            frontends,
            [
                "127.0.0.1:30080",
                "127.96.0.20:8080",
                "127.97.0.1:8080",
                "127.98.0.1:8080"
            ]
        );
        assert_eq!(ports[0].affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert!(ports[0].filter.publish_not_ready_addresses);
        assert_eq!(ports[0].filter.port_when_slice_has_none, Some(8080));
    }

    #[test]
    fn headless_external_name_and_foreign_services_are_not_proxied() {
        for skipped in [
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            json!({"metadata": {"name": "o", "labels": {SERVICE_PROXY_NAME_LABEL: "other"}},
                   "spec": {"clusterIP": "127.96.0.3", "ports": [{"port": 80}]}}),
        ] {
            assert!(service_ports(&service(skipped), NODE).is_empty());
        }
    }

    #[test]
    fn affinity_timeout_comes_from_the_config() {
        let sticky = service(json!({
            "metadata": {"name": "s"},
            "spec": {"clusterIP": "127.96.0.4", "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                     "ports": [{"port": 80}]}
        }));
        assert_eq!(
            service_ports(&sticky, NODE)[0].affinity_timeout,
            Some(Duration::from_secs(60))
        );
    }
}

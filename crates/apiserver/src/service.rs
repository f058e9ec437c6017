//! Service semantics as kube-apiserver enforces them: defaults, validation, ClusterIP and
//! NodePort allocation, and what an update may change.
//!
//! Messages and field paths follow kube-apiserver's, so kubectl prints the same lines.

use std::net::IpAddr;

use hollow_types::validation::{FieldError, is_dns1123_subdomain, is_valid_port_name};
use serde_json::{Value, json};

use crate::allocator::{AllocationError, Allocators, Reservation, ServiceAllocations};

const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

fn spec_str<'a>(service: &'a Value, field: &str) -> Option<&'a str> {
    service.get("spec")?.get(field)?.as_str()
}

fn service_type(service: &Value) -> &str {
    spec_str(service, "type").unwrap_or("ClusterIP")
}

fn is_headless(service: &Value) -> bool {
    spec_str(service, "clusterIP") == Some("None")
}

fn uses_node_ports(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => service
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// Fills kube-apiserver's defaults.
pub fn set_defaults(service: &mut Value) {
    if !service.get("spec").is_some_and(Value::is_object) {
        service["spec"] = json!({});
    }
    let kind = service_type(service).to_string();
    let spec = service["spec"].as_object_mut().expect("spec is an object");
    spec.entry("type")
        .or_insert_with(|| Value::from("ClusterIP"));
    spec.entry("sessionAffinity")
        .or_insert_with(|| Value::from("None"));
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && spec
            .get("sessionAffinityConfig")
            .and_then(|config| config.pointer("/clientIP/timeoutSeconds"))
            .is_none()
    {
        spec.insert(
            "sessionAffinityConfig".into(),
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        );
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            let Some(port) = port.as_object_mut() else {
                continue;
            };
            port.entry("protocol").or_insert_with(|| Value::from("TCP"));
            if !port.contains_key("targetPort")
                && let Some(number) = port.get("port").cloned()
            {
                port.insert("targetPort".into(), number);
            }
        }
    }
    if kind != "ExternalName" {
        spec.entry("internalTrafficPolicy")
            .or_insert_with(|| Value::from("Cluster"));
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| Value::from("SingleStack"));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| Value::from("Cluster"));
    }
    if kind == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts")
            .or_insert_with(|| Value::from(true));
    }
}

/// Checks a Service on its own (allocation and update rules come after).
pub fn validate(service: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let kind = service_type(service);
    if !TYPES.contains(&kind) {
        errors.push(FieldError::not_supported("spec.type", kind, TYPES));
        return errors;
    }
    let cluster_ip = spec_str(service, "clusterIP").unwrap_or_default();
    if kind == "ExternalName" {
        match spec_str(service, "externalName") {
            None | Some("") => errors.push(FieldError::required("spec.externalName", "")),
            Some(name) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                for problem in is_dns1123_subdomain(name) {
                    errors.push(FieldError::invalid("spec.externalName", name, &problem));
                }
            }
        }
        if !cluster_ip.is_empty() {
            errors.push(FieldError::forbidden(
                "spec.clusterIPs",
                "may not be set for ExternalName services",
            ));
        }
    } else if !cluster_ip.is_empty()
        && cluster_ip != "None"
        && cluster_ip.parse::<IpAddr>().is_err()
    {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if is_headless(service) && (kind == "NodePort" || kind == "LoadBalancer") {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            &format!("may not be set to 'None' for {kind} services"),
        ));
    }
    match spec_str(service, "sessionAffinity").unwrap_or("None") {
        "None" | "ClientIP" => {}
        other => errors.push(FieldError::not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
    if let Some(timeout) = service.pointer("/spec/sessionAffinityConfig/clientIP/timeoutSeconds") {
        let valid = timeout
            .as_i64()
            .is_some_and(|seconds| (1..=86400).contains(&seconds));
        if !valid {
            errors.push(FieldError::invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout.clone(),
                "must be greater than 0 and less than 86400",
            ));
        }
    }
    validate_ports(service, kind, &mut errors);
    errors
}

fn validate_ports(service: &Value, kind: &str, errors: &mut Vec<FieldError>) {
    let ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && !is_headless(service) {
        errors.push(FieldError::required("spec.ports", ""));
        return;
    }
    let mut names = Vec::new();
    let mut port_protocols = Vec::new();
    let mut node_ports = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{index}]");
        let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
        if ports.len() > 1 && name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        } else if !name.is_empty() {
            for problem in hollow_types::validation::is_dns1123_label(name) {
                errors.push(FieldError::invalid(format!("{path}.name"), name, &problem));
            }
            if names.contains(&name) {
                errors.push(FieldError::duplicate(format!("{path}.name"), name));
            }
            names.push(name);
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&number) {
            errors.push(FieldError::invalid(
                format!("{path}.port"),
                number,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            errors.push(FieldError::not_supported(
                format!("{path}.protocol"),
                protocol,
                PROTOCOLS,
            ));
        }
        if port_protocols.contains(&(number, protocol)) {
            errors.push(FieldError::duplicate(
                path.clone(),
                json!({"port": number, "protocol": protocol}),
            ));
        }
        port_protocols.push((number, protocol));
        match port.get("targetPort") {
            None => {}
            Some(Value::Number(target))
                if !target
                    .as_i64()
                    .is_some_and(|target| (1..=65535).contains(&target)) =>
            {
                errors.push(FieldError::invalid(
                    format!("{path}.targetPort"),
                    Value::Number(target.clone()),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(Value::Number(_)) => {}
            Some(Value::String(target)) => {
                for problem in is_valid_port_name(target) {
                    errors.push(FieldError::invalid(
                        format!("{path}.targetPort"),
                        target.as_str(),
                        &problem,
                    ));
                }
            }
            Some(other) => errors.push(FieldError::invalid(
                format!("{path}.targetPort"),
                other.clone(),
                "must be a port number or name",
            )),
        }
        if let Some(node_port) = port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|port| *port != 0)
        {
            if !uses_node_ports(service) {
                errors.push(FieldError::forbidden(
                    format!("{path}.nodePort"),
                    &format!("may not be used when `type` is '{kind}'"),
                ));
            } else if node_ports.contains(&(node_port, protocol)) {
                errors.push(FieldError::duplicate(format!("{path}.nodePort"), node_port));
            }
            node_ports.push((node_port, protocol));
        }
    }
}

fn allocation_error(field: &str, value: Value, error: AllocationError) -> FieldError {
    FieldError::invalid(field, value, &error.to_string())
}

/// Allocates the ClusterIP and node ports a new Service needs, writing them into it.
pub fn allocate_on_create(
    allocators: &std::sync::Arc<Allocators>,
    service: &mut Value,
) -> Result<Reservation, Vec<FieldError>> {
    let mut reservation = allocators.reserve();
    let mut errors = Vec::new();
    allocate_cluster_ip(allocators, &mut reservation, service, &mut errors);
    allocate_node_ports(allocators, &mut reservation, service, None, &mut errors);
    if errors.is_empty() {
        Ok(reservation)
    } else {
        Err(errors)
    }
}

fn allocate_cluster_ip(
    allocators: &Allocators,
    reservation: &mut Reservation,
    service: &mut Value,
    errors: &mut Vec<FieldError>,
) {
    if service_type(service) == "ExternalName" {
        return;
    }
    if is_headless(service) {
        service["spec"]["clusterIPs"] = json!(["None"]);
        return;
    }
    let requested = spec_str(service, "clusterIP")
        .filter(|ip| !ip.is_empty())
        .map(str::to_string);
    match allocators.reserve_ip(reservation, requested.as_deref()) {
        Ok(address) => {
            service["spec"]["clusterIP"] = Value::from(address.to_string());
            service["spec"]["clusterIPs"] = json!([address.to_string()]);
        }
        Err(error) => errors.push(allocation_error(
            "spec.clusterIPs",
            json!([requested.unwrap_or_default()]),
            error,
        )),
    }
}

/// Gives every port a node port when the type needs them (keeping `previous` ones that still
/// belong to the same port), and drops node ports when it does not.
fn allocate_node_ports(
    allocators: &Allocators,
    reservation: &mut Reservation,
    service: &mut Value,
    previous: Option<&Value>,
    errors: &mut Vec<FieldError>,
) {
    let needs = uses_node_ports(service);
    let previous_ports: Vec<(i64, String, i64)> = previous
        .and_then(|old| old.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|port| {
                    Some((
                        port.get("port")?.as_i64()?,
                        port.get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("TCP")
                            .to_string(),
                        port.get("nodePort")?.as_i64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(ports) = service
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for (index, port) in ports.iter_mut().enumerate() {
        let Some(port) = port.as_object_mut() else {
            continue;
        };
        if !needs {
            port.remove("nodePort");
            continue;
        }
        let requested = port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|port| *port != 0);
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        let kept = previous_ports
            .iter()
            .find(|(old_port, old_protocol, _)| *old_port == number && *old_protocol == protocol)
            .map(|(_, _, node_port)| *node_port);
        match (requested, kept) {
            // Unchanged node port of an existing port: already allocated.
            (Some(requested), Some(kept)) if requested == kept => continue,
            (None, Some(kept)) => {
                port.insert("nodePort".into(), Value::from(kept));
                continue;
            }
            _ => {}
        }
        if let Some(requested) = requested
            && previous_ports
                .iter()
                .any(|(_, _, node_port)| *node_port == requested)
        {
            // Moved to another port of the same service: still this service's.
            continue;
        }
        match allocators.reserve_port(reservation, requested) {
            Ok(node_port) => {
                port.insert("nodePort".into(), Value::from(node_port));
            }
            Err(error) => errors.push(allocation_error(
                &format!("spec.ports[{index}].nodePort"),
                Value::from(requested.unwrap_or(0)),
                error,
            )),
        }
    }
}

/// What an update of a Service allocates (kept when the write succeeds) and what it gives
/// back (released after the write succeeds).
#[derive(Debug)]
pub struct UpdateAllocation {
    pub reservation: Reservation,
    pub released: ServiceAllocations,
}

/// Carries allocated values over from the stored Service when the update leaves them unset,
/// refuses changes to the ClusterIP, and (re)allocates what a type change needs.
pub fn allocate_on_update(
    allocators: &std::sync::Arc<Allocators>,
    service: &mut Value,
    old: &Value,
) -> Result<UpdateAllocation, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut reservation = allocators.reserve();
    let old_type = service_type(old).to_string();
    let new_type = service_type(service).to_string();
    let old_ip = spec_str(old, "clusterIP").unwrap_or_default().to_string();
    let new_ip = spec_str(service, "clusterIP")
        .unwrap_or_default()
        .to_string();
    let external_name_change = (old_type == "ExternalName") != (new_type == "ExternalName");
    if !external_name_change {
        if new_ip.is_empty() && !old_ip.is_empty() {
            service["spec"]["clusterIP"] = Value::from(old_ip.clone());
            if let Some(ips) = old.pointer("/spec/clusterIPs") {
                service["spec"]["clusterIPs"] = ips.clone();
            }
        } else if new_ip != old_ip {
            errors.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                new_ip.as_str(),
                "may not change once set",
            ));
        } else if service.pointer("/spec/clusterIPs").is_none()
            && let Some(ips) = old.pointer("/spec/clusterIPs")
        {
            service["spec"]["clusterIPs"] = ips.clone();
        }
    } else if new_type == "ExternalName" {
        if let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            spec.remove("ipFamilies");
            spec.remove("ipFamilyPolicy");
            spec.remove("internalTrafficPolicy");
        }
    } else {
        allocate_cluster_ip(allocators, &mut reservation, service, &mut errors);
    }
    allocate_node_ports(
        allocators,
        &mut reservation,
        service,
        Some(old),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let before = ServiceAllocations::of(old);
    let after = ServiceAllocations::of(service);
    let released = ServiceAllocations {
        cluster_ips: before
            .cluster_ips
            .iter()
            .filter(|ip| !after.cluster_ips.contains(ip))
            .copied()
            .collect(),
        node_ports: before
            .node_ports
            .iter()
            .filter(|port| !after.node_ports.contains(port))
            .copied()
            .collect(),
    };
    Ok(UpdateAllocation {
        reservation,
        released,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocators() -> std::sync::Arc<Allocators> {
        Allocators::new("127.96.0.0/16".parse().unwrap())
    }

    fn causes(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_match_kube_apiserver() {
        let mut service = json!({"spec":{"ports":[{"port":80}],"sessionAffinity":"ClientIP"}});
        set_defaults(&mut service);
        assert_eq!(service["spec"]["type"], "ClusterIP");
        assert_eq!(service["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(
            service["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            10800
        );
        assert_eq!(service["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(service["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(service["spec"]["internalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn port_rules_name_the_field() {
        let service = json!({"spec":{"ports":[{"port":70000},{"port":80,"name":"a"}]}});
        let errors = causes(&validate(&service));
        assert!(
            errors.contains(
                &"spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
                    .to_string()
            ),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"spec.ports[0].name: Required value".to_string()),
            "{errors:?}"
        );
        let service = json!({"spec":{"type":"ClusterIP","ports":[{"port":80,"nodePort":30001}]}});
        assert_eq!(
            causes(&validate(&service)),
            ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        let service = json!({"spec":{"type":"ExternalName"}});
        assert_eq!(
            causes(&validate(&service)),
            ["spec.externalName: Required value"]
        );
        let service = json!({"spec":{"type":"NodePort","clusterIP":"None","ports":[{"port":80}]}});
        assert!(!validate(&service).is_empty());
        let headless = json!({"spec":{"clusterIP":"None"}});
        assert!(
            validate(&headless).is_empty(),
            "headless services need no ports"
        );
    }

    #[test]
    fn create_allocates_and_headless_gets_none() {
        let allocators = allocators();
        let mut service =
            json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP"}]}});
        allocate_on_create(&allocators, &mut service)
            .unwrap()
            .keep();
        assert_eq!(service["spec"]["clusterIP"], "127.96.0.11");
        assert_eq!(service["spec"]["clusterIPs"], json!(["127.96.0.11"]));
        assert_eq!(service["spec"]["ports"][0]["nodePort"], 30000);
        let mut headless = json!({"spec":{"clusterIP":"None","ports":[{"port":80}]}});
        allocate_on_create(&allocators, &mut headless)
            .unwrap()
            .keep();
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut taken = json!({"spec":{"clusterIP":"127.96.0.11","ports":[{"port":80}]}});
        let errors = allocate_on_create(&allocators, &mut taken).unwrap_err();
        assert_eq!(errors[0].field, "spec.clusterIPs");
        assert!(
            errors[0]
                .message
                .contains("provided IP is already allocated")
        );
    }

    #[test]
    fn updates_keep_allocations_and_refuse_ip_changes() {
        let allocators = allocators();
        let mut old = json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP"}]}});
        allocate_on_create(&allocators, &mut old).unwrap().keep();
        let mut replaced =
            json!({"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP"}]}});
        let update = allocate_on_update(&allocators, &mut replaced, &old).unwrap();
        assert_eq!(replaced["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(
            replaced["spec"]["ports"][0]["nodePort"],
            old["spec"]["ports"][0]["nodePort"]
        );
        assert!(update.released.node_ports.is_empty());
        update.reservation.keep();

        let mut moved =
            json!({"spec":{"clusterIP":"127.96.9.9","type":"NodePort","ports":[{"port":80}]}});
        let errors = allocate_on_update(&allocators, &mut moved, &old).unwrap_err();
        assert_eq!(errors[0].field, "spec.clusterIPs[0]");

        let mut to_cluster_ip = json!({"spec":{"type":"ClusterIP","ports":[{"port":80,"protocol":"TCP","nodePort":30000}]}});
        let update = allocate_on_update(&allocators, &mut to_cluster_ip, &old).unwrap();
        assert_eq!(update.released.node_ports, [30000]);
        assert!(to_cluster_ip["spec"]["ports"][0].get("nodePort").is_none());
    }
}

//! Server-side printing for `kubectl get`: the columns and cells of a `meta.k8s.io/v1` Table.
//!
//! kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever
//! columns the server sends, so these follow kube-apiserver's printers column for column and
//! reason for reason (pod status such as `CrashLoopBackOff` or `Init:0/1`, restarts such as
//! `3 (12s ago)`, service ports such as `80:30080/TCP`). Like kube-apiserver, every cell is
//! computed, including the `-o wide` ones (priority 1); kubectl hides those unless asked.
//!
//! Objects are read as JSON, tolerantly: a missing field prints as upstream prints the zero
//! value. Kinds without a printer get `Name` and `Age`.

use std::collections::BTreeSet;

use hollow_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use hollow_types::selector::LabelSelector;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

/// One column of a Table, serialised as `meta.k8s.io/v1` `TableColumnDefinition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnDefinition {
    pub name: &'static str,
    /// `string` or `integer`, as upstream declares it.
    #[serde(rename = "type")]
    pub column_type: &'static str,
    /// `name` for the column holding the object's name, otherwise empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

const fn column(name: &'static str, description: &'static str) -> ColumnDefinition {
    ColumnDefinition {
        name,
        column_type: "string",
        format: "",
        description,
        priority: 0,
    }
}

const fn integer(name: &'static str, description: &'static str) -> ColumnDefinition {
    ColumnDefinition {
        column_type: "integer",
        ..column(name, description)
    }
}

const fn wide(definition: ColumnDefinition) -> ColumnDefinition {
    ColumnDefinition {
        priority: 1,
        ..definition
    }
}

const NAME: ColumnDefinition = ColumnDefinition {
    format: "name",
    ..column("Name", "Name of the object, unique within its namespace.")
};
const AGE: ColumnDefinition = column("Age", "Time since the object was created.");
const CONTAINERS: ColumnDefinition = wide(column(
    "Containers",
    "Names of each container in the template.",
));
const IMAGES: ColumnDefinition = wide(column(
    "Images",
    "Images referenced by each container in the template.",
));
const SELECTOR: ColumnDefinition = wide(column(
    "Selector",
    "Label selector of the pods this object manages.",
));

/// The columns of `kind`'s Table, in order.
pub fn column_definitions(kind: &str) -> Vec<ColumnDefinition> {
    match kind {
        "Namespace" => vec![
            NAME,
            column("Status", "Phase of the namespace: Active or Terminating."),
            AGE,
        ],
        "Node" => vec![
            NAME,
            column(
                "Status",
                "Readiness of the node, and whether it takes new pods.",
            ),
            column("Roles", "Roles taken from the node's node-role labels."),
            AGE,
            column("Version", "Version of the node agent."),
            wide(column("Internal-IP", "First internal address of the node.")),
            wide(column("External-IP", "First external address of the node.")),
            wide(column("OS-Image", "Operating system the node reports.")),
            wide(column("Kernel-Version", "Kernel version the node reports.")),
            wide(column(
                "Container-Runtime",
                "Container runtime the node reports.",
            )),
        ],
        "Pod" => vec![
            NAME,
            column("Ready", "Ready containers out of all containers."),
            column("Status", "Aggregate status of the pod and its containers."),
            column(
                "Restarts",
                "Container restarts, and how long ago the last container restarted.",
            ),
            AGE,
            wide(column("IP", "IP address of the pod.")),
            wide(column("Node", "Node the pod is bound to.")),
            wide(column(
                "Nominated Node",
                "Node the scheduler nominated for the pod.",
            )),
            wide(column(
                "Readiness Gates",
                "Readiness gates that are met, out of all.",
            )),
        ],
        "Service" => vec![
            NAME,
            column("Type", "How the service is exposed."),
            column(
                "Cluster-IP",
                "Virtual IP of the service, or None when headless.",
            ),
            column(
                "External-IP",
                "Addresses the service is reachable at from outside.",
            ),
            column("Port(s)", "Service ports, with node ports where allocated."),
            AGE,
            wide(column(
                "Selector",
                "Labels of the pods the service routes to.",
            )),
        ],
        "Endpoints" => vec![
            NAME,
            column(
                "Endpoints",
                "Ready addresses and ports, the first three of them.",
            ),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            column("AddressType", "Address family of the endpoints."),
            column("Ports", "Ports of the slice, the first three of them."),
            column("Endpoints", "Endpoint addresses, the first three of them."),
            AGE,
        ],
        "Event" => vec![
            column("Last Seen", "Time since the event last occurred."),
            column("Type", "Normal or Warning."),
            column("Reason", "Short machine-readable reason for the event."),
            column("Object", "The object the event is about."),
            wide(column(
                "Subobject",
                "Part of the object the event is about.",
            )),
            wide(column(
                "Source",
                "Component, and host, that reported the event.",
            )),
            column("Message", "Human-readable description of the event."),
            wide(column("First Seen", "Time since the event first occurred.")),
            wide(column("Count", "How many times the event occurred.")),
            wide(NAME),
        ],
        "Deployment" => vec![
            NAME,
            column("Ready", "Ready pods out of desired pods."),
            column("Up-to-date", "Pods running the current template."),
            column("Available", "Pods available to serve."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" => vec![
            NAME,
            integer("Desired", "Pods the replica set should run."),
            integer("Current", "Pods the replica set runs."),
            integer("Ready", "Ready pods."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "StatefulSet" => vec![
            NAME,
            column("Ready", "Ready pods out of desired pods."),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        _ => vec![NAME, AGE],
    }
}

/// The cells of `object`'s row, matching [`column_definitions`] for `kind`. `now` is the time
/// the ages are measured to.
pub fn row_cells(kind: &str, object: &Value, now: Timestamp) -> Vec<Value> {
    match kind {
        "Namespace" => namespace_cells(object, now),
        "Node" => node_cells(object, now),
        "Pod" => pod_cells(object, now),
        "Service" => service_cells(object, now),
        "Endpoints" => endpoints_cells(object, now),
        "EndpointSlice" => endpoint_slice_cells(object, now),
        "Event" => event_cells(object, now),
        "Deployment" => deployment_cells(object, now),
        "ReplicaSet" => replica_set_cells(object, now),
        "StatefulSet" => stateful_set_cells(object, now),
        _ => vec![name(object).into(), age(object, now).into()],
    }
}

/// Follows a path of object keys.
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).and_then(Value::as_str).unwrap_or("")
}

fn number(value: &Value, path: &[&str]) -> i64 {
    at(value, path).and_then(Value::as_i64).unwrap_or(0)
}

fn items<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn timestamp(value: &Value, path: &[&str]) -> Option<Timestamp> {
    text(value, path).parse().ok()
}

fn name(object: &Value) -> &str {
    text(object, &["metadata", "name"])
}

fn age(object: &Value, now: Timestamp) -> String {
    since(timestamp(object, &["metadata", "creationTimestamp"]), now)
}

/// Time from `then` to `now` in kubectl's words; `<unknown>` without a time.
fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(then) => human_duration(now.duration_since(then)),
        None => "<unknown>".to_string(),
    }
}

/// kubectl's `HumanDuration`: two or three significant figures, `5s`, `3m2s`, `5h`, `2d3h`,
/// `3y`. Clocks a second apart still read `0s`; further into the future is `<invalid>`.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            rest => format!("{minutes}m{rest}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            rest => format!("{hours}h{rest}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            rest => format!("{days}d{rest}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            rest => format!("{years}y{rest}d"),
        };
    }
    format!("{years}y")
}

/// `k=v,k2=v2` in key order, or `<none>`.
fn format_labels(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|labels| {
            let mut pairs: Vec<(&String, &str)> = labels
                .iter()
                .map(|(key, value)| (key, value.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs
                .into_iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// A workload's `spec.selector` as text. An absent selector selects nothing and prints empty.
fn selector_text(selector: Option<&Value>) -> Result<String, ()> {
    let Some(selector) = selector.filter(|selector| !selector.is_null()) else {
        return Ok(String::new());
    };
    let api: ApiLabelSelector = serde_json::from_value(selector.clone()).map_err(|_| ())?;
    let selector = LabelSelector::from_api(&api).map_err(|_| ())?;
    Ok(selector.to_string())
}

/// Container names and images of a pod template, each comma-joined.
fn container_cells(object: &Value) -> [Value; 2] {
    let containers = items(object, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    [names.join(",").into(), images.join(",").into()]
}

/// `ip:port`, bracketing IPv6 addresses.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first three entries and how many more there are.
fn first_three(list: &[String], total: usize) -> String {
    let shown = list.join(",");
    if total > 3 {
        format!("{shown} + {} more...", total - 3)
    } else {
        shown
    }
}

fn namespace_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    // The namespace strategy sets the phase on create; an object without one is Active.
    let phase = match text(object, &["status", "phase"]) {
        "" => "Active",
        phase => phase,
    };
    vec![name(object).into(), phase.into(), age(object, now).into()]
}

fn node_cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    if let Some(ready) = items(object, &["status", "conditions"])
        .iter()
        .rev()
        .find(|condition| text(condition, &["type"]) == "Ready")
    {
        status.push(if text(ready, &["status"]) == "True" {
            "Ready".to_string()
        } else {
            "NotReady".to_string()
        });
    }
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if at(object, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".to_string());
    }

    let mut roles = BTreeSet::new();
    if let Some(labels) = at(object, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if key == "kubernetes.io/role" {
                match value.as_str() {
                    Some(role) if !role.is_empty() => {
                        roles.insert(role.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };

    let address = |kind: &str| -> String {
        items(object, &["status", "addresses"])
            .iter()
            .find(|address| text(address, &["type"]) == kind)
            .map(|address| text(address, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let info = |field: &str| -> Value {
        match text(object, &["status", "nodeInfo", field]) {
            "" => "<unknown>".into(),
            value => value.into(),
        }
    };
    vec![
        name(object).into(),
        status.join(",").into(),
        roles.into(),
        age(object, now).into(),
        text(object, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

fn condition_is_true(object: &Value, condition_type: &str) -> bool {
    items(object, &["status", "conditions"])
        .iter()
        .any(|condition| {
            text(condition, &["type"]) == condition_type && text(condition, &["status"]) == "True"
        })
}

/// When a container last finished before its current run.
fn last_termination(status: &Value) -> Option<Timestamp> {
    timestamp(status, &["lastState", "terminated", "finishedAt"])
}

/// The Ready, Status and Restarts columns, reasoned as kubectl does from the pod's phase and its
/// containers' states.
fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let containers = items(pod, &["spec", "containers"]);
    let init_containers = items(pod, &["spec", "initContainers"]);
    // Init containers with restartPolicy Always are sidecars: they count as containers.
    let is_sidecar = |container_name: &str| {
        init_containers.iter().any(|container| {
            text(container, &["name"]) == container_name
                && text(container, &["restartPolicy"]) == "Always"
        })
    };
    let total_containers = containers.len()
        + init_containers
            .iter()
            .filter(|container| text(container, &["restartPolicy"]) == "Always")
            .count();
    let mut ready_containers = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = text(pod, &["status", "phase"]);
    let mut reason = match text(pod, &["status", "reason"]) {
        "" => phase.to_string(),
        reason => reason.to_string(),
    };
    if items(pod, &["status", "conditions"])
        .iter()
        .any(|condition| {
            text(condition, &["type"]) == "PodScheduled"
                && text(condition, &["reason"]) == "SchedulingGated"
        })
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    for (index, status) in items(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = number(status, &["restartCount"]);
        restarts += restart_count;
        let finished = last_termination(status);
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(text(status, &["name"]));
        if sidecar {
            sidecar_restarts += restart_count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = at(status, &["state", "terminated"]).filter(|state| state.is_object());
        let waiting_reason = text(status, &["state", "waiting", "reason"]);
        let has_waiting = at(status, &["state", "waiting"]).is_some_and(Value::is_object);
        if terminated.is_some_and(|state| number(state, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && at(status, &["started"]).and_then(Value::as_bool) == Some(true) {
            if at(status, &["ready"]).and_then(Value::as_bool) == Some(true) {
                ready_containers += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            reason = match text(terminated, &["reason"]) {
                "" => match number(terminated, &["signal"]) {
                    0 => format!("Init:ExitCode:{}", number(terminated, &["exitCode"])),
                    signal => format!("Init:Signal:{signal}"),
                },
                terminated_reason => format!("Init:{terminated_reason}"),
            };
        } else if has_waiting && !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{index}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in items(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += number(status, &["restartCount"]);
            last_restart = last_restart.max(last_termination(status));
            let waiting_reason = text(status, &["state", "waiting", "reason"]);
            let terminated = at(status, &["state", "terminated"]).filter(|state| state.is_object());
            let running = at(status, &["state", "running"]).is_some_and(Value::is_object);
            let ready = at(status, &["ready"]).and_then(Value::as_bool) == Some(true);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = terminated {
                reason = match text(terminated, &["reason"]) {
                    "" => match number(terminated, &["signal"]) {
                        0 => format!("ExitCode:{}", number(terminated, &["exitCode"])),
                        signal => format!("Signal:{signal}"),
                    },
                    terminated_reason => terminated_reason.to_string(),
                };
            } else if ready && running {
                has_running = true;
                ready_containers += 1;
            }
        }
        // A pod whose last container completed but another still runs is not done.
        if reason == "Completed" && has_running {
            reason = if condition_is_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting =
        at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|value| !value.is_null());
    if deleting && text(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(last) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(last), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = items(pod, &["status", "podIPs"])
        .first()
        .map(|entry| text(entry, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(pod, &["status", "podIP"]));
    let or_none = |value: &str| -> Value {
        if value.is_empty() {
            "<none>".into()
        } else {
            value.into()
        }
    };
    let gates = items(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(pod, &["status", "conditions"]);
        let met = gates
            .iter()
            .filter(|gate| {
                let wanted = text(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|condition| text(condition, &["type"]) == wanted)
                    .is_some_and(|condition| text(condition, &["status"]) == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };

    vec![
        name(pod).into(),
        format!("{ready_containers}/{total_containers}").into(),
        reason.into(),
        restarts_text.into(),
        age(pod, now).into(),
        or_none(pod_ip),
        or_none(text(pod, &["spec", "nodeName"])),
        or_none(text(pod, &["status", "nominatedNodeName"])),
        readiness_gates.into(),
    ]
}

fn service_cells(service: &Value, now: Timestamp) -> Vec<Value> {
    // Defaulting fills these on create; fall back to the defaults for undefaulted objects.
    let service_type = match text(service, &["spec", "type"]) {
        "" => "ClusterIP",
        service_type => service_type,
    };
    let cluster_ip = items(service, &["spec", "clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or(Some(text(service, &["spec", "clusterIP"])))
        .filter(|ip| !ip.is_empty())
        .unwrap_or("<none>");

    let external_ips: Vec<&str> = items(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external_ip = match service_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = items(service, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|entry| {
                    [text(entry, &["ip"]), text(entry, &["hostname"])]
                        .into_iter()
                        .find(|value| !value.is_empty())
                })
                .collect();
            let mut all: Vec<&str> = ingress.into_iter().collect();
            all.extend(&external_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(service, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };

    let ports: Vec<String> = items(service, &["spec", "ports"])
        .iter()
        .map(|port| {
            let protocol = match text(port, &["protocol"]) {
                "" => "TCP",
                protocol => protocol,
            };
            let port_number = number(port, &["port"]);
            match number(port, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port_number}:{node_port}/{protocol}"),
                _ => format!("{port_number}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };

    vec![
        name(service).into(),
        service_type.into(),
        cluster_ip.into(),
        external_ip.into(),
        ports.into(),
        age(service, now).into(),
        format_labels(at(service, &["spec", "selector"])).into(),
    ]
}

/// Ready addresses with each port, the first three of them.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = items(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown = Vec::new();
    let mut total = 0usize;
    for subset in subsets {
        let addresses: Vec<&str> = items(subset, &["addresses"])
            .iter()
            .map(|address| text(address, &["ip"]))
            .collect();
        let ports = items(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports: list bare addresses.
            total += addresses.len();
            for address in &addresses {
                if shown.len() < 3 {
                    shown.push(address.to_string());
                }
            }
            continue;
        }
        for port in ports {
            total += addresses.len();
            for address in &addresses {
                if shown.len() < 3 {
                    shown.push(join_host_port(address, number(port, &["port"])));
                }
            }
        }
    }
    first_three(&shown, total)
}

fn endpoints_cells(endpoints: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(endpoints).into(),
        format_endpoints(endpoints).into(),
        age(endpoints, now).into(),
    ]
}

/// The first three entries and a count of the rest, or `<unset>` when there are none.
fn list_with_more(entries: Vec<String>) -> String {
    let total = entries.len();
    let shown: Vec<String> = entries.into_iter().take(3).collect();
    if total == 0 {
        "<unset>".to_string()
    } else {
        first_three(&shown, total)
    }
}

fn endpoint_slice_cells(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports = items(slice, &["ports"])
        .iter()
        .map(|port| match at(port, &["port"]).and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => match at(port, &["name"]).and_then(Value::as_str) {
                Some(port_name) => port_name.to_string(),
                None => "*".to_string(),
            },
        })
        .collect();
    let addresses = items(slice, &["endpoints"])
        .iter()
        .flat_map(|endpoint| items(endpoint, &["addresses"]))
        .map(|address| address.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        name(slice).into(),
        text(slice, &["addressType"]).into(),
        list_with_more(ports).into(),
        list_with_more(addresses).into(),
        age(slice, now).into(),
    ]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = match timestamp(event, &["firstTimestamp"]) {
        Some(first) => since(Some(first), now),
        None => since(timestamp(event, &["eventTime"]), now),
    };
    let mut last_seen = match timestamp(event, &["lastTimestamp"]) {
        Some(last) => since(Some(last), now),
        None => first_seen.clone(),
    };
    let mut count = number(event, &["count"]);
    match at(event, &["series"]).filter(|series| series.is_object()) {
        Some(series) => {
            last_seen = since(timestamp(series, &["lastObservedTime"]), now);
            count = number(series, &["count"]);
        }
        // Events from the events.k8s.io API carry no count when they happened once.
        None if count == 0 => count = 1,
        None => {}
    }
    let involved_kind = text(event, &["involvedObject", "kind"]).to_lowercase();
    let object = match text(event, &["involvedObject", "name"]) {
        "" => involved_kind,
        involved_name => format!("{involved_kind}/{involved_name}"),
    };
    let component = [
        text(event, &["source", "component"]),
        text(event, &["reportingComponent"]),
    ]
    .into_iter()
    .find(|value| !value.is_empty())
    .unwrap_or("");
    let host = [
        text(event, &["source", "host"]),
        text(event, &["reportingInstance"]),
    ]
    .into_iter()
    .find(|value| !value.is_empty())
    .unwrap_or("");
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last_seen.into(),
        text(event, &["type"]).into(),
        text(event, &["reason"]).into(),
        object.into(),
        text(event, &["involvedObject", "fieldPath"]).into(),
        source.into(),
        text(event, &["message"]).trim().into(),
        first_seen.into(),
        count.into(),
        name(event).into(),
    ]
}

/// `spec.replicas`, which defaults to 1.
fn desired_replicas(object: &Value) -> i64 {
    at(object, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn deployment_cells(deployment: &Value, now: Timestamp) -> Vec<Value> {
    let selector = selector_text(at(deployment, &["spec", "selector"]))
        .unwrap_or_else(|()| "<invalid>".to_string());
    let [containers, images] = container_cells(deployment);
    vec![
        name(deployment).into(),
        format!(
            "{}/{}",
            number(deployment, &["status", "readyReplicas"]),
            desired_replicas(deployment)
        )
        .into(),
        number(deployment, &["status", "updatedReplicas"]).into(),
        number(deployment, &["status", "availableReplicas"]).into(),
        age(deployment, now).into(),
        containers,
        images,
        selector.into(),
    ]
}

fn replica_set_cells(replica_set: &Value, now: Timestamp) -> Vec<Value> {
    let selector = match selector_text(at(replica_set, &["spec", "selector"])) {
        Ok(selector) if selector.is_empty() => "<none>".to_string(),
        Ok(selector) => selector,
        Err(()) => "<error>".to_string(),
    };
    let [containers, images] = container_cells(replica_set);
    vec![
        name(replica_set).into(),
        desired_replicas(replica_set).into(),
        number(replica_set, &["status", "replicas"]).into(),
        number(replica_set, &["status", "readyReplicas"]).into(),
        age(replica_set, now).into(),
        containers,
        images,
        selector.into(),
    ]
}

fn stateful_set_cells(stateful_set: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = container_cells(stateful_set);
    vec![
        name(stateful_set).into(),
        format!(
            "{}/{}",
            number(stateful_set, &["status", "readyReplicas"]),
            desired_replicas(stateful_set)
        )
        .into(),
        age(stateful_set, now).into(),
        containers,
        images,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The moment every test measures ages to.
    fn now() -> Timestamp {
        "2026-01-10T12:00:00Z".parse().unwrap()
    }

    /// A timestamp `seconds` before [`now`].
    fn ago(seconds: i64) -> String {
        (now() - SignedDuration::from_secs(seconds)).to_string()
    }

    fn cells(kind: &str, object: &Value) -> Vec<Value> {
        let cells = row_cells(kind, object, now());
        assert_eq!(
            cells.len(),
            column_definitions(kind).len(),
            "{kind}: one cell per column"
        );
        cells
    }

    fn names(kind: &str) -> Vec<(&'static str, i32)> {
        column_definitions(kind)
            .into_iter()
            .map(|column| (column.name, column.priority))
            .collect()
    }

    #[test]
    fn human_duration_follows_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (182, "3m2s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (8 * 365 * 86400, "8y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}s"
            );
        }
        assert_eq!(
            human_duration(SignedDuration::from_millis(-1500)),
            "0s",
            "sub-second skew"
        );
    }

    #[test]
    fn columns_serialise_as_table_column_definitions() {
        let columns = serde_json::to_value(column_definitions("Service")).unwrap();
        assert_eq!(
            columns[0],
            json!({"name": "Name", "type": "string", "format": "name",
                   "description": "Name of the object, unique within its namespace.",
                   "priority": 0})
        );
        assert_eq!(columns[6]["name"], "Selector");
        assert_eq!(columns[6]["priority"], 1);
        assert_eq!(column_definitions("ReplicaSet")[1].column_type, "integer");
    }

    #[test]
    fn namespace_row() {
        assert_eq!(names("Namespace"), [("Name", 0), ("Status", 0), ("Age", 0)]);
        let namespace = json!({
            "metadata": {"name": "kube-system", "creationTimestamp": ago(3 * 86400 + 7200)},
            "status": {"phase": "Terminating"},
        });
        assert_eq!(
            cells("Namespace", &namespace),
            [json!("kube-system"), json!("Terminating"), json!("3d2h")]
        );
        let fresh = json!({"metadata": {"name": "default"}});
        assert_eq!(
            cells("Namespace", &fresh),
            [json!("default"), json!("Active"), json!("<unknown>")]
        );
    }

    #[test]
    fn node_row() {
        assert_eq!(
            names("Node"),
            [
                ("Name", 0),
                ("Status", 0),
                ("Roles", 0),
                ("Age", 0),
                ("Version", 0),
                ("Internal-IP", 1),
                ("External-IP", 1),
                ("OS-Image", 1),
                ("Kernel-Version", 1),
                ("Container-Runtime", 1)
            ]
        );
        let node = json!({
            "metadata": {
                "name": "node-1",
                "creationTimestamp": ago(45 * 60),
                "labels": {
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "",
                    "kubernetes.io/role": "worker",
                    "kubernetes.io/hostname": "node-1",
                },
            },
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
                "addresses": [
                    {"type": "Hostname", "address": "node-1"},
                    {"type": "InternalIP", "address": "127.0.0.1"},
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.32.0-hollow",
                    "osImage": "Debian GNU/Linux 12",
                    "kernelVersion": "6.1.0",
                },
            },
        });
        assert_eq!(
            cells("Node", &node),
            [
                json!("node-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,worker"),
                json!("45m"),
                json!("v1.32.0-hollow"),
                json!("127.0.0.1"),
                json!("<none>"),
                json!("Debian GNU/Linux 12"),
                json!("6.1.0"),
                json!("<unknown>"),
            ]
        );
        let not_ready = json!({"metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells("Node", &not_ready)[1], "NotReady");
        assert_eq!(
            cells("Node", &json!({"metadata": {"name": "n"}}))[1],
            "Unknown"
        );
        assert_eq!(
            cells("Node", &json!({"metadata": {"name": "n"}}))[2],
            "<none>"
        );
    }

    fn running_pod() -> Value {
        json!({
            "metadata": {"name": "web-5d8f7c9b4-x2x7k", "namespace": "default",
                         "creationTimestamp": ago(2 * 3600 + 15 * 60)},
            "spec": {"nodeName": "node-1", "containers": [{"name": "web"}, {"name": "log"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.12",
                "podIPs": [{"ip": "10.244.0.12"}, {"ip": "fd00::12"}],
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "web", "ready": true, "restartCount": 3,
                     "state": {"running": {"startedAt": ago(12)}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(12)}}},
                    {"name": "log", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": ago(3600)}}},
                ],
            },
        })
    }

    #[test]
    fn pod_running_with_restarts() {
        assert_eq!(
            names("Pod"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
        );
        assert_eq!(
            cells("Pod", &running_pod()),
            [
                json!("web-5d8f7c9b4-x2x7k"),
                json!("2/2"),
                json!("Running"),
                json!("3 (12s ago)"),
                json!("135m"),
                json!("10.244.0.12"),
                json!("node-1"),
                json!("<none>"),
                json!("<none>"),
            ]
        );
    }

    #[test]
    fn pod_pending_and_creating() {
        let pending = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(5)},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending"},
        });
        let row = cells("Pod", &pending);
        assert_eq!(
            row[1..5],
            [json!("0/1"), json!("Pending"), json!("0"), json!("5s")]
        );
        assert_eq!(row[5..7], [json!("<none>"), json!("<none>")]);

        let creating = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(5)},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}]},
        });
        assert_eq!(cells("Pod", &creating)[2], "ContainerCreating");
    }

    #[test]
    fn pod_crash_loop_completed_and_failed() {
        let crash_loop = json!({
            "metadata": {"name": "p", "creationTimestamp": ago(600)},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 5,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                              "finishedAt": ago(75)}}}]},
        });
        let row = cells("Pod", &crash_loop);
        assert_eq!(
            row[1..4],
            [
                json!("0/1"),
                json!("CrashLoopBackOff"),
                json!("5 (75s ago)")
            ]
        );

        let completed = json!({
            "metadata": {"name": "job-x", "creationTimestamp": ago(600)},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [
                {"name": "c", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
        });
        assert_eq!(
            cells("Pod", &completed)[1..3],
            [json!("0/1"), json!("Completed")]
        );

        let killed = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]},
        });
        assert_eq!(cells("Pod", &killed)[2], "Signal:9");
        let exited = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 2}}}]},
        });
        assert_eq!(cells("Pod", &exited)[2], "ExitCode:2");
    }

    #[test]
    fn pod_completed_container_beside_a_running_one() {
        let mut pod = running_pod();
        pod["status"]["containerStatuses"][1] = json!({
            "name": "log", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        // Statuses are read last to first, so the running container's state is seen last.
        pod["status"]["containerStatuses"]
            .as_array_mut()
            .unwrap()
            .reverse();
        assert_eq!(cells("Pod", &pod)[1..3], [json!("1/2"), json!("Running")]);
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert_eq!(cells("Pod", &pod)[2], "NotReady");
    }

    #[test]
    fn pod_terminating_and_node_lost() {
        let mut pod = running_pod();
        pod["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells("Pod", &pod)[2], "Terminating");
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells("Pod", &pod)[2], "Unknown");

        let mut finished = running_pod();
        finished["metadata"]["deletionTimestamp"] = json!(ago(1));
        finished["status"]["phase"] = json!("Succeeded");
        finished["status"]["containerStatuses"] = json!([]);
        assert_eq!(cells("Pod", &finished)[2], "Succeeded");
    }

    #[test]
    fn pod_init_containers_and_sidecars() {
        let init_waiting = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "migrate"}],
                     "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "migrate", "restartCount": 2,
                 "state": {"waiting": {"reason": "PodInitializing"}}},
            ]},
        });
        let row = cells("Pod", &init_waiting);
        assert_eq!(row[1..4], [json!("0/1"), json!("Init:1/2"), json!("2")]);

        let init_failed = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        });
        assert_eq!(cells("Pod", &init_failed)[2], "Init:CrashLoopBackOff");

        let init_exit = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 3}}}]},
        });
        assert_eq!(cells("Pod", &init_exit)[2], "Init:ExitCode:3");

        let with_sidecar = json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                     "containers": [{"name": "c"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                     "state": {"running": {}}}],
                "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]},
        });
        assert_eq!(
            cells("Pod", &with_sidecar)[1..4],
            [json!("2/2"), json!("Running"), json!("1")]
        );
    }

    #[test]
    fn pod_wide_columns() {
        let mut pod = running_pod();
        pod["status"]["nominatedNodeName"] = json!("node-2");
        pod["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        pod["status"]["conditions"] = json!([
            {"type": "Ready", "status": "True"},
            {"type": "example.com/lb", "status": "True"},
            {"type": "example.com/dns", "status": "False"},
        ]);
        pod["status"]["podIPs"] = json!(null);
        let row = cells("Pod", &pod);
        assert_eq!(
            row[5..],
            [
                json!("10.244.0.12"),
                json!("node-1"),
                json!("node-2"),
                json!("1/2")
            ]
        );
        let mut gated = running_pod();
        gated["status"] = json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]});
        assert_eq!(cells("Pod", &gated)[2], "SchedulingGated");
    }

    #[test]
    fn service_rows() {
        assert_eq!(
            names("Service"),
            [
                ("Name", 0),
                ("Type", 0),
                ("Cluster-IP", 0),
                ("External-IP", 0),
                ("Port(s)", 0),
                ("Age", 0),
                ("Selector", 1)
            ]
        );
        let cluster_ip = json!({
            "metadata": {"name": "nginx", "creationTimestamp": ago(28)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.28", "clusterIPs": ["10.96.0.28"],
                     "selector": {"tier": "web", "app": "nginx"},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080},
                               {"port": 53, "protocol": "UDP"}]},
        });
        assert_eq!(
            cells("Service", &cluster_ip),
            [
                json!("nginx"),
                json!("ClusterIP"),
                json!("10.96.0.28"),
                json!("<none>"),
                json!("80/TCP,53/UDP"),
                json!("28s"),
                json!("app=nginx,tier=web"),
            ]
        );

        let headless = json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]},
        });
        assert_eq!(
            cells("Service", &headless)[1..7],
            [
                json!("ClusterIP"),
                json!("None"),
                json!("<none>"),
                json!("5432/TCP"),
                json!("<unknown>"),
                json!("<none>"),
            ]
        );

        let node_port = json!({
            "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.9"], "externalIPs": ["192.0.2.1"],
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
        });
        assert_eq!(
            cells("Service", &node_port)[2..5],
            [
                json!("10.96.0.9"),
                json!("192.0.2.1"),
                json!("80:30080/TCP")
            ]
        );

        let pending_lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.7"], "ports": []},
        });
        assert_eq!(
            cells("Service", &pending_lb)[3..5],
            [json!("<pending>"), json!("<none>")]
        );
        let mut ready_lb = pending_lb.clone();
        ready_lb["status"] = json!({"loadBalancer": {"ingress": [
            {"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}});
        ready_lb["spec"]["externalIPs"] = json!(["192.0.2.7"]);
        assert_eq!(
            cells("Service", &ready_lb)[3],
            "203.0.113.9,lb.example.com,192.0.2.7"
        );

        let external_name = json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        });
        assert_eq!(
            cells("Service", &external_name)[2..4],
            [json!("<none>"), json!("db.example.com")]
        );
    }

    #[test]
    fn endpoints_rows() {
        assert_eq!(
            names("Endpoints"),
            [("Name", 0), ("Endpoints", 0), ("Age", 0)]
        );
        let endpoints = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(90)},
            "subsets": [
                {"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}],
                 "notReadyAddresses": [{"ip": "9.9.9.9"}],
                 "ports": [{"port": 80}, {"port": 443}]},
                {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
            ],
        });
        assert_eq!(
            cells("Endpoints", &endpoints),
            [
                json!("web"),
                json!("1.2.3.4:80,5.6.7.8:80,1.2.3.4:443 + 2 more..."),
                json!("90s")
            ]
        );
        let two = json!({"metadata": {"name": "x"}, "subsets": [
            {"addresses": [{"ip": "1.2.3.4"}, {"ip": "5.6.7.8"}], "ports": [{"port": 80}]}]});
        assert_eq!(cells("Endpoints", &two)[1], "1.2.3.4:80,5.6.7.8:80");
        let headless = json!({"metadata": {"name": "x"}, "subsets": [
            {"addresses": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}]});
        assert_eq!(cells("Endpoints", &headless)[1], "fd00::1,10.0.0.1");
        let ipv6 = json!({"metadata": {"name": "x"}, "subsets": [
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]});
        assert_eq!(cells("Endpoints", &ipv6)[1], "[fd00::1]:53");
        assert_eq!(
            cells("Endpoints", &json!({"metadata": {"name": "x"}}))[1],
            "<none>"
        );
    }

    #[test]
    fn endpoint_slice_rows() {
        assert_eq!(
            names("EndpointSlice"),
            [
                ("Name", 0),
                ("AddressType", 0),
                ("Ports", 0),
                ("Endpoints", 0),
                ("Age", 0)
            ]
        );
        let slice = json!({
            "metadata": {"name": "web-abc12", "creationTimestamp": ago(3600)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics"}, {}, {"port": 9000}],
            "endpoints": [
                {"addresses": ["10.244.0.12"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.13"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.14", "10.244.0.15"]},
            ],
        });
        assert_eq!(
            cells("EndpointSlice", &slice),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("8080,metrics,* + 1 more..."),
                json!("10.244.0.12,10.244.0.13,10.244.0.14 + 1 more..."),
                json!("60m"),
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6", "endpoints": []});
        assert_eq!(
            cells("EndpointSlice", &empty)[1..4],
            [json!("IPv6"), json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn event_rows() {
        assert_eq!(
            names("Event"),
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ]
        );
        let event = json!({
            "metadata": {"name": "web.17a2b3c4d5e6f7a8", "creationTimestamp": ago(300)},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(300),
            "lastTimestamp": ago(20),
            "count": 7,
            "type": "Warning",
        });
        assert_eq!(
            cells("Event", &event),
            [
                json!("20s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, node-1"),
                json!("Back-off restarting failed container"),
                json!("5m"),
                json!(7),
                json!("web.17a2b3c4d5e6f7a8"),
            ]
        );

        let new_api = json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2026-01-10T11:59:30.123456Z",
            "reportingComponent": "hollow-agent",
            "reason": "Starting",
            "type": "Normal",
        });
        let row = cells("Event", &new_api);
        assert_eq!(row[0], "29s");
        assert_eq!(row[3], "node");
        assert_eq!(row[5], "hollow-agent");
        assert_eq!(row[7], "29s");
        assert_eq!(row[8], 1);

        let series = json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Service", "name": "web"},
            "eventTime": ago(600),
            "series": {"count": 4, "lastObservedTime": ago(3)},
            "count": 0,
        });
        let row = cells("Event", &series);
        assert_eq!(
            [&row[0], &row[7], &row[8]],
            [&json!("3s"), &json!("10m"), &json!(4)]
        );
        assert_eq!(cells("Event", &json!({}))[0], "<unknown>");
    }

    fn template(containers: Value) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}})
    }

    #[test]
    fn deployment_rows() {
        assert_eq!(
            names("Deployment"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ]
        );
        let deployment = json!({
            "metadata": {"name": "nginx", "creationTimestamp": ago(4 * 86400)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"},
                             "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                   "values": ["db"]}]},
                "template": template(json!([{"name": "nginx", "image": "nginx:1.27"},
                                            {"name": "sidecar", "image": "busybox"}])),
            },
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2,
                       "availableReplicas": 2},
        });
        assert_eq!(
            cells("Deployment", &deployment),
            [
                json!("nginx"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("4d"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=nginx,tier notin (db)"),
            ]
        );
        let bare = json!({"metadata": {"name": "d"}, "spec": {"template": template(json!([]))}});
        assert_eq!(
            cells("Deployment", &bare)[1..],
            [
                json!("0/1"),
                json!(0),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("")
            ]
        );
        let invalid = json!({"metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"bad key": "x"}}}});
        assert_eq!(cells("Deployment", &invalid)[7], "<invalid>");
    }

    #[test]
    fn replica_set_rows() {
        assert_eq!(
            names("ReplicaSet"),
            [
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ]
        );
        let replica_set = json!({
            "metadata": {"name": "nginx-7c5ddbdf54", "creationTimestamp": ago(185)},
            "spec": {"replicas": 2,
                     "selector": {"matchLabels": {"app": "nginx", "pod-template-hash": "7c5ddbdf54"}},
                     "template": template(json!([{"name": "nginx", "image": "nginx"}]))},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            cells("ReplicaSet", &replica_set),
            [
                json!("nginx-7c5ddbdf54"),
                json!(2),
                json!(2),
                json!(1),
                json!("3m5s"),
                json!("nginx"),
                json!("nginx"),
                json!("app=nginx,pod-template-hash=7c5ddbdf54"),
            ]
        );
        let no_selector = json!({"metadata": {"name": "r"}, "spec": {"replicas": 0}});
        assert_eq!(cells("ReplicaSet", &no_selector)[1], 0);
        assert_eq!(cells("ReplicaSet", &no_selector)[7], "<none>");
        let broken = json!({"metadata": {"name": "r"},
            "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}});
        assert_eq!(cells("ReplicaSet", &broken)[7], "<error>");
    }

    #[test]
    fn stateful_set_rows() {
        assert_eq!(
            names("StatefulSet"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1)
            ]
        );
        let stateful_set = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(10 * 3600)},
            "spec": {"replicas": 3, "serviceName": "web",
                     "template": template(json!([{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.8"}]))},
            "status": {"replicas": 3, "readyReplicas": 3},
        });
        assert_eq!(
            cells("StatefulSet", &stateful_set),
            [
                json!("web"),
                json!("3/3"),
                json!("10h"),
                json!("nginx"),
                json!("registry.k8s.io/nginx-slim:0.8"),
            ]
        );
    }

    #[test]
    fn other_kinds_get_name_and_age() {
        assert_eq!(names("ConfigMap"), [("Name", 0), ("Age", 0)]);
        let config_map = json!({"metadata": {"name": "settings", "creationTimestamp": ago(61)}});
        assert_eq!(
            cells("ConfigMap", &config_map),
            [json!("settings"), json!("61s")]
        );
        let future = json!({"metadata": {"name": "x", "creationTimestamp": ago(-60)}});
        assert_eq!(cells("Lease", &future)[1], "<invalid>");
    }
}

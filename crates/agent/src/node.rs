//! The Node object: registration, the node's pod range, and the status heartbeat.
//!
//! Pod range: a `pod_cidr` in the agent's configuration wins; otherwise the Node's own
//! `spec.podCIDR`; otherwise the agent carves one from the cluster range (`cluster_cidr`,
//! default `127.244.0.0/16`): the lowest `/node_cidr_prefix` block (default `/24`) that no
//! other Node's `spec.podCIDR` overlaps, written to the Node's spec. Two agents registering
//! at the same moment may pick the same block; each re-reads the Nodes after writing, and
//! the one whose name sorts later picks again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::ipam::{Ipv4Cidr, carve_node_range};
use crate::{AgentConfig, Error};

/// What the version column of `kubectl get nodes` shows.
pub const KUBELET_VERSION: &str = concat!("v1.37.0-hollow.", env!("CARGO_PKG_VERSION"));

/// Creates or adopts the Node and settles its pod range.
pub async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    kubelet_port: u16,
) -> Result<Ipv4Cidr, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    let node = match nodes.get_opt(name).await? {
        Some(node) => node,
        None => {
            let labels = BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.clone()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), architecture().to_string()),
            ]);
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec::default()),
                status: None,
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(created) => created,
                Err(kube::Error::Api(status)) if status.code == 409 => nodes.get(name).await?,
                Err(error) => return Err(error.into()),
            }
        }
    };
    let configured: Option<Ipv4Cidr> = config.pod_cidr.as_deref().map(str::parse).transpose()?;
    let existing: Option<Ipv4Cidr> = node
        .spec
        .as_ref()
        .and_then(|spec| spec.pod_cidr.as_deref())
        .and_then(|cidr| cidr.parse().ok());
    let range = match (configured, existing) {
        (Some(configured), Some(existing)) if configured == existing => configured,
        (Some(configured), _) => {
            write_pod_cidr(&nodes, name, configured).await?;
            configured
        }
        (None, Some(existing)) => existing,
        (None, None) => carve(&nodes, config).await?,
    };
    post_status(&nodes, config, range, kubelet_port, true).await?;
    Ok(range)
}

async fn write_pod_cidr(nodes: &Api<Node>, name: &str, range: Ipv4Cidr) -> Result<(), Error> {
    let patch = json!({"spec": {"podCIDR": range.to_string(), "podCIDRs": [range.to_string()]}});
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

async fn carve(nodes: &Api<Node>, config: &AgentConfig) -> Result<Ipv4Cidr, Error> {
    let cluster: Ipv4Cidr = config.cluster_cidr.parse()?;
    for _ in 0..16 {
        let taken = other_ranges(nodes, &config.node_name).await?;
        let ranges: Vec<Ipv4Cidr> = taken.iter().map(|(_, range)| *range).collect();
        let range =
            carve_node_range(cluster, config.node_cidr_prefix, &ranges).ok_or_else(|| {
                Error::NoPodRange {
                    cluster: cluster.to_string(),
                    prefix: config.node_cidr_prefix,
                }
            })?;
        write_pod_cidr(nodes, &config.node_name, range).await?;
        // Another agent may have taken the same block meanwhile; the later name yields.
        let clash = other_ranges(nodes, &config.node_name)
            .await?
            .into_iter()
            .any(|(other, taken)| taken == range && other < config.node_name);
        if !clash {
            return Ok(range);
        }
    }
    Err(Error::NoPodRange {
        cluster: cluster.to_string(),
        prefix: config.node_cidr_prefix,
    })
}

async fn other_ranges(nodes: &Api<Node>, own: &str) -> Result<Vec<(String, Ipv4Cidr)>, Error> {
    Ok(nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|node| node.metadata.name.as_deref() != Some(own))
        .filter_map(|node| {
            let range = node.spec?.pod_cidr?.parse().ok()?;
            Some((node.metadata.name?, range))
        })
        .collect())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Writes the node's status: Ready with a fresh heartbeat, addresses, capacity and info.
/// `full` also refreshes what never changes (info, capacity, the log server's port);
/// heartbeats send only conditions.
pub async fn post_status(
    nodes: &Api<Node>,
    config: &AgentConfig,
    range: Ipv4Cidr,
    kubelet_port: u16,
    full: bool,
) -> Result<(), Error> {
    let name = &config.node_name;
    let previous = nodes
        .get_opt(name)
        .await?
        .and_then(|node| node.status)
        .and_then(|status| status.conditions)
        .unwrap_or_default();
    let now = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let transition = previous
            .iter()
            .find(|condition| condition.type_ == kind && condition.status == status)
            .and_then(|condition| condition.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ];
    let mut status = NodeStatus {
        conditions: Some(conditions),
        ..NodeStatus::default()
    };
    if full {
        let capacity = capacity(range);
        status.addresses = Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.clone(),
            },
        ]);
        status.allocatable = Some(capacity.clone());
        status.capacity = Some(capacity);
        status.node_info = Some(system_info());
        status.daemon_endpoints = Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet_port),
            }),
        });
        status.phase = None;
    }
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    Ok(())
}

fn capacity(range: Ipv4Cidr) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, |count| count.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        // Every pod needs an address of the node's range.
        ("pods".to_string(), Quantity(range.capacity().to_string())),
    ])
}

fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn system_info() -> NodeSystemInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|release| {
            release
                .lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    NodeSystemInfo {
        architecture: architecture().into(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: concat!("hollow://", env!("CARGO_PKG_VERSION")).into(),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.into(),
        machine_id: read("/etc/machine-id"),
        operating_system: "linux".into(),
        os_image,
        system_uuid: read("/etc/machine-id"),
        ..NodeSystemInfo::default()
    }
}

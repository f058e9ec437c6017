//! A small scheduler: bind each unscheduled pod to the Ready Node running the fewest pods.
//!
//! A pod is considered when it has no `spec.nodeName`, asks for the default scheduler,
//! and is neither terminating nor finished. Nodes qualify when their `Ready` condition
//! is True, they are not cordoned (`spec.unschedulable`) and their labels satisfy the
//! pod's `nodeSelector`. The binding goes through the pod's `binding` subresource, as
//! kube-scheduler does. With no qualifying node the pod stays Pending with condition
//! `PodScheduled=False`, reason `Unschedulable` and a message that says why, plus a
//! `FailedScheduling` event.
//!
//! Not done: resources, taints and tolerations, affinity, topology spreading.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::meta;
use crate::plan::{EventNote, EventType, Kind, Object, Plan};

/// The scheduler name this scheduler answers to.
pub const SCHEDULER_NAME: &str = "default-scheduler";

/// True when the pod waits for this scheduler.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let unassigned = spec.node_name.as_deref().is_none_or(str::is_empty);
    let ours = spec
        .scheduler_name
        .as_deref()
        .is_none_or(|name| name.is_empty() || name == SCHEDULER_NAME);
    unassigned && ours && meta::is_pod_active(pod)
}

fn is_node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

/// The number of pods each node runs (pods bound to it that have not finished).
pub fn node_load(pods: &[Arc<Pod>]) -> HashMap<String, usize> {
    let mut load: HashMap<String, usize> = HashMap::new();
    for pod in pods {
        if let Some(node) = counted_node(pod) {
            *load.entry(node.to_string()).or_default() += 1;
        }
    }
    load
}

/// The node a pod counts against in [`node_load`], if any.
pub fn counted_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|_| !meta::is_pod_terminal(pod))
}

/// Plans the binding of `pod`, or its Unschedulable condition. `pods` is used to count
/// the pods already on each node.
pub fn reconcile(pod: &Pod, nodes: &[Arc<Node>], pods: &[Arc<Pod>], now: &Time) -> Plan {
    reconcile_with_load(pod, nodes, &node_load(pods), now)
}

/// [`reconcile`] with the pods per node already counted (see [`node_load`]), as the
/// controller keeps them, instead of counting every pod of the cluster per binding.
pub fn reconcile_with_load(
    pod: &Pod,
    nodes: &[Arc<Node>],
    load: &HashMap<String, usize>,
    now: &Time,
) -> Plan {
    let mut plan = Plan::default();
    if !needs_scheduling(pod) {
        return plan;
    }
    let node_selector = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_selector.clone())
        .unwrap_or_default();
    let (mut not_ready, mut cordoned, mut mismatched) = (0, 0, 0);
    let mut candidates: Vec<&Node> = Vec::new();
    for node in nodes.iter().map(|node| node.as_ref()) {
        if !is_node_ready(node) {
            not_ready += 1;
        } else if node.spec.as_ref().and_then(|spec| spec.unschedulable) == Some(true) {
            cordoned += 1;
        } else if !node_selector
            .iter()
            .all(|(key, value)| meta::labels(&node.metadata).get(key) == Some(value))
        {
            mismatched += 1;
        } else {
            candidates.push(node);
        }
    }

    if candidates.is_empty() {
        let message = if nodes.is_empty() {
            "0/0 nodes are available: no nodes are registered.".to_string()
        } else {
            let reasons: Vec<String> = [
                (not_ready, "node(s) were not ready"),
                (cordoned, "node(s) were unschedulable"),
                (
                    mismatched,
                    "node(s) didn't match Pod's node affinity/selector",
                ),
            ]
            .into_iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, reason)| format!("{count} {reason}"))
            .collect();
            format!(
                "0/{} nodes are available: {}.",
                nodes.len(),
                reasons.join(", ")
            )
        };
        return unschedulable(pod, message, now);
    }

    let chosen = candidates
        .into_iter()
        .min_by_key(|node| {
            (
                load.get(meta::name(&node.metadata)).copied().unwrap_or(0),
                meta::name(&node.metadata).to_string(),
            )
        })
        .expect("candidates is not empty");
    plan.create.push(Object::Binding(Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: chosen.metadata.name.clone(),
            ..ObjectReference::default()
        },
    }));
    plan.events.push(EventNote {
        regarding: meta::object_reference(Kind::Pod, &pod.metadata),
        type_: EventType::Normal,
        reason: "Scheduled".to_string(),
        message: format!(
            "Successfully assigned {}/{} to {}",
            meta::namespace(&pod.metadata),
            meta::name(&pod.metadata),
            meta::name(&chosen.metadata)
        ),
    });
    plan
}

fn unschedulable(pod: &Pod, message: String, now: &Time) -> Plan {
    let mut plan = Plan::default();
    let conditions = pod
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let current = conditions
        .iter()
        .find(|condition| condition.type_ == "PodScheduled");
    let already_reported = current.is_some_and(|condition| {
        condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
            && condition.message.as_deref() == Some(message.as_str())
    });
    if already_reported {
        return plan;
    }
    let transition = match current {
        Some(condition) if condition.status == "False" => condition.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let mut updated = pod.clone();
    let status = updated.status.get_or_insert_with(Default::default);
    status.phase.get_or_insert_with(|| "Pending".to_string());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|condition| condition.type_ != "PodScheduled");
    conditions.push(PodCondition {
        type_: "PodScheduled".to_string(),
        status: "False".to_string(),
        reason: Some("Unschedulable".to_string()),
        message: Some(message.clone()),
        last_transition_time: transition,
        last_probe_time: None,
        observed_generation: None,
    });
    plan.update_status.push(Object::Pod(updated));
    plan.events.push(EventNote {
        regarding: meta::object_reference(Kind::Pod, &pod.metadata),
        type_: EventType::Warning,
        reason: "FailedScheduling".to_string(),
        message,
    });
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{arcs, labels, metadata, pod, time};
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(name: &str, ready: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                namespace: None,
                ..metadata(name)
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        }
    }

    fn unscheduled(name: &str) -> Pod {
        let mut pod = pod(name, "web", "10.0.0.1", false);
        pod.spec.as_mut().unwrap().node_name = None;
        pod.status.as_mut().unwrap().phase = Some("Pending".into());
        pod.status.as_mut().unwrap().conditions = None;
        pod
    }

    fn bound_to(plan: &Plan) -> Option<&str> {
        match plan.create.as_slice() {
            [Object::Binding(binding)] => binding.target.name.as_deref(),
            _ => None,
        }
    }

    #[test]
    fn binds_to_the_ready_node_with_fewest_pods() {
        let nodes = arcs([node("busy", true), node("idle", true), node("down", false)]);
        let mut running = pod("a", "web", "10.0.0.2", true);
        running.spec.as_mut().unwrap().node_name = Some("busy".into());
        let plan = reconcile(&unscheduled("web-0"), &nodes, &arcs([running]), &time(0));
        assert_eq!(bound_to(&plan), Some("idle"));
        let [Object::Binding(binding)] = plan.create.as_slice() else {
            unreachable!()
        };
        assert_eq!(binding.metadata.name.as_deref(), Some("web-0"));
        assert_eq!(plan.events[0].reason, "Scheduled");
    }

    #[test]
    fn node_selector_limits_the_choice() {
        let mut labelled = node("zone-b", true);
        labelled.metadata.labels = Some(labels(&[("zone", "b")]));
        let mut pod = unscheduled("web-0");
        pod.spec.as_mut().unwrap().node_selector = Some(labels(&[("zone", "b")]));
        assert_eq!(
            bound_to(&reconcile(
                &pod,
                &arcs([node("a", true), labelled]),
                &[],
                &time(0)
            )),
            Some("zone-b")
        );
    }

    #[test]
    fn without_nodes_the_pod_stays_pending_with_a_reason_once() {
        let plan = reconcile(&unscheduled("web-0"), &[], &[], &time(7));
        let [Object::Pod(updated)] = plan.update_status.as_slice() else {
            panic!("{plan:?}")
        };
        let condition = &updated
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            condition,
            &PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/0 nodes are available: no nodes are registered.".into()),
                last_transition_time: Some(time(7)),
                ..PodCondition::default()
            }
        );
        assert_eq!(
            (plan.events[0].type_, plan.events[0].reason.as_str()),
            (EventType::Warning, "FailedScheduling")
        );
        assert_eq!(reconcile(updated, &[], &[], &time(9)), Plan::default());

        let plan = reconcile(updated, &arcs([node("down", false)]), &[], &time(9));
        assert_eq!(
            plan.events[0].message,
            "0/1 nodes are available: 1 node(s) were not ready."
        );
    }

    #[test]
    fn scheduled_terminating_and_foreign_pods_are_skipped() {
        let nodes = arcs([node("a", true)]);
        assert!(reconcile(&pod("x", "web", "10.0.0.1", true), &nodes, &[], &time(0)).is_empty());
        let mut terminating = unscheduled("y");
        terminating.metadata.deletion_timestamp = Some(time(1));
        assert!(reconcile(&terminating, &nodes, &[], &time(0)).is_empty());
        let mut foreign = unscheduled("z");
        foreign.spec.as_mut().unwrap().scheduler_name = Some("other".into());
        assert!(reconcile(&foreign, &nodes, &[], &time(0)).is_empty());
    }
}

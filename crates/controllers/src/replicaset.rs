//! The ReplicaSet reconciler: keep `spec.replicas` interchangeable pods running.
//!
//! Pods are created from the template with `generateName: <replicaset>-`, so the server
//! picks the 5-character suffix. Terminating and finished pods do not count. Extra pods
//! are deleted in Kubernetes' order of least value: unscheduled before scheduled,
//! Pending before Unknown before Running, not Ready before Ready, newest first.
//! At most [`BURST_REPLICAS`] pods are created or deleted per step.
//!
//! Not done: adoption of orphaned pods that match the selector.

use std::cmp::Reverse;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::meta;
use crate::plan::{Deletion, Kind, Object, Plan};

/// The most pods one step creates or deletes (Kubernetes' `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The pods `owner` controls in its namespace.
pub fn controlled_pods<'a>(owner: &ObjectMeta, pods: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let owner_uid = meta::uid(owner);
    pods.iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| {
            meta::namespace(&pod.metadata) == meta::namespace(owner)
                && meta::is_controlled_by(&pod.metadata, owner_uid)
        })
        .collect()
}

/// True when `pod` has been Ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: &Time) -> bool {
    if !meta::is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let ready_since = pod
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready")
        .and_then(|condition| condition.last_transition_time.as_ref());
    ready_since.is_some_and(|since| {
        now.0.as_second() - since.0.as_second() >= i64::from(min_ready_seconds)
    })
}

/// The order in which pods are deleted when scaling down: the smallest key goes first.
fn deletion_rank(pod: &Pod) -> impl Ord + use<> {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_ref())
        .is_some_and(|node| !node.is_empty());
    let phase = match meta::pod_phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.as_second())
        .unwrap_or(i64::MAX);
    (
        scheduled,
        phase,
        meta::is_pod_ready(pod),
        Reverse(created),
        meta::name(&pod.metadata).to_string(),
    )
}

/// A new pod from the ReplicaSet's template.
pub fn new_pod(replica_set: &ReplicaSet) -> Pod {
    let template = replica_set.spec.template.clone().unwrap_or_default();
    let template_metadata = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", meta::name(&replica_set.metadata))),
            namespace: replica_set.metadata.namespace.clone(),
            labels: template_metadata.labels,
            annotations: template_metadata.annotations,
            owner_references: Some(vec![meta::controller_reference(
                Kind::ReplicaSet,
                &replica_set.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Plans one step for `replica_set`; `pods` may hold any pods.
pub fn reconcile(replica_set: &ReplicaSet, pods: &[Arc<Pod>], now: &Time) -> Plan {
    let mut plan = Plan::default();
    let owned = controlled_pods(&replica_set.metadata, pods);
    let mut active: Vec<&Pod> = owned
        .iter()
        .copied()
        .filter(|pod| meta::is_pod_active(pod))
        .collect();
    if !meta::is_terminating(&replica_set.metadata) {
        let wanted =
            usize::try_from(replica_set.spec.replicas.unwrap_or(1).max(0)).unwrap_or_default();
        if active.len() < wanted {
            let missing = (wanted - active.len()).min(BURST_REPLICAS);
            plan.create
                .extend((0..missing).map(|_| Object::Pod(new_pod(replica_set))));
        } else if active.len() > wanted {
            let surplus = (active.len() - wanted).min(BURST_REPLICAS);
            active.sort_by_cached_key(|pod| deletion_rank(pod));
            plan.delete
                .extend(active.iter().take(surplus).map(|pod| Deletion::of_pod(pod)));
        }
    }

    let min_ready_seconds = replica_set.spec.min_ready_seconds.unwrap_or(0);
    let template_labels = replica_set
        .spec
        .template
        .as_ref()
        .and_then(|template| template.metadata.as_ref())
        .map(meta::labels)
        .cloned()
        .unwrap_or_default();
    let count = |predicate: &dyn Fn(&Pod) -> bool| -> i32 {
        i32::try_from(active.iter().filter(|pod| predicate(pod)).count()).unwrap_or(i32::MAX)
    };
    let previous = replica_set.status.clone().unwrap_or_default();
    let status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|pod| {
            template_labels
                .iter()
                .all(|(key, value)| meta::labels(&pod.metadata).get(key) == Some(value))
        })),
        ready_replicas: Some(count(&meta::is_pod_ready)),
        available_replicas: Some(count(&|pod| is_pod_available(pod, min_ready_seconds, now))),
        observed_generation: replica_set.metadata.generation,
        conditions: previous.conditions.clone(),
        terminating_replicas: previous.terminating_replicas,
    };
    if replica_set.status.as_ref() != Some(&status) {
        let mut updated = replica_set.clone();
        updated.status = Some(status);
        plan.update_status.push(Object::ReplicaSet(updated));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{arcs, labels, metadata, pod, time};
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    pub(crate) fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..metadata(name)
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    match_expressions: None,
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                min_ready_seconds: None,
            },
            status: None,
        }
    }

    fn member(replica_set: &ReplicaSet, name: &str, ready: bool, created: i64) -> Pod {
        let mut member = pod(name, "web", "10.0.0.1", ready);
        member.metadata.owner_references = Some(vec![meta::controller_reference(
            Kind::ReplicaSet,
            &replica_set.metadata,
        )]);
        member.metadata.creation_timestamp = Some(time(created));
        member
    }

    #[test]
    fn scale_up_creates_pods_with_generate_name() {
        let replica_set = replica_set("web-abc", 3);
        let plan = reconcile(&replica_set, &[], &time(0));
        assert_eq!(plan.create, vec![Object::Pod(new_pod(&replica_set)); 3]);
        let Object::Pod(pod) = &plan.create[0] else {
            unreachable!()
        };
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-abc-"));
        assert_eq!(pod.metadata.labels, Some(labels(&[("app", "web")])));
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].kind,
            "ReplicaSet"
        );
        assert_eq!(
            plan.update_status.len(),
            1,
            "the status records observedGeneration even with no pods yet"
        );
    }

    #[test]
    fn scale_down_removes_not_ready_then_newest_first() {
        let replica_set = replica_set("web-abc", 2);
        let pods = arcs([
            member(&replica_set, "web-abc-old", true, 1),
            member(&replica_set, "web-abc-new", true, 9),
            member(&replica_set, "web-abc-mid", true, 5),
            member(&replica_set, "web-abc-sick", false, 2),
        ]);
        let plan = reconcile(&replica_set, &pods, &time(10));
        let deleted: Vec<&str> = plan
            .delete
            .iter()
            .map(|deletion| deletion.name.as_str())
            .collect();
        assert_eq!(deleted, vec!["web-abc-sick", "web-abc-new"]);
        assert!(plan.create.is_empty());
    }

    #[test]
    fn terminating_and_finished_pods_do_not_count() {
        let replica_set = replica_set("web-abc", 2);
        let mut terminating = member(&replica_set, "web-abc-1", true, 1);
        terminating.metadata.deletion_timestamp = Some(time(3));
        let mut finished = member(&replica_set, "web-abc-2", false, 1);
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods = arcs([
            terminating,
            finished,
            member(&replica_set, "web-abc-3", true, 1),
        ]);
        let plan = reconcile(&replica_set, &pods, &time(10));
        assert_eq!(plan.create.len(), 1);
        let Object::ReplicaSet(updated) = &plan.update_status[0] else {
            unreachable!()
        };
        assert_eq!(updated.status.as_ref().unwrap().replicas, 1);
    }

    #[test]
    fn status_counts_ready_and_available_and_settles() {
        let mut replica_set = replica_set("web-abc", 2);
        replica_set.spec.min_ready_seconds = Some(30);
        let mut recently_ready = member(&replica_set, "web-abc-2", true, 1);
        recently_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_transition_time = Some(time(90));
        let mut long_ready = member(&replica_set, "web-abc-1", true, 1);
        long_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_transition_time = Some(time(10));
        let pods = arcs([long_ready, recently_ready]);
        let plan = reconcile(&replica_set, &pods, &time(100));
        let Object::ReplicaSet(updated) = &plan.update_status[0] else {
            unreachable!()
        };
        assert_eq!(
            updated.status,
            Some(ReplicaSetStatus {
                replicas: 2,
                fully_labeled_replicas: Some(2),
                ready_replicas: Some(2),
                available_replicas: Some(1),
                observed_generation: Some(1),
                conditions: None,
                terminating_replicas: None,
            })
        );
        assert_eq!(reconcile(updated, &pods, &time(100)), Plan::default());
    }
}

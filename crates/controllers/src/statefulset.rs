//! The StatefulSet reconciler: pods with stable names `NAME-0 … NAME-(n-1)`.
//!
//! Each pod gets `spec.hostname` = its name and `spec.subdomain` = `spec.serviceName`,
//! so that with a headless Service of that name it resolves as
//! `<pod>.<service>.<namespace>.svc`. Labels: `statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index` and `controller-revision-hash`.
//!
//! One call of [`reconcile`] makes one step, as Kubernetes' controller does:
//!
//! - `OrderedReady` (default): create the lowest missing ordinal only when every lower
//!   ordinal is Running and Ready; delete terminal pods so they come back under the same
//!   name; scale down from the highest ordinal, one pod at a time, waiting for it to go.
//! - `Parallel`: create and delete every pod that needs it at once.
//! - `RollingUpdate`: once every pod exists and is healthy, delete the highest ordinal
//!   ≥ `partition` whose revision is not the update revision (it is then recreated from
//!   the new template), one at a time.
//!
//! Status (`replicas`, `readyReplicas`, `currentReplicas`, `updatedReplicas`,
//! `availableReplicas`, `currentRevision`, `updateRevision`, `observedGeneration`) is
//! what `kubectl rollout status` reads.
//!
//! Differences from Kubernetes, by design of a smaller system: revisions are the hash
//! of the pod template (`<set>-<hash>`) instead of ControllerRevision objects, so a pod
//! re-created below the partition gets the current template rather than the old one;
//! `minReadySeconds` is not honoured (available = ready); orphaned pods are not adopted;
//! volume claim templates are ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::meta;
use crate::plan::{Deletion, EventNote, EventType, Kind, Object, Plan};

/// Label with the pod's own name (lets a Service select exactly one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label with the revision the pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The revision name of the set's current template.
pub fn update_revision(set: &StatefulSet) -> String {
    let template = &set.spec.template;
    let collisions = set
        .status
        .as_ref()
        .and_then(|status| status.collision_count);
    format!(
        "{}-{}",
        meta::name(&set.metadata),
        meta::template_hash(template, collisions)
    )
}

/// The ordinal of a pod named `<set>-<ordinal>`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let digits = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if digits.is_empty()
        || !digits.bytes().all(|byte| byte.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

fn revision_of(pod: &Pod) -> Option<&str> {
    meta::labels(&pod.metadata)
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// A new pod for `ordinal`, from the set's current template.
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let spec = set.spec.clone();
    let template_metadata = spec.template.metadata.unwrap_or_default();
    let name = format!("{}-{}", meta::name(&set.metadata), ordinal);
    let mut labels: BTreeMap<String, String> = template_metadata.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.to_string(), name.clone());
    labels.insert(POD_INDEX_LABEL.to_string(), ordinal.to_string());
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    let mut pod_spec: PodSpec = spec.template.spec.unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.filter(|service| !service.is_empty());
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: template_metadata.annotations,
            owner_references: Some(vec![meta::controller_reference(
                Kind::StatefulSet,
                &set.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

fn delete_pod(pod: &Pod) -> Deletion {
    Deletion::of_pod(pod)
}

/// Plans one step for `set`. `pods` may hold any pods: only those the set controls
/// count. `governing_service` is the Service named by `spec.serviceName`, if it exists.
pub fn reconcile(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    governing_service: Option<&Service>,
) -> Plan {
    let mut plan = Plan::default();
    let spec = &set.spec;
    if meta::is_terminating(&set.metadata) {
        return plan;
    }
    let set_name = meta::name(&set.metadata);
    let set_uid = meta::uid(&set.metadata);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec
        .ordinals
        .as_ref()
        .and_then(|ordinals| ordinals.start)
        .unwrap_or(0)
        .max(0);
    let end = start + replicas;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let update_revision = update_revision(set);

    let mut members: BTreeMap<i32, &Pod> = BTreeMap::new();
    for pod in pods.iter().map(|pod| pod.as_ref()) {
        if meta::namespace(&pod.metadata) == meta::namespace(&set.metadata)
            && meta::is_controlled_by(&pod.metadata, set_uid)
            && let Some(ordinal) = ordinal_of(set_name, meta::name(&pod.metadata))
        {
            members.insert(ordinal, pod);
        }
    }

    // Step 1: every ordinal in range exists and is healthy, lowest first.
    let mut blocked = false;
    for ordinal in start..end {
        match members.get(&ordinal) {
            None => {
                plan.create
                    .push(Object::Pod(new_pod(set, ordinal, &update_revision)));
                blocked = true;
            }
            Some(pod) if meta::is_terminating(&pod.metadata) => blocked = true,
            Some(pod) if meta::is_pod_terminal(pod) => {
                // A finished pod is replaced under the same name once it is gone.
                plan.delete.push(delete_pod(pod));
                blocked = true;
            }
            Some(pod) if !meta::is_running_and_ready(pod) => blocked = true,
            Some(_) => {}
        }
        if blocked && !parallel {
            break;
        }
    }

    // Step 2: pods beyond the range go, highest first.
    let condemned: Vec<&Pod> = members
        .iter()
        .rev()
        .filter(|(ordinal, _)| **ordinal < start || **ordinal >= end)
        .map(|(_, pod)| *pod)
        .collect();
    if parallel || !blocked {
        for pod in condemned {
            if meta::is_terminating(&pod.metadata) {
                blocked = true;
            } else {
                plan.delete.push(delete_pod(pod));
                blocked = true;
            }
            if !parallel {
                break;
            }
        }
    }

    // Step 3: rolling update, highest ordinal first, down to the partition.
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| strategy.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling && !blocked && plan.write_count() == 0 {
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|strategy| strategy.rolling_update.as_ref())
            .and_then(|rolling_update| rolling_update.partition)
            .unwrap_or(0);
        for ordinal in (start.max(partition)..end).rev() {
            let Some(pod) = members.get(&ordinal) else {
                break;
            };
            if revision_of(pod) != Some(update_revision.as_str()) {
                plan.delete.push(delete_pod(pod));
                break;
            }
            if !meta::is_running_and_ready(pod) {
                break;
            }
        }
    }

    if !plan.create.is_empty() {
        let service_name = spec.service_name.as_deref().unwrap_or_default();
        if !service_name.is_empty() && governing_service.is_none() {
            plan.events.push(EventNote {
                regarding: meta::object_reference(Kind::StatefulSet, &set.metadata),
                type_: EventType::Warning,
                reason: "MissingGoverningService".to_string(),
                message: format!(
                    "service {service_name:?} named in spec.serviceName does not exist; the pods get no per-pod DNS names until it does"
                ),
            });
        }
    }

    let status = compute_status(set, &members, &update_revision);
    if set.status.as_ref() != Some(&status) {
        let mut updated = set.clone();
        updated.status = Some(status);
        plan.update_status.push(Object::StatefulSet(updated));
    }
    plan
}

fn compute_status(
    set: &StatefulSet,
    members: &BTreeMap<i32, &Pod>,
    update_revision: &str,
) -> StatefulSetStatus {
    let previous = set.status.clone().unwrap_or_default();
    let current_revision = previous
        .current_revision
        .clone()
        .unwrap_or_else(|| update_revision.to_string());
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current_revision.clone()),
        update_revision: Some(update_revision.to_string()),
        collision_count: previous.collision_count,
        conditions: previous.conditions.clone(),
        ..StatefulSetStatus::default()
    };
    let (mut ready, mut current, mut updated) = (0, 0, 0);
    for pod in members.values() {
        status.replicas += 1;
        if meta::is_running_and_ready(pod) && !meta::is_terminating(&pod.metadata) {
            ready += 1;
        }
        if !meta::is_terminating(&pod.metadata) {
            let revision = revision_of(pod);
            if revision == Some(current_revision.as_str()) {
                current += 1;
            }
            if revision == Some(update_revision) {
                updated += 1;
            }
        }
    }
    // A finished rollout makes the update revision the current one.
    if updated == status.replicas && ready == status.replicas {
        current = updated;
        status.current_revision = Some(update_revision.to_string());
    }
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(ready);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{arcs, labels, metadata, time};
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};

    fn set(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                generation: Some(1),
                ..metadata("web")
            },
            spec: StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("web".to_string()),
                selector: LabelSelector {
                    match_labels: Some(labels(&[("app", "web")])),
                    match_expressions: None,
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "main".into(),
                            image: Some("v1".into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..StatefulSetSpec::default()
            },
            status: None,
        }
    }

    fn governing() -> Service {
        crate::fixtures::service("web", "web")
    }

    /// The pod the controller would create, as the server returns it once Running.
    fn member(set: &StatefulSet, ordinal: i32, ready: bool) -> Pod {
        let mut pod = new_pod(set, ordinal, &update_revision(set));
        pod.metadata.uid = Some(format!("uid-web-{ordinal}"));
        pod.metadata.creation_timestamp = Some(time(ordinal.into()));
        pod.status = Some(PodStatus {
            phase: Some("Running".to_string()),
            pod_ip: Some(format!("10.0.0.{}", ordinal + 1)),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod
    }

    fn created_names(plan: &Plan) -> Vec<String> {
        plan.create.iter().map(Object::display_name).collect()
    }

    fn deleted_names(plan: &Plan) -> Vec<&str> {
        plan.delete
            .iter()
            .map(|deletion| deletion.name.as_str())
            .collect()
    }

    fn status_of(plan: &Plan) -> StatefulSetStatus {
        match plan.update_status.as_slice() {
            [Object::StatefulSet(set)] => set.status.clone().unwrap(),
            other => panic!("expected one status update, got {other:?}"),
        }
    }

    #[test]
    fn first_pod_has_the_stable_identity() {
        let set = set(3);
        let plan = reconcile(&set, &[], Some(&governing()));
        let [Object::Pod(pod)] = plan.create.as_slice() else {
            panic!("expected one pod, got {:?}", plan.create)
        };
        let revision = update_revision(&set);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-0"));
        assert_eq!(
            pod.metadata.labels,
            Some(labels(&[
                ("app", "web"),
                (POD_NAME_LABEL, "web-0"),
                (POD_INDEX_LABEL, "0"),
                (REVISION_LABEL, &revision)
            ]))
        );
        assert_eq!(
            pod.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                name: "web".into(),
                uid: "uid-web".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }])
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert!(plan.events.is_empty());
        assert_eq!(
            status_of(&plan),
            StatefulSetStatus {
                replicas: 0,
                ready_replicas: Some(0),
                available_replicas: Some(0),
                current_replicas: Some(0),
                updated_replicas: Some(0),
                current_revision: Some(revision.clone()),
                update_revision: Some(revision),
                observed_generation: Some(1),
                ..StatefulSetStatus::default()
            }
        );
    }

    #[test]
    fn ordered_ready_waits_for_each_pod_to_be_ready() {
        let set = set(3);
        let not_ready = arcs([member(&set, 0, false)]);
        assert!(
            reconcile(&set, &not_ready, Some(&governing()))
                .create
                .is_empty()
        );
        let ready = arcs([member(&set, 0, true)]);
        assert_eq!(
            created_names(&reconcile(&set, &ready, Some(&governing()))),
            vec!["web-1"]
        );
        let mut pending = member(&set, 1, false);
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        let plan = reconcile(
            &set,
            &arcs([member(&set, 0, true), pending]),
            Some(&governing()),
        );
        assert!(plan.create.is_empty() && plan.delete.is_empty());
    }

    #[test]
    fn parallel_creates_everything_at_once() {
        let mut set = set(3);
        set.spec.pod_management_policy = Some("Parallel".into());
        assert_eq!(
            created_names(&reconcile(&set, &[], Some(&governing()))),
            vec!["web-0", "web-1", "web-2"]
        );
    }

    #[test]
    fn a_deleted_pod_comes_back_with_the_same_name() {
        let set = set(3);
        let pods = arcs([member(&set, 0, true), member(&set, 2, true)]);
        let plan = reconcile(&set, &pods, Some(&governing()));
        assert_eq!(created_names(&plan), vec!["web-1"]);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_failed_pod_is_deleted_to_be_recreated() {
        let set = set(2);
        let mut failed = member(&set, 1, false);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let plan = reconcile(
            &set,
            &arcs([member(&set, 0, true), failed]),
            Some(&governing()),
        );
        assert_eq!(deleted_names(&plan), vec!["web-1"]);
        assert_eq!(plan.delete[0].uid.as_deref(), Some("uid-web-1"));
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let set = set(2);
        let pods: Vec<Pod> = (0..5).map(|ordinal| member(&set, ordinal, true)).collect();
        let plan = reconcile(&set, &arcs(pods.clone()), Some(&governing()));
        assert_eq!(deleted_names(&plan), vec!["web-4"]);

        let mut terminating = pods.clone();
        terminating[4].metadata.deletion_timestamp = Some(time(9));
        let plan = reconcile(&set, &arcs(terminating), Some(&governing()));
        assert!(plan.delete.is_empty(), "waits for web-4 to be gone");

        let mut parallel_set = set.clone();
        parallel_set.spec.pod_management_policy = Some("Parallel".into());
        let mut parallel_pods = pods;
        for pod in &mut parallel_pods {
            pod.metadata.owner_references = Some(vec![meta::controller_reference(
                Kind::StatefulSet,
                &parallel_set.metadata,
            )]);
        }
        assert_eq!(
            deleted_names(&reconcile(
                &parallel_set,
                &arcs(parallel_pods),
                Some(&governing())
            )),
            vec!["web-4", "web-3", "web-2"]
        );
    }

    #[test]
    fn scale_down_waits_while_a_member_is_unhealthy() {
        let set = set(2);
        let pods = arcs([
            member(&set, 0, false),
            member(&set, 1, true),
            member(&set, 2, true),
        ]);
        assert!(reconcile(&set, &pods, Some(&governing())).delete.is_empty());
    }

    #[test]
    fn rolling_update_replaces_from_the_highest_ordinal_and_honours_the_partition() {
        let old_set = set(3);
        let pods: Vec<Pod> = (0..3)
            .map(|ordinal| member(&old_set, ordinal, true))
            .collect();
        let mut new_set = old_set.clone();
        new_set.metadata.generation = Some(2);
        new_set.spec.template.spec.as_mut().unwrap().containers[0].image = Some("v2".into());
        new_set.status = Some(StatefulSetStatus {
            current_revision: Some(update_revision(&old_set)),
            ..Default::default()
        });

        let plan = reconcile(&new_set, &arcs(pods.clone()), Some(&governing()));
        assert_eq!(deleted_names(&plan), vec!["web-2"]);
        let status = status_of(&plan);
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(3), Some(0))
        );
        assert_ne!(status.current_revision, status.update_revision);

        // web-2 was recreated from the new template: the next to go is web-1.
        let mut rolled = pods.clone();
        rolled[2] = member(&new_set, 2, true);
        assert_eq!(
            deleted_names(&reconcile(
                &new_set,
                &arcs(rolled.clone()),
                Some(&governing())
            )),
            vec!["web-1"]
        );

        // With partition 2, ordinals below 2 keep the old revision.
        let mut partitioned = new_set.clone();
        partitioned.spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        assert!(
            reconcile(&partitioned, &arcs(rolled), Some(&governing()))
                .delete
                .is_empty()
        );

        // OnDelete never deletes for an update.
        let mut on_delete = new_set.clone();
        on_delete.spec.update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(
            reconcile(&on_delete, &arcs(pods), Some(&governing()))
                .delete
                .is_empty()
        );
    }

    #[test]
    fn finished_rollout_promotes_the_update_revision_and_then_plans_nothing() {
        let old_set = set(2);
        let mut new_set = old_set.clone();
        new_set.spec.template.spec.as_mut().unwrap().containers[0].image = Some("v2".into());
        new_set.status = Some(StatefulSetStatus {
            current_revision: Some(update_revision(&old_set)),
            ..Default::default()
        });
        let pods = arcs([member(&new_set, 0, true), member(&new_set, 1, true)]);
        let plan = reconcile(&new_set, &pods, Some(&governing()));
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        let status = status_of(&plan);
        assert_eq!(status.current_revision, Some(update_revision(&new_set)));
        assert_eq!(status.update_revision, Some(update_revision(&new_set)));
        assert_eq!(
            (
                status.replicas,
                status.ready_replicas,
                status.current_replicas
            ),
            (2, Some(2), Some(2))
        );

        let mut settled = new_set.clone();
        settled.status = Some(status);
        assert_eq!(
            reconcile(&settled, &pods, Some(&governing())),
            Plan::default()
        );
    }

    #[test]
    fn a_missing_governing_service_is_reported_with_the_creation() {
        let plan = reconcile(&set(1), &[], None);
        assert_eq!(created_names(&plan), vec!["web-0"]);
        assert_eq!(plan.events.len(), 1);
        assert_eq!(
            (plan.events[0].type_, plan.events[0].reason.as_str()),
            (EventType::Warning, "MissingGoverningService")
        );
    }

    #[test]
    fn pods_of_other_owners_are_ignored() {
        let set = set(1);
        let mut stranger = member(&set, 0, true);
        stranger.metadata.owner_references = None;
        // The name is taken: the create will fail at the server, as in Kubernetes without adoption.
        assert_eq!(
            created_names(&reconcile(&set, &arcs([stranger]), Some(&governing()))),
            vec!["web-0"]
        );
    }

    #[test]
    fn ordinals_parse_strictly() {
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
    }
}

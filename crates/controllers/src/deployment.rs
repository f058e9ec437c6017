//! The Deployment reconciler: one ReplicaSet per pod template, rolled over.
//!
//! The ReplicaSet of the current template is named `<deployment>-<hash>`, where the hash
//! ([`meta::template_hash`]) also goes into the `pod-template-hash` label of the
//! ReplicaSet, its selector and its pod template, so pods of different revisions never
//! match each other's selector. Each step:
//!
//! - `RollingUpdate` (default, `maxSurge` and `maxUnavailable` default to 25%, rounded
//!   up and down): grow the new ReplicaSet while the total stays within
//!   `replicas + maxSurge`, then shrink old ReplicaSets (unhealthy replicas first,
//!   oldest ReplicaSet first) while availability stays at `replicas - maxUnavailable`;
//! - `Recreate`: shrink every old ReplicaSet to zero, wait until their pods are gone,
//!   then create or grow the new one;
//! - old ReplicaSets beyond `revisionHistoryLimit` (default 10) that are scaled to zero
//!   are deleted;
//! - status and the `Available` / `Progressing` conditions are written for
//!   `kubectl rollout status`.
//!
//! Not done: `progressDeadlineSeconds` (no `ProgressDeadlineExceeded`), proportional
//! scaling of a paused or mid-rollout Deployment, hash-collision handling, adoption.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::meta;
use crate::plan::{Deletion, EventNote, EventType, Kind, Object, Plan};

/// The label that separates revisions.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The revision number of a ReplicaSet.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";

fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(metadata) = template.metadata.as_mut() {
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
        if metadata.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            metadata.labels = None;
        }
    }
    template
}

fn revision(replica_set: &ReplicaSet) -> i64 {
    replica_set
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(REVISION_ANNOTATION))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(replica_set: &ReplicaSet) -> i32 {
    replica_set.spec.replicas.unwrap_or(1)
}

fn status_field(
    replica_set: &ReplicaSet,
    field: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    replica_set.status.as_ref().and_then(field).unwrap_or(0)
}

fn available(replica_set: &ReplicaSet) -> i32 {
    status_field(replica_set, |status| status.available_replicas)
}

/// A ReplicaSet as this step wants it: the original plus the planned replica count.
struct Planned {
    replica_set: ReplicaSet,
    replicas: i32,
    created: bool,
}

/// Plans one step for `deployment`. `replica_sets` and `pods` may hold any objects:
/// only those the Deployment (or its ReplicaSets) control count.
pub fn reconcile(
    deployment: &Deployment,
    replica_sets: &[Arc<ReplicaSet>],
    pods: &[Arc<Pod>],
    now: &Time,
) -> Plan {
    let mut plan = Plan::default();
    if meta::is_terminating(&deployment.metadata) {
        return plan;
    }
    let spec = &deployment.spec;
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let recreate = strategy.type_.as_deref() == Some("Recreate");
    let rolling = strategy.rolling_update.unwrap_or_default();
    let mut max_surge = meta::scaled_value(rolling.max_surge.as_ref(), replicas, 25, true);
    let mut max_unavailable =
        meta::scaled_value(rolling.max_unavailable.as_ref(), replicas, 25, false);
    if recreate {
        (max_surge, max_unavailable) = (0, replicas);
    } else if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }

    let deployment_uid = meta::uid(&deployment.metadata);
    let mut owned: Vec<&ReplicaSet> = replica_sets
        .iter()
        .map(|replica_set| replica_set.as_ref())
        .filter(|replica_set| {
            meta::namespace(&replica_set.metadata) == meta::namespace(&deployment.metadata)
                && meta::is_controlled_by(&replica_set.metadata, deployment_uid)
        })
        .collect();
    owned.sort_by_key(|replica_set| {
        (
            replica_set
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0.as_second()),
            meta::name(&replica_set.metadata).to_string(),
        )
    });
    let template = without_hash(&spec.template);
    let new_position = owned.iter().position(|replica_set| {
        replica_set
            .spec
            .template
            .as_ref()
            .map(without_hash)
            .as_ref()
            == Some(&template)
    });
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(position, _)| Some(*position) != new_position)
        .map(|(_, replica_set)| revision(replica_set))
        .max()
        .unwrap_or(0);
    let mut old: Vec<Planned> = owned
        .iter()
        .enumerate()
        .filter(|(position, _)| Some(*position) != new_position)
        .map(|(_, replica_set)| Planned {
            replica_set: (*replica_set).clone(),
            replicas: spec_replicas(replica_set),
            created: false,
        })
        .collect();
    let mut new = new_position.map(|position| Planned {
        replica_set: owned[position].clone(),
        replicas: spec_replicas(owned[position]),
        created: false,
    });
    let paused = spec.paused == Some(true);

    if !paused && recreate {
        for planned in &mut old {
            planned.replicas = 0;
        }
        let old_uids: Vec<&str> = owned
            .iter()
            .enumerate()
            .filter(|(position, _)| Some(*position) != new_position)
            .map(|(_, replica_set)| meta::uid(&replica_set.metadata))
            .collect();
        let old_pods_remain = pods.iter().any(|pod| {
            !meta::is_pod_terminal(pod)
                && meta::controller_of(&pod.metadata)
                    .is_some_and(|owner| old_uids.contains(&owner.uid.as_str()))
        });
        if !old_pods_remain {
            match new.as_mut() {
                Some(planned) => planned.replicas = replicas,
                None => {
                    new = Some(new_replica_set(
                        deployment,
                        replicas,
                        max_old_revision + 1,
                        max_surge,
                    ))
                }
            }
        }
    } else if !paused {
        let old_total: i32 = old.iter().map(|planned| planned.replicas).sum();
        match new.as_mut() {
            None => {
                let room = (replicas + max_surge - old_total).max(0).min(replicas);
                new = Some(new_replica_set(
                    deployment,
                    room,
                    max_old_revision + 1,
                    max_surge,
                ));
            }
            Some(planned) if planned.replicas > replicas => planned.replicas = replicas,
            Some(planned) if planned.replicas < replicas => {
                let total = old_total + planned.replicas;
                let room = (replicas + max_surge - total).max(0);
                planned.replicas += room.min(replicas - planned.replicas);
            }
            Some(_) => {}
        }
        scale_down_old(&mut old, new.as_ref(), replicas, max_unavailable);
    }

    // Write the ReplicaSets that changed.
    let mut all_planned: Vec<&Planned> = old.iter().collect();
    all_planned.extend(new.as_ref());
    for planned in &all_planned {
        let before = if planned.created {
            0
        } else {
            spec_replicas(&planned.replica_set)
        };
        let mut replica_set = planned.replica_set.clone();
        let annotations = replica_set
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        let is_new = new.as_ref().is_some_and(|new| std::ptr::eq(new, *planned));
        let mut changed = planned.replicas != before;
        if changed || planned.created {
            annotations.insert(
                DESIRED_REPLICAS_ANNOTATION.to_string(),
                replicas.to_string(),
            );
            annotations.insert(
                MAX_REPLICAS_ANNOTATION.to_string(),
                (replicas + max_surge).to_string(),
            );
        }
        if is_new && revision(&planned.replica_set) <= max_old_revision {
            // A rollback to an older template makes that ReplicaSet the newest revision.
            replica_set
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    REVISION_ANNOTATION.to_string(),
                    (max_old_revision + 1).to_string(),
                );
            changed = true;
        }
        replica_set.spec.replicas = Some(planned.replicas);
        if planned.created {
            plan.create.push(Object::ReplicaSet(replica_set));
        } else if changed {
            plan.update.push(Object::ReplicaSet(replica_set));
        }
        if planned.replicas != before {
            let direction = if planned.replicas > before {
                "up"
            } else {
                "down"
            };
            plan.events.push(EventNote {
                regarding: meta::object_reference(Kind::Deployment, &deployment.metadata),
                type_: EventType::Normal,
                reason: "ScalingReplicaSet".to_string(),
                message: format!(
                    "Scaled {direction} replica set {} from {before} to {}",
                    meta::name(&planned.replica_set.metadata),
                    planned.replicas
                ),
            });
        }
    }

    // Old, empty revisions beyond the history limit go, oldest first.
    let history_limit =
        usize::try_from(spec.revision_history_limit.unwrap_or(10).max(0)).unwrap_or_default();
    let empty_old: Vec<&Planned> = old
        .iter()
        .filter(|planned| {
            planned.replicas == 0
                && spec_replicas(&planned.replica_set) == 0
                && planned
                    .replica_set
                    .status
                    .as_ref()
                    .is_none_or(|status| status.replicas == 0)
                && !meta::is_terminating(&planned.replica_set.metadata)
        })
        .collect();
    let excess = empty_old.len().saturating_sub(history_limit);
    plan.delete
        .extend(empty_old.iter().take(excess).map(|planned| Deletion {
            kind: Kind::ReplicaSet,
            namespace: meta::namespace(&planned.replica_set.metadata).to_string(),
            name: meta::name(&planned.replica_set.metadata).to_string(),
            uid: planned.replica_set.metadata.uid.clone(),
            propagation: None,
            report_to: None,
        }));

    let status = compute_status(
        deployment,
        &old,
        new.as_ref(),
        replicas,
        max_unavailable,
        now,
    );
    if deployment.status.as_ref() != Some(&status) {
        let mut updated = deployment.clone();
        updated.status = Some(status);
        plan.update_status.push(Object::Deployment(updated));
    }
    plan
}

fn new_replica_set(
    deployment: &Deployment,
    replicas: i32,
    revision: i64,
    max_surge: i32,
) -> Planned {
    let spec = &deployment.spec;
    let collisions = deployment
        .status
        .as_ref()
        .and_then(|status| status.collision_count);
    let hash = meta::template_hash(&without_hash(&spec.template), collisions);
    let mut template = spec.template.clone();
    let template_metadata = template.metadata.get_or_insert_with(ObjectMeta::default);
    template_metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH_LABEL.to_string(), hash.clone());
    let labels = template_metadata.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH_LABEL.to_string(), hash.clone());
    let replica_set = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", meta::name(&deployment.metadata))),
            namespace: deployment.metadata.namespace.clone(),
            labels,
            annotations: Some(BTreeMap::from([
                (REVISION_ANNOTATION.to_string(), revision.to_string()),
                (
                    DESIRED_REPLICAS_ANNOTATION.to_string(),
                    spec.replicas.unwrap_or(1).to_string(),
                ),
                (
                    MAX_REPLICAS_ANNOTATION.to_string(),
                    (spec.replicas.unwrap_or(1) + max_surge).to_string(),
                ),
            ])),
            owner_references: Some(vec![meta::controller_reference(
                Kind::Deployment,
                &deployment.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    };
    Planned {
        replica_set,
        replicas,
        created: true,
    }
}

/// Shrinks old ReplicaSets as far as availability allows, unhealthy replicas first.
fn scale_down_old(old: &mut [Planned], new: Option<&Planned>, replicas: i32, max_unavailable: i32) {
    let old_total: i32 = old.iter().map(|planned| planned.replicas).sum();
    if old_total == 0 {
        return;
    }
    let new_replicas = new.map_or(0, |planned| planned.replicas);
    let new_available = new.map_or(0, |planned| available(&planned.replica_set));
    let all_total = old_total + new_replicas;
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new_replicas - new_available).max(0);
    let mut budget = all_total - min_available - new_unavailable;
    if budget <= 0 {
        return;
    }
    // Unavailable old replicas cost nothing to remove.
    for planned in old.iter_mut() {
        let unhealthy = (planned.replicas - available(&planned.replica_set)).max(0);
        let cut = unhealthy.min(budget);
        planned.replicas -= cut;
        budget -= cut;
        if budget == 0 {
            return;
        }
    }
    let available_total: i32 = old
        .iter()
        .map(|planned| available(&planned.replica_set).min(planned.replicas))
        .sum::<i32>()
        + new_available;
    let mut to_remove = (available_total - min_available).min(budget);
    for planned in old.iter_mut() {
        if to_remove <= 0 {
            break;
        }
        let cut = planned.replicas.min(to_remove);
        planned.replicas -= cut;
        to_remove -= cut;
    }
}

fn compute_status(
    deployment: &Deployment,
    old: &[Planned],
    new: Option<&Planned>,
    replicas: i32,
    max_unavailable: i32,
    now: &Time,
) -> DeploymentStatus {
    let previous = deployment.status.clone().unwrap_or_default();
    let all = old.iter().chain(new);
    let sum = |field: fn(&ReplicaSet) -> i32| -> i32 {
        all.clone().map(|planned| field(&planned.replica_set)).sum()
    };
    let total = sum(|replica_set| {
        replica_set
            .status
            .as_ref()
            .map_or(0, |status| status.replicas)
    });
    let ready = sum(|replica_set| status_field(replica_set, |status| status.ready_replicas));
    let available_total = sum(available);
    let updated = new.map_or(0, |planned| {
        planned
            .replica_set
            .status
            .as_ref()
            .map_or(0, |status| status.replicas)
    });
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    let (status, reason, message) = if available_total >= replicas - max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_string(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_string(),
        )
    };
    set_condition(&mut conditions, "Available", status, reason, message, now);
    if let Some(planned) = new {
        let replica_set_name = meta::name(&planned.replica_set.metadata);
        let complete = updated == replicas
            && total == replicas
            && available_total == replicas
            && planned.replicas == replicas;
        let (reason, message) = if complete {
            (
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{replica_set_name}\" has successfully progressed."),
            )
        } else if planned.created {
            (
                "NewReplicaSetCreated",
                format!("Created new replica set \"{replica_set_name}\""),
            )
        } else {
            (
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{replica_set_name}\" is progressing."),
            )
        };
        set_condition(&mut conditions, "Progressing", "True", reason, message, now);
    }
    DeploymentStatus {
        replicas: Some(total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available_total),
        unavailable_replicas: Some((replicas - available_total).max(0)),
        terminating_replicas: previous.terminating_replicas,
        observed_generation: deployment.metadata.generation,
        collision_count: previous.collision_count,
        conditions: Some(conditions),
    }
}

/// Sets a condition, keeping its timestamps when nothing about it changed (so a steady
/// Deployment plans no write) and its transition time when only the reason changed.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: &Time,
) {
    let position = conditions
        .iter()
        .position(|condition| condition.type_.as_deref() == Some(type_));
    let existing = position.map(|position| conditions[position].clone());
    let condition = match existing {
        Some(existing)
            if existing.status.as_deref() == Some(status)
                && existing.reason.as_deref() == Some(reason)
                && existing.message.as_deref() == Some(message.as_str()) =>
        {
            existing
        }
        Some(existing) if existing.status.as_deref() == Some(status) => DeploymentCondition {
            reason: Some(reason.to_string()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            ..existing
        },
        _ => DeploymentCondition {
            type_: Some(type_.to_string()),
            status: Some(status.to_string()),
            reason: Some(reason.to_string()),
            message: Some(message),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        },
    };
    match position {
        Some(position) => conditions[position] = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{arcs, labels, metadata, pod, time};
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn deployment(replicas: i32, image: &str) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..metadata("web")
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
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
                            image: Some(image.into()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    /// The ReplicaSet as the server would hold it after `plan` created it, with pods up.
    fn settled(plan: &Plan, replicas: i32, available: i32, created: i64) -> ReplicaSet {
        let Some(Object::ReplicaSet(created_set)) = plan.create.first() else {
            panic!("no ReplicaSet created: {plan:?}")
        };
        let mut replica_set = created_set.clone();
        replica_set.metadata.uid = Some(format!("uid-{}", meta::name(&replica_set.metadata)));
        replica_set.metadata.creation_timestamp = Some(time(created));
        replica_set.spec.replicas = Some(replicas);
        replica_set.status = Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..ReplicaSetStatus::default()
        });
        replica_set
    }

    fn replicas_written(plan: &Plan) -> Vec<(String, i32)> {
        plan.create
            .iter()
            .chain(&plan.update)
            .map(|object| match object {
                Object::ReplicaSet(replica_set) => (
                    meta::name(&replica_set.metadata).to_string(),
                    replica_set.spec.replicas.unwrap(),
                ),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn condition<'a>(plan: &'a Plan, type_: &str) -> &'a DeploymentCondition {
        let Some(Object::Deployment(deployment)) = plan.update_status.first() else {
            panic!("no status in {plan:?}")
        };
        deployment
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|condition| condition.type_.as_deref() == Some(type_))
            .unwrap()
    }

    #[test]
    fn a_new_deployment_creates_its_replica_set() {
        let deployment = deployment(3, "v1");
        let plan = reconcile(&deployment, &[], &[], &time(0));
        let Some(Object::ReplicaSet(replica_set)) = plan.create.first() else {
            panic!()
        };
        let hash = meta::template_hash(&deployment.spec.template, None);
        assert_eq!(replica_set.metadata.name, Some(format!("web-{hash}")));
        assert_eq!(replica_set.spec.replicas, Some(3));
        assert_eq!(
            replica_set.spec.selector.match_labels,
            Some(labels(&[("app", "web"), (TEMPLATE_HASH_LABEL, &hash)]))
        );
        let template_labels = replica_set
            .spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone();
        assert_eq!(
            template_labels,
            Some(labels(&[("app", "web"), (TEMPLATE_HASH_LABEL, &hash)]))
        );
        assert_eq!(
            replica_set.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "1"
        );
        assert_eq!(
            replica_set.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Deployment"
        );
        assert_eq!(
            plan.events[0].message,
            format!("Scaled up replica set web-{hash} from 0 to 3")
        );
        assert_eq!(
            condition(&plan, "Progressing").reason.as_deref(),
            Some("NewReplicaSetCreated")
        );
        assert_eq!(
            condition(&plan, "Available").status.as_deref(),
            Some("False")
        );
    }

    #[test]
    fn a_complete_rollout_reports_new_replica_set_available_and_settles() {
        let deployment = deployment(3, "v1");
        let first = reconcile(&deployment, &[], &[], &time(0));
        let replica_set = settled(&first, 3, 3, 1);
        let replica_sets = arcs([replica_set.clone()]);
        let plan = reconcile(&deployment, &replica_sets, &[], &time(5));
        assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty());
        let progressing = condition(&plan, "Progressing");
        assert_eq!(
            progressing.reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(
            progressing.message,
            Some(format!(
                "ReplicaSet \"{}\" has successfully progressed.",
                meta::name(&replica_set.metadata)
            ))
        );
        assert_eq!(
            condition(&plan, "Available").status.as_deref(),
            Some("True")
        );
        let Some(Object::Deployment(updated)) = plan.update_status.first() else {
            panic!()
        };
        let status = updated.status.as_ref().unwrap();
        assert_eq!(
            (
                status.replicas,
                status.updated_replicas,
                status.available_replicas,
                status.observed_generation
            ),
            (Some(3), Some(3), Some(3), Some(1))
        );
        assert_eq!(
            reconcile(updated, &replica_sets, &[], &time(9)),
            Plan::default()
        );
    }

    #[test]
    fn rolling_update_surges_then_scales_old_down_within_availability() {
        let old_deployment = deployment(4, "v1");
        let old = settled(&reconcile(&old_deployment, &[], &[], &time(0)), 4, 4, 1);
        let new_deployment = deployment(4, "v2");
        let plan = reconcile(&new_deployment, &arcs([old.clone()]), &[], &time(5));
        // maxSurge 1 (25% of 4, up), maxUnavailable 1 (down): the new set starts at 1,
        // and one old replica may go.
        let new_name = format!(
            "web-{}",
            meta::template_hash(&new_deployment.spec.template, None)
        );
        assert_eq!(
            replicas_written(&plan),
            vec![
                (new_name.clone(), 1),
                (meta::name(&old.metadata).to_string(), 3)
            ]
        );
        let Some(Object::ReplicaSet(created)) = plan.create.first() else {
            panic!()
        };
        assert_eq!(
            created.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION],
            "2"
        );

        // The new pod is not available yet: nothing more may go.
        let mut old_now = old.clone();
        old_now.spec.replicas = Some(3);
        old_now.status = Some(ReplicaSetStatus {
            replicas: 3,
            available_replicas: Some(3),
            ready_replicas: Some(3),
            ..Default::default()
        });
        let new_set = settled(&plan, 1, 0, 2);
        let plan = reconcile(
            &new_deployment,
            &arcs([old_now.clone(), new_set.clone()]),
            &[],
            &time(6),
        );
        assert_eq!(replicas_written(&plan), vec![(new_name.clone(), 2)]);
        assert_eq!(
            condition(&plan, "Progressing").reason.as_deref(),
            Some("ReplicaSetUpdated")
        );
    }

    #[test]
    fn recreate_waits_for_old_pods_before_creating_the_new_set() {
        let old_deployment = deployment(2, "v1");
        let old = settled(&reconcile(&old_deployment, &[], &[], &time(0)), 2, 2, 1);
        let mut new_deployment = deployment(2, "v2");
        new_deployment.spec.strategy = Some(DeploymentStrategy {
            type_: Some("Recreate".into()),
            rolling_update: None,
        });
        let mut old_pod = pod("web-old-1", "web", "10.0.0.1", true);
        old_pod.metadata.owner_references = Some(vec![meta::controller_reference(
            Kind::ReplicaSet,
            &old.metadata,
        )]);
        let plan = reconcile(
            &new_deployment,
            &arcs([old.clone()]),
            &arcs([old_pod]),
            &time(5),
        );
        assert_eq!(
            replicas_written(&plan),
            vec![(meta::name(&old.metadata).to_string(), 0)]
        );

        let mut drained = old.clone();
        drained.spec.replicas = Some(0);
        drained.status = Some(ReplicaSetStatus::default());
        let plan = reconcile(&new_deployment, &arcs([drained]), &[], &time(6));
        let new_name = format!(
            "web-{}",
            meta::template_hash(&new_deployment.spec.template, None)
        );
        assert_eq!(replicas_written(&plan), vec![(new_name, 2)]);
    }

    #[test]
    fn scaling_down_a_settled_deployment_shrinks_its_replica_set() {
        let deployment_v1 = deployment(3, "v1");
        let replica_set = settled(&reconcile(&deployment_v1, &[], &[], &time(0)), 3, 3, 1);
        let mut smaller = deployment_v1.clone();
        smaller.spec.replicas = Some(1);
        smaller.spec.strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(0)),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        });
        let plan = reconcile(&smaller, &arcs([replica_set.clone()]), &[], &time(3));
        assert_eq!(
            replicas_written(&plan),
            vec![(meta::name(&replica_set.metadata).to_string(), 1)]
        );
        assert_eq!(
            plan.events[0].message,
            format!(
                "Scaled down replica set {} from 3 to 1",
                meta::name(&replica_set.metadata)
            )
        );
    }

    #[test]
    fn empty_old_revisions_beyond_the_history_limit_are_deleted() {
        let mut deployment_now = deployment(1, "v9");
        deployment_now.spec.revision_history_limit = Some(1);
        let mut replica_sets = Vec::new();
        for (index, image) in ["v1", "v2", "v3"].iter().enumerate() {
            let mut empty = settled(
                &reconcile(&deployment(1, image), &[], &[], &time(0)),
                0,
                0,
                index as i64,
            );
            empty.status = Some(ReplicaSetStatus::default());
            replica_sets.push(empty);
        }
        let plan = reconcile(&deployment_now, &arcs(replica_sets.clone()), &[], &time(9));
        let deleted: Vec<&str> = plan
            .delete
            .iter()
            .map(|deletion| deletion.name.as_str())
            .collect();
        assert_eq!(
            deleted,
            vec![
                meta::name(&replica_sets[0].metadata),
                meta::name(&replica_sets[1].metadata)
            ]
        );
    }
}

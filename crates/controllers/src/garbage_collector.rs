//! The garbage collector: objects follow their owners out of the cluster.
//!
//! The collector looks at the whole ownership graph at once ([`collect`]), built from
//! the metadata of every kind the controllers know ([`Kind`]):
//!
//! - **background** (the default for `kubectl delete`): the owner is gone at once; every
//!   dependent whose owner references all point at missing uids is deleted, and dangling
//!   references next to live ones are removed. Because caches of different kinds lag
//!   each other, these cases are returned as [`Dangling`] for the caller to confirm
//!   against the API server before acting ([`resolve_dangling`]).
//! - **foreground** (owner has the `foregroundDeletion` finalizer and a deletion
//!   timestamp): every dependent is deleted (in foreground, so chains cascade); once no
//!   dependent with `blockOwnerDeletion` remains, the finalizer is removed and the
//!   owner goes.
//! - **orphan** (`orphan` finalizer): the owner's reference is removed from every
//!   dependent, then the finalizer.
//!
//! Owner references to kinds the collector does not know are never judged dangling.
//! Patches carry the `resourceVersion` they were computed from, so a concurrent change
//! turns into a conflict (and a retry) rather than a lost update.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::json;

use crate::meta;
use crate::plan::{Deletion, Kind, Patch, Plan, Propagation};

/// The finalizer of a foreground deletion.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// One node of the ownership graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphObject {
    /// What it is.
    pub kind: Kind,
    /// Its metadata (name, namespace, uid, owner references, finalizers, ...).
    pub metadata: ObjectMeta,
}

/// An object some of whose owners seem to be gone; confirm before acting.
#[derive(Clone, Debug, PartialEq)]
pub struct Dangling {
    /// The dependent.
    pub object: GraphObject,
    /// Its owner references whose uid is in no cache.
    pub missing: Vec<OwnerReference>,
}

/// The collector's findings: writes that are safe now, and suspected dangling owners.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collection {
    /// Foreground and orphan work.
    pub plan: Plan,
    /// Dependents with seemingly missing owners.
    pub dangling: Vec<Dangling>,
}

fn has_finalizer(metadata: &ObjectMeta, finalizer: &str) -> bool {
    metadata
        .finalizers
        .iter()
        .flatten()
        .any(|present| present == finalizer)
}

fn finalizer_removal(object: &GraphObject, finalizer: &str) -> Patch {
    let remaining: Vec<&String> = object
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|present| *present != finalizer)
        .collect();
    Patch {
        kind: object.kind,
        namespace: meta::namespace(&object.metadata).to_string(),
        name: meta::name(&object.metadata).to_string(),
        status: false,
        patch: json!({"metadata": {"finalizers": remaining, "resourceVersion": object.metadata.resource_version}}),
    }
}

fn owner_reference_patch(object: &GraphObject, keep: Vec<&OwnerReference>) -> Patch {
    Patch {
        kind: object.kind,
        namespace: meta::namespace(&object.metadata).to_string(),
        name: meta::name(&object.metadata).to_string(),
        status: false,
        patch: json!({"metadata": {"ownerReferences": keep, "resourceVersion": object.metadata.resource_version}}),
    }
}

fn deletion(object: &GraphObject, propagation: Propagation) -> Deletion {
    Deletion {
        kind: object.kind,
        namespace: meta::namespace(&object.metadata).to_string(),
        name: meta::name(&object.metadata).to_string(),
        uid: object.metadata.uid.clone(),
        propagation: Some(propagation),
        report_to: None,
    }
}

/// Walks the ownership graph. `objects` must come from caches that have all finished
/// their initial list, or live owners look missing.
pub fn collect(objects: &[GraphObject]) -> Collection {
    let mut collection = Collection::default();
    let by_uid: HashMap<&str, &GraphObject> = objects
        .iter()
        .map(|object| (meta::uid(&object.metadata), object))
        .collect();
    let mut dependents: HashMap<&str, Vec<&GraphObject>> = HashMap::new();
    for object in objects {
        for reference in object.metadata.owner_references.iter().flatten() {
            dependents
                .entry(reference.uid.as_str())
                .or_default()
                .push(object);
        }
    }
    let no_dependents = Vec::new();

    for object in objects {
        let uid = meta::uid(&object.metadata);
        let its_dependents = dependents.get(uid).unwrap_or(&no_dependents);
        if meta::is_terminating(&object.metadata)
            && has_finalizer(&object.metadata, ORPHAN_FINALIZER)
        {
            for dependent in its_dependents {
                let keep: Vec<&OwnerReference> = dependent
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|reference| reference.uid != uid)
                    .collect();
                collection
                    .plan
                    .patch
                    .push(owner_reference_patch(dependent, keep));
            }
            if its_dependents.is_empty() {
                collection
                    .plan
                    .patch
                    .push(finalizer_removal(object, ORPHAN_FINALIZER));
            }
        } else if meta::is_terminating(&object.metadata)
            && has_finalizer(&object.metadata, FOREGROUND_FINALIZER)
        {
            for dependent in its_dependents
                .iter()
                .filter(|dependent| !meta::is_terminating(&dependent.metadata))
            {
                collection
                    .plan
                    .delete
                    .push(deletion(dependent, Propagation::Foreground));
            }
            let blocked = its_dependents.iter().any(|dependent| {
                dependent
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|reference| {
                        reference.uid == uid && reference.block_owner_deletion == Some(true)
                    })
            });
            if !blocked {
                collection
                    .plan
                    .patch
                    .push(finalizer_removal(object, FOREGROUND_FINALIZER));
            }
        }

        let references: Vec<&OwnerReference> =
            object.metadata.owner_references.iter().flatten().collect();
        if references.is_empty() || meta::is_terminating(&object.metadata) {
            continue;
        }
        if references.iter().any(|reference| {
            Kind::from_reference(&reference.api_version, &reference.kind).is_none()
        }) {
            continue;
        }
        let missing: Vec<OwnerReference> = references
            .iter()
            .filter(|reference| {
                by_uid.get(reference.uid.as_str()).is_none_or(|owner| {
                    owner.kind.as_str() != reference.kind
                        || (meta::namespace(&owner.metadata) != meta::namespace(&object.metadata))
                })
            })
            .map(|reference| (*reference).clone())
            .collect();
        if !missing.is_empty() {
            collection.dangling.push(Dangling {
                object: object.clone(),
                missing,
            });
        }
    }
    collection
}

/// The writes for a dangling case once the caller has checked which of the missing
/// owners are really gone (`confirmed_missing` holds their uids): delete the object when
/// no owner is left, otherwise drop the references to the gone owners.
pub fn resolve_dangling(dangling: &Dangling, confirmed_missing: &[String]) -> Plan {
    let mut plan = Plan::default();
    let references: Vec<&OwnerReference> = dangling
        .object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .collect();
    let keep: Vec<&OwnerReference> = references
        .iter()
        .copied()
        .filter(|reference| !confirmed_missing.contains(&reference.uid))
        .collect();
    if keep.len() == references.len() {
        return plan;
    }
    if keep.is_empty() {
        plan.delete
            .push(deletion(&dangling.object, Propagation::Background));
    } else {
        plan.patch
            .push(owner_reference_patch(&dangling.object, keep));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{metadata, time};

    fn object(kind: Kind, name: &str, owners: &[&GraphObject]) -> GraphObject {
        let mut metadata = metadata(name);
        if !owners.is_empty() {
            metadata.owner_references = Some(
                owners
                    .iter()
                    .map(|owner| meta::controller_reference(owner.kind, &owner.metadata))
                    .collect(),
            );
        }
        GraphObject { kind, metadata }
    }

    fn deleting(mut object: GraphObject, finalizer: &str) -> GraphObject {
        object.metadata.deletion_timestamp = Some(time(1));
        object.metadata.finalizers = Some(vec![finalizer.to_string()]);
        object
    }

    #[test]
    fn dependents_of_missing_owners_are_suspected_and_deleted_once_confirmed() {
        let deployment = object(Kind::Deployment, "web", &[]);
        let replica_set = object(Kind::ReplicaSet, "web-abc", &[&deployment]);
        let pod = object(Kind::Pod, "web-abc-x", &[&replica_set]);
        // The Deployment was deleted in background: only the ReplicaSet is suspect.
        let collection = collect(&[replica_set.clone(), pod.clone()]);
        assert!(collection.plan.is_empty());
        assert_eq!(collection.dangling.len(), 1);
        assert_eq!(collection.dangling[0].object, replica_set);
        let plan = resolve_dangling(&collection.dangling[0], &["uid-web".to_string()]);
        assert_eq!(
            plan.delete,
            vec![Deletion {
                kind: Kind::ReplicaSet,
                namespace: "default".into(),
                name: "web-abc".into(),
                uid: Some("uid-web-abc".into()),
                propagation: Some(Propagation::Background),
                report_to: None,
            }]
        );
        // Not confirmed (the owner exists after all): nothing happens.
        assert!(resolve_dangling(&collection.dangling[0], &[]).is_empty());
    }

    #[test]
    fn a_complete_graph_is_left_alone() {
        let service = object(Kind::Service, "web", &[]);
        let slice = object(Kind::EndpointSlice, "web-1", &[&service]);
        assert_eq!(collect(&[service, slice]), Collection::default());
    }

    #[test]
    fn one_dangling_owner_next_to_a_live_one_is_dropped() {
        let live = object(Kind::StatefulSet, "a", &[]);
        let gone = object(Kind::StatefulSet, "b", &[]);
        let mut pod = object(Kind::Pod, "p", &[&live, &gone]);
        pod.metadata.owner_references.as_mut().unwrap()[1].controller = Some(false);
        let collection = collect(&[live.clone(), pod]);
        let plan = resolve_dangling(&collection.dangling[0], &["uid-b".to_string()]);
        let expected_reference = meta::controller_reference(Kind::StatefulSet, &live.metadata);
        assert_eq!(
            plan.patch[0].patch,
            json!({"metadata": {"ownerReferences": [expected_reference], "resourceVersion": "1"}})
        );
    }

    #[test]
    fn foreground_deletes_dependents_then_releases_the_owner() {
        let owner = deleting(object(Kind::Deployment, "web", &[]), FOREGROUND_FINALIZER);
        let replica_set = object(Kind::ReplicaSet, "web-abc", &[&owner]);
        let collection = collect(&[owner.clone(), replica_set.clone()]);
        assert_eq!(
            collection.plan.delete,
            vec![deletion(&replica_set, Propagation::Foreground)]
        );
        assert!(
            collection.plan.patch.is_empty(),
            "the owner waits for its blocking dependent"
        );

        // The dependent is going away itself: wait without deleting it again.
        let going = deleting(replica_set, FOREGROUND_FINALIZER);
        let collection = collect(&[owner.clone(), going]);
        assert!(collection.plan.delete.is_empty());
        let patched: Vec<&str> = collection
            .plan
            .patch
            .iter()
            .map(|patch| patch.name.as_str())
            .collect();
        assert_eq!(
            patched,
            vec!["web-abc"],
            "only the childless dependent is released, not the owner"
        );

        // Gone: the finalizer comes off.
        let collection = collect(&[owner]);
        assert_eq!(
            collection.plan.patch,
            vec![Patch {
                kind: Kind::Deployment,
                namespace: "default".into(),
                name: "web".into(),
                status: false,
                patch: json!({"metadata": {"finalizers": [], "resourceVersion": "1"}}),
            }]
        );
    }

    #[test]
    fn orphan_strips_references_then_the_finalizer() {
        let owner = deleting(object(Kind::ReplicaSet, "web-abc", &[]), ORPHAN_FINALIZER);
        let pod = object(Kind::Pod, "web-abc-x", &[&owner]);
        let collection = collect(&[owner.clone(), pod]);
        assert_eq!(collection.plan.patch.len(), 1);
        assert_eq!(collection.plan.patch[0].name, "web-abc-x");
        assert_eq!(
            collection.plan.patch[0].patch,
            json!({"metadata": {"ownerReferences": [], "resourceVersion": "1"}})
        );
        assert!(collection.plan.delete.is_empty());
        assert!(collection.dangling.is_empty(), "the owner still exists");

        let collection = collect(&[owner]);
        assert_eq!(collection.plan.patch[0].name, "web-abc");
        assert_eq!(
            collection.plan.patch[0].patch["metadata"]["finalizers"],
            json!([])
        );
    }

    #[test]
    fn unknown_owner_kinds_are_never_judged() {
        let mut pod = object(Kind::Pod, "p", &[]);
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            name: "w".into(),
            uid: "uid-w".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert_eq!(collect(&[pod]), Collection::default());
    }
}

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodIP, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::*;
use crate::fixtures::{arcs, labels, pod, service, time};
use crate::plan::Object;

fn slices_of(objects: &[Object]) -> Vec<&EndpointSlice> {
    objects
        .iter()
        .map(|object| match object {
            Object::EndpointSlice(slice) => slice,
            other => panic!("unexpected object {other:?}"),
        })
        .collect()
}

/// Applies a plan the way the API server would: names created slices, bumps versions
/// (when the slices already carry one, as [`apply_versioned`] starts them).
fn apply(plan: &Plan, existing: &[Arc<EndpointSlice>]) -> Vec<Arc<EndpointSlice>> {
    let versioned = existing
        .iter()
        .any(|slice| slice.metadata.resource_version.is_some());
    apply_with_versions(plan, existing, versioned)
}

/// [`apply`] that always gives written slices a new resourceVersion.
fn apply_versioned(plan: &Plan, existing: &[Arc<EndpointSlice>]) -> Vec<Arc<EndpointSlice>> {
    apply_with_versions(plan, existing, true)
}

fn apply_with_versions(
    plan: &Plan,
    existing: &[Arc<EndpointSlice>],
    versioned: bool,
) -> Vec<Arc<EndpointSlice>> {
    let mut next_version = existing
        .iter()
        .filter_map(|slice| {
            slice
                .metadata
                .resource_version
                .as_deref()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1;
    let mut bump = |slice: &mut EndpointSlice| {
        if versioned {
            slice.metadata.resource_version = Some(next_version.to_string());
            next_version += 1;
        }
    };
    let mut slices: Vec<EndpointSlice> = existing.iter().map(|slice| (**slice).clone()).collect();
    slices.retain(|slice| {
        !plan
            .delete
            .iter()
            .any(|deletion| Some(&deletion.name) == slice.metadata.name.as_ref())
    });
    for updated in slices_of(&plan.update) {
        let position = slices
            .iter()
            .position(|slice| slice.metadata.name == updated.metadata.name)
            .expect("updated slice exists");
        slices[position] = updated.clone();
        bump(&mut slices[position]);
    }
    for (index, created) in slices_of(&plan.create).into_iter().enumerate() {
        let mut created = created.clone();
        let name = format!(
            "{}{}x{}",
            created.metadata.generate_name.clone().unwrap(),
            slices.len(),
            index
        );
        created.metadata.uid = Some(format!("uid-{name}"));
        created.metadata.name = Some(name);
        bump(&mut created);
        slices.push(created);
    }
    arcs(slices)
}

fn endpoint_names(slice: &EndpointSlice) -> Vec<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .map(|endpoint| endpoint.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect()
}

fn many_pods(count: usize) -> Vec<Arc<Pod>> {
    arcs((0..count).map(|index| {
        pod(
            &format!("web-{index:03}"),
            "web",
            &format!("10.0.{}.{}", index / 250, index % 250 + 1),
            true,
        )
    }))
}

#[test]
fn one_ready_pod_gives_one_exact_slice() {
    let service = service("web", "web");
    let plan = reconcile(
        &service,
        &arcs([pod("web-0", "web", "10.0.0.5", true)]),
        &[],
    );
    let expected = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some("web-".to_string()),
            namespace: Some("default".to_string()),
            labels: Some(labels(&[
                (HEADLESS_LABEL, ""),
                (SERVICE_NAME_LABEL, "web"),
                (MANAGED_BY_LABEL, UPSTREAM_MANAGED_BY),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Service".to_string(),
                name: "web".to_string(),
                uid: "uid-web".to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_string(),
        endpoints: Some(vec![Endpoint {
            addresses: vec!["10.0.0.5".to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            node_name: Some("node-a".to_string()),
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                namespace: Some("default".to_string()),
                name: Some("web-0".to_string()),
                uid: Some("uid-web-0".to_string()),
                ..Default::default()
            }),
            ..Endpoint::default()
        }]),
        ports: Some(vec![EndpointPort {
            name: Some("web".to_string()),
            port: Some(8080),
            protocol: Some("TCP".to_string()),
            app_protocol: None,
        }]),
    };
    assert_eq!(
        plan,
        Plan {
            create: vec![Object::EndpointSlice(expected)],
            ..Plan::default()
        }
    );
}

#[test]
fn two_hundred_fifty_pods_split_into_three_slices_and_then_nothing_changes() {
    let service = service("web", "web");
    let pods = many_pods(250);
    let plan = reconcile(&service, &pods, &[]);
    let sizes: Vec<usize> = slices_of(&plan.create)
        .iter()
        .map(|slice| slice.endpoints.as_ref().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
    let all: Vec<String> = slices_of(&plan.create)
        .iter()
        .flat_map(|slice| endpoint_names(slice))
        .collect();
    let mut expected: Vec<String> = (0..250).map(|index| format!("web-{index:03}")).collect();
    expected.sort();
    assert_eq!(all, expected);

    let existing = apply(&plan, &[]);
    assert_eq!(reconcile(&service, &pods, &existing), Plan::default());
}

#[test]
fn one_pod_gone_updates_only_its_slice() {
    let service = service("web", "web");
    let mut pods = many_pods(250);
    let existing = apply(&reconcile(&service, &pods, &[]), &[]);
    pods.remove(150);
    let plan = reconcile(&service, &pods, &existing);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let updated = slices_of(&plan.update);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].endpoints.as_ref().unwrap().len(), 99);
    assert!(!endpoint_names(updated[0]).contains(&"web-150".to_string()));
}

#[test]
fn new_pods_fill_changed_slices_before_creating_new_ones() {
    let service = service("web", "web");
    let mut pods = many_pods(200);
    let existing = apply(&reconcile(&service, &pods, &[]), &[]);
    // One pod leaves the first slice, two arrive: one fills the hole, one needs room.
    pods.remove(10);
    pods.push(Arc::new(pod("web-x1", "web", "10.0.9.1", true)));
    pods.push(Arc::new(pod("web-x2", "web", "10.0.9.2", true)));
    let plan = reconcile(&service, &pods, &existing);
    let updated = slices_of(&plan.update);
    assert_eq!(
        updated.len(),
        1,
        "only the slice that lost a pod is rewritten"
    );
    assert_eq!(updated[0].endpoints.as_ref().unwrap().len(), 100);
    assert!(endpoint_names(updated[0]).contains(&"web-x1".to_string()));
    let created = slices_of(&plan.create);
    assert_eq!(created.len(), 1);
    assert_eq!(endpoint_names(created[0]), vec!["web-x2".to_string()]);
    assert!(plan.delete.is_empty());
}

#[test]
fn short_last_batch_goes_into_an_unchanged_slice_with_room() {
    let service = service("web", "web");
    let mut pods = many_pods(150);
    let existing = apply(&reconcile(&service, &pods, &[]), &[]);
    pods.push(Arc::new(pod("web-z", "web", "10.0.9.9", true)));
    let plan = reconcile(&service, &pods, &existing);
    assert!(plan.create.is_empty());
    let updated = slices_of(&plan.update);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].endpoints.as_ref().unwrap().len(), 51);
}

#[test]
fn dual_stack_pods_get_one_slice_per_address_type() {
    let mut service = service("web", "web");
    service.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".to_string(), "IPv6".to_string()]);
    let mut dual = pod("web-0", "web", "10.0.0.5", true);
    dual.status.as_mut().unwrap().pod_ips = Some(vec![
        PodIP {
            ip: "10.0.0.5".into(),
        },
        PodIP {
            ip: "fd00::5".into(),
        },
    ]);
    let single = pod("web-1", "web", "10.0.0.6", true);
    let plan = reconcile(&service, &arcs([dual, single]), &[]);
    let created = slices_of(&plan.create);
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].address_type, "IPv4");
    let v4: Vec<&str> = created[0]
        .endpoints
        .iter()
        .flatten()
        .map(|endpoint| endpoint.addresses[0].as_str())
        .collect();
    assert_eq!(v4, vec!["10.0.0.5", "10.0.0.6"]);
    assert_eq!(created[1].address_type, "IPv6");
    let v6: Vec<&Vec<String>> = created[1]
        .endpoints
        .iter()
        .flatten()
        .map(|endpoint| &endpoint.addresses)
        .collect();
    assert_eq!(v6, vec![&vec!["fd00::5".to_string()]]);
}

#[test]
fn dropping_a_family_deletes_its_slices() {
    let mut dual_service = service("web", "web");
    dual_service.spec.as_mut().unwrap().ip_families =
        Some(vec!["IPv4".to_string(), "IPv6".to_string()]);
    let mut dual = pod("web-0", "web", "10.0.0.5", true);
    dual.status.as_mut().unwrap().pod_ips = Some(vec![
        PodIP {
            ip: "10.0.0.5".into(),
        },
        PodIP {
            ip: "fd00::5".into(),
        },
    ]);
    let pods = arcs([dual]);
    let existing = apply(&reconcile(&dual_service, &pods, &[]), &[]);
    let plan = reconcile(&service("web", "web"), &pods, &existing);
    assert!(plan.create.is_empty() && plan.update.is_empty());
    assert_eq!(plan.delete.len(), 1);
    let ipv6 = existing
        .iter()
        .find(|slice| slice.address_type == "IPv6")
        .unwrap();
    assert_eq!(Some(&plan.delete[0].name), ipv6.metadata.name.as_ref());
}

#[test]
fn the_same_pod_serves_two_services() {
    let mut other = service("web-alias", "web");
    other.metadata.uid = Some("uid-alias".to_string());
    let pods = arcs([pod("web-0", "web", "10.0.0.5", true)]);
    for service in [service("web", "web"), other] {
        let plan = reconcile(&service, &pods, &[]);
        let created = slices_of(&plan.create);
        assert_eq!(created.len(), 1);
        assert_eq!(endpoint_names(created[0]), vec!["web-0".to_string()]);
        assert_eq!(
            created[0].metadata.labels.as_ref().unwrap()[SERVICE_NAME_LABEL],
            meta::name(&service.metadata)
        );
        assert_eq!(
            created[0].metadata.owner_references.as_ref().unwrap()[0].uid,
            meta::uid(&service.metadata)
        );
    }
}

fn only_conditions(plan: &Plan) -> Vec<EndpointConditions> {
    slices_of(&plan.create)
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .map(|endpoint| endpoint.conditions.clone().unwrap())
        .collect()
}

fn conditions(ready: bool, serving: bool, terminating: bool) -> EndpointConditions {
    EndpointConditions {
        ready: Some(ready),
        serving: Some(serving),
        terminating: Some(terminating),
    }
}

#[test]
fn terminating_and_unready_pods_are_listed_with_their_conditions() {
    let mut terminating = pod("web-0", "web", "10.0.0.5", true);
    terminating.metadata.deletion_timestamp = Some(time(5));
    let unready = pod("web-1", "web", "10.0.0.6", false);
    let pods = arcs([terminating, unready]);
    let plan = reconcile(&service("web", "web"), &pods, &[]);
    assert_eq!(
        only_conditions(&plan),
        vec![
            conditions(false, true, true),
            conditions(false, false, false)
        ]
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let mut terminating = pod("web-0", "web", "10.0.0.5", true);
    terminating.metadata.deletion_timestamp = Some(time(5));
    let pods = arcs([terminating, pod("web-1", "web", "10.0.0.6", false)]);
    let expected = vec![conditions(true, true, true), conditions(true, false, false)];

    let mut by_field = service("web", "web");
    by_field.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    assert_eq!(only_conditions(&reconcile(&by_field, &pods, &[])), expected);

    let mut by_annotation = service("web", "web");
    by_annotation.metadata.annotations = Some(labels(&[(TOLERATE_UNREADY_ANNOTATION, "true")]));
    assert_eq!(
        only_conditions(&reconcile(&by_annotation, &pods, &[])),
        expected
    );
}

#[test]
fn a_pod_turning_unready_flips_its_conditions_in_place() {
    let service = service("web", "web");
    let existing = apply(
        &reconcile(
            &service,
            &arcs([pod("web-0", "web", "10.0.0.5", true)]),
            &[],
        ),
        &[],
    );
    let plan = reconcile(
        &service,
        &arcs([pod("web-0", "web", "10.0.0.5", false)]),
        &existing,
    );
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let updated = slices_of(&plan.update);
    assert_eq!(updated[0].metadata.name, existing[0].metadata.name);
    assert_eq!(
        updated[0].endpoints.as_ref().unwrap()[0].conditions,
        Some(conditions(false, false, false))
    );
}

#[test]
fn pods_without_ip_or_finished_are_left_out() {
    let mut no_ip = pod("web-0", "web", "10.0.0.5", false);
    no_ip.status.as_mut().unwrap().pod_ip = None;
    no_ip.status.as_mut().unwrap().pod_ips = None;
    let mut succeeded = pod("web-1", "web", "10.0.0.6", false);
    succeeded.status.as_mut().unwrap().phase = Some("Succeeded".to_string());
    let mut failed = pod("web-2", "web", "10.0.0.7", false);
    failed.status.as_mut().unwrap().phase = Some("Failed".to_string());
    let other_namespace = Pod {
        metadata: ObjectMeta {
            namespace: Some("other".into()),
            ..pod("web-3", "web", "10.0.0.8", true).metadata
        },
        ..pod("web-3", "web", "10.0.0.8", true)
    };
    let kept = pod("web-4", "web", "10.0.0.9", true);
    let plan = reconcile(
        &service("web", "web"),
        &arcs([no_ip, succeeded, failed, other_namespace, kept]),
        &[],
    );
    let created = slices_of(&plan.create);
    assert_eq!(created.len(), 1);
    assert_eq!(endpoint_names(created[0]), vec!["web-4".to_string()]);
}

#[test]
fn hostname_is_set_only_for_pods_in_the_service_subdomain() {
    let mut member = pod("web-0", "web", "10.0.0.5", true);
    member.spec.as_mut().unwrap().hostname = Some("web-0".to_string());
    member.spec.as_mut().unwrap().subdomain = Some("web".to_string());
    let mut elsewhere = pod("web-1", "web", "10.0.0.6", true);
    elsewhere.spec.as_mut().unwrap().hostname = Some("web-1".to_string());
    elsewhere.spec.as_mut().unwrap().subdomain = Some("other".to_string());
    let plan = reconcile(&service("web", "web"), &arcs([member, elsewhere]), &[]);
    let hostnames: Vec<Option<String>> = slices_of(&plan.create)[0]
        .endpoints
        .iter()
        .flatten()
        .map(|endpoint| endpoint.hostname.clone())
        .collect();
    assert_eq!(hostnames, vec![Some("web-0".to_string()), None]);
}

#[test]
fn unresolvable_named_port_drops_the_port_for_that_pod_and_warns() {
    let mut without_port = pod("web-1", "web", "10.0.0.6", true);
    without_port.spec.as_mut().unwrap().containers[0].ports = None;
    let pods = arcs([pod("web-0", "web", "10.0.0.5", true), without_port]);
    let service = service("web", "web");
    let plan = reconcile(&service, &pods, &[]);
    let created = slices_of(&plan.create);
    assert_eq!(
        created.len(),
        2,
        "different port sets need different slices"
    );
    assert_eq!(created[0].ports.as_ref().unwrap().len(), 1);
    assert_eq!(endpoint_names(created[0]), vec!["web-0".to_string()]);
    assert_eq!(created[1].ports, Some(Vec::new()));
    assert_eq!(endpoint_names(created[1]), vec!["web-1".to_string()]);
    assert_eq!(plan.events.len(), 1);
    assert_eq!(plan.events[0].reason, "FailedToResolvePort");
    assert_eq!(plan.events[0].type_, EventType::Warning);
    // Once written, the same situation plans nothing (and records nothing).
    let existing = apply(&plan, &[]);
    assert_eq!(reconcile(&service, &pods, &existing), Plan::default());
}

#[test]
fn numeric_and_default_target_ports() {
    let mut service = service("web", "web");
    let ports = service.spec.as_mut().unwrap().ports.as_mut().unwrap();
    ports[0].target_port = Some(IntOrString::Int(9090));
    ports.push(ServicePort {
        name: Some("metrics".into()),
        port: 9100,
        ..ServicePort::default()
    });
    let plan = reconcile(
        &service,
        &arcs([pod("web-0", "web", "10.0.0.5", true)]),
        &[],
    );
    let numbers: Vec<i32> = slices_of(&plan.create)[0]
        .ports
        .iter()
        .flatten()
        .map(|port| port.port.unwrap())
        .collect();
    assert_eq!(numbers, vec![9090, 9100]);
}

#[test]
fn a_service_without_pods_keeps_one_placeholder() {
    let service = service("web", "web");
    let plan = reconcile(&service, &[], &[]);
    let created = slices_of(&plan.create);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].endpoints, Some(Vec::new()));
    assert_eq!(
        plan.events
            .iter()
            .map(|event| event.reason.as_str())
            .collect::<Vec<_>>(),
        vec!["NoPodsSelected"]
    );
    let existing = apply(&plan, &[]);
    assert_eq!(reconcile(&service, &[], &existing), Plan::default());

    // Pods arrive: the placeholder is reused rather than replaced... only when ports match,
    // so here it is deleted and a full slice created.
    let pods = arcs([pod("web-0", "web", "10.0.0.5", true)]);
    let plan = reconcile(&service, &pods, &existing);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.delete.len(), 1);
    // Pods leave again: the full slice becomes the placeholder in place.
    let existing = apply(&plan, &existing);
    let plan = reconcile(&service, &[], &existing);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(slices_of(&plan.update)[0].endpoints, Some(Vec::new()));
}

#[test]
fn selectorless_and_external_name_services_are_left_alone() {
    let mut hand_written = (*apply(
        &reconcile(
            &service("web", "web"),
            &arcs([pod("web-0", "web", "10.0.0.5", true)]),
            &[],
        ),
        &[],
    )[0])
        .clone();
    hand_written.metadata.labels = Some(labels(&[
        (SERVICE_NAME_LABEL, "web"),
        (MANAGED_BY_LABEL, "someone-else"),
    ]));
    let existing = arcs([hand_written]);
    let pods = arcs([pod("web-1", "web", "10.0.0.6", true)]);

    let mut selectorless = service("web", "web");
    selectorless.spec.as_mut().unwrap().selector = None;
    assert_eq!(reconcile(&selectorless, &pods, &existing), Plan::default());
    let mut empty_selector = service("web", "web");
    empty_selector.spec.as_mut().unwrap().selector = Some(Default::default());
    assert_eq!(
        reconcile(&empty_selector, &pods, &existing),
        Plan::default()
    );
    let mut external = service("web", "web");
    external.spec.as_mut().unwrap().type_ = Some("ExternalName".to_string());
    assert_eq!(reconcile(&external, &pods, &existing), Plan::default());

    // A selector service ignores slices managed by someone else, and makes its own.
    let plan = reconcile(&service("web", "web"), &pods, &existing);
    assert!(plan.delete.is_empty() && plan.update.is_empty());
    assert_eq!(plan.create.len(), 1);
}

#[test]
fn slices_left_by_a_deleted_service_of_the_same_name_are_replaced() {
    let pods = arcs([pod("web-0", "web", "10.0.0.5", true)]);
    let existing = apply(&reconcile(&service("web", "web"), &pods, &[]), &[]);
    let mut recreated = service("web", "web");
    recreated.metadata.uid = Some("uid-web-2".to_string());
    let plan = reconcile(&recreated, &pods, &existing);
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.create.len(), 1);
}

#[test]
fn managed_by_is_configurable() {
    let settings = Settings {
        managed_by: HOLLOW_MANAGED_BY.to_string(),
        ..Settings::default()
    };
    let pods = arcs([pod("web-0", "web", "10.0.0.5", true)]);
    let upstream_owned = apply(&reconcile(&service("web", "web"), &pods, &[]), &[]);
    let plan = reconcile_with(&settings, &service("web", "web"), &pods, &upstream_owned);
    assert!(
        plan.delete.is_empty(),
        "slices of the other controller are not ours to delete"
    );
    assert_eq!(
        slices_of(&plan.create)[0].metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL],
        HOLLOW_MANAGED_BY
    );
}

/// `pod` at a given resourceVersion, as the API server bumps it with every write.
fn versioned(mut pod: Pod, version: u32) -> Pod {
    pod.metadata.resource_version = Some(version.to_string());
    pod
}

#[test]
fn a_warm_cache_plans_exactly_what_a_cold_reconcile_plans() {
    let service = service("web", "web");
    let mut pods: Vec<Pod> = many_pods(250).iter().map(|pod| (**pod).clone()).collect();
    let mut cache = EndpointCache::default();
    let mut existing = Vec::new();
    let mut version = 1;
    // Each step changes the pods the way watches report it, with a new resourceVersion
    // on every changed pod, and plans both ways on the same slices.
    type Step = Box<dyn Fn(&mut Vec<Pod>)>;
    let steps: Vec<Step> = vec![
        Box::new(|_| {}),
        Box::new(|pods| pods[7] = pod("web-007", "web", "10.0.0.8", false)),
        Box::new(|pods| {
            pods.remove(100);
        }),
        Box::new(|pods| pods.push(pod("web-300", "web", "10.0.9.1", true))),
        Box::new(|pods| pods[5] = pod("web-005", "web", "10.0.7.7", true)),
        Box::new(|pods| pods[7] = pod("web-007", "web", "10.0.0.8", true)),
        Box::new(|pods| {
            // Recreated under the same name: a new uid.
            let mut recreated = pod("web-010", "web", "10.0.8.8", true);
            recreated.metadata.uid = Some("uid-web-010-again".into());
            pods[10] = recreated;
        }),
        Box::new(|pods| pods[20].metadata.deletion_timestamp = Some(time(5))),
    ];
    for (step, change) in steps.iter().enumerate() {
        let before = pods.clone();
        change(&mut pods);
        version += 1;
        for (position, pod) in pods.iter_mut().enumerate() {
            if before.get(position) != Some(pod) || step == 0 {
                *pod = versioned(pod.clone(), version);
            }
        }
        let pods = arcs(pods.clone());
        let cold = reconcile(&service, &pods, &existing);
        let warm = reconcile_cached(&Settings::default(), &service, &pods, &existing, &mut cache);
        assert_eq!(warm, cold, "step {step}");
        assert_eq!(cache.len(), pods.len(), "step {step}: one entry per pod");
        existing = apply_versioned(&warm, &existing);
    }
}

#[test]
fn one_pod_flipping_with_a_warm_cache_rewrites_only_its_slice() {
    let service = service("web", "web");
    let pods: Vec<Arc<Pod>> = many_pods(250)
        .iter()
        .map(|pod| Arc::new(versioned((**pod).clone(), 1)))
        .collect();
    let mut cache = EndpointCache::default();
    let existing = apply_versioned(
        &reconcile_cached(&Settings::default(), &service, &pods, &[], &mut cache),
        &[],
    );
    // A second pass finds every slice as desired and remembers so.
    assert_eq!(
        reconcile_cached(&Settings::default(), &service, &pods, &existing, &mut cache),
        Plan::default()
    );
    let mut changed = pods.clone();
    changed[130] = Arc::new(versioned(pod("web-130", "web", "10.0.0.131", false), 2));
    let plan = reconcile_cached(
        &Settings::default(),
        &service,
        &changed,
        &existing,
        &mut cache,
    );
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    let updated = slices_of(&plan.update);
    assert_eq!(updated.len(), 1);
    let holder = existing
        .iter()
        .find(|slice| endpoint_names(slice).contains(&"web-130".to_string()))
        .unwrap();
    assert_eq!(updated[0].metadata.name, holder.metadata.name);
    assert_eq!(endpoint_names(updated[0]), endpoint_names(holder));
}

#[test]
fn a_changed_service_or_unversioned_objects_are_not_served_from_the_cache() {
    let pods: Vec<Arc<Pod>> = arcs([versioned(pod("web-0", "web", "10.0.0.5", true), 1)]);
    let mut cache = EndpointCache::default();
    let original = service("web", "web");
    reconcile_cached(&Settings::default(), &original, &pods, &[], &mut cache);
    assert_eq!(cache.len(), 1);

    // A new target port under a new resourceVersion reaches the endpoints.
    let mut retargeted = original.clone();
    retargeted.metadata.resource_version = Some("2".into());
    retargeted.spec.as_mut().unwrap().ports = Some(vec![ServicePort {
        name: Some("web".into()),
        port: 80,
        target_port: Some(IntOrString::Int(9090)),
        ..ServicePort::default()
    }]);
    let plan = reconcile_cached(&Settings::default(), &retargeted, &pods, &[], &mut cache);
    assert_eq!(plan, reconcile(&retargeted, &pods, &[]));
    assert_eq!(
        slices_of(&plan.create)[0].ports.as_ref().unwrap()[0].port,
        Some(9090)
    );

    // Without resourceVersions nothing is memoized.
    let mut unversioned = (*pods[0]).clone();
    unversioned.metadata.resource_version = None;
    let mut cache = EndpointCache::default();
    reconcile_cached(
        &Settings::default(),
        &original,
        &arcs([unversioned]),
        &[],
        &mut cache,
    );
    assert!(cache.is_empty());
}

#[test]
fn a_slice_changed_behind_the_controllers_back_is_compared_again() {
    let service = service("web", "web");
    let pods: Vec<Arc<Pod>> = many_pods(250)
        .iter()
        .map(|pod| Arc::new(versioned((**pod).clone(), 1)))
        .collect();
    let mut cache = EndpointCache::default();
    let existing = apply_versioned(
        &reconcile_cached(&Settings::default(), &service, &pods, &[], &mut cache),
        &[],
    );
    assert_eq!(
        reconcile_cached(&Settings::default(), &service, &pods, &existing, &mut cache),
        Plan::default()
    );
    // Someone flips an endpoint's condition in the second slice (a new resourceVersion);
    // the pods did not change, yet the slice is put right.
    let mut tampered = existing.clone();
    let mut slice = (*tampered[1]).clone();
    slice.endpoints.as_mut().unwrap()[3].conditions = Some(conditions(false, false, false));
    slice.metadata.resource_version = Some("99".into());
    tampered[1] = Arc::new(slice);
    let plan = reconcile_cached(&Settings::default(), &service, &pods, &tampered, &mut cache);
    assert_eq!(plan, reconcile(&service, &pods, &tampered));
    let updated = slices_of(&plan.update);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].metadata.name, existing[1].metadata.name);
    assert_eq!(
        updated[0].endpoints.as_ref().unwrap()[3].conditions,
        Some(conditions(true, true, false))
    );
}

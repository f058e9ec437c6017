//! Small helpers over object metadata and pod state shared by every reconciler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::plan::Kind;

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The object's labels, empty when absent.
pub fn labels(metadata: &ObjectMeta) -> &BTreeMap<String, String> {
    metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// The object's name, empty when absent (objects from a store always have one).
pub fn name(metadata: &ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or_default()
}

/// The object's namespace, empty when absent.
pub fn namespace(metadata: &ObjectMeta) -> &str {
    metadata.namespace.as_deref().unwrap_or_default()
}

/// The object's uid, empty when absent.
pub fn uid(metadata: &ObjectMeta) -> &str {
    metadata.uid.as_deref().unwrap_or_default()
}

/// A Service selector: equality on every pair. An empty selector selects nothing,
/// because Kubernetes reads an empty service selector as "endpoints managed elsewhere".
pub fn service_selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

/// A workload `LabelSelector` (matchLabels and matchExpressions). Unknown operators
/// match nothing, so a malformed selector never adopts every pod.
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_match = selector
        .match_expressions
        .iter()
        .flatten()
        .all(|expression| {
            let values = expression.values.as_deref().unwrap_or_default();
            let actual = labels.get(&expression.key);
            match expression.operator.as_str() {
                "In" => actual.is_some_and(|value| values.contains(value)),
                "NotIn" => actual.is_none_or(|value| !values.contains(value)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        });
    labels_match && expressions_match
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(metadata: &ObjectMeta) -> Option<&OwnerReference> {
    metadata
        .owner_references
        .iter()
        .flatten()
        .find(|reference| reference.controller == Some(true))
}

/// True when the object's controlling owner has this uid.
pub fn is_controlled_by(metadata: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(metadata).is_some_and(|reference| reference.uid == owner_uid)
}

/// A controlling owner reference to `owner`, blocking the owner's foreground deletion
/// until the dependent is gone (what Kubernetes' controllers set).
pub fn controller_reference(kind: Kind, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        name: name(owner).to_string(),
        uid: uid(owner).to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// An object reference, as events and endpoint `targetRef`s use.
pub fn object_reference(kind: Kind, metadata: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(kind.api_version().to_string()),
        kind: Some(kind.as_str().to_string()),
        namespace: metadata.namespace.clone(),
        name: metadata.name.clone(),
        uid: metadata.uid.clone(),
        resource_version: None,
        field_path: None,
    }
}

/// The pod has condition `Ready=True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

/// The pod's phase, empty when not reported yet.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.phase.as_deref())
        .unwrap_or_default()
}

/// The pod has a deletion timestamp: it is shutting down.
pub fn is_terminating(metadata: &ObjectMeta) -> bool {
    metadata.deletion_timestamp.is_some()
}

/// The pod ended (`Succeeded` or `Failed`) and will never run again.
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// The pod counts towards a workload's replicas: neither terminating nor terminal.
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_terminating(&pod.metadata) && !is_pod_terminal(pod)
}

/// Phase `Running` and condition `Ready=True`.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    pod_phase(pod) == "Running" && is_pod_ready(pod)
}

/// Resolves an `IntOrString` that may be a percentage of `total`; `round_up` picks the
/// rounding Kubernetes uses for the field (up for maxSurge, down for maxUnavailable).
pub fn scaled_value(
    value: Option<&IntOrString>,
    total: i32,
    default_percent: i32,
    round_up: bool,
) -> i32 {
    let percent = |percent: i64| {
        let scaled = i64::from(total) * percent;
        let value = if round_up {
            (scaled + 99) / 100
        } else {
            scaled / 100
        };
        i32::try_from(value).unwrap_or(i32::MAX)
    };
    match value {
        None => percent(i64::from(default_percent)),
        Some(IntOrString::Int(value)) => *value,
        Some(IntOrString::String(text)) => match text
            .strip_suffix('%')
            .and_then(|digits| digits.parse::<i64>().ok())
        {
            Some(value) => percent(value),
            None => text.parse().unwrap_or(0),
        },
    }
}

/// A stable, short hash of a pod template, in the alphabet Kubernetes uses for
/// `pod-template-hash` (no vowels, so it never spells words). Stable across runs and
/// machines because k8s-openapi serialises struct fields in declaration order and maps
/// in key order.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    // FNV-1a, 32 bits: tiny, fast and good enough to tell templates apart.
    let mut hash: u32 = 0x811c_9dc5;
    let mut feed = |byte: u8| {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    };
    bytes.iter().copied().for_each(&mut feed);
    if let Some(count) = collision_count {
        count.to_le_bytes().into_iter().for_each(&mut feed);
    }
    hash.to_string()
        .bytes()
        .map(|digit| char::from(ALPHABET[usize::from(digit) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn empty_service_selector_selects_nothing() {
        assert!(!service_selector_matches(
            &BTreeMap::new(),
            &labels_of(&[("app", "web")])
        ));
        assert!(service_selector_matches(
            &labels_of(&[("app", "web")]),
            &labels_of(&[("app", "web"), ("x", "y")])
        ));
        assert!(!service_selector_matches(
            &labels_of(&[("app", "web"), ("tier", "a")]),
            &labels_of(&[("app", "web")])
        ));
    }

    #[test]
    fn label_selector_expressions() {
        let selector = LabelSelector {
            match_labels: Some(labels_of(&[("app", "web")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(label_selector_matches(
            &selector,
            &labels_of(&[("app", "web"), ("tier", "b")])
        ));
        assert!(!label_selector_matches(
            &selector,
            &labels_of(&[("app", "web"), ("tier", "c")])
        ));
        assert!(!label_selector_matches(
            &selector,
            &labels_of(&[("app", "web"), ("tier", "a"), ("canary", "1")])
        ));
    }

    #[test]
    fn percentages_round_as_kubernetes_does() {
        assert_eq!(scaled_value(None, 10, 25, true), 3);
        assert_eq!(scaled_value(None, 10, 25, false), 2);
        assert_eq!(
            scaled_value(Some(&IntOrString::String("50%".into())), 3, 25, true),
            2
        );
        assert_eq!(scaled_value(Some(&IntOrString::Int(4)), 3, 25, true), 4);
    }

    #[test]
    fn template_hash_is_stable_and_sensitive() {
        let mut template = PodTemplateSpec::default();
        let first = template_hash(&template, None);
        assert_eq!(first, template_hash(&template, None));
        assert!(
            first
                .bytes()
                .all(|byte| b"bcdfghjklmnpqrstvwxz2456789".contains(&byte))
        );
        assert_ne!(first, template_hash(&template, Some(1)));
        template.metadata = Some(ObjectMeta {
            labels: Some(labels_of(&[("app", "web")])),
            ..Default::default()
        });
        assert_ne!(first, template_hash(&template, None));
    }
}

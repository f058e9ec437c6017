//! Pod and workload (Deployment, ReplicaSet, StatefulSet) defaults and validation, as
//! kube-apiserver applies them.
//!
//! Pod specs are checked the same way wherever they appear (a Pod's `spec`, a workload's
//! `spec.template.spec`), with field paths that say where.

use hollow_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
use hollow_types::selector::LabelSelector;
use hollow_types::validation::{FieldError, is_dns1123_label, is_valid_port_name};
use serde_json::{Map, Value, json};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];

/// Sets `key` to `value()` when the client did not send it.
///
/// `Map::entry` takes an owned key, so it would allocate one for every default looked at;
/// most are already set, and a create looks at a few dozen.
fn default_to(map: &mut Map<String, Value>, key: &str, value: impl FnOnce() -> Value) {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), value());
    }
}

/// kubelet-facing defaults of a pod spec.
pub fn default_pod_spec(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    default_to(map, "restartPolicy", || Value::from("Always"));
    default_to(map, "terminationGracePeriodSeconds", || Value::from(30));
    default_to(map, "dnsPolicy", || Value::from("ClusterFirst"));
    default_to(map, "schedulerName", || Value::from("default-scheduler"));
    default_to(map, "securityContext", || json!({}));
    default_to(map, "enableServiceLinks", || Value::from(true));
    for list in ["initContainers", "containers"] {
        if let Some(containers) = map.get_mut(list).and_then(Value::as_array_mut) {
            for container in containers {
                default_container(container);
            }
        }
    }
}

fn default_container(container: &mut Value) {
    let Some(map) = container.as_object_mut() else {
        return;
    };
    default_to(map, "terminationMessagePath", || {
        Value::from("/dev/termination-log")
    });
    default_to(map, "terminationMessagePolicy", || Value::from("File"));
    if !map.contains_key("imagePullPolicy") {
        let image = map.get("image").and_then(Value::as_str).unwrap_or_default();
        let tag = image
            .rsplit('/')
            .next()
            .and_then(|last| last.split_once(':'));
        let latest = match tag {
            None => !image.contains('@'),
            Some((_, tag)) => tag == "latest",
        };
        let policy = if latest { "Always" } else { "IfNotPresent" };
        map.insert("imagePullPolicy".to_owned(), Value::from(policy));
    }
    default_to(map, "resources", || json!({}));
    if let Some(ports) = map.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(port) = port.as_object_mut() {
                default_to(port, "protocol", || Value::from("TCP"));
            }
        }
    }
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if let Some(probe) = map.get_mut(probe).and_then(Value::as_object_mut) {
            default_to(probe, "timeoutSeconds", || Value::from(1));
            default_to(probe, "periodSeconds", || Value::from(10));
            default_to(probe, "successThreshold", || Value::from(1));
            default_to(probe, "failureThreshold", || Value::from(3));
            if let Some(http) = probe.get_mut("httpGet").and_then(Value::as_object_mut) {
                default_to(http, "path", || Value::from("/"));
                default_to(http, "scheme", || Value::from("HTTP"));
            }
        }
    }
}

/// Validates a pod spec at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errors.push(FieldError::required(format!("{path}.containers"), "")),
        Some(list) if list.is_empty() => {
            errors.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(_) => {}
    }
    let mut names: Vec<&str> = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (index, container) in items.iter().enumerate() {
            let container_path = format!("{path}.{list}[{index}]");
            validate_container(container, &container_path, &mut names, errors);
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !RESTART_POLICIES.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            RESTART_POLICIES,
        ));
    }
    for field in ["hostname", "subdomain"] {
        if let Some(value) = spec
            .get(field)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
        {
            for problem in is_dns1123_label(value) {
                errors.push(FieldError::invalid(
                    format!("{path}.{field}"),
                    value,
                    &problem,
                ));
            }
        }
    }
    if let Some(grace) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && grace < 0
    {
        errors.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            grace,
            "must be greater than or equal to 0",
        ));
    }
}

fn validate_container<'a>(
    container: &'a Value,
    path: &str,
    names: &mut Vec<&'a str>,
    errors: &mut Vec<FieldError>,
) {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        for problem in is_dns1123_label(name) {
            errors.push(FieldError::invalid(format!("{path}.name"), name, &problem));
        }
        if names.contains(&name) {
            errors.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        names.push(name);
    }
    if container
        .get("image")
        .and_then(Value::as_str)
        .is_none_or(|image| image.trim().is_empty())
    {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    let mut port_names: Vec<&str> = Vec::new();
    if let Some(ports) = container.get("ports").and_then(Value::as_array) {
        for (index, port) in ports.iter().enumerate() {
            // Only an error needs the path: a valid port costs no allocation.
            let port_path = || format!("{path}.ports[{index}]");
            let number = port
                .get("containerPort")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if !(1..=65535).contains(&number) {
                errors.push(FieldError::invalid(
                    format!("{}.containerPort", port_path()),
                    number,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(port_name) = port
                .get("name")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
            {
                for problem in is_valid_port_name(port_name) {
                    errors.push(FieldError::invalid(
                        format!("{}.name", port_path()),
                        port_name,
                        &problem,
                    ));
                }
                if port_names.contains(&port_name) {
                    errors.push(FieldError::duplicate(
                        format!("{}.name", port_path()),
                        port_name,
                    ));
                }
                port_names.push(port_name);
            }
        }
    }
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let Some(probe_value) = container.get(probe) else {
            continue;
        };
        let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
            .iter()
            .filter(|handler| probe_value.get(**handler).is_some())
            .count();
        if handlers == 0 {
            errors.push(FieldError::required(
                format!("{path}.{probe}"),
                "must specify a handler type",
            ));
        } else if handlers > 1 {
            errors.push(FieldError::forbidden(
                format!("{path}.{probe}"),
                "may not specify more than 1 handler type",
            ));
        }
        for field in [
            "periodSeconds",
            "timeoutSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            if let Some(value) = probe_value.get(field).and_then(Value::as_i64)
                && value < 1
            {
                errors.push(FieldError::invalid(
                    format!("{path}.{probe}.{field}"),
                    value,
                    "must be greater than or equal to 1",
                ));
            }
        }
        if probe != "readinessProbe"
            && probe_value
                .get("successThreshold")
                .and_then(Value::as_i64)
                .is_some_and(|value| value != 1)
        {
            errors.push(FieldError::invalid(
                format!("{path}.{probe}.successThreshold"),
                probe_value["successThreshold"].clone(),
                "must be 1",
            ));
        }
    }
}

/// What a pod update may change: kube-apiserver allows only images, the active deadline,
/// added tolerations and the grace period once a pod exists.
pub fn validate_pod_update(new: &Value, old: &Value, errors: &mut Vec<FieldError>) {
    let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
        return;
    };
    let mut comparable_new = new_spec.clone();
    let mut comparable_old = old_spec.clone();
    for spec in [&mut comparable_new, &mut comparable_old] {
        if let Some(map) = spec.as_object_mut() {
            map.remove("activeDeadlineSeconds");
            map.remove("tolerations");
            map.remove("terminationGracePeriodSeconds");
        }
        for list in ["containers", "initContainers"] {
            if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for container in items {
                    if let Some(container) = container.as_object_mut() {
                        container.remove("image");
                    }
                }
            }
        }
    }
    // nodeName is set once by binding; an update may carry it unchanged.
    if comparable_new != comparable_old {
        errors.push(FieldError::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

/// Defaults of Deployments, ReplicaSets and StatefulSets, and of their pod templates.
pub fn default_workload(kind: &str, object: &mut Value) {
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    let spec = object["spec"].as_object_mut().expect("spec is an object");
    spec.entry("replicas").or_insert_with(|| Value::from(1));
    spec.entry("revisionHistoryLimit")
        .or_insert_with(|| Value::from(10));
    match kind {
        "Deployment" => {
            spec.entry("progressDeadlineSeconds")
                .or_insert_with(|| Value::from(600));
            let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
            if let Some(strategy) = strategy.as_object_mut() {
                strategy
                    .entry("type")
                    .or_insert_with(|| Value::from("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(rolling) = rolling.as_object_mut() {
                        rolling
                            .entry("maxSurge")
                            .or_insert_with(|| Value::from("25%"));
                        rolling
                            .entry("maxUnavailable")
                            .or_insert_with(|| Value::from("25%"));
                    }
                }
            }
        }
        "StatefulSet" => {
            spec.entry("podManagementPolicy")
                .or_insert_with(|| Value::from("OrderedReady"));
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(strategy) = strategy.as_object_mut() {
                strategy
                    .entry("type")
                    .or_insert_with(|| Value::from("RollingUpdate"));
                if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(rolling) = rolling.as_object_mut() {
                        rolling.entry("partition").or_insert_with(|| Value::from(0));
                    }
                }
            }
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert_with(|| json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
        }
        _ => {}
    }
    if let Some(template_spec) = object.pointer_mut("/spec/template/spec") {
        default_pod_spec(template_spec);
    }
}

/// Validates a workload, with `old` on updates.
pub fn validate_workload(
    kind: &str,
    object: &Value,
    old: Option<&Value>,
    errors: &mut Vec<FieldError>,
) {
    let spec = object.get("spec").cloned().unwrap_or(json!({}));
    if let Some(replicas) = spec.get("replicas").and_then(Value::as_i64)
        && replicas < 0
    {
        errors.push(FieldError::invalid(
            "spec.replicas",
            replicas,
            "must be greater than or equal to 0",
        ));
    }
    match spec.get("selector") {
        None => errors.push(FieldError::required("spec.selector", "")),
        Some(selector_value) => {
            let parsed = serde_json::from_value::<ApiSelector>(selector_value.clone())
                .ok()
                .and_then(|selector| LabelSelector::from_api(&selector).ok());
            match parsed {
                None => errors.push(FieldError::invalid(
                    "spec.selector",
                    selector_value.clone(),
                    "invalid label selector",
                )),
                Some(selector) if selector.is_empty() => errors.push(FieldError::invalid(
                    "spec.selector",
                    selector_value.clone(),
                    &format!(
                        "empty selector is invalid for {}",
                        kind.to_ascii_lowercase()
                    ),
                )),
                Some(selector) => {
                    let labels =
                        crate::object::labels(spec.get("template").unwrap_or(&Value::Null));
                    if !selector.matches(&labels) {
                        errors.push(FieldError::invalid(
                            "spec.template.metadata.labels",
                            Value::from(render_labels(&labels)),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            }
        }
    }
    match spec.pointer("/template/spec") {
        None => errors.push(FieldError::required("spec.template.spec", "")),
        Some(template_spec) => {
            validate_pod_spec(template_spec, "spec.template.spec", errors);
            let policy = template_spec
                .get("restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Always");
            if policy != "Always" {
                errors.push(FieldError::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["Always"],
                ));
            }
        }
    }
    if kind == "StatefulSet" {
        if let Some(policy) = spec.get("podManagementPolicy").and_then(Value::as_str)
            && policy != "OrderedReady"
            && policy != "Parallel"
        {
            errors.push(FieldError::not_supported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        if let Some(kind) = spec.pointer("/updateStrategy/type").and_then(Value::as_str)
            && kind != "RollingUpdate"
            && kind != "OnDelete"
        {
            errors.push(FieldError::not_supported(
                "spec.updateStrategy.type",
                kind,
                &["OnDelete", "RollingUpdate"],
            ));
        }
    }
    if let Some(old) = old {
        if old.pointer("/spec/selector") != spec.get("selector") {
            errors.push(FieldError::invalid(
                "spec.selector",
                spec.get("selector").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        if kind == "StatefulSet" {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let strip = |value: &Value| {
                let mut value = value.clone();
                if let Some(map) = value.as_object_mut() {
                    for field in mutable {
                        map.remove(field);
                    }
                }
                value
            };
            if strip(&spec) != strip(old.get("spec").unwrap_or(&Value::Null)) {
                errors.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
    }
}

/// `map[string]string{"app":"web"}`, as Go prints a label map in kube-apiserver's messages.
fn render_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key:?}:{value:?}"))
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pod_defaults() {
        let mut spec = json!({"containers":[{"name":"c","image":"nginx","readinessProbe":{"httpGet":{"port":80}}}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        let probe = &spec["containers"][0]["readinessProbe"];
        assert_eq!(probe["periodSeconds"], 10);
        assert_eq!(probe["timeoutSeconds"], 1);
        assert_eq!(probe["failureThreshold"], 3);
        assert_eq!(probe["httpGet"]["path"], "/");
        let mut pinned = json!({"containers":[{"name":"c","image":"nginx:1.27"}]});
        default_pod_spec(&mut pinned);
        assert_eq!(pinned["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn pod_rules_name_the_field() {
        let spec = json!({"restartPolicy":"Sometimes","hostname":"Web_0","containers":[{"name":"c"},{"name":"c","image":"x","ports":[{"containerPort":0}]}]});
        let mut errors = Vec::new();
        validate_pod_spec(&spec, "spec", &mut errors);
        let errors = causes(&errors);
        for expected in [
            "spec.containers[0].image: Required value",
            "spec.containers[1].name: Duplicate value: \"c\"",
            "spec.containers[1].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ] {
            assert!(
                errors.iter().any(|error| error == expected),
                "{expected} not in {errors:?}"
            );
        }
        assert!(
            errors
                .iter()
                .any(|error| error.starts_with("spec.hostname: Invalid value"))
        );
    }

    #[test]
    fn selector_must_match_template() {
        let deployment = json!({"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}});
        let mut errors = Vec::new();
        validate_workload("Deployment", &deployment, None, &mut errors);
        assert_eq!(
            causes(&errors),
            [
                "spec.template.metadata.labels: Invalid value: \"map[string]string{\\\"app\\\":\\\"b\\\"}\": `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn statefulset_updates_are_limited() {
        let old = json!({"spec":{"serviceName":"web","replicas":1,"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"a"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}});
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(5);
        let mut errors = Vec::new();
        validate_workload("StatefulSet", &scaled, Some(&old), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let mut renamed = old.clone();
        renamed["spec"]["serviceName"] = json!("other");
        validate_workload("StatefulSet", &renamed, Some(&old), &mut errors);
        assert_eq!(errors[0].field, "spec");
    }

    #[test]
    fn pod_spec_is_immutable_but_images() {
        let old = json!({"spec":{"containers":[{"name":"c","image":"x:1"}],"nodeName":"n"}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        let mut errors = Vec::new();
        validate_pod_update(&new, &old, &mut errors);
        assert!(errors.is_empty());
        new["spec"]["containers"][0]["command"] = json!(["sh"]);
        validate_pod_update(&new, &old, &mut errors);
        assert_eq!(errors[0].field, "spec");
    }
}

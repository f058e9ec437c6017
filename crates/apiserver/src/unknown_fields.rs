//! Strict field validation: which fields of a JSON object its kind's schema does not have.
//!
//! kubectl sends `fieldValidation=Strict` once the server's OpenAPI documents say it may, and
//! expects a typo such as `imagePullPolcy` to be refused the way kube-apiserver refuses it
//! (`Warn` lets the write through with a `Warning` header instead).
//!
//! # How fields are found
//!
//! The object is deserialized into its k8s-openapi type through `Tracked`, a `serde`
//! deserializer over the borrowed [`serde_json::Value`] that carries the JSON path of the value
//! it stands for. The generated types read each key they do not know as
//! [`serde::de::IgnoredAny`], so a call to [`serde::Deserializer::deserialize_ignored_any`] is,
//! exactly, an unknown field at the current path. Everything the type knows is accepted whatever
//! its value: `null`, `{}` or a zero are known fields, not unknown ones, and free-form maps
//! (`labels`, `annotations`, `nodeSelector`, resource lists) are read as maps, so their keys are
//! never reported. No schema table is kept: the schema is the typed struct itself.
//!
//! Paths follow kube-apiserver: `spec.template.spec.containers[0].imagePullPolcy`. Within one
//! object they come out in key order (the JSON value does not keep the document's order). A path
//! is a chain of borrowed segments on the stack and becomes a `String` only for an unknown
//! field, so a clean body costs no allocation per field.
//!
//! # One walk for a create
//!
//! The same walk is a type check: [`inspect`] also says whether the body deserialized into its
//! kind's type without help. A create uses that verdict instead of decoding the body a second
//! time; only a body the walk could not vouch for (a type error, or a `null` it read as an
//! empty object or list, which a plain decoding refuses) goes through
//! [`check_field_types`](crate::strategy::check_field_types) as before.

use std::cell::{Cell, RefCell};

use hollow_types::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use hollow_types::k8s_openapi::api::autoscaling::v1::Scale;
use hollow_types::k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use hollow_types::k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::{Map, Value};

/// The JSON paths of the fields in `object` that kind `kind`'s schema does not have, e.g.
/// `spec.foo` or `spec.template.spec.containers[0].imagePullPolcy`.
///
/// Kinds: Namespace, Node, Pod, Service, Endpoints, Event, EndpointSlice, Deployment, ReplicaSet,
/// StatefulSet and the `scale` subresource's Scale. Other kinds have no schema here and report
/// nothing. A value of the wrong type (say `replicas: "two"`) ends the walk: the fields found
/// before it are returned, and the type error itself is for the normal decoding to report.
pub fn unknown_fields(kind: &str, object: &Value) -> Vec<String> {
    inspect(kind, object).unknown
}

/// What one typed walk over a body found.
#[derive(Debug, Default)]
pub struct Inspection {
    /// The JSON paths of unknown fields, as [`unknown_fields`] reports them.
    pub unknown: Vec<String>,
    /// The body deserialized into its kind's type (apart from `apiVersion` and `kind`, which
    /// the caller checks) exactly as a plain decoding would, so the field types need no
    /// second check.
    pub types_checked: bool,
}

/// Walks `object` once as kind `kind`: its unknown fields and whether its field types hold.
pub fn inspect(kind: &str, object: &Value) -> Inspection {
    let findings = Findings::default();
    let root = Tracked {
        value: object,
        path: FieldPath::Root,
        findings: &findings,
        is_root: true,
    };
    let walked = match kind {
        "Namespace" => Namespace::deserialize(root).map(drop),
        "Node" => Node::deserialize(root).map(drop),
        "Pod" => Pod::deserialize(root).map(drop),
        "Service" => Service::deserialize(root).map(drop),
        "Endpoints" => Endpoints::deserialize(root).map(drop),
        "Event" => Event::deserialize(root).map(drop),
        "EndpointSlice" => EndpointSlice::deserialize(root).map(drop),
        "Deployment" => Deployment::deserialize(root).map(drop),
        "ReplicaSet" => ReplicaSet::deserialize(root).map(drop),
        "StatefulSet" => StatefulSet::deserialize(root).map(drop),
        "Scale" => Scale::deserialize(root).map(drop),
        _ => Ok(()),
    };
    Inspection {
        types_checked: walked.is_ok() && !findings.lenient_null.get(),
        unknown: findings.unknown.into_inner(),
    }
}

/// kube-apiserver's strict decoding error for `fields` (non-empty):
/// `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
///
/// kube-apiserver wraps it in its 400 BadRequest message, see [`bad_request_message`].
pub fn strict_error_message(fields: &[String]) -> String {
    let listed: Vec<String> = fields
        .iter()
        .map(|field| unknown_field_text(field))
        .collect();
    format!("strict decoding error: {}", listed.join(", "))
}

/// The whole message of kube-apiserver's 400 BadRequest for a strict decoding failure of a
/// create or update body whose `kind` and `apiVersion` are `kind` and `api_version`:
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: ...`
/// (the version without its group, as upstream prints it).
pub fn bad_request_message(kind: &str, api_version: &str, fields: &[String]) -> String {
    let version = api_version.rsplit('/').next().unwrap_or(api_version);
    format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {}",
        strict_error_message(fields)
    )
}

/// One `Warning` header value per field for `fieldValidation=Warn`, in the RFC 7234 form
/// kube-apiserver writes: `299 - "unknown field \"spec.foo\""`.
pub fn warning_headers(fields: &[String]) -> Vec<String> {
    let mut headers: Vec<String> = Vec::with_capacity(fields.len());
    for field in fields {
        let header = warning_header(&unknown_field_text(field));
        if !headers.contains(&header) {
            headers.push(header);
        }
    }
    headers
}

fn unknown_field_text(field: &str) -> String {
    format!("unknown field \"{field}\"")
}

/// `299 - "<text>"` with the text quoted as an HTTP quoted-string; characters a header value
/// cannot carry become spaces.
fn warning_header(text: &str) -> String {
    let mut header = String::with_capacity(text.len() + 8);
    header.push_str("299 - \"");
    for character in text.chars() {
        match character {
            '"' | '\\' => {
                header.push('\\');
                header.push(character);
            }
            '\t' | ' '..='~' => header.push(character),
            _ => header.push(' '),
        }
    }
    header.push('"');
    header
}

/// Where a value sits in the document: borrowed segments, rendered only when needed.
#[derive(Clone, Copy)]
enum FieldPath<'a> {
    Root,
    Key(&'a FieldPath<'a>, &'a str),
    Index(&'a FieldPath<'a>, usize),
}

impl FieldPath<'_> {
    fn render(&self) -> String {
        let mut text = String::new();
        self.render_into(&mut text);
        text
    }

    fn render_into(&self, text: &mut String) {
        match self {
            FieldPath::Root => {}
            FieldPath::Key(parent, key) => {
                parent.render_into(text);
                if !matches!(parent, FieldPath::Root) {
                    text.push('.');
                }
                text.push_str(key);
            }
            FieldPath::Index(parent, index) => {
                use std::fmt::Write as _;
                parent.render_into(text);
                let _ = write!(text, "[{index}]");
            }
        }
    }
}

/// What the walk learns on its way.
#[derive(Default)]
struct Findings {
    unknown: RefCell<Vec<String>>,
    /// A `null` was read as an empty object or list (Go's zero value), which a plain decoding
    /// would refuse: the walk's success then says nothing about the field types.
    lenient_null: Cell<bool>,
}

/// A deserializer for one JSON value at `path` that records unknown fields in `findings`.
struct Tracked<'de, 'p, 'u> {
    value: &'de Value,
    path: FieldPath<'p>,
    findings: &'u Findings,
    /// The top-level object, whose `apiVersion` and `kind` the caller has already routed on:
    /// they are skipped so that a mismatch there cannot stop the walk.
    is_root: bool,
}

impl<'de, 'p, 'u> Tracked<'de, 'p, 'u> {
    fn visit_object<V: de::Visitor<'de>>(
        self,
        object: &'de Map<String, Value>,
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_map(TrackedMap {
            entries: object.iter(),
            pending: None,
            path: self.path,
            findings: self.findings,
            skip_type_meta: self.is_root,
        })
    }

    fn visit_array<V: de::Visitor<'de>>(
        self,
        items: &'de [Value],
        visitor: V,
    ) -> Result<V::Value, serde_json::Error> {
        visitor.visit_seq(TrackedSeq {
            items: items.iter().enumerate(),
            path: self.path,
            findings: self.findings,
        })
    }
}

static EMPTY_OBJECT: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'de> Deserializer<'de> for Tracked<'de, '_, '_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(flag) => visitor.visit_bool(*flag),
            Value::Number(number) => number.deserialize_any(visitor),
            Value::String(text) => visitor.visit_borrowed_str(text),
            Value::Array(items) => self.visit_array(items, visitor),
            Value::Object(object) => self.visit_object(object, visitor),
        }
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_ignored_any<V: de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.findings.unknown.borrow_mut().push(self.path.render());
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    // Go reads `null` as the zero value of any field; for objects and lists that keeps the walk
    // going instead of failing where a non-optional struct or list meets `null`.
    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => {
                self.findings.lenient_null.set(true);
                self.visit_object(&EMPTY_OBJECT, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => {
                self.findings.lenient_null.set(true);
                self.visit_array(&[], visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // No served kind has a serde enum with fields; serde_json's own reader is enough.
        self.value.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        true
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct identifier
    }
}

struct TrackedMap<'de, 'p, 'u> {
    entries: serde_json::map::Iter<'de>,
    pending: Option<(&'de str, &'de Value)>,
    path: FieldPath<'p>,
    findings: &'u Findings,
    skip_type_meta: bool,
}

impl<'de> MapAccess<'de> for TrackedMap<'de, '_, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        for (key, value) in self.entries.by_ref() {
            if self.skip_type_meta && (key == "apiVersion" || key == "kind") {
                continue;
            }
            self.pending = Some((key, value));
            return seed
                .deserialize(BorrowedStrDeserializer::<serde_json::Error>::new(key))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a map value was read before its key"))?;
        seed.deserialize(Tracked {
            value,
            path: FieldPath::Key(&self.path, key),
            findings: self.findings,
            is_root: false,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct TrackedSeq<'de, 'p, 'u> {
    items: std::iter::Enumerate<std::slice::Iter<'de, Value>>,
    path: FieldPath<'p>,
    findings: &'u Findings,
}

impl<'de> SeqAccess<'de> for TrackedSeq<'de, '_, '_> {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Tracked {
            value,
            path: FieldPath::Index(&self.path, index),
            findings: self.findings,
            is_root: false,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nginx_deployment() -> Value {
        // What `kubectl create deployment nginx --image nginx --dry-run=client -o json` prints,
        // plus the empty objects editors and generators leave behind.
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "nginx",
                "namespace": "default",
                "creationTimestamp": null,
                "labels": {"app": "nginx", "example.com/any key": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "nginx"}},
                "strategy": {},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": ""}],
                            "resources": {},
                            "securityContext": {},
                            "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/nginx"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": 80},
                                "periodSeconds": 5,
                            },
                        }],
                        "volumes": [{"name": "cache", "emptyDir": {}}],
                        "securityContext": {},
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                    },
                },
            },
            "status": {},
        })
    }

    fn statefulset_with_claims() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {
                "serviceName": "web",
                "replicas": 3,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "registry.k8s.io/nginx-slim:0.8",
                            "ports": [{"containerPort": 80, "name": "web"}],
                            "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}],
                            // Quantities may be JSON numbers.
                            "resources": {
                                "requests": {"cpu": 0.5, "memory": "64Mi"},
                                "limits": {"cpu": 1},
                            },
                        }],
                    },
                },
                "volumeClaimTemplates": [{
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "www", "creationTimestamp": null},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                    "status": {},
                }],
            },
        })
    }

    fn headless_service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 9090},
                ],
            },
            "status": {"loadBalancer": {}},
        })
    }

    #[test]
    fn realistic_manifests_have_no_unknown_fields() {
        assert_eq!(
            unknown_fields("Deployment", &nginx_deployment()),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown_fields("StatefulSet", &statefulset_with_claims()),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown_fields("Service", &headless_service()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_bodies_kubectl_sends_have_no_unknown_fields() {
        let bodies = [
            include_str!("../tests/data/protobuf/deployment-nginx.kubectl-1.31.json"),
            include_str!("../tests/data/protobuf/deployment-command.kubectl-1.31.json"),
            include_str!("../tests/data/protobuf/service-nodeport.kubectl-1.31.json"),
            include_str!(
                "../tests/data/protobuf/service-loadbalancer-named-port.kubectl-1.31.json"
            ),
            include_str!("../tests/data/protobuf/namespace-shop.kubectl-1.31.json"),
        ];
        for body in bodies {
            let object: Value = serde_json::from_str(body).unwrap();
            let kind = object["kind"].as_str().unwrap();
            assert_eq!(
                unknown_fields(kind, &object),
                Vec::<String>::new(),
                "{body}"
            );
        }
    }

    #[test]
    fn typos_are_reported_with_their_paths() {
        let mut deployment = nginx_deployment();
        deployment["spec"]["foo"] = json!(1);
        deployment["spec"]["bar"] = json!({"nested": true});
        deployment["metadata"]["lables"] = json!({"app": "nginx"});
        let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
        container["imagePullPolcy"] = json!("Always");
        container["readinessProbe"]["httpGet"]["paht"] = json!("/");
        deployment["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimt"] = json!("1Gi");
        deployment["status"]["replicas"] = json!(2);
        deployment["status"]["ready"] = json!(2);
        assert_eq!(
            unknown_fields("Deployment", &deployment),
            [
                "metadata.lables",
                "spec.bar",
                "spec.foo",
                "spec.template.spec.containers[0].imagePullPolcy",
                "spec.template.spec.containers[0].readinessProbe.httpGet.paht",
                "spec.template.spec.volumes[0].emptyDir.sizeLimt",
                "status.ready",
            ]
        );
    }

    #[test]
    fn typos_in_claim_templates_and_service_ports_are_reported() {
        let mut statefulset = statefulset_with_claims();
        statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["storageClass"] = json!("fast");
        statefulset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostport"] =
            json!(80);
        assert_eq!(
            unknown_fields("StatefulSet", &statefulset),
            [
                "spec.template.spec.containers[0].ports[0].hostport",
                "spec.volumeClaimTemplates[0].spec.storageClass",
            ]
        );
        let mut service = headless_service();
        service["spec"]["ports"][1]["tragetPort"] = json!(9091);
        service["spec"]["clusterIp"] = json!("None");
        service["extra"] = json!("top level");
        assert_eq!(
            unknown_fields("Service", &service),
            ["extra", "spec.clusterIp", "spec.ports[1].tragetPort"]
        );
    }

    #[test]
    fn nulls_and_empty_values_of_known_fields_are_known() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "creationTimestamp": null, "labels": null, "annotations": {}},
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "command": null,
                    "args": [],
                    "env": null,
                    "resources": {"limits": null, "requests": {}},
                    "securityContext": {"capabilities": {}},
                    "stdin": false,
                    "workingDir": "",
                }],
                "initContainers": null,
                "volumes": [
                    {"name": "a", "emptyDir": {}},
                    {"name": "b", "configMap": {"name": "cm", "items": null}},
                    {"name": "c", "hostPath": {"path": "/tmp", "type": ""}},
                ],
                "securityContext": {},
                "affinity": null,
                "tolerations": [],
                "dnsConfig": {},
            },
            "status": {},
        });
        assert_eq!(unknown_fields("Pod", &pod), Vec::<String>::new());
    }

    #[test]
    fn free_form_values_inside_known_fields_are_not_reported() {
        let namespace = json!({
            "metadata": {
                "name": "shop",
                "managedFields": [{
                    "manager": "kubectl",
                    "operation": "Apply",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:anything": {}}}},
                }],
            },
        });
        assert_eq!(
            unknown_fields("Namespace", &namespace),
            Vec::<String>::new()
        );
    }

    #[test]
    fn null_where_the_type_has_a_required_object_or_list_keeps_walking() {
        let deployment = json!({
            "metadata": null,
            "spec": {
                "selector": null,
                "template": {"spec": {"containers": null, "oops": 1}},
            },
        });
        assert_eq!(
            unknown_fields("Deployment", &deployment),
            ["spec.template.spec.oops"]
        );
    }

    #[test]
    fn other_served_kinds() {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop"}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}, "spec2": {}});
        assert_eq!(unknown_fields("Namespace", &namespace), ["spec2"]);

        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.0.0.0/24", "unschedulable": false},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1", "zone": "a"}],
            "capacity": {"cpu": "2", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True",
                "lastHeartbeatTime": "2024-01-02T03:04:05Z"}],
        }});
        assert_eq!(unknown_fields("Node", &node), ["status.addresses[0].zone"]);

        let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1", "hostname": "web-0",
                "targetRef": {"kind": "Pod", "name": "web-0"}}],
                "notReadyAddresses": [], "ports": [{"port": 80, "protocl": "TCP"}]}]});
        assert_eq!(
            unknown_fields("Endpoints", &endpoints),
            ["subsets[0].ports[0].protocl"]
        );

        let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true,
                "serving": true, "terminating": false, "healthy": true}, "hostname": "web-0",
                "nodeName": "n1", "zone": "a"}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]});
        assert_eq!(
            unknown_fields("EndpointSlice", &slice),
            ["endpoints[0].conditions.healthy"]
        );

        let event = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1"}, "involvedObject": {"kind": "Pod", "name": "web-0"},
            "reason": "Started", "message": "ok", "type": "Normal", "count": 1,
            "firstTimestamp": null, "lastTimestamp": "2024-01-02T03:04:05Z",
            "eventTime": null, "source": {"component": "hollow-agent"}, "severity": "low"});
        assert_eq!(unknown_fields("Event", &event), ["severity"]);

        let replicaset = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "Deployment", "name": "web", "uid": "u", "controller": true,
                "owner": true}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        assert_eq!(
            unknown_fields("ReplicaSet", &replicaset),
            ["metadata.ownerReferences[0].owner"]
        );
    }

    #[test]
    fn scale_subresource_bodies() {
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"replicas": 3, "replica": 3}, "status": {"replicas": 1, "selector": "app=web"}});
        assert_eq!(unknown_fields("Scale", &scale), ["spec.replica"]);
    }

    #[test]
    fn a_mismatched_kind_or_api_version_does_not_stop_the_walk() {
        let object = json!({"apiVersion": "apps/v1beta2", "kind": "Thing", "spec": {"foo": 1}});
        assert_eq!(unknown_fields("Deployment", &object), ["spec.foo"]);
    }

    #[test]
    fn a_type_error_keeps_what_was_found_before_it() {
        // Keys are walked in order: "metadata" comes before "spec".
        let object = json!({"metadata": {"nmae": "x"}, "spec": {"replicas": "two", "zzz": 1}});
        assert_eq!(unknown_fields("Deployment", &object), ["metadata.nmae"]);
    }

    #[test]
    fn the_walk_vouches_for_field_types_only_when_a_plain_decoding_would_pass() {
        let pod = |spec: Value| json!({"metadata": {"name": "p"}, "spec": spec});
        let clean = pod(
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}),
        );
        let inspection = inspect("Pod", &clean);
        assert!(inspection.types_checked);
        assert!(inspection.unknown.is_empty());
        assert!(crate::strategy::check_field_types(pods(), &clean).is_ok());

        let wrong_type = pod(json!({"containers": [{"name": "c", "image": 7}]}));
        assert!(!inspect("Pod", &wrong_type).types_checked);
        assert!(crate::strategy::check_field_types(pods(), &wrong_type).is_err());

        // Read as an empty list by the walk, refused by a plain decoding: not vouched for.
        let null_element = pod(json!({"containers": [null]}));
        assert!(!inspect("Pod", &null_element).types_checked);

        let unknown =
            pod(json!({"containers": [{"name": "c", "image": "i", "imagePullPolcy": "x"}]}));
        let inspection = inspect("Pod", &unknown);
        assert_eq!(inspection.unknown, ["spec.containers[0].imagePullPolcy"]);
        assert!(inspection.types_checked);
    }

    fn pods() -> &'static hollow_types::ResourceInfo {
        hollow_types::ResourceInfo::find("", "pods").unwrap()
    }

    #[test]
    fn kinds_without_a_schema_report_nothing() {
        assert!(unknown_fields("ConfigMap", &json!({"data": {"a": "b"}, "x": 1})).is_empty());
    }

    #[test]
    fn kube_apiserver_messages() {
        let fields = ["spec.foo".to_owned(), "spec.bar".to_owned()];
        assert_eq!(
            strict_error_message(&fields),
            r#"strict decoding error: unknown field "spec.foo", unknown field "spec.bar""#
        );
        assert_eq!(
            bad_request_message("Deployment", "apps/v1", &fields[..1]),
            r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo""#
        );
        assert_eq!(
            bad_request_message("Service", "v1", &fields[1..]),
            r#"Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.bar""#
        );
        assert_eq!(
            warning_headers(&fields),
            [
                r#"299 - "unknown field \"spec.foo\"""#,
                r#"299 - "unknown field \"spec.bar\"""#,
            ]
        );
        // A key may hold anything; the header value must stay one valid line.
        let odd = ["metadata.a\\b\nc\u{e9}".to_owned()];
        assert_eq!(
            warning_headers(&odd),
            [r#"299 - "unknown field \"metadata.a\\b c \"""#]
        );
        assert!(warning_headers(&[]).is_empty());
    }
}

//! A container's environment, built as kubelet builds it, plus what hollow adds so a
//! process knows its pod without the downward API.
//!
//! Order: `PATH` (the agent's) and `HOME` (the pod's work directory); then `POD_IP`,
//! `POD_NAME`, `POD_NAMESPACE` and `HOSTNAME`; then `envFrom` sources; then `env` in order,
//! where a value may use `$(NAME)` to refer to anything defined before it. A later
//! definition of a name replaces the earlier one in place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use kube::Api;

use crate::expand::expand;

/// What the downward API and hollow's own variables need to know about the pod.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
    pub work_dir: &'a std::path::Path,
}

/// The pod's hostname: `spec.hostname`, or its name cut to a DNS label.
pub fn pod_hostname(pod: &Pod) -> String {
    let hostname = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.hostname.clone())
        .filter(|hostname| !hostname.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut hostname = hostname;
    hostname.truncate(63);
    hostname.trim_end_matches(['-', '.']).to_string()
}

#[derive(Default)]
struct Environment {
    entries: Vec<(String, String)>,
}

impl Environment {
    fn set(&mut self, name: &str, value: String) {
        match self
            .entries
            .iter_mut()
            .find(|(existing, _)| existing == name)
        {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.clone())
    }
}

/// Looks up configMap and secret keys; a client in the agent, a fixed map in tests.
pub trait ObjectSource {
    fn config_map(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, String>> + Send;
    fn secret(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, String>> + Send;
}

/// Reads configMaps and secrets from the API.
pub struct ApiObjects {
    pub client: kube::Client,
    pub namespace: String,
}

impl ObjectSource for ApiObjects {
    async fn config_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api.get_opt(name).await.map_err(|error| error.to_string())?;
        Ok(found.map(|map| map.data.unwrap_or_default()))
    }

    async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api.get_opt(name).await.map_err(|error| error.to_string())?;
        Ok(found.map(|secret| {
            let mut values: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(key, bytes)| (key, String::from_utf8_lossy(&bytes.0).into_owned()))
                .collect();
            values.extend(secret.string_data.unwrap_or_default());
            values
        }))
    }
}

/// The container's environment; `Err` is the message of a `CreateContainerConfigError`.
pub async fn container_env(
    facts: &PodFacts<'_>,
    container: &Container,
    objects: &impl ObjectSource,
) -> Result<Vec<(String, String)>, String> {
    let mut environment = Environment::default();
    environment.set(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    environment.set("HOME", facts.work_dir.display().to_string());
    let metadata = &facts.pod.metadata;
    environment.set("POD_IP", facts.pod_ip.clone());
    environment.set("POD_NAME", metadata.name.clone().unwrap_or_default());
    environment.set(
        "POD_NAMESPACE",
        metadata.namespace.clone().unwrap_or_default(),
    );
    environment.set("HOSTNAME", pod_hostname(facts.pod));

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (values, optional, what) = if let Some(reference) = &source.config_map_ref {
            (
                objects.config_map(&reference.name).await?,
                reference.optional.unwrap_or(false),
                format!("configmap \"{}\"", reference.name),
            )
        } else if let Some(reference) = &source.secret_ref {
            (
                objects.secret(&reference.name).await?,
                reference.optional.unwrap_or(false),
                format!("secret \"{}\"", reference.name),
            )
        } else {
            continue;
        };
        match values {
            Some(values) => {
                for (key, value) in values {
                    environment.set(&format!("{prefix}{key}"), value);
                }
            }
            None if optional => {}
            None => return Err(format!("{what} not found")),
        }
    }

    for variable in container.env.iter().flatten() {
        let value = match &variable.value_from {
            Some(source) => match value_from(facts, source, objects).await? {
                Some(value) => value,
                None => continue,
            },
            None => expand(variable.value.as_deref().unwrap_or(""), |name| {
                environment.get(name)
            }),
        };
        environment.set(&variable.name, value);
    }
    Ok(environment.entries)
}

/// A `valueFrom` value; `None` for an optional reference that is missing.
async fn value_from(
    facts: &PodFacts<'_>,
    source: &EnvVarSource,
    objects: &impl ObjectSource,
) -> Result<Option<String>, String> {
    if let Some(field) = &source.field_ref {
        return field_value(facts, &field.field_path).map(Some);
    }
    if let Some(key) = &source.config_map_key_ref {
        let optional = key.optional.unwrap_or(false);
        return match objects.config_map(&key.name).await? {
            Some(values) => match values.get(&key.key) {
                Some(value) => Ok(Some(value.clone())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in ConfigMap {}",
                    key.key, key.name
                )),
            },
            None if optional => Ok(None),
            None => Err(format!("configmap \"{}\" not found", key.name)),
        };
    }
    if let Some(key) = &source.secret_key_ref {
        let optional = key.optional.unwrap_or(false);
        return match objects.secret(&key.name).await? {
            Some(values) => match values.get(&key.key) {
                Some(value) => Ok(Some(value.clone())),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in Secret {}",
                    key.key, key.name
                )),
            },
            None if optional => Ok(None),
            None => Err(format!("secret \"{}\" not found", key.name)),
        };
    }
    Err("hollow does not resolve resourceFieldRef or fileKeyRef environment values".into())
}

fn field_value(facts: &PodFacts<'_>, path: &str) -> Result<String, String> {
    let pod = facts.pod;
    let metadata = &pod.metadata;
    let spec = pod.spec.as_ref();
    let lookup_key = |prefix: &str| -> Option<String> {
        let inner = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(inner.to_string())
    };
    let value = match path {
        "metadata.name" => metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => metadata.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|spec| spec.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        _ => {
            if let Some(key) = lookup_key("metadata.labels['") {
                metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = lookup_key("metadata.annotations['") {
                metadata
                    .annotations
                    .as_ref()
                    .and_then(|annotations| annotations.get(&key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        EnvFromSource, EnvVar, ObjectFieldSelector, PodSpec, SecretKeySelector,
    };
    use kube::api::ObjectMeta;

    use super::*;

    struct Fixed;

    impl ObjectSource for Fixed {
        async fn config_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "settings")
                .then(|| BTreeMap::from([("MODE".to_string(), "fast".to_string())])))
        }

        async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
            Ok((name == "token")
                .then(|| BTreeMap::from([("value".to_string(), "s3cret".to_string())])))
        }
    }

    fn variable(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                hostname: Some("web-1".into()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    #[tokio::test]
    async fn builds_the_environment_in_kubernetes_order() {
        let pod = pod();
        let work_dir = std::path::PathBuf::from("/tmp/pod");
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.244.0.7".into(),
            host_ip: "127.0.0.1".into(),
            work_dir: &work_dir,
        };
        let container = Container {
            name: "web".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                prefix: Some("APP_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                field("MY_IP", "status.podIP"),
                field("NODE", "spec.nodeName"),
                field("APP", "metadata.labels['app']"),
                variable("URL", "http://$(MY_IP):8080/$(MISSING)$$"),
                variable("POD_NAME", "renamed"),
                EnvVar {
                    name: "TOKEN".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "token".into(),
                            key: "value".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                },
            ]),
            ..Container::default()
        };
        let env = container_env(&facts, &container, &Fixed).await.unwrap();
        let get = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(get("POD_IP"), Some("127.244.0.7"));
        assert_eq!(get("POD_NAMESPACE"), Some("default"));
        assert_eq!(get("HOSTNAME"), Some("web-1"));
        assert_eq!(get("MY_IP"), Some("127.244.0.7"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("APP_MODE"), Some("fast"));
        assert_eq!(get("URL"), Some("http://127.244.0.7:8080/$(MISSING)$"));
        assert_eq!(get("POD_NAME"), Some("renamed"));
        assert_eq!(get("TOKEN"), Some("s3cret"));
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            &names[..6],
            [
                "PATH",
                "HOME",
                "POD_IP",
                "POD_NAME",
                "POD_NAMESPACE",
                "HOSTNAME"
            ]
        );
    }

    #[tokio::test]
    async fn missing_references_are_config_errors() {
        let pod = pod();
        let work_dir = std::path::PathBuf::from("/tmp/pod");
        let facts = PodFacts {
            pod: &pod,
            pod_ip: "127.244.0.7".into(),
            host_ip: "127.0.0.1".into(),
            work_dir: &work_dir,
        };
        let container = Container {
            name: "web".into(),
            env: Some(vec![field("X", "spec.nope")]),
            ..Container::default()
        };
        assert_eq!(
            container_env(&facts, &container, &Fixed).await.unwrap_err(),
            "unsupported fieldPath: spec.nope"
        );
    }
}

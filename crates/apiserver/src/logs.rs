//! `pods/log`: kube-apiserver does not read logs itself, it proxies to the kubelet of the
//! pod's node, and so does hollow. The API server knows nothing of the agent crate; what it
//! needs is in the store: the Pod (which container, which node), and the Node (its
//! InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`). The request goes to
//! `GET /containerLogs/{namespace}/{pod}/{container}` there, over a fresh HTTP/1.1
//! connection, and the body is streamed back as it arrives, so `kubectl logs -f` follows
//! until the node ends the stream or the client goes away (dropping the body closes the
//! upstream connection).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hollow_types::ResourceInfo;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::State;
use crate::error::{ApiError, ApiResult};
use crate::request::ResourcePath;

/// How long connecting to a node and getting its response headers may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an error body from the node that is kept as the message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// kubelet's log options that are passed on, and whether each is a boolean (else an integer).
const PASSED_ON: [(&str, bool); 5] = [
    ("previous", true),
    ("follow", true),
    ("timestamps", true),
    ("tailLines", false),
    ("limitBytes", false),
];

/// Serves `GET .../namespaces/{namespace}/pods/{name}/log`.
pub async fn pod_log(
    state: &State,
    method: &Method,
    path: &ResourcePath,
    query: Option<&str>,
) -> ApiResult<Response> {
    if *method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "{method} is not supported on pods/log"
        )));
    }
    let (Some(namespace), Some(pod_name)) = (path.namespace.as_deref(), path.name.as_deref())
    else {
        return Err(ApiError::no_route());
    };
    let parameters = parse_query(query)?;
    let pod = read_object(state, path.resource, Some(namespace), pod_name)?;
    let container = choose_container(&pod, pod_name, parameters.get("container"))?;
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    let nodes = ResourceInfo::find("", "nodes").expect("nodes are a built-in resource");
    let node = read_object(state, nodes, None, node_name)?;
    let address = kubelet_address(&node, node_name)?;
    let upstream_query = upstream_query(&parameters)?;
    let target = format!("/containerLogs/{namespace}/{pod_name}/{container}{upstream_query}");
    proxy(address, &target).await
}

fn read_object(
    state: &State,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let record = state
        .store
        .get(&resource.key(namespace, name))?
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    serde_json::from_slice(&record.value)
        .map_err(|error| ApiError::internal(format!("decoding the stored {name}: {error}")))
}

fn parse_query(query: Option<&str>) -> ApiResult<HashMap<String, String>> {
    let uri: http::Uri = format!("/?{}", query.unwrap_or_default())
        .parse()
        .map_err(|_| ApiError::bad_request("the query string is not valid"))?;
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|query| query.0)
        .map_err(|error| ApiError::bad_request(format!("invalid query parameters: {error}")))
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map(|containers| {
            containers
                .iter()
                .filter_map(|container| container["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The named container, or the only one; kube-apiserver's wording otherwise.
fn choose_container(pod: &Value, pod_name: &str, requested: Option<&String>) -> ApiResult<String> {
    let containers = container_names(pod, "containers");
    let init_containers = container_names(pod, "initContainers");
    let ephemeral_containers = container_names(pod, "ephemeralContainers");
    match requested.filter(|name| !name.is_empty()) {
        Some(name) => {
            let known = containers
                .iter()
                .chain(&init_containers)
                .chain(&ephemeral_containers)
                .any(|known| known == name);
            if known {
                Ok(name.clone())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {name} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init_containers.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init_containers.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The node's InternalIP and the port its agent serves logs on.
fn kubelet_address(node: &Value, node_name: &str) -> ApiResult<SocketAddr> {
    let status = &node["status"];
    let ip: IpAddr = status["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|address| address["type"] == "InternalIP")
        .and_then(|address| address["address"].as_str()?.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!("node {node_name} has no InternalIP address"))
        })?;
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {node_name} does not publish a kubelet endpoint port"
            ))
        })?;
    Ok(SocketAddr::new(ip, port))
}

/// The options kubelet understands, checked as kube-apiserver checks them, in a fixed order.
fn upstream_query(parameters: &HashMap<String, String>) -> ApiResult<String> {
    let mut pairs = Vec::new();
    for (name, is_boolean) in PASSED_ON {
        let Some(value) = parameters.get(name) else {
            continue;
        };
        let valid = if is_boolean {
            matches!(value.as_str(), "true" | "false")
        } else {
            value.parse::<i64>().is_ok()
        };
        if !valid {
            return Err(ApiError::bad_request(format!(
                "invalid value for {name}: {value:?}"
            )));
        }
        pairs.push(format!("{name}={value}"));
    }
    if pairs.is_empty() {
        Ok(String::new())
    } else {
        Ok(format!("?{}", pairs.join("&")))
    }
}

async fn proxy(address: SocketAddr, target: &str) -> ApiResult<Response> {
    let unreachable = |error: &dyn std::fmt::Display| {
        ApiError::internal(format!("reaching the node at {address}: {error}"))
    };
    let upstream = tokio::time::timeout(NODE_TIMEOUT, async {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection lives as long as the response body is read; dropping the body (the
        // client went away) ends it.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "node log connection ended");
            }
        });
        let request = http::Request::get(target)
            .header(header::HOST, address.to_string())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| unreachable(&e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))
    })
    .await
    .map_err(|_| {
        ApiError::unavailable(format!("the node at {address} did not answer in time"))
    })??;
    let status = upstream.status();
    if !status.is_success() {
        let body = http_body_util::Limited::new(upstream.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_string();
        // kubelet answers an unknown container or run with a client error, which
        // kube-apiserver hands on as BadRequest with kubelet's message.
        return Err(if status.is_client_error() {
            ApiError::bad_request(message)
        } else {
            ApiError::internal(message)
        });
    }
    let mut response = Response::new(Body::new(upstream.into_body()));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let named = |names: &[&str]| -> Vec<Value> {
            names.iter().map(|name| json!({"name": name})).collect()
        };
        json!({"spec": {"containers": named(containers), "initContainers": named(init)}})
    }

    #[test]
    fn the_only_container_is_chosen() {
        let chosen = choose_container(&pod(&["web"], &[]), "web-0", None).unwrap();
        assert_eq!(chosen, "web");
    }

    #[test]
    fn several_containers_need_a_name() {
        let error = choose_container(&pod(&["a", "b"], &["setup"]), "web-0", None).unwrap_err();
        assert_eq!(error.code, 400);
        assert_eq!(
            error.message,
            "a container name must be specified for pod web-0, choose one of: [a b] or one of the init containers: [setup]"
        );
        let named = choose_container(&pod(&["a", "b"], &[]), "web-0", Some(&"b".into()));
        assert_eq!(named.unwrap(), "b");
        let unknown = choose_container(&pod(&["a"], &[]), "web-0", Some(&"c".into()));
        assert_eq!(
            unknown.unwrap_err().message,
            "container c is not valid for pod web-0"
        );
    }

    #[test]
    fn the_kubelet_address_comes_from_the_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }});
        assert_eq!(
            kubelet_address(&node, "n1").unwrap(),
            "127.0.0.1:10250".parse().unwrap()
        );
        let unpublished = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        }});
        assert_eq!(kubelet_address(&unpublished, "n1").unwrap_err().code, 503);
    }

    #[test]
    fn only_kubelet_options_are_passed_on_and_checked() {
        let parameters: HashMap<String, String> = [
            ("container", "web"),
            ("follow", "true"),
            ("tailLines", "10"),
            ("sinceSeconds", "5"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        assert_eq!(
            upstream_query(&parameters).unwrap(),
            "?follow=true&tailLines=10"
        );
        let bad: HashMap<String, String> = [("tailLines".to_string(), "ten".to_string())]
            .into_iter()
            .collect();
        assert_eq!(upstream_query(&bad).unwrap_err().code, 400);
        assert_eq!(upstream_query(&HashMap::new()).unwrap(), "");
    }
}

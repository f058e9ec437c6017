//! The agent's HTTP endpoint for container logs, the part of kubelet's server that
//! `kubectl logs` reaches through the API server: `GET
//! /containerLogs/{namespace}/{pod}/{container}` with kubelet's query parameters
//! (`previous`, `follow`, `tailLines`, `limitBytes`). The body is streamed from
//! [`crate::logs::read_log`]; a follower stays open until the run ends or the client leaves.
//!
//! It binds a loopback address on an ephemeral port; the port is published in the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`, where the API server looks for it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::logs::{LogError, LogOptions, read_log};

/// kubelet's query parameters of `/containerLogs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LogQuery {
    previous: Option<String>,
    follow: Option<String>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
}

fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("true") | Some("1") | Some(""))
}

impl LogQuery {
    fn options(&self) -> LogOptions {
        LogOptions {
            previous: is_true(self.previous.as_deref()),
            follow: is_true(self.follow.as_deref()),
            // Negative values mean "no limit" to kubelet.
            tail_lines: self.tail_lines.and_then(|lines| u64::try_from(lines).ok()),
            limit_bytes: self
                .limit_bytes
                .and_then(|bytes| u64::try_from(bytes).ok())
                .filter(|bytes| *bytes > 0),
        }
    }
}

/// The address the server binds: the node's address when it is loopback (servers stay on
/// loopback), else `127.0.0.1`.
pub fn bind_address(node_ip: Ipv4Addr) -> SocketAddr {
    let ip = if node_ip.is_loopback() {
        node_ip
    } else {
        Ipv4Addr::LOCALHOST
    };
    SocketAddr::new(IpAddr::V4(ip), 0)
}

/// The routes, over a data directory.
pub fn router(data_dir: PathBuf) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(Arc::new(data_dir))
}

/// Serves the routes on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, data_dir: PathBuf) -> std::io::Result<()> {
    axum::serve(listener, router(data_dir)).await
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

async fn container_logs(
    State(data_dir): State<Arc<PathBuf>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let options = match query {
        Ok(Query(query)) => query.options(),
        Err(rejection) => return plain(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match read_log(&data_dir, &namespace, &pod, &container, &options).await {
        Ok(stream) => (
            [(header::CONTENT_TYPE, "text/plain")],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(error @ LogError::Io(_)) => plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        Err(error) => plain(StatusCode::NOT_FOUND, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> LogOptions {
        let uri: http::Uri = format!("/?{text}").parse().unwrap();
        Query::<LogQuery>::try_from_uri(&uri).unwrap().0.options()
    }

    #[test]
    fn kubelet_query_parameters_become_log_options() {
        let options = query("previous=true&follow=false&tailLines=5&limitBytes=100");
        assert!(options.previous);
        assert!(!options.follow);
        assert_eq!(options.tail_lines, Some(5));
        assert_eq!(options.limit_bytes, Some(100));
        let defaults = query("");
        assert!(!defaults.previous && !defaults.follow);
        assert_eq!(defaults.tail_lines, None);
        assert_eq!(query("tailLines=-1").tail_lines, None);
    }

    #[test]
    fn a_non_loopback_node_address_still_binds_loopback() {
        assert_eq!(
            bind_address(Ipv4Addr::new(10, 0, 0, 1)).ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            bind_address(Ipv4Addr::new(127, 0, 0, 2)).ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
    }

    #[tokio::test]
    async fn an_unknown_pod_is_a_plain_not_found() {
        let directory = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, directory.path().to_path_buf()));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /containerLogs/default/web-0/web HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        server.abort();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert!(reply.contains("has no logs on this node"), "{reply}");
    }
}

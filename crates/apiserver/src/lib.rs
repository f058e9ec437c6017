//! hollow's Kubernetes-compatible API server: HTTP/1.1 + JSON over the hollow store.
//!
//! It serves the subset of the Kubernetes API that service discovery needs (namespaces, nodes,
//! pods, services, endpoints, events, EndpointSlices, Deployments, ReplicaSets, StatefulSets)
//! well enough that the real `kubectl` and kube-rs drive it as they drive a cluster.
//!
//! # Layout
//!
//! * [`request`]: URL → [`request::ResourcePath`] (resource, namespace, name, subresource) and
//!   query options.
//! * [`negotiate`]: `Accept` (object, Table, PartialObjectMetadata) and body decoding.
//! * [`handlers`]: get, list, create, update, patch, delete, deletecollection, `status`,
//!   `scale`; each write is a compare-and-swap on the revision it read.
//! * [`watch`]: chunked watch streams fed by the store's watch fan-out.
//! * [`strategy`]: per-kind rules (server-set fields, generation, status split, validation).
//! * [`filter`]: label and field selectors on stored bytes.
//! * [`discovery`]: `/version`, aggregated and legacy discovery, minimal OpenAPI.
//! * [`table`]: `kubectl get` columns per kind.
//! * [`patch`]: strategic merge, JSON merge and JSON patches.
//! * [`namespaces`]: the default namespaces, the clean-up of deleted ones, and the namespaces
//!   known to be active (so a write need not read its namespace from the store each time).
//! * [`tls`] and [`auth`]: HTTPS and the bearer token, for listeners off loopback.
//! * [`logs`]: `pods/log`, proxied to the log endpoint the pod's Node publishes.
//!
//! # A request's way through
//!
//! ```text
//! axum router ─► fixed paths (/version, /healthz, discovery, openapi)
//!             └► resource fallback ─► ResourcePath::parse ─► watch::watch  (watch=true)
//!                                                         └► handlers::handle
//!                                                              │ strategy + validation
//!                                                              ▼
//!                                                         hollow_store::Store (CAS write,
//!                                                              group-committed, then fanned
//!                                                              out to every watch)
//! ```

pub mod allocator;
pub mod auth;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod handlers;
pub mod logs;
pub mod namespaces;
pub mod negotiate;
pub mod object;
pub mod patch;
pub mod protobuf;
pub mod request;
pub mod service;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod unknown_fields;
pub mod watch;
pub mod workload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use hollow_store::Store;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::error::{ApiError, ApiResult};
use crate::negotiate::{Format, MAX_BODY_BYTES};
use crate::request::{QueryOptions, ResourcePath};

/// Errors that stop the API server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("serving HTTP: {0}")]
    Serve(#[from] std::io::Error),
    #[error("preparing the store: {0}")]
    Bootstrap(String),
}

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    pub store: Store,
    /// Woken when a namespace is marked for deletion, so its contents are cleaned up.
    pub namespace_deleted: Arc<Notify>,
    /// The address clients reach the server at (legacy discovery reports it).
    pub advertise_address: Arc<str>,
    /// ClusterIP and NodePort allocation.
    pub allocators: Arc<allocator::Allocators>,
    /// Watch frames of recent events, built once and shared by every watcher.
    pub watch_frames: Arc<watch::FrameCache>,
    /// Namespaces found active, so writes into them need not read them each time.
    pub active_namespaces: Arc<namespaces::ActiveNamespaces>,
}

/// How the API server is set up.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// Where clients reach the server; also the `kubernetes` service's endpoint.
    pub advertise_address: SocketAddr,
    /// The range ClusterIPs come from (`--service-cidr`). The default is on loopback, so
    /// every service address works on one machine without root.
    pub service_cidr: allocator::Cidr,
}

impl ApiServerConfig {
    pub fn new(advertise_address: SocketAddr) -> ApiServerConfig {
        ApiServerConfig {
            advertise_address,
            service_cidr: DEFAULT_SERVICE_CIDR
                .parse()
                .expect("the default CIDR parses"),
        }
    }
}

/// The default `--service-cidr`.
pub const DEFAULT_SERVICE_CIDR: &str = "127.96.0.0/16";

/// The API server over an open store.
pub struct ApiServer {
    state: State,
}

impl ApiServer {
    /// An API server with the default configuration.
    pub async fn new(store: Store, advertise_address: SocketAddr) -> Result<ApiServer, Error> {
        ApiServer::with_config(store, ApiServerConfig::new(advertise_address)).await
    }

    /// Prepares the store (default namespaces, the `kubernetes` service), rebuilds the
    /// allocators from the stored Services, and the shared state.
    pub async fn with_config(store: Store, config: ApiServerConfig) -> Result<ApiServer, Error> {
        let state = State {
            store,
            namespace_deleted: Arc::new(Notify::new()),
            advertise_address: Arc::from(config.advertise_address.to_string()),
            allocators: allocator::Allocators::new(config.service_cidr),
            watch_frames: Arc::default(),
            active_namespaces: Arc::default(),
        };
        let bootstrap = async {
            namespaces::rebuild_allocations(&state)?;
            namespaces::ensure_defaults(&state).await?;
            namespaces::ensure_kubernetes_service(&state, config.advertise_address).await
        };
        bootstrap
            .await
            .map_err(|error: ApiError| Error::Bootstrap(error.to_string()))?;
        Ok(ApiServer { state })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The HTTP routes.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on an already bound listener until `shutdown` completes. Background duties
    /// (namespace clean-up) run alongside.
    ///
    /// Every connection has Nagle's algorithm off, as kube-apiserver's (Go's default): a watch
    /// event is one small write, and with Nagle on it waits for the ACK of the one before,
    /// which the client's delayed ACK holds back for up to 40 ms. Measured with
    /// `scripts/bench-api.sh`: write→event p99 at 100 watchers fell from 35–38 ms to 4–9 ms.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let cleaner = tokio::spawn(namespaces::run_cleaner(self.state.clone()));
        let listener = listener.tap_io(|connection| {
            // Refused only for a socket that is not TCP, which a TcpListener never yields.
            let _ = connection.set_nodelay(true);
        });
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        cleaner.abort();
        result.map_err(Error::Serve)
    }

    /// Serves HTTPS on an already bound listener until `shutdown` completes. Every request
    /// but the health probes and `/version` must carry `token` as a bearer token.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: Arc<tls::ServerConfig>,
        token: auth::BearerToken,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let cleaner = tokio::spawn(namespaces::run_cleaner(self.state.clone()));
        let router = self.router().layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_bearer_token,
        ));
        let result = axum::serve(tls::TlsListener::new(listener, tls), router)
            .with_graceful_shutdown(shutdown)
            .await;
        cleaner.abort();
        result.map_err(Error::Serve)
    }
}

fn router(state: State) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { json_reply(&discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/openapi/v2", get(|| async { openapi_v2() }))
        .route(
            "/openapi/v3",
            get(|| async { json_reply(&discovery::openapi_root()) }),
        )
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .fallback(resource)
        // One reference count per request instead of one per field of `State`.
        .with_state(Arc::new(state))
}

fn json_reply(value: &Value) -> Response {
    bytes_reply(
        StatusCode::OK,
        "application/json",
        Bytes::from(serde_json::to_vec(value).expect("a JSON value always serialises")),
    )
}

fn bytes_reply(status: StatusCode, content_type: &str, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    // The usual answer needs no check of its content type's characters.
    let value = if content_type == "application/json" {
        Ok(HeaderValue::from_static("application/json"))
    } else {
        HeaderValue::from_str(content_type)
    };
    if let Ok(value) = value {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

async fn api_root(AxumState(state): AxumState<Arc<State>>, request: Request) -> Response {
    match discovery::aggregated_version(request.headers()) {
        Some(version) => bytes_reply(
            StatusCode::OK,
            &discovery::aggregated_content_type(version),
            to_bytes(&discovery::aggregated(true, version)),
        ),
        None => json_reply(&discovery::api_versions(&state.advertise_address)),
    }
}

async fn apis_root(request: Request) -> Response {
    match discovery::aggregated_version(request.headers()) {
        Some(version) => bytes_reply(
            StatusCode::OK,
            &discovery::aggregated_content_type(version),
            to_bytes(&discovery::aggregated(false, version)),
        ),
        None => json_reply(&discovery::api_group_list()),
    }
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a JSON value always serialises"))
}

/// An empty protobuf document: kubectl 1.27/1.28 need a 200 here before they read v3.
fn openapi_v2() -> Response {
    bytes_reply(StatusCode::OK, "application/octet-stream", Bytes::new())
}

async fn openapi_v3(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let segments: Vec<&str> = path.split('/').collect();
    let document = match segments.as_slice() {
        ["api", version] => discovery::openapi_group_version("", version),
        ["apis", group, version] => discovery::openapi_group_version(group, version),
        _ => None,
    };
    match document {
        Some(document) => json_reply(&document),
        None => ApiError::no_route().into_response(),
    }
}

/// Everything under `/api/...` and `/apis/...` that is not discovery root.
async fn resource(AxumState(state): AxumState<Arc<State>>, request: Request) -> Response {
    match resource_request(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn resource_request(state: &State, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let http::request::Parts {
        method,
        uri,
        headers,
        ..
    } = parts;
    let path = uri.path();
    // Legacy per-group discovery documents.
    if method == Method::GET {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let document = match segments.as_slice() {
            ["api", version] => discovery::api_resource_list("", version),
            ["apis", group] => discovery::api_group(group),
            ["apis", group, version] => discovery::api_resource_list(group, version),
            _ => None,
        };
        if let Some(document) = document {
            return Ok(json_reply(&document));
        }
    }
    let resource_path = ResourcePath::parse(path)?;
    let query: QueryOptions = match uri.query() {
        Some(text) => serde_urlencoded_options(text)?,
        None => QueryOptions::default(),
    };
    let is_watch = method == Method::GET && (query.is_watch() || resource_path.legacy_watch);
    if is_watch {
        let format = Format::from_headers(&headers);
        return watch::watch(state, &resource_path, &query, format);
    }
    if resource_path.subresource.as_deref() == Some("log") {
        return logs::pod_log(state, &method, &resource_path, uri.query()).await;
    }
    let body = read_body(body).await?;
    let reply = handlers::handle(state, &method, &resource_path, &query, &headers, &body).await?;
    let mut response = bytes_reply(reply.status, reply.content_type, reply.body);
    for warning in reply.warnings {
        if let Ok(value) = HeaderValue::from_str(&warning) {
            response.headers_mut().append("warning", value);
        }
    }
    Ok(response)
}

fn serde_urlencoded_options(query: &str) -> ApiResult<QueryOptions> {
    let uri: http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| ApiError::bad_request("the query string is not valid"))?;
    axum::extract::Query::<QueryOptions>::try_from_uri(&uri)
        .map(|query| query.0)
        .map_err(|error| ApiError::bad_request(format!("invalid query parameters: {error}")))
}

/// Reads a body, refusing one over kube-apiserver's limit with a `Status`.
async fn read_body(body: Body) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::too_large(MAX_BODY_BYTES))
            } else {
                Err(ApiError::bad_request(format!("reading the body: {error}")))
            }
        }
    }
}

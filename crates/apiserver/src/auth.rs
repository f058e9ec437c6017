//! Bearer-token authentication for the API server when it serves HTTPS.
//!
//! One static token, as kube-apiserver's `--token-auth-file` with a single line: a request
//! carries `Authorization: Bearer <token>` or is answered 401 with a Kubernetes `Status`. The
//! probes kubelets and load balancers poll without credentials (`/healthz`, `/livez`,
//! `/readyz`) and `/version` stay open, as kube-apiserver leaves them to anonymous users.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Bytes of randomness in a generated token (written as hex).
const GENERATED_TOKEN_BYTES: usize = 32;

/// Paths anyone may read.
const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/livez", "/readyz", "/version"];

/// Why the token could not be read or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("reading the token file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("the token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("the token file {path} holds characters an HTTP header cannot carry")]
    NotHeaderSafe { path: PathBuf },
    #[error("no randomness for a token")]
    Random,
    #[error(transparent)]
    Write(#[from] crate::tls::TlsError),
}

/// The token clients must present. Its `Debug` form hides it.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// The token in `path` (surrounding whitespace ignored), as a user brings it.
    pub fn read(path: &Path) -> Result<BearerToken, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_path_buf(),
            });
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(AuthError::NotHeaderSafe {
                path: path.to_path_buf(),
            });
        }
        Ok(BearerToken(Arc::from(token)))
    }

    /// The token in `path`, generated there (random, hex, mode 0600) when the file does not
    /// exist yet; later starts reuse it, so kubeconfigs handed out keep working.
    pub fn read_or_generate(path: &Path) -> Result<BearerToken, AuthError> {
        if path.exists() {
            return BearerToken::read(path);
        }
        let mut random = [0u8; GENERATED_TOKEN_BYTES];
        tokio_rustls::rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut random)
            .map_err(|_| AuthError::Random)?;
        let token: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        crate::tls::write_private(path, &format!("{token}\n"))?;
        Ok(BearerToken(Arc::from(token)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

/// Whether `path` is served without credentials.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
}

/// axum middleware: passes requests that carry the token (or ask for a public path), answers
/// the rest 401 `Unauthorized`.
pub async fn require_bearer_token(
    State(token): State<BearerToken>,
    request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path())
        || presented_token(&request).is_some_and(|presented| token.matches(presented))
    {
        return next.run(request).await;
    }
    ApiError::new(401, "Unauthorized", "Unauthorized").into_response()
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive.
fn presented_token(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, credentials) =
        value.split_at_checked(value.iter().position(|&byte| byte == b' ')?)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let credentials = credentials.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::StatusCode;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// One request through `router`; the status and the body as JSON (null when it is not).
    async fn call(router: &Router, request: Request) -> (StatusCode, serde_json::Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    fn guarded(token: &BearerToken) -> Router {
        Router::new()
            .route("/api/v1/namespaces", get(|| async { "{}" }))
            .route("/healthz", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                token.clone(),
                require_bearer_token,
            ))
    }

    fn request(path: &str, authorization: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header(header::AUTHORIZATION, value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn only_the_token_opens_the_api() {
        let directory = tempfile::tempdir().unwrap();
        let token = BearerToken::read_or_generate(&directory.path().join("token")).unwrap();
        assert_eq!(token.as_str().len(), 2 * GENERATED_TOKEN_BYTES);
        let router = guarded(&token);
        let right = format!("Bearer {}", token.as_str());
        let lower_case_scheme = format!("bearer {}", token.as_str());
        let (status, _) = call(&router, request("/api/v1/namespaces", Some(&right))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(
            &router,
            request("/api/v1/namespaces", Some(&lower_case_scheme)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&router, request("/healthz", None)).await;
        assert_eq!(status, StatusCode::OK);

        let wrong = format!("Bearer {}x", token.as_str());
        let basic = format!("Basic {}", token.as_str());
        for authorization in [
            None,
            Some(wrong.as_str()),
            Some(basic.as_str()),
            Some("Bearer "),
        ] {
            let (status, body) = call(&router, request("/api/v1/namespaces", authorization)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert_eq!(
                body,
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401
                })
            );
        }
    }

    #[test]
    fn generated_tokens_are_kept_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("token");
        let first = BearerToken::read_or_generate(&path).unwrap();
        let second = BearerToken::read_or_generate(&path).unwrap();
        assert_eq!(first.as_str(), second.as_str());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = BearerToken::read_or_generate(&directory.path().join("other")).unwrap();
        assert_ne!(first.as_str(), other.as_str());
    }

    #[test]
    fn brought_tokens_are_trimmed_and_checked() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("token");
        std::fs::write(&path, "  secret-token\n").unwrap();
        assert_eq!(BearerToken::read(&path).unwrap().as_str(), "secret-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            BearerToken::read(&path),
            Err(AuthError::Empty { .. })
        ));
        std::fs::write(&path, "two words").unwrap();
        assert!(matches!(
            BearerToken::read(&path),
            Err(AuthError::NotHeaderSafe { .. })
        ));
    }
}

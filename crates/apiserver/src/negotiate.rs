//! Content negotiation: what a client wants back, and what it sent.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// How a client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The objects themselves.
    Json,
    /// A `meta.k8s.io/v1` Table, as `kubectl get` asks for.
    Table,
    /// `PartialObjectMetadata` (kube-rs metadata watchers).
    Metadata,
}

impl Format {
    /// The first acceptable media type in the `Accept` header wins, as in kube-apiserver.
    pub fn from_headers(headers: &HeaderMap) -> Format {
        let Some(accept) = headers.get(ACCEPT).and_then(|value| value.to_str().ok()) else {
            return Format::Json;
        };
        for media_range in accept.split(',') {
            let media_range = media_range.trim();
            let parameter = |name: &str| {
                media_range.split(';').skip(1).find_map(|parameter| {
                    let (key, value) = parameter.trim().split_once('=')?;
                    (key == name).then_some(value)
                })
            };
            match parameter("as") {
                Some("Table") if parameter("v") == Some("v1") => return Format::Table,
                Some("Table") => continue,
                Some("PartialObjectMetadata") | Some("PartialObjectMetadataList") => {
                    return Format::Metadata;
                }
                Some(_) => continue,
                None => return Format::Json,
            }
        }
        Format::Json
    }
}

/// The largest body accepted, as kube-apiserver's default (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes a create or update body into a JSON document.
///
/// JSON is the default (kubectl sends `PUT .../scale` with no Content-Type); YAML is accepted
/// as kube-apiserver accepts it.
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let media_type = content_type(headers);
    let value: Value = match media_type.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {error}"
            ))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|error| {
                ApiError::bad_request(format!("error converting YAML to JSON: {error}"))
            })?
        }
        "application/vnd.kubernetes.protobuf" => {
            crate::protobuf::decode(body).map_err(|error| {
                if error.is_unsupported() {
                    ApiError::unsupported_media_type_because(error.to_string())
                } else {
                    ApiError::bad_request(format!(
                        "the protobuf body could not be decoded: {error}"
                    ))
                }
            })?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let headers = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(Format::from_headers(&headers), Format::Table);
        assert_eq!(
            Format::from_headers(&accept(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            )),
            Format::Json
        );
        assert_eq!(
            Format::from_headers(&accept("application/json")),
            Format::Json
        );
        assert_eq!(
            Format::from_headers(&accept(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Format::Metadata
        );
    }

    #[test]
    fn bodies_must_be_objects_in_a_known_format() {
        let headers = HeaderMap::new();
        assert!(decode_body(&headers, &Bytes::from_static(b"{\"a\":1}")).is_ok());
        assert_eq!(
            decode_body(&headers, &Bytes::from_static(b"{oops"))
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            decode_body(&headers, &Bytes::from_static(b"[1]"))
                .unwrap_err()
                .code,
            400
        );
        let mut yaml = HeaderMap::new();
        yaml.insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        let value = decode_body(&yaml, &Bytes::from_static(b"metadata:\n  name: a\n")).unwrap();
        assert_eq!(value["metadata"]["name"], "a");
        let mut xml = HeaderMap::new();
        xml.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        assert_eq!(
            decode_body(&xml, &Bytes::from_static(b"<a/>"))
                .unwrap_err()
                .code,
            415
        );
    }
}

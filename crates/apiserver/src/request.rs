//! Turning a URL into the resource request it names.
//!
//! Kubernetes resource URLs have a few shapes:
//!
//! ```text
//! /api/v1/{plural}[/{name}[/{subresource}]]                         cluster-scoped, or all namespaces
//! /api/v1/namespaces/{namespace}/{plural}[/{name}[/{subresource}]]  namespaced
//! /apis/{group}/{version}/...                                       the same for named groups
//! /api/v1/watch/...                                                 the legacy watch prefix
//! ```
//!
//! `/api/v1/namespaces/{name}[/status]` names a namespace itself, so the segment after
//! `namespaces/{x}` decides which shape it is.

use hollow_types::ResourceInfo;
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};

/// What a resource URL names.
#[derive(Clone, Debug)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    /// The namespace in the URL, for namespaced resources; `None` means all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The URL used the legacy `/watch/` prefix.
    pub legacy_watch: bool,
}

impl ResourcePath {
    pub fn parse(path: &str) -> ApiResult<ResourcePath> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::no_route()),
        };
        let (legacy_watch, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let find = |plural: &str| -> ApiResult<&'static ResourceInfo> {
            ResourceInfo::find(group, plural)
                .filter(|resource| resource.version == version)
                .ok_or_else(ApiError::no_route)
        };
        let namespaced_plural = |plural: &str| {
            ResourceInfo::find(group, plural)
                .is_some_and(|resource| resource.version == version && resource.is_namespaced())
        };
        let owned = |segment: &&str| segment.to_string();
        let parsed = match rest {
            ["namespaces", namespace, plural, tail @ ..] if namespaced_plural(plural) => {
                if namespace.is_empty() {
                    return Err(ApiError::no_route());
                }
                let resource = find(plural)?;
                match tail {
                    [] | [_] | [_, _] => ResourcePath {
                        resource,
                        namespace: Some(namespace.to_string()),
                        name: tail.first().map(owned),
                        subresource: tail.get(1).map(owned),
                        legacy_watch,
                    },
                    _ => return Err(ApiError::no_route()),
                }
            }
            [plural, tail @ ..] if tail.len() <= 2 => {
                let resource = find(plural)?;
                ResourcePath {
                    resource,
                    namespace: None,
                    name: tail.first().map(owned),
                    subresource: tail.get(1).map(owned),
                    legacy_watch,
                }
            }
            _ => return Err(ApiError::no_route()),
        };
        if let Some(subresource) = &parsed.subresource
            && parsed.resource.subresource(subresource).is_none()
        {
            return Err(ApiError::no_route());
        }
        if parsed.name.as_deref() == Some("") {
            return Err(ApiError::no_route());
        }
        Ok(parsed)
    }

    /// The storage key of the named object.
    pub fn key(&self) -> String {
        self.resource.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or(""),
        )
    }

    /// The storage prefix of the collection the URL names.
    pub fn collection_prefix(&self) -> String {
        self.resource.namespace_prefix(self.namespace.as_deref())
    }
}

/// The query parameters of resource requests that hollow reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryOptions {
    pub watch: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<i64>,
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<i64>,
    pub allow_watch_bookmarks: Option<String>,
    pub send_initial_events: Option<String>,
    pub dry_run: Option<String>,
    pub field_manager: Option<String>,
    pub field_validation: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub force: Option<String>,
    pub pretty: Option<String>,
    pub timeout: Option<String>,
    // pods/log
    pub container: Option<String>,
    pub follow: Option<String>,
    pub previous: Option<String>,
    pub tail_lines: Option<i64>,
}

fn is_true(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true") | Some("1") | Some(""))
}

impl QueryOptions {
    pub fn is_watch(&self) -> bool {
        is_true(&self.watch)
    }
    pub fn bookmarks(&self) -> bool {
        is_true(&self.allow_watch_bookmarks)
    }
    pub fn send_initial_events(&self) -> bool {
        is_true(&self.send_initial_events)
    }
    pub fn dry_run(&self) -> bool {
        self.dry_run.as_deref() == Some("All")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_url_shape() {
        let path = ResourcePath::parse("/api/v1/namespaces/default/pods/web-0/status").unwrap();
        assert_eq!(path.resource.plural, "pods");
        assert_eq!(path.namespace.as_deref(), Some("default"));
        assert_eq!(path.name.as_deref(), Some("web-0"));
        assert_eq!(path.subresource.as_deref(), Some("status"));
        assert_eq!(path.key(), "/core/pods/default/web-0");

        let path = ResourcePath::parse("/api/v1/pods").unwrap();
        assert_eq!(path.namespace, None);
        assert_eq!(path.collection_prefix(), "/core/pods/");

        let path = ResourcePath::parse("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(path.resource.plural, "namespaces");
        assert_eq!(path.name.as_deref(), Some("kube-system"));

        let path = ResourcePath::parse("/api/v1/namespaces/kube-system/status").unwrap();
        assert_eq!(path.resource.plural, "namespaces");
        assert_eq!(path.subresource.as_deref(), Some("status"));

        let path =
            ResourcePath::parse("/apis/apps/v1/namespaces/a/statefulsets/web/scale").unwrap();
        assert_eq!(path.resource.kind, "StatefulSet");
        assert_eq!(path.subresource.as_deref(), Some("scale"));

        let path = ResourcePath::parse("/api/v1/watch/namespaces/a/services").unwrap();
        assert!(path.legacy_watch);
        assert_eq!(path.resource.plural, "services");
    }

    #[test]
    fn refuses_what_is_not_served() {
        for url in [
            "/api/v2/pods",
            "/apis/apps/v1/pods",
            "/api/v1/widgets",
            "/api/v1/namespaces/a/pods/x/exec",
            "/api/v1/namespaces/a/pods/x/status/more",
            "/api/v1/nodes/x/scale",
        ] {
            assert!(ResourcePath::parse(url).is_err(), "{url}");
        }
    }
}

//! Watch streams: one compact JSON event per line, over a chunked HTTP/1.1 answer.
//!
//! ```text
//! store Watch (bounded, per watcher) ──► watch task: filter, frame ──► bounded channel ──► socket
//! ```
//!
//! The stored bytes of an object are framed as they are
//! (`{"type":"MODIFIED","object":<stored>}`), so a plain watch never re-encodes an object. A
//! watcher that cannot keep up fills its channel, then its store queue; the store then ends it
//! with `Expired`, which the client receives as an in-stream 410 `ERROR` event and answers by
//! relisting. Writers and other watchers never wait for it.
//!
//! Semantics follow kube-apiserver: `resourceVersion` unset or `"0"` first sends an `ADDED`
//! event per current object; `N` sends every change after `N`; a version older than the
//! retained history gets the 410 `ERROR` event; `sendInitialEvents=true` ends the initial
//! events with a bookmark annotated `k8s.io/initial-events-end`; with `allowWatchBookmarks`
//! a bookmark is sent every minute; `timeoutSeconds` ends the stream cleanly.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use hollow_store::{Event, EventKind, Revision};
use hollow_types::ResourceInfo;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::State;
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::handlers::{TABLE_CONTENT_TYPE, list_records, partial_metadata, table_of};
use crate::negotiate::Format;
use crate::object;
use crate::request::{QueryOptions, ResourcePath};

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// How long a watch lasts when the client sets no timeout (kube-apiserver: 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Frames queued toward the socket before the watch task waits for the client.
const FRAMES_IN_FLIGHT: usize = 64;

/// Where a watch starts.
enum Start {
    /// Send the current state as `ADDED` events, then changes after its revision.
    WithState,
    /// Send changes after this revision.
    After(Revision),
}

pub fn watch(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    format: Format,
) -> ApiResult<Response> {
    let mut filter = Filter::new(
        path.resource,
        query.label_selector.as_deref(),
        query.field_selector.as_deref(),
    )?;
    if let Some(name) = &path.name {
        filter = filter.with_name(name);
    }
    let start = match query.resource_version.as_deref() {
        None | Some("") | Some("0") => Start::WithState,
        Some(_) if query.send_initial_events() => Start::WithState,
        Some(text) => Start::After(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {text}")))?,
        ),
    };
    let timeout = query
        .timeout_seconds
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(seconds as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let stream = WatchStream {
        resource: path.resource,
        filter,
        format,
        bookmarks: query.bookmarks(),
        initial_events_end: query.send_initial_events(),
        sent_columns: false,
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(FRAMES_IN_FLIGHT);
    let prefix = path.collection_prefix();
    let state = state.clone();
    tokio::spawn(async move {
        stream.run(state, prefix, start, timeout, sender).await;
    });
    let body = Body::from_stream(futures::stream::unfold(receiver, |mut receiver| async {
        receiver
            .recv()
            .await
            .map(|frame| (Ok::<_, std::convert::Infallible>(frame), receiver))
    }));
    let content_type = match format {
        Format::Table => TABLE_CONTENT_TYPE,
        _ => "application/json",
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

struct WatchStream {
    resource: &'static ResourceInfo,
    filter: Filter,
    format: Format,
    bookmarks: bool,
    initial_events_end: bool,
    sent_columns: bool,
}

impl WatchStream {
    async fn run(
        mut self,
        state: State,
        prefix: String,
        start: Start,
        timeout: Duration,
        sender: mpsc::Sender<Bytes>,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let after = match start {
            Start::After(revision) => revision,
            Start::WithState => {
                let listing = match list_records(&state, &prefix, &self.filter, None, None) {
                    Ok(listing) => listing,
                    Err(error) => {
                        let _ = sender.send(self.error_frame(&error)).await;
                        return;
                    }
                };
                for record in &listing.records {
                    let Some(frame) = self.frame("ADDED", &record.value) else {
                        continue;
                    };
                    if sender.send(frame).await.is_err() {
                        return;
                    }
                }
                if self.initial_events_end
                    && sender
                        .send(self.bookmark(listing.revision, true))
                        .await
                        .is_err()
                {
                    return;
                }
                listing.revision
            }
        };
        let mut watch = match state.store.watch(&prefix, after) {
            Ok(watch) => watch,
            Err(error) => {
                let _ = sender.send(self.error_frame(&error.into())).await;
                return;
            }
        };
        let mut last_revision = after;
        let mut bookmark_timer = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = sender.closed() => return,
                _ = bookmark_timer.tick(), if self.bookmarks => {
                    if sender.send(self.bookmark(last_revision, false)).await.is_err() {
                        return;
                    }
                }
                next = watch.next() => match next {
                    None => return,
                    Some(Err(error)) => {
                        let _ = sender.send(self.error_frame(&error.into())).await;
                        return;
                    }
                    Some(Ok(event)) => {
                        last_revision = event.revision;
                        if let Some(frame) = self.event_frame(&event)
                            && sender.send(frame).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The frame a store event becomes for this watcher, if it sees it at all. An object that
    /// stops matching the selectors is `DELETED` for this watcher; one that starts, `ADDED`.
    fn event_frame(&mut self, event: &Event) -> Option<Bytes> {
        if self.filter.is_everything() {
            let kind = match event.kind {
                EventKind::Created => "ADDED",
                EventKind::Updated => "MODIFIED",
                EventKind::Deleted => "DELETED",
            };
            return self.frame(kind, &event.value);
        }
        let now = self.filter.matches(&event.key, &event.value);
        let before = event
            .previous
            .as_ref()
            .is_some_and(|previous| self.filter.matches(&event.key, previous));
        let kind = match (event.kind, before, now) {
            (EventKind::Deleted, true, _) => "DELETED",
            (EventKind::Deleted, false, _) => return None,
            (_, false, true) => "ADDED",
            (_, true, true) => "MODIFIED",
            (_, true, false) => "DELETED",
            (_, false, false) => return None,
        };
        self.frame(kind, &event.value)
    }

    fn frame(&mut self, kind: &str, stored: &Bytes) -> Option<Bytes> {
        match self.format {
            Format::Json => {
                let mut frame = BytesMut::with_capacity(stored.len() + 32);
                frame.put_slice(b"{\"type\":\"");
                frame.put_slice(kind.as_bytes());
                frame.put_slice(b"\",\"object\":");
                frame.put_slice(stored);
                frame.put_slice(b"}\n");
                Some(frame.freeze())
            }
            Format::Table => {
                let object = object::decode(stored).ok()?;
                let revision = object::metadata_str(&object, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                let table = table_of(
                    self.resource,
                    std::slice::from_ref(&object),
                    &revision,
                    None,
                    !self.sent_columns,
                );
                self.sent_columns = true;
                Some(line(&json!({"type": kind, "object": table})))
            }
            Format::Metadata => {
                let object = object::decode(stored).ok()?;
                Some(line(
                    &json!({"type": kind, "object": partial_metadata(&object)}),
                ))
            }
        }
    }

    fn bookmark(&self, revision: Revision, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match self.format {
            Format::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            }),
            _ => json!({
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version(),
                "metadata": metadata,
            }),
        };
        line(&json!({"type": "BOOKMARK", "object": object}))
    }

    fn error_frame(&self, error: &ApiError) -> Bytes {
        line(&json!({"type": "ERROR", "object": error.to_status()}))
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("a JSON value always serialises");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

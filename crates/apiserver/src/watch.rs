//! Watch streams: one compact JSON event per line, over a chunked HTTP/1.1 answer.
//!
//! ```text
//! store Watch (bounded, per watcher) ──► response body stream: filter, frame ──► hyper ──► socket
//! ```
//!
//! The response body polls the store's watch itself, on the connection's own task: an event
//! costs one task wake-up per watcher, not two (there is no relay task and channel in between).
//! The body hands hyper one frame per event for as long as events are queued and only then
//! waits, and hyper buffers the frames it is given until the body waits, so whatever queued up
//! while a watcher was busy goes out in one vectored write.
//!
//! The stored bytes of an object are framed as they are
//! (`{"type":"MODIFIED","object":<stored>}`), so a plain watch never re-encodes an object, and
//! the JSON frame of an event is built once and shared by every watcher that sends it
//! ([`FrameCache`]). A watcher that cannot keep up stops being polled, its store queue fills,
//! and the store ends it with `Expired`, which the client receives as an in-stream 410 `ERROR`
//! event and answers by relisting. Writers and other watchers never wait for it.
//!
//! Semantics follow kube-apiserver: `resourceVersion` unset or `"0"` first sends an `ADDED`
//! event per current object; `N` sends every change after `N`; a version older than the
//! retained history gets the 410 `ERROR` event; `sendInitialEvents=true` ends the initial
//! events with a bookmark annotated `k8s.io/initial-events-end`; with `allowWatchBookmarks`
//! a bookmark is sent every minute; `timeoutSeconds` ends the stream cleanly.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use hollow_store::{Event, EventKind, Record, Revision, Watch};
use hollow_types::ResourceInfo;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

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
/// How many recent events' JSON frames [`FrameCache`] keeps.
const CACHED_FRAMES: usize = 256;

/// The JSON frames of recent events, so that every watcher of an event sends the same bytes
/// instead of building its own copy. Keyed by revision (one revision is one event) and event
/// type (a selector can turn a `MODIFIED` into an `ADDED` or `DELETED` for some watchers).
pub struct FrameCache {
    slots: Mutex<Vec<Option<CachedFrame>>>,
}

struct CachedFrame {
    revision: Revision,
    kind: &'static str,
    frame: Bytes,
}

impl Default for FrameCache {
    fn default() -> Self {
        Self {
            slots: Mutex::new((0..CACHED_FRAMES).map(|_| None).collect()),
        }
    }
}

impl FrameCache {
    /// The JSON frame of `event` as a `kind` event, built on the first call for it.
    fn json_frame(&self, event: &Event, kind: &'static str) -> Bytes {
        let slot = (event.revision % CACHED_FRAMES as u64) as usize;
        {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = &slots[slot]
                && cached.revision == event.revision
                && cached.kind == kind
            {
                return cached.frame.clone();
            }
        }
        // Built outside the lock: two watchers may both build it, which is harmless.
        let frame = json_frame(kind, &event.value);
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)[slot] = Some(CachedFrame {
            revision: event.revision,
            kind,
            frame: frame.clone(),
        });
        frame
    }
}

/// `{"type":"<kind>","object":<stored>}` and a newline.
fn json_frame(kind: &str, stored: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(stored.len() + 32);
    frame.put_slice(b"{\"type\":\"");
    frame.put_slice(kind.as_bytes());
    frame.put_slice(b"\",\"object\":");
    frame.put_slice(stored);
    frame.put_slice(b"}\n");
    frame.freeze()
}

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
    let feed = Feed {
        stream,
        state: state.clone(),
        prefix: path.collection_prefix(),
        phase: Phase::Starting(start),
        deadline: Box::pin(tokio::time::sleep(timeout)),
        bookmark_timer: tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        ),
        last_revision: 0,
    };
    let body = Body::from_stream(futures::stream::unfold(feed, |mut feed| async move {
        let frame = feed.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), feed))
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

/// One watch's response body: where it is, and what it sends next.
struct Feed {
    stream: WatchStream,
    state: State,
    prefix: String,
    phase: Phase,
    deadline: Pin<Box<tokio::time::Sleep>>,
    bookmark_timer: tokio::time::Interval,
    /// The revision of the last event sent (for bookmarks).
    last_revision: Revision,
}

enum Phase {
    Starting(Start),
    /// Sending the current state: these records, then (if asked) the initial-events bookmark,
    /// then the changes after `revision`.
    Initial {
        records: std::vec::IntoIter<Record>,
        revision: Revision,
    },
    Live(Watch),
    /// One last frame (an error), then the end.
    Ending(Bytes),
    Ended,
}

impl Feed {
    /// The next frame of the body, or `None` when the watch is over.
    async fn next_frame(&mut self) -> Option<Bytes> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Ended) {
                Phase::Ended => return None,
                Phase::Ending(frame) => return Some(frame),
                Phase::Starting(Start::After(revision)) => self.subscribe(revision),
                Phase::Starting(Start::WithState) => {
                    match list_records(&self.state, &self.prefix, &self.stream.filter, None, None) {
                        Ok(listing) => {
                            self.phase = Phase::Initial {
                                records: listing.records.into_iter(),
                                revision: listing.revision,
                            }
                        }
                        Err(error) => return Some(self.stream.error_frame(&error)),
                    }
                }
                Phase::Initial {
                    mut records,
                    revision,
                } => match records.next() {
                    Some(record) => {
                        self.phase = Phase::Initial { records, revision };
                        if let Some(frame) = self.stream.frame("ADDED", &record.value) {
                            return Some(frame);
                        }
                    }
                    None => {
                        self.subscribe(revision);
                        if self.stream.initial_events_end {
                            return Some(self.stream.bookmark(revision, true));
                        }
                    }
                },
                Phase::Live(mut watch) => {
                    // The deadline and the bookmark timer come first so that a steady flow of
                    // events cannot starve them.
                    let next = tokio::select! {
                        biased;
                        _ = self.deadline.as_mut() => return None,
                        _ = self.bookmark_timer.tick(), if self.stream.bookmarks => {
                            self.phase = Phase::Live(watch);
                            return Some(self.stream.bookmark(self.last_revision, false));
                        }
                        next = watch.next() => next,
                    };
                    match next {
                        None => return None,
                        Some(Err(error)) => return Some(self.stream.error_frame(&error.into())),
                        Some(Ok(event)) => {
                            self.phase = Phase::Live(watch);
                            self.last_revision = event.revision;
                            if let Some(frame) = self.stream.event_frame(&self.state, &event) {
                                return Some(frame);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Moves on to the changes after `revision`, or to the error that refuses them.
    fn subscribe(&mut self, revision: Revision) {
        self.last_revision = revision;
        self.phase = match self.state.store.watch(&self.prefix, revision) {
            Ok(watch) => Phase::Live(watch),
            Err(error) => Phase::Ending(self.stream.error_frame(&error.into())),
        };
    }
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
    /// The frame a store event becomes for this watcher, if it sees it at all. An object that
    /// stops matching the selectors is `DELETED` for this watcher; one that starts, `ADDED`.
    fn event_frame(&mut self, state: &State, event: &Event) -> Option<Bytes> {
        let kind = self.kind_for(event)?;
        if self.format == Format::Json {
            return Some(state.watch_frames.json_frame(event, kind));
        }
        self.frame(kind, &event.value)
    }

    /// The event type `event` is for this watcher, if it sees it at all.
    fn kind_for(&self, event: &Event) -> Option<&'static str> {
        if self.filter.is_everything() {
            return Some(match event.kind {
                EventKind::Created => "ADDED",
                EventKind::Updated => "MODIFIED",
                EventKind::Deleted => "DELETED",
            });
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
        Some(kind)
    }

    fn frame(&mut self, kind: &str, stored: &Bytes) -> Option<Bytes> {
        match self.format {
            Format::Json => Some(json_frame(kind, stored)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: Revision, value: &'static str) -> Event {
        Event {
            kind: EventKind::Updated,
            key: "/pods/default/p".to_owned(),
            revision,
            value: Bytes::from_static(value.as_bytes()),
            previous: None,
        }
    }

    #[test]
    fn a_frame_is_built_once_per_event_and_type() {
        let cache = FrameCache::default();
        let first = event(7, r#"{"a":1}"#);
        let shared = cache.json_frame(&first, "MODIFIED");
        assert_eq!(
            &shared[..],
            b"{\"type\":\"MODIFIED\",\"object\":{\"a\":1}}\n"
        );
        // Another watcher gets the same bytes, not a copy.
        assert_eq!(
            cache.json_frame(&first, "MODIFIED").as_ptr(),
            shared.as_ptr()
        );
        // A watcher whose selector turns the event into an ADDED gets its own frame.
        let added = cache.json_frame(&first, "ADDED");
        assert_eq!(&added[..], b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n");
        // An event that lands in the same slot replaces the old frame, never reuses it.
        let later = event(7 + CACHED_FRAMES as Revision, r#"{"b":2}"#);
        assert_eq!(
            &cache.json_frame(&later, "ADDED")[..],
            b"{\"type\":\"ADDED\",\"object\":{\"b\":2}}\n"
        );
    }
}

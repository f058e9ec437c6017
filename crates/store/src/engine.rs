//! [`Store`]: the single writer thread, group commit, the event history and watch fan-out.
//!
//! # Writes
//!
//! [`Store::write`] puts the request on a channel and awaits a one-shot reply. One std thread,
//! the writer, takes the first queued request, then everything else already queued (up to
//! [`MAX_BATCH`]), and hands the batch to [`Backend::commit`]: one transaction, one fsync for
//! all of them. That is group commit: while a commit is on the disk, new requests pile up and
//! all go in the next commit, so throughput grows with the number of concurrent writers
//! instead of being capped at one write per fsync.
//!
//! After the commit the writer, in this order, advances [`Store::current_revision`], appends the
//! events to the history and to every matching watcher's queue (under the hub lock), replies to
//! the waiting writers, and only then wakes the watchers (a hundred wake-ups take longer than
//! the replies). So once `write` returns revision `r`, a watch from `r - 1` is guaranteed to see
//! it: the event is already queued, even if its watcher has not been woken yet.
//!
//! # Reads
//!
//! [`Store::get`] and [`Store::list`] go straight to the backend's read snapshot on the caller's
//! thread; they never queue behind the writer.
//!
//! # History and watches
//!
//! The hub keeps the latest `history_capacity` events (and at most `history_bytes`) in a ring. Revisions are contiguous (a
//! failed write takes none), so the ring holds every event after
//! [`Store::oldest_watchable_revision`]. [`Store::watch`] copies the matching part of the ring
//! into a new watcher queue and registers that queue under the same lock the writer publishes
//! under: nothing can slip between replay and live events, and nothing is delivered twice.
//!
//! Each watcher has its own bounded queue (`watch_buffer` live events on top of its replay). The
//! writer never waits on a watcher: if a queue is full, the watcher is cut off, its queue is
//! dropped, and it gets one [`Error::Expired`] followed by the end of the stream. Its client
//! re-lists and watches again, as with a compacted etcd revision.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};

use crate::backend::{Backend, MemoryBackend, RedbBackend};
use crate::{Encoder, Error, Event, Page, Precondition, Record, Result, Revision, Write};

/// The most writes one commit takes. Bounds the latency of the first write in a batch and the
/// size of one transaction.
pub const MAX_BATCH: usize = 256;

/// The longest the writer holds a commit open waiting for a batch as large as the previous one.
/// Small next to an fsync (~0.5 ms here), so it costs a lone straggler little.
const LINGER: Duration = Duration::from_micros(200);

/// Tuning of a [`Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many recent events the store keeps for watches to resume from.
    pub history_capacity: usize,
    /// The most bytes (keys, values and previous values) the history may hold; the oldest
    /// events go first when either this or `history_capacity` is exceeded.
    pub history_bytes: usize,
    /// How many live events may wait in one watcher's queue before it is cut off as too slow.
    pub watch_buffer: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            history_capacity: 100_000,
            history_bytes: 256 << 20,
            watch_buffer: 1024,
        }
    }
}

/// A handle to the store. Cheap to clone; every clone talks to the same writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    requests: mpsc::Sender<Request>,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Written by the writer thread, read by anyone.
struct Counters {
    revision: AtomicU64,
    commits: AtomicU64,
    writes: AtomicU64,
}

/// Counters of a [`Store`], for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreStats {
    /// The revision of the latest commit.
    pub revision: Revision,
    /// Backend commits since the store was opened (one log `fdatasync` each, or one redb fsync
    /// for a checkpoint or a backend without a log).
    pub commits: u64,
    /// Writes handled by those commits, failed preconditions included; `writes / commits` is
    /// the average group-commit batch.
    pub writes: u64,
    /// Live watches.
    pub watchers: usize,
}

enum Request {
    Write(Write, oneshot::Sender<Result<Event>>),
    Shutdown,
}

impl Store {
    /// Opens (or creates) the redb database at `path`.
    pub fn open_redb(path: &Path, options: StoreOptions) -> Result<Store> {
        Store::new(Arc::new(RedbBackend::open(path)?), options)
    }

    /// A store whose data lives only in memory.
    pub fn in_memory(options: StoreOptions) -> Store {
        Store::start(Arc::new(MemoryBackend::new()), 0, options)
    }

    /// A store over any backend; resumes at the backend's current revision.
    pub fn new(backend: Arc<dyn Backend>, options: StoreOptions) -> Result<Store> {
        let revision = backend.current_revision()?;
        Ok(Store::start(backend, revision, options))
    }

    fn start(backend: Arc<dyn Backend>, revision: Revision, options: StoreOptions) -> Store {
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState {
                history: VecDeque::new(),
                history_base: revision,
                history_size: 0,
                watchers: Vec::new(),
                next_watcher_id: 0,
                closed: false,
            }),
            history_capacity: options.history_capacity,
            history_bytes: options.history_bytes,
            watch_buffer: options.watch_buffer.max(1),
        });
        let counters = Arc::new(Counters {
            revision: AtomicU64::new(revision),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            backend: backend.clone(),
            hub: hub.clone(),
            counters: counters.clone(),
            requests: receiver,
        };
        // Failing to start a thread is as fatal as failing to allocate; there is no store without
        // its writer.
        let handle = std::thread::Builder::new()
            .name("hollow-store-writer".to_owned())
            .spawn(move || writer.run())
            .expect("spawn the store writer thread");
        Store {
            inner: Arc::new(Inner {
                backend,
                requests,
                hub,
                counters,
                writer: Mutex::new(Some(handle)),
            }),
        }
    }

    /// One key as of the latest commit.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        self.inner.backend.get(key)
    }

    /// Keys under `prefix` in key order, after `start_after`, at most `limit`, from one snapshot.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page> {
        self.inner.backend.range(prefix, start_after, limit)
    }

    /// Like [`Store::list`], keeping only records for which `filter(key, value)` holds (they
    /// alone count against `limit`), all from one snapshot. With `more` set, continue after the
    /// last record's key; the next page may be empty, as the keys left need not match.
    pub fn list_matching(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<Page> {
        self.inner
            .backend
            .range_matching(prefix, start_after, limit, filter)
    }

    /// Queues `write` for the next group commit and waits until it is durable. Dropping the
    /// returned future does not withdraw a write already queued.
    pub async fn write(&self, write: Write) -> Result<Event> {
        let (reply, response) = oneshot::channel();
        self.inner
            .requests
            .send(Request::Write(write, reply))
            .map_err(|_| Error::Closed)?;
        // A dropped reply means the writer stopped before reaching this request.
        response.await.map_err(|_| Error::Closed)?
    }

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    pub async fn create(&self, key: impl Into<String>, value: Encoder) -> Result<Event> {
        self.write(Write::Put {
            key: key.into(),
            precondition: Precondition::MustNotExist,
            value,
        })
        .await
    }

    /// Writes `key` if `precondition` holds.
    pub async fn update(
        &self,
        key: impl Into<String>,
        precondition: Precondition,
        value: Encoder,
    ) -> Result<Event> {
        self.write(Write::Put {
            key: key.into(),
            precondition,
            value,
        })
        .await
    }

    /// Deletes `key` if `precondition` holds; the event carries what `final_value` produces.
    pub async fn delete(
        &self,
        key: impl Into<String>,
        precondition: Precondition,
        final_value: Encoder,
    ) -> Result<Event> {
        self.write(Write::Delete {
            key: key.into(),
            precondition,
            final_value,
        })
        .await
    }

    /// The revision of the latest commit made through this store.
    pub fn current_revision(&self) -> Revision {
        self.inner.counters.revision.load(Ordering::Acquire)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            revision: self.current_revision(),
            commits: self.inner.counters.commits.load(Ordering::Relaxed),
            writes: self.inner.counters.writes.load(Ordering::Relaxed),
            watchers: self.inner.hub.lock().watchers.len(),
        }
    }

    /// The smallest `after` that [`Store::watch`] accepts: every event after it is retained.
    pub fn oldest_watchable_revision(&self) -> Revision {
        self.inner.hub.lock().history_base
    }

    /// Every event after revision `after` whose key starts with `prefix`, in revision order:
    /// first those still in the history, then live ones, with no gap or repeat between them.
    ///
    /// `after` below [`Store::oldest_watchable_revision`] fails with [`Error::Expired`]; the
    /// caller lists again and watches from the list's revision. `after` above the current
    /// revision is accepted: events up to it are skipped.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        self.inner.hub.subscribe(&self.inner.hub, prefix, after)
    }

    /// Stops accepting writes, commits everything already queued, ends every watch and waits
    /// for the writer thread to exit. Later writes fail with [`Error::Closed`].
    pub async fn shutdown(&self) {
        let _ = self.inner.requests.send(Request::Shutdown);
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: let the writer finish what is queued, and wait for it so the
        // backend (and its file lock) is released when the store is dropped.
        let _ = self.requests.send(Request::Shutdown);
        let handle = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// writer thread
// ---------------------------------------------------------------------------------------------

struct Writer {
    backend: Arc<dyn Backend>,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
    requests: mpsc::Receiver<Request>,
}

impl Writer {
    fn run(self) {
        // However the loop ends (even by a panic), watchers must learn that no more is coming.
        let _close_hub = CloseOnExit(&self.hub);
        let mut writes = Vec::with_capacity(MAX_BATCH);
        let mut replies = Vec::with_capacity(MAX_BATCH);
        let mut stopping = false;
        let mut previous_batch = 1;
        while !stopping {
            let Ok(first) = self.requests.recv() else {
                break;
            };
            let mut next = Some(first);
            let mut linger_until = None;
            while let Some(request) = next.take() {
                match request {
                    Request::Write(write, reply) => {
                        writes.push(write);
                        replies.push(reply);
                    }
                    Request::Shutdown => {
                        stopping = true;
                        break;
                    }
                }
                if writes.len() >= MAX_BATCH {
                    break;
                }
                next = self.requests.try_recv().ok();
                if next.is_none() && writes.len() < previous_batch {
                    // The writers answered by the last commit are likely about to send their
                    // next write; a short wait for them keeps batches full under steady
                    // concurrency. A lone writer (previous batch of 1) never waits.
                    let deadline = *linger_until.get_or_insert_with(|| Instant::now() + LINGER);
                    let left = deadline.saturating_duration_since(Instant::now());
                    next = self.requests.recv_timeout(left).ok();
                }
            }
            if !writes.is_empty() {
                previous_batch = writes.len();
                self.commit(&mut writes, &mut replies);
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn commit(&self, writes: &mut Vec<Write>, replies: &mut Vec<oneshot::Sender<Result<Event>>>) {
        let batch = std::mem::take(writes);
        let size = batch.len() as u64;
        let outcome = self.backend.commit(batch);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.counters.writes.fetch_add(size, Ordering::Relaxed);
        match outcome {
            Ok(outcomes) => {
                let mut events = Vec::with_capacity(outcomes.len());
                let mut answers = Vec::with_capacity(outcomes.len());
                for outcome in outcomes {
                    match outcome {
                        Ok(event) => {
                            let event = Arc::new(event);
                            answers.push(Ok(Event::clone(&event)));
                            events.push(event);
                        }
                        Err(error) => answers.push(Err(error)),
                    }
                }
                let mut to_wake = Vec::new();
                if let Some(last) = events.last() {
                    self.counters
                        .revision
                        .store(last.revision, Ordering::Release);
                    to_wake = self.hub.publish(events);
                }
                for (reply, answer) in replies.drain(..).zip(answers) {
                    // The waiter may have given up (its future was dropped); nothing to do then.
                    let _ = reply.send(answer);
                }
                // The events are already in every queue, which is all the ordering guarantee
                // needs; waking a hundred watchers is slow enough to come after the writers.
                for queue in to_wake {
                    queue.notify.notify_one();
                }
            }
            Err(error) => {
                tracing::error!(%error, "store commit failed");
                // A failed commit should change nothing, but if the engine's revision moved
                // anyway, events are missing from the history: no watch may go on as if whole.
                let known = self.counters.revision.load(Ordering::Acquire);
                if let Ok(actual) = self.backend.current_revision()
                    && actual != known
                {
                    tracing::error!(known, actual, "revision moved in a failed commit");
                    self.counters.revision.store(actual, Ordering::Release);
                    self.hub.restart_at(actual);
                }
                let message = error.to_string();
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(Error::Backend(message.clone())));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// history and fan-out
// ---------------------------------------------------------------------------------------------

struct CloseOnExit<'a>(&'a Hub);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Hub {
    state: Mutex<HubState>,
    history_capacity: usize,
    history_bytes: usize,
    watch_buffer: usize,
}

struct HubState {
    /// The latest events, oldest first, revisions contiguous.
    history: VecDeque<Arc<Event>>,
    /// Every event with a revision above this one is in `history`.
    history_base: Revision,
    /// Sum of [`retained_size`] over `history`.
    history_size: usize,
    watchers: Vec<Subscriber>,
    next_watcher_id: u64,
    closed: bool,
}

/// Roughly what keeping `event` in the history costs.
fn retained_size(event: &Event) -> usize {
    std::mem::size_of::<Event>()
        + event.key.len()
        + event.value.len()
        + event.previous.as_ref().map_or(0, Bytes::len)
}

struct Subscriber {
    id: u64,
    prefix: String,
    /// The watch's start. Usually every live event is newer, but a client may start from a
    /// revision it read from the backend before the writer published it.
    after: Revision,
    queue: Arc<WatchQueue>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `events` to the history and to every matching watcher's queue; returns the
    /// queues that got something, for the caller to wake (outside the hub lock).
    fn publish(&self, events: Vec<Arc<Event>>) -> Vec<Arc<WatchQueue>> {
        let mut state = self.lock();
        let HubState {
            history,
            history_base,
            history_size,
            watchers,
            ..
        } = &mut *state;
        for event in &events {
            *history_size += retained_size(event);
            history.push_back(event.clone());
        }
        while history.len() > self.history_capacity || *history_size > self.history_bytes {
            let Some(oldest) = history.pop_front() else {
                break;
            };
            *history_size -= retained_size(&oldest);
            *history_base = oldest.revision;
        }
        let oldest = *history_base;
        let mut to_wake = Vec::new();
        watchers.retain(|subscriber| {
            let pushed = subscriber
                .queue
                .push(subscriber, &events, self.watch_buffer, oldest);
            if pushed != Pushed::Nothing {
                to_wake.push(subscriber.queue.clone());
            }
            pushed != Pushed::CutOff
        });
        to_wake
    }

    fn subscribe(&self, hub: &Arc<Hub>, prefix: &str, after: Revision) -> Result<Watch> {
        let mut state = self.lock();
        if after < state.history_base {
            return Err(Error::Expired {
                requested: after,
                oldest: state.history_base,
            });
        }
        let start = state
            .history
            .partition_point(|event| event.revision <= after);
        let replay: VecDeque<Arc<Event>> = state
            .history
            .range(start..)
            .filter(|event| event.key.starts_with(prefix))
            .cloned()
            .collect();
        let queue = Arc::new(WatchQueue {
            state: Mutex::new(QueueState {
                replay_outstanding: replay.len(),
                events: replay,
                delivered: after,
                end: state.closed.then_some(End::Closed),
            }),
            notify: Notify::new(),
        });
        let id = state.next_watcher_id;
        state.next_watcher_id += 1;
        if !state.closed {
            state.watchers.push(Subscriber {
                id,
                prefix: prefix.to_owned(),
                after,
                queue: queue.clone(),
            });
        }
        Ok(Watch {
            hub: hub.clone(),
            id,
            queue,
        })
    }

    /// Forgets the history and expires every watcher: events up to `revision` cannot be
    /// replayed.
    fn restart_at(&self, revision: Revision) {
        let mut state = self.lock();
        state.history.clear();
        state.history_size = 0;
        state.history_base = revision;
        for subscriber in state.watchers.drain(..) {
            let requested = subscriber.queue.lock().delivered;
            subscriber.queue.finish(End::Expired {
                requested,
                oldest: revision,
            });
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.lock()
            .watchers
            .retain(|subscriber| subscriber.id != id);
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for subscriber in state.watchers.drain(..) {
            subscriber.queue.finish(End::Closed);
        }
    }
}

struct WatchQueue {
    state: Mutex<QueueState>,
    notify: Notify,
}

struct QueueState {
    events: VecDeque<Arc<Event>>,
    /// Replayed history events not yet taken; they do not count against the live buffer.
    replay_outstanding: usize,
    /// Revision of the last event handed to the watcher (or the watch's start).
    delivered: Revision,
    end: Option<End>,
}

/// What [`WatchQueue::push`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pushed {
    /// No event was for this watcher.
    Nothing,
    /// Events were queued.
    Queued,
    /// The queue overflowed (or had already ended): the watcher is cut off.
    CutOff,
}

#[derive(Clone, Copy)]
enum End {
    /// The store shut down: drain what is queued, then end.
    Closed,
    /// The watcher fell behind: report this once, then end.
    Expired {
        requested: Revision,
        oldest: Revision,
    },
    /// The expiry was reported.
    Reported,
}

impl WatchQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the events under `prefix`, without waking the watcher: the caller wakes every
    /// queue that was not left [`Pushed::Nothing`].
    fn push(
        &self,
        subscriber: &Subscriber,
        events: &[Arc<Event>],
        buffer: usize,
        oldest: Revision,
    ) -> Pushed {
        let mut matching = events
            .iter()
            .filter(|event| {
                event.revision > subscriber.after && event.key.starts_with(&subscriber.prefix)
            })
            .peekable();
        if matching.peek().is_none() {
            return Pushed::Nothing;
        }
        let mut state = self.lock();
        if state.end.is_some() {
            return Pushed::CutOff;
        }
        let limit = buffer + state.replay_outstanding;
        for event in matching {
            if state.events.len() >= limit {
                state.events = VecDeque::new();
                state.replay_outstanding = 0;
                state.end = Some(End::Expired {
                    requested: state.delivered,
                    oldest,
                });
                return Pushed::CutOff;
            }
            state.events.push_back(event.clone());
        }
        Pushed::Queued
    }

    fn finish(&self, end: End) {
        let mut state = self.lock();
        if state.end.is_none() {
            state.end = Some(end);
        }
        drop(state);
        self.notify.notify_one();
    }
}

/// A live watch; see [`Store::watch`]. Dropping it unsubscribes.
pub struct Watch {
    hub: Arc<Hub>,
    id: u64,
    queue: Arc<WatchQueue>,
}

impl Watch {
    /// The next event; `Some(Err(Expired))` once if this watcher fell too far behind; `None`
    /// when the watch has ended (after an expiry, or when the store shut down).
    pub async fn next(&mut self) -> Option<Result<Arc<Event>>> {
        loop {
            {
                let mut state = self.queue.lock();
                if let Some(event) = state.events.pop_front() {
                    state.replay_outstanding = state.replay_outstanding.saturating_sub(1);
                    state.delivered = event.revision;
                    return Some(Ok(event));
                }
                match state.end {
                    None => {}
                    Some(End::Expired { requested, oldest }) => {
                        state.end = Some(End::Reported);
                        return Some(Err(Error::Expired { requested, oldest }));
                    }
                    Some(End::Closed | End::Reported) => return None,
                }
            }
            // Only this watcher waits on its queue, and `notify_one` keeps a permit when nobody
            // is waiting, so a push between the check above and this await is not lost.
            self.queue.notify.notified().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Watch")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// An [`Encoder`] that stores `value` as is, whatever the current record and revision.
pub fn constant(value: impl Into<Bytes>) -> Encoder {
    let value = value.into();
    Box::new(move |_, _| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn put(store: &Store, key: &str) -> Event {
        store
            .update(key, Precondition::None, constant("v"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn without_history_only_the_latest_revision_is_watchable() {
        let store = Store::in_memory(StoreOptions {
            history_capacity: 0,
            ..StoreOptions::default()
        });
        put(&store, "/a").await;
        let last = put(&store, "/b").await;
        assert_eq!(store.oldest_watchable_revision(), last.revision);
        assert!(matches!(
            store.watch("", last.revision - 1),
            Err(Error::Expired { .. })
        ));
        let mut watch = store.watch("", last.revision).unwrap();
        let next = put(&store, "/c").await;
        assert_eq!(watch.next().await.unwrap().unwrap().revision, next.revision);
    }

    #[tokio::test]
    async fn history_is_bounded_by_bytes_too() {
        let value = Bytes::from(vec![b'x'; 1000]);
        let event_size = std::mem::size_of::<Event>() + "/k/0".len() + value.len();
        let store = Store::in_memory(StoreOptions {
            history_bytes: 3 * event_size,
            ..StoreOptions::default()
        });
        for index in 0..10 {
            store
                .create(format!("/k/{index}"), constant(value.clone()))
                .await
                .unwrap();
        }
        // Creates carry no previous value: exactly three fit.
        assert_eq!(store.oldest_watchable_revision(), 7);
        let mut watch = store.watch("", 7).unwrap();
        assert_eq!(watch.next().await.unwrap().unwrap().revision, 8);
    }

    /// Fails every commit, after applying it to `inner` if `applies`.
    struct FailingBackend {
        inner: MemoryBackend,
        applies: bool,
    }

    impl Backend for FailingBackend {
        fn current_revision(&self) -> Result<Revision> {
            self.inner.current_revision()
        }
        fn get(&self, key: &str) -> Result<Option<Record>> {
            self.inner.get(key)
        }
        fn range_matching(
            &self,
            prefix: &str,
            start_after: Option<&str>,
            limit: Option<usize>,
            filter: &mut dyn FnMut(&str, &[u8]) -> bool,
        ) -> Result<Page> {
            self.inner
                .range_matching(prefix, start_after, limit, filter)
        }
        fn commit(&self, writes: Vec<Write>) -> Result<Vec<Result<Event>>> {
            if self.applies {
                self.inner.commit(writes)?;
            }
            Err(Error::Backend("injected commit failure".to_owned()))
        }
    }

    #[tokio::test]
    async fn a_clean_commit_failure_fails_the_writes_and_nothing_else() {
        let backend = FailingBackend {
            inner: MemoryBackend::new(),
            applies: false,
        };
        let store = Store::new(Arc::new(backend), StoreOptions::default()).unwrap();
        let mut watch = store.watch("", 0).unwrap();
        let error = store.create("/a", constant("v")).await.unwrap_err();
        assert!(matches!(error, Error::Backend(message) if message.contains("injected")));
        assert_eq!(store.current_revision(), 0);
        assert_eq!(store.stats().watchers, 1);
        tokio::select! {
            biased;
            event = watch.next() => panic!("nothing was committed, got {event:?}"),
            () = std::future::ready(()) => {}
        }
    }

    #[tokio::test]
    async fn a_commit_that_failed_after_applying_expires_every_watch() {
        let backend = FailingBackend {
            inner: MemoryBackend::new(),
            applies: true,
        };
        let store = Store::new(Arc::new(backend), StoreOptions::default()).unwrap();
        let mut watch = store.watch("", 0).unwrap();
        assert!(store.create("/a", constant("v")).await.is_err());
        // The engine moved to revision 1 without an event for it: watchers must re-list.
        assert_eq!(store.current_revision(), 1);
        assert_eq!(store.oldest_watchable_revision(), 1);
        assert!(matches!(
            watch.next().await,
            Some(Err(Error::Expired {
                requested: 0,
                oldest: 1
            }))
        ));
        assert!(watch.next().await.is_none());
        assert!(store.watch("", 0).is_err());
        assert!(store.watch("", 1).is_ok());
    }

    #[tokio::test]
    async fn stats_count_commits_writes_and_watchers() {
        let store = Store::in_memory(StoreOptions::default());
        let watch = store.watch("", 0).unwrap();
        put(&store, "/a").await;
        assert!(store.create("/a", constant("again")).await.is_err());
        let stats = store.stats();
        assert_eq!(stats.revision, 1);
        assert_eq!(stats.commits, 2);
        assert_eq!(stats.writes, 2);
        assert_eq!(stats.watchers, 1);
        drop(watch);
        assert_eq!(store.stats().watchers, 0);
    }

    #[tokio::test]
    async fn an_abandoned_next_loses_no_event() {
        let store = Store::in_memory(StoreOptions::default());
        let mut watch = store.watch("", 0).unwrap();
        tokio::select! {
            biased;
            event = watch.next() => panic!("nothing was written yet, got {event:?}"),
            () = std::future::ready(()) => {}
        }
        let written = put(&store, "/a").await;
        assert_eq!(
            watch.next().await.unwrap().unwrap().revision,
            written.revision
        );
    }

    #[tokio::test]
    async fn dropping_the_last_store_handle_ends_watches() {
        let store = Store::in_memory(StoreOptions::default());
        let mut watch = store.watch("", 0).unwrap();
        put(&store, "/a").await;
        drop(store);
        assert_eq!(watch.next().await.unwrap().unwrap().revision, 1);
        assert!(watch.next().await.is_none());
    }

    #[tokio::test]
    async fn replayed_history_does_not_count_against_the_live_buffer() {
        let store = Store::in_memory(StoreOptions {
            watch_buffer: 2,
            ..StoreOptions::default()
        });
        for index in 0..10 {
            put(&store, &format!("/old/{index}")).await;
        }
        let mut watch = store.watch("", 0).unwrap();
        put(&store, "/live/0").await;
        put(&store, "/live/1").await;
        for revision in 1..=12 {
            assert_eq!(watch.next().await.unwrap().unwrap().revision, revision);
        }
        // Drained, the queue is back to the plain live buffer: two more fit, a third does not.
        for key in ["/live/2", "/live/3", "/live/4"] {
            put(&store, key).await;
        }
        assert!(matches!(
            watch.next().await,
            Some(Err(Error::Expired { requested: 12, .. }))
        ));
    }

    #[tokio::test]
    async fn a_full_watcher_is_cut_off_and_unsubscribed() {
        let store = Store::in_memory(StoreOptions {
            watch_buffer: 2,
            ..StoreOptions::default()
        });
        let mut watch = store.watch("", 0).unwrap();
        for key in ["/a", "/b", "/c"] {
            put(&store, key).await;
        }
        assert_eq!(store.stats().watchers, 0);
        assert!(matches!(
            watch.next().await,
            Some(Err(Error::Expired { requested: 0, .. }))
        ));
        assert!(watch.next().await.is_none());
    }
}

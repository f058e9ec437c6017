//! Storage engines: the [`Backend`] trait and its two implementations.
//!
//! A backend is deliberately dumb. It keeps, per key, the value with its `create_revision` and
//! `mod_revision`, plus the one global revision, and it offers two things:
//!
//! * consistent reads ([`Backend::get`], [`Backend::range`]) that report the revision they saw;
//! * [`Backend::commit`], which applies a whole batch of writes in ONE durable commit. Each write
//!   is checked and applied on its own (its precondition sees the effects of the writes before
//!   it in the batch); a write whose precondition fails is reported as failed and takes no
//!   revision, while the rest of the batch still commits. Successful writes take consecutive
//!   revisions, so the revision sequence never has holes.
//!
//! The precondition and encoder logic is shared by both engines ([`apply`]) so they cannot drift
//! apart; the engines differ only in where the bytes live. A new engine should use it too.
//!
//! * [`RedbBackend`]: one redb file, two tables: `records` (key → create revision, mod revision,
//!   value) and `meta` (the global revision), both updated in the same transaction. A commit is
//!   made durable by one append + `fdatasync` of a write-ahead log beside the file and visible
//!   through an in-memory overlay that reads merge over redb; a background applier thread
//!   writes the overlay to redb in one durable transaction per `checkpoint_interval` (see
//!   [`RedbOptions`]); opening replays the log entries newer than redb's last durable commit.
//!   Without the log ([`RedbBackend::open_fsync_per_commit`]) every commit is a
//!   `Durability::Immediate` redb commit.
//! * [`MemoryBackend`]: a `BTreeMap` behind a read-write lock, for tests and ephemeral clusters.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use crate::overlay::{Next, Overlay, Pending, merge};
use crate::wal::{Log, LogBatch, LogEntry};
use crate::{
    Encoder, Error, Event, EventKind, Page, Precondition, Record, Result, Revision, Write,
};

/// A storage engine under a [`Store`](crate::Store).
///
/// Only the store's single writer thread calls [`commit`](Backend::commit); reads may come from
/// any thread at any time and must not wait for a commit in progress longer than a short lock.
pub trait Backend: Send + Sync {
    /// The revision of the latest commit (0 for an empty store).
    fn current_revision(&self) -> Result<Revision>;

    /// One key, as of the latest commit.
    fn get(&self, key: &str) -> Result<Option<Record>>;

    /// Keys starting with `prefix`, in key order, strictly after `start_after` if given, at most
    /// `limit` of them, all read from one snapshot whose revision the page reports.
    fn range(&self, prefix: &str, start_after: Option<&str>, limit: Option<usize>) -> Result<Page> {
        self.range_matching(prefix, start_after, limit, &mut |_, _| true)
    }

    /// Like [`range`](Backend::range), but only records for which `filter(key, value)` holds
    /// are returned and count against `limit`, all from one snapshot. `more` says the scan
    /// stopped at the limit with keys left under the prefix; they may not match, so the next
    /// page can be empty. Continue from the key of the page's last record.
    fn range_matching(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<Page>;

    /// Applies `writes` in order in one durable commit and reports each write's outcome in the
    /// same order. The outer error means the commit as a whole failed and nothing was applied.
    fn commit(&self, writes: Vec<Write>) -> Result<Vec<Result<Event>>>;
}

impl Write {
    /// The key the write targets.
    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Delete { key, .. } => key,
        }
    }
}

/// What a successful write does to its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Store this record under its key.
    Put(Record),
    /// Remove the key.
    Delete,
}

/// Checks `write`'s precondition against the key's `current` record and, if it holds, runs the
/// encoder with the `revision` the write will get. Every engine applies writes through this, so
/// they agree on precondition semantics; the engine then performs the [`Mutation`] and, only on
/// success, advances its revision.
pub fn apply(
    write: Write,
    current: Option<Record>,
    revision: Revision,
) -> Result<(Mutation, Event)> {
    match write {
        Write::Put {
            key,
            precondition,
            value,
        } => {
            check_precondition(&key, precondition, current.as_ref())?;
            let value = encode(value, current.as_ref(), revision)?;
            let (kind, create_revision, previous) = match current {
                Some(record) => (
                    EventKind::Updated,
                    record.create_revision,
                    Some(record.value),
                ),
                None => (EventKind::Created, revision, None),
            };
            let record = Record {
                key: key.clone(),
                value: value.clone(),
                create_revision,
                mod_revision: revision,
            };
            let event = Event {
                kind,
                key,
                revision,
                value,
                previous,
            };
            Ok((Mutation::Put(record), event))
        }
        Write::Delete {
            key,
            precondition,
            final_value,
        } => {
            check_precondition(&key, precondition, current.as_ref())?;
            let Some(current) = current else {
                return Err(Error::NotFound(key));
            };
            let value = encode(final_value, Some(&current), revision)?;
            let event = Event {
                kind: EventKind::Deleted,
                key,
                revision,
                value,
                previous: Some(current.value),
            };
            Ok((Mutation::Delete, event))
        }
    }
}

fn check_precondition(
    key: &str,
    precondition: Precondition,
    current: Option<&Record>,
) -> Result<()> {
    match (precondition, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::MustNotExist, None) => Ok(()),
        (Precondition::MustNotExist, Some(_)) => Err(Error::AlreadyExists(key.to_owned())),
        (Precondition::MustExist | Precondition::ModRevision(_), None) => {
            Err(Error::NotFound(key.to_owned()))
        }
        (Precondition::MustExist, Some(_)) => Ok(()),
        (Precondition::ModRevision(expected), Some(record)) => {
            if record.mod_revision == expected {
                Ok(())
            } else {
                Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: record.mod_revision,
                })
            }
        }
    }
}

/// Runs caller code on the writer thread; a panic in it fails that one write instead of taking
/// the writer thread (and so the whole store) down.
fn encode(encoder: Encoder, current: Option<&Record>, revision: Revision) -> Result<Bytes> {
    catch_unwind(AssertUnwindSafe(|| encoder(current, revision)))
        .map_err(|_| Error::Backend("the write's encoder panicked".to_owned()))
}

fn backend_error(error: impl std::fmt::Display) -> Error {
    Error::Backend(error.to_string())
}

// ---------------------------------------------------------------------------------------------
// redb
// ---------------------------------------------------------------------------------------------

/// key → `create_revision (u64 LE) ‖ mod_revision (u64 LE) ‖ value`.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Holds [`REVISION_KEY`], the global revision.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";
const RECORD_HEADER_LEN: usize = 16;

fn encode_record_into(record: &Record, stored: &mut Vec<u8>) {
    stored.clear();
    stored.extend_from_slice(&record.create_revision.to_le_bytes());
    stored.extend_from_slice(&record.mod_revision.to_le_bytes());
    stored.extend_from_slice(&record.value);
}

fn decode_record(key: &str, stored: &[u8]) -> Result<Record> {
    let corrupt = || Error::Backend(format!("stored record for {key} is truncated"));
    let create = stored.get(0..8).ok_or_else(corrupt)?;
    let modified = stored.get(8..16).ok_or_else(corrupt)?;
    let to_revision = |bytes: &[u8]| -> Result<Revision> {
        Ok(Revision::from_le_bytes(
            bytes.try_into().map_err(|_| corrupt())?,
        ))
    };
    Ok(Record {
        key: key.to_owned(),
        create_revision: to_revision(create)?,
        mod_revision: to_revision(modified)?,
        value: Bytes::copy_from_slice(&stored[RECORD_HEADER_LEN..]),
    })
}

/// How a [`RedbBackend`] makes its commits durable.
#[derive(Clone, Debug)]
pub struct RedbOptions {
    /// Make each batch durable with one append + `fdatasync` of a write-ahead log and visible
    /// through the in-memory overlay; a background thread applies the overlay to redb in one
    /// durable commit every `checkpoint_interval`. Without it, every batch is a durable
    /// (fsynced) redb commit.
    pub write_ahead_log: bool,
    /// How long acknowledged writes may wait in the overlay (and the log) before the applier
    /// writes them to redb. Longer means fewer, larger redb commits, but a larger overlay and
    /// a longer log to keep and to replay after a crash.
    pub checkpoint_interval: Duration,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            write_ahead_log: true,
            checkpoint_interval: Duration::from_millis(100),
        }
    }
}

/// How often a [`RedbBackend`] has synced, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Write-ahead log appends (one `fdatasync` each).
    pub log_syncs: u64,
    /// Durable redb commits: the applier's, or every commit without a log.
    pub durable_commits: u64,
}

/// Above this many keys or value bytes waiting in the overlay, the writer wakes the applier
/// without waiting for the next `checkpoint_interval`.
const OVERLAY_SOFT_KEYS: usize = 16 * 1024;
const OVERLAY_SOFT_BYTES: usize = 32 << 20;
/// Above this, the writer waits for the applier before acknowledging more: the overlay's
/// memory stays bounded even if redb falls behind.
const OVERLAY_HARD_KEYS: usize = 128 * 1024;
const OVERLAY_HARD_BYTES: usize = 256 << 20;

/// The persistent engine: one redb database file, plus a write-ahead log directory beside it
/// (`<file>-wal/`, see [`RedbOptions`]).
///
/// With the log, a commit is: precondition checks against the overlay over redb, one log
/// append + `fdatasync` (durable), a new [`Overlay`] published to readers (visible), done.
/// redb is written only by a background applier thread, every `checkpoint_interval` (or
/// sooner when the overlay grows), in one durable transaction holding every change since its
/// last one, after which the writer prunes those changes from the overlay and deletes the log
/// segments they covered.
pub struct RedbBackend {
    shared: Arc<Shared>,
    /// Only the writer thread commits, so this lock is never contended; it just lets
    /// [`Backend::commit`] take `&self`.
    committer: Mutex<Committer>,
    applier: Option<JoinHandle<()>>,
}

/// What the writer, the applier thread and readers share.
struct Shared {
    database: Database,
    /// What readers see on top of redb. Without a log it is always empty, and only carries the
    /// revision.
    overlay: ArcSwap<Overlay>,
    /// The highest revision redb holds in a durable commit.
    applied: AtomicU64,
    /// Serialises redb write transactions between the applier and `checkpoint`.
    apply_lock: Mutex<()>,
    control: Mutex<ApplierControl>,
    /// Wakes the applier.
    wake: Condvar,
    /// Tells a waiting writer that `applied` moved (or that applying failed).
    applied_changed: Condvar,
    log_syncs: AtomicU64,
    durable_commits: AtomicU64,
}

#[derive(Default)]
struct ApplierControl {
    requested: bool,
    stop: bool,
    /// Set when applying to redb failed: redb and the overlay may disagree, so writes are
    /// refused until the store is reopened (which replays the log).
    error: Option<String>,
}

struct Committer {
    /// Reused for every record redb stores, so an insert allocates nothing of ours.
    record: Vec<u8>,
    log: Option<LogState>,
}

struct LogState {
    log: Log,
    batch: LogBatch,
    /// Segments wholly at or below this revision are deleted.
    removed_through: Revision,
    /// Set when an append failed: the log may hold a partial frame, so nothing more is written
    /// until the store is reopened.
    broken: Option<String>,
}

impl RedbBackend {
    /// Opens the database at `path` with the default [`RedbOptions`] (write-ahead log on),
    /// creating it (and its tables) if it does not exist. An existing file resumes at its stored
    /// revision, after replaying any log entries a crash left newer than redb's last durable
    /// commit.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, RedbOptions::default())
    }

    /// Opens the database at `path` without a write-ahead log: one durable redb commit per
    /// batch. A log left by an earlier open is still replayed.
    pub fn open_fsync_per_commit(path: &Path) -> Result<Self> {
        Self::open_with(
            path,
            RedbOptions {
                write_ahead_log: false,
                ..RedbOptions::default()
            },
        )
    }

    /// Opens the database at `path` with `options`. A zero `checkpoint_interval` means what
    /// no log means: every batch a durable redb commit.
    pub fn open_with(path: &Path, options: RedbOptions) -> Result<Self> {
        let database = Database::create(path).map_err(backend_error)?;
        let transaction = database.begin_write().map_err(backend_error)?;
        {
            // Creating the tables up front lets read transactions open them unconditionally.
            transaction.open_table(RECORDS).map_err(backend_error)?;
            let mut meta = transaction.open_table(META).map_err(backend_error)?;
            if meta.get(REVISION_KEY).map_err(backend_error)?.is_none() {
                meta.insert(REVISION_KEY, 0).map_err(backend_error)?;
            }
        }
        transaction.commit().map_err(backend_error)?;

        let log_directory = log_directory(path);
        let replay = Log::recover(&log_directory, read_revision(&database)?)?;
        if !replay.is_empty() {
            replay_into(&database, replay)?;
        }
        // Everything the log held is now in a durable redb commit.
        let revision = read_revision(&database)?;
        let through_log = options.write_ahead_log && !options.checkpoint_interval.is_zero();
        let log = if through_log {
            Some(LogState {
                log: Log::start_fresh(&log_directory)?,
                batch: LogBatch::default(),
                removed_through: revision,
                broken: None,
            })
        } else {
            Log::start_fresh(&log_directory)?;
            let _ = std::fs::remove_dir(&log_directory);
            None
        };
        let shared = Arc::new(Shared {
            database,
            overlay: ArcSwap::from_pointee(Overlay::empty(revision)),
            applied: AtomicU64::new(revision),
            apply_lock: Mutex::new(()),
            control: Mutex::new(ApplierControl::default()),
            wake: Condvar::new(),
            applied_changed: Condvar::new(),
            log_syncs: AtomicU64::new(0),
            durable_commits: AtomicU64::new(0),
        });
        let applier = if through_log {
            let shared = Arc::clone(&shared);
            let interval = options.checkpoint_interval;
            Some(
                std::thread::Builder::new()
                    .name("hollow-store-apply".to_owned())
                    .spawn(move || shared.run_applier(interval))
                    .map_err(|error| Error::Backend(format!("start the redb applier: {error}")))?,
            )
        } else {
            None
        };
        Ok(Self {
            shared,
            committer: Mutex::new(Committer {
                record: Vec::new(),
                log,
            }),
            applier,
        })
    }

    /// How often this backend has synced since it was opened.
    pub fn sync_stats(&self) -> SyncStats {
        SyncStats {
            log_syncs: self.shared.log_syncs.load(Ordering::Relaxed),
            durable_commits: self.shared.durable_commits.load(Ordering::Relaxed),
        }
    }

    /// Applies every acknowledged write to redb in one durable commit now, and deletes the
    /// log segments that made them durable before. The active segment stays (it is
    /// preallocated) and is skipped on replay. The applier does the same periodically; this
    /// is for shutdown and tests.
    pub fn checkpoint(&self) -> Result<()> {
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match committer.log.as_mut() {
            Some(log) => {
                self.shared.apply_pending()?;
                log.remove_segments(self.shared.applied.load(Ordering::Acquire))
            }
            None => {
                let mut transaction = self.shared.database.begin_write().map_err(backend_error)?;
                transaction
                    .set_durability(Durability::Immediate)
                    .map_err(backend_error)?;
                transaction.commit().map_err(backend_error)?;
                self.shared.durable_commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// A consistent read view: an overlay and a redb snapshot that completes it (see
    /// [`Overlay::pairs_with`]). The two are taken in that order, so redb can only be ahead of
    /// the overlay if the applier committed in between; then the overlay is taken again.
    fn view(&self) -> Result<(Arc<Overlay>, redb::ReadTransaction)> {
        loop {
            let overlay = self.shared.overlay.load_full();
            let transaction = self.shared.database.begin_read().map_err(backend_error)?;
            let redb_revision = {
                let meta = transaction.open_table(META).map_err(backend_error)?;
                meta.get(REVISION_KEY)
                    .map_err(backend_error)?
                    .map(|guard| guard.value())
                    .unwrap_or(0)
            };
            if overlay.pairs_with(redb_revision) {
                return Ok((overlay, transaction));
            }
            std::thread::yield_now();
        }
    }

    /// Without a log: the batch in one durable redb commit, as before the log existed.
    fn commit_to_redb(
        &self,
        writes: Vec<Write>,
        stored: &mut Vec<u8>,
    ) -> Result<Vec<Result<Event>>> {
        let mut transaction = self.shared.database.begin_write().map_err(backend_error)?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(backend_error)?;
        let (outcomes, start, end) = match Self::apply_batch(&transaction, writes, stored) {
            Ok(applied) => applied,
            Err(error) => {
                // The transaction is dropped, which rolls every write of the batch back.
                drop(transaction);
                return Err(error);
            }
        };
        if start == end {
            // Nothing changed: skip the fsync.
            transaction.abort().map_err(backend_error)?;
            return Ok(outcomes);
        }
        transaction.commit().map_err(backend_error)?;
        self.shared.durable_commits.fetch_add(1, Ordering::Relaxed);
        self.shared.applied.store(end, Ordering::Release);
        self.shared.overlay.store(Arc::new(Overlay::empty(end)));
        Ok(outcomes)
    }

    /// With the log: preconditions against the overlay over redb, one log append, a new
    /// overlay. redb is not written here.
    fn commit_through_log(
        &self,
        log: &mut LogState,
        writes: Vec<Write>,
    ) -> Result<Vec<Result<Event>>> {
        if let Some(reason) = &log.broken {
            return Err(refused(reason));
        }
        if let Some(reason) = self.shared.control().error.clone() {
            log.broken = Some(reason.clone());
            return Err(refused(&reason));
        }
        let applied = self.shared.applied.load(Ordering::Acquire);
        let mut overlay = Overlay::clone(&self.shared.overlay.load());
        overlay.prune(applied);
        let start = overlay.revision;
        let mut revision = start;
        let mut outcomes = Vec::with_capacity(writes.len());
        log.batch.clear();
        {
            // Keys the overlay does not hold are unchanged since redb's last apply, which this
            // snapshot (taken after `applied` was read) includes.
            let transaction = self.shared.database.begin_read().map_err(backend_error)?;
            let records = transaction.open_table(RECORDS).map_err(backend_error)?;
            for write in writes {
                let current = match overlay.changes.get(write.key()) {
                    Some(pending) => pending.record(write.key()),
                    None => match records.get(write.key()).map_err(backend_error)? {
                        Some(stored) => Some(decode_record(write.key(), stored.value())?),
                        None => None,
                    },
                };
                match apply(write, current, revision + 1) {
                    Ok((mutation, event)) => {
                        let pending = match mutation {
                            Mutation::Put(record) => {
                                log.batch.put(
                                    record.mod_revision,
                                    record.create_revision,
                                    &record.key,
                                    &record.value,
                                );
                                Pending {
                                    create_revision: record.create_revision,
                                    mod_revision: record.mod_revision,
                                    value: Some(record.value),
                                }
                            }
                            Mutation::Delete => {
                                log.batch.delete(event.revision, &event.key);
                                Pending {
                                    create_revision: 0,
                                    mod_revision: event.revision,
                                    value: None,
                                }
                            }
                        };
                        overlay.insert(&event.key, pending);
                        revision += 1;
                        outcomes.push(Ok(event));
                    }
                    Err(error) => outcomes.push(Err(error)),
                }
            }
        }
        if revision == start {
            return Ok(outcomes);
        }
        // The log append is what makes the batch durable; publishing the overlay makes it
        // visible, before the writers are answered, so a read after an acknowledgement always
        // sees the write.
        if let Err(error) = log.log.append(&mut log.batch, start + 1) {
            log.broken = Some(error.to_string());
            return Err(error);
        }
        self.shared.log_syncs.fetch_add(1, Ordering::Relaxed);
        overlay.revision = revision;
        let (keys, bytes) = (overlay.changes.len(), overlay.value_bytes);
        self.shared.overlay.store(Arc::new(overlay));
        if applied > log.removed_through
            && let Err(error) = log.remove_segments(applied)
        {
            tracing::warn!(%error, "could not remove old write-ahead log segments");
        }
        if keys > OVERLAY_HARD_KEYS || bytes > OVERLAY_HARD_BYTES {
            self.shared.wait_until_applied(revision)?;
        } else if keys > OVERLAY_SOFT_KEYS || bytes > OVERLAY_SOFT_BYTES {
            self.shared.request_apply();
        }
        Ok(outcomes)
    }

    /// Applies the batch inside `transaction`; returns the outcomes and the revisions before
    /// and after the batch.
    fn apply_batch(
        transaction: &WriteTransaction,
        writes: Vec<Write>,
        stored: &mut Vec<u8>,
    ) -> Result<(Vec<Result<Event>>, Revision, Revision)> {
        let mut meta = transaction.open_table(META).map_err(backend_error)?;
        let mut records = transaction.open_table(RECORDS).map_err(backend_error)?;
        let start = meta
            .get(REVISION_KEY)
            .map_err(backend_error)?
            .map(|guard| guard.value())
            .unwrap_or(0);
        let mut revision = start;
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let current = match records.get(write.key()).map_err(backend_error)? {
                Some(stored) => Some(decode_record(write.key(), stored.value())?),
                None => None,
            };
            match apply(write, current, revision + 1) {
                Ok((mutation, event)) => {
                    match mutation {
                        Mutation::Put(record) => {
                            encode_record_into(&record, stored);
                            records
                                .insert(event.key.as_str(), stored.as_slice())
                                .map_err(backend_error)?;
                        }
                        Mutation::Delete => {
                            records.remove(event.key.as_str()).map_err(backend_error)?;
                        }
                    }
                    revision += 1;
                    outcomes.push(Ok(event));
                }
                Err(error) => outcomes.push(Err(error)),
            }
        }
        if revision != start {
            meta.insert(REVISION_KEY, revision).map_err(backend_error)?;
        }
        Ok((outcomes, start, revision))
    }
}

fn refused(reason: &str) -> Error {
    Error::Backend(format!(
        "writes are refused until the store is reopened: {reason}"
    ))
}

impl LogState {
    fn remove_segments(&mut self, applied: Revision) -> Result<()> {
        self.log.remove_segments_through(applied)?;
        self.removed_through = applied;
        Ok(())
    }
}

impl Shared {
    fn control(&self) -> std::sync::MutexGuard<'_, ApplierControl> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request_apply(&self) {
        self.control().requested = true;
        self.wake.notify_one();
    }

    /// Blocks the writer until redb holds `revision`: the overlay is at its bound.
    fn wait_until_applied(&self, revision: Revision) -> Result<()> {
        let mut control = self.control();
        control.requested = true;
        self.wake.notify_one();
        loop {
            if let Some(reason) = &control.error {
                return Err(refused(reason));
            }
            if self.applied.load(Ordering::Acquire) >= revision {
                return Ok(());
            }
            control = self
                .applied_changed
                .wait(control)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The applier thread: applies the overlay every `interval`, or when asked, until stopped
    /// (then once more, so a clean shutdown leaves redb complete).
    fn run_applier(&self, interval: Duration) {
        let mut control = self.control();
        loop {
            if !control.stop && !control.requested {
                control = self
                    .wake
                    .wait_timeout(control, interval)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            control.requested = false;
            let stop = control.stop;
            drop(control);
            let outcome = self.apply_pending();
            control = self.control();
            if let Err(error) = outcome {
                tracing::error!(%error, "applying the write-ahead log to redb failed; writes are refused until the store is reopened");
                control.error = Some(error.to_string());
                self.applied_changed.notify_all();
                return;
            }
            if stop {
                return;
            }
        }
    }

    /// Writes every change the current overlay holds beyond `applied` to redb in one durable
    /// commit. Returns whether there was anything to write.
    fn apply_pending(&self) -> Result<bool> {
        let _only_one = self
            .apply_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let overlay = self.overlay.load_full();
        let applied = self.applied.load(Ordering::Acquire);
        if overlay.revision <= applied {
            return Ok(false);
        }
        let mut transaction = self.database.begin_write().map_err(backend_error)?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(backend_error)?;
        {
            let mut records = transaction.open_table(RECORDS).map_err(backend_error)?;
            let mut meta = transaction.open_table(META).map_err(backend_error)?;
            let mut stored = Vec::new();
            for (key, pending) in overlay.changes.iter() {
                if pending.mod_revision <= applied {
                    continue;
                }
                match &pending.value {
                    Some(value) => {
                        stored.clear();
                        stored.extend_from_slice(&pending.create_revision.to_le_bytes());
                        stored.extend_from_slice(&pending.mod_revision.to_le_bytes());
                        stored.extend_from_slice(value);
                        records
                            .insert(&**key, stored.as_slice())
                            .map_err(backend_error)?;
                    }
                    None => {
                        records.remove(&**key).map_err(backend_error)?;
                    }
                }
            }
            meta.insert(REVISION_KEY, overlay.revision)
                .map_err(backend_error)?;
        }
        transaction.commit().map_err(backend_error)?;
        self.durable_commits.fetch_add(1, Ordering::Relaxed);
        self.applied.store(overlay.revision, Ordering::Release);
        let _control = self.control();
        self.applied_changed.notify_all();
        Ok(true)
    }
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        if let Some(applier) = self.applier.take() {
            self.shared.control().stop = true;
            self.shared.wake.notify_one();
            let _ = applier.join();
        }
        let committer = self
            .committer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(log) = committer.log.as_mut() else {
            return;
        };
        if log.broken.is_some() || self.shared.control().error.is_some() {
            // The log holds what redb may not: keep it for the next open to replay.
            return;
        }
        // The applier's last round applied everything; a clean shutdown leaves redb durable
        // and no log to replay.
        let revision = self.shared.overlay.load().revision;
        match self.shared.apply_pending() {
            Ok(_) if self.shared.applied.load(Ordering::Acquire) >= revision => {
                if let Err(error) = log.log.remove_covered_segments(true) {
                    tracing::warn!(%error, "could not remove the write-ahead log after shutdown");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, "final apply to redb failed; the log will be replayed")
            }
        }
    }
}

/// `<file>-wal`, beside the database file.
fn log_directory(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn read_revision(database: &Database) -> Result<Revision> {
    let transaction = database.begin_read().map_err(backend_error)?;
    let meta = transaction.open_table(META).map_err(backend_error)?;
    Ok(meta
        .get(REVISION_KEY)
        .map_err(backend_error)?
        .map(|guard| guard.value())
        .unwrap_or(0))
}

/// Applies log entries a crash left ahead of redb, in one durable commit.
fn replay_into(database: &Database, entries: Vec<LogEntry>) -> Result<()> {
    let mut transaction = database.begin_write().map_err(backend_error)?;
    transaction
        .set_durability(Durability::Immediate)
        .map_err(backend_error)?;
    {
        let mut records = transaction.open_table(RECORDS).map_err(backend_error)?;
        let mut meta = transaction.open_table(META).map_err(backend_error)?;
        let mut stored = Vec::new();
        let mut last = None;
        for entry in &entries {
            match &entry.value {
                Some(value) => {
                    stored.clear();
                    stored.extend_from_slice(&entry.create_revision.to_le_bytes());
                    stored.extend_from_slice(&entry.revision.to_le_bytes());
                    stored.extend_from_slice(value);
                    records
                        .insert(entry.key.as_str(), stored.as_slice())
                        .map_err(backend_error)?;
                }
                None => {
                    records.remove(entry.key.as_str()).map_err(backend_error)?;
                }
            }
            last = Some(entry.revision);
        }
        if let Some(last) = last {
            meta.insert(REVISION_KEY, last).map_err(backend_error)?;
        }
    }
    transaction.commit().map_err(backend_error)?;
    tracing::info!(
        entries = entries.len(),
        "replayed the write-ahead log into redb"
    );
    Ok(())
}

impl Backend for RedbBackend {
    fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.overlay.load().revision)
    }

    fn get(&self, key: &str) -> Result<Option<Record>> {
        let (overlay, transaction) = self.view()?;
        if let Some(pending) = overlay.changes.get(key) {
            return Ok(pending.record(key));
        }
        let records = transaction.open_table(RECORDS).map_err(backend_error)?;
        match records.get(key).map_err(backend_error)? {
            Some(stored) => Ok(Some(decode_record(key, stored.value())?)),
            None => Ok(None),
        }
    }

    fn range_matching(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<Page> {
        let (overlay, transaction) = self.view()?;
        let records = transaction.open_table(RECORDS).map_err(backend_error)?;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            records: Vec::new(),
            revision: overlay.revision,
            more: false,
        };
        // A row redb failed to read ends the scan with its error.
        let mut failure = None;
        let rows = records
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(backend_error)?
            .map_while(|row| match row {
                Ok(row) => Some(row),
                Err(error) => {
                    failure = Some(backend_error(error));
                    None
                }
            })
            .take_while(|(key, _)| key.value().starts_with(prefix));
        for next in merge(overlay.range(prefix, start_after), rows, |(key, _)| {
            key.value()
        }) {
            let (key, value, record) = match &next {
                Next::Overlay(_, Pending { value: None, .. }) => continue,
                Next::Overlay(
                    key,
                    pending @ Pending {
                        value: Some(value), ..
                    },
                ) => (*key, &value[..], Err(*pending)),
                Next::Redb((key, stored)) => {
                    let stored = stored.value();
                    (
                        key.value(),
                        stored.get(RECORD_HEADER_LEN..).unwrap_or_default(),
                        Ok(stored),
                    )
                }
            };
            if page.records.len() == limit {
                page.more = true;
                break;
            }
            if filter(key, value) {
                page.records.push(match record {
                    Ok(stored) => decode_record(key, stored)?,
                    Err(pending) => pending.record(key).expect("not a tombstone"),
                });
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(page),
        }
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Vec<Result<Event>>> {
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Committer { record, log } = &mut *committer;
        match log.as_mut() {
            Some(log) => self.commit_through_log(log, writes),
            None => self.commit_to_redb(writes, record),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------------

/// The ephemeral engine: everything in a `BTreeMap`, lost when the process exits.
#[derive(Default)]
pub struct MemoryBackend {
    state: RwLock<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    revision: Revision,
    records: BTreeMap<String, Record>,
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryBackend {
    fn current_revision(&self) -> Result<Revision> {
        Ok(self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revision)
    }

    fn get(&self, key: &str) -> Result<Option<Record>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(state.records.get(key).cloned())
    }

    fn range_matching(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        filter: &mut dyn FnMut(&str, &[u8]) -> bool,
    ) -> Result<Page> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            records: Vec::new(),
            revision: state.revision,
            more: false,
        };
        for (key, record) in state
            .records
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            if page.records.len() == limit {
                page.more = true;
                break;
            }
            if filter(key, &record.value) {
                page.records.push(record.clone());
            }
        }
        Ok(page)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Vec<Result<Event>>> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let current = state.records.get(write.key()).cloned();
            let revision = state.revision + 1;
            match apply(write, current, revision) {
                Ok((mutation, event)) => {
                    match mutation {
                        Mutation::Put(record) => {
                            state.records.insert(event.key.clone(), record);
                        }
                        Mutation::Delete => {
                            state.records.remove(&event.key);
                        }
                    }
                    state.revision = revision;
                    outcomes.push(Ok(event));
                }
                Err(error) => outcomes.push(Err(error)),
            }
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, precondition: Precondition, value: &'static str) -> Write {
        Write::Put {
            key: key.to_owned(),
            precondition,
            value: Box::new(move |_, _| Bytes::from_static(value.as_bytes())),
        }
    }

    fn exercise(backend: &dyn Backend) {
        let outcomes = backend
            .commit(vec![
                put("a", Precondition::MustNotExist, "1"),
                put("a", Precondition::MustNotExist, "again"),
                put("a", Precondition::ModRevision(1), "2"),
                put("b", Precondition::MustExist, "missing"),
                put("b", Precondition::None, "3"),
            ])
            .unwrap();
        let revisions: Vec<_> = outcomes
            .iter()
            .map(|outcome| outcome.as_ref().map(|event| event.revision).ok())
            .collect();
        // Failed writes take no revision; later writes in the batch see earlier ones.
        assert_eq!(revisions, vec![Some(1), None, Some(2), None, Some(3)]);
        assert!(matches!(outcomes[1], Err(Error::AlreadyExists(_))));
        assert!(matches!(outcomes[3], Err(Error::NotFound(_))));
        assert_eq!(backend.current_revision().unwrap(), 3);
        let a = backend.get("a").unwrap().unwrap();
        assert_eq!((a.create_revision, a.mod_revision), (1, 2));
        assert_eq!(a.value, Bytes::from_static(b"2"));

        // A batch where every write fails changes nothing.
        let outcomes = backend
            .commit(vec![put("a", Precondition::MustNotExist, "x")])
            .unwrap();
        assert!(outcomes[0].is_err());
        assert_eq!(backend.current_revision().unwrap(), 3);

        let page = backend.range("", None, None).unwrap();
        assert_eq!(page.revision, 3);
        let keys: Vec<_> = page.records.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        let page = backend.range("", Some("a"), Some(1)).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].key, "b");
        assert!(!page.more);
        let page = backend.range("", None, Some(1)).unwrap();
        assert!(page.more);
    }

    #[test]
    fn memory_backend_applies_batches_write_by_write() {
        exercise(&MemoryBackend::new());
    }

    #[test]
    fn redb_backend_applies_batches_write_by_write() {
        let directory = tempfile::tempdir().unwrap();
        exercise(&RedbBackend::open(&directory.path().join("store.redb")).unwrap());
    }

    #[test]
    fn an_encoder_panic_fails_only_its_write() {
        let backend = MemoryBackend::new();
        let outcomes = backend
            .commit(vec![
                Write::Put {
                    key: "boom".to_owned(),
                    precondition: Precondition::None,
                    value: Box::new(|_, _| panic!("encoder failure under test")),
                },
                put("fine", Precondition::None, "ok"),
            ])
            .unwrap();
        assert!(matches!(outcomes[0], Err(Error::Backend(_))));
        assert_eq!(outcomes[1].as_ref().unwrap().revision, 1);
    }

    #[test]
    fn truncated_records_are_reported_not_panicked_on() {
        assert!(matches!(
            decode_record("k", &[0; 10]),
            Err(Error::Backend(_))
        ));
    }

    fn segments(database: &Path) -> usize {
        std::fs::read_dir(log_directory(database))
            .map(|entries| {
                entries
                    .filter(|entry| {
                        entry.as_ref().unwrap().path().extension()
                            == Some(std::ffi::OsStr::new("wal"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    fn no_periodic_checkpoint() -> RedbOptions {
        RedbOptions {
            write_ahead_log: true,
            checkpoint_interval: Duration::from_secs(3600),
        }
    }

    #[test]
    fn log_entries_redb_never_committed_are_replayed_on_open() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.redb");
        let backend = RedbBackend::open(&path).unwrap();
        backend
            .commit(vec![put("a", Precondition::None, "1")])
            .unwrap();
        drop(backend);
        // A crash after the log append of revisions 2 and 3 but before any redb commit of them
        // leaves exactly this: redb durable at 1, the log one batch ahead.
        let mut log = Log::start_fresh(&log_directory(&path)).unwrap();
        let mut batch = LogBatch::default();
        batch.clear();
        batch.put(2, 2, "b", b"2");
        batch.delete(3, "a");
        log.append(&mut batch, 2).unwrap();
        drop(log);

        let backend = RedbBackend::open(&path).unwrap();
        assert_eq!(backend.current_revision().unwrap(), 3);
        assert_eq!(backend.get("a").unwrap(), None);
        let b = backend.get("b").unwrap().unwrap();
        assert_eq!((b.create_revision, b.mod_revision), (2, 2));
        assert_eq!(b.value, Bytes::from_static(b"2"));
        // The replay was checkpointed: the old segment is gone, and revisions keep growing.
        assert_eq!(segments(&path), 0);
        let outcomes = backend
            .commit(vec![put("c", Precondition::MustNotExist, "4")])
            .unwrap();
        assert_eq!(outcomes[0].as_ref().unwrap().revision, 4);
    }

    #[test]
    fn a_clean_shutdown_leaves_no_log_and_revisions_keep_growing() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.redb");
        for round in 1..=3u64 {
            let backend = RedbBackend::open_with(&path, no_periodic_checkpoint()).unwrap();
            assert_eq!(backend.current_revision().unwrap(), (round - 1) * 2);
            backend
                .commit(vec![
                    put(&format!("a{round}"), Precondition::MustNotExist, "x"),
                    put(&format!("b{round}"), Precondition::MustNotExist, "y"),
                ])
                .unwrap();
            assert_eq!(segments(&path), 1, "the batch went through the log");
            assert_eq!(backend.sync_stats().log_syncs, 1);
            drop(backend);
            assert_eq!(segments(&path), 0);
        }
        let backend = RedbBackend::open(&path).unwrap();
        assert_eq!(backend.range("", None, None).unwrap().records.len(), 6);
    }

    #[test]
    fn a_checkpoint_deletes_the_segments_it_covers() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.redb");
        let backend = RedbBackend::open_with(&path, no_periodic_checkpoint()).unwrap();
        let value: &'static str = Box::leak("v".repeat(64 << 10).into_boxed_str());
        // 160 writes of 64 KiB: more than one preallocated segment.
        for commit in 0..10 {
            let writes = (0..16)
                .map(|index| {
                    put(
                        &format!("k{commit:02}-{index:02}"),
                        Precondition::None,
                        value,
                    )
                })
                .collect();
            backend.commit(writes).unwrap();
        }
        assert!(segments(&path) >= 2);
        assert_eq!(backend.sync_stats().durable_commits, 0);
        backend.checkpoint().unwrap();
        assert_eq!(segments(&path), 1, "only the active segment is left");
        assert_eq!(backend.sync_stats().durable_commits, 1);
        assert_eq!(backend.current_revision().unwrap(), 160);
    }

    #[test]
    fn with_a_zero_checkpoint_interval_every_commit_is_durable_in_redb() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.redb");
        let backend = RedbBackend::open_with(
            &path,
            RedbOptions {
                write_ahead_log: true,
                checkpoint_interval: Duration::ZERO,
            },
        )
        .unwrap();
        backend
            .commit(vec![put("a", Precondition::None, "1")])
            .unwrap();
        assert_eq!(
            backend.sync_stats(),
            SyncStats {
                log_syncs: 0,
                durable_commits: 1
            }
        );
        assert_eq!(segments(&path), 0);
    }

    /// Every way a read can be served, compared against the memory engine fed the same writes:
    /// keys only in redb, only in the overlay, in both (the overlay newer), deleted in the
    /// overlay while redb still has them, re-created after a delete; pages across the seam.
    #[test]
    fn reads_over_the_overlay_and_redb_match_the_memory_engine() {
        let directory = tempfile::tempdir().unwrap();
        let redb = RedbBackend::open_with(
            &directory.path().join("store.redb"),
            no_periodic_checkpoint(),
        )
        .unwrap();
        let memory = MemoryBackend::new();
        // A fixed pseudo-random sequence: the same every run, so a failure reproduces.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let values = ["v0", "v1", "v2", "v3"];
        for round in 0..60 {
            let mut writes_redb = Vec::new();
            let mut writes_memory = Vec::new();
            for _ in 0..1 + next(6) {
                let key = format!("/{}/k{:02}", ["a", "b"][next(2) as usize], next(24));
                let value = values[next(values.len() as u64) as usize];
                let delete = next(4) == 0;
                for writes in [&mut writes_redb, &mut writes_memory] {
                    writes.push(if delete {
                        Write::Delete {
                            key: key.clone(),
                            precondition: Precondition::MustExist,
                            final_value: Box::new(|current, _| {
                                current
                                    .map(|record| record.value.clone())
                                    .unwrap_or_default()
                            }),
                        }
                    } else {
                        put(&key, Precondition::None, value)
                    });
                }
            }
            let outcomes = |outcomes: Vec<Result<Event>>| -> Vec<Option<(Revision, Bytes)>> {
                outcomes
                    .into_iter()
                    .map(|outcome| outcome.ok().map(|event| (event.revision, event.value)))
                    .collect()
            };
            assert_eq!(
                outcomes(redb.commit(writes_redb).unwrap()),
                outcomes(memory.commit(writes_memory).unwrap()),
                "round {round}"
            );
            if next(5) == 0 {
                redb.checkpoint().unwrap();
            }
            assert_eq!(
                redb.current_revision().unwrap(),
                memory.current_revision().unwrap()
            );
            for index in 0..24 {
                let key = format!("/a/k{index:02}");
                assert_eq!(redb.get(&key).unwrap(), memory.get(&key).unwrap(), "{key}");
            }
            for prefix in ["/", "/a/", "/b/"] {
                for limit in [None, Some(1), Some(3), Some(7)] {
                    let mut after: Option<String> = None;
                    loop {
                        let ours = redb.range(prefix, after.as_deref(), limit).unwrap();
                        let theirs = memory.range(prefix, after.as_deref(), limit).unwrap();
                        assert_eq!(ours.records, theirs.records, "{prefix} {after:?} {limit:?}");
                        assert_eq!(ours.more, theirs.more);
                        assert_eq!(ours.revision, theirs.revision);
                        match ours.records.last() {
                            Some(last) if ours.more => after = Some(last.key.clone()),
                            _ => break,
                        }
                    }
                }
            }
        }
        assert!(
            redb.sync_stats().durable_commits > 0,
            "some rounds read redb"
        );
    }

    /// Each batch rewrites ten keys with one value. A reader racing the writer and an applier
    /// that runs every millisecond must always see ten equal values at the revision its page
    /// reports: never half the overlay, never redb ahead of the overlay.
    #[test]
    fn lists_are_consistent_while_the_applier_runs() {
        let directory = tempfile::tempdir().unwrap();
        let backend = Arc::new(
            RedbBackend::open_with(
                &directory.path().join("store.redb"),
                RedbOptions {
                    write_ahead_log: true,
                    checkpoint_interval: Duration::from_millis(1),
                },
            )
            .unwrap(),
        );
        let values: Vec<&'static str> = (0..200)
            .map(|batch| &*Box::leak(format!("{batch}").into_boxed_str()))
            .collect();
        let writer = {
            let backend = Arc::clone(&backend);
            std::thread::spawn(move || {
                for value in values {
                    let writes = (0..10)
                        .map(|key| put(&format!("/k/{key}"), Precondition::None, value))
                        .collect();
                    backend.commit(writes).unwrap();
                }
            })
        };
        let mut pages = 0;
        while !writer.is_finished() || pages == 0 {
            let page = backend.range("/k/", None, None).unwrap();
            pages += 1;
            if page.records.is_empty() {
                continue;
            }
            assert_eq!(page.records.len(), 10);
            let first = &page.records[0];
            for record in &page.records {
                assert_eq!(record.value, first.value, "one batch's values only");
                assert!(record.mod_revision <= page.revision);
            }
            assert_eq!(
                first.mod_revision % 10,
                1,
                "a batch starts on a revision ≡ 1 mod 10"
            );
            assert_eq!(page.revision, first.mod_revision + 9);
        }
        writer.join().unwrap();
        assert!(backend.sync_stats().durable_commits > 0, "the applier ran");
    }

    #[test]
    fn a_bounded_overlay_makes_the_writer_wait_for_the_applier() {
        let directory = tempfile::tempdir().unwrap();
        let backend = RedbBackend::open_with(
            &directory.path().join("store.redb"),
            no_periodic_checkpoint(),
        )
        .unwrap();
        // One batch past the hard key bound: the commit returns only once redb has it all.
        let writes = (0..=OVERLAY_HARD_KEYS)
            .map(|key| put(&format!("/k/{key:07}"), Precondition::None, "x"))
            .collect();
        backend.commit(writes).unwrap();
        assert_eq!(
            backend.shared.applied.load(Ordering::Acquire),
            OVERLAY_HARD_KEYS as Revision + 1
        );
        assert_eq!(backend.sync_stats().durable_commits, 1);
    }

    fn delete(key: &str) -> Write {
        Write::Delete {
            key: key.to_owned(),
            precondition: Precondition::MustExist,
            final_value: Box::new(|current, _| {
                current
                    .map(|record| record.value.clone())
                    .unwrap_or_default()
            }),
        }
    }

    fn keys(page: &Page) -> Vec<&str> {
        page.records
            .iter()
            .map(|record| record.key.as_str())
            .collect()
    }

    /// The seam between the overlay and redb, case by case: updates shadowing redb rows, a
    /// delete hiding a key only redb has, a re-create after a delete, and pages with
    /// `start_after` and `limit` whose keys come from both sides. The same reads must answer
    /// the same after the overlay is applied and redb answers alone.
    #[test]
    fn reads_merge_the_overlay_over_redb() {
        let directory = tempfile::tempdir().unwrap();
        let backend = RedbBackend::open_with(
            &directory.path().join("store.redb"),
            no_periodic_checkpoint(),
        )
        .unwrap();
        backend
            .commit(
                ["/p/a", "/p/b", "/p/c", "/p/d", "/q/x"]
                    .into_iter()
                    .map(|key| put(key, Precondition::MustNotExist, "old"))
                    .collect(),
            )
            .unwrap();
        backend.checkpoint().unwrap();
        let outcomes = backend
            .commit(vec![
                put("/p/b", Precondition::ModRevision(2), "new"),
                delete("/p/c"),
                put("/p/e", Precondition::MustNotExist, "new"),
                put("/p/aa", Precondition::MustNotExist, "new"),
                put("/p/f", Precondition::MustNotExist, "gone"),
                delete("/p/f"),
            ])
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(
            backend.shared.applied.load(Ordering::Acquire),
            5,
            "redb has only the first batch; the second is in the overlay alone"
        );

        let check = |backend: &RedbBackend| {
            assert_eq!(backend.current_revision().unwrap(), 11);
            let b = backend.get("/p/b").unwrap().unwrap();
            assert_eq!((b.create_revision, b.mod_revision), (2, 6));
            assert_eq!(b.value, Bytes::from_static(b"new"));
            assert_eq!(
                backend.get("/p/c").unwrap(),
                None,
                "deleted, only redb had it"
            );
            assert_eq!(backend.get("/p/f").unwrap(), None);
            let a = backend.get("/p/a").unwrap().unwrap();
            assert_eq!((a.create_revision, a.mod_revision), (1, 1));

            let all = backend.range("/p/", None, None).unwrap();
            assert_eq!(keys(&all), ["/p/a", "/p/aa", "/p/b", "/p/d", "/p/e"]);
            assert_eq!(all.revision, 11);
            assert!(!all.more);

            let first = backend.range("/p/", None, Some(2)).unwrap();
            assert_eq!(keys(&first), ["/p/a", "/p/aa"]);
            assert!(first.more);
            let second = backend.range("/p/", Some("/p/aa"), Some(2)).unwrap();
            assert_eq!(keys(&second), ["/p/b", "/p/d"]);
            assert!(second.more);
            let third = backend.range("/p/", Some("/p/d"), Some(2)).unwrap();
            assert_eq!(keys(&third), ["/p/e"]);
            assert!(!third.more);
            // Starting after a deleted key, and after one no side has.
            let after_deleted = backend.range("/p/", Some("/p/c"), Some(1)).unwrap();
            assert_eq!(keys(&after_deleted), ["/p/d"]);
            let after_absent = backend.range("/p/", Some("/p/ab"), None).unwrap();
            assert_eq!(keys(&after_absent), ["/p/b", "/p/d", "/p/e"]);
            assert_eq!(keys(&backend.range("/q/", None, None).unwrap()), ["/q/x"]);

            let mut new_values = 0;
            let filtered = backend
                .range_matching("/p/", None, Some(2), &mut |_, value| {
                    new_values += 1;
                    value == b"new"
                })
                .unwrap();
            assert_eq!(keys(&filtered), ["/p/aa", "/p/b"]);
            assert!(
                new_values >= 3,
                "the filter saw redb rows and overlay entries"
            );
        };
        check(&backend);
        backend.checkpoint().unwrap();
        assert_eq!(backend.shared.applied.load(Ordering::Acquire), 11);
        check(&backend);

        // Re-create after delete, in the overlay over a redb that has the delete.
        let outcomes = backend
            .commit(vec![put("/p/c", Precondition::MustNotExist, "again")])
            .unwrap();
        assert_eq!(outcomes[0].as_ref().unwrap().revision, 12);
        let c = backend.get("/p/c").unwrap().unwrap();
        assert_eq!((c.create_revision, c.mod_revision), (12, 12));
        assert_eq!(
            keys(&backend.range("/p/", Some("/p/b"), Some(1)).unwrap()),
            ["/p/c"]
        );
        // And a re-create of a key deleted in the same overlay (never in redb).
        let outcomes = backend
            .commit(vec![
                delete("/p/c"),
                put("/p/c", Precondition::MustNotExist, "third"),
            ])
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let c = backend.get("/p/c").unwrap().unwrap();
        assert_eq!((c.create_revision, c.mod_revision), (14, 14));
        assert_eq!(c.value, Bytes::from_static(b"third"));
    }

    /// A crash while writes live only in the overlay and the log: the process never applied
    /// them to redb (the applier's interval is an hour), and dropping nothing simulates the
    /// kill. Reopening replays them, the overlay starts empty, and revisions continue.
    #[test]
    fn writes_only_in_the_overlay_and_the_log_are_replayed_after_a_crash() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.redb");
        let backend = RedbBackend::open_with(&path, no_periodic_checkpoint()).unwrap();
        backend
            .commit(vec![put("/k/redb", Precondition::None, "durable")])
            .unwrap();
        backend.checkpoint().unwrap();
        backend
            .commit(vec![
                put("/k/log", Precondition::None, "logged"),
                delete("/k/redb"),
            ])
            .unwrap();
        assert_eq!(backend.shared.applied.load(Ordering::Acquire), 1);
        // No Drop: no final apply, no log removal, as after kill -9. The applier thread is
        // parked for an hour; the leaked backend keeps redb's file lock, so reopen a copy.
        let copy = directory.path().join("copy.redb");
        std::fs::copy(&path, &copy).unwrap();
        let copy_log = log_directory(&copy);
        std::fs::create_dir(&copy_log).unwrap();
        for entry in std::fs::read_dir(log_directory(&path)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy_log.join(entry.file_name())).unwrap();
        }
        std::mem::forget(backend);

        let reopened = RedbBackend::open_with(&copy, no_periodic_checkpoint()).unwrap();
        assert_eq!(reopened.current_revision().unwrap(), 3);
        assert_eq!(reopened.shared.overlay.load().changes.len(), 0);
        assert_eq!(reopened.get("/k/redb").unwrap(), None);
        let logged = reopened.get("/k/log").unwrap().unwrap();
        assert_eq!((logged.create_revision, logged.mod_revision), (2, 2));
        assert_eq!(
            keys(&reopened.range("/k/", None, None).unwrap()),
            ["/k/log"]
        );
        let outcomes = reopened
            .commit(vec![put("/k/next", Precondition::MustNotExist, "x")])
            .unwrap();
        assert_eq!(outcomes[0].as_ref().unwrap().revision, 4);
    }
}

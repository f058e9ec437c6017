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
//!   made durable by one append + `fdatasync` of a write-ahead log beside the file, and redb
//!   commits without syncing except for a periodic checkpoint (see [`RedbOptions`]); opening
//!   replays the log entries newer than redb's last durable commit. Without the log
//!   ([`RedbBackend::open_fsync_per_commit`]) every commit is `Durability::Immediate`.
//! * [`MemoryBackend`]: a `BTreeMap` behind a read-write lock, for tests and ephemeral clusters.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

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
    /// Make each batch durable with one append + `fdatasync` of a write-ahead log and commit
    /// redb without syncing, checkpointing it every `checkpoint_interval`. Without it, every
    /// batch is a durable (fsynced) redb commit.
    pub write_ahead_log: bool,
    /// How long redb may go without a durable commit while the log covers it. Longer means
    /// fewer redb fsyncs, but a longer log to keep and to replay after a crash.
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
    /// Durable redb commits: checkpoints, or every commit without a log.
    pub durable_commits: u64,
}

/// The persistent engine: one redb database file, plus a write-ahead log directory beside it
/// (`<file>-wal/`, see [`RedbOptions`]).
pub struct RedbBackend {
    database: Database,
    /// Only the writer thread commits, so this lock is never contended; it just lets
    /// [`Backend::commit`] take `&self`.
    committer: Mutex<Committer>,
    log_syncs: AtomicU64,
    durable_commits: AtomicU64,
}

struct Committer {
    /// Reused for every record redb stores, so an insert allocates nothing of ours.
    record: Vec<u8>,
    log: Option<LogState>,
    checkpoint_interval: Duration,
}

struct LogState {
    log: Log,
    batch: LogBatch,
    last_checkpoint: Instant,
    /// Set when an append or the redb commit after it failed: the log and redb may disagree on
    /// what a revision holds, so nothing more is written until the store is reopened (which
    /// replays the log).
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

    /// Opens the database at `path` with `options`.
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
        let durable_revision = read_revision(&database)?;
        let replay = Log::recover(&log_directory, durable_revision)?;
        if !replay.is_empty() {
            replay_into(&database, replay)?;
        }
        // Everything the log held is now in a durable redb commit.
        let log = if options.write_ahead_log {
            Some(LogState {
                log: Log::start_fresh(&log_directory)?,
                batch: LogBatch::default(),
                last_checkpoint: Instant::now(),
                broken: None,
            })
        } else {
            Log::start_fresh(&log_directory)?;
            let _ = std::fs::remove_dir(&log_directory);
            None
        };
        Ok(Self {
            database,
            committer: Mutex::new(Committer {
                record: Vec::new(),
                log,
                checkpoint_interval: options.checkpoint_interval,
            }),
            log_syncs: AtomicU64::new(0),
            durable_commits: AtomicU64::new(0),
        })
    }

    /// How often this backend has synced since it was opened.
    pub fn sync_stats(&self) -> SyncStats {
        SyncStats {
            log_syncs: self.log_syncs.load(Ordering::Relaxed),
            durable_commits: self.durable_commits.load(Ordering::Relaxed),
        }
    }

    /// Makes every commit so far durable in redb itself and deletes the log segments that made
    /// them durable before. The active segment stays (it is preallocated) and is skipped on
    /// replay. Periodic checkpoints do the same; this is for shutdown and tests.
    pub fn checkpoint(&self) -> Result<()> {
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut transaction = self.database.begin_write().map_err(backend_error)?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(backend_error)?;
        transaction.commit().map_err(backend_error)?;
        self.durable_commits.fetch_add(1, Ordering::Relaxed);
        if let Some(log) = committer.log.as_mut() {
            log.last_checkpoint = Instant::now();
            log.log.remove_covered_segments(false)?;
        }
        Ok(())
    }

    /// Applies the batch inside `transaction`, adding each change to `log_batch` if given;
    /// returns the outcomes and the revisions before and after the batch.
    fn apply_batch(
        transaction: &WriteTransaction,
        writes: Vec<Write>,
        stored: &mut Vec<u8>,
        mut log_batch: Option<&mut LogBatch>,
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
                            if let Some(log_batch) = log_batch.as_deref_mut() {
                                log_batch.put(
                                    record.mod_revision,
                                    record.create_revision,
                                    &record.key,
                                    &record.value,
                                );
                            }
                        }
                        Mutation::Delete => {
                            records.remove(event.key.as_str()).map_err(backend_error)?;
                            if let Some(log_batch) = log_batch.as_deref_mut() {
                                log_batch.delete(event.revision, &event.key);
                            }
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

impl Drop for RedbBackend {
    fn drop(&mut self) {
        let committer = self
            .committer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(log) = committer.log.as_mut() else {
            return;
        };
        if log.broken.is_some() {
            // The log holds what redb may not: keep it for the next open to replay.
            return;
        }
        // A clean shutdown leaves redb durable and no log to replay.
        let checkpoint = || -> Result<()> {
            let mut transaction = self.database.begin_write().map_err(backend_error)?;
            transaction
                .set_durability(Durability::Immediate)
                .map_err(backend_error)?;
            transaction.commit().map_err(backend_error)
        };
        match checkpoint() {
            Ok(()) => {
                if let Err(error) = log.log.remove_covered_segments(true) {
                    tracing::warn!(%error, "could not remove the write-ahead log after shutdown");
                }
            }
            Err(error) => {
                tracing::error!(%error, "final checkpoint failed; the log will be replayed")
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
        read_revision(&self.database)
    }

    fn get(&self, key: &str) -> Result<Option<Record>> {
        let transaction = self.database.begin_read().map_err(backend_error)?;
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
        let transaction = self.database.begin_read().map_err(backend_error)?;
        let meta = transaction.open_table(META).map_err(backend_error)?;
        let revision = meta
            .get(REVISION_KEY)
            .map_err(backend_error)?
            .map(|guard| guard.value())
            .unwrap_or(0);
        let records = transaction.open_table(RECORDS).map_err(backend_error)?;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            records: Vec::new(),
            revision,
            more: false,
        };
        for entry in records
            .range::<&str>((lower, Bound::Unbounded))
            .map_err(backend_error)?
        {
            let (key, stored) = entry.map_err(backend_error)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if page.records.len() == limit {
                page.more = true;
                break;
            }
            let stored = stored.value();
            let value = stored.get(RECORD_HEADER_LEN..).unwrap_or_default();
            if filter(key, value) {
                page.records.push(decode_record(key, stored)?);
            }
        }
        Ok(page)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Vec<Result<Event>>> {
        let mut committer = self
            .committer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Committer {
            record,
            log,
            checkpoint_interval,
        } = &mut *committer;
        if let Some(LogState {
            broken: Some(reason),
            ..
        }) = log
        {
            return Err(Error::Backend(format!(
                "writes are refused until the store is reopened: {reason}"
            )));
        }
        // Without a log every commit is a checkpoint; with one, only when redb has gone
        // `checkpoint_interval` without a durable commit.
        let checkpoint = log
            .as_ref()
            .is_none_or(|log| log.last_checkpoint.elapsed() >= *checkpoint_interval);
        let mut transaction = self.database.begin_write().map_err(backend_error)?;
        transaction
            .set_durability(if checkpoint {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(backend_error)?;
        let log_batch = match log.as_mut() {
            Some(log) if !checkpoint => {
                log.batch.clear();
                Some(&mut log.batch)
            }
            _ => None,
        };
        let (outcomes, start, end) =
            match Self::apply_batch(&transaction, writes, record, log_batch) {
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
        match log.as_mut() {
            Some(log) if !checkpoint => {
                // The log append is what makes the batch durable; redb's commit only makes it
                // visible to readers, and it happens before the writers are answered, so a
                // read after an acknowledgement always sees the write.
                if let Err(error) = log.log.append(&mut log.batch, start + 1) {
                    log.broken = Some(error.to_string());
                    return Err(error);
                }
                self.log_syncs.fetch_add(1, Ordering::Relaxed);
                if let Err(error) = transaction.commit() {
                    let error = backend_error(error);
                    log.broken = Some(error.to_string());
                    return Err(error);
                }
            }
            _ => {
                transaction.commit().map_err(backend_error)?;
                self.durable_commits.fetch_add(1, Ordering::Relaxed);
                if let Some(log) = log.as_mut() {
                    log.last_checkpoint = Instant::now();
                    // Everything in the closed segments is at or below `start` and now in a
                    // durable redb commit.
                    if let Err(error) = log.log.remove_covered_segments(false) {
                        tracing::warn!(%error, "could not remove old write-ahead log segments");
                    }
                }
            }
        }
        Ok(outcomes)
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
}

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
//!   value) and `meta` (the global revision), both updated in the same transaction with
//!   `Durability::Immediate`, so a commit that returned is on disk and a crash rolls back to the
//!   last complete commit as a whole.
//! * [`MemoryBackend`]: a `BTreeMap` behind a read-write lock, for tests and ephemeral clusters.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

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

fn encode_record(record: &Record) -> Vec<u8> {
    let mut stored = Vec::with_capacity(RECORD_HEADER_LEN + record.value.len());
    stored.extend_from_slice(&record.create_revision.to_le_bytes());
    stored.extend_from_slice(&record.mod_revision.to_le_bytes());
    stored.extend_from_slice(&record.value);
    stored
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

/// The persistent engine: one redb database file.
pub struct RedbBackend {
    database: Database,
}

impl RedbBackend {
    /// Opens the database at `path`, creating it (and its tables) if it does not exist. An
    /// existing file resumes at its stored revision.
    pub fn open(path: &Path) -> Result<Self> {
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
        Ok(Self { database })
    }

    /// Applies the batch inside `transaction`; returns the outcomes and whether anything changed.
    fn apply_batch(
        transaction: &WriteTransaction,
        writes: Vec<Write>,
    ) -> Result<(Vec<Result<Event>>, bool)> {
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
                            records
                                .insert(event.key.as_str(), encode_record(&record).as_slice())
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
        Ok((outcomes, revision != start))
    }
}

impl Backend for RedbBackend {
    fn current_revision(&self) -> Result<Revision> {
        let transaction = self.database.begin_read().map_err(backend_error)?;
        let meta = transaction.open_table(META).map_err(backend_error)?;
        Ok(meta
            .get(REVISION_KEY)
            .map_err(backend_error)?
            .map(|guard| guard.value())
            .unwrap_or(0))
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
        let mut transaction = self.database.begin_write().map_err(backend_error)?;
        transaction
            .set_durability(Durability::Immediate)
            .map_err(backend_error)?;
        match Self::apply_batch(&transaction, writes) {
            Ok((outcomes, true)) => {
                transaction.commit().map_err(backend_error)?;
                Ok(outcomes)
            }
            // Nothing changed: skip the fsync.
            Ok((outcomes, false)) => {
                transaction.abort().map_err(backend_error)?;
                Ok(outcomes)
            }
            Err(error) => {
                // The transaction is dropped, which rolls every write of the batch back.
                drop(transaction);
                Err(error)
            }
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
}

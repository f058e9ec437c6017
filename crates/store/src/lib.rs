//! The hollow object store: keys to opaque bytes, one global revision, watches.
//!
//! This crate knows nothing about HTTP or Kubernetes kinds. It stores bytes under string keys
//! (the API server uses `/<group>/<resource>/<namespace>/<name>`), the etcd model that
//! Kubernetes is built on:
//!
//! * every successful write bumps one global, strictly increasing [`Revision`], which the API
//!   server exposes as `resourceVersion`;
//! * writes are compare-and-swap on a key's `mod_revision` ([`Precondition`]);
//! * a write is acknowledged only after it is durable; concurrent writers are group-committed,
//!   so one `fdatasync` of a write-ahead log covers a whole batch;
//! * a bounded in-memory history of recent events lets a watch resume from a recent revision,
//!   and answers [`Error::Expired`] for a revision older than the history.
//!
//! # Layout
//!
//! * [`backend`]: the [`Backend`] trait a storage engine implements, with its two engines:
//!   [`RedbBackend`] (persistent, the default) and [`MemoryBackend`] (tests, `--ephemeral`).
//! * `wal` (private): the write-ahead log that makes [`RedbBackend`] commits durable.
//! * `overlay` (private): the acknowledged writes redb does not hold yet, and the merge of
//!   them with a redb snapshot that reads use.
//! * [`engine`]: [`Store`], which owns a backend, the single writer thread that batches writes,
//!   the event history and the watch fan-out.
//! * [`testing`]: the conformance suite every backend must pass, and the
//!   [`conformance_tests!`] macro that turns it into tests.
//!
//! # Data flow
//!
//! ```text
//!  Store::write ──► channel ──► writer thread: batch ─► Backend::commit (RedbBackend)
//!                                     │   preconditions against overlay-over-redb
//!                                     │   log: append one frame + fdatasync   (durable)
//!                                     │   overlay: publish a new immutable version (visible)
//!                                     ├─► 1. history ring + per-watcher queues ──► Watch
//!                                     └─► 2. reply to each waiting writer
//!
//!  applier thread, every 100 ms (sooner past 16 Ki keys / 32 MiB in the overlay):
//!      overlay changes since its last round ─► one redb transaction, fsynced (durable in redb)
//!      then the writer prunes them from the overlay and deletes the log segments they cover
//!
//!  Store::get / Store::list ──► overlay version + redb read snapshot that completes it
//!                                (merged in key order; never blocks on the writer)
//!  RedbBackend::open ──► redb's last durable commit + replay of newer log entries
//! ```
//!
//! # Design notes
//!
//! **Why redb.** A single-file, pure-Rust, copy-on-write B-tree with ACID transactions, MVCC
//! readers that never block the writer, and checksummed commit slots: a crash mid-commit rolls
//! back to the previous commit as a whole, so a batch is all-or-nothing on disk. It has one
//! writer at a time, which is exactly our model (one writer thread owns the revision counter),
//! it builds fast, and range scans in key order give `list` by prefix for free. Keys map to
//! `create_revision ‖ mod_revision ‖ value`; the global revision lives in a `meta` table
//! updated in the same transaction, so the file always holds a consistent (data, revision)
//! pair and revisions keep growing across restarts.
//!
//! **Why a write-ahead log in front of redb.** A durable redb commit costs far more than the
//! batch it carries: it writes and checksums every B-tree page the batch dirtied and syncs the
//! file, and with 1.4 KB pods that was ~60 µs of writer-thread CPU per write, capping durable
//! creates near 5,500/s on two cores (the API server needs the rest of the CPU). So, as etcd
//! does, durability comes from an append-only log instead: each batch is one frame (length,
//! CRC-32, the batch's changes with their revisions) written at the end of a preallocated,
//! zero-filled segment and `fdatasync`ed, which is one sequential write and no metadata. On
//! open, redb holds its last durable commit and the revision it covers; log entries above that
//! revision are replayed in one durable commit, and a torn tail (a frame cut short, or failing
//! its CRC) is dropped: it can only be a batch whose `fdatasync` never returned, so it was
//! never acknowledged. Log segments are deleted only once a durable redb commit holds every
//! entry in them. [`RedbBackend::open_fsync_per_commit`] keeps the log-less mode (one durable
//! redb commit per batch), for comparison.
//!
//! **Why an overlay, and redb on its own thread.** With the log alone, the writer still applied
//! every batch to redb (non-durably) before acknowledging it, so reads would see it. API
//! batches are small (5-7 writes), so redb's fixed cost per commit (page copies, checksums,
//! allocation) still dominated: ~36-42 µs of writer CPU per write, against ~21-23 µs for the
//! in-memory engine, and the 100 ms durable checkpoint ran on the writer too, stalling the batch
//! (and its watch events) behind it. Now the writer only checks preconditions, appends the
//! log, and publishes the batch in an in-memory *overlay* (module `overlay`): key → latest
//! `(create_revision, mod_revision, value)` or a tombstone, in a persistent ordered map
//! (`imbl::OrdMap`), so each batch derives a new immutable version sharing every untouched node,
//! and publishing it to readers is one `ArcSwap` store. A separate applier thread writes
//! everything the overlay gained since its last round to redb in ONE durable transaction
//! every `checkpoint_interval` (100 ms): hundreds of writes share redb's per-commit cost, and
//! neither that commit nor its fsync is ever on the path of an acknowledgement or a watch
//! event. A read takes an overlay version, then a redb read snapshot, and merges the two in
//! key order (an overlay entry shadows redb's row; a tombstone hides it). Each overlay version
//! carries its `revision` (what reads report) and `applied` (the durable redb revision up to
//! which entries were pruned from it); a redb snapshot at `r` completes it exactly when
//! `applied <= r <= revision`, so a read never sees a key vanish or go back in time while its
//! entry moves from the overlay to redb, and a list never mixes in a write newer than the
//! revision it reports (if the applier committed between the two loads, the read retries).
//! Entries leave the overlay only on the writer's next batch after redb holds them durably.
//! Measured with `cargo bench -p hollow-store --bench writes` against the previous design in
//! the same minutes (shared, loaded machine): writer CPU per durable write ~40-47 µs → ~18-22
//! µs, with ~9-13 µs more on the applier thread, off the acknowledgement path.
//!
//! **The overlay's bound.** Past 16 Ki keys or 32 MiB of values the writer wakes the applier
//! early; past 128 Ki keys or 256 MiB it waits, before acknowledging the batch that crossed the
//! line, until redb holds everything (so at most one batch, [`MAX_BATCH`] writes, beyond the
//! hard bound). At 10,000 writes/s a 100 ms round is ~1,000 keys, far below either line: the
//! bound only matters when redb's fsync stalls.
//!
//! **Group commit.** An fsync costs about as much for one write as for a hundred, so the
//! writer thread commits whatever is queued as one transaction (up to [`MAX_BATCH`]) and
//! acknowledges every write in it after the single log sync. When the previous commit held
//! several writes and fewer are queued, it waits up to 200 µs for the rest of them (their
//! writers were just answered and are about to send their next write); a lone writer never
//! waits. Each write's precondition is still checked on its own, in queue order, against the
//! state the earlier writes of the batch left, and a failed precondition fails only that write
//! and takes no revision.
//!
//! **Revisions and history.** Successful writes take consecutive revisions, so revision `r`
//! is exactly one event. The store keeps the latest `history_capacity` events (bounded also
//! by `history_bytes`) in memory (not on disk): a watch may start from any revision at or above
//! [`Store::oldest_watchable_revision`], and older ones get [`Error::Expired`], the etcd
//! "compacted" / Kubernetes "410 Gone" case, after which a client re-lists. After a restart the
//! history is empty and starts at the stored revision, so clients that were watching re-list,
//! as they do when a real API server restarts. A watch from a revision the store has not
//! reached yet is accepted and skips events up to it (a client may have listed from the
//! backend a revision the writer has committed but not yet published).
//!
//! **Watch fan-out.** Each watcher has its own bounded queue; the writer never waits on one.
//! A watcher whose queue overflows gets one [`Error::Expired`] and then the end of its stream,
//! so a slow client costs only itself. `Watch::next` is cancel-safe: an abandoned call loses
//! no event.
//!
//! **Ordering guarantee.** The writer publishes a batch's events before it answers the batch's
//! writers, so when [`Store::write`] returns revision `r`, a watch from `r - 1` sees `r`.

pub mod backend;
pub mod engine;
mod overlay;
pub mod testing;
mod wal;

pub use backend::{Backend, MemoryBackend, RedbBackend, RedbOptions, SyncStats};
pub use engine::{MAX_BATCH, Store, StoreOptions, StoreStats, Watch, constant};

use bytes::Bytes;

/// The global, strictly increasing counter stamped on every write.
pub type Revision = u64;

/// One stored key and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the latest write to the key.
    pub mod_revision: Revision,
}

/// What must hold for a write to go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever the key's state.
    None,
    /// The key must not exist (create).
    MustNotExist,
    /// The key must exist, at any revision.
    MustExist,
    /// The key must exist with exactly this `mod_revision` (compare-and-swap).
    ModRevision(Revision),
}

/// Produces the bytes to store, given the key's current record (if any) and the revision the
/// write will get. It runs on the writer thread after the precondition held, so the value can
/// carry its own revision (the API server stamps `metadata.resourceVersion` this way).
pub type Encoder = Box<dyn FnOnce(Option<&Record>, Revision) -> Bytes + Send>;

/// One write request.
pub enum Write {
    /// Create or replace `key`.
    Put {
        key: String,
        precondition: Precondition,
        value: Encoder,
    },
    /// Remove `key`. `final_value` produces the value the `Deleted` event carries (the object's
    /// last state, stamped with the deletion revision).
    Delete {
        key: String,
        precondition: Precondition,
        final_value: Encoder,
    },
}

/// What kind of change an [`Event`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// One committed change, as watchers see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub key: String,
    /// The revision of the write.
    pub revision: Revision,
    /// The new value; for `Deleted`, the value the delete's `final_value` produced.
    pub value: Bytes,
    /// The value before the write (`None` for `Created`).
    pub previous: Option<Bytes>,
}

/// One page of a range read.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub records: Vec<Record>,
    /// The store revision the page was read at.
    pub revision: Revision,
    /// More keys follow the last record of this page.
    pub more: bool,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `MustNotExist` write found the key.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// A `MustExist`/`ModRevision` write, or a delete, found no key.
    #[error("key {0} not found")]
    NotFound(String),
    /// A `ModRevision` precondition did not hold.
    #[error("key {key} is at revision {current}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// A watch asked for a revision older than the retained history.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        requested: Revision,
        oldest: Revision,
    },
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// The storage engine failed.
    #[error("storage engine: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

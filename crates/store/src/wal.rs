//! The write-ahead log that makes [`RedbBackend`](crate::RedbBackend) commits durable.
//!
//! A log is a directory of segment files named after the first revision they may hold
//! (`<revision, 20 digits>.wal`). A segment is zero-filled to [`SEGMENT_BYTES`] and fsynced
//! when it is created, so appending to it never changes the file's size or block map and an
//! `fdatasync` after an append writes just the appended pages. The next segment is prepared
//! by a background thread as soon as one is taken, so a rotation on the writer thread is a
//! rename and a directory fsync, not 8 MiB of writes. Each append is one frame, one
//! group-commit batch:
//!
//! ```text
//! frame   = payload length: u32 LE ‖ CRC-32 of payload: u32 LE ‖ payload
//! payload = entry count: u32 LE ‖ entry*
//! entry   = revision: u64 ‖ create revision: u64 ‖ kind: u8 (1 put, 2 delete)
//!           ‖ key length: u32 ‖ key ‖ value length: u32 ‖ value      (all LE)
//! ```
//!
//! Reading stops at the first frame that is zero-length (the preallocated zeros), runs past the
//! end of the file, or fails its CRC: that is a torn tail, a batch whose `fdatasync` never
//! returned and which was therefore never acknowledged. A reopened log never appends after a
//! torn tail: recovery checkpoints what it replayed and starts a fresh segment.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crate::{Error, Result, Revision};

/// The preallocated size of a segment; a batch larger than this gets a segment of its own size.
pub(crate) const SEGMENT_BYTES: u64 = 8 << 20;

const FRAME_HEADER_LEN: usize = 8;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One change read back from the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub revision: Revision,
    pub create_revision: Revision,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// A batch being encoded: entries are appended as the batch is applied, then the whole frame
/// goes to the log in one write.
#[derive(Default)]
pub(crate) struct LogBatch {
    frame: Vec<u8>,
    entries: u32,
}

impl LogBatch {
    pub fn clear(&mut self) {
        self.frame.clear();
        self.frame.resize(FRAME_HEADER_LEN + 4, 0);
        self.entries = 0;
    }

    pub fn put(&mut self, revision: Revision, create_revision: Revision, key: &str, value: &[u8]) {
        self.entry(revision, create_revision, PUT, key, value);
    }

    pub fn delete(&mut self, revision: Revision, key: &str) {
        self.entry(revision, 0, DELETE, key, &[]);
    }

    fn entry(
        &mut self,
        revision: Revision,
        create_revision: Revision,
        kind: u8,
        key: &str,
        value: &[u8],
    ) {
        if self.frame.len() < FRAME_HEADER_LEN + 4 {
            self.clear();
        }
        let frame = &mut self.frame;
        frame.reserve(29 + key.len() + value.len());
        frame.extend_from_slice(&revision.to_le_bytes());
        frame.extend_from_slice(&create_revision.to_le_bytes());
        frame.push(kind);
        frame.extend_from_slice(&(key.len() as u32).to_le_bytes());
        frame.extend_from_slice(key.as_bytes());
        frame.extend_from_slice(&(value.len() as u32).to_le_bytes());
        frame.extend_from_slice(value);
        self.entries += 1;
    }

    /// Fills in the header and returns the finished frame.
    fn seal(&mut self) -> &[u8] {
        let payload_len = (self.frame.len() - FRAME_HEADER_LEN) as u32;
        self.frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 4]
            .copy_from_slice(&self.entries.to_le_bytes());
        let crc = crc32fast::hash(&self.frame[FRAME_HEADER_LEN..]);
        self.frame[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.frame[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.frame
    }
}

struct ActiveSegment {
    file: File,
    path: PathBuf,
    position: u64,
    size: u64,
}

/// The appending side of the log.
pub(crate) struct Log {
    directory: PathBuf,
    active: Option<ActiveSegment>,
    /// Segments that are full; every entry in them is older than the active segment's.
    closed: Vec<PathBuf>,
    /// The next segment, zero-filled and fsynced by a background thread under
    /// [`SPARE_NAME`], so that a rotation is a rename instead of 8 MiB of writes and an fsync
    /// on the writer thread (which would hold up that batch's acknowledgements and events).
    spare: Option<JoinHandle<std::io::Result<File>>>,
}

/// The file name a spare segment is prepared under. Its `.tmp` extension makes recovery
/// delete it, like any preallocation a crash interrupted: it never holds an entry.
const SPARE_NAME: &str = "spare.wal.tmp";

impl Log {
    /// Reads every entry with a revision above `after` from the log in `directory` (created if
    /// missing), in revision order. Entries must continue `after` without a gap; a gap means
    /// the log lost acknowledged data and is reported, not skipped.
    pub fn recover(directory: &Path, after: Revision) -> Result<Vec<LogEntry>> {
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let mut entries = Vec::new();
        let mut expected = after + 1;
        for path in segment_paths(directory)? {
            let bytes = std::fs::read(&path).map_err(io_error)?;
            for entry in read_frames(&bytes)? {
                if entry.revision < expected {
                    continue;
                }
                if entry.revision != expected {
                    return Err(Error::Backend(format!(
                        "write-ahead log {} jumps from revision {} to {}",
                        path.display(),
                        expected - 1,
                        entry.revision
                    )));
                }
                expected += 1;
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// A log in `directory` whose existing segments are all covered by a durable checkpoint:
    /// they are deleted, and the first append starts a new segment.
    pub fn start_fresh(directory: &Path) -> Result<Log> {
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let mut log = Log {
            directory: directory.to_owned(),
            active: None,
            closed: segment_paths(directory)?,
            spare: None,
        };
        log.remove_covered_segments(true)?;
        Ok(log)
    }

    /// Appends `batch` as one frame and waits until it is on disk. `first_revision` is the
    /// batch's lowest revision, which names a new segment if one is needed.
    pub fn append(&mut self, batch: &mut LogBatch, first_revision: Revision) -> Result<()> {
        let frame = batch.seal();
        let needed = frame.len() as u64;
        let fits = self
            .active
            .as_ref()
            .is_some_and(|active| active.position + needed <= active.size);
        if !fits {
            self.rotate(first_revision, needed)?;
        }
        let active = self
            .active
            .as_mut()
            .expect("rotate leaves an active segment");
        active
            .file
            .write_all_at(frame, active.position)
            .map_err(io_error)?;
        active.file.sync_data().map_err(io_error)?;
        active.position += needed;
        Ok(())
    }

    /// Deletes the segments a durable checkpoint made redundant: every closed one, and the
    /// active one too when `including_active` (nothing was appended after the checkpoint).
    pub fn remove_covered_segments(&mut self, including_active: bool) -> Result<()> {
        if including_active && let Some(active) = self.active.take() {
            self.closed.push(active.path);
        }
        for path in self.closed.drain(..) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(error)),
            }
        }
        Ok(())
    }

    /// Deletes the closed segments whose every entry is at or below `applied` (redb holds them
    /// durably). A segment's entries end where the next segment's begin, so only segments
    /// followed by another one can be judged; the active segment always stays.
    pub fn remove_segments_through(&mut self, applied: Revision) -> Result<()> {
        let next_firsts = self
            .closed
            .iter()
            .skip(1)
            .chain(self.active.as_ref().map(|active| &active.path))
            .take(self.closed.len())
            .map(|path| first_revision(path));
        let covered = next_firsts
            .take_while(|first| first.is_some_and(|first| first <= applied + 1))
            .count();
        for path in self.closed.drain(..covered) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(error)),
            }
        }
        Ok(())
    }

    fn rotate(&mut self, first_revision: Revision, needed: u64) -> Result<()> {
        let path = self.directory.join(format!("{first_revision:020}.wal"));
        let spare_path = self.directory.join(SPARE_NAME);
        // The spare is usually long finished; if not, waiting for it is still sooner than
        // starting over. A failed preparation falls back to preparing here.
        let prepared = match self.spare.take() {
            Some(spare) if needed <= SEGMENT_BYTES => spare.join().ok().and_then(Result::ok),
            _ => None,
        };
        let (file, size) = match prepared {
            Some(file) => {
                std::fs::rename(&spare_path, &path).map_err(io_error)?;
                (file, SEGMENT_BYTES)
            }
            None => {
                let size = SEGMENT_BYTES.max(needed);
                let temporary = path.with_extension("wal.tmp");
                let file = zero_filled(&temporary, size).map_err(io_error)?;
                // Renamed only once complete, so a crash mid-preallocation leaves no half
                // segment.
                std::fs::rename(&temporary, &path).map_err(io_error)?;
                (file, size)
            }
        };
        File::open(&self.directory)
            .and_then(|directory| directory.sync_all())
            .map_err(io_error)?;
        if let Some(previous) = self.active.take() {
            self.closed.push(previous.path);
        }
        self.active = Some(ActiveSegment {
            file,
            path,
            position: 0,
            size,
        });
        self.spare = std::thread::Builder::new()
            .name("hollow-store-wal".to_owned())
            .spawn(move || zero_filled(&spare_path, SEGMENT_BYTES))
            .ok();
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
            let _ = std::fs::remove_file(self.directory.join(SPARE_NAME));
        }
    }
}

/// A new file at `path` of `size` zero bytes, on disk. Real zeros, not a sparse file or
/// fallocate's unwritten extents: either would make each later `fdatasync` also commit
/// block-map changes to the filesystem journal.
fn zero_filled(path: &Path, size: u64) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let chunk = (size - written).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..chunk])?;
        written += chunk as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// The first revision a segment was started for, from its name (`<revision:020>.wal`).
fn first_revision(path: &Path) -> Option<Revision> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// The segment files in `directory`, oldest first (their names sort by revision).
fn segment_paths(directory: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("wal") => paths.push(path),
            // A preallocation a crash interrupted; it never held an entry.
            Some("tmp") => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
    paths.sort();
    Ok(paths)
}

/// The entries of every intact frame at the start of `bytes`, up to the torn or zero tail.
fn read_frames(bytes: &[u8]) -> Result<Vec<LogEntry>> {
    let mut entries = Vec::new();
    let mut position = 0;
    while let Some(header) = bytes.get(position..position + FRAME_HEADER_LEN) {
        let payload_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let start = position + FRAME_HEADER_LEN;
        let Some(payload) = bytes.get(start..start + payload_len) else {
            break;
        };
        if payload_len == 0 || crc32fast::hash(payload) != crc {
            break;
        }
        decode_payload(payload, &mut entries)?;
        position = start + payload_len;
    }
    Ok(entries)
}

fn decode_payload(payload: &[u8], entries: &mut Vec<LogEntry>) -> Result<()> {
    let corrupt = || Error::Backend("write-ahead log frame passes its CRC but is malformed".into());
    let mut reader = Reader { bytes: payload };
    let count = reader.u32().ok_or_else(corrupt)?;
    for _ in 0..count {
        let revision = reader.u64().ok_or_else(corrupt)?;
        let create_revision = reader.u64().ok_or_else(corrupt)?;
        let kind = reader.take(1).ok_or_else(corrupt)?[0];
        let key_len = reader.u32().ok_or_else(corrupt)? as usize;
        let key = reader.take(key_len).ok_or_else(corrupt)?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt())?;
        let value_len = reader.u32().ok_or_else(corrupt)? as usize;
        let value = reader.take(value_len).ok_or_else(corrupt)?;
        let value = match kind {
            PUT => Some(value.to_vec()),
            DELETE => None,
            _ => return Err(corrupt()),
        };
        entries.push(LogEntry {
            revision,
            create_revision,
            key,
            value,
        });
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(..length)?;
        self.bytes = &self.bytes[length..];
        Some(taken)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn io_error(error: std::io::Error) -> Error {
    Error::Backend(format!("write-ahead log: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(revisions: std::ops::RangeInclusive<Revision>) -> LogBatch {
        let mut batch = LogBatch::default();
        batch.clear();
        for revision in revisions {
            batch.put(revision, revision, &format!("key-{revision}"), b"value");
        }
        batch
    }

    fn revisions(entries: &[LogEntry]) -> Vec<Revision> {
        entries.iter().map(|entry| entry.revision).collect()
    }

    /// Three batches (revisions 1-2, 3-4, 5-6) in one segment; returns its path and the offset
    /// where the last frame starts.
    fn three_batches(directory: &Path) -> (PathBuf, usize) {
        let mut log = Log::start_fresh(directory).unwrap();
        log.append(&mut batch_of(1..=2), 1).unwrap();
        log.append(&mut batch_of(3..=4), 3).unwrap();
        let last_frame = log.active.as_ref().unwrap().position as usize;
        log.append(&mut batch_of(5..=6), 5).unwrap();
        (log.active.as_ref().unwrap().path.clone(), last_frame)
    }

    #[test]
    fn entries_come_back_in_order_with_values_and_deletes() {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Log::start_fresh(directory.path()).unwrap();
        let mut batch = LogBatch::default();
        batch.clear();
        batch.put(1, 1, "a", b"one");
        batch.delete(2, "a");
        log.append(&mut batch, 1).unwrap();
        let entries = Log::recover(directory.path(), 0).unwrap();
        assert_eq!(
            entries,
            vec![
                LogEntry {
                    revision: 1,
                    create_revision: 1,
                    key: "a".into(),
                    value: Some(b"one".to_vec()),
                },
                LogEntry {
                    revision: 2,
                    create_revision: 0,
                    key: "a".into(),
                    value: None,
                },
            ]
        );
        // Only what is newer than the durable revision is replayed.
        assert_eq!(revisions(&Log::recover(directory.path(), 1).unwrap()), [2]);
    }

    #[test]
    fn a_half_written_last_frame_is_a_torn_tail() {
        let directory = tempfile::tempdir().unwrap();
        let (path, last_frame) = three_batches(directory.path());
        // The end of the last frame never reached the disk: zeros, as preallocated.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0; 20], last_frame as u64 + 30).unwrap();
        assert_eq!(
            revisions(&Log::recover(directory.path(), 0).unwrap()),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_frame_failing_its_crc_ends_the_log() {
        let directory = tempfile::tempdir().unwrap();
        let (path, last_frame) = three_batches(directory.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[last_frame + FRAME_HEADER_LEN + 6] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            revisions(&Log::recover(directory.path(), 0).unwrap()),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_frame_running_past_the_end_of_the_file_is_a_torn_tail() {
        let directory = tempfile::tempdir().unwrap();
        let (path, last_frame) = three_batches(directory.path());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(last_frame as u64 + 12).unwrap();
        assert_eq!(
            revisions(&Log::recover(directory.path(), 0).unwrap()),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn a_gap_in_revisions_is_reported_not_skipped() {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Log::start_fresh(directory.path()).unwrap();
        log.append(&mut batch_of(1..=2), 1).unwrap();
        log.append(&mut batch_of(4..=4), 4).unwrap();
        assert!(matches!(
            Log::recover(directory.path(), 0),
            Err(Error::Backend(_))
        ));
    }

    #[test]
    fn a_batch_larger_than_a_segment_gets_its_own_and_segments_rotate() {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Log::start_fresh(directory.path()).unwrap();
        log.append(&mut batch_of(1..=1), 1).unwrap();
        let mut big = LogBatch::default();
        big.clear();
        big.put(2, 2, "big", &vec![7; SEGMENT_BYTES as usize]);
        log.append(&mut big, 2).unwrap();
        log.append(&mut batch_of(3..=3), 3).unwrap();
        assert_eq!(segment_paths(directory.path()).unwrap().len(), 3);
        assert_eq!(
            revisions(&Log::recover(directory.path(), 0).unwrap()),
            [1, 2, 3]
        );
        log.remove_covered_segments(false).unwrap();
        let left = segment_paths(directory.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].ends_with(format!("{:020}.wal", 3)));
    }

    #[test]
    fn rotations_take_the_spare_prepared_in_the_background() {
        let directory = tempfile::tempdir().unwrap();
        let mut log = Log::start_fresh(directory.path()).unwrap();
        let half = vec![1u8; SEGMENT_BYTES as usize / 2 + 1];
        for revision in 1..=4 {
            let mut batch = LogBatch::default();
            batch.clear();
            batch.put(revision, revision, "k", &half);
            // Every append needs a new segment: the first is prepared in place, the others
            // are the spare the previous rotation started.
            log.append(&mut batch, revision).unwrap();
            assert_eq!(log.closed.len() as u64, revision - 1);
        }
        let spare = directory.path().join(SPARE_NAME);
        log.spare.take().unwrap().join().unwrap().unwrap();
        assert_eq!(std::fs::metadata(&spare).unwrap().len(), SEGMENT_BYTES);
        // Recovery reads the four segments and deletes the spare, which holds no entry.
        assert_eq!(
            revisions(&Log::recover(directory.path(), 0).unwrap()),
            [1, 2, 3, 4]
        );
        assert!(!spare.exists());
        assert_eq!(segment_paths(directory.path()).unwrap().len(), 4);
    }
}

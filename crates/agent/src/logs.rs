//! Container logs: where they are written, how they are bounded, and how they are read back
//! for `kubectl logs` (the agent's [`crate::log_server`] serves [`read_log`] to the API
//! server, which proxies `pods/log` to it).
//!
//! Layout, under the agent's data directory:
//!
//! ```text
//! pods/<namespace>_<pod>_<uid>/logs/<container>/<restartCount>.log     current output
//! pods/<namespace>_<pod>_<uid>/logs/<container>/<restartCount>.log.1   rotated older part
//! pods/<namespace>_<pod>_<uid>/logs/<container>/<restartCount>.exited  written when that run ends
//! ```
//!
//! A container's stdout and stderr are both the same file, opened for append, so its output
//! keeps flowing while the agent restarts. The agent rotates by copy-and-truncate when a file
//! passes [`MAX_LOG_BYTES`] (the process keeps appending to the same, now empty, file), so a
//! run keeps at most about twice that. Only the current and the previous run are kept: the
//! previous is what `--previous` shows. Names and namespaces cannot contain `_`, so the pod
//! directory's prefix is unambiguous.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

/// Size at which a log file is rotated.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// What `kubectl logs` asks for.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// The previous run of the container instead of the current one.
    pub previous: bool,
    /// Keep streaming output until the run ends.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes of the initial read.
    pub limit_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("pod {namespace}/{pod} has no logs on this node")]
    PodNotFound { namespace: String, pod: String },
    #[error("container \"{container}\" in pod \"{pod}\" has not written any logs")]
    ContainerNotFound { pod: String, container: String },
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPreviousRun { pod: String, container: String },
    #[error("reading logs: {0}")]
    Io(#[from] io::Error),
}

/// A stream of log bytes.
pub type LogStream = BoxStream<'static, io::Result<Bytes>>;

/// The directory that holds a pod's work directory, PID files and logs.
pub fn pod_directory(data_dir: &Path, namespace: &str, pod: &str, uid: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{namespace}_{pod}_{uid}"))
}

/// Finds a pod's directory without knowing its uid; with several (an old pod of the same
/// name not yet cleaned up), the most recently modified wins.
pub fn find_pod_directory(data_dir: &Path, namespace: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    let entries = std::fs::read_dir(data_dir.join("pods")).ok()?;
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            name.to_str().is_some_and(|name| {
                name.strip_prefix(&prefix)
                    .is_some_and(|uid| !uid.is_empty() && !uid.contains('_'))
            })
        })
        .max_by_key(|entry| entry.metadata().and_then(|meta| meta.modified()).ok())
        .map(|entry| entry.path())
}

pub(crate) fn container_log_directory(pod_directory: &Path, container: &str) -> PathBuf {
    pod_directory.join("logs").join(container)
}

fn log_path(directory: &Path, run: u32) -> PathBuf {
    directory.join(format!("{run}.log"))
}

fn rotated_path(directory: &Path, run: u32) -> PathBuf {
    directory.join(format!("{run}.log.1"))
}

fn exited_marker(directory: &Path, run: u32) -> PathBuf {
    directory.join(format!("{run}.exited"))
}

/// Opens a fresh log file for a container's run `run` (its restart count) and drops logs of
/// runs before the previous one.
pub(crate) fn open_run_log(
    pod_directory: &Path,
    container: &str,
    run: u32,
) -> io::Result<std::fs::File> {
    let directory = container_log_directory(pod_directory, container);
    std::fs::create_dir_all(&directory)?;
    for old in runs(&directory) {
        if old + 1 < run || old == run {
            let _ = std::fs::remove_file(log_path(&directory, old));
            let _ = std::fs::remove_file(rotated_path(&directory, old));
            let _ = std::fs::remove_file(exited_marker(&directory, old));
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&directory, run))
}

/// Records that run `run` has ended, so followers stop.
pub(crate) fn mark_run_exited(pod_directory: &Path, container: &str, run: u32) {
    let directory = container_log_directory(pod_directory, container);
    let _ = std::fs::write(exited_marker(&directory, run), b"");
}

/// Rotates a run's log by copy-and-truncate when it has grown past `max_bytes`.
pub(crate) fn rotate_if_large(
    pod_directory: &Path,
    container: &str,
    run: u32,
    max_bytes: u64,
) -> io::Result<bool> {
    let directory = container_log_directory(pod_directory, container);
    let path = log_path(&directory, run);
    let size = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    if size <= max_bytes {
        return Ok(false);
    }
    std::fs::copy(&path, rotated_path(&directory, run))?;
    // The writer holds the file in append mode, so it continues at the new end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(0)?;
    Ok(true)
}

/// The runs with a log file, lowest first.
fn runs(directory: &Path) -> Vec<u32> {
    let mut runs: Vec<u32> = std::fs::read_dir(directory)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    runs.sort_unstable();
    runs
}

/// Reads a container's log as `kubectl logs` wants it.
pub async fn read_log(
    data_dir: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    options: &LogOptions,
) -> Result<LogStream, LogError> {
    let pod_directory =
        find_pod_directory(data_dir, namespace, pod).ok_or_else(|| LogError::PodNotFound {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        })?;
    read_container_log(&pod_directory, pod, container, options).await
}

/// [`read_log`] for a known pod directory.
pub async fn read_container_log(
    pod_directory: &Path,
    pod: &str,
    container: &str,
    options: &LogOptions,
) -> Result<LogStream, LogError> {
    let directory = container_log_directory(pod_directory, container);
    let runs = runs(&directory);
    let run = if options.previous {
        runs.len()
            .checked_sub(2)
            .map(|index| runs[index])
            .ok_or_else(|| LogError::NoPreviousRun {
                pod: pod.to_string(),
                container: container.to_string(),
            })?
    } else {
        *runs.last().ok_or_else(|| LogError::ContainerNotFound {
            pod: pod.to_string(),
            container: container.to_string(),
        })?
    };
    let rotated = read_or_empty(&rotated_path(&directory, run)).await?;
    let current = read_or_empty(&log_path(&directory, run)).await?;
    let followed_offset = current.len() as u64;
    let mut initial = rotated;
    initial.extend_from_slice(&current);
    if let Some(lines) = options.tail_lines {
        let start = tail_start(&initial, lines);
        initial.drain(..start);
    }
    if let Some(limit) = options.limit_bytes {
        initial.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let first = stream::iter((!initial.is_empty()).then(|| Ok(Bytes::from(initial))));
    if !options.follow || options.previous {
        return Ok(first.boxed());
    }
    let follower = Follower {
        directory,
        run,
        offset: followed_offset,
    };
    let rest = stream::unfold(Some(follower), |state| async move {
        let mut follower = state?;
        match follower.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(follower))),
            Ok(None) => None,
            Err(error) => Some((Err(error), None)),
        }
    });
    Ok(first.chain(rest).boxed())
}

async fn read_or_empty(path: &Path) -> io::Result<Vec<u8>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// Where the last `lines` lines of `bytes` begin (a final line without newline counts).
fn tail_start(bytes: &[u8], lines: u64) -> usize {
    if lines == 0 {
        return bytes.len();
    }
    let mut seen = 0;
    // A trailing newline ends the last line; it does not start another one.
    let search_end = if bytes.last() == Some(&b'\n') {
        bytes.len() - 1
    } else {
        bytes.len()
    };
    for index in (0..search_end).rev() {
        if bytes[index] == b'\n' {
            seen += 1;
            if seen == lines {
                return index + 1;
            }
        }
    }
    0
}

/// Streams what a run appends to its log until the run has ended and all is read.
struct Follower {
    directory: PathBuf,
    run: u32,
    offset: u64,
}

impl Follower {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let path = log_path(&self.directory, self.run);
            // Checked before reading so output written just before the end is not lost.
            let ended = tokio::fs::try_exists(exited_marker(&self.directory, self.run))
                .await
                .unwrap_or(true)
                || runs(&self.directory)
                    .last()
                    .is_some_and(|last| *last > self.run);
            let size = match tokio::fs::metadata(&path).await {
                Ok(metadata) => metadata.len(),
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            };
            if size < self.offset {
                // Rotated: what we had not read yet went to the rotated copy.
                let rotated = read_or_empty(&rotated_path(&self.directory, self.run)).await?;
                let missed = rotated
                    .get(usize::try_from(self.offset).unwrap_or(usize::MAX)..)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                self.offset = 0;
                if !missed.is_empty() {
                    return Ok(Some(Bytes::from(missed)));
                }
                continue;
            }
            if size > self.offset {
                let chunk = read_range(&path, self.offset, size).await?;
                self.offset += chunk.len() as u64;
                if !chunk.is_empty() {
                    return Ok(Some(Bytes::from(chunk)));
                }
            }
            if ended {
                return Ok(None);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

async fn read_range(path: &Path, start: u64, end: u64) -> io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(io::SeekFrom::Start(start)).await?;
    let mut buffer = Vec::new();
    file.take(end - start).read_to_end(&mut buffer).await?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    async fn collect(stream: LogStream) -> String {
        let chunks: Vec<_> = stream.collect().await;
        let bytes: Vec<u8> = chunks
            .into_iter()
            .flat_map(|chunk| chunk.unwrap().to_vec())
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    fn temp_pod() -> (tempfile::TempDir, PathBuf) {
        let temp = tempfile::TempDir::new().unwrap();
        let pod = pod_directory(temp.path(), "default", "web-0", "uid-1");
        std::fs::create_dir_all(&pod).unwrap();
        (temp, pod)
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail_start(b"a\nb\nc\n", 2), 2);
        assert_eq!(tail_start(b"a\nb\nc", 2), 2);
        assert_eq!(tail_start(b"a\nb\nc\n", 5), 0);
        assert_eq!(tail_start(b"a\nb\nc\n", 0), 6);
    }

    #[tokio::test]
    async fn current_previous_and_tail() {
        let (temp, pod) = temp_pod();
        let mut first = open_run_log(&pod, "web", 0).unwrap();
        first.write_all(b"one\ntwo\n").unwrap();
        mark_run_exited(&pod, "web", 0);
        let mut second = open_run_log(&pod, "web", 1).unwrap();
        second.write_all(b"three\nfour\nfive\n").unwrap();

        let read = |options: LogOptions| {
            let data = temp.path().to_path_buf();
            async move {
                collect(
                    read_log(&data, "default", "web-0", "web", &options)
                        .await
                        .unwrap(),
                )
                .await
            }
        };
        assert_eq!(read(LogOptions::default()).await, "three\nfour\nfive\n");
        let previous = LogOptions {
            previous: true,
            ..LogOptions::default()
        };
        assert_eq!(read(previous).await, "one\ntwo\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(read(tail).await, "four\nfive\n");

        // A third run drops the first.
        open_run_log(&pod, "web", 2).unwrap();
        let directory = container_log_directory(&pod, "web");
        assert_eq!(runs(&directory), [1, 2]);
        assert!(matches!(
            read_log(
                temp.path(),
                "default",
                "web-0",
                "nope",
                &LogOptions::default()
            )
            .await,
            Err(LogError::ContainerNotFound { .. })
        ));
        assert!(matches!(
            read_log(
                temp.path(),
                "default",
                "web-1",
                "web",
                &LogOptions::default()
            )
            .await,
            Err(LogError::PodNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn previous_needs_an_earlier_run() {
        let (temp, pod) = temp_pod();
        open_run_log(&pod, "web", 0).unwrap();
        let options = LogOptions {
            previous: true,
            ..LogOptions::default()
        };
        let error = read_log(temp.path(), "default", "web-0", "web", &options)
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "previous terminated container \"web\" in pod \"web-0\" not found"
        );
    }

    #[tokio::test]
    async fn rotation_keeps_the_output_readable_and_bounded() {
        let (temp, pod) = temp_pod();
        let mut file = open_run_log(&pod, "web", 0).unwrap();
        file.write_all(b"0123456789\n").unwrap();
        assert!(rotate_if_large(&pod, "web", 0, 5).unwrap());
        file.write_all(b"after\n").unwrap();
        assert!(!rotate_if_large(&pod, "web", 0, 100).unwrap());
        let all = read_log(
            temp.path(),
            "default",
            "web-0",
            "web",
            &LogOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(collect(all).await, "0123456789\nafter\n");
        let size = std::fs::metadata(log_path(&container_log_directory(&pod, "web"), 0))
            .unwrap()
            .len();
        assert_eq!(size, 6);
    }

    #[tokio::test]
    async fn follow_streams_until_the_run_ends() {
        let (temp, pod) = temp_pod();
        let mut file = open_run_log(&pod, "web", 0).unwrap();
        file.write_all(b"first\n").unwrap();
        let options = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let mut stream = read_log(temp.path(), "default", "web-0", "web", &options)
            .await
            .unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"first\n");
        file.write_all(b"second\n").unwrap();
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"second\n");
        file.write_all(b"last\n").unwrap();
        mark_run_exited(&pod, "web", 0);
        assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"last\n");
        assert!(stream.next().await.is_none());
    }
}

//! Local processes: starting a container's command in its own process group, recording it in
//! a PID file, and stopping a group.
//!
//! Every process the agent starts leads a new process group, so a container's children are
//! stopped with it. The PID file holds the leader's PID and its start time (from
//! `/proc/<pid>/stat`), which tells a live leader from an unrelated process that later got
//! the same PID. Signals only ever go to a recorded group that still has members started no
//! earlier than its leader.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How often a stopping group is checked for remaining members.
const STOP_POLL: Duration = Duration::from_millis(20);
/// How long SIGKILLed processes get to disappear before the agent gives up waiting.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A started process group, as written to its PID file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessRecord {
    /// The leader's PID, which is also the process group ID.
    pub pid: i32,
    /// The leader's start time in clock ticks since boot.
    pub start_ticks: u64,
    /// The container's restart count when this process was started.
    pub run: u32,
}

impl ProcessRecord {
    fn encode(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_ticks, self.run)
    }

    fn decode(text: &str) -> Option<ProcessRecord> {
        let mut fields = text.split_whitespace();
        Some(ProcessRecord {
            pid: fields.next()?.parse().ok()?,
            start_ticks: fields.next()?.parse().ok()?,
            run: fields.next()?.parse().ok()?,
        })
    }

    /// Whether the leader is still this process (not exited, not a zombie, PID not reused).
    pub fn leader_alive(&self) -> bool {
        read_stat(self.pid).is_some_and(|stat| stat.start_ticks == self.start_ticks && !stat.zombie)
    }

    /// Live processes of the group (leader included) that started no earlier than the leader.
    pub fn members(&self) -> Vec<i32> {
        group_members(self.pid, self.start_ticks)
    }
}

pub(crate) fn pid_file(pod_directory: &Path, container: &str) -> PathBuf {
    pod_directory
        .join("containers")
        .join(format!("{container}.pid"))
}

pub(crate) fn write_pid_file(
    pod_directory: &Path,
    container: &str,
    record: &ProcessRecord,
) -> io::Result<()> {
    let path = pid_file(pod_directory, container);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Written whole then renamed, so a crash never leaves half a record.
    let temporary = path.with_extension("pid.tmp");
    std::fs::write(&temporary, record.encode())?;
    std::fs::rename(temporary, path)
}

pub(crate) fn read_pid_file(pod_directory: &Path, container: &str) -> Option<ProcessRecord> {
    ProcessRecord::decode(&std::fs::read_to_string(pid_file(pod_directory, container)).ok()?)
}

pub(crate) fn remove_pid_file(pod_directory: &Path, container: &str) {
    let _ = std::fs::remove_file(pid_file(pod_directory, container));
}

/// Every PID record in a pod directory.
pub(crate) fn pid_files(pod_directory: &Path) -> Vec<(String, ProcessRecord)> {
    std::fs::read_dir(pod_directory.join("containers"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry
                .file_name()
                .to_str()?
                .strip_suffix(".pid")?
                .to_string();
            let record = ProcessRecord::decode(&std::fs::read_to_string(entry.path()).ok()?)?;
            Some((name, record))
        })
        .collect()
}

/// What to run.
pub struct Launch<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub work_dir: &'a Path,
}

/// Starts `launch` as the leader of a new process group with stdout and stderr appended to
/// `log`.
pub fn spawn(launch: &Launch<'_>, log: std::fs::File) -> io::Result<(Child, ProcessRecord)> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(name, value)| (name, value)))
        .current_dir(launch.work_dir)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false);
    let child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the process exited before its PID was read"))?
        as i32;
    // The stat file exists from fork on; a process that already exited cannot be recorded,
    // and 0 never matches a real start time, so it is then treated as gone.
    let start_ticks = read_stat(pid).map(|stat| stat.start_ticks).unwrap_or(0);
    Ok((
        child,
        ProcessRecord {
            pid,
            start_ticks,
            run: 0,
        },
    ))
}

/// Sends `signal` to the group if it still has members; false when it has none.
pub fn signal_group(record: &ProcessRecord, signal: Signal) -> bool {
    if record.members().is_empty() {
        return false;
    }
    killpg(Pid::from_raw(record.pid), signal).is_ok()
}

/// Stops a group: SIGTERM, then SIGKILL once `grace` has passed, then waits for its members
/// to disappear.
pub async fn stop_group(record: &ProcessRecord, grace: Duration) {
    if grace > Duration::ZERO && signal_group(record, Signal::SIGTERM) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if record.members().is_empty() {
                return;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }
    kill_group(record).await;
}

/// SIGKILLs a group and waits (bounded) until it is gone.
pub async fn kill_group(record: &ProcessRecord) {
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    while signal_group(record, Signal::SIGKILL) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(STOP_POLL).await;
    }
}

struct Stat {
    process_group: i32,
    start_ticks: u64,
    zombie: bool,
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Reads `/proc/<pid>/stat`; the command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields after the name start at field 3 (state); pgrp is field 5, starttime field 22.
    Some(Stat {
        zombie: matches!(*fields.first()?, "Z" | "X"),
        process_group: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn group_members(process_group: i32, not_before_ticks: u64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            read_stat(*pid).is_some_and(|stat| {
                stat.process_group == process_group
                    && !stat.zombie
                    && stat.start_ticks >= not_before_ticks
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line =
            "4242 (python3 (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2 3";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.process_group, 4242);
        assert_eq!(stat.start_ticks, 98765);
        assert!(!stat.zombie);
    }

    #[test]
    fn records_round_trip() {
        let record = ProcessRecord {
            pid: 12,
            start_ticks: 345,
            run: 2,
        };
        assert_eq!(ProcessRecord::decode(&record.encode()), Some(record));
        assert_eq!(ProcessRecord::decode("12 x 2"), None);
    }

    #[tokio::test]
    async fn stopping_a_group_takes_its_children_along() {
        let temp = tempfile::TempDir::new().unwrap();
        let log = std::fs::File::create(temp.path().join("log")).unwrap();
        let argv: Vec<String> = ["sh", "-c", "sleep 300 & sleep 300 & wait"]
            .iter()
            .map(|part| part.to_string())
            .collect();
        let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
        let launch = Launch {
            argv: &argv,
            env: &env,
            work_dir: temp.path(),
        };
        let (mut child, record) = spawn(&launch, log).unwrap();
        assert!(record.leader_alive());
        // The shell and its two sleeps.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while record.members().len() < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(record.members().len(), 3);
        let reaper = tokio::spawn(async move { child.wait().await });
        stop_group(&record, Duration::from_secs(5)).await;
        assert!(record.members().is_empty());
        assert!(!reaper.await.unwrap().unwrap().success());
        assert!(!signal_group(&record, Signal::SIGKILL));
    }
}

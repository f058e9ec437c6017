//! The agent end to end: an in-process API server over a store in a temporary directory,
//! the agent talking to it through kube-rs, and real local processes.
//!
//! Each test has its own API server, data directory and pod range (so tests running in
//! parallel never bind the same address), and checks the process table through `/proc`.
//!
//! The machine is shared: another run of this very binary (a second engineer, a CI job) may
//! have processes with the same command lines. So a test only ever counts or kills processes
//! whose parent is this test process (the agents under test run in it, so every container
//! process is its child), and each run takes its pod ranges from its own block of addresses.

mod init;
mod lifecycle;
mod node;
mod probes;
mod simulate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hollow_agent::AgentConfig;
use hollow_testkit::TempDir;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::oneshot;

/// How long a test waits for a condition before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

pub use hollow_testkit::LocalApiServer;

/// A running agent; [`Agent::stop`] ends it and waits.
pub struct Agent {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), hollow_agent::Error>>>,
}

impl Agent {
    pub fn start(client: kube::Client, config: AgentConfig) -> Agent {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hollow_agent::run(client, config, async {
            let _ = stopped.await;
        }));
        Agent {
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A distinct /24 for each test of this binary, away from the default range; the second
/// octet depends on the process, so concurrent runs of the binary rarely share a range.
pub fn unique_pod_range() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let index = NEXT.fetch_add(1, Ordering::Relaxed);
    let block = 200 + std::process::id() % 40;
    format!("127.{block}.{}.0/24", 10 + index)
}

/// An agent configuration for a test: its own range, processes stopped when it stops.
pub fn test_config(node: &str, data_dir: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(node, data_dir);
    config.pod_cidr = Some(unique_pod_range());
    config.stop_pods_on_shutdown = true;
    config
}

pub fn strings(parts: &[&str]) -> Option<Vec<String>> {
    Some(parts.iter().map(|part| part.to_string()).collect())
}

/// A pod bound to `node` with one container (with an image, which the API requires but
/// the agent only records).
pub fn pod(name: &str, node: &str, mut container: Container) -> Pod {
    if container.image.is_none() {
        container.image = Some("busybox".into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![container],
            termination_grace_period_seconds: Some(5),
            ..PodSpec::default()
        }),
        status: None,
    }
}

pub async fn create(client: &kube::Client, pod: &Pod) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), pod).await.unwrap()
}

/// Polls the pod until `check` holds; fails the test with the last status after [`WAIT`].
pub async fn wait_for(
    client: &kube::Client,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let pod = pods.get_opt(name).await.unwrap();
        if let Some(pod) = &pod
            && check(pod)
        {
            return pod.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "pod {name} never became {what}; last status: {}",
                serde_json::to_string_pretty(&pod.and_then(|pod| pod.status)).unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_until_gone(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + WAIT;
    while pods.get_opt(name).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod {name} was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == kind)
        .map(|condition| condition.status.clone())
}

pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").as_deref() == Some("True")
}

pub fn container_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

pub fn restart_count(pod: &Pod) -> i32 {
    container_status(pod).map_or(0, |status| status.restart_count)
}

pub fn pod_ip(pod: &Pod) -> String {
    pod.status.as_ref().unwrap().pod_ip.clone().unwrap()
}

/// PIDs of this test process's live children whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let this_process = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?.to_string();
            let parent = fields.next()?;
            let command = String::from_utf8_lossy(&command).replace('\0', " ");
            (command.contains(marker) && state != "Z" && parent == this_process).then_some(pid)
        })
        .collect()
}

/// `ps`-like lines (pid, parent, group, state, start ticks) for a failure message.
pub fn describe_processes(pids: &[i32]) -> String {
    pids.iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Kills, when dropped, every child of this process carrying one of its markers: a failing
/// test must not leave its processes behind (the agents in some tests deliberately leave them
/// running), nor kill another run's.
pub struct KillOnDrop(pub &'static [&'static str]);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for marker in self.0 {
            for pid in processes_with(marker) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Waits until no child of this process carries `marker`.
pub async fn wait_no_processes(marker: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = processes_with(marker);
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes {left:?} with {marker:?} were left running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pod's directory under the agent's data directory.
pub fn pod_directory(data_dir: &Path, pod: &Pod) -> PathBuf {
    data_dir.join("pods").join(format!(
        "default_{}_{}",
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap()
    ))
}

/// One HTTP/1.0 GET; returns the status line.
pub async fn http_get(address: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let reply = String::from_utf8_lossy(&reply);
    Ok(reply.lines().next().unwrap_or_default().to_string())
}

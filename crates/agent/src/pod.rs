//! One pod's worker: starts its containers (or, in simulate mode, pretends to), runs their
//! probes, restarts them by policy with back-off, reports status, and carries out graceful
//! deletion.
//!
//! The worker is an actor. Everything that happens to the pod arrives as a message on one
//! channel: a process exited, a probe flipped, a back-off ran out. Every message that
//! belongs to an older run of a container (tagged with the run number, which is the
//! container's restart count when it started) is ignored, so a late probe result can never
//! touch a newer process. After each batch of messages the worker computes the pod status
//! and hands it to the status writer only when it changed.
//!
//! Init containers come first in the worker's container slots. They run one at a time, in
//! order, each to a successful exit, before the app containers start. A failed one is
//! retried with the crash-loop back-off, unless the pod's restart policy is Never, which
//! fails the pod. Until they are done every other container waits as `PodInitializing`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::backoff::RestartBackoff;
use crate::env::{ApiObjects, PodFacts, container_env};
use crate::expand::expand;
use crate::logs;
use crate::probe::{self, Check, ProbeKind, Schedule};
use crate::process::{self, Launch, ProcessRecord};
use crate::status::{ContainerView, PodView, RunState, Termination, pod_status};
use crate::writer::{PodKey, StatusWriter};

/// The annotation that holds a pod not ready.
pub const NOT_READY_ANNOTATION: &str = "hollow.dev/simulate-not-ready";

/// How often running containers' logs are checked for rotation.
const LOG_ROTATION_CHECK: Duration = Duration::from_secs(2);
/// How often a process the agent did not start itself (found after a restart) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// Delay before retrying a container whose configuration could not be resolved.
const CONFIG_RETRY: Duration = Duration::from_secs(10);

/// What all pod workers share.
pub struct Shared {
    pub client: kube::Client,
    pub host_ip: String,
    pub data_dir: PathBuf,
    pub simulate: bool,
    pub stop_pods_on_shutdown: bool,
    pub writer: StatusWriter,
}

/// What the agent's main loop sends a worker.
pub struct Inputs {
    /// The newest version of the pod.
    pub pod: watch::Receiver<Arc<Pod>>,
    /// Fires when the pod has left the API (force-deleted, or deleted while the agent was away).
    pub gone: oneshot::Receiver<()>,
    /// Turns true when the agent stops.
    pub shutdown: watch::Receiver<bool>,
}

#[derive(Debug)]
enum Exit {
    Code(i32),
    Signal(i32),
    /// A process found after an agent restart ended; its exit code went to someone else.
    Unknown,
}

#[derive(Debug)]
enum Message {
    Exited {
        container: usize,
        run: u32,
        exit: Exit,
    },
    Probe {
        container: usize,
        run: u32,
        kind: ProbeKind,
        passing: bool,
    },
    RestartDue {
        container: usize,
        run: u32,
    },
    /// Its turn has come: the next init container, or the app containers after the last one.
    Start {
        container: usize,
    },
}

struct Slot {
    spec: Container,
    view: ContainerView,
    run: u32,
    has_run: bool,
    process: Option<ProcessRecord>,
    /// The exit watcher and probes of the current run.
    tasks: Vec<AbortHandle>,
    restart_timer: Option<AbortHandle>,
    backoff: RestartBackoff,
    readiness_passing: bool,
    /// The environment of the current run, which exec probes share.
    env: Vec<(String, String)>,
    /// Being stopped after a failed liveness or startup probe.
    killing: bool,
}

impl Slot {
    fn new(spec: &Container, pod_has_init_containers: bool) -> Slot {
        // Kubelet's waiting reason for a container that has not run yet.
        let waiting_reason = if pod_has_init_containers {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        Slot {
            view: ContainerView {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                container_id: None,
                state: RunState::Waiting {
                    reason: waiting_reason.into(),
                    message: None,
                },
                last_termination: None,
                restart_count: 0,
                ready: false,
                started: false,
            },
            spec: spec.clone(),
            run: 0,
            has_run: false,
            process: None,
            tasks: Vec::new(),
            restart_timer: None,
            backoff: RestartBackoff::default(),
            readiness_passing: false,
            env: Vec::new(),
            killing: false,
        }
    }

    fn stop_tasks(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(timer) = self.restart_timer.take() {
            timer.abort();
        }
    }

    fn refresh_ready(&mut self) {
        let running = matches!(self.view.state, RunState::Running { .. });
        let readiness_ok = self.spec.readiness_probe.is_none() || self.readiness_passing;
        self.view.ready = running && self.view.started && readiness_ok;
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

fn held_not_ready(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(NOT_READY_ANNOTATION))
        .is_some_and(|value| value == "true")
}

fn deletion_grace(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|spec| spec.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(seconds.max(0) as u64)
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

struct Worker {
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    key: PodKey,
    ip: Ipv4Addr,
    directory: PathBuf,
    work_dir: PathBuf,
    /// Init containers first (`..init_count`), then the app containers.
    slots: Vec<Slot>,
    init_count: usize,
    sender: mpsc::UnboundedSender<Message>,
    start_time: Time,
    scheduled_at: Time,
    conditions: Vec<PodCondition>,
    last_written: Option<PodStatus>,
    deleting: bool,
}

/// Runs one pod until it is deleted, leaves the API, or the agent stops.
pub async fn run_pod(shared: Arc<Shared>, ip: Ipv4Addr, mut inputs: Inputs, recovered: bool) {
    let pod = inputs.pod.borrow_and_update().clone();
    let metadata = &pod.metadata;
    let key = PodKey {
        namespace: metadata.namespace.clone().unwrap_or_default(),
        name: metadata.name.clone().unwrap_or_default(),
        uid: metadata.uid.clone().unwrap_or_default(),
    };
    let directory = logs::pod_directory(&shared.data_dir, &key.namespace, &key.name, &key.uid);
    let work_dir = directory.join("work");
    let status = pod.status.clone().unwrap_or_default();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let init_containers: &[Container] = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.init_containers.as_deref())
        .unwrap_or_default();
    let init_count = init_containers.len();
    let slots = init_containers
        .iter()
        .chain(pod.spec.iter().flat_map(|spec| spec.containers.iter()))
        .map(|spec| Slot::new(spec, init_count > 0))
        .collect();
    let mut worker = Worker {
        start_time: status.start_time.clone().unwrap_or_else(now),
        scheduled_at: metadata.creation_timestamp.clone().unwrap_or_else(now),
        conditions: status.conditions.clone().unwrap_or_default(),
        shared,
        pod,
        key,
        ip,
        directory,
        work_dir,
        slots,
        init_count,
        sender,
        last_written: None,
        deleting: false,
    };
    if !worker.shared.simulate
        && let Err(error) = std::fs::create_dir_all(&worker.work_dir)
    {
        tracing::error!(pod = %worker.key.name, %error, "cannot create the pod's work directory");
    }
    if worker.pod.metadata.deletion_timestamp.is_none() {
        if recovered && !worker.shared.simulate {
            worker.recover(&status).await;
        } else if worker.init_count > 0 {
            worker.start(0).await;
        } else {
            worker.start_app_containers().await;
        }
        worker.drain(&mut receiver).await;
        worker.publish();
    }
    let mut rotation = tokio::time::interval(LOG_ROTATION_CHECK);
    rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if worker.pod.metadata.deletion_timestamp.is_some() {
            worker.delete(&mut inputs.gone).await;
            return;
        }
        tokio::select! {
            changed = inputs.pod.changed() => {
                if changed.is_err() {
                    // The main loop is gone: the agent is stopping.
                    worker.shutdown().await;
                    return;
                }
                worker.pod = inputs.pod.borrow_and_update().clone();
                worker.publish();
            }
            Ok(()) = &mut inputs.gone => {
                worker.remove_everything().await;
                return;
            }
            _ = inputs.shutdown.changed() => {
                worker.shutdown().await;
                return;
            }
            Some(message) = receiver.recv() => {
                worker.handle(message).await;
                worker.drain(&mut receiver).await;
                worker.publish();
            }
            _ = rotation.tick(), if !worker.shared.simulate => worker.rotate_logs(),
        }
    }
}

impl Worker {
    /// Handles every message already waiting, so one status covers them all.
    async fn drain(&mut self, receiver: &mut mpsc::UnboundedReceiver<Message>) {
        while let Ok(message) = receiver.try_recv() {
            self.handle(message).await;
        }
    }

    fn publish(&mut self) {
        let held = held_not_ready(&self.pod);
        let mut views: Vec<ContainerView> = self.slots[self.init_count..]
            .iter()
            .map(|slot| slot.view.clone())
            .collect();
        let init_views: Vec<ContainerView> = self.slots[..self.init_count]
            .iter()
            .map(|slot| slot.view.clone())
            .collect();
        if held {
            for view in &mut views {
                view.ready = false;
            }
        }
        let policy = restart_policy(&self.pod);
        let status = pod_status(&PodView {
            init_containers: &init_views,
            containers: &views,
            restart_policy: &policy,
            pod_ip: Some(self.ip.to_string()),
            host_ip: self.shared.host_ip.clone(),
            start_time: self.start_time.clone(),
            scheduled_at: self.scheduled_at.clone(),
            previous_conditions: &self.conditions,
            held_not_ready: held,
            now: now(),
        });
        if self.last_written.as_ref() == Some(&status) {
            return;
        }
        self.conditions = status.conditions.clone().unwrap_or_default();
        self.last_written = Some(status.clone());
        self.shared.writer.submit(self.key.clone(), status);
    }

    fn is_init(&self, index: usize) -> bool {
        index < self.init_count
    }

    async fn start_app_containers(&mut self) {
        for index in self.init_count..self.slots.len() {
            self.start(index).await;
        }
    }

    fn container_id(&self, index: usize, pid: Option<i32>) -> String {
        match pid {
            Some(pid) => format!("hollow://{pid}"),
            None => format!(
                "hollow://simulated/{}/{}",
                self.key.uid, self.slots[index].spec.name
            ),
        }
    }

    async fn start(&mut self, index: usize) {
        if self.deleting {
            return;
        }
        if self.shared.simulate {
            let container_id = self.container_id(index, None);
            if self.is_init(index) {
                // A simulated init container completes at once.
                let started = now();
                self.slots[index].has_run = true;
                self.slots[index].view.container_id = Some(container_id.clone());
                self.after_termination(
                    index,
                    Termination {
                        exit_code: 0,
                        signal: None,
                        reason: "Completed".into(),
                        message: None,
                        started_at: Some(started.clone()),
                        finished_at: started,
                        container_id: Some(container_id),
                    },
                );
                return;
            }
            let slot = &mut self.slots[index];
            if slot.has_run {
                slot.view.restart_count += 1;
            }
            slot.has_run = true;
            slot.view.state = RunState::Running { started_at: now() };
            slot.view.container_id = Some(container_id);
            slot.view.started = true;
            slot.readiness_passing = true;
            slot.refresh_ready();
            return;
        }
        let spec = self.slots[index].spec.clone();
        let command: Vec<String> = spec.command.clone().unwrap_or_default();
        if command.is_empty() {
            let image = spec.image.clone().unwrap_or_default();
            self.slots[index].view.state = RunState::Waiting {
                reason: "ImageNotRunnable".into(),
                message: Some(format!(
                    "hollow runs a container's command as a local process; this container has no command \
                     (image {image} cannot be pulled here)"
                )),
            };
            return;
        }
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: self.ip.to_string(),
            host_ip: self.shared.host_ip.clone(),
            work_dir: &self.work_dir,
        };
        let objects = ApiObjects {
            client: self.shared.client.clone(),
            namespace: self.key.namespace.clone(),
        };
        let env = match container_env(&facts, &spec, &objects).await {
            Ok(env) => env,
            Err(message) => {
                let slot = &mut self.slots[index];
                slot.view.state = RunState::Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: Some(message),
                };
                self.schedule_restart(index, CONFIG_RETRY);
                return;
            }
        };
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let argv: Vec<String> = command
            .iter()
            .chain(spec.args.iter().flatten())
            .map(|part| expand(part, lookup))
            .collect();
        let slot = &mut self.slots[index];
        if slot.has_run {
            slot.view.restart_count += 1;
        }
        slot.has_run = true;
        slot.run = slot.view.restart_count as u32;
        slot.killing = false;
        slot.env = env.clone();
        let run = slot.run;
        let spawned = logs::open_run_log(&self.directory, &spec.name, run).and_then(|log| {
            process::spawn(
                &Launch {
                    argv: &argv,
                    env: &env,
                    work_dir: &self.work_dir,
                },
                log,
            )
        });
        let (mut child, mut record) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                let reason = if error.kind() == std::io::ErrorKind::NotFound {
                    "executable file not found in $PATH".to_string()
                } else {
                    error.to_string()
                };
                let message = format!(
                    "failed to start container \"{}\": exec: \"{}\": {reason}",
                    spec.name, argv[0]
                );
                logs::mark_run_exited(&self.directory, &spec.name, run);
                let started = now();
                let termination = Termination {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: Some(started.clone()),
                    finished_at: started,
                    container_id: None,
                };
                self.after_termination(index, termination);
                return;
            }
        };
        record.run = run;
        if let Err(error) = process::write_pid_file(&self.directory, &spec.name, &record) {
            tracing::warn!(pod = %self.key.name, %error, "cannot write a PID file");
        }
        let container_id = self.container_id(index, Some(record.pid));
        let sender = self.sender.clone();
        let watcher = tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (status.code(), status.signal()) {
                        (Some(code), _) => Exit::Code(code),
                        (None, Some(signal)) => Exit::Signal(signal),
                        (None, None) => Exit::Unknown,
                    }
                }
                Err(_) => Exit::Unknown,
            };
            let _ = sender.send(Message::Exited {
                container: index,
                run,
                exit,
            });
        });
        let slot = &mut self.slots[index];
        slot.process = Some(record);
        slot.tasks.push(watcher.abort_handle());
        slot.view.state = RunState::Running { started_at: now() };
        slot.view.container_id = Some(container_id);
        slot.readiness_passing = false;
        if index < self.init_count {
            // Kubelet never reports an init container started, nor ready before it completed.
            slot.view.started = false;
            slot.view.ready = false;
            return;
        }
        slot.view.started = slot.spec.startup_probe.is_none();
        slot.refresh_ready();
        self.spawn_probes(index, false);
    }

    /// Starts the probes the container's state calls for: the startup probe until it has
    /// passed, then liveness and readiness.
    fn spawn_probes(&mut self, index: usize, ready_already: bool) {
        let slot = &self.slots[index];
        let mut wanted: Vec<(ProbeKind, Probe)> = Vec::new();
        if !slot.view.started {
            wanted.extend(
                slot.spec
                    .startup_probe
                    .clone()
                    .map(|probe| (ProbeKind::Startup, probe)),
            );
        } else {
            wanted.extend(
                slot.spec
                    .liveness_probe
                    .clone()
                    .map(|probe| (ProbeKind::Liveness, probe)),
            );
            wanted.extend(
                slot.spec
                    .readiness_probe
                    .clone()
                    .map(|probe| (ProbeKind::Readiness, probe)),
            );
        }
        if wanted.is_empty() {
            return;
        }
        let env = slot.env.clone();
        let run = slot.run;
        let mut handles = Vec::new();
        for (kind, spec) in wanted {
            let check = Arc::new(probe::resolve_check(
                &spec,
                &slot.spec,
                IpAddr::V4(self.ip),
                &env,
                &self.work_dir,
            ));
            let schedule = Schedule::of(&spec);
            let initially_passing = match kind {
                ProbeKind::Liveness => true,
                ProbeKind::Readiness => ready_already,
                ProbeKind::Startup => false,
            };
            let sender = self.sender.clone();
            let task = tokio::spawn(probe::probe_loop(
                kind,
                schedule,
                initially_passing,
                move || {
                    let check: Arc<Check> = check.clone();
                    async move { probe::run_check(&check, schedule.timeout).await }
                },
                move |passing, _message| {
                    let _ = sender.send(Message::Probe {
                        container: index,
                        run,
                        kind,
                        passing,
                    });
                },
            ));
            handles.push(task.abort_handle());
        }
        self.slots[index].tasks.extend(handles);
    }

    fn schedule_restart(&mut self, index: usize, delay: Duration) {
        let sender = self.sender.clone();
        let run = self.slots[index].run;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = sender.send(Message::RestartDue {
                container: index,
                run,
            });
        });
        if let Some(old) = self.slots[index]
            .restart_timer
            .replace(timer.abort_handle())
        {
            old.abort();
        }
    }

    /// A run has ended: decide, by restart policy and back-off, what comes next.
    fn after_termination(&mut self, index: usize, termination: Termination) {
        let policy = restart_policy(&self.pod);
        let pod_name = format!("{}_{}({})", self.key.name, self.key.namespace, self.key.uid);
        let init_count = self.init_count;
        let slot = &mut self.slots[index];
        slot.view.ready = false;
        slot.view.started = false;
        slot.readiness_passing = false;
        if index < init_count && !self.deleting && termination.exit_code == 0 {
            slot.view.ready = true;
            slot.view.state = RunState::Terminated(termination);
            let next: Vec<usize> = if index + 1 < init_count {
                vec![index + 1]
            } else {
                (init_count..self.slots.len()).collect()
            };
            for container in next {
                let _ = self.sender.send(Message::Start { container });
            }
            return;
        }
        // An init container that failed is retried whatever the policy, except Never.
        let restarts = if index < init_count {
            policy != "Never"
        } else {
            should_restart(&policy, termination.exit_code)
        };
        if self.deleting || !restarts {
            slot.view.state = RunState::Terminated(termination);
            return;
        }
        slot.view.last_termination = Some(termination);
        let delay = slot.backoff.next_restart(tokio::time::Instant::now());
        slot.view.state = RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}s restarting failed container={} pod={pod_name}",
                delay.as_secs(),
                slot.spec.name
            )),
        };
        self.schedule_restart(index, delay);
    }

    async fn handle(&mut self, message: Message) {
        match message {
            Message::Exited {
                container,
                run,
                exit,
            } => {
                if self.slots[container].run != run || self.slots[container].process.is_none() {
                    return;
                }
                let slot = &mut self.slots[container];
                slot.stop_tasks();
                let record = slot.process.take();
                let name = slot.spec.name.clone();
                let started_at = match &slot.view.state {
                    RunState::Running { started_at } => Some(started_at.clone()),
                    _ => None,
                };
                let container_id = slot.view.container_id.clone();
                if let Some(record) = record {
                    // Whatever the main process left behind in its group goes with it.
                    process::kill_group(&record).await;
                    process::remove_pid_file(&self.directory, &name);
                }
                logs::mark_run_exited(&self.directory, &name, run);
                let (exit_code, signal, reason, message) = match exit {
                    Exit::Code(0) => (0, None, "Completed", None),
                    Exit::Code(code) => (code, None, "Error", None),
                    Exit::Signal(signal) => (128 + signal, Some(signal), "Error", None),
                    Exit::Unknown => (
                        137,
                        None,
                        "ContainerStatusUnknown",
                        Some("the process ended while the agent was restarting, so its exit code is unknown".to_string()),
                    ),
                };
                let termination = Termination {
                    exit_code,
                    signal,
                    reason: reason.into(),
                    message,
                    started_at,
                    finished_at: now(),
                    container_id,
                };
                self.after_termination(container, termination);
            }
            Message::Start { container } => {
                let slot = &self.slots[container];
                if !slot.has_run && slot.process.is_none() && !self.deleting {
                    self.start(container).await;
                }
            }
            Message::RestartDue { container, run } => {
                let slot = &self.slots[container];
                if slot.run == run && slot.process.is_none() && !self.deleting {
                    slot_restart_timer_clear(&mut self.slots[container]);
                    self.start(container).await;
                }
            }
            Message::Probe {
                container,
                run,
                kind,
                passing,
            } => {
                let slot = &mut self.slots[container];
                if slot.run != run || slot.process.is_none() {
                    return;
                }
                match (kind, passing) {
                    (ProbeKind::Readiness, passing) => {
                        slot.readiness_passing = passing;
                        slot.refresh_ready();
                    }
                    (ProbeKind::Startup, true) => {
                        slot.view.started = true;
                        slot.refresh_ready();
                        self.spawn_probes(container, false);
                    }
                    (ProbeKind::Liveness, false) | (ProbeKind::Startup, false) => {
                        self.kill_for_restart(container, kind);
                    }
                    (ProbeKind::Liveness, true) => {}
                }
            }
        }
    }

    /// Stops a container whose liveness or startup probe failed; its exit then restarts it.
    fn kill_for_restart(&mut self, index: usize, kind: ProbeKind) {
        let slot = &mut self.slots[index];
        if slot.killing {
            return;
        }
        let Some(record) = slot.process else { return };
        slot.killing = true;
        let probe = match kind {
            ProbeKind::Startup => slot.spec.startup_probe.as_ref(),
            _ => slot.spec.liveness_probe.as_ref(),
        };
        let grace = probe
            .and_then(|probe| probe.termination_grace_period_seconds)
            .map(|seconds| Duration::from_secs(seconds.max(0) as u64))
            .unwrap_or_else(|| {
                Duration::from_secs(
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|spec| spec.termination_grace_period_seconds)
                        .unwrap_or(30)
                        .max(0) as u64,
                )
            });
        tracing::info!(pod = %self.key.name, container = %slot.spec.name, ?kind, "probe failed; restarting the container");
        // Only the probes stop now; the exit watcher reports the end of the process.
        let keep = slot.tasks.first().cloned();
        for task in slot.tasks.drain(1..) {
            task.abort();
        }
        slot.tasks = keep.into_iter().collect();
        tokio::spawn(async move { process::stop_group(&record, grace).await });
    }

    /// After an agent restart: adopt processes that are still running, account for those that
    /// ended meanwhile, and start the rest.
    async fn recover(&mut self, status: &PodStatus) {
        if self.init_count > 0 && !self.recover_init_containers(status).await {
            return;
        }
        let statuses = status.container_statuses.as_deref().unwrap_or_default();
        let policy = restart_policy(&self.pod);
        for index in self.init_count..self.slots.len() {
            let name = self.slots[index].spec.name.clone();
            let previous = statuses.iter().find(|status| status.name == name);
            let slot = &mut self.slots[index];
            if let Some(previous) = previous {
                slot.view.restart_count = previous.restart_count;
                slot.view.last_termination = previous
                    .last_state
                    .as_ref()
                    .and_then(|state| state.terminated.as_ref())
                    .map(termination_of);
                slot.has_run = previous.restart_count > 0 || slot.view.last_termination.is_some();
            }
            let record = process::read_pid_file(&self.directory, &name);
            match record {
                Some(record) if record.leader_alive() => {
                    let facts = PodFacts {
                        pod: &self.pod,
                        pod_ip: self.ip.to_string(),
                        host_ip: self.shared.host_ip.clone(),
                        work_dir: &self.work_dir,
                    };
                    let objects = ApiObjects {
                        client: self.shared.client.clone(),
                        namespace: self.key.namespace.clone(),
                    };
                    let env = container_env(&facts, &self.slots[index].spec, &objects)
                        .await
                        .unwrap_or_default();
                    self.slots[index].env = env;
                    let started_at = previous
                        .and_then(|status| {
                            status.state.as_ref()?.running.as_ref()?.started_at.clone()
                        })
                        .unwrap_or_else(now);
                    let was_ready = previous.is_some_and(|status| status.ready);
                    let container_id = self.container_id(index, Some(record.pid));
                    let slot = &mut self.slots[index];
                    slot.has_run = true;
                    slot.run = record.run;
                    slot.view.restart_count = record.run as i32;
                    slot.process = Some(record);
                    slot.view.state = RunState::Running { started_at };
                    slot.view.container_id = Some(container_id);
                    slot.view.started = slot.spec.startup_probe.is_none()
                        || previous.and_then(|status| status.started).unwrap_or(false);
                    slot.readiness_passing = was_ready;
                    slot.refresh_ready();
                    let sender = self.sender.clone();
                    let run = record.run;
                    let watcher = tokio::spawn(async move {
                        while record.leader_alive() {
                            tokio::time::sleep(ADOPTED_POLL).await;
                        }
                        let _ = sender.send(Message::Exited {
                            container: index,
                            run,
                            exit: Exit::Unknown,
                        });
                    });
                    self.slots[index].tasks.push(watcher.abort_handle());
                    self.spawn_probes(index, was_ready);
                }
                Some(record) => {
                    // It ended while the agent was away.
                    let slot = &mut self.slots[index];
                    slot.has_run = true;
                    slot.run = record.run;
                    slot.view.restart_count = record.run as i32;
                    slot.process = Some(record);
                    slot.view.state = RunState::Running { started_at: now() };
                    let _ = self.sender.send(Message::Exited {
                        container: index,
                        run: record.run,
                        exit: Exit::Unknown,
                    });
                }
                None => {
                    let finished = previous
                        .and_then(|status| status.state.as_ref()?.terminated.as_ref())
                        .map(termination_of);
                    match finished {
                        Some(termination) if !should_restart(&policy, termination.exit_code) => {
                            self.slots[index].has_run = true;
                            self.slots[index].view.state = RunState::Terminated(termination);
                        }
                        _ => self.start(index).await,
                    }
                }
            }
        }
    }

    /// After an agent restart, the init containers: completed ones stay completed; the first
    /// one that had not completed runs again from the start (any process of it left running
    /// is stopped first, its exit code could not be known). Returns whether the pod was
    /// initialized, so its app containers are recovered next.
    async fn recover_init_containers(&mut self, status: &PodStatus) -> bool {
        let init_statuses = status
            .init_container_statuses
            .as_deref()
            .unwrap_or_default();
        // App containers only ever run after initialization.
        let app_ran = self.slots[self.init_count..]
            .iter()
            .any(|slot| process::read_pid_file(&self.directory, &slot.spec.name).is_some())
            || status.container_statuses.iter().flatten().any(|previous| {
                previous
                    .state
                    .as_ref()
                    .is_some_and(|state| state.waiting.is_none())
                    || previous
                        .last_state
                        .as_ref()
                        .is_some_and(|state| state.terminated.is_some())
            });
        let mut first_incomplete = None;
        for index in 0..self.init_count {
            let name = self.slots[index].spec.name.clone();
            let previous = init_statuses.iter().find(|status| status.name == name);
            let terminated = previous
                .and_then(|status| status.state.as_ref()?.terminated.as_ref())
                .map(termination_of);
            let slot = &mut self.slots[index];
            if let Some(previous) = previous {
                slot.view.restart_count = previous.restart_count;
                slot.view.container_id = previous.container_id.clone();
                slot.view.last_termination = previous
                    .last_state
                    .as_ref()
                    .and_then(|state| state.terminated.as_ref())
                    .map(termination_of);
                slot.has_run = previous.restart_count > 0
                    || slot.view.last_termination.is_some()
                    || previous
                        .state
                        .as_ref()
                        .is_some_and(|state| state.waiting.is_none());
                slot.run = previous.restart_count.max(0) as u32;
            }
            match terminated {
                Some(termination) if termination.exit_code == 0 || app_ran => {
                    slot.has_run = true;
                    slot.view.ready = true;
                    slot.view.state = RunState::Terminated(termination);
                }
                _ if app_ran => {
                    let finished = now();
                    slot.has_run = true;
                    slot.view.ready = true;
                    slot.view.state = RunState::Terminated(Termination {
                        exit_code: 0,
                        signal: None,
                        reason: "Completed".into(),
                        message: None,
                        started_at: None,
                        finished_at: finished,
                        container_id: slot.view.container_id.clone(),
                    });
                }
                terminated => {
                    first_incomplete.get_or_insert((index, terminated));
                }
            }
        }
        let Some((index, terminated)) = first_incomplete else {
            return true;
        };
        for slot in &self.slots[index..self.init_count] {
            if let Some(record) = process::read_pid_file(&self.directory, &slot.spec.name) {
                process::kill_group(&record).await;
                process::remove_pid_file(&self.directory, &slot.spec.name);
            }
        }
        match terminated {
            // It failed for good before the restart.
            Some(termination) if restart_policy(&self.pod) == "Never" => {
                self.slots[index].view.state = RunState::Terminated(termination);
            }
            _ => self.start(index).await,
        }
        false
    }

    fn rotate_logs(&self) {
        for slot in &self.slots {
            if slot.process.is_some()
                && let Err(error) = logs::rotate_if_large(
                    &self.directory,
                    &slot.spec.name,
                    slot.run,
                    logs::MAX_LOG_BYTES,
                )
            {
                tracing::warn!(pod = %self.key.name, %error, "rotating a log failed");
            }
        }
    }

    /// Graceful deletion: stop every process (SIGTERM, SIGKILL after the grace period), then
    /// remove the pod from the API.
    async fn delete(&mut self, gone: &mut oneshot::Receiver<()>) {
        self.deleting = true;
        let grace = deletion_grace(&self.pod);
        let records = self.stop_all_tasks();
        let stopping = futures::future::join_all(
            records
                .iter()
                .map(|record| process::stop_group(record, grace)),
        );
        tokio::select! {
            _ = stopping => {}
            Ok(()) = &mut *gone => {
                self.remove_everything_now(&records).await;
                return;
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.key.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.key.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let mut attempts = 0;
        loop {
            match pods.delete(&self.key.name, &params).await {
                Ok(_) => break,
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => break,
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(pod = %self.key.name, %error, "finishing the pod's deletion failed");
                    if attempts >= 10 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        self.remove_directory().await;
    }

    /// Stops probes, watchers and timers; returns every process group of the pod, including
    /// ones only its PID files know (a pod deleted while the agent was away).
    fn stop_all_tasks(&mut self) -> Vec<ProcessRecord> {
        let mut records: Vec<ProcessRecord> = self
            .slots
            .iter_mut()
            .filter_map(|slot| {
                slot.stop_tasks();
                slot.process.take()
            })
            .collect();
        if !self.shared.simulate {
            for (_, record) in process::pid_files(&self.directory) {
                if !records.iter().any(|known| known.pid == record.pid) {
                    records.push(record);
                }
            }
        }
        records
    }

    async fn remove_everything(&mut self) {
        self.deleting = true;
        let records = self.stop_all_tasks();
        self.remove_everything_now(&records).await;
    }

    async fn remove_everything_now(&mut self, records: &[ProcessRecord]) {
        futures::future::join_all(records.iter().map(process::kill_group)).await;
        self.remove_directory().await;
    }

    async fn remove_directory(&self) {
        if !self.shared.simulate
            && let Err(error) = tokio::fs::remove_dir_all(&self.directory).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pod = %self.key.name, %error, "removing the pod directory failed");
        }
    }

    /// The agent stops: leave processes to be found again, or stop them when configured to.
    async fn shutdown(&mut self) {
        let records: Vec<ProcessRecord> = self
            .slots
            .iter_mut()
            .filter_map(|slot| {
                slot.stop_tasks();
                slot.process
            })
            .collect();
        if self.shared.stop_pods_on_shutdown {
            let grace = Duration::from_secs(2).min(deletion_grace(&self.pod));
            futures::future::join_all(
                records
                    .iter()
                    .map(|record| process::stop_group(record, grace)),
            )
            .await;
            for slot in &self.slots {
                process::remove_pid_file(&self.directory, &slot.spec.name);
            }
        }
    }
}

fn slot_restart_timer_clear(slot: &mut Slot) {
    slot.restart_timer = None;
}

fn termination_of(state: &k8s_openapi::api::core::v1::ContainerStateTerminated) -> Termination {
    Termination {
        exit_code: state.exit_code,
        signal: state.signal,
        reason: state.reason.clone().unwrap_or_else(|| "Error".into()),
        message: state.message.clone(),
        started_at: state.started_at.clone(),
        finished_at: state.finished_at.clone().unwrap_or_else(now),
        container_id: state.container_id.clone(),
    }
}

//! Pod status as kubelet reports it, computed from the agent's view of each container.
//!
//! Phase follows kubelet's rules: while an init container has not completed the pod is
//! Pending (Failed when one failed and the restart policy is Never); then a container that
//! has never run keeps the pod Pending; a running one makes it Running; when all have stopped
//! the restart policy decides between Running (they will restart), Succeeded and Failed.
//! Conditions keep their `lastTransitionTime` until their status changes.
//!
//! Init containers are reported as kubelet reports them, since `kubectl get pods` derives its
//! `Init:1/2`, `Init:Error` and `Init:CrashLoopBackOff` column from them: a completed one is
//! terminated with reason `Completed` and ready, none is ever `started`, and every container
//! that has not run yet waits with reason `PodInitializing`.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How a container's run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Time>,
    pub finished_at: Time,
    pub container_id: Option<String>,
}

/// A container's current state.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Time,
    },
    Terminated(Termination),
}

/// What the status needs to know about one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub container_id: Option<String>,
    pub state: RunState,
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerView {
    fn to_status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            container_id: self.container_id.clone(),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            state: Some(state_of(&self.state)),
            last_state: Some(
                self.last_termination
                    .as_ref()
                    .map(|termination| ContainerState {
                        terminated: Some(terminated(termination)),
                        ..ContainerState::default()
                    })
                    .unwrap_or_default(),
            ),
            ..ContainerStatus::default()
        }
    }
}

fn terminated(termination: &Termination) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: termination.exit_code,
        signal: termination.signal,
        reason: Some(termination.reason.clone()),
        message: termination.message.clone(),
        started_at: termination.started_at.clone(),
        finished_at: Some(termination.finished_at.clone()),
        container_id: termination.container_id.clone(),
    }
}

fn state_of(state: &RunState) -> ContainerState {
    match state {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(started_at.clone()),
            }),
            ..ContainerState::default()
        },
        RunState::Terminated(termination) => ContainerState {
            terminated: Some(terminated(termination)),
            ..ContainerState::default()
        },
    }
}

impl ContainerView {
    /// An init container that ran to completion.
    pub fn completed(&self) -> bool {
        matches!(&self.state, RunState::Terminated(termination) if termination.exit_code == 0)
    }

    /// An init container whose last run failed (it may be waiting to run again).
    fn failed(&self) -> bool {
        match &self.state {
            RunState::Terminated(termination) => termination.exit_code != 0,
            RunState::Waiting { .. } => self
                .last_termination
                .as_ref()
                .is_some_and(|termination| termination.exit_code != 0),
            RunState::Running { .. } => false,
        }
    }
}

/// The pod phase kubelet would report.
pub fn phase(
    init_containers: &[ContainerView],
    containers: &[ContainerView],
    restart_policy: &str,
) -> &'static str {
    let incomplete: Vec<&ContainerView> = init_containers
        .iter()
        .filter(|container| !container.completed())
        .collect();
    if !incomplete.is_empty() {
        let failed = incomplete.iter().any(|container| container.failed());
        return if failed && restart_policy == "Never" {
            "Failed"
        } else {
            "Pending"
        };
    }
    let mut never_ran = 0;
    let mut running = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for container in containers {
        match &container.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated(termination) => {
                stopped += 1;
                if termination.exit_code == 0 {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } => {
                if container.last_termination.is_some() {
                    stopped += 1;
                } else {
                    never_ran += 1;
                }
            }
        }
    }
    if never_ran > 0 || containers.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match restart_policy {
        "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        "Never" => "Failed",
        // OnFailure: the failed ones restart.
        _ => "Running",
    }
}

/// Everything the pod-level status is built from.
pub struct PodView<'a> {
    pub init_containers: &'a [ContainerView],
    pub containers: &'a [ContainerView],
    pub restart_policy: &'a str,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Time,
    pub scheduled_at: Time,
    /// The conditions currently in the API, whose transition times are kept.
    pub previous_conditions: &'a [PodCondition],
    /// The `hollow.dev/simulate-not-ready` annotation holds the pod not ready.
    pub held_not_ready: bool,
    pub now: Time,
}

/// The pod status to write.
pub fn pod_status(view: &PodView<'_>) -> PodStatus {
    let phase = phase(view.init_containers, view.containers, view.restart_policy);
    let uninitialized: Vec<&str> = view
        .init_containers
        .iter()
        .filter(|container| !container.completed())
        .map(|container| container.name.as_str())
        .collect();
    let (initialized_reason, initialized_message) = if uninitialized.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotInitialized".to_string()),
            Some(format!(
                "containers with incomplete status: [{}]",
                uninitialized.join(" ")
            )),
        )
    };
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|container| !container.ready)
        .map(|container| container.name.as_str())
        .collect();
    let containers_ready = unready.is_empty() && !view.containers.is_empty();
    let all_done = matches!(phase, "Succeeded" | "Failed");
    let condition = |kind: &str, status: bool, reason: Option<String>, message: Option<String>| {
        let status = if status { "True" } else { "False" }.to_string();
        let previous = view
            .previous_conditions
            .iter()
            .find(|condition| condition.type_ == kind && condition.status == status);
        let transition = match kind {
            "PodScheduled" => view.scheduled_at.clone(),
            _ => previous
                .and_then(|condition| condition.last_transition_time.clone())
                .unwrap_or_else(|| view.now.clone()),
        };
        PodCondition {
            type_: kind.to_string(),
            status,
            reason,
            message,
            last_transition_time: Some(transition),
            last_probe_time: None,
            observed_generation: None,
        }
    };
    let (ready_reason, ready_message) = if all_done {
        (Some("PodCompleted".to_string()), None)
    } else if view.held_not_ready && containers_ready {
        (
            Some("ReadinessGatesNotReady".to_string()),
            Some("held not ready by the hollow.dev/simulate-not-ready annotation".to_string()),
        )
    } else if !containers_ready {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    } else {
        (None, None)
    };
    let containers_condition_reason = if all_done {
        Some("PodCompleted".to_string())
    } else if !containers_ready {
        Some("ContainersNotReady".to_string())
    } else {
        None
    };
    let containers_condition_message = if !containers_ready && !all_done {
        ready_message.clone()
    } else {
        None
    };
    let pod_ready = containers_ready && !view.held_not_ready;
    let conditions = vec![
        condition(
            "PodReadyToStartContainers",
            view.pod_ip.is_some(),
            None,
            None,
        ),
        condition(
            "Initialized",
            uninitialized.is_empty(),
            initialized_reason,
            initialized_message,
        ),
        condition("Ready", pod_ready, ready_reason, ready_message),
        condition(
            "ContainersReady",
            containers_ready,
            containers_condition_reason,
            containers_condition_message,
        ),
        condition("PodScheduled", true, None, None),
    ];
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.clone(),
        }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: Some(view.start_time.clone()),
        container_statuses: Some(
            view.containers
                .iter()
                .map(ContainerView::to_status)
                .collect(),
        ),
        init_container_statuses: (!view.init_containers.is_empty()).then(|| {
            view.init_containers
                .iter()
                .map(ContainerView::to_status)
                .collect()
        }),
        qos_class: Some("BestEffort".to_string()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn container(state: RunState, last: bool, ready: bool) -> ContainerView {
        ContainerView {
            name: "web".into(),
            image: "python".into(),
            container_id: None,
            state,
            last_termination: last.then(|| exit(1)),
            restart_count: 0,
            ready,
            started: ready,
        }
    }

    fn exit(code: i32) -> Termination {
        Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some(time(1)),
            finished_at: time(2),
            container_id: None,
        }
    }

    fn waiting(reason: &str) -> RunState {
        RunState::Waiting {
            reason: reason.into(),
            message: None,
        }
    }

    #[test]
    fn phases_follow_kubelet() {
        let running = RunState::Running {
            started_at: time(1),
        };
        assert_eq!(
            phase(
                &[],
                &[container(waiting("ImageNotRunnable"), false, false)],
                "Always"
            ),
            "Pending"
        );
        assert_eq!(
            phase(&[], &[container(running.clone(), false, true)], "Always"),
            "Running"
        );
        assert_eq!(
            phase(
                &[],
                &[container(waiting("CrashLoopBackOff"), true, false)],
                "Always"
            ),
            "Running"
        );
        assert_eq!(
            phase(
                &[],
                &[container(RunState::Terminated(exit(0)), false, false)],
                "Never"
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(
                &[],
                &[container(RunState::Terminated(exit(0)), false, false)],
                "OnFailure"
            ),
            "Succeeded"
        );
        assert_eq!(
            phase(
                &[],
                &[container(RunState::Terminated(exit(2)), false, false)],
                "Never"
            ),
            "Failed"
        );
        assert_eq!(
            phase(
                &[],
                &[container(RunState::Terminated(exit(2)), false, false)],
                "OnFailure"
            ),
            "Running"
        );
        assert_eq!(
            phase(
                &[],
                &[
                    container(running, false, true),
                    container(waiting("ImageNotRunnable"), false, false)
                ],
                "Always"
            ),
            "Pending"
        );
    }

    #[test]
    fn conditions_keep_transition_times_until_they_change() {
        let containers = [container(
            RunState::Running {
                started_at: time(1),
            },
            false,
            true,
        )];
        let mut view = PodView {
            init_containers: &[],
            containers: &containers,
            restart_policy: "Always",
            pod_ip: Some("127.244.0.2".into()),
            host_ip: "127.0.0.1".into(),
            start_time: time(1),
            scheduled_at: time(0),
            previous_conditions: &[],
            held_not_ready: false,
            now: time(10),
        };
        let first = pod_status(&view);
        let ready = |status: &PodStatus| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|condition| condition.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&first).status, "True");
        assert_eq!(ready(&first).last_transition_time, Some(time(10)));
        let previous = first.conditions.clone().unwrap();
        view.previous_conditions = &previous;
        view.now = time(20);
        assert_eq!(
            ready(&pod_status(&view)).last_transition_time,
            Some(time(10))
        );
        view.held_not_ready = true;
        let held = pod_status(&view);
        assert_eq!(ready(&held).status, "False");
        assert_eq!(ready(&held).last_transition_time, Some(time(20)));
        assert_eq!(first.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn init_containers_hold_the_pod_pending_or_fail_it() {
        let running = RunState::Running {
            started_at: time(1),
        };
        let app = [container(waiting("PodInitializing"), false, false)];
        let done = container(RunState::Terminated(exit(0)), false, true);
        let failed = container(RunState::Terminated(exit(2)), false, false);
        let retrying = container(waiting("CrashLoopBackOff"), true, false);
        let busy = container(running.clone(), false, false);
        assert_eq!(phase(&[done.clone(), busy], &app, "Always"), "Pending");
        assert_eq!(
            phase(std::slice::from_ref(&failed), &app, "Never"),
            "Failed"
        );
        assert_eq!(phase(&[failed], &app, "OnFailure"), "Pending");
        assert_eq!(
            phase(std::slice::from_ref(&retrying), &app, "Always"),
            "Pending"
        );
        assert_eq!(
            phase(
                std::slice::from_ref(&done),
                &[container(running, false, true)],
                "Always"
            ),
            "Running"
        );
        let view = PodView {
            init_containers: &[done, retrying],
            containers: &app,
            restart_policy: "Always",
            pod_ip: Some("127.244.0.2".into()),
            host_ip: "127.0.0.1".into(),
            start_time: time(1),
            scheduled_at: time(0),
            previous_conditions: &[],
            held_not_ready: false,
            now: time(10),
        };
        let status = pod_status(&view);
        let initialized = status
            .conditions
            .iter()
            .flatten()
            .find(|condition| condition.type_ == "Initialized")
            .unwrap();
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.reason.as_deref(),
            Some("ContainersNotInitialized")
        );
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [web]")
        );
        assert_eq!(status.init_container_statuses.unwrap().len(), 2);
    }

    #[test]
    fn unready_containers_are_named() {
        let containers = [container(waiting("CrashLoopBackOff"), true, false)];
        let view = PodView {
            init_containers: &[],
            containers: &containers,
            restart_policy: "Always",
            pod_ip: Some("127.244.0.2".into()),
            host_ip: "127.0.0.1".into(),
            start_time: time(1),
            scheduled_at: time(0),
            previous_conditions: &[],
            held_not_ready: false,
            now: time(10),
        };
        let status = pod_status(&view);
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|condition| condition.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [web]")
        );
        let container = &status.container_statuses.unwrap()[0];
        assert_eq!(
            container
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            container
                .last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }
}

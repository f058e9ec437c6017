//! Real processes with real probes: readiness over HTTP and exec, and the status kubelet
//! would show for bad input.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::*;

fn http_server_container() -> Container {
    Container {
        name: "web".into(),
        image: Some("python:3".into()),
        command: strings(&["python3"]),
        args: strings(&["-u", "-m", "http.server", "--bind", "$(POD_IP)", "8080"]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("/".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    }
}

#[tokio::test]
async fn an_http_server_becomes_ready_restarts_when_killed_and_leaves_nothing_behind() {
    let _cleanup = KillOnDrop(&["http.server --bind 127."]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    create(&client, &pod("web-0", "n1", http_server_container())).await;
    let pod = wait_for(&client, "web-0", "Ready", is_ready).await;
    let ip = pod_ip(&pod);
    let range = format!("127.{}.", 200 + std::process::id() % 40);
    assert!(ip.starts_with(&range), "{ip}");
    let status = pod.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"));
    let container = container_status(&pod).unwrap();
    assert!(container.ready);
    assert_eq!(container.started, Some(true));
    assert!(container.state.as_ref().unwrap().running.is_some());
    assert_eq!(
        http_get(&format!("{ip}:8080")).await.unwrap(),
        "HTTP/1.0 200 OK"
    );

    // The server's request log is the container's log.
    let options = hollow_agent::LogOptions::default();
    let log = hollow_agent::read_log(data.path(), "default", "web-0", "web", &options)
        .await
        .unwrap();
    let chunks: Vec<_> = futures::StreamExt::collect(log).await;
    let text: String = chunks
        .into_iter()
        .map(|chunk| String::from_utf8_lossy(&chunk.unwrap()).into_owned())
        .collect();
    assert!(text.contains("\"GET / HTTP/1.0\" 200"), "{text}");

    // Killing the process restarts the container.
    let processes = processes_with(&ip);
    assert_eq!(processes.len(), 1, "{processes:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(processes[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let pod = wait_for(&client, "web-0", "restarted and Ready", |pod| {
        restart_count(pod) == 1 && is_ready(pod)
    })
    .await;
    let last = container_status(&pod)
        .unwrap()
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(last.exit_code, 137);
    assert_eq!(pod_ip(&pod), ip);
    assert_eq!(
        http_get(&format!("{ip}:8080")).await.unwrap(),
        "HTTP/1.0 200 OK"
    );
    let previous = hollow_agent::LogOptions {
        previous: true,
        ..hollow_agent::LogOptions::default()
    };
    let log = hollow_agent::read_log(data.path(), "default", "web-0", "web", &previous).await;
    assert!(log.is_ok(), "the previous run's log is kept");

    // Graceful deletion stops the process, then the pod leaves the API.
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    pods.delete("web-0", &Default::default()).await.unwrap();
    wait_until_gone(&client, "web-0").await;
    assert!(
        processes_with(&ip).is_empty(),
        "the pod's process outlived it"
    );
    // The work directory goes right after the pod leaves the API.
    let directory = pod_directory(data.path(), &pod);
    let mut waited = 0;
    while directory.exists() && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(!directory.exists(), "the pod's directory outlived it");
    agent.stop().await;
}

#[tokio::test]
async fn an_exec_readiness_probe_follows_a_file() {
    let _cleanup = KillOnDrop(&["sleep 3601"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    let container = Container {
        name: "app".into(),
        command: strings(&["sh", "-c", "touch healthy && exec sleep 3601"]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: strings(&["test", "-f", "healthy"]),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    };
    create(&client, &pod("app", "n1", container)).await;
    let pod = wait_for(&client, "app", "Ready", is_ready).await;
    assert_eq!(processes_with("sleep 3601").len(), 1);
    let removed = std::time::Instant::now();
    std::fs::remove_file(pod_directory(data.path(), &pod).join("work/healthy")).unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    while is_ready(&pods.get("app").await.unwrap()) {
        assert!(removed.elapsed() < WAIT, "the pod stayed Ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "exec readiness probe (period 1 s): Ready=False in the API {} ms after the file was removed",
        removed.elapsed().as_millis()
    );
    let pod = wait_for(&client, "app", "not Ready", |pod| !is_ready(pod)).await;
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("False"));
    let container = container_status(&pod).unwrap();
    assert!(!container.ready);
    assert!(
        container.state.as_ref().unwrap().running.is_some(),
        "readiness does not restart"
    );
    assert_eq!(restart_count(&pod), 0);
    std::fs::write(pod_directory(data.path(), &pod).join("work/healthy"), b"").unwrap();
    wait_for(&client, "app", "Ready again", is_ready).await;

    pods.delete("app", &Default::default()).await.unwrap();
    wait_until_gone(&client, "app").await;
    assert!(processes_with("sleep 3601").is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn bad_input_ends_in_kubelet_like_status() {
    let _cleanup = KillOnDrop(&["sleep 3602", "sleep 3603"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));

    let missing = Container {
        name: "missing".into(),
        command: strings(&["/no/such/command-hollow"]),
        ..Container::default()
    };
    create(&client, &pod("missing", "n1", missing)).await;

    let image_only = Container {
        name: "nginx".into(),
        image: Some("nginx".into()),
        ..Container::default()
    };
    create(&client, &pod("image-only", "n1", image_only)).await;

    let closed_port = Container {
        name: "closed".into(),
        command: strings(&["sleep", "3602"]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(9),
                host: None,
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    };
    create(&client, &pod("closed-port", "n1", closed_port)).await;

    let hanging = Container {
        name: "hang".into(),
        command: strings(&["sleep", "3603"]),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: strings(&["sleep", "30"]),
            }),
            period_seconds: Some(1),
            timeout_seconds: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    };
    create(&client, &pod("hanging-probe", "n1", hanging)).await;

    let pod = wait_for(&client, "missing", "crash looping", |pod| {
        container_status(pod).is_some_and(|status| {
            status.restart_count >= 1
                && status
                    .state
                    .as_ref()
                    .and_then(|state| state.waiting.as_ref())
                    .is_some_and(|waiting| waiting.reason.as_deref() == Some("CrashLoopBackOff"))
        })
    })
    .await;
    let status = container_status(&pod).unwrap();
    let last = status
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(last.exit_code, 128);
    assert_eq!(last.reason.as_deref(), Some("StartError"));
    assert!(
        last.message
            .as_deref()
            .unwrap()
            .contains("executable file not found"),
        "{last:?}"
    );
    assert!(!is_ready(&pod));

    let pod = wait_for(&client, "image-only", "not runnable", |pod| {
        container_status(pod).is_some()
    })
    .await;
    let waiting = container_status(&pod)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImageNotRunnable"));
    assert!(
        waiting
            .message
            .unwrap()
            .contains("image nginx cannot be pulled here")
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );

    for name in ["closed-port", "hanging-probe"] {
        // Running but never ready, and never restarted.
        wait_for(&client, name, "running", |pod| {
            container_status(pod).is_some_and(|status| {
                status
                    .state
                    .as_ref()
                    .is_some_and(|state| state.running.is_some())
            })
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let pod = wait_for(&client, name, "still running and unready", |current| {
            restart_count(current) == 0
                && !is_ready(current)
                && current.status.as_ref().unwrap().phase.as_deref() == Some("Running")
        })
        .await;
        let ready_condition = pod
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|condition| condition.type_ == "Ready")
            .unwrap()
            .clone();
        assert_eq!(
            ready_condition.reason.as_deref(),
            Some("ContainersNotReady")
        );
        let _ = pod_ip(&pod);
    }
    // The hung probe commands are killed at their timeout.
    assert!(processes_with("sleep 30").len() <= 1);

    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    for name in ["missing", "image-only", "closed-port", "hanging-probe"] {
        pods.delete(name, &Default::default()).await.unwrap();
    }
    for name in ["missing", "image-only", "closed-port", "hanging-probe"] {
        wait_until_gone(&client, name).await;
    }
    assert!(processes_with("sleep 3602").is_empty());
    assert!(processes_with("sleep 3603").is_empty());
    agent.stop().await;
}

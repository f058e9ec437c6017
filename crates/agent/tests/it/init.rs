//! Init containers with real processes: run in order to completion before the app
//! containers, retried or failing the pod by restart policy, and reported the way kubectl
//! derives `Init:1/2` from.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::DeleteParams;

use crate::*;

fn shell(name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        command: strings(&["sh", "-c", script]),
        ..Container::default()
    }
}

fn with_init_containers(mut pod: Pod, init: Vec<Container>) -> Pod {
    pod.spec.as_mut().unwrap().init_containers = Some(init);
    pod
}

fn init_statuses(pod: &Pod) -> Vec<ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|status| status.init_container_statuses.clone())
        .unwrap_or_default()
}

fn waiting_reason(status: &ContainerStatus) -> Option<String> {
    status.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

fn is_running(status: &ContainerStatus) -> bool {
    status
        .state
        .as_ref()
        .is_some_and(|state| state.running.is_some())
}

fn phase(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.phase.clone()
}

/// The STATUS column `kubectl get pods` shows: the API server's Table rendering of the pod.
async fn kubectl_status(client: &kube::Client, name: &str) -> String {
    let request = http::Request::get(format!("/api/v1/namespaces/default/pods/{name}"))
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(request).await.unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["name"].as_str().unwrap())
        .collect();
    let status = columns.iter().position(|name| *name == "Status").unwrap();
    table["rows"][0]["cells"][status]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn init_containers_run_in_order_before_the_app_containers() {
    let _cleanup = KillOnDrop(&["sleep 3630", "go-first", "go-second"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    // Each init container records its turn and waits for the test to let it finish.
    let gate = |name: &str, file: &str| {
        shell(
            name,
            &format!("echo {name} >> order; while [ ! -e {file} ]; do sleep 0.05; done"),
        )
    };
    let app = shell("app", "echo app >> order; exec sleep 3630");
    let created = create(
        &client,
        &with_init_containers(
            pod("initialized", "n1", app),
            vec![gate("first", "go-first"), gate("second", "go-second")],
        ),
    )
    .await;
    let work = pod_directory(data.path(), &created).join("work");

    let pod = wait_for(
        &client,
        "initialized",
        "running its first init container",
        |pod| init_statuses(pod).first().is_some_and(is_running),
    )
    .await;
    let init = init_statuses(&pod);
    assert_eq!(init.len(), 2);
    assert_eq!(waiting_reason(&init[1]).as_deref(), Some("PodInitializing"));
    assert!(!init[0].ready);
    assert_eq!(init[0].started, Some(false));
    let app_status = container_status(&pod).unwrap();
    assert_eq!(
        waiting_reason(app_status).as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(phase(&pod).as_deref(), Some("Pending"));
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("False"));
    assert!(!is_ready(&pod));
    assert_eq!(kubectl_status(&client, "initialized").await, "Init:0/2");
    assert!(processes_with("sleep 3630").is_empty());

    std::fs::write(work.join("go-first"), b"").unwrap();
    let pod = wait_for(
        &client,
        "initialized",
        "running its second init container",
        |pod| init_statuses(pod).get(1).is_some_and(is_running),
    )
    .await;
    let first = &init_statuses(&pod)[0];
    let terminated = first.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    assert!(first.ready);
    assert_eq!(kubectl_status(&client, "initialized").await, "Init:1/2");
    assert!(processes_with("sleep 3630").is_empty());

    std::fs::write(work.join("go-second"), b"").unwrap();
    let pod = wait_for(&client, "initialized", "Ready", is_ready).await;
    assert_eq!(phase(&pod).as_deref(), Some("Running"));
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    for status in init_statuses(&pod) {
        let terminated = status.state.unwrap().terminated.unwrap();
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert_eq!(status.restart_count, 0);
    }
    assert_eq!(kubectl_status(&client, "initialized").await, "Running");
    assert_eq!(
        std::fs::read_to_string(work.join("order")).unwrap(),
        "first\nsecond\napp\n"
    );
    assert_eq!(processes_with("sleep 3630").len(), 1);

    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    pods.delete("initialized", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_gone(&client, "initialized").await;
    assert!(processes_with("sleep 3630").is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn a_failed_init_container_fails_a_pod_that_never_restarts() {
    let _cleanup = KillOnDrop(&["sleep 3631"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    let mut never = with_init_containers(
        pod("never", "n1", shell("app", "exec sleep 3631")),
        vec![shell("setup", "echo cannot; exit 3")],
    );
    never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    create(&client, &never).await;

    let pod = wait_for(&client, "never", "Failed", |pod| {
        phase(pod).as_deref() == Some("Failed")
    })
    .await;
    let setup = &init_statuses(&pod)[0];
    let terminated = setup.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(setup.restart_count, 0);
    assert!(!setup.ready);
    assert_eq!(
        waiting_reason(container_status(&pod).unwrap()).as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("False"));
    assert_eq!(kubectl_status(&client, "never").await, "Init:Error");
    // The app container never ran.
    assert!(processes_with("sleep 3631").is_empty());
    let options = hollow_agent::LogOptions::default();
    let log = hollow_agent::read_log(data.path(), "default", "never", "setup", &options)
        .await
        .unwrap();
    let chunks: Vec<_> = futures::StreamExt::collect(log).await;
    let text: Vec<u8> = chunks
        .into_iter()
        .map(|chunk| chunk.unwrap())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(text, b"cannot\n");
    agent.stop().await;
}

#[tokio::test]
async fn a_failed_init_container_is_retried_with_back_off() {
    let _cleanup = KillOnDrop(&["sleep 3632"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    // Fails on its first two runs (the second failure waits out a back-off), then succeeds.
    let flaky = shell(
        "flaky",
        "runs=$(cat runs 2>/dev/null || echo 0); runs=$((runs + 1)); echo $runs > runs; [ $runs -ge 3 ]",
    );
    create(
        &client,
        &with_init_containers(
            pod("retried", "n1", shell("app", "exec sleep 3632")),
            vec![flaky],
        ),
    )
    .await;

    let pod = wait_for(
        &client,
        "retried",
        "backing off its init container",
        |pod| {
            init_statuses(pod)
                .first()
                .and_then(waiting_reason)
                .as_deref()
                == Some("CrashLoopBackOff")
        },
    )
    .await;
    let flaky = &init_statuses(&pod)[0];
    let last = flaky
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(last.exit_code, 1);
    assert_eq!(phase(&pod).as_deref(), Some("Pending"));
    assert_eq!(
        kubectl_status(&client, "retried").await,
        "Init:CrashLoopBackOff"
    );
    assert!(processes_with("sleep 3632").is_empty());

    let pod = wait_for(&client, "retried", "Ready", is_ready).await;
    let flaky = &init_statuses(&pod)[0];
    assert_eq!(flaky.restart_count, 2);
    assert_eq!(
        flaky
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
    assert_eq!(processes_with("sleep 3632").len(), 1);
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    pods.delete("retried", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_gone(&client, "retried").await;
    agent.stop().await;
}

#[tokio::test]
async fn simulated_init_containers_complete_at_once() {
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let mut config = test_config("sim", data.path());
    config.simulate = true;
    let agent = Agent::start(client.clone(), config);
    create(
        &client,
        &with_init_containers(
            pod("simulated", "sim", shell("app", "exit 1")),
            vec![shell("first", "exit 1"), shell("second", "exit 1")],
        ),
    )
    .await;
    let pod = wait_for(&client, "simulated", "Ready", is_ready).await;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    let init = init_statuses(&pod);
    assert_eq!(init.len(), 2);
    for status in &init {
        let terminated = status.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(terminated.reason.as_deref(), Some("Completed"));
        assert!(status.ready);
    }
    assert_eq!(kubectl_status(&client, "simulated").await, "Running");
    agent.stop().await;
}

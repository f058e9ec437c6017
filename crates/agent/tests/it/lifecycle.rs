//! Restart policies, liveness restarts, and agent restarts: adopted processes and orphans.

use k8s_openapi::api::core::v1::{Container, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DeleteParams;

use crate::*;

fn sleeper(name: &str, seconds: &str) -> Container {
    Container {
        name: name.into(),
        command: strings(&["sleep", seconds]),
        ..Container::default()
    }
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_processes_and_kills_orphans() {
    let _cleanup = KillOnDrop(&["sleep 3604", "sleep 3605", "sleep 3607"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let mut config = test_config("n1", data.path());
    config.stop_pods_on_shutdown = false;
    let agent = Agent::start(client.clone(), config.clone());
    create(&client, &pod("keep", "n1", sleeper("keep", "3604"))).await;
    create(&client, &pod("orphan", "n1", sleeper("orphan", "3605"))).await;
    create(
        &client,
        &pod("terminating", "n1", sleeper("terminating", "3607")),
    )
    .await;
    let keep = wait_for(&client, "keep", "Ready", is_ready).await;
    wait_for(&client, "orphan", "Ready", is_ready).await;
    wait_for(&client, "terminating", "Ready", is_ready).await;
    let kept = processes_with("sleep 3604");
    assert_eq!(kept.len(), 1);
    agent.stop().await;
    assert_eq!(
        processes_with("sleep 3604"),
        kept,
        "the agent leaves processes running"
    );
    let orphans = processes_with("sleep 3605");
    assert_eq!(orphans.len(), 1, "{}", describe_processes(&orphans));

    // While no agent runs, the orphan's pod is removed for good.
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    pods.delete("orphan", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_until_gone(&client, "orphan").await;
    // Another is deleted gracefully: it waits for an agent to stop its process.
    pods.delete("terminating", &DeleteParams::default())
        .await
        .unwrap();
    let marked = pods.get("terminating").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(processes_with("sleep 3607").len(), 1);

    let agent = Agent::start(client.clone(), config.clone());
    wait_no_processes("sleep 3605").await;
    wait_until_gone(&client, "terminating").await;
    assert!(processes_with("sleep 3607").is_empty());
    // The kept pod's process is the same one, with no restart and the same address.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = wait_for(&client, "keep", "Ready", is_ready).await;
    assert_eq!(processes_with("sleep 3604"), kept);
    assert_eq!(restart_count(&again), 0);
    assert_eq!(pod_ip(&again), pod_ip(&keep));

    // And the new agent stops it when the pod is deleted.
    pods.delete("keep", &DeleteParams::default()).await.unwrap();
    wait_until_gone(&client, "keep").await;
    assert!(processes_with("sleep 3604").is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let _cleanup = KillOnDrop(&["sleep 3606"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    let mut container = sleeper("live", "3606");
    container.liveness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(9),
            host: None,
        }),
        period_seconds: Some(1),
        failure_threshold: Some(2),
        ..Probe::default()
    });
    create(&client, &pod("live", "n1", container)).await;
    let pod = wait_for(&client, "live", "restarted", |pod| restart_count(pod) >= 1).await;
    let last = container_status(&pod)
        .unwrap()
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    // SIGTERM ended it.
    assert_eq!(last.exit_code, 143);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    pods.delete("live", &DeleteParams::default()).await.unwrap();
    wait_until_gone(&client, "live").await;
    assert!(processes_with("sleep 3606").is_empty());
    agent.stop().await;
}

#[tokio::test]
async fn restart_policies_decide_the_phase() {
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    let exiting = |name: &str, code: &str| Container {
        name: name.into(),
        command: strings(&["sh", "-c", &format!("echo bye; exit {code}")]),
        ..Container::default()
    };
    let mut never = pod("never", "n1", exiting("never", "3"));
    never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    create(&client, &never).await;
    let mut on_failure = pod("on-failure", "n1", exiting("on-failure", "0"));
    on_failure.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    create(&client, &on_failure).await;

    let pod = wait_for(&client, "never", "Failed", |pod| {
        pod.status.as_ref().unwrap().phase.as_deref() == Some("Failed")
    })
    .await;
    let terminated = container_status(&pod)
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(restart_count(&pod), 0);

    let pod = wait_for(&client, "on-failure", "Succeeded", |pod| {
        pod.status.as_ref().unwrap().phase.as_deref() == Some("Succeeded")
    })
    .await;
    let terminated = container_status(&pod)
        .unwrap()
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    let options = hollow_agent::LogOptions::default();
    let log = hollow_agent::read_log(data.path(), "default", "on-failure", "on-failure", &options)
        .await
        .unwrap();
    let chunks: Vec<_> = futures::StreamExt::collect(log).await;
    assert_eq!(
        chunks
            .into_iter()
            .map(|chunk| chunk.unwrap())
            .collect::<Vec<_>>()
            .concat(),
        b"bye\n"
    );
    agent.stop().await;
}

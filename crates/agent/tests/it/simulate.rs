//! Simulate mode: many pods become Running and Ready without processes; the not-ready
//! annotation flips readiness.

use std::collections::HashSet;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::*;

const PODS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simulated_pods_become_ready() {
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let mut config = hollow_agent::AgentConfig::new("sim", data.path());
    config.simulate = true;
    // A /24 holds 253 pods; this node gets a larger range.
    config.pod_cidr = Some("127.245.0.0/20".into());

    // The pods exist before the agent starts, so the figure is the agent's alone.
    let container = Container {
        name: "nginx".into(),
        image: Some("nginx".into()),
        ..Container::default()
    };
    futures::stream::iter(0..PODS)
        .map(|index| {
            let client = client.clone();
            let pod = pod(&format!("sim-{index}"), "sim", container.clone());
            async move { create(&client, &pod).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;

    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let agent = Agent::start(client.clone(), config);
    let mut ready = HashSet::new();
    let mut addresses = HashSet::new();
    let events = watcher(pods.clone(), watcher::Config::default()).applied_objects();
    let mut events = std::pin::pin!(events);
    let deadline = tokio::time::Instant::now() + WAIT;
    while ready.len() < PODS {
        let pod = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {PODS} pods became Ready", ready.len()))
            .unwrap()
            .unwrap();
        if is_ready(&pod) {
            let status = pod.status.as_ref().unwrap();
            assert_eq!(status.phase.as_deref(), Some("Running"));
            let container = container_status(&pod).unwrap();
            assert!(container.ready && container.started == Some(true));
            assert!(container.state.as_ref().unwrap().running.is_some());
            if ready.insert(pod.metadata.name.clone().unwrap()) {
                assert!(
                    addresses.insert(pod_ip(&pod)),
                    "an address was handed out twice"
                );
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "simulate mode: {PODS} pods Running and Ready in {:.3} s ({:.0} pods/s)",
        elapsed.as_secs_f64(),
        PODS as f64 / elapsed.as_secs_f64()
    );

    // The annotation holds one pod not ready, and letting go makes it ready again.
    let hold = json!({"metadata": {"annotations": {hollow_agent::NOT_READY_ANNOTATION: "true"}}});
    pods.patch("sim-7", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    let held = wait_for(&client, "sim-7", "not Ready", |pod| !is_ready(pod)).await;
    assert!(!container_status(&held).unwrap().ready);
    let release = json!({"metadata": {"annotations": {hollow_agent::NOT_READY_ANNOTATION: null}}});
    pods.patch("sim-7", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    wait_for(&client, "sim-7", "Ready", is_ready).await;

    // Deleting a simulated pod needs no processes to stop.
    pods.delete("sim-8", &Default::default()).await.unwrap();
    wait_until_gone(&client, "sim-8").await;
    agent.stop().await;
}

/// Process mode at scale: real processes, each in its own group, all stopped on deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_process_pods_start_and_stop() {
    const COUNT: usize = 100;
    let _cleanup = KillOnDrop(&["sleep 3608"]);
    let server = LocalApiServer::start().await;
    let client = server.client();
    let data = TempDir::new().unwrap();
    let container = Container {
        name: "sleep".into(),
        command: strings(&["sleep", "3608"]),
        ..Container::default()
    };
    futures::stream::iter(0..COUNT)
        .map(|index| {
            let client = client.clone();
            let pod = pod(&format!("proc-{index}"), "n1", container.clone());
            async move { create(&client, &pod).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let agent = Agent::start(client.clone(), test_config("n1", data.path()));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = pods.list(&Default::default()).await.unwrap();
        if list.items.iter().filter(|pod| is_ready(pod)).count() == COUNT {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all process pods became Ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "process mode: {COUNT} pods Running and Ready in {:.3} s ({:.0} pods/s)",
        elapsed.as_secs_f64(),
        COUNT as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(processes_with("sleep 3608").len(), COUNT);
    pods.delete_collection(&Default::default(), &Default::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods were not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(processes_with("sleep 3608").is_empty());
    agent.stop().await;
}

//! A Deployment rolled out and rolled over, then deleted with its ReplicaSets and pods.

use hollow_testkit::{wait_for, write_file};
use serde_json::Value;

use crate::cluster::{Cluster, WAIT};

fn manifest(image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 3
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: api
        image: {image}
"#
    )
}

fn pods(cluster: &Cluster) -> Vec<Value> {
    cluster.kubectl_json(&["get", "pods", "-l", "app=api"])["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Marks every bound, not yet ready pod of the Deployment Running and Ready.
fn ready_all(cluster: &Cluster, next_ip: &mut u32) {
    for pod in pods(cluster) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let bound = pod["spec"]["nodeName"].as_str().is_some();
        let ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
            });
        if bound && !ready && pod["metadata"]["deletionTimestamp"].is_null() {
            *next_ip += 1;
            cluster.set_pod_ready(name, &format!("10.244.2.{next_ip}"), true);
        }
    }
}

#[test]
fn deployment_rolls_out_rolls_over_and_is_collected() {
    let cluster = Cluster::start();
    let mut next_ip = 0;
    let path = write_file(
        cluster.directory.path(),
        "api.yaml",
        &manifest("example/api:1"),
    );
    cluster.kubectl.ok(["apply", "-f", path.to_str().unwrap()]);
    wait_for("three ready pods", WAIT, || {
        ready_all(&cluster, &mut next_ip);
        let status = cluster.kubectl_json(&["get", "deployment", "api"])["status"].clone();
        (status["availableReplicas"] == 3 && status["updatedReplicas"] == 3).then_some(())
    });
    cluster
        .kubectl
        .ok(["rollout", "status", "deployment/api", "--timeout=30s"]);
    let first_pod = &pods(&cluster)[0];
    let name = first_pod["metadata"]["name"].as_str().unwrap();
    let hash = first_pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert!(
        name.starts_with(&format!("api-{hash}-")),
        "{name} is <replicaset>-<suffix>"
    );

    // A new template rolls over to a new ReplicaSet.
    let path = write_file(
        cluster.directory.path(),
        "api.yaml",
        &manifest("example/api:2"),
    );
    cluster.kubectl.ok(["apply", "-f", path.to_str().unwrap()]);
    wait_for("rollover", WAIT, || {
        ready_all(&cluster, &mut next_ip);
        let replica_sets = cluster.kubectl_json(&["get", "replicasets", "-l", "app=api"]);
        let sizes: Vec<(i64, i64)> = replica_sets["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|set| {
                (
                    set["spec"]["replicas"].as_i64().unwrap_or(0),
                    set["status"]["replicas"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let live = pods(&cluster)
            .iter()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .count();
        (sizes.len() == 2 && sizes.contains(&(3, 3)) && sizes.contains(&(0, 0)) && live == 3)
            .then_some(())
    });
    cluster
        .kubectl
        .ok(["rollout", "status", "deployment/api", "--timeout=30s"]);
    let progressing = cluster.kubectl_json(&["get", "deployment", "api"])["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");

    cluster.kubectl.ok(["delete", "deployment", "api"]);
    wait_for("ReplicaSets and pods collected", WAIT, || {
        let replica_sets = cluster.kubectl_json(&["get", "replicasets", "-l", "app=api"]);
        (replica_sets["items"].as_array().unwrap().is_empty() && pods(&cluster).is_empty())
            .then_some(())
    });
}

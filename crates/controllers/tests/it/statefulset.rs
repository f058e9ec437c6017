//! The `web` StatefulSet behind its headless Service, as in the issue.

use hollow_testkit::{wait_for, write_file};
use serde_json::Value;

use crate::cluster::{Cluster, WAIT};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: web
    port: 80
    targetPort: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: example/web
        ports:
        - name: http
          containerPort: 8080
"#;

fn ip(ordinal: usize) -> String {
    format!("10.244.0.{}", ordinal + 10)
}

/// (hostname, ip, ready, serving, terminating) of every endpoint in the Service's slices.
fn endpoints(cluster: &Cluster) -> Vec<(String, String, bool, bool, bool)> {
    let slices = cluster.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let mut found: Vec<(String, String, bool, bool, bool)> = slices["items"]
        .as_array()
        .expect("items")
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|endpoint| {
            let flag = |name: &str| endpoint["conditions"][name].as_bool().unwrap_or(false);
            (
                endpoint["hostname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                endpoint["addresses"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                flag("ready"),
                flag("serving"),
                flag("terminating"),
            )
        })
        .collect();
    found.sort();
    found
}

fn all_ready(count: usize) -> Vec<(String, String, bool, bool, bool)> {
    (0..count)
        .map(|ordinal| (format!("web-{ordinal}"), ip(ordinal), true, true, false))
        .collect()
}

#[test]
fn web_statefulset_gets_ordered_pods_and_headless_endpoints() {
    let cluster = Cluster::start();
    let manifest = write_file(cluster.directory.path(), "web.yaml", MANIFEST);
    cluster
        .kubectl
        .ok(["apply", "-f", manifest.to_str().unwrap()]);

    // web-0 first, with its stable identity.
    let web0 = cluster.wait_and_ready("web-0", &ip(0));
    let spec = web0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let labels = web0.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "0");

    // OrderedReady: web-2 only after web-1 is Ready.
    wait_for("web-1", WAIT, || cluster.pod("web-1"));
    cluster.set_pod_ready("web-1", &ip(1), false);
    wait_for("the set to observe web-1 not ready", WAIT, || {
        let status = cluster.kubectl_json(&["get", "statefulset", "web"])["status"].clone();
        (status["replicas"] == 2 && status["readyReplicas"] == 1).then_some(())
    });
    assert!(
        cluster.pod("web-2").is_none(),
        "web-2 must wait for web-1 to be Ready"
    );
    cluster.set_pod_ready("web-1", &ip(1), true);
    cluster.wait_and_ready("web-2", &ip(2));

    // The slices list exactly the ready pods, by hostname.
    wait_for("three ready endpoints", WAIT, || {
        (endpoints(&cluster) == all_ready(3)).then_some(())
    });
    let slices = cluster.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let slice = &slices["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");

    cluster
        .kubectl
        .ok(["rollout", "status", "statefulset/web", "--timeout=30s"]);
    let described = cluster.kubectl.ok(["describe", "service", "web"]);
    let endpoints_line = described
        .lines()
        .find(|line| line.starts_with("Endpoints:"))
        .unwrap_or_default()
        .to_string();
    for ordinal in 0..3 {
        assert!(
            endpoints_line.contains(&format!("{}:8080", ip(ordinal))),
            "describe shows {endpoints_line:?}"
        );
    }

    // A pod turning not-ready flips its conditions.
    cluster.set_pod_ready("web-1", &ip(1), false);
    wait_for("web-1 not ready in the slice", WAIT, || {
        endpoints(&cluster)
            .contains(&("web-1".into(), ip(1), false, false, false))
            .then_some(())
    });

    // publishNotReadyAddresses (and the tolerate-unready annotation) keep it ready.
    cluster.kubectl.ok([
        "patch",
        "service",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ]);
    wait_for("web-1 published although not ready", WAIT, || {
        endpoints(&cluster)
            .contains(&("web-1".into(), ip(1), true, false, false))
            .then_some(())
    });
    cluster.kubectl.ok([
        "patch",
        "service",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":false}}"#,
    ]);
    wait_for("web-1 unready again", WAIT, || {
        endpoints(&cluster)
            .contains(&("web-1".into(), ip(1), false, false, false))
            .then_some(())
    });
    cluster.kubectl.ok([
        "annotate",
        "service",
        "web",
        "service.alpha.kubernetes.io/tolerate-unready-endpoints=true",
    ]);
    wait_for("web-1 published through the annotation", WAIT, || {
        endpoints(&cluster)
            .contains(&("web-1".into(), ip(1), true, false, false))
            .then_some(())
    });
    cluster.set_pod_ready("web-1", &ip(1), true);

    // Scale 3 → 5 → 2.
    cluster
        .kubectl
        .ok(["scale", "statefulset", "web", "--replicas=5"]);
    cluster.wait_and_ready("web-3", &ip(3));
    cluster.wait_and_ready("web-4", &ip(4));
    wait_for("five endpoints", WAIT, || {
        (endpoints(&cluster) == all_ready(5)).then_some(())
    });
    cluster
        .kubectl
        .ok(["rollout", "status", "statefulset/web", "--timeout=30s"]);
    cluster
        .kubectl
        .ok(["scale", "statefulset", "web", "--replicas=2"]);
    wait_for("scale down to two pods", WAIT, || {
        let names: Vec<String> = cluster.kubectl_json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        (names == ["web-0", "web-1"]).then_some(())
    });
    wait_for("two endpoints", WAIT, || {
        (endpoints(&cluster) == all_ready(2)).then_some(())
    });
    cluster
        .kubectl
        .ok(["rollout", "status", "statefulset/web", "--timeout=30s"]);

    // Events say what the controller did.
    let reasons = cluster.event_reasons("web");
    assert!(
        reasons.iter().any(|reason| reason == "SuccessfulCreate"),
        "events: {reasons:?}"
    );
    assert!(
        reasons.iter().any(|reason| reason == "SuccessfulDelete"),
        "events: {reasons:?}"
    );

    // Deleting the StatefulSet removes its pods; deleting the Service its slices.
    cluster.kubectl.ok(["delete", "statefulset", "web"]);
    wait_for("pods gone", WAIT, || {
        cluster.kubectl_json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    cluster.kubectl.ok(["delete", "service", "web"]);
    wait_for("slices and endpoints gone", WAIT, || {
        let slices = cluster.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ]);
        let endpoints = cluster.kubectl.run(["get", "endpoints", "web"]);
        (slices["items"].as_array().unwrap().is_empty() && !endpoints.status.success())
            .then_some(())
    });
}

#[test]
fn bad_input_is_reported_without_crashing_the_controllers() {
    let cluster = Cluster::start();
    let manifest = write_file(
        cluster.directory.path(),
        "bad.yaml",
        r#"
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  clusterIP: None
  selector:
    app: nobody
  ports:
  - name: web
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: wrong-port
spec:
  clusterIP: None
  selector:
    app: lonely
  ports:
  - name: web
    port: 80
    targetPort: no-such-port
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: lonely
spec:
  serviceName: missing
  replicas: 1
  selector:
    matchLabels:
      app: lonely
  template:
    metadata:
      labels:
        app: lonely
    spec:
      containers:
      - name: main
        image: example/lonely
        ports:
        - name: http
          containerPort: 8080
"#,
    );
    cluster
        .kubectl
        .ok(["apply", "-f", manifest.to_str().unwrap()]);

    // A selector that matches nothing: one empty placeholder slice and an empty Endpoints.
    wait_for("placeholder slice for nobody", WAIT, || {
        let slices = cluster.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=nobody",
        ]);
        let items = slices["items"].as_array().unwrap().clone();
        (items.len() == 1 && items[0]["endpoints"].as_array().is_none_or(Vec::is_empty))
            .then_some(())
    });

    // A StatefulSet whose governing Service is missing still runs its pod, with a warning.
    cluster.wait_and_ready("lonely-0", "10.244.1.1");
    wait_for("MissingGoverningService event", WAIT, || {
        cluster
            .event_reasons("lonely")
            .iter()
            .any(|reason| reason == "MissingGoverningService")
            .then_some(())
    });

    // A targetPort name no container has: the pod is listed without that port, with a warning.
    wait_for("endpoint without the port", WAIT, || {
        let slices = cluster.kubectl_json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=wrong-port",
        ]);
        let items = slices["items"].as_array().unwrap().clone();
        let listed = items.iter().any(|slice| {
            slice["endpoints"]
                .as_array()
                .is_some_and(|endpoints| !endpoints.is_empty())
                && slice["ports"].as_array().is_none_or(Vec::is_empty)
        });
        listed.then_some(())
    });
    wait_for("FailedToResolvePort event", WAIT, || {
        cluster
            .event_reasons("wrong-port")
            .iter()
            .any(|reason| reason == "FailedToResolvePort")
            .then_some(())
    });

    // The controllers are still alive: a new replica appears.
    cluster
        .kubectl
        .ok(["scale", "statefulset", "lonely", "--replicas=2"]);
    cluster.wait_and_ready("lonely-1", "10.244.1.2");
    let _: Value = cluster.kubectl_json(&["get", "statefulset", "lonely"]);
}

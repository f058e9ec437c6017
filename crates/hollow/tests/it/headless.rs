//! The heart of hollow: a StatefulSet behind a headless service gets EndpointSlices from the
//! controllers and DNS names from the DNS server, all driven through the real kubectl and
//! answered to the real dig. Pod status is written through the status subresource here (as
//! the node agent does for real pods).

use std::process::Command;
use std::time::Duration;

use hollow_testkit::{Hollow, Kubectl, TempDir, require_tool, wait_for, write_file};
use serde_json::Value;

use crate::start_control_plane;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-1
spec:
  podCIDR: 127.244.1.0/24
"#;

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 8080
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
        image: python:3.11
        ports:
        - name: http
          containerPort: 8080
"#;

/// `dig +short` answers, sorted.
pub fn dig(hollow: &Hollow, name: &str, record: &str) -> Vec<String> {
    let dig = require_tool("dig");
    let output = Command::new(dig)
        .args([
            format!("@{}", hollow.dns_address.ip()),
            "-p".into(),
            hollow.dns_address.port().to_string(),
            "+short".into(),
            "+time=2".into(),
            "+tries=1".into(),
            name.into(),
            record.into(),
        ])
        .output()
        .expect("running dig");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .filter(|line| !line.starts_with(';'))
        .collect();
    lines.sort();
    lines
}

fn pod_json(kubectl: &Kubectl, name: &str) -> Option<Value> {
    let output = kubectl.run(["get", "pod", name, "-o", "json"]);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).unwrap())
}

/// Marks a pod Running with an IP, Ready or not, as a node agent would.
fn report_status(kubectl: &Kubectl, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"hostIP":"127.0.0.1",
            "conditions":[{{"type":"Ready","status":"{ready}"}},{{"type":"ContainersReady","status":"{ready}"}}],
            "containerStatuses":[{{"name":"web","ready":{},"restartCount":0,"image":"python:3.11","imageID":"","started":true,"state":{{"running":{{}}}}}}]}}}}"#,
        ready == "True"
    );
    kubectl.ok([
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

/// Waits for a pod to be marked for deletion, then removes it as its node agent would.
fn finish_deletion(kubectl: &Kubectl, name: &str) {
    wait_for(
        &format!("{name} to be marked for deletion"),
        Duration::from_secs(30),
        || {
            pod_json(kubectl, name)
                .filter(|pod| pod["metadata"]["deletionTimestamp"].is_string())
                .map(drop)
        },
    );
    kubectl.ok(["delete", "pod", name, "--grace-period=0", "--force"]);
    wait_for(
        &format!("{name} to be gone"),
        Duration::from_secs(30),
        || pod_json(kubectl, name).is_none().then_some(()),
    );
}

#[test]
fn statefulset_pods_become_endpoints_and_dns_names() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let node = write_file(files.path(), "node.yaml", NODE);
    let web = write_file(files.path(), "web.yaml", WEB);
    kubectl.ok(["apply", "-f", node.to_str().unwrap()]);
    kubectl.ok([
        "patch",
        "node",
        "node-1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    kubectl.ok(["apply", "-f", web.to_str().unwrap()]);

    // OrderedReady: each pod appears only when the one before it is Running and Ready.
    for ordinal in 0..3 {
        let name = format!("web-{ordinal}");
        let pod = wait_for(
            &format!("{name} to be scheduled"),
            Duration::from_secs(30),
            || pod_json(&kubectl, &name).filter(|pod| pod["spec"]["nodeName"] == "node-1"),
        );
        assert_eq!(pod["spec"]["hostname"], name);
        assert_eq!(pod["spec"]["subdomain"], "web");
        if ordinal < 2 {
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                pod_json(&kubectl, &format!("web-{}", ordinal + 1)).is_none(),
                "web-{} must wait for {name} to be ready",
                ordinal + 1
            );
        }
        report_status(
            &kubectl,
            &name,
            &format!("127.244.1.{}", 10 + ordinal),
            true,
        );
    }

    // The slices list exactly the ready pods, with their hostnames.
    let slices = wait_for(
        "an EndpointSlice with 3 ready endpoints",
        Duration::from_secs(30),
        || {
            let output = kubectl.ok([
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "json",
            ]);
            let list: Value = serde_json::from_str(&output).unwrap();
            let endpoints: Vec<Value> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
                .collect();
            (endpoints.len() == 3
                && endpoints
                    .iter()
                    .all(|endpoint| endpoint["conditions"]["ready"] == true))
            .then_some(endpoints)
        },
    );
    let mut hostnames: Vec<&str> = slices
        .iter()
        .map(|endpoint| endpoint["hostname"].as_str().unwrap())
        .collect();
    hostnames.sort();
    assert_eq!(hostnames, ["web-0", "web-1", "web-2"]);

    // DNS: the service answers with every ready pod, each pod by its stable name.
    let all = wait_for(
        "web.default.svc.cluster.local to list 3 pods",
        Duration::from_secs(10),
        || {
            let answer = dig(&hollow, "web.default.svc.cluster.local", "A");
            (answer.len() == 3).then_some(answer)
        },
    );
    assert_eq!(all, ["127.244.1.10", "127.244.1.11", "127.244.1.12"]);
    assert_eq!(
        dig(&hollow, "web-1.web.default.svc.cluster.local", "A"),
        ["127.244.1.11"]
    );
    let srv = dig(&hollow, "_http._tcp.web.default.svc.cluster.local", "SRV");
    assert_eq!(srv.len(), 3, "{srv:?}");
    assert!(
        srv.iter()
            .any(|record| record.ends_with("8080 web-0.web.default.svc.cluster.local.")),
        "{srv:?}"
    );

    // A pod turning not-ready leaves the answer.
    report_status(&kubectl, "web-2", "127.244.1.12", false);
    wait_for(
        "web-2 to leave the DNS answer",
        Duration::from_secs(10),
        || {
            (dig(&hollow, "web.default.svc.cluster.local", "A") == ["127.244.1.10", "127.244.1.11"])
                .then_some(())
        },
    );

    // Ready again, back in the answer (an OrderedReady StatefulSet does not scale down while
    // a pod is unhealthy, as in Kubernetes).
    report_status(&kubectl, "web-2", "127.244.1.12", true);
    wait_for(
        "web-2 to return to the DNS answer",
        Duration::from_secs(10),
        || (dig(&hollow, "web.default.svc.cluster.local", "A").len() == 3).then_some(()),
    );

    // Scale down: the highest ordinal goes first, and its name goes with it.
    // The pods are on a node, so deletion is graceful: the controller marks the pod and the
    // node's agent (this test, here) finishes the deletion once its processes are gone.
    kubectl.ok(["scale", "statefulset", "web", "--replicas", "2"]);
    finish_deletion(&kubectl, "web-2");
    assert!(
        pod_json(&kubectl, "web-1").is_some(),
        "only the highest ordinal goes"
    );

    // Deleting the StatefulSet removes its pods.
    kubectl.ok(["delete", "statefulset", "web"]);
    finish_deletion(&kubectl, "web-1");
    finish_deletion(&kubectl, "web-0");
    wait_for("the DNS answer to empty", Duration::from_secs(10), || {
        dig(&hollow, "web.default.svc.cluster.local", "A")
            .is_empty()
            .then_some(())
    });
}

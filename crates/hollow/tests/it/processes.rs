//! The whole of `hollow up`: the node agent runs real processes on their own loopback pod IPs,
//! real readiness probes decide who is listed, and dig sees it.

use std::time::Duration;

use hollow_testkit::{TempDir, http_request, wait_for, write_file};
use serde_json::Value;

use crate::headless::dig;
use crate::start_hollow;

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// PIDs of live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(command) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let command = String::from_utf8_lossy(&command).replace('\0', " ");
        if command.contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_statefulset_of_real_processes_is_discovered_through_dns() {
    let hollow = start_hollow();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let manifest = write_file(files.path(), "web.yaml", &example("web-statefulset.yaml"));
    kubectl.ok(["apply", "-f", manifest.to_str().unwrap()]);
    kubectl.ok(["rollout", "status", "statefulset/web", "--timeout=120s"]);

    let pods: Value =
        serde_json::from_str(&kubectl.ok(["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    let mut addresses: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| pod["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    assert_eq!(addresses.len(), 3);
    let table = kubectl.ok(["get", "pods", "-l", "app=web", "--no-headers"]);
    for line in table.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[1..3], ["1/1", "Running"], "{table}");
    }

    let answer = wait_for(
        "web to resolve to the three pods",
        Duration::from_secs(10),
        || {
            let answer = dig(&hollow, "web.default.svc.cluster.local", "A");
            (answer == addresses).then_some(answer)
        },
    );
    let web_1: Value =
        serde_json::from_str(&kubectl.ok(["get", "pod", "web-1", "-o", "json"])).unwrap();
    assert_eq!(
        dig(&hollow, "web-1.web.default.svc.cluster.local", "A"),
        [web_1["status"]["podIP"].as_str().unwrap()]
    );
    for address in &answer {
        let (status, _) = http_request(
            format!("{address}:8080").parse().unwrap(),
            "GET",
            "/",
            None,
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "GET http://{address}:8080/");
    }

    // Deleting the StatefulSet leaves no process behind.
    assert!(!processes_with("http.server --bind 127.244.").is_empty());
    kubectl.ok(["delete", "statefulset", "web"]);
    wait_for(
        "the pods and their processes to be gone",
        Duration::from_secs(60),
        || {
            let pods = kubectl.ok(["get", "pods", "-o", "name"]);
            (pods.trim().is_empty() && processes_with("http.server --bind 127.244.").is_empty())
                .then_some(())
        },
    );
}

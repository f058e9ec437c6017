//! Acknowledged writes survive restarts and `kill -9`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hollow_testkit::{Hollow, http_request};

use crate::start_control_plane;

fn resource_version(hollow: &Hollow, path: &str) -> u64 {
    let (status, body) = http_request(hollow.api_address, "GET", path, None, b"").unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    let marker = "\"resourceVersion\":\"";
    let start = text.find(marker).expect("a resourceVersion") + marker.len();
    text[start..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn objects_and_revisions_survive_a_restart() {
    let mut hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = hollow_testkit::TempDir::new().unwrap();
    let namespace = hollow_testkit::write_file(
        files.path(),
        "keep.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: keep\n",
    );
    kubectl.ok(["create", "-f", namespace.to_str().unwrap()]);
    kubectl.ok(["run", "p1", "-n", "keep", "--image", "busybox"]);
    let before = resource_version(&hollow, "/api/v1/namespaces/keep/pods");

    hollow.restart();
    let kubectl = hollow.kubectl();
    let pods = kubectl.ok(["get", "pods", "-n", "keep", "-o", "name"]);
    assert_eq!(pods.trim(), "pod/p1");
    let after_restart = resource_version(&hollow, "/api/v1/namespaces/keep/pods");
    assert!(after_restart >= before);
    kubectl.ok(["run", "p2", "-n", "keep", "--image", "busybox"]);
    let after_write = resource_version(&hollow, "/api/v1/namespaces/keep/pods");
    assert!(
        after_write > before,
        "revisions keep growing: {after_write} > {before}"
    );
}

#[test]
fn kill_9_during_concurrent_creates_loses_no_acknowledged_write() {
    let mut hollow = start_control_plane();
    let address = hollow.api_address;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let acknowledged = acknowledged.clone();
            let next = next.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= 1000 {
                        return;
                    }
                    let name = format!("cm-{index}");
                    let body = format!(
                        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
                    );
                    match http_request(
                        address,
                        "POST",
                        "/api/v1/namespaces/default/pods",
                        Some("application/json"),
                        body.as_bytes(),
                    ) {
                        Ok((201, _)) => acknowledged.lock().unwrap().push(name),
                        Ok((status, body)) => panic!(
                            "create {name}: {status} {}",
                            String::from_utf8_lossy(&body)
                        ),
                        // The server died under this request: it was never acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill mid-way, once a good share of the creates were acknowledged.
    hollow_testkit::wait_for("300 acknowledged creates", Duration::from_secs(60), || {
        (acknowledged.lock().unwrap().len() >= 300).then_some(())
    });
    hollow.kill();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() < 1000,
        "the kill came before all creates finished"
    );

    hollow.restart();
    let (status, body) = http_request(
        hollow.api_address,
        "GET",
        "/api/v1/namespaces/default/pods",
        None,
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let stored: std::collections::HashSet<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !stored.contains(name.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged creates lost after kill -9: {lost:?}"
    );
}

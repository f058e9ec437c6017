//! The whole of `hollow up`: the node agent runs real processes on their own loopback pod IPs,
//! real readiness probes decide who is listed, and dig sees it.

use std::time::Duration;

use hollow_testkit::{TempDir, http_request, wait_for, write_file};
use serde_json::Value;

use crate::headless::dig;
use crate::{example, start_hollow};

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
    // A service range of its own: its proxy listens on the README's ClusterIP service, and a
    // parallel test's proxy must not hold the same address.
    let hollow = hollow_testkit::Hollow::start(
        env!("CARGO_BIN_EXE_hollow"),
        &["--service-cidr", "127.100.0.0/16"],
    );
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

    // The README's next step: the same pods behind a ClusterIP service, through the proxy.
    let services = write_file(
        files.path(),
        "web-services.yaml",
        &example("web-services.yaml"),
    );
    kubectl.ok(["apply", "-f", services.to_str().unwrap()]);
    let cluster_ip = kubectl.ok(["get", "svc", "web-vip", "-o", "jsonpath={.spec.clusterIP}"]);
    let virtual_address: std::net::SocketAddr =
        format!("{}:8080", cluster_ip.trim()).parse().unwrap();
    wait_for(
        "the ClusterIP service to answer through the proxy",
        Duration::from_secs(20),
        || {
            matches!(
                http_request(virtual_address, "GET", "/", None, b""),
                Ok((200, _))
            )
            .then_some(())
        },
    );

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

/// Lines of a running `kubectl logs -f`, read on a thread so the test can wait with a bound.
struct FollowedLogs {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl FollowedLogs {
    fn start(kubectl: &hollow_testkit::Kubectl, args: &[&str]) -> FollowedLogs {
        use std::io::BufRead;
        let mut child = kubectl
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("running kubectl logs -f");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        FollowedLogs { child, lines }
    }

    /// Waits up to `timeout` for a line containing `needle`.
    fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {needle:?} within {timeout:?}; saw {seen:?}"),
            }
        }
    }
}

impl Drop for FollowedLogs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kubectl_logs_reads_follows_and_shows_the_previous_run() {
    let hollow = start_hollow();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let directory = files.path().to_str().unwrap();
    // The script counts its runs in a file and waits for a trigger file before its second
    // line, so the test decides when output appears; its path identifies its process.
    let script = write_file(
        files.path(),
        "logs-demo.sh",
        &format!(
            "echo run >> {directory}/runs\n\
             run=$(wc -l < {directory}/runs)\n\
             echo \"hello-from-$POD_NAME run-$((run))\"\n\
             while [ ! -e {directory}/trigger ]; do sleep 0.1; done\n\
             echo after-trigger\n\
             while true; do sleep 1; done\n"
        ),
    );
    let script = script.to_str().unwrap().to_string();
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: logs-demo\nspec:\n  containers:\n  - name: main\n    image: busybox\n    command: [\"sh\", \"{script}\"]\n"
    );
    kubectl.ok_with_stdin(&["apply", "-f", "-"], &pod);
    kubectl.ok([
        "wait",
        "--for=condition=Ready",
        "pod/logs-demo",
        "--timeout=60s",
    ]);

    wait_for(
        "the first line in kubectl logs",
        Duration::from_secs(20),
        || {
            let logs = kubectl.ok(["logs", "logs-demo"]);
            logs.contains("hello-from-logs-demo run-1").then_some(())
        },
    );

    // A follower sees output written after it started.
    let followed = FollowedLogs::start(&kubectl, &["logs", "-f", "logs-demo"]);
    followed.wait_for_line("hello-from-logs-demo run-1", Duration::from_secs(20));
    write_file(files.path(), "trigger", "");
    followed.wait_for_line("after-trigger", Duration::from_secs(20));
    drop(followed);

    let no_previous = kubectl.fails(["logs", "logs-demo", "--previous"]);
    assert!(
        no_previous
            .contains("previous terminated container \"main\" in pod \"logs-demo\" not found"),
        "{no_previous}"
    );

    // Killing the process makes the agent start a second run; --previous shows the first.
    let pids = processes_with(&script);
    assert_eq!(pids.len(), 1, "one process runs {script}: {pids:?}");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let current = wait_for("the second run's output", Duration::from_secs(60), || {
        let logs = kubectl.run(["logs", "logs-demo"]);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        (logs.contains("run-2") && logs.contains("after-trigger")).then_some(logs)
    });
    assert!(!current.contains("run-1"), "{current}");
    let previous = kubectl.ok(["logs", "logs-demo", "--previous"]);
    assert_eq!(
        previous, "hello-from-logs-demo run-1\nafter-trigger\n",
        "the first run's log"
    );
    assert_eq!(
        kubectl.ok(["logs", "logs-demo", "-c", "main", "--tail=1"]),
        "after-trigger\n"
    );

    let missing = kubectl.fails(["logs", "no-such-pod"]);
    assert!(missing.contains("NotFound"), "{missing}");
    let wrong_container = kubectl.fails(["logs", "logs-demo", "-c", "sidecar"]);
    assert!(
        wrong_container.contains("container sidecar is not valid for pod logs-demo"),
        "{wrong_container}"
    );

    kubectl.ok(["delete", "pod", "logs-demo"]);
    wait_for(
        "the pod's process to be gone",
        Duration::from_secs(60),
        || processes_with(&script).is_empty().then_some(()),
    );
}

//! The kubectl session of the README: discovery, create, get (all its forms), watch, delete.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use hollow_testkit::{Kubectl, TempDir, wait_for, write_file};

use crate::start_control_plane;

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: nginx
  namespace: shop
  labels:
    app: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - name: web
    port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels:
    app: nginx
spec:
  hostname: web-0
  subdomain: nginx
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
      name: web
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    emptyDir:
      sizeLimit: 1Gi
"#;

#[test]
fn api_resources_lists_every_resource_with_its_short_name() {
    let hollow = start_control_plane();
    let output = hollow.kubectl().ok(["api-resources", "--no-headers"]);
    let rows: Vec<Vec<&str>> = output
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    let expect = [
        ("namespaces", Some("ns"), "v1", "false", "Namespace"),
        ("nodes", Some("no"), "v1", "false", "Node"),
        ("pods", Some("po"), "v1", "true", "Pod"),
        ("services", Some("svc"), "v1", "true", "Service"),
        ("endpoints", Some("ep"), "v1", "true", "Endpoints"),
        ("events", Some("ev"), "v1", "true", "Event"),
        (
            "endpointslices",
            None,
            "discovery.k8s.io/v1",
            "true",
            "EndpointSlice",
        ),
        (
            "deployments",
            Some("deploy"),
            "apps/v1",
            "true",
            "Deployment",
        ),
        ("replicasets", Some("rs"), "apps/v1", "true", "ReplicaSet"),
        (
            "statefulsets",
            Some("sts"),
            "apps/v1",
            "true",
            "StatefulSet",
        ),
    ];
    for (name, short, version, namespaced, kind) in expect {
        let mut wanted = vec![name];
        wanted.extend(short);
        wanted.extend([version, namespaced, kind]);
        assert!(
            rows.contains(&wanted),
            "api-resources has no row {wanted:?}:\n{output}"
        );
    }
}

#[test]
fn older_kubectl_discovers_through_v2beta1() {
    let hollow = start_control_plane();
    let kubectl = Kubectl::version("1.27", &hollow.kubeconfig);
    let output = kubectl.ok(["api-resources", "--no-headers"]);
    assert!(output.contains("statefulsets"), "{output}");
    // 1.27 reads OpenAPI v2 before v3 for create -f validation.
    let files = TempDir::new().unwrap();
    let namespace = write_file(files.path(), "namespace.yaml", NAMESPACE);
    let manifest = write_file(files.path(), "shop.yaml", MANIFEST);
    let created = kubectl.ok([
        "create",
        "-f",
        namespace.to_str().unwrap(),
        "-f",
        manifest.to_str().unwrap(),
    ]);
    assert!(created.contains("service/nginx created"), "{created}");
    let services = kubectl.ok(["get", "svc", "-n", "shop", "--no-headers"]);
    let row: Vec<&str> = services.split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["nginx", "ClusterIP", "None", "<none>", "80/TCP"]
    );
}

#[test]
fn create_get_watch_delete_with_kubectl() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let namespace = write_file(files.path(), "namespace.yaml", NAMESPACE);
    let namespace = namespace.to_str().unwrap();
    let manifest = write_file(files.path(), "shop.yaml", MANIFEST);
    let manifest = manifest.to_str().unwrap();

    let created = kubectl.ok(["create", "-f", namespace, "-f", manifest]);
    assert!(created.contains("namespace/shop created"), "{created}");
    assert!(created.contains("service/nginx created"), "{created}");
    assert!(created.contains("pod/web-0 created"), "{created}");

    // A second create is refused as AlreadyExists.
    let refused = kubectl.fails(["create", "-f", manifest]);
    assert!(refused.contains("AlreadyExists"), "{refused}");

    // get: the Table columns kubectl prints for each kind.
    let services = kubectl.ok(["get", "svc", "-n", "shop"]);
    let header: Vec<&str> = services
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row: Vec<&str> = services
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..5],
        ["nginx", "ClusterIP", "None", "<none>", "80/TCP"]
    );

    let wide = kubectl.ok(["get", "svc", "-n", "shop", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("SELECTOR"), "{wide}");
    assert!(wide.contains("app=nginx"), "{wide}");

    let pods = kubectl.ok(["get", "pods", "-A"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let row: Vec<&str> = pods
        .lines()
        .find(|line| line.contains("web-0"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], ["shop", "web-0", "0/1", "Pending", "0"]);

    let namespaces = kubectl.ok(["get", "ns"]);
    for name in ["default", "kube-system", "kube-public", "shop"] {
        assert!(
            namespaces.lines().any(|line| line.split_whitespace().next() == Some(name)
                && line.contains("Active")),
            "namespace {name} missing:\n{namespaces}"
        );
    }

    // get -o yaml gives back every field the client sent.
    let yaml = kubectl.ok(["get", "pod", "web-0", "-n", "shop", "-o", "yaml"]);
    for kept in [
        "runAsNonRoot: true",
        "runAsUser: 1000",
        "sizeLimit: 1Gi",
        "mountPath: /data",
        "subdomain: nginx",
        "uid:",
        "creationTimestamp:",
        "resourceVersion:",
    ] {
        assert!(yaml.contains(kept), "{kept} missing from:\n{yaml}");
    }
    let name = kubectl.ok(["get", "pods", "-n", "shop", "-o", "name"]);
    assert_eq!(name.trim(), "pod/web-0");
    let jsonpath = kubectl.ok([
        "get",
        "pods",
        "-n",
        "shop",
        "-l",
        "app=nginx",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(jsonpath.trim(), "web-0");
    let none = kubectl.ok(["get", "pods", "-n", "shop", "-l", "app=other", "-o", "name"]);
    assert_eq!(none.trim(), "");

    // get -w sees a change made after it started.
    let mut watcher = kubectl
        .command(["get", "pods", "-n", "shop", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(20)).unwrap(),
        "pod/web-0"
    );
    kubectl.ok([
        "run",
        "later",
        "-n",
        "shop",
        "--image",
        "busybox",
        "--restart",
        "Never",
    ]);
    let seen = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(seen, "pod/later");
    let _ = watcher.kill();
    let _ = watcher.wait();

    // delete -f removes what the file names, and the namespace takes its contents along.
    let deleted = kubectl.ok(["delete", "-f", manifest]);
    assert!(deleted.contains("service \"nginx\" deleted"), "{deleted}");
    assert!(deleted.contains("pod \"web-0\" deleted"), "{deleted}");
    let gone = kubectl.fails(["get", "svc", "nginx", "-n", "shop"]);
    assert!(gone.contains("NotFound"), "{gone}");
    let deleted = kubectl.ok(["delete", "-f", namespace]);
    assert!(deleted.contains("namespace \"shop\" deleted"), "{deleted}");
    wait_for("namespace shop to be gone", Duration::from_secs(20), || {
        let output = kubectl.run(["get", "ns", "shop"]);
        (!output.status.success()).then_some(())
    });
    let pods = kubectl.ok(["get", "pods", "-A", "-o", "name"]);
    assert!(
        !pods.contains("later"),
        "the namespace's pods went with it: {pods}"
    );
}

#[test]
fn kubectl_reports_missing_namespaces_and_objects() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let error = kubectl.fails(["get", "svc", "nope"]);
    assert!(error.contains(r#"services "nope" not found"#), "{error}");
    let error = kubectl.fails(["run", "x", "-n", "missing", "--image", "busybox"]);
    assert!(
        error.contains(r#"namespaces "missing" not found"#),
        "{error}"
    );
    let error = kubectl.fails(["delete", "ns", "default"]);
    assert!(error.contains("may not be deleted"), "{error}");
}

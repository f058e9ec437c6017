//! The service proxy inside `hollow up`: real pods behind ClusterIP, NodePort and
//! LoadBalancer services, reached over real TCP connections to the service addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hollow_testkit::{Hollow, TempDir, http_request, wait_for, write_file};

/// Ports above 1023 so the test needs no root. Ranges of their own, so parallel tests' proxies never listen on each other's addresses.
const SERVICE_CIDR: &str = "127.98.0.0/16";
const POD_CIDR: &str = "127.246.0.0/16";
const LOAD_BALANCER_RANGE: &str = "127.99.0.0/24";
const NODE_ADDRESS: &str = "127.0.0.98";

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
  selector:
    matchLabels:
      app: echo
  template:
    metadata:
      labels:
        app: echo
    spec:
      containers:
      - name: http
        image: python:3
        command: ["sh", "-c"]
        args:
        - mkdir -p www && echo "$POD_NAME" > www/name && cd www && exec python3 -m http.server --bind $(POD_IP) 8080
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /name
            port: http
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector:
    app: echo
  ports:
  - port: 8000
    targetPort: http
---
apiVersion: v1
kind: Service
metadata:
  name: echo-node
spec:
  type: NodePort
  selector:
    app: echo
  ports:
  - port: 8000
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: echo-lb
spec:
  type: LoadBalancer
  selector:
    app: echo
  ports:
  - port: 8081
    targetPort: http
"#;

/// The pod that answered a GET of `/name` at `address`, or why none did.
fn pod_behind(address: SocketAddr) -> Result<String, String> {
    match http_request(address, "GET", "/name", None, b"") {
        Ok((200, body)) => Ok(String::from_utf8_lossy(&body).trim().to_string()),
        Ok((status, body)) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
        Err(error) => Err(error.to_string()),
    }
}

#[test]
fn cluster_ip_node_port_and_load_balancer_services_reach_ready_pods() {
    let hollow = Hollow::start(
        env!("CARGO_BIN_EXE_hollow"),
        &[
            "--service-cidr",
            SERVICE_CIDR,
            "--pod-cidr",
            POD_CIDR,
            "--load-balancer-range",
            LOAD_BALANCER_RANGE,
            "--nodeport-address",
            NODE_ADDRESS,
        ],
    );
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let manifest = write_file(files.path(), "echo.yaml", MANIFEST);
    kubectl.ok(["apply", "-f", manifest.to_str().unwrap()]);
    kubectl.ok(["rollout", "status", "deployment/echo", "--timeout=120s"]);
    let pods: BTreeSet<String> = kubectl
        .ok(["get", "pods", "-l", "app=echo", "-o", "name"])
        .lines()
        .map(|line| line.trim_start_matches("pod/").to_string())
        .collect();
    assert_eq!(pods.len(), 2, "{pods:?}");

    // ClusterIP: connections to the virtual address are spread over both pods.
    let cluster_ip: IpAddr = kubectl
        .ok(["get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}"])
        .parse()
        .unwrap();
    let service = SocketAddr::new(cluster_ip, 8000);
    let seen = wait_for(
        "connections to the ClusterIP to reach both pods",
        Duration::from_secs(20),
        || {
            let seen: BTreeSet<String> = (0..8).filter_map(|_| pod_behind(service).ok()).collect();
            (seen == pods).then_some(seen)
        },
    );
    assert_eq!(seen, pods);

    // NodePort: the same pods on the node address.
    let node_port: u16 = kubectl
        .ok([
            "get",
            "service",
            "echo-node",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .unwrap();
    let node = SocketAddr::new(NODE_ADDRESS.parse().unwrap(), node_port);
    let answer = wait_for("the NodePort to answer", Duration::from_secs(20), || {
        pod_behind(node).ok()
    });
    assert!(pods.contains(&answer), "{answer} is not one of {pods:?}");

    // LoadBalancer: an ingress address from the range, in the status, answering on the port.
    let ingress = wait_for(
        "the LoadBalancer service to get an ingress address",
        Duration::from_secs(20),
        || {
            let ip = kubectl.ok([
                "get",
                "service",
                "echo-lb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ]);
            ip.trim().parse::<IpAddr>().ok()
        },
    );
    assert!(
        ingress.to_string().starts_with("127.99.0."),
        "{ingress} is outside {LOAD_BALANCER_RANGE}"
    );
    let table = kubectl.ok(["get", "service", "echo-lb", "--no-headers"]);
    assert!(table.contains(&ingress.to_string()), "{table}");
    let balancer = SocketAddr::new(ingress, 8081);
    let answer = wait_for(
        "the load balancer address to answer",
        Duration::from_secs(20),
        || pod_behind(balancer).ok(),
    );
    assert!(pods.contains(&answer), "{answer} is not one of {pods:?}");

    // Scaled to one pod, new connections only reach the one left.
    kubectl.ok(["scale", "deployment/echo", "--replicas=1"]);
    let left = wait_for(
        "only one pod to be left behind the service",
        Duration::from_secs(60),
        || {
            let names = kubectl.ok(["get", "pods", "-l", "app=echo", "-o", "name"]);
            let names: Vec<&str> = names.lines().collect();
            (names.len() == 1).then(|| names[0].trim_start_matches("pod/").to_string())
        },
    );
    wait_for(
        "every connection to reach the remaining pod",
        Duration::from_secs(20),
        || {
            (0..6)
                .all(|_| pod_behind(service).as_deref() == Ok(left.as_str()))
                .then_some(())
        },
    );

    // A deleted service stops answering.
    kubectl.ok(["delete", "service", "echo"]);
    wait_for(
        "the deleted service's address to stop answering",
        Duration::from_secs(20),
        || pod_behind(service).is_err().then_some(()),
    );
}

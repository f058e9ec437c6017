//! kubectl apply, scale, label, annotate, patch, expose and describe; Service allocation and
//! validation answered as kube-apiserver answers them.

use hollow_testkit::{Kubectl, TempDir, write_file};
use serde_json::Value;

use crate::{example, start_control_plane};

const EXAMPLES: &[&str] = &[
    "nginx-deployment.yaml",
    "web-statefulset.yaml",
    "openldap-headless.yaml",
    "zookeeper-headless.yaml",
    "redis-tolerate-unready.yaml",
];

fn json(kubectl: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl.ok(all)).unwrap()
}

fn apply_examples_and_changes(kubectl: &Kubectl) {
    let files = TempDir::new().unwrap();
    for name in EXAMPLES {
        let path = write_file(files.path(), name, &example(name));
        let output = kubectl.ok(["apply", "-f", path.to_str().unwrap()]);
        assert!(output.contains("created"), "{name}: {output}");
        let again = kubectl.ok(["apply", "-f", path.to_str().unwrap()]);
        assert!(
            again.contains("unchanged") && !again.contains("configured"),
            "{name}: {again}"
        );
    }
    // Re-apply with changes: a port added, a label changed, replicas changed.
    let zookeeper = example("zookeeper-headless.yaml").replace(
        "  - name: leader-election\n    port: 3888\n",
        "  - name: leader-election\n    port: 3888\n  - name: metrics\n    port: 7000\n",
    );
    let path = write_file(files.path(), "zk2.yaml", &zookeeper);
    assert!(
        kubectl
            .ok(["apply", "-f", path.to_str().unwrap()])
            .contains("configured")
    );
    let ports = json(kubectl, &["get", "svc", "zk-hs"])["spec"]["ports"].clone();
    let numbers: Vec<i64> = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|port| port["port"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [2181, 2888, 3888, 7000]);

    let ldap = example("openldap-headless.yaml")
        .replace("    app: openldap\nspec:", "    app: directory\nspec:");
    let path = write_file(files.path(), "ldap2.yaml", &ldap);
    assert!(
        kubectl
            .ok(["apply", "-f", path.to_str().unwrap()])
            .contains("configured")
    );
    assert_eq!(
        json(kubectl, &["get", "svc", "openldap"])["metadata"]["labels"]["app"],
        "directory"
    );

    let nginx = example("nginx-deployment.yaml").replace("  replicas: 2\n", "  replicas: 4\n");
    let path = write_file(files.path(), "nginx2.yaml", &nginx);
    assert!(
        kubectl
            .ok(["apply", "-f", path.to_str().unwrap()])
            .contains("configured")
    );
    let deployment = json(kubectl, &["get", "deployment", "nginx"]);
    assert_eq!(deployment["spec"]["replicas"], 4);
    assert_eq!(deployment["metadata"]["generation"], 2);
}

#[test]
fn examples_apply_and_reapply_with_kubectl_1_32() {
    let hollow = start_control_plane();
    apply_examples_and_changes(&hollow.kubectl());
}

#[test]
fn examples_apply_and_reapply_with_kubectl_1_27() {
    let hollow = start_control_plane();
    apply_examples_and_changes(&Kubectl::version("1.27", &hollow.kubeconfig));
}

#[test]
fn get_and_describe_services() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let path = write_file(
        files.path(),
        "nginx.yaml",
        &example("nginx-deployment.yaml"),
    );
    kubectl.ok(["apply", "-f", path.to_str().unwrap()]);

    let table = kubectl.ok(["get", "svc"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row = |name: &str| rows.iter().find(|row| row[0] == name).unwrap().clone();
    assert_eq!(
        &row("kubernetes")[..3],
        ["kubernetes", "ClusterIP", "127.96.0.1"]
    );
    assert_eq!(row("nginx")[1], "ClusterIP");
    assert!(row("nginx")[2].starts_with("127.96."), "{table}");
    assert_eq!(
        &row("nginx-headless")[1..5],
        ["ClusterIP", "None", "<none>", "80/TCP"]
    );

    let described = kubectl.ok(["describe", "svc", "nginx-headless"]);
    for line in [
        "Name:",
        "nginx-headless",
        "Selector:",
        "app=nginx",
        "Type:",
        "ClusterIP",
        "IP:",
        "None",
        "Port:",
        "80/TCP",
    ] {
        assert!(
            described.contains(line),
            "{line} missing from:\n{described}"
        );
    }
}

#[test]
fn scale_label_annotate_patch_and_server_side_apply() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let path = write_file(files.path(), "web.yaml", &example("web-statefulset.yaml"));
    kubectl.ok(["apply", "-f", path.to_str().unwrap()]);

    kubectl.ok(["scale", "statefulset", "web", "--replicas", "5"]);
    assert_eq!(
        json(&kubectl, &["get", "sts", "web"])["spec"]["replicas"],
        5
    );
    kubectl.ok([
        "scale",
        "statefulset",
        "web",
        "--current-replicas",
        "5",
        "--replicas",
        "3",
    ]);
    assert_eq!(
        json(&kubectl, &["get", "sts", "web"])["spec"]["replicas"],
        3
    );
    let stale = kubectl.fails([
        "scale",
        "statefulset",
        "web",
        "--current-replicas",
        "9",
        "--replicas",
        "1",
    ]);
    assert!(
        stale.to_lowercase().contains("expected replicas to be 9"),
        "{stale}"
    );

    kubectl.ok(["label", "svc", "web", "tier=frontend"]);
    kubectl.ok(["annotate", "svc", "web", "owner=team-a"]);
    let service = json(&kubectl, &["get", "svc", "web"]);
    assert_eq!(service["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(service["metadata"]["annotations"]["owner"], "team-a");
    kubectl.ok(["label", "svc", "web", "tier-"]);
    assert!(
        json(&kubectl, &["get", "svc", "web"])["metadata"]["labels"]
            .get("tier")
            .is_none()
    );

    kubectl.ok([
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"ports":[{"name":"metrics","port":9090}]}}"#,
    ]);
    kubectl.ok([
        "patch",
        "svc",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
    ]);
    kubectl.ok([
        "patch",
        "svc",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
    ]);
    let service = json(&kubectl, &["get", "svc", "web"]);
    let ports: Vec<i64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|port| port["port"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ports.len(),
        2,
        "strategic merge adds a port by its key: {ports:?}"
    );
    assert!(ports.contains(&9090) && ports.contains(&8080));
    assert_eq!(service["metadata"]["labels"]["patched"], "merge");
    assert_eq!(service["metadata"]["labels"]["json"], "yes");

    let server_side = r#"
apiVersion: v1
kind: Service
metadata:
  name: ssa
spec:
  clusterIP: None
  selector:
    app: ssa
  ports:
  - port: 80
"#;
    let path = write_file(files.path(), "ssa.yaml", server_side);
    assert!(
        kubectl
            .ok(["apply", "--server-side", "-f", path.to_str().unwrap()])
            .contains("serverside-applied")
    );
    let changed = server_side.replace(
        "  - port: 80\n",
        "  - port: 80\n    name: http\n  - port: 81\n    name: other\n",
    );
    let path = write_file(files.path(), "ssa2.yaml", &changed);
    kubectl.ok(["apply", "--server-side", "-f", path.to_str().unwrap()]);
    assert_eq!(
        json(&kubectl, &["get", "svc", "ssa"])["spec"]["ports"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn service_allocation_rules_answer_422_and_leak_nothing() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    let files = TempDir::new().unwrap();
    let service = |name: &str, spec: &str| {
        let text =
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}");
        write_file(files.path(), &format!("{name}.yaml"), &text)
    };
    let create = |path: &std::path::Path| kubectl.run(["create", "-f", path.to_str().unwrap()]);
    let stderr =
        |output: std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();

    // Out of range, then in range.
    let outside = service("outside", "  clusterIP: 10.0.0.5\n  ports:\n  - port: 80\n");
    let error = stderr(create(&outside));
    assert!(error.contains(r#"The Service "outside" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.5"]: failed to allocate IP 10.0.0.5: provided IP is not in the valid range. The range of valid IPs is 127.96.0.0/16"#), "{error}");
    let first = service("first", "  clusterIP: 127.96.1.1\n  ports:\n  - port: 80\n");
    assert!(create(&first).status.success());
    // Taken.
    let second = service(
        "second",
        "  clusterIP: 127.96.1.1\n  ports:\n  - port: 80\n",
    );
    let error = stderr(create(&second));
    assert!(
        error.contains("provided IP is already allocated"),
        "{error}"
    );
    // A refused create (bad port) leaks neither its address nor its node port.
    let refused = service(
        "refused",
        "  type: NodePort\n  clusterIP: 127.96.1.2\n  ports:\n  - port: 80\n    nodePort: 30080\n  - port: 70000\n    name: bad\n",
    );
    let error = stderr(create(&refused));
    assert!(
        error.contains(
            "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        ),
        "{error}"
    );
    let reuse = service(
        "reuse",
        "  type: NodePort\n  clusterIP: 127.96.1.2\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    );
    assert!(
        create(&reuse).status.success(),
        "the refused create leaked its allocations"
    );
    // Node port conflict and range.
    let clash = service(
        "clash",
        "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    );
    let error = stderr(create(&clash));
    assert!(
        error.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{error}"
    );
    let low = service(
        "low",
        "  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 80\n",
    );
    assert!(stderr(create(&low)).contains("provided port is not in the valid range"));
    // LoadBalancer services get node ports too.
    let balancer = service("balancer", "  type: LoadBalancer\n  ports:\n  - port: 80\n");
    assert!(create(&balancer).status.success());
    let node_port = json(&kubectl, &["get", "svc", "balancer"])["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .unwrap();
    assert!((30000..=32767).contains(&node_port));
    // ExternalName must name a host; headless keeps None.
    let external = service("external", "  type: ExternalName\n");
    assert!(stderr(create(&external)).contains("spec.externalName: Required value"));
    // The ClusterIP is immutable.
    let error = kubectl.fails([
        "patch",
        "svc",
        "first",
        "--type=merge",
        "-p",
        r#"{"spec":{"clusterIP":"127.96.1.9"}}"#,
    ]);
    assert!(error.contains("spec.clusterIPs[0]"), "{error}");
    // Deleting gives the address back.
    kubectl.ok(["delete", "svc", "first"]);
    assert!(
        create(&second).status.success(),
        "a deleted service's address is free again"
    );
    // Two ports need names.
    let unnamed = service("unnamed", "  ports:\n  - port: 80\n  - port: 81\n");
    assert!(stderr(create(&unnamed)).contains("spec.ports[0].name: Required value"));
}

#[test]
fn create_generators_expose_dry_run_and_strict_validation() {
    let hollow = start_control_plane();
    let kubectl = hollow.kubectl();
    // kubectl 1.32 sends these bodies as protobuf.
    kubectl.ok(["create", "namespace", "shop"]);
    kubectl.ok([
        "create",
        "deployment",
        "nginx",
        "--image",
        "nginx:latest",
        "--replicas",
        "2",
    ]);
    let deployment = json(&kubectl, &["get", "deployment", "nginx"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:latest"
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    kubectl.ok([
        "create",
        "service",
        "nodeport",
        "np",
        "--tcp=80:8080",
        "--node-port=30080",
    ]);
    assert_eq!(
        json(&kubectl, &["get", "svc", "np"])["spec"]["ports"][0]["nodePort"],
        30080
    );

    kubectl.ok([
        "expose",
        "deployment/nginx",
        "--name",
        "nginx-headless",
        "--port",
        "80",
        "--cluster-ip",
        "None",
    ]);
    let headless = json(&kubectl, &["get", "svc", "nginx-headless"]);
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["selector"]["app"], "nginx");
    let rows = kubectl.ok(["get", "svc", "nginx-headless", "--no-headers"]);
    let row: Vec<&str> = rows.split_whitespace().collect();
    assert_eq!(
        &row[..5],
        ["nginx-headless", "ClusterIP", "None", "<none>", "80/TCP"]
    );

    // Server-side dry run writes nothing.
    let files = TempDir::new().unwrap();
    let dry = write_file(
        files.path(),
        "dry.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: dry\nspec:\n  ports:\n  - port: 80\n",
    );
    let output = kubectl.ok(["apply", "--dry-run=server", "-f", dry.to_str().unwrap()]);
    assert!(output.contains("(server dry run)"), "{output}");
    assert!(kubectl.fails(["get", "svc", "dry"]).contains("NotFound"));

    // kubectl validates on the server: a typo is refused with kube-apiserver's message.
    let typo = write_file(
        files.path(),
        "typo.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: typo\nspec:\n  selectr:\n    app: x\n  ports:\n  - port: 80\n",
    );
    let error = kubectl.fails(["apply", "-f", typo.to_str().unwrap()]);
    assert!(
        error.contains(r#"strict decoding error: unknown field "spec.selectr""#),
        "{error}"
    );
    assert!(kubectl.fails(["get", "svc", "typo"]).contains("NotFound"));
}

//! `hollow up --tls`: HTTPS with a generated CA and a bearer token, reached by the real kubectl
//! and curl; requests without the token get 401; off loopback, plain HTTP is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hollow_testkit::{DEFAULT_WAIT, Hollow, Kubectl, TempDir, require_tool, wait_for, write_file};
use serde_json::{Value, json};

fn start_tls(extra_args: &[&str]) -> Hollow {
    let mut args = vec!["--no-agent", "--tls"];
    args.extend_from_slice(extra_args);
    Hollow::start(env!("CARGO_BIN_EXE_hollow"), &args)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// curl over TLS, trusting only `ca_file`; the status code and body.
fn curl(hollow: &Hollow, ca_file: &Path, path: &str, token: Option<&str>) -> (u16, String) {
    let mut command = Command::new(require_tool("curl"));
    command
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg("--cacert")
        .arg(ca_file)
        .args(["--write-out", "\n%{http_code}"]);
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(format!("https://{}{path}", hollow.api_address))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {path} failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, code) = text.rsplit_once('\n').expect("curl wrote the status code");
    (code.parse().expect("a status code"), body.to_string())
}

fn unauthorized_status() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401
    })
}

#[test]
fn kubectl_and_the_controllers_work_over_tls_with_the_generated_kubeconfig() {
    let hollow = start_tls(&["--tls-san", "hollow.example"]);
    let kubeconfig = std::fs::read_to_string(&hollow.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{}", hollow.api_address)),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("certificate-authority-data: "),
        "{kubeconfig}"
    );
    let token = std::fs::read_to_string(hollow.data_dir().join("token")).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {token}");
    assert!(token.bytes().all(|byte| byte.is_ascii_hexdigit()));
    assert!(
        kubeconfig.contains(&format!("token: \"{token}\"")),
        "{kubeconfig}"
    );
    for private in ["kubeconfig", "token", "pki/ca.key", "pki/server.key"] {
        assert_eq!(
            mode_of(&hollow.data_dir().join(private)),
            0o600,
            "{private}"
        );
    }

    let kubectl = hollow.kubectl();
    let namespaces = kubectl.ok(["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
    assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");

    // The in-process controllers reach the server through the same CA and token: a
    // Deployment gets its pods.
    kubectl.ok([
        "create",
        "deployment",
        "web",
        "--image=example",
        "--replicas=2",
    ]);
    wait_for(
        "the controllers to create the Deployment's pods",
        DEFAULT_WAIT,
        || {
            let pods = kubectl.ok(["get", "pods", "-o", "name"]);
            (pods
                .lines()
                .filter(|line| line.starts_with("pod/web-"))
                .count()
                == 2)
                .then_some(())
        },
    );

    // The certificate names what --tls-san asked for: curl checks it against the name.
    let ca = hollow.data_dir().join("pki/ca.crt");
    let output = Command::new(require_tool("curl"))
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!(
            "hollow.example:{}:127.0.0.1",
            hollow.api_address.port()
        ))
        .arg(format!(
            "https://hollow.example:{}/healthz",
            hollow.api_address.port()
        ))
        .output()
        .expect("running curl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok");
}

#[test]
fn requests_without_the_token_are_unauthorized() {
    let hollow = start_tls(&[]);
    let ca = hollow.data_dir().join("pki/ca.crt");
    let token = std::fs::read_to_string(hollow.data_dir().join("token")).unwrap();
    let token = token.trim();

    for presented in [None, Some("not-the-token"), Some(&token[1..])] {
        let (code, body) = curl(&hollow, &ca, "/api/v1/namespaces", presented);
        assert_eq!(code, 401, "{presented:?}: {body}");
        let status: Value = serde_json::from_str(&body).expect("a Status");
        assert_eq!(status, unauthorized_status());
    }
    let (code, body) = curl(&hollow, &ca, "/api/v1/namespaces", Some(token));
    assert_eq!(code, 200, "{body}");
    // Probes and the version stay open, as kube-apiserver leaves them to anonymous users.
    for open in ["/healthz", "/livez", "/readyz", "/version"] {
        let (code, body) = curl(&hollow, &ca, open, None);
        assert_eq!(code, 200, "{open}: {body}");
    }

    // Plain HTTP on the TLS port gets no answer from the API.
    if let Ok((code, body)) =
        hollow_testkit::http_request(hollow.api_address, "GET", "/api/v1/namespaces", None, b"")
    {
        assert_ne!(code, 200, "{}", String::from_utf8_lossy(&body));
    }

    // kubectl with a wrong token. (Without any credentials kubectl asks for a user name on
    // its terminal instead of sending the request, so curl above covers that case.)
    let scratch = TempDir::new().unwrap();
    let kubeconfig = std::fs::read_to_string(&hollow.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains(&format!("token: \"{token}\"")),
        "{kubeconfig}"
    );
    let wrong = write_file(
        scratch.path(),
        "wrong",
        &kubeconfig.replace(token, "0123456789abcdef"),
    );
    let stderr = Kubectl::new(&wrong).fails(["get", "namespaces"]);
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
}

#[test]
fn a_restart_reuses_the_ca_and_the_token() {
    let mut hollow = start_tls(&[]);
    let read = |name: &str| std::fs::read(hollow.data_dir().join(name)).unwrap();
    let before = (read("pki/ca.crt"), read("pki/server.crt"), read("token"));
    hollow.restart();
    let read = |name: &str| std::fs::read(hollow.data_dir().join(name)).unwrap();
    assert!(
        before == (read("pki/ca.crt"), read("pki/server.crt"), read("token")),
        "the CA, server certificate or token changed across a restart"
    );
    let namespaces = hollow.kubectl().ok(["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
}

#[test]
fn a_brought_certificate_and_token_are_served() {
    // A first server generates a CA and a certificate for 127.0.0.1; a second one serves them
    // with a token of its user's choosing.
    let generator = start_tls(&[]);
    let pki = generator.data_dir().join("pki");
    let scratch = TempDir::new().unwrap();
    let token_file = write_file(scratch.path(), "token", "a-token-of-my-own\n");
    let certificate = pki.join("server.crt");
    let key = pki.join("server.key");
    let ca = pki.join("ca.crt");
    let hollow = Hollow::start(
        env!("CARGO_BIN_EXE_hollow"),
        &[
            "--no-agent",
            "--tls-cert-file",
            certificate.to_str().unwrap(),
            "--tls-private-key-file",
            key.to_str().unwrap(),
            "--tls-ca-file",
            ca.to_str().unwrap(),
            "--token-file",
            token_file.to_str().unwrap(),
        ],
    );
    assert!(
        !hollow.data_dir().join("token").exists() && !hollow.data_dir().join("pki").exists(),
        "nothing is generated when the user brings the material"
    );
    let kubeconfig = std::fs::read_to_string(&hollow.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains("token: \"a-token-of-my-own\""),
        "{kubeconfig}"
    );
    let namespaces = hollow.kubectl().ok(["get", "namespaces", "-o", "name"]);
    assert!(namespaces.contains("namespace/default"), "{namespaces}");
    let (code, _) = curl(
        &hollow,
        &ca,
        "/api/v1/namespaces",
        Some("a-token-of-my-own"),
    );
    assert_eq!(code, 200);
    let (code, _) = curl(&hollow, &ca, "/api/v1/namespaces", None);
    assert_eq!(code, 401);
}

#[test]
fn a_non_loopback_address_without_tls_is_refused_before_binding() {
    let data_dir = TempDir::new().unwrap();
    // The refusal comes before any socket is bound; were it missing, the child is killed
    // below rather than left serving.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hollow"))
        .arg("up")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--api-listen", "0.0.0.0:0", "--no-agent"])
        .args(["--dns-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hollow");
    let deadline = Instant::now() + DEFAULT_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for hollow") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hollow up --api-listen 0.0.0.0:0 without --tls was not refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("reading hollow's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("0.0.0.0:0 is not a loopback address") && stderr.contains("--tls"),
        "{stderr}"
    );
    assert!(
        !data_dir.path().join("kubeconfig").exists(),
        "refused before writing anything"
    );
}

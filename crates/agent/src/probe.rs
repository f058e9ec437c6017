//! Readiness, liveness and startup probes: the checks themselves (httpGet, tcpSocket, exec,
//! and gRPC in `grpc_probe`)
//! and the loop that runs one probe on its schedule and reports when its result flips.
//!
//! Like kubelet, a probe waits `initialDelaySeconds` after the container started, then runs
//! every `periodSeconds`, each attempt bounded by `timeoutSeconds`. The result only changes
//! after `successThreshold` consecutive successes or `failureThreshold` consecutive
//! failures. Readiness starts as failed, liveness as passed, startup as not yet passed.
//!
//! HTTPS probes, like kubelet's, do not verify the server's certificate: a pod's serving
//! certificate is rarely issued for its IP address, and the probe asks whether the server
//! answers, not who it is.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

/// A probe's check, resolved against the pod (address, named ports, env).
#[derive(Clone, Debug)]
pub enum Check {
    Http {
        /// `scheme: HTTPS`.
        tls: bool,
        address: SocketAddr,
        host_header: String,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        address: SocketAddr,
    },
    /// `grpc.health.v1.Health/Check` over h2c.
    Grpc {
        address: SocketAddr,
        service: String,
    },
    Exec {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        work_dir: PathBuf,
    },
    /// A probe that cannot be run as written; it always fails with this message.
    Unsupported(String),
}

/// A probe's schedule and thresholds, with Kubernetes' defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Schedule {
    pub fn of(probe: &Probe) -> Schedule {
        let seconds = |value: Option<i32>, default: u64, minimum: u64| {
            Duration::from_secs(value.map_or(default, |value| (value.max(0) as u64).max(minimum)))
        };
        let count =
            |value: Option<i32>, default: u32| value.map_or(default, |value| value.max(1) as u32);
        Schedule {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            success_threshold: count(probe.success_threshold, 1),
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// Turns a probe spec into a check; `Err` holds why it cannot be run.
pub fn resolve_check(
    probe: &Probe,
    container: &Container,
    pod_ip: IpAddr,
    env: &[(String, String)],
    work_dir: &std::path::Path,
) -> Check {
    let port_of = |port: &IntOrString| -> Result<u16, String> {
        match port {
            IntOrString::Int(number) => u16::try_from(*number)
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("invalid port {number}")),
            IntOrString::String(name) => {
                if let Ok(number) = name.parse::<u16>() {
                    return Ok(number);
                }
                container
                    .ports
                    .iter()
                    .flatten()
                    .find(|port| port.name.as_deref() == Some(name.as_str()))
                    .and_then(|port| u16::try_from(port.container_port).ok())
                    .ok_or_else(|| {
                        format!(
                            "port \"{name}\" is not a named port of container \"{}\"",
                            container.name
                        )
                    })
            }
        }
    };
    if let Some(http) = &probe.http_get {
        let tls = match http.scheme.as_deref() {
            None | Some("") => false,
            Some(scheme) if scheme.eq_ignore_ascii_case("HTTP") => false,
            Some(scheme) if scheme.eq_ignore_ascii_case("HTTPS") => true,
            Some(scheme) => {
                return Check::Unsupported(format!("unsupported probe scheme {scheme:?}"));
            }
        };
        let port = match port_of(&http.port) {
            Ok(port) => port,
            Err(message) => return Check::Unsupported(message),
        };
        let host: IpAddr = match http.host.as_deref().filter(|host| !host.is_empty()) {
            None => pod_ip,
            Some(host) => match host.parse() {
                Ok(address) => address,
                Err(_) => {
                    return Check::Unsupported(format!("probe host {host:?} is not an IP address"));
                }
            },
        };
        let address = SocketAddr::new(host, port);
        let mut path = http
            .path
            .clone()
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|header| (header.name.clone(), header.value.clone()))
            .collect();
        let host_header = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"))
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| address.to_string());
        return Check::Http {
            tls,
            address,
            host_header,
            path,
            headers,
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host: IpAddr = tcp
            .host
            .as_deref()
            .and_then(|host| host.parse().ok())
            .unwrap_or(pod_ip);
        return match port_of(&tcp.port) {
            Ok(port) => Check::Tcp {
                address: SocketAddr::new(host, port),
            },
            Err(message) => Check::Unsupported(message),
        };
    }
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        if argv.is_empty() {
            return Check::Unsupported("exec probe has no command".into());
        }
        return Check::Exec {
            argv,
            env: env.to_vec(),
            work_dir: work_dir.to_path_buf(),
        };
    }
    if let Some(grpc) = &probe.grpc {
        return match u16::try_from(grpc.port).ok().filter(|port| *port > 0) {
            Some(port) => Check::Grpc {
                address: SocketAddr::new(pod_ip, port),
                service: grpc.service.clone().unwrap_or_default(),
            },
            None => Check::Unsupported(format!("invalid port {}", grpc.port)),
        };
    }
    Check::Unsupported("probe has no handler".into())
}

/// One attempt's outcome; failures carry kubelet-style messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Runs one attempt of `check`, bounded by `timeout`.
pub async fn run_check(check: &Check, timeout: Duration) -> Outcome {
    match check {
        Check::Http {
            tls,
            address,
            host_header,
            path,
            headers,
        } => {
            let scheme = if *tls { "https" } else { "http" };
            let url = format!("{scheme}://{address}{path}");
            match tokio::time::timeout(
                timeout,
                http_get(*tls, *address, host_header, path, headers),
            )
            .await
            {
                Ok(Ok(status)) if (200..400).contains(&status) => Outcome::Success,
                Ok(Ok(status)) => {
                    Outcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
                }
                Ok(Err(error)) => Outcome::Failure(format!("Get \"{url}\": {error}")),
                Err(_) => Outcome::Failure(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                )),
            }
        }
        Check::Tcp { address } => {
            match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
                Ok(Ok(_)) => Outcome::Success,
                Ok(Err(error)) => {
                    Outcome::Failure(format!("dial tcp {address}: {}", describe_io(&error)))
                }
                Err(_) => Outcome::Failure(format!("dial tcp {address}: i/o timeout")),
            }
        }
        Check::Grpc { address, service } => {
            match tokio::time::timeout(timeout, crate::grpc_probe::check(*address, service)).await {
                Ok(Ok(())) => Outcome::Success,
                Ok(Err(message)) => Outcome::Failure(message),
                Err(_) => Outcome::Failure(format!(
                    "timeout: health rpc did not complete within {}s",
                    timeout.as_secs()
                )),
            }
        }
        Check::Exec {
            argv,
            env,
            work_dir,
        } => run_exec(argv, env, work_dir, timeout).await,
        Check::Unsupported(message) => Outcome::Failure(message.clone()),
    }
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        _ => error.to_string(),
    }
}

/// Accepts any server certificate, as kubelet's HTTPS probes do (`InsecureSkipVerify`). The
/// handshake's signatures are still checked against the certificate's key, so the session
/// is a real TLS session with whoever holds that key.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration of HTTPS probes, built once.
fn probe_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// A minimal HTTP/1.1 GET, over TLS for `tls`: the status code is all a probe needs.
async fn http_get(
    tls: bool,
    address: SocketAddr,
    host_header: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("dial tcp {address}: {}", describe_io(&error)))?;
    if !tls {
        return http_exchange(stream, host_header, path, headers).await;
    }
    let connector = tokio_rustls::TlsConnector::from(probe_tls_config()?);
    // An IP address sends no SNI, as with kubelet probing a pod IP.
    let server_name = ServerName::IpAddress(address.ip().into());
    let stream = connector
        .connect(server_name, stream)
        .await
        .map_err(|error| format!("tls: {error}"))?;
    http_exchange(stream, host_header, path, headers).await
}

async fn http_exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    host_header: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\n");
    let has = |wanted: &str| {
        headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
    };
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.37\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut received = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    loop {
        if let Some(end) = received.iter().position(|byte| *byte == b'\n') {
            let line = String::from_utf8_lossy(&received[..end]);
            let mut parts = line.split_whitespace();
            let version = parts.next().unwrap_or_default();
            return match (
                version.starts_with("HTTP/"),
                parts.next().and_then(|code| code.parse().ok()),
            ) {
                (true, Some(code)) => Ok(code),
                _ => Err(format!("malformed HTTP response {line:?}")),
            };
        }
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Err("EOF".into());
        }
        received.extend_from_slice(&buffer[..read]);
        if received.len() > 8192 {
            return Err("malformed HTTP response: status line too long".into());
        }
    }
}

async fn run_exec(
    argv: &[String],
    env: &[(String, String)],
    work_dir: &std::path::Path,
    timeout: Duration,
) -> Outcome {
    let (program, args) = match argv.split_first() {
        Some(split) => split,
        None => return Outcome::Failure("exec probe has no command".into()),
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir(work_dir)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Outcome::Failure(format!(
                "exec: \"{program}\": {}",
                if error.kind() == std::io::ErrorKind::NotFound {
                    "executable file not found in $PATH".to_string()
                } else {
                    error.to_string()
                }
            ));
        }
    };
    let process_group = child.id().map(|pid| pid as i32);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => Outcome::Success,
        Ok(Ok(output)) => {
            let mut message = String::from_utf8_lossy(&output.stdout).into_owned();
            message.push_str(&String::from_utf8_lossy(&output.stderr));
            message.truncate(10 * 1024);
            let code = output.status.code().unwrap_or(-1);
            if message.trim().is_empty() {
                Outcome::Failure(format!("command {argv:?} exited with {code}"))
            } else {
                Outcome::Failure(message)
            }
        }
        Ok(Err(error)) => Outcome::Failure(error.to_string()),
        Err(_) => {
            // The child is killed on drop; its own children go with the whole group.
            if let Some(group) = process_group {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Outcome::Failure(format!(
                "command timed out: \"{}\" timed out after {}s",
                argv.join(" "),
                timeout.as_secs()
            ))
        }
    }
}

/// Consecutive-result counting with thresholds.
#[derive(Debug)]
pub struct Thresholds {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    passing: bool,
}

impl Thresholds {
    pub fn new(schedule: &Schedule, initially_passing: bool) -> Thresholds {
        Thresholds {
            success_threshold: schedule.success_threshold,
            failure_threshold: schedule.failure_threshold,
            successes: 0,
            failures: 0,
            passing: initially_passing,
        }
    }

    /// Records an attempt; returns the new result when it flips.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.passing && self.successes >= self.success_threshold {
                self.passing = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.passing && self.failures >= self.failure_threshold {
                self.passing = false;
                return Some(false);
            }
        }
        None
    }

    /// True on exactly the attempt that reached `failureThreshold` consecutive failures.
    pub fn just_reached_failure_threshold(&self) -> bool {
        self.failures == self.failure_threshold
    }
}

/// Runs a probe on its schedule until the returned future is dropped, calling `report` with
/// each flip of its result (and the last failure's message). Liveness starts passing,
/// readiness and startup failing, unless a recovered container was already ready.
pub async fn probe_loop<F, Fut>(
    kind: ProbeKind,
    schedule: Schedule,
    initially_passing: bool,
    mut attempt: F,
    mut report: impl FnMut(bool, Option<String>),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let mut thresholds = Thresholds::new(&schedule, initially_passing);
    tokio::time::sleep(schedule.initial_delay).await;
    let mut ticks = tokio::time::interval(schedule.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = attempt().await;
        let message = match &outcome {
            Outcome::Success => None,
            Outcome::Failure(message) => Some(message.clone()),
        };
        match thresholds.record(outcome == Outcome::Success) {
            Some(passing) => {
                report(passing, message);
                if kind == ProbeKind::Startup && passing {
                    // A startup probe stops once it has passed.
                    return;
                }
            }
            // A startup probe that never passed gives up after failureThreshold failures.
            None if kind == ProbeKind::Startup && thresholds.just_reached_failure_threshold() => {
                report(false, message);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    fn schedule(initial: u64, period: u64, success: u32, failure: u32) -> Schedule {
        Schedule {
            initial_delay: Duration::from_secs(initial),
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_match_kubernetes() {
        assert_eq!(Schedule::of(&Probe::default()), schedule(0, 10, 1, 3));
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let mut readiness = Thresholds::new(&schedule(0, 1, 2, 3), false);
        assert_eq!(readiness.record(true), None);
        assert_eq!(readiness.record(false), None);
        assert_eq!(readiness.record(true), None);
        assert_eq!(readiness.record(true), Some(true));
        assert_eq!(readiness.record(false), None);
        assert_eq!(readiness.record(false), None);
        assert_eq!(readiness.record(true), None);
        assert_eq!(readiness.record(false), None);
        assert_eq!(readiness.record(false), None);
        assert_eq!(readiness.record(false), Some(false));
        assert_eq!(readiness.record(false), None);
    }

    /// Runs `probe_loop` over a scripted sequence of outcomes and returns when (seconds after
    /// start, virtual time) each flip was reported.
    async fn flips(
        kind: ProbeKind,
        schedule: Schedule,
        script: Vec<bool>,
        run_for: u64,
    ) -> Vec<(u64, bool)> {
        let start = Instant::now();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let sink = reported.clone();
        let mut script = script.into_iter();
        let probe = probe_loop(
            kind,
            schedule,
            kind == ProbeKind::Liveness,
            move || {
                let next = script.next().unwrap_or(false);
                async move {
                    if next {
                        Outcome::Success
                    } else {
                        Outcome::Failure("no".into())
                    }
                }
            },
            move |passing, _| {
                sink.lock()
                    .unwrap()
                    .push((start.elapsed().as_secs(), passing))
            },
        );
        let _ = tokio::time::timeout(Duration::from_secs(run_for), probe).await;
        reported.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_honours_delay_period_and_thresholds() {
        // Initial delay 5 s, period 2 s: attempts at 5, 7, 9, 11, 13, 15 ...
        let result = flips(
            ProbeKind::Readiness,
            schedule(5, 2, 2, 3),
            vec![true, true, true, false, false, false, true],
            30,
        )
        .await;
        assert_eq!(result, [(7, true), (15, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_starts_passing_and_fails_after_the_threshold() {
        let result = flips(
            ProbeKind::Liveness,
            schedule(0, 10, 1, 3),
            vec![false; 10],
            25,
        )
        .await;
        assert_eq!(result, [(20, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_stops_after_passing() {
        let result = flips(
            ProbeKind::Startup,
            schedule(0, 1, 1, 30),
            vec![false, false, true, false],
            60,
        )
        .await;
        assert_eq!(result, [(2, true)]);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gives_up_after_failure_threshold() {
        let result = flips(
            ProbeKind::Startup,
            schedule(0, 1, 1, 3),
            vec![false; 10],
            10,
        )
        .await;
        assert_eq!(result, [(2, false)]);
    }

    #[tokio::test]
    async fn tcp_and_http_checks_against_real_sockets() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await.unwrap();
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let check = Check::Http {
            tls: false,
            address,
            host_header: address.to_string(),
            path: "/".into(),
            headers: vec![],
        };
        assert_eq!(
            run_check(&check, Duration::from_secs(5)).await,
            Outcome::Success
        );
        assert_eq!(
            run_check(&check, Duration::from_secs(5)).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        server.await.unwrap();
        // A socket bound but never listening keeps its port from being taken by a parallel test
        // while still refusing connections.
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let closed = reserved.local_addr().unwrap();
        let refused = run_check(&Check::Tcp { address: closed }, Duration::from_secs(5)).await;
        assert_eq!(
            refused,
            Outcome::Failure(format!("dial tcp {closed}: connect: connection refused"))
        );
        drop(reserved);
    }

    #[tokio::test]
    async fn https_checks_accept_a_self_signed_certificate() {
        use tokio_rustls::rustls::pki_types::PrivateKeyDer;
        let certified = rcgen::generate_simple_self_signed(vec!["somewhere.else".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for status in ["204 No Content", "500 Internal Server Error"] {
                let (socket, _) = listener.accept().await.unwrap();
                let mut stream = acceptor.accept(socket).await.unwrap();
                let mut buffer = [0u8; 1024];
                let read = stream.read(&mut buffer).await.unwrap();
                requests.push(String::from_utf8_lossy(&buffer[..read]).into_owned());
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                stream.write_all(reply.as_bytes()).await.unwrap();
                stream.shutdown().await.unwrap();
            }
            requests
        });
        let probe = Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                scheme: Some("HTTPS".into()),
                port: IntOrString::Int(address.port().into()),
                path: Some("/healthz".into()),
                ..Default::default()
            }),
            ..Probe::default()
        };
        let check = resolve_check(
            &probe,
            &Container::default(),
            address.ip(),
            &[],
            std::path::Path::new("/"),
        );
        assert!(matches!(check, Check::Http { tls: true, .. }), "{check:?}");
        assert_eq!(
            run_check(&check, Duration::from_secs(5)).await,
            Outcome::Success
        );
        assert_eq!(
            run_check(&check, Duration::from_secs(5)).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let requests = server.await.unwrap();
        assert!(
            requests[0].starts_with("GET /healthz HTTP/1.1\r\n"),
            "{requests:?}"
        );

        // A plain HTTP server does not pass an HTTPS probe.
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain_address = plain.local_addr().unwrap();
        let plain_server = tokio::spawn(async move {
            let (mut socket, _) = plain.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let check = Check::Http {
            tls: true,
            address: plain_address,
            host_header: plain_address.to_string(),
            path: "/".into(),
            headers: vec![],
        };
        let Outcome::Failure(message) = run_check(&check, Duration::from_secs(5)).await else {
            panic!("an HTTPS probe of a plain HTTP server must fail");
        };
        assert!(
            message.starts_with(&format!("Get \"https://{plain_address}/\": tls: ")),
            "{message}"
        );
        plain_server.await.unwrap();
    }

    #[tokio::test]
    async fn exec_checks_exit_codes_and_timeouts() {
        let temp = tempfile::TempDir::new().unwrap();
        let env = vec![("PATH".to_string(), std::env::var("PATH").unwrap())];
        let exec = |script: &str| Check::Exec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: env.clone(),
            work_dir: temp.path().to_path_buf(),
        };
        assert_eq!(
            run_check(&exec("true"), Duration::from_secs(5)).await,
            Outcome::Success
        );
        assert_eq!(
            run_check(&exec("echo broken; exit 3"), Duration::from_secs(5)).await,
            Outcome::Failure("broken\n".into())
        );
        let Outcome::Failure(message) = run_check(&exec("sleep 30"), Duration::from_secs(1)).await
        else {
            panic!("a hanging exec probe must fail");
        };
        assert!(message.starts_with("command timed out"), "{message}");
    }
}

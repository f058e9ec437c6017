//! Test support shared by hollow's integration tests: start the real `hollow` binary, drive the
//! real `kubectl`, wait for conditions.
//!
//! Nothing here fakes a hollow component. [`Hollow`] runs `hollow up` as a child process on a
//! loopback port with its own data directory, and kills it by PID when dropped. [`Kubectl`]
//! runs the `kubectl` on the machine (or one of the versioned binaries beside it) with a
//! private kubeconfig and discovery cache.
//!
//! With the `api-server` feature, [`LocalApiServer`] runs hollow's API server in the test's own
//! process on the memory store, for component tests that need a live API but not the binary.
//!
//! Tools the tests need are required: a missing `kubectl` or `dig` fails the test with a
//! message that says how to install it, it never skips.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

#[cfg(feature = "api-server")]
mod local_api;
#[cfg(feature = "api-server")]
pub use local_api::LocalApiServer;

/// How long start-up and waits may take before a test fails.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A `hollow up` child process.
pub struct Hollow {
    child: Option<Child>,
    binary: PathBuf,
    data_dir: PathBuf,
    /// Keeps the temporary data directory alive (when the test did not pass its own).
    _temp: Option<TempDir>,
    pub api_address: SocketAddr,
    /// The cluster DNS server's UDP and TCP address.
    pub dns_address: SocketAddr,
    pub kubeconfig: PathBuf,
    extra_args: Vec<String>,
}

impl Hollow {
    /// Starts `hollow up` in a new temporary data directory.
    pub fn start(binary: impl AsRef<Path>, extra_args: &[&str]) -> Hollow {
        let temp = TempDir::new().expect("creating a temporary data directory");
        let data_dir = temp.path().to_path_buf();
        let mut hollow = Hollow::start_in(binary, &data_dir, extra_args);
        hollow._temp = Some(temp);
        hollow
    }

    /// Starts `hollow up` on an existing data directory (restart tests).
    pub fn start_in(binary: impl AsRef<Path>, data_dir: &Path, extra_args: &[&str]) -> Hollow {
        let mut extra_args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        let dns_address = match extra_args.iter().position(|arg| arg == "--dns-listen") {
            Some(index) => extra_args[index + 1]
                .parse()
                .expect("--dns-listen takes an address"),
            None => {
                let address = free_udp_and_tcp_port();
                extra_args.extend(["--dns-listen".to_string(), address.to_string()]);
                address
            }
        };
        let (child, api_address) = spawn_up(binary.as_ref(), data_dir, &extra_args);
        Hollow {
            child: Some(child),
            binary: binary.as_ref().to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            api_address,
            dns_address,
            kubeconfig: data_dir.join("kubeconfig"),
            extra_args,
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.api_address)
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process and starts it again on the same data directory and arguments.
    pub fn restart(&mut self) {
        self.kill();
        let (child, api_address) = spawn_up(&self.binary, &self.data_dir, &self.extra_args);
        self.child = Some(child);
        self.api_address = api_address;
    }

    /// A kubectl bound to this server.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(&self.kubeconfig)
    }
}

impl Hollow {
    /// Asks hollow to stop (SIGTERM), as a user's Ctrl-C does, so it stops its pods'
    /// processes; kills it if it has not exited after `patience`.
    pub fn stop(&mut self, patience: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(40));
    }
}

/// A loopback port free for both UDP and TCP right now (a DNS server needs both).
pub fn free_udp_and_tcp_port() -> SocketAddr {
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port");
        let address = udp.local_addr().expect("a bound address");
        if std::net::TcpListener::bind(address).is_ok() {
            return address;
        }
    }
    panic!("no loopback port was free for both UDP and TCP");
}

/// Runs `hollow up --api-listen 127.0.0.1:0` and reads the bound address from its output.
fn spawn_up(binary: &Path, data_dir: &Path, extra_args: &[String]) -> (Child, SocketAddr) {
    let mut child = Command::new(binary)
        .arg("up")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--api-listen", "127.0.0.1:0"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if let Some(address) = line
                .strip_prefix("API server: http://")
                .or_else(|| line.strip_prefix("API server: https://"))
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(address.to_string());
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    match receiver.recv_timeout(DEFAULT_WAIT) {
        Ok(address) => (
            child,
            address.parse().expect("hollow prints a socket address"),
        ),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hollow up did not report its API address within {DEFAULT_WAIT:?}");
        }
    }
}

/// The real kubectl, with a private discovery cache.
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache: TempDir,
}

impl Kubectl {
    /// The `kubectl` on `PATH`.
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl::with_binary(require_tool("kubectl"), kubeconfig)
    }

    /// A specific minor version (`"1.27"`), from the versioned binaries that stand beside
    /// the `kubectl` on `PATH`.
    pub fn version(minor: &str, kubeconfig: &Path) -> Kubectl {
        let kubectl = require_tool("kubectl");
        let real = std::fs::canonicalize(&kubectl).unwrap_or(kubectl);
        let binary = real
            .parent()
            .expect("kubectl lives in a directory")
            .join(format!("kubectl.{minor}"));
        assert!(
            binary.exists(),
            "{} is missing: the versioned kubectl binaries ship beside kubectl in google-cloud-cli",
            binary.display()
        );
        Kubectl::with_binary(binary, kubeconfig)
    }

    fn with_binary(binary: PathBuf, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            binary,
            kubeconfig: kubeconfig.to_path_buf(),
            cache: TempDir::new().expect("creating a kubectl cache directory"),
        }
    }

    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(&self.binary);
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs kubectl and returns its output, whatever the exit code.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().expect("running kubectl")
    }

    /// Runs kubectl, fails the test unless it succeeds, returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let shown: Vec<String> = args
            .clone()
            .into_iter()
            .map(|arg| arg.as_ref().to_string_lossy().into_owned())
            .collect();
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kubectl {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            shown.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl with `stdin` as its standard input (for `apply -f -`).
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("writing kubectl's stdin");
        let output = child.wait_with_output().expect("waiting for kubectl");
        assert!(
            output.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl, fails the test if it succeeds, returns stderr.
    pub fn fails<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "kubectl was expected to fail but printed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// The path of a tool the test needs; fails the test when it is not installed.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for directory in std::env::split_paths(&path) {
        let candidate = directory.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed, and this test needs it: run `scripts/install-test-tools.sh` \
         (as .ci/run does) to install the test tools"
    );
}

/// Polls `condition` until it returns `Some`, or fails the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `text` to a file in `directory` and returns its path (manifests for `kubectl -f`).
pub fn write_file(directory: &Path, name: &str, text: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, text).expect("writing a test file");
    path
}

/// One HTTP/1.1 request over a fresh loopback connection; returns the status code and body.
///
/// Deliberately minimal (`Connection: close`, body read to the end) so tests can speak raw HTTP
/// to the API server without a client library in between.
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer (413, say) and close before it has read a large body; its answer
    // is still there to read, so a failed body write is not the end.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    if let Err(error) = stream.read_to_end(&mut response)
        && response.is_empty()
    {
        return Err(error);
    }
    let text_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..text_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status code"))?;
    let mut payload = response[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    Ok((status, payload))
}

/// Joins the chunks of a chunked HTTP/1.1 body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = data.windows(2).position(|window| window == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
            break;
        };
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        body.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    body
}

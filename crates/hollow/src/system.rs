//! The subcommands that run more than the DNS server: `up` (the whole system on this machine)
//! and the controllers, node agent and service proxy alone against an API server.
//!
//! Built with the `full` feature, on by default. Without it (`cargo build --release -p hollow
//! --no-default-features`) the binary is `hollow dns` alone: none of the API server, store,
//! controllers, agent or proxy code is linked in, which is what a DNS server attached to a
//! real cluster wants, since code that a process runs once at start-up stays resident.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use hollow_apiserver::auth::BearerToken;
use hollow_apiserver::{ApiServer, ApiServerConfig, tls};
use hollow_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{ClientArgs, DnsArgs, client_from_kubeconfig, ctrl_c};

#[derive(Args)]
struct ProxyArgs {
    /// Where NodePort services listen.
    #[arg(long, default_value = "127.0.0.1")]
    nodeport_address: std::net::IpAddr,
    /// The range LoadBalancer services get their ingress address from (written into their
    /// status, as k3s's ServiceLB does); `none` leaves that to another controller.
    #[arg(long, default_value = hollow_proxy::DEFAULT_LOAD_BALANCER_RANGE)]
    load_balancer_range: String,
}

impl ProxyArgs {
    fn config(&self) -> Result<hollow_proxy::ProxyConfig> {
        let load_balancer_range = match self.load_balancer_range.as_str() {
            "none" => None,
            range => Some(
                range
                    .parse()
                    .with_context(|| format!("--load-balancer-range {range}"))?,
            ),
        };
        Ok(hollow_proxy::ProxyConfig {
            node_address: self.nodeport_address,
            load_balancer_range,
            ..hollow_proxy::ProxyConfig::default()
        })
    }
}

#[derive(Args)]
pub(crate) struct ProxyCommandArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
}

#[derive(Args)]
struct AgentArgs {
    /// Run no processes: pods get IPs and become Running and Ready at once (like kwok).
    #[arg(long)]
    simulate: bool,
    /// The cluster's pod range; each node's range (spec.podCIDR) is carved from it. The
    /// default is on loopback so every pod IP can be bound without root.
    #[arg(long, default_value = "127.244.0.0/16")]
    pod_cidr: String,
}

impl AgentArgs {
    fn config(&self, node_name: &str, data_dir: PathBuf) -> hollow_agent::AgentConfig {
        let mut config = hollow_agent::AgentConfig::new(node_name, data_dir);
        config.simulate = self.simulate;
        config.cluster_cidr = self.pod_cidr.clone();
        config
    }
}

#[derive(Args)]
pub(crate) struct AgentCommandArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The Node this agent registers and serves.
    #[arg(long)]
    node_name: String,
    /// Where pod work directories and logs live.
    #[arg(long, default_value_os_t = default_data_dir().join("agent"))]
    data_dir: PathBuf,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Args)]
pub(crate) struct UpArgs {
    /// Where the store and the kubeconfig live.
    #[arg(long, env = "HOLLOW_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// The API server's address. Plain HTTP without authentication is served on loopback
    /// only; any other address needs --tls.
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_listen: SocketAddr,
    /// Serve HTTPS and require a bearer token. A CA and server certificate (in
    /// <data-dir>/pki) and a token (<data-dir>/token) are generated on first start and reused;
    /// the kubeconfig carries the CA and the token.
    #[arg(long)]
    tls: bool,
    /// Another name or IP address for the generated server certificate (repeatable); it
    /// always names 127.0.0.1, localhost and the listen address.
    #[arg(long = "tls-san", value_name = "NAME_OR_IP", requires = "tls")]
    tls_sans: Vec<String>,
    /// Serve this PEM certificate chain (leaf first) instead of a generated one; implies --tls.
    #[arg(long, requires = "tls_private_key_file", conflicts_with = "tls_sans")]
    tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// The PEM CA the kubeconfig trusts with --tls-cert-file (default: that chain itself).
    #[arg(long, requires = "tls_cert_file")]
    tls_ca_file: Option<PathBuf>,
    /// Require the token in this file instead of a generated one; implies --tls.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The range ClusterIPs are allocated from. The default is on loopback so every service
    /// address is usable on this machine without root.
    #[arg(long, default_value = hollow_apiserver::DEFAULT_SERVICE_CIDR)]
    service_cidr: hollow_apiserver::allocator::Cidr,
    /// The cluster DNS server's UDP and TCP address.
    #[arg(long, default_value = "127.0.0.1:1053")]
    dns_listen: SocketAddr,
    #[command(flatten)]
    dns: DnsArgs,
    /// The name of the Node this machine registers.
    #[arg(long, default_value = "hollow")]
    node_name: String,
    /// Run no node agent: the control plane and DNS only (pods stay Pending until an agent,
    /// `hollow agent`, or another client reports them).
    #[arg(long, conflicts_with = "simulate")]
    no_agent: bool,
    #[command(flatten)]
    agent: AgentArgs,
    /// Run no service proxy: ClusterIP, NodePort and LoadBalancer addresses do not answer.
    #[arg(long)]
    no_proxy: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
}

/// `$XDG_DATA_HOME/hollow`, or `~/.local/share/hollow`.
fn default_data_dir() -> PathBuf {
    if let Some(data_home) = std::env::var_os("XDG_DATA_HOME").filter(|value| !value.is_empty()) {
        return PathBuf::from(data_home).join("hollow");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/hollow"),
        None => PathBuf::from(".hollow"),
    }
}

/// A client for the API server this process runs, through the kubeconfig `up` wrote for
/// kubectl: the same address, CA and token.
async fn local_client(kubeconfig: &Path) -> Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .with_context(|| format!("using the kubeconfig {}", kubeconfig.display()))?;
    // The server is this process: never reach it through a proxy named in the environment.
    config.proxy_url = None;
    kube::Client::try_from(config).context("building the in-process API client")
}

/// A shutdown future every component can take a copy of.
fn shutdown_signal(receiver: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut receiver = receiver.clone();
    async move {
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

/// `hollow controllers`.
pub(crate) async fn controllers(args: ClientArgs) -> Result<()> {
    let client = client_from_kubeconfig(args.kubeconfig.as_deref()).await?;
    hollow_controllers::run(client, hollow_controllers::Options::default(), ctrl_c())
        .await
        .context("running the controllers")
}

/// `hollow agent`.
pub(crate) async fn agent(args: AgentCommandArgs) -> Result<()> {
    let client = client_from_kubeconfig(args.client.kubeconfig.as_deref()).await?;
    let config = args.agent.config(&args.node_name, args.data_dir.clone());
    hollow_agent::run(client, config, ctrl_c())
        .await
        .context("running the node agent")
}

/// `hollow proxy`.
pub(crate) async fn proxy(args: ProxyCommandArgs) -> Result<()> {
    let client = client_from_kubeconfig(args.client.kubeconfig.as_deref()).await?;
    hollow_proxy::run(client, args.proxy.config()?, ctrl_c())
        .await
        .context("running the service proxy")
}

/// `hollow up`.
pub(crate) async fn up(args: UpArgs) -> Result<()> {
    let tls_wanted = args.tls || args.tls_cert_file.is_some() || args.token_file.is_some();
    if !args.api_listen.ip().is_loopback() && !tls_wanted {
        bail!(
            "--api-listen {} is not a loopback address, and plain HTTP without authentication is \
             served on loopback only. Add --tls to serve HTTPS with a bearer token (a CA, server \
             certificate and token are generated in the data directory and written into the \
             kubeconfig; --tls-san adds names to the certificate), or bring your own with \
             --tls-cert-file, --tls-private-key-file and --token-file",
            args.api_listen
        );
    }
    // Clients cannot connect to the unspecified address: they get loopback, on the same port.
    let client_ip = match args.api_listen.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let tls = if tls_wanted {
        let certificate = match (&args.tls_cert_file, &args.tls_private_key_file) {
            (Some(certificate), Some(key)) => {
                tls::ServingCertificate::from_files(certificate, key, args.tls_ca_file.as_deref())
                    .context("loading --tls-cert-file and --tls-private-key-file")?
            }
            _ => {
                let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
                names.push(client_ip.to_string());
                names.extend(args.tls_sans.iter().cloned());
                tls::ensure_self_signed(&args.data_dir.join("pki"), &names)
                    .context("preparing the API server's certificates")?
            }
        };
        let token = match &args.token_file {
            Some(path) => BearerToken::read(path)?,
            None => BearerToken::read_or_generate(&args.data_dir.join("token"))
                .context("preparing the API token")?,
        };
        Some((certificate, token))
    } else {
        None
    };
    let store = Store::open_redb(&args.data_dir.join("store.redb"), StoreOptions::default())
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding the API server to {}", args.api_listen))?;
    let address = SocketAddr::new(client_ip, listener.local_addr()?.port());
    let config = ApiServerConfig {
        advertise_address: address,
        service_cidr: args.service_cidr,
    };
    let server = ApiServer::with_config(store.clone(), config).await?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let credentials = tls
        .as_ref()
        .map(|(certificate, token)| (certificate.trusted_pem.as_str(), token.as_str()));
    write_kubeconfig(&kubeconfig, &format!("{scheme}://{address}"), credentials)?;

    // Shutdown runs in three steps, each on its own signal: the agent (which still needs the
    // API server to stop its pods), then the clients of the API server, then the API server,
    // so no component is left retrying a connection to a server that is already gone.
    let (stop_api, api_stopping) = watch::channel(false);
    let (stop, stopping) = watch::channel(false);
    let api = match tls {
        Some((certificate, token)) => tokio::spawn(server.serve_tls(
            listener,
            certificate.config,
            token,
            shutdown_signal(&api_stopping),
        )),
        None => tokio::spawn(server.serve(listener, shutdown_signal(&api_stopping))),
    };
    let client = local_client(&kubeconfig).await?;
    let controllers = tokio::spawn(hollow_controllers::run(
        client.clone(),
        hollow_controllers::Options::default(),
        shutdown_signal(&stopping),
    ));
    let proxy_config = args.proxy.config()?;
    let dns_config = args.dns.config(args.dns_listen)?;
    let proxy = if args.no_proxy {
        let stopped = shutdown_signal(&stopping);
        tokio::spawn(async move {
            stopped.await;
            Ok::<(), hollow_proxy::Error>(())
        })
    } else {
        tokio::spawn(hollow_proxy::run(
            client.clone(),
            proxy_config,
            shutdown_signal(&stopping),
        ))
    };
    let dns = tokio::spawn(hollow_dns::run(
        dns_config,
        client.clone(),
        shutdown_signal(&stopping),
    ));

    let mut agent_config = args
        .agent
        .config(&args.node_name, args.data_dir.join("agent"));
    // `up` owns its pods: stopping it stops them. After a kill -9 they keep running and the
    // next `up` on the same data directory finds them again.
    agent_config.stop_pods_on_shutdown = true;
    // The agent stops first, so it can still reach the API server while it stops its pods.
    let (stop_agent, agent_stopping) = watch::channel(false);
    let agent = if args.no_agent {
        tokio::spawn(std::future::pending::<Result<(), hollow_agent::Error>>())
    } else {
        tokio::spawn(hollow_agent::run(
            client.clone(),
            agent_config,
            shutdown_signal(&agent_stopping),
        ))
    };

    println!("hollow is up.");
    println!("  API server: {scheme}://{address}");
    println!("  kubeconfig: {}", kubeconfig.display());
    println!(
        "  DNS: {} (zone {})",
        args.dns_listen, args.dns.cluster_domain
    );
    match (args.no_agent, args.agent.simulate) {
        (true, _) => println!("  node agent: none (--no-agent)"),
        (false, true) => println!("  node: {} (simulated pods)", args.node_name),
        (false, false) => println!("  node: {} (pods run as local processes)", args.node_name),
    }
    if args.no_proxy {
        println!("  service proxy: none (--no-proxy)");
    } else {
        println!(
            "  service proxy: ClusterIPs, NodePorts on {}, LoadBalancer IPs from {}",
            args.proxy.nodeport_address, args.proxy.load_balancer_range
        );
    }
    println!();
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    println!(
        "  dig @{} -p {} kubernetes.default.svc.{}",
        args.dns_listen.ip(),
        args.dns_listen.port(),
        args.dns.cluster_domain
    );

    let mut agent = agent;
    let (mut api, mut controllers, mut dns, mut proxy) = (api, controllers, dns, proxy);
    // Without an agent the task is a pending placeholder: nothing to wait for.
    let mut agent_running = !args.no_agent;
    tokio::select! {
        _ = ctrl_c() => {}
        result = &mut api => result.context("the API server task")??,
        result = &mut controllers => result.context("the controllers task")?.context("the controllers")?,
        result = &mut dns => result.context("the DNS task")?.context("the DNS server")?,
        result = &mut proxy => result.context("the proxy task")?.context("the service proxy")?,
        result = &mut agent => {
            agent_running = false;
            result.context("the agent task")?.context("the node agent")?;
        }
    }
    let _ = stop_agent.send(true);
    if agent_running {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(35), agent).await;
    }
    let _ = stop.send(true);
    let clients = async {
        tokio::join!(
            finish(&mut controllers),
            finish(&mut dns),
            finish(&mut proxy)
        );
    };
    if tokio::time::timeout(std::time::Duration::from_secs(5), clients)
        .await
        .is_err()
    {
        tracing::warn!(
            "components still running 5 s after the stop; stopping the API server anyway"
        );
    }
    let _ = stop_api.send(true);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), finish(&mut api)).await;
    store.shutdown().await;
    Ok(())
}

/// Waits for a task unless `select!` already took its result (a finished handle must not be
/// polled again).
async fn finish<T>(task: &mut tokio::task::JoinHandle<T>) {
    if !task.is_finished() {
        let _ = task.await;
    }
}

/// A kubeconfig for kubectl and kube-rs pointing at this server; with TLS it carries the CA
/// to trust and the bearer token, so only its owner may read it.
fn write_kubeconfig(path: &Path, server: &str, tls: Option<(&str, &str)>) -> Result<()> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Quoted: a hex token such as 12e45... would otherwise read as a YAML number.
    let (certificate_authority, user) = match tls {
        Some((ca_pem, token)) => (
            format!(
                "\n    certificate-authority-data: \"{}\"",
                base64::engine::general_purpose::STANDARD.encode(ca_pem)
            ),
            format!("\n    token: \"{token}\""),
        ),
        None => (String::new(), " {}".to_string()),
    };
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: hollow
  cluster:
    server: {server}{certificate_authority}
contexts:
- name: hollow
  context:
    cluster: hollow
    user: hollow
    namespace: default
current-context: hollow
users:
- name: hollow
  user:{user}
"
    );
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // An older kubeconfig may have been readable by others: `mode` only applies on create.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

//! `hollow`: Kubernetes-style service discovery centred on headless services, as one program.
//!
//! This binary is thin: it parses the command line, sets up logging, binds sockets and hands
//! them to the library crates. `hollow up` runs the whole system on one machine; the other
//! subcommands run one component against any Kubernetes-compatible API server (hollow's own
//! or a real cluster's), reached through a kubeconfig as kubectl reaches it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use hollow_apiserver::{ApiServer, ApiServerConfig};
use hollow_store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "hollow",
    version,
    about = "Kubernetes-style service discovery, centred on headless services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run hollow on this machine: API server on the embedded store, controllers and DNS.
    Up(UpArgs),
    /// Run the controllers alone against an API server.
    Controllers(ClientArgs),
    /// Run the cluster DNS server alone against an API server.
    Dns(DnsCommandArgs),
    /// Run a node agent alone against an API server: registers a Node and runs its pods.
    Agent(AgentCommandArgs),
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
struct AgentCommandArgs {
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
struct UpArgs {
    /// Where the store and the kubeconfig live.
    #[arg(long, env = "HOLLOW_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// The API server's address. Plain HTTP without authentication is served on loopback only.
    #[arg(long, default_value = "127.0.0.1:6443")]
    api_listen: SocketAddr,
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
}

#[derive(Args)]
struct ClientArgs {
    /// The kubeconfig to reach the API server with (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Args)]
struct DnsCommandArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "127.0.0.1:1053")]
    listen: SocketAddr,
    #[command(flatten)]
    dns: DnsArgs,
}

#[derive(Args)]
struct DnsArgs {
    /// The cluster zone.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// TTL of answers, in seconds.
    #[arg(long, default_value_t = 5)]
    dns_ttl: u32,
    /// Pod records (a-b-c-d.<namespace>.pod.<zone>): disabled, insecure or verified.
    #[arg(long, default_value = "disabled")]
    pod_records: hollow_dns::PodMode,
    /// Where names outside the cluster zone go: a resolv.conf path, `none` to refuse them, or
    /// comma-separated `ip:port` servers.
    #[arg(long, default_value = "/etc/resolv.conf")]
    upstream: String,
    /// Serve Prometheus metrics of the DNS server on this address.
    #[arg(long)]
    dns_metrics_listen: Option<SocketAddr>,
}

impl DnsArgs {
    fn config(&self, listen: SocketAddr) -> Result<hollow_dns::DnsConfig> {
        let upstreams = match self.upstream.as_str() {
            "none" => hollow_dns::Upstreams::Disabled,
            text if text.starts_with('/') => hollow_dns::Upstreams::ResolvConf(text.into()),
            text => hollow_dns::Upstreams::Servers(
                text.split(',')
                    .map(|server| server.trim().parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--upstream {text:?} is not a list of ip:port"))?,
            ),
        };
        Ok(hollow_dns::DnsConfig {
            listen,
            cluster_domain: self.cluster_domain.clone(),
            ttl: self.dns_ttl,
            pod_mode: self.pod_records,
            upstreams,
            metrics_listen: self.dns_metrics_listen,
            ..hollow_dns::DnsConfig::default()
        })
    }
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Controllers(args) => {
                let client = client_from_kubeconfig(args.kubeconfig.as_deref()).await?;
                hollow_controllers::run(client, hollow_controllers::Options::default(), ctrl_c())
                    .await
                    .context("running the controllers")
            }
            Command::Agent(args) => {
                let client = client_from_kubeconfig(args.client.kubeconfig.as_deref()).await?;
                let config = args.agent.config(&args.node_name, args.data_dir.clone());
                hollow_agent::run(client, config, ctrl_c())
                    .await
                    .context("running the node agent")
            }
            Command::Dns(args) => {
                let client = client_from_kubeconfig(args.client.kubeconfig.as_deref()).await?;
                hollow_dns::run(args.dns.config(args.listen)?, client, ctrl_c())
                    .await
                    .context("running the DNS server")
            }
        }
    })
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn ctrl_c() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// A kube-rs client from a kubeconfig, as kubectl reads it.
async fn client_from_kubeconfig(path: Option<&Path>) -> Result<kube::Client> {
    let config = match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding a kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
    };
    kube::Client::try_from(config).context("building the API client")
}

/// A client for the API server this process runs.
fn local_client(address: SocketAddr) -> Result<kube::Client> {
    let url: http::Uri = format!("http://{address}")
        .parse()
        .context("the API address as a URL")?;
    let mut config = kube::Config::new(url);
    config.default_namespace = "default".into();
    kube::Client::try_from(config).context("building the in-process API client")
}

/// A shutdown future every component can take a copy of.
fn shutdown_signal(receiver: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut receiver = receiver.clone();
    async move {
        let _ = receiver.wait_for(|stopping| *stopping).await;
    }
}

async fn up(args: UpArgs) -> Result<()> {
    if !args.api_listen.ip().is_loopback() {
        bail!(
            "--api-listen {} is not a loopback address: hollow serves plain HTTP without authentication, \
             so it listens on loopback only (TLS with a bearer token is not built yet)",
            args.api_listen
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data directory {}", args.data_dir.display()))?;
    let store = Store::open_redb(&args.data_dir.join("store.redb"), StoreOptions::default())
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding the API server to {}", args.api_listen))?;
    let address = listener.local_addr()?;
    let config = ApiServerConfig {
        advertise_address: address,
        service_cidr: args.service_cidr,
    };
    let server = ApiServer::with_config(store.clone(), config).await?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, address)?;

    let (stop, stopping) = watch::channel(false);
    let api = tokio::spawn(server.serve(listener, shutdown_signal(&stopping)));
    let client = local_client(address)?;
    let controllers = tokio::spawn(hollow_controllers::run(
        client.clone(),
        hollow_controllers::Options::default(),
        shutdown_signal(&stopping),
    ));
    let dns_config = args.dns.config(args.dns_listen)?;
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
    println!("  API server: http://{address}");
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
    let mut agent_running = true;
    tokio::select! {
        _ = ctrl_c() => {}
        result = api => result.context("the API server task")??,
        result = controllers => result.context("the controllers task")?.context("the controllers")?,
        result = dns => result.context("the DNS task")?.context("the DNS server")?,
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
    store.shutdown().await;
    Ok(())
}

/// A kubeconfig for kubectl and kube-rs pointing at this server.
fn write_kubeconfig(path: &Path, address: SocketAddr) -> Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: hollow
  cluster:
    server: http://{address}
contexts:
- name: hollow
  context:
    cluster: hollow
    user: hollow
    namespace: default
current-context: hollow
users:
- name: hollow
  user: {{}}
"
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

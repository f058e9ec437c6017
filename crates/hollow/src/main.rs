//! `hollow`: Kubernetes-style service discovery centred on headless services, as one program.
//!
//! This binary is thin: it parses the command line, sets up logging, binds sockets and hands
//! them to the library crates. `hollow up` runs the whole system on one machine; the other
//! subcommands run one component against any Kubernetes-compatible API server (hollow's own
//! or a real cluster's), reached through a kubeconfig as kubectl reaches it.
//!
//! This file holds `hollow dns` and the dispatch; everything else is in `system.rs`, behind
//! the default `full` feature, so that `--no-default-features` builds the DNS server alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[cfg(feature = "full")]
mod system;
#[cfg(feature = "full")]
use system::{AgentCommandArgs, ProxyCommandArgs, UpArgs};

/// jemalloc instead of glibc malloc: with 16 clients creating pods the API server spent ~15%
/// less CPU per create (83 vs 98–110 µs, `scripts/bench-api.sh` alternating both), because the
/// request path allocates and frees many small objects across threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start-up. A background thread returns freed pages to the
/// kernel within a second even when the process then sits idle (the DNS server after its first
/// sync, the API server after a burst); without it jemalloc only purges while allocating. One
/// such thread is plenty for two cores.
// SAFETY: jemalloc reads this NUL-terminated string under this exact symbol name before the
// first allocation; it is never written.
#[cfg(feature = "full")]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static ALLOCATOR_SETTINGS: &[u8; 68] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000\0";

/// The DNS-only build's settings, for footprint: besides the background purge, one arena
/// rather than four per core, and small per-thread caches (16 objects of each small size, two
/// of each large one, nothing above 4 KiB). Each allocating thread (the runtime, the zone
/// thread) otherwise kept its own partly used pages and up to 200 freed objects of every size
/// class. On the benchmark cluster `hollow dns` holds 1.2 MiB less after sync (27.3 → 26.1
/// MiB) and syncs as fast; the answering threads do not allocate, so the caches' speed does
/// not matter to queries. Turning the caches off saved 0.3 MiB more but made the sync 0.7 s
/// slower.
// SAFETY: as above.
#[cfg(not(feature = "full"))]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static ALLOCATOR_SETTINGS: &[u8; 143] = b"background_thread:true,max_background_threads:1,\
dirty_decay_ms:1000,narenas:1,tcache_nslots_small_max:16,tcache_nslots_large:2,tcache_max:4096\0";

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
    /// Run hollow on this machine: API server on the embedded store, controllers, DNS, the
    /// service proxy and a node agent.
    #[cfg(feature = "full")]
    Up(Box<UpArgs>),
    /// Run the controllers alone against an API server.
    #[cfg(feature = "full")]
    Controllers(ClientArgs),
    /// Run the cluster DNS server alone against an API server.
    Dns(DnsCommandArgs),
    /// Run a node agent alone against an API server: registers a Node and runs its pods.
    #[cfg(feature = "full")]
    Agent(AgentCommandArgs),
    /// Run the service proxy alone against an API server: ClusterIP, NodePort and
    /// LoadBalancer services answer on this machine.
    #[cfg(feature = "full")]
    Proxy(ProxyCommandArgs),
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // `hollow dns` answers queries on its own UDP threads and keeps the zone on another; the
    // runtime only drives the watches, TCP and forwarding, which one thread does easily. Each
    // further runtime thread costs a stack and its own allocator cache, and resident memory is
    // what the standalone DNS server is measured by.
    let mut runtime = if matches!(cli.command, Command::Dns(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            #[cfg(feature = "full")]
            Command::Up(args) => system::up(*args).await,
            #[cfg(feature = "full")]
            Command::Controllers(args) => system::controllers(args).await,
            #[cfg(feature = "full")]
            Command::Agent(args) => system::agent(args).await,
            Command::Dns(args) => {
                let client = client_from_kubeconfig(args.client.kubeconfig.as_deref()).await?;
                hollow_dns::run(args.dns.config(args.listen)?, client, ctrl_c())
                    .await
                    .context("running the DNS server")
            }
            #[cfg(feature = "full")]
            Command::Proxy(args) => system::proxy(args).await,
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

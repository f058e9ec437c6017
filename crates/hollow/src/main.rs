//! `hollow`: Kubernetes-style service discovery centred on headless services, as one program.
//!
//! This binary is thin: it parses the command line, sets up logging, binds sockets and hands
//! them to the library crates. `hollow up` runs the whole system on one machine; the other
//! subcommands run one component against any Kubernetes-compatible API server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hollow_apiserver::{ApiServer, ApiServerConfig};
use hollow_store::{Store, StoreOptions};
use tokio::net::TcpListener;

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
    /// Run hollow on this machine: the API server on the embedded store.
    Up(UpArgs),
}

#[derive(Parser)]
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
        }
    })
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
    println!("hollow is up.");
    println!("  API server: http://{address}");
    println!("  kubeconfig: {}", kubeconfig.display());
    println!();
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server.serve(listener, shutdown).await?;
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

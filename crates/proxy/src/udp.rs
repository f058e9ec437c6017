//! UDP: a flow per client address, each with its own connected socket to the endpoint
//! chosen for its first datagram, ended after an idle timeout (the userspace proxy's 250 ms
//! was too short for most protocols; this follows the kernel's 30 s UDP conntrack default).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::tcp::{Backend, ConnectSettings};

/// The largest datagram UDP can carry.
const DATAGRAM: usize = 65_536;

struct Flow {
    upstream: Arc<UdpSocket>,
    /// Milliseconds since `epoch` of the last datagram either way.
    last_active: AtomicU64,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

/// Relays datagrams until the task is aborted. Aborting leaves the flows' reply tasks to
/// end at their idle timeout, as established TCP connections are left to finish.
pub(crate) async fn serve(socket: UdpSocket, backend: Arc<Backend>, settings: ConnectSettings) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    let epoch = Instant::now();
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let (length, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(service = %backend.name, %error, "UDP receive failed");
                continue;
            }
        };
        let existing = flows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .cloned();
        let flow = match existing {
            Some(flow) => flow,
            None => match open_flow(&socket, &backend, client, &flows, epoch, settings).await {
                Some(flow) => flow,
                // No usable endpoint: dropped, as nothing can answer.
                None => continue,
            },
        };
        flow.last_active
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Err(error) = flow.upstream.send(&buffer[..length]).await {
            tracing::debug!(service = %backend.name, %client, %error, "UDP send failed; flow dropped");
            flows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&client);
        }
    }
}

async fn open_flow(
    frontend: &Arc<UdpSocket>,
    backend: &Arc<Backend>,
    client: SocketAddr,
    flows: &Flows,
    epoch: Instant,
    settings: ConnectSettings,
) -> Option<Arc<Flow>> {
    let endpoints = backend.endpoints.load_full();
    let endpoint = backend.pick(client.ip(), &endpoints, settings.picker)?;
    let upstream = match connected_socket(endpoint.address()).await {
        Ok(upstream) => Arc::new(upstream),
        Err(error) => {
            tracing::debug!(service = %backend.name, endpoint = %endpoint.address(), %error, "UDP flow not opened");
            return None;
        }
    };
    let flow = Arc::new(Flow {
        upstream: Arc::clone(&upstream),
        last_active: AtomicU64::new(epoch.elapsed().as_millis() as u64),
    });
    flows
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(client, Arc::clone(&flow));
    tokio::spawn(relay_replies(
        Arc::clone(frontend),
        Arc::clone(&flow),
        client,
        Arc::clone(flows),
        epoch,
        settings.udp_idle_timeout,
    ));
    Some(flow)
}

/// A socket of the endpoint's family, on loopback when the endpoint is, connected to it.
async fn connected_socket(endpoint: SocketAddr) -> io::Result<UdpSocket> {
    let local = match endpoint.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    socket.connect(endpoint).await?;
    Ok(socket)
}

/// Sends the endpoint's replies back from the frontend address until the flow has been idle
/// for `idle_timeout` in both directions.
async fn relay_replies(
    frontend: Arc<UdpSocket>,
    flow: Arc<Flow>,
    client: SocketAddr,
    flows: Flows,
    epoch: Instant,
    idle_timeout: Duration,
) {
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let last_active = Duration::from_millis(flow.last_active.load(Ordering::Relaxed));
        let idle_deadline = epoch + last_active + idle_timeout;
        match tokio::time::timeout_at(idle_deadline, flow.upstream.recv(&mut buffer)).await {
            Ok(Ok(length)) => {
                flow.last_active
                    .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                let _ = frontend.send_to(&buffer[..length], client).await;
            }
            // A refused port (ICMP) or similar: the flow is over.
            Ok(Err(_)) => break,
            Err(_) => {
                let last_active = Duration::from_millis(flow.last_active.load(Ordering::Relaxed));
                if epoch + last_active + idle_timeout <= Instant::now() {
                    break;
                }
            }
        }
    }
    let mut flows = flows.lock().unwrap_or_else(PoisonError::into_inner);
    if flows
        .get(&client)
        .is_some_and(|current| Arc::ptr_eq(current, &flow))
    {
        flows.remove(&client);
    }
}

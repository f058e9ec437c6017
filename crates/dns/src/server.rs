//! Sockets, workers and forwarding.
//!
//! UDP is served by plain OS threads, one per core by default, each blocking on its own
//! `SO_REUSEPORT` socket bound to the same address: the kernel spreads datagrams over the
//! sockets, and a worker's loop is `recvmmsg` (every waiting datagram, up to 32) →
//! [`Snapshot::respond`] for each → one `sendmmsg`, with no runtime in between. Each query loads the current snapshot from an [`ArcSwap`] (lock-free) so a rebuild
//! becomes visible to the very next query. TCP (and the metrics endpoint) run as tokio tasks;
//! they are the cold path.
//!
//! Names outside the zone are forwarded to upstream resolvers when some are configured
//! (REFUSED otherwise) through [`Forwarder`], a tokio task per query with a small
//! answer cache keyed by lower-cased name, type and class. The cache serves entries until the
//! smallest TTL in the answer (capped) runs out, and counts the TTLs down: an answer from the
//! cache carries what is left of each record's TTL, as a resolver's would.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Error;
use crate::metrics::{self, Metrics, WorkerMetrics};
use crate::snapshot::{Disposition, Snapshot, Transport};
use crate::wire::{self, MAX_NAME_LEN, record_type};

/// How long a blocked UDP worker waits before checking whether it should stop.
const WORKER_POLL: Duration = Duration::from_millis(100);
/// Idle TCP connections are closed after this long.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest UDP reply we write, whatever the client advertises.
const UDP_REPLY_CAPACITY: usize = 4096;
/// Longest time a forwarded answer is cached.
const FORWARD_CACHE_MAX_TTL: u32 = 60;

/// Settings of the serving side (see [`crate::DnsConfig`] for their meaning).
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub udp_workers: usize,
    pub metrics_listen: Option<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    pub forward_timeout: Duration,
    pub forward_cache_entries: usize,
}

/// State shared by every worker and task.
struct Shared {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    forwarder: Option<Arc<Forwarder>>,
    stop: AtomicBool,
}

/// A running DNS server. Feed it snapshots with [`DnsServer::publish`]; stop it with
/// [`DnsServer::shutdown`] (dropping it stops it too, without waiting).
pub struct DnsServer {
    shared: Arc<Shared>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    workers: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP, TCP (same port) and metrics, and starts serving `initial` — normally
    /// [`Snapshot::unsynced`], which answers SERVFAIL inside the zone. Must be called from
    /// within a tokio runtime (TCP, metrics and forwarding run on it).
    pub async fn start(settings: ServerSettings, initial: Snapshot) -> Result<Self, Error> {
        let worker_count = if settings.udp_workers == 0 {
            std::thread::available_parallelism().map_or(1, |count| count.get())
        } else {
            settings.udp_workers
        };
        let (udp_sockets, tcp_listener) = bind_udp_and_tcp(settings.listen, worker_count)?;
        let udp_addr = udp_sockets[0]
            .local_addr()
            .map_err(Error::io("udp local address"))?;
        let tcp_addr = tcp_listener
            .local_addr()
            .map_err(Error::io("tcp local address"))?;
        let metrics = Arc::new(Metrics::new(worker_count + 1));
        let forwarder = (!settings.upstreams.is_empty()).then(|| {
            Arc::new(Forwarder::new(
                settings.upstreams.clone(),
                settings.forward_timeout,
                settings.forward_cache_entries,
            ))
        });
        let shared = Arc::new(Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(initial)),
            metrics,
            forwarder,
            stop: AtomicBool::new(false),
        });

        let mut tasks = Vec::new();
        let mut metrics_addr = None;
        if let Some(address) = settings.metrics_listen {
            let listener = TcpListener::bind(address)
                .await
                .map_err(Error::io("bind metrics listener"))?;
            metrics_addr = Some(
                listener
                    .local_addr()
                    .map_err(Error::io("metrics address"))?,
            );
            tasks.push(tokio::spawn(metrics::serve(
                listener,
                Arc::clone(&shared.metrics),
                Arc::clone(&shared.snapshot),
            )));
        }
        tasks.push(tokio::spawn(serve_tcp(tcp_listener, Arc::clone(&shared))));

        let runtime = tokio::runtime::Handle::current();
        let mut workers = Vec::new();
        for (index, socket) in udp_sockets.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let runtime = runtime.clone();
            let worker = std::thread::Builder::new()
                .name(format!("dns-udp-{index}"))
                .spawn(move || udp_worker(index, Arc::new(socket), shared, runtime))
                .map_err(Error::io("spawn udp worker"))?;
            workers.push(worker);
        }
        tracing::info!(%udp_addr, %tcp_addr, ?metrics_addr, worker_count, "DNS server listening");
        Ok(Self {
            shared,
            udp_addr,
            tcp_addr,
            metrics_addr,
            workers,
            tasks,
        })
    }

    /// Makes `snapshot` the one every following query is answered from.
    pub fn publish(&self, snapshot: Snapshot) {
        self.shared.snapshot.store(Arc::new(snapshot));
    }

    /// The snapshot currently served.
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Records a rebuild's duration in the metrics.
    pub fn record_rebuild(&self, duration: Duration) {
        self.shared.metrics.record_rebuild(duration);
    }

    /// Records an incremental update's duration in the metrics.
    pub fn record_update(&self, duration: Duration) {
        self.shared.metrics.record_update(duration);
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops every worker and task and waits for the UDP workers to exit.
    pub async fn shutdown(mut self) {
        self.stop_everything();
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
    }

    fn stop_everything(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop_everything();
    }
}

fn udp_socket(address: SocketAddr) -> Result<UdpSocket, Error> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(Error::io("create udp socket"))?;
    socket
        .set_reuse_port(true)
        .map_err(Error::io("set SO_REUSEPORT"))?;
    // Bursts of a few hundred queries must not overflow the default buffer.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket
        .bind(&address.into())
        .map_err(Error::io("bind udp socket"))?;
    socket
        .set_read_timeout(Some(WORKER_POLL))
        .map_err(Error::io("set udp read timeout"))?;
    Ok(socket.into())
}

/// Binds `count` UDP sockets and one TCP listener on the same port. With port 0 the kernel
/// picks the UDP port; the TCP bind may then collide, so a few ports are tried.
fn bind_udp_and_tcp(
    address: SocketAddr,
    count: usize,
) -> Result<(Vec<UdpSocket>, TcpListener), Error> {
    let attempts = if address.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let first = udp_socket(address)?;
        let bound = first.local_addr().map_err(Error::io("udp local address"))?;
        let listener = match std::net::TcpListener::bind(bound) {
            Ok(listener) => listener,
            Err(error) => {
                last_error = Some(error);
                continue;
            }
        };
        listener
            .set_nonblocking(true)
            .map_err(Error::io("tcp nonblocking"))?;
        let listener = TcpListener::from_std(listener).map_err(Error::io("tcp listener"))?;
        let mut sockets = vec![first];
        for _ in 1..count {
            sockets.push(udp_socket(bound)?);
        }
        return Ok((sockets, listener));
    }
    Err(Error::Io {
        context: "bind tcp listener",
        source: last_error.unwrap_or_else(|| std::io::Error::other("no port")),
    })
}

/// Datagrams taken from (and answers given to) the kernel per system call.
const BATCH: usize = 32;

/// A datagram taken in a batch.
#[derive(Clone, Copy)]
struct Received {
    len: usize,
    peer: Option<SockaddrStorage>,
    truncated: bool,
}

fn to_socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// One UDP worker: `recvmmsg` takes whatever datagrams are waiting (at least one, at most
/// [`BATCH`]), each is answered from the current snapshot into its own output slot, and one
/// `sendmmsg` hands every answer back. Under load this halves the system calls per query;
/// when idle it behaves like `recvfrom`/`sendto`.
fn udp_worker(
    index: usize,
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
) {
    let metrics = shared.metrics.shard(index);
    let descriptor = socket.as_raw_fd();
    let mut input = vec![0u8; BATCH * UDP_REPLY_CAPACITY];
    let mut output = vec![0u8; BATCH * UDP_REPLY_CAPACITY];
    let mut receive_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut received = [Received {
        len: 0,
        peer: None,
        truncated: false,
    }; BATCH];
    let mut reply_lengths = [0usize; BATCH];
    let mut reply_peers: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
    let mut rotation = index.wrapping_mul(7919);
    while !shared.stop.load(Ordering::Relaxed) {
        let count = {
            let mut slots = input.chunks_mut(UDP_REPLY_CAPACITY);
            let mut buffers: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    slots.next().expect("one slot per batch entry"),
                )]
            });
            match recvmmsg(
                descriptor,
                &mut receive_headers,
                buffers.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => {
                    let mut count = 0;
                    for message in results {
                        received[count] = Received {
                            len: message.bytes,
                            peer: message.address,
                            truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
                        };
                        count += 1;
                    }
                    count
                }
                Err(Errno::EAGAIN | Errno::EINTR) => 0,
                Err(error) => {
                    tracing::warn!(%error, "udp receive failed");
                    0
                }
            }
        };
        if count == 0 {
            continue;
        }
        let mut replies = 0;
        let snapshot = shared.snapshot.load();
        for (slot, message) in received[..count].iter().enumerate() {
            let Some(peer) = message.peer else {
                continue;
            };
            if message.truncated {
                // Larger than any query we answer; the tail is gone, so it cannot be parsed.
                metrics.record_drop();
                continue;
            }
            let started = Instant::now();
            rotation = rotation.wrapping_add(1);
            let packet = &input[slot * UDP_REPLY_CAPACITY..][..message.len];
            let out = &mut output[replies * UDP_REPLY_CAPACITY..][..UDP_REPLY_CAPACITY];
            let (disposition, qtype) = snapshot.respond(
                packet,
                out,
                Transport::Udp,
                rotation,
                shared.forwarder.is_some(),
            );
            match disposition {
                Disposition::Reply {
                    len,
                    rcode,
                    answers,
                } => {
                    reply_lengths[replies] = len;
                    reply_peers[replies] = Some(peer);
                    replies += 1;
                    metrics.record(qtype, rcode, answers, started.elapsed());
                }
                Disposition::Drop => metrics.record_drop(),
                Disposition::Forward => {
                    metrics.record_forward();
                    if let (Some(forwarder), Some(peer)) =
                        (&shared.forwarder, to_socket_addr(&peer))
                    {
                        let forwarder = Arc::clone(forwarder);
                        let socket = Arc::clone(&socket);
                        let query = packet.to_vec();
                        let shared = Arc::clone(&shared);
                        runtime.spawn(async move {
                            if let Some(reply) = forwarder.forward(&query, Transport::Udp).await {
                                let _ = socket.send_to(&reply, peer);
                                record_forwarded(
                                    shared.metrics.shared_shard(),
                                    qtype,
                                    &reply,
                                    started,
                                );
                            }
                        });
                    }
                }
                Disposition::ChaseExternal { len, target } => {
                    let Some(peer) = to_socket_addr(&peer) else {
                        continue;
                    };
                    let mut reply = out[..len].to_vec();
                    let forwarder = shared.forwarder.clone();
                    let socket = Arc::clone(&socket);
                    let shared = Arc::clone(&shared);
                    let limit = wire::parse_query(packet)
                        .ok()
                        .and_then(|question| question.edns)
                        .map_or(wire::CLASSIC_UDP_LIMIT, |edns| edns.udp_payload as usize)
                        .min(UDP_REPLY_CAPACITY);
                    runtime.spawn(async move {
                        if let Some(forwarder) = forwarder {
                            forwarder
                                .append_chased(&mut reply, &target, qtype, limit, Transport::Udp)
                                .await;
                        }
                        let _ = socket.send_to(&reply, peer);
                        record_forwarded(shared.metrics.shared_shard(), qtype, &reply, started);
                    });
                }
            }
        }
        drop(snapshot);
        let mut sent = 0;
        while sent < replies {
            let mut slots = output
                .chunks(UDP_REPLY_CAPACITY)
                .zip(reply_lengths)
                .skip(sent);
            let buffers: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                let (slot, len) = slots.next().unwrap_or((&[], 0));
                [IoSlice::new(&slot[..len])]
            });
            let no_control: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                descriptor,
                &mut send_headers,
                buffers[..replies - sent].iter(),
                &reply_peers[sent..replies],
                no_control,
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let done = results.count();
                    // An error on one datagram stops the batch there: skip it, send the rest.
                    sent += done.max(1);
                }
                Err(Errno::EINTR) => {}
                Err(error) => {
                    tracing::debug!(%error, "udp send failed");
                    sent += 1;
                }
            }
        }
    }
}

fn record_forwarded(metrics: &WorkerMetrics, qtype: u16, reply: &[u8], started: Instant) {
    if reply.len() >= wire::HEADER_LEN {
        let rcode = wire::read_u16(reply, 2) & 0xF;
        let answers = wire::read_u16(reply, 6);
        metrics.record(qtype, rcode, answers, started.elapsed());
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = serve_tcp_connection(stream, shared).await;
        });
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut query = vec![0u8; wire::MAX_MESSAGE_LEN];
    let mut output = vec![0u8; 2 + wire::MAX_MESSAGE_LEN];
    let mut rotation = 0usize;
    loop {
        let mut prefix = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let len = u16::from_be_bytes(prefix) as usize;
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut query[..len]))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let started = Instant::now();
        rotation = rotation.wrapping_add(1);
        let packet = &query[..len];
        let (disposition, qtype) = shared.snapshot.load().respond(
            packet,
            &mut output[2..],
            Transport::Tcp,
            rotation,
            shared.forwarder.is_some(),
        );
        let metrics = shared.metrics.shared_shard();
        let reply: Vec<u8>;
        let bytes: &[u8] = match disposition {
            Disposition::Reply {
                len: reply_len,
                rcode,
                answers,
            } => {
                metrics.record(qtype, rcode, answers, started.elapsed());
                output[..2].copy_from_slice(&wire::tcp_length_prefix(reply_len));
                &output[..2 + reply_len]
            }
            Disposition::Drop => {
                metrics.record_drop();
                return Ok(());
            }
            Disposition::Forward => {
                metrics.record_forward();
                let Some(forwarder) = &shared.forwarder else {
                    return Ok(());
                };
                let Some(answer) = forwarder.forward(packet, Transport::Tcp).await else {
                    return Ok(());
                };
                record_forwarded(metrics, qtype, &answer, started);
                reply = framed(&answer);
                &reply
            }
            Disposition::ChaseExternal {
                len: reply_len,
                target,
            } => {
                let mut answer = output[2..2 + reply_len].to_vec();
                if let Some(forwarder) = &shared.forwarder {
                    forwarder
                        .append_chased(
                            &mut answer,
                            &target,
                            qtype,
                            wire::MAX_MESSAGE_LEN,
                            Transport::Tcp,
                        )
                        .await;
                }
                record_forwarded(metrics, qtype, &answer, started);
                reply = framed(&answer);
                &reply
            }
        };
        stream.write_all(bytes).await?;
    }
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&wire::tcp_length_prefix(message.len()));
    framed.extend_from_slice(message);
    framed
}

/// Cache key: lower-cased wire name, type, class.
type CacheKey = (Vec<u8>, u16, u16);

struct CachedAnswer {
    stored: tokio::time::Instant,
    expires: tokio::time::Instant,
    message: Vec<u8>,
}

/// Sends queries for names outside the zone to upstream resolvers, with a small cache.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    capacity: usize,
    cache: Mutex<HashMap<CacheKey, CachedAnswer>>,
    id_source: RandomState,
    id_counter: AtomicU64,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, capacity: usize) -> Self {
        Self {
            upstreams,
            timeout,
            capacity,
            cache: Mutex::new(HashMap::new()),
            id_source: RandomState::new(),
            id_counter: AtomicU64::new(0),
        }
    }

    /// An unpredictable message id, so off-path spoofing of upstream answers is harder.
    fn next_id(&self) -> u16 {
        self.id_source
            .hash_one(self.id_counter.fetch_add(1, Ordering::Relaxed)) as u16
    }

    /// Answers `query` from the cache or the first upstream that replies; the reply carries
    /// the client's id and spelling. When no upstream answers in time, a SERVFAIL of our own
    /// (as CoreDNS's forward plugin answers); `None` only for a query that does not parse.
    pub async fn forward(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let question = wire::parse_query(query).ok()?;
        let key = (
            question.name_lower().to_vec(),
            question.qtype,
            question.qclass,
        );
        let limit = match transport {
            Transport::Udp => question
                .edns
                .map_or(wire::CLASSIC_UDP_LIMIT, |edns| edns.udp_payload as usize),
            Transport::Tcp => wire::MAX_MESSAGE_LEN,
        };
        if let Some(mut message) = self.cached(&key, limit) {
            personalise(&mut message, &question);
            return Some(message);
        }
        let mut outgoing = query.to_vec();
        let id = self.next_id();
        wire::write_u16(&mut outgoing, 0, id);
        for upstream in &self.upstreams {
            let attempt =
                tokio::time::timeout(self.timeout, exchange(*upstream, &outgoing, id, transport))
                    .await;
            let Ok(Ok(mut message)) = attempt else {
                continue;
            };
            self.store(key, &message);
            personalise(&mut message, &question);
            return Some(message);
        }
        Some(crate::snapshot::server_failure(&question, transport))
    }

    fn cached(&self, key: &CacheKey, limit: usize) -> Option<Vec<u8>> {
        let now = tokio::time::Instant::now();
        let (mut message, stored) = {
            let cache = self.cache.lock().ok()?;
            let entry = cache.get(key)?;
            if entry.expires <= now || entry.message.len() > limit {
                return None;
            }
            (entry.message.clone(), entry.stored)
        };
        let age = now.duration_since(stored).as_secs().min(u32::MAX as u64) as u32;
        count_down_ttls(&mut message, age);
        Some(message)
    }

    fn store(&self, key: CacheKey, message: &[u8]) {
        if message.len() < wire::HEADER_LEN || message[2] & 0x02 != 0 {
            return;
        }
        let rcode = message[3] & 0xF;
        if rcode != 0 && rcode != 3 {
            return;
        }
        let Some(ttl) = minimum_ttl(message) else {
            return;
        };
        let ttl = ttl.min(FORWARD_CACHE_MAX_TTL);
        if ttl == 0 {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= self.capacity {
            let now = tokio::time::Instant::now();
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        let now = tokio::time::Instant::now();
        cache.insert(
            key,
            CachedAnswer {
                stored: now,
                expires: now + Duration::from_secs(ttl as u64),
                message: message.to_vec(),
            },
        );
    }

    /// Appends the upstream's records for `target` (an ExternalName outside the zone) to a
    /// reply holding the CNAME, fixing the counts; sets TC if they do not fit in `limit`.
    pub async fn append_chased(
        &self,
        reply: &mut Vec<u8>,
        target: &[u8],
        qtype: u16,
        limit: usize,
        transport: Transport,
    ) {
        let mut query = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(target);
        query.extend_from_slice(&qtype.to_be_bytes());
        query.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
        let Some(upstream) = self.forward(&query, transport).await else {
            return;
        };
        let Some(records) = answer_records(&upstream, qtype) else {
            return;
        };
        // Our reply ends with the OPT record when it has an additional section.
        let opt_len = if wire::read_u16(reply, 10) > 0 {
            wire::OPT_RECORD_LEN
        } else {
            0
        };
        let opt = reply.split_off(reply.len() - opt_len);
        let mut added = 0u16;
        let mut truncated = false;
        for record in records {
            if reply.len() + record.len() + opt.len() > limit {
                truncated = true;
                break;
            }
            reply.extend_from_slice(&record);
            added += 1;
        }
        reply.extend_from_slice(&opt);
        let answers = wire::read_u16(reply, 6) + added;
        wire::write_u16(reply, 6, answers);
        if truncated {
            reply[2] |= 0x02;
        }
    }
}

/// Gives a cached or upstream answer the client's id and the client's spelling of the name.
fn personalise(message: &mut [u8], question: &wire::Question) {
    if message.len() < wire::HEADER_LEN {
        return;
    }
    wire::write_u16(message, 0, question.id);
    let spelled = question.name_spelled();
    let end = wire::HEADER_LEN + spelled.len();
    if wire::read_u16(message, 4) == 1
        && message.len() >= end
        && message[wire::HEADER_LEN..end].eq_ignore_ascii_case(spelled)
    {
        message[wire::HEADER_LEN..end].copy_from_slice(spelled);
    }
}

async fn exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    transport: Transport,
) -> std::io::Result<Vec<u8>> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    match transport {
        Transport::Udp => {
            let local: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(local).await?;
            socket.connect(upstream).await?;
            socket.send(query).await?;
            let mut buffer = vec![0u8; wire::MAX_MESSAGE_LEN];
            loop {
                let len = socket.recv(&mut buffer).await?;
                if len >= wire::HEADER_LEN
                    && wire::read_u16(&buffer, 0) == id
                    && buffer[2] & 0x80 != 0
                {
                    buffer.truncate(len);
                    return Ok(buffer);
                }
            }
        }
        Transport::Tcp => {
            let mut stream = TcpStream::connect(upstream).await?;
            stream.write_all(&framed(query)).await?;
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await?;
            let mut buffer = vec![0u8; u16::from_be_bytes(prefix) as usize];
            stream.read_exact(&mut buffer).await?;
            if buffer.len() < wire::HEADER_LEN || wire::read_u16(&buffer, 0) != id {
                return Err(invalid());
            }
            Ok(buffer)
        }
    }
}

/// Where one record of a message sits.
struct RecordSpan {
    /// 0 answer, 1 authority, 2 additional.
    section: usize,
    owner: usize,
    rtype: u16,
    ttl_at: usize,
    end: usize,
}

/// Walks the records of a message.
fn walk_records(message: &[u8]) -> Option<Vec<RecordSpan>> {
    let question = wire::parse_question_end(message)?;
    let counts = [
        wire::read_u16(message, 6),
        wire::read_u16(message, 8),
        wire::read_u16(message, 10),
    ];
    let mut position = question;
    let mut records = Vec::new();
    for (section, count) in counts.iter().enumerate() {
        for _ in 0..*count {
            let mut scratch = [0u8; MAX_NAME_LEN];
            let (name_end, _) = wire::read_name(message, position, &mut scratch).ok()?;
            let fixed = message.get(name_end..name_end + 10)?;
            let rtype = wire::read_u16(fixed, 0);
            let end = name_end + 10 + wire::read_u16(fixed, 8) as usize;
            if end > message.len() {
                return None;
            }
            records.push(RecordSpan {
                section,
                owner: position,
                rtype,
                ttl_at: name_end + 4,
                end,
            });
            position = end;
        }
    }
    Some(records)
}

/// Lowers every record's TTL (not the OPT pseudo-record's flags) by `age` seconds.
fn count_down_ttls(message: &mut [u8], age: u32) {
    if age == 0 {
        return;
    }
    let Some(records) = walk_records(message) else {
        return;
    };
    for record in records {
        if record.rtype == record_type::OPT {
            continue;
        }
        let at = record.ttl_at;
        let ttl = u32::from_be_bytes([
            message[at],
            message[at + 1],
            message[at + 2],
            message[at + 3],
        ]);
        message[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
    }
}

/// Smallest TTL among answer and authority records (for NXDOMAIN, the SOA's).
fn minimum_ttl(message: &[u8]) -> Option<u32> {
    walk_records(message)?
        .iter()
        .filter(|record| record.section < 2 && record.rtype != record_type::OPT)
        .map(|record| {
            let at = record.ttl_at;
            u32::from_be_bytes([
                message[at],
                message[at + 1],
                message[at + 2],
                message[at + 3],
            ])
        })
        .min()
}

/// The answer-section records of `message` of type CNAME or `qtype`, re-encoded with
/// uncompressed names so they can be appended to another message.
fn answer_records(message: &[u8], qtype: u16) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for RecordSpan {
        section,
        owner,
        rtype,
        ttl_at,
        end,
    } in walk_records(message)?
    {
        if section != 0 || (rtype != qtype && rtype != record_type::CNAME) {
            continue;
        }
        let mut name = [0u8; MAX_NAME_LEN];
        let (_, name_len) = wire::read_name(message, owner, &mut name).ok()?;
        let mut record = name[..name_len].to_vec();
        record.extend_from_slice(&rtype.to_be_bytes());
        record.extend_from_slice(&wire::CLASS_IN.to_be_bytes());
        record.extend_from_slice(&message[ttl_at..ttl_at + 4]);
        let rdata_start = ttl_at + 6;
        if rtype == record_type::CNAME {
            let mut target = [0u8; MAX_NAME_LEN];
            let (_, target_len) = wire::read_name(message, rdata_start, &mut target).ok()?;
            record.extend_from_slice(&(target_len as u16).to_be_bytes());
            record.extend_from_slice(&target[..target_len]);
        } else {
            record.extend_from_slice(&message[ttl_at + 4..end]);
        }
        out.push(record);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_with_ttl(ttl: u32) -> Vec<u8> {
        let mut message = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        message.extend_from_slice(b"\x07example\x03com\x00");
        message.extend_from_slice(&[0, 1, 0, 1]);
        message.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
        message.extend_from_slice(&ttl.to_be_bytes());
        message.extend_from_slice(&[0, 4, 192, 0, 2, 1]);
        message
    }

    fn ttl_of_first_answer(message: &[u8]) -> u32 {
        let record = &walk_records(message).unwrap()[0];
        u32::from_be_bytes(
            message[record.ttl_at..record.ttl_at + 4]
                .try_into()
                .unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn cached_answers_count_their_ttl_down() {
        let forwarder = Forwarder::new(Vec::new(), Duration::from_secs(1), 16);
        let key: CacheKey = (b"\x07example\x03com\x00".to_vec(), 1, 1);
        forwarder.store(key.clone(), &answer_with_ttl(30));
        let fresh = forwarder.cached(&key, 512).unwrap();
        assert_eq!(ttl_of_first_answer(&fresh), 30);
        tokio::time::advance(Duration::from_millis(10_500)).await;
        let aged = forwarder.cached(&key, 512).unwrap();
        assert_eq!(ttl_of_first_answer(&aged), 20);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(
            forwarder.cached(&key, 512).is_none(),
            "expired with its TTL"
        );
    }
}

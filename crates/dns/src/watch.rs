//! The API side: list/watch Services, EndpointSlices, Namespaces (and Pods in verified mode)
//! and keep the served snapshot current through a [`LiveZone`].
//!
//! Data flow: one watcher task per kind converts each object, as it arrives, into the compact
//! form of [`crate::compact`] (the Kubernetes structure is dropped right after) and sends it
//! down one channel. Lists too are streamed, object by object between a start and an end
//! marker, rather than gathered first: a gathered list was a second copy of every object at
//! the moment of the sync peak. One dedicated thread owns the [`LiveZone`]: it waits for the first
//! complete list of every kind (until then the server answers SERVFAIL in the zone), builds
//! the zone in full, publishes, and from then on takes whatever events are queued — all of
//! them, without waiting for more — applies them to the zone and publishes once. A burst that
//! arrives while an update runs is therefore one update, and a lone change is published as
//! soon as it is read: there is no debounce delay. The async side hands each snapshot to the
//! server.
//!
//! Why one thread: glibc's allocator gives each thread its own arena, and memory freed by
//! one thread goes back to the arena that allocated it. When full rebuilds ran on a blocking
//! pool thread and updates on a runtime worker, each arena kept the other's holes; with every
//! zone allocation on one thread there is one arena to reuse. After each full rebuild the
//! freed heap (the list's transient objects, the previous index) is handed back to the
//! operating system (`malloc_trim`), and lists are read in pages of [`LIST_PAGE_SIZE`] so
//! that the transient peak of a relist stays small. On glibc, [`share_one_heap_arena`]
//! (called by a process before it starts its threads) goes further: one arena for every
//! thread, so no heap keeps holes only its own thread could reuse.
//!
//! When the API server goes away the watchers retry with backoff while the zone, and so the
//! served snapshot, keeps the last good data. A relist after reconnecting replaces that kind's
//! objects and rebuilds the zone in full (about a second on a cluster of 10,000 services,
//! during which the previous snapshot keeps serving).

use std::collections::HashSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::live::{Kind, LiveZone, MemoryReport, Object, PublishStats};
use crate::records::PodMode;
use crate::server::DnsServer;
use crate::snapshot::Snapshot;
use crate::{DnsConfig, Error};

/// Objects per list request. kube's default of 500 EndpointSlices is a few megabytes of JSON
/// and parsed objects at once; smaller pages cost a few more round trips at sync time.
pub const LIST_PAGE_SIZE: u32 = 100;

/// What the watcher tasks report to the update loop.
enum Update {
    Applied(Object),
    Deleted(Object),
    /// A list of one kind begins (the first sync, or a relist after reconnecting): its
    /// objects follow as `Applied`, then `Listed`.
    Listing(Kind),
    /// The list of one kind is complete.
    Listed(Kind),
}

fn spawn_watcher<K>(
    api: Api<K>,
    kind: Kind,
    convert: fn(&K) -> Object,
    updates: mpsc::UnboundedSender<Update>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let stream =
        watcher(api, watcher::Config::default().page_size(LIST_PAGE_SIZE)).default_backoff();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let update = match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    Update::Applied(convert(&object))
                }
                Ok(watcher::Event::Delete(object)) => Update::Deleted(convert(&object)),
                Ok(watcher::Event::Init) => Update::Listing(kind),
                Ok(watcher::Event::InitDone) => Update::Listed(kind),
                Err(error) => {
                    tracing::warn!(?kind, %error, "watch failed; retrying");
                    continue;
                }
            };
            if updates.send(update).is_err() {
                return;
            }
        }
    })
}

/// Runs the DNS server against the API server `client` talks to, until `shutdown` resolves:
/// binds [`DnsConfig::listen`] (SERVFAIL in the zone until the first full sync), then
/// [`watch`]es the cluster into it.
pub async fn run(
    config: DnsConfig,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let server = DnsServer::start(
        config.server_settings()?,
        Snapshot::unsynced(&config.snapshot_settings()),
    )
    .await?;
    let result = watch(&server, client, &config, shutdown).await;
    server.shutdown().await;
    result
}

/// Keeps `server` answering from the cluster `client` talks to until `shutdown` resolves.
/// The server keeps its current snapshot until every watch has listed once.
pub async fn watch(
    server: &DnsServer,
    client: kube::Client,
    config: &DnsConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let (sender, updates) = mpsc::unbounded_channel();
    let mut tasks = vec![
        spawn_watcher(
            Api::<Service>::all(client.clone()),
            Kind::Service,
            Object::service,
            sender.clone(),
        ),
        spawn_watcher(
            Api::<EndpointSlice>::all(client.clone()),
            Kind::EndpointSlice,
            Object::endpoint_slice,
            sender.clone(),
        ),
        spawn_watcher(
            Api::<Namespace>::all(client.clone()),
            Kind::Namespace,
            Object::namespace,
            sender.clone(),
        ),
    ];
    let mut unlisted = HashSet::from([Kind::Service, Kind::EndpointSlice, Kind::Namespace]);
    if config.pod_mode == PodMode::Verified {
        tasks.push(spawn_watcher(
            Api::<Pod>::all(client),
            Kind::Pod,
            Object::pod,
            sender.clone(),
        ));
        unlisted.insert(Kind::Pod);
    }
    drop(sender);

    let (published_sender, mut published) = mpsc::unbounded_channel();
    let zone = LiveZone::new(config.snapshot_settings());
    let zone_thread = std::thread::Builder::new()
        .name("hollow-dns-zone".to_owned())
        .spawn(move || keep_zone(zone, updates, unlisted, published_sender))
        .map_err(Error::io("starting the DNS zone thread"))?;

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = tokio::select! {
            next = published.recv() => next,
            _ = &mut shutdown => break,
        };
        let Some((snapshot, stats)) = next else { break };
        if stats.full {
            server.record_rebuild(stats.duration);
        } else {
            server.record_update(stats.duration);
        }
        server.publish(snapshot);
    }
    for task in tasks {
        task.abort();
    }
    // With the watchers gone the update channel closes and the zone thread ends (after any
    // rebuild in progress).
    drop(published);
    let _ = tokio::task::spawn_blocking(move || zone_thread.join()).await;
    Ok(())
}

/// The zone thread: applies every queued update, publishes once per batch, sends each
/// snapshot to the async side. Ends when the watchers or the async side go away.
fn keep_zone(
    mut zone: LiveZone,
    mut updates: mpsc::UnboundedReceiver<Update>,
    mut unlisted: HashSet<Kind>,
    published: mpsc::UnboundedSender<(Snapshot, PublishStats)>,
) {
    let mut last_report = Instant::now();
    let mut last_trim = Instant::now();
    // Kinds whose list is under way: until it completes the zone holds part of them, so
    // nothing is published (the server keeps the previous snapshot).
    let mut listing = HashSet::new();
    while let Some(first) = updates.blocking_recv() {
        let mut next = Some(first);
        while let Some(update) = next {
            match update {
                Update::Applied(object) => zone.apply(object),
                Update::Deleted(object) => zone.delete(&object),
                Update::Listing(kind) => {
                    zone.start_relist(kind);
                    listing.insert(kind);
                }
                Update::Listed(kind) => {
                    listing.remove(&kind);
                    unlisted.remove(&kind);
                }
            }
            next = updates.try_recv().ok();
        }
        if !unlisted.is_empty() || !listing.is_empty() || !zone.has_changes() {
            continue;
        }
        let Some(snapshot) = publish_catching_panics(&mut zone) else {
            // The server keeps answering from the previous snapshot; the next event retries
            // with a full rebuild, since a half-done publish leaves the bookkeeping unreliable.
            zone.request_full_rebuild();
            continue;
        };
        let stats = zone.last_publish();
        tracing::debug!(
            full = stats.full,
            names = snapshot.stats().names,
            encoded = stats.names_encoded,
            shards = stats.shards_repacked,
            took = ?stats.duration,
            "snapshot published"
        );
        if stats.full {
            // Before publishing, so that whoever sees the synced zone sees its memory settled.
            release_free_heap();
            last_trim = Instant::now();
        }
        if published.send((snapshot, stats)).is_err() {
            return;
        }
        // Incremental updates free whole shards at a time; hand the pages back now and then,
        // when no event is waiting (a trim takes a few milliseconds).
        if !stats.full && updates.is_empty() && last_trim.elapsed() >= TRIM_INTERVAL {
            release_free_heap();
            last_trim = Instant::now();
        }
        if stats.full || last_report.elapsed() >= MEMORY_REPORT_INTERVAL {
            let report = zone.memory_report();
            tracing::debug!(memory = %report, "DNS zone memory");
            *LAST_MEMORY_REPORT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
            last_report = Instant::now();
        }
    }
}

/// The least time between two heap trims after incremental updates.
const TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// How often the zone thread refreshes [`zone_memory_report`] between full rebuilds (it walks
/// every object, a few milliseconds on a large cluster).
const MEMORY_REPORT_INTERVAL: Duration = Duration::from_secs(5);

static LAST_MEMORY_REPORT: Mutex<Option<MemoryReport>> = Mutex::new(None);

/// Where the heap of this process's watch-fed zone goes, as of its last full rebuild or at
/// most a few seconds old (`None` before the first sync). For benchmarks and diagnostics.
pub fn zone_memory_report() -> Option<MemoryReport> {
    *LAST_MEMORY_REPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hands the allocator's free pages back to the operating system. A full rebuild frees the
/// list's transient objects and the previous index at once; glibc keeps such memory mapped
/// (and counted as resident) until told otherwise.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim only walks the allocator's own free lists and returns
    // unused pages with madvise; it has no preconditions and touches no memory we own.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

/// Makes glibc's allocator serve every thread from one arena; call it first thing in a
/// process that runs the DNS server on glibc malloc (the `hollow` binary uses jemalloc).
///
/// Why: glibc gives each thread that allocates its own arena (up to eight per core), and
/// memory freed in an arena is reused only by threads of that arena. The watchers' runtime
/// thread, the zone thread and the blocking pool each kept their own partly used heaps,
/// which `malloc_trim` can shrink only at their tops. The threads that allocate take turns
/// rather than race (the UDP workers answer without allocating), so one arena costs no
/// measurable contention.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn share_one_heap_arena() {
    const M_ARENA_MAX: i32 = -8;
    unsafe extern "C" {
        fn mallopt(parameter: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; M_ARENA_MAX limits
    // the arenas created from now on and is safe to set while other threads allocate.
    unsafe {
        mallopt(M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn share_one_heap_arena() {}

/// Publishes `zone`, turning a panic (a bug in deriving or encoding some object) into a
/// logged error so that one bad object cannot take the DNS server down.
fn publish_catching_panics(zone: &mut LiveZone) -> Option<Snapshot> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| zone.publish())) {
        Ok(snapshot) => Some(snapshot),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_owned());
            tracing::error!(%message, "building the DNS snapshot panicked; still serving the previous one");
            None
        }
    }
}

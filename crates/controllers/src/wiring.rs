//! Runs the reconcilers on kube-rs's controller runtime against an API server.
//!
//! One watcher per kind feeds one reflector store ([`Stores`]) and fans its changes out
//! to every controller that cares (the `Informer`s below). Each controller is a
//! `kube::runtime::Controller` driven by those shared streams (`for_shared_stream`,
//! `owns_shared_stream`, `watches_shared_stream`), which de-duplicates work per object
//! and retries failures with back-off from `error_policy`. Reconcile functions read the
//! stores, call the pure reconcilers and hand the plan to the [`Executor`].
//!
//! The stores' watchers also keep the [`crate::index`]es current (see [`Indexes`]):
//! each change is indexed right after the store took it and before any controller hears
//! of it, and pods and slices are read (expectations included) through the indexes.
//!
//! Caches lag writes. After a plan is applied, its writes become *expectations* of the
//! controller key: until the stores have seen them (or a deadline passes), the key is
//! not reconciled again, so a ReplicaSet never creates the same pod twice because its
//! pod cache was a few milliseconds behind. (Kubernetes' controllers keep the same kind
//! of bookkeeping.) The EndpointSlice controller instead lays its own writes over the
//! slice cache ([`SliceWrites`]), so a Service whose pods keep changing is reconciled
//! again as soon as its previous writes return.
//!
//! The garbage collector is not a per-object controller: it walks the whole ownership
//! graph, debounced, whenever an object appears or goes or its owners, finalizers or
//! deletion change (not on status changes), and confirms suspected missing owners with a
//! live GET before deleting anything.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::executor::{Executor, WriteError, Written};
use crate::garbage_collector::{self, GraphObject};
use crate::index::{PodIndex, ServiceIndex, SliceIndex};
use crate::plan::{Kind, Plan};
use crate::{deployment, endpoints, endpointslice, meta, replicaset, scheduler, statefulset};

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// EndpointSlice settings (managed-by value, slice capacity).
    pub endpoint_slices: endpointslice::Settings,
    /// The event source name.
    pub component: String,
    /// Reconciles in flight per controller.
    pub concurrency: u16,
    /// Every object is reconciled again after this long, as a safety net.
    pub resync: Duration,
    /// How long the garbage collector waits for a burst of changes to settle.
    pub collector_debounce: Duration,
    /// How long the legacy Endpoints controller lets a Service's changes gather before
    /// it rewrites the Service's Endpoints object (Kubernetes'
    /// `--endpoint-updates-batch-period`). A big Service's Endpoints object lists every
    /// address, so rewriting it on every pod change would load the API server and hold
    /// up the EndpointSlice writes that hollow's DNS, proxy and clients follow.
    pub endpoints_batch_period: Duration,
    /// Reconciles in flight for the legacy Endpoints controller. Lower than
    /// [`Options::concurrency`] so that under a storm of pod changes the API server's
    /// capacity goes to the EndpointSlices first; a Service whose Endpoints object waits
    /// gathers its changes into one write meanwhile.
    pub endpoints_concurrency: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            endpoint_slices: endpointslice::Settings::default(),
            component: "hollow-controllers".to_string(),
            concurrency: 16,
            resync: Duration::from_secs(300),
            collector_debounce: Duration::from_millis(200),
            endpoints_batch_period: Duration::from_millis(100),
            endpoints_concurrency: 4,
        }
    }
}

/// Why the controllers stopped or a reconcile failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write of a plan failed; the object is retried with back-off.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A store's watcher went away before its first list completed.
    #[error("the {0} cache stopped before its first list completed")]
    CacheNeverSynced(&'static str),
    /// A live lookup (garbage collector owner check) failed.
    #[error("looking up {kind:?} {namespace}/{name}: {source}")]
    Lookup {
        /// The kind looked up.
        kind: Kind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Back-off after failures: 100 ms doubling up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << failures.min(10)))
        .min(Duration::from_secs(60))
}

/// How long to wait for the caches to show our own writes before reconciling anyway.
const EXPECTATION_DEADLINE: Duration = Duration::from_secs(30);
/// How soon to look again when the caches have not caught up yet.
const EXPECTATION_RECHECK: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------
// Informers: one watch per kind, a store, and a fan-out of changed objects.

/// The subscribers of one kind's changes.
struct Hub<K> {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Arc<K>>>>,
}

impl<K> Hub<K> {
    fn new() -> Arc<Self> {
        Arc::new(Hub {
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// A stream of every object of the kind that changes (or disappears) from now on.
    fn subscribe(&self) -> mpsc::UnboundedReceiver<Arc<K>> {
        let (sender, receiver) = mpsc::unbounded();
        self.subscribers.lock().expect("hub lock").push(sender);
        receiver
    }

    fn send(&self, object: &Arc<K>) {
        self.subscribers
            .lock()
            .expect("hub lock")
            .retain(|subscriber| subscriber.unbounded_send(object.clone()).is_ok());
    }
}

/// A change of the store, as an index beside it sees it.
enum Change<'a, K> {
    /// The object as the store now holds it.
    Upsert(Arc<K>),
    /// The object left the store.
    Remove(&'a K),
    /// The store was replaced by a relist; this is everything it holds now.
    Relisted(Vec<Arc<K>>),
}

/// Keeps an index in step with a store; called right after the store changed and before
/// any subscriber hears of the change, so a reconcile triggered by an event always finds
/// the event's object in the index.
type IndexHook<K> = Box<dyn FnMut(Change<'_, K>) + Send>;

/// Watches one kind into `writer`, publishing every change to `hub`. After a (re)list
/// it publishes every object, plus those that vanished while the watch was down, so
/// no deletion goes unnoticed.
async fn drive<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    hub: Arc<Hub<K>>,
    mut index: IndexHook<K>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let reader = writer.as_reader();
    let mut before_relist: Vec<Arc<K>> = Vec::new();
    let events = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).default_backoff(),
    );
    let mut events = pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(object)) => {
                // The store is level with (or ahead of) this event; index what it holds.
                let object = reader
                    .get(&ObjectRef::from_obj(&object))
                    .unwrap_or_else(|| Arc::new(object));
                index(Change::Upsert(object.clone()));
                hub.send(&object)
            }
            Ok(watcher::Event::Delete(object)) => {
                index(Change::Remove(&object));
                hub.send(&Arc::new(object))
            }
            Ok(watcher::Event::Init) => before_relist = reader.state(),
            Ok(watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::InitDone) => {
                let now: Vec<Arc<K>> = reader.state();
                index(Change::Relisted(now.clone()));
                let present: HashSet<ObjectRef<K>> = now
                    .iter()
                    .map(|object| ObjectRef::from_obj(object.as_ref()))
                    .collect();
                for object in &now {
                    hub.send(object);
                }
                for object in before_relist.drain(..) {
                    if !present.contains(&ObjectRef::from_obj(object.as_ref())) {
                        hub.send(&object);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(kind = K::kind(&()).as_ref(), %error, "watch failed; retrying")
            }
        }
    }
}

struct Informer<K: Resource<DynamicType = ()> + 'static>
where
    K: Clone,
{
    store: Store<K>,
    hub: Arc<Hub<K>>,
    writer: Option<reflector::store::Writer<K>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn new() -> Self {
        let (store, writer) = reflector::store();
        Informer {
            store,
            hub: Hub::new(),
            writer: Some(writer),
        }
    }

    fn start(
        &mut self,
        api: Api<K>,
        index: IndexHook<K>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) {
        if let Some(writer) = self.writer.take() {
            tasks.push(tokio::spawn(drive(api, writer, self.hub.clone(), index)));
        }
    }
}

/// The caches every controller reads.
#[derive(Clone)]
pub struct Stores {
    /// Pods.
    pub pods: Store<Pod>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// Endpoints.
    pub endpoints: Store<Endpoints>,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// StatefulSets.
    pub stateful_sets: Store<StatefulSet>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// Indexes over pods, Services and slices, kept in step with their stores.
    pub indexes: Arc<Indexes>,
}

/// The indexes beside the stores (see [`crate::index`]). Pods and slices are read
/// through them, including for expectations, so a reconcile never sees an index that
/// lags the store it checked.
#[derive(Default)]
pub struct Indexes {
    /// Pods by label pair, owner and name.
    pub pods: RwLock<PodIndex>,
    /// Services by selector pair.
    pub services: RwLock<ServiceIndex>,
    /// EndpointSlices by Service.
    pub slices: RwLock<SliceIndex>,
    /// Each Service's memo of its pods' endpoints, dropped with the Service.
    pub endpoint_caches: Mutex<HashMap<(String, String), endpointslice::EndpointCache>>,
}

impl Indexes {
    fn pods(&self) -> std::sync::RwLockReadGuard<'_, PodIndex> {
        self.pods.read().expect("pod index lock")
    }

    fn slices(&self) -> std::sync::RwLockReadGuard<'_, SliceIndex> {
        self.slices.read().expect("slice index lock")
    }

    fn services(&self) -> std::sync::RwLockReadGuard<'_, ServiceIndex> {
        self.services.read().expect("service index lock")
    }

    /// Rebuilds every index from the stores. Each store is read while its index is
    /// locked, so a change the watch applies meanwhile is indexed after the rebuild,
    /// never overwritten by it.
    fn rebuild(&self, stores: &Stores) {
        let mut pods = self.pods.write().expect("pod index lock");
        *pods = PodIndex::new(stores.pods.state());
        drop(pods);
        let mut services = self.services.write().expect("service index lock");
        *services = ServiceIndex::new(stores.services.state());
        drop(services);
        let mut slices = self.slices.write().expect("slice index lock");
        *slices = SliceIndex::new(stores.slices.state());
    }

    fn pod_hook(self: &Arc<Self>) -> IndexHook<Pod> {
        let indexes = self.clone();
        Box::new(move |change| {
            let mut pods = indexes.pods.write().expect("pod index lock");
            match change {
                Change::Upsert(pod) => pods.upsert(pod),
                Change::Remove(pod) => {
                    pods.remove(meta::namespace(&pod.metadata), meta::name(&pod.metadata))
                }
                Change::Relisted(all) => *pods = PodIndex::new(all),
            }
        })
    }

    fn service_hook(self: &Arc<Self>) -> IndexHook<Service> {
        let indexes = self.clone();
        Box::new(move |change| {
            let mut services = indexes.services.write().expect("service index lock");
            match change {
                Change::Upsert(service) => services.upsert(&service),
                Change::Remove(service) => {
                    let namespace = meta::namespace(&service.metadata);
                    let name = meta::name(&service.metadata);
                    services.remove(namespace, name);
                    indexes
                        .endpoint_caches
                        .lock()
                        .expect("endpoint caches lock")
                        .remove(&(namespace.to_string(), name.to_string()));
                }
                Change::Relisted(all) => {
                    let present: HashSet<(String, String)> = all
                        .iter()
                        .map(|service| {
                            (
                                meta::namespace(&service.metadata).to_string(),
                                meta::name(&service.metadata).to_string(),
                            )
                        })
                        .collect();
                    indexes
                        .endpoint_caches
                        .lock()
                        .expect("endpoint caches lock")
                        .retain(|key, _| present.contains(key));
                    *services = ServiceIndex::new(all)
                }
            }
        })
    }

    fn slice_hook(self: &Arc<Self>) -> IndexHook<EndpointSlice> {
        let indexes = self.clone();
        Box::new(move |change| {
            let mut slices = indexes.slices.write().expect("slice index lock");
            match change {
                Change::Upsert(slice) => slices.upsert(slice),
                Change::Remove(slice) => slices.remove(
                    meta::namespace(&slice.metadata),
                    meta::name(&slice.metadata),
                ),
                Change::Relisted(all) => *slices = SliceIndex::new(all),
            }
        })
    }
}

fn no_index<K>() -> IndexHook<K> {
    Box::new(|_| {})
}

fn lookup<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

fn in_namespace<K: Resource<DynamicType = ()> + Clone + 'static>(
    store: &Store<K>,
    namespace: &str,
) -> Vec<Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|object| object.meta().namespace.as_deref() == Some(namespace))
        .collect()
}

impl Stores {
    fn metadata_of(&self, kind: Kind, namespace: &str, name: &str) -> Option<ObjectMeta> {
        fn get<K: Resource<DynamicType = ()> + Clone + 'static>(
            store: &Store<K>,
            namespace: &str,
            name: &str,
        ) -> Option<ObjectMeta> {
            lookup(store, namespace, name).map(|object| object.meta().clone())
        }
        match kind {
            Kind::Pod => self
                .indexes
                .pods()
                .get(namespace, name)
                .map(|pod| pod.metadata.clone()),
            Kind::Service => get(&self.services, namespace, name),
            Kind::Endpoints => get(&self.endpoints, namespace, name),
            // Slices without a Service label are not indexed; the store has them.
            Kind::EndpointSlice => self
                .indexes
                .slices()
                .get(namespace, name)
                .map(|slice| slice.metadata.clone())
                .or_else(|| get(&self.slices, namespace, name)),
            Kind::ReplicaSet => get(&self.replica_sets, namespace, name),
            Kind::Deployment => get(&self.deployments, namespace, name),
            Kind::StatefulSet => get(&self.stateful_sets, namespace, name),
        }
    }

    /// Whether the caches already reflect a write.
    fn reflects(&self, written: &Written) -> bool {
        match written {
            Written::Present {
                kind,
                namespace,
                name,
                resource_version,
            } => {
                let Some(wanted) = resource_version else {
                    return true;
                };
                self.metadata_of(*kind, namespace, name)
                    .and_then(|metadata| metadata.resource_version)
                    .is_some_and(|seen| match (seen.parse::<u64>(), wanted.parse::<u64>()) {
                        (Ok(seen), Ok(wanted)) => seen >= wanted,
                        _ => seen == *wanted,
                    })
            }
            Written::Absent {
                kind,
                namespace,
                name,
                uid,
            } => match self.metadata_of(*kind, namespace, name) {
                None => true,
                Some(metadata) => metadata.uid != *uid || metadata.deletion_timestamp.is_some(),
            },
        }
    }

    /// Metadata of every cached object, as the garbage collector's graph.
    fn graph(&self) -> Vec<GraphObject> {
        fn add<K: Resource<DynamicType = ()> + Clone + 'static>(
            graph: &mut Vec<GraphObject>,
            kind: Kind,
            store: &Store<K>,
        ) {
            graph.extend(store.state().iter().map(|object| GraphObject {
                kind,
                metadata: object.meta().clone(),
            }));
        }
        let mut graph = Vec::new();
        add(&mut graph, Kind::Pod, &self.pods);
        add(&mut graph, Kind::Service, &self.services);
        add(&mut graph, Kind::Endpoints, &self.endpoints);
        add(&mut graph, Kind::EndpointSlice, &self.slices);
        add(&mut graph, Kind::ReplicaSet, &self.replica_sets);
        add(&mut graph, Kind::Deployment, &self.deployments);
        add(&mut graph, Kind::StatefulSet, &self.stateful_sets);
        graph
    }
}

// ---------------------------------------------------------------------------------------
// The EndpointSlice controller's own writes.

/// One of our slice writes that the slice cache may not show yet.
enum SliceWrite {
    /// Created or replaced: the object as the server returned it.
    Present(Arc<EndpointSlice>),
    /// Deleted: the uid that was deleted.
    Deleted(Option<String>),
}

/// The EndpointSlice controller's writes per Service, laid over the slice cache until it
/// catches up (what Kubernetes' EndpointSlice controller calls its tracker). Planning on
/// them lets the next reconcile of a busy Service run as soon as the previous one's
/// writes return, instead of waiting for the watch to deliver them; a stale cache would
/// otherwise mean conflicting replaces or duplicate slices.
#[derive(Default)]
struct SliceWrites {
    /// (namespace, Service name) → slice name → (write, when it expires).
    by_service: HashMap<(String, String), HashMap<String, (SliceWrite, Instant)>>,
}

/// Whether resourceVersion `seen` is at least `written` (numerically when both are
/// numbers, as hollow's and etcd's are; otherwise only equality counts).
fn at_least(seen: Option<&str>, written: Option<&str>) -> bool {
    match (seen, written) {
        (Some(seen), Some(written)) => match (seen.parse::<u64>(), written.parse::<u64>()) {
            (Ok(seen), Ok(written)) => seen >= written,
            _ => seen == written,
        },
        _ => false,
    }
}

impl SliceWrites {
    /// Remembers what a reconcile of `service` wrote.
    fn record(
        &mut self,
        service: (String, String),
        written: Vec<EndpointSlice>,
        deleted: Vec<(String, Option<String>)>,
    ) {
        if written.is_empty() && deleted.is_empty() {
            return;
        }
        let expires = Instant::now() + EXPECTATION_DEADLINE;
        let ours = self.by_service.entry(service).or_default();
        for slice in written {
            let name = meta::name(&slice.metadata).to_string();
            ours.insert(name, (SliceWrite::Present(Arc::new(slice)), expires));
        }
        for (name, uid) in deleted {
            ours.insert(name, (SliceWrite::Deleted(uid), expires));
        }
    }

    /// Forgets our write of one slice, after a write of it failed (a conflict or a
    /// slice gone): the cache decides again.
    fn forget(&mut self, service: &(String, String), slice: &str) {
        if let Some(ours) = self.by_service.get_mut(service) {
            ours.remove(slice);
        }
    }

    /// Whether a slice event only echoes one of our writes (the slice as we wrote it, or
    /// the deletion of the slice we deleted), which the overlay already accounts for.
    fn is_echo(&self, service: &(String, String), slice: &EndpointSlice) -> bool {
        let Some((write, _)) = self
            .by_service
            .get(service)
            .and_then(|ours| ours.get(meta::name(&slice.metadata)))
        else {
            return false;
        };
        match write {
            SliceWrite::Present(written) => {
                written.metadata.uid == slice.metadata.uid
                    && written.metadata.resource_version.is_some()
                    && written.metadata.resource_version == slice.metadata.resource_version
            }
            SliceWrite::Deleted(uid) => *uid == slice.metadata.uid && uid.is_some(),
        }
    }

    /// `cached`, the cached slices of `service`, with our newer writes laid over them.
    /// Writes the cache has caught up with (or that expired) are dropped.
    fn overlay(
        &mut self,
        service: &(String, String),
        mut cached: Vec<Arc<EndpointSlice>>,
    ) -> Vec<Arc<EndpointSlice>> {
        let Some(ours) = self.by_service.get_mut(service) else {
            return cached;
        };
        let now = Instant::now();
        ours.retain(|name, (write, expires)| {
            if now >= *expires {
                return false;
            }
            let position = cached
                .iter()
                .position(|slice| meta::name(&slice.metadata) == name);
            match (write, position) {
                (SliceWrite::Present(slice), None) => {
                    cached.push(slice.clone());
                    true
                }
                (SliceWrite::Present(slice), Some(position)) => {
                    let seen = &cached[position].metadata;
                    let caught_up = seen.uid == slice.metadata.uid
                        && at_least(
                            seen.resource_version.as_deref(),
                            slice.metadata.resource_version.as_deref(),
                        );
                    if !caught_up {
                        cached[position] = slice.clone();
                    }
                    !caught_up
                }
                (SliceWrite::Deleted(uid), Some(position)) => {
                    let still_there = cached[position].metadata.uid == *uid;
                    if still_there {
                        cached.remove(position);
                    }
                    still_there
                }
                (SliceWrite::Deleted(_), None) => false,
            }
        });
        if ours.is_empty() {
            self.by_service.remove(service);
        }
        cached
    }
}

// ---------------------------------------------------------------------------------------
// Shared controller context.

struct Context {
    stores: Stores,
    executor: Executor,
    options: Options,
    /// Writes each controller key waits to see in the caches, with a deadline.
    expectations: Mutex<HashMap<String, (Instant, Vec<Written>)>>,
    /// Consecutive failures per controller key, for back-off.
    failures: Mutex<HashMap<String, u32>>,
    /// Bindings made but not yet seen in the pod cache: pod key → node.
    assumed_bindings: Mutex<HashMap<String, String>>,
    /// The EndpointSlice controller's writes the slice cache may not show yet.
    slice_writes: Mutex<SliceWrites>,
    /// When each Service's gathered changes are due for its Endpoints object.
    endpoints_due: Mutex<HashMap<String, Instant>>,
}

fn key_of<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta::namespace(object.meta()),
        meta::name(object.meta())
    )
}

impl Context {
    fn caches_caught_up(&self, key: &str) -> bool {
        let mut expectations = self.expectations.lock().expect("expectations lock");
        let Some((deadline, pending)) = expectations.get_mut(key) else {
            return true;
        };
        pending.retain(|written| !self.stores.reflects(written));
        if pending.is_empty() || Instant::now() >= *deadline {
            expectations.remove(key);
            return true;
        }
        false
    }

    /// Applies `plan` for `key`, remembering its writes as expectations.
    async fn apply(&self, key: String, plan: Plan) -> Result<Action, Error> {
        if plan.is_empty() {
            self.failures.lock().expect("failures lock").remove(&key);
            return Ok(Action::requeue(self.options.resync));
        }
        let applied = self.executor.apply(plan).await;
        if !applied.written.is_empty() {
            self.expectations.lock().expect("expectations lock").insert(
                key.clone(),
                (Instant::now() + EXPECTATION_DEADLINE, applied.written),
            );
        }
        match applied.error {
            Some(error) => Err(error.into()),
            None => {
                self.failures.lock().expect("failures lock").remove(&key);
                Ok(Action::requeue(self.options.resync))
            }
        }
    }
}

fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    context: Arc<Context>,
) -> Action {
    failed(key_of(object.as_ref()), error, &context)
}

fn failed(key: String, error: &Error, context: &Context) -> Action {
    let failures = {
        let mut failures = context.failures.lock().expect("failures lock");
        let count = failures.entry(key.clone()).or_default();
        *count = count.saturating_add(1);
        *count
    };
    tracing::debug!(%key, %error, failures, "reconcile failed; backing off");
    Action::requeue(backoff(failures))
}

fn now() -> Time {
    Time(Timestamp::now())
}

// ---------------------------------------------------------------------------------------
// Reconcilers: read the stores, plan, apply.

/// Plans a Service's slices on the caches plus the controller's own recent writes (see
/// [`SliceWrites`]), so it needs no expectations: it can run again at once.
async fn reconcile_service(service: Arc<Service>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(service.as_ref());
    let started = std::time::Instant::now();
    let namespace = meta::namespace(&service.metadata);
    let name = meta::name(&service.metadata);
    let service_key = (namespace.to_string(), name.to_string());
    let pods = context.stores.indexes.pods().candidates(&service);
    let cached = context.stores.indexes.slices().of_service(namespace, name);
    let slices = context
        .slice_writes
        .lock()
        .expect("slice writes lock")
        .overlay(&service_key, cached);
    let selected = started.elapsed();
    // Only one reconcile of a Service runs at a time, so its memo is taken out meanwhile.
    let mut cache = context
        .stores
        .indexes
        .endpoint_caches
        .lock()
        .expect("endpoint caches lock")
        .remove(&service_key)
        .unwrap_or_default();
    let plan = endpointslice::reconcile_cached(
        &context.options.endpoint_slices,
        &service,
        &pods,
        &slices,
        &mut cache,
    );
    // A Service deleted meanwhile has had its memo dropped; do not bring it back.
    if endpointslice::managed_selector(&service).is_some()
        && lookup(&context.stores.services, namespace, name).is_some()
    {
        context
            .stores
            .indexes
            .endpoint_caches
            .lock()
            .expect("endpoint caches lock")
            .insert(service_key.clone(), cache);
    }
    let planned = started.elapsed();
    let writes = plan.write_count();
    let result = if plan.is_empty() {
        context.failures.lock().expect("failures lock").remove(&key);
        Ok(Action::requeue(context.options.resync))
    } else {
        let applied = context.executor.apply(plan).await;
        let deleted = applied
            .written
            .iter()
            .filter_map(|written| match written {
                Written::Absent {
                    kind: Kind::EndpointSlice,
                    name,
                    uid,
                    ..
                } => Some((name.clone(), uid.clone())),
                _ => None,
            })
            .collect();
        let mut slice_writes = context.slice_writes.lock().expect("slice writes lock");
        slice_writes.record(service_key.clone(), applied.slices, deleted);
        match applied.error {
            Some(error) => {
                slice_writes.forget(&service_key, &error.name);
                Err(error.into())
            }
            None => {
                context.failures.lock().expect("failures lock").remove(&key);
                Ok(Action::requeue(context.options.resync))
            }
        }
    };
    let applied = started.elapsed();
    tracing::debug!(
        target: "hollow_controllers::timing",
        pods = pods.len(),
        writes,
        select_us = selected.as_micros() as u64,
        plan_us = (planned - selected).as_micros() as u64,
        apply_us = (applied - planned).as_micros() as u64,
        "endpointslice reconcile"
    );
    result
}

/// The legacy Endpoints object runs as its own controller (as in Kubernetes), so that
/// rewriting one object listing every address of a big Service never holds up the
/// EndpointSlice writes.
async fn reconcile_service_endpoints(
    service: Arc<Service>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let key = endpoints_key(service.as_ref());
    // The first change starts the batch period; later ones join it.
    let now = Instant::now();
    let due = *context
        .endpoints_due
        .lock()
        .expect("endpoints due lock")
        .entry(key.clone())
        .or_insert(now + context.options.endpoints_batch_period);
    if now < due {
        return Ok(Action::requeue(due - now));
    }
    if !context.caches_caught_up(&key) {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    context
        .endpoints_due
        .lock()
        .expect("endpoints due lock")
        .remove(&key);
    let started = std::time::Instant::now();
    let namespace = meta::namespace(&service.metadata);
    let name = meta::name(&service.metadata);
    let pods = context.stores.indexes.pods().candidates(&service);
    let existing = lookup(&context.stores.endpoints, namespace, name);
    let selected = started.elapsed();
    let plan = endpoints::reconcile(&service, &pods, existing.as_deref());
    let planned = started.elapsed();
    let writes = plan.write_count();
    let result = context.apply(key, plan).await;
    tracing::debug!(
        target: "hollow_controllers::timing",
        pods = pods.len(),
        writes,
        select_us = selected.as_micros() as u64,
        plan_us = (planned - selected).as_micros() as u64,
        apply_us = (started.elapsed() - planned).as_micros() as u64,
        "endpoints reconcile"
    );
    result
}

/// The Endpoints controller's key for a Service, apart from the slice controller's.
fn endpoints_key(service: &Service) -> String {
    format!(
        "Endpoints/{}/{}",
        meta::namespace(&service.metadata),
        meta::name(&service.metadata)
    )
}

fn endpoints_error_policy(service: Arc<Service>, error: &Error, context: Arc<Context>) -> Action {
    failed(endpoints_key(&service), error, &context)
}

async fn reconcile_stateful_set(
    set: Arc<StatefulSet>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let key = key_of(set.as_ref());
    if !context.caches_caught_up(&key) {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    let namespace = meta::namespace(&set.metadata);
    let pods = context
        .stores
        .indexes
        .pods()
        .controlled_by(namespace, meta::uid(&set.metadata));
    let service_name = set.spec.service_name.as_deref().unwrap_or_default();
    let service = lookup(&context.stores.services, namespace, service_name);
    let plan = statefulset::reconcile(&set, &pods, service.as_deref());
    context.apply(key, plan).await
}

async fn reconcile_replica_set(
    replica_set: Arc<ReplicaSet>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let key = key_of(replica_set.as_ref());
    if !context.caches_caught_up(&key) {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    let pods = context.stores.indexes.pods().controlled_by(
        meta::namespace(&replica_set.metadata),
        meta::uid(&replica_set.metadata),
    );
    let plan = replicaset::reconcile(&replica_set, &pods, &now());
    let min_ready = replica_set.spec.min_ready_seconds.unwrap_or(0);
    let action = context.apply(key, plan).await?;
    // Availability after minReadySeconds changes without any event: look again then.
    if min_ready > 0 {
        return Ok(Action::requeue(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(action)
}

async fn reconcile_deployment(
    deployment: Arc<Deployment>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let key = key_of(deployment.as_ref());
    if !context.caches_caught_up(&key) {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    let namespace = meta::namespace(&deployment.metadata);
    let replica_sets = in_namespace(&context.stores.replica_sets, namespace);
    // The reconciler only looks at pods of the Deployment's own ReplicaSets.
    let pods: Vec<Arc<Pod>> = {
        let index = context.stores.indexes.pods();
        replica_sets
            .iter()
            .filter(|replica_set| {
                meta::is_controlled_by(&replica_set.metadata, meta::uid(&deployment.metadata))
            })
            .flat_map(|replica_set| {
                index.controlled_by(namespace, meta::uid(&replica_set.metadata))
            })
            .collect()
    };
    let plan = deployment::reconcile(&deployment, &replica_sets, &pods, &now());
    context.apply(key, plan).await
}

async fn reconcile_pod_scheduling(pod: Arc<Pod>, context: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(pod.as_ref());
    if !scheduler::needs_scheduling(&pod) {
        context
            .assumed_bindings
            .lock()
            .expect("assumed bindings lock")
            .remove(&key);
        return Ok(Action::await_change());
    }
    if context
        .assumed_bindings
        .lock()
        .expect("assumed bindings lock")
        .contains_key(&key)
    {
        // Bound already; the cache has not caught up.
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    let nodes = context.stores.nodes.state();
    let plan = {
        let mut assumed = context
            .assumed_bindings
            .lock()
            .expect("assumed bindings lock");
        let mut load = context.stores.indexes.pods().node_load().clone();
        // Count bindings the cache does not show yet, so a burst spreads over the nodes.
        for node in assumed.values() {
            *load.entry(node.clone()).or_default() += 1;
        }
        let plan = scheduler::reconcile_with_load(&pod, &nodes, &load, &now());
        if let Some(crate::plan::Object::Binding(binding)) = plan.create.first() {
            assumed.insert(key.clone(), binding.target.name.clone().unwrap_or_default());
        }
        plan
    };
    let binding = !plan.create.is_empty();
    let result = context.apply(key.clone(), plan).await;
    if binding && result.is_err() {
        context
            .assumed_bindings
            .lock()
            .expect("assumed bindings lock")
            .remove(&key);
    }
    // The binding is only visible as a pod update; do not wait on expectations for it.
    context
        .expectations
        .lock()
        .expect("expectations lock")
        .remove(&key);
    result.map(|_| Action::await_change())
}

// ---------------------------------------------------------------------------------------
// Garbage collector.

async fn owner_exists(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<bool, Error> {
    async fn get<K>(
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(|object| object.meta().clone()))
    }
    let found = match kind {
        Kind::Pod => get::<Pod>(client, namespace, name).await,
        Kind::Service => get::<Service>(client, namespace, name).await,
        Kind::Endpoints => get::<Endpoints>(client, namespace, name).await,
        Kind::EndpointSlice => get::<EndpointSlice>(client, namespace, name).await,
        Kind::ReplicaSet => get::<ReplicaSet>(client, namespace, name).await,
        Kind::Deployment => get::<Deployment>(client, namespace, name).await,
        Kind::StatefulSet => get::<StatefulSet>(client, namespace, name).await,
    }
    .map_err(|source| Error::Lookup {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    })?;
    Ok(found.is_some_and(|metadata| metadata.uid.as_deref() == Some(uid)))
}

async fn collect_garbage(context: &Context) -> Result<(), Error> {
    let collection = garbage_collector::collect(&context.stores.graph());
    let mut first_error = context
        .executor
        .apply(collection.plan)
        .await
        .error
        .map(Error::from);
    for dangling in collection.dangling {
        let namespace = meta::namespace(&dangling.object.metadata).to_string();
        let mut confirmed = Vec::new();
        for reference in &dangling.missing {
            let Some(kind) = Kind::from_reference(&reference.api_version, &reference.kind) else {
                continue;
            };
            match owner_exists(
                context.executor.client(),
                kind,
                &namespace,
                &reference.name,
                &reference.uid,
            )
            .await
            {
                Ok(false) => confirmed.push(reference.uid.clone()),
                Ok(true) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let plan = garbage_collector::resolve_dangling(&dangling, &confirmed);
        if let Some(error) = context.executor.apply(plan).await.error {
            first_error.get_or_insert(error.into());
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn run_garbage_collector(
    context: Arc<Context>,
    triggers: impl Stream<Item = ()> + Send,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut triggers = pin!(triggers);
    let mut shutdown = pin!(shutdown);
    let mut failures = 0u32;
    loop {
        let wait = if failures > 0 {
            backoff(failures)
        } else {
            context.options.resync
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = triggers.next() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        // Let a burst of changes (a Deployment's pods going away) settle into one pass.
        tokio::time::sleep(context.options.collector_debounce).await;
        while let Some(Some(())) = triggers.next().now_or_never() {}
        match collect_garbage(&context).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::debug!(%error, failures, "garbage collection pass failed");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry point.

/// What the garbage collector reads of an object: its identity and ownership.
#[derive(PartialEq)]
struct Ownership {
    uid: Option<String>,
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    terminating: bool,
    finalizers: Option<Vec<String>>,
}

impl Ownership {
    fn of(metadata: &ObjectMeta) -> Ownership {
        Ownership {
            uid: metadata.uid.clone(),
            owner_references: metadata.owner_references.clone(),
            terminating: metadata.deletion_timestamp.is_some(),
            finalizers: metadata.finalizers.clone(),
        }
    }
}

/// A trigger for every change of `stream`'s objects that the garbage collector can act
/// on (an object appearing or going, or its owners, finalizers or deletion changing), so
/// a pod's status change does not cost a walk over the whole cluster.
fn ownership_changes<K>(
    stream: impl Stream<Item = Arc<K>> + Send + 'static,
    store: Store<K>,
) -> futures::stream::BoxStream<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut known: HashMap<ObjectRef<K>, Ownership> = HashMap::new();
    stream
        .filter_map(move |object| {
            let reference = ObjectRef::from_obj(object.as_ref());
            // The store is level with or ahead of the event: compare what it holds now.
            let current = store
                .get(&reference)
                .map(|latest| Ownership::of(latest.meta()));
            let changed = match current {
                Some(ownership) if known.get(&reference) == Some(&ownership) => false,
                Some(ownership) => {
                    known.insert(reference, ownership);
                    true
                }
                None => {
                    known.remove(&reference);
                    true
                }
            };
            std::future::ready(changed.then_some(()))
        })
        .boxed()
}

fn log_results<K, E: std::fmt::Display>(
    name: &'static str,
) -> impl FnMut(Result<(ObjectRef<K>, Action), E>) -> std::future::Ready<()>
where
    K: Resource<DynamicType = ()>,
{
    move |result| {
        if let Err(error) = result {
            tracing::debug!(controller = name, %error, "reconcile did not run");
        }
        std::future::ready(())
    }
}

fn namespaced_api<K>(client: &Client) -> Api<K>
where
    K: Resource<DynamicType = ()>,
{
    Api::all(client.clone())
}

/// Runs every controller (EndpointSlices and Endpoints, StatefulSets, ReplicaSets,
/// Deployments, the scheduler and the garbage collector) until `shutdown` completes.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shutdown = shutdown.shared();
    let mut tasks = Vec::new();
    let mut pods = Informer::<Pod>::new();
    let mut services = Informer::<Service>::new();
    let mut slices = Informer::<EndpointSlice>::new();
    let mut endpoints_informer = Informer::<Endpoints>::new();
    let mut replica_sets = Informer::<ReplicaSet>::new();
    let mut deployments = Informer::<Deployment>::new();
    let mut stateful_sets = Informer::<StatefulSet>::new();
    let mut nodes = Informer::<Node>::new();
    let stores = Stores {
        pods: pods.store.clone(),
        services: services.store.clone(),
        slices: slices.store.clone(),
        endpoints: endpoints_informer.store.clone(),
        replica_sets: replica_sets.store.clone(),
        deployments: deployments.store.clone(),
        stateful_sets: stateful_sets.store.clone(),
        nodes: nodes.store.clone(),
        indexes: Arc::new(Indexes::default()),
    };
    let context = Arc::new(Context {
        stores: stores.clone(),
        executor: Executor::new(client.clone(), options.component.clone()),
        options: options.clone(),
        expectations: Mutex::new(HashMap::new()),
        failures: Mutex::new(HashMap::new()),
        assumed_bindings: Mutex::new(HashMap::new()),
        slice_writes: Mutex::new(SliceWrites::default()),
        endpoints_due: Mutex::new(HashMap::new()),
    });
    let config = ControllerConfig::default().concurrency(options.concurrency);

    // Subscribe before the watches start, so nothing is missed.
    let pod_to_services = |stores: &Stores| {
        let indexes = stores.indexes.clone();
        // Remembering the previous match means a pod whose labels changed also triggers
        // the Services that selected it before.
        let previous: Mutex<HashMap<ObjectRef<Pod>, Vec<ObjectRef<Service>>>> =
            Mutex::new(HashMap::new());
        move |pod: Arc<Pod>| {
            let namespace = meta::namespace(&pod.metadata);
            let current: Vec<ObjectRef<Service>> = indexes
                .services()
                .selecting(namespace, meta::labels(&pod.metadata))
                .into_iter()
                .map(|name| ObjectRef::new(&name).within(namespace))
                .collect();
            let pod_ref = ObjectRef::from_obj(pod.as_ref());
            let mut previous = previous.lock().expect("pod mapping lock");
            let mut targets = previous.remove(&pod_ref).unwrap_or_default();
            if indexes
                .pods()
                .get(namespace, meta::name(&pod.metadata))
                .is_some()
            {
                previous.insert(pod_ref, current.clone());
            }
            for service in current {
                if !targets.contains(&service) {
                    targets.push(service);
                }
            }
            targets
        }
    };
    // A slice change triggers its Service, unless it only echoes the controller's own
    // write: planning on that again would find nothing to do.
    let slice_to_service = {
        let context = context.clone();
        move |slice: Arc<EndpointSlice>| {
            let owner =
                meta::controller_of(&slice.metadata).filter(|owner| owner.kind == "Service")?;
            let namespace = meta::namespace(&slice.metadata);
            let echo = context
                .slice_writes
                .lock()
                .expect("slice writes lock")
                .is_echo(&(namespace.to_string(), owner.name.clone()), &slice);
            (!echo).then(|| ObjectRef::<Service>::new(&owner.name).within(namespace))
        }
    };
    let endpoint_slice_controller =
        Controller::for_shared_stream(services.hub.subscribe(), stores.services.clone())
            .watches_shared_stream(slices.hub.subscribe(), slice_to_service)
            .watches_shared_stream(pods.hub.subscribe(), pod_to_services(&stores))
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_service, error_policy, context.clone())
            .for_each(log_results("endpointslice"));
    let endpoints_controller =
        Controller::for_shared_stream(services.hub.subscribe(), stores.services.clone())
            .owns_shared_stream(endpoints_informer.hub.subscribe())
            .watches_shared_stream(pods.hub.subscribe(), pod_to_services(&stores))
            .with_config(
                ControllerConfig::default().concurrency(options.endpoints_concurrency.max(1)),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(
                reconcile_service_endpoints,
                endpoints_error_policy,
                context.clone(),
            )
            .for_each(log_results("endpoints"));

    let stateful_set_controller =
        Controller::for_shared_stream(stateful_sets.hub.subscribe(), stores.stateful_sets.clone())
            .owns_shared_stream(pods.hub.subscribe())
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_stateful_set, error_policy, context.clone())
            .for_each(log_results("statefulset"));

    let replica_set_controller =
        Controller::for_shared_stream(replica_sets.hub.subscribe(), stores.replica_sets.clone())
            .owns_shared_stream(pods.hub.subscribe())
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_replica_set, error_policy, context.clone())
            .for_each(log_results("replicaset"));

    let pod_to_deployment = {
        let replica_sets_store = stores.replica_sets.clone();
        move |pod: Arc<Pod>| {
            let owner =
                meta::controller_of(&pod.metadata).filter(|owner| owner.kind == "ReplicaSet")?;
            let replica_set = lookup(
                &replica_sets_store,
                meta::namespace(&pod.metadata),
                &owner.name,
            )?;
            let deployment = meta::controller_of(&replica_set.metadata)
                .filter(|owner| owner.kind == "Deployment")?;
            Some(
                ObjectRef::<Deployment>::new(&deployment.name)
                    .within(meta::namespace(&pod.metadata)),
            )
        }
    };
    let deployment_controller =
        Controller::for_shared_stream(deployments.hub.subscribe(), stores.deployments.clone())
            .owns_shared_stream(replica_sets.hub.subscribe())
            .watches_shared_stream(pods.hub.subscribe(), pod_to_deployment)
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_deployment, error_policy, context.clone())
            .for_each(log_results("deployment"));

    let node_to_pending_pods = {
        let indexes = stores.indexes.clone();
        move |_node: Arc<Node>| {
            indexes
                .pods()
                .unscheduled()
                .iter()
                .map(|pod| ObjectRef::from_obj(pod.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let scheduler_controller =
        Controller::for_shared_stream(pods.hub.subscribe(), stores.pods.clone())
            .watches_shared_stream(nodes.hub.subscribe(), node_to_pending_pods)
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile_pod_scheduling, error_policy, context.clone())
            .for_each(log_results("scheduler"));

    let collector_triggers = futures::stream::select_all([
        ownership_changes(pods.hub.subscribe(), stores.pods.clone()),
        ownership_changes(services.hub.subscribe(), stores.services.clone()),
        ownership_changes(slices.hub.subscribe(), stores.slices.clone()),
        ownership_changes(endpoints_informer.hub.subscribe(), stores.endpoints.clone()),
        ownership_changes(replica_sets.hub.subscribe(), stores.replica_sets.clone()),
        ownership_changes(deployments.hub.subscribe(), stores.deployments.clone()),
        ownership_changes(stateful_sets.hub.subscribe(), stores.stateful_sets.clone()),
    ]);

    pods.start(
        namespaced_api(&client),
        stores.indexes.pod_hook(),
        &mut tasks,
    );
    services.start(
        namespaced_api(&client),
        stores.indexes.service_hook(),
        &mut tasks,
    );
    slices.start(
        namespaced_api(&client),
        stores.indexes.slice_hook(),
        &mut tasks,
    );
    endpoints_informer.start(namespaced_api(&client), no_index(), &mut tasks);
    replica_sets.start(namespaced_api(&client), no_index(), &mut tasks);
    deployments.start(namespaced_api(&client), no_index(), &mut tasks);
    stateful_sets.start(namespaced_api(&client), no_index(), &mut tasks);
    nodes.start(namespaced_api(&client), no_index(), &mut tasks);

    let synced = async {
        let waits: [(&'static str, futures::future::BoxFuture<'_, bool>); 8] = [
            (
                "pod",
                stores
                    .pods
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "service",
                stores
                    .services
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "endpointslice",
                stores
                    .slices
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "endpoints",
                stores
                    .endpoints
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "replicaset",
                stores
                    .replica_sets
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "deployment",
                stores
                    .deployments
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "statefulset",
                stores
                    .stateful_sets
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
            (
                "node",
                stores
                    .nodes
                    .wait_until_ready()
                    .map(|result| result.is_ok())
                    .boxed(),
            ),
        ];
        for (name, wait) in waits {
            if !wait.await {
                return Err(Error::CacheNeverSynced(name));
            }
        }
        Ok(())
    };
    let outcome = tokio::select! {
        result = synced => result,
        () = shutdown.clone() => Ok(()),
    };
    if outcome.is_ok() && shutdown.clone().now_or_never().is_none() {
        // Index every cached object before the first Service is reconciled, so a cold
        // start writes each slice once instead of growing it as pod events trickle in.
        stores.indexes.rebuild(&stores);
        tracing::info!("caches synced; controllers running");
        tokio::join!(
            endpoint_slice_controller,
            endpoints_controller,
            stateful_set_controller,
            replica_set_controller,
            deployment_controller,
            scheduler_controller,
            run_garbage_collector(context.clone(), collector_triggers, shutdown.clone()),
        );
    }
    for task in tasks {
        task.abort();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn keys_name_kind_namespace_and_name() {
        let pod = Pod {
            metadata: crate::fixtures::metadata("web-0"),
            ..Pod::default()
        };
        assert_eq!(key_of(&pod), "Pod/default/web-0");
    }
}

//! Incremental snapshot updates: after a change to one Service, EndpointSlice, Namespace or
//! Pod, re-derive and re-encode only the names it affects, re-pack only the shards holding
//! them, and publish a snapshot sharing every other shard with the previous one.
//!
//! # Model
//!
//! The zone is the merge of *parts*, each derived from one *source*: the fixed names, one
//! namespace, one Service with its EndpointSlices, the `ns.dns` nameserver, one Pod. A part is
//! a small [`ZoneRecords`] computed by the same functions [`records::collect`] uses for a full
//! build, so a name's records are its contributors' parts merged in source order — exactly
//! what the full build produces, which the property test at the bottom checks.
//!
//! Parts are not stored (they would double the memory of the served index); they are
//! recomputed from the compact records when needed, which costs microseconds per Service.
//! What is stored, each sized for a cluster of ~90,000 names:
//!
//! * the objects as [`crate::compact`] records, converted by the watchers (the Kubernetes
//!   structures are dropped right after each event), with namespace and Service names
//!   interned so that map keys and source keys share one allocation per name. A Service and
//!   its slices share one table entry, packed into one allocation of bytes
//!   ([`compact::PackedService`]) and unpacked when its records are derived; a slice's owner
//!   is found from its name (the controller names slices `<service>-<suffix>`), with a
//!   table only for slices named otherwise;
//! * the source table: id ↔ source key, the way back through a keyed hash of the key
//!   ([`SourceTable`]);
//! * `contributors`: keyed hash of a name → ids (`u32`) of the sources whose part has it,
//!   sorted in source order, for the names that need it: a name shaped
//!   `…<service>.<namespace>.svc.<zone>` fed by that Service alone, three names in four, has
//!   no entry. Only hashes, not names: a 64-bit keyed hash collision merely makes a merge
//!   look at one source too many (merging reads the part's name itself). One table of
//!   12-byte entries holding the id itself when there is one, else the slot of a list beside
//!   it ([`Contributors`]);
//! * `dependents`: hash of a name → hashes of names whose *encoding* read it (chased in-zone
//!   aliases, NS glue, SRV targets' addresses in the additional section), so a name whose
//!   records change also re-encodes every answer that embeds them (and `lookups_of`, its
//!   reverse, to forget them), as `Few` lists (inline when there is one). Only reads across
//!   sources are kept: a Service's SRV answers reading its own endpoints' names were nearly
//!   all of them (2 MiB on the benchmark cluster), and an update re-encodes the reading names
//!   of every part it touches instead (see `cross_source_reads`);
//! * the shards themselves, which hold the encoded answers.
//!
//! [`LiveZone::memory_report`] estimates each of these from lengths and capacities.
//!
//! # One update
//!
//! Before an object changes, the part of every source it touches is computed from the old
//! objects and kept (`pending`); events are applied as they arrive. [`LiveZone::publish`] then
//! computes each pending source's new part and diffs it against the old one: names whose part
//! differs are affected, plus their dependents. Each is merged from its contributors, encoded
//! (noting what the encoding read, for `dependents`) and its shard is re-packed by copying the
//! untouched entries' bytes and appending the new ones. A burst of events between two
//! publishes costs one publish; nothing waits for a quiet period.
//!
//! The first sync and every relist after a reconnect do a full rebuild instead, from the same
//! parts, since then nearly everything is affected anyway. It merges and encodes the names in
//! eight groups of shards, one after the other, re-deriving the parts for each, and packs
//! each group's shards as soon as it is encoded: the merged records of the whole zone took
//! three times the bytes of the encoded index and made the full build the process's resident
//! peak (95 MiB where the synced server held 52 on the benchmark cluster; 59 in four groups).
//! Since the server holds 19–23 MiB after sync, eight groups rather than four lower the
//! peak from ~40 to ~34 MiB for about 0.5 s more per full build (the previous snapshot
//! serves meanwhile).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::compact::{self, Interner};
use crate::records::{self, ClusterState, CompactState, NameRecords, RecordLookup, ZoneRecords};
use crate::snapshot::{
    EncodedEntry, Encoder, KeySuffixes, SHARD_COUNT, Shard, ShardBuilder, Snapshot,
    SnapshotSettings, shard_of,
};

/// A watched object in the compact form the zone keeps (see [`crate::compact`]).
#[derive(Clone, Debug)]
pub enum Object {
    Service(compact::Service),
    EndpointSlice(compact::EndpointSlice),
    /// A Namespace, by name.
    Namespace(Arc<str>),
    Pod(compact::Pod),
}

impl Object {
    /// Converts a Kubernetes Service; the original can be dropped afterwards.
    pub fn service(service: &k8s_openapi::api::core::v1::Service) -> Self {
        Self::Service(service.into())
    }

    pub fn endpoint_slice(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Self {
        Self::EndpointSlice(slice.into())
    }

    pub fn namespace(namespace: &k8s_openapi::api::core::v1::Namespace) -> Self {
        Self::Namespace(compact::namespace_name(namespace))
    }

    pub fn pod(pod: &k8s_openapi::api::core::v1::Pod) -> Self {
        Self::Pod(pod.into())
    }
}

/// The kinds of [`Object`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Service,
    EndpointSlice,
    Namespace,
    Pod,
}

/// What one source contributes to. The order of the variants and fields is the order
/// [`records::collect`] reads sources in, so merges come out the same. Names are interned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SourceKey {
    Fixed,
    Namespace(Arc<str>),
    Service(Arc<str>, Arc<str>),
    Nameserver,
    Pod(Arc<str>, Arc<str>),
}

/// (namespace, name), both interned.
type ObjectKey = (Arc<str>, Arc<str>);

/// A Service and the EndpointSlices labelled with its name, which together are one source,
/// unpacked from [`compact::PackedService`] for reading or changing. Either may exist
/// without the other (a slice written before its Service).
#[derive(Default)]
struct ServiceEntry {
    service: Option<compact::Service>,
    /// Sorted by name.
    slices: Vec<compact::EndpointSlice>,
}

impl ServiceEntry {
    fn unpack(key: &ObjectKey, packed: &compact::PackedService) -> Self {
        let (service, slices) = packed.unpack(&key.0, &key.1);
        Self { service, slices }
    }

    /// The packed form, or `None` when there is nothing left to keep.
    fn pack(&self) -> Option<compact::PackedService> {
        (self.service.is_some() || !self.slices.is_empty())
            .then(|| compact::PackedService::pack(self.service.as_ref(), &self.slices))
    }
}

/// The watched objects, indexed the way parts are derived from them.
#[derive(Default)]
struct Objects {
    interner: Interner,
    /// (namespace, service name) → the Service and its slices, packed into one allocation
    /// (see [`compact::PackedService`]): one table for both, since nearly every Service has
    /// slices and a second table with the same keys cost 0.9 MiB on the benchmark cluster.
    services: HashMap<ObjectKey, compact::PackedService>,
    /// (namespace, slice name) → the service it belonged to when last seen, only for slices
    /// not named `<service>-…`. The EndpointSlice controller names every slice that way
    /// (the Service's name and a generated suffix), so [`Objects::slice_owner`] finds nearly
    /// every owner from the slice's name and this table stays nearly empty where a table of
    /// every slice cost 0.8 MiB on the benchmark cluster.
    slice_owner_exceptions: HashMap<ObjectKey, Arc<str>>,
    /// EndpointSlices held (for the memory report).
    slice_count: usize,
    /// Entries of `services` that hold a Service (for the memory report).
    service_count: usize,
    namespaces: HashSet<Arc<str>>,
    services_per_namespace: HashMap<Arc<str>, usize>,
    pods: HashMap<ObjectKey, compact::Pod>,
}

impl Objects {
    fn part(&self, key: &SourceKey, settings: &records::RecordSettings) -> ZoneRecords {
        match key {
            SourceKey::Fixed => records::fixed_part(settings),
            SourceKey::Namespace(namespace) => {
                if self.namespaces.contains(namespace)
                    || self.services_per_namespace.contains_key(namespace)
                {
                    records::namespace_part(namespace, settings)
                } else {
                    ZoneRecords::default()
                }
            }
            SourceKey::Service(namespace, name) => {
                match self.entry(&(namespace.clone(), name.clone())) {
                    ServiceEntry {
                        service: Some(service),
                        slices,
                    } => {
                        let slices: Vec<&compact::EndpointSlice> = slices.iter().collect();
                        records::service_part(&service, &slices, settings)
                    }
                    _ => ZoneRecords::default(),
                }
            }
            SourceKey::Nameserver => records::nameserver_part(
                self.entry(&(Arc::from("kube-system"), Arc::from("kube-dns")))
                    .service
                    .as_ref(),
                settings,
            ),
            SourceKey::Pod(namespace, name) => {
                match self.pods.get(&(namespace.clone(), name.clone())) {
                    Some(pod) => records::pod_part(pod, settings),
                    None => ZoneRecords::default(),
                }
            }
        }
    }

    fn all_sources(&self) -> Vec<SourceKey> {
        let mut keys = vec![SourceKey::Fixed, SourceKey::Nameserver];
        let namespaces: HashSet<&Arc<str>> = self
            .namespaces
            .iter()
            .chain(self.services_per_namespace.keys())
            .collect();
        keys.extend(
            namespaces
                .into_iter()
                .map(|namespace| SourceKey::Namespace(namespace.clone())),
        );
        keys.extend(
            self.services
                .iter()
                .filter(|(_, packed)| packed.has_service())
                .map(|((namespace, name), _)| SourceKey::Service(namespace.clone(), name.clone())),
        );
        keys.extend(
            self.pods
                .keys()
                .map(|(namespace, name)| SourceKey::Pod(namespace.clone(), name.clone())),
        );
        keys.sort();
        keys
    }

    /// The Service `key` and its slices (both absent if nothing is filed under `key`).
    fn entry(&self, key: &ObjectKey) -> ServiceEntry {
        self.services
            .get(key)
            .map(|packed| ServiceEntry::unpack(key, packed))
            .unwrap_or_default()
    }

    /// Changes the entry of `key` (interned: it becomes the table's key if new).
    fn change_entry<T>(
        &mut self,
        key: ObjectKey,
        change: impl FnOnce(&mut ServiceEntry) -> T,
    ) -> T {
        let mut entry = self.entry(&key);
        let result = change(&mut entry);
        match entry.pack() {
            Some(packed) => {
                self.services.insert(key, packed);
            }
            None => {
                self.services.remove(&key);
            }
        }
        result
    }

    /// The service the slice `key` is filed under, if it is held.
    fn slice_owner(&self, key: &ObjectKey) -> Option<Arc<str>> {
        if let Some(owner) = self.slice_owner_exceptions.get(key) {
            return Some(owner.clone());
        }
        let (namespace, name) = key;
        name.match_indices('-').find_map(|(position, _)| {
            // A name no object holds is not interned, so this allocates nothing.
            let candidate = self.interner.get(&name[..position])?;
            let owner = (namespace.clone(), candidate.clone());
            let packed = self.services.get(&owner)?;
            ServiceEntry::unpack(&owner, packed)
                .slices
                .binary_search_by(|slice| slice.name.cmp(name))
                .is_ok()
                .then_some(candidate)
        })
    }

    /// Files `slice` under its service; the slice must not be held (see `remove_slice`).
    fn insert_slice(&mut self, slice: compact::EndpointSlice) {
        if let Some(service) = slice.service.clone() {
            let (namespace, name) = (slice.namespace.clone(), slice.name.clone());
            let named_after_owner = name
                .strip_prefix(&*service)
                .is_some_and(|suffix| suffix.starts_with('-'));
            if !named_after_owner {
                self.slice_owner_exceptions
                    .insert((namespace.clone(), name.clone()), service.clone());
            }
            let added = self.change_entry((namespace, service), |entry| {
                match entry.slices.binary_search_by(|other| other.name.cmp(&name)) {
                    Ok(position) => {
                        entry.slices[position] = slice;
                        false
                    }
                    Err(position) => {
                        entry.slices.insert(position, slice);
                        true
                    }
                }
            });
            self.slice_count += usize::from(added);
        }
    }

    fn remove_slice(&mut self, key: &ObjectKey) {
        let Some(service) = self.slice_owner(key) else {
            return;
        };
        self.slice_owner_exceptions.remove(key);
        let owner = (key.0.clone(), service);
        if self.services.contains_key(&owner) {
            self.slice_count -= self.change_entry(owner, |entry| {
                let before = entry.slices.len();
                entry.slices.retain(|slice| slice.name != key.1);
                before - entry.slices.len()
            });
        }
    }

    fn insert_service(&mut self, service: compact::Service) {
        let key = (service.namespace.clone(), service.name.clone());
        let added = self.change_entry(key.clone(), |entry| {
            entry.service.replace(service).is_none()
        });
        if added {
            self.service_count += 1;
            *self.services_per_namespace.entry(key.0).or_default() += 1;
        }
    }

    fn remove_service(&mut self, key: &ObjectKey) {
        if !self.services.contains_key(key) {
            return;
        }
        let removed = self.change_entry(key.clone(), |entry| entry.service.take().is_some());
        if removed {
            self.service_count -= 1;
            if let Some(count) = self.services_per_namespace.get_mut(&key.0) {
                *count -= 1;
                if *count == 0 {
                    self.services_per_namespace.remove(&key.0);
                }
            }
        }
    }

    /// Interns the names of `object` that the zone keeps as keys, so that it shares them
    /// with everything else, and copies the rest of a Pod into allocations of this thread.
    /// (Services and slices are kept packed, which copies them.) A slice's own name is kept
    /// only inside the packed form, so it is not interned.
    ///
    /// Why copy: the watcher converted `object` on a runtime thread, whose glibc arena also
    /// held the event's JSON and Kubernetes structure. Kept there, the small long-lived
    /// records would sit scattered among freed pages that `malloc_trim` then cannot return;
    /// copied here (the zone thread) the runtime's arena empties entirely between events.
    fn intern(&mut self, object: &mut Object) {
        let interner = &mut self.interner;
        match object {
            Object::Service(service) => service.intern(interner),
            Object::EndpointSlice(slice) => {
                slice.namespace = interner.intern(&slice.namespace);
                if let Some(service) = &mut slice.service {
                    *service = interner.intern(service);
                }
            }
            Object::Namespace(name) => *name = interner.intern(name),
            Object::Pod(pod) => {
                *pod = pod.clone();
                pod.intern(interner);
            }
        }
    }
}

/// A short list of ids or hashes, inline when it holds one: nearly every name has one
/// contributor and few dependents, and a `Vec` per name cost 24 bytes plus a 32-byte
/// allocation where this costs 16 bytes and none.
#[derive(Clone, Debug)]
enum Few<T> {
    One(T),
    Many(Box<[T]>),
}

impl<T: Copy + PartialEq> Few<T> {
    fn as_slice(&self) -> &[T] {
        match self {
            Self::One(item) => std::slice::from_ref(item),
            Self::Many(items) => items,
        }
    }

    /// `None` for an empty list.
    fn from_vec(mut items: Vec<T>) -> Option<Self> {
        match items.len() {
            0 => None,
            1 => items.pop().map(Self::One),
            _ => Some(Self::Many(items.into_boxed_slice())),
        }
    }

    fn insert(&mut self, position: usize, item: T) {
        let mut items = self.as_slice().to_vec();
        items.insert(position, item);
        *self = Self::Many(items.into_boxed_slice());
    }

    fn push(&mut self, item: T) {
        self.insert(self.as_slice().len(), item);
    }

    /// The list without `item`; `None` when nothing remains.
    fn without(&self, item: T) -> Option<Self> {
        Self::from_vec(
            self.as_slice()
                .iter()
                .copied()
                .filter(|&other| other != item)
                .collect(),
        )
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::One(_) => 0,
            Self::Many(items) => chunk(size_of_val(&**items)),
        }
    }
}

/// Appends `item` to the list at `key`.
fn push_to<T: Copy + PartialEq>(map: &mut HashMap<u64, Few<T>>, key: u64, item: T) {
    match map.entry(key) {
        Entry::Vacant(vacant) => {
            vacant.insert(Few::One(item));
        }
        Entry::Occupied(mut occupied) => occupied.get_mut().push(item),
    }
}

/// Removes `item` from the list at `key`, and the list when it empties.
fn remove_from<T: Copy + PartialEq>(map: &mut HashMap<u64, Few<T>>, key: u64, item: T) {
    if let Entry::Occupied(mut occupied) = map.entry(key) {
        match occupied.get().without(item) {
            Some(rest) => *occupied.get_mut() = rest,
            None => {
                occupied.remove();
            }
        }
    }
}

/// Name hash → ids of the sources whose part has that name, in source order.
///
/// Most names need no entry: a name of the shape `…<service>.<namespace>.svc.<zone>` is
/// *implicitly* fed by that Service's source (see [`implicit_source`]), and only names fed
/// otherwise (reverse names, namespace and pod names, the fixed names, or a name of a
/// Service's shape that another source feeds too) are stored. On the benchmark cluster that
/// is 21,000 of 88,000 names. What [`Contributors::get`] returns may include the implicit
/// source when its part lacks the name; every reader merges from the parts themselves, so a
/// source too many costs a look, never a wrong answer.
///
/// A stored name maps to one `u32`: the id itself, or, with [`Contributors::LIST`] set, the
/// slot in `lists` of a longer list. The key is the hash split into two `u32` halves, which
/// makes an entry 12 bytes instead of 16 (a `u64` key aligns the entry to 8): with the
/// control byte, 13 bytes per bucket where a `HashMap<u64, Vec<u32>>` took 33.
#[derive(Default)]
struct Contributors {
    names: HashMap<[u32; 2], u32>,
    lists: Vec<Vec<u32>>,
    free_lists: Vec<u32>,
}

/// The contributors of one name, stored or implicit.
enum Ids<'a> {
    Stored(&'a [u32]),
    Implicit([u32; 1]),
}

impl Ids<'_> {
    fn as_slice(&self) -> &[u32] {
        match self {
            Self::Stored(ids) => ids,
            Self::Implicit(id) => id,
        }
    }
}

impl Contributors {
    const LIST: u32 = 1 << 31;

    fn key(hash: u64) -> [u32; 2] {
        [hash as u32, (hash >> 32) as u32]
    }

    /// The sources feeding the name of `hash`, whose implicit source is `implicit`.
    fn get(&self, hash: u64, implicit: Option<u32>) -> Option<Ids<'_>> {
        let Some(value) = self.names.get(&Self::key(hash)) else {
            return implicit.map(|id| Ids::Implicit([id]));
        };
        Some(Ids::Stored(if value & Self::LIST != 0 {
            &self.lists[(value & !Self::LIST) as usize]
        } else {
            std::slice::from_ref(value)
        }))
    }

    /// Adds `id` to the sources of the name of `hash` (implicit source `implicit`), at the
    /// position `position` picks from the list.
    fn insert(
        &mut self,
        hash: u64,
        id: u32,
        implicit: Option<u32>,
        position: impl Fn(&[u32]) -> usize,
    ) {
        debug_assert!(id & Self::LIST == 0, "source ids stay below 2^31");
        let key = Self::key(hash);
        let first = match self.names.get(&key).copied() {
            // The implicit source alone needs no entry.
            None if implicit == Some(id) => return,
            None => match implicit {
                // Another source joins the implicit one: both are stored from now on.
                Some(implicit) => implicit,
                None => {
                    self.names.insert(key, id);
                    return;
                }
            },
            Some(value) if value & Self::LIST != 0 => {
                let list = &mut self.lists[(value & !Self::LIST) as usize];
                if !list.contains(&id) {
                    let at = position(list);
                    list.insert(at, id);
                }
                return;
            }
            Some(value) if value == id => return,
            Some(value) => value,
        };
        let mut list = vec![first];
        list.insert(position(&list), id);
        let slot = self.store_list(list);
        self.names.insert(key, Self::LIST | slot);
    }

    fn store_list(&mut self, list: Vec<u32>) -> u32 {
        match self.free_lists.pop() {
            Some(slot) => {
                self.lists[slot as usize] = list;
                slot
            }
            None => {
                self.lists.push(list);
                (self.lists.len() - 1) as u32
            }
        }
    }

    /// Removes `id` from the sources of the name of `hash` (implicit source `implicit`), and
    /// the entry when what remains is nothing or the implicit source alone.
    fn remove(&mut self, hash: u64, id: u32, implicit: Option<u32>) {
        let key = Self::key(hash);
        let Some(value) = self.names.get_mut(&key) else {
            return;
        };
        if *value & Self::LIST == 0 {
            if *value == id {
                self.names.remove(&key);
            }
            return;
        }
        let slot = *value & !Self::LIST;
        let list = &mut self.lists[slot as usize];
        list.retain(|&other| other != id);
        if list.len() <= 1 {
            let rest = std::mem::take(list);
            self.free_lists.push(slot);
            match rest.first() {
                Some(&only) if Some(only) != implicit => *value = only,
                _ => {
                    self.names.remove(&key);
                }
            }
        }
    }

    /// Names stored (those not fed by their implicit source alone).
    fn len(&self) -> usize {
        self.names.len()
    }

    fn heap_bytes(&self) -> usize {
        table(&self.names)
            + vec_bytes(&self.lists)
            + self.lists.iter().map(vec_bytes).sum::<usize>()
            + vec_bytes(&self.free_lists)
    }
}

/// The labels `(service, namespace)` of a name `…<service>.<namespace>.svc.<zone>`.
fn service_of_name<'a>(suffixes: &KeySuffixes, name: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let before = suffixes.before_services(name)?;
    let (mut last, mut second_last) = (None, None);
    let mut position = 0;
    while position < before {
        let len = usize::from(name[position]);
        second_last = last.replace(&name[position + 1..position + 1 + len]);
        position += 1 + len;
    }
    Some((second_last?, last?))
}

/// The source that feeds a name by its shape alone: the Service `<service>` in
/// `<namespace>` for `…<service>.<namespace>.svc.<zone>`, if the zone holds that source.
fn implicit_source(
    objects: &Objects,
    sources: &SourceTable,
    suffixes: &KeySuffixes,
    name: &[u8],
) -> Option<u32> {
    let (service, namespace) = service_of_name(suffixes, name)?;
    let name_of = |label: &[u8]| {
        std::str::from_utf8(label)
            .ok()
            .and_then(|text| objects.interner.get(text))
    };
    sources.find_id(&SourceKey::Service(name_of(namespace)?, name_of(service)?))
}

/// Whether the name has the shape of a name of the Service source `key`.
fn is_shaped_after(suffixes: &KeySuffixes, name: &[u8], key: &SourceKey) -> bool {
    match key {
        SourceKey::Service(namespace, service) => {
            service_of_name(suffixes, name).is_some_and(|(label, namespace_label)| {
                label == service.as_bytes() && namespace_label == namespace.as_bytes()
            })
        }
        _ => false,
    }
}

/// Source ids, so that `contributors` stores four bytes per source instead of its key.
///
/// The way back, key → id, goes through a keyed 64-bit hash of the key: a table of
/// `u64 → u32` takes 17 bytes per bucket where one keyed by the key itself took 49 (0.8 MiB
/// on the benchmark cluster). The key is checked against `keys`; the rare key whose hash is
/// already taken by another goes to `colliding`.
#[derive(Default)]
struct SourceTable {
    keys: Vec<Option<SourceKey>>,
    by_hash: HashMap<u64, u32>,
    colliding: HashMap<SourceKey, u32>,
    free: Vec<u32>,
    hasher: RandomState,
}

impl SourceTable {
    fn find(&self, key: &SourceKey, hash: u64) -> Option<u32> {
        match self.by_hash.get(&hash) {
            Some(&id) if self.keys[id as usize].as_ref() == Some(key) => Some(id),
            _ => self.colliding.get(key).copied(),
        }
    }

    fn id(&mut self, key: &SourceKey) -> u32 {
        let hash = self.hasher.hash_one(key);
        if let Some(id) = self.find(key, hash) {
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = Some(key.clone());
                id
            }
            None => {
                self.keys.push(Some(key.clone()));
                (self.keys.len() - 1) as u32
            }
        };
        match self.by_hash.entry(hash) {
            Entry::Vacant(vacant) => {
                vacant.insert(id);
            }
            Entry::Occupied(_) => {
                self.colliding.insert(key.clone(), id);
            }
        }
        id
    }

    fn shrink_to_fit(&mut self) {
        self.keys.shrink_to_fit();
    }

    fn find_id(&self, key: &SourceKey) -> Option<u32> {
        self.find(key, self.hasher.hash_one(key))
    }

    fn key(&self, id: u32) -> &SourceKey {
        self.keys[id as usize]
            .as_ref()
            .expect("contributors only hold live source ids")
    }

    fn release(&mut self, key: &SourceKey) {
        let hash = self.hasher.hash_one(key);
        let Some(id) = self.find(key, hash) else {
            return;
        };
        if self.by_hash.get(&hash) == Some(&id) {
            self.by_hash.remove(&hash);
        } else {
            self.colliding.remove(key);
        }
        self.keys[id as usize] = None;
        self.free.push(id);
    }

    fn heap_bytes(&self) -> usize {
        vec_bytes(&self.keys)
            + table(&self.by_hash)
            + table(&self.colliding)
            + vec_bytes(&self.free)
    }
}

/// What the last [`LiveZone::publish`] did, for metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishStats {
    /// A full rebuild (first sync, relist) rather than an incremental update.
    pub full: bool,
    pub duration: Duration,
    /// Sources whose part was re-derived.
    pub sources: usize,
    /// Names encoded.
    pub names_encoded: usize,
    /// Shards re-packed.
    pub shards_repacked: usize,
}

/// Approximate heap bytes of each structure a [`LiveZone`] holds, from lengths and
/// capacities (plus glibc's 16-byte chunk rounding), for finding where resident memory goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryReport {
    /// The Services with their EndpointSlices, packed, and their table.
    pub services: usize,
    /// The table of slices not named after their Service.
    pub endpoint_slices: usize,
    pub namespaces: usize,
    pub pods: usize,
    /// Shared namespace and object names.
    pub interned_names: usize,
    /// The source table (ids ↔ keys).
    pub sources: usize,
    /// Name hash → contributing source ids.
    pub contributors: usize,
    /// `dependents` and its reverse.
    pub dependencies: usize,
    /// The served index (the last published snapshot's shards).
    pub index: usize,
    /// Counts, for scale.
    pub service_count: usize,
    pub endpoint_slice_count: usize,
    /// Names whose contributors are stored (the others have their implicit source alone).
    pub name_count: usize,
}

impl MemoryReport {
    /// Each part's bytes, by name (what the metrics endpoint exports).
    pub fn parts(&self) -> [(&'static str, usize); 9] {
        [
            ("index", self.index),
            ("services", self.services),
            ("endpoint_slices", self.endpoint_slices),
            ("namespaces", self.namespaces),
            ("pods", self.pods),
            ("interned_names", self.interned_names),
            ("sources", self.sources),
            ("contributors", self.contributors),
            ("dependencies", self.dependencies),
        ]
    }

    pub fn total(&self) -> usize {
        self.services
            + self.endpoint_slices
            + self.namespaces
            + self.pods
            + self.interned_names
            + self.sources
            + self.contributors
            + self.dependencies
            + self.index
    }
}

impl std::fmt::Display for MemoryReport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
        write!(
            formatter,
            "{:.1} MiB: index {:.1}, services {:.1} ({}), endpoint slices {:.1} ({}), \
             namespaces {:.2}, pods {:.2}, interned names {:.2}, sources {:.1}, \
             contributors {:.1} ({} names stored), dependencies {:.1}",
            mib(self.total()),
            mib(self.index),
            mib(self.services),
            self.service_count,
            mib(self.endpoint_slices),
            self.endpoint_slice_count,
            mib(self.namespaces),
            mib(self.pods),
            mib(self.interned_names),
            mib(self.sources),
            mib(self.contributors),
            self.name_count,
            mib(self.dependencies),
        )
    }
}

/// The heap bytes glibc takes for a request of `bytes` (header, 16-byte rounding, minimum).
fn chunk(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        ((bytes + 8).div_ceil(16) * 16).max(32)
    }
}

/// The table of a `HashMap`/`HashSet` with entries of `entry` bytes.
fn table<K, V>(map: &HashMap<K, V>) -> usize {
    chunk(map.capacity() * (size_of::<(K, V)>() + 1))
}

fn vec_bytes<T>(vec: &Vec<T>) -> usize {
    chunk(vec.capacity() * size_of::<T>())
}

/// The zone kept current by watch events; see the module docs.
pub struct LiveZone {
    settings: SnapshotSettings,
    zone: Vec<u8>,
    objects: Objects,
    sources: SourceTable,
    contributors: Contributors,
    dependents: HashMap<u64, Few<u64>>,
    /// The reverse of `dependents`: name hash → hashes its encoding read.
    lookups_of: HashMap<u64, Few<u64>>,
    /// Parts, as they were before this batch's changes, of the sources the batch touched.
    pending: HashMap<SourceKey, ZoneRecords>,
    full_rebuild_pending: bool,
    hasher: RandomState,
    /// The name endings the index's keys leave out (see [`KeySuffixes`]).
    key_suffixes: Arc<KeySuffixes>,
    shards: Vec<Arc<Shard>>,
    last: PublishStats,
    /// Heap bytes of the index as of the last publish.
    index_bytes: usize,
}

impl LiveZone {
    /// An empty zone; the first [`LiveZone::publish`] does a full build.
    pub fn new(settings: SnapshotSettings) -> Self {
        let zone = records::fixed_part(&settings.records).zone;
        Self {
            settings,
            key_suffixes: KeySuffixes::for_zone(&zone),
            zone,
            objects: Objects::default(),
            sources: SourceTable::default(),
            contributors: Contributors::default(),
            dependents: HashMap::new(),
            lookups_of: HashMap::new(),
            pending: HashMap::new(),
            full_rebuild_pending: true,
            hasher: RandomState::new(),
            shards: (0..SHARD_COUNT).map(|_| Arc::default()).collect(),
            last: PublishStats::default(),
            index_bytes: 0,
        }
    }

    /// A zone holding `state` (built at the first publish).
    pub fn from_state(state: &ClusterState, settings: SnapshotSettings) -> Self {
        let state = CompactState::from(state);
        let mut zone = Self::new(settings);
        for service in state.services {
            zone.apply(Object::Service(service));
        }
        for slice in state.endpoint_slices {
            zone.apply(Object::EndpointSlice(slice));
        }
        for namespace in state.namespaces {
            zone.apply(Object::Namespace(namespace));
        }
        for pod in state.pods {
            zone.apply(Object::Pod(pod));
        }
        zone
    }

    /// Notes the part of `key` before the change that is about to happen.
    fn touch(&mut self, key: SourceKey) {
        if self.full_rebuild_pending || self.pending.contains_key(&key) {
            return;
        }
        let part = self.objects.part(&key, &self.settings.records);
        self.pending.insert(key, part);
    }

    fn touch_service(&mut self, key: &ObjectKey) {
        self.touch(SourceKey::Service(key.0.clone(), key.1.clone()));
        self.touch(SourceKey::Namespace(key.0.clone()));
        if (&*key.0, &*key.1) == ("kube-system", "kube-dns") {
            self.touch(SourceKey::Nameserver);
        }
    }

    /// An object was added or modified.
    pub fn apply(&mut self, mut object: Object) {
        self.objects.intern(&mut object);
        match object {
            Object::Service(service) => {
                let key = (service.namespace.clone(), service.name.clone());
                self.touch_service(&key);
                self.objects.insert_service(service);
            }
            Object::EndpointSlice(slice) => {
                let key = (slice.namespace.clone(), slice.name.clone());
                self.touch_slice(&key, slice.service.clone());
                self.objects.remove_slice(&key);
                self.objects.insert_slice(slice);
            }
            Object::Namespace(name) => {
                self.touch(SourceKey::Namespace(name.clone()));
                self.objects.namespaces.insert(name);
            }
            Object::Pod(pod) => {
                let key = (pod.namespace.clone(), pod.name.clone());
                self.touch(SourceKey::Pod(key.0.clone(), key.1.clone()));
                self.objects.pods.insert(key, pod);
            }
        }
    }

    /// An object was deleted.
    pub fn delete(&mut self, object: &Object) {
        match object {
            Object::Service(service) => {
                let key = (service.namespace.clone(), service.name.clone());
                self.touch_service(&key);
                self.objects.remove_service(&key);
            }
            Object::EndpointSlice(slice) => {
                let key = (slice.namespace.clone(), slice.name.clone());
                self.touch_slice(&key, None);
                self.objects.remove_slice(&key);
            }
            Object::Namespace(name) => {
                self.touch(SourceKey::Namespace(name.clone()));
                self.objects.namespaces.remove(name);
            }
            Object::Pod(pod) => {
                let key = (pod.namespace.clone(), pod.name.clone());
                self.touch(SourceKey::Pod(key.0.clone(), key.1.clone()));
                self.objects.pods.remove(&key);
            }
        }
    }

    fn touch_slice(&mut self, key: &ObjectKey, new_owner: Option<Arc<str>>) {
        let old_owner = self.objects.slice_owner(key);
        for owner in [old_owner, new_owner].into_iter().flatten() {
            self.touch(SourceKey::Service(key.0.clone(), owner));
        }
    }

    /// Replaces every object of `kind` (a relist); the next publish rebuilds in full.
    pub fn replace(&mut self, kind: Kind, objects: Vec<Object>) {
        self.start_relist(kind);
        for object in objects {
            self.apply(object);
        }
    }

    /// Forgets every object of `kind` because a new list of them begins: [`LiveZone::apply`]
    /// each listed object, and publish once the list is complete (the next publish rebuilds
    /// in full). Streaming a list this way holds no second copy of it.
    pub fn start_relist(&mut self, kind: Kind) {
        match kind {
            Kind::Service => {
                self.objects.services.retain(|key, packed| {
                    let mut entry = ServiceEntry::unpack(key, packed);
                    entry.service = None;
                    entry.pack().map(|repacked| *packed = repacked).is_some()
                });
                self.objects.service_count = 0;
                self.objects.services_per_namespace.clear();
            }
            Kind::EndpointSlice => {
                self.objects.services.retain(|key, packed| {
                    let mut entry = ServiceEntry::unpack(key, packed);
                    entry.slices.clear();
                    entry.pack().map(|repacked| *packed = repacked).is_some()
                });
                self.objects.slice_owner_exceptions.clear();
                self.objects.slice_count = 0;
            }
            Kind::Namespace => self.objects.namespaces.clear(),
            Kind::Pod => self.objects.pods.clear(),
        }
        self.full_rebuild_pending = true;
        self.pending.clear();
    }

    /// Whether anything was applied since the last publish.
    pub fn has_changes(&self) -> bool {
        self.full_rebuild_pending || !self.pending.is_empty()
    }

    /// Whether the next publish is a full rebuild (first sync, relist).
    pub fn full_rebuild_pending(&self) -> bool {
        self.full_rebuild_pending
    }

    /// Forces the next publish to rebuild in full: after a publish panicked part-way, the
    /// incremental bookkeeping cannot be trusted, but the objects still can.
    pub fn request_full_rebuild(&mut self) {
        self.full_rebuild_pending = true;
        self.pending.clear();
    }

    /// What the last publish did.
    pub fn last_publish(&self) -> PublishStats {
        self.last
    }

    /// Brings the index up to date with every change applied since the last publish and
    /// returns the snapshot to serve.
    pub fn publish(&mut self) -> Snapshot {
        let started = Instant::now();
        self.last = if self.full_rebuild_pending {
            self.rebuild()
        } else {
            self.update()
        };
        self.last.duration = started.elapsed();
        let mut snapshot =
            Snapshot::from_shards(self.shards.clone(), self.hasher.clone(), &self.settings);
        snapshot.set_build_duration(self.last.duration);
        self.index_bytes = snapshot.stats().index_bytes;
        snapshot
    }

    /// Where the zone's heap goes; see [`MemoryReport`].
    pub fn memory_report(&self) -> MemoryReport {
        let objects = &self.objects;
        let services = table(&objects.services)
            + objects
                .services
                .values()
                .map(|packed| chunk(packed.heap_bytes()))
                .sum::<usize>();
        let endpoint_slices = table(&objects.slice_owner_exceptions);
        let namespaces = chunk(objects.namespaces.capacity() * (size_of::<Arc<str>>() + 1))
            + table(&objects.services_per_namespace);
        let pods = table(&objects.pods)
            + objects
                .pods
                .values()
                .map(|pod| chunk(pod.heap_bytes()))
                .sum::<usize>();
        let sources = self.sources.heap_bytes();
        let contributors = self.contributors.heap_bytes();
        let dependencies = table(&self.dependents)
            + self.dependents.values().map(Few::heap_bytes).sum::<usize>()
            + table(&self.lookups_of)
            + self.lookups_of.values().map(Few::heap_bytes).sum::<usize>();
        MemoryReport {
            services,
            endpoint_slices,
            namespaces,
            pods,
            interned_names: self.objects.interner.heap_bytes(),
            sources,
            contributors,
            dependencies,
            index: self.index_bytes,
            service_count: objects.service_count,
            endpoint_slice_count: objects.slice_count,
            name_count: self.contributors.len(),
        }
    }

    fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    fn rebuild(&mut self) -> PublishStats {
        self.full_rebuild_pending = false;
        self.pending.clear();
        // A relist may have replaced objects whose names nothing holds any more.
        self.objects.interner.purge();
        self.sources = SourceTable::default();
        self.contributors = Contributors::default();
        self.dependents = HashMap::new();
        self.lookups_of = HashMap::new();
        let keys = self.objects.all_sources();
        let source_count = keys.len();
        let group_of = |hash: u64| shard_of(hash) * REBUILD_GROUPS / SHARD_COUNT;
        // First every name's contributors, from parts dropped as soon as they are read, and
        // the merged records of the first group.
        let mut ids = Vec::with_capacity(keys.len());
        let mut first_group: HashMap<Vec<u8>, NameRecords> = HashMap::new();
        for key in &keys {
            let part = self.objects.part(key, &self.settings.records);
            if part.names.is_empty() {
                continue;
            }
            let id = self.sources.id(key);
            ids.push(id);
            for (name, records) in part.names {
                let hash = self.hasher.hash_one(name.as_slice());
                let implicit = if is_shaped_after(&self.key_suffixes, &name, key) {
                    Some(id)
                } else {
                    implicit_source(&self.objects, &self.sources, &self.key_suffixes, &name)
                };
                let sources = &self.sources;
                self.contributors.insert(hash, id, implicit, |list| {
                    list.partition_point(|&other| sources.key(other) < key)
                });
                if group_of(hash) == 0 {
                    first_group.entry(name).or_default().merge(&records);
                }
            }
        }
        drop(keys);
        // Then the names one group of shards at a time: merged records take about three
        // times the bytes of their encoding, so holding all of them at once made the full
        // build the process's peak. Each group re-derives every part and keeps the names
        // that fall in it; what an encoding reads outside the group is merged on demand.
        let mut builders: Vec<ShardBuilder> = (0..SHARD_COUNT)
            .map(|_| ShardBuilder::new(self.key_suffixes.clone()))
            .collect();
        let mut shards: Vec<Arc<Shard>> = Vec::with_capacity(SHARD_COUNT);
        let mut names_encoded = 0;
        for group in 0..REBUILD_GROUPS {
            let mut merged: HashMap<Vec<u8>, NameRecords> = HashMap::new();
            if group == 0 {
                merged = std::mem::take(&mut first_group);
            } else {
                for &id in &ids {
                    let part = self
                        .objects
                        .part(self.sources.key(id), &self.settings.records);
                    for (name, records) in part.names {
                        if group_of(self.hasher.hash_one(name.as_slice())) == group {
                            merged.entry(name).or_default().merge(&records);
                        }
                    }
                }
            }
            let lookup = GroupLookup {
                group,
                group_of: &group_of,
                merged: &merged,
                others: Merging {
                    objects: &self.objects,
                    settings: &self.settings.records,
                    sources: &self.sources,
                    contributors: &self.contributors,
                    suffixes: &self.key_suffixes,
                    hasher: &self.hasher,
                    parts: RefCell::default(),
                    looked_up: RefCell::default(),
                },
            };
            // Names in the order of their first source, so that the names of one Service,
            // whose encodings read each other, come one after the other and the parts merged
            // for reads outside the group can be dropped as soon as the next source begins:
            // kept, they would add up to every part of the zone.
            let mut names: Vec<(u32, u64, &Vec<u8>, &NameRecords)> = merged
                .iter()
                .map(|(name, records)| {
                    let hash = self.hasher.hash_one(name.as_slice());
                    let first = lookup
                        .others
                        .contributors_of(name, hash)
                        .and_then(|ids| ids.as_slice().first().copied())
                        .unwrap_or(u32::MAX);
                    (first, hash, name, records)
                })
                .collect();
            names.sort_unstable_by_key(|&(first, hash, _, _)| (first, hash));
            let mut current_source = None;
            for (first, hash, name, records) in names {
                if current_source.replace(first) != Some(first) {
                    lookup.others.parts.borrow_mut().clear();
                }
                let encoded = Encoder {
                    owner: name,
                    zone: &self.zone,
                    names: &lookup,
                    ttl: self.settings.ttl,
                }
                .entry(records);
                let read = std::mem::take(&mut *lookup.others.looked_up.borrow_mut());
                let read = lookup.others.cross_source_reads(name, hash, read);
                record_dependencies(&mut self.dependents, &mut self.lookups_of, hash, read);
                builders[shard_of(hash) - shards.len()].push(hash, name, &encoded);
            }
            names_encoded += merged.len();
            drop(lookup);
            drop(merged);
            // This group's shards (the next in order) are complete: packed now, their
            // builders' spare capacity is free before the next group's records are merged.
            let group_shards = SHARD_COUNT / REBUILD_GROUPS;
            shards.extend(
                builders
                    .drain(..group_shards)
                    .map(|builder| Arc::new(builder.finish())),
            );
        }
        debug_assert!(builders.is_empty() && shards.len() == SHARD_COUNT);
        self.shards = shards;
        // The table grew by doubling while every source was added; updates add few.
        self.sources.shrink_to_fit();
        PublishStats {
            full: true,
            duration: Duration::ZERO,
            sources: source_count,
            names_encoded,
            shards_repacked: SHARD_COUNT,
        }
    }

    fn update(&mut self) -> PublishStats {
        let pending = std::mem::take(&mut self.pending);
        let source_count = pending.len();
        let mut new_parts: HashMap<u32, Rc<ZoneRecords>> = HashMap::new();
        let mut affected: HashSet<Vec<u8>> = HashSet::new();
        let mut released = Vec::new();
        for (key, old) in pending {
            let new = self.objects.part(&key, &self.settings.records);
            if old.names == new.names {
                continue;
            }
            let id = self.sources.id(&key);
            for name in old.names.keys() {
                if !new.names.contains_key(name) {
                    let implicit =
                        implicit_source(&self.objects, &self.sources, &self.key_suffixes, name);
                    self.contributors.remove(self.hash(name), id, implicit);
                }
            }
            for name in new.names.keys() {
                if !old.names.contains_key(name) {
                    let implicit =
                        implicit_source(&self.objects, &self.sources, &self.key_suffixes, name);
                    let sources = &self.sources;
                    self.contributors
                        .insert(self.hash(name), id, implicit, |list| {
                            list.partition_point(|&other| sources.key(other) < &key)
                        });
                }
            }
            for (name, records) in &old.names {
                if new.names.get(name) != Some(records) {
                    affected.insert(name.clone());
                }
            }
            for (name, records) in &new.names {
                if old.names.get(name) != Some(records) {
                    affected.insert(name.clone());
                }
            }
            if new.names.is_empty() {
                released.push(key);
            } else {
                new_parts.insert(id, Rc::new(new));
            }
        }
        for key in &released {
            self.sources.release(key);
        }

        let mut to_encode = affected.clone();
        for name in &affected {
            if let Some(dependents) = self.dependents.get(&self.hash(name)) {
                for &dependent in dependents.as_slice() {
                    let shard = &self.shards[shard_of(dependent)];
                    to_encode.extend(shard.names_with_hash(dependent));
                }
            }
        }

        // Reads within one source are not in `dependents` (see `cross_source_reads`): the
        // readers of a changed name are among the reading names of its sources' parts.
        let changed_sources: Vec<u32> = new_parts.keys().copied().collect();
        let lookup = Merging {
            objects: &self.objects,
            settings: &self.settings.records,
            sources: &self.sources,
            contributors: &self.contributors,
            suffixes: &self.key_suffixes,
            hasher: &self.hasher,
            parts: RefCell::new(new_parts),
            looked_up: RefCell::default(),
        };
        let mut sources_read: HashSet<u32> = changed_sources.into_iter().collect();
        for name in &affected {
            if let Some(ids) = lookup.contributors_of(name, self.hash(name)) {
                sources_read.extend(ids.as_slice());
            }
        }
        for id in sources_read {
            let part = lookup.part(id);
            for (name, records) in &part.names {
                // A name fed by several sources may read through another source's records.
                let may_read = reads_other_names(name, records)
                    || lookup
                        .contributors_of(name, self.hash(name))
                        .is_some_and(|ids| ids.as_slice().len() > 1);
                if may_read && !to_encode.contains(name) {
                    to_encode.insert(name.clone());
                }
            }
        }
        let mut changes: HashMap<usize, Vec<NameChange>> = HashMap::new();
        for name in to_encode {
            let hash = self.hasher.hash_one(name.as_slice());
            forget_dependencies(&mut self.dependents, &mut self.lookups_of, hash);
            let encoded = lookup.merged(&name).map(|records| {
                let encoded = Encoder {
                    owner: &name,
                    zone: &self.zone,
                    names: &lookup,
                    ttl: self.settings.ttl,
                }
                .entry(&records);
                let read = std::mem::take(&mut *lookup.looked_up.borrow_mut());
                let read = lookup.cross_source_reads(&name, hash, read);
                record_dependencies(&mut self.dependents, &mut self.lookups_of, hash, read);
                encoded
            });
            changes
                .entry(shard_of(hash))
                .or_default()
                .push((hash, name, encoded));
        }
        let names_encoded = changes.values().map(Vec::len).sum();
        let shards_repacked = changes.len();
        for (shard_index, changes) in changes {
            let old = &self.shards[shard_index];
            let changed: HashSet<&[u8]> =
                changes.iter().map(|(_, name, _)| name.as_slice()).collect();
            let mut builder = ShardBuilder::new(self.key_suffixes.clone());
            for name in old.names() {
                if !changed.contains(name.as_slice()) {
                    builder.copy(self.hasher.hash_one(&name), &name, old);
                }
            }
            for (hash, name, encoded) in &changes {
                if let Some(encoded) = encoded {
                    builder.push(*hash, name, encoded);
                }
            }
            self.shards[shard_index] = Arc::new(builder.finish());
        }
        PublishStats {
            full: false,
            duration: Duration::ZERO,
            sources: source_count,
            names_encoded,
            shards_repacked,
        }
    }
}

/// A name's new encoding (hash, name, `None` when it no longer exists).
type NameChange = (u64, Vec<u8>, Option<EncodedEntry>);

/// Whether encoding the `records` of `name` may read other names: SRV targets (for the
/// additional section), an alias chain, the apex's nameserver glue. An endpoint's own SRV
/// records point at itself, which is no read of another name.
fn reads_other_names(name: &[u8], records: &NameRecords) -> bool {
    records.services.iter().any(|record| record.target != name)
        || records.alias.is_some()
        || records.apex
}

fn record_dependencies(
    dependents: &mut HashMap<u64, Few<u64>>,
    lookups_of: &mut HashMap<u64, Few<u64>>,
    owner: u64,
    read: Vec<u64>,
) {
    for &target in &read {
        push_to(dependents, target, owner);
    }
    if let Some(read) = Few::from_vec(read) {
        lookups_of.insert(owner, read);
    }
}

fn forget_dependencies(
    dependents: &mut HashMap<u64, Few<u64>>,
    lookups_of: &mut HashMap<u64, Few<u64>>,
    owner: u64,
) {
    let Some(read) = lookups_of.remove(&owner) else {
        return;
    };
    for &target in read.as_slice() {
        remove_from(dependents, target, owner);
    }
}

/// How many groups of shards a full rebuild merges and encodes one after the other (see
/// [`LiveZone::rebuild`]): each more costs one more derivation of every part and saves
/// holding another share of the merged records. Divides [`SHARD_COUNT`].
const REBUILD_GROUPS: usize = 8;

/// A full build's lookup: names of the group being encoded from its merged map, any other
/// from its contributors' parts; notes which names were read.
struct GroupLookup<'a, F> {
    group: usize,
    group_of: &'a F,
    merged: &'a HashMap<Vec<u8>, NameRecords>,
    others: Merging<'a>,
}

impl<F: Fn(u64) -> usize> RecordLookup for GroupLookup<'_, F> {
    fn lookup(&self, name: &[u8]) -> Option<Cow<'_, NameRecords>> {
        if (self.group_of)(self.others.hasher.hash_one(name)) == self.group {
            self.others.looked_up.borrow_mut().push(name.to_vec());
            self.merged.get(name).map(Cow::Borrowed)
        } else {
            self.others.lookup(name)
        }
    }
}

/// An update's lookup: merges a name from its contributors' parts (recomputed once each per
/// update), noting which names were read.
struct Merging<'a> {
    objects: &'a Objects,
    settings: &'a records::RecordSettings,
    sources: &'a SourceTable,
    contributors: &'a Contributors,
    suffixes: &'a KeySuffixes,
    hasher: &'a RandomState,
    parts: RefCell<HashMap<u32, Rc<ZoneRecords>>>,
    looked_up: RefCell<Vec<Vec<u8>>>,
}

impl Merging<'_> {
    fn part(&self, id: u32) -> Rc<ZoneRecords> {
        if let Some(part) = self.parts.borrow().get(&id) {
            return part.clone();
        }
        let part = Rc::new(self.objects.part(self.sources.key(id), self.settings));
        self.parts.borrow_mut().insert(id, part.clone());
        part
    }

    /// The sources feeding `name` (whose hash is `hash`).
    fn contributors_of(&self, name: &[u8], hash: u64) -> Option<Ids<'_>> {
        self.contributors.get(
            hash,
            implicit_source(self.objects, self.sources, self.suffixes, name),
        )
    }

    /// The hashes of the names in `read` that `dependents` must remember for the name
    /// `owner` (hash `owner_hash`): those not fed solely by a source that also feeds `owner`.
    ///
    /// Nearly every read is of that kind (a headless Service's SRV answers read its
    /// endpoints' names, all from the one Service source), and kept they were most of
    /// `dependents`. They need no entry: such a name changes only when its source's part
    /// changes or another source starts feeding it, and either way [`LiveZone::update`]
    /// re-encodes every reading name (see [`reads_other_names`]) of the parts of the changed
    /// sources and of the changed names' contributors.
    fn cross_source_reads(
        &self,
        owner: &[u8],
        owner_hash: u64,
        mut read: Vec<Vec<u8>>,
    ) -> Vec<u64> {
        read.sort_unstable();
        read.dedup();
        let owner_sources = self.contributors_of(owner, owner_hash);
        let mut hashes: Vec<u64> = read
            .iter()
            .filter_map(|name| {
                let hash = self.hasher.hash_one(name.as_slice());
                if hash == owner_hash {
                    return None;
                }
                let Some(owner_sources) = &owner_sources else {
                    return Some(hash);
                };
                let fed_alongside = matches!(
                    self.contributors_of(name, hash).as_ref().map(Ids::as_slice),
                    Some(&[only]) if owner_sources.as_slice().contains(&only)
                );
                (!fed_alongside).then_some(hash)
            })
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    fn merged(&self, name: &[u8]) -> Option<NameRecords> {
        let ids = self.contributors_of(name, self.hasher.hash_one(name))?;
        let mut merged: Option<NameRecords> = None;
        for &id in ids.as_slice() {
            if let Some(records) = self.part(id).names.get(name) {
                merged.get_or_insert_default().merge(records);
            }
        }
        merged
    }
}

impl RecordLookup for Merging<'_> {
    fn lookup(&self, name: &[u8]) -> Option<Cow<'_, NameRecords>> {
        self.looked_up.borrow_mut().push(name.to_vec());
        self.merged(name).map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;
    use crate::records::PodMode;
    use crate::snapshot::{Disposition, Transport};
    use crate::wire::{self, CLASS_IN, record_type};
    use hickory_proto::op::Message;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    const NAMESPACES: [&str; 3] = ["default", "ns1", "kube-system"];
    const SERVICES: [&str; 4] = ["a", "b", "kube-dns", "web"];
    const HOSTNAMES: [&str; 2] = ["web-0", "web-1"];
    /// Slice names: one named after no service, two as the EndpointSlice controller names
    /// them (`<service>-<suffix>`), so that both ways of finding a slice's owner are used.
    const SLICES: [&str; 3] = ["slice-0", "web-1", "kube-dns-2"];

    #[derive(Clone, Debug)]
    enum Change {
        Service {
            namespace: usize,
            name: usize,
            kind: u8,
            address: u8,
            named_port: bool,
            target: usize,
        },
        DeleteService {
            namespace: usize,
            name: usize,
        },
        Slice {
            namespace: usize,
            slice: u8,
            owner: usize,
            named_port: bool,
            endpoints: Vec<(u8, Option<usize>, bool)>,
        },
        DeleteSlice {
            namespace: usize,
            slice: u8,
        },
        Namespace(usize),
        DeleteNamespace(usize),
        Pod {
            namespace: usize,
            name: u8,
            address: u8,
        },
        DeletePod {
            namespace: usize,
            name: u8,
        },
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0..3usize, 0..4usize, 0..5u8, 0..3u8, any::<bool>(), 0..4usize).prop_map(
                |(namespace, name, kind, address, named_port, target)| Change::Service {
                    namespace, name, kind, address, named_port, target,
                }
            ),
            1 => (0..3usize, 0..4usize)
                .prop_map(|(namespace, name)| Change::DeleteService { namespace, name }),
            5 => (
                0..3usize,
                0..3u8,
                0..4usize,
                any::<bool>(),
                proptest::collection::vec((0..5u8, proptest::option::of(0..2usize), any::<bool>()), 0..4),
            )
                .prop_map(|(namespace, slice, owner, named_port, endpoints)| Change::Slice {
                    namespace, slice, owner, named_port, endpoints,
                }),
            1 => (0..3usize, 0..3u8)
                .prop_map(|(namespace, slice)| Change::DeleteSlice { namespace, slice }),
            1 => (0..3usize).prop_map(Change::Namespace),
            1 => (0..3usize).prop_map(Change::DeleteNamespace),
            1 => (0..3usize, 0..3u8, 0..5u8)
                .prop_map(|(namespace, name, address)| Change::Pod { namespace, name, address }),
            1 => (0..3usize, 0..3u8)
                .prop_map(|(namespace, name)| Change::DeletePod { namespace, name }),
        ]
    }

    /// The objects a change writes, or (for deletions) the object it deletes.
    fn object_of(change: &Change) -> (KubeObject, bool) {
        match change {
            Change::Service {
                namespace,
                name,
                kind,
                address,
                named_port,
                target,
            } => {
                let port = if *named_port {
                    json!([{"name": "http", "port": 80, "protocol": "TCP"}])
                } else {
                    json!([{"port": 81}])
                };
                let ip = format!("10.96.0.{address}");
                let spec = match kind {
                    0 => json!({"clusterIP": ip, "ports": port}),
                    1 => json!({"clusterIP": "None", "ports": port}),
                    2 => json!({"type": "ExternalName",
                        "externalName": format!("{}.default.svc.cluster.local", SERVICES[*target])}),
                    3 => json!({"type": "ExternalName", "externalName": "www.example.com"}),
                    _ => json!({"clusterIP": ip, "ports": port, "publishNotReadyAddresses": true}),
                };
                let service = example::service(NAMESPACES[*namespace], SERVICES[*name], spec);
                (KubeObject::Service(service), true)
            }
            Change::DeleteService { namespace, name } => (
                KubeObject::Service(example::service(
                    NAMESPACES[*namespace],
                    SERVICES[*name],
                    json!({}),
                )),
                false,
            ),
            Change::Slice {
                namespace,
                slice,
                owner,
                named_port,
                endpoints,
            } => {
                let endpoints = endpoints
                    .iter()
                    .map(|(address, hostname, ready)| {
                        example::endpoint(
                            &format!("10.0.0.{address}"),
                            hostname.map(|index| HOSTNAMES[index]),
                            *ready,
                            false,
                        )
                    })
                    .collect();
                let port_name = if *named_port { "http" } else { "" };
                (
                    KubeObject::EndpointSlice(example::slice(
                        NAMESPACES[*namespace],
                        SLICES[*slice as usize],
                        SERVICES[*owner],
                        "IPv4",
                        &[(port_name, 8080, "TCP")],
                        endpoints,
                    )),
                    true,
                )
            }
            Change::DeleteSlice { namespace, slice } => (
                KubeObject::EndpointSlice(example::slice(
                    NAMESPACES[*namespace],
                    SLICES[*slice as usize],
                    "unused",
                    "IPv4",
                    &[],
                    Vec::new(),
                )),
                false,
            ),
            Change::Namespace(index) => (
                KubeObject::Namespace(example::namespace(NAMESPACES[*index])),
                true,
            ),
            Change::DeleteNamespace(index) => (
                KubeObject::Namespace(example::namespace(NAMESPACES[*index])),
                false,
            ),
            Change::Pod {
                namespace,
                name,
                address,
            } => (
                KubeObject::Pod(example::pod(
                    NAMESPACES[*namespace],
                    &format!("pod-{name}"),
                    &[&format!("10.0.0.{address}")],
                )),
                true,
            ),
            Change::DeletePod { namespace, name } => (
                KubeObject::Pod(example::pod(
                    NAMESPACES[*namespace],
                    &format!("pod-{name}"),
                    &[],
                )),
                false,
            ),
        }
    }

    /// A Kubernetes object as the watchers receive it.
    #[derive(Clone, Debug)]
    enum KubeObject {
        Service(Arc<k8s_openapi::api::core::v1::Service>),
        EndpointSlice(Arc<k8s_openapi::api::discovery::v1::EndpointSlice>),
        Namespace(Arc<k8s_openapi::api::core::v1::Namespace>),
        Pod(Arc<k8s_openapi::api::core::v1::Pod>),
    }

    impl KubeObject {
        /// What the watchers hand the zone.
        fn compact(&self) -> Object {
            match self {
                Self::Service(object) => Object::service(object),
                Self::EndpointSlice(object) => Object::endpoint_slice(object),
                Self::Namespace(object) => Object::namespace(object),
                Self::Pod(object) => Object::pod(object),
            }
        }
    }

    fn object_key<K: kube::Resource>(object: &K) -> (String, String) {
        let metadata = object.meta();
        (
            metadata.namespace.clone().unwrap_or_default(),
            metadata.name.clone().unwrap_or_default(),
        )
    }

    /// The cluster as a plain map, to build the oracle from.
    #[derive(Default)]
    struct Model(BTreeMap<(u8, String, String), KubeObject>);

    impl Model {
        fn key(object: &KubeObject) -> (u8, String, String) {
            let (kind, (namespace, name)) = match object {
                KubeObject::Service(object) => (0, object_key(&**object)),
                KubeObject::EndpointSlice(object) => (1, object_key(&**object)),
                KubeObject::Namespace(object) => (2, object_key(&**object)),
                KubeObject::Pod(object) => (3, object_key(&**object)),
            };
            (kind, namespace, name)
        }

        fn apply(&mut self, object: &KubeObject, exists: bool) {
            if exists {
                self.0.insert(Self::key(object), object.clone());
            } else {
                self.0.remove(&Self::key(object));
            }
        }

        fn state(&self) -> ClusterState {
            let mut state = ClusterState::default();
            for object in self.0.values() {
                match object {
                    KubeObject::Service(object) => state.services.push(object.clone()),
                    KubeObject::EndpointSlice(object) => state.endpoint_slices.push(object.clone()),
                    KubeObject::Namespace(object) => state.namespaces.push(object.clone()),
                    KubeObject::Pod(object) => state.pods.push(object.clone()),
                }
            }
            state
        }
    }

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(name);
        packet.extend(qtype.to_be_bytes());
        packet.extend(CLASS_IN.to_be_bytes());
        packet
    }

    /// What a client can observe of one answer, leaving out the SOA serial (a timestamp).
    fn observe(snapshot: &Snapshot, name: &[u8], qtype: u16) -> String {
        let mut out = vec![0u8; wire::MAX_MESSAGE_LEN];
        let (disposition, _) =
            snapshot.respond(&query(name, qtype), &mut out, Transport::Tcp, 0, false);
        let (len, chase) = match disposition {
            Disposition::Reply { len, .. } => (len, None),
            Disposition::ChaseExternal { len, target } => (len, Some(target)),
            other => return format!("{other:?}"),
        };
        let message = Message::from_vec(&out[..len]).expect("parseable reply");
        let text = format!(
            "{:?} answers {:?} additionals {:?} authorities {} chase {:?}",
            message.metadata.response_code,
            message.answers,
            message.additionals,
            message.authorities.len(),
            chase
        );
        // The SOA serial is the build time in seconds; two builds may straddle a second.
        match text.split_once("serial: ") {
            Some((head, tail)) => {
                let rest = tail.trim_start_matches(|character: char| character.is_ascii_digit());
                format!("{head}serial: _{rest}")
            }
            None => text,
        }
    }

    fn assert_same(live: &Snapshot, full: &Snapshot) {
        let mut live_names = live.names();
        live_names.sort();
        let mut full_names = full.names();
        full_names.sort();
        assert_eq!(
            live_names
                .iter()
                .map(|name| wire::display_name(name))
                .collect::<Vec<_>>(),
            full_names
                .iter()
                .map(|name| wire::display_name(name))
                .collect::<Vec<_>>(),
        );
        for name in &full_names {
            for qtype in [
                record_type::A,
                record_type::AAAA,
                record_type::SRV,
                record_type::PTR,
                record_type::CNAME,
                record_type::TXT,
                record_type::NS,
                record_type::SOA,
            ] {
                assert_eq!(
                    observe(live, name, qtype),
                    observe(full, name, qtype),
                    "{} type {qtype}",
                    wire::display_name(name)
                );
            }
        }
    }

    fn settings() -> SnapshotSettings {
        let mut settings = SnapshotSettings::default();
        settings.records.pod_mode = PodMode::Verified;
        settings
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Incremental updates answer every name exactly as a full rebuild of the same objects.
        #[test]
        fn incremental_matches_full_rebuild(
            initial in proptest::collection::vec(change(), 0..12),
            batches in proptest::collection::vec(proptest::collection::vec(change(), 1..4), 1..10),
        ) {
            let mut model = Model::default();
            for change in &initial {
                let (object, exists) = object_of(change);
                model.apply(&object, exists);
            }
            let mut zone = LiveZone::from_state(&model.state(), settings());
            let rebuilt = zone.publish();
            prop_assert!(zone.last_publish().full);
            assert_same(&rebuilt, &Snapshot::build(&model.state(), &settings()));
            for batch in &batches {
                for change in batch {
                    let (object, exists) = object_of(change);
                    model.apply(&object, exists);
                    if exists {
                        zone.apply(object.compact());
                    } else {
                        zone.delete(&object.compact());
                    }
                }
                let live = zone.publish();
                prop_assert!(!zone.last_publish().full);
                let full = Snapshot::build(&model.state(), &settings());
                assert_same(&live, &full);
            }
        }
    }

    #[test]
    fn an_endpoint_change_touches_only_its_names() {
        let mut zone = LiveZone::from_state(&example::cluster(), settings());
        zone.publish();
        let before = zone.last_publish();
        assert!(before.full);
        zone.apply(Object::endpoint_slice(&example::slice(
            "default",
            "nginx-extra",
            "nginx",
            "IPv4",
            &[("web", 80, "TCP")],
            vec![example::endpoint("10.244.1.99", Some("web-9"), true, false)],
        )));
        let snapshot = zone.publish();
        let update = zone.last_publish();
        assert!(!update.full);
        assert_eq!(update.sources, 1);
        assert!(update.names_encoded < 10, "{update:?}");
        assert!(update.shards_repacked <= update.names_encoded);
        let full = Snapshot::build(&zone_state_with_extra(), &settings());
        assert_same(&snapshot, &full);
    }

    #[test]
    fn names_of_a_services_shape_need_no_stored_contributors() {
        let zone = wire::encode_name("cluster.local").unwrap();
        let suffixes = KeySuffixes::for_zone(&zone);
        let name = |text: &str| wire::encode_name(text).unwrap();
        for (text, expected) in [
            ("web.default.svc.cluster.local", Some(("web", "default"))),
            (
                "web-0.web.default.svc.cluster.local",
                Some(("web", "default")),
            ),
            (
                "_http._tcp.web.default.svc.cluster.local",
                Some(("web", "default")),
            ),
            ("default.svc.cluster.local", None),
            ("svc.cluster.local", None),
            ("web.default.svc.example.org", None),
            ("10.0.96.10.in-addr.arpa", None),
        ] {
            let name = name(text);
            let found = service_of_name(&suffixes, &name).map(|(service, namespace)| {
                (
                    std::str::from_utf8(service).unwrap().to_owned(),
                    std::str::from_utf8(namespace).unwrap().to_owned(),
                )
            });
            let expected =
                expected.map(|(service, namespace)| (service.to_owned(), namespace.to_owned()));
            assert_eq!(found, expected, "{text}");
        }

        // Source order here is the order of the ids.
        let position = |id: u32| move |list: &[u32]| list.partition_point(|&other| other < id);
        let (service, other, reverse) = (1, 2, 7);
        let mut contributors = Contributors::default();
        // The Service's own names: nothing stored.
        contributors.insert(10, service, Some(service), position(service));
        assert_eq!(contributors.len(), 0);
        assert_eq!(
            contributors.get(10, Some(service)).unwrap().as_slice(),
            &[service]
        );
        assert!(contributors.get(10, None).is_none());
        // Another source joins a name of the Service's shape: both stored, in order.
        contributors.insert(10, other, Some(service), position(other));
        assert_eq!(contributors.len(), 1);
        assert_eq!(
            contributors.get(10, Some(service)).unwrap().as_slice(),
            &[service, other]
        );
        contributors.insert(10, service, Some(service), position(service));
        assert_eq!(
            contributors.get(10, Some(service)).unwrap().as_slice(),
            &[service, other],
            "no source twice"
        );
        // It leaves again: the implicit source alone, nothing stored.
        contributors.remove(10, other, Some(service));
        assert_eq!(contributors.len(), 0);
        // The Service's part drops the name while another source still feeds it.
        contributors.insert(10, other, Some(service), position(other));
        contributors.remove(10, service, Some(service));
        assert_eq!(
            contributors.get(10, Some(service)).unwrap().as_slice(),
            &[other]
        );
        contributors.remove(10, other, Some(service));
        assert_eq!(contributors.len(), 0);
        // A name of no Service's shape (a reverse name) is stored.
        contributors.insert(20, reverse, None, position(reverse));
        contributors.insert(20, service, None, position(service));
        assert_eq!(
            contributors.get(20, None).unwrap().as_slice(),
            &[service, reverse]
        );
        contributors.remove(20, reverse, None);
        contributors.remove(20, service, None);
        assert!(contributors.get(20, None).is_none());
        assert_eq!(contributors.len(), 0);
    }

    #[test]
    fn source_ids_survive_hash_collisions() {
        let mut table = SourceTable::default();
        let first = SourceKey::Namespace(Arc::from("first"));
        let second = SourceKey::Namespace(Arc::from("second"));
        let first_id = table.id(&first);
        // As if `second` hashed like `first`.
        let second_hash = table.hasher.hash_one(&second);
        table.by_hash.insert(second_hash, first_id);
        let second_id = table.id(&second);
        assert_ne!(first_id, second_id);
        assert_eq!(table.id(&second), second_id);
        assert_eq!(table.key(second_id), &second);
        table.release(&second);
        assert!(table.colliding.is_empty());
        assert_eq!(table.by_hash.get(&second_hash), Some(&first_id));
        assert_eq!(table.id(&first), first_id);
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_lists() {
        let mut state = zone_state_with_extra();
        let mut zone = LiveZone::from_state(&state, settings());
        zone.publish();
        // The relist streams every slice but the extra one, as the watchers hand it over.
        state
            .endpoint_slices
            .retain(|slice| slice.metadata.name.as_deref() != Some("nginx-extra"));
        zone.start_relist(Kind::EndpointSlice);
        assert!(zone.full_rebuild_pending());
        for slice in &state.endpoint_slices {
            zone.apply(Object::endpoint_slice(slice));
        }
        let relisted = zone.publish();
        assert!(zone.last_publish().full);
        assert_same(&relisted, &Snapshot::build(&state, &settings()));
        assert_eq!(
            zone.memory_report().endpoint_slice_count,
            state.endpoint_slices.len()
        );
    }

    fn zone_state_with_extra() -> ClusterState {
        let mut state = example::cluster();
        state.endpoint_slices.push(example::slice(
            "default",
            "nginx-extra",
            "nginx",
            "IPv4",
            &[("web", 80, "TCP")],
            vec![example::endpoint("10.244.1.99", Some("web-9"), true, false)],
        ));
        state
    }
}

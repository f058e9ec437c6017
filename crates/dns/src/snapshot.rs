//! The immutable query index and the code that answers a query from it.
//!
//! # Layout
//!
//! Every name that exists is indexed, empty non-terminals included, so a miss *is* NXDOMAIN
//! and a hit without the asked type *is* NODATA. A lookup is one keyed hash of the full
//! lower-cased wire name, one probe of a hash table from that hash to an entry, and one
//! comparison of the name against the entry's key: O(labels) for hits and misses alike, so an
//! NXDOMAIN costs no more than a hit. A trie would also be O(labels) but chases one pointer
//! per label; the flat table touches a few cache lines.
//!
//! The names are spread over [`SHARD_COUNT`] immutable [`Shard`]s by their hash, so a change
//! re-packs only the shards it touches. A shard is two allocations:
//!
//! - an **arena** of self-contained entries laid end to end: a two-byte header (key length;
//!   set count and flags), the key, the ExternalName target if any, then each record set as a
//!   small header (kind byte, varint counts and lengths) followed by its bytes. Nothing in an
//!   entry is an absolute offset, so an unchanged entry moves to the next shard with one
//!   `memcpy`;
//! - a **slot table**, open-addressed with linear probing at load ≤ 3/4, each slot a tag of
//!   the hash and the arena offset of one entry: 4 bytes (16-bit tag, 16-bit offset) when the
//!   arena fits 64 KiB, as nearly all do, else 8 bytes.
//!
//! A hit therefore reads the shard pointer, one slot cache line, then one neighbourhood of
//! the arena in which header, key, set headers and answer bytes sit next to each other; a
//! miss usually stops at the slot line (an empty slot, or tags that do not match). This
//! replaced a hashbrown map into 24-byte entries and 20-byte set descriptors with offsets
//! into a shared arena: on the benchmark cluster (89,672 names) 13.6 → 7.1 MiB, of which
//! 3.5 MiB were the keys themselves; keys that leave out their common ending
//! ([`KeySuffixes`]) brought it to 5.6 MiB ([`Snapshot::index_breakdown`] prints the split).
//!
//! The hash is std's keyed SipHash-1-3 with a per-process random key: query names are
//! attacker-chosen and so are, within a namespace, the names of Kubernetes objects, and with
//! a pseudo-random function of a secret key nobody can aim names at one shard or one probe
//! sequence. Its ~20 ns is noise next to the ~4.5 µs the kernel spends on a UDP round trip.
//! A cheaper seeded hash such as foldhash was considered and not taken: it claims only
//! minimal DoS resistance and its documentation advises against it where a long-running
//! program's behaviour can be studied to recover the seed, which describes a DNS server
//! answering anyone who asks; it would also have to change together with [`crate::live`],
//! which hashes names with the same `RandomState` to pick their shards.
//!
//! Each name's answers are stored **pre-encoded** as wire bytes, built once per snapshot:
//! the question always sits at offset 12 and its length is fixed by the name, so owner names
//! can be the pointer `0xC00C`, and names in record data can be compressed against the
//! question or against earlier records, all at build time. What is the same in every record
//! of a set is kept once: A/AAAA answers are bare addresses; other answers whose records are
//! all owned by the question with one type and TTL (SRV, PTR, CNAME, NS) keep only data
//! length and data; A/AAAA glue keeps only its owner pointer and address. The 12 fixed bytes
//! of each such record are written while answering, which costs a few stores per record and
//! saves 2.6 MiB on the benchmark cluster. Answering is then a header, a copy of the question,
//! the answer (rotated for headless A/AAAA) and maybe the OPT record: no allocation, no
//! locks. Rotation uses a counter owned by the serving worker, so it costs no shared cache
//! line.
//!
//! Names that are synthesised rather than stored: pod names in insecure mode
//! (`a-b-c-d.<ns>.pod.<zone>`, checked against the stored `<ns>.pod.<zone>`).
//!
//! # Negative answers
//!
//! NXDOMAIN and NODATA both carry the zone's SOA in the authority section (owner compressed
//! against the question, so it keeps the client's spelling), with the negative TTL as both the
//! record TTL and the SOA MINIMUM. Differences from CoreDNS (dns-spec.md §16): SOA at a
//! nonexistent name is NXDOMAIN, TXT at the apex and A at `dns-version` are NODATA, ANY at an
//! existing name is NODATA (RFC 8482 allows it; CoreDNS does the same), and TC is set only when
//! answer records were cut, never for dropped additional glue (RFC 2181 §9).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::records::{self, ClusterState, NameRecords, PodMode, RecordSettings};
use crate::wire::{
    self, CLASS_IN, HEADER_LEN, OPT_RECORD_LEN, POINTER_TO_QUESTION, ParseError, Question,
    ResponseFlags, SoaFields, record_type, response_code,
};

/// Records served at `dns-version` keep this TTL (spec example, CoreDNS).
const SCHEMA_VERSION_TTL: u32 = 28_800;
/// Longest chain of in-zone ExternalName aliases followed while building.
const MAX_ALIAS_CHAIN: usize = 8;
/// UDP payload size this server advertises in its OPT record.
pub const ADVERTISED_UDP_PAYLOAD: u16 = 1232;

/// Settings a snapshot is built with.
#[derive(Clone, Debug)]
pub struct SnapshotSettings {
    pub records: RecordSettings,
    /// TTL of positive answers.
    pub ttl: u32,
    /// TTL of NXDOMAIN and NODATA (SOA TTL and MINIMUM).
    pub negative_ttl: u32,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            records: RecordSettings {
                zone: "cluster.local".to_owned(),
                pod_mode: PodMode::Disabled,
                tolerate_unready_annotation: true,
                fallback_nameserver_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            },
            ttl: 5,
            negative_ttl: 5,
        }
    }
}

/// A set of records of one type at one name as the encoder produces it: a ready-to-copy
/// answer section followed by the additional section that goes with it.
#[derive(Debug)]
pub(crate) struct EncodedSet {
    qtype: u16,
    answer_count: u16,
    additional_count: u16,
    /// `bytes` are bare addresses owned by the question (see [`KIND_ADDRESSES`]).
    addresses: bool,
    /// The answer starts at a different record for each query (headless A/AAAA).
    rotates: bool,
    answer_len: u32,
    bytes: Vec<u8>,
}

/// Everything at one name, as the encoder produces it.
#[derive(Debug, Default)]
pub(crate) struct EncodedEntry {
    apex: bool,
    sets: Vec<EncodedSet>,
    /// ExternalName target outside the zone: address queries get the CNAME, then the server
    /// appends the target's addresses from upstream.
    external_target: Option<Vec<u8>>,
}

/// Entry flag: the name is a zone apex (answers SOA).
const FLAG_APEX: u8 = 1;
/// Entry flag: a length byte and an ExternalName target outside the zone follow the key.
const FLAG_EXTERNAL_TARGET: u8 = 2;
/// The entry's second byte holds the flags in its low two bits, the [`KeySuffixes`] code of
/// the name ending its key leaves out in the next two, and the set count above them.
const SUFFIX_SHIFT: u32 = 2;
const SUFFIX_MASK: u8 = 0b11 << SUFFIX_SHIFT;
const SET_COUNT_SHIFT: u32 = 4;
/// Bytes of a resource record before its data: owner pointer, type, class, TTL, data length.
const RECORD_FIXED_LEN: usize = 12;
/// Set kind flag: the answer holds bare addresses (4 bytes for A, 16 for AAAA) owned by the
/// question; each record's fixed 12 bytes are written while answering.
const KIND_ADDRESSES: u8 = 0x80;
/// Set kind flag: the answer starts at a different record for each query.
const KIND_ROTATES: u8 = 0x40;
/// Set kind flag: every answer record is owned by the question, of the set's type, class IN
/// and one TTL (a varint in the header); each is kept as a varint data length and its data.
const KIND_QUESTION_OWNED: u8 = 0x20;
/// Set kind flag (only with [`KIND_QUESTION_OWNED`], same TTL): every additional record is
/// an A or AAAA owned by a compression pointer; each is kept as that pointer's offset (bit
/// 14 set for AAAA) and the address.
const KIND_BARE_GLUE: u8 = 0x10;
/// Set kind bits naming the record type; 0 means a little-endian `u16` type follows.
const KIND_TYPE_MASK: u8 = 0x0F;
/// Marks AAAA in a bare glue record's pointer offset (offsets stay below 0x3FFF).
const BARE_GLUE_AAAA: u16 = 0x4000;
/// The record types a kind byte can name by themselves, at index `code - 1`.
const KIND_TYPES: [u16; 7] = [
    record_type::A,
    record_type::AAAA,
    record_type::SRV,
    record_type::PTR,
    record_type::CNAME,
    record_type::TXT,
    record_type::NS,
];

/// One record set of an entry, borrowed from its shard's arena.
#[derive(Clone, Copy, Debug)]
struct RecordSet<'a> {
    qtype: u16,
    /// `answer` holds bare addresses rather than records (see [`KIND_ADDRESSES`]).
    addresses: bool,
    rotates: bool,
    /// `answer` holds question-owned records without their fixed part (see
    /// [`KIND_QUESTION_OWNED`]), all with `ttl`.
    question_owned: bool,
    /// `additional` holds bare glue (see [`KIND_BARE_GLUE`]), all with `ttl`.
    bare_glue: bool,
    ttl: u32,
    answer_count: u16,
    answer: &'a [u8],
    additional: &'a [u8],
}

/// The name endings an entry's key leaves out. Nearly every name in the index ends in
/// `svc.<zone>`, `<zone>` or `in-addr.arpa`, which took 19, 15 and 14 bytes of its key: 1.4
/// MiB of the 7 MiB index on the benchmark cluster. An entry names its ending with a two-bit
/// code (0: none, the key is the whole name; `n`: the `n`th ending below).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KeySuffixes([Box<[u8]>; 3]);

impl KeySuffixes {
    /// The endings for the zone `zone` (lower-case wire format).
    pub(crate) fn for_zone(zone: &[u8]) -> Arc<Self> {
        let mut services = b"\x03svc".to_vec();
        services.extend_from_slice(zone);
        Arc::new(Self([
            services.into_boxed_slice(),
            Box::from(zone),
            Box::from(b"\x07in-addr\x04arpa\x00".as_slice()),
        ]))
    }

    fn get(&self, code: u8) -> &[u8] {
        match code {
            0 => &[],
            code => &self.0[usize::from(code) - 1],
        }
    }

    /// For a name ending in `svc.<zone>`, how many bytes come before that ending.
    pub(crate) fn before_services(&self, name: &[u8]) -> Option<usize> {
        match self.split(name) {
            (1, kept) => Some(kept),
            _ => None,
        }
    }

    /// The code of the longest ending `name` has (at a label boundary), and how many bytes
    /// of `name` come before it.
    fn split(&self, name: &[u8]) -> (u8, usize) {
        for (index, suffix) in self.0.iter().enumerate() {
            if let Some(kept) = name.len().checked_sub(suffix.len())
                && !suffix.is_empty()
                && name[kept..] == **suffix
                && is_label_boundary(name, kept)
            {
                return (index as u8 + 1, kept);
            }
        }
        (0, name.len())
    }
}

/// Whether a label of the wire name `name` starts at `offset`.
fn is_label_boundary(name: &[u8], offset: usize) -> bool {
    let mut position = 0;
    while position < offset {
        position += 1 + usize::from(name[position]);
    }
    position == offset
}

/// One name of a shard, borrowed from its arena (see [`Shard`] for the byte layout).
#[derive(Clone, Copy, Debug)]
struct Entry<'a> {
    /// The name without the ending its code names (see [`KeySuffixes`]).
    key: &'a [u8],
    apex: bool,
    external_target: Option<&'a [u8]>,
    set_count: usize,
    /// The sets (each a header and its bytes), followed by whatever comes after the entry.
    sets: &'a [u8],
}

impl<'a> Entry<'a> {
    /// Parses the entry starting at `arena[offset..]`.
    #[inline]
    fn at(arena: &'a [u8], offset: usize) -> Self {
        let (key_len, count_and_flags) = (arena[offset] as usize, arena[offset + 1]);
        let mut position = offset + 2;
        let key = &arena[position..position + key_len];
        position += key_len;
        let external_target = if count_and_flags & FLAG_EXTERNAL_TARGET != 0 {
            let len = arena[position] as usize;
            position += 1 + len;
            Some(&arena[position - len..position])
        } else {
            None
        };
        Self {
            key,
            apex: count_and_flags & FLAG_APEX != 0,
            external_target,
            set_count: (count_and_flags >> SET_COUNT_SHIFT) as usize,
            sets: &arena[position..],
        }
    }

    /// The key and ending code of the entry at `arena[offset..]`, without parsing the rest.
    #[inline]
    fn key_at(arena: &[u8], offset: usize) -> (&[u8], u8) {
        let key_len = arena[offset] as usize;
        (
            &arena[offset + 2..][..key_len],
            (arena[offset + 1] & SUFFIX_MASK) >> SUFFIX_SHIFT,
        )
    }

    /// The entry's sets, each with the bytes its header took.
    fn sets_with_header_len(&self) -> impl Iterator<Item = (RecordSet<'a>, usize)> + use<'a> {
        let mut data = self.sets;
        (0..self.set_count).map(move |_| {
            let before = data.len();
            let kind = data[0];
            data = &data[1..];
            let qtype = match kind & KIND_TYPE_MASK {
                0 => {
                    let qtype = u16::from_le_bytes([data[0], data[1]]);
                    data = &data[2..];
                    qtype
                }
                code => KIND_TYPES[code as usize - 1],
            };
            let answer_count = read_varint(&mut data) as u16;
            let ttl = if kind & KIND_QUESTION_OWNED != 0 {
                read_varint(&mut data)
            } else {
                0
            };
            let answer_len = read_varint(&mut data) as usize;
            let additional_len = read_varint(&mut data) as usize;
            let header_len = before - data.len();
            let (answer, rest) = data.split_at(answer_len);
            let (additional, rest) = rest.split_at(additional_len);
            data = rest;
            let set = RecordSet {
                qtype,
                addresses: kind & KIND_ADDRESSES != 0,
                rotates: kind & KIND_ROTATES != 0,
                question_owned: kind & KIND_QUESTION_OWNED != 0,
                bare_glue: kind & KIND_BARE_GLUE != 0,
                ttl,
                answer_count,
                answer,
                additional,
            };
            (set, header_len)
        })
    }

    fn sets(&self) -> impl Iterator<Item = RecordSet<'a>> + use<'a> {
        self.sets_with_header_len().map(|(set, _)| set)
    }

    /// Bytes the entry starting at arena offset `offset` takes, header included.
    fn encoded_len(&self, offset: usize, arena: &[u8]) -> usize {
        let set_bytes: usize = self
            .sets_with_header_len()
            .map(|(set, header_len)| header_len + set.answer.len() + set.additional.len())
            .sum();
        arena.len() - self.sets.len() - offset + set_bytes
    }
}

/// Appends `value` as a little-endian base-128 varint (7 bits a byte, high bit = more).
fn write_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
fn read_varint(data: &mut &[u8]) -> u32 {
    let mut value = 0u32;
    let mut shift = 0;
    loop {
        let byte = data[0];
        *data = &data[1..];
        value |= ((byte & 0x7F) as u32) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// A shard's open-addressed table. An occupied slot holds a tag from the hash's low bits
/// (shard and probe start come from the high bits) above the entry's arena offset plus one;
/// 0 is an empty slot. Shards whose arena offsets fit 16 bits (nearly all) use 4-byte slots
/// with a 16-bit tag, the rest 8-byte slots with a 32-bit tag.
enum Slots {
    Narrow(Box<[u32]>),
    Wide(Box<[u64]>),
}

impl Default for Slots {
    fn default() -> Self {
        Self::Narrow(Box::default())
    }
}

impl Slots {
    /// Largest arena offset plus one that narrow slots can hold.
    const NARROW_LIMIT: usize = u16::MAX as usize;

    fn len(&self) -> usize {
        match self {
            Self::Narrow(slots) => slots.len(),
            Self::Wide(slots) => slots.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Narrow(slots) => std::mem::size_of_val(&**slots),
            Self::Wide(slots) => std::mem::size_of_val(&**slots),
        }
    }

    /// The tag `hash` has in these slots.
    #[inline]
    fn tag(&self, hash: u64) -> u32 {
        match self {
            Self::Narrow(_) => hash as u16 as u32,
            Self::Wide(_) => hash as u32,
        }
    }

    /// The tag and arena offset plus one at `position` (offset 0: empty).
    #[inline]
    fn get(&self, position: usize) -> (u32, u32) {
        match self {
            Self::Narrow(slots) => (slots[position] >> 16, slots[position] & 0xFFFF),
            Self::Wide(slots) => ((slots[position] >> 32) as u32, slots[position] as u32),
        }
    }
}

/// Where the probe for `hash` starts in a table of `mask + 1` slots: bits 42.. of the hash,
/// disjoint from the tag and from [`shard_of`]'s bits.
#[inline]
fn probe_start(hash: u64, mask: usize) -> usize {
    (hash >> 42) as usize & mask
}

/// Where a query's name falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// In the cluster zone or a reverse zone; the zone apex starts at this offset in the name.
    Authoritative {
        zone_offset: usize,
    },
    Outside,
}

/// Size limits of the transport a query came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What the server should do with a query after [`Snapshot::respond`].
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Send `out[..len]`.
    Reply {
        len: usize,
        rcode: u16,
        answers: u16,
    },
    /// The name is outside the zone and forwarding was allowed: forward the query as is.
    Forward,
    /// `out[..len]` holds a CNAME answer for an ExternalName outside the zone; append the
    /// target's records of the asked type (from upstream), or send it as is.
    ChaseExternal { len: usize, target: Vec<u8> },
    /// Not a query: send nothing.
    Drop,
}

/// Counts shown by metrics and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotStats {
    pub names: usize,
    pub records: usize,
    /// Heap bytes of the packed index (arena, entries, sets, hash table).
    pub index_bytes: usize,
    pub build_duration: Duration,
}

/// Where the bytes of a snapshot's index go, by part (see [`Snapshot::index_breakdown`]).
#[derive(Clone, Debug, Default)]
pub struct IndexBreakdown {
    /// Part name → bytes, in the order the parts were first seen.
    pub parts: Vec<(String, usize)>,
}

impl IndexBreakdown {
    fn add(&mut self, part: &str, bytes: usize) {
        if bytes == 0 {
            return;
        }
        match self.parts.iter_mut().find(|(name, _)| name == part) {
            Some((_, total)) => *total += bytes,
            None => self.parts.push((part.to_owned(), bytes)),
        }
    }

    pub fn total(&self) -> usize {
        self.parts.iter().map(|(_, bytes)| bytes).sum()
    }
}

impl std::fmt::Display for IndexBreakdown {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = self.parts.clone();
        parts.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
        for (name, bytes) in parts {
            writeln!(
                formatter,
                "  {name:<24} {:>8.2} MiB",
                bytes as f64 / (1024.0 * 1024.0)
            )?;
        }
        write!(
            formatter,
            "  {:<24} {:>8.2} MiB",
            "total",
            self.total() as f64 / (1024.0 * 1024.0)
        )
    }
}

fn record_type_name(qtype: u16) -> String {
    match qtype {
        record_type::A => "A".to_owned(),
        record_type::AAAA => "AAAA".to_owned(),
        record_type::SRV => "SRV".to_owned(),
        record_type::PTR => "PTR".to_owned(),
        record_type::CNAME => "CNAME".to_owned(),
        record_type::TXT => "TXT".to_owned(),
        record_type::NS => "NS".to_owned(),
        other => format!("TYPE{other}"),
    }
}

/// How many shards the name table is split into (a power of two). A change re-packs only the
/// shards holding the names it touched, so a shard should be small enough to copy in a few
/// microseconds (≈100 names each on the benchmark cluster) yet few enough that publishing a
/// snapshot (cloning the vector of shard pointers) stays cheap.
pub const SHARD_COUNT: usize = 1024;

/// The shard of a name's hash. Bits 32.. are used because the shard's own hash table takes
/// its bucket from the low bits and its control byte from the top seven.
#[inline]
pub(crate) fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARD_COUNT - 1)
}

/// One immutable part of the name table: every name whose hash falls in it, packed into two
/// allocations. The **arena** holds the entries back to back; an entry is
///
/// ```text
/// key length (1) | set count << 4 | ending << 2 | flags (1) | key | [target length (1) | target]
///   | per set: kind (1) | [type (2) if the kind names none] | varint answer count
///              | [varint TTL if question-owned] | varint answer length
///              | varint additional length | answer bytes | additional bytes
/// ```
///
/// with no absolute offsets inside, so an unchanged entry is copied into the next shard with
/// one `memcpy`. The key is the lower-case wire name without the common ending that the
/// ending code names ([`KeySuffixes`], shared by every shard of a zone). The **slots** are an open-addressed, linearly probed table (load ≤ 3/4) of
/// [`Slots`]: a tag of the hash and the entry's offset. A hit reads one slot (one cache line,
/// usually the only one a miss reads too), then one neighbourhood of the arena: header, key
/// to compare, set headers and the answer itself.
#[derive(Default)]
pub(crate) struct Shard {
    slots: Slots,
    arena: Box<[u8]>,
    suffixes: Arc<KeySuffixes>,
    names: u32,
    records: usize,
}

impl Shard {
    /// Arena offsets of the entries whose slot tag matches `hash`, in probe order.
    #[inline]
    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        let tag = self.slots.tag(hash);
        let mut position = probe_start(hash, mask);
        let mut remaining = self.slots.len();
        std::iter::from_fn(move || {
            while remaining > 0 {
                let (slot_tag, offset) = self.slots.get(position);
                if offset == 0 {
                    return None;
                }
                position = (position + 1) & mask;
                remaining -= 1;
                if slot_tag == tag {
                    return Some(offset as usize - 1);
                }
            }
            None
        })
    }

    #[inline]
    fn find_offset(&self, hash: u64, name: &[u8]) -> Option<usize> {
        self.candidates(hash)
            .find(|&offset| self.is_entry_of(offset, name))
    }

    /// Whether the entry at `offset` is the one of `name`.
    #[inline]
    fn is_entry_of(&self, offset: usize, name: &[u8]) -> bool {
        let (key, suffix) = Entry::key_at(&self.arena, offset);
        let suffix = self.suffixes.get(suffix);
        name.len() == key.len() + suffix.len()
            && name[..key.len()] == *key
            && name[key.len()..] == *suffix
    }

    /// The whole name of the entry at `offset`.
    fn name_at(&self, offset: usize) -> Vec<u8> {
        let (key, suffix) = Entry::key_at(&self.arena, offset);
        [key, self.suffixes.get(suffix)].concat()
    }

    #[inline]
    fn find(&self, hash: u64, name: &[u8]) -> Option<Entry<'_>> {
        self.find_offset(hash, name)
            .map(|offset| Entry::at(&self.arena, offset))
    }

    fn offsets(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter_map(|position| {
            let (_, offset) = self.slots.get(position);
            (offset != 0).then(|| offset as usize - 1)
        })
    }

    /// Every name stored here.
    pub(crate) fn names(&self) -> impl Iterator<Item = Vec<u8>> {
        self.offsets().map(|offset| self.name_at(offset))
    }

    /// The names stored here under `hash`: one, barring a collision of the hash's 32-bit tag
    /// and probe start within this shard, in which case a few more (callers re-encode them,
    /// which is harmless).
    pub(crate) fn names_with_hash(&self, hash: u64) -> Vec<Vec<u8>> {
        self.candidates(hash)
            .map(|offset| self.name_at(offset))
            .collect()
    }

    /// Adds where this shard's bytes go to `breakdown`.
    fn account(&self, breakdown: &mut IndexBreakdown) {
        for offset in self.offsets() {
            let entry = Entry::at(&self.arena, offset);
            breakdown.add("keys", entry.key.len());
            breakdown.add(
                "external targets",
                entry.external_target.map_or(0, |target| 1 + target.len()),
            );
            breakdown.add("entry headers", 2);
            for (set, header_len) in entry.sets_with_header_len() {
                breakdown.add("set headers", header_len);
                let name = record_type_name(set.qtype);
                breakdown.add(&format!("{name} answers"), set.answer.len());
                breakdown.add(&format!("{name} additionals"), set.additional.len());
            }
        }
        breakdown.add("slot tables", self.slots.bytes());
    }

    /// The same shard in freshly allocated memory.
    fn repacked(&self) -> Self {
        Self {
            slots: match &self.slots {
                Slots::Narrow(slots) => Slots::Narrow(slots.clone()),
                Slots::Wide(slots) => Slots::Wide(slots.clone()),
            },
            arena: self.arena.clone(),
            suffixes: self.suffixes.clone(),
            names: self.names,
            records: self.records,
        }
    }

    fn index_bytes(&self) -> usize {
        self.arena.len() + self.slots.bytes()
    }
}

/// Packs entries into a new [`Shard`].
#[derive(Default)]
pub(crate) struct ShardBuilder {
    /// Each entry's hash and arena offset; the slot table is sized and filled in `finish`.
    placed: Vec<(u64, u32)>,
    arena: Vec<u8>,
    suffixes: Arc<KeySuffixes>,
    records: usize,
}

impl ShardBuilder {
    /// A builder whose keys leave out `suffixes` (every shard of a snapshot has the same).
    pub(crate) fn new(suffixes: Arc<KeySuffixes>) -> Self {
        Self {
            suffixes,
            ..Self::default()
        }
    }

    pub(crate) fn push(&mut self, hash: u64, name: &[u8], encoded: &EncodedEntry) {
        let offset = self.arena.len();
        let (suffix, kept) = self.suffixes.split(name);
        let mut flags = suffix << SUFFIX_SHIFT;
        if encoded.apex {
            flags |= FLAG_APEX;
        }
        if encoded.external_target.is_some() {
            flags |= FLAG_EXTERNAL_TARGET;
        }
        assert!(encoded.sets.len() < 1 << (8 - SET_COUNT_SHIFT));
        self.arena.extend_from_slice(&[
            u8::try_from(kept).expect("names are at most 255 bytes"),
            (encoded.sets.len() as u8) << SET_COUNT_SHIFT | flags,
        ]);
        self.arena.extend_from_slice(&name[..kept]);
        if let Some(target) = &encoded.external_target {
            self.arena
                .push(u8::try_from(target.len()).expect("names are at most 255 bytes"));
            self.arena.extend_from_slice(target);
        }
        for set in &encoded.sets {
            self.records += set.answer_count as usize;
            let mut kind = match KIND_TYPES.iter().position(|&known| known == set.qtype) {
                Some(index) => index as u8 + 1,
                None => 0,
            };
            if set.addresses {
                kind |= KIND_ADDRESSES;
            }
            if set.rotates {
                kind |= KIND_ROTATES;
            }
            let (answer, additional) = set.bytes.split_at(set.answer_len as usize);
            debug_assert!(
                set.addresses
                    || count_records(additional).min(u16::MAX as usize)
                        == set.additional_count as usize
            );
            let mut answer = Cow::Borrowed(answer);
            let mut additional = Cow::Borrowed(additional);
            let mut ttl = None;
            if !set.addresses
                && let Some((answer_ttl, compact)) = compact_question_owned(set.qtype, &answer)
            {
                kind |= KIND_QUESTION_OWNED;
                ttl = Some(answer_ttl);
                answer = Cow::Owned(compact);
                if let Some(glue) = compact_glue(&additional, answer_ttl) {
                    kind |= KIND_BARE_GLUE;
                    additional = Cow::Owned(glue);
                }
            }
            self.arena.push(kind);
            if kind & KIND_TYPE_MASK == 0 {
                self.arena.extend_from_slice(&set.qtype.to_le_bytes());
            }
            write_varint(&mut self.arena, set.answer_count as u32);
            if let Some(ttl) = ttl {
                write_varint(&mut self.arena, ttl);
            }
            write_varint(&mut self.arena, answer.len() as u32);
            write_varint(&mut self.arena, additional.len() as u32);
            self.arena.extend_from_slice(&answer);
            self.arena.extend_from_slice(&additional);
        }
        self.placed.push((hash, offset as u32));
    }

    /// Copies the entry of `name` from `old` unchanged (its bytes, not its encoding work).
    pub(crate) fn copy(&mut self, hash: u64, name: &[u8], old: &Shard) {
        debug_assert_eq!(self.suffixes, old.suffixes, "shards of one zone");
        let Some(offset) = old.find_offset(hash, name) else {
            return;
        };
        let entry = Entry::at(&old.arena, offset);
        self.records += entry
            .sets()
            .map(|set| set.answer_count as usize)
            .sum::<usize>();
        let len = entry.encoded_len(offset, &old.arena);
        self.placed.push((hash, self.arena.len() as u32));
        self.arena
            .extend_from_slice(&old.arena[offset..offset + len]);
    }

    pub(crate) fn finish(self) -> Shard {
        let capacity = if self.placed.is_empty() {
            0
        } else {
            (self.placed.len() + self.placed.len() / 3 + 1).next_power_of_two()
        };
        let mask = capacity.wrapping_sub(1);
        let free_position = |hash: u64, occupied: &dyn Fn(usize) -> bool| {
            let mut position = probe_start(hash, mask);
            while occupied(position) {
                position = (position + 1) & mask;
            }
            position
        };
        let slots = if self.arena.len() < Slots::NARROW_LIMIT {
            let mut slots = vec![0u32; capacity];
            for &(hash, offset) in &self.placed {
                let position = free_position(hash, &|position| slots[position] != 0);
                slots[position] = (hash as u16 as u32) << 16 | (offset + 1);
            }
            Slots::Narrow(slots.into_boxed_slice())
        } else {
            let mut slots = vec![0u64; capacity];
            for &(hash, offset) in &self.placed {
                let position = free_position(hash, &|position| slots[position] != 0);
                slots[position] = (hash as u32 as u64) << 32 | (offset as u64 + 1);
            }
            Slots::Wide(slots.into_boxed_slice())
        };
        Shard {
            slots,
            arena: self.arena.into_boxed_slice(),
            suffixes: self.suffixes,
            names: self.placed.len() as u32,
            records: self.records,
        }
    }
}

/// The fixed part of a record: owner, type, class, TTL and data length.
fn record_fixed_part(bytes: &[u8], at: usize) -> Option<(u16, u16, u16, u32, usize)> {
    let fixed = bytes.get(at..at + RECORD_FIXED_LEN)?;
    let field = |index: usize| u16::from_be_bytes([fixed[index], fixed[index + 1]]);
    let ttl = u32::from_be_bytes(fixed[6..10].try_into().ok()?);
    Some((field(0), field(2), field(4), ttl, field(10) as usize))
}

/// `answer` as [`KIND_QUESTION_OWNED`] records and their TTL, if every record is owned by the
/// question, of type `qtype`, class IN and one TTL.
fn compact_question_owned(qtype: u16, answer: &[u8]) -> Option<(u32, Vec<u8>)> {
    let question = u16::from_be_bytes(POINTER_TO_QUESTION);
    let mut compact = Vec::with_capacity(answer.len());
    let mut set_ttl = None;
    let mut offset = 0;
    while offset < answer.len() {
        let (owner, rtype, class, ttl, data_len) = record_fixed_part(answer, offset)?;
        if owner != question
            || rtype != qtype
            || class != CLASS_IN
            || *set_ttl.get_or_insert(ttl) != ttl
        {
            return None;
        }
        let data = answer.get(offset + RECORD_FIXED_LEN..offset + RECORD_FIXED_LEN + data_len)?;
        write_varint(&mut compact, data_len as u32);
        compact.extend_from_slice(data);
        offset += RECORD_FIXED_LEN + data_len;
    }
    Some((set_ttl?, compact))
}

/// `additional` as [`KIND_BARE_GLUE`] records, if every record is an A or AAAA owned by a
/// compression pointer, class IN, with `ttl`.
fn compact_glue(additional: &[u8], ttl: u32) -> Option<Vec<u8>> {
    let mut compact = Vec::with_capacity(additional.len());
    let mut offset = 0;
    while offset < additional.len() {
        let (owner, rtype, class, record_ttl, data_len) = record_fixed_part(additional, offset)?;
        let family = match (rtype, data_len) {
            (record_type::A, 4) => 0,
            (record_type::AAAA, 16) => BARE_GLUE_AAAA,
            _ => return None,
        };
        if owner & 0xC000 != 0xC000
            || owner & 0x3FFF >= 0x3FFF
            || class != CLASS_IN
            || record_ttl != ttl
        {
            return None;
        }
        compact.extend_from_slice(&(owner & 0x3FFF | family).to_be_bytes());
        compact.extend_from_slice(
            additional.get(offset + RECORD_FIXED_LEN..offset + RECORD_FIXED_LEN + data_len)?,
        );
        offset += RECORD_FIXED_LEN + data_len;
    }
    Some(compact)
}

/// How many records `bytes` holds (records whose owner is a compression pointer).
fn count_records(bytes: &[u8]) -> usize {
    let mut offset = 0;
    let mut count = 0;
    while offset < bytes.len() {
        offset = wire::pointer_owned_record_end(bytes, offset);
        count += 1;
    }
    count
}

/// An immutable, fully encoded view of the cluster zone.
///
/// The names are spread over [`SHARD_COUNT`] immutable [`Shard`]s by their keyed hash. A
/// snapshot is a vector of pointers to shards, so the next snapshot after a change shares
/// every shard the change did not touch (see [`crate::live`]).
pub struct Snapshot {
    shards: Vec<Arc<Shard>>,
    hasher: RandomState,
    zone: Box<[u8]>,
    pod_mode: PodMode,
    ttl: u32,
    negative_ttl: u32,
    serial: u32,
    synced: bool,
    built_at: SystemTime,
    stats: SnapshotStats,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Snapshot")
            .field("zone", &wire::display_name(&self.zone))
            .field("synced", &self.synced)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Snapshot {
    /// The snapshot served before the first full sync: the zone exists but every answer in
    /// it is SERVFAIL, so nothing is denied from an incomplete cache.
    pub fn unsynced(settings: &SnapshotSettings) -> Self {
        let mut snapshot = Self::from_shards(
            (0..SHARD_COUNT).map(|_| Arc::default()).collect(),
            RandomState::new(),
            settings,
        );
        snapshot.synced = false;
        snapshot
    }

    /// Builds the index from Kubernetes objects, from scratch (the oracle the incremental
    /// [`crate::live::LiveZone`] is tested against).
    pub fn build(state: &ClusterState, settings: &SnapshotSettings) -> Self {
        let started = std::time::Instant::now();
        let zone_records = records::collect(state, &settings.records);
        let hasher = RandomState::new();
        let suffixes = KeySuffixes::for_zone(&zone_records.zone);
        let mut builders: Vec<ShardBuilder> = (0..SHARD_COUNT)
            .map(|_| ShardBuilder::new(suffixes.clone()))
            .collect();
        for (name, records) in &zone_records.names {
            let encoder = Encoder {
                owner: name,
                zone: &zone_records.zone,
                names: &zone_records.names,
                ttl: settings.ttl,
            };
            let hash = hasher.hash_one(name.as_slice());
            builders[shard_of(hash)].push(hash, name, &encoder.entry(records));
        }
        let shards: Vec<Shard> = builders.into_iter().map(ShardBuilder::finish).collect();
        // The shards grew among the encoder's temporaries; once those are gone, fresh copies
        // pack into fewer pages than the originals would keep pinned.
        drop(zone_records);
        let shards = shards
            .into_iter()
            .map(|shard| Arc::new(shard.repacked()))
            .collect();
        let mut snapshot = Self::from_shards(shards, hasher, settings);
        snapshot.stats.build_duration = started.elapsed();
        snapshot
    }

    /// The same snapshot in freshly allocated memory. For a process that built it among
    /// objects it has since dropped (a zone file's parse): the copies pack into the pages the
    /// allocator has free now, and the originals' pages, pinned until now by the index
    /// alone among the dropped objects' holes, can go back to the operating system.
    pub fn repacked(&self) -> Self {
        Self {
            shards: self
                .shards
                .iter()
                .map(|shard| Arc::new(shard.repacked()))
                .collect(),
            hasher: self.hasher.clone(),
            zone: self.zone.clone(),
            ..*self
        }
    }

    /// A synced snapshot serving `shards`, whose names were hashed with `hasher`.
    pub(crate) fn from_shards(
        shards: Vec<Arc<Shard>>,
        hasher: RandomState,
        settings: &SnapshotSettings,
    ) -> Self {
        debug_assert_eq!(shards.len(), SHARD_COUNT);
        let built_at = SystemTime::now();
        let serial = built_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as u32)
            .unwrap_or(1);
        let zone = records::fixed_part(&settings.records).zone;
        let stats = SnapshotStats {
            names: shards.iter().map(|shard| shard.names as usize).sum(),
            records: shards.iter().map(|shard| shard.records).sum(),
            index_bytes: shards.iter().map(|shard| shard.index_bytes()).sum(),
            build_duration: Duration::ZERO,
        };
        Self {
            shards,
            hasher,
            zone: zone.into_boxed_slice(),
            pod_mode: settings.records.pod_mode,
            ttl: settings.ttl,
            negative_ttl: settings.negative_ttl,
            serial,
            synced: true,
            built_at,
            stats,
        }
    }

    /// Sets the duration reported by [`Snapshot::stats`].
    pub(crate) fn set_build_duration(&mut self, duration: Duration) {
        self.stats.build_duration = duration;
    }

    /// When this snapshot was built.
    pub fn built_at(&self) -> SystemTime {
        self.built_at
    }

    /// Whether this snapshot reflects a full sync with the API.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    pub fn stats(&self) -> SnapshotStats {
        self.stats
    }

    /// Where the bytes of the index go (keys, record bytes by type, descriptors, tables).
    pub fn index_breakdown(&self) -> IndexBreakdown {
        let mut breakdown = IndexBreakdown::default();
        for shard in &self.shards {
            shard.account(&mut breakdown);
        }
        breakdown
    }

    /// Every name in the index (lower-case wire format), in no particular order.
    pub fn names(&self) -> Vec<Vec<u8>> {
        self.shards.iter().flat_map(|shard| shard.names()).collect()
    }

    /// The shard of a lower-cased wire name and its entry there: one hash, one key comparison.
    #[inline]
    fn find(&self, name: &[u8]) -> Option<Entry<'_>> {
        let hash = self.hasher.hash_one(name);
        self.shards[shard_of(hash)].find(hash, name)
    }

    fn placement(&self, question: &Question) -> Placement {
        let name = question.name_lower();
        for zone in [
            &*self.zone,
            b"\x07in-addr\x04arpa\x00".as_slice(),
            b"\x03ip6\x04arpa\x00".as_slice(),
        ] {
            if let Some(zone_offset) = name.len().checked_sub(zone.len())
                && &name[zone_offset..] == zone
                && question.is_label_start(zone_offset)
            {
                return Placement::Authoritative { zone_offset };
            }
        }
        Placement::Outside
    }

    /// Answers one query packet into `out` (which must hold at least 65,535 bytes for TCP or
    /// the largest UDP reply, and never less than 512). `rotation` is any number that changes
    /// between queries; it picks where a rotating answer starts.
    pub fn respond(
        &self,
        packet: &[u8],
        out: &mut [u8],
        transport: Transport,
        rotation: usize,
        may_forward: bool,
    ) -> (Disposition, u16) {
        let question = match wire::parse_query(packet) {
            Ok(question) => question,
            Err(error @ ParseError::Respond { rcode, .. }) => {
                let len = wire::write_error_reply(out, error).unwrap_or(0);
                return (
                    Disposition::Reply {
                        len,
                        rcode,
                        answers: 0,
                    },
                    0,
                );
            }
            Err(ParseError::Drop) => return (Disposition::Drop, 0),
        };
        let qtype = question.qtype;
        (
            self.answer(&question, out, transport, rotation, may_forward),
            qtype,
        )
    }

    fn answer(
        &self,
        question: &Question,
        out: &mut [u8],
        transport: Transport,
        rotation: usize,
        may_forward: bool,
    ) -> Disposition {
        let mut reply = Reply::start(question, out, transport);
        if let Some(edns) = question.edns
            && edns.version != 0
        {
            return reply.finish_empty(response_code::BADVERS, false);
        }
        let zone_offset = match self.placement(question) {
            Placement::Outside if may_forward => return Disposition::Forward,
            Placement::Outside => return reply.finish_empty(response_code::REFUSED, false),
            Placement::Authoritative { zone_offset } => zone_offset,
        };
        if question.qclass != CLASS_IN
            || matches!(question.qtype, record_type::AXFR | record_type::IXFR)
        {
            return reply.finish_empty(response_code::REFUSED, true);
        }
        if !self.synced {
            return reply.finish_empty(response_code::SERVFAIL, false);
        }
        let negative_soa = SoaFields {
            ttl: self.negative_ttl,
            serial: self.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86_400,
            minimum: self.negative_ttl,
        };
        let Some(entry) = self.find(question.name_lower()) else {
            let pointer = u16::from_be_bytes(POINTER_TO_QUESTION);
            let position = reply.position;
            match (self.pod_address(question), question.qtype) {
                (Some(IpAddr::V4(v4)), record_type::A) => {
                    reply.position = wire::write_record(
                        reply.out,
                        position,
                        pointer,
                        record_type::A,
                        self.ttl,
                        &v4.octets(),
                    );
                    return reply.finish_answered(1, 0);
                }
                (Some(IpAddr::V6(v6)), record_type::AAAA) => {
                    reply.position = wire::write_record(
                        reply.out,
                        position,
                        pointer,
                        record_type::AAAA,
                        self.ttl,
                        &v6.octets(),
                    );
                    return reply.finish_answered(1, 0);
                }
                (Some(_), _) => {
                    return reply.finish_negative(
                        response_code::NOERROR,
                        zone_offset,
                        negative_soa,
                    );
                }
                (None, _) => {}
            }
            return reply.finish_negative(response_code::NXDOMAIN, zone_offset, negative_soa);
        };
        if entry.apex && question.qtype == record_type::SOA {
            let positive_soa = SoaFields {
                ttl: self.ttl.min(300),
                ..negative_soa
            };
            reply.position = wire::write_soa(reply.out, reply.position, zone_offset, positive_soa);
            return reply.finish_answered(1, 0);
        }
        let Some(set) = entry.sets().find(|set| set.qtype == question.qtype) else {
            return reply.finish_negative(response_code::NOERROR, zone_offset, negative_soa);
        };
        let disposition = reply.write_set(set, self.ttl, rotation);
        if let Disposition::Reply {
            len, answers: 1, ..
        } = disposition
            && let Some(target) = entry.external_target
            && matches!(question.qtype, record_type::A | record_type::AAAA)
        {
            return Disposition::ChaseExternal {
                len,
                target: target.to_vec(),
            };
        }
        disposition
    }

    /// The address named by an insecure-mode pod name (`a-b-c-d.<ns>.pod.<zone>` with an
    /// existing namespace), if the question is one.
    fn pod_address(&self, question: &Question) -> Option<IpAddr> {
        if self.pod_mode != PodMode::Insecure {
            return None;
        }
        let zone_labels = self.zone_label_count();
        if question.label_count() != zone_labels + 3
            || question.suffix_from(3) != &*self.zone
            || question.label(2) != b"pod"
            || self.find(question.suffix_from(1)).is_none()
        {
            return None;
        }
        records::parse_dashed_address(question.label(0))
    }

    fn zone_label_count(&self) -> usize {
        wire::label_offsets(&self.zone).len()
    }
}

/// An empty SERVFAIL reply to `question`, for a forwarded query that no upstream resolver
/// answered in time: the client learns at once that the name could not be resolved instead of
/// waiting out its own timeouts and retries (a glibc stub waits 5 s per try).
pub(crate) fn server_failure(question: &Question, transport: Transport) -> Vec<u8> {
    // Header, the question (a name of at most 255 bytes) and an OPT record fit in 512 bytes.
    let mut out = vec![0u8; wire::CLASSIC_UDP_LIMIT];
    let len = match Reply::start(question, &mut out, transport)
        .finish_empty(response_code::SERVFAIL, false)
    {
        Disposition::Reply { len, .. } => len,
        _ => unreachable!("an empty reply is always written"),
    };
    out.truncate(len);
    out
}

/// A reply being written into the caller's buffer.
struct Reply<'a> {
    question: &'a Question,
    out: &'a mut [u8],
    position: usize,
    /// Bytes usable for everything before the OPT record.
    budget: usize,
    truncated: bool,
}

impl<'a> Reply<'a> {
    fn start(question: &'a Question, out: &'a mut [u8], transport: Transport) -> Self {
        let limit = match transport {
            Transport::Udp => question
                .edns
                .map(|edns| edns.udp_payload as usize)
                .unwrap_or(wire::CLASSIC_UDP_LIMIT),
            Transport::Tcp => wire::MAX_MESSAGE_LEN,
        }
        .min(out.len());
        let opt_len = if question.edns.is_some() {
            OPT_RECORD_LEN
        } else {
            0
        };
        let position = wire::write_question(out, question);
        Self {
            question,
            out,
            position,
            budget: limit - opt_len,
            truncated: false,
        }
    }

    fn finish(self, rcode: u16, authoritative: bool, counts: [u16; 3]) -> Disposition {
        let question = self.question;
        let mut end = self.position;
        let mut additional = counts[2];
        if let Some(edns) = question.edns {
            end = wire::write_opt(self.out, end, edns, rcode, ADVERTISED_UDP_PAYLOAD);
            additional += 1;
        }
        wire::write_header(
            self.out,
            question.id,
            question.opcode,
            question.recursion_desired,
            question.checking_disabled,
            ResponseFlags {
                authoritative,
                truncated: self.truncated,
                recursion_available: false,
            },
            rcode,
            [1, counts[0], counts[1], additional],
        );
        Disposition::Reply {
            len: end,
            rcode,
            answers: counts[0],
        }
    }

    fn finish_empty(self, rcode: u16, authoritative: bool) -> Disposition {
        self.finish(rcode, authoritative, [0, 0, 0])
    }

    fn finish_answered(self, answers: u16, additional: u16) -> Disposition {
        self.finish(response_code::NOERROR, true, [answers, 0, additional])
    }

    fn finish_negative(mut self, rcode: u16, zone_offset: usize, soa: SoaFields) -> Disposition {
        self.position = wire::write_soa(self.out, self.position, zone_offset, soa);
        self.finish(rcode, true, [0, 1, 0])
    }

    /// Writes a record's owner, type, class IN, TTL and data length.
    fn write_fixed_part(&mut self, owner: u16, rtype: u16, ttl: u32, data_len: usize) {
        let fixed = &mut self.out[self.position..][..RECORD_FIXED_LEN];
        fixed[..2].copy_from_slice(&owner.to_be_bytes());
        fixed[2..4].copy_from_slice(&rtype.to_be_bytes());
        fixed[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
        fixed[6..10].copy_from_slice(&ttl.to_be_bytes());
        fixed[10..12].copy_from_slice(&(data_len as u16).to_be_bytes());
        self.position += RECORD_FIXED_LEN;
    }

    fn write_set(mut self, set: RecordSet<'_>, ttl: u32, rotation: usize) -> Disposition {
        let answer = set.answer;
        let additional = set.additional;
        let room = self.budget.saturating_sub(self.position);
        let mut answers = 0u16;
        if set.addresses {
            let address_len = if set.qtype == record_type::A { 4 } else { 16 };
            let count = answer.len() / address_len;
            let fitting = count.min(room / (RECORD_FIXED_LEN + address_len));
            let first = if set.rotates { rotation % count } else { 0 };
            let mut fixed = [0u8; RECORD_FIXED_LEN];
            fixed[..2].copy_from_slice(&POINTER_TO_QUESTION);
            fixed[2..4].copy_from_slice(&set.qtype.to_be_bytes());
            fixed[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
            fixed[6..10].copy_from_slice(&ttl.to_be_bytes());
            fixed[10..12].copy_from_slice(&(address_len as u16).to_be_bytes());
            // Addresses first..count, then 0..first.
            let (before_first, from_first) = answer.split_at(first * address_len);
            for address in from_first
                .chunks_exact(address_len)
                .chain(before_first.chunks_exact(address_len))
                .take(fitting)
            {
                self.out[self.position..][..fixed.len()].copy_from_slice(&fixed);
                self.position += fixed.len();
                self.out[self.position..][..address_len].copy_from_slice(address);
                self.position += address_len;
            }
            answers = fitting as u16;
            self.truncated = fitting < count;
        } else if set.question_owned {
            let question = u16::from_be_bytes(POINTER_TO_QUESTION);
            let mut records = answer;
            while !records.is_empty() {
                let data_len = read_varint(&mut records) as usize;
                if self.position + RECORD_FIXED_LEN + data_len > self.budget {
                    self.truncated = true;
                    break;
                }
                self.write_fixed_part(question, set.qtype, set.ttl, data_len);
                self.out[self.position..][..data_len].copy_from_slice(&records[..data_len]);
                self.position += data_len;
                records = &records[data_len..];
                answers += 1;
            }
        } else if answer.len() <= room {
            self.out[self.position..self.position + answer.len()].copy_from_slice(answer);
            self.position += answer.len();
            answers = set.answer_count;
        } else {
            let mut offset = 0;
            while offset < answer.len() {
                let end = wire::pointer_owned_record_end(answer, offset);
                if self.position + (end - offset) > self.budget {
                    break;
                }
                self.out[self.position..self.position + end - offset]
                    .copy_from_slice(&answer[offset..end]);
                self.position += end - offset;
                offset = end;
                answers += 1;
            }
            self.truncated = true;
        }
        let mut additional_written = 0u16;
        if !self.truncated && set.bare_glue {
            // Glue is optional: keep what fits, and never set TC for it.
            let mut records = additional;
            while records.len() >= 2 {
                let pointer = u16::from_be_bytes([records[0], records[1]]);
                let (rtype, address_len) = if pointer & BARE_GLUE_AAAA != 0 {
                    (record_type::AAAA, 16)
                } else {
                    (record_type::A, 4)
                };
                if self.position + RECORD_FIXED_LEN + address_len > self.budget {
                    break;
                }
                let owner = 0xC000 | (pointer & 0x3FFF);
                self.write_fixed_part(owner, rtype, set.ttl, address_len);
                self.out[self.position..][..address_len]
                    .copy_from_slice(&records[2..2 + address_len]);
                self.position += address_len;
                records = &records[2 + address_len..];
                additional_written += 1;
            }
        } else if !self.truncated {
            // Glue is optional: keep what fits, and never set TC for it.
            let mut offset = 0;
            while offset < additional.len() {
                let end = wire::pointer_owned_record_end(additional, offset);
                if self.position + (end - offset) > self.budget {
                    break;
                }
                self.out[self.position..self.position + end - offset]
                    .copy_from_slice(&additional[offset..end]);
                self.position += end - offset;
                offset = end;
                additional_written += 1;
            }
        }
        self.finish(
            response_code::NOERROR,
            true,
            [answers, 0, additional_written],
        )
    }
}

/// Encodes the records of one name, with names compressed against the question (the owner)
/// and against names written earlier in the same answer.
pub(crate) struct Encoder<'a> {
    pub(crate) owner: &'a [u8],
    /// The cluster zone, lower-case wire format.
    pub(crate) zone: &'a [u8],
    /// Where records of other names (SRV targets, alias targets, glue) are read.
    pub(crate) names: &'a dyn records::RecordLookup,
    pub(crate) ttl: u32,
}

/// Where name suffixes already sit in the message: suffix bytes → absolute offset.
struct KnownNames(HashMap<Vec<u8>, u16>);

impl KnownNames {
    fn for_owner(owner: &[u8]) -> Self {
        let mut known = HashMap::new();
        for offset in wire::label_offsets(owner) {
            known.insert(owner[offset..].to_vec(), (HEADER_LEN + offset) as u16);
        }
        Self(known)
    }

    /// Appends `name` to `out` (whose first byte sits at absolute offset `base`), compressed
    /// against known suffixes, and learns the suffixes it writes.
    fn write(&mut self, out: &mut Vec<u8>, base: usize, name: &[u8]) {
        let offsets = wire::label_offsets(name);
        for (index, &offset) in offsets.iter().enumerate() {
            if let Some(&pointer) = self.0.get(&name[offset..]) {
                let written_start = out.len();
                out.extend_from_slice(&name[..offset]);
                out.extend_from_slice(&(0xC000 | pointer).to_be_bytes());
                self.learn(name, &offsets[..index], base + written_start);
                return;
            }
        }
        let written_start = out.len();
        out.extend_from_slice(name);
        self.learn(name, &offsets, base + written_start);
    }

    fn learn(&mut self, name: &[u8], offsets: &[usize], absolute_start: usize) {
        for &offset in offsets {
            let absolute = absolute_start + offset;
            if absolute < 0x3FFF {
                self.0
                    .entry(name[offset..].to_vec())
                    .or_insert(absolute as u16);
            }
        }
    }

    fn offset_of(&self, name: &[u8]) -> Option<u16> {
        self.0.get(name).copied()
    }
}

impl Encoder<'_> {
    fn answer_base(&self) -> usize {
        HEADER_LEN + self.owner.len() + 4
    }

    pub(crate) fn entry(&self, records: &NameRecords) -> EncodedEntry {
        let mut sets = Vec::new();
        if let Some(target) = &records.alias {
            self.alias_sets(target, &mut sets);
            let in_zone = target.ends_with(self.zone);
            return EncodedEntry {
                apex: records.apex,
                sets,
                external_target: (!in_zone).then(|| target.clone()),
            };
        }
        let question = u16::from_be_bytes(POINTER_TO_QUESTION);
        if !records.ipv4.is_empty() {
            let bytes = records.ipv4.iter().flat_map(|address| address.octets());
            sets.push(address_set(
                record_type::A,
                records.ipv4.len(),
                bytes.collect(),
                records.rotate,
            ));
        }
        if !records.ipv6.is_empty() {
            let bytes = records.ipv6.iter().flat_map(|address| address.octets());
            sets.push(address_set(
                record_type::AAAA,
                records.ipv6.len(),
                bytes.collect(),
                records.rotate,
            ));
        }
        if !records.services.is_empty() {
            sets.push(self.service_set(records));
        }
        if !records.pointers.is_empty() {
            let mut known = KnownNames::for_owner(self.owner);
            let mut bytes = Vec::new();
            let base = self.answer_base();
            for target in &records.pointers {
                let mut rdata = Vec::new();
                known.write(&mut rdata, base + bytes.len() + 12, target);
                push_record(&mut bytes, question, record_type::PTR, self.ttl, &rdata);
            }
            sets.push(plain_set(
                record_type::PTR,
                records.pointers.len(),
                bytes,
                0,
                0,
            ));
        }
        if let Some(text) = &records.text {
            let mut rdata = vec![text.len() as u8];
            rdata.extend_from_slice(text.as_bytes());
            let mut bytes = Vec::new();
            push_record(
                &mut bytes,
                question,
                record_type::TXT,
                SCHEMA_VERSION_TTL,
                &rdata,
            );
            sets.push(plain_set(record_type::TXT, 1, bytes, 0, 0));
        }
        if records.apex {
            sets.push(self.nameserver_set());
        }
        EncodedEntry {
            apex: records.apex,
            sets,
            external_target: None,
        }
    }

    fn service_set(&self, records: &NameRecords) -> EncodedSet {
        let question = u16::from_be_bytes(POINTER_TO_QUESTION);
        let mut known = KnownNames::for_owner(self.owner);
        let base = self.answer_base();
        let weight = (100 / records.services.len()).max(1) as u16;
        let mut bytes = Vec::new();
        let mut targets: Vec<&[u8]> = Vec::new();
        for record in &records.services {
            let mut rdata = Vec::with_capacity(6 + record.target.len());
            rdata.extend_from_slice(&0u16.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&record.port.to_be_bytes());
            known.write(&mut rdata, base + bytes.len() + 12, &record.target);
            push_record(&mut bytes, question, record_type::SRV, self.ttl, &rdata);
            if !targets.contains(&record.target.as_slice()) {
                targets.push(&record.target);
            }
        }
        let answer_len = bytes.len();
        let mut additional_count = 0;
        for target in targets {
            let (Some(pointer), Some(target_records)) =
                (known.offset_of(target), self.names.lookup(target))
            else {
                continue;
            };
            for address in &target_records.ipv4 {
                push_record(
                    &mut bytes,
                    pointer | 0xC000,
                    record_type::A,
                    self.ttl,
                    &address.octets(),
                );
                additional_count += 1;
            }
            for address in &target_records.ipv6 {
                push_record(
                    &mut bytes,
                    pointer | 0xC000,
                    record_type::AAAA,
                    self.ttl,
                    &address.octets(),
                );
                additional_count += 1;
            }
        }
        plain_set(
            record_type::SRV,
            records.services.len(),
            bytes,
            answer_len,
            additional_count,
        )
    }

    fn nameserver_set(&self) -> EncodedSet {
        let question = u16::from_be_bytes(POINTER_TO_QUESTION);
        let mut rdata = b"\x02ns\x03dns".to_vec();
        rdata.extend_from_slice(&question.to_be_bytes());
        let mut bytes = Vec::new();
        push_record(&mut bytes, question, record_type::NS, self.ttl, &rdata);
        let answer_len = bytes.len();
        let target_pointer = (self.answer_base() + 12) as u16 | 0xC000;
        let mut additional_count = 0;
        let mut glue_name = b"\x02ns\x03dns".to_vec();
        glue_name.extend_from_slice(self.zone);
        // Only the cluster apex has glue; reverse apexes point into the cluster zone's name.
        if self.owner == self.zone
            && let Some(glue) = self.names.lookup(&glue_name)
        {
            for address in &glue.ipv4 {
                push_record(
                    &mut bytes,
                    target_pointer,
                    record_type::A,
                    self.ttl,
                    &address.octets(),
                );
                additional_count += 1;
            }
            for address in &glue.ipv6 {
                push_record(
                    &mut bytes,
                    target_pointer,
                    record_type::AAAA,
                    self.ttl,
                    &address.octets(),
                );
                additional_count += 1;
            }
        }
        plain_set(record_type::NS, 1, bytes, answer_len, additional_count)
    }

    /// CNAME, plus for A and AAAA the chased in-zone records: each further alias is owned by a
    /// pointer to the previous CNAME's target, and the final addresses likewise.
    fn alias_sets(&self, first_target: &[u8], sets: &mut Vec<EncodedSet>) {
        let question = u16::from_be_bytes(POINTER_TO_QUESTION);
        let base = self.answer_base();
        let mut cname_only = Vec::new();
        let mut known = KnownNames::for_owner(self.owner);
        let mut rdata = Vec::new();
        known.write(&mut rdata, base + 12, first_target);
        push_record(
            &mut cname_only,
            question,
            record_type::CNAME,
            self.ttl,
            &rdata,
        );
        sets.push(plain_set(record_type::CNAME, 1, cname_only.clone(), 0, 0));

        for qtype in [record_type::A, record_type::AAAA] {
            let mut bytes = cname_only.clone();
            let mut count = 1;
            let mut known = KnownNames::for_owner(self.owner);
            let mut scratch = Vec::new();
            known.write(&mut scratch, base + 12, first_target);
            let mut target = first_target.to_vec();
            let mut owner_pointer = known.offset_of(&target).unwrap_or(0x3FFF);
            for _ in 0..MAX_ALIAS_CHAIN {
                let Some(records) = self.names.lookup(&target) else {
                    break;
                };
                if let Some(next) = &records.alias {
                    if next == &target || next.as_slice() == self.owner {
                        break;
                    }
                    let mut rdata = Vec::new();
                    known.write(&mut rdata, base + bytes.len() + 12, next);
                    push_record(
                        &mut bytes,
                        owner_pointer | 0xC000,
                        record_type::CNAME,
                        self.ttl,
                        &rdata,
                    );
                    count += 1;
                    target = next.clone();
                    owner_pointer = known.offset_of(&target).unwrap_or(0x3FFF);
                    continue;
                }
                if qtype == record_type::A {
                    for address in &records.ipv4 {
                        push_record(
                            &mut bytes,
                            owner_pointer | 0xC000,
                            qtype,
                            self.ttl,
                            &address.octets(),
                        );
                        count += 1;
                    }
                } else {
                    for address in &records.ipv6 {
                        push_record(
                            &mut bytes,
                            owner_pointer | 0xC000,
                            qtype,
                            self.ttl,
                            &address.octets(),
                        );
                        count += 1;
                    }
                }
                break;
            }
            sets.push(plain_set(qtype, count, bytes, 0, 0));
        }
    }
}

fn push_record(out: &mut Vec<u8>, owner_pointer: u16, rtype: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(&owner_pointer.to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// A set of bare addresses owned by the question: the records' fixed parts are written while
/// answering, which keeps 4 of every 16 bytes for A and 16 of 28 for AAAA.
fn address_set(qtype: u16, count: usize, bytes: Vec<u8>, rotate: bool) -> EncodedSet {
    EncodedSet {
        qtype,
        answer_count: count.min(u16::MAX as usize) as u16,
        additional_count: 0,
        addresses: true,
        rotates: rotate && count > 1,
        answer_len: bytes.len() as u32,
        bytes,
    }
}

/// A set with `answer_len` bytes of answer (0 = all of `bytes`) and the rest as additional.
fn plain_set(
    qtype: u16,
    count: usize,
    bytes: Vec<u8>,
    answer_len: usize,
    additional_count: usize,
) -> EncodedSet {
    let answer_len = if answer_len == 0 {
        bytes.len()
    } else {
        answer_len
    };
    EncodedSet {
        qtype,
        answer_count: count.min(u16::MAX as usize) as u16,
        additional_count: additional_count.min(u16::MAX as usize) as u16,
        addresses: false,
        rotates: false,
        answer_len: answer_len as u32,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RecordType;

    fn settings(pod_mode: PodMode) -> SnapshotSettings {
        let mut settings = SnapshotSettings::default();
        settings.records.pod_mode = pod_mode;
        settings
    }

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut packet = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.trim_end_matches('.').split('.') {
            packet.push(label.len() as u8);
            packet.extend_from_slice(label.as_bytes());
        }
        packet.push(0);
        packet.extend(qtype.to_be_bytes());
        packet.extend(CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            packet[11] = 1;
            packet.extend([0, 0, 41]);
            packet.extend(size.to_be_bytes());
            packet.extend([0, 0, 0, 0, 0, 0]);
        }
        packet
    }

    struct Asked {
        message: Message,
        disposition: Disposition,
    }

    fn ask_with(
        snapshot: &Snapshot,
        packet: &[u8],
        transport: Transport,
        rotation: usize,
    ) -> Asked {
        let mut out = vec![0u8; wire::MAX_MESSAGE_LEN];
        let (disposition, _) = snapshot.respond(packet, &mut out, transport, rotation, false);
        let len = match &disposition {
            Disposition::Reply { len, .. } | Disposition::ChaseExternal { len, .. } => *len,
            other => panic!("no reply: {other:?}"),
        };
        let message = Message::from_vec(&out[..len]).expect("hickory parses every reply");
        Asked {
            message,
            disposition,
        }
    }

    fn ask(snapshot: &Snapshot, name: &str, qtype: u16) -> Message {
        ask_with(snapshot, &query(name, qtype, None), Transport::Udp, 0).message
    }

    fn answers(message: &Message) -> Vec<String> {
        let mut texts: Vec<String> = message
            .answers
            .iter()
            .map(|record| format!("{} {}", record.record_type(), record.data))
            .collect();
        texts.sort();
        texts
    }

    fn example_snapshot() -> Snapshot {
        Snapshot::build(&example::cluster(), &settings(PodMode::Insecure))
    }

    #[test]
    fn a_repacked_snapshot_answers_every_name_as_the_original() {
        let original = example_snapshot();
        let repacked = original.repacked();
        assert_eq!(repacked.stats().names, original.stats().names);
        assert_eq!(repacked.serial, original.serial);
        let mut names = original.names();
        assert!(names.len() > 10, "the example has names to compare");
        names.push(b"\x07missing\x07default\x03svc\x07cluster\x05local\x00".to_vec());
        for name in names {
            let mut packet = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            packet.extend_from_slice(&name);
            packet.extend(record_type::ANY.to_be_bytes());
            packet.extend(CLASS_IN.to_be_bytes());
            for qtype in [record_type::A, record_type::SRV, record_type::PTR] {
                let length = packet.len();
                packet[length - 4..length - 2].copy_from_slice(&qtype.to_be_bytes());
                let reply = |snapshot: &Snapshot| {
                    let mut out = vec![0u8; wire::MAX_MESSAGE_LEN];
                    let (disposition, _) =
                        snapshot.respond(&packet, &mut out, Transport::Udp, 0, false);
                    let (Disposition::Reply { len, .. } | Disposition::ChaseExternal { len, .. }) =
                        disposition
                    else {
                        panic!("no reply: {disposition:?}");
                    };
                    out.truncate(len);
                    out
                };
                assert_eq!(reply(&repacked), reply(&original), "{name:?} type {qtype}");
            }
        }
    }

    #[test]
    fn cluster_ip_service() {
        let snapshot = example_snapshot();
        let reply = ask(&snapshot, "api.default.svc.cluster.local", record_type::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(answers(&reply), ["A 10.96.10.20"]);
        assert_eq!(reply.answers[0].ttl, 5);

        let nodata = ask(
            &snapshot,
            "api.default.svc.cluster.local",
            record_type::AAAA,
        );
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(nodata.authorities[0].name.to_string(), "cluster.local.");

        let srv = ask(
            &snapshot,
            "_http._tcp.api.default.svc.cluster.local",
            record_type::SRV,
        );
        assert_eq!(
            answers(&srv),
            ["SRV 0 100 80 api.default.svc.cluster.local."]
        );
        assert_eq!(srv.additionals[0].data.to_string(), "10.96.10.20");
        let wrong = ask(
            &snapshot,
            "_http._udp.api.default.svc.cluster.local",
            record_type::SRV,
        );
        assert_eq!(wrong.metadata.response_code, ResponseCode::NXDomain);

        let dual = ask(
            &snapshot,
            "dual.default.svc.cluster.local",
            record_type::AAAA,
        );
        assert_eq!(answers(&dual), ["AAAA fd00:10:96::1e"]);
        let ptr = ask(&snapshot, "20.10.96.10.in-addr.arpa", record_type::PTR);
        assert_eq!(answers(&ptr), ["PTR api.default.svc.cluster.local."]);
        let ptr6 = ask(
            &snapshot,
            "e.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
            record_type::PTR,
        );
        assert_eq!(answers(&ptr6), ["PTR dual.default.svc.cluster.local."]);
    }

    #[test]
    fn headless_service_rotates_and_deduplicates() {
        let snapshot = example_snapshot();
        let packet = query("nginx.default.svc.cluster.local", record_type::A, None);
        let first = ask_with(&snapshot, &packet, Transport::Udp, 0).message;
        let second = ask_with(&snapshot, &packet, Transport::Udp, 1).message;
        assert_eq!(
            answers(&first),
            ["A 10.244.1.10", "A 10.244.1.11", "A 10.244.1.12"]
        );
        assert_eq!(answers(&first), answers(&second));
        assert_ne!(first.answers[0].data, second.answers[0].data);

        let host = ask(
            &snapshot,
            "web-1.nginx.default.svc.cluster.local",
            record_type::AAAA,
        );
        assert_eq!(answers(&host), ["AAAA fd00:10:244:1::b"]);
        let missing = ask(
            &snapshot,
            "web-3.nginx.default.svc.cluster.local",
            record_type::A,
        );
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        let dashed = ask(
            &snapshot,
            "10-244-1-10.nginx.default.svc.cluster.local",
            record_type::A,
        );
        assert_eq!(dashed.metadata.response_code, ResponseCode::NXDomain);

        let srv = ask(
            &snapshot,
            "_web._tcp.nginx.default.svc.cluster.local",
            record_type::SRV,
        );
        assert_eq!(srv.answers.len(), 3);
        assert_eq!(srv.additionals.len(), 6, "A and AAAA of each target");

        let cache = ask(
            &snapshot,
            "_redis._tcp.cache.ns1.svc.cluster.local",
            record_type::SRV,
        );
        assert_eq!(
            answers(&cache),
            ["SRV 0 100 7379 cache-0.cache.ns1.svc.cluster.local."]
        );
        let idle = ask(&snapshot, "idle.ns1.svc.cluster.local", record_type::A);
        assert_eq!(idle.metadata.response_code, ResponseCode::NXDomain);
        let db = ask(&snapshot, "db.ns1.svc.cluster.local", record_type::A);
        assert_eq!(db.answers.len(), 3);
    }

    #[test]
    fn truncation_and_tcp() {
        let snapshot = example_snapshot();
        let name = "big.ns1.svc.cluster.local";
        let classic = ask_with(
            &snapshot,
            &query(name, record_type::A, None),
            Transport::Udp,
            3,
        );
        assert!(classic.message.metadata.truncation);
        assert_eq!(classic.message.answers.len(), 29);
        let edns = ask_with(
            &snapshot,
            &query(name, record_type::A, Some(1232)),
            Transport::Udp,
            3,
        );
        assert!(edns.message.metadata.truncation);
        assert!(edns.message.answers.len() > 29);
        let tcp = ask_with(
            &snapshot,
            &query(name, record_type::A, None),
            Transport::Tcp,
            3,
        );
        assert!(!tcp.message.metadata.truncation);
        assert_eq!(tcp.message.answers.len(), 1000);
        assert!(matches!(
            tcp.disposition,
            Disposition::Reply { answers: 1000, .. }
        ));
    }

    #[test]
    fn case_is_preserved() {
        let snapshot = example_snapshot();
        let reply = ask(&snapshot, "API.Default.SVC.cluster.LOCAL", record_type::A);
        assert_eq!(
            reply.answers[0].name.to_string(),
            "API.Default.SVC.cluster.LOCAL."
        );
        let negative = ask(&snapshot, "NOPE.default.svc.Cluster.Local", record_type::A);
        assert_eq!(negative.authorities[0].name.to_string(), "Cluster.Local.");
    }

    #[test]
    fn external_names() {
        let snapshot = example_snapshot();
        let cname = ask(
            &snapshot,
            "ext.default.svc.cluster.local",
            record_type::CNAME,
        );
        assert_eq!(answers(&cname), ["CNAME www.example.com."]);
        let packet = query("ext.default.svc.cluster.local", record_type::A, None);
        let chased = ask_with(&snapshot, &packet, Transport::Udp, 0);
        assert!(matches!(
            chased.disposition,
            Disposition::ChaseExternal { .. }
        ));
        let in_zone = ask(&snapshot, "to-api.ns1.svc.cluster.local", record_type::A);
        assert_eq!(
            answers(&in_zone),
            ["A 10.96.10.20", "CNAME api.default.svc.cluster.local."]
        );
        assert_eq!(
            in_zone.answers[1].name.to_string(),
            "api.default.svc.cluster.local."
        );
        for name in [
            "ext-ip.default.svc.cluster.local",
            "www.google.com.default.svc.cluster.local",
            "foo.ext.default.svc.cluster.local",
        ] {
            let reply = ask(&snapshot, name, record_type::A);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
        let srv = ask(&snapshot, "ext.default.svc.cluster.local", record_type::SRV);
        assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
        assert!(srv.answers.is_empty());
    }

    #[test]
    fn apex_version_and_negative_answers() {
        let snapshot = example_snapshot();
        let soa = ask(&snapshot, "cluster.local", record_type::SOA);
        assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
        let ns = ask(&snapshot, "cluster.local", record_type::NS);
        assert_eq!(answers(&ns), ["NS ns.dns.cluster.local."]);
        assert_eq!(ns.additionals[0].data.to_string(), "10.96.0.10");
        let version = ask(&snapshot, "dns-version.cluster.local", record_type::TXT);
        assert_eq!(answers(&version), ["TXT 1.1.0"]);
        for (name, qtype) in [
            ("dns-version.cluster.local", record_type::A),
            ("cluster.local", record_type::TXT),
            ("svc.cluster.local", record_type::A),
            ("ns1.svc.cluster.local", record_type::A),
            ("api.default.svc.cluster.local", record_type::ANY),
            ("_tcp.api.default.svc.cluster.local", record_type::SRV),
        ] {
            let reply = ask(&snapshot, name, qtype);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{name}"
            );
            assert!(reply.answers.is_empty(), "{name}");
            assert_eq!(reply.authorities.len(), 1, "{name}");
        }
        for name in ["ns2.svc.cluster.local", "nope.default.svc.cluster.local"] {
            let reply = ask(&snapshot, name, record_type::SOA);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name}"
            );
        }
    }

    #[test]
    fn keys_leave_out_the_zone_endings_and_lookups_still_match_whole_names() {
        let zone = wire::encode_name("cluster.local").unwrap();
        let suffixes = KeySuffixes::for_zone(&zone);
        let name = |text: &str| wire::encode_name(text).unwrap();
        // (name, ending code, bytes kept)
        let cases = [
            ("web.default.svc.cluster.local", 1, 12),
            ("svc.cluster.local", 1, 0),
            ("default.pod.cluster.local", 2, 12),
            ("cluster.local", 2, 0),
            // "xsvc" ends in the bytes of "svc" but is one label: only the zone is left out.
            ("xsvc.cluster.local", 2, 5),
            ("1.0.0.10.in-addr.arpa", 3, 9),
            ("a.ip6.arpa", 0, 12),
            ("example.com", 0, 13),
        ];
        let hasher = RandomState::new();
        let mut builder = ShardBuilder::new(suffixes.clone());
        for (text, code, kept) in cases {
            assert_eq!(suffixes.split(&name(text)), (code, kept), "{text}");
            let encoded = EncodedEntry {
                apex: false,
                sets: vec![plain_set(99, 0, Vec::new(), 0, 0)],
                external_target: None,
            };
            builder.push(hasher.hash_one(name(text)), &name(text), &encoded);
        }
        let shard = builder.finish();
        let mut stored = shard.names().collect::<Vec<_>>();
        stored.sort();
        let mut expected = cases.map(|(text, _, _)| name(text)).to_vec();
        expected.sort();
        assert_eq!(stored, expected, "names come back whole");
        for (text, _, kept) in cases {
            let whole = name(text);
            let hash = hasher.hash_one(&whole);
            let entry = shard.find(hash, &whole).expect("stored name is found");
            assert_eq!(entry.key, &whole[..kept]);
            // The same key bytes with another ending (or none) are another name.
            let others = [
                whole[..kept].to_vec(),
                [&whole[..kept], b"\x03net\x00".as_slice()].concat(),
            ];
            for other in others.iter().filter(|other| **other != whole) {
                assert!(shard.find_offset(hash, other).is_none(), "{text}");
            }
        }
    }

    /// Builds a shard of `names` (one TXT-like set each, `big` of them over 64 KiB in total
    /// so the shard needs wide slots) and checks every lookup path, then copies it.
    fn check_shard(names: usize, set_len: usize) -> Shard {
        let hasher = RandomState::new();
        let name_of = |index: usize| wire::encode_name(&format!("n{index}.example")).unwrap();
        let mut builder = ShardBuilder::default();
        for index in 0..names {
            let mut bytes = Vec::new();
            push_record(&mut bytes, 0xC00C, 99, 7, &vec![index as u8; set_len]);
            let encoded = EncodedEntry {
                apex: index == 0,
                sets: vec![plain_set(99, 1, bytes, 0, 0)],
                external_target: None,
            };
            let name = name_of(index);
            builder.push(hasher.hash_one(&name), &name, &encoded);
        }
        let shard = builder.finish();
        assert_eq!(shard.names().count(), names);
        let mut copied = ShardBuilder::default();
        for index in 0..names {
            let name = name_of(index);
            let hash = hasher.hash_one(&name);
            let entry = shard.find(hash, &name).expect("stored name is found");
            assert_eq!(entry.key, name.as_slice());
            assert_eq!(entry.apex, index == 0);
            let set = entry.sets().next().unwrap();
            assert_eq!((set.qtype, set.answer_count), (99, 1));
            assert!(set.question_owned);
            assert_eq!(shard.names_with_hash(hash), vec![name.clone()]);
            assert!(shard.find(hash, b"\x07missing\x00").is_none());
            copied.copy(hash, &name, &shard);
        }
        let copied = copied.finish();
        assert_eq!(copied.arena.len(), shard.arena.len());
        assert_eq!(copied.records, names);
        shard
    }

    #[test]
    fn narrow_and_wide_slot_tables() {
        assert!(matches!(check_shard(200, 10).slots, Slots::Narrow(_)));
        assert!(matches!(check_shard(40, 2_000).slots, Slots::Wide(_)));
    }

    #[test]
    fn pod_modes() {
        let cluster = example::cluster();
        let name = "10-244-2-50.default.pod.cluster.local";
        let disabled = Snapshot::build(&cluster, &settings(PodMode::Disabled));
        assert_eq!(
            ask(&disabled, name, record_type::A).metadata.response_code,
            ResponseCode::NXDomain
        );
        let insecure = Snapshot::build(&cluster, &settings(PodMode::Insecure));
        assert_eq!(
            answers(&ask(&insecure, name, record_type::A)),
            ["A 10.244.2.50"]
        );
        assert_eq!(
            answers(&ask(
                &insecure,
                "1-2-3-4.ns1.pod.cluster.local",
                record_type::A
            )),
            ["A 1.2.3.4"]
        );
        let blah = ask(&insecure, "blah.default.pod.cluster.local", record_type::A);
        assert_eq!(blah.metadata.response_code, ResponseCode::NXDomain);
        let other_family = ask(&insecure, name, record_type::AAAA);
        assert_eq!(other_family.metadata.response_code, ResponseCode::NoError);
        assert!(other_family.answers.is_empty());
        let verified = Snapshot::build(&cluster, &settings(PodMode::Verified));
        assert_eq!(
            answers(&ask(&verified, name, record_type::A)),
            ["A 10.244.2.50"]
        );
        let wrong_namespace = ask(
            &verified,
            "10-244-2-50.ns1.pod.cluster.local",
            record_type::A,
        );
        assert_eq!(
            wrong_namespace.metadata.response_code,
            ResponseCode::NXDomain
        );
        let secondary = ask(
            &verified,
            "fd00-10-244-1--a.default.pod.cluster.local",
            record_type::AAAA,
        );
        assert_eq!(answers(&secondary), ["AAAA fd00:10:244:1::a"]);
    }

    #[test]
    fn unsynced_outside_and_malformed() {
        let unsynced = Snapshot::unsynced(&settings(PodMode::Disabled));
        let reply = ask(&unsynced, "api.default.svc.cluster.local", record_type::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        let snapshot = example_snapshot();
        let refused = ask(&snapshot, "www.example.com", record_type::A);
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        let mut out = vec![0u8; 512];
        let (forward, _) = snapshot.respond(
            &query("www.example.com", record_type::A, None),
            &mut out,
            Transport::Udp,
            0,
            true,
        );
        assert_eq!(forward, Disposition::Forward);
        let mut bad_version = query("api.default.svc.cluster.local", record_type::A, Some(1232));
        let opt_version = bad_version.len() - 5;
        bad_version[opt_version] = 1;
        let badvers = ask_with(&snapshot, &bad_version, Transport::Udp, 0).message;
        // Extended rcode 16 (hickory names it BADSIG when it reads the number alone).
        assert_eq!(
            u16::from(badvers.metadata.response_code),
            response_code::BADVERS
        );
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn check(snapshot: &Snapshot, packet: &[u8]) {
            for transport in [Transport::Udp, Transport::Tcp] {
                let mut out = vec![0u8; wire::MAX_MESSAGE_LEN];
                let (disposition, _) = snapshot.respond(packet, &mut out, transport, 7, false);
                if let Disposition::Reply { len, .. } | Disposition::ChaseExternal { len, .. } =
                    disposition
                {
                    let reply = Message::from_vec(&out[..len]);
                    assert!(reply.is_ok(), "unparseable reply {reply:?} to {packet:?}");
                    if transport == Transport::Udp {
                        assert!(len <= 4096);
                    }
                }
            }
        }

        fn shared_snapshot() -> &'static Snapshot {
            static SNAPSHOT: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();
            SNAPSHOT.get_or_init(example_snapshot)
        }

        fn seeds() -> Vec<Vec<u8>> {
            vec![
                query(
                    "nginx.default.svc.cluster.local",
                    record_type::A,
                    Some(1232),
                ),
                query(
                    "_web._tcp.nginx.default.svc.cluster.local",
                    record_type::SRV,
                    None,
                ),
                query("to-api.ns1.svc.cluster.local", record_type::A, None),
                query(
                    "10-244-2-50.default.pod.cluster.local",
                    record_type::A,
                    Some(512),
                ),
                query("big.ns1.svc.cluster.local", record_type::A, None),
                query("nope.svc.cluster.local", record_type::TXT, None),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn random_bytes(packet in proptest::collection::vec(any::<u8>(), 0..600)) {
                check(shared_snapshot(), &packet);
            }

            #[test]
            fn mutated_queries(
                seed in 0usize..6,
                edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
                cut in any::<u16>(),
            ) {
                let mut packet = seeds()[seed].clone();
                for (position, value) in edits {
                    let index = position as usize % packet.len();
                    packet[index] = value;
                }
                let keep = packet.len() - (cut as usize % 4).min(packet.len());
                packet.truncate(keep);
                check(shared_snapshot(), &packet);
            }
        }
    }
}

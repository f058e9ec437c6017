//! Objects as the API server keeps them: whole JSON documents.
//!
//! The server stores exactly what the client sent (plus what the server sets), so fields it
//! does not model — a user's `volumes:` or `securityContext:` — come back unchanged. Typed views
//! (k8s-openapi) are used only to check a body's field types; the few fields the server reads
//! or sets are reached through the helpers here.
//!
//! # What a create costs
//!
//! Measured with the API benchmark's "handler alone" figure (`HOLLOW_BENCH_ONLY=creates`), a
//! 1.4 KB pod create spends its server CPU roughly as: handing the write to the store's writer
//! thread ~18%, parsing the body into a [`Value`] ~15%, the typed walk for unknown fields and
//! field types ~8%, validation ~8%, server fields and defaults ~8%, serialising (and dropping)
//! the tree ~9%, routing and axum ~5%. Most of it is allocation: every key and string of the
//! tree and of the typed walk is its own `String`, every object its own `BTreeMap` node.
//! Splicing the server's fields into the body's own bytes would spare only the serialising:
//! defaults reach into `spec.containers[*]`, and validation (`hollow_types::validation`
//! included) reads the tree. A cheaper create needs a borrowed document model end to end.

use std::io::Write as _;

use bytes::Bytes;
use hollow_store::{Encoder, Record, Revision};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// The `metadata` map of an object, created if missing.
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

pub fn name(object: &Value) -> Option<&str> {
    metadata_str(object, "name").filter(|name| !name.is_empty())
}

pub fn labels(object: &Value) -> std::collections::BTreeMap<String, String> {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .get("metadata")
        .and_then(|metadata| metadata.get("finalizers"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Looks up a dotted path such as `spec.nodeName` or `involvedObject.kind`.
pub fn field<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(object, |value, segment| value.get(segment))
}

/// A field as the string a field selector compares with.
pub fn field_string(object: &Value, path: &str) -> Option<String> {
    match field(object, path)? {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Parses a stored value.
pub fn decode(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::internal(format!("stored object is not JSON: {error}")))
}

/// Reads the stored object of a record.
pub fn from_record(record: &Record) -> ApiResult<Value> {
    decode(&record.value)
}

/// An [`Encoder`] that stamps `metadata.resourceVersion` with the write's revision and stores
/// the object as compact JSON.
///
/// The object is serialised here, on the request's thread; the store's single writer thread
/// only splices the revision in at the remembered offset, so it does no JSON work per write.
pub fn stamping_encoder(mut object: Value) -> Encoder {
    metadata_mut(&mut object).remove("resourceVersion");
    let (bytes, offset) = serialise_with_metadata_offset(&object);
    Box::new(move |_current: Option<&Record>, revision: Revision| {
        splice_resource_version(&bytes, offset, revision)
    })
}

/// Serialises an object whose `metadata` is a map, and returns the offset just after the
/// `{` that opens `metadata`.
fn serialise_with_metadata_offset(object: &Value) -> (Vec<u8>, usize) {
    let Value::Object(map) = object else {
        unreachable!("metadata_mut made the object a map");
    };
    // Most objects are a few kilobytes: one allocation, no regrowth.
    let mut bytes = Vec::with_capacity(4096);
    let mut offset = 0;
    bytes.push(b'{');
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            bytes.push(b',');
        }
        serde_json::to_writer(&mut bytes, key).expect("a key always serialises");
        bytes.push(b':');
        if key == "metadata" {
            debug_assert!(value.is_object(), "metadata_mut made metadata a map");
            // A map serialises starting with its `{`.
            offset = bytes.len() + 1;
        }
        serde_json::to_writer(&mut bytes, value).expect("a JSON value always serialises");
    }
    bytes.push(b'}');
    (bytes, offset)
}

/// `bytes` with `"resourceVersion":"<revision>"` inserted at `offset` (the start of metadata).
fn splice_resource_version(bytes: &[u8], offset: usize, revision: Revision) -> Bytes {
    let empty_metadata = bytes.get(offset) == Some(&b'}');
    let mut stamped = Vec::with_capacity(bytes.len() + 40);
    stamped.extend_from_slice(&bytes[..offset]);
    stamped.extend_from_slice(b"\"resourceVersion\":\"");
    // Runs on the store's writer thread, once per write: no temporary string.
    let _ = write!(stamped, "{revision}");
    stamped.push(b'"');
    if !empty_metadata {
        stamped.push(b',');
    }
    stamped.extend_from_slice(&bytes[offset..]);
    Bytes::from(stamped)
}

/// An [`Encoder`] for a delete: the object's last state, stamped with the deletion revision,
/// as kube-apiserver sends it in the `DELETED` event.
pub fn deletion_encoder() -> Encoder {
    Box::new(|current: Option<&Record>, revision: Revision| {
        let Some(current) = current else {
            return Bytes::new();
        };
        match serde_json::from_slice::<Value>(&current.value) {
            Ok(mut object) => {
                metadata_mut(&mut object).insert(
                    "resourceVersion".to_string(),
                    Value::String(revision.to_string()),
                );
                Bytes::from(serde_json::to_vec(&object).expect("a JSON value always serialises"))
            }
            Err(_) => current.value.clone(),
        }
    })
}

/// Current time as kube-apiserver writes timestamps (RFC 3339, seconds, `Z`).
///
/// Formatting a time is a few hundred nanoseconds and every create stamps one, so each thread
/// keeps the text of the last second it formatted.
pub fn now_rfc3339() -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = jiff::Timestamp::now();
    let now = now.round(jiff::Unit::Second).unwrap_or(now);
    let second = now.as_second();
    LAST.with_borrow_mut(|(last_second, text)| {
        if *last_second != second {
            *text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            *last_second = second;
        }
        text.clone()
    })
}

/// A new object's `metadata.uid`: a random (version 4) UUID.
///
/// The random bits come from a per-thread xoshiro256** generator seeded from the operating
/// system, rather than a `getrandom` system call per UUID as [`uuid::Uuid::new_v4`] makes.
/// UIDs need to be unique, not secret: 122 bits from a generator with 256 bits of seed and a
/// period of 2^256 - 1 do not repeat.
pub fn new_uid() -> String {
    thread_local! {
        static STATE: std::cell::Cell<[u64; 4]> = std::cell::Cell::new(seed());
    }
    fn seed() -> [u64; 4] {
        let low = uuid::Uuid::new_v4().as_u128();
        let high = uuid::Uuid::new_v4().as_u128();
        let state = [
            low as u64,
            (low >> 64) as u64,
            high as u64,
            (high >> 64) as u64,
        ];
        // xoshiro's one forbidden state; two OS-random UUIDs never make it, but be sure.
        if state == [0; 4] { [1, 2, 3, 4] } else { state }
    }
    fn next(state: &mut [u64; 4]) -> u64 {
        let result = state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = state[1] << 17;
        state[2] ^= state[0];
        state[3] ^= state[1];
        state[1] ^= state[2];
        state[0] ^= state[3];
        state[2] ^= shifted;
        state[3] = state[3].rotate_left(45);
        result
    }
    let random = STATE.with(|cell| {
        let mut state = cell.get();
        let bits = (u128::from(next(&mut state)) << 64) | u128::from(next(&mut state));
        cell.set(state);
        bits
    });
    let uid = uuid::Builder::from_random_bytes(random.to_le_bytes()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uid.hyphenated().encode_lower(&mut text).to_owned()
}

/// A random suffix for `generateName`, from the alphabet Kubernetes uses (no vowels, no
/// look-alike digits), so generated names never spell words.
pub fn random_suffix(length: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let more = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .chain(more.iter())
        .take(length)
        .map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_sets_the_revision_and_keeps_every_field() {
        let object =
            json!({"metadata":{"name":"a"},"spec":{"volumes":[{"name":"x","emptyDir":{}}]}});
        let bytes = stamping_encoder(object)(None, 42);
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored["metadata"]["resourceVersion"], "42");
        assert_eq!(stored["spec"]["volumes"][0]["emptyDir"], json!({}));
    }

    #[test]
    fn stamping_is_valid_json_whatever_the_metadata() {
        for object in [
            json!({"metadata":{}}),
            json!({"apiVersion":"v1","kind":"Event","involvedObject":{"metadata":{"x":1}},"metadata":{"name":"e","resourceVersion":"3"}}),
            json!({"spec":{"metadata":"text"}}),
        ] {
            let bytes = stamping_encoder(object.clone())(None, 17);
            let stored: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(stored["metadata"]["resourceVersion"], "17");
            let mut expected = object.clone();
            metadata_mut(&mut expected).insert("resourceVersion".into(), Value::from("17"));
            assert_eq!(stored, expected);
        }
    }

    #[test]
    fn fields_by_dotted_path() {
        let pod = json!({"spec":{"nodeName":"n1"},"status":{"phase":"Running"}});
        assert_eq!(field_string(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(field_string(&pod, "status.podIP"), None);
    }

    #[test]
    fn uids_are_version_4_uuids_and_differ() {
        let first = new_uid();
        let parsed = uuid::Uuid::parse_str(&first).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        let others: std::collections::HashSet<String> = (0..1000).map(|_| new_uid()).collect();
        assert_eq!(others.len(), 1000);
        assert!(!others.contains(&first));
    }

    #[test]
    fn timestamps_are_whole_seconds_in_utc() {
        let stamp = now_rfc3339();
        assert_eq!(stamp.len(), "2024-01-02T03:04:05Z".len(), "{stamp}");
        assert!(stamp.ends_with('Z'));
        assert!(stamp.parse::<jiff::Timestamp>().is_ok());
    }

    #[test]
    fn suffixes_use_the_safe_alphabet() {
        let suffix = random_suffix(5);
        assert_eq!(suffix.len(), 5);
        assert!(
            suffix
                .bytes()
                .all(|byte| b"bcdfghjklmnpqrstvwxz2456789".contains(&byte))
        );
    }
}

//! Decoding of `application/vnd.kubernetes.protobuf` request bodies into the JSON object model.
//!
//! kubectl ≥ 1.32 sends its `create <generator>` objects (`create deployment`, `create service
//! ...`, `create namespace`) as protobuf and does not retry with JSON when refused, so the server
//! has to read them. Everything downstream of request decoding works on JSON, so this module turns
//! the protobuf body into exactly the JSON a JSON client would have sent for the same object.
//!
//! # Layout
//!
//! * The body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope: `typeMeta`
//!   (apiVersion, kind) and `raw`, the object's own message ([`decode`]).
//! * `Reader` reads the protobuf wire format and skips fields it does not know, by wire type.
//! * The `schema` table describes, per message, each field's number, JSON name, value kind and
//!   cardinality; the decoder walks a message with its table (`decode_message`). Field numbers
//!   and JSON names follow the upstream `generated.proto` and Go `types.go` of k8s.io/api v0.32.
//!
//! # Zero values
//!
//! Go's protobuf encoder writes every non-pointer field, even when zero; its JSON encoder drops
//! zero scalars whose tag says `omitempty` but always writes non-pointer structs. The table marks
//! each scalar `Presence::OmitEmpty` (non-pointer, `omitempty`: a zero is dropped) or
//! `Presence::Keep` (a pointer, whose presence on the wire means "set", or a field without
//! `omitempty`). Messages are kept whenever they are on the wire, which mirrors the JSON encoder:
//! `strategy: {}`, `resources: {}` and `status: {}` appear in both forms, and a zero
//! `metav1.Time` becomes `null` as Go's `Time.MarshalJSON` writes it.
//!
//! # Coverage
//!
//! Roots: apps/v1 Deployment, StatefulSet, ReplicaSet; v1 Pod, Service, Namespace. Every message
//! they reach is in the table apart from the status sub-objects of conditions and container
//! statuses, ephemeral containers, managed fields and the in-tree cloud volume sources; fields
//! of those types are skipped like unknown fields.

use serde_json::{Map, Value};

/// The four bytes that start every Kubernetes protobuf body.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`: not a Kubernetes protobuf object.
    #[error("protobuf body does not start with the Kubernetes magic prefix \"k8s\\x00\"")]
    MissingMagic,
    /// The bytes break the protobuf wire format or a value is out of range.
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
    /// The envelope names a content encoding (compression) this server does not implement.
    #[error("protobuf body uses content encoding {0:?}, which this server does not support")]
    UnsupportedContentEncoding(String),
    /// A well-formed body for a kind this decoder has no table for.
    #[error(
        "this server cannot decode protobuf for {api_version:?} {kind:?}; send it as application/json"
    )]
    UnsupportedKind { api_version: String, kind: String },
}

impl ProtobufError {
    /// True when the body is fine but its kind is not covered: the caller answers 415
    /// Unsupported Media Type (every other variant is a 400 Bad Request).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            ProtobufError::UnsupportedKind { .. } | ProtobufError::UnsupportedContentEncoding(_)
        )
    }
}

fn malformed(what: impl Into<String>) -> ProtobufError {
    ProtobufError::Malformed(what.into())
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the object's JSON form,
/// `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = decode_envelope(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(
            unknown.content_encoding,
        ));
    }
    let Some(schema) = schema::root(&unknown.api_version, &unknown.kind) else {
        return Err(ProtobufError::UnsupportedKind {
            api_version: unknown.api_version,
            kind: unknown.kind,
        });
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(unknown.api_version));
    object.insert("kind".into(), Value::String(unknown.kind));
    decode_message(schema, unknown.raw, &mut object)?;
    Ok(Value::Object(object))
}

/// The parts of `runtime.Unknown` the server needs.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

fn decode_envelope(bytes: &[u8]) -> Result<Envelope<'_>, ProtobufError> {
    let mut envelope = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
    };
    let mut reader = Reader::new(bytes);
    while let Some((number, wire_type)) = reader.next_key()? {
        match (number, wire_type) {
            (1, WireType::LengthDelimited) => {
                let mut type_meta = Reader::new(reader.length_delimited()?);
                while let Some((number, wire_type)) = type_meta.next_key()? {
                    match (number, wire_type) {
                        (1, WireType::LengthDelimited) => {
                            envelope.api_version = type_meta.string("apiVersion")?
                        }
                        (2, WireType::LengthDelimited) => {
                            envelope.kind = type_meta.string("kind")?
                        }
                        _ => type_meta.skip(wire_type)?,
                    }
                }
            }
            (2, WireType::LengthDelimited) => envelope.raw = reader.length_delimited()?,
            (3, WireType::LengthDelimited) => {
                envelope.content_encoding = reader.string("contentEncoding")?
            }
            _ => reader.skip(wire_type)?,
        }
    }
    Ok(envelope)
}

/// The protobuf wire types; 3 and 4 (groups) are not used by Kubernetes and count as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

/// A cursor over protobuf bytes. Every read checks bounds, so malformed input is an error.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    fn is_done(&self) -> bool {
        self.position >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(malformed("truncated varint"));
            };
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    /// The next field key, or `None` at the end of the message.
    fn next_key(&mut self) -> Result<Option<(u32, WireType)>, ProtobufError> {
        if self.is_done() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|number| *number != 0)
            .ok_or_else(|| malformed(format!("invalid field number in key {key}")))?;
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            5 => WireType::Fixed32,
            other => return Err(malformed(format!("unsupported wire type {other}"))),
        };
        Ok(Some((number, wire_type)))
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| malformed("length runs past the end of the message"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], ProtobufError> {
        let length = self.varint()?;
        let length =
            usize::try_from(length).map_err(|_| malformed("length does not fit in memory"))?;
        self.take(length)
    }

    fn string(&mut self, field: &str) -> Result<String, ProtobufError> {
        let bytes = self.length_delimited()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| malformed(format!("field {field} is not valid UTF-8")))
    }

    fn skip(&mut self, wire_type: WireType) -> Result<(), ProtobufError> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::LengthDelimited => self.length_delimited().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }
}

/// What a field holds. `Time`, `IntOrString` and `Quantity` are messages on the wire but
/// scalars in JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int32,
    Int64,
    Bool,
    /// `metav1.Time`: `seconds=1`, `nanos=2`; JSON is RFC 3339 in UTC, `null` when zero.
    Time,
    /// `intstr.IntOrString`: `type=1` (0 int, 1 string), `intVal=2`, `strVal=3`.
    IntOrString,
    /// `resource.Quantity`: its canonical `string=1`.
    Quantity,
    Message(&'static Message),
}

/// Whether a zero scalar stays in the JSON form (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presence {
    OmitEmpty,
    Keep,
}

#[derive(Clone, Copy)]
enum Cardinality {
    Single(Presence),
    Repeated,
    /// `map<string, V>`: entries are messages with `key=1`, `value=2`.
    Map,
    /// A Go struct embedded with `json:",inline"`: a nested message on the wire whose fields
    /// sit in the parent object in JSON.
    Inline,
}

struct Field {
    number: u32,
    json_name: &'static str,
    kind: Kind,
    cardinality: Cardinality,
}

struct Message {
    name: &'static str,
    fields: &'static [Field],
}

impl Message {
    fn field(&'static self, number: u32) -> Option<&'static Field> {
        self.fields.iter().find(|field| field.number == number)
    }
}

/// Decodes `bytes` as `message`, adding its fields to `object` (proto semantics: a repeated
/// single field replaces, or for messages merges into, the earlier value).
fn decode_message(
    message: &'static Message,
    bytes: &[u8],
    object: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    let mut reader = Reader::new(bytes);
    while let Some((number, wire_type)) = reader.next_key()? {
        let Some(field) = message.field(number) else {
            reader.skip(wire_type)?;
            continue;
        };
        let context = FieldContext { message, field };
        match field.cardinality {
            Cardinality::Single(presence) => {
                if let Kind::Message(nested) = field.kind {
                    let bytes = context.expect_length_delimited(&mut reader, wire_type)?;
                    let entry = object
                        .entry(field.json_name)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    if let Value::Object(nested_object) = entry {
                        decode_message(nested, bytes, nested_object)?;
                    }
                    continue;
                }
                let value = context.scalar(field.kind, &mut reader, wire_type)?;
                if presence == Presence::OmitEmpty && is_zero(&value) {
                    object.remove(field.json_name);
                } else {
                    object.insert(field.json_name.to_owned(), value);
                }
            }
            Cardinality::Repeated => {
                let packed = wire_type == WireType::LengthDelimited
                    && matches!(field.kind, Kind::Int32 | Kind::Int64 | Kind::Bool);
                let mut values = Vec::new();
                if packed {
                    let mut packed_reader = Reader::new(reader.length_delimited()?);
                    while !packed_reader.is_done() {
                        values.push(context.scalar(
                            field.kind,
                            &mut packed_reader,
                            WireType::Varint,
                        )?);
                    }
                } else {
                    values.push(context.value(&mut reader, wire_type)?);
                }
                let entry = object
                    .entry(field.json_name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !entry.is_array() {
                    *entry = Value::Array(Vec::new());
                }
                if let Value::Array(array) = entry {
                    array.extend(values);
                }
            }
            Cardinality::Map => {
                let bytes = context.expect_length_delimited(&mut reader, wire_type)?;
                let (key, value) = context.map_entry(bytes)?;
                let entry = object
                    .entry(field.json_name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(map) = entry {
                    map.insert(key, value);
                }
            }
            Cardinality::Inline => {
                let Kind::Message(nested) = field.kind else {
                    return Err(context.error("an inline field must be a message"));
                };
                let bytes = context.expect_length_delimited(&mut reader, wire_type)?;
                decode_message(nested, bytes, object)?;
            }
        }
    }
    Ok(())
}

/// The field being decoded, for reading its values and naming it in errors.
struct FieldContext {
    message: &'static Message,
    field: &'static Field,
}

impl FieldContext {
    fn error(&self, problem: impl std::fmt::Display) -> ProtobufError {
        malformed(format!(
            "{}.{}: {problem}",
            self.message.name, self.field.json_name
        ))
    }

    fn expect_length_delimited<'a>(
        &self,
        reader: &mut Reader<'a>,
        wire_type: WireType,
    ) -> Result<&'a [u8], ProtobufError> {
        if wire_type != WireType::LengthDelimited {
            return Err(self.error(format!(
                "expected a length-delimited value, got {wire_type:?}"
            )));
        }
        reader.length_delimited()
    }

    /// One value of the field's kind, message or scalar, as JSON.
    fn value(&self, reader: &mut Reader<'_>, wire_type: WireType) -> Result<Value, ProtobufError> {
        match self.field.kind {
            Kind::Message(nested) => {
                let bytes = self.expect_length_delimited(reader, wire_type)?;
                let mut object = Map::new();
                decode_message(nested, bytes, &mut object)?;
                Ok(Value::Object(object))
            }
            kind => self.scalar(kind, reader, wire_type),
        }
    }

    fn scalar(
        &self,
        kind: Kind,
        reader: &mut Reader<'_>,
        wire_type: WireType,
    ) -> Result<Value, ProtobufError> {
        if matches!(kind, Kind::Int32 | Kind::Int64 | Kind::Bool) {
            if wire_type != WireType::Varint {
                return Err(self.error(format!("expected a varint, got {wire_type:?}")));
            }
            let raw = reader.varint()?;
            // Proto semantics: int32 and int64 are the varint's low bits, two's complement.
            return Ok(match kind {
                Kind::Int32 => Value::from(raw as i32),
                Kind::Int64 => Value::from(raw as i64),
                _ => Value::Bool(raw != 0),
            });
        }
        let bytes = self.expect_length_delimited(reader, wire_type)?;
        let decoded = match kind {
            Kind::Str => utf8(bytes).map(Value::String),
            Kind::Time => time(bytes),
            Kind::IntOrString => int_or_string(bytes),
            Kind::Quantity => quantity(bytes),
            _ => Err("a message where a scalar was expected".to_owned()),
        };
        decoded.map_err(|problem| self.error(problem))
    }

    /// A `map<string, V>` entry: `key=1`, `value=2`; a missing part is its zero value.
    fn map_entry(&self, bytes: &[u8]) -> Result<(String, Value), ProtobufError> {
        let mut key = String::new();
        let mut value = None;
        let mut reader = Reader::new(bytes);
        while let Some((number, wire_type)) = reader.next_key()? {
            match number {
                1 => {
                    let bytes = self.expect_length_delimited(&mut reader, wire_type)?;
                    key = utf8(bytes).map_err(|problem| self.error(problem))?;
                }
                2 => value = Some(self.value(&mut reader, wire_type)?),
                _ => reader.skip(wire_type)?,
            }
        }
        let value = match value {
            Some(value) => value,
            None => zero_value(self.field.kind),
        };
        Ok((key, value))
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not valid UTF-8".to_owned())
}

/// What an absent map value means in proto: the zero of its kind.
fn zero_value(kind: Kind) -> Value {
    match kind {
        Kind::Str | Kind::Quantity => Value::String(String::new()),
        Kind::Int32 | Kind::Int64 | Kind::IntOrString => Value::from(0),
        Kind::Bool => Value::Bool(false),
        Kind::Time => Value::Null,
        Kind::Message(_) => Value::Object(Map::new()),
    }
}

/// What JSON `omitempty` drops among the scalars.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_i64() == Some(0),
        Value::Bool(flag) => !flag,
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// Reads the varint and length-delimited fields of a small fixed message, keyed by number.
fn small_message_fields(bytes: &[u8]) -> Result<Vec<(u32, SmallValue<'_>)>, ProtobufError> {
    let mut fields = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((number, wire_type)) = reader.next_key()? {
        match wire_type {
            WireType::Varint => fields.push((number, SmallValue::Varint(reader.varint()?))),
            WireType::LengthDelimited => {
                fields.push((number, SmallValue::Bytes(reader.length_delimited()?)))
            }
            other => reader.skip(other)?,
        }
    }
    Ok(fields)
}

#[derive(Clone, Copy)]
enum SmallValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn time(bytes: &[u8]) -> Result<Value, String> {
    // Go encodes the zero time as an empty message and its JSON form as null; anything else,
    // even second 0, is a real instant.
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let mut seconds: i64 = 0;
    for (number, value) in small_message_fields(bytes).map_err(|error| error.to_string())? {
        if let (1, SmallValue::Varint(raw)) = (number, value) {
            seconds = raw as i64;
        }
    }
    // Go's JSON form has whole seconds, and so does its protobuf decoder: nanos are dropped.
    let timestamp = jiff::Timestamp::from_second(seconds)
        .map_err(|_| format!("time {seconds}s is out of range"))?;
    let year = timestamp.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(0..=9999).contains(&year) {
        return Err(format!("time {seconds}s is outside years 0-9999"));
    }
    Ok(Value::String(
        timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ))
}

fn int_or_string(bytes: &[u8]) -> Result<Value, String> {
    let mut kind = 0;
    let mut int_value: i32 = 0;
    let mut string_value = String::new();
    for (number, value) in small_message_fields(bytes).map_err(|error| error.to_string())? {
        match (number, value) {
            (1, SmallValue::Varint(raw)) => kind = raw as i64,
            (2, SmallValue::Varint(raw)) => int_value = raw as i32,
            (3, SmallValue::Bytes(bytes)) => string_value = utf8(bytes)?,
            _ => {}
        }
    }
    match kind {
        0 => Ok(Value::from(int_value)),
        1 => Ok(Value::String(string_value)),
        other => Err(format!(
            "IntOrString type {other} is neither 0 (int) nor 1 (string)"
        )),
    }
}

fn quantity(bytes: &[u8]) -> Result<Value, String> {
    let mut text = String::new();
    for (number, value) in small_message_fields(bytes).map_err(|error| error.to_string())? {
        if let (1, SmallValue::Bytes(bytes)) = (number, value) {
            text = utf8(bytes)?;
        }
    }
    Ok(Value::String(text))
}

/// The message tables. Field numbers come from k8s.io/api and k8s.io/apimachinery v0.32
/// `generated.proto`; JSON names and `Presence` from the Go struct tags and pointer-ness.
mod schema {
    use super::Cardinality::{Inline, Map, Repeated, Single};
    use super::Kind::{Bool, Int32, Int64, IntOrString, Message as Nested, Quantity, Str, Time};
    use super::{Field, Kind, Message, Presence};

    const KEEP: Presence = Presence::Keep;
    const OMIT_EMPTY: Presence = Presence::OmitEmpty;

    /// The message of an object the decoder covers, by its envelope's apiVersion and kind.
    pub(super) fn root(api_version: &str, kind: &str) -> Option<&'static Message> {
        match (api_version, kind) {
            ("apps/v1", "Deployment") => Some(&DEPLOYMENT),
            ("apps/v1", "StatefulSet") => Some(&STATEFUL_SET),
            ("apps/v1", "ReplicaSet") => Some(&REPLICA_SET),
            ("v1", "Pod") => Some(&POD),
            ("v1", "Service") => Some(&SERVICE),
            ("v1", "Namespace") => Some(&NAMESPACE),
            _ => None,
        }
    }

    const fn single(number: u32, json_name: &'static str, kind: Kind, presence: Presence) -> Field {
        Field {
            number,
            json_name,
            kind,
            cardinality: Single(presence),
        }
    }

    const fn repeated(number: u32, json_name: &'static str, kind: Kind) -> Field {
        Field {
            number,
            json_name,
            kind,
            cardinality: Repeated,
        }
    }

    const fn map(number: u32, json_name: &'static str, kind: Kind) -> Field {
        Field {
            number,
            json_name,
            kind,
            cardinality: Map,
        }
    }

    const fn inline(number: u32, message: &'static Message) -> Field {
        Field {
            number,
            json_name: "",
            kind: Nested(message),
            cardinality: Inline,
        }
    }

    static DEPLOYMENT: Message = Message {
        name: "Deployment",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&DEPLOYMENT_SPEC), KEEP),
            single(3, "status", Nested(&DEPLOYMENT_STATUS), KEEP),
        ],
    };
    static DEPLOYMENT_SPEC: Message = Message {
        name: "DeploymentSpec",
        fields: &[
            single(1, "replicas", Int32, KEEP),
            single(2, "selector", Nested(&LABEL_SELECTOR), KEEP),
            single(3, "template", Nested(&POD_TEMPLATE_SPEC), KEEP),
            single(4, "strategy", Nested(&DEPLOYMENT_STRATEGY), KEEP),
            single(5, "minReadySeconds", Int32, OMIT_EMPTY),
            single(6, "revisionHistoryLimit", Int32, KEEP),
            single(7, "paused", Bool, OMIT_EMPTY),
            single(9, "progressDeadlineSeconds", Int32, KEEP),
        ],
    };
    static DEPLOYMENT_STATUS: Message = Message {
        name: "DeploymentStatus",
        fields: &[
            single(1, "observedGeneration", Int64, OMIT_EMPTY),
            single(2, "replicas", Int32, OMIT_EMPTY),
            single(3, "updatedReplicas", Int32, OMIT_EMPTY),
            single(7, "readyReplicas", Int32, OMIT_EMPTY),
            single(4, "availableReplicas", Int32, OMIT_EMPTY),
            single(5, "unavailableReplicas", Int32, OMIT_EMPTY),
            single(8, "collisionCount", Int32, KEEP),
        ],
    };
    static DEPLOYMENT_STRATEGY: Message = Message {
        name: "DeploymentStrategy",
        fields: &[
            single(1, "type", Str, OMIT_EMPTY),
            single(2, "rollingUpdate", Nested(&ROLLING_UPDATE_DEPLOYMENT), KEEP),
        ],
    };
    static REPLICA_SET: Message = Message {
        name: "ReplicaSet",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&REPLICA_SET_SPEC), KEEP),
            single(3, "status", Nested(&REPLICA_SET_STATUS), KEEP),
        ],
    };
    static REPLICA_SET_SPEC: Message = Message {
        name: "ReplicaSetSpec",
        fields: &[
            single(1, "replicas", Int32, KEEP),
            single(4, "minReadySeconds", Int32, OMIT_EMPTY),
            single(2, "selector", Nested(&LABEL_SELECTOR), KEEP),
            single(3, "template", Nested(&POD_TEMPLATE_SPEC), KEEP),
        ],
    };
    static REPLICA_SET_STATUS: Message = Message {
        name: "ReplicaSetStatus",
        fields: &[
            single(1, "replicas", Int32, KEEP),
            single(2, "fullyLabeledReplicas", Int32, OMIT_EMPTY),
            single(4, "readyReplicas", Int32, OMIT_EMPTY),
            single(5, "availableReplicas", Int32, OMIT_EMPTY),
            single(3, "observedGeneration", Int64, OMIT_EMPTY),
        ],
    };
    static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
        name: "RollingUpdateDeployment",
        fields: &[
            single(1, "maxUnavailable", IntOrString, KEEP),
            single(2, "maxSurge", IntOrString, KEEP),
        ],
    };
    static ROLLING_UPDATE_STATEFUL_SET_STRATEGY: Message = Message {
        name: "RollingUpdateStatefulSetStrategy",
        fields: &[
            single(1, "partition", Int32, KEEP),
            single(2, "maxUnavailable", IntOrString, KEEP),
        ],
    };
    static STATEFUL_SET: Message = Message {
        name: "StatefulSet",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&STATEFUL_SET_SPEC), KEEP),
            single(3, "status", Nested(&STATEFUL_SET_STATUS), KEEP),
        ],
    };
    static STATEFUL_SET_ORDINALS: Message = Message {
        name: "StatefulSetOrdinals",
        fields: &[single(1, "start", Int32, KEEP)],
    };
    static STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY: Message = Message {
        name: "StatefulSetPersistentVolumeClaimRetentionPolicy",
        fields: &[
            single(1, "whenDeleted", Str, OMIT_EMPTY),
            single(2, "whenScaled", Str, OMIT_EMPTY),
        ],
    };
    static STATEFUL_SET_SPEC: Message = Message {
        name: "StatefulSetSpec",
        fields: &[
            single(1, "replicas", Int32, KEEP),
            single(2, "selector", Nested(&LABEL_SELECTOR), KEEP),
            single(3, "template", Nested(&POD_TEMPLATE_SPEC), KEEP),
            repeated(4, "volumeClaimTemplates", Nested(&PERSISTENT_VOLUME_CLAIM)),
            single(5, "serviceName", Str, KEEP),
            single(6, "podManagementPolicy", Str, OMIT_EMPTY),
            single(
                7,
                "updateStrategy",
                Nested(&STATEFUL_SET_UPDATE_STRATEGY),
                KEEP,
            ),
            single(8, "revisionHistoryLimit", Int32, KEEP),
            single(9, "minReadySeconds", Int32, OMIT_EMPTY),
            single(
                10,
                "persistentVolumeClaimRetentionPolicy",
                Nested(&STATEFUL_SET_PERSISTENT_VOLUME_CLAIM_RETENTION_POLICY),
                KEEP,
            ),
            single(11, "ordinals", Nested(&STATEFUL_SET_ORDINALS), KEEP),
        ],
    };
    static STATEFUL_SET_STATUS: Message = Message {
        name: "StatefulSetStatus",
        fields: &[
            single(1, "observedGeneration", Int64, OMIT_EMPTY),
            single(2, "replicas", Int32, KEEP),
            single(3, "readyReplicas", Int32, OMIT_EMPTY),
            single(4, "currentReplicas", Int32, OMIT_EMPTY),
            single(5, "updatedReplicas", Int32, OMIT_EMPTY),
            single(6, "currentRevision", Str, OMIT_EMPTY),
            single(7, "updateRevision", Str, OMIT_EMPTY),
            single(9, "collisionCount", Int32, KEEP),
            single(11, "availableReplicas", Int32, KEEP),
        ],
    };
    static STATEFUL_SET_UPDATE_STRATEGY: Message = Message {
        name: "StatefulSetUpdateStrategy",
        fields: &[
            single(1, "type", Str, OMIT_EMPTY),
            single(
                2,
                "rollingUpdate",
                Nested(&ROLLING_UPDATE_STATEFUL_SET_STRATEGY),
                KEEP,
            ),
        ],
    };
    static AFFINITY: Message = Message {
        name: "Affinity",
        fields: &[
            single(1, "nodeAffinity", Nested(&NODE_AFFINITY), KEEP),
            single(2, "podAffinity", Nested(&POD_AFFINITY), KEEP),
            single(3, "podAntiAffinity", Nested(&POD_ANTI_AFFINITY), KEEP),
        ],
    };
    static APP_ARMOR_PROFILE: Message = Message {
        name: "AppArmorProfile",
        fields: &[
            single(1, "type", Str, KEEP),
            single(2, "localhostProfile", Str, KEEP),
        ],
    };
    static CSI_VOLUME_SOURCE: Message = Message {
        name: "CSIVolumeSource",
        fields: &[
            single(1, "driver", Str, KEEP),
            single(2, "readOnly", Bool, KEEP),
            single(3, "fsType", Str, KEEP),
            map(4, "volumeAttributes", Str),
            single(
                5,
                "nodePublishSecretRef",
                Nested(&LOCAL_OBJECT_REFERENCE),
                KEEP,
            ),
        ],
    };
    static CAPABILITIES: Message = Message {
        name: "Capabilities",
        fields: &[repeated(1, "add", Str), repeated(2, "drop", Str)],
    };
    static CLIENT_IP_CONFIG: Message = Message {
        name: "ClientIPConfig",
        fields: &[single(1, "timeoutSeconds", Int32, KEEP)],
    };
    static CLUSTER_TRUST_BUNDLE_PROJECTION: Message = Message {
        name: "ClusterTrustBundleProjection",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "signerName", Str, KEEP),
            single(3, "labelSelector", Nested(&LABEL_SELECTOR), KEEP),
            single(5, "optional", Bool, KEEP),
            single(4, "path", Str, KEEP),
        ],
    };
    static CONFIG_MAP_ENV_SOURCE: Message = Message {
        name: "ConfigMapEnvSource",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            single(2, "optional", Bool, KEEP),
        ],
    };
    static CONFIG_MAP_KEY_SELECTOR: Message = Message {
        name: "ConfigMapKeySelector",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            single(2, "key", Str, KEEP),
            single(3, "optional", Bool, KEEP),
        ],
    };
    static CONFIG_MAP_PROJECTION: Message = Message {
        name: "ConfigMapProjection",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            repeated(2, "items", Nested(&KEY_TO_PATH)),
            single(4, "optional", Bool, KEEP),
        ],
    };
    static CONFIG_MAP_VOLUME_SOURCE: Message = Message {
        name: "ConfigMapVolumeSource",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            repeated(2, "items", Nested(&KEY_TO_PATH)),
            single(3, "defaultMode", Int32, KEEP),
            single(4, "optional", Bool, KEEP),
        ],
    };
    static CONTAINER: Message = Message {
        name: "Container",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "image", Str, OMIT_EMPTY),
            repeated(3, "command", Str),
            repeated(4, "args", Str),
            single(5, "workingDir", Str, OMIT_EMPTY),
            repeated(6, "ports", Nested(&CONTAINER_PORT)),
            repeated(19, "envFrom", Nested(&ENV_FROM_SOURCE)),
            repeated(7, "env", Nested(&ENV_VAR)),
            single(8, "resources", Nested(&RESOURCE_REQUIREMENTS), KEEP),
            repeated(23, "resizePolicy", Nested(&CONTAINER_RESIZE_POLICY)),
            single(24, "restartPolicy", Str, KEEP),
            repeated(9, "volumeMounts", Nested(&VOLUME_MOUNT)),
            repeated(21, "volumeDevices", Nested(&VOLUME_DEVICE)),
            single(10, "livenessProbe", Nested(&PROBE), KEEP),
            single(11, "readinessProbe", Nested(&PROBE), KEEP),
            single(22, "startupProbe", Nested(&PROBE), KEEP),
            single(12, "lifecycle", Nested(&LIFECYCLE), KEEP),
            single(13, "terminationMessagePath", Str, OMIT_EMPTY),
            single(20, "terminationMessagePolicy", Str, OMIT_EMPTY),
            single(14, "imagePullPolicy", Str, OMIT_EMPTY),
            single(15, "securityContext", Nested(&SECURITY_CONTEXT), KEEP),
            single(16, "stdin", Bool, OMIT_EMPTY),
            single(17, "stdinOnce", Bool, OMIT_EMPTY),
            single(18, "tty", Bool, OMIT_EMPTY),
        ],
    };
    static CONTAINER_PORT: Message = Message {
        name: "ContainerPort",
        fields: &[
            single(1, "name", Str, OMIT_EMPTY),
            single(2, "hostPort", Int32, OMIT_EMPTY),
            single(3, "containerPort", Int32, KEEP),
            single(4, "protocol", Str, OMIT_EMPTY),
            single(5, "hostIP", Str, OMIT_EMPTY),
        ],
    };
    static CONTAINER_RESIZE_POLICY: Message = Message {
        name: "ContainerResizePolicy",
        fields: &[
            single(1, "resourceName", Str, KEEP),
            single(2, "restartPolicy", Str, KEEP),
        ],
    };
    static DOWNWARD_API_PROJECTION: Message = Message {
        name: "DownwardAPIProjection",
        fields: &[repeated(1, "items", Nested(&DOWNWARD_API_VOLUME_FILE))],
    };
    static DOWNWARD_API_VOLUME_FILE: Message = Message {
        name: "DownwardAPIVolumeFile",
        fields: &[
            single(1, "path", Str, KEEP),
            single(2, "fieldRef", Nested(&OBJECT_FIELD_SELECTOR), KEEP),
            single(
                3,
                "resourceFieldRef",
                Nested(&RESOURCE_FIELD_SELECTOR),
                KEEP,
            ),
            single(4, "mode", Int32, KEEP),
        ],
    };
    static DOWNWARD_API_VOLUME_SOURCE: Message = Message {
        name: "DownwardAPIVolumeSource",
        fields: &[
            repeated(1, "items", Nested(&DOWNWARD_API_VOLUME_FILE)),
            single(2, "defaultMode", Int32, KEEP),
        ],
    };
    static EMPTY_DIR_VOLUME_SOURCE: Message = Message {
        name: "EmptyDirVolumeSource",
        fields: &[
            single(1, "medium", Str, OMIT_EMPTY),
            single(2, "sizeLimit", Quantity, KEEP),
        ],
    };
    static ENV_FROM_SOURCE: Message = Message {
        name: "EnvFromSource",
        fields: &[
            single(1, "prefix", Str, OMIT_EMPTY),
            single(2, "configMapRef", Nested(&CONFIG_MAP_ENV_SOURCE), KEEP),
            single(3, "secretRef", Nested(&SECRET_ENV_SOURCE), KEEP),
        ],
    };
    static ENV_VAR: Message = Message {
        name: "EnvVar",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "value", Str, OMIT_EMPTY),
            single(3, "valueFrom", Nested(&ENV_VAR_SOURCE), KEEP),
        ],
    };
    static ENV_VAR_SOURCE: Message = Message {
        name: "EnvVarSource",
        fields: &[
            single(1, "fieldRef", Nested(&OBJECT_FIELD_SELECTOR), KEEP),
            single(
                2,
                "resourceFieldRef",
                Nested(&RESOURCE_FIELD_SELECTOR),
                KEEP,
            ),
            single(3, "configMapKeyRef", Nested(&CONFIG_MAP_KEY_SELECTOR), KEEP),
            single(4, "secretKeyRef", Nested(&SECRET_KEY_SELECTOR), KEEP),
        ],
    };
    static EPHEMERAL_VOLUME_SOURCE: Message = Message {
        name: "EphemeralVolumeSource",
        fields: &[single(
            1,
            "volumeClaimTemplate",
            Nested(&PERSISTENT_VOLUME_CLAIM_TEMPLATE),
            KEEP,
        )],
    };
    static EXEC_ACTION: Message = Message {
        name: "ExecAction",
        fields: &[repeated(1, "command", Str)],
    };
    static GRPC_ACTION: Message = Message {
        name: "GRPCAction",
        fields: &[
            single(1, "port", Int32, KEEP),
            single(2, "service", Str, KEEP),
        ],
    };
    static HTTP_GET_ACTION: Message = Message {
        name: "HTTPGetAction",
        fields: &[
            single(1, "path", Str, OMIT_EMPTY),
            single(2, "port", IntOrString, KEEP),
            single(3, "host", Str, OMIT_EMPTY),
            single(4, "scheme", Str, OMIT_EMPTY),
            repeated(5, "httpHeaders", Nested(&HTTP_HEADER)),
        ],
    };
    static HTTP_HEADER: Message = Message {
        name: "HTTPHeader",
        fields: &[single(1, "name", Str, KEEP), single(2, "value", Str, KEEP)],
    };
    static HOST_ALIAS: Message = Message {
        name: "HostAlias",
        fields: &[single(1, "ip", Str, KEEP), repeated(2, "hostnames", Str)],
    };
    static HOST_PATH_VOLUME_SOURCE: Message = Message {
        name: "HostPathVolumeSource",
        fields: &[single(1, "path", Str, KEEP), single(2, "type", Str, KEEP)],
    };
    static IMAGE_VOLUME_SOURCE: Message = Message {
        name: "ImageVolumeSource",
        fields: &[
            single(1, "reference", Str, OMIT_EMPTY),
            single(2, "pullPolicy", Str, OMIT_EMPTY),
        ],
    };
    static KEY_TO_PATH: Message = Message {
        name: "KeyToPath",
        fields: &[
            single(1, "key", Str, KEEP),
            single(2, "path", Str, KEEP),
            single(3, "mode", Int32, KEEP),
        ],
    };
    static LIFECYCLE: Message = Message {
        name: "Lifecycle",
        fields: &[
            single(1, "postStart", Nested(&LIFECYCLE_HANDLER), KEEP),
            single(2, "preStop", Nested(&LIFECYCLE_HANDLER), KEEP),
        ],
    };
    static LIFECYCLE_HANDLER: Message = Message {
        name: "LifecycleHandler",
        fields: &[
            single(1, "exec", Nested(&EXEC_ACTION), KEEP),
            single(2, "httpGet", Nested(&HTTP_GET_ACTION), KEEP),
            single(3, "tcpSocket", Nested(&TCP_SOCKET_ACTION), KEEP),
            single(4, "sleep", Nested(&SLEEP_ACTION), KEEP),
        ],
    };
    static LOAD_BALANCER_STATUS: Message = Message {
        name: "LoadBalancerStatus",
        fields: &[],
    };
    static LOCAL_OBJECT_REFERENCE: Message = Message {
        name: "LocalObjectReference",
        fields: &[single(1, "name", Str, OMIT_EMPTY)],
    };
    static NFS_VOLUME_SOURCE: Message = Message {
        name: "NFSVolumeSource",
        fields: &[
            single(1, "server", Str, KEEP),
            single(2, "path", Str, KEEP),
            single(3, "readOnly", Bool, OMIT_EMPTY),
        ],
    };
    static NAMESPACE: Message = Message {
        name: "Namespace",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&NAMESPACE_SPEC), KEEP),
            single(3, "status", Nested(&NAMESPACE_STATUS), KEEP),
        ],
    };
    static NAMESPACE_SPEC: Message = Message {
        name: "NamespaceSpec",
        fields: &[repeated(1, "finalizers", Str)],
    };
    static NAMESPACE_STATUS: Message = Message {
        name: "NamespaceStatus",
        fields: &[single(1, "phase", Str, OMIT_EMPTY)],
    };
    static NODE_AFFINITY: Message = Message {
        name: "NodeAffinity",
        fields: &[
            single(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Nested(&NODE_SELECTOR),
                KEEP,
            ),
            repeated(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Nested(&PREFERRED_SCHEDULING_TERM),
            ),
        ],
    };
    static NODE_SELECTOR: Message = Message {
        name: "NodeSelector",
        fields: &[repeated(
            1,
            "nodeSelectorTerms",
            Nested(&NODE_SELECTOR_TERM),
        )],
    };
    static NODE_SELECTOR_REQUIREMENT: Message = Message {
        name: "NodeSelectorRequirement",
        fields: &[
            single(1, "key", Str, KEEP),
            single(2, "operator", Str, KEEP),
            repeated(3, "values", Str),
        ],
    };
    static NODE_SELECTOR_TERM: Message = Message {
        name: "NodeSelectorTerm",
        fields: &[
            repeated(1, "matchExpressions", Nested(&NODE_SELECTOR_REQUIREMENT)),
            repeated(2, "matchFields", Nested(&NODE_SELECTOR_REQUIREMENT)),
        ],
    };
    static OBJECT_FIELD_SELECTOR: Message = Message {
        name: "ObjectFieldSelector",
        fields: &[
            single(1, "apiVersion", Str, OMIT_EMPTY),
            single(2, "fieldPath", Str, KEEP),
        ],
    };
    static PERSISTENT_VOLUME_CLAIM: Message = Message {
        name: "PersistentVolumeClaim",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&PERSISTENT_VOLUME_CLAIM_SPEC), KEEP),
            single(3, "status", Nested(&PERSISTENT_VOLUME_CLAIM_STATUS), KEEP),
        ],
    };
    static PERSISTENT_VOLUME_CLAIM_SPEC: Message = Message {
        name: "PersistentVolumeClaimSpec",
        fields: &[
            repeated(1, "accessModes", Str),
            single(4, "selector", Nested(&LABEL_SELECTOR), KEEP),
            single(2, "resources", Nested(&VOLUME_RESOURCE_REQUIREMENTS), KEEP),
            single(3, "volumeName", Str, OMIT_EMPTY),
            single(5, "storageClassName", Str, KEEP),
            single(6, "volumeMode", Str, KEEP),
            single(7, "dataSource", Nested(&TYPED_LOCAL_OBJECT_REFERENCE), KEEP),
            single(8, "dataSourceRef", Nested(&TYPED_OBJECT_REFERENCE), KEEP),
            single(9, "volumeAttributesClassName", Str, KEEP),
        ],
    };
    static PERSISTENT_VOLUME_CLAIM_STATUS: Message = Message {
        name: "PersistentVolumeClaimStatus",
        fields: &[
            single(1, "phase", Str, OMIT_EMPTY),
            repeated(2, "accessModes", Str),
            map(3, "capacity", Quantity),
            map(5, "allocatedResources", Quantity),
            map(7, "allocatedResourceStatuses", Str),
            single(8, "currentVolumeAttributesClassName", Str, KEEP),
        ],
    };
    static PERSISTENT_VOLUME_CLAIM_TEMPLATE: Message = Message {
        name: "PersistentVolumeClaimTemplate",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&PERSISTENT_VOLUME_CLAIM_SPEC), KEEP),
        ],
    };
    static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message {
        name: "PersistentVolumeClaimVolumeSource",
        fields: &[
            single(1, "claimName", Str, KEEP),
            single(2, "readOnly", Bool, OMIT_EMPTY),
        ],
    };
    static POD: Message = Message {
        name: "Pod",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&POD_SPEC), KEEP),
            single(3, "status", Nested(&POD_STATUS), KEEP),
        ],
    };
    static POD_AFFINITY: Message = Message {
        name: "PodAffinity",
        fields: &[
            repeated(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Nested(&POD_AFFINITY_TERM),
            ),
            repeated(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Nested(&WEIGHTED_POD_AFFINITY_TERM),
            ),
        ],
    };
    static POD_AFFINITY_TERM: Message = Message {
        name: "PodAffinityTerm",
        fields: &[
            single(1, "labelSelector", Nested(&LABEL_SELECTOR), KEEP),
            repeated(2, "namespaces", Str),
            single(3, "topologyKey", Str, KEEP),
            single(4, "namespaceSelector", Nested(&LABEL_SELECTOR), KEEP),
            repeated(5, "matchLabelKeys", Str),
            repeated(6, "mismatchLabelKeys", Str),
        ],
    };
    static POD_ANTI_AFFINITY: Message = Message {
        name: "PodAntiAffinity",
        fields: &[
            repeated(
                1,
                "requiredDuringSchedulingIgnoredDuringExecution",
                Nested(&POD_AFFINITY_TERM),
            ),
            repeated(
                2,
                "preferredDuringSchedulingIgnoredDuringExecution",
                Nested(&WEIGHTED_POD_AFFINITY_TERM),
            ),
        ],
    };
    static POD_DNS_CONFIG: Message = Message {
        name: "PodDNSConfig",
        fields: &[
            repeated(1, "nameservers", Str),
            repeated(2, "searches", Str),
            repeated(3, "options", Nested(&POD_DNS_CONFIG_OPTION)),
        ],
    };
    static POD_DNS_CONFIG_OPTION: Message = Message {
        name: "PodDNSConfigOption",
        fields: &[
            single(1, "name", Str, OMIT_EMPTY),
            single(2, "value", Str, KEEP),
        ],
    };
    static POD_OS: Message = Message {
        name: "PodOS",
        fields: &[single(1, "name", Str, KEEP)],
    };
    static POD_READINESS_GATE: Message = Message {
        name: "PodReadinessGate",
        fields: &[single(1, "conditionType", Str, KEEP)],
    };
    static POD_RESOURCE_CLAIM: Message = Message {
        name: "PodResourceClaim",
        fields: &[
            single(1, "name", Str, KEEP),
            single(3, "resourceClaimName", Str, KEEP),
            single(4, "resourceClaimTemplateName", Str, KEEP),
        ],
    };
    static POD_SCHEDULING_GATE: Message = Message {
        name: "PodSchedulingGate",
        fields: &[single(1, "name", Str, KEEP)],
    };
    static POD_SECURITY_CONTEXT: Message = Message {
        name: "PodSecurityContext",
        fields: &[
            single(1, "seLinuxOptions", Nested(&SE_LINUX_OPTIONS), KEEP),
            single(
                8,
                "windowsOptions",
                Nested(&WINDOWS_SECURITY_CONTEXT_OPTIONS),
                KEEP,
            ),
            single(2, "runAsUser", Int64, KEEP),
            single(6, "runAsGroup", Int64, KEEP),
            single(3, "runAsNonRoot", Bool, KEEP),
            repeated(4, "supplementalGroups", Int64),
            single(12, "supplementalGroupsPolicy", Str, KEEP),
            single(5, "fsGroup", Int64, KEEP),
            repeated(7, "sysctls", Nested(&SYSCTL)),
            single(9, "fsGroupChangePolicy", Str, KEEP),
            single(10, "seccompProfile", Nested(&SECCOMP_PROFILE), KEEP),
            single(11, "appArmorProfile", Nested(&APP_ARMOR_PROFILE), KEEP),
            single(13, "seLinuxChangePolicy", Str, KEEP),
        ],
    };
    static POD_SPEC: Message = Message {
        name: "PodSpec",
        fields: &[
            repeated(1, "volumes", Nested(&VOLUME)),
            repeated(20, "initContainers", Nested(&CONTAINER)),
            repeated(2, "containers", Nested(&CONTAINER)),
            single(3, "restartPolicy", Str, OMIT_EMPTY),
            single(4, "terminationGracePeriodSeconds", Int64, KEEP),
            single(5, "activeDeadlineSeconds", Int64, KEEP),
            single(6, "dnsPolicy", Str, OMIT_EMPTY),
            map(7, "nodeSelector", Str),
            single(8, "serviceAccountName", Str, OMIT_EMPTY),
            single(9, "serviceAccount", Str, OMIT_EMPTY),
            single(21, "automountServiceAccountToken", Bool, KEEP),
            single(10, "nodeName", Str, OMIT_EMPTY),
            single(11, "hostNetwork", Bool, OMIT_EMPTY),
            single(12, "hostPID", Bool, OMIT_EMPTY),
            single(13, "hostIPC", Bool, OMIT_EMPTY),
            single(27, "shareProcessNamespace", Bool, KEEP),
            single(14, "securityContext", Nested(&POD_SECURITY_CONTEXT), KEEP),
            repeated(15, "imagePullSecrets", Nested(&LOCAL_OBJECT_REFERENCE)),
            single(16, "hostname", Str, OMIT_EMPTY),
            single(17, "subdomain", Str, OMIT_EMPTY),
            single(18, "affinity", Nested(&AFFINITY), KEEP),
            single(19, "schedulerName", Str, OMIT_EMPTY),
            repeated(22, "tolerations", Nested(&TOLERATION)),
            repeated(23, "hostAliases", Nested(&HOST_ALIAS)),
            single(24, "priorityClassName", Str, OMIT_EMPTY),
            single(25, "priority", Int32, KEEP),
            single(26, "dnsConfig", Nested(&POD_DNS_CONFIG), KEEP),
            repeated(28, "readinessGates", Nested(&POD_READINESS_GATE)),
            single(29, "runtimeClassName", Str, KEEP),
            single(30, "enableServiceLinks", Bool, KEEP),
            single(31, "preemptionPolicy", Str, KEEP),
            map(32, "overhead", Quantity),
            repeated(
                33,
                "topologySpreadConstraints",
                Nested(&TOPOLOGY_SPREAD_CONSTRAINT),
            ),
            single(35, "setHostnameAsFQDN", Bool, KEEP),
            single(36, "os", Nested(&POD_OS), KEEP),
            single(37, "hostUsers", Bool, KEEP),
            repeated(38, "schedulingGates", Nested(&POD_SCHEDULING_GATE)),
            repeated(39, "resourceClaims", Nested(&POD_RESOURCE_CLAIM)),
            single(40, "resources", Nested(&RESOURCE_REQUIREMENTS), KEEP),
        ],
    };
    static POD_STATUS: Message = Message {
        name: "PodStatus",
        fields: &[
            single(1, "phase", Str, OMIT_EMPTY),
            single(3, "message", Str, OMIT_EMPTY),
            single(4, "reason", Str, OMIT_EMPTY),
            single(11, "nominatedNodeName", Str, OMIT_EMPTY),
            single(5, "hostIP", Str, OMIT_EMPTY),
            single(6, "podIP", Str, OMIT_EMPTY),
            single(7, "startTime", Time, KEEP),
            single(9, "qosClass", Str, OMIT_EMPTY),
            single(14, "resize", Str, OMIT_EMPTY),
        ],
    };
    static POD_TEMPLATE_SPEC: Message = Message {
        name: "PodTemplateSpec",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&POD_SPEC), KEEP),
        ],
    };
    static PREFERRED_SCHEDULING_TERM: Message = Message {
        name: "PreferredSchedulingTerm",
        fields: &[
            single(1, "weight", Int32, KEEP),
            single(2, "preference", Nested(&NODE_SELECTOR_TERM), KEEP),
        ],
    };
    static PROBE: Message = Message {
        name: "Probe",
        fields: &[
            inline(1, &PROBE_HANDLER),
            single(2, "initialDelaySeconds", Int32, OMIT_EMPTY),
            single(3, "timeoutSeconds", Int32, OMIT_EMPTY),
            single(4, "periodSeconds", Int32, OMIT_EMPTY),
            single(5, "successThreshold", Int32, OMIT_EMPTY),
            single(6, "failureThreshold", Int32, OMIT_EMPTY),
            single(7, "terminationGracePeriodSeconds", Int64, KEEP),
        ],
    };
    static PROBE_HANDLER: Message = Message {
        name: "ProbeHandler",
        fields: &[
            single(1, "exec", Nested(&EXEC_ACTION), KEEP),
            single(2, "httpGet", Nested(&HTTP_GET_ACTION), KEEP),
            single(3, "tcpSocket", Nested(&TCP_SOCKET_ACTION), KEEP),
            single(4, "grpc", Nested(&GRPC_ACTION), KEEP),
        ],
    };
    static PROJECTED_VOLUME_SOURCE: Message = Message {
        name: "ProjectedVolumeSource",
        fields: &[
            repeated(1, "sources", Nested(&VOLUME_PROJECTION)),
            single(2, "defaultMode", Int32, KEEP),
        ],
    };
    static RESOURCE_CLAIM: Message = Message {
        name: "ResourceClaim",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "request", Str, OMIT_EMPTY),
        ],
    };
    static RESOURCE_FIELD_SELECTOR: Message = Message {
        name: "ResourceFieldSelector",
        fields: &[
            single(1, "containerName", Str, OMIT_EMPTY),
            single(2, "resource", Str, KEEP),
            single(3, "divisor", Quantity, KEEP),
        ],
    };
    static RESOURCE_REQUIREMENTS: Message = Message {
        name: "ResourceRequirements",
        fields: &[
            map(1, "limits", Quantity),
            map(2, "requests", Quantity),
            repeated(3, "claims", Nested(&RESOURCE_CLAIM)),
        ],
    };
    static SE_LINUX_OPTIONS: Message = Message {
        name: "SELinuxOptions",
        fields: &[
            single(1, "user", Str, OMIT_EMPTY),
            single(2, "role", Str, OMIT_EMPTY),
            single(3, "type", Str, OMIT_EMPTY),
            single(4, "level", Str, OMIT_EMPTY),
        ],
    };
    static SECCOMP_PROFILE: Message = Message {
        name: "SeccompProfile",
        fields: &[
            single(1, "type", Str, KEEP),
            single(2, "localhostProfile", Str, KEEP),
        ],
    };
    static SECRET_ENV_SOURCE: Message = Message {
        name: "SecretEnvSource",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            single(2, "optional", Bool, KEEP),
        ],
    };
    static SECRET_KEY_SELECTOR: Message = Message {
        name: "SecretKeySelector",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            single(2, "key", Str, KEEP),
            single(3, "optional", Bool, KEEP),
        ],
    };
    static SECRET_PROJECTION: Message = Message {
        name: "SecretProjection",
        fields: &[
            inline(1, &LOCAL_OBJECT_REFERENCE),
            repeated(2, "items", Nested(&KEY_TO_PATH)),
            single(4, "optional", Bool, KEEP),
        ],
    };
    static SECRET_VOLUME_SOURCE: Message = Message {
        name: "SecretVolumeSource",
        fields: &[
            single(1, "secretName", Str, OMIT_EMPTY),
            repeated(2, "items", Nested(&KEY_TO_PATH)),
            single(3, "defaultMode", Int32, KEEP),
            single(4, "optional", Bool, KEEP),
        ],
    };
    static SECURITY_CONTEXT: Message = Message {
        name: "SecurityContext",
        fields: &[
            single(1, "capabilities", Nested(&CAPABILITIES), KEEP),
            single(2, "privileged", Bool, KEEP),
            single(3, "seLinuxOptions", Nested(&SE_LINUX_OPTIONS), KEEP),
            single(
                10,
                "windowsOptions",
                Nested(&WINDOWS_SECURITY_CONTEXT_OPTIONS),
                KEEP,
            ),
            single(4, "runAsUser", Int64, KEEP),
            single(8, "runAsGroup", Int64, KEEP),
            single(5, "runAsNonRoot", Bool, KEEP),
            single(6, "readOnlyRootFilesystem", Bool, KEEP),
            single(7, "allowPrivilegeEscalation", Bool, KEEP),
            single(9, "procMount", Str, KEEP),
            single(11, "seccompProfile", Nested(&SECCOMP_PROFILE), KEEP),
            single(12, "appArmorProfile", Nested(&APP_ARMOR_PROFILE), KEEP),
        ],
    };
    static SERVICE: Message = Message {
        name: "Service",
        fields: &[
            single(1, "metadata", Nested(&OBJECT_META), KEEP),
            single(2, "spec", Nested(&SERVICE_SPEC), KEEP),
            single(3, "status", Nested(&SERVICE_STATUS), KEEP),
        ],
    };
    static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
        name: "ServiceAccountTokenProjection",
        fields: &[
            single(1, "audience", Str, OMIT_EMPTY),
            single(2, "expirationSeconds", Int64, KEEP),
            single(3, "path", Str, KEEP),
        ],
    };
    static SERVICE_PORT: Message = Message {
        name: "ServicePort",
        fields: &[
            single(1, "name", Str, OMIT_EMPTY),
            single(2, "protocol", Str, OMIT_EMPTY),
            single(6, "appProtocol", Str, KEEP),
            single(3, "port", Int32, KEEP),
            single(4, "targetPort", IntOrString, KEEP),
            single(5, "nodePort", Int32, OMIT_EMPTY),
        ],
    };
    static SERVICE_SPEC: Message = Message {
        name: "ServiceSpec",
        fields: &[
            repeated(1, "ports", Nested(&SERVICE_PORT)),
            map(2, "selector", Str),
            single(3, "clusterIP", Str, OMIT_EMPTY),
            repeated(18, "clusterIPs", Str),
            single(4, "type", Str, OMIT_EMPTY),
            repeated(5, "externalIPs", Str),
            single(7, "sessionAffinity", Str, OMIT_EMPTY),
            single(8, "loadBalancerIP", Str, OMIT_EMPTY),
            repeated(9, "loadBalancerSourceRanges", Str),
            single(10, "externalName", Str, OMIT_EMPTY),
            single(11, "externalTrafficPolicy", Str, OMIT_EMPTY),
            single(12, "healthCheckNodePort", Int32, OMIT_EMPTY),
            single(13, "publishNotReadyAddresses", Bool, OMIT_EMPTY),
            single(
                14,
                "sessionAffinityConfig",
                Nested(&SESSION_AFFINITY_CONFIG),
                KEEP,
            ),
            repeated(19, "ipFamilies", Str),
            single(17, "ipFamilyPolicy", Str, KEEP),
            single(20, "allocateLoadBalancerNodePorts", Bool, KEEP),
            single(21, "loadBalancerClass", Str, KEEP),
            single(22, "internalTrafficPolicy", Str, KEEP),
            single(23, "trafficDistribution", Str, KEEP),
        ],
    };
    static SERVICE_STATUS: Message = Message {
        name: "ServiceStatus",
        fields: &[single(
            1,
            "loadBalancer",
            Nested(&LOAD_BALANCER_STATUS),
            KEEP,
        )],
    };
    static SESSION_AFFINITY_CONFIG: Message = Message {
        name: "SessionAffinityConfig",
        fields: &[single(1, "clientIP", Nested(&CLIENT_IP_CONFIG), KEEP)],
    };
    static SLEEP_ACTION: Message = Message {
        name: "SleepAction",
        fields: &[single(1, "seconds", Int64, KEEP)],
    };
    static SYSCTL: Message = Message {
        name: "Sysctl",
        fields: &[single(1, "name", Str, KEEP), single(2, "value", Str, KEEP)],
    };
    static TCP_SOCKET_ACTION: Message = Message {
        name: "TCPSocketAction",
        fields: &[
            single(1, "port", IntOrString, KEEP),
            single(2, "host", Str, OMIT_EMPTY),
        ],
    };
    static TOLERATION: Message = Message {
        name: "Toleration",
        fields: &[
            single(1, "key", Str, OMIT_EMPTY),
            single(2, "operator", Str, OMIT_EMPTY),
            single(3, "value", Str, OMIT_EMPTY),
            single(4, "effect", Str, OMIT_EMPTY),
            single(5, "tolerationSeconds", Int64, KEEP),
        ],
    };
    static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
        name: "TopologySpreadConstraint",
        fields: &[
            single(1, "maxSkew", Int32, KEEP),
            single(2, "topologyKey", Str, KEEP),
            single(3, "whenUnsatisfiable", Str, KEEP),
            single(4, "labelSelector", Nested(&LABEL_SELECTOR), KEEP),
            single(5, "minDomains", Int32, KEEP),
            single(6, "nodeAffinityPolicy", Str, KEEP),
            single(7, "nodeTaintsPolicy", Str, KEEP),
            repeated(8, "matchLabelKeys", Str),
        ],
    };
    static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message {
        name: "TypedLocalObjectReference",
        fields: &[
            single(1, "apiGroup", Str, KEEP),
            single(2, "kind", Str, KEEP),
            single(3, "name", Str, KEEP),
        ],
    };
    static TYPED_OBJECT_REFERENCE: Message = Message {
        name: "TypedObjectReference",
        fields: &[
            single(1, "apiGroup", Str, KEEP),
            single(2, "kind", Str, KEEP),
            single(3, "name", Str, KEEP),
            single(4, "namespace", Str, KEEP),
        ],
    };
    static VOLUME: Message = Message {
        name: "Volume",
        fields: &[single(1, "name", Str, KEEP), inline(2, &VOLUME_SOURCE)],
    };
    static VOLUME_DEVICE: Message = Message {
        name: "VolumeDevice",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "devicePath", Str, KEEP),
        ],
    };
    static VOLUME_MOUNT: Message = Message {
        name: "VolumeMount",
        fields: &[
            single(1, "name", Str, KEEP),
            single(2, "readOnly", Bool, OMIT_EMPTY),
            single(7, "recursiveReadOnly", Str, KEEP),
            single(3, "mountPath", Str, KEEP),
            single(4, "subPath", Str, OMIT_EMPTY),
            single(5, "mountPropagation", Str, KEEP),
            single(6, "subPathExpr", Str, OMIT_EMPTY),
        ],
    };
    static VOLUME_PROJECTION: Message = Message {
        name: "VolumeProjection",
        fields: &[
            single(1, "secret", Nested(&SECRET_PROJECTION), KEEP),
            single(2, "downwardAPI", Nested(&DOWNWARD_API_PROJECTION), KEEP),
            single(3, "configMap", Nested(&CONFIG_MAP_PROJECTION), KEEP),
            single(
                4,
                "serviceAccountToken",
                Nested(&SERVICE_ACCOUNT_TOKEN_PROJECTION),
                KEEP,
            ),
            single(
                5,
                "clusterTrustBundle",
                Nested(&CLUSTER_TRUST_BUNDLE_PROJECTION),
                KEEP,
            ),
        ],
    };
    static VOLUME_RESOURCE_REQUIREMENTS: Message = Message {
        name: "VolumeResourceRequirements",
        fields: &[map(1, "limits", Quantity), map(2, "requests", Quantity)],
    };
    static VOLUME_SOURCE: Message = Message {
        name: "VolumeSource",
        fields: &[
            single(1, "hostPath", Nested(&HOST_PATH_VOLUME_SOURCE), KEEP),
            single(2, "emptyDir", Nested(&EMPTY_DIR_VOLUME_SOURCE), KEEP),
            single(6, "secret", Nested(&SECRET_VOLUME_SOURCE), KEEP),
            single(7, "nfs", Nested(&NFS_VOLUME_SOURCE), KEEP),
            single(
                10,
                "persistentVolumeClaim",
                Nested(&PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
                KEEP,
            ),
            single(16, "downwardAPI", Nested(&DOWNWARD_API_VOLUME_SOURCE), KEEP),
            single(19, "configMap", Nested(&CONFIG_MAP_VOLUME_SOURCE), KEEP),
            single(26, "projected", Nested(&PROJECTED_VOLUME_SOURCE), KEEP),
            single(28, "csi", Nested(&CSI_VOLUME_SOURCE), KEEP),
            single(29, "ephemeral", Nested(&EPHEMERAL_VOLUME_SOURCE), KEEP),
            single(30, "image", Nested(&IMAGE_VOLUME_SOURCE), KEEP),
        ],
    };
    static WEIGHTED_POD_AFFINITY_TERM: Message = Message {
        name: "WeightedPodAffinityTerm",
        fields: &[
            single(1, "weight", Int32, KEEP),
            single(2, "podAffinityTerm", Nested(&POD_AFFINITY_TERM), KEEP),
        ],
    };
    static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
        name: "WindowsSecurityContextOptions",
        fields: &[
            single(1, "gmsaCredentialSpecName", Str, KEEP),
            single(2, "gmsaCredentialSpec", Str, KEEP),
            single(3, "runAsUserName", Str, KEEP),
            single(4, "hostProcess", Bool, KEEP),
        ],
    };
    static LABEL_SELECTOR: Message = Message {
        name: "LabelSelector",
        fields: &[
            map(1, "matchLabels", Str),
            repeated(2, "matchExpressions", Nested(&LABEL_SELECTOR_REQUIREMENT)),
        ],
    };
    static LABEL_SELECTOR_REQUIREMENT: Message = Message {
        name: "LabelSelectorRequirement",
        fields: &[
            single(1, "key", Str, KEEP),
            single(2, "operator", Str, KEEP),
            repeated(3, "values", Str),
        ],
    };
    static OBJECT_META: Message = Message {
        name: "ObjectMeta",
        fields: &[
            single(1, "name", Str, OMIT_EMPTY),
            single(2, "generateName", Str, OMIT_EMPTY),
            single(3, "namespace", Str, OMIT_EMPTY),
            single(4, "selfLink", Str, OMIT_EMPTY),
            single(5, "uid", Str, OMIT_EMPTY),
            single(6, "resourceVersion", Str, OMIT_EMPTY),
            single(7, "generation", Int64, OMIT_EMPTY),
            single(8, "creationTimestamp", Time, KEEP),
            single(9, "deletionTimestamp", Time, KEEP),
            single(10, "deletionGracePeriodSeconds", Int64, KEEP),
            map(11, "labels", Str),
            map(12, "annotations", Str),
            repeated(13, "ownerReferences", Nested(&OWNER_REFERENCE)),
            repeated(14, "finalizers", Str),
        ],
    };
    static OWNER_REFERENCE: Message = Message {
        name: "OwnerReference",
        fields: &[
            single(5, "apiVersion", Str, KEEP),
            single(1, "kind", Str, KEEP),
            single(3, "name", Str, KEEP),
            single(4, "uid", Str, KEEP),
            single(6, "controller", Bool, KEEP),
            single(7, "blockOwnerDeletion", Bool, KEEP),
        ],
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Bodies captured from kubectl 1.32 (protobuf) and 1.31 (JSON) running the same `kubectl
    /// create` command against a logging stub server.
    const FIXTURES: &[(&str, &[u8], &str)] = &[
        (
            "create deployment nginx --image nginx --replicas 2",
            include_bytes!("../tests/data/protobuf/deployment-nginx.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/deployment-nginx.kubectl-1.31.json"),
        ),
        (
            "create deployment web --image nginx --port 80 --replicas 0",
            include_bytes!(
                "../tests/data/protobuf/deployment-web-port-zero-replicas.kubectl-1.32.pb"
            ),
            include_str!(
                "../tests/data/protobuf/deployment-web-port-zero-replicas.kubectl-1.31.json"
            ),
        ),
        (
            "create deployment multi --image=nginx --image=busybox -n shop",
            include_bytes!(
                "../tests/data/protobuf/deployment-two-containers-in-namespace.kubectl-1.32.pb"
            ),
            include_str!(
                "../tests/data/protobuf/deployment-two-containers-in-namespace.kubectl-1.31.json"
            ),
        ),
        (
            "create deployment sleeper --image=busybox --port=8080 -- sleep 3600",
            include_bytes!("../tests/data/protobuf/deployment-command.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/deployment-command.kubectl-1.31.json"),
        ),
        (
            "create service clusterip my-svc --tcp=5678:8080",
            include_bytes!("../tests/data/protobuf/service-clusterip.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/service-clusterip.kubectl-1.31.json"),
        ),
        (
            "create service nodeport np --tcp=80:8080 --node-port=30080",
            include_bytes!("../tests/data/protobuf/service-nodeport.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/service-nodeport.kubectl-1.31.json"),
        ),
        (
            "create service clusterip headless --clusterip=None",
            include_bytes!("../tests/data/protobuf/service-headless.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/service-headless.kubectl-1.31.json"),
        ),
        (
            "create service loadbalancer lb --tcp=80:http",
            include_bytes!(
                "../tests/data/protobuf/service-loadbalancer-named-port.kubectl-1.32.pb"
            ),
            include_str!(
                "../tests/data/protobuf/service-loadbalancer-named-port.kubectl-1.31.json"
            ),
        ),
        (
            "create service externalname ext --external-name example.com",
            include_bytes!("../tests/data/protobuf/service-externalname.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/service-externalname.kubectl-1.31.json"),
        ),
        (
            "create namespace shop",
            include_bytes!("../tests/data/protobuf/namespace-shop.kubectl-1.32.pb"),
            include_str!("../tests/data/protobuf/namespace-shop.kubectl-1.31.json"),
        ),
    ];

    #[test]
    fn kubectl_protobuf_bodies_decode_to_the_json_kubectl_sends() {
        for (command, protobuf, json) in FIXTURES {
            let expected: Value = serde_json::from_str(json).unwrap();
            let decoded = decode(protobuf).unwrap_or_else(|error| panic!("{command}: {error}"));
            assert_eq!(decoded, expected, "kubectl {command}");
        }
    }

    #[test]
    fn explicit_zero_replicas_survives_and_go_zero_values_do_not() {
        let (_, protobuf, _) = FIXTURES[1];
        let decoded = decode(protobuf).unwrap();
        assert_eq!(decoded["spec"]["replicas"], json!(0));
        let container = &decoded["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"], json!([{"containerPort": 80}]));
        for dropped in ["imagePullPolicy", "terminationMessagePath", "stdin", "tty"] {
            assert!(
                container.get(dropped).is_none(),
                "{dropped} should be dropped"
            );
        }
        let pod_spec = &decoded["spec"]["template"]["spec"];
        for dropped in ["restartPolicy", "dnsPolicy", "hostNetwork", "schedulerName"] {
            assert!(
                pod_spec.get(dropped).is_none(),
                "{dropped} should be dropped"
            );
        }
        assert_eq!(decoded["spec"]["strategy"], json!({}));
        assert_eq!(decoded["metadata"]["creationTimestamp"], Value::Null);
    }

    #[test]
    fn named_target_port_is_a_string_and_numbered_one_a_number() {
        let named = decode(FIXTURES[7].1).unwrap();
        assert_eq!(named["spec"]["ports"][0]["targetPort"], json!("http"));
        let numbered = decode(FIXTURES[5].1).unwrap();
        assert_eq!(numbered["spec"]["ports"][0]["targetPort"], json!(8080));
        assert_eq!(numbered["spec"]["ports"][0]["nodePort"], json!(30080));
    }

    // A minimal protobuf writer for hand-made bodies.
    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn varint_field(number: u32, value: u64) -> Vec<u8> {
        let mut out = varint(u64::from(number) << 3);
        out.extend(varint(value));
        out
    }

    fn bytes_field(number: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = varint((u64::from(number) << 3) | 2);
        out.extend(varint(payload.len() as u64));
        out.extend_from_slice(payload);
        out
    }

    fn fields(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = fields(&[
            bytes_field(1, api_version.as_bytes()),
            bytes_field(2, kind.as_bytes()),
        ]);
        let mut body = MAGIC.to_vec();
        body.extend(fields(&[
            bytes_field(1, &type_meta),
            bytes_field(2, raw),
            bytes_field(3, b""),
            bytes_field(4, b""),
        ]));
        body
    }

    #[test]
    fn statefulset_with_volumes_probes_resources_and_times() {
        let quantity = |text: &str| bytes_field(1, text.as_bytes());
        let map_entry = |key: &str, value: Vec<u8>| {
            fields(&[bytes_field(1, key.as_bytes()), bytes_field(2, &value)])
        };
        let metadata = fields(&[
            bytes_field(1, b"db"),
            // creationTimestamp 2024-01-02T03:04:05Z with nanos, which Go drops.
            bytes_field(
                8,
                &fields(&[varint_field(1, 1_704_164_645), varint_field(2, 5)]),
            ),
            bytes_field(11, &map_entry("app", b"db".to_vec())),
            bytes_field(14, b"example.com/guard"),
        ]);
        let resources = fields(&[
            bytes_field(1, &map_entry("memory", quantity("128Mi"))),
            bytes_field(2, &map_entry("cpu", quantity("100m"))),
        ]);
        let probe = fields(&[
            // ProbeHandler is inline: httpGet lands beside initialDelaySeconds.
            bytes_field(
                1,
                &bytes_field(
                    2,
                    &fields(&[
                        bytes_field(1, b"/healthz"),
                        bytes_field(2, &fields(&[varint_field(1, 1), bytes_field(3, b"web")])),
                    ]),
                ),
            ),
            varint_field(2, 3),
        ]);
        let container = fields(&[
            bytes_field(1, b"db"),
            bytes_field(2, b"postgres:16"),
            bytes_field(8, &resources),
            bytes_field(
                9,
                &fields(&[bytes_field(1, b"data"), bytes_field(3, b"/var/lib/db")]),
            ),
            bytes_field(10, &probe),
            bytes_field(14, b"IfNotPresent"),
        ]);
        let volume = fields(&[
            bytes_field(1, b"scratch"),
            // VolumeSource is inline; emptyDir{} is an empty message that must stay.
            bytes_field(2, &bytes_field(2, b"")),
        ]);
        let security_context = fields(&[
            // supplementalGroups, packed, and runAsUser as a negative-looking int64.
            bytes_field(4, &[varint(1000), varint(2000)].concat()),
            varint_field(2, 0),
        ]);
        let pod_spec = fields(&[
            bytes_field(1, &volume),
            bytes_field(2, &container),
            bytes_field(14, &security_context),
            varint_field(4, 30),
        ]);
        let claim_template = fields(&[
            bytes_field(1, &bytes_field(1, b"data")),
            bytes_field(
                2,
                &fields(&[
                    bytes_field(1, b"ReadWriteOnce"),
                    bytes_field(2, &bytes_field(2, &map_entry("storage", quantity("1Gi")))),
                ]),
            ),
        ]);
        let spec = fields(&[
            varint_field(1, 3),
            bytes_field(2, &bytes_field(1, &map_entry("app", b"db".to_vec()))),
            bytes_field(3, &fields(&[bytes_field(2, &pod_spec)])),
            bytes_field(4, &claim_template),
            bytes_field(5, b"db"),
            bytes_field(
                7,
                &fields(&[
                    bytes_field(1, b"RollingUpdate"),
                    bytes_field(
                        2,
                        &bytes_field(2, &fields(&[varint_field(1, 1), bytes_field(3, b"50%")])),
                    ),
                ]),
            ),
        ]);
        let raw = fields(&[bytes_field(1, &metadata), bytes_field(2, &spec)]);
        let decoded = decode(&envelope("apps/v1", "StatefulSet", &raw)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {
                    "name": "db",
                    "creationTimestamp": "2024-01-02T03:04:05Z",
                    "labels": {"app": "db"},
                    "finalizers": ["example.com/guard"],
                },
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "db"}},
                    "serviceName": "db",
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": "50%"},
                    },
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }],
                    "template": {"spec": {
                        "volumes": [{"name": "scratch", "emptyDir": {}}],
                        "containers": [{
                            "name": "db",
                            "image": "postgres:16",
                            "resources": {
                                "limits": {"memory": "128Mi"},
                                "requests": {"cpu": "100m"},
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}],
                            "livenessProbe": {
                                "httpGet": {"path": "/healthz", "port": "web"},
                                "initialDelaySeconds": 3,
                            },
                            "imagePullPolicy": "IfNotPresent",
                        }],
                        "securityContext": {"supplementalGroups": [1000, 2000], "runAsUser": 0},
                        "terminationGracePeriodSeconds": 30,
                    }},
                },
            })
        );
    }

    #[test]
    fn negative_int32_and_zero_time_at_the_epoch() {
        // progressDeadlineSeconds is a pointer: an explicit -1 (10-byte varint) is kept.
        let spec = varint_field(9, (-1i64) as u64);
        let metadata = bytes_field(8, &varint_field(1, 0));
        let raw = fields(&[bytes_field(1, &metadata), bytes_field(2, &spec)]);
        let decoded = decode(&envelope("apps/v1", "Deployment", &raw)).unwrap();
        assert_eq!(decoded["spec"]["progressDeadlineSeconds"], json!(-1));
        assert_eq!(
            decoded["metadata"]["creationTimestamp"],
            json!("1970-01-01T00:00:00Z")
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut metadata = bytes_field(1, b"shop");
        metadata.extend(varint_field(99, 7));
        metadata.extend(varint(((100u64) << 3) | 1));
        metadata.extend([0u8; 8]);
        metadata.extend(varint(((101u64) << 3) | 5));
        metadata.extend([0u8; 4]);
        metadata.extend(bytes_field(102, b"ignored"));
        let raw = fields(&[bytes_field(1, &metadata), bytes_field(77, b"future field")]);
        let decoded = decode(&envelope("v1", "Namespace", &raw)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        );
    }

    #[test]
    fn kinds_without_a_table_are_unsupported_not_malformed() {
        let error = decode(&envelope("v1", "ConfigMap", &bytes_field(1, b""))).unwrap_err();
        assert!(error.is_unsupported());
        assert_eq!(
            error.to_string(),
            "this server cannot decode protobuf for \"v1\" \"ConfigMap\"; send it as application/json"
        );
        let error = decode(&envelope("apps/v2", "Deployment", b"")).unwrap_err();
        assert!(matches!(error, ProtobufError::UnsupportedKind { .. }));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(
            decode(b"{\"kind\":\"Pod\"}"),
            Err(ProtobufError::MissingMagic)
        );
        assert_eq!(decode(b""), Err(ProtobufError::MissingMagic));
        let mut compressed = MAGIC.to_vec();
        compressed.extend(bytes_field(3, b"gzip"));
        assert_eq!(
            decode(&compressed),
            Err(ProtobufError::UnsupportedContentEncoding("gzip".into()))
        );
        // A string field sent as a varint, an invalid UTF-8 name, a length past the end.
        let cases = [
            bytes_field(1, &varint_field(1, 5)),
            bytes_field(1, &bytes_field(1, &[0xff, 0xfe])),
            bytes_field(1, &[0x0a, 0x05, b'a']),
        ];
        for raw in cases {
            let error = decode(&envelope("v1", "Namespace", &raw)).unwrap_err();
            assert!(matches!(error, ProtobufError::Malformed(_)), "{error}");
            assert!(!error.is_unsupported());
        }
        let error = decode(&envelope(
            "v1",
            "Namespace",
            &bytes_field(1, &[0x0a, 0x05, b'a']),
        ));
        assert!(error.unwrap_err().to_string().contains("past the end"));
    }

    #[test]
    fn every_truncation_of_a_real_body_is_handled() {
        for (_, protobuf, _) in FIXTURES {
            for length in 0..protobuf.len() {
                // Must return, never panic; a cut can still land on a field boundary.
                let _ = decode(&protobuf[..length]);
            }
        }
    }

    #[test]
    fn the_tables_reference_no_duplicate_field_numbers() {
        fn check(message: &'static Message, seen: &mut Vec<&'static str>) {
            if seen.contains(&message.name) {
                return;
            }
            seen.push(message.name);
            for (index, field) in message.fields.iter().enumerate() {
                assert!(
                    message.fields[index + 1..]
                        .iter()
                        .all(|other| other.number != field.number),
                    "{}: field {} twice",
                    message.name,
                    field.number
                );
                if let Kind::Message(nested) = field.kind {
                    check(nested, seen);
                }
            }
        }
        let mut seen = Vec::new();
        for (api_version, kind) in [
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "ReplicaSet"),
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Namespace"),
        ] {
            check(schema::root(api_version, kind).unwrap(), &mut seen);
        }
        assert!(seen.len() > 100, "only {} messages reachable", seen.len());
    }

    /// An object with every field of `message` set to a non-zero sample of its kind.
    fn sample_object(message: &'static Message, object: &mut Map<String, Value>) {
        for field in message.fields {
            let sample = |kind: Kind| match kind {
                Kind::Str => json!("x"),
                Kind::Int32 | Kind::Int64 => json!(7),
                Kind::Bool => json!(true),
                Kind::Time => json!("2024-01-02T03:04:05Z"),
                Kind::IntOrString => json!(8080),
                Kind::Quantity => json!("1Gi"),
                Kind::Message(nested) => {
                    let mut object = Map::new();
                    sample_object(nested, &mut object);
                    Value::Object(object)
                }
            };
            match field.cardinality {
                Cardinality::Single(_) => {
                    object.insert(field.json_name.into(), sample(field.kind));
                }
                Cardinality::Repeated => {
                    object.insert(field.json_name.into(), json!([sample(field.kind)]));
                }
                Cardinality::Map => {
                    object.insert(field.json_name.into(), json!({"key": sample(field.kind)}));
                }
                Cardinality::Inline => {
                    if let Kind::Message(nested) = field.kind {
                        sample_object(nested, object);
                    }
                }
            }
        }
    }

    fn differing_paths(path: &str, sent: &Value, returned: &Value, out: &mut Vec<String>) {
        match (sent, returned) {
            (Value::Object(sent), Value::Object(returned)) => {
                for (key, value) in sent {
                    let child = format!("{path}.{key}");
                    match returned.get(key) {
                        Some(other) => differing_paths(&child, value, other, out),
                        None => out.push(format!("{child} (dropped)")),
                    }
                }
                // k8s-openapi writes the type meta of embedded resources (claim templates).
                let added = returned.keys().filter(|key| {
                    !sent.contains_key(*key) && !matches!(key.as_str(), "apiVersion" | "kind")
                });
                for key in added {
                    out.push(format!("{path}.{key} (added)"));
                }
            }
            (Value::Array(sent), Value::Array(returned)) if sent.len() == returned.len() => {
                for (index, (value, other)) in sent.iter().zip(returned).enumerate() {
                    differing_paths(&format!("{path}[{index}]"), value, other, out);
                }
            }
            _ if sent == returned => {}
            _ => out.push(format!("{path}: sent {sent}, got {returned}")),
        }
    }

    fn round_trips_through<T>(api_version: &str, kind: &str)
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        let mut object = Map::new();
        object.insert("apiVersion".into(), json!(api_version));
        object.insert("kind".into(), json!(kind));
        sample_object(schema::root(api_version, kind).unwrap(), &mut object);
        let object = Value::Object(object);
        let typed: T = serde_json::from_value(object.clone())
            .unwrap_or_else(|error| panic!("{kind}: {error}"));
        let round_trip = serde_json::to_value(&typed).unwrap();
        let mut differences = Vec::new();
        differing_paths("", &object, &round_trip, &mut differences);
        assert!(
            differences.is_empty(),
            "{kind}: the table's JSON name or kind is wrong at {differences:?}"
        );
    }

    /// Every field in the tables, at every depth, has the JSON name and value type of the
    /// k8s-openapi types: a wrong name would not survive the round trip.
    #[test]
    fn table_json_names_and_kinds_match_the_typed_api() {
        use hollow_types::k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
        round_trips_through::<apps::Deployment>("apps/v1", "Deployment");
        round_trips_through::<apps::StatefulSet>("apps/v1", "StatefulSet");
        round_trips_through::<apps::ReplicaSet>("apps/v1", "ReplicaSet");
        round_trips_through::<core::Pod>("v1", "Pod");
        round_trips_through::<core::Service>("v1", "Service");
        round_trips_through::<core::Namespace>("v1", "Namespace");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..512),
            kind in prop::sample::select(vec![
                ("apps/v1", "Deployment"),
                ("apps/v1", "StatefulSet"),
                ("v1", "Pod"),
                ("v1", "Service"),
            ]),
        ) {
            let _ = decode(&raw);
            let _ = decode(&[MAGIC.as_slice(), &raw].concat());
            let _ = decode(&envelope(kind.0, kind.1, &raw));
        }

        #[test]
        fn mutated_real_bodies_never_panic(
            which in 0..FIXTURES.len(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut body = FIXTURES[which].1.to_vec();
            for (index, byte) in flips {
                let position = index.index(body.len());
                body[position] = byte;
            }
            let _ = decode(&body);
        }
    }
}

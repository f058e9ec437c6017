//! PATCH bodies applied to stored objects.
//!
//! The server keeps objects as whole JSON documents, so every patch type works on
//! `serde_json::Value` trees rather than on typed structs:
//!
//! * [`PatchType::Merge`] — JSON merge patch (RFC 7386), sent by `kubectl label`, `annotate`,
//!   `scale` and by clients for kinds they have no schema for.
//! * [`PatchType::Json`] — JSON patch (RFC 6902): a list of `add`/`remove`/`replace`/`move`/
//!   `copy`/`test` operations on JSON pointers.
//! * [`PatchType::StrategicMerge`] — Kubernetes' strategic merge patch, sent by client-side
//!   `kubectl apply`, `set image` and `edit`. It needs to know, for each list in an object,
//!   whether the list is merged item by item (and on which key) or replaced whole; that
//!   knowledge lives in the small table behind [`merge_key`], keyed by kind and field path.
//! * [`PatchType::Apply`] — server-side apply, approximated: the applied configuration is
//!   merged onto the live object as a strategic merge patch (see [`apply_patch`]).
//!
//! [`apply_patch`] is the entry point: it decodes the body for the patch type, applies it to
//! a copy of the original and returns the patched document, or a [`PatchError`] that knows
//! the HTTP status kube-apiserver answers for it. The caller validates the result, bumps
//! metadata and stores it; nothing here touches the store.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// kube-apiserver refuses JSON patches with more operations than this.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// How many bytes of JSON a patch's `copy` operations may add up to (kube-apiserver's
/// default `JSONPatchMaxCopyBytes`); without it a few copies of the root double the object
/// again and again.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// The deepest nesting of objects and lists serde_json reads back. A JSON patch can build
/// deeper documents than the body it came in; storing one would make the object unreadable.
pub const MAX_NESTING_DEPTH: usize = 127;

/// The patch dialect named by a PATCH request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply; the body is YAML or JSON).
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value; parameters such as `charset` are
    /// ignored. `None` means kube-apiserver would answer 415 Unsupported Media Type.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        let known = [
            ("application/json-patch+json", PatchType::Json),
            ("application/merge-patch+json", PatchType::Merge),
            (
                "application/strategic-merge-patch+json",
                PatchType::StrategicMerge,
            ),
            ("application/apply-patch+yaml", PatchType::Apply),
        ];
        known
            .into_iter()
            .find(|(name, _)| media_type.eq_ignore_ascii_case(name))
            .map(|(_, patch_type)| patch_type)
    }

    /// The media type this patch type is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. Each variant maps to the status kube-apiserver answers
/// with ([`PatchError::code`], [`PatchError::reason`]); `From<PatchError> for ApiError` builds
/// that answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not the JSON shape the patch type needs (an object for merge
    /// and strategic patches, a list of operation objects for JSON patch). 400 BadRequest.
    #[error("error decoding patch: {0}")]
    Malformed(String),
    /// An apply body that is neither JSON nor YAML, or not a mapping. 400 BadRequest.
    #[error("error decoding YAML: {0}")]
    MalformedApply(String),
    /// A JSON patch longer than [`MAX_JSON_PATCH_OPERATIONS`]. 413 RequestEntityTooLarge.
    #[error(
        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {0}"
    )]
    TooManyOperations(usize),
    /// A JSON patch operation that cannot be carried out: a failed `test`, a path that does
    /// not exist, a malformed pointer, an unknown `op`. 422 Invalid, with kube-apiserver's
    /// generic message (the detail here is for logs; upstream does not send it either).
    #[error("{0}")]
    JsonPatchFailed(String),
    /// A strategic merge directive in a shape the format does not allow (`$retainKeys`,
    /// `$setElementOrder/...`, `$deleteFromPrimitiveList/...`). 400 BadRequest.
    #[error("{0}")]
    StrategicFormat(String),
    /// A strategic merge patch kube-apiserver rejects as unprocessable (lists of lists).
    /// 422 Invalid, with the generic message.
    #[error("{0}")]
    StrategicInvalid(String),
    /// A strategic merge patch the merge cannot follow: a list item without its merge key, an
    /// unknown `$patch` value, items of different types in one list. kube-apiserver passes
    /// these through unclassified, which answers 500 with an empty reason and this message.
    #[error("{0}")]
    StrategicMergeFailed(String),
}

/// The message kube-apiserver sends with every 422 from a patch it could not apply.
const UNPROCESSABLE_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

impl PatchError {
    /// The HTTP status kube-apiserver answers with.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::Malformed(_)
            | PatchError::MalformedApply(_)
            | PatchError::StrategicFormat(_) => 400,
            PatchError::TooManyOperations(_) => 413,
            PatchError::JsonPatchFailed(_) | PatchError::StrategicInvalid(_) => 422,
            PatchError::StrategicMergeFailed(_) => 500,
        }
    }

    /// The `reason` of the `Status` kube-apiserver answers with (empty means `Unknown`).
    pub fn reason(&self) -> &'static str {
        match self.code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            422 => "Invalid",
            _ => "",
        }
    }

    /// Whether kube-apiserver answers 400 BadRequest.
    pub fn is_bad_request(&self) -> bool {
        self.code() == 400
    }

    /// The `message` of the `Status` kube-apiserver answers with.
    pub fn status_message(&self) -> String {
        match self {
            PatchError::JsonPatchFailed(_) | PatchError::StrategicInvalid(_) => {
                UNPROCESSABLE_MESSAGE.to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<PatchError> for ApiError {
    fn from(error: PatchError) -> ApiError {
        let mut api_error = ApiError::new(error.code(), error.reason(), error.status_message());
        if error.code() == 422 {
            // Upstream builds these with NewGenericServerResponse, which sends empty details.
            api_error.details = Some(Value::Object(Map::new()));
        }
        api_error
    }
}

/// Applies a PATCH body of `patch_type` to `original` (an object of `kind`, e.g.
/// `"Deployment"`), returning the patched document. `original` itself is left unchanged.
///
/// For [`PatchType::Apply`] this is server-side apply *lite*: the applied configuration is
/// merged onto the live object with strategic-merge rules, and fields whose schema says
/// `retainKeys` (Deployment `spec.strategy`, each `volumes[]` item) keep only the keys the
/// configuration sets, so switching a union member (e.g. `emptyDir` → `hostPath`) works.
/// Real field ownership is not done: no `managedFields`, no conflicts between managers (409),
/// and a field a manager stops applying is not removed (it stays until something deletes it).
/// When there is no live object the caller creates one from the body as is.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    body: &[u8],
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Merge => {
            let patch = decode_json_object(body)?;
            let mut patched = original.clone();
            merge_patch(&mut patched, &Value::Object(patch));
            Ok(patched)
        }
        PatchType::Json => {
            let operations: Value = serde_json::from_slice(body)
                .map_err(|error| PatchError::Malformed(error.to_string()))?;
            let Value::Array(operations) = operations else {
                return Err(PatchError::Malformed(
                    "a JSON patch must be a list of operations".to_string(),
                ));
            };
            json_patch(original, &operations)
        }
        PatchType::StrategicMerge => {
            let patch = decode_json_object(body)?;
            strategic_merge_patch(kind, original, &patch)
        }
        PatchType::Apply => {
            let mut configuration = decode_apply_body(body)?;
            mark_retained_keys(kind, &mut configuration, &mut Vec::new());
            strategic_merge_patch(kind, original, &configuration)
        }
    }
}

fn decode_json_object(body: &[u8]) -> Result<Map<String, Value>, PatchError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(patch)) => Ok(patch),
        Ok(other) => Err(PatchError::Malformed(format!(
            "the patch must be a JSON object, not {}",
            json_type_name(&other)
        ))),
        Err(error) => Err(PatchError::Malformed(error.to_string())),
    }
}

/// kubectl sends apply bodies as JSON (which is YAML too); other clients send YAML.
fn decode_apply_body(body: &[u8]) -> Result<Map<String, Value>, PatchError> {
    let document: Value = match serde_json::from_slice(body) {
        Ok(document) => document,
        Err(_) => {
            // kube-apiserver reads YAML 1.1, where `defaultMode: 0644` is octal.
            let options = serde_saphyr::options! { legacy_octal_numbers: true };
            serde_saphyr::from_slice_with_options(body, options).map_err(|error| {
                // The error renders a source snippet over several lines; a Status message
                // wants the first one.
                let message = error.to_string();
                let first_line = message.lines().next().unwrap_or_default();
                PatchError::MalformedApply(
                    first_line
                        .strip_prefix("error: ")
                        .unwrap_or(first_line)
                        .to_string(),
                )
            })?
        }
    };
    match document {
        Value::Object(configuration) => Ok(configuration),
        other => Err(PatchError::MalformedApply(format!(
            "the applied configuration must be a mapping, not {}",
            json_type_name(&other)
        ))),
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch (RFC 7386)
// ---------------------------------------------------------------------------------------------

/// Applies a JSON merge patch (RFC 7386) to `target` in place: objects merge key by key,
/// `null` deletes a key, anything else (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_fields) = target else {
        return;
    };
    for (key, value) in patch_fields {
        if value.is_null() {
            target_fields.remove(key);
        } else {
            merge_patch(
                target_fields.entry(key.clone()).or_insert(Value::Null),
                value,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON patch (RFC 6902)
// ---------------------------------------------------------------------------------------------

/// Applies the JSON patch `operations` to a copy of `document`. Either every operation
/// applies or the patch fails as a whole.
fn json_patch(document: &Value, operations: &[Value]) -> Result<Value, PatchError> {
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(operations.len()));
    }
    // Upstream decodes the list into operation objects before applying any of them, so a
    // list element that is not an object is a malformed body, not a failed operation.
    if let Some(position) = operations
        .iter()
        .position(|operation| !operation.is_object())
    {
        return Err(PatchError::Malformed(format!(
            "operation {position} of the JSON patch is not an object"
        )));
    }
    let mut patched = document.clone();
    let mut copied_bytes = 0;
    for operation in operations {
        apply_json_patch_operation(&mut patched, operation, &mut copied_bytes)
            .map_err(PatchError::JsonPatchFailed)?;
    }
    Ok(patched)
}

fn apply_json_patch_operation(
    document: &mut Value,
    operation: &Value,
    copied_bytes: &mut usize,
) -> Result<(), String> {
    let text_field = |name: &str| -> Result<&str, String> {
        match operation.get(name) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(format!(
                "the {name:?} of a JSON patch operation must be a string"
            )),
            None => Err(format!("a JSON patch operation is missing {name:?}")),
        }
    };
    let value_field = |op: &str| -> Result<&Value, String> {
        operation
            .get("value")
            .ok_or_else(|| format!("the {op:?} operation is missing \"value\""))
    };
    let op = text_field("op")?;
    let path_text = text_field("path")?;
    let path = parse_pointer(path_text)?;
    match op {
        "add" => {
            let value = value_field(op)?;
            check_depth(&path, value)?;
            pointer_add(document, &path, value.clone())
        }
        "remove" => pointer_remove(document, &path).map(drop),
        "replace" => {
            let value = value_field(op)?;
            check_depth(&path, value)?;
            pointer_replace(document, &path, value.clone())
        }
        "move" => {
            let from_text = text_field("from")?;
            let from = parse_pointer(from_text)?;
            if from == path {
                // Moving a value onto itself changes nothing, but the source must exist.
                return pointer_get(document, &from)
                    .map(drop)
                    .ok_or_else(|| missing_path("move", from_text));
            }
            if path.len() > from.len() && path.starts_with(&from) {
                return Err(format!(
                    "cannot move {from_text:?} into one of its own children ({path_text:?})"
                ));
            }
            let value =
                pointer_get(document, &from).ok_or_else(|| missing_path("move", from_text))?;
            check_depth(&path, value)?;
            let value = pointer_remove(document, &from)?;
            pointer_add(document, &path, value)
        }
        "copy" => {
            let from_text = text_field("from")?;
            let from = parse_pointer(from_text)?;
            let value =
                pointer_get(document, &from).ok_or_else(|| missing_path("copy", from_text))?;
            check_depth(&path, value)?;
            *copied_bytes += serialized_size(value);
            if *copied_bytes > MAX_JSON_PATCH_COPY_BYTES {
                return Err(format!(
                    "Unable to copy, accumulated size increase of {copied_bytes} exceeds the limit {MAX_JSON_PATCH_COPY_BYTES}"
                ));
            }
            pointer_add(document, &path, value.clone())
        }
        "test" => {
            let expected = value_field(op)?;
            let actual =
                pointer_get(document, &path).ok_or_else(|| missing_path("test", path_text))?;
            if json_equal(actual, expected) {
                Ok(())
            } else {
                Err(format!("testing value {path_text} failed: test failed"))
            }
        }
        unknown => Err(format!("unknown JSON patch operation {unknown:?}")),
    }
}

/// Refuses to put `value` where the document would nest deeper than serde_json reads.
fn check_depth(path: &[String], value: &Value) -> Result<(), String> {
    let depth = path.len() + nesting_depth(value);
    if depth > MAX_NESTING_DEPTH {
        return Err(format!(
            "the patched object would nest {depth} levels deep, more than {MAX_NESTING_DEPTH}"
        ));
    }
    Ok(())
}

/// How many objects and lists deep `value` nests (a scalar is 0). Iterative, because the
/// documents it guards against are the ones too deep to recurse through.
fn nesting_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((node, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match node {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

fn serialized_size(value: &Value) -> usize {
    struct ByteCounter(usize);
    impl std::io::Write for ByteCounter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = ByteCounter(0);
    // Writing a Value into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

fn missing_path(op: &str, pointer: &str) -> String {
    format!("{op} operation does not apply: doc is missing path: {pointer:?}")
}

/// Splits a JSON pointer (RFC 6901) into unescaped reference tokens.
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(tokens) = pointer.strip_prefix('/') else {
        return Err(format!("JSON pointer {pointer:?} must start with \"/\""));
    };
    tokens
        .split('/')
        .map(|token| {
            let mut unescaped = String::with_capacity(token.len());
            let mut characters = token.chars();
            while let Some(character) = characters.next() {
                if character != '~' {
                    unescaped.push(character);
                    continue;
                }
                match characters.next() {
                    Some('0') => unescaped.push('~'),
                    Some('1') => unescaped.push('/'),
                    _ => {
                        return Err(format!(
                            "JSON pointer {pointer:?} has a \"~\" not followed by 0 or 1"
                        ));
                    }
                }
            }
            Ok(unescaped)
        })
        .collect()
}

/// The element of a list of `len` items an index token names. Like kube-apiserver's JSON
/// patch library (and unlike RFC 6901) it reads the token as a signed integer, where a
/// negative index counts from the end.
fn array_index(token: &str, len: usize) -> Option<usize> {
    let index: i64 = token.parse().ok()?;
    let len = i64::try_from(len).ok()?;
    let index = if index < 0 { index + len } else { index };
    if (0..len).contains(&index) {
        usize::try_from(index).ok()
    } else {
        None
    }
}

/// Where an `add` inserts into a list of `len` items: `-` appends, and negative indices
/// count from the end (`-1` also appends).
fn insertion_index(token: &str, len: usize) -> Option<usize> {
    if token == "-" {
        return Some(len);
    }
    array_index(token, len + 1)
}

fn pointer_get<'a>(document: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(document, |node, token| match node {
        Value::Object(fields) => fields.get(token),
        Value::Array(items) => items.get(array_index(token, items.len())?),
        _ => None,
    })
}

fn pointer_get_mut<'a>(document: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(document, |node, token| match node {
        Value::Object(fields) => fields.get_mut(token),
        Value::Array(items) => {
            let index = array_index(token, items.len())?;
            items.get_mut(index)
        }
        _ => None,
    })
}

/// The container a pointer's last token refers into, and that token.
fn pointer_parent<'a, 'p>(
    document: &'a mut Value,
    path: &'p [String],
    op: &str,
) -> Result<(&'a mut Value, &'p str), String> {
    let (last, parent_path) = path
        .split_last()
        .ok_or_else(|| format!("the {op} operation needs a path below the document root"))?;
    let parent = pointer_get_mut(document, parent_path)
        .ok_or_else(|| missing_path(op, &format_pointer(path)))?;
    Ok((parent, last))
}

fn format_pointer(path: &[String]) -> String {
    path.iter()
        .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
        .collect()
}

fn pointer_add(document: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    if path.is_empty() {
        *document = value;
        return Ok(());
    }
    let (parent, last) = pointer_parent(document, path, "add")?;
    match parent {
        Value::Object(fields) => {
            fields.insert(last.to_string(), value);
            Ok(())
        }
        Value::Array(items) => match insertion_index(last, items.len()) {
            Some(index) => {
                items.insert(index, value);
                Ok(())
            }
            None => Err(format!(
                "add operation does not apply: index {last:?} is out of bounds at {:?}",
                format_pointer(path)
            )),
        },
        _ => Err(missing_path("add", &format_pointer(path))),
    }
}

fn pointer_remove(document: &mut Value, path: &[String]) -> Result<Value, String> {
    let (parent, last) = pointer_parent(document, path, "remove")?;
    let removed = match parent {
        Value::Object(fields) => fields.remove(last),
        Value::Array(items) => array_index(last, items.len()).map(|index| items.remove(index)),
        _ => None,
    };
    removed.ok_or_else(|| missing_path("remove", &format_pointer(path)))
}

fn pointer_replace(document: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let target = pointer_get_mut(document, path)
        .ok_or_else(|| missing_path("replace", &format_pointer(path)))?;
    *target = value;
    Ok(())
}

/// JSON equality where numbers compare by value (`1` equals `1.0`), as Go's decoding into
/// `float64` makes them compare upstream.
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(_), Value::Number(_)) => scalar_equal(left, right),
        (Value::Array(left_items), Value::Array(right_items)) => {
            left_items.len() == right_items.len()
                && left_items
                    .iter()
                    .zip(right_items)
                    .all(|(left_item, right_item)| json_equal(left_item, right_item))
        }
        (Value::Object(left_fields), Value::Object(right_fields)) => {
            left_fields.len() == right_fields.len()
                && left_fields.iter().all(|(key, left_value)| {
                    right_fields
                        .get(key)
                        .is_some_and(|right_value| json_equal(left_value, right_value))
                })
        }
        _ => left == right,
    }
}

/// Equality for merge-key values and primitive list items.
fn scalar_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left_number), Value::Number(right_number)) => {
            if let (Some(left_int), Some(right_int)) = (left_number.as_i64(), right_number.as_i64())
            {
                return left_int == right_int;
            }
            if let (Some(left_int), Some(right_int)) = (left_number.as_u64(), right_number.as_u64())
            {
                return left_int == right_int;
            }
            left_number.as_f64() == right_number.as_f64()
        }
        _ => left == right,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: the schema table
// ---------------------------------------------------------------------------------------------

/// How the strategic merge patch treats one field, from the `patchStrategy` and
/// `patchMergeKey` tags of the Kubernetes API types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// A list of objects merged item by item: items are matched on `key`. With `retain_keys`,
    /// each item also follows `retainKeys` (see [`Strategy::RetainKeys`]).
    MergeKey {
        key: &'static str,
        retain_keys: bool,
    },
    /// A list of scalars merged as an ordered set (`metadata.finalizers`).
    MergeScalars,
    /// A list replaced whole. Every list missing from the table is replaced too; explicit
    /// entries document the fields where that is deliberate.
    Replace,
    /// An object that is a union of alternatives: the client lists in `$retainKeys` the keys
    /// to keep, and the others are cleared (Deployment `spec.strategy`).
    RetainKeys,
}

/// The merge strategy of the field at `path` (field names from the object's root; list
/// items are transparent, so a container's ports are
/// `["spec", "template", "spec", "containers", "ports"]`) in an object of `kind`.
/// `None` means the defaults: objects merge key by key, lists are replaced.
pub fn merge_key(kind: &str, path: &[&str]) -> Option<Strategy> {
    let by_type = Strategy::MergeKey {
        key: "type",
        retain_keys: false,
    };
    if let ["metadata", rest @ ..] = path {
        return object_meta_strategy(rest);
    }
    match kind {
        "Pod" => match path {
            ["spec", rest @ ..] => pod_spec_strategy(rest),
            ["status", rest @ ..] => pod_status_strategy(rest),
            _ => None,
        },
        "Deployment" | "ReplicaSet" | "StatefulSet" => match path {
            ["spec", "template", "metadata", rest @ ..] => object_meta_strategy(rest),
            ["spec", "template", "spec", rest @ ..] => pod_spec_strategy(rest),
            ["spec", "strategy"] if kind == "Deployment" => Some(Strategy::RetainKeys),
            ["spec", "volumeClaimTemplates"] if kind == "StatefulSet" => Some(Strategy::Replace),
            ["status", "conditions"] => Some(by_type),
            _ => None,
        },
        "Node" => match path {
            ["status", "conditions"] | ["status", "addresses"] => Some(by_type),
            _ => None,
        },
        "Namespace" => match path {
            ["status", "conditions"] => Some(by_type),
            _ => None,
        },
        "Service" => match path {
            ["spec", "ports"] => Some(Strategy::MergeKey {
                key: "port",
                retain_keys: false,
            }),
            ["status", "conditions"] => Some(by_type),
            _ => None,
        },
        _ => None,
    }
}

fn object_meta_strategy(path: &[&str]) -> Option<Strategy> {
    match path {
        ["ownerReferences"] => Some(Strategy::MergeKey {
            key: "uid",
            retain_keys: false,
        }),
        ["finalizers"] => Some(Strategy::MergeScalars),
        _ => None,
    }
}

fn pod_spec_strategy(path: &[&str]) -> Option<Strategy> {
    let by = |key| Strategy::MergeKey {
        key,
        retain_keys: false,
    };
    match path {
        ["containers" | "initContainers" | "ephemeralContainers"] => Some(by("name")),
        [
            "containers" | "initContainers" | "ephemeralContainers",
            field,
        ] => match *field {
            "ports" => Some(by("containerPort")),
            "env" => Some(by("name")),
            "volumeMounts" => Some(by("mountPath")),
            "volumeDevices" => Some(by("devicePath")),
            _ => None,
        },
        ["volumes" | "resourceClaims"] => Some(Strategy::MergeKey {
            key: "name",
            retain_keys: true,
        }),
        ["imagePullSecrets" | "schedulingGates"] => Some(by("name")),
        ["hostAliases"] => Some(by("ip")),
        ["topologySpreadConstraints"] => Some(by("topologyKey")),
        ["tolerations"] => Some(Strategy::Replace),
        _ => None,
    }
}

fn pod_status_strategy(path: &[&str]) -> Option<Strategy> {
    match path {
        ["conditions"] => Some(Strategy::MergeKey {
            key: "type",
            retain_keys: false,
        }),
        ["podIPs" | "hostIPs"] => Some(Strategy::MergeKey {
            key: "ip",
            retain_keys: false,
        }),
        ["resourceClaimStatuses"] => Some(Strategy::MergeKey {
            key: "name",
            retain_keys: true,
        }),
        ["containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses"] => {
            Some(Strategy::Replace)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch: the merge
// ---------------------------------------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

// The messages of k8s.io/apimachinery/pkg/util/mergepatch, which clients may match on.
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";

/// Applies a strategic merge patch to a copy of `original`, following upstream's
/// `StrategicMergeMapPatch` as the API server calls it. Where upstream would store a
/// directive or a `null` verbatim in a newly added subtree (it relies on decoding into typed
/// structs to drop them), this merges new subtrees onto nothing instead, so the stored
/// document never carries `$`-directives or nulls. `{"$patch": "delete"}` on a nested map
/// removes the key (upstream leaves `{}`, which typed encoding usually omits).
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Map<String, Value>,
) -> Result<Value, PatchError> {
    let base = match original {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    let merger = StrategicMerger { kind };
    merger
        .merge_map(base, patch, &mut Vec::new())
        .map(Value::Object)
}

struct StrategicMerger<'k> {
    kind: &'k str,
}

/// The JSON type of a value, as Go's `reflect.TypeOf` tells decoded JSON apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Bool,
    Number,
    String,
    List,
    Object,
}

fn json_type(value: &Value) -> JsonType {
    match value {
        Value::Null => JsonType::Null,
        Value::Bool(_) => JsonType::Bool,
        Value::Number(_) => JsonType::Number,
        Value::String(_) => JsonType::String,
        Value::Array(_) => JsonType::List,
        Value::Object(_) => JsonType::Object,
    }
}

fn directive_of(value: &Value) -> Option<&Value> {
    value.as_object()?.get(DIRECTIVE)
}

fn is_delete_directive(value: &Value) -> bool {
    directive_of(value).and_then(Value::as_str) == Some("delete")
}

/// The field a `$setElementOrder/<field>` or `$deleteFromPrimitiveList/<field>` key names,
/// or `None` when `key` is not that directive at all.
fn directive_field<'p>(
    key: &'p str,
    prefix: &str,
    format_error: &str,
) -> Result<Option<&'p str>, PatchError> {
    if !key.starts_with(prefix) {
        return Ok(None);
    }
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(Some(field)),
        _ => Err(PatchError::StrategicFormat(format_error.to_string())),
    }
}

fn missing_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::StrategicMergeFailed(format!(
        "map: {item} does not contain declared merge key: {merge_key}"
    ))
}

/// What identifies a list item: its merge-key value for lists of objects, the item itself
/// for lists of scalars.
fn identity<'v>(item: &'v Value, merge_key: Option<&str>) -> Result<&'v Value, PatchError> {
    match (merge_key, item) {
        (Some(key), Value::Object(fields)) => {
            fields.get(key).ok_or_else(|| missing_merge_key(item, key))
        }
        (Some(_), _) | (None, _) => Ok(item),
    }
}

fn position_of(identities: &[&Value], wanted: &Value) -> Option<usize> {
    identities
        .iter()
        .position(|candidate| scalar_equal(candidate, wanted))
}

impl StrategicMerger<'_> {
    fn strategy(&self, path: &[&str]) -> Option<Strategy> {
        merge_key(self.kind, path)
    }

    /// Merges the patch map into `original`, honouring a `$patch` directive on the map.
    fn merge_map<'p>(
        &self,
        original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<Map<String, Value>, PatchError> {
        match patch.get(DIRECTIVE) {
            None => self.merge_fields(original, patch, path),
            Some(Value::String(directive)) if directive == "replace" => {
                self.merge_fields(Map::new(), patch, path)
            }
            Some(Value::String(directive)) if directive == "delete" => Ok(Map::new()),
            Some(directive) => Err(unknown_directive(directive, patch)),
        }
    }

    fn merge_fields<'p>(
        &self,
        mut original: Map<String, Value>,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(retained) = patch.get(RETAIN_KEYS) {
            apply_retain_keys(&mut original, patch, retained)?;
        }

        // `$setElementOrder` lists are merged (with their field) first, so that the main
        // pass below leaves those fields alone.
        let mut ordered_fields: Vec<&str> = Vec::new();
        for (key, order) in patch {
            let Some(field) = directive_field(key, SET_ELEMENT_ORDER, BAD_SET_ELEMENT_ORDER)?
            else {
                continue;
            };
            path.push(field);
            let merged = self.merge_ordered_list(&mut original, field, order, patch, path);
            path.pop();
            if merged? {
                ordered_fields.push(field);
            }
        }

        let mut deletions = Vec::new();
        for (key, value) in patch {
            if key == DIRECTIVE
                || key == RETAIN_KEYS
                || key.starts_with(SET_ELEMENT_ORDER)
                || ordered_fields.contains(&key.as_str())
            {
                continue;
            }
            if let Some(field) =
                directive_field(key, DELETE_FROM_PRIMITIVE_LIST, BAD_PRIMITIVE_LIST)?
            {
                deletions.push((field, value));
                continue;
            }
            path.push(key);
            let merged = self.merge_field(&mut original, key, value, path);
            path.pop();
            merged?;
        }

        // Deletions run after the merges, so a patch that both adds to and deletes from a
        // primitive list gives the same answer whatever order its keys came in.
        for (field, removed) in deletions {
            let Value::Array(removed) = removed else {
                return Err(PatchError::StrategicFormat(BAD_PRIMITIVE_LIST.to_string()));
            };
            if let Some(Value::Array(items)) = original.get_mut(field) {
                if items.iter().any(Value::is_object) {
                    return Err(PatchError::StrategicFormat(BAD_PRIMITIVE_LIST.to_string()));
                }
                items.retain(|item| !removed.iter().any(|gone| scalar_equal(gone, item)));
            }
        }
        Ok(original)
    }

    /// Merges one field of a map patch into `original`.
    fn merge_field<'p>(
        &self,
        original: &mut Map<String, Value>,
        key: &'p str,
        value: &'p Value,
        path: &mut Vec<&'p str>,
    ) -> Result<(), PatchError> {
        if value.is_null() || is_delete_directive(value) {
            original.remove(key);
            return Ok(());
        }
        let existing = original.get_mut(key);
        match (existing, value) {
            (Some(Value::Object(existing)), Value::Object(patch_fields)) => {
                let merged = self.merge_map(std::mem::take(existing), patch_fields, path)?;
                *existing = merged;
            }
            (Some(Value::Array(existing)), Value::Array(patch_items)) => {
                let merged = self.merge_list(std::mem::take(existing), patch_items, path)?;
                *existing = merged;
            }
            _ => {
                if let Some(fresh) = self.fresh_value(value, path)? {
                    original.insert(key.to_string(), fresh);
                } else {
                    original.remove(key);
                }
            }
        }
        Ok(())
    }

    /// A patch value for a field the original does not have (or has with another type):
    /// merged onto nothing, which drops nulls and carries out directives inside it. `None`
    /// when the value deletes itself.
    fn fresh_value<'p>(
        &self,
        value: &'p Value,
        path: &mut Vec<&'p str>,
    ) -> Result<Option<Value>, PatchError> {
        match value {
            Value::Null => Ok(None),
            Value::Object(_) if is_delete_directive(value) => Ok(None),
            Value::Object(fields) => Ok(Some(Value::Object(self.merge_map(
                Map::new(),
                fields,
                path,
            )?))),
            Value::Array(items) => Ok(Some(Value::Array(self.merge_list(
                Vec::new(),
                items,
                path,
            )?))),
            scalar => Ok(Some(scalar.clone())),
        }
    }

    /// Merges a list patch into the original list by the field's strategy.
    fn merge_list<'p>(
        &self,
        original: Vec<Value>,
        patch: &'p [Value],
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, PatchError> {
        let merge_key = match self.strategy(path) {
            Some(Strategy::MergeKey { key, .. }) => Some(key),
            Some(Strategy::MergeScalars) => None,
            Some(Strategy::Replace | Strategy::RetainKeys) | None => {
                return self.replacement_list(patch, path);
            }
        };
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        match common_element_type(&original, patch)? {
            JsonType::Object => {
                let Some(merge_key) = merge_key else {
                    return Err(PatchError::StrategicMergeFailed(
                        "cannot merge lists without merge key for type map".to_string(),
                    ));
                };
                self.merge_object_list(original, patch, merge_key, path)
            }
            _ => merge_scalar_list(original, patch),
        }
    }

    /// A list replaced whole: the patch's items, each merged onto nothing.
    fn replacement_list<'p>(
        &self,
        patch: &'p [Value],
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut items = Vec::with_capacity(patch.len());
        for item in patch {
            if let Some(fresh) = self.fresh_value(item, path)? {
                items.push(fresh);
            }
        }
        Ok(items)
    }

    fn merge_object_list<'p>(
        &self,
        original: Vec<Value>,
        patch: &'p [Value],
        merge_key: &str,
        path: &mut Vec<&'p str>,
    ) -> Result<Vec<Value>, PatchError> {
        let mut merged = original;
        let mut replace = false;
        let mut patch_items: Vec<&'p Map<String, Value>> = Vec::new();
        for item in patch {
            let Value::Object(fields) = item else {
                return Err(mixed_types());
            };
            match fields.get(DIRECTIVE) {
                None => patch_items.push(fields),
                Some(Value::String(directive)) if directive == "delete" => {
                    let deleted = fields
                        .get(merge_key)
                        .ok_or_else(|| missing_merge_key(item, merge_key))?;
                    merged.retain(|existing| {
                        !existing
                            .get(merge_key)
                            .is_some_and(|value| scalar_equal(value, deleted))
                    });
                }
                Some(Value::String(directive)) if directive == "replace" => replace = true,
                Some(Value::String(directive)) if directive == "merge" => {
                    return Err(PatchError::StrategicMergeFailed(
                        "merging lists cannot yet be specified in the patch".to_string(),
                    ));
                }
                Some(directive) => return Err(unknown_directive(directive, fields)),
            }
        }
        if replace {
            let mut replaced = Vec::with_capacity(patch_items.len());
            for fields in patch_items {
                replaced.push(Value::Object(self.merge_map(Map::new(), fields, path)?));
            }
            return Ok(replaced);
        }

        let server_order: Vec<Value> = merged
            .iter()
            .map(|item| identity(item, Some(merge_key)).cloned())
            .collect::<Result<_, _>>()?;
        for fields in &patch_items {
            let wanted = fields
                .get(merge_key)
                .ok_or_else(|| missing_merge_key(&Value::Object((*fields).clone()), merge_key))?;
            let matching = merged.iter().position(|existing| {
                existing
                    .get(merge_key)
                    .is_some_and(|value| scalar_equal(value, wanted))
            });
            match matching {
                Some(index) => {
                    let existing = match std::mem::take(&mut merged[index]) {
                        Value::Object(existing) => existing,
                        _ => return Err(mixed_types()),
                    };
                    merged[index] = Value::Object(self.merge_map(existing, fields, path)?);
                }
                None => merged.push(Value::Object(self.merge_map(Map::new(), fields, path)?)),
            }
        }
        let patch_order: Vec<&Value> = patch_items
            .iter()
            .filter_map(|fields| fields.get(merge_key))
            .collect();
        let server_order: Vec<&Value> = server_order.iter().collect();
        enforce_order(merged, &patch_order, &server_order, Some(merge_key))
    }

    /// Handles `$setElementOrder/<field>`: merges the field's patch list (if any) and orders
    /// the result by the directive. Returns whether the field is now done.
    fn merge_ordered_list<'p>(
        &self,
        original: &mut Map<String, Value>,
        field: &'p str,
        order: &'p Value,
        patch: &'p Map<String, Value>,
        path: &mut Vec<&'p str>,
    ) -> Result<bool, PatchError> {
        let Value::Array(order) = order else {
            return Err(PatchError::StrategicFormat(
                BAD_SET_ELEMENT_ORDER.to_string(),
            ));
        };
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(items)) => Some(items.as_slice()),
            // A field deleted or replaced by a non-list: the main pass handles it, and
            // there is no list left to order.
            Some(_) => return Ok(false),
        };
        let original_list = match original.get_mut(field) {
            Some(Value::Array(items)) => Some(std::mem::take(items)),
            _ => None,
        };
        let merge_key = match self.strategy(path) {
            Some(Strategy::MergeKey { key, .. }) => Some(key),
            _ => None,
        };
        if let Some(patch_list) = patch_list {
            check_order_matches_patch(patch_list, order, merge_key)?;
        }
        let server_order: Vec<Value> = match &original_list {
            Some(items) => items
                .iter()
                .map(|item| identity(item, merge_key).cloned())
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let merged = match (original_list, patch_list) {
            (Some(existing), None) => existing,
            (existing, Some(patch_list)) => {
                self.merge_list(existing.unwrap_or_default(), patch_list, path)?
            }
            (None, None) => return Ok(true),
        };
        let wanted: Vec<&Value> = order
            .iter()
            .map(|item| identity(item, merge_key))
            .collect::<Result<_, _>>()?;
        let server_order: Vec<&Value> = server_order.iter().collect();
        let ordered = enforce_order(merged, &wanted, &server_order, merge_key)?;
        original.insert(field.to_string(), Value::Array(ordered));
        Ok(true)
    }
}

fn unknown_directive(directive: &Value, patch: &Map<String, Value>) -> PatchError {
    PatchError::StrategicMergeFailed(format!(
        "unknown patch type: {directive} in map: {}",
        Value::Object(patch.clone())
    ))
}

fn mixed_types() -> PatchError {
    PatchError::StrategicMergeFailed("list element types are not identical".to_string())
}

/// `$retainKeys`: every key the patch sets must be listed, and the original keeps only the
/// listed keys (before the patch is merged in).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retained: &Value,
) -> Result<(), PatchError> {
    let Value::Array(retained) = retained else {
        return Err(PatchError::StrategicFormat(BAD_RETAIN_KEYS.to_string()));
    };
    let is_retained = |key: &str| retained.iter().any(|name| name.as_str() == Some(key));
    for (key, value) in patch {
        let directive = key == DIRECTIVE
            || key == RETAIN_KEYS
            || key.starts_with(SET_ELEMENT_ORDER)
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !directive && !value.is_null() && !is_retained(key) {
            return Err(PatchError::StrategicFormat(BAD_RETAIN_KEYS.to_string()));
        }
    }
    original.retain(|key, _| is_retained(key));
    Ok(())
}

/// The type shared by every item of both lists; lists of lists are refused as upstream does.
fn common_element_type(original: &[Value], patch: &[Value]) -> Result<JsonType, PatchError> {
    let mut types = original.iter().chain(patch).map(json_type);
    let Some(first) = types.next() else {
        return Ok(JsonType::Null);
    };
    if first == JsonType::List {
        return Err(PatchError::StrategicInvalid(
            "lists of lists are not supported".to_string(),
        ));
    }
    if types.any(|other| other != first) {
        return Err(mixed_types());
    }
    Ok(first)
}

/// A list of scalars with merge strategy: a set union that keeps the patch's order for the
/// patch's items.
fn merge_scalar_list(original: Vec<Value>, patch: &[Value]) -> Result<Vec<Value>, PatchError> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.iter().chain(patch) {
        if !merged.iter().any(|seen| scalar_equal(seen, item)) {
            merged.push(item.clone());
        }
    }
    let patch_order: Vec<&Value> = patch.iter().collect();
    let server_order: Vec<&Value> = original.iter().collect();
    enforce_order(merged, &patch_order, &server_order, None)
}

/// Orders a merged list as upstream does: the items named in `wanted` follow its order, the
/// others (server-only items) keep the live order, and the two runs are interleaved so
/// that a server-only item stays before a wanted item it preceded in the live list. Wanted
/// items the live list does not have come before the server-only items that follow them,
/// which is why a strategic patch without `$setElementOrder` puts new items first.
fn enforce_order(
    merged: Vec<Value>,
    wanted: &[&Value],
    server_order: &[&Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut wanted_items: Vec<(usize, Value)> = Vec::new();
    let mut server_items: Vec<(Option<usize>, Value)> = Vec::new();
    for item in merged {
        let id = identity(&item, merge_key)?;
        match position_of(wanted, id) {
            Some(rank) => wanted_items.push((rank, item)),
            None => {
                let rank = position_of(server_order, id);
                server_items.push((rank, item));
            }
        }
    }
    wanted_items.sort_by_key(|(rank, _)| *rank);
    // Items absent from the live list sort last; `sort_by_key` is stable.
    server_items.sort_by_key(|(rank, _)| rank.unwrap_or(usize::MAX));

    let live_position = |item: &Value| -> Option<usize> {
        identity(item, merge_key)
            .ok()
            .and_then(|id| position_of(server_order, id))
    };
    let mut ordered = Vec::with_capacity(wanted_items.len() + server_items.len());
    let mut wanted_iter = wanted_items.into_iter().map(|(_, item)| item).peekable();
    let mut server_iter = server_items.into_iter().map(|(_, item)| item).peekable();
    loop {
        let take_server = match (server_iter.peek(), wanted_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(server_item), Some(wanted_item)) => {
                match (live_position(server_item), live_position(wanted_item)) {
                    (Some(server_rank), Some(wanted_rank)) => server_rank < wanted_rank,
                    _ => false,
                }
            }
        };
        let next = if take_server {
            server_iter.next()
        } else {
            wanted_iter.next()
        };
        ordered.extend(next);
    }
    Ok(ordered)
}

/// Upstream checks that the patch list's items appear in the `$setElementOrder` list in the
/// same relative order (delete directives aside).
fn check_order_matches_patch(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = patch_list
        .iter()
        .filter(|item| directive_of(item).is_none())
        .collect();
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < items.len() && order_index < order.len() {
        let patch_id = identity(items[patch_index], merge_key)?;
        let order_id = identity(&order[order_index], merge_key)?;
        if scalar_equal(patch_id, order_id) {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < items.len() {
        return Err(PatchError::StrategicMergeFailed(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// For server-side apply lite: every object whose schema says `retainKeys` gets a
/// `$retainKeys` listing the keys the configuration sets, so the live object drops the
/// alternatives the configuration no longer names.
fn mark_retained_keys(kind: &str, configuration: &mut Map<String, Value>, path: &mut Vec<String>) {
    for (key, value) in configuration.iter_mut() {
        if key.starts_with('$') {
            continue;
        }
        path.push(key.clone());
        let field_path: Vec<&str> = path.iter().map(String::as_str).collect();
        let strategy = merge_key(kind, &field_path);
        match value {
            Value::Object(fields) => {
                if strategy == Some(Strategy::RetainKeys) {
                    add_retain_keys_directive(fields);
                }
                mark_retained_keys(kind, fields, path);
            }
            Value::Array(items) => {
                let items_retain_keys = matches!(
                    strategy,
                    Some(Strategy::MergeKey {
                        retain_keys: true,
                        ..
                    })
                );
                for item in items.iter_mut() {
                    if let Value::Object(fields) = item {
                        if items_retain_keys {
                            add_retain_keys_directive(fields);
                        }
                        mark_retained_keys(kind, fields, path);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

fn add_retain_keys_directive(fields: &mut Map<String, Value>) {
    // An empty object says nothing about which alternative to keep (`kubectl create`
    // writes `strategy: {}`), so it must not clear the live one.
    if fields.is_empty() || fields.contains_key(RETAIN_KEYS) || fields.contains_key(DIRECTIVE) {
        return;
    }
    let kept: Vec<Value> = fields
        .iter()
        .filter(|(key, value)| !key.starts_with('$') && !value.is_null())
        .map(|(key, _)| Value::String(key.clone()))
        .collect();
    fields.insert(RETAIN_KEYS.to_string(), Value::Array(kept));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strategic(kind: &str, original: &Value, patch: Value) -> Result<Value, PatchError> {
        apply_patch(
            kind,
            original,
            PatchType::StrategicMerge,
            patch.to_string().as_bytes(),
        )
    }

    fn merge(original: &Value, patch: Value) -> Result<Value, PatchError> {
        apply_patch(
            "Pod",
            original,
            PatchType::Merge,
            patch.to_string().as_bytes(),
        )
    }

    fn json_patch_of(original: &Value, operations: Value) -> Result<Value, PatchError> {
        apply_patch(
            "Pod",
            original,
            PatchType::Json,
            operations.to_string().as_bytes(),
        )
    }

    // -----------------------------------------------------------------------------------------
    // Content types and errors

    #[test]
    fn content_types_name_the_patch_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            (
                "application/strategic-merge-patch+json; charset=utf-8",
                Some(PatchType::StrategicMerge),
            ),
            ("Application/Apply-Patch+YAML", Some(PatchType::Apply)),
            ("application/json", None),
            ("", None),
        ];
        for (content_type, expected) in cases {
            assert_eq!(
                PatchType::from_content_type(content_type),
                expected,
                "{content_type}"
            );
            if let Some(patch_type) = expected {
                assert_eq!(
                    PatchType::from_content_type(patch_type.content_type()),
                    expected
                );
            }
        }
    }

    #[test]
    fn errors_carry_kube_apiserver_status() {
        let malformed = merge(&json!({}), json!([1])).unwrap_err();
        assert_eq!((malformed.code(), malformed.reason()), (400, "BadRequest"));
        assert!(malformed.is_bad_request());
        let not_json =
            apply_patch("Pod", &json!({}), PatchType::StrategicMerge, b"{nope").unwrap_err();
        assert!(matches!(not_json, PatchError::Malformed(_)), "{not_json:?}");
        assert!(not_json.to_string().starts_with("error decoding patch: "));

        let failed_test = json_patch_of(
            &json!({"a": 1}),
            json!([{"op": "test", "path": "/a", "value": 2}]),
        )
        .unwrap_err();
        assert_eq!((failed_test.code(), failed_test.reason()), (422, "Invalid"));
        let api_error = ApiError::from(failed_test);
        assert_eq!(api_error.code, 422);
        assert_eq!(api_error.reason, "Invalid");
        assert_eq!(
            api_error.message,
            "the server rejected our request due to an error in our request"
        );
        assert_eq!(api_error.details, Some(json!({})));

        let too_many = Value::Array(vec![
            json!({"op": "test", "path": "", "value": {}});
            MAX_JSON_PATCH_OPERATIONS + 1
        ]);
        let error = json_patch_of(&json!({}), too_many).unwrap_err();
        assert_eq!(
            error,
            PatchError::TooManyOperations(MAX_JSON_PATCH_OPERATIONS + 1)
        );
        assert_eq!(ApiError::from(error).code, 413);
    }

    // -----------------------------------------------------------------------------------------
    // JSON merge patch

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        // The examples table of RFC 7386, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (original, patch, expected) in cases {
            let mut target = original.clone();
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "{original} + {patch}");
        }
        // Non-object patches replace the target (the RFC's `["c"]` and `null` rows).
        let mut target = json!({"a": "b"});
        merge_patch(&mut target, &json!(["c"]));
        assert_eq!(target, json!(["c"]));
    }

    #[test]
    fn kubectl_label_and_annotate_merge_patches() {
        let pod = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": "old"}}, "spec": {"containers": [{"name": "c"}]}});
        // kubectl label pod web env=prod --overwrite tier=back
        let labelled = merge(
            &pod,
            json!({"metadata": {"labels": {"env": "prod", "tier": "back"}}}),
        )
        .unwrap();
        assert_eq!(
            labelled["metadata"]["labels"],
            json!({"app": "web", "env": "prod", "tier": "back"})
        );
        // kubectl label pod web app-
        let unlabelled = merge(&labelled, json!({"metadata": {"labels": {"app": null}}})).unwrap();
        assert_eq!(
            unlabelled["metadata"]["labels"],
            json!({"env": "prod", "tier": "back"})
        );
        // kubectl annotate pod web note- description='a web pod'
        let annotated = merge(
            &unlabelled,
            json!({"metadata": {"annotations": {"description": "a web pod", "note": null}}}),
        )
        .unwrap();
        assert_eq!(
            annotated["metadata"]["annotations"],
            json!({"description": "a web pod"})
        );
        assert_eq!(annotated["spec"], pod["spec"]);
        // The original is untouched.
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn kubectl_scale_merge_patch_on_scale() {
        let scale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                           "metadata": {"name": "web"}, "spec": {"replicas": 1},
                           "status": {"replicas": 1, "selector": "app=web"}});
        let scaled = apply_patch(
            "Scale",
            &scale,
            PatchType::Merge,
            br#"{"spec":{"replicas":3}}"#,
        )
        .unwrap();
        assert_eq!(scaled["spec"]["replicas"], 3);
        assert_eq!(scaled["status"], scale["status"]);
    }

    // -----------------------------------------------------------------------------------------
    // JSON patch

    #[test]
    fn json_patch_operations() {
        let original = json!({"metadata": {"labels": {"a/b": "1", "m~n": "2"}},
                              "list": [1, 2, 3], "nested": {"x": {"y": true}}});
        let patched = json_patch_of(
            &original,
            json!([
                {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
                {"op": "test", "path": "/metadata/labels/m~0n", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a~1b", "value": "changed"},
                {"op": "remove", "path": "/metadata/labels/m~0n"},
                {"op": "add", "path": "/list/-", "value": 4},
                {"op": "add", "path": "/list/0", "value": 0},
                {"op": "remove", "path": "/list/2"},
                {"op": "copy", "from": "/nested/x", "path": "/copied"},
                {"op": "move", "from": "/nested/x/y", "path": "/moved"},
                {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}},
                {"op": "test", "path": "/list", "value": [0, 1, 3, 4]},
            ]),
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"a/b": "changed"}, "annotations": {"k": "v"}},
                   "list": [0, 1, 3, 4], "nested": {"x": {}}, "copied": {"y": true},
                   "moved": true})
        );
        // The root can be replaced or added to.
        let replaced = json_patch_of(
            &original,
            json!([{"op": "replace", "path": "", "value": {"new": 1}}]),
        )
        .unwrap();
        assert_eq!(replaced, json!({"new": 1}));
        // As in kube-apiserver's JSON patch library, negative indices count from the end.
        let negative = json_patch_of(
            &json!({"list": [1, 2, 3]}),
            json!([
                {"op": "remove", "path": "/list/-1"},
                {"op": "add", "path": "/list/-1", "value": 9},
                {"op": "replace", "path": "/list/-3", "value": 0},
                {"op": "add", "path": "/list/-4", "value": -1},
            ]),
        )
        .unwrap();
        assert_eq!(negative, json!({"list": [-1, 0, 2, 9]}));
        // Numbers compare by value.
        json_patch_of(
            &json!({"n": 1}),
            json!([{"op": "test", "path": "/n", "value": 1.0}]),
        )
        .unwrap();
    }

    #[test]
    fn json_patch_failures_are_unprocessable_and_atomic() {
        let original = json!({"metadata": {"name": "x"}, "list": [1]});
        let failing = [
            json!([{"op": "test", "path": "/metadata/name", "value": "y"}]),
            json!([{"op": "remove", "path": "/metadata/labels"}]),
            json!([{"op": "replace", "path": "/missing", "value": 1}]),
            json!([{"op": "add", "path": "/missing/child", "value": 1}]),
            json!([{"op": "add", "path": "/list/5", "value": 1}]),
            json!([{"op": "add", "path": "/list/x", "value": 1}]),
            json!([{"op": "add", "path": "/list/-3", "value": 1}]),
            json!([{"op": "remove", "path": "/list/-2"}]),
            json!([{"op": "remove", "path": "/list/-"}]),
            json!([{"op": "add", "path": "metadata", "value": 1}]),
            json!([{"op": "add", "path": "/metadata/~2", "value": 1}]),
            json!([{"op": "move", "from": "/metadata", "path": "/metadata/inner"}]),
            json!([{"op": "copy", "from": "/nothing", "path": "/x"}]),
            json!([{"op": "add", "path": "/x"}]),
            json!([{"op": "frobnicate", "path": "/x"}]),
            json!([{"path": "/x"}]),
            json!([{"op": "remove", "path": ""}]),
            // The first operation applies, the second fails: nothing is kept.
            json!([{"op": "add", "path": "/added", "value": 1},
                   {"op": "test", "path": "/added", "value": 2}]),
        ];
        for operations in failing {
            let error = json_patch_of(&original, operations.clone()).unwrap_err();
            assert!(
                matches!(error, PatchError::JsonPatchFailed(_)),
                "{operations}: {error:?}"
            );
            assert_eq!(error.code(), 422);
        }
        for malformed in [json!({"op": "add"}), json!([1]), json!("x")] {
            let error = json_patch_of(&original, malformed.clone()).unwrap_err();
            assert!(matches!(error, PatchError::Malformed(_)), "{malformed}");
        }
    }

    #[test]
    fn json_patch_cannot_build_unreadable_or_huge_documents() {
        // Each step copies a subtree one level deeper; the result must stay readable.
        let deep = |levels: usize| {
            let mut value = json!(1);
            for _ in 0..levels {
                value = json!({"a": value});
            }
            value
        };
        // The innermost scalar sits inside 126 objects; replacing it with `{}` reaches the
        // limit exactly.
        let innermost = format!("/x{}", "/a".repeat(MAX_NESTING_DEPTH - 2));
        let at_limit = json_patch_of(
            &json!({"x": deep(MAX_NESTING_DEPTH - 2)}),
            json!([{"op": "replace", "path": innermost, "value": {}}]),
        )
        .unwrap();
        assert_eq!(nesting_depth(&at_limit), MAX_NESTING_DEPTH);
        let bytes = serde_json::to_vec(&at_limit).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), at_limit);
        let too_deep = json_patch_of(
            &at_limit,
            json!([{"op": "copy", "from": "/x", "path": "/x/a"}]),
        )
        .unwrap_err();
        assert!(too_deep.to_string().contains("levels deep"), "{too_deep}");
        assert_eq!(too_deep.code(), 422);

        // Copies of the root double the object; the copy budget stops them.
        let big = json!({"data": "x".repeat(1 << 20)});
        let doubling: Vec<Value> = (0..4)
            .map(|step| json!({"op": "copy", "from": "", "path": format!("/copy{step}")}))
            .collect();
        let error = json_patch_of(&big, Value::Array(doubling)).unwrap_err();
        assert!(error.to_string().starts_with("Unable to copy"), "{error}");
    }

    #[test]
    fn nesting_depth_counts_containers() {
        assert_eq!(nesting_depth(&json!(1)), 0);
        assert_eq!(nesting_depth(&json!({})), 1);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
    }

    // -----------------------------------------------------------------------------------------
    // Strategic merge patch

    fn dep1() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "dep", "namespace": "default", "finalizers": ["example.com/a"],
                         "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.25", "args": ["a", "b"],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                             "ports": [{"containerPort": 80}, {"containerPort": 443}],
                             "volumeMounts": [{"mountPath": "/data", "name": "data"}]},
                            {"name": "sidecar", "image": "busybox"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    #[test]
    fn kubectl_apply_deployment_patch_from_reference() {
        // The three-way patch kubectl sent for dep1.yaml → dep2.yaml (kubectl-api.md).
        let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["example.com/a"],"$setElementOrder/finalizers":["example.com/b"],"finalizers":["example.com/b"]},
            "spec":{"replicas":3,
             "strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"},
             "template":{"spec":{
              "$setElementOrder/containers":[{"name":"web"}],"$setElementOrder/volumes":[{"name":"data"}],
              "containers":[{"$setElementOrder/env":[{"name":"B"}],"$setElementOrder/ports":[{"containerPort":8080},{"containerPort":80}],
                             "$setElementOrder/volumeMounts":[{"mountPath":"/data2"}],
                             "args":["c"],"image":"nginx:1.27","name":"web",
                             "env":[{"name":"B","value":"3"},{"$patch":"delete","name":"A"}],
                             "ports":[{"containerPort":8080},{"$patch":"delete","containerPort":443}],
                             "volumeMounts":[{"mountPath":"/data2","name":"data"},{"$patch":"delete","mountPath":"/data"}]},
                            {"$patch":"delete","name":"sidecar"}],
              "volumes":[{"$retainKeys":["hostPath","name"],"emptyDir":null,"hostPath":{"path":"/tmp"},"name":"data"}]}}}});
        let dep2 = strategic("Deployment", &dep1(), patch).unwrap();
        let expected = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "dep", "namespace": "default", "finalizers": ["example.com/b"],
                         "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.27", "args": ["c"],
                             "env": [{"name": "B", "value": "3"}],
                             "ports": [{"containerPort": 8080}, {"containerPort": 80}],
                             "volumeMounts": [{"mountPath": "/data2", "name": "data"}]}
                        ],
                        "volumes": [{"name": "data", "hostPath": {"path": "/tmp"}}]
                    }
                }
            }
        });
        assert_eq!(dep2, expected);
        // Lists are compared in order by `==`; spell the orders out for the failure message.
        assert_eq!(
            dep2["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 8080}, {"containerPort": 80}])
        );
    }

    fn live_service() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nginx", "namespace": "default",
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "selector": {"app": "nginx"}, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
                               {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]}
        })
    }

    #[test]
    fn kubectl_apply_service_ports_add_change_delete() {
        // New config: port 80 now targets 8080, 9090 is added, 443 is gone.
        let patch = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"}},
            "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 9090}],
                     "ports": [{"port": 80, "targetPort": 8080},
                               {"name": "metrics", "port": 9090, "targetPort": 9090},
                               {"$patch": "delete", "port": 443}]}
        });
        let patched = strategic("Service", &live_service(), patch).unwrap();
        assert_eq!(
            patched["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                   {"name": "metrics", "port": 9090, "targetPort": 9090}])
        );
        assert_eq!(patched["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            patched["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "new"
        );
    }

    #[test]
    fn new_list_items_come_first_without_set_element_order() {
        // Upstream's ordering: patch items the live list lacks go before the server-only
        // items (kustomize documents this as "prepend").
        let patch = json!({"spec": {"ports": [{"name": "metrics", "port": 9090}]}});
        let patched = strategic("Service", &live_service(), patch).unwrap();
        let ports: Vec<&Value> = patched["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|port| &port["port"])
            .collect();
        assert_eq!(ports, [&json!(9090), &json!(80), &json!(443)]);

        // Patch items that exist keep the patch's order, server-only items stay in place
        // relative to them (upstream's "preserve the order from the patch" cases).
        let list = json!({"spec": {"ports": [{"port": 1}, {"port": 2, "name": "b"}, {"port": 3}]}});
        let patched = strategic(
            "Service",
            &list,
            json!({"spec": {"ports": [{"port": 3, "name": "c"}, {"port": 1, "name": "a"}]}}),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["ports"],
            json!([{"port": 2, "name": "b"}, {"port": 3, "name": "c"}, {"port": 1, "name": "a"}])
        );
    }

    #[test]
    fn kubectl_set_image() {
        let deployment = json!({"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "nginx", "image": "nginx", "resources": {},
                            "ports": [{"containerPort": 80}]},
                           {"name": "log", "image": "busybox"}]}}}});
        let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"log"}],"containers":[{"image":"nginx:1.27","name":"nginx"}]}}}});
        let patched = strategic("Deployment", &deployment, patch).unwrap();
        let mut expected = deployment.clone();
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
        assert_eq!(patched, expected);
    }

    #[test]
    fn kubectl_label_as_strategic_patch_with_null() {
        let patched = strategic(
            "Pod",
            &json!({"metadata": {"labels": {"app": "web", "gone": "x"}}}),
            json!({"metadata": {"labels": {"gone": null, "new": "y", "absent": null}}}),
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"app": "web", "new": "y"}}})
        );
    }

    #[test]
    fn patch_replace_and_delete_directives() {
        let service = live_service();
        // `$patch: replace` inside a merge list replaces the whole list.
        let replaced = strategic(
            "Service",
            &service,
            json!({"spec": {"ports": [{"$patch": "replace"}, {"port": 1234}]}}),
        )
        .unwrap();
        assert_eq!(replaced["spec"]["ports"], json!([{"port": 1234}]));
        let emptied = strategic(
            "Service",
            &service,
            json!({"spec": {"ports": [{"$patch": "replace"}]}}),
        )
        .unwrap();
        assert_eq!(emptied["spec"]["ports"], json!([]));

        // `$patch: replace` in a map replaces the map.
        let selector = strategic(
            "Service",
            &service,
            json!({"spec": {"selector": {"$patch": "replace", "run": "other"}}}),
        )
        .unwrap();
        assert_eq!(selector["spec"]["selector"], json!({"run": "other"}));

        // `$patch: delete` in a map deletes it; at the top level it empties the object.
        let deleted = strategic(
            "Service",
            &service,
            json!({"spec": {"selector": {"$patch": "delete"}}}),
        )
        .unwrap();
        assert!(deleted["spec"].get("selector").is_none());
        assert_eq!(deleted["spec"]["clusterIP"], "10.96.0.10");
        let everything = strategic("Service", &service, json!({"$patch": "delete"})).unwrap();
        assert_eq!(everything, json!({}));

        // `$patch: delete` items remove every item with that key.
        let one_port = strategic(
            "Service",
            &service,
            json!({"spec": {"ports": [{"$patch": "delete", "port": 80}]}}),
        )
        .unwrap();
        assert_eq!(
            one_port["spec"]["ports"],
            json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}])
        );
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let pod = json!({"spec": {
            "containers": [{"name": "c", "args": ["a", "b"], "command": ["sh"]}],
            "tolerations": [{"key": "a", "operator": "Exists"}]}});
        let patched = strategic(
            "Pod",
            &pod,
            json!({"spec": {"containers": [{"name": "c", "args": ["z"]}],
                            "tolerations": [{"key": "b", "operator": "Exists", "effect": null}]}}),
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"spec": {
                "containers": [{"name": "c", "args": ["z"], "command": ["sh"]}],
                "tolerations": [{"key": "b", "operator": "Exists"}]}})
        );
        // A list under an unknown kind is replaced too.
        let other = strategic(
            "EndpointSlice",
            &json!({"endpoints": [{"addresses": ["10.0.0.1"]}]}),
            json!({"endpoints": [{"addresses": ["10.0.0.2"]}]}),
        )
        .unwrap();
        assert_eq!(other, json!({"endpoints": [{"addresses": ["10.0.0.2"]}]}));
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let object = json!({"metadata": {"finalizers": ["a", "b"]}});
        let added = strategic(
            "Namespace",
            &object,
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        )
        .unwrap();
        assert_eq!(added["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let removed = strategic(
            "Pod",
            &object,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "zzz"]}}),
        )
        .unwrap();
        assert_eq!(removed["metadata"]["finalizers"], json!(["b"]));
        let bad = strategic(
            "Pod",
            &object,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        )
        .unwrap_err();
        assert_eq!(
            bad,
            PatchError::StrategicFormat(BAD_PRIMITIVE_LIST.to_string())
        );
    }

    #[test]
    fn owner_references_and_conditions_merge_by_key() {
        let pod = json!({
            "metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a"}, {"uid": "2", "name": "rs-b"}]},
            "status": {"phase": "Pending",
                       "conditions": [{"type": "PodScheduled", "status": "True"},
                                      {"type": "Ready", "status": "False"}],
                       "podIPs": [{"ip": "10.0.0.1"}],
                       "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0}]}
        });
        let patched = strategic(
            "Pod",
            &pod,
            json!({
                "metadata": {"ownerReferences": [{"uid": "2", "controller": true}]},
                "status": {"phase": "Running",
                           "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
                           "conditions": [{"type": "Ready", "status": "True"}],
                           "podIPs": [{"ip": "fd00::1"}],
                           "containerStatuses": [{"name": "c", "ready": true}]}
            }),
        )
        .unwrap();
        assert_eq!(
            patched["metadata"]["ownerReferences"],
            json!([{"uid": "1", "name": "rs-a"}, {"uid": "2", "name": "rs-b", "controller": true}])
        );
        assert_eq!(
            patched["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}])
        );
        assert_eq!(
            patched["status"]["podIPs"],
            json!([{"ip": "fd00::1"}, {"ip": "10.0.0.1"}])
        );
        // containerStatuses has no merge strategy: replaced whole.
        assert_eq!(
            patched["status"]["containerStatuses"],
            json!([{"name": "c", "ready": true}])
        );
    }

    #[test]
    fn retain_keys_clears_unlisted_keys_and_checks_the_patch() {
        let deployment = dep1();
        let patched = strategic(
            "Deployment",
            &deployment,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        )
        .unwrap();
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        // A key set by the patch but missing from the list is a malformed patch.
        let error = strategic(
            "Deployment",
            &deployment,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                         "rollingUpdate": {"maxSurge": 2}}}}),
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::StrategicFormat(BAD_RETAIN_KEYS.to_string())
        );
        assert_eq!(error.code(), 400);
    }

    #[test]
    fn set_element_order_reorders_and_is_checked() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let reordered = strategic(
            "Pod",
            &pod,
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
        )
        .unwrap();
        assert_eq!(
            reordered["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])
        );
        // The patch list must follow the order list.
        let error = strategic(
            "Pod",
            &pod,
            json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                            "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]}}),
        )
        .unwrap_err();
        assert!(
            matches!(error, PatchError::StrategicMergeFailed(_)),
            "{error:?}"
        );
        // A malformed directive key.
        let error = strategic(
            "Pod",
            &pod,
            json!({"spec": {"$setElementOrderContainers": []}}),
        )
        .unwrap_err();
        assert_eq!(
            error,
            PatchError::StrategicFormat(BAD_SET_ELEMENT_ORDER.to_string())
        );
    }

    #[test]
    fn new_subtrees_carry_no_directives_or_nulls() {
        let patched = strategic(
            "Deployment",
            &json!({"spec": {}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "web", "image": "x", "resources": null,
                                "env": [{"name": "A", "value": "1"}, {"$patch": "delete", "name": "B"}]}],
                "volumes": [{"$retainKeys": ["name", "emptyDir"], "name": "v", "emptyDir": {}, "hostPath": null}]
            }}}}),
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "web", "image": "x", "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            }}}})
        );
    }

    #[test]
    fn strategic_merge_errors() {
        let service = live_service();
        let cases = [
            // A merge list item without its merge key.
            (json!({"spec": {"ports": [{"name": "x"}]}}), 500),
            (
                json!({"spec": {"ports": [{"$patch": "delete", "name": "x"}]}}),
                500,
            ),
            // Unknown directives.
            (json!({"spec": {"selector": {"$patch": "explode"}}}), 500),
            (
                json!({"spec": {"ports": [{"$patch": "merge", "port": 80}]}}),
                500,
            ),
            // Mixed item types in a merge list.
            (json!({"spec": {"ports": [1]}}), 500),
            // Lists of lists.
            (json!({"metadata": {"finalizers": [["a"]]}}), 422),
            (
                json!({"spec": {"ports": [{"port": 80}], "$retainKeys": "ports"}}),
                400,
            ),
        ];
        for (patch, code) in cases {
            let error = strategic("Service", &service, patch.clone()).unwrap_err();
            assert_eq!(error.code(), code, "{patch}: {error}");
        }
    }

    #[test]
    fn merge_key_table() {
        let container_ports = ["spec", "template", "spec", "containers", "ports"];
        for kind in ["Deployment", "ReplicaSet", "StatefulSet"] {
            assert_eq!(
                merge_key(kind, &container_ports),
                Some(Strategy::MergeKey {
                    key: "containerPort",
                    retain_keys: false
                })
            );
        }
        assert_eq!(merge_key("Service", &container_ports), None);
        assert_eq!(
            merge_key("Pod", &["spec", "initContainers", "volumeMounts"]),
            Some(Strategy::MergeKey {
                key: "mountPath",
                retain_keys: false
            })
        );
        assert_eq!(
            merge_key("Pod", &["spec", "volumes"]),
            Some(Strategy::MergeKey {
                key: "name",
                retain_keys: true
            })
        );
        assert_eq!(
            merge_key("Deployment", &["spec", "strategy"]),
            Some(Strategy::RetainKeys)
        );
        assert_eq!(merge_key("StatefulSet", &["spec", "strategy"]), None);
        assert_eq!(
            merge_key("StatefulSet", &["spec", "volumeClaimTemplates"]),
            Some(Strategy::Replace)
        );
        assert_eq!(
            merge_key("Node", &["status", "addresses"]),
            Some(Strategy::MergeKey {
                key: "type",
                retain_keys: false
            })
        );
        assert_eq!(
            merge_key("Event", &["metadata", "finalizers"]),
            Some(Strategy::MergeScalars)
        );
        assert_eq!(
            merge_key(
                "Deployment",
                &["spec", "template", "metadata", "ownerReferences"]
            ),
            Some(Strategy::MergeKey {
                key: "uid",
                retain_keys: false
            })
        );
        assert_eq!(
            merge_key("Pod", &["spec", "tolerations"]),
            Some(Strategy::Replace)
        );
        assert_eq!(merge_key("Pod", &["spec", "containers", "args"]), None);
    }

    // -----------------------------------------------------------------------------------------
    // Server-side apply (lite)

    #[test]
    fn apply_merges_yaml_or_json_configuration() {
        let yaml = b"apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\n  labels:\n    app: nginx\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n";
        let applied = apply_patch("Service", &live_service(), PatchType::Apply, yaml).unwrap();
        assert_eq!(applied["metadata"]["labels"], json!({"app": "nginx"}));
        assert_eq!(applied["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(applied["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(applied["spec"]["ports"][0]["name"], "http");

        // kubectl sends JSON; with no live object the body comes back as the object.
        let body = br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":1}]}}"#;
        let created = apply_patch("Service", &json!({}), PatchType::Apply, body).unwrap();
        assert_eq!(created, serde_json::from_slice::<Value>(body).unwrap());

        let error = apply_patch(
            "Service",
            &json!({}),
            PatchType::Apply,
            b"- just\n- a list\n",
        )
        .unwrap_err();
        assert!(matches!(error, PatchError::MalformedApply(_)), "{error:?}");
        let error =
            apply_patch("Service", &json!({}), PatchType::Apply, b"a: [unclosed").unwrap_err();
        assert_eq!(error.code(), 400);
        assert_eq!(
            error.to_string(),
            "error decoding YAML: line 1 column 4: unclosed bracket '['"
        );

        // YAML 1.1 octal, as kube-apiserver reads it.
        let modes = apply_patch(
            "Pod",
            &json!({}),
            PatchType::Apply,
            b"spec:\n  volumes:\n  - name: s\n    secret:\n      defaultMode: 0644\n",
        )
        .unwrap();
        assert_eq!(
            modes["spec"]["volumes"][0]["secret"]["defaultMode"],
            json!(420)
        );
    }

    #[test]
    fn apply_switches_union_members_of_retain_keys_fields() {
        let configuration = json!({"spec": {
            "strategy": {"type": "Recreate"},
            "template": {"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/tmp"}}]}}}});
        let applied = apply_patch(
            "Deployment",
            &dep1(),
            PatchType::Apply,
            configuration.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(applied["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            applied["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/tmp"}}])
        );
        // An empty strategy says nothing and keeps the live one.
        let applied = apply_patch(
            "Deployment",
            &dep1(),
            PatchType::Apply,
            br#"{"spec":{"strategy":{}}}"#,
        )
        .unwrap();
        assert_eq!(applied["spec"]["strategy"], dep1()["spec"]["strategy"]);
    }

    // -----------------------------------------------------------------------------------------
    // Properties

    mod properties {
        use super::{PatchType, apply_patch, dep1, live_service, merge_patch, strategic};
        use proptest::prelude::*;
        use serde_json::{Map, Value};

        /// JSON without object members set to null: a merge patch cannot express those.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "[a-z]{0,3}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-d]{1,2}", inner, 0..5)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        fn json_map() -> impl Strategy<Value = Value> {
            prop::collection::btree_map("[a-d]{1,2}", json_value(), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect()))
        }

        /// The merge patch that turns `from` into `to`.
        fn merge_diff(from: &Value, to: &Value) -> Value {
            let (Value::Object(from_fields), Value::Object(to_fields)) = (from, to) else {
                return to.clone();
            };
            let mut patch = Map::new();
            for key in from_fields.keys() {
                if !to_fields.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, target) in to_fields {
                match from_fields.get(key) {
                    Some(source) if source == target => {}
                    Some(source) if source.is_object() && target.is_object() => {
                        patch.insert(key.clone(), merge_diff(source, target));
                    }
                    _ => {
                        patch.insert(key.clone(), target.clone());
                    }
                }
            }
            Value::Object(patch)
        }

        /// Keys and values that steer the strategic merge into its directives and lists.
        fn patch_like_value() -> impl Strategy<Value = Value> {
            let key = prop::sample::select(vec![
                "$patch",
                "$retainKeys",
                "$setElementOrder/containers",
                "$setElementOrder/finalizers",
                "$setElementOrder/ports",
                "$deleteFromPrimitiveList/finalizers",
                "$setElementOrder",
                "metadata",
                "finalizers",
                "spec",
                "template",
                "containers",
                "ports",
                "port",
                "containerPort",
                "name",
                "strategy",
                "volumes",
                "type",
                "op",
                "path",
                "from",
                "value",
            ]);
            let leaf = prop_oneof![
                Just(Value::Null),
                prop::sample::select(vec![
                    "delete",
                    "replace",
                    "merge",
                    "web",
                    "add",
                    "remove",
                    "move",
                    "copy",
                    "test",
                    "/spec",
                    "/spec/ports/-",
                    "/metadata/~1x",
                    "",
                    "~",
                ])
                .prop_map(Value::from),
                (0i64..3).prop_map(Value::from),
                any::<bool>().prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 64, 5, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|fields| {
                        Value::Object(
                            fields
                                .into_iter()
                                .map(|(key, value)| (key.to_string(), value))
                                .collect(),
                        )
                    }),
                ]
            })
        }

        fn any_patch_type() -> impl Strategy<Value = PatchType> {
            prop::sample::select(vec![
                PatchType::Json,
                PatchType::Merge,
                PatchType::StrategicMerge,
                PatchType::Apply,
            ])
        }

        fn any_kind() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["Deployment", "Pod", "Service", "Node", "Scale"])
        }

        proptest! {
            #[test]
            fn merge_patch_of_a_diff_rebuilds_the_target(from in json_map(), to in json_map()) {
                let patch = merge_diff(&from, &to);
                let mut rebuilt = from.clone();
                merge_patch(&mut rebuilt, &patch);
                prop_assert_eq!(&rebuilt, &to);
                // The same through the API entry point.
                let rebuilt = apply_patch("Pod", &from, PatchType::Merge, patch.to_string().as_bytes());
                prop_assert_eq!(rebuilt, Ok(to));
            }

            #[test]
            fn strategic_patch_without_schema_lists_is_a_merge_patch(
                from in json_map(),
                to in json_map(),
            ) {
                // None of the generated field paths is in the schema table, so every list is
                // replaced whole and, with no directives, a strategic patch is RFC 7386.
                let patch = merge_diff(&from, &to);
                let patched = strategic("Deployment", &from, patch);
                prop_assert_eq!(patched, Ok(to));
            }

            #[test]
            fn no_byte_string_panics(
                kind in any_kind(),
                patch_type in any_patch_type(),
                body in prop::collection::vec(any::<u8>(), 0..64),
            ) {
                let _ = apply_patch(kind, &dep1(), patch_type, &body);
            }

            #[test]
            fn no_structured_patch_panics(
                kind in any_kind(),
                patch_type in any_patch_type(),
                original in patch_like_value(),
                patch in patch_like_value(),
            ) {
                let body = patch.to_string();
                let _ = apply_patch(kind, &original, patch_type, body.as_bytes());
                let _ = apply_patch(kind, &dep1(), patch_type, body.as_bytes());
                let _ = apply_patch(kind, &live_service(), patch_type, body.as_bytes());
            }
        }
    }
}

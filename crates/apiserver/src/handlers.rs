//! Resource requests: get, list, create, update, patch, delete, deletecollection, and the
//! `status` and `scale` subresources.
//!
//! Every handler reads the stored JSON, applies the kind's strategy, and writes back with a
//! compare-and-swap on the revision it read, so concurrent writers never lose an update: a
//! client that sent a `resourceVersion` gets 409 Conflict when it is stale, and a write without
//! one is retried on the newest state.

use bytes::{BufMut, Bytes, BytesMut};
use hollow_store::{Precondition, Record};
use hollow_types::ResourceInfo;
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::State;
use crate::error::{ApiError, ApiResult};
use crate::filter::Filter;
use crate::negotiate::{Format, decode_body};
use crate::object::{
    self, deletion_encoder, finalizers, metadata_mut, metadata_str, now_rfc3339, stamping_encoder,
};
use crate::patch::{self, PatchType};
use crate::request::{QueryOptions, ResourcePath};
use crate::strategy;
use crate::table;

/// A finished answer: status, content type and body.
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// `Warning` headers (unknown fields under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

impl Reply {
    fn json(status: StatusCode, body: Bytes) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
            warnings: Vec::new(),
        }
    }

    /// A `meta.k8s.io/v1` Table, with the content type kubectl asked for.
    fn table(table: &Value) -> Reply {
        Reply {
            content_type: TABLE_CONTENT_TYPE,
            ..Reply::json(StatusCode::OK, to_bytes(table))
        }
    }

    fn value(status: StatusCode, value: &Value) -> Reply {
        Reply::json(
            status,
            Bytes::from(serde_json::to_vec(value).expect("a JSON value always serialises")),
        )
    }
}

pub const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Routes one resource request (not watch) to its handler.
pub async fn handle(
    state: &State,
    method: &Method,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let format = Format::from_headers(headers);
    let subresource = path.subresource.as_deref();
    match (method, path.name.is_some(), subresource) {
        (&Method::GET, false, None) => list(state, path, query, format),
        (&Method::GET, true, None) => get(state, path, format),
        (&Method::POST, false, None) => {
            let object = decode_body(headers, body)?;
            create(state, path, query, object).await
        }
        (&Method::PUT, true, None) => update(state, path, query, headers, body).await,
        (&Method::PATCH, true, None) => patch(state, path, query, headers, body).await,
        (&Method::DELETE, true, None) => delete(state, path, query, body).await,
        (&Method::DELETE, false, None) => delete_collection(state, path, query, body).await,
        (&Method::GET, true, Some("status")) => get(state, path, format),
        (&Method::PUT, true, Some("status")) => update(state, path, query, headers, body).await,
        (&Method::PATCH, true, Some("status")) => patch(state, path, query, headers, body).await,
        (&Method::POST, true, Some("binding")) => bind(state, path, query, headers, body).await,
        (&Method::GET, true, Some("scale")) => get_scale(state, path),
        (&Method::PUT, true, Some("scale")) => {
            update_scale(state, path, query, headers, body).await
        }
        (&Method::PATCH, true, Some("scale")) => {
            patch_scale(state, path, query, headers, body).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Reads

fn read(state: &State, path: &ResourcePath) -> ApiResult<Record> {
    let name = path.name.as_deref().unwrap_or_default();
    state
        .store
        .get(&path.key())?
        .ok_or_else(|| ApiError::not_found(path.resource, name))
}

fn get(state: &State, path: &ResourcePath, format: Format) -> ApiResult<Reply> {
    let record = read(state, path)?;
    render_one(path.resource, record.value, format)
}

/// Renders one stored object in the asked format.
pub fn render_one(resource: &ResourceInfo, stored: Bytes, format: Format) -> ApiResult<Reply> {
    match format {
        Format::Json => Ok(Reply::json(StatusCode::OK, stored)),
        Format::Table => {
            let object = object::decode(&stored)?;
            let revision = metadata_str(&object, "resourceVersion").unwrap_or_default();
            let table = table_of(
                resource,
                std::slice::from_ref(&object),
                revision,
                None,
                true,
            );
            Ok(Reply::table(&table))
        }
        Format::Metadata => {
            let object = object::decode(&stored)?;
            Ok(Reply::value(StatusCode::OK, &partial_metadata(&object)))
        }
    }
}

fn to_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a JSON value always serialises"))
}

/// `PartialObjectMetadata` of an object: its metadata without `managedFields`.
pub fn partial_metadata(object: &Value) -> Value {
    let mut metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(map) = metadata.as_object_mut() {
        map.remove("managedFields");
    }
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// A `meta.k8s.io/v1` Table of objects.
pub fn table_of(
    resource: &ResourceInfo,
    objects: &[Value],
    revision: &str,
    continue_token: Option<&str>,
    with_columns: bool,
) -> Value {
    let now = jiff::Timestamp::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            json!({
                "cells": table::row_cells(resource.kind, object, now),
                "object": partial_metadata(object),
            })
        })
        .collect();
    let mut metadata = json!({"resourceVersion": revision});
    if let Some(token) = continue_token {
        metadata["continue"] = Value::from(token);
    }
    let columns = if with_columns {
        serde_json::to_value(table::column_definitions(resource.kind)).unwrap_or(json!([]))
    } else {
        json!([])
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Where a paged list goes on: the revision of its first page and the last key it returned.
#[derive(Debug, serde::Serialize, Deserialize)]
struct ContinueToken {
    #[serde(rename = "rv")]
    revision: u64,
    start: String,
}

fn encode_continue(token: &ContinueToken) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(token).expect("a token always serialises"))
}

fn decode_continue(text: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::bad_request("continue key is not valid: incorrect encoded start key")
    })
}

/// The matching records of a collection, one page of them when `limit` is set.
pub struct Listing {
    pub records: Vec<Record>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// Reads a collection. Pages of a paged list are read from the current state, and every page
/// reports the first page's revision, so a client that watches from it sees every change made
/// while it paged (kube-rs and client-go informers watch from the list's revision).
pub fn list_records(
    state: &State,
    prefix: &str,
    filter: &Filter,
    limit: Option<usize>,
    continue_token: Option<&str>,
) -> ApiResult<Listing> {
    let (start_after, token_revision) = match continue_token.filter(|text| !text.is_empty()) {
        Some(text) => {
            let token = decode_continue(text)?;
            (Some(token.start), Some(token.revision))
        }
        None => (None, None),
    };
    // One read snapshot; the filter runs on the stored bytes before anything is copied.
    let page =
        state
            .store
            .list_matching(prefix, start_after.as_deref(), limit, &mut |key, value| {
                filter.matches(key, value)
            })?;
    let revision = token_revision.unwrap_or(page.revision);
    let continue_token = match (page.more, page.records.last()) {
        (true, Some(last)) => Some(encode_continue(&ContinueToken {
            revision,
            start: last.key.clone(),
        })),
        _ => None,
    };
    let records = page.records;
    Ok(Listing {
        records,
        revision,
        continue_token,
    })
}

fn list(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    format: Format,
) -> ApiResult<Reply> {
    let filter = Filter::new(
        path.resource,
        query.label_selector.as_deref(),
        query.field_selector.as_deref(),
    )?;
    let limit = query
        .limit
        .filter(|limit| *limit > 0)
        .map(|limit| limit as usize);
    let listing = list_records(
        state,
        &path.collection_prefix(),
        &filter,
        limit,
        query.continue_token.as_deref(),
    )?;
    let revision = listing.revision.to_string();
    match format {
        Format::Json => {
            let mut metadata = json!({"resourceVersion": revision});
            if let Some(token) = &listing.continue_token {
                metadata["continue"] = Value::from(token.as_str());
            }
            // The stored bytes are spliced in as they are: a list costs one copy per object.
            let head = format!(
                r#"{{"kind":"{}","apiVersion":"{}","metadata":{},"items":["#,
                path.resource.list_kind,
                path.resource.api_version(),
                metadata
            );
            let size: usize = listing
                .records
                .iter()
                .map(|record| record.value.len() + 1)
                .sum();
            let mut body = BytesMut::with_capacity(head.len() + size + 2);
            body.put_slice(head.as_bytes());
            for (index, record) in listing.records.iter().enumerate() {
                if index > 0 {
                    body.put_u8(b',');
                }
                body.put_slice(&record.value);
            }
            body.put_slice(b"]}");
            Ok(Reply::json(StatusCode::OK, body.freeze()))
        }
        Format::Table => {
            let objects = listing
                .records
                .iter()
                .map(object::from_record)
                .collect::<ApiResult<Vec<_>>>()?;
            let table = table_of(
                path.resource,
                &objects,
                &revision,
                listing.continue_token.as_deref(),
                true,
            );
            Ok(Reply::table(&table))
        }
        Format::Metadata => {
            let items = listing
                .records
                .iter()
                .map(|record| object::from_record(record).map(|object| partial_metadata(&object)))
                .collect::<ApiResult<Vec<_>>>()?;
            let mut metadata = json!({"resourceVersion": revision});
            if let Some(token) = &listing.continue_token {
                metadata["continue"] = Value::from(token.as_str());
            }
            Ok(Reply::value(
                StatusCode::OK,
                &json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                    "items": items,
                }),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writes

/// Checks that a body's kind and apiVersion, when present, are the resource's.
fn check_kind(resource: &ResourceInfo, object: &Value) -> ApiResult<()> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    if let Some(api_version) = api_version.filter(|text| !text.is_empty())
        && !is_api_version_of(resource, api_version)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            resource.api_version()
        )));
    }
    if let Some(kind) = kind.filter(|text| !text.is_empty())
        && kind != resource.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    Ok(())
}

/// Whether `api_version` (`group/version`, or `version` for the core group) is the resource's,
/// compared without building the resource's own text.
fn is_api_version_of(resource: &ResourceInfo, api_version: &str) -> bool {
    match api_version.split_once('/') {
        Some((group, version)) => {
            !group.is_empty() && group == resource.group && version == resource.version
        }
        None => resource.group.is_empty() && api_version == resource.version,
    }
}

/// Sets the object's namespace from the URL, refusing a different one in the body.
fn check_namespace(path: &ResourcePath, object: &mut Value) -> ApiResult<()> {
    let metadata = metadata_mut(object);
    if !path.resource.is_namespaced() {
        metadata.remove("namespace");
        return Ok(());
    }
    let Some(url_namespace) = path.namespace.as_deref() else {
        return Err(ApiError::bad_request(
            "a namespaced resource must be written under /namespaces/{namespace}/",
        ));
    };
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(body_namespace) if !body_namespace.is_empty() && body_namespace != url_namespace => {
            Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ))
        }
        _ => {
            metadata.insert("namespace".into(), Value::from(url_namespace));
            Ok(())
        }
    }
}

/// Refuses writes into a namespace that does not exist or is being deleted.
///
/// A namespace found active is remembered (see [`crate::namespaces::ActiveNamespaces`]) until
/// the next namespace write, so a burst of creates reads it from the store once.
fn check_namespace_exists(state: &State, path: &ResourcePath, name: &str) -> ApiResult<()> {
    let Some(namespace) = path
        .namespace
        .as_deref()
        .filter(|_| path.resource.is_namespaced())
    else {
        return Ok(());
    };
    let active = &state.active_namespaces;
    if active.contains(namespace) {
        return Ok(());
    }
    let epoch = active.epoch();
    let namespaces = ResourceInfo::find("", "namespaces").expect("namespaces are served");
    let record = state
        .store
        .get(&namespaces.key(None, namespace))?
        .ok_or_else(|| ApiError::namespace_not_found(namespace))?;
    // Only whether it is being deleted matters: decode nothing else.
    #[derive(Deserialize)]
    struct Namespace {
        metadata: NamespaceMetadata,
    }
    #[derive(Deserialize)]
    struct NamespaceMetadata {
        #[serde(rename = "deletionTimestamp")]
        deletion_timestamp: Option<serde::de::IgnoredAny>,
    }
    let terminating = serde_json::from_slice::<Namespace>(&record.value)
        .map(|namespace| namespace.metadata.deletion_timestamp.is_some())
        .unwrap_or(false);
    if terminating {
        return Err(ApiError::namespace_terminating(
            namespace,
            path.resource,
            name,
        ));
    }
    active.remember(namespace, epoch);
    Ok(())
}

fn validate(
    resource: &ResourceInfo,
    name: &str,
    object: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    strategy::check_field_types(resource, object)?;
    validate_rules(resource, name, object, old)
}

/// The kind's validation rules, for an object whose field types are known to hold.
fn validate_rules(
    resource: &ResourceInfo,
    name: &str,
    object: &Value,
    old: Option<&Value>,
) -> ApiResult<()> {
    let errors = strategy::validate(resource, object, old);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(resource, name, &errors))
    }
}

fn store_error(resource: &ResourceInfo, name: &str, error: hollow_store::Error) -> ApiError {
    match error {
        hollow_store::Error::AlreadyExists(_) => ApiError::already_exists(resource, name),
        hollow_store::Error::NotFound(_) => ApiError::not_found(resource, name),
        hollow_store::Error::Conflict { .. } => ApiError::conflict(resource, name),
        other => other.into(),
    }
}

async fn create(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    object: Value,
) -> ApiResult<Reply> {
    let (warnings, types_checked) = field_validation(path.resource, query, &object)?;
    let (status, stored) = create_checked(state, path, query, object, types_checked).await?;
    let mut reply = Reply::json(status, stored);
    reply.warnings = warnings;
    Ok(reply)
}

/// `fieldValidation`: unknown fields are refused (`Strict`), reported as `Warning` headers
/// (`Warn`, the default), or ignored (`Ignore`). Also says whether the same walk vouched for
/// the body's field types (see [`crate::unknown_fields::inspect`]), so a create need not
/// decode the body into its type a second time.
fn field_validation(
    resource: &ResourceInfo,
    query: &QueryOptions,
    object: &Value,
) -> ApiResult<(Vec<String>, bool)> {
    let mode = query.field_validation.as_deref().unwrap_or("Warn");
    if mode == "Ignore" {
        return Ok((Vec::new(), false));
    }
    let inspection = crate::unknown_fields::inspect(resource.kind, object);
    let unknown = inspection.unknown;
    if unknown.is_empty() {
        return Ok((Vec::new(), inspection.types_checked));
    }
    match mode {
        "Strict" => Err(ApiError::bad_request(
            crate::unknown_fields::bad_request_message(resource.kind, resource.version, &unknown),
        )),
        "Warn" => Ok((
            crate::unknown_fields::warning_headers(&unknown),
            inspection.types_checked,
        )),
        other => Err(ApiError::bad_request(format!(
            "fieldValidation must be one of Ignore, Warn or Strict, not {other:?}"
        ))),
    }
}

/// Creates an object from a decoded body; shared by POST and create-on-apply.
pub async fn create_object(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    object: Value,
) -> ApiResult<(StatusCode, Bytes)> {
    create_checked(state, path, query, object, false).await
}

/// [`create_object`], told whether the body's field types were already checked on the body as
/// sent. What the server sets on create has the right types by construction, so that check
/// stands for the prepared object too.
async fn create_checked(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    mut object: Value,
    types_checked: bool,
) -> ApiResult<(StatusCode, Bytes)> {
    let resource = path.resource;
    check_kind(resource, &object)?;
    check_namespace(path, &mut object)?;
    let metadata = metadata_mut(&mut object);
    let has_name = metadata
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|name| !name.is_empty());
    if !has_name
        && let Some(prefix) = metadata.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        let generated = format!("{prefix}{}", object::random_suffix(5));
        metadata.insert("name".into(), Value::String(generated));
    }
    let name = object::name(&object).unwrap_or_default().to_string();
    if let Some(url_name) = path.name.as_deref()
        && url_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        )));
    }
    strategy::prepare_for_create(resource, &mut object, object::new_uid());
    if !types_checked {
        strategy::check_field_types(resource, &object)?;
    }
    validate_rules(resource, &name, &object, None)?;
    check_namespace_exists(state, path, &name)?;
    let reservation = if resource.kind == "Service" {
        Some(
            crate::service::allocate_on_create(&state.allocators, &mut object)
                .map_err(|errors| ApiError::invalid(resource, &name, &errors))?,
        )
    } else {
        None
    };
    let key = resource.key(path.namespace.as_deref(), &name);
    if query.dry_run() {
        if state.store.get(&key)?.is_some() {
            return Err(ApiError::already_exists(resource, &name));
        }
        return Ok((StatusCode::CREATED, to_bytes(&object)));
    }
    let event = state
        .store
        .create(key, stamping_encoder(object))
        .await
        .map_err(|error| store_error(resource, &name, error))?;
    if let Some(reservation) = reservation {
        reservation.keep();
    }
    Ok((StatusCode::CREATED, event.value))
}

/// Which part of an object a write replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Main,
    Status,
    /// The scheduler's binding: sets `spec.nodeName`, which a pod update may not change.
    Binding,
}

fn part_of(path: &ResourcePath) -> Part {
    match path.subresource.as_deref() {
        Some("status") => Part::Status,
        _ => Part::Main,
    }
}

/// The client's `metadata.resourceVersion`, if it sent one.
fn requested_revision(
    object: &Value,
    resource: &ResourceInfo,
    name: &str,
) -> ApiResult<Option<u64>> {
    match metadata_str(object, "resourceVersion").filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::invalid(
                resource,
                name,
                &[hollow_types::validation::FieldError::invalid(
                    "metadata.resourceVersion",
                    text,
                    "must be specified for an update",
                )],
            )
        }),
    }
}

async fn update(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let resource = path.resource;
    let name = path.name.clone().unwrap_or_default();
    let mut object = decode_body(headers, body)?;
    check_kind(resource, &object)?;
    check_namespace(path, &mut object)?;
    match object::name(&object) {
        Some(body_name) if body_name != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            metadata_mut(&mut object).insert("name".into(), Value::from(name.as_str()));
        }
    }
    let expected = requested_revision(&object, resource, &name)?;
    let (warnings, _) = field_validation(resource, query, &object)?;
    let part = part_of(path);
    let stored = write_with_retry(
        state,
        path,
        query,
        expected,
        move |_current| Ok(object.clone()),
        part,
    )
    .await?;
    let mut reply = Reply::json(StatusCode::OK, stored);
    reply.warnings = warnings;
    Ok(reply)
}

/// Read-modify-write with compare-and-swap: `change` builds the new object from the current
/// one. With an `expected` revision a stale read is a 409; without, the write is retried on
/// the newest state.
async fn write_with_retry<F>(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    expected: Option<u64>,
    mut change: F,
    part: Part,
) -> ApiResult<Bytes>
where
    F: FnMut(&Value) -> ApiResult<Value>,
{
    let resource = path.resource;
    let name = path.name.clone().unwrap_or_default();
    let key = path.key();
    loop {
        let current = read(state, path)?;
        if let Some(expected) = expected
            && expected != current.mod_revision
        {
            return Err(ApiError::conflict(resource, &name));
        }
        let old = object::from_record(&current)?;
        let mut new = change(&old)?;
        check_kind(resource, &new)?;
        match part {
            Part::Main => {
                strategy::set_defaults(resource, &mut new);
                strategy::prepare_for_update(resource, &mut new, &old);
            }
            Part::Status => strategy::prepare_for_status_update(&mut new, &old),
            Part::Binding => {}
        }
        if let Some(map) = new.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(resource.api_version()));
            map.insert("kind".into(), Value::String(resource.kind.to_string()));
        }
        // A binding changes only what the server itself just checked.
        let compared_with = (part != Part::Binding).then_some(&old);
        validate(resource, &name, &new, compared_with)?;
        let allocation = if resource.kind == "Service" && part == Part::Main {
            Some(
                crate::service::allocate_on_update(&state.allocators, &mut new, &old)
                    .map_err(|errors| ApiError::invalid(resource, &name, &errors))?,
            )
        } else {
            None
        };
        if query.dry_run() {
            metadata_mut(&mut new).insert(
                "resourceVersion".into(),
                Value::String(current.mod_revision.to_string()),
            );
            return Ok(to_bytes(&new));
        }
        // An object being deleted whose last finalizer is gone leaves the store.
        let finished = new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).is_empty()
            && !namespace_holds_finalizer(resource, &new);
        let precondition = Precondition::ModRevision(current.mod_revision);
        let outcome = if finished {
            state
                .store
                .delete(key.clone(), precondition, deletion_encoder())
                .await
        } else {
            state
                .store
                .update(key.clone(), precondition, stamping_encoder(new))
                .await
        };
        if resource.kind == "Namespace" {
            state.active_namespaces.forget_all();
        }
        match outcome {
            Ok(event) => {
                if let Some(allocation) = allocation {
                    allocation.reservation.keep();
                    state.allocators.release(&allocation.released);
                }
                if finished {
                    released_on_delete(state, resource, &old);
                }
                return Ok(event.value);
            }
            Err(hollow_store::Error::Conflict { .. }) if expected.is_none() => continue,
            Err(error) => return Err(store_error(resource, &name, error)),
        }
    }
}

fn namespace_holds_finalizer(resource: &ResourceInfo, object: &Value) -> bool {
    resource.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|items| !items.is_empty())
}

async fn patch(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let media_type = crate::negotiate::content_type(headers);
    let patch_type = PatchType::from_content_type(&media_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&media_type))?;
    let resource = path.resource;
    if patch_type == PatchType::Apply && part_of(path) == Part::Main {
        let exists = state.store.get(&path.key())?.is_some();
        if !exists {
            let object = patch::apply_patch(resource.kind, &json!({}), patch_type, body)
                .map_err(patch_error)?;
            let (status, stored) = create_object(state, path, query, object).await?;
            return Ok(Reply::json(status, stored));
        }
    }
    let stored = write_with_retry(
        state,
        path,
        query,
        None,
        |current| {
            let patched = patch::apply_patch(resource.kind, current, patch_type, body)
                .map_err(patch_error)?;
            // A patch that carries a resourceVersion is a precondition on it.
            if let (Some(sent), Some(current_version)) = (
                metadata_str(&patched, "resourceVersion"),
                metadata_str(current, "resourceVersion"),
            ) && sent != current_version
            {
                return Err(ApiError::conflict(
                    resource,
                    path.name.as_deref().unwrap_or_default(),
                ));
            }
            Ok(patched)
        },
        part_of(path),
    )
    .await?;
    Ok(Reply::json(StatusCode::OK, stored))
}

fn patch_error(error: patch::PatchError) -> ApiError {
    ApiError::from(error)
}

// ---------------------------------------------------------------------------------------------
// Deletes

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DeleteOptions {
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    orphan_dependents: Option<bool>,
    preconditions: Option<Preconditions>,
    dry_run: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

pub(crate) fn delete_options(query: &QueryOptions, body: &Bytes) -> ApiResult<DeleteOptions> {
    let mut options: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        serde_json::from_slice(body).map_err(|error| {
            ApiError::bad_request(format!("the body is not valid DeleteOptions: {error}"))
        })?
    };
    if query.grace_period_seconds.is_some() {
        options.grace_period_seconds = query.grace_period_seconds;
    }
    if query.propagation_policy.is_some() {
        options.propagation_policy = query.propagation_policy.clone();
    }
    if query.dry_run() {
        options.dry_run = Some(vec!["All".into()]);
    }
    match options.propagation_policy.as_deref() {
        None | Some("Background") | Some("Foreground") | Some("Orphan") => Ok(options),
        Some(other) => Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "DeleteOptions.propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
        )),
    }
}

async fn delete(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    body: &Bytes,
) -> ApiResult<Reply> {
    let options = delete_options(query, body)?;
    let stored = delete_one(state, path, &options).await?;
    Ok(Reply::json(StatusCode::OK, stored))
}

/// What a delete does to an object that is still there.
enum Deletion {
    /// Remove it from the store now.
    Now,
    /// Mark it (deletionTimestamp, finalizers) and keep it until someone finishes the job.
    Mark(Value),
    /// Already being deleted; nothing changes.
    Unchanged,
}

fn plan_deletion(resource: &ResourceInfo, object: &Value, options: &DeleteOptions) -> Deletion {
    let already = object.pointer("/metadata/deletionTimestamp").is_some();
    if resource.kind == "Namespace" {
        if already {
            return Deletion::Unchanged;
        }
        let mut marked = object.clone();
        metadata_mut(&mut marked).insert("deletionTimestamp".into(), Value::from(now_rfc3339()));
        metadata_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), Value::from(0));
        marked["status"] = json!({"phase": "Terminating"});
        return Deletion::Mark(marked);
    }
    let mut finalizers = finalizers(object);
    let policy = match (
        options.propagation_policy.as_deref(),
        options.orphan_dependents,
    ) {
        (Some(policy), _) => policy,
        (None, Some(true)) => "Orphan",
        _ => "Background",
    };
    let policy_finalizer = match policy {
        "Foreground" => Some("foregroundDeletion"),
        "Orphan" => Some("orphan"),
        _ => None,
    };
    if let Some(finalizer) = policy_finalizer
        && !finalizers.iter().any(|existing| existing == finalizer)
    {
        finalizers.push(finalizer.to_string());
    }
    // Pods on a node get time to stop: the node's agent finishes the delete.
    let grace = if resource.kind == "Pod" {
        let scheduled = object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|node| !node.is_empty());
        let terminal = matches!(
            object.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded") | Some("Failed")
        );
        let grace = options.grace_period_seconds.unwrap_or_else(|| {
            object
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        if scheduled && !terminal {
            grace.max(0)
        } else {
            0
        }
    } else {
        0
    };
    if already {
        let current_grace = object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if resource.kind == "Pod" && grace == 0 && current_grace > 0 && finalizers.is_empty() {
            return Deletion::Now;
        }
        if resource.kind == "Pod" && grace < current_grace {
            let mut marked = object.clone();
            metadata_mut(&mut marked)
                .insert("deletionGracePeriodSeconds".into(), Value::from(grace));
            return Deletion::Mark(marked);
        }
        return Deletion::Unchanged;
    }
    if finalizers.is_empty() && grace == 0 {
        return Deletion::Now;
    }
    let mut marked = object.clone();
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
    let metadata = metadata_mut(&mut marked);
    metadata.insert(
        "deletionTimestamp".into(),
        Value::from(
            deadline
                .round(jiff::Unit::Second)
                .unwrap_or(deadline)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
    );
    metadata.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
    if !finalizers.is_empty() {
        metadata.insert("finalizers".into(), Value::from(finalizers));
    }
    Deletion::Mark(marked)
}

/// Deletes one object by its URL; answers the object's last (or marked) state.
pub(crate) async fn delete_one(
    state: &State,
    path: &ResourcePath,
    options: &DeleteOptions,
) -> ApiResult<Bytes> {
    let resource = path.resource;
    let name = path.name.clone().unwrap_or_default();
    if resource.kind == "Namespace" && strategy::is_protected_namespace(&name) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
        )
        .with_namespace_details(&name));
    }
    loop {
        let current = read(state, path)?;
        let object = object::from_record(&current)?;
        if let Some(preconditions) = &options.preconditions {
            if let Some(uid) = &preconditions.uid {
                let actual = metadata_str(&object, "uid").unwrap_or_default();
                if uid != actual {
                    return Err(ApiError::precondition_failed(
                        resource,
                        &name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(version) = &preconditions.resource_version {
                let actual = current.mod_revision.to_string();
                if *version != actual {
                    return Err(ApiError::precondition_failed(
                        resource,
                        &name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
        }
        let plan = plan_deletion(resource, &object, options);
        let removes = matches!(plan, Deletion::Now);
        if options.dry_run.is_some() {
            return Ok(current.value);
        }
        let precondition = Precondition::ModRevision(current.mod_revision);
        let outcome = match plan {
            Deletion::Unchanged => return Ok(current.value),
            Deletion::Now => {
                state
                    .store
                    .delete(path.key(), precondition, deletion_encoder())
                    .await
            }
            Deletion::Mark(marked) => {
                state
                    .store
                    .update(path.key(), precondition, stamping_encoder(marked))
                    .await
            }
        };
        if resource.kind == "Namespace" {
            state.active_namespaces.forget_all();
        }
        match outcome {
            Ok(event) => {
                if resource.kind == "Namespace" {
                    state.namespace_deleted.notify_one();
                }
                if removes {
                    released_on_delete(state, resource, &object);
                }
                return Ok(event.value);
            }
            Err(hollow_store::Error::Conflict { .. }) => continue,
            Err(error) => return Err(store_error(resource, &name, error)),
        }
    }
}

/// Gives back what a removed object held (a Service's ClusterIP and node ports).
fn released_on_delete(state: &State, resource: &ResourceInfo, object: &Value) {
    if resource.kind == "Service" {
        state
            .allocators
            .release(&crate::allocator::ServiceAllocations::of(object));
    }
}

async fn delete_collection(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    body: &Bytes,
) -> ApiResult<Reply> {
    if !path.resource.verbs.contains(&"deletecollection") {
        return Err(ApiError::method_not_allowed(
            "deletecollection is not supported on this resource",
        ));
    }
    let options = delete_options(query, body)?;
    let filter = Filter::new(
        path.resource,
        query.label_selector.as_deref(),
        query.field_selector.as_deref(),
    )?;
    let listing = list_records(state, &path.collection_prefix(), &filter, None, None)?;
    let mut deleted = Vec::with_capacity(listing.records.len());
    for record in listing.records {
        let object = object::from_record(&record)?;
        let item_path = ResourcePath {
            resource: path.resource,
            namespace: metadata_str(&object, "namespace").map(str::to_string),
            name: object::name(&object).map(str::to_string),
            subresource: None,
            legacy_watch: false,
        };
        match delete_one(state, &item_path, &options).await {
            Ok(value) => deleted.push(object::decode(&value)?),
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Reply::value(
        StatusCode::OK,
        &json!({
            "kind": path.resource.list_kind,
            "apiVersion": path.resource.api_version(),
            "metadata": {"resourceVersion": state.store.current_revision().to_string()},
            "items": deleted,
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Binding

/// `POST pods/{name}/binding`: how a scheduler assigns a pod to a node (a pod's `spec.nodeName`
/// is otherwise immutable).
async fn bind(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let binding = decode_body(headers, body)?;
    let name = path.name.clone().unwrap_or_default();
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|node| !node.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("Binding \"{name}\" is invalid: target.name: Required value"),
            )
        })?
        .to_string();
    let pod_path = ResourcePath {
        subresource: None,
        ..path.clone()
    };
    write_with_retry(
        state,
        &pod_path,
        query,
        None,
        |current| {
            if let Some(assigned) = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|assigned| !assigned.is_empty())
            {
                return Err(ApiError::precondition_failed(
                    path.resource,
                    &name,
                    &format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::precondition_failed(
                    path.resource,
                    &name,
                    &format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            let mut bound = current.clone();
            bound["spec"]["nodeName"] = Value::from(node.as_str());
            Ok(bound)
        },
        Part::Binding,
    )
    .await?;
    Ok(Reply::value(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Scale

/// The autoscaling/v1 `Scale` view of a workload.
fn scale_of(resource: &ResourceInfo, object: &Value) -> Value {
    let replicas = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let status_replicas = object
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = object
        .pointer("/spec/selector")
        .map(selector_string)
        .unwrap_or_default();
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    let mut scale_metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = metadata.get(field) {
            scale_metadata[field] = value.clone();
        }
    }
    let _ = resource;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": replicas},
        "status": {"replicas": status_replicas, "selector": selector},
    })
}

/// A `LabelSelector` object in its canonical string form, as `Scale.status.selector` carries it.
fn selector_string(selector: &Value) -> String {
    use hollow_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;
    serde_json::from_value::<ApiSelector>(selector.clone())
        .ok()
        .and_then(|selector| hollow_types::selector::LabelSelector::from_api(&selector).ok())
        .map(|selector| selector.to_string())
        .unwrap_or_default()
}

fn get_scale(state: &State, path: &ResourcePath) -> ApiResult<Reply> {
    let record = read(state, path)?;
    let object = object::from_record(&record)?;
    Ok(Reply::value(
        StatusCode::OK,
        &scale_of(path.resource, &object),
    ))
}

fn replicas_from_scale(scale: &Value, resource: &ResourceInfo, name: &str) -> ApiResult<i64> {
    match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(value) => match value.as_i64() {
            Some(replicas) if replicas >= 0 && replicas <= i64::from(i32::MAX) => Ok(replicas),
            _ => Err(ApiError::invalid(
                resource,
                name,
                &[hollow_types::validation::FieldError::invalid(
                    "spec.replicas",
                    value.clone(),
                    "must be greater than or equal to 0",
                )],
            )),
        },
    }
}

async fn write_replicas(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    expected: Option<u64>,
    compute: impl Fn(&Value) -> ApiResult<i64>,
) -> ApiResult<Reply> {
    let stored = write_with_retry(
        state,
        path,
        query,
        expected,
        |current| {
            let replicas = compute(current)?;
            let mut new = current.clone();
            new["spec"]["replicas"] = Value::from(replicas);
            Ok(new)
        },
        Part::Main,
    )
    .await?;
    let object = object::decode(&stored)?;
    Ok(Reply::value(
        StatusCode::OK,
        &scale_of(path.resource, &object),
    ))
}

async fn update_scale(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let scale = decode_body(headers, body)?;
    let name = path.name.clone().unwrap_or_default();
    let replicas = replicas_from_scale(&scale, path.resource, &name)?;
    let expected = requested_revision(&scale, path.resource, &name)?;
    write_replicas(state, path, query, expected, |_| Ok(replicas)).await
}

async fn patch_scale(
    state: &State,
    path: &ResourcePath,
    query: &QueryOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Reply> {
    let media_type = crate::negotiate::content_type(headers);
    let patch_type = PatchType::from_content_type(&media_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&media_type))?;
    let resource = path.resource;
    let name = path.name.clone().unwrap_or_default();
    write_replicas(state, path, query, None, |current| {
        let scale = scale_of(resource, current);
        let patched = patch::apply_patch("Scale", &scale, patch_type, body).map_err(patch_error)?;
        replicas_from_scale(&patched, resource, &name)
    })
    .await
}

impl ApiError {
    fn with_namespace_details(mut self, name: &str) -> ApiError {
        self.details = Some(json!({"name": name, "kind": "namespaces"}));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_compared_as_group_and_version() {
        let pods = ResourceInfo::find("", "pods").unwrap();
        let deployments = ResourceInfo::find("apps", "deployments").unwrap();
        for (resource, text) in [
            (pods, "v1"),
            (pods, "/v1"),
            (pods, "apps/v1"),
            (pods, "v2"),
            (deployments, "apps/v1"),
            (deployments, "v1"),
            (deployments, "apps/v1beta1"),
            (deployments, "batch/v1"),
        ] {
            assert_eq!(
                is_api_version_of(resource, text),
                resource.api_version() == text,
                "{text} against {}",
                resource.api_version()
            );
        }
    }

    #[test]
    fn selectors_render_as_strings() {
        let selector = json!({"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]});
        assert_eq!(selector_string(&selector), "app=web,tier in (a,b)");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(&ContinueToken {
            revision: 7,
            start: "/core/pods/a/b".into(),
        });
        let decoded = decode_continue(&token).unwrap();
        assert_eq!(decoded.revision, 7);
        assert_eq!(decoded.start, "/core/pods/a/b");
        assert_eq!(decode_continue("!!").unwrap_err().code, 400);
    }

    #[test]
    fn scheduled_pods_are_deleted_gracefully() {
        let pods = ResourceInfo::find("", "pods").unwrap();
        let pod =
            json!({"metadata":{"name":"p"},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}});
        match plan_deletion(pods, &pod, &DeleteOptions::default()) {
            Deletion::Mark(marked) => {
                assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
                assert!(marked["metadata"]["deletionTimestamp"].is_string());
            }
            _ => panic!("a running, scheduled pod is marked, not removed"),
        }
        let unscheduled = json!({"metadata":{"name":"p"},"spec":{},"status":{"phase":"Pending"}});
        assert!(matches!(
            plan_deletion(pods, &unscheduled, &DeleteOptions::default()),
            Deletion::Now
        ));
        let forced = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert!(matches!(plan_deletion(pods, &pod, &forced), Deletion::Now));
    }

    #[test]
    fn foreground_and_orphan_add_their_finalizers() {
        let deployments = ResourceInfo::find("apps", "deployments").unwrap();
        let object = json!({"metadata":{"name":"d"}});
        for (policy, finalizer) in [("Foreground", "foregroundDeletion"), ("Orphan", "orphan")] {
            let options = DeleteOptions {
                propagation_policy: Some(policy.into()),
                ..Default::default()
            };
            match plan_deletion(deployments, &object, &options) {
                Deletion::Mark(marked) => {
                    assert_eq!(marked["metadata"]["finalizers"], json!([finalizer]))
                }
                _ => panic!("{policy} marks the owner"),
            }
        }
        assert!(matches!(
            plan_deletion(deployments, &object, &DeleteOptions::default()),
            Deletion::Now
        ));
    }
}

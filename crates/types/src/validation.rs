//! Name, label and object-metadata rules, with kube-apiserver's messages.
//!
//! The `is_*` functions return one message per broken rule (empty when the value is fine), worded
//! exactly as kube-apiserver words them, because kubectl users and tests compare those strings.
//! The checks are hand-written equivalents of upstream's regular expressions; the regular
//! expression itself is still quoted in the messages, as upstream does.
//!
//! [`validate_object_meta`] applies them to an object's `metadata` on create and returns
//! [`FieldError`]s that name the field, ready to become the `causes` of a 422 `Invalid` Status
//! (see [`FieldError::to_status_cause`] and [`invalid_message`]).

use std::fmt;

use serde_json::Value;

/// The longest DNS-1123 label (and DNS-1035 label).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// The longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// The longest label value, and the longest name part of a qualified name.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// The most bytes all annotation keys and values of one object may add up to.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FORMAT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case \
     alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FORMAT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower \
     case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FORMAT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric \
     characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FORMAT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character";
const LABEL_VALUE_FORMAT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn max_length_message(length: usize) -> String {
    format!("must be no more than {length} bytes")
}

fn empty_message() -> &'static str {
    "must be non-empty"
}

/// Upstream's `RegexError`: the rule, examples, and the regular expression it stands for.
fn regex_message(message: &str, format: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{format}')");
    }
    let mut text = format!("{message} (e.g. ");
    for (index, example) in examples.iter().enumerate() {
        if index > 0 {
            text.push_str(" or ");
        }
        text.push('\'');
        text.push_str(example);
        text.push_str("', ");
    }
    text.push_str("regex used for validation is '");
    text.push_str(format);
    text.push_str("')");
    text
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without a length limit.
fn is_dns1123_label_shape(value: &str) -> bool {
    let bytes = value.as_bytes();
    let alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|&byte| alphanumeric(byte) || byte == b'-')
        }
        _ => false,
    }
}

/// Dot-separated DNS-1123 labels, without a length limit.
fn is_dns1123_subdomain_shape(value: &str) -> bool {
    value.split('.').all(is_dns1123_label_shape)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, without a length limit.
fn is_dns1035_label_shape(value: &str) -> bool {
    is_dns1123_label_shape(value) && value.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, without a length limit.
fn is_qualified_name_part_shape(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A DNS-1123 label (RFC 1123): namespace names, most port names, container names.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label_shape(value) {
        if is_dns1123_subdomain_shape(value) {
            // A valid subdomain that is not a valid label can only differ by its dots.
            errors.push("must not contain dots".to_string());
        } else {
            errors.push(regex_message(
                DNS1123_LABEL_MESSAGE,
                DNS1123_LABEL_FORMAT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errors
}

/// A DNS-1123 subdomain (RFC 1123): the name rule of most kinds.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !is_dns1123_subdomain_shape(value) {
        errors.push(regex_message(
            DNS1123_SUBDOMAIN_MESSAGE,
            DNS1123_SUBDOMAIN_FORMAT,
            &["example.com"],
        ));
    }
    errors
}

/// A DNS-1035 label (RFC 1035): Service names, which must start with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_length_message(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1035_label_shape(value) {
        errors.push(regex_message(
            DNS1035_LABEL_MESSAGE,
            DNS1035_LABEL_FORMAT,
            &["my-name", "abc-123"],
        ));
    }
    errors
}

/// A qualified name: a label or annotation key, or a finalizer. An optional DNS-1123 subdomain
/// prefix and `/`, then a name part of at most 63 characters.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push(format!("prefix part {}", empty_message()));
            } else {
                errors.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|message| format!("prefix part {message}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_message(
                    QUALIFIED_NAME_MESSAGE,
                    QUALIFIED_NAME_FORMAT,
                    &["MyName", "my.name", "123-abc"],
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push(format!("name part {}", empty_message()));
    } else if name.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_length_message(LABEL_VALUE_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part_shape(name) {
        errors.push(format!(
            "name part {}",
            regex_message(
                QUALIFIED_NAME_MESSAGE,
                QUALIFIED_NAME_FORMAT,
                &["MyName", "my.name", "123-abc"],
            )
        ));
    }
    errors
}

/// A label value: empty, or up to 63 alphanumerics, `-`, `_` and `.` that start and end with an
/// alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_length_message(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !is_qualified_name_part_shape(value) {
        errors.push(regex_message(
            LABEL_VALUE_MESSAGE,
            LABEL_VALUE_FORMAT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Names that must be usable as a single URL path segment.
pub fn is_valid_path_segment_name(value: &str) -> Vec<String> {
    if value == "." || value == ".." {
        return vec![format!("may not be '{value}'")];
    }
    is_valid_path_segment_prefix(value)
}

fn is_valid_path_segment_prefix(value: &str) -> Vec<String> {
    ["/", "%"]
        .into_iter()
        .filter(|illegal| value.contains(illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// Which rule a kind's `metadata.name` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds (Pods, Deployments, EndpointSlices, ...).
    Dns1123Subdomain,
    /// Namespaces and Nodes-as-labels style names.
    Dns1123Label,
    /// Services: their names become DNS labels and environment variable prefixes.
    Dns1035Label,
    /// Only path-safe (Events and a few others).
    PathSegment,
}

impl NameRule {
    /// Checks a name, or with `prefix` a `generateName` that random characters will be
    /// appended to (so a trailing `-` is fine).
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        if self == NameRule::PathSegment {
            return if prefix {
                is_valid_path_segment_prefix(name)
            } else {
                is_valid_path_segment_name(name)
            };
        }
        let masked;
        let name = if prefix {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => unreachable!("handled above"),
        }
    }
}

/// Makes a `generateName` ending in `-` checkable as a name. Upstream drops the last two bytes
/// and appends `a`; doing the same keeps the accepted set of prefixes identical.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let kept = &name.as_bytes()[..name.len() - 2];
        let mut masked = String::from_utf8_lossy(kept).into_owned();
        masked.push('a');
        masked
    } else {
        name.to_string()
    }
}

/// Why a field was rejected; each maps to a Status cause `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    TooLong,
    Forbidden,
}

impl FieldErrorKind {
    /// The Status cause `reason` (`FieldValueInvalid`, ...).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
        }
    }

    /// The words that start the message (`Invalid value`, ...).
    pub fn description(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Forbidden => "Forbidden",
        }
    }
}

/// One rejected field. `message` is what a Status cause carries (`Invalid value: "Foo": a
/// lowercase RFC 1123 ...`); [`Display`](fmt::Display) prefixes the field, as kubectl prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, such as `metadata.name` or `spec.ports[0].port`.
    pub field: String,
    pub reason: FieldErrorKind,
    pub message: String,
}

impl FieldError {
    fn with_body(
        field: impl Into<String>,
        reason: FieldErrorKind,
        value: Option<&Value>,
        detail: &str,
    ) -> FieldError {
        let mut message = reason.description().to_string();
        if let Some(value) = value {
            message.push_str(": ");
            message.push_str(&render_bad_value(value));
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        FieldError {
            field: field.into(),
            reason,
            message,
        }
    }

    /// A value that breaks a rule; `detail` says which.
    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: &str) -> FieldError {
        Self::with_body(field, FieldErrorKind::Invalid, Some(&value.into()), detail)
    }

    /// A field that must be set.
    pub fn required(field: impl Into<String>, detail: &str) -> FieldError {
        Self::with_body(field, FieldErrorKind::Required, None, detail)
    }

    /// A field that may not be set here.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
        Self::with_body(field, FieldErrorKind::Forbidden, None, detail)
    }

    /// A value longer than `max_bytes`; the value itself is not repeated.
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::with_body(
            field,
            FieldErrorKind::TooLong,
            None,
            &format!("may not be more than {max_bytes} {unit}"),
        )
    }

    /// A value outside an enumeration.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> FieldError {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|value| go_quote(value)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::with_body(
            field,
            FieldErrorKind::NotSupported,
            Some(&value.into()),
            &detail,
        )
    }

    /// A value that must be unique but is not.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> FieldError {
        Self::with_body(field, FieldErrorKind::Duplicate, Some(&value.into()), "")
    }

    /// This error as an entry of a Status `details.causes` list.
    pub fn to_status_cause(&self) -> Value {
        serde_json::json!({
            "reason": self.reason.reason(),
            "message": self.message,
            "field": self.field,
        })
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// The `message` of a 422 Status, as kube-apiserver builds it: `Service "web" is invalid:
/// spec.ports[0].port: ...`, with several errors in brackets. `qualified_kind` is the kind,
/// followed by `.group` outside the core group (`Deployment.apps`).
pub fn invalid_message(qualified_kind: &str, name: &str, errors: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let messages: Vec<String> = errors
        .iter()
        .map(ToString::to_string)
        .filter(|message| seen.insert(message.clone()))
        .collect();
    let name = go_quote(name);
    match messages.as_slice() {
        [] => format!("{qualified_kind} {name} is invalid"),
        [only] => format!("{qualified_kind} {name} is invalid: {only}"),
        many => format!("{qualified_kind} {name} is invalid: [{}]", many.join(", ")),
    }
}

/// Renders a rejected value the way upstream's field errors do: strings quoted, numbers and
/// booleans bare, anything else as JSON.
fn render_bad_value(value: &Value) -> String {
    match value {
        Value::String(text) => go_quote(text),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => other.to_string(),
    }
}

/// Quotes a string as Go's `%q` does, so messages match kube-apiserver byte for byte.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{07}' => quoted.push_str("\\a"),
            '\u{08}' => quoted.push_str("\\b"),
            '\u{0c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{0b}' => quoted.push_str("\\v"),
            control if (control as u32) < 0x20 || control as u32 == 0x7f => {
                quoted.push_str(&format!("\\x{:02x}", control as u32));
            }
            control if control.is_control() => {
                quoted.push_str(&format!("\\u{:04x}", control as u32));
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Validates `metadata` of an object being created, as kube-apiserver's
/// `ValidateObjectMetaAccessor` does: name or generateName, namespace, generation, labels,
/// annotations and finalizers. Call it after a name has been generated from `generateName`.
///
/// `meta` is the `metadata` value; `namespaced` says whether the kind lives in a namespace.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_rule: NameRule,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(meta) = meta.as_object() else {
        errors.push(FieldError::invalid(
            "metadata",
            meta.clone(),
            "must be an object",
        ));
        return errors;
    };
    let text = |key: &str| -> Result<&str, FieldError> {
        match meta.get(key) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(FieldError::invalid(
                format!("metadata.{key}"),
                other.clone(),
                "must be a string",
            )),
        }
    };

    match text("generateName") {
        Ok("") => {}
        Ok(generate_name) => {
            for message in name_rule.validate(generate_name, true) {
                errors.push(FieldError::invalid(
                    "metadata.generateName",
                    generate_name,
                    &message,
                ));
            }
        }
        Err(error) => errors.push(error),
    }
    match text("name") {
        Ok("") => errors.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Ok(name) => {
            for message in name_rule.validate(name, false) {
                errors.push(FieldError::invalid("metadata.name", name, &message));
            }
        }
        Err(error) => errors.push(error),
    }
    match text("namespace") {
        Ok("") if namespaced => errors.push(FieldError::required("metadata.namespace", "")),
        Ok("") => {}
        Ok(_) if !namespaced => errors.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        )),
        Ok(namespace) => {
            for message in NameRule::Dns1123Label.validate(namespace, false) {
                errors.push(FieldError::invalid(
                    "metadata.namespace",
                    namespace,
                    &message,
                ));
            }
        }
        Err(error) => errors.push(error),
    }
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64)
        && generation < 0
    {
        errors.push(FieldError::invalid(
            "metadata.generation",
            generation,
            "must be greater than or equal to 0",
        ));
    }

    match string_map(meta, "labels") {
        Ok(labels) => {
            for (key, value) in labels {
                for message in is_qualified_name(key) {
                    errors.push(FieldError::invalid("metadata.labels", key, &message));
                }
                for message in is_valid_label_value(value) {
                    errors.push(FieldError::invalid("metadata.labels", value, &message));
                }
            }
        }
        Err(error) => errors.push(error),
    }

    match string_map(meta, "annotations") {
        Ok(annotations) => {
            let mut total_size = 0usize;
            for (key, value) in annotations {
                // Annotation keys follow the qualified-name rule, but case does not matter.
                for message in is_qualified_name(&key.to_lowercase()) {
                    errors.push(FieldError::invalid("metadata.annotations", key, &message));
                }
                total_size += key.len() + value.len();
            }
            if total_size > TOTAL_ANNOTATION_SIZE_LIMIT {
                errors.push(FieldError::too_long(
                    "metadata.annotations",
                    TOTAL_ANNOTATION_SIZE_LIMIT,
                ));
            }
        }
        Err(error) => errors.push(error),
    }

    errors.extend(validate_finalizers(meta.get("finalizers")));
    errors
}

/// Reads `metadata.<key>` as a string map; absent or null is an empty map.
fn string_map<'a>(
    meta: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<Vec<(&'a str, &'a str)>, FieldError> {
    let field = format!("metadata.{key}");
    match meta.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.as_str(), text.as_str())),
                other => Err(FieldError::invalid(
                    field.clone(),
                    other.clone(),
                    "must be a string",
                )),
            })
            .collect(),
        Some(other) => Err(FieldError::invalid(
            field,
            other.clone(),
            "must be a map of string to string",
        )),
    }
}

fn validate_finalizers(finalizers: Option<&Value>) -> Vec<FieldError> {
    const FIELD: &str = "metadata.finalizers";
    let mut errors = Vec::new();
    let names: Vec<&str> = match finalizers {
        None | Some(Value::Null) => return errors,
        Some(Value::Array(items)) => {
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(name) => names.push(name.as_str()),
                    other => errors.push(FieldError::invalid(
                        FIELD,
                        other.clone(),
                        "must be a string",
                    )),
                }
            }
            names
        }
        Some(other) => {
            errors.push(FieldError::invalid(
                FIELD,
                other.clone(),
                "must be a list of strings",
            ));
            return errors;
        }
    };
    for name in &names {
        for message in is_qualified_name(name) {
            errors.push(FieldError::invalid(FIELD, *name, &message));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errors.push(FieldError::invalid(
            FIELD,
            Value::from(names.clone()),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
        alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
        character (e.g. 'example.com', regex used for validation is \
        '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    #[test]
    fn dns1123_subdomain_accepts_dotted_names_and_rejects_the_rest() {
        for good in [
            "a",
            "example.com",
            "a-b.c-d",
            "0",
            "a.b.c",
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(good).is_empty(), "{good}");
        }
        for bad in [
            "", "Foo", "-a", "a-", "a..b", ".a", "a.", "a_b", "a.-b", "ä",
        ] {
            assert_eq!(is_dns1123_subdomain(bad), vec![SUBDOMAIN_MESSAGE], "{bad}");
        }
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 bytes"]
        );
    }

    #[test]
    fn dns1123_label_reports_dots_separately() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("My"),
            vec![
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters \
                 or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
                 or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        let too_long = "a".repeat(64);
        assert_eq!(
            is_dns1123_label(&too_long),
            vec!["must be no more than 63 bytes"]
        );
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert!(is_dns1035_label("web-1").is_empty());
        assert_eq!(
            is_dns1035_label("1web"),
            vec![
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
                 start with an alphabetic character, and end with an alphanumeric character \
                 (e.g. 'my-name',  or 'abc-123', regex used for validation is \
                 '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn qualified_names_check_prefix_and_name_parts() {
        for good in [
            "app",
            "App.Name_1",
            "example.com/name",
            "kubernetes.io/service-name",
        ] {
            assert!(is_qualified_name(good).is_empty(), "{good}");
        }
        assert_eq!(
            is_qualified_name("/name"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("Example.com/name"),
            vec![format!("prefix part {SUBDOMAIN_MESSAGE}")]
        );
        let name_part_message = "name part must consist of alphanumeric characters, '-', '_' or \
            '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or \
            'my.name',  or '123-abc', regex used for validation is \
            '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        assert_eq!(
            is_qualified_name("example.com/"),
            vec![
                "name part must be non-empty".to_string(),
                name_part_message.to_string()
            ]
        );
        assert_eq!(is_qualified_name("a b"), vec![name_part_message]);
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 bytes"]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec![
                "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and \
                 must start and end with an alphanumeric character (e.g. 'MyName',  or \
                 'my.name',  or '123-abc', regex used for validation is \
                 '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain \
                 prefix and '/' (e.g. 'example.com/MyName')"
            ]
        );
    }

    #[test]
    fn label_values_may_be_empty() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_3-x").is_empty());
        assert_eq!(
            is_valid_label_value("-x"),
            vec![
                "a valid label must be an empty string or consist of alphanumeric characters, \
                 '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
                 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
                 '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ]
        );
        assert_eq!(is_valid_label_value(&"x".repeat(64)).len(), 1);
    }

    #[test]
    fn generate_name_may_end_with_a_dash() {
        assert!(NameRule::Dns1123Subdomain.validate("web-", true).is_empty());
        assert!(
            !NameRule::Dns1123Subdomain
                .validate("web-", false)
                .is_empty()
        );
        assert!(!NameRule::Dns1123Subdomain.validate("-", true).is_empty());
        assert!(NameRule::PathSegment.validate("Any Name", false).is_empty());
        assert_eq!(
            NameRule::PathSegment.validate("..", false),
            vec!["may not be '..'"]
        );
        assert_eq!(
            NameRule::PathSegment.validate("a/b%", false),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn field_errors_render_like_upstream() {
        let error = FieldError::invalid("metadata.name", "Foo", "bad");
        assert_eq!(
            error.to_string(),
            "metadata.name: Invalid value: \"Foo\": bad"
        );
        assert_eq!(error.reason.reason(), "FieldValueInvalid");
        assert_eq!(
            FieldError::invalid(
                "spec.ports[0].port",
                70000,
                "must be between 1 and 65535, inclusive"
            )
            .to_string(),
            "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            FieldError::required("metadata.namespace", "").to_string(),
            "metadata.namespace: Required value"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", "Weird", &["ClusterIP", "NodePort"]).to_string(),
            "spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"NodePort\""
        );
        assert_eq!(
            FieldError::duplicate("spec.ports[1].name", "http").to_string(),
            "spec.ports[1].name: Duplicate value: \"http\""
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).message,
            "Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            FieldError::forbidden("metadata.namespace", "not allowed on this type")
                .reason
                .reason(),
            "FieldValueForbidden"
        );
        assert_eq!(
            FieldError::invalid("x", "tab\there \"q\" \u{1}", "d").message,
            "Invalid value: \"tab\\there \\\"q\\\" \\x01\": d"
        );
        assert_eq!(
            error.to_status_cause(),
            json!({"reason": "FieldValueInvalid", "message": "Invalid value: \"Foo\": bad",
                   "field": "metadata.name"})
        );
    }

    #[test]
    fn invalid_message_matches_kube_apiserver() {
        let one = [FieldError::invalid("spec.ports[0].port", 70000, "too big")];
        assert_eq!(
            invalid_message("Service", "nginx", &one),
            "Service \"nginx\" is invalid: spec.ports[0].port: Invalid value: 70000: too big"
        );
        let two = [
            FieldError::required("metadata.name", "name or generateName is required"),
            FieldError::required("metadata.namespace", ""),
        ];
        assert_eq!(
            invalid_message("Deployment.apps", "", &two),
            "Deployment.apps \"\" is invalid: [metadata.name: Required value: name or \
             generateName is required, metadata.namespace: Required value]"
        );
    }

    #[test]
    fn object_meta_accepts_a_normal_object() {
        let meta = json!({
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "app.kubernetes.io/part-of": ""},
            "annotations": {"Example.com/Note": "anything at all"},
            "finalizers": ["example.com/cleanup"],
        });
        assert_eq!(
            validate_object_meta(&meta, true, NameRule::Dns1123Subdomain),
            Vec::<FieldError>::new()
        );
    }

    #[test]
    fn object_meta_reports_each_broken_field() {
        let meta = json!({
            "name": "Foo",
            "namespace": "Bad_NS",
            "generation": -1,
            "labels": {"bad key": "ok", "ok": "bad value"},
            "annotations": {"a/b/c": "x"},
        });
        let errors = validate_object_meta(&meta, true, NameRule::Dns1123Subdomain);
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(rendered.len(), 6, "{rendered:#?}");
        assert_eq!(
            rendered[0],
            format!("metadata.name: Invalid value: \"Foo\": {SUBDOMAIN_MESSAGE}")
        );
        assert!(rendered[1].starts_with(
            "metadata.namespace: Invalid value: \"Bad_NS\": a lowercase RFC 1123 label"
        ));
        assert_eq!(
            rendered[2],
            "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(
            rendered[3]
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist")
        );
        assert!(
            rendered[4]
                .starts_with("metadata.labels: Invalid value: \"bad value\": a valid label must")
        );
        assert!(
            rendered[5]
                .starts_with("metadata.annotations: Invalid value: \"a/b/c\": a valid label key")
        );
        assert!(
            errors
                .iter()
                .all(|error| error.reason == FieldErrorKind::Invalid)
        );
    }

    #[test]
    fn object_meta_name_and_namespace_presence() {
        let errors = validate_object_meta(&json!({}), true, NameRule::Dns1123Subdomain);
        assert_eq!(
            errors,
            vec![
                FieldError::required("metadata.name", "name or generateName is required"),
                FieldError::required("metadata.namespace", ""),
            ]
        );
        let errors = validate_object_meta(
            &json!({"name": "kube-system", "namespace": "default"}),
            false,
            NameRule::Dns1123Label,
        );
        assert_eq!(
            errors,
            vec![FieldError::forbidden(
                "metadata.namespace",
                "not allowed on this type"
            )]
        );
        let errors = validate_object_meta(
            &json!({"name": "web-x7k2p", "generateName": "Web-", "namespace": "default"}),
            true,
            NameRule::Dns1035Label,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.generateName");
    }

    #[test]
    fn object_meta_limits_total_annotation_size() {
        let meta = json!({
            "name": "big",
            "annotations": {"a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)},
        });
        let errors = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            errors,
            vec![FieldError::too_long(
                "metadata.annotations",
                TOTAL_ANNOTATION_SIZE_LIMIT
            )]
        );
        assert_eq!(errors[0].reason.reason(), "FieldValueTooLong");
    }

    #[test]
    fn object_meta_rejects_wrong_types_and_conflicting_finalizers() {
        let meta = json!({
            "name": "web",
            "labels": {"app": 3},
            "finalizers": ["orphan", "foregroundDeletion"],
        });
        let errors = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(
            errors[0].to_string(),
            "metadata.labels: Invalid value: 3: must be a string"
        );
        assert_eq!(
            errors[1].to_string(),
            "metadata.finalizers: Invalid value: [\"orphan\",\"foregroundDeletion\"]: finalizer \
             orphan and foregroundDeletion cannot be both set"
        );
        assert_eq!(
            validate_object_meta(&json!("nope"), false, NameRule::Dns1123Subdomain)[0].field,
            "metadata"
        );
    }
}

/// A port name (IANA_SVC_NAME, RFC 6335): what container port names and a Service's named
/// `targetPort` must be. Messages are upstream's `IsValidPortName`.
pub fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if port.is_empty() || port.len() > 15 {
        errors.push("must be no more than 15 characters".to_string());
    }
    if !port
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    {
        errors.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !port.bytes().any(|byte| byte.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".to_string());
    }
    if port.contains("--") {
        errors.push("must not contain consecutive hyphens".to_string());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errors.push("must not begin or end with a hyphen".to_string());
    }
    errors
}

#[cfg(test)]
mod port_name_tests {
    use super::is_valid_port_name;

    #[test]
    fn port_names_follow_iana_service_names() {
        assert!(is_valid_port_name("http").is_empty());
        assert!(is_valid_port_name("leader-election").is_empty());
        assert_eq!(
            is_valid_port_name("8080"),
            ["must contain at least one letter (a-z)"]
        );
        assert_eq!(
            is_valid_port_name("a--b"),
            ["must not contain consecutive hyphens"]
        );
        assert_eq!(
            is_valid_port_name("this-name-is-too-long"),
            ["must be no more than 15 characters"]
        );
    }
}

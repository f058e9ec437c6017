//! Label and field selectors, parsed and matched the way kube-apiserver does.
//!
//! * [`LabelSelector`] is the set-based language of `?labelSelector=` (`app=web,tier in
//!   (a,b),!canary`) and of `spec.selector` fields ([`LabelSelector::from_api`]). Parsing is a
//!   small lexer and recursive-descent parser with upstream's grammar, context rules (`in` is a
//!   value inside parentheses) and error messages. Requirements are kept sorted by key, so
//!   [`Display`](std::fmt::Display) gives the canonical form kube-apiserver prints.
//! * [`FieldSelector`] is the `?fieldSelector=` language: comma-separated `field=value`,
//!   `field==value` and `field!=value` terms, with `\,`, `\=` and `\\` escapes in values. The
//!   caller supplies field values when matching, and decides which fields a resource supports
//!   ([`FieldSelector::check_supported`]).
//!
//! Both are pure data: parse once per request, then match every object against it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// Why a selector string or API selector was rejected. The messages are kube-apiserver's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label-selector requirement could not be parsed or is invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// The label-selector text is malformed between requirements.
    #[error("{0}")]
    Syntax(String),
    /// An API `LabelSelector` (matchLabels / matchExpressions) is invalid.
    #[error("{0}")]
    InvalidApiSelector(String),
    /// A field-selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash in a field-selector value escapes something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field-selector value holds an unescaped `=`. Upstream prints the character's code
    /// point, and so do we.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedCharacter(char),
    /// The resource cannot be selected by this field.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// How a label requirement relates a key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as `=`; kept apart so the text round-trips)
    DoubleEquals,
    /// `key!=value`: the key is absent or has another value.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>5` (integers)
    GreaterThan,
    /// `key<5` (integers)
    LessThan,
}

impl Operator {
    /// Upstream's name for the operator, as used in error messages.
    fn name(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// One `key op values` clause of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the values and their number as kube-apiserver's
    /// `NewRequirement` does.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let key = key.into();
        let mut errors = Vec::new();
        let key_errors = is_qualified_name(&key);
        if !key_errors.is_empty() {
            errors.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(&key),
                key_errors.join("; ")
            ));
        }
        // Upstream renders the values as JSON; an absent list is Go's nil slice, `null`.
        let values_json = || {
            if values.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(&values).unwrap_or_default()
            }
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errors.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                values_json()
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errors.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    values_json()
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errors.push(format!(
                    "values: Invalid value: {}: values set must be empty for exists and does not \
                     exist",
                    values_json()
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errors.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value \
                         is required",
                        values_json()
                    ));
                }
                for (index, value) in values.iter().enumerate() {
                    if value.parse::<i64>().is_err() {
                        errors.push(format!(
                            "values[{index}]: Invalid value: {}: for 'Gt', 'Lt' operators, the \
                             value must be an integer",
                            go_quote(value)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (index, value) in values.iter().enumerate() {
            let value_errors = is_valid_label_value(value);
            if !value_errors.is_empty() {
                errors.push(format!(
                    "values[{index}][{key}]: Invalid value: {}: {}",
                    go_quote(value),
                    value_errors.join("; ")
                ));
            }
        }
        if errors.is_empty() {
            Ok(Requirement {
                key,
                operator,
                values,
            })
        } else {
            Err(SelectorError::InvalidApiSelector(aggregate(errors)))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|value| self.values.contains(value))
            }
            Operator::NotIn | Operator::NotEquals => {
                value.is_none_or(|value| !self.values.contains(value))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = value.and_then(|value| value.parse::<i64>().ok()) else {
                    return false;
                };
                let [limit] = self.values.as_slice() else {
                    return false;
                };
                let Ok(limit) = limit.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > limit
                } else {
                    actual < limit
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            formatter.write_str("!")?;
        }
        formatter.write_str(&self.key)?;
        let operator = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in (",
            Operator::NotIn => " notin (",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        formatter.write_str(operator)?;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        formatter.write_str(&values.join(","))?;
        if matches!(self.operator, Operator::In | Operator::NotIn) {
            formatter.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: the AND of its requirements. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches every label set.
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Parses `?labelSelector=` text.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = Lexer::new(text).tokens();
        let requirements = Parser {
            tokens,
            position: 0,
        }
        .parse()?;
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Builds a selector from requirements, sorting them by key as upstream does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort_by(|left, right| left.key.cmp(&right.key));
        LabelSelector { requirements }
    }

    /// The selector that requires exactly these labels (a Service's `spec.selector`). Like
    /// upstream's `SelectorFromSet`, the keys and values are not validated.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> LabelSelector {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        LabelSelector::from_requirements(requirements)
    }

    /// Converts an API `LabelSelector` (`matchLabels` and `matchExpressions`). A selector with
    /// neither matches everything. Upstream treats an absent selector as matching nothing;
    /// callers holding an `Option` must make that choice themselves.
    pub fn from_api(selector: &meta::LabelSelector) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(
                key.clone(),
                Operator::Equals,
                vec![value.clone()],
            )?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::InvalidApiSelector(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )));
                }
            };
            requirements.push(Requirement::new(
                expression.key.clone(),
                operator,
                expression.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }

    /// The single value `label` must have (from `label=v`, `label==v` or `label in (v)`), for
    /// answering from an index instead of scanning.
    pub fn requires_exact(&self, label: &str) -> Option<&str> {
        let requirement = self
            .requirements
            .iter()
            .find(|requirement| requirement.key == label)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            write!(formatter, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<LabelSelector, SelectorError> {
        LabelSelector::parse(text)
    }
}

/// Several messages as one, as upstream's error aggregates print them: repeats dropped, and
/// brackets around more than one.
fn aggregate(messages: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::with_capacity(messages.len());
    for message in messages {
        if !unique.contains(&message) {
            unique.push(message);
        }
    }
    if unique.len() == 1 {
        unique.remove(0)
    } else {
        format!("[{}]", unique.join(", "))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    EndOfString,
    ClosedParenthesis,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenParenthesis,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    literal: String,
}

fn keyword(text: &str) -> Option<TokenKind> {
    Some(match text {
        ")" => TokenKind::ClosedParenthesis,
        "," => TokenKind::Comma,
        "!" => TokenKind::DoesNotExist,
        "==" => TokenKind::DoubleEquals,
        "=" => TokenKind::Equals,
        ">" => TokenKind::GreaterThan,
        "in" => TokenKind::In,
        "<" => TokenKind::LessThan,
        "!=" => TokenKind::NotEquals,
        "notin" => TokenKind::NotIn,
        "(" => TokenKind::OpenParenthesis,
        _ => return None,
    })
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits selector text into tokens. Works on bytes like upstream: every delimiter is ASCII, so
/// identifiers are always whole UTF-8 sequences. A NUL byte reads as the end of input, as it
/// does upstream.
struct Lexer<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, position: 0 }
    }

    /// The next byte, or 0 at the end.
    fn read(&mut self) -> u8 {
        let byte = self
            .text
            .as_bytes()
            .get(self.position)
            .copied()
            .unwrap_or(0);
        self.position += 1;
        byte
    }

    fn unread(&mut self) {
        self.position -= 1;
    }

    fn tokens(mut self) -> Vec<Token> {
        let mut tokens = Vec::new();
        loop {
            let token = self.lex();
            let done = token.kind == TokenKind::EndOfString;
            tokens.push(token);
            if done {
                return tokens;
            }
        }
    }

    fn lex(&mut self) -> Token {
        let mut byte = self.read();
        while is_whitespace(byte) {
            byte = self.read();
        }
        if byte == 0 {
            return Token {
                kind: TokenKind::EndOfString,
                literal: String::new(),
            };
        }
        self.unread();
        if is_special_symbol(byte) {
            self.scan_special_symbol()
        } else {
            self.scan_identifier_or_keyword()
        }
    }

    fn scan_identifier_or_keyword(&mut self) -> Token {
        let start = self.position;
        let mut end;
        loop {
            end = self.position;
            let byte = self.read();
            if byte == 0 {
                break;
            }
            if is_special_symbol(byte) || is_whitespace(byte) {
                self.unread();
                break;
            }
        }
        let literal = self.text[start..end.min(self.text.len())].to_string();
        let kind = keyword(&literal).unwrap_or(TokenKind::Identifier);
        Token { kind, literal }
    }

    /// Takes the longest run of special symbols that still forms an operator (`!=`, `==`).
    fn scan_special_symbol(&mut self) -> Token {
        let start = self.position;
        let mut longest: Option<Token> = None;
        loop {
            let byte = self.read();
            if byte == 0 {
                break;
            }
            if !is_special_symbol(byte) {
                self.unread();
                break;
            }
            let candidate = &self.text[start..self.position];
            match keyword(candidate) {
                Some(kind) => {
                    longest = Some(Token {
                        kind,
                        literal: candidate.to_string(),
                    })
                }
                None if longest.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        // Every single special symbol is an operator, so a run always yields one.
        longest.unwrap_or(Token {
            kind: TokenKind::EndOfString,
            literal: String::new(),
        })
    }
}

/// Whether `in` and `notin` are operators (after a key) or plain values (anywhere else).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn kind_in(context: Context, kind: TokenKind) -> TokenKind {
        match (context, kind) {
            (Context::Values, TokenKind::In | TokenKind::NotIn) => TokenKind::Identifier,
            _ => kind,
        }
    }

    fn lookahead(&self, context: Context) -> (TokenKind, String) {
        let token = &self.tokens[self.position.min(self.tokens.len() - 1)];
        (Self::kind_in(context, token.kind), token.literal.clone())
    }

    fn consume(&mut self, context: Context) -> (TokenKind, String) {
        let token = self.lookahead(context);
        if self.position < self.tokens.len() - 1 {
            self.position += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (kind, literal) = self.lookahead(Context::Values);
            match kind {
                TokenKind::Identifier | TokenKind::DoesNotExist => {
                    requirements.push(self.parse_requirement()?);
                    let (kind, literal) = self.consume(Context::Values);
                    match kind {
                        TokenKind::EndOfString => return Ok(requirements),
                        TokenKind::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != TokenKind::Identifier && next != TokenKind::DoesNotExist {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                TokenKind::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return new_parsed_requirement(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_parsed_requirement(key, operator, values)
    }

    /// Reads `[!]key`; the operator is known already for `!key` and for a bare `key`.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), SelectorError> {
        let mut operator = None;
        let (mut kind, mut literal) = self.consume(Context::Values);
        if kind == TokenKind::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (kind, literal) = self.consume(Context::Values);
        }
        if kind != TokenKind::Identifier {
            return Err(SelectorError::Requirement(format!(
                "found '{literal}', expected: identifier"
            )));
        }
        let key_errors = is_qualified_name(&literal);
        if !key_errors.is_empty() {
            // Upstream reports this against a nil field path, which prints as `<nil>`.
            return Err(SelectorError::Requirement(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&literal),
                key_errors.join("; ")
            )));
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, TokenKind::EndOfString | TokenKind::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (kind, literal) = self.consume(Context::KeyAndOperator);
        Ok(match kind {
            TokenKind::In => Operator::In,
            TokenKind::Equals => Operator::Equals,
            TokenKind::DoubleEquals => Operator::DoubleEquals,
            TokenKind::GreaterThan => Operator::GreaterThan,
            TokenKind::LessThan => Operator::LessThan,
            TokenKind::NotIn => Operator::NotIn,
            TokenKind::NotEquals => Operator::NotEquals,
            _ => {
                let expected: Vec<&str> = [
                    Operator::In,
                    Operator::NotIn,
                    Operator::Equals,
                    Operator::DoubleEquals,
                    Operator::NotEquals,
                    Operator::GreaterThan,
                    Operator::LessThan,
                ]
                .iter()
                .map(|operator| operator.name())
                .collect();
                return Err(SelectorError::Requirement(format!(
                    "found '{literal}', expected: {}",
                    expected.join(", ")
                )));
            }
        })
    }

    /// Reads `(a,b,...)`; empty entries stand for the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (kind, literal) = self.consume(Context::Values);
        if kind != TokenKind::OpenParenthesis {
            return Err(SelectorError::Requirement(format!(
                "found '{literal}' expected: '('"
            )));
        }
        let (kind, literal) = self.lookahead(Context::Values);
        match kind {
            TokenKind::Identifier | TokenKind::Comma => {
                let values = self.parse_identifiers_list()?;
                let (closing, _) = self.consume(Context::Values);
                if closing != TokenKind::ClosedParenthesis {
                    // Upstream names the token that opened the list here, not the offending one.
                    return Err(SelectorError::Requirement(format!(
                        "found '{literal}', expected: ')'"
                    )));
                }
                Ok(values)
            }
            TokenKind::ClosedParenthesis => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(SelectorError::Requirement(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values = std::collections::BTreeSet::new();
        loop {
            let (kind, literal) = self.consume(Context::Values);
            match kind {
                TokenKind::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        TokenKind::Comma => continue,
                        TokenKind::ClosedParenthesis => return Ok(values.into_iter().collect()),
                        _ => {
                            return Err(SelectorError::Requirement(format!(
                                "found '{next_literal}', expected: ',' or ')'"
                            )));
                        }
                    }
                }
                TokenKind::Comma => {
                    if values.is_empty() {
                        // `(,` starts with an empty value.
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == TokenKind::ClosedParenthesis {
                        // `,)` ends with an empty value.
                        values.insert(String::new());
                        return Ok(values.into_iter().collect());
                    }
                    if next == TokenKind::Comma {
                        self.consume(Context::Values);
                        values.insert(String::new());
                    }
                }
                _ => {
                    return Err(SelectorError::Requirement(format!(
                        "found '{literal}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (kind, _) = self.lookahead(Context::Values);
        if matches!(kind, TokenKind::EndOfString | TokenKind::Comma) {
            return Ok(vec![String::new()]);
        }
        let (kind, literal) = self.consume(Context::Values);
        if kind == TokenKind::Identifier {
            Ok(vec![literal])
        } else {
            Err(SelectorError::Requirement(format!(
                "found '{literal}', expected: identifier"
            )))
        }
    }
}

/// `Requirement::new` for parsed text: the same checks, reported inside "unable to parse
/// requirement".
fn new_parsed_requirement(
    key: String,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    Requirement::new(key, operator, values).map_err(|error| match error {
        SelectorError::InvalidApiSelector(message) => SelectorError::Requirement(message),
        other => other,
    })
}

/// Whether a field term asks for equality or inequality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`
    Equals,
    /// `field!=value`
    NotEquals,
}

/// One `field op value` term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub operator: FieldOperator,
    /// The value with escapes removed.
    pub value: String,
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(
            formatter,
            "{}{operator}{}",
            self.field,
            escape_field_value(&self.value)
        )
    }
}

/// A field selector: the AND of its terms. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses `?fieldSelector=` text.
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_field_terms(text);
        // Upstream sorts the raw terms, which fixes the order of the canonical form.
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_field_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: text.to_string(),
                    term: part.to_string(),
                });
            };
            let value = unescape_field_value(raw_value)?;
            // A bare `=` selects nothing in particular; upstream drops it.
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// The selector `field=value`.
    pub fn exact(field: impl Into<String>, value: impl Into<String>) -> FieldSelector {
        FieldSelector {
            terms: vec![FieldTerm {
                field: field.into(),
                operator: FieldOperator::Equals,
                value: value.into(),
            }],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The field names the selector refers to, in order, without repeats.
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for term in &self.terms {
            if !fields.contains(&term.field.as_str()) {
                fields.push(&term.field);
            }
        }
        fields
    }

    /// Fails with `field label not supported: <name>` on the first field not in `supported`.
    pub fn check_supported(&self, supported: &[&str]) -> Result<(), SelectorError> {
        match self
            .terms
            .iter()
            .find(|term| !supported.contains(&term.field.as_str()))
        {
            Some(term) => Err(SelectorError::UnsupportedField(term.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether an object matches. `get` returns a field's value; a field it does not know
    /// counts as the empty string, as upstream's field sets do.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| {
            let actual = get(&term.field).unwrap_or_default();
            match term.operator {
                FieldOperator::Equals => actual == term.value,
                FieldOperator::NotEquals => actual != term.value,
            }
        })
    }

    /// The value an equality term requires of `field`, for answering from an index.
    pub fn requires_exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|term| term.field == field && term.operator == FieldOperator::Equals)
            .map(|term| term.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, term) in self.terms.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            write!(formatter, "{term}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<FieldSelector, SelectorError> {
        FieldSelector::parse(text)
    }
}

/// Escapes `\`, `,` and `=` in a field-selector value.
pub fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if matches!(character, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut escaping = false;
    for character in raw.chars() {
        if escaping {
            if !matches!(character, '\\' | ',' | '=') {
                return Err(SelectorError::InvalidEscape(format!("\\{character}")));
            }
            value.push(character);
            escaping = false;
            continue;
        }
        match character {
            '\\' => escaping = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(character)),
            other => value.push(other),
        }
    }
    if escaping {
        return Err(SelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(value)
}

/// Splits on commas that are not escaped; the escapes stay in the terms.
fn split_field_terms(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaping = false;
    for (index, character) in text.char_indices() {
        if escaping {
            escaping = false;
        } else if character == '\\' {
            escaping = true;
        } else if character == ',' {
            terms.push(&text[start..index]);
            start = index + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Splits a term at the first operator; field names have no escapes.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        for (operator, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(operator) {
                return Some((&term[..index], kind, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn parse(text: &str) -> LabelSelector {
        LabelSelector::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
    }

    fn parse_error(text: &str) -> String {
        match LabelSelector::parse(text) {
            Ok(selector) => panic!("{text:?} parsed as {selector}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn parses_every_operator_and_renders_canonically() {
        let cases = [
            ("", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            ("  x = a  ", "x=a"),
            ("x in (b,a)", "x in (a,b)"),
            ("x notin(a)", "x notin (a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in ()", "x in ()"),
            ("x in (a,)", "x in (,a)"),
            ("x", "x"),
            ("!x", "!x"),
            ("y,x=1", "x=1,y"),
            ("x>1", "x>1"),
            ("x<1", "x<1"),
            ("x=", "x="),
            ("x=,y", "x=,y"),
            ("example.com/key=v", "example.com/key=v"),
            ("x in (in,notin)", "x in (in,notin)"),
            ("x=in", "x=in"),
            ("\tx\n=\ra", "x=a"),
        ];
        for (text, canonical) in cases {
            assert_eq!(parse(text).to_string(), canonical, "{text:?}");
        }
    }

    #[test]
    fn matches_like_upstream() {
        let set = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let expectations = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("missing in (web)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier=back", false),
            ("app=web,tier=front", true),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("app>1", false),
            ("missing<1", false),
            ("missing=", false),
        ];
        for (text, expected) in expectations {
            assert_eq!(parse(text).matches(&set), expected, "{text:?}");
        }
        assert!(LabelSelector::everything().matches(&BTreeMap::new()));
        assert!(LabelSelector::everything().is_empty());
        assert!(!parse("a").is_empty());
    }

    #[test]
    fn syntax_errors_use_upstream_wording() {
        assert_eq!(
            parse_error("x=a b"),
            "found 'b', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_error("x,"),
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_error("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_error("x (a)"),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_error("x in a"),
            "unable to parse requirement: found 'a' expected: '('"
        );
        assert_eq!(
            parse_error("x in (a b)"),
            "unable to parse requirement: found 'b', expected: ',' or ')'"
        );
        assert_eq!(
            parse_error("x in (a"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            parse_error("x in (=)"),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier"
        );
        assert_eq!(
            parse_error("x=(a)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            parse_error("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_error("!(a)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            parse_error("!x=a"),
            "found '=', expected: ',' or 'end of string'"
        );
    }

    #[test]
    fn invalid_keys_and_values_are_reported() {
        assert_eq!(
            parse_error("x/y/z=a"),
            "unable to parse requirement: <nil>: Invalid value: \"x/y/z\": a valid label key \
             must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex \
             used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an \
             optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert_eq!(
            parse_error("x=-a"),
            "unable to parse requirement: values[0][x]: Invalid value: \"-a\": a valid label \
             must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and \
             must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  \
             or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert!(
            parse_error("x>a").contains("for 'Gt', 'Lt' operators, the value must be an integer")
        );
    }

    #[test]
    fn requires_exact_finds_single_values() {
        let selector = parse("app=web,tier in (a),x in (a,b),y!=z");
        assert_eq!(selector.requires_exact("app"), Some("web"));
        assert_eq!(selector.requires_exact("tier"), Some("a"));
        assert_eq!(selector.requires_exact("x"), None);
        assert_eq!(selector.requires_exact("y"), None);
        assert_eq!(selector.requires_exact("nope"), None);
    }

    #[test]
    fn converts_api_selectors() {
        let api = meta::LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                meta::LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["b".into(), "a".into()]),
                },
                meta::LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
                meta::LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Exists".into(),
                    values: None,
                },
            ]),
        };
        let selector = LabelSelector::from_api(&api).expect("valid");
        assert_eq!(selector.to_string(), "app=web,!canary,env,tier in (a,b)");
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "a"), ("env", "")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(
            LabelSelector::from_api(&meta::LabelSelector::default())
                .expect("empty")
                .is_empty()
        );

        let bad_operator = meta::LabelSelector {
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "a".into(),
                operator: "Gt".into(),
                values: Some(vec!["1".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_api(&bad_operator)
                .unwrap_err()
                .to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let empty_in = meta::LabelSelector {
            match_expressions: Some(vec![meta::LabelSelectorRequirement {
                key: "a".into(),
                operator: "In".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(
            LabelSelector::from_api(&empty_in).unwrap_err().to_string(),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
    }

    #[test]
    fn requirement_errors_are_aggregated() {
        let error = Requirement::new("a/b/c", Operator::Equals, Vec::new()).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("[key: Invalid value: \"a/b/c\": a valid label key"));
        assert!(message.ends_with(
            ", values: Invalid value: null: exact-match compatibility requires one single value]"
        ));
        assert_eq!(
            Requirement::new("a", Operator::Exists, vec!["x".into()])
                .unwrap_err()
                .to_string(),
            "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
        );
    }

    #[test]
    fn from_labels_requires_every_label() {
        let selector = LabelSelector::from_labels(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!selector.matches(&labels(&[("a", "1")])));
    }

    #[test]
    fn field_selectors_parse_match_and_render() {
        let selector =
            FieldSelector::parse("metadata.namespace!=kube-system,metadata.name==web").unwrap();
        assert_eq!(
            selector.to_string(),
            "metadata.name=web,metadata.namespace!=kube-system"
        );
        assert_eq!(
            selector.fields(),
            vec!["metadata.name", "metadata.namespace"]
        );
        assert_eq!(selector.requires_exact("metadata.name"), Some("web"));
        assert_eq!(selector.requires_exact("metadata.namespace"), None);
        let get = |namespace: &'static str| {
            move |field: &str| match field {
                "metadata.name" => Some("web".to_string()),
                "metadata.namespace" => Some(namespace.to_string()),
                _ => None,
            }
        };
        assert!(selector.matches(get("default")));
        assert!(!selector.matches(get("kube-system")));

        let missing = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(missing.matches(|_| None));
        assert!(!missing.matches(|_| Some("node-1".into())));

        assert!(FieldSelector::parse("").unwrap().is_empty());
        assert!(FieldSelector::parse(",,=").unwrap().is_empty());
        assert_eq!(FieldSelector::exact("a", "b").to_string(), "a=b");
    }

    #[test]
    fn field_selector_escapes() {
        let selector = FieldSelector::parse(r"a=x\,y\=z\\w,b=c").unwrap();
        assert_eq!(selector.terms()[0].value, r"x,y=z\w");
        assert_eq!(selector.to_string(), r"a=x\,y\=z\\w,b=c");
        assert_eq!(
            FieldSelector::parse(r"a=\q").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \q"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse("a=b,nonsense")
                .unwrap_err()
                .to_string(),
            "invalid selector: 'a=b,nonsense'; can't understand 'nonsense'"
        );
        assert_eq!(
            FieldSelector::parse("a!b=c").unwrap().terms()[0],
            FieldTerm {
                field: "a!b".into(),
                operator: FieldOperator::Equals,
                value: "c".into()
            }
        );
    }

    #[test]
    fn unsupported_fields_are_named() {
        let selector = FieldSelector::parse("metadata.name=a,spec.bogus=b").unwrap();
        assert_eq!(
            selector
                .check_supported(&["metadata.name", "metadata.namespace"])
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.bogus"
        );
        assert!(
            selector
                .check_supported(&["metadata.name", "spec.bogus"])
                .is_ok()
        );
    }

    fn sorted_terms(selector: &FieldSelector) -> Vec<(String, bool, String)> {
        let mut terms: Vec<(String, bool, String)> = selector
            .terms()
            .iter()
            .map(|term| {
                let equal = term.operator == FieldOperator::Equals;
                (term.field.clone(), equal, term.value.clone())
            })
            .collect();
        terms.sort();
        terms
    }

    fn name_part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?"
    }

    fn label_key() -> impl Strategy<Value = String> {
        (
            proptest::option::of("[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?(\\.[a-z0-9]{1,4}){0,2}"),
            name_part(),
        )
            .prop_map(|(prefix, name)| match prefix {
                Some(prefix) => format!("{prefix}/{name}"),
                None => name,
            })
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), name_part()]
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let sets = proptest::collection::btree_set(label_value(), 1..4)
            .prop_map(|values| values.into_iter().collect::<Vec<_>>());
        (
            label_key(),
            prop_oneof![
                Just(Operator::Equals),
                Just(Operator::DoubleEquals),
                Just(Operator::NotEquals),
                Just(Operator::In),
                Just(Operator::NotIn),
                Just(Operator::Exists),
                Just(Operator::DoesNotExist),
                Just(Operator::GreaterThan),
                Just(Operator::LessThan),
            ],
            label_value(),
            sets,
            0u32..1000,
        )
            .prop_map(|(key, operator, value, set, number)| {
                let values = match operator {
                    Operator::Exists | Operator::DoesNotExist => Vec::new(),
                    Operator::In | Operator::NotIn => set,
                    Operator::GreaterThan | Operator::LessThan => vec![number.to_string()],
                    _ => vec![value],
                };
                Requirement::new(key, operator, values).expect("generated requirements are valid")
            })
    }

    proptest! {
        #[test]
        fn label_selectors_round_trip(requirements in proptest::collection::vec(requirement(), 0..5)) {
            let selector = LabelSelector::from_requirements(requirements);
            let text = selector.to_string();
            let reparsed = LabelSelector::parse(&text);
            prop_assert_eq!(reparsed, Ok(selector), "{}", text);
        }

        #[test]
        fn label_parser_never_panics(text in "\\PC{0,40}") {
            if let Ok(selector) = LabelSelector::parse(&text) {
                // Whatever parses renders to text that parses to the same selector.
                prop_assert_eq!(LabelSelector::parse(&selector.to_string()), Ok(selector));
            }
        }

        #[test]
        fn label_parser_never_panics_on_selector_alphabet(text in "[a-z!=(), \t<>in]{0,30}") {
            let _ = LabelSelector::parse(&text);
        }

        #[test]
        fn field_selectors_round_trip(
            terms in proptest::collection::vec(
                ("[a-zA-Z][a-zA-Z.]{0,12}", any::<bool>(), "\\PC{0,8}"),
                0..5,
            )
        ) {
            let text: Vec<String> = terms
                .iter()
                .map(|(field, equal, value)| {
                    let operator = if *equal { "=" } else { "!=" };
                    format!("{field}{operator}{}", escape_field_value(value))
                })
                .collect();
            let parsed = FieldSelector::parse(&text.join(",")).expect("escaped terms parse");
            let mut expected: Vec<(String, bool, String)> = terms;
            expected.sort();
            prop_assert_eq!(sorted_terms(&parsed), expected);
            let reparsed = FieldSelector::parse(&parsed.to_string()).expect("rendered text parses");
            prop_assert_eq!(sorted_terms(&reparsed), sorted_terms(&parsed));
        }

        #[test]
        fn field_parser_never_panics(text in "\\PC{0,40}") {
            if let Ok(selector) = FieldSelector::parse(&text) {
                // Rendering normalises `==` and escapes, which can reorder terms; the set of
                // terms must survive.
                let reparsed = FieldSelector::parse(&selector.to_string()).expect("rendered text parses");
                prop_assert_eq!(sorted_terms(&reparsed), sorted_terms(&selector));
            }
        }
    }
}

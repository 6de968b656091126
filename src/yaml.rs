//! YAML read once into a tree that knows where every key and value is.
//!
//! The text is parsed with saphyr-parser's event stream (`serde_yaml_ng` keeps its parser's events
//! and marks private, so it cannot tell where a key was or that a key came twice). Building the
//! tree refuses a mapping that names a key twice, naming both lines. The tree then deserializes
//! through serde ([`from_node`]): every error carries the line, column and dotted path of the node
//! it is about, and says what was expected in the words of the type being read (its visitor's
//! `expecting`, or a struct's serde name and fields), never Rust's.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, StrInput};
use serde::de::{self, DeserializeSeed, Visitor};

use crate::suggest;

/// A place in the text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, or nothing at all after the colon.
    Null,
    /// Text; `plain` when written without quotes (then `true`, `22` or `0.5` are not text).
    Scalar {
        text: String,
        plain: bool,
    },
    List(Vec<Node>),
    Mapping(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_at: Location,
    pub value: Node,
}

impl Node {
    /// The node at `path` (mapping keys; list indexes as decimal numbers).
    #[must_use]
    pub fn get(&self, path: &[&str]) -> Option<&Node> {
        self.entry(path)
            .map_or_else(|| path.is_empty().then_some(self), |(_, node)| Some(node))
    }

    /// Where the key of the last mapping step of `path` is written, and its value.
    fn entry(&self, path: &[&str]) -> Option<(Option<Location>, &Node)> {
        let (mut node, mut key_at) = (self, None);
        for step in path {
            match &node.value {
                Value::Mapping(entries) => {
                    let entry = entries.iter().find(|e| e.key == *step)?;
                    (node, key_at) = (&entry.value, Some(entry.key_at));
                }
                Value::List(items) => {
                    node = items.get(step.parse::<usize>().ok()?)?;
                    key_at = Some(node.at);
                }
                _ => return None,
            }
        }
        key_at.map(|at| (Some(at), node))
    }

    /// Where the key of `path` is written, or else the nearest enclosing key that is.
    #[must_use]
    pub fn key_location(&self, path: &[&str]) -> Option<Location> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.entry(&path[..n]).and_then(|(at, _)| at))
    }

    /// Where the value of `path` starts, or else the nearest enclosing key.
    #[must_use]
    pub fn value_location(&self, path: &[&str]) -> Option<Location> {
        match self.get(path) {
            Some(node) if !path.is_empty() => Some(node.at),
            _ => self.key_location(path),
        }
    }

    /// The keys of the mapping at `path`, in the order written.
    #[must_use]
    pub fn keys(&self, path: &[&str]) -> Vec<&str> {
        match self.get(path).map(|n| &n.value) {
            Some(Value::Mapping(entries)) => entries.iter().map(|e| e.key.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// What this node is, for "found ..." in messages.
    fn found(&self) -> String {
        match &self.value {
            Value::Null => "nothing".to_owned(),
            Value::Scalar { text, .. } => format!("the value `{}`", shorten(text)),
            Value::List(_) => "a list".to_owned(),
            Value::Mapping(_) => "a mapping".to_owned(),
        }
    }
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    short.replace('\n', "\\n")
}

/// A problem in the text itself: not YAML, or a key given twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    /// Dotted path of the mapping the problem is in, e.g. `clients.c1`; empty at the top.
    pub path: String,
    pub message: String,
}

/// Parse one YAML document into a located tree. An empty text is an empty mapping.
///
/// # Errors
/// The text is not YAML (the first such problem), or mappings name a key twice (every one).
pub fn parse(source: &str) -> Result<Node, Vec<Problem>> {
    if let Some(problem) = lone_carriage_return(source) {
        return Err(vec![problem]);
    }
    let mut reader = Reader {
        parser: Parser::new_from_str(source),
        source,
        anchors: HashMap::new(),
        copied: 0,
        depth: 0,
        problems: Vec::new(),
    };
    match reader.document() {
        Ok(node) if reader.problems.is_empty() => Ok(node),
        Ok(_) => {
            reader.problems.sort_by_key(|p| (p.at.line, p.at.column));
            Err(reader.problems)
        }
        Err(fatal) => {
            reader.problems.push(fatal);
            Err(reader.problems)
        }
    }
}

/// A `\r` with no `\n` after it ends a line for YAML but not for editors, `grep -n` or the
/// line numbers in clockprov's own messages: refused, so every line number means one line.
fn lone_carriage_return(source: &str) -> Option<Problem> {
    let at = source
        .match_indices('\r')
        .map(|(i, _)| i)
        .find(|&i| source.as_bytes().get(i + 1) != Some(&b'\n'))?;
    let before = &source[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some(Problem {
        at: Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        },
        path: String::new(),
        message: "a carriage return without a line feed (old Mac line endings): save the file with \\n or \\r\\n line endings".to_owned(),
    })
}

/// How deep lists and mappings may nest.
const MAX_DEPTH: usize = 64;

/// How many values aliases may copy in one document.
const MAX_ALIAS_NODES: usize = 100_000;

/// The values in `node`, itself included.
fn node_count(node: &Node) -> usize {
    match &node.value {
        Value::Null | Value::Scalar { .. } => 1,
        Value::List(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        Value::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|entry| 1 + node_count(&entry.value))
                .sum::<usize>()
        }
    }
}

struct Reader<'s> {
    parser: Parser<'s, StrInput<'s>>,
    source: &'s str,
    /// Each anchor's node, and how many nodes it holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied by aliases so far: bounded, as an alias of an alias of ... doubles it each
    /// time (a few hundred bytes of "billion laughs" would take all memory).
    copied: usize,
    /// Lists and mappings open around the node being read.
    depth: usize,
    /// Problems that do not stop the reading (duplicate keys): all are reported.
    problems: Vec<Problem>,
}

fn location(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// A step of a path into the tree, linked to its parent (built on the stack while descending).
#[derive(Clone, Copy)]
pub enum PathRef<'a> {
    Root,
    Key(&'a PathRef<'a>, &'a str),
    Index(&'a PathRef<'a>, usize),
}

impl fmt::Display for PathRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathRef::Root => Ok(()),
            PathRef::Key(PathRef::Root, key) => f.write_str(key),
            PathRef::Key(parent, key) => write!(f, "{parent}.{key}"),
            PathRef::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl<'s> Reader<'s> {
    fn next(&mut self) -> Result<(Event<'s>, Span), Problem> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => Err(self.scan_problem(&e)),
            None => Err(Problem {
                at: self.end(),
                path: String::new(),
                message: "the file ends in the middle of a value".to_owned(),
            }),
        }
    }

    fn end(&self) -> Location {
        Location {
            line: self.source.lines().count().max(1),
            column: 1,
        }
    }

    fn document(&mut self) -> Result<Node, Problem> {
        let start = Location { line: 1, column: 1 };
        let empty = Node {
            value: Value::Mapping(Vec::new()),
            at: start,
        };
        loop {
            match self.next()? {
                (Event::StreamStart | Event::Nothing, _) => {}
                (Event::StreamEnd, _) => return Ok(empty),
                (Event::DocumentStart(_), _) => break,
                (_, span) => return Err(Self::unexpected(&span)),
            }
        }
        let (event, span) = self.next()?;
        let root = self.node(event, &span, &PathRef::Root)?;
        // An empty document (only comments, or `---` alone) is an empty inventory.
        let root = if root.value == Value::Null {
            empty
        } else {
            root
        };
        loop {
            match self.next()? {
                (Event::DocumentEnd | Event::Nothing, _) => {}
                (Event::StreamEnd, _) => return Ok(root),
                (Event::DocumentStart(_), span) => {
                    return Err(Problem {
                        at: location(&span),
                        path: String::new(),
                        message: "a second YAML document starts here; the inventory is one document (remove the `---` line)".to_owned(),
                    });
                }
                (_, span) => return Err(Self::unexpected(&span)),
            }
        }
    }

    fn unexpected(span: &Span) -> Problem {
        Problem {
            at: location(span),
            path: String::new(),
            message: "unexpected YAML structure here".to_owned(),
        }
    }

    fn node(&mut self, event: Event<'s>, span: &Span, path: &PathRef<'_>) -> Result<Node, Problem> {
        let at = location(span);
        // Reading is recursive: deep nesting (`[[[[...`) would overflow the stack.
        let collection = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        if collection {
            if self.depth >= MAX_DEPTH {
                return Err(Problem {
                    at,
                    path: path.to_string(),
                    message: format!(
                        "lists and mappings nested more than {MAX_DEPTH} deep; an inventory needs a few"
                    ),
                });
            }
            self.depth += 1;
        }
        let (node, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_text = tag
                    .as_ref()
                    .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !forced_text;
                let value = if plain && is_null(&text) {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                (Node { value, at }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    let item_path = PathRef::Index(path, items.len());
                    items.push(self.node(event, &span, &item_path)?);
                }
                (
                    Node {
                        value: Value::List(items),
                        at,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => (self.mapping(at, path)?, anchor),
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id) else {
                    return Err(Problem {
                        at,
                        path: path.to_string(),
                        message: "an alias (`*name`) to an anchor that is not defined before it"
                            .to_owned(),
                    });
                };
                self.copied = self.copied.saturating_add(*size);
                if self.copied > MAX_ALIAS_NODES {
                    return Err(Problem {
                        at,
                        path: path.to_string(),
                        message: format!(
                            "aliases (`*name`) copy more than {MAX_ALIAS_NODES} values in all; an inventory needs far fewer"
                        ),
                    });
                }
                return Ok(node.clone());
            }
            _ => return Err(Self::unexpected(span)),
        };
        if collection {
            self.depth -= 1;
        }
        if anchor != 0 {
            let size = node_count(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(node)
    }

    fn mapping(&mut self, at: Location, path: &PathRef<'_>) -> Result<Node, Problem> {
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            let key_at = location(&span);
            let key = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, ..) => text.into_owned(),
                other => {
                    // `? [a, b]: x` and the like: parse it to stay in step, then refuse it.
                    let _ = self.node(other, &span, path)?;
                    return Err(Problem {
                        at: key_at,
                        path: path.to_string(),
                        message: "a key must be a name, not a list or a mapping".to_owned(),
                    });
                }
            };
            let (event, span) = self.next()?;
            let value = self.node(event, &span, &PathRef::Key(path, &key))?;
            if let Some(first) = entries.iter().find(|e| e.key == key) {
                self.problems.push(Problem {
                    at: key_at,
                    path: PathRef::Key(path, &key).to_string(),
                    message: format!(
                        "defined twice (first at line {}); only one can be kept: remove or rename one of them",
                        first.key_at.line
                    ),
                });
                continue;
            }
            entries.push(Entry { key, key_at, value });
        }
        Ok(Node {
            value: Value::Mapping(entries),
            at,
        })
    }

    /// The scanner's complaint, in words: a tab used for indentation is the common one.
    fn scan_problem(&self, error: &ScanError) -> Problem {
        let marker = error.marker();
        let at = Location {
            line: marker.line(),
            column: marker.col() + 1,
        };
        // The tab may be on the line the scanner stopped at or on the one before it.
        let lines: Vec<&str> = self.source.lines().collect();
        let tab = [at.line, at.line.saturating_sub(1)]
            .into_iter()
            .filter(|n| *n >= 1)
            .find_map(|n| {
                let line = lines.get(n - 1)?;
                let indent = &line[..line.len() - line.trim_start().len()];
                indent.find('\t').map(|i| Location {
                    line: n,
                    column: indent[..i].chars().count() + 1,
                })
            });
        if let Some(tab_at) = tab {
            return Problem {
                at: tab_at,
                path: String::new(),
                message: "a tab in the indentation: YAML indents with spaces only (replace the tab with spaces)".to_owned(),
            };
        }
        let info = error.info();
        let hint = if info.contains("mapping values are not allowed")
            || info.contains("did not find expected key")
            || info.contains("did not find expected '-'")
            || info.contains("indentation")
        {
            ": check the indentation of this line and of the lines above it (the keys of one mapping line up exactly; a setting belongs under its host)"
        } else if info.contains("tab") {
            ": YAML indents with spaces only"
        } else {
            ""
        };
        Problem {
            at,
            path: String::new(),
            message: format!("not valid YAML ({info}){hint}"),
        }
    }
}

/// YAML 1.2 core schema: the plain scalars that mean "no value".
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn plain_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn plain_unsigned(text: &str) -> Option<u64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = text.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(octal) = text.strip_prefix("0o") {
        u64::from_str_radix(octal, 8).ok()
    } else if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

fn plain_signed(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-')?;
    let n = i64::try_from(plain_unsigned(digits)?).ok()?;
    Some(-n)
}

fn plain_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let digits = text.trim_start_matches(['-', '+']);
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if looks_numeric {
        text.parse().ok()
    } else {
        None
    }
}

/// What kind of mistake an [`Error`] is, for callers that add hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A key that is not a field of the struct being read.
    UnknownField(String),
    /// A node of the wrong kind where a struct was expected; the struct's fields.
    NotAStruct(&'static [&'static str]),
    Other,
}

/// A deserialization error, with the location and path of the node it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub at: Option<Location>,
    pub path: String,
    pub message: String,
    pub kind: ErrorKind,
}

impl Error {
    fn new(message: String, kind: ErrorKind) -> Error {
        Error {
            at: None,
            path: String::new(),
            message,
            kind,
        }
    }

    /// Say where, unless a node further in already did.
    fn located(mut self, at: Location, path: &PathRef<'_>) -> Error {
        if self.at.is_none() {
            self.at = Some(at);
            self.path = path.to_string();
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.at {
            write!(f, "{at}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

fn unexpected_words(unexpected: &de::Unexpected<'_>) -> String {
    match unexpected {
        de::Unexpected::Bool(b) => format!("the value `{b}`"),
        de::Unexpected::Unsigned(n) => format!("the number {n}"),
        de::Unexpected::Signed(n) => format!("the number {n}"),
        de::Unexpected::Float(n) => format!("the number {n}"),
        de::Unexpected::Str(s) => format!("the value `{}`", shorten(s)),
        de::Unexpected::Unit => "nothing".to_owned(),
        de::Unexpected::Seq => "a list".to_owned(),
        de::Unexpected::Map => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

fn backquoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::new(message.to_string(), ErrorKind::Other)
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Error::custom(format_args!(
            "expected {expected}, found {}",
            unexpected_words(&unexpected)
        ))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Error::invalid_type(unexpected, expected)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let suggestion = suggest::did_you_mean(variant, expected.iter().copied());
        Error::custom(format_args!(
            "`{variant}` is not one of {}{suggestion}",
            backquoted(expected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = match suggest::closest(field, expected.iter().copied()) {
            Some(close) => format!("unknown field `{field}`; did you mean `{close}`?"),
            None => format!(
                "unknown field `{field}`; the fields here are {}",
                backquoted(expected)
            ),
        };
        Error::new(message, ErrorKind::UnknownField(field.to_owned()))
    }

    fn missing_field(field: &'static str) -> Self {
        Error::custom(format_args!("the required field `{field}` is missing"))
    }
}

/// Deserialize a `T` from a located tree.
///
/// # Errors
/// The tree does not have the shape of a `T`, or a value is refused by its type.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &Node) -> Result<T, Error> {
    let path = PathRef::Root;
    T::deserialize(NodeDeserializer { node, path: &path })
        .map_err(|e: Error| e.located(node.at, &path))
}

struct NodeDeserializer<'n> {
    node: &'n Node,
    path: &'n PathRef<'n>,
}

impl NodeDeserializer<'_> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.node.value {
            Value::Null => de::Unexpected::Unit,
            Value::Scalar { text, .. } => de::Unexpected::Str(text),
            Value::List(_) => de::Unexpected::Seq,
            Value::Mapping(_) => de::Unexpected::Map,
        }
    }

    fn wrong_type(&self, expected: &dyn de::Expected) -> Error {
        <Error as de::Error>::invalid_type(self.unexpected(), expected)
            .located(self.node.at, self.path)
    }

    fn plain(&self) -> Option<&str> {
        match &self.node.value {
            Value::Scalar { text, plain: true } => Some(text),
            _ => None,
        }
    }

    fn visit_number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Some(text) = self.plain() else {
            return Err(self.wrong_type(&visitor));
        };
        let result = if let Some(n) = plain_unsigned(text) {
            visitor.visit_u64(n)
        } else if let Some(n) = plain_signed(text) {
            visitor.visit_i64(n)
        } else if let Some(n) = plain_float(text) {
            visitor.visit_f64(n)
        } else {
            return Err(self.wrong_type(&visitor));
        };
        result.map_err(|e: Error| e.located(self.node.at, self.path))
    }

    fn visit_entries<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let entries: &[Entry] = match &self.node.value {
            Value::Mapping(entries) => entries,
            _ => &[],
        };
        visitor
            .visit_map(Entries {
                remaining: entries.iter(),
                current: None,
                previous: None,
                path: self.path,
            })
            .map_err(|e: Error| e.located(self.node.at, self.path))
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (at, path) = (self.node.at, self.path);
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar { text, plain: true } => {
                if let Some(b) = plain_bool(text) {
                    visitor.visit_bool(b)
                } else if plain_unsigned(text).is_some()
                    || plain_signed(text).is_some()
                    || plain_float(text).is_some()
                {
                    return self.visit_number(visitor);
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Scalar { text, .. } => visitor.visit_str(text),
            Value::List(_) => return self.deserialize_seq(visitor),
            Value::Mapping(_) => return self.visit_entries(visitor),
        };
        result.map_err(|e: Error| e.located(at, path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.plain().and_then(plain_bool) {
            Some(b) => visitor
                .visit_bool(b)
                .map_err(|e: Error| e.located(self.node.at, self.path)),
            None => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_number(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            // Any scalar is text when text is wanted: `port`-like digits in a name included.
            Value::Scalar { text, .. } => visitor
                .visit_str(text)
                .map_err(|e: Error| e.located(self.node.at, self.path)),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (at, path) = (self.node.at, self.path);
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: Error| e.located(at, path))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => visitor
                .visit_unit()
                .map_err(|e: Error| e.located(self.node.at, self.path)),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (at, path) = (self.node.at, self.path);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: Error| e.located(at, path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: &[Node] = match &self.node.value {
            Value::List(items) => items,
            Value::Null => &[],
            Value::Scalar { text, .. } => {
                // The common slip: `allow: 192.168.6.0/24` for `allow: [192.168.6.0/24]`.
                let mut error = self.wrong_type(&visitor);
                error.message = format!(
                    "{}; a list is written `[{text}]`, or one `- item` per line",
                    error.message
                );
                return Err(error);
            }
            Value::Mapping(_) => return Err(self.wrong_type(&visitor)),
        };
        visitor
            .visit_seq(Items {
                items: items.iter().enumerate(),
                path: self.path,
            })
            .map_err(|e: Error| e.located(self.node.at, self.path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            // A section with nothing under it (every entry commented out) is empty.
            Value::Mapping(_) | Value::Null => self.visit_entries(visitor),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Mapping(_) | Value::Null => self.visit_entries(visitor),
            _ => {
                let listed = if fields.len() > 5 {
                    format!("{}, ...", fields[..4].join(", "))
                } else {
                    fields.join(", ")
                };
                let message = format!(
                    "expected a mapping of {name} ({listed}), found {}",
                    self.node.found()
                );
                Err(Error::new(message, ErrorKind::NotAStruct(fields))
                    .located(self.node.at, self.path))
            }
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            Value::Scalar { text, .. } => visitor
                .visit_enum(de::value::StrDeserializer::<Error>::new(text))
                .map_err(|e: Error| e.located(self.node.at, self.path)),
            _ => Err(Error::custom_at(
                format!(
                    "expected {}, found {}",
                    backquoted(variants),
                    self.node.found()
                ),
                self.node.at,
                self.path,
            )),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

impl Error {
    fn custom_at(message: String, at: Location, path: &PathRef<'_>) -> Error {
        Error::new(message, ErrorKind::Other).located(at, path)
    }
}

struct Items<'n, I> {
    items: I,
    path: &'n PathRef<'n>,
}

impl<'de, 'n, I: Iterator<Item = (usize, &'n Node)>> de::SeqAccess<'de> for Items<'n, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let path = PathRef::Index(self.path, i);
        seed.deserialize(NodeDeserializer { node, path: &path })
            .map(Some)
            .map_err(|e: Error| e.located(node.at, &path))
    }
}

struct Entries<'n, I> {
    remaining: I,
    current: Option<&'n Entry>,
    previous: Option<&'n Entry>,
    path: &'n PathRef<'n>,
}

impl<'de, 'n, I: Iterator<Item = &'n Entry>> de::MapAccess<'de> for Entries<'n, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        self.previous = self.current.take().or(self.previous);
        let Some(entry) = self.remaining.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        seed.deserialize(KeyDeserializer { key: &entry.key })
            .map(Some)
            .map_err(|e: Error| e.located(entry.key_at, self.path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let entry = self
            .current
            .ok_or_else(|| <Error as de::Error>::custom("a value without its key"))?;
        let path = PathRef::Key(self.path, &entry.key);
        let node = &entry.value;
        seed.deserialize(NodeDeserializer { node, path: &path })
            .map_err(|e| {
                let e = e.located(node.at, &path);
                indented_too_little(e, entry, self.previous, self.path)
            })
    }
}

/// A setting dedented one level reads as an entry of the enclosing mapping (a server named
/// `allow`): say so, and where it probably belongs.
fn indented_too_little(
    mut error: Error,
    entry: &Entry,
    previous: Option<&Entry>,
    parent: &PathRef<'_>,
) -> Error {
    if let ErrorKind::NotAStruct(fields) = error.kind
        && error.at == Some(entry.value.at)
        && fields.contains(&entry.key.as_str())
    {
        let key = &entry.key;
        let belongs = match previous {
            Some(previous) => format!(
                "; `{key}` looks like a setting of {} indented too little (it is read as an entry named {key})",
                PathRef::Key(parent, &previous.key)
            ),
            None => format!(
                "; `{key}` looks like a setting indented too little (it is read as an entry named {key})"
            ),
        };
        error.message.push_str(&belongs);
    }
    error
}

/// A mapping key: always text (a host named `10` is the name "10").
struct KeyDeserializer<'n> {
    key: &'n str,
}

impl<'de> de::Deserializer<'de> for KeyDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.key)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The serde name and fields of a struct type, without any data: for messages that say where a
/// misplaced field belongs.
#[must_use]
pub fn struct_fields<'de, T: de::Deserialize<'de>>()
-> Option<(&'static str, &'static [&'static str])> {
    struct Probe;
    #[derive(Debug)]
    struct Found(Option<(&'static str, &'static [&'static str])>);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Found(None)
        }
    }
    impl<'de> de::Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(None))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(Some((name, fields))))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(found)) => found,
        Ok(_) => None,
    }
}

/// A list, described in the caller's words when it is something else (`expecting`).
pub struct ListOf<T> {
    pub expecting: &'static str,
    marker: std::marker::PhantomData<T>,
}

impl<T> ListOf<T> {
    #[must_use]
    pub fn new(expecting: &'static str) -> Self {
        ListOf {
            expecting,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for ListOf<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// A mapping from names to values, described in the caller's words when it is something else.
pub struct MapOf<K, V> {
    pub expecting: &'static str,
    marker: std::marker::PhantomData<(K, V)>,
}

impl<K, V> MapOf<K, V> {
    #[must_use]
    pub fn new(expecting: &'static str) -> Self {
        MapOf {
            expecting,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'de, K: de::Deserialize<'de> + Ord, V: de::Deserialize<'de>> Visitor<'de> for MapOf<K, V> {
    type Value = std::collections::BTreeMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = std::collections::BTreeMap::new();
        while let Some((key, value)) = map.next_entry()? {
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A list that may be left out or empty (`None`), described as its [`ListOf`] is.
pub struct OptionalList<T>(pub ListOf<T>);

impl<'de, T: de::Deserialize<'de>> Visitor<'de> for OptionalList<T> {
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.expecting)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self.0).map(Some)
    }
}

/// A whole number from `min` to `max`: `expecting` says what it is when something else is found
/// (e.g. "a port number (1 to 65535)"), `range` what it must be when it is out of range.
pub struct Number {
    pub expecting: &'static str,
    pub range: &'static str,
    pub min: u64,
    pub max: u64,
}

impl Number {
    fn out_of_range<E: de::Error>(&self, n: impl fmt::Display) -> E {
        E::custom(format_args!("must be {}, not {n}", self.range))
    }
}

impl Visitor<'_> for Number {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&n) {
            Ok(n)
        } else {
            Err(self.out_of_range(n))
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        Err(self.out_of_range(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<u64, E> {
        Err(self.out_of_range(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        parse(source)
            .unwrap_err()
            .iter()
            .map(|p| format!("{}: {}: {}", p.at, p.path, p.message))
            .collect()
    }

    #[test]
    fn a_lone_carriage_return_is_refused_at_its_line() {
        assert_eq!(
            problems("a: 1\r\nb: 2\n c\rd: 3\n"),
            [
                "3:3: : a carriage return without a line feed (old Mac line endings): save the file with \\n or \\r\\n line endings"
            ]
        );
        assert!(parse("a: 1\r\nb: 2\r\n").is_ok());
    }

    #[test]
    fn nodes_know_where_they_are() {
        let source = "a:\n  b:\n    c: 1\n  d: { e: 2, f: { g: 3 } }\n  l: [x, 'y']\n";
        let root = parse(source).unwrap();
        assert_eq!(
            root.key_location(&["a", "b", "c"]),
            Some(Location { line: 3, column: 5 })
        );
        assert_eq!(
            root.value_location(&["a", "b", "c"]),
            Some(Location { line: 3, column: 8 })
        );
        assert_eq!(
            root.key_location(&["a", "d", "f", "g"]),
            Some(Location {
                line: 4,
                column: 19
            })
        );
        assert_eq!(
            root.value_location(&["a", "l", "1"]),
            Some(Location {
                line: 5,
                column: 10
            })
        );
        // A path that does not exist falls back to the nearest key that does.
        assert_eq!(
            root.key_location(&["a", "x", "y"]),
            Some(Location { line: 1, column: 1 })
        );
        assert_eq!(root.keys(&["a"]), ["b", "d", "l"]);
    }

    #[test]
    fn a_key_given_twice_is_refused_with_both_lines() {
        let source = "clients:\n  c1: { address: 10.0.0.1 }\n  c2: { address: 10.0.0.2 }\n  c1:\n    address: 10.0.0.3\n    address: 10.0.0.4\n";
        insta::assert_snapshot!(problems(source).join("\n"), @r"
        4:3: clients.c1: defined twice (first at line 2); only one can be kept: remove or rename one of them
        6:5: clients.c1.address: defined twice (first at line 5); only one can be kept: remove or rename one of them
        ");
        let flow = "a: { x: 1, x: 2 }\n";
        insta::assert_snapshot!(problems(flow).join("\n"), @"1:12: a.x: defined twice (first at line 1); only one can be kept: remove or rename one of them");
    }

    #[test]
    fn a_tab_in_the_indentation_is_named() {
        let source = "clients:\n  c1:\n\taddress: 10.0.0.1\n";
        insta::assert_snapshot!(problems(source).join("\n"), @"3:1: : a tab in the indentation: YAML indents with spaces only (replace the tab with spaces)");
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let root = parse("a: ~\nb: 'true'\nc: true\nd: !!str 22\ne: 22\n").unwrap();
        assert_eq!(root.get(&["a"]).unwrap().value, Value::Null);
        assert_eq!(
            root.get(&["b"]).unwrap().value,
            Value::Scalar {
                text: "true".into(),
                plain: false
            }
        );
        let d: String = from_node(root.get(&["d"]).unwrap()).unwrap();
        assert_eq!(d, "22");
        let e: u16 = from_node(root.get(&["e"]).unwrap()).unwrap();
        assert_eq!(e, 22);
        let c: bool = from_node(root.get(&["c"]).unwrap()).unwrap();
        assert!(c);
        assert!(from_node::<bool>(root.get(&["b"]).unwrap()).is_err());
    }

    #[test]
    fn anchors_and_aliases_are_copies() {
        let root = parse("base: &b { user: ops }\nhost: *b\n").unwrap();
        assert_eq!(root.get(&["host"]), root.get(&["base"]));
    }

    #[test]
    fn empty_text_and_second_documents() {
        assert_eq!(parse("# nothing\n").unwrap().value, Value::Mapping(vec![]));
        insta::assert_snapshot!(problems("a: 1\n---\nb: 2\n").join("\n"), @"2:1: : a second YAML document starts here; the inventory is one document (remove the `---` line)");
    }
}

//! Server-side event filters: the `EventFilterConfig` of `@enclave-vm/types` (`filter` in
//! `POST /sessions` and `GET /sessions/:id/stream?filter=<JSON>`), validated once and then
//! applied to each event with the TypeScript broker's results.
//!
//! What is matched, as the broker does it: an event in `alwaysAllow` (default `session_init`,
//! `final`) always passes; otherwise the event *matches* when any rule matches (a rule's
//! `types` and `content` both, when it has both; a rule with neither matches everything), and
//! `include` sends what matches, `exclude` what does not. A content pattern reads the dot-path
//! `field` of the event (default: its `payload`), as a string (JSON text for anything but a
//! string; `null` is the empty string), lower-cased both sides when `caseInsensitive`.
//!
//! Differences, deliberate (docs/PROTOCOL.md lists them): a filter the broker would take but
//! apply oddly is refused instead (an unknown `mode`, pattern `type` or `match`, a regex that
//! does not compile, a glob with extglob syntax), and everything is bounded. `regex` runs on
//! the `regex` crate, whose matching is linear in the input: no pattern can backtrack
//! catastrophically, so `regexTimeoutMs` is accepted and not needed. JavaScript syntax that
//! crate lacks (look-around, backreferences) is refused; `\d`, `\w` and `.` are translated to
//! their JavaScript meaning.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::Error;

/// The most rules a filter may have.
pub const MAX_FILTER_RULES: usize = 64;
/// The most content patterns a filter may have, over all its rules.
pub const MAX_FILTER_PATTERNS: usize = 128;
/// The most event types a rule (or `alwaysAllow`) may list.
pub const MAX_FILTER_TYPES: usize = 64;
/// The longest pattern, in bytes.
pub const MAX_FILTER_PATTERN_BYTES: usize = 1024;
/// The longest `field` path, in bytes.
pub const MAX_FILTER_FIELD_BYTES: usize = 256;
/// Inputs longer than this (in UTF-16 code units, as JavaScript counts) never match a
/// `regex` pattern: the broker's own limit, kept for the same results.
pub const MAX_REGEX_INPUT_UTF16: usize = 10_000;
/// The most patterns one glob's braces may expand to.
const MAX_GLOB_EXPANSIONS: usize = 64;
/// The compiled size allowed to one pattern's automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// `include` (send what matches) or `exclude` (send what does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterMode {
    /// Whitelist.
    Include,
    /// Blacklist.
    Exclude,
}

/// A validated, compiled `EventFilterConfig`.
#[derive(Debug, Clone)]
pub struct EventFilter {
    mode: FilterMode,
    rules: Vec<Rule>,
    always_allow: Vec<String>,
    config: Value,
}

#[derive(Debug, Clone)]
struct Rule {
    types: Option<Vec<String>>,
    content: Option<Content>,
}

#[derive(Debug, Clone)]
struct Content {
    all: bool,
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    field: Option<Vec<String>>,
    case_insensitive: bool,
    kind: PatternKind,
}

#[derive(Debug, Clone)]
enum PatternKind {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
    Glob(Glob),
}

impl EventFilter {
    /// Parses the JSON text of a filter (the `filter` query parameter).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidFilter`] when it is not JSON or not a valid filter.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| Error::InvalidFilter(format!("not JSON: {err}")))?;
        Self::from_json(value)
    }

    /// Validates and compiles a filter given as JSON (the `filter` of a request body).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidFilter`] naming the offending field.
    pub fn from_json(config: Value) -> Result<Self, Error> {
        let obj = config
            .as_object()
            .ok_or_else(|| bad("filter", "must be an object"))?;
        let mode = match obj.get("mode").and_then(Value::as_str) {
            Some("include") => FilterMode::Include,
            Some("exclude") => FilterMode::Exclude,
            _ => return Err(bad("mode", "must be \"include\" or \"exclude\"")),
        };
        let rules_json = obj
            .get("rules")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("rules", "must be an array"))?;
        if rules_json.len() > MAX_FILTER_RULES {
            return Err(bad("rules", &format!("more than {MAX_FILTER_RULES} rules")));
        }
        let always_allow = match obj.get("alwaysAllow") {
            None | Some(Value::Null) => vec!["session_init".to_owned(), "final".to_owned()],
            Some(list) => type_list("alwaysAllow", list)?,
        };
        match obj.get("regexTimeoutMs") {
            None | Some(Value::Null | Value::Number(_)) => {}
            Some(_) => return Err(bad("regexTimeoutMs", "must be a number")),
        }
        let mut total_patterns = 0;
        let mut rules = Vec::with_capacity(rules_json.len());
        for (r, rule) in rules_json.iter().enumerate() {
            let at = format!("rules[{r}]");
            let rule = rule
                .as_object()
                .ok_or_else(|| bad(&at, "must be an object"))?;
            let types = match rule.get("types") {
                None | Some(Value::Null) => None,
                Some(t) => {
                    let list = t
                        .as_object()
                        .and_then(|t| t.get("types"))
                        .ok_or_else(|| bad(&format!("{at}.types"), "must be {\"types\": [...]}"))?;
                    Some(type_list(&format!("{at}.types.types"), list)?)
                }
            };
            let content = match rule.get("content") {
                None | Some(Value::Null) => None,
                Some(c) => {
                    let at = format!("{at}.content");
                    let c = c.as_object().ok_or_else(|| bad(&at, "must be an object"))?;
                    let all = match c.get("match") {
                        None | Some(Value::Null) => false,
                        Some(Value::String(m)) if m == "any" => false,
                        Some(Value::String(m)) if m == "all" => true,
                        Some(_) => {
                            return Err(bad(&format!("{at}.match"), "must be \"any\" or \"all\""))
                        }
                    };
                    let list = c
                        .get("patterns")
                        .and_then(Value::as_array)
                        .ok_or_else(|| bad(&format!("{at}.patterns"), "must be an array"))?;
                    total_patterns += list.len();
                    if total_patterns > MAX_FILTER_PATTERNS {
                        return Err(bad(
                            &format!("{at}.patterns"),
                            &format!("more than {MAX_FILTER_PATTERNS} patterns in the filter"),
                        ));
                    }
                    let patterns = list
                        .iter()
                        .enumerate()
                        .map(|(p, pattern)| compile(&format!("{at}.patterns[{p}]"), pattern))
                        .collect::<Result<_, _>>()?;
                    Some(Content { all, patterns })
                }
            };
            rules.push(Rule { types, content });
        }
        Ok(Self {
            mode,
            rules,
            always_allow,
            config,
        })
    }

    /// The filter as it was given (to send it again, on a resume).
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Its mode.
    pub fn mode(&self) -> FilterMode {
        self.mode
    }

    /// Whether the event whose wire `type` is `event_type` and whose JSON text is `event_json`
    /// is sent. The JSON is read only when a content pattern needs it; an event that is not
    /// JSON matches no content pattern.
    pub fn should_send(&self, event_type: &str, event_json: &[u8]) -> bool {
        if self.always_allow.iter().any(|t| t == event_type) {
            return true;
        }
        let mut parsed = None;
        let matches = self.rules.iter().any(|rule| {
            let type_ok = rule
                .types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == event_type));
            type_ok
                && rule.content.as_ref().is_none_or(|content| {
                    let event = parsed.get_or_insert_with(|| {
                        serde_json::from_slice::<&RawValue>(event_json).ok()
                    });
                    let Some(event) = *event else { return false };
                    let one = |p: &Pattern| p.matches(event);
                    if content.all {
                        content.patterns.iter().all(one)
                    } else {
                        content.patterns.iter().any(one)
                    }
                })
        });
        match self.mode {
            FilterMode::Include => matches,
            FilterMode::Exclude => !matches,
        }
    }
}

fn bad(at: &str, what: &str) -> Error {
    Error::InvalidFilter(format!("{at}: {what}"))
}

fn type_list(at: &str, list: &Value) -> Result<Vec<String>, Error> {
    let list = list
        .as_array()
        .ok_or_else(|| bad(at, "must be an array of event types"))?;
    if list.len() > MAX_FILTER_TYPES {
        return Err(bad(at, &format!("more than {MAX_FILTER_TYPES} types")));
    }
    list.iter()
        .map(|t| {
            t.as_str()
                .filter(|t| t.len() <= 64)
                .map(str::to_owned)
                .ok_or_else(|| bad(at, "an event type must be a string of at most 64 bytes"))
        })
        .collect()
}

fn compile(at: &str, pattern: &Value) -> Result<Pattern, Error> {
    let obj = pattern
        .as_object()
        .ok_or_else(|| bad(at, "must be an object"))?;
    let text = obj
        .get("pattern")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(&format!("{at}.pattern"), "must be a string"))?;
    if text.len() > MAX_FILTER_PATTERN_BYTES {
        return Err(bad(
            &format!("{at}.pattern"),
            &format!("longer than {MAX_FILTER_PATTERN_BYTES} bytes"),
        ));
    }
    let case_insensitive = match obj.get("caseInsensitive") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad(&format!("{at}.caseInsensitive"), "must be a boolean")),
    };
    let field = match obj.get("field") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if f.len() > MAX_FILTER_FIELD_BYTES => {
            return Err(bad(
                &format!("{at}.field"),
                &format!("longer than {MAX_FILTER_FIELD_BYTES} bytes"),
            ))
        }
        // An empty field is the payload, as the broker's `if (!field)` reads it.
        Some(Value::String(f)) if f.is_empty() => None,
        Some(Value::String(f)) => Some(f.split('.').map(str::to_owned).collect()),
        Some(_) => return Err(bad(&format!("{at}.field"), "must be a string")),
    };
    let folded = |s: &str| {
        if case_insensitive {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some("exact") => PatternKind::Exact(folded(text)),
        Some("prefix") => PatternKind::Prefix(folded(text)),
        Some("regex") => PatternKind::Regex(
            js_regex(text, case_insensitive).map_err(|why| bad(&format!("{at}.pattern"), &why))?,
        ),
        Some("glob") => PatternKind::Glob(
            Glob::new(&folded(text), case_insensitive)
                .map_err(|why| bad(&format!("{at}.pattern"), &why))?,
        ),
        _ => {
            return Err(bad(
                &format!("{at}.type"),
                "must be \"exact\", \"prefix\", \"regex\" or \"glob\"",
            ))
        }
    };
    Ok(Pattern {
        field,
        case_insensitive,
        kind,
    })
}

impl Pattern {
    fn matches(&self, event: &RawValue) -> bool {
        let Some(value) = field_value(event, self.field.as_deref()) else {
            return false;
        };
        let Some(mut text) = js_string(&value) else {
            return false;
        };
        if self.case_insensitive {
            text = text.to_lowercase();
        }
        match &self.kind {
            PatternKind::Exact(p) => text == *p,
            PatternKind::Prefix(p) => text.starts_with(p.as_str()),
            PatternKind::Regex(re) => {
                text.encode_utf16().nth(MAX_REGEX_INPUT_UTF16).is_none() && re.is_match(&text)
            }
            PatternKind::Glob(glob) => glob.matches(&text),
        }
    }
}

/// The value at a dot path, as JavaScript's property walk finds it: objects by key, arrays by
/// canonical index (and `length`); anything else, or a missing key, is `undefined` (`None`).
fn field_value<'a>(event: &'a RawValue, field: Option<&[String]>) -> Option<Lookup<'a>> {
    let Some(parts) = field else {
        return member(event, "payload").map(Lookup::Raw);
    };
    let mut value = Lookup::Raw(event);
    for part in parts {
        let Lookup::Raw(raw) = value else {
            return None;
        };
        value = match raw.get().as_bytes().first() {
            Some(b'{') => Lookup::Raw(member(raw, part)?),
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
                if part == "length" {
                    Lookup::Length(items.len())
                } else {
                    let index: usize = part.parse().ok()?;
                    if index.to_string() != *part {
                        return None;
                    }
                    Lookup::Raw(items.get(index).copied()?)
                }
            }
            _ => return None,
        };
    }
    Some(value)
}

enum Lookup<'a> {
    Raw(&'a RawValue),
    Length(usize),
}

fn member<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    if !raw.get().starts_with('{') {
        return None;
    }
    let map: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
    map.get(key).copied()
}

/// The broker's `stringify`: a string as it is, `null` as the empty string, anything else as
/// `JSON.stringify` writes it (compact, keys in their order, numbers in JavaScript's form).
fn js_string(value: &Lookup<'_>) -> Option<String> {
    let raw = match value {
        Lookup::Length(n) => return Some(n.to_string()),
        Lookup::Raw(raw) => *raw,
    };
    match raw.get().as_bytes().first() {
        Some(b'"') => serde_json::from_str(raw.get()).ok(),
        Some(b'n') => Some(String::new()),
        _ => {
            let mut out = String::new();
            let mut de = serde_json::Deserializer::from_str(raw.get());
            Stringify(&mut out).deserialize(&mut de).ok()?;
            Some(out)
        }
    }
}

/// Writes the JSON it reads compactly, as `JSON.stringify` would.
struct Stringify<'o>(&'o mut String);

impl<'de> DeserializeSeed<'de> for Stringify<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Stringify<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.0, "{v}");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        js_number(v, self.0);
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        push_json_string(self.0, v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push_str("null");
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push('[');
        let mut first = true;
        loop {
            let at = self.0.len();
            if !first {
                self.0.push(',');
            }
            if seq.next_element_seed(Stringify(self.0))?.is_none() {
                self.0.truncate(at);
                break;
            }
            first = false;
        }
        self.0.push(']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push('{');
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if !first {
                self.0.push(',');
            }
            first = false;
            push_json_string(self.0, &key);
            self.0.push(':');
            map.next_value_seed(Stringify(self.0))?;
        }
        self.0.push('}');
        Ok(())
    }
}

/// A JSON string literal: serde_json escapes exactly the characters `JSON.stringify` does.
fn push_json_string(out: &mut String, v: &str) {
    if let Ok(s) = serde_json::to_string(v) {
        out.push_str(&s);
    }
}

/// A double as JavaScript's `Number.prototype.toString` writes it.
fn js_number(v: f64, out: &mut String) {
    if !v.is_finite() {
        out.push_str("null");
    } else if v.fract() == 0.0 && v.abs() < 1e21 {
        let _ = write!(out, "{v:.0}");
        if out.ends_with("-0") && v == 0.0 {
            out.truncate(out.len() - 2);
            out.push('0');
        }
    } else if v.abs() >= 1e21 || v.abs() < 1e-6 {
        let text = format!("{v:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => {
                let _ = write!(out, "{mantissa}e+{exp}");
            }
            _ => out.push_str(&text),
        }
    } else {
        let _ = write!(out, "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// `regex`: JavaScript syntax on a linear-time engine

/// Compiles a JavaScript (no `u` flag) regex for the `regex` crate: `.` is "not a line
/// terminator", `\d` and `\w` (and their negations) are ASCII, as in JavaScript; look-around
/// and backreferences, which that crate does not have, are refused.
fn js_regex(pattern: &str, case_insensitive: bool) -> Result<regex::Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    return Err("a regex cannot end with \\".into());
                };
                match (next, in_class) {
                    ('d', false) => out.push_str("[0-9]"),
                    ('D', false) => out.push_str("[^0-9]"),
                    ('w', false) => out.push_str("[0-9A-Za-z_]"),
                    ('W', false) => out.push_str("[^0-9A-Za-z_]"),
                    ('d', true) => out.push_str("0-9"),
                    ('w', true) => out.push_str("0-9A-Za-z_"),
                    ('1'..='9', false) => {
                        return Err(
                            "backreferences are not supported (linear-time regex engine)".into(),
                        )
                    }
                    (other, _) => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                if chars.peek() == Some(&']') {
                    return Err("an empty class [] or [^] is not supported".into());
                }
            }
            '[' => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '.' if !in_class => out.push_str("[^\\n\\r\\u{2028}\\u{2029}]"),
            '(' if !in_class && chars.peek() == Some(&'?') => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("?=")
                    || rest.starts_with("?!")
                    || rest.starts_with("?<=")
                    || rest.starts_with("?<!")
                {
                    return Err("look-around is not supported (linear-time regex engine)".into());
                }
                out.push('(');
            }
            other => out.push(other),
        }
    }
    regex::RegexBuilder::new(&out)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|err| {
            let text = err.to_string();
            let first = text.lines().last().unwrap_or("does not compile").trim();
            format!("not a supported regex: {first}")
        })
}

// ---------------------------------------------------------------------------------------
// `glob`: minimatch's rules, compiled to one linear-time regex

/// A glob as `minimatch(value, pattern, {nocase})` reads it: `!` negates, `#` starts a
/// comment (matches nothing), braces expand (`{a,b}`, `{1..3}`), the value and the pattern
/// split into segments on runs of `/`, `*`, `?` and `[...]` stay inside a segment, `**` spans
/// segments, and a wildcard never matches a leading `.` of a segment.
#[derive(Debug, Clone)]
struct Glob {
    negated: bool,
    /// The expansions of the braces; empty for a comment, which matches nothing.
    alternatives: Vec<Vec<GlobSegment>>,
}

#[derive(Debug, Clone)]
enum GlobSegment {
    /// `**`: zero or more segments, none starting with `.`.
    Globstar,
    /// Anything else, as an anchored regex; `no_dot` when it starts with a wildcard.
    Part { regex: regex::Regex, no_dot: bool },
}

/// The most `/`-separated segments one glob may have (matching is linear in the value times
/// this).
const MAX_GLOB_SEGMENTS: usize = 32;

impl Glob {
    fn new(pattern: &str, case_insensitive: bool) -> Result<Self, String> {
        if pattern.starts_with('#') {
            return Ok(Self {
                negated: false,
                alternatives: Vec::new(),
            });
        }
        let bangs = pattern.chars().take_while(|&c| c == '!').count();
        let body = &pattern[bangs..];
        if ["+(", "@(", "!(", "?(", "*("]
            .iter()
            .any(|extglob| body.contains(extglob))
        {
            return Err("extglob patterns (+(…), @(…), !(…), ?(…), *(…)) are not supported".into());
        }
        let mut expanded = Vec::new();
        expand_braces(body, &mut expanded)?;
        let mut alternatives = Vec::with_capacity(expanded.len());
        for one in &expanded {
            let mut segments = Vec::new();
            for part in split_slashes(one) {
                if part == "**" {
                    // `**/**` is `**`, as minimatch's optimisation makes it.
                    if !matches!(segments.last(), Some(GlobSegment::Globstar)) {
                        segments.push(GlobSegment::Globstar);
                    }
                    continue;
                }
                let regex = regex::RegexBuilder::new(&format!("^(?:{})$", segment_regex(part)))
                    .case_insensitive(case_insensitive)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|err| format!("the glob does not compile: {err}"))?;
                // A wildcard at the start never matches a leading `.`; a class may, by
                // listing it (`[.]x`).
                let no_dot = match part.chars().next() {
                    Some('*' | '?') => true,
                    Some('[') => !part.split(']').next().unwrap_or("").contains('.'),
                    _ => false,
                };
                segments.push(GlobSegment::Part { regex, no_dot });
            }
            if segments.len() > MAX_GLOB_SEGMENTS {
                return Err(format!("more than {MAX_GLOB_SEGMENTS} segments"));
            }
            alternatives.push(segments);
        }
        Ok(Self {
            negated: bangs % 2 == 1,
            alternatives,
        })
    }

    fn matches(&self, value: &str) -> bool {
        if self.alternatives.is_empty() {
            return false;
        }
        let segments = split_slashes(value);
        let any = self
            .alternatives
            .iter()
            .any(|pattern| match_segments(pattern, &segments));
        any != self.negated
    }
}

/// Splits on runs of `/`, as minimatch's `/\/+/` does (`"a/"` is `["a", ""]`).
fn split_slashes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('/') {
        parts.push(&rest[..at]);
        rest = rest[at..].trim_start_matches('/');
    }
    parts.push(rest);
    parts
}

/// Which value positions each pattern position can reach, one pattern segment at a time:
/// linear in the value for each segment, never backtracking.
fn match_segments(pattern: &[GlobSegment], value: &[&str]) -> bool {
    let n = value.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for (i, segment) in pattern.iter().enumerate() {
        let mut next = vec![false; n + 1];
        match segment {
            GlobSegment::Globstar => {
                // At the end of a pattern, `**` needs a segment (`a/**` matches `a/`, not `a`).
                let at_least_one = i + 1 == pattern.len() && i > 0;
                let mut open = false;
                for v in 0..=n {
                    if !at_least_one {
                        open |= reach[v];
                    }
                    next[v] = open;
                    if v < n && value[v].starts_with('.') {
                        open = false;
                    } else if v < n && at_least_one {
                        open |= reach[v];
                    }
                }
            }
            GlobSegment::Part { regex, no_dot } => {
                for v in 0..n {
                    if reach[v]
                        && !(*no_dot && value[v].starts_with('.'))
                        && regex.is_match(value[v])
                    {
                        next[v + 1] = true;
                    }
                }
            }
        }
        reach = next;
        if !reach.contains(&true) {
            return false;
        }
    }
    // A trailing slash in the value is allowed: `a/*` matches `a/b/`.
    reach[n] || (n > 0 && value[n - 1].is_empty() && reach[n - 1])
}

/// Bash-style brace expansion, as the `brace-expansion` package does it for minimatch.
fn expand_braces(pattern: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some((open, close)) = first_brace_set(pattern) else {
        if out.len() >= MAX_GLOB_EXPANSIONS {
            return Err(format!(
                "braces expand to more than {MAX_GLOB_EXPANSIONS} patterns"
            ));
        }
        out.push(pattern.to_owned());
        return Ok(());
    };
    let (pre, inner, post) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let options: Vec<String> = match sequence(inner) {
        Some(items) => items,
        None => split_top_level_commas(inner),
    };
    for option in options {
        expand_braces(&format!("{pre}{option}{post}"), out)?;
    }
    Ok(())
}

/// The first `{…}` holding a top-level comma or a `a..b` sequence, as byte offsets.
fn first_brace_set(pattern: &str) -> Option<(usize, usize)> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'{' => {
                let mut depth = 0;
                let mut j = i;
                let mut comma = false;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 1,
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b',' if depth == 1 => comma = true,
                        _ => {}
                    }
                    j += 1;
                }
                if j < bytes.len() && (comma || sequence(&pattern[i + 1..j]).is_some()) {
                    return Some((i, j));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn split_top_level_commas(inner: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = parts.last_mut().expect("never empty");
                last.push(c);
                if let Some(next) = chars.next() {
                    last.push(next);
                }
                continue;
            }
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

/// `1..3`, `a..e` (and with a step `1..9..2`) as their items; `None` when it is not one.
/// Past [`MAX_GLOB_EXPANSIONS`] items it stops, and the expansion's count check refuses it.
fn sequence(inner: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = inner.split("..").collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let step: i64 = match parts.get(2) {
        Some(s) => s.parse::<i64>().ok()?.checked_abs()?.max(1),
        None => 1,
    };
    let limit = MAX_GLOB_EXPANSIONS + 1;
    if let (Ok(a), Ok(b)) = (parts[0].parse::<i64>(), parts[1].parse::<i64>()) {
        let padded = |p: &str| {
            let digits = p.trim_start_matches('-');
            digits.len() > 1 && digits.starts_with('0')
        };
        let width = if padded(parts[0]) || padded(parts[1]) {
            parts[0].len().max(parts[1].len())
        } else {
            0
        };
        let step = if b >= a { step } else { -step };
        let items = std::iter::successors(Some(a), |n| n.checked_add(step))
            .take_while(|n| if step > 0 { *n <= b } else { *n >= b })
            .take(limit)
            .map(|n| match (width, n < 0) {
                (0, _) => n.to_string(),
                (w, true) => format!("-{:0w$}", n.unsigned_abs(), w = w - 1),
                (w, false) => format!("{n:0w$}"),
            })
            .collect();
        return Some(items);
    }
    let (mut a, mut b) = (parts[0].chars(), parts[1].chars());
    let (Some(x), None, Some(y), None) = (a.next(), a.next(), b.next(), b.next()) else {
        return None;
    };
    let (x, y) = (i64::from(u32::from(x)), i64::from(u32::from(y)));
    let step = if y >= x { step } else { -step };
    let items = std::iter::successors(Some(x), |n| n.checked_add(step))
        .take_while(|n| if step > 0 { *n <= y } else { *n >= y })
        .take(limit)
        .filter_map(|n| u32::try_from(n).ok().and_then(char::from_u32))
        .map(String::from)
        .collect();
    Some(items)
}

/// One segment: `*`, `?`, `[...]`, `\x`; a wildcard at its start does not match a `.`.
fn segment_regex(segment: &str) -> String {
    // A segment of stars alone matches something, never an empty segment.
    if !segment.is_empty() && segment.chars().all(|c| c == '*') {
        return "[^/]+".to_owned();
    }
    let mut out = String::new();
    let chars: Vec<char> = segment.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' => {
                // Runs of stars are one star.
                while i + 1 < chars.len() && chars[i + 1] == '*' {
                    i += 1;
                }
                out.push_str(r"[^/]*");
            }
            '?' => out.push_str(r"[^/]"),
            '[' => match class_end(&chars, i) {
                Some(end) => {
                    out.push_str(&class_regex(&chars[i + 1..end]));
                    i = end;
                }
                None => out.push_str(r"\["),
            },
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push_str(&regex::escape(&chars[i].to_string()));
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        i += 1;
    }
    out
}

fn class_end(chars: &[char], open: usize) -> Option<usize> {
    let mut j = open + 1;
    if matches!(chars.get(j), Some('!' | '^')) {
        j += 1;
    }
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '[' if chars.get(j + 1) == Some(&':') => {
                let close = (j + 2..chars.len().saturating_sub(1))
                    .find(|&k| chars[k] == ':' && chars[k + 1] == ']')?;
                j = close + 1;
            }
            ']' => return Some(j),
            _ => {}
        }
        j += 1;
    }
    None
}

fn class_regex(inner: &[char]) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    if matches!(inner.first(), Some('!' | '^')) {
        out.push('^');
        i = 1;
    }
    let body_start = i;
    while i < inner.len() {
        match inner[i] {
            '\\' if i + 1 < inner.len() => {
                i += 1;
                push_class_char(&mut out, inner[i]);
            }
            '[' if inner.get(i + 1) == Some(&':') => {
                let close = (i + 2..inner.len())
                    .find(|&k| inner[k] == ']')
                    .unwrap_or(inner.len() - 1);
                out.extend(&inner[i..=close]);
                i = close;
            }
            '-' if i > body_start && i + 1 < inner.len() => out.push('-'),
            c => push_class_char(&mut out, c),
        }
        i += 1;
    }
    out.push(']');
    out
}

fn push_class_char(out: &mut String, c: char) {
    if matches!(c, '[' | ']' | '\\' | '^' | '-' | '&' | '~' | '|') {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(json: &str) -> EventFilter {
        EventFilter::parse(json).expect("valid filter")
    }

    #[test]
    fn numbers_are_written_as_javascript_writes_them() {
        for (v, js) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (-0.0, "0"),
        ] {
            let mut out = String::new();
            js_number(v, &mut out);
            assert_eq!(out, js, "{v}");
        }
    }

    #[test]
    fn bounds_and_bad_shapes_are_refused_with_where() {
        let many = format!(
            r#"{{"mode":"include","rules":[{}]}}"#,
            vec![r#"{"types":{"types":["log"]}}"#; MAX_FILTER_RULES + 1].join(",")
        );
        for (json, says) in [
            (many.as_str(), "rules: more than"),
            (r#"{"mode":"Include","rules":[]}"#, "mode"),
            (r#"{"mode":"include"}"#, "rules"),
            (
                r#"{"mode":"include","rules":[{"content":{"patterns":[{"type":"regex","pattern":"(?=a)"}]}}]}"#,
                "rules[0].content.patterns[0].pattern: look-around",
            ),
            (
                r#"{"mode":"include","rules":[{"content":{"patterns":[{"type":"like","pattern":"a"}]}}]}"#,
                "rules[0].content.patterns[0].type",
            ),
            (
                r#"{"mode":"include","rules":[],"alwaysAllow":"final"}"#,
                "alwaysAllow",
            ),
            ("not json", "not JSON"),
        ] {
            let err = EventFilter::parse(json).expect_err(json).to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        let long = "a".repeat(MAX_FILTER_PATTERN_BYTES + 1);
        let json = format!(
            r#"{{"mode":"include","rules":[{{"content":{{"patterns":[{{"type":"exact","pattern":"{long}"}}]}}}}]}}"#
        );
        assert!(EventFilter::parse(&json).is_err());
    }

    #[test]
    fn a_nested_quantifier_runs_in_linear_time() {
        let f = filter(
            r#"{"mode":"include","rules":[{"content":{"patterns":[{"type":"regex","pattern":"^(a+)+$","field":"payload.chunk"}]}}]}"#,
        );
        let event = format!(
            r#"{{"sessionId":"s_1","seq":2,"type":"stdout","payload":{{"chunk":"{}!"}}}}"#,
            "a".repeat(9_000)
        );
        let started = std::time::Instant::now();
        assert!(!f.should_send("stdout", event.as_bytes()));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

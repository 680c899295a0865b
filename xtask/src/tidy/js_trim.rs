//! The JavaScript `trim()` tables: every copy of `is_js_whitespace` names the same characters,
//! and those are the ones ECMAScript's `String.prototype.trim` removes.
//!
//! The copies cannot share code (`enclave-types` sits below `enclave-ndjson`, which must not
//! know it, and the fuzz crate models both independently), so this test is what keeps them
//! equal. It reads the character literals and ranges in each function's body, so any layout
//! of the same `matches!` passes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{assert_clean, collect_rust_files, read, show};
use crate::project_root;

/// The crates that each define one `fn is_js_whitespace` somewhere under `src/`.
const COPIES: &[&str] = &[
    "crates/enclave-types",
    "crates/enclave-ndjson",
    "crates/enclave-fuzz",
];

/// ECMAScript's WhiteSpace and LineTerminator productions: what `trim()` removes from both ends.
const ECMASCRIPT_TRIM: &[(char, char)] = &[
    // WhiteSpace: TAB, VT, FF, ZWNBSP (the BOM)…
    ('\t', '\t'),
    ('\u{b}', '\u{c}'),
    ('\u{feff}', '\u{feff}'),
    // …and USP, Unicode's Space_Separator (Zs) category.
    (' ', ' '),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
    // LineTerminator: LF, CR, LS, PS.
    ('\n', '\n'),
    ('\r', '\r'),
    ('\u{2028}', '\u{2029}'),
];

#[test]
fn every_js_trim_table_is_ecmascripts_whitespace_and_line_terminators() {
    let expected = expand(ECMASCRIPT_TRIM);
    let mut violations = Vec::new();
    for krate in COPIES {
        let mut files = Vec::new();
        collect_rust_files(&project_root().join(krate).join("src"), &mut files);
        let definitions: Vec<(PathBuf, BTreeSet<char>)> = files
            .into_iter()
            .filter_map(|path| {
                let table = js_whitespace_table(&read(&path))?;
                Some((path, table))
            })
            .collect();
        if definitions.len() != 1 {
            violations.push(format!(
                "{krate}/src: {} definitions of `fn is_js_whitespace`, expected one",
                definitions.len()
            ));
        }
        for (path, table) in definitions {
            violations.extend(table_difference(&show(&path), &table, &expected));
        }
    }
    assert_clean("JS trim tables", &violations);
}

#[test]
fn the_table_reader_sees_through_layout_and_catches_a_missing_character() {
    let ours = r"
        /// Doc comment with a stray quote: don't.
        pub(crate) fn is_js_whitespace(c: char) -> bool {
            matches!(
                c,
                '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
                    ..='\u{200a}'
                    | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
            )
        }
        fn after() -> char { 'x' }
    ";
    let theirs = "fn is_js_whitespace(c: char) -> bool {
        // FEFF first; the space is ' ' (a comment's literals do not count: 'q').
        c == '\\u{FEFF}' || matches!(c, '\\u{9}'..='\\r' | ' ' | '\u{a0}' | '\\u{1680}')
            || matches!(c, '\\u{2000}' ..= '\\u{200A}' | '\\u{2028}' | '\\u{2029}')
            || matches!(c, '\\u{202f}' | '\\u{205f}' | '\\u{3000}' | '\\u{2029}')
    }";
    let expected = expand(ECMASCRIPT_TRIM);
    assert_eq!(expected.len(), 25);
    assert_eq!(js_whitespace_table(ours), Some(expected.clone()));
    assert_eq!(js_whitespace_table(theirs), Some(expected.clone()));
    assert_eq!(
        js_whitespace_table("fn is_js_whitespace_ascii(c: char) {}"),
        None
    );

    // A copy that forgot the BOM and added NEL (Rust's `char::is_whitespace` has it, JS not).
    let drifted = ours.replace(" | '\\u{feff}'", " | '\\u{85}'");
    let table = js_whitespace_table(&drifted).expect("the function is found");
    let violations = table_difference("crates/x/src/lib.rs", &table, &expected);
    assert_eq!(
        violations,
        [
            "crates/x/src/lib.rs: `is_js_whitespace` misses U+FEFF, which JavaScript's trim() removes",
            "crates/x/src/lib.rs: `is_js_whitespace` has U+0085, which JavaScript's trim() keeps",
        ]
    );
}

/// Every character in `ranges` (inclusive).
fn expand(ranges: &[(char, char)]) -> BTreeSet<char> {
    ranges.iter().flat_map(|&(from, to)| from..=to).collect()
}

/// What `table` has too many or too few against `expected`, one line per character.
fn table_difference(place: &str, table: &BTreeSet<char>, expected: &BTreeSet<char>) -> Vec<String> {
    let missing = expected.difference(table).map(|c| {
        format!(
            "{place}: `is_js_whitespace` misses U+{:04X}, which JavaScript's trim() removes",
            u32::from(*c)
        )
    });
    let extra = table.difference(expected).map(|c| {
        format!(
            "{place}: `is_js_whitespace` has U+{:04X}, which JavaScript's trim() keeps",
            u32::from(*c)
        )
    });
    missing.chain(extra).collect()
}

/// The characters named by `fn is_js_whitespace` in `source`: every char literal and
/// `'a'..='b'` range in its body, comments skipped. `None` when `source` does not define it.
fn js_whitespace_table(source: &str) -> Option<BTreeSet<char>> {
    let body = function_body(source, "is_js_whitespace")?;
    let mut table = BTreeSet::new();
    let mut rest = body;
    while !rest.is_empty() {
        if rest.starts_with("//") {
            rest = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some((first, after)) = char_literal(rest) {
            let after_range = after.trim_start();
            let (last, after) = match after_range
                .strip_prefix("..=")
                .and_then(|end| char_literal(end.trim_start()))
            {
                Some((last, after)) => (last, after),
                None => (first, after),
            };
            table.extend(first..=last);
            rest = after;
        } else {
            let mut chars = rest.chars();
            chars.next();
            rest = chars.as_str();
        }
    }
    Some(table)
}

/// The text between the braces of `fn name`'s body (braces in comments and char literals are
/// not expected in a table function and are not special-cased beyond literals).
fn function_body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let pattern = format!("fn {name}");
    let mut search = source;
    let start = loop {
        let at = search.find(&pattern)?;
        let after = &search[at + pattern.len()..];
        if after.starts_with(['(', '<', ' ']) {
            break after;
        }
        search = after;
    };
    let open = start.find('{')?;
    let body = &start[open + 1..];
    let mut depth = 1usize;
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if let Some((_, after)) = char_literal(rest) {
            rest = after;
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&body[..body.len() - rest.len()]);
                }
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    None
}

/// A Rust char literal at the start of `text` (`'x'`, `'\t'`, `'\u{a0}'`), and the text after
/// it; `None` when `text` does not start with one (a lifetime, a quote in a comment).
fn char_literal(text: &str) -> Option<(char, &str)> {
    let inner = text.strip_prefix('\'')?;
    let (value, len) = if let Some(escape) = inner.strip_prefix('\\') {
        let mut chars = escape.chars();
        match chars.next()? {
            'n' => ('\n', 2),
            'r' => ('\r', 2),
            't' => ('\t', 2),
            '0' => ('\0', 2),
            '\\' => ('\\', 2),
            '\'' => ('\'', 2),
            '"' => ('"', 2),
            'x' => {
                let hex = escape.get(1..3)?;
                (char::from(u8::from_str_radix(hex, 16).ok()?), 4)
            }
            'u' => {
                let digits = escape.strip_prefix("u{")?;
                let end = digits.find('}')?;
                let code = u32::from_str_radix(&digits[..end], 16).ok()?;
                (char::from_u32(code)?, 1 + 2 + end + 1)
            }
            _ => return None,
        }
    } else {
        let c = inner.chars().next()?;
        (c, c.len_utf8())
    };
    let after = inner[len..].strip_prefix('\'')?;
    Some((value, after))
}

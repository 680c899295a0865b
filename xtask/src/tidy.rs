//! Repository rules, checked as tests (rust-analyzer's "tidy" style) so `cargo test` enforces
//! them on every machine and CI needs no separate linter.
//!
//! Each test collects every violation with its file and line, so one run shows all of them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::project_root;

mod circles;
mod js_trim;
mod layering;
mod vectors;

/// Directories that hold generated or foreign files, never our sources.
const SKIPPED_DIRS: &[&str] = &["target", "corpus", "artifacts", "coverage", "node_modules"];

/// The two commands the README promises; CI (`.ci/run`) runs the second.
const README_COMMANDS: &[&str] = &[
    "cargo run --release -p enclave-cli -- demo",
    "cargo xtask ci",
];

#[test]
fn every_rust_file_opens_with_a_module_doc_comment() {
    let violations: Vec<String> = rust_files()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| {
            format!(
                "{}: the first line must be a `//!` comment saying what the file is for",
                show(&path)
            )
        })
        .collect();
    assert_clean("module docs", &violations);
}

/// One integration-test binary per crate (CI links each one): either `tests/it/main.rs` with a
/// module per area, or a single `tests/*.rs` file.
#[test]
fn every_crate_has_at_most_one_integration_test_binary() {
    let mut violations = Vec::new();
    for member in members() {
        let tests = project_root().join(&member.path).join("tests");
        let Ok(entries) = fs::read_dir(&tests) else {
            continue;
        };
        let mut binaries: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "rs") || path.join("main.rs").is_file()
            })
            .map(|path| show(&path))
            .collect();
        binaries.sort();
        if binaries.len() > 1 {
            violations.push(format!(
                "{}/tests: {} test binaries ({}); make them modules of tests/it/main.rs",
                member.path,
                binaries.len(),
                binaries.join(", ")
            ));
        }
    }
    assert_clean("one test binary per crate", &violations);
}

#[test]
fn every_crate_root_forbids_unsafe_code() {
    let mut violations = Vec::new();
    for member in members() {
        let roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|root| project_root().join(&member.path).join(root))
            .filter(|path| path.is_file())
            .collect();
        if roots.is_empty() {
            violations.push(format!(
                "{}: has neither src/lib.rs nor src/main.rs",
                member.path
            ));
        }
        for root in roots {
            if !read(&root)
                .lines()
                .any(|line| line.trim() == "#![forbid(unsafe_code)]")
            {
                violations.push(format!(
                    "{}: missing `#![forbid(unsafe_code)]`",
                    show(&root)
                ));
            }
        }
    }
    assert_clean("forbid(unsafe_code)", &violations);
}

#[test]
fn every_member_manifest_uses_workspace_lints_and_license_and_has_a_description() {
    let mut violations = Vec::new();
    for member in members() {
        let manifest = Manifest::read(&project_root().join(&member.path).join("Cargo.toml"));
        let path = show(&manifest.path);
        if !manifest.has_key("lints", "workspace", "true") {
            violations.push(format!("{path}: needs `[lints]` with `workspace = true`"));
        }
        if !manifest.has_key("package", "license.workspace", "true") {
            violations.push(format!(
                "{path}: needs `license.workspace = true` in `[package]`"
            ));
        }
        if !manifest
            .entries("package")
            .any(|entry| entry.key == "description" && entry.value.len() > 2)
        {
            violations.push(format!(
                "{path}: needs a non-empty `description` in `[package]`"
            ));
        }
    }
    assert_clean("member manifests", &violations);
}

#[test]
fn every_workspace_member_has_a_comment_above_it() {
    let violations: Vec<String> = members()
        .into_iter()
        .filter(|member| !member.commented)
        .map(|member| {
            format!(
                "Cargo.toml:{}: member `{}` needs a `#` comment line above it",
                member.line, member.path
            )
        })
        .collect();
    assert_clean("member comments", &violations);
}

#[test]
fn every_crate_directory_is_a_workspace_member() {
    let members: Vec<String> = members().into_iter().map(|member| member.path).collect();
    let mut violations = Vec::new();
    for entry in fs::read_dir(project_root().join("crates")).expect("crates/ is readable") {
        let dir = entry.expect("crates/ is readable").path();
        let relative = format!(
            "crates/{}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        if dir.join("Cargo.toml").is_file() && !members.contains(&relative) {
            violations.push(format!(
                "{relative}: has a Cargo.toml but is not in the root `members` list"
            ));
        }
    }
    assert_clean("workspace members", &violations);
}

#[test]
fn dependency_versions_live_only_in_workspace_dependencies() {
    let violations: Vec<String> = members()
        .into_iter()
        .flat_map(|member| {
            pinned_dependencies(&Manifest::read(
                &project_root().join(&member.path).join("Cargo.toml"),
            ))
        })
        .collect();
    assert_clean("dependency versions", &violations);
}

#[test]
fn pinned_dependencies_are_found_in_every_table_form() {
    let manifest = Manifest::parse(
        Path::new("crates/example/Cargo.toml"),
        r#"
[package]
version.workspace = true

[dependencies]
serde.workspace = true
bytes = { workspace = true, optional = true }
memchr = "2.7"

[target.'cfg(unix)'.dev-dependencies]
tokio = { version = "1", features = ["rt"] }

[dependencies.hex]
workspace = true
features = ["serde"]

[build-dependencies.cc]
version = "1"
"#,
    );
    let found = pinned_dependencies(&manifest);
    let lines: Vec<&str> = found
        .iter()
        .map(|v| v.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        lines,
        [
            "crates/example/Cargo.toml:8",
            "crates/example/Cargo.toml:11",
            "crates/example/Cargo.toml:18"
        ]
    );
    assert!(
        found[0].contains("`memchr.workspace = true`"),
        "{}",
        found[0]
    );
}

/// Dependency lines of a member manifest that set their own version, path or source.
fn pinned_dependencies(manifest: &Manifest) -> Vec<String> {
    let mut violations = Vec::new();
    for entry in &manifest.entries {
        let (name, inherits) = if entry.section.ends_with("dependencies") {
            let inherits = (entry.key.ends_with(".workspace") && entry.value == "true")
                || (entry.value.starts_with('{')
                    && entry.value.replace(' ', "").contains("workspace=true"));
            (entry.key.split('.').next().unwrap_or_default(), inherits)
        } else if let Some((_, name)) = entry.section.rsplit_once("dependencies.") {
            // In a `[dependencies.name]` table only `workspace = true` may say where it comes from.
            let inherits = (entry.key == "workspace" && entry.value == "true")
                || matches!(
                    entry.key.as_str(),
                    "features" | "optional" | "default-features"
                );
            (name, inherits)
        } else {
            continue;
        };
        if !inherits {
            violations.push(format!(
                "{}:{}: `{} = {}` in [{}]; declare the version once in the root [workspace.dependencies] and write `{name}.workspace = true`",
                show(&manifest.path),
                entry.line,
                entry.key,
                entry.value,
                entry.section,
            ));
        }
    }
    violations
}

#[test]
fn no_unfinished_code_or_debug_prints() {
    // Built with concat! so this file does not trip over its own patterns.
    let forbidden = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    let mut violations = Vec::new();
    for (path, text) in rust_files() {
        for (index, line) in text.lines().enumerate() {
            for pattern in forbidden {
                if line.contains(pattern) {
                    violations.push(format!(
                        "{}:{}: contains `{pattern}`",
                        show(&path),
                        index + 1
                    ));
                }
            }
        }
    }
    assert_clean("unfinished code", &violations);
}

#[test]
fn the_cli_writes_messages_without_the_print_macros() {
    let mut files = Vec::new();
    collect_rust_files(&project_root().join("crates/enclave-cli/src"), &mut files);
    let violations: Vec<String> = files
        .into_iter()
        .flat_map(|path| print_macro_violations(&path, &read(&path)))
        .collect();
    assert_clean("CLI output", &violations);
}

#[test]
fn the_print_macro_rule_catches_each_macro_but_not_comments() {
    let source = concat!(
        "//! Doc: `eprintln",
        "!(…)` panics.\n",
        "fn f() {\n",
        "    println",
        "!(\"a\");\n",
        "    report(format_args!(\"b\")); // not eprint",
        "!(\n",
        "    std::eprint",
        "!(\"c\");\n",
        "}\n",
    );
    let found = print_macro_violations(Path::new("crates/enclave-cli/src/x.rs"), source);
    let lines: Vec<&str> = found
        .iter()
        .map(|v| v.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        lines,
        [
            "crates/enclave-cli/src/x.rs:3",
            "crates/enclave-cli/src/x.rs:5"
        ],
        "{found:#?}"
    );
}

/// Lines of `text` that call a print macro, which panics when its stream is a closed pipe
/// (`enclave … 2>&1 | head -1`); the CLI writes through `input::report` and its buffered
/// standard output instead. Comments may name the macros.
fn print_macro_violations(path: &Path, text: &str) -> Vec<String> {
    // Built with concat! so this file does not trip over its own patterns.
    let forbidden = [
        // Longest first, so a line is reported with the macro it calls.
        concat!("eprintln", "!("),
        concat!("println", "!("),
        concat!("eprint", "!("),
        concat!("print", "!("),
    ];
    let mut violations = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        if let Some(pattern) = forbidden.iter().find(|pattern| code.contains(**pattern)) {
            violations.push(format!(
                "{}:{}: `{pattern}` panics on a closed pipe; use `input::report`",
                show(path),
                index + 1
            ));
        }
    }
    violations
}

#[test]
fn contract_names_are_spelled_only_in_wire_rs() {
    let mut violations = Vec::new();
    for (path, text) in rust_files() {
        let shown = show(&path);
        // Library sources only: tests, the test kit's fake peers and the fuzz crate's models
        // spell the names on purpose, to check them against what wire.rs says.
        if shown.starts_with("crates/")
            && shown.contains("/src/")
            && !shown.starts_with("crates/enclave-fuzz/")
            && !shown.starts_with("crates/enclave-testkit/")
        {
            violations.extend(contract_name_violations(&path, &text));
        }
    }
    assert_clean("contract names", &violations);
}

#[test]
fn the_contract_name_rule_catches_routes_and_headers_but_not_comments_or_wire_rs() {
    let source = concat!(
        "//! Serves `POST /sessions` and reads `X-Enclave-Ack`.\n",
        "fn f() {\n",
        "    route(\"/sessions/{id}\");\n",
        "    header(\"X-Enclave-Ack\"); // \"x-session-id\" in a comment\n",
        "    header(\"x-session-id\");\n",
        "}\n",
    );
    let found = contract_name_violations(Path::new("crates/enclave-x/src/y.rs"), source);
    let lines: Vec<&str> = found
        .iter()
        .map(|v| v.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        lines,
        [
            "crates/enclave-x/src/y.rs:3",
            "crates/enclave-x/src/y.rs:4",
            "crates/enclave-x/src/y.rs:5"
        ],
        "{found:#?}"
    );
    let wire = Path::new("crates/enclave-transport/src/wire.rs");
    assert!(contract_name_violations(wire, source).is_empty());
}

/// Lines of `text` (outside `enclave-transport/src/wire.rs`, which holds them) whose code
/// spells a route or a header of the network contract in a string literal: other programs
/// rely on those names, so they live once, as `wire`'s constants.
fn contract_name_violations(path: &Path, text: &str) -> Vec<String> {
    if path.ends_with("enclave-transport/src/wire.rs") {
        return Vec::new();
    }
    let names = [
        "\"/sessions",
        "\"/health\"",
        "\"/ready\"",
        "\"x-enclave-",
        "\"x-session-id",
    ];
    let mut violations = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line
            .split("//")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(name) = names.iter().find(|name| code.contains(**name)) {
            violations.push(format!(
                "{}:{}: spells {name}…; use the constant of enclave-transport's wire.rs",
                show(path),
                index + 1
            ));
        }
    }
    violations
}

#[test]
fn readme_shows_how_to_try_the_tool_and_run_ci() {
    let path = project_root().join("README.md");
    let Ok(text) = fs::read_to_string(&path) else {
        panic!("README.md is missing; it must show {README_COMMANDS:?}");
    };
    let violations: Vec<String> = README_COMMANDS
        .iter()
        .filter(|command| !text.contains(**command))
        .map(|command| format!("README.md: must contain the command `{command}`"))
        .collect();
    assert_clean("README commands", &violations);
}

fn assert_clean(rule: &str, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{rule}: {} violation(s)\n  {}\n",
        violations.len(),
        violations.join("\n  ")
    );
}

/// One `members` entry of the root manifest.
#[derive(Debug)]
struct Member {
    path: String,
    line: usize,
    commented: bool,
}

fn members() -> Vec<Member> {
    let text = read(&project_root().join("Cargo.toml"));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim_start().starts_with("members"))
        .expect("the root Cargo.toml has a `members` list");
    let mut members = Vec::new();
    for (index, line) in lines.iter().enumerate().skip(start + 1) {
        let line = line.trim();
        if line.starts_with(']') {
            break;
        }
        if line.starts_with('"') {
            members.push(Member {
                path: line.trim_end_matches(',').trim_matches('"').to_owned(),
                line: index + 1,
                commented: lines[index - 1].trim_start().starts_with('#'),
            });
        }
    }
    assert!(!members.is_empty(), "the root Cargo.toml lists no members");
    members
}

/// One `key = value` line of a manifest, with the table it sits in.
#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// Just enough TOML for our manifests: tables and single-line `key = value` pairs.
#[derive(Debug)]
struct Manifest {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl Manifest {
    fn read(path: &Path) -> Self {
        Self::parse(path, &read(path))
    }

    fn parse(path: &Path, text: &str) -> Self {
        let mut section = String::new();
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with("[[") {
                section = line
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned();
            } else if line.starts_with('[') {
                section = line
                    .trim_matches(|c| c == '[' || c == ']')
                    .trim()
                    .to_owned();
            } else if let Some((key, value)) =
                line.split_once('=').filter(|_| !line.starts_with('#'))
            {
                entries.push(Entry {
                    section: section.clone(),
                    key: key.trim().replace(' ', ""),
                    value: value.trim().to_owned(),
                    line: index + 1,
                });
            }
        }
        Self {
            path: path.to_owned(),
            entries,
        }
    }

    fn entries<'a>(&'a self, section: &'a str) -> impl Iterator<Item = &'a Entry> {
        self.entries
            .iter()
            .filter(move |entry| entry.section == section)
    }

    fn has_key(&self, section: &str, key: &str, value: &str) -> bool {
        self.entries(section)
            .any(|entry| entry.key == key && entry.value == value)
    }
}

/// Every `.rs` file under `crates/` and `xtask/`, with its text.
fn rust_files() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        collect_rust_files(&project_root().join(dir), &mut files);
    }
    assert!(
        files.len() > 1,
        "found no Rust files under crates/ and xtask/"
    );
    files
        .into_iter()
        .map(|path| {
            let text = read(&path);
            (path, text)
        })
        .collect()
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                collect_rust_files(&path, files);
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// A path relative to the repository root, as a developer would type it.
fn show(path: &Path) -> String {
    path.strip_prefix(project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

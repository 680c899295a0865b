//! The crate layering rule: each layer depends only on the layers below it, and the NDJSON
//! layer not even on the protocol model below it.
//!
//! `docs/ARCHITECTURE.md` draws the stack; this is the check that keeps the manifests to it.

use std::path::Path;

use super::{assert_clean, members, show, Manifest};
use crate::project_root;

/// Our crates, from the bottom layer up. A crate may depend only on crates in lower layers;
/// crates in one layer (the tools on top) may not depend on each other. Later layers are listed
/// before they exist, so a new crate lands in its place; the Redis store has had two names.
const LAYERS: &[&[&str]] = &[
    &["enclave-types"],
    // The test kit depends only on the protocol model, so the tests of every layer above it
    // may use it (as a dev-dependency; `enclave-cli` also for `enclave demo`).
    &["enclave-testkit"],
    &["enclave-ndjson"],
    &["enclave-crypto"],
    &["enclave-transport"],
    &["enclave-reconnect"],
    &["enclave-redis"],
    &["enclave-stream"],
    // Tools on top of every layer; nothing depends on them.
    &["enclave-cli", "enclave-fuzz", "xtask"],
];

/// Downward dependencies that are still forbidden as normal (and build) dependencies. A
/// dev-dependency may cross them: tests and benchmarks may use the layers around a crate.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "enclave-ndjson",
    "enclave-types",
    "the NDJSON layer is generic over any serde type and knows nothing of events \
     (enclave-types may only be a dev-dependency, for the benchmark)",
)];

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let crates: Vec<(String, Manifest)> = members()
        .into_iter()
        .map(|member| {
            let manifest = Manifest::read(&project_root().join(&member.path).join("Cargo.toml"));
            let name = package_name(&manifest);
            (name, manifest)
        })
        .collect();
    assert!(
        crates.iter().any(|(name, _)| name == "enclave-ndjson"),
        "the NDJSON layer is not a workspace member; update LAYERS"
    );
    assert_clean("crate layering", &layering_violations(&crates));
}

#[test]
fn the_layering_rule_catches_upward_sideways_and_forbidden_dependencies() {
    let check = |name: &str, body: &str| {
        let path = format!("crates/{name}/Cargo.toml");
        let text = format!("[package]\nname = \"{name}\"\n{body}");
        layering_violations(&[(name.to_owned(), Manifest::parse(Path::new(&path), &text))])
    };
    // (crate, manifest tables, what the one violation must say; "" for none)
    let cases = [
        // A dev-dependency may cross the forbidden edge; foreign crates are not ours to place.
        (
            "enclave-ndjson",
            "[dependencies]\nserde.workspace = true\n\
             [dev-dependencies]\nenclave-types = { workspace = true, features = [\"fixtures\"] }\n",
            "",
        ),
        (
            "enclave-cli",
            "[dependencies]\nenclave-crypto.workspace = true\nenclave-types.workspace = true\n",
            "",
        ),
        (
            "enclave-types",
            "[dependencies.enclave-crypto]\nworkspace = true\nfeatures = [\"x\"]\n",
            "crates/enclave-types/Cargo.toml:4: `enclave-types` has a dependency on `enclave-crypto`",
        ),
        (
            "enclave-fuzz",
            "[dependencies]\n\"enclave-cli\".workspace = true\n",
            "`enclave-fuzz` has a dependency on `enclave-cli`, which is not in a lower layer",
        ),
        (
            "enclave-redis",
            "[target.'cfg(unix)'.dependencies]\n\
             stream = { package = \"enclave-stream\", workspace = true }\n",
            "has a dependency on `enclave-stream`",
        ),
        (
            "enclave-crypto",
            "[dev-dependencies]\nenclave-stream.workspace = true\n",
            "has a dev-dependency on `enclave-stream`",
        ),
        (
            "enclave-ndjson",
            "[dependencies]\nenclave-types = { workspace = true }\n",
            "crates/enclave-ndjson/Cargo.toml:4: `enclave-ndjson` may not depend on `enclave-types`: \
             the NDJSON layer is generic",
        ),
        (
            "enclave-ndjson",
            "[build-dependencies]\nenclave-types.workspace = true\n",
            "may not depend on `enclave-types`",
        ),
        (
            "enclave-ndjson",
            "[target.'cfg(unix)'.dependencies.types]\npackage = \"enclave-types\"\nworkspace = true\n",
            "may not depend on `enclave-types`",
        ),
        (
            "enclave-extra",
            "[dependencies]\nenclave-types.workspace = true\n",
            "`enclave-extra` has no place in xtask/src/tidy/layering.rs LAYERS",
        ),
    ];
    for (name, body, expected) in cases {
        let violations = check(name, body);
        if expected.is_empty() {
            assert!(violations.is_empty(), "{name}: {violations:#?}");
        } else {
            assert_eq!(violations.len(), 1, "{name}: {violations:#?}");
            assert!(violations[0].contains(expected), "{name}: {violations:#?}");
        }
    }
}

/// One dependency on another crate of ours, as a manifest line declares it.
#[derive(Debug, PartialEq)]
struct Dependency {
    /// The package depended on (its `package = …` when the key renames it).
    package: String,
    /// Declared in a `[dev-dependencies]` table.
    dev: bool,
    line: usize,
}

/// Every dependency line of `manifest`, in every table form: `[dependencies]`,
/// `[dev-dependencies]`, `[build-dependencies]`, their `[target.'cfg(…)'.…]` variants and the
/// `[dependencies.name]` tables.
fn dependencies(manifest: &Manifest) -> Vec<Dependency> {
    let mut found: Vec<Dependency> = Vec::new();
    // The `[dependencies.name]` table whose dependency is already counted.
    let mut counted_table: Option<&str> = None;
    for entry in &manifest.entries {
        if entry.section.ends_with("dependencies") {
            let key = entry.key.split('.').next().unwrap_or_default();
            let compact = entry.value.replace(' ', "");
            let package = compact.split_once("package=").map_or(key, |(_, rest)| rest);
            found.push(Dependency {
                package: unquote(package),
                dev: entry.section.ends_with("dev-dependencies"),
                line: entry.line,
            });
        } else if let Some((table, key)) = entry.section.rsplit_once("dependencies.") {
            // One dependency over several lines: counted once, at its first line.
            if counted_table != Some(entry.section.as_str()) {
                counted_table = Some(entry.section.as_str());
                found.push(Dependency {
                    package: unquote(key),
                    dev: table.ends_with("dev-"),
                    line: entry.line,
                });
            }
            if entry.key == "package" {
                if let Some(last) = found.last_mut() {
                    last.package = unquote(&entry.value);
                }
            }
        }
    }
    found
}

/// `"name"` or `name`, up to the first delimiter, without its quotes.
fn unquote(text: &str) -> String {
    let text = text.trim().trim_start_matches('"');
    text.split(['"', ',', '}', ' '])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The `[package] name` of a manifest.
fn package_name(manifest: &Manifest) -> String {
    manifest
        .entries("package")
        .find(|entry| entry.key == "name")
        .map_or_else(
            || panic!("{}: has no package name", show(&manifest.path)),
            |entry| unquote(&entry.value),
        )
}

/// The layer a crate of ours sits in, if [`LAYERS`] places it.
fn layer(name: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&name))
}

/// Every dependency among `crates` (package name and manifest) that breaks the layering.
fn layering_violations(crates: &[(String, Manifest)]) -> Vec<String> {
    let ours = |name: &str| layer(name).is_some() || crates.iter().any(|(n, _)| n == name);
    let mut violations = Vec::new();
    for (name, manifest) in crates {
        let path = show(&manifest.path);
        let Some(own) = layer(name) else {
            violations.push(format!(
                "{path}: `{name}` has no place in xtask/src/tidy/layering.rs LAYERS; add it to \
                 the layer it belongs to (and to docs/ARCHITECTURE.md)"
            ));
            continue;
        };
        for dependency in dependencies(manifest) {
            let target = dependency.package.as_str();
            if !ours(target) {
                continue;
            }
            let line = dependency.line;
            let kind = if dependency.dev {
                "a dev-dependency"
            } else {
                "a dependency"
            };
            match layer(target) {
                Some(theirs) if theirs < own => {}
                Some(_) => violations.push(format!(
                    "{path}:{line}: `{name}` has {kind} on `{target}`, which is not in a lower \
                     layer; a layer depends only on the layers below it"
                )),
                None => violations.push(format!(
                    "{path}:{line}: `{target}` has no place in LAYERS, so `{name}` may not \
                     depend on it"
                )),
            }
            if !dependency.dev {
                for (from, to, why) in FORBIDDEN {
                    if name == from && target == *to {
                        violations.push(format!(
                            "{path}:{line}: `{name}` may not depend on `{target}`: {why}"
                        ));
                    }
                }
            }
        }
    }
    violations
}

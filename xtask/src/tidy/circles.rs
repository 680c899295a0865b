//! No file-level import circles within a crate: when `a.rs` uses an item of `b.rs`, nothing
//! `b.rs` uses (directly or through other files) comes from `a.rs`. A circle is almost always
//! one item in the wrong file; moving it below both makes the files readable bottom up.
//!
//! Only `use` declarations count (`crate::…`, `super::…`, `self::…`), not `pub use`
//! re-exports (the public layout of a crate, not a dependency), not a file's tests module,
//! and not a use of a module's own ancestors (a child file using its parent's items is how
//! Rust nests modules; the parent declares the child).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use super::{assert_clean, show};
use crate::project_root;

#[test]
fn no_crate_has_a_file_level_import_circle() {
    let mut violations = Vec::new();
    let Ok(crates) = fs::read_dir(project_root().join("crates")) else {
        panic!("no crates/ directory");
    };
    let mut dirs: Vec<_> = crates
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    dirs.push(project_root().join("xtask/src"));
    dirs.sort();
    for src in dirs {
        let mut modules = BTreeMap::new();
        collect(&src, &src, &mut modules);
        for circle in circles(&modules) {
            violations.push(format!(
                "{}: {} import each other in a circle",
                show(&src),
                circle.join(", ")
            ));
        }
    }
    assert_clean("file-level import circles", &violations);
}

#[test]
fn the_circle_rule_sees_siblings_and_not_parents() {
    let modules: BTreeMap<String, String> = [
        ("", "mod a;\nmod b;\nmod c;\npub use a::A;\n"),
        ("a", "use crate::b::{self, B};\npub struct A;\n"),
        // Nested braces and a multi-line use.
        ("b", "use crate::{\n    c::{C, D},\n};\npub struct B;\n"),
        (
            "c",
            "use super::a::A;\npub struct C;\n#[cfg(test)]\nmod tests {\n    use crate::b::B;\n}\n",
        ),
        // A child using its parent, and the parent its child: not a circle.
        ("d", "use self::e::E;\nmod e;\n"),
        ("d/e", "use super::D;\npub struct E;\n"),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_owned(), text.to_owned()))
    .collect();
    assert_eq!(circles(&modules), [vec!["a", "b", "c"]]);
}

/// The modules under `src` by module path (`""` for the crate root, `"server/ws"` …).
fn collect(src: &Path, dir: &Path, modules: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect(src, &path, modules);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let relative = path.strip_prefix(src).unwrap_or(&path);
            let mut parts: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts
                .last()
                .is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str()))
            {
                parts.pop();
            }
            let text = fs::read_to_string(&path).unwrap_or_default();
            modules.insert(parts.join("/"), text);
        }
    }
}

/// Every group of modules that import each other in a circle, each sorted, in order.
fn circles(modules: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let edges: BTreeMap<&str, BTreeSet<String>> = modules
        .iter()
        .map(|(module, text)| (module.as_str(), imports(module, text, modules)))
        .collect();
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(next) = stack.pop() {
            for to in edges.get(next.as_str()).into_iter().flatten() {
                if seen.insert(to.clone()) {
                    stack.push(to.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<String>> =
        modules.keys().map(|m| (m.as_str(), reach(m))).collect();
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, from_it) in &reached {
        let group: Vec<String> = from_it
            .iter()
            .filter(|other| reached[other.as_str()].contains(*module))
            .cloned()
            .collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

/// The other modules of the crate whose items `module` uses (its ancestors excepted).
fn imports(module: &str, text: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let me: Vec<&str> = module.split('/').filter(|p| !p.is_empty()).collect();
    let mut found = BTreeSet::new();
    for declaration in use_declarations(text) {
        for path in expand("", &declaration) {
            let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
            let absolute: Vec<&str> = match parts.first() {
                Some(&"crate") => parts[1..].to_vec(),
                Some(&"self") => me
                    .iter()
                    .copied()
                    .chain(parts[1..].iter().copied())
                    .collect(),
                Some(&"super") => {
                    let ups = parts.iter().take_while(|p| **p == "super").count();
                    let base = &me[..me.len().saturating_sub(ups)];
                    base.iter()
                        .copied()
                        .chain(parts[ups..].iter().copied())
                        .collect()
                }
                _ => continue,
            };
            // The longest prefix that is a module: the file the item lives in.
            let target = (0..=absolute.len())
                .rev()
                .map(|n| absolute[..n].join("/"))
                .find(|candidate| modules.contains_key(candidate));
            let Some(target) = target else { continue };
            // The module itself, or one it is nested in.
            let target_parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
            let ancestor = me.starts_with(&target_parts);
            if !ancestor {
                found.insert(target);
            }
        }
    }
    found
}

/// The bodies of `text`'s `use` declarations that are not `pub use`, before its tests
/// module.
fn use_declarations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_none() {
            if trimmed == "mod tests {" {
                break;
            }
            let body = trimmed
                .strip_prefix("use ")
                .or_else(|| trimmed.strip_prefix("pub(crate) use "))
                .or_else(|| trimmed.strip_prefix("pub(super) use "));
            match body {
                Some(body) => current = Some(body.to_owned()),
                None => continue,
            }
        } else if let Some(open) = &mut current {
            open.push_str(trimmed);
        }
        if let Some(open) = current.take() {
            match open.strip_suffix(';') {
                Some(done) => out.push(done.to_owned()),
                None => current = Some(open),
            }
        }
    }
    out
}

/// The paths a use tree names: `a::{b, c::{d}}` gives `a::b` and `a::c::d` (`self` inside
/// braces names the prefix itself; `as` renames are dropped).
fn expand(prefix: &str, tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let join = |rest: &str| {
        if prefix.is_empty() {
            rest.to_owned()
        } else if rest == "self" {
            prefix.to_owned()
        } else {
            format!("{prefix}::{rest}")
        }
    };
    let Some(open) = tree.find('{') else {
        let name = tree.split(" as ").next().unwrap_or(tree).trim();
        return if name.is_empty() {
            Vec::new()
        } else {
            vec![join(name)]
        };
    };
    let head = join(tree[..open].trim().trim_end_matches("::"));
    let inner = tree[open + 1..].trim_end().trim_end_matches('}');
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .flat_map(|item| expand(&head, item))
        .collect()
}

//! The shared interop vectors: every crate's copy of a vector file is byte-identical to the
//! others, and to the original in `../shared/vectors/` when that directory is there.
//!
//! A file in a crate's `tests/data/` is a copy of a shared vector when another crate's
//! `tests/data/` holds a file of the same name, or `../shared/vectors/` does. CI has
//! `../shared`; a clone elsewhere may not, and then only the copies are compared.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{assert_clean, show};
use crate::project_root;

#[test]
fn every_copy_of_a_vector_file_is_identical_to_the_others() {
    assert_clean(
        "vector copies",
        &copy_violations(&vector_copies(&project_root())),
    );
}

#[test]
fn every_copy_of_a_vector_file_is_identical_to_the_shared_original() {
    let shared = project_root().join("../shared/vectors");
    if !shared.is_dir() {
        // Nothing to compare against outside CI's layout; the copies are still compared above.
        return;
    }
    assert_clean(
        "shared vectors",
        &original_violations(&vector_copies(&project_root()), &shared),
    );
}

#[test]
fn the_vector_rules_catch_a_stale_copy() {
    let root = std::env::temp_dir().join(format!("xtask-vectors-{}", std::process::id()));
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the fixture tree");
        fs::write(path, text).expect("write a fixture file");
    };
    write("crates/a/tests/data/cases.jsonl", "{\"n\":1}\n");
    write("crates/b/tests/data/cases.jsonl", "{\"n\":1}\n");
    write("crates/c/tests/data/cases.jsonl", "{\"n\":0}\n");
    write("crates/c/tests/data/nested/keys.json", "[1]");
    write("crates/a/tests/data/only-here.json", "{}");
    write("shared/vectors/cases.jsonl", "{\"n\":1}\n");
    write("shared/vectors/keys.json", "[2]");

    let copies = vector_copies(&root);
    let copy = copy_violations(&copies);
    let original = original_violations(&copies, &root.join("shared/vectors"));
    let missing_shared = original_violations(&copies, &root.join("no/such/dir"));
    fs::remove_dir_all(&root).expect("remove the fixture tree");

    let sep = std::path::MAIN_SEPARATOR;
    assert_eq!(copy.len(), 1, "{copy:#?}");
    assert!(
        copy[0].contains(&format!(
            "crates{sep}c{sep}tests{sep}data{sep}cases.jsonl differs from"
        )) && copy[0].contains(&format!("crates{sep}a{sep}tests{sep}data{sep}cases.jsonl")),
        "{copy:#?}"
    );
    // Against the original: the stale copy and the nested one; the unshared file is no copy.
    assert_eq!(original.len(), 2, "{original:#?}");
    assert!(
        original[0].contains("cases.jsonl differs from"),
        "{original:#?}"
    );
    assert!(
        original[1].contains("keys.json differs from"),
        "{original:#?}"
    );
    assert!(
        original.iter().all(|v| !v.contains("only-here")),
        "{original:#?}"
    );
    assert!(missing_shared.is_empty(), "{missing_shared:#?}");
}

/// Every file under `root/crates/*/tests/data/`, grouped by file name, in path order.
fn vector_copies(root: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut copies: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let crates = root.join("crates");
    let Ok(entries) = fs::read_dir(&crates) else {
        return copies;
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", crates.display()));
        collect_files(&entry.path().join("tests/data"), &mut files);
    }
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        copies.entry(name).or_default().push(path);
    }
    copies
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
            .path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Copies of one name whose bytes differ from the first copy.
fn copy_violations(copies: &BTreeMap<String, Vec<PathBuf>>) -> Vec<String> {
    let mut violations = Vec::new();
    for (name, paths) in copies {
        let Some((first, others)) = paths.split_first() else {
            continue;
        };
        let reference = bytes(first);
        for other in others {
            if bytes(other) != reference {
                violations.push(format!(
                    "{} differs from {}; copy ../shared/vectors/{name} over every copy",
                    show(other),
                    show(first)
                ));
            }
        }
    }
    violations
}

/// Copies whose bytes differ from the file of the same name in `shared`, when there is one.
fn original_violations(copies: &BTreeMap<String, Vec<PathBuf>>, shared: &Path) -> Vec<String> {
    let mut violations = Vec::new();
    for (name, paths) in copies {
        let original = shared.join(name);
        if !original.is_file() {
            continue;
        }
        let reference = bytes(&original);
        for path in paths {
            if bytes(path) != reference {
                violations.push(format!(
                    "{} differs from {}; copy the original over it",
                    show(path),
                    show(&original)
                ));
            }
        }
    }
    violations
}

fn bytes(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

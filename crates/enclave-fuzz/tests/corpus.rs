//! Replays every seed of every fuzz target under plain `cargo test`, so the invariants the
//! targets check hold on every machine, not only where cargo-fuzz runs.
//!
//! Targets are discovered from `corpus/<target>/`; a new target needs its corpus directory,
//! its `fuzz_targets/<target>.rs` binary and one line in [`body`].

use std::fs;
use std::path::{Path, PathBuf};

/// The body libFuzzer calls for `target`.
fn body(target: &str) -> Option<fn(&[u8])> {
    match target {
        "ndjson_decoder" => Some(enclave_fuzz::ndjson_decoder),
        "event_parser" => Some(enclave_fuzz::event_parser),
        "envelope_opener" => Some(enclave_fuzz::envelope_opener),
        "hello_parser" => Some(enclave_fuzz::hello_parser),
        _ => None,
    }
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Sorted names of the entries in `dir` that `keep` accepts, skipping hidden ones.
fn names(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()))
                .path()
        })
        .filter(|path| keep(path))
        .filter_map(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .map(str::to_owned)
        })
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn corpus_targets() -> Vec<String> {
    names(&crate_dir().join("corpus"), Path::is_dir)
}

#[test]
fn every_seed_of_every_target_replays_without_breaking_an_invariant() {
    let targets = corpus_targets();
    assert!(
        targets.len() >= 2,
        "expected the ndjson_decoder and event_parser corpora, found {targets:?}"
    );
    for target in targets {
        let run = body(&target).unwrap_or_else(|| {
            panic!(
                "corpus/{target}/ has no fuzz body; add a line for it to `body` in tests/corpus.rs"
            )
        });
        let dir = crate_dir().join("corpus").join(&target);
        let seeds: Vec<PathBuf> = names(&dir, Path::is_file)
            .into_iter()
            .map(|name| dir.join(name))
            .collect();
        assert!(
            !seeds.is_empty(),
            "corpus/{target}/ is empty; a target without seeds would pass vacuously"
        );
        for seed in seeds {
            let data = fs::read(&seed)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", seed.display()));
            // Printed, and shown by the harness only on failure, to name the seed that broke.
            println!("replaying {}", seed.display());
            run(&data);
        }
    }
}

#[test]
fn every_fuzz_binary_has_a_corpus_and_every_corpus_has_a_binary() {
    let binaries: Vec<String> = names(&crate_dir().join("fuzz_targets"), |path| {
        path.extension().is_some_and(|ext| ext == "rs")
    })
    .into_iter()
    .map(|name| name.trim_end_matches(".rs").to_owned())
    .collect();
    assert_eq!(
        binaries,
        corpus_targets(),
        "fuzz_targets/*.rs and corpus/*/ must name the same targets"
    );
    let manifest =
        fs::read_to_string(crate_dir().join("Cargo.toml")).expect("Cargo.toml is readable");
    for binary in &binaries {
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "fuzz_targets/{binary}.rs needs a [[bin]] entry in Cargo.toml"
        );
    }
}

#[test]
fn event_parser_seeds_hold_both_accepted_and_rejected_lines() {
    // The round-trip checks only run on accepted lines; a corpus of rejects would skip them.
    let dir = crate_dir().join("corpus").join("event_parser");
    let verdicts: Vec<bool> = names(&dir, Path::is_file)
        .into_iter()
        .map(|name| {
            enclave_types::Frame::parse_line(&fs::read(dir.join(name)).expect("seed is readable"))
                .is_ok()
        })
        .collect();
    let accepted = verdicts.iter().filter(|&&ok| ok).count();
    assert!(
        accepted >= 10,
        "only {accepted} event_parser seeds parse as frames"
    );
    assert!(
        verdicts.len() - accepted >= 3,
        "too few rejected event_parser seeds"
    );
}

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
        "http_request" => Some(enclave_fuzz::http_request),
        "ws_messages" => Some(enclave_fuzz::ws_messages),
        "control_messages" => Some(enclave_fuzz::control_messages),
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

/// The seeds of `target` whose first byte is `selector` (the face the body feeds), without it.
fn seeds_for(target: &str, selector: u8) -> Vec<Vec<u8>> {
    let dir = crate_dir().join("corpus").join(target);
    names(&dir, Path::is_file)
        .into_iter()
        .map(|name| fs::read(dir.join(name)).expect("seed is readable"))
        .filter_map(|seed| match seed.split_first() {
            Some((&first, rest)) if first == selector => Some(rest.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn http_request_seeds_reach_the_accepting_and_refusing_paths() {
    // The round-trip and model checks only run on accepted inputs; count both kinds per face.
    use enclave_transport::wire;
    let both = |selector, accepts: &dyn Fn(&[u8]) -> bool| {
        let seeds = seeds_for("http_request", selector);
        let ok = seeds.iter().filter(|seed| accepts(seed)).count();
        assert!(
            ok >= 2 && seeds.len() - ok >= 2,
            "http_request face {selector}: {ok} of {} seeds accepted; want both kinds",
            seeds.len()
        );
    };
    both(0, &|body| wire::parse_create_body(body).is_ok());
    both(1, &|value| {
        std::str::from_utf8(value).is_ok_and(|v| wire::decode_client_hello_header(v).is_ok())
    });
    both(3, &|value| {
        std::str::from_utf8(value).is_ok_and(|v| wire::parse_number("n", v).is_ok())
    });
    let session = enclave_types::SessionId::new("s_fuzz").expect("an id");
    both(5, &|input| {
        input.split_first().is_some_and(|(_, body)| {
            wire::parse_messages_body(body, &session, 1 << 20)
                .is_ok_and(|frames| !frames.is_empty())
        })
    });
}

#[test]
fn ws_messages_seeds_hold_data_and_control_lines_both_ways() {
    use enclave_transport::wire::{self, Classified};
    // (data, control) line counts for the lines a client sends (selector bit 0 clear) and
    // the lines a server sends.
    let mut counts = [(0, 0); 2];
    for selector in 0..=u8::MAX {
        let side = usize::from(selector & 1);
        for seed in seeds_for("ws_messages", selector) {
            for line in wire::split_lines(&seed, 1 << 20).into_iter().flatten() {
                let bytes = line.value.get().as_bytes();
                let kind = if side == 0 {
                    match wire::classify_client_line(bytes) {
                        Classified::Data(_) => (1, 0),
                        Classified::Control(_) => (0, 1),
                        Classified::Unreadable(_) => (0, 0),
                    }
                } else {
                    match wire::classify_server_line(bytes) {
                        Classified::Data(_) => (1, 0),
                        Classified::Control(_) => (0, 1),
                        Classified::Unreadable(_) => (0, 0),
                    }
                };
                counts[side].0 += kind.0;
                counts[side].1 += kind.1;
            }
        }
    }
    for (side, (data, control)) in ["client", "server"].iter().zip(counts) {
        assert!(
            data >= 3 && control >= 2,
            "ws_messages {side} seeds: {data} data and {control} control lines"
        );
    }
}

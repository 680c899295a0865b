//! Repository automation for enclave-stream, in the rust-analyzer `xtask` style.
//!
//! `cargo xtask ci` runs every check CI runs, in CI's order, and stops at the first failure;
//! `cargo xtask fuzz` runs the libFuzzer targets of `crates/enclave-fuzz` for a bounded time;
//! `cargo xtask soak` runs the reconnect chaos tests at full size (100,000 events, release
//! mode) and prints their summaries, the figures of docs/BENCHMARKS.md;
//! `cargo xtask bench-connect` times `enclave connect | reader` against `curl` and the
//! TypeScript stack in one run (docs/BENCHMARKS.md too).
//! The repository's own rules (doc comments, lints, licenses, dependency versions, crate
//! layering, the JS-trim tables, the vector copies) are checked by `cargo test -p xtask`, so
//! they run inside the `test` step of `cargo xtask ci`.
//!
//! This crate uses only the standard library so that it builds in seconds on a fresh clone.
//! It does not build or test anything itself: every step is a plain `cargo` command, printed
//! before it runs, so a developer can copy it and run it alone.
#![forbid(unsafe_code)]

mod bench_connect;
mod ci;
mod fuzz;
mod shell;
mod soak;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                              run every CI check in order, stopping at the first failure
  fuzz [--seconds N] [TARGET...]  run each fuzz target (all by default) for N seconds (default 30)
  bench-connect                   time `enclave connect | reader` against curl and the TypeScript stack
  soak                            run the chaos tests at 100,000 events (release) and print their summaries
  help                            print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci::run(&project_root()),
        Some("ci") => Err(format!("`ci` takes no arguments, got {:?}", &args[1..])),
        Some("fuzz") => fuzz::Options::parse(&args[1..])
            .and_then(|options| fuzz::run(&project_root(), &options)),
        Some("bench-connect") if args.len() == 1 => bench_connect::run(&project_root()),
        Some("bench-connect") => Err(format!(
            "`bench-connect` takes no arguments, got {:?}",
            &args[1..]
        )),
        Some("soak") if args.len() == 1 => soak::run(&project_root()),
        Some("soak") => Err(format!("`soak` takes no arguments, got {:?}", &args[1..])),
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(format!("no command given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask always lives one level below it, wherever the repository is cloned.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask's manifest dir has a parent")
        .to_path_buf()
}

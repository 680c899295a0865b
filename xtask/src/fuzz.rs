//! `cargo xtask fuzz`: runs the libFuzzer targets of `crates/enclave-fuzz` for a bounded time.
//!
//! cargo-fuzz passes nightly-only flags (`-Zsanitizer`, `-Cpasses=sancov-module`) to rustc.
//! Like rustls's CI, we set `RUSTC_BOOTSTRAP=1` so the pinned stable toolchain accepts them;
//! a second, nightly toolchain would drift from the one CI tests with.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::shell::{self, format_duration};

const FUZZ_DIR: &str = "crates/enclave-fuzz";
const DEFAULT_SECONDS: u64 = 30;
/// libFuzzer stops growing inputs here; 64 KiB holds many lines and lines longer than the
/// small line limits the decoder target picks, so the overflow path is reachable.
const MAX_LEN: u32 = 64 * 1024;
/// Enough for the fuzz process with AddressSanitizer, far below the machine's memory.
const RSS_LIMIT_MB: u32 = 2048;
/// A single input taking this long is a hang, not slow fuzzing.
const PER_INPUT_TIMEOUT_SECONDS: u32 = 10;

/// Parsed `cargo xtask fuzz` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Options {
    seconds: u64,
    targets: Vec<String>,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Self, String> {
        let mut seconds = DEFAULT_SECONDS;
        let mut targets = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let value = if arg == "--seconds" {
                Some(
                    args.next()
                        .ok_or("`--seconds` needs a value, e.g. `--seconds 60`")?
                        .as_str(),
                )
            } else {
                arg.strip_prefix("--seconds=")
            };
            if let Some(value) = value {
                seconds = value
                    .parse()
                    .ok()
                    .filter(|&seconds| seconds > 0)
                    .ok_or_else(|| {
                        format!(
                            "`--seconds` takes a whole number of seconds above 0, got `{value}`"
                        )
                    })?;
            } else if arg.starts_with('-') {
                return Err(format!("unknown option `{arg}` for `fuzz`; usage: cargo xtask fuzz [--seconds N] [TARGET...]"));
            } else {
                targets.push(arg.clone());
            }
        }
        Ok(Self { seconds, targets })
    }
}

pub(crate) fn run(root: &Path, options: &Options) -> Result<(), String> {
    let known = known_targets(&root.join(FUZZ_DIR))?;
    let targets: Vec<&str> = if options.targets.is_empty() {
        known.iter().map(String::as_str).collect()
    } else {
        for target in &options.targets {
            if !known.contains(target) {
                return Err(format!(
                    "no fuzz target `{target}`; known targets: {}",
                    known.join(", ")
                ));
            }
        }
        options.targets.iter().map(String::as_str).collect()
    };
    shell::ensure_cargo_subcommand(root, "fuzz", "cargo-fuzz")?;

    // One build for all targets, timed apart from fuzzing so the two costs are visible.
    let build_started = Instant::now();
    shell::run(&mut cargo_fuzz(root, "build", &[]))?;
    let build_time = build_started.elapsed();
    println!("==> fuzz targets built in {}", format_duration(build_time));

    let mut results: Vec<(&str, Duration, Result<(), String>)> = Vec::with_capacity(targets.len());
    for target in targets {
        let seeds = root.join(FUZZ_DIR).join("corpus").join(target);
        // New inputs go to the first corpus dir; keeping it under target/ leaves the
        // committed seed corpus untouched and lets findings accumulate across runs.
        let work = root.join("target").join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)
            .map_err(|err| format!("cannot create {}: {err}", work.display()))?;
        let started = Instant::now();
        let outcome = if is_non_empty_dir(&seeds) {
            println!("\n==> fuzzing {target} for {}s", options.seconds);
            let libfuzzer_args = [
                format!("-max_total_time={}", options.seconds),
                format!("-rss_limit_mb={RSS_LIMIT_MB}"),
                format!("-max_len={MAX_LEN}"),
                format!("-timeout={PER_INPUT_TIMEOUT_SECONDS}"),
                "-print_final_stats=1".to_owned(),
            ];
            let mut args = vec![
                target.to_owned(),
                path_arg(&work),
                path_arg(&seeds),
                "--".to_owned(),
            ];
            args.extend(libfuzzer_args);
            shell::run(&mut cargo_fuzz(root, "run", &args))
        } else {
            Err(format!(
                "the seed corpus {} is missing or empty",
                seeds.display()
            ))
        };
        results.push((target, started.elapsed(), outcome));
    }

    println!("\nfuzz summary (build {}):", format_duration(build_time));
    for (target, elapsed, outcome) in &results {
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "  {target:<20} {:>10}  {verdict}",
            format_duration(*elapsed)
        );
    }
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|(target, _, outcome)| outcome.err().map(|err| format!("{target}: {err}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzzing failed (crash inputs are saved under {FUZZ_DIR}/artifacts/<target>/):\n  {}",
            failures.join("\n  ")
        ))
    }
}

/// `cargo fuzz <subcommand>` on our fuzz crate, with the libFuzzer feature on.
fn cargo_fuzz(root: &Path, subcommand: &str, args: &[String]) -> Command {
    let mut command = shell::cargo(
        root,
        &[
            "fuzz",
            subcommand,
            "--fuzz-dir",
            FUZZ_DIR,
            "--features",
            "libfuzzer",
        ],
    );
    command.args(args).env("RUSTC_BOOTSTRAP", "1");
    command
}

/// Targets are the files in `fuzz_targets/`, each built as a `[[bin]]` of the same name.
fn known_targets(fuzz_dir: &Path) -> Result<Vec<String>, String> {
    let dir = fuzz_dir.join("fuzz_targets");
    let entries =
        std::fs::read_dir(&dir).map_err(|err| format!("cannot list {}: {err}", dir.display()))?;
    let mut targets = Vec::new();
    for entry in entries {
        let path: PathBuf = entry
            .map_err(|err| format!("cannot list {}: {err}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            if let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) {
                targets.push(stem.to_owned());
            }
        }
    }
    if targets.is_empty() {
        return Err(format!("no fuzz targets in {}", dir.display()));
    }
    targets.sort();
    Ok(targets)
}

fn is_non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::{Options, DEFAULT_SECONDS};

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(&args.iter().map(|&arg| arg.to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_to_every_target_for_thirty_seconds() {
        assert_eq!(
            parse(&[]),
            Ok(Options {
                seconds: DEFAULT_SECONDS,
                targets: vec![]
            })
        );
    }

    #[test]
    fn takes_seconds_in_both_spellings_and_targets_in_order() {
        let expected = Options {
            seconds: 5,
            targets: vec!["event_parser".into(), "ndjson_decoder".into()],
        };
        assert_eq!(
            parse(&["--seconds", "5", "event_parser", "ndjson_decoder"]),
            Ok(expected)
        );
        assert_eq!(
            parse(&["event_parser", "--seconds=7"]).map(|o| o.seconds),
            Ok(7)
        );
    }

    #[test]
    fn refuses_bad_seconds_and_unknown_options() {
        assert!(parse(&["--seconds"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--seconds", "0"]).unwrap_err().contains("above 0"));
        assert!(parse(&["--seconds", "ten"]).unwrap_err().contains("`ten`"));
        assert!(parse(&["--runs", "3"])
            .unwrap_err()
            .contains("unknown option `--runs`"));
    }
}

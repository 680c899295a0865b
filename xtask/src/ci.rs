//! `cargo xtask ci`: the checks CI runs, in CI's order, stopping at the first failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::shell::{self, cargo, format_duration};

/// Installs a missing tool the step needs; its time counts toward the step.
type Prepare = fn(&Path) -> Result<(), String>;

/// One CI step: a name for the summary and the command that performs it.
struct Step {
    name: String,
    prepare: Option<Prepare>,
    command: Command,
}

fn steps(root: &Path) -> Vec<Step> {
    // Written as the developer would type them after `cargo`; no argument contains a space.
    let step = |name: &str, args: &str| Step {
        name: name.to_owned(),
        prepare: None,
        command: cargo(root, &args.split_whitespace().collect::<Vec<_>>()),
    };
    // All features, as docs.rs builds them.
    let mut doc = step("doc", "doc --workspace --no-deps --all-features --locked");
    doc.command.env("RUSTDOCFLAGS", "-D warnings");
    let mut deny = step(
        "deny",
        "deny --all-features --locked check bans licenses sources",
    );
    deny.prepare = Some(|root| shell::ensure_cargo_subcommand(root, "deny", "cargo-deny"));
    let mut steps = vec![
        step("fmt", "fmt --all -- --check"),
        step(
            "clippy",
            "clippy --workspace --all-targets --locked -- -D warnings",
        ),
        // Includes doc tests, the xtask tidy rules and the Node interop test; it also builds
        // the examples, so running them next costs only their run time.
        step("test", "test --workspace --locked"),
    ];
    // Each example runs on its own over loopback, checks what it did and exits 0.
    for example in EXAMPLES {
        steps.push(step(
            &format!("example {example}"),
            &format!("run -p enclave-stream --locked --example {example}"),
        ));
    }
    steps.extend([
        doc,
        // Advisories need the RustSec database, which cannot be fetched here (see deny.toml).
        deny,
        // Benches are not run in CI, but they must keep compiling.
        step("bench", "bench --workspace --locked --no-run"),
        // Every publishable crate packages (metadata, readme, included files; a working tree
        // with uncommitted changes too). Verification
        // builds each package against crates.io, where its unpublished siblings are not yet:
        // see "Publishing" in docs/ARCHITECTURE.md.
        step(
            "package",
            "package --workspace --locked --no-verify --allow-dirty",
        ),
    ]);
    steps
}

/// The facade's examples, each a CI step `example <name>`.
const EXAMPLES: &[&str] = &[
    "quickstart",
    "encrypted_channel",
    "reconnecting_client",
    "runtime_server",
];

pub(crate) fn run(root: &Path) -> Result<(), String> {
    let started = Instant::now();
    print_tool_versions(root)?;
    let mut steps = steps(root);
    let total = steps.len();
    let mut done: Vec<(&str, Duration)> = Vec::with_capacity(total);
    for (index, step) in steps.iter_mut().enumerate() {
        println!(
            "\n==> [{}/{total}] {}: {}",
            index + 1,
            step.name,
            shell::describe(&step.command)
        );
        let step_started = Instant::now();
        let outcome = step
            .prepare
            .map_or(Ok(()), |prepare| prepare(root))
            .and_then(|()| shell::run(&mut step.command));
        let elapsed = step_started.elapsed();
        if let Err(err) = outcome {
            print_summary(&done, Some((&step.name, elapsed)), started.elapsed());
            return Err(format!(
                "CI step `{}` failed after {}: {err}",
                step.name,
                format_duration(elapsed)
            ));
        }
        println!("==> {} passed in {}", step.name, format_duration(elapsed));
        done.push((&step.name, elapsed));
    }
    print_summary(&done, None, started.elapsed());
    println!("all {total} CI steps passed");
    Ok(())
}

/// Versions go first in the log so a failure can be matched to its toolchain.
fn print_tool_versions(root: &Path) -> Result<(), String> {
    let cargo_version = shell::first_line(&mut cargo(root, &["--version"]))
        .ok_or("`cargo --version` failed; is the Rust toolchain installed?")?;
    let mut rustc = Command::new("rustc");
    rustc.arg("--version").current_dir(root);
    let rustc_version =
        shell::first_line(&mut rustc).unwrap_or_else(|| "rustc: not found".to_owned());
    let node_version = shell::first_line(Command::new("node").arg("--version")).ok_or(
        "`node` is not on PATH; the Node interop test in `cargo test` needs Node.js 20 or newer",
    )?;
    // The browser test's Chromium (crates/enclave-cli/tests/it/browser.rs reads the same variable).
    let chromium =
        std::env::var_os("ENCLAVE_TEST_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    let chromium_version =
        shell::first_line(Command::new(&chromium).arg("--version")).ok_or_else(|| {
            format!(
                "{} cannot run; the browser test in `cargo test` needs Debian's `chromium` \
                 package (.ci/run installs it)",
                chromium.to_string_lossy()
            )
        })?;
    let redis_version = shell::first_line(Command::new("redis-server").arg("--version")).ok_or(
        "`redis-server` is not on PATH; the Redis store tests in `cargo test` need Debian's \
             `redis-server` package (.ci/run installs it)",
    )?;
    println!(
        "{cargo_version}\n{rustc_version}\nnode {node_version}\n{chromium_version}\n{redis_version}"
    );
    Ok(())
}

fn print_summary(done: &[(&str, Duration)], failed: Option<(&str, Duration)>, total: Duration) {
    println!("\nCI summary:");
    for (name, elapsed) in done {
        println!("  {name:<28} {:>10}  ok", format_duration(*elapsed));
    }
    if let Some((name, elapsed)) = failed {
        println!("  {name:<28} {:>10}  FAILED", format_duration(elapsed));
    }
    println!("  {:<28} {:>10}", "total", format_duration(total));
}

#[cfg(test)]
mod tests {
    use super::steps;
    use crate::shell::describe;
    use std::path::Path;

    #[test]
    fn steps_run_in_ci_order_with_the_documented_commands() {
        let lines: Vec<String> = steps(Path::new("."))
            .iter()
            .map(|step| format!("{}: {}", step.name, describe(&step.command)))
            .collect();
        assert_eq!(
            lines,
            [
                "fmt: cargo fmt --all -- --check",
                "clippy: cargo clippy --workspace --all-targets --locked -- -D warnings",
                "test: cargo test --workspace --locked",
                "example quickstart: cargo run -p enclave-stream --locked --example quickstart",
                "example encrypted_channel: cargo run -p enclave-stream --locked --example encrypted_channel",
                "example reconnecting_client: cargo run -p enclave-stream --locked --example reconnecting_client",
                "example runtime_server: cargo run -p enclave-stream --locked --example runtime_server",
                "doc: RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --all-features --locked",
                "deny: cargo deny --all-features --locked check bans licenses sources",
                "bench: cargo bench --workspace --locked --no-run",
                "package: cargo package --workspace --locked --no-verify --allow-dirty",
            ]
        );
    }
}

//! Running commands: echo them the way a developer would type them, time them, and turn a
//! failure into a message that names the command and its exit status.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The cargo that runs xtask, so nested commands use the same pinned toolchain.
fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// A `cargo` command rooted at the workspace.
pub(crate) fn cargo(root: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(cargo_program());
    command.args(args).current_dir(root);
    command
}

/// The command as a shell line, with `cargo` shown by name rather than by toolchain path.
pub(crate) fn describe(command: &Command) -> String {
    let mut line = String::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let _ = write!(line, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    let program = command.get_program();
    if program == cargo_program() {
        line.push_str("cargo");
    } else {
        line.push_str(&quote(program));
    }
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,+@".contains(&b))
    {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `command` with inherited stdio; `Err` says which command failed and how.
pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let line = describe(command);
    println!("$ {line}");
    let status = command
        .status()
        .map_err(|err| format!("could not start `{line}`: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(match status.code() {
            Some(code) => format!("`{line}` exited with status {code}"),
            None => format!("`{line}` was killed by a signal"),
        })
    }
}

/// The first line a tool prints for `args` (e.g. `--version`), or `None` when it is missing or fails.
pub(crate) fn first_line(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Makes sure `cargo <subcommand>` works, installing `krate` with `cargo install --locked` if not.
pub(crate) fn ensure_cargo_subcommand(
    root: &Path,
    subcommand: &str,
    krate: &str,
) -> Result<(), String> {
    if let Some(version) = first_line(&mut cargo(root, &[subcommand, "--version"])) {
        println!("using {version}");
        return Ok(());
    }
    println!("`cargo {subcommand}` is not installed; installing {krate} (a one-time build of a few minutes)");
    run(&mut cargo(root, &["install", "--locked", krate]))
        .map_err(|err| format!("installing {krate} failed: {err}"))?;
    match first_line(&mut cargo(root, &[subcommand, "--version"])) {
        Some(version) => {
            println!("installed {version}");
            Ok(())
        }
        None => Err(format!(
            "installed {krate}, but `cargo {subcommand} --version` still fails; is ~/.cargo/bin on PATH?"
        )),
    }
}

/// `1m 05.2s` or `7.4s`: short enough for a summary table.
pub(crate) fn format_duration(duration: Duration) -> String {
    let tenths = duration.as_millis() / 100;
    let (minutes, tenths) = (tenths / 600, tenths % 600);
    if minutes == 0 {
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else {
        format!("{minutes}m {:02}.{}s", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::{cargo, describe, first_line, format_duration};
    use crate::project_root;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn a_missing_cargo_subcommand_is_told_apart_from_an_installed_one() {
        // This is how `ensure_cargo_subcommand` decides to run `cargo install`.
        let root = project_root();
        let version = first_line(&mut cargo(&root, &["--version"])).expect("cargo runs");
        assert!(version.starts_with("cargo "), "{version}");
        assert_eq!(
            first_line(&mut cargo(
                &root,
                &["no-such-subcommand-xtask", "--version"]
            )),
            None
        );
    }

    #[test]
    fn durations_read_as_minutes_and_tenths() {
        assert_eq!(format_duration(Duration::from_millis(7_449)), "7.4s");
        assert_eq!(format_duration(Duration::from_millis(65_250)), "1m 05.2s");
        assert_eq!(format_duration(Duration::ZERO), "0.0s");
    }

    #[test]
    fn commands_are_echoed_as_pasteable_shell() {
        let mut command = Command::new("cargo");
        command
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--no-deps", "it's"]);
        assert_eq!(
            describe(&command),
            r"RUSTDOCFLAGS='-D warnings' cargo doc --no-deps 'it'\''s'"
        );
    }
}

//! `cargo xtask soak`: the chaos tests of `enclave-reconnect` at full size (100,000 events
//! each way's worth: 100,000 server events and 10,000 client messages per run), in release
//! mode, with their one-line summaries printed. CI runs the same tests at 20,000 events.

use std::path::Path;

use crate::shell;

/// Events per chaos run (the full size).
const SOAK_EVENTS: &str = "100000";

/// Runs the chaos tests at [`SOAK_EVENTS`] and lets their summaries through.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    let mut command = shell::cargo(
        root,
        &[
            "test",
            "--release",
            "-p",
            "enclave-reconnect",
            "--test",
            "chaos",
            "--",
            "--nocapture",
        ],
    );
    command.env("ENCLAVE_CHAOS_EVENTS", SOAK_EVENTS);
    shell::run(&mut command)
}

//! The `enclave` command-line tool, seven commands: `validate` (check every line of an NDJSON
//! stream), `encrypt` and `decrypt` (`enc` envelopes under a session key), `keygen` (a server
//! signing key); and the network side: `serve` (the session hub behind the HTTP NDJSON and
//! WebSocket server, with its limits on floods), `connect` (a reconnecting client whose
//! buffered output is flushed whenever the stream goes idle) and `demo` (server and client in
//! one process, with cuts).
//!
//! Every subcommand that reads a stream reads it in fixed-size chunks, so memory stays bounded by the
//! NDJSON line limit whatever the input's length. Exit status: 0 when every line was good, 1 when
//! any line was bad, 2 on usage or I/O errors (clap also exits with 2 on bad arguments).
#![forbid(unsafe_code)]

mod connect;
mod crypt;
mod demo;
mod generate;
mod input;
mod keygen;
mod serve;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tools for EnclaveJS streaming-protocol NDJSON streams.
#[derive(Debug, Parser)]
#[command(name = "enclave", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every line of an NDJSON stream against the protocol; one verdict per non-blank line.
    Validate(validate::ValidateArgs),
    /// Seal NDJSON events into `enc` envelopes with a session key (counter nonces).
    Encrypt(crypt::EncryptArgs),
    /// Open `enc` envelopes into NDJSON events with a session key.
    Decrypt(crypt::DecryptArgs),
    /// Write a server signing key (PKCS#8 PEM, P-256) and print its public key (SPKI PEM).
    Keygen(keygen::KeygenArgs),
    /// Serve sessions over HTTP NDJSON and WebSocket (and the files of --static DIR); first
    /// line: `listening http://HOST:PORT`.
    Serve(Box<serve::ServeArgs>),
    /// Open (or resume) a session and print its events, reconnecting on its own.
    Connect(connect::ConnectArgs),
    /// Server and client in one process, encrypted, with the connection cut mid-stream.
    Demo(demo::DemoArgs),
}

/// `--encryption` of `serve` and `connect`: the protocol's three modes, spelled as on the
/// wire.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Encryption {
    Disabled,
    Optional,
    Required,
}

impl From<Encryption> for enclave_types::EncryptionMode {
    fn from(mode: Encryption) -> Self {
        match mode {
            Encryption::Disabled => Self::Disabled,
            Encryption::Optional => Self::Optional,
            Encryption::Required => Self::Required,
        }
    }
}

/// Logs of the network commands: standard error, `RUST_LOG` filters (default: `default`).
fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Encrypt(args) => crypt::run_encrypt(args),
        Command::Decrypt(args) => crypt::run_decrypt(args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Serve(args) => {
            init_logs("info");
            serve::run(*args)
        }
        Command::Connect(args) => {
            // Standard error carries the session line and state changes; logs only warn.
            init_logs("warn");
            connect::run(&args)
        }
        Command::Demo(args) => {
            init_logs("warn");
            demo::run(&args)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command};

    #[test]
    fn a_resume_token_that_starts_with_a_dash_is_the_token() {
        let cli = Cli::try_parse_from([
            "enclave",
            "connect",
            "http://127.0.0.1:1",
            "--session",
            "s_x",
            "--from",
            "3",
            "--token",
            "-uQ9vkR0",
        ])
        .expect("parses");
        let Command::Connect(args) = cli.command else {
            panic!("connect expected");
        };
        assert_eq!(args.token.as_deref(), Some("-uQ9vkR0"));
    }
}

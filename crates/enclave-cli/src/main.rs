//! The `enclave` command-line tool: validate, encrypt and decrypt EnclaveJS NDJSON streams, and
//! make server signing keys.
//!
//! Every subcommand that reads a stream reads it in fixed-size chunks, so memory stays bounded by the
//! NDJSON line limit whatever the input's length. Exit status: 0 when every line was good, 1 when
//! any line was bad, 2 on usage or I/O errors (clap also exits with 2 on bad arguments).
#![forbid(unsafe_code)]

mod crypt;
mod input;
mod keygen;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Encrypt(args) => crypt::run_encrypt(args),
        Command::Decrypt(args) => crypt::run_decrypt(args),
        Command::Keygen(args) => keygen::run(&args),
    }
}

//! `enclave keygen --out FILE`: a server's long-term signing key.
//!
//! Writes a fresh ECDSA P-256 key as PKCS#8 PEM to FILE (for `enclave serve --signing-key`)
//! and prints its public key as SPKI PEM on standard output (for `enclave connect
//! --server-key`, or a browser's `crypto.subtle.importKey('spki', …)`). On Unix the key file is
//! created with mode 0600. An existing FILE is never replaced without `--force`, and then
//! atomically: a temporary file beside it, renamed over it, so no reader ever sees half a key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use enclave_crypto::SigningKey;

use crate::input::{fail, report, EXIT_FAILURE, EXIT_OK};

/// Arguments of `enclave keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the signing key (PKCS#8 PEM, P-256); keep it secret.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,

    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

/// Runs `enclave keygen`.
pub(crate) fn run(args: &KeygenArgs) -> ExitCode {
    let key = match SigningKey::generate() {
        Ok(key) => key,
        Err(err) => {
            report(format_args!("enclave keygen: {err}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let pem = key.to_pkcs8_pem();
    let written = if args.force {
        replace(&args.out, pem.as_bytes())
    } else {
        create(&args.out, pem.as_bytes())
    };
    if let Err(err) = written {
        if err.kind() == io::ErrorKind::AlreadyExists {
            report(format_args!(
                "enclave keygen: {} exists; pass --force to replace it",
                args.out.display()
            ));
            return ExitCode::from(EXIT_FAILURE);
        }
        return fail(
            "keygen",
            &io::Error::new(err.kind(), format!("{}: {err}", args.out.display())),
        );
    }
    let public = key.verifying_key().to_spki_pem();
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_all(public.as_bytes()).and_then(|()| out.flush()) {
        return fail(
            "keygen",
            &io::Error::new(err.kind(), format!("standard output: {err}")),
        );
    }
    ExitCode::from(EXIT_OK)
}

/// Opens a new file readable by its owner only, failing if `path` exists.
fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes `bytes` to a new file at `path`, synced; nothing is left behind on failure.
fn create(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_new(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Replaces `path` atomically: a new file beside it, renamed over it.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or(path.as_os_str()).to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let temporary = path.with_file_name(name);
    create(&temporary, bytes)?;
    fs::rename(&temporary, path).inspect_err(|_| {
        let _ = fs::remove_file(&temporary);
    })
}

//! `enclave encrypt` and `enclave decrypt`: NDJSON events to `enc` envelopes and back, with a
//! session key given on the command line.
//!
//! A line that fails is reported on standard error with its line number and error code;
//! nothing of it reaches standard output, and the other lines go on. Keys never appear in
//! messages.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bytes::BytesMut;
use enclave_crypto::hazmat::{self, SessionKey};
use enclave_crypto::{Error, Incoming, IncomingFrame as _, Location, KEY_LEN};
use enclave_ndjson::{Error as LineError, StreamEncoder, DEFAULT_MAX_LINE_LENGTH};
use enclave_types::{Frame, StreamEvent};
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

use crate::input::{fail, lines_status, report, Input, EXIT_FAILURE};

/// Arguments of `enclave encrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct EncryptArgs {
    /// The 32-byte AES-256-GCM session key, as 64 hex digits.
    #[arg(long, value_name = "HEX")]
    key_hex: String,

    /// The key id the envelopes carry as `kid` (`k_<uuid>`).
    #[arg(long, value_name = "KID")]
    key_id: String,

    /// NDJSON events to seal; standard input when absent or `-`.
    file: Option<PathBuf>,
}

/// Arguments of `enclave decrypt`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecryptArgs {
    /// The 32-byte AES-256-GCM session key, as 64 hex digits.
    #[arg(long, value_name = "HEX")]
    key_hex: String,

    /// The key id envelopes must carry. By default any `kid` is accepted: it is not
    /// authenticated, so it can only catch a mix-up, never a forgery.
    #[arg(long, value_name = "KID")]
    key_id: Option<String>,

    /// NDJSON `enc` envelopes to open; standard input when absent or `-`.
    file: Option<PathBuf>,
}

/// The key bytes from `--key-hex`, wiped on drop; the argument text is wiped as soon as it is
/// read. Nothing here ever echoes the key.
fn key_bytes(command: &str, key_hex: &mut String) -> Result<Zeroizing<[u8; KEY_LEN]>, ExitCode> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    let decoded = hex::decode_to_slice(key_hex.trim(), bytes.as_mut_slice());
    key_hex.zeroize();
    decoded.map(|()| bytes).map_err(|_| {
        report(format_args!(
            "enclave {command}: --key-hex must be 64 hex digits (a 32-byte AES-256 key)"
        ));
        ExitCode::from(EXIT_FAILURE)
    })
}

/// The session key for `kid`, or the usage error to exit with.
fn session_key(command: &str, bytes: &[u8; KEY_LEN], kid: &str) -> Result<SessionKey, ExitCode> {
    SessionKey::new(kid, bytes).map_err(|err| {
        report(format_args!("enclave {command}: {err}"));
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Counts lines and reports the failed ones.
#[derive(Debug)]
struct Report {
    command: &'static str,
    done: u64,
    failed: u64,
}

impl Report {
    fn new(command: &'static str) -> Self {
        Self {
            command,
            done: 0,
            failed: 0,
        }
    }

    /// Prints `enclave decrypt: FILE: line N: CODE: what failed`.
    fn failed(&mut self, input: &str, err: &Error) {
        self.failed += 1;
        let message = err.to_string();
        match err.line() {
            Some(line) => {
                let prefix = format!("line {line}: ");
                let detail = message.strip_prefix(&prefix).unwrap_or(&message);
                report(format_args!(
                    "enclave {}: {input}: line {line}: {}: {detail}",
                    self.command,
                    err.code()
                ));
            }
            None => report(format_args!(
                "enclave {}: {input}: {}: {message}",
                self.command,
                err.code()
            )),
        }
    }

    fn finish(&self, input: &str, verb: &str) -> ExitCode {
        report(format_args!(
            "enclave {}: {input}: {} lines {verb}, {} failed",
            self.command, self.done, self.failed
        ));
        lines_status(self.failed)
    }
}

/// Runs `enclave encrypt`.
pub(crate) fn run_encrypt(mut args: EncryptArgs) -> ExitCode {
    const COMMAND: &str = "encrypt";
    let key = match key_bytes(COMMAND, &mut args.key_hex).and_then(|bytes| {
        // Every envelope would carry `"kid":""`, which both implementations refuse to read
        // (enclave-types requires a non-empty `kid`): a usage error now, not unreadable output.
        if args.key_id.is_empty() {
            report(format_args!(
                "enclave {COMMAND}: --key-id must not be empty (every envelope carries it as `kid`)"
            ));
            return Err(ExitCode::from(EXIT_FAILURE));
        }
        session_key(COMMAND, &bytes, &args.key_id)
    }) {
        Ok(key) => key,
        Err(code) => return code,
    };
    // One sealer for the whole input: one random nonce prefix, counters that never repeat.
    let mut sealer = match hazmat::sealer::<StreamEvent>(key) {
        Ok(sealer) => sealer,
        Err(err) => {
            report(format_args!("enclave {COMMAND}: {err}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    transform_lines(
        COMMAND,
        args.file.as_deref(),
        "sealed",
        |event: StreamEvent, line| sealer.seal_line(&event, line),
    )
}

/// Runs `enclave decrypt`.
pub(crate) fn run_decrypt(mut args: DecryptArgs) -> ExitCode {
    const COMMAND: &str = "decrypt";
    // Decoded up front so a bad key is a usage error even on empty input.
    let key = match key_bytes(COMMAND, &mut args.key_hex) {
        Ok(key) => key,
        Err(code) => return code,
    };
    // Without --key-id the `kid` is not checked: it is not authenticated, so adopting the
    // first one seen would let one relabelled line lock out every genuine line after it.
    let session_key = match session_key(COMMAND, &key, args.key_id.as_deref().unwrap_or("-")) {
        Ok(session_key) => session_key,
        Err(code) => return code,
    };
    let mut opener = hazmat::opener::<StreamEvent>(session_key, args.key_id.is_some());
    let mut encoder = StreamEncoder::<StreamEvent>::new();
    transform_lines(
        COMMAND,
        args.file.as_deref(),
        "opened",
        |frame: Frame, line| {
            let event = match frame.into_incoming()? {
                Incoming::Sealed(envelope) => opener.open(&envelope),
                Incoming::Plaintext(event) => Err(Error::PlaintextRefused {
                    at: Location::message(event.session_id.as_str(), Some(event.seq)),
                    reason: "decrypt reads only enc envelopes",
                }),
            }?;
            // The NDJSON encoder, not a bare serializer: an opaque field keeps its text as the
            // peer sent it, newlines included, and the encoder keeps each event on one line.
            encoder.encode(&event)?;
            line.extend_from_slice(&encoder.take());
            Ok(())
        },
    )
}

/// Reads NDJSON lines of `T` from `file` (standard input when `None`) and writes what
/// `transform` puts in its (reused, cleared) buffer for each to standard output.
///
/// A line that fails, in framing or in `transform`, is reported on standard error with its
/// line number and error code; nothing of it is written and the next line goes on.
fn transform_lines<T: DeserializeOwned>(
    command: &'static str,
    file: Option<&Path>,
    verb: &str,
    mut transform: impl FnMut(T, &mut BytesMut) -> Result<(), Error>,
) -> ExitCode {
    let mut input = match Input::open(file) {
        Ok(input) => input,
        Err(err) => return fail(command, &err),
    };
    let name = input.name().to_owned();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut report = Report::new(command);
    let mut line = BytesMut::new();
    let done = input.for_each_line(
        DEFAULT_MAX_LINE_LENGTH,
        &mut out,
        |item: Result<T, LineError>, line_number, out| {
            line.clear();
            match item
                .map_err(Error::from)
                .and_then(|value| transform(value, &mut line))
            {
                Ok(()) => {
                    report.done += 1;
                    out.write_all(&line)
                }
                Err(err) => {
                    report.failed(&name, &err.at_line(line_number));
                    Ok(())
                }
            }
        },
    );
    if let Err(err) = done {
        return fail(command, &err);
    }
    report.finish(&name, verb)
}

//! `enclave validate [FILE]`: one JSON verdict per non-blank input line.
//!
//! Valid lines give `{"line":N,"valid":true,"type":"stdout","seq":3}`, invalid ones
//! `{"line":N,"valid":false,"error":"…"}`; a human summary goes to standard error. The NDJSON
//! layer numbers the lines and keeps memory bounded by its line limit; the protocol model
//! decides validity while it parses, so each line is read once.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use enclave_ndjson::{Error as LineError, DEFAULT_MAX_LINE_LENGTH};
use enclave_types::Frame;
use serde::Serialize;

use crate::input::{fail, lines_status, report, Input};

/// Arguments of `enclave validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// NDJSON file to check; standard input when absent or `-`.
    file: Option<PathBuf>,

    /// Longest accepted line in bytes; longer lines are reported and skipped.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_LENGTH, value_name = "BYTES")]
    max_line_length: usize,
}

/// The verdict printed for one line.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Verdict<'a> {
    Valid {
        line: u64,
        valid: bool,
        #[serde(rename = "type")]
        frame_type: &'a str,
        seq: u64,
    },
    Invalid {
        line: u64,
        valid: bool,
        error: String,
    },
}

/// Running totals for the summary line.
#[derive(Debug, Default)]
struct Tally {
    valid: u64,
    invalid: u64,
}

/// Runs `enclave validate`.
pub(crate) fn run(args: &ValidateArgs) -> ExitCode {
    let mut input = match Input::open(args.file.as_deref()) {
        Ok(input) => input,
        Err(err) => return fail("validate", &err),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut tally = Tally::default();
    let checked = input.for_each_line(args.max_line_length, &mut out, |item, line, out| {
        tally.record(out, item, line)
    });
    if let Err(err) = checked {
        return fail("validate", &err);
    }

    report(format_args!(
        "enclave validate: {}: {} lines checked, {} valid, {} invalid",
        input.name(),
        tally.valid + tally.invalid,
        tally.valid,
        tally.invalid
    ));
    lines_status(tally.invalid)
}

impl Tally {
    /// Writes the verdict for one decoded line; `line` is the decoder's count after it.
    fn record(
        &mut self,
        out: &mut impl Write,
        item: Result<Frame, LineError>,
        line: u64,
    ) -> io::Result<()> {
        let verdict = match item {
            Ok(frame) => {
                self.valid += 1;
                Verdict::Valid {
                    line,
                    valid: true,
                    frame_type: frame.type_str(),
                    seq: frame.seq(),
                }
            }
            // Every item error is a verdict on the line, and the stream goes on.
            Err(err) => {
                self.invalid += 1;
                let line = err.line().unwrap_or(line);
                // The verdict carries the line number already; the message need not repeat it.
                let message = err.to_string();
                let error = match message.strip_prefix(&format!("line {line}: ")) {
                    Some(rest) => rest.to_owned(),
                    None => message,
                };
                Verdict::Invalid {
                    line,
                    valid: false,
                    error,
                }
            }
        };
        serde_json::to_writer(&mut *out, &verdict)?;
        out.write_all(b"\n")
    }
}

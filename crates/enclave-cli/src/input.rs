//! Input and output plumbing shared by the subcommands: where bytes come from, how they are
//! read in bounded chunks, and what the exit statuses mean.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use enclave_ndjson::{Error as LineError, StreamDecoder};
use serde::de::DeserializeOwned;

/// Size of each read: large enough to amortize system calls, small enough to keep memory flat.
const CHUNK_SIZE: usize = 64 * 1024;

/// Every line was good.
pub(crate) const EXIT_OK: u8 = 0;
/// At least one line was bad; the others were processed.
pub(crate) const EXIT_BAD_LINES: u8 = 1;
/// Usage or I/O error: the input could not be read, or the output could not be written.
pub(crate) const EXIT_FAILURE: u8 = 2;

/// Where a subcommand reads from: a named file, or standard input when none is given.
pub(crate) struct Input {
    name: String,
    reader: Box<dyn Read>,
}

impl Input {
    /// Opens `path`, or standard input for `None` (and for `-`, by convention).
    pub(crate) fn open(path: Option<&Path>) -> io::Result<Self> {
        match path {
            None => Ok(Self::stdin()),
            Some(p) if p.as_os_str() == "-" => Ok(Self::stdin()),
            Some(p) => Ok(Self {
                name: p.display().to_string(),
                reader: Box::new(File::open(p).map_err(|e| with_context(&e, &p.display()))?),
            }),
        }
    }

    fn stdin() -> Self {
        Self {
            name: "<stdin>".to_owned(),
            reader: Box::new(io::stdin().lock()),
        }
    }

    /// The name to use in messages: the path, or `<stdin>`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Reads the whole input in chunks of [`CHUNK_SIZE`], handing each to `on_chunk`.
    ///
    /// `on_chunk` returning an error stops the read (used when writing the output fails).
    fn for_each_chunk(
        &mut self,
        mut on_chunk: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => on_chunk(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A directory opens fine and fails only here; the message must still say which.
                Err(e) => return Err(with_context(&e, &self.name)),
            }
        }
    }
}

impl Input {
    /// Decodes the input as NDJSON lines of `T`, handing each decoded line (or its line-level
    /// error) to `on_line` with its 1-based line number, in order.
    ///
    /// `out` is flushed after every chunk read, so a live pipe sees the results as its lines
    /// arrive; memory stays bounded by `max_line_length` plus one chunk.
    pub(crate) fn for_each_line<T: DeserializeOwned, W: Write>(
        &mut self,
        max_line_length: usize,
        out: &mut W,
        mut on_line: impl FnMut(Result<T, LineError>, u64, &mut W) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut decoder = StreamDecoder::<T>::with_max_line_length(max_line_length);
        // `on_line` fails only when writing its output; say so, as read errors name the input.
        let output = |err: io::Error| with_context(&err, &"standard output");
        self.for_each_chunk(|chunk| {
            decoder.feed(chunk);
            while let Some(item) = decoder.next_item() {
                on_line(item, decoder.line_number(), out).map_err(output)?;
            }
            out.flush().map_err(output)
        })?;
        // End of input: a last line without a newline is still decoded.
        while let Some(item) = decoder.flush().next() {
            on_line(item, decoder.line_number(), out).map_err(output)?;
        }
        out.flush().map_err(output)
    }
}

/// The exit status once every line was handled: 0 if none failed, 1 otherwise.
pub(crate) fn lines_status(failed: u64) -> ExitCode {
    ExitCode::from(if failed == 0 { EXIT_OK } else { EXIT_BAD_LINES })
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `err` prefixed with the input it concerns, keeping its kind.
fn with_context(err: &io::Error, name: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{name}: {err}"))
}

/// Reports a fatal I/O error for `command` and gives the matching exit status.
///
/// A closed pipe on standard output (`enclave validate big.ndjson | head`) is not worth a
/// message: the reader has what it asked for.
pub(crate) fn fail(command: &str, err: &io::Error) -> ExitCode {
    if err.kind() != io::ErrorKind::BrokenPipe {
        report(format_args!("enclave {command}: {err}"));
    }
    ExitCode::from(EXIT_FAILURE)
}

/// Writes one message line to standard error, the only way this tool writes there.
///
/// A failed write is ignored, unlike `eprintln!`, which panics: when the reader of our messages
/// hangs up (`enclave decrypt … 2>&1 >/dev/null | head -1`) there is no one left to tell, and
/// the exit status already says how the run went.
pub(crate) fn report(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{message}");
}

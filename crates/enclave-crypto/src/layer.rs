//! The encryption layer, independent of any carrier: what one side of one connection does
//! with each line it receives and each message it sends.
//!
//! A byte stream adapts it with [`EncryptedCodec`](crate::EncryptedCodec); a message-based
//! carrier (WebSocket) calls it directly, line by line.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use enclave_ndjson::DEFAULT_MAX_LINE_LENGTH;
use enclave_types::{
    EncryptedEnvelope, EncryptionMode, Frame, MessageFrame, RuntimeChannelMessage, StreamEvent,
};
use serde::de::DeserializeOwned;

use crate::cipher::{Opener, Sealable, Sealer};
use crate::error::{reason, Error, Location};

mod private {
    pub trait Sealed {}
}

/// What one line of a direction holds: a plaintext message or an `enc` envelope around one.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<M> {
    /// A message in plaintext.
    Plaintext(M),
    /// An envelope to open.
    Sealed(EncryptedEnvelope),
}

/// A frame type of one direction: [`Frame`] (server → client, events) and [`MessageFrame`]
/// (client → server, runtime channel messages).
pub trait IncomingFrame: DeserializeOwned + private::Sealed {
    /// The message family the frame carries.
    type Message: Sealable;
    /// Splits the frame into a plaintext message or an envelope.
    fn into_incoming(self) -> Result<Incoming<Self::Message>, Error>;
}

impl private::Sealed for Frame {}

impl IncomingFrame for Frame {
    type Message = StreamEvent;

    fn into_incoming(self) -> Result<Incoming<StreamEvent>, Error> {
        match self {
            Frame::Event(event) => Ok(Incoming::Plaintext(event)),
            Frame::Encrypted(envelope) => Ok(Incoming::Sealed(envelope)),
            other => Err(unsupported(
                other.type_str(),
                other.session_id().as_str(),
                Some(other.seq()),
            )),
        }
    }
}

impl private::Sealed for MessageFrame {}

impl IncomingFrame for MessageFrame {
    type Message = RuntimeChannelMessage;

    fn into_incoming(self) -> Result<Incoming<RuntimeChannelMessage>, Error> {
        match self {
            MessageFrame::Message(message) => Ok(Incoming::Plaintext(message)),
            MessageFrame::Encrypted(envelope) => Ok(Incoming::Sealed(envelope)),
            other => Err(unsupported(
                other.type_str(),
                other.session_id().as_str(),
                other.seq(),
            )),
        }
    }
}

/// A frame of a kind a later protocol version may add, which this layer cannot handle.
fn unsupported(kind: &str, session: &str, seq: Option<u64>) -> Error {
    Error::DecryptionFailed {
        at: Location::message(session, seq),
        reason: format!("unsupported frame type {kind:?}").into(),
    }
}

/// One message received, and whether it arrived sealed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Opened<M> {
    /// The message (opened, if it came in an envelope).
    pub message: M,
    /// `true` if it came in an `enc` envelope, `false` if it came in plaintext.
    pub encrypted: bool,
}

/// One side of one connection: the encryption mode, and once the handshake is done, the
/// sealer for what this side sends (`Out`) and the opener for what it receives (`In`).
///
/// The rules, whatever the carrier:
/// - **With keys** (after [`set_ciphers`](Self::set_ciphers)), every message sent is sealed
///   and every line received must be an envelope: plaintext is refused *in every mode*, so
///   nobody can slip a `tool_call` or a `final` around the encryption once it is up.
/// - **Without keys**, mode `Required` refuses plaintext both ways (nothing is sent or
///   accepted before the handshake); `Optional` and `Disabled` carry plaintext.
/// - The lines of the handshake itself (the plaintext `session_init` that carries the
///   `ServerHello`) are read before the keys exist and are the carrier's business: they do
///   not go through this layer.
///
/// A refused line is an item error naming where it was (line, session, seq) and changes
/// nothing, so the stream goes on.
pub struct EncryptionLayer<Out, In> {
    mode: EncryptionMode,
    sealer: Option<Sealer<Out>>,
    opener: Option<Opener<In>>,
    max_line_length: usize,
    lines_written: u64,
}

/// The server's side: seals events, opens runtime channel messages.
pub type ServerEncryption = EncryptionLayer<StreamEvent, RuntimeChannelMessage>;
/// The client's side: seals runtime channel messages, opens events.
pub type ClientEncryption = EncryptionLayer<RuntimeChannelMessage, StreamEvent>;

impl<Out: Sealable, In: Sealable> EncryptionLayer<Out, In> {
    /// A layer in `mode` without keys yet.
    pub fn new(mode: EncryptionMode) -> Self {
        Self {
            mode,
            sealer: None,
            opener: None,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            lines_written: 0,
        }
    }

    /// A layer in `mode` with the keys of a finished handshake.
    pub fn with_ciphers(mode: EncryptionMode, sealer: Sealer<Out>, opener: Opener<In>) -> Self {
        let mut layer = Self::new(mode);
        layer.set_ciphers(sealer, opener);
        layer
    }

    /// Installs the keys of a finished handshake; from now on everything is sealed and only
    /// envelopes are accepted. Replaces any earlier keys (a new connection's handshake).
    pub fn set_ciphers(&mut self, mut sealer: Sealer<Out>, opener: Opener<In>) {
        sealer.set_max_line_length(self.max_line_length);
        self.sealer = Some(sealer);
        self.opener = Some(opener);
    }

    /// The configured mode.
    pub fn mode(&self) -> EncryptionMode {
        self.mode
    }

    /// `true` once keys are installed.
    pub fn is_encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// The sealer for outgoing messages, once keys are installed.
    pub fn sealer(&self) -> Option<&Sealer<Out>> {
        self.sealer.as_ref()
    }

    /// The opener for incoming envelopes, once keys are installed.
    pub fn opener(&self) -> Option<&Opener<In>> {
        self.opener.as_ref()
    }

    /// The longest line this layer writes, without its `\n`.
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// Sets the longest line this layer writes: match the reader's limit.
    pub fn set_max_line_length(&mut self, max_line_length: usize) {
        self.max_line_length = max_line_length;
        if let Some(sealer) = &mut self.sealer {
            sealer.set_max_line_length(max_line_length);
        }
    }

    /// Takes the layer apart, so a session layer can keep the mode and drop or move the
    /// ciphers when a connection is replaced.
    pub fn into_parts(self) -> (EncryptionMode, Option<Sealer<Out>>, Option<Opener<In>>) {
        (self.mode, self.sealer, self.opener)
    }

    /// Accepts one received frame: opens an envelope, or passes plaintext where the rules
    /// allow it.
    pub fn open<F: IncomingFrame<Message = In>>(&mut self, frame: F) -> Result<Opened<In>, Error> {
        match frame.into_incoming()? {
            Incoming::Sealed(envelope) => self.open_envelope(&envelope).map(|message| Opened {
                message,
                encrypted: true,
            }),
            Incoming::Plaintext(message) => self.plaintext(message),
        }
    }

    /// A plaintext message, where the rules allow it.
    fn plaintext(&self, message: In) -> Result<Opened<In>, Error> {
        let refuse = |reason| Error::PlaintextRefused {
            at: Location::message(message.session_id().as_str(), message.seq()),
            reason,
        };
        if self.opener.is_some() {
            Err(refuse("this connection is encrypted"))
        } else if self.mode == EncryptionMode::Required {
            Err(refuse("encryption is required"))
        } else {
            Ok(Opened {
                message,
                encrypted: false,
            })
        }
    }

    /// [`open`](Self::open), also returning, for an envelope, the plaintext JSON the
    /// message was read from ([`Opener::open_with_json`]); `None` for plaintext, whose JSON
    /// is the received line itself.
    pub fn open_with_json<F: IncomingFrame<Message = In>>(
        &mut self,
        frame: F,
    ) -> Result<(Opened<In>, Option<Bytes>), Error> {
        match frame.into_incoming()? {
            Incoming::Sealed(envelope) => match &mut self.opener {
                Some(opener) => opener.open_with_json(&envelope).map(|(message, json)| {
                    (
                        Opened {
                            message,
                            encrypted: true,
                        },
                        Some(json),
                    )
                }),
                None => Err(no_keys(&envelope)),
            },
            Incoming::Plaintext(message) => self.plaintext(message).map(|opened| (opened, None)),
        }
    }

    /// Opens one envelope (refused before keys are installed).
    pub fn open_envelope(&mut self, envelope: &EncryptedEnvelope) -> Result<In, Error> {
        match &mut self.opener {
            Some(opener) => opener.open(envelope),
            None => Err(no_keys(envelope)),
        }
    }

    /// Writes `message` to `dst` as one line: an envelope once keys are installed, plaintext
    /// before that unless encryption is required. On any error `dst` is left as it was.
    pub fn encode(&mut self, message: &Out, dst: &mut BytesMut) -> Result<(), Error> {
        self.write_line(message, None, dst)
    }

    /// Like [`encode`](Self::encode), for a message already serialized: `json` must be
    /// `message`'s compact JSON without a newline (see [`Sealer::seal_json_line`]). Sealed,
    /// those bytes are sealed; in plaintext they are the line. The line limit applies alike.
    pub fn encode_json(
        &mut self,
        message: &Out,
        json: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), Error> {
        self.write_line(message, Some(json), dst)
    }

    /// [`encode`](Self::encode) and [`encode_json`](Self::encode_json): `json` is the
    /// message's JSON when the caller has it, else the message is serialized here.
    fn write_line(
        &mut self,
        message: &Out,
        json: Option<&[u8]>,
        dst: &mut BytesMut,
    ) -> Result<(), Error> {
        let line = self.lines_written + 1;
        let written = match (&mut self.sealer, json) {
            (None, _) if self.mode == EncryptionMode::Required => Err(Error::SealFailed {
                at: Location::message(message.session_id().as_str(), message.seq()),
                reason: "encryption is required and the handshake has not finished".into(),
            }),
            (sealer, Some(json)) => {
                write_json_line(sealer.as_mut(), message, json, dst, self.max_line_length)
            }
            (Some(sealer), None) => sealer.seal_line(message, dst),
            (None, None) => write_plaintext(message, None, dst, self.max_line_length),
        };
        written.map_err(|err| err.at_line(line))?;
        self.lines_written = line;
        Ok(())
    }
}

/// Writes one line of an already serialized `message` to `dst` for a writer that keeps its
/// [`Sealer`] outside an [`EncryptionLayer`] (an HTTP stream body, whose opener serves
/// another route): sealed from `json` with `sealer` (its own line limit), or `json` itself
/// and `\n` within `max_line_length` when there is no sealer. `json` must be `message`'s
/// compact JSON without a newline, as for [`EncryptionLayer::encode_json`], which does the
/// same. On error `dst` is unchanged.
pub fn write_json_line<M: Sealable>(
    sealer: Option<&mut Sealer<M>>,
    message: &M,
    json: &[u8],
    dst: &mut BytesMut,
    max_line_length: usize,
) -> Result<(), Error> {
    match sealer {
        Some(sealer) => sealer.seal_json_line(message, json, dst),
        None => write_plaintext(message, Some(json), dst, max_line_length),
    }
}

/// Writes `message` as compact JSON (`json`, when the caller has it already) and `\n`,
/// within `limit`; on error `dst` is unchanged.
fn write_plaintext<M: Sealable>(
    message: &M,
    json: Option<&[u8]>,
    dst: &mut BytesMut,
    limit: usize,
) -> Result<(), Error> {
    let start = dst.len();
    let at = || Location::message(message.session_id().as_str(), message.seq());
    let serialized = match json {
        Some(json) => {
            dst.extend_from_slice(json);
            Ok(())
        }
        None => serde_json::to_writer(dst.writer(), message).map_err(|err| Error::Unencodable {
            at: at(),
            reason: reason(&err),
        }),
    };
    let result = serialized.and_then(|()| {
        let len = dst.len() - start;
        if len > limit {
            return Err(Error::LineTooLong {
                at: at(),
                len,
                limit,
            });
        }
        dst.put_u8(b'\n');
        Ok(())
    });
    if result.is_err() {
        dst.truncate(start);
    }
    result
}

impl<Out, In> fmt::Debug for EncryptionLayer<Out, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionLayer")
            .field("mode", &self.mode)
            .field("sealer", &self.sealer)
            .field("opener", &self.opener)
            .field("max_line_length", &self.max_line_length)
            .finish_non_exhaustive()
    }
}

/// The refusal of an envelope that came before the keys.
fn no_keys(envelope: &EncryptedEnvelope) -> Error {
    Error::DecryptionFailed {
        at: Location::message(envelope.session_id.as_str(), Some(envelope.seq)),
        reason: "no keys yet: the handshake has not finished".into(),
    }
}

#[cfg(test)]
mod tests {
    use enclave_types::{SessionId, StdoutPayload};

    use super::*;
    use crate::hazmat;
    use crate::KEY_LEN;

    fn event(session: &SessionId, seq: u64, text: &str) -> StreamEvent {
        StreamEvent::new(session.clone(), seq, StdoutPayload::new(text).into())
    }

    /// A server layer and a client layer of one session, both with keys.
    fn layers(session: &SessionId, mode: EncryptionMode) -> (ServerEncryption, ClientEncryption) {
        let (c2s, s2c) = ([1; KEY_LEN], [2; KEY_LEN]);
        let (sealer, opener) = hazmat::server_keys(session, "k_l", &c2s, &s2c)
            .unwrap()
            .into_ciphers()
            .unwrap();
        let server = EncryptionLayer::with_ciphers(mode, sealer, opener);
        let (sealer, opener) = hazmat::client_keys(session, "k_l", &c2s, &s2c)
            .unwrap()
            .into_ciphers()
            .unwrap();
        (server, EncryptionLayer::with_ciphers(mode, sealer, opener))
    }

    fn frame(line: &[u8]) -> Frame {
        Frame::parse_line(line).unwrap()
    }

    #[test]
    fn once_keys_exist_plaintext_is_refused_in_every_mode() {
        let s = SessionId::new("s_inject").unwrap();
        for mode in [EncryptionMode::Optional, EncryptionMode::Required] {
            let (mut server, mut client) = layers(&s, mode);
            let mut wire = BytesMut::new();
            server.encode(&event(&s, 1, "sealed"), &mut wire).unwrap();
            assert!(client.open(frame(&wire)).unwrap().encrypted);
            // An attacker's plaintext `final` after the handshake.
            let injected = br#"{"protocolVersion":2,"sessionId":"s_inject","seq":2,"type":"final","payload":{"ok":true}}"#;
            let err = client.open(frame(injected)).unwrap_err();
            assert!(
                matches!(err, Error::PlaintextRefused { .. }),
                "{mode:?}: {err}"
            );
            assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
            assert!(err.to_string().contains("seq 2"), "{err}");
        }
    }

    #[test]
    fn without_keys_optional_carries_plaintext_and_required_refuses_it_both_ways() {
        let s = SessionId::new("s_plain").unwrap();
        let mut optional = ServerEncryption::new(EncryptionMode::Optional);
        let mut wire = BytesMut::new();
        optional.encode(&event(&s, 1, "hello"), &mut wire).unwrap();
        assert!(!wire.starts_with(
            b"{\"protocolVersion\":2,\"sessionId\":\"s_plain\",\"seq\":1,\"type\":\"enc\""
        ));
        let mut reader = ClientEncryption::new(EncryptionMode::Optional);
        let opened = reader.open(frame(&wire)).unwrap();
        assert!(!opened.encrypted);
        assert_eq!(opened.message, event(&s, 1, "hello"));

        let mut required = ServerEncryption::new(EncryptionMode::Required);
        let mut out = BytesMut::new();
        let err = required
            .encode(&event(&s, 1, "hello"), &mut out)
            .unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_SEAL_FAILED");
        assert!(out.is_empty());
        let mut reader = ClientEncryption::new(EncryptionMode::Required);
        assert!(matches!(
            reader.open(frame(&wire)).unwrap_err(),
            Error::PlaintextRefused { .. }
        ));
    }

    #[test]
    fn a_line_over_the_limit_is_refused_when_writing_and_nothing_is_written() {
        let s = SessionId::new("s_long").unwrap();
        let (mut server, _) = layers(&s, EncryptionMode::Required);
        server.set_max_line_length(1000);
        let mut wire = BytesMut::from(&b"earlier\n"[..]);
        server.encode(&event(&s, 1, "short"), &mut wire).unwrap();
        let before = wire.clone();
        // 700 bytes of plaintext fit the limit; sealed and base64-encoded they do not.
        let err = server
            .encode(&event(&s, 2, &"x".repeat(700)), &mut wire)
            .unwrap_err();
        assert!(
            matches!(err, Error::LineTooLong { limit: 1000, .. }),
            "{err}"
        );
        assert_eq!(err.line(), Some(2), "{err}");
        assert_eq!(wire, before);
        // Plaintext lines obey the same limit.
        let mut plain = ServerEncryption::new(EncryptionMode::Optional);
        plain.set_max_line_length(100);
        let err = plain
            .encode(&event(&s, 1, &"y".repeat(200)), &mut wire)
            .unwrap_err();
        assert!(
            matches!(err, Error::LineTooLong { limit: 100, .. }),
            "{err}"
        );
        assert_eq!(wire, before);
    }
}

//! The per-direction ciphers: a [`Sealer`] turns messages into `enc` envelopes under counter
//! nonces, an [`Opener`] turns envelopes back into messages and refuses replays.
//!
//! Both are bound to one session and typed by the message family they carry, so a server
//! seals [`StreamEvent`]s and opens [`RuntimeChannelMessage`]s, and a client the other way
//! round. The envelope's text is written and read by `envelope.rs`; this file keeps the
//! state (key, nonces, session, last `seq`) and the checks.

use std::fmt;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use enclave_ndjson::DEFAULT_MAX_LINE_LENGTH;
use enclave_types::{
    EncryptedEnvelope, ProtocolVersion, RuntimeChannelMessage, SessionId, StreamEvent,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::aead::{SessionKey, WipeBuf, TAG_LEN};
use crate::envelope;
use crate::error::{quote, reason, Error, Location};
use crate::nonce::{CounterNonces, NonceGuard, Refusal};

/// Messages one key may seal before a new handshake is needed (2^30, far below GCM's 2^32
/// bound for random-prefix nonces).
pub const MAX_MESSAGES_PER_KEY: u64 = 1 << 30;

mod private {
    pub trait Sealed {}
}

/// A message family that travels sealed: [`StreamEvent`] (server → client) and
/// [`RuntimeChannelMessage`] (client → server). Sealed: the crate knows how each binds to
/// its envelope.
pub trait Sealable: Serialize + DeserializeOwned + private::Sealed {
    /// What the family is called in messages (`event`, `message`).
    const NAME: &'static str;
    /// The session the message belongs to.
    fn session_id(&self) -> &SessionId;
    /// Its position in its direction's sequence; a message without one cannot be sealed.
    fn seq(&self) -> Option<u64>;
    /// The sender's protocol version.
    fn protocol_version(&self) -> ProtocolVersion;
}

impl private::Sealed for StreamEvent {}

impl Sealable for StreamEvent {
    const NAME: &'static str = "event";

    fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    fn seq(&self) -> Option<u64> {
        Some(self.seq)
    }

    fn protocol_version(&self) -> ProtocolVersion {
        self.protocol_version
    }
}

impl private::Sealed for RuntimeChannelMessage {}

impl Sealable for RuntimeChannelMessage {
    const NAME: &'static str = "message";

    fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    fn seq(&self) -> Option<u64> {
        self.seq
    }

    fn protocol_version(&self) -> ProtocolVersion {
        self.protocol_version
    }
}

/// Seals one direction of one session: `M`s into `enc` envelopes, under counter nonces of 8
/// random prefix bytes and a 4-byte big-endian counter, at most [`MAX_MESSAGES_PER_KEY`].
///
/// A sealer is handed out once per key by [`ClientKeys`](crate::ClientKeys) /
/// [`ServerKeys`](crate::ServerKeys) (or built from raw bytes in [`hazmat`](crate::hazmat)).
/// It refuses messages of another session, messages without a `seq`, and lines longer than
/// its line limit (by default [`DEFAULT_MAX_LINE_LENGTH`], what a reader of this crate
/// accepts), writing nothing for them.
pub struct Sealer<M> {
    key: SessionKey,
    nonces: CounterNonces,
    session: Option<SessionId>,
    max_line_length: usize,
    buf: WipeBuf,
    _message: PhantomData<fn(&M)>,
}

impl<M: Sealable> Sealer<M> {
    pub(crate) fn new(key: SessionKey, session: Option<SessionId>) -> Result<Self, Error> {
        Ok(Self {
            key,
            nonces: CounterNonces::new(MAX_MESSAGES_PER_KEY)?,
            session,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            buf: WipeBuf::default(),
            _message: PhantomData,
        })
    }

    /// The key id envelopes from this sealer carry.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The session this sealer seals for (`None` for a raw-key sealer before its first message).
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// How many messages this key has sealed.
    pub fn messages_sealed(&self) -> u64 {
        self.nonces.used()
    }

    /// The longest envelope line (without its `\n`) this sealer writes.
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// Sets the longest envelope line this sealer writes: match the reader's limit.
    pub fn set_max_line_length(&mut self, max_line_length: usize) {
        self.max_line_length = max_line_length;
    }

    /// Seals `message` into an `enc` envelope carrying its `sessionId` and `seq`.
    pub fn seal(&mut self, message: &M) -> Result<EncryptedEnvelope, Error> {
        let result = self.seal_buf(message).map(|(seq, nonce)| {
            envelope::build(
                message.protocol_version(),
                message.session_id(),
                seq,
                self.key.kid(),
                &nonce,
                self.buf.as_mut_vec(),
            )
        });
        self.buf.wipe();
        result
    }

    /// Seals `message` and appends its envelope to `out` as one NDJSON line (compact JSON and
    /// `\n`, byte for byte what serializing the [`EncryptedEnvelope`] gives), encoding the
    /// base64 straight into `out`. On any error `out` is left as it was.
    pub fn seal_line(&mut self, message: &M, out: &mut BytesMut) -> Result<(), Error> {
        let start = out.len();
        let result = self
            .seal_buf(message)
            .and_then(|(seq, nonce)| self.finish_line(message, seq, &nonce, start, out));
        if result.is_err() {
            out.truncate(start);
        }
        self.buf.wipe();
        result
    }

    /// Like [`seal_line`](Self::seal_line), for a message already serialized: `json` must be
    /// `message`'s compact JSON (what `serde_json` writes for it, without a newline), as a
    /// caller that keeps each message's JSON beside it has it. The envelope takes its
    /// `sessionId`, `seq` and `protocolVersion` from `message`; the sealed bytes are `json`,
    /// so the message is not serialized again. An opener refuses an envelope whose sealed
    /// message does not carry the envelope's own session, seq and version, so bytes that do
    /// not match `message` never open as anything but a refusal. On any error `out` is left
    /// as it was.
    pub fn seal_json_line(
        &mut self,
        message: &M,
        json: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        let start = out.len();
        let result = self
            .seal_with(message, |buf| {
                buf.reserve(json.len());
                buf.as_mut_vec().extend_from_slice(json);
                Ok(())
            })
            .and_then(|(seq, nonce)| self.finish_line(message, seq, &nonce, start, out));
        if result.is_err() {
            out.truncate(start);
        }
        self.buf.wipe();
        result
    }

    /// Writes the envelope line around `self.buf` (sealed) to `out` and checks its length.
    fn finish_line(
        &mut self,
        message: &M,
        seq: u64,
        nonce: &crate::nonce::Nonce,
        start: usize,
        out: &mut BytesMut,
    ) -> Result<(), Error> {
        envelope::write_line(
            out,
            message.protocol_version(),
            message.session_id(),
            seq,
            self.key.kid(),
            nonce,
            self.buf.as_mut_vec(),
        )
        .map_err(|err| Error::Unencodable {
            at: Location::message(message.session_id().as_str(), Some(seq)),
            reason: reason(&err),
        })?;
        let len = out.len() - start - 1;
        if len > self.max_line_length {
            return Err(Error::LineTooLong {
                at: Location::message(message.session_id().as_str(), Some(seq)),
                len,
                limit: self.max_line_length,
            });
        }
        Ok(())
    }

    /// Checks, serializes and seals `message` into `self.buf`; returns its seq and nonce.
    fn seal_buf(&mut self, message: &M) -> Result<(u64, crate::nonce::Nonce), Error> {
        self.seal_with(message, |buf| {
            serde_json::to_writer(buf, message).map_err(|err| reason(&err))
        })
    }

    /// Checks `message`, lets `write` put its plaintext into `self.buf` and seals it there;
    /// returns its seq and nonce.
    fn seal_with(
        &mut self,
        message: &M,
        write: impl FnOnce(&mut WipeBuf) -> Result<(), String>,
    ) -> Result<(u64, crate::nonce::Nonce), Error> {
        let session = message.session_id();
        let at = || Location::message(session.as_str(), message.seq());
        if let Some(ours) = &self.session {
            if ours != session {
                return Err(Error::SealFailed {
                    at: at(),
                    reason: format!("this key belongs to session {}", quote(ours.as_str())).into(),
                });
            }
        }
        let Some(seq) = message.seq() else {
            return Err(Error::SealFailed {
                at: at(),
                reason: format!("a {} needs a seq to be sealed", M::NAME).into(),
            });
        };
        self.buf.start();
        write(&mut self.buf).map_err(|reason| Error::Unencodable { at: at(), reason })?;
        // The line holds at least the base64 of `plaintext || tag`: refuse before spending a
        // nonce when that alone is over the limit.
        let base64_len = (self.buf.as_mut_vec().len() + TAG_LEN).div_ceil(3) * 4;
        if base64_len > self.max_line_length {
            return Err(Error::LineTooLong {
                at: at(),
                len: base64_len,
                limit: self.max_line_length,
            });
        }
        let Some(nonce) = self.nonces.next() else {
            return Err(Error::KeyExpired {
                kid: quote(self.key.kid()),
                limit: MAX_MESSAGES_PER_KEY,
            });
        };
        self.buf.reserve(TAG_LEN);
        self.key
            .seal_in_place(&nonce, self.buf.as_mut_vec())
            .map_err(|err| match err {
                Error::SealFailed { reason, .. } => Error::SealFailed { at: at(), reason },
                other => other,
            })?;
        if self.session.is_none() {
            self.session = Some(session.clone());
        }
        Ok((seq, nonce))
    }

    #[cfg(test)]
    pub(crate) fn set_messages_sealed_for_test(&mut self, count: u64) {
        self.nonces.set_used_for_test(count);
    }

    #[cfg(test)]
    pub(crate) fn resting_buffer(&self) -> &[u8] {
        self.buf.resting_bytes()
    }
}

impl<M> fmt::Debug for Sealer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("kid", &self.key.kid())
            .field("session", &self.session.as_ref().map(SessionId::as_str))
            .field("messages_sealed", &self.nonces.used())
            .finish_non_exhaustive()
    }
}

/// Opens one direction of one session: `enc` envelopes back into `M`s.
///
/// An envelope opens only if it belongs to this opener's session, names its key (unless
/// built without the check in [`hazmat`](crate::hazmat)), authenticates, comes after the
/// last `seq` accepted, uses a nonce never accepted before, and holds a message with the
/// envelope's own `sessionId`, `seq` and `protocolVersion`. A refused envelope changes
/// nothing, so the next genuine one still opens. Decrypted bytes are wiped before `open`
/// returns, whatever it returns.
pub struct Opener<M> {
    key: SessionKey,
    check_kid: bool,
    guard: NonceGuard,
    session: Option<SessionId>,
    last_seq: Option<u64>,
    buf: WipeBuf,
    _message: PhantomData<fn() -> M>,
}

impl<M: Sealable> Opener<M> {
    pub(crate) fn new(key: SessionKey, session: Option<SessionId>, check_kid: bool) -> Self {
        Self {
            key,
            check_kid,
            guard: NonceGuard::default(),
            session,
            last_seq: None,
            buf: WipeBuf::default(),
            _message: PhantomData,
        }
    }

    /// The key id envelopes to this opener must carry.
    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    /// The session this opener opens for (`None` for a raw-key opener before its first
    /// authentic envelope).
    pub fn session_id(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// The `seq` of the last envelope accepted; the next must be greater.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Opens an `enc` envelope into the message it carries.
    pub fn open(&mut self, envelope: &EncryptedEnvelope) -> Result<M, Error> {
        let result = self.open_inner(envelope).map(|(message, _)| message);
        self.buf.wipe();
        result
    }

    /// [`open`](Self::open), also returning the plaintext JSON the message was read from
    /// (authentic, UTF-8, a valid message), so a caller can pass it on without writing the
    /// message again. The copy is the caller's: unlike the opener's own buffer it is not
    /// wiped, like the message itself.
    pub fn open_with_json(&mut self, envelope: &EncryptedEnvelope) -> Result<(M, Bytes), Error> {
        let result = self.open_inner(envelope).map(|(message, len)| {
            (
                message,
                Bytes::copy_from_slice(&self.buf.as_mut_vec()[..len]),
            )
        });
        self.buf.wipe();
        result
    }

    /// The message, and the length of its plaintext at the start of `self.buf`.
    fn open_inner(&mut self, sealed: &EncryptedEnvelope) -> Result<(M, usize), Error> {
        let at = || Location::message(sealed.session_id.as_str(), Some(sealed.seq));
        if let Some(ours) = &self.session {
            if *ours != sealed.session_id {
                return Err(Error::WrongSession {
                    at: at(),
                    expected: quote(ours.as_str()),
                });
            }
        }
        if self.check_kid && sealed.payload.kid != self.key.kid() {
            return Err(Error::KeyIdMismatch {
                at: at(),
                expected: quote(self.key.kid()),
                found: quote(&sealed.payload.kid),
            });
        }
        let failed = |why: &'static str| Error::DecryptionFailed {
            at: at(),
            reason: why.into(),
        };
        let nonce = envelope::read_nonce(&sealed.payload).map_err(failed)?;
        envelope::read_ciphertext(&sealed.payload, &mut self.buf).map_err(failed)?;
        // Authentication comes first, so a forged envelope is reported as a failed
        // decryption: only an authentic one can claim a replay or an expired key.
        let len = self
            .key
            .open_in_place(&nonce, self.buf.as_mut_vec())
            .map_err(|err| match err {
                Error::DecryptionFailed { reason, .. } => {
                    Error::DecryptionFailed { at: at(), reason }
                }
                other => other,
            })?
            .len();
        if let Some(last) = self.last_seq {
            if sealed.seq <= last {
                return Err(Error::Replay {
                    at: at(),
                    reason: format!(
                        "seq {} is not after the last one accepted, {last}",
                        sealed.seq
                    )
                    .into(),
                });
            }
        }
        self.guard
            .check(&nonce, MAX_MESSAGES_PER_KEY)
            .map_err(|refusal| match refusal {
                Refusal::PastLimit => Error::KeyExpired {
                    kid: quote(self.key.kid()),
                    limit: MAX_MESSAGES_PER_KEY,
                },
                Refusal::Seen | Refusal::TooOld => Error::Replay {
                    at: at(),
                    reason: refusal.reason().into(),
                },
            })?;
        // UTF-8 is checked over the whole plaintext, as the NDJSON layer checks a whole line:
        // `from_slice` alone would let bad bytes through inside fields it skips.
        let plaintext = std::str::from_utf8(&self.buf.as_mut_vec()[..len]).map_err(|err| {
            Error::DecryptionFailed {
                at: at(),
                reason: format!("the decrypted payload is not UTF-8: {err}").into(),
            }
        })?;
        let message: M =
            serde_json::from_str(plaintext).map_err(|err| Error::DecryptionFailed {
                at: at(),
                reason: format!(
                    "the decrypted payload is not a valid {}: {}",
                    M::NAME,
                    reason(&err)
                )
                .into(),
            })?;
        if message.session_id() != &sealed.session_id
            || message.seq() != Some(sealed.seq)
            || message.protocol_version() != sealed.protocol_version
        {
            let seq = message
                .seq()
                .map_or_else(|| "no seq".to_owned(), |seq| format!("seq {seq}"));
            return Err(Error::EnvelopeMismatch {
                at: at(),
                inner: format!(
                    "a {} for session {}, {seq}, protocol version {} (outer protocol version {})",
                    M::NAME,
                    quote(message.session_id().as_str()),
                    message.protocol_version(),
                    sealed.protocol_version,
                ),
            });
        }
        self.guard.record(&nonce);
        self.last_seq = Some(sealed.seq);
        if self.session.is_none() {
            self.session = Some(sealed.session_id.clone());
        }
        Ok((message, len))
    }

    #[cfg(test)]
    pub(crate) fn resting_buffer(&self) -> &[u8] {
        self.buf.resting_bytes()
    }
}

impl<M> fmt::Debug for Opener<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("kid", &self.key.kid())
            .field("session", &self.session.as_ref().map(SessionId::as_str))
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use enclave_types::{EventPayload, ProtocolVersion, StdoutPayload};

    use super::*;
    use crate::aead::KEY_LEN;
    use crate::hazmat;

    const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

    fn session(name: &str) -> SessionId {
        SessionId::new(format!("s_{name}")).unwrap()
    }

    fn event(session: &SessionId, seq: u64, text: &str) -> StreamEvent {
        StreamEvent::new(
            session.clone(),
            seq,
            EventPayload::from(StdoutPayload::new(text)),
        )
    }

    /// A server's sealer and the client's opener for one session, under fixed keys.
    fn pair(session: &SessionId) -> (Sealer<StreamEvent>, Opener<StreamEvent>) {
        let (sealer, _) = hazmat::server_keys(session, "k_test", &[1; KEY_LEN], &KEY)
            .unwrap()
            .into_ciphers()
            .unwrap();
        let (_, opener) = hazmat::client_keys(session, "k_test", &[1; KEY_LEN], &KEY)
            .unwrap()
            .into_ciphers()
            .unwrap();
        (sealer, opener)
    }

    fn raw_key() -> SessionKey {
        SessionKey::new("k_test", &KEY).unwrap()
    }

    #[test]
    fn sealer_refuses_past_the_message_limit_and_never_wraps() {
        let s = session("limit");
        let (mut sealer, _) = pair(&s);
        sealer.set_messages_sealed_for_test(MAX_MESSAGES_PER_KEY - 1);
        let last = sealer.seal(&event(&s, 1, "last")).unwrap();
        let nonce = STANDARD.decode(&last.payload.nonce_b64).unwrap();
        assert_eq!(&nonce[8..], &((1u32 << 30) - 1).to_be_bytes());
        for seq in 2..5 {
            let err = sealer.seal(&event(&s, seq, "one too many")).unwrap_err();
            assert_eq!(err.code(), "ENCRYPTION_KEY_EXPIRED");
            assert!(err.to_string().contains("k_test"), "{err}");
        }
        assert_eq!(sealer.messages_sealed(), MAX_MESSAGES_PER_KEY);
    }

    #[test]
    fn sealing_pre_serialized_json_gives_the_line_seal_line_gives() {
        let s = session("json");
        let (mut by_message, mut opener_a) = pair(&s);
        let (mut by_json, mut opener) = pair(&s);
        for seq in 1..=3 {
            let message = event(&s, seq, "déjà \"vu\"");
            let json = serde_json::to_vec(&message).unwrap();
            let mut a = BytesMut::new();
            let mut b = BytesMut::from(&b"kept"[..]);
            by_message.seal_line(&message, &mut a).unwrap();
            by_json.seal_json_line(&message, &json, &mut b).unwrap();
            // Appended after what was there; the same line but for the (random) nonce
            // prefix and so the ciphertext.
            assert_eq!(&b[..4], b"kept");
            assert_eq!(a.len(), b.len() - 4);
            let first: EncryptedEnvelope = serde_json::from_slice(&a).unwrap();
            let envelope: EncryptedEnvelope = serde_json::from_slice(&b[4..]).unwrap();
            assert_eq!(
                (&first.session_id, first.seq, &first.payload.kid),
                (&envelope.session_id, envelope.seq, &envelope.payload.kid)
            );
            assert_eq!(opener_a.open(&first).unwrap(), message);
            assert_eq!(opener.open(&envelope).unwrap(), message);
            assert!(by_json.resting_buffer().iter().all(|&byte| byte == 0));
        }
        // Too long: nothing written, no nonce spent.
        by_json.set_max_line_length(64);
        let message = event(&s, 4, "four");
        let json = serde_json::to_vec(&message).unwrap();
        let mut out = BytesMut::from(&b"kept"[..]);
        let err = by_json
            .seal_json_line(&message, &json, &mut out)
            .unwrap_err();
        assert!(matches!(err, Error::LineTooLong { .. }), "{err}");
        assert_eq!(&out[..], b"kept");
        assert_eq!(by_json.messages_sealed(), 3);
    }

    #[test]
    fn a_replayed_envelope_is_refused_and_the_next_genuine_one_opens() {
        let s = session("replay");
        let (mut sealer, mut opener) = pair(&s);
        let first = sealer.seal(&event(&s, 1, "once")).unwrap();
        let second = sealer.seal(&event(&s, 2, "twice")).unwrap();
        assert_eq!(opener.open(&first).unwrap(), event(&s, 1, "once"));
        let err = opener.open(&first).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE", "{err}");
        assert_eq!(
            err.location(),
            Some(&Location::message("s_replay", Some(1)))
        );
        assert_eq!(opener.open(&second).unwrap(), event(&s, 2, "twice"));
        assert_eq!(opener.last_seq(), Some(2));
    }

    #[test]
    fn seq_must_increase_whatever_the_nonces_say() {
        let s = session("order");
        let (mut sealer, mut opener) = pair(&s);
        let early = sealer.seal(&event(&s, 3, "three")).unwrap();
        let later = sealer.seal(&event(&s, 5, "five")).unwrap();
        opener.open(&later).unwrap();
        // Authentic, never opened, fresh nonce: refused because seq 3 is not after 5.
        let err = opener.open(&early).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_NONCE_REUSE");
        assert!(err.to_string().contains("seq 3 is not after"), "{err}");
    }

    /// The bypasses a review found, each with the opener fed > 1,024 envelopes between the
    /// capture and the replay: the counter-0 line dropped, a second sealer under the same
    /// key, and the TypeScript peer's random nonces.
    #[test]
    fn no_replay_after_many_envelopes_whatever_the_nonce_style() {
        let s = session("bypass");
        // Counter 0 dropped.
        let (mut sealer, mut opener) = pair(&s);
        let sealed: Vec<_> = (1..=1500)
            .map(|seq| sealer.seal(&event(&s, seq, "x")).unwrap())
            .collect();
        for envelope in &sealed[1..] {
            opener.open(envelope).unwrap();
        }
        for captured in [&sealed[1], &sealed[2], &sealed[400]] {
            assert_eq!(
                opener.open(captured).unwrap_err().code(),
                "ENCRYPTION_NONCE_REUSE"
            );
        }

        // Two sealers under one key (only the hazmat module can build them).
        let mut first = hazmat::sealer::<StreamEvent>(raw_key()).unwrap();
        let mut second = hazmat::sealer::<StreamEvent>(raw_key()).unwrap();
        let mut opener = hazmat::opener::<StreamEvent>(raw_key(), true);
        let mut captured = None;
        for seq in 1..=2100 {
            let sealer = if seq % 2 == 0 {
                &mut first
            } else {
                &mut second
            };
            let envelope = sealer.seal(&event(&s, seq, "y")).unwrap();
            opener.open(&envelope).unwrap();
            if seq == 2 {
                captured = Some(envelope);
            }
        }
        let captured = captured.unwrap();
        assert_eq!(
            opener.open(&captured).unwrap_err().code(),
            "ENCRYPTION_NONCE_REUSE"
        );

        // Random nonces, as the TypeScript peer may send them.
        let key = raw_key();
        let mut opener = hazmat::opener::<StreamEvent>(raw_key(), true);
        let random_envelope = |seq: u64| {
            let mut nonce = [0u8; crate::NONCE_LEN];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).unwrap();
            let plaintext = serde_json::to_vec(&event(&s, seq, "z")).unwrap();
            crate::envelope::build(
                enclave_types::PROTOCOL_VERSION,
                &s,
                seq,
                "k_test",
                &nonce,
                &key.seal(&nonce, &plaintext).unwrap(),
            )
        };
        let envelopes: Vec<_> = (1..=1100).map(random_envelope).collect();
        for envelope in &envelopes {
            opener.open(envelope).unwrap();
        }
        assert_eq!(
            opener.open(&envelopes[0]).unwrap_err().code(),
            "ENCRYPTION_NONCE_REUSE"
        );
    }

    #[test]
    fn an_authentic_envelope_of_another_session_is_refused() {
        let ours = session("ours");
        let theirs = session("theirs");
        let (_, mut opener) = pair(&ours);
        // The same key material, sealing for another session (a raw-key sealer).
        let mut foreign = hazmat::sealer::<StreamEvent>(raw_key()).unwrap();
        let envelope = foreign.seal(&event(&theirs, 1, "elsewhere")).unwrap();
        let err = opener.open(&envelope).unwrap_err();
        assert!(matches!(err, Error::WrongSession { .. }), "{err}");
        assert_eq!(err.code(), "ENCRYPTION_DECRYPTION_FAILED");
        // A session-bound sealer refuses to seal for another session at all.
        let (mut sealer, _) = pair(&ours);
        let err = sealer.seal(&event(&theirs, 1, "elsewhere")).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_SEAL_FAILED");
        assert_eq!(sealer.messages_sealed(), 0, "no nonce spent on a refusal");
    }

    #[test]
    fn the_outer_protocol_version_must_match_the_inner_one() {
        let s = session("version");
        let (mut sealer, mut opener) = pair(&s);
        let mut envelope = sealer.seal(&event(&s, 1, "v2")).unwrap();
        envelope.protocol_version = ProtocolVersion::V1;
        let err = opener.open(&envelope).unwrap_err();
        assert!(matches!(err, Error::EnvelopeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("protocol version"), "{err}");
        // Nothing was accepted: the untouched envelope still opens.
        envelope.protocol_version = enclave_types::PROTOCOL_VERSION;
        opener.open(&envelope).unwrap();
    }

    #[test]
    fn a_relabelled_kid_is_refused_when_checked_and_ignored_when_not() {
        let s = session("kid");
        let (mut sealer, mut opener) = pair(&s);
        let mut envelope = sealer.seal(&event(&s, 1, "k")).unwrap();
        envelope.payload.kid = "k_forged".into();
        assert!(matches!(
            opener.open(&envelope).unwrap_err(),
            Error::KeyIdMismatch { .. }
        ));
        let mut lenient = hazmat::opener::<StreamEvent>(raw_key(), false);
        assert_eq!(lenient.open(&envelope).unwrap(), event(&s, 1, "k"));
    }

    /// Decrypted bytes must not stay behind in the reused buffer: after a success, and after
    /// a refused replay (which was decrypted before it was refused).
    #[test]
    fn plaintext_is_wiped_after_every_open_and_seal() {
        let s = session("wipe");
        let (mut sealer, mut opener) = pair(&s);
        let secret = "attack at dawn ".repeat(64);
        let envelope = sealer.seal(&event(&s, 1, &secret)).unwrap();
        assert!(sealer.resting_buffer().len() > secret.len());
        assert!(sealer.resting_buffer().iter().all(|&b| b == 0));

        opener.open(&envelope).unwrap();
        let resting = opener.resting_buffer();
        assert!(
            resting.len() > secret.len(),
            "the wiped message stays in view"
        );
        assert!(
            resting.iter().all(|&b| b == 0),
            "plaintext left in the opener"
        );

        assert!(opener.open(&envelope).is_err());
        assert!(opener.resting_buffer().iter().all(|&b| b == 0));
    }

    #[test]
    fn a_message_without_seq_cannot_be_sealed() {
        let s = session("noseq");
        let (mut sealer, _) = hazmat::client_keys(&s, "k_test", &KEY, &KEY)
            .unwrap()
            .into_ciphers()
            .unwrap();
        let message = RuntimeChannelMessage::new(
            s,
            enclave_types::RuntimeChannelPayload::Cancel(enclave_types::CancelPayload::default()),
        );
        let err = sealer.seal(&message).unwrap_err();
        assert_eq!(err.code(), "ENCRYPTION_SEAL_FAILED");
        assert!(err.to_string().contains("needs a seq"), "{err}");
    }

    #[test]
    fn debug_output_names_the_key_id_only() {
        let s = session("debug");
        let (sealer, opener) = pair(&s);
        let key = SessionKey::new("k_visible", &[0xab; KEY_LEN]).unwrap();
        for text in [
            format!("{key:?}"),
            format!("{sealer:?}"),
            format!("{opener:?}"),
        ] {
            assert!(text.contains("k_"), "{text}");
            assert!(!text.to_lowercase().contains("abab"), "{text}");
            assert!(!text.contains("171") && !text.contains("[7"), "{text}");
        }
        assert_eq!(format!("{key:?}"), "SessionKey { kid: \"k_visible\", .. }");
    }
}

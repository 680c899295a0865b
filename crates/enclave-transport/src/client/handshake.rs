//! The client's half of the encryption handshake, once for every carrier: starting it for the
//! mode the client wants, the offer it sends, and finishing it with the server's answer —
//! verified against a pinned identity key first, refused as a downgrade when encryption is
//! required and the answer has no `ServerHello`. HTTP ([`super::http`]), WebSocket
//! ([`super::ws`]) and the byte-stream carriers ([`crate::carrier`]) differ only in where the
//! hellos travel; what is done with them is here.

use enclave_crypto::{ClientEncryption, ClientHandshake, SessionInitDigest, VerifyingKey};
use enclave_types::{EncryptionMode, ServerHello, SessionId};

use crate::wire::EncryptionOffer;
use crate::Error;

/// A fresh handshake for a client that wants `mode`: none when it is `Disabled`.
pub(crate) fn start(
    mode: EncryptionMode,
    session: Option<&SessionId>,
) -> Result<Option<ClientHandshake>, Error> {
    if mode == EncryptionMode::Disabled {
        return Ok(None);
    }
    ClientHandshake::start()
        .map(Some)
        .map_err(|source| Error::encryption(session, source))
}

/// The offer a request carries for `mode` with `handshake`'s `ClientHello`.
pub(crate) fn offer(mode: EncryptionMode, handshake: &ClientHandshake) -> EncryptionOffer {
    EncryptionOffer::new(mode, Some(handshake.client_hello().clone()))
}

/// What the client asked for and checks the answer against.
pub(crate) struct Expect<'a> {
    /// The mode the client wants: `Required` refuses an answer without a `ServerHello`.
    pub(crate) mode: EncryptionMode,
    /// The mode the server's signature binds (`required` for every resume, else the offer's).
    pub(crate) bound: EncryptionMode,
    /// The server's pinned identity key; `None` when there is none, or when the caller has
    /// already verified the line that carried the hello (an HTTP create's `session_init`).
    pub(crate) pinned: Option<&'a VerifyingKey>,
    /// Where the hello was looked for, for the downgrade error (`opened carries no
    /// ServerHello`, …).
    pub(crate) missing: &'static str,
}

/// Finishes `handshake` with the answer's `hello` and installs the session keys in `layer`.
///
/// - Both there: the hello is verified against `expect.pinned` over the transcript of
///   `session_id`, `expect.bound` and no `session_init` digest (a signature failure is
///   [`Error::ServerIdentity`]), then the keys are derived.
/// - A hello without a handshake: [`Error::Protocol`] (the server answered an offer that
///   was never made).
/// - No hello: [`Error::EncryptionDowngrade`] when `expect.mode` is `Required`, else the
///   connection stays plaintext.
pub(crate) fn finish(
    handshake: Option<ClientHandshake>,
    hello: Option<&ServerHello>,
    session_id: &SessionId,
    expect: &Expect<'_>,
    layer: &mut ClientEncryption,
) -> Result<(), Error> {
    match (handshake, hello) {
        (Some(handshake), Some(hello)) => {
            let keys = match expect.pinned {
                Some(pinned) => handshake
                    .finish_verified(
                        hello,
                        session_id,
                        expect.bound,
                        SessionInitDigest::none(),
                        pinned,
                    )
                    .map_err(|source| Error::identity(session_id, source))?,
                None => handshake
                    .finish(hello, session_id)
                    .map_err(|source| Error::encryption(Some(session_id), source))?,
            };
            let (sealer, opener) = keys
                .into_ciphers()
                .map_err(|source| Error::encryption(Some(session_id), source))?;
            layer.set_ciphers(sealer, opener);
            Ok(())
        }
        (None, Some(_)) => Err(Error::protocol(
            Some(session_id),
            "the answer carries a ServerHello, but no ClientHello was offered",
        )),
        (_, None) if expect.mode == EncryptionMode::Required => Err(Error::EncryptionDowngrade {
            session: session_id.as_str().to_owned(),
            reason: expect.missing,
        }),
        (_, None) => Ok(()),
    }
}

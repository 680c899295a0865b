//! Per-connection encryption: the handshake a request offers, decided against the server's
//! policy, and the registry that lets `POST /sessions/:id/messages` open envelopes sealed
//! under the key of the session's current HTTP stream connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use enclave_crypto::{accept_client_hello, Opener, Sealer, SessionInitDigest, SigningKey};
use enclave_types::{
    ClientHello, EncryptionConfig, EncryptionMode, RuntimeChannelMessage, ServerHello, SessionId,
    StreamEvent,
};

use crate::service::{Refusal, RefusalReason};
use crate::wire::EncryptionOffer;

/// The outcome of a successful handshake on one connection.
pub(crate) struct Handshake {
    /// The client's hello as received: half of what a server identity signature binds.
    pub(crate) client_hello: ClientHello,
    pub(crate) server_hello: ServerHello,
    pub(crate) key_id: String,
    pub(crate) sealer: Sealer<StreamEvent>,
    pub(crate) opener: Opener<RuntimeChannelMessage>,
}

impl Handshake {
    /// What `session_init.payload.encryption` says for this handshake.
    pub(crate) fn encryption_config(&self) -> EncryptionConfig {
        let mut config = EncryptionConfig::new(true);
        config.key_id = Some(self.key_id.clone());
        config.server_hello = Some(self.server_hello.clone());
        config
    }

    /// Signs the `ServerHello` with the server's identity key, for the routes where it
    /// travels on its own (`X-Enclave-Server-Hello` on an HTTP resume, `opened` on
    /// WebSocket): no plaintext `session_init` follows it, so the digest is
    /// [`SessionInitDigest::none`]. `mode` is the mode the transcript binds (see
    /// [`ServerConfig::signing_key`](super::ServerConfig::signing_key)).
    pub(crate) fn sign_hello(
        &mut self,
        key: &SigningKey,
        session_id: &SessionId,
        mode: EncryptionMode,
    ) -> Result<(), Refusal> {
        let transcript = enclave_crypto::HelloTranscript::new(
            session_id,
            &self.client_hello,
            mode,
            SessionInitDigest::none(),
        );
        key.sign_server_hello(&mut self.server_hello, &transcript)
            .map_err(|err| {
                tracing::error!(session = %session_id, code = %err.code(), "cannot sign the ServerHello: {err}");
                Refusal::new(
                    RefusalReason::Unavailable,
                    format!("session {session_id}: cannot sign the ServerHello: {err}"),
                )
            })
    }
}

/// What the `session_init` of an encrypted `POST /sessions` is signed with: the server's key
/// and the client's request as received.
pub(crate) struct InitSigner {
    pub(crate) key: Arc<SigningKey>,
    pub(crate) client_hello: ClientHello,
    pub(crate) mode: EncryptionMode,
}

impl InitSigner {
    /// A signed copy of `event` (the `session_init` about to be written in plaintext); the
    /// session layer keeps its unsigned copy.
    pub(crate) fn sign(&self, event: &StreamEvent) -> Result<StreamEvent, enclave_crypto::Error> {
        let mut signed = event.clone();
        self.key
            .sign_session_init(&mut signed, &self.client_hello, self.mode)?;
        Ok(signed)
    }
}

/// Decides whether a connection is encrypted, from the client's `offer` (its mode and
/// `ClientHello`; an HTTP resume's `X-Enclave-Client-Hello` is an offer without a mode).
///
/// - Policy `Disabled`: never; a client whose mode is `required` is refused.
/// - A client mode of `disabled` means its hello (if any) is ignored.
/// - A hello that `accept_client_hello` refuses is unusable (logged).
/// - Without a usable hello, policy `Required` or client mode `required` is refused with
///   `ENCRYPTION_REQUIRED`; otherwise the connection is plaintext.
///
/// With `sign` (the server's identity key and the mode the transcript binds: `required` for
/// every resume, the offer's mode for a create), the `ServerHello` of an encrypted
/// connection is signed for the routes where it travels on its own (see
/// [`Handshake::sign_hello`]); an HTTP create signs its `session_init` instead
/// ([`InitSigner`]) and passes `None`.
pub(crate) fn negotiate(
    policy: EncryptionMode,
    offer: Offer<'_>,
    session_id: &SessionId,
    sign: Option<(&SigningKey, EncryptionMode)>,
) -> Result<Option<Handshake>, Refusal> {
    let mut handshake = decide(policy, offer.mode, offer.hello, session_id)?;
    if let (Some((key, bound)), Some(handshake)) = (sign, handshake.as_mut()) {
        handshake.sign_hello(key, session_id, bound)?;
    }
    Ok(handshake)
}

/// What a client offered: its mode (none where the request has no mode field) and hello.
#[derive(Clone, Copy, Default)]
pub(crate) struct Offer<'a> {
    pub(crate) mode: Option<EncryptionMode>,
    pub(crate) hello: Option<&'a ClientHello>,
}

impl<'a> Offer<'a> {
    /// The `encryption` of a create body or a WebSocket/byte-stream `open`.
    pub(crate) fn of(offer: Option<&'a EncryptionOffer>) -> Self {
        offer.map_or_else(Self::default, |offer| Self {
            mode: Some(offer.mode),
            hello: offer.client_hello.as_ref(),
        })
    }
}

fn decide(
    policy: EncryptionMode,
    client_mode: Option<EncryptionMode>,
    hello: Option<&ClientHello>,
    session_id: &SessionId,
) -> Result<Option<Handshake>, Refusal> {
    let client_requires = client_mode == Some(EncryptionMode::Required);
    if policy == EncryptionMode::Disabled {
        return if client_requires {
            Err(Refusal::new(
                RefusalReason::EncryptionRequired,
                format!("session {session_id}: the client requires encryption and this server does not encrypt"),
            ))
        } else {
            Ok(None)
        };
    }
    let hello = hello.filter(|_| client_mode != Some(EncryptionMode::Disabled));
    let why_unusable = match hello {
        Some(hello) => match accept_client_hello(hello, session_id) {
            Ok((server_hello, keys)) => {
                let key_id = keys.key_id().to_owned();
                let (sealer, opener) = keys.into_ciphers().map_err(|err| {
                    Refusal::new(
                        RefusalReason::Unavailable,
                        format!("session {session_id}: cannot set up the session keys: {err}"),
                    )
                })?;
                return Ok(Some(Handshake {
                    client_hello: hello.clone(),
                    server_hello,
                    key_id,
                    sealer,
                    opener,
                }));
            }
            Err(err) => {
                tracing::warn!(session = %session_id, code = %err.code(), "unusable ClientHello: {err}");
                format!("the ClientHello was refused ({}): {err}", err.code())
            }
        },
        None => "no ClientHello was offered".to_owned(),
    };
    if policy == EncryptionMode::Required || client_requires {
        Err(Refusal::new(
            RefusalReason::EncryptionRequired,
            format!("session {session_id}: encryption is required and {why_unusable}"),
        ))
    } else {
        Ok(None)
    }
}

/// The opener of one session's current encrypted HTTP stream connection, shared with the
/// messages route.
pub(crate) type SharedOpener = Arc<Mutex<Opener<RuntimeChannelMessage>>>;

/// Which HTTP stream connection currently speaks for each encrypted session: connection
/// state, not session state (it dies with the connection).
#[derive(Default)]
pub(crate) struct OpenerRegistry {
    current: Mutex<HashMap<SessionId, (u64, SharedOpener)>>,
    next_connection: AtomicU64,
}

impl OpenerRegistry {
    /// Makes `opener` (or, with `None`, no opener: a plaintext connection) the session's
    /// current one, replacing any older connection's. The guard forgets it when the
    /// connection ends, unless a newer connection replaced it first.
    pub(crate) fn attach(
        self: &Arc<Self>,
        session_id: &SessionId,
        opener: Option<SharedOpener>,
    ) -> RegistryGuard {
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let mut current = self.lock();
        match opener {
            Some(opener) => {
                current.insert(session_id.clone(), (connection, opener));
            }
            None => {
                current.remove(session_id);
            }
        }
        RegistryGuard {
            registry: Arc::clone(self),
            session_id: session_id.clone(),
            connection,
        }
    }

    /// The opener of the session's current encrypted stream connection, if there is one.
    pub(crate) fn opener(&self, session_id: &SessionId) -> Option<SharedOpener> {
        self.lock()
            .get(session_id)
            .map(|(_, opener)| Arc::clone(opener))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, (u64, SharedOpener)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a connection's entry from the [`OpenerRegistry`] when the connection ends.
pub(crate) struct RegistryGuard {
    registry: Arc<OpenerRegistry>,
    session_id: SessionId,
    connection: u64,
}

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        let mut current = self.registry.lock();
        if current
            .get(&self.session_id)
            .is_some_and(|(connection, _)| *connection == self.connection)
        {
            current.remove(&self.session_id);
        }
    }
}

//! Server identity: a long-term ECDSA P-256 key signs each `ServerHello` over the handshake
//! transcript, so a client that pins the server's public key detects a man in the middle, a
//! downgrade and a redirect before it accepts any envelope.
//!
//! Without a pinned key the ECDH is anonymous: whoever terminates TLS (or sits in the middle
//! of a plaintext connection) can answer the `ClientHello` with its own key. With one, the
//! client verifies `signatureB64` against a transcript it rebuilds from **its own** values —
//! the session id it knows, the `ClientHello` it sent, the mode it asked for, the
//! `session_init` line it received — never from values the server echoes back.
//!
//! The docs of [`HelloTranscript`] lay out the transcript byte by byte; those of
//! [`SigningKey`] and [`VerifyingKey`] say which key files are accepted.

use std::borrow::Cow;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use enclave_types::{
    ClientHello, EncryptionMode, EventPayload, ServerHello, SessionId, StreamEvent,
};
use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use zeroize::Zeroizing;

use crate::ecdh::{PublicKey, PUBLIC_KEY_LEN};
use crate::error::{reason, Error, Location};
use crate::pem;

/// The domain separator that opens every transcript.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"enclavejs-server-hello-v1";

/// Length of a signature: `r || s`, 32 bytes each, as Web Crypto encodes ECDSA P-256.
pub const SIGNATURE_LEN: usize = 64;

/// The DER prefix of every P-256 SPKI: `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 },
/// BIT STRING (0 unused bits) }`; the 65-byte point follows.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of a P-256 SPKI document in DER.
pub const SPKI_LEN: usize = SPKI_P256_PREFIX.len() + PUBLIC_KEY_LEN;

const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
const SIGNING_KEY: &str = "signing key";
const SERVER_KEY: &str = "server public key";

fn invalid(document: &'static str, reason: impl Into<Cow<'static, str>>) -> Error {
    Error::InvalidIdentityKey {
        document,
        reason: reason.into(),
    }
}

fn refused(reason: impl Into<Cow<'static, str>>) -> Error {
    Error::SignatureInvalid {
        reason: reason.into(),
    }
}

/// Reads a small PEM file, refusing anything longer than a key can be.
fn read_pem_file(path: &Path, document: &'static str) -> Result<Zeroizing<String>, Error> {
    let file = std::fs::File::open(path)
        .map_err(|err| invalid(document, format!("{}: {err}", path.display())))?;
    let mut text = Zeroizing::new(String::new());
    file.take(pem::MAX_PEM_LEN as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|err| invalid(document, format!("{}: {err}", path.display())))?;
    Ok(text)
}

/// A server's long-term ECDSA P-256 signing key.
///
/// - The signing key ([`SigningKey`]) is an unencrypted PKCS#8 v1 document in PEM
///   (`-----BEGIN PRIVATE KEY-----`), as `enclave keygen`, OpenSSL (`openssl genpkey -algorithm
///   EC -pkeyopt ec_paramgen_curve:P-256`) and Node (`generateKeyPairSync('ec', {namedCurve:
///   'P-256'})`, exported as `pkcs8`) write it. Accepted: algorithm `id-ecPublicKey` with the
///   named curve `prime256v1` (no explicit curve parameters), an `ECPrivateKey` of version 1
///   that **contains its public key** (`[1] publicKey`, which ring requires and checks against
///   the private key); its optional `[0] parameters`, if present, must name the same curve.
///   Refused, each with an error that says so: SEC1 `EC PRIVATE KEY` files, encrypted keys
///   (`ENCRYPTED PRIVATE KEY` or PEM headers), PKCS#8 v2 (`OneAsymmetricKey` with attributes
///   or a separate public key), and any other curve or algorithm.
/// - The public key ([`VerifyingKey`]) is an SPKI document in PEM (`-----BEGIN PUBLIC
///   KEY-----`): for P-256 always the 26-byte prefix
///   `30 59 30 13 06 07 2a 86 48 ce 3d 02 01 06 08 2a 86 48 ce 3d 03 01 07 03 42 00` followed
///   by the 65-byte uncompressed point `04 || x || y` (91 bytes of DER), as Web Crypto's
///   `exportKey('spki')` and OpenSSL write it. A compressed point is refused.
///
///
/// Holds its PKCS#8 document (wiped on drop) so it can be written back out; `Debug` shows the
/// public key only.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: VerifyingKey,
    rng: SystemRandom,
}

impl SigningKey {
    /// A fresh key from the system's randomness.
    pub fn generate() -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::RandomnessUnavailable {
                during: "generating a P-256 signing key",
            })?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// Imports an unencrypted PKCS#8 v1 P-256 key in DER (see the type's docs for exactly
    /// what is accepted).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).map_err(
            |err| {
                invalid(
                    SIGNING_KEY,
                    format!(
                        "not an unencrypted PKCS#8 v1 P-256 key that includes its public key \
                         ({err})"
                    ),
                )
            },
        )?;
        let public = VerifyingKey::from_point(pair.public_key().as_ref())?;
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
            public,
            rng,
        })
    }

    /// Imports a PKCS#8 key in PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(text: &str) -> Result<Self, Error> {
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(invalid(
                SIGNING_KEY,
                "an encrypted PKCS#8 key; decrypt it first (openssl pkcs8 -in KEY -out PLAIN)",
            ));
        }
        if text.contains("-----BEGIN EC PRIVATE KEY-----") {
            return Err(invalid(
                SIGNING_KEY,
                "a SEC1 \"EC PRIVATE KEY\", expected PKCS#8 \"PRIVATE KEY\" \
                 (convert it: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8)",
            ));
        }
        let der = pem::decode(PRIVATE_KEY_LABEL, text)
            .map_err(|err| invalid(SIGNING_KEY, err.describe(PRIVATE_KEY_LABEL)))?;
        Self::from_pkcs8_der(&der)
    }

    /// Reads a PKCS#8 PEM file; errors name the file.
    pub fn from_pkcs8_pem_file(path: &Path) -> Result<Self, Error> {
        let text = read_pem_file(path, SIGNING_KEY)?;
        Self::from_pkcs8_pem(&text).map_err(|err| match err {
            Error::InvalidIdentityKey { document, reason } => {
                invalid(document, format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// The key as PKCS#8 PEM, 64-character lines (wiped on drop).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        pem::encode(PRIVATE_KEY_LABEL, &self.pkcs8)
    }

    /// The matching public key, for clients to pin.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message`: 64 bytes `r || s`.
    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], Error> {
        let signature =
            self.pair
                .sign(&self.rng, message)
                .map_err(|_| Error::RandomnessUnavailable {
                    during: "signing a ServerHello",
                })?;
        signature
            .as_ref()
            .try_into()
            .map_err(|_| Error::HandshakeFailed {
                reason: "ring returned an ECDSA signature of unexpected length".into(),
            })
    }

    /// Signs `hello` over the transcript of `inputs` and this key, setting its
    /// `signatureB64` (any previous value is replaced, and not part of what is signed).
    pub fn sign_server_hello(
        &self,
        hello: &mut ServerHello,
        inputs: &HelloTranscript<'_>,
    ) -> Result<(), Error> {
        let transcript = inputs.to_bytes(hello, &self.public)?;
        let signature = self.sign(&transcript)?;
        hello.signature_b64 = Some(STANDARD.encode(signature));
        Ok(())
    }

    /// Signs the `ServerHello` inside a `session_init` event in place, binding the event
    /// itself ([`SessionInitDigest::of_event`]): the HTTP handshake, where the hello travels
    /// in `payload.encryption.serverHello`. `client_hello` and `mode` are the client's
    /// request as received; the session id is the event's.
    pub fn sign_session_init(
        &self,
        event: &mut StreamEvent,
        client_hello: &ClientHello,
        mode: EncryptionMode,
    ) -> Result<(), Error> {
        let digest = SessionInitDigest::of_event(event)?;
        let session_id = event.session_id.clone();
        let hello = server_hello_of(event)?;
        let mut signed = hello.clone();
        self.sign_server_hello(
            &mut signed,
            &HelloTranscript::new(&session_id, client_hello, mode, digest),
        )?;
        *server_hello_mut(event)? = signed;
        Ok(())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A server's long-term ECDSA P-256 public key: what a client pins.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    point: PublicKey,
}

impl VerifyingKey {
    /// Imports a 65-byte uncompressed point, checked to be on the curve.
    pub fn from_point(point: &[u8]) -> Result<Self, Error> {
        Ok(Self {
            point: PublicKey::from_bytes(point)?,
        })
    }

    /// Imports a P-256 SPKI document in DER (91 bytes).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let point = der
            .strip_prefix(&SPKI_P256_PREFIX[..])
            .filter(|point| point.len() == PUBLIC_KEY_LEN)
            .ok_or_else(|| {
                invalid(
                    SERVER_KEY,
                    "not a P-256 SubjectPublicKeyInfo with an uncompressed point \
                     (91 bytes of DER)",
                )
            })?;
        Self::from_point(point).map_err(|err| invalid(SERVER_KEY, err.to_string()))
    }

    /// Imports an SPKI document in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(text: &str) -> Result<Self, Error> {
        let der = pem::decode(PUBLIC_KEY_LABEL, text)
            .map_err(|err| invalid(SERVER_KEY, err.describe(PUBLIC_KEY_LABEL)))?;
        Self::from_spki_der(&der)
    }

    /// Reads an SPKI PEM file; errors name the file.
    pub fn from_spki_pem_file(path: &Path) -> Result<Self, Error> {
        let text = read_pem_file(path, SERVER_KEY)?;
        Self::from_spki_pem(&text).map_err(|err| match err {
            Error::InvalidIdentityKey { document, reason } => {
                invalid(document, format!("{}: {reason}", path.display()))
            }
            other => other,
        })
    }

    /// The 65-byte uncompressed point `04 || x || y`.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        self.point.as_bytes()
    }

    /// The SPKI document in DER: the fixed P-256 prefix, then the point.
    pub fn to_spki_der(&self) -> [u8; SPKI_LEN] {
        let mut der = [0u8; SPKI_LEN];
        der[..SPKI_P256_PREFIX.len()].copy_from_slice(&SPKI_P256_PREFIX);
        der[SPKI_P256_PREFIX.len()..].copy_from_slice(self.as_bytes());
        der
    }

    /// The SPKI document in PEM, 64-character lines, ending with a newline.
    pub fn to_spki_pem(&self) -> String {
        pem::encode(PUBLIC_KEY_LABEL, &self.to_spki_der()).to_string()
    }

    /// Checks `hello.signatureB64` against the transcript of `inputs` and this key.
    ///
    /// Refuses with `ENCRYPTION_SIGNATURE_VERIFICATION_FAILED` a hello without a signature
    /// (a key is pinned, so an unsigned hello is an impostor's), a signature that is not 64
    /// bytes of standard base64, and one that does not verify. Call it before using any key
    /// the hello leads to, with `inputs` built from the client's own values
    /// ([`ClientHandshake::transcript`](crate::ClientHandshake::transcript)).
    pub fn verify_server_hello(
        &self,
        hello: &ServerHello,
        inputs: &HelloTranscript<'_>,
    ) -> Result<(), Error> {
        let encoded = hello.signature_b64.as_deref().ok_or_else(|| {
            refused("the ServerHello has no signatureB64, but the server's key is pinned")
        })?;
        // 64 bytes are 88 base64 characters; refuse long input before decoding it.
        if encoded.len() != 4 * SIGNATURE_LEN.div_ceil(3) {
            return Err(refused(format!(
                "signatureB64 has {} characters, expected 88 (64 bytes r||s in base64)",
                encoded.len()
            )));
        }
        let signature = STANDARD
            .decode(encoded)
            .map_err(|_| refused("signatureB64 is not standard base64"))?;
        if signature.len() != SIGNATURE_LEN {
            return Err(refused("signatureB64 does not hold 64 bytes (r||s)"));
        }
        let transcript = inputs.to_bytes(hello, self)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.as_bytes())
            .verify(&transcript, &signature)
            .map_err(|_| {
                // The caller names the session (it passed it in `inputs`).
                refused(
                    "the signature does not verify under the pinned key: another signer, or \
                     a changed hello, mode or session_init",
                )
            })
    }

    /// Checks the `ServerHello` inside a received `session_init` event (the HTTP handshake)
    /// and returns it. `session_id`, `client_hello` and `mode` are the client's own: the
    /// session it asked for (or was told of in `X-Session-ID`), the hello it sent, the mode
    /// it asked for.
    pub fn verify_session_init<'e>(
        &self,
        event: &'e StreamEvent,
        session_id: &SessionId,
        client_hello: &ClientHello,
        mode: EncryptionMode,
    ) -> Result<&'e ServerHello, Error> {
        let digest = SessionInitDigest::of_event(event)?;
        let hello = server_hello_of(event)?;
        self.verify_server_hello(
            hello,
            &HelloTranscript::new(session_id, client_hello, mode, digest),
        )?;
        Ok(hello)
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifyingKey")
            .field(&self.point.to_base64())
            .finish()
    }
}

fn server_hello_of(event: &StreamEvent) -> Result<&ServerHello, Error> {
    match &event.payload {
        EventPayload::SessionInit(init) => init.encryption.server_hello.as_ref().ok_or_else(|| {
            refused(format!(
                "session_init of session {} carries no serverHello",
                crate::error::quote(event.session_id.as_str())
            ))
        }),
        _ => Err(not_session_init(event)),
    }
}

fn server_hello_mut(event: &mut StreamEvent) -> Result<&mut ServerHello, Error> {
    let session = crate::error::quote(event.session_id.as_str());
    match &mut event.payload {
        EventPayload::SessionInit(init) => init.encryption.server_hello.as_mut().ok_or_else(|| {
            refused(format!(
                "session_init of session {session} carries no serverHello"
            ))
        }),
        _ => Err(refused(format!(
            "expected a session_init event of session {session}"
        ))),
    }
}

fn not_session_init(event: &StreamEvent) -> Error {
    refused(format!(
        "expected a session_init event, found {} (session {}, seq {})",
        event.event_type().as_str(),
        crate::error::quote(event.session_id.as_str()),
        event.seq
    ))
}

/// SHA-256 of the plaintext `session_init` event the handshake travelled in, or of nothing
/// when it travelled elsewhere (see [`HelloTranscript`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionInitDigest([u8; SHA256_OUTPUT_LEN]);

impl SessionInitDigest {
    /// The digest of a `session_init` event: SHA-256 of its compact JSON as `enclave-types`
    /// writes it, with `payload.encryption.serverHello.signatureB64` removed.
    pub fn of_event(event: &StreamEvent) -> Result<Self, Error> {
        let EventPayload::SessionInit(init) = &event.payload else {
            return Err(not_session_init(event));
        };
        let mut unsigned = event.clone();
        if init.encryption.server_hello.is_some() {
            server_hello_mut(&mut unsigned)?.signature_b64 = None;
        }
        let json = serde_json::to_vec(&unsigned).map_err(|err| Error::Unencodable {
            at: Location::message(event.session_id.as_str(), Some(event.seq)),
            reason: reason(&err),
        })?;
        Ok(Self::of_bytes(&json))
    }

    /// The digest for handshakes without a plaintext `session_init` (WebSocket, HTTP
    /// resume): SHA-256 of the empty string.
    pub fn none() -> Self {
        Self::of_bytes(b"")
    }

    fn of_bytes(bytes: &[u8]) -> Self {
        let mut out = [0u8; SHA256_OUTPUT_LEN];
        out.copy_from_slice(digest(&SHA256, bytes).as_ref());
        Self(out)
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; SHA256_OUTPUT_LEN] {
        &self.0
    }
}

impl fmt::Debug for SessionInitDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionInitDigest(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// What a signature binds besides the `ServerHello` and the signer: the session, the
/// client's hello, the mode it asked for, and the `session_init` digest.
///
/// # The signature
///
/// ECDSA P-256 with SHA-256 over the transcript bytes below, encoded as Web Crypto encodes it:
/// 64 bytes, `r || s`, each a 32-byte big-endian integer (not DER), then standard base64 with
/// padding (88 characters) in `ServerHello.signatureB64`. A browser verifies it with
/// `crypto.subtle.verify({name: 'ECDSA', hash: 'SHA-256'}, spkiKey, signature, transcript)`.
///
/// # The transcript, byte by byte
///
/// ```text
/// transcript = "enclavejs-server-hello-v1"       25 ASCII bytes, no length prefix
///            || field(sessionId)                  UTF-8 of the session id (s_…)
///            || field(client.protocolVersion)     decimal ASCII, as in JSON ("2")
///            || field(client.curve)               UTF-8 ("P-256")
///            || field(client.supportedAlgorithms) field(a1) || field(a2) || … in the order sent
///            || field(clientEphemeralPubKey)      65 raw bytes 04||x||y (base64-decoded)
///            || field(server.protocolVersion)     decimal ASCII
///            || field(serverEphemeralPubKey)      65 raw bytes 04||x||y (base64-decoded)
///            || field(server.keyId)               UTF-8 (k_…)
///            || field(server.selectedAlgorithm)   UTF-8 ("AES-GCM-256")
///            || field(server.kdf)                 UTF-8 ("HKDF-SHA-256")
///            || field(server.curve)               UTF-8 ("P-256")
///            || field(mode)                       "disabled" | "optional" | "required": the
///                                                 mode of the client's encryption request
///            || field(sessionInitDigest)          32 bytes, see below
///            || field(signerSpki)                 the 91 DER bytes of the signer's SPKI
/// field(x)   = u32_be(len(x)) || x
/// ```
///
/// The client-side fields are the `ClientHello` as the client sent it (on the server: as the
/// server received it); the server-side fields are the `ServerHello` as the server sent it (on
/// the client: as received), `signatureB64` excepted. Both ephemeral keys enter as raw points,
/// so two base64 spellings of one key make one transcript. The signer's own key is bound so a
/// signature cannot be presented as another key's.
///
/// **`sessionInitDigest`.** On HTTP the `ServerHello` travels inside the plaintext
/// `session_init` line (`payload.encryption.serverHello`), so the signature also covers that
/// line: its `encryption` (no downgrade to `enabled: false`), `cancelUrl` and `replayUrl` (no
/// redirect), `expiresAt`, `sessionId` and `seq`. The digest is SHA-256 of the compact JSON of
/// the `session_init` [`StreamEvent`] as `enclave-types` serializes it, with
/// `payload.encryption.serverHello.signatureB64` **absent** (the signature cannot cover
/// itself). The server hashes the event it is about to send; the client parses the line it
/// received into a `StreamEvent`, removes `signatureB64`, re-serializes it with
/// `enclave-types` and hashes that ([`SessionInitDigest::of_event`]): both sides run the same
/// serializer over the same typed values, so the bytes agree, and anything the client acts on
/// is covered (keys the model does not know are dropped on both sides). A peer in another
/// language must reproduce that serialization: keys in the order `protocolVersion`,
/// `sessionId`, `seq`, `type`, `payload`, and within the payload `cancelUrl`, `expiresAt`,
/// `encryption` (`enabled`, `keyId`, `serverHello` with its fields in declaration order),
/// `replayUrl`, absent optional fields omitted, no whitespace.
///
/// On WebSocket (the `ServerHello` is in the `opened` message) and on an HTTP resume (in the
/// `X-Enclave-Server-Hello` header) no plaintext `session_init` is part of the handshake: what
/// follows is sealed. The digest is then SHA-256 of the empty string
/// ([`SessionInitDigest::none`]), `e3b0c442…7852b855`.
///
/// On the client, build it from the client's own values
/// ([`ClientHandshake::transcript`](crate::ClientHandshake::transcript)); on the server,
/// from the request as received.
#[derive(Debug, Clone)]
pub struct HelloTranscript<'a> {
    session_id: &'a SessionId,
    client_hello: &'a ClientHello,
    mode: EncryptionMode,
    session_init: SessionInitDigest,
}

impl<'a> HelloTranscript<'a> {
    /// The transcript inputs for one handshake.
    pub fn new(
        session_id: &'a SessionId,
        client_hello: &'a ClientHello,
        mode: EncryptionMode,
        session_init: SessionInitDigest,
    ) -> Self {
        Self {
            session_id,
            client_hello,
            mode,
            session_init,
        }
    }

    /// The transcript bytes for `server_hello` (its `signatureB64` is ignored) signed by
    /// `signer`, laid out as the type's docs say. Refuses hellos whose ephemeral keys are
    /// not valid P-256 points.
    pub fn to_bytes(
        &self,
        server_hello: &ServerHello,
        signer: &VerifyingKey,
    ) -> Result<Vec<u8>, Error> {
        let client_key = PublicKey::from_base64(&self.client_hello.client_ephemeral_pub_key_b64)?;
        let server_key = PublicKey::from_base64(&server_hello.server_ephemeral_pub_key_b64)?;
        let mode = match self.mode {
            EncryptionMode::Disabled => "disabled",
            EncryptionMode::Optional => "optional",
            EncryptionMode::Required => "required",
            _ => {
                return Err(Error::HandshakeFailed {
                    reason: "an encryption mode this layer does not know".into(),
                })
            }
        };
        let mut algorithms = Vec::new();
        for algorithm in &self.client_hello.supported_algorithms {
            field(&mut algorithms, algorithm.as_bytes())?;
        }

        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(TRANSCRIPT_DOMAIN);
        field(&mut out, self.session_id.as_str().as_bytes())?;
        field(
            &mut out,
            self.client_hello.protocol_version.to_string().as_bytes(),
        )?;
        field(&mut out, self.client_hello.curve.as_bytes())?;
        field(&mut out, &algorithms)?;
        field(&mut out, client_key.as_bytes())?;
        field(
            &mut out,
            server_hello.protocol_version.to_string().as_bytes(),
        )?;
        field(&mut out, server_key.as_bytes())?;
        field(&mut out, server_hello.key_id.as_bytes())?;
        field(&mut out, server_hello.selected_algorithm.as_bytes())?;
        field(&mut out, server_hello.kdf.as_bytes())?;
        field(&mut out, server_hello.curve.as_bytes())?;
        field(&mut out, mode.as_bytes())?;
        field(&mut out, self.session_init.as_bytes())?;
        field(&mut out, &signer.to_spki_der())?;
        Ok(out)
    }
}

/// Appends `u32_be(len) || bytes`.
fn field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(bytes.len()).map_err(|_| Error::HandshakeFailed {
        reason: "a hello field is longer than 4 GiB".into(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

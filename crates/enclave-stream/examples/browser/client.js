// The browser side of an end-to-end encrypted EnclaveJS session over HTTP NDJSON, on the
// browser's own Web Crypto and fetch streaming: no npm packages, no build step.
//
// What it does, as docs/PROTOCOL.md ("Encryption on the wire") describes it:
//   1. an ephemeral ECDH P-256 key pair; its raw public point (65 bytes) goes, base64, into a
//      ClientHello, offered in the body of `POST /sessions` as `encryption: {mode, clientHello}`;
//   2. the first line of the response is a plaintext `session_init` whose
//      `payload.encryption` carries `{enabled, keyId, serverHello}`;
//   3. keys: ECDH x-coordinate -> HKDF-SHA256, salt = UTF-8 session id, info
//      `enclavejs-s2c-enc` (events, opened here) / `enclavejs-c2s-enc` (messages up, unused by
//      this read-only page), 32-byte AES-256-GCM keys;
//   4. every later line is an `enc` envelope: AES-GCM with the 12-byte nonce of `nonceB64`,
//      `ciphertextB64` = ciphertext || 16-byte tag, no AAD; the event inside must carry the
//      envelope's protocolVersion, sessionId and seq. Once keys exist, plaintext is refused.
//
// Not done here: pinning the server's signing key (ServerHello.signatureB64); see README.md.

const PROTOCOL_VERSION = 2;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Standard base64 of bytes (the wire's encoding of keys, nonces and ciphertexts). */
export function toBase64(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Bytes of standard base64; throws on anything else. */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function subtle() {
  if (!globalThis.crypto?.subtle) {
    throw new Error(
      'Web Crypto is not available here: browsers offer it only in a secure context, so open ' +
        'this page over https or from localhost / 127.0.0.1',
    );
  }
  return globalThis.crypto.subtle;
}

/** A fresh ephemeral key pair and the ClientHello that offers its public half. */
export async function createClientHello() {
  const pair = await subtle().generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  const publicKey = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return {
    privateKey: pair.privateKey,
    hello: {
      protocolVersion: PROTOCOL_VERSION,
      clientEphemeralPubKeyB64: toBase64(publicKey),
      curve: 'P-256',
      supportedAlgorithms: ['AES-GCM-256'],
    },
  };
}

async function hkdfKey(secret, salt, info) {
  const base = await subtle().importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle().deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt, info: utf8.encode(info) },
    base,
    256,
  );
  return subtle().importKey('raw', bits, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

/** The session's keys from our private key and the server's hello (checked first). */
export async function deriveSessionKeys(privateKey, serverHello, sessionId) {
  if (serverHello.curve !== 'P-256' || serverHello.selectedAlgorithm !== 'AES-GCM-256' || serverHello.kdf !== 'HKDF-SHA-256') {
    throw new Error(`the ServerHello selects what this page does not implement: ${JSON.stringify(serverHello)}`);
  }
  if (typeof serverHello.keyId !== 'string' || serverHello.keyId.length === 0) {
    throw new Error('the ServerHello has no keyId');
  }
  const serverPublic = await subtle().importKey(
    'raw',
    fromBase64(serverHello.serverEphemeralPubKeyB64),
    { name: 'ECDH', namedCurve: 'P-256' },
    false,
    [],
  );
  // 256 bits of ECDH: the x-coordinate of the shared point, as the server derives it.
  const secret = await subtle().deriveBits({ name: 'ECDH', public: serverPublic }, privateKey, 256);
  const salt = utf8.encode(sessionId);
  return {
    keyId: serverHello.keyId,
    serverToClient: await hkdfKey(secret, salt, 'enclavejs-s2c-enc'),
    clientToServer: await hkdfKey(secret, salt, 'enclavejs-c2s-enc'),
  };
}

/**
 * Opens the `enc` envelopes of one connection, refusing what the Rust opener refuses: another
 * session or key id, a seq that does not move forward, a nonce seen before, a tag that does
 * not authenticate, an inner event that does not match its envelope.
 */
export class EnvelopeOpener {
  constructor(keys, sessionId) {
    this.keys = keys;
    this.sessionId = sessionId;
    this.lastSeq = 0;
    this.nonces = new Set();
  }

  async open(envelope) {
    const where = `envelope seq ${envelope.seq}`;
    if (envelope.type !== 'enc') {
      throw new Error(`${where}: a plaintext \`${envelope.type}\` line after the keys were agreed`);
    }
    if (envelope.sessionId !== this.sessionId) {
      throw new Error(`${where}: session ${envelope.sessionId}, expected ${this.sessionId}`);
    }
    const { kid, nonceB64, ciphertextB64 } = envelope.payload ?? {};
    if (kid !== this.keys.keyId) throw new Error(`${where}: key id ${kid}, expected ${this.keys.keyId}`);
    if (!Number.isSafeInteger(envelope.seq) || envelope.seq <= this.lastSeq) {
      throw new Error(`${where}: does not follow seq ${this.lastSeq}`);
    }
    if (this.nonces.has(nonceB64)) throw new Error(`${where}: nonce reused`);
    const nonce = fromBase64(nonceB64);
    if (nonce.length !== 12) throw new Error(`${where}: a nonce of ${nonce.length} bytes, not 12`);
    let plaintext;
    try {
      plaintext = await subtle().decrypt(
        { name: 'AES-GCM', iv: nonce, tagLength: 128 },
        this.keys.serverToClient,
        fromBase64(ciphertextB64),
      );
    } catch (err) {
      throw new Error(`${where}: does not authenticate under key ${kid} (${err.name})`);
    }
    const event = JSON.parse(fromUtf8.decode(plaintext));
    if (event.protocolVersion !== envelope.protocolVersion || event.sessionId !== envelope.sessionId || event.seq !== envelope.seq) {
      throw new Error(`${where}: the event inside is ${event.sessionId} seq ${event.seq}, not the envelope's`);
    }
    this.lastSeq = envelope.seq;
    this.nonces.add(nonceB64);
    return event;
  }
}

/** The lines of an NDJSON body as they arrive (fetch streaming), the last one unterminated too. */
export async function* ndjsonLines(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let buffer = '';
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) !== -1) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line.length > 0) yield line;
      }
    }
    buffer += decoder.decode();
    if (buffer.trim().length > 0) yield buffer.trim();
  } finally {
    // A reader that stops early (a refused envelope) closes the connection instead of leaving
    // the server streaming into a body nobody reads.
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

async function refusal(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return `${response.status} ${body.code}: ${body.message}`;
  } catch {
    return `${response.status}: ${text.slice(0, 200)}`;
  }
}

/**
 * Opens a new encrypted session on the stream server at `baseUrl` and yields its events in
 * order, decrypted: first the plaintext `session_init`, then every event opened from its
 * envelope. `onSession({sessionId, keyId, serverHello})` runs once the keys are agreed.
 */
export async function* openEncryptedSession(baseUrl, { onSession, signal } = {}) {
  const { privateKey, hello } = await createClientHello();
  const response = await fetch(`${baseUrl}/sessions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
    body: JSON.stringify({ encryption: { mode: 'required', clientHello: hello } }),
    signal,
  });
  if (!response.ok) throw new Error(`POST ${baseUrl}/sessions refused: ${await refusal(response)}`);
  if (!response.body) throw new Error('the response has no readable body (fetch streaming unavailable)');

  let opener = null;
  for await (const line of ndjsonLines(response.body)) {
    const frame = JSON.parse(line);
    if (opener === null) {
      const encryption = frame.payload?.encryption;
      if (frame.type !== 'session_init' || frame.seq !== 1) {
        throw new Error(`the first line is ${frame.type} seq ${frame.seq}, not session_init seq 1`);
      }
      if (!encryption?.enabled || !encryption.serverHello) {
        throw new Error('the server did not agree to encrypt (session_init has no serverHello)');
      }
      if (encryption.keyId !== encryption.serverHello.keyId) {
        throw new Error(`session_init names key ${encryption.keyId}, its ServerHello ${encryption.serverHello.keyId}`);
      }
      const headerId = response.headers.get('X-Session-ID');
      if (headerId !== null && headerId !== frame.sessionId) {
        throw new Error(`X-Session-ID ${headerId} does not name the session of session_init (${frame.sessionId})`);
      }
      const keys = await deriveSessionKeys(privateKey, encryption.serverHello, frame.sessionId);
      opener = new EnvelopeOpener(keys, frame.sessionId);
      opener.lastSeq = frame.seq;
      onSession?.({ sessionId: frame.sessionId, keyId: keys.keyId, serverHello: encryption.serverHello });
      yield { event: frame, encrypted: false };
    } else {
      yield { event: await opener.open(frame), encrypted: true };
    }
  }
  if (opener === null) throw new Error('the stream ended before session_init');
}

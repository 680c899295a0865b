// The client side of the encryption handshake, written against Node's built-in Web Crypto
// only (globalThis.crypto.subtle, no npm packages), as a browser peer of @enclave-vm/stream
// would do it. Driven by tests/node_interop.rs over stdin/stdout, one JSON value per line:
//
//   rust -> peer  {"sessionId": "s_..."}                 (which session to join)
//   peer -> rust  ClientHello
//   rust -> peer  ServerHello
//   rust -> peer  enc envelopes of events (server -> client); the peer opens each, checks
//                 that the inner event has the envelope's sessionId and seq, and echoes it
//                 back (client -> server, counter nonces) as a runtime channel message, the
//                 one family a server opens: a `cancel` with the event's seq and its chunk
//                 as the reason.
//   peer -> rust  one more envelope of a `cancel` the peer builds itself (non-ASCII text).
//   rust closes stdin; the peer exits 0, or 1 with a message on stderr at the first failure.
import { createInterface } from 'node:readline';

const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const unb64 = (text) => new Uint8Array(Buffer.from(text, 'base64'));
const send = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const fail = (message) => {
  process.stderr.write(`peer: ${message}\n`);
  process.exit(1);
};

async function hkdf(secret, salt, info) {
  const base = await subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt, info: enc.encode(info) },
    base,
    256,
  );
  return subtle.importKey('raw', bits, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })[Symbol.asyncIterator]();
const next = async (what) => {
  const { value, done } = await lines.next();
  if (done) fail(`stdin closed while waiting for ${what}`);
  return JSON.parse(value);
};

try {
  const { sessionId } = await next('the session id');

  const pair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  const ourPublic = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  send({
    protocolVersion: 2,
    clientEphemeralPubKeyB64: b64(ourPublic),
    curve: 'P-256',
    supportedAlgorithms: ['AES-GCM-256'],
  });

  const hello = await next('the ServerHello');
  if (hello.curve !== 'P-256' || hello.selectedAlgorithm !== 'AES-GCM-256' || hello.kdf !== 'HKDF-SHA-256') {
    fail(`unexpected ServerHello ${JSON.stringify(hello)}`);
  }
  if (!/^k_[0-9a-f-]{36}$/.test(hello.keyId)) fail(`key id ${hello.keyId} is not k_<uuid>`);
  const serverPublic = await subtle.importKey(
    'raw',
    unb64(hello.serverEphemeralPubKeyB64),
    { name: 'ECDH', namedCurve: 'P-256' },
    false,
    [],
  );
  const secret = await subtle.deriveBits({ name: 'ECDH', public: serverPublic }, pair.privateKey, 256);
  const salt = enc.encode(sessionId);
  const c2s = await hkdf(secret, salt, 'enclavejs-c2s-enc');
  const s2c = await hkdf(secret, salt, 'enclavejs-s2c-enc');

  const prefix = globalThis.crypto.getRandomValues(new Uint8Array(8));
  let counter = 0;
  // Seals a runtime channel message (it carries a seq, as every sealed message must).
  const seal = async (message) => {
    const nonce = new Uint8Array(12);
    nonce.set(prefix);
    new DataView(nonce.buffer).setUint32(8, counter++, false);
    const sealed = await subtle.encrypt({ name: 'AES-GCM', iv: nonce, tagLength: 128 }, c2s, enc.encode(JSON.stringify(message)));
    return {
      protocolVersion: 2,
      sessionId: message.sessionId,
      seq: message.seq,
      type: 'enc',
      payload: { kid: hello.keyId, nonceB64: b64(nonce), ciphertextB64: b64(new Uint8Array(sealed)) },
    };
  };

  const cancel = (seq, reason) => ({
    protocolVersion: 2,
    sessionId,
    seq,
    type: 'cancel',
    payload: { reason },
  });

  let opened = 0;
  for (;;) {
    const { value, done } = await lines.next();
    if (done) break;
    const envelope = JSON.parse(value);
    if (envelope.type === 'end') break;
    if (envelope.type !== 'enc') fail(`expected an enc envelope, got type ${envelope.type}`);
    if (envelope.payload.kid !== hello.keyId) fail(`envelope kid ${envelope.payload.kid}`);
    const plaintext = await subtle.decrypt(
      { name: 'AES-GCM', iv: unb64(envelope.payload.nonceB64), tagLength: 128 },
      s2c,
      unb64(envelope.payload.ciphertextB64),
    );
    const event = JSON.parse(dec.decode(plaintext));
    if (event.sessionId !== envelope.sessionId || event.seq !== envelope.seq) {
      fail(`inner event ${event.sessionId}/${event.seq} does not match envelope ${envelope.sessionId}/${envelope.seq}`);
    }
    if (event.type !== 'stdout') fail(`expected a stdout event, got type ${event.type}`);
    opened += 1;
    send(await seal(cancel(event.seq, event.payload.chunk)));
  }
  if (opened === 0) fail('no envelope arrived');

  send(await seal(cancel(1000, `peer opened ${opened} envelopes: grüße, 日本語, emoji 🔐, quote " and newline \n`)));
  // Not process.exit(): stdout to a pipe is asynchronous on Linux, and exiting at once would
  // cut off whatever is still queued beyond the pipe's 64 KiB buffer.
  process.exitCode = 0;
} catch (err) {
  fail(err && err.stack ? err.stack : String(err));
}

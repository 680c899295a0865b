// A test peer that behaves like `@enclave-vm/client` 2.15.2 on the wire (read from its
// sources; no npm packages): the same request shapes and headers, line validation that
// silently drops what its schemas would refuse, `from=` reconnects with its backoff
// (1 s, 2 s, 4 s, ±30% jitter, 3 retries) and no de-duplication by seq.
//
// Usage: node ts-client.mjs BASE_URL [--code CODE] [--delay-scale F] [--deadline-ms MS]
//   [--session-id ID] [--work-us US]
// `--work-us` spends US microseconds of synchronous work on every event, as an application's
// `onEvent` (and the real client's zod validation) does in the read loop: the reader falls
// behind a producer that runs ahead, and socket buffers fill.
// Prints one JSON summary line on stdout:
//   {"sessionId", "seqs": [...], "dropped": N, "dropReasons": [...], "reconnects": N,
//    "final": bool, "error"?: string}

const args = process.argv.slice(2);
const baseUrl = args[0];
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const code = opt('--code', 'return 1');
// The TypeScript delays are 1 s, 2 s, 4 s; tests scale them down to stay fast.
const delayScale = Number(opt('--delay-scale', '1'));
const deadlineMs = Number(opt('--deadline-ms', '60000'));
const workNs = BigInt(Math.round(Number(opt('--work-us', '0')) * 1000));

const EVENT_TYPES = new Set([
  'session_init', 'stdout', 'log', 'tool_call', 'tool_result_applied', 'final', 'heartbeat',
  'error', 'partial_result', 'tool_progress', 'deadline_exceeded', 'catalog_changed',
]);
// ISO-8601 date-time in UTC with `Z`, as zod's `.datetime()` requires.
const ISO_Z = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z$/;

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const isSessionId = (v) => typeof v === 'string' && v.startsWith('s_') && v.length > 2;
const isCallId = (v) => typeof v === 'string' && v.startsWith('c_') && v.length > 2;

/** The checks of the client's schemas that matter on the wire; returns a reason or null. */
function refuse(event) {
  if (!isObject(event)) return 'not an object';
  if (event.protocolVersion !== 1 && event.protocolVersion !== 2) return 'protocolVersion';
  if (!isSessionId(event.sessionId)) return 'sessionId';
  if (!Number.isSafeInteger(event.seq) || event.seq < 0) return 'seq';
  if (event.type === 'enc') return 'encrypted envelope (this client has no keys)';
  if (!EVENT_TYPES.has(event.type)) return `type ${event.type}`;
  const p = event.payload;
  if (!isObject(p)) return 'payload';
  switch (event.type) {
    case 'session_init':
      if (typeof p.cancelUrl !== 'string') return 'session_init.cancelUrl';
      if (typeof p.expiresAt !== 'string' || !ISO_Z.test(p.expiresAt)) return 'session_init.expiresAt';
      if (!isObject(p.encryption) || typeof p.encryption.enabled !== 'boolean') return 'session_init.encryption';
      break;
    case 'stdout':
      if (typeof p.chunk !== 'string') return 'stdout.chunk';
      break;
    case 'log':
      if (!['debug', 'info', 'warn', 'error'].includes(p.level)) return 'log.level';
      if (typeof p.message !== 'string') return 'log.message';
      break;
    case 'tool_call':
      if (!isCallId(p.callId)) return 'tool_call.callId';
      if (typeof p.toolName !== 'string' || p.toolName.length === 0) return 'tool_call.toolName';
      break;
    case 'tool_result_applied':
      if (!isCallId(p.callId)) return 'tool_result_applied.callId';
      break;
    case 'final':
      if (typeof p.ok !== 'boolean') return 'final.ok';
      break;
    case 'heartbeat':
      if (typeof p.ts !== 'string' || !ISO_Z.test(p.ts)) return 'heartbeat.ts';
      break;
    case 'error':
      if (typeof p.message !== 'string') return 'error.message';
      break;
    case 'tool_progress':
      if (!isCallId(p.callId)) return 'tool_progress.callId';
      break;
    default:
      break;
  }
  return null;
}

const summary = { sessionId: opt('--session-id', `s_${crypto.randomUUID()}`), seqs: [], dropped: 0, dropReasons: [], reconnects: 0, final: false };
let lastSequence = 0;

function handleLine(line) {
  const trimmed = line.trim();
  if (trimmed.length === 0) return;
  let event;
  try {
    event = JSON.parse(trimmed);
  } catch {
    summary.dropped += 1;
    summary.dropReasons.push('not JSON');
    return;
  }
  const why = refuse(event);
  if (why !== null) {
    summary.dropped += 1;
    if (summary.dropReasons.length < 20) summary.dropReasons.push(why);
    return;
  }
  if (workNs > 0n) {
    const until = process.hrtime.bigint() + workNs;
    while (process.hrtime.bigint() < until);
  }
  lastSequence = event.seq;
  summary.seqs.push(event.seq);
  if (event.type === 'final') summary.final = true;
}

/** Reads an NDJSON body as `parseNdjsonStream` does, including a last unterminated line. */
async function consume(response) {
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      if (buffer.trim().length > 0) handleLine(buffer);
      return;
    }
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) !== -1) {
      handleLine(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run() {
  let attempt = 0;
  let response;
  try {
    response = await fetch(`${baseUrl}/sessions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
      body: JSON.stringify({ sessionId: summary.sessionId, code }),
    });
    if (!response.ok) throw new Error(`Failed to start session: ${response.status} - ${await response.text()}`);
    await consume(response);
  } catch (error) {
    summary.lastError = String(error);
  }
  // The client reconnects only after an error; a stream that ends without `final` would
  // stall it until its 30 s heartbeat timeout, which then reconnects the same way.
  while (!summary.final) {
    if (attempt >= 3) {
      summary.error = `gave up after 3 reconnect attempts: ${summary.lastError ?? 'stream ended without final'}`;
      return;
    }
    const base = 1000 * 2 ** attempt;
    const jitter = base * 0.3 * (Math.random() * 2 - 1);
    await sleep(Math.max(0, (base + jitter) * delayScale));
    attempt += 1;
    summary.reconnects += 1;
    const params = new URLSearchParams();
    if (lastSequence > 0) params.set('from', String(lastSequence + 1));
    try {
      response = await fetch(`${baseUrl}/sessions/${summary.sessionId}/stream?${params}`, {
        method: 'GET',
        headers: { Accept: 'application/x-ndjson' },
      });
      if (!response.ok) throw new Error(`Reconnection failed: ${response.status} - ${await response.text()}`);
      // `onConnected` resets the attempt count.
      attempt = 0;
      await consume(response);
    } catch (error) {
      summary.lastError = String(error);
    }
  }
}

// Exits once the summary is written: a pipe takes 64 KiB at once, and `process.exit` right
// after `write` would cut a longer summary (200,000 seqs) there.
function finish(code) {
  process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(code));
}

const timer = setTimeout(() => {
  summary.error = `deadline of ${deadlineMs} ms passed`;
  finish(3);
}, deadlineMs);

run().then(() => {
  clearTimeout(timer);
  finish(summary.error ? 1 : 0);
});

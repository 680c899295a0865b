// The page: reads one encrypted session from the stream server, shows every decrypted event,
// checks the stream (seq 1..N, once each, in order, `final` last, every event after
// session_init sealed) and, when the URL names a report address, POSTs the verdict there.
//
// Query parameters:
//   server  base URL of the stream server (default: this page's origin)
//   report  URL that receives the verdict JSON as a POST (used by the browser test)

import { openEncryptedSession } from './client.js';

// Rows beyond this are counted, not drawn: a long stream should not freeze the page.
const MAX_ROWS = 2000;

const params = new URLSearchParams(window.location.search);
const server = (params.get('server') || window.location.origin).replace(/\/+$/, '');
const reportUrl = params.get('report');

const $ = (id) => document.getElementById(id);

function describe(event) {
  const p = event.payload ?? {};
  switch (event.type) {
    case 'session_init':
      return `encryption ${p.encryption?.enabled ? `on, key ${p.encryption.keyId}` : 'off'}; expires ${p.expiresAt}`;
    case 'stdout':
      return JSON.stringify(p.chunk);
    case 'log':
      return `[${p.level}] ${p.message}`;
    case 'tool_call':
      return `${p.toolName}(${JSON.stringify(p.args)}) ${p.callId}`;
    case 'tool_result_applied':
      return p.callId;
    case 'final':
      return p.ok ? 'ok' : `failed: ${p.error?.message ?? 'no message'}`;
    case 'error':
      return p.message;
    default:
      return JSON.stringify(p);
  }
}

function addRow(event, encrypted) {
  const row = document.createElement('tr');
  row.className = event.type;
  for (const text of [String(event.seq), event.type, encrypted ? 'sealed' : 'plaintext', describe(event)]) {
    const cell = document.createElement('td');
    cell.textContent = text;
    row.append(cell);
  }
  $('events').append(row);
}

function setStatus(text, state) {
  $('status').textContent = text;
  $('status').dataset.state = state;
}

async function run() {
  $('server').value = server;
  const started = performance.now();
  const verdict = {
    ok: false,
    server,
    pageOrigin: window.location.origin,
    sessionId: null,
    keyId: null,
    encrypted: false,
    events: 0,
    seqs: [],
    types: {},
    final: null,
    finalLast: false,
    inOrder: false,
    elapsedMs: 0,
    error: null,
    userAgent: navigator.userAgent,
  };
  let plaintextAfterInit = 0;
  setStatus(`connecting to ${server} …`, 'running');
  try {
    const session = openEncryptedSession(server, {
      onSession: ({ sessionId, keyId }) => {
        verdict.sessionId = sessionId;
        verdict.keyId = keyId;
        $('session').textContent = `session ${sessionId}, key ${keyId}`;
        setStatus('reading the encrypted stream …', 'running');
      },
    });
    for await (const { event, encrypted } of session) {
      if (verdict.final !== null) throw new Error(`seq ${event.seq} (${event.type}) after final`);
      verdict.events += 1;
      verdict.seqs.push(event.seq);
      verdict.types[event.type] = (verdict.types[event.type] ?? 0) + 1;
      if (!encrypted && event.type !== 'session_init') plaintextAfterInit += 1;
      if (event.type === 'final') verdict.final = { ok: event.payload.ok };
      if (verdict.events <= MAX_ROWS) addRow(event, encrypted);
      else $('more').textContent = `… and ${verdict.events - MAX_ROWS} more events, not drawn`;
    }
    verdict.inOrder = verdict.seqs.every((seq, index) => seq === index + 1);
    verdict.finalLast = verdict.final !== null;
    verdict.encrypted = verdict.keyId !== null && plaintextAfterInit === 0;
    const problems = [];
    if (!verdict.inOrder) problems.push('the seqs are not 1..N in order');
    if (!verdict.finalLast) problems.push('the stream ended without final');
    if (!verdict.encrypted) problems.push('events arrived unencrypted');
    if (problems.length > 0) verdict.error = problems.join('; ');
  } catch (err) {
    verdict.error = err instanceof Error ? err.message : String(err);
  }
  verdict.elapsedMs = Math.round(performance.now() - started);
  verdict.ok = verdict.error === null;
  if (verdict.ok) {
    setStatus(`${verdict.events} events, seq 1..${verdict.events} in order, final ok=${verdict.final.ok}, every event after session_init decrypted (${verdict.elapsedMs} ms)`, 'pass');
  } else {
    setStatus(`failed after ${verdict.events} events: ${verdict.error}`, 'fail');
  }
  document.title = `${verdict.ok ? 'PASS' : 'FAIL'} · enclave-stream browser example`;
  await report(verdict);
}

async function report(verdict) {
  if (!reportUrl) return;
  try {
    // A text/plain body keeps this a simple request: no preflight for the receiver to answer.
    const response = await fetch(reportUrl, { method: 'POST', body: JSON.stringify(verdict) });
    $('report').textContent = `verdict sent to ${reportUrl} (${response.status})`;
  } catch (err) {
    $('report').textContent = `could not send the verdict to ${reportUrl}: ${err}`;
  }
}

run();

// The TypeScript stack's side of `cargo xtask bench-connect`: a Node `http` server that
// streams NDJSON the way the TypeScript broker does (one `res.write` per event, waiting for
// 'drain' when the socket is full). No npm packages.
//
// Usage: node node-server.mjs EVENTS_FILE [--rate EVENTS_PER_S --count N]
//   EVENTS_FILE  an NDJSON stream as `enclave serve` sends it (session_init … final); every
//                `POST /sessions` gets it verbatim (the mixed-events mode).
//   --rate/--count  the paced mode: the file's session_init, then N `stdout` events at RATE
//                per second whose chunk is `t=<microseconds since the Unix epoch>` taken just
//                before the event is written, then `final` — a reader measures write→read
//                latency from it.
// Prints `listening http://127.0.0.1:PORT` first. `POST /sessions/:id/messages` answers
// `{"ack":0}` (our client acknowledges there); anything else is 404.

import http from 'node:http';
import fs from 'node:fs';
import { once } from 'node:events';

const args = process.argv.slice(2);
const file = args[0];
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : undefined;
};
const rate = opt('--rate');
const count = opt('--count');

const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
const init = JSON.parse(lines[0]);
const sessionId = init.sessionId;

const nowMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function write(res, line) {
  if (!res.write(`${line}\n`)) await once(res, 'drain');
}

async function mixed(res) {
  for (const line of lines) await write(res, line);
}

async function paced(res) {
  await write(res, lines[0]);
  const start = performance.now();
  let seq = init.seq;
  for (let i = 1; i <= count; i += 1) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    seq += 1;
    const event = { protocolVersion: init.protocolVersion, sessionId, seq, type: 'stdout', payload: { chunk: `t=${nowMicros()}` } };
    await write(res, JSON.stringify(event));
  }
  seq += 1;
  await write(res, JSON.stringify({ protocolVersion: init.protocolVersion, sessionId, seq, type: 'final', payload: { ok: true } }));
}

const server = http.createServer(async (req, res) => {
  const body = [];
  for await (const chunk of req) body.push(chunk);
  if (req.method === 'POST' && req.url === '/sessions') {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'X-Session-ID': sessionId, 'Cache-Control': 'no-cache' });
    await (rate ? paced(res) : mixed(res));
    res.end();
  } else if (req.method === 'POST' && /^\/sessions\/[^/]+\/messages$/.test(req.url)) {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"ack":0}');
  } else {
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end('{"code":"SESSION_NOT_FOUND","message":"this bench server keeps no sessions"}');
  }
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}\n`);
});

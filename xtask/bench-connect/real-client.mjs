// The real TypeScript client's row of `cargo xtask bench-connect`: `EnclaveClient` from an
// esbuild bundle of @enclave-vm/client (see docs/BENCHMARKS.md for how to build one) runs
// `execute` against a server and prints one summary line in the shape ts-client.mjs prints:
//   {"sessionId", "seqs": [...], "dropped": N, "final": bool}
// `dropped` counts the seqs missing below the last one received (the client drops what it
// refuses without a word, so a gap is the only trace).
//
// Usage: node real-client.mjs BUNDLE BASE_URL

import { pathToFileURL } from 'node:url';

const [bundle, baseUrl] = process.argv.slice(2);
if (!bundle || !baseUrl) {
  process.stderr.write('usage: node real-client.mjs BUNDLE BASE_URL\n');
  process.exit(2);
}
const { EnclaveClient } = await import(pathToFileURL(bundle).href);

const summary = { sessionId: null, seqs: [], dropped: 0, final: false };
const client = new EnclaveClient({ baseUrl, reconnectDelay: 200, maxReconnectAttempts: 10 });
let code = 0;
try {
  await client.execute('return 1', {
    onEvent: (event) => {
      summary.sessionId ??= event.sessionId;
      summary.seqs.push(event.seq);
      if (event.type === 'final') summary.final = true;
    },
  });
} catch (error) {
  process.stderr.write(`real-client: ${error?.message ?? error}\n`);
  code = 1;
}
const last = summary.seqs.length > 0 ? summary.seqs[summary.seqs.length - 1] : 0;
summary.dropped = Math.max(0, last - new Set(summary.seqs).size);
process.stdout.write(`${JSON.stringify(summary)}\n`, () => process.exit(code));
